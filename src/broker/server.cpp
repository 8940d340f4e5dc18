#include "broker/server.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <deque>
#include <mutex>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "broker/connection.hpp"
#include "broker/listen_socket.hpp"
#include "broker/prometheus.hpp"
#include "broker/registry.hpp"
#include "broker/reports.hpp"
#include "sys/error.hpp"
#include "v2broker/optimizer.hpp"
#include "v2broker/wire.hpp"

namespace v2::broker {
namespace {

using sys::errno_text;

using Clock = std::chrono::steady_clock;

constexpr std::size_t kReadChunk = std::size_t{64} * 1024;
// Bytes read from one connection per turn before the loop serves the others.
constexpr std::size_t kReadBudget = std::size_t{256} * 1024;
// Replies from the broker itself (errors, call results) may take a receiver's outgoing buffer
// this far past --max-outgoing: a sender that reads, but has a large message on its way to it,
// still learns that a message of its own was refused. One that never reads stays bounded.
constexpr std::size_t kReplyHeadroom = std::size_t{64} * 1024;
constexpr int kMaxEvents = 256;
// epoll user data of the two fixed descriptors; connections use their id (from 16 on).
constexpr std::uint64_t kListenTag = 1;
constexpr std::uint64_t kSignalTag = 2;
constexpr std::uint64_t kWakeTag = 3;
constexpr std::uint64_t kFirstConnectionId = 16;
constexpr std::size_t kMaxNameLength = 255;

std::int64_t wall_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Why a name cannot be registered; empty when it can.
std::string name_problem(std::string_view name) {
  if (name.empty()) {
    return "name is empty";
  }
  if (name.size() > kMaxNameLength) {
    return "name length=" + std::to_string(name.size()) + " exceeds " +
           std::to_string(kMaxNameLength);
  }
  if (name == kBrokerName) {
    return "name=broker is reserved";
  }
  for (const char c : name) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      return "name holds a control character";
    }
  }
  return {};
}

// Message::origin packs the sending connection's id with one flag: whether the payload is known
// to be valid JSON (it came through the NDJSON decoder, or the broker wrote it), so that it can
// be written raw to NDJSON receivers without being checked again.
constexpr std::uint64_t make_origin(std::uint64_t connection, bool validated) noexcept {
  return connection << 1U | (validated ? 1U : 0U);
}
constexpr std::uint64_t origin_connection(std::uint64_t origin) noexcept {
  return origin >> 1U;
}
constexpr bool origin_validated(std::uint64_t origin) noexcept {
  return (origin & 1U) != 0;
}

Message make_response(const Message& request, const nlohmann::json& payload) {
  Message reply;
  reply.type = MessageType::response;
  reply.id = request.id;
  reply.source = std::string(kBrokerName);
  reply.target = request.source;
  reply.correlation_id = request.correlation_id;
  reply.payload = Payload::copy_of(payload.dump());
  reply.origin = make_origin(origin_connection(request.origin), true);
  return reply;
}

}  // namespace

void block_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  if (const int rc = ::pthread_sigmask(SIG_BLOCK, &set, nullptr); rc != 0) {
    throw std::runtime_error("pthread_sigmask: " + errno_text(rc));
  }
  if (::signal(SIGPIPE, SIG_IGN) == SIG_ERR) {  // NOLINT(cert-err33-c): result checked
    throw std::runtime_error("signal(SIGPIPE): " + errno_text(errno));
  }
}

class Server::Impl final : public Router {
 public:
  explicit Impl(BrokerOptions options)
      : options_(std::move(options)),
        listener_(options_.socket_path, options_.socket_mode, options_.socket_group),
        optimizer_(*this, options_.optimizer),
        touched_(optimizer_.worker_count()) {
    decoder_config_.max_message_size = options_.max_message_size;
    epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (epoll_fd_ < 0) {
      throw std::runtime_error("epoll_create1: " + errno_text(errno));
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    signal_fd_ = ::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (signal_fd_ < 0) {
      throw std::runtime_error("signalfd: " + errno_text(errno));
    }
    spare_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake_fd_ < 0) {
      throw std::runtime_error("eventfd: " + errno_text(errno));
    }
    watch(listener_.fd(), kListenTag, EPOLLIN);
    watch(signal_fd_, kSignalTag, EPOLLIN);
    watch(wake_fd_, kWakeTag, EPOLLIN);
    if (options_.access.restricts()) {
      spdlog::info("access: only these may connect: {}", options_.access.describe());
    }
    optimizer_.start();
  }

  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
  Impl(Impl&&) = delete;
  Impl& operator=(Impl&&) = delete;

  ~Impl() override {
    (void)optimizer_.stop(StopMode::abandon);
    if (spare_fd_ >= 0) {
      ::close(spare_fd_);
    }
    ::close(wake_fd_);
    ::close(signal_fd_);
    ::close(epoll_fd_);
  }

  int run();
  void tune_reading_thread();

  TuningReport tuning_report() const { return optimizer_.tuning_report(); }
  const std::string& socket_path() const noexcept { return listener_.path(); }
  std::string prometheus_text() const;

  // ---- Router: runs on the optimizer's workers ----

  void route(Message& message, const RouteContext& context) noexcept override {
    const auto target = registry_.by_name(message.target);
    if (target == nullptr) {
      unknown_target_.fetch_add(1, std::memory_order_relaxed);
      reply_error(message, "unknown target: no process is registered as " + message.target,
                  context);
      return;
    }
    deliver(target, message, context, Delivery::routed);
  }

