#pragma once

// Shared by the wire codec's fuzz targets: how an input becomes a decoder configuration and a
// stream cut into read(2)-sized pieces, the checks every decoder result must pass, and the
// field-by-field comparison of messages. A failed check prints what differed and aborts, so
// libFuzzer records the input as a crash.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "v2broker/message.hpp"
#include "v2broker/wire.hpp"

namespace v2::wire::fuzz {

/// The fuzzers' message size limit: small, so inputs of libFuzzer's usual sizes reach it.
inline constexpr std::size_t kFuzzMaxMessageSize = std::size_t{64} << 10U;

/// Limit of the decoders that read what the encoders wrote: an encoder may legitimately grow a
/// message (escaping U+2028 takes 6 bytes instead of 3), and that is not what is tested there.
inline constexpr std::size_t kRedecodeMaxMessageSize = std::size_t{8} << 20U;

[[noreturn]] inline void fail(std::string_view what, std::string_view detail = {}) {
  std::fprintf(stderr, "fuzz check failed: %.*s%s%.*s\n", static_cast<int>(what.size()),
               what.data(), detail.empty() ? "" : ": ", static_cast<int>(detail.size()),
               detail.data());
  std::abort();
}

inline void require(bool ok, std::string_view what, std::string_view detail = {}) {
  if (!ok) {
    fail(what, detail);
  }
}

/// splitmix64: a tiny deterministic generator, so one input always cuts the same way.
class Rng {
 public:
  explicit Rng(std::uint64_t seed) noexcept : state_(seed) {}

  std::uint64_t next() noexcept {
    state_ += 0x9E3779B97F4A7C15ULL;
    std::uint64_t z = state_;
    z = (z ^ (z >> 30U)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27U)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31U);
  }

  /// How many bytes the "socket" has ready: mostly small, sometimes large, so that lines,
  /// headers and payloads are split at every kind of place.
  std::size_t chunk() noexcept {
    constexpr std::size_t kScales[] = {1, 3, 16, 128, 1024, 70000};
    const std::uint64_t r = next();
    return 1 + static_cast<std::size_t>(r % kScales[(r >> 32U) % std::size(kScales)]);
  }

 private:
  std::uint64_t state_;
};

/// What the first byte of an input selects; the rest of the input is the stream.
///
///   bits 0-2  cutting: 0 the whole stream in one read, otherwise the seed of the cut points
///   bits 3-4  max_message_size: 64 KiB, 64 KiB, 1000, 48
///   bits 5-6  direct_payload_threshold: 64 KiB, 1, 100, 4096
///   bit  7    size asked of writable(): 64 KiB (as the daemon does) or 1
struct Setup {
  DecoderConfig config;
  std::uint64_t cut_seed = 0;
  std::size_t read_size = std::size_t{64} << 10U;
  std::string_view stream;
};

inline Setup make_setup(const std::uint8_t* data, std::size_t size, Framing framing) {
  Setup setup;
  setup.config.framing = framing;
  setup.config.initial_buffer_size = 256;
  if (size == 0) {
    setup.config.max_message_size = kFuzzMaxMessageSize;
    return setup;
  }
  const std::uint8_t control = data[0];
  constexpr std::size_t kMaxSizes[] = {kFuzzMaxMessageSize, kFuzzMaxMessageSize, 1000, 48};
  constexpr std::size_t kThresholds[] = {std::size_t{64} << 10U, 1, 100, 4096};
  setup.cut_seed = control & 0x07U;
  setup.config.max_message_size = kMaxSizes[(control >> 3U) & 0x03U];
  setup.config.direct_payload_threshold = kThresholds[(control >> 5U) & 0x03U];
  setup.read_size = (control & 0x80U) != 0 ? 1 : std::size_t{64} << 10U;
  setup.stream = std::string_view(reinterpret_cast<const char*>(data + 1), size - 1);
  if (setup.cut_seed != 0) {
    setup.cut_seed ^= static_cast<std::uint64_t>(size) << 8U;
  }
  return setup;
}

/// Polls `decoder` until need_more, handing each result to `on_message` / `on_error`, and
/// checks what the decoder promises after an error that closes the connection.
template <typename OnMessage, typename OnError>
void drain(Decoder& decoder, OnMessage&& on_message, OnError&& on_error) {
  for (;;) {
    Message message;
    ProtocolError error;
    const DecodeStatus status = decoder.poll(message, error);
    if (status == DecodeStatus::need_more) {
      return;
    }
    if (status == DecodeStatus::message) {
      require(!decoder.failed(), "a failed decoder produced a message");
      on_message(message);
      continue;
    }
    require(!error.text.empty(), "protocol error without text");
    require(decoder.failed() == (error.after == AfterError::close),
            "failed() disagrees with the error's AfterError", error.text);
    on_error(error);
    if (error.after == AfterError::close) {
      Message after;
      ProtocolError more;
      require(decoder.poll(after, more) == DecodeStatus::need_more,
              "a failed decoder produced more than need_more");
      require(decoder.buffered_bytes() == 0, "a failed decoder kept bytes");
      return;
    }
  }
}

