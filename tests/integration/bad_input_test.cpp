// Bad input at the socket, end to end: huge length fields and lines, peers that close in the
// middle of a message, wrong versions, text that is not UTF-8, line separators and escaped
// newlines, JSON that is not a message, and empty names. Each gets a clear error reply where the
// framing allows one, the broker's memory stays bounded, and two good peers connected at the
// same time keep exchanging messages. (Over-long lines and frames at the limit, bad magic and
// invalid JSON are in limits_test.cpp; names too long for a binary field in fields_test.cpp.)

#include <gtest/gtest.h>
#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <thread>

#include "broker_process.hpp"

namespace v2::integration {
namespace {

using wire::Framing;

/// A binary header written byte by byte from PROTOCOL.md, no codec involved.
std::string binary_header(std::uint32_t length, std::string_view id, std::string_view target = {},
                          std::string_view correlation_id = {}, std::uint8_t type = 2,
                          std::uint8_t encoding = 0) {
  std::string header(128, '\0');
  header[0] = 0x56;
  header[1] = 0x32;
  header[2] = 0x01;
  header[3] = static_cast<char>(encoding);
  header[4] = static_cast<char>(type);
  for (std::size_t i = 0; i < 4; ++i) {
    header[8 + i] = static_cast<char>((length >> (24U - 8U * i)) & 0xffU);
  }
  header.replace(12, id.size(), id);
  header.replace(76, target.size(), target);
  header.replace(108, correlation_id.size(), correlation_id);
  return header;
}

std::string binary_frame(std::string_view id, std::string_view target, std::string_view payload,
                         std::uint8_t encoding = 0) {
  return binary_header(static_cast<std::uint32_t>(payload.size()), id, target, {}, 2, encoding) +
         std::string(payload);
}

/// The next raw line (without '\n') on a socket nobody else reads; nothing on timeout or close.
std::optional<std::string> read_raw_line(int fd, std::string& pending) {
  for (;;) {
    if (const auto end = pending.find('\n'); end != std::string::npos) {
      std::string line = pending.substr(0, end);
      pending.erase(0, end + 1);
      return line;
    }
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(kPatience.count())) <= 0) {
      return std::nullopt;
    }
    char chunk[4096];
    const ssize_t n = ::read(fd, chunk, sizeof(chunk));
    if (n <= 0) {
      return std::nullopt;
    }
    pending.append(chunk, static_cast<std::size_t>(n));
  }
}

/// Sends `bytes` in 64 KiB pieces; stops quietly when the broker hangs up.
void send_until_hung_up(Peer& peer, std::string_view bytes) {
  constexpr std::size_t kPiece = std::size_t{64} << 10U;
  try {
    for (std::size_t at = 0; at < bytes.size(); at += kPiece) {
      peer.send_bytes(bytes.substr(at, kPiece));
    }
  } catch (const HungUp&) {
  }
}

/// Waits until RPCListProcesses shows `count` connections.
bool wait_for_connections(Peer& observer, std::size_t count) {
  return wait_until([&] { return list_processes(observer).size() == count; });
}

TEST(BadInput, LengthFieldsUpToMaxAreRefusedFromTheHeaderWithoutBuffering) {
  TempDir dir;
  BrokerProcess broker(dir);  // the default 50 MiB limit
  Bystanders good(broker.socket_path(), "good-text", "good-binary");
  ASSERT_TRUE(good.exchange(0));
  const long before = rss_kib(broker.pid());
  ASSERT_GT(before, 0);

  int round = 1;
  for (const std::uint32_t length : {(50U << 20U) + 1U, 0x80000000U, 0xFFFFFFFFU}) {
    Peer sender(broker.socket_path(), Framing::binary);
    ASSERT_EQ(sender.register_name("sender-" + std::to_string(round)).type, MessageType::response);
    std::atomic<bool> sent{false};
    std::jthread writer([&] {
      // The header, then 8 MiB of the promised payload, which the broker must not keep.
      send_until_hung_up(sender, binary_header(length, "huge", "good-text", "h-1") +
                                     std::string(std::size_t{8} << 20U, 'p'));
      sent = true;
    });
    while (!sent) {
      ASSERT_TRUE(good.exchange(round++)) << "length=" << length;
    }
    writer.join();

    const auto reply = sender.receive();
    ASSERT_TRUE(reply.has_value()) << "length=" << length;
    EXPECT_EQ(reply->type, MessageType::error);
    EXPECT_EQ(reply->id, "huge");
    EXPECT_EQ(reply->correlation_id, "h-1");
    EXPECT_NE(reply->error.find("length=" + std::to_string(length)), std::string::npos)
        << reply->error;
    EXPECT_TRUE(sender.wait_hang_up()) << "length=" << length;
  }
  const long after = rss_kib(broker.pid());
  EXPECT_LT(after - before, 16 * 1024)
      << "VmRSS grew from " << before << " KiB to " << after << " KiB for refused frames";
  EXPECT_TRUE(good.nothing_arrived());
  EXPECT_TRUE(good.exchange(-1));
}

