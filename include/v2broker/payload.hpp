#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace v2 {

/// An immutable, reference-counted byte buffer.
///
/// Copying a Payload shares the bytes (one atomic increment); it never copies them. The bytes
/// are written once, through PayloadBuilder, before the first Payload refers to them, and are
/// read-only from then on, so any number of threads may read one Payload's bytes concurrently.
/// A Payload object itself follows the usual rule: one thread may modify it at a time.
class Payload {
 public:
  Payload() noexcept = default;
  Payload(const Payload& other) noexcept;
  Payload(Payload&& other) noexcept;
  Payload& operator=(const Payload& other) noexcept;
  Payload& operator=(Payload&& other) noexcept;
  ~Payload();

  /// Makes a payload holding a copy of `bytes`: one heap allocation, none when `bytes` is empty.
  /// Throws std::bad_alloc.
  [[nodiscard]] static Payload copy_of(std::span<const std::byte> bytes);
  [[nodiscard]] static Payload copy_of(std::string_view text);

  [[nodiscard]] std::span<const std::byte> bytes() const noexcept { return {data_, size_}; }
  [[nodiscard]] std::string_view view() const noexcept {
    return {reinterpret_cast<const char*>(data_), size_};
  }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] bool empty() const noexcept { return size_ == 0; }

  /// A payload sharing this one's buffer, restricted to [offset, offset + length). Both must lie
  /// within this payload; the result is empty otherwise. No allocation, no copy.
  [[nodiscard]] Payload slice(std::size_t offset, std::size_t length) const noexcept;

  /// How many Payload objects share this buffer; a racy observer, for tests and diagnostics.
  [[nodiscard]] std::uint32_t approx_use_count() const noexcept;

 private:
  friend class PayloadBuilder;
  struct Block;

  Payload(Block* block, const std::byte* data, std::size_t size) noexcept
      : block_(block), data_(data), size_(size) {}
  void release() noexcept;

  Block* block_ = nullptr;
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

/// Allocates a buffer once and lets its single owner fill it, then turns it into a Payload.
///
/// Typical use is reading straight from a socket into the final buffer: no intermediate copy.
class PayloadBuilder {
 public:
  /// Allocates `size` writable bytes (uninitialised). Throws std::bad_alloc.
  explicit PayloadBuilder(std::size_t size);
  PayloadBuilder(const PayloadBuilder&) = delete;
  PayloadBuilder& operator=(const PayloadBuilder&) = delete;
  PayloadBuilder(PayloadBuilder&& other) noexcept;
  PayloadBuilder& operator=(PayloadBuilder&& other) noexcept;
  ~PayloadBuilder();

  [[nodiscard]] std::span<std::byte> bytes() noexcept;

  /// Freezes the buffer. The builder is empty afterwards; its bytes are read-only from now on.
  [[nodiscard]] Payload finish() && noexcept;

 private:
  Payload::Block* block_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace v2
