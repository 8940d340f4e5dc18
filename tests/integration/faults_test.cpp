// Faults with real processes: clients killed in the middle of a message, receivers that stop
// reading while others stream, thousands of short-lived clients, SIGTERM twice under load. The
// broker must free what the faulty client held, count what it drops and why, and keep serving
// everyone else.

#include <gtest/gtest.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>

#include <array>
#include <atomic>
#include <charconv>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "broker_process.hpp"

namespace v2::integration {
namespace {

using nlohmann::json;
using wire::Framing;

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitized = true;  // allocators that keep freed memory: RSS says nothing
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
#else
constexpr bool kSanitized = false;
#endif

std::string encoded(const Message& message, Framing framing) {
  std::string out;
  const auto result = wire::encode(message, framing, out);
  if (!result.ok()) {
    throw std::runtime_error("encode: " + result.text);
  }
  return out;
}

Message registration(const std::string& name) {
  return make_message(MessageType::request, "broker", "RPCRegister",
                      R"({"name":")" + name + R"("})");
}

// The first part of a message far larger than what is sent of it: a line without its end, or
// a binary header announcing 1 MiB followed by 100 KiB of it.
std::string first_part_of_a_message(Framing framing) {
  constexpr std::size_t kSent = std::size_t{100} * 1024;
  if (framing == Framing::ndjson) {
    return R"({"type":"event","id":"half","target":"steady","payload":")" + std::string(kSent, 'h');
  }
  const std::string whole =
      encoded(make_message(MessageType::event, "steady", "half",
                           "\"" + std::string(std::size_t{1} << 20U, 'h') + "\""),
              Framing::binary);
  return whole.substr(0, wire::kBinaryHeaderSize + kSent);
}

/// A child process that registers `name`, sends the first part of a large message, waits until
/// the broker has read all of it (SIOCOUTQ at 0) and then sleeps: killing it leaves the broker
/// with a half-read message. The child makes only async-signal-safe calls.
Process start_half_sender(const std::string& socket_path, Framing framing,
                          const std::string& name) {
  const std::string bytes = encoded(registration(name), framing) + first_part_of_a_message(framing);
  const sockaddr_un address = socket_address(socket_path);
  std::array<int, 2> ready{};
  if (::pipe2(ready.data(), O_CLOEXEC) != 0) {
    fail_errno("pipe2");
  }
  const pid_t pid = ::fork();
  if (pid < 0) {
    fail_errno("fork");
  }
  if (pid == 0) {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
      ::_exit(1);
    }
    write_all_raw(fd, bytes);
    for (int unread = 1; unread > 0;) {
      if (::ioctl(fd, SIOCOUTQ, &unread) != 0) {
        ::_exit(1);
      }
      const timespec pause{0, 1'000'000};
      ::nanosleep(&pause, nullptr);
    }
    write_all_raw(ready[1], "r");
    for (;;) {
      ::pause();
    }
  }
  ::close(ready[1]);
  Process child = Process::adopt(pid);
  pollfd p{ready[0], POLLIN, 0};
  char byte = 0;
  const bool ok = ::poll(&p, 1, static_cast<int>(kPatience.count())) == 1 &&
                  ::read(ready[0], &byte, 1) == 1 && byte == 'r';
  ::close(ready[0]);
  if (!ok) {
    throw std::runtime_error("the half sender " + name + " did not get its bytes through");
  }
  return child;
}

// The entry of RPCListProcesses for `pid`, or null.
json process_of(Peer& observer, pid_t pid) {
  for (const json& process : list_processes(observer)) {
    if (process["pid"] == pid) {
      return process;
    }
  }
  return nullptr;
}

json refused_counts(Peer& observer) {
  return payload_json(observer.call("RPCGetMessageStats"))["refused"];
}

