#pragma once

// The C++ client of the v2broker daemon: connect to its Unix socket, register a name, send and
// receive messages, call the broker's methods.
//
// Blocking API over one non-blocking Unix stream socket; every wait uses poll(2) with the
// caller's timeout. Not thread-safe: one Client is used by one thread at a time (different
// Clients are independent and may be used from different threads).

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "v2broker/message.hpp"
#include "v2broker/wire.hpp"

namespace v2 {

/// A timeout that never expires; any negative timeout means the same.
inline constexpr std::chrono::milliseconds kWaitForever{-1};

/// How long connect, register_name and call wait unless told otherwise.
inline constexpr std::chrono::milliseconds kDefaultClientTimeout{5000};

/// The socket the broker listens on by default: `$XDG_RUNTIME_DIR/v2broker.sock` when
/// XDG_RUNTIME_DIR is set and not empty, otherwise `/tmp/v2broker-<uid>.sock`. Reads the
/// environment on every call.
[[nodiscard]] std::string default_socket_path();

/// What went wrong, for callers that react differently (v2ctl maps these to exit codes).
enum class ClientErrc : std::uint8_t {
  no_broker,       ///< nothing at the socket path (ENOENT)
  stale_socket,    ///< a socket file nobody accepts on (ECONNREFUSED), or not a socket at all
  bad_path,        ///< empty, or too long for sockaddr_un::sun_path; found before connecting
  connect_failed,  ///< any other connect failure (EACCES, backlog full until the timeout, ...)
  io,              ///< a read or write failed
  hung_up,         ///< the broker closed the connection
  timeout,         ///< no reply within the timeout
  protocol,        ///< the broker sent bytes the wire codec refused, or a message that cannot be
                   ///< encoded was given to send()
  refused,         ///< the broker answered a setup call (RPCRegister) with an error reply
};

[[nodiscard]] std::string_view to_string(ClientErrc code) noexcept;

/// A client failure. what() is one line with key=value context (`socket=PATH`, the system call
/// and errno name when there is one).
class ClientError : public std::runtime_error {
 public:
  ClientError(ClientErrc code, int sys_errno, const std::string& text)
      : std::runtime_error(text), code_(code), sys_errno_(sys_errno) {}

  [[nodiscard]] ClientErrc code() const noexcept { return code_; }
  /// errno of the failed system call, 0 when no system call failed.
  [[nodiscard]] int sys_errno() const noexcept { return sys_errno_; }

 private:
  ClientErrc code_;
  int sys_errno_;
};

struct ClientOptions {
  /// ndjson or binary; Framing::unknown is refused with std::invalid_argument.
  wire::Framing framing = wire::Framing::ndjson;
  /// Longest wait for the connection to be accepted.
  std::chrono::milliseconds connect_timeout = kDefaultClientTimeout;
  /// Largest message accepted from the broker (NDJSON line or binary payload).
  std::size_t max_message_size = wire::kDefaultMaxMessageSize;
};

/// One connection to the broker.
///
/// Messages that arrive while call() or request() waits for a reply are kept, in arrival order,
/// and returned by later receive() calls. Not thread-safe: one thread at a time per Client.
class Client {
 public:
  /// Connects to the broker at `socket_path`. Throws ClientError: bad_path (checked before any
  /// system call), no_broker, stale_socket or connect_failed; std::invalid_argument for
  /// Framing::unknown. Blocks at most options.connect_timeout.
  [[nodiscard]] static Client connect(const std::string& socket_path, ClientOptions options = {});

  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;
  Client(Client&& other) noexcept;
  Client& operator=(Client&& other) noexcept;
  /// Closes the socket.
  ~Client();

  /// Claims `name` with RPCRegister. Returns when the broker accepted it. Throws ClientError:
  /// refused (the broker's error text, e.g. the name is held by another connection), timeout,
  /// hung_up, io, protocol.
  void register_name(std::string_view name,
                     std::chrono::milliseconds timeout = kDefaultClientTimeout);

