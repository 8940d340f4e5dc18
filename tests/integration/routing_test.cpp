// Routing between real sockets: both framings and across them, order, unknown targets, names
// and source stamping.

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "broker_process.hpp"

namespace v2::integration {
namespace {

using wire::Framing;

Message registered_ok(Peer& peer, const std::string& name) {
  Message reply = peer.register_name(name);
  EXPECT_EQ(reply.type, MessageType::response) << "register " << name << ": " << reply.error;
  return reply;
}

std::string random_bytes(std::size_t size, unsigned seed) {
  std::mt19937 generator(seed);
  std::string bytes(size, '\0');
  for (auto& byte : bytes) {
    byte = static_cast<char>(generator() & 0xffU);
  }
  bytes[0] = '\n';  // bytes that mean something in the other framing
  bytes[1] = '\0';
  bytes[2] = 'V';
  return bytes;
}

TEST(BrokerRouting, NdjsonEventReachesNdjsonReceiverWithPayloadBytesIntact) {
  TempDir dir;
  BrokerProcess broker(dir);
  Peer alice(broker.socket_path(), Framing::ndjson);
  Peer bob(broker.socket_path(), Framing::ndjson);
  registered_ok(alice, "alice");
  registered_ok(bob, "bob");

  const std::string payload = R"({"a": [1, 2.5e3, "x\ny\u00e9\u2028"],   "b" : null, "c":{}})";
  alice.send_bytes(R"({"type":"event","id":"e-1","target":"bob","correlation_id":"k-1",)"
                   R"("payload":)" +
                   payload + "}\n");

  const auto got = bob.receive();
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->type, MessageType::event);
  EXPECT_EQ(got->id, "e-1");
  EXPECT_EQ(got->source, "alice");
  EXPECT_EQ(got->target, "bob");
  EXPECT_EQ(got->correlation_id, "k-1");
  EXPECT_EQ(got->payload.view(), payload);
}

TEST(BrokerRouting, RequestAndResponseRoundTripBetweenTwoProcesses) {
  TempDir dir;
  BrokerProcess broker(dir);
  Peer client(broker.socket_path(), Framing::ndjson);
  Peer service(broker.socket_path(), Framing::binary);
  registered_ok(client, "client");
  registered_ok(service, "service");

  client.send(make_message(MessageType::request, "service", "add", R"({"x":1,"y":2})", "q-7"));
  const auto request = service.receive();
  ASSERT_TRUE(request.has_value());
  ASSERT_EQ(request->type, MessageType::request);
  EXPECT_EQ(request->source, "client");

  service.send(make_message(MessageType::response, request->source, request->id, R"({"sum":3})",
                            request->correlation_id));
  const auto response = client.receive();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->type, MessageType::response);
  EXPECT_EQ(response->id, "add");
  EXPECT_EQ(response->source, "service");
  EXPECT_EQ(response->correlation_id, "q-7");
  EXPECT_EQ(response->payload.view(), R"({"sum":3})");
}

