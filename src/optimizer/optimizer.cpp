#include "v2broker/optimizer.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <latch>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "optimizer/histogram.hpp"
#include "optimizer/ring.hpp"
#include "optimizer/tuning_ledger.hpp"

namespace v2 {
namespace {

using Clock = std::chrono::steady_clock;

// Separate cache lines for data written by different threads. 64 bytes covers x86-64 and most
// ARM64 parts; std::hardware_destructive_interference_size is avoided because GCC warns that
// its value may change between compiler versions, which would change this ABI.
constexpr std::size_t kCacheLine = 64;

// Rings start small and grow towards the global capacity only if a shard needs it.
constexpr std::size_t kInitialRingSlots = 64;

std::uint64_t elapsed_ns(Clock::time_point from, Clock::time_point to) noexcept {
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(to - from).count();
  return ns > 0 ? static_cast<std::uint64_t>(ns) : 0;
}

// A counter with one writer at a time (the thread holding the relevant lock, or the owning
// worker) and concurrent readers: store-after-load avoids a locked add on the hot path.
// Release pairs with the acquire in read(), so a reader that sees a worker's routed count also
// sees the taken count that preceded it.
class OwnedCounter {
 public:
  void add(std::uint64_t by) noexcept {
    value_.store(value_.load(std::memory_order_relaxed) + by, std::memory_order_release);
  }
  [[nodiscard]] std::uint64_t read() const noexcept {
    return value_.load(std::memory_order_acquire);
  }

 private:
  std::atomic<std::uint64_t> value_{0};
};

struct Slot {
  Message message;
  Clock::time_point enqueued;
};

// One worker's queue. Every field below the mutex is guarded by it.
struct alignas(kCacheLine) Shard {
  explicit Shard(std::size_t capacity) : ring(capacity, std::min(capacity, kInitialRingSlots)) {}

  mutable std::mutex mutex;
  std::condition_variable wake;  // the worker waits here for messages
  detail::GrowingRing<Slot> ring;
  std::size_t wake_at = 0;  // worker asleep until ring.size() >= wake_at; 0 while awake
  bool idle = false;        // worker asleep with an empty batch, waiting for a first message
  bool lent = false;        // a producer routes in the worker's stead (offer_direct)
  bool closed = false;      // no more pushes: the optimizer is stopping
  // ring.size(), published for the worker's lock-free idle spin; written under the mutex.
  std::atomic<std::size_t> size_hint{0};
  bool abandon = false;  // stop(abandon): the worker leaves the rest of the ring

