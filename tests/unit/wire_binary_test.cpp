#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
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

Message sample(MessageType type = MessageType::request) {
  Message m;
  m.type = type;
  m.id = "RPCGetMessageStats";
  m.source = "svc-a";
  m.target = "svc-b";
  m.correlation_id = "corr-1";
  m.payload = Payload::copy_of(std::string_view(R"({"k": [1, 2]})"));
  return m;
}

std::string to_binary(const Message& m) {
  std::string out;
  const EncodeResult r = encode_binary(m, out);
  EXPECT_TRUE(r.ok()) << r.text;
  return out;
}

/// A header with the given fields, for hand-made frames.
std::string raw_header(std::uint32_t length, std::uint8_t type = 0, std::uint8_t encoding = 0,
                       std::string_view id = "x") {
  std::string h(kBinaryHeaderSize, '\0');
  h[0] = 0x56;
  h[1] = 0x32;
  h[2] = 1;
  h[3] = static_cast<char>(encoding);
  h[4] = static_cast<char>(type);
  h[8] = static_cast<char>(length >> 24U);
  h[9] = static_cast<char>(length >> 16U);
  h[10] = static_cast<char>(length >> 8U);
  h[11] = static_cast<char>(length);
  h.replace(12, id.size(), id);
  return h;
}

void expect_same(const Message& a, const Message& b) {
  EXPECT_EQ(a.type, b.type);
  EXPECT_EQ(a.encoding, b.encoding);
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.error, b.error);
  EXPECT_EQ(a.source, b.source);
  EXPECT_EQ(a.target, b.target);
  EXPECT_EQ(a.correlation_id, b.correlation_id);
  EXPECT_EQ(a.payload.view(), b.payload.view());
}

TEST(WireBinaryEncode, WritesHeaderPerProtocol) {
  const std::string frame = to_binary(sample(MessageType::event));
  ASSERT_EQ(frame.size(), kBinaryHeaderSize + 13);
  EXPECT_EQ(frame.substr(0, 3), "V2\x01");
  EXPECT_EQ(frame[3], 0);  // JSON
  EXPECT_EQ(frame[4], 2);  // event
  EXPECT_EQ(frame.substr(5, 3), std::string(3, '\0'));
  EXPECT_EQ(frame.substr(8, 4), std::string("\0\0\0\x0d", 4));
  EXPECT_EQ(frame.substr(12, 32), "RPCGetMessageStats" + std::string(14, '\0'));
  EXPECT_EQ(frame.substr(44, 5), "svc-a");
  EXPECT_EQ(frame.substr(76, 5), "svc-b");
  EXPECT_EQ(frame.substr(108, 20), "corr-1" + std::string(14, '\0'));
  EXPECT_EQ(frame.substr(128), R"({"k": [1, 2]})");
}

TEST(WireBinaryRoundTrip, PreservesEveryFieldAndPayloadBytes) {
  for (const auto type : {MessageType::request, MessageType::response, MessageType::event}) {
    for (const auto encoding :
         {PayloadEncoding::json, PayloadEncoding::gob, PayloadEncoding::plain}) {
      Message m = sample(type);
      m.encoding = encoding;
      if (encoding != PayloadEncoding::json) {
        m.payload = Payload::copy_of(std::string_view("\x00\xff raw\n", 7));
      }
      const Decoded out = decode_all(to_binary(m));
      ASSERT_TRUE(out.errors.empty()) << first_error_text(out);
      ASSERT_EQ(out.messages.size(), 1U);
      expect_same(out.messages[0], m);
    }
  }
}

TEST(WireBinaryRoundTrip, AcceptsNamesThatFillTheirFieldExactly) {
  Message m = sample();
  m.id = std::string(kBinaryIdSize, 'i');
  m.source = std::string(kBinarySourceSize, 's');
  m.target = std::string(kBinaryTargetSize, 't');
  m.correlation_id = std::string(kBinaryCorrelationIdSize, 'c');
  const Decoded out = decode_all(to_binary(m));
  ASSERT_EQ(out.messages.size(), 1U);
  expect_same(out.messages[0], m);
}

