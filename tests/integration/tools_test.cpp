// The shipped clients end to end against the real daemon: v2ctl and the Python example.

#include <gtest/gtest.h>
#include <pty.h>
#include <sys/ioctl.h>

#include <string>
#include <vector>

#include "broker_process.hpp"

namespace v2::integration {
namespace {

using nlohmann::json;
using wire::Framing;

// Runs a command to completion; returns its exit code, with stdout in `out`.
int run(const TempDir& dir, const std::vector<std::string>& argv, std::string& out,
        std::string* err = nullptr) {
  static int index = 0;
  const std::string stdout_path = dir.file("run" + std::to_string(index) + ".out");
  const std::string stderr_path = dir.file("run" + std::to_string(index) + ".err");
  ++index;
  Process process(argv, stdout_path, stderr_path);
  const int code = process.exit_code();
  out = read_file(stdout_path);
  if (err != nullptr) {
    *err = read_file(stderr_path);
  }
  return code;
}

bool is_registered(const std::string& socket_path, const std::string& name) {
  Peer peer(socket_path, Framing::ndjson);
  for (const json& process : list_processes(peer)) {
    for (const json& held : process["names"]) {
      if (held == name) {
        return true;
      }
    }
  }
  return false;
}

TEST(BrokerTools, V2ctlListenSendCallStatsAndStatus) {
#ifndef V2CTL_PATH
  GTEST_SKIP() << "v2ctl is not built";
#else
  const std::string v2ctl = V2CTL_PATH;
  TempDir dir;
  BrokerProcess broker(dir);
  const std::string socket = "--socket=" + broker.socket_path();

  const std::string listen_out = dir.file("listen.out");
  Process listener({v2ctl, socket, "listen", "listener"}, listen_out, listen_out + ".err");
  ASSERT_TRUE(wait_until([&] { return is_registered(broker.socket_path(), "listener"); }))
      << read_file(listen_out + ".err");

  std::string out;
  std::string err;
  EXPECT_EQ(run(dir,
                {v2ctl, socket, "send", "--to", "listener", "--id", "greet", "--as", "ctl",
                 "--payload", R"({"a": [1, 2]})"},
                out, &err),
            0)
      << err;
  EXPECT_EQ(run(dir,
                {v2ctl, socket, "--framing", "binary", "send", "--to", "listener", "--id",
                 "greet-binary", "--payload", R"({"b":true})"},
                out, &err),
            0)
      << err;
  ASSERT_TRUE(wait_until([&] {
    const std::string text = read_file(listen_out);
    return std::count(text.begin(), text.end(), '\n') >= 2;
  })) << read_file(listen_out);
  {
    std::istringstream lines(read_file(listen_out));
    std::string line;
    std::getline(lines, line);
    const json first = json::parse(line);
    EXPECT_EQ(first["id"], "greet");
    EXPECT_EQ(first["source"], "ctl");
    EXPECT_EQ(first["target"], "listener");
    EXPECT_EQ(first["payload"], json::parse(R"({"a": [1, 2]})"));
    std::getline(lines, line);
    const json second = json::parse(line);
    EXPECT_EQ(second["id"], "greet-binary");
    EXPECT_EQ(second["payload"], json::parse(R"({"b":true})"));
  }

  ASSERT_EQ(run(dir, {v2ctl, socket, "call", "RPCListProcesses", "--json"}, out, &err), 0) << err;
  bool listed = false;
  const json processes = json::parse(out)["processes"];
  for (const json& process : processes) {
    listed = listed ||
             (process["names"] == json::array({"listener"}) && process["pid"] == listener.pid());
  }
  EXPECT_TRUE(listed) << out;

  ASSERT_EQ(run(dir, {v2ctl, socket, "stats", "--json"}, out, &err), 0) << err;
  const json stats = json::parse(out);
  EXPECT_TRUE(stats["message_stats"]["total"]["total_received"].is_number()) << out;
  EXPECT_TRUE(stats["kernel_metrics"]["active_workers"].is_number()) << out;
  EXPECT_EQ(run(dir, {v2ctl, socket, "stats"}, out, &err), 0) << err;
  EXPECT_FALSE(out.empty());

  ASSERT_EQ(run(dir, {v2ctl, socket, "status", "--json"}, out, &err), 0) << err;
  EXPECT_TRUE(json::parse(out)["threads"].is_array()) << out;
  EXPECT_EQ(run(dir, {v2ctl, socket, "status"}, out, &err), 0) << err;

  // Error replies exit 1; no broker exits 3.
  EXPECT_EQ(run(dir, {v2ctl, socket, "send", "--to", "nobody", "--wait"}, out, &err), 1) << err;
  EXPECT_EQ(json::parse(out)["type"], "error") << out;
  EXPECT_EQ(run(dir, {v2ctl, socket, "call", "RPCNoSuchMethod"}, out, &err), 1) << err;
  EXPECT_EQ(run(dir, {v2ctl, "--socket=" + dir.file("none.sock"), "stats"}, out, &err), 3) << err;

  listener.signal(SIGTERM);
  EXPECT_EQ(listener.exit_code(), 0) << read_file(listen_out + ".err");
#endif
}

TEST(BrokerTools, PythonExampleServesAndCallsThroughTheBroker) {
  const std::string python = V2_PYTHON_PATH;
  const std::string example = V2_PYTHON_EXAMPLE_PATH;
  if (python.empty()) {
    GTEST_SKIP() << "no Python 3 interpreter was found when configuring";
  }
  if (!std::filesystem::exists(example)) {
    GTEST_SKIP() << "the Python example " << example << " does not exist";
  }
  TempDir dir;
  BrokerProcess broker(dir);
  const std::string serve_out = dir.file("serve.out");
  Process server({python, example, "--socket", broker.socket_path(), "--serve", "echo"}, serve_out,
                 serve_out + ".err");
  ASSERT_TRUE(wait_until([&] { return is_registered(broker.socket_path(), "echo"); }))
      << read_file(serve_out + ".err");

  std::string out;
  std::string err;
  ASSERT_EQ(run(dir,
                {python, example, "--socket", broker.socket_path(), "--service", "echo", "--name",
                 "caller", "--payload", R"({"hello": "world", "n": [1, 2]})"},
                out, &err),
            0)
      << err;
  EXPECT_EQ(json::parse(out), json::parse(R"({"hello": "world", "n": [1, 2]})")) << out;
  ASSERT_TRUE(wait_until([&] { return !read_file(serve_out).empty(); }));
  const json served = json::parse(read_file(serve_out).substr(0, read_file(serve_out).find('\n')));
  EXPECT_EQ(served["source"], "caller");
  EXPECT_EQ(served["type"], "request");

  // A C++ peer can call the Python service too, in the binary framing.
  Peer peer(broker.socket_path(), Framing::binary);
  ASSERT_EQ(peer.register_name("cpp").type, MessageType::response);
  peer.send(make_message(MessageType::request, "echo", "echo", R"({"from":"cpp"})", "py-1"));
  const Message answer = peer.wait_for("py-1");
  EXPECT_EQ(answer.type, MessageType::response);
  EXPECT_EQ(answer.source, "echo");
  EXPECT_EQ(payload_json(answer), json::parse(R"({"from":"cpp"})"));

  EXPECT_EQ(run(dir, {python, example, "--socket", broker.socket_path(), "--service", "nobody"},
                out, &err),
            1)
      << err;
  EXPECT_EQ(run(dir, {python, example, "--socket", dir.file("none.sock"), "--service", "echo"}, out,
                &err),
            2)
      << err;

  server.signal(SIGTERM);
  EXPECT_EQ(server.exit_code(), 0) << read_file(serve_out + ".err");
}

#ifdef V2CTL_PATH

// The lines of `text` from the one starting with `title` up to the next empty line.
std::vector<std::string> section(const std::string& text, std::string_view title) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  std::string line;
  bool inside = false;
  while (std::getline(in, line)) {
    if (!inside && line.rfind(title, 0) == 0) {
      inside = true;
    }
    if (inside) {
      if (line.empty()) {
        break;
      }
      lines.push_back(line);
    }
  }
  return lines;
}

std::vector<std::string> words(const std::string& line) {
  std::istringstream in(line);
  std::vector<std::string> out;
  for (std::string word; in >> word;) {
    out.push_back(word);
  }
  return out;
}

std::size_t occurrences(std::string_view text, std::string_view what) {
  std::size_t count = 0;
  for (auto at = text.find(what); at != std::string_view::npos; at = text.find(what, at + 1)) {
    ++count;
  }
  return count;
}

// Text as a terminal shows it: escape sequences (ESC [ ... final byte) and carriage returns
// left out.
std::string visible(std::string_view text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\x1b' && i + 1 < text.size() && text[i + 1] == '[') {
      i += 2;
      while (i < text.size() && (text[i] < 0x40 || text[i] > 0x7e)) {
        ++i;
      }
      continue;
    }
    if (text[i] != '\r') {
      out.push_back(text[i]);
    }
  }
  return out;
}

