#include "scenario.hpp"

#include <sys/prctl.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <ctime>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>

#include "common.hpp"
#include "endpoint.hpp"

namespace v2bench {
namespace {

constexpr std::int64_t kNsPerS = 1'000'000'000;
constexpr int kPollMs = 10;
/// Messages offered per clock reading in throughput mode: a batch leaves in one write anyway.
constexpr std::uint64_t kOffersPerClockRead = 64;

std::int64_t seconds_to_ns(double s) {
  return static_cast<std::int64_t>(s * 1e9);
}

double thread_cpu_seconds() {
  rusage usage{};
  if (::getrusage(RUSAGE_THREAD, &usage) != 0) {
    return 0.0;
  }
  const auto tv = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
  };
  return tv(usage.ru_utime) + tv(usage.ru_stime);
}

void sleep_until_ns(std::int64_t when) {
  timespec ts{};
  ts.tv_sec = when / kNsPerS;
  ts.tv_nsec = when % kNsPerS;
  while (::clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) {
  }
}

/// Shared between a sender (or round-trip client) and the receivers.
struct SenderState {
  std::atomic<std::uint64_t> sent{0};      ///< final count, valid once done
  std::atomic<std::uint64_t> rejected{0};  ///< error replies received so far
  std::atomic<bool> done{false};
  double cpu_s = 0.0;
  double max_lateness_ns = 0.0;
  std::string error_text;  ///< first error reply
};

struct Shared {
  const ScenarioConfig& config;
  PayloadPattern pattern;
  std::vector<SenderState> senders;
  std::atomic<std::size_t> receivers_done{0};
  std::int64_t start_ns = 0;
  std::int64_t measure_from_ns = 0;
  std::mutex failure_mutex;
  std::vector<std::string> failures;

  explicit Shared(const ScenarioConfig& c) : config(c), pattern(c.size), senders(c.senders) {}

  void fail(std::string text) {
    const std::lock_guard lock(failure_mutex);
    failures.push_back(std::move(text));
  }

  [[nodiscard]] std::string name(char role, std::size_t index) const {
    return config.prefix + role + std::to_string(index);
  }

  [[nodiscard]] bool all_receivers_done() const noexcept {
    return receivers_done.load(std::memory_order_acquire) == config.receivers;
  }
};

/// Counts what a sender reads back: error replies from the broker.
class SenderSink final : public Sink {
 public:
  explicit SenderSink(SenderState& state) : state_(state) {}

  void on_message(const Delivered& m) override {
    if (m.type == v2::MessageType::error) {
      if (state_.rejected.load(std::memory_order_relaxed) == 0) {
        state_.error_text = std::string(m.error);
      }
      state_.rejected.fetch_add(1, std::memory_order_release);
    }
  }

 private:
  SenderState& state_;
};

/// What every receiving role checks: source, id, payload, order; and the latency it times.
class Verifier {
 public:
  explicit Verifier(const Shared& shared) : shared_(shared), expected_(shared.senders.size()) {}

  /// Returns the sender index when the message is a valid benchmark message, else -1.
  long check(const Delivered& m) {
    if (m.type == v2::MessageType::error) {
      ++unexpected_;
      if (error_text_.empty()) {
        error_text_ = std::string(m.error);
      }
      return -1;
    }
    const long sender = parse_member(m.source, shared_.config.prefix, 's');
    if (sender < 0 || static_cast<std::size_t>(sender) >= expected_.size()) {
      ++unexpected_;
      return -1;
    }
    const auto index = static_cast<std::size_t>(sender);
    std::uint64_t seq = 0;
    std::uint64_t time_ns = 0;
    if (!parse_id(m.id, seq, time_ns) || !shared_.pattern.matches(m.payload, index)) {
      ++corrupt_;
      return -1;
    }
    std::uint64_t& expected = expected_[index];
    if (seq < expected) {
      ++out_of_order_;  // a duplicate, or overtaken by a later one: not delivered in order
      return -1;
    }
    if (seq > expected) {
      ++gaps_;  // the messages in between are missing; if one arrives later it is counted late
    }
    expected = seq + 1;
    ++delivered_;
    last_seq_time_ = static_cast<std::int64_t>(time_ns);
    if (last_seq_time_ >= shared_.measure_from_ns) {
      ++measured_;
      latency.record(
          static_cast<std::uint64_t>(std::max<std::int64_t>(0, m.received_ns - last_seq_time_)));
    }
    last_ns_ = m.received_ns;
    return sender;
  }

