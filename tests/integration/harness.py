"""Shared helpers for the integration tests: they start the real daemons
(through scripts/sparta or by hand) on loopback, in temporary folders, and
stop every process they start by its pid."""

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("SPARTA_BIN", os.path.join(ROOT, "build", "bin"))
LAUNCHER = os.path.join(ROOT, "scripts", "sparta")
PYTHON_PACKAGE = os.path.join(ROOT, "worker", "python")  # the sparta package's pure-Python modules
# How much slower the daemons run under the sanitizer pass that runs this
# suite (scripts/test.sh sets its options): for tests that need training to
# go on for some seconds of wall time, not for a number of examples.
SLOWDOWN = 10 if "TSAN_OPTIONS" in os.environ else 3 if "ASAN_OPTIONS" in os.environ else 1


def _varint(value):
    out = b""
    while True:
        byte = value & 0x7F
        value >>= 7
        out += bytes([byte | (0x80 if value else 0)])
        if not value:
            return out


def pb_encode(fields):
    """Hand-encodes a protobuf message (a sparta.pb.Header, or a nested one), for tests that speak the wire
    protocol without Sparta's code: {field number: int (varint) | bytes (nested/length-delimited) | float
    (fixed32)}."""
    out = b""
    for number, value in fields.items():
        if isinstance(value, bytes):
            out += _varint(number << 3 | 2) + _varint(len(value)) + value
        elif isinstance(value, float):
            out += _varint(number << 3 | 5) + struct.pack("<f", value)
        else:
            out += _varint(number << 3) + _varint(value)
    return out


def pb_decode(data):
    """The top-level fields of a protobuf message (a Header): {field number: int (varint) | bytes}; the Python
    client's own decoder (sparta.predict), which the tests share rather than copy."""
    if PYTHON_PACKAGE not in sys.path:
        sys.path.insert(0, PYTHON_PACKAGE)
    from sparta.predict import _decode_header
    return _decode_header(data)


def scaled(seconds):
    """A deadline the daemons meet at full speed, stretched by SLOWDOWN: a
    short heartbeat timeout (1.5 s) is missed by a server that is merely
    starting up under a sanitizer, and the job fails over for nothing."""
    return seconds * SLOWDOWN


def datagen(folder, train_rows, test_rows, **options):
    """Writes generated data into `folder`; returns the paths by name."""
    paths = {name: os.path.join(folder, file) for name, file in [
        ("train", "train.txt"), ("test", "test.txt"), ("train_libsvm", "train.svm"),
        ("test_libsvm", "test.svm"), ("truth", "truth.txt")]}
    cmd = [os.path.join(BIN, "sparta-datagen"), "--train-rows", str(train_rows), "--test-rows", str(test_rows),
           "--train", paths["train"], "--test", paths["test"], "--train-libsvm", paths["train_libsvm"],
           "--test-libsvm", paths["test_libsvm"], "--truth", paths["truth"]]
    for key, value in options.items():
        cmd += ["--" + key.replace("_", "-"), str(value)]
    subprocess.run(cmd, check=True)
    return paths


def write_config(folder, name="job.yaml", **sections):
    """A cluster/job YAML file; sections are dicts of keys (scheduler port 0 by default)."""
    sections.setdefault("cluster", {})
    sections["cluster"] = {"scheduler": "127.0.0.1:0", "servers": 1, "workers": 1,
                           "heartbeat_interval": 0.2, "heartbeat_timeout": 3, **sections["cluster"]}
    lines = []
    for section, keys in sections.items():
        lines.append(f"{section}:")
        for key, value in keys.items():
            lines.append(f"  {key}: {json.dumps(value)}")
    path = os.path.join(folder, name)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def launch(config, run_dir, sets=(), timeout=300, wait=True, extra=(), env=None):
    """scripts/sparta launch CONFIG (`extra`: more launcher flags; `env`: the
    launcher's environment, this process's by default)."""
    cmd = [sys.executable, LAUNCHER, "launch", config, "--run-dir", run_dir, "--quiet", *extra]
    for s in sets:
        cmd += ["--set", s]
    if not wait:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True, env=env)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def bin_folder_but(folder, name, label, also_leave_out=()):
    """A new folder holding links to every file of BIN except `name` (and
    `also_leave_out`); returns its path and the path `name` would have there."""
    bin_dir = os.path.join(folder, f"bin-{label}-{name}")
    os.makedirs(bin_dir)
    for binary in os.listdir(BIN):
        if binary != name and binary not in also_leave_out:
            os.symlink(os.path.join(BIN, binary), os.path.join(bin_dir, binary))
    return bin_dir, os.path.join(bin_dir, name)


