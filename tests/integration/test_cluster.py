"""End-to-end behaviour of a real cluster on loopback: launch, results,
prediction output, bad data, bad config, missing input, dead and silent
nodes, and daemons started by hand."""

import json
import os
import signal
import subprocess
import time
import unittest

from harness import (BIN, ClusterTest, auc, bin_with_wrapper, datagen, labels_of, launch, pid_alive, read, summary,
                     wait_for, write_config)


class LaunchTest(ClusterTest):
    def test_two_servers_two_workers_train_and_report(self):
        data = datagen(self.dir, 40000, 5000, seed=3)
        predictions = os.path.join(self.dir, "predictions.txt")
        config = write_config(
            self.dir,
            cluster={"servers": 2, "workers": 2},
            data={"train": data["train"], "test": data["test"], "batch_size": 512, "epochs": 2},
            model={"name": "lr"},
            optimizer={"name": "ftrl", "learning_rate": 0.2},
            eval={"predictions_out": predictions})
        run = self.run_dir()
        result = launch(config, run)
        self.assertEqual(result.returncode, 0, result.stderr)
        s = summary(run)
        self.assertEqual(s["status"], "ok")
        # One file, two workers: byte-range splits must read every line once per epoch.
        self.assertEqual(s["train_examples"], 2 * 40000)
        self.assertEqual(s["test_rows"], 5000)
        self.assertGreater(s["examples_per_sec"], 0)
        self.assertGreater(s["train_seconds"], 0)
        self.assertGreater(s["logloss"], 0)
        self.assertGreater(s["server_rows"], 0)
        # Predictions: one per test line, in input order, so the AUC computed
        # from them and the test labels is the AUC the worker reported.
        probs = [float(x) for x in read(predictions).split()]
        self.assertEqual(len(probs), 5000)
        self.assertTrue(all(0 < p < 1 for p in probs))
        self.assertAlmostEqual(auc(probs, labels_of(data["test"])), s["auc"], places=6)
        # The model is better than chance, and below the generator's Bayes-optimal AUC.
        truth = [float(x) for x in read(data["truth"]).split()]
        bayes = auc(truth, labels_of(data["test"]))
        self.assertGreater(s["auc"], 0.6)
        self.assertLess(s["auc"], bayes)
        # daemons.json lists every daemon with its pid and ports; all are gone now.
        daemons = json.loads(read(os.path.join(run, "daemons.json")))
        self.assertEqual(sorted((d["role"], d["rank"]) for d in daemons),
                         [("scheduler", 0), ("server", 0), ("server", 1), ("worker", 0), ("worker", 1)])
        for d in daemons:
            self.assertFalse(pid_alive(d["pid"]), d)
            self.assertTrue(os.path.exists(os.path.join(run, d["log"])))
            if d["role"] != "worker":
                self.assertTrue(d["ports"], d)
        # The scheduler saw every node leave once the job was over (it waits
        # for that, up to 3 s, before it closes its socket).
        self.assertNotIn("had not disconnected", read(os.path.join(run, "scheduler.log")))

    def test_bad_lines_are_counted_and_named(self):
        data = datagen(self.dir, 20000, 1000, bad_lines=7)
        config = write_config(self.dir, cluster={"workers": 2},
                              data={"train": data["train"], "test": data["test"], "batch_size": 1000})
        run = self.run_dir()
        result = launch(config, run)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(summary(run)["bad_lines"], 7)
        self.assertEqual(summary(run)["train_examples"], 20000)
        logs = read(os.path.join(run, "worker-0.log")) + read(os.path.join(run, "worker-1.log"))
        self.assertEqual(logs.count("skipped malformed line"), 7)
        self.assertIn(data["train"] + ":", logs)
        # Over the limit, the job fails and says where.
        result = launch(config, self.run_dir("strict"), sets=["data.max_bad_lines=2"])
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("too many malformed input lines", result.stderr)
        self.assertIn(data["train"] + ":", result.stderr)

    def test_bad_config_names_file_line_and_key(self):
        config = write_config(self.dir, data={"train": "x.txt", "batch_sise": 5})
        result = launch(config, self.run_dir())
        self.assertEqual(result.returncode, 2)
        line = next(i for i, text in enumerate(read(config).splitlines(), 1) if "batch_sise" in text)
        self.assertIn(f"{config}:{line}: unknown key 'data.batch_sise'", result.stderr)
        result = launch(config, self.run_dir(), sets=["data.epochs=two"])
        self.assertEqual(result.returncode, 2)
        self.assertIn("key 'data.epochs': expected an integer", result.stderr)

    def test_missing_input_fails_at_start(self):
        config = write_config(self.dir, data={"train": os.path.join(self.dir, "nothing-*.txt")})
        run = self.run_dir()
        result = launch(config, run, timeout=60)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("no input file matches", read(os.path.join(run, "worker-0.log")))
        self.assertIn("nothing-*.txt", result.stderr)


    def test_the_port_the_launcher_picked_stays_the_schedulers(self):
        """With cluster.scheduler HOST:0 the launcher picks a free port and
        hands it to the scheduler, which binds it a moment later. A program
        that got the same port in between (another launcher's pick, a bind to
        any port) would hold it, and the job would fail at start with
        "cannot bind ...: Address already in use" (seen once in CI). Here
        such a program runs just before the scheduler, in its place: it binds
        the port and keeps it for the job's life. The launcher keeps the
        port it picked, so that bind is refused and the job trains."""
        data = datagen(self.dir, 2000, 500, seed=5)
        outcome = os.path.join(self.dir, "competitor.txt")
        bin_dir = bin_with_wrapper(self.dir, "sparta-scheduler", f"""import os, socket, sys
# (The launcher also runs it to read the configuration: no port then.)
address = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("cluster.scheduler=")), None)
if address is not None:
    host, port = address.rsplit(":", 1)
    competitor = socket.socket()
    try:
        competitor.bind((host, int(port)))
        competitor.set_inheritable(True)  # the scheduler below keeps it bound
        said = "took " + port
    except OSError as e:
        said = "refused " + port + ": " + e.strerror
    with open({outcome!r}, "w") as out:
        out.write(said)
os.execv({os.path.join(BIN, "sparta-scheduler")!r}, sys.argv)
""")
        config = write_config(self.dir, data={"train": data["train"], "test": data["test"], "batch_size": 256})
        run = self.run_dir()
        result = launch(config, run, env={**os.environ, "SPARTA_BIN": bin_dir})
        said = read(outcome)
        self.assertTrue(said.startswith("refused "), said)
        self.assertIn("Address already in use", said)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(summary(run)["status"], "ok")

