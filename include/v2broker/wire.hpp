#pragma once

// The wire codec: the NDJSON and binary framings of PROTOCOL.md.
//
// Pure code: no I/O, no threads, no logging. Every function reports bad input through a return
// value and throws only std::bad_alloc. A Decoder belongs to one connection and one thread at a
// time; the free functions may be called from any thread (the JSON parsers they use are
// per-thread).

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "v2broker/message.hpp"
#include "v2broker/payload.hpp"

namespace v2::wire {

/// Largest message accepted by default: an NDJSON line (without its '\n') or a binary payload.
inline constexpr std::size_t kDefaultMaxMessageSize = std::size_t{50} << 20U;

/// Binary framing layout (PROTOCOL.md, "Framing 2").
inline constexpr std::size_t kBinaryHeaderSize = 128;
inline constexpr std::byte kBinaryMagic0{0x56};  ///< 'V', also the byte that selects this framing
inline constexpr std::byte kBinaryMagic1{0x32};  ///< '2'
inline constexpr std::uint8_t kBinaryVersion = 1;
inline constexpr std::size_t kBinaryIdSize = 32;
inline constexpr std::size_t kBinarySourceSize = 32;
inline constexpr std::size_t kBinaryTargetSize = 32;
inline constexpr std::size_t kBinaryCorrelationIdSize = 20;

/// How a connection frames its messages; fixed by its first byte for the connection's life.
enum class Framing : std::uint8_t { unknown, ndjson, binary };

[[nodiscard]] std::string_view to_string(Framing framing) noexcept;

/// Which framing a connection's first byte selects: '{' or JSON whitespace (space, tab, CR, LF)
/// selects NDJSON, 0x56 selects binary, anything else returns Framing::unknown.
[[nodiscard]] Framing detect_framing(std::byte first) noexcept;

/// What the connection can do after a protocol error.
enum class AfterError : std::uint8_t {
  keep_open,  ///< framing is intact; the next message decodes normally
  close,      ///< framing is lost (or the peer is hostile); the decoder accepts nothing more
};

/// A message the decoder refused. `id` and `correlation_id` are filled when they could be read,
/// so the error reply can be matched by the sender (see make_error_reply).
struct ProtocolError {
  std::string text;  ///< what was wrong, with key=value context
  std::string id;
  std::string correlation_id;
  AfterError after = AfterError::keep_open;
};

struct DecoderConfig {
  /// Largest NDJSON line (without '\n') or binary payload; larger ones are refused without
  /// being buffered whole. Must be at least 1.
  std::size_t max_message_size = kDefaultMaxMessageSize;

  /// Binary payloads of at least this many bytes are read straight into their final Payload
  /// buffer (PayloadBuilder) instead of through the decoder's buffer.
  std::size_t direct_payload_threshold = std::size_t{64} << 10U;

  /// Capacity the read buffer starts with and shrinks back to once a large message is done.
  std::size_t initial_buffer_size = std::size_t{16} << 10U;

  /// Framing::unknown detects it from the first byte; a client that knows what it speaks sets it.
  Framing framing = Framing::unknown;
};

/// What Decoder::poll produced.
enum class DecodeStatus : std::uint8_t {
  message,    ///< a message was written to the Message argument
  error,      ///< a protocol error was written to the ProtocolError argument
  need_more,  ///< nothing complete is buffered; read more (or close, if failed())
};

/// Streaming decoder for one connection, fed straight from read(2) without intermediate copies.
///
/// Typical loop of an epoll daemon, on readability:
///
///     auto span = decoder.writable(64 * 1024);
///     ssize_t n = ::read(fd, span.data(), span.size());
///     decoder.commit(n);                      // after n > 0
///     while (true) {
///       auto status = decoder.poll(message, error);
///       if (status == DecodeStatus::need_more) break;
///       ... route message, or reply to / close on error ...
///     }
///
/// poll() must be drained to need_more after each commit(); that is what keeps the buffer
/// bounded by the message size limit. A large binary payload is read directly into its final
/// buffer: writable() then returns exactly the payload bytes still missing.
///
/// Not thread-safe: one connection, one thread at a time.
class Decoder {
 public:
  explicit Decoder(const DecoderConfig& config = {});
  Decoder(const Decoder&) = delete;
  Decoder& operator=(const Decoder&) = delete;
  Decoder(Decoder&& other) noexcept;
  Decoder& operator=(Decoder&& other) noexcept;
  ~Decoder();

  /// Space to read into: at least one byte, and at least `min_size` bytes unless a large binary
  /// payload is being filled in place, in which case the span is exactly the bytes that payload
  /// still needs. Valid until the next call of any other member. Throws std::bad_alloc.
  [[nodiscard]] std::span<std::byte> writable(std::size_t min_size);

  /// Declares that the first `count` bytes of the last writable() span now hold data.
  /// `count` must not exceed that span's size.
  void commit(std::size_t count) noexcept;

  /// Copies `bytes` in and commits them: for clients, tests and fuzzers. Throws std::bad_alloc.
  void feed(std::span<const std::byte> bytes);
  void feed(std::string_view bytes);