// A command on a pseudo-terminal of `columns` x `rows` (stdin, stdout and the controlling
// terminal), its stderr sent to a file. Output is read only while the test waits for it.
class TerminalProcess {
 public:
  TerminalProcess(const std::vector<std::string>& argv, unsigned short columns, unsigned short rows,
                  const std::string& stderr_path) {
    std::vector<char*> args;
    args.reserve(argv.size() + 1);
    for (const auto& arg : argv) {
      args.push_back(const_cast<char*>(arg.c_str()));
    }
    args.push_back(nullptr);
    winsize size{};
    size.ws_col = columns;
    size.ws_row = rows;
    pid_ = ::forkpty(&master_, nullptr, nullptr, &size);
    if (pid_ < 0) {
      fail_errno("forkpty");
    }
    if (pid_ == 0) {
      // Only async-signal-safe calls between fork and exec.
      const int err = ::open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (err >= 0) {
        ::dup2(err, STDERR_FILENO);
      }
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
  }
  TerminalProcess(const TerminalProcess&) = delete;
  TerminalProcess& operator=(const TerminalProcess&) = delete;
  TerminalProcess(TerminalProcess&&) = delete;
  TerminalProcess& operator=(TerminalProcess&&) = delete;
  ~TerminalProcess() {
    if (!status_) {
      ::kill(pid_, SIGKILL);
      int status = 0;
      while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
      }
    }
    ::close(master_);
  }

