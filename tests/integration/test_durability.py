"""Persistence and checkpoints with real daemons, real RocksDB files and
real kill -9: a checkpoint restores bit for bit (also on fewer servers), and
a job whose every daemon was killed resumes from its latest checkpoint."""

import os
import shutil
import json
import subprocess
import textwrap
import unittest

from harness import (ROOT, ClusterTest, config_with, datagen, kill_job, launch, read, run_with_predictions,
                     wait_for, write_config)

# A model plugin that counts: every occurrence of a key in a trained batch adds
# 1 to its row (SGD, learning rate 1, gradient -1), and it "predicts" row/1000.
COUNTER_PLUGIN = """
    #include <algorithm>
    #include "sparta/sdk/plugin.h"
    class Counter final : public sparta::Model {
     public:
      std::vector<sparta::TableDecl> Tables() const override {
        return {{.name = "count", .kind = sparta::TableKind::kSparse, .dim = 1,
                 .optimizer = {.name = "sgd", .learning_rate = 1.0}}};
      }
      double Compute(const sparta::Batch& b, const sparta::ParamSpans& params, const sparta::GradSpans* grads,
                     float* probs) const override {
        if (grads) std::fill((*grads)[0].begin(), (*grads)[0].end(), 0.0f);
        for (uint32_t i = 0; i < b.size; ++i) {
          float z = 0;
          for (uint32_t f = b.offsets[i]; f < b.offsets[i + 1]; ++f) {
            z += params[0][b.slots[f]];
            if (grads) (*grads)[0][b.slots[f]] -= 1.0f;
          }
          probs[i] = std::min(1.0f, z / 1000.0f);
        }
        return 0;
      }
    };
    sparta::Model* NewCounter(const sparta::ModelContext&, std::string*) { return new Counter(); }
    SPARTA_PLUGIN("counter", NewCounter, nullptr)
"""


def build_counter_plugin(folder):
    """Compiles COUNTER_PLUGIN into `folder`; returns the library's path."""
    src = os.path.join(folder, "counter.cc")
    with open(src, "w") as f:
        f.write(textwrap.dedent(COUNTER_PLUGIN))
    plugin = os.path.join(folder, "libcounter.so")
    subprocess.run(["g++", "-std=c++20", "-O2", "-shared", "-fPIC", "-I",
                    os.path.join(ROOT, "worker", "sdk", "include"), src, "-o", plugin], check=True)
    return plugin


