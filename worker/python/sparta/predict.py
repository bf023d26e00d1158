"""A client for sparta-serve replicas, in plain Python (standard library only).

    from sparta.predict import PredictClient
    client = PredictClient(["http://10.0.0.7:8501", "http://10.0.0.8:8501"], "fm")
    answer = client.predict([line, {"I1": 5, "C1": "68fd1e64"}], deadline_ms=200)
    answer.predictions, answer.model_version

A replica is reached over HTTP (http://HOST:PORT, JSON) or over sparta-serve's
ZeroMQ endpoint (tcp://HOST:PORT, serving.zmq_port: Sparta's wire format;
needs pyzmq, Debian's python3-zmq). It behaves as the C++ client
(ctl/predict_client.h) that `sparta-ctl predict` uses: each request goes to the replica with the fewest requests in flight
from this client; a request that fails (no connection, a 5xx, no answer in
time) is tried once more on another replica within what is left of its
deadline, while a 4xx (the request's own fault) is raised at once as
BadRequest; a replica that failed gets no requests until its /healthz
answers again, asked at most once per `recheck` seconds.

Over ZeroMQ a client does not see a replica die under its request (HTTP sees
its connection close), so there the first try gets half the deadline.

Thread-safe: one client serves many threads. Each thread keeps its own
keep-alive connection (or ZeroMQ socket) to each replica.
"""

import http.client
import json
import struct
import threading
import time
import urllib.parse
from dataclasses import dataclass

__all__ = ["Answer", "BadRequest", "NoReplica", "PredictClient", "ReplicaChooser"]


# Sparta's message header (proto/sparta.proto, message Header): the fields a
# PREDICT and its RESPONSE use, encoded and decoded by hand so that the
# client needs no generated code. Field numbers as in the .proto.
_TYPE, _SEQ, _NUM_KEYS, _DIM, _STATUS, _ERROR, _DTYPE, _MODEL, _DEADLINE_MS, _MODEL_VERSION = (
    1, 3, 6, 7, 8, 9, 16, 32, 33, 34)
_HEARTBEAT, _RESPONSE, _PREDICT = 4, 23, 37
_INVALID_ARGUMENT, _NOT_FOUND = 3, 5

# Milliseconds a closed socket lingers (as Sparta's daemons do, see
# common/socket_util.h): with none, libzmq 4.3.4 aborts the process when the
# connection drops just after a close part-way through sending a multipart
# message, as when a replica that stopped answering is then killed.
_CLOSE_LINGER_MS = 100


def _varint(n):
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _encode_header_fields(fields):
    """Header bytes of {field number: value}: integers as varints, `model` a
    string, `deadline_ms` a double."""
    out = bytearray()
    for number, value in fields.items():
        if number == _MODEL:
            data = value.encode()
            out += _varint(number << 3 | 2) + _varint(len(data)) + data
        elif number == _DEADLINE_MS:
            out += _varint(number << 3 | 1) + struct.pack("<d", value)
        else:
            out += _varint(number << 3) + _varint(value)
    return bytes(out)


def _decode_header(data):
    """{field number: value} of a header: varints as ints, strings as bytes;
    other fields skipped. Raises ValueError on a malformed one."""
    fields, i = {}, 0

    def varint():
        nonlocal i
        shift = value = 0
        while True:
            if i >= len(data) or shift > 63:
                raise ValueError("truncated varint")
            byte = data[i]
            i += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    while i < len(data):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            fields[number] = varint()
        elif wire == 1:
            fields[number] = data[i:i + 8]
            i += 8
        elif wire == 2:
            n = varint()
            fields[number] = data[i:i + n]
            i += n
        elif wire == 5:
            i += 4
        else:
            raise ValueError(f"wire type {wire}")
        if i > len(data):
            raise ValueError("truncated field")
    return fields


class BadRequest(ValueError):
    """A request every replica would refuse (sparta-serve answered 4xx)."""


class NoReplica(RuntimeError):
    """No replica answered within the deadline, its retry included."""


@dataclass
class Answer:
    predictions: list
    model_version: int
    attempts: int


@dataclass
class _Replica:
    outstanding: int = 0
    up: bool = True
    recheck_at: float = 0.0


