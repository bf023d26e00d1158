#!/usr/bin/env python3
"""dnn on one GPU worker against the CPU worker and against the same model in
PyTorch on that GPU (scripts/bench/torch_ctr.py --device cuda), same data,
batch, settings and seed (1); servers on the same machine. Also the share of the
worker's training time spent waiting on the network (its log's
"training done" line).

    gpu_models_bench.py TRAIN TEST OUT.json
"""
import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from models_bench import TORCH_SCRIPT, sparta  # noqa: E402

DONE = re.compile(r"training done: \d+ examples in [\d.]+ s \(([\d.]+) ex/s\) on (\w+).*?([\d.]+)% of the time waiting")


def log_tails(run, lines=20):
    """The end of each daemon's log in a run folder: what a failed run on a
    borrowed machine leaves behind once its folder is gone."""
    text = []
    for name in sorted(os.listdir(run)) if os.path.isdir(run) else []:
        if name.endswith(".log"):
            with open(os.path.join(run, name), errors="replace") as f:
                text.append(f"--- {name}\n" + "".join(f.readlines()[-lines:]))
    return "\n".join(text)


def sparta_dnn(backend, train, test, folder):
    extra = [f"worker.backend={backend}"]
    try:
        result = sparta("dnn", train, test, folder, 1, extra)
    except subprocess.CalledProcessError:
        run = os.path.join(folder, "-".join(["dnn", "1", backend]))
        raise SystemExit(f"gpu bench: the {backend} run failed\n{log_tails(run)}")
    with open(os.path.join(result["run"], "worker-0.log")) as f:
        match = DONE.search(f.read())
    if match is None or match.group(2) != backend:
        raise SystemExit(f"gpu bench: the {backend} run did not train on {backend}\n{log_tails(result['run'])}")
    return {**result, "network_wait_share": float(match.group(3)) / 100}


def machine_env():
    """The environment without the Sparta bundle's libraries (run-gpu-checks.sh
    puts them on LD_LIBRARY_PATH for Sparta's programs): PyTorch loads the
    machine's own."""
    env = dict(os.environ)
    bundle_lib = env.pop("SPARTA_BUNDLE_LIB", None)
    if bundle_lib:
        kept = [p for p in env.get("LD_LIBRARY_PATH", "").split(":") if p and p != bundle_lib]
        env["LD_LIBRARY_PATH"] = ":".join(kept)
    return env


def torch_gpu(train, test):
    env = machine_env()
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    for candidate in (python, sys.executable):
        if subprocess.run([candidate, "-c", "import torch; assert torch.cuda.is_available()"],
                          capture_output=True, env=env).returncode == 0:
            out = subprocess.run([candidate, TORCH_SCRIPT, "--train", train, "--test", test, "--models", "dnn",
                                  "--device", "cuda", "--seeds", "1", "--init", "sparta"],
                                 check=True, capture_output=True, text=True, env=env).stdout
            return json.loads(out.splitlines()[-1])
    return None


def main():
    train, test, out = sys.argv[1:4]
    with tempfile.TemporaryDirectory(prefix="sparta-gpu-bench-") as folder:
        cpu = sparta_dnn("cpu", train, test, folder)
        gpu = sparta_dnn("cuda", train, test, folder)
    ref = torch_gpu(train, test)
    records = [
        {"name": "train_dnn_cpu_worker", "unit": "examples/s", "value": cpu["examples_per_sec"], "auc": cpu["auc"],
         "network_wait_share": cpu["network_wait_share"]},
        {"name": "train_dnn_gpu_worker", "unit": "examples/s", "value": gpu["examples_per_sec"], "auc": gpu["auc"],
         "network_wait_share": gpu["network_wait_share"]},
        {"name": "gpu_worker_vs_cpu_worker", "unit": "x", "value": gpu["examples_per_sec"] / cpu["examples_per_sec"]},
    ]
    print(f"dnn CPU worker {cpu['examples_per_sec']:.0f} ex/s (AUC {cpu['auc']:.4f}, "
          f"{100 * cpu['network_wait_share']:.1f}% waiting on the network)")
    print(f"dnn GPU worker {gpu['examples_per_sec']:.0f} ex/s (AUC {gpu['auc']:.4f}, "
          f"{100 * gpu['network_wait_share']:.1f}% waiting on the network), "
          f"{gpu['examples_per_sec'] / cpu['examples_per_sec']:.2f}x the CPU worker")
    if ref is None:
        print("gpu bench: no PyTorch with CUDA here; the PyTorch reference is skipped")
    else:
        ratio = gpu["examples_per_sec"] / ref["examples_per_sec"]
        records += [{"name": "train_dnn_torch_gpu", "unit": "examples/s", "value": ref["examples_per_sec"],
                     "auc": ref["auc"]},
                    {"name": "gpu_worker_vs_torch_gpu", "unit": "x", "value": ratio}]
        print(f"dnn PyTorch on the GPU {ref['examples_per_sec']:.0f} ex/s (AUC {ref['auc']:.4f}); "
              f"Sparta's GPU worker {ratio:.2f}x")
    with open(out, "w") as f:
        json.dump(records, f, indent=1)


if __name__ == "__main__":
    main()
