// LargePayloadMemory: routing 1 MiB payloads (100 slots, block policy, batch 10). Reports the
// time per message and the heap allocations per message, counted by the operator new that
// support.cpp installs for this binary: every allocation of the process during the measured
// loop, from every thread (producer, workers, stats thread), with nothing subtracted.
//
// Two variants: new_payload builds one 1 MiB Payload per message from the caller's bytes, as
// a caller would; shared_payload offers the same Payload each time, which isolates what
// routing itself costs and allocates.

#include <cstddef>
#include <string>
#include <vector>

#include "support.hpp"

namespace v2::bench {
namespace {

constexpr std::size_t kPayloadSize = std::size_t{1} << 20U;
constexpr std::size_t kWorkers = 4;
constexpr std::size_t kCapacity = 100;
constexpr std::size_t kBatch = 10;
constexpr std::size_t kTargets = 8;
constexpr std::uint64_t kWarmup = 1000;  // lets the rings reach their working size

enum class PayloadMode : unsigned char { new_payload, shared_payload };

void BM_LargePayloadMemory(benchmark::State& state, PayloadMode mode) {
  const NiceRestorer nice;
  CountingRouter router(kWorkers, 0);
  OptimizerConfig config = make_config(kWorkers, Tuning::on);
  config.buffer_capacity = kCapacity;
  config.offer_policy = OfferPolicy::block;
  config.batch_size = kBatch;
  std::string error;
  {
    Optimizer optimizer(router, config);
    optimizer.start();

    const std::vector<std::byte> source(kPayloadSize, std::byte{0x5a});
    const Payload shared = Payload::copy_of(source);
    std::vector<std::string> targets;
    for (std::size_t t = 0; t < kTargets; ++t) {
      targets.push_back("target-" + std::to_string(t));
    }
    std::uint64_t offered = 0;
    std::uint64_t refused = 0;
    auto offer_one = [&] {
      Message message;
      message.type = MessageType::event;
      message.source = "producer";
      message.target = targets[offered % kTargets];
      message.payload = mode == PayloadMode::shared_payload ? shared : Payload::copy_of(source);
      ++offered;
      if (!is_accepted(optimizer.offer(std::move(message)))) {
        ++refused;
      }
    };

    for (std::uint64_t i = 0; i < kWarmup; ++i) {
      offer_one();
    }
    if (!wait_until_routed(router, kWarmup)) {
      error = "warm-up messages were not routed";
    }
    const AllocationCounts before = allocation_counts();
    for (auto _ : state) {  // NOLINT(clang-analyzer-deadcode.DeadStores)
      offer_one();
    }
    if (!wait_until_routed(router, offered)) {
      error = "not every accepted message was routed";
    }
    const AllocationCounts after = allocation_counts();
    optimizer.stop(StopMode::drain);

    const auto iterations = static_cast<double>(state.iterations());
    state.counters["allocs_per_op"] = static_cast<double>(after.calls - before.calls) / iterations;
    state.counters["bytes_per_op"] = static_cast<double>(after.bytes - before.bytes) / iterations;
    state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(kPayloadSize));
    if (refused != 0) {
      error = "block policy refused " + std::to_string(refused) + " offers";
    } else if (router.routed() != offered || optimizer.metrics().routed != offered) {
      error = "routed " + std::to_string(router.routed()) + " of " + std::to_string(offered);
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

void register_large_payload_memory(const SuiteOptions& options) {
  for (const auto& [name, mode] :
       {std::pair{"LargePayloadMemory/new_payload", PayloadMode::new_payload},
        std::pair{"LargePayloadMemory/shared_payload", PayloadMode::shared_payload}}) {
    with_repetitions(benchmark::RegisterBenchmark(name, BM_LargePayloadMemory, mode), options)
        ->UseRealTime()
        ->MinTime(0.3)
        ->Unit(benchmark::kNanosecond);
  }
}

}  // namespace v2::bench