class WireTest(ClusterTest):
    def test_fp16_wire_trains_like_fp32(self):
        data = datagen(self.dir, 30000, 5000, seed=11, interaction=1.0)
        results = {}
        for dtype in ("fp32", "fp16"):
            out = os.path.join(self.dir, f"{dtype}.txt")
            config = write_config(self.dir, name=f"{dtype}.yaml",
                                  data={"train": data["train"], "test": data["test"], "batch_size": 512},
                                  model={"name": "fm"}, optimizer={"name": "ftrl", "learning_rate": 0.05},
                                  wire={"dtype": dtype}, eval={"predictions_out": out})
            result = launch(config, self.run_dir(dtype))
            self.assertEqual(result.returncode, 0, result.stderr)
            results[dtype] = (summary(self.run_dir(dtype))["auc"], read(out))
        # 1 worker + 1 server is deterministic: the only difference is the
        # rounding of values to fp16 on the wire, so the predictions differ
        # (fp16 was used) and the quality does not.
        self.assertNotEqual(results["fp16"][1], results["fp32"][1])
        self.assertAlmostEqual(results["fp16"][0], results["fp32"][0], delta=0.003)


    def test_peers_on_one_host_talk_over_ipc_and_train_as_over_tcp(self):
        data = datagen(self.dir, 20000, 3000, seed=5)
        results = {}
        for transport in ("ipc", "tcp"):
            out = os.path.join(self.dir, f"{transport}.txt")
            config = write_config(self.dir, name=f"{transport}.yaml", cluster={"servers": 2, "workers": 1},
                                  data={"train": data["train"], "test": data["test"], "batch_size": 512},
                                  model={"name": "fm"}, storage={"replication_factor": 2},
                                  eval={"predictions_out": out})
            result = launch(config, self.run_dir(transport), [f"cluster.local_transport={transport}"])
            self.assertEqual(result.returncode, 0, result.stderr)
            run = self.run_dir(transport)
            worker, server = read(os.path.join(run, "worker-0.log")), read(os.path.join(run, "server-0.log"))
            scheme = "ipc:///tmp/sparta-" if transport == "ipc" else "tcp://"
            # Worker to servers and primary to replicas alike.
            self.assertIn(f"server-0 at {scheme}", worker)
            self.assertIn(f"server-1 at {scheme}", worker)
            self.assertIn(f"replicas on server-1 at {scheme}", server)
            results[transport] = read(out)
        # The transport carries the same bytes: 1 worker trains the same model.
        self.assertEqual(results["ipc"], results["tcp"])


