// The optimizer's Linux tuning, checked against the kernel: each worker's CPU affinity, every
// thread's nice value and each worker's I/O priority are read back with system calls and from
// /proc and compared with the optimizer's tuning report. Where the process holds the
// capabilities, the requested values must also be in force; a child process without them
// (tests/tools/tuning_probe.cpp) shows what the product reports when the kernel refuses.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <latch>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "kernel_view.hpp"
#include "v2broker/optimizer.hpp"
#include "v2broker/tuning.hpp"

extern char** environ;  // NOLINT: POSIX declares it nowhere else

namespace v2 {
namespace {

using testing::kernel_affinity;
using testing::kernel_io_priority;
using testing::kernel_nice;
using testing::ParkedThread;

constexpr std::size_t kMessages = 2000;

/// Counts what it routes and remembers which kernel thread ran each worker's calls.
class TidRecordingRouter final : public Router {
 public:
  void handle_broker(Message& /*message*/, const RouteContext& context) noexcept override {
    record(context);
  }
  void route(Message& /*message*/, const RouteContext& context) noexcept override {
    record(context);
  }

  [[nodiscard]] std::size_t routed() const {
    const std::lock_guard lock(mutex_);
    return routed_;
  }
  /// Kernel thread ids seen per worker index.
  [[nodiscard]] std::map<std::size_t, std::set<pid_t>> tids_by_worker() const {
    const std::lock_guard lock(mutex_);
    return tids_by_worker_;
  }

 private:
  void record(const RouteContext& context) noexcept {
    const pid_t tid = ::gettid();
    const std::lock_guard lock(mutex_);
    ++routed_;
    tids_by_worker_[context.worker].insert(tid);
  }

