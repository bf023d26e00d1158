"""The launchers beyond one host, each driven by the same YAML file:
  - over ssh (--hosts FILE), with network namespaces of this machine as the
    hosts and `ip netns exec` standing in for ssh (netns_shell.sh);
  - under Slurm (scripts/slurm/sparta.sbatch), on a one-host Slurm cluster
    the test starts itself: munged, slurmctld and three slurmd as three nodes;
  - on Kubernetes (scripts/sparta k8s): the rendered manifests' structure, and
    every container's command line run for real with --print-config."""

import csv
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import unittest

from harness import (BIN, LAUNCHER, ROOT, SLOWDOWN, ClusterTest, datagen, pid_alive, read, start_etcd, summary,
                     wait_for, write_config)

NETNS_SHELL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "netns_shell.sh")


def can_make_namespaces():
    if os.geteuid() != 0 or not shutil.which("ip"):
        return False
    probe = f"sparta-probe-{os.getpid()}"
    ok = subprocess.run(["ip", "netns", "add", probe], capture_output=True).returncode == 0
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return ok


class VirtualHosts:
    """Network namespaces joined by a bridge: host i is 10.<net>.0.<10+i>;
    this machine is 10.<net>.0.1 on the bridge (`gateway`), for services the
    hosts share (etcd)."""

    _made = 0  # instances made by this process: each gets names and a subnet of its own

    def __init__(self, count):
        # A deleted namespace's devices are torn down by the kernel after
        # `ip netns del` returns, so names reused by the next test's hosts
        # could still exist ("File exists"): no two instances share a name.
        VirtualHosts._made += 1
        serial = os.getpid() % 10000 * 10 + VirtualHosts._made % 10
        self.tag = f"sp{serial}"
        self.net = 200 + serial % 50
        self.bridge = f"{self.tag}br"
        self.gateway = f"10.{self.net}.0.1"
        self.hosts = []
        try:
            self._run("ip", "link", "add", self.bridge, "type", "bridge")
            self._run("ip", "addr", "add", f"{self.gateway}/24", "dev", self.bridge)
            self._run("ip", "link", "set", self.bridge, "up")
            for i in range(count):
                name, veth = f"{self.tag}h{i}", f"{self.tag}v{i}"
                address = f"10.{self.net}.0.{10 + i}"
                self._run("ip", "netns", "add", name)
                self.hosts.append((name, address))
                self._run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", name)
                self._run("ip", "link", "set", veth, "master", self.bridge, "up")
                for cmd in (["ip", "addr", "add", f"{address}/24", "dev", "eth0"],
                            ["ip", "link", "set", "eth0", "up"], ["ip", "link", "set", "lo", "up"]):
                    self._run("ip", "netns", "exec", name, *cmd)
        except Exception:
            self.close()  # the caller never gets the object to close
            raise

    @staticmethod
    def _run(*cmd):
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)}: exit {done.returncode}: {done.stderr.strip()}")

    def close(self):
        for i, (name, _) in enumerate(self.hosts):
            # Deleting one end of a veth pair deletes both at once, unlike
            # deleting the namespace that holds the other end.
            subprocess.run(["ip", "link", "del", f"{self.tag}v{i}"], capture_output=True)
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)