/// Feeds `setup.stream` to `decoder` the way the daemon reads a socket: writable(read_size),
/// copy at most what the "socket" has, commit, drain. Between reads, checks that the decoder
/// holds no more than one message's worth of bytes (the memory bound of PROTOCOL.md).
template <typename OnMessage, typename OnError>
void feed_in_pieces(Decoder& decoder, const Setup& setup, OnMessage&& on_message,
                    OnError&& on_error) {
  const std::size_t max = setup.config.max_message_size;
  const std::size_t capacity_bound =
      2 * (max + kBinaryHeaderSize + setup.read_size) + setup.config.initial_buffer_size;
  Rng rng(setup.cut_seed);
  std::string_view rest = setup.stream;
  while (!rest.empty()) {
    std::size_t ready = setup.cut_seed == 0 ? rest.size() : std::min(rest.size(), rng.chunk());
    while (ready > 0) {
      const std::span<std::byte> space = decoder.writable(setup.read_size);
      require(!space.empty(), "writable() returned an empty span");
      const std::size_t count = std::min(space.size(), ready);
      std::memcpy(space.data(), rest.data(), count);
      decoder.commit(count);
      rest.remove_prefix(count);
      ready -= count;
      drain(decoder, on_message, on_error);
      require(decoder.buffered_bytes() <= max + kBinaryHeaderSize,
              "decoder buffers more than one message after draining",
              std::to_string(decoder.buffered_bytes()));
      require(decoder.buffer_capacity() <= capacity_bound, "decoder buffer grew past its bound",
              std::to_string(decoder.buffer_capacity()));
    }
  }
}

/// Everything one decoder produced from one whole input.
struct Decoded {
  std::vector<Message> messages;
  std::vector<ProtocolError> errors;
};

/// Decodes `bytes` in one piece with a decoder of `framing` and a generous limit.
inline Decoded decode_whole(std::string_view bytes, Framing framing) {
  DecoderConfig config;
  config.framing = framing;
  config.max_message_size = kRedecodeMaxMessageSize;
  Decoder decoder(config);
  decoder.feed(bytes);
  Decoded out;
  drain(
      decoder, [&](Message& m) { out.messages.push_back(std::move(m)); },
      [&](ProtocolError& e) { out.errors.push_back(std::move(e)); });
  return out;
}

/// Name of the first field in which `a` and `b` differ, or empty when they are the same.
inline std::string_view first_difference(const Message& a, const Message& b) {
  if (a.type != b.type) {
    return "type";
  }
  if (a.encoding != b.encoding) {
    return "encoding";
  }
  if (a.id != b.id) {
    return "id";
  }
  if (a.error != b.error) {
    return "error";
  }
  if (a.source != b.source) {
    return "source";
  }
  if (a.target != b.target) {
    return "target";
  }
  if (a.correlation_id != b.correlation_id) {
    return "correlation_id";
  }
  if (a.payload.view() != b.payload.view()) {
    return "payload";
  }
  return {};
}

/// Decodes `encoded` (one message in `framing`) and requires exactly `expected` back.
inline void require_decodes_to(std::string_view encoded, Framing framing, const Message& expected,
                               std::string_view what) {
  const Decoded back = decode_whole(encoded, framing);
  require(back.errors.empty(), what,
          back.errors.empty() ? std::string_view{} : back.errors.front().text);
  require(back.messages.size() == 1, what, "not exactly one message");
  const std::string_view field = first_difference(back.messages.front(), expected);
  require(field.empty(), what, field);
}

/// What every decoded message satisfies, whatever its framing.
inline void check_message_invariants(const Message& m, Framing framing) {
  require(!m.id.empty(), "decoded message with an empty id");
  require(static_cast<std::size_t>(m.type) < kMessageTypeCount, "decoded message type");
  require(m.encoding <= PayloadEncoding::plain, "decoded payload encoding");
  require(m.origin == 0, "decoded message with an origin");
  if (framing == Framing::ndjson) {
    require(m.encoding == PayloadEncoding::json, "NDJSON message not JSON-encoded");
  } else {
    require(m.type == MessageType::error || m.error.empty(), "binary non-error with error text");
    require(m.type != MessageType::error || m.payload.empty(), "binary error with a payload");
    require(m.id.size() <= kBinaryIdSize && m.source.size() <= kBinarySourceSize &&
                m.target.size() <= kBinaryTargetSize &&
                m.correlation_id.size() <= kBinaryCorrelationIdSize,
            "binary name longer than its field");
  }
}

/// The broker answers a protocol error with make_error_reply in the connection's framing; that
/// reply must be writable and must read back, with the id and correlation id of the error, in
/// the project's own decoder (clients and v2ctl use it).
inline void check_error_reply(const ProtocolError& error, Framing framing) {
  const Message reply = make_error_reply(error, "sender");
  std::string encoded;
  const EncodeResult result = encode(reply, framing, encoded);
  require(result.ok(), "error reply cannot be encoded", result.text);
  // A connection whose first byte selected no framing is answered in NDJSON.
  const Framing read_as = framing == Framing::binary ? Framing::binary : Framing::ndjson;
  require_decodes_to(encoded, read_as, reply, "error reply does not read back");
}

}  // namespace v2::wire::fuzz
