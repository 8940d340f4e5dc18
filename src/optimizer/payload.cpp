#include "v2broker/payload.hpp"

#include <cstring>
#include <new>
#include <utility>

namespace v2 {

// The bytes follow the block in the same allocation.
struct Payload::Block {
  std::atomic<std::uint32_t> refs{1};

  std::byte* bytes() noexcept { return reinterpret_cast<std::byte*>(this + 1); }

  static Block* allocate(std::size_t size) {
    static_assert(alignof(Block) <= alignof(std::max_align_t),
                  "payload bytes follow the block; operator new must align it");
    void* memory = ::operator new(sizeof(Block) + size);
    return new (memory) Block{};
  }

  void acquire() noexcept {
    // Relaxed: a new reference is made from an existing one, which already orders the bytes.
    refs.fetch_add(1, std::memory_order_relaxed);
  }

  void release() noexcept {
    // acq_rel: the last owner must see every other owner's reads finished before freeing.
    if (refs.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      this->~Block();
      ::operator delete(this);
    }
  }
};

Payload::Payload(const Payload& other) noexcept
    : block_(other.block_), data_(other.data_), size_(other.size_) {
  if (block_ != nullptr) {
    block_->acquire();
  }
}

Payload::Payload(Payload&& other) noexcept
    : block_(std::exchange(other.block_, nullptr)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)) {}

Payload& Payload::operator=(const Payload& other) noexcept {
  if (this != &other) {
    Payload copy(other);
    *this = std::move(copy);
  }
  return *this;
}

Payload& Payload::operator=(Payload&& other) noexcept {
  if (this != &other) {
    release();
    block_ = std::exchange(other.block_, nullptr);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

Payload::~Payload() {
  release();
}

void Payload::release() noexcept {
  if (block_ != nullptr) {
    block_->release();
    block_ = nullptr;
  }
  data_ = nullptr;
  size_ = 0;
}

Payload Payload::copy_of(std::span<const std::byte> bytes) {
  if (bytes.empty()) {
    return {};
  }
  PayloadBuilder builder(bytes.size());
  std::memcpy(builder.bytes().data(), bytes.data(), bytes.size());
  return std::move(builder).finish();
}

Payload Payload::copy_of(std::string_view text) {
  return copy_of(std::as_bytes(std::span(text)));
}

Payload Payload::slice(std::size_t offset, std::size_t length) const noexcept {
  if (offset > size_ || length > size_ - offset || length == 0) {
    return {};
  }
  block_->acquire();
  return {block_, data_ + offset, length};
}

std::uint32_t Payload::approx_use_count() const noexcept {
  return block_ == nullptr ? 0 : block_->refs.load(std::memory_order_relaxed);
}

PayloadBuilder::PayloadBuilder(std::size_t size)
    : block_(size == 0 ? nullptr : Payload::Block::allocate(size)), size_(size) {}

PayloadBuilder::PayloadBuilder(PayloadBuilder&& other) noexcept
    : block_(std::exchange(other.block_, nullptr)), size_(std::exchange(other.size_, 0)) {}

PayloadBuilder& PayloadBuilder::operator=(PayloadBuilder&& other) noexcept {
  if (this != &other) {
    if (block_ != nullptr) {
      block_->release();
    }
    block_ = std::exchange(other.block_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

PayloadBuilder::~PayloadBuilder() {
  if (block_ != nullptr) {
    block_->release();
  }
}

std::span<std::byte> PayloadBuilder::bytes() noexcept {
  return block_ == nullptr ? std::span<std::byte>{} : std::span(block_->bytes(), size_);
}

Payload PayloadBuilder::finish() && noexcept {
  Payload::Block* block = std::exchange(block_, nullptr);
  const std::size_t size = std::exchange(size_, 0);
  return block == nullptr ? Payload{} : Payload(block, block->bytes(), size);
}

}  // namespace v2
