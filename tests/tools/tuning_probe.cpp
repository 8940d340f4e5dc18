// A child program for the tuning tests: gives up the privileges the tuning needs, starts a real
// Optimizer, and prints what it reports so that the parent can compare it with the kernel.
//
//   v2_tuning_probe [--as-nobody] [--workers=N] [--messages=N]
//
// Drops CAP_SYS_NICE and CAP_SYS_ADMIN from the effective, permitted, inheritable and bounding
// sets and sets RLIMIT_NICE to 0; with --as-nobody it also switches to uid/gid 65534. Then it
// starts the optimizer, routes the messages and prints key=value lines on stdout:
//
//   setup euid=65534 bounding_drop=ok start_nice=0
//   worker index=0 tid=1234
//   thread tid=1234 name=v2-worker-0 worker=0 cpu_outcome=applied ...
//   detail tid=1234 tuning=nice text=setpriority(tid=1234, nice=-10): EACCES; ...
//   report fully_applied=0 ...
//   text <a line of TuningReport::describe()>
//   ready
//
// then waits for a line on stdin, stops the optimizer and prints `routed=N`. Exit status 0 on
// success, 2 on a usage error, 1 when a step failed (an `error` line says which).

#include <grp.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>

#include "v2broker/optimizer.hpp"

namespace {

constexpr uid_t kNobody = 65534;

struct Options {
  bool as_nobody = false;
  std::size_t workers = 4;
  std::size_t messages = 1000;
};

class CountingRouter final : public v2::Router {
 public:
  void handle_broker(v2::Message& /*message*/,
                     const v2::RouteContext& /*context*/) noexcept override {
    routed_.fetch_add(1, std::memory_order_relaxed);  // a counter only: nothing is published
  }
  void route(v2::Message& /*message*/, const v2::RouteContext& /*context*/) noexcept override {
    routed_.fetch_add(1, std::memory_order_relaxed);
  }
  [[nodiscard]] std::size_t routed() const noexcept {
    return routed_.load(std::memory_order_relaxed);
  }

 private:
  std::atomic<std::size_t> routed_{0};
};

std::string errno_text(int error) {
  const char* name = ::strerrorname_np(error);
  return name != nullptr ? name : "errno=" + std::to_string(error);
}

[[noreturn]] void fail(const std::string& step, int error) {
  std::cout << "error step=" << step << " errno=" << errno_text(error) << std::endl;
  std::exit(1);
}

bool parse_size(std::string_view text, std::size_t& out) {
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), out);
  return error == std::errc{} && end == text.data() + text.size();
}

bool parse_options(int argc, char** argv, Options& options) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg(argv[i]);
    if (arg == "--as-nobody") {
      options.as_nobody = true;
    } else if (arg.starts_with("--workers=")) {
      if (!parse_size(arg.substr(10), options.workers)) {
        return false;
      }
    } else if (arg.starts_with("--messages=")) {
      if (!parse_size(arg.substr(11), options.messages)) {
        return false;
      }
    } else {
      return false;
    }
  }
  return true;
}

/// Drops CAP_SYS_NICE and CAP_SYS_ADMIN everywhere and RLIMIT_NICE to 0. Returns how the
/// bounding-set drop went: it needs CAP_SETPCAP, which an unprivileged user does not have
/// (and then cannot gain the capabilities anyway).
std::string drop_privileges() {
  std::string bounding = "ok";
  for (const cap_value_t cap : {CAP_SYS_NICE, CAP_SYS_ADMIN}) {
    if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) {
      bounding = errno_text(errno);
    }
  }

  cap_t caps = ::cap_get_proc();
  if (caps == nullptr) {
    fail("cap_get_proc", errno);
  }
  const std::array<cap_value_t, 2> dropped{CAP_SYS_NICE, CAP_SYS_ADMIN};
  for (const cap_flag_t set : {CAP_EFFECTIVE, CAP_PERMITTED, CAP_INHERITABLE}) {
    if (::cap_set_flag(caps, set, static_cast<int>(dropped.size()), dropped.data(), CAP_CLEAR) !=
        0) {
      fail("cap_set_flag", errno);
    }
  }
  if (::cap_set_proc(caps) != 0) {
    fail("cap_set_proc", errno);
  }
  ::cap_free(caps);

  const rlimit none{0, 0};
  if (::setrlimit(RLIMIT_NICE, &none) != 0) {
    fail("setrlimit(RLIMIT_NICE)", errno);
  }
  return bounding;
}

void become_nobody() {
  if (::setgroups(0, nullptr) != 0) {
    fail("setgroups", errno);
  }
  if (::setresgid(kNobody, kNobody, kNobody) != 0) {
    fail("setresgid", errno);
  }
  if (::setresuid(kNobody, kNobody, kNobody) != 0) {
    fail("setresuid", errno);
  }
}