  v2::detail::HistogramCounts latency;

  [[nodiscard]] std::uint64_t delivered() const noexcept { return delivered_; }
  [[nodiscard]] std::uint64_t measured() const noexcept { return measured_; }
  [[nodiscard]] std::uint64_t corrupt() const noexcept { return corrupt_; }
  [[nodiscard]] std::uint64_t out_of_order() const noexcept { return out_of_order_; }
  [[nodiscard]] std::uint64_t gaps() const noexcept { return gaps_; }
  [[nodiscard]] std::uint64_t unexpected() const noexcept { return unexpected_; }
  [[nodiscard]] std::int64_t last_ns() const noexcept { return last_ns_; }
  [[nodiscard]] const std::string& error_text() const noexcept { return error_text_; }
  /// Messages of `sender` accounted for: the next sequence number expected.
  [[nodiscard]] std::uint64_t next_seq(std::size_t sender) const noexcept {
    return expected_[sender];
  }

 private:
  const Shared& shared_;
  std::vector<std::uint64_t> expected_;
  std::uint64_t delivered_ = 0;
  std::uint64_t measured_ = 0;
  std::uint64_t corrupt_ = 0;
  std::uint64_t out_of_order_ = 0;
  std::uint64_t gaps_ = 0;
  std::uint64_t unexpected_ = 0;
  std::int64_t last_ns_ = 0;
  std::int64_t last_seq_time_ = 0;
  std::string error_text_;
};

/// A receiver (throughput, paced) or echo peer (roundtrip).
class ReceiverSink final : public Sink {
 public:
  ReceiverSink(const Shared& shared, Endpoint& endpoint, bool echo)
      : verifier(shared), endpoint_(endpoint), echo_(echo) {}

  void on_message(const Delivered& m) override {
    if (verifier.check(m) >= 0 && echo_) {
      endpoint_.echo_current();
    }
  }

  Verifier verifier;
  double cpu_s = 0.0;

