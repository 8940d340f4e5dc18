#!/usr/bin/env python3
"""Talk to a v2broker daemon from Python with nothing but the standard library.

Two modes, so two copies of this script can talk to each other through the broker:

  # terminal 1: register as "echo" and answer every request with its own payload
  python3 v2_client_example.py --serve echo

  # terminal 2: register, call the "echo" service, print the reply
  python3 v2_client_example.py --service echo --payload '{"hello": "world"}'

The wire format is newline-delimited JSON: one JSON object per line. Calls to the broker itself
(RPCRegister, RPCListProcesses, ...) are requests with target "broker" and the method as id.

Exit codes: 0 success, 1 error reply (from the broker or the service), 2 broker not running,
3 other I/O errors or timeouts.
"""

import argparse
import itertools
import json
import os
import signal
import socket
import sys

EXIT_OK = 0
EXIT_ERROR_REPLY = 1
EXIT_NO_BROKER = 2
EXIT_IO = 3


def default_socket_path():
    """$XDG_RUNTIME_DIR/v2broker.sock if XDG_RUNTIME_DIR is set, else /tmp/v2broker-<uid>.sock."""
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR")
    if runtime_dir:
        return os.path.join(runtime_dir, "v2broker.sock")
    return f"/tmp/v2broker-{os.getuid()}.sock"


class ErrorReply(Exception):
    """The broker or the called service answered with a message of type "error"."""

    def __init__(self, message):
        super().__init__(message.get("error") or "error reply without text")
        self.message = message


class BrokerConnection:
    """One NDJSON connection to the broker. Messages that arrive while waiting for a reply are
    kept and returned by later receive() calls."""

    _ids = itertools.count(1)

    def __init__(self, path, timeout):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.reader = self.sock.makefile("rb")
        self.kept = []

    def close(self):
        self.reader.close()
        self.sock.close()

    def send(self, message):
        # Compact separators and ensure_ascii keep the line free of raw newlines.
        line = json.dumps(message, separators=(",", ":")) + "\n"
        self.sock.sendall(line.encode("utf-8"))

    def _read_line(self):
        line = self.reader.readline()
        if not line:
            raise ConnectionError(f"the broker closed the connection (socket={self.path})")
        return json.loads(line)

    def receive(self):
        """The next message: a kept one first, else one read from the socket (blocks up to the
        socket timeout)."""
        if self.kept:
            return self.kept.pop(0)
        return self._read_line()

    def request(self, target, method, payload=None):
        """Sends a request and returns the message with the same correlation_id; anything else
        that arrives meanwhile is kept for receive()."""
        correlation_id = f"py-{os.getpid():x}-{next(self._ids):x}"
        message = {"type": "request", "id": method, "target": target,
                   "correlation_id": correlation_id}
        if payload is not None:
            message["payload"] = payload
        self.send(message)
        while True:
            reply = self._read_line()
            if reply.get("correlation_id") == correlation_id:
                if reply.get("type") == "error":
                    raise ErrorReply(reply)
                return reply
            self.kept.append(reply)

    def register(self, name):
        return self.request("broker", "RPCRegister", {"name": name})


def serve(connection, name):
    """Answers every request with a response carrying the same id, correlation_id and payload."""
    connection.register(name)
    connection.sock.settimeout(None)  # a service waits for requests as long as it runs
    print(f"serving as {name!r} on {connection.path}; Ctrl-C to stop", file=sys.stderr,
          flush=True)
    while True:
        try:
            message = connection.receive()
        except (ValueError, RecursionError) as error:
            # A peer may send JSON nested deeper than Python's decoder goes; keep serving.
            print(f"skipped a message that cannot be decoded: {error}", file=sys.stderr,
                  flush=True)
            continue
        if message.get("type") != "request":
            print(f"ignored {message.get('type')} id={message.get('id')!r} from "
                  f"{message.get('source')!r}", file=sys.stderr, flush=True)
            continue
        reply = {"type": "response", "id": message.get("id", ""),
                 "target": message.get("source", "")}
        if "correlation_id" in message:
            reply["correlation_id"] = message["correlation_id"]
        if "payload" in message:
            reply["payload"] = message["payload"]
        connection.send(reply)
        print(json.dumps(message), flush=True)


def call(connection, name, service, method, payload):
    connection.register(name)
    reply = connection.request(service, method, payload)
    print(json.dumps(reply.get("payload"), indent=2))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--socket", default=default_socket_path(),
                        help="broker socket (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=5.0,
                        help="seconds to wait for the broker and for replies (default: 5)")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--serve", metavar="NAME", help="register NAME and echo every request")
    mode.add_argument("--service", metavar="NAME", help="call the service registered as NAME")
    parser.add_argument("--name", default=f"py-example-{os.getpid()}",
                        help="name to register when calling (default: %(default)s)")
    parser.add_argument("--method", default="echo", help="request id sent to the service")
    parser.add_argument("--payload", default='{"hello": "from python"}',
                        help="JSON payload of the request")
    args = parser.parse_args()

    try:
        payload = json.loads(args.payload)
    except json.JSONDecodeError as error:
        parser.error(f"--payload is not valid JSON: {error}")

    try:
        connection = BrokerConnection(args.socket, args.timeout)
    except (FileNotFoundError, ConnectionRefusedError) as error:
        print(f"error: no broker running at {args.socket} (start it with v2broker): {error}",
              file=sys.stderr)
        return EXIT_NO_BROKER
    except OSError as error:
        print(f"error: cannot connect to {args.socket}: {error}", file=sys.stderr)
        return EXIT_IO

    try:
        if args.serve:
            serve(connection, args.serve)
        else:
            call(connection, args.name, args.service, args.method, payload)
        return EXIT_OK
    except ErrorReply as error:
        print(f"error reply from {error.message.get('source', '?')}: {error}", file=sys.stderr)
        return EXIT_ERROR_REPLY
    except socket.timeout:
        print(f"error: no reply within {args.timeout} s (socket={args.socket})", file=sys.stderr)
        return EXIT_IO
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_IO
    except KeyboardInterrupt:
        return EXIT_OK
    finally:
        connection.close()


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop --serve cleanly
    sys.exit(main())
