#!/usr/bin/env python3
"""The GPU checks, run from a bundle that scripts/gpu-bundle.sh wrote, on a
machine that has an NVIDIA driver, CUDA 13's runtime and cuBLAS and a
python3 (with PyTorch for the reference) but none of Sparta's Debian
libraries. The bundle's run-gpu-checks.sh calls it:

    gpu_checks.py BUNDLE RESULTS_DIR

In order, each with its own time limit inside one deadline (DEADLINE_S):
  libraries       every library the programs load resolves: from the bundle,
                  or glibc, libstdc++ and CUDA's from the machine
  cuda.twin       the CUDA backend against the CPU backend (sparta_cuda_tests)
  backend_choice  worker.backend auto/cpu/cuda on a real cluster
                  (tests/integration/test_backends.py): auto takes the GPU and
                  its predictions match the CPU worker's
  kernels         gather and scatter against the device's copy bandwidth
                  (sparta-gpu-bench)
  dnn             dnn on a GPU worker against the CPU worker and against the
                  same model in this machine's PyTorch on the GPU, with the
                  share of the worker's time spent waiting on the network
                  (tests/bench/gpu_models_bench.py)

Each check ends passed, failed or skipped (with the reason: no GPU, no
PyTorch, out of time). Writes RESULTS_DIR/gpu-checks.json and
RESULTS_DIR/report.txt, and exits 1 if a check failed, else 0: a machine
without a GPU gets the GPU checks skipped and exit 0.

The Sparta programs run with LD_LIBRARY_PATH set to the bundle's libraries
(and to wherever this machine keeps CUDA's); this script and PyTorch run
with the machine's own, so that Debian's older copies of common libraries
never reach the machine's Python.
"""

import glob
import json
import lzma
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

DEADLINE_S = 330  # the whole run, so that a failed first try leaves time for a second within 15 minutes
PROGRAMS = ["sparta-scheduler", "sparta-server", "sparta-worker", "sparta-ctl", "sparta-datagen",
            "sparta_cuda_tests", "sparta-gpu-bench"]
MODULES = ["libsparta_cuda.so"]  # in bin/ too: the CUDA backend, loaded by the programs beside it
# What the machine itself must provide; the bundle carries everything else.
# scripts/gpu-bundle.sh reads this pattern too (it is also an extended
# regular expression), so that what it leaves out is what is checked here.
SYSTEM_LIBRARY = re.compile(r"^(linux-vdso|ld-linux|libc|libm|libdl|libpthread|librt|libresolv|libutil|libstdc\+\+|"
                            r"libgcc_s|libcuda|libcudart|libcublas|libcublasLt)[.-]")
CUDA_LIBRARIES = ["libcudart.so.13", "libcublas.so.13", "libcublasLt.so.13"]
KERNEL_TARGET = 0.5  # fraction of the copy bandwidth
TORCH_TARGET = 1.5   # Sparta's GPU worker over PyTorch on the same GPU


class Run:
    def __init__(self, bundle, results):
        self.bundle = bundle
        self.results = results
        self.started = time.monotonic()
        self.checks = []
        self.environment = {}
        self.gpu_reason = None  # why there is no usable GPU, once known
        self.env = dict(os.environ)  # for Sparta's programs

    def remaining(self):
        return DEADLINE_S - (time.monotonic() - self.started)

    def record(self, name, status, reason="", **figures):
        entry = {"check": name, "status": status, "seconds": round(time.monotonic() - self.check_started, 1)}
        if reason:
            entry["reason"] = reason
        entry.update(figures)
        self.checks.append(entry)
        print(f"[{status:7s}] {name}" + (f": {reason}" if reason else ""), flush=True)
        return entry

    def run(self, name, limit, fn):
        self.check_started = time.monotonic()
        budget = min(limit, self.remaining())
        if budget < 10:
            return self.record(name, "skipped", f"out of time ({DEADLINE_S} s for the whole run)")
        try:
            return fn(budget)
        except subprocess.TimeoutExpired as e:
            return self.record(name, "failed", f"did not finish within {budget:.0f} s", output=tail(e.output))
        except Exception as e:  # a check that breaks is a failed check, never a crashed run
            return self.record(name, "failed", f"{type(e).__name__}: {e}")

    def sparta(self, cmd, timeout, **kwargs):
        return subprocess.run(cmd, env=self.env, timeout=timeout, capture_output=True, text=True, **kwargs)


