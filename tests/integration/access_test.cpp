// Who may connect: the socket file's group and mode, --allow-uid / --allow-gid checked against
// the credentials the kernel records at connect, and a socket passed by systemd (socket
// activation). Clients run as other users in forked children (the tests run as root).

#include <grp.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <array>
#include <cstring>
#include <regex>
#include <string>
#include <vector>

#include "broker_process.hpp"

namespace v2::integration {
namespace {

using nlohmann::json;
using wire::Framing;

constexpr uid_t kNobody = 65534;
constexpr gid_t kNogroup = 65534;
constexpr gid_t kSharedGroup = 4242;  // needs no entry in /etc/group to be a file's group
constexpr uid_t kFriend = 4243;

struct Identity {
  uid_t uid = kNobody;
  gid_t gid = kNogroup;
  std::vector<gid_t> groups;  ///< supplementary groups
};

/// What a client under another identity saw.
struct Outcome {
  int connect_errno = 0;  ///< non-zero when connect(2) failed
  bool closed = false;    ///< the broker closed the connection
  std::string said;       ///< what the broker sent
  pid_t pid = -1;         ///< the client's pid, as the broker's log names it

  [[nodiscard]] json first_line() const {
    const auto end = said.find('\n');
    return end == std::string::npos ? json() : json::parse(said.substr(0, end));
  }
};

/// Connects to `socket_path` as `who` from a forked child, sends `request` and reports what
/// came back: everything until the broker closes, or the first line and 300 ms of silence.
/// The child makes only async-signal-safe calls, as the test process may have threads.
Outcome connect_as(const Identity& who, const std::string& socket_path,
                   const std::string& request) {
  const sockaddr_un address = socket_address(socket_path);
  std::array<int, 2> pipe_fds{};
  if (::pipe2(pipe_fds.data(), O_CLOEXEC) != 0) {
    fail_errno("pipe2");
  }
  const pid_t pid = ::fork();
  if (pid < 0) {
    fail_errno("fork");
  }
  if (pid == 0) {
    const int out = pipe_fds[1];
    // A refused client may still be writing when the broker closes: see the close, not die.
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    ::sigaction(SIGPIPE, &ignore, nullptr);
    if (::setgroups(who.groups.size(), who.groups.data()) != 0 ||
        ::setresgid(who.gid, who.gid, who.gid) != 0 ||
        ::setresuid(who.uid, who.uid, who.uid) != 0) {
      ::_exit(3);
    }
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
      const int error = errno;
      write_all_raw(out, "E");
      write_all_raw(out, std::string_view(reinterpret_cast<const char*>(&error), sizeof(error)));
      ::_exit(0);
    }
    write_all_raw(fd, request);
    std::array<char, 4096> said{};
    std::size_t size = 0;
    char state = 'O';
    for (;;) {
      const bool have_line = std::memchr(said.data(), '\n', size) != nullptr;
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, have_line ? 300 : 20'000) <= 0) {
        break;
      }
      const ssize_t n = ::read(fd, said.data() + size, said.size() - size);
      if (n <= 0) {
        state = 'C';
        break;
      }
      size += static_cast<std::size_t>(n);
      if (size == said.size()) {
        break;
      }
    }
    write_all_raw(out, std::string_view(&state, 1));
    write_all_raw(out, std::string_view(said.data(), size));
    ::_exit(0);
  }
  ::close(pipe_fds[1]);
  Process child = Process::adopt(pid);
  std::string report;
  std::array<char, 4096> chunk{};
  for (ssize_t n = 0; (n = ::read(pipe_fds[0], chunk.data(), chunk.size())) != 0;) {
    if (n < 0 && errno != EINTR) {
      break;
    }
    report.append(chunk.data(), static_cast<std::size_t>(std::max<ssize_t>(n, 0)));
  }
  ::close(pipe_fds[0]);
  const int status = child.exit_code();
  if (status != 0 || report.empty()) {
    throw std::runtime_error("client as uid=" + std::to_string(who.uid) + " failed: exit status " +
                             std::to_string(status));
  }
  Outcome outcome;
  outcome.pid = pid;
  if (report[0] == 'E') {
    std::memcpy(&outcome.connect_errno, report.data() + 1, sizeof(int));
    return outcome;
  }
  outcome.closed = report[0] == 'C';
  outcome.said = report.substr(1);
  return outcome;
}

const std::string kCountRequest =
    R"({"type":"request","target":"broker","id":"RPCGetMessageCount","correlation_id":"q"})"
    "\n";