 private:
  Endpoint& endpoint_;
  bool echo_;
};

// True once every sender served by receiver `self` is done and all it sent is accounted for.
bool receiver_complete(const Shared& shared, const Verifier& verifier, std::size_t self) {
  for (std::size_t i = self; i < shared.senders.size(); i += shared.config.receivers) {
    const SenderState& s = shared.senders[i];
    if (!s.done.load(std::memory_order_acquire)) {
      return false;
    }
    const std::uint64_t accounted =
        verifier.next_seq(i) + s.rejected.load(std::memory_order_acquire);
    if (accounted < s.sent.load(std::memory_order_relaxed)) {
      return false;
    }
  }
  return true;
}

void run_receiver(Shared& shared, Endpoint& endpoint, ReceiverSink& sink, std::size_t self) {
  const bool echo = shared.config.mode == Mode::roundtrip;
  std::uint64_t seen = 0;
  std::int64_t idle_since = 0;
  for (;;) {
    if (!endpoint.poll(kPollMs)) {
      shared.fail("receiver " + shared.name('r', self) + ": the broker closed the connection");
      break;
    }
    if (echo) {
      endpoint.flush();
    }
    if (echo ? std::all_of(shared.senders.begin(), shared.senders.end(),
                           [](const SenderState& s) { return s.done.load(); })
             : receiver_complete(shared, sink.verifier, self)) {
      break;
    }
    // After every sender finished, give up on the missing messages once nothing arrived for
    // drain_timeout_s.
    const std::uint64_t now_seen = sink.verifier.delivered();
    const std::int64_t now = now_ns();
    if (now_seen != seen || idle_since == 0) {
      seen = now_seen;
      idle_since = now;
    } else if (now - idle_since > seconds_to_ns(shared.config.drain_timeout_s) &&
               std::all_of(shared.senders.begin(), shared.senders.end(),
                           [](const SenderState& s) { return s.done.load(); })) {
      break;
    }
  }
  sink.cpu_s = thread_cpu_seconds();
  shared.receivers_done.fetch_add(1, std::memory_order_release);
}

void run_sender(Shared& shared, Endpoint& endpoint, std::size_t self) {
  const ScenarioConfig& c = shared.config;
  SenderState& state = shared.senders[self];
  SenderSink sink(state);
  endpoint.set_sink(&sink);
  endpoint.set_template(shared.name('r', self % c.receivers), shared.pattern.make(self));
  const std::int64_t end = shared.start_ns + seconds_to_ns(c.duration_s);
  const auto more = [&](std::uint64_t seq, std::int64_t now) {
    return c.count > 0 ? seq < c.count : now < end;
  };
  sleep_until_ns(shared.start_ns);

  std::uint64_t seq = 0;
  if (c.mode == Mode::throughput) {
    for (std::int64_t now = now_ns(); more(seq, now); now = now_ns()) {
      for (std::uint64_t k = 0; k < kOffersPerClockRead && more(seq, now); ++k) {
        endpoint.offer(seq++, static_cast<std::uint64_t>(now));
      }
    }
  } else {
    // Open loop: message k is due at start + offset + k * interval, whatever happened to the
    // earlier ones; a late message is sent at once and timed from when it was due.
    const double interval = static_cast<double>(c.senders) * 1e9 / c.rate;
    const auto offset = static_cast<std::int64_t>(static_cast<double>(self) * 1e9 / c.rate);
    (void)::prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);  // best effort: 1 ns timer slack
    for (;;) {
      const std::int64_t due =
          shared.start_ns + offset + static_cast<std::int64_t>(static_cast<double>(seq) * interval);
      if (c.count > 0 ? seq >= c.count : due >= end) {
        break;
      }
      std::int64_t now = now_ns();
      if (now < due) {
        endpoint.flush();
        sleep_until_ns(due);
        now = now_ns();
      }
      state.max_lateness_ns = std::max(state.max_lateness_ns, static_cast<double>(now - due));
      endpoint.offer(seq++, static_cast<std::uint64_t>(due));
    }
  }
  endpoint.flush();
  state.cpu_s = thread_cpu_seconds();
  state.sent.store(seq, std::memory_order_relaxed);
  state.done.store(true, std::memory_order_release);

  while (!shared.all_receivers_done()) {
    (void)endpoint.poll(kPollMs);  // error replies may still arrive
  }
}

/// Round-trip client: one message at a time, timed until its echo returns.
class RoundTripSink final : public Sink {
 public:
  explicit RoundTripSink(Shared& shared, SenderState& state, std::size_t self)
      : shared_(shared), state_(state), self_(self) {}

  void on_message(const Delivered& m) override {
    if (m.type == v2::MessageType::error) {
      if (state_.rejected.fetch_add(1) == 0) {
        state_.error_text = std::string(m.error);
      }
      answered = true;
      return;
    }
    std::uint64_t seq = 0;
    std::uint64_t time_ns = 0;
    const long echo = parse_member(m.source, shared_.config.prefix, 'r');
    if (echo < 0 || static_cast<std::size_t>(echo) != self_ % shared_.config.receivers ||
        !parse_id(m.id, seq, time_ns) || !shared_.pattern.matches(m.payload, self_)) {
      ++corrupt;
      return;
    }
    if (seq != awaited) {
      ++out_of_order;
      return;
    }
    answered = true;
    ++delivered;
    if (static_cast<std::int64_t>(time_ns) >= shared_.measure_from_ns) {
      latency.record(static_cast<std::uint64_t>(
          std::max<std::int64_t>(0, m.received_ns - static_cast<std::int64_t>(time_ns))));
    }
  }

  v2::detail::HistogramCounts latency;
  std::uint64_t awaited = 0;
  bool answered = false;
  std::uint64_t delivered = 0;
  std::uint64_t corrupt = 0;
  std::uint64_t out_of_order = 0;
  std::uint64_t timed_out = 0;

