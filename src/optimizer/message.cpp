#include "v2broker/message.hpp"

#include <array>

namespace v2 {
namespace {

constexpr std::array<std::string_view, kMessageTypeCount> kTypeNames = {"request", "response",
                                                                        "event", "error"};

}  // namespace

std::string_view to_string(MessageType type) noexcept {
  const auto index = static_cast<std::size_t>(type);
  return index < kTypeNames.size() ? kTypeNames[index] : std::string_view("unknown");
}

std::optional<MessageType> parse_message_type(std::string_view name) noexcept {
  for (std::size_t i = 0; i < kTypeNames.size(); ++i) {
    if (kTypeNames[i] == name) {
      return static_cast<MessageType>(i);
    }
  }
  return std::nullopt;
}

std::string_view to_string(PayloadEncoding encoding) noexcept {
  switch (encoding) {
    case PayloadEncoding::json:
      return "json";
    case PayloadEncoding::gob:
      return "gob";
    case PayloadEncoding::plain:
      return "plain";
  }
  return "unknown";
}

}  // namespace v2
