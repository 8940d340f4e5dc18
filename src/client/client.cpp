#include "v2broker/client.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "sys/error.hpp"
#include "wire/json.hpp"

namespace v2 {
namespace {

using Clock = std::chrono::steady_clock;

/// Bytes asked of the decoder for each read(2).
constexpr std::size_t kReadChunk = std::size_t{64} << 10U;

/// Pause between connect attempts while the broker's listen backlog is full.
constexpr std::chrono::milliseconds kBacklogRetryPause{5};

std::string socket_kv(const std::string& path) {
  return sys::kv("socket", path);
}

/// Wraps a connect(2) failure in the ClientError a person can act on.
ClientError connect_error(const sys::SysError& error, const std::string& path) {
  switch (error.code) {
    case ENOENT:
      return {ClientErrc::no_broker, error.code,
              "no broker listening at " + path + " (start it with v2broker): " + error.message};
    case ECONNREFUSED: {
      struct stat info {};
      if (::stat(path.c_str(), &info) == 0 && !S_ISSOCK(info.st_mode)) {
        return {ClientErrc::stale_socket, error.code,
                path + " is not a socket (is the socket path right?): " + error.message};
      }
      return {ClientErrc::stale_socket, error.code,
              "stale socket at " + path +
                  ": no broker accepts connections on it (the broker exited; start v2broker "
                  "again): " +
                  error.message};
    }
    case EACCES:
    case EPERM:
      return {ClientErrc::connect_failed, error.code,
              "no permission to connect to " + path +
                  " (the socket or a directory above it is not accessible): " + error.message};
    case EAGAIN:
      return {ClientErrc::connect_failed, error.code,
              "the broker at " + path +
                  " did not accept the connection in time (its listen backlog is full): " +
                  error.message};
    default:
      return {ClientErrc::connect_failed, error.code,
              "cannot connect to the broker at " + path + ": " + error.message};
  }
}

}  // namespace

/// When a wait ends: a point in time, or never.
struct Client::Deadline {
  bool forever = false;
  Clock::time_point at{};

  static Deadline after(std::chrono::milliseconds timeout) {
    // Negative means no limit; so does anything beyond a year, which would overflow the clock.
    if (timeout < std::chrono::milliseconds::zero() || timeout > std::chrono::hours(24 * 365)) {
      return {true, {}};
    }
    return {false, Clock::now() + timeout};
  }

  /// Milliseconds for poll(2), rounded up so a wait never ends early; -1 for no limit.
  [[nodiscard]] int poll_timeout() const {
    if (forever) {
      return -1;
    }
    const auto left = at - Clock::now();
    if (left <= Clock::duration::zero()) {
      return 0;
    }
    const auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
    return static_cast<int>(std::min<std::chrono::milliseconds::rep>(ms, INT_MAX));
  }

