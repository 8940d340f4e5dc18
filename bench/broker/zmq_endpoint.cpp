// Endpoint over the ZeroMQ peer broker: a DEALER socket whose routing id is the client's name.
// A message is four frames: target (source, on delivery), type (one byte), id, payload.

#include <array>
#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

#include "common.hpp"
#include "endpoint.hpp"

#ifdef V2BENCH_HAVE_ZMQ
#include <zmq.h>
#endif

namespace v2bench {

#ifdef V2BENCH_HAVE_ZMQ
namespace {

constexpr int kRegisterTimeoutMs = 5000;
constexpr int kReceiveBudget = 4096;  ///< messages delivered per poll() before returning

std::string zmq_context_text(const char* call) {
  return std::string(call) + " failed: " + zmq_strerror(zmq_errno());
}

class ZmqEndpoint final : public Endpoint {
 public:
  ZmqEndpoint(void* context, std::string socket_path, std::string name)
      : name_(std::move(name)), socket_path_(std::move(socket_path)) {
    socket_ = zmq_socket(context, ZMQ_DEALER);
    if (socket_ == nullptr) {
      throw EndpointError(context_text() + " " + zmq_context_text("zmq_socket"));
    }
    const int linger = 0;
    check(zmq_setsockopt(socket_, ZMQ_ROUTING_ID, name_.data(), name_.size()), "ZMQ_ROUTING_ID");
    check(zmq_setsockopt(socket_, ZMQ_LINGER, &linger, sizeof(linger)), "ZMQ_LINGER");
    const std::string endpoint = "ipc://" + socket_path_;
    check(zmq_connect(socket_, endpoint.c_str()), "zmq_connect");
    for (auto& frame : frames_) {
      zmq_msg_init(&frame);
    }
  }

  ZmqEndpoint(const ZmqEndpoint&) = delete;
  ZmqEndpoint& operator=(const ZmqEndpoint&) = delete;
  ~ZmqEndpoint() override {
    for (auto& frame : frames_) {
      zmq_msg_close(&frame);
    }
    zmq_close(socket_);
  }

  void set_sink(Sink* sink) noexcept override { sink_ = sink; }

  void register_name() {
    send_frames("broker", v2::MessageType::request, "RPCRegister",
                R"({"name":")" + name_ + R"("})");
    struct Reply final : Sink {
      bool done = false;
      std::string error;
      void on_message(const Delivered& m) override {
        if (m.id == "RPCRegister") {
          done = true;
          if (m.type != v2::MessageType::response) {
            error = std::string(m.payload);
          }
        }
      }
    } reply;
    Sink* saved = std::exchange(sink_, &reply);
    const std::int64_t deadline = now_ns() + std::int64_t{kRegisterTimeoutMs} * 1'000'000;
    while (!reply.done && now_ns() < deadline) {
      (void)poll(100);
    }
    sink_ = saved;
    if (!reply.done) {
      throw EndpointError(context_text() + " no reply to RPCRegister within " +
                          std::to_string(kRegisterTimeoutMs) + " ms");
    }
    if (!reply.error.empty()) {
      throw EndpointError(context_text() + " RPCRegister refused: " + reply.error);
    }
  }

  void set_template(const std::string& target, const std::string& payload) override {
    target_ = target;
    payload_ = payload;
  }

