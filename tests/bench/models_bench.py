#!/usr/bin/env python3
"""Sparta's built-in models against the same models written plainly in
PyTorch (scripts/bench/torch_ctr.py), on the same machine and data: 1 worker
+ 1 server, batch 4096, one pass, sparse Adagrad (0.05, accumulator 0.1) and
dense Adam (0.001), embeddings of 8, dnn MLPs [32, 8] and [128, 64]. Reports
examples/s of both (the best of their runs, as the machine is shared) with
their ratio, and the test AUC of both for initializer seeds 1-3 and their
mean. PyTorch starts from exactly Sparta's initial weights (torch_ctr.py
--init sparta): one pass leaves fm's AUC depending on its initial weights by
±0.02, so only the same start makes the AUCs comparable run by run.

  models_bench.py TRAIN TEST JSON_OUT [--quick]

Without PyTorch (Debian's python3-torch) only Sparta's side is measured.
"""

import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAUNCHER = os.path.join(ROOT, "scripts", "sparta")
TORCH_SCRIPT = os.path.join(ROOT, "scripts", "bench", "torch_ctr.py")
MODELS = ["lr", "fm", "dnn"]
SETTINGS = ["cluster.servers=1", "cluster.workers=1", "data.batch_size=4096", "data.epochs=1",
            "optimizer.name=adagrad", "optimizer.learning_rate=0.05", "optimizer.initial_accumulator=0.1",
            "optimizer.dense_name=adam", "optimizer.dense_learning_rate=0.001", "model.embedding_dim=8",
            "model.init_scale=0.01", "model.bottom_mlp=[32,8]", "model.top_mlp=[128,64]", "worker.threads=1"]


SEEDS = [1, 2, 3]


def sparta(model, train, test, folder, seed, extra=()):
    """One Sparta run with SETTINGS plus `extra` overrides; its figures and run folder."""
    run = os.path.join(folder, "-".join([model, str(seed)] + [e.split("=")[-1] for e in extra]))
    cmd = [sys.executable, LAUNCHER, "launch", os.path.join(ROOT, "configs", "quickstart.yaml"), "--quiet",
           "--run-dir", run, "--set", "cluster.scheduler=127.0.0.1:0", "--set", f"model.name={model}",
           "--set", f"data.train={train}", "--set", f"data.test={test}", "--set", f"model.seed={seed}"]
    for s in SETTINGS + list(extra):
        cmd += ["--set", s]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(run, "summary.json")) as f:
        s = json.load(f)
    return {"examples_per_sec": s["examples_per_sec"], "auc": s["auc"], "run": run}


def have_torch():
    return subprocess.run(["/usr/bin/python3", "-c", "import torch"], capture_output=True).returncode == 0


def torch_reference(train, test, seeds):
    out = subprocess.run(["/usr/bin/python3", TORCH_SCRIPT, "--train", train, "--test", test,
                          "--seeds", ",".join(map(str, seeds)), "--init", "sparta"], check=True, capture_output=True, text=True).stdout
    return {r["model"]: r for r in map(json.loads, out.splitlines())}


def main():
    train, test, out = sys.argv[1:4]
    quick = "--quick" in sys.argv
    seeds = SEEDS[:1] if quick else SEEDS
    records = []
    with tempfile.TemporaryDirectory(prefix="sparta-models-") as folder:
        runs = {m: [] for m in MODELS}
        reference = {}
        torch_ok = not quick and have_torch()
        for seed in seeds:
            for m in MODELS:
                runs[m].append(sparta(m, train, test, folder, seed))
        if torch_ok:
            reference = torch_reference(train, test, seeds)
        elif not quick:
            print("models: PyTorch (python3-torch) is not installed; measuring Sparta only", file=sys.stderr)
        auc = {m: sum(r["auc"] for r in runs[m]) / len(runs[m]) for m in MODELS}
        for m in MODELS:
            best = dict(max(runs[m], key=lambda x: x["examples_per_sec"]), auc=auc[m])
            line = f"{'train_' + m + '_1w1s_b4096':40s} {best['examples_per_sec']:14.0f} examples/s  AUC {best['auc']:.5f}"
            line += " (" + " ".join(f"{r['auc']:.4f}" for r in runs[m]) + ")"
            records.append({"name": f"model_{m}_examples_per_sec", "unit": "examples/s",
                            "value": best["examples_per_sec"]})
            records.append({"name": f"model_{m}_auc", "unit": "AUC", "value": best["auc"]})
            if m in reference:
                ref = reference[m]
                ratio = best["examples_per_sec"] / ref["examples_per_sec"]
                line += (f" | PyTorch {ref['examples_per_sec']:9.0f} examples/s AUC {ref['auc']:.5f}"
                         f" ({' '.join(f'{a:.4f}' for a in ref['aucs'])})"
                         f" | {ratio:.2f}x, AUC {best['auc'] - ref['auc']:+.4f}")
                records.append({"name": f"torch_{m}_examples_per_sec", "unit": "examples/s",
                                "value": ref["examples_per_sec"]})
                records.append({"name": f"torch_{m}_auc", "unit": "AUC", "value": ref["auc"]})
                records.append({"name": f"model_{m}_speedup_vs_torch", "unit": "x", "value": ratio})
            print(line, flush=True)
        print(f"quality: dnn AUC - lr AUC = {auc['dnn'] - auc['lr']:+.4f}, fm AUC - lr AUC = {auc['fm'] - auc['lr']:+.4f}")
    with open(out, "w") as f:
        json.dump(records, f, indent=1)


if __name__ == "__main__":
    main()
