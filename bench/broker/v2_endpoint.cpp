// Endpoint over v2broker's Unix socket: pre-encoded messages patched in place, batched writes,
// reads in large chunks straight into the wire codec's decoder.

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

#include "common.hpp"
#include "endpoint.hpp"

namespace v2bench {
namespace {

constexpr std::size_t kReadChunk = std::size_t{256} << 10U;
constexpr std::size_t kReadBudget = std::size_t{4} << 20U;
constexpr std::size_t kBatchBytes = std::size_t{64} << 10U;
constexpr int kRegisterTimeoutMs = 5000;
constexpr std::size_t kBinaryIdOffset = 12;  ///< PROTOCOL.md, binary framing

std::string errno_context(const char* call, int error) {
  return std::string(call) + " failed: " + std::strerror(error);
}

class V2Endpoint final : public Endpoint {
 public:
  V2Endpoint(int fd, std::string name, const V2Options& options)
      : fd_(fd), name_(std::move(name)), framing_(options.framing), decoder_([&] {
          v2::wire::DecoderConfig config;
          config.framing = options.framing;
          config.max_message_size = options.max_message_size;
          config.initial_buffer_size = kReadChunk;
          return config;
        }()) {}

  V2Endpoint(const V2Endpoint&) = delete;
  V2Endpoint& operator=(const V2Endpoint&) = delete;
  ~V2Endpoint() override { ::close(fd_); }

  void set_sink(Sink* sink) noexcept override { sink_ = sink; }

  void register_name() {
    v2::Message call;
    call.type = v2::MessageType::request;
    call.id = "RPCRegister";
    call.target = std::string(v2::kBrokerName);
    call.correlation_id = "register";
    call.payload = v2::Payload::copy_of(R"({"name":")" + name_ + R"("})");
    if (auto status = v2::wire::encode(call, framing_, out_); !status.ok()) {
      throw EndpointError(context() + " encoding RPCRegister: " + status.text);
    }
    flush();

    struct Reply final : Sink {
      bool done = false;
      std::string error;
      void on_message(const Delivered& m) override {
        if (m.id == "RPCRegister") {
          done = true;
          if (m.type != v2::MessageType::response) {
            error = m.error.empty() ? std::string("not a response") : std::string(m.error);
          }
        }
      }
    } reply;
    Sink* saved = std::exchange(sink_, &reply);
    const std::int64_t deadline = now_ns() + std::int64_t{kRegisterTimeoutMs} * 1'000'000;
    while (!reply.done && now_ns() < deadline) {
      if (!poll(100)) {
        throw EndpointError(context() + " broker closed the connection during RPCRegister");
      }
    }
    sink_ = saved;
    if (!reply.done) {
      throw EndpointError(context() + " no reply to RPCRegister within " +
                          std::to_string(kRegisterTimeoutMs) + " ms");
    }
    if (!reply.error.empty()) {
      throw EndpointError(context() + " RPCRegister refused: " + reply.error);
    }
  }

  void set_template(const std::string& target, const std::string& payload) override {
    v2::Message m;
    m.type = v2::MessageType::event;
    m.id = std::string(kIdSize, '@');
    m.target = target;
    m.payload = v2::Payload::copy_of(payload);
    std::string encoded;
    if (auto status = v2::wire::encode(m, framing_, encoded); !status.ok()) {
      throw EndpointError(context() + " encoding the benchmark message: " + status.text);
    }
    // Binary: the id field's fixed place (PROTOCOL.md); NDJSON: after its key, since the
    // placeholder's bytes may also occur elsewhere (the binary length field, for one).
    const std::size_t id_at = framing_ == v2::wire::Framing::binary
                                  ? kBinaryIdOffset
                                  : encoded.find(R"("id":")" + m.id) + 6;
    if (id_at == std::string::npos + 6 || encoded.compare(id_at, kIdSize, m.id) != 0) {
      throw EndpointError(context() + " the encoded message does not hold its id verbatim");
    }
    id_offset_ = id_at;
    split_ = payload.size() >= kLargeMessage;
    if (!split_) {
      whole_ = std::move(encoded);
      return;
    }
    const auto body_at = encoded.find(payload, id_at + kIdSize);
    if (body_at == std::string::npos) {
      throw EndpointError(context() + " the encoded message does not hold its payload verbatim");
    }
    head_ = encoded.substr(0, body_at);
    tail_ = encoded.substr(body_at + payload.size());
    body_ = payload;
  }

  void offer(std::uint64_t seq, std::uint64_t time_ns) override {
    if (!split_) {
      const std::size_t at = out_.size();
      out_.append(whole_);
      write_id(out_.data() + at + id_offset_, seq, time_ns);
      if (out_.size() >= kBatchBytes) {
        flush();
      }
      return;
    }
    flush();
    write_id(head_.data() + id_offset_, seq, time_ns);
    std::array<iovec, 3> iov{
        {{head_.data(), head_.size()}, {body_.data(), body_.size()}, {tail_.data(), tail_.size()}}};
    write_all(iov.data(), tail_.empty() ? 2 : 3);
  }

  void flush() override {
    // Input read while waiting for room may queue echoes into out_: write from a buffer of its
    // own, so out_ can grow meanwhile.
    while (!out_.empty()) {
      std::swap(out_, writing_);
      iovec iov{writing_.data(), writing_.size()};
      write_all(&iov, 1);
      writing_.clear();
    }
  }

  bool poll(int timeout_ms) override {
    if (hung_up_) {
      return false;
    }
    pollfd p{fd_, POLLIN, 0};
    const int ready = ::poll(&p, 1, timeout_ms);
    if (ready < 0 && errno != EINTR) {
      throw EndpointError(context() + " " + errno_context("poll", errno));
    }
    if (ready > 0) {
      read_available();
    }
    return !hung_up_;
  }

