#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "broker/access.hpp"
#include "v2broker/config.hpp"
#include "v2broker/tuning.hpp"

namespace v2::broker {

/// What the broker does with a message for a receiver whose outgoing buffer is full.
enum class SlowReceiverPolicy : unsigned char {
  drop,        ///< drop the message, count it, and tell the sender with an error reply
  disconnect,  ///< close the receiver's connection (its name is freed)
};

struct BrokerOptions {
  std::string socket_path;
  mode_t socket_mode = 0600;
  /// Group of the socket file; the broker's effective group when unset.
  std::optional<gid_t> socket_group;
  /// Which peers may connect (SO_PEERCRED); everyone who can open the socket when empty.
  AccessPolicy access;
  OptimizerConfig optimizer;
  std::size_t max_message_size = std::size_t{50} << 20U;
  /// Bytes queued for one receiver before the slow-receiver policy applies.
  std::size_t max_outgoing_bytes = std::size_t{64} << 20U;
  SlowReceiverPolicy slow_receiver = SlowReceiverPolicy::drop;
  /// Under the block policy, senders wait for a congested receiver while it reads; once it has
  /// read nothing for this long, they stop waiting and the slow-receiver policy applies.
  std::chrono::milliseconds stall_timeout{1000};
  std::size_t max_connections = 4096;
  std::size_t max_names_per_connection = 16;
  /// Period of the one-line stats log; zero: off.
  std::chrono::milliseconds stats_log_interval{0};
  /// Longest wait, at shutdown, for receivers to take the messages already routed to them.
  std::chrono::milliseconds shutdown_timeout{5000};
};

/// The broker daemon: a Unix socket, an epoll I/O loop on the calling thread, and the optimizer's
/// workers routing between connected processes.
class Server {
 public:
  /// Opens the socket and starts the optimizer; throws std::runtime_error (socket problems) or
  /// ConfigError (bad settings). SIGTERM, SIGINT, SIGHUP and SIGPIPE must already be blocked
  /// in every thread (see block_signals), so that run() can take them through a signalfd.
  explicit Server(BrokerOptions options);
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;
  Server(Server&&) = delete;
  Server& operator=(Server&&) = delete;
  ~Server();

  /// Puts the calling thread, which must be the one that calls run(), under the real-time
  /// policy when --realtime-priority asks for it, as the workers are. run() does it when it was
  /// not done before; call it first to have it in the tuning report, after starting any thread
  /// that should stay under the normal policy (threads started later do not inherit it).
  void tune_reading_thread();

  /// Serves until SIGTERM, SIGINT or SIGHUP, then stops accepting, delivers every accepted message
  /// to connected receivers (waiting at most shutdown_timeout for slow ones) and returns 0.
  int run();

  [[nodiscard]] TuningReport tuning_report() const;
  [[nodiscard]] const std::string& socket_path() const noexcept;
  /// Every counter, gauge and histogram in the Prometheus text format (prometheus.hpp). Safe
  /// from any thread while the server exists; takes no lock the I/O thread waits for longer
  /// than a metrics snapshot.
  [[nodiscard]] std::string prometheus_text() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

/// Blocks SIGTERM, SIGINT and SIGHUP in the calling thread (threads created later inherit the mask)
/// and ignores SIGPIPE. Call before anything starts a thread.
void block_signals();

}  // namespace v2::broker
