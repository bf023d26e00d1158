"""worker.backend: cpu, cuda or auto. `auto` takes the GPU when there is one
and otherwise says, in one log line, why it falls back to the CPU; `cuda`
without a GPU is refused with the config line. With a GPU, the CUDA worker
trains the model the CPU worker trains (bsp: one step in flight on both)."""

import os
import re
import subprocess

from harness import BIN, ClusterTest, bin_with_lone_copy, datagen, launch, read, write_config


def predictions(path):
    return [float(x) for x in read(path).split()]


def backend_line(test, run_dir):
    """The backend worker-0 of `run_dir` logged it computes on, and why."""
    log = read(os.path.join(run_dir, "worker-0.log"))
    match = re.search(r"compute backend: (cpu|cuda) \((.*)\)", log)
    test.assertIsNotNone(match, "the worker logs its compute backend:\n" + log[-2000:])
    return match.group(1), match.group(2)


class BackendTest(ClusterTest):
    def job(self, name, backend, data, consistency="asp"):
        out = os.path.join(self.dir, name + ".predictions")
        config = write_config(
            self.dir, name + ".yaml", cluster={"servers": 1, "workers": 1},
            data={"train": data["train"], "test": data["test"], "batch_size": 512},
            model={"name": "dnn", "embedding_dim": 4, "bottom_mlp": [8], "top_mlp": [16]},
            optimizer={"name": "adagrad", "learning_rate": 0.05}, worker={"backend": backend,
                                                                          "consistency": consistency},
            eval={"predictions_out": out})
        return config, out

    def test_auto_takes_the_gpu_or_says_why_not_and_cuda_matches_cpu(self):
        data = datagen(self.dir, 20000, 2000, seed=12)
        config, auto_out = self.job("auto", "auto", data, consistency="bsp")
        result = launch(config, self.run_dir("auto"))
        self.assertEqual(result.returncode, 0, result.stderr)
        backend, reason = backend_line(self, self.run_dir("auto"))
        config, cpu_out = self.job("cpu", "cpu", data, consistency="bsp")
        result = launch(config, self.run_dir("cpu"))
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(backend_line(self, self.run_dir("cpu")), ("cpu", "worker.backend: cpu"))
        auto_p, cpu_p = predictions(auto_out), predictions(cpu_out)
        self.assertEqual(len(auto_p), 2000)
        diff = max(abs(a - c) for a, c in zip(auto_p, cpu_p))
        print(f"\nworker.backend: auto -> {backend} ({reason}); max |p(auto) - p(cpu)| = {diff:.2e}")
        if backend == "cpu":
            self.assertIn("worker.backend: auto falls back to the CPU: ", reason)
            self.assertRegex(reason, "built without CUDA|no usable GPU|no CUDA device")
            self.assertEqual(auto_p, cpu_p)  # the same backend, bit for bit
        else:
            # The GPU sums in another order; one pass of 40 steps keeps the drift small.
            self.assertLess(diff, 1e-3)

    def test_cuda_without_a_gpu_is_refused_with_the_config_line(self):
        data = datagen(self.dir, 2000, 200, seed=13)
        config, _ = self.job("cuda", "cuda", data)
        result = launch(config, self.run_dir("cuda"), timeout=120)
        if result.returncode == 0:
            backend, reason = backend_line(self, self.run_dir("cuda"))
            self.assertEqual(backend, "cuda")
            self.skipTest(f"this machine has a GPU ({reason}): nothing to refuse")
        self.assertRegex(result.stderr, re.escape(config) + r":\d+: key 'worker.backend' is cuda, but ")
        self.assertRegex(result.stderr, "built without CUDA|no usable GPU|no CUDA device")
        self.assertIn("use worker.backend: cpu or auto", result.stderr)


class CudaModuleTest(ClusterTest):
    """The CUDA backend is a module (libsparta_cuda.so) loaded when a worker
    asks for a GPU: no program links CUDA's libraries, so none pays for
    loading cuBLAS at start, and a worker whose module is missing (or whose
    machine lacks CUDA's libraries) still trains on the CPU and says why."""

    PROGRAMS = ("sparta-worker", "sparta-ctl", "sparta-serve", "sparta-server", "sparta-scheduler")
    CUDA = re.compile(r"^\s*(libcudart|libcublas|libcublasLt)\.so", re.M)

    def test_no_program_links_cuda_and_the_module_does(self):
        for program in self.PROGRAMS:
            linked = subprocess.run(["ldd", os.path.join(BIN, program)], capture_output=True, text=True).stdout
            self.assertIsNone(self.CUDA.search(linked), f"{program} links CUDA's libraries:\n{linked}")
        module = os.path.join(BIN, "libsparta_cuda.so")
        if os.path.exists(module):  # a build with the CUDA backend
            linked = subprocess.run(["ldd", module], capture_output=True, text=True).stdout
            self.assertEqual(sorted(set(self.CUDA.findall(linked))), ["libcublas", "libcublasLt", "libcudart"], linked)

    def test_a_worker_without_the_module_trains_on_the_cpu_and_says_why(self):
        data = datagen(self.dir, 2000, 200, seed=14)
        config = write_config(self.dir, cluster={"servers": 1, "workers": 1},
                              data={"train": data["train"], "test": data["test"], "batch_size": 256},
                              model={"name": "lr"}, worker={"backend": "auto"})
        run = self.run_dir("lone")
        result = launch(config, run, env={**os.environ, "SPARTA_BIN": bin_with_lone_copy(self.dir, "sparta-worker")})
        self.assertEqual(result.returncode, 0, result.stderr)
        backend, reason = backend_line(self, run)
        self.assertEqual(backend, "cpu")
        self.assertIn("worker.backend: auto falls back to the CPU: ", reason)
        self.assertRegex(reason, r"built without CUDA|libsparta_cuda\.so is not beside this program")
