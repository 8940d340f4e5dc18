#pragma once

// Shared pieces of the optimizer benchmarks: latency recording with exact mean and standard
// deviation, routers that count and check what they route, CPU burners (threads and separate
// processes), heap allocation counting, and restoring the nice values the optimizer changes.

#include <benchmark/benchmark.h>
#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "optimizer/histogram.hpp"
#include "v2broker/optimizer.hpp"

namespace v2::bench {

using Clock = std::chrono::steady_clock;

/// Settings that apply to every benchmark of the suite.
struct SuiteOptions {
  int repetitions = 5;  ///< runs of each benchmark; medians and spread are taken over them
};

void register_latency_consistency(const SuiteOptions& options);
void register_large_payload_memory(const SuiteOptions& options);
void register_throughput(const SuiteOptions& options);
void register_end_to_end_latency(const SuiteOptions& options);

/// Applies the suite's repetitions; the console shows only the aggregates (mean, median,
/// stddev, cv), the JSON output keeps every repetition as well.
benchmark::internal::Benchmark* with_repetitions(benchmark::internal::Benchmark* benchmark,
                                                 const SuiteOptions& options);

[[nodiscard]] inline std::uint64_t ns_between(Clock::time_point from,
                                              Clock::time_point to) noexcept {
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(to - from).count();
  return ns > 0 ? static_cast<std::uint64_t>(ns) : 0;
}

[[nodiscard]] inline std::uint64_t ns_since_epoch(Clock::time_point time) noexcept {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(time.time_since_epoch()).count());
}

/// Writes `value` as 8 raw bytes: fits the string's inline buffer, so it never allocates.
inline void store_u64(std::string& out, std::uint64_t value) {
  char bytes[sizeof value];
  std::memcpy(bytes, &value, sizeof value);
  out.assign(bytes, sizeof bytes);
}

/// Reads what store_u64 wrote; `ok` is false for a string of any other length.
[[nodiscard]] inline std::uint64_t load_u64(const std::string& in, bool& ok) noexcept {
  std::uint64_t value = 0;
  ok = in.size() == sizeof value;
  if (ok) {
    std::memcpy(&value, in.data(), sizeof value);
  }
  return value;
}

/// Latency samples in nanoseconds: a log-linear histogram for the percentiles (under 1%
/// error) and exact sums for the mean and the standard deviation over every sample. One
/// writer; merge the per-thread recorders once the writers are done.
class LatencyRecorder {
 public:
  void record(std::uint64_t ns) noexcept {
    histogram_.record(ns);
    sum_ += ns;
    const auto x = static_cast<long double>(ns);
    sum_squares_ += x * x;
  }

  void merge(const LatencyRecorder& other) noexcept {
    histogram_.add(other.histogram_);
    sum_ += other.sum_;
    sum_squares_ += other.sum_squares_;
  }

  [[nodiscard]] std::uint64_t count() const noexcept { return histogram_.count(); }
  [[nodiscard]] double mean() const noexcept;
  /// Population standard deviation of every sample recorded.
  [[nodiscard]] double stddev() const noexcept;
  [[nodiscard]] std::uint64_t percentile(double quantile) const noexcept {
    return histogram_.value_at(quantile);
  }
  [[nodiscard]] std::uint64_t max() const noexcept { return histogram_.max(); }

  /// Sets `<prefix>mean_ns`, `stddev_ns`, `p50_ns`, `p99_ns`, `p999_ns` and `max_ns`.
  void report(benchmark::State& state, const std::string& prefix, bool with_stddev) const;

 private:
  detail::HistogramCounts histogram_;
  std::uint64_t sum_ = 0;
  long double sum_squares_ = 0.0L;
};

/// Median cost of one steady_clock::now() call, in nanoseconds, measured back to back.
[[nodiscard]] double clock_overhead_ns();

/// The optimizer's configuration with the defaults of the product, `workers` workers, and the
/// Linux tunings all on or all off.
enum class Tuning : unsigned char { off, on };
[[nodiscard]] OptimizerConfig make_config(std::size_t workers, Tuning tuning);