  void echo_current() override {
    v2::Message reply;
    reply.type = v2::MessageType::event;
    reply.encoding = current_->encoding;
    reply.id = current_->id;
    reply.target = current_->source;
    reply.payload = current_->payload;  // shared, not copied
    v2::wire::NdjsonEncodeOptions ndjson;
    ndjson.payload_check = v2::wire::JsonPayloadCheck::trust;  // it came through our decoder
    if (auto status = v2::wire::encode(reply, framing_, out_, ndjson); !status.ok()) {
      throw EndpointError(context() + " encoding an echo: " + status.text);
    }
  }

 private:
  [[nodiscard]] std::string context() const {
    return "name=" + name_ + " fd=" + std::to_string(fd_) +
           " framing=" + std::string(v2::wire::to_string(framing_));
  }

  void write_all(iovec* iov, int count) {
    while (count > 0) {
      const ssize_t n = ::writev(fd_, iov, count);
      if (n < 0) {
        const int error = errno;
        if (error == EINTR) {
          continue;
        }
        if (error == EAGAIN || error == EWOULDBLOCK) {
          wait_writable();
          continue;
        }
        throw EndpointError(context() + " " + errno_context("writev", error));
      }
      auto left = static_cast<std::size_t>(n);
      while (count > 0 && left >= iov->iov_len) {
        left -= iov->iov_len;
        ++iov;
        --count;
      }
      if (count > 0) {
        iov->iov_base = static_cast<char*>(iov->iov_base) + left;
        iov->iov_len -= left;
      }
    }
  }

  void wait_writable() {
    pollfd p{fd_, POLLOUT | POLLIN, 0};
    const int ready = ::poll(&p, 1, 1000);
    if (ready < 0 && errno != EINTR) {
      throw EndpointError(context() + " " + errno_context("poll", errno));
    }
    if ((p.revents & POLLIN) != 0) {
      read_available();
    }
    if (hung_up_ || (p.revents & (POLLERR | POLLHUP)) != 0) {
      throw EndpointError(context() + " broker closed the connection while we were writing");
    }
  }

  void read_available() {
    std::size_t budget = kReadBudget;
    while (budget > 0) {
      const auto space = decoder_.writable(kReadChunk);
      const ssize_t n = ::read(fd_, space.data(), space.size());
      if (n > 0) {
        decoder_.commit(static_cast<std::size_t>(n));
        budget -= std::min(budget, static_cast<std::size_t>(n));
        deliver_decoded(now_ns());
        continue;
      }
      if (n == 0) {
        hung_up_ = true;
        return;
      }
      const int error = errno;
      if (error == EINTR) {
        continue;
      }
      if (error == EAGAIN || error == EWOULDBLOCK) {
        return;
      }
      if (error == ECONNRESET) {
        hung_up_ = true;
        return;
      }
      throw EndpointError(context() + " " + errno_context("read", error));
    }
  }

  void deliver_decoded(std::int64_t received_ns) {
    for (;;) {
      const auto status = decoder_.poll(message_, error_);
      if (status == v2::wire::DecodeStatus::need_more) {
        return;
      }
      if (status == v2::wire::DecodeStatus::error) {
        throw EndpointError(context() + " the broker sent bytes the codec refuses: " + error_.text);
      }
      if (sink_ != nullptr) {
        Delivered d;
        d.type = message_.type;
        d.source = message_.source;
        d.id = message_.id;
        d.payload = message_.payload.view();
        d.error = message_.error;
        d.received_ns = received_ns;
        current_ = &message_;
        sink_->on_message(d);
        current_ = nullptr;
      }
    }
  }

  int fd_;
  std::string name_;
  v2::wire::Framing framing_;
  v2::wire::Decoder decoder_;
  v2::Message message_;
  v2::wire::ProtocolError error_;
  const v2::Message* current_ = nullptr;
  Sink* sink_ = nullptr;
  bool hung_up_ = false;

  std::string out_;      ///< queued, not yet written
  std::string writing_;  ///< being written by flush()

  std::size_t id_offset_ = 0;
  bool split_ = false;  ///< large payload: written as head, body, tail without a copy
  std::string whole_;
  std::string head_;
  std::string body_;
  std::string tail_;
};

}  // namespace

std::unique_ptr<Endpoint> connect_v2(const std::string& socket_path, const std::string& name,
                                     const V2Options& options) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (socket_path.empty() || socket_path.size() >= sizeof(address.sun_path)) {
    throw EndpointError("socket=" + socket_path + " path empty or too long for sun_path");
  }
  std::memcpy(address.sun_path, socket_path.c_str(), socket_path.size() + 1);

  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    throw EndpointError("socket=" + socket_path + " " + errno_context("socket", errno));
  }
  // The daemon may be slow to accept a thousand connections: a blocking connect waits for room
  // in its backlog; EINTR and EAGAIN are retried for a while.
  int attempts = 0;
  while (::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
    const int error = errno;
    if ((error == EINTR || error == EAGAIN) && ++attempts < 1000) {
      ::usleep(1000);
      continue;
    }
    ::close(fd);
    throw EndpointError("socket=" + socket_path + " " + errno_context("connect", error));
  }
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
    const int error = errno;
    ::close(fd);
    throw EndpointError("socket=" + socket_path + " " + errno_context("fcntl(O_NONBLOCK)", error));
  }
  auto endpoint = std::make_unique<V2Endpoint>(fd, name, options);
  endpoint->register_name();
  return endpoint;
}

}  // namespace v2bench
