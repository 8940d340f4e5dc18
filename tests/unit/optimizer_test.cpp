#include "v2broker/optimizer.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "test_router.hpp"

namespace v2 {
namespace {

using namespace std::chrono_literals;
using testing::eventually;
using testing::make_message;
using testing::RecordingRouter;

// Tunings stay off here: these tests are about queueing; tests/unit/linux_tuning_test.cpp
// covers the tunings.
OptimizerConfig quiet_config() {
  OptimizerConfig config;
  config.tuning.pin_workers = false;
  config.tuning.set_nice = false;
  config.tuning.set_io_priority = false;
  return config;
}

void expect_counts_add_up(const MetricsSnapshot& m) {
  EXPECT_EQ(m.offered, m.routed + m.dropped.total() + m.queued + m.in_flight)
      << "offered=" << m.offered << " routed=" << m.routed << " dropped=" << m.dropped.total()
      << " queued=" << m.queued << " in_flight=" << m.in_flight;
}

// One worker held inside route() by the closed gate, holding message "held"; the queue is then
// filled to capacity with "q0".."q{capacity-1}".
void fill_behind_held_worker(Optimizer& optimizer, RecordingRouter& router, std::size_t capacity) {
  router.close_gate();
  ASSERT_EQ(optimizer.offer(make_message("held")), OfferResult::accepted);
  ASSERT_TRUE(eventually([&] { return router.waiting_at_gate() == 1; }));
  for (std::size_t i = 0; i < capacity; ++i) {
    ASSERT_EQ(optimizer.offer(make_message("q" + std::to_string(i))), OfferResult::accepted);
  }
}

TEST(OptimizerConfig, DefaultsAreTheOriginals) {
  const OptimizerConfig config;
  EXPECT_EQ(config.buffer_capacity, 1000U);
  EXPECT_EQ(config.stats_interval, 100ms);
  EXPECT_EQ(config.offer_policy, OfferPolicy::drop);
  EXPECT_EQ(config.offer_timeout, 0ns);
  EXPECT_EQ(config.batch_size, 1U);
  EXPECT_EQ(config.flush_interval, 10ms);
  EXPECT_EQ(config.tuning.nice, -10);
  EXPECT_EQ(config.tuning.io_class, IoClass::realtime);
  EXPECT_EQ(config.tuning.io_level, 0);
  EXPECT_EQ(resolved_worker_count(config), std::max<std::size_t>(allowed_cpus().size(), 4));
  EXPECT_TRUE(validate(config).empty());
}

TEST(OptimizerConfig, RejectsEachInvalidFieldByNameAndValue) {
  OptimizerConfig config;
  config.buffer_capacity = 0;
  config.offer_timeout = -5ms;
  config.flush_interval = -1ns;
  config.stats_interval = 0ns;
  config.tuning.cpus = {allowed_cpus().back() + 1000};
  RecordingRouter router;
  try {
    const Optimizer optimizer(router, config);
    FAIL() << "an invalid configuration was accepted";
  } catch (const ConfigError& error) {
    const std::string text = error.what();
    EXPECT_NE(text.find("buffer_capacity=0"), std::string::npos) << text;
    EXPECT_NE(text.find("offer_timeout=-5000000ns"), std::string::npos) << text;
    EXPECT_NE(text.find("flush_interval=-1ns"), std::string::npos) << text;
    EXPECT_NE(text.find("stats_interval=0ns"), std::string::npos) << text;
    EXPECT_NE(text.find("tuning.cpus=" + std::to_string(allowed_cpus().back() + 1000)),
              std::string::npos)
        << text;
    EXPECT_EQ(error.issues().size(), 5U);
  }
}

TEST(OptimizerConfig, UnknownPolicyNameIsRejectedNotDefaulted) {
  EXPECT_EQ(parse_offer_policy("drop"), OfferPolicy::drop);
  EXPECT_EQ(parse_offer_policy("block"), OfferPolicy::block);
  EXPECT_EQ(parse_offer_policy("timeout"), OfferPolicy::timeout);
  EXPECT_EQ(parse_offer_policy("drop_oldest"), OfferPolicy::drop_oldest);
  EXPECT_EQ(parse_offer_policy("Drop"), std::nullopt);
  EXPECT_EQ(parse_offer_policy("dropp"), std::nullopt);
  EXPECT_EQ(parse_offer_policy(""), std::nullopt);
}

TEST(Optimizer, DropPolicyRefusesAtOnceWhenFullAndLeavesTheMessage) {
  RecordingRouter router;
  auto config = quiet_config();
  config.workers = 1;
  config.buffer_capacity = 4;
  Optimizer optimizer(router, config);
  optimizer.start();
  fill_behind_held_worker(optimizer, router, 4);

  Message extra = make_message("extra");
  extra.payload = Payload::copy_of("{\"k\":1}");
  EXPECT_EQ(optimizer.offer(std::move(extra)), OfferResult::dropped);
  // The point of the test: offer() moves from its argument only when it accepts it.
  EXPECT_EQ(extra.id, "extra")  // NOLINT(bugprone-use-after-move)
      << "a refused message must be left to the caller";
  EXPECT_EQ(extra.payload.view(), "{\"k\":1}");

  const auto m = optimizer.metrics();
  EXPECT_EQ(m.dropped.full, 1U);
  EXPECT_EQ(m.queued, 4U);
  EXPECT_EQ(m.in_flight, 1U);
  EXPECT_DOUBLE_EQ(m.saturation, 1.0);
  expect_counts_add_up(m);

  router.open_gate();
  optimizer.stop();
  EXPECT_EQ(router.routed_count(), 5U);
}

TEST(Optimizer, BlockPolicyWaitsForRoomThenAccepts) {
  RecordingRouter router;
  auto config = quiet_config();
  config.workers = 1;
  config.buffer_capacity = 2;
  config.offer_policy = OfferPolicy::block;
  Optimizer optimizer(router, config);
  optimizer.start();
  fill_behind_held_worker(optimizer, router, 2);

  std::atomic<bool> returned{false};
  OfferResult result = OfferResult::dropped;
  std::thread producer([&] {
    result = optimizer.offer(make_message("late"));
    returned = true;
  });
  // The producer cannot return while the queue stays full; give it ample chance to misbehave.
  std::this_thread::sleep_for(50ms);
  EXPECT_FALSE(returned.load());
  router.open_gate();
  producer.join();
  EXPECT_EQ(result, OfferResult::accepted);
  optimizer.stop();
  EXPECT_EQ(router.routed_count(), 4U);
  EXPECT_EQ(optimizer.metrics().dropped.total(), 0U);
}

TEST(Optimizer, BlockPolicyReturnsStoppedWhenTheOptimizerStops) {
  RecordingRouter router;
  auto config = quiet_config();
  config.workers = 1;
  config.buffer_capacity = 1;
  config.offer_policy = OfferPolicy::block;
  Optimizer optimizer(router, config);
  optimizer.start();
  fill_behind_held_worker(optimizer, router, 1);

  OfferResult result = OfferResult::accepted;
  std::thread producer([&] { result = optimizer.offer(make_message("blocked")); });
  std::thread stopper([&] { (void)optimizer.stop(StopMode::abandon); });
  producer.join();
  EXPECT_EQ(result, OfferResult::stopped);
  router.open_gate();
  stopper.join();
  const auto m = optimizer.metrics();
  EXPECT_EQ(m.dropped.stopped, 1U);
  expect_counts_add_up(m);
}

TEST(Optimizer, TimeoutPolicyWithZeroTimeoutRefusesAtOnce) {
  RecordingRouter router;
  auto config = quiet_config();
  config.workers = 1;
  config.buffer_capacity = 1;
  config.offer_policy = OfferPolicy::timeout;
  config.offer_timeout = 0ns;
  Optimizer optimizer(router, config);
  optimizer.start();
  fill_behind_held_worker(optimizer, router, 1);
  EXPECT_EQ(optimizer.offer(make_message("x")), OfferResult::dropped);
  EXPECT_EQ(optimizer.metrics().dropped.full, 1U);
  router.open_gate();
}

TEST(Optimizer, TimeoutPolicyGivesUpAfterTheTimeout) {
  RecordingRouter router;
  auto config = quiet_config();
  config.workers = 1;
  config.buffer_capacity = 1;
  config.offer_policy = OfferPolicy::timeout;
  config.offer_timeout = 20ms;
  Optimizer optimizer(router, config);
  optimizer.start();
  fill_behind_held_worker(optimizer, router, 1);
  EXPECT_EQ(optimizer.offer(make_message("x")), OfferResult::timed_out);
  const auto m = optimizer.metrics();
  EXPECT_EQ(m.dropped.timed_out, 1U);
  expect_counts_add_up(m);
  router.open_gate();
}

TEST(Optimizer, TimeoutPolicyAcceptsWhenRoomAppearsInTime) {
  RecordingRouter router;
  auto config = quiet_config();
  config.workers = 1;
  config.buffer_capacity = 1;
  config.offer_policy = OfferPolicy::timeout;
  config.offer_timeout = 60s;
  Optimizer optimizer(router, config);
  optimizer.start();
  fill_behind_held_worker(optimizer, router, 1);
  std::thread opener([&] {
    std::this_thread::sleep_for(10ms);
    router.open_gate();
  });
  EXPECT_EQ(optimizer.offer(make_message("x")), OfferResult::accepted);
  opener.join();
}

TEST(Optimizer, DropOldestEvictsTheOldestQueuedMessage) {
  RecordingRouter router;
  auto config = quiet_config();
  config.workers = 1;
  config.buffer_capacity = 3;
  config.offer_policy = OfferPolicy::drop_oldest;
  Optimizer optimizer(router, config);
  optimizer.start();
  fill_behind_held_worker(optimizer, router, 3);

  EXPECT_EQ(optimizer.offer(make_message("new")), OfferResult::accepted_evicted);
  EXPECT_EQ(router.evicted(), std::vector<std::string>{"q0"});
  router.open_gate();
  optimizer.stop();

  std::vector<std::string> ids;
  for (const auto& r : router.routed()) {
    ids.push_back(r.message.id);
  }
  EXPECT_EQ(ids, (std::vector<std::string>{"held", "q1", "q2", "new"}));
  const auto m = optimizer.metrics();
  EXPECT_EQ(m.dropped.evicted, 1U);
  expect_counts_add_up(m);
}

TEST(Optimizer, DropOldestUnderTenProducersKeepsExactAccounts) {
  constexpr std::size_t kProducers = 10;
  constexpr std::size_t kPerProducer = 20'000;
  RecordingRouter router;
  auto config = quiet_config();
  config.workers = 4;
  config.buffer_capacity = 8;
  config.offer_policy = OfferPolicy::drop_oldest;
  Optimizer optimizer(router, config);
  optimizer.start();

  std::atomic<bool> producing{true};
  std::atomic<std::size_t> samples{0};
  std::thread sampler([&] {
    while (producing) {
      const auto m = optimizer.metrics();
      expect_counts_add_up(m);
      EXPECT_LE(m.queued, config.buffer_capacity);
      ++samples;
    }
  });

  std::barrier start_line(static_cast<std::ptrdiff_t>(kProducers));
  std::vector<std::size_t> accepted(kProducers);
  std::vector<std::size_t> evicting(kProducers);
  std::vector<std::thread> producers;
  for (std::size_t p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      start_line.arrive_and_wait();
      const std::string source = "p" + std::to_string(p);
      for (std::size_t i = 0; i < kPerProducer; ++i) {
        const auto result = optimizer.offer(
            make_message(source + ":" + std::to_string(i), source, "t" + std::to_string(i % 3)));
        ASSERT_TRUE(is_accepted(result)) << to_string(result);
        ++accepted[p];
        evicting[p] += result == OfferResult::accepted_evicted ? 1 : 0;
      }
    });
  }
  for (auto& t : producers) {
    t.join();
  }
  producing = false;
  sampler.join();
  optimizer.stop();

