#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "v2broker/config.hpp"
#include "v2broker/message.hpp"
#include "v2broker/metrics.hpp"
#include "v2broker/tuning.hpp"

namespace v2 {

/// What offer did with a message.
enum class OfferResult : unsigned char {
  accepted,          ///< queued
  accepted_evicted,  ///< queued after evicting the oldest queued message (`drop_oldest`)
  dropped,           ///< refused: queue full (`drop`, or `timeout` with zero timeout)
  timed_out,         ///< refused: no room within the offer timeout
  stopped,           ///< refused: the optimizer is stopping or stopped
};

[[nodiscard]] std::string_view to_string(OfferResult result) noexcept;

[[nodiscard]] constexpr bool is_accepted(OfferResult result) noexcept {
  return result == OfferResult::accepted || result == OfferResult::accepted_evicted;
}

/// Why an accepted message was not routed.
enum class DropReason : unsigned char { evicted, abandoned };

/// Where a routing call comes from.
struct RouteContext {
  std::size_t worker = 0;  ///< index of the calling worker
};

/// Receives the optimizer's messages. All methods run on worker threads, one message at a time
/// per worker and concurrently across workers, and must not throw. A call made for
/// Optimizer::offer_direct runs on the producer's thread instead, in the worker's stead: with
/// that worker's RouteContext and never at the same time as the worker's own calls.
class Router {
 public:
  Router() = default;
  Router(const Router&) = delete;
  Router& operator=(const Router&) = delete;
  Router(Router&&) = delete;
  Router& operator=(Router&&) = delete;
  virtual ~Router() = default;

  /// A message whose target is "broker". The router may move from `message`.
  virtual void handle_broker(Message& message, const RouteContext& context) noexcept = 0;
  /// Any other message: deliver it to `message.target` on behalf of `message.source`.
  virtual void route(Message& message, const RouteContext& context) noexcept = 0;
  /// Called after each batch a worker routed: the place to flush what the batch buffered.
  virtual void end_batch(const RouteContext& /*context*/) noexcept {}
  /// An accepted message that will never be routed. Runs on the thread that dropped it
  /// (a producer for `evicted`, the stopping thread for `abandoned`), outside any lock.
  virtual void dropped(Message& /*message*/, DropReason /*reason*/) noexcept {}
};

enum class StopMode : unsigned char {
  drain,    ///< route every accepted message, then stop
  abandon,  ///< finish the batches in progress, discard the rest and report how many
};

struct StopReport {
  std::uint64_t abandoned = 0;  ///< accepted messages discarded by this stop
};

/// A bounded queue feeding a pool of pinned worker threads that hand messages to a Router.
///
/// Messages from one source to one target are routed in the order they were offered: each
/// (source, target) pair is served by one worker. The queue bound is global over all workers.
class Optimizer {
 public:
  using StatsCallback = std::function<void(const MetricsSnapshot&)>;

  /// Validates `config` and prepares the queues; throws ConfigError naming each bad field.
  /// `router` must outlive the optimizer.
  Optimizer(Router& router, OptimizerConfig config);
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;
  Optimizer(Optimizer&&) = delete;
  Optimizer& operator=(Optimizer&&) = delete;
  /// Stops with StopMode::drain if still running.
  ~Optimizer();

  /// Called on the stats thread once per stats interval. Set before start().
  void set_stats_callback(StatsCallback callback);

  /// Applies the tunings, starts the workers and the stats thread, and returns once every
  /// worker has reported its tuning. Throws std::system_error if a thread cannot be created,
  /// std::logic_error if called twice. Offers made before start() are queued.
  void start();

  /// Offers a message under the configured policy. Blocks only under `block` and `timeout`.
  /// Safe to call from any number of threads. On any result other than an accepted one,
  /// `message` is left as it was, so the caller may still answer its sender.
  [[nodiscard]] OfferResult offer(Message&& message) noexcept;

  /// Like offer(), except that when the message's worker is asleep with nothing queued or in
  /// hand, the calling thread routes the message itself, at once, in the worker's stead (the
  /// worker waits meanwhile, so one pair's messages are still routed one at a time, in order).
  /// For a producer that has a single message and none behind it, such as a reader whose read
  /// held one request: handing it over would cost a wake-up and a switch to the worker and
  /// batch nothing. The Router is called on the calling thread, with the worker's
  /// RouteContext; the message is counted as that worker's. Never blocks unless offer() would.
  [[nodiscard]] OfferResult offer_direct(Message&& message) noexcept;

  /// Stops accepting, wakes blocked producers (they get OfferResult::stopped), then drains or
  /// abandons the queue and joins the threads. Idempotent: later calls return an empty report.
  /// Must not be called from a Router callback.
  StopReport stop(StopMode mode = StopMode::drain) noexcept;

  /// Counters and latency percentiles; safe from any thread, at any time.
  [[nodiscard]] MetricsSnapshot metrics() const;

  /// The latency histograms since start as cumulative counts at `bounds_ns` (strictly
  /// ascending, else std::invalid_argument). Safe from any thread; takes no lock the workers or
  /// producers use (counts recorded during the call may be left out, and `sum` may be read a
  /// few values apart from the counts). Allocates.
  [[nodiscard]] LatencyHistograms latency_histograms(
      std::span<const std::uint64_t> bounds_ns) const;

  /// Puts the calling thread under the configured real-time policy
  /// (TuningConfig::realtime_priority), as the workers are, and records it for tuning_report():
  /// for a thread of the caller's that is on the message path too, such as a daemon's reading
  /// thread. No-op when no real-time priority is configured; a refusal is reported, not thrown.
  void tune_message_thread();

  /// What each tuning achieved, read back from the kernel now, for every thread of the process.
  [[nodiscard]] TuningReport tuning_report() const;

  [[nodiscard]] const OptimizerConfig& config() const noexcept;
  [[nodiscard]] std::size_t worker_count() const noexcept;
  /// Kernel thread ids of the workers, by index; empty before start().
  [[nodiscard]] std::vector<pid_t> worker_tids() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace v2
