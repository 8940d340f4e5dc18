#include "broker/cli.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "broker/access.hpp"
#include "broker/check.hpp"
#include "broker/log_format.hpp"
#include "broker/metrics_http.hpp"
#include "broker/server.hpp"
#include "v2broker/client.hpp"
#include "v2broker/config.hpp"
#include "v2broker/version.hpp"

namespace v2::broker {
namespace {

// "250ms", "10s", "100us", "5000ns", "1m"; a bare number is milliseconds. Negative values and
// unknown units are refused.
std::optional<std::chrono::nanoseconds> parse_duration(const std::string& text) {
  long long value = 0;
  const char* begin = text.data();
  const char* end = text.data() + text.size();
  const auto [rest, error] = std::from_chars(begin, end, value);
  if (error != std::errc() || rest == begin || value < 0) {
    return std::nullopt;
  }
  const std::string unit(rest, end);
  static const std::map<std::string, long long> kNanos = {
      {"", 1'000'000},      {"ns", 1}, {"us", 1'000}, {"ms", 1'000'000}, {"s", 1'000'000'000},
      {"m", 60'000'000'000}};
  const auto it = kNanos.find(unit);
  if (it == kNanos.end() || value > std::numeric_limits<long long>::max() / it->second) {
    return std::nullopt;
  }
  return std::chrono::nanoseconds(value * it->second);
}

// "1048576", "64KiB", "50MiB", "1GiB" (also K/M/G and KB/MB/GB as powers of 1024).
std::optional<std::size_t> parse_size(const std::string& text) {
  unsigned long long value = 0;
  const char* begin = text.data();
  const char* end = text.data() + text.size();
  const auto [rest, error] = std::from_chars(begin, end, value);
  if (error != std::errc() || rest == begin) {
    return std::nullopt;
  }
  const std::string unit(rest, end);
  static const std::map<std::string, unsigned long long> kBytes = {{"", 1},
                                                                   {"B", 1},
                                                                   {"K", 1ULL << 10U},
                                                                   {"KB", 1ULL << 10U},
                                                                   {"KiB", 1ULL << 10U},
                                                                   {"M", 1ULL << 20U},
                                                                   {"MB", 1ULL << 20U},
                                                                   {"MiB", 1ULL << 20U},
                                                                   {"G", 1ULL << 30U},
                                                                   {"GB", 1ULL << 30U},
                                                                   {"GiB", 1ULL << 30U}};
  const auto it = kBytes.find(unit);
  if (it == kBytes.end() || value > std::numeric_limits<std::size_t>::max() / it->second) {
    return std::nullopt;
  }
  return static_cast<std::size_t>(value * it->second);
}

// "0,2,4-7"
std::optional<std::vector<int>> parse_cpu_list(const std::string& text) {
  std::vector<int> cpus;
  std::stringstream stream(text);
  std::string part;
  while (std::getline(stream, part, ',')) {
    int first = 0;
    int last = 0;
    const auto dash = part.find('-');
    const std::string a = part.substr(0, dash);
    const std::string b = dash == std::string::npos ? a : part.substr(dash + 1);
    if (std::from_chars(a.data(), a.data() + a.size(), first).ec != std::errc() ||
        std::from_chars(b.data(), b.data() + b.size(), last).ec != std::errc() || first < 0 ||
        last < first || last > 4095) {
      return std::nullopt;
    }
    for (int cpu = first; cpu <= last; ++cpu) {
      cpus.push_back(cpu);
    }
  }
  if (cpus.empty()) {
    return std::nullopt;
  }
  return cpus;
}

// The flag that sets each optimizer field, so configuration errors name what the user typed.
std::string flag_for(const std::string& field) {
  static const std::map<std::string, std::string> kFlags = {
      {"buffer_capacity", "--buffer-cap"},
      {"workers", "--workers"},
      {"stats_interval", "--stats-interval"},
      {"offer_timeout", "--offer-timeout"},
      {"batch_size", "--batch-size"},
      {"flush_interval", "--flush-interval"},
      {"idle_spin", "--idle-spin"},
      {"tuning.nice", "--nice"},
      {"tuning.io_level", "--io-level"},
      {"tuning.io_class", "--io-class"},
      {"tuning.realtime_priority", "--realtime-priority"},
      {"tuning.cpus", "--cpus"}};
  const auto it = kFlags.find(field);
  return it == kFlags.end() ? field : it->second;
}

CLI::Validator duration_validator() {
  return {[](std::string& text) {
            return parse_duration(text)
                       ? std::string()
                       : "not a duration (examples: 10ms, 250us, 5s; not negative)";
          },
          "DURATION"};
}

CLI::Validator size_validator() {
  return {[](std::string& text) {
            return parse_size(text) ? std::string()
                                    : "not a size (examples: 1048576, 64KiB, 50MiB)";
          },
          "SIZE"};
}

// Every connection is a descriptor: raise the soft limit to the hard one (allowed without
// privilege) and say so when max_connections still cannot be reached.
void raise_open_files_limit(std::size_t max_connections) {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    return;
  }
  if (limit.rlim_cur < limit.rlim_max) {
    rlimit raised = limit;
    raised.rlim_cur = limit.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) {
      limit = raised;
    }
  }
  constexpr rlim_t kReserved = 64;  // listener, epoll, signals, logs, spare
  if (limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < max_connections + kReserved) {
    spdlog::warn(
        "open files limit {} allows about {} connections, below --max-connections={}; "
        "raise it (ulimit -n, systemd LimitNOFILE=)",
        limit.rlim_cur, limit.rlim_cur > kReserved ? limit.rlim_cur - kReserved : 0,
        max_connections);
  }
}

}  // namespace

int broker_main(int argc, char** argv) {
  CLI::App app{"v2broker: low-latency local message broker over a Unix socket"};
  app.set_version_flag("--version", std::string("v2broker ") + std::string(kVersion));
  app.set_config("--config", "",
                 "Read settings from a file of `key = value` lines (keys are the long flags)");
  app.allow_config_extras(false);  // a misspelt key is an error, not a silent default
  app.get_formatter()->column_width(34);

  const OptimizerConfig defaults;
  BrokerOptions options;
  // The daemon batches without waiting: a worker takes what is queued, up to 64 messages, and
  // writes each receiver's share with one system call. A lone message still goes out at once.
  options.optimizer.batch_size = 64;
  std::string socket_mode = "0600";
  std::string socket_group;
  std::vector<std::string> allow_uid;
  std::vector<std::string> allow_gid;
  std::string offer_policy = std::string(to_string(defaults.offer_policy));
  std::string offer_timeout = "0";
  std::string flush_interval = "0";
  std::string stats_interval = "100ms";
  std::string idle_spin = "50us";
  std::string cpus;
  std::string io_class = "realtime";
  std::string max_message = "50MiB";
  std::string max_outgoing = "64MiB";
  std::string slow_receiver = "drop";
  std::string stats_log = "0";
  std::string shutdown_timeout = "5s";
  std::string stall_timeout = "1s";
  std::string log_level = "info";
  std::string log_format = "text";
  std::string metrics_listen;
  bool metrics_allow_remote = false;
  bool no_pin = false;
  bool no_nice = false;
  bool no_ioprio = false;
  bool check = false;

  options.socket_path = default_socket_path();
  app.add_option("--socket", options.socket_path, "Unix socket path")->capture_default_str();
  app.add_option("--socket-mode", socket_mode, "Permissions of the socket file (octal)")
      ->capture_default_str();
  app.add_option("--socket-group", socket_group,
                 "Group of the socket file (name or number); with --socket-mode 0660 its "
                 "members may connect");
  app.add_option("--allow-uid", allow_uid,
                 "Only these users may connect (comma-separated names or numbers; repeatable). "
                 "Root and the broker's own user always may")
      ->delimiter(',');
  app.add_option("--allow-gid", allow_gid,
                 "Only members of these groups (primary or supplementary) may connect, with the "
                 "users of --allow-uid")
      ->delimiter(',');
  app.add_option("--workers", options.optimizer.workers,
                 "Worker threads; 0 = one per allowed CPU, at least 4")
      ->check(CLI::Range(std::size_t{0}, kMaxWorkers))
      ->capture_default_str();
  app.add_option("--buffer-cap", options.optimizer.buffer_capacity,
                 "Messages queued at most, over all workers")
      ->check(CLI::Range(std::size_t{1}, kMaxBufferCapacity))
      ->capture_default_str();
  app.add_option("--offer-policy", offer_policy,
                 "When the queue is full: drop, block, timeout, "
                 "drop_oldest")
      ->capture_default_str();
  app.add_option("--offer-timeout", offer_timeout, "Wait for room under the timeout policy")
      ->check(duration_validator())
      ->capture_default_str();
  app.add_option("--batch-size", options.optimizer.batch_size,
                 "Messages a worker takes at once (what is queued, up to this many)")
      ->check(CLI::Range(std::size_t{1}, kMaxBufferCapacity))
      ->capture_default_str();
  app.add_option("--flush-interval", flush_interval,
                 "Longest wait to fill a batch, from its first message")
      ->check(duration_validator())
      ->capture_default_str();
  app.add_option("--stats-interval", stats_interval, "Period of the rate and latency figures")
      ->check(duration_validator())
      ->capture_default_str();
  app.add_option(
         "--idle-spin", idle_spin,
         "How long an idle worker polls before it sleeps, when each worker has a CPU of its own; "
         "0 = sleep at once")
      ->check(duration_validator())
      ->capture_default_str();
  app.add_option("--cpus", cpus, "CPUs for the workers, e.g. 2,3 or 4-7 (default: all allowed)");
  app.add_option("--nice", options.optimizer.tuning.nice, "Nice value for every thread")
      ->capture_default_str();
  app.add_flag("--no-pin", no_pin, "Do not pin workers to CPUs");
  app.add_flag("--no-nice", no_nice, "Do not change the nice value");
  app.add_flag("--no-ioprio", no_ioprio, "Do not change the workers' I/O priority");
  app.add_option("--io-class", io_class, "Workers' I/O class: realtime, best-effort, idle")
      ->capture_default_str();
  app.add_option("--io-level", options.optimizer.tuning.io_level, "Workers' I/O level, 0-7")
      ->capture_default_str();
  app.add_option("--realtime-priority", options.optimizer.tuning.realtime_priority,
                 "Run the workers and the reading thread under SCHED_FIFO at this priority, "
                 "1-99 (needs CAP_SYS_NICE or RLIMIT_RTPRIO); 0 = the normal policy")
      ->capture_default_str();
  app.add_option("--max-message-size", max_message, "Largest message (line or frame payload)")
      ->check(size_validator())
      ->capture_default_str();
  app.add_option("--max-outgoing", max_outgoing,
                 "Bytes queued for one receiver before --slow-receiver applies")
      ->check(size_validator())
      ->capture_default_str();
  app.add_option("--slow-receiver", slow_receiver,
                 "When a receiver's buffer is full: drop (tell the sender) or disconnect")
      ->check(CLI::IsMember({"drop", "disconnect"}))
      ->capture_default_str();
  app.add_option("--stall-timeout", stall_timeout,
                 "Under the block policy, how long senders wait for a receiver that reads "
                 "nothing before --slow-receiver applies to it")
      ->check(duration_validator())
      ->capture_default_str();
  app.add_option("--max-connections", options.max_connections, "Connections at most")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 20U))
      ->capture_default_str();
  app.add_option("--max-names", options.max_names_per_connection,
                 "Names one connection may register")
      ->check(CLI::Range(std::size_t{1}, std::size_t{4096}))
      ->capture_default_str();
  app.add_option("--stats-log-interval", stats_log, "Period of the one-line stats log; 0 = off")
      ->check(duration_validator())
      ->capture_default_str();
  app.add_option("--shutdown-timeout", shutdown_timeout,
                 "At SIGTERM, longest wait for receivers to take their messages")
      ->check(duration_validator())
      ->capture_default_str();
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}))
      ->capture_default_str();
  app.add_option("--log-format", log_format, "text, or json: one JSON object per log line")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  app.add_option("--metrics-listen", metrics_listen,
                 "Serve Prometheus metrics over HTTP at ADDRESS:PORT, e.g. 127.0.0.1:9464 or "
                 "[::1]:9464 (port 0: any); off when empty");
  app.add_flag("--metrics-allow-remote", metrics_allow_remote,
               "Allow --metrics-listen on an address other hosts can reach (the metrics have "
               "no authentication)");
  app.add_flag("--check", check,
               "Print what each Linux tuning would achieve here, with fixes, and exit "
               "(0: all would apply)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ConfigError& error) {
    // CLI11 says "INI was not able to parse workrs": name the file and what is wrong.
    std::string what = error.what();
    constexpr std::string_view kUnparsed = "INI was not able to parse ";
    if (what.rfind(kUnparsed, 0) == 0) {
      what = "unknown key '" + what.substr(kUnparsed.size()) +
             "' (keys are the long flags without --, see v2broker --help)";
    }
    std::cerr << "v2broker: --config " << app.get_config_ptr()->as<std::string>() << ": " << what
              << '\n';
    return 2;
  } catch (const CLI::ParseError& error) {
    // --help and --version exit 0; every refused setting exits 2, as below.
    return app.exit(error) == 0 ? 0 : 2;
  }

  spdlog::set_default_logger(spdlog::stderr_color_mt("v2broker"));
  spdlog::set_level(spdlog::level::from_str(log_level));
  apply_log_format(parse_log_format(log_format).value_or(LogFormat::text));

  std::vector<std::string> problems;
  const auto policy = parse_offer_policy(offer_policy);
  if (!policy) {
    problems.push_back("--offer-policy=" + offer_policy +
                       ": unknown policy (drop, block, timeout, drop_oldest)");
  } else {
    options.optimizer.offer_policy = *policy;
  }
  options.optimizer.offer_timeout = *parse_duration(offer_timeout);
  options.optimizer.flush_interval = *parse_duration(flush_interval);
  options.optimizer.stats_interval = *parse_duration(stats_interval);
  options.optimizer.idle_spin = *parse_duration(idle_spin);
  options.stats_log_interval =
      std::chrono::duration_cast<std::chrono::milliseconds>(*parse_duration(stats_log));
  options.shutdown_timeout =
      std::chrono::duration_cast<std::chrono::milliseconds>(*parse_duration(shutdown_timeout));
  options.stall_timeout =
      std::chrono::duration_cast<std::chrono::milliseconds>(*parse_duration(stall_timeout));
  options.max_message_size = *parse_size(max_message);
  options.max_outgoing_bytes = *parse_size(max_outgoing);
  if (options.max_message_size == 0) {
    // push_back: emplace_back of a literal sets off a false -Wnull-dereference in GCC 12.
    // NOLINTNEXTLINE(modernize-use-emplace)
    problems.push_back("--max-message-size=0: must be at least 1 byte");
  }
  if (options.max_outgoing_bytes == 0) {
    // NOLINTNEXTLINE(modernize-use-emplace)
    problems.push_back("--max-outgoing=0: must be at least 1 byte");
  }
  options.slow_receiver =
      slow_receiver == "disconnect" ? SlowReceiverPolicy::disconnect : SlowReceiverPolicy::drop;
  if (!cpus.empty()) {
    if (auto list = parse_cpu_list(cpus)) {
      options.optimizer.tuning.cpus = *list;
    } else {
      problems.push_back("--cpus=" + cpus + ": not a CPU list (examples: 0,2 or 4-7)");
    }
  }
  if (io_class == "realtime" || io_class == "rt") {
    options.optimizer.tuning.io_class = IoClass::realtime;
  } else if (io_class == "best-effort" || io_class == "be") {
    options.optimizer.tuning.io_class = IoClass::best_effort;
  } else if (io_class == "idle") {
    options.optimizer.tuning.io_class = IoClass::idle;
  } else {
    problems.push_back("--io-class=" + io_class + ": unknown class (realtime, best-effort, idle)");
  }
  options.optimizer.tuning.pin_workers = !no_pin;
  options.optimizer.tuning.set_nice = !no_nice;
  options.optimizer.tuning.set_io_priority = !no_ioprio;
  {
    unsigned mode = 0;
    const auto [rest, error] =
        std::from_chars(socket_mode.data(), socket_mode.data() + socket_mode.size(), mode, 8);
    if (error != std::errc() || rest != socket_mode.data() + socket_mode.size() || mode > 0777) {
      problems.push_back("--socket-mode=" + socket_mode + ": not an octal mode (e.g. 0600)");
    }
    options.socket_mode = static_cast<mode_t>(mode);
  }
  if (!socket_group.empty()) {
    options.socket_group = resolve_group(socket_group);
    if (!options.socket_group) {
      problems.push_back("--socket-group=" + socket_group + ": no such group (a name or a number)");
    }
  }
  options.access = AccessPolicy(resolve_users(allow_uid, "--allow-uid", problems),
                                resolve_groups(allow_gid, "--allow-gid", problems), ::geteuid());
  for (const ConfigIssue& issue : validate(options.optimizer)) {
    problems.push_back(flag_for(issue.field) + "=" + issue.value + ": " + issue.reason);
  }
  std::optional<MetricsEndpoint> metrics_endpoint;
  if (!metrics_listen.empty()) {
    std::string why;
    metrics_endpoint = parse_metrics_endpoint(metrics_listen, why);
    if (metrics_endpoint && !metrics_endpoint->is_loopback() && !metrics_allow_remote) {
      why =
          "not a loopback address; the metrics have no authentication, so serving them to "
          "other hosts needs --metrics-allow-remote";
      metrics_endpoint.reset();
    }
    if (!metrics_endpoint) {
      problems.push_back("--metrics-listen=" + metrics_listen + ": " + why);
    }
  }
  if (!problems.empty()) {
    for (const auto& problem : problems) {
      std::cerr << "v2broker: invalid setting " << problem << "\n";
    }
    return 2;
  }

  if (check) {
    return run_check(options, std::cout);
  }

  try {
    block_signals();
    raise_open_files_limit(options.max_connections);
    Server server(options);
    spdlog::info("v2broker {} listening on {} (mode {}), {} workers, policy {}", kVersion,
                 server.socket_path(), socket_mode, resolved_worker_count(options.optimizer),
                 to_string(options.optimizer.offer_policy));
    std::optional<MetricsHttpServer> metrics;  // destroyed before the server it reads
    if (metrics_endpoint) {
      metrics.emplace(*metrics_endpoint, [&server] { return server.prometheus_text(); });
      if (!metrics_endpoint->is_loopback()) {
        spdlog::warn(
            "metrics: serving http://{}/metrics to other hosts, without "
            "authentication (--metrics-allow-remote)",
            metrics->bound_address());
      }
      spdlog::info("metrics: serving http://{}/metrics", metrics->bound_address());
    }
    // After the metrics thread started, so that it stays under the normal policy; before the
    // report, so that the report shows the reading thread as it will run.
    server.tune_reading_thread();
    const TuningReport report = server.tuning_report();
    std::istringstream lines(report.describe());
    for (std::string line; std::getline(lines, line);) {
      if (report.fully_applied()) {
        spdlog::info("tuning: {}", line);
      } else {
        spdlog::warn("tuning: {}", line);
      }
    }
    return server.run();
  } catch (const std::exception& error) {
    spdlog::error("{}", error.what());
    return 1;
  }
}

}  // namespace v2::broker
