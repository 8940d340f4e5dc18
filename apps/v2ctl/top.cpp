// v2ctl top: samples the broker's statistics, process list and tuning report every interval
// and shows them with rates computed from the counter deltas between two samples.
//
// The terminal is driven with a handful of ECMA-48 sequences (alternate screen, home, erase,
// cursor visibility) rather than curses: the view redraws whole lines and reads single keys,
// which every terminal emulator in use supports, and the plain snapshot must be free of escape
// codes anyway.

#include "top.hpp"

#include <poll.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <initializer_list>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "failure.hpp"
#include "sys/error.hpp"
#include "v2broker/client.hpp"
#include "v2broker/message.hpp"

namespace v2ctl {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

/// Keys from the root of a reply to one of its figures.
using Path = std::vector<const char*>;

// ---- Reading the replies ----

/// The node at `path` in `j`, or nullptr when a key is missing (a broker of another version).
const json* find(const json& j, const Path& path) {
  const json* node = &j;
  for (const char* key : path) {
    if (!node->is_object()) {
      return nullptr;
    }
    const auto it = node->find(key);
    if (it == node->end()) {
      return nullptr;
    }
    node = &*it;
  }
  return node;
}

std::optional<std::uint64_t> count_of(const json* node) {
  if (node == nullptr || !node->is_number_integer() || node->get<std::int64_t>() < 0) {
    return std::nullopt;
  }
  return node->get<std::uint64_t>();
}

std::optional<std::uint64_t> count_at(const json& j, const Path& path) {
  return count_of(find(j, path));
}

std::optional<double> number_at(const json& j, const Path& path) {
  const json* node = find(j, path);
  if (node == nullptr || !node->is_number()) {
    return std::nullopt;
  }
  return node->get<double>();
}

// ---- Formatting ----

std::string printf_text(const char* format, double value) {
  char text[64];
  std::snprintf(text, sizeof text, format, value);
  return text;
}

/// A count per second: "0.5", "12.0", "950", "12.3k", "1.25M"; "-" without a figure.
std::string rate_text(std::optional<double> per_second) {
  if (!per_second || !std::isfinite(*per_second)) {
    return "-";
  }
  const double r = *per_second;
  if (r < 100.0) {
    return printf_text("%.1f", r);
  }
  if (r < 100'000.0) {
    return printf_text("%.0f", r);
  }
  if (r < 100'000'000.0) {
    return printf_text("%.1fk", r / 1e3);
  }
  return printf_text("%.2fM", r / 1e6);
}

std::string count_text(std::optional<std::uint64_t> count) {
  return count ? std::to_string(*count) : "-";
}

/// Nanoseconds for people, three significant digits: "850ns", "12.3us", "1.25ms", "2.10s".
std::string latency_text(std::uint64_t ns) {
  const auto value = static_cast<double>(ns);
  if (ns < 1000) {
    return std::to_string(ns) + "ns";
  }
  const auto three_digits = [](double v, const char* unit) {
    const char* format = v < 10.0 ? "%.2f" : (v < 100.0 ? "%.1f" : "%.0f");
    return printf_text(format, v) + unit;
  };
  if (ns < 1'000'000) {
    return three_digits(value / 1e3, "us");
  }
  if (ns < 1'000'000'000) {
    return three_digits(value / 1e6, "ms");
  }
  return three_digits(value / 1e9, "s");
}

std::string uptime_text(double seconds) {
  const auto total = static_cast<std::uint64_t>(seconds);
  const std::uint64_t days = total / 86400;
  char text[64];
  std::snprintf(text, sizeof text, "%02llu:%02llu:%02llu",
                static_cast<unsigned long long>(total % 86400 / 3600),
                static_cast<unsigned long long>(total % 3600 / 60),
                static_cast<unsigned long long>(total % 60));
  return days == 0 ? std::string(text) : std::to_string(days) + "d " + text;
}

std::string interval_text(std::chrono::milliseconds interval) {
  if (interval.count() % 1000 == 0) {
    return std::to_string(interval.count() / 1000) + "s";
  }
  return std::to_string(interval.count()) + "ms";
}

/// [0,1,2,5] as "0-2,5"; "-" for an empty or missing list.
std::string cpu_list_text(const json* cpus) {
  if (cpus == nullptr || !cpus->is_array() || cpus->empty()) {
    return "-";
  }
  std::vector<std::int64_t> list;
  for (const json& cpu : *cpus) {
    if (cpu.is_number_integer()) {
      list.push_back(cpu.get<std::int64_t>());
    }
  }
  std::sort(list.begin(), list.end());
  std::string text;
  for (std::size_t i = 0; i < list.size();) {
    std::size_t j = i;
    while (j + 1 < list.size() && list[j + 1] == list[j] + 1) {
      ++j;
    }
    text += (text.empty() ? "" : ",") + std::to_string(list[i]);
    if (j > i) {
      text += "-" + std::to_string(list[j]);
    }
    i = j + 1;
  }
  return text;
}

std::string json_scalar_text(const json* node) {
  if (node == nullptr || node->is_null()) {
    return "-";
  }
  if (node->is_string()) {
    return node->get<std::string>();
  }
  if (node->is_array()) {
    return cpu_list_text(node);
  }
  return node->dump();
}

std::string join(const std::vector<std::string>& items, std::string_view separator) {
  std::string text;
  for (const std::string& item : items) {
    if (!text.empty()) {
      text += separator;
    }
    text += item;
  }
  return text;
}

enum class Align : std::uint8_t { left, right };

/// Rows of cells laid out in columns two spaces apart.
class Table {
 public:
  explicit Table(std::vector<Align> align) : align_(std::move(align)) {}

