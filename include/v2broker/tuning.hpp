#pragma once

#include <sys/types.h>

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "v2broker/config.hpp"

namespace v2 {

/// How far one tuning got.
enum class TuningOutcome : unsigned char {
  applied,      ///< in force exactly as requested (read back from the kernel)
  partial,      ///< something weaker than requested is in force (e.g. a fallback)
  not_applied,  ///< nothing of the request is in force
  disabled,     ///< switched off in the configuration, or does not apply to this thread
};

[[nodiscard]] std::string_view to_string(TuningOutcome outcome) noexcept;

/// The capability state of the process, read from the kernel (capget, prctl, getrlimit).
struct CapabilityState {
  bool sys_nice_effective = false;
  bool sys_nice_permitted = false;
  bool sys_nice_bounding = false;
  bool sys_admin_effective = false;
  bool sys_admin_permitted = false;
  bool sys_admin_bounding = false;
  bool no_new_privs = false;
  /// RLIMIT_NICE soft limit: an unprivileged thread may lower its nice value to 20 - limit.
  unsigned long long nice_rlimit = 0;
  uid_t euid = 0;

  /// The lowest nice value an unprivileged thread may set under RLIMIT_NICE.
  [[nodiscard]] int rlimit_nice_floor() const noexcept;
  /// "cap_sys_nice=effective,permitted,bounding cap_sys_admin=... no_new_privs=0 rlimit_nice=0"
  [[nodiscard]] std::string describe() const;
};

/// Reads the calling process's capability state. Never throws; unreadable parts stay false/0.
[[nodiscard]] CapabilityState read_capability_state() noexcept;

/// CPUs the calling thread may run on (sched_getaffinity), ascending.
[[nodiscard]] std::vector<int> allowed_cpus();

struct AffinityTuning {
  TuningOutcome outcome = TuningOutcome::disabled;
  std::vector<int> requested;
  std::vector<int> in_force;  ///< read back with sched_getaffinity
  int error = 0;              ///< errno of the failed call, 0 if none
  std::string detail;         ///< why not, and the fix; empty when applied
};

struct NiceTuning {
  TuningOutcome outcome = TuningOutcome::disabled;
  std::optional<int> requested;
  int in_force = 0;  ///< read back with getpriority
  int error = 0;
  std::string detail;
};

struct IoPriorityTuning {
  TuningOutcome outcome = TuningOutcome::disabled;
  std::optional<IoClass> requested_class;
  int requested_level = 0;
  IoClass in_force_class = IoClass::none;  ///< read back with ioprio_get
  int in_force_level = 0;
  int error = 0;
  std::string detail;
};

/// The CPU scheduling policy: SCHED_FIFO when a real-time priority was asked for.
struct SchedulingTuning {
  TuningOutcome outcome = TuningOutcome::disabled;
  std::optional<int> requested_priority;  ///< SCHED_FIFO priority asked for
  std::string in_force_policy = "other";  ///< "fifo", ... as sched_getscheduler reads it
  int in_force_priority = 0;              ///< static priority in force (sched_getparam)
  int error = 0;
  std::string detail;
};

/// What is in force for one thread of the process, and what was asked of it.
struct ThreadTuning {
  pid_t tid = 0;
  std::string name;                   ///< as the kernel reports it (/proc/self/task/TID/comm)
  std::optional<std::size_t> worker;  ///< worker index, for the optimizer's workers
  AffinityTuning affinity;
  NiceTuning nice;
  IoPriorityTuning io_priority;
  SchedulingTuning scheduling;
};

/// The state of every Linux tuning, read back from the kernel when the report is made.
struct TuningReport {
  CapabilityState capabilities;
  std::vector<int> allowed_cpus;      ///< CPUs the process could use when the optimizer was made
  std::vector<ThreadTuning> threads;  ///< every thread of the process; workers first, by index

  /// True when every enabled tuning is applied as requested on every thread it concerns.
  [[nodiscard]] bool fully_applied() const noexcept;
  /// A multi-line summary for people: one line per thread, then each shortfall with its fix.
  [[nodiscard]] std::string describe() const;
};

/// Applies `config` to a short-lived thread, as to a worker pinned to `cpu`, and reports what
/// the kernel put in force, without changing any other thread of the process: the truthful
/// answer to "what would the tunings achieve here, for this user". Throws std::system_error if
/// the thread cannot be created.
[[nodiscard]] ThreadTuning probe_tuning(const TuningConfig& config, std::optional<int> cpu);

}  // namespace v2
