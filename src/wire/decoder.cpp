#include <algorithm>
#include <cstring>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <utility>

#include "v2broker/wire.hpp"
#include "wire/binary_header.hpp"
#include "wire/json.hpp"

namespace v2::wire {
namespace {

/// A read buffer larger than this many times its initial size is given back once it is empty.
constexpr std::size_t kShrinkFactor = 4;

bool is_json_space(std::byte b) noexcept {
  return b == std::byte{' '} || b == std::byte{'\t'} || b == std::byte{'\n'} ||
         b == std::byte{'\r'};
}

std::string_view as_chars(const std::byte* data, std::size_t size) noexcept {
  return {reinterpret_cast<const char*>(data), size};
}

}  // namespace

std::string_view to_string(Framing framing) noexcept {
  switch (framing) {
    case Framing::unknown:
      return "unknown";
    case Framing::ndjson:
      return "ndjson";
    case Framing::binary:
      return "binary";
  }
  return "invalid";
}

Framing detect_framing(std::byte first) noexcept {
  if (first == std::byte{'{'} || is_json_space(first)) {
    return Framing::ndjson;
  }
  if (first == kBinaryMagic0) {
    return Framing::binary;
  }
  return Framing::unknown;
}

struct Decoder::State {
  explicit State(const DecoderConfig& cfg) : config(cfg), framing(cfg.framing) {}

  DecoderConfig config;
  Framing framing;
  bool failed = false;

  // Read buffer: [head, tail) is undecoded data. The allocation has kJsonPadding bytes more than
  // `capacity`, so simdjson may parse a line in place.
  std::unique_ptr<std::byte[]> buffer;
  std::size_t capacity = 0;
  std::size_t head = 0;
  std::size_t tail = 0;
  bool last_span_direct = false;

  // NDJSON: bytes after head already searched for '\n', and the state of an over-long line.
  std::size_t scanned = 0;
  bool discarding = false;
  std::size_t discarded = 0;

  // Binary: the header of the frame being read, its payload when filled in place, and the
  // payload bytes of a refused frame still to skip.
  std::optional<detail::BinaryHeader> header;
  std::optional<PayloadBuilder> direct;
  std::size_t direct_filled = 0;
  std::size_t skip_remaining = 0;

  [[nodiscard]] std::size_t buffered() const noexcept { return tail - head; }
  [[nodiscard]] const std::byte* data() const noexcept { return buffer.get() + head; }

  void reallocate(std::size_t new_capacity) {
    auto fresh = std::make_unique_for_overwrite<std::byte[]>(new_capacity + detail::kJsonPadding);
    if (buffered() > 0) {
      std::memcpy(fresh.get(), data(), buffered());
    }
    tail = buffered();
    head = 0;
    buffer = std::move(fresh);
    capacity = new_capacity;
  }

  std::span<std::byte> writable(std::size_t min_size) {
    if (direct && direct_filled < header->payload_length) {
      last_span_direct = true;
      return direct->bytes().subspan(direct_filled);
    }
    last_span_direct = false;
    min_size = std::max<std::size_t>(min_size, 1);

    if (head == tail) {
      head = 0;
      tail = 0;
      const std::size_t wanted = std::max(config.initial_buffer_size, min_size);
      if (!buffer || capacity > kShrinkFactor * wanted) {
        reallocate(wanted);
      }
    }
    if (capacity - tail < min_size) {
      if (head > 0 && capacity - buffered() >= min_size) {
        std::memmove(buffer.get(), data(), buffered());
        tail = buffered();
        head = 0;
      } else {
        reallocate(std::max(capacity * 2, buffered() + min_size));
      }
    }
    return {buffer.get() + tail, capacity - tail};
  }

  void commit(std::size_t count) noexcept {
    if (last_span_direct && direct) {
      direct_filled += count;
    } else {
      tail += count;
    }
    if (failed) {
      head = 0;
      tail = 0;
    }
  }

  void consume(std::size_t count) noexcept {
    head += count;
    if (head == tail) {
      head = 0;
      tail = 0;
    }
  }

  DecodeStatus fail(ProtocolError& error, std::string text, std::string id = {},
                    std::string correlation_id = {}) {
    failed = true;
    head = 0;
    tail = 0;
    header.reset();
    direct.reset();
    error.text = std::move(text);
    error.id = std::move(id);
    error.correlation_id = std::move(correlation_id);
    error.after = AfterError::close;
    return DecodeStatus::error;
  }