  void add(std::vector<std::string> cells) { rows_.push_back(std::move(cells)); }

  void render_into(std::vector<std::string>& lines) const {
    std::vector<std::size_t> width(align_.size(), 0);
    for (const auto& row : rows_) {
      for (std::size_t c = 0; c < row.size() && c < width.size(); ++c) {
        width[c] = std::max(width[c], row[c].size());
      }
    }
    for (const auto& row : rows_) {
      std::string line;
      for (std::size_t c = 0; c < row.size() && c < width.size(); ++c) {
        if (c != 0) {
          line += "  ";
        }
        const std::size_t pad = width[c] - row[c].size();
        if (align_[c] == Align::right) {
          line.append(pad, ' ');
          line += row[c];
        } else {
          line += row[c];
          line.append(pad, ' ');
        }
      }
      while (!line.empty() && line.back() == ' ') {
        line.pop_back();
      }
      lines.push_back(std::move(line));
    }
  }

 private:
  std::vector<Align> align_;
  std::vector<std::vector<std::string>> rows_;
};

// ---- Sampling ----

/// The three replies of one refresh.
struct Sample {
  Clock::time_point taken_at;   ///< when the statistics reply arrived
  std::uint64_t own_calls = 0;  ///< calls this view had sent, the statistics call included
  json stats;                   ///< RPCGetMessageStats
  json processes;               ///< RPCListProcesses
  json tuning;                  ///< RPCGetTuningStatus
};

/// Takes samples over one connection, counting its own calls: the broker counts them as
/// received requests and routes them, and the rates leave them out.
class Sampler {
 public:
  Sampler(v2::Client& client, std::chrono::milliseconds timeout)
      : client_(client), timeout_(timeout) {}

  [[nodiscard]] Sample take() {
    Sample sample;
    sample.stats = call("RPCGetMessageStats");
    sample.taken_at = Clock::now();
    sample.own_calls = calls_;
    sample.processes = call("RPCListProcesses");
    sample.tuning = call("RPCGetTuningStatus");
    return sample;
  }

 private:
  json call(const char* method) {
    ++calls_;
    const v2::Message reply = client_.call(method, {}, timeout_);
    if (reply.type == v2::MessageType::error) {
      throw Failure{Exit::broker_error, std::string("top: the broker answered ") + method +
                                            " with an error: " + reply.error};
    }
    try {
      return json::parse(reply.payload.view());
    } catch (const json::exception& error) {
      throw Failure{Exit::io,
                    std::string("top: the reply to ") + method + " is not JSON: " + error.what()};
    }
  }

  v2::Client& client_;
  std::chrono::milliseconds timeout_;
  std::uint64_t calls_ = 0;
};

/// The broker's process id, from the socket's peer credentials; nothing when the kernel does
/// not tell (a broker in another PID namespace shows as 0).
std::optional<pid_t> broker_pid(int fd) {
  ucred peer{};
  socklen_t length = sizeof peer;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &length) != 0 || peer.pid <= 0) {
    return std::nullopt;
  }
  return peer.pid;
}

