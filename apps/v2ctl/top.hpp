#pragma once

// `v2ctl top`: a view of a running broker, refreshed in place on a terminal, or one plain
// snapshot when stdout is not a terminal (or with --once).

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "v2broker/wire.hpp"

namespace v2ctl {

struct TopOptions {
  std::string socket_path;
  v2::wire::Framing framing = v2::wire::Framing::ndjson;
  std::chrono::milliseconds timeout{5000};   ///< connection and each broker call
  std::chrono::milliseconds interval{1000};  ///< between refreshes; rates are over this period
  bool once = false;                         ///< one plain snapshot, even on a terminal
};

/// Refreshes shorter than this are refused: each one costs the broker three calls.
inline constexpr std::chrono::milliseconds kMinTopInterval{50};

/// "1s", "200ms", "0.5s", "1m"; a bare number is milliseconds. Nothing for anything else, or for
/// an interval under kMinTopInterval.
[[nodiscard]] std::optional<std::chrono::milliseconds> parse_interval(std::string_view text);

/// Runs the view until q, SIGINT, SIGTERM or SIGHUP (terminal), or prints one snapshot (not a
/// terminal, or options.once). Returns the exit code. Throws Failure{Exit::io} when the broker
/// cannot be reached or goes away, after restoring the terminal.
[[nodiscard]] int run_top(const TopOptions& options);

}  // namespace v2ctl