class ReplicaChooser:
    """Which replica gets the next attempt: least outstanding among those up;
    else one that is down and due for its health check. No sockets."""

    def __init__(self, replicas, recheck):
        self._lock = threading.Lock()
        self._replicas = [_Replica() for _ in range(replicas)]
        self._recheck = recheck
        # Ties go round: each pick starts its scan one replica further, so a
        # client with one request at a time spreads them too.
        self._next_start = 0

    def pick(self, exclude, now):
        """(replica, check_health_first), its attempt counted as outstanding
        until done(); None when every other replica is down and not due."""
        with self._lock:
            best = due = None
            start = self._next_start
            self._next_start += 1
            for k in range(len(self._replicas)):
                i = (start + k) % len(self._replicas)
                r = self._replicas[i]
                if i == exclude:
                    continue
                if r.up:
                    if best is None or r.outstanding < self._replicas[best].outstanding:
                        best = i
                elif now >= r.recheck_at and (due is None or r.recheck_at < self._replicas[due].recheck_at):
                    due = i
            if best is not None:
                self._replicas[best].outstanding += 1
                return best, False
            if due is not None:
                # One request checks it; the others do not pile onto it meanwhile.
                self._replicas[due].recheck_at = now + self._recheck
                self._replicas[due].outstanding += 1
                return due, True
            return None

    def done(self, replica, ok, now):
        with self._lock:
            r = self._replicas[replica]
            r.outstanding -= 1
            if not ok and r.up:
                r.up = False
                r.recheck_at = now + self._recheck

    def health_checked(self, replica, up, now):
        with self._lock:
            r = self._replicas[replica]
            r.up = up
            if not up:
                r.recheck_at = now + self._recheck

    def outstanding(self, replica):
        with self._lock:
            return self._replicas[replica].outstanding

    def is_up(self, replica):
        with self._lock:
            return self._replicas[replica].up