TEST(BrokerFaults, ClientKilledInTheMiddleOfAMessageIsFreedWhileOthersKeepStreaming) {
  TempDir dir;
  BrokerProcess broker(dir, BrokerProcess::Options().with_args({"--offer-policy=block"}));
  Peer observer(broker.socket_path(), Framing::ndjson);
  Peer sender(broker.socket_path(), Framing::ndjson);
  Peer steady(broker.socket_path(), Framing::binary);
  ASSERT_EQ(sender.register_name("sender").type, MessageType::response);
  ASSERT_EQ(steady.register_name("steady").type, MessageType::response);
  ASSERT_TRUE(wait_until([&] { return list_processes(observer).size() == 3; }));
  const long fds_before = fd_count(broker.pid());

  // Forked before any thread of this test starts.
  std::vector<Process> halves;
  halves.push_back(start_half_sender(broker.socket_path(), Framing::ndjson, "half-ndjson"));
  halves.push_back(start_half_sender(broker.socket_path(), Framing::binary, "half-binary"));
  for (Process& half : halves) {
    const json entry = process_of(observer, half.pid());
    ASSERT_FALSE(entry.is_null()) << "the half sender is not connected";
    EXPECT_EQ(entry["names"].size(), 1U) << entry.dump();
  }

  constexpr int kCount = 20'000;
  std::atomic<int> received{0};
  std::atomic<bool> in_order{true};
  std::jthread reader([&] {
    while (received < kCount) {
      const auto got = steady.receive();
      if (!got) {
        return;
      }
      in_order = in_order && payload_json(*got)["seq"] == received.load();
      ++received;
    }
  });
  std::jthread writer([&] {
    for (int i = 0; i < kCount; ++i) {
      sender.send(
          make_message(MessageType::event, "steady", "n", R"({"seq":)" + std::to_string(i) + "}"));
    }
  });

  ASSERT_TRUE(wait_until([&] { return received >= kCount / 10; }));
  for (Process& half : halves) {
    half.kill_and_reap();
  }
  writer.join();
  reader.join();
  EXPECT_EQ(received, kCount);
  EXPECT_TRUE(in_order);
  EXPECT_FALSE(sender.receive(100ms).has_value()) << "the sender got an error reply";

  for (Process& half : halves) {
    EXPECT_TRUE(wait_until([&] { return process_of(observer, half.pid()).is_null(); }))
        << "the killed client's connection is still listed";
  }
  EXPECT_TRUE(wait_until([&] { return fd_count(broker.pid()) <= fds_before; }))
      << "descriptors: " << fd_count(broker.pid()) << " now, " << fds_before << " before";
  for (const char* name : {"half-ndjson", "half-binary"}) {
    Peer successor(broker.socket_path(), Framing::binary);
    EXPECT_EQ(successor.register_name(name).type, MessageType::response) << name;
  }
  EXPECT_TRUE(broker.running());
}

// Messages a flooding sender sends to a receiver that never reads, while an unrelated pair
// streams as many.
constexpr int kFloodCount = 3'000;

