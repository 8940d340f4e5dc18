// The daemon's life: its socket file (stale, live, wrong kind, too long, mode, removal), a
// SIGTERM with messages in flight, and running without privileges.

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <fstream>
#include <regex>
#include <set>
#include <string>
#include <thread>

#include "broker_process.hpp"

namespace v2::integration {
namespace {

using nlohmann::json;
using wire::Framing;

mode_t permissions_of(const std::string& path) {
  struct stat info {};
  if (::lstat(path.c_str(), &info) != 0) {
    return 07777;
  }
  return info.st_mode & 0777;
}

bool is_socket(const std::string& path) {
  struct stat info {};
  return ::lstat(path.c_str(), &info) == 0 && S_ISSOCK(info.st_mode);
}

bool serves(const std::string& socket_path) {
  Peer peer(socket_path, Framing::ndjson);
  return peer.call("RPCGetMessageCount").type == MessageType::response;
}

TEST(BrokerSocketFile, StaleSocketFileIsReplaced) {
  TempDir dir;
  const std::string path = dir.file("broker.sock");
  {
    const sockaddr_un address = socket_address(path);
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_EQ(::bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)), 0);
    ::close(fd);  // without unlink: nobody accepts on this file
  }
  ASSERT_TRUE(is_socket(path));
  BrokerProcess broker(dir, BrokerProcess::Options().at_path(path));
  EXPECT_TRUE(serves(path));
}

TEST(BrokerSocketFile, SocketOfKilledBrokerIsReplacedByTheNextOne) {
  TempDir dir;
  {
    BrokerProcess first(dir);
    first.signal(SIGKILL);
    first.process().wait();
  }
  ASSERT_TRUE(is_socket(dir.file("broker.sock"))) << "SIGKILL cannot remove the file";
  BrokerProcess second(dir);
  EXPECT_TRUE(serves(second.socket_path()));
}

TEST(BrokerSocketFile, SecondBrokerOnLivePathExitsWithClearMessage) {
  TempDir dir;
  BrokerProcess first(dir);
  BrokerProcess second(dir, BrokerProcess::Options().no_wait());
  EXPECT_NE(second.exit_code(), 0);
  EXPECT_NE(second.log().find("already listening"), std::string::npos) << second.log();
  EXPECT_TRUE(first.running());
  EXPECT_TRUE(serves(first.socket_path())) << "the first broker lost its socket";
}

TEST(BrokerSocketFile, RegularFileAtPathIsLeftIntact) {
  TempDir dir;
  const std::string path = dir.file("broker.sock");
  std::ofstream(path) << "precious data\n";
  BrokerProcess broker(dir, BrokerProcess::Options().at_path(path).no_wait());
  EXPECT_NE(broker.exit_code(), 0);
  EXPECT_NE(broker.log().find("not a socket"), std::string::npos) << broker.log();
  EXPECT_EQ(read_file(path), "precious data\n");
}

TEST(BrokerSocketFile, PathLongerThan107BytesIsRefusedBeforeAnythingIsCreated) {
  TempDir dir;
  std::string path = dir.path() + "/";
  path += std::string(108 - path.size(), 's');
  ASSERT_EQ(path.size(), 108U);
  BrokerProcess broker(dir, BrokerProcess::Options().at_path(path).no_wait());
  EXPECT_NE(broker.exit_code(), 0);
  EXPECT_NE(broker.log().find("path length 108"), std::string::npos) << broker.log();
  EXPECT_FALSE(std::filesystem::exists(path));
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
    EXPECT_EQ(entry.path().string().find(dir.file("broker")), 0U) << "created " << entry.path();
  }
}

TEST(BrokerSocketFile, ModeIs0600ByDefaultAndSocketModeIsHonoured) {
  TempDir dir;
  const mode_t old_mask = ::umask(022);  // must neither widen nor narrow the requested mode
  {
    BrokerProcess broker(dir);
    EXPECT_EQ(permissions_of(broker.socket_path()), 0600U);
  }
  {
    BrokerProcess broker(
        dir,
        BrokerProcess::Options().with_args({"--socket-mode=0666"}).at_path(dir.file("a.sock")));
    EXPECT_EQ(permissions_of(broker.socket_path()), 0666U);
  }
  {
    BrokerProcess broker(
        dir,
        BrokerProcess::Options().with_args({"--socket-mode=0640"}).at_path(dir.file("b.sock")));
    EXPECT_EQ(permissions_of(broker.socket_path()), 0640U);
  }
  ::umask(old_mask);
}