TEST(BadInput, HugeLineWithoutNewlineKeepsMemoryBoundedUntilThePeerCloses) {
  TempDir dir;
  BrokerProcess broker(dir, BrokerProcess::Options().with_args({"--max-message-size=64KiB"}));
  Bystanders good(broker.socket_path(), "good-text", "good-binary");
  Peer observer(broker.socket_path(), Framing::ndjson);
  auto sender = std::make_unique<Peer>(broker.socket_path(), Framing::ndjson);
  ASSERT_EQ(sender->register_name("sender").type, MessageType::response);
  ASSERT_TRUE(good.exchange(0));
  const long before = rss_kib(broker.pid());
  ASSERT_GT(before, 0);

  std::atomic<bool> sent{false};
  std::jthread writer([&] {
    sender->send_bytes(R"({"type":"event","id":"big","target":"good-text","payload":")");
    const std::string piece(std::size_t{1} << 20U, 'x');
    for (int i = 0; i < 32; ++i) {
      sender->send_bytes(piece);  // 32 MiB, and never a newline
    }
    sent = true;
  });
  for (int round = 1; !sent; ++round) {
    ASSERT_TRUE(good.exchange(round));
  }
  writer.join();
  // All but what the socket buffer holds (a few hundred KiB) has been read by now.
  ASSERT_EQ(observer.call("RPCGetMessageCount").type, MessageType::response);
  const long after = rss_kib(broker.pid());
  EXPECT_LT(after - before, 16 * 1024)
      << "VmRSS grew from " << before << " KiB to " << after << " KiB for an unfinished line";

  sender.reset();  // closes in the middle of the line
  EXPECT_TRUE(wait_for_connections(observer, 3)) << "the closed connection is still listed";
  EXPECT_TRUE(good.nothing_arrived());
  EXPECT_TRUE(good.exchange(-1));
}

