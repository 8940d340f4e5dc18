#pragma once

// What the kernel says about a thread, read directly (system calls and /proc) and independently
// of the library under test, so that tests compare the library's report with the kernel.

#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <latch>
#include <optional>
#include <ostream>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "v2broker/tuning.hpp"

namespace v2::testing {

/// A thread that runs `on_start`, then waits until the object is destroyed.
class ParkedThread {
 public:
  explicit ParkedThread(std::function<void()> on_start = {})
      : thread_([this, on_start = std::move(on_start)] {
          if (on_start) {
            on_start();
          }
          tid_.store(::gettid(), std::memory_order_relaxed);
          started_.count_down();  // publishes tid_ and on_start's effects to the waiter
          release_.wait();
        }) {
    started_.wait();
  }
  ParkedThread(const ParkedThread&) = delete;
  ParkedThread& operator=(const ParkedThread&) = delete;
  ParkedThread(ParkedThread&&) = delete;
  ParkedThread& operator=(ParkedThread&&) = delete;
  ~ParkedThread() {
    release_.count_down();
    thread_.join();
  }

  [[nodiscard]] pid_t tid() const { return tid_.load(std::memory_order_relaxed); }

 private:
  std::latch started_{1};
  std::latch release_{1};
  std::atomic<pid_t> tid_{0};
  std::thread thread_;
};

inline std::string task_path(pid_t pid, pid_t tid, std::string_view file) {
  return "/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/" + std::string(file);
}

inline std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

/// Parses the kernel's cpu list format ("0-3,6"); nullopt on malformed text.
inline std::optional<std::vector<int>> parse_cpu_list(std::string_view text) {
  std::vector<int> cpus;
  while (!text.empty()) {
    const auto comma = text.find(',');
    const std::string_view range = text.substr(0, comma);
    text = comma == std::string_view::npos ? std::string_view{} : text.substr(comma + 1);
    const auto dash = range.find('-');
    int first = 0;
    int last = 0;
    const std::string_view a = range.substr(0, dash);
    if (std::from_chars(a.data(), a.data() + a.size(), first).ec != std::errc{}) {
      return std::nullopt;
    }
    last = first;
    if (dash != std::string_view::npos) {
      const std::string_view b = range.substr(dash + 1);
      if (std::from_chars(b.data(), b.data() + b.size(), last).ec != std::errc{}) {
        return std::nullopt;
      }
    }
    for (int cpu = first; cpu <= last; ++cpu) {
      cpus.push_back(cpu);
    }
  }
  return cpus;
}

/// A "Key:\tvalue" line of /proc/PID/task/TID/status, or /proc/self/status with tid 0.
inline std::optional<std::string> status_field(pid_t pid, pid_t tid, std::string_view key) {
  const std::string path = tid == 0 ? "/proc/self/status" : task_path(pid, tid, "status");
  std::istringstream lines(read_file(path));
  for (std::string line; std::getline(lines, line);) {
    if (line.size() > key.size() && line.compare(0, key.size(), key) == 0 &&
        line[key.size()] == ':') {
      const auto start = line.find_first_not_of(" \t", key.size() + 1);
      return start == std::string::npos ? std::string{} : line.substr(start);
    }
  }
  return std::nullopt;
}

/// Cpus_allowed_list of a thread, as /proc shows it.
inline std::optional<std::vector<int>> proc_cpus_allowed(pid_t pid, pid_t tid) {
  const auto field = status_field(pid, tid, "Cpus_allowed_list");
  if (!field) {
    return std::nullopt;
  }
  return parse_cpu_list(*field);
}

/// sched_getaffinity of any thread on the machine.
inline std::optional<std::vector<int>> kernel_affinity(pid_t tid) {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(tid, sizeof(set), &set) != 0) {
    return std::nullopt;
  }
  std::vector<int> cpus;
  for (std::size_t cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &set)) {
      cpus.push_back(static_cast<int>(cpu));
    }
  }
  return cpus;
}

