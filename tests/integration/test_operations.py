"""Running a job like production: sparta-ctl (status, checkpoint, stop,
metrics), every daemon's Prometheus /metrics, the metrics CSV and its plot,
daemons bound to the configured interface only, and cluster.auth: curve
refusing a rogue node that lacks the cluster key."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import unittest
import urllib.parse
import urllib.request

from harness import (BIN, LAUNCHER, ClusterTest, datagen, launch, read, start_on_picked_ports, summary, wait_for,
                     write_config)

try:
    import zmq
except ImportError:  # python3-zmq is installed by scripts/install-deps.sh --tests
    zmq = None

CTL = os.path.join(BIN, "sparta-ctl")


def ctl(*args, check=True):
    result = subprocess.run([CTL, *args], capture_output=True, text=True, timeout=60)
    if check and result.returncode != 0:
        raise AssertionError(f"sparta-ctl {' '.join(args)} failed: {result.stderr}")
    return result


def status(run):
    return json.loads(ctl("status", "--run", run, "--json").stdout)


def running_status(run, ready=lambda s: True):
    """The status once the job runs and `ready` holds; None before (for wait_for)."""
    got = ctl("status", "--run", run, "--json", "--timeout", "2", check=False)
    if got.returncode != 0:
        return None
    s = json.loads(got.stdout)
    return s if s["phase"] == "running" and ready(s) else None


def scrape(host, port):
    """Parses Prometheus text into {(name, frozenset(labels)): value}."""
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)', line)
        assert m, f"not a Prometheus sample line: {line!r}"
        labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        samples[(m.group(1), labels)] = float(m.group(3))
    return samples


def value(samples, name, **labels):
    want = set(labels.items())
    found = [v for (n, ls), v in samples.items() if n == name and want <= set(ls)]
    assert found, f"no sample {name} {labels}"
    return sum(found)


def listening_sockets(pid):
    """(address, port) of every TCP socket `pid` listens on, from /proc."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table in ("tcp", "tcp6"):
        for line in read(f"/proc/{pid}/net/{table}").splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                addr, port = fields[1].split(":")
                if table == "tcp":
                    addr = ".".join(str(int(addr[i:i + 2], 16)) for i in (6, 4, 2, 0))
                found.append((addr, int(port, 16)))
    return found


