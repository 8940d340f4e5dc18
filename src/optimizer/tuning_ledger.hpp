#pragma once

#include <sys/types.h>

#include <cstddef>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "v2broker/config.hpp"
#include "v2broker/tuning.hpp"

namespace v2::detail {

/// Applies the Linux tunings of a TuningConfig and remembers, per thread, what was requested,
/// what the kernel answered and why anything was refused. Reports always re-read what is in
/// force from the kernel; the ledger only adds the requests and the reasons.
///
/// All methods may be called concurrently.
class TuningLedger {
 public:
  explicit TuningLedger(TuningConfig config);

  /// Sets the configured nice value on every thread of the process, rescanning
  /// /proc/self/task until no new thread appears, and records each result. Threads created
  /// afterwards inherit the value from their creator. No-op when set_nice is off.
  void apply_process_nice();

  /// Tunes the calling thread and records the results: names it `name` (at most 15 bytes),
  /// pins it to `cpu` when given and pinning is on, sets the configured nice value, and for
  /// workers the I/O priority (with the best-effort fallback) and the real-time policy. Never
  /// throws on a refused tuning; returns the calling thread's kernel id.
  pid_t apply_to_current_thread(std::string_view name, std::optional<std::size_t> worker,
                                std::optional<int> cpu);

  /// Puts the calling thread under the configured real-time policy and records it, for a thread
  /// the caller runs on the message path (a daemon's reading thread). No-op without a
  /// real-time priority in the configuration; never throws on a refusal.
  void apply_realtime_to_current_thread();

  /// Every thread of the process with what is in force now, merged with what was requested.
  [[nodiscard]] TuningReport report() const;

 private:
  struct AffinityAttempt {
    int cpu = 0;
    int error = 0;
    std::string detail;  // the refusal and its fix
  };

  struct NiceAttempt {
    int requested = 0;
    int before = 0;
    std::optional<int> fallback;  // the weaker value set instead after a refusal
    int error = 0;
    std::string detail;
  };

  struct IoAttempt {
    IoClass io_class = IoClass::none;
    int level = 0;
    std::optional<IoClass> fallback;  // the class set instead after a refusal
    int error = 0;
    std::string detail;
  };

  struct RealtimeAttempt {
    int priority = 0;
    int error = 0;
    std::string detail;
  };

  struct Record {
    std::optional<std::size_t> worker;
    std::optional<AffinityAttempt> affinity;
    std::optional<NiceAttempt> nice;
    std::optional<IoAttempt> io;
    std::optional<RealtimeAttempt> realtime;
    int name_error = 0;  // errno of a refused thread name; the report shows the kernel's name
  };

  /// What one report needs from the ledger, copied under the lock.
  struct Snapshot {
    std::map<pid_t, Record> records;
    bool process_nice_applied = false;
    std::optional<NiceAttempt> process_nice;
  };

  [[nodiscard]] static AffinityAttempt apply_affinity(pid_t tid, int cpu);
  /// nullopt when the thread exited before it could be tuned.
  [[nodiscard]] std::optional<NiceAttempt> apply_nice(pid_t tid) const;
  [[nodiscard]] IoAttempt apply_io_priority(pid_t tid) const;
  [[nodiscard]] RealtimeAttempt apply_realtime(pid_t tid) const;
  [[nodiscard]] std::optional<ThreadTuning> read_thread(pid_t tid, const Snapshot& snapshot) const;

  TuningConfig config_;
  std::string binary_;  // the program's path, for the fixes ("setcap ... BINARY")
  // The CPUs the process may use, read once when the ledger is made: a report asked for on a
  // pinned worker must not mistake that worker's single CPU for the process's set.
  std::vector<int> allowed_cpus_;
  mutable std::mutex mutex_;
  std::map<pid_t, Record> records_;  // by tid
  bool process_nice_applied_ = false;
  // The first refused attempt of apply_process_nice (else the first success): explains threads
  // that were not tuned one by one, which inherit their nice value from their creator.
  std::optional<NiceAttempt> process_nice_;
};

}  // namespace v2::detail