/// getpriority of a thread of this process.
inline std::optional<int> kernel_nice(pid_t tid) {
  errno = 0;
  const int nice = ::getpriority(PRIO_PROCESS, static_cast<id_t>(tid));
  if (errno != 0) {
    return std::nullopt;
  }
  return nice;
}

/// Field 19 (nice) of /proc/PID/task/TID/stat, for threads of another process.
inline std::optional<int> stat_nice(pid_t pid, pid_t tid) {
  const std::string stat = read_file(task_path(pid, tid, "stat"));
  const auto close = stat.rfind(')');  // the name may hold spaces and parentheses
  if (close == std::string::npos) {
    return std::nullopt;
  }
  std::istringstream fields(stat.substr(close + 1));
  std::string field;
  for (int index = 3; index <= 19; ++index) {  // fields after the name start at 3 (state)
    if (!(fields >> field)) {
      return std::nullopt;
    }
  }
  int nice = 0;
  if (std::from_chars(field.data(), field.data() + field.size(), nice).ec != std::errc{}) {
    return std::nullopt;
  }
  return nice;
}

/// The thread's name, /proc/PID/task/TID/comm without the newline.
inline std::string comm(pid_t pid, pid_t tid) {
  std::string name = read_file(task_path(pid, tid, "comm"));
  if (!name.empty() && name.back() == '\n') {
    name.pop_back();
  }
  return name;
}

struct KernelIoPriority {
  int io_class = 0;  // IOPRIO_CLASS_*: 0 none, 1 realtime, 2 best-effort, 3 idle
  int level = 0;
};

/// ioprio_get(IOPRIO_WHO_PROCESS, tid) of any thread on the machine.
inline std::optional<KernelIoPriority> kernel_io_priority(pid_t tid) {
  constexpr int kWhoProcess = 1;
  const long value = ::syscall(SYS_ioprio_get, kWhoProcess, tid);
  if (value < 0) {
    return std::nullopt;
  }
  return KernelIoPriority{static_cast<int>((value >> 13) & 0x7), static_cast<int>(value & 0x7)};
}

struct KernelScheduling {
  int policy = -1;  // as sched_getscheduler returns it, SCHED_RESET_ON_FORK bit included
  int priority = -1;
};

/// sched_getscheduler and sched_getparam of any thread on the machine.
inline std::optional<KernelScheduling> kernel_scheduling(pid_t tid) {
  const int policy = ::sched_getscheduler(tid);
  sched_param param{};
  if (policy < 0 || ::sched_getparam(tid, &param) != 0) {
    return std::nullopt;
  }
  return KernelScheduling{policy, param.sched_priority};
}

/// Thread ids of a process, from /proc/PID/task, ascending.
inline std::vector<pid_t> task_ids(pid_t pid) {
  std::vector<pid_t> tids;
  std::error_code error;
  for (const auto& entry :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task", error)) {
    const std::string name = entry.path().filename().string();
    pid_t tid = 0;
    if (std::from_chars(name.data(), name.data() + name.size(), tid).ec == std::errc{}) {
      tids.push_back(tid);
    }
  }
  std::sort(tids.begin(), tids.end());
  return tids;
}

/// One bit of a hexadecimal capability mask line of /proc/self/status (CapEff, CapPrm, CapBnd).
inline std::optional<bool> status_capability(std::string_view key, int bit) {
  const auto field = status_field(0, 0, key);
  if (!field) {
    return std::nullopt;
  }
  std::uint64_t mask = 0;
  if (std::from_chars(field->data(), field->data() + field->size(), mask, 16).ec != std::errc{}) {
    return std::nullopt;
  }
  return ((mask >> bit) & 1U) != 0;
}

}  // namespace v2::testing

namespace v2 {
/// Lets GoogleTest print outcomes by name in failure messages.
inline void PrintTo(TuningOutcome outcome, std::ostream* out) {
  *out << to_string(outcome);
}

}  // namespace v2