TEST(BrokerRouting, BinaryFramesReachBinaryReceiverWithPayloadBytesIntact) {
  TempDir dir;
  BrokerProcess broker(dir);
  Peer alice(broker.socket_path(), Framing::binary);
  Peer bob(broker.socket_path(), Framing::binary);
  registered_ok(alice, "alice");
  registered_ok(bob, "bob");

  // A large GOB payload (read in place by the broker) and a small one, arbitrary bytes.
  for (const std::size_t size : {std::size_t{300'000}, std::size_t{100}}) {
    const std::string bytes = random_bytes(size, static_cast<unsigned>(size));
    Message message = make_message(MessageType::event, "bob", "blob", bytes, "k-2");
    message.encoding = PayloadEncoding::gob;
    alice.send(message);

    const auto got = bob.receive();
    ASSERT_TRUE(got.has_value());
    EXPECT_EQ(got->encoding, PayloadEncoding::gob);
    EXPECT_EQ(got->source, "alice");
    EXPECT_EQ(got->id, "blob");
    EXPECT_EQ(got->correlation_id, "k-2");
    EXPECT_EQ(got->payload.size(), size);
    EXPECT_TRUE(got->payload.view() == bytes) << "payload of " << size << " bytes changed";
  }
}

TEST(BrokerRouting, BinaryFrameBuiltByHandIsRoutedAndAnsweredInBinary) {
  TempDir dir;
  BrokerProcess broker(dir);
  Peer bob(broker.socket_path(), Framing::ndjson);
  registered_ok(bob, "bob");

  // The 128-byte header of PROTOCOL.md, written field by field; no codec involved.
  const int fd = try_connect(broker.socket_path());
  ASSERT_GE(fd, 0);
  auto frame = [](std::uint8_t type, std::string_view id, std::string_view target,
                  std::string_view correlation, std::string_view payload) {
    std::string header(128, '\0');
    header[0] = 0x56;
    header[1] = 0x32;
    header[2] = 0x01;
    header[3] = 0x00;  // JSON
    header[4] = static_cast<char>(type);
    const auto length = static_cast<std::uint32_t>(payload.size());
    header[8] = static_cast<char>((length >> 24U) & 0xffU);
    header[9] = static_cast<char>((length >> 16U) & 0xffU);
    header[10] = static_cast<char>((length >> 8U) & 0xffU);
    header[11] = static_cast<char>(length & 0xffU);
    header.replace(12, id.size(), id);
    header.replace(76, target.size(), target);
    header.replace(108, correlation.size(), correlation);
    return header + std::string(payload);
  };
  const std::string frames = frame(0, "RPCRegister", "broker", "r-1", R"({"name":"hand"})") +
                             frame(2, "tick", "bob", "t-1", R"({"n":1})");
  ASSERT_EQ(::send(fd, frames.data(), frames.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(frames.size()));

  const auto got = bob.receive();
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->id, "tick");
  EXPECT_EQ(got->source, "hand");
  EXPECT_EQ(got->correlation_id, "t-1");
  EXPECT_EQ(got->payload.view(), R"({"n":1})");

  // The registration reply comes back as a binary frame: magic, response type, big-endian
  // length, the caller's correlation id.
  std::string reply(128, '\0');
  std::size_t have = 0;
  while (have < reply.size()) {
    pollfd p{fd, POLLIN, 0};
    ASSERT_GT(::poll(&p, 1, static_cast<int>(kPatience.count())), 0);
    const ssize_t n = ::read(fd, reply.data() + have, reply.size() - have);
    ASSERT_GT(n, 0);
    have += static_cast<std::size_t>(n);
  }
  ::close(fd);
  EXPECT_EQ(reply[0], 0x56);
  EXPECT_EQ(reply[1], 0x32);
  EXPECT_EQ(reply[4], 1) << "type byte of a response";
  EXPECT_EQ(std::string(reply.c_str() + 12), "RPCRegister");
  EXPECT_EQ(std::string(reply.c_str() + 44), "broker");
  EXPECT_EQ(std::string(reply.c_str() + 76), "hand");
  EXPECT_EQ(std::string(reply.data() + 108, 3), "r-1");
  const std::uint32_t length = (std::uint32_t{static_cast<unsigned char>(reply[8])} << 24U) |
                               (std::uint32_t{static_cast<unsigned char>(reply[9])} << 16U) |
                               (std::uint32_t{static_cast<unsigned char>(reply[10])} << 8U) |
                               std::uint32_t{static_cast<unsigned char>(reply[11])};
  EXPECT_GT(length, 0U);
  EXPECT_LT(length, 1000U);
}

TEST(BrokerRouting, NdjsonSenderToBinaryReceiverKeepsRawJsonPayload) {
  TempDir dir;
  BrokerProcess broker(dir);
  Peer text(broker.socket_path(), Framing::ndjson);
  Peer binary(broker.socket_path(), Framing::binary);
  registered_ok(text, "text");
  registered_ok(binary, "binary");

  const std::string payload = R"({"k" : [true,false,  null], "s":"\u00e9\t", "n":-0.5e-3})";
  text.send_bytes(R"({"type":"request","id":"q","target":"binary","correlation_id":"x-1",)"
                  R"("payload":)" +
                  payload + "}\n");

  const auto got = binary.receive();
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->type, MessageType::request);
  EXPECT_EQ(got->encoding, PayloadEncoding::json);
  EXPECT_EQ(got->source, "text");
  EXPECT_EQ(got->correlation_id, "x-1");
  EXPECT_EQ(got->payload.view(), payload);
}

TEST(BrokerRouting, BinarySenderToNdjsonReceiverKeepsJsonAndConvertsPlain) {
  TempDir dir;
  BrokerProcess broker(dir);
  Peer binary(broker.socket_path(), Framing::binary);
  Peer text(broker.socket_path(), Framing::ndjson);
  registered_ok(binary, "binary");
  registered_ok(text, "text");

  const std::string json_payload = R"({"k" : [true,false],   "n":-0.5, "u":"\u00e9"})";
  binary.send(make_message(MessageType::event, "text", "j", json_payload, "y-1"));
  Message plain = make_message(MessageType::event, "text", "p", "line one\nline \"two\"", "y-2");
  plain.encoding = PayloadEncoding::plain;
  binary.send(plain);

  const auto json_got = text.receive();
  ASSERT_TRUE(json_got.has_value());
  EXPECT_EQ(json_got->source, "binary");
  EXPECT_EQ(json_got->correlation_id, "y-1");
  EXPECT_EQ(json_got->payload.view(), json_payload);

  const auto plain_got = text.receive();
  ASSERT_TRUE(plain_got.has_value());
  EXPECT_EQ(plain_got->correlation_id, "y-2");
  EXPECT_EQ(payload_json(*plain_got), "line one\nline \"two\"");
}

TEST(BrokerRouting, GobPayloadForNdjsonReceiverIsRefusedWithErrorReply) {
  TempDir dir;
  BrokerProcess broker(dir);
  Peer binary(broker.socket_path(), Framing::binary);
  Peer text(broker.socket_path(), Framing::ndjson);
  registered_ok(binary, "binary");
  registered_ok(text, "text");

  Message gob = make_message(MessageType::event, "text", "g-1", random_bytes(64, 7), "z-1");
  gob.encoding = PayloadEncoding::gob;
  binary.send(gob);

  const auto reply = binary.receive();
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->type, MessageType::error);
  EXPECT_EQ(reply->id, "g-1");
  EXPECT_EQ(reply->correlation_id, "z-1");
  EXPECT_EQ(reply->source, "broker");
  EXPECT_FALSE(reply->error.empty());
  EXPECT_FALSE(text.receive(200ms).has_value()) << "nothing may reach the JSON receiver";
}

