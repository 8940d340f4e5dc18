"""The two v2broker framings (docs/PROTOCOL.md), for the soak test's clients.

Standard library only. A Codec encodes outgoing messages and splits incoming bytes into
messages; both framings yield the same dict:
  {"type", "id", "source", "target", "correlation_id", "payload" (bytes), "error"}
where "payload" holds the payload's raw JSON bytes (b"" when there is none).
"""

import json
import struct

NDJSON = "ndjson"
BINARY = "binary"

TYPES = ("request", "response", "event", "error")
TYPE_CODE = {name: code for code, name in enumerate(TYPES)}

# magic, version, encoding, type, 3 reserved, payload length (big-endian), id, source, target,
# correlation id: 128 bytes.
HEADER = struct.Struct(">2sBBB3xI32s32s32s20s")
assert HEADER.size == 128, "the binary header is 128 bytes"
MAGIC = b"V2"
VERSION = 1
ENCODING_JSON = 0


class ProtocolViolation(Exception):
    """The broker sent something the framing does not allow."""


def _field(raw):
    return raw.rstrip(b"\0").decode("utf-8", "replace")


class Codec:
    """Encoder and incremental decoder for one connection's framing."""

    def __init__(self, framing):
        if framing not in (NDJSON, BINARY):
            raise ValueError(f"framing={framing}: expected {NDJSON} or {BINARY}")
        self.framing = framing
        self._buf = bytearray()
        self._scan = 0  # NDJSON: bytes already searched for a newline

    # ---- encoding ----

    def encode(self, mtype, mid, target, payload=b"", correlation_id=""):
        """The bytes of one message; `payload` is raw JSON (b"" for none)."""
        if self.framing == BINARY:
            header = HEADER.pack(
                MAGIC,
                VERSION,
                ENCODING_JSON,
                TYPE_CODE[mtype],
                len(payload),
                mid.encode(),
                b"",
                target.encode(),
                correlation_id.encode(),
            )
            return [header, payload] if payload else [header]
        head = {"type": mtype, "id": mid, "target": target}
        if correlation_id:
            head["correlation_id"] = correlation_id
        text = json.dumps(head, separators=(",", ":"))
        if not payload:
            return [text.encode() + b"\n"]
        return [text[:-1].encode() + b',"payload":', payload, b"}\n"]

    # ---- decoding ----

    def feed(self, data):
        self._buf += data

    def buffered(self):
        return len(self._buf)

    def messages(self):
        """Every complete message buffered so far, in order."""
        out = []
        if self.framing == BINARY:
            while len(self._buf) >= HEADER.size:
                magic, version, encoding, mtype, length, mid, source, target, corr = (
                    HEADER.unpack_from(self._buf)
                )
                if magic != MAGIC or version != VERSION:
                    raise ProtocolViolation(f"binary header magic={magic!r} version={version}")
                if mtype >= len(TYPES):
                    raise ProtocolViolation(f"binary header type={mtype}")
                end = HEADER.size + length
                if len(self._buf) < end:
                    break
                payload = bytes(self._buf[HEADER.size : end])
                del self._buf[:end]
                message = {
                    "type": TYPES[mtype],
                    "id": _field(mid),
                    "source": _field(source),
                    "target": _field(target),
                    "correlation_id": _field(corr),
                    "payload": payload,
                    "error": "",
                    "encoding": encoding,
                }
                if message["type"] == "error":
                    message["error"] = _binary_error_text(payload, encoding)
                out.append(message)
            return out
        while True:
            newline = self._buf.find(b"\n", self._scan)
            if newline < 0:
                self._scan = len(self._buf)
                return out
            line = bytes(self._buf[:newline])
            del self._buf[: newline + 1]
            self._scan = 0
            try:
                obj = json.loads(line)
            except ValueError as error:
                raise ProtocolViolation(f"NDJSON line is not JSON: {error}") from None
            if not isinstance(obj, dict) or "type" not in obj or "id" not in obj:
                raise ProtocolViolation(f"NDJSON line without type or id: {line[:200]!r}")
            payload = obj.get("payload")
            out.append(
                {
                    "type": obj["type"],
                    "id": obj["id"],
                    "source": obj.get("source", ""),
                    "target": obj.get("target", ""),
                    "correlation_id": obj.get("correlation_id", ""),
                    "payload": b"" if payload is None else _reencode(payload),
                    "error": obj.get("error", ""),
                    "encoding": ENCODING_JSON,
                }
            )


def _reencode(value):
    # The soak payloads are JSON strings of plain ASCII letters and digits, which compact JSON
    # writes back byte for byte; other values (broker replies) only need to parse again.
    if isinstance(value, str):
        return b'"' + value.encode() + b'"'
    return json.dumps(value, separators=(",", ":")).encode()


def _binary_error_text(payload, encoding):
    if encoding == ENCODING_JSON:
        try:
            return str(json.loads(payload).get("error", ""))
        except (ValueError, AttributeError):
            return payload.decode("utf-8", "replace")
    return payload.decode("utf-8", "replace")
