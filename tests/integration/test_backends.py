"""worker.backend: cpu, cuda or auto. `auto` takes the GPU when there is one
and otherwise says, in one log line, why it falls back to the CPU; `cuda`
without a GPU is refused with the config line. With a GPU, the CUDA worker
trains the model the CPU worker trains (bsp: one step in flight on both)."""

import os
import re

from harness import ClusterTest, datagen, launch, read, write_config


def predictions(path):
    return [float(x) for x in read(path).split()]


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

    def backend_line(self, run_dir):
        log = read(os.path.join(run_dir, "worker-0.log"))
        match = re.search(r"compute backend: (cpu|cuda) \((.*)\)", log)
        self.assertIsNotNone(match, "the worker logs its compute backend")
        return match.group(1), match.group(2)

    def test_auto_takes_the_gpu_or_says_why_not_and_cuda_matches_cpu(self):
        data = datagen(self.dir, 20000, 2000, seed=12)
        config, auto_out = self.job("auto", "auto", data, consistency="bsp")
        result = launch(config, self.run_dir("auto"))
        self.assertEqual(result.returncode, 0, result.stderr)
        backend, reason = self.backend_line(self.run_dir("auto"))
        config, cpu_out = self.job("cpu", "cpu", data, consistency="bsp")
        result = launch(config, self.run_dir("cpu"))
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(self.backend_line(self.run_dir("cpu")), ("cpu", "worker.backend: cpu"))
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
            backend, reason = self.backend_line(self.run_dir("cuda"))
            self.assertEqual(backend, "cuda")
            self.skipTest(f"this machine has a GPU ({reason}): nothing to refuse")
        self.assertRegex(result.stderr, re.escape(config) + r":\d+: key 'worker.backend' is cuda, but ")
        self.assertRegex(result.stderr, "built without CUDA|no usable GPU|no CUDA device")
        self.assertIn("use worker.backend: cpu or auto", result.stderr)
