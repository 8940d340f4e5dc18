#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace v2 {

/// What offer does when the queue is full.
enum class OfferPolicy : unsigned char {
  drop,         ///< refuse at once and count the drop
  block,        ///< wait for room, or until the optimizer stops
  timeout,      ///< wait up to OptimizerConfig::offer_timeout; zero refuses at once
  drop_oldest,  ///< evict the oldest queued message and accept the new one, atomically
};

[[nodiscard]] std::string_view to_string(OfferPolicy policy) noexcept;

/// Parses "drop", "block", "timeout" or "drop_oldest" ("drop-oldest" is accepted too).
/// Returns nullopt for any other name; unknown names are never mapped to a default.
[[nodiscard]] std::optional<OfferPolicy> parse_offer_policy(std::string_view name) noexcept;

/// I/O scheduling classes of ioprio_set(2).
enum class IoClass : unsigned char { none = 0, realtime = 1, best_effort = 2, idle = 3 };

[[nodiscard]] std::string_view to_string(IoClass io_class) noexcept;

/// Which Linux tunings the optimizer applies. Each can be switched off on its own.
struct TuningConfig {
  /// Pin worker i to one CPU: the i-th of `cpus` if given, else the i-th CPU the process may run
  /// on (sched_getaffinity), wrapping around.
  bool pin_workers = true;
  /// Explicit CPUs for the workers; each must be in the process's allowed set. Empty: automatic.
  std::vector<int> cpus;

  /// Give every thread of the process this nice value (threads created later inherit it).
  bool set_nice = true;
  int nice = -10;

  /// Give each worker thread this I/O class and level; if the kernel refuses the real-time
  /// class, the workers fall back to best-effort at the same level.
  bool set_io_priority = true;
  IoClass io_class = IoClass::realtime;
  int io_level = 0;

  /// Run each worker, and each thread handed to Optimizer::tune_message_thread, under the
  /// real-time policy SCHED_FIFO at this priority (1..99); 0 keeps the normal policy. A
  /// real-time thread runs as soon as it wakes, ahead of every normal thread, which nice alone
  /// cannot give; it needs CAP_SYS_NICE or RLIMIT_RTPRIO, and without either the threads stay
  /// under the normal policy (reported). Real-time workers never poll for work (idle_spin is
  /// not applied): a polling real-time thread would keep normal threads off its CPU.
  int realtime_priority = 0;

  /// Name each thread the optimizer starts (v2-worker-N, v2-stats).
  bool name_threads = true;
};

/// The optimizer's settings. Defaults are the original's.
struct OptimizerConfig {
  std::size_t buffer_capacity = 1000;  ///< messages queued at most, over all workers
  std::size_t workers = 0;             ///< 0: as many as CPUs the process may use, at least 4
  std::chrono::nanoseconds stats_interval = std::chrono::milliseconds(100);
  OfferPolicy offer_policy = OfferPolicy::drop;
  std::chrono::nanoseconds offer_timeout{0};
  std::size_t batch_size = 1;
  std::chrono::nanoseconds flush_interval = std::chrono::milliseconds(10);
  /// How long an idle worker polls its queue before it parks. Polling spares producers the
  /// wake-up system call while messages keep coming; zero parks at once. It applies only when
  /// every worker has a CPU of its own (no more workers than CPUs they run on): otherwise
  /// polling takes CPU time from the producers and the other workers, and workers park at once.
  std::chrono::nanoseconds idle_spin = std::chrono::microseconds(50);
  TuningConfig tuning;
};

/// Largest accepted buffer_capacity and worker count.
inline constexpr std::size_t kMaxBufferCapacity = std::size_t{1} << 24U;
inline constexpr std::size_t kMaxWorkers = 1024;
/// Highest SCHED_FIFO priority on Linux.
inline constexpr int kMaxRealtimePriority = 99;

/// One rejected setting: which field, the value given, and why it is refused.
struct ConfigIssue {
  std::string field;
  std::string value;
  std::string reason;

  /// "field=value: reason"
  [[nodiscard]] std::string describe() const;
};

/// Thrown when a configuration is invalid; lists every problem found, not only the first.
class ConfigError : public std::invalid_argument {
 public:
  explicit ConfigError(std::vector<ConfigIssue> issues);
  [[nodiscard]] const std::vector<ConfigIssue>& issues() const noexcept { return issues_; }

 private:
  std::vector<ConfigIssue> issues_;
};

/// Checks every field. Returns the problems found; empty means valid. CPU numbers are checked
/// against the calling thread's allowed CPU set (sched_getaffinity).
[[nodiscard]] std::vector<ConfigIssue> validate(const OptimizerConfig& config);

/// Number of workers `config` asks for once "automatic" (0) is resolved against the CPUs the
/// process may run on.
[[nodiscard]] std::size_t resolved_worker_count(const OptimizerConfig& config);

}  // namespace v2