  void handle_broker(Message& message, const RouteContext& context) noexcept override {
    try {
      std::optional<Message> reply = answer_call(message);
      if (reply) {
        if (const auto caller = registry_.by_id(origin_connection(message.origin))) {
          deliver(caller, *reply, context, Delivery::reply);
        }
      }
    } catch (const std::exception& error) {
      reply_error(message, error.what(), context);
    }
  }

  void end_batch(const RouteContext& context) noexcept override {
    auto& touched = touched_[context.worker];
    for (const auto& connection : touched) {
      const std::lock_guard lock(connection->out_mutex);
      if (!connection->dead) {
        (void)connection->flush_out();
      }
    }
    touched.clear();
  }

  void dropped(Message& message, DropReason reason) noexcept override {
    // Evicted by drop_oldest: the sender learns it was never delivered.
    if (reason == DropReason::evicted) {
      if (const auto sender = registry_.by_id(origin_connection(message.origin))) {
        try {
          Message error = wire::make_error_reply(
              message, "dropped: the broker queue was full and a newer message took its place");
          errors_.fetch_add(1, std::memory_order_relaxed);
          queue_direct(*sender, error);
        } catch (const std::exception&) {
          // Allocation failed; the drop is still counted by the optimizer.
        }
      }
    }
  }

 private:
  enum class Delivery : unsigned char { routed, reply };

