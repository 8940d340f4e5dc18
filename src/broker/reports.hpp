#pragma once

#include <nlohmann/json.hpp>

#include "v2broker/metrics.hpp"
#include "v2broker/tuning.hpp"

namespace v2::broker {

/// The tuning report as the payload of RPCGetTuningStatus.
[[nodiscard]] nlohmann::json to_json(const TuningReport& report);

/// Optimizer counters and latency, as reported in the broker's statistics calls.
[[nodiscard]] nlohmann::json to_json(const MetricsSnapshot& metrics);

/// Wall-clock nanoseconds since the epoch as RFC 3339 UTC with nanoseconds; null when zero.
[[nodiscard]] nlohmann::json rfc3339(std::int64_t ns_since_epoch);

}  // namespace v2::broker