  // Written under the mutex (one writer at a time), read lock-free by metrics().
  OwnedCounter pushed;
  OwnedCounter taken;
  OwnedCounter evicted;
  OwnedCounter abandoned;
  // Refusals happen outside the shard lock, from any producer.
  std::atomic<std::uint64_t> refused_full{0};
  std::atomic<std::uint64_t> refused_timeout{0};
  std::atomic<std::uint64_t> refused_stopped{0};
};

// Written only by the worker thread, read by metrics().
struct alignas(kCacheLine) WorkerState {
  std::thread thread;
  std::atomic<pid_t> tid{0};
  OwnedCounter routed;
  OwnedCounter batches;
  std::array<OwnedCounter, kMessageTypeCount> routed_by_type;
  detail::ConcurrentHistogram queue_latency;
  detail::ConcurrentHistogram route_latency;
};

// Tells the core this is a spin-wait: saves power and frees the pipeline for a sibling thread.
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

std::size_t distinct(std::vector<int> values) {
  std::sort(values.begin(), values.end());
  return static_cast<std::size_t>(std::unique(values.begin(), values.end()) - values.begin());
}

std::size_t shard_of(const Message& message, std::size_t shards) noexcept {
  const std::size_t h1 = std::hash<std::string_view>{}(message.source);
  const std::size_t h2 = std::hash<std::string_view>{}(message.target);
  // Mix so that (a, b) and (b, a) land apart; constants from the 64-bit golden ratio.
  const std::size_t mixed = h1 ^ (h2 + 0x9e3779b97f4a7c15ULL + (h1 << 6U) + (h1 >> 2U));
  return mixed % shards;
}

}  // namespace

std::string_view to_string(OfferResult result) noexcept {
  switch (result) {
    case OfferResult::accepted:
      return "accepted";
    case OfferResult::accepted_evicted:
      return "accepted_evicted";
    case OfferResult::dropped:
      return "dropped";
    case OfferResult::timed_out:
      return "timed_out";
    case OfferResult::stopped:
      return "stopped";
  }
  return "unknown";
}

class Optimizer::Impl {
 public:
  Impl(Router& router, OptimizerConfig config)
      : router_(router), config_(std::move(config)), ledger_(config_.tuning) {
    if (auto issues = validate(config_); !issues.empty()) {
      throw ConfigError(std::move(issues));
    }
    worker_count_ = resolved_worker_count(config_);
    if (config_.tuning.pin_workers) {
      cpus_ = config_.tuning.cpus.empty() ? allowed_cpus() : config_.tuning.cpus;
    }
    // Polling pays only when each worker has a CPU to itself; with more workers than CPUs it
    // takes CPU time from the producers and from the other workers, so they park at once.
    const std::size_t cpu_count = cpus_.empty() ? allowed_cpus().size() : distinct(cpus_);
    // A real-time worker that polls keeps every normal thread off its CPU meanwhile.
    idle_spin_ = worker_count_ <= cpu_count && config_.tuning.realtime_priority == 0
                     ? config_.idle_spin
                     : std::chrono::nanoseconds::zero();
    shards_.reserve(worker_count_);
    workers_.reserve(worker_count_);
    for (std::size_t i = 0; i < worker_count_; ++i) {
      shards_.push_back(std::make_unique<Shard>(config_.buffer_capacity));
      workers_.push_back(std::make_unique<WorkerState>());
    }
  }

  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
  Impl(Impl&&) = delete;
  Impl& operator=(Impl&&) = delete;
  ~Impl() { stop(StopMode::drain); }

  void set_stats_callback(StatsCallback callback) {
    const std::lock_guard lock(lifecycle_mutex_);
    stats_callback_ = std::move(callback);
  }

  void start() {
    const std::lock_guard lock(lifecycle_mutex_);
    if (started_ || stopped_) {
      throw std::logic_error("Optimizer::start: already started or stopped");
    }
    ledger_.apply_process_nice();
    std::latch ready(static_cast<std::ptrdiff_t>(worker_count_) + 1);
    try {
      for (std::size_t i = 0; i < worker_count_; ++i) {
        workers_[i]->thread = std::thread([this, i, &ready] { worker_main(i, ready); });
        ++threads_started_;
      }
      stats_thread_ = std::thread([this, &ready] { stats_main(ready); });
    } catch (...) {
      // Unblock the latch for the threads that never started, then stop the ones that did.
      ready.count_down(static_cast<std::ptrdiff_t>(worker_count_ - threads_started_) + 1);
      ready.wait();
      started_ = true;
      stop_locked(StopMode::drain);
      throw;
    }
    ready.wait();
    started_ = true;
  }