TEST(BrokerFaults, ReceiverThatStopsReadingHasItsDropsCountedWhileAnotherPairFlows) {
  TempDir dir;
  BrokerProcess broker(
      dir, BrokerProcess::Options().with_args({"--offer-policy=block", "--stall-timeout=200ms",
                                               "--max-outgoing=256KiB", "--slow-receiver=drop"}));
  Peer observer(broker.socket_path(), Framing::ndjson);
  Peer flood(broker.socket_path(), Framing::ndjson);
  Peer stuck(broker.socket_path(), Framing::binary);
  Peer talker(broker.socket_path(), Framing::binary);
  Peer listener(broker.socket_path(), Framing::ndjson);
  for (auto [peer, name] : {std::pair{&flood, "flood"}, std::pair{&stuck, "stuck"},
                            std::pair{&talker, "talker"}, std::pair{&listener, "listener"}}) {
    ASSERT_EQ(peer->register_name(name).type, MessageType::response) << name;
  }

  std::atomic<int> heard{0};
  std::atomic<bool> heard_in_order{true};
  std::jthread listen([&] {
    while (heard < kFloodCount) {
      const auto got = listener.receive();
      if (!got) {
        return;
      }
      heard_in_order = heard_in_order && payload_json(*got)["seq"] == heard.load();
      ++heard;
    }
  });
  std::jthread talk([&] {
    for (int i = 0; i < kFloodCount; ++i) {
      talker.send(make_message(MessageType::event, "listener", "t",
                               R"({"seq":)" + std::to_string(i) + "}"));
    }
  });
  const std::string filler(1000, 'f');
  std::jthread flooding([&] {
    for (int i = 0; i < kFloodCount; ++i) {
      flood.send(make_message(MessageType::event, "stuck", "f",
                              R"({"seq":)" + std::to_string(i) + R"(,"fill":")" + filler + "\"}",
                              "f-" + std::to_string(i)));
    }
  });

  // The flooding sender reads its error replies (or it would become a slow receiver itself)
  // until every message for the stuck receiver is accounted for.
  int errors = 0;
  bool unexpected = false;
  std::uint64_t queued = 0;
  std::uint64_t dropped = 0;
  auto next_look = Clock::now();
  const bool settled = wait_until([&] {
    while (const auto reply = flood.receive(0ms)) {
      ++errors;
      if (reply->type != MessageType::error ||
          reply->error.find("not reading") == std::string::npos) {
        unexpected = true;
        ADD_FAILURE() << "unexpected reply: " << reply->correlation_id << " " << reply->error;
      }
    }
    if (Clock::now() < next_look) {
      return false;
    }
    next_look = Clock::now() + 50ms;
    for (const json& process : list_processes(observer)) {
      if (process["names"] == json::array({"stuck"})) {
        queued = process["received"].get<std::uint64_t>();
        dropped = process["dropped_slow"].get<std::uint64_t>();
      }
    }
    return queued + dropped == kFloodCount && static_cast<std::uint64_t>(errors) == dropped;
  });
  flooding.join();
  talk.join();
  listen.join();

  EXPECT_TRUE(settled) << "queued=" << queued << " dropped=" << dropped << " errors=" << errors;
  EXPECT_FALSE(unexpected);
  EXPECT_GT(dropped, 0U) << "the outgoing limit never applied";
  EXPECT_EQ(heard, kFloodCount) << "the unrelated pair lost messages";
  EXPECT_TRUE(heard_in_order);
  EXPECT_FALSE(talker.receive(100ms).has_value()) << "the unrelated sender got an error reply";

  const json refused = refused_counts(observer);
  EXPECT_EQ(refused["messages"]["slow_receiver"], dropped) << refused.dump();
  EXPECT_EQ(refused["messages"]["unknown_target"], 0) << refused.dump();
  EXPECT_EQ(refused["error_replies"], errors) << refused.dump();

  // What was queued for the stuck receiver before the drops is still delivered, in order.
  std::uint64_t got = 0;
  int last_seq = -1;
  while (got < queued) {
    const auto message = stuck.receive();
    ASSERT_TRUE(message.has_value()) << "only " << got << " of " << queued;
    const int seq = payload_json(*message)["seq"].get<int>();
    EXPECT_GT(seq, last_seq);
    last_seq = seq;
    ++got;
  }
}

TEST(BrokerFaults, EvictionsUnderDropOldestAreRepliedToAndCounted) {
  constexpr int kCount = 5000;
  TempDir dir;
  BrokerProcess broker(
      dir, BrokerProcess::Options().with_args(
               {"--offer-policy=drop_oldest", "--buffer-cap=2", "--batch-size=1", "--workers=1"}));
  Peer sender(broker.socket_path(), Framing::binary);
  Peer receiver(broker.socket_path(), Framing::binary);
  Peer observer(broker.socket_path(), Framing::ndjson);
  ASSERT_EQ(sender.register_name("burst").type, MessageType::response);
  ASSERT_EQ(receiver.register_name("sink").type, MessageType::response);

  // One write of many messages: the reader offers them faster than one worker routes them, so
  // the two-message queue overflows and the oldest are evicted.
  std::string burst;
  for (int i = 0; i < kCount; ++i) {
    const Message message =
        make_message(MessageType::event, "sink", "e", R"({"seq":)" + std::to_string(i) + "}",
                     "e-" + std::to_string(i));
    ASSERT_TRUE(wire::encode(message, Framing::binary, burst).ok());
  }
  sender.send_bytes(burst);

  int delivered = 0;
  int evicted = 0;
  ASSERT_TRUE(wait_until([&] {
    while (receiver.receive(0ms)) {
      ++delivered;
    }
    while (const auto reply = sender.receive(0ms)) {
      EXPECT_EQ(reply->type, MessageType::error);
      EXPECT_NE(reply->error.find("a newer message took its place"), std::string::npos)
          << reply->error;
      ++evicted;
    }
    return delivered + evicted == kCount;
  })) << "delivered="
      << delivered << " evicted=" << evicted;

  EXPECT_GT(evicted, 0) << "the queue never overflowed";
  const json refused = refused_counts(observer);
  EXPECT_EQ(refused["error_replies"], evicted) << refused.dump();
  const json stats = payload_json(observer.call("RPCGetMessageStats"));
  EXPECT_EQ(stats["optimizer"]["dropped"]["evicted"], evicted) << stats.dump();
}