TEST(BadInput, PeersClosingInTheMiddleOfAMessageDeliverNothingAndAreForgotten) {
  TempDir dir;
  BrokerProcess broker(dir);
  Bystanders good(broker.socket_path(), "good-text", "good-binary");
  Peer observer(broker.socket_path(), Framing::ndjson);
  ASSERT_TRUE(good.exchange(0));

  const std::string small = binary_frame("cut", "good-text", R"({"a":1})");
  const std::string large =
      binary_header(std::uint32_t{1} << 20U, "cut", "good-text") + std::string(100'000, ' ');
  const std::string line = R"({"type":"event","id":"cut","target":"good-text","payload":{"a":)";
  struct Case {
    Framing framing;
    std::string bytes;
    std::string_view what;
  };
  const Case cases[] = {
      {Framing::binary, small.substr(0, 60), "half a header"},
      {Framing::binary, small.substr(0, 128 + 3), "a header and part of its payload"},
      {Framing::binary, large, "100 KB of a 1 MiB payload read in place"},
      {Framing::ndjson, line, "half a line"},
  };
  int round = 1;
  for (const Case& c : cases) {
    {
      Peer sender(broker.socket_path(), c.framing);
      ASSERT_EQ(sender.register_name("sender").type, MessageType::response) << c.what;
      sender.send_bytes(c.bytes);
      ASSERT_TRUE(good.exchange(round++)) << c.what;
    }
    EXPECT_TRUE(wait_for_connections(observer, 3)) << c.what << ": the connection is still listed";
    EXPECT_TRUE(good.nothing_arrived()) << c.what << ": part of a message was delivered";
    EXPECT_TRUE(good.exchange(round++)) << c.what;
  }
  EXPECT_TRUE(broker.running());
}

TEST(BadInput, WrongVersionGetsAnErrorFrameAndTheConnectionIsClosed) {
  TempDir dir;
  BrokerProcess broker(dir);
  Bystanders good(broker.socket_path(), "good-text", "good-binary");
  ASSERT_TRUE(good.exchange(0));
  for (const int version : {0, 2, 255}) {
    Peer sender(broker.socket_path(), Framing::binary);
    std::string frame = binary_frame("v", "good-text", "{}");
    frame[2] = static_cast<char>(version);
    sender.send_bytes(frame);
    const auto reply = sender.receive();
    ASSERT_TRUE(reply.has_value());
    EXPECT_EQ(reply->type, MessageType::error);
    EXPECT_EQ(reply->id, wire::kProtocolErrorId);
    EXPECT_EQ(reply->error,
              "unsupported version: version=" + std::to_string(version) + " expected=1");
    EXPECT_TRUE(sender.wait_hang_up()) << "version=" << version;
    EXPECT_TRUE(good.exchange(version + 1));
  }
  EXPECT_TRUE(good.nothing_arrived());
}

// The binary decoder used to echo such a name in the error reply, which the sender's own
// decoder then refused: the sender could not read why its frame was refused.
TEST(BadInput, BinaryNamesThatAreNotUtf8GetAReadableErrorAndTheConnectionGoesOn) {
  TempDir dir;
  BrokerProcess broker(dir);
  Bystanders good(broker.socket_path(), "good-text", "good-binary");
  Peer sender(broker.socket_path(), Framing::binary);
  ASSERT_EQ(sender.register_name("sender").type, MessageType::response);
  ASSERT_TRUE(good.exchange(0));

  sender.send_bytes(binary_frame("\xC3\x28", "good-text", "{}"));
  auto reply = sender.receive();
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->type, MessageType::error);
  EXPECT_EQ(reply->id, wire::kProtocolErrorId);
  EXPECT_EQ(reply->error, "field=id is not valid UTF-8");

  sender.send_bytes(binary_header(2, "named", "good-text", "\xFF\xFE") + "{}");
  reply = sender.receive();
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->id, "named");
  EXPECT_EQ(reply->error, "field=correlation_id is not valid UTF-8");

  sender.send_bytes(binary_frame("fine", "good-binary", R"({"ok":true})"));
  const auto fine = good.binary().receive();
  ASSERT_TRUE(fine.has_value());
  EXPECT_EQ(fine->id, "fine") << "a refused frame was delivered";
  EXPECT_EQ(fine->source, "sender");
  EXPECT_TRUE(good.exchange(1));
}

// A broker with a pair of bystanders, an NDJSON and a binary sender ("sender", "bsender"), a
// binary receiver ("binary"), and an NDJSON receiver ("text") registered by hand and then read
// raw, so that a test sees the exact bytes the broker writes. `ready` is false when a
// registration failed.
struct RawReceiverScene {
  explicit RawReceiverScene(TempDir& dir)
      : broker(dir),
        good(broker.socket_path(), "good-text", "good-binary"),
        sender(broker.socket_path(), Framing::ndjson),
        binary_sender(broker.socket_path(), Framing::binary),
        text(broker.socket_path(), Framing::ndjson),
        binary(broker.socket_path(), Framing::binary) {
    ready = sender.register_name("sender").type == MessageType::response &&
            binary_sender.register_name("bsender").type == MessageType::response &&
            binary.register_name("binary").type == MessageType::response;
    text.send_bytes(
        R"({"type":"request","id":"RPCRegister","target":"broker","payload":{"name":"text"}})"
        "\n");
    ready = ready && next_text_line().has_value();
  }

  /// The next line the broker wrote to `text`, as bytes.
  std::optional<std::string> next_text_line() { return read_raw_line(text.fd(), pending); }

