#pragma once

#include <sys/types.h>

#include <string>

#include "sys/error.hpp"
#include "v2broker/config.hpp"

namespace v2::sys {

/// Sets the nice value of thread `tid` (setpriority(PRIO_PROCESS, tid)); on Linux nice is per
/// thread. Lowering it needs CAP_SYS_NICE or room under RLIMIT_NICE, else EACCES.
Status set_nice(pid_t tid, int nice);

/// The nice value of thread `tid` (getpriority). -1 is a valid answer: errno decides.
[[nodiscard]] Result<int> get_nice(pid_t tid);

/// An I/O scheduling class and level, as ioprio_get(2) reports them.
struct IoPriority {
  IoClass io_class = IoClass::none;
  int level = 0;

  friend bool operator==(const IoPriority&, const IoPriority&) = default;
};

/// Number of levels in the real-time and best-effort classes (0 is the highest).
inline constexpr int kIoLevels = 8;

/// The kernel's encoding: class in bits 13-15, level below.
[[nodiscard]] constexpr int encode_io_priority(IoPriority priority) noexcept {
  return (static_cast<int>(priority.io_class) << 13) | (priority.level & 0x1fff);
}
[[nodiscard]] constexpr IoPriority decode_io_priority(int value) noexcept {
  // Only bits 0-2 are the level; newer kernels keep priority hints in the bits above them.
  return IoPriority{static_cast<IoClass>((value >> 13) & 0x7), value & 0x7};
}

/// Sets the I/O priority of thread `tid` (ioprio_set(IOPRIO_WHO_PROCESS)). The real-time class
/// needs CAP_SYS_NICE or CAP_SYS_ADMIN (older kernels: CAP_SYS_ADMIN only), else EPERM.
Status set_io_priority(pid_t tid, IoPriority priority);

/// The I/O priority of thread `tid` (ioprio_get(IOPRIO_WHO_PROCESS)).
[[nodiscard]] Result<IoPriority> get_io_priority(pid_t tid);

/// A CPU scheduling policy (SCHED_OTHER, SCHED_FIFO, ...) and its static priority (0 for the
/// normal policies), as sched_getscheduler(2) and sched_getparam(2) report them.
struct Scheduling {
  int policy = 0;
  int priority = 0;

  friend bool operator==(const Scheduling&, const Scheduling&) = default;
};

/// "other", "fifo", "rr", "batch", "idle", "deadline" or the number.
[[nodiscard]] std::string policy_name(int policy);

/// Puts thread `tid` under SCHED_FIFO at `priority` (1..99), with SCHED_RESET_ON_FORK so that
/// nothing it starts inherits the real-time policy. Needs CAP_SYS_NICE or room under
/// RLIMIT_RTPRIO, else EPERM.
Status set_realtime(pid_t tid, int priority);

/// The policy (without the reset-on-fork flag) and static priority of thread `tid`.
[[nodiscard]] Result<Scheduling> get_scheduling(pid_t tid);

}  // namespace v2::sys