  mutable std::mutex mutex_;
  std::size_t routed_ = 0;
  std::map<std::size_t, std::set<pid_t>> tids_by_worker_;
};

OptimizerConfig config_with_workers(std::size_t workers) {
  OptimizerConfig config;
  config.workers = workers;
  config.offer_policy = OfferPolicy::block;  // every message is routed, none dropped
  return config;
}

/// Offers `count` messages over many (source, target) pairs and waits until all are routed.
void route_messages(Optimizer& optimizer, const TidRecordingRouter& router, std::size_t count) {
  for (std::size_t i = 0; i < count; ++i) {
    Message message;
    message.source = "client-" + std::to_string(i % 5);
    message.target = "service-" + std::to_string(i % 13);
    message.id = std::to_string(i);
    ASSERT_TRUE(is_accepted(optimizer.offer(std::move(message)))) << "message " << i;
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (router.routed() < count && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_EQ(router.routed(), count);
}

const ThreadTuning* find_thread(const TuningReport& report, pid_t tid) {
  const auto found = std::find_if(report.threads.begin(), report.threads.end(),
                                  [tid](const ThreadTuning& thread) { return thread.tid == tid; });
  return found == report.threads.end() ? nullptr : &*found;
}

bool can_set_realtime_io(const CapabilityState& caps) {
  return caps.sys_nice_effective || caps.sys_admin_effective;
}

TEST(LinuxTuning, TestCPUAffinitySetup) {
  const std::vector<int> allowed = allowed_cpus();
  ASSERT_FALSE(allowed.empty());
  TidRecordingRouter router;
  Optimizer optimizer(router, config_with_workers(allowed.size() + 1));

  optimizer.start();
  const TuningReport report = optimizer.tuning_report();
  const std::vector<pid_t> tids = optimizer.worker_tids();

  ASSERT_EQ(tids.size(), allowed.size() + 1);
  EXPECT_EQ(report.allowed_cpus, allowed);
  for (std::size_t i = 0; i < tids.size(); ++i) {
    SCOPED_TRACE("worker " + std::to_string(i) + " tid " + std::to_string(tids[i]));
    const std::vector<int> expected{allowed[i % allowed.size()]};
    EXPECT_EQ(kernel_affinity(tids[i]), expected);
    EXPECT_EQ(testing::proc_cpus_allowed(::getpid(), tids[i]), expected);

    ASSERT_LT(i, report.threads.size());
    const ThreadTuning& entry = report.threads[i];  // workers come first, by index
    EXPECT_EQ(entry.tid, tids[i]);
    EXPECT_EQ(entry.worker, i);
    EXPECT_EQ(entry.affinity.requested, expected);
    EXPECT_EQ(entry.affinity.in_force, kernel_affinity(tids[i]));
    EXPECT_EQ(entry.affinity.outcome, TuningOutcome::applied) << entry.affinity.detail;
    EXPECT_EQ(entry.affinity.error, 0);
  }
  for (const auto& entry : report.threads) {
    if (!entry.worker) {
      EXPECT_EQ(entry.affinity.outcome, TuningOutcome::disabled) << entry.name;
      EXPECT_EQ(entry.affinity.in_force, kernel_affinity(entry.tid)) << entry.name;
    }
  }
  optimizer.stop();
}

TEST(LinuxTuning, TestProcessPrioritySetup) {
  const CapabilityState caps = read_capability_state();
  TidRecordingRouter router;
  const ParkedThread started_before;
  Optimizer optimizer(router, config_with_workers(2));

  optimizer.start();
  const ParkedThread started_after;  // inherits its nice value from this thread
  route_messages(optimizer, router, 100);
  const TuningReport report = optimizer.tuning_report();

  const std::vector<pid_t> tids = testing::task_ids(::getpid());
  EXPECT_EQ(report.threads.size(), tids.size()) << report.describe();
  for (const pid_t tid : tids) {
    SCOPED_TRACE("tid " + std::to_string(tid));
    const ThreadTuning* entry = find_thread(report, tid);
    ASSERT_NE(entry, nullptr) << "every thread of the process is reported";
    const auto nice = kernel_nice(tid);
    ASSERT_TRUE(nice.has_value());
    EXPECT_EQ(testing::stat_nice(::getpid(), tid), nice) << "getpriority and /proc agree";
    EXPECT_EQ(entry->nice.in_force, *nice);
    EXPECT_EQ(entry->nice.requested, -10);
    if (caps.sys_nice_effective) {
      EXPECT_EQ(*nice, -10);
      EXPECT_EQ(entry->nice.outcome, TuningOutcome::applied) << entry->nice.detail;
    } else if (entry->nice.outcome == TuningOutcome::not_applied) {
      EXPECT_NE(entry->nice.detail.find("EACCES"), std::string::npos) << entry->nice.detail;
    } else {
      EXPECT_EQ(entry->nice.outcome, TuningOutcome::partial) << entry->nice.detail;
      EXPECT_EQ(*nice, caps.rlimit_nice_floor());
    }
  }
  EXPECT_NE(find_thread(report, started_before.tid()), nullptr);
  EXPECT_NE(find_thread(report, started_after.tid()), nullptr);
  EXPECT_NE(find_thread(report, ::getpid()), nullptr);
  optimizer.stop();
}

TEST(LinuxTuning, TestIOPrioritySetup) {
  const CapabilityState caps = read_capability_state();
  TidRecordingRouter router;
  Optimizer optimizer(router, config_with_workers(3));

  optimizer.start();
  const TuningReport report = optimizer.tuning_report();
  const std::vector<pid_t> workers = optimizer.worker_tids();

  ASSERT_EQ(workers.size(), 3U);
  for (const auto& entry : report.threads) {
    SCOPED_TRACE("tid " + std::to_string(entry.tid) + " " + entry.name);
    const auto io = kernel_io_priority(entry.tid);
    ASSERT_TRUE(io.has_value());
    EXPECT_EQ(static_cast<int>(entry.io_priority.in_force_class), io->io_class);
    EXPECT_EQ(entry.io_priority.in_force_level, io->level);
    const bool is_worker = std::find(workers.begin(), workers.end(), entry.tid) != workers.end();
    EXPECT_EQ(entry.worker.has_value(), is_worker);
    if (!is_worker) {
      EXPECT_EQ(entry.io_priority.outcome, TuningOutcome::disabled);
      EXPECT_FALSE(entry.io_priority.requested_class.has_value());
      continue;
    }
    EXPECT_EQ(entry.io_priority.requested_class, IoClass::realtime);
    EXPECT_EQ(entry.io_priority.requested_level, 0);
    EXPECT_EQ(io->level, 0);
    if (can_set_realtime_io(caps)) {
      EXPECT_EQ(io->io_class, static_cast<int>(IoClass::realtime));
      EXPECT_EQ(entry.io_priority.outcome, TuningOutcome::applied) << entry.io_priority.detail;
    } else {
      EXPECT_EQ(io->io_class, static_cast<int>(IoClass::best_effort));
      EXPECT_EQ(entry.io_priority.outcome, TuningOutcome::partial);
      EXPECT_EQ(entry.io_priority.error, EPERM);
    }
  }
  optimizer.stop();
}

TEST(LinuxTuning, TestWorkerThreadPinning) {
  const std::vector<int> allowed = allowed_cpus();
  const std::size_t worker_count = allowed.size() + 2;  // wraps around the allowed CPUs
  TidRecordingRouter router;
  Optimizer optimizer(router, config_with_workers(worker_count));

  optimizer.start();
  route_messages(optimizer, router, kMessages);
  const std::vector<pid_t> tids = optimizer.worker_tids();
  const auto seen = router.tids_by_worker();

  ASSERT_EQ(tids.size(), worker_count);
  EXPECT_EQ(std::set<pid_t>(tids.begin(), tids.end()).size(), worker_count)
      << "each worker is its own OS thread";
  const std::vector<pid_t> process_tids = testing::task_ids(::getpid());
  for (std::size_t i = 0; i < worker_count; ++i) {
    SCOPED_TRACE("worker " + std::to_string(i) + " tid " + std::to_string(tids[i]));
    EXPECT_NE(tids[i], ::getpid());
    EXPECT_TRUE(std::binary_search(process_tids.begin(), process_tids.end(), tids[i]));
    EXPECT_EQ(testing::comm(::getpid(), tids[i]), "v2-worker-" + std::to_string(i));
    EXPECT_EQ(kernel_affinity(tids[i]), std::vector<int>{allowed[i % allowed.size()]});
  }
  std::size_t workers_used = 0;
  for (const auto& [worker, worker_tids] : seen) {
    ASSERT_LT(worker, worker_count);
    EXPECT_EQ(worker_tids, std::set<pid_t>{tids[worker]})
        << "worker " << worker << " routed only on its own thread";
    ++workers_used;
  }
  EXPECT_GT(workers_used, 1U) << "messages spread over several workers";
  EXPECT_EQ(optimizer.stop().abandoned, 0U);
  EXPECT_EQ(router.routed(), kMessages);
}

TEST(LinuxTuning, ExplicitCpuListPinsWorkersToThoseCpus) {
  const std::vector<int> allowed = allowed_cpus();
  OptimizerConfig config = config_with_workers(3);
  config.tuning.cpus = {allowed.back()};
  TidRecordingRouter router;
  Optimizer optimizer(router, config);

  optimizer.start();
  const TuningReport report = optimizer.tuning_report();

  for (const pid_t tid : optimizer.worker_tids()) {
    EXPECT_EQ(kernel_affinity(tid), std::vector<int>{allowed.back()}) << "tid " << tid;
    const ThreadTuning* entry = find_thread(report, tid);
    ASSERT_NE(entry, nullptr);
    EXPECT_EQ(entry->affinity.outcome, TuningOutcome::applied);
  }
  optimizer.stop();
}

TEST(LinuxTuning, ConfiguredIoClassAndLevelAreApplied) {
  OptimizerConfig config = config_with_workers(2);
  config.tuning.io_class = IoClass::best_effort;  // needs no capability
  config.tuning.io_level = 5;
  TidRecordingRouter router;
  Optimizer optimizer(router, config);

  optimizer.start();
  const TuningReport report = optimizer.tuning_report();

  for (const pid_t tid : optimizer.worker_tids()) {
    const auto io = kernel_io_priority(tid);
    ASSERT_TRUE(io.has_value());
    EXPECT_EQ(io->io_class, static_cast<int>(IoClass::best_effort)) << "tid " << tid;
    EXPECT_EQ(io->level, 5) << "tid " << tid;
    const ThreadTuning* entry = find_thread(report, tid);
    ASSERT_NE(entry, nullptr);
    EXPECT_EQ(entry->io_priority.outcome, TuningOutcome::applied);
  }
  optimizer.stop();
}

TEST(LinuxTuning, DisabledTuningsAreReportedAndLeftAlone) {
  OptimizerConfig config = config_with_workers(2);
  config.tuning.pin_workers = false;
  config.tuning.set_nice = false;
  config.tuning.set_io_priority = false;
  const auto nice_before = kernel_nice(::getpid());
  const auto cpus_before = kernel_affinity(::getpid());
  TidRecordingRouter router;
  Optimizer optimizer(router, config);

  optimizer.start();
  route_messages(optimizer, router, 100);
  const TuningReport report = optimizer.tuning_report();

  EXPECT_TRUE(report.fully_applied()) << report.describe();
  for (const auto& entry : report.threads) {
    SCOPED_TRACE("tid " + std::to_string(entry.tid) + " " + entry.name);
    EXPECT_EQ(entry.affinity.outcome, TuningOutcome::disabled);
    EXPECT_EQ(entry.nice.outcome, TuningOutcome::disabled);
    EXPECT_EQ(entry.io_priority.outcome, TuningOutcome::disabled);
    EXPECT_EQ(kernel_nice(entry.tid), nice_before);
    EXPECT_EQ(kernel_affinity(entry.tid), cpus_before);
    const auto io = kernel_io_priority(entry.tid);
    ASSERT_TRUE(io.has_value());
    EXPECT_NE(io->io_class, static_cast<int>(IoClass::realtime));
  }
  optimizer.stop();
}

TEST(LinuxTuning, DescribeHasALineForEveryThread) {
  TidRecordingRouter router;
  Optimizer optimizer(router, config_with_workers(2));

  optimizer.start();
  const TuningReport report = optimizer.tuning_report();
  const std::string text = report.describe();

  for (const auto& entry : report.threads) {
    EXPECT_NE(text.find("tid=" + std::to_string(entry.tid) + " name=" + entry.name),
              std::string::npos)
        << text;
  }
  EXPECT_EQ(report.fully_applied(), text.find("shortfall: ") == std::string::npos) << text;
  optimizer.stop();
}

// The unprivileged path, run for real in a child process.

/// One line of the probe's output: its kind and its key=value fields.
struct ProbeLine {
  std::string kind;
  std::map<std::string, std::string> fields;
};

ProbeLine parse_probe_line(const std::string& line) {
  ProbeLine parsed;
  std::istringstream words(line);
  words >> parsed.kind;
  if (parsed.kind == "detail") {  // the text runs to the end of the line
    const auto text = line.find(" text=");
    std::istringstream head(line.substr(0, text));
    std::string word;
    head >> word;
    while (head >> word) {
      const auto eq = word.find('=');
      parsed.fields[word.substr(0, eq)] = word.substr(eq + 1);
    }
    parsed.fields["text"] = text == std::string::npos ? "" : line.substr(text + 6);
    return parsed;
  }
  for (std::string word; words >> word;) {
    const auto eq = word.find('=');
    if (eq != std::string::npos) {
      parsed.fields[word.substr(0, eq)] = word.substr(eq + 1);
    }
  }
  return parsed;
}

/// The probe as a child process with pipes on its stdin and stdout. Kills and reaps it if the
/// test ends early.
class ProbeProcess {
 public:
  explicit ProbeProcess(const std::vector<std::string>& args) {
    int in[2] = {-1, -1};
    int out[2] = {-1, -1};
    if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0) {
      error_ = "pipe2: errno " + std::to_string(errno);
      return;
    }
    posix_spawn_file_actions_t actions;
    ::posix_spawn_file_actions_init(&actions);
    ::posix_spawn_file_actions_adddup2(&actions, in[0], STDIN_FILENO);
    ::posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
    std::vector<std::string> argv_strings{V2_TUNING_PROBE_PATH};
    argv_strings.insert(argv_strings.end(), args.begin(), args.end());
    std::vector<char*> argv;
    argv.reserve(argv_strings.size() + 1);
    for (auto& arg : argv_strings) {
      argv.push_back(arg.data());
    }
    argv.push_back(nullptr);
    const int rc =
        ::posix_spawn(&pid_, V2_TUNING_PROBE_PATH, &actions, nullptr, argv.data(), environ);
    ::posix_spawn_file_actions_destroy(&actions);
    ::close(in[0]);
    ::close(out[1]);
    to_child_ = in[1];
    from_child_ = out[0];
    if (rc != 0) {
      pid_ = -1;
      error_ = "posix_spawn(" + std::string(V2_TUNING_PROBE_PATH) + "): " + std::to_string(rc);
    }
  }
  ProbeProcess(const ProbeProcess&) = delete;
  ProbeProcess& operator=(const ProbeProcess&) = delete;
  ProbeProcess(ProbeProcess&&) = delete;
  ProbeProcess& operator=(ProbeProcess&&) = delete;
  ~ProbeProcess() {
    if (pid_ > 0 && !reaped_) {
      ::kill(pid_, SIGKILL);  // only the child this object started
      int status = 0;
      ::waitpid(pid_, &status, 0);
    }
    if (to_child_ >= 0) {
      ::close(to_child_);
    }
    if (from_child_ >= 0) {
      ::close(from_child_);
    }
  }

  [[nodiscard]] pid_t pid() const { return pid_; }
  [[nodiscard]] const std::string& error() const { return error_; }

  /// Reads lines until `last` (included) or end of output; gives up after 60 s so that a
  /// hung child fails the test instead of hanging it.
  std::vector<std::string> read_until(const std::string& last) {
    std::vector<std::string> lines;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    for (;;) {
      const auto newline = buffer_.find('\n');
      if (newline != std::string::npos) {
        lines.push_back(buffer_.substr(0, newline));
        buffer_.erase(0, newline + 1);
        if (lines.back() == last) {
          return lines;
        }
        continue;
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      pollfd fd{from_child_, POLLIN, 0};
      if (left.count() <= 0 || ::poll(&fd, 1, static_cast<int>(left.count())) <= 0) {
        lines.emplace_back("<timed out waiting for the probe>");
        return lines;
      }
      char chunk[4096];
      const auto n = ::read(from_child_, chunk, sizeof(chunk));
      if (n <= 0) {
        if (!buffer_.empty()) {
          lines.push_back(buffer_);
        }
        buffer_.clear();
        return lines;
      }
      buffer_.append(chunk, static_cast<std::size_t>(n));
    }
  }

  void send_line() const {
    const char newline = '\n';
    EXPECT_EQ(::write(to_child_, &newline, 1), 1);
  }

  /// Waits for the child; returns its wait status.
  int wait() {
    int status = 0;
    EXPECT_EQ(::waitpid(pid_, &status, 0), pid_);
    reaped_ = true;
    return status;
  }

 private:
  pid_t pid_ = -1;
  bool reaped_ = false;
  int to_child_ = -1;
  int from_child_ = -1;
  std::string buffer_;
  std::string error_;
};

std::string join(const std::vector<std::string>& lines) {
  std::string text;
  for (const auto& line : lines) {
    text += line + "\n";
  }
  return text;
}

int io_class_number(const std::string& text) {
  for (const IoClass io_class :
       {IoClass::none, IoClass::realtime, IoClass::best_effort, IoClass::idle}) {
    if (text.starts_with(std::string(to_string(io_class)) + "/")) {
      return static_cast<int>(io_class);
    }
  }
  return -1;
}

void check_unprivileged_probe(const std::vector<std::string>& args) {
  constexpr std::size_t kWorkers = 3;
  constexpr std::size_t kProbeMessages = 500;
  const std::vector<int> allowed = allowed_cpus();
  std::vector<std::string> all_args = args;
  all_args.push_back("--workers=" + std::to_string(kWorkers));
  all_args.push_back("--messages=" + std::to_string(kProbeMessages));
  ProbeProcess probe(all_args);
  ASSERT_TRUE(probe.error().empty()) << probe.error();

  const std::vector<std::string> lines = probe.read_until("ready");
  const std::string output = join(lines);
  ASSERT_FALSE(lines.empty());
  ASSERT_EQ(lines.back(), "ready") << output;

  std::map<std::size_t, pid_t> worker_tids;
  std::map<pid_t, std::map<std::string, std::string>> threads;
  std::map<std::pair<pid_t, std::string>, std::string> details;
  std::map<std::string, std::string> caps;
  for (const auto& line : lines) {
    const ProbeLine parsed = parse_probe_line(line);
    if (parsed.kind == "worker") {
      worker_tids[std::stoul(parsed.fields.at("index"))] = std::stoi(parsed.fields.at("tid"));
    } else if (parsed.kind == "thread") {
      threads[std::stoi(parsed.fields.at("tid"))] = parsed.fields;
    } else if (parsed.kind == "detail") {
      details[{std::stoi(parsed.fields.at("tid")), parsed.fields.at("tuning")}] =
          parsed.fields.at("text");
    } else if (parsed.kind == "capabilities") {
      caps = parsed.fields;
    }
  }

  // The probe really runs without the capabilities.
  EXPECT_EQ(caps["sys_nice_effective"], "0") << output;
  EXPECT_EQ(caps["sys_admin_effective"], "0") << output;
  EXPECT_EQ(caps["rlimit_nice"], "0") << output;
  ASSERT_EQ(worker_tids.size(), kWorkers) << output;

  // Every thread of the child is in its report, and the kernel agrees with each entry.
  const std::vector<pid_t> child_tids = testing::task_ids(probe.pid());
  EXPECT_EQ(threads.size(), child_tids.size()) << output;
  for (const pid_t tid : child_tids) {
    SCOPED_TRACE("child tid " + std::to_string(tid));
    ASSERT_EQ(threads.count(tid), 1U) << output;
    auto& fields = threads[tid];
    EXPECT_EQ(fields["name"], testing::comm(probe.pid(), tid));
    const auto cpus = testing::parse_cpu_list(fields["cpu_in_force"]);
    EXPECT_EQ(kernel_affinity(tid), cpus);
    EXPECT_EQ(testing::proc_cpus_allowed(probe.pid(), tid), cpus);
    EXPECT_EQ(testing::stat_nice(probe.pid(), tid), std::stoi(fields["nice_in_force"]));
    const auto io = kernel_io_priority(tid);
    ASSERT_TRUE(io.has_value());
    EXPECT_EQ(io->io_class, io_class_number(fields["io_in_force"])) << fields["io_in_force"];

    EXPECT_EQ(fields["nice_requested"], "-10");
    EXPECT_EQ(fields["nice_outcome"], "not_applied");
    EXPECT_EQ(fields["nice_error"], std::to_string(EACCES));
    const std::string& nice_detail = details[{tid, "nice"}];
    EXPECT_NE(nice_detail.find("EACCES"), std::string::npos) << nice_detail;
    EXPECT_NE(nice_detail.find("cap_sys_nice not effective"), std::string::npos) << nice_detail;
    EXPECT_NE(nice_detail.find("fix: "), std::string::npos) << nice_detail;
  }

  for (const auto& [index, tid] : worker_tids) {
    SCOPED_TRACE("worker " + std::to_string(index) + " tid " + std::to_string(tid));
    auto& fields = threads[tid];
    const std::vector<int> expected{allowed[index % allowed.size()]};
    EXPECT_EQ(fields["worker"], std::to_string(index));
    EXPECT_EQ(fields["name"], "v2-worker-" + std::to_string(index));
    EXPECT_EQ(fields["cpu_outcome"], "applied") << "pinning needs no capability";
    EXPECT_EQ(kernel_affinity(tid), expected);
    EXPECT_EQ(fields["io_outcome"], "partial");
    EXPECT_EQ(fields["io_error"], std::to_string(EPERM));
    const auto io = kernel_io_priority(tid);
    ASSERT_TRUE(io.has_value());
    EXPECT_EQ(io->io_class, static_cast<int>(IoClass::best_effort)) << "the fallback is in force";
    EXPECT_EQ(io->level, 0);
    const std::string& io_detail = details[{tid, "io"}];
    EXPECT_NE(io_detail.find("ioprio_set(tid=" + std::to_string(tid)), std::string::npos)
        << io_detail;
    EXPECT_NE(io_detail.find("EPERM"), std::string::npos) << io_detail;
    EXPECT_NE(io_detail.find("fix: "), std::string::npos) << io_detail;
  }
  EXPECT_NE(output.find("report fully_applied=0"), std::string::npos) << output;

  probe.send_line();
  const std::vector<std::string> rest =
      probe.read_until("routed=" + std::to_string(kProbeMessages));
  EXPECT_EQ(rest.empty() ? "" : rest.back(), "routed=" + std::to_string(kProbeMessages))
      << join(rest);
  const int status = probe.wait();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "wait status " << status;
}

TEST(LinuxTuning, UnprivilegedProcessReportsWhatTheKernelRefused) {
  check_unprivileged_probe({});
}

TEST(LinuxTuning, UnprivilegedUserReportsWhatTheKernelRefused) {
  if (::geteuid() != 0) {
    GTEST_SKIP() << "switching to uid 65534 needs root; this user is already unprivileged, "
                    "which UnprivilegedProcessReportsWhatTheKernelRefused covers";
  }
  check_unprivileged_probe({"--as-nobody"});
}

}  // namespace
}  // namespace v2
