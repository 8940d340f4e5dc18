#pragma once

// Helpers of the integration tests: a temporary directory, child processes (the real v2broker
// binary, v2ctl, Python, this test binary in a helper mode), and a raw socket peer that speaks
// either framing through the wire codec. Everything started here is killed and reaped by its
// destructor, so a failed assertion never leaves a process behind.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "v2broker/message.hpp"
#include "v2broker/payload.hpp"
#include "v2broker/wire.hpp"

namespace v2::integration {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

/// Longest wait for anything that should happen soon; only a broken broker reaches it.
inline constexpr std::chrono::milliseconds kPatience = 20s;

[[noreturn]] inline void fail_errno(const std::string& what) {
  throw std::runtime_error(what + ": " + std::strerror(errno));
}

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

/// Polls `done` every few milliseconds until it returns true or `patience` passes.
template <typename Predicate>
bool wait_until(Predicate done, std::chrono::milliseconds patience = kPatience) {
  const auto deadline = Clock::now() + patience;
  while (!done()) {
    if (Clock::now() >= deadline) {
      return false;
    }
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

/// A fresh directory under /tmp, removed with its content at destruction.
class TempDir {
 public:
  TempDir() {
    std::string pattern = "/tmp/v2integ.XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) {
      fail_errno("mkdtemp");
    }
    path_ = pattern;
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  TempDir(TempDir&&) = delete;
  TempDir& operator=(TempDir&&) = delete;
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }

  [[nodiscard]] const std::string& path() const noexcept { return path_; }
  [[nodiscard]] std::string file(std::string_view name) const {
    return path_ + "/" + std::string(name);
  }

 private:
  std::string path_;
};

/// A child process started with posix_spawn, its stdout and stderr sent to files.
class Process {
 public:
  Process() = default;
  Process(const std::vector<std::string>& argv, const std::string& stdout_path,
          const std::string& stderr_path) {
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, stdout_path.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, stderr_path.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    // The child starts with the default signal mask and dispositions, whatever the test did.
    posix_spawnattr_t attributes;
    posix_spawnattr_init(&attributes);
    sigset_t none;
    sigemptyset(&none);
    sigset_t all;
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attributes, &none);
    posix_spawnattr_setsigdefault(&attributes, &all);
    posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

    std::vector<char*> args;
    args.reserve(argv.size() + 1);
    for (const auto& arg : argv) {
      args.push_back(const_cast<char*>(arg.c_str()));
    }
    args.push_back(nullptr);
    const int rc =
        ::posix_spawn(&pid_, argv.front().c_str(), &actions, &attributes, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attributes);
    if (rc != 0) {
      pid_ = -1;
      throw std::runtime_error("posix_spawn " + argv.front() + ": " + std::strerror(rc));
    }
  }
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  Process(Process&& other) noexcept : pid_(std::exchange(other.pid_, -1)), status_(other.status_) {}
  Process& operator=(Process&& other) noexcept {
    if (this != &other) {
      kill_and_reap();
      pid_ = std::exchange(other.pid_, -1);
      status_ = other.status_;
    }
    return *this;
  }
  ~Process() { kill_and_reap(); }

  /// Takes charge of a child started some other way (fork), to kill and reap it like the rest.
  static Process adopt(pid_t pid) {
    Process process;
    process.pid_ = pid;
    return process;
  }

  [[nodiscard]] pid_t pid() const noexcept { return pid_; }

  /// True while the child has not exited (reaps it when it has).
  bool running() {
    if (pid_ < 0 || status_) {
      return false;
    }
    int status = 0;
    const pid_t done = ::waitpid(pid_, &status, WNOHANG);
    if (done == pid_) {
      status_ = status;
      return false;
    }
    return true;
  }

  void signal(int signo) const {
    if (pid_ > 0 && !status_) {
      ::kill(pid_, signo);
    }
  }

  /// The wait status once the child exited within `patience`; nothing otherwise.
  std::optional<int> wait(std::chrono::milliseconds patience = kPatience) {
    wait_until([&] { return !running(); }, patience);
    return status_;
  }

  /// The exit code, or -1 (killed by a signal, or still running after `patience`).
  int exit_code(std::chrono::milliseconds patience = kPatience) {
    const auto status = wait(patience);
    if (!status || !WIFEXITED(*status)) {
      return -1;
    }
    return WEXITSTATUS(*status);
  }

  void kill_and_reap() noexcept {
    if (pid_ > 0 && !status_) {
      ::kill(pid_, SIGKILL);
      int status = 0;
      while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
      }
      status_ = status;
    }
  }

