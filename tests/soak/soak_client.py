"""One soak-test client: a process with its own Unix socket connection to the broker.

Every message a client originates carries, in its id, the kind of message, a sequence number
per (sender, receiver) pair, the CRC-32 of its payload and its target:

    <kind><seq>.<crc32 hex>.<target>      e.g. "q42.1c291ca3.L07"

so the receiver checks order, duplicates and integrity, and a broker error reply (which copies
the id) tells the sender exactly which message was refused. Kinds: e event, q request,
r response, F fin (request: "I send you nothing more"), A fin acknowledgement (response).

A client ends each exchange with a peer by a fin/ack handshake. Messages of one pair arrive in
order, and an error reply for a message is queued to its sender before anything routed after
it, so once a client has every ack, every message it sent before its fin has either arrived or
been refused; a final broker call (RPCListProcesses, which also reads the client's
dropped_slow counter) flushes the error replies still on their way to it.

The coordinator (scripts/soak) talks to a client over a pipe: commands "start", "stop",
"settle", "close"; the client answers "ready", "done" and finally ("report", dict) or
("fail", text).
"""

import collections
import ctypes
import json
import os
import random
import selectors
import signal
import socket
import time
import zlib

from soak_wire import BINARY, NDJSON, Codec, ProtocolViolation