TEST(BrokerFaults, ReceiverThatStopsReadingIsDisconnectedWhileAnotherPairFlows) {
  TempDir dir;
  BrokerProcess broker(dir, BrokerProcess::Options().with_args(
                                {"--offer-policy=drop", "--max-outgoing=256KiB",
                                 "--slow-receiver=disconnect", "--buffer-cap=100000"}));
  Peer observer(broker.socket_path(), Framing::ndjson);
  Peer flood(broker.socket_path(), Framing::binary);
  Peer stuck(broker.socket_path(), Framing::ndjson);
  Peer talker(broker.socket_path(), Framing::ndjson);
  Peer listener(broker.socket_path(), Framing::binary);
  for (auto [peer, name] : {std::pair{&flood, "flood"}, std::pair{&stuck, "stuck"},
                            std::pair{&talker, "talker"}, std::pair{&listener, "listener"}}) {
    ASSERT_EQ(peer->register_name(name).type, MessageType::response) << name;
  }

  // The unrelated pair goes in lock step, so a queue refusal cannot touch it whatever the
  // flood does to the queue.
  std::atomic<int> heard{0};
  std::atomic<bool> pair_ok{true};
  std::jthread talk([&] {
    for (int i = 0; i < kFloodCount && pair_ok; ++i) {
      talker.send(make_message(MessageType::event, "listener", "t",
                               R"({"seq":)" + std::to_string(i) + "}"));
      const auto got = listener.receive();
      pair_ok = got && payload_json(*got)["seq"] == i;
      heard += pair_ok ? 1 : 0;
    }
  });
  const std::string filler(1000, 'f');
  std::atomic<int> sent{0};
  std::jthread flooding([&] {
    for (int i = 0; i < kFloodCount; ++i, ++sent) {
      flood.send(make_message(MessageType::event, "stuck", "f",
                              R"({"seq":)" + std::to_string(i) + R"(,"fill":")" + filler + "\"}",
                              "f-" + std::to_string(i)));
    }
  });

  int errors = 0;
  int not_reading = 0;
  const bool told = wait_until([&] {
    while (const auto reply = flood.receive(0ms)) {
      ++errors;
      not_reading += reply->error.find("not reading") != std::string::npos ? 1 : 0;
    }
    return sent == kFloodCount && not_reading > 0;
  });
  flooding.join();
  talk.join();
  EXPECT_TRUE(told) << "the flooding sender was never told";
  EXPECT_TRUE(stuck.wait_hang_up()) << "the receiver that stopped reading was not disconnected";
  int stuck_read = 0;
  int last_seq = -1;
  try {
    while (const auto message = stuck.receive(0ms)) {
      const int seq = payload_json(*message)["seq"].get<int>();
      EXPECT_GT(seq, last_seq);
      last_seq = seq;
      ++stuck_read;
    }
  } catch (const HungUp&) {
  }
  EXPECT_TRUE(pair_ok);
  EXPECT_EQ(heard, kFloodCount) << "the unrelated pair lost messages";

  while (const auto reply = flood.receive(200ms)) {
    ++errors;
  }
  const json refused = refused_counts(observer);
  const json& messages = refused["messages"];
  EXPECT_GE(messages["slow_receiver"].get<int>(), 1) << refused.dump();
  const json queue = payload_json(observer.call("RPCGetMessageStats"))["optimizer"]["dropped"];
  EXPECT_EQ(messages["slow_receiver"].get<int>() + messages["target_disconnected"].get<int>() +
                messages["unknown_target"].get<int>() + queue["total"].get<int>(),
            errors)
      << "each error reply of the flooding sender has a counted reason: " << refused.dump()
      << " queue: " << queue.dump();
  EXPECT_LE(errors + stuck_read, kFloodCount);
  for (const json& process : list_processes(observer)) {
    EXPECT_NE(process["names"], json::array({"stuck"}));
  }
}