/// Seconds since `pid` started, from /proc: exact to the clock tick and in the same clock as
/// /proc/uptime, without parsing the RFC 3339 `start_time` of RPCGetMessageStats.
std::optional<double> process_age_seconds(pid_t pid) {
  std::ifstream stat_file("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  std::getline(stat_file, stat);
  // The command name may hold spaces and parentheses: fields are counted after the last ')'.
  const auto name_end = stat.rfind(')');
  std::ifstream uptime_file("/proc/uptime");
  double system_uptime = 0.0;
  const long ticks_per_second = ::sysconf(_SC_CLK_TCK);
  if (name_end == std::string::npos || !(uptime_file >> system_uptime) || ticks_per_second <= 0) {
    return std::nullopt;
  }
  std::istringstream fields(stat.substr(name_end + 1));
  std::string field;
  constexpr int kStartTimeField = 22;  // proc(5); the first after the name is field 3
  for (int index = 3; index <= kStartTimeField; ++index) {
    if (!(fields >> field)) {
      return std::nullopt;
    }
  }
  const double started =
      std::strtod(field.c_str(), nullptr) / static_cast<double>(ticks_per_second);
  return std::max(0.0, system_uptime - started);
}

// ---- Rendering ----

/// What a frame shows besides the samples.
struct Context {
  std::string socket_path;
  std::optional<pid_t> pid;
  std::chrono::milliseconds interval{};
  bool interactive = false;
};

/// Totals of the newer sample and their changes since the older one.
class Delta {
 public:
  Delta(const Sample& now, const Sample* before) : now_(now), before_(before) {}

  [[nodiscard]] bool has_before() const { return before_ != nullptr; }
  [[nodiscard]] const Sample& now() const { return now_; }

  [[nodiscard]] double seconds() const {
    return before_ == nullptr
               ? 0.0
               : std::chrono::duration<double>(now_.taken_at - before_->taken_at).count();
  }

  /// This view's own calls between the two samples.
  [[nodiscard]] std::uint64_t own_calls() const {
    return before_ == nullptr ? 0 : now_.own_calls - before_->own_calls;
  }

  [[nodiscard]] std::optional<std::uint64_t> total(const Path& path) const {
    return count_at(now_.stats, path);
  }

  /// The change of a counter; nothing on the first sample or when the broker lacks it.
  [[nodiscard]] std::optional<std::uint64_t> change(const Path& path) const {
    if (before_ == nullptr) {
      return std::nullopt;
    }
    return difference(count_at(now_.stats, path), count_at(before_->stats, path));
  }

  /// Per second; `own` subtracts this view's calls, which the counter includes.
  [[nodiscard]] std::optional<double> rate(const Path& path, bool own = false) const {
    return per_second(change(path), own);
  }

  [[nodiscard]] std::optional<double> per_second(std::optional<std::uint64_t> change,
                                                 bool own = false) const {
    if (!change || seconds() <= 0.0) {
      return std::nullopt;
    }
    const std::uint64_t mine = own ? std::min(*change, own_calls()) : 0;
    return static_cast<double>(*change - mine) / seconds();
  }

  static std::optional<std::uint64_t> difference(std::optional<std::uint64_t> now,
                                                 std::optional<std::uint64_t> before) {
    if (!now || !before) {
      return std::nullopt;
    }
    return *now >= *before ? *now - *before : 0;
  }

 private:
  const Sample& now_;
  const Sample* before_;
};

void header_lines(const Delta& d, const Context& context, std::vector<std::string>& lines) {
  std::string line = "v2broker";
  if (context.pid) {
    line += " pid " + std::to_string(*context.pid);
    if (const auto age = process_age_seconds(*context.pid)) {
      line += ", up " + uptime_text(*age);
    }
  }
  line += ", every " + interval_text(context.interval);
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  char clock[16];
  if (::localtime_r(&now, &local) != nullptr &&
      std::strftime(clock, sizeof clock, "%H:%M:%S", &local) != 0) {
    line += std::string(", at ") + clock;
  }
  if (context.interactive) {
    line += ", q quits";
  }
  line += ", socket " + context.socket_path;
  lines.push_back(std::move(line));

  std::vector<std::string> names;
  std::size_t connections = 0;
  if (const json* list = find(d.now().processes, {"processes"}); list != nullptr) {
    connections = list->size();
    for (const json& process : *list) {
      for (const json& name : process.value("names", json::array())) {
        names.push_back(name.is_string() ? name.get<std::string>() : name.dump());
      }
    }
  }
  std::sort(names.begin(), names.end());
  lines.push_back("connections " + std::to_string(connections) + ", names " +
                  std::to_string(names.size()) +
                  (names.empty() ? std::string() : ": " + join(names, ", ")));
}

void message_lines(const Delta& d, std::vector<std::string>& lines) {
  struct Column {
    const char* title;
    Path path;
    bool includes_own_calls;
  };
  const std::vector<Column> columns = {
      {"received", {"total", "total_received"}, true},
      {"routed", {"optimizer", "routed"}, true},
      {"delivered", {"total", "total_sent"}, true},
      {"request", {"total", "request_count"}, true},
      {"response", {"total", "response_count"}, false},
      {"event", {"total", "event_count"}, false},
      {"error", {"total", "error_count"}, false},
  };
  Table table({Align::left, Align::right, Align::right, Align::right, Align::right, Align::right,
               Align::right, Align::right});
  std::vector<std::string> titles = {"messages"};
  std::vector<std::string> rates = {"  per second"};
  std::vector<std::string> totals = {"  total"};
  for (const Column& column : columns) {
    titles.emplace_back(column.title);
    rates.push_back(rate_text(d.rate(column.path, column.includes_own_calls)));
    totals.push_back(count_text(d.total(column.path)));
  }
  table.add(std::move(titles));
  table.add(std::move(rates));
  table.add(std::move(totals));
  table.render_into(lines);
}

void queue_lines(const Delta& d, std::vector<std::string>& lines) {
  const json& s = d.now().stats;
  const auto saturation = number_at(s, {"optimizer", "saturation"});
  lines.push_back("queue       depth " + count_text(count_at(s, {"optimizer", "queued"})) + "/" +
                  count_text(count_at(s, {"optimizer", "capacity"})) + " (" +
                  (saturation ? printf_text("%.1f", *saturation * 100.0) : "-") + "%), in flight " +
                  count_text(count_at(s, {"optimizer", "in_flight"})) + ", offered " +
                  count_text(count_at(s, {"optimizer", "offered"})) + ", broker rate " +
                  rate_text(number_at(s, {"optimizer", "messages_per_second"})) + "/s");
}

/// "name total" items of the counters under `base`, with "(+change)" when one moved since the
/// last sample; counters the broker does not report are left out.
std::string counter_items(const Delta& d, const Path& base, const std::vector<const char*>& keys) {
  std::string line;
  for (const char* key : keys) {
    Path path = base;
    path.push_back(key);
    const auto total = d.total(path);
    if (!total) {
      continue;
    }
    line += std::string(line.empty() ? "" : "  ") + key + " " + std::to_string(*total);
    if (const auto change = d.change(path); change && *change != 0) {
      line += " (+" + std::to_string(*change) + ")";
    }
  }
  return line;
}

void drop_lines(const Delta& d, std::vector<std::string>& lines) {
  lines.push_back("dropped     " + counter_items(d, {"optimizer", "dropped"},
                                                 {"total", "queue_full", "timed_out", "stopped",
                                                  "evicted", "abandoned"}));
  if (find(d.now().stats, {"refused"}) == nullptr) {
    lines.emplace_back("refused     (not reported by this broker)");
    return;
  }
  lines.push_back("refused     " +
                  counter_items(d, {"refused", "messages"},
                                {"unknown_target", "target_disconnected", "slow_receiver"}));
  lines.push_back("            " + counter_items(d, {"refused", "messages"}, {"undeliverable"}) +
                  "  " + counter_items(d, {"refused"}, {"protocol_errors", "error_replies"}));
  lines.push_back("            connections: " +
                  counter_items(d, {"refused", "connections"},
                                {"not_allowed", "too_many_connections", "out_of_descriptors"}));
}

void latency_lines(const Delta& d, std::vector<std::string>& lines) {
  Table table({Align::left, Align::right, Align::right, Align::right, Align::right, Align::right});
  table.add({"latency", "p50", "p99", "p99.9", "max", "count"});
  const std::vector<std::pair<const char*, const char*>> rows = {
      {"  queue, recent", "recent_queue_latency"},
      {"  route, recent", "recent_route_latency"},
      {"  queue, since start", "queue_latency"},
      {"  route, since start", "route_latency"},
  };
  for (const auto& [label, key] : rows) {
    const json* summary = find(d.now().stats, {"optimizer", key});
    const std::uint64_t count = summary == nullptr ? 0 : count_at(*summary, {"count"}).value_or(0);
    std::vector<std::string> cells = {label};
    for (const char* field : {"p50_ns", "p99_ns", "p999_ns", "max_ns"}) {
      const json* ns = summary == nullptr ? nullptr : find(*summary, {field});
      cells.push_back(count != 0 && ns != nullptr && ns->is_number_unsigned()
                          ? latency_text(ns->get<std::uint64_t>())
                          : "-");
    }
    cells.push_back(summary == nullptr ? "-" : std::to_string(count));
    table.add(std::move(cells));
  }
  table.render_into(lines);
}

void worker_lines(const Delta& d, const Sample* before, std::vector<std::string>& lines) {
  const json* workers = find(d.now().stats, {"optimizer", "workers"});
  if (workers == nullptr || !workers->is_array()) {
    lines.emplace_back("workers     (per-worker figures are not reported by this broker)");
    return;
  }
  const json* previous =
      before == nullptr ? nullptr : find(before->stats, {"optimizer", "workers"});
  std::vector<std::optional<std::uint64_t>> routed;
  std::uint64_t all = 0;
  for (std::size_t i = 0; i < workers->size(); ++i) {
    std::optional<std::uint64_t> change;
    if (previous != nullptr && previous->is_array() && i < previous->size()) {
      change = Delta::difference(count_at((*workers)[i], {"routed"}),
                                 count_at((*previous)[i], {"routed"}));
    }
    routed.push_back(change);
    all += change.value_or(0);
  }
  std::optional<std::size_t> busiest;
  for (std::size_t i = 0; i < routed.size(); ++i) {
    if (routed[i].value_or(0) != 0 && (!busiest || *routed[i] > *routed[*busiest])) {
      busiest = i;
    }
  }

  std::string summary = "workers     " + std::to_string(workers->size());
  if (busiest) {
    summary += ", busiest: worker " + std::to_string(*busiest);
  } else if (d.has_before()) {
    summary += ", all idle";
  }
  if (const auto own = d.per_second(d.own_calls()); own && *own > 0.0) {
    // Broker calls are routed by a worker too; this view's own cannot be told apart there.
    summary += " (rates include this view's " + rate_text(own) + " calls/s)";
  }
  lines.push_back(std::move(summary));
  Table table({Align::left, Align::right, Align::right, Align::right, Align::right, Align::right,
               Align::left});
  table.add({"", "routed/s", "share", "batch", "queued", "routed", ""});
  for (std::size_t i = 0; i < workers->size(); ++i) {
    const json& worker = (*workers)[i];
    std::string share = "-";
    std::string batch = "-";
    if (routed[i] && all != 0) {
      share =
          printf_text("%.0f%%", 100.0 * static_cast<double>(*routed[i]) / static_cast<double>(all));
    }
    if (previous != nullptr && i < previous->size()) {
      const auto batches =
          Delta::difference(count_at(worker, {"batches"}), count_at((*previous)[i], {"batches"}));
      if (routed[i] && batches && *batches != 0) {
        batch =
            printf_text("%.1f", static_cast<double>(*routed[i]) / static_cast<double>(*batches));
      }
    }
    table.add({"  worker " + std::to_string(i), rate_text(d.per_second(routed[i])), share, batch,
               count_text(count_at(worker, {"queued"})), count_text(count_at(worker, {"routed"})),
               busiest && *busiest == i ? "<- busiest" : ""});
  }
  table.render_into(lines);
}

/// "in force", or "requested->in force [outcome]" when they differ, as the broker's summary.
std::string tuning_cell(const json& aspect) {
  const std::string outcome = aspect.value("outcome", "");
  std::string in_force = json_scalar_text(find(aspect, {"in_force"}));
  if (outcome == "applied" || outcome == "disabled" || outcome.empty()) {
    return in_force;
  }
  return json_scalar_text(find(aspect, {"requested"})) + "->" + in_force + " [" + outcome + "]";
}

void tuning_lines(const json& tuning, std::vector<std::string>& lines) {
  const json* fully = find(tuning, {"fully_applied"});
  std::string summary = "tuning      ";
  summary += fully != nullptr && fully->is_boolean() && fully->get<bool>()
                 ? "every requested tuning is in force"
                 : "NOT every requested tuning is in force";
  lines.push_back(std::move(summary));
  std::string context = "            allowed cpus " + cpu_list_text(find(tuning, {"allowed_cpus"}));
  for (const char* cap : {"cap_sys_nice", "cap_sys_admin"}) {
    const json* effective = find(tuning, {"capabilities", cap, "effective"});
    context += std::string(", ") + cap + " " +
               (effective != nullptr && effective->is_boolean() && effective->get<bool>()
                    ? "effective"
                    : "not effective");
  }
  lines.push_back(std::move(context));

  const json* threads = find(tuning, {"threads"});
  if (threads == nullptr || !threads->is_array()) {
    return;
  }
  Table table({Align::left, Align::right, Align::right, Align::left, Align::left, Align::left,
               Align::left});
  table.add({"  thread", "tid", "worker", "cpu", "nice", "io", "sched"});
  // Why each aspect is not in force, once per (aspect, outcome, errno), with the threads.
  struct Shortfall {
    std::vector<std::string> threads;
    std::string detail;
  };
  std::map<std::string, Shortfall> shortfalls;
  for (const json& thread : *threads) {
    const std::string name = thread.value("name", "?");
    std::vector<std::string> row = {"  " + name, json_scalar_text(find(thread, {"tid"})),
                                    json_scalar_text(find(thread, {"worker"}))};
    for (const char* aspect : {"affinity", "nice", "io_priority", "scheduling"}) {
      const json* state = find(thread, {aspect});
      if (state == nullptr) {
        row.emplace_back("-");
        continue;
      }
      row.push_back(tuning_cell(*state));
      const std::string outcome = state->value("outcome", "");
      if (outcome == "partial" || outcome == "not_applied") {
        const std::string error = state->value("errno", "");
        Shortfall& shortfall = shortfalls[std::string(aspect) + " " + outcome +
                                          (error.empty() ? "" : " (" + error + ")")];
        shortfall.threads.push_back(name);
        if (shortfall.detail.empty()) {
          shortfall.detail = state->value("detail", "");
        }
      }
    }
    table.add(std::move(row));
  }
  table.render_into(lines);
  for (const auto& [what, shortfall] : shortfalls) {
    lines.push_back("  why " + what + " on " + join(shortfall.threads, ", ") + ": " +
                    (shortfall.detail.empty() ? "no reason given" : shortfall.detail));
  }
}

void connection_lines(const Delta& d, const Sample* before, std::vector<std::string>& lines) {
  const json* list = find(d.now().processes, {"processes"});
  if (list == nullptr || !list->is_array()) {
    return;
  }
  // Counters of the previous sample, by connection id, for the rates.
  std::map<std::uint64_t, const json*> previous;
  if (const json* old = before == nullptr ? nullptr : find(before->processes, {"processes"});
      old != nullptr && old->is_array()) {
    for (const json& process : *old) {
      if (const auto id = count_at(process, {"connection"})) {
        previous[*id] = &process;
      }
    }
  }
  struct Row {
    std::uint64_t activity = 0;
    std::uint64_t id = 0;
    std::vector<std::string> cells;
  };
  std::vector<Row> rows;
  const pid_t self = ::getpid();
  for (const json& process : *list) {
    Row row;
    row.id = count_at(process, {"connection"}).value_or(0);
    const auto it = previous.find(row.id);
    const json* old = it == previous.end() ? nullptr : it->second;
    const auto change = [&](const char* key) {
      return old == nullptr ? std::nullopt
                            : Delta::difference(count_at(process, {key}), count_at(*old, {key}));
    };
    const auto sent = change("sent");
    const auto received = change("received");
    row.activity = sent.value_or(0) + received.value_or(0);
    std::vector<std::string> names;
    for (const json& name : process.value("names", json::array())) {
      names.push_back(name.is_string() ? name.get<std::string>() : name.dump());
    }
    const auto pid = count_at(process, {"pid"});
    std::string shown = join(names, ", ");
    if (names.empty()) {
      shown = pid && *pid == static_cast<std::uint64_t>(self) ? "(this view)" : "(no name)";
    }
    row.cells = {"  #" + std::to_string(row.id),
                 rate_text(d.per_second(sent)),
                 rate_text(d.per_second(received)),
                 count_text(count_at(process, {"sent"})),
                 count_text(count_at(process, {"received"})),
                 count_text(count_at(process, {"dropped_slow"})),
                 count_text(pid),
                 process.value("framing", "-"),
                 shown};
    rows.push_back(std::move(row));
  }
  // The busiest first, as the connections a reader looks for.
  std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
    return a.activity != b.activity ? a.activity > b.activity : a.id < b.id;
  });
  Table table({Align::left, Align::right, Align::right, Align::right, Align::right, Align::right,
               Align::right, Align::left, Align::left});
  table.add({"connection", "sent/s", "recv/s", "sent", "received", "slow drops", "pid", "framing",
             "names"});
  for (Row& row : rows) {
    table.add(std::move(row.cells));
  }
  table.render_into(lines);
}