  void watch(int fd, std::uint64_t tag, std::uint32_t events) const {
    epoll_event event{};
    event.events = events;
    event.data.u64 = tag;
    if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &event) != 0) {
      throw std::runtime_error("epoll_ctl(ADD fd=" + std::to_string(fd) +
                               "): " + errno_text(errno));
    }
  }

  // Queues `message` for `receiver` in the receiver's framing and remembers to flush it at the
  // end of the worker's batch.
  void deliver(const std::shared_ptr<Connection>& receiver_ptr, const Message& message,
               const RouteContext& context, Delivery kind) noexcept {
    Connection& receiver = *receiver_ptr;
    std::string refusal;
    {
      const std::lock_guard lock(receiver.out_mutex);
      if (receiver.dead) {
        refusal = "target disconnected: " + message.target;
        target_disconnected_.fetch_add(1, std::memory_order_relaxed);
      } else if (kind == Delivery::reply &&
                 receiver.out.size() >= options_.max_outgoing_bytes + kReplyHeadroom &&
                 may_drop_for(receiver)) {
        // A reply is not routed further: nobody to tell, it is only counted.
        replies_dropped_.fetch_add(1, std::memory_order_relaxed);
        return;
      } else if (kind == Delivery::routed && receiver.out.size() >= options_.max_outgoing_bytes &&
                 may_drop_for(receiver)) {
        receiver.dropped_slow.fetch_add(1, std::memory_order_relaxed);
        slow_drops_.fetch_add(1, std::memory_order_relaxed);
        if (options_.slow_receiver == SlowReceiverPolicy::disconnect) {
          receiver.close_requested = true;
          wake_io();
        }
        refusal = "dropped: receiver " + message.target + " is not reading (outgoing buffer " +
                  std::to_string(receiver.out.size()) + " bytes)";
      } else if (auto status = encode_into(receiver, message); !status.ok()) {
        refusal = "cannot deliver to " + message.target + ": " + status.text;
        undeliverable_.fetch_add(1, std::memory_order_relaxed);
      }
    }
    if (!refusal.empty()) {
      if (kind == Delivery::routed) {
        reply_error(message, refusal, context);
      }
      return;
    }
    receiver.received.fetch_add(1, std::memory_order_relaxed);
    delivered_.fetch_add(1, std::memory_order_relaxed);
    remember(receiver_ptr, context);
  }

  // Under `block`, senders wait for a receiver that reads (see hold_for_congested_receiver), and
  // what was already queued for it when they started waiting moves on to its buffer rather than
  // being dropped: it is in memory either way. Only a receiver that stopped reading drops.
  [[nodiscard]] bool may_drop_for(const Connection& receiver) const noexcept {
    return options_.optimizer.offer_policy != OfferPolicy::block ||
           receiver.stalled.load(std::memory_order_relaxed);
  }

  wire::EncodeResult encode_into(Connection& receiver, const Message& message) const {
    const wire::Framing framing = receiver.framing.load(std::memory_order_acquire);
    if (framing == wire::Framing::binary) {
      wire::BinaryFrame frame;
      wire::BinaryEncodeOptions binary;
      binary.max_message_size = options_.max_message_size;
      auto status = wire::encode_binary_frame(message, frame, binary);
      if (status.ok()) {
        receiver.out.append(std::string_view(reinterpret_cast<const char*>(frame.header.data()),
                                             frame.header.size()));
        receiver.out.append(frame.payload);
        receiver.note_queued();
      }
      return status;
    }
    wire::NdjsonEncodeOptions ndjson;
    ndjson.payload_check =
        message.encoding == PayloadEncoding::json && origin_validated(message.origin)
            ? wire::JsonPayloadCheck::trust
            : wire::JsonPayloadCheck::validate;
    auto status = wire::encode_ndjson(message, receiver.out.tail(), ndjson);
    receiver.out.commit();
    receiver.note_queued();
    return status;
  }

  void remember(const std::shared_ptr<Connection>& receiver, const RouteContext& context) {
    auto& touched = touched_[context.worker];
    if (std::find(touched.begin(), touched.end(), receiver) == touched.end()) {
      touched.push_back(receiver);
    }
  }

  // An error reply to the sender of `message`, delivered through the same path.
  void reply_error(const Message& message, std::string text, const RouteContext& context) noexcept {
    errors_.fetch_add(1, std::memory_order_relaxed);
    const auto sender = registry_.by_id(origin_connection(message.origin));
    if (sender == nullptr) {
      return;
    }
    try {
      const Message error = wire::make_error_reply(message, std::move(text));
      deliver(sender, error, context, Delivery::reply);
    } catch (const std::exception&) {
      // Allocation failed: the error is counted, the reply is lost.
    }
  }

  // Queues and flushes at once, for replies made outside a worker's batch.
  void queue_direct(Connection& receiver, const Message& message) {
    const std::lock_guard lock(receiver.out_mutex);
    if (receiver.dead) {
      return;
    }
    if (auto status = encode_into(receiver, message); !status.ok()) {
      // The reply itself does not fit this connection (a name too long for a binary field):
      // say so in a reply that does, rather than leave the client waiting.
      spdlog::warn("connection {}: reply id={} cannot be written: {}", receiver.id(), message.id,
                   status.text);
      const Message fallback = wire::make_error_reply(wire::kProtocolErrorId, {}, {},
                                                      "reply cannot be written: " + status.text);
      if (!encode_into(receiver, fallback).ok()) {
        return;
      }
    }
    (void)receiver.flush_out();
  }

  std::optional<Message> answer_call(const Message& call);

  RefusalCounts refusal_counts() const noexcept {
    RefusalCounts c;
    c.not_allowed = refused_not_allowed_.load(std::memory_order_relaxed);
    c.too_many_connections = refused_max_connections_.load(std::memory_order_relaxed);
    c.out_of_descriptors = refused_no_descriptor_.load(std::memory_order_relaxed);
    c.unknown_target = unknown_target_.load(std::memory_order_relaxed);
    c.target_disconnected = target_disconnected_.load(std::memory_order_relaxed);
    c.slow_receiver = slow_drops_.load(std::memory_order_relaxed);
    c.undeliverable = undeliverable_.load(std::memory_order_relaxed);
    c.protocol_errors = protocol_errors_.load(std::memory_order_relaxed);
    c.error_replies = errors_.load(std::memory_order_relaxed);
    c.replies_dropped = replies_dropped_.load(std::memory_order_relaxed);
    return c;
  }

  void wake_io() noexcept {
    // A worker asks the I/O loop to look at close requests.
    close_pending_.store(true, std::memory_order_release);
    const std::uint64_t one = 1;
    // Nothing to do on failure: EAGAIN means the counter is full, which already means "wake up".
    // (A named result: a (void) cast does not silence warn_unused_result under FORTIFY_SOURCE.)
    const ssize_t written = ::write(wake_fd_, &one, sizeof(one));
    static_cast<void>(written);
  }

  // ---- I/O thread ----

  // At most one warning per second for a repeated condition, with how many were skipped.
  class RateLimitedLog {
   public:
    bool should_log() {
      const auto now = Clock::now();
      if (now - last_ < std::chrono::seconds(1)) {
        ++suppressed_;
        return false;
      }
      last_ = now;
      return true;
    }
    std::string suppressed_text() {
      const std::uint64_t n = std::exchange(suppressed_, 0);
      return n == 0 ? std::string() : " (" + std::to_string(n) + " more since the last warning)";
    }

   private:
    Clock::time_point last_{};
    std::uint64_t suppressed_ = 0;
  };

  // Sends one NDJSON error line (the framing of a connection that has said nothing yet) and
  // closes the connection.
  static void turn_away(int fd, const std::string& text) {
    std::string line;
    (void)wire::encode_ndjson(wire::make_error_reply(wire::kProtocolErrorId, {}, {}, text), line);
    (void)::send(fd, line.data(), line.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    ::close(fd);
  }

  bool refuse_with_spare_descriptor(const std::string& why) {
    refused_connections_.fetch_add(1, std::memory_order_relaxed);
    refused_no_descriptor_.fetch_add(1, std::memory_order_relaxed);
    if (descriptor_log_.should_log()) {
      spdlog::warn(
          "accept: {}: turning connections away (connections={}, raise the open files "
          "limit, e.g. systemd LimitNOFILE=){}",
          why, connections_.size(), descriptor_log_.suppressed_text());
    }
    if (spare_fd_ < 0) {
      return false;
    }
    ::close(std::exchange(spare_fd_, -1));
    const int fd = ::accept4(listener_.fd(), nullptr, nullptr, SOCK_CLOEXEC);
    if (fd >= 0) {
      turn_away(fd, "connection refused: the broker is out of file descriptors");
    }
    spare_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    return fd >= 0;
  }

  void accept_all();
  void refuse_not_allowed(int fd, const ucred& peer, const std::string& why);
  void read_from(const std::shared_ptr<Connection>& connection);
  // Decodes what is buffered and handles it; false when the connection was closed.
  bool drain_decoder(const std::shared_ptr<Connection>& connection);
  /// `alone`: the message came by itself, with nothing read behind it; it may then be routed
  /// on this thread at once when its worker is idle (Optimizer::offer_direct).
  void offer_or_refuse(Connection& sender, Message&& message, bool alone = false);
  bool hold_for_congested_receiver(const std::shared_ptr<Connection>& sender, Message& message);
  void release_held();
  void refuse_held(const std::string& why);
  [[nodiscard]] std::size_t high_water() const noexcept { return options_.max_outgoing_bytes / 2; }
  [[nodiscard]] std::size_t low_water() const noexcept { return options_.max_outgoing_bytes / 4; }
  void handle_incoming(const std::shared_ptr<Connection>& connection, Message&& message,
                       bool alone);
  void register_name(const std::shared_ptr<Connection>& connection, const Message& call);
  void refuse(Connection& connection, const Message& message, std::string text);
  void close_connection(const std::shared_ptr<Connection>& connection, const char* why);
  static void flush_from_io(Connection& connection);
  void close_requested_connections();
  bool all_output_flushed();
  void log_stats();

  BrokerOptions options_;
  wire::DecoderConfig decoder_config_;
  ListenSocket listener_;
  Registry registry_;
  Optimizer optimizer_;
  std::vector<std::vector<std::shared_ptr<Connection>>> touched_;  // per worker
  int epoll_fd_ = -1;
  int signal_fd_ = -1;
  int wake_fd_ = -1;
  int spare_fd_ = -1;  // kept open to accept-and-refuse when out of descriptors
  RateLimitedLog descriptor_log_;
  RateLimitedLog refusal_log_;
  RateLimitedLog access_log_;
  std::uint64_t next_id_ = kFirstConnectionId;
  std::unordered_map<std::uint64_t, std::shared_ptr<Connection>> connections_;  // I/O thread
  std::deque<std::shared_ptr<Connection>> ready_;  // connections with unread input
  std::vector<std::shared_ptr<Connection>> held_;  // senders waiting for a congested receiver
  bool accepting_ = true;
  bool reading_thread_tuned_ = false;  // tune_reading_thread() ran
  std::atomic<bool> close_pending_{false};

  // Broker-wide statistics.
  std::atomic<std::uint64_t> received_{0};   // messages read from clients
  std::atomic<std::uint64_t> delivered_{0};  // messages queued to clients
  std::array<std::atomic<std::uint64_t>, kMessageTypeCount> received_by_type_{};
  std::atomic<std::int64_t> first_message_ns_{0};
  std::atomic<std::int64_t> last_message_ns_{0};
  std::atomic<std::uint64_t> errors_{0};
  std::atomic<std::uint64_t> unknown_target_{0};
  std::atomic<std::uint64_t> slow_drops_{0};
  std::atomic<std::uint64_t> replies_dropped_{0};
  std::atomic<std::uint64_t> refused_connections_{0};  // for any of the three reasons below
  std::atomic<std::uint64_t> refused_not_allowed_{0};
  std::atomic<std::uint64_t> refused_max_connections_{0};
  std::atomic<std::uint64_t> refused_no_descriptor_{0};
  std::atomic<std::uint64_t> target_disconnected_{0};
  std::atomic<std::uint64_t> undeliverable_{0};
  std::atomic<std::uint64_t> protocol_errors_{0};
  const Clock::time_point started_ = Clock::now();
  const std::int64_t started_wall_ns_ = wall_ns();
  std::uint64_t errors_at_last_rate_ = 0;
  Clock::time_point last_rate_time_ = Clock::now();
  double error_rate_ = 0.0;
  std::mutex rate_mutex_;
};