 private:
  pid_t pid_ = -1;
  std::optional<int> status_;
};

inline sockaddr_un socket_address(const std::string& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.size() >= sizeof(address.sun_path)) {
    throw std::runtime_error("socket path too long: " + path);
  }
  std::memcpy(address.sun_path, path.data(), path.size());
  return address;
}

/// A connected socket to `path`, or -1.
inline int try_connect(const std::string& path) {
  const sockaddr_un address = socket_address(path);
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    fail_errno("socket");
  }
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

/// How to start a BrokerProcess.
struct BrokerOptions {
  std::vector<std::string> args;    ///< extra flags
  std::vector<std::string> prefix;  ///< a wrapper command (e.g. setpriv ...) before the binary
  std::string socket_path;          ///< default: DIR/broker.sock
  bool wait_ready = true;

  BrokerOptions& with_args(std::vector<std::string> flags) {
    args = std::move(flags);
    return *this;
  }
  BrokerOptions& at_path(std::string path) {
    socket_path = std::move(path);
    return *this;
  }
  BrokerOptions& with_prefix(std::vector<std::string> command) {
    prefix = std::move(command);
    return *this;
  }
  /// Returns at once, without waiting for the socket (for brokers expected to fail).
  BrokerOptions& no_wait() {
    wait_ready = false;
    return *this;
  }
};

/// The v2broker binary running on a socket in a temporary directory, its log in that directory.
class BrokerProcess {
 public:
  using Options = BrokerOptions;

  explicit BrokerProcess(const TempDir& dir, Options options = {})
      : socket_path_(options.socket_path.empty() ? dir.file("broker.sock") : options.socket_path),
        log_path_(dir.file("broker" + std::to_string(next_index()) + ".log")) {
    std::vector<std::string> argv = options.prefix;
    argv.emplace_back(V2BROKER_PATH);
    argv.push_back("--socket=" + socket_path_);
    argv.insert(argv.end(), options.args.begin(), options.args.end());
    process_ = Process(argv, log_path_ + ".out", log_path_);
    if (options.wait_ready) {
      wait_ready();
    }
  }

  /// Waits until the socket accepts connections; throws (with the log) if the broker exits.
  void wait_ready() {
    const bool ready = wait_until([&] {
      if (!process_.running()) {
        return true;
      }
      const int fd = try_connect(socket_path_);
      if (fd >= 0) {
        ::close(fd);
        return true;
      }
      return false;
    });
    if (!ready || !process_.running()) {
      throw std::runtime_error("v2broker did not start; log:\n" + log());
    }
  }

  [[nodiscard]] const std::string& socket_path() const noexcept { return socket_path_; }
  [[nodiscard]] pid_t pid() const noexcept { return process_.pid(); }
  /// What the broker wrote to stderr (its log), then to stdout.
  [[nodiscard]] std::string log() const {
    return read_file(log_path_) + read_file(log_path_ + ".out");
  }
  Process& process() noexcept { return process_; }
  bool running() { return process_.running(); }
  void signal(int signo) const { process_.signal(signo); }
  int exit_code(std::chrono::milliseconds patience = kPatience) {
    return process_.exit_code(patience);
  }

 private:
  static int next_index() {
    static int index = 0;
    return index++;
  }

  std::string socket_path_;
  std::string log_path_;
  Process process_;
};