def tail(text, lines=25):
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return "\n".join((text or "").splitlines()[-lines:])


def unpack_libraries(bundle):
    """The bundle keeps its libraries packed (lib.tar.xz) to stay small; they
    are unpacked beside it, or into a temporary folder when it is read-only."""
    lib = os.path.join(bundle, "lib")
    if os.path.exists(os.path.join(lib, ".complete")):
        return lib
    try:
        os.makedirs(lib, exist_ok=True)
        target = lib
    except OSError:
        target = tempfile.mkdtemp(prefix="sparta-gpu-lib-")
    with tarfile.open(os.path.join(bundle, "lib.tar.xz")) as t:
        t.extractall(target, filter="data") if hasattr(tarfile, "data_filter") else t.extractall(target)
    open(os.path.join(target, ".complete"), "w").close()
    return target


def cuda_library_dirs():
    """Folders that hold CUDA 13's runtime and cuBLAS where the loader's own
    cache does not list them: the toolkit, or the nvidia-* Python wheels."""
    cached = subprocess.run(["sh", "-c", "ldconfig -p 2>/dev/null"], capture_output=True, text=True).stdout
    wanted = [name for name in CUDA_LIBRARIES if name not in cached]
    roots = ["/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib", "/usr/local/cuda/lib"]
    roots += glob.glob("/usr/local/cuda-*/lib64")
    for site in sys.path + glob.glob("/opt/*/.venv/lib/python3*/site-packages") + \
            glob.glob("/usr/local/lib/python3*/dist-packages"):
        roots += glob.glob(os.path.join(site, "nvidia", "*", "lib")) + glob.glob(os.path.join(site, "nvidia", "cu13", "lib"))
    dirs = []
    for name in wanted:
        for root in roots:
            if os.path.exists(os.path.join(root, name)):
                if root not in dirs:
                    dirs.append(root)
                break
    return dirs


def check_libraries(run, budget):
    missing, foreign = {}, {}
    if shutil.which("ldd") is None:
        return run.record("libraries", "skipped", "no ldd on this machine; the programs themselves will say")
    lib = run.env["SPARTA_BUNDLE_LIB"]
    for program in PROGRAMS + MODULES:
        path = os.path.join(run.bundle, "bin", program)
        if not os.path.exists(path):
            missing.setdefault(program, []).append("the bundle's bin/")
            continue
        out = run.sparta(["ldd", path], timeout=30).stdout
        for line in out.splitlines():
            m = re.match(r"\s*(\S+)(?: => (\S+))?", line)
            if not m:
                continue
            name, where = m.group(1), m.group(2)
            if "not found" in line:
                missing.setdefault(name, []).append(program)
            elif where and not where.startswith(lib) and not SYSTEM_LIBRARY.match(os.path.basename(name)):
                foreign.setdefault(name, where)
    if missing:
        return run.record("libraries", "failed", "not found: " + ", ".join(
            f"{n} (needed by {', '.join(p)})" for n, p in sorted(missing.items())))
    if foreign:
        return run.record("libraries", "failed", "loaded from the machine, not the bundle: " + ", ".join(
            f"{n} => {w}" for n, w in sorted(foreign.items())))
    return run.record("libraries", "passed",
                      f"every library of {len(PROGRAMS)} programs and {len(MODULES)} module resolves")