  static DecodeStatus refuse(ProtocolError& error, std::string text, std::string id = {},
                             std::string correlation_id = {}) {
    error.text = std::move(text);
    error.id = std::move(id);
    error.correlation_id = std::move(correlation_id);
    error.after = AfterError::keep_open;
    return DecodeStatus::error;
  }

  DecodeStatus poll(Message& message, ProtocolError& error) {
    if (failed) {
      head = 0;
      tail = 0;
      return DecodeStatus::need_more;
    }
    if (framing == Framing::unknown) {
      if (buffered() == 0) {
        return DecodeStatus::need_more;
      }
      framing = detect_framing(*data());
      if (framing == Framing::unknown) {
        std::string text = "unknown framing: first byte=0x";
        detail::append_hex_byte(text, *data());
        text += " expected '{', JSON whitespace or 0x56";
        return fail(error, std::move(text));
      }
    }
    return framing == Framing::ndjson ? poll_ndjson(message, error) : poll_binary(message, error);
  }

  DecodeStatus poll_ndjson(Message& message, ProtocolError& error) {
    const std::size_t max = config.max_message_size;
    while (buffered() > 0) {
      const void* found = std::memchr(data() + scanned, '\n', buffered() - scanned);
      if (found == nullptr) {
        if (discarding) {
          discarded += buffered();
          head = 0;
          tail = 0;
          scanned = 0;
        } else if (buffered() > max) {
          // The line cannot fit: drop what is buffered and everything up to the next '\n'.
          discarding = true;
          discarded = buffered();
          head = 0;
          tail = 0;
          scanned = 0;
        } else {
          scanned = buffered();
        }
        return DecodeStatus::need_more;
      }

      const auto length = static_cast<std::size_t>(static_cast<const std::byte*>(found) - data());
      const std::string_view line = as_chars(data(), length);
      scanned = 0;

      if (discarding) {
        const std::size_t total = discarded + length;
        discarding = false;
        discarded = 0;
        consume(length + 1);
        return refuse(error, "line too long: length=" + std::to_string(total) +
                                 " max=" + std::to_string(max) + " (discarded)");
      }
      if (length > max) {
        consume(length + 1);
        return refuse(error, "line too long: length=" + std::to_string(length) +
                                 " max=" + std::to_string(max) + " (discarded)");
      }
      if (std::all_of(line.begin(), line.end(),
                      [](char c) { return is_json_space(static_cast<std::byte>(c)); })) {
        consume(length + 1);  // blank lines carry no message; skip them silently
        continue;
      }

      // The line is parsed in place: the '\n' and the buffer's padding follow it.
      const bool ok = detail::decode_ndjson_line(line, message, error);
      consume(length + 1);
      return ok ? DecodeStatus::message : DecodeStatus::error;
    }
    return DecodeStatus::need_more;
  }

  DecodeStatus poll_binary(Message& message, ProtocolError& error) {
    while (true) {
      if (skip_remaining > 0) {
        const std::size_t skipped = std::min(skip_remaining, buffered());
        consume(skipped);
        skip_remaining -= skipped;
        if (skip_remaining > 0) {
          return DecodeStatus::need_more;
        }
      }

      if (direct) {
        if (direct_filled < header->payload_length) {
          return DecodeStatus::need_more;
        }
        Payload payload = std::move(*direct).finish();
        direct.reset();
        return finish_frame(std::move(payload), message, error);
      }

      if (!header) {
        if (auto status = read_header(error)) {
          return *status;
        }
        if (!header) {
          return DecodeStatus::need_more;
        }
        if (header->payload_length == 0) {
          return finish_frame(Payload{}, message, error);
        }
        if (header->payload_length >= config.direct_payload_threshold) {
          direct.emplace(header->payload_length);
          direct_filled = std::min(buffered(), header->payload_length);
          if (direct_filled > 0) {
            std::memcpy(direct->bytes().data(), data(), direct_filled);
          }
          consume(direct_filled);
          continue;
        }
      }

      if (buffered() < header->payload_length) {
        return DecodeStatus::need_more;
      }
      Payload payload = Payload::copy_of(std::span(data(), header->payload_length));
      consume(header->payload_length);
      return finish_frame(std::move(payload), message, error);
    }
  }

