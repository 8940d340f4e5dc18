#pragma once

#include <sys/socket.h>

#include <chrono>
#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

namespace v2::broker {

/// A TCP address for the metrics endpoint: "127.0.0.1:9464" or "[::1]:9464", numeric only.
struct MetricsEndpoint {
  sockaddr_storage address{};
  socklen_t length = 0;

  /// 127.0.0.0/8, ::1, or an IPv4-mapped loopback address.
  [[nodiscard]] bool is_loopback() const noexcept;
  /// "127.0.0.1:9464", "[::1]:9464".
  [[nodiscard]] std::string to_string() const;
};

/// Parses `text`; on failure returns nothing and says why in `problem`. Port 0 asks the kernel
/// for any free port.
[[nodiscard]] std::optional<MetricsEndpoint> parse_metrics_endpoint(std::string_view text,
                                                                    std::string& problem);

/// Bounds on what scrapers may cost the broker.
struct MetricsHttpLimits {
  std::size_t max_clients = 4;           ///< connections served at once; others wait in the backlog
  std::size_t max_request_bytes = 8192;  ///< request line and headers
  /// A client must have sent its whole request this long after it connected.
  std::chrono::milliseconds request_timeout{2000};
  /// A client must have read the whole response this long after it connected.
  std::chrono::milliseconds exchange_timeout{10000};
};

/// A minimal HTTP/1.1 server for Prometheus scrapes, on a thread of its own ("v2-metrics"):
/// `GET /metrics` (and HEAD) answers `render()` as text/plain version 0.0.4, other paths 404,
/// other methods 405, and every response closes the connection. Sockets are non-blocking and
/// every client has deadlines, so a slow or silent scraper holds one of `max_clients` slots
/// until its deadline and nothing else; nothing here ever waits for the broker's I/O thread.
///
/// Written here rather than taken from cpp-httplib (Debian 12: libcpp-httplib-dev 0.11.4):
/// that serves each connection on a pool thread whose job queue is unbounded and cannot refuse
/// work, and its timeout applies to each read, not to the request, so a scraper trickling header
/// lines holds a thread for as long as it likes; it also links OpenSSL, zlib and brotli. One
/// poll loop with a connection cap and per-connection deadlines bounds both, and serving one
/// read-only path needs no more. prometheus-cpp's pull exposer embeds civetweb with a thread
/// pool of its own, and the broker's counters already exist as snapshots to render.
class MetricsHttpServer {
 public:
  using Render = std::function<std::string()>;

  /// Binds and listens (throws std::runtime_error naming the address and errno), then starts
  /// the thread. `render` runs on that thread, once per scrape, and must be thread-safe with
  /// respect to the rest of the broker.
  MetricsHttpServer(const MetricsEndpoint& endpoint, Render render, MetricsHttpLimits limits = {});
  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;
  MetricsHttpServer(MetricsHttpServer&&) = delete;
  MetricsHttpServer& operator=(MetricsHttpServer&&) = delete;
  /// Stops the thread and closes every connection.
  ~MetricsHttpServer();

  /// The address actually bound (with the port the kernel chose for port 0).
  [[nodiscard]] const std::string& bound_address() const noexcept { return bound_; }

 private:
  void serve() noexcept;

  Render render_;
  MetricsHttpLimits limits_;
  int listen_fd_ = -1;
  int stop_fd_ = -1;  // eventfd: the destructor wakes the thread with it
  std::string bound_;
  std::thread thread_;
};

}  // namespace v2::broker