  [[nodiscard]] bool expired() const { return !forever && Clock::now() >= at; }
};

std::string default_socket_path() {
  const char* runtime_dir = std::getenv("XDG_RUNTIME_DIR");
  if (runtime_dir != nullptr && *runtime_dir != '\0') {
    std::string path = runtime_dir;
    if (path.back() != '/') {
      path.push_back('/');
    }
    path.append("v2broker.sock");
    return path;
  }
  return "/tmp/v2broker-" + std::to_string(::getuid()) + ".sock";
}

std::string_view to_string(ClientErrc code) noexcept {
  switch (code) {
    case ClientErrc::no_broker:
      return "no_broker";
    case ClientErrc::stale_socket:
      return "stale_socket";
    case ClientErrc::bad_path:
      return "bad_path";
    case ClientErrc::connect_failed:
      return "connect_failed";
    case ClientErrc::io:
      return "io";
    case ClientErrc::hung_up:
      return "hung_up";
    case ClientErrc::timeout:
      return "timeout";
    case ClientErrc::protocol:
      return "protocol";
    case ClientErrc::refused:
      return "refused";
  }
  return "unknown";
}

Client Client::connect(const std::string& socket_path, ClientOptions options) {
  if (options.framing == wire::Framing::unknown) {
    throw std::invalid_argument("Client::connect: framing must be ndjson or binary");
  }

  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (socket_path.empty()) {
    throw ClientError(ClientErrc::bad_path, 0, "socket path is empty");
  }
  if (socket_path.size() >= sizeof address.sun_path) {
    throw ClientError(ClientErrc::bad_path, 0,
                      "socket path too long: " + std::to_string(socket_path.size()) +
                          " bytes, at most " + std::to_string(sizeof address.sun_path - 1) +
                          " fit a Unix socket address (" + socket_kv(socket_path) + ")");
  }
  std::memcpy(address.sun_path, socket_path.data(), socket_path.size());

  auto created = sys::call_errno(
      "socket", [] { return ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0); },
      [&] { return socket_kv(socket_path); });
  if (!created) {
    throw ClientError(ClientErrc::connect_failed, created.code(),
                      "cannot create a Unix socket: " + created.error().message);
  }
  const int fd = created.value();

  const Deadline deadline = Deadline::after(options.connect_timeout);
  while (true) {
    // A non-blocking AF_UNIX connect completes at once or fails; EAGAIN means the listen
    // backlog is full, and the kernel offers no readiness event for it, so retry after a pause.
    auto connected = sys::call_errno(
        "connect",
        [&] { return ::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address); },
        [&] { return socket_kv(socket_path); });
    if (connected) {
      break;
    }
    const int code = connected.code();
    if (code == EINTR) {
      continue;
    }
    if (code == EAGAIN && !deadline.expired()) {
      int pause = static_cast<int>(kBacklogRetryPause.count());
      if (!deadline.forever) {
        pause = std::min(pause, deadline.poll_timeout());
      }
      ::poll(nullptr, 0, pause);  // a plain sleep; its result carries no information
      continue;
    }
    ::close(fd);
    throw connect_error(connected.error(), socket_path);
  }

  return {fd, socket_path, options};
}

Client::Client(int fd, std::string socket_path, const ClientOptions& options)
    : fd_(fd),
      socket_path_(std::move(socket_path)),
      framing_(options.framing),
      decoder_(wire::DecoderConfig{.max_message_size = options.max_message_size,
                                   .framing = options.framing}) {}

Client::Client(Client&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      socket_path_(std::move(other.socket_path_)),
      framing_(other.framing_),
      name_(std::move(other.name_)),
      decoder_(std::move(other.decoder_)),
      inbox_(std::move(other.inbox_)),
      out_(std::move(other.out_)),
      framing_lost_(other.framing_lost_) {}

Client& Client::operator=(Client&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = std::exchange(other.fd_, -1);
    socket_path_ = std::move(other.socket_path_);
    framing_ = other.framing_;
    name_ = std::move(other.name_);
    decoder_ = std::move(other.decoder_);
    inbox_ = std::move(other.inbox_);
    out_ = std::move(other.out_);
    framing_lost_ = other.framing_lost_;
  }
  return *this;
}

Client::~Client() {
  close();
}

void Client::close() noexcept {
  if (fd_ >= 0) {
    ::close(fd_);  // nothing useful to do on failure: the descriptor is released either way
    fd_ = -1;
  }
}

std::string Client::context() const {
  return socket_kv(socket_path_) + " fd=" + std::to_string(fd_);
}

std::string Client::next_correlation_id() {
  // Only uniqueness matters: no other memory is published through this counter.
  static std::atomic<std::uint64_t> sequence{0};
  const std::uint64_t n = sequence.fetch_add(1, std::memory_order_relaxed) & 0xFF'FFFF'FFFFULL;
  char text[wire::kBinaryCorrelationIdSize + 1];
  std::snprintf(text, sizeof text, "v2-%x-%llx", static_cast<unsigned>(::getpid()),
                static_cast<unsigned long long>(n));
  return text;
}

