#pragma once

// One client connection of the load generator, to v2broker (either framing) or to the ZeroMQ
// peer broker. Every role (sender, receiver, echo peer, round-trip client) drives one Endpoint
// from one thread; an Endpoint is never shared between threads while in use.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

#include "v2broker/message.hpp"
#include "v2broker/wire.hpp"

namespace v2bench {

/// A message as the load generator sees it; the views are valid during Sink::on_message only.
struct Delivered {
  v2::MessageType type = v2::MessageType::event;
  std::string_view source;
  std::string_view id;
  std::string_view payload;
  std::string_view error;    ///< error text of an error reply
  std::int64_t received_ns;  ///< now_ns() right after the read that completed the message
};

/// Called for each message an Endpoint reads, on the thread that drives the Endpoint.
class Sink {
 public:
  virtual void on_message(const Delivered& message) = 0;

 protected:
  ~Sink() = default;
};

/// A failure to set up or keep a connection; what() has key=value context.
class EndpointError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Endpoint {
 public:
  Endpoint() = default;
  Endpoint(const Endpoint&) = delete;
  Endpoint& operator=(const Endpoint&) = delete;
  virtual ~Endpoint() = default;

  /// Where incoming messages go, including those read while a send waits for room.
  virtual void set_sink(Sink* sink) noexcept = 0;

  /// Pre-encodes the message offer() sends: an event to `target` carrying `payload` (JSON).
  virtual void set_template(const std::string& target, const std::string& payload) = 0;

  /// Queues the templated message with this id (write_id); may write when the batch is full.
  /// Blocks while the socket is full, reading incoming messages meanwhile.
  virtual void offer(std::uint64_t seq, std::uint64_t time_ns) = 0;

  /// Writes everything queued. Blocks while the socket is full, reading incoming meanwhile.
  virtual void flush() = 0;

  /// Waits at most `timeout_ms` (0: not at all) for input and delivers every message that can
  /// be read without waiting further. Returns false when the broker closed the connection.
  virtual bool poll(int timeout_ms) = 0;

  /// From Sink::on_message only: queues a reply to the message being delivered, with the same
  /// id and payload, addressed to its source. flush() sends it.
  virtual void echo_current() = 0;
};

struct V2Options {
  v2::wire::Framing framing = v2::wire::Framing::binary;
  std::size_t max_message_size = v2::wire::kDefaultMaxMessageSize;
};

/// Connects to v2broker at `socket_path` and registers `name`. Throws EndpointError.
[[nodiscard]] std::unique_ptr<Endpoint> connect_v2(const std::string& socket_path,
                                                   const std::string& name,
                                                   const V2Options& options);

/// Connects a DEALER socket with routing id `name` to the ZeroMQ peer broker at
/// ipc://`socket_path` and registers with it. `context` is a zmq context. Throws EndpointError;
/// also when the binary was built without libzmq.
[[nodiscard]] std::unique_ptr<Endpoint> connect_zmq(void* context, const std::string& socket_path,
                                                    const std::string& name);

/// A zmq context for connect_zmq (nullptr without libzmq), and its end.
[[nodiscard]] void* make_zmq_context(int io_threads);
void destroy_zmq_context(void* context) noexcept;

/// Payloads of at least this size are written from the template without being copied.
inline constexpr std::size_t kLargeMessage = std::size_t{64} << 10U;

}  // namespace v2bench