def long_job(folder, **extra):
    """A job that trains until it is stopped: 2 servers, 2 workers, lr."""
    data = datagen(folder, 60000, 2000, seed=3)
    sections = dict(cluster={"servers": 2, "workers": 2, "host": "127.0.0.1"},
                    data={"train": data["train"], "test": data["test"], "batch_size": 128, "epochs": 1000},
                    model={"name": "lr"}, log={"progress_interval": 0.2})
    for k, v in extra.items():
        sections[k] = {**sections.get(k, {}), **v}
    return write_config(folder, **sections)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OperationsTest(ClusterTest):
    def long_job(self, **extra):
        return long_job(self.dir, **extra)

    def test_ctl_status_metrics_checkpoint_stop_and_plot(self):
        config = self.long_job()
        run = self.run_dir()
        proc = launch(config, run, wait=False)
        self.procs.append(proc)
        wait_for(lambda: os.path.exists(os.path.join(run, "ctl.yaml")), 60, "the run folder")
        # Running, and both workers have reported progress with their heartbeats.
        s = wait_for(lambda: running_status(run, lambda s: all(
            int(n["worker"]["steps"]) > 20 and n["worker"]["examples_per_sec"] > 0
            for n in s["nodes"] if n["info"]["role"] == "WORKER")), 120, "both workers to report progress")
        roles = sorted(n["info"]["role"] for n in s["nodes"])
        self.assertEqual(roles, ["SERVER", "SERVER", "WORKER", "WORKER"])
        servers = [n for n in s["nodes"] if n["info"]["role"] == "SERVER"]
        self.assertEqual(sum(n["primaries"] for n in servers), s["num_shards"])
        self.assertGreaterEqual(int(s["epoch"]), 1)
        self.assertLessEqual(int(s["clock_min"]), int(s["clock_max"]))
        text = ctl("status", "--run", run).stdout
        self.assertIn("job running", text)
        self.assertRegex(text, r"worker-1 .* ex/s, loss [0-9.]+, AUC [0-9.]+")

        # /metrics of every daemon, bound to 127.0.0.1 (the configured interface).
        daemons = json.loads(read(os.path.join(run, "daemons.json")))
        for d in daemons:
            for addr, port in listening_sockets(d["pid"]):
                self.assertEqual(addr, "127.0.0.1", f"{d['role']}-{d['rank']} listens on {addr}:{port}")
        server_port = servers[0]["info"]["metrics_port"]
        before = scrape("127.0.0.1", server_port)
        worker = next(n for n in s["nodes"] if n["info"]["role"] == "WORKER")
        w = scrape("127.0.0.1", worker["info"]["metrics_port"])
        self.assertGreater(value(w, "sparta_examples_total"), 0)
        self.assertGreater(value(w, "sparta_keys_total", type="push"), 0)
        self.assertGreater(value(w, "sparta_bytes_total", direction="out"), 0)
        self.assertTrue(0 < value(w, "sparta_train_loss") < 1)
        # The scheduler republishes its figures every second.
        sched = wait_for(lambda: (lambda m: m if value(m, "sparta_node_up") == 4 else None)(
            scrape("127.0.0.1", s["scheduler_metrics_port"])), 10, "the scheduler to count 4 live nodes")
        ages = [v for (n, _), v in sched.items() if n == "sparta_heartbeat_age_seconds"]
        self.assertEqual(len(ages), 4)
        self.assertTrue(all(0 <= a < 3 for a in ages), ages)
        # Counters move: the server keeps answering pulls and pushes.
        wait_for(lambda: value(scrape("127.0.0.1", server_port), "sparta_requests_total", type="push") >
                 value(before, "sparta_requests_total", type="push"), 30, "the server's push counter to grow")
        after = scrape("127.0.0.1", server_port)
        self.assertGreater(value(after, "sparta_table_rows"), 0)
        self.assertEqual(value(after, "sparta_shards", **{"as": "primary"}), servers[0]["primaries"])
        self.assertIn("sparta_rocksdb_bytes", {n for n, _ in after})
        everything = ctl("metrics", "--run", run).stdout
        for name in ("scheduler", "server-0", "server-1", "worker-0", "worker-1"):
            self.assertIn(f"# {name}: http://127.0.0.1:", everything)

        # A checkpoint on request, then a stop that checkpoints again and ends the job cleanly.
        self.assertIn("checkpoint started", ctl("checkpoint", "--run", run).stdout)
        wait_for(lambda: int(status(run)["checkpoint_version"]) >= 1, 60, "the requested checkpoint")
        ctl("stop", "--run", run)
        out, err = proc.communicate(timeout=120)
        self.assertEqual(proc.returncode, 0, err)
        self.assertIn("job stopped", out)
        result = summary(run)
        self.assertEqual(result["status"], "stopped")
        self.assertGreaterEqual(result["checkpoint_version"], 2)
        self.assertTrue(os.path.isdir(os.path.join(run, "storage", "checkpoints", "ckpt-000002")))
        # The stopped job's status is gone with it: ctl says so instead of hanging.
        gone = ctl("status", "--run", run, "--timeout", "1", check=False)
        self.assertNotEqual(gone.returncode, 0)
        self.assertIn("no answer from the scheduler", gone.stderr)

        # Each worker's progress CSV, and its plot.
        rows = read(os.path.join(run, "worker-0.csv")).splitlines()
        self.assertEqual(rows[0].split(",")[:4], ["unix_time", "elapsed_s", "epoch", "examples"])
        self.assertGreater(len(rows), 3)
        examples = [int(r.split(",")[3]) for r in rows[1:]]
        self.assertEqual(examples, sorted(examples))
        plotted = subprocess.run(["/usr/bin/python3", LAUNCHER, "plot", run], capture_output=True, text=True)
        self.assertEqual(plotted.returncode, 0, plotted.stderr)
        with open(os.path.join(run, "metrics.png"), "rb") as f:
            png = f.read()
        self.assertEqual(png[:8], b"\x89PNG\r\n\x1a\n")
        self.assertGreater(len(png), 10000)

    def test_metrics_port_from_the_config(self):
        # A fixed base port: the launcher gives each daemon on this host its own.
        # Below the kernel's ephemeral range (32768 and up here), so that no
        # port the OS hands out (a server's data port, a connection's local
        # port) can take one of the five; all five free now.
        import random
        import socket

        def free(port):
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", port))
                    return True
                except OSError:
                    return False
        base = next(b for b in random.sample(range(20000, 32000, 5), 200) if all(free(b + i) for i in range(5)))
        config = self.long_job(metrics={"port": base}, data={"epochs": 1})
        run = self.run_dir()
        result = launch(config, run)
        self.assertEqual(result.returncode, 0, result.stderr)
        for name, port in [("scheduler", base), ("server-0", base + 1), ("server-1", base + 2),
                           ("worker-0", base + 3), ("worker-1", base + 4)]:
            self.assertIn(f"metrics at http://127.0.0.1:{port}/metrics", read(os.path.join(run, f"{name}.log")))


    @unittest.skipUnless(os.path.isdir("/dev/shm"), "needs /dev/shm (a second filesystem)")
    def test_rocksdb_on_its_own_volume_checkpoints_to_the_shared_one(self):
        # Kubernetes layout: each server's RocksDB on its own volume
        # (storage.db_path), checkpoints under storage.path. Here /dev/shm
        # (tmpfs) and the temp folder are two filesystems, so RocksDB copies
        # the table files into the checkpoint instead of linking them.
        db = os.path.join("/dev/shm", f"sparta-db-{os.getpid()}")
        self.addCleanup(lambda: subprocess.run(["rm", "-rf", db]))
        storage = os.path.join(self.dir, "shared")
        data = datagen(self.dir, 20000, 2000, seed=8)
        first, second = os.path.join(self.dir, "first.txt"), os.path.join(self.dir, "second.txt")
        config = write_config(self.dir, data={"train": data["train"], "test": data["test"], "batch_size": 256},
                              model={"name": "fm"}, storage={"path": storage, "db_path": db})
        result = launch(config, self.run_dir("a"), sets=[f"eval.predictions_out={first}"])
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertTrue(os.path.isdir(os.path.join(db, "server-0")))
        self.assertFalse(os.path.exists(os.path.join(storage, "server-0")))
        self.assertNotEqual(os.stat(db).st_dev, os.stat(storage).st_dev)
        # The checkpoint restores: the resumed job has no steps left and
        # predicts exactly what the saved model predicted.
        result = launch(config, self.run_dir("b"), sets=[f"eval.predictions_out={second}", "storage.restore=latest"])
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("ckpt-000001", summary(self.run_dir("b"))["restored_from"])
        self.assertEqual(read(second), read(first))


