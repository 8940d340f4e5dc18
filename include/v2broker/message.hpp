#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "v2broker/payload.hpp"

namespace v2 {

/// What a message is; the numeric values are the binary framing's `type` byte.
enum class MessageType : std::uint8_t { request = 0, response = 1, event = 2, error = 3 };

inline constexpr std::size_t kMessageTypeCount = 4;

/// How the payload bytes are encoded; the numeric values are the binary framing's encoding byte.
enum class PayloadEncoding : std::uint8_t { json = 0, gob = 1, plain = 2 };

[[nodiscard]] std::string_view to_string(MessageType type) noexcept;
[[nodiscard]] std::optional<MessageType> parse_message_type(std::string_view name) noexcept;
[[nodiscard]] std::string_view to_string(PayloadEncoding encoding) noexcept;

/// The name that addresses the broker itself.
inline constexpr std::string_view kBrokerName = "broker";

/// One message, with the fields of the wire protocol.
///
/// Moving a Message never allocates. The payload is shared, never copied, when a Message is
/// copied or routed. Short names (up to 15 bytes) live inside the strings without allocation.
struct Message {
  MessageType type = MessageType::request;
  PayloadEncoding encoding = PayloadEncoding::json;
  std::string id;              ///< message id; for calls to the broker, the method name
  std::string error;           ///< error text, only when type is error
  std::string source;          ///< sender's registered name, stamped by the broker
  std::string target;          ///< recipient's registered name, or "broker"
  std::string correlation_id;  ///< copied from a request to its response
  Payload payload;             ///< opaque bytes; raw JSON in the JSON framing
  /// Not on the wire and never read by the optimizer: a handle the embedding application keeps
  /// with the message (the broker daemon stores the sending connection's id here).
  std::uint64_t origin = 0;

  [[nodiscard]] bool is_for_broker() const noexcept { return target == kBrokerName; }
};

}  // namespace v2
