#include "spawn.hpp"

#include <fcntl.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "common.hpp"

namespace v2bench {
namespace {

bool can_connect(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return false;
  }
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.c_str(), std::min(path.size() + 1, sizeof(address.sun_path)));
  const bool ok = ::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) == 0;
  ::close(fd);
  return ok;
}

// The whole file, or what could be read of it; POSIX read keeps it free of stream state.
std::string read_file(const std::string& path) {
  std::string text;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return text;
  }
  char buffer[4096];
  for (;;) {
    const ssize_t n = ::read(fd, buffer, sizeof(buffer));
    if (n > 0) {
      text.append(buffer, static_cast<std::size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      break;
    }
  }
  ::close(fd);
  return text;
}

int shell_status(int status) {
  if (WIFEXITED(status)) {
    return WEXITSTATUS(status);
  }
  if (WIFSIGNALED(status)) {
    return 128 + WTERMSIG(status);
  }
  return -1;
}

}  // namespace

SpawnedBroker::SpawnedBroker(const std::string& program, const std::vector<std::string>& args,
                             ReadyCheck ready) {
  std::string pattern = "/tmp/v2bench-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) {
    throw std::runtime_error(std::string("mkdtemp(/tmp/v2bench-XXXXXX) failed: ") +
                             std::strerror(errno));
  }
  dir_ = pattern;
  socket_path_ = dir_ + "/broker.sock";
  log_path_ = dir_ + "/broker.log";

  std::vector<std::string> argv_text{program};
  argv_text.insert(argv_text.end(), args.begin(), args.end());
  argv_text.emplace_back("--socket");
  argv_text.push_back(socket_path_);
  std::vector<char*> argv;
  argv.reserve(argv_text.size() + 1);
  for (auto& a : argv_text) {
    argv.push_back(a.data());
  }
  argv.push_back(nullptr);

  const int log_fd = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (log_fd < 0) {
    throw std::runtime_error("open(" + log_path_ + ") failed: " + std::strerror(errno));
  }
  const pid_t parent = ::getpid();
  pid_ = ::fork();
  if (pid_ < 0) {
    const int error = errno;
    ::close(log_fd);
    throw std::runtime_error(std::string("fork failed: ") + std::strerror(error));
  }
  if (pid_ == 0) {
    // The broker must not outlive v2bench, even when v2bench is killed.
    (void)::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) {
      ::_exit(127);
    }
    // v2bench may run under a real-time policy (--client-realtime); the broker starts under
    // the normal one, so that its own tuning alone decides.
    const sched_param normal{.sched_priority = 0};
    (void)::sched_setscheduler(0, SCHED_OTHER, &normal);
    (void)::dup2(log_fd, STDOUT_FILENO);
    (void)::dup2(log_fd, STDERR_FILENO);
    ::execv(program.c_str(), argv.data());
    std::fprintf(stderr, "execv(%s) failed: %s\n", program.c_str(), std::strerror(errno));
    ::_exit(127);
  }
  ::close(log_fd);

  const std::int64_t deadline = now_ns() + 10'000'000'000;
  for (;;) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      status_ = shell_status(status);
      pid_ = -1;
      throw std::runtime_error("broker=" + program + " exited with status " +
                               std::to_string(status_) + " before it was ready:\n" + log_tail());
    }
    struct stat st {};
    const bool is_ready = ready == ReadyCheck::connect ? can_connect(socket_path_)
                                                       : ::stat(socket_path_.c_str(), &st) == 0;
    if (is_ready) {
      return;
    }
    if (now_ns() > deadline) {
      (void)stop(2.0);
      throw std::runtime_error("broker=" + program + " socket=" + socket_path_ +
                               " not ready within 10 s:\n" + log_tail());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

SpawnedBroker::~SpawnedBroker() {
  (void)stop(5.0);
  (void)::unlink(socket_path_.c_str());
  (void)::unlink(log_path_.c_str());
  (void)::rmdir(dir_.c_str());
}

double SpawnedBroker::cpu_seconds() const {
  if (pid_ <= 0) {
    return -1.0;
  }
  const std::string text = read_file("/proc/" + std::to_string(pid_) + "/stat");
  const auto paren = text.rfind(')');
  if (paren == std::string::npos) {
    return -1.0;
  }
  // Fields after the command: state(3) ... utime(14) stime(15).
  std::istringstream fields(text.substr(paren + 2));
  std::string field;
  double ticks = 0.0;
  for (int index = 3; index <= 15 && (fields >> field); ++index) {
    if (index == 14 || index == 15) {
      ticks += std::strtod(field.c_str(), nullptr);
    }
  }
  return ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

int SpawnedBroker::stop(double grace_s) {
  if (pid_ <= 0) {
    return status_;
  }
  (void)::kill(pid_, SIGTERM);
  const std::int64_t deadline = now_ns() + static_cast<std::int64_t>(grace_s * 1e9);
  int status = 0;
  for (;;) {
    const pid_t done = ::waitpid(pid_, &status, WNOHANG);
    if (done == pid_) {
      break;
    }
    if (done < 0 && errno != EINTR) {
      status = 0;
      break;
    }
    if (now_ns() > deadline) {
      (void)::kill(pid_, SIGKILL);
      while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
      }
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  status_ = shell_status(status);
  pid_ = -1;
  return status_;
}

std::string SpawnedBroker::log_tail(std::size_t bytes) const {
  const std::string text = read_file(log_path_);
  return text.size() > bytes ? text.substr(text.size() - bytes) : text;
}

}  // namespace v2bench