class CheckpointTest(ClusterTest):
    def config(self, data, **overrides):
        return config_with(self.dir, {
            "cluster": {"servers": 3, "workers": 1},
            "server": {"threads": 2},
            "data": {"train": data["train"], "test": data["test"], "batch_size": 256, "epochs": 1},
            "model": {"name": "fm", "embedding_dim": 4},
            "optimizer": {"name": "ftrl", "learning_rate": 0.05},
        }, **overrides)

    def run_job(self, config, name, *sets):
        s, predictions, _ = run_with_predictions(self, config, name, *sets, timeout=300)
        return s, predictions

    def test_restored_model_predicts_bit_for_bit_on_fewer_servers(self):
        data = datagen(self.dir, 20000, 3000, seed=5)
        store = os.path.join(self.dir, "store3")
        saved, saved_predictions = self.run_job(self.config(data), "saved", f"storage.path={store}")
        self.assertGreater(saved["checkpoint_version"], 0)
        latest = read(os.path.join(store, "checkpoints", "LATEST")).strip()
        checkpoint = os.path.join(store, "checkpoints", latest)
        manifest = json.loads(read(os.path.join(checkpoint, "manifest.json")))
        self.assertEqual(manifest["servers"], 3)
        self.assertEqual(int(manifest["rows"]), saved["server_rows"])
        # Restored on 2 servers: the worker's steps are all done, so it only
        # evaluates the model it was given.
        restored, restored_predictions = self.run_job(
            self.config(data, cluster__servers=2), "restored",
            f"storage.path={os.path.join(self.dir, 'store2')}", f"storage.restore={checkpoint}")
        self.assertEqual(restored["restored_from"], checkpoint)
        self.assertEqual(restored["train_examples"], 0)
        self.assertEqual(restored["server_rows"], saved["server_rows"])
        self.assertEqual(len(restored_predictions.splitlines()), 3000)
        self.assertEqual(restored_predictions, saved_predictions)

    def test_job_killed_everywhere_resumes_from_latest_checkpoint(self):
        data = datagen(self.dir, 30000, 3000, seed=6)
        store = os.path.join(self.dir, "store")
        config = self.config(data, cluster__servers=2, data__epochs=40, storage__checkpoint_every="25 steps")
        run = self.run_dir("killed")
        proc = launch(config, run, [f"storage.path={store}"], wait=False)
        self.procs.append(proc)
        latest_file = os.path.join(store, "checkpoints", "LATEST")
        wait_for(lambda: read(latest_file).strip() >= "ckpt-000002", 120, "two checkpoints")
        kill_job(proc, run)
        latest = os.path.join(store, "checkpoints", read(latest_file).strip())
        manifest = json.loads(read(os.path.join(latest, "manifest.json")))
        steps = int(manifest["worker_steps"][0])
        self.assertGreater(steps, 0)
        copy = os.path.join(self.dir, "checkpoint-copy")
        shutil.copytree(latest, copy)

        finish = self.config(data, cluster__servers=2, data__epochs=2)
        resumed, resumed_predictions = self.run_job(finish, "resumed", f"storage.path={store}",
                                                    "storage.restore=latest")
        self.assertEqual(resumed["restored_from"], latest)
        self.assertEqual(resumed["status"], "ok")
        # The same job, never interrupted after that checkpoint.
        again, again_predictions = self.run_job(finish, "again", f"storage.path={os.path.join(self.dir, 'store-b')}",
                                                f"storage.restore={copy}")
        self.assertGreater(resumed["train_examples"], 0)
        self.assertEqual(resumed["train_examples"], again["train_examples"])
        self.assertEqual(len(resumed_predictions.splitlines()), 3000)
        self.assertEqual(resumed_predictions, again_predictions)


    def test_compute_threads_resume_every_batch_exactly_once(self):
        """worker.threads 2, checkpoints every 20 steps, every daemon killed, resumed: every example is
        trained exactly `epochs` times in all (a counting model shows it per key)."""
        plugin = build_counter_plugin(self.dir)
        rows, epochs = 6000, 3
        data = os.path.join(self.dir, "keys.svm")
        with open(data, "w") as f:
            f.writelines(f"1 {i}:1\n" for i in range(1, rows + 1))
        store = os.path.join(self.dir, "store")

        def config(name):
            return write_config(self.dir, name, cluster={"servers": 2, "workers": 1},
                                data={"train": data, "test": data, "format": "libsvm", "batch_size": 20,
                                      "epochs": epochs},
                                model={"plugin": plugin}, worker={"threads": 2},
                                storage={"checkpoint_every": "20 steps", "path": store})

        run = self.run_dir("killed")
        proc = launch(config("threads.yaml"), run, [], wait=False)
        self.procs.append(proc)
        latest_file = os.path.join(store, "checkpoints", "LATEST")
        wait_for(lambda: read(latest_file).strip() >= "ckpt-000003", 120, "three checkpoints")
        kill_job(proc, run)
        manifest = json.loads(read(os.path.join(store, "checkpoints", read(latest_file).strip(), "manifest.json")))
        steps = int(manifest["worker_steps"][0])
        self.assertGreater(steps, 0)
        self.assertLess(steps, rows * epochs // 20)

        predictions = os.path.join(self.dir, "counts.txt")
        result = launch(config("resume.yaml"), self.run_dir("resumed"),
                        ["storage.restore=latest", f"eval.predictions_out={predictions}"])
        self.assertEqual(result.returncode, 0, result.stderr)
        counts = [round(float(p) * 1000) for p in read(predictions).split()]
        self.assertEqual(len(counts), rows)
        wrong = [(i + 1, c) for i, c in enumerate(counts) if c != epochs]
        print(f"\ncheckpoint at step {steps}; keys not trained exactly {epochs} times: {len(wrong)}")
        self.assertEqual(wrong, [])


if __name__ == "__main__":
    unittest.main()