TEST(BrokerOrder, TenThousandMessagesFromOneSenderArriveInOrder) {
  TempDir dir;
  BrokerProcess broker(dir, BrokerProcess::Options().with_args({"--offer-policy=block"}));
  Peer sender(broker.socket_path(), Framing::ndjson);
  Peer receiver(broker.socket_path(), Framing::ndjson);
  registered_ok(sender, "sender");
  registered_ok(receiver, "receiver");

  constexpr int kCount = 10'000;
  std::string lines;
  for (int i = 0; i < kCount; ++i) {
    lines += R"({"type":"event","id":"n","target":"receiver","payload":{"seq":)" +
             std::to_string(i) + "}}\n";
  }
  std::jthread writer([&] { sender.send_bytes(lines); });
  int next = 0;
  for (; next < kCount; ++next) {
    const auto got = receiver.receive();
    if (!got) {
      break;
    }
    ASSERT_EQ(payload_json(*got)["seq"], next) << "out of order";
  }
  writer.join();
  EXPECT_EQ(next, kCount);
  EXPECT_FALSE(sender.receive(0ms).has_value()) << "no error reply expected";
}

TEST(BrokerOrder, InterleavedSendersEachKeepTheirOrder) {
  TempDir dir;
  BrokerProcess broker(dir, BrokerProcess::Options().with_args({"--offer-policy=block"}));
  Peer receiver(broker.socket_path(), Framing::ndjson);
  registered_ok(receiver, "receiver");

  constexpr int kSenders = 4;
  constexpr int kEach = 2'500;
  std::vector<std::unique_ptr<Peer>> senders;
  for (int s = 0; s < kSenders; ++s) {
    senders.push_back(std::make_unique<Peer>(broker.socket_path(),
                                             s % 2 == 0 ? Framing::ndjson : Framing::binary));
    registered_ok(*senders.back(), "sender" + std::to_string(s));
  }
  std::vector<std::jthread> writers;
  writers.reserve(kSenders);
  for (int s = 0; s < kSenders; ++s) {
    writers.emplace_back([&, s] {
      for (int i = 0; i < kEach; ++i) {
        senders[static_cast<std::size_t>(s)]->send(make_message(
            MessageType::event, "receiver", "n", R"({"seq":)" + std::to_string(i) + "}"));
      }
    });
  }

  std::map<std::string, int> next;
  int total = 0;
  for (; total < kSenders * kEach; ++total) {
    const auto got = receiver.receive();
    if (!got) {
      break;
    }
    int& expected = next[got->source];
    ASSERT_EQ(payload_json(*got)["seq"], expected) << "from " << got->source;
    ++expected;
  }
  for (auto& writer : writers) {
    writer.join();
  }
  EXPECT_EQ(total, kSenders * kEach);
  for (int s = 0; s < kSenders; ++s) {
    EXPECT_EQ(next["sender" + std::to_string(s)], kEach);
  }
}

