#include "broker/listen_socket.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <utility>

#include "sys/error.hpp"

namespace v2::broker {
namespace {

using sys::errno_text;

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw std::runtime_error("socket=" + path + ": " + what);
}

sockaddr_un address_of(const std::string& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(address.sun_path)) {
    fail(path, "path length " + std::to_string(path.size()) + " is outside 1.." +
                   std::to_string(sizeof(address.sun_path) - 1) +
                   " bytes, the limit of a Unix socket address");
  }
  std::memcpy(address.sun_path, path.data(), path.size());
  return address;
}

// True when something accepts connections at `path`.
bool someone_listens(const sockaddr_un& address) {
  const int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (probe < 0) {
    return false;
  }
  const bool live =
      ::connect(probe, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) == 0;
  ::close(probe);
  return live;
}

// systemd socket activation (sd_listen_fds(3)) done by hand: the protocol is two environment
// variables and a fixed descriptor number, not worth a dependency on libsystemd. The broker
// takes one socket, descriptor 3 (SD_LISTEN_FDS_START). The variables are unset either way, as
// sd_listen_fds does, so that no child inherits them. Returns nothing when the broker should
// bind its socket itself.
std::optional<int> activated_socket(const std::string& path) {
  constexpr int kListenFdsStart = 3;
  const char* pid_text = std::getenv("LISTEN_PID");
  const char* fds_text = std::getenv("LISTEN_FDS");
  const std::string listen_pid = pid_text == nullptr ? "" : pid_text;
  const std::string listen_fds = fds_text == nullptr ? "" : fds_text;
  ::unsetenv("LISTEN_PID");
  ::unsetenv("LISTEN_FDS");
  ::unsetenv("LISTEN_FDNAMES");

  long pid = 0;
  if (listen_pid.empty() ||
      std::from_chars(listen_pid.data(), listen_pid.data() + listen_pid.size(), pid).ec !=
          std::errc() ||
      pid != ::getpid()) {
    return std::nullopt;  // not for this process (or not set)
  }
  int count = 0;
  const auto [rest, error] =
      std::from_chars(listen_fds.data(), listen_fds.data() + listen_fds.size(), count);
  if (error != std::errc() || rest != listen_fds.data() + listen_fds.size() || count < 0) {
    fail(path, "socket activation: LISTEN_FDS=" + listen_fds + " is not a count of descriptors");
  }
  if (count == 0) {
    return std::nullopt;
  }
  if (count > 1) {
    spdlog::warn("socket activation: LISTEN_FDS={}; only fd={} is used, the others are ignored",
                 count, kListenFdsStart);
  }
  return kListenFdsStart;
}

}  // namespace

ListenSocket::ListenSocket(std::string path, mode_t mode, std::optional<gid_t> group, int backlog)
    : path_(std::move(path)) {
  if (const auto fd = activated_socket(path_)) {
    adopt(*fd);
    return;
  }
  bind_new(mode, group, backlog);
}

void ListenSocket::bind_new(mode_t mode, std::optional<gid_t> group, int backlog) {
  const sockaddr_un address = address_of(path_);

  struct stat existing {};
  if (::lstat(path_.c_str(), &existing) == 0) {
    if (!S_ISSOCK(existing.st_mode)) {
      fail(path_, "a file that is not a socket is in the way; it was left alone");
    }
    if (someone_listens(address)) {
      fail(path_, "another broker is already listening here");
    }
    if (::unlink(path_.c_str()) != 0) {
      fail(path_, "cannot remove the stale socket: unlink: " + errno_text(errno));
    }
  }

  fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd_ < 0) {
    fail(path_, "socket: " + errno_text(errno));
  }
  // The umask must not widen or narrow the requested mode: bind creates the file with
  // 0777 & ~umask, so make it owner-only during bind and chmod to the requested mode after.
  // The group is changed while the file is still owner-only, so no one outside the requested
  // group ever gets the group's permissions.
  const mode_t old_mask = ::umask(0177);
  const int bound = ::bind(fd_, reinterpret_cast<const sockaddr*>(&address), sizeof(address));
  const int bind_error = errno;
  ::umask(old_mask);
  if (bound != 0) {
    ::close(std::exchange(fd_, -1));
    fail(path_, "bind: " + errno_text(bind_error));
  }
  struct stat created {};
  if (::stat(path_.c_str(), &created) == 0) {
    device_ = created.st_dev;
    inode_ = created.st_ino;
  }
  if (group && ::lchown(path_.c_str(), static_cast<uid_t>(-1), *group) != 0) {
    const int error = errno;
    close();
    fail(path_,
         "chown group=" + std::to_string(*group) + ": " + errno_text(error) +
             (error == EPERM ? " (the broker must run as root or as a member of the group)" : ""));
  }
  if (::chmod(path_.c_str(), mode) != 0) {
    const int error = errno;
    close();
    std::array<char, 8> octal{};
    std::snprintf(octal.data(), octal.size(), "%04o", static_cast<unsigned>(mode));
    fail(path_, std::string("chmod mode=") + octal.data() + ": " + errno_text(error));
  }
  if (::listen(fd_, backlog) != 0) {
    const int error = errno;
    close();
    fail(path_, "listen: " + errno_text(error));
  }
}

// Checks that the passed descriptor is what the broker needs, and takes it over.
void ListenSocket::adopt(int fd) {
  const auto refuse = [fd](const std::string& why) {
    throw std::runtime_error("socket activation fd=" + std::to_string(fd) + ": " + why);
  };
  const auto option = [&](int name, const char* label) {
    int value = 0;
    socklen_t length = sizeof(value);
    if (::getsockopt(fd, SOL_SOCKET, name, &value, &length) != 0) {
      refuse(std::string("getsockopt(") + label + "): " + errno_text(errno) +
             " (systemd must pass one listening Unix stream socket)");
    }
    return value;
  };
  if (option(SO_DOMAIN, "SO_DOMAIN") != AF_UNIX || option(SO_TYPE, "SO_TYPE") != SOCK_STREAM ||
      option(SO_ACCEPTCONN, "SO_ACCEPTCONN") == 0) {
    refuse(
        "not a listening Unix stream socket (the socket unit needs ListenStream=/path and "
        "Accept=no)");
  }
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0 ||
      ::fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) {
    refuse("fcntl: " + errno_text(errno));
  }
  fd_ = fd;
  inherited_ = true;

  sockaddr_un bound{};
  socklen_t length = sizeof(bound);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &length) == 0 &&
      length > offsetof(sockaddr_un, sun_path) && bound.sun_path[0] != '\0') {
    path_ = std::string(bound.sun_path,
                        ::strnlen(bound.sun_path, length - offsetof(sockaddr_un, sun_path)));
  }
  spdlog::info(
      "socket activation: listening on fd={} socket={}; its path, mode and group are the socket "
      "unit's, and the file is left in place at exit",
      fd, path_);
}

ListenSocket::~ListenSocket() {
  close();
}

void ListenSocket::close() noexcept {
  if (fd_ < 0) {
    return;
  }
  ::close(std::exchange(fd_, -1));
  if (inherited_) {
    return;  // systemd created the file and keeps it for the next start
  }
  struct stat current {};
  if (::lstat(path_.c_str(), &current) == 0 && current.st_dev == device_ &&
      current.st_ino == inode_) {
    ::unlink(path_.c_str());
  }
}

}  // namespace v2::broker