 private:
  Shared& shared_;
  SenderState& state_;
  std::size_t self_;
};

void run_roundtrip_client(Shared& shared, Endpoint& endpoint, RoundTripSink& sink,
                          std::size_t self) {
  const ScenarioConfig& c = shared.config;
  SenderState& state = shared.senders[self];
  endpoint.set_sink(&sink);
  endpoint.set_template(shared.name('r', self % c.receivers), shared.pattern.make(self));
  const std::int64_t end = shared.start_ns + seconds_to_ns(c.duration_s);
  sleep_until_ns(shared.start_ns);

  std::uint64_t seq = 0;
  for (std::int64_t now = now_ns(); c.count > 0 ? seq < c.count : now < end; now = now_ns()) {
    sink.awaited = seq;
    sink.answered = false;
    endpoint.offer(seq++, static_cast<std::uint64_t>(now));
    endpoint.flush();
    const std::int64_t give_up = now + seconds_to_ns(c.drain_timeout_s);
    while (!sink.answered && now_ns() < give_up) {
      if (!endpoint.poll(kPollMs)) {
        shared.fail("client " + shared.name('s', self) + ": the broker closed the connection");
        break;
      }
    }
    if (!sink.answered) {
      ++sink.timed_out;  // lost: a later echo of it would be counted out of order
      break;
    }
  }
  state.cpu_s = thread_cpu_seconds();
  state.sent.store(seq, std::memory_order_relaxed);
  state.done.store(true, std::memory_order_release);
}

std::unique_ptr<Endpoint> connect(const ScenarioConfig& c, void* zmq_context,
                                  const std::string& name) {
  if (c.peer == Peer::zmq) {
    return connect_zmq(zmq_context, c.socket_path, name);
  }
  V2Options options;
  options.framing = c.framing;
  options.max_message_size = std::max(v2::wire::kDefaultMaxMessageSize, c.size + 4096);
  return connect_v2(c.socket_path, name, options);
}

/// Runs `body` on a thread and keeps its exception for the caller.
template <typename Body>
std::thread guarded(Shared& shared, std::string what, Body body) {
  return std::thread([&shared, what = std::move(what), body]() mutable {
    try {
      body();
    } catch (const std::exception& error) {
      shared.fail(what + ": " + error.what());
      // Let the others finish: a failed sender counts as done, a failed receiver too.
    }
  });
}

}  // namespace

