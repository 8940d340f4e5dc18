#include "common.hpp"

#include <array>
#include <cstring>

namespace v2bench {
namespace {

constexpr std::array<char, 16> kHex = {'0', '1', '2', '3', '4', '5', '6', '7',
                                       '8', '9', 'a', 'b', 'c', 'd', 'e', 'f'};

void write_hex(char* out, std::uint64_t value, std::size_t digits) noexcept {
  for (std::size_t i = digits; i > 0; --i) {
    out[i - 1] = kHex[value & 0xFU];
    value >>= 4U;
  }
}

bool read_hex(std::string_view text, std::uint64_t& value) noexcept {
  std::uint64_t v = 0;
  for (const char c : text) {
    std::uint64_t digit = 0;
    if (c >= '0' && c <= '9') {
      digit = static_cast<std::uint64_t>(c - '0');
    } else if (c >= 'a' && c <= 'f') {
      digit = static_cast<std::uint64_t>(c - 'a') + 10;
    } else {
      return false;
    }
    v = (v << 4U) | digit;
  }
  value = v;
  return true;
}

constexpr std::string_view kAlphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz012345678";

}  // namespace

void write_id(char* out, std::uint64_t seq, std::uint64_t time_ns) noexcept {
  write_hex(out, seq, kSeqDigits);
  write_hex(out + kSeqDigits, time_ns, kTimeDigits);
}

bool parse_id(std::string_view id, std::uint64_t& seq, std::uint64_t& time_ns) noexcept {
  if (id.size() != kIdSize) {
    return false;
  }
  return read_hex(id.substr(0, kSeqDigits), seq) && read_hex(id.substr(kSeqDigits), time_ns);
}

PayloadPattern::PayloadPattern(std::size_t size) : size_(size) {
  static_assert(kAlphabet.size() == kPeriod, "the pattern's period is its alphabet's size");
  const std::size_t length = size + kPeriod;
  reference_.reserve(length);
  while (reference_.size() < length) {
    reference_.append(kAlphabet.substr(0, std::min(kAlphabet.size(), length - reference_.size())));
  }
}

std::string PayloadPattern::make(std::size_t sender) const {
  if (size_ == 0) {
    return {};
  }
  if (size_ == 1) {
    return "7";
  }
  std::string payload;
  payload.reserve(size_);
  payload.push_back('"');
  payload.append(reference_, offset(sender), size_ - 2);
  payload.push_back('"');
  return payload;
}

bool PayloadPattern::matches(std::string_view payload, std::size_t sender) const noexcept {
  if (payload.size() != size_) {
    return false;
  }
  if (size_ == 0) {
    return true;
  }
  if (size_ == 1) {
    return payload.front() == '7';
  }
  return payload.front() == '"' && payload.back() == '"' &&
         std::memcmp(payload.data() + 1, reference_.data() + offset(sender), size_ - 2) == 0;
}

long parse_member(std::string_view name, std::string_view prefix, char role) noexcept {
  if (name.size() <= prefix.size() + 1 || name.substr(0, prefix.size()) != prefix ||
      name[prefix.size()] != role) {
    return -1;
  }
  long index = 0;
  for (const char c : name.substr(prefix.size() + 1)) {
    if (c < '0' || c > '9' || index > 1'000'000) {
      return -1;
    }
    index = index * 10 + (c - '0');
  }
  return index;
}

}  // namespace v2bench
