"""Elastic jobs (data.assignment: on_demand) with real daemons and a real
kill -9: the scheduler hands out work units as workers ask, so a worker that
dies mid-job does not end it. Its unit goes back to the pool from where its
acknowledged pushes end; with worker.restart the launcher starts a fresh
worker under its rank, without it the others finish the work. A counting
model shows per key that every example was trained at least `epochs` times
and that the death cost at most one unit's examples trained twice."""

import datetime
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import time
import unittest

from harness import (BIN, ClusterTest, datagen, finish, kill_job, launch, log_tails, pb_decode, pb_encode, pid_alive,
                     read, scaled, start_etcd, summary, wait_for, write_config)
from test_durability import build_counter_plugin

try:
    import zmq
except ImportError:  # python3-zmq is installed by scripts/install-deps.sh --tests
    zmq = None

# EPOCHS: the on_demand jobs (3 workers, batches of 10) must outlast what
# happens to them: a kill -9, the heartbeat timeout (scaled(1.5)) and a fresh
# worker's start, a drain, a join. On this 2-core VM those are over within
# 2-3 s of the first step and 6 epochs take about 7 s (12 took 14 s).
ROWS, EPOCHS, SPLIT = 40000, 6, 65536


def unit_lines(path, split):
    """The most lines that start inside any one unit of `split` bytes (the
    scheduler cuts files the same way; a unit owns the lines starting in it)."""
    starts, offset = [], 0
    with open(path, "rb") as f:
        for line in f:
            starts.append(offset)
            offset += len(line)
    per_unit = {}
    for s in starts:
        per_unit[s // split] = per_unit.get(s // split, 0) + 1
    return max(per_unit.values())


def ctl(*args, run):
    """sparta-ctl ARGS for the job in `run`."""
    return subprocess.run([os.path.join(BIN, "sparta-ctl"), *args, "--run", run], capture_output=True, text=True,
                          timeout=30)


def drain(node, run):
    """sparta-ctl drain NODE for the job in `run`."""
    return ctl("drain", node, run=run)


class OnDemandJob(ClusterTest):
    """A job of 3 workers on keys 1..ROWS, trained by the counting model."""

    def setUp(self):
        super().setUp()
        self.plugin = build_counter_plugin(self.dir)
        self.data = os.path.join(self.dir, "keys.svm")
        with open(self.data, "w") as f:
            f.writelines(f"1 {i}:1\n" for i in range(1, ROWS + 1))

    def config(self, name, split=SPLIT, epochs=EPOCHS, **worker):
        # A short heartbeat timeout: the launcher starts the fresh worker
        # that long after the death, while the job still runs.
        return write_config(self.dir, name, cluster={"servers": 2, "workers": 3, "heartbeat_timeout": scaled(1.5)},
                            data={"train": self.data, "test": self.data, "format": "libsvm", "batch_size": 10,
                                  "epochs": epochs, "assignment": "on_demand", "split_size": f"{split}B"},
                            model={"plugin": self.plugin}, worker={"max_inflight": 2, **worker},
                            log={"progress_interval": 0.05})

    def finish_exactly(self, run, proc, predictions, epochs=EPOCHS, killed=()):
        """The launched job ends ok with no daemon dead but those `killed` (names), and nothing was lost or
        applied twice: the audit is exact and every key is trained exactly `epochs` times. Returns the summary."""
        out, err = finish(proc, run, 300)
        self.assertEqual(proc.returncode, 0, err)
        self.assertEqual(re.findall(r"(\S+) \(pid \d+\) ended with", err), list(killed), err)
        s = summary(run)
        self.assertEqual(s["status"], "ok", s.get("error"))
        self.assertEqual(s["audit_counts"], s["worker_steps"])
        counts = [round(float(p) * 1000) for p in read(predictions).split()]
        self.assertEqual(len(counts), ROWS)
        self.assertEqual([(i + 1, c) for i, c in enumerate(counts) if c != epochs][:10], [])
        return s

    def check_counts(self, s, counts, split=SPLIT, epochs=EPOCHS):
        bound = unit_lines(self.data, split)
        self.assertEqual(len(counts), ROWS)
        under = [i + 1 for i, c in enumerate(counts) if c < epochs]
        self.assertEqual(under, [], "keys trained fewer than `epochs` times")
        extra = sum(c - epochs for c in counts)
        print(f"\nworker lost: {extra} examples trained twice (a unit holds at most {bound} lines); "
              f"examples_retrained {s['examples_retrained']}, {s['work_units']} units")
        self.assertLessEqual(extra, bound)
        self.assertLessEqual(s["examples_retrained"], bound)
        self.assertEqual(s["workers_lost"], 1)


class WorkerLossTest(OnDemandJob):
    def kill_worker_mid_job(self, config, name):
        """Runs `config`, kill -9s worker-1 once it has trained a while; returns
        the launcher's result, the summary and the per-key counts."""
        run = self.run_dir(name)
        predictions = os.path.join(self.dir, f"{name}.counts")
        proc = launch(config, run, [f"eval.predictions_out={predictions}"], wait=False)
        self.procs.append(proc)
        # worker-1's progress lines: it is well into its units.
        csv = os.path.join(run, "worker-1.csv")
        wait_for(lambda: len(read(csv).splitlines()) > 4, 120, "worker-1 to train")
        daemons = json.loads(read(os.path.join(run, "daemons.json")))
        victim = next(d for d in daemons if d["role"] == "worker" and d["rank"] == 1)
        killed_at = time.time()
        os.kill(victim["pid"], signal.SIGKILL)
        out, err = finish(proc, run, 300)
        self.assertFalse(pid_alive(victim["pid"]))
        # Kill to units back in the pool, from the scheduler's log (a figure, not a check).
        back = re.search(r"^(\S+ \S+) \[scheduler\] warning: worker-1 .* work units go back to the pool",
                         read(os.path.join(run, "scheduler.log")), re.M)
        if back:
            at = datetime.datetime.strptime(back.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
            print(f"\nkill -9 to its units back in the pool: {1000 * (at - killed_at):.0f} ms")
        counts = [round(float(p) * 1000) for p in read(predictions).split()]
        return proc.returncode, err, summary(run), counts, run

    def test_killed_worker_is_restarted_and_the_job_finishes(self):
        code, err, s, counts, run = self.kill_worker_mid_job(self.config("restart.yaml"), "restart")
        self.assertEqual(code, 0, err)
        self.assertEqual(s["status"], "ok")
        self.assertIn("starting a fresh worker-1", err)
        restarted = read(os.path.join(run, "worker-1.restart1.log"))
        trained = re.search(r"training done: (\d+) examples", restarted)
        self.assertIsNotNone(trained, restarted[-2000:])
        self.assertGreater(int(trained.group(1)), 0)  # it took units like any other worker
        self.check_counts(s, counts)

    def test_without_restart_the_other_workers_finish_its_units(self):
        code, err, s, counts, run = self.kill_worker_mid_job(self.config("norestart.yaml", restart=False),
                                                            "norestart")
        self.assertEqual(code, 0, err)
        self.assertEqual(s["status"], "ok")
        self.assertNotIn("starting a fresh", err)
        self.assertFalse(os.path.exists(os.path.join(run, "worker-1.restart1.log")))
        self.check_counts(s, counts)


class WorkerLossQualityTest(ClusterTest):
    def test_a_killed_worker_costs_no_quality(self):
        """lr on generated data, on_demand, 3 workers: kill -9 of worker-1 mid-training (the launcher restarts
        it) ends with a test AUC within 0.003 of the same job without the kill, run first."""
        data = datagen(self.dir, 80000, 10000, seed=31)
        config = write_config(self.dir, "quality.yaml",
                              cluster={"servers": 2, "workers": 3, "heartbeat_timeout": scaled(1.5)},
                              data={"train": data["train"], "test": data["test"], "batch_size": 256, "epochs": 8,
                                    "assignment": "on_demand", "split_size": "256KiB"},
                              model={"name": "lr"}, optimizer={"name": "ftrl", "learning_rate": 0.2})
        clean = launch(config, self.run_dir("clean"))
        self.assertEqual(clean.returncode, 0, clean.stderr)
        baseline = summary(self.run_dir("clean"))
        run = self.run_dir("killed")
        proc = launch(config, run, wait=False)
        self.procs.append(proc)
        wait_for(lambda: "epoch 2 done" in read(os.path.join(run, "worker-0.log")), 120, "epoch 2")
        victim = next(d for d in json.loads(read(os.path.join(run, "daemons.json")))
                      if d["role"] == "worker" and d["rank"] == 1)
        os.kill(victim["pid"], signal.SIGKILL)
        out, err = finish(proc, run, 300)
        self.assertEqual(proc.returncode, 0, err)
        self.assertIn("starting a fresh worker-1", err)
        s = summary(run)
        self.assertEqual(s["status"], "ok", s.get("error"))
        self.assertEqual(s["workers_lost"], 1)
        print(f"\ntest AUC {s['auc']:.5f} with a worker killed, {baseline['auc']:.5f} without")
        self.assertLess(abs(s["auc"] - baseline["auc"]), 0.003)


class IdleRejoinJob(OnDemandJob):
    SPLIT, EPOCHS = 100000, 1

    def idle_workers_rejoin(self, name, **consistency):
        """One epoch in 4 units of about 1000 steps: the first worker to be done with its unit gets the fourth,
        and the other two wait, idle, while it trains that; it is then killed, so that its unit goes to them
        and they rejoin the clocks. Returns the run folder, the summary and the per-key counts."""
        config = self.config(f"{name}.yaml", split=self.SPLIT, epochs=self.EPOCHS, restart=False, **consistency)
        run = self.run_dir(name)
        predictions = os.path.join(self.dir, f"{name}.counts")
        proc = launch(config, run, [f"eval.predictions_out={predictions}"], wait=False)
        self.procs.append(proc)
        log = os.path.join(run, "scheduler.log")
        idle_line = re.compile(r"\] info: worker-(\d+) \([^)]*\) waits for work at clock")
        idle = lambda: {int(rank) for rank in idle_line.findall(read(log))}
        # Two idle: the third holds the fourth unit.
        wait_for(lambda: len(idle()) >= 2, 300, "two workers to wait for work", lambda: log_tails(run))
        idle = idle()
        daemons = json.loads(read(os.path.join(run, "daemons.json")))
        victim = next(d for d in daemons if d["role"] == "worker" and d["rank"] not in idle)
        os.kill(victim["pid"], signal.SIGKILL)
        out, err = finish(proc, run, 300)
        self.assertEqual(proc.returncode, 0, err)
        s = summary(run)
        self.assertEqual(s["status"], "ok")
        counts = [round(float(p) * 1000) for p in read(predictions).split()]
        return run, s, counts


class SspTest(IdleRejoinJob):
    def test_ssp_job_finishes_and_an_idle_worker_rejoins_at_the_slowest_clock(self):
        # At the end of every on_demand job, workers with nothing left to
        # train wait while the others finish the last units: under ssp they
        # would hold those workers' clocks back, and the job would hang.
        # Here a worker is killed while the others wait, idle: its units go
        # to them, and they rejoin the clocks.
        staleness = 2
        run, s, counts = self.idle_workers_rejoin("ssp", consistency="ssp", staleness=staleness)
        scheduler_log = read(os.path.join(run, "scheduler.log"))
        self.assertRegex(scheduler_log, r"worker-\d+ \([^)]*\) gets work again: it rejoins the clocks at \d+")
        # The bound held among the workers that trained (a worker may finish
        # the step it was allowed to start: s + 1).
        self.assertLessEqual(s["max_clock_spread"], staleness + 1)
        self.check_counts(s, counts, self.SPLIT, self.EPOCHS)


class BspTest(IdleRejoinJob):
    def test_bsp_job_finishes_and_an_idle_worker_rejoins_at_the_job_step(self):
        """worker.consistency bsp with on_demand: as in the ssp test, two workers wait for work, idle, and get
        work again when the third is killed. They rejoin the clocks, and their requests carry the job's step
        numbers, not their own (servers sum a bsp step's pushes by its number: no server sees a worker's
        request of a step older than the one it sums)."""
        run, s, counts = self.idle_workers_rejoin("bsp", consistency="bsp")
        rejoined = re.findall(r"worker-\d+ \([^)]*\) gets work again: it rejoins the clocks at (\d+)",
                              read(os.path.join(run, "scheduler.log")))
        self.assertTrue(rejoined)
        self.assertGreater(max(int(c) for c in rejoined), 0)
        for server in (0, 1):
            self.assertNotIn("bsp: a worker's request of step", read(os.path.join(run, f"server-{server}.log")))
        self.assertLessEqual(s["max_clock_spread"], 1)
        self.check_counts(s, counts, self.SPLIT, self.EPOCHS)


class DrainTest(OnDemandJob):
    def test_drained_worker_finishes_its_units_and_exits_0(self):
        """sparta-ctl drain worker-2 mid-job: it trains no new unit, finishes the ones it holds and exits 0;
        nothing is lost or trained twice (every key exactly `epochs` times)."""
        run = self.run_dir("drain")
        predictions = os.path.join(self.dir, "drain.counts")
        proc = launch(self.config("drain.yaml"), run, [f"eval.predictions_out={predictions}"], wait=False)
        self.procs.append(proc)
        wait_for(lambda: len(read(os.path.join(run, "worker-2.csv")).splitlines()) > 4, 120, "worker-2 to train")
        ctl = drain("worker-2", run)
        self.assertEqual(ctl.returncode, 0, ctl.stderr)
        self.assertIn("draining worker-2", ctl.stdout)
        # A worker that does not exist cannot be drained; the job is not disturbed.
        again = drain("worker-7", run)
        self.assertNotEqual(again.returncode, 0)
        self.assertIn("no live worker-7", again.stderr)
        out, err = finish(proc, run, 300)
        self.assertEqual(proc.returncode, 0, err)
        s = summary(run)
        self.assertEqual(s["status"], "ok")
        self.assertEqual(s["workers_lost"], 0)
        log = read(os.path.join(run, "worker-2.log"))
        self.assertIn("drained", log)
        self.assertNotIn("ended with", err)  # no daemon died
        counts = [round(float(p) * 1000) for p in read(predictions).split()]
        self.assertEqual(len(counts), ROWS)
        self.assertEqual([(i + 1, c) for i, c in enumerate(counts) if c != EPOCHS][:10], [])


class ServerDrainTest(OnDemandJob):
    """sparta-ctl drain server-1 in the middle of a job on 3 servers: each shard copy it holds moves live to
    another server (rows streamed in chunks while it keeps serving, the switch at a view change), then it
    exits 0; nothing is lost or applied twice (the audit, and every key trained exactly `epochs` times)."""

    # At batches of 10, several times what a drain (and a failover) takes:
    # the job must still be training when it ends. The drain and the failover
    # are over within 1 s of the first step, and 3 epochs take 9-13 s. A
    # scheduler's takeover waits out an etcd lease (scaled(3)) first: twice as many.
    EPOCHS, TAKEOVER_EPOCHS = 3, 6

    def drain_server_mid_job(self, replication):
        run = self.run_dir(f"drain-server-r{replication}")
        predictions = os.path.join(self.dir, f"drain-server-r{replication}.counts")
        config = write_config(self.dir, f"drain-server-r{replication}.yaml",
                              cluster={"servers": 3, "workers": 2},
                              data={"train": self.data, "test": self.data, "format": "libsvm", "batch_size": 10,
                                    "epochs": self.EPOCHS},
                              model={"plugin": self.plugin}, storage={"replication_factor": replication},
                              worker={"audit": 1}, log={"progress_interval": 0.05})
        proc = launch(config, run, [f"eval.predictions_out={predictions}"], wait=False)
        self.procs.append(proc)
        wait_for(lambda: len(read(os.path.join(run, "worker-0.csv")).splitlines()) > 4, 120, "worker-0 to train")
        ctl = drain("server-1", run)
        self.assertEqual(ctl.returncode, 0, ctl.stderr)
        self.assertIn("draining server-1", ctl.stdout)
        if replication > 1:
            # Two servers left cannot give up a third: each shard needs two copies.
            again = drain("server-2", run)
            self.assertNotEqual(again.returncode, 0)
            self.assertIn("storage.replication_factor", again.stderr)
        self.finish_exactly(run, proc, predictions, self.EPOCHS)
        scheduler = read(os.path.join(run, "scheduler.log"))
        self.assertIn("is drained: every shard it held has moved", scheduler)
        # Drained while the job trained, and it exited by itself.
        self.assertLess(scheduler.index("is drained"), scheduler.index("all workers finished"))
        self.assertIn("stopping:", read(os.path.join(run, "server-1.log")))

    def test_without_replicas(self):
        self.drain_server_mid_job(1)

    def test_target_killed_mid_move(self):
        """4 servers, 2 copies of each shard: server-3 is drained and server-0, one of the servers its copies move
        to, is killed -9 while they move (server-3 is stopped from just before the drain until just after the
        kill, so none is whole by then). Server-0's shards fail over, the launcher starts a fresh server-0, the
        copies that were on their way to the dead one move again to servers that stay, and server-3 still drains
        and exits 0; nothing is lost or applied twice. (Server-0 is stopped too, from before the drain until its
        kill: a copy can also come from the shard's other replica, and on a loaded machine the copies to a running
        server-0 were once whole in the tenth of a second between the drain and the kill.)"""
        run = self.run_dir("drain-target-killed")
        predictions = os.path.join(self.dir, "drain-target-killed.counts")
        config = write_config(self.dir, "drain-target-killed.yaml",
                              cluster={"servers": 4, "workers": 2, "heartbeat_timeout": scaled(1.5)},
                              data={"train": self.data, "test": self.data, "format": "libsvm", "batch_size": 10,
                                    "epochs": self.EPOCHS},
                              model={"plugin": self.plugin}, storage={"replication_factor": 2},
                              worker={"audit": 1}, log={"progress_interval": 0.05})
        proc = launch(config, run, [f"eval.predictions_out={predictions}"], wait=False)
        self.procs.append(proc)
        wait_for(lambda: len(read(os.path.join(run, "worker-0.csv")).splitlines()) > 4, 120, "worker-0 to train")
        pids = {(d["role"], d["rank"]): d["pid"] for d in json.loads(read(os.path.join(run, "daemons.json")))}
        os.kill(pids[("server", 3)], signal.SIGSTOP)
        os.kill(pids[("server", 0)], signal.SIGSTOP)
        try:
            got = drain("server-3", run)
            self.assertEqual(got.returncode, 0, got.stderr)
        finally:
            os.kill(pids[("server", 0)], signal.SIGKILL)
            os.kill(pids[("server", 3)], signal.SIGCONT)
        self.finish_exactly(run, proc, predictions, self.EPOCHS, killed=["server-0"])
        scheduler = read(os.path.join(run, "scheduler.log"))
        self.assertIn("failing over to its replicas", scheduler)
        self.assertIn("copies of drained servers move again", scheduler)
        self.assertIn("is drained: every shard it held has moved", scheduler)
        self.assertLess(scheduler.index("is drained"), scheduler.index("all workers finished"))
        self.assertIn("stopping:", read(os.path.join(run, "server-3.log")))

    def test_standby_scheduler_goes_on_with_a_drain(self):
        """cluster.coordination etcd: the leading scheduler is killed -9 while server-1's shards move (server-1 is
        stopped from just before the drain until just after the kill, so no copy can be whole by then). The
        standby takes over the moves with the job, server-1 still drains and exits 0, and nothing is lost or
        applied twice."""
        etcd = start_etcd(self)
        run = self.run_dir("drain-takeover")
        predictions = os.path.join(self.dir, "drain-takeover.counts")
        config = write_config(self.dir, "drain-takeover.yaml",
                              cluster={"scheduler": "localhost:0,127.0.0.1:0", "coordination": f"etcd://{etcd}",
                                       "servers": 3, "workers": 2, "heartbeat_interval": 0.2,
                                       "heartbeat_timeout": scaled(3)},
                              data={"train": self.data, "test": self.data, "format": "libsvm", "batch_size": 10,
                                    "epochs": self.TAKEOVER_EPOCHS},
                              model={"plugin": self.plugin}, worker={"audit": 1}, log={"progress_interval": 0.05})
        proc = launch(config, run, [f"eval.predictions_out={predictions}"], wait=False)
        self.procs.append(proc)
        wait_for(lambda: len(read(os.path.join(run, "worker-0.csv")).splitlines()) > 4, 120, "worker-0 to train")
        infos = [os.path.join(run, f"scheduler-{r}.info.json") for r in (0, 1)]
        rank = next(r for r, p in enumerate(infos) if os.path.exists(p))  # only the leader writes its file
        leader = json.loads(read(infos[rank]))["pid"]
        daemons = json.loads(read(os.path.join(run, "daemons.json")))
        source = next(d["pid"] for d in daemons if d["role"] == "server" and d["rank"] == 1)
        os.kill(source, signal.SIGSTOP)
        try:
            got = drain("server-1", run)
            self.assertEqual(got.returncode, 0, got.stderr)
            os.kill(leader, signal.SIGKILL)
        finally:
            os.kill(source, signal.SIGCONT)
        s = self.finish_exactly(run, proc, predictions, self.TAKEOVER_EPOCHS, killed=[f"scheduler-{rank}"])
        logs = [read(os.path.join(run, n)) for n in os.listdir(run) if n.startswith("scheduler-") and n.endswith(".log")]
        took_over = [log.split("took over the running job")[1] for log in logs if "took over the running job" in log]
        self.assertEqual(len(took_over), 1, "exactly one scheduler takes the job over")
        moves = re.search(r"(\d+) shard moves, (\d+) nodes draining", took_over[0])
        self.assertIsNotNone(moves, took_over[0][:2000])
        self.assertGreater(int(moves.group(1)), 0)
        self.assertEqual(int(moves.group(2)), 1)
        self.assertIn("is drained: every shard it held has moved", took_over[0])
        self.assertLess(took_over[0].index("is drained"), took_over[0].index("all workers finished"))
        self.assertIn("stopping:", read(os.path.join(run, "server-1.log")))
        self.assertEqual(s["workers_lost"], 0)

    def test_with_replicas(self):
        self.drain_server_mid_job(2)


class ServerJoinTest(OnDemandJob):
    """Servers added to a running job of 2: by hand (sparta-server --join) and through sparta-ctl scale, which
    the launcher carries out. The scheduler moves shards to the new server live until it holds its share of the
    rows (a third of them, to within a shard: shards are the unit that moves); nothing is lost or applied twice
    (the audit, and every key trained exactly `epochs` times). Servers join once every key has a row (after
    the first epoch), so that the rows they balance are the rows they are measured by."""

    # At batches of 20, several times what a join, its moves and a drain take:
    # a join is over within 3 s of the first step, a join then a drain within
    # 5 s, and 10 epochs take about 11 s.
    EPOCHS = 10

    def job(self, name, replication):
        run = self.run_dir(name)
        predictions = os.path.join(self.dir, f"{name}.counts")
        config = write_config(self.dir, f"{name}.yaml", cluster={"servers": 2, "workers": 2},
                              data={"train": self.data, "test": self.data, "format": "libsvm", "batch_size": 20,
                                    "epochs": self.EPOCHS},
                              model={"plugin": self.plugin}, storage={"replication_factor": replication},
                              worker={"audit": 1}, log={"progress_interval": 0.05})
        proc = launch(config, run, [f"eval.predictions_out={predictions}"], wait=False)
        self.procs.append(proc)
        self.wait_servers(run, 2, replication)
        return config, run, proc, predictions

    def wait_servers(self, run, servers, replication):
        """Polls sparta-ctl status until `servers` servers are up, no shard copy moves, the primaries' reports
        account for every key's R copies, and each server stores the rows of the copies it holds and no more (a
        copy that moved away is dropped: a join frees memory); returns the status."""
        def settled():
            got = ctl("status", "--json", run=run)
            if got.returncode != 0:
                return None
            status = json.loads(got.stdout)
            up = [n for n in status["nodes"] if n["info"]["role"] == "SERVER" and not n["dead"]]
            held = sum(int(n["rows_held"]) for n in up)
            stored_as_held = all(int(n["server"]["rows"]) == int(n["rows_held"]) for n in up)
            if len(up) == servers and status["shards_moving"] == 0 and held >= replication * ROWS and stored_as_held:
                return status
            return None
        return wait_for(settled, 120, f"{servers} servers holding every key's rows, with no shard moving")

    def check_share(self, status, rank, replication):
        """Server `rank` holds its share of the rows, 1/servers of all copies, to within two shard copies (the
        primaries and the replica copies are each balanced to within one: a shard is the unit that moves)."""
        up = {n["info"]["rank"]: int(n["rows_held"]) for n in status["nodes"]
              if n["info"]["role"] == "SERVER" and not n["dead"]}
        total = sum(up.values())
        share, copy = total / len(up), total / replication / status["num_shards"]
        print(f"\nrows held after the join: {up}; a share is {share:.0f}, a shard copy {copy:.0f}")
        self.assertLessEqual(abs(up[rank] - share), 2 * copy, up)

    def test_server_started_by_hand_joins_with_replicas(self):
        config, run, proc, predictions = self.job("join-server", replication=2)
        with open(os.path.join(run, "launch.json")) as f:
            sets = json.load(f)["sets"]  # the launcher's settings: scheduler address, storage
        log = os.path.join(self.dir, "joined-server.log")
        argv = [os.path.join(BIN, "sparta-server"), "--config", config, "--join"]
        for s in sets:
            argv += ["--set", s]
        with open(log, "w") as out:
            joined = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(joined)
        status = self.wait_servers(run, 3, replication=2)
        self.check_share(status, 2, replication=2)
        self.assertEqual(joined.wait(timeout=300), 0, read(log)[-3000:])
        self.finish_exactly(run, proc, predictions, self.EPOCHS)
        scheduler = read(os.path.join(run, "scheduler.log"))
        self.assertIn("server-2", re.search(r".*joined the running job.*", scheduler).group(0))
        self.assertIn("is whole here (new replica)", read(log))

    def test_scale_up_then_down_through_the_launcher(self):
        config, run, proc, predictions = self.job("scale-servers", replication=1)
        up = ctl("scale", "--servers", "3", run=run)
        self.assertEqual(up.returncode, 0, up.stderr)
        self.assertIn("--join", up.stdout)
        status = self.wait_servers(run, 3, replication=1)
        self.check_share(status, 2, replication=1)
        self.assertEqual(status["servers_wanted"], 3)
        # Back to 2: the highest rank (the one just added) drains and exits 0.
        down = ctl("scale", "--servers", "2", run=run)
        self.assertEqual(down.returncode, 0, down.stderr)
        self.assertIn("draining server-2", down.stdout)
        self.finish_exactly(run, proc, predictions, self.EPOCHS)
        scheduler = read(os.path.join(run, "scheduler.log"))
        self.assertIn("is drained: every shard it held has moved", scheduler)
        self.assertLess(scheduler.index("is drained"), scheduler.index("all workers finished"))
        self.assertIn("stopping:", read(os.path.join(run, "server-join-1.log")))


class RawClient:
    """Speaks the data plane's wire protocol to the servers of a running job, with no Sparta code (Header fields
    by number, proto/sparta.proto): a worker whose every message the test chooses, down to its sequence number."""

    CREATE_TABLE, PULL, PUSH, ABORTED = 20, 21, 22, 10

    def __init__(self, run, sender):
        self.run, self.sender, self.epoch = run, sender, 0
        self.context = zmq.Context()
        self.sockets = {}  # server rank -> DEALER

    def connect(self, rank, info_file):
        port = json.loads(read(os.path.join(self.run, info_file)))["port"]
        sock = self.context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(f"tcp://127.0.0.1:{port}")
        self.sockets[rank] = sock

    def close(self):
        # destroy, not term: term waits for every socket to be closed, so a
        # socket left open by a failed step would hang the test instead of
        # letting its error show.
        self.context.destroy(linger=0)

    def request(self, rank, fields, *frames):
        """Sends a request to server `rank` at the epoch it is at (taken from its refusal when it is at
        another); returns (status, error, reply frames)."""
        for _ in range(50):
            self.sockets[rank].send_multipart([pb_encode({2: self.sender, 4: self.epoch, **fields}), *frames])
            if not self.sockets[rank].poll(30000):
                raise AssertionError(f"server-{rank} did not answer")
            reply = self.sockets[rank].recv_multipart()
            h = pb_decode(reply[0])
            status, error = h.get(8, 0), h.get(9, b"").decode()
            other = re.search(r"this server is at epoch (\d+)", error)
            if status == self.ABORTED and other:
                self.epoch = int(other.group(1))
                continue
            return status, error, reply[1:]
        raise AssertionError(f"server-{rank}: no agreement on the epoch")

    def owner(self, table, key):
        """The rank of the server that leads `key`'s shard (the others refuse a pull of it, naming it)."""
        status, error, _ = self.request(0, {1: self.PULL, 5: table, 6: 1}, struct.pack("<Q", key))
        if status == 0:
            return 0
        led = re.search(r"which server (\d+) leads", error)
        if not led:
            raise AssertionError(f"server-0: {error}")
        return int(led.group(1))

    def pull(self, table, key):
        status, error, frames = self.request(self.owner(table, key), {1: self.PULL, 5: table, 6: 1, 7: 1},
                                             struct.pack("<Q", key))
        if status != 0:
            raise AssertionError(error)
        return struct.unpack("<f", frames[0])[0]

    def push(self, rank, table, seq, keys):
        """Pushes a gradient of 1 for each of `keys` to server `rank` as push `seq`; returns (status, error)."""
        status, error, _ = self.request(rank, {1: self.PUSH, 3: seq, 5: table, 6: len(keys), 7: 1},
                                        struct.pack(f"<{len(keys)}Q", *keys), struct.pack(f"<{len(keys)}f",
                                                                                          *[1.0] * len(keys)))
        return status, error


@unittest.skipIf(zmq is None, "python3-zmq not installed")
class ResendAfterMoveTest(OnDemandJob):
    """A push applied before its shard moved, and resent to the shard's new owner (its answer was lost, or it
    failed on another server), is recognized there as applied: a shard's duplicate records travel with its rows.
    A raw client plays the worker: it declares a table of its own (SGD, learning rate 1) on both servers, pushes
    a gradient of 1 for 48 keys (one push per server), has the job add a server (sparta-ctl scale), and resends
    the keys that moved under the same sequence numbers to their new owners. They acknowledge and apply nothing;
    a new push there is applied."""

    TABLE, SENDER = 30, 4000000

    def test_a_push_resent_to_its_shards_new_owner_is_not_applied_twice(self):
        run = self.run_dir("resend")
        config = write_config(self.dir, "resend.yaml", cluster={"servers": 2, "workers": 1},
                              data={"train": self.data, "format": "libsvm", "batch_size": 20, "epochs": 100000},
                              model={"plugin": self.plugin}, storage={"replication_factor": 1})
        proc = launch(config, run, wait=False)
        self.procs.append(proc)
        # Each daemon writes its info file once registered, the servers in any order.
        wait_for(lambda: all(read(os.path.join(run, f"server-{r}.info.json")) for r in (0, 1)) and
                 ctl("status", run=run).returncode == 0, 60, "the job to run")
        client = RawClient(run, self.SENDER)
        try:
            for rank in (0, 1):
                client.connect(rank, f"server-{rank}.info.json")
            spec = pb_encode({1: self.TABLE, 2: b"probe", 4: 1, 7: pb_encode({2: 1.0})})  # sparse, dim 1, sgd
            for rank in (0, 1):
                status, error, _ = client.request(rank, {1: RawClient.CREATE_TABLE, 13: spec})
                self.assertEqual(status, 0, error)
            keys = list(range(10**12, 10**12 + 48))
            before = {k: client.owner(self.TABLE, k) for k in keys}
            for rank in (0, 1):
                status, error = client.push(rank, self.TABLE, 100 + rank, [k for k in keys if before[k] == rank])
                self.assertEqual(status, 0, error)
            self.assertEqual({k: client.pull(self.TABLE, k) for k in keys}, {k: -1.0 for k in keys})

            up = ctl("scale", "--servers", "3", run=run)
            self.assertEqual(up.returncode, 0, up.stderr)

            def settled():
                status = json.loads(ctl("status", "--json", run=run).stdout or "{}")
                servers = [n for n in status.get("nodes", []) if n["info"]["role"] == "SERVER" and not n["dead"]]
                return (len(servers) == 3 and status["shards_moving"] == 0 and
                        read(os.path.join(run, "server-join-1.info.json")))

            wait_for(settled, 120, "3 servers, with no shard moving")
            client.connect(2, "server-join-1.info.json")
            after = {k: client.owner(self.TABLE, k) for k in keys}
            moved = [k for k in keys if after[k] != before[k]]
            self.assertGreater(len(moved), 0, "no key's shard moved to the new server")
            # Each moved key's piece of its push goes again, under that push's seq, to its new owner.
            for k in moved:
                status, error = client.push(after[k], self.TABLE, 100 + before[k], [k])
                self.assertEqual(status, 0, error)
            self.assertEqual({k: client.pull(self.TABLE, k) for k in keys}, {k: -1.0 for k in keys})
            # A push the new owner has not seen is applied.
            status, error = client.push(after[moved[0]], self.TABLE, 200, [moved[0]])
            self.assertEqual(status, 0, error)
            self.assertEqual(client.pull(self.TABLE, moved[0]), -2.0)
        finally:
            client.close()
        stop = ctl("stop", run=run)
        self.assertEqual(stop.returncode, 0, stop.stderr)
        _, err = finish(proc, run, 300)
        self.assertEqual(proc.returncode, 0, err)


class JoinTest(OnDemandJob):
    def test_worker_started_by_hand_joins_the_running_job(self):
        """sparta-worker --join for a running on_demand job of 3 workers: it becomes worker-3, trains units,
        and exits 0 with the job; every key is trained exactly `epochs` times."""
        run = self.run_dir("join")
        predictions = os.path.join(self.dir, "join.counts")
        config = self.config("join.yaml")
        proc = launch(config, run, [f"eval.predictions_out={predictions}"], wait=False)
        self.procs.append(proc)
        wait_for(lambda: len(read(os.path.join(run, "worker-0.csv")).splitlines()) > 4, 120, "worker-0 to train")
        scheduler = re.search(r"scheduler: (\S+)", read(os.path.join(run, "ctl.yaml"))).group(1)
        log = os.path.join(self.dir, "joined.log")
        with open(log, "w") as out:
            joined = subprocess.Popen([os.path.join(BIN, "sparta-worker"), "--config", config, "--join",
                                       "--set", f"cluster.scheduler={scheduler}"],
                                      stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(joined)
        self.assertEqual(joined.wait(timeout=300), 0, read(log)[-3000:])
        _, err = finish(proc, run, 300)
        self.assertEqual(proc.returncode, 0, err)
        text = read(log)
        self.assertIn("registered as id", text)
        trained = re.search(r"training done: (\d+) examples", text)
        self.assertIsNotNone(trained, text[-3000:])
        self.assertGreater(int(trained.group(1)), 0)
        s = summary(run)
        self.assertEqual(len(s["worker_steps"]), 4)  # the job grew to 4 workers
        counts = [round(float(p) * 1000) for p in read(predictions).split()]
        self.assertEqual(len(counts), ROWS)
        self.assertEqual([(i + 1, c) for i, c in enumerate(counts) if c != EPOCHS][:10], [])


class OnDemandCheckpointTest(ClusterTest):
    """A checkpoint of an on_demand job keeps the input left at the cut (whole
    units, and the rest of each unit in flight); restored on fewer or more
    workers, the job trains every example exactly `epochs` times in all."""

    def test_restore_on_two_and_on_four_workers(self):
        plugin = build_counter_plugin(self.dir)
        rows, epochs = 20000, 3
        data = os.path.join(self.dir, "keys.svm")
        with open(data, "w") as f:
            f.writelines(f"1 {i}:1\n" for i in range(1, rows + 1))

        def config(name, workers):
            return write_config(self.dir, name, cluster={"servers": 2, "workers": workers},
                                data={"train": data, "test": data, "format": "libsvm", "batch_size": 10,
                                      "epochs": epochs, "assignment": "on_demand", "split_size": "16KiB"},
                                model={"plugin": plugin}, worker={"threads": 2},
                                storage={"checkpoint_every": "40 steps"})

        store = os.path.join(self.dir, "store")
        run = self.run_dir("cut")
        proc = launch(config("three.yaml", 3), run, [f"storage.path={store}"], wait=False)
        self.procs.append(proc)
        latest_file = os.path.join(store, "checkpoints", "LATEST")
        wait_for(lambda: read(latest_file).strip() >= "ckpt-000003", 120, "three checkpoints")
        kill_job(proc, run)
        # Exactly `epochs` times holds only when no worker was lost (a lost
        # worker's acknowledged-but-unreported pushes are trained again).
        self.assertNotIn("goes back to the pool", read(os.path.join(run, "scheduler.log")),
                         "a worker was declared lost before the cut")
        saved = os.path.join(self.dir, "saved")
        shutil.copytree(os.path.join(store, "checkpoints", read(latest_file).strip()), saved)
        manifest = json.loads(read(os.path.join(saved, "manifest.json")))
        self.assertEqual(manifest["workers"], 3)
        left = sum(int(r["end"]) - int(r["begin"]) for r in manifest["work"]["remaining"])
        self.assertGreater(left, 0)
        self.assertLess(left, epochs * os.path.getsize(data))
        # Units in flight at the cut are kept from where their workers were.
        partial = sum(1 for r in manifest["work"]["remaining"] if int(r.get("begin", 0)) % 16384)
        print(f"\n{len(manifest['work']['remaining'])} ranges left at the cut, {partial} of them the rest of a unit")

        for workers in (2, 4):
            predictions = os.path.join(self.dir, f"counts-{workers}.txt")
            result = launch(config(f"resume-{workers}.yaml", workers), self.run_dir(f"resumed-{workers}"),
                            [f"storage.restore={saved}", f"storage.path={os.path.join(self.dir, f'store-{workers}')}",
                             f"eval.predictions_out={predictions}"])
            self.assertEqual(result.returncode, 0, result.stderr)
            resumed = summary(self.run_dir(f"resumed-{workers}"))
            self.assertEqual((resumed["workers_lost"], resumed["examples_retrained"]), (0, 0))
            counts = [round(float(p) * 1000) for p in read(predictions).split()]
            self.assertEqual(len(counts), rows)
            wrong = [(i + 1, c) for i, c in enumerate(counts) if c != epochs]
            print(f"\nrestored on {workers} workers ({left} bytes of input left at the cut): "
                  f"keys not trained exactly {epochs} times: {len(wrong)}")
            self.assertEqual(wrong[:10], [])


class FollowTest(ClusterTest):
    """data.follow: a job that trains on files as they arrive in a folder,
    each once, across a stop and a restart (online learning)."""

    def test_each_arriving_file_is_trained_once_across_a_stop_and_a_restart(self):
        plugin = build_counter_plugin(self.dir)
        incoming = os.path.join(self.dir, "incoming")
        os.makedirs(incoming)
        store = os.path.join(self.dir, "store")
        latest_file = os.path.join(store, "checkpoints", "LATEST")

        def manifest():
            if not os.path.exists(latest_file):
                return None
            return json.loads(read(os.path.join(store, "checkpoints", read(latest_file).strip(), "manifest.json")))

        def version():
            m = manifest()
            return int(m["version"]) if m else 0

        def trained(*names):
            """A checkpoint has taken in these files and has nothing left to train."""
            m = manifest()
            if not m:
                return False
            work = m.get("work", {})
            seen = {os.path.basename(p) for p in work.get("files_seen", [])}
            return set(names) <= seen and not work.get("remaining")

        def arrive(name, first, last, before_rename=None):
            # Written under a dot name, then renamed into place whole.
            partial = os.path.join(incoming, f".{name}.partial")
            with open(partial, "w") as f:
                f.writelines(f"1 {i}:1\n" for i in range(first, last + 1))
            if before_rename:
                before_rename()
            os.rename(partial, os.path.join(incoming, name))

        def config(name):
            return write_config(self.dir, name, cluster={"servers": 2, "workers": 2},
                                data={"train": incoming, "format": "libsvm", "batch_size": 10,
                                      "assignment": "on_demand", "split_size": "8KiB", "follow": True,
                                      "follow_interval": 0.1},
                                model={"plugin": plugin}, worker={"threads": 2},
                                storage={"path": store, "checkpoint_every": "1s"})

        def stop(run, proc):
            result = subprocess.run([os.path.join(BIN, "sparta-ctl"), "stop", "--run", run], capture_output=True,
                                    text=True, timeout=60)
            self.assertEqual(result.returncode, 0, result.stderr)
            _, err = proc.communicate(timeout=120)
            self.assertEqual(proc.returncode, 0, err)
            self.assertEqual(summary(run)["status"], "stopped")

        arrive("a.svm", 1, 3000)
        run = self.run_dir("follow")
        proc = launch(config("follow.yaml"), run, wait=False)
        self.procs.append(proc)
        wait_for(lambda: trained("a.svm"), 120, "a.svm to be trained")
        self.assertIsNone(proc.poll(), "a followed job runs until it is stopped")
        # A file still being written (a dot name) is not read, however many
        # looks pass over it: two more checkpoints, ten looks each.
        at = version()
        arrive("b.svm", 3001, 6000, before_rename=lambda: wait_for(lambda: version() >= at + 2, 60,
                                                                   "two checkpoints while b.svm is written"))
        wait_for(lambda: trained("a.svm", "b.svm"), 120, "b.svm to be trained")
        self.assertNotIn(".b.svm.partial", read(os.path.join(run, "scheduler.log")))
        stop(run, proc)

        # c.svm arrives while the job is down; the restarted job takes in
        # c.svm only.
        arrive("c.svm", 6001, 9000)
        run = self.run_dir("again")
        proc = launch(config("again.yaml"), run, ["storage.restore=latest"], wait=False)
        self.procs.append(proc)
        wait_for(lambda: trained("a.svm", "b.svm", "c.svm"), 120, "c.svm to be trained")
        log = read(os.path.join(run, "scheduler.log"))
        self.assertIn("c.svm arrived", log)
        self.assertNotIn("a.svm arrived", log)
        stop(run, proc)

        # Every key of every file was trained exactly once: the counting
        # model's prediction of key k is (times trained) / 1000. (Restored
        # on_demand, the job trains what the cut had left, nothing, and
        # evaluates.)
        keys = os.path.join(self.dir, "keys.svm")
        with open(keys, "w") as f:
            f.writelines(f"1 {i}:1\n" for i in range(1, 9001))
        other = os.path.join(self.dir, "other.svm")
        with open(other, "w") as f:
            f.write("1 999999:1\n")
        predictions = os.path.join(self.dir, "counts.txt")
        check = write_config(self.dir, "check.yaml", cluster={"servers": 2, "workers": 1},
                             data={"train": other, "test": keys, "format": "libsvm", "batch_size": 10,
                                   "assignment": "on_demand"},
                             model={"plugin": plugin}, storage={"path": store, "restore": "latest"},
                             eval={"predictions_out": predictions})
        result = launch(check, self.run_dir("check"))
        self.assertEqual(result.returncode, 0, result.stderr)
        counts = [round(float(p) * 1000) for p in read(predictions).split()]
        self.assertEqual(len(counts), 9000)
        self.assertEqual([(i + 1, c) for i, c in enumerate(counts) if c != 1][:10], [])


if __name__ == "__main__":
    unittest.main()
