#pragma once

// The 128-byte header of the binary framing, private to v2_wire.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "v2broker/message.hpp"
#include "v2broker/wire.hpp"

namespace v2::wire::detail {

inline constexpr std::size_t kMagicOffset = 0;
inline constexpr std::size_t kVersionOffset = 2;
inline constexpr std::size_t kEncodingOffset = 3;
inline constexpr std::size_t kTypeOffset = 4;
inline constexpr std::size_t kReservedOffset = 5;
inline constexpr std::size_t kLengthOffset = 8;
inline constexpr std::size_t kIdOffset = 12;
inline constexpr std::size_t kSourceOffset = kIdOffset + kBinaryIdSize;
inline constexpr std::size_t kTargetOffset = kSourceOffset + kBinarySourceSize;
inline constexpr std::size_t kCorrelationIdOffset = kTargetOffset + kBinaryTargetSize;

static_assert(kSourceOffset == 44 && kTargetOffset == 76 && kCorrelationIdOffset == 108,
              "field offsets must match PROTOCOL.md");
static_assert(kCorrelationIdOffset + kBinaryCorrelationIdSize == kBinaryHeaderSize,
              "the header fields must fill exactly 128 bytes");

/// A decoded header.
struct BinaryHeader {
  MessageType type = MessageType::request;
  PayloadEncoding encoding = PayloadEncoding::json;
  std::size_t payload_length = 0;
  std::string id;
  std::string source;
  std::string target;
  std::string correlation_id;
};

/// Checks the magic and version bytes among the first `prefix` bytes of a frame (any number,
/// even fewer than three). Returns why they are wrong, or nothing.
[[nodiscard]] std::optional<std::string> check_binary_prefix(std::span<const std::byte> prefix);

/// Decodes a header whose magic and version were checked. Always fills the length and as many
/// fields as it can (a name that is not valid UTF-8 is left empty); returns why the frame is
/// refused (bad type or encoding, a name that is not NUL-padded or not UTF-8), or an empty
/// string. Reserved bytes are ignored.
[[nodiscard]] std::string parse_binary_header(std::span<const std::byte, kBinaryHeaderSize> bytes,
                                              BinaryHeader& header);

/// Appends two lowercase hex digits.
void append_hex_byte(std::string& out, std::byte value);

}  // namespace v2::wire::detail
