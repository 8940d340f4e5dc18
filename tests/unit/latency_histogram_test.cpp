// Cumulative counts of the log-linear latency histogram at fixed bounds (what the daemon's
// Prometheus exposition reports), checked against the exact counts of the recorded values.

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <vector>

#include "optimizer/histogram.hpp"
#include "test_router.hpp"
#include "v2broker/optimizer.hpp"

namespace v2 {
namespace {

using detail::HistogramCounts;
using detail::LogLinearBuckets;

TEST(LatencyHistogram, BoundOnAnInternalEdgeIsExact) {
  HistogramCounts h;
  // 996..999 is one internal bucket and 1000..1003 the next.
  for (const std::uint64_t v : {999U, 1000U, 1003U, 1004U}) {
    h.record(v);
  }
  ASSERT_EQ(LogLinearBuckets::upper_bound(LogLinearBuckets::index(1000)), 1003U);

  const std::vector<std::uint64_t> bounds = {999, 1003};
  const LatencyHistogram c = h.cumulative(bounds);
  EXPECT_EQ(c.cumulative, (std::vector<std::uint64_t>{1, 3}));
  EXPECT_EQ(c.count, 4U);
  EXPECT_EQ(c.sum, 999U + 1000U + 1003U + 1004U);
}

TEST(LatencyHistogram, BoundInsideABucketLeavesItToTheNextBound) {
  HistogramCounts h;
  h.record(999);
  h.record(1000);  // in 1000..1003, which 1001 does not cover whole
  const std::vector<std::uint64_t> bounds = {1001, 2000};
  const LatencyHistogram c = h.cumulative(bounds);
  EXPECT_EQ(c.cumulative, (std::vector<std::uint64_t>{1, 2}));
}

TEST(LatencyHistogram, NeverCountsAboveABoundAndMissesUnderOnePart128Below) {
  std::mt19937_64 random(42);
  std::uniform_int_distribution<std::uint64_t> exponent(0, 40);
  HistogramCounts h;
  std::vector<std::uint64_t> values;
  for (int i = 0; i < 20'000; ++i) {
    const std::uint64_t v = random() % ((std::uint64_t{1} << exponent(random)) + 1);
    values.push_back(v);
    h.record(v);
  }
  std::sort(values.begin(), values.end());
  const std::vector<std::uint64_t> bounds = {
      0, 1, 200, 255, 256, 1'000, 2'500, 10'000, 1'000'000, 25'000'000, 1'000'000'000};
  const LatencyHistogram c = h.cumulative(bounds);
  ASSERT_EQ(c.cumulative.size(), bounds.size());
  EXPECT_EQ(c.count, values.size());
  for (std::size_t i = 0; i < bounds.size(); ++i) {
    const auto at_or_below = [&](std::uint64_t b) {
      return static_cast<std::uint64_t>(std::upper_bound(values.begin(), values.end(), b) -
                                        values.begin());
    };
    const std::uint64_t exact = at_or_below(bounds[i]);
    const std::uint64_t floor = at_or_below(bounds[i] - bounds[i] / 128);
    EXPECT_LE(c.cumulative[i], exact) << "bound " << bounds[i];
    EXPECT_GE(c.cumulative[i], floor) << "bound " << bounds[i];
    if (bounds[i] < 256) {
      EXPECT_EQ(c.cumulative[i], exact) << "bound " << bounds[i];
    }
    if (i > 0) {
      EXPECT_GE(c.cumulative[i], c.cumulative[i - 1]);
    }
  }
}

TEST(LatencyHistogram, OptimizerReportsEveryRoutedMessage) {
  testing::RecordingRouter router;
  OptimizerConfig config;
  config.workers = 2;
  config.tuning.pin_workers = false;
  config.tuning.set_nice = false;
  config.tuning.set_io_priority = false;
  Optimizer optimizer(router, config);
  optimizer.start();
  for (int i = 0; i < 300; ++i) {
    ASSERT_EQ(
        optimizer.offer(testing::make_message(std::to_string(i), "s" + std::to_string(i % 7))),
        OfferResult::accepted);
  }
  ASSERT_TRUE(testing::eventually([&] { return router.routed_count() == 300; }));
  optimizer.stop();

  const std::vector<std::uint64_t> bounds = {1'000, 1'000'000, 1'000'000'000'000};
  const LatencyHistograms h = optimizer.latency_histograms(bounds);
  EXPECT_EQ(h.queue.count, 300U);
  EXPECT_EQ(h.route.count, 300U);
  EXPECT_EQ(h.queue.cumulative.back(), 300U);  // nobody waited 1000 s
  EXPECT_EQ(h.queue.count, optimizer.metrics().queue_latency.count);
  EXPECT_GT(h.queue.sum, 0U);

  const std::vector<std::uint64_t> unordered = {1'000, 1'000};
  EXPECT_THROW((void)optimizer.latency_histograms(unordered), std::invalid_argument);
}

}  // namespace
}  // namespace v2
