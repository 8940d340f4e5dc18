// Limits and hostile input: over-long lines and frames, malformed input, receivers that stop
// reading or die. The broker must refuse, stay bounded, and keep serving everyone else.

#include <gtest/gtest.h>
#include <poll.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "broker_process.hpp"

namespace v2::integration {
namespace {

using nlohmann::json;
using wire::Framing;

constexpr std::size_t kLimit = std::size_t{64} * 1024;

std::string event_line(const std::string& target, std::size_t payload_size) {
  return R"({"type":"event","id":"big","correlation_id":"b-1","target":")" + target +
         R"(","payload":")" + std::string(payload_size, 'x') + "\"}\n";
}

TEST(BrokerLimits, NdjsonLineOverLimitIsRefusedAndConnectionStaysUsable) {
  TempDir dir;
  BrokerProcess broker(dir, BrokerProcess::Options().with_args({"--max-message-size=64KiB"}));
  Bystanders others(broker.socket_path());
  Peer sender(broker.socket_path(), Framing::ndjson);
  ASSERT_EQ(sender.register_name("sender").type, MessageType::response);

  // The reply is read as plain JSON: its empty id is refused by the wire codec (see
  // BrokerMalformed.ErrorReplyToUnreadableLineIsAcceptedByTheWireCodec).
  sender.send_bytes(event_line("ping", kLimit + 1000));
  const auto reply = sender.receive_line();
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->value("type", ""), "error");
  EXPECT_NE(reply->value("error", "").find("too long"), std::string::npos) << reply->dump();

  // Framing resynchronised after the long line: the next one is routed.
  sender.send_bytes(event_line("ping", 10));
  const auto got = others.text().receive();
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->source, "sender");
  EXPECT_EQ(sender.call_line("RPCGetMessageCount")["type"], "response");
  EXPECT_TRUE(others.exchange(1));
}

TEST(BrokerLimits, FiftyMebibyteLineIsDiscardedWithoutGrowingBrokerMemory) {
  TempDir dir;
  BrokerProcess broker(dir, BrokerProcess::Options().with_args({"--max-message-size=64KiB"}));
  Bystanders others(broker.socket_path());
  ASSERT_TRUE(others.exchange(0));
  Peer sender(broker.socket_path(), Framing::ndjson);
  ASSERT_EQ(sender.register_name("sender").type, MessageType::response);
  const long before = rss_kib(broker.pid());
  ASSERT_GT(before, 0);

  constexpr std::size_t kLine = std::size_t{50} << 20U;
  std::atomic<bool> sent{false};
  std::jthread writer([&] {
    sender.send_bytes(event_line("ping", kLine));
    sent = true;
  });
  // Others are served while the long line streams in.
  for (int round = 1; !sent && round < 100'000; ++round) {
    ASSERT_TRUE(others.exchange(round));
  }
  writer.join();

  const auto reply = sender.receive_line();
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->value("type", ""), "error");
  EXPECT_NE(reply->value("error", "").find("too long"), std::string::npos) << reply->dump();
  const long after = rss_kib(broker.pid());
  EXPECT_LT(after - before, 16 * 1024)
      << "VmRSS grew from " << before << " KiB to " << after << " KiB for a refused line of 50 MiB";
  EXPECT_EQ(sender.call_line("RPCGetMessageCount")["type"], "response")
      << "the connection must stay usable after a refused line";
  EXPECT_FALSE(others.text().receive(100ms).has_value()) << "the long line was delivered";
  EXPECT_TRUE(others.exchange(-1));
}

TEST(BrokerLimits, BinaryFrameOverLimitIsRefusedAndConnectionClosed) {
  TempDir dir;
  BrokerProcess broker(dir, BrokerProcess::Options().with_args({"--max-message-size=64KiB"}));
  Bystanders others(broker.socket_path());
  Peer sender(broker.socket_path(), Framing::binary);
  ASSERT_EQ(sender.register_name("sender").type, MessageType::response);

  Message big = make_message(MessageType::event, "ping", "huge", "", "h-1");
  big.payload = Payload::copy_of(std::string(kLimit + 1, 'x'));
  big.encoding = PayloadEncoding::plain;
  std::string frame;
  ASSERT_TRUE(wire::encode_binary(big, frame).ok());
  try {
    sender.send_bytes(frame);
  } catch (const HungUp&) {
    // The broker may close before the whole payload is written; the reply is still readable.
  }

  const auto reply = sender.receive();
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->type, MessageType::error);
  EXPECT_EQ(reply->id, "huge");
  EXPECT_EQ(reply->correlation_id, "h-1");
  EXPECT_NE(reply->error.find("too large"), std::string::npos) << reply->error;
  EXPECT_TRUE(sender.wait_hang_up()) << "the connection must be closed";
  EXPECT_FALSE(others.text().receive(100ms).has_value());
  EXPECT_TRUE(others.exchange(1));
}

