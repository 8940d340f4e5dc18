// LatencyConsistency: how long offer() takes, and how much that varies, with producers on
// every CPU and two CPU-burning threads competing with the workers. The seed's benchmark,
// with every sample kept: mean and standard deviation over all offers, percentiles from a
// histogram per producer, merged.

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"
#include "v2broker/tuning.hpp"

namespace v2::bench {
namespace {

constexpr std::size_t kWorkers = 4;
constexpr std::size_t kCapacity = 1000;
constexpr std::size_t kBurners = 2;
constexpr std::size_t kTargets = 8;  // spreads the producers' pairs over the workers
constexpr auto kWindow = std::chrono::milliseconds(500);

struct ProducerResult {
  LatencyRecorder offer_latency;
  LatencyRecorder accepted_latency;  // the same samples, split by outcome
  LatencyRecorder dropped_latency;
  std::uint64_t accepted = 0;
  std::uint64_t dropped = 0;
  std::uint64_t refused_other = 0;
  std::string error;
};

void produce(Optimizer& optimizer, int cpu, std::size_t index, std::atomic<std::size_t>& ready,
             const std::atomic<bool>& go, const std::atomic<bool>& done, ProducerResult& out) {
  out.error = pin_current_thread(cpu);
  const std::string source = "producer-" + std::to_string(index);
  std::vector<std::string> targets;
  for (std::size_t t = 0; t < kTargets; ++t) {
    targets.push_back("target-" + std::to_string(t));
  }
  const Payload payload = Payload::copy_of(std::string(64, 'p'));

  // Acquire/release on the start flags: the producers see the optimizer fully started.
  ready.fetch_add(1, std::memory_order_release);
  while (!go.load(std::memory_order_acquire)) {
    std::this_thread::yield();
  }

  Message message;
  std::size_t next_target = 0;
  bool refill = true;
  while (!done.load(std::memory_order_relaxed)) {
    if (refill) {
      // NOLINTNEXTLINE(bugprone-use-after-move): an accepted message is refilled field by field
      message.type = MessageType::event;
      message.source = source;
      message.target = targets[next_target];
      message.payload = payload;
      next_target = (next_target + 1) % kTargets;
    }
    const auto start = Clock::now();
    const OfferResult result = optimizer.offer(std::move(message));
    const auto end = Clock::now();
    const std::uint64_t elapsed = ns_between(start, end);
    out.offer_latency.record(elapsed);

    // Refused messages are left as they were: offer the same one again.
    refill = is_accepted(result);
    if (refill) {
      out.accepted_latency.record(elapsed);
      ++out.accepted;
    } else if (result == OfferResult::dropped) {
      out.dropped_latency.record(elapsed);
      ++out.dropped;
    } else {
      ++out.refused_other;
    }
  }
}

struct WindowResult {
  LatencyRecorder offer_latency;
  LatencyRecorder accepted_latency;
  LatencyRecorder dropped_latency;
  std::uint64_t accepted = 0;
  std::uint64_t dropped = 0;
  std::uint64_t routed = 0;
  double seconds = 0.0;
};

// One measurement window. Returns "" or why the results cannot be trusted.
std::string run_window(const std::vector<int>& cpus, WindowResult& out) {
  CountingRouter router(kWorkers, 0);
  OptimizerConfig config = make_config(kWorkers, Tuning::on);  // the seed's: pinned, nice -10
  config.buffer_capacity = kCapacity;
  config.offer_policy = OfferPolicy::drop;
  config.batch_size = 1;
  Optimizer optimizer(router, config);

  BurnerThreads burners(kBurners);
  optimizer.start();

  std::vector<ProducerResult> results(cpus.size());
  std::atomic<std::size_t> ready{0};
  std::atomic<bool> go{false};
  std::atomic<bool> done{false};
  std::vector<std::thread> producers;
  for (std::size_t i = 0; i < cpus.size(); ++i) {
    producers.emplace_back(produce, std::ref(optimizer), cpus[i], i, std::ref(ready), std::cref(go),
                           std::cref(done), std::ref(results[i]));
  }
  while (ready.load(std::memory_order_acquire) < cpus.size()) {
    std::this_thread::yield();
  }
  const auto start = Clock::now();
  go.store(true, std::memory_order_release);
  std::this_thread::sleep_for(kWindow);
  done.store(true, std::memory_order_relaxed);
  for (auto& producer : producers) {
    producer.join();
  }
  out.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  burners.stop();
  optimizer.stop(StopMode::drain);

  for (const auto& result : results) {
    if (!result.error.empty()) {
      return "producer pinning failed: " + result.error;
    }
    if (result.refused_other != 0) {
      return "offer refused other than by a full queue: " + std::to_string(result.refused_other);
    }
    out.offer_latency.merge(result.offer_latency);
    out.accepted_latency.merge(result.accepted_latency);
    out.dropped_latency.merge(result.dropped_latency);
    out.accepted += result.accepted;
    out.dropped += result.dropped;
  }
  out.routed = router.routed();
  const MetricsSnapshot metrics = optimizer.metrics();
  if (out.routed != out.accepted || metrics.routed != out.accepted ||
      metrics.dropped.full != out.dropped || metrics.offered != out.accepted + out.dropped) {
    return "conservation failed: accepted=" + std::to_string(out.accepted) +
           " routed=" + std::to_string(out.routed) + " dropped=" + std::to_string(out.dropped) +
           " metrics.offered=" + std::to_string(metrics.offered);
  }
  return {};
}

void BM_LatencyConsistency(benchmark::State& state) {
  const std::vector<int> cpus = allowed_cpus();
  const NiceRestorer nice;
  WindowResult window;
  std::string error;
  for (auto _ : state) {  // NOLINT(clang-analyzer-deadcode.DeadStores)
    error = run_window(cpus, window);
    if (!error.empty()) {
      break;
    }
    // The time column is the mean offer latency; the window itself is fixed.
    state.SetIterationTime(window.offer_latency.mean() * 1e-9);
  }
  if (const std::string restore_error = nice.restore(); error.empty()) {
    error = restore_error.empty() ? "" : "restoring nice failed: " + restore_error;
  }
  if (!error.empty()) {
    state.SkipWithError(error.c_str());
    return;
  }

  window.offer_latency.report(state, "", true);
  window.accepted_latency.report(state, "accepted_", false);
  window.dropped_latency.report(state, "dropped_", false);
  const auto offered = static_cast<double>(window.accepted + window.dropped);
  state.counters["dropped_frac"] =
      offered > 0 ? static_cast<double>(window.dropped) / offered : 0.0;
  state.counters["offers_per_s"] = offered / window.seconds;
  state.counters["routed_per_s"] = static_cast<double>(window.routed) / window.seconds;
  state.counters["producers"] = static_cast<double>(cpus.size());
}

}  // namespace

void register_latency_consistency(const SuiteOptions& options) {
  with_repetitions(benchmark::RegisterBenchmark("LatencyConsistency", BM_LatencyConsistency),
                   options)
      ->Iterations(1)
      ->UseManualTime()
      ->Unit(benchmark::kNanosecond);
}

}  // namespace v2::bench
