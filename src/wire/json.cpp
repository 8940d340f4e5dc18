#include "wire/json.hpp"

#include <simdjson.h>

#include <array>
#include <cstdint>
#include <new>
#include <string>
#include <string_view>

namespace v2::wire::detail {
namespace {

static_assert(kJsonPadding == simdjson::SIMDJSON_PADDING,
              "kJsonPadding must match the padding simdjson reads past its input");

namespace od = simdjson::ondemand;

/// Documents up to this size (2 MiB, so 1 MiB payloads stay fast) leave the parsers' memory,
/// about 20 bytes per input byte, in place for the next line; a larger one releases it
/// afterwards, so one 50 MiB line does not pin a gigabyte per thread.
constexpr std::size_t kRetainedParserCapacity = std::size_t{2} << 20U;

/// One On Demand parser (field extraction, raw payload bytes) and one DOM parser (full
/// validation: On Demand does not check values it skips) per thread.
struct Parsers {
  od::parser ondemand;
  simdjson::dom::parser dom;
};

Parsers& thread_parsers() {
  thread_local Parsers parsers;
  return parsers;
}

void release_if_large(Parsers& parsers) noexcept {
  if (parsers.ondemand.capacity() > kRetainedParserCapacity) {
    parsers.ondemand = od::parser{};
  }
  if (parsers.dom.capacity() > kRetainedParserCapacity) {
    parsers.dom = simdjson::dom::parser{};
  }
}

std::string json_error_text(simdjson::error_code code) {
  switch (code) {
    case simdjson::UTF8_ERROR:
      return "invalid UTF-8";
    case simdjson::EMPTY:
      return "empty JSON";
    case simdjson::UNESCAPED_CHARS:
      return "invalid JSON: unescaped control character in a string";
    case simdjson::UNCLOSED_STRING:
      return "invalid JSON: unclosed string";
    case simdjson::MEMALLOC:
      throw std::bad_alloc();
    default:
      break;
  }
  std::string text = "invalid JSON: ";
  text += simdjson::error_message(code);
  return text;
}

std::string_view type_name(od::json_type type) noexcept {
  switch (type) {
    case od::json_type::array:
      return "array";
    case od::json_type::object:
      return "object";
    case od::json_type::number:
      return "number";
    case od::json_type::string:
      return "string";
    case od::json_type::boolean:
      return "boolean";
    case od::json_type::null:
      return "null";
  }
  return "unknown";
}

bool is_json_space(char c) noexcept {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

std::string_view trim_json_space(std::string_view text) noexcept {
  while (!text.empty() && is_json_space(text.back())) {
    text.remove_suffix(1);
  }
  return text;
}

/// Where a string field of the line goes; `required` fields may not be null.
enum class Presence : std::uint8_t { optional, required };

/// Reads a string field. null counts as absent for optional fields (clients in other languages
/// send null for "no value").
bool read_string_field(od::value& value, std::string_view name, Presence presence, std::string& out,
                       std::string& why) {
  od::json_type type{};
  if (auto code = value.type().get(type); code != simdjson::SUCCESS) {
    why = json_error_text(code);
    return false;
  }
  if (type == od::json_type::null && presence == Presence::optional) {
    out.clear();
    return true;
  }
  if (type != od::json_type::string) {
    why = "field=";
    why += name;
    why += " expected=string got=";
    why += type_name(type);
    return false;
  }
  std::string_view text;
  if (auto code = value.get_string().get(text); code != simdjson::SUCCESS) {
    why = "field=";
    why += name;
    why += ' ';
    why += json_error_text(code);
    return false;
  }
  out.assign(text);
  return true;
}

/// The exact bytes of a value in the line, without trailing whitespace.
bool read_raw_value(od::value& value, std::string_view& raw, std::string& why) {
  od::json_type type{};
  simdjson::error_code code = value.type().get(type);
  if (code == simdjson::SUCCESS) {
    if (type == od::json_type::object) {
      od::object object;
      code = value.get_object().get(object);
      if (code == simdjson::SUCCESS) {
        code = object.raw_json().get(raw);
      }
    } else if (type == od::json_type::array) {
      od::array array;
      code = value.get_array().get(array);
      if (code == simdjson::SUCCESS) {
        code = array.raw_json().get(raw);
      }
    } else {
      raw = value.raw_json_token();
    }
  }
  if (code != simdjson::SUCCESS) {
    why = "field=payload ";
    why += json_error_text(code);
    return false;
  }
  raw = trim_json_space(raw);
  return true;
}

void reset(Message& message) noexcept {
  message.type = MessageType::request;
  message.encoding = PayloadEncoding::json;
  message.id.clear();
  message.error.clear();
  message.source.clear();
  message.target.clear();
  message.correlation_id.clear();
  message.payload = Payload{};
  message.origin = 0;
}

/// Fills the message from the line's top-level object. Returns an empty string on success.
std::string extract_fields(Parsers& parsers, std::string_view line, Message& message,
                           std::string_view& raw_payload) {
  od::document doc;
  if (auto code =
          parsers.ondemand.iterate(line.data(), line.size(), line.size() + kJsonPadding).get(doc);
      code != simdjson::SUCCESS) {
    return json_error_text(code);
  }

  od::json_type root_type{};
  if (auto code = doc.type().get(root_type); code != simdjson::SUCCESS) {
    return json_error_text(code);
  }
  if (root_type != od::json_type::object) {
    std::string why = "line is not a JSON object: got=";
    why += type_name(root_type);
    return why;
  }
  od::object object;
  if (auto code = doc.get_object().get(object); code != simdjson::SUCCESS) {
    return json_error_text(code);
  }

  bool have_type = false;
  bool have_id = false;
  std::string why;
  std::string type_text;
  for (auto field_result : object) {
    if (auto code = field_result.error(); code != simdjson::SUCCESS) {
      return json_error_text(code);
    }
    od::field field = field_result.value_unsafe();
    std::string_view key;
    if (auto code = field.unescaped_key().get(key); code != simdjson::SUCCESS) {
      return json_error_text(code);
    }
    od::value value = field.value();
    bool ok = true;
    if (key == "type") {
      have_type = true;
      ok = read_string_field(value, key, Presence::required, type_text, why);
    } else if (key == "id") {
      have_id = true;
      ok = read_string_field(value, key, Presence::required, message.id, why);
    } else if (key == "payload") {
      ok = read_raw_value(value, raw_payload, why);
    } else if (key == "error") {
      ok = read_string_field(value, key, Presence::optional, message.error, why);
    } else if (key == "source") {
      ok = read_string_field(value, key, Presence::optional, message.source, why);
    } else if (key == "target") {
      ok = read_string_field(value, key, Presence::optional, message.target, why);
    } else if (key == "correlation_id") {
      ok = read_string_field(value, key, Presence::optional, message.correlation_id, why);
    }
    // Unknown fields are ignored; the DOM pass still validates their values.
    if (!ok) {
      return why;
    }
  }

  // After the object the document must end: `{} x` or `{}}` is not one JSON object.
  if (doc.current_location().error() != simdjson::OUT_OF_BOUNDS) {
    return "invalid JSON: trailing content after the object";
  }

  if (!have_type) {
    return "field=type missing";
  }
  if (auto type = parse_message_type(type_text)) {
    message.type = *type;
  } else {
    why = "field=type value=\"";
    append_excerpt(why, type_text);
    why += "\" expected=request|response|event|error";
    return why;
  }
  if (!have_id) {
    return "field=id missing";
  }
  if (message.id.empty()) {
    return "field=id empty";
  }
  return {};
}

}  // namespace

bool decode_ndjson_line(std::string_view line, Message& message, ProtocolError& error) {
  Parsers& parsers = thread_parsers();
  reset(message);

  std::string_view raw_payload;
  std::string why = extract_fields(parsers, line, message, raw_payload);
  if (why.empty()) {
    // On Demand only checked what it read; the payload is forwarded raw, so check everything.
    why = validate_json(line);
  }
  if (why.empty()) {
    message.payload = Payload::copy_of(raw_payload);
  }
  if (line.size() > kRetainedParserCapacity) {
    release_if_large(parsers);
  }

  if (!why.empty()) {
    error.text = std::move(why);
    error.id = message.id;
    error.correlation_id = message.correlation_id;
    error.after = AfterError::keep_open;
    return false;
  }
  return true;
}

std::string validate_json(std::string_view text) {
  Parsers& parsers = thread_parsers();
  auto code = parsers.dom.parse(text.data(), text.size(), false).error();
  if (text.size() > kRetainedParserCapacity) {
    release_if_large(parsers);
  }
  if (code != simdjson::SUCCESS) {
    return json_error_text(code);
  }
  return {};
}

bool read_error_payload(std::string_view payload, std::string& text, std::string& why) {
  Parsers& parsers = thread_parsers();
  simdjson::padded_string padded(payload);
  simdjson::dom::element root;
  if (auto code = parsers.dom.parse(padded).get(root); code != simdjson::SUCCESS) {
    why = json_error_text(code);
    return false;
  }
  std::string_view error_text;
  if (auto code = root["error"].get_string().get(error_text); code != simdjson::SUCCESS) {
    why = "payload is not {\"error\":string}: ";
    why += simdjson::error_message(code);
    return false;
  }
  text.assign(error_text);
  return true;
}

bool is_valid_utf8(std::string_view text) noexcept {
  return simdjson::validate_utf8(text);
}

namespace {

/// 1 for bytes append_json_string must look at: control characters, '"', '\\', and 0xE2 (the
/// lead byte of U+2028/U+2029).
constexpr std::array<std::uint8_t, 256> kEscapeTable = [] {
  std::array<std::uint8_t, 256> table{};
  for (std::size_t c = 0; c < 0x20; ++c) {
    table[c] = 1;
  }
  table['"'] = 1;
  table['\\'] = 1;
  table[0xE2] = 1;
  return table;
}();

constexpr std::string_view kHexDigits = "0123456789abcdef";

}  // namespace

void append_json_string(std::string& out, std::string_view text) {
  out.push_back('"');
  std::size_t run_start = 0;
  std::size_t i = 0;
  while (i < text.size()) {
    const auto byte = static_cast<unsigned char>(text[i]);
    if (kEscapeTable[byte] == 0) {
      ++i;
      continue;
    }
    if (byte == 0xE2) {
      const bool separator = i + 2 < text.size() &&
                             static_cast<unsigned char>(text[i + 1]) == 0x80 &&
                             (static_cast<unsigned char>(text[i + 2]) == 0xA8 ||
                              static_cast<unsigned char>(text[i + 2]) == 0xA9);
      if (!separator) {
        ++i;
        continue;
      }
      out.append(text.substr(run_start, i - run_start));
      out.append(static_cast<unsigned char>(text[i + 2]) == 0xA8 ? "\\u2028" : "\\u2029");
      i += 3;
      run_start = i;
      continue;
    }

    out.append(text.substr(run_start, i - run_start));
    switch (byte) {
      case '"':
        out.append("\\\"");
        break;
      case '\\':
        out.append("\\\\");
        break;
      case '\n':
        out.append("\\n");
        break;
      case '\r':
        out.append("\\r");
        break;
      case '\t':
        out.append("\\t");
        break;
      case '\b':
        out.append("\\b");
        break;
      case '\f':
        out.append("\\f");
        break;
      default:
        out.append("\\u00");
        out.push_back(kHexDigits[byte >> 4U]);
        out.push_back(kHexDigits[byte & 0x0FU]);
        break;
    }
    ++i;
    run_start = i;
  }
  out.append(text.substr(run_start));
  out.push_back('"');
}

void append_excerpt(std::string& out, std::string_view bytes, std::size_t max) {
  const std::string_view shown = bytes.substr(0, max);
  for (const char c : shown) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte >= 0x20 && byte < 0x7F && c != '"' && c != '\\') {
      out.push_back(c);
    } else {
      out.append("\\x");
      out.push_back(kHexDigits[byte >> 4U]);
      out.push_back(kHexDigits[byte & 0x0FU]);
    }
  }
  if (bytes.size() > max) {
    out.append("...");
  }
}

}  // namespace v2::wire::detail
