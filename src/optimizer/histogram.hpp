#pragma once

#include <array>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "v2broker/metrics.hpp"

namespace v2::detail {

/// Log-linear bucketing of non-negative integers (nanoseconds here): exact below 256, then 128
/// buckets per power of two, so a bucket's width is under 1/128 of its values (< 1% error).
/// Written here rather than taken from a package: Debian ships no C or C++ HdrHistogram.
struct LogLinearBuckets {
  static constexpr unsigned kSubBits = 7;
  static constexpr std::uint64_t kSubCount = std::uint64_t{1} << kSubBits;  // 128
  static constexpr std::size_t kBucketCount = (64 - kSubBits) * kSubCount + kSubCount;

  static constexpr std::size_t index(std::uint64_t value) noexcept {
    const unsigned high = 63U - static_cast<unsigned>(std::countl_zero(value | 1U));
    if (high <= kSubBits) {
      return static_cast<std::size_t>(value);
    }
    const unsigned shift = high - kSubBits;
    return static_cast<std::size_t>(shift * kSubCount + (value >> shift));
  }

  /// Largest value that falls in bucket `index`.
  static constexpr std::uint64_t upper_bound(std::size_t index) noexcept {
    if (index < 2 * kSubCount) {
      return index;
    }
    const std::uint64_t shift = index / kSubCount - 1;
    const std::uint64_t sub = index % kSubCount + kSubCount;
    return ((sub + 1) << shift) - 1;
  }
};

static_assert(LogLinearBuckets::index(255) == 255, "values below 256 are exact");
static_assert(LogLinearBuckets::upper_bound(LogLinearBuckets::index(1000)) >= 1000,
              "a bucket's upper bound covers its values");
static_assert(LogLinearBuckets::index(~std::uint64_t{0}) < LogLinearBuckets::kBucketCount,
              "every 64-bit value has a bucket");

/// A histogram's counts, owned by one thread; merged snapshots and differences are built on it.
class HistogramCounts {
 public:
  HistogramCounts() : counts_(LogLinearBuckets::kBucketCount, 0) {}

  void record(std::uint64_t value) noexcept {
    ++counts_[LogLinearBuckets::index(value)];
    ++count_;
    sum_ += value;
    max_ = value > max_ ? value : max_;
  }

  void add(const HistogramCounts& other) noexcept;
  /// Removes an earlier snapshot of the same histogram; max becomes the upper bound of the
  /// highest bucket left (within the buckets' 1%).
  void subtract(const HistogramCounts& earlier) noexcept;
  void clear() noexcept;
  /// Becomes a copy of `other` without allocating (both have the same bucket count).
  void assign(const HistogramCounts& other) noexcept;

  [[nodiscard]] std::uint64_t count() const noexcept { return count_; }
  [[nodiscard]] std::uint64_t max() const noexcept { return max_; }
  [[nodiscard]] std::uint64_t sum() const noexcept { return sum_; }
  /// Cumulative counts at ascending `bounds`: for each, the values in the buckets whose upper
  /// bound is at or below it (see LatencyHistogram), with the total over every bucket.
  [[nodiscard]] LatencyHistogram cumulative(std::span<const std::uint64_t> bounds) const;
  /// Smallest bucket bound with at least `quantile` of the values at or below it; 0 if empty.
  [[nodiscard]] std::uint64_t value_at(double quantile) const noexcept;
  [[nodiscard]] LatencySummary summary() const noexcept;

 private:
  friend class ConcurrentHistogram;
  std::vector<std::uint64_t> counts_;
  std::uint64_t count_ = 0;
  std::uint64_t sum_ = 0;
  std::uint64_t max_ = 0;
};

/// A histogram with one writer thread and any number of concurrent readers. The writer uses
/// relaxed load-and-store (no locked instruction); readers see each count some time after it
/// was written, never torn.
class ConcurrentHistogram {
 public:
  ConcurrentHistogram() : counts_(LogLinearBuckets::kBucketCount) {}

  /// Only the owning thread may call record.
  void record(std::uint64_t value) noexcept {
    bump(counts_[LogLinearBuckets::index(value)], 1);
    bump(count_, 1);
    bump(sum_, value);
    if (value > max_.load(std::memory_order_relaxed)) {
      max_.store(value, std::memory_order_relaxed);
    }
  }

  /// Adds the current counts to `out`; safe from any thread.
  void snapshot_into(HistogramCounts& out) const noexcept;

 private:
  static void bump(std::atomic<std::uint64_t>& counter, std::uint64_t by) noexcept {
    // Single writer: a plain load and store, relaxed, is enough and avoids a locked add.
    counter.store(counter.load(std::memory_order_relaxed) + by, std::memory_order_relaxed);
  }

  std::vector<std::atomic<std::uint64_t>> counts_;
  std::atomic<std::uint64_t> count_{0};
  std::atomic<std::uint64_t> sum_{0};
  std::atomic<std::uint64_t> max_{0};
};

}  // namespace v2::detail