def standby_job(test, etcd, scheduler):
    """A job of about 8 s (under a sanitizer too) on etcd coordination with
    two schedulers, audited: most of it runs after the leader's death."""
    data = datagen(test.dir, 40000, 4000, seed=22)
    test.examples = 40000 * max(6, 60 // SLOWDOWN)
    return write_config(
        test.dir, "standby.yaml",
        cluster={"scheduler": scheduler, "coordination": f"etcd://{etcd}", "servers": 2, "workers": 2,
                 "heartbeat_interval": 0.2, "heartbeat_timeout": 3},
        data={"train": data["train"], "test": data["test"], "batch_size": 512, "epochs": max(6, 60 // SLOWDOWN)},
        model={"name": "lr"}, optimizer={"name": "ftrl", "learning_rate": 0.2}, worker={"audit": 1})


def kill_leader_and_finish(test, run, proc, output):
    """Once the job trains, kill -9 the leading scheduler (the pid in its info
    file: only the leader writes one); the other one must take the job over
    and finish it with every push applied once. Returns the leader's rank."""
    infos = [os.path.join(run, f"scheduler-{r}.info.json") for r in (0, 1)]

    def logs():
        names = [output] + [os.path.join(run, f"scheduler-{r}.log") for r in (0, 1)]
        return "\n".join(f"--- {name} (end):\n{read(name)[-2000:]}" for name in names if os.path.exists(name))
    wait_for(lambda: any(os.path.exists(p) for p in infos), 60, "a scheduler to lead", logs)
    leader = next(r for r, p in enumerate(infos) if os.path.exists(p))
    wait_for(lambda: "epoch 2 done" in read(os.path.join(run, "worker-0.log")), 120, "epoch 2")
    os.kill(json.loads(read(infos[leader]))["pid"], signal.SIGKILL)
    proc.communicate(timeout=600)
    test.assertEqual(proc.returncode, 0, read(output)[-3000:])
    took_over = [r for r in (0, 1) if "took over the running job from etcd key" in
                 read(os.path.join(run, f"scheduler-{r}.log"))]
    test.assertEqual(took_over, [1 - leader], "the standby, on its own host, takes the job over")
    s = summary(run)
    test.assertEqual(s["status"], "ok", s.get("error"))
    test.assertEqual(s["train_examples"], test.examples)
    test.assertEqual(s["audit_counts"], s["worker_steps"])
    return leader


@unittest.skipUnless(can_make_namespaces(), "needs root and ip netns (CI runs as root)")
class SshLauncherTest(ClusterTest):
    def test_standby_scheduler_on_another_host_takes_over(self):
        """Two scheduler lines in the host list (etcd coordination): a leader on h0 and a standby on h1; kill -9
        of the leader, and the standby leads the job, from its own host's address, to the end."""
        hosts = VirtualHosts(3)
        self.addCleanup(hosts.close)
        (h0, a0), (h1, a1), (h2, a2) = hosts.hosts
        etcd = start_etcd(self, hosts.gateway)
        hostfile = os.path.join(self.dir, "hosts.txt")
        with open(hostfile, "w") as f:
            f.write(f"{h0} scheduler address={a0}\n{h1} scheduler address={a1}\n{h0} server address={a0}\n"
                    f"{h1} server address={a1}\n{h1} worker address={a1}\n{h2} worker address={a2}\n")
        config = standby_job(self, etcd, scheduler="localhost:0")
        run = self.run_dir()
        output = os.path.join(self.dir, "launcher.out")
        with open(output, "w") as out:
            proc = subprocess.Popen([sys.executable, LAUNCHER, "launch", config, "--run-dir", run, "--quiet",
                                     "--hosts", hostfile, "--ssh", NETNS_SHELL], stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        leader = kill_leader_and_finish(self, run, proc, output)
        self.assertIn(f"scheduler-0@{h0}, scheduler-1@{h1}, server-0@{h0}", read(output))
        standby = os.path.join(run, f"scheduler-{1 - leader}.log")
        self.assertIn(f"scheduler listening on {(a0, a1)[1 - leader]}:", read(standby))

    def refused_host_list(self, lines):
        """What the launcher says, failing, about a host list of `lines`."""
        hostfile = os.path.join(self.dir, "hosts.txt")
        with open(hostfile, "w") as f:
            f.write(lines)
        config = write_config(self.dir, data={"train": "x"})
        result = subprocess.run([sys.executable, LAUNCHER, "launch", config, "--hosts", hostfile],
                                capture_output=True, text=True)
        self.assertNotEqual(result.returncode, 0)
        return hostfile, result.stderr

    def test_standbys_need_etcd_and_a_host_each(self):
        _, err = self.refused_host_list("a scheduler\nb scheduler\nb server\nc worker\n")
        self.assertIn("standby schedulers need cluster.coordination etcd://", err)

    def test_job_over_three_hosts(self):
        hosts = VirtualHosts(3)
        self.addCleanup(hosts.close)
        (h0, a0), (h1, a1), (h2, a2) = hosts.hosts
        hostfile = os.path.join(self.dir, "hosts.txt")
        with open(hostfile, "w") as f:
            f.write(f"# host role [address=...]\n{h0} scheduler address={a0}\n{h0} server address={a0}\n"
                    f"{h1} server address={a1}\n{h1} worker address={a1}\n{h2} worker address={a2}\n")
        data = datagen(self.dir, 20000, 2000, seed=4)
        config = write_config(self.dir, cluster={"servers": 1, "workers": 1},  # the host list decides
                              data={"train": data["train"], "test": data["test"], "batch_size": 256, "epochs": 2},
                              model={"name": "lr"})
        run = self.run_dir()
        result = subprocess.run([sys.executable, LAUNCHER, "launch", config, "--run-dir", run, "--quiet",
                                 "--hosts", hostfile, "--ssh", NETNS_SHELL], capture_output=True, text=True,
                                timeout=300)
        self.assertEqual(result.returncode, 0, result.stderr + read(os.path.join(run, "scheduler.log")))
        self.assertIn(f"scheduler@{h0}, server-0@{h0}, server-1@{h1}, worker-0@{h1}, worker-1@{h2}", result.stdout)
        s = summary(run)
        self.assertEqual((s["status"], s["servers"], s["workers"]), ("ok", 2, 2))
        self.assertGreater(s["auc"], 0.7)
        # Each daemon bound its own host's address, and its log came back to the run folder.
        self.assertIn(f"scheduler listening on {a0}:", read(os.path.join(run, "scheduler.log")))
        self.assertIn(f"serving on {a0}:", read(os.path.join(run, "server-0.log")))
        self.assertIn(f"serving on {a1}:", read(os.path.join(run, "server-1.log")))
        self.assertIn("training done", read(os.path.join(run, "worker-1.log")))
        self.assertNotIn("sparta-remote-pid", read(os.path.join(run, "worker-1.log")))
        hosts_of = {(d["role"], d["rank"]): d["host"] for d in json.loads(read(os.path.join(run, "daemons.json")))}
        self.assertEqual(hosts_of[("server", 1)], a1)
        self.assertEqual(hosts_of[("worker", 1)], a2)

    def test_bad_host_list_names_file_and_line(self):
        hostfile, err = self.refused_host_list("a scheduler\nb server\nc wroker\n")
        self.assertIn(f"{hostfile}:3: expected 'HOST scheduler|server|worker", err)


def free_ports(n):
    """n distinct ports free right now (held together while they are chosen)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class SlurmCluster:
    """munged + slurmctld + one slurmd per node, all on this host, every file in `folder`."""

    def __init__(self, folder, nodes):
        self.folder, self.nodes, self.pids = folder, nodes, []
        hostname = socket.gethostname()
        os.makedirs(f"{folder}/state", exist_ok=True)
        # munge: a key of our own and a socket of our own, run as user munge.
        os.makedirs(f"{folder}/munge", exist_ok=True)
        shutil.chown(f"{folder}/munge", "munge", "munge")
        os.chmod(f"{folder}/munge", 0o755)  # clients reach the socket; the key stays 0400
        key = f"{folder}/munge/munge.key"
        with open(key, "wb") as f:
            f.write(os.urandom(1024))
        shutil.chown(key, "munge", "munge")
        os.chmod(key, 0o400)
        # munged runs as user munge: it must reach its folder.
        for parent in (os.path.dirname(folder), folder):
            os.chmod(parent, 0o755)
        self.socket = f"{folder}/munge/munge.socket"
        subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged", "--socket", self.socket,
                        "--key-file", key, "--pid-file", f"{folder}/munge/munged.pid",
                        "--log-file", f"{folder}/munge/munged.log", "--seed-file", f"{folder}/munge/seed"],
                       check=True)
        self.pids.append(int(wait_for(lambda: read(f"{folder}/munge/munged.pid").strip(), 10, "munged")))
        # A port of its own for slurmctld and for each slurmd: ports next to a
        # free one may be taken (a slurmd that cannot bind exits at once).
        ctld_port, *node_ports = free_ports(1 + len(nodes))
        # MinJobAge: `sbatch --wait` polls every 2 s, but quadruples its
        # interval (to 8 s, then 32 s) while the interval is under half of
        # MinJobAge, so a finished job is purged only after it looked. At 30
        # a test waited up to 32 s after its job ended; at 4 it looks every 2 s.
        lines = [f"ClusterName=sparta{os.getpid()}", f"SlurmctldHost={hostname}(127.0.0.1)",
                 f"SlurmctldPort={ctld_port}", "SlurmUser=root", "AuthType=auth/munge",
                 f"AuthInfo=socket={self.socket}", "CredType=cred/munge", "ProctrackType=proctrack/linuxproc",
                 "TaskPlugin=task/none", "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core",
                 "MpiDefault=none", "JobAcctGatherType=jobacct_gather/none",
                 "AccountingStorageType=accounting_storage/none", "ReturnToService=2", "SwitchType=switch/none",
                 f"StateSaveLocation={folder}/state", f"SlurmdSpoolDir={folder}/spool-%n",
                 f"SlurmctldPidFile={folder}/slurmctld.pid", f"SlurmdPidFile={folder}/slurmd-%n.pid",
                 f"SlurmctldLogFile={folder}/slurmctld.log", f"SlurmdLogFile={folder}/slurmd-%n.log",
                 "SlurmdTimeout=30", "InactiveLimit=0", "KillWait=5", "MinJobAge=4"]
        for i, node in enumerate(nodes):
            lines.append(f"NodeName={node} NodeHostname={hostname} NodeAddr=127.0.0.1 Port={node_ports[i]} "
                         f"CPUs=2 RealMemory=2000 State=UNKNOWN")
        lines.append(f"PartitionName=test Nodes={','.join(nodes)} Default=YES MaxTime=INFINITE State=UP")
        self.conf = f"{folder}/slurm.conf"
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.env = {**os.environ, "SLURM_CONF": self.conf}
        subprocess.run(["slurmctld", "-f", self.conf], env=self.env, check=True)
        self.pids.append(int(wait_for(lambda: read(f"{folder}/slurmctld.pid").strip(), 30, "slurmctld")))
        for node in nodes:
            subprocess.run(["slurmd", "-f", self.conf, "-N", node], env=self.env, check=True)
            pid_file, log = f"{folder}/slurmd-{node}.pid", f"{folder}/slurmd-{node}.log"
            try:
                self.pids.append(int(wait_for(lambda: read(pid_file).strip(), 30, f"slurmd {node}")))
            except AssertionError as e:
                raise AssertionError(f"{e}; its log ends:\n{read(log)[-2000:] if os.path.exists(log) else '(none)'}")
        wait_for(lambda: subprocess.run(["sinfo", "-h", "-o", "%T", "-N"], env=self.env, capture_output=True,
                                        text=True).stdout.split() == ["idle"] * len(nodes), 60,
                 "every slurmd to register as idle")

    def close(self):
        for pid in reversed(self.pids):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for pid in self.pids:
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
            else:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


@unittest.skipUnless(os.geteuid() == 0 and shutil.which("slurmctld") and shutil.which("munged"),
                     "needs root, slurm-wlm and munge (scripts/install-deps.sh --tests installs them)")
class SlurmLauncherTest(ClusterTest):
    def test_sbatch_places_daemons_on_three_nodes(self):
        cluster = SlurmCluster(os.path.join(self.dir, "slurm"), ["node1", "node2", "node3"])
        self.addCleanup(cluster.close)
        data = datagen(self.dir, 20000, 2000, seed=6)
        config = write_config(self.dir, cluster={"servers": 2, "workers": 2},
                              data={"train": data["train"], "test": data["test"], "batch_size": 256, "epochs": 2},
                              model={"name": "lr"})
        run = self.run_dir()
        out = os.path.join(self.dir, "sbatch.out")
        env = {**cluster.env, "SPARTA_HOME": ROOT, "SPARTA_BIN": BIN}
        result = subprocess.run(["sbatch", "--wait", "-N", "3", f"--output={out}", os.path.join(ROOT, "scripts", "slurm", "sparta.sbatch"),
                                 config, "--run-dir", run, "--quiet"], env=env, capture_output=True, text=True,
                                timeout=300)
        self.assertEqual(result.returncode, 0, result.stderr + read(out) + read(os.path.join(run, "scheduler.log")))
        self.assertIn("slurm: scheduler@node1, server-0@node1, server-1@node2, worker-0@node3, worker-1@node1",
                      read(out))
        s = summary(run)
        self.assertEqual(s["status"], "ok")
        self.assertGreater(s["auc"], 0.7)
        self.assertIn("training done", read(os.path.join(run, "worker-1.log")))


    def test_standby_scheduler_on_the_second_node_takes_over(self):
        """Two addresses in cluster.scheduler (etcd coordination): scheduler i runs on node i of the allocation;
        kill -9 of the leader, and the standby leads the job to the end."""
        cluster = SlurmCluster(os.path.join(self.dir, "slurm"), ["node1", "node2", "node3"])
        self.addCleanup(cluster.close)
        etcd = start_etcd(self)
        config = standby_job(self, etcd, scheduler="127.0.0.1:0,127.0.0.1:0")
        run = self.run_dir()
        out = os.path.join(self.dir, "sbatch.out")
        env = {**cluster.env, "SPARTA_HOME": ROOT, "SPARTA_BIN": BIN}
        proc = subprocess.Popen(["sbatch", "--wait", "-N", "3", f"--output={out}",
                                 os.path.join(ROOT, "scripts", "slurm", "sparta.sbatch"), config, "--run-dir", run,
                                 "--quiet"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        kill_leader_and_finish(self, run, proc, out)
        self.assertIn("slurm: scheduler-0@node1, scheduler-1@node2, server-0@node1", read(out))

    def test_a_second_allocation_adds_workers_to_a_running_job(self):
        # data.assignment on_demand: `sbatch ... --join RUN_DIR` grows a job
        # that runs in another allocation by a worker per node.
        cluster = SlurmCluster(os.path.join(self.dir, "slurm"), ["node1", "node2", "node3"])
        self.addCleanup(cluster.close)
        data = datagen(self.dir, 20000, 2000, seed=7)
        config = write_config(self.dir, cluster={"servers": 1, "workers": 1},
                              data={"train": data["train"], "test": data["test"], "batch_size": 256, "epochs": 40,
                                    "assignment": "on_demand", "split_size": "256KiB"},
                              model={"name": "lr"})
        run = self.run_dir()
        sbatch = os.path.join(ROOT, "scripts", "slurm", "sparta.sbatch")
        env = {**cluster.env, "SPARTA_HOME": ROOT, "SPARTA_BIN": BIN}
        first_out, join_out = os.path.join(self.dir, "first.out"), os.path.join(self.dir, "join.out")
        first = subprocess.Popen(["sbatch", "--wait", "-N", "2", f"--output={first_out}", sbatch, config,
                                  "--run-dir", run, "--quiet"], env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        self.procs.append(first)
        wait_for(lambda: "epoch 2 done" in read(os.path.join(run, "worker-0.log")), 120, "the job to train")
        joined = subprocess.run(["sbatch", "--wait", "-N", "1", f"--output={join_out}", sbatch, config, "--join", run],
                                env=env, capture_output=True, text=True, timeout=300)
        self.assertEqual(joined.returncode, 0, joined.stderr + read(join_out))
        first.communicate(timeout=300)
        self.assertEqual(first.returncode, 0, read(first_out) + read(os.path.join(run, "scheduler.log"))[-3000:])
        self.assertIn("1 worker joining the job of", read(join_out))
        self.assertIn("the joined 1 worker finished with the job", read(join_out))
        s = summary(run)
        self.assertEqual(s["status"], "ok", s.get("error"))
        # The joined worker (rank 1, past cluster.workers) trained a share of the units.
        self.assertEqual(len(s["worker_steps"]), 2)
        self.assertGreater(int(s["worker_steps"][1]), 0)
        logs = [n for n in os.listdir(run) if n.startswith("worker-join-") and n.endswith(".log")]
        self.assertEqual(len(logs), 1)
        self.assertIn("training done", read(os.path.join(run, logs[0])))


class SweepTest(ClusterTest):
    """`scripts/sparta sweep`: every combination runs as its own job; a
    failed run is a failed row; sweep.csv, sweep.png and the best run."""

    def check_sweep(self, folder, out, expected_runs):
        with open(os.path.join(folder, "sweep.csv")) as f:
            rows = list(csv.DictReader(f))
        self.assertEqual(len(rows), expected_runs)
        ok = [r for r in rows if r["status"] == "ok"]
        failed = [r for r in rows if r["status"] == "failed"]
        # Each row's numbers are its own run's summary.
        for r in ok:
            s = summary(r["run_dir"])
            self.assertEqual(float(r["auc"]), s["auc"])
            self.assertEqual(float(r["logloss"]), s["logloss"])
            self.assertEqual(float(r["examples_per_sec"]), s["examples_per_sec"])
        with open(os.path.join(folder, "sweep.png"), "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        best = max(ok, key=lambda r: float(r["auc"]))
        self.assertIn(f"sparta sweep: best {best['run']} (", out)
        return rows, ok, failed

    def test_four_runs_one_failing_give_three_rows_a_failed_row_and_the_plot(self):
        data = datagen(self.dir, 5000, 1000, seed=12)
        config = write_config(self.dir, cluster={"servers": 1, "workers": 1},
                              data={"train": data["train"], "test": data["test"], "batch_size": 256},
                              model={"name": "lr"})
        folder = os.path.join(self.dir, "sweep")
        # batch_size 0 is refused by the config check: that run fails.
        result = subprocess.run([sys.executable, LAUNCHER, "sweep", config, "--grid", "data.batch_size=128,256,512,0",
                                 "--set", "optimizer.learning_rate=0.1", "--parallel", "2", "--dir", folder], capture_output=True, text=True, timeout=600)
        self.assertEqual(result.returncode, 0, result.stderr)
        rows, ok, failed = self.check_sweep(folder, result.stdout, 4)
        self.assertEqual([r["data.batch_size"] for r in ok], ["128", "256", "512"])
        self.assertEqual(len(failed), 1)
        self.assertEqual(failed[0]["data.batch_size"], "0")
        self.assertIn("data.batch_size", failed[0]["error"])
        # And from Python, with two keys: 2 x 2 = 4 runs, one made to fail.
        sys.path.insert(0, os.path.join(ROOT, "worker", "python"))
        import sparta  # sparta.sweep(...) is the sweep
        sweep = sparta.sweep
        folder = os.path.join(self.dir, "sweep2")
        rows = sweep(config, {"model.name": ["lr", "fm"], "model.embedding_dim": ["4", "0"]}, parallel=2,
                     sweep_dir=folder, quiet=True)
        self.assertEqual(len(rows), 4)
        self.assertEqual([(r["model.name"], r["model.embedding_dim"], r["status"]) for r in rows],
                         [("lr", "4", "ok"), ("lr", "0", "failed"), ("fm", "4", "ok"), ("fm", "0", "failed")])

    @unittest.skipUnless(os.geteuid() == 0 and shutil.which("slurmctld") and shutil.which("munged"),
                         "needs root, slurm-wlm and munge (scripts/install-deps.sh --tests installs them)")
    def test_as_a_slurm_job_array(self):
        cluster = SlurmCluster(os.path.join(self.dir, "slurm"), ["node1", "node2"])
        self.addCleanup(cluster.close)
        data = datagen(self.dir, 5000, 1000, seed=14)
        config = write_config(self.dir, cluster={"servers": 1, "workers": 1},
                              data={"train": data["train"], "test": data["test"], "batch_size": 256},
                              model={"name": "lr"})
        folder = os.path.join(self.dir, "sweep")
        env = {**cluster.env, "SPARTA_HOME": ROOT, "SPARTA_BIN": BIN}
        result = subprocess.run([sys.executable, LAUNCHER, "sweep", config, "--grid", "data.batch_size=128,256,512,0",
                                 "--parallel", "2", "--slurm", "--dir", folder], env=env, capture_output=True,
                                text=True, timeout=600)
        self.assertEqual(result.returncode, 0, result.stderr + result.stdout)
        rows, ok, failed = self.check_sweep(folder, result.stdout, 4)
        self.assertEqual([r["data.batch_size"] for r in ok], ["128", "256", "512"])
        self.assertEqual([r["data.batch_size"] for r in failed], ["0"])
        # Each ran inside its own allocation: the launcher placed it with srun.
        for r in ok:
            self.assertIn("slurm: scheduler@node", read(os.path.join(r["run_dir"], "launch.log")))

    def test_ctrl_c_stops_every_job(self):
        data = datagen(self.dir, 20000, 1000, seed=13)
        config = write_config(self.dir, cluster={"servers": 1, "workers": 1},
                              data={"train": data["train"], "test": data["test"], "batch_size": 64, "epochs": 1000},
                              model={"name": "lr"})
        folder = os.path.join(self.dir, "sweep")
        # Started with SIGINT ignored, as a shell's background job or CI's
        # runner may start it: Ctrl-C must stop it all the same, as it
        # stops a `launch` (Python raises KeyboardInterrupt only where
        # SIGINT was not ignored at its start).
        proc = subprocess.Popen([sys.executable, LAUNCHER, "sweep", config, "--grid", "data.batch_size=64,128",
                                 "--parallel", "2", "--dir", folder], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
        self.procs.append(proc)
        daemons = [os.path.join(folder, f"run-00{i}", "daemons.json") for i in range(2)]
        wait_for(lambda: all(os.path.exists(d) for d in daemons), 120, "both jobs to start")
        pids = [d["pid"] for path in daemons for d in json.loads(read(path))]
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=120)
        self.assertEqual(proc.returncode, 130, err)
        for pid in pids:
            wait_for(lambda: not pid_alive(pid), 30, f"daemon {pid} to stop")
        with open(os.path.join(folder, "sweep.csv")) as f:
            rows = list(csv.DictReader(f))
        self.assertEqual([r["status"] for r in rows], ["failed", "failed"])


class PythonJobTest(ClusterTest):
    """sparta.launch(): a job started from Python is the launcher's job; its
    handle's status, checkpoint and stop are sparta-ctl's, its summary the
    scheduler's."""

    def setUp(self):
        super().setUp()
        sys.path.insert(0, os.path.join(ROOT, "worker", "python"))
        import sparta
        self.sparta = sparta

    def test_launch_status_checkpoint_stop_and_a_config_error(self):
        sparta = self.sparta
        # A job that trains on what arrives until stopped (data.follow): it
        # runs for as long as the test needs it.
        incoming = os.path.join(self.dir, "incoming")
        os.makedirs(incoming)
        with open(os.path.join(self.dir, ".part-0"), "w") as f:
            f.writelines(f"{i % 2} {i % 997}:1 {1000 + i % 13}:1\n" for i in range(2000))
        os.rename(os.path.join(self.dir, ".part-0"), os.path.join(incoming, "part-0.txt"))
        config = write_config(self.dir, data={"train": incoming, "format": "libsvm", "batch_size": 10,
                                              "assignment": "on_demand", "follow": True, "follow_interval": 0.1},
                              model={"name": "lr"})

        # A config error is raised with the message that names the key.
        with self.assertRaises(sparta.SpartaError) as bad:
            sparta.launch(config, overrides={"data.batch_size": 0}, run_dir=os.path.join(self.dir, "bad"))
        self.assertIn("data.batch_size", str(bad.exception))

        run = os.path.join(self.dir, "run")
        with sparta.launch(config, overrides={"optimizer.learning_rate": 0.2}, run_dir=run) as job:
            self.assertEqual(job.run_dir, os.path.abspath(run))
            # The overrides reached the launcher as --set.
            self.assertIn("optimizer.learning_rate=0.2", json.loads(read(os.path.join(run, "launch.json")))["sets"])

            def trained():
                try:
                    status = job.status()
                except sparta.SpartaError:
                    return None  # the scheduler is not up yet
                return status if status["phase"] == "running" and int(status["clock_max"]) >= 200 else None

            status = wait_for(trained, 120, "the job to train the first file")
            keys = {i % 997 for i in range(2000)} | {1000 + i % 13 for i in range(2000)}

            def server_rows():
                return sum(int(n.get("server", {}).get("rows", 0)) for n in job.status()["nodes"])

            # The server's heartbeat has its rows (one per key, and the bias).
            wait_for(lambda: server_rows() >= len(keys), 60, "the server's heartbeat to count every key")
            self.assertEqual(sorted(n["info"]["role"] for n in status["nodes"]), ["SERVER", "WORKER"])
            # sparta-ctl sees the same job.
            ctl = subprocess.run([os.path.join(BIN, "sparta-ctl"), "status", "--run", run, "--json"],
                                 capture_output=True, text=True, timeout=60)
            self.assertEqual(ctl.returncode, 0, ctl.stderr)
            self.assertEqual(len(json.loads(ctl.stdout)["nodes"]), 2)
            # A checkpoint is published when checkpoint() returns.
            version = job.checkpoint()
            self.assertGreaterEqual(version, 1)
            manifest = json.loads(read(os.path.join(run, "storage", "checkpoints", f"ckpt-{version:06d}",
                                                    "manifest.json")))
            self.assertEqual(int(manifest["version"]), version)
            self.assertTrue(job.running())
            result = job.stop()
        self.assertFalse(job.running())
        self.assertEqual(result, job.summary())
        self.assertEqual(result["status"], "stopped")
        self.assertEqual(result["worker_steps"], [200])  # the whole file, once
        # A stopped job's summary says what it had (from the heartbeats):
        # the rows its server held, and a throughput.
        self.assertGreaterEqual(int(result["server_rows"]), len(keys))
        self.assertGreater(result["examples_per_sec"], 0)
        self.assertGreater(int(result["checkpoint_version"]), version)
        self.assertIn("sparta: run folder", read(job.log_path))


class KubernetesManifestTest(ClusterTest):
    def render(self, config, *extra):
        result = subprocess.run([sys.executable, LAUNCHER, "k8s", config, "--image", "registry.local/sparta:1",
                                 "--name", "ctr", "--namespace", "ml", *extra], capture_output=True, text=True)
        self.assertEqual(result.returncode, 0, result.stderr)
        import yaml
        return [d for d in yaml.safe_load_all(result.stdout) if d]

    def resolved(self, workload, folder, env):
        """The config a workload's container command resolves, with the
        pod's environment `env` (its pod IP 10.9.8.7), the config file and
        keys in `folder`: the daemon accepts the command (--print-config)."""
        command = workload["spec"]["template"]["spec"]["containers"][0]["command"]
        self.assertEqual(command[:2], ["/bin/sh", "-c"])
        script = (command[2].replace("/opt/sparta/bin", BIN).replace("/etc/sparta/job.yaml", f"{folder}/job.yaml")
                  .replace("/etc/sparta/keys", f"{folder}/keys") + " --print-config")
        got = subprocess.run(["/bin/sh", "-c", script], env={**os.environ, "POD_IP": "10.9.8.7", **env},
                             capture_output=True, text=True)
        self.assertEqual(got.returncode, 0, got.stderr)
        return json.loads(got.stdout)

    def test_serving_shards_get_a_serving_cluster_of_their_own(self):
        """serving.shards 3: the front-ends register with a serving cluster (a scheduler and 3 servers started
        with --serving) that restores the job's latest checkpoint, beside the training job's own servers."""
        config = write_config(self.dir, cluster={"scheduler": "0.0.0.0:7300", "servers": 2, "workers": 2},
                              data={"train": "/data/train.txt"}, model={"name": "fm"},
                              serving={"model": "latest", "shards": 3}, storage={"replication_factor": 2})
        docs = self.render(config)
        named = {(d["kind"], d["metadata"]["name"]): d for d in docs}
        self.assertEqual(named[("StatefulSet", "ctr-server")]["spec"]["replicas"], 2)  # the job's, untouched
        servers = named[("StatefulSet", "ctr-serving-server")]
        self.assertEqual(servers["spec"]["replicas"], 3)
        self.assertEqual(named[("Service", servers["spec"]["serviceName"])]["spec"]["clusterIP"], "None")
        scheduler = named[("Deployment", "ctr-serving-scheduler")]
        self.assertEqual(named[("Service", "ctr-serving-scheduler")]["spec"]["selector"],
                         scheduler["spec"]["template"]["metadata"]["labels"])
        front_ends = named[("Deployment", "ctr-serve")]
        for workload in (scheduler, servers):
            container, = workload["spec"]["template"]["spec"]["containers"]
            self.assertTrue(container["command"][2].endswith("--serving") or " --serving " in container["command"][2])
            shared, = [m for m in container["volumeMounts"] if m["name"] == "shared"]
            self.assertTrue(shared["readOnly"])  # the job's checkpoints are only read
        db, = [v for v in servers["spec"]["template"]["spec"]["volumes"] if v["name"] == "db"]
        self.assertIn("emptyDir", db)
        # Every command runs, and names the serving cluster's scheduler.
        folder = os.path.join(self.dir, "pod")
        os.makedirs(folder)
        shutil.copy(config, os.path.join(folder, "job.yaml"))
        here = self.resolved(scheduler, folder, {})
        self.assertEqual(here["cluster.scheduler"], "10.9.8.7:7300")
        self.assertEqual((here["serving.shards"], here["cluster.coordination"]), (3, "local"))
        server = self.resolved(servers, folder, {"HOSTNAME": "ctr-serving-server-2"})
        self.assertEqual(server["cluster.scheduler"], "ctr-serving-scheduler.ml.svc:7300")
        self.assertEqual((server["cluster.servers"], server["storage.db_path"]), (3, "/var/lib/sparta-db"))
        front_end = self.resolved(front_ends, folder, {})
        self.assertEqual(front_end["cluster.scheduler"], "ctr-serving-scheduler.ml.svc:7300")
        self.assertEqual((front_end["serving.shards"], front_end["serving.model"]), (3, "latest"))

    def test_serving_front_ends_follow_the_job_behind_a_service(self):
        config = write_config(self.dir, cluster={"scheduler": "0.0.0.0:7300", "servers": 2, "workers": 2},
                              data={"train": "/data/train.txt"}, model={"name": "fm"},
                              serving={"model": "latest", "port": 8600, "zmq_port": 8601})
        docs = self.render(config)
        serve, = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "ctr-serve"]
        service, = [d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "ctr-serve"]
        self.assertEqual(serve["spec"]["replicas"], 2)
        self.assertEqual(service["spec"]["selector"], serve["spec"]["template"]["metadata"]["labels"])
        self.assertEqual([(p["name"], p["port"]) for p in service["spec"]["ports"]], [("http", 8600), ("zmq", 8601)])
        container, = serve["spec"]["template"]["spec"]["containers"]
        self.assertEqual([p["containerPort"] for p in container["ports"]], [8600, 8601])
        self.assertEqual(container["readinessProbe"]["httpGet"], {"path": "/readyz", "port": 8600})
        self.assertEqual(container["livenessProbe"]["httpGet"], {"path": "/healthz", "port": 8600})
        command = container["command"][2]
        self.assertIn("/opt/sparta/bin/sparta-serve", command)
        self.assertIn("serving.model=latest", command)
        self.assertIn("storage.path=/var/lib/sparta", command)  # the job's checkpoints, on the shared volume
        self.assertIn("shared", [m["name"] for m in container["volumeMounts"]])
        # The command runs: its config is one sparta-serve accepts.
        argv = shlex.split(command[len("exec "):].replace("${POD_IP}", "127.0.0.1").replace(
            "/opt/sparta/bin", BIN).replace("/etc/sparta/job.yaml", config))
        result = subprocess.run(argv + ["--print-config"], capture_output=True, text=True)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(json.loads(result.stdout)["serving.port"], 8600)
        self.assertEqual(json.loads(result.stdout)["serving.zmq_port"], 8601)
        # --serving 3 / 0 overrides; without serving.model, none by default.
        self.assertEqual([d["spec"]["replicas"] for d in self.render(config, "--serving", "3")
                          if d["metadata"]["name"] == "ctr-serve" and d["kind"] == "Deployment"], [3])
        self.assertFalse([d for d in self.render(config, "--serving", "0") if d["metadata"]["name"] == "ctr-serve"])

    def test_manifests_from_a_config(self):
        key = os.path.join(self.dir, "cluster.key")
        subprocess.run([os.path.join(BIN, "sparta-ctl"), "keygen", key], check=True, capture_output=True)
        config = write_config(self.dir, cluster={"scheduler": "0.0.0.0:7300", "servers": 3, "workers": 2,
                                                 "auth": "curve", "key_file": key},
                              data={"train": "/data/train.txt"}, model={"name": "fm"}, metrics={"port": 9500})
        docs = self.render(config, "--set", "data.epochs=3")
        by_kind = {}
        for d in docs:
            by_kind.setdefault(d["kind"], []).append(d)
            self.assertEqual(d["metadata"]["namespace"], "ml")
        self.assertEqual(sorted(k for k in by_kind), ["ConfigMap", "Deployment", "Job", "PersistentVolumeClaim",
                                                      "Service", "StatefulSet"])
        services = {s["metadata"]["name"]: s for s in by_kind["Service"]}
        scheduler_svc = services["ctr-scheduler"]
        self.assertEqual({p["name"]: p["port"] for p in scheduler_svc["spec"]["ports"]},
                         {"control": 7300, "metrics": 9500})
        deployment, = by_kind["Deployment"]
        self.assertEqual(deployment["spec"]["replicas"], 1)
        self.assertEqual(scheduler_svc["spec"]["selector"], deployment["spec"]["template"]["metadata"]["labels"])
        servers, = by_kind["StatefulSet"]
        self.assertEqual(servers["spec"]["replicas"], 3)
        self.assertEqual(servers["spec"]["podManagementPolicy"], "Parallel")
        self.assertEqual(services[servers["spec"]["serviceName"]]["spec"]["clusterIP"], "None")
        claim, = servers["spec"]["volumeClaimTemplates"]
        self.assertEqual(claim["spec"]["accessModes"], ["ReadWriteOnce"])
        server_pod = servers["spec"]["template"]["spec"]
        self.assertIn(claim["metadata"]["name"], [m["name"] for m in server_pod["containers"][0]["volumeMounts"]])
        job, = by_kind["Job"]
        self.assertEqual((job["spec"]["completions"], job["spec"]["parallelism"], job["spec"]["completionMode"]),
                         (2, 2, "Indexed"))
        # Static slices: a failed worker fails the job, no pod is retried.
        self.assertEqual(job["spec"]["backoffLimit"], 0)
        self.assertNotIn("backoffLimitPerIndex", job["spec"])
        # on_demand: a failed worker pod is replaced under its index (its rank).
        elastic_job, = [d for d in self.render(config, "--set", "data.assignment=on_demand") if d["kind"] == "Job"]
        self.assertEqual(elastic_job["spec"]["backoffLimitPerIndex"], 3)
        self.assertNotIn("backoffLimit", elastic_job["spec"])
        no_restart, = [d for d in self.render(config, "--set", "data.assignment=on_demand", "--set", "worker.restart=false")
                       if d["kind"] == "Job"]
        self.assertEqual(no_restart["spec"]["backoffLimit"], 0)
        shared, = by_kind["PersistentVolumeClaim"]
        self.assertEqual(shared["spec"]["accessModes"], ["ReadWriteMany"])
        for workload in (deployment, servers, job):
            pod = workload["spec"]["template"]["spec"]
            self.assertEqual(workload["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"], "9500")
            # Eviction: SIGTERM, a final checkpoint within cluster.shutdown_grace (20 s), then SIGKILL.
            self.assertGreater(pod["terminationGracePeriodSeconds"], 20)
            volumes = {v["name"]: v for v in pod["volumes"]}
            self.assertEqual(volumes["keys"]["secret"]["secretName"], "ctr-cluster-key")
            self.assertEqual(volumes["config"]["configMap"]["name"], "ctr-config")
            templates = [t["metadata"]["name"] for t in workload["spec"].get("volumeClaimTemplates", [])]
            for m in pod["containers"][0]["volumeMounts"]:
                self.assertIn(m["name"], list(volumes) + templates)
        # The ConfigMap holds the config file as given.
        configmap, = by_kind["ConfigMap"]
        self.assertEqual(configmap["data"]["job.yaml"], read(config))

        # Every container's command line, run for real: the daemon accepts it
        # (--print-config) and resolves the rank, interface and scheduler the
        # pod would give it.
        folder = os.path.join(self.dir, "pod")
        os.makedirs(os.path.join(folder, "keys"))
        with open(os.path.join(folder, "job.yaml"), "w") as f:
            f.write(configmap["data"]["job.yaml"])
        shutil.copy(key, os.path.join(folder, "keys", "cluster.key"))

        def resolved(workload, env):
            return self.resolved(workload, folder, env)

        sched = resolved(deployment, {})
        self.assertEqual(sched["cluster.scheduler"], "10.9.8.7:7300")  # binds its pod IP
        server = resolved(servers, {"HOSTNAME": "ctr-server-2"})
        self.assertEqual(server["cluster.host"], "10.9.8.7")
        self.assertEqual(server["cluster.scheduler"], "ctr-scheduler.ml.svc:7300")
        self.assertEqual(server["storage.db_path"], "/var/lib/sparta-db")
        self.assertEqual(server["cluster.auth"], "curve")
        self.assertEqual(server["data.epochs"], 3)
        worker = resolved(job, {"JOB_COMPLETION_INDEX": "1"})
        self.assertEqual(worker["cluster.scheduler"], "ctr-scheduler.ml.svc:7300")
        # The rank comes from the pod's identity.
        def rank_of(workload, env):
            command = workload["spec"]["template"]["spec"]["containers"][0]["command"][2]
            return subprocess.run(["/bin/sh", "-c", "printf '%s\\n' " + command.split("--rank", 1)[1]],
                                  env={**os.environ, **env}, capture_output=True, text=True).stdout.strip()
        self.assertEqual(rank_of(servers, {"HOSTNAME": "ctr-server-2"}), "2")
        # kubectl scale statefulset: a pod past cluster.servers joins the running job under its ordinal.
        self.assertIn(" --join ", servers["spec"]["template"]["spec"]["containers"][0]["command"][2])
        self.assertEqual(resolved(servers, {"HOSTNAME": "ctr-server-7"})["cluster.host"], "10.9.8.7")
        self.assertEqual(rank_of(job, {"JOB_COMPLETION_INDEX": "1"}), "1")

        # cluster.coordination etcd: two schedulers (one leads, one stands
        # by), each at its own name behind a headless Service; every daemon
        # has the same list, and the etcd keys are named after the job.
        docs = self.render(config, "--set", "cluster.coordination=etcd://etcd.ml.svc:2379")
        self.assertNotIn("Deployment", [d["kind"] for d in docs])
        schedulers, = [d for d in docs if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "ctr-scheduler"]
        self.assertEqual(schedulers["spec"]["replicas"], 2)
        service, = [d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "ctr-scheduler"]
        self.assertEqual((service["spec"]["clusterIP"], service["spec"]["publishNotReadyAddresses"]), ("None", True))
        self.assertEqual(schedulers["spec"]["serviceName"], "ctr-scheduler")
        names = "ctr-scheduler-0.ctr-scheduler.ml.svc:7300,ctr-scheduler-1.ctr-scheduler.ml.svc:7300"
        standby = resolved(schedulers, {"HOSTNAME": "ctr-scheduler-1"})
        self.assertEqual(standby["cluster.scheduler"], names)
        self.assertEqual(standby["cluster.coordination"], "etcd://etcd.ml.svc:2379/ml-ctr")
        worker_job, = [d for d in docs if d["kind"] == "Job"]
        self.assertEqual(resolved(worker_job, {"JOB_COMPLETION_INDEX": "0"})["cluster.scheduler"], names)
        self.assertEqual(rank_of(schedulers, {"HOSTNAME": "ctr-scheduler-1"}), "1")


if __name__ == "__main__":
    unittest.main()