TEST(BrokerFaults, ThreeThousandShortLivedClientsAreAllDeliveredAndLeaveNothingBehind) {
  TempDir dir;
  BrokerProcess broker(dir, BrokerProcess::Options().with_args({"--offer-policy=block"}));
  Peer observer(broker.socket_path(), Framing::ndjson);
  Peer sink(broker.socket_path(), Framing::binary);
  ASSERT_EQ(sink.register_name("sink").type, MessageType::response);

  constexpr int kWarmUp = 200;
  constexpr int kCycles = 3'000;
  std::vector<std::atomic<int>> seen(kWarmUp + kCycles);
  std::atomic<int> received{0};
  std::atomic<int> strangers{0};
  std::jthread reader([&] {
    while (received < kWarmUp + kCycles) {
      const auto got = sink.receive();
      if (!got) {
        return;
      }
      int i = -1;
      if (got->id.rfind("m-", 0) == 0) {
        std::from_chars(got->id.data() + 2, got->id.data() + got->id.size(), i);
      }
      if (i < 0 || i >= kWarmUp + kCycles || got->source != "c-" + std::to_string(i)) {
        ++strangers;
        continue;
      }
      seen[static_cast<std::size_t>(i)].fetch_add(1);
      ++received;
    }
  });
  // Connect, register, send one message and close at once, alternating the framings.
  auto cycle = [&](int i) {
    const Framing framing = i % 2 == 0 ? Framing::ndjson : Framing::binary;
    const std::string name = "c-" + std::to_string(i);
    const std::string bytes =
        encoded(registration(name), framing) +
        encoded(make_message(MessageType::event, "sink", "m-" + std::to_string(i), R"({"n":1})"),
                framing);
    const int fd = try_connect(broker.socket_path());
    ASSERT_GE(fd, 0);
    write_all_raw(fd, bytes);
    ::close(fd);
  };
  auto settled = [&](int total) {
    return wait_until([&] { return received >= total; }) &&
           wait_until([&] { return list_processes(observer).size() == 2; });
  };

  for (int i = 0; i < kWarmUp; ++i) {
    cycle(i);
  }
  ASSERT_TRUE(settled(kWarmUp)) << "received " << received;
  const long fds_before = fd_count(broker.pid());
  const long rss_before = rss_kib(broker.pid());

  for (int i = kWarmUp; i < kWarmUp + kCycles; ++i) {
    cycle(i);
  }
  EXPECT_TRUE(settled(kWarmUp + kCycles)) << "received " << received;
  EXPECT_EQ(strangers, 0);
  int twice = 0;
  for (const auto& count : seen) {
    twice += count > 1 ? 1 : 0;
  }
  EXPECT_EQ(twice, 0) << "messages delivered more than once";
  EXPECT_FALSE(observer.receive(0ms).has_value());

  const json processes = list_processes(observer);
  EXPECT_EQ(processes.size(), 2U) << processes.dump();
  for (const json& process : processes) {
    EXPECT_TRUE(process["names"] == json::array() || process["names"] == json::array({"sink"}))
        << process.dump();
  }
  EXPECT_TRUE(wait_until([&] { return fd_count(broker.pid()) <= fds_before; }))
      << "descriptors: " << fd_count(broker.pid()) << " now, " << fds_before << " before";
  const long rss_after = rss_kib(broker.pid());
  RecordProperty("rss_before_kib", static_cast<int>(rss_before));
  RecordProperty("rss_after_kib", static_cast<int>(rss_after));
  if (!kSanitized) {
    EXPECT_LT(rss_after, rss_before + 16L * 1024) << "KiB; before: " << rss_before;
  }
  const json refused = refused_counts(observer);
  EXPECT_EQ(refused["error_replies"], 0) << refused.dump();
}