std::string Server::Impl::prometheus_text() const {
  ExpositionInput in;
  for (std::size_t t = 0; t < kMessageTypeCount; ++t) {
    in.broker.received_by_type[t] = received_by_type_[t].load(std::memory_order_relaxed);
  }
  in.broker.delivered = delivered_.load(std::memory_order_relaxed);
  in.broker.refused = refusal_counts();
  in.broker.connections = registry_.size();
  in.broker.registered_names = registry_.names().size();
  in.optimizer = optimizer_.metrics();
  in.latency = optimizer_.latency_histograms(latency_bucket_bounds_ns());
  in.tuning = optimizer_.tuning_report();
  in.start_time_ns = started_wall_ns_;
  return render_exposition(in);
}

std::optional<Message> Server::Impl::answer_call(const Message& call) {
  if (call.type != MessageType::request) {
    throw std::runtime_error("messages to broker must be requests, got type=" +
                             std::string(to_string(call.type)));
  }
  const std::string& method = call.id;
  if (method == "RPCGetMessageCount") {
    return make_response(call, {{"count", received_.load()}});
  }
  if (method == "RPCGetMessageStats") {
    nlohmann::json total = {
        {"total_sent", delivered_.load()},
        {"total_received", received_.load()},
        {"request_count", received_by_type_[0].load()},
        {"response_count", received_by_type_[1].load()},
        {"event_count", received_by_type_[2].load()},
        {"error_count", received_by_type_[3].load()},
        {"first_message_time", rfc3339(first_message_ns_.load())},
        {"last_message_time", rfc3339(last_message_ns_.load())},
        {"start_time", rfc3339(started_wall_ns_)},
    };
    nlohmann::json per_process = nlohmann::json::object();
    for (const auto& [name, connection] : registry_.names()) {
      const Connection& c = *connection;
      per_process[name] = {
          {"total_sent", c.sent.load()},
          {"total_received", c.received.load()},
          {"request_count", c.sent_by_type[0].load()},
          {"response_count", c.sent_by_type[1].load()},
          {"event_count", c.sent_by_type[2].load()},
          {"error_count", c.sent_by_type[3].load()},
          {"first_message_time", rfc3339(c.first_message_ns.load())},
          {"last_message_time", rfc3339(c.last_message_ns.load())},
      };
    }
    return make_response(call, {{"total", std::move(total)},
                                {"per_process", per_process},
                                {"optimizer", to_json(optimizer_.metrics())},
                                {"refused", to_json(refusal_counts())}});
  }
  if (method == "RPCGetKernelMetrics") {
    const MetricsSnapshot m = optimizer_.metrics();
    double error_rate = 0.0;
    {
      const std::lock_guard lock(rate_mutex_);
      const auto now = Clock::now();
      const double seconds = std::chrono::duration<double>(now - last_rate_time_).count();
      const std::uint64_t errors = errors_.load() + m.dropped.total();
      if (seconds >= 0.1) {
        error_rate_ = static_cast<double>(errors - errors_at_last_rate_) / seconds;
        errors_at_last_rate_ = errors;
        last_rate_time_ = now;
      }
      error_rate = error_rate_;
    }
    const auto p99 = m.recent_route_latency.count != 0
                         ? m.recent_queue_latency.p99 + m.recent_route_latency.p99
                         : m.queue_latency.p99 + m.route_latency.p99;
    return make_response(call, {{"p99_latency_ms", static_cast<double>(p99) / 1e6},
                                {"buffer_saturation", m.saturation * 100.0},
                                {"active_workers", optimizer_.worker_count()},
                                {"total_permits", 0},
                                {"allocated_permits", 0},
                                {"available_permits", 0},
                                {"message_rate", m.messages_per_second},
                                {"error_rate", error_rate}});
  }
  if (method == "RPCListProcesses") {
    std::unordered_map<const Connection*, std::vector<std::string>> names;
    for (auto& [name, connection] : registry_.names()) {
      names[connection.get()].push_back(name);
    }
    nlohmann::json processes = nlohmann::json::array();
    for (const auto& connection : registry_.connections()) {
      const auto it = names.find(connection.get());
      processes.push_back({{"names", it == names.end() ? std::vector<std::string>{} : it->second},
                           {"connection", connection->id()},
                           {"pid", connection->peer().pid},
                           {"uid", connection->peer().uid},
                           {"framing", std::string(wire::to_string(connection->framing.load()))},
                           {"sent", connection->sent.load()},
                           {"received", connection->received.load()},
                           {"dropped_slow", connection->dropped_slow.load()}});
    }
    return make_response(call, {{"processes", std::move(processes)}});
  }
  if (method == "RPCGetTuningStatus") {
    return make_response(call, to_json(optimizer_.tuning_report()));
  }
  throw std::runtime_error("unknown RPC method: " + method);
}

