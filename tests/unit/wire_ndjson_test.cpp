#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "v2broker/message.hpp"
#include "v2broker/wire.hpp"
#include "wire_test_support.hpp"

namespace v2::wire {
namespace {

using testing::decode_all;
using testing::Decoded;
using testing::drain;

/// Decodes exactly one line and expects a message.
Message decode_one(std::string_view line) {
  Decoded out = decode_all(line);
  EXPECT_EQ(out.errors.size(), 0U) << (out.errors.empty() ? "" : out.errors.front().text);
  EXPECT_EQ(out.messages.size(), 1U);
  return out.messages.empty() ? Message{} : out.messages.front();
}

/// Decodes exactly one line and expects an error; returns it.
ProtocolError decode_error(std::string_view line) {
  Decoded out = decode_all(line);
  EXPECT_EQ(out.messages.size(), 0U);
  EXPECT_EQ(out.errors.size(), 1U);
  return out.errors.empty() ? ProtocolError{} : out.errors.front();
}

std::string to_ndjson(const Message& message, NdjsonEncodeOptions options = {}) {
  std::string out;
  const EncodeResult result = encode_ndjson(message, out, options);
  EXPECT_TRUE(result.ok()) << result.text;
  return out;
}

TEST(WireFraming, DetectsFramingFromFirstByte) {
  EXPECT_EQ(detect_framing(std::byte{'{'}), Framing::ndjson);
  EXPECT_EQ(detect_framing(std::byte{' '}), Framing::ndjson);
  EXPECT_EQ(detect_framing(std::byte{'\n'}), Framing::ndjson);
  EXPECT_EQ(detect_framing(std::byte{'\t'}), Framing::ndjson);
  EXPECT_EQ(detect_framing(std::byte{'\r'}), Framing::ndjson);
  EXPECT_EQ(detect_framing(std::byte{0x56}), Framing::binary);
  EXPECT_EQ(detect_framing(std::byte{'['}), Framing::unknown);
  EXPECT_EQ(detect_framing(std::byte{0x00}), Framing::unknown);
}

TEST(WireFraming, RefusesUnknownFirstByteAndClosesConnection) {
  Decoder decoder;
  decoder.feed("GET / HTTP/1.1\r\n");
  Message message;
  ProtocolError error;
  ASSERT_EQ(decoder.poll(message, error), DecodeStatus::error);
  EXPECT_EQ(error.after, AfterError::close);
  EXPECT_NE(error.text.find("first byte=0x47"), std::string::npos) << error.text;
  EXPECT_TRUE(decoder.failed());
  EXPECT_EQ(decoder.framing(), Framing::unknown);

  decoder.feed("{\"type\":\"event\",\"id\":\"x\"}\n");
  EXPECT_EQ(decoder.poll(message, error), DecodeStatus::need_more);
}

TEST(WireNdjsonDecode, DecodesAllFields) {
  const Message m =
      decode_one(R"({"type":"request","id":"RPCRegister","payload":{"name":"svc"},"error":"e",)"
                 R"("source":"a","target":"broker","correlation_id":"c1"})"
                 "\n");
  EXPECT_EQ(m.type, MessageType::request);
  EXPECT_EQ(m.encoding, PayloadEncoding::json);
  EXPECT_EQ(m.id, "RPCRegister");
  EXPECT_EQ(m.payload.view(), R"({"name":"svc"})");
  EXPECT_EQ(m.error, "e");
  EXPECT_EQ(m.source, "a");
  EXPECT_EQ(m.target, "broker");
  EXPECT_EQ(m.correlation_id, "c1");
}

TEST(WireNdjsonDecode, KeepsPayloadBytesExactlyIncludingWhitespace) {
  const std::string payload = "{ \"a\" :\t[ 1 , 2.50e+3 , \"x\\u0041\\n\" ] ,\r \"b\":{ } }";
  const Message m = decode_one(R"({"type":"event","id":"e","payload":  )" + payload + "  }\n");
  EXPECT_EQ(m.payload.view(), payload);
}

TEST(WireNdjsonDecode, KeepsScalarPayloadsWithoutTrailingWhitespace) {
  EXPECT_EQ(decode_one("{\"type\":\"event\",\"id\":\"e\",\"payload\": 12.5e3 }\n").payload.view(),
            "12.5e3");
  EXPECT_EQ(
      decode_one("{\"type\":\"event\",\"id\":\"e\",\"payload\":\"s\\\"t\" ,\"target\":\"t\"}\n")
          .payload.view(),
      "\"s\\\"t\"");
  EXPECT_EQ(decode_one("{\"type\":\"event\",\"payload\":null,\"id\":\"e\"}\n").payload.view(),
            "null");
  EXPECT_EQ(decode_one("{\"type\":\"event\",\"payload\":[],\"id\":\"e\"}\n").payload.view(), "[]");
}

TEST(WireNdjsonDecode, MissingPayloadIsEmpty) {
  EXPECT_TRUE(decode_one("{\"type\":\"event\",\"id\":\"e\"}\n").payload.empty());
}

TEST(WireNdjsonDecode, IgnoresUnknownFields) {
  const Message m =
      decode_one(R"({"x":{"deep":[1,{"y":null}]},"type":"response","id":"r","zz":true})"
                 "\n");
  EXPECT_EQ(m.type, MessageType::response);
  EXPECT_EQ(m.id, "r");
}

TEST(WireNdjsonDecode, RefusesInvalidJsonInsideUnknownField) {
  const ProtocolError e = decode_error(R"({"type":"event","id":"e","x":[1,,2]})"
                                       "\n");
  EXPECT_NE(e.text.find("invalid JSON"), std::string::npos) << e.text;
  EXPECT_EQ(e.id, "e");
}

TEST(WireNdjsonDecode, RefusesInvalidJsonInsidePayloadAndReportsIds) {
  const ProtocolError e =
      decode_error(R"({"type":"request","id":"m","correlation_id":"c9","payload":{"a":tru}})"
                   "\n");
  EXPECT_NE(e.text.find("invalid JSON"), std::string::npos) << e.text;
  EXPECT_EQ(e.id, "m");
  EXPECT_EQ(e.correlation_id, "c9");
  EXPECT_EQ(e.after, AfterError::keep_open);
}

TEST(WireNdjsonDecode, RefusesMismatchedBracketsInPayload) {
  const ProtocolError e = decode_error(R"({"type":"event","id":"e","payload":{"a":[1}]})"
                                       "\n");
  EXPECT_NE(e.text.find("invalid JSON"), std::string::npos) << e.text;
}

TEST(WireNdjsonDecode, RefusesTrailingContentAfterObject) {
  EXPECT_NE(decode_error("{\"type\":\"event\",\"id\":\"e\"} x\n").text.find("invalid JSON"),
            std::string::npos);
  EXPECT_EQ(decode_error("{\"type\":\"event\",\"id\":\"e\"}}\n").text,
            "invalid JSON: trailing content after the object");
  EXPECT_FALSE(decode_error("{\"type\":\"event\",\"id\":\"e\"}{}\n").text.empty());
}

TEST(WireNdjsonDecode, RefusesTruncatedObject) {
  EXPECT_FALSE(decode_error("{\"type\":\"event\",\"id\":\"e\"\n").text.empty());
  EXPECT_FALSE(
      decode_error("{\"type\":\"event\",\"id\":\"e\",\"payload\":{\"a\":1}\n").text.empty());
}

TEST(WireNdjsonDecode, RefusesNonObjectJson) {
  for (const std::string_view line : {" [1,2]\n", " 42\n", " \"text\"\n", " null\n"}) {
    const ProtocolError e = decode_error(line);
    EXPECT_NE(e.text.find("not a JSON object"), std::string::npos) << line << " -> " << e.text;
    EXPECT_EQ(e.after, AfterError::keep_open);
  }
}

TEST(WireNdjsonDecode, RefusesInvalidUtf8) {
  const ProtocolError e = decode_error("{\"type\":\"event\",\"id\":\"\xC3\x28\"}\n");
  EXPECT_NE(e.text.find("UTF-8"), std::string::npos) << e.text;
  const ProtocolError in_payload =
      decode_error("{\"type\":\"event\",\"id\":\"e\",\"payload\":\"\xFF\"}\n");
  EXPECT_NE(in_payload.text.find("UTF-8"), std::string::npos) << in_payload.text;
}

TEST(WireNdjsonDecode, NamesMissingField) {
  EXPECT_EQ(decode_error("{\"id\":\"e\"}\n").text, "field=type missing");
  EXPECT_EQ(decode_error("{\"type\":\"event\"}\n").text, "field=id missing");
}

TEST(WireNdjsonDecode, NamesWrongTypedField) {
  EXPECT_EQ(decode_error("{\"type\":1,\"id\":\"e\"}\n").text,
            "field=type expected=string got=number");
  EXPECT_EQ(decode_error("{\"type\":\"event\",\"id\":null}\n").text,
            "field=id expected=string got=null");
  EXPECT_EQ(decode_error("{\"type\":\"event\",\"id\":\"e\",\"target\":[\"x\"]}\n").text,
            "field=target expected=string got=array");
  EXPECT_EQ(decode_error("{\"type\":\"event\",\"id\":\"e\",\"source\":true}\n").text,
            "field=source expected=string got=boolean");
  EXPECT_EQ(decode_error("{\"type\":\"event\",\"id\":\"e\",\"correlation_id\":{}}\n").text,
            "field=correlation_id expected=string got=object");
  EXPECT_EQ(decode_error("{\"type\":\"event\",\"id\":\"e\",\"error\":5}\n").text,
            "field=error expected=string got=number");
}

TEST(WireNdjsonDecode, NamesUnknownTypeValue) {
  const ProtocolError e = decode_error("{\"type\":\"notify\",\"id\":\"e\"}\n");
  EXPECT_EQ(e.text, "field=type value=\"notify\" expected=request|response|event|error");
}

TEST(WireNdjsonDecode, RefusesEmptyIdButAcceptsEmptyOptionalNames) {
  EXPECT_EQ(decode_error("{\"type\":\"event\",\"id\":\"\"}\n").text, "field=id empty");
  const Message m = decode_one(
      "{\"type\":\"event\",\"id\":\"e\",\"target\":\"\",\"source\":null,\"correlation_id\":\"\"}"
      "\n");
  EXPECT_TRUE(m.target.empty());
  EXPECT_TRUE(m.source.empty());
  EXPECT_TRUE(m.correlation_id.empty());
}

TEST(WireNdjsonDecode, TreatsLineSeparatorsInsideStringsAsText) {
  // U+2028 and U+2029 are not line ends; only 0x0A is.
  const Message m = decode_one(
      "{\"type\":\"event\",\"id\":\"a\xE2\x80\xA8"
      "b\xE2\x80\xA9\",\"payload\":\"\xE2\x80\xA8\"}\n");
  EXPECT_EQ(m.id,
            "a\xE2\x80\xA8"
            "b\xE2\x80\xA9");
  EXPECT_EQ(m.payload.view(), "\"\xE2\x80\xA8\"");
}

TEST(WireNdjsonDecode, UnescapesEscapedNewlineInsideString) {
  const Message m = decode_one(R"({"type":"error","id":"e","error":"line1\nline2\u0000"})"
                               "\n");
  EXPECT_EQ(m.error, std::string_view("line1\nline2\0", 12));
}

TEST(WireNdjsonDecode, ErrorRepliesToBadLinesReadBackInTheCodec) {
  struct Case {
    std::string_view line;
    std::string_view id;  // what the reply's id must be
  };
  const Case cases[] = {
      {"{\"type\":\"event\",\"id\":\"e\",\"\xFF\":1}\n", kProtocolErrorId},
      {"{\"type\":\"event\",\"id\":\"\xC3\x28\"}\n", kProtocolErrorId},
      {"{\"type\":\"event\",\"id\":\"e\",\"payload\":\"\xED\xA0\x80\"}\n", kProtocolErrorId},
      {" 42\n", kProtocolErrorId},
      {" \"text\"\n", kProtocolErrorId},
      {" null\n", kProtocolErrorId},
      {"{\"type\":\"event\",\"id\":7}\n", kProtocolErrorId},
      {"{\"type\":\"event\",\"id\":\"m\",\"target\":{}}\n", "m"},
      {"{\"type\":[],\"id\":\"m\"}\n", kProtocolErrorId},
      {"{\"type\":\"\",\"id\":\"m\",\"correlation_id\":\"c\"}\n", "m"},
      {"{\"type\":\"event\",\"id\":\"m\"} []\n", kProtocolErrorId},
  };
  for (const Case& c : cases) {
    const ProtocolError e = decode_error(c.line);
    EXPECT_EQ(e.after, AfterError::keep_open) << c.line;
    std::string encoded;
    const EncodeResult r = encode_ndjson(make_error_reply(e, "sender"), encoded);
    ASSERT_TRUE(r.ok()) << c.line << " -> " << r.text;
    const Message reply = decode_one(encoded);
    EXPECT_EQ(reply.type, MessageType::error) << c.line;
    EXPECT_EQ(reply.id, c.id) << c.line;
    EXPECT_EQ(reply.error, e.text) << c.line;
    EXPECT_EQ(reply.target, "sender");
  }
}

TEST(WireNdjsonDecode, RawNewlineInsideStringEndsTheLineAndTheNextLineStillDecodes) {
  // 0x0A is the line end even inside a string: both halves are refused, nothing is merged.
  const Decoded out = decode_all(
      "{\"type\":\"event\",\"id\":\"a\",\"payload\":\"one\ntwo\"}\n"
      "{\"type\":\"event\",\"id\":\"b\",\"payload\":\"one\\ntwo\"}\n");
  ASSERT_EQ(out.errors.size(), 2U);
  EXPECT_NE(out.errors[0].text.find("invalid JSON"), std::string::npos) << out.errors[0].text;
  ASSERT_EQ(out.messages.size(), 1U);
  EXPECT_EQ(out.messages[0].id, "b");
  EXPECT_EQ(out.messages[0].payload.view(), "\"one\\ntwo\"");
}

TEST(WireNdjsonEncode, LineSeparatorsInPayloadPassRawAndInFieldsAreEscaped) {
  const std::string payload = "{\"s\":\"\xE2\x80\xA8|\xE2\x80\xA9\"}";
  const Message m =
      decode_one("{\"type\":\"event\",\"id\":\"\xE2\x80\xA9\",\"payload\":" + payload + "}\n");
  EXPECT_EQ(m.payload.view(), payload);
  const std::string line = to_ndjson(m, {JsonPayloadCheck::trust});
  EXPECT_EQ(line, "{\"type\":\"event\",\"id\":\"\\u2029\",\"payload\":" + payload + "}\n");
  const Message back = decode_one(line);
  EXPECT_EQ(back.id, m.id);
  EXPECT_EQ(back.payload.view(), payload);
}

TEST(WireNdjsonDecode, ResynchronisesOnNextLineAfterBadLine) {
  const Decoded out = decode_all(
      "{\"type\":\"event\",\"id\":\"1\"}\n"
      "this is not json\n"
      "{\"type\":\"event\",\"id\":\"2\"}\n"
      "[1]\n"
      "{\"type\":\"event\",\"id\":\"3\"}\n");
  ASSERT_EQ(out.messages.size(), 3U);
  EXPECT_EQ(out.messages[0].id, "1");
  EXPECT_EQ(out.messages[1].id, "2");
  EXPECT_EQ(out.messages[2].id, "3");
  EXPECT_EQ(out.errors.size(), 2U);
}

TEST(WireNdjsonDecode, SkipsBlankLines) {
  const Decoded out = decode_all("\n  \r\n{\"type\":\"event\",\"id\":\"1\"}\n\n");
  EXPECT_EQ(out.messages.size(), 1U);
  EXPECT_EQ(out.errors.size(), 0U);
}

TEST(WireNdjsonDecode, DecodesManyMessagesFromOneChunk) {
  std::string chunk;
  for (int i = 0; i < 1000; ++i) {
    chunk += R"({"type":"event","id":"m)" + std::to_string(i) + R"(","payload":[)" +
             std::to_string(i) + "]}\n";
  }
  const Decoded out = decode_all(chunk);
  ASSERT_EQ(out.messages.size(), 1000U);
  EXPECT_EQ(out.errors.size(), 0U);
  EXPECT_EQ(out.messages[999].id, "m999");
  EXPECT_EQ(out.messages[999].payload.view(), "[999]");
}

TEST(WireNdjsonDecode, DecodesMessageSplitByteByByte) {
  const std::string line = R"({"type":"request","id":"x","payload":{"k":[1,2,3]},"target":"t"})"
                           "\n";
  Decoder decoder;
  Decoded out;
  for (const char c : line + line) {
    decoder.feed(std::string_view(&c, 1));
    drain(decoder, out);
  }
  ASSERT_EQ(out.messages.size(), 2U);
  EXPECT_EQ(out.errors.size(), 0U);
  EXPECT_EQ(out.messages[1].payload.view(), R"({"k":[1,2,3]})");
}

TEST(WireNdjsonDecode, IncompleteLineNeedsMore) {
  Decoder decoder;
  decoder.feed(R"({"type":"event","id":"x"})");
  Message message;
  ProtocolError error;
  EXPECT_EQ(decoder.poll(message, error), DecodeStatus::need_more);
  decoder.feed("\n");
  EXPECT_EQ(decoder.poll(message, error), DecodeStatus::message);
}

TEST(WireNdjsonDecode, DecodesDirectlyFromWritableSpan) {
  Decoder decoder;
  const std::string_view line = "{\"type\":\"event\",\"id\":\"w\"}\n";
  std::span<std::byte> space = decoder.writable(4096);
  ASSERT_GE(space.size(), 4096U);
  std::memcpy(space.data(), line.data(), line.size());
  decoder.commit(line.size());
  Message message;
  ProtocolError error;
  ASSERT_EQ(decoder.poll(message, error), DecodeStatus::message);
  EXPECT_EQ(message.id, "w");
  EXPECT_EQ(decoder.framing(), Framing::ndjson);
}

TEST(WireNdjsonDecode, RefusesLineAtLimitPlusOneAndAcceptsLineAtLimit) {
  DecoderConfig config;
  const std::string head = R"({"type":"event","id":"e","payload":")";
  const std::string tail = "\"}";
  config.max_message_size = 200;
  const std::string fits = head + std::string(200 - head.size() - tail.size(), 'a') + tail;
  ASSERT_EQ(fits.size(), 200U);
  const Decoded ok = decode_all(fits + "\n", config);
  EXPECT_EQ(ok.messages.size(), 1U);
  EXPECT_EQ(ok.errors.size(), 0U);