/// Every line of one view of `now`, with rates against `before` when there is one.
std::vector<std::string> render(const Sample& now, const Sample* before, const Context& context) {
  const Delta d(now, before);
  std::vector<std::string> lines;
  header_lines(d, context, lines);
  lines.emplace_back();
  message_lines(d, lines);
  queue_lines(d, lines);
  drop_lines(d, lines);
  lines.emplace_back();
  latency_lines(d, lines);
  lines.emplace_back();
  worker_lines(d, before, lines);
  lines.emplace_back();
  tuning_lines(now.tuning, lines);
  lines.emplace_back();
  connection_lines(d, before, lines);
  return lines;
}

// ---- Output ----

void write_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      throw Failure{Exit::io, "top: cannot write to stdout: " + v2::sys::errno_name(errno)};
    }
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
}

/// Control characters (from names or reasons) would move the cursor: shown as '?'.
std::string printable(std::string_view line) {
  std::string out(line);
  for (char& c : out) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte == 0x7f) {
      c = '?';
    }
  }
  return out;
}

/// The first `columns` characters of `line` (UTF-8 sequences are not split).
std::string truncated(const std::string& line, std::size_t columns) {
  std::size_t seen = 0;
  for (std::size_t i = 0; i < line.size(); ++i) {
    const bool starts_character = (static_cast<unsigned char>(line[i]) & 0xC0U) != 0x80U;
    if (starts_character && seen++ == columns) {
      return line.substr(0, i);
    }
  }
  return line;
}