  BrokerProcess broker;
  Bystanders good;
  Peer sender;
  Peer binary_sender;
  Peer text;
  Peer binary;
  std::string pending;  // bytes read from `text` past the last line
  bool ready = false;
};

TEST(BadInput, LineSeparatorsInsideStringsPassThroughIntact) {
  TempDir dir;
  RawReceiverScene s(dir);
  ASSERT_TRUE(s.ready);
  ASSERT_TRUE(s.good.exchange(0));

  const std::string ls = "\xE2\x80\xA8";  // U+2028
  const std::string ps = "\xE2\x80\xA9";  // U+2029
  const std::string id = "u" + ls + "v" + ps;
  const std::string payload = R"({"s":"a)" + ls + "b" + ps + R"(c"})";
  for (const char* target : {"text", "binary"}) {
    std::string line = R"({"type":"event","id":")";
    line += id;
    line += R"(","target":")";
    line += target;
    line += R"(","correlation_id":"k)";
    line += ps;
    line += R"(","payload":)";
    line += payload;
    line += "}\n";
    s.sender.send_bytes(line);
  }
  const auto line = s.next_text_line();
  ASSERT_TRUE(line.has_value());
  // The payload's bytes as sent; the fields the broker writes carry the separators escaped.
  EXPECT_EQ(*line, R"({"type":"event","id":"u\u2028v\u2029","payload":)" + payload +
                       R"(,"source":"sender","target":"text","correlation_id":"k\u2029"})");
  const auto got = s.binary.receive();
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->id, id);
  EXPECT_EQ(got->correlation_id, "k" + ps);
  EXPECT_EQ(got->payload.view(), payload);

  // PLAIN text from a binary sender becomes a JSON string with the separators escaped.
  s.binary_sender.send_bytes(binary_frame("p", "text", "a" + ls + "b", 2));
  const auto plain = s.next_text_line();
  ASSERT_TRUE(plain.has_value());
  EXPECT_EQ(*plain,
            R"({"type":"event","id":"p","payload":"a\u2028b","source":"bsender","target":"text"})");
  EXPECT_TRUE(s.good.exchange(1));
}

TEST(BadInput, EscapedAndPrettyPrintedNewlinesStayInsideOneLine) {
  TempDir dir;
  RawReceiverScene s(dir);
  ASSERT_TRUE(s.ready);
  ASSERT_TRUE(s.good.exchange(0));

  s.sender.send_bytes(R"({"type":"event","id":"n","target":"text","payload":{"t":"a\nb"}})"
                      "\n");
  auto line = s.next_text_line();
  ASSERT_TRUE(line.has_value());
  EXPECT_EQ(
      *line,
      R"({"type":"event","id":"n","payload":{"t":"a\nb"},"source":"sender","target":"text"})");

  s.sender.send_bytes(R"({"type":"error","id":"n","target":"binary","error":"line1\nline2"})"
                      "\n");
  const auto got = s.binary.receive();
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->type, MessageType::error);
  EXPECT_EQ(got->error, "line1\nline2");

  // Raw newlines of a pretty-printed payload from a binary sender become spaces in the line.
  s.binary_sender.send_bytes(binary_frame("pretty", "text", "{\n  \"a\": [1,\n 2]\n}"));
  line = s.next_text_line();
  ASSERT_TRUE(line.has_value());
  EXPECT_EQ(*line, R"({"type":"event","id":"pretty","payload":{   "a": [1,  2] },)"
                   R"("source":"bsender","target":"text"})");
  EXPECT_TRUE(s.good.exchange(1));
}

TEST(BadInput, JsonThatIsNotAnObjectGetsAnErrorReplyAndTheConnectionGoesOn) {
  TempDir dir;
  BrokerProcess broker(dir);
  Bystanders good(broker.socket_path(), "good-text", "good-binary");
  ASSERT_TRUE(good.exchange(0));
  Peer sender(broker.socket_path(), Framing::ndjson);
  // The leading space selects NDJSON, so even the first line is answered, not closed.
  for (const std::string_view line : {" 42\n", "\"text\"\n", "null\n", "true\n", "-1.5e3\n"}) {
    sender.send_bytes(line);
    const auto reply = sender.receive();
    ASSERT_TRUE(reply.has_value()) << line;
    EXPECT_EQ(reply->type, MessageType::error) << line;
    EXPECT_EQ(reply->id, wire::kProtocolErrorId) << line;
    EXPECT_NE(reply->error.find("not a JSON object"), std::string::npos) << reply->error;
  }
  EXPECT_EQ(sender.call("RPCGetMessageCount").type, MessageType::response);
  EXPECT_TRUE(good.nothing_arrived());
  EXPECT_TRUE(good.exchange(1));
}

