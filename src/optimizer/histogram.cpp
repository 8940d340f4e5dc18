#include "optimizer/histogram.hpp"

#include <algorithm>
#include <cmath>

namespace v2::detail {

void HistogramCounts::add(const HistogramCounts& other) noexcept {
  for (std::size_t i = 0; i < counts_.size(); ++i) {
    counts_[i] += other.counts_[i];
  }
  count_ += other.count_;
  sum_ += other.sum_;
  max_ = std::max(max_, other.max_);
}

void HistogramCounts::subtract(const HistogramCounts& earlier) noexcept {
  // A racing snapshot may have read a bucket before its count, so clamp at zero.
  for (std::size_t i = 0; i < counts_.size(); ++i) {
    counts_[i] = counts_[i] >= earlier.counts_[i] ? counts_[i] - earlier.counts_[i] : 0;
  }
  count_ = count_ >= earlier.count_ ? count_ - earlier.count_ : 0;
  sum_ = sum_ >= earlier.sum_ ? sum_ - earlier.sum_ : 0;
  // The exact maximum of the difference is unknown; the highest non-empty bucket bounds it.
  max_ = 0;
  for (std::size_t i = counts_.size(); i-- > 0;) {
    if (counts_[i] != 0) {
      max_ = LogLinearBuckets::upper_bound(i);
      break;
    }
  }
}

void HistogramCounts::clear() noexcept {
  std::fill(counts_.begin(), counts_.end(), 0);
  count_ = 0;
  sum_ = 0;
  max_ = 0;
}

void HistogramCounts::assign(const HistogramCounts& other) noexcept {
  std::copy(other.counts_.begin(), other.counts_.end(), counts_.begin());
  count_ = other.count_;
  sum_ = other.sum_;
  max_ = other.max_;
}

std::uint64_t HistogramCounts::value_at(double quantile) const noexcept {
  std::uint64_t total = 0;
  for (const std::uint64_t c : counts_) {
    total += c;
  }
  if (total == 0) {
    return 0;
  }
  const double wanted = std::ceil(std::clamp(quantile, 0.0, 1.0) * static_cast<double>(total));
  const auto rank = std::max<std::uint64_t>(1, static_cast<std::uint64_t>(wanted));
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < counts_.size(); ++i) {
    seen += counts_[i];
    if (seen >= rank) {
      return std::min(LogLinearBuckets::upper_bound(i), max_);
    }
  }
  return max_;
}

LatencySummary HistogramCounts::summary() const noexcept {
  LatencySummary s;
  s.count = count_;
  s.p50 = value_at(0.50);
  s.p99 = value_at(0.99);
  s.p999 = value_at(0.999);
  s.max = max_;
  s.mean = count_ == 0 ? 0.0 : static_cast<double>(sum_) / static_cast<double>(count_);
  return s;
}

LatencyHistogram HistogramCounts::cumulative(std::span<const std::uint64_t> bounds) const {
  LatencyHistogram out;
  out.bounds.assign(bounds.begin(), bounds.end());
  out.cumulative.reserve(bounds.size());
  out.sum = sum_;
  std::size_t next = 0;  // first bucket not yet counted
  std::uint64_t seen = 0;
  for (const std::uint64_t bound : bounds) {
    // Buckets [next, end) all have upper bounds at or below `bound`; the one holding `bound`
    // counts only if its upper bound is `bound` itself, as it may hold larger values otherwise.
    const std::size_t holding = LogLinearBuckets::index(bound);
    const std::size_t end = LogLinearBuckets::upper_bound(holding) == bound ? holding + 1 : holding;
    for (; next < end; ++next) {
      seen += counts_[next];
    }
    out.cumulative.push_back(seen);
  }
  for (; next < counts_.size(); ++next) {
    seen += counts_[next];
  }
  // The total of the buckets rather than count_: a racing snapshot may have read them apart.
  out.count = seen;
  return out;
}

void ConcurrentHistogram::snapshot_into(HistogramCounts& out) const noexcept {
  for (std::size_t i = 0; i < counts_.size(); ++i) {
    out.counts_[i] += counts_[i].load(std::memory_order_relaxed);
  }
  out.count_ += count_.load(std::memory_order_relaxed);
  out.sum_ += sum_.load(std::memory_order_relaxed);
  out.max_ = std::max(out.max_, max_.load(std::memory_order_relaxed));
}

}  // namespace v2::detail