// True when the client got an answer to its broker call.
bool served(const Outcome& outcome) {
  return outcome.connect_errno == 0 && outcome.first_line().value("type", "") == "response";
}

// A temporary directory other users can pass through to reach the socket.
void open_to_others(const TempDir& dir) {
  ASSERT_EQ(::chmod(dir.path().c_str(), 0711), 0);
}

json refused_counts(const std::string& socket_path) {
  Peer root(socket_path, Framing::ndjson);
  return payload_json(root.call("RPCGetMessageStats"))["refused"];
}

std::size_t occurrences(const std::string& text, const std::string& what) {
  std::size_t count = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) {
    ++count;
  }
  return count;
}

bool needs_root() {
  return ::geteuid() != 0;
}

TEST(BrokerSocketGroup, GroupMembersConnectThroughMode0660AndOthersCannot) {
  if (needs_root()) {
    GTEST_SKIP() << "needs root to run clients as other users";
  }
  TempDir dir;
  open_to_others(dir);
  BrokerProcess broker(
      dir, BrokerProcess::Options().with_args({"--socket-mode=0660", "--socket-group=4242"}));
  struct stat info {};
  ASSERT_EQ(::lstat(broker.socket_path().c_str(), &info), 0);
  EXPECT_EQ(info.st_gid, kSharedGroup);
  EXPECT_EQ(info.st_mode & 0777, 0660U);

  const Outcome member =
      connect_as({kNobody, kNogroup, {kSharedGroup}}, broker.socket_path(), kCountRequest);
  EXPECT_TRUE(served(member)) << member.said;
  const Outcome outsider = connect_as({kNobody, kNogroup, {}}, broker.socket_path(), kCountRequest);
  EXPECT_EQ(outsider.connect_errno, EACCES) << outsider.said;
}

TEST(BrokerSocketGroup, GroupNameIsResolvedAndUnknownGroupExitsTwoBeforeBinding) {
  TempDir dir;
  const group* nogroup = ::getgrnam("nogroup");
  if (nogroup != nullptr) {
    const gid_t expected = nogroup->gr_gid;
    BrokerProcess broker(dir, BrokerProcess::Options().with_args({"--socket-group=nogroup"}));
    struct stat info {};
    ASSERT_EQ(::lstat(broker.socket_path().c_str(), &info), 0);
    EXPECT_EQ(info.st_gid, expected);
    EXPECT_EQ(info.st_mode & 0777, 0600U) << "the group alone opens nothing";
  }
  BrokerProcess unknown(dir, BrokerProcess::Options()
                                 .with_args({"--socket-group=no-such-group-v2"})
                                 .at_path(dir.file("unknown.sock"))
                                 .no_wait());
  EXPECT_EQ(unknown.exit_code(), 2);
  EXPECT_NE(unknown.log().find("--socket-group=no-such-group-v2: no such group"), std::string::npos)
      << unknown.log();
  EXPECT_FALSE(std::filesystem::exists(dir.file("unknown.sock")));
}

TEST(BrokerSocketGroup, UnprivilegedBrokerCannotGiveItsSocketToAGroupItIsNotIn) {
  if (!std::filesystem::exists("/usr/bin/setpriv") || needs_root()) {
    GTEST_SKIP() << "needs root and setpriv (util-linux) to run the broker as nobody";
  }
  TempDir dir;
  ASSERT_EQ(::chown(dir.path().c_str(), kNobody, kNogroup), 0);
  BrokerProcess broker(dir, BrokerProcess::Options()
                                .with_prefix({"/usr/bin/setpriv", "--reuid=65534", "--regid=65534",
                                              "--clear-groups", "--"})
                                .with_args({"--socket-group=4242", "--socket-mode=0660"})
                                .no_wait());
  EXPECT_NE(broker.exit_code(), 0);
  EXPECT_NE(broker.log().find("chown group=4242: EPERM"), std::string::npos) << broker.log();
  EXPECT_FALSE(std::filesystem::exists(broker.socket_path())) << "a half-made socket was left";
}