TEST(BrokerMalformed, InvalidJsonLinesGetErrorRepliesAndConnectionStillWorks) {
  TempDir dir;
  BrokerProcess broker(dir);
  Bystanders others(broker.socket_path());
  Peer sender(broker.socket_path(), Framing::ndjson);
  ASSERT_EQ(sender.register_name("sender").type, MessageType::response);

  const std::string bad[] = {
      "{not json}\n",
      "[1,2,3]\n",
      std::string(R"({"type":"bogus","id":"x","target":"ping"})") + "\n",
      "{\"type\":\"event\",\"id\":\"\xff\xfe\",\"target\":\"ping\"}\n",
      std::string(R"({"type":"event","id":"cut","target":"ping","payload":{"a":})") + "\n",
  };
  for (const auto& line : bad) {
    sender.send_bytes(line);
    const auto reply = sender.receive_line();
    ASSERT_TRUE(reply.has_value()) << line;
    EXPECT_EQ(reply->value("type", ""), "error") << line;
    EXPECT_EQ(reply->value("source", ""), "broker") << line;
    EXPECT_FALSE(reply->value("error", "").empty()) << line;
  }
  sender.send(make_message(MessageType::event, "ping", "fine", R"({"ok":1})"));
  const auto got = others.text().receive();
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->id, "fine");
  EXPECT_EQ(got->source, "sender");
  EXPECT_EQ(sender.call_line("RPCGetMessageCount")["type"], "response");
  EXPECT_TRUE(others.exchange(1));
}

// The broker answers input whose id it could not read with an error reply whose id is empty;
// the project's own wire codec (used by the C++ client and v2ctl) refuses such a message
// ("field=id empty"), so a client cannot read the reply to its own bad line.
TEST(BrokerMalformed, ErrorReplyToUnreadableLineIsAcceptedByTheWireCodec) {
  TempDir dir;
  BrokerProcess broker(dir);
  Peer sender(broker.socket_path(), Framing::ndjson);
  sender.send_bytes("{not json}\n");
  std::optional<Message> reply;
  EXPECT_NO_THROW(reply = sender.receive()) << "the broker's error reply is not decodable";
  if (reply) {
    EXPECT_EQ(reply->type, MessageType::error);
  }
}

TEST(BrokerMalformed, ErrorReplyToBadBinaryMagicIsAcceptedByTheWireCodec) {
  TempDir dir;
  BrokerProcess broker(dir);
  Peer sender(broker.socket_path(), Framing::binary);
  sender.send_bytes(std::string("\x56\x33\x01", 3) + std::string(125, '\0'));
  std::optional<Message> reply;
  EXPECT_NO_THROW(reply = sender.receive()) << "the broker's error reply is not decodable";
  if (reply) {
    EXPECT_EQ(reply->type, MessageType::error);
  }
}

// Reads everything until the broker closes the connection; nothing if it does not.
std::optional<std::string> read_to_end(int fd) {
  std::string bytes;
  char buffer[4096];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(kPatience.count())) <= 0) {
      return std::nullopt;
    }
    const ssize_t n = ::read(fd, buffer, sizeof(buffer));
    if (n == 0 || (n < 0 && errno == ECONNRESET)) {
      return bytes;
    }
    if (n < 0) {
      return std::nullopt;
    }
    bytes.append(buffer, static_cast<std::size_t>(n));
  }
}

TEST(BrokerMalformed, BadBinaryMagicClosesConnectionOthersUnaffected) {
  TempDir dir;
  BrokerProcess broker(dir);
  Bystanders others(broker.socket_path());

  const int wrong_magic = try_connect(broker.socket_path());
  ASSERT_GE(wrong_magic, 0);
  std::string header(128, '\0');
  header[0] = 0x56;
  header[1] = 0x33;  // not '2'
  header[2] = 0x01;
  ASSERT_EQ(::send(wrong_magic, header.data(), header.size(), MSG_NOSIGNAL), 128);
  const auto reply = read_to_end(wrong_magic);
  ::close(wrong_magic);
  ASSERT_TRUE(reply.has_value()) << "the connection was not closed";
  // An error frame (magic, version, type 3 = error) carrying the text, then the end.
  ASSERT_GE(reply->size(), 128U);
  EXPECT_EQ(reply->substr(0, 3), "\x56\x32\x01");
  EXPECT_EQ((*reply)[4], 3);
  EXPECT_NE(reply->find("\"error\""), std::string::npos);

  // A first byte that selects no framing at all.
  const int no_framing = try_connect(broker.socket_path());
  ASSERT_GE(no_framing, 0);
  ASSERT_EQ(::send(no_framing, "HELLO\n", 6, MSG_NOSIGNAL), 6);
  EXPECT_TRUE(read_to_end(no_framing).has_value()) << "the connection was not closed";
  ::close(no_framing);

  EXPECT_TRUE(broker.running());
  EXPECT_TRUE(others.exchange(1));
}