  std::size_t total_evicting = 0;
  for (std::size_t p = 0; p < kProducers; ++p) {
    EXPECT_EQ(accepted[p], kPerProducer);
    total_evicting += evicting[p];
  }
  // Every message is either routed or evicted, exactly once.
  std::set<std::string> seen;
  for (const auto& r : router.routed()) {
    EXPECT_TRUE(seen.insert(r.message.id).second) << "routed twice: " << r.message.id;
  }
  for (const auto& id : router.evicted()) {
    EXPECT_TRUE(seen.insert(id).second) << "evicted and routed, or evicted twice: " << id;
  }
  EXPECT_EQ(seen.size(), kProducers * kPerProducer);
  EXPECT_EQ(router.evicted().size(), total_evicting)
      << "each accepted_evicted result evicts exactly one message";

  const auto m = optimizer.metrics();
  EXPECT_EQ(m.offered, kProducers * kPerProducer);
  EXPECT_EQ(m.routed, router.routed_count());
  EXPECT_EQ(m.dropped.evicted, total_evicting);
  EXPECT_EQ(m.queued, 0U);
  EXPECT_EQ(m.in_flight, 0U);
  expect_counts_add_up(m);
  EXPECT_GT(samples.load(), 0U);
}

TEST(Optimizer, FullBatchesAreRoutedTogether) {
  RecordingRouter router;
  auto config = quiet_config();
  config.workers = 1;
  config.batch_size = 4;
  config.flush_interval = 1h;  // only a full batch can be routed
  Optimizer optimizer(router, config);
  router.close_gate();
  optimizer.start();
  // Queue eight messages while the worker cannot route, so each batch it takes is full.
  for (int i = 0; i < 8; ++i) {
    ASSERT_EQ(optimizer.offer(make_message(std::to_string(i))), OfferResult::accepted);
  }
  router.open_gate();
  ASSERT_TRUE(eventually([&] { return router.batch_sizes().size() == 2; }));
  EXPECT_EQ(router.batch_sizes(), (std::vector<std::size_t>{4, 4}));
  EXPECT_EQ(optimizer.metrics().workers.at(0).batches, 2U);
}

