#!/usr/bin/env python3
"""Elastic-job benchmark with real daemons (through scripts/sparta launch):

- scheduler takeover with cluster.coordination etcd (a real etcd, Debian's
  etcd-server): two schedulers, kill -9 of the leader mid-training; the time
  until another scheduler leads (its etcd lease won), until it listens with
  the job taken over, and until every node has reconnected, for leases of
  2, 3 and 5 s (cluster.heartbeat_timeout), also as a fraction of the lease;
- worker kill-to-resume with data.assignment on_demand: kill -9 of a worker
  until its work units are back in the pool and until the fresh worker the
  launcher starts under its rank trains again.

Every job must end ok with an exact audit (worker.audit, or every key trained
`epochs` times) for its figures to count.

  elastic_bench.py TRAIN TEST JSON_OUT [--quick]
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
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from harness import read, run_etcd, wait_for  # noqa: E402  (as the tests do it)
STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3})")


def first_line_time(path, text, after=0.0):
    for line in read(path).splitlines():
        m = STAMP.match(line)
        if m and text in line:
            t = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
            if t >= after:
                return t
    return None


def launch(cfg, run, sets):
    cmd = [sys.executable, LAUNCHER, "launch", cfg, "--run-dir", run, "--quiet"]
    for s in sets:
        cmd += ["--set", s]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def main():
    train, test, out = sys.argv[1:4]
    quick = "--quick" in sys.argv
    records = []

    def add(name, unit, value):
        records.append({"name": name, "unit": unit, "value": value})
        print(f"{name:<52} {value:12.3f} {unit}", flush=True)

    with tempfile.TemporaryDirectory(prefix="sparta-elastic-bench-") as tmp:
        etcd, endpoint = run_etcd(tmp)
        try:
            cfg = os.path.join(tmp, "job.yaml")
            with open(cfg, "w") as f:
                f.write(f"""cluster: {{scheduler: "127.0.0.1:0,127.0.0.1:0", coordination: "etcd://{endpoint}", servers: 2, workers: 2, heartbeat_interval: 0.2}}
server: {{threads: 1}}
data: {{train: "{train}", test: "{test}", batch_size: 1024, epochs: {40 if quick else 10}}}
model: {{name: lr}}
optimizer: {{name: ftrl, learning_rate: 0.2}}
worker: {{audit: 1}}
log: {{progress_interval: 0.2}}
""")
            for lease in ((3,) if quick else (2, 3, 5)):
                run = os.path.join(tmp, f"takeover-{lease}")
                proc = launch(cfg, run, [f"cluster.heartbeat_timeout={lease}"])
                infos = [os.path.join(run, f"scheduler-{r}.info.json") for r in (0, 1)]
                wait_for(lambda: " ex/s " in read(os.path.join(run, "worker-0.log")), 120, "training")
                leader = next(p for p in infos if os.path.exists(p))
                pid = json.loads(read(leader))["pid"]
                killed = time.time()
                os.kill(pid, signal.SIGKILL)
                proc.wait(timeout=600)
                logs = [os.path.join(run, n) for n in os.listdir(run) if n.startswith("scheduler-") and n.endswith(".log")]
                won = min(t for t in (first_line_time(p, "leading the job", killed) for p in logs) if t)
                listening = min(t for t in (first_line_time(p, "took over the running job", killed) for p in logs) if t)
                resynced = min(t for t in (first_line_time(p, "every node has reconnected", killed) for p in logs) if t)
                add(f"scheduler_takeover_lease{lease}s_elected_seconds", "s", won - killed)
                add(f"scheduler_takeover_lease{lease}s_listening_seconds", "s", listening - killed)
                add(f"scheduler_takeover_lease{lease}s_nodes_back_seconds", "s", resynced - killed)
                add(f"scheduler_takeover_lease{lease}s_nodes_back_vs_lease", "ratio", (resynced - killed) / lease)
                s = json.loads(read(os.path.join(run, "summary.json")))
                add(f"scheduler_takeover_lease{lease}s_job_exact", "bool",
                    1.0 if s["status"] == "ok" and s["audit_counts"] == s["worker_steps"] else 0.0)
        finally:
            etcd.kill()
            etcd.wait()

        # A worker's kill -9 with data.assignment on_demand.
        cfg = os.path.join(tmp, "on_demand.yaml")
        with open(cfg, "w") as f:
            f.write(f"""cluster: {{scheduler: "127.0.0.1:0", servers: 2, workers: 3, heartbeat_interval: 0.2, heartbeat_timeout: 3}}
server: {{threads: 1}}
data: {{train: "{train}", test: "{test}", batch_size: 1024, epochs: {40 if quick else 10}, assignment: on_demand, split_size: 1MiB}}
model: {{name: lr}}
optimizer: {{name: ftrl, learning_rate: 0.2}}
log: {{progress_interval: 0.2}}
""")
        run = os.path.join(tmp, "worker-kill")
        proc = launch(cfg, run, [])
        wait_for(lambda: " ex/s " in read(os.path.join(run, "worker-1.log")), 120, "training")
        pid = next(d["pid"] for d in json.loads(read(os.path.join(run, "daemons.json")))
                   if d["role"] == "worker" and d["rank"] == 1)
        killed = time.time()
        os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=600)
        released = first_line_time(os.path.join(run, "scheduler.log"), "go back to the pool", killed)
        rejoined = first_line_time(os.path.join(run, "worker-1.restart1.log"), " ex/s ", killed)
        add("worker_kill_units_released_seconds", "s", released - killed)
        if rejoined:
            add("worker_kill_fresh_worker_training_seconds", "s", rejoined - killed)
        s = json.loads(read(os.path.join(run, "summary.json")))
        add("worker_kill_job_ok", "bool", 1.0 if s["status"] == "ok" else 0.0)
        add("worker_kill_examples_retrained", "examples", float(s["examples_retrained"]))
    with open(out, "w") as f:
        json.dump(records, f, indent=1)


if __name__ == "__main__":
    main()
