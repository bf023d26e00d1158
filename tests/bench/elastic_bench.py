#!/usr/bin/env python3
"""Elastic-job benchmark with real daemons (through scripts/sparta launch):

- scheduler takeover with cluster.coordination etcd (a real etcd, Debian's
  etcd-server): two schedulers, kill -9 of the leader mid-training; the time
  until another scheduler leads (its etcd lease won), until it listens with
  the job taken over, and until every node has reconnected, for leases of
  2, 3 and 5 s (cluster.heartbeat_timeout), also as a fraction of the lease;
- worker kill-to-resume with data.assignment on_demand: kill -9 of a worker
  until its work units are back in the pool and until the fresh worker the
  launcher starts under its rank trains again;
- live shard moves: a job of 2 servers whose sparse table holds 2M rows (and,
  without --quick, 20M), training a counting model (one key per example):
  sparta-ctl drain server-1 (its half of the rows moves to server-0), then
  sparta-ctl scale --servers 2 (a server joins and gets half back). The time
  each takes per 1M rows moved (target: under 2 s); how long each batch of
  hand-offs kept its shards' requests waiting (from the view that marked it
  to the one that switched it); and the longest step of the workers while
  shards move (each worker's CSV records its longest gap between two
  batches per progress line) against the 100 ms target and the longest step
  before the moves, measured in the same run, with shard streams paced by
  server.stream_rate (default 16 MiB/s) and, as the reference in the same
  run, unpaced (2M rows, records tagged _unpaced); with --chart PNG, the
  workers' throughput over time with the moves marked.

Every job must end ok with an exact audit (worker.audit, or every key trained
`epochs` times) for its figures to count.

  elastic_bench.py TRAIN TEST JSON_OUT [--quick] [--only-moves] [--chart PNG] [--stream-rate RATE]
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
from test_durability import build_counter_plugin  # noqa: E402
STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3})")


def first_line_time(path, text, after=0.0):
    for line in read(path).splitlines():
        m = STAMP.match(line)
        if m and text in line:
            t = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
            if t >= after:
                return t
    return None


def ctl(*args, run):
    return subprocess.run([os.path.join(os.environ.get("SPARTA_BIN", os.path.join(ROOT, "build", "bin")), "sparta-ctl"),
                           *args, "--run", run], capture_output=True, text=True, timeout=60)


def status(run):
    got = ctl("status", "--json", run=run)
    return json.loads(got.stdout) if got.returncode == 0 else None


def servers_up(s):
    return [n for n in s["nodes"] if n["info"]["role"] == "SERVER" and not n["dead"]]


def handoff_pauses(scheduler_log, after):
    """Seconds each batch of hand-offs took, from the view that marked it to the one that switched it: what a
    request touching those shards waits at most (the scheduler logs each advance with the count handing off)."""
    pauses, started = [], None
    advance = re.compile(r"shard moves advanced; \d+ still moving, (\d+) of them handing off")
    for line in read(scheduler_log).splitlines():
        m, stamp = advance.search(line), STAMP.match(line)
        if not m or not stamp:
            continue
        t = datetime.datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
        if t < after:
            continue
        if int(m.group(1)) > 0 and started is None:
            started = t
        elif int(m.group(1)) == 0 and started is not None:
            pauses.append(t - started)
            started = None
    return pauses


def worker_rows(run):
    """(unix_time, examples_per_sec, longest_step_s) of every progress line of every worker."""
    rows = []
    for name in sorted(os.listdir(run)):
        if name.startswith("worker-") and name.endswith(".csv"):
            lines = read(os.path.join(run, name)).splitlines()
            header = lines[0].split(",")
            for line in lines[1:]:
                r = dict(zip(header, line.split(",")))
                rows.append((float(r["unix_time"]), float(r["examples_per_sec"]), float(r["longest_step_s"]), name))
    return rows


def move_bench(tmp, keys, add, chart, sets=(), tag=""):
    """A job on keys 1..`keys` (one row each) and 2 servers: drain server-1, then scale back to 2 servers.
    `sets` are extra settings; `tag` goes into the records' names (after the rows)."""
    plugin = build_counter_plugin(tmp)
    data = os.path.join(tmp, f"keys{keys}.svm")
    with open(data, "w") as f:
        for start in range(1, keys + 1, 100000):
            f.write("".join(f"1 {i}:1\n" for i in range(start, min(keys, start + 99999) + 1)))
    test = os.path.join(tmp, "keys-test.svm")
    with open(test, "w") as f:
        f.write("".join(f"1 {i}:1\n" for i in range(1, 1001)))
    cfg = os.path.join(tmp, f"moves{keys}.yaml")
    with open(cfg, "w") as f:
        f.write(f"""cluster: {{scheduler: "127.0.0.1:0", servers: 2, workers: 2, heartbeat_interval: 0.2}}
server: {{threads: 1}}
data: {{train: "{data}", test: "{test}", format: libsvm, batch_size: 1000, epochs: {32 if keys <= 500000 else 8 if keys <= 2000000 else 4}}}
model: {{plugin: "{plugin}"}}
worker: {{audit: 1}}
log: {{progress_interval: 0.1}}
""")
    run = os.path.join(tmp, f"moves{keys}{tag}")
    proc = launch(cfg, run, list(sets))
    million = (f"{keys // 2 // 1000000}M" if keys >= 2000000 else f"{keys // 2 // 1000}k") + tag
    try:
        # Every key has its row (the first epoch is done).
        wait_for(lambda: (s := status(run)) and sum(int(n["rows_held"]) for n in servers_up(s)) >= keys, 1800,
                 "every key's row")
        before = status(run)
        moving = next(int(n["rows_held"]) for n in servers_up(before) if n["info"]["rank"] == 1)
        drain_at = time.time()
        got = ctl("drain", "server-1", run=run)
        assert got.returncode == 0, got.stderr
        wait_for(lambda: first_line_time(os.path.join(run, "scheduler.log"), "is drained", drain_at), 600, "the drain")
        drained_at = first_line_time(os.path.join(run, "scheduler.log"), "is drained", drain_at)
        # Back to 2 servers: the launcher starts one (--join); half the rows move to it.
        join_at = time.time()
        got = ctl("scale", "--servers", "2", run=run)
        assert got.returncode == 0, got.stderr
        wait_for(lambda: (s := status(run)) and len(servers_up(s)) == 2 and s["shards_moving"] == 0
                 and all(int(n["rows_held"]) > 0 for n in servers_up(s)), 600, "the join's moves")
        joined_at = time.time()  # an upper bound: status is polled
        after = status(run)
        joined = next(int(n["rows_held"]) for n in servers_up(after) if n["info"]["rank"] != 0)  # a free rank: 1
        proc.wait(timeout=1800)  # the job ends by itself: its audit says whether anything was lost
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait()
    scheduler = os.path.join(run, "scheduler.log")
    # From the registration of the server the launcher started (its start-up,
    # a second or so, is not the move's).
    joined_log = first_line_time(scheduler, "joined the running job", join_at)
    moves = [t for t in (first_line_time(scheduler, "; 0 still moving", joined_log),) if t]
    join_done = moves[0] if moves else joined_at
    s = json.loads(read(os.path.join(run, "summary.json")))
    add(f"shard_move_{million}_rows_job_exact", "bool",
        1.0 if s["status"] == "ok" and s.get("audit_counts") == s["worker_steps"] else 0.0)
    add(f"shard_move_drain_{million}_rows_seconds", "s", drained_at - drain_at)
    add(f"shard_move_drain_{million}_seconds_per_1M_rows", "s", (drained_at - drain_at) / (moving / 1e6))
    add(f"shard_move_join_{million}_server_start_seconds", "s", joined_log - join_at)
    add(f"shard_move_join_{million}_rows_seconds", "s", join_done - joined_log)
    add(f"shard_move_join_{million}_seconds_per_1M_rows", "s", (join_done - joined_log) / (joined / 1e6))
    pauses = handoff_pauses(scheduler, drain_at)
    add(f"shard_move_{million}_handoff_batches", "batches", float(len(pauses)))
    add(f"shard_move_{million}_longest_handoff_seconds", "s", max(pauses) if pauses else 0.0)
    rows = worker_rows(run)
    quiet = [r[2] for r in rows if drain_at - 3 <= r[0] < drain_at]
    during = [r[2] for r in rows if drain_at <= r[0] <= drained_at + 0.3 or join_at <= r[0] <= join_done + 0.3]
    add(f"shard_move_{million}_longest_step_before_seconds", "s", max(quiet) if quiet else 0.0)
    add(f"shard_move_{million}_longest_step_during_seconds", "s", max(during) if during else 0.0)
    add(f"shard_move_{million}_longest_step_during_vs_100ms", "ratio", (max(during) if during else 0.0) / 0.1)
    if chart:
        draw_moves(rows, {"drain server-1": drain_at, "server-1 drained": drained_at, "scale to 2 (join)": join_at,
                          "moves done": join_done}, chart, f"{keys:,} rows, 2 servers, 2 workers")