  const std::string too_long = head + std::string(201 - head.size() - tail.size(), 'a') + tail;
  const Decoded refused = decode_all(too_long + "\n" + fits + "\n", config);
  ASSERT_EQ(refused.errors.size(), 1U);
  EXPECT_EQ(refused.errors[0].text, "line too long: length=201 max=200 (discarded)");
  EXPECT_EQ(refused.errors[0].after, AfterError::keep_open);
  EXPECT_EQ(refused.messages.size(), 1U);
}

TEST(WireNdjsonDecode, RefusesHugeLineWithBoundedMemory) {
  DecoderConfig config;
  config.max_message_size = std::size_t{1} << 20U;
  Decoder decoder(config);
  Decoded out;

  const std::string chunk(std::size_t{64} << 10U, 'x');
  std::size_t largest_capacity = 0;
  decoder.feed(R"({"type":"event","id":"e","payload":")");
  for (std::size_t fed = 0; fed < (std::size_t{60} << 20U); fed += chunk.size()) {
    std::span<std::byte> space = decoder.writable(chunk.size());
    std::memcpy(space.data(), chunk.data(), chunk.size());
    decoder.commit(chunk.size());
    drain(decoder, out);
    largest_capacity = std::max(largest_capacity, decoder.buffer_capacity());
    ASSERT_LE(decoder.buffered_bytes(), config.max_message_size + chunk.size());
  }
  EXPECT_TRUE(out.errors.empty()) << "the error is reported at the line's end";
  EXPECT_LE(largest_capacity, 4 * config.max_message_size);

  decoder.feed("\"}\n{\"type\":\"event\",\"id\":\"after\"}\n");
  drain(decoder, out);
  ASSERT_EQ(out.errors.size(), 1U);
  EXPECT_NE(out.errors[0].text.find("line too long"), std::string::npos) << out.errors[0].text;
  EXPECT_EQ(out.errors[0].after, AfterError::keep_open);
  ASSERT_EQ(out.messages.size(), 1U);
  EXPECT_EQ(out.messages[0].id, "after");
  EXPECT_LE(decoder.buffer_capacity(), 4 * config.max_message_size);
}

TEST(WireNdjsonDecode, ShrinksBufferAfterLargeLine) {
  DecoderConfig config;
  config.initial_buffer_size = 1024;
  Decoder decoder(config);
  Decoded out;
  decoder.feed(R"({"type":"event","id":"e","payload":")" + std::string(100000, 'y') + "\"}\n");
  drain(decoder, out);
  ASSERT_EQ(out.messages.size(), 1U);
  EXPECT_GE(decoder.buffer_capacity(), 100000U);
  (void)decoder.writable(1);
  EXPECT_LE(decoder.buffer_capacity(), 4 * 1024U);
}