TEST(BrokerAccess, RefusedUserGetsAnErrorLineAndIsLoggedAndCountedAllowedOnesGetIn) {
  if (needs_root()) {
    GTEST_SKIP() << "needs root to run clients as other users";
  }
  TempDir dir;
  open_to_others(dir);
  BrokerProcess broker(dir, BrokerProcess::Options().with_args(
                                {"--socket-mode=0666", "--allow-uid=4243", "--allow-gid=4242"}));

  const Outcome stranger = connect_as({kNobody, kNogroup, {}}, broker.socket_path(), kCountRequest);
  ASSERT_EQ(stranger.connect_errno, 0) << "the socket mode lets everyone connect";
  EXPECT_TRUE(stranger.closed) << stranger.said;
  const json error = stranger.first_line();
  EXPECT_EQ(error.value("type", ""), "error") << stranger.said;
  EXPECT_NE(error.value("error", "").find("uid=65534 gid=65534 is not allowed"), std::string::npos)
      << stranger.said;
  EXPECT_EQ(stranger.said.find("RPCGetMessageCount"), std::string::npos)
      << "the request of a refused client must not be answered";

  EXPECT_TRUE(served(connect_as({kFriend, kNogroup, {}}, broker.socket_path(), kCountRequest)))
      << "listed uid";
  EXPECT_TRUE(served(connect_as({kNobody, kSharedGroup, {}}, broker.socket_path(), kCountRequest)))
      << "listed primary gid";
  EXPECT_TRUE(served(
      connect_as({kNobody, kNogroup, {100, kSharedGroup}}, broker.socket_path(), kCountRequest)))
      << "listed supplementary gid";

  const json refused = refused_counts(broker.socket_path());  // root: always allowed
  EXPECT_EQ(refused["connections"]["not_allowed"], 1) << refused.dump();
  EXPECT_EQ(refused["connections"]["total"], 1) << refused.dump();
  const std::string log = broker.log();
  EXPECT_NE(log.find("refused a connection from pid=" + std::to_string(stranger.pid) +
                     ": uid=65534 gid=65534"),
            std::string::npos)
      << log;
}

TEST(BrokerAccess, EveryRefusalIsCountedButTheWarningIsRateLimited) {
  if (needs_root()) {
    GTEST_SKIP() << "needs root to run clients as other users";
  }
  TempDir dir;
  open_to_others(dir);
  BrokerProcess broker(
      dir, BrokerProcess::Options().with_args({"--socket-mode=0666", "--allow-uid=4243"}));
  constexpr int kClients = 30;
  for (int i = 0; i < kClients; ++i) {
    const Outcome outcome = connect_as({kNobody, kNogroup, {}}, broker.socket_path(), "");
    EXPECT_TRUE(outcome.closed);
  }
  EXPECT_EQ(refused_counts(broker.socket_path())["connections"]["not_allowed"], kClients);
  const std::size_t warnings = occurrences(broker.log(), "refused a connection from");
  EXPECT_GE(warnings, 1U);
  EXPECT_LT(warnings, static_cast<std::size_t>(kClients)) << "one warning per refusal";
}

TEST(BrokerAccess, ListsFromTheConfigFileTakeNamesAndNumbers) {
  if (needs_root()) {
    GTEST_SKIP() << "needs root to run clients as other users";
  }
  TempDir dir;
  open_to_others(dir);
  const std::string config = dir.file("broker.conf");
  std::ofstream(config) << "socket-mode = 0666\n"
                           "allow-uid = nobody\n"
                           "allow-gid = 4242, 4244\n";
  BrokerProcess broker(dir, BrokerProcess::Options().with_args({"--config=" + config}));
  EXPECT_TRUE(served(connect_as({kNobody, kNogroup, {}}, broker.socket_path(), kCountRequest)))
      << "nobody, by name";
  EXPECT_TRUE(served(connect_as({kFriend, 4244, {}}, broker.socket_path(), kCountRequest)))
      << "second group of the list";
  EXPECT_FALSE(served(connect_as({kFriend, kNogroup, {}}, broker.socket_path(), kCountRequest)));

  std::ofstream(dir.file("bad.conf")) << "allow-uid = 4243, no-such-user-v2\n";
  BrokerProcess bad(dir, BrokerProcess::Options()
                             .with_args({"--config=" + dir.file("bad.conf")})
                             .at_path(dir.file("bad.sock"))
                             .no_wait());
  EXPECT_EQ(bad.exit_code(), 2);
  EXPECT_NE(bad.log().find("--allow-uid=no-such-user-v2: no such user"), std::string::npos)
      << bad.log();
}