class FailureTest(ClusterTest):
    def long_job(self, **cluster):
        data = datagen(self.dir, 20000, 0)
        config = write_config(self.dir, cluster={"servers": 2, "workers": 2, "heartbeat_timeout": 2, **cluster},
                              data={"train": data["train"], "epochs": 100000, "batch_size": 256},
                              log={"progress_interval": 0.2})
        run = self.run_dir()
        proc = launch(config, run, wait=False)
        self.procs.append(proc)
        # Training is under way once worker 0 prints a progress line.
        try:
            wait_for(lambda: " ex/s " in read(os.path.join(run, "worker-0.log")), 60, "training to start")
        except AssertionError as e:
            logs = {name: read(os.path.join(run, name))[-1500:] for name in sorted(os.listdir(run))
                    if name.endswith(".log")}
            raise AssertionError(f"{e}; the logs end:\n" + "\n".join(f"--- {n}\n{t}" for n, t in logs.items()))
        daemons = {(d["role"], d["rank"]): d["pid"] for d in json.loads(read(os.path.join(run, "daemons.json")))}
        return proc, run, daemons

    def assert_all_stopped(self, daemons):
        for name, pid in daemons.items():
            self.assertFalse(pid_alive(pid), f"{name} (pid {pid}) still running")

    def test_silent_server_is_detected_and_named(self):
        proc, run, daemons = self.long_job()
        stopped_at = time.monotonic()
        os.kill(daemons[("server", 1)], signal.SIGSTOP)  # alive but silent: no heartbeats
        out, err = proc.communicate(timeout=60)
        elapsed = time.monotonic() - stopped_at
        self.assertEqual(proc.returncode, 1, err)
        s = summary(run)
        self.assertEqual(s["status"], "failed")
        self.assertIn("server-1", s["error"])
        self.assertIn("stopped responding", s["error"])
        self.assertIn("server-1", err)
        # heartbeat_timeout is 2 s; the scheduler checks every 50 ms.
        self.assertLess(elapsed, 2 + 8)
        self.assert_all_stopped(daemons)

    def test_dead_worker_stops_the_whole_job(self):
        proc, run, daemons = self.long_job()
        os.kill(daemons[("worker", 1)], signal.SIGKILL)
        out, err = proc.communicate(timeout=60)
        self.assertEqual(proc.returncode, 1)
        self.assertIn("worker-1", err)
        self.assertIn("signal 9", err)
        self.assert_all_stopped(daemons)

    def test_ctrl_c_stops_every_daemon(self):
        proc, run, daemons = self.long_job()
        os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        self.assertEqual(proc.returncode, 130)
        self.assert_all_stopped(daemons)


class ByHandTest(ClusterTest):
    def test_daemons_started_by_hand_with_ranks(self):
        data = datagen(self.dir, 10000, 2000)
        config = write_config(self.dir, cluster={"scheduler": "127.0.0.1:0", "servers": 2, "workers": 1},
                              data={"train": data["train"], "test": data["test"]})
        # A fixed port, as a user would choose when starting daemons on several hosts.
        import socket
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        common = ["--config", config, "--set", f"cluster.scheduler=127.0.0.1:{port}"]
        summary_path = os.path.join(self.dir, "summary.json")
        commands = [[os.path.join(BIN, "sparta-scheduler")] + common + ["--summary", summary_path],
                    # Workers first, servers last, one server without a rank: the order must not matter.
                    [os.path.join(BIN, "sparta-worker")] + common + ["--rank", "0"],
                    [os.path.join(BIN, "sparta-server")] + common + ["--rank", "1"],
                    [os.path.join(BIN, "sparta-server")] + common]
        for cmd in commands:
            self.procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                               start_new_session=True))
        for p in self.procs:
            p.wait(timeout=120)
        # Every daemon's log on failure: the one that failed first is rarely the one that reports it.
        logs = "\n".join(f"--- {' '.join(p.args[:1])} exited {p.returncode}:\n{p.stderr.read()}" for p in self.procs)
        for p in self.procs:
            self.assertEqual(p.returncode, 0, logs)
        s = json.loads(read(summary_path))
        self.assertEqual(s["status"], "ok")
        self.assertEqual(s["train_examples"], 10000)
        self.assertEqual(s["test_rows"], 2000)

    def test_a_duplicate_rank_is_refused(self):
        config = write_config(self.dir, cluster={"servers": 1, "workers": 1, "startup_timeout": 30},
                              data={"train": "unused.txt"})
        import socket
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        common = ["--config", config, "--set", f"cluster.scheduler=127.0.0.1:{port}"]
        scheduler = subprocess.Popen([os.path.join(BIN, "sparta-scheduler")] + common,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        self.procs.append(scheduler)
        info = os.path.join(self.dir, "first.info.json")
        first = subprocess.Popen([os.path.join(BIN, "sparta-server")] + common + ["--rank", "0", "--info-file", info],
                                 stderr=subprocess.DEVNULL, start_new_session=True)
        self.procs.append(first)
        wait_for(lambda: os.path.exists(info), 60, "the first server to register")
        second = subprocess.run([os.path.join(BIN, "sparta-server")] + common + ["--rank", "0"],
                                capture_output=True, text=True, timeout=60)
        self.assertEqual(second.returncode, 1)
        self.assertIn("server rank 0 is already taken", second.stderr)


if __name__ == "__main__":
    unittest.main()
