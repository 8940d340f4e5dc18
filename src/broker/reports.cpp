#include "broker/reports.hpp"

#include <cstdio>
#include <ctime>

#include "sys/error.hpp"

namespace v2::broker {
namespace {

nlohmann::json outcome_json(TuningOutcome outcome, int error, const std::string& detail) {
  nlohmann::json j;
  j["outcome"] = std::string(to_string(outcome));
  if (error != 0) {
    j["errno"] = sys::errno_name(error);
  }
  if (!detail.empty()) {
    j["detail"] = detail;
  }
  return j;
}

nlohmann::json latency_json(const LatencySummary& s) {
  return {{"count", s.count},  {"p50_ns", s.p50}, {"p99_ns", s.p99},
          {"p999_ns", s.p999}, {"max_ns", s.max}, {"mean_ns", s.mean}};
}

nlohmann::json workers_json(const std::vector<WorkerMetrics>& workers) {
  nlohmann::json j = nlohmann::json::array();
  for (const WorkerMetrics& w : workers) {
    j.push_back({{"routed", w.routed}, {"batches", w.batches}, {"queued", w.queued}});
  }
  return j;
}

}  // namespace

nlohmann::json to_json(const TuningReport& report) {
  const CapabilityState& caps = report.capabilities;
  nlohmann::json j;
  j["fully_applied"] = report.fully_applied();
  j["allowed_cpus"] = report.allowed_cpus;
  j["capabilities"] = {
      {"cap_sys_nice",
       {{"effective", caps.sys_nice_effective},
        {"permitted", caps.sys_nice_permitted},
        {"bounding", caps.sys_nice_bounding}}},
      {"cap_sys_admin",
       {{"effective", caps.sys_admin_effective},
        {"permitted", caps.sys_admin_permitted},
        {"bounding", caps.sys_admin_bounding}}},
      {"no_new_privs", caps.no_new_privs},
      {"rlimit_nice", caps.nice_rlimit},
      {"euid", caps.euid},
  };
  nlohmann::json threads = nlohmann::json::array();
  for (const ThreadTuning& t : report.threads) {
    nlohmann::json thread;
    thread["tid"] = t.tid;
    thread["name"] = t.name;
    if (t.worker) {
      thread["worker"] = *t.worker;
    }
    nlohmann::json affinity = outcome_json(t.affinity.outcome, t.affinity.error, t.affinity.detail);
    affinity["requested"] = t.affinity.requested;
    affinity["in_force"] = t.affinity.in_force;
    thread["affinity"] = std::move(affinity);

    nlohmann::json nice = outcome_json(t.nice.outcome, t.nice.error, t.nice.detail);
    if (t.nice.requested) {
      nice["requested"] = *t.nice.requested;
    }
    nice["in_force"] = t.nice.in_force;
    thread["nice"] = std::move(nice);

    nlohmann::json io =
        outcome_json(t.io_priority.outcome, t.io_priority.error, t.io_priority.detail);
    if (t.io_priority.requested_class) {
      io["requested"] = std::string(to_string(*t.io_priority.requested_class)) + "/" +
                        std::to_string(t.io_priority.requested_level);
    }
    io["in_force"] = std::string(to_string(t.io_priority.in_force_class)) + "/" +
                     std::to_string(t.io_priority.in_force_level);
    thread["io_priority"] = std::move(io);

    nlohmann::json scheduling =
        outcome_json(t.scheduling.outcome, t.scheduling.error, t.scheduling.detail);
    if (t.scheduling.requested_priority) {
      scheduling["requested"] = "fifo/" + std::to_string(*t.scheduling.requested_priority);
    }
    scheduling["in_force"] =
        t.scheduling.in_force_policy + "/" + std::to_string(t.scheduling.in_force_priority);
    thread["scheduling"] = std::move(scheduling);
    threads.push_back(std::move(thread));
  }
  j["threads"] = std::move(threads);
  j["summary"] = report.describe();
  return j;
}

nlohmann::json to_json(const MetricsSnapshot& m) {
  return {
      {"offered", m.offered},
      {"routed", m.routed},
      {"queued", m.queued},
      {"in_flight", m.in_flight},
      {"capacity", m.capacity},
      {"saturation", m.saturation},
      {"messages_per_second", m.messages_per_second},
      {"dropped",
       {{"queue_full", m.dropped.full},
        {"timed_out", m.dropped.timed_out},
        {"stopped", m.dropped.stopped},
        {"evicted", m.dropped.evicted},
        {"abandoned", m.dropped.abandoned},
        {"total", m.dropped.total()}}},
      {"queue_latency", latency_json(m.queue_latency)},
      {"route_latency", latency_json(m.route_latency)},
      {"recent_queue_latency", latency_json(m.recent_queue_latency)},
      {"recent_route_latency", latency_json(m.recent_route_latency)},
      {"workers", workers_json(m.workers)},
  };
}

nlohmann::json to_json(const RefusalCounts& c) {
  return {
      {"connections",
       {{"not_allowed", c.not_allowed},
        {"too_many_connections", c.too_many_connections},
        {"out_of_descriptors", c.out_of_descriptors},
        {"total", c.not_allowed + c.too_many_connections + c.out_of_descriptors}}},
      {"messages",
       {{"unknown_target", c.unknown_target},
        {"target_disconnected", c.target_disconnected},
        {"slow_receiver", c.slow_receiver},
        {"undeliverable", c.undeliverable}}},
      {"protocol_errors", c.protocol_errors},
      {"error_replies", c.error_replies},
      {"replies_dropped", c.replies_dropped},
  };
}

nlohmann::json rfc3339(std::int64_t ns_since_epoch) {
  if (ns_since_epoch == 0) {
    return nullptr;
  }
  const std::time_t seconds = ns_since_epoch / 1'000'000'000;
  const auto nanos = static_cast<long>(ns_since_epoch % 1'000'000'000);
  std::tm utc{};
  ::gmtime_r(&seconds, &utc);
  char text[48];
  const std::size_t n = std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%S", &utc);
  std::snprintf(text + n, sizeof(text) - n, ".%09ldZ", nanos);
  return std::string(text);
}

}  // namespace v2::broker