def check_twin(run, budget):
    result = run.sparta([os.path.join(run.bundle, "bin", "sparta_cuda_tests")], timeout=budget)
    output = result.stdout + result.stderr
    if result.returncode == 77:
        last = tail(output, 1).strip()
        why = re.search(r"(no usable GPU.*|no CUDA device.*)", last)
        run.gpu_reason = why.group(1) if why else (last or "no usable GPU")
        return run.record("cuda.twin", "skipped", run.gpu_reason)
    summary = re.search(r"(All tests passed.*|test cases:.*)", output)
    status = "passed" if result.returncode == 0 else "failed"
    return run.record("cuda.twin", status, summary.group(1) if summary else f"exit status {result.returncode}",
                      output=tail(output) if status == "failed" else "")


def check_backend_choice(run, budget):
    folder = os.path.join(run.bundle, "tests", "integration")
    result = run.sparta([sys.executable, "-m", "unittest", "-v", "test_backends"], timeout=budget, cwd=folder)
    output = result.stdout + result.stderr
    line = re.search(r"worker\.backend: auto -> (\w+) \((.*?)\); max \|p\(auto\) - p\(cpu\)\| = (\S+)", output)
    figures = {}
    if line:
        figures = {"auto_backend": line.group(1), "auto_reason": line.group(2),
                   "max_prediction_difference_vs_cpu": float(line.group(3))}
    if result.returncode != 0:
        return run.record("backend_choice", "failed", "tests/integration/test_backends.py failed", output=tail(output),
                          **figures)
    if run.gpu_reason is None and figures.get("auto_backend") != "cuda":
        return run.record("backend_choice", "failed", "the twin ran on a GPU but worker.backend: auto did not take it",
                          **figures)
    note = "auto took the GPU; its predictions match the CPU worker's" if run.gpu_reason is None else \
        f"no GPU: only the CPU fallback and the refusal of worker.backend: cuda ran ({run.gpu_reason})"
    return run.record("backend_choice", "passed", note, **figures)


def check_kernels(run, budget):
    if run.gpu_reason is not None:
        return run.record("kernels", "skipped", run.gpu_reason)
    result = run.sparta([os.path.join(run.bundle, "bin", "sparta-gpu-bench")], timeout=budget)
    if result.returncode == 77:
        return run.record("kernels", "skipped", tail(result.stderr, 1))
    if result.returncode != 0:
        return run.record("kernels", "failed", f"exit status {result.returncode}", output=tail(result.stderr))
    kernels = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    worst = min(k["fraction_of_copy"] for k in kernels)
    device = re.search(r"device: (.*)", result.stderr)
    return run.record("kernels", "passed", f"{len(kernels)} measurements; the lowest at {worst:.2f} of the copy "
                      f"bandwidth (target {KERNEL_TARGET})", device=device.group(1) if device else "",
                      target_fraction_of_copy=KERNEL_TARGET, lowest_fraction_of_copy=worst, kernels=kernels)


def check_dnn(run, budget):
    if run.gpu_reason is not None:
        return run.record("dnn", "skipped", run.gpu_reason)
    data = tempfile.mkdtemp(prefix="sparta-gpu-data-")
    paths = []
    for name in ("train", "test"):
        path = os.path.join(data, name + ".txt")
        with lzma.open(os.path.join(run.bundle, "data", name + ".txt.xz")) as packed, open(path, "wb") as out:
            shutil.copyfileobj(packed, out, 1 << 20)
        paths.append(path)
    out = os.path.join(run.results, "dnn.json")
    result = run.sparta([sys.executable, os.path.join(run.bundle, "tests", "bench", "gpu_models_bench.py"), *paths, out],
                        timeout=budget)
    shutil.rmtree(data, ignore_errors=True)
    if result.returncode != 0:
        return run.record("dnn", "failed", f"exit status {result.returncode}", output=tail(result.stdout + result.stderr))
    records = {r["name"]: r for r in json.load(open(out))}
    figures = {"records": list(records.values()), "text": result.stdout.strip()}
    vs_torch = records.get("gpu_worker_vs_torch_gpu")
    if vs_torch is None:
        return run.record("dnn", "passed", "PyTorch with CUDA is not on this machine: only the CPU worker compared",
                          **figures)
    return run.record("dnn", "passed", f"the GPU worker at {vs_torch['value']:.2f}x PyTorch on the same GPU "
                      f"(target {TORCH_TARGET}x)", target_vs_torch=TORCH_TARGET, **figures)