TEST(BrokerSlowReceiver, SlowButReadingReceiverSlowsTheSenderInsteadOfLosingUnderBlock) {
  TempDir dir;
  BrokerProcess broker(
      dir, BrokerProcess::Options().with_args(
               // No stall verdict, however slow this machine: the reader always reads on.
               {"--max-outgoing=64KiB", "--offer-policy=block", "--stall-timeout=120s"}));
  Peer sender(broker.socket_path(), Framing::binary);
  Peer reader(broker.socket_path(), Framing::binary);
  ASSERT_EQ(sender.register_name("sender").type, MessageType::response);
  ASSERT_EQ(reader.register_name("reader").type, MessageType::response);

  // 4 MiB through a 64 KiB outgoing buffer, to a receiver that pauses after every message:
  // without back-pressure most of it would be dropped.
  constexpr int kCount = 4'000;
  const std::string filler(1000, 'f');
  std::jthread writer([&] {
    for (int i = 0; i < kCount; ++i) {
      const std::string payload =
          R"({"seq":)" + std::to_string(i) + R"(,"fill":")" + filler + "\"}";
      sender.send(make_message(MessageType::event, "reader", "n", payload, std::to_string(i)));
    }
  });
  int received = 0;
  bool in_order = true;
  while (received < kCount) {
    const auto got = reader.receive();
    if (!got) {
      break;
    }
    in_order = in_order && payload_json(*got)["seq"] == received;
    ++received;
    if (received % 16 == 0) {
      std::this_thread::sleep_for(1ms);  // a slow consumer, but one that keeps reading
    }
  }
  writer.join();
  EXPECT_EQ(received, kCount);
  EXPECT_TRUE(in_order);
  EXPECT_FALSE(sender.receive(200ms).has_value()) << "the sender got an error reply";
}

TEST(BrokerSlowReceiver, NonReadingReceiverDoesNotStopAnotherAndSenderLearnsOfDrops) {
  TempDir dir;
  BrokerProcess broker(
      dir, BrokerProcess::Options().with_args({"--max-outgoing=256KiB", "--offer-policy=block"}));
  Peer sender(broker.socket_path(), Framing::ndjson);
  Peer fast(broker.socket_path(), Framing::binary);
  Peer slow(broker.socket_path(), Framing::ndjson);
  Peer observer(broker.socket_path(), Framing::ndjson);
  ASSERT_EQ(sender.register_name("sender").type, MessageType::response);
  ASSERT_EQ(fast.register_name("fast").type, MessageType::response);
  ASSERT_EQ(slow.register_name("slow").type, MessageType::response);

  constexpr int kEach = 3'000;
  const std::string filler(1000, 'f');
  std::atomic<int> fast_count{0};
  std::atomic<bool> fast_in_order{true};
  std::jthread fast_reader([&] {
    while (fast_count < kEach) {
      const auto got = fast.receive();
      if (!got) {
        return;
      }
      if (payload_json(*got)["seq"] != fast_count.load()) {
        fast_in_order = false;
      }
      ++fast_count;
    }
  });
  // The sender waits, every few messages, for the reading receiver to catch up, so only the
  // receiver that never reads can exceed its outgoing limit.
  std::jthread writer([&] {
    for (int i = 0; i < kEach; ++i) {
      if (i % 32 == 0 && !wait_until([&] { return fast_count >= i; })) {
        return;
      }
      for (const char* target : {"slow", "fast"}) {
        const std::string payload =
            R"({"seq":)" + std::to_string(i) + R"(,"fill":")" + filler + "\"}";
        sender.send(make_message(MessageType::event, target, "n", payload,
                                 std::string(target) + "-" + std::to_string(i)));
      }
    }
  });

  // The sender reads its error replies while the broker reports the slow receiver's drops.
  int errors = 0;
  bool other_errors = false;
  std::uint64_t slow_received = 0;
  std::uint64_t slow_dropped = 0;
  auto next_look = Clock::now();
  const bool settled = wait_until([&] {
    while (const auto reply = sender.receive(0ms)) {
      ++errors;
      if (reply->type != MessageType::error || reply->correlation_id.rfind("slow-", 0) != 0 ||
          reply->error.find("not reading") == std::string::npos) {
        other_errors = true;
        ADD_FAILURE() << "unexpected reply: " << reply->correlation_id << " " << reply->error;
      }
    }
    if (Clock::now() < next_look) {
      return false;
    }
    next_look = Clock::now() + 50ms;
    for (const json& process : list_processes(observer)) {
      if (process["names"] == json::array({"slow"})) {
        slow_received = process["received"].get<std::uint64_t>();
        slow_dropped = process["dropped_slow"].get<std::uint64_t>();
      }
    }
    return fast_count == kEach && slow_received + slow_dropped == kEach &&
           static_cast<std::uint64_t>(errors) == slow_dropped;
  });
  writer.join();
  fast_reader.join();

  EXPECT_TRUE(settled) << "fast=" << fast_count << " slow received=" << slow_received
                       << " dropped=" << slow_dropped << " errors=" << errors;
  EXPECT_EQ(fast_count, kEach) << "the reading receiver must get all of its messages";
  EXPECT_TRUE(fast_in_order);
  EXPECT_FALSE(other_errors);
  EXPECT_GT(slow_dropped, 0U) << "the outgoing limit never applied";
  EXPECT_EQ(static_cast<std::uint64_t>(errors), slow_dropped);

  // What was queued for the slow receiver is still delivered, in order, and nothing more.
  std::uint64_t slow_count = 0;
  int last_seq = -1;
  while (slow_count < slow_received) {
    const auto got = slow.receive();
    ASSERT_TRUE(got.has_value()) << "only " << slow_count << " of " << slow_received;
    const int seq = payload_json(*got)["seq"].get<int>();
    EXPECT_GT(seq, last_seq);
    last_seq = seq;
    ++slow_count;
  }
  EXPECT_FALSE(slow.receive(100ms).has_value());
  EXPECT_EQ(slow_count + slow_dropped, static_cast<std::uint64_t>(kEach));
}