void Server::Impl::accept_all() {
  for (;;) {
    const int fd = ::accept4(listener_.fd(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      const int error = errno;
      if (error == EINTR || error == ECONNABORTED) {
        continue;
      }
      if (error == EMFILE || error == ENFILE) {
        // Out of descriptors: the listener stays readable, so take the connection with the
        // spare descriptor and turn it away with an error, or epoll would wake us forever.
        if (!refuse_with_spare_descriptor(errno_text(error))) {
          return;
        }
        continue;
      }
      if (error != EAGAIN && error != EWOULDBLOCK) {
        spdlog::warn("accept: {} socket={}", errno_text(error), listener_.path());
      }
      return;
    }
    ucred peer{};
    socklen_t length = sizeof(peer);
    const bool known = ::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &length) == 0;
    if (!known) {
      spdlog::warn("getsockopt(SO_PEERCRED fd={}): {}", fd, errno_text(errno));
    }
    if (options_.access.restricts()) {
      // Unknown credentials would read as uid 0, which is always admitted: refuse instead.
      const std::string why = known ? options_.access.refusal(fd, peer) : "credentials unknown";
      if (!why.empty()) {
        refuse_not_allowed(fd, peer, why);
        continue;
      }
    }
    if (connections_.size() >= options_.max_connections) {
      refused_connections_.fetch_add(1, std::memory_order_relaxed);
      refused_max_connections_.fetch_add(1, std::memory_order_relaxed);
      if (refusal_log_.should_log()) {
        spdlog::warn("refused a connection from pid={} uid={}: max_connections={} reached{}",
                     peer.pid, peer.uid, options_.max_connections, refusal_log_.suppressed_text());
      }
      turn_away(fd, "connection refused: the broker has max_connections=" +
                        std::to_string(options_.max_connections) + " connections");
      continue;
    }
    const std::uint64_t id = next_id_++;
    auto connection = std::make_shared<Connection>(id, fd, peer, decoder_config_);
    epoll_event event{};
    event.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    event.data.u64 = id;
    if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &event) != 0) {
      spdlog::warn("epoll_ctl(ADD fd={}): {}", fd, errno_text(errno));
      continue;  // the connection's destructor closes fd
    }
    connections_.emplace(id, connection);
    registry_.add(connection);
    spdlog::debug("connection {} from pid={} uid={}", id, peer.pid, peer.uid);
  }
}

void Server::Impl::refuse_not_allowed(int fd, const ucred& peer, const std::string& why) {
  refused_connections_.fetch_add(1, std::memory_order_relaxed);
  refused_not_allowed_.fetch_add(1, std::memory_order_relaxed);
  if (access_log_.should_log()) {
    spdlog::warn("refused a connection from pid={}: {}{}", peer.pid, why,
                 access_log_.suppressed_text());
  }
  turn_away(fd, "connection refused: uid=" + std::to_string(peer.uid) +
                    " gid=" + std::to_string(peer.gid) + " is not allowed to use this broker");
}

void Server::Impl::read_from(const std::shared_ptr<Connection>& connection) {
  Connection& c = *connection;
  std::size_t budget = kReadBudget;
  while (c.reading && !c.held && budget > 0) {
    const auto space = c.decoder().writable(kReadChunk);
    const ssize_t n = ::read(c.fd(), space.data(), space.size());
    if (n > 0) {
      c.decoder().commit(static_cast<std::size_t>(n));
      budget -= std::min(budget, static_cast<std::size_t>(n));
      if (!drain_decoder(connection)) {
        return;
      }
      continue;
    }
    if (n == 0) {
      // The peer shut down its sending side; it may still read replies. A full close shows
      // up as EPOLLHUP.
      c.reading = false;
      return;
    }
    const int error = errno;
    if (error == EINTR) {
      continue;
    }
    if (error == EAGAIN || error == EWOULDBLOCK) {
      return;
    }
    close_connection(connection, "read failed");
    return;
  }
  if (c.reading && !c.held) {
    ready_.push_back(connection);  // more to read: come back after serving the others
  }
}

