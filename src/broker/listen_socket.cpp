#include "broker/listen_socket.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
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

}  // namespace

ListenSocket::ListenSocket(std::string path, mode_t mode, int backlog) : path_(std::move(path)) {
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

ListenSocket::~ListenSocket() {
  close();
}

void ListenSocket::close() noexcept {
  if (fd_ < 0) {
    return;
  }
  ::close(std::exchange(fd_, -1));
  struct stat current {};
  if (::lstat(path_.c_str(), &current) == 0 && current.st_dev == device_ &&
      current.st_ino == inode_) {
    ::unlink(path_.c_str());
  }
}

}  // namespace v2::broker