TEST(BrokerRouting, UnknownTargetGetsErrorReplyWithIdAndCorrelationId) {
  TempDir dir;
  BrokerProcess broker(dir);
  for (const Framing framing : {Framing::ndjson, Framing::binary}) {
    Peer sender(broker.socket_path(), framing);
    const std::string name = "sender-" + std::string(wire::to_string(framing));
    registered_ok(sender, name);
    sender.send(make_message(MessageType::request, "nobody", "ask-1", R"({"q":1})", "corr-1"));

    const auto reply = sender.receive();
    ASSERT_TRUE(reply.has_value());
    EXPECT_EQ(reply->type, MessageType::error);
    EXPECT_EQ(reply->id, "ask-1");
    EXPECT_EQ(reply->correlation_id, "corr-1");
    EXPECT_EQ(reply->source, "broker");
    EXPECT_EQ(reply->target, name);
    EXPECT_NE(reply->error.find("unknown target"), std::string::npos) << reply->error;
  }
}

TEST(BrokerRegistration, NameHeldByLiveConnectionIsRefused) {
  TempDir dir;
  BrokerProcess broker(dir);
  Peer first(broker.socket_path(), Framing::ndjson);
  Peer second(broker.socket_path(), Framing::binary);

  const Message accepted = registered_ok(first, "svc");
  EXPECT_EQ(accepted.source, "broker");
  EXPECT_EQ(payload_json(accepted)["name"], "svc");
  EXPECT_EQ(payload_json(accepted)["registered"], true);

  const Message refused = second.register_name("svc");
  EXPECT_EQ(refused.type, MessageType::error);
  EXPECT_EQ(refused.id, "RPCRegister");
  EXPECT_NE(refused.error.find("svc"), std::string::npos) << refused.error;

  // The holder may claim its own name again; the name stays with it.
  EXPECT_EQ(first.register_name("svc").type, MessageType::response);
  Peer third(broker.socket_path(), Framing::ndjson);
  registered_ok(third, "third");
  third.send(make_message(MessageType::event, "svc", "to-holder"));
  const auto got = first.receive();
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->id, "to-holder");
  EXPECT_FALSE(second.receive(200ms).has_value());
}

