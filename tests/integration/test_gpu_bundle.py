"""scripts/gpu-bundle.sh and the bundle's run-gpu-checks.sh, here, as a GPU
machine without Sparta's Debian libraries would see them: the bundle is
written from this build, and run-gpu-checks.sh runs in a mount namespace in
which every library the bundle carries is hidden from its system location
(bound over by /dev/null), so each must load from the bundle. Python's own
libraries stay: the GPU machine has its own Python. Without a GPU the GPU
checks must be reported skipped, with the reason, and the run must exit 0;
with one they must pass."""

import glob
import json
import os
import re
import subprocess
import sys
import sysconfig

from harness import ROOT, ClusterTest

LIMIT = 48 * 1024 * 1024


def python_libraries():
    """The real paths of the libraries this Python and its extension modules load."""
    objects = [sys.executable] + glob.glob(os.path.join(sysconfig.get_paths()["platstdlib"], "lib-dynload", "*.so"))
    paths = set()
    for obj in objects:
        out = subprocess.run(["ldd", obj], capture_output=True, text=True).stdout
        paths.update(os.path.realpath(p) for p in re.findall(r"=> (/\S+)", out))
    return paths


def system_copies(names):
    """Where the loader here finds each library name, through its links."""
    cache = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, check=True).stdout
    found = {}
    for line in cache.splitlines():
        m = re.match(r"\s*(\S+) \(libc6,x86-64.*\) => (\S+)", line)
        if m and m.group(1) in names:
            found.setdefault(m.group(1), set()).update({m.group(2), os.path.realpath(m.group(2))})
    return found


class GpuBundleTest(ClusterTest):
    def test_bundle_runs_with_sparta_libraries_out_of_reach(self):
        build = os.environ.get("SPARTA_BUILD", os.path.join(ROOT, "build"))
        targets = subprocess.run(["cmake", "--build", build, "--target", "help"], capture_output=True, text=True).stdout
        if "sparta_cuda_tests" not in targets:
            self.skipTest(f"{build} has no CUDA backend (no nvcc, or SPARTA_CUDA=OFF): there is no bundle to make")
        if os.geteuid() != 0:
            self.skipTest("hiding the system's libraries takes a mount namespace, which takes root")
        bundle, results = os.path.join(self.dir, "bundle"), os.path.join(self.dir, "results")
        made = subprocess.run([os.path.join(ROOT, "scripts", "gpu-bundle.sh"), bundle], capture_output=True, text=True,
                              env={**os.environ, "SPARTA_GPU_BUILD": build, "SPARTA_GPU_ROWS": "20000"})
        self.assertEqual(made.returncode, 0, made.stdout + made.stderr)
        size = sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(bundle) for f in files)
        self.assertLess(size, LIMIT)
        with open(os.path.join(bundle, "lib.manifest")) as f:
            carried = f.read().split()
        for must in ("libzmq.so.5", "librocksdb.so.7.8", "libprotobuf.so.32", "libopenblas.so.0"):
            self.assertIn(must, carried)
        for mustnt in ("libc.so.6", "libstdc++.so.6", "libcudart.so.13", "libcublas.so.13"):
            self.assertNotIn(mustnt, carried)

        keep = python_libraries()
        hidden = sorted({p for paths in system_copies(set(carried)).values() for p in paths
                         if os.path.realpath(p) not in keep and os.path.isfile(p)})
        self.assertTrue(any("librocksdb" in p for p in hidden), hidden)
        worker = os.path.join(bundle, "bin", "sparta-worker")
        script = "set -e\n" + "".join(f"mount --bind /dev/null '{p}'\n" for p in hidden) + (
            # The hiding must work: the worker must not start without the bundle's libraries.
            f"if env -u LD_LIBRARY_PATH '{worker}' --help >/dev/null 2>&1; then echo 'hiding failed' >&2; exit 3; fi\n"
            f"exec '{bundle}/run-gpu-checks.sh' '{results}'\n")
        env = {k: v for k, v in os.environ.items() if k not in ("SPARTA_BIN", "LD_LIBRARY_PATH")}
        run = subprocess.run(["unshare", "--mount", "--propagation", "private", "bash", "-c", script],
                             capture_output=True, text=True, env=env, timeout=600)
        self.assertEqual(run.returncode, 0, run.stdout[-4000:] + run.stderr[-4000:])

        with open(os.path.join(results, "gpu-checks.json")) as f:
            checks = {c["check"]: c for c in json.load(f)["checks"]}
        self.assertEqual(list(checks), ["libraries", "cuda.twin", "backend_choice", "kernels", "dnn"])
        self.assertEqual(checks["libraries"]["status"], "passed", checks["libraries"])
        self.assertEqual(checks["backend_choice"]["status"], "passed", checks["backend_choice"])
        with open(os.path.join(results, "report.txt")) as f:
            report = f.read()
        if checks["cuda.twin"]["status"] == "skipped":
            reason = checks["cuda.twin"]["reason"]
            self.assertRegex(reason, "GPU|CUDA|device")
            for name in ("kernels", "dnn"):
                self.assertEqual((checks[name]["status"], checks[name]["reason"]), ("skipped", reason))
            self.assertEqual(checks["backend_choice"]["auto_backend"], "cpu")
            self.assertIn("skipped  kernels", report)
        else:
            for name in ("cuda.twin", "kernels", "dnn"):
                self.assertEqual(checks[name]["status"], "passed", checks[name])
            self.assertEqual(checks["backend_choice"]["auto_backend"], "cuda")
