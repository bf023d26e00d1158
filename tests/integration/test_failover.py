"""Replication and failover with real daemons: a server killed with kill -9
in the middle of training, and a server cut off by a network partition
(its own network namespace, link set down). The job must finish, lose no
acknowledged push and apply none twice (worker.audit counts every push
exactly), and a partitioned server must stop acting as a primary."""

import json
import os
import signal
import socket
import subprocess
import unittest

from harness import BIN, ClusterTest, datagen, launch, read, scaled, summary, wait_for, write_config
from test_durability import build_counter_plugin


def job(test, data, **cluster):
    return write_config(
        test.dir, f"job-{len(os.listdir(test.dir))}.yaml",
        cluster={"servers": 3, "workers": 2, "heartbeat_interval": 0.2, "heartbeat_timeout": scaled(1.5), **cluster},
        server={"threads": 1},
        data={"train": data["train"], "test": data["test"], "batch_size": 512, "epochs": 6},
        model={"name": "lr"},
        optimizer={"name": "ftrl", "learning_rate": 0.2},
        storage={"replication_factor": 2, "ack": "all"},
        worker={"audit": 1})


class FailoverTestCase(ClusterTest):
    def assert_exactly_once(self, s):
        self.assertEqual(s["status"], "ok", s.get("error"))
        self.assertEqual(len(s["audit_counts"]), 2)
        self.assertGreater(min(s["worker_steps"]), 0)
        # Every step's push was acknowledged, so every one must be counted
        # once: fewer means a lost update, more a duplicate.
        self.assertEqual(s["audit_counts"], s["worker_steps"])


class KillTest(FailoverTestCase):
    def test_killed_server_loses_nothing(self):
        data = datagen(self.dir, 80000, 10000, seed=11)
        config = job(self, data)
        clean = launch(config, self.run_dir("clean"), ["data.epochs=30"])
        self.assertEqual(clean.returncode, 0, clean.stderr)
        baseline = summary(self.run_dir("clean"))
        self.assert_exactly_once(baseline)

        run = self.run_dir("killed")
        proc = launch(config, run, ["data.epochs=30"], wait=False)
        self.procs.append(proc)
        wait_for(lambda: "epoch 2 done" in read(os.path.join(run, "worker-0.log")), 120, "epoch 2")
        daemons = json.loads(read(os.path.join(run, "daemons.json")))
        pids = {(d["role"], d["rank"]): d["pid"] for d in daemons}
        os.kill(pids[("server", 1)], signal.SIGKILL)
        scheduler_log = os.path.join(run, "scheduler.log")
        wait_for(lambda: "failing over" in read(scheduler_log), 30, "the failover")
        # The launcher starts a fresh server-1, which joins the running job
        # and takes over replicas.
        out, err = proc.communicate(timeout=300)
        self.assertEqual(proc.returncode, 0, err)
        self.assertIn("starting a fresh server-1 to rejoin", err)
        self.assertIn("joined the running job", read(scheduler_log))
        self.assertRegex(read(os.path.join(run, "server-1.restart1.log")), r"loading [1-9][0-9]* rows of table 'lr.w'")
        s = summary(run)
        self.assert_exactly_once(s)
        self.assertIn("server-1", read(scheduler_log))
        self.assertIn("failing over to its replicas", read(scheduler_log))
        self.assertIn("epoch 3", read(scheduler_log))  # failover, then the fresh server-1
        self.assertLess(abs(s["auc"] - baseline["auc"]), 0.003)