  [[nodiscard]] const std::string& output() const noexcept { return output_; }
  [[nodiscard]] pid_t pid() const noexcept { return pid_; }

  void type(std::string_view keys) const {
    ASSERT_EQ(::write(master_, keys.data(), keys.size()), static_cast<ssize_t>(keys.size()));
  }

  void signal(int signo) const { ::kill(pid_, signo); }

  // Reads output until `done(output)` holds or `patience` passes; returns done's last answer.
  template <typename Predicate>
  bool wait_output(Predicate done, std::chrono::milliseconds patience = kPatience) {
    const auto deadline = Clock::now() + patience;
    while (!done(output_)) {
      if (Clock::now() >= deadline || !read_some(deadline)) {
        return done(output_);
      }
    }
    return true;
  }

  // Reads the rest of the output, then returns the exit code (-1: killed, or still running
  // after `patience`).
  int exit_code(std::chrono::milliseconds patience = kPatience) {
    const auto deadline = Clock::now() + patience;
    while (Clock::now() < deadline && read_some(deadline)) {
    }
    wait_until(
        [&] {
          int status = 0;
          if (::waitpid(pid_, &status, WNOHANG) == pid_) {
            status_ = status;
          }
          return status_.has_value();
        },
        std::chrono::duration_cast<std::chrono::milliseconds>(
            std::max(deadline - Clock::now(), Clock::duration::zero())));
    return status_ && WIFEXITED(*status_) ? WEXITSTATUS(*status_) : -1;
  }

