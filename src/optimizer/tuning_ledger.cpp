#include "optimizer/tuning_ledger.hpp"

#include <sched.h>
#include <sys/resource.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <set>
#include <utility>
#include <vector>

#include "sys/credentials.hpp"
#include "sys/priority.hpp"
#include "sys/thread.hpp"

namespace v2::detail {
namespace {

// Bounds the rescans of /proc/self/task when threads keep appearing while nice is applied.
constexpr int kMaxThreadScans = 64;
constexpr int kNiceLimitBase = 20;  // RLIMIT_NICE r allows nice values down to 20 - r

bool refused(int error) noexcept {
  return error == EACCES || error == EPERM;
}

std::string cap_word(bool set, std::string_view name) {
  return std::string(name) + "=" + (set ? "yes" : "no");
}

std::string cap_sys_nice_state(const CapabilityState& caps) {
  return "cap_sys_nice not effective (" + cap_word(caps.sys_nice_permitted, "permitted") + " " +
         cap_word(caps.sys_nice_bounding, "bounding") + ")";
}

/// How to give the program a capability it lacks, given where it is missing.
std::string capability_fix(std::string_view cap, bool permitted, bool bounding,
                           const CapabilityState& caps, const std::string& binary) {
  std::string upper;
  for (const char c : cap.substr(4)) {  // "cap_sys_nice" -> "SYS_NICE"
    upper += static_cast<char>(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
  }
  if (!bounding) {
    return std::string(cap) + " is outside the bounding set: add it where the process starts " +
           "(docker run --cap-add " + upper + ", Kubernetes securityContext.capabilities.add: [" +
           upper + "], systemd CapabilityBoundingSet=CAP_" + upper + ")";
  }
  if (permitted) {
    return std::string(cap) + " is permitted but not effective: raise it to effective " +
           "(cap_set_proc) before starting the optimizer";
  }
  if (caps.no_new_privs) {
    return "no_new_privs is set, so file capabilities are ignored: grant it as an ambient " +
           std::string("capability (systemd AmbientCapabilities=CAP_") + upper + ")";
  }
  return "setcap " + std::string(cap) + "+ep " + binary + " (or systemd AmbientCapabilities=CAP_" +
         upper + ")";
}

std::string nice_refusal(const sys::SysError& error, int requested, int before,
                         const CapabilityState& caps, const std::string& binary,
                         std::optional<int> fallback) {
  std::string text = error.message + "; " + cap_sys_nice_state(caps) + ", RLIMIT_NICE=";
  text += caps.nice_rlimit == static_cast<unsigned long long>(RLIM_INFINITY)
              ? std::string("unlimited")
              : std::to_string(caps.nice_rlimit);
  if (fallback) {
    text += " allows down to " + std::to_string(*fallback) + ": nice " + std::to_string(*fallback) +
            " set instead";
  } else {
    text += " allows nothing below the current " + std::to_string(before);
  }
  text += "; fix: " + capability_fix("cap_sys_nice", caps.sys_nice_permitted,
                                     caps.sys_nice_bounding, caps, binary);
  text += ", or raise RLIMIT_NICE to " + std::to_string(kNiceLimitBase - requested) +
          " (systemd LimitNICE=" + std::to_string(requested) + ", shell ulimit -e " +
          std::to_string(kNiceLimitBase - requested) + ")";
  return text;
}

std::string io_refusal(const sys::SysError& error, const CapabilityState& caps,
                       const std::string& binary, std::optional<IoClass> fallback, int level) {
  std::string text = error.message;
  if (refused(error.code)) {
    text += "; neither cap_sys_nice nor cap_sys_admin is effective (" +
            std::string(caps.sys_nice_effective ? "cap_sys_nice=effective"
                                                : "cap_sys_nice=not effective") +
            ", " +
            std::string(caps.sys_admin_effective ? "cap_sys_admin=effective"
                                                 : "cap_sys_admin=not effective") +
            ")";
  }
  if (fallback) {
    text += ": " + std::string(to_string(*fallback)) + "/" + std::to_string(level) + " set instead";
  }
  if (refused(error.code)) {
    text += "; fix: " +
            capability_fix("cap_sys_nice", caps.sys_nice_permitted, caps.sys_nice_bounding, caps,
                           binary) +
            "; kernels before 5.14 accept only cap_sys_admin for the realtime class";
  }
  return text;
}

std::string realtime_refusal(const sys::SysError& error, const CapabilityState& caps,
                             const std::string& binary, int priority) {
  std::string text = error.message;
  if (!refused(error.code)) {
    return text;
  }
  const auto limit = sys::rtprio_rlimit().value_or(0);
  text += "; " + cap_sys_nice_state(caps) + ", RLIMIT_RTPRIO=" +
          (limit == static_cast<unsigned long long>(RLIM_INFINITY) ? std::string("unlimited")
                                                                   : std::to_string(limit));
  text += "; the thread stays under its normal policy; fix: " +
          capability_fix("cap_sys_nice", caps.sys_nice_permitted, caps.sys_nice_bounding, caps,
                         binary) +
          ", or raise RLIMIT_RTPRIO to " + std::to_string(priority) +
          " (systemd LimitRTPRIO=" + std::to_string(priority) + ", shell ulimit -r " +
          std::to_string(priority) +
          "); under a cgroup v1 cpu controller the group also needs cpu.rt_runtime_us";
  return text;
}

std::string affinity_refusal(const sys::SysError& error) {
  std::string text = error.message;
  if (error.code == EINVAL) {
    auto allowed = sys::get_affinity(0);
    text += "; the CPU is outside the set this process may use";
    if (allowed) {
      text += " (" + sys::format_cpu_list(allowed.value()) + ")";
    }
    text += "; fix: choose CPUs from that set, or widen the cgroup cpuset / taskset of the process";
  } else if (refused(error.code)) {
    text += "; fix: run the optimizer's threads under the same user, or grant cap_sys_nice";
  }
  return text;
}

bool worker_first(const ThreadTuning& a, const ThreadTuning& b) noexcept {
  if (a.worker.has_value() != b.worker.has_value()) {
    return a.worker.has_value();
  }
  if (a.worker && b.worker && *a.worker != *b.worker) {
    return *a.worker < *b.worker;
  }
  return a.tid < b.tid;
}

}  // namespace

TuningLedger::TuningLedger(TuningConfig config)
    : config_(std::move(config)),
      binary_(sys::executable_path().value_or(std::string("BINARY"))),
      allowed_cpus_(sys::get_affinity(0).value_or(std::vector<int>{})) {}

TuningLedger::AffinityAttempt TuningLedger::apply_affinity(pid_t tid, int cpu) {
  AffinityAttempt attempt;
  attempt.cpu = cpu;
  const std::array<int, 1> cpus{cpu};
  if (auto status = sys::set_affinity(tid, cpus); !status) {
    attempt.error = status.code();
    attempt.detail = affinity_refusal(status.error());
  }
  return attempt;
}

std::optional<TuningLedger::NiceAttempt> TuningLedger::apply_nice(pid_t tid) const {
  auto before = sys::get_nice(tid);
  if (!before) {
    return std::nullopt;  // ESRCH: the thread has exited
  }

  NiceAttempt attempt;
  attempt.requested = config_.nice;
  attempt.before = before.value();
  auto status = sys::set_nice(tid, config_.nice);
  if (status) {
    return attempt;
  }
  if (status.code() == ESRCH) {
    return std::nullopt;
  }

  attempt.error = status.code();
  if (!refused(status.code())) {
    attempt.detail = status.error().message;
    return attempt;
  }

  // Refused: without CAP_SYS_NICE, RLIMIT_NICE may still allow something lower than now.
  const CapabilityState caps = read_capability_state();
  const int floor = caps.rlimit_nice_floor();
  if (floor < attempt.before && floor > config_.nice) {
    if (auto weaker = sys::set_nice(tid, floor); weaker) {
      attempt.fallback = floor;
    } else {
      attempt.detail = weaker.error().message + "; ";
    }
  }
  attempt.detail +=
      nice_refusal(status.error(), config_.nice, attempt.before, caps, binary_, attempt.fallback);
  return attempt;
}

TuningLedger::IoAttempt TuningLedger::apply_io_priority(pid_t tid) const {
  IoAttempt attempt;
  attempt.io_class = config_.io_class;
  attempt.level = config_.io_level;
  auto status = sys::set_io_priority(tid, {config_.io_class, config_.io_level});
  if (status) {
    return attempt;
  }

  attempt.error = status.code();
  const CapabilityState caps = read_capability_state();
  if (status.code() == EPERM && config_.io_class == IoClass::realtime) {
    if (auto weaker = sys::set_io_priority(tid, {IoClass::best_effort, config_.io_level}); weaker) {
      attempt.fallback = IoClass::best_effort;
    } else {
      attempt.detail = weaker.error().message + "; ";
    }
  }
  attempt.detail += io_refusal(status.error(), caps, binary_, attempt.fallback, config_.io_level);
  return attempt;
}

TuningLedger::RealtimeAttempt TuningLedger::apply_realtime(pid_t tid) const {
  RealtimeAttempt attempt;
  attempt.priority = config_.realtime_priority;
  if (auto status = sys::set_realtime(tid, config_.realtime_priority); !status) {
    attempt.error = status.code();
    attempt.detail =
        realtime_refusal(status.error(), read_capability_state(), binary_, attempt.priority);
  }
  return attempt;
}

void TuningLedger::apply_realtime_to_current_thread() {
  if (config_.realtime_priority == 0) {
    return;
  }
  const pid_t tid = sys::gettid();
  auto attempt = apply_realtime(tid);
  const std::lock_guard lock(mutex_);
  records_[tid].realtime = std::move(attempt);
}

void TuningLedger::apply_process_nice() {
  if (!config_.set_nice) {
    return;
  }

  std::map<pid_t, NiceAttempt> attempts;
  std::set<pid_t> seen;
  std::string scan_error;
  for (int scan = 0; scan < kMaxThreadScans; ++scan) {
    auto tids = sys::list_threads();
    if (!tids) {
      scan_error = tids.error().message;
      break;
    }
    bool found_new = false;
    for (const pid_t tid : tids.value()) {
      if (!seen.insert(tid).second) {
        continue;
      }
      found_new = true;
      if (auto attempt = apply_nice(tid)) {
        attempts.emplace(tid, std::move(*attempt));
      }
    }
    if (!found_new) {
      break;
    }
  }

  std::optional<NiceAttempt> summary;
  for (const auto& [tid, attempt] : attempts) {
    if (attempt.error != 0) {
      summary = attempt;
      break;
    }
  }
  if (!summary && !attempts.empty()) {
    summary = attempts.begin()->second;
  }
  if (!scan_error.empty()) {
    if (!summary) {
      summary = NiceAttempt{config_.nice, 0, std::nullopt, 0, {}};
    }
    summary->detail = scan_error + (summary->detail.empty() ? "" : "; ") + summary->detail;
  }

  const std::lock_guard lock(mutex_);
  for (auto& [tid, attempt] : attempts) {
    records_[tid].nice = std::move(attempt);
  }
  process_nice_applied_ = true;
  process_nice_ = std::move(summary);
}

pid_t TuningLedger::apply_to_current_thread(std::string_view name,
                                            std::optional<std::size_t> worker,
                                            std::optional<int> cpu) {
  const pid_t tid = sys::gettid();
  Record record;
  record.worker = worker;

  if (config_.name_threads) {
    record.name_error = sys::set_current_thread_name(name.substr(0, sys::kMaxThreadName)).code();
  }
  if (config_.pin_workers && cpu) {
    record.affinity = apply_affinity(tid, *cpu);
  }
  if (config_.set_nice) {
    record.nice = apply_nice(tid);
  }
  if (config_.set_io_priority && worker) {
    record.io = apply_io_priority(tid);
  }
  if (config_.realtime_priority > 0 && worker) {
    record.realtime = apply_realtime(tid);
  }

  const std::lock_guard lock(mutex_);
  records_[tid] = std::move(record);
  return tid;
}

std::optional<ThreadTuning> TuningLedger::read_thread(pid_t tid, const Snapshot& snapshot) const {
  auto name = sys::thread_name(tid);
  auto nice = sys::get_nice(tid);
  auto cpus = sys::get_affinity(tid);
  auto io = sys::get_io_priority(tid);
  auto scheduling = sys::get_scheduling(tid);
  if (!name || !nice || !cpus || !io || !scheduling) {
    return std::nullopt;  // the thread exited while it was read
  }

  ThreadTuning thread;
  thread.tid = tid;
  thread.name = std::move(name).value();
  thread.affinity.in_force = std::move(cpus).value();
  thread.nice.in_force = nice.value();
  thread.io_priority.in_force_class = io.value().io_class;
  thread.io_priority.in_force_level = io.value().level;
  thread.scheduling.in_force_policy = sys::policy_name(scheduling.value().policy);
  thread.scheduling.in_force_priority = scheduling.value().priority;

  const auto found = snapshot.records.find(tid);
  const Record* record = found == snapshot.records.end() ? nullptr : &found->second;
  if (record != nullptr) {
    thread.worker = record->worker;
  }

  if (record != nullptr && record->affinity) {
    const auto& attempt = *record->affinity;
    auto& out = thread.affinity;
    out.requested = {attempt.cpu};
    out.error = attempt.error;
    out.detail = attempt.detail;
    const bool includes =
        std::find(out.in_force.begin(), out.in_force.end(), attempt.cpu) != out.in_force.end();
    if (out.in_force == out.requested) {
      out.outcome = TuningOutcome::applied;
      out.detail.clear();
    } else if (attempt.error != 0) {
      out.outcome = TuningOutcome::not_applied;
    } else {
      out.outcome = includes ? TuningOutcome::partial : TuningOutcome::not_applied;
      out.detail = "pinned to " + std::to_string(attempt.cpu) + ", but " +
                   sys::format_cpu_list(out.in_force) + " is in force: changed after it was set";
    }
  }

  const NiceAttempt* nice_attempt = nullptr;
  bool inherited = false;
  if (record != nullptr && record->nice) {
    nice_attempt = &*record->nice;
  } else if (config_.set_nice && snapshot.process_nice_applied && snapshot.process_nice) {
    nice_attempt = &*snapshot.process_nice;
    inherited = true;
  }
  if (nice_attempt != nullptr) {
    auto& out = thread.nice;
    out.requested = nice_attempt->requested;
    out.error = nice_attempt->error;
    if (out.in_force == nice_attempt->requested) {
      out.outcome = TuningOutcome::applied;
    } else if (nice_attempt->fallback && out.in_force == *nice_attempt->fallback) {
      out.outcome = TuningOutcome::partial;
      out.detail = nice_attempt->detail;
    } else {
      out.outcome = TuningOutcome::not_applied;
      out.detail = nice_attempt->error != 0 ? nice_attempt->detail
                                            : "nice " + std::to_string(nice_attempt->requested) +
                                                  " was set, but " + std::to_string(out.in_force) +
                                                  " is in force: changed after it was set";
    }
    if (inherited && out.outcome != TuningOutcome::applied) {
      out.detail = "started after the process-wide nice was set and inherited " +
                   std::to_string(out.in_force) +
                   " from its creator; the process-wide attempt: " + out.detail;
    }
  }

  if (record != nullptr && record->io) {
    const auto& attempt = *record->io;
    auto& out = thread.io_priority;
    out.requested_class = attempt.io_class;
    out.requested_level = attempt.level;
    out.error = attempt.error;
    const sys::IoPriority in_force{out.in_force_class, out.in_force_level};
    if (in_force == sys::IoPriority{attempt.io_class, attempt.level}) {
      out.outcome = TuningOutcome::applied;
    } else if (attempt.fallback && in_force == sys::IoPriority{*attempt.fallback, attempt.level}) {
      out.outcome = TuningOutcome::partial;
      out.detail = attempt.detail;
    } else {
      out.outcome = TuningOutcome::not_applied;
      out.detail =
          attempt.error != 0 ? attempt.detail : std::string("set, but changed after it was set");
    }
  }

  if (record != nullptr && record->realtime) {
    const auto& attempt = *record->realtime;
    auto& out = thread.scheduling;
    out.requested_priority = attempt.priority;
    out.error = attempt.error;
    if (scheduling.value() == sys::Scheduling{SCHED_FIFO, attempt.priority}) {
      out.outcome = TuningOutcome::applied;
    } else {
      out.outcome = TuningOutcome::not_applied;
      out.detail = attempt.error != 0
                       ? attempt.detail
                       : "fifo/" + std::to_string(attempt.priority) + " was set, but " +
                             out.in_force_policy + "/" + std::to_string(out.in_force_priority) +
                             " is in force: changed after it was set";
    }
  }
  return thread;
}

TuningReport TuningLedger::report() const {
  Snapshot snapshot;
  {
    const std::lock_guard lock(mutex_);
    snapshot.records = records_;
    snapshot.process_nice_applied = process_nice_applied_;
    snapshot.process_nice = process_nice_;
  }

  TuningReport report;
  report.capabilities = read_capability_state();
  report.allowed_cpus = allowed_cpus_;
  const std::vector<pid_t> tids = sys::list_threads().value_or(std::vector<pid_t>{});
  for (const pid_t tid : tids) {
    if (auto thread = read_thread(tid, snapshot)) {
      report.threads.push_back(std::move(*thread));
    }
  }
  std::sort(report.threads.begin(), report.threads.end(), worker_first);
  return report;
}

}  // namespace v2::detail