TEST(BrokerAccess, UnprivilegedBrokerAdmitsItsOwnUserAndRootBesidesTheList) {
  if (!std::filesystem::exists("/usr/bin/setpriv") || needs_root()) {
    GTEST_SKIP() << "needs root and setpriv (util-linux) to run the broker as nobody";
  }
  TempDir dir;
  ASSERT_EQ(::chown(dir.path().c_str(), kNobody, kNogroup), 0);
  ASSERT_EQ(::chmod(dir.path().c_str(), 0711), 0);
  BrokerProcess broker(
      dir, BrokerProcess::Options()
               .with_prefix({"/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                             "--inh-caps=-all", "--bounding-set=-all", "--"})
               .with_args({"--socket-mode=0666", "--allow-uid=4243"}));
  EXPECT_TRUE(served(connect_as({kNobody, kNogroup, {}}, broker.socket_path(), kCountRequest)))
      << "the broker's own user";
  EXPECT_TRUE(served(connect_as({kFriend, kNogroup, {}}, broker.socket_path(), kCountRequest)));
  EXPECT_FALSE(served(connect_as({4244, 4244, {}}, broker.socket_path(), kCountRequest)));

  // Root (this test) routes through it like anyone allowed.
  Bystanders pair(broker.socket_path());
  EXPECT_TRUE(pair.exchange(1));
  EXPECT_EQ(
      payload_json(pair.text().call("RPCGetMessageStats"))["refused"]["connections"]["not_allowed"],
      1);
}

// ---- socket activation ----

enum class ListenPid : unsigned char { the_broker, another_process };

/// Starts v2broker as systemd would: `listen_fd` as descriptor 3, LISTEN_FDS=1 and LISTEN_PID
/// set in the child between fork and exec (to the child's pid, or to another one).
Process start_activated(const std::vector<std::string>& args, int listen_fd,
                        const std::string& log_path, ListenPid listen_pid) {
  std::vector<std::string> argv = {V2BROKER_PATH};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<char*> arg_pointers;
  arg_pointers.reserve(argv.size() + 1);
  for (auto& arg : argv) {
    arg_pointers.push_back(arg.data());
  }
  arg_pointers.push_back(nullptr);

  // Everything the child needs is built before fork: it may only make async-signal-safe calls.
  std::vector<std::string> environment;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    if (std::strncmp(*entry, "LISTEN_", 7) != 0) {
      environment.emplace_back(*entry);
    }
  }
  environment.emplace_back("LISTEN_FDS=1");
  environment.emplace_back("LISTEN_FDNAMES=v2broker.socket");
  environment.emplace_back("LISTEN_PID=" + std::string(20, '\0'));
  char* pid_digits = environment.back().data() + std::strlen("LISTEN_PID=");
  std::vector<char*> env_pointers;
  env_pointers.reserve(environment.size() + 1);
  for (auto& entry : environment) {
    env_pointers.push_back(entry.data());
  }
  env_pointers.push_back(nullptr);
  const int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  const int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (log_fd < 0 || null_fd < 0) {
    fail_errno("open " + log_path);
  }

  const pid_t pid = ::fork();
  if (pid < 0) {
    fail_errno("fork");
  }
  if (pid == 0) {
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::dup2(null_fd, STDIN_FILENO);
    ::dup2(log_fd, STDOUT_FILENO);
    ::dup2(log_fd, STDERR_FILENO);
    if (listen_fd == 3) {
      ::fcntl(3, F_SETFD, 0);  // dup2 onto itself would keep close-on-exec
    } else {
      ::dup2(listen_fd, 3);
    }
    // LISTEN_PID: this process's pid, written without the C library's formatting.
    pid_t value = listen_pid == ListenPid::the_broker ? ::getpid() : 1;
    std::array<char, 20> reversed{};
    std::size_t length = 0;
    do {
      reversed[length++] = static_cast<char>('0' + value % 10);
      value /= 10;
    } while (value > 0);
    for (std::size_t i = 0; i < length; ++i) {
      pid_digits[i] = reversed[length - 1 - i];
    }
    ::execve(argv[0].c_str(), arg_pointers.data(), env_pointers.data());
    ::_exit(127);
  }
  ::close(log_fd);
  ::close(null_fd);
  return Process::adopt(pid);
}

/// A listening Unix stream socket at `path`, as a socket unit would make it.
int listening_socket(const std::string& path) {
  const sockaddr_un address = socket_address(path);
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || ::bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0 ||
      ::listen(fd, 128) != 0) {
    fail_errno("listening socket " + path);
  }
  return fd;
}

bool is_socket(const std::string& path) {
  struct stat info {};
  return ::lstat(path.c_str(), &info) == 0 && S_ISSOCK(info.st_mode);
}