std::string io_text(const std::optional<v2::IoClass>& io_class, int level) {
  if (!io_class) {
    return "off";
  }
  return std::string(v2::to_string(*io_class)) + "/" + std::to_string(level);
}

std::string cpu_text(const std::vector<int>& cpus) {
  if (cpus.empty()) {
    return "off";
  }
  std::string text;
  for (const int cpu : cpus) {
    text += (text.empty() ? "" : ",") + std::to_string(cpu);
  }
  return text;
}

void print_report(const v2::TuningReport& report) {
  const auto& caps = report.capabilities;
  std::cout << "capabilities sys_nice_effective=" << caps.sys_nice_effective
            << " sys_nice_permitted=" << caps.sys_nice_permitted
            << " sys_nice_bounding=" << caps.sys_nice_bounding
            << " sys_admin_effective=" << caps.sys_admin_effective
            << " sys_admin_permitted=" << caps.sys_admin_permitted
            << " sys_admin_bounding=" << caps.sys_admin_bounding
            << " no_new_privs=" << caps.no_new_privs << " rlimit_nice=" << caps.nice_rlimit
            << " euid=" << caps.euid << "\n";

  for (const auto& thread : report.threads) {
    const auto& cpu = thread.affinity;
    const auto& nice = thread.nice;
    const auto& io = thread.io_priority;
    std::cout << "thread tid=" << thread.tid << " name=" << thread.name
              << " worker=" << (thread.worker ? std::to_string(*thread.worker) : "-")
              << " cpu_outcome=" << v2::to_string(cpu.outcome)
              << " cpu_requested=" << cpu_text(cpu.requested)
              << " cpu_in_force=" << cpu_text(cpu.in_force) << " cpu_error=" << cpu.error
              << " nice_outcome=" << v2::to_string(nice.outcome)
              << " nice_requested=" << (nice.requested ? std::to_string(*nice.requested) : "off")
              << " nice_in_force=" << nice.in_force << " nice_error=" << nice.error
              << " io_outcome=" << v2::to_string(io.outcome)
              << " io_requested=" << io_text(io.requested_class, io.requested_level)
              << " io_in_force=" << io_text(io.in_force_class, io.in_force_level)
              << " io_error=" << io.error << "\n";
    for (const auto& [tuning, detail] :
         {std::pair{"cpu", &cpu.detail}, std::pair{"nice", &nice.detail},
          std::pair{"io", &io.detail}}) {
      if (!detail->empty()) {
        std::cout << "detail tid=" << thread.tid << " tuning=" << tuning << " text=" << *detail
                  << "\n";
      }
    }
  }
  std::cout << "report fully_applied=" << report.fully_applied()
            << " threads=" << report.threads.size() << "\n";

  std::istringstream text(report.describe());
  for (std::string line; std::getline(text, line);) {
    std::cout << "text " << line << "\n";
  }
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  if (!parse_options(argc, argv, options)) {
    std::cerr << "usage: v2_tuning_probe [--as-nobody] [--workers=N] [--messages=N]\n";
    return 2;
  }

  // Start from nice 0 whatever the parent had, so the refusal to lower it is what is observed.
  // Raising a nice value needs no privilege; lowering it back might, hence before the drop.
  (void)::setpriority(PRIO_PROCESS, 0, 0);
  const int start_nice = ::getpriority(PRIO_PROCESS, 0);
  const std::string bounding = drop_privileges();
  if (options.as_nobody) {
    become_nobody();
  }
  std::cout << "setup euid=" << ::geteuid() << " bounding_drop=" << bounding
            << " start_nice=" << start_nice << "\n";

  CountingRouter router;
  v2::OptimizerConfig config;
  config.workers = options.workers;
  config.offer_policy = v2::OfferPolicy::block;  // every message must be routed
  v2::Optimizer optimizer(router, config);
  optimizer.start();

  for (std::size_t i = 0; i < options.messages; ++i) {
    v2::Message message;
    message.source = "probe";
    message.target = "sink-" + std::to_string(i % 8);
    message.id = std::to_string(i);
    if (!v2::is_accepted(optimizer.offer(std::move(message)))) {
      fail("offer", 0);
    }
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (router.routed() < options.messages) {
    if (std::chrono::steady_clock::now() > deadline) {
      fail("route", ETIMEDOUT);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }

  const auto tids = optimizer.worker_tids();
  for (std::size_t i = 0; i < tids.size(); ++i) {
    std::cout << "worker index=" << i << " tid=" << tids[i] << "\n";
  }
  print_report(optimizer.tuning_report());
  std::cout << "ready" << std::endl;

  std::string line;
  std::getline(std::cin, line);
  optimizer.stop();
  std::cout << "routed=" << router.routed() << std::endl;
  return 0;
}