struct Size {
  std::size_t columns = 80;
  std::size_t rows = 24;
};

Size terminal_size() {
  Size size;
  winsize window{};
  if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &window) == 0) {
    if (window.ws_col != 0) {
      size.columns = window.ws_col;
    }
    if (window.ws_row != 0) {
      size.rows = window.ws_row;
    }
  }
  return size;
}

constexpr std::string_view kHome = "\x1b[H";
constexpr std::string_view kClearScreen = "\x1b[2J";
constexpr std::string_view kEraseLine = "\x1b[K";
constexpr std::string_view kEraseBelow = "\x1b[J";
constexpr std::string_view kAlternateScreen = "\x1b[?1049h";
constexpr std::string_view kMainScreen = "\x1b[?1049l";
constexpr std::string_view kHideCursor = "\x1b[?25l";
constexpr std::string_view kShowCursor = "\x1b[?25h";

/// One screen: each line cut to the width, lines past the height left out with a note. Lines
/// are overwritten in place and erased to their end, so nothing flickers between frames.
std::string screen(const std::vector<std::string>& lines, Size size, bool clear) {
  std::string out(kHome);
  if (clear) {
    out += kClearScreen;
  }
  std::size_t shown = lines.size();
  std::string more;
  if (shown > size.rows) {
    shown = size.rows - 1;
    more = "... " + std::to_string(lines.size() - shown) + " more lines: enlarge the terminal";
  }
  for (std::size_t i = 0; i < shown; ++i) {
    out += truncated(printable(lines[i]), size.columns);
    out += kEraseLine;
    if (i + 1 < shown || !more.empty()) {
      out += "\r\n";
    }
  }
  out += truncated(more, size.columns);
  out += kEraseBelow;
  return out;
}