void Client::send(const Message& message) {
  if (fd_ < 0) {
    throw ClientError(ClientErrc::io, EBADF, "send on a closed client");
  }
  out_.clear();
  const wire::EncodeResult encoded = wire::encode(message, framing_, out_);
  if (!encoded) {
    throw ClientError(ClientErrc::protocol, 0,
                      "cannot encode the message: " + encoded.text + " (id=" + message.id +
                          " target=" + message.target + " " + context() + ")");
  }

  std::size_t written = 0;
  while (written < out_.size()) {
    auto sent = sys::call_errno(
        "send",
        [&] { return ::send(fd_, out_.data() + written, out_.size() - written, MSG_NOSIGNAL); },
        [&] { return context(); });
    if (sent) {
      written += static_cast<std::size_t>(sent.value());
      continue;
    }
    const int code = sent.code();
    if (code == EINTR) {
      continue;
    }
    if (code == EAGAIN) {
      pollfd entry{fd_, POLLOUT, 0};
      auto ready = sys::call_errno(
          "poll", [&] { return ::poll(&entry, 1, -1); }, [&] { return context(); });
      if (!ready && ready.code() != EINTR) {
        throw ClientError(ClientErrc::io, ready.code(), "send: " + ready.error().message);
      }
      continue;
    }
    if (code == EPIPE || code == ECONNRESET) {
      throw ClientError(
          ClientErrc::hung_up, code,
          with_refusal_reason("the broker closed the connection: " + sent.error().message));
    }
    throw ClientError(ClientErrc::io, code, "cannot write to the broker: " + sent.error().message);
  }
}

// A broker that turns a connection away (not allowed, too many connections) sends one error
// line and closes; a client busy writing or waiting for a reply sees only the hang-up. Reads
// what is still pending, without waiting, and adds the broker's own words.
std::string Client::with_refusal_reason(const std::string& what) {
  for (int reads = 0; reads < 16; ++reads) {
    const std::span<std::byte> space = decoder_.writable(kReadChunk);
    const ssize_t n = ::recv(fd_, space.data(), space.size(), MSG_DONTWAIT);
    if (n <= 0) {
      break;
    }
    decoder_.commit(static_cast<std::size_t>(n));
  }
  try {
    drain_decoder();
  } catch (const ClientError&) {
    // What could be decoded is in the inbox; the rest does not matter on a lost connection.
  }
  const auto refusal = std::find_if(inbox_.begin(), inbox_.end(), [](const Message& m) {
    return m.type == MessageType::error && m.source == kBrokerName &&
           m.id == wire::kProtocolErrorId && m.correlation_id.empty();
  });
  return refusal == inbox_.end() ? what : what + "; the broker said: " + refusal->error;
}

void Client::drain_decoder() {
  while (true) {
    Message message;
    wire::ProtocolError error;
    const wire::DecodeStatus status = decoder_.poll(message, error);
    if (status == wire::DecodeStatus::need_more) {
      return;
    }
    if (status == wire::DecodeStatus::message) {
      inbox_.push_back(std::move(message));
      continue;
    }
    if (error.after == wire::AfterError::close) {
      framing_lost_ = true;
    }
    throw ClientError(
        ClientErrc::protocol, 0,
        "the broker sent what the client cannot decode: " + error.text + " (" + context() + ")");
  }
}

