// What does not fit the other framing: names and ids longer than a binary header field, and
// JSON payloads from binary connections that are not JSON.

#include <gtest/gtest.h>

#include <string>

#include "broker_process.hpp"

namespace v2::integration {
namespace {

using wire::Framing;

TEST(BrokerFields, NamesAndIdsTooLongForBinaryReceiverAreRefusedNamingTheField) {
  TempDir dir;
  BrokerProcess broker(dir);
  const std::string long_name(40, 'n');
  Peer text(broker.socket_path(), Framing::ndjson);
  Peer short_text(broker.socket_path(), Framing::ndjson);
  Peer binary(broker.socket_path(), Framing::binary);
  ASSERT_EQ(text.register_name(long_name).type, MessageType::response);
  ASSERT_EQ(short_text.register_name("short").type, MessageType::response);
  ASSERT_EQ(binary.register_name("binary").type, MessageType::response);

  struct Case {
    Peer* sender;
    std::string id;
    std::string correlation_id;
    std::string field;
  };
  const Case cases[] = {
      {&text, "fits", "c-1", "source"},
      {&short_text, std::string(33, 'i'), "c-2", "id"},
      {&short_text, "fits", std::string(21, 'c'), "correlation_id"},
  };
  for (const Case& c : cases) {
    c.sender->send(
        make_message(MessageType::event, "binary", c.id, R"({"x":1})", c.correlation_id));
    const auto reply = c.sender->receive();
    ASSERT_TRUE(reply.has_value()) << c.field;
    EXPECT_EQ(reply->type, MessageType::error) << c.field;
    EXPECT_EQ(reply->id, c.id);
    EXPECT_EQ(reply->correlation_id, c.correlation_id);
    EXPECT_NE(reply->error.find(c.field), std::string::npos) << reply->error;
  }
  EXPECT_FALSE(binary.receive(200ms).has_value()) << "a truncated message was delivered";

  // Fields that fit exactly are delivered whole.
  short_text.send(make_message(MessageType::event, "binary", std::string(32, 'i'), R"({"x":1})",
                               std::string(20, 'c')));
  const auto got = binary.receive();
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->id, std::string(32, 'i'));
  EXPECT_EQ(got->correlation_id, std::string(20, 'c'));
}

// A binary connection may claim a name longer than the 32-byte source/target field: the broker
// records the name but cannot encode the reply (its target does not fit) and drops it, so the
// caller never hears back, and no message can ever be written to that name.
TEST(BrokerFields, BinaryConnectionRegisteringNameLongerThanItsFieldGetsAReply) {
  TempDir dir;
  BrokerProcess broker(dir);
  Peer binary(broker.socket_path(), Framing::binary);
  std::optional<Message> reply;
  try {
    reply = binary.call("RPCRegister", R"({"name":")" + std::string(40, 'n') + R"("})", 5s);
  } catch (const std::runtime_error& error) {
    ADD_FAILURE() << "no reply to RPCRegister: " << error.what();
  }
  if (reply) {
    EXPECT_EQ(reply->type, MessageType::error) << "a name that cannot be written was accepted";
  }
}

TEST(BrokerFields, InvalidJsonPayloadFromBinarySenderIsRefusedForNdjsonReceiverOnly) {
  TempDir dir;
  BrokerProcess broker(dir);
  Peer sender(broker.socket_path(), Framing::binary);
  Peer text(broker.socket_path(), Framing::ndjson);
  Peer binary(broker.socket_path(), Framing::binary);
  ASSERT_EQ(sender.register_name("sender").type, MessageType::response);
  ASSERT_EQ(text.register_name("text").type, MessageType::response);
  ASSERT_EQ(binary.register_name("binary").type, MessageType::response);

  const std::string broken = "{\"a\":\n";  // declared JSON, is not
  sender.send(make_message(MessageType::event, "text", "bad-json", broken, "j-1"));
  const auto reply = sender.receive();
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->type, MessageType::error);
  EXPECT_EQ(reply->id, "bad-json");
  EXPECT_EQ(reply->correlation_id, "j-1");
  EXPECT_FALSE(text.receive(200ms).has_value()) << "invalid JSON was written into a line";

  // Between binary connections the payload is opaque and passes unchanged.
  sender.send(make_message(MessageType::event, "binary", "bad-json", broken, "j-2"));
  const auto got = binary.receive();
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->payload.view(), broken);
}

}  // namespace
}  // namespace v2::integration
