#!/usr/bin/env python3
"""Replication and failover benchmark with real daemons (through
scripts/sparta launch): training throughput of lr on 3 servers + 2 workers
with storage.replication_factor 1, 2, 3 and storage.ack all|primary, with
storage.durability wal, and the time from a server's failure (kill -9, and
SIGSTOP) to resumed training with the default heartbeat timeout.

  replication_bench.py TRAIN TEST JSON_OUT [--quick]
"""

import datetime
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAUNCHER = os.path.join(ROOT, "scripts", "sparta")
STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3})")


def config(folder, train, test):
    path = os.path.join(folder, "job.yaml")
    with open(path, "w") as f:
        f.write(f"""cluster: {{scheduler: "127.0.0.1:0", servers: 3, workers: 2, heartbeat_interval: 0.2, heartbeat_timeout: 1.0}}
server: {{threads: 1}}
data: {{train: "{train}", test: "{test}", batch_size: 4096, epochs: 1}}
model: {{name: lr}}
optimizer: {{name: ftrl, learning_rate: 0.2}}
log: {{progress_interval: 0.2}}
""")
    return path


def launch(cfg, run, sets, wait=True):
    cmd = [sys.executable, LAUNCHER, "launch", cfg, "--run-dir", run, "--quiet"]
    for s in sets:
        cmd += ["--set", s]
    if not wait:
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(run, "summary.json")) as f:
        return json.load(f)


def first_line_time(path, text):
    with open(path) as f:
        for line in f:
            if text in line:
                m = STAMP.match(line)
                return datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
    return None


def main():
    train, test, out = sys.argv[1:4]
    quick = "--quick" in sys.argv
    records = []

    def add(name, unit, value):
        records.append({"name": name, "unit": unit, "value": value})
        print(f"{name:<40} {value:14.3f} {unit}", flush=True)

    with tempfile.TemporaryDirectory(prefix="sparta-repl-bench-") as tmp:
        cfg = config(tmp, train, test)
        for r, ack in [(1, "all"), (2, "all"), (2, "primary"), (3, "all"), (3, "primary")]:
            s = launch(cfg, os.path.join(tmp, f"r{r}-{ack}"),
                       [f"storage.replication_factor={r}", f"storage.ack={ack}"])
            add(f"train_lr_2w3s_replication{r}_ack_{ack}", "examples/s", s["examples_per_sec"])
        # durability "wal": every push's rows through RocksDB's log before its ack.
        for r in (1, 2):
            s = launch(cfg, os.path.join(tmp, f"wal-r{r}"), [f"storage.replication_factor={r}", "storage.durability=wal"])
            add(f"train_lr_2w3s_replication{r}_wal", "examples/s", s["examples_per_sec"])

        # Failover with the default heartbeat timeout (5 s): server-1 killed
        # with -9 (its connection closes and its port refuses: the scheduler
        # fails over at once) and frozen with SIGSTOP (alive to the kernel:
        # only the heartbeat timeout tells). Time from the signal until the
        # scheduler fails over and until the workers resend to the new
        # primaries, also as a fraction of the heartbeat timeout.
        timeout = 5.0
        for name, sig in (("kill9", signal.SIGKILL), ("sigstop", signal.SIGSTOP)):
            run = os.path.join(tmp, f"failover-{name}")
            # Long enough that the failure lands mid-training (the quick data set is small).
            proc = launch(cfg, run, ["storage.replication_factor=2", f"data.epochs={60 if quick else 12}",
                                     f"cluster.heartbeat_timeout={timeout}", "cluster.heartbeat_interval=0.5", "worker.audit=1"],
                          wait=False)
            log0 = os.path.join(run, "worker-0.log")
            deadline = time.time() + 120
            while time.time() < deadline and " ex/s " not in (open(log0).read() if os.path.exists(log0) else ""):
                time.sleep(0.05)
            with open(os.path.join(run, "daemons.json")) as f:
                pid = next(d["pid"] for d in json.load(f) if d["role"] == "server" and d["rank"] == 1)
            hit_at = time.time()
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                sys.exit("replication_bench: the failover job ended before the failure; make it longer")
            scheduler_log = os.path.join(run, "scheduler.log")
            while time.time() < deadline + 60 and first_line_time(scheduler_log, "failing over") is None:
                time.sleep(0.05)
            if sig == signal.SIGSTOP:
                os.kill(pid, signal.SIGCONT)  # it hears it was declared dead, and exits
            proc.wait(timeout=600)
            detected = first_line_time(scheduler_log, "failing over")
            resumed = min(t for t in (first_line_time(os.path.join(run, f"worker-{w}.log"), "is gone") for w in (0, 1))
                          if t is not None)
            add(f"failover_{name}_detect_seconds", "s", detected - hit_at)
            add(f"failover_{name}_kill_to_resume_seconds", "s", resumed - hit_at)
            add(f"failover_{name}_kill_to_resume_vs_heartbeat_timeout", "ratio", (resumed - hit_at) / timeout)
            with open(os.path.join(run, "summary.json")) as f:
                s = json.load(f)
            add(f"failover_{name}_job_exact", "bool",
                1.0 if s["status"] == "ok" and s["audit_counts"] == s["worker_steps"] else 0.0)
    with open(out, "w") as f:
        json.dump(records, f, indent=1)


if __name__ == "__main__":
    main()
