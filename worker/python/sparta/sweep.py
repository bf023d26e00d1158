"""Experiments in parallel: every combination of a grid of config overrides
run as its own job, a table of their results, a chart, and the best run.

    import sparta
    rows = sparta.sweep("configs/quickstart.yaml", {"model.name": ["lr", "fm"],
                                                    "optimizer.learning_rate": ["0.05", "0.1"]}, parallel=2)

or `scripts/sparta sweep CONFIG --grid model.name=lr,fm --grid ... [--parallel N] [--slurm]`.

Each run is `scripts/sparta launch CONFIG --set KEY=VALUE ...` in its own run
folder (SWEEP_DIR/run-NNN): the launcher, not a second implementation of it.
Locally, `parallel` runs at a time (each picks its own free ports when the
config's scheduler port is 0); with `slurm`, one `sbatch --array` job whose
tasks each launch their run inside their own allocation (--slurm), at most
`parallel` at once.

A run that fails is a row with status "failed" (and why), not the end of the
sweep. Ctrl-C stops every run (their launchers stop their daemons) and ends
the sweep with the rows it has. SWEEP_DIR/sweep.csv holds the table
(the overrides, status, auc, logloss, examples/s, run folder), and
SWEEP_DIR/sweep.png the metric against each swept key. The best run is the
one with the highest test AUC (lowest logloss without a test AUC).

Not thread-safe; one sweep per call.
"""

import csv
import itertools
import json
import os
import signal
import subprocess
import sys
import time

from ._paths import LAUNCHER
COLUMNS = ["run", "status", "auc", "logloss", "examples_per_sec", "run_dir", "error"]


def combinations(grid):
    """Every combination of `grid` ({key: [values]}), in order: the last key
    varies fastest. Each is a {key: value} dict."""
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def parse_grid(items):
    """["key=v1,v2", ...] -> {key: ["v1", "v2"]}; a bad item raises ValueError."""
    grid = {}
    for item in items:
        key, eq, values = item.partition("=")
        if not eq or not key or not values:
            raise ValueError(f"--grid {item}: expected KEY=V1,V2,...")
        if key in grid:
            raise ValueError(f"--grid {item}: {key} is swept twice")
        grid[key] = values.split(",")
    return grid


def _row(index, overrides, run_dir, exit_code):
    row = {"run": f"run-{index:03d}", **overrides, "run_dir": run_dir}
    summary_path = os.path.join(run_dir, "summary.json")
    summary = {}
    if os.path.exists(summary_path):
        try:
            with open(summary_path) as f:
                summary = json.load(f)
        except ValueError:
            summary = {}
    ok = exit_code == 0 and summary.get("status") == "ok"
    row["status"] = "ok" if ok else "failed"
    for key in ("auc", "logloss", "examples_per_sec"):
        value = summary.get(key)
        row[key] = value if ok and isinstance(value, (int, float)) else ""
    if not ok:
        error = summary.get("error") or ""
        if not error:
            log = os.path.join(run_dir, "launch.log")
            if os.path.exists(log):
                with open(log, errors="replace") as f:
                    lines = [line.strip() for line in f if line.strip()]
                error = lines[-1] if lines else ""
        row["error"] = error or f"exit code {exit_code}"
    else:
        row["error"] = ""
    return row


def _launch_command(config, overrides, run_dir, sets, slurm=False):
    cmd = [sys.executable, LAUNCHER, "launch", config, "--run-dir", run_dir, "--quiet"]
    for key, value in list(overrides.items()) + [tuple(s.split("=", 1)) for s in sets]:
        cmd += ["--set", f"{key}={value}"]
    if slurm:
        cmd.append("--slurm")
    return cmd