TEST(BrokerSocketFile, SocketFileIsRemovedOnCleanExit) {
  TempDir dir;
  for (const int signo : {SIGTERM, SIGINT}) {
    BrokerProcess broker(dir);
    ASSERT_TRUE(is_socket(broker.socket_path()));
    broker.signal(signo);
    EXPECT_EQ(broker.exit_code(), 0) << broker.log();
    EXPECT_FALSE(std::filesystem::exists(broker.socket_path())) << "after " << sigabbrev_np(signo);
  }
}

TEST(BrokerConfigFile, UnknownKeyIsRefusedNamingTheFileAndTheKey) {
  TempDir dir;
  const std::string config = dir.file("typo.conf");
  std::ofstream(config) << "workers = 2\nworkrs = 4\n";
  BrokerProcess broker(dir, BrokerProcess::Options().with_args({"--config=" + config}).no_wait());
  EXPECT_EQ(broker.exit_code(), 2);
  EXPECT_NE(broker.log().find("--config " + config + ": unknown key 'workrs'"), std::string::npos)
      << broker.log();
}

TEST(BrokerShutdown, SigtermDeliversEveryAcceptedMessageAndExitsZero) {
  TempDir dir;
  BrokerProcess broker(dir, BrokerProcess::Options().with_args({"--offer-policy=block"}));
  Peer sender(broker.socket_path(), Framing::ndjson);
  Peer receiver(broker.socket_path(), Framing::binary);
  ASSERT_EQ(sender.register_name("sender").type, MessageType::response);
  ASSERT_EQ(receiver.register_name("receiver").type, MessageType::response);

  constexpr int kCount = 20'000;
  std::atomic<int> received{0};
  std::atomic<bool> in_order{true};
  std::atomic<bool> receiver_saw_end{false};
  std::jthread reader([&] {
    try {
      while (const auto got = receiver.receive()) {
        if (payload_json(*got)["seq"] != received.load()) {
          in_order = false;
        }
        ++received;
      }
    } catch (const HungUp&) {
      receiver_saw_end = true;
    }
  });
  std::atomic<int> written{0};
  std::jthread writer([&] {
    try {
      for (int i = 0; i < kCount; ++i) {
        sender.send(make_message(MessageType::event, "receiver", "n",
                                 R"({"seq":)" + std::to_string(i) + "}"));
        ++written;
      }
    } catch (const HungUp&) {
      // The broker stopped reading and exited: the rest was never accepted.
    }
  });

  ASSERT_TRUE(wait_until([&] { return received >= 2'000; }));
  broker.signal(SIGTERM);
  EXPECT_EQ(broker.exit_code(), 0) << broker.log();
  writer.join();
  reader.join();

  int errors = 0;
  try {
    while (const auto reply = sender.receive(1s)) {
      ++errors;
      ADD_FAILURE() << "error reply: " << reply->error;
    }
  } catch (const HungUp&) {
  }

  // The broker's own count of what it read: the two registrations and the sender's messages.
  const std::string log = broker.log();
  std::smatch match;
  ASSERT_TRUE(std::regex_search(log, match, std::regex(R"(stopped: received=(\d+))"))) << log;
  const int accepted = std::stoi(match[1]) - 2 - errors;
  RecordProperty("written", written.load());
  RecordProperty("accepted", accepted);
  EXPECT_TRUE(receiver_saw_end);
  EXPECT_TRUE(in_order);
  EXPECT_EQ(received, accepted) << "written=" << written << "; log:\n" << log;
  EXPECT_FALSE(std::filesystem::exists(broker.socket_path()));
}

TEST(BrokerShutdown, ReceiverThatNeverReadsDoesNotHoldShutdownPastTheTimeout) {
  TempDir dir;
  BrokerProcess broker(dir, BrokerProcess::Options().with_args({"--shutdown-timeout=300ms"}));
  Peer sender(broker.socket_path(), Framing::ndjson);
  Peer stuck(broker.socket_path(), Framing::ndjson);
  ASSERT_EQ(sender.register_name("sender").type, MessageType::response);
  ASSERT_EQ(stuck.register_name("stuck").type, MessageType::response);

  // More than the socket buffers hold, so part of it waits in the broker.
  const std::string payload = R"({"fill":")" + std::string(8000, 'f') + "\"}";
  for (int i = 0; i < 500; ++i) {
    sender.send(make_message(MessageType::event, "stuck", "n", payload));
  }
  ASSERT_TRUE(wait_until([&] {
    for (const json& process : list_processes(sender)) {
      if (process["names"] == json::array({"stuck"})) {
        return process["received"] == 500;
      }
    }
    return false;
  }));
  broker.signal(SIGTERM);
  EXPECT_EQ(broker.exit_code(), 0) << broker.log();
  EXPECT_NE(broker.log().find("did not take their messages"), std::string::npos) << broker.log();
  EXPECT_FALSE(std::filesystem::exists(broker.socket_path()));
}

TEST(BrokerUnprivileged, RunsAsNobodyReportsWhatWasNotAppliedAndStillRoutes) {
  if (!std::filesystem::exists("/usr/bin/setpriv")) {
    GTEST_SKIP() << "setpriv (util-linux) is not installed";
  }
  if (::geteuid() != 0) {
    GTEST_SKIP() << "needs root to switch to user nobody";
  }
  TempDir dir;
  ASSERT_EQ(::chown(dir.path().c_str(), 65534, 65534), 0);
  BrokerProcess broker(
      dir, BrokerProcess::Options().with_prefix({"/usr/bin/setpriv", "--reuid=65534",
                                                 "--regid=65534", "--clear-groups",
                                                 "--inh-caps=-all", "--bounding-set=-all", "--"}));

  const std::string proc_status = read_file("/proc/" + std::to_string(broker.pid()) + "/status");
  EXPECT_NE(proc_status.find("CapEff:\t0000000000000000"), std::string::npos) << proc_status;

  Peer alice(broker.socket_path(), Framing::ndjson);
  Peer bob(broker.socket_path(), Framing::binary);
  ASSERT_EQ(alice.register_name("alice").type, MessageType::response);
  ASSERT_EQ(bob.register_name("bob").type, MessageType::response);
  alice.send(make_message(MessageType::event, "bob", "hi", R"({"x":1})"));
  const auto got = bob.receive();
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->source, "alice");

  const Message reply = alice.call("RPCGetTuningStatus");
  ASSERT_EQ(reply.type, MessageType::response) << reply.error;
  const json status = payload_json(reply);
  EXPECT_EQ(status["capabilities"]["euid"], 65534);
  EXPECT_EQ(status["capabilities"]["cap_sys_nice"]["effective"], false);
  EXPECT_EQ(status["fully_applied"], false);
  int workers = 0;
  for (const json& thread : status["threads"]) {
    SCOPED_TRACE(thread.dump());
    const json& nice = thread["nice"];
    EXPECT_NE(nice["outcome"], "applied");
    EXPECT_TRUE(nice.contains("detail") && !nice["detail"].get<std::string>().empty())
        << "no reason given";
    EXPECT_EQ(nice["in_force"], 0);
    if (thread.contains("worker")) {
      ++workers;
      const json& io = thread["io_priority"];
      EXPECT_NE(io["outcome"], "applied");
      EXPECT_EQ(io["in_force"].get<std::string>().rfind("realtime", 0), std::string::npos);
      EXPECT_TRUE(io.contains("detail") && !io["detail"].get<std::string>().empty())
          << "no reason given";
    }
  }
  EXPECT_GT(workers, 0);
  EXPECT_NE(broker.log().find("tuning"), std::string::npos) << "no warning in the log";

  broker.signal(SIGTERM);
  EXPECT_EQ(broker.exit_code(), 0) << broker.log();
  EXPECT_FALSE(std::filesystem::exists(broker.socket_path()));
}

}  // namespace
}  // namespace v2::integration
