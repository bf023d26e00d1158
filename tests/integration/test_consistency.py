"""Consistency control (worker.consistency): BSP with two workers trains the
same model as one worker with twice the batch, and SSP keeps every worker
within its staleness bound where ASP does not."""

import os
import random

from harness import ClusterTest, datagen, launch, read, summary, write_config


def lines(path):
    with open(path) as f:
        return f.readlines()


def predictions(path):
    return [float(x) for x in read(path).split()]


class ConsistencyTest(ClusterTest):
    def test_bsp_two_workers_equal_one_worker_with_doubled_batch(self):
        batch, steps = 256, 24
        data = datagen(self.dir, 2 * batch * steps, 3000, seed=9, interaction=1.5, max_vocab=3000)
        rows = lines(data["train"])
        half = batch * steps
        a, b = rows[:half], rows[half:]
        paths = {name: os.path.join(self.dir, name + ".txt") for name in ("a", "b", "interleaved")}
        with open(paths["a"], "w") as f:
            f.writelines(a)
        with open(paths["b"], "w") as f:
            f.writelines(b)
        # One worker's batch k of 2*batch rows is exactly worker 0's batch k plus worker 1's.
        with open(paths["interleaved"], "w") as f:
            for k in range(steps):
                f.writelines(a[k * batch:(k + 1) * batch] + b[k * batch:(k + 1) * batch])

        def run(name, train, workers, batch_size, consistency):
            out = os.path.join(self.dir, name + ".predictions")
            config = write_config(
                self.dir, name + ".yaml", cluster={"servers": 2, "workers": workers},
                data={"train": train, "test": data["test"], "batch_size": batch_size},
                model={"name": "fm", "embedding_dim": 4}, optimizer={"name": "adagrad", "learning_rate": 0.1},
                worker={"consistency": consistency}, eval={"predictions_out": out})
            result = launch(config, self.run_dir(name))
            self.assertEqual(result.returncode, 0, result.stderr)
            return predictions(out), summary(self.run_dir(name))

        two, two_summary = run("bsp2", [paths["a"], paths["b"]], 2, batch, "bsp")
        one, _ = run("bsp1", paths["interleaved"], 1, 2 * batch, "bsp")
        self.assertEqual(two_summary["worker_steps"], [steps, steps])
        self.assertEqual(two_summary["max_staleness"], [0, 0])
        self.assertEqual(len(one), 3000)
        diff = max(abs(x - y) for x, y in zip(one, two))
        # The reference for "can this check fail": the same two workers without BSP.
        asp, _ = run("asp2", [paths["a"], paths["b"]], 2, batch, "asp")
        asp_diff = max(abs(x - y) for x, y in zip(one, asp))
        print(f"\nmax |p(bsp, 2 workers) - p(1 worker, 2x batch)| = {diff:.2e}; asp instead: {asp_diff:.2e}")
        self.assertLess(diff, 1e-4)  # float summation order only
        self.assertGreater(asp_diff, 1e-3)

    def test_compute_threads_share_a_worker(self):
        """worker.threads: under bsp, 2 threads x batch b is one step of 2b (the servers sum it); under asp
        every thread's pushes land exactly once (the audit table counts them)."""
        batch = 256
        data = datagen(self.dir, 2 * batch * 20, 3000, seed=12, interaction=1.5, max_vocab=3000)

        def run(name, threads, batch_size, consistency, workers=1):
            out = os.path.join(self.dir, name + ".predictions")
            config = write_config(
                self.dir, name + ".yaml", cluster={"servers": 2, "workers": workers},
                data={"train": data["train"], "test": data["test"], "batch_size": batch_size},
                model={"name": "dnn", "embedding_dim": 4, "bottom_mlp": [8, 4], "top_mlp": [16]},
                optimizer={"name": "adagrad", "learning_rate": 0.05, "dense_name": "sgd",
                           "dense_learning_rate": 0.0005},
                worker={"consistency": consistency, "threads": threads, "audit": 1}, eval={"predictions_out": out})
            result = launch(config, self.run_dir(name))
            self.assertEqual(result.returncode, 0, result.stderr)
            return predictions(out), summary(self.run_dir(name))

        threads, threads_summary = run("threads", 2, batch, "bsp")
        single, _ = run("single", 1, 2 * batch, "bsp")
        diff = max(abs(x - y) for x, y in zip(threads, single))
        print(f"\nmax |p(2 threads, bsp) - p(1 thread, 2x batch)| = {diff:.2e}")
        self.assertEqual(threads_summary["worker_steps"], [40])
        self.assertLess(diff, 1e-4)
        _, asp = run("asp", 2, batch, "asp", workers=2)
        self.assertEqual(asp["audit_counts"], asp["worker_steps"])
        self.assertEqual(asp["train_examples"], 2 * batch * 20)

    def test_ssp_never_exceeds_its_bound(self):
        # Worker 0's rows carry 60x the keys of worker 1's, so worker 1 runs ahead as far as it is let.
        rng = random.Random(5)
        steps, batch = 40, 50
        files = []
        for w, width in ((0, 300), (1, 5)):
            path = os.path.join(self.dir, f"part{w}.svm")
            with open(path, "w") as f:
                for _ in range(steps * batch):
                    keys = sorted(rng.sample(range(1, 2000000), width))
                    f.write(f"{rng.randint(0, 1)} " + " ".join(f"{k}:1" for k in keys) + "\n")
            files.append(path)
        staleness = 2

        def run(name, consistency):
            config = write_config(
                self.dir, name + ".yaml", cluster={"servers": 1, "workers": 2},
                data={"train": files, "format": "libsvm", "batch_size": batch},
                model={"name": "lr"}, worker={"consistency": consistency, "staleness": staleness})
            result = launch(config, self.run_dir(name))
            self.assertEqual(result.returncode, 0, result.stderr)
            return summary(self.run_dir(name))

        ssp = run("ssp", "ssp")
        asp = run("asp", "asp")
        print(f"\nssp: per-worker max staleness {ssp['max_staleness']}, clock spread {ssp['max_clock_spread']}; "
              f"asp: {asp['max_staleness']}, spread {asp['max_clock_spread']}")
        self.assertEqual(ssp["worker_steps"], [steps, steps])
        # Each worker's own measure, and the scheduler's view of the clocks (a worker may finish
        # the step it was allowed to start, so the spread of finished steps is at most s + 1).
        self.assertLessEqual(max(ssp["max_staleness"]), staleness)
        self.assertLessEqual(ssp["max_clock_spread"], staleness + 1)
        # Without the bound the fast worker runs past it: the checks above can
        # fail. Either shows it: a worker's own staleness, or the spread of
        # the clocks the scheduler saw (sampled at heartbeats, so under
        # ThreadSanitizer, where every step is slow, it once read 2 while
        # the workers measured 3 and 4).
        self.assertTrue(max(asp["max_staleness"]) > staleness or asp["max_clock_spread"] > staleness + 1,
                        f"asp stayed within ssp's bound: staleness {asp['max_staleness']}, "
                        f"spread {asp['max_clock_spread']}")
