#pragma once

// What every part of the load generator shares: the clock, the layout of a benchmark message's
// id (sequence number and send time) and the payload pattern receivers check byte for byte.

#include <cstddef>
#include <cstdint>
#include <ctime>
#include <string>
#include <string_view>

namespace v2bench {

/// CLOCK_MONOTONIC in nanoseconds: the same clock in every process of the machine, so a time
/// written by a sender can be compared with the receiver's.
[[nodiscard]] inline std::int64_t now_ns() noexcept {
  timespec ts{};
  (void)::clock_gettime(CLOCK_MONOTONIC, &ts);  // cannot fail for CLOCK_MONOTONIC
  return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

/// A benchmark message's id: the sender's sequence number (12 hex digits), then the time the
/// message was sent, or was due to be sent in paced mode (16 hex digits, now_ns()). Fixed width,
/// so a pre-encoded message is patched in place; 28 bytes fit the binary framing's 32-byte field.
inline constexpr std::size_t kSeqDigits = 12;
inline constexpr std::size_t kTimeDigits = 16;
inline constexpr std::size_t kIdSize = kSeqDigits + kTimeDigits;
static_assert(kIdSize <= 32, "the id must fit the binary framing's id field");

/// Writes the kIdSize characters of an id to `out`.
void write_id(char* out, std::uint64_t seq, std::uint64_t time_ns) noexcept;

/// Reads an id written by write_id. Returns false when `id` is not one.
[[nodiscard]] bool parse_id(std::string_view id, std::uint64_t& seq,
                            std::uint64_t& time_ns) noexcept;

/// The payload every message of one sender carries, and its check.
///
/// A payload of `size` bytes is valid JSON, so it crosses an NDJSON broker unchanged: empty for
/// 0 bytes, the digit 7 for 1 byte, otherwise a JSON string whose characters cycle through 61
/// letters and digits from an offset that depends on the sender. The prime period makes a
/// payload shifted, truncated or spliced with another sender's fail the check.
class PayloadPattern {
 public:
  explicit PayloadPattern(std::size_t size);

  /// The payload of sender `sender`.
  [[nodiscard]] std::string make(std::size_t sender) const;

  /// True when `payload` is exactly what make(sender) returns; one memcmp.
  [[nodiscard]] bool matches(std::string_view payload, std::size_t sender) const noexcept;

  [[nodiscard]] std::size_t size() const noexcept { return size_; }

 private:
  static constexpr std::size_t kPeriod = 61;
  [[nodiscard]] static std::size_t offset(std::size_t sender) noexcept {
    return (sender * 7) % kPeriod;
  }

  std::size_t size_;
  std::string reference_;  ///< the cycle, long enough for every offset
};

/// Parses "<prefix><role><index>" and returns the index, or -1 when `name` is not of that form.
[[nodiscard]] long parse_member(std::string_view name, std::string_view prefix, char role) noexcept;

}  // namespace v2bench