def bin_with_wrapper(folder, name, script):
    """A folder to pass as SPARTA_BIN: every binary of BIN, but `name`
    replaced by `script` (a Python program's text, run with this Python),
    which does its part and then executes the real binary. Returns the folder."""
    bin_dir, path = bin_folder_but(folder, name, "with")
    with open(path, "w") as f:
        f.write(f"#!{sys.executable}\n{script}")
    os.chmod(path, 0o755)
    return bin_dir


def bin_with_lone_copy(folder, name, modules=("libsparta_cuda.so",)):
    """A folder to pass as SPARTA_BIN: every program of BIN linked, but
    `name` a copy, with none of the `modules` it looks for beside itself
    (the CUDA backend, see worker/compute/cuda_module.h). Returns the folder."""
    bin_dir, path = bin_folder_but(folder, name, "copy", also_leave_out=modules)
    shutil.copy2(os.path.join(BIN, name), path)
    return bin_dir


def config_with(folder, sections, **overrides):
    """write_config of `sections` with section__key=value overrides, under a fresh name."""
    sections = {name: dict(keys) for name, keys in sections.items()}
    for key, value in overrides.items():
        section, name = key.split("__")
        sections.setdefault(section, {})[name] = value
    return write_config(folder, f"job-{len(os.listdir(folder))}.yaml", **sections)


def run_with_predictions(test, config, name, *sets, timeout=600):
    """Runs a job to its end (it must succeed); returns its summary, its test
    predictions (text) and its run folder."""
    run = test.run_dir(name)
    predictions = os.path.join(test.dir, f"{name}.predictions")
    result = launch(config, run, [f"eval.predictions_out={predictions}", *sets], timeout=timeout)
    test.assertEqual(result.returncode, 0, result.stderr)
    return summary(run), read(predictions), run


def summary(run_dir):
    with open(os.path.join(run_dir, "summary.json")) as f:
        return json.load(f)


def wait_for(condition, timeout, what, details=None):
    """Polls `condition` until it holds; fails the test after `timeout` seconds.
    `details`, a function, says what the failure message should show besides
    (the logs that explain it), read only once it failed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    message = f"timed out after {timeout} s waiting for {what}"
    raise AssertionError(message + ("\n" + details() if details else ""))


def finish(proc, run_dir, timeout):
    """proc.communicate() of a launcher running the job in `run_dir`; if the
    job does not end within `timeout` s, fails with the tail of every log
    there, so that a hang seen once (in CI) says where it stopped."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the job in {run_dir} did not end within {timeout} s\n" + log_tails(run_dir))


def log_tails(run_dir, lines=15):
    """The last `lines` lines of every log in `run_dir`, each under its name:
    what a failure message shows of a job that hung."""
    tails = []
    for name in sorted(os.listdir(run_dir)) if os.path.isdir(run_dir) else []:
        if name.endswith(".log"):
            last = read(os.path.join(run_dir, name)).splitlines()[-lines:]
            tails.append(f"--- {name} (last {len(last)} lines)\n" + "\n".join(last))
    return "\n".join(tails)


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is not alive; its parent (the launcher) has not reaped it yet.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def kill_job(proc, run_dir):
    """kill -9 of a running launcher and of every daemon it started (as a
    machine that loses power would); waits until they are gone."""
    daemons = json.loads(read(os.path.join(run_dir, "daemons.json")))
    os.kill(proc.pid, signal.SIGKILL)  # the launcher first, so nobody cleans up
    for d in daemons:
        os.kill(d["pid"], signal.SIGKILL)
    proc.wait()
    wait_for(lambda: not any(pid_alive(d["pid"]) for d in daemons), 10, "every daemon to die")


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_on_picked_ports(start, ready, timeout, what):
    """Starts a program that listens on ports picked by free_port (etcd,
    Prometheus: they cannot report a port they chose themselves). Another
    process may take a picked port before the program binds it; the program
    then exits, and it is started again on fresh ports, up to 3 times.
    start() picks the ports, starts the program and returns (its process,
    what ready takes); ready(that) says whether it answers. Returns the
    same pair once it does."""
    for _ in range(3):
        proc, ports = start()
        try:
            wait_for(lambda: ready(ports) or proc.poll() is not None, timeout, what)
        except AssertionError:
            proc.kill()
            raise
        if proc.poll() is None:
            return proc, ports
    raise AssertionError(f"timed out waiting for {what}: it exited ({proc.returncode}) three times, on fresh ports")


