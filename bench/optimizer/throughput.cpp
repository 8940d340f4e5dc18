// Throughput: one producer offering as fast as it can into 4 workers under the block policy,
// with a router that counts and checks the order of each (source, target) pair. Reported as
// items_per_second (messages/s, higher is better): offers over wall time, which equals the
// routing rate because the block policy holds the producer to at most `capacity` messages
// ahead of the workers (at the end of a run at most 1000 are still queued; they are waited
// for and checked, not timed).
//
// pairs:64 spreads the load over every worker; pairs:1 shows the bound of one pair, which a
// single worker serves to keep its order.

#include <cstddef>
#include <string>
#include <vector>

#include "support.hpp"

namespace v2::bench {
namespace {

constexpr std::size_t kWorkers = 4;

void BM_Throughput(benchmark::State& state) {
  const auto pairs = static_cast<std::size_t>(state.range(0));
  const auto batch = static_cast<std::size_t>(state.range(1));
  const NiceRestorer nice;
  CountingRouter router(kWorkers, pairs);
  OptimizerConfig config = make_config(kWorkers, Tuning::on);
  config.offer_policy = OfferPolicy::block;
  config.batch_size = batch;
  std::string error;
  {
    Optimizer optimizer(router, config);
    optimizer.start();

    std::vector<std::string> targets;
    for (std::size_t t = 0; t < pairs; ++t) {
      targets.push_back("target-" + std::to_string(t));
    }
    std::vector<std::uint64_t> next_sequence(pairs, 0);
    std::uint64_t offered = 0;
    std::uint64_t refused = 0;
    std::size_t pair = 0;
    for (auto _ : state) {  // NOLINT(clang-analyzer-deadcode.DeadStores)
      Message message;      // short strings stay inline: no allocation
      message.type = MessageType::event;
      message.source = "producer";
      message.target = targets[pair];
      store_u64(message.id,
                (std::uint64_t{pair} << CountingRouter::kPairShift) | next_sequence[pair]++);
      if (!is_accepted(optimizer.offer(std::move(message)))) {
        ++refused;
      }
      ++offered;
      pair = pair + 1 == pairs ? 0 : pair + 1;
    }
    if (!wait_until_routed(router, offered)) {
      error = "not every accepted message was routed";
    }
    optimizer.stop(StopMode::drain);

    state.SetItemsProcessed(state.iterations());
    const MetricsSnapshot metrics = optimizer.metrics();
    std::uint64_t batches = 0;
    for (const auto& worker : metrics.workers) {
      batches += worker.batches;
    }
    state.counters["msgs_per_batch"] =
        batches == 0 ? 0.0 : static_cast<double>(metrics.routed) / static_cast<double>(batches);
    if (refused != 0) {
      error = "block policy refused " + std::to_string(refused) + " offers";
    } else if (router.routed() != offered || metrics.routed != offered) {
      error = "routed " + std::to_string(router.routed()) + " of " + std::to_string(offered);
    } else if (router.out_of_order() != 0) {
      error = std::to_string(router.out_of_order()) + " messages out of order within a pair";
    }
  }
  if (const std::string restore_error = nice.restore(); error.empty() && !restore_error.empty()) {
    error = "restoring nice failed: " + restore_error;
  }
  if (!error.empty()) {
    state.SkipWithError(error.c_str());
  }
}

}  // namespace

void register_throughput(const SuiteOptions& options) {
  with_repetitions(benchmark::RegisterBenchmark("Throughput", BM_Throughput), options)
      ->ArgNames({"pairs", "batch"})
      ->ArgsProduct({{64, 1}, {1, 16}})
      ->UseRealTime()
      ->MinTime(0.3)
      ->Unit(benchmark::kNanosecond);
}

}  // namespace v2::bench