TEST(Optimizer, PartialBatchIsFlushedWhenTheQueueGoesQuiet) {
  RecordingRouter router;
  auto config = quiet_config();
  config.workers = 1;
  config.batch_size = 16;
  config.flush_interval = 5ms;
  Optimizer optimizer(router, config);
  optimizer.start();
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(optimizer.offer(make_message(std::to_string(i))), OfferResult::accepted);
  }
  // No further message comes; the three must still be routed, as one or more partial batches.
  ASSERT_TRUE(eventually([&] { return router.routed_count() == 3; }));
  std::size_t in_batches = 0;
  for (const std::size_t size : router.batch_sizes()) {
    EXPECT_LT(size, 16U);
    in_batches += size;
  }
  EXPECT_EQ(in_batches, 3U);
}

// Each of `producers` threads offers message ids 0..per_producer-1 from "src<p>" to
// "dst<id % targets>" through `offer_one`, which must accept every one.
void offer_from_producers(int producers, int per_producer, int targets,
                          const std::function<OfferResult(Message&&, int)>& offer_one) {
  std::vector<std::thread> threads;
  threads.reserve(static_cast<std::size_t>(producers));
  for (int p = 0; p < producers; ++p) {
    threads.emplace_back([&, p] {
      for (int i = 0; i < per_producer; ++i) {
        auto message = make_message(std::to_string(i), "src" + std::to_string(p),
                                    "dst" + std::to_string(i % targets));
        ASSERT_EQ(offer_one(std::move(message), i), OfferResult::accepted);
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
}

TEST(Optimizer, MessagesFromOneSourceToOneTargetKeepTheirOrder) {
  constexpr int kProducers = 4;
  constexpr int kTargets = 8;
  constexpr int kPerProducer = 20'000;
  RecordingRouter router;
  auto config = quiet_config();
  config.workers = 4;
  config.buffer_capacity = 64;
  config.offer_policy = OfferPolicy::block;
  Optimizer optimizer(router, config);
  optimizer.start();

  offer_from_producers(kProducers, kPerProducer, kTargets, [&](Message&& message, int /*i*/) {
    return optimizer.offer(std::move(message));
  });
  optimizer.stop();

  const auto routed = router.routed();
  ASSERT_EQ(routed.size(), static_cast<std::size_t>(kProducers * kPerProducer));
  std::map<std::pair<std::string, std::string>, int> last;
  std::set<std::size_t> workers_used;
  for (const auto& r : routed) {
    const int seq = std::stoi(r.message.id);
    auto [it, fresh] = last.try_emplace({r.message.source, r.message.target}, seq);
    if (!fresh) {
      EXPECT_GT(seq, it->second) << r.message.source << "->" << r.message.target;
      it->second = seq;
    }
    workers_used.insert(r.worker);
  }
  EXPECT_EQ(last.size(), static_cast<std::size_t>(kProducers * kTargets));
  EXPECT_GT(workers_used.size(), 1U) << "32 streams should spread over the workers";
}

TEST(Optimizer, BrokerTargetGoesToTheBrokerHandler) {
  RecordingRouter router;
  Optimizer optimizer(router, quiet_config());
  optimizer.start();
  ASSERT_EQ(optimizer.offer(make_message("RPCGetMessageCount", "alice", "broker")),
            OfferResult::accepted);
  ASSERT_EQ(optimizer.offer(make_message("hello", "alice", "bob")), OfferResult::accepted);
  optimizer.stop();
  ASSERT_EQ(router.broker_calls().size(), 1U);
  EXPECT_EQ(router.broker_calls()[0].message.id, "RPCGetMessageCount");
  ASSERT_EQ(router.routed().size(), 1U);
  EXPECT_EQ(router.routed()[0].message.source, "alice");
}

TEST(Optimizer, StopDrainsEveryAcceptedMessage) {
  RecordingRouter router;
  auto config = quiet_config();
  config.workers = 2;
  config.buffer_capacity = 1000;
  Optimizer optimizer(router, config);
  router.close_gate();
  optimizer.start();
  for (int i = 0; i < 1000; ++i) {
    ASSERT_EQ(optimizer.offer(make_message(std::to_string(i), "s" + std::to_string(i % 7))),
              OfferResult::accepted);
  }
  router.open_gate();
  const StopReport report = optimizer.stop();
  EXPECT_EQ(report.abandoned, 0U);
  EXPECT_EQ(router.routed_count(), 1000U);
  EXPECT_EQ(optimizer.offer(make_message("after")), OfferResult::stopped);
  const auto m = optimizer.metrics();
  EXPECT_EQ(m.routed, 1000U);
  EXPECT_EQ(m.dropped.stopped, 1U);
  expect_counts_add_up(m);
}

TEST(Optimizer, AbandoningStopReportsWhatItDiscarded) {
  RecordingRouter router;
  auto config = quiet_config();
  config.workers = 1;
  config.buffer_capacity = 100;
  Optimizer optimizer(router, config);
  optimizer.start();
  fill_behind_held_worker(optimizer, router, 100);
  std::thread opener([&] {
    std::this_thread::sleep_for(10ms);
    router.open_gate();
  });
  const StopReport report = optimizer.stop(StopMode::abandon);
  opener.join();
  // The held message was in flight and is finished; the queued ones are abandoned.
  EXPECT_EQ(router.routed_count(), 1U);
  EXPECT_EQ(report.abandoned, 100U);
  EXPECT_EQ(router.abandoned().size(), 100U);
  const auto m = optimizer.metrics();
  EXPECT_EQ(m.dropped.abandoned, 100U);
  expect_counts_add_up(m);
}

TEST(Optimizer, StopIsIdempotentAndTheDestructorDrains) {
  RecordingRouter router;
  {
    Optimizer optimizer(router, quiet_config());
    optimizer.start();
    for (int i = 0; i < 100; ++i) {
      ASSERT_EQ(optimizer.offer(make_message(std::to_string(i))), OfferResult::accepted);
    }
  }
  EXPECT_EQ(router.routed_count(), 100U);

  Optimizer optimizer(router, quiet_config());
  optimizer.start();
  (void)optimizer.stop();
  EXPECT_EQ(optimizer.stop().abandoned, 0U);
}

TEST(Optimizer, MessagesOfferedBeforeStartAreRouted) {
  RecordingRouter router;
  Optimizer optimizer(router, quiet_config());
  ASSERT_EQ(optimizer.offer(make_message("early")), OfferResult::accepted);
  optimizer.start();
  ASSERT_TRUE(eventually([&] { return router.routed_count() == 1; }));
}

TEST(Optimizer, RoutingSharesThePayloadWithoutCopying) {
  RecordingRouter router;
  Optimizer optimizer(router, quiet_config());
  optimizer.start();
  const Payload payload = Payload::copy_of(std::string(1 << 20, 'x'));
  Message message = make_message("big");
  message.payload = payload;
  ASSERT_EQ(optimizer.offer(std::move(message)), OfferResult::accepted);
  optimizer.stop();
  ASSERT_EQ(router.routed().size(), 1U);
  EXPECT_EQ(router.routed()[0].message.payload.bytes().data(), payload.bytes().data());
  EXPECT_EQ(payload.approx_use_count(), 2U);
}

TEST(Optimizer, MetricsCountTypesWorkersAndLatency) {
  RecordingRouter router;
  auto config = quiet_config();
  config.workers = 2;
  config.stats_interval = 10ms;
  Optimizer optimizer(router, config);
  std::atomic<int> callbacks{0};
  optimizer.set_stats_callback([&](const MetricsSnapshot&) { ++callbacks; });
  optimizer.start();
  const MessageType types[] = {MessageType::request, MessageType::response, MessageType::event,
                               MessageType::error};
  for (int i = 0; i < 400; ++i) {
    auto message = make_message(std::to_string(i), "s" + std::to_string(i % 5));
    message.type = types[i % 4];
    ASSERT_EQ(optimizer.offer(std::move(message)), OfferResult::accepted);
  }
  ASSERT_TRUE(eventually([&] { return router.routed_count() == 400; }));
  ASSERT_TRUE(eventually([&] { return optimizer.metrics().messages_per_second > 0.0; }));
  ASSERT_TRUE(eventually([&] { return callbacks.load() > 0; }));

  const auto m = optimizer.metrics();
  EXPECT_EQ(m.routed, 400U);
  for (const auto count : m.routed_by_type) {
    EXPECT_EQ(count, 100U);
  }
  ASSERT_EQ(m.workers.size(), 2U);
  EXPECT_EQ(m.workers[0].routed + m.workers[1].routed, 400U);
  EXPECT_EQ(m.queue_latency.count, 400U);
  EXPECT_EQ(m.route_latency.count, 400U);
  EXPECT_LE(m.queue_latency.p50, m.queue_latency.p99);
  EXPECT_LE(m.queue_latency.p99, m.queue_latency.p999);
  EXPECT_LE(m.queue_latency.p999, m.queue_latency.max);
  EXPECT_GT(m.queue_latency.max, 0U);
  expect_counts_add_up(m);
}

// Total CPU time, in nanoseconds, the kernel has charged to thread `tid` of this process.
std::uint64_t thread_cpu_ns(pid_t tid) {
  std::ifstream in("/proc/self/task/" + std::to_string(tid) + "/schedstat");
  std::uint64_t on_cpu_ns = 0;
  in >> on_cpu_ns;
  return on_cpu_ns;
}

// offer_direct until one message is routed on the calling thread (the worker had parked).
// Returns that message's id, or "" when none was within the limit.
std::string route_one_directly(Optimizer& optimizer, const RecordingRouter& router) {
  std::string direct;
  int attempt = 0;
  eventually([&] {
    const std::string id = "d" + std::to_string(attempt++);
    if (optimizer.offer_direct(make_message(id)) != OfferResult::accepted) {
      return false;
    }
    for (const auto& r : router.routed()) {
      if (r.message.id == id && r.tid == ::gettid()) {
        direct = id;
        return true;
      }
    }
    return false;
  });
  return direct;
}

TEST(Optimizer, OfferDirectRoutesOnTheCallingThreadWhenTheWorkerIsIdle) {
  RecordingRouter router;
  auto config = quiet_config();
  config.workers = 1;
  config.idle_spin = 0ns;  // the worker parks as soon as it has nothing to do
  Optimizer optimizer(router, config);
  optimizer.start();

  const std::string id = route_one_directly(optimizer, router);
  ASSERT_FALSE(id.empty()) << "no offer_direct was routed on the calling thread";
  const auto batches_before = router.batch_sizes().size();
  const auto m_before = optimizer.metrics();

  // The worker is parked again at once: the next one is routed before offer_direct returns.
  ASSERT_TRUE(eventually([&] {
    const auto count = router.routed_count();
    if (optimizer.offer_direct(make_message("next")) != OfferResult::accepted) {
      return false;
    }
    const auto routed = router.routed();
    return routed.size() == count + 1 && routed.back().message.id == "next";
  }));
  const auto routed = router.routed();
  EXPECT_EQ(routed.back().tid, ::gettid());
  EXPECT_EQ(routed.back().worker, 0U) << "the worker's context";
  EXPECT_EQ(router.batch_sizes().size(), batches_before + 1) << "end_batch after it";
  EXPECT_EQ(router.batch_sizes().back(), 1U);

  const auto m = optimizer.metrics();
  EXPECT_EQ(m.offered, m_before.offered + 1);
  EXPECT_EQ(m.routed, m_before.routed + 1);
  EXPECT_EQ(m.workers[0].routed, m.routed) << "counted as the worker's";
  EXPECT_EQ(m.in_flight, 0U);
  EXPECT_EQ(m.queued, 0U);
  expect_counts_add_up(m);
}

TEST(Optimizer, OfferDirectQueuesBehindABusyWorkerInOrder) {
  RecordingRouter router;
  auto config = quiet_config();
  config.workers = 1;
  config.idle_spin = 0ns;
  Optimizer optimizer(router, config);
  optimizer.start();
  router.close_gate();
  ASSERT_EQ(optimizer.offer(make_message("held")), OfferResult::accepted);
  ASSERT_TRUE(eventually([&] { return router.waiting_at_gate() == 1; }));

  // Routing here would wait at the closed gate; queued, each call returns at once.
  for (const char* id : {"a1", "a2", "a3"}) {
    ASSERT_EQ(optimizer.offer_direct(make_message(id)), OfferResult::accepted);
  }
  EXPECT_EQ(optimizer.metrics().queued, 3U);
  router.open_gate();
  ASSERT_TRUE(eventually([&] { return router.routed_count() == 4; }));

  const auto routed = router.routed();
  const std::vector<std::string> order = {routed[0].message.id, routed[1].message.id,
                                          routed[2].message.id, routed[3].message.id};
  EXPECT_EQ(order, (std::vector<std::string>{"held", "a1", "a2", "a3"}));
  for (const auto& r : routed) {
    EXPECT_NE(r.tid, ::gettid()) << r.message.id << " was routed by the worker";
  }
}

/// Checks that no two calls for one worker ever overlap, and records per-pair order.
class ExclusiveRouter final : public Router {
 public:
  explicit ExclusiveRouter(std::size_t workers) : active_(workers) {}

  void handle_broker(Message& message, const RouteContext& context) noexcept override {
    route(message, context);
  }
  void route(Message& message, const RouteContext& context) noexcept override {
    if (active_[context.worker].fetch_add(1, std::memory_order_acq_rel) != 0) {
      overlaps_.fetch_add(1, std::memory_order_relaxed);
    }
    {
      const std::lock_guard lock(mutex_);
      const int seq = std::stoi(message.id);
      auto [it, fresh] = last_.try_emplace({message.source, message.target}, seq);
      if (!fresh) {
        out_of_order_ += seq <= it->second ? 1 : 0;
        it->second = seq;
      }
      ++routed_;
      by_thread_[::gettid()] += 1;
    }
    active_[context.worker].fetch_sub(1, std::memory_order_acq_rel);
  }

  std::vector<std::atomic<int>> active_;
  std::atomic<int> overlaps_{0};
  std::mutex mutex_;
  std::map<std::pair<std::string, std::string>, int> last_;
  int out_of_order_ = 0;
  std::size_t routed_ = 0;
  std::map<pid_t, std::size_t> by_thread_;
};

TEST(Optimizer, OfferDirectAndOfferTogetherKeepPairOrderAndNeverOverlapAWorker) {
  constexpr int kProducers = 4;
  constexpr int kTargets = 4;
  constexpr int kPerProducer = 20'000;
  ExclusiveRouter router(2);
  auto config = quiet_config();
  config.workers = 2;
  config.buffer_capacity = 64;
  config.idle_spin = 0ns;
  config.offer_policy = OfferPolicy::block;
  Optimizer optimizer(router, config);
  optimizer.start();

  offer_from_producers(kProducers, kPerProducer, kTargets, [&](Message&& message, int i) {
    const OfferResult result = i % 3 == 0 ? optimizer.offer(std::move(message))
                                          : optimizer.offer_direct(std::move(message));
    if (i % 100 == 99) {
      std::this_thread::sleep_for(50us);  // let the workers run dry and park
    }
    return result;
  });
  const auto m = optimizer.metrics();
  const auto worker_tids = optimizer.worker_tids();
  optimizer.stop();

  EXPECT_EQ(router.overlaps_.load(), 0) << "two threads routed for one worker at once";
  EXPECT_EQ(router.out_of_order_, 0);
  EXPECT_EQ(router.routed_, static_cast<std::size_t>(kProducers * kPerProducer));
  expect_counts_add_up(m);
  std::size_t by_workers = 0;
  for (const auto& [tid, count] : router.by_thread_) {
    if (std::find(worker_tids.begin(), worker_tids.end(), tid) != worker_tids.end()) {
      by_workers += count;
    }
  }
  EXPECT_GT(router.routed_ - by_workers, 0U) << "some messages were routed by their producer";
  EXPECT_GT(by_workers, 0U) << "and some by the workers";
}

TEST(Optimizer, IdleWorkersParkInsteadOfSpinning) {
  RecordingRouter router;
  auto config = quiet_config();
  config.workers = 4;
  Optimizer optimizer(router, config);
  optimizer.start();
  ASSERT_EQ(optimizer.offer(make_message("wake")), OfferResult::accepted);
  ASSERT_TRUE(eventually([&] { return router.routed_count() == 1; }));

  const auto tids = optimizer.worker_tids();
  ASSERT_EQ(tids.size(), 4U);
  std::uint64_t before = 0;
  for (const pid_t tid : tids) {
    before += thread_cpu_ns(tid);
  }
  const auto wall_start = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(1s);
  std::uint64_t after = 0;
  for (const pid_t tid : tids) {
    after += thread_cpu_ns(tid);
  }
  const auto wall_ns = static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                               std::chrono::steady_clock::now() - wall_start)
                                               .count());
  const double share_of_one_core = static_cast<double>(after - before) / wall_ns;
  EXPECT_LT(share_of_one_core, 0.01)
      << "four idle workers used " << share_of_one_core * 100 << "% of one core";
}

}  // namespace
}  // namespace v2