class SecondFailoverTest(FailoverTestCase):
    def test_a_second_failover_after_a_rejoin_loses_nothing(self):
        """server-2 dies, a fresh server-2 rejoins and takes replicas, then
        server-0 dies: each death and the rejoin change the view while pushes
        are in flight, so forwards sent under one view reach replicas under
        the next, and the second failover promotes replicas that lived through
        it all. The counting model trains every key once per epoch, so any
        update a promoted replica lacks (or has twice) shows in its key's
        count. The rejoin moves replicas: a forward sent before it may reach
        a server that no longer replicates one of its shards. That server
        must still apply the shards it holds (and skip the moved one, whose
        new copy has the push from its snapshot): refused whole, the push
        went back to the worker, was resent to the same primary and
        acknowledged as applied, and the shards it still held never got it."""
        rows, epochs = 20000, 16
        plugin = build_counter_plugin(self.dir)
        keys = os.path.join(self.dir, "keys.svm")
        with open(keys, "w") as f:
            f.writelines(f"1 {i}:1\n" for i in range(1, rows + 1))
        counts_out = os.path.join(self.dir, "twice.counts")
        config = write_config(
            self.dir, "twice.yaml",
            cluster={"servers": 3, "workers": 2, "heartbeat_interval": 0.2, "heartbeat_timeout": scaled(1.5)},
            server={"threads": 1},
            data={"train": keys, "test": keys, "format": "libsvm", "batch_size": 10, "epochs": epochs},
            model={"plugin": plugin}, storage={"replication_factor": 2, "ack": "all"},
            worker={"audit": 1, "max_inflight": 2})
        run = self.run_dir("twice")
        proc = launch(config, run, [f"eval.predictions_out={counts_out}"], wait=False)
        self.procs.append(proc)
        scheduler_log = os.path.join(run, "scheduler.log")
        wait_for(lambda: "epoch 2 done" in read(os.path.join(run, "worker-0.log")), 120, "epoch 2")
        pids = {(d["role"], d["rank"]): d["pid"] for d in json.loads(read(os.path.join(run, "daemons.json")))}
        os.kill(pids[("server", 2)], signal.SIGKILL)
        wait_for(lambda: "joined the running job" in read(scheduler_log), 60, "the fresh server-2")
        wait_for(lambda: "every shard replica is whole" in read(scheduler_log).split("joined the running job")[-1],
                 60, "server-2's replicas to be whole")
        os.kill(pids[("server", 0)], signal.SIGKILL)
        out, err = proc.communicate(timeout=300)
        self.assertEqual(proc.returncode, 0, err)
        self.assertEqual(read(scheduler_log).count("failing over to its replicas"), 2)
        self.assert_exactly_once(summary(run))
        counts = [round(float(p) * 1000) for p in read(counts_out).split()]
        self.assertEqual(len(counts), rows)
        self.assertEqual([(i + 1, c) for i, c in enumerate(counts) if c != epochs][:10], [])


class ComebackTest(FailoverTestCase):
    def test_server_back_from_a_freeze_is_told_it_was_declared_dead(self):
        data = datagen(self.dir, 80000, 10000, seed=14)
        run = self.run_dir("frozen")
        proc = launch(job(self, data), run, ["data.epochs=30"], wait=False)
        self.procs.append(proc)
        wait_for(lambda: "epoch 2 done" in read(os.path.join(run, "worker-0.log")), 120, "epoch 2")
        pids = {(d["role"], d["rank"]): d["pid"] for d in json.loads(read(os.path.join(run, "daemons.json")))}
        os.kill(pids[("server", 1)], signal.SIGSTOP)  # alive, but silent past the heartbeat timeout
        wait_for(lambda: "failing over" in read(os.path.join(run, "scheduler.log")), 30, "the failover")
        os.kill(pids[("server", 1)], signal.SIGCONT)
        wait_for(lambda: "was declared dead" in read(os.path.join(run, "server-1.log")), 30,
                 "server-1 to hear that it was declared dead")
        out, err = proc.communicate(timeout=300)
        self.assertEqual(proc.returncode, 0, err)
        self.assertIn("server-1", err)  # the launcher reports its exit and goes on
        self.assert_exactly_once(summary(run))