std::string plain(const std::vector<std::string>& lines) {
  std::string out;
  for (const std::string& line : lines) {
    out += printable(line);
    out += '\n';
  }
  return out;
}

/// The terminal in the view's mode: alternate screen, cursor hidden, keys read one at a time
/// without echo (signals from Ctrl-C and Ctrl-Z still work). Left as found on destruction.
class Terminal {
 public:
  Terminal() { enter(); }
  Terminal(const Terminal&) = delete;
  Terminal& operator=(const Terminal&) = delete;
  Terminal(Terminal&&) = delete;
  Terminal& operator=(Terminal&&) = delete;
  ~Terminal() { leave(); }

  /// True when keys can be read from stdin.
  [[nodiscard]] bool reads_keys() const noexcept { return saved_.has_value(); }

  void enter() {
    if (entered_) {
      return;
    }
    termios mode{};
    if (::isatty(STDIN_FILENO) == 1 && ::tcgetattr(STDIN_FILENO, &mode) == 0) {
      saved_ = mode;
      mode.c_lflag &= ~static_cast<tcflag_t>(ICANON | ECHO);
      mode.c_cc[VMIN] = 1;
      mode.c_cc[VTIME] = 0;
      if (::tcsetattr(STDIN_FILENO, TCSANOW, &mode) != 0) {
        saved_.reset();
      }
    }
    entered_ = true;
    write_all(STDOUT_FILENO, std::string(kAlternateScreen) + std::string(kHideCursor));
  }

