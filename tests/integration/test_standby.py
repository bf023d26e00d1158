"""A scheduler that survives its host (cluster.coordination: etcd): the
job's state lives in a real etcd, two schedulers run, one leads through an
etcd lease, and the standby takes over when the leader is killed with
kill -9 and its local state folder deleted. The job must finish with every
push applied exactly once (worker.audit)."""

import json
import os
import shutil
import signal
import time
import unittest

from harness import SLOWDOWN, ClusterTest, datagen, launch, read, start_etcd, wait_for, write_config


class StandbySchedulerTest(ClusterTest):
    def test_standby_leads_when_the_leader_dies_with_its_disk(self):
        etcd = start_etcd(self)
        data = datagen(self.dir, 40000, 4000, seed=21)
        # The scheduler hands the input out in units (on_demand), so no
        # worker can finish while no scheduler leads: however fast the
        # machine, training goes on after the takeover.
        epochs = max(6, 20 // SLOWDOWN)
        config = write_config(
            self.dir, "job.yaml",
            cluster={"scheduler": "localhost:0,127.0.0.1:0", "coordination": f"etcd://{etcd}", "servers": 2,
                     "workers": 2, "heartbeat_interval": 0.2, "heartbeat_timeout": 3},
            data={"train": data["train"], "test": data["test"], "batch_size": 512, "epochs": epochs,
                  "assignment": "on_demand", "split_size": "1MiB"},
            model={"name": "lr"}, optimizer={"name": "ftrl", "learning_rate": 0.2}, worker={"audit": 1},
            storage={"checkpoint_every": "1s"})
        run = self.run_dir()
        proc = launch(config, run, wait=False)
        self.procs.append(proc)
        # scheduler-0's address is a name: it binds the address the name resolves to.
        infos = [os.path.join(run, f"scheduler-{r}.info.json") for r in (0, 1)]
        # Only the leader listens, and so only it writes its info file.
        wait_for(lambda: any(os.path.exists(p) for p in infos), 60, "a scheduler to lead")
        leader = 0 if os.path.exists(infos[0]) else 1
        self.assertFalse(os.path.exists(infos[1 - leader]), "both schedulers lead")
        wait_for(lambda: "epoch 2 done" in read(os.path.join(run, "worker-0.log")), 120, "epoch 2")
        # The leader has published a checkpoint: the new one must number its
        # own after it (and roll back to it, were a shard lost).
        latest = os.path.join(run, "storage", "checkpoints", "LATEST")
        wait_for(lambda: os.path.exists(latest), 60, "a first checkpoint")
        pid = json.loads(read(infos[leader]))["pid"]
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        # Its disk is gone too: whatever it kept locally.
        shutil.rmtree(os.path.join(run, "storage", "scheduler"), ignore_errors=True)

        def new_leader():
            # The standby, or the fresh standby the launcher starts under
            # the dead one's rank, whichever wins the election.
            return any(os.path.exists(p) and json.loads(read(p))["pid"] != pid for p in infos)
        wait_for(new_leader, 30, "another scheduler to lead")
        print(f"\nanother scheduler listening {1000 * (time.monotonic() - killed):.0f} ms after kill -9 of the "
              f"leader (lease TTL 3 s)")
        out, err = proc.communicate(timeout=600)
        self.assertEqual(proc.returncode, 0, err[-3000:])
        logs = {name: read(os.path.join(run, name)) for name in os.listdir(run)
                if name.startswith("scheduler-") and name.endswith(".log")}
        self.assertIn("standing by", logs[f"scheduler-{1 - leader}.log"])
        took_over = [log for log in logs.values() if "took over the running job from etcd key" in log]
        self.assertEqual(len(took_over), 1, "exactly one scheduler takes the job over")
        self.assertIn("the scheduler restarted", read(os.path.join(run, "worker-1.log")))
        # The new leader ran the job on: training went on, and it took checkpoints.
        self.assertNotIn("training done", read(os.path.join(run, "worker-0.log")).split("the scheduler restarted")[0])
        after = took_over[0].split("took over the running job")[1]
        self.assertIn("published", after)
        self.assertNotIn("failed", after)
        s = json.loads(read(os.path.join(run, "summary.json")))
        self.assertEqual(s["status"], "ok", s.get("error"))
        # Every example exactly once: a unit is granted only once the state
        # that records the grant is in etcd, so the new leader knows which
        # units the workers hold and grants none of them again.
        self.assertEqual(s["train_examples"], 40000 * epochs)
        # Whatever was trained, every push was applied exactly once.
        self.assertEqual(s["audit_counts"], s["worker_steps"])
        # The local folder was never the state's home.
        self.assertFalse(os.path.exists(os.path.join(run, "storage", "scheduler")))


if __name__ == "__main__":
    unittest.main()


class EtcdStartTest(ClusterTest):
    def test_etcd_starts_when_its_first_picked_port_is_taken(self):
        # The race that a picked port loses: another process binds it before
        # etcd does. etcd exits; the harness must start it on fresh ports.
        import harness
        import socket
        import urllib.request
        busy = socket.socket()
        self.addCleanup(busy.close)
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        picked = []

        def first_taken():
            picked.append(busy.getsockname()[1] if not picked else real())
            return picked[-1]
        real = harness.free_port
        harness.free_port = first_taken
        self.addCleanup(setattr, harness, "free_port", real)
        address = start_etcd(self)
        self.assertGreater(len(picked), 2, "etcd was not started again")
        self.assertNotEqual(address, f"127.0.0.1:{picked[0]}")
        with urllib.request.urlopen(f"http://{address}/health", timeout=5) as r:
            self.assertEqual(json.loads(r.read())["health"], "true")