 private:
  // False once the terminal is closed on the child's side (it exited) or at the deadline.
  bool read_some(Clock::time_point deadline) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    pollfd p{master_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(std::max<std::int64_t>(0, left.count()))) <= 0) {
      return false;
    }
    char chunk[16 * 1024];
    const ssize_t n = ::read(master_, chunk, sizeof chunk);
    if (n <= 0) {
      return errno == EINTR || errno == EAGAIN;  // EIO: no process has the terminal open
    }
    output_.append(chunk, static_cast<std::size_t>(n));
    return true;
  }

  int master_ = -1;
  pid_t pid_ = -1;
  std::optional<int> status_;
  std::string output_;
};

constexpr std::string_view kClearHome = "\x1b[H\x1b[2J";
constexpr std::string_view kHideCursor = "\x1b[?25l";
constexpr std::string_view kShowCursor = "\x1b[?25h";

// The cursor was hidden while the view ran, and the last thing written shows it again.
void expect_terminal_restored(const std::string& output) {
  EXPECT_NE(output.find(kHideCursor), std::string::npos);
  ASSERT_GE(output.size(), kShowCursor.size());
  EXPECT_EQ(output.substr(output.size() - kShowCursor.size()), kShowCursor)
      << "the output does not end by showing the cursor";
}

