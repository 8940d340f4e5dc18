#include "support.hpp"

#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <new>
#include <system_error>

#include "sys/priority.hpp"
#include "sys/thread.hpp"

namespace {

// Global counters of the replaced operator new below. Relaxed: they are read after the threads
// that allocate have been synchronised with (joined, or their work observed as done).
std::atomic<std::uint64_t> g_allocation_calls{0};
std::atomic<std::uint64_t> g_allocation_bytes{0};

void count_allocation(std::size_t size) noexcept {
  g_allocation_calls.fetch_add(1, std::memory_order_relaxed);
  g_allocation_bytes.fetch_add(size, std::memory_order_relaxed);
}

void* allocate(std::size_t size) {
  count_allocation(size);
  if (void* p = std::malloc(size == 0 ? 1 : size)) {  // NOLINT(*-no-malloc): this is new
    return p;
  }
  throw std::bad_alloc();
}

void* allocate_aligned(std::size_t size, std::align_val_t alignment) {
  count_allocation(size);
  void* p = nullptr;
  const auto align = std::max(static_cast<std::size_t>(alignment), sizeof(void*));
  if (posix_memalign(&p, align, size == 0 ? 1 : size) != 0) {
    throw std::bad_alloc();
  }
  return p;
}

}  // namespace

// Every form of operator new is replaced, so that no allocation escapes the count: the
// array and nothrow forms too, and the aligned ones, which libstdc++ does not route through
// the plain form.
void* operator new(std::size_t size) {
  return allocate(size);
}
void* operator new[](std::size_t size) {
  return allocate(size);
}
void* operator new(std::size_t size, const std::nothrow_t& /*tag*/) noexcept {
  try {
    return allocate(size);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t size, const std::nothrow_t& /*tag*/) noexcept {
  try {
    return allocate(size);
  } catch (...) {
    return nullptr;
  }
}
void* operator new(std::size_t size, std::align_val_t alignment) {
  return allocate_aligned(size, alignment);
}
void* operator new[](std::size_t size, std::align_val_t alignment) {
  return allocate_aligned(size, alignment);
}

// GCC cannot see that the operators new above are the matching malloc.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
// NOLINTBEGIN(cppcoreguidelines-no-malloc,hicpp-no-malloc): the replacements pair with malloc
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete[](void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t /*size*/) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::size_t /*size*/) noexcept {
  std::free(p);
}
void operator delete(void* p, std::align_val_t /*alignment*/) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::align_val_t /*alignment*/) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t /*size*/, std::align_val_t /*alignment*/) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::size_t /*size*/, std::align_val_t /*alignment*/) noexcept {
  std::free(p);
}
// NOLINTEND(cppcoreguidelines-no-malloc,hicpp-no-malloc)
#pragma GCC diagnostic pop