  OfferResult offer(Message&& message) noexcept {
    // Capacity first: a refusal under `drop` then costs one atomic load and one counter.
    bool evict = false;
    if (!try_reserve()) {
      switch (config_.offer_policy) {
        case OfferPolicy::drop:
          refusal_shard().refused_full.fetch_add(1, std::memory_order_relaxed);
          return OfferResult::dropped;
        case OfferPolicy::block:
          if (!wait_for_room(std::nullopt)) {
            refusal_shard().refused_stopped.fetch_add(1, std::memory_order_relaxed);
            return OfferResult::stopped;
          }
          break;
        case OfferPolicy::timeout:
          if (config_.offer_timeout == std::chrono::nanoseconds::zero()) {
            refusal_shard().refused_full.fetch_add(1, std::memory_order_relaxed);
            return OfferResult::dropped;
          }
          if (!wait_for_room(Clock::now() + config_.offer_timeout)) {
            if (stopping_.load(std::memory_order_acquire)) {
              refusal_shard().refused_stopped.fetch_add(1, std::memory_order_relaxed);
              return OfferResult::stopped;
            }
            refusal_shard().refused_timeout.fetch_add(1, std::memory_order_relaxed);
            return OfferResult::timed_out;
          }
          break;
        case OfferPolicy::drop_oldest:
          evict = true;
          break;
      }
    }
    const auto enqueued = Clock::now();
    const std::size_t index = shard_of(message, shards_.size());
    if (evict) {
      return offer_evicting(std::move(message), index, enqueued);
    }

    Shard& shard = *shards_[index];
    bool wake_worker = false;
    {
      const std::lock_guard lock(shard.mutex);
      if (shard.closed) {
        release_capacity(1);
        shard.refused_stopped.fetch_add(1, std::memory_order_relaxed);
        return OfferResult::stopped;
      }
      push_locked(shard, std::move(message), enqueued);
      wake_worker = shard.wake_at != 0 && shard.ring.size() >= shard.wake_at;
    }
    if (wake_worker) {
      shard.wake.notify_one();
    }
    return OfferResult::accepted;
  }

  OfferResult offer_direct(Message&& message) noexcept {
    const std::size_t index = shard_of(message, shards_.size());
    Shard& shard = *shards_[index];
    const auto enqueued = Clock::now();
    bool lent = false;
    {
      const std::lock_guard lock(shard.mutex);
      if (shard.idle && !shard.lent && !shard.closed && shard.ring.empty()) {
        // The worker sleeps with nothing queued or in hand: take its turn. Counted as pushed
        // and taken at once, so the message is in flight until routed, as in a worker's batch.
        shard.lent = lent = true;
        shard.pushed.add(1);
        shard.taken.add(1);
      }
    }
    if (!lent) {
      return offer(std::move(message));
    }
    WorkerState& self = *workers_[index];
    const RouteContext context{index};
    route_one(self, message, context, enqueued, Clock::now());
    router_.end_batch(context);
    self.batches.add(1);
    // Notified under the lock: once it is released the worker may run, and stop() may return,
    // so nothing of the shard is touched after.
    const std::lock_guard lock(shard.mutex);
    shard.lent = false;
    if (!shard.ring.empty() || shard.closed) {
      shard.wake.notify_one();
    }
    return OfferResult::accepted;
  }

  StopReport stop(StopMode mode) noexcept {
    const std::lock_guard lock(lifecycle_mutex_);
    return stop_locked(mode);
  }

  MetricsSnapshot metrics() const;

  LatencyHistograms latency_histograms(std::span<const std::uint64_t> bounds) const {
    if (std::adjacent_find(bounds.begin(), bounds.end(), std::greater_equal<>()) != bounds.end()) {
      throw std::invalid_argument("latency_histograms: bounds must be strictly ascending");
    }
    detail::HistogramCounts queue;
    detail::HistogramCounts route;
    for (const auto& worker : workers_) {
      worker->queue_latency.snapshot_into(queue);
      worker->route_latency.snapshot_into(route);
    }
    return {queue.cumulative(bounds), route.cumulative(bounds)};
  }

  TuningReport tuning_report() const { return ledger_.report(); }
  void tune_message_thread() { ledger_.apply_realtime_to_current_thread(); }

  const OptimizerConfig& config() const noexcept { return config_; }
  std::size_t worker_count() const noexcept { return worker_count_; }

  std::vector<pid_t> worker_tids() const {
    std::vector<pid_t> tids;
    for (const auto& worker : workers_) {
      const pid_t tid = worker->tid.load(std::memory_order_acquire);
      if (tid == 0) {
        return {};
      }
      tids.push_back(tid);
    }
    return tids;
  }