TEST(BrokerTools, V2ctlTopOncePrintsCountsWorkersConnectionsAndTuning) {
  const std::string v2ctl = V2CTL_PATH;
  TempDir dir;
  BrokerProcess broker(dir, BrokerProcess::Options().with_args({"--workers=3"}));

  Peer sink(broker.socket_path(), Framing::ndjson);
  Peer source(broker.socket_path(), Framing::binary);
  ASSERT_EQ(sink.register_name("sink").type, MessageType::response);
  ASSERT_EQ(source.register_name("source").type, MessageType::response);
  for (int i = 0; i < 7; ++i) {
    source.send(make_message(MessageType::event, "sink", "tick", R"({"i":1})"));
  }
  for (int i = 0; i < 2; ++i) {
    Message error = make_message(MessageType::error, "sink", "oops");
    error.error = "broken";
    source.send(error);
  }
  for (int i = 0; i < 4; ++i) {
    sink.send(make_message(MessageType::response, "source", "answer", R"({"ok":true})"));
  }
  for (int i = 0; i < 9; ++i) {
    ASSERT_TRUE(sink.receive().has_value()) << "message " << i << " did not reach sink";
  }
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(source.receive().has_value()) << "response " << i << " did not reach source";
  }

  std::string out;
  std::string err;
  ASSERT_EQ(
      run(dir, {v2ctl, "top", "--socket", broker.socket_path(), "--once", "--interval", "200ms"},
          out, &err),
      0)
      << err;
  EXPECT_EQ(out.find('\x1b'), std::string::npos) << "escape codes in a plain snapshot:\n" << out;
  EXPECT_NE(out.find("v2broker pid " + std::to_string(broker.pid()) + ", up "), std::string::npos)
      << out;
  EXPECT_NE(out.find("connections 3, names 2: sink, source"), std::string::npos) << out;

  // Messages by type, received from clients: exactly what was sent, besides broker calls.
  const auto messages = section(out, "messages");
  ASSERT_GE(messages.size(), 3U) << out;
  EXPECT_EQ(words(messages[0]),
            (std::vector<std::string>{"messages", "received", "routed", "delivered", "request",
                                      "response", "event", "error"}));
  const auto totals = words(messages[2]);
  ASSERT_EQ(totals.size(), 8U) << messages[2];
  EXPECT_EQ(totals[0], "total");
  EXPECT_EQ(totals[5], "4") << messages[2];
  EXPECT_EQ(totals[6], "7") << messages[2];
  EXPECT_EQ(totals[7], "2") << messages[2];
  EXPECT_GE(std::stoull(totals[4]), 2U) << "the two RPCRegister calls are requests";
  EXPECT_EQ(words(messages[1])[0], "per");

  // One line per worker; together they routed what the broker reports as routed.
  const auto workers = section(out, "workers");
  ASSERT_EQ(workers.size(), 5U) << out;
  EXPECT_EQ(words(workers[0])[1], "3,") << workers[0];
  std::uint64_t routed = 0;
  for (std::size_t i = 0; i < 3; ++i) {
    const auto row = words(workers[2 + i]);
    ASSERT_GE(row.size(), 7U) << workers[2 + i];
    EXPECT_EQ(row[0] + " " + row[1], "worker " + std::to_string(i));
    routed += std::stoull(row[6]);
  }
  EXPECT_EQ(routed, std::stoull(totals[2])) << out;
  EXPECT_NE(out.find("<- busiest"), std::string::npos) << "this view's own calls are routed";

  // Each connection with its names, the view's own marked.
  const auto connections = section(out, "connection ");
  ASSERT_EQ(connections.size(), 4U) << out;
  bool sink_listed = false;
  bool source_listed = false;
  for (const auto& line : connections) {
    const auto row = words(line);
    if (row.back() == "sink") {
      sink_listed = true;
      EXPECT_EQ(row[4], "9") << "7 events and 2 errors were delivered to it";
      EXPECT_EQ(row[7], "ndjson");
    }
    if (row.back() == "source") {
      source_listed = true;
      EXPECT_EQ(row[3], "10") << "it sent 9 messages and its registration";
      EXPECT_EQ(row[4], "4") << "4 responses were delivered to it";
      EXPECT_EQ(row[7], "binary");
    }
  }
  EXPECT_TRUE(sink_listed && source_listed) << out;
  EXPECT_NE(out.find("(this view)"), std::string::npos) << out;

  // One tuning line per thread of the broker's report, with its tid and what is in force.
  Peer observer(broker.socket_path(), Framing::ndjson);
  const json status = payload_json(observer.call("RPCGetTuningStatus"));
  const auto tuning = section(out, "tuning");
  ASSERT_EQ(tuning.size(), 3 + status["threads"].size()) << out;
  for (const json& thread : status["threads"]) {
    const std::string name = thread["name"];
    const std::string tid = std::to_string(thread["tid"].get<long>());
    // By name and tid: sanitizer runtimes add threads named like the main thread.
    const auto it = std::find_if(tuning.begin(), tuning.end(), [&](const std::string& line) {
      return line.rfind("  " + name + " ", 0) == 0 && words(line).at(1) == tid;
    });
    ASSERT_NE(it, tuning.end()) << "no line for thread " << name << "\n" << out;
    const auto row = words(*it);
    EXPECT_EQ(row[1], std::to_string(thread["tid"].get<long>())) << *it;
    EXPECT_EQ(row[2],
              thread.contains("worker") ? std::to_string(thread["worker"].get<int>()) : "-");
    if (thread["nice"]["outcome"] == "applied") {
      EXPECT_EQ(row[4], std::to_string(thread["nice"]["in_force"].get<int>())) << *it;
    }
  }
  if (status["fully_applied"] == true) {
    EXPECT_EQ(tuning[0], "tuning      every requested tuning is in force");
  }
}

