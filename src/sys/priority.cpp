#include "sys/priority.hpp"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <string>

namespace v2::sys {
namespace {

// From <linux/ioprio.h>.
constexpr int kIoprioWhoProcess = 1;

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

}  // namespace v2::sys