bool Server::Impl::drain_decoder(const std::shared_ptr<Connection>& connection) {
  Connection& c = *connection;
  Message message;
  wire::ProtocolError error;
  bool first = true;
  while (!c.held) {
    const auto status = c.decoder().poll(message, error);
    if (status == wire::DecodeStatus::need_more) {
      break;
    }
    if (c.framing.load(std::memory_order_relaxed) == wire::Framing::unknown) {
      c.framing.store(c.decoder().framing(), std::memory_order_release);
    }
    if (status == wire::DecodeStatus::message) {
      const bool alone = first && c.decoder().buffered_bytes() == 0;
      first = false;
      handle_incoming(connection, std::move(message), alone);
      message = Message{};
      continue;
    }
    protocol_errors_.fetch_add(1, std::memory_order_relaxed);
    const std::string sender = c.names().empty() ? std::string() : c.names().front();
    Message reply = wire::make_error_reply(error, sender);
    queue_direct(c, reply);
    if (error.after == wire::AfterError::close) {
      spdlog::info("closing connection {}: {}", c.id(), error.text);
      close_connection(connection, "protocol error");
      return false;
    }
  }
  if (c.decoder().failed()) {
    close_connection(connection, "protocol error");
    return false;
  }
  return true;
}

void Server::Impl::handle_incoming(const std::shared_ptr<Connection>& connection, Message&& message,
                                   bool alone) {
  Connection& c = *connection;
  const std::int64_t now = wall_ns();
  received_.fetch_add(1, std::memory_order_relaxed);
  if (const auto type = static_cast<std::size_t>(message.type); type < kMessageTypeCount) {
    received_by_type_[type].fetch_add(1, std::memory_order_relaxed);
    c.sent_by_type[type].fetch_add(1, std::memory_order_relaxed);
  }
  std::int64_t unset = 0;
  first_message_ns_.compare_exchange_strong(unset, now, std::memory_order_relaxed);
  last_message_ns_.store(now, std::memory_order_relaxed);
  unset = 0;
  c.first_message_ns.compare_exchange_strong(unset, now, std::memory_order_relaxed);
  c.last_message_ns.store(now, std::memory_order_relaxed);
  c.sent.fetch_add(1, std::memory_order_relaxed);
  message.origin =
      make_origin(c.id(), c.framing.load(std::memory_order_relaxed) == wire::Framing::ndjson);

  // The broker stamps the source: a connection may only speak as a name it registered.
  if (!message.source.empty() &&
      std::find(c.names().begin(), c.names().end(), message.source) == c.names().end()) {
    const std::string claimed = message.source;
    message.source = c.names().empty() ? std::string() : c.names().front();
    refuse(c, message, "source=" + claimed + " is not registered by this connection");
    return;
  }
  if (message.source.empty() && !c.names().empty()) {
    message.source = c.names().front();
  }

  if (message.target == kBrokerName) {
    if (message.type == MessageType::request && message.id == "RPCRegister") {
      register_name(connection, message);
      return;
    }
  } else if (c.names().empty()) {
    refuse(c, message, "not registered: call RPCRegister with {\"name\": ...} before sending");
    return;
  } else if (message.target.empty()) {
    refuse(c, message, "target is empty");
    return;
  }

  if (message.target != kBrokerName && hold_for_congested_receiver(connection, message)) {
    return;
  }
  offer_or_refuse(c, std::move(message), alone);
}

void Server::Impl::offer_or_refuse(Connection& sender, Message&& message, bool alone) {
  OfferResult result{};
  if (alone) {
    result = optimizer_.offer_direct(std::move(message));
  } else {
    result = optimizer_.offer(std::move(message));
  }
  if (!is_accepted(result)) {
    // offer leaves a refused message untouched, so its id and correlation id are still there.
    // cppcheck-suppress accessMoved ; offer() moves from its argument only when it accepts it
    refuse(sender, message,  // NOLINT(bugprone-use-after-move): see above
           "refused by the broker queue: " + std::string(to_string(result)) +
               " (policy=" + std::string(to_string(options_.optimizer.offer_policy)) + ")");
  }
}

bool Server::Impl::hold_for_congested_receiver(const std::shared_ptr<Connection>& sender,
                                               Message& message) {
  if (options_.optimizer.offer_policy != OfferPolicy::block) {
    return false;
  }
  auto receiver = registry_.by_name(message.target);
  if (receiver == nullptr) {
    return false;
  }
  const std::size_t queued = receiver->queued_bytes.load(std::memory_order_relaxed);
  if (receiver->stalled.load(std::memory_order_relaxed) && queued < low_water()) {
    receiver->stalled.store(false, std::memory_order_relaxed);  // it reads again
  }
  if (receiver->stalled.load(std::memory_order_relaxed) || queued < high_water()) {
    return false;
  }
  sender->held = std::move(message);
  sender->held_since = Clock::now();
  sender->held_progress = receiver->written_bytes.load(std::memory_order_relaxed);
  sender->held_for = std::move(receiver);
  held_.push_back(sender);
  return true;
}