TEST(WireNdjsonEncode, WritesFieldsInFixedOrderAndOmitsEmptyOptionalFields) {
  Message m;
  m.type = MessageType::response;
  m.id = "RPCGetMessageCount";
  m.payload = Payload::copy_of(std::string_view(R"({"count": 3})"));
  m.source = "broker";
  m.target = "svc";
  m.correlation_id = "c";
  EXPECT_EQ(to_ndjson(m), R"({"type":"response","id":"RPCGetMessageCount","payload":{"count": 3},)"
                          R"("source":"broker","target":"svc","correlation_id":"c"})"
                          "\n");

  Message bare;
  bare.type = MessageType::event;
  bare.id = "e";
  EXPECT_EQ(to_ndjson(bare), "{\"type\":\"event\",\"id\":\"e\"}\n");
}

TEST(WireNdjsonEncode, EscapesControlCharactersQuotesAndLineSeparators) {
  Message m;
  m.type = MessageType::error;
  m.id = "q\"\\";
  m.error =
      std::string("a\nb\rc\td\x01\x1f\x7f\b\f", 12) + "\xE2\x80\xA8|\xE2\x80\xA9|\xE2\x82\xAC";
  const std::string line = to_ndjson(m);
  EXPECT_EQ(line,
            "{\"type\":\"error\",\"id\":\"q\\\"\\\\\",\"error\":\"a\\nb\\rc\\td\\u0001\\u001f\x7f"
            "\\b\\f\\u2028|\\u2029|\xE2\x82\xAC\"}\n");
  EXPECT_EQ(line.find('\n'), line.size() - 1);

  const Message back = decode_one(line);
  EXPECT_EQ(back.id, m.id);
  EXPECT_EQ(back.error, m.error);
}