TEST(BadInput, MissingAndWrongTypedFieldsAreNamedInTheReply) {
  TempDir dir;
  BrokerProcess broker(dir);
  Bystanders good(broker.socket_path(), "good-text", "good-binary");
  Peer sender(broker.socket_path(), Framing::ndjson);
  ASSERT_EQ(sender.register_name("sender").type, MessageType::response);
  ASSERT_TRUE(good.exchange(0));

  struct Case {
    std::string_view line;
    std::string_view id;
    std::string_view correlation_id;
    std::string_view error;
  };
  const Case cases[] = {
      {R"({"id":"m1","target":"good-text","correlation_id":"k1"})", "m1", "k1",
       "field=type missing"},
      {R"({"type":"event","target":"good-text","correlation_id":"k2"})", wire::kProtocolErrorId,
       "k2", "field=id missing"},
      {R"({"type":"event","id":5,"target":"good-text"})", wire::kProtocolErrorId, "",
       "field=id expected=string got=number"},
      {R"({"type":true,"id":"m4","target":"good-text"})", wire::kProtocolErrorId, "",
       "field=type expected=string got=boolean"},
      {R"({"type":"event","id":"m5","target":["good-text"]})", "m5", "",
       "field=target expected=string got=array"},
      {R"({"type":"event","id":"m6","target":"good-text","source":{}})", "m6", "",
       "field=source expected=string got=object"},
      {R"({"type":"event","id":"m7","target":"good-text","correlation_id":7})", "m7", "",
       "field=correlation_id expected=string got=number"},
  };
  for (const Case& c : cases) {
    sender.send_bytes(std::string(c.line) + "\n");
    const auto reply = sender.receive();
    ASSERT_TRUE(reply.has_value()) << c.line;
    EXPECT_EQ(reply->type, MessageType::error) << c.line;
    EXPECT_EQ(reply->id, c.id) << c.line;
    EXPECT_EQ(reply->correlation_id, c.correlation_id) << c.line;
    EXPECT_EQ(reply->error, c.error) << c.line;
  }
  EXPECT_TRUE(good.nothing_arrived());
  EXPECT_TRUE(good.exchange(1));
}

TEST(BadInput, EmptyIdsAndTargetsAreRefusedInBothFramings) {
  TempDir dir;
  BrokerProcess broker(dir);
  Bystanders good(broker.socket_path(), "good-text", "good-binary");
  Peer text(broker.socket_path(), Framing::ndjson);
  Peer binary(broker.socket_path(), Framing::binary);
  ASSERT_EQ(text.register_name("text").type, MessageType::response);
  ASSERT_EQ(binary.register_name("binary").type, MessageType::response);
  ASSERT_TRUE(good.exchange(0));

  text.send_bytes(R"({"type":"event","id":"","target":"good-text","correlation_id":"e1"})"
                  "\n");
  text.send_bytes(R"({"type":"event","id":"t","target":"","correlation_id":"e2"})"
                  "\n");
  binary.send_bytes(binary_header(2, "", "good-text", "e3") + "{}");
  binary.send_bytes(binary_header(2, "t", "", "e4") + "{}");
  for (Peer* peer : {&text, &text, &binary, &binary}) {
    const auto reply = peer->receive();
    ASSERT_TRUE(reply.has_value());
    EXPECT_EQ(reply->type, MessageType::error);
    const bool empty_id = reply->correlation_id == "e1" || reply->correlation_id == "e3";
    EXPECT_EQ(reply->error, empty_id ? "field=id empty" : "target is empty")
        << reply->correlation_id;
  }
  EXPECT_TRUE(good.nothing_arrived());
  EXPECT_TRUE(good.exchange(1));
}

}  // namespace
}  // namespace v2::integration
