#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "broker/reports.hpp"
#include "v2broker/message.hpp"
#include "v2broker/metrics.hpp"
#include "v2broker/tuning.hpp"

namespace v2::broker {

/// The daemon's own counters, beside the optimizer's: what the I/O thread and the router count.
struct BrokerCounters {
  std::array<std::uint64_t, kMessageTypeCount> received_by_type{};  ///< read from clients
  std::uint64_t delivered = 0;  ///< queued to a receiver: routed messages and replies
  RefusalCounts refused;
  std::size_t connections = 0;
  std::size_t registered_names = 0;
};

/// Everything one scrape reports.
struct ExpositionInput {
  BrokerCounters broker;
  MetricsSnapshot optimizer;
  LatencyHistograms latency;  ///< at kLatencyBucketBoundsNs
  TuningReport tuning;
  std::int64_t start_time_ns = 0;  ///< wall clock, since the epoch
};

/// The `le` bounds of the latency histograms, 1 us to 1 s, in nanoseconds.
[[nodiscard]] std::span<const std::uint64_t> latency_bucket_bounds_ns() noexcept;

/// The Prometheus text exposition format 0.0.4 of `input`: every family with HELP and TYPE
/// lines, metric names prefixed `v2broker_`.
[[nodiscard]] std::string render_exposition(const ExpositionInput& input);

}  // namespace v2::broker