bool Client::read_some(const Deadline& deadline) {
  if (fd_ < 0) {
    throw ClientError(ClientErrc::io, EBADF, "receive on a closed client");
  }
  if (framing_lost_) {
    throw ClientError(
        ClientErrc::protocol, 0,
        "the connection's framing was lost after a decoding error; reconnect (" + context() + ")");
  }
  const std::size_t before = inbox_.size();
  drain_decoder();
  if (inbox_.size() > before) {
    return true;
  }

  while (true) {
    const std::span<std::byte> space = decoder_.writable(kReadChunk);
    auto received = sys::call_errno(
        "recv", [&] { return ::recv(fd_, space.data(), space.size(), 0); },
        [&] { return context(); });
    if (received) {
      if (received.value() == 0) {
        throw ClientError(
            ClientErrc::hung_up, 0,
            with_refusal_reason("the broker closed the connection (" + context() + ")"));
      }
      decoder_.commit(static_cast<std::size_t>(received.value()));
      drain_decoder();
      return true;
    }

    const int code = received.code();
    if (code == EINTR) {
      continue;
    }
    if (code == ECONNRESET) {
      throw ClientError(
          ClientErrc::hung_up, code,
          with_refusal_reason("the broker reset the connection: " + received.error().message));
    }
    if (code != EAGAIN) {
      throw ClientError(ClientErrc::io, code,
                        "cannot read from the broker: " + received.error().message);
    }

    pollfd entry{fd_, POLLIN, 0};
    auto ready = sys::call_errno(
        "poll", [&] { return ::poll(&entry, 1, deadline.poll_timeout()); },
        [&] { return context(); });
    if (!ready) {
      if (ready.code() == EINTR) {
        continue;
      }
      throw ClientError(ClientErrc::io, ready.code(), "receive: " + ready.error().message);
    }
    if (ready.value() == 0) {
      return false;
    }
  }
}

std::optional<Message> Client::receive(std::chrono::milliseconds timeout) {
  const Deadline deadline = Deadline::after(timeout);
  while (inbox_.empty()) {
    if (!read_some(deadline)) {
      return std::nullopt;
    }
  }
  Message message = std::move(inbox_.front());
  inbox_.pop_front();
  return message;
}

std::optional<Message> Client::wait_for_reply(std::string_view correlation_id,
                                              std::chrono::milliseconds timeout) {
  const Deadline deadline = Deadline::after(timeout);
  std::size_t scanned = 0;
  while (true) {
    const auto begin = inbox_.begin() + static_cast<std::ptrdiff_t>(scanned);
    const auto found = std::find_if(
        begin, inbox_.end(), [&](const Message& m) { return m.correlation_id == correlation_id; });
    if (found != inbox_.end()) {
      Message reply = std::move(*found);
      inbox_.erase(found);
      return reply;
    }
    scanned = inbox_.size();
    if (!read_some(deadline)) {
      return std::nullopt;  // read_some adds nothing when it times out
    }
  }
}

Message Client::request(Message message, std::chrono::milliseconds timeout) {
  message.correlation_id = next_correlation_id();
  send(message);

  std::optional<Message> reply = wait_for_reply(message.correlation_id, timeout);
  if (!reply) {
    throw ClientError(ClientErrc::timeout, 0,
                      "no reply within " + std::to_string(timeout.count()) +
                          " ms (id=" + message.id + " target=" + message.target +
                          " correlation_id=" + message.correlation_id + " " + context() + ")");
  }
  return std::move(*reply);
}

Message Client::call(std::string_view method, std::string_view payload_json,
                     std::chrono::milliseconds timeout) {
  Message message;
  message.type = MessageType::request;
  message.id = method;
  message.target = kBrokerName;
  if (!payload_json.empty()) {
    message.payload = Payload::copy_of(payload_json);
  }
  return request(std::move(message), timeout);
}

void Client::register_name(std::string_view name, std::chrono::milliseconds timeout) {
  std::string payload = "{\"name\":";
  wire::detail::append_json_string(payload, name);
  payload.push_back('}');

  const Message reply = call("RPCRegister", payload, timeout);
  if (reply.type == MessageType::error) {
    throw ClientError(ClientErrc::refused, 0,
                      "the broker refused to register name=" + std::string(name) + ": " +
                          reply.error + " (" + context() + ")");
  }
  name_ = name;
}

}  // namespace v2
