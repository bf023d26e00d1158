#!/usr/bin/env python3
"""Tables larger than memory: fm on Zipf data (exponent 1.1) trained with
server.memory_limit at 100%, 30% and 10% of the table's DRAM, against the
unbounded run in the same benchmark run (examples/s ratio, peak resident
memory against limit + the README's fixed overhead), the default eviction
policy (s3fifo) against lru at 10% (rows read back, speed), and admission
min_count 2 against none (rows created, test AUC).

  tiering_bench.py JSON_OUT [--quick] [--rows N] [--percents 100,30,10] [--speed-only]

--rows sets the training examples (default 5M, 150k with --quick);
--percents the hot fractions to run; --speed-only leaves out the lru and
admission runs (a machine lent for minutes measures the speed alone).

The table's DRAM is the unbounded run's rows times the bytes per row that
`sparta-ctl plan` measures on the server's own structures.
"""

import json
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("SPARTA_BIN", os.path.join(ROOT, "build", "bin"))
LAUNCHER = os.path.join(ROOT, "scripts", "sparta")
MiB = 1 << 20
FIXED_OVERHEAD = 96 * MiB  # README: what the limit does not cover, besides requests in flight
BATCH, FIELDS, DIM, MAX_INFLIGHT = 2048, 39, 16, 4
# README: requests in flight, (worker.max_inflight + 2) x a batch's keys x
# (12 (dim + 1) + 12) bytes (a batch has at most one key per field and example).
REQUEST_BYTES = (MAX_INFLIGHT + 2) * BATCH * FIELDS * (12 * (DIM + 1) + 12)


def run_job(folder, name, cfg, sets):
    run = os.path.join(folder, name)
    cmd = [sys.executable, LAUNCHER, "launch", cfg, "--run-dir", run, "--quiet"]
    for s in sets:
        cmd += ["--set", s]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(run, "summary.json")) as f:
        s = json.load(f)
    with open(os.path.join(run, "server-0.log")) as f:
        log = f.read()
    s["peak_bytes"] = int(re.search(r"peak resident memory (\d+) MiB", log).group(1)) * MiB
    admitted = re.search(r"table 'fm.wv': .* (\d+) admitted", log)
    s["admitted"] = int(admitted.group(1)) if admitted else None
    moved = re.search(r"table 'fm.wv': .* (\d+) demoted, (\d+) promoted", log)
    s["demoted"], s["promoted"] = (int(moved.group(1)), int(moved.group(2))) if moved else (0, 0)
    return s


def option(name, default):
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