/// Raised when the broker closed the connection.
struct HungUp : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// One raw connection to the broker in one framing. Messages read while waiting for a reply are
/// kept for receive(). Not thread-safe, except that one thread may send while another receives.
class Peer {
 public:
  Peer(const std::string& socket_path, wire::Framing framing) : framing_(framing) {
    fd_ = try_connect(socket_path);
    if (fd_ < 0) {
      fail_errno("connect " + socket_path);
    }
    wire::DecoderConfig config;
    config.framing = framing;
    decoder_ = wire::Decoder(config);
  }
  Peer(const Peer&) = delete;
  Peer& operator=(const Peer&) = delete;
  Peer(Peer&&) = delete;
  Peer& operator=(Peer&&) = delete;
  ~Peer() { close(); }

  [[nodiscard]] int fd() const noexcept { return fd_; }
  [[nodiscard]] wire::Framing framing() const noexcept { return framing_; }

  void close() noexcept {
    if (fd_ >= 0) {
      ::close(std::exchange(fd_, -1));
    }
  }

  /// Writes all of `bytes`; throws HungUp when the broker closed the connection.
  void send_bytes(std::string_view bytes) const {
    while (!bytes.empty()) {
      const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) {
          continue;
        }
        if (errno == EPIPE || errno == ECONNRESET) {
          throw HungUp("send: the broker closed the connection");
        }
        fail_errno("send");
      }
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
  }

  /// Encodes `message` in this connection's framing and sends it.
  void send(const Message& message) {
    std::string out;
    const auto result = wire::encode(message, framing_, out);
    if (!result.ok()) {
      throw std::runtime_error("encode: " + result.text);
    }
    send_bytes(out);
  }

  /// The next message within `patience`; nothing on timeout. Throws HungUp at end of stream.
  std::optional<Message> receive(std::chrono::milliseconds patience = kPatience) {
    if (!inbox_.empty()) {
      Message first = std::move(inbox_.front());
      inbox_.pop_front();
      return first;
    }
    const auto deadline = Clock::now() + patience;
    for (;;) {
      Message message;
      wire::ProtocolError error;
      const auto status = decoder_.poll(message, error);
      if (status == wire::DecodeStatus::message) {
        return message;
      }
      if (status == wire::DecodeStatus::error) {
        throw std::runtime_error("the broker sent bytes the codec refused: " + error.text);
      }
      if (!wait_readable(deadline)) {
        if (Clock::now() >= deadline) {
          return std::nullopt;
        }
        continue;
      }
      auto space = decoder_.writable(std::size_t{64} * 1024);
      const ssize_t n = ::read(fd_, space.data(), space.size());
      if (n > 0) {
        decoder_.commit(static_cast<std::size_t>(n));
        continue;
      }
      if (n == 0 || errno == ECONNRESET) {
        throw HungUp("read: the broker closed the connection");
      }
      if (errno != EINTR && errno != EAGAIN) {
        fail_errno("read");
      }
    }
  }

  /// True when the broker closes the connection within `patience`; messages before the end
  /// of the stream are kept for receive().
  bool wait_hang_up(std::chrono::milliseconds patience = kPatience) {
    const auto deadline = Clock::now() + patience;
    std::deque<Message> seen;
    bool hung_up = false;
    try {
      while (Clock::now() < deadline) {
        if (auto message = read_one(deadline)) {
          seen.push_back(std::move(*message));
        }
      }
    } catch (const HungUp&) {
      hung_up = true;
    }
    for (auto& message : seen) {
      inbox_.push_back(std::move(message));
    }
    return hung_up;
  }

  /// Waits for the message whose correlation id is `correlation_id`, keeping the others.
  Message wait_for(std::string_view correlation_id,
                   std::chrono::milliseconds patience = kPatience) {
    for (auto it = inbox_.begin(); it != inbox_.end(); ++it) {
      if (it->correlation_id == correlation_id) {
        Message found = std::move(*it);
        inbox_.erase(it);
        return found;
      }
    }
    const auto deadline = Clock::now() + patience;
    while (Clock::now() < deadline) {
      auto message = read_one(deadline);
      if (!message) {
        break;
      }
      if (message->correlation_id == correlation_id) {
        return std::move(*message);
      }
      inbox_.push_back(std::move(*message));
    }
    throw std::runtime_error("no reply with correlation_id=" + std::string(correlation_id));
  }

  /// Calls a broker method and returns the reply (response or error).
  Message call(std::string_view method, std::string_view payload_json = {},
               std::chrono::milliseconds patience = kPatience) {
    Message request;
    request.type = MessageType::request;
    request.id = std::string(method);
    request.target = "broker";
    request.correlation_id = next_correlation_id();
    if (!payload_json.empty()) {
      request.payload = Payload::copy_of(payload_json);
    }
    send(request);
    return wait_for(request.correlation_id, patience);
  }

  /// RPCRegister; returns the reply.
  Message register_name(std::string_view name) {
    return call("RPCRegister", R"({"name":")" + std::string(name) + R"("})");
  }

  /// The next NDJSON line parsed as JSON by nlohmann::json, bypassing the wire codec (for
  /// replies the codec itself would refuse); nothing on timeout. Throws HungUp at end of stream.
  /// Once used, read this peer only with receive_line() and call_line().
  std::optional<nlohmann::json> receive_line(std::chrono::milliseconds patience = kPatience) {
    if (framing_ != wire::Framing::ndjson || decoder_.buffered_bytes() != 0 || !inbox_.empty()) {
      throw std::logic_error("receive_line needs an NDJSON peer with nothing decoded pending");
    }
    const auto deadline = Clock::now() + patience;
    for (;;) {
      if (const auto end = raw_.find('\n'); end != std::string::npos) {
        std::string line = raw_.substr(0, end);
        raw_.erase(0, end + 1);
        return nlohmann::json::parse(line);
      }
      if (!wait_readable(deadline)) {
        if (Clock::now() >= deadline) {
          return std::nullopt;
        }
        continue;
      }
      char chunk[64 * 1024];
      const ssize_t n = ::read(fd_, chunk, sizeof(chunk));
      if (n > 0) {
        raw_.append(chunk, static_cast<std::size_t>(n));
      } else if (n == 0 || errno == ECONNRESET) {
        throw HungUp("read: the broker closed the connection");
      } else if (errno != EINTR && errno != EAGAIN) {
        fail_errno("read");
      }
    }
  }

  /// Calls a broker method and returns the reply line parsed by nlohmann::json (see
  /// receive_line); lines that are not the reply are dropped.
  nlohmann::json call_line(std::string_view method) {
    const std::string correlation_id = next_correlation_id();
    send_bytes(R"({"type":"request","target":"broker","id":")" + std::string(method) +
               R"(","correlation_id":")" + correlation_id + "\"}\n");
    for (;;) {
      auto line = receive_line();
      if (!line) {
        throw std::runtime_error("no reply to " + std::string(method));
      }
      if (line->value("correlation_id", "") == correlation_id) {
        return *line;
      }
    }
  }

  static std::string next_correlation_id() {
    static std::atomic<std::uint64_t> counter{0};
    return "c" + std::to_string(::getpid()) + "-" + std::to_string(counter.fetch_add(1));
  }

 private:
  // Waits for input until `deadline`; false when none came (timeout or EINTR).
  [[nodiscard]] bool wait_readable(Clock::time_point deadline) const {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    pollfd p{fd_, POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(std::max<std::int64_t>(0, left.count())));
    if (ready < 0 && errno != EINTR) {
      fail_errno("poll");
    }
    return ready > 0;
  }

  // One message from the socket (ignoring the inbox), nothing at the deadline.
  std::optional<Message> read_one(Clock::time_point deadline) {
    std::deque<Message> kept;
    std::swap(kept, inbox_);
    std::optional<Message> message;
    try {
      message = receive(std::chrono::duration_cast<std::chrono::milliseconds>(
          std::max(deadline - Clock::now(), Clock::duration::zero())));
    } catch (...) {
      std::swap(kept, inbox_);
      throw;
    }
    std::swap(kept, inbox_);
    return message;
  }

  int fd_ = -1;
  wire::Framing framing_;
  wire::Decoder decoder_;
  std::deque<Message> inbox_;
  std::string raw_;  // bytes read by receive_line()
};