KIND_TYPE = {"e": "event", "q": "request", "r": "response", "F": "request", "A": "response"}
ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
MAX_BIG = 4 * 1024 * 1024
FILLER = (ALPHABET * (MAX_BIG // len(ALPHABET) + 2))[: MAX_BIG + len(ALPHABET)]
# Bytes queued in the client before it stops making new messages (back-pressure from the
# broker reaches the generator through this).
OUT_HIGH_WATER = 512 * 1024
PR_SET_PDEATHSIG = 1


def die_with_parent():
    """Ask the kernel to kill this process when its parent dies, so nothing outlives the soak."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def payload_for(size, seq):
    """The payload of a message: a JSON string of `size` bytes (0: no payload)."""
    if size == 0:
        return b""
    offset = seq % len(ALPHABET)
    return b'"' + FILLER[offset : offset + size - 2] + b'"'


def make_id(kind, seq, crc, target):
    return f"{kind}{seq}.{crc:08x}.{target}"


def parse_id(mid):
    """(kind, seq, crc, target) of a soak message id, or None for anything else."""
    if not mid or mid[0] not in KIND_TYPE:
        return None
    parts = mid[1:].split(".", 2)
    if len(parts) != 3:
        return None
    try:
        return mid[0], int(parts[0]), int(parts[1], 16), parts[2]
    except ValueError:
        return None


def error_category(text):
    if text.startswith("refused by the broker queue"):
        return "queue_refused"
    if text.startswith("dropped: receiver"):
        return "slow_receiver"
    if text.startswith("dropped: the broker queue was full"):
        return "evicted"
    if text.startswith("target disconnected") or text.startswith("unknown target"):
        return "target_gone"
    return "other"


class SizeMix:
    """Payload sizes: 0 B, small, 1 KiB, 64 KiB, and rarely 1 to 4 MiB."""

    def __init__(self, rng, big_fraction):
        self.rng = rng
        self.big_fraction = big_fraction

    def next(self):
        r = self.rng.random()
        if r < self.big_fraction:
            return self.rng.randint(1 << 20, MAX_BIG)
        r = self.rng.random()
        if r < 0.15:
            return 0
        if r < 0.55:
            return self.rng.randint(2, 256)
        if r < 0.85:
            return 1024
        return 64 * 1024


class PeerIn:
    """What arrived from one sender."""

    __slots__ = ("count", "last", "gaps", "disorder", "corrupt", "bytes")

    def __init__(self):
        self.count = 0
        self.last = 0
        self.gaps = []
        self.disorder = 0
        self.corrupt = 0
        self.bytes = 0


class Client:
    def __init__(self, cfg, pipe):
        self.cfg = cfg
        self.name = cfg["name"]
        self.pipe = pipe
        self.rng = random.Random(cfg["seed"])
        self.sizes = SizeMix(self.rng, cfg.get("big_fraction", 0.002))
        self.codec = Codec(cfg["framing"])
        self.sock = None
        self.out = collections.deque()
        self.out_bytes = 0
        self.seq_out = collections.Counter()
        self.sent_bytes = 0
        self.errors = collections.defaultdict(set)  # target -> refused seqs
        self.error_kinds = collections.Counter()
        self.error_samples = []
        self.inbound = collections.defaultdict(PeerIn)
        self.outstanding = set()  # (target, correlation id) of requests awaiting a response
        self.types_in = collections.Counter()
        self.problems = []
        self.rpc_refused = 0
        self.rpc_waiting = None  # method of the broker call in flight
        self.rpc_result = None
        self.fin_to = set()  # peers we sent a fin to and await an ack from
        self.acked = set()
        self.fins_from = set()
        self.registered = False
        self.pause_until = 0.0
        self.next_pause = time.monotonic() + self.rng.uniform(1.0, 4.0)

    # ---- socket ----

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.cfg["timeout"])
        self.sock.connect(self.cfg["socket"])
        self.sock.setblocking(False)

    def queue(self, pieces):
        for piece in pieces:
            self.out.append(memoryview(piece))
            self.out_bytes += len(piece)

    def flush(self):
        while self.out:
            batch = list(self.out)[:64] if len(self.out) > 1 else [self.out[0]]
            try:
                written = self.sock.sendmsg(batch)
            except (BlockingIOError, InterruptedError):
                return
            self.out_bytes -= written
            while written > 0:
                head = self.out[0]
                if len(head) <= written:
                    written -= len(head)
                    self.out.popleft()
                else:
                    self.out[0] = head[written:]
                    written = 0

    def receive(self):
        """Reads what the socket holds; False when the broker closed the connection."""
        for _ in range(64):
            try:
                data = self.sock.recv(1 << 20)
            except (BlockingIOError, InterruptedError):
                break
            if not data:
                return False
            self.codec.feed(data)
        for message in self.codec.messages():
            self.handle(message)
        return True

    # ---- sending ----

    def send(self, kind, target, size, correlation_id=None):
        self.seq_out[target] += 1
        seq = self.seq_out[target]
        payload = payload_for(size, seq)
        crc = zlib.crc32(payload)
        if correlation_id is None:
            correlation_id = str(seq) if kind in "qF" else ""
        if kind in "qF":
            self.outstanding.add((target, correlation_id))
        self.sent_bytes += len(payload)
        self.queue(
            self.codec.encode(
                KIND_TYPE[kind], make_id(kind, seq, crc, target), target, payload, correlation_id
            )
        )

    def call_broker(self, method, payload=b"{}"):
        self.rpc_waiting = method
        self.rpc_result = None
        self.queue(self.codec.encode("request", method, "broker", payload))

    # ---- receiving ----

    def handle(self, message):
        self.types_in[message["type"]] += 1
        if message["source"] == "broker" or message["type"] == "error":
            self.handle_broker(message)
            return
        parsed = parse_id(message["id"])
        source = message["source"]
        if parsed is None:
            self.problem(f"unexpected message id={message['id']!r} from {source}")
            return
        kind, seq, crc, target = parsed
        peer = self.inbound[source]
        peer.bytes += len(message["payload"])
        if seq == peer.last + 1:
            peer.last = seq
        elif seq > peer.last + 1:
            peer.gaps.extend(range(peer.last + 1, seq))
            peer.last = seq
        else:
            peer.disorder += 1
            self.problem(f"from {source}: seq={seq} after seq={peer.last} (duplicate or reorder)")
            return
        peer.count += 1
        payload = message["payload"]
        if (
            target != self.name
            or message["type"] != KIND_TYPE[kind]
            or zlib.crc32(payload) != crc
            or payload != payload_for(len(payload), seq)
            or (message["target"] and message["target"] != self.name)
        ):
            peer.corrupt += 1
            self.problem(
                f"from {source}: seq={seq} kind={kind} failed its check "
                f"(type={message['type']} target={message['target']} length={len(payload)})"
            )
        corr = message["correlation_id"]
        if kind == "q":
            self.send("r", source, self.response_size(), corr)
        elif kind == "F":
            self.fins_from.add(source)
            self.send("A", source, 0, corr)
        elif kind in "rA":
            key = (source, corr)
            if key in self.outstanding:
                self.outstanding.discard(key)
                if kind == "A":
                    self.acked.add(source)
            else:
                self.problem(f"from {source}: {kind} with correlation_id={corr!r} not awaited")

    def handle_broker(self, message):
        mid = message["id"]
        if message["type"] != "error":
            if mid == self.rpc_waiting:
                self.rpc_result = message
                self.rpc_waiting = None
            elif mid == "RPCRegister":
                self.registered = True
            else:
                self.problem(f"unexpected broker reply id={mid!r}")
            return
        parsed = parse_id(mid)
        category = error_category(message["error"])
        if parsed is None:
            if mid == self.rpc_waiting and category == "queue_refused":
                self.rpc_refused += 1  # resent by the waiting loop
                self.rpc_waiting = None
                self.rpc_result = "refused"
                return
            self.problem(f"error reply id={mid!r}: {message['error']}")
            return
        kind, seq, _crc, target = parsed
        self.errors[target].add(seq)
        self.error_kinds[category] += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(f"{mid}: {message['error']}")
        corr = message["correlation_id"]
        if kind in "qF":
            self.outstanding.discard((target, corr))
        if kind == "F":
            self.send("F", target, 0)  # the fin itself was refused: send another
        elif kind == "A":
            self.send("A", target, 0, corr)

    def problem(self, text):
        if len(self.problems) < 20:
            self.problems.append(text)

    # ---- the loop ----

    def response_size(self):
        return 0 if self.rng.random() < 0.3 else self.rng.choice((16, 200, 1024, 64 * 1024))

    def pump(self, selector, timeout):
        """One turn: wait for the socket or the pipe, read, write. Returns pipe commands."""
        events = 0
        if self.out:
            selector.modify(self.sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
        else:
            selector.modify(self.sock, selectors.EVENT_READ)
        commands = []
        for key, mask in selector.select(timeout):
            events += 1
            if key.fileobj is self.pipe:
                while self.pipe.poll():
                    commands.append(self.pipe.recv())
                continue
            if mask & selectors.EVENT_READ and not self.receive():
                raise ConnectionError(f"{self.name}: the broker closed the connection")
            if mask & selectors.EVENT_WRITE:
                self.flush()
        return commands

    def sluggish_pause(self):
        """A sluggish client sometimes stops reading and writing, as a busy process would."""
        if not self.cfg.get("sluggish"):
            return
        now = time.monotonic()
        if now >= self.next_pause:
            time.sleep(self.rng.uniform(*self.cfg["pause"]))
            self.next_pause = time.monotonic() + self.rng.uniform(2.0, 5.0)

    def wait_until(self, selector, done, what, deadline_s):
        deadline = time.monotonic() + deadline_s
        while not done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: timed out waiting for {what}")
            for command in self.pump(selector, 0.1):
                if command == "close":
                    raise TimeoutError(f"{self.name}: told to close while waiting for {what}")

    def register(self, selector):
        self.queue(
            self.codec.encode(
                "request", "RPCRegister", "broker", json.dumps({"name": self.name}).encode())
        )
        self.wait_until(selector, lambda: self.registered, "RPCRegister", self.cfg["timeout"])

    def finish_with(self, selector, peers):
        """Fin/ack handshake with every peer, then the settling broker call."""
        for peer in peers:
            self.send("F", peer, 0)
        self.fin_to = set(peers)
        self.wait_until(
            selector,
            lambda: self.acked >= self.fin_to and self.fins_from >= self.cfg["expect_fins"],
            "fin acknowledgements",
            self.cfg["drain_timeout"],
        )

    def settle(self, selector):
        """A broker call answered through the same output queue as the error replies: once it
        is back, every error reply for what this client sent has been read. Also reads this
        connection's dropped_slow counter."""
        deadline = time.monotonic() + self.cfg["timeout"]
        while True:
            self.call_broker("RPCListProcesses")
            self.wait_until(
                selector, lambda: self.rpc_waiting is None, "RPCListProcesses", self.cfg["timeout"]
            )
            if self.rpc_result != "refused":
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: RPCListProcesses refused until timeout")
            time.sleep(0.02)
        listing = json.loads(self.rpc_result["payload"])
        for process in listing.get("processes", []):
            if self.name in process.get("names", []):
                return process.get("dropped_slow", 0)
        self.problem("RPCListProcesses does not list this client")
        return 0

    def report(self, dropped_slow):
        return {
            "name": self.name,
            "framing": self.cfg["framing"],
            "sent": dict(self.seq_out),
            "sent_bytes": self.sent_bytes,
            "refused": {t: sorted(s) for t, s in self.errors.items()},
            "error_kinds": dict(self.error_kinds),
            "error_samples": self.error_samples,
            "inbound": {
                s: {
                    "count": p.count,
                    "last": p.last,
                    "gaps": p.gaps,
                    "disorder": p.disorder,
                    "corrupt": p.corrupt,
                    "bytes": p.bytes,
                }
                for s, p in self.inbound.items()
            },
            "outstanding": len(self.outstanding),
            "types_in": dict(self.types_in),
            "rpc_refused": self.rpc_refused,
            "dropped_slow": dropped_slow,
            "problems": self.problems,
        }


def run_long_lived(client, selector):
    """Steady traffic to the other long-lived clients until told to stop."""
    cfg = client.cfg
    client.register(selector)
    client.pipe.send("ready")
    peers = [p for p in cfg["peers"] if p != client.name]
    while True:
        commands = client.pump(selector, 1.0)
        if "start" in commands:
            break
        if "close" in commands:
            raise TimeoutError(f"{client.name}: closed before start")
    interval = 1.0 / cfg["rate"]
    next_send = time.monotonic()
    stopping = False
    while not stopping:
        now = time.monotonic()
        while now >= next_send and client.out_bytes < OUT_HIGH_WATER:
            kind = "q" if client.rng.random() < 0.4 else "e"
            client.send(kind, client.rng.choice(peers), client.sizes.next())
            next_send += interval
        if now - next_send > 1.0:
            next_send = now  # behind by more than a second (back-pressure): do not burst
        client.flush()
        client.sluggish_pause()
        wait = max(0.0, min(0.05, next_send - time.monotonic()))
        stopping = "stop" in client.pump(selector, wait)
    cfg["expect_fins"] = set(peers)
    client.finish_with(selector, peers)
    client.pipe.send("done")
    while "settle" not in client.pump(selector, 1.0):
        pass
    dropped_slow = client.settle(selector)
    client.pipe.send(("report", client.report(dropped_slow)))
    while "close" not in client.pump(selector, 1.0):
        pass


def run_churn(client, selector):
    """Connect, register, exchange a few messages with long-lived clients, leave."""
    cfg = client.cfg
    client.register(selector)
    targets = client.rng.sample(cfg["peers"], k=min(len(cfg["peers"]), client.rng.randint(1, 4)))
    for _ in range(client.rng.randint(3, 12)):
        kind = "q" if client.rng.random() < 0.6 else "e"
        size = client.sizes.next() if client.rng.random() < 0.3 else client.rng.randint(2, 512)
        client.send(kind, client.rng.choice(targets), size)
    cfg["expect_fins"] = set()
    client.finish_with(selector, targets)
    dropped_slow = client.settle(selector)
    client.pipe.send(("report", client.report(dropped_slow)))


def client_main(cfg, pipe):
    """Entry point of a client process (forked by the coordinator)."""
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the coordinator handles Ctrl-C
    client = Client(cfg, pipe)
    try:
        client.connect()
        selector = selectors.DefaultSelector()
        selector.register(client.sock, selectors.EVENT_READ)
        selector.register(pipe, selectors.EVENT_READ)
        if cfg["role"] == "long":
            run_long_lived(client, selector)
        else:
            run_churn(client, selector)
    except (OSError, TimeoutError, ConnectionError, ProtocolViolation) as error:
        try:
            detail = f"{type(error).__name__}: {error}"
            if client.problems:
                detail += "; first problems: " + "; ".join(client.problems[:3])
            pipe.send(("fail", detail, client.report(-1)))
        except OSError:
            pass
    finally:
        if client.sock is not None:
            client.sock.close()
        os._exit(0)  # skip the inherited atexit handlers of the coordinator


__all__ = ["client_main", "BINARY", "NDJSON"]
