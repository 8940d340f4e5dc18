#pragma once

#include <sys/types.h>

#include <optional>
#include <string>

namespace v2::broker {

/// The broker's listening Unix stream socket and its file.
///
/// Opening refuses a path too long for sockaddr_un before creating anything, refuses a path
/// where a live broker answers, leaves alone (and refuses) a file that is not a socket, and
/// replaces a stale socket left by a crash. The file is removed when the object is closed or
/// destroyed, if it is still the one this object created.
///
/// Under systemd socket activation (LISTEN_PID is this process and LISTEN_FDS is at least 1)
/// the socket passed as descriptor 3 is used instead: nothing is bound, path, mode and group
/// are the socket unit's, and the file is left in place at close, since systemd owns it.
class ListenSocket {
 public:
  /// Binds `path` with `mode`, its group set to `group` when given, or takes the socket passed
  /// by systemd. Throws std::runtime_error with `socket=PATH` context and the reason. Call
  /// before any thread starts: it unsets the LISTEN_* environment variables.
  ListenSocket(std::string path, mode_t mode, std::optional<gid_t> group = std::nullopt,
               int backlog = 1024);
  ListenSocket(const ListenSocket&) = delete;
  ListenSocket& operator=(const ListenSocket&) = delete;
  ListenSocket(ListenSocket&&) = delete;
  ListenSocket& operator=(ListenSocket&&) = delete;
  ~ListenSocket();

  [[nodiscard]] int fd() const noexcept { return fd_; }
  [[nodiscard]] const std::string& path() const noexcept { return path_; }
  /// True when the socket came from systemd socket activation.
  [[nodiscard]] bool inherited() const noexcept { return inherited_; }

  /// Stops listening and removes the socket file. Idempotent.
  void close() noexcept;

 private:
  void bind_new(mode_t mode, std::optional<gid_t> group, int backlog);
  void adopt(int fd);

  std::string path_;
  int fd_ = -1;
  bool inherited_ = false;
  dev_t device_ = 0;  // identity of the file created, so close() never removes a successor's
  ino_t inode_ = 0;
};

}  // namespace v2::broker