 private:
  // Where a refused offer is counted: any shard will do, so each producer thread sticks to one
  // and refusing producers do not all write the same cache line.
  Shard& refusal_shard() noexcept {
    static std::atomic<std::size_t> next_thread{0};
    thread_local const std::size_t thread_index = next_thread.fetch_add(1);
    return *shards_[thread_index % shards_.size()];
  }

  // Claims one unit of queue capacity if any is left.
  bool try_reserve() noexcept {
    std::size_t queued = queued_.load(std::memory_order_relaxed);
    while (queued < config_.buffer_capacity) {
      // seq_cst on success: pairs with the waiter count in release_capacity (see there).
      if (queued_.compare_exchange_weak(queued, queued + 1, std::memory_order_seq_cst,
                                        std::memory_order_relaxed)) {
        return true;
      }
    }
    return false;
  }

  void release_capacity(std::size_t count) noexcept {
    // seq_cst store-then-load against the producer's seq_cst increment-then-reserve in
    // wait_for_room: one of the two sees the other, so a waiter is never left asleep.
    queued_.fetch_sub(count, std::memory_order_seq_cst);
    if (room_waiters_.load(std::memory_order_seq_cst) != 0) {
      { const std::lock_guard lock(room_mutex_); }
      room_.notify_all();
    }
  }

  // Waits until capacity is reserved (true), or until the deadline passes or the optimizer
  // stops (false).
  bool wait_for_room(std::optional<Clock::time_point> deadline) noexcept {
    std::unique_lock lock(room_mutex_);
    room_waiters_.fetch_add(1, std::memory_order_seq_cst);
    bool reserved = false;
    while (!(reserved = try_reserve()) && !stopping_.load(std::memory_order_acquire)) {
      if (!deadline) {
        room_.wait(lock);
      } else if (room_.wait_until(lock, *deadline) == std::cv_status::timeout) {
        reserved = try_reserve();
        break;
      }
    }
    room_waiters_.fetch_sub(1, std::memory_order_relaxed);
    if (reserved && stopping_.load(std::memory_order_acquire)) {
      // Room came too late: the shard is closing, the push would be refused anyway.
      lock.unlock();
      release_capacity(1);
      return false;
    }
    return reserved;
  }

  static void push_locked(Shard& shard, Message&& message, Clock::time_point enqueued) {
    shard.ring.push_back(Slot{std::move(message), enqueued});
    shard.pushed.add(1);
    shard.size_hint.store(shard.ring.size(), std::memory_order_release);
  }

  // drop_oldest with a full queue: evict the oldest queued message and queue the new one in
  // one step.
  OfferResult offer_evicting(Message&& message, std::size_t index, Clock::time_point enqueued) {
    for (;;) {
      if (const auto result = try_evicting(message, index, enqueued)) {
        return *result;
      }
      // Every unit of capacity is reserved by producers that have not pushed yet: let them.
      std::this_thread::yield();
    }
  }

  // One attempt, with every shard locked (in index order, so producers cannot deadlock).
  // Moves from `message` only when it returns an accepted result; nullopt means try again.
  std::optional<OfferResult> try_evicting(Message& message, std::size_t index,
                                          Clock::time_point enqueued) {
    std::optional<Message> victim;
    std::optional<OfferResult> result;
    for (auto& shard : shards_) {
      shard->mutex.lock();
    }
    Shard& own = *shards_[index];
    if (own.closed) {
      result = OfferResult::stopped;
    } else if (try_reserve()) {
      push_locked(own, std::move(message), enqueued);
      result = OfferResult::accepted;
    } else if (Shard* oldest = find_oldest_locked(); oldest != nullptr) {
      victim.emplace(oldest->ring.pop_front().message);
      oldest->evicted.add(1);
      oldest->size_hint.store(oldest->ring.size(), std::memory_order_relaxed);
      push_locked(own, std::move(message), enqueued);
      result = OfferResult::accepted_evicted;
    }
    const bool wake_worker = own.wake_at != 0 && own.ring.size() >= own.wake_at;
    for (std::size_t i = shards_.size(); i-- > 0;) {
      shards_[i]->mutex.unlock();
    }

    if (result == OfferResult::stopped) {
      own.refused_stopped.fetch_add(1, std::memory_order_relaxed);
    }
    if (wake_worker) {
      own.wake.notify_one();
    }
    if (victim) {
      router_.dropped(*victim, DropReason::evicted);
    }
    return result;
  }