void Server::Impl::release_held() {
  std::vector<std::shared_ptr<Connection>> waiting;
  waiting.swap(held_);
  const auto now = Clock::now();
  for (auto& connection : waiting) {
    Connection& c = *connection;
    if (!connections_.contains(c.id()) || !c.held) {
      continue;  // closed meanwhile
    }
    Connection& receiver = *c.held_for;
    const std::uint64_t written = receiver.written_bytes.load(std::memory_order_relaxed);
    if (written != c.held_progress) {
      c.held_progress = written;  // still reading: keep waiting for it
      c.held_since = now;
    }
    bool release = !connections_.contains(receiver.id()) ||
                   receiver.queued_bytes.load(std::memory_order_relaxed) < low_water();
    if (!release && now - c.held_since > options_.stall_timeout) {
      // The receiver stopped reading: waiting would stall this sender for nothing. Its
      // messages now meet the slow-receiver policy until it drains.
      receiver.stalled.store(true, std::memory_order_relaxed);
      release = true;
      spdlog::info("connection {} (pid={}) stopped reading; senders no longer wait for it",
                   receiver.id(), receiver.peer().pid);
    }
    if (!release) {
      held_.push_back(std::move(connection));
      continue;
    }
    Message message = std::move(*c.held);
    c.held.reset();
    c.held_for.reset();
    offer_or_refuse(c, std::move(message));
    if (drain_decoder(connection) && c.reading && !c.held) {
      ready_.push_back(connection);  // read what arrived while it waited
    }
  }
}

void Server::Impl::refuse_held(const std::string& why) {
  for (const auto& connection : held_) {
    if (connection->held) {
      refuse(*connection, *connection->held, why);
      connection->held.reset();
      connection->held_for.reset();
    }
  }
  held_.clear();
}

void Server::Impl::register_name(const std::shared_ptr<Connection>& connection,
                                 const Message& call) {
  Connection& c = *connection;
  std::string name;
  try {
    const auto payload = nlohmann::json::parse(call.payload.view());
    if (!payload.is_object() || !payload.contains("name") || !payload["name"].is_string()) {
      refuse(c, call, R"(RPCRegister: payload must be {"name": "..."})");
      return;
    }
    name = payload["name"].get<std::string>();
  } catch (const nlohmann::json::exception&) {
    refuse(c, call, R"(RPCRegister: payload must be {"name": "..."})");
    return;
  }
  if (const std::string problem = name_problem(name); !problem.empty()) {
    refuse(c, call, "RPCRegister: " + problem);
    return;
  }
  if (c.framing.load(std::memory_order_relaxed) == wire::Framing::binary &&
      name.size() > wire::kBinarySourceSize) {
    refuse(c, call,
           "RPCRegister: field=source length=" + std::to_string(name.size()) +
               " max=" + std::to_string(wire::kBinarySourceSize) +
               ": a binary connection's name must fit the frame's source field");
    return;
  }
  const bool owned = std::find(c.names().begin(), c.names().end(), name) != c.names().end();
  if (!owned && c.names().size() >= options_.max_names_per_connection) {
    refuse(c, call,
           "RPCRegister: this connection holds max_names_per_connection=" +
               std::to_string(options_.max_names_per_connection) + " names");
    return;
  }
  if (registry_.claim(name, connection) == Registry::Claim::taken) {
    refuse(c, call, "RPCRegister: name=" + name + " is held by another live connection");
    return;
  }
  if (!owned) {
    c.names().push_back(name);
  }
  Message reply = make_response(call, {{"name", name}, {"registered", true}});
  reply.target = name;
  queue_direct(c, reply);
  spdlog::info("connection {} (pid={}) registered as {}", c.id(), c.peer().pid, name);
}

void Server::Impl::refuse(Connection& connection, const Message& message, std::string text) {
  errors_.fetch_add(1, std::memory_order_relaxed);
  // cppcheck-suppress accessMoved ; see offer_or_refuse: a refused message is not moved from
  Message error = wire::make_error_reply(message, std::move(text));
  queue_direct(connection, error);
}

void Server::Impl::close_connection(const std::shared_ptr<Connection>& connection,
                                    const char* why) {
  registry_.remove(*connection);
  {
    const std::lock_guard lock(connection->out_mutex);
    connection->dead = true;
  }
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, connection->fd(), nullptr);
  ::shutdown(connection->fd(), SHUT_RDWR);
  spdlog::debug("connection {} closed: {}", connection->id(), why);
  connections_.erase(connection->id());
}

void Server::Impl::flush_from_io(Connection& connection) {
  const std::lock_guard lock(connection.out_mutex);
  if (!connection.dead) {
    (void)connection.flush_out();
  }
}

void Server::Impl::close_requested_connections() {
  if (!close_pending_.exchange(false, std::memory_order_acq_rel)) {
    return;
  }
  std::vector<std::shared_ptr<Connection>> doomed;
  for (const auto& [id, connection] : connections_) {
    const std::lock_guard lock(connection->out_mutex);
    if (connection->close_requested) {
      doomed.push_back(connection);
    }
  }
  for (const auto& connection : doomed) {
    spdlog::warn("disconnecting connection {} (pid={}): it stopped reading", connection->id(),
                 connection->peer().pid);
    close_connection(connection, "slow receiver");
  }
}

bool Server::Impl::all_output_flushed() {
  return std::ranges::all_of(connections_, [](const auto& entry) {
    Connection& connection = *entry.second;
    const std::lock_guard lock(connection.out_mutex);
    return connection.dead || connection.out.empty();
  });
}

