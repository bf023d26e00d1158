"""Python processes as a job's workers (sparta.Worker, the C++ module
sparta._native), started by the launcher with --worker-command, against the
real scheduler and servers: the Python logistic regression of
worker/sdk/python_examples trains the same model as the built-in C++ `lr`;
pull and push apply the tables' optimizers as declared; a killed Python
worker fails the job as a killed sparta-worker does; a checkpoint taken with
Python workers restores bit for bit."""

import glob
import json
import os
import re
import signal
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import unittest

import numpy as np

from harness import (ROOT, ClusterTest, config_with, datagen, kill_job, launch, read, summary, wait_for,
                     write_config)
from test_trust import PreemptionCase

sys.path.insert(0, os.path.join(ROOT, "worker", "python"))

LR_EXAMPLE = os.path.join(ROOT, "worker", "sdk", "python_examples", "logistic_regression.py")
DLRM_EXAMPLE = os.path.join(ROOT, "worker", "sdk", "python_examples", "dlrm.py")


def python_command(script):
    return f"{sys.executable} {script}"


def launch_python(config, run, script, sets=(), wait=True, timeout=300):
    return launch(config, run, list(sets), timeout=timeout, wait=wait,
                  extra=["--worker-command", python_command(script)])


def module_built():
    try:
        import sparta.worker  # noqa: F401  (needs sparta._native)
        return True
    except ImportError:
        return False


class PythonWorkerCase(ClusterTest):
    def setUp(self):
        super().setUp()
        # The build makes the module wherever pybind11-dev is installed, and
        # scripts/test.sh installs it: its absence is a broken build, not a skip.
        self.assertTrue(module_built(), "sparta._native was not built (is pybind11-dev installed?)")

    def lr_config(self, data, **overrides):
        return config_with(self.dir, {
            "cluster": {"servers": 1, "workers": 1},
            "data": {"train": data["train"], "test": data["test"], "batch_size": 256, "epochs": 2},
            "model": {"name": "lr"},
            "optimizer": {"name": "ftrl", "learning_rate": 0.1},
            "worker": {"audit": 1},
        }, **overrides)


class LogisticRegressionTest(PythonWorkerCase):
    def test_the_torch_port_the_launcher_picked_stays_the_workers(self):
        """The launcher picks MASTER_PORT, where worker 0's torch.distributed
        store listens, and hands it over through the environment. A program
        that got the same port in between (a bind to any port, another
        launcher's pick) would hold it, and every torch group of the job
        would fail to meet. Here such a program runs in the worker's place
        just before it and tries the port: the launcher still holds it, so
        that bind is refused (PyTorch's store, which sets SO_REUSEADDR as
        ZeroMQ does, binds it all the same: dlrm --dense torch below)."""
        data = datagen(self.dir, 2000, 300, seed=3)
        outcome = os.path.join(self.dir, "competitor.txt")
        wrapper = os.path.join(self.dir, "competing_worker.py")
        with open(wrapper, "w") as f:
            f.write(f"""import os, socket, sys
competitor = socket.socket()
try:
    competitor.bind(("127.0.0.1", int(os.environ["MASTER_PORT"])))
    said = "took " + os.environ["MASTER_PORT"]
except OSError as e:
    said = "refused: " + e.strerror
competitor.close()
with open({outcome!r}, "w") as out:
    out.write(said)
os.execv(sys.executable, [sys.executable, {LR_EXAMPLE!r}] + sys.argv[1:])
""")
        result = launch_python(self.lr_config(data, data__epochs=1), self.run_dir(), wrapper)
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        said = read(outcome)
        self.assertTrue(said.startswith("refused"), said)
        self.assertIn("Address already in use", said)

    def test_python_lr_trains_the_same_model_as_the_builtin_lr(self):
        data = datagen(self.dir, 30000, 4000, seed=3)
        config = self.lr_config(data)
        predictions = {}
        for name, script in (("cpp", None), ("python", LR_EXAMPLE)):
            out = os.path.join(self.dir, f"{name}.predictions")
            sets = [f"eval.predictions_out={out}"]
            run = self.run_dir(name)
            result = (launch(config, run, sets) if script is None else launch_python(config, run, script, sets))
            self.assertEqual(result.returncode, 0, result.stderr[-3000:])
            predictions[name] = (summary(run), [float(x) for x in read(out).split()])
        cpp, python = predictions["cpp"], predictions["python"]
        self.assertEqual(python[0]["status"], "ok")
        self.assertEqual(python[0]["audit_counts"], python[0]["worker_steps"])
        self.assertEqual(python[0]["worker_steps"], cpp[0]["worker_steps"])
        self.assertEqual(python[0]["server_rows"], cpp[0]["server_rows"])
        self.assertEqual(len(python[1]), 4000)
        # One worker and one server: every pull sees every earlier push, in
        # both, so the two models differ only by float rounding (NumPy sums
        # in double, the C++ model in float).
        worst = max(abs(a - b) for a, b in zip(python[1], cpp[1]))
        self.assertLess(worst, 1e-4)
        self.assertAlmostEqual(python[0]["auc"], cpp[0]["auc"], delta=1e-4)

    def test_two_python_workers_and_two_servers_lose_no_push(self):
        data = datagen(self.dir, 30000, 4000, seed=4)
        config = self.lr_config(data, cluster__servers=2, cluster__workers=2)
        result = launch(config, self.run_dir("cpp"), [])
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        cpp = summary(self.run_dir("cpp"))
        result = launch_python(config, self.run_dir("python"), LR_EXAMPLE, ["worker.consistency=ssp"])
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        s = summary(self.run_dir("python"))
        self.assertEqual(s["status"], "ok", s.get("error"))
        self.assertEqual(len(s["audit_counts"]), 2)
        self.assertEqual(s["audit_counts"], s["worker_steps"])
        self.assertEqual(s["train_examples"], cpp["train_examples"])
        self.assertLess(abs(s["auc"] - cpp["auc"]), 0.003)