TEST(WireBinaryRoundTrip, CarriesErrorTextAsJsonPayload) {
  Message m = sample(MessageType::error);
  m.payload = Payload{};
  m.error = "no such target: target=\"x\"";
  BinaryFrame frame;
  ASSERT_TRUE(encode_binary_frame(m, frame).ok());
  EXPECT_EQ(frame.payload.view(), R"({"error":"no such target: target=\"x\""})");
  EXPECT_EQ(frame.header[3], std::byte{0});

  const Decoded out = decode_all(to_binary(m));
  ASSERT_EQ(out.messages.size(), 1U);
  EXPECT_EQ(out.messages[0].error, m.error);
  EXPECT_TRUE(out.messages[0].payload.empty());
}

TEST(WireBinaryRoundTrip, CarriesErrorTextAsPlainPayload) {
  Message m = sample(MessageType::error);
  m.encoding = PayloadEncoding::plain;
  m.error = "bad thing";
  BinaryFrame frame;
  ASSERT_TRUE(encode_binary_frame(m, frame).ok());
  EXPECT_EQ(frame.payload.view(), "bad thing");
  EXPECT_EQ(frame.header[3], std::byte{2});

  const Decoded out = decode_all(to_binary(m));
  ASSERT_EQ(out.messages.size(), 1U);
  EXPECT_EQ(out.messages[0].error, "bad thing");
}

TEST(WireBinaryDecode, RefusesErrorFrameWhosePayloadIsNotErrorObject) {
  const Decoded out = decode_all(raw_header(3, 3, 0) + "[1]");
  ASSERT_EQ(out.errors.size(), 1U);
  EXPECT_NE(out.errors[0].text.find("field=error"), std::string::npos) << out.errors[0].text;
  EXPECT_EQ(out.errors[0].after, AfterError::keep_open);
}

TEST(WireBinaryEncode, RefusesEachTooLongFieldByName) {
  struct Case {
    std::string Message::*field;
    std::size_t max;
    std::string_view name;
  };
  for (const Case c :
       {Case{&Message::id, kBinaryIdSize, "id"},
        Case{&Message::source, kBinarySourceSize, "source"},
        Case{&Message::target, kBinaryTargetSize, "target"},
        Case{&Message::correlation_id, kBinaryCorrelationIdSize, "correlation_id"}}) {
    Message m = sample();
    m.*c.field = std::string(c.max + 1, 'n');
    std::string out = "kept";
    const EncodeResult r = encode_binary(m, out);
    EXPECT_EQ(r.error, EncodeError::field_too_long) << c.name;
    EXPECT_EQ(r.text, "field=" + std::string(c.name) + " length=" + std::to_string(c.max + 1) +
                          " max=" + std::to_string(c.max));
    EXPECT_EQ(out, "kept");
  }
}

TEST(WireBinaryEncode, RefusesNameWithNulByte) {
  Message m = sample();
  m.target = std::string("a\0b", 3);
  std::string out;
  const EncodeResult r = encode_binary(m, out);
  EXPECT_EQ(r.error, EncodeError::field_invalid);
  EXPECT_NE(r.text.find("field=target"), std::string::npos);
}

TEST(WireBinaryEncode, RefusesPayloadOverLimit) {
  Message m = sample();
  m.payload = Payload::copy_of(std::string(1001, 'p'));
  BinaryFrame frame;
  BinaryEncodeOptions options;
  options.max_message_size = 1000;
  const EncodeResult r = encode_binary_frame(m, frame, options);
  EXPECT_EQ(r.error, EncodeError::payload_too_large);
  EXPECT_EQ(r.text, "payload length=1001 max=1000");
}

TEST(WireBinaryDecode, RefusesMaxLengthHeaderWithoutAllocatingAndCloses) {
  Decoder decoder;
  decoder.feed(raw_header(0xFFFFFFFFU, 0, 0, "big") + "tail");
  Message message;
  ProtocolError error;
  ASSERT_EQ(decoder.poll(message, error), DecodeStatus::error);
  EXPECT_EQ(error.after, AfterError::close);
  EXPECT_EQ(error.text, "binary frame too large: length=4294967295 max=52428800");
  EXPECT_EQ(error.id, "big");
  EXPECT_TRUE(decoder.failed());
  EXPECT_LT(decoder.buffer_capacity(), std::size_t{1} << 20U);
  EXPECT_EQ(decoder.poll(message, error), DecodeStatus::need_more);
}