  /// Decodes the next buffered message. Returns message (into `message`, fully overwritten),
  /// error (into `error`) or need_more. After an error with AfterError::close the decoder is
  /// failed: it discards all further input and poll() returns need_more. Never blocks; throws
  /// only std::bad_alloc.
  [[nodiscard]] DecodeStatus poll(Message& message, ProtocolError& error);

  /// The framing in use; unknown until the first byte arrived (and forever, if it was invalid).
  [[nodiscard]] Framing framing() const noexcept;

  /// True after an error with AfterError::close.
  [[nodiscard]] bool failed() const noexcept;

  /// Bytes held in the read buffer and not yet decoded (excludes a payload filled in place).
  [[nodiscard]] std::size_t buffered_bytes() const noexcept;

  /// Current size of the read buffer's allocation, for tests of the memory bound.
  [[nodiscard]] std::size_t buffer_capacity() const noexcept;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

/// Why an encoder refused a message.
enum class EncodeError : std::uint8_t {
  none,
  field_too_long,     ///< a name does not fit its binary header field
  field_invalid,      ///< a name holds a NUL byte (binary) or invalid UTF-8 (NDJSON)
  payload_too_large,  ///< payload longer than the limit or than a u32 length
  payload_invalid,    ///< JSON payload that is not valid JSON, or PLAIN that is not UTF-8
  payload_gob,        ///< a GOB payload cannot be written to a JSON connection
};

/// Result of an encoder; `text` says which field and why, as key=value context.
struct [[nodiscard]] EncodeResult {
  EncodeError error = EncodeError::none;
  std::string text;

  [[nodiscard]] bool ok() const noexcept { return error == EncodeError::none; }
  explicit operator bool() const noexcept { return ok(); }
};

/// Whether a JSON-encoded payload must be checked before it is written raw into an NDJSON line.
enum class JsonPayloadCheck : std::uint8_t {
  /// Validate it: needed for payloads from binary connections, which are never parsed.
  validate,
  /// Trust it: the payload came from an NDJSON decoder, which validated it already.
  trust,
};

struct NdjsonEncodeOptions {
  JsonPayloadCheck payload_check = JsonPayloadCheck::validate;
};

/// Appends `message` as one NDJSON line ('\n'-terminated) to `out`.
///
/// Fields in the order type, id, payload, error, source, target, correlation_id; type and id
/// always, the others only when not empty. Strings are escaped per JSON, including control
/// characters and U+2028/U+2029. A JSON payload is written raw (any newline byte in its
/// whitespace becomes a space, which keeps its meaning); PLAIN is written as a JSON string and
/// must be valid UTF-8; GOB is refused. On failure `out` is left unchanged. Throws only
/// std::bad_alloc.
EncodeResult encode_ndjson(const Message& message, std::string& out,
                           const NdjsonEncodeOptions& options = {});

struct BinaryEncodeOptions {
  /// Largest payload written; a larger one is refused (the receiver would refuse it too).
  std::size_t max_message_size = kDefaultMaxMessageSize;
};

/// A binary frame ready for writev(2): the header, then the payload bytes.
struct BinaryFrame {
  std::array<std::byte, kBinaryHeaderSize> header{};
  Payload payload;  ///< shares the message's payload; a new one for error messages
};

/// Builds the binary frame of `message`. Names longer than their field are refused, never
/// truncated. An error message's payload is {"error":"text"} (JSON encoding) or the bare text
/// (PLAIN encoding); its own payload, if any, is not carried. Throws only std::bad_alloc.
EncodeResult encode_binary_frame(const Message& message, BinaryFrame& frame,
                                 const BinaryEncodeOptions& options = {});

/// Appends the binary frame of `message` (header and payload) to `out`; see
/// encode_binary_frame. On failure `out` is left unchanged. Throws only std::bad_alloc.
EncodeResult encode_binary(const Message& message, std::string& out,
                           const BinaryEncodeOptions& options = {});

/// Encodes in `framing` (ndjson or binary); Framing::unknown is encoded as NDJSON, which is
/// how the broker answers a connection whose first byte selected no framing.
EncodeResult encode(const Message& message, Framing framing, std::string& out,
                    const NdjsonEncodeOptions& ndjson_options = {},
                    const BinaryEncodeOptions& binary_options = {});

/// The broker's error reply: type error, the given id and correlation id, source "broker",
/// target `target`, error `text`, no payload. Throws only std::bad_alloc.
[[nodiscard]] Message make_error_reply(std::string_view id, std::string_view correlation_id,
                                       std::string_view target, std::string text);

/// Error reply to `offending`, addressed to its source (the sender's registered name).
[[nodiscard]] Message make_error_reply(const Message& offending, std::string text);

/// The id of an error reply to input whose own id could not be read.
inline constexpr std::string_view kProtocolErrorId = "protocol_error";

/// Error reply to a message the decoder refused, addressed to `sender` (its registered name,
/// or empty if it has none); its id is the refused message's, or kProtocolErrorId.
[[nodiscard]] Message make_error_reply(const ProtocolError& error, std::string_view sender);

}  // namespace v2::wire