class SchedulerRestartTest(ClusterTest):
    def test_scheduler_killed_and_restarted_mid_job(self):
        data = datagen(self.dir, 80000, 10000, seed=13)
        config = job(self, data, servers=2)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        common = ["--config", config, "--set", f"cluster.scheduler=127.0.0.1:{port}", "--set", "data.epochs=10",
                  "--set", "storage.replication_factor=1",
                  "--set", f"storage.path={os.path.join(self.dir, 'storage')}"]
        summary_path = os.path.join(self.dir, "summary.json")
        logs = []

        def start(argv, name):
            log = open(os.path.join(self.dir, name + ".log"), "w")
            logs.append(log)
            p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            self.procs.append(p)
            return p

        scheduler_argv = [os.path.join(BIN, "sparta-scheduler")] + common + ["--summary", summary_path]
        first = start(scheduler_argv, "scheduler")
        others = [start([os.path.join(BIN, "sparta-server")] + common + ["--rank", str(r)], f"server-{r}")
                  for r in (0, 1)]
        others += [start([os.path.join(BIN, "sparta-worker")] + common + ["--rank", str(r)], f"worker-{r}")
                   for r in (0, 1)]
        try:
            wait_for(lambda: "epoch 2 done" in read(os.path.join(self.dir, "worker-0.log")), 120, "epoch 2")
            first.kill()
            first.wait()
            second = start(scheduler_argv, "scheduler-restarted")
            for p in others + [second]:
                p.wait(timeout=300)
                self.assertEqual(p.returncode, 0, read(os.path.join(self.dir, "scheduler-restarted.log"))[-3000:])
        finally:
            for log in logs:
                log.close()
        self.assertIn("took over the running job", read(os.path.join(self.dir, "scheduler-restarted.log")))
        self.assertIn("the scheduler restarted", read(os.path.join(self.dir, "worker-1.log")))
        s = json.loads(read(summary_path))
        self.assertEqual(s["status"], "ok", s.get("error"))
        self.assertEqual(s["train_examples"], 2 * 80000 * 10 // 2)
        self.assertEqual(s["audit_counts"], s["worker_steps"])


class PartitionTest(ClusterTest):
    """server-1 runs in its own network namespace, joined to the host by a
    veth pair; every other daemon binds to the host end. Setting the link
    down partitions server-1 while it keeps running."""

    def setUp(self):
        super().setUp()
        self.logs = []
        tag = f"{os.getpid() % 10000}"
        self.ns, self.veth = f"sparta-p{tag}", f"spv{tag}"
        self.subnet = f"10.{200 + os.getpid() % 50}.{os.getpid() % 250}"
        self.host_ip, self.ns_ip = f"{self.subnet}.1", f"{self.subnet}.2"
        cmds = [f"ip netns add {self.ns}",
                f"ip link add {self.veth}a type veth peer name {self.veth}b",
                f"ip link set {self.veth}b netns {self.ns}",
                f"ip addr add {self.host_ip}/24 dev {self.veth}a", f"ip link set {self.veth}a up",
                f"ip netns exec {self.ns} ip addr add {self.ns_ip}/24 dev {self.veth}b",
                f"ip netns exec {self.ns} ip link set {self.veth}b up",
                f"ip netns exec {self.ns} ip link set lo up"]
        for cmd in cmds:
            subprocess.run(cmd.split(), check=True, capture_output=True)

    def tearDown(self):
        super().tearDown()
        for log in self.logs:
            log.close()
        subprocess.run(["ip", "link", "del", f"{self.veth}a"], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)

    def start(self, argv, netns=False, name=""):
        prefix = ["ip", "netns", "exec", self.ns] if netns else []
        log = open(os.path.join(self.dir, f"{name}.log"), "w")
        self.logs.append(log)
        p = subprocess.Popen(prefix + argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(p)
        return p

    def test_partitioned_server_stops_being_primary(self):
        data = datagen(self.dir, 80000, 10000, seed=12)
        config = job(self, data)
        with socket.socket() as s:
            s.bind((self.host_ip, 0))
            port = s.getsockname()[1]
        common = ["--config", config, "--set", f"cluster.scheduler={self.host_ip}:{port}",
                  "--set", "data.epochs=10", "--set", "cluster.scheduler_grace=2"]
        here = ["--set", f"cluster.host={self.host_ip}"]
        summary_path = os.path.join(self.dir, "summary.json")
        scheduler = self.start([os.path.join(BIN, "sparta-scheduler")] + common + here + ["--summary", summary_path],
                               name="scheduler")
        servers = {r: self.start([os.path.join(BIN, "sparta-server")] + common + here + ["--rank", str(r)],
                                 name=f"server-{r}") for r in (0, 2)}
        servers[1] = self.start([os.path.join(BIN, "sparta-server")] + common +
                                ["--set", f"cluster.host={self.ns_ip}", "--rank", "1"], netns=True, name="server-1")
        workers = [self.start([os.path.join(BIN, "sparta-worker")] + common + here + ["--rank", str(r)],
                              name=f"worker-{r}") for r in (0, 1)]
        wait_for(lambda: "epoch 2 done" in read(os.path.join(self.dir, "worker-0.log")), 120, "epoch 2")
        subprocess.run(["ip", "link", "set", f"{self.veth}a", "down"], check=True)
        # The scheduler moves on without server-1 ...
        wait_for(lambda: "failing over" in read(os.path.join(self.dir, "scheduler.log")), 30, "the failover")
        # ... and server-1, cut off, stops serving by itself.
        servers[1].wait(timeout=30)
        self.assertNotEqual(servers[1].returncode, 0)
        self.assertIn("lost contact with the scheduler", read(os.path.join(self.dir, "server-1.log")))
        subprocess.run(["ip", "link", "set", f"{self.veth}a", "up"], check=True)
        for p in [scheduler, servers[0], servers[2]] + workers:
            p.wait(timeout=300)
            self.assertEqual(p.returncode, 0, read(os.path.join(self.dir, "scheduler.log"))[-2000:])
        s = json.loads(read(summary_path))
        self.assertEqual(s["status"], "ok", s.get("error"))
        self.assertEqual(s["audit_counts"], s["worker_steps"])


if __name__ == "__main__":
    unittest.main()