TEST(WireBinaryDecode, RefusesWrongMagicAsSoonAsItArrives) {
  Decoder decoder;
  decoder.feed("V3");
  Message message;
  ProtocolError error;
  ASSERT_EQ(decoder.poll(message, error), DecodeStatus::error);
  EXPECT_EQ(error.text, "bad magic: bytes=0x56 0x33 expected=0x56 0x32");
  EXPECT_EQ(error.after, AfterError::close);
}

TEST(WireBinaryDecode, RefusesWrongVersion) {
  std::string frame = raw_header(0);
  frame[2] = 2;
  const Decoded out = decode_all(frame);
  ASSERT_EQ(out.errors.size(), 1U);
  EXPECT_EQ(out.errors[0].text, "unsupported version: version=2 expected=1");
  EXPECT_EQ(out.errors[0].after, AfterError::close);
}

TEST(WireBinaryDecode, RefusesBadTypeOrEncodingButStaysInSync) {
  const std::string good = to_binary(sample());
  const Decoded out = decode_all(raw_header(5, 9, 0) + "12345" + raw_header(2, 0, 7) + "ab" + good);
  ASSERT_EQ(out.errors.size(), 2U);
  EXPECT_EQ(out.errors[0].text, "field=type value=9 expected=0..3");
  EXPECT_EQ(out.errors[1].text, "field=encoding value=7 expected=0..2");
  EXPECT_EQ(out.errors[0].after, AfterError::keep_open);
  ASSERT_EQ(out.messages.size(), 1U);
  expect_same(out.messages[0], sample());
}

TEST(WireBinaryDecode, RefusesNameWithBytesAfterPadding) {
  std::string frame = raw_header(0, 0, 0, "ab");
  frame[12 + 5] = 'z';
  const Decoded out = decode_all(frame);
  ASSERT_EQ(out.errors.size(), 1U);
  EXPECT_EQ(out.errors[0].text, "field=id has bytes after its NUL padding");
}

TEST(WireBinaryDecode, RefusesEmptyId) {
  const Decoded out = decode_all(raw_header(0, 0, 0, ""));
  ASSERT_EQ(out.errors.size(), 1U);
  EXPECT_EQ(out.errors[0].text, "field=id empty");
}

/// The broker's reply to `error` on a binary connection, read back by the codec.
Message reply_read_back(const ProtocolError& error) {
  std::string frame;
  const EncodeResult r = encode_binary(make_error_reply(error, "sender"), frame);
  EXPECT_TRUE(r.ok()) << r.text;
  const Decoded back = decode_all(frame);
  EXPECT_TRUE(back.errors.empty()) << (back.errors.empty() ? "" : back.errors.front().text);
  EXPECT_EQ(back.messages.size(), 1U);
  return back.messages.empty() ? Message{} : back.messages.front();
}

// A name that is not text was echoed into the error reply, which the sender's own decoder then
// refused, so the sender never learnt why its frame was refused (found by fuzz_binary).
TEST(WireBinaryDecode, NameThatIsNotUtf8IsRefusedAndNotEchoedInTheReply) {
  const Decoded out = decode_all(raw_header(2, 2, 0, "\xC3\x28") + "{}" + to_binary(sample()));
  ASSERT_EQ(out.errors.size(), 1U);
  EXPECT_EQ(out.errors[0].text, "field=id is not valid UTF-8");
  EXPECT_EQ(out.errors[0].after, AfterError::keep_open);
  EXPECT_TRUE(out.errors[0].id.empty());
  ASSERT_EQ(out.messages.size(), 1U) << "the next frame must still decode";
  expect_same(out.messages[0], sample());

  std::string bad_correlation = raw_header(0, 2, 0, "fine");
  bad_correlation.replace(108, 2, "\xFF\xFE");
  const Decoded second = decode_all(bad_correlation);
  ASSERT_EQ(second.errors.size(), 1U);
  EXPECT_EQ(second.errors[0].text, "field=correlation_id is not valid UTF-8");
  EXPECT_EQ(second.errors[0].id, "fine");
  EXPECT_TRUE(second.errors[0].correlation_id.empty());

  const Message reply = reply_read_back(out.errors[0]);
  EXPECT_EQ(reply.type, MessageType::error);
  EXPECT_EQ(reply.id, kProtocolErrorId);
  EXPECT_EQ(reply.error, "field=id is not valid UTF-8");
  EXPECT_EQ(reply_read_back(second.errors[0]).id, "fine");
}

