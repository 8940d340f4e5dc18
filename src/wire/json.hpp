#pragma once

// JSON helpers of the wire codec, private to v2_wire. simdjson stays out of this header.

#include <cstddef>
#include <string>
#include <string_view>

#include "v2broker/message.hpp"
#include "v2broker/wire.hpp"

namespace v2::wire::detail {

/// Readable bytes simdjson needs after the end of its input (SIMDJSON_PADDING, checked in
/// json.cpp). Their content does not matter.
inline constexpr std::size_t kJsonPadding = 64;

/// Parses one NDJSON line (without its '\n') into `message`. The line must be followed by
/// kJsonPadding readable bytes. Returns true on success; otherwise fills `error` (text, and id
/// and correlation id when they were read) and returns false. Throws only std::bad_alloc.
[[nodiscard]] bool decode_ndjson_line(std::string_view line, Message& message,
                                      ProtocolError& error);

/// Checks that `text` is exactly one valid JSON value (surrounding whitespace allowed). `text`
/// must be followed by kJsonPadding readable bytes. Returns an empty string if valid, otherwise
/// why not.
[[nodiscard]] std::string validate_json(std::string_view text);

/// Reads the error text of a binary error frame's JSON payload, {"error":"text"}. Returns true
/// and sets `text`, or returns false and sets `why`.
[[nodiscard]] bool read_error_payload(std::string_view payload, std::string& text,
                                      std::string& why);

[[nodiscard]] bool is_valid_utf8(std::string_view text) noexcept;

/// Appends `text` as a JSON string (quotes included). `text` must be valid UTF-8. Escapes '"',
/// '\\', control characters and U+2028/U+2029.
void append_json_string(std::string& out, std::string_view text);

/// Appends `bytes` as a printable excerpt for error texts: at most `max` bytes, with
/// non-printable bytes as \xNN.
void append_excerpt(std::string& out, std::string_view bytes, std::size_t max = 32);

}  // namespace v2::wire::detail