@unittest.skipIf(zmq is None, "python3-zmq is not installed")
class AuthTest(ClusterTest):
    def test_rogue_node_without_the_key_is_refused_and_changes_nothing(self):
        key = os.path.join(self.dir, "cluster.key")
        ctl("keygen", key)
        self.assertEqual(os.stat(key).st_mode & 0o777, 0o600)
        rogue_key = os.path.join(self.dir, "rogue.key")
        ctl("keygen", rogue_key)
        data = datagen(self.dir, 30000, 3000, seed=5)
        base = dict(data={"train": data["train"], "test": data["test"], "batch_size": 256, "epochs": 40},
                    model={"name": "fm"}, optimizer={"name": "adagrad"},
                    cluster={"auth": "curve", "key_file": key})
        clean_out = os.path.join(self.dir, "clean.txt")
        config = write_config(self.dir, eval={"predictions_out": clean_out}, **base)
        result = launch(config, self.run_dir("clean"))
        self.assertEqual(result.returncode, 0, result.stderr)

        run = self.run_dir("attacked")
        out = os.path.join(self.dir, "attacked.txt")
        proc = launch(config, run, sets=[f"eval.predictions_out={out}"], wait=False)
        self.procs.append(proc)
        s = wait_for(lambda: running_status(run), 60, "the job to run (sparta-ctl holds the key)")
        scheduler = read(os.path.join(run, "ctl.yaml")).split("scheduler: ")[1].split()[0]
        server = next(n["info"] for n in s["nodes"] if n["info"]["role"] == "SERVER")
        targets = [f"tcp://{scheduler}", f"tcp://{server['host']}:{server['data_port']}"]
        # sparta-ctl without the key, or with another key, gets no answer and cannot stop the job.
        for args in (["--scheduler", scheduler], ["--scheduler", scheduler, "--key-file", rogue_key]):
            refused = ctl("stop", *args, "--timeout", "1", check=False)
            self.assertNotEqual(refused.returncode, 0)
            self.assertIn("no answer from the scheduler", refused.stderr)
        # A rogue node: plain ZeroMQ, and CURVE with its own key pair (it knows
        # the cluster's public key), sending what a node would send.
        cluster_public = read(key).split("public-key: ")[1].split()[0]
        rogue_public, rogue_secret = zmq.curve_keypair()
        context = zmq.Context()
        # If a step fails with a socket open, term() would hang; this lets the failure show.
        self.addCleanup(context.destroy, linger=0)
        stop = bytes([0x08, 28])                                  # STOP_REQUEST
        register = bytes([0x08, 1, 0x52, 4, 0x10, 3, 0x18, 0])    # REGISTER a worker
        push = [bytes([0x08, 22, 0x20, 1, 0x28, 0, 0x30, 1, 0x38, 1]), b"\x01" * 8, b"\x00\x00\x80\x7f"]  # PUSH +inf
        for curve in (False, True):
            for target in targets:
                sock = context.socket(zmq.DEALER)
                sock.setsockopt(zmq.LINGER, 0)
                if curve:
                    sock.curve_serverkey = cluster_public.encode()
                    sock.curve_publickey = rogue_public
                    sock.curve_secretkey = rogue_secret
                sock.connect(target)
                for frames in ([stop], [register], push):
                    sock.send_multipart(frames)
                # Nothing comes back: the handshake never completes.
                self.assertEqual(sock.poll(1000), 0)
                sock.close()
        context.term()
        # The refusals are counted and logged while the job is still running.
        wait_for(lambda: "refused a connection" in read(os.path.join(run, "scheduler.log")) and
                 "refused a connection" in read(os.path.join(run, "server-0.log")), 30, "the refusals to be logged")
        metrics = scrape(server["host"], server["metrics_port"])
        self.assertGreaterEqual(value(metrics, "sparta_auth_refused_total"), 1)
        self.assertEqual(len(status(run)["nodes"]), 2)  # still one server and one worker
        _, err = proc.communicate(timeout=300)
        self.assertEqual(proc.returncode, 0, err)
        self.assertEqual(summary(run)["status"], "ok")
        self.assertEqual(summary(run)["dropped_messages"], 0)  # not one rogue message was even read
        self.assertEqual(read(out), read(clean_out))

    def test_bad_key_file_is_a_config_error_with_its_line(self):
        config = write_config(self.dir, data={"train": "x"}, cluster={"auth": "curve"})
        result = launch(config, self.run_dir())
        self.assertNotEqual(result.returncode, 0)
        self.assertRegex(result.stderr, r"job\.yaml:\d+: key 'cluster\.auth' is curve, so cluster\.key_file")
        bad = os.path.join(self.dir, "bad.key")
        with open(bad, "w") as f:
            f.write("public-key: nonsense\n")
        config = write_config(self.dir, data={"train": "x"}, cluster={"auth": "curve", "key_file": bad})
        result = launch(config, self.run_dir("2"))
        self.assertNotEqual(result.returncode, 0)
        self.assertRegex(result.stderr, r"job\.yaml:\d+: key 'cluster\.key_file': .*bad\.key:1: not a 40-character Z85")


