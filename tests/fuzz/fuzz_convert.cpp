// libFuzzer target: a stream whose first byte selects its framing, as on a broker connection.
// Every message decoded is converted to the other framing the way the broker converts it for a
// receiver, decoded there, and compared with what the conversion promises (PROTOCOL.md); the
// result is converted back and compared again. A refused conversion must have its reason.

#include <simdjson.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "fuzz_support.hpp"

namespace v2::wire::fuzz {
namespace {

/// An independent opinion on whether `text` is one valid JSON value.
bool is_valid_json(std::string_view text) {
  static simdjson::dom::parser parser;
  const simdjson::padded_string padded(text);
  return parser.parse(padded).error() == simdjson::SUCCESS;
}

/// The string a JSON string literal stands for, or nothing if `literal` is not one.
std::optional<std::string> json_string_value(std::string_view literal) {
  static simdjson::dom::parser parser;
  const simdjson::padded_string padded(literal);
  std::string_view value;
  if (parser.parse(padded).get_string().get(value) != simdjson::SUCCESS) {
    return std::nullopt;
  }
  return std::string(value);
}

bool has_nul(std::string_view name) {
  return name.find('\0') != std::string_view::npos;
}

/// Why the binary encoder may refuse `m`, checked against what it said.
void require_binary_refusal_justified(const Message& m, const EncodeResult& result,
                                      std::size_t max) {
  switch (result.error) {
    case EncodeError::field_too_long:
      require(m.id.size() > kBinaryIdSize || m.source.size() > kBinarySourceSize ||
                  m.target.size() > kBinaryTargetSize ||
                  m.correlation_id.size() > kBinaryCorrelationIdSize,
              "binary encoder refused names that fit", result.text);
      return;
    case EncodeError::field_invalid:
      require(has_nul(m.id) || has_nul(m.source) || has_nul(m.target) || has_nul(m.correlation_id),
              "binary encoder refused names without NUL", result.text);
      return;
    case EncodeError::payload_too_large:
      require(m.type == MessageType::error || m.payload.size() > max,
              "binary encoder refused a payload within the limit", result.text);
      return;
    default:
      fail("binary encoder refused for an unexpected reason", result.text);
  }
}

/// Why the NDJSON encoder may refuse `m` (from a binary connection), checked likewise.
void require_ndjson_refusal_justified(const Message& m, const EncodeResult& result) {
  switch (result.error) {
    case EncodeError::payload_gob:
      require(m.encoding == PayloadEncoding::gob && !m.payload.empty(),
              "NDJSON encoder refused a payload that is not GOB", result.text);
      return;
    case EncodeError::payload_invalid:
      if (m.encoding == PayloadEncoding::json) {
        require(!is_valid_json(m.payload.view()), "NDJSON encoder refused valid JSON", result.text);
      } else {
        require(m.encoding == PayloadEncoding::plain, "NDJSON encoder refused a payload as invalid",
                result.text);
      }
      return;
    default:
      fail("NDJSON encoder refused for an unexpected reason", result.text);
  }
}

/// What a message decoded in one framing must look like after conversion to the other.
Message expected_in_binary(const Message& m) {
  Message expected = m;
  if (m.type == MessageType::error) {
    expected.payload = Payload{};  // an error frame carries only its text
  } else {
    expected.error.clear();  // a binary header has no error field
  }
  return expected;
}

std::string json_payload_as_ndjson(std::string_view raw) {
  std::string text(raw);
  std::replace(text.begin(), text.end(), '\n', ' ');
  const auto first = text.find_first_not_of(" \t\n\r");
  if (first == std::string::npos) {
    return {};
  }
  const auto last = text.find_last_not_of(" \t\n\r");
  return text.substr(first, last - first + 1);
}

/// Converts `m`, decoded from `from`, into the other framing as the broker would, decodes the
/// result and checks it. Returns the message as decoded in the other framing, if it converted.
std::optional<Message> convert_and_check(const Message& m, Framing from, std::size_t max) {
  std::string encoded;
  if (from == Framing::ndjson) {
    BinaryEncodeOptions options;
    options.max_message_size = max;
    const EncodeResult result = encode_binary(m, encoded, options);
    if (!result.ok()) {
      require_binary_refusal_justified(m, result, max);
      return std::nullopt;
    }
    const Decoded back = decode_whole(encoded, Framing::binary);
    require(back.errors.empty() && back.messages.size() == 1, "converted frame does not decode",
            back.errors.empty() ? std::string_view{} : back.errors.front().text);
    const std::string_view field = first_difference(back.messages.front(), expected_in_binary(m));
    require(field.empty(), "NDJSON to binary changed a field", field);
    return back.messages.front();
  }

  // The broker validates JSON payloads that come from binary connections.
  const EncodeResult result = encode_ndjson(m, encoded);
  if (!result.ok()) {
    require_ndjson_refusal_justified(m, result);
    return std::nullopt;
  }
  require(m.encoding != PayloadEncoding::gob || m.payload.empty(), "GOB written into a line");
  require(
      m.encoding != PayloadEncoding::json || m.payload.empty() || is_valid_json(m.payload.view()),
      "invalid JSON payload written into a line");
  require(encoded.find('\n') == encoded.size() - 1, "converted line holds a stray newline");
  const Decoded back = decode_whole(encoded, Framing::ndjson);
  require(back.errors.empty() && back.messages.size() == 1, "converted line does not decode",
          back.errors.empty() ? std::string_view{} : back.errors.front().text);
  const Message& got = back.messages.front();

  Message expected = m;
  expected.encoding = PayloadEncoding::json;
  expected.payload = got.payload;  // compared below, by encoding
  require(first_difference(got, expected).empty(), "binary to NDJSON changed a field",
          first_difference(got, expected));
  if (m.payload.empty()) {
    require(got.payload.empty(), "an empty payload appeared in NDJSON");
  } else if (m.encoding == PayloadEncoding::json) {
    require(got.payload.view() == json_payload_as_ndjson(m.payload.view()),
            "JSON payload bytes changed beyond newlines and outer whitespace");
  } else {
    const auto text = json_string_value(got.payload.view());
    require(text && *text == m.payload.view(), "PLAIN payload is not the same JSON string");
  }
  return got;
}

}  // namespace
}  // namespace v2::wire::fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace v2::wire;
  const fuzz::Setup setup = fuzz::make_setup(data, size, Framing::unknown);
  const std::size_t max = setup.config.max_message_size;
  Decoder decoder(setup.config);
  fuzz::feed_in_pieces(
      decoder, setup,
      [&](const v2::Message& m) {
        const Framing from = decoder.framing();
        fuzz::check_message_invariants(m, from);
        const Framing to = from == Framing::ndjson ? Framing::binary : Framing::ndjson;
        if (const auto converted = fuzz::convert_and_check(m, from, max)) {
          (void)fuzz::convert_and_check(*converted, to, fuzz::kRedecodeMaxMessageSize);
        }
      },
      [&](const ProtocolError& e) {
        if (decoder.framing() == Framing::unknown) {
          fuzz::require(e.after == AfterError::close, "unknown framing left the connection open");
        }
        fuzz::check_error_reply(e, decoder.framing());
      });
  return 0;
}