TEST(WireBinaryDecode, RefusesEveryLengthAboveTheLimitFromTheHeaderAlone) {
  DecoderConfig config;
  config.max_message_size = std::size_t{64} << 10U;
  config.initial_buffer_size = 4096;
  for (const std::uint32_t length :
       {0x00010001U, 0x00100000U, 0x7FFFFFFFU, 0x80000000U, 0xFFFFFFFEU, 0xFFFFFFFFU}) {
    Decoder decoder(config);
    Decoded out;
    const std::string header = raw_header(length, 0, 0, "big");
    for (std::size_t i = 0; i < header.size(); ++i) {
      decoder.feed(std::string_view(header).substr(i, 1));
      drain(decoder, out);
      EXPECT_EQ(out.errors.size(), i + 1 == header.size() ? 1U : 0U) << "length=" << length;
    }
    decoder.feed(std::string(4096, 'p'));  // payload bytes that follow are not kept
    drain(decoder, out);
    ASSERT_EQ(out.errors.size(), 1U);
    EXPECT_EQ(out.errors[0].text, "binary frame too large: length=" + std::to_string(length) +
                                      " max=" + std::to_string(config.max_message_size));
    EXPECT_EQ(out.errors[0].after, AfterError::close);
    EXPECT_EQ(decoder.buffered_bytes(), 0U);
    EXPECT_LE(decoder.buffer_capacity(), 2 * config.initial_buffer_size);
    EXPECT_EQ(reply_read_back(out.errors[0]).id, "big");
  }
}

TEST(WireBinaryDecode, ErrorRepliesToBadFramesReadBackInTheCodec) {
  std::string after_padding = raw_header(0, 0, 0, "ab");
  after_padding[12 + 5] = 'z';
  std::string bad_version = raw_header(0);
  bad_version[2] = 9;
  const std::string frames[] = {
      raw_header(0, 7, 0, "t"),
      raw_header(0, 0, 5, "e"),
      after_padding,
      raw_header(0, 0, 0, ""),
      bad_version,
      "V3",
      raw_header(3, 3, 0, "j") + "[1]",
      raw_header(3, 3, 1, "g") + "gob",
  };
  for (const std::string& frame : frames) {
    const Decoded out = decode_all(frame);
    ASSERT_EQ(out.errors.size(), 1U) << frame.substr(0, 3);
    const Message reply = reply_read_back(out.errors[0]);
    EXPECT_EQ(reply.type, MessageType::error);
    EXPECT_EQ(reply.error, out.errors[0].text);
    EXPECT_FALSE(reply.id.empty());
  }
}

TEST(WireBinaryDecode, ToleratesNonZeroReservedBytes) {
  std::string frame = raw_header(2) + "{}";
  frame[5] = 1;
  frame[7] = 9;
  const Decoded out = decode_all(frame);
  EXPECT_EQ(out.messages.size(), 1U);
}

TEST(WireBinaryDecode, TruncatedHeaderAndPayloadNeedMore) {
  const std::string frame = to_binary(sample());
  Decoder decoder;
  Message message;
  ProtocolError error;
  decoder.feed(std::string_view(frame).substr(0, 100));
  EXPECT_EQ(decoder.poll(message, error), DecodeStatus::need_more);
  decoder.feed(std::string_view(frame).substr(100, 30));
  EXPECT_EQ(decoder.poll(message, error), DecodeStatus::need_more);
  decoder.feed(std::string_view(frame).substr(130));
  ASSERT_EQ(decoder.poll(message, error), DecodeStatus::message);
  expect_same(message, sample());
}

TEST(WireBinaryDecode, DecodesManyFramesFromOneChunkAndByteByByte) {
  std::string stream;
  for (int i = 0; i < 200; ++i) {
    Message m = sample();
    m.id = "m" + std::to_string(i);
    stream += to_binary(m);
  }
  const Decoded at_once = decode_all(stream);
  ASSERT_EQ(at_once.messages.size(), 200U);
  EXPECT_EQ(at_once.messages[199].id, "m199");

  Decoder decoder;
  Decoded bytewise;
  for (const char c : std::string_view(stream).substr(0, 3 * (kBinaryHeaderSize + 13))) {
    decoder.feed(std::string_view(&c, 1));
    drain(decoder, bytewise);
  }
  ASSERT_EQ(bytewise.messages.size(), 3U);
  EXPECT_EQ(bytewise.errors.size(), 0U);
  EXPECT_EQ(bytewise.messages[2].id, "m2");
}