def main():
    out_path, quick = sys.argv[1], "--quick" in sys.argv
    rows = 150000 if quick else 5000000  # --quick: the driver end to end
    rows = int(option("--rows", rows))
    percents = [int(p) for p in option("--percents", "100,30,10").split(",")]
    speed_only = "--speed-only" in sys.argv
    records = []
    with tempfile.TemporaryDirectory(prefix="sparta-tiering-bench-") as folder:
        train, test = os.path.join(folder, "train.txt"), os.path.join(folder, "test.txt")
        subprocess.run([os.path.join(BIN, "sparta-datagen"), "--train-rows", str(rows), "--test-rows",
                        str(rows // 20), "--train", train, "--test", test, "--zipf", "1.1",
                        "--vocab", "100000000", "--seed", "21"], check=True)
        cfg = os.path.join(folder, "job.yaml")
        with open(cfg, "w") as f:
            f.write(f"""cluster: {{scheduler: "127.0.0.1:0", servers: 1, workers: 1}}
server: {{threads: 2}}
data: {{train: "{train}", test: "{test}", batch_size: {BATCH}}}
model: {{name: fm, embedding_dim: {DIM}}}
worker: {{max_inflight: {MAX_INFLIGHT}}}
""")
        free = run_job(folder, "unbounded", cfg, [])
        plan = subprocess.run([os.path.join(BIN, "sparta-ctl"), "plan", cfg, "--keys", str(free["server_rows"]),
                               "--set", "server.memory_limit=1GiB"], check=True, capture_output=True, text=True).stdout
        m = re.search(r"fm\.wv\s+sparse\s+\d+\s+([0-9.]+) B", plan)
        table_bytes = float(m.group(1)) * free["server_rows"]
        print(f"unbounded: {free['server_rows']} rows, {table_bytes / MiB:.0f} MiB of table, "
              f"{free['examples_per_sec']:.0f} examples/s, peak {free['peak_bytes'] / MiB:.0f} MiB")
        records.append({"name": "tiering_unbounded_examples_per_sec", "unit": "examples/s",
                        "value": free["examples_per_sec"]})
        tiered_runs = {}
        for percent in percents:
            # The limit also holds RocksDB's share and buffers (see
            # server/memory_budget.h): sized so the hot rows get `percent`.
            limit = int(table_bytes * percent / 100 / (1 - 1 / 8 - 1 / 16)) + 1
            limit = max(limit, 16 * MiB)
            tiered = run_job(folder, f"limit{percent}", cfg, [f"server.memory_limit={limit}"])
            tiered_runs[percent] = (limit, tiered)
            ratio = tiered["examples_per_sec"] / free["examples_per_sec"]
            # The unbounded run writes every row at its final checkpoint; a
            # tiered run has written most of them as they went cold.
            job_ratio = ((free["train_seconds"] + free["checkpoint_seconds"]) /
                         (tiered["train_seconds"] + tiered["checkpoint_seconds"]))
            same = tiered["auc"] == free["auc"]
            print(f"memory_limit {limit / MiB:.0f} MiB ({percent}% of the table hot): "
                  f"{tiered['examples_per_sec']:.0f} examples/s = {ratio:.2f}x unbounded "
                  f"({job_ratio:.2f}x counting the final checkpoint); peak "
                  f"{tiered['peak_bytes'] / MiB:.0f} MiB (README bound {(limit + FIXED_OVERHEAD + REQUEST_BYTES) / MiB:.0f} MiB); "
                  f"AUC {'identical' if same else 'DIFFERS'}")
            records.append({"name": f"tiering_{percent}pct_hot_speed_vs_unbounded", "unit": "ratio", "value": ratio})
            records.append({"name": f"tiering_{percent}pct_hot_job_speed_vs_unbounded", "unit": "ratio",
                            "value": job_ratio})
            records.append({"name": f"tiering_{percent}pct_hot_peak_over_limit_plus_overhead", "unit": "ratio",
                            "value": tiered["peak_bytes"] / (limit + FIXED_OVERHEAD + REQUEST_BYTES)})
        if 10 in tiered_runs and not speed_only:
            # The default eviction policy (s3fifo) against lru at 10% hot: rows
            # read back from the cold tier and written to it, and the speed.
            limit, s3fifo = tiered_runs[10]
            lru = run_job(folder, "limit10-lru", cfg, [f"server.memory_limit={limit}", "embedding.eviction.policy=lru"])
            print(f"10% hot, eviction lru against s3fifo: {lru['promoted']} vs {s3fifo['promoted']} rows read back "
                  f"({lru['promoted'] / max(1, s3fifo['promoted']):.2f}x), {lru['demoted']} vs {s3fifo['demoted']} "
                  f"written; lru {lru['examples_per_sec'] / free['examples_per_sec']:.2f}x unbounded; "
                  f"AUC {'identical' if lru['auc'] == free['auc'] else 'DIFFERS'}")
            records.append({"name": "tiering_10pct_hot_lru_rows_read_back_vs_s3fifo", "unit": "ratio",
                            "value": lru["promoted"] / max(1, s3fifo["promoted"])})
            records.append({"name": "tiering_10pct_hot_lru_speed_vs_unbounded", "unit": "ratio",
                            "value": lru["examples_per_sec"] / free["examples_per_sec"]})
        if not speed_only:
            # Counters sized by the README's rule: 8 bytes per distinct key seen.
            counter_mib = (8 * free["server_rows"] >> 20) + 1
            admitted = run_job(folder, "admission2", cfg, ["embedding.admission.min_count=2",
                                                           f"embedding.admission.counter_bytes={counter_mib}MiB"])
            cut = free["server_rows"] / max(1, admitted["server_rows"])
            print(f"admission min_count 2 ({counter_mib} MiB of counters): {admitted['server_rows']} rows vs "
                  f"{free['server_rows']} ({cut:.2f}x fewer); "
                  f"AUC {admitted['auc']:.5f} vs {free['auc']:.5f} ({admitted['auc'] - free['auc']:+.5f})")
            records.append({"name": "tiering_admission2_rows_cut", "unit": "ratio", "value": cut})
            records.append({"name": "tiering_admission2_auc_delta", "unit": "auc", "value": admitted["auc"] - free["auc"]})
    with open(out_path, "w") as f:
        json.dump(records, f, indent=1)


if __name__ == "__main__":
    main()
