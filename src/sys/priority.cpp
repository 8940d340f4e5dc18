#include "sys/priority.hpp"

#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <string>

namespace v2::sys {
namespace {

// From <linux/ioprio.h>.
constexpr int kIoprioWhoProcess = 1;
// From <linux/sched.h>; glibc's <sched.h> does not define it.
constexpr int kSchedDeadline = 6;

std::string io_context(pid_t tid, IoPriority priority) {
  return kv("tid", tid) + ", " + kv("class", to_string(priority.io_class)) + ", " +
         kv("level", priority.level);
}

}  // namespace

Status set_nice(pid_t tid, int nice) {
  return call_errno(
             "setpriority",
             [&] { return ::setpriority(PRIO_PROCESS, static_cast<id_t>(tid), nice); },
             [&] { return kv("tid", tid) + ", " + kv("nice", nice); })
      .status();
}

Result<int> get_nice(pid_t tid) {
  return call_errno_cleared(
      "getpriority", [&] { return ::getpriority(PRIO_PROCESS, static_cast<id_t>(tid)); },
      [&] { return kv("tid", tid); });
}

Status set_io_priority(pid_t tid, IoPriority priority) {
  return call_errno(
             "ioprio_set",
             [&] {
               return ::syscall(SYS_ioprio_set, kIoprioWhoProcess, tid,
                                encode_io_priority(priority));
             },
             [&] { return io_context(tid, priority); })
      .status();
}

Result<IoPriority> get_io_priority(pid_t tid) {
  auto value = call_errno(
      "ioprio_get", [&] { return ::syscall(SYS_ioprio_get, kIoprioWhoProcess, tid); },
      [&] { return kv("tid", tid); });
  if (!value) {
    return value.error();
  }
  return decode_io_priority(static_cast<int>(value.value()));
}

std::string policy_name(int policy) {
  switch (policy) {
    case SCHED_OTHER:
      return "other";
    case SCHED_FIFO:
      return "fifo";
    case SCHED_RR:
      return "rr";
    case SCHED_BATCH:
      return "batch";
    case SCHED_IDLE:
      return "idle";
    case kSchedDeadline:
      return "deadline";
    default:
      return std::to_string(policy);
  }
}

Status set_realtime(pid_t tid, int priority) {
  const sched_param param{.sched_priority = priority};
  return call_errno(
             "sched_setscheduler",
             [&] { return ::sched_setscheduler(tid, SCHED_FIFO | SCHED_RESET_ON_FORK, &param); },
             [&] { return kv("tid", tid) + ", policy=fifo, " + kv("priority", priority); })
      .status();
}

Result<Scheduling> get_scheduling(pid_t tid) {
  auto policy = call_errno(
      "sched_getscheduler", [&] { return ::sched_getscheduler(tid); },
      [&] { return kv("tid", tid); });
  if (!policy) {
    return policy.error();
  }
  sched_param param{};
  auto status = call_errno(
      "sched_getparam", [&] { return ::sched_getparam(tid, &param); },
      [&] { return kv("tid", tid); });
  if (!status) {
    return status.error();
  }
  return Scheduling{policy.value() & ~SCHED_RESET_ON_FORK, param.sched_priority};
}

}  // namespace v2::sys