  Shard* find_oldest_locked() noexcept {
    Shard* oldest = nullptr;
    for (auto& shard : shards_) {
      if (!shard->ring.empty() &&
          (oldest == nullptr || shard->ring.front().enqueued < oldest->ring.front().enqueued)) {
        oldest = shard.get();
      }
    }
    return oldest;
  }

  // Moves up to `want` messages from the ring into `batch`; the caller holds the shard lock.
  std::size_t take_locked(Shard& shard, std::vector<Slot>& batch, std::size_t want) noexcept {
    const std::size_t n = std::min(want, shard.ring.size());
    for (std::size_t i = 0; i < n; ++i) {
      batch.push_back(shard.ring.pop_front());
    }
    if (n != 0) {
      shard.taken.add(n);
      shard.size_hint.store(shard.ring.size(), std::memory_order_relaxed);
      release_capacity(n);
    }
    return n;
  }

  // Fills `batch` from the worker's shard: waits for a first message, then, for batches
  // larger than one, for more until the batch is full or flush_interval has passed since the
  // first message was offered. Returns false when the worker should exit.
  bool collect_batch(Shard& shard, std::vector<Slot>& batch) {
    const std::size_t batch_size = config_.batch_size;
    std::unique_lock lock(shard.mutex);
    bool spun = false;
    // While the worker's turn is lent (offer_direct), the lender routes for it: the worker
    // waits, even to exit, so that one thread at a time routes this shard's messages.
    while (shard.ring.empty() || shard.abandon || shard.lent) {
      if (shard.closed && !shard.lent) {
        return false;
      }
      if (!spun && !shard.lent && idle_spin_ > std::chrono::nanoseconds::zero()) {
        // Poll a little before parking: a producer that finds the worker awake skips the
        // futex wake-up, which costs it more than the message itself.
        lock.unlock();
        spin_for_work(shard);
        lock.lock();
        spun = true;
        continue;
      }
      shard.wake_at = 1;
      shard.idle = !shard.lent;
      shard.wake.wait(lock);
      shard.idle = false;
      shard.wake_at = 0;
    }
    take_locked(shard, batch, batch_size);
    if (batch.size() < batch_size && config_.flush_interval > std::chrono::nanoseconds::zero()) {
      const auto deadline = batch.front().enqueued + config_.flush_interval;
      while (batch.size() < batch_size && !shard.closed && Clock::now() < deadline) {
        shard.wake_at = batch_size - batch.size();
        shard.wake.wait_until(lock, deadline);
        shard.wake_at = 0;
        take_locked(shard, batch, batch_size - batch.size());
      }
    }
    return true;
  }

  // Returns when the shard has a message, the optimizer stops, or idle_spin has passed.
  void spin_for_work(const Shard& shard) const noexcept {
    const auto deadline = Clock::now() + idle_spin_;
    for (unsigned i = 1;; ++i) {
      if (shard.size_hint.load(std::memory_order_acquire) != 0 ||
          stopping_.load(std::memory_order_relaxed)) {
        return;
      }
      if (i % 64 == 0) {
        if (Clock::now() >= deadline) {
          return;
        }
        // Let another thread of this CPU run: workers may share CPUs with producers.
        std::this_thread::yield();
      } else {
        cpu_relax();
      }
    }
  }

