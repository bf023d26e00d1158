#!/usr/bin/env python3
"""Freshness benchmark: how soon a running job's training shows in served
predictions. A job follows a folder (data.follow) and makes a new model
version every INTERVAL seconds; sparta-serve follows it (serving.model:
latest, polled every 0.1 s). Each probe drops a file whose lines all carry
one key never seen before into the folder, and asks sparta-serve, every
10 ms, for the prediction of a line with that key and of a line with no key
in the same request: once they differ, the served version holds the key's
trained weight. Freshness is the time from the file's arrival (its rename
into the folder) to that answer. It bounds the issue's measure (from a
push's acknowledgement) from above: it includes the file's wait for the
next look and its training.

Three ways of serving versions, in the same run, on the same model (about
MODEL_KEYS rows, trained from a first file before the probes):
  - deltas: serving.publish_every INTERVAL (the rows changed since the
    version before, applied on top of the served version);
  - cluster: the same deltas, served by a serving cluster of 2 shards
    (scripts/sparta serve, replicated twice), started from the job's
    first checkpoint: its servers stage each delta and its scheduler
    announces the version once both hold it;
  - checkpoints: storage.checkpoint_every INTERVAL (each version loaded
    whole), what serving followed before deltas existed.

Target (issue 18): with deltas, p99 under the publishing interval + 1 s.

  freshness_bench.py JSON_OUT [--quick]
"""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAUNCHER = os.path.join(ROOT, "scripts", "sparta")
BIN = os.environ.get("SPARTA_BIN", os.path.join(ROOT, "build", "bin"))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from harness import read, wait_for  # noqa: E402

INTERVAL = 1.0  # seconds between versions


def post(url, body):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def percentile(sorted_values, q):
    return sorted_values[min(len(sorted_values) - 1, int(q * (len(sorted_values) - 1) + 0.5))]