TEST(WireNdjsonEncode, RefusesInvalidUtf8InNamesWithoutTouchingOutput) {
  Message m;
  m.type = MessageType::event;
  m.id = "e";
  m.target = "\xFF";
  std::string out = "kept";
  const EncodeResult r = encode_ndjson(m, out);
  EXPECT_EQ(r.error, EncodeError::field_invalid);
  EXPECT_EQ(r.text, "field=target is not valid UTF-8");
  EXPECT_EQ(out, "kept");
}

TEST(WireNdjsonEncode, WritesPlainPayloadAsJsonString) {
  Message m;
  m.type = MessageType::event;
  m.id = "e";
  m.encoding = PayloadEncoding::plain;
  m.payload = Payload::copy_of(std::string_view("hi \"there\"\n"));
  EXPECT_EQ(to_ndjson(m),
            "{\"type\":\"event\",\"id\":\"e\",\"payload\":\"hi \\\"there\\\"\\n\"}\n");
}

TEST(WireNdjsonEncode, RefusesPlainPayloadThatIsNotUtf8) {
  Message m;
  m.type = MessageType::event;
  m.id = "e";
  m.encoding = PayloadEncoding::plain;
  m.payload = Payload::copy_of(std::string_view("\xC0\x80"));
  std::string out;
  const EncodeResult r = encode_ndjson(m, out);
  EXPECT_EQ(r.error, EncodeError::payload_invalid);
  EXPECT_NE(r.text.find("encoding=plain"), std::string::npos);
  EXPECT_TRUE(out.empty());
}

