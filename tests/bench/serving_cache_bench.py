#!/usr/bin/env python3
"""The row cache of a serving cluster's front-end (serving.shards: 2,
serving.cache): fm trained one pass on generated Criteo-like data, the
whole test file scored by `sparta-ctl predict` (ZeroMQ, batches of 100, 4
in flight) with the cache at 1%, 10% and 30% of the model's rows, and at
200% (every row, with room to spare: the cache is split in 64 parts by
key, which do not fill evenly). The file is scored twice: the first pass
fills the cache, the second is measured. For each size: the second pass's
hit rate (the front-end's /metrics), also as a fraction of the 200%
cache's (which then holds every row the file uses: the most any cache can
hit), and its lines/s against the embedded front-end (sparta-serve
holding every row itself) scoring the same file in the same run; and the
first pass's lines/s. Every run's predictions must equal the embedded
one's.

  serving_cache_bench.py TRAIN TEST JSON_OUT [--quick]
"""

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAUNCHER = os.path.join(ROOT, "scripts", "sparta")
BIN = os.environ.get("SPARTA_BIN", os.path.join(ROOT, "build", "bin"))
sys.path.insert(0, os.path.join(ROOT, "tests", "bench"))
from serving_bench import PORTS_FROM_INFO, listening  # noqa: E402

DIM = 8
# worker/serving/row_cache.cc: a cached row's floats (fm.wv: DIM + 1), its
# key twice, its slot, the index's control byte and slack, its mark.
CACHED_ROW_BYTES = (DIM + 1) * 4 + 2 * 8 + 4 + 8 + 1


def score(test, zmq_url):
    """Scores the file; returns (predictions, seconds)."""
    start = time.monotonic()
    out = subprocess.run([os.path.join(BIN, "sparta-ctl"), "predict", test, "--serve",
                          zmq_url, "--model", "fm", "--batch", "100"],
                         check=True, capture_output=True, text=True).stdout
    return out, time.monotonic() - start


def cache_counts(url):
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    counts = {}
    for line in text.splitlines():
        for name in ("hits", "misses"):
            if line.startswith(f"sparta_serving_cache_{name}_total"):
                counts[name] = float(line.split()[-1])
    return counts["hits"], counts["misses"]


def main():
    train, test, json_out = sys.argv[1:4]
    records = []
    procs = []
    try:
        with tempfile.TemporaryDirectory(prefix="sparta-serving-cache-bench-") as tmp:
            config = os.path.join(tmp, "fm.yaml")
            with open(config, "w") as f:
                f.write(f"cluster: {{scheduler: '127.0.0.1:0', servers: 1, workers: 1}}\n"
                        f"data: {{train: {train}, test: {test}, batch_size: 512, epochs: 1}}\n"
                        f"model: {{name: fm, embedding_dim: {DIM}}}\noptimizer: {{name: adagrad}}\n"
                        f"storage: {{path: {os.path.join(tmp, 'store')}}}\nlog: {{level: warn}}\n")
            run = os.path.join(tmp, "train")
            subprocess.run([sys.executable, LAUNCHER, "launch", config, "--run-dir", run, "--quiet"], check=True)
            with open(os.path.join(run, "summary.json")) as f:
                rows = json.load(f)["server_rows"]

            info, log = os.path.join(tmp, "serve.info.json"), os.path.join(tmp, "serve.log")
            embedded = subprocess.Popen([os.path.join(BIN, "sparta-serve"), "--config", config, "--info-file", info,
                                         "--set", "serving.model=latest"] + PORTS_FROM_INFO, stderr=open(log, "w"))
            procs.append(embedded)
            _, zmq_url = listening(info, embedded, log)
            score(test, zmq_url)  # as the cluster's: the second pass is measured
            reference, seconds = score(test, zmq_url)
            lines = len(reference.splitlines())
            embedded_rate = lines / seconds
            embedded.terminate()
            embedded.wait()
            print(f"embedded front-end: {embedded_rate:.0f} lines/s ({rows} rows, {lines} lines)")
            records.append({"name": "serving_cache_embedded_lines_per_sec", "unit": "lines/s",
                            "value": embedded_rate})

            results = {}
            for percent in (1, 10, 30, 200):
                cache = max(1, rows * CACHED_ROW_BYTES * percent // 100)
                run = os.path.join(tmp, f"cache-{percent}")
                cluster = subprocess.Popen([sys.executable, LAUNCHER, "serve", config, "--shards", "2", "--quiet",
                                            "--run-dir", run, "--set", "serving.model=latest",
                                            "--set", f"serving.cache={cache}"] + PORTS_FROM_INFO,
                                           stdout=subprocess.DEVNULL)
                procs.append(cluster)
                url, zmq_url = listening(os.path.join(run, "serve-0.info.json"), cluster,
                                         os.path.join(run, "serve-0.log"))
                # The first pass fills the cache; the second is measured.
                passes = []
                for _ in range(2):
                    served, seconds = score(test, zmq_url)
                    if served != reference:
                        sys.exit(f"serving_cache_bench: the cache at {percent}% served other predictions")
                    passes.append((cache_counts(url), seconds))
                cluster.terminate()
                cluster.wait()
                (hits0, misses0), _ = passes[0]
                (hits1, misses1), seconds = passes[1]
                hits, misses = hits1 - hits0, misses1 - misses0
                results[percent] = (hits / max(1.0, hits + misses), lines / seconds, lines / passes[0][1])
            best = results[200][0]
            for percent, (hit_rate, rate, first) in results.items():
                print(f"cache {percent:3d}% of the rows: hit rate {hit_rate:.3f} ({hit_rate / best:.2f} of the "
                      f"full cache's), {rate:.0f} lines/s = {rate / embedded_rate:.2f}x embedded "
                      f"(first pass, filling the cache: {first / embedded_rate:.2f}x)")
                records += [
                    {"name": f"serving_cache_{percent}pct_hit_rate", "unit": "ratio", "value": hit_rate},
                    {"name": f"serving_cache_{percent}pct_hit_rate_vs_full", "unit": "ratio", "value": hit_rate / best},
                    {"name": f"serving_cache_{percent}pct_speed_vs_embedded", "unit": "ratio",
                     "value": rate / embedded_rate},
                    {"name": f"serving_cache_{percent}pct_first_pass_speed_vs_embedded", "unit": "ratio",
                     "value": first / embedded_rate}]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    with open(json_out, "w") as f:
        json.dump(records, f, indent=1)


if __name__ == "__main__":
    main()