  /// Reads the next header once its bytes are buffered. Returns a status to hand to the caller
  /// (an error), or nothing: then `header` is set, or more bytes are needed.
  std::optional<DecodeStatus> read_header(ProtocolError& error) {
    // Magic and version are checked as soon as they arrive, so a peer speaking something else
    // is refused at once instead of after 128 bytes.
    if (auto problem = detail::check_binary_prefix(std::span(data(), buffered()))) {
      return fail(error, std::move(*problem));
    }
    if (buffered() < kBinaryHeaderSize) {
      return std::nullopt;
    }

    detail::BinaryHeader parsed;
    std::string problem = detail::parse_binary_header(
        std::span<const std::byte, kBinaryHeaderSize>(data(), kBinaryHeaderSize), parsed);
    consume(kBinaryHeaderSize);

    if (parsed.payload_length > config.max_message_size) {
      // Refused from the header alone: the payload is never buffered.
      return fail(error,
                  "binary frame too large: length=" + std::to_string(parsed.payload_length) +
                      " max=" + std::to_string(config.max_message_size),
                  std::move(parsed.id), std::move(parsed.correlation_id));
    }
    if (!problem.empty()) {
      // The length is trustworthy, so skip this frame's payload and stay in sync.
      skip_remaining = parsed.payload_length;
      return refuse(error, std::move(problem), std::move(parsed.id),
                    std::move(parsed.correlation_id));
    }
    header = std::move(parsed);
    return std::nullopt;
  }

  DecodeStatus finish_frame(Payload payload, Message& message, ProtocolError& error) {
    detail::BinaryHeader done = std::move(*header);
    header.reset();

    message.type = done.type;
    message.encoding = done.encoding;
    message.id = std::move(done.id);
    message.source = std::move(done.source);
    message.target = std::move(done.target);
    message.correlation_id = std::move(done.correlation_id);
    message.error.clear();
    message.payload = Payload{};
    message.origin = 0;

    if (message.type != MessageType::error) {
      message.payload = std::move(payload);
      return DecodeStatus::message;
    }

    // An error frame carries only its text: {"error":"text"} (JSON) or the bare text (PLAIN).
    std::string why;
    if (message.encoding == PayloadEncoding::plain) {
      if (detail::is_valid_utf8(payload.view())) {
        message.error.assign(payload.view());
      } else {
        why = "field=error binary error frame text is not valid UTF-8";
      }
    } else if (message.encoding == PayloadEncoding::json) {
      if (!payload.empty() && !detail::read_error_payload(payload.view(), message.error, why)) {
        why.insert(0, "field=error binary error frame: ");
      }
    } else {
      why = "field=error binary error frame with encoding=gob, expected json or plain";
    }
    if (!why.empty()) {
      return refuse(error, std::move(why), std::move(message.id),
                    std::move(message.correlation_id));
    }
    return DecodeStatus::message;
  }
};

namespace {

// The smallest workable values: a zero limit or threshold would refuse or split everything.
DecoderConfig sane(DecoderConfig config) noexcept {
  config.max_message_size = std::max<std::size_t>(config.max_message_size, 1);
  config.initial_buffer_size = std::max<std::size_t>(config.initial_buffer_size, 256);
  config.direct_payload_threshold = std::max<std::size_t>(config.direct_payload_threshold, 1);
  return config;
}

}  // namespace

Decoder::Decoder(const DecoderConfig& config) : state_(std::make_unique<State>(sane(config))) {}

Decoder::Decoder(Decoder&& other) noexcept = default;
Decoder& Decoder::operator=(Decoder&& other) noexcept = default;
Decoder::~Decoder() = default;

std::span<std::byte> Decoder::writable(std::size_t min_size) {
  return state_->writable(min_size);
}

void Decoder::commit(std::size_t count) noexcept {
  state_->commit(count);
}

void Decoder::feed(std::span<const std::byte> bytes) {
  while (!bytes.empty()) {
    std::span<std::byte> space = writable(bytes.size());
    const std::size_t count = std::min(space.size(), bytes.size());
    std::memcpy(space.data(), bytes.data(), count);
    commit(count);
    bytes = bytes.subspan(count);
  }
}

void Decoder::feed(std::string_view bytes) {
  feed(std::as_bytes(std::span(bytes)));
}

DecodeStatus Decoder::poll(Message& message, ProtocolError& error) {
  return state_->poll(message, error);
}

Framing Decoder::framing() const noexcept {
  return state_->framing;
}

bool Decoder::failed() const noexcept {
  return state_->failed;
}

std::size_t Decoder::buffered_bytes() const noexcept {
  return state_->buffered();
}

std::size_t Decoder::buffer_capacity() const noexcept {
  return state_->capacity;
}

}  // namespace v2::wire
