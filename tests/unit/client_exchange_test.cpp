// The client against a small in-test listener that plays the broker's side of the socket with
// the wire codec: real Unix sockets, real reads and writes.

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

#include "v2broker/client.hpp"
#include "v2broker/message.hpp"
#include "v2broker/wire.hpp"

namespace v2 {
namespace {

using std::chrono::milliseconds;

/// Longest any step of the fake broker waits, so a broken client fails the test, not hangs it.
constexpr int kPeerWaitMs = 10'000;

/// The broker's end of one accepted connection.
class Peer {
 public:
  explicit Peer(int fd) : fd_(fd) {}
  Peer(const Peer&) = delete;
  Peer& operator=(const Peer&) = delete;
  ~Peer() { close(); }

  /// The next message from the client; an empty message (and a test failure) on error or EOF.
  Message read() {
    while (true) {
      Message message;
      wire::ProtocolError error;
      const wire::DecodeStatus status = decoder_.poll(message, error);
      if (status == wire::DecodeStatus::message) {
        return message;
      }
      if (status == wire::DecodeStatus::error) {
        ADD_FAILURE() << "fake broker could not decode: " << error.text;
        return {};
      }
      pollfd entry{fd_, POLLIN, 0};
      if (::poll(&entry, 1, kPeerWaitMs) != 1) {
        ADD_FAILURE() << "fake broker waited too long for the client";
        return {};
      }
      const std::span<std::byte> space = decoder_.writable(std::size_t{64} << 10U);
      const ssize_t n = ::recv(fd_, space.data(), space.size(), 0);
      if (n <= 0) {
        ADD_FAILURE() << "fake broker: recv returned " << n << " errno=" << errno;
        return {};
      }
      decoder_.commit(static_cast<std::size_t>(n));
    }
  }

  /// Writes `message` in the connection's framing (as detected from the client's first byte).
  void write(const Message& message) {
    std::string out;
    const wire::Framing framing =
        decoder_.framing() == wire::Framing::unknown ? wire::Framing::ndjson : decoder_.framing();
    const wire::EncodeResult result = wire::encode(message, framing, out);
    ASSERT_TRUE(result.ok()) << result.text;
    write_raw(out);
  }

