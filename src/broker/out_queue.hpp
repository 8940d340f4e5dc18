#pragma once

#include <cstddef>
#include <deque>
#include <string>
#include <string_view>

#include "v2broker/payload.hpp"

namespace v2::broker {

/// Bytes waiting to be written to one socket, in order. Small pieces are packed into byte
/// segments; large payloads are kept as shared Payload segments and written with sendmsg's
/// gather list, so they are never copied. Not thread-safe: the connection's mutex guards it.
class OutQueue {
 public:
  enum class FlushStatus : unsigned char {
    drained,      ///< everything was written
    would_block,  ///< the socket is full; the rest stays queued (wait for EPOLLOUT)
    failed,       ///< the socket refused the write (peer gone); errno in last_error()
  };

  /// The byte segment at the tail, for encoders that append in place; call commit() after.
  std::string& tail();
  /// Records what was appended to tail() since the last call.
  void commit() noexcept;

  void append(std::string_view bytes);
  /// Queues a payload by reference; small ones are copied into the byte segment instead.
  void append(const Payload& payload);

  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
  [[nodiscard]] int last_error() const noexcept { return last_error_; }

  /// Writes as much as `fd` accepts without blocking (MSG_NOSIGNAL: a closed peer is an error,
  /// not a signal). Partial writes resume where they stopped on the next call.
  FlushStatus flush(int fd) noexcept;

 private:
  struct Segment {
    std::string bytes;  // used when payload is empty
    Payload payload;
    std::size_t offset = 0;  // bytes of this segment already written

    [[nodiscard]] std::size_t length() const noexcept {
      return payload.empty() ? bytes.size() : payload.size();
    }
    [[nodiscard]] const void* data() const noexcept {
      return payload.empty() ? static_cast<const void*>(bytes.data())
                             : static_cast<const void*>(payload.bytes().data());
    }
  };

  void consume(std::size_t written) noexcept;

  std::deque<Segment> segments_;
  std::size_t size_ = 0;
  std::size_t tail_committed_ = 0;  // size of tail().bytes when last committed
  int last_error_ = 0;
};

}  // namespace v2::broker