/// A message of `type` from the caller to `target`.
inline Message make_message(MessageType type, std::string target, std::string id,
                            std::string_view payload = {}, std::string correlation_id = {}) {
  Message message;
  message.type = type;
  message.target = std::move(target);
  message.id = std::move(id);
  message.correlation_id = std::move(correlation_id);
  if (!payload.empty()) {
    message.payload = Payload::copy_of(payload);
  }
  return message;
}

/// Writes all of `bytes` to `fd` with write(2) alone, so a forked child of a process that may
/// have threads can use it before exec or _exit (async-signal-safe). Stops at an error.
inline void write_all_raw(int fd, std::string_view bytes) noexcept {
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return;
    }
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
}

/// Open descriptors of `pid`, from /proc/PID/fd; -1 if unreadable.
inline long fd_count(pid_t pid) {
  std::error_code error;
  long count = 0;
  for (std::filesystem::directory_iterator it("/proc/" + std::to_string(pid) + "/fd", error), end;
       !error && it != end; it.increment(error)) {
    ++count;
  }
  return error ? -1 : count;
}

/// VmRSS of `pid` in KiB, from /proc/PID/status; -1 if unreadable.
inline long rss_kib(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      return std::strtol(line.c_str() + 6, nullptr, 10);
    }
  }
  return -1;
}

}  // namespace v2::integration