TEST(BrokerKilledReceiver, ReceiverKilledMidStreamLeavesBrokerServing) {
  TempDir dir;
  BrokerProcess broker(dir, BrokerProcess::Options().with_args({"--offer-policy=block"}));
  Bystanders others(broker.socket_path());
  Process victim = start_receiver_process(dir, broker.socket_path(), "victim");
  Peer sender(broker.socket_path(), Framing::ndjson);
  ASSERT_EQ(sender.register_name("sender").type, MessageType::response);

  int sent = 0;
  std::string last_error;
  bool errors_before_kill = false;
  const bool told = wait_until([&] {
    for (int i = 0; i < 50; ++i, ++sent) {
      sender.send(make_message(MessageType::event, "victim", "n",
                               R"({"seq":)" + std::to_string(sent) + "}",
                               "v-" + std::to_string(sent)));
      if (sent == 2'000) {
        victim.kill_and_reap();
      }
    }
    while (const auto reply = sender.receive(0ms)) {
      errors_before_kill = errors_before_kill || victim.running();
      last_error = reply->error;
    }
    return !last_error.empty();
  });
  ASSERT_TRUE(told) << "the sender was never told that its receiver is gone";
  EXPECT_FALSE(errors_before_kill);
  EXPECT_TRUE(last_error.find("unknown target") != std::string::npos ||
              last_error.find("disconnected") != std::string::npos)
      << last_error;
  EXPECT_TRUE(broker.running());
  EXPECT_TRUE(others.exchange(1));
  for (const json& process : list_processes(sender)) {
    EXPECT_NE(process["names"], json::array({"victim"}));
  }
}

TEST(BrokerSlowReceiver, DisconnectPolicyClosesTheNonReaderAndFreesItsName) {
  TempDir dir;
  BrokerProcess broker(dir, BrokerProcess::Options().with_args(
                                {"--max-outgoing=256KiB", "--slow-receiver=disconnect"}));
  Bystanders others(broker.socket_path());
  Peer sender(broker.socket_path(), Framing::ndjson);
  Peer slow(broker.socket_path(), Framing::ndjson);
  ASSERT_EQ(sender.register_name("sender").type, MessageType::response);
  ASSERT_EQ(slow.register_name("slow").type, MessageType::response);

  const std::string payload = R"({"fill":")" + std::string(4000, 'f') + "\"}";
  Peer successor(broker.socket_path(), Framing::ndjson);
  const bool freed = wait_until([&] {
    for (int i = 0; i < 50; ++i) {
      sender.send(make_message(MessageType::event, "slow", "n", payload));
    }
    while (sender.receive(0ms)) {
    }
    return successor.register_name("slow").type == MessageType::response;
  });
  ASSERT_TRUE(freed) << "the receiver that stopped reading kept its name";
  EXPECT_TRUE(slow.wait_hang_up()) << "the receiver that stopped reading was not disconnected";
  EXPECT_NE(broker.log().find("stopped reading"), std::string::npos);
  EXPECT_TRUE(others.exchange(1));
}

