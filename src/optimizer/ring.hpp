#pragma once

#include <cstddef>
#include <utility>
#include <vector>

namespace v2::detail {

/// A FIFO ring that grows by doubling up to a fixed limit and never shrinks, so a steady stream
/// allocates nothing once the ring has reached its working size. Not thread-safe: the owner
/// serialises access (the optimizer holds the shard's mutex).
template <typename T>
class GrowingRing {
 public:
  explicit GrowingRing(std::size_t limit, std::size_t initial)
      : limit_(limit), slots_(initial < limit ? initial : limit) {}

  [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] std::size_t limit() const noexcept { return limit_; }

  /// Appends at the tail. The caller guarantees size() < limit(). May allocate when growing
  /// (std::bad_alloc).
  void push_back(T&& value) {
    if (size_ == slots_.size()) {
      grow();
    }
    slots_[(head_ + size_) % slots_.size()] = std::move(value);
    ++size_;
  }

  [[nodiscard]] T& front() noexcept { return slots_[head_]; }

  /// Moves the head element out.
  T pop_front() noexcept {
    T value = std::move(slots_[head_]);
    head_ = (head_ + 1) % slots_.size();
    --size_;
    return value;
  }

 private:
  void grow() {
    std::size_t capacity = slots_.empty() ? 1 : slots_.size() * 2;
    capacity = capacity < limit_ ? capacity : limit_;
    std::vector<T> bigger(capacity);
    for (std::size_t i = 0; i < size_; ++i) {
      bigger[i] = std::move(slots_[(head_ + i) % slots_.size()]);
    }
    slots_ = std::move(bigger);
    head_ = 0;
  }

  std::size_t limit_;
  std::vector<T> slots_;
  std::size_t head_ = 0;
  std::size_t size_ = 0;
};

}  // namespace v2::detail