TEST(BrokerTools, V2ctlTopSaysWhichTuningIsNotInForceAndWhy) {
  if (!std::filesystem::exists("/usr/bin/setpriv")) {
    GTEST_SKIP() << "setpriv (util-linux) is not installed";
  }
  if (::geteuid() != 0) {
    GTEST_SKIP() << "needs root to run the broker as user nobody";
  }
  const std::string v2ctl = V2CTL_PATH;
  TempDir dir;
  ASSERT_EQ(::chown(dir.path().c_str(), 65534, 65534), 0);
  BrokerProcess broker(
      dir, BrokerProcess::Options().with_prefix({"/usr/bin/setpriv", "--reuid=65534",
                                                 "--regid=65534", "--clear-groups",
                                                 "--inh-caps=-all", "--bounding-set=-all", "--"}));
  Peer observer(broker.socket_path(), Framing::ndjson);
  const json status = payload_json(observer.call("RPCGetTuningStatus"));
  ASSERT_EQ(status["fully_applied"], false) << status.dump();

  std::string out;
  std::string err;
  ASSERT_EQ(
      run(dir, {v2ctl, "--socket", broker.socket_path(), "top", "--once", "--interval", "100ms"},
          out, &err),
      0)
      << err;
  const auto tuning = section(out, "tuning");
  ASSERT_FALSE(tuning.empty()) << out;
  EXPECT_EQ(tuning[0], "tuning      NOT every requested tuning is in force");
  EXPECT_NE(tuning[1].find("cap_sys_nice not effective"), std::string::npos) << tuning[1];
  // Every thread asked for nice -10 and got 0; one reason line says why, naming each thread.
  const json& first = status["threads"][0];
  const std::string why = "  why nice " + first["nice"]["outcome"].get<std::string>() + " (" +
                          first["nice"]["errno"].get<std::string>() + ") on ";
  const auto line = std::find_if(tuning.begin(), tuning.end(),
                                 [&](const std::string& text) { return text.rfind(why, 0) == 0; });
  ASSERT_NE(line, tuning.end()) << "no line starting with '" << why << "'\n" << out;
  EXPECT_NE(line->find(first["nice"]["detail"].get<std::string>()), std::string::npos) << *line;
  for (const json& thread : status["threads"]) {
    EXPECT_NE(line->find(thread["name"].get<std::string>()), std::string::npos) << *line;
    const std::string name = thread["name"];
    const auto row = std::find_if(tuning.begin(), tuning.end(), [&](const std::string& text) {
      return text.rfind("  " + name + " ", 0) == 0;
    });
    ASSERT_NE(row, tuning.end()) << out;
    EXPECT_NE(row->find("-10->0 [" + thread["nice"]["outcome"].get<std::string>() + "]"),
              std::string::npos)
        << *row;
  }
}

TEST(BrokerTools, V2ctlTopOnATerminalRedrawsInPlaceFitsTheWidthAndRestoresTheCursor) {
  const std::string v2ctl = V2CTL_PATH;
  TempDir dir;
  BrokerProcess broker(dir);
  constexpr unsigned short kColumns = 60;
  constexpr unsigned short kRows = 50;

  {
    TerminalProcess top({v2ctl, "top", "--socket", broker.socket_path(), "--interval", "200ms"},
                        kColumns, kRows, dir.file("top-q.err"));
    // A few refreshes: each frame starts at the home position.
    ASSERT_TRUE(top.wait_output([](const std::string& out) {
      return occurrences(out, "\x1b[H") >= 4;
    })) << visible(top.output())
        << read_file(dir.file("top-q.err"));
    top.type("q");
    EXPECT_EQ(top.exit_code(), 0) << read_file(dir.file("top-q.err"));
    const std::string& output = top.output();
    EXPECT_NE(output.find(kClearHome), std::string::npos) << "the first frame clears the screen";
    expect_terminal_restored(output);

    // The last complete frame: each line cut to the terminal's width, none wrapped.
    const auto last = output.rfind("\x1b[H");
    const std::string frame = visible(output.substr(last, output.rfind("\x1b[J") - last));
    EXPECT_NE(frame.find("v2broker pid"), std::string::npos) << frame;
    EXPECT_NE(frame.find("  worker 0"), std::string::npos) << frame;
    std::size_t lines = 0;
    for (std::size_t begin = 0; begin < frame.size();) {
      const auto end = std::min(frame.find('\n', begin), frame.size());
      EXPECT_LE(end - begin, std::size_t{kColumns}) << frame.substr(begin, end - begin);
      begin = end + 1;
      ++lines;
    }
    EXPECT_LE(lines, std::size_t{kRows});
  }

  // Ctrl-C on the terminal and SIGTERM end the view as q does.
  for (const bool interrupt : {true, false}) {
    SCOPED_TRACE(interrupt ? "Ctrl-C" : "SIGTERM");
    const std::string err = dir.file(interrupt ? "top-int.err" : "top-term.err");
    TerminalProcess top({v2ctl, "top", "--socket", broker.socket_path(), "--interval", "200ms"},
                        kColumns, kRows, err);
    ASSERT_TRUE(top.wait_output([](const std::string& out) {
      return occurrences(out, "\x1b[H") >= 2;
    })) << visible(top.output());
    if (interrupt) {
      top.type("\x03");  // the terminal turns it into SIGINT for its foreground process
    } else {
      top.signal(SIGTERM);
    }
    EXPECT_EQ(top.exit_code(), 0) << read_file(err);
    expect_terminal_restored(top.output());
  }
}