TEST(BrokerFaults, SigtermTwiceUnderLoadDeliversEveryAcceptedMessageExactlyOnce) {
  TempDir dir;
  BrokerProcess broker(dir, BrokerProcess::Options().with_args({"--offer-policy=block"}));
  constexpr int kSenders = 3;
  constexpr int kReceivers = 2;
  constexpr int kEach = 20'000;
  std::vector<std::unique_ptr<Peer>> senders;
  std::vector<std::unique_ptr<Peer>> receivers;
  for (int k = 0; k < kSenders; ++k) {
    senders.push_back(
        std::make_unique<Peer>(broker.socket_path(), k == 1 ? Framing::binary : Framing::ndjson));
    ASSERT_EQ(senders.back()->register_name("s" + std::to_string(k)).type, MessageType::response);
  }
  for (int r = 0; r < kReceivers; ++r) {
    receivers.push_back(
        std::make_unique<Peer>(broker.socket_path(), r == 0 ? Framing::binary : Framing::ndjson));
    ASSERT_EQ(receivers.back()->register_name("r" + std::to_string(r)).type, MessageType::response);
  }

  std::atomic<int> total{0};
  std::atomic<bool> pause_first{false};
  std::vector<std::vector<std::string>> ids(kReceivers);
  std::vector<std::jthread> readers;
  readers.reserve(kReceivers);
  for (int r = 0; r < kReceivers; ++r) {
    readers.emplace_back([&, r] {
      bool paused = false;
      try {
        while (const auto got = receivers[static_cast<std::size_t>(r)]->receive()) {
          ids[static_cast<std::size_t>(r)].push_back(got->id);
          ++total;
          if (r == 0 && pause_first && !paused) {
            paused = true;  // hold the drain up, so the second signal finds it still running
            std::this_thread::sleep_for(300ms);
          }
        }
      } catch (const HungUp&) {
      }
    });
  }
  std::vector<std::jthread> writers;
  writers.reserve(kSenders);
  for (int k = 0; k < kSenders; ++k) {
    writers.emplace_back([&, k] {
      try {
        for (int i = 0; i < kEach; ++i) {
          senders[static_cast<std::size_t>(k)]->send(
              make_message(MessageType::event, "r" + std::to_string(i % kReceivers),
                           "s" + std::to_string(k) + "-" + std::to_string(i), R"({"x":1})"));
        }
      } catch (const HungUp&) {
        // The broker stopped reading and exited: the rest was never accepted.
      }
    });
  }

  ASSERT_TRUE(wait_until([&] { return total >= 3'000; }));
  pause_first = true;
  broker.signal(SIGTERM);
  ASSERT_TRUE(wait_until([&] {
    return broker.log().find("received: stopping") != std::string::npos || !broker.running();
  }));
  RecordProperty("second_signal_while_draining", broker.running() ? 1 : 0);
  broker.signal(SIGTERM);
  EXPECT_EQ(broker.exit_code(), 0) << broker.log();
  writers.clear();
  readers.clear();

  int errors = 0;
  for (auto& sender : senders) {
    try {
      while (const auto reply = sender->receive(1s)) {
        ++errors;
        EXPECT_NE(reply->error.find("shutting down"), std::string::npos) << reply->error;
      }
    } catch (const HungUp&) {
    }
  }

  const std::string log = broker.log();
  std::smatch match;
  ASSERT_TRUE(std::regex_search(log, match, std::regex(R"(stopped: received=(\d+))"))) << log;
  const int accepted = std::stoi(match[1]) - kSenders - kReceivers - errors;
  std::set<std::string> unique;
  bool in_order = true;
  for (const auto& list : ids) {
    std::vector<int> last(kSenders, -1);
    for (const std::string& id : list) {
      unique.insert(id);
      const auto dash = id.find('-');
      const auto k = static_cast<std::size_t>(std::stoi(id.substr(1, dash - 1)));
      const int i = std::stoi(id.substr(dash + 1));
      in_order = in_order && i > last[k];
      last[k] = i;
    }
  }
  RecordProperty("accepted", accepted);
  EXPECT_EQ(total, accepted) << log;
  EXPECT_EQ(unique.size(), static_cast<std::size_t>(total.load())) << "a message came twice";
  EXPECT_TRUE(in_order);
  EXPECT_FALSE(std::filesystem::exists(broker.socket_path()));
}

}  // namespace
}  // namespace v2::integration
