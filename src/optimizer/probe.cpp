#include <thread>

#include "optimizer/tuning_ledger.hpp"
#include "v2broker/tuning.hpp"

namespace v2 {

ThreadTuning probe_tuning(const TuningConfig& config, std::optional<int> cpu) {
  detail::TuningLedger ledger(config);
  ThreadTuning result;
  std::thread probe([&] {
    const pid_t tid = ledger.apply_to_current_thread("v2-probe", 0, cpu);
    for (ThreadTuning& thread : ledger.report().threads) {
      if (thread.tid == tid) {
        result = std::move(thread);
      }
    }
  });
  probe.join();
  return result;
}

}  // namespace v2