TEST(BrokerTools, V2ctlTopExitsThreeWhenTheBrokerGoesAway) {
  const std::string v2ctl = V2CTL_PATH;
  TempDir dir;
  {
    BrokerProcess broker(dir);
    TerminalProcess top({v2ctl, "top", "--socket", broker.socket_path(), "--interval", "200ms"},
                        100, 60, dir.file("top.err"));
    ASSERT_TRUE(top.wait_output([](const std::string& out) {
      return occurrences(out, "\x1b[H") >= 2;
    })) << visible(top.output());
    broker.signal(SIGTERM);
    EXPECT_EQ(broker.exit_code(), 0) << broker.log();
    EXPECT_EQ(top.exit_code(), 3) << read_file(dir.file("top.err"));
    EXPECT_NE(read_file(dir.file("top.err"))
                  .find("top: lost the broker at socket=" + broker.socket_path()),
              std::string::npos)
        << read_file(dir.file("top.err"));
    expect_terminal_restored(top.output());
  }

  // The plain snapshot too, when the broker goes away during its interval.
  BrokerProcess broker(dir);
  const std::string out_path = dir.file("once.out");
  Process top({v2ctl, "top", "--socket", broker.socket_path(), "--once", "--interval", "60s"},
              out_path, out_path + ".err");
  // Its first sample is taken once its connection has sent three calls.
  ASSERT_TRUE(wait_until([&] {
    Peer peer(broker.socket_path(), Framing::ndjson);
    const json processes = list_processes(peer);
    return std::any_of(processes.begin(), processes.end(), [&](const json& process) {
      return process["pid"] == top.pid() && process["sent"] == 3;
    });
  }));
  broker.process().kill_and_reap();
  EXPECT_EQ(top.exit_code(), 3) << read_file(out_path + ".err");
  EXPECT_NE(read_file(out_path + ".err").find("top: lost the broker"), std::string::npos)
      << read_file(out_path + ".err");
  EXPECT_EQ(read_file(out_path), "");
}

#endif  // V2CTL_PATH

TEST(BrokerTools, V2ctlTurnedAwayByTheAllowListSaysWhy) {
#ifndef V2CTL_PATH
  GTEST_SKIP() << "v2ctl is not built";
#else
  if (::geteuid() != 0 || ::access("/usr/bin/setpriv", X_OK) != 0) {
    GTEST_SKIP() << "needs root and setpriv to run v2ctl as another user";
  }
  TempDir dir;
  ASSERT_EQ(::chmod(dir.path().c_str(), 0755), 0);
  BrokerProcess broker(
      dir, BrokerProcess::Options().with_args({"--socket-mode=0666", "--allow-uid=4243"}));
  for (const char* command : {"stats", "status"}) {
    std::string out;
    std::string err;
    EXPECT_EQ(run(dir,
                  {"/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                   V2CTL_PATH, "--socket=" + broker.socket_path(), command},
                  out, &err),
              3)
        << err;
    EXPECT_NE(err.find("uid=65534 gid=65534 is not allowed to use this broker"), std::string::npos)
        << command << ": " << err;
  }
#endif
}

}  // namespace
}  // namespace v2::integration
