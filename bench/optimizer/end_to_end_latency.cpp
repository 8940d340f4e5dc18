// EndToEndLatency: time from offer to the router, at a paced rate, with the Linux tunings on
// (pinned workers, nice -10, real-time I/O class) and off, while separate processes keep every
// CPU busy at nice 0.
//
// Open loop: message i has an intended send time start + i / rate, the producer sends it then
// (or at once if it is late) and never waits for the optimizer. Latency is measured from the
// intended time, so a stalled producer or a full queue cannot hide the delay it causes
// (coordinated omission). The same messages are also measured from the moment offer() was
// called (from_offer_*), which separates the optimizer's part from the producer's lateness.

#include <sys/prctl.h>

#include <cerrno>
#include <chrono>
#include <ctime>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"
#include "v2broker/tuning.hpp"

namespace v2::bench {
namespace {

constexpr std::size_t kWorkers = 4;
constexpr std::size_t kTargets = 8;
constexpr std::uint64_t kRate = 20'000;  // messages per second
constexpr auto kWindow = std::chrono::seconds(1);

// Records, per worker, the latency of each message from the times the producer wrote into it:
// Message::id holds the intended send time, Message::correlation_id the offer time (store_u64,
// nanoseconds of steady_clock).
class LatencyRouter : public Router {
 public:
  explicit LatencyRouter(std::size_t workers) : workers_(workers) {}

  void handle_broker(Message& message, const RouteContext& context) noexcept override {
    record(message, context);
  }
  void route(Message& message, const RouteContext& context) noexcept override {
    record(message, context);
  }

  /// Merged over the workers; call once the optimizer has stopped.
  void merge_into(LatencyRecorder& from_intended, LatencyRecorder& from_offer,
                  std::uint64_t& malformed) const {
    for (const auto& worker : workers_) {
      from_intended.merge(worker.from_intended);
      from_offer.merge(worker.from_offer);
      malformed += worker.malformed;
    }
  }

 private:
  struct alignas(64) PerWorker {
    LatencyRecorder from_intended;
    LatencyRecorder from_offer;
    std::uint64_t malformed = 0;
  };

  void record(const Message& message, const RouteContext& context) noexcept {
    const std::uint64_t now = ns_since_epoch(Clock::now());
    PerWorker& worker = workers_[context.worker];
    bool intended_ok = false;
    bool offer_ok = false;
    const std::uint64_t intended = load_u64(message.id, intended_ok);
    const std::uint64_t offered = load_u64(message.correlation_id, offer_ok);
    if (!intended_ok || !offer_ok) {
      ++worker.malformed;
      return;
    }
    worker.from_intended.record(now > intended ? now - intended : 0);
    worker.from_offer.record(now > offered ? now - offered : 0);
  }

  std::vector<PerWorker> workers_;
};

struct PacedResult {
  LatencyRecorder from_intended;
  LatencyRecorder from_offer;
  std::uint64_t sent = 0;
  std::uint64_t accepted = 0;
  std::uint64_t malformed = 0;
};

// Sleeps until `deadline` on CLOCK_MONOTONIC, which is steady_clock's clock.
void sleep_until(Clock::time_point deadline) noexcept {
  const auto ns = ns_since_epoch(deadline);
  timespec when{};
  when.tv_sec = static_cast<time_t>(ns / 1'000'000'000U);
  when.tv_nsec = static_cast<long>(ns % 1'000'000'000U);
  // clock_nanosleep returns the error (pthread convention); only EINTR is worth a retry.
  while (::clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &when, nullptr) == EINTR) {
  }
}

std::string run_paced(Tuning tuning, PacedResult& out) {
  const std::size_t cpus = allowed_cpus().size();
  BurnerProcesses burners(cpus);  // before any optimizer thread exists
  std::this_thread::sleep_for(std::chrono::milliseconds(20));

  LatencyRouter router(kWorkers);
  Optimizer optimizer(router, make_config(kWorkers, tuning));
  optimizer.start();

  std::vector<std::string> targets;
  for (std::size_t t = 0; t < kTargets; ++t) {
    targets.push_back("target-" + std::to_string(t));
  }
  const auto period = std::chrono::nanoseconds(1'000'000'000 / kRate);
  const auto count = static_cast<std::uint64_t>(kWindow / period);
  const auto first = Clock::now() + std::chrono::milliseconds(2);
  for (std::uint64_t i = 0; i < count; ++i) {
    const auto intended = first + period * static_cast<std::int64_t>(i);
    if (Clock::now() < intended) {
      sleep_until(intended);
    }
    Message message;  // short strings stay inline: no allocation
    message.type = MessageType::event;
    message.source = "producer";
    message.target = targets[i % kTargets];
    store_u64(message.id, ns_since_epoch(intended));
    store_u64(message.correlation_id, ns_since_epoch(Clock::now()));
    if (is_accepted(optimizer.offer(std::move(message)))) {
      ++out.accepted;
    }
    ++out.sent;
  }
  optimizer.stop(StopMode::drain);
  const std::size_t reaped = burners.stop();

  router.merge_into(out.from_intended, out.from_offer, out.malformed);
  const MetricsSnapshot metrics = optimizer.metrics();
  if (reaped != cpus) {
    return "burner processes: reaped " + std::to_string(reaped) + " of " + std::to_string(cpus);
  }
  if (out.malformed != 0 || out.from_intended.count() != out.accepted ||
      metrics.routed != out.accepted || metrics.offered != out.sent) {
    return "routed " + std::to_string(out.from_intended.count()) + " of " +
           std::to_string(out.accepted) + " accepted (" + std::to_string(out.malformed) +
           " malformed)";
  }
  return {};
}

void BM_EndToEndLatency(benchmark::State& state) {
  const Tuning tuning = state.range(0) == 0 ? Tuning::off : Tuning::on;
  const NiceRestorer nice;

  // Timer slack would delay every paced wake-up by up to 50 us; restored afterwards.
  const int slack = ::prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0);
  if (slack < 0 || ::prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0) != 0) {
    state.SkipWithError("prctl(PR_SET_TIMERSLACK) failed");
    return;
  }

  PacedResult result;
  std::string error;
  for (auto _ : state) {  // NOLINT(clang-analyzer-deadcode.DeadStores)
    try {
      error = run_paced(tuning, result);
    } catch (const std::exception& e) {
      error = e.what();
    }
    if (!error.empty()) {
      break;
    }
    // The time column is the mean latency from the intended send time.
    state.SetIterationTime(result.from_intended.mean() * 1e-9);
  }
  (void)::prctl(PR_SET_TIMERSLACK, static_cast<unsigned long>(slack), 0, 0, 0);
  if (const std::string restore_error = nice.restore(); error.empty() && !restore_error.empty()) {
    error = "restoring nice failed: " + restore_error;
  }
  if (!error.empty()) {
    state.SkipWithError(error.c_str());
    return;
  }

  result.from_intended.report(state, "", false);
  result.from_offer.report(state, "from_offer_", false);
  state.counters["dropped"] = static_cast<double>(result.sent - result.accepted);
  state.counters["rate_per_s"] = static_cast<double>(kRate);
}

}  // namespace

void register_end_to_end_latency(const SuiteOptions& options) {
  with_repetitions(benchmark::RegisterBenchmark("EndToEndLatency", BM_EndToEndLatency), options)
      ->ArgName("tuning")
      ->Arg(0)
      ->Arg(1)
      ->Iterations(1)
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond);
}

}  // namespace v2::bench
