// Uses the installed v2broker libraries the way an application would: the optimizer routes a
// message in-process, and the client exchanges one through a running broker.
//
//   v2broker_consumer SOCKET   exit 0 when both round trips delivered the message intact

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <exception>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <v2broker/client.hpp>
#include <v2broker/optimizer.hpp>
#include <v2broker/version.hpp>

namespace {

constexpr std::string_view kPayload = R"({"consumer":"package","n":1})";

// Keeps the last message routed to it.
class KeepingRouter : public v2::Router {
 public:
  void handle_broker(v2::Message& /*message*/,
                     const v2::RouteContext& /*context*/) noexcept override {}

  void route(v2::Message& message, const v2::RouteContext& /*context*/) noexcept override {
    const std::lock_guard lock(mutex_);
    routed_ = std::move(message);
    done_.notify_all();
  }

  std::optional<v2::Message> wait(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    done_.wait_for(lock, timeout, [this] { return routed_.has_value(); });
    return routed_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable done_;
  std::optional<v2::Message> routed_;
};

bool check(bool ok, const char* what) {
  std::printf("%s %s\n", ok ? "ok:  " : "FAIL:", what);
  return ok;
}

// The optimizer on its own: offer one message, let a worker route it.
bool optimizer_routes() {
  KeepingRouter router;
  v2::OptimizerConfig config;
  config.workers = 1;
  config.offer_policy = v2::OfferPolicy::block;
  config.tuning.pin_workers = false;  // a check, not a deployment: leave the machine as it is
  config.tuning.set_nice = false;
  config.tuning.set_io_priority = false;
  v2::Optimizer optimizer(router, config);
  optimizer.start();

  v2::Message message;
  message.type = v2::MessageType::event;
  message.source = "alice";
  message.target = "bob";
  message.payload = v2::Payload::copy_of(kPayload);
  const v2::OfferResult offered = optimizer.offer(std::move(message));
  const std::optional<v2::Message> routed = router.wait(std::chrono::seconds(5));
  optimizer.stop();

  return check(offered == v2::OfferResult::accepted, "optimizer accepted the offer") &&
         check(routed && routed->target == "bob" && routed->payload.view() == kPayload,
               "optimizer routed the message to bob, payload intact");
}

// Two clients of the broker at `socket`: one sends, the other receives.
bool client_exchanges(const std::string& socket) {
  v2::Client sender = v2::Client::connect(socket);
  v2::Client receiver = v2::Client::connect(socket);
  sender.register_name("package-sender");
  receiver.register_name("package-receiver");

  v2::Message message;
  message.type = v2::MessageType::event;
  message.id = "package-check";
  message.target = "package-receiver";
  message.payload = v2::Payload::copy_of(kPayload);
  sender.send(message);
  const std::optional<v2::Message> got = receiver.receive(std::chrono::seconds(5));

  const v2::Message count = sender.call("RPCGetMessageCount");
  return check(got.has_value(), "receiver got a message through the broker") &&
         check(got->source == "package-sender" && got->id == "package-check" &&
                   got->payload.view() == kPayload,
               "message came back with its source, id and payload") &&
         check(count.type == v2::MessageType::response, "broker answered RPCGetMessageCount");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s SOCKET\n", argv[0]);
    return 2;
  }
  std::printf("v2broker %.*s libraries\n", static_cast<int>(v2::kVersion.size()),
              v2::kVersion.data());
  try {
    const bool ok = optimizer_routes() && client_exchanges(argv[1]);
    return ok ? 0 : 1;
  } catch (const std::exception& error) {
    std::printf("FAIL: %s\n", error.what());
    return 1;
  }
}
