#include "broker/prometheus.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <initializer_list>
#include <string_view>
#include <utility>

#include "v2broker/config.hpp"
#include "v2broker/version.hpp"

namespace v2::broker {
namespace {

// 1-2.5-5 steps from 1 us to 1 s: 19 buckets over the range where queueing and routing
// latencies of a local broker fall, from an idle worker to a saturated machine.
constexpr std::array<std::uint64_t, 19> kLatencyBoundsNs = {
    1'000,      2'500,       5'000,       10'000,      25'000,       50'000,     100'000,
    250'000,    500'000,     1'000'000,   2'500'000,   5'000'000,    10'000'000, 25'000'000,
    50'000'000, 100'000'000, 250'000'000, 500'000'000, 1'000'000'000};

using Label = std::pair<std::string_view, std::string_view>;

// Builds the exposition text: a family header, then its samples.
class Exposition {
 public:
  void family(std::string_view name, std::string_view type, std::string_view help) {
    text_ += "# HELP ";
    text_ += name;
    text_ += ' ';
    escape(help, /*quote=*/false);
    text_ += "\n# TYPE ";
    text_ += name;
    text_ += ' ';
    text_ += type;
    text_ += '\n';
  }

  void sample(std::string_view name, std::initializer_list<Label> labels, double value) {
    begin_sample(name, labels);
    append_number(value);
    text_ += '\n';
  }

  void sample(std::string_view name, std::initializer_list<Label> labels, std::uint64_t value) {
    begin_sample(name, labels);
    append_integer(value);
    text_ += '\n';
  }

  void sample(std::string_view name, std::initializer_list<Label> labels, std::int64_t value) {
    begin_sample(name, labels);
    append_integer(value);
    text_ += '\n';
  }

  std::string take() { return std::move(text_); }

 private:
  void begin_sample(std::string_view name, std::initializer_list<Label> labels) {
    text_ += name;
    if (labels.size() != 0) {
      text_ += '{';
      bool first = true;
      for (const auto& [key, value] : labels) {
        if (!first) {
          text_ += ',';
        }
        first = false;
        text_ += key;
        text_ += "=\"";
        escape(value, /*quote=*/true);
        text_ += '"';
      }
      text_ += '}';
    }
    text_ += ' ';
  }

  // HELP text escapes backslash and newline; label values also the double quote.
  void escape(std::string_view value, bool quote) {
    for (const char c : value) {
      if (c == '\\') {
        text_ += "\\\\";
      } else if (c == '\n') {
        text_ += "\\n";
      } else if (c == '"' && quote) {
        text_ += "\\\"";
      } else {
        text_ += c;
      }
    }
  }

  template <typename Integer>
  void append_integer(Integer value) {
    char digits[24];
    auto* const end = std::to_chars(digits, digits + sizeof(digits), value).ptr;
    text_.append(digits, end);
  }

  void append_number(double value) {
    if (std::isnan(value)) {
      text_ += "NaN";
    } else if (std::isinf(value)) {
      text_ += value > 0 ? "+Inf" : "-Inf";
    } else {
      char digits[32];
      auto* const end = std::to_chars(digits, digits + sizeof(digits), value).ptr;
      text_.append(digits, end);
    }
  }

  std::string text_;
};

std::string seconds_text(std::uint64_t ns) {
  char digits[32];
  auto* const end = std::to_chars(digits, digits + sizeof(digits), static_cast<double>(ns) / 1e9,
                                  std::chars_format::general)
                        .ptr;
  return {digits, end};
}

void histogram(Exposition& out, std::string_view name, std::string_view help,
               const LatencyHistogram& h) {
  out.family(name, "histogram", help);
  const std::string bucket = std::string(name) + "_bucket";
  for (std::size_t i = 0; i < h.bounds.size() && i < h.cumulative.size(); ++i) {
    const std::string le = seconds_text(h.bounds[i]);
    out.sample(bucket, {{"le", le}}, h.cumulative[i]);
  }
  out.sample(bucket, {{"le", "+Inf"}}, h.count);
  out.sample(std::string(name) + "_sum", {}, static_cast<double>(h.sum) / 1e9);
  out.sample(std::string(name) + "_count", {}, h.count);
}

void message_counters(Exposition& out, const ExpositionInput& in) {
  out.family("v2broker_messages_received_total", "counter",
             "Messages read from client connections, by type");
  for (std::size_t t = 0; t < kMessageTypeCount; ++t) {
    out.sample("v2broker_messages_received_total",
               {{"type", to_string(static_cast<MessageType>(t))}}, in.broker.received_by_type[t]);
  }
  out.family("v2broker_messages_offered_total", "counter",
             "Messages offered to the routing queue (accepted or refused)");
  out.sample("v2broker_messages_offered_total", {}, in.optimizer.offered);
  out.family("v2broker_messages_routed_total", "counter",
             "Messages the workers took from the queue and routed, broker calls included, by "
             "type");
  for (std::size_t t = 0; t < kMessageTypeCount; ++t) {
    out.sample("v2broker_messages_routed_total", {{"type", to_string(static_cast<MessageType>(t))}},
               in.optimizer.routed_by_type[t]);
  }
  out.family("v2broker_messages_delivered_total", "counter",
             "Messages queued to a receiving connection: routed messages and replies");
  out.sample("v2broker_messages_delivered_total", {}, in.broker.delivered);

  const DropCounts& d = in.optimizer.dropped;
  const RefusalCounts& r = in.broker.refused;
  out.family("v2broker_messages_dropped_total", "counter",
             "Messages from clients that were not delivered, by reason: refused by the full "
             "queue (queue_full, timed_out), offered while stopping (stopped), evicted by a "
             "newer one (evicted), discarded at stop (abandoned), no such name "
             "(unknown_target), target gone meanwhile (target_disconnected), receiver not "
             "reading (slow_receiver), not expressible in the receiver's framing (undeliverable)");
  const std::pair<std::string_view, std::uint64_t> drops[] = {
      {"queue_full", d.full},
      {"timed_out", d.timed_out},
      {"stopped", d.stopped},
      {"evicted", d.evicted},
      {"abandoned", d.abandoned},
      {"unknown_target", r.unknown_target},
      {"target_disconnected", r.target_disconnected},
      {"slow_receiver", r.slow_receiver},
      {"undeliverable", r.undeliverable}};
  for (const auto& [reason, count] : drops) {
    out.sample("v2broker_messages_dropped_total", {{"reason", reason}}, count);
  }
  out.family("v2broker_error_replies_total", "counter",
             "Error replies sent to clients, for any reason (refusals, drops, failed calls)");
  out.sample("v2broker_error_replies_total", {}, r.error_replies);
  out.family("v2broker_replies_dropped_total", "counter",
             "Replies from the broker (errors, call results) not queued because the receiver's "
             "outgoing buffer was full beyond the headroom kept for them");
  out.sample("v2broker_replies_dropped_total", {}, r.replies_dropped);
  out.family("v2broker_protocol_errors_total", "counter",
             "Lines or frames refused by the decoder (malformed, too large)");
  out.sample("v2broker_protocol_errors_total", {}, r.protocol_errors);
  out.family("v2broker_connections_refused_total", "counter",
             "Connections turned away, by reason: peer not allowed (not_allowed), "
             "--max-connections reached (too_many_connections), out of file descriptors "
             "(out_of_descriptors)");
  const std::pair<std::string_view, std::uint64_t> refusals[] = {
      {"not_allowed", r.not_allowed},
      {"too_many_connections", r.too_many_connections},
      {"out_of_descriptors", r.out_of_descriptors}};
  for (const auto& [reason, count] : refusals) {
    out.sample("v2broker_connections_refused_total", {{"reason", reason}}, count);
  }
}

void queue_gauges(Exposition& out, const ExpositionInput& in) {
  const MetricsSnapshot& m = in.optimizer;
  out.family("v2broker_queue_messages", "gauge", "Messages accepted and waiting in the queue");
  out.sample("v2broker_queue_messages", {}, m.queued);
  out.family("v2broker_queue_capacity_messages", "gauge", "Messages the queue holds at most");
  out.sample("v2broker_queue_capacity_messages", {}, static_cast<std::uint64_t>(m.capacity));
  out.family("v2broker_queue_saturation_ratio", "gauge", "Queued messages over capacity, 0 to 1");
  out.sample("v2broker_queue_saturation_ratio", {}, m.saturation);
  out.family("v2broker_in_flight_messages", "gauge",
             "Messages taken by a worker and not yet routed");
  out.sample("v2broker_in_flight_messages", {}, m.in_flight);

  out.family("v2broker_worker_messages_routed_total", "counter", "Messages routed, by worker");
  for (std::size_t i = 0; i < m.workers.size(); ++i) {
    out.sample("v2broker_worker_messages_routed_total", {{"worker", std::to_string(i)}},
               m.workers[i].routed);
  }
  out.family("v2broker_worker_batches_total", "counter", "Batches taken from the queue, by worker");
  for (std::size_t i = 0; i < m.workers.size(); ++i) {
    out.sample("v2broker_worker_batches_total", {{"worker", std::to_string(i)}},
               m.workers[i].batches);
  }
  out.family("v2broker_worker_queue_messages", "gauge",
             "Messages waiting in each worker's share of the queue");
  for (std::size_t i = 0; i < m.workers.size(); ++i) {
    out.sample("v2broker_worker_queue_messages", {{"worker", std::to_string(i)}},
               static_cast<std::uint64_t>(m.workers[i].queued));
  }

  out.family("v2broker_connections", "gauge", "Client connections open");
  out.sample("v2broker_connections", {}, static_cast<std::uint64_t>(in.broker.connections));
  out.family("v2broker_registered_names", "gauge", "Names registered by connected processes");
  out.sample("v2broker_registered_names", {},
             static_cast<std::uint64_t>(in.broker.registered_names));

  histogram(out, "v2broker_queue_latency_seconds",
            "Time from offer to taken by a worker, since start. A value within 1/128 below a "
            "bound may be counted at the next bound",
            in.latency.queue);
  histogram(out, "v2broker_route_latency_seconds",
            "Time in the router per message, since start. A value within 1/128 below a bound "
            "may be counted at the next bound",
            in.latency.route);
}

// 1 when every thread a tuning concerns has it as requested; `requested` when any thread has it
// asked for at all (a tuning switched off in the configuration is neither).
struct TuningState {
  bool requested = false;
  bool in_force = true;

  void add(TuningOutcome outcome) {
    if (outcome == TuningOutcome::disabled) {
      return;
    }
    requested = true;
    in_force = in_force && outcome == TuningOutcome::applied;
  }
};

void tuning_gauges(Exposition& out, const TuningReport& report) {
  struct Row {
    std::string tid;
    const ThreadTuning* thread;
  };
  std::vector<Row> rows;
  rows.reserve(report.threads.size());
  for (const ThreadTuning& t : report.threads) {
    rows.push_back({std::to_string(t.tid), &t});
  }

  out.family("v2broker_thread_nice", "gauge", "Nice value in force, per thread");
  for (const Row& r : rows) {
    out.sample("v2broker_thread_nice", {{"thread", r.thread->name}, {"tid", r.tid}},
               static_cast<std::int64_t>(r.thread->nice.in_force));
  }
  out.family("v2broker_thread_pinned_cpu", "gauge",
             "CPU a thread is pinned to; -1 when it may run on more than one");
  for (const Row& r : rows) {
    const auto& cpus = r.thread->affinity.in_force;
    out.sample("v2broker_thread_pinned_cpu", {{"thread", r.thread->name}, {"tid", r.tid}},
               static_cast<std::int64_t>(cpus.size() == 1 ? cpus.front() : -1));
  }
  out.family("v2broker_thread_io_class", "gauge",
             "I/O scheduling class in force, per thread (the sample with value 1)");
  for (const Row& r : rows) {
    out.sample("v2broker_thread_io_class",
               {{"thread", r.thread->name},
                {"tid", r.tid},
                {"class", to_string(r.thread->io_priority.in_force_class)}},
               std::uint64_t{1});
  }
  out.family("v2broker_thread_io_level", "gauge", "I/O priority level in force, per thread");
  for (const Row& r : rows) {
    out.sample("v2broker_thread_io_level", {{"thread", r.thread->name}, {"tid", r.tid}},
               static_cast<std::int64_t>(r.thread->io_priority.in_force_level));
  }

  out.family("v2broker_thread_realtime_priority", "gauge",
             "SCHED_FIFO or SCHED_RR priority in force, per thread; 0 under a normal policy");
  for (const Row& r : rows) {
    out.sample("v2broker_thread_realtime_priority", {{"thread", r.thread->name}, {"tid", r.tid}},
               static_cast<std::int64_t>(r.thread->scheduling.in_force_priority));
  }

  TuningState affinity;
  TuningState nice;
  TuningState io;
  TuningState scheduling;
  for (const ThreadTuning& t : report.threads) {
    affinity.add(t.affinity.outcome);
    nice.add(t.nice.outcome);
    io.add(t.io_priority.outcome);
    scheduling.add(t.scheduling.outcome);
  }
  const std::pair<std::string_view, TuningState> states[] = {
      {"affinity", affinity}, {"nice", nice}, {"io_priority", io}, {"scheduling", scheduling}};
  out.family("v2broker_tuning_requested", "gauge",
             "1 when the configuration asks for the tuning on some thread");
  for (const auto& [name, state] : states) {
    out.sample("v2broker_tuning_requested", {{"tuning", name}},
               std::uint64_t{state.requested ? 1U : 0U});
  }
  out.family("v2broker_tuning_in_force", "gauge",
             "1 when the tuning is requested and in force as requested on every thread it "
             "concerns, read back from the kernel");
  for (const auto& [name, state] : states) {
    out.sample("v2broker_tuning_in_force", {{"tuning", name}},
               std::uint64_t{state.requested && state.in_force ? 1U : 0U});
  }
}

}  // namespace

std::span<const std::uint64_t> latency_bucket_bounds_ns() noexcept {
  return kLatencyBoundsNs;
}

std::string render_exposition(const ExpositionInput& input) {
  Exposition out;
  out.family("v2broker_build_info", "gauge", "Always 1; the labels say which build runs");
  out.sample("v2broker_build_info", {{"version", kVersion}}, std::uint64_t{1});
  out.family("v2broker_start_time_seconds", "gauge",
             "When the broker started, in seconds since the Unix epoch");
  out.sample("v2broker_start_time_seconds", {}, static_cast<double>(input.start_time_ns) / 1e9);
  message_counters(out, input);
  queue_gauges(out, input);
  tuning_gauges(out, input.tuning);
  return out.take();
}

}  // namespace v2::broker