TEST(WireNdjsonEncode, RefusesGobPayload) {
  Message m;
  m.type = MessageType::event;
  m.id = "e";
  m.encoding = PayloadEncoding::gob;
  m.payload = Payload::copy_of(std::string_view("\x0e\xff\x81"));
  std::string out;
  const EncodeResult r = encode_ndjson(m, out);
  EXPECT_EQ(r.error, EncodeError::payload_gob);
  EXPECT_NE(r.text.find("encoding=gob"), std::string::npos);
  EXPECT_TRUE(out.empty());
}

TEST(WireNdjsonEncode, RefusesInvalidJsonPayloadThatCouldForgeLines) {
  Message m;
  m.type = MessageType::event;
  m.id = "e";
  m.payload = Payload::copy_of(std::string_view("1}\n{\"type\":\"event\",\"id\":\"forged\"}"));
  std::string out;
  const EncodeResult r = encode_ndjson(m, out);
  EXPECT_EQ(r.error, EncodeError::payload_invalid);
  EXPECT_NE(r.text.find("payload encoding=json"), std::string::npos) << r.text;
  EXPECT_TRUE(out.empty());
}

TEST(WireNdjsonEncode, TurnsNewlinesOfPrettyPrintedJsonPayloadIntoSpaces) {
  Message m;
  m.type = MessageType::event;
  m.id = "e";
  m.payload = Payload::copy_of(std::string_view("{\n  \"a\": [1,\n 2]\n}"));
  const std::string line = to_ndjson(m);
  EXPECT_EQ(line, "{\"type\":\"event\",\"id\":\"e\",\"payload\":{   \"a\": [1,  2] }}\n");
  EXPECT_EQ(decode_one(line).payload.view(), "{   \"a\": [1,  2] }");
}

