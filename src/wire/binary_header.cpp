#include "wire/binary_header.hpp"

#include <algorithm>
#include <string>
#include <string_view>

#include "wire/json.hpp"

namespace v2::wire::detail {
namespace {

std::string_view as_chars(std::span<const std::byte> bytes) noexcept {
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

/// Reads a NUL-padded field into `out`. Returns why it is refused, or an empty string.
std::string read_name(std::span<const std::byte> field, std::string_view name, std::string& out) {
  const auto nul = std::find(field.begin(), field.end(), std::byte{0});
  const auto length = static_cast<std::size_t>(nul - field.begin());
  out.assign(as_chars(field.first(length)));

  std::string why;
  if (std::any_of(nul, field.end(), [](std::byte b) { return b != std::byte{0}; })) {
    why = "field=";
    why += name;
    why += " has bytes after its NUL padding";
  }
  if (!is_valid_utf8(out)) {
    if (why.empty()) {
      why = "field=";
      why += name;
      why += " is not valid UTF-8";
    }
    // Not text, so not read: an error reply echoing it would be refused by the sender's decoder.
    out.clear();
  }
  return why;
}

}  // namespace

std::optional<std::string> check_binary_prefix(std::span<const std::byte> prefix) {
  const std::size_t have = std::min<std::size_t>(prefix.size(), kVersionOffset + 1);
  const bool magic_ok =
      (have < 1 || prefix[0] == kBinaryMagic0) && (have < 2 || prefix[1] == kBinaryMagic1);
  if (!magic_ok) {
    std::string why = "bad magic: bytes=0x";
    append_hex_byte(why, prefix[0]);
    if (have >= 2) {
      why += " 0x";
      append_hex_byte(why, prefix[1]);
    }
    why += " expected=0x56 0x32";
    return why;
  }
  if (have > kVersionOffset &&
      std::to_integer<std::uint8_t>(prefix[kVersionOffset]) != kBinaryVersion) {
    std::string why = "unsupported version: version=";
    why += std::to_string(std::to_integer<unsigned>(prefix[kVersionOffset]));
    why += " expected=1";
    return why;
  }
  return std::nullopt;
}

std::string parse_binary_header(std::span<const std::byte, kBinaryHeaderSize> bytes,
                                BinaryHeader& header) {
  header.payload_length = 0;
  for (std::size_t i = 0; i < 4; ++i) {
    header.payload_length =
        (header.payload_length << 8U) | std::to_integer<std::size_t>(bytes[kLengthOffset + i]);
  }

  // Names first, so a refusal for another reason still carries id and correlation id.
  std::string why = read_name(bytes.subspan(kIdOffset, kBinaryIdSize), "id", header.id);
  std::string more = read_name(bytes.subspan(kCorrelationIdOffset, kBinaryCorrelationIdSize),
                               "correlation_id", header.correlation_id);
  if (why.empty()) {
    why = std::move(more);
  }
  more = read_name(bytes.subspan(kSourceOffset, kBinarySourceSize), "source", header.source);
  if (why.empty()) {
    why = std::move(more);
  }
  more = read_name(bytes.subspan(kTargetOffset, kBinaryTargetSize), "target", header.target);
  if (why.empty()) {
    why = std::move(more);
  }

  const auto type = std::to_integer<std::uint8_t>(bytes[kTypeOffset]);
  const auto encoding = std::to_integer<std::uint8_t>(bytes[kEncodingOffset]);
  if (type >= kMessageTypeCount) {
    why = "field=type value=" + std::to_string(type) + " expected=0..3";
  } else if (encoding > static_cast<std::uint8_t>(PayloadEncoding::plain)) {
    why = "field=encoding value=" + std::to_string(encoding) + " expected=0..2";
  } else if (why.empty() && header.id.empty()) {
    why = "field=id empty";
  }
  header.type = static_cast<MessageType>(type < kMessageTypeCount ? type : 0);
  header.encoding = static_cast<PayloadEncoding>(encoding <= 2 ? encoding : 0);
  return why;
}

void append_hex_byte(std::string& out, std::byte value) {
  constexpr std::string_view kDigits = "0123456789abcdef";
  const auto v = std::to_integer<unsigned>(value);
  out.push_back(kDigits[v >> 4U]);
  out.push_back(kDigits[v & 0x0FU]);
}

}  // namespace v2::wire::detail