  /// Restores the screen, the cursor and the keyboard mode; never throws (also on the way out
  /// of an error).
  void leave() noexcept {
    if (!entered_) {
      return;
    }
    entered_ = false;
    const std::string restore = std::string(kMainScreen) + std::string(kShowCursor);
    try {
      write_all(STDOUT_FILENO, restore);
    } catch (const Failure&) {
      // The terminal is gone; there is nothing left to restore on it.
    }
    if (saved_) {
      ::tcsetattr(STDIN_FILENO, TCSANOW, &*saved_);
    }
  }

 private:
  std::optional<termios> saved_;
  bool entered_ = false;
};

/// Signals delivered through a descriptor while the view runs; the mask is restored after.
class SignalFd {
 public:
  explicit SignalFd(std::initializer_list<int> signals) {
    sigemptyset(&set_);
    for (const int signo : signals) {
      sigaddset(&set_, signo);
    }
    if (auto blocked = v2::sys::call_errno(
            "sigprocmask", [&] { return ::sigprocmask(SIG_BLOCK, &set_, &old_); },
            [] { return std::string("top signals"); });
        !blocked) {
      throw Failure{Exit::io, "top: " + blocked.error().message};
    }
    auto opened = v2::sys::call_errno(
        "signalfd", [&] { return ::signalfd(-1, &set_, SFD_CLOEXEC | SFD_NONBLOCK); },
        [] { return std::string("top signals"); });
    if (!opened) {
      ::sigprocmask(SIG_SETMASK, &old_, nullptr);
      throw Failure{Exit::io, "top: " + opened.error().message};
    }
    fd_ = opened.value();
  }
  SignalFd(const SignalFd&) = delete;
  SignalFd& operator=(const SignalFd&) = delete;
  SignalFd(SignalFd&&) = delete;
  SignalFd& operator=(SignalFd&&) = delete;
  ~SignalFd() {
    ::close(fd_);
    ::sigprocmask(SIG_SETMASK, &old_, nullptr);
  }

  [[nodiscard]] int fd() const noexcept { return fd_; }

  /// The next pending signal, or 0.
  [[nodiscard]] int next() const {
    signalfd_siginfo info{};
    const ssize_t n = ::read(fd_, &info, sizeof info);
    return n == static_cast<ssize_t>(sizeof info) ? static_cast<int>(info.ssi_signo) : 0;
  }

 private:
  sigset_t set_{};
  sigset_t old_{};
  int fd_ = -1;
};

/// Runs `step`, turning a lost connection into the documented failure.
template <typename Step>
auto or_lost(const std::string& socket_path, Step step) {
  try {
    return step();
  } catch (const v2::ClientError& error) {
    throw Failure{Exit::io, "top: lost the broker at socket=" + socket_path + " (" +
                                std::string(v2::to_string(error.code())) + "): " + error.what()};
  }
}

/// Discards anything the broker sends between calls (nothing is expected); throws ClientError
/// hung_up when it closed the connection.
void drain_unexpected(v2::Client& client) {
  while (client.receive(std::chrono::milliseconds(0))) {
  }
}

/// Waits until `due`, noticing at once when the broker closes the connection.
void wait_watching(v2::Client& client, Clock::time_point due) {
  for (auto now = Clock::now(); now < due; now = Clock::now()) {
    pollfd entry{client.fd(), POLLIN, 0};
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(due - now).count();
    const int ready = ::poll(&entry, 1, static_cast<int>(std::min<std::int64_t>(left, 1 << 30)));
    if (ready < 0 && errno != EINTR) {
      throw Failure{Exit::io, "top: poll: " + v2::sys::errno_name(errno)};
    }
    if (ready > 0) {
      drain_unexpected(client);
    }
  }
}

