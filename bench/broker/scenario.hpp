#pragma once

// The three load patterns of v2bench and their verified results.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "optimizer/histogram.hpp"
#include "v2broker/wire.hpp"

namespace v2bench {

enum class Mode : std::uint8_t {
  throughput,  ///< senders write as fast as the broker takes; receivers verify and time
  roundtrip,   ///< each client sends one message, an echo peer returns it, the client times it
  paced,       ///< open loop at a fixed rate; latency from each message's intended send time
};

enum class Peer : std::uint8_t { v2broker, zmq };

struct ScenarioConfig {
  Mode mode = Mode::throughput;
  Peer peer = Peer::v2broker;
  v2::wire::Framing framing = v2::wire::Framing::binary;
  std::size_t size = 64;         ///< payload bytes
  std::size_t senders = 1;       ///< sending clients (round-trip clients)
  std::size_t receivers = 1;     ///< receiving clients (echo peers); sender i uses i % receivers
  double duration_s = 2.0;       ///< sending time, when count is 0
  std::uint64_t count = 0;       ///< messages per sender; 0: use duration_s
  double rate = 10000.0;         ///< paced: messages per second over all senders
  double warmup_s = 0.0;         ///< messages sent earlier are verified but not timed
  double drain_timeout_s = 5.0;  ///< wait for stragglers after the senders finished
  std::string socket_path;       ///< Unix socket (v2broker) or ipc:// path (zmq)
  std::string prefix;            ///< names are <prefix>s<i>, <prefix>r<i>
  int zmq_io_threads = 1;
};

struct ScenarioResult {
  std::uint64_t sent = 0;
  std::uint64_t delivered = 0;     ///< arrived intact, in order, exactly once
  std::uint64_t rejected = 0;      ///< error replies from the broker (drops it admitted)
  std::uint64_t lost = 0;          ///< sent - delivered (includes rejected)
  std::uint64_t out_of_order = 0;  ///< arrived after a later message of the same sender
  std::uint64_t gaps = 0;          ///< places where a sender's sequence skipped messages
  std::uint64_t corrupt = 0;       ///< payload, id or source not as sent
  std::uint64_t unexpected = 0;    ///< messages no sender of this run sent
  double seconds = 0.0;            ///< measured window
  double messages_per_s = 0.0;
  double payload_bytes_per_s = 0.0;
  double max_send_lateness_us = 0.0;    ///< paced: how late the worst message left its sender
  double sender_cpu_max = 0.0;          ///< busiest sending thread, share of one CPU
  double receiver_cpu_max = 0.0;        ///< busiest receiving thread, share of one CPU
  v2::detail::HistogramCounts latency;  ///< ns: one-way, or round trip in roundtrip mode
  std::vector<std::string> failures;    ///< why the run is not valid; empty when it is

  [[nodiscard]] bool ok() const noexcept { return failures.empty(); }
};

/// Connects every client, runs the scenario, verifies every message. Throws EndpointError when
/// a client cannot connect or the connection breaks; a completed run with loss or corruption
/// returns normally with `failures` filled.
[[nodiscard]] ScenarioResult run_scenario(const ScenarioConfig& config);

}  // namespace v2bench