def draw_moves(rows, events, path, title):
    """Total examples/s of the workers over time, the moves marked."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    t0 = min(r[0] for r in rows)
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for name in sorted({r[3] for r in rows}):
        mine = [r for r in rows if r[3] == name]
        ax.plot([r[0] - t0 for r in mine], [r[1] for r in mine], marker=".", label=name[:-4])
        ax2.plot([r[0] - t0 for r in mine], [1000 * r[2] for r in mine], marker=".", label=name[:-4])
    top = ax.get_ylim()[1]
    for i, (label, t) in enumerate(events.items()):
        for a in (ax, ax2):
            a.axvline(t - t0, color="gray", linestyle="--")
        # Staggered: the events come a fraction of a second apart.
        ax.annotate(label, (t - t0, top * (0.97 - 0.16 * i)), va="top", ha="left", fontsize=8,
                    bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none"})
    ax.set_ylabel("examples/s (per worker)")
    ax2.set_ylabel("longest step (ms)")
    ax2.set_xlabel("seconds")
    ax.set_title(f"Live shard moves: {title}")
    ax.legend()
    ax.grid(alpha=0.3)
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def launch(cfg, run, sets):
    cmd = [sys.executable, LAUNCHER, "launch", cfg, "--run-dir", run, "--quiet"]
    for s in sets:
        cmd += ["--set", s]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def main():
    train, test, out = sys.argv[1:4]
    quick = "--quick" in sys.argv
    chart = sys.argv[sys.argv.index("--chart") + 1] if "--chart" in sys.argv else None
    only_moves = "--only-moves" in sys.argv
    records = []

    def add(name, unit, value):
        records.append({"name": name, "unit": unit, "value": value})
        print(f"{name:<52} {value:12.3f} {unit}", flush=True)

    with tempfile.TemporaryDirectory(prefix="sparta-elastic-bench-") as tmp:
        if os.environ.get("SPARTA_KEEP_TEST_DIRS"):  # the runs' logs, for a look afterwards
            tmp = tempfile.mkdtemp(prefix="sparta-elastic-bench-kept-")
            print(f"keeping {tmp}")
        # --stream-rate R: the paced runs at server.stream_rate R instead of the default.
        rate = ([f"server.stream_rate={sys.argv[sys.argv.index('--stream-rate') + 1]}"]
                if "--stream-rate" in sys.argv else [])
        # --quick checks the driver end to end (CI's bench.smoke), so its
        # moves are a quarter of the size the reported figures use.
        sizes = (500000,) if quick else (2000000, 20000000)
        for keys in sizes:
            move_bench(tmp, keys, add, chart if keys == sizes[0] else None, rate)
        # The reference in the same run: streams at full speed (server.stream_rate 0).
        move_bench(tmp, sizes[0], add, None, ["server.stream_rate=0"], "_unpaced")
        if only_moves:
            with open(out, "w") as f:
                json.dump(records, f, indent=1)
            return
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
