#pragma once

#include <sys/types.h>

#include <string>

namespace v2::broker {

/// The broker's listening Unix stream socket and its file.
///
/// Opening refuses a path too long for sockaddr_un before creating anything, refuses a path
/// where a live broker answers, leaves alone (and refuses) a file that is not a socket, and
/// replaces a stale socket left by a crash. The file is removed when the object is closed or
/// destroyed, if it is still the one this object created.
class ListenSocket {
 public:
  /// Throws std::runtime_error with `socket=PATH` context and the reason.
  ListenSocket(std::string path, mode_t mode, int backlog = 1024);
  ListenSocket(const ListenSocket&) = delete;
  ListenSocket& operator=(const ListenSocket&) = delete;
  ListenSocket(ListenSocket&&) = delete;
  ListenSocket& operator=(ListenSocket&&) = delete;
  ~ListenSocket();

  [[nodiscard]] int fd() const noexcept { return fd_; }
  [[nodiscard]] const std::string& path() const noexcept { return path_; }

  /// Stops listening and removes the socket file. Idempotent.
  void close() noexcept;

 private:
  std::string path_;
  int fd_ = -1;
  dev_t device_ = 0;  // identity of the file created, so close() never removes a successor's
  ino_t inode_ = 0;
};

}  // namespace v2::broker
