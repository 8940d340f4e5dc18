#include "broker/out_queue.hpp"

#include <sys/socket.h>
#include <sys/uio.h>

#include <array>
#include <cerrno>

namespace v2::broker {
namespace {

// Payloads at least this large are queued by reference rather than copied.
constexpr std::size_t kZeroCopyThreshold = std::size_t{16} * 1024;
// A byte segment stops growing here, so written bytes are released as the queue advances.
constexpr std::size_t kSegmentLimit = std::size_t{256} * 1024;
// Gather entries per sendmsg call.
constexpr std::size_t kMaxIov = 64;

}  // namespace

std::string& OutQueue::tail() {
  if (segments_.empty() || !segments_.back().payload.empty() ||
      segments_.back().bytes.size() >= kSegmentLimit) {
    segments_.emplace_back();
    tail_committed_ = 0;
  }
  return segments_.back().bytes;
}

void OutQueue::commit() noexcept {
  if (segments_.empty() || !segments_.back().payload.empty()) {
    return;
  }
  const std::size_t now = segments_.back().bytes.size();
  size_ += now - tail_committed_;
  tail_committed_ = now;
}

void OutQueue::append(std::string_view bytes) {
  tail().append(bytes);
  commit();
}

void OutQueue::append(const Payload& payload) {
  if (payload.size() < kZeroCopyThreshold) {
    append(payload.view());
    return;
  }
  segments_.push_back(Segment{{}, payload, 0});
  size_ += payload.size();
}

OutQueue::FlushStatus OutQueue::flush(int fd) noexcept {
  while (size_ != 0) {
    std::array<iovec, kMaxIov> iov{};
    std::size_t count = 0;
    for (auto it = segments_.begin(); it != segments_.end() && count < kMaxIov; ++it) {
      if (it->length() == it->offset) {
        continue;
      }
      // iovec wants a mutable pointer; sendmsg only reads through it.
      iov[count].iov_base =
          const_cast<char*>(static_cast<const char*>(it->data()) + it->offset);  // NOLINT
      iov[count].iov_len = it->length() - it->offset;
      ++count;
    }
    msghdr header{};
    header.msg_iov = iov.data();
    header.msg_iovlen = count;
    const ssize_t written = ::sendmsg(fd, &header, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (written < 0) {
      const int error = errno;
      if (error == EINTR) {
        continue;
      }
      if (error == EAGAIN || error == EWOULDBLOCK) {
        return FlushStatus::would_block;
      }
      last_error_ = error;
      return FlushStatus::failed;
    }
    consume(static_cast<std::size_t>(written));
  }
  return FlushStatus::drained;
}

void OutQueue::consume(std::size_t written) noexcept {
  size_ -= written;
  while (written != 0 && !segments_.empty()) {
    Segment& front = segments_.front();
    const std::size_t left = front.length() - front.offset;
    if (written < left) {
      front.offset += written;
      return;
    }
    written -= left;
    if (segments_.size() == 1 && front.payload.empty()) {
      // Keep the last byte segment's allocation for the next messages.
      front.bytes.clear();
      front.offset = 0;
      tail_committed_ = 0;
    } else {
      segments_.pop_front();
    }
  }
}

}  // namespace v2::broker
