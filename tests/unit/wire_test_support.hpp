#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "v2broker/message.hpp"
#include "v2broker/wire.hpp"

namespace v2::wire::testing {

struct Decoded {
  std::vector<Message> messages;
  std::vector<ProtocolError> errors;
};

/// The first error's text, or nothing: for assertion messages.
inline std::string first_error_text(const Decoded& out) {
  return out.errors.empty() ? std::string() : out.errors.front().text;
}

/// Polls until need_more, collecting messages and errors in order.
inline void drain(Decoder& decoder, Decoded& out) {
  while (true) {
    Message message;
    ProtocolError error;
    const DecodeStatus status = decoder.poll(message, error);
    if (status == DecodeStatus::need_more) {
      return;
    }
    if (status == DecodeStatus::message) {
      out.messages.push_back(std::move(message));
    } else {
      out.errors.push_back(std::move(error));
    }
  }
}

inline Decoded decode_all(std::string_view input, DecoderConfig config = {}) {
  Decoder decoder(config);
  decoder.feed(input);
  Decoded out;
  drain(decoder, out);
  return out;
}

}  // namespace v2::wire::testing