  /// Writes `message` whole, resuming after partial writes and waiting while the socket buffer
  /// is full (no timeout). `source` is stamped by the broker; whatever is set here is ignored
  /// by it. Throws ClientError: protocol (the message cannot be encoded in this framing, e.g. a
  /// name too long for a binary field; nothing was written), hung_up (EPIPE/ECONNRESET: never
  /// SIGPIPE), io. After a failure part of the message may have been written: close the Client.
  void send(const Message& message);

  /// The next message: a kept one first, otherwise one read from the socket. Waits at most
  /// `timeout` (0: do not wait; kWaitForever: no limit). Returns std::nullopt on timeout.
  /// Throws ClientError: hung_up, io, protocol. After a protocol error the connection stays
  /// usable when the framing is intact; when it is lost, every later read throws protocol.
  [[nodiscard]] std::optional<Message> receive(std::chrono::milliseconds timeout);

  /// Calls a broker method: sends a request with target "broker", id `method`, the JSON
  /// `payload_json` (empty: no payload) and a fresh correlation_id, then waits for the reply
  /// with that correlation_id. Returns the reply: type response, or type error when the broker
  /// refused the call (an unknown method, a bad payload): an error reply is a normal result
  /// here, not an exception; its text is in Message::error. Throws ClientError: timeout,
  /// hung_up, io, protocol.
  [[nodiscard]] Message call(std::string_view method, std::string_view payload_json = {},
                             std::chrono::milliseconds timeout = kDefaultClientTimeout);

  /// Sends `message` after giving it a fresh correlation_id (replacing any), then waits for the
  /// message carrying that correlation_id (a response, or an error reply from the broker or
  /// the target) and returns it. Other messages are kept for receive(). Throws like call().
  [[nodiscard]] Message request(Message message,
                                std::chrono::milliseconds timeout = kDefaultClientTimeout);

  /// Waits for the message whose correlation_id is `correlation_id`, keeping all others for
  /// receive(). Returns std::nullopt on timeout. Throws ClientError: hung_up, io, protocol.
  [[nodiscard]] std::optional<Message> wait_for_reply(std::string_view correlation_id,
                                                      std::chrono::milliseconds timeout);

  /// A correlation id unique within this process (at most 20 bytes, so it fits the binary
  /// framing's field).
  [[nodiscard]] static std::string next_correlation_id();

  /// The socket, for callers that poll it with other descriptors. It is non-blocking. Poll it
  /// for readability only when pending() is 0: complete messages may already be buffered.
  /// Read and write only through this Client.
  [[nodiscard]] int fd() const noexcept { return fd_; }

  /// Complete messages kept and returned by receive() without touching the socket.
  [[nodiscard]] std::size_t pending() const noexcept { return inbox_.size(); }

  [[nodiscard]] const std::string& socket_path() const noexcept { return socket_path_; }
  [[nodiscard]] wire::Framing framing() const noexcept { return framing_; }
  /// The registered name; empty before register_name succeeded.
  [[nodiscard]] const std::string& name() const noexcept { return name_; }

 private:
  Client(int fd, std::string socket_path, const ClientOptions& options);

  struct Deadline;

  /// Moves every complete message into inbox_, reading from the socket (waiting until
  /// `deadline` for at least one byte) only when nothing complete is buffered. Returns false
  /// on timeout.
  bool read_some(const Deadline& deadline);
  /// Moves the decoder's complete messages into inbox_; throws on a protocol error.
  void drain_decoder();
  /// `what`, with the reason a broker gave for turning the connection away, if it gave one.
  std::string with_refusal_reason(const std::string& what);
  [[nodiscard]] std::string context() const;
  void close() noexcept;

  int fd_ = -1;
  std::string socket_path_;
  wire::Framing framing_ = wire::Framing::ndjson;
  std::string name_;
  wire::Decoder decoder_;
  std::deque<Message> inbox_;
  std::string out_;            ///< encode buffer, reused across send() calls
  bool framing_lost_ = false;  ///< the decoder refused the stream; nothing more can be read
};

}  // namespace v2