def measure(mode, probes, model_keys):
    """Freshness of each probe (seconds), with versions made by `mode`."""
    tmp = tempfile.mkdtemp(prefix=f"sparta-freshness-{mode}-")
    incoming = os.path.join(tmp, "incoming")
    os.makedirs(incoming)
    store = os.path.join(tmp, "store")
    rng = random.Random(7)

    def arrive(name, lines):
        partial = os.path.join(incoming, "." + name)
        with open(partial, "w") as f:
            f.writelines(lines)
        os.rename(partial, os.path.join(incoming, name))
        return time.monotonic()

    # A first file of ordinary traffic, so that a model of about
    # model_keys rows exists.
    arrive("base.svm", [f"{rng.randint(0, 1)} {2 * i + 1}:1 {2 * i + 2}:1\n" for i in range(model_keys // 2)])
    versions = (f"serving: {{publish_every: {INTERVAL}s}}\nstorage: {{path: {store}}}\n" if mode != "checkpoints" else
                f"storage: {{path: {store}, checkpoint_every: {INTERVAL}s}}\n")
    config = os.path.join(tmp, "job.yaml")
    with open(config, "w") as f:
        f.write("cluster: {scheduler: '127.0.0.1:0', servers: 1, workers: 1}\n"
                f"data: {{train: {incoming}, format: libsvm, batch_size: 64, assignment: on_demand, follow: true, "
                "follow_interval: 0.1}\n"
                "model: {name: lr}\noptimizer: {name: adagrad, learning_rate: 0.5}\n"
                f"{versions}log: {{level: warn}}\n")
    run = os.path.join(tmp, "run")
    job = subprocess.Popen([sys.executable, LAUNCHER, "launch", config, "--run-dir", run, "--quiet"],
                           stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "launch.log"), "w"))
    serve = None
    try:
        if mode == "cluster":
            # A serving cluster starts from a checkpoint: the job's first.
            checkpoints = os.path.join(store, "checkpoints")
            wait_for(lambda: any(os.path.exists(os.path.join(checkpoints, name, "manifest.json"))
                                 for name in (os.listdir(checkpoints) if os.path.isdir(checkpoints) else [])),
                     300, "the job's first checkpoint")
            cluster_run = os.path.join(tmp, "serving")
            serve = subprocess.Popen([sys.executable, LAUNCHER, "serve", config, "--shards", "2", "--front-ends", "1",
                                      "--run-dir", cluster_run, "--quiet", "--set", "storage.replication_factor=2",
                                      "--set", "serving.model=latest", "--set", "serving.poll_interval=0.1",
                                      "--set", "serving.port=0", "--set", "serving.zmq_port=-1"],
                                     stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "serve.log"), "w"))
            info = os.path.join(cluster_run, "serve-0.info.json")
        else:
            info = os.path.join(tmp, "serve.json")
            serve = subprocess.Popen([os.path.join(BIN, "sparta-serve"), "--config", config, "--info-file", info,
                                      "--set", "serving.model=latest", "--set", "serving.poll_interval=0.1",
                                      "--set", "serving.port=0", "--set", "serving.zmq_port=-1"],
                                     stderr=open(os.path.join(tmp, "serve.log"), "w"))
        wait_for(lambda: os.path.exists(info), 120, "sparta-serve to listen")
        port = json.loads(read(info))["port"]
        url = f"http://127.0.0.1:{port}/v1/models/lr:predict"

        def served_keys():
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
                for line in answer.read().decode().splitlines():
                    if line.startswith("sparta_serving_model_rows"):
                        return float(line.split()[-1])
            return 0

        # The base file trained and served: the model has its size. A
        # serving cluster's front-end holds only a cache: there, the last
        # key of the base file is served trained.
        if mode != "cluster":
            wait_for(lambda: served_keys() >= 0.9 * model_keys, 300, "the base model to be served")
        else:
            last = {"instances": [f"1 {model_keys}:1", "1"]}
            wait_for(lambda: (lambda p: p[0] != p[1])(post(url, last)["predictions"]), 300,
                     "the base model to be served")
        freshness = []
        for k in range(probes):
            key = 10_000_000 + k  # never seen: its weight starts at the initializer's
            probe = {"instances": [f"1 {key}:1", "1"]}
            before = post(url, probe)["predictions"]
            if before[0] != before[1]:
                raise SystemExit(f"freshness_bench: key {key} is trained before its file arrived")
            arrived = arrive(f"probe-{k}.svm", [f"1 {key}:1\n"] * 200)
            while True:
                answer = post(url, probe)["predictions"]
                if answer[0] != answer[1]:
                    break
                if time.monotonic() - arrived > 60:
                    raise SystemExit(f"freshness_bench: key {key} not served within 60 s")
                time.sleep(0.01)  # the probe's polling period, not a synchronization
            freshness.append(time.monotonic() - arrived)
            print(f"{mode} probe {k}: {freshness[-1]:.3f} s from arrival to a served prediction that uses it",
                  flush=True)
        return sorted(freshness)
    finally:
        if serve is not None and serve.poll() is None:
            serve.terminate()  # a serving cluster's launcher stops its daemons
            serve.wait()
        if job.poll() is None:
            subprocess.run([os.path.join(BIN, "sparta-ctl"), "stop", "--run", run], capture_output=True, timeout=60)
            try:
                job.wait(timeout=120)
            except subprocess.TimeoutExpired:
                job.send_signal(signal.SIGKILL)
        if not os.environ.get("SPARTA_KEEP_TEST_DIRS"):
            shutil.rmtree(tmp, ignore_errors=True)


def main():
    json_out = sys.argv[1]
    quick = "--quick" in sys.argv
    probes = 5 if quick else 20
    model_keys = 200_000 if quick else 2_000_000
    limit = INTERVAL + 1.0
    summary = {"model_rows": model_keys, "freshness_limit_s": limit, "probes": probes}
    for mode in ("deltas", "cluster", "checkpoints"):
        freshness = measure(mode, probes, model_keys)
        prefix = {"deltas": "freshness_", "cluster": "freshness_cluster_", "checkpoints": "freshness_checkpoints_"}[mode]
        summary.update({prefix + "p50_s": percentile(freshness, 0.5), prefix + "p99_s": percentile(freshness, 0.99),
                        prefix + "max_s": freshness[-1],
                        prefix + "p99_vs_limit": percentile(freshness, 0.99) / limit})
    with open(json_out, "w") as f:
        json.dump([{"name": "serving_" + k, "unit": "s" if k.endswith("_s") else "", "value": v}
                   for k, v in summary.items()], f, indent=1)
    print("freshness:", json.dumps(summary))


if __name__ == "__main__":
    main()