namespace v2::integration {

/// The payload of `message` parsed as JSON (null when empty).
inline nlohmann::json payload_json(const Message& message) {
  if (message.payload.empty()) {
    return nullptr;
  }
  return nlohmann::json::parse(message.payload.view());
}

/// The "processes" array of RPCListProcesses, called through `peer`.
inline nlohmann::json list_processes(Peer& peer) {
  return payload_json(peer.call("RPCListProcesses"))["processes"];
}

/// This test binary in its receiver mode (see main.cpp): registered as `name` once it returns.
inline Process start_receiver_process(const TempDir& dir, const std::string& socket_path,
                                      const std::string& name) {
  const std::string out = dir.file("receiver-" + name + ".out");
  const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  Process child({self, "--v2-receiver", socket_path, name}, out, out + ".err");
  if (!wait_until([&] { return read_file(out) == "ready\n" || !child.running(); }) ||
      !child.running()) {
    throw std::runtime_error("receiver " + name + " did not start: " + read_file(out + ".err"));
  }
  return child;
}

/// Two registered peers, one per framing, that show at any moment that routing still works:
/// the bystanders of tests that feed the broker something bad.
class Bystanders {
 public:
  explicit Bystanders(const std::string& socket_path, const std::string& text_name = "ping",
                      const std::string& binary_name = "pong")
      : text_name_(text_name),
        binary_name_(binary_name),
        text_(socket_path, wire::Framing::ndjson),
        binary_(socket_path, wire::Framing::binary) {
    EXPECT_EQ(text_.register_name(text_name).type, MessageType::response);
    EXPECT_EQ(binary_.register_name(binary_name).type, MessageType::response);
  }

  /// A request one way and its response back; true when both arrived intact.
  bool exchange(int round) {
    const std::string payload = R"({"round":)" + std::to_string(round) + "}";
    const std::string correlation_id = "b-" + std::to_string(round);
    text_.send(make_message(MessageType::request, binary_name_, "q", payload, correlation_id));
    const auto request = binary_.receive();
    if (!request || request->payload.view() != payload || request->source != text_name_) {
      return false;
    }
    binary_.send(make_message(MessageType::response, text_name_, "q", payload, correlation_id));
    const auto response = text_.receive();
    return response && response->type == MessageType::response &&
           response->correlation_id == correlation_id && response->payload.view() == payload;
  }

  /// True when nothing arrived for either peer within `patience`.
  bool nothing_arrived(std::chrono::milliseconds patience = 100ms) {
    return !text_.receive(patience).has_value() && !binary_.receive(patience).has_value();
  }

  Peer& text() noexcept { return text_; }
  Peer& binary() noexcept { return binary_; }

 private:
  std::string text_name_;
  std::string binary_name_;
  Peer text_;
  Peer binary_;
};

}  // namespace v2::integration