TEST(WireBinaryDecode, ReadsLargePayloadStraightIntoItsFinalBuffer) {
  Message m = sample();
  std::string big(std::size_t{3} << 20U, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) {
    big[i] = static_cast<char>(i * 7U);
  }
  m.encoding = PayloadEncoding::gob;
  m.payload = Payload::copy_of(big);
  const std::string frame = to_binary(m) + to_binary(sample());

  DecoderConfig config;
  config.initial_buffer_size = 4096;
  Decoder decoder(config);
  Decoded out;
  std::size_t offset = 0;
  std::size_t largest_span = 0;
  while (offset < frame.size()) {
    std::span<std::byte> space = decoder.writable(4096);
    largest_span = std::max(largest_span, space.size());
    const std::size_t count = std::min(space.size(), frame.size() - offset);
    std::memcpy(space.data(), frame.data() + offset, count);
    decoder.commit(count);
    offset += count;
    drain(decoder, out);
  }
  // The payload went into one span of its own size, not through the 4 KiB read buffer.
  EXPECT_GT(largest_span, std::size_t{2} << 20U);
  EXPECT_LE(decoder.buffer_capacity(), 16384U);
  ASSERT_EQ(out.messages.size(), 2U);
  EXPECT_TRUE(out.messages[0].payload.view() == big);
  expect_same(out.messages[1], sample());
}

TEST(WireBinaryDecode, RefusesFrameOverConfiguredLimit) {
  DecoderConfig config;
  config.max_message_size = 10;
  const Decoded out = decode_all(raw_header(11) + std::string(11, 'x'), config);
  ASSERT_EQ(out.errors.size(), 1U);
  EXPECT_EQ(out.errors[0].text, "binary frame too large: length=11 max=10");
  EXPECT_EQ(out.errors[0].after, AfterError::close);
}

TEST(WireCrossFraming, NdjsonToBinaryToNdjsonKeepsBytes) {
  const std::string line =
      R"({"type":"request","id":"RPCRegister","payload":{ "name" : "svc",  "n":[1, 2.0] },)"
      R"("source":"s","target":"broker","correlation_id":"c-1"})"
      "\n";
  Decoded first;
  Decoder ndjson;
  ndjson.feed(line);
  drain(ndjson, first);
  ASSERT_EQ(first.messages.size(), 1U);

  const Decoded second = decode_all(to_binary(first.messages[0]));
  ASSERT_EQ(second.messages.size(), 1U);
  expect_same(second.messages[0], first.messages[0]);

  std::string back;
  ASSERT_TRUE(encode_ndjson(second.messages[0], back).ok());
  EXPECT_EQ(back, line);
}

TEST(WireCrossFraming, ErrorMessageSurvivesBothFramings) {
  Message m = make_error_reply("RPCNope", "c2", "svc", "unknown method: id=RPCNope \xE2\x80\xA8");
  const Decoded binary = decode_all(to_binary(m));
  ASSERT_EQ(binary.messages.size(), 1U);
  std::string line;
  ASSERT_TRUE(encode_ndjson(binary.messages[0], line).ok());
  EXPECT_EQ(line,
            "{\"type\":\"error\",\"id\":\"RPCNope\",\"error\":\"unknown method: id=RPCNope "
            "\\u2028\",\"source\":\"broker\",\"target\":\"svc\",\"correlation_id\":\"c2\"}\n");
  Decoder decoder;
  decoder.feed(line);
  Decoded again;
  drain(decoder, again);
  ASSERT_EQ(again.messages.size(), 1U);
  expect_same(again.messages[0], m);
}

TEST(WireCrossFraming, NdjsonNameTooLongForBinaryIsRefusedByName) {
  Decoder decoder;
  decoder.feed(R"({"type":"event","id":")" + std::string(40, 'i') + "\"}\n");
  Decoded out;
  drain(decoder, out);
  ASSERT_EQ(out.messages.size(), 1U);
  std::string frame;
  const EncodeResult r = encode(out.messages[0], Framing::binary, frame);
  EXPECT_EQ(r.text, "field=id length=40 max=32");
  EXPECT_TRUE(frame.empty());
}

}  // namespace
}  // namespace v2::wire