ScenarioResult run_scenario(const ScenarioConfig& config) {
  Shared shared(config);
  void* zmq_context = config.peer == Peer::zmq ? make_zmq_context(config.zmq_io_threads) : nullptr;
  struct ContextGuard {
    void* context;
    ~ContextGuard() { destroy_zmq_context(context); }
  } context_guard{zmq_context};

  // Receivers first, so no message finds its target missing.
  std::vector<std::unique_ptr<Endpoint>> receivers;
  std::vector<std::unique_ptr<Endpoint>> senders;
  for (std::size_t j = 0; j < config.receivers; ++j) {
    receivers.push_back(connect(config, zmq_context, shared.name('r', j)));
  }
  for (std::size_t i = 0; i < config.senders; ++i) {
    senders.push_back(connect(config, zmq_context, shared.name('s', i)));
  }

  std::vector<std::unique_ptr<ReceiverSink>> receiver_sinks;
  std::vector<std::unique_ptr<RoundTripSink>> client_sinks;
  const bool roundtrip = config.mode == Mode::roundtrip;
  for (std::size_t j = 0; j < config.receivers; ++j) {
    receiver_sinks.push_back(std::make_unique<ReceiverSink>(shared, *receivers[j], roundtrip));
    receivers[j]->set_sink(receiver_sinks.back().get());
  }
  for (std::size_t i = 0; roundtrip && i < config.senders; ++i) {
    client_sinks.push_back(std::make_unique<RoundTripSink>(shared, shared.senders[i], i));
  }

  // Every thread starts at the same instant, after all are created.
  shared.start_ns = now_ns() + 50'000'000 + static_cast<std::int64_t>(config.senders) * 200'000;
  shared.measure_from_ns = shared.start_ns + seconds_to_ns(config.warmup_s);
  std::vector<std::thread> threads;
  threads.reserve(config.senders + config.receivers);
  for (std::size_t j = 0; j < config.receivers; ++j) {
    threads.push_back(guarded(shared, "receiver " + shared.name('r', j), [&, j] {
      try {
        run_receiver(shared, *receivers[j], *receiver_sinks[j], j);
      } catch (...) {
        shared.receivers_done.fetch_add(1, std::memory_order_release);
        throw;
      }
    }));
  }
  for (std::size_t i = 0; i < config.senders; ++i) {
    threads.push_back(guarded(shared, "sender " + shared.name('s', i), [&, i] {
      try {
        if (roundtrip) {
          run_roundtrip_client(shared, *senders[i], *client_sinks[i], i);
        } else {
          run_sender(shared, *senders[i], i);
        }
      } catch (...) {
        shared.senders[i].done.store(true, std::memory_order_release);
        throw;
      }
    }));
  }
  for (auto& t : threads) {
    t.join();
  }
  const std::int64_t finished = now_ns();

  ScenarioResult r;
  r.failures = shared.failures;
  std::uint64_t measured = 0;
  std::int64_t last = shared.start_ns;
  for (std::size_t i = 0; i < config.senders; ++i) {
    const SenderState& s = shared.senders[i];
    r.sent += s.sent.load();
    r.rejected += s.rejected.load();
    r.sender_cpu_max = std::max(r.sender_cpu_max, s.cpu_s);
    r.max_send_lateness_us = std::max(r.max_send_lateness_us, s.max_lateness_ns / 1e3);
    if (s.rejected.load() > 0) {
      r.failures.push_back(shared.name('s', i) + " got " + std::to_string(s.rejected.load()) +
                           " error replies, first: " + s.error_text);
    }
  }
  for (const auto& sink : receiver_sinks) {
    const Verifier& v = sink->verifier;
    r.corrupt += v.corrupt();
    r.out_of_order += v.out_of_order();
    r.gaps += v.gaps();
    r.unexpected += v.unexpected();
    r.receiver_cpu_max = std::max(r.receiver_cpu_max, sink->cpu_s);
    if (!roundtrip) {
      r.delivered += v.delivered();
      measured += v.measured();
      r.latency.add(v.latency);
      last = std::max(last, v.last_ns());
    }
    if (!v.error_text().empty()) {
      r.failures.push_back("a receiver got an error reply: " + v.error_text());
    }
  }
  for (const auto& sink : client_sinks) {
    r.delivered += sink->delivered;
    r.corrupt += sink->corrupt;
    r.out_of_order += sink->out_of_order;
    r.latency.add(sink->latency);
    measured += sink->latency.count();
    last = finished;
  }

  r.lost = r.sent > r.delivered ? r.sent - r.delivered : 0;
  const std::int64_t window = last - shared.measure_from_ns;
  r.seconds = static_cast<double>(std::max<std::int64_t>(window, 1)) / 1e9;
  r.messages_per_s = static_cast<double>(measured) / r.seconds;
  r.payload_bytes_per_s = r.messages_per_s * static_cast<double>(config.size);
  const double sending_s = static_cast<double>(finished - shared.start_ns) / 1e9;
  r.sender_cpu_max /= sending_s;
  r.receiver_cpu_max /= sending_s;

  if (r.lost > 0) {
    r.failures.push_back("lost " + std::to_string(r.lost) + " of " + std::to_string(r.sent) +
                         " messages (" + std::to_string(r.rejected) + " refused with an error)");
  }
  if (r.corrupt > 0) {
    r.failures.push_back(std::to_string(r.corrupt) + " corrupt messages");
  }
  if (r.out_of_order > 0) {
    r.failures.push_back(std::to_string(r.out_of_order) +
                         " messages arrived after a later one of the same sender (reordered or "
                         "duplicated)");
  }
  if (r.unexpected > 0) {
    r.failures.push_back(std::to_string(r.unexpected) + " unexpected messages at receivers");
  }
  if (r.delivered == 0) {
    r.failures.emplace_back("nothing was delivered");
  }
  return r;
}

}  // namespace v2bench
