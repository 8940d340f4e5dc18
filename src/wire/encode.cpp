#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <string_view>

#include "v2broker/wire.hpp"
#include "wire/binary_header.hpp"
#include "wire/json.hpp"

namespace v2::wire {
namespace {

EncodeResult refused(EncodeError error, std::string text) {
  return {error, std::move(text)};
}

EncodeResult field_not_utf8(std::string_view field) {
  std::string text = "field=";
  text += field;
  text += " is not valid UTF-8";
  return refused(EncodeError::field_invalid, std::move(text));
}

/// Appends `,"name":"value"` when value is not empty (or always, for required fields).
bool append_string_field(std::string& out, std::string_view name, std::string_view value,
                         bool always) {
  if (value.empty() && !always) {
    return true;
  }
  if (!detail::is_valid_utf8(value)) {
    return false;
  }
  out.push_back(',');
  out.push_back('"');
  out.append(name);
  out.append("\":");
  detail::append_json_string(out, value);
  return true;
}

/// Appends a JSON payload raw. Newline bytes of a valid JSON text are whitespace (a string may
/// not hold a raw one), so turning them into spaces keeps the meaning and the line intact.
EncodeResult append_json_payload(std::string& out, std::string_view raw, JsonPayloadCheck check) {
  const std::size_t start = out.size();
  out.append(raw);
  if (check == JsonPayloadCheck::validate) {
    out.append(detail::kJsonPadding, ' ');  // simdjson reads up to kJsonPadding bytes past the end
    std::string why = detail::validate_json(std::string_view(out).substr(start, raw.size()));
    out.resize(start + raw.size());
    if (!why.empty()) {
      return refused(EncodeError::payload_invalid, "payload encoding=json " + why);
    }
  }
  if (std::memchr(raw.data(), '\n', raw.size()) != nullptr) {
    std::replace(out.begin() + static_cast<std::ptrdiff_t>(start), out.end(), '\n', ' ');
  }
  return {};
}

EncodeResult encode_ndjson_into(const Message& message, std::string& out,
                                const NdjsonEncodeOptions& options) {
  out.append(R"({"type":")");
  out.append(to_string(message.type));
  out.push_back('"');
  if (!append_string_field(out, "id", message.id, true)) {
    return field_not_utf8("id");
  }

  if (!message.payload.empty()) {
    out.append(",\"payload\":");
    switch (message.encoding) {
      case PayloadEncoding::json:
        if (auto result = append_json_payload(out, message.payload.view(), options.payload_check);
            !result) {
          return result;
        }
        break;
      case PayloadEncoding::plain:
        if (!detail::is_valid_utf8(message.payload.view())) {
          return refused(EncodeError::payload_invalid,
                         "payload encoding=plain is not valid UTF-8, cannot be a JSON string");
        }
        detail::append_json_string(out, message.payload.view());
        break;
      case PayloadEncoding::gob:
        return refused(EncodeError::payload_gob,
                       "payload encoding=gob cannot be converted for a JSON connection");
    }
  }

  if (!append_string_field(out, "error", message.error, false)) {
    return field_not_utf8("error");
  }
  if (!append_string_field(out, "source", message.source, false)) {
    return field_not_utf8("source");
  }
  if (!append_string_field(out, "target", message.target, false)) {
    return field_not_utf8("target");
  }
  if (!append_string_field(out, "correlation_id", message.correlation_id, false)) {
    return field_not_utf8("correlation_id");
  }
  out.append("}\n");
  return {};
}

EncodeResult write_name(std::span<std::byte, kBinaryHeaderSize> header, std::size_t offset,
                        std::size_t size, std::string_view name, std::string_view value) {
  if (value.size() > size) {
    std::string text = "field=";
    text += name;
    text += " length=" + std::to_string(value.size()) + " max=" + std::to_string(size);
    return refused(EncodeError::field_too_long, std::move(text));
  }
  if (value.find('\0') != std::string_view::npos) {
    std::string text = "field=";
    text += name;
    text += " contains a NUL byte, which the binary framing uses as padding";
    return refused(EncodeError::field_invalid, std::move(text));
  }
  std::memcpy(header.data() + offset, value.data(), value.size());
  return {};
}

}  // namespace

EncodeResult encode_ndjson(const Message& message, std::string& out,
                           const NdjsonEncodeOptions& options) {
  const std::size_t start = out.size();
  EncodeResult result = encode_ndjson_into(message, out, options);
  if (!result) {
    out.resize(start);
  }
  return result;
}

EncodeResult encode_binary_frame(const Message& message, BinaryFrame& frame,
                                 const BinaryEncodeOptions& options) {
  std::array<std::byte, kBinaryHeaderSize> header{};

  // Check all names before building anything: refused, never truncated.
  if (auto r = write_name(header, detail::kIdOffset, kBinaryIdSize, "id", message.id); !r) {
    return r;
  }
  if (auto r =
          write_name(header, detail::kSourceOffset, kBinarySourceSize, "source", message.source);
      !r) {
    return r;
  }
  if (auto r =
          write_name(header, detail::kTargetOffset, kBinaryTargetSize, "target", message.target);
      !r) {
    return r;
  }
  if (auto r = write_name(header, detail::kCorrelationIdOffset, kBinaryCorrelationIdSize,
                          "correlation_id", message.correlation_id);
      !r) {
    return r;
  }

  PayloadEncoding encoding = message.encoding;
  Payload payload = message.payload;
  if (message.type == MessageType::error) {
    if (encoding == PayloadEncoding::plain) {
      payload = Payload::copy_of(message.error);
    } else {
      if (!detail::is_valid_utf8(message.error)) {
        return field_not_utf8("error");
      }
      std::string json = "{\"error\":";
      detail::append_json_string(json, message.error);
      json.push_back('}');
      payload = Payload::copy_of(json);
      encoding = PayloadEncoding::json;
    }
  }

  const std::size_t max =
      std::min<std::size_t>(options.max_message_size, std::numeric_limits<std::uint32_t>::max());
  if (payload.size() > max) {
    return refused(
        EncodeError::payload_too_large,
        "payload length=" + std::to_string(payload.size()) + " max=" + std::to_string(max));
  }

  header[detail::kMagicOffset] = kBinaryMagic0;
  header[detail::kMagicOffset + 1] = kBinaryMagic1;
  header[detail::kVersionOffset] = std::byte{kBinaryVersion};
  header[detail::kEncodingOffset] = static_cast<std::byte>(encoding);
  header[detail::kTypeOffset] = static_cast<std::byte>(message.type);
  const auto length = static_cast<std::uint32_t>(payload.size());
  for (std::size_t i = 0; i < 4; ++i) {
    header[detail::kLengthOffset + i] = static_cast<std::byte>(length >> (24U - 8U * i));
  }

  frame.header = header;
  frame.payload = std::move(payload);
  return {};
}

EncodeResult encode_binary(const Message& message, std::string& out,
                           const BinaryEncodeOptions& options) {
  BinaryFrame frame;
  EncodeResult result = encode_binary_frame(message, frame, options);
  if (result) {
    out.reserve(out.size() + kBinaryHeaderSize + frame.payload.size());
    out.append(reinterpret_cast<const char*>(frame.header.data()), frame.header.size());
    out.append(frame.payload.view());
  }
  return result;
}

EncodeResult encode(const Message& message, Framing framing, std::string& out,
                    const NdjsonEncodeOptions& ndjson_options,
                    const BinaryEncodeOptions& binary_options) {
  if (framing == Framing::binary) {
    return encode_binary(message, out, binary_options);
  }
  return encode_ndjson(message, out, ndjson_options);
}

Message make_error_reply(std::string_view id, std::string_view correlation_id,
                         std::string_view target, std::string text) {
  Message reply;
  reply.type = MessageType::error;
  reply.encoding = PayloadEncoding::json;
  reply.id.assign(id);
  reply.correlation_id.assign(correlation_id);
  reply.source.assign(kBrokerName);
  reply.target.assign(target);
  reply.error = std::move(text);
  return reply;
}

Message make_error_reply(const Message& offending, std::string text) {
  return make_error_reply(offending.id, offending.correlation_id, offending.source,
                          std::move(text));
}

Message make_error_reply(const ProtocolError& error, std::string_view sender) {
  // Every message needs an id; input too broken to yield one is answered under a fixed one.
  const std::string_view id = error.id.empty() ? kProtocolErrorId : std::string_view(error.id);
  return make_error_reply(id, error.correlation_id, sender, error.text);
}

}  // namespace v2::wire
