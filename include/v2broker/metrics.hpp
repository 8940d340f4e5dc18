#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "v2broker/message.hpp"

namespace v2 {

/// Percentiles of a latency distribution, in nanoseconds. Values are bucket upper bounds with
/// under 1% relative error; `mean` is exact, and so is `max` for figures since start (over a
/// stats interval it is a bucket bound too).
struct LatencySummary {
  std::uint64_t count = 0;
  std::uint64_t p50 = 0;
  std::uint64_t p99 = 0;
  std::uint64_t p999 = 0;
  std::uint64_t max = 0;
  double mean = 0.0;
};

/// A latency distribution as cumulative counts at chosen bounds, for exposition formats with
/// fixed buckets (Prometheus). The internal buckets are exact below 256 ns and under 1/128 of
/// their values wide above; a bound that falls inside one counts only the buckets wholly at or
/// below it, so `cumulative[i]` never includes a value above `bounds[i]` but may leave out values
/// less than 1/128 below it (they are counted at the next bound).
struct LatencyHistogram {
  std::vector<std::uint64_t> bounds;      ///< nanoseconds, ascending, as asked
  std::vector<std::uint64_t> cumulative;  ///< values at or below each bound, as above
  std::uint64_t count = 0;                ///< every value; never less than any cumulative count
  std::uint64_t sum = 0;                  ///< nanoseconds, of every value
};

/// The optimizer's two latency distributions since start (see MetricsSnapshot).
struct LatencyHistograms {
  LatencyHistogram queue;  ///< offer to taken by a worker
  LatencyHistogram route;  ///< time in the router per message
};

/// Messages the optimizer took responsibility for and will not route, by reason.
struct DropCounts {
  std::uint64_t full = 0;       ///< refused: queue full under `drop`, or `timeout` with zero wait
  std::uint64_t timed_out = 0;  ///< refused: no room within the offer timeout
  std::uint64_t stopped = 0;    ///< refused: the optimizer is stopping or stopped
  std::uint64_t evicted = 0;    ///< accepted, then evicted by a newer message (`drop_oldest`)
  std::uint64_t abandoned = 0;  ///< accepted, then discarded by stop(StopMode::abandon)

  [[nodiscard]] std::uint64_t total() const noexcept {
    return full + timed_out + stopped + evicted + abandoned;
  }
};

struct WorkerMetrics {
  std::uint64_t routed = 0;   ///< messages this worker handed to the router
  std::uint64_t batches = 0;  ///< batches it took from its queue
  std::size_t queued = 0;     ///< messages waiting in its queue
};

/// A snapshot of the optimizer's counters.
///
/// The queue counters are taken as one consistent cut (queues briefly locked), so
/// offered == routed + dropped.total() + queued + in_flight holds exactly in every snapshot, and
/// queued never exceeds capacity. Latency figures are read without the cut.
struct MetricsSnapshot {
  std::chrono::steady_clock::time_point taken_at;
  std::uint64_t offered = 0;
  std::uint64_t routed = 0;
  DropCounts dropped;
  std::uint64_t queued = 0;     ///< accepted and waiting in a queue
  std::uint64_t in_flight = 0;  ///< taken by a worker, not yet routed
  std::array<std::uint64_t, kMessageTypeCount> routed_by_type{};
  std::size_t capacity = 0;
  double saturation = 0.0;           ///< queued / capacity, 0..1
  double messages_per_second = 0.0;  ///< routed over the last complete stats interval
  std::vector<WorkerMetrics> workers;
  LatencySummary queue_latency;         ///< offer to taken by a worker, since start
  LatencySummary route_latency;         ///< time in the router per message, since start
  LatencySummary recent_queue_latency;  ///< as queue_latency, over the last stats interval
  LatencySummary recent_route_latency;  ///< as route_latency, over the last stats interval
};

}  // namespace v2
