// v2bench: load generator for v2broker and its ZeroMQ peer. See bench/README.md.

#include <sched.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "endpoint.hpp"
#include "scenario.hpp"
#include "spawn.hpp"
#include "v2broker/client.hpp"

namespace {

using v2bench::Mode;
using v2bench::Peer;

constexpr std::size_t kMaxSize = std::size_t{50} << 20U;
constexpr std::size_t kMaxClients = 1000;

/// Quantiles of the latency curve in --json, for plotting (bench/plot).
constexpr std::array<double, 13> kCurve = {0.0,   0.5,    0.75,   0.9,     0.95,    0.99, 0.995,
                                           0.999, 0.9995, 0.9999, 0.99995, 0.99999, 1.0};

std::string human_rate(double value) {
  char text[32];
  if (value >= 1e6) {
    std::snprintf(text, sizeof(text), "%.3f M", value / 1e6);
  } else if (value >= 1e3) {
    std::snprintf(text, sizeof(text), "%.1f k", value / 1e3);
  } else {
    std::snprintf(text, sizeof(text), "%.1f ", value);
  }
  return text;
}

double us(std::uint64_t ns) {
  return static_cast<double>(ns) / 1e3;
}

struct Percentiles {
  double p50, p90, p99, p999, p9999, max, mean;
};

Percentiles percentiles(const v2::detail::HistogramCounts& h) {
  const auto summary = h.summary();
  return {us(h.value_at(0.5)),    us(h.value_at(0.9)), us(h.value_at(0.99)), us(h.value_at(0.999)),
          us(h.value_at(0.9999)), us(h.max()),         summary.mean / 1e3};
}

/// Kills the spawned broker and exits when the run takes far longer than it should.
class Watchdog {
 public:
  Watchdog(double limit_s, pid_t broker)
      : thread_([this, limit_s, broker] {
          std::unique_lock lock(mutex_);
          if (!cv_.wait_for(lock, std::chrono::duration<double>(limit_s),
                            [this] { return done_; })) {
            std::fprintf(stderr, "v2bench: the run exceeded --timeout=%.0f s; stopping\n", limit_s);
            if (broker > 0) {
              (void)::kill(broker, SIGKILL);
            }
            std::_Exit(4);
          }
        }) {}
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;
  ~Watchdog() {
    {
      const std::lock_guard lock(mutex_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

}  // namespace

int main(int argc, char** argv) {
  // Arguments after "--" belong to the spawned broker.
  std::vector<std::string> broker_args;
  int own_argc = argc;
  for (int i = 1; i < argc; ++i) {
    if (std::string_view(argv[i]) == "--") {
      own_argc = i;
      for (int j = i + 1; j < argc; ++j) {
        broker_args.emplace_back(argv[j]);
      }
      break;
    }
  }

  CLI::App app{
      "v2bench: load generator for v2broker and its ZeroMQ peer. Every message is verified "
      "(count, order per sender, payload bytes); a run with loss or corruption exits 1.\n"
      "Arguments after -- go to the broker started by --spawn-broker."};
  std::string mode_text = "throughput";
  std::string peer_text = "v2";
  std::string framing_text = "binary";
  std::string size_text = "64";
  v2bench::ScenarioConfig config;
  std::string spawn;
  double timeout_s = 0.0;
  bool json = false;
  std::string label;
  int client_realtime = 0;
  app.add_option("mode", mode_text, "throughput, roundtrip or paced")
      ->check(CLI::IsMember({"throughput", "roundtrip", "paced"}))
      ->capture_default_str();
  app.add_option("--peer", peer_text, "v2 (v2broker) or zmq (the ZeroMQ peer broker)")
      ->check(CLI::IsMember({"v2", "zmq"}))
      ->capture_default_str();
  app.add_option("--framing", framing_text, "v2broker framing: binary or ndjson")
      ->check(CLI::IsMember({"binary", "ndjson"}))
      ->capture_default_str();
  app.add_option("--size", size_text, "payload bytes, 0 to 50MiB (suffixes KiB, MiB)")
      ->capture_default_str();
  app.add_option("--senders,--clients", config.senders,
                 "sending clients (round-trip clients), 1..1000, each a thread with its own "
                 "connection")
      ->check(CLI::Range(std::size_t{1}, kMaxClients))
      ->capture_default_str();
  app.add_option("--receivers", config.receivers,
                 "receiving clients (echo peers in roundtrip); sender i sends to i % receivers")
      ->check(CLI::Range(std::size_t{1}, kMaxClients))
      ->capture_default_str();
  app.add_option("--duration", config.duration_s, "seconds of sending (unless --count)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--count", config.count, "messages per sender instead of a duration");
  app.add_option("--rate", config.rate, "paced: messages per second over all senders")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--warmup", config.warmup_s, "seconds at the start that are not timed")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--drain-timeout", config.drain_timeout_s,
                 "seconds to wait for missing messages once senders are done")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--socket", config.socket_path,
                 "broker socket (default: v2broker's default socket; required for zmq)");
  app.add_option("--spawn-broker", spawn,
                 "start this broker binary on a temporary socket and stop it (SIGTERM) at the end");
  app.add_option("--zmq-io-threads", config.zmq_io_threads, "I/O threads of v2bench's zmq context")
      ->check(CLI::Range(1, 16))
      ->capture_default_str();
  app.add_option("--timeout", timeout_s,
                 "hard limit in seconds for the whole run (default: duration + drain + 60)");
  app.add_option("--client-realtime", client_realtime,
                 "run v2bench's own threads under SCHED_FIFO at this priority, 1-99, as "
                 "latency-critical clients would (needs CAP_SYS_NICE or RLIMIT_RTPRIO); a "
                 "spawned broker still starts under the normal policy; 0 = off")
      ->check(CLI::Range(0, 99))
      ->capture_default_str();
  app.add_option("--label", label, "free text copied into the --json output");
  app.add_flag("--json", json, "print one JSON object instead of the human summary");
  try {
    app.parse(own_argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error);
  }

  config.mode = mode_text == "throughput"  ? Mode::throughput
                : mode_text == "roundtrip" ? Mode::roundtrip
                                           : Mode::paced;
  config.peer = peer_text == "zmq" ? Peer::zmq : Peer::v2broker;
  config.framing = framing_text == "ndjson" ? v2::wire::Framing::ndjson : v2::wire::Framing::binary;
  {
    std::size_t multiplier = 1;
    std::string digits = size_text;
    for (const auto& [suffix, factor] : std::map<std::string, std::size_t>{
             {"KiB", 1024}, {"MiB", std::size_t{1} << 20U}, {"K", 1024}, {"M", 1U << 20U}}) {
      if (digits.size() > suffix.size() &&
          digits.compare(digits.size() - suffix.size(), suffix.size(), suffix) == 0) {
        digits.resize(digits.size() - suffix.size());
        multiplier = factor;
        break;
      }
    }
    char* end = nullptr;
    const unsigned long long value = std::strtoull(digits.c_str(), &end, 10);
    if (digits.empty() || *end != '\0' || value * multiplier > kMaxSize) {
      std::fprintf(stderr, "v2bench: --size=%s must be 0..50MiB\n", size_text.c_str());
      return 2;
    }
    config.size = static_cast<std::size_t>(value) * multiplier;
  }
  if (config.peer == Peer::v2broker && config.framing == v2::wire::Framing::ndjson &&
      config.size + 256 > v2::wire::kDefaultMaxMessageSize) {
    std::fprintf(stderr,
                 "v2bench: --size=%zu does not fit an NDJSON line of the broker's default 50 MiB "
                 "limit; use --framing binary\n",
                 config.size);
    return 2;
  }
  config.prefix = "b" + std::to_string(::getpid()) + "-";
  if (timeout_s <= 0.0) {
    timeout_s = (config.count > 0 ? 600.0 : config.duration_s) + config.drain_timeout_s + 60.0;
  }
  (void)::signal(SIGPIPE, SIG_IGN);  // a broker that dies shows up as EPIPE, not a signal
  if (client_realtime > 0) {
    // Before any thread starts: every thread v2bench creates inherits the policy.
    const sched_param param{.sched_priority = client_realtime};
    if (::sched_setscheduler(0, SCHED_FIFO, &param) != 0) {
      std::fprintf(stderr,
                   "v2bench: --client-realtime=%d: sched_setscheduler(SCHED_FIFO) failed: %s "
                   "(needs CAP_SYS_NICE or RLIMIT_RTPRIO >= %d)\n",
                   client_realtime, std::strerror(errno), client_realtime);
      return 2;
    }
  }

  std::unique_ptr<v2bench::SpawnedBroker> broker;
  try {
    if (!spawn.empty()) {
      broker = std::make_unique<v2bench::SpawnedBroker>(spawn, broker_args,
                                                        config.peer == Peer::zmq
                                                            ? v2bench::ReadyCheck::socket_file
                                                            : v2bench::ReadyCheck::connect);
      config.socket_path = broker->socket_path();
    } else if (config.socket_path.empty()) {
      if (config.peer == Peer::zmq) {
        std::fprintf(stderr, "v2bench: --peer zmq needs --socket or --spawn-broker\n");
        return 2;
      }
      config.socket_path = v2::default_socket_path();
    }
  } catch (const std::exception& error) {
    std::fprintf(stderr, "v2bench: %s\n", error.what());
    return 3;
  }

  v2bench::ScenarioResult result;
  double broker_cpu = -1.0;
  int broker_status = 0;
  {
    const Watchdog watchdog(timeout_s, broker ? broker->pid() : -1);
    const double cpu_before = broker ? broker->cpu_seconds() : -1.0;
    try {
      result = v2bench::run_scenario(config);
    } catch (const std::exception& error) {
      std::fprintf(stderr, "v2bench: %s\n", error.what());
      if (broker) {
        std::fprintf(stderr, "v2bench: broker log:\n%s\n", broker->log_tail().c_str());
      }
      return 3;
    }
    if (broker) {
      broker_cpu = broker->cpu_seconds() - cpu_before;
      broker_status = broker->stop();
      if (broker_status != 0) {
        result.failures.push_back("the broker exited with status " + std::to_string(broker_status) +
                                  " after SIGTERM");
      }
    }
  }

  const auto p = percentiles(result.latency);
  const std::string peer_name = config.peer == Peer::zmq ? "zmq" : "v2broker";
  const std::string framing_name = config.peer == Peer::zmq ? "zmq-frames" : framing_text;
  const double broker_cpu_share = broker_cpu >= 0 ? broker_cpu / result.seconds : -1.0;
  if (json) {
    nlohmann::json out;
    out["label"] = label;
    out["mode"] = mode_text;
    out["peer"] = peer_name;
    out["framing"] = framing_name;
    out["size"] = config.size;
    out["senders"] = config.senders;
    out["receivers"] = config.receivers;
    out["duration_s"] = config.duration_s;
    out["count"] = config.count;
    out["rate"] = config.mode == Mode::paced ? config.rate : 0.0;
    out["client_realtime_priority"] = client_realtime;
    out["ok"] = result.ok();
    out["failures"] = result.failures;
    out["sent"] = result.sent;
    out["delivered"] = result.delivered;
    out["lost"] = result.lost;
    out["rejected"] = result.rejected;
    out["out_of_order"] = result.out_of_order;
    out["gaps"] = result.gaps;
    out["corrupt"] = result.corrupt;
    out["unexpected"] = result.unexpected;
    out["seconds"] = result.seconds;
    out["messages_per_s"] = result.messages_per_s;
    out["payload_bytes_per_s"] = result.payload_bytes_per_s;
    out["max_send_lateness_us"] = result.max_send_lateness_us;
    out["sender_cpu_max"] = result.sender_cpu_max;
    out["receiver_cpu_max"] = result.receiver_cpu_max;
    out["broker_cpu_s"] = broker_cpu;
    out["broker_cpu_share"] = broker_cpu_share;
    out["latency_kind"] = config.mode == Mode::roundtrip ? "round trip" : "one way";
    out["latency_us"] = {{"count", result.latency.count()},
                         {"p50", p.p50},
                         {"p90", p.p90},
                         {"p99", p.p99},
                         {"p999", p.p999},
                         {"p9999", p.p9999},
                         {"max", p.max},
                         {"mean", p.mean}};
    nlohmann::json curve = nlohmann::json::array();
    for (const double q : kCurve) {
      curve.push_back({q, us(q >= 1.0 ? result.latency.max() : result.latency.value_at(q))});
    }
    out["latency_curve_us"] = curve;
    std::cout << out.dump() << '\n';
  } else {
    std::printf(
        "v2bench %s: peer=%s framing=%s size=%zu B senders=%zu receivers=%zu%s\n",
        mode_text.c_str(), peer_name.c_str(), framing_name.c_str(), config.size, config.senders,
        config.receivers,
        config.mode == Mode::paced ? (" rate=" + human_rate(config.rate) + "msg/s").c_str() : "");
    std::printf(
        "  sent %llu  delivered %llu  lost %llu (refused %llu)  out-of-order %llu  "
        "gaps %llu  corrupt %llu\n",
        static_cast<unsigned long long>(result.sent),
        static_cast<unsigned long long>(result.delivered),
        static_cast<unsigned long long>(result.lost),
        static_cast<unsigned long long>(result.rejected),
        static_cast<unsigned long long>(result.out_of_order),
        static_cast<unsigned long long>(result.gaps),
        static_cast<unsigned long long>(result.corrupt));
    std::printf("  %smsg/s  %.1f MB/s  over %.3f s (higher is better)\n",
                human_rate(result.messages_per_s).c_str(), result.payload_bytes_per_s / 1e6,
                result.seconds);
    std::printf(
        "  %s latency (us, lower is better): p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  "
        "p99.99 %.1f  max %.1f  mean %.1f  (n=%llu)\n",
        config.mode == Mode::roundtrip ? "round-trip" : "one-way", p.p50, p.p90, p.p99, p.p999,
        p.p9999, p.max, p.mean, static_cast<unsigned long long>(result.latency.count()));
    if (config.mode == Mode::paced) {
      std::printf("  latest send: %.1f us after its intended time (included above)\n",
                  result.max_send_lateness_us);
    }
    std::printf("  busiest thread: sender %.0f%%, receiver %.0f%% of a CPU",
                100 * result.sender_cpu_max, 100 * result.receiver_cpu_max);
    if (broker_cpu >= 0) {
      std::printf("; broker %.2f CPU s (%.0f%% of a CPU)", broker_cpu, 100 * broker_cpu_share);
    }
    std::printf("\n");
    if (result.receiver_cpu_max > 0.9 && config.mode == Mode::throughput) {
      std::printf(
          "  note: a receiving thread was busy over 90%% of the time; the load "
          "generator may limit this figure\n");
    }
    for (const auto& failure : result.failures) {
      std::printf("  FAILED: %s\n", failure.c_str());
    }
    std::printf("  result: %s\n", result.ok() ? "ok" : "FAILED");
  }
  return result.ok() ? 0 : 1;
}