class PredictClient:
    def __init__(self, urls, model, recheck=1.0):
        """`urls`: http://HOST:PORT of each replica; `model`: the NAME of
        /v1/models/NAME:predict."""
        if not urls:
            raise ValueError("no replicas")
        self._targets = []
        for url in urls:
            parsed = urllib.parse.urlsplit(url if "://" in url else "http://" + url)
            if parsed.scheme not in ("http", "tcp"):
                raise ValueError(f"{url}: a replica is http://HOST:PORT or tcp://HOST:PORT (ZeroMQ)")
            self._targets.append((parsed.scheme, parsed.hostname, parsed.port or (80 if parsed.scheme == "http" else 8502)))
        self._urls = list(urls)
        self._model = model
        self._path = f"/v1/models/{model}:predict"
        self._zmq = None
        if any(t[0] == "tcp" for t in self._targets):
            import zmq  # only for ZeroMQ replicas
            self._zmq = zmq
            self._context = zmq.Context.instance()
        self._seq = 0
        self._seq_lock = threading.Lock()
        self._chooser = ReplicaChooser(len(urls), recheck)
        self._local = threading.local()

    def _connection(self, replica, timeout):
        connections = getattr(self._local, "connections", None)
        if connections is None:
            connections = self._local.connections = {}
        conn = connections.get(replica)
        if conn is None:
            _, host, port = self._targets[replica]
            conn = connections[replica] = http.client.HTTPConnection(host, port, timeout=timeout)
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        return conn

    def _drop(self, replica):
        conn = getattr(self._local, "connections", {}).pop(replica, None)
        if conn is not None:
            conn.close()

    def _exchange_zmq(self, replica, header, frames, timeout):
        """(decoded RESPONSE header, its frames) of one ZeroMQ exchange;
        raises OSError when the replica did not answer in `timeout`."""
        zmq = self._zmq
        sockets = getattr(self._local, "sockets", None)
        if sockets is None:
            sockets = self._local.sockets = {}
        sock = sockets.get(replica)
        if sock is None:
            sock = self._context.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, _CLOSE_LINGER_MS)
            # Sends only to a connection that is up: to a dead replica a send
            # fails at once instead of waiting for a reconnect.
            sock.setsockopt(zmq.IMMEDIATE, 1)
            _, host, port = self._targets[replica]
            sock.connect(f"tcp://{host}:{port}")
            sockets[replica] = sock
        with self._seq_lock:
            self._seq += 1
            seq = self._seq
        until = time.monotonic() + timeout
        # A new socket connects first, within the attempt's time: a live
        # replica just started, or on a loaded machine, may take hundreds of
        # milliseconds to accept (a dead one never does, and the retry has
        # its own time). One still connecting is kept: nothing was sent on
        # it, so no late answer can come, and it connects in the background
        # for the next request.
        if not sock.poll(max(1, int(timeout * 1000)), zmq.POLLOUT):
            raise OSError(f"no connection to {self._urls[replica]}")
        try:
            sock.send_multipart([header(seq)] + frames, flags=zmq.NOBLOCK)
            while True:
                left = until - time.monotonic()
                if left <= 0 or not sock.poll(max(1, int(left * 1000)), zmq.POLLIN):
                    raise OSError("no answer in time")
                parts = sock.recv_multipart()
                try:
                    fields = _decode_header(parts[0])
                except ValueError:
                    continue  # not an answer of sparta-serve's: dropped
                if fields.get(_TYPE) == _RESPONSE and fields.get(_SEQ) == seq:
                    return fields, parts[1:]
        except (OSError, zmq.ZMQError) as e:
            # A socket that failed, or has an answer still to come, is never
            # used again.
            sockets.pop(replica, None)
            sock.close()  # (lingers _CLOSE_LINGER_MS, set when it was made)
            raise OSError(str(e)) from e

    def _attempt_zmq(self, replica, instances, check_health, left):
        """(status, predictions or error message, model version), as HTTP's
        statuses: 200, 4xx (the request's fault), 5xx."""
        if check_health:
            self._exchange_zmq(replica, lambda seq: _encode_header_fields({_TYPE: _HEARTBEAT, _SEQ: seq}), [],
                               min(left, 1.0))
        lines = []
        for instance in instances:
            if not isinstance(instance, str):
                return 400, "over ZeroMQ an instance is an input line (a string)", 0
            lines.append(instance.rstrip("\n") + "\n")
        frame = "".join(lines).encode()
        fields, frames = self._exchange_zmq(
            replica, lambda seq: _encode_header_fields({_TYPE: _PREDICT, _SEQ: seq, _NUM_KEYS: len(lines),
                                                        _MODEL: self._model, _DEADLINE_MS: max(1.0, left * 1000)}),
            [frame], left)
        status = fields.get(_STATUS, 0)
        if status != 0:
            error = fields.get(_ERROR, b"").decode(errors="replace")
            return (400 if status in (_INVALID_ARGUMENT, _NOT_FOUND) else 503), error, 0
        if len(frames) != 1 or fields.get(_DIM) != 1:
            return 502, "an answer without its predictions", 0
        predictions = list(struct.unpack(f"<{len(frames[0]) // 4}f", frames[0]))
        return 200, predictions, fields.get(_MODEL_VERSION, 0)

    def _call(self, replica, method, path, body, timeout):
        """(status, text) of one HTTP exchange; raises OSError or
        http.client.HTTPException when the replica did not answer."""
        conn = self._connection(replica, timeout)
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.read().decode()
        except (OSError, http.client.HTTPException):
            # A connection that failed, or that timed out with an answer
            # still to come, is never used again.
            self._drop(replica)
            raise

    def _attempt_http(self, replica, body, check_health, left):
        """(status, predictions or error message, model version)."""
        if check_health:
            status, _ = self._call(replica, "GET", "/healthz", None, left)
            if status != 200:
                raise OSError("still down")
        status, text = self._call(replica, "POST", self._path, body, left)
        if status != 200:
            try:
                message = json.loads(text).get("error", text)
            except (ValueError, AttributeError):
                message = text
            return status, message, 0
        answer = json.loads(text)
        return 200, answer["predictions"], answer.get("model_version", 0)

    def predict(self, instances, deadline_ms=1000):
        """Scores `instances` (input lines in the job's format, or, over
        HTTP, objects of named fields) within `deadline_ms`; returns an
        Answer."""
        instances = list(instances)
        until = time.monotonic() + deadline_ms / 1000
        body = None
        previous, errors, attempts = None, [], 0
        # The first attempt, and one retry on another replica.
        for attempt in range(2):
            now = time.monotonic()
            if now >= until:
                break
            choice = self._chooser.pick(previous, now)
            if choice is None:
                break
            replica, check_health = choice
            previous = replica
            attempts += 1
            left = max(0.001, until - now)
            zmq_replica = self._targets[replica][0] == "tcp"
            if zmq_replica and attempt == 0 and len(self._targets) > 1:
                left /= 2
            ok = False
            try:
                if zmq_replica:
                    status, result, version = self._attempt_zmq(replica, instances, check_health, left)
                else:
                    if body is None:
                        body = json.dumps({"instances": instances, "deadline_ms": deadline_ms}).encode()
                    status, result, version = self._attempt_http(replica, body, check_health, left)
                if check_health:
                    self._chooser.health_checked(replica, True, time.monotonic())
                if status == 200:
                    ok = True
                    if len(result) != len(instances):
                        raise RuntimeError(f"{self._urls[replica]}: {len(result)} predictions for "
                                           f"{len(instances)} instances")
                    return Answer(result, version, attempts)
                if status < 500:
                    ok = True  # the replica is fine; the request is not
                    raise BadRequest(f"{self._urls[replica]}: {status}: {result}")
                errors.append(f"{self._urls[replica]}: {status} {str(result).strip()}")
            except (OSError, http.client.HTTPException) as e:
                if check_health:
                    self._chooser.health_checked(replica, False, time.monotonic())
                errors.append(f"{self._urls[replica]}: {e or type(e).__name__}")
            finally:
                self._chooser.done(replica, ok, time.monotonic())
        raise NoReplica(f"no replica answered within {deadline_ms} ms ("
                        f"{'; '.join(errors) if errors else 'every replica is down'})")