  void worker_main(std::size_t index, std::latch& ready) noexcept {
    WorkerState& self = *workers_[index];
    Shard& shard = *shards_[index];
    std::optional<int> cpu;
    if (!cpus_.empty()) {
      cpu = cpus_[index % cpus_.size()];
    }
    const std::string name =
        config_.tuning.name_threads ? "v2-worker-" + std::to_string(index) : "";
    self.tid.store(ledger_.apply_to_current_thread(name, index, cpu), std::memory_order_release);
    ready.count_down();

    const RouteContext context{index};
    std::vector<Slot> batch;
    batch.reserve(config_.batch_size);
    while (collect_batch(shard, batch)) {
      auto now = Clock::now();
      for (Slot& slot : batch) {
        now = route_one(self, slot.message, context, slot.enqueued, now);
      }
      router_.end_batch(context);
      self.batches.add(1);
      batch.clear();
    }
  }

  // Routes one message for worker `self` and records it; `now` is when routing starts.
  // Returns when it ended. Only the thread that holds the worker's turn calls it: the worker,
  // or a producer the turn is lent to.
  Clock::time_point route_one(WorkerState& self, Message& message, const RouteContext& context,
                              Clock::time_point enqueued, Clock::time_point now) noexcept {
    self.queue_latency.record(elapsed_ns(enqueued, now));
    const auto type = static_cast<std::size_t>(message.type);
    if (message.is_for_broker()) {
      router_.handle_broker(message, context);
    } else {
      router_.route(message, context);
    }
    const auto done = Clock::now();
    self.route_latency.record(elapsed_ns(now, done));
    if (type < kMessageTypeCount) {
      self.routed_by_type[type].add(1);
    }
    self.routed.add(1);
    return done;
  }

  void stats_main(std::latch& ready) noexcept;

  StopReport stop_locked(StopMode mode) noexcept;

  Router& router_;
  OptimizerConfig config_;
  detail::TuningLedger ledger_;
  std::size_t worker_count_ = 0;
  std::vector<int> cpus_;
  std::chrono::nanoseconds idle_spin_{0};  // config_.idle_spin, or zero when oversubscribed
  std::vector<std::unique_ptr<Shard>> shards_;
  std::vector<std::unique_ptr<WorkerState>> workers_;

  alignas(kCacheLine) std::atomic<std::size_t> queued_{0};
  alignas(kCacheLine) std::atomic<std::size_t> room_waiters_{0};
  std::atomic<bool> stopping_{false};
  std::mutex room_mutex_;
  std::condition_variable room_;

  std::mutex lifecycle_mutex_;
  bool started_ = false;
  bool stopped_ = false;
  std::size_t threads_started_ = 0;
  std::thread stats_thread_;
  StatsCallback stats_callback_;