TEST(BrokerRegistration, NameFreedWhenHolderDiesAndMessagesReachOnlyTheNewHolder) {
  TempDir dir;
  BrokerProcess broker(dir);
  Process old_holder = start_receiver_process(dir, broker.socket_path(), "svc");
  Peer next_holder(broker.socket_path(), Framing::ndjson);
  Peer sender(broker.socket_path(), Framing::ndjson);
  registered_ok(sender, "sender");

  EXPECT_EQ(next_holder.register_name("svc").type, MessageType::error);
  old_holder.kill_and_reap();

  const bool taken =
      wait_until([&] { return next_holder.register_name("svc").type == MessageType::response; });
  ASSERT_TRUE(taken) << "the name of a closed connection was never freed";

  sender.send(make_message(MessageType::event, "svc", "after", "", "a-1"));
  const auto got = next_holder.receive();
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->id, "after");
  EXPECT_EQ(got->source, "sender");
  EXPECT_FALSE(sender.receive(200ms).has_value()) << "no error reply expected";

  int holders = 0;
  for (const auto& process : list_processes(sender)) {
    for (const auto& name : process["names"]) {
      holders += name == "svc" ? 1 : 0;
    }
    EXPECT_NE(process["pid"], old_holder.pid()) << "the dead process is still listed";
  }
  EXPECT_EQ(holders, 1);
}

TEST(BrokerSource, ClientCannotSendAsAnotherName) {
  TempDir dir;
  BrokerProcess broker(dir);
  Peer alice(broker.socket_path(), Framing::ndjson);
  Peer bob(broker.socket_path(), Framing::ndjson);
  Peer carol(broker.socket_path(), Framing::binary);
  registered_ok(alice, "alice");
  registered_ok(bob, "bob");
  registered_ok(carol, "carol");

  for (const std::string claimed : {"bob", "broker", "nobody"}) {
    Message forged = make_message(MessageType::event, "carol", "forged", "", "f-" + claimed);
    forged.source = claimed;
    alice.send(forged);
    const auto reply = alice.receive();
    ASSERT_TRUE(reply.has_value());
    EXPECT_EQ(reply->type, MessageType::error);
    EXPECT_EQ(reply->id, "forged");
    EXPECT_EQ(reply->correlation_id, "f-" + claimed);
    EXPECT_NE(reply->error.find(claimed), std::string::npos) << reply->error;
  }

  Message own = make_message(MessageType::event, "carol", "own-name");
  own.source = "alice";
  alice.send(own);
  alice.send(make_message(MessageType::event, "carol", "no-source"));
  const auto first = carol.receive();
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->id, "own-name") << "a forged message reached the target";
  EXPECT_EQ(first->source, "alice");
  const auto second = carol.receive();
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->id, "no-source");
  EXPECT_EQ(second->source, "alice");
}

TEST(BrokerSource, UnregisteredClientCannotSendButCanCallTheBroker) {
  TempDir dir;
  BrokerProcess broker(dir);
  Peer carol(broker.socket_path(), Framing::ndjson);
  registered_ok(carol, "carol");
  for (const Framing framing : {Framing::ndjson, Framing::binary}) {
    Peer anonymous(broker.socket_path(), framing);
    anonymous.send(make_message(MessageType::event, "carol", "sneak", R"({"x":1})", "s-1"));
    const auto reply = anonymous.receive();
    ASSERT_TRUE(reply.has_value());
    EXPECT_EQ(reply->type, MessageType::error);
    EXPECT_EQ(reply->id, "sneak");
    EXPECT_EQ(reply->correlation_id, "s-1");
    EXPECT_NE(reply->error.find("register"), std::string::npos) << reply->error;

    const Message count = anonymous.call("RPCGetMessageCount");
    EXPECT_EQ(count.type, MessageType::response) << count.error;
    EXPECT_TRUE(payload_json(count)["count"].is_number_unsigned());
  }
  EXPECT_FALSE(carol.receive(200ms).has_value()) << "an unregistered sender reached carol";
}

}  // namespace
}  // namespace v2::integration
