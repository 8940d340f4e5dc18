#pragma once

#include <spdlog/formatter.h>

#include <memory>
#include <optional>
#include <string_view>

namespace v2::broker {

/// How the daemon writes its log lines to stderr.
enum class LogFormat : unsigned char {
  text,  ///< "2024-05-01T12:00:00.123 info message", local time, colour on a terminal
  json,  ///< one JSON object per line, for log collectors
};

/// "text" or "json"; nothing for anything else.
[[nodiscard]] std::optional<LogFormat> parse_log_format(std::string_view name) noexcept;

/// A formatter that writes each record as one line holding one JSON object:
/// {"time":"2024-05-01T12:00:00.123456Z","level":"info","message":"...","thread_id":1234,
///  "thread":"v2broker","logger":"v2broker"}. Time is UTC with microseconds (RFC 3339); every
/// string is escaped as JSON requires, and bytes that are not valid UTF-8 become U+FFFD. The
/// thread name is read when the record is formatted, so the logger must be synchronous.
[[nodiscard]] std::unique_ptr<spdlog::formatter> make_json_formatter();

/// Applies `format` to every registered logger (and so to the default one).
void apply_log_format(LogFormat format);

}  // namespace v2::broker