TEST(WireNdjsonEncode, AppendsToExistingOutputForBatching) {
  Message m;
  m.type = MessageType::event;
  m.id = "a";
  std::string out;
  ASSERT_TRUE(encode_ndjson(m, out).ok());
  m.id = "b";
  ASSERT_TRUE(encode_ndjson(m, out).ok());
  const Decoded back = decode_all(out);
  ASSERT_EQ(back.messages.size(), 2U);
  EXPECT_EQ(back.messages[1].id, "b");
}

TEST(WireErrorReply, AddressesSenderWithOffendingIds) {
  Message offending;
  offending.type = MessageType::request;
  offending.id = "RPCNope";
  offending.correlation_id = "c7";
  offending.source = "svc";
  offending.target = "broker";
  const Message reply = make_error_reply(offending, "unknown method: id=RPCNope");
  EXPECT_EQ(reply.type, MessageType::error);
  EXPECT_EQ(reply.id, "RPCNope");
  EXPECT_EQ(reply.correlation_id, "c7");
  EXPECT_EQ(reply.source, "broker");
  EXPECT_EQ(reply.target, "svc");
  EXPECT_EQ(reply.error, "unknown method: id=RPCNope");
  EXPECT_TRUE(reply.payload.empty());

  ProtocolError error;
  error.text = "field=type missing";
  error.id = "m1";
  error.correlation_id = "c1";
  const Message from_error = make_error_reply(error, "client");
  EXPECT_EQ(from_error.id, "m1");
  EXPECT_EQ(from_error.correlation_id, "c1");
  EXPECT_EQ(from_error.target, "client");
  EXPECT_EQ(from_error.source, "broker");
  EXPECT_EQ(from_error.error, "field=type missing");
}

}  // namespace
}  // namespace v2::wire