  void write_raw(std::string_view bytes) const {
    while (!bytes.empty()) {
      // cppcheck-suppress invalidLifetime ; bytes views the caller's string, alive for the call
      const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      ASSERT_GT(n, 0) << "fake broker: send errno=" << errno;
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
  }

  void close() {
    if (fd_ >= 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }

  [[nodiscard]] wire::Framing framing() const { return decoder_.framing(); }

 private:
  int fd_;
  wire::Decoder decoder_;
};

/// A listening socket in a fresh temporary directory; serve() accepts one client and runs a
/// script against it on a thread, joined by the destructor.
class FakeBroker {
 public:
  FakeBroker() {
    char pattern[] = "/tmp/v2client-XXXXXX";
    const char* made = ::mkdtemp(pattern);
    EXPECT_NE(made, nullptr) << "mkdtemp: " << std::strerror(errno);
    dir_ = made != nullptr ? made : "/tmp";
    path_ = dir_ + "/broker.sock";

    listener_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    EXPECT_GE(listener_, 0) << "socket: " << std::strerror(errno);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::memcpy(address.sun_path, path_.data(), path_.size());
    EXPECT_EQ(::bind(listener_, reinterpret_cast<const sockaddr*>(&address), sizeof address), 0)
        << "bind: " << std::strerror(errno);
    EXPECT_EQ(::listen(listener_, 4), 0) << "listen: " << std::strerror(errno);
  }
  FakeBroker(const FakeBroker&) = delete;
  FakeBroker& operator=(const FakeBroker&) = delete;
  ~FakeBroker() {
    if (thread_.joinable()) {
      thread_.join();
    }
    ::close(listener_);
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  void serve(std::function<void(Peer&)> script) {
    thread_ = std::thread([this, script = std::move(script)] {
      pollfd entry{listener_, POLLIN, 0};
      if (::poll(&entry, 1, kPeerWaitMs) != 1) {
        ADD_FAILURE() << "fake broker: no client connected";
        return;
      }
      Peer peer(::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC));
      script(peer);
    });
  }

  /// Waits for the script to finish.
  void join() { thread_.join(); }

  [[nodiscard]] const std::string& path() const { return path_; }

 private:
  std::string dir_;
  std::string path_;
  int listener_ = -1;
  std::thread thread_;
};

/// The broker's reply to `request`: same id and correlation id, source "broker".
Message reply_to(const Message& request, MessageType type, std::string_view payload) {
  Message reply;
  reply.type = type;
  reply.id = request.id;
  reply.source = std::string(kBrokerName);
  reply.target = request.source;
  reply.correlation_id = request.correlation_id;
  if (!payload.empty()) {
    reply.payload = Payload::copy_of(payload);
  }
  return reply;
}

Message event_from(std::string_view source, std::string_view id, std::string_view payload) {
  Message event;
  event.type = MessageType::event;
  event.id = id;
  event.source = source;
  event.target = "me";
  event.payload = Payload::copy_of(payload);
  return event;
}

TEST(ClientCall, KeepsAnUnrelatedMessageThatArrivesFirstForReceive) {
  FakeBroker broker;
  broker.serve([](Peer& peer) {
    const Message request = peer.read();
    EXPECT_EQ(request.type, MessageType::request);
    EXPECT_EQ(request.id, "RPCGetMessageCount");
    EXPECT_EQ(request.target, "broker");
    EXPECT_FALSE(request.correlation_id.empty());
    EXPECT_EQ(request.payload.view(), R"({"a":1})");

    peer.write(event_from("alice", "tick", R"({"n":7})"));
    peer.write(reply_to(request, MessageType::response, R"({"count":42})"));
  });
  Client client = Client::connect(broker.path());

  const Message reply = client.call("RPCGetMessageCount", R"({"a":1})", milliseconds(10'000));

  EXPECT_EQ(reply.type, MessageType::response);
  EXPECT_EQ(reply.id, "RPCGetMessageCount");
  EXPECT_EQ(reply.source, "broker");
  EXPECT_EQ(reply.payload.view(), R"({"count":42})");
  EXPECT_EQ(client.pending(), 1U);

  const std::optional<Message> kept = client.receive(milliseconds(0));
  ASSERT_TRUE(kept.has_value());
  EXPECT_EQ(kept->type, MessageType::event);
  EXPECT_EQ(kept->source, "alice");
  EXPECT_EQ(kept->id, "tick");
  EXPECT_EQ(kept->payload.view(), R"({"n":7})");
  EXPECT_EQ(client.pending(), 0U);
}

TEST(ClientCall, ReturnsAnErrorReplyAsAMessageOfTypeError) {
  FakeBroker broker;
  broker.serve([](Peer& peer) {
    const Message request = peer.read();
    peer.write(wire::make_error_reply(request.id, request.correlation_id, "",
                                      "unknown method=RPCNoSuchThing"));
  });
  Client client = Client::connect(broker.path());

  const Message reply = client.call("RPCNoSuchThing", "", milliseconds(10'000));

  EXPECT_EQ(reply.type, MessageType::error);
  EXPECT_EQ(reply.id, "RPCNoSuchThing");
  EXPECT_EQ(reply.error, "unknown method=RPCNoSuchThing");
}

TEST(ClientCall, SendsNoPayloadWhenNoneIsGiven) {
  FakeBroker broker;
  broker.serve([](Peer& peer) {
    const Message request = peer.read();
    EXPECT_TRUE(request.payload.empty());
    peer.write(reply_to(request, MessageType::response, "{}"));
  });
  Client client = Client::connect(broker.path());

  EXPECT_EQ(client.call("RPCListProcesses", "", milliseconds(10'000)).type, MessageType::response);
}

TEST(ClientCall, TimesOutWithContextAndKeepsWhatArrivedForReceive) {
  FakeBroker broker;
  broker.serve([](Peer& peer) {
    (void)peer.read();
    peer.write(event_from("bob", "late", "[1]"));
    (void)peer.read();  // the client's goodbye: keeps the connection open until then
  });
  Client client = Client::connect(broker.path());

  try {
    (void)client.call("RPCGetKernelMetrics", "", milliseconds(20));
    ADD_FAILURE() << "call without a reply returned";
  } catch (const ClientError& error) {
    EXPECT_EQ(error.code(), ClientErrc::timeout);
    const std::string text = error.what();
    EXPECT_NE(text.find("id=RPCGetKernelMetrics"), std::string::npos) << text;
    EXPECT_NE(text.find("socket=" + broker.path()), std::string::npos) << text;
  }

  const std::optional<Message> kept = client.receive(kWaitForever);
  ASSERT_TRUE(kept.has_value());
  EXPECT_EQ(kept->id, "late");
  client.send(event_from("", "bye", "{}"));
}

TEST(ClientCall, WorksOverBinaryFraming) {
  FakeBroker broker;
  broker.serve([](Peer& peer) {
    const Message request = peer.read();
    EXPECT_EQ(peer.framing(), wire::Framing::binary);
    EXPECT_EQ(request.id, "RPCGetTuningStatus");
    peer.write(event_from("carol", "noise", R"({"x":true})"));
    peer.write(reply_to(request, MessageType::response, R"({"threads":[]})"));
  });
  ClientOptions options;
  options.framing = wire::Framing::binary;
  Client client = Client::connect(broker.path(), options);

  const Message reply = client.call("RPCGetTuningStatus", "", milliseconds(10'000));

  EXPECT_EQ(reply.type, MessageType::response);
  EXPECT_EQ(reply.payload.view(), R"({"threads":[]})");
  const std::optional<Message> kept = client.receive(milliseconds(0));
  ASSERT_TRUE(kept.has_value());
  EXPECT_EQ(kept->source, "carol");
}

TEST(ClientRegister, SendsTheNameAsJsonAndRemembersIt) {
  FakeBroker broker;
  broker.serve([](Peer& peer) {
    const Message request = peer.read();
    EXPECT_EQ(request.id, "RPCRegister");
    EXPECT_EQ(request.target, "broker");
    EXPECT_EQ(request.payload.view(), R"({"name":"svc \"q\"\\1"})");
    peer.write(reply_to(request, MessageType::response, R"({"name":"svc"})"));
  });
  Client client = Client::connect(broker.path());

  client.register_name(R"(svc "q"\1)", milliseconds(10'000));

  EXPECT_EQ(client.name(), R"(svc "q"\1)");
}

TEST(ClientRegister, ThrowsRefusedWithTheBrokersText) {
  FakeBroker broker;
  broker.serve([](Peer& peer) {
    const Message request = peer.read();
    peer.write(wire::make_error_reply(request.id, request.correlation_id, "",
                                      "name=svc is held by another connection"));
  });
  Client client = Client::connect(broker.path());

  try {
    client.register_name("svc", milliseconds(10'000));
    ADD_FAILURE() << "register_name accepted an error reply";
  } catch (const ClientError& error) {
    EXPECT_EQ(error.code(), ClientErrc::refused);
    EXPECT_NE(std::string(error.what()).find("name=svc is held by another connection"),
              std::string::npos)
        << error.what();
  }
  EXPECT_TRUE(client.name().empty());
}

TEST(ClientRequest, MatchesTheReplyByCorrelationIdAmongOtherMessages) {
  FakeBroker broker;
  broker.serve([](Peer& peer) {
    const Message request = peer.read();
    EXPECT_EQ(request.target, "echo");
    Message stranger = event_from("echo", "other", "1");
    stranger.type = MessageType::response;
    stranger.correlation_id = "not-yours";
    peer.write(stranger);
    Message reply = reply_to(request, MessageType::response, request.payload.view());
    reply.source = "echo";
    peer.write(reply);
  });
  Client client = Client::connect(broker.path());
  Message request;
  request.type = MessageType::request;
  request.id = "ping";
  request.target = "echo";
  request.payload = Payload::copy_of(R"({"hello":"world"})");

  const Message reply = client.request(request, milliseconds(10'000));

  EXPECT_EQ(reply.source, "echo");
  EXPECT_EQ(reply.payload.view(), R"({"hello":"world"})");
  const std::optional<Message> kept = client.receive(milliseconds(0));
  ASSERT_TRUE(kept.has_value());
  EXPECT_EQ(kept->correlation_id, "not-yours");
}

TEST(ClientReceive, ReturnsNothingWhenTheTimeoutExpires) {
  FakeBroker broker;
  broker.serve([](Peer& peer) { (void)peer.read(); });
  Client client = Client::connect(broker.path());

  EXPECT_FALSE(client.receive(milliseconds(0)).has_value());
  EXPECT_FALSE(client.receive(milliseconds(5)).has_value());
  client.send(event_from("", "bye", "{}"));
}

TEST(ClientReceive, ReassemblesAMessageSplitAcrossReads) {
  FakeBroker broker;
  broker.serve([](Peer& peer) {
    peer.write_raw(R"({"type":"event","id":"split","pay)");
    (void)peer.read();  // the client saw the first half alone
    peer.write_raw(R"(load":{"k":[1,2]},"source":"dave"})"
                   "\n");
  });
  Client client = Client::connect(broker.path());

  EXPECT_FALSE(client.receive(milliseconds(0)).has_value());
  client.send(event_from("", "go-on", "{}"));
  const std::optional<Message> message = client.receive(kWaitForever);

  ASSERT_TRUE(message.has_value());
  EXPECT_EQ(message->id, "split");
  EXPECT_EQ(message->source, "dave");
  EXPECT_EQ(message->payload.view(), R"({"k":[1,2]})");
}

TEST(ClientReceive, ReportsAProtocolErrorAndStaysUsable) {
  FakeBroker broker;
  broker.serve([](Peer& peer) {
    peer.write_raw("this is not json\n");
    peer.write(event_from("erin", "after", "{}"));
  });
  Client client = Client::connect(broker.path());

  try {
    (void)client.receive(kWaitForever);
    ADD_FAILURE() << "a line that is not JSON was accepted";
  } catch (const ClientError& error) {
    EXPECT_EQ(error.code(), ClientErrc::protocol);
    EXPECT_NE(std::string(error.what()).find("socket=" + broker.path()), std::string::npos);
  }
  const std::optional<Message> message = client.receive(kWaitForever);

  ASSERT_TRUE(message.has_value());
  EXPECT_EQ(message->id, "after");
}

TEST(ClientReceive, ThrowsHungUpWhenTheBrokerCloses) {
  FakeBroker broker;
  broker.serve([](Peer& peer) {
    peer.write(event_from("frank", "last", "{}"));
    peer.close();
  });
  Client client = Client::connect(broker.path());

  const std::optional<Message> last = client.receive(kWaitForever);
  ASSERT_TRUE(last.has_value());
  EXPECT_EQ(last->id, "last");
  try {
    (void)client.receive(kWaitForever);
    ADD_FAILURE() << "receive after the broker closed returned";
  } catch (const ClientError& error) {
    EXPECT_EQ(error.code(), ClientErrc::hung_up);
  }
}

TEST(ClientSend, ReportsAHungUpBrokerAsAnErrorNotSigpipe) {
  FakeBroker broker;
  broker.serve([](Peer& peer) { peer.close(); });
  Client client = Client::connect(broker.path());
  broker.join();

  try {
    // The first write after the peer closed may still succeed on some kernels; the next fails.
    for (int i = 0; i < 2; ++i) {
      client.send(event_from("", "into-the-void", "{}"));
    }
    ADD_FAILURE() << "send to a closed peer succeeded";
  } catch (const ClientError& error) {
    EXPECT_EQ(error.code(), ClientErrc::hung_up);
    EXPECT_EQ(error.sys_errno(), EPIPE);
  }
}

TEST(ClientSend, WritesAMessageLargerThanTheSocketBufferWhole) {
  const std::string big = "\"" + std::string(std::size_t{8} << 20U, 'x') + "\"";
  FakeBroker broker;
  broker.serve([&big](Peer& peer) {
    const Message message = peer.read();
    EXPECT_EQ(message.id, "big");
    EXPECT_EQ(message.payload.size(), big.size());
    EXPECT_TRUE(message.payload.view() == big);
  });
  Client client = Client::connect(broker.path());
  Message message = event_from("", "big", big);
  message.target = "sink";

  client.send(message);
  broker.join();
}

TEST(ClientSend, RefusesAMessageThatDoesNotFitTheBinaryFieldsWithoutWriting) {
  FakeBroker broker;
  broker.serve([](Peer& peer) {
    const Message message = peer.read();
    EXPECT_EQ(message.id, "fits");
  });
  ClientOptions options;
  options.framing = wire::Framing::binary;
  Client client = Client::connect(broker.path(), options);
  Message too_long = event_from("", "id", "{}");
  too_long.target = std::string(wire::kBinaryTargetSize + 1, 't');

  try {
    client.send(too_long);
    ADD_FAILURE() << "a target longer than its binary field was sent";
  } catch (const ClientError& error) {
    EXPECT_EQ(error.code(), ClientErrc::protocol);
  }
  client.send(event_from("", "fits", "{}"));  // nothing of the refused message went out
  broker.join();
}

TEST(ClientCorrelationId, IsUniqueAndFitsTheBinaryField) {
  std::set<std::string> seen;
  for (int i = 0; i < 10'000; ++i) {
    const std::string id = Client::next_correlation_id();
    EXPECT_LE(id.size(), wire::kBinaryCorrelationIdSize) << id;
    EXPECT_TRUE(seen.insert(id).second) << "repeated: " << id;
  }
}

}  // namespace
}  // namespace v2