int run_snapshot(Sampler& sampler, v2::Client& client, const Context& context,
                 const std::string& socket_path) {
  // Rates need two samples: the snapshot covers one interval.
  const Sample first = or_lost(socket_path, [&] { return sampler.take(); });
  or_lost(socket_path, [&] { wait_watching(client, first.taken_at + context.interval); });
  const Sample second = or_lost(socket_path, [&] { return sampler.take(); });
  write_all(STDOUT_FILENO, plain(render(second, &first, context)));
  return static_cast<int>(Exit::ok);
}

enum class Event : std::uint8_t { none, quit, redraw, refresh };

/// Waits until the next refresh is due or something happens, and says what.
Event wait_for_event(const SignalFd& signals, Terminal& terminal, v2::Client& client,
                     Clock::time_point due) {
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(due - Clock::now()).count();
  pollfd fds[3] = {{signals.fd(), POLLIN, 0},
                   {client.fd(), POLLIN, 0},
                   {terminal.reads_keys() ? STDIN_FILENO : -1, POLLIN, 0}};
  const int ready = ::poll(fds, 3, static_cast<int>(std::clamp<std::int64_t>(left, 0, 1 << 30)));
  if (ready < 0) {
    if (errno == EINTR) {
      return Event::none;
    }
    throw Failure{Exit::io, "top: poll: " + v2::sys::errno_name(errno)};
  }
  if (ready == 0) {
    return Event::refresh;
  }
  Event event = Event::none;
  for (int signo = signals.next(); signo != 0; signo = signals.next()) {
    if (signo == SIGWINCH) {
      event = Event::redraw;
    } else if (signo == SIGTSTP) {
      // Stop with the terminal as the shell expects it; SIGCONT brings the view back.
      terminal.leave();
      ::raise(SIGSTOP);
    } else if (signo == SIGCONT) {
      terminal.enter();
      event = Event::redraw;
    } else {
      return Event::quit;
    }
  }
  if ((fds[2].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
    char keys[64];
    const ssize_t n = ::read(STDIN_FILENO, keys, sizeof keys);
    if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
      return Event::quit;  // the terminal hung up
    }
    for (ssize_t i = 0; i < n; ++i) {
      if (keys[i] == 'q' || keys[i] == 'Q') {
        return Event::quit;
      }
      if (keys[i] == ' ') {
        event = Event::refresh;
      }
    }
  }
  if ((fds[1].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
    drain_unexpected(client);
  }
  return event;
}

int run_interactive(Sampler& sampler, v2::Client& client, const Context& context,
                    const std::string& socket_path) {
  const SignalFd signals({SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGWINCH, SIGTSTP, SIGCONT});
  Terminal terminal;
  std::optional<Sample> before;
  Sample now = or_lost(socket_path, [&] { return sampler.take(); });
  bool clear = true;
  auto due = Clock::now() + context.interval;
  for (;;) {
    write_all(STDOUT_FILENO,
              screen(render(now, before ? &*before : nullptr, context), terminal_size(), clear));
    clear = false;
    Event event = Event::none;
    while (event == Event::none) {
      event = or_lost(socket_path, [&] { return wait_for_event(signals, terminal, client, due); });
    }
    if (event == Event::quit) {
      return static_cast<int>(Exit::ok);
    }
    if (event == Event::redraw) {
      clear = true;
      continue;
    }
    before = std::move(now);
    now = or_lost(socket_path, [&] { return sampler.take(); });
    due = Clock::now() + context.interval;
  }
}

}  // namespace

std::optional<std::chrono::milliseconds> parse_interval(std::string_view text) {
  double value = 0.0;
  const char* begin = text.data();
  const char* end = text.data() + text.size();
  const auto [rest, error] = std::from_chars(begin, end, value);
  if (error != std::errc() || rest == begin || !std::isfinite(value)) {
    return std::nullopt;
  }
  const std::string_view unit(rest, static_cast<std::size_t>(end - rest));
  double ms_per_unit = 0.0;
  if (unit.empty() || unit == "ms") {
    ms_per_unit = 1.0;
  } else if (unit == "s") {
    ms_per_unit = 1000.0;
  } else if (unit == "m") {
    ms_per_unit = 60'000.0;
  } else {
    return std::nullopt;
  }
  const double ms = value * ms_per_unit;
  constexpr double kLongest = 24.0 * 3600.0 * 1000.0;
  if (ms < static_cast<double>(kMinTopInterval.count()) || ms > kLongest) {
    return std::nullopt;
  }
  return std::chrono::milliseconds(static_cast<std::int64_t>(std::llround(ms)));
}

int run_top(const TopOptions& options) {
  v2::ClientOptions client_options;
  client_options.framing = options.framing;
  client_options.connect_timeout = options.timeout;
  v2::Client client = v2::Client::connect(options.socket_path, client_options);
  Sampler sampler(client, options.timeout);

  Context context;
  context.socket_path = options.socket_path;
  context.pid = broker_pid(client.fd());
  context.interval = options.interval;
  context.interactive = !options.once && ::isatty(STDOUT_FILENO) == 1;
  if (!context.interactive) {
    return run_snapshot(sampler, client, context, options.socket_path);
  }
  return run_interactive(sampler, client, context, options.socket_path);
}

}  // namespace v2ctl