if __name__ == "__main__":
    unittest.main()


class PrometheusTest(ClusterTest):
    """Debian's Prometheus server scrapes a running job, as an operator's
    would: the test writes its scrape configuration from the daemons'
    metrics ports and reads the series back through the HTTP query API."""

    def query(self, port, promql):
        url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.loads(response.read().decode())
        self.assertEqual(body["status"], "success", body)
        return body["data"]["result"]

    def test_a_real_prometheus_scrapes_the_jobs_throughput_and_a_servers_table_rows(self):
        prometheus = shutil.which("prometheus")
        self.assertIsNotNone(prometheus, "prometheus is installed by scripts/install-deps.sh --tests")
        config = long_job(self.dir)
        run = self.run_dir()
        proc = launch(config, run, wait=False)
        self.procs.append(proc)
        wait_for(lambda: os.path.exists(os.path.join(run, "ctl.yaml")), 60, "the run folder")
        s = wait_for(lambda: running_status(run, lambda s: all(
            int(n["worker"]["steps"]) > 0 for n in s["nodes"] if n["info"]["role"] == "WORKER")), 120,
            "both workers to train")
        # Plain static targets: every sample carries the daemon's own `role`
        # and `rank` labels, which is what the queries below go by.
        ports = [s["scheduler_metrics_port"]] + [n["info"]["metrics_port"] for n in s["nodes"]]
        lines = ["global: {scrape_interval: 1s, evaluation_interval: 1s}", "scrape_configs:",
                 "  - job_name: sparta", "    static_configs:",
                 "      - targets: [" + ", ".join(f"'127.0.0.1:{p}'" for p in ports) + "]"]
        scrape_config = os.path.join(self.dir, "prometheus.yml")
        with open(scrape_config, "w") as f:
            f.write("\n".join(lines) + "\n")
        log = open(os.path.join(self.dir, "prometheus.log"), "a")

        def start():
            port = free_port()
            server = subprocess.Popen([prometheus, f"--config.file={scrape_config}",
                                       f"--storage.tsdb.path={os.path.join(self.dir, 'tsdb')}",
                                       f"--web.listen-address=127.0.0.1:{port}"],
                                      stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            self.procs.append(server)
            return server, port

        def ready(port):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False
        server, port = start_on_picked_ports(start, ready, 60, "Prometheus to start")

        def series(promql, count, check=lambda value: value > 0):
            """The query's series once there are `count` of them and each
            value passes `check`; None before (for wait_for)."""
            try:
                found = self.query(port, promql)
            except OSError:
                return None
            ok = len(found) == count and all(check(float(r["value"][1])) for r in found)
            return found if ok else None

        # Every daemon is up as Prometheus sees it (its own `up` series).
        ups = wait_for(lambda: series("up", 5, lambda v: v == 1), 60, "Prometheus to scrape all five daemons")
        self.assertEqual(sorted(int(r["metric"]["instance"].split(":")[1]) for r in ups), sorted(ports))
        # The job's throughput, per worker, from the workers themselves and
        # from the scheduler (which labels each worker's figure by node).
        rates = wait_for(lambda: series('sparta_examples_per_second{role="worker"}', 2), 60,
                         "a throughput from each worker")
        self.assertEqual(sorted(r["metric"]["rank"] for r in rates), ["0", "1"])
        wait_for(lambda: series('rate(sparta_examples_total{role="worker"}[5s])', 2), 60,
                 "both workers' example counters to grow")
        per_worker = wait_for(lambda: series('sparta_worker_examples_per_second{role="scheduler"}', 2), 60,
                              "the scheduler's per-worker throughput")
        self.assertEqual(sorted(r["metric"]["node"] for r in per_worker), ["worker-0", "worker-1"])
        # A server's rows: in all, and by table (labelled with the model's table name).
        wait_for(lambda: series('sparta_table_rows{role="server",rank="0"}', 1), 60, "server-0's rows")
        wait_for(lambda: series('sparta_table_hot_rows{role="server",rank="0",table="lr.w"}', 1), 60,
                 "server-0's rows of table lr.w")

        ctl("stop", "--run", run)
        out, err = proc.communicate(timeout=120)
        self.assertEqual(proc.returncode, 0, err)
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        log.close()
