#include "broker/check.hpp"

#include <string>
#include <vector>

#include "v2broker/tuning.hpp"

namespace v2::broker {
namespace {

std::string cpu_list(const std::vector<int>& cpus) {
  std::string text;
  for (const int cpu : cpus) {
    text += (text.empty() ? "" : ",") + std::to_string(cpu);
  }
  return text.empty() ? "none" : text;
}

std::string yes_no(bool value) {
  return value ? "yes" : "no";
}

// One line per tuning: "[ok]" or "[no]", what would be in force, and why not.
void line(std::ostream& out, bool ok, const std::string& what, const std::string& detail) {
  out << (ok ? "  [ok] " : "  [no] ") << what << "\n";
  if (!ok && !detail.empty()) {
    out << "       " << detail << "\n";
  }
}

}  // namespace

int run_check(const BrokerOptions& options, std::ostream& out) {
  const TuningConfig& tuning = options.optimizer.tuning;
  const CapabilityState caps = read_capability_state();
  const std::vector<int> cpus = allowed_cpus();

  out << "v2broker --check: what the Linux tunings would achieve for this user (euid " << caps.euid
      << ")\n\n";
  out << "process:\n";
  out << "  allowed CPUs:   " << cpu_list(cpus) << "\n";
  out << "  cap_sys_nice:   effective=" << yes_no(caps.sys_nice_effective)
      << " permitted=" << yes_no(caps.sys_nice_permitted)
      << " bounding=" << yes_no(caps.sys_nice_bounding) << "\n";
  out << "  cap_sys_admin:  effective=" << yes_no(caps.sys_admin_effective)
      << " permitted=" << yes_no(caps.sys_admin_permitted)
      << " bounding=" << yes_no(caps.sys_admin_bounding) << "\n";
  const bool capable = caps.sys_nice_effective && caps.sys_admin_effective;
  out << "  no_new_privs:   " << yes_no(caps.no_new_privs)
      << (caps.no_new_privs && !capable
              ? " (so capabilities set on the binary with setcap are not gained at exec)"
              : "")
      << "\n";
  out << "  RLIMIT_NICE:    " << caps.nice_rlimit;
  if (caps.rlimit_nice_floor() >= 20) {
    out << " (lets no thread lower its nice value without cap_sys_nice)\n\n";
  } else {
    out << " (lets any thread lower its nice value down to " << caps.rlimit_nice_floor() << ")\n\n";
  }

  std::optional<int> cpu;
  if (tuning.pin_workers) {
    const std::vector<int>& pool = tuning.cpus.empty() ? cpus : tuning.cpus;
    if (!pool.empty()) {
      cpu = pool.front();
    }
  }
  const ThreadTuning probe = probe_tuning(tuning, cpu);

  out << "tunings (tried on a probe thread):\n";
  bool all = true;
  if (tuning.pin_workers) {
    const bool ok = probe.affinity.outcome == TuningOutcome::applied;
    all = all && ok;
    line(out, ok,
         "CPU affinity: workers pinned one per CPU over " +
             cpu_list(tuning.cpus.empty() ? cpus : tuning.cpus) + " (probe pinned to " +
             cpu_list(probe.affinity.in_force) + ")",
         probe.affinity.detail);
  } else {
    line(out, true, "CPU affinity: off (--no-pin)", "");
  }
  if (tuning.set_nice) {
    const bool ok = probe.nice.outcome == TuningOutcome::applied;
    all = all && ok;
    line(out, ok,
         "nice: requested " + std::to_string(tuning.nice) + ", would be " +
             std::to_string(probe.nice.in_force),
         probe.nice.detail);
  } else {
    line(out, true, "nice: off (--no-nice)", "");
  }
  if (tuning.set_io_priority) {
    const bool ok = probe.io_priority.outcome == TuningOutcome::applied;
    all = all && ok;
    line(out, ok,
         "I/O priority: requested " + std::string(to_string(tuning.io_class)) + "/" +
             std::to_string(tuning.io_level) + ", would be " +
             std::string(to_string(probe.io_priority.in_force_class)) + "/" +
             std::to_string(probe.io_priority.in_force_level),
         probe.io_priority.detail);
  } else {
    line(out, true, "I/O priority: off (--no-ioprio)", "");
  }
  if (tuning.realtime_priority > 0) {
    const bool ok = probe.scheduling.outcome == TuningOutcome::applied;
    all = all && ok;
    line(out, ok,
         "real-time policy: requested fifo/" + std::to_string(tuning.realtime_priority) +
             ", would be " + probe.scheduling.in_force_policy + "/" +
             std::to_string(probe.scheduling.in_force_priority),
         probe.scheduling.detail);
  } else {
    line(out, true, "real-time policy: off (--realtime-priority 0)", "");
  }
  out << "\n"
      << (all ? "all enabled tunings would apply\n"
              : "some tunings would not apply; the broker still runs without them\n");
  return all ? 0 : 1;
}

}  // namespace v2::broker