def run_etcd(folder, host="127.0.0.1"):
    """A real etcd (Debian's etcd-server) with its data in `folder`, on free
    ports of `host` (loopback by default), once it is healthy: (its process,
    its client address). The caller stops it by pid."""
    import shutil
    import urllib.request
    etcd = shutil.which("etcd")
    if etcd is None:
        raise AssertionError("etcd is installed by scripts/install-deps.sh --tests (etcd-server)")
    data = os.path.join(folder, "etcd")

    def start():
        shutil.rmtree(data, ignore_errors=True)  # a failed start's leftovers
        client, peer = free_port(), free_port()
        with open(os.path.join(folder, "etcd.log"), "a") as log:
            proc = subprocess.Popen(
                [etcd, "--data-dir", data, "--name", "default",
                 "--listen-client-urls", f"http://{host}:{client}", "--advertise-client-urls", f"http://{host}:{client}",
                 "--listen-peer-urls", f"http://{host}:{peer}", "--initial-advertise-peer-urls", f"http://{host}:{peer}",
                 "--initial-cluster", f"default=http://{host}:{peer}"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return proc, client

    def healthy(client):
        try:
            with urllib.request.urlopen(f"http://{host}:{client}/health", timeout=1) as r:
                return json.loads(r.read()).get("health") == "true"
        except OSError:
            return False
    proc, client = start_on_picked_ports(start, healthy, 30, "etcd to be healthy")
    return proc, f"{host}:{client}"


def start_etcd(test, host="127.0.0.1"):
    """run_etcd in the test's folder, stopped with the test."""
    proc, address = run_etcd(test.dir, host)
    test.procs.append(proc)
    return address


def auc(scores, labels):
    pairs = sorted(zip(scores, labels))
    n, positives, rank_sum, i = len(pairs), sum(l for _, l in pairs), 0.0, 0
    while i < n:
        j = i
        while j < n and pairs[j][0] == pairs[i][0]:
            j += 1
        rank_sum += sum(l for _, l in pairs[i:j]) * (i + 1 + j) / 2
        i = j
    return (rank_sum - positives * (positives + 1) / 2) / (positives * (n - positives))


def labels_of(path):
    return [1 if line.split(None, 1)[0] in ("1", "+1") else 0 for line in read(path).splitlines()]


class ClusterTest(unittest.TestCase):
    """A test case with a temporary folder and cleanup of stray processes."""

    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="sparta-it-")
        self.dir = self._tmp.name
        self.procs = []

    def tearDown(self):
        for p in self.procs:
            if p.poll() is None:
                # SIGTERM first: a launcher stops the daemons it started
                # (each in its own session, out of reach of killpg).
                for sig, grace in ((signal.SIGTERM, 20), (signal.SIGKILL, None)):
                    try:
                        os.killpg(p.pid, sig)
                    except ProcessLookupError:
                        pass
                    try:
                        p.wait(timeout=grace)
                        break
                    except subprocess.TimeoutExpired:
                        continue
        if os.environ.get("SPARTA_KEEP_TEST_DIRS"):  # for reading a run's logs afterwards
            self._tmp._finalizer.detach()
            print(f"kept {self.dir}", file=sys.stderr)
            return
        self._tmp.cleanup()

    def run_dir(self, name="run"):
        return os.path.join(self.dir, name)