/// Counts what it routes, per worker, on separate cache lines: a small fixed amount of work
/// per message. Optionally checks, per (source, target) pair, that messages arrive in order:
/// the producer writes `(pair << 48) | sequence` into Message::id with store_u64.
class CountingRouter : public Router {
 public:
  static constexpr unsigned kPairShift = 48;

  CountingRouter(std::size_t workers, std::size_t pairs);

  void handle_broker(Message& message, const RouteContext& context) noexcept override {
    count(message, context);
  }
  void route(Message& message, const RouteContext& context) noexcept override {
    count(message, context);
  }

  /// Messages routed so far; a racy observer while workers run.
  [[nodiscard]] std::uint64_t routed() const noexcept;
  /// Messages that broke the per-pair order or carried no sequence; exact after stop().
  [[nodiscard]] std::uint64_t out_of_order() const noexcept;

 private:
  struct alignas(64) WorkerCount {
    std::atomic<std::uint64_t> routed{0};
    std::uint64_t out_of_order = 0;
  };
  struct alignas(64) PairState {
    std::uint64_t next = 0;
  };

  void count(const Message& message, const RouteContext& context) noexcept;

  std::vector<WorkerCount> workers_;
  std::vector<PairState> pairs_;  // each pair is served by one worker: no sharing
};

/// Waits, sleeping briefly, until `router` has routed `count` messages; false after `limit`.
[[nodiscard]] bool wait_until_routed(const CountingRouter& router, std::uint64_t count,
                                     std::chrono::milliseconds limit = std::chrono::seconds(30));

/// Threads of this process that spin until stopped. Threads inherit the creator's nice value.
class BurnerThreads {
 public:
  explicit BurnerThreads(std::size_t count);
  BurnerThreads(const BurnerThreads&) = delete;
  BurnerThreads& operator=(const BurnerThreads&) = delete;
  BurnerThreads(BurnerThreads&&) = delete;
  BurnerThreads& operator=(BurnerThreads&&) = delete;
  ~BurnerThreads() { stop(); }

  /// Stops and joins the threads. Idempotent.
  void stop() noexcept;

 private:
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
};

/// Child processes, each spinning at nice 0 until killed: CPU load from outside the
/// benchmark's process, which the optimizer's process-wide nice does not reach. The children
/// die with the parent (PR_SET_PDEATHSIG), and are killed and reaped by stop().
class BurnerProcesses {
 public:
  /// Forks `count` children. Throws std::system_error (after reaping those already forked)
  /// if fork fails.
  explicit BurnerProcesses(std::size_t count);
  BurnerProcesses(const BurnerProcesses&) = delete;
  BurnerProcesses& operator=(const BurnerProcesses&) = delete;
  BurnerProcesses(BurnerProcesses&&) = delete;
  BurnerProcesses& operator=(BurnerProcesses&&) = delete;
  ~BurnerProcesses() { stop(); }

  /// Kills (SIGKILL) and reaps every child. Idempotent. Returns how many were reaped.
  std::size_t stop() noexcept;

 private:
  std::vector<pid_t> children_;
};

/// Remembers the calling thread's nice value. The optimizer with Tuning::on gives every thread
/// of the process nice -10 and leaves it so after stop(); restore() sets every thread back,
/// so the next benchmark starts from the same place.
class NiceRestorer {
 public:
  NiceRestorer();
  /// Applies the remembered value to every thread of the process. Returns "" or what failed.
  [[nodiscard]] std::string restore() const;

 private:
  int nice_ = 0;
};

/// Heap allocations made by the whole process since it started (operator new replaced in
/// this binary): every call of every form of operator new, and the bytes asked for.
struct AllocationCounts {
  std::uint64_t calls = 0;
  std::uint64_t bytes = 0;
};
[[nodiscard]] AllocationCounts allocation_counts() noexcept;

/// Restricts the calling thread to `cpu`. Returns "" or what failed.
[[nodiscard]] std::string pin_current_thread(int cpu);

}  // namespace v2::bench