  void offer(std::uint64_t seq, std::uint64_t time_ns) override {
    write_id(id_, seq, time_ns);
    // The first frame decides: once it is accepted the whole message is (the high-water mark
    // counts messages). While it is refused for lack of room, read what came in.
    while (zmq_send(socket_, target_.data(), target_.size(), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
      if (zmq_errno() != EAGAIN && zmq_errno() != EINTR) {
        throw EndpointError(context_text() + " " + zmq_context_text("zmq_send"));
      }
      wait(ZMQ_POLLIN | ZMQ_POLLOUT, 1000);
    }
    const auto type = static_cast<char>(v2::MessageType::event);
    send_part(&type, 1, ZMQ_SNDMORE);
    send_part(id_, kIdSize, ZMQ_SNDMORE);
    if (payload_.size() >= kLargeMessage) {
      // Zero copy: the template outlives every message sent from it.
      zmq_msg_t body;
      zmq_msg_init_data(&body, payload_.data(), payload_.size(), nullptr, nullptr);
      while (zmq_msg_send(&body, socket_, 0) < 0) {
        if (zmq_errno() != EINTR) {
          zmq_msg_close(&body);
          throw EndpointError(context_text() + " " + zmq_context_text("zmq_msg_send"));
        }
      }
      return;
    }
    send_part(payload_.data(), payload_.size(), 0);
  }

  void flush() override {
    // Every offer() went to zmq's own queue, which its I/O thread writes.
  }

  bool poll(int timeout_ms) override {
    wait(ZMQ_POLLIN, timeout_ms);
    return true;
  }

  void echo_current() override {
    // Source and id frames are copied (small); the payload frame is shared by reference count
    // for large payloads (zmq_msg_copy).
    auto& source = frames_[0];
    send_part(zmq_msg_data(&source), zmq_msg_size(&source), ZMQ_SNDMORE);
    const auto type = static_cast<char>(v2::MessageType::event);
    send_part(&type, 1, ZMQ_SNDMORE);
    send_part(zmq_msg_data(&frames_[2]), zmq_msg_size(&frames_[2]), ZMQ_SNDMORE);
    zmq_msg_t body;
    zmq_msg_init(&body);
    zmq_msg_copy(&body, &frames_[3]);
    while (zmq_msg_send(&body, socket_, 0) < 0) {
      if (zmq_errno() != EINTR) {
        zmq_msg_close(&body);
        throw EndpointError(context_text() + " " + zmq_context_text("zmq_msg_send"));
      }
    }
  }

 private:
  [[nodiscard]] std::string context_text() const {
    return "name=" + name_ + " socket=ipc://" + socket_path_;
  }

  void check(int rc, const char* what) const {
    if (rc != 0) {
      throw EndpointError(context_text() + " " + zmq_context_text(what));
    }
  }

  void send_part(const void* data, std::size_t size, int flags) {
    while (zmq_send(socket_, data, size, flags) < 0) {
      if (zmq_errno() != EINTR) {
        throw EndpointError(context_text() + " " + zmq_context_text("zmq_send"));
      }
    }
  }

  void send_frames(const std::string& target, v2::MessageType type, std::string_view id,
                   const std::string& payload) {
    send_part(target.data(), target.size(), ZMQ_SNDMORE);
    const auto t = static_cast<char>(type);
    send_part(&t, 1, ZMQ_SNDMORE);
    send_part(id.data(), id.size(), ZMQ_SNDMORE);
    send_part(payload.data(), payload.size(), 0);
  }

  // Waits for `events` and delivers every message that is readable.
  void wait(short events, int timeout_ms) {
    zmq_pollitem_t item{socket_, 0, events, 0};
    const int ready = zmq_poll(&item, 1, timeout_ms);
    if (ready < 0 && zmq_errno() != EINTR) {
      throw EndpointError(context_text() + " " + zmq_context_text("zmq_poll"));
    }
    if (ready > 0 && (item.revents & ZMQ_POLLIN) != 0) {
      receive_available();
    }
  }

  void receive_available() {
    for (int n = 0; n < kReceiveBudget; ++n) {
      if (zmq_msg_recv(frames_.data(), socket_, ZMQ_DONTWAIT) < 0) {
        if (zmq_errno() == EAGAIN || zmq_errno() == EINTR) {
          return;
        }
        throw EndpointError(context_text() + " " + zmq_context_text("zmq_msg_recv"));
      }
      std::size_t parts = 1;
      while (zmq_msg_more(&frames_[parts - 1]) != 0) {
        if (parts == frames_.size()) {
          throw EndpointError(context_text() + " a message with more than 4 frames arrived");
        }
        if (zmq_msg_recv(&frames_[parts], socket_, 0) < 0) {
          throw EndpointError(context_text() + " " + zmq_context_text("zmq_msg_recv"));
        }
        ++parts;
      }
      const std::int64_t received = now_ns();
      if (parts != frames_.size() || zmq_msg_size(&frames_[1]) != 1) {
        throw EndpointError(context_text() + " a message without the four frames arrived");
      }
      if (sink_ != nullptr) {
        Delivered d;
        d.type = static_cast<v2::MessageType>(*static_cast<const char*>(zmq_msg_data(&frames_[1])));
        d.source = view(frames_[0]);
        d.id = view(frames_[2]);
        d.payload = view(frames_[3]);
        if (d.type == v2::MessageType::error) {
          d.error = d.payload;
        }
        d.received_ns = received;
        sink_->on_message(d);
      }
    }
  }

  static std::string_view view(zmq_msg_t& frame) noexcept {
    return {static_cast<const char*>(zmq_msg_data(&frame)), zmq_msg_size(&frame)};
  }

  void* socket_ = nullptr;
  std::string name_;
  std::string socket_path_;
  Sink* sink_ = nullptr;
  std::array<zmq_msg_t, 4> frames_{};
  std::string target_;
  std::string payload_;
  char id_[kIdSize] = {};
};

}  // namespace

std::unique_ptr<Endpoint> connect_zmq(void* context, const std::string& socket_path,
                                      const std::string& name) {
  auto endpoint = std::make_unique<ZmqEndpoint>(context, socket_path, name);
  endpoint->register_name();
  return endpoint;
}

void* make_zmq_context(int io_threads) {
  void* context = zmq_ctx_new();
  if (context != nullptr) {
    (void)zmq_ctx_set(context, ZMQ_IO_THREADS, io_threads);
    (void)zmq_ctx_set(context, ZMQ_MAX_SOCKETS, 4096);
  }
  return context;
}

void destroy_zmq_context(void* context) noexcept {
  if (context != nullptr) {
    (void)zmq_ctx_term(context);
  }
}

#else

std::unique_ptr<Endpoint> connect_zmq(void*, const std::string&, const std::string&) {
  throw EndpointError("--peer zmq: v2bench was built without libzmq (install libzmq3-dev)");
}

void* make_zmq_context(int) {
  return nullptr;
}
void destroy_zmq_context(void*) noexcept {}

#endif

}  // namespace v2bench
