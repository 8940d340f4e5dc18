#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>

#include "v2broker/metrics.hpp"
#include "v2broker/tuning.hpp"

namespace v2::broker {

/// The tuning report as the payload of RPCGetTuningStatus.
[[nodiscard]] nlohmann::json to_json(const TuningReport& report);

/// Optimizer counters and latency, as reported in the broker's statistics calls.
[[nodiscard]] nlohmann::json to_json(const MetricsSnapshot& metrics);

/// What the broker itself turned away, by reason: connections refused at accept, and messages
/// it could not deliver (each answered with an error reply to its sender when it has one). The
/// optimizer queue's own drops are in MetricsSnapshot.
struct RefusalCounts {
  std::uint64_t not_allowed = 0;           ///< connections: peer not in --allow-uid/--allow-gid
  std::uint64_t too_many_connections = 0;  ///< connections: --max-connections reached
  std::uint64_t out_of_descriptors = 0;    ///< connections: accept failed, EMFILE or ENFILE
  std::uint64_t unknown_target = 0;        ///< messages: no process holds the target name
  std::uint64_t target_disconnected = 0;   ///< messages: the target closed meanwhile
  std::uint64_t slow_receiver = 0;         ///< messages: the receiver's outgoing buffer was full
  std::uint64_t undeliverable = 0;         ///< messages: not expressible in the receiver's framing
  std::uint64_t protocol_errors = 0;       ///< input refused by the decoder
  std::uint64_t error_replies = 0;         ///< every error reply, for these and all other reasons
  std::uint64_t replies_dropped = 0;  ///< broker replies not queued: receiver over its headroom
};

/// The refusal counters as the "refused" object of RPCGetMessageStats.
[[nodiscard]] nlohmann::json to_json(const RefusalCounts& counts);

/// Wall-clock nanoseconds since the epoch as RFC 3339 UTC with nanoseconds; null when zero.
[[nodiscard]] nlohmann::json rfc3339(std::int64_t ns_since_epoch);

}  // namespace v2::broker
