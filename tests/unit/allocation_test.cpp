// Counts every heap allocation in this test binary, to check that routing allocates nothing per
// message once the queue has reached its working size.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <new>
#include <thread>

#include "v2broker/optimizer.hpp"

namespace {

std::atomic<std::uint64_t> g_allocations{0};

}  // namespace

void* operator new(std::size_t size) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size == 0 ? 1 : size)) {  // NOLINT(*-no-malloc): replacing new
    return p;
  }
  throw std::bad_alloc();
}

// Every form is replaced, so that each allocation is freed by its own family (sanitizers check
// that new and delete match).
void* operator new(std::size_t size, const std::nothrow_t& /*tag*/) noexcept {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(size == 0 ? 1 : size);  // NOLINT(*-no-malloc)
}

void* operator new(std::size_t size, std::align_val_t align) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  const auto alignment = static_cast<std::size_t>(align);
  const std::size_t rounded = (size + alignment - 1) / alignment * alignment;
  if (void* p = std::aligned_alloc(alignment, rounded == 0 ? alignment : rounded)) {
    return p;
  }
  throw std::bad_alloc();
}

void* operator new(std::size_t size, std::align_val_t align,
                   const std::nothrow_t& /*tag*/) noexcept {
  try {
    return operator new(size, align);
  } catch (const std::bad_alloc&) {
    return nullptr;
  }
}

// GCC cannot see that operator new above is the matching malloc.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void operator delete(void* p) noexcept {
  std::free(p);
}  // NOLINT(*-no-malloc)
void operator delete(void* p, std::size_t /*size*/) noexcept {
  std::free(p);
}  // NOLINT
void operator delete(void* p, const std::nothrow_t& /*tag*/) noexcept {
  std::free(p);
}  // NOLINT
void operator delete(void* p, std::align_val_t /*align*/) noexcept {
  std::free(p);
}  // NOLINT
void operator delete(void* p, std::size_t /*size*/, std::align_val_t /*align*/) noexcept {
  std::free(p);  // NOLINT(*-no-malloc)
}
void operator delete(void* p, std::align_val_t /*align*/, const std::nothrow_t& /*tag*/) noexcept {
  std::free(p);  // NOLINT(*-no-malloc)
}
#pragma GCC diagnostic pop

namespace v2 {
namespace {

class CountingRouter : public Router {
 public:
  void handle_broker(Message& /*message*/, const RouteContext& /*context*/) noexcept override {
    routed.fetch_add(1, std::memory_order_relaxed);
  }
  void route(Message& /*message*/, const RouteContext& /*context*/) noexcept override {
    routed.fetch_add(1, std::memory_order_relaxed);
  }
  std::atomic<std::uint64_t> routed{0};
};

void wait_for(const CountingRouter& router, std::uint64_t count) {
  while (router.routed.load() < count) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

TEST(OptimizerAllocation, SteadyStreamAllocatesNothingPerMessage) {
  CountingRouter router;
  OptimizerConfig config;
  config.workers = 2;
  config.buffer_capacity = 64;  // rings start at their full size: nothing grows later
  config.offer_policy = OfferPolicy::block;
  config.batch_size = 8;
  config.flush_interval = std::chrono::microseconds(50);
  config.stats_interval = std::chrono::hours(1);  // keep the stats thread asleep
  config.tuning.set_nice = false;
  config.tuning.set_io_priority = false;
  config.tuning.pin_workers = false;
  Optimizer optimizer(router, config);
  optimizer.start();

  const Payload payload = Payload::copy_of(std::string(4096, 'p'));
  auto offer_many = [&](int count) {
    for (int i = 0; i < count; ++i) {
      Message message;
      message.type = MessageType::event;
      message.id = "m";          // short strings stay inside std::string: no allocation
      message.source = "alice";  // the caller's choice, not the optimizer's
      message.target = i % 2 == 0 ? "bob" : "carol";
      message.payload = payload;
      ASSERT_EQ(optimizer.offer(std::move(message)), OfferResult::accepted);
    }
  };

  offer_many(5000);
  wait_for(router, 5000);
  const std::uint64_t before = g_allocations.load();
  offer_many(50'000);
  wait_for(router, 55'000);
  const std::uint64_t after = g_allocations.load();
  optimizer.stop();

  EXPECT_EQ(after - before, 0U) << "allocations while routing 50000 messages";
}

}  // namespace
}  // namespace v2
