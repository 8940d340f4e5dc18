#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <stdexcept>
#include <string>

#include "v2broker/client.hpp"

namespace v2 {
namespace {

/// Sets or unsets an environment variable for one test and restores it afterwards.
class EnvGuard {
 public:
  explicit EnvGuard(const char* name) : name_(name) {
    if (const char* value = std::getenv(name); value != nullptr) {
      saved_ = value;
    }
  }
  EnvGuard(const EnvGuard&) = delete;
  EnvGuard& operator=(const EnvGuard&) = delete;
  ~EnvGuard() {
    if (saved_) {
      ::setenv(name_, saved_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> saved_;
};

/// A fresh directory under /tmp (short, so socket paths fit sun_path), removed afterwards.
class TempDir {
 public:
  TempDir() {
    char pattern[] = "/tmp/v2client-XXXXXX";
    const char* made = ::mkdtemp(pattern);
    EXPECT_NE(made, nullptr) << "mkdtemp: " << std::strerror(errno);
    path_ = made != nullptr ? made : "/tmp";
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }

  [[nodiscard]] std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

/// A Unix stream socket bound at `path`, listening when `listening`.
int bound_socket(const std::string& path, bool listening) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  EXPECT_GE(fd, 0) << "socket: " << std::strerror(errno);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.data(), path.size());
  EXPECT_EQ(::bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address), 0)
      << "bind: " << std::strerror(errno);
  if (listening) {
    EXPECT_EQ(::listen(fd, 4), 0) << "listen: " << std::strerror(errno);
  }
  return fd;
}

/// Runs Client::connect and returns the ClientError it throws (fails the test if none).
std::optional<ClientError> connect_error(const std::string& path) {
  try {
    Client client = Client::connect(path);
    ADD_FAILURE() << "connect to " << path << " succeeded";
  } catch (const ClientError& error) {
    return error;
  }
  return std::nullopt;
}

TEST(DefaultSocketPath, UsesXdgRuntimeDirWhenSet) {
  const EnvGuard guard("XDG_RUNTIME_DIR");
  ::setenv("XDG_RUNTIME_DIR", "/run/user/1234", 1);

  EXPECT_EQ(default_socket_path(), "/run/user/1234/v2broker.sock");
}

TEST(DefaultSocketPath, FallsBackToTmpWithUidWhenXdgRuntimeDirIsUnset) {
  const EnvGuard guard("XDG_RUNTIME_DIR");
  ::unsetenv("XDG_RUNTIME_DIR");

  EXPECT_EQ(default_socket_path(), "/tmp/v2broker-" + std::to_string(::getuid()) + ".sock");
}

TEST(DefaultSocketPath, TreatsEmptyXdgRuntimeDirAsUnset) {
  const EnvGuard guard("XDG_RUNTIME_DIR");
  ::setenv("XDG_RUNTIME_DIR", "", 1);

  EXPECT_EQ(default_socket_path(), "/tmp/v2broker-" + std::to_string(::getuid()) + ".sock");
}

TEST(ClientConnect, ReportsNoBrokerWhenTheSocketFileIsMissing) {
  const TempDir dir;
  const std::string path = dir.file("missing.sock");

  const std::optional<ClientError> error = connect_error(path);

  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->code(), ClientErrc::no_broker);
  EXPECT_EQ(error->sys_errno(), ENOENT);
  const std::string text = error->what();
  EXPECT_NE(text.find("no broker listening at " + path + " (start it with v2broker)"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("socket=" + path), std::string::npos) << text;
  EXPECT_NE(text.find("ENOENT"), std::string::npos) << text;
}

TEST(ClientConnect, ReportsStaleSocketWhenNobodyListens) {
  const TempDir dir;
  const std::string path = dir.file("stale.sock");
  ::close(bound_socket(path, false));  // the file stays, as after a crashed broker

  const std::optional<ClientError> error = connect_error(path);

  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->code(), ClientErrc::stale_socket);
  EXPECT_EQ(error->sys_errno(), ECONNREFUSED);
  const std::string text = error->what();
  EXPECT_NE(text.find("stale socket at " + path), std::string::npos) << text;
  EXPECT_NE(text.find("ECONNREFUSED"), std::string::npos) << text;
}

TEST(ClientConnect, SaysWhenThePathIsNotASocket) {
  const TempDir dir;
  const std::string path = dir.file("plain-file");
  std::ofstream(path) << "not a socket\n";

  const std::optional<ClientError> error = connect_error(path);

  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->code(), ClientErrc::stale_socket);
  EXPECT_NE(std::string(error->what()).find(path + " is not a socket"), std::string::npos)
      << error->what();
}

TEST(ClientConnect, RefusesAPathTooLongForSunPathBeforeConnecting) {
  const std::string path = "/tmp/" + std::string(sizeof(sockaddr_un::sun_path), 'x') + ".sock";

  const std::optional<ClientError> error = connect_error(path);

  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->code(), ClientErrc::bad_path);
  EXPECT_EQ(error->sys_errno(), 0);
  const std::string text = error->what();
  EXPECT_NE(text.find("socket path too long"), std::string::npos) << text;
  EXPECT_NE(text.find("socket=" + path), std::string::npos) << text;
}

TEST(ClientConnect, AcceptsTheLongestPathThatFits) {
  const TempDir dir;
  const std::string prefix = dir.file("");
  const std::string path =
      prefix + std::string(sizeof(sockaddr_un::sun_path) - 1 - prefix.size(), 's');
  const int listener = bound_socket(path, true);

  Client client = Client::connect(path);

  EXPECT_GE(client.fd(), 0);
  EXPECT_EQ(client.socket_path(), path);
  ::close(listener);
}

TEST(ClientConnect, RefusesAnEmptyPath) {
  const std::optional<ClientError> error = connect_error("");

  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->code(), ClientErrc::bad_path);
}

TEST(ClientConnect, RefusesUnknownFraming) {
  const TempDir dir;
  ClientOptions options;
  options.framing = wire::Framing::unknown;

  EXPECT_THROW((void)Client::connect(dir.file("any.sock"), options), std::invalid_argument);
}

TEST(ClientConnect, ConnectsToAListeningSocketWithTheChosenFraming) {
  const TempDir dir;
  const std::string path = dir.file("broker.sock");
  const int listener = bound_socket(path, true);
  ClientOptions options;
  options.framing = wire::Framing::binary;

  Client client = Client::connect(path, options);

  EXPECT_GE(client.fd(), 0);
  EXPECT_EQ(client.framing(), wire::Framing::binary);
  EXPECT_TRUE(client.name().empty());
  EXPECT_EQ(client.pending(), 0U);
  ::close(listener);
}

TEST(ClientConnect, MovedFromClientNoLongerOwnsTheSocket) {
  const TempDir dir;
  const std::string path = dir.file("broker.sock");
  const int listener = bound_socket(path, true);
  Client first = Client::connect(path);
  const int fd = first.fd();

  Client second = std::move(first);

  EXPECT_EQ(second.fd(), fd);
  // The moved-from state is what this test checks.
  // NOLINTNEXTLINE(bugprone-use-after-move,clang-analyzer-cplusplus.Move)
  EXPECT_EQ(first.fd(), -1);
  ::close(listener);
}

}  // namespace
}  // namespace v2
