// libFuzzer target: bytes read as an NDJSON stream, cut at points the input chooses. Every
// message decoded is written again as NDJSON (with and without payload validation, which must
// agree) and must read back field for field; every protocol error must give a readable reply.

#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_support.hpp"

namespace v2::wire::fuzz {
namespace {

void check_ndjson_round_trip(const Message& m) {
  check_message_invariants(m, Framing::ndjson);

  std::string validated;
  const EncodeResult result = encode_ndjson(m, validated);
  require(result.ok(), "decoded NDJSON message cannot be encoded again", result.text);
  require(validated.find('\n') == validated.size() - 1, "encoded line holds a stray newline");

  // The broker trusts payloads that came through this decoder; trusting must change nothing.
  NdjsonEncodeOptions trust;
  trust.payload_check = JsonPayloadCheck::trust;
  std::string trusted;
  require(encode_ndjson(m, trusted, trust).ok(), "trusted encoding failed");
  require(trusted == validated, "trusted and validated encodings differ");

  require_decodes_to(validated, Framing::ndjson, m, "NDJSON round trip changed a field");
}

}  // namespace
}  // namespace v2::wire::fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace v2::wire;
  const fuzz::Setup setup = fuzz::make_setup(data, size, Framing::ndjson);
  Decoder decoder(setup.config);
  fuzz::feed_in_pieces(
      decoder, setup, [](const v2::Message& m) { fuzz::check_ndjson_round_trip(m); },
      [](const ProtocolError& e) {
        fuzz::require(e.after == AfterError::keep_open, "NDJSON error closed the connection",
                      e.text);
        fuzz::check_error_reply(e, Framing::ndjson);
      });
  return 0;
}