TEST(BrokerLimits, ConnectionsBeyondMaxConnectionsAreClosedOthersServed) {
  TempDir dir;
  BrokerProcess broker(dir, BrokerProcess::Options().with_args({"--max-connections=3"}));
  Bystanders others(broker.socket_path());
  // The start-up probe's connection may still be counted for a moment.
  ASSERT_TRUE(wait_until([&] { return list_processes(others.text()).size() == 2; }));
  Peer third(broker.socket_path(), Framing::ndjson);
  ASSERT_EQ(third.call("RPCGetMessageCount").type, MessageType::response);
  const int extra = try_connect(broker.socket_path());
  ASSERT_GE(extra, 0) << "the kernel accepts into the backlog; the broker closes it";
  // The broker says why in one NDJSON error line, then closes.
  std::string said;
  for (;;) {
    pollfd p{extra, POLLIN, 0};
    ASSERT_GT(::poll(&p, 1, static_cast<int>(kPatience.count())), 0);
    std::array<char, 512> chunk{};
    const ssize_t n = ::read(extra, chunk.data(), chunk.size());
    if (n <= 0) {
      EXPECT_TRUE(n == 0 || errno == ECONNRESET) << "read: errno=" << errno;
      break;
    }
    said.append(chunk.data(), static_cast<std::size_t>(n));
  }
  ::close(extra);
  EXPECT_NE(said.find("\"type\":\"error\""), std::string::npos) << said;
  EXPECT_NE(said.find("max_connections=3"), std::string::npos) << said;
  EXPECT_NE(broker.log().find("max_connections"), std::string::npos) << broker.log();
  EXPECT_TRUE(others.exchange(1));
}

TEST(BrokerLimits, NamesBeyondMaxNamesAreRefused) {
  TempDir dir;
  BrokerProcess broker(dir, BrokerProcess::Options().with_args({"--max-names=2"}));
  Peer peer(broker.socket_path(), Framing::ndjson);
  EXPECT_EQ(peer.register_name("one").type, MessageType::response);
  EXPECT_EQ(peer.register_name("two").type, MessageType::response);
  EXPECT_EQ(peer.register_name("one").type, MessageType::response) << "its own name again";
  const Message third = peer.register_name("three");
  EXPECT_EQ(third.type, MessageType::error);
  EXPECT_NE(third.error.find("max_names"), std::string::npos) << third.error;
}

TEST(BrokerLimits, OutOfDescriptorsTurnsConnectionsAwayWithOneWarning) {
  TempDir dir;
  // 24 descriptors: the broker's own (listener, epoll, signals, logs, spare) leave room for a
  // handful of clients; the rest must be told, not left hanging or spun on.
  BrokerProcess broker(dir, BrokerProcess::Options()
                                .with_prefix({"/usr/bin/prlimit", "--nofile=24:24", "--"})
                                .with_args({"--max-connections=1000"}));
  std::vector<int> clients;
  std::size_t refused = 0;
  for (int i = 0; i < 40; ++i) {
    const int fd = try_connect(broker.socket_path());
    ASSERT_GE(fd, 0);
    clients.push_back(fd);
  }
  for (const int fd : clients) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 200) <= 0) {
      continue;  // accepted and served: it has nothing to read
    }
    std::array<char, 512> chunk{};
    const ssize_t n = ::read(fd, chunk.data(), chunk.size());
    if (n > 0 &&
        std::string(chunk.data(), static_cast<std::size_t>(n)).find("out of file descriptors") !=
            std::string::npos) {
      ++refused;
    }
  }
  for (const int fd : clients) {
    ::close(fd);
  }
  EXPECT_GT(refused, 0U) << "some of 40 clients must have been turned away with an error";
  Bystanders others(broker.socket_path());
  EXPECT_TRUE(others.exchange(1)) << "the broker serves again once descriptors are free";
  const std::string log = broker.log();
  std::size_t warnings = 0;
  for (auto at = log.find("turning connections away"); at != std::string::npos;
       at = log.find("turning connections away", at + 1)) {
    ++warnings;
  }
  EXPECT_GE(warnings, 1U);
  EXPECT_LE(warnings, 5U) << "the warning is rate-limited, not repeated per wake-up";
}

}  // namespace
}  // namespace v2::integration