void Server::Impl::log_stats() {
  const MetricsSnapshot m = optimizer_.metrics();
  spdlog::info(
      "stats: connections={} received={} delivered={} rate={:.0f}/s queued={} saturation={:.1f}% "
      "dropped={} errors={} queue_p99={}ns route_p99={}ns",
      connections_.size(), received_.load(), delivered_.load(), m.messages_per_second, m.queued,
      m.saturation * 100.0, m.dropped.total(), errors_.load(), m.recent_queue_latency.p99,
      m.recent_route_latency.p99);
}

void Server::Impl::tune_reading_thread() {
  if (!reading_thread_tuned_) {
    // The reading thread is on every message's path, as the workers are.
    optimizer_.tune_message_thread();
    reading_thread_tuned_ = true;
  }
}

int Server::Impl::run() {
  tune_reading_thread();
  std::array<epoll_event, kMaxEvents> events{};
  auto next_stats = Clock::now() + options_.stats_log_interval;
  bool stopping = false;
  Clock::time_point drain_deadline{};

  for (;;) {
    int timeout_ms = -1;
    if (!ready_.empty()) {
      timeout_ms = 0;
    } else if (options_.stats_log_interval.count() > 0 || stopping) {
      const auto until = stopping ? drain_deadline : next_stats;
      timeout_ms = static_cast<int>(std::max<std::int64_t>(
          0,
          std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()).count() + 1));
      if (stopping) {
        timeout_ms = std::min(timeout_ms, 10);
      }
    }
    if (!held_.empty() && (timeout_ms < 0 || timeout_ms > 1)) {
      timeout_ms = 1;  // watch the congested receivers drain
    }
    const int count = ::epoll_wait(epoll_fd_, events.data(), kMaxEvents, timeout_ms);
    if (count < 0 && errno != EINTR) {
      spdlog::error("epoll_wait: {}", errno_text(errno));
      return 1;
    }

    for (int i = 0; i < std::max(count, 0); ++i) {
      const epoll_event& event = events[static_cast<std::size_t>(i)];
      const std::uint64_t tag = event.data.u64;
      if (tag == kListenTag) {
        if (accepting_) {
          accept_all();
        }
        continue;
      }
      if (tag == kSignalTag) {
        signalfd_siginfo info{};
        while (::read(signal_fd_, &info, sizeof(info)) == sizeof(info)) {
          if (!stopping) {
            spdlog::info("signal {} received: stopping; delivering accepted messages",
                         ::sigabbrev_np(static_cast<int>(info.ssi_signo)));
          }
          stopping = true;
        }
        continue;
      }
      if (tag == kWakeTag) {
        std::uint64_t value = 0;
        const ssize_t got = ::read(wake_fd_, &value, sizeof(value));  // resets the counter
        static_cast<void>(got);  // EAGAIN: already reset by an earlier turn
        continue;
      }
      const auto it = connections_.find(tag);
      if (it == connections_.end()) {
        continue;
      }
      const std::shared_ptr<Connection> connection = it->second;
      if ((event.events & EPOLLOUT) != 0) {
        flush_from_io(*connection);
      }
      if ((event.events & (EPOLLIN | EPOLLRDHUP)) != 0 && !stopping) {
        read_from(connection);
      }
      if ((event.events & (EPOLLHUP | EPOLLERR)) != 0 && connections_.contains(tag)) {
        close_connection(connection, "hang-up");
      }
    }

    if (!stopping && !held_.empty()) {
      release_held();
    }
    if (!stopping) {
      const std::size_t rounds = ready_.size();
      for (std::size_t r = 0; r < rounds; ++r) {
        const auto connection = std::move(ready_.front());
        ready_.pop_front();
        if (connections_.contains(connection->id())) {
          read_from(connection);
        }
      }
    }
    close_requested_connections();

    if (options_.stats_log_interval.count() > 0 && Clock::now() >= next_stats) {
      log_stats();
      next_stats = Clock::now() + options_.stats_log_interval;
    }

    if (stopping && accepting_) {
      // Stop taking new work, then route everything already accepted; the workers flush
      // what they route, and this loop keeps flushing to receivers that were full.
      accepting_ = false;
      ready_.clear();
      refuse_held("refused: the broker is shutting down");
      listener_.close();
      const StopReport report = optimizer_.stop(StopMode::drain);
      (void)report;
      drain_deadline = Clock::now() + options_.shutdown_timeout;
    }
    if (stopping && !accepting_) {
      for (const auto& [id, connection] : connections_) {
        flush_from_io(*connection);
      }
      if (all_output_flushed()) {
        break;
      }
      if (Clock::now() >= drain_deadline) {
        std::size_t stuck = 0;
        for (const auto& [id, connection] : connections_) {
          const std::lock_guard lock(connection->out_mutex);
          stuck += connection->out.empty() ? 0U : 1U;
        }
        spdlog::warn("shutdown: {} receiver(s) did not take their messages within {} ms", stuck,
                     options_.shutdown_timeout.count());
        break;
      }
    }
  }

  const MetricsSnapshot m = optimizer_.metrics();
  spdlog::info("stopped: received={} delivered={} routed={} dropped={} errors={}", received_.load(),
               delivered_.load(), m.routed, m.dropped.total(), errors_.load());
  return 0;
}

Server::Server(BrokerOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}

Server::~Server() = default;

void Server::tune_reading_thread() {
  impl_->tune_reading_thread();
}

int Server::run() {
  return impl_->run();
}

TuningReport Server::tuning_report() const {
  return impl_->tuning_report();
}

std::string Server::prometheus_text() const {
  return impl_->prometheus_text();
}

const std::string& Server::socket_path() const noexcept {
  return impl_->socket_path();
}

}  // namespace v2::broker