def describe_machine(run):
    env = {"host": platform.node(), "cpus": os.cpu_count(), "python": sys.version.split()[0]}
    if shutil.which("nvidia-smi"):
        q = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                           capture_output=True, text=True)
        env["gpu"] = q.stdout.strip() or tail(q.stderr, 1)
    else:
        env["gpu"] = "no nvidia-smi"
    torch = subprocess.run([sys.executable, "-c", "import torch; print(torch.__version__, torch.cuda.is_available())"],
                           capture_output=True, text=True)
    env["torch"] = torch.stdout.strip() if torch.returncode == 0 else "not importable"
    run.environment = env


def report(run):
    by = {c["check"]: c for c in run.checks}
    lines = [f"Sparta GPU checks on {run.environment.get('host')} ({run.environment.get('gpu')}; "
             f"{run.environment.get('cpus')} CPUs; torch {run.environment.get('torch')}), "
             f"{time.monotonic() - run.started:.0f} s", ""]
    for c in run.checks:
        lines.append(f"{c['status']:8s} {c['check']:15s} {c.get('reason', '')}")
    lines.append("")
    backend = by.get("backend_choice", {})
    if "max_prediction_difference_vs_cpu" in backend:
        lines.append(f"CPU vs CUDA: max |p(auto={backend['auto_backend']}) - p(cpu)| = "
                     f"{backend['max_prediction_difference_vs_cpu']:.2e} on 2000 test rows")
    for k in by.get("kernels", {}).get("kernels", []):
        lines.append(f"kernel {k['kernel']:7s} batch {k['examples']:6d} dim {k['dim']:3d}: {k['microseconds']:9.1f} us, "
                     f"{k['gb_per_s']:7.1f} GB/s = {k['fraction_of_copy']:.2f} of the copy bandwidth "
                     f"({k['copy_gb_per_s']:.0f} GB/s; target {KERNEL_TARGET})")
    if "text" in by.get("dnn", {}):
        lines += by["dnn"]["text"].splitlines()
    text = "\n".join(lines) + "\n"
    with open(os.path.join(run.results, "report.txt"), "w") as f:
        f.write(text)
    with open(os.path.join(run.results, "gpu-checks.json"), "w") as f:
        json.dump({"environment": run.environment, "checks": run.checks}, f, indent=1)
    print("\n" + text, flush=True)


def main():
    bundle, results = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    os.makedirs(results, exist_ok=True)
    run = Run(bundle, results)
    describe_machine(run)
    lib = unpack_libraries(bundle)
    path = [lib] + cuda_library_dirs() + [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(":") if p]
    run.env.update(LD_LIBRARY_PATH=":".join(path), SPARTA_BUNDLE_LIB=lib, SPARTA_BIN=os.path.join(bundle, "bin"),
                   PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1")
    run.environment["ld_library_path"] = run.env["LD_LIBRARY_PATH"]
    run.run("libraries", 60, lambda b: check_libraries(run, b))
    run.run("cuda.twin", 90, lambda b: check_twin(run, b))
    run.run("backend_choice", 120, lambda b: check_backend_choice(run, b))
    run.run("kernels", 60, lambda b: check_kernels(run, b))
    run.run("dnn", 200, lambda b: check_dnn(run, b))
    report(run)
    sys.exit(1 if any(c["status"] == "failed" for c in run.checks) else 0)


if __name__ == "__main__":
    main()
