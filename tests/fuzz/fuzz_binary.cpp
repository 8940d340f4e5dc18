// libFuzzer target: bytes read as a stream of binary frames, cut at points the input chooses
// (length fields up to 0xFFFFFFFF included). Every message decoded is written again as a frame
// and must read back field for field; every protocol error must give a readable reply.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_support.hpp"

namespace v2::wire::fuzz {
namespace {

void check_binary_round_trip(const Message& m, std::size_t max) {
  check_message_invariants(m, Framing::binary);

  BinaryEncodeOptions options;
  options.max_message_size = max;
  std::string encoded;
  const EncodeResult result = encode_binary(m, encoded, options);
  if (!result.ok()) {
    // An error text written as {"error":"..."} may outgrow the limit (U+2028 becomes \u2028);
    // nothing else the decoder accepted may be refused.
    require(m.type == MessageType::error && result.error == EncodeError::payload_too_large,
            "decoded frame cannot be encoded again", result.text);
    return;
  }

  BinaryFrame frame;
  require(encode_binary_frame(m, frame, options).ok(), "encode_binary_frame refused");
  const std::string_view header(reinterpret_cast<const char*>(frame.header.data()),
                                frame.header.size());
  require(encoded.substr(0, kBinaryHeaderSize) == header &&
              std::string_view(encoded).substr(kBinaryHeaderSize) == frame.payload.view(),
          "encode_binary and encode_binary_frame disagree");

  require_decodes_to(encoded, Framing::binary, m, "binary round trip changed a field");
}

}  // namespace
}  // namespace v2::wire::fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace v2::wire;
  const fuzz::Setup setup = fuzz::make_setup(data, size, Framing::binary);
  Decoder decoder(setup.config);
  fuzz::feed_in_pieces(
      decoder, setup,
      [&](const v2::Message& m) {
        fuzz::check_binary_round_trip(m, setup.config.max_message_size);
      },
      [](const ProtocolError& e) { fuzz::check_error_reply(e, Framing::binary); });
  return 0;
}
