"""A client for sparta-serve replicas, in plain Python (standard library only).

    from sparta.predict import PredictClient
    client = PredictClient(["http://10.0.0.7:8501", "http://10.0.0.8:8501"], "fm")
    answer = client.predict([line, {"I1": 5, "C1": "68fd1e64"}], deadline_ms=200)
    answer.predictions, answer.model_version

It behaves as the C++ client (ctl/predict_client.h) that `sparta-ctl predict`
uses: each request goes to the replica with the fewest requests in flight
from this client; a request that fails (no connection, a 5xx, no answer in
time) is tried once more on another replica within what is left of its
deadline, while a 4xx (the request's own fault) is raised at once as
BadRequest; a replica that failed gets no requests until its /healthz
answers again, asked at most once per `recheck` seconds.

Thread-safe: one client serves many threads. Each thread keeps its own
keep-alive connection to each replica.
"""

import http.client
import json
import threading
import time
import urllib.parse
from dataclasses import dataclass, field

__all__ = ["Answer", "BadRequest", "NoReplica", "PredictClient", "ReplicaChooser"]


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

    def pick(self, exclude, now):
        """(replica, check_health_first), its attempt counted as outstanding
        until done(); None when every other replica is down and not due."""
        with self._lock:
            best = due = None
            for i, r in enumerate(self._replicas):
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
            if parsed.scheme != "http":
                raise ValueError(f"{url}: the Python client speaks HTTP (http://HOST:PORT)")
            self._targets.append((parsed.hostname, parsed.port or 80))
        self._urls = list(urls)
        self._path = f"/v1/models/{model}:predict"
        self._chooser = ReplicaChooser(len(urls), recheck)
        self._local = threading.local()

    def _connection(self, replica, timeout):
        connections = getattr(self._local, "connections", None)
        if connections is None:
            connections = self._local.connections = {}
        conn = connections.get(replica)
        if conn is None:
            host, port = self._targets[replica]
            conn = connections[replica] = http.client.HTTPConnection(host, port, timeout=timeout)
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        return conn

    def _drop(self, replica):
        conn = getattr(self._local, "connections", {}).pop(replica, None)
        if conn is not None:
            conn.close()

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

    def predict(self, instances, deadline_ms=1000):
        """Scores `instances` (input lines in the job's format, or objects of
        named fields) within `deadline_ms`; returns an Answer."""
        until = time.monotonic() + deadline_ms / 1000
        body = json.dumps({"instances": list(instances), "deadline_ms": deadline_ms}).encode()
        previous, errors, attempts = None, [], 0
        # The first attempt, and one retry on another replica.
        for _ in range(2):
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
            ok = False
            try:
                if check_health:
                    status, _ = self._call(replica, "GET", "/healthz", None, left)
                    self._chooser.health_checked(replica, status == 200, time.monotonic())
                    if status != 200:
                        errors.append(f"{self._urls[replica]}: still down")
                        continue
                status, text = self._call(replica, "POST", self._path, body, max(0.001, until - time.monotonic()))
                if status == 200:
                    answer = json.loads(text)
                    ok = True
                    predictions = answer["predictions"]
                    if len(predictions) != len(instances):
                        raise RuntimeError(f"{self._urls[replica]}: {len(predictions)} predictions for "
                                           f"{len(instances)} instances")
                    return Answer(predictions, answer.get("model_version", 0), attempts)
                if status < 500:
                    ok = True  # the replica is fine; the request is not
                    try:
                        message = json.loads(text).get("error", text)
                    except ValueError:
                        message = text
                    raise BadRequest(f"{self._urls[replica]}: HTTP {status}: {message}")
                errors.append(f"{self._urls[replica]}: HTTP {status} {text.strip()}")
            except (OSError, http.client.HTTPException) as e:
                if check_health:
                    self._chooser.health_checked(replica, False, time.monotonic())
                errors.append(f"{self._urls[replica]}: {e or type(e).__name__}")
            finally:
                self._chooser.done(replica, ok, time.monotonic())
        raise NoReplica(f"no replica answered within {deadline_ms} ms ("
                        f"{'; '.join(errors) if errors else 'every replica is down'})")