def _run_local(config, runs, sets, parallel, on_row):
    """Runs (index, overrides, run_dir) `parallel` at a time; calls
    on_row(row) as each ends. Ctrl-C stops every run (SIGINT to each
    launcher, which stops its daemons) and raises KeyboardInterrupt."""
    pending = list(runs)
    running = {}  # Popen -> (index, overrides, run_dir, log file)
    try:
        while pending or running:
            while pending and len(running) < max(1, parallel):
                index, overrides, run_dir = pending.pop(0)
                os.makedirs(run_dir, exist_ok=True)
                log = open(os.path.join(run_dir, "launch.log"), "w")
                proc = subprocess.Popen(_launch_command(config, overrides, run_dir, sets), stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
                running[proc] = (index, overrides, run_dir, log)
            for proc in [p for p in running if p.poll() is not None]:
                index, overrides, run_dir, log = running.pop(proc)
                log.close()
                on_row(_row(index, overrides, run_dir, proc.returncode))
            if running:
                # Wait for any run to end (polled: Popen has no wait-any).
                time.sleep(0.2)
    except KeyboardInterrupt:
        for proc in running:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
        deadline = time.monotonic() + 30
        for proc, (index, overrides, run_dir, log) in running.items():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            log.close()
            on_row(_row(index, overrides, run_dir, proc.returncode))
        raise


def _run_slurm(config, runs, sets, parallel, on_row, sweep_dir, nodes):
    """One job array: task i launches run i inside its own allocation of
    `nodes` nodes."""
    tasks = os.path.join(sweep_dir, "tasks.json")
    with open(tasks, "w") as f:
        json.dump([_launch_command(config, overrides, run_dir, sets, slurm=True) for _, overrides, run_dir in runs],
                  f)
    for _, _, run_dir in runs:
        os.makedirs(run_dir, exist_ok=True)
    script = os.path.join(sweep_dir, "sweep.sbatch")
    with open(script, "w") as f:
        f.write("#!/bin/bash\n"
                f"exec {sys.executable} -c 'import json, os, sys; "
                f"cmd = json.load(open(sys.argv[1]))[int(os.environ[\"SLURM_ARRAY_TASK_ID\"])]; "
                f"log = open(os.path.join(cmd[cmd.index(\"--run-dir\") + 1], \"launch.log\"), \"w\"); "
                f"import subprocess; sys.exit(subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT))' {tasks}\n")
    array = f"0-{len(runs) - 1}" + (f"%{parallel}" if parallel > 0 else "")
    result = subprocess.run(["sbatch", "--wait", "--parsable", f"--array={array}", "--job-name=sparta-sweep", "-N",
                             str(nodes),
                             f"--output={os.path.join(sweep_dir, 'slurm-%A_%a.out')}", script],
                            capture_output=True, text=True)
    for index, overrides, run_dir in runs:
        # A task's own exit code is its launcher's; the summary says the rest.
        summary = os.path.join(run_dir, "summary.json")
        on_row(_row(index, overrides, run_dir, 0 if os.path.exists(summary) else 1))
    if result.returncode not in (0, 1):  # sbatch --wait: 1 when some task failed
        print(f"sparta sweep: sbatch: {result.stderr.strip()}", file=sys.stderr)


def _best(rows):
    ok = [r for r in rows if r["status"] == "ok"]
    with_auc = [r for r in ok if isinstance(r["auc"], (int, float))]
    if with_auc:
        return max(with_auc, key=lambda r: r["auc"])
    with_loss = [r for r in ok if isinstance(r["logloss"], (int, float))]
    return min(with_loss, key=lambda r: r["logloss"]) if with_loss else None


def _plot(rows, keys, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    metric = "auc" if any(isinstance(r["auc"], (int, float)) for r in rows) else "logloss"
    fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 3.6), squeeze=False)
    for ax, key in zip(axes[0], keys):
        values = list(dict.fromkeys(r[key] for r in rows))  # in grid order
        for i, value in enumerate(values):
            ys = [r[metric] for r in rows if r[key] == value and isinstance(r[metric], (int, float))]
            failed = sum(1 for r in rows if r[key] == value and r["status"] != "ok")
            ax.scatter([i] * len(ys), ys, color="tab:blue", zorder=3)
            if ys:
                ax.plot([i - 0.2, i + 0.2], [sum(ys) / len(ys)] * 2, color="black")
            if failed:
                ax.annotate(f"{failed} failed", (i, 0), xycoords=("data", "axes fraction"), xytext=(0, 4),
                            textcoords="offset points", ha="center", color="tab:red", fontsize=8)
        ax.set_xticks(range(len(values)))
        ax.set_xticklabels(values, rotation=20)
        ax.set_xlabel(key)
        ax.set_ylabel(f"test {metric}")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def sweep(config, grid, parallel=1, sweep_dir=None, sets=(), slurm=False, nodes=1, quiet=False):
    """Runs every combination of `grid` ({key: [values]}) on `config` (plus
    the fixed overrides `sets`, "key=value"), `parallel` at a time (locally,
    or with `slurm` as a job array of `nodes`-node tasks); returns the rows
    (dicts of COLUMNS and the swept keys), in grid order."""
    if not grid:
        raise ValueError("nothing to sweep: give at least one --grid KEY=V1,V2")
    sweep_dir = sweep_dir or os.path.join("runs", time.strftime("sweep-%Y%m%d-%H%M%S"))
    os.makedirs(sweep_dir, exist_ok=True)
    keys = list(grid)
    runs = [(i, overrides, os.path.join(sweep_dir, f"run-{i:03d}")) for i, overrides in enumerate(combinations(grid))]
    rows = []

    def on_row(row):
        rows.append(row)
        if not quiet:
            what = ", ".join(f"{k}={row[k]}" for k in keys)
            result = (f"auc {row['auc']:.5f}" if isinstance(row["auc"], (int, float)) else "no auc") \
                if row["status"] == "ok" else f"FAILED: {row['error']}"
            print(f"sparta sweep: {row['run']} ({what}): {result}", flush=True)

    interrupted = False
    try:
        if slurm:
            _run_slurm(config, runs, list(sets), parallel, on_row, sweep_dir, nodes)
        else:
            _run_local(config, runs, list(sets), parallel, on_row)
    except KeyboardInterrupt:
        interrupted = True
    rows.sort(key=lambda r: r["run"])
    with open(os.path.join(sweep_dir, "sweep.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys + COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in keys + COLUMNS})
    if rows:
        try:
            _plot(rows, keys, os.path.join(sweep_dir, "sweep.png"))
        except ImportError:
            print("sparta sweep: sweep.png not drawn: this Python has no matplotlib (Debian: python3-matplotlib)",
                  file=sys.stderr)
    best = _best(rows)
    if not quiet:
        ok = sum(r["status"] == "ok" for r in rows)
        print(f"sparta sweep: {ok} of {len(runs)} runs ok, {len(rows) - ok} failed"
              + (", interrupted" if interrupted else "") + f"; table {os.path.join(sweep_dir, 'sweep.csv')}, "
              f"chart {os.path.join(sweep_dir, 'sweep.png')}")
        if best:
            print(f"sparta sweep: best {best['run']} ("
                  + ", ".join(f"{k}={best[k]}" for k in keys) + f"): auc {best['auc']}, logloss {best['logloss']}, "
                  f"{best['run_dir']}")
    if interrupted:
        raise KeyboardInterrupt
    return rows