namespace v2::bench {

benchmark::internal::Benchmark* with_repetitions(benchmark::internal::Benchmark* benchmark,
                                                 const SuiteOptions& options) {
  return benchmark->Repetitions(options.repetitions)->DisplayAggregatesOnly(true);
}

double LatencyRecorder::mean() const noexcept {
  const std::uint64_t n = count();
  return n == 0 ? 0.0 : static_cast<double>(sum_) / static_cast<double>(n);
}

double LatencyRecorder::stddev() const noexcept {
  const std::uint64_t n = count();
  if (n == 0) {
    return 0.0;
  }
  // Population variance from exact integer sums: E[x^2] - E[x]^2, in long double.
  const auto count_ld = static_cast<long double>(n);
  const auto sum_ld = static_cast<long double>(sum_);
  const long double variance = (sum_squares_ - sum_ld * sum_ld / count_ld) / count_ld;
  return variance > 0.0L ? static_cast<double>(std::sqrt(variance)) : 0.0;
}

void LatencyRecorder::report(benchmark::State& state, const std::string& prefix,
                             bool with_stddev) const {
  state.counters[prefix + "mean_ns"] = mean();
  if (with_stddev) {
    state.counters[prefix + "stddev_ns"] = stddev();
  }
  state.counters[prefix + "p50_ns"] = static_cast<double>(percentile(0.50));
  state.counters[prefix + "p99_ns"] = static_cast<double>(percentile(0.99));
  state.counters[prefix + "p999_ns"] = static_cast<double>(percentile(0.999));
  state.counters[prefix + "max_ns"] = static_cast<double>(max());
}

double clock_overhead_ns() {
  constexpr std::size_t kSamples = 1001;
  std::array<std::uint64_t, kSamples> samples{};
  for (auto& sample : samples) {
    const auto first = Clock::now();
    const auto second = Clock::now();
    sample = ns_between(first, second);
  }
  std::nth_element(samples.begin(), samples.begin() + kSamples / 2, samples.end());
  return static_cast<double>(samples[kSamples / 2]);
}

OptimizerConfig make_config(std::size_t workers, Tuning tuning) {
  OptimizerConfig config;
  config.workers = workers;
  const bool on = tuning == Tuning::on;
  config.tuning.pin_workers = on;
  config.tuning.set_nice = on;
  config.tuning.set_io_priority = on;
  return config;
}

CountingRouter::CountingRouter(std::size_t workers, std::size_t pairs)
    : workers_(workers), pairs_(pairs) {}

void CountingRouter::count(const Message& message, const RouteContext& context) noexcept {
  WorkerCount& worker = workers_[context.worker];
  if (!pairs_.empty()) {
    bool ok = false;
    const std::uint64_t tag = load_u64(message.id, ok);
    const std::uint64_t pair = tag >> kPairShift;
    const std::uint64_t sequence = tag & ((std::uint64_t{1} << kPairShift) - 1);
    if (!ok || pair >= pairs_.size() || pairs_[pair].next != sequence) {
      ++worker.out_of_order;
    } else {
      ++pairs_[pair].next;
    }
  }
  // Only this worker writes its count: load and store, no locked add. Release so that a
  // reader seeing the count also sees the router's other effects.
  worker.routed.store(worker.routed.load(std::memory_order_relaxed) + 1, std::memory_order_release);
}

std::uint64_t CountingRouter::routed() const noexcept {
  std::uint64_t total = 0;
  for (const auto& worker : workers_) {
    total += worker.routed.load(std::memory_order_acquire);
  }
  return total;
}

std::uint64_t CountingRouter::out_of_order() const noexcept {
  std::uint64_t total = 0;
  for (const auto& worker : workers_) {
    total += worker.out_of_order;
  }
  return total;
}

bool wait_until_routed(const CountingRouter& router, std::uint64_t count,
                       std::chrono::milliseconds limit) {
  const auto deadline = Clock::now() + limit;
  while (router.routed() < count) {
    if (Clock::now() > deadline) {
      return router.routed() >= count;
    }
    // Sleep rather than spin: on a small machine a spinning waiter takes a worker's CPU.
    std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
  return true;
}

BurnerThreads::BurnerThreads(std::size_t count) {
  threads_.reserve(count);
  for (std::size_t i = 0; i < count; ++i) {
    threads_.emplace_back([this] {
      std::uint64_t spins = 0;
      // Relaxed: the flag carries no data, only the request to stop.
      while (!stop_.load(std::memory_order_relaxed)) {
        benchmark::DoNotOptimize(++spins);
      }
    });
  }
}

void BurnerThreads::stop() noexcept {
  stop_.store(true, std::memory_order_relaxed);
  for (auto& thread : threads_) {
    if (thread.joinable()) {
      thread.join();
    }
  }
  threads_.clear();
}

namespace {

[[noreturn]] void burn_forever(pid_t parent) noexcept {
  // Only async-signal-safe calls here: the parent has other threads.
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || ::getppid() != parent) {
    ::_exit(1);
  }
  if (::setpriority(PRIO_PROCESS, 0, 0) != 0) {
    ::_exit(2);
  }
  volatile std::uint64_t spins = 0;
  for (;;) {
    spins = spins + 1;
  }
}

}  // namespace

BurnerProcesses::BurnerProcesses(std::size_t count) {
  children_.reserve(count);
  const pid_t parent = ::getpid();
  for (std::size_t i = 0; i < count; ++i) {
    const pid_t child = ::fork();
    if (child == 0) {
      burn_forever(parent);
    }
    if (child < 0) {
      const int error = errno;
      stop();
      throw std::system_error(error, std::generic_category(),
                              "fork(burner=" + std::to_string(i) + ")");
    }
    children_.push_back(child);
  }
}

std::size_t BurnerProcesses::stop() noexcept {
  std::size_t reaped = 0;
  for (const pid_t child : children_) {
    (void)::kill(child, SIGKILL);  // ESRCH only if it is already gone; waitpid reaps either way
    int status = 0;
    while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
    }
    ++reaped;
  }
  children_.clear();
  return reaped;
}

NiceRestorer::NiceRestorer() : nice_(sys::get_nice(sys::gettid()).value_or(0)) {}

std::string NiceRestorer::restore() const {
  auto threads = sys::list_threads();
  if (!threads) {
    return threads.error().message;
  }
  for (const pid_t tid : threads.value()) {
    if (auto status = sys::set_nice(tid, nice_); !status && status.code() != ESRCH) {
      return status.error().message;
    }
  }
  return {};
}

AllocationCounts allocation_counts() noexcept {
  return {g_allocation_calls.load(std::memory_order_relaxed),
          g_allocation_bytes.load(std::memory_order_relaxed)};
}

std::string pin_current_thread(int cpu) {
  const std::array<int, 1> cpus{cpu};
  if (auto status = sys::set_affinity(0, cpus); !status) {
    return status.error().message;
  }
  return {};
}

}  // namespace v2::bench