TEST(BrokerSocketActivation, InheritedSocketServesAndOutlivesTheBrokerForTheNextOne) {
  TempDir dir;
  const std::string path = dir.file("activated.sock");
  const int listen_fd = listening_socket(path);
  const std::vector<std::string> args = {"--socket=" + dir.file("unused.sock")};
  Process broker = start_activated(args, listen_fd, dir.file("broker.log"), ListenPid::the_broker);

  ASSERT_TRUE(wait_until([&] {
    return read_file(dir.file("broker.log")).find("socket activation") != std::string::npos ||
           !broker.running();
  }));
  ASSERT_TRUE(broker.running()) << read_file(dir.file("broker.log"));
  {
    Peer alice(path, Framing::ndjson);
    Peer bob(path, Framing::binary);
    ASSERT_EQ(alice.register_name("alice").type, MessageType::response);
    ASSERT_EQ(bob.register_name("bob").type, MessageType::response);
    alice.send(make_message(MessageType::event, "bob", "hi", R"({"x":1})"));
    const auto got = bob.receive();
    ASSERT_TRUE(got.has_value());
    EXPECT_EQ(got->source, "alice");
    EXPECT_EQ(got->payload.view(), R"({"x":1})");
  }
  EXPECT_FALSE(std::filesystem::exists(dir.file("unused.sock"))) << "bound --socket as well";

  broker.signal(SIGTERM);
  EXPECT_EQ(broker.exit_code(), 0) << read_file(dir.file("broker.log"));
  EXPECT_TRUE(is_socket(path)) << "the socket file belongs to systemd and must stay";

  // As under systemd: a client connecting between two brokers waits in the backlog of the
  // socket systemd keeps open, and the next broker answers it.
  Peer early(path, Framing::ndjson);
  early.send_bytes(kCountRequest);
  Process next = start_activated(args, listen_fd, dir.file("next.log"), ListenPid::the_broker);
  const auto reply = early.receive();
  ASSERT_TRUE(reply.has_value()) << read_file(dir.file("next.log"));
  EXPECT_EQ(reply->type, MessageType::response);
  next.signal(SIGTERM);
  EXPECT_EQ(next.exit_code(), 0) << read_file(dir.file("next.log"));
  EXPECT_TRUE(is_socket(path));
  ::close(listen_fd);
}

TEST(BrokerSocketActivation, InheritedDescriptorThatIsNotAListeningUnixStreamSocketIsRefused) {
  TempDir dir;
  std::array<int, 2> pipe_fds{};
  ASSERT_EQ(::pipe2(pipe_fds.data(), O_CLOEXEC), 0);
  const int datagram = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  const int unlistened = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct Case {
    const char* what;
    int fd;
    const char* expected;
  };
  for (const Case& c : {Case{"pipe", pipe_fds[0], "getsockopt(SO_DOMAIN): ENOTSOCK"},
                        Case{"datagram", datagram, "not a listening Unix stream socket"},
                        Case{"unlistened", unlistened, "not a listening Unix stream socket"}}) {
    SCOPED_TRACE(c.what);
    const std::string log = dir.file(std::string(c.what) + ".log");
    Process broker =
        start_activated({"--socket=" + dir.file("unused.sock")}, c.fd, log, ListenPid::the_broker);
    EXPECT_EQ(broker.exit_code(), 1) << read_file(log);
    EXPECT_NE(read_file(log).find(c.expected), std::string::npos) << read_file(log);
    EXPECT_FALSE(std::filesystem::exists(dir.file("unused.sock")));
  }
  ::close(pipe_fds[0]);
  ::close(pipe_fds[1]);
  ::close(datagram);
  ::close(unlistened);
}

TEST(BrokerSocketActivation, ListenPidOfAnotherProcessIsIgnoredAndTheBrokerBindsItsOwn) {
  TempDir dir;
  const int listen_fd = listening_socket(dir.file("activated.sock"));
  const std::string own = dir.file("own.sock");
  Process broker = start_activated({"--socket=" + own}, listen_fd, dir.file("broker.log"),
                                   ListenPid::another_process);
  ASSERT_TRUE(wait_until([&] {
    const int probe = try_connect(own);
    if (probe >= 0) {
      ::close(probe);
    }
    return probe >= 0 || !broker.running();
  }));
  ASSERT_TRUE(broker.running()) << read_file(dir.file("broker.log"));
  Peer peer(own, Framing::ndjson);
  EXPECT_EQ(peer.call("RPCGetMessageCount").type, MessageType::response);
  broker.signal(SIGTERM);
  EXPECT_EQ(broker.exit_code(), 0);
  EXPECT_FALSE(std::filesystem::exists(own)) << "its own socket file is removed as usual";
  ::close(listen_fd);
}

}  // namespace
}  // namespace v2::integration