  // Stats thread state: its wake-up, and what it publishes for metrics().
  mutable std::mutex stats_mutex_;
  std::condition_variable stats_wake_;
  bool stats_stop_ = false;
  double messages_per_second_ = 0.0;
  detail::HistogramCounts recent_queue_;
  detail::HistogramCounts recent_route_;
};

StopReport Optimizer::Impl::stop_locked(StopMode mode) noexcept {
  if (stopped_) {
    return {};
  }
  stopped_ = true;

  {
    // Under room_mutex_ so no producer can check stopping_ and then sleep past the notify.
    const std::lock_guard lock(room_mutex_);
    stopping_.store(true, std::memory_order_release);
  }
  room_.notify_all();

  for (auto& shard : shards_) {
    {
      const std::lock_guard lock(shard->mutex);
      shard->closed = true;
      shard->abandon = mode == StopMode::abandon;
    }
    shard->wake.notify_all();
  }

  for (std::size_t i = 0; i < threads_started_; ++i) {
    workers_[i]->thread.join();
  }
  {
    const std::lock_guard lock(stats_mutex_);
    stats_stop_ = true;
  }
  stats_wake_.notify_all();
  if (stats_thread_.joinable()) {
    stats_thread_.join();
  }

  // What is left was never taken: workers were told to abandon it, or never started. A drain
  // without workers routes it here, on the stopping thread, in queue order per shard.
  StopReport report;
  for (std::size_t i = 0; i < shards_.size(); ++i) {
    Shard& shard = *shards_[i];
    std::vector<Slot> rest;
    {
      const std::lock_guard lock(shard.mutex);
      rest.reserve(shard.ring.size());
      if (mode == StopMode::drain) {
        take_locked(shard, rest, shard.ring.size());
      } else {
        while (!shard.ring.empty()) {
          rest.push_back(shard.ring.pop_front());
        }
        shard.size_hint.store(0, std::memory_order_relaxed);
        shard.abandoned.add(rest.size());
        release_capacity(rest.size());
      }
    }
    if (rest.empty()) {
      continue;
    }
    const RouteContext context{i};
    for (Slot& slot : rest) {
      if (mode == StopMode::abandon) {
        router_.dropped(slot.message, DropReason::abandoned);
        continue;
      }
      if (const auto type = static_cast<std::size_t>(slot.message.type); type < kMessageTypeCount) {
        workers_[i]->routed_by_type[type].add(1);
      }
      if (slot.message.is_for_broker()) {
        router_.handle_broker(slot.message, context);
      } else {
        router_.route(slot.message, context);
      }
    }
    if (mode == StopMode::abandon) {
      report.abandoned += rest.size();
    } else {
      workers_[i]->routed.add(rest.size());
      router_.end_batch(context);
    }
  }
  return report;
}

void Optimizer::Impl::stats_main(std::latch& ready) noexcept {
  ledger_.apply_to_current_thread(config_.tuning.name_threads ? "v2-stats" : "", std::nullopt,
                                  std::nullopt);
  ready.count_down();

  // Reused every interval: the stats thread allocates only here, once.
  detail::HistogramCounts previous_queue;
  detail::HistogramCounts previous_route;
  detail::HistogramCounts queue_now;
  detail::HistogramCounts route_now;
  detail::HistogramCounts recent_queue;
  detail::HistogramCounts recent_route;
  std::uint64_t previous_routed = 0;
  auto previous_time = Clock::now();
  std::unique_lock lock(stats_mutex_);
  for (;;) {
    const auto deadline = previous_time + config_.stats_interval;
    if (stats_wake_.wait_until(lock, deadline, [this] { return stats_stop_; })) {
      return;
    }
    lock.unlock();

    queue_now.clear();
    route_now.clear();
    std::uint64_t routed = 0;
    for (const auto& worker : workers_) {
      routed += worker->routed.read();
      worker->queue_latency.snapshot_into(queue_now);
      worker->route_latency.snapshot_into(route_now);
    }
    const auto now = Clock::now();
    const double seconds = std::chrono::duration<double>(now - previous_time).count();
    recent_queue.assign(queue_now);
    recent_queue.subtract(previous_queue);
    recent_route.assign(route_now);
    recent_route.subtract(previous_route);

    lock.lock();
    messages_per_second_ =
        seconds > 0.0 ? static_cast<double>(routed - previous_routed) / seconds : 0.0;
    std::swap(recent_queue_, recent_queue);
    std::swap(recent_route_, recent_route);
    std::swap(previous_queue, queue_now);
    std::swap(previous_route, route_now);
    previous_routed = routed;
    previous_time = now;

    if (stats_callback_) {
      lock.unlock();
      stats_callback_(metrics());
      lock.lock();
    }
  }
}

MetricsSnapshot Optimizer::Impl::metrics() const {
  MetricsSnapshot snapshot;
  snapshot.taken_at = Clock::now();
  snapshot.capacity = config_.buffer_capacity;
  snapshot.workers.resize(workers_.size());

  // A consistent cut: every change to the queue counters happens under a shard lock, so with
  // all of them held (in index order, as producers take them) those counters stand still.
  // Routed counts still grow, but only up to what was taken, so they are read last.
  std::uint64_t pushed = 0;
  std::uint64_t taken = 0;
  for (const auto& shard : shards_) {
    shard->mutex.lock();
  }
  for (std::size_t i = 0; i < shards_.size(); ++i) {
    const Shard& shard = *shards_[i];
    pushed += shard.pushed.read();
    taken += shard.taken.read();
    snapshot.dropped.evicted += shard.evicted.read();
    snapshot.dropped.abandoned += shard.abandoned.read();
    snapshot.workers[i].queued = shard.ring.size();
  }
  for (std::size_t i = 0; i < workers_.size(); ++i) {
    snapshot.workers[i].routed = workers_[i]->routed.read();  // NOLINT(modernize-loop-convert)
    snapshot.routed += snapshot.workers[i].routed;
  }
  for (std::size_t i = shards_.size(); i-- > 0;) {
    shards_[i]->mutex.unlock();
  }

  for (const auto& shard : shards_) {
    snapshot.dropped.full += shard->refused_full.load(std::memory_order_relaxed);
    snapshot.dropped.timed_out += shard->refused_timeout.load(std::memory_order_relaxed);
    snapshot.dropped.stopped += shard->refused_stopped.load(std::memory_order_relaxed);
  }
  detail::HistogramCounts queue_latency;
  detail::HistogramCounts route_latency;
  for (std::size_t i = 0; i < workers_.size(); ++i) {
    const WorkerState& worker = *workers_[i];
    snapshot.workers[i].batches = worker.batches.read();
    for (std::size_t t = 0; t < kMessageTypeCount; ++t) {
      snapshot.routed_by_type[t] += worker.routed_by_type[t].read();
    }
    worker.queue_latency.snapshot_into(queue_latency);
    worker.route_latency.snapshot_into(route_latency);
  }

  snapshot.in_flight = taken - snapshot.routed;
  snapshot.queued = pushed - taken - snapshot.dropped.evicted - snapshot.dropped.abandoned;
  snapshot.offered =
      pushed + snapshot.dropped.full + snapshot.dropped.timed_out + snapshot.dropped.stopped;
  snapshot.saturation =
      static_cast<double>(snapshot.queued) / static_cast<double>(config_.buffer_capacity);
  snapshot.queue_latency = queue_latency.summary();
  snapshot.route_latency = route_latency.summary();
  {
    const std::lock_guard lock(stats_mutex_);
    snapshot.messages_per_second = messages_per_second_;
    snapshot.recent_queue_latency = recent_queue_.summary();
    snapshot.recent_route_latency = recent_route_.summary();
  }
  return snapshot;
}

Optimizer::Optimizer(Router& router, OptimizerConfig config)
    : impl_(std::make_unique<Impl>(router, std::move(config))) {}

Optimizer::~Optimizer() = default;

void Optimizer::set_stats_callback(StatsCallback callback) {
  impl_->set_stats_callback(std::move(callback));
}

void Optimizer::start() {
  impl_->start();
}

OfferResult Optimizer::offer(Message&& message) noexcept {
  return impl_->offer(std::move(message));
}

OfferResult Optimizer::offer_direct(Message&& message) noexcept {
  return impl_->offer_direct(std::move(message));
}

StopReport Optimizer::stop(StopMode mode) noexcept {
  return impl_->stop(mode);
}

MetricsSnapshot Optimizer::metrics() const {
  return impl_->metrics();
}

LatencyHistograms Optimizer::latency_histograms(std::span<const std::uint64_t> bounds_ns) const {
  return impl_->latency_histograms(bounds_ns);
}

void Optimizer::tune_message_thread() {
  impl_->tune_message_thread();
}

TuningReport Optimizer::tuning_report() const {
  return impl_->tuning_report();
}

const OptimizerConfig& Optimizer::config() const noexcept {
  return impl_->config();
}

std::size_t Optimizer::worker_count() const noexcept {
  return impl_->worker_count();
}

std::vector<pid_t> Optimizer::worker_tids() const {
  return impl_->worker_tids();
}

}  // namespace v2