class DlrmTest(PythonWorkerCase):
    def test_pytorch_dlrm_with_two_python_workers_trains_the_builtin_dnns_model(self):
        import torch  # noqa: F401  (Debian's python3-torch; scripts/test.sh installs it)
        data = datagen(self.dir, 40000, 4000, seed=8)
        # bsp: both jobs sum each step's pushes of both workers, so the
        # models differ only by float rounding (PyTorch's kernels, OpenBLAS's);
        # the two networks also start from the same weights (the same tables,
        # initializers and seeds). Under asp the result would depend on timing.
        config = self.lr_config(data, cluster__servers=2, cluster__workers=2, model__name="dnn",
                                optimizer__name="ftrl", worker__consistency="bsp")
        runs = {}
        for name, script in (("cpp", None), ("python", DLRM_EXAMPLE)):
            out = os.path.join(self.dir, f"{name}.predictions")
            run = self.run_dir(name)
            sets = [f"eval.predictions_out={out}"]
            result = launch(config, run, sets) if script is None else launch_python(config, run, script, sets)
            self.assertEqual(result.returncode, 0, result.stderr[-3000:])
            runs[name] = (summary(run), [float(x) for x in read(out).split()])
        (cpp, cpp_p), (python, python_p) = runs["cpp"], runs["python"]
        self.assertEqual(python["status"], "ok", python.get("error"))
        self.assertEqual(python["audit_counts"], python["worker_steps"])
        self.assertEqual(python["worker_steps"], cpp["worker_steps"])
        self.assertEqual(python["server_rows"], cpp["server_rows"])
        self.assertEqual(len(python_p), 4000)
        diffs = sorted(abs(a - b) for a, b in zip(python_p, cpp_p))
        print(f"dlrm vs dnn: auc {python['auc']:.5f} vs {cpp['auc']:.5f}; predictions differ by {sum(diffs) / len(diffs):.2e} "
              f"on average, {diffs[len(diffs) // 2]:.2e} at the median, {diffs[-1]:.2e} at most")
        # Example by example the two agree (float rounding grows through
        # Adam's steps: 4e-4 at the median here), and so does the AUC.
        self.assertLess(diffs[len(diffs) // 2], 2e-3)
        self.assertLess(abs(python["auc"] - cpp["auc"]), 0.003)
        # A Python worker's waits on its pulls count as time waiting on the
        # network, as sparta-worker's do (they read 0.0% when the module's
        # futures waited on the connection directly).
        for run in ("cpp", "python"):
            for log in sorted(glob.glob(os.path.join(self.run_dir(run), "worker-*.log"))):
                waiting = re.search(r"training done: .*; ([0-9.]+)% of the time waiting on the network", read(log))
                self.assertIsNotNone(waiting, log)
                self.assertGreater(float(waiting.group(1)), 0, log)


    def test_prefetching_the_next_batch_changes_no_prediction(self):
        """asp, 1 worker and 1 server: the example prefetches each next
        batch's rows that the step does not update (worker.peek()) and pulls
        the rest after the step's push, as sparta-worker does, so every row
        it reads is the one it would have pulled at the step: the same job
        with peek() turned off predicts exactly the same."""
        data = datagen(self.dir, 30000, 3000, seed=9)
        config = self.lr_config(data, model__name="dnn", data__epochs=1)
        runs = {}
        for name, prefetch in (("prefetch", True), ("plain", False)):
            wrapper = os.path.join(self.dir, f"{name}.py")
            with open(wrapper, "w") as f:
                f.write(textwrap.dedent(f"""
                    import atexit, runpy
                    import sparta, sparta.torch
                    joined = [0]
                    class Counted(sparta.torch._Joined):
                        def __init__(self, *a):
                            joined[0] += 1
                            super().__init__(*a)
                    sparta.torch._Joined = Counted
                    if not {prefetch}:
                        sparta.Worker.peek = lambda self: None
                    atexit.register(lambda: open({os.path.join(self.dir, name + '.prefetches')!r}, "w").write(
                        str(joined[0])))
                    runpy.run_path({DLRM_EXAMPLE!r}, run_name="__main__")
                """))
            out = os.path.join(self.dir, f"{name}.predictions")
            result = launch_python(config, self.run_dir(name), wrapper, [f"eval.predictions_out={out}"])
            self.assertEqual(result.returncode, 0, result.stderr[-3000:])
            runs[name] = (summary(self.run_dir(name)), read(out),
                          int(read(os.path.join(self.dir, name + ".prefetches"))))
        steps = runs["prefetch"][0]["worker_steps"][0]
        # Every step after the first used a prefetch; none without peek().
        self.assertEqual(runs["prefetch"][2], steps - 1)
        self.assertEqual(runs["plain"][2], 0)
        self.assertEqual(len(runs["prefetch"][1].splitlines()), 3000)
        self.assertEqual(runs["prefetch"][1], runs["plain"][1])


    def test_dense_layers_kept_in_pytorch_and_averaged_with_gloo(self):
        """dlrm.py --dense torch: the layers in PyTorch (Adam on the gradients
        AllReduce averages over the 2 workers each step), the embeddings on
        the servers; under bsp it trains at least as well as the built-in dnn,
        whose layers are server tables (Adam on each step's summed pushes),
        less 0.003. (Its layers start from other draws of the same
        distribution, and Adam sees a mean instead of a sum: the two differ;
        this one came out 0.004 ahead.)"""
        data = datagen(self.dir, 40000, 4000, seed=8)
        config = self.lr_config(data, cluster__servers=2, cluster__workers=2, model__name="dnn",
                                worker__consistency="bsp")
        result = launch(config, self.run_dir("cpp"), [])
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        result = launch_python(config, self.run_dir("python"), DLRM_EXAMPLE + " --dense torch")
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        cpp, python = summary(self.run_dir("cpp")), summary(self.run_dir("python"))
        self.assertEqual(python["status"], "ok", python.get("error"))
        self.assertEqual(python["audit_counts"], python["worker_steps"])
        # Only the embeddings are on the servers: no dnn.top/bottom rows there.
        self.assertLess(python["server_rows"], cpp["server_rows"])
        print(f"dlrm --dense torch vs dnn: auc {python['auc']:.5f} vs {cpp['auc']:.5f}")
        self.assertGreater(python["auc"], cpp["auc"] - 0.003)

    def test_dense_layers_kept_in_pytorch_come_back_from_a_checkpoint(self):
        """dlrm.py --dense torch keeps its layers in PyTorch: the job's final
        checkpoint holds them (and Adam's state) beside the servers' rows, and
        a job restored from it, with nothing left to train, predicts the test
        file exactly as the job that trained did."""
        data = datagen(self.dir, 20000, 2000, seed=9)
        config = self.lr_config(data, cluster__servers=2, cluster__workers=2, model__name="dnn")
        store = os.path.join(self.dir, "store")
        trained = os.path.join(self.dir, "trained.predictions")
        result = launch_python(config, self.run_dir("trained"), DLRM_EXAMPLE + " --dense torch",
                               [f"storage.path={store}", f"eval.predictions_out={trained}"])
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        checkpoint = os.path.join(store, "checkpoints", read(os.path.join(store, "checkpoints", "LATEST")).strip())
        self.assertTrue(os.path.exists(os.path.join(checkpoint, "torch-allreduce.pt")))
        restored = os.path.join(self.dir, "restored.predictions")
        result = launch_python(config, self.run_dir("restored"), DLRM_EXAMPLE + " --dense torch",
                               [f"storage.path={os.path.join(self.dir, 'store-b')}", f"storage.restore={checkpoint}",
                                f"eval.predictions_out={restored}"])
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        s = summary(self.run_dir("restored"))
        self.assertEqual(s["restored_from"], checkpoint)
        self.assertEqual(s["train_examples"], 0)
        self.assertEqual(len(read(restored).splitlines()), 2000)
        self.assertEqual(read(restored), read(trained))


ALL_REDUCE = textwrap.dedent("""
    import os, sys, json
    import numpy as np, torch
    import sparta.torch
    rank, batches, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]

    class Worker:  # what AllReduce asks of a worker
        config = {"cluster.workers": 2, "cluster.heartbeat_timeout": 5}
        restored_from = None
        def on_checkpoint(self, save):
            pass
        def __init__(self, rank, n):
            self.rank, self.n = rank, n
        def batches(self):
            yield from range(self.n)

    torch.manual_seed(rank)  # different starts: AllReduce makes them worker 0's
    w = torch.nn.Parameter(torch.randn(3))
    sync = sparta.torch.AllReduce(Worker(rank, batches), [w], torch.optim.SGD([w], lr=0.5))
    seen = []
    for b in sync.batches():
        seen.append(b)
        (w * torch.tensor([1.0, 2.0, 3.0]) * (rank + 1)).sum().backward()  # d/dw: (rank + 1) * [1, 2, 3]
        sync.step()
    json.dump({"seen": seen, "w": w.detach().tolist(), "group_left": torch.distributed.is_initialized()},
              open(out, "w"))
""")


class AllReduceTest(unittest.TestCase):
    def test_uneven_shares_end_with_the_same_parameters(self):
        """Worker 0 has 3 batches, worker 1 has 5: both take part in 5
        rounds and end equal; rounds 1-3 average both gradients, 4-5 only
        worker 1's."""
        import torch  # noqa: F401
        folder = tempfile.mkdtemp(prefix="sparta-allreduce-")
        self.addCleanup(shutil.rmtree, folder)
        script = os.path.join(folder, "allreduce.py")
        with open(script, "w") as f:
            f.write(ALL_REDUCE)
        # The port stays bound here (SO_REUSEADDR, never listening) until the
        # test ends, as the launcher holds MASTER_PORT: a port closed after
        # picking it could be taken by anyone before worker 0 binds it.
        held = socket.socket()
        self.addCleanup(held.close)
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                   PYTHONPATH=os.path.join(ROOT, "worker", "python"))
        procs = [subprocess.Popen([sys.executable, script, str(r), str(n), os.path.join(folder, f"{r}.json")], env=env)
                 for r, n in ((0, 3), (1, 5))]
        for p in procs:  # stopped by pid if the test ends early
            self.addCleanup(lambda p=p: p.poll() is None and (p.kill(), p.wait()))
        for p in procs:
            self.assertEqual(p.wait(timeout=120), 0)
        results = [json.loads(read(os.path.join(folder, f"{r}.json"))) for r in (0, 1)]
        self.assertEqual([r["seen"] for r in results], [[0, 1, 2], [0, 1, 2, 3, 4]])
        self.assertEqual(results[0]["w"], results[1]["w"])
        # The group AllReduce made is gone when batches() ends: its threads
        # joined while Python is whole (left to interpreter shutdown, they
        # could abort a process whose job succeeded).
        self.assertEqual([r["group_left"] for r in results], [False, False])
        torch.manual_seed(0)
        start = torch.randn(3)
        # 3 rounds of the mean of 1x and 2x [1, 2, 3], then 2 of worker 1's 2x, at 0.5.
        expected = start - 0.5 * (3 * 1.5 + 2 * 2.0) * torch.tensor([1.0, 2.0, 3.0])
        np.testing.assert_allclose(results[0]["w"], expected.tolist(), rtol=1e-6)


CHECKS = textwrap.dedent("""
    import json, os
    import numpy as np
    import sparta

    tables = [sparta.Sparse("s", dim=3, optimizer="sgd", learning_rate=0.5),
              sparta.Dense("d", size=5, optimizer="sgd", learning_rate=0.25),
              sparta.Sparse("n", dim=4, initializer="normal", scale=0.1, seed=7),
              sparta.Dense("e", size=3, initializer="constant", scale=1.0, optimizer="sgd", learning_rate=1.0)]
    r = {}
    with sparta.Worker(None, tables) as w:
        r["tables"] = [w.table(t["name"])["kind"] for t in tables]
        peeked = None
        for i, batch in enumerate(w.batches()):
            if i == 1:
                r["peek"] = [peeked.id == batch.id, bool((peeked.unique_keys == batch.unique_keys).all())]
            if i == 0:
                peeked = w.peek()
                r["peek_again"] = w.peek().id == peeked.id
                keys = np.array([3, 1, 2], dtype=np.uint64)
                r["before"] = w.pull("s", keys).tolist()
                w.push("s", keys, np.arange(9, dtype=np.float32).reshape(3, 3)).wait()
                w.push("s", [2, 5], [[1, 1, 1], [2, 2, 2]]).wait()
                r["after"] = w.pull("s", [1, 2, 3, 5, 9]).tolist()
                # Pulled into rows of an array of the caller's, in place.
                big = np.full((4, 3), 7.0, dtype=np.float32)
                got = w.pull_async("s", [1, 2], out=big[1:3]).result()
                r["out"] = [big.tolist(), bool(np.shares_memory(got, big))]
                try:
                    w.pull_async("s", [1, 2], out=np.zeros((2, 6), dtype=np.float32)[:, ::2])
                except ValueError as e:
                    r["bad_out"] = str(e)
                w.push("d", None, [1, 2, 3, 4, 5]).wait()
                r["dense"] = w.pull("d").tolist()
                # Both dense tables in one push and one pull, each padded to
                # whole blocks where dense_layout says.
                layout, size = w.dense_layout(["e", "d"])
                grads = np.zeros(size, dtype=np.float32)
                (e_at, e_size), (d_at, d_size) = layout
                grads[e_at:e_at + e_size] = [1, 2, 3]
                grads[d_at:d_at + d_size] = [4, 4, 4, 4, 4]
                w.push_dense(["e", "d"], grads).wait()
                both = w.pull_dense_async(["e", "d"]).result()
                r["layout"] = [[e_at, e_size], [d_at, d_size], size]
                r["both"] = [both[e_at:e_at + e_size].tolist(), both[d_at:d_at + d_size].tolist()]
                r["one_by_one"] = [w.pull("e").tolist(), w.pull("d").tolist()]
                try:
                    w.push_dense(["e", "d"], grads[:-1])
                except ValueError as e:
                    r["bad_push_dense"] = str(e)
                r["normal"] = w.pull_async("n", [11, 12]).result().tolist()
                r["normal_again"] = w.pull("n", [12, 11]).tolist()
                try:
                    w.push("s", keys, np.zeros(4))
                except ValueError as e:
                    r["bad_push"] = str(e)
                try:
                    w.pull("nope", keys)
                except KeyError as e:
                    r["bad_table"] = str(e)
                r["batch"] = {"size": batch.size, "offsets": len(batch.offsets), "labels": len(batch.labels),
                              "writeable": bool(batch.labels.flags.writeable),
                              "slots_in_range": bool((batch.slots < len(batch.unique_keys)).all()),
                              "unique": len(set(batch.unique_keys.tolist())) == len(batch.unique_keys),
                              "features": int(batch.offsets[-1]) == len(batch.slots) == len(batch.values)}
        w.finish()
    with open(os.environ["SPARTA_CHECKS_OUT"], "w") as f:
        json.dump(r, f)
""")


class PullPushTest(PythonWorkerCase):
    def test_pull_and_push_apply_each_tables_optimizer(self):
        data = datagen(self.dir, 2000, 0, seed=5)
        script = os.path.join(self.dir, "checks.py")
        with open(script, "w") as f:
            f.write(CHECKS)
        out = os.path.join(self.dir, "checks.json")
        os.environ["SPARTA_CHECKS_OUT"] = out
        try:
            config = write_config(self.dir, cluster={"servers": 2},
                                  data={"train": data["train"], "batch_size": 500, "epochs": 1})
            result = launch_python(config, self.run_dir(), script)
        finally:
            del os.environ["SPARTA_CHECKS_OUT"]
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        r = json.loads(read(out))
        self.assertEqual(r["tables"], ["sparse", "dense", "sparse", "dense"])
        self.assertEqual(r["before"], [[0.0] * 3] * 3)
        # SGD at 0.5: w = -0.5 * (sum of the pushed gradients); keys 3, 1, 2
        # got rows 0, 1, 2 of arange(9); key 2 also (1, 1, 1), key 5 (2, 2, 2).
        self.assertEqual(r["after"], [[-1.5, -2.0, -2.5], [-3.5, -4.0, -4.5], [0.0, -0.5, -1.0],
                                      [-1.0, -1.0, -1.0], [0.0, 0.0, 0.0]])
        self.assertEqual(r["dense"], [-0.25, -0.5, -0.75, -1.0, -1.25])
        self.assertEqual(r["out"], [[[7.0] * 3, r["after"][0], r["after"][1], [7.0] * 3], True])  # keys 1, 2
        self.assertIn("out must be a writable, C-contiguous (2, 3) float32 array", r["bad_out"])
        # One push and one pull of two dense tables: e starts at 1 (SGD at
        # 1), d goes on from the values above (SGD at 0.25).
        (e_at, e_size), (d_at, d_size), size = r["layout"]
        self.assertEqual((e_at, e_size, d_size), (0, 3, 5))
        self.assertGreaterEqual(d_at, 3)
        self.assertGreaterEqual(size, d_at + 5)
        self.assertEqual(r["both"], [[0.0, -1.0, -2.0], [-1.25, -1.5, -1.75, -2.0, -2.25]])
        self.assertEqual(r["one_by_one"], r["both"])
        self.assertIn(f"these tables take {size} gradient floats", r["bad_push_dense"])
        # The initializer draws a row from (seed, key): the same row for the
        # same key whenever and wherever it is made, a different one per key.
        self.assertEqual(r["normal_again"], [r["normal"][1], r["normal"][0]])
        self.assertNotEqual(r["normal"][0], r["normal"][1])
        self.assertTrue(all(0 < abs(x) < 1 for row in r["normal"] for x in row))
        # peek() reads the next step's batch ahead, once; batches() then gives it.
        self.assertTrue(r["peek_again"])
        self.assertEqual(r["peek"], [True, True])
        self.assertIn("3 keys of dim 3 need 9 gradient floats, got 4", r["bad_push"])
        self.assertIn("no table 'nope'", r["bad_table"])
        self.assertEqual(r["batch"], {"size": 500, "offsets": 501, "labels": 500, "writeable": False,
                                      "slots_in_range": True, "unique": True, "features": True})

    def test_a_config_error_is_a_python_exception_naming_file_line_and_key(self):
        import sparta
        bad = write_config(self.dir, "bad.yaml", cluster={"wrokers": 2}, data={"train": "x.txt"})
        line = read(bad).splitlines().index("  wrokers: 2") + 1
        with self.assertRaises(sparta.SpartaError) as caught:
            sparta.Worker(bad, [sparta.Sparse("w", dim=1)])
        self.assertIn(f"{bad}:{line}", str(caught.exception))
        self.assertIn("wrokers", str(caught.exception))


class FailureTest(PythonWorkerCase):
    def test_a_killed_python_worker_fails_the_job_as_a_killed_cpp_worker_does(self):
        data = datagen(self.dir, 20000, 0)
        config = write_config(self.dir, cluster={"servers": 1, "workers": 2},
                              data={"train": data["train"], "epochs": 100000, "batch_size": 256},
                              model={"name": "lr"})
        run = self.run_dir()
        proc = launch_python(config, run, LR_EXAMPLE, wait=False)
        self.procs.append(proc)
        wait_for(lambda: " ex/s " in read(os.path.join(run, "worker-0.log")), 60, "training")
        daemons = json.loads(read(os.path.join(run, "daemons.json")))
        os.kill(next(d["pid"] for d in daemons if d["role"] == "worker" and d["rank"] == 1), signal.SIGKILL)
        out, err = proc.communicate(timeout=60)
        self.assertEqual(proc.returncode, 1)
        s = summary(run)
        self.assertEqual(s["status"], "failed")
        self.assertIn("worker-1", s["error"])

    def test_a_checkpoint_taken_with_python_workers_restores_bit_for_bit(self):
        data = datagen(self.dir, 30000, 3000, seed=6)
        store = os.path.join(self.dir, "store")
        config = self.lr_config(data, cluster__servers=2, data__epochs=40, storage__checkpoint_every="25 steps")
        run = self.run_dir("killed")
        proc = launch_python(config, run, LR_EXAMPLE, [f"storage.path={store}"], wait=False)
        self.procs.append(proc)
        latest_file = os.path.join(store, "checkpoints", "LATEST")
        wait_for(lambda: read(latest_file).strip() >= "ckpt-000002", 120, "two checkpoints")
        kill_job(proc, run)
        latest = os.path.join(store, "checkpoints", read(latest_file).strip())
        steps = int(json.loads(read(os.path.join(latest, "manifest.json")))["worker_steps"][0])
        self.assertGreater(steps, 0)
        copy = os.path.join(self.dir, "checkpoint-copy")
        shutil.copytree(latest, copy)
        # Resumed from the checkpoint, and the same job from a copy of it:
        # the Python worker skips exactly the batches it had trained.
        finish = self.lr_config(data, cluster__servers=2, data__epochs=2 + steps // 118)
        runs = {}
        for name, sets in (("resumed", [f"storage.path={store}", "storage.restore=latest"]),
                           ("again", [f"storage.path={os.path.join(self.dir, 'store-b')}", f"storage.restore={copy}"])):
            out = os.path.join(self.dir, f"{name}.predictions")
            result = launch_python(finish, self.run_dir(name), LR_EXAMPLE, sets + [f"eval.predictions_out={out}"])
            self.assertEqual(result.returncode, 0, result.stderr[-3000:])
            runs[name] = (summary(self.run_dir(name)), read(out))
        (resumed, resumed_predictions), (again, again_predictions) = runs["resumed"], runs["again"]
        self.assertEqual(resumed["restored_from"], latest)
        self.assertGreater(resumed["train_examples"], 0)
        self.assertEqual(resumed["train_examples"], again["train_examples"])
        self.assertEqual(resumed["audit_counts"], resumed["worker_steps"])
        self.assertEqual(len(resumed_predictions.splitlines()), 3000)
        self.assertEqual(resumed_predictions, again_predictions)


class EmbeddingBagTest(unittest.TestCase):
    """sparta.torch.EmbeddingBag's pooling and the gradient it pushes,
    against a loop in NumPy, on both of its paths (bags of one feature,
    placed; bags of several, summed), without a cluster."""

    class Worker:  # what the module asks of a worker: the table's dim, and push
        def __init__(self, dim):
            self.dim, self.pushed = dim, []

        def table(self, name):
            return {"dim": self.dim}

        def push(self, table, keys, grads):
            self.pushed.append((table, np.array(keys), np.array(grads)))

    def check(self, offsets, slots, fields, values, num_fields=3, dim=2, split=None, unused=None):
        import torch
        import sparta.torch
        from types import SimpleNamespace
        rng = np.random.default_rng(1)
        keys = np.arange(10, 10 + max(slots) + 1, dtype=np.uint64)
        rows = rng.standard_normal((len(keys), dim)).astype(np.float32)
        batch = SimpleNamespace(size=len(offsets) - 1, unique_keys=keys,
                                offsets=np.array(offsets, dtype=np.uint32), slots=np.array(slots, dtype=np.uint32),
                                fields=np.array(fields, dtype=np.uint32), values=np.array(values, dtype=np.float32))
        worker = self.Worker(dim)
        bag = sparta.torch.EmbeddingBag(worker, "t", num_fields=num_fields, split=split)
        out = bag(batch, rows.copy())
        weights = rng.standard_normal((batch.size, num_fields, dim)).astype(np.float32)
        if split is None:
            pooled = out
            (pooled * torch.from_numpy(weights)).sum().backward()
        else:
            # The parts, side by side, are the pooled rows; a part the loss
            # does not use (`unused`) gets no gradient.
            self.assertEqual([p.shape[2] for p in out], split)
            pooled = torch.cat(out, 2)
            parts = torch.from_numpy(weights).split(split, 2)
            if unused is not None:
                weights[:, :, sum(split[:unused]):sum(split[:unused + 1])] = 0
            sum((p * w).sum() for i, (p, w) in enumerate(zip(out, parts)) if i != unused).backward()
        expected = np.zeros((batch.size, num_fields, dim), dtype=np.float32)
        grads = np.zeros_like(rows)
        for e in range(batch.size):
            for i in range(offsets[e], offsets[e + 1]):
                expected[e, fields[i]] += values[i] * rows[slots[i]]
                grads[slots[i]] += values[i] * weights[e, fields[i]]
        np.testing.assert_allclose(pooled.detach().numpy(), expected, rtol=1e-6, atol=1e-6)
        self.assertEqual(len(worker.pushed), 1)
        table, pushed_keys, pushed = worker.pushed[0]
        self.assertEqual((table, pushed_keys.tolist()), ("t", keys.tolist()))
        np.testing.assert_allclose(pushed, grads, rtol=1e-5, atol=1e-6)

    def test_bags_of_one_feature(self):
        # Example 0: fields 0 and 2; example 1: field 1 (one-hot, in order).
        self.check([0, 2, 3], slots=[0, 1, 1], fields=[0, 2, 1], values=[1, 1, 1])

    def test_every_bag_its_one_feature(self):
        # Every field of every example has one token, in order: no pooling at all.
        self.check([0, 3, 6], slots=[0, 1, 2, 2, 1, 3], fields=[0, 1, 2, 0, 1, 2], values=[1] * 6)

    def test_bags_of_several_features_with_values(self):
        # Example 0 has two features in field 1, out of order; values weigh rows.
        self.check([0, 3, 5], slots=[2, 0, 1, 1, 2], fields=[1, 0, 1, 2, 2], values=[0.5, 2, 1, 3, -1])

    def test_rows_split_into_parts(self):
        # Rows of [w, v1, v2] (the DLRM example's [1, k]), as two tensors;
        # then with the first part left out of the loss.
        args = ([0, 3, 5], [2, 0, 1, 1, 2], [1, 0, 1, 2, 2], [0.5, 2, 1, 3, -1])
        self.check(*args, dim=3, split=[1, 2])
        self.check(*args, dim=3, split=[1, 2], unused=0)
        with self.assertRaisesRegex(ValueError, "add up to its dim 3"):
            import sparta.torch
            sparta.torch.EmbeddingBag(self.Worker(3), "t", split=[1, 1])

    def test_a_feature_past_the_pulled_rows_is_an_error_not_a_crash(self):
        import sparta.torch
        from types import SimpleNamespace
        batch = SimpleNamespace(size=1, unique_keys=np.arange(2, dtype=np.uint64), offsets=np.array([0, 2], np.uint32),
                                slots=np.array([0, 5], np.uint32), fields=np.array([0, 1], np.uint32),
                                values=np.ones(2, np.float32))
        bag = sparta.torch.EmbeddingBag(self.Worker(2), "t", num_fields=2)
        with self.assertRaisesRegex(IndexError, "feature 1 goes from row 5 of 2"):
            bag(batch, np.zeros((2, 2), np.float32))


class InstallTest(PythonWorkerCase):
    def test_cmake_install_puts_package_and_module_where_debians_python_looks(self):
        prefix = os.path.join(self.dir, "prefix")
        build = os.environ.get("SPARTA_BUILD", os.path.join(ROOT, "build"))
        subprocess.run(["cmake", "--install", build, "--prefix", prefix], check=True, stdout=subprocess.DEVNULL)
        version = f"python{sys.version_info.major}.{sys.version_info.minor}"
        site = os.path.join(prefix, "lib", version, "dist-packages")
        self.assertTrue(glob.glob(os.path.join(site, "sparta", "_native*.so")), os.listdir(site))
        # Debian's python3 searches <prefix>/lib/python3.X/dist-packages for
        # prefix /usr/local, the default one.
        paths = subprocess.run([sys.executable, "-c", "import sys; print('\\n'.join(sys.path))"], check=True,
                               capture_output=True, text=True, env={"PATH": os.environ["PATH"]}).stdout.split()
        self.assertIn(f"/usr/local/lib/{version}/dist-packages", paths)
        # The installed copy alone: no source tree, no build tree.
        probe = ("import sparta, sparta.worker, sparta._native as n; "
                 "print(sparta.__file__); print(n.__file__); print(sparta.Sparse('w', 4)['dim'])")
        out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True, cwd="/",
                             env={"PATH": os.environ["PATH"], "PYTHONPATH": site}).stdout.split()
        self.assertEqual([os.path.dirname(p) for p in out[:2]], [os.path.join(site, "sparta")] * 2)
        self.assertEqual(out[2], "4")

    def test_an_installed_sparta_launches_a_job_from_python(self):
        """sparta.launch from the installed package alone runs the installed
        launcher, which starts the installed daemons beside it."""
        prefix = os.path.join(self.dir, "prefix")
        build = os.environ.get("SPARTA_BUILD", os.path.join(ROOT, "build"))
        subprocess.run(["cmake", "--install", build, "--prefix", prefix], check=True, stdout=subprocess.DEVNULL)
        site = os.path.join(prefix, "lib", f"python{sys.version_info.major}.{sys.version_info.minor}", "dist-packages")
        data = datagen(self.dir, 3000, 300, seed=2)
        config = self.lr_config(data)
        run = os.path.join(self.dir, "installed-run")
        probe = ("import sparta, sparta._paths as p; print(p.LAUNCHER); "
                 f"job = sparta.launch({config!r}, run_dir={run!r}); job.wait(); print(job.summary()['status'])")
        env = {"PATH": os.environ["PATH"], "PYTHONPATH": site}  # no SPARTA_BIN, no source tree
        result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=self.dir, env=env,
                                timeout=300)
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        launcher, status = result.stdout.split()[-2:]
        self.assertEqual(launcher, os.path.join(prefix, "bin", "sparta"))
        # (The installed launcher has no build tree to fall back on: the
        # job ran the daemons installed beside it.)
        self.assertEqual(status, "ok")
        self.assertEqual(summary(run)["status"], "ok")


class PythonPreemptionTest(PreemptionCase):
    launcher_flags = ("--worker-command", python_command(LR_EXAMPLE))

    def test_sigterm_to_every_daemon_and_python_worker_checkpoints_and_resumes_exactly(self):
        # The Python workers take SIGTERM as sparta-worker does (common/termination.h).
        self.assertTrue(module_built())
        self.preempt_and_resume(self.sigterm_to_every_daemon)


if __name__ == "__main__":
    unittest.main()
