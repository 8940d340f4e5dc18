#pragma once

#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "broker/out_queue.hpp"
#include "v2broker/message.hpp"
#include "v2broker/wire.hpp"

namespace v2::broker {

/// One client connection. The I/O thread owns the reading side; any worker may queue output.
/// The socket is closed when the last reference goes, so a worker holding one can never write
/// to a descriptor number that was reused.
class Connection {
 public:
  Connection(std::uint64_t id, int fd, const ucred& peer, const wire::DecoderConfig& decoder)
      : id_(id), fd_(fd), peer_(peer), decoder_(decoder) {}
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  Connection(Connection&&) = delete;
  Connection& operator=(Connection&&) = delete;
  ~Connection() { ::close(fd_); }

  [[nodiscard]] std::uint64_t id() const noexcept { return id_; }
  [[nodiscard]] int fd() const noexcept { return fd_; }
  [[nodiscard]] const ucred& peer() const noexcept { return peer_; }

  // --- I/O thread only ---
  wire::Decoder& decoder() noexcept { return decoder_; }
  // Back-pressure under the block policy: a message read but not yet offered because its
  // receiver's outgoing buffer is over the high-water mark; the connection is not read
  // meanwhile.
  std::optional<Message> held;
  std::shared_ptr<Connection> held_for;
  std::chrono::steady_clock::time_point held_since;  ///< when held, or last saw held_for read
  std::uint64_t held_progress = 0;                   ///< held_for->written_bytes then

  /// Names this connection registered, in order; the first is its default source.
  std::vector<std::string>& names() noexcept { return names_; }
  bool reading = true;  ///< false after the peer shut down its sending side

  // --- any thread ---
  /// The framing replies must use; set once by the I/O thread when the first byte arrives.
  std::atomic<wire::Framing> framing{wire::Framing::unknown};

  /// Guards out, dead and close_requested.
  std::mutex out_mutex;
  OutQueue out;
  bool dead = false;             ///< closed by the I/O thread: queue nothing more
  bool close_requested = false;  ///< a worker asks the I/O thread to close it
  /// out.size() and the bytes written so far, published for the I/O thread's back-pressure.
  std::atomic<std::size_t> queued_bytes{0};
  std::atomic<std::uint64_t> written_bytes{0};
  /// As a receiver: it stopped reading while senders waited for it (set by the I/O thread).
  std::atomic<bool> stalled{false};

  /// Call with out_mutex held, after appending to `out`.
  void note_queued() noexcept { queued_bytes.store(out.size(), std::memory_order_relaxed); }

  /// Writes what `out` holds, as far as the socket takes it. Call with out_mutex held.
  OutQueue::FlushStatus flush_out() noexcept {
    const std::size_t before = out.size();
    const auto status = out.flush(fd_);
    written_bytes.fetch_add(before - out.size(), std::memory_order_relaxed);
    note_queued();
    return status;
  }

  // Counters for the statistics calls.
  std::atomic<std::uint64_t> sent{0};      ///< messages this process sent through the broker
  std::atomic<std::uint64_t> received{0};  ///< messages the broker queued for this process
  std::array<std::atomic<std::uint64_t>, kMessageTypeCount> sent_by_type{};
  std::atomic<std::int64_t> first_message_ns{0};  ///< wall clock, ns since the epoch; 0: none
  std::atomic<std::int64_t> last_message_ns{0};
  std::atomic<std::uint64_t> dropped_slow{0};  ///< messages for it dropped: buffer full

 private:
  const std::uint64_t id_;
  const int fd_;
  const ucred peer_;
  wire::Decoder decoder_;
  std::vector<std::string> names_;
};

}  // namespace v2::broker
