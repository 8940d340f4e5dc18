// The tuning ledger and the system-call layer under it, checked against the kernel. Threads are
// created here and tune themselves, as the optimizer's threads do.

#include "optimizer/tuning_ledger.hpp"

#include <gtest/gtest.h>
#include <sched.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <latch>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "kernel_view.hpp"
#include "sys/error.hpp"
#include "sys/priority.hpp"
#include "sys/thread.hpp"
#include "v2broker/tuning.hpp"

namespace v2 {
namespace {

using testing::kernel_affinity;
using testing::kernel_io_priority;
using testing::kernel_nice;
using testing::ParkedThread;

constexpr int kRealtime = 1;
constexpr int kBestEffort = 2;

const ThreadTuning* find_thread(const TuningReport& report, pid_t tid) {
  const auto found = std::find_if(report.threads.begin(), report.threads.end(),
                                  [tid](const ThreadTuning& thread) { return thread.tid == tid; });
  return found == report.threads.end() ? nullptr : &*found;
}

int kernel_class(IoClass io_class) {
  return static_cast<int>(io_class);
}

/// Runs `work` in a forked child (this process must be single-threaded) and returns what it
/// wrote; the child's exit status must be 0.
std::string run_in_child(const std::function<std::string()>& work) {
  int fds[2] = {-1, -1};
  if (::pipe(fds) != 0) {
    ADD_FAILURE() << "pipe: " << sys::errno_name(errno);
    return {};
  }
  const pid_t child = ::fork();
  if (child == 0) {
    ::close(fds[0]);
    const std::string output = work();
    std::size_t written = 0;
    while (written < output.size()) {
      const auto n = ::write(fds[1], output.data() + written, output.size() - written);
      if (n <= 0) {
        ::_exit(3);
      }
      written += static_cast<std::size_t>(n);
    }
    ::_exit(0);
  }
  ::close(fds[1]);
  if (child < 0) {
    ::close(fds[0]);
    ADD_FAILURE() << "fork: " << sys::errno_name(errno);
    return {};
  }
  std::string output;
  char buffer[4096];
  for (;;) {
    const auto n = ::read(fds[0], buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      break;
    }
    output.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(fds[0]);
  int status = 0;
  EXPECT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
  return output;
}

/// "key=value" lines into a map.
std::map<std::string, std::string> parse_lines(const std::string& text) {
  std::map<std::string, std::string> values;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    const auto eq = line.find('=');
    if (eq != std::string::npos) {
      values[line.substr(0, eq)] = line.substr(eq + 1);
    }
  }
  return values;
}

/// Removes CAP_SYS_NICE and CAP_SYS_ADMIN from every set of the calling (single) thread.
/// Returns an empty string or what failed.
std::string drop_tuning_capabilities() {
  const cap_value_t dropped[] = {CAP_SYS_NICE, CAP_SYS_ADMIN};
  for (const cap_value_t cap : dropped) {
    if (::cap_get_bound(cap) == 1 && ::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 &&
        errno != EPERM) {
      return "prctl(PR_CAPBSET_DROP): " + sys::errno_name(errno);
    }
  }
  cap_t caps = ::cap_get_proc();
  if (caps == nullptr) {
    return "cap_get_proc: " + sys::errno_name(errno);
  }
  std::string failed;
  for (const cap_flag_t set : {CAP_EFFECTIVE, CAP_PERMITTED, CAP_INHERITABLE}) {
    if (::cap_set_flag(caps, set, 2, dropped, CAP_CLEAR) != 0) {
      failed = "cap_set_flag: " + sys::errno_name(errno);
    }
  }
  if (failed.empty() && ::cap_set_proc(caps) != 0) {
    failed = "cap_set_proc: " + sys::errno_name(errno);
  }
  ::cap_free(caps);
  return failed;
}

TEST(SysLayer, ErrorNamesTheCallItsContextAndTheErrnoName) {
  constexpr pid_t kNoSuchThread = 0x3ffffff0;  // above any pid_max the kernel allows

  const auto status = sys::set_nice(kNoSuchThread, -10);

  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.code(), ESRCH);
  EXPECT_EQ(status.error().message, "setpriority(tid=1073741808, nice=-10): ESRCH");
}

TEST(SysLayer, EachFailureConventionReportsTheRightErrno) {
  const auto context = [] { return sys::kv("fd", 42); };

  const auto minus_one = sys::call_errno(
      "close", [] { return ::close(-1); }, context);
  const auto returned = sys::call_returned_code(
      "pthread_fake", [] { return EAGAIN; }, context);
  const auto negative = sys::call_negative_errno(
      "raw_fake", [] { return -ENOSPC; }, context);
  const auto cleared_ok = sys::call_errno_cleared(
      "getpriority", [] { return -1; }, context);

  ASSERT_FALSE(minus_one.ok());
  EXPECT_EQ(minus_one.error().message, "close(fd=42): EBADF");
  ASSERT_FALSE(returned.ok());
  EXPECT_EQ(returned.error().message, "pthread_fake(fd=42): EAGAIN");
  ASSERT_FALSE(negative.ok());
  EXPECT_EQ(negative.error().message, "raw_fake(fd=42): ENOSPC");
  ASSERT_TRUE(cleared_ok.ok()) << "-1 without errno is a value, not an error";
  EXPECT_EQ(cleared_ok.value(), -1);
  EXPECT_EQ(sys::errno_name(4095), "errno=4095");
}

TEST(SysLayer, GetNiceReadsMinusOneAsAValue) {
  if (!read_capability_state().sys_nice_effective) {
    GTEST_SKIP() << "needs CAP_SYS_NICE to lower a nice value to -1";
  }
  std::optional<int> read;
  std::thread([&] {
    const pid_t tid = sys::gettid();
    ASSERT_TRUE(sys::set_nice(tid, -1).ok());
    auto nice = sys::get_nice(tid);
    ASSERT_TRUE(nice.ok()) << nice.error().message;
    read = nice.value();
  }).join();

  EXPECT_EQ(read, -1);
}

TEST(SysLayer, FormatsCpuListsAsTheKernelDoes) {
  const std::vector<int> cpus{0, 1, 2, 3, 6, 8, 9};

  EXPECT_EQ(sys::format_cpu_list(cpus), "0-3,6,8-9");
  EXPECT_EQ(sys::format_cpu_list(std::vector<int>{5}), "5");
  EXPECT_EQ(sys::format_cpu_list(std::vector<int>{}), "");
  EXPECT_EQ(testing::parse_cpu_list("0-3,6,8-9"), cpus);
}

TEST(SysLayer, ListsEveryThreadOfTheProcess) {
  const ParkedThread first;
  const ParkedThread second;

  const auto tids = sys::list_threads();

  ASSERT_TRUE(tids.ok()) << tids.error().message;
  EXPECT_EQ(tids.value(), testing::task_ids(::getpid()));
  for (const pid_t tid : {::getpid(), first.tid(), second.tid()}) {
    EXPECT_TRUE(std::find(tids.value().begin(), tids.value().end(), tid) != tids.value().end())
        << "tid " << tid;
  }
}

TEST(SysLayer, AffinityMatchesTheKernelsView) {
  const auto allowed = sys::get_affinity(0);
  ASSERT_TRUE(allowed.ok()) << allowed.error().message;
  const int last = allowed.value().back();
  std::vector<int> read_back;
  std::optional<std::vector<int>> kernel;
  std::thread([&] {
    const pid_t tid = sys::gettid();
    const std::vector<int> one{last};
    ASSERT_TRUE(sys::set_affinity(tid, one).ok());
    read_back = sys::get_affinity(tid).value_or({});
    kernel = kernel_affinity(tid);
  }).join();

  EXPECT_EQ(allowed.value(), kernel_affinity(0));
  EXPECT_EQ(read_back, std::vector<int>{last});
  EXPECT_EQ(kernel, std::vector<int>{last});
}

TEST(SysLayer, IoPriorityEncodingRoundTrips) {
  for (const IoClass io_class : {IoClass::realtime, IoClass::best_effort, IoClass::idle}) {
    for (int level = 0; level < sys::kIoLevels; ++level) {
      const sys::IoPriority priority{io_class, level};
      EXPECT_EQ(sys::decode_io_priority(sys::encode_io_priority(priority)), priority);
    }
  }
  EXPECT_EQ(sys::encode_io_priority({IoClass::realtime, 0}), 1 << 13);
}

TEST(CapabilityState, MatchesProcStatusAndGetrlimit) {
  constexpr int kSysAdmin = 21;
  constexpr int kSysNice = 23;

  const CapabilityState state = read_capability_state();

  EXPECT_EQ(state.sys_nice_effective, testing::status_capability("CapEff", kSysNice));
  EXPECT_EQ(state.sys_nice_permitted, testing::status_capability("CapPrm", kSysNice));
  EXPECT_EQ(state.sys_nice_bounding, testing::status_capability("CapBnd", kSysNice));
  EXPECT_EQ(state.sys_admin_effective, testing::status_capability("CapEff", kSysAdmin));
  EXPECT_EQ(state.sys_admin_permitted, testing::status_capability("CapPrm", kSysAdmin));
  EXPECT_EQ(state.sys_admin_bounding, testing::status_capability("CapBnd", kSysAdmin));
  EXPECT_EQ(state.no_new_privs ? "1" : "0", testing::status_field(0, 0, "NoNewPrivs"));
  rlimit limit{};
  ASSERT_EQ(::getrlimit(RLIMIT_NICE, &limit), 0);
  EXPECT_EQ(state.nice_rlimit, limit.rlim_cur);
  EXPECT_EQ(state.euid, ::geteuid());
}

TEST(CapabilityState, RlimitNiceFloorFollowsTheKernelRule) {
  CapabilityState state;
  const std::vector<std::pair<unsigned long long, int>> cases{
      {0, 20}, {1, 19}, {20, 0}, {30, -10}, {40, -20}, {41, -20}, {RLIM_INFINITY, -20}};
  for (const auto& [limit, floor] : cases) {
    state.nice_rlimit = limit;
    EXPECT_EQ(state.rlimit_nice_floor(), floor) << "RLIMIT_NICE=" << limit;
  }
}

TEST(CapabilityState, DescribeNamesEverySet) {
  CapabilityState state;
  state.sys_nice_effective = true;
  state.sys_nice_permitted = true;
  state.sys_admin_bounding = true;
  state.nice_rlimit = 25;
  state.euid = 65534;

  EXPECT_EQ(state.describe(),
            "cap_sys_nice=effective,permitted cap_sys_admin=bounding no_new_privs=0 "
            "rlimit_nice=25 euid=65534");
}

TEST(TuningLedger, SetsNiceOnEveryThreadThatAlreadyExists) {
  TuningConfig config;
  config.nice = -7;
  detail::TuningLedger ledger(config);
  const ParkedThread before_one;
  const ParkedThread before_two;
  const bool can_lower = read_capability_state().sys_nice_effective;

  ledger.apply_process_nice();
  const ParkedThread after;  // inherits from this thread
  const TuningReport report = ledger.report();

  for (const pid_t tid : testing::task_ids(::getpid())) {
    const ThreadTuning* thread = find_thread(report, tid);
    ASSERT_NE(thread, nullptr) << "tid " << tid << " missing from the report";
    const auto nice = kernel_nice(tid);
    ASSERT_TRUE(nice.has_value());
    EXPECT_EQ(thread->nice.in_force, *nice) << "tid " << tid;
    EXPECT_EQ(thread->nice.requested, -7);
    if (can_lower) {
      EXPECT_EQ(*nice, -7) << "tid " << tid;
      EXPECT_EQ(thread->nice.outcome, TuningOutcome::applied) << thread->nice.detail;
    } else {
      EXPECT_NE(thread->nice.outcome, TuningOutcome::applied);
      EXPECT_NE(thread->nice.detail.find("EACCES"), std::string::npos) << thread->nice.detail;
    }
  }
  EXPECT_NE(find_thread(report, before_one.tid()), nullptr);
  EXPECT_NE(find_thread(report, before_two.tid()), nullptr);
  EXPECT_NE(find_thread(report, after.tid()), nullptr);
  EXPECT_EQ(report.fully_applied(), can_lower) << report.describe();
}

TEST(TuningLedger, TunesTheCallingWorkerAndReadsItBack) {
  const std::vector<int> allowed = allowed_cpus();
  const int cpu = allowed.back();
  detail::TuningLedger ledger(TuningConfig{});
  const CapabilityState caps = read_capability_state();
  pid_t returned = 0;

  const ParkedThread worker(
      [&] { returned = ledger.apply_to_current_thread("v2-worker-3", 3, cpu); });
  const TuningReport report = ledger.report();

  EXPECT_EQ(returned, worker.tid());
  const ThreadTuning* thread = find_thread(report, worker.tid());
  ASSERT_NE(thread, nullptr);
  EXPECT_EQ(report.threads.front().tid, worker.tid()) << "workers come first";
  EXPECT_EQ(thread->worker, 3U);
  EXPECT_EQ(thread->name, "v2-worker-3");
  EXPECT_EQ(testing::comm(::getpid(), worker.tid()), "v2-worker-3");

  EXPECT_EQ(thread->affinity.requested, std::vector<int>{cpu});
  EXPECT_EQ(kernel_affinity(worker.tid()), std::vector<int>{cpu});
  EXPECT_EQ(testing::proc_cpus_allowed(::getpid(), worker.tid()), std::vector<int>{cpu});
  EXPECT_EQ(thread->affinity.in_force, std::vector<int>{cpu});
  EXPECT_EQ(thread->affinity.outcome, TuningOutcome::applied) << thread->affinity.detail;

  EXPECT_EQ(thread->nice.in_force, kernel_nice(worker.tid()));
  const auto io = kernel_io_priority(worker.tid());
  ASSERT_TRUE(io.has_value());
  EXPECT_EQ(kernel_class(thread->io_priority.in_force_class), io->io_class);
  EXPECT_EQ(thread->io_priority.in_force_level, io->level);
  EXPECT_EQ(thread->io_priority.requested_class, IoClass::realtime);
  if (caps.sys_nice_effective) {
    EXPECT_EQ(kernel_nice(worker.tid()), -10);
    EXPECT_EQ(thread->nice.outcome, TuningOutcome::applied);
  }
  if (caps.sys_nice_effective || caps.sys_admin_effective) {
    EXPECT_EQ(io->io_class, kRealtime);
    EXPECT_EQ(io->level, 0);
    EXPECT_EQ(thread->io_priority.outcome, TuningOutcome::applied);
  } else {
    EXPECT_EQ(io->io_class, kBestEffort);
    EXPECT_EQ(thread->io_priority.outcome, TuningOutcome::partial);
  }
}

TEST(TuningLedger, TruncatesNamesToFifteenBytes) {
  detail::TuningLedger ledger(TuningConfig{});

  const ParkedThread thread(
      [&] { ledger.apply_to_current_thread("v2-a-very-long-thread-name", std::nullopt, {}); });

  EXPECT_EQ(testing::comm(::getpid(), thread.tid()), "v2-a-very-long-");
  const TuningReport report = ledger.report();
  const ThreadTuning* entry = find_thread(report, thread.tid());
  ASSERT_NE(entry, nullptr);
  EXPECT_EQ(entry->name, "v2-a-very-long-");
}

TEST(TuningLedger, NonWorkerThreadGetsNoIoPriorityButReportsWhatIsInForce) {
  detail::TuningLedger ledger(TuningConfig{});
  const auto before = std::make_shared<std::optional<testing::KernelIoPriority>>();

  const ParkedThread stats([&] {
    *before = kernel_io_priority(::gettid());
    ledger.apply_to_current_thread("v2-stats", std::nullopt, std::nullopt);
  });
  const TuningReport report = ledger.report();

  const ThreadTuning* thread = find_thread(report, stats.tid());
  ASSERT_NE(thread, nullptr);
  const auto io = kernel_io_priority(stats.tid());
  ASSERT_TRUE(io.has_value() && before->has_value());
  EXPECT_EQ(io->io_class, (*before)->io_class) << "a non-worker's I/O priority is left alone";
  EXPECT_EQ(thread->io_priority.outcome, TuningOutcome::disabled);
  EXPECT_FALSE(thread->io_priority.requested_class.has_value());
  EXPECT_EQ(kernel_class(thread->io_priority.in_force_class), io->io_class);
  EXPECT_EQ(thread->affinity.outcome, TuningOutcome::disabled);
  EXPECT_EQ(thread->affinity.in_force, kernel_affinity(stats.tid()));
}

TEST(TuningLedger, DisabledTuningsLeaveTheKernelUntouched) {
  TuningConfig config;
  config.pin_workers = false;
  config.set_nice = false;
  config.set_io_priority = false;
  config.name_threads = false;
  detail::TuningLedger ledger(config);
  const std::string process_name = testing::comm(::getpid(), ::getpid());
  const auto nice_before = kernel_nice(::getpid());
  const auto cpus_before = kernel_affinity(::getpid());

  ledger.apply_process_nice();
  const ParkedThread worker(
      [&] { ledger.apply_to_current_thread("v2-worker-0", 0, allowed_cpus().front()); });
  const TuningReport report = ledger.report();

  EXPECT_EQ(testing::comm(::getpid(), worker.tid()), process_name.substr(0, 15));
  EXPECT_EQ(kernel_nice(worker.tid()), nice_before);
  EXPECT_EQ(kernel_nice(::getpid()), nice_before);
  EXPECT_EQ(kernel_affinity(worker.tid()), cpus_before);
  const auto io = kernel_io_priority(worker.tid());
  ASSERT_TRUE(io.has_value());
  EXPECT_NE(io->io_class, kRealtime);
  for (const auto& thread : report.threads) {
    EXPECT_EQ(thread.affinity.outcome, TuningOutcome::disabled) << thread.tid;
    EXPECT_EQ(thread.nice.outcome, TuningOutcome::disabled) << thread.tid;
    EXPECT_EQ(thread.io_priority.outcome, TuningOutcome::disabled) << thread.tid;
    EXPECT_FALSE(thread.nice.requested.has_value());
  }
  EXPECT_TRUE(report.fully_applied());
}

TEST(TuningLedger, RefusedCpuIsReportedWithTheAllowedSetInsteadOfThrown) {
  detail::TuningLedger ledger(TuningConfig{});
  const auto cpus_before = kernel_affinity(::getpid());
  constexpr int kAbsentCpu = 4000;

  const ParkedThread worker([&] { ledger.apply_to_current_thread("v2-worker-0", 0, kAbsentCpu); });
  const TuningReport report = ledger.report();

  const ThreadTuning* thread = find_thread(report, worker.tid());
  ASSERT_NE(thread, nullptr);
  EXPECT_EQ(kernel_affinity(worker.tid()), cpus_before);
  EXPECT_EQ(thread->affinity.outcome, TuningOutcome::not_applied);
  EXPECT_EQ(thread->affinity.error, EINVAL);
  EXPECT_EQ(thread->affinity.requested, std::vector<int>{kAbsentCpu});
  EXPECT_EQ(thread->affinity.in_force, cpus_before);
  EXPECT_NE(thread->affinity.detail.find("sched_setaffinity(tid=" + std::to_string(worker.tid()) +
                                         ", cpus=4000): EINVAL"),
            std::string::npos)
      << thread->affinity.detail;
  EXPECT_NE(thread->affinity.detail.find(sys::format_cpu_list(*cpus_before)), std::string::npos);
  EXPECT_FALSE(report.fully_applied());
  EXPECT_NE(report.describe().find("shortfall: cpu not_applied on v2-worker-0"), std::string::npos)
      << report.describe();
}

TEST(TuningLedger, WithoutCapabilitiesNiceAndRealtimeIoAreRefusedAndExplained) {
  const std::string output = run_in_child([] {
    std::ostringstream out;
    (void)::setpriority(PRIO_PROCESS, 0, 0);  // not what an earlier test left; before the drop
    if (const std::string failed = drop_tuning_capabilities(); !failed.empty()) {
      out << "setup=" << failed << "\n";
      return out.str();
    }
    const rlimit none{0, 0};
    if (::setrlimit(RLIMIT_NICE, &none) != 0) {
      out << "setup=setrlimit " << sys::errno_name(errno) << "\n";
      return out.str();
    }
    detail::TuningLedger ledger(TuningConfig{});
    ledger.apply_process_nice();
    const int cpu = allowed_cpus().front();
    const ParkedThread worker([&] { ledger.apply_to_current_thread("v2-worker-0", 0, cpu); });
    const TuningReport report = ledger.report();
    const ThreadTuning* thread = find_thread(report, worker.tid());
    if (thread == nullptr) {
      out << "setup=worker missing\n";
      return out.str();
    }
    const auto io = kernel_io_priority(worker.tid());
    out << "setup=ok\n"
        << "sys_nice_effective=" << report.capabilities.sys_nice_effective << "\n"
        << "cpu_outcome=" << to_string(thread->affinity.outcome) << "\n"
        << "cpu_kernel="
        << sys::format_cpu_list(kernel_affinity(worker.tid()).value_or(std::vector<int>{})) << "\n"
        << "cpu_requested=" << cpu << "\n"
        << "nice_outcome=" << to_string(thread->nice.outcome) << "\n"
        << "nice_error=" << thread->nice.error << "\n"
        << "nice_in_force=" << thread->nice.in_force << "\n"
        << "nice_kernel=" << kernel_nice(worker.tid()).value_or(99) << "\n"
        << "nice_detail=" << thread->nice.detail << "\n"
        << "io_outcome=" << to_string(thread->io_priority.outcome) << "\n"
        << "io_error=" << thread->io_priority.error << "\n"
        << "io_in_force=" << to_string(thread->io_priority.in_force_class) << "/"
        << thread->io_priority.in_force_level << "\n"
        << "io_kernel=" << (io ? io->io_class : -1) << "/" << (io ? io->level : -1) << "\n"
        << "io_detail=" << thread->io_priority.detail << "\n"
        << "fully_applied=" << report.fully_applied() << "\n";
    return out.str();
  });
  auto values = parse_lines(output);

  ASSERT_EQ(values["setup"], "ok") << output;
  EXPECT_EQ(values["sys_nice_effective"], "0");
  EXPECT_EQ(values["cpu_outcome"], "applied") << "pinning one's own threads needs no capability";
  EXPECT_EQ(values["cpu_kernel"], values["cpu_requested"]);
  EXPECT_EQ(values["nice_outcome"], "not_applied");
  EXPECT_EQ(values["nice_error"], std::to_string(EACCES));
  EXPECT_EQ(values["nice_in_force"], values["nice_kernel"]);
  EXPECT_NE(values["nice_detail"].find("EACCES"), std::string::npos) << output;
  EXPECT_NE(values["nice_detail"].find("cap_sys_nice not effective"), std::string::npos);
  EXPECT_NE(values["nice_detail"].find("fix: "), std::string::npos);
  EXPECT_NE(values["nice_detail"].find("LimitNICE=-10"), std::string::npos);
  EXPECT_EQ(values["io_outcome"], "partial");
  EXPECT_EQ(values["io_error"], std::to_string(EPERM));
  EXPECT_EQ(values["io_kernel"], "2/0") << "best-effort at the requested level";
  EXPECT_NE(values["io_detail"].find("ioprio_set"), std::string::npos) << output;
  EXPECT_NE(values["io_detail"].find("EPERM"), std::string::npos);
  EXPECT_NE(values["io_detail"].find("fix: "), std::string::npos);
  EXPECT_EQ(values["fully_applied"], "0");
}

// Whether this process may put a thread under SCHED_FIFO at `priority`.
bool may_use_realtime(int priority) {
  rlimit limit{};
  return read_capability_state().sys_nice_effective ||
         (::getrlimit(RLIMIT_RTPRIO, &limit) == 0 &&
          (limit.rlim_cur == RLIM_INFINITY || limit.rlim_cur >= static_cast<rlim_t>(priority)));
}

TEST(TuningLedger, RealtimeWorkersRunUnderFifoAndWhatTheyStartDoesNot) {
  constexpr int kPriority = 5;
  if (!may_use_realtime(kPriority)) {
    GTEST_SKIP() << "needs CAP_SYS_NICE or RLIMIT_RTPRIO >= " << kPriority;
  }
  TuningConfig config;
  config.realtime_priority = kPriority;
  detail::TuningLedger ledger(config);
  const auto started = std::make_shared<std::optional<testing::KernelScheduling>>();

  const ParkedThread worker([&] {
    ledger.apply_to_current_thread("v2-worker-0", 0, std::nullopt);
    std::thread child([&] { *started = testing::kernel_scheduling(::gettid()); });
    child.join();
  });
  const ParkedThread other([&] { ledger.apply_to_current_thread("v2-stats", std::nullopt, {}); });
  const ParkedThread reader([&] { ledger.apply_realtime_to_current_thread(); });
  const TuningReport report = ledger.report();

  const auto kernel = testing::kernel_scheduling(worker.tid());
  ASSERT_TRUE(kernel.has_value());
  EXPECT_EQ(kernel->policy, SCHED_FIFO | SCHED_RESET_ON_FORK);
  EXPECT_EQ(kernel->priority, kPriority);
  ASSERT_TRUE(started->has_value());
  EXPECT_EQ((*started)->policy, SCHED_OTHER) << "a thread the worker starts is not real-time";
  const ThreadTuning* entry = find_thread(report, worker.tid());
  ASSERT_NE(entry, nullptr);
  EXPECT_EQ(entry->scheduling.outcome, TuningOutcome::applied) << entry->scheduling.detail;
  EXPECT_EQ(entry->scheduling.requested_priority, kPriority);
  EXPECT_EQ(entry->scheduling.in_force_policy, "fifo");
  EXPECT_EQ(entry->scheduling.in_force_priority, kPriority);

  const ThreadTuning* stats = find_thread(report, other.tid());
  ASSERT_NE(stats, nullptr);
  EXPECT_EQ(testing::kernel_scheduling(other.tid())->policy, SCHED_OTHER);
  EXPECT_EQ(stats->scheduling.outcome, TuningOutcome::disabled);
  EXPECT_EQ(stats->scheduling.in_force_policy, "other");

  const ThreadTuning* message_thread = find_thread(report, reader.tid());
  ASSERT_NE(message_thread, nullptr);
  EXPECT_EQ(testing::kernel_scheduling(reader.tid())->priority, kPriority);
  EXPECT_EQ(message_thread->scheduling.outcome, TuningOutcome::applied);
  EXPECT_NE(report.describe().find("sched=fifo/5->fifo/5"), std::string::npos) << report.describe();
}

TEST(TuningLedger, WithoutCapabilitiesTheRealtimePolicyIsRefusedAndExplained) {
  const std::string output = run_in_child([] {
    std::ostringstream out;
    if (const std::string failed = drop_tuning_capabilities(); !failed.empty()) {
      out << "setup=" << failed << "\n";
      return out.str();
    }
    const rlimit none{0, 0};
    if (::setrlimit(RLIMIT_RTPRIO, &none) != 0) {
      out << "setup=setrlimit " << sys::errno_name(errno) << "\n";
      return out.str();
    }
    TuningConfig config;
    config.realtime_priority = 5;
    detail::TuningLedger ledger(config);
    const ParkedThread worker(
        [&] { ledger.apply_to_current_thread("v2-worker-0", 0, std::nullopt); });
    const TuningReport report = ledger.report();
    const ThreadTuning* thread = find_thread(report, worker.tid());
    if (thread == nullptr) {
      out << "setup=worker missing\n";
      return out.str();
    }
    const auto kernel = testing::kernel_scheduling(worker.tid());
    out << "setup=ok\n"
        << "outcome=" << to_string(thread->scheduling.outcome) << "\n"
        << "error=" << thread->scheduling.error << "\n"
        << "in_force=" << thread->scheduling.in_force_policy << "/"
        << thread->scheduling.in_force_priority << "\n"
        << "kernel=" << (kernel ? kernel->policy : -1) << "/" << (kernel ? kernel->priority : -1)
        << "\n"
        << "detail=" << thread->scheduling.detail << "\n"
        << "fully_applied=" << report.fully_applied() << "\n";
    return out.str();
  });
  auto values = parse_lines(output);

  ASSERT_EQ(values["setup"], "ok") << output;
  EXPECT_EQ(values["outcome"], "not_applied");
  EXPECT_EQ(values["error"], std::to_string(EPERM));
  EXPECT_EQ(values["in_force"], "other/0");
  EXPECT_EQ(values["kernel"], std::to_string(SCHED_OTHER) + "/0");
  EXPECT_NE(values["detail"].find("sched_setscheduler"), std::string::npos) << output;
  EXPECT_NE(values["detail"].find("EPERM"), std::string::npos);
  EXPECT_NE(values["detail"].find("RLIMIT_RTPRIO=0"), std::string::npos);
  EXPECT_NE(values["detail"].find("LimitRTPRIO=5"), std::string::npos);
  EXPECT_EQ(values["fully_applied"], "0");
}

TEST(TuningLedger, RlimitNiceAllowsTheStrongestPermittedNice) {
  constexpr rlim_t kLimit = 25;  // allows nice down to -5
  rlimit limit{};
  ASSERT_EQ(::getrlimit(RLIMIT_NICE, &limit), 0);
  const bool can_raise = limit.rlim_max == RLIM_INFINITY || limit.rlim_max >= kLimit ||
                         testing::status_capability("CapEff", CAP_SYS_RESOURCE).value_or(false);
  if (!can_raise) {
    GTEST_SKIP() << "RLIMIT_NICE hard limit is " << limit.rlim_max
                 << " and CAP_SYS_RESOURCE is not effective: cannot raise it to " << kLimit;
  }

  const std::string output = run_in_child([&] {
    std::ostringstream out;
    const rlimit some{kLimit, std::max<rlim_t>(kLimit, limit.rlim_max)};
    if (::setrlimit(RLIMIT_NICE, &some) != 0) {
      out << "setup=setrlimit " << sys::errno_name(errno) << "\n";
      return out.str();
    }
    (void)::setpriority(PRIO_PROCESS, 0, 0);  // not what an earlier test left; before the drop
    if (const std::string failed = drop_tuning_capabilities(); !failed.empty()) {
      out << "setup=" << failed << "\n";
      return out.str();
    }
    detail::TuningLedger ledger(TuningConfig{});
    ledger.apply_process_nice();
    const TuningReport report = ledger.report();
    const ThreadTuning* main_thread = find_thread(report, ::getpid());
    out << "setup=ok\n"
        << "nice_outcome=" << to_string(main_thread->nice.outcome) << "\n"
        << "nice_in_force=" << main_thread->nice.in_force << "\n"
        << "nice_kernel=" << kernel_nice(::getpid()).value_or(99) << "\n"
        << "nice_detail=" << main_thread->nice.detail << "\n";
    return out.str();
  });
  auto values = parse_lines(output);

  ASSERT_EQ(values["setup"], "ok") << output;
  EXPECT_EQ(values["nice_outcome"], "partial");
  EXPECT_EQ(values["nice_kernel"], "-5");
  EXPECT_EQ(values["nice_in_force"], "-5");
  EXPECT_NE(values["nice_detail"].find("nice -5 set instead"), std::string::npos) << output;
}

TEST(TuningReport, FullyAppliedOnlyWhenEveryEnabledTuningIsInForce) {
  TuningReport report;
  ThreadTuning thread;
  thread.affinity.outcome = TuningOutcome::applied;
  thread.nice.outcome = TuningOutcome::applied;
  thread.io_priority.outcome = TuningOutcome::disabled;
  report.threads.push_back(thread);
  EXPECT_TRUE(report.fully_applied());

  report.threads.back().io_priority.outcome = TuningOutcome::partial;
  EXPECT_FALSE(report.fully_applied());

  report.threads.back().io_priority.outcome = TuningOutcome::disabled;
  report.threads.back().nice.outcome = TuningOutcome::not_applied;
  EXPECT_FALSE(report.fully_applied());
}

TEST(TuningReport, DescribeShowsOneLinePerThreadThenEachShortfallWithItsFix) {
  TuningReport report;
  report.allowed_cpus = {0, 1};
  ThreadTuning worker;
  worker.tid = 101;
  worker.name = "v2-worker-0";
  worker.worker = 0;
  worker.affinity = {TuningOutcome::applied, {1}, {1}, 0, {}};
  worker.nice = {TuningOutcome::not_applied, -10, 0, EACCES,
                 "setpriority(tid=101, nice=-10): EACCES; fix: setcap cap_sys_nice+ep /bin/x"};
  worker.io_priority = {TuningOutcome::partial,
                        IoClass::realtime,
                        0,
                        IoClass::best_effort,
                        0,
                        EPERM,
                        "ioprio_set(tid=101, class=realtime, level=0): EPERM"};
  ThreadTuning other = worker;
  other.tid = 102;
  other.name = "v2-worker-1";
  other.worker = 1;
  other.nice.detail = "setpriority(tid=102, nice=-10): EACCES; fix: setcap cap_sys_nice+ep /bin/x";
  other.io_priority.detail = "ioprio_set(tid=102, class=realtime, level=0): EPERM";
  report.threads = {worker, other};

  const std::string text = report.describe();

  EXPECT_NE(text.find("tid=101 name=v2-worker-0 worker=0 cpu=1->1 nice=-10->0 [not_applied] "
                      "io=realtime/0->best-effort/0 [partial] sched=off->other/0\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("shortfall: nice not_applied on v2-worker-0 (101), v2-worker-1 (102): "
                      "setpriority(tid=101, nice=-10): EACCES; fix: setcap cap_sys_nice+ep /bin/x"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("shortfall: io partial on v2-worker-0 (101), v2-worker-1 (102): "),
            std::string::npos)
      << text;
  EXPECT_EQ(text.find("shortfall: cpu"), std::string::npos) << text;
}

}  // namespace
}  // namespace v2
