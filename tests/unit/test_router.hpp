#pragma once

#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "v2broker/optimizer.hpp"

namespace v2::testing {

/// Polls `done` until it holds or `limit` passes; returns its last value. For waiting on
/// asynchronous effects, never for asserting how long something took.
inline bool eventually(const std::function<bool()>& done,
                       std::chrono::milliseconds limit = std::chrono::seconds(20)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) {
      return done();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

/// A router that records what it sees and can hold workers inside route() until opened.
class RecordingRouter : public Router {
 public:
  struct Routed {
    Message message;
    std::size_t worker;
    pid_t tid;
  };

  void handle_broker(Message& message, const RouteContext& context) noexcept override {
    record(message, context, broker_calls_);
  }
  void route(Message& message, const RouteContext& context) noexcept override {
    record(message, context, routed_);
  }
  void end_batch(const RouteContext& context) noexcept override {
    const std::lock_guard lock(mutex_);
    batch_sizes_.push_back(in_batch_[context.worker]);
    in_batch_[context.worker] = 0;
  }
  void dropped(Message& message, DropReason reason) noexcept override {
    const std::lock_guard lock(mutex_);
    (reason == DropReason::evicted ? evicted_ : abandoned_).push_back(message.id);
  }

  /// While closed, every worker that enters route() waits there.
  void close_gate() {
    const std::lock_guard lock(mutex_);
    gate_open_ = false;
  }
  void open_gate() {
    {
      const std::lock_guard lock(mutex_);
      gate_open_ = true;
    }
    changed_.notify_all();
  }
  /// Workers currently held at the closed gate.
  std::size_t waiting_at_gate() const {
    const std::lock_guard lock(mutex_);
    return waiting_;
  }

  std::size_t routed_count() const {
    const std::lock_guard lock(mutex_);
    return routed_.size();
  }
  std::vector<Routed> routed() const {
    const std::lock_guard lock(mutex_);
    return routed_;
  }
  std::vector<Routed> broker_calls() const {
    const std::lock_guard lock(mutex_);
    return broker_calls_;
  }
  std::vector<std::size_t> batch_sizes() const {
    const std::lock_guard lock(mutex_);
    return batch_sizes_;
  }
  std::vector<std::string> evicted() const {
    const std::lock_guard lock(mutex_);
    return evicted_;
  }
  std::vector<std::string> abandoned() const {
    const std::lock_guard lock(mutex_);
    return abandoned_;
  }

 private:
  void record(Message& message, const RouteContext& context, std::vector<Routed>& into) {
    std::unique_lock lock(mutex_);
    ++waiting_;
    changed_.wait(lock, [this] { return gate_open_; });
    --waiting_;
    into.push_back({std::move(message), context.worker, ::gettid()});
    ++in_batch_[context.worker];
  }

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  bool gate_open_ = true;
  std::size_t waiting_ = 0;
  std::map<std::size_t, std::size_t> in_batch_;  // messages in the current batch, by worker
  std::vector<Routed> routed_;
  std::vector<Routed> broker_calls_;
  std::vector<std::size_t> batch_sizes_;
  std::vector<std::string> evicted_;
  std::vector<std::string> abandoned_;
};

inline Message make_message(std::string id, std::string source = "alice",
                            std::string target = "bob") {
  Message message;
  message.type = MessageType::event;
  message.id = std::move(id);
  message.source = std::move(source);
  message.target = std::move(target);
  return message;
}

}  // namespace v2::testing
