#include "v2broker/tuning.hpp"

#include <sys/resource.h>

#include <algorithm>
#include <string>
#include <system_error>

#include "sys/credentials.hpp"
#include "sys/thread.hpp"

namespace v2 {
namespace {

constexpr int kNiceMin = -20;
constexpr int kNiceLimitBase = 20;  // RLIMIT_NICE r allows nice values down to 20 - r

std::string cap_sets(bool effective, bool permitted, bool bounding) {
  std::string text;
  const auto add = [&](bool set, std::string_view name) {
    if (set) {
      text.append(text.empty() ? "" : ",").append(name);
    }
  };
  add(effective, "effective");
  add(permitted, "permitted");
  add(bounding, "bounding");
  return text.empty() ? "none" : text;
}

std::string cpus_or_off(bool requested, const std::vector<int>& cpus) {
  return requested ? sys::format_cpu_list(cpus) : std::string("off");
}

std::string io_text(IoClass io_class, int level) {
  if (io_class == IoClass::none) {
    return std::string(to_string(io_class));
  }
  return std::string(to_string(io_class)) + "/" + std::to_string(level);
}

std::string outcome_mark(TuningOutcome outcome) {
  if (outcome == TuningOutcome::applied || outcome == TuningOutcome::disabled) {
    return "";
  }
  return " [" + std::string(to_string(outcome)) + "]";
}

bool fine(TuningOutcome outcome) noexcept {
  return outcome == TuningOutcome::applied || outcome == TuningOutcome::disabled;
}

std::string thread_line(const ThreadTuning& thread) {
  std::string line = "tid=" + std::to_string(thread.tid) + " name=" + thread.name;
  line += " worker=" + (thread.worker ? std::to_string(*thread.worker) : std::string("-"));

  const auto& affinity = thread.affinity;
  line += " cpu=" + cpus_or_off(!affinity.requested.empty(), affinity.requested) + "->" +
          sys::format_cpu_list(affinity.in_force) + outcome_mark(affinity.outcome);

  const auto& nice = thread.nice;
  line += " nice=" + (nice.requested ? std::to_string(*nice.requested) : std::string("off")) +
          "->" + std::to_string(nice.in_force) + outcome_mark(nice.outcome);

  const auto& io = thread.io_priority;
  line +=
      " io=" +
      (io.requested_class ? io_text(*io.requested_class, io.requested_level) : std::string("off")) +
      "->" + io_text(io.in_force_class, io.in_force_level) + outcome_mark(io.outcome);

  const auto& scheduling = thread.scheduling;
  line += " sched=" +
          (scheduling.requested_priority ? "fifo/" + std::to_string(*scheduling.requested_priority)
                                         : std::string("off")) +
          "->" + scheduling.in_force_policy + "/" + std::to_string(scheduling.in_force_priority) +
          outcome_mark(scheduling.outcome);
  return line;
}

/// One reason for a shortfall, shared by every thread it concerns.
struct Shortfall {
  std::string_view tuning;
  TuningOutcome outcome = TuningOutcome::applied;
  std::string reason;  // the detail with the thread's own id masked, to merge equal reasons
  std::string detail;  // the first thread's detail, as recorded
  std::string threads;
};

std::string mask_tid(std::string detail, pid_t tid) {
  const std::string own = "tid=" + std::to_string(tid);
  for (auto at = detail.find(own); at != std::string::npos; at = detail.find(own, at)) {
    const auto end = at + own.size();
    if (end < detail.size() && detail[end] >= '0' && detail[end] <= '9') {
      at = end;  // a longer id that merely starts with this one
      continue;
    }
    detail.replace(at, own.size(), "tid=*");
  }
  return detail;
}

void add_shortfall(std::vector<Shortfall>& shortfalls, const ThreadTuning& thread,
                   std::string_view tuning, TuningOutcome outcome, const std::string& detail) {
  if (fine(outcome)) {
    return;
  }
  std::string reason = mask_tid(detail, thread.tid);
  const std::string who = thread.name + " (" + std::to_string(thread.tid) + ")";
  for (auto& shortfall : shortfalls) {
    if (shortfall.tuning == tuning && shortfall.outcome == outcome && shortfall.reason == reason) {
      shortfall.threads += ", " + who;
      return;
    }
  }
  shortfalls.push_back({tuning, outcome, std::move(reason),
                        detail.empty() ? std::string("no reason recorded") : detail, who});
}

}  // namespace

std::string_view to_string(TuningOutcome outcome) noexcept {
  switch (outcome) {
    case TuningOutcome::applied:
      return "applied";
    case TuningOutcome::partial:
      return "partial";
    case TuningOutcome::not_applied:
      return "not_applied";
    case TuningOutcome::disabled:
      return "disabled";
  }
  return "unknown";
}

int CapabilityState::rlimit_nice_floor() const noexcept {
  if (nice_rlimit >= static_cast<unsigned long long>(kNiceLimitBase - kNiceMin)) {
    return kNiceMin;
  }
  // nice_rlimit < 40 here, so the conversion is exact. A limit of 0 or 1 permits nothing
  // below 19 or 20, that is no lowering at all.
  return kNiceLimitBase - static_cast<int>(nice_rlimit);
}

std::string CapabilityState::describe() const {
  std::string text =
      "cap_sys_nice=" + cap_sets(sys_nice_effective, sys_nice_permitted, sys_nice_bounding) +
      " cap_sys_admin=" + cap_sets(sys_admin_effective, sys_admin_permitted, sys_admin_bounding) +
      " no_new_privs=" + (no_new_privs ? "1" : "0") + " rlimit_nice=";
  if (nice_rlimit == static_cast<unsigned long long>(RLIM_INFINITY)) {
    text += "unlimited";
  } else {
    text += std::to_string(nice_rlimit);
  }
  text += " euid=" + std::to_string(euid);
  return text;
}

CapabilityState read_capability_state() noexcept {
  CapabilityState state;
  try {
    if (auto nice = sys::capability_flags(sys::Capability::sys_nice)) {
      state.sys_nice_effective = nice.value().effective;
      state.sys_nice_permitted = nice.value().permitted;
      state.sys_nice_bounding = nice.value().bounding;
    }
    if (auto admin = sys::capability_flags(sys::Capability::sys_admin)) {
      state.sys_admin_effective = admin.value().effective;
      state.sys_admin_permitted = admin.value().permitted;
      state.sys_admin_bounding = admin.value().bounding;
    }
    state.no_new_privs = sys::no_new_privs().value_or(false);
    state.nice_rlimit = sys::nice_rlimit().value_or(0);
  } catch (...) {  // NOLINT(bugprone-empty-catch): only allocation can throw; keep what was read
  }
  state.euid = sys::geteuid();
  return state;
}

std::vector<int> allowed_cpus() {
  auto cpus = sys::get_affinity(0);
  if (!cpus) {
    throw std::system_error(cpus.code(), std::generic_category(), cpus.error().message);
  }
  return std::move(cpus).value();
}

bool TuningReport::fully_applied() const noexcept {
  return std::all_of(threads.begin(), threads.end(), [](const ThreadTuning& thread) {
    return fine(thread.affinity.outcome) && fine(thread.nice.outcome) &&
           fine(thread.io_priority.outcome) && fine(thread.scheduling.outcome);
  });
}

std::string TuningReport::describe() const {
  std::string text = "linux tuning: " + std::to_string(threads.size()) + " threads, allowed cpus " +
                     sys::format_cpu_list(allowed_cpus) + ", " + capabilities.describe() + "\n";
  for (const auto& thread : threads) {
    text += "  " + thread_line(thread) + "\n";
  }

  std::vector<Shortfall> shortfalls;
  for (const auto& thread : threads) {
    add_shortfall(shortfalls, thread, "cpu", thread.affinity.outcome, thread.affinity.detail);
    add_shortfall(shortfalls, thread, "nice", thread.nice.outcome, thread.nice.detail);
    add_shortfall(shortfalls, thread, "io", thread.io_priority.outcome, thread.io_priority.detail);
    add_shortfall(shortfalls, thread, "sched", thread.scheduling.outcome, thread.scheduling.detail);
  }
  if (shortfalls.empty()) {
    text += "every requested tuning is in force\n";
  }
  for (const auto& shortfall : shortfalls) {
    text += "shortfall: " + std::string(shortfall.tuning) + " " +
            std::string(to_string(shortfall.outcome)) + " on " + shortfall.threads + ": " +
            shortfall.detail + "\n";
  }
  return text;
}

}  // namespace v2
