"""sparta-serve end to end: a job trains and checkpoints, then the real
sparta-serve process loads that checkpoint and answers predictions over
real HTTP. The served prediction of every test line is the one the job's
own worker wrote to eval.predictions_out (the same text, bit for bit); bad
requests get a 4xx saying what is wrong and leave the process serving.
The same holds over the ZeroMQ endpoint (sparta-ctl predict with tcp://
replicas) and for instances given as JSON objects of named fields."""

import errno
import json
import os
import re
import signal
import socket
import subprocess
import urllib.error
import urllib.request

import sys
import threading
import unittest

import zmq

from harness import (BIN, LAUNCHER, SLOWDOWN, ClusterTest, bin_with_wrapper, datagen, finish, launch, log_tails,
                     pid_alive, read, scaled, summary, wait_for, write_config)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "worker", "python"))
from sparta.predict import BadRequest, PredictClient, ReplicaChooser  # noqa: E402
from test_tiering import tier_line  # noqa: E402


def open_for_writing(fifo):
    """A descriptor that writes to the named pipe `fifo` once a reader holds
    it open, else None (no reader yet), without blocking."""
    try:
        return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as e:
        if e.errno == errno.ENXIO:
            return None
        raise


class PythonReplicaChooserTest(unittest.TestCase):
    """The Python client's choice of replica, without sockets (as
    ReplicaChooser's C++ twin is unit-tested in serving_test.cc)."""

    def test_least_outstanding_then_a_failed_replica_waits_for_its_recheck(self):
        # One request at a time: ties go round, every replica gets its share.
        sequential = ReplicaChooser(3, recheck=1.0)
        seen = []
        for _ in range(6):
            replica, _ = sequential.pick(None, 0.0)
            sequential.done(replica, True, 0.0)
            seen.append(replica)
        self.assertEqual(sorted(seen), [0, 0, 1, 1, 2, 2])
        chooser = ReplicaChooser(3, recheck=1.0)
        self.assertEqual(chooser.pick(None, 0.0), (0, False))
        self.assertEqual(chooser.pick(None, 0.0), (1, False))
        self.assertEqual(chooser.pick(None, 0.0), (2, False))
        chooser.done(1, True, 0.0)
        self.assertEqual(chooser.pick(None, 0.0), (1, False))  # the one with fewest in flight
        retry = chooser.pick(1, 0.0)[0]
        self.assertNotEqual(retry, 1)  # a retry goes elsewhere
        chooser.done(retry, True, 0.0)
        chooser.done(2, False, 0.5)
        self.assertFalse(chooser.is_up(2))
        self.assertEqual(chooser.outstanding(2), 0)
        # Down, it gets nothing while others are up, whatever their load.
        for _ in range(5):
            self.assertNotEqual(chooser.pick(None, 0.6)[0], 2)
        # Alone and due (1 s later): one request checks its health first.
        only = ReplicaChooser(1, recheck=1.0)
        self.assertEqual(only.pick(None, 0.0), (0, False))
        only.done(0, False, 0.0)
        self.assertIsNone(only.pick(None, 0.5))
        self.assertEqual(only.pick(None, 1.0), (0, True))
        self.assertIsNone(only.pick(None, 1.2))  # the others do not pile onto it meanwhile
        only.health_checked(0, True, 1.3)
        only.done(0, True, 1.3)
        self.assertTrue(only.is_up(0))
        self.assertEqual(only.pick(None, 1.3), (0, False))


def http(url, body=None, timeout=30):
    """(status, parsed JSON or text) of a GET, or of a POST of `body` (bytes)."""
    request = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            status, text = answer.status, answer.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


class ServingCase(ClusterTest):
    """Helpers of the serving tests: a trained job, sparta-serve front-ends."""

    def train(self, model, data, dim=4, **sections):
        """Trains `model` to the end with a checkpoint; returns (config, its
        worker's test predictions as lines)."""
        store = os.path.join(self.dir, f"store-{model}")
        predictions = os.path.join(self.dir, f"{model}.predictions")
        config = write_config(
            self.dir, f"{model}.yaml",
            data={"train": data["train"], "test": data["test"], "batch_size": 256, "epochs": 1},
            model={"name": model, "embedding_dim": dim, "top_mlp": [16, 8], "bottom_mlp": [8, 4]},
            storage={"path": store},
            eval={"predictions_out": predictions},
            **sections)
        result = launch(config, self.run_dir(model))
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertGreater(summary(self.run_dir(model))["checkpoint_version"], 0)
        return config, read(predictions).splitlines()

    def serve(self, config, *sets):
        """Starts sparta-serve on a free port; returns (process, base URL)."""
        info = os.path.join(self.dir, f"serve-{len(self.procs)}.json")
        log_path = os.path.join(self.dir, f"serve-{len(self.procs)}.log")
        cmd = [os.path.join(BIN, "sparta-serve"), "--config", config, "--info-file", info,
               "--set", "serving.port=0", "--set", "serving.zmq_port=0", "--set", "serving.model=latest"]
        for s in sets:
            cmd += ["--set", s]
        with open(log_path, "w") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        wait_for(lambda: os.path.exists(info) or proc.poll() is not None, 60, "sparta-serve to listen")
        self.assertIsNone(proc.poll(), read(log_path))
        info = json.loads(read(info))
        url = f"http://127.0.0.1:{info['port']}"
        self.zmq_urls = getattr(self, "zmq_urls", {})
        self.zmq_urls[url] = f"tcp://127.0.0.1:{info['zmq_port']}"
        return proc, url

    def answered(self, url):
        """Predict requests the front-end at `url` answered (its /metrics)."""
        metrics = http(f"{url}/metrics")[1]
        for line in metrics.splitlines():
            if line.startswith("sparta_serving_requests_total") and 'outcome="ok"' in line:
                return float(line.split()[-1])
        return 0

    def ctl_predict(self, path, urls, model, *args):
        """sparta-ctl predict over `urls`: (exit code, stdout lines, stderr)."""
        result = subprocess.run([os.path.join(BIN, "sparta-ctl"), "predict", path, "--serve", ",".join(urls),
                                 "--model", model, *args], capture_output=True, text=True, timeout=300)
        return result.returncode, result.stdout.splitlines(), result.stderr

    def predict_all(self, url, model, lines, chunk):
        served, versions = [], set()
        for i in range(0, len(lines), chunk):
            status, answer = http(f"{url}/v1/models/{model}:predict",
                                  json.dumps({"instances": lines[i:i + chunk]}).encode())
            self.assertEqual(status, 200, answer)
            served += answer["predictions"]
            versions.add(answer["model_version"])
        return served, versions


class ServingTest(ServingCase):
    def test_served_predictions_equal_the_workers_for_every_test_line(self):
        data = datagen(self.dir, 20000, 1500, seed=5)
        test_lines = read(data["test"]).splitlines()
        for model in ("lr", "fm", "dnn"):
            with self.subTest(model=model):
                config, offline = self.train(model, data)
                self.assertEqual(len(offline), len(test_lines))
                proc, url = self.serve(config, "serving.max_batch=32")
                status, ready = http(f"{url}/readyz")
                self.assertEqual(status, 200, ready)
                # Requests of 1, 7 and 100 lines: the batches the model runs
                # differ from the worker's, the answers must not.
                for chunk in (100, 7):
                    served, versions = self.predict_all(url, model, test_lines, chunk)
                    self.assertEqual(versions, {ready["model_version"]})
                    # As text: the server prints them as the worker does (%.9g).
                    self.assertEqual(["%.9g" % p for p in served], [float_text(p) for p in offline])
                one, _ = self.predict_all(url, model, test_lines[:50], 1)
                self.assertEqual(["%.9g" % p for p in one], [float_text(p) for p in offline[:50]])
                # Over ZeroMQ: the float predictions themselves.
                code, served, err = self.ctl_predict(data["test"], [self.zmq_urls[url]], model, "--batch", "100")
                self.assertEqual(code, 0, err)
                self.assertEqual(served, [float_text(p) for p in offline])
                # Instances as objects of named fields (Criteo's I1-I13,
                # C1-C26): the same predictions as their lines.
                objects = [criteo_object(line) for line in test_lines[:200]]
                status, answer = http(f"{url}/v1/models/{model}:predict", json.dumps({"instances": objects}).encode())
                self.assertEqual(status, 200, answer)
                self.assertEqual(["%.9g" % p for p in answer["predictions"]], [float_text(p) for p in offline[:200]])
                proc.send_signal(signal.SIGTERM)
                self.assertEqual(proc.wait(timeout=30), 0)

    def test_bad_requests_get_a_4xx_that_says_what_is_wrong_and_the_server_stays_up(self):
        data = datagen(self.dir, 5000, 200, seed=6)
        config, _ = self.train("lr", data)
        proc, url = self.serve(config, "serving.max_body=64KiB")
        line = read(data["test"]).splitlines()[0]
        predict = f"{url}/v1/models/lr:predict"
        cases = [
            (predict, b"{\"instances\": [", 400, "not a JSON object"),
            (predict, b"{\"instances\": 3}", 400, "\"instances\" list"),
            (predict, json.dumps({"instances": [line, "1\tnot\ta\tcriteo\tline"]}).encode(), 400, "instances[1]"),
            (predict, json.dumps({"instances": [{"I1": 3, "X9": "ab"}]}).encode(), 400, "unknown field 'X9'"),
            (predict, json.dumps({"instances": [line, {"I1": 2.5}]}).encode(), 400, "instances[1]: field 'I1' must be an integer"),
            (predict, json.dumps({"instances": [{"C1": "a\tb"}]}).encode(), 400, "separator"),
            (predict, json.dumps({"instances": [3]}).encode(), 400, "neither a string nor an object"),
            (f"{url}/v1/models/nope:predict", json.dumps({"instances": [line]}).encode(), 404, "serves 'lr'"),
            (predict, json.dumps({"instances": [line] * 2000}).encode(), 413, "serving.max_body"),
            (f"{url}/v2/anything", b"{}", 404, "no such path"),
        ]
        for target, body, status, says in cases:
            with self.subTest(says=says):
                got, answer = http(target, body)
                self.assertEqual(got, status, answer)
                self.assertIn(says, answer["error"])
        self.assertTrue(pid_alive(proc.pid))
        status, answer = http(predict, json.dumps({"instances": [line]}).encode())
        self.assertEqual(status, 200, answer)
        self.assertEqual(http(f"{url}/healthz")[0], 200)
        status, metrics = http(f"{url}/metrics")
        self.assertEqual(status, 200)
        self.assertIn('sparta_serving_requests_total{role="serve",model="lr",outcome="ok"} 1', metrics)
        self.assertIn('sparta_serving_request_seconds_bucket{role="serve",model="lr",le="+Inf"} 1', metrics)

        # The ZeroMQ endpoint: garbage is dropped and counted, a bad line
        # is refused with what is wrong, and good requests go on.
        context = zmq.Context()
        # If a step fails with a socket open, term() would hang; this lets the failure show.
        self.addCleanup(context.destroy, linger=0)
        dealer = context.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.connect(self.zmq_urls[url])
        dealer.send_multipart([b"\xff\x00 not a header", b"junk"])
        dealer.send(b"")
        bad = os.path.join(self.dir, "bad.txt")
        with open(bad, "w") as f:
            f.write(line + "\n1\tnot\ta\tcriteo\tline\n")
        code, _, err = self.ctl_predict(bad, [self.zmq_urls[url]], "lr", "--batch", "2")
        self.assertNotEqual(code, 0)
        self.assertIn("instances[1]", err)
        code, _, err = self.ctl_predict(bad, [self.zmq_urls[url]], "nope")
        self.assertNotEqual(code, 0)
        self.assertIn("serves 'lr'", err)
        good = os.path.join(self.dir, "good.txt")
        with open(good, "w") as f:
            f.write(line + "\n")
        code, served, err = self.ctl_predict(good, [self.zmq_urls[url]], "lr")
        self.assertEqual(code, 0, err)
        self.assertEqual(len(served), 1)
        dealer.close()
        context.term()
        self.assertTrue(pid_alive(proc.pid))
        status, metrics = http(f"{url}/metrics")
        self.assertRegex(metrics, r'sparta_serving_malformed_messages_total\{[^}]*\} [2-9]')

    def test_serving_follows_a_running_jobs_checkpoints(self):
        data = datagen(self.dir, 20000, 200, seed=8)
        store = os.path.join(self.dir, "store")
        config = write_config(
            self.dir, "long.yaml",
            data={"train": data["train"], "batch_size": 256, "epochs": 100000},
            model={"name": "fm", "embedding_dim": 4},
            storage={"path": store, "checkpoint_every": "1s"})
        # Started before the job has a checkpoint: alive, not ready.
        proc, url = self.serve(config, "serving.poll_interval=0.1")
        self.assertEqual(http(f"{url}/healthz")[0], 200)
        self.assertEqual(http(f"{url}/readyz")[0], 503)
        line = read(data["test"]).splitlines()[0]
        status, answer = http(f"{url}/v1/models/fm:predict", json.dumps({"instances": [line]}).encode())
        self.assertEqual(status, 503, answer)
        job = launch(config, self.run_dir("long"), wait=False)
        self.procs.append(job)
        wait_for(lambda: http(f"{url}/readyz")[0] == 200, 120, "the first checkpoint to be served")

        def predict():
            status, answer = http(f"{url}/v1/models/fm:predict", json.dumps({"instances": [line]}).encode())
            self.assertEqual(status, 200, answer)
            return answer["model_version"], answer["predictions"][0]

        first_version, first = predict()
        self.assertGreater(first_version, 0)
        # Training goes on: a newer version is served, and it answers
        # otherwise for the same line.
        later_version, later = wait_for(lambda: (lambda v, p: (v, p) if v > first_version and p != first else None)(
            *predict()), 120, "a newer model version that changed the prediction")
        self.assertGreater(later_version, first_version)
        self.assertIsNone(job.poll())
        status, metrics = http(f"{url}/metrics")
        self.assertRegex(metrics, r"sparta_serving_model_loads_total\{[^}]*\} [2-9]")

    def test_published_deltas_bring_serving_to_the_offline_predictions(self):
        """serving.publish_every: a front-end started before the job serves
        the versions it publishes as they come, applying each delta on top
        of the version it serves, and ends at the job's last version with
        the worker's own predictions, bit for bit. dnn, so dense tables
        change too; then two servers under a memory limit, so rows also
        reach the store by eviction and are read back from the cold tier."""
        small = datagen(self.dir, 30000, 1500, seed=11)
        os.makedirs(os.path.join(self.dir, "large"))
        large = datagen(os.path.join(self.dir, "large"), 60000, 3000, seed=8, max_vocab=400000)
        for name, data, servers, server, dim, epochs, extra in (
                ("one", small, 1, {"threads": 2}, 8, 3, {}),
                ("tiered", large, 2, {"threads": 2, "memory_limit": "16MiB"}, 16, 2, {}),
                # Rows expire (deleted from the store): deltas delete them.
                ("expiring", small, 1, {"threads": 2}, 8, 3, {"embedding": {"eviction.ttl": "40 steps"}})):
            with self.subTest(name):
                store = os.path.join(self.dir, f"store-{name}")
                predictions = os.path.join(self.dir, f"{name}.predictions")
                config = write_config(
                    self.dir, f"{name}.yaml",
                    cluster={"servers": servers},
                    data={"train": data["train"], "test": data["test"], "batch_size": 256, "epochs": epochs},
                    model={"name": "dnn", "embedding_dim": dim, "top_mlp": [16, 8], "bottom_mlp": [8, dim]},
                    storage={"path": store},
                    server=server,
                    eval={"predictions_out": predictions},
                    serving={"publish_every": "0.3s"}, **extra)
                proc, url = self.serve(config, "serving.poll_interval=0.05")
                log_path = os.path.join(self.dir, f"serve-{len(self.procs) - 1}.log")
                self.assertEqual(http(f"{url}/readyz")[0], 503)
                run = self.run_dir(name)
                result = launch(config, run)
                self.assertEqual(result.returncode, 0, result.stderr)
                final = summary(run)["checkpoint_version"]
                # The last version is the final checkpoint's cut, published
                # as a delta too, so a follower reaches it.
                self.assertTrue(any(d.startswith("delta-%06d-from-" % final)
                                    for d in os.listdir(os.path.join(store, "versions"))))
                wait_for(lambda: self.served_version(url) == final, 60, "the final version to be served")
                offline = read(predictions).splitlines()
                test_lines = read(data["test"]).splitlines()
                served, versions = self.predict_all(url, "dnn", test_lines, 100)
                self.assertEqual(len(served), len(test_lines))
                self.assertEqual(versions, {final})
                self.assertEqual(["%.9g" % p for p in served], [float_text(p) for p in offline])
                # Versions that were never checkpoints were served: deltas.
                scheduler_log = read(os.path.join(run, "scheduler.log"))
                checkpoints = {int(v) for v in re.findall(r"checkpoint (\d+) published", scheduler_log)}
                published = {int(v) for v in re.findall(r"model version (\d+) published", scheduler_log)}
                shown = {int(v) for v in re.findall(r"now serving model version (\d+)", read(log_path))}
                self.assertGreaterEqual(len((shown & published) - checkpoints), 2, (shown, checkpoints))
                status, metrics = http(f"{url}/metrics")
                self.assertRegex(metrics, r"sparta_serving_deltas_applied_total\{[^}]*\} ([3-9]|[1-9][0-9]+)")
                tiers = re.findall(r"table 'dnn.emb': \d+ hot \+ \d+ cold rows; (\d+) demoted, .*; (\d+) expired",
                                   read(os.path.join(run, "server-0.log")))
                if "memory_limit" in server:
                    self.assertGreater(int(tiers[-1][0]), 0)
                if extra:
                    self.assertGreater(int(tiers[-1][1]), 0)
                proc.send_signal(signal.SIGTERM)
                self.assertEqual(proc.wait(timeout=30), 0)

    def served_version(self, url):
        status, answer = http(f"{url}/readyz")
        return answer.get("model_version") if status == 200 and isinstance(answer, dict) else None

    def test_kill_9_of_one_of_two_front_ends_fails_no_request(self):
        self.kill_one_of_two_front_ends(zmq_transport=False)

    def test_kill_9_of_one_of_two_zeromq_front_ends_fails_no_request(self):
        self.kill_one_of_two_front_ends(zmq_transport=True)

    def test_the_python_client_balances_retries_and_survives_a_kill_9(self):
        self.python_client_survives_a_kill_9(zmq_transport=False)

    def test_the_python_client_over_zeromq_balances_retries_and_survives_a_kill_9(self):
        self.python_client_survives_a_kill_9(zmq_transport=True)

    def python_client_survives_a_kill_9(self, zmq_transport):
        data = datagen(self.dir, 10000, 1000, seed=10)
        config, offline = self.train("lr", data)
        first, first_url = self.serve(config)
        _, second_url = self.serve(config)
        client = PredictClient([self.zmq_urls[u] if zmq_transport else u for u in (first_url, second_url)], "lr")
        lines = read(data["test"]).splitlines()
        with self.assertRaises(BadRequest) as bad:
            client.predict([lines[0], "1\tnot\ta\tcriteo\tline"])
        self.assertIn("instances[1]", str(bad.exception))
        expected = [float_text(p) for p in offline]
        served = [None] * (len(lines) * 10)
        failures = []
        done = [0]
        lock = threading.Lock()

        def send(worker):
            for i in range(worker, len(served), 4):
                try:
                    answer = client.predict([lines[i % len(lines)]], deadline_ms=5000)
                    served[i] = "%.9g" % answer.predictions[0]
                except Exception as e:  # counted: the test fails on any
                    failures.append(repr(e))
                with lock:
                    done[0] += 1

        threads = [threading.Thread(target=send, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        # Least outstanding spreads them over both; then one dies.
        wait_for(lambda: (self.answered(first_url) > 200 and self.answered(second_url) > 200) or failures, 120,
                 "both front-ends to answer")
        first.kill()
        first.wait()
        for t in threads:
            t.join(timeout=300)
        self.assertEqual(failures, [])
        self.assertEqual(served, expected * 10)

    def kill_one_of_two_front_ends(self, zmq_transport):
        data = datagen(self.dir, 10000, 1000, seed=9)
        config, offline = self.train("lr", data)
        first, first_url = self.serve(config)
        second, second_url = self.serve(config)
        targets = [self.zmq_urls[u] if zmq_transport else u for u in (first_url, second_url)]
        # 20 passes over the test file, a line a request: long enough to
        # kill a front-end in the middle.
        lines = read(data["test"]).splitlines() * 20
        many = os.path.join(self.dir, "many.txt")
        with open(many, "w") as f:
            f.write("\n".join(lines) + "\n")
        out = os.path.join(self.dir, "served.txt")
        with open(out, "w") as f:
            ctl = subprocess.Popen([os.path.join(BIN, "sparta-ctl"), "predict", many, "--serve",
                                    ",".join(targets), "--model", "lr", "--batch", "1", "--parallel", "4",
                                    "--deadline-ms", "5000"], stdout=f, stderr=subprocess.PIPE, text=True)
        self.procs.append(ctl)

        # Both take requests (least outstanding spreads them); then one dies.
        # (Under TSan 400 requests took longer than a minute in CI.)
        wait_for(lambda: self.answered(first_url) > 200 and self.answered(second_url) > 200, scaled(60),
                 "both front-ends to answer")
        first.kill()
        first.wait()
        _, err = ctl.communicate(timeout=300)
        self.assertEqual(ctl.returncode, 0, err)
        served = read(out).splitlines()
        self.assertEqual(len(served), len(lines))
        self.assertEqual(served, [float_text(p) for p in offline] * 20)
        self.assertGreater(self.answered(second_url), len(lines) / 2)
        # SIGTERM under load: the front-end answers or refuses what it
        # holds and exits 0 (no answer reaches an endpoint already gone).
        survivor = second
        before = self.answered(second_url)
        ctl = subprocess.Popen([os.path.join(BIN, "sparta-ctl"), "predict", many, "--serve", targets[1], "--model",
                                "lr", "--batch", "1", "--parallel", "8"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        self.procs.append(ctl)
        wait_for(lambda: self.answered(second_url) > before + 500, scaled(60), "the load to reach the survivor")
        survivor.send_signal(signal.SIGTERM)
        self.assertEqual(survivor.wait(timeout=60), 0)
        ctl.wait(timeout=300)

    def test_a_missing_checkpoint_or_a_model_of_another_shape_is_a_clear_error(self):
        data = datagen(self.dir, 5000, 200, seed=7)
        config, _ = self.train("fm", data)
        for sets, says in [(["serving.model=" + os.path.join(self.dir, "nowhere")], "nowhere"),
                           (["model.embedding_dim=6"], "saved with dim 5"),
                           (["model.name=lr"], "holds no table")]:
            cmd = [os.path.join(BIN, "sparta-serve"), "--config", config, "--set", "serving.port=0",
                   "--set", "serving.model=latest"]
            # (serving.model given twice: the last --set wins.)
            for s in sets:
                cmd += ["--set", s]
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
            self.assertEqual(result.returncode, 1, result.stderr)
            self.assertIn(says, result.stderr + result.stdout)



class ServingShardsTest(ServingCase):
    """serving.shards: 2 with scripts/sparta serve: two sparta-server
    processes (--serving) restore the checkpoint, replicated twice, and a
    sparta-serve front-end pulls rows from them through a small cache."""

    def start_serve(self, config, name, *sets, front_ends=1, env=None):
        """Starts `scripts/sparta serve` (2 shards, 2 copies of each, free
        ports; `sets` after those; the launcher's environment `env`, else
        this one); returns (launcher, run folder)."""
        run = os.path.join(self.dir, name)
        cmd = [sys.executable, LAUNCHER, "serve", config, "--shards", "2", "--front-ends", str(front_ends),
               "--run-dir", run, "--quiet", "--set", "storage.replication_factor=2",
               "--set", "serving.model=latest", "--set", "serving.cache=16KiB", "--set", "serving.port=0",
               "--set", "serving.zmq_port=0"]
        for s in sets:
            cmd += ["--set", s]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True, env=env)
        self.procs.append(proc)
        return proc, run

    def serve_cluster(self, config, name, *sets, front_ends=1):
        """Starts `scripts/sparta serve`; returns (launcher, run folder, front-end URLs)."""
        proc, run = self.start_serve(config, name, *sets, front_ends=front_ends)
        infos = [os.path.join(run, f"serve-{r}.info.json") for r in range(front_ends)]
        wait_for(lambda: all(os.path.exists(p) for p in infos) or proc.poll() is not None, scaled(120),
                 "the serving cluster's front-ends to listen")
        self.assertIsNone(proc.poll(), proc.stderr.read() if proc.poll() is not None else "")
        urls = []
        for path in infos:
            info = json.loads(read(path))
            url = f"http://127.0.0.1:{info['port']}"
            self.zmq_urls = getattr(self, "zmq_urls", {})
            self.zmq_urls[url] = f"tcp://127.0.0.1:{info['zmq_port']}"
            urls.append(url)
        return proc, run, urls

    def stop_cluster(self, proc):
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=scaled(60))
        self.assertEqual(proc.returncode, 0, err)

    def cache_metrics(self, url):
        metrics = http(f"{url}/metrics")[1]
        values = {}
        for line in metrics.splitlines():
            for name in ("sparta_serving_cache_hits_total", "sparta_serving_cache_misses_total"):
                if line.startswith(name):
                    values[name] = float(line.split()[-1])
        return values

    def test_two_serving_shards_answer_as_the_offline_predictions(self):
        data = datagen(self.dir, 20000, 1500, seed=6)
        test_lines = read(data["test"]).splitlines()
        for model in ("fm", "dnn"):  # dnn: dense tables too, pulled from the servers
            with self.subTest(model=model):
                config, offline = self.train(model, data)
                proc, run, (url,) = self.serve_cluster(config, f"serve-{model}", "serving.max_batch=32")
                status, ready = http(f"{url}/readyz")
                self.assertEqual(status, 200, ready)
                self.assertEqual(ready["model_version"], summary(self.run_dir(model))["checkpoint_version"])
                for chunk in (100, 7):
                    served, versions = self.predict_all(url, model, test_lines, chunk)
                    self.assertEqual(versions, {ready["model_version"]})
                    self.assertEqual(["%.9g" % p for p in served], [float_text(p) for p in offline])
                code, served, err = self.ctl_predict(data["test"], [self.zmq_urls[url]], model, "--batch", "100")
                self.assertEqual(code, 0, err)
                self.assertEqual(served, [float_text(p) for p in offline])
                # The rows came from the servers: the front-end's cache
                # (16 KiB) holds a few hundred of the model's thousands.
                cache = self.cache_metrics(url)
                self.assertGreater(cache["sparta_serving_cache_misses_total"], 1000)
                self.assertGreater(cache["sparta_serving_cache_hits_total"], 0)
                for r in (0, 1):
                    log = read(os.path.join(run, f"server-{r}.log"))
                    self.assertIn("leads", log)
                status = subprocess.run([os.path.join(BIN, "sparta-ctl"), "status", "--run", run],
                                        capture_output=True, text=True, timeout=60)
                self.assertEqual(status.returncode, 0, status.stderr)
                self.assertIn("serving cluster running | epoch 1", status.stdout)
                self.assertIn(f"model version v{ready['model_version']}", status.stdout)
                self.assertEqual(len(re.findall(r"^server-[01] .* up ", status.stdout, re.M)), 2, status.stdout)
                self.assertRegex(status.stdout, r"serve-0 .* up .* front-end")
                self.stop_cluster(proc)
                # The training job's own folder was only read.
                self.assertFalse(os.path.exists(os.path.join(self.dir, f"store-{model}", "serving-db")))

    def follow_running_job(self, name, seed, while_moving=None, serve_sets=(), **sections):
        """Starts a dnn job (checkpoints every few hundred steps, `sections`
        added to its config) and, at its first checkpoint, a serving cluster
        following it (serving.model: latest); `while_moving(run)` is called
        once the cluster serves a version after its first. Requests run all
        the while versions change under them, until the job's last version
        is served: every one is answered, by one version, and the versions
        only go up; then the cluster answers every test line as the worker
        did, bit for bit. dnn, so dense tables change too. Returns (the
        job's run folder, the cluster's, the cluster's launcher, its
        front-end's URL, the first version served, the last). `serve_sets`:
        settings of the serving cluster."""
        data = datagen(self.dir, 30000, 1500, seed=seed)
        store = os.path.join(self.dir, f"store-{name}")
        predictions = os.path.join(self.dir, f"{name}.predictions")
        config = write_config(
            self.dir, f"{name}.yaml",
            # Training lasts some seconds of wall time at any speed (SLOWDOWN:
            # under a sanitizer, fewer examples take as long).
            data={"train": data["train"], "test": data["test"], "batch_size": 256, "epochs": max(4, 12 // SLOWDOWN)},
            model={"name": "dnn", "embedding_dim": 8, "top_mlp": [16, 8], "bottom_mlp": [8, 8]},
            storage={"path": store, "checkpoint_every": f"{max(60, 300 // SLOWDOWN)} steps"},
            server={"threads": 2},
            eval={"predictions_out": predictions},
            **sections)
        job_run = self.run_dir(name)
        job = launch(config, job_run, wait=False)
        self.procs.append(job)
        checkpoints_dir = os.path.join(store, "checkpoints")
        wait_for(lambda: job.poll() is not None or any(
            os.path.exists(os.path.join(checkpoints_dir, d, "manifest.json"))
            for d in (os.listdir(checkpoints_dir) if os.path.isdir(checkpoints_dir) else [])),
            scaled(120), "the job's first checkpoint")
        self.assertIsNone(job.poll(), "the job ended before the serving cluster could follow it")
        proc, run, (url,) = self.serve_cluster(config, f"serve-{name}", "serving.poll_interval=0.05", *serve_sets)

        def served_version():
            status, answer = http(f"{url}/readyz")
            return answer.get("model_version") if status == 200 and isinstance(answer, dict) else None

        first = served_version()
        self.assertIsNotNone(first)
        test_lines = read(data["test"]).splitlines()
        answers, stop = [], threading.Event()

        def load():
            while not stop.is_set():
                status, answer = http(f"{url}/v1/models/dnn:predict",
                                      json.dumps({"instances": test_lines[:20]}).encode())
                answers.append((status, answer.get("model_version") if isinstance(answer, dict) else answer))

        loader = threading.Thread(target=load)
        loader.start()
        try:
            if while_moving is not None:
                wait_for(lambda: job.poll() is not None or (served_version() or 0) > first, scaled(120),
                         "a version after the first to be served")
                while_moving(run)
            _, err = finish(job, job_run, scaled(300))
            self.assertEqual(job.returncode, 0, err)
            final = summary(job_run)["checkpoint_version"]
            self.assertGreater(final, first)
            wait_for(lambda: served_version() == final, scaled(60), "the job's last version to be served")
        finally:
            stop.set()
            loader.join()
        self.assertEqual([a for a in answers if a[0] != 200], [])
        seen = [version for _, version in answers]
        self.assertEqual(seen, sorted(seen))
        self.assertLessEqual(first, seen[0])
        served, versions = self.predict_all(url, "dnn", test_lines, 100)
        self.assertEqual(versions, {final})
        self.assertEqual(["%.9g" % p for p in served], [float_text(p) for p in read(predictions).splitlines()])
        return job_run, run, proc, url, first, final

    def test_a_serving_cluster_follows_a_running_job_through_its_deltas(self):
        """serving.model: latest on a serving cluster: started from a running
        job's first checkpoint, its two servers stage each delta the job
        publishes (serving.publish_every), the scheduler announces a version
        once both hold it, and the front-end reads at it, through the kill -9
        of one server; the cluster ends at the job's last version with the
        worker's own predictions, bit for bit. dnn, so dense tables change
        too."""
        # kill -9 of one of the two servers (R=2) once versions move: the
        # other goes on staging and answering; the launcher's replacement
        # takes replicas and is not waited for.
        def kill_server_1(run):
            os.kill(json.loads(read(os.path.join(run, "server-1.info.json")))["pid"], signal.SIGKILL)

        job_run, run, proc, url, first, final = self.follow_running_job(
            "follow", 11, while_moving=kill_server_1, serving={"publish_every": "0.3s"})
        # Versions that were never checkpoints were announced and served:
        # deltas, staged by both servers.
        job_log = read(os.path.join(job_run, "scheduler.log"))
        checkpoints = {int(v) for v in re.findall(r"checkpoint (\d+) published", job_log)}
        announced = {int(v) for v in re.findall(r"model version (\d+) is staged on every server: announced",
                                                read(os.path.join(run, "scheduler.log")))}
        self.assertGreaterEqual(len(announced - checkpoints), 2, (announced, checkpoints))
        self.assertIn(final, announced)
        staged = {int(v) for v in re.findall(r"read model version (\d+) from ",
                                             read(os.path.join(run, "server-0.log")))}
        self.assertTrue(announced - {first} <= staged, (announced, staged))
        self.assertIn("failing over to its replicas", read(os.path.join(run, "scheduler.log")))
        status = subprocess.run([os.path.join(BIN, "sparta-ctl"), "status", "--run", run],
                                capture_output=True, text=True, timeout=60)
        self.assertEqual(status.returncode, 0, status.stderr)
        self.assertIn(f"model version v{final}", status.stdout)
        self.stop_cluster(proc)

    def test_a_serving_cluster_follows_a_job_that_publishes_no_deltas_through_its_checkpoints(self):
        """serving.model: latest on a serving cluster whose job publishes no
        deltas (no serving.publish_every): no delta goes on from the version
        served, so each newer checkpoint is staged whole on both servers
        (every row of their shards) and announced; the cluster ends at the
        job's final checkpoint with the worker's own predictions, bit for
        bit, every request answered by one version, the versions only going
        up. The same step serves a cluster whose chain of deltas was
        pruned."""
        # Each step reads and folds every row of the servers' shards: under a
        # sanitizer, with the job training on the same cores, a request once
        # outlived the default 1 s deadline (504, AddressSanitizer in CI, with
        # an early fold since taken back: README, "Serving").
        job_run, run, proc, url, first, final = self.follow_running_job(
            "whole", 13, serve_sets=(f"serving.deadline={scaled(1.0):g}",))
        store = os.path.join(self.dir, "store-whole")
        # Both servers read the final checkpoint whole, and nothing was
        # published for them to read instead.
        self.assertFalse(os.path.isdir(os.path.join(store, "versions")) and os.listdir(os.path.join(store, "versions")))
        for rank in (0, 1):
            self.assertRegex(read(os.path.join(run, f"server-{rank}.log")),
                             rf"read model version {final} from \S+ckpt-0*{final}: a checkpoint, all \d+ rows")
        self.assertIn("staging checkpoint", read(os.path.join(run, "scheduler.log")))
        self.stop_cluster(proc)

    def test_a_front_end_waits_for_servers_still_restoring(self):
        """The servers restore their checkpoint on the first view and answer
        nothing until it is in (minutes for a large model), while the
        front-end, started beside them, sends its first pulls at once. A
        pull that outlasts serving.deadline is sent again: the front-end
        comes up once the rows are in, the first time, instead of failing
        and being started again until the launcher gives up on it.

        Here the stall is made certain, not left to how fast the restore
        is: server-0 is stopped (SIGSTOP) once it has registered, and the
        front-end starts only then; server-0 goes on once the front-end has
        said it waits."""
        data = datagen(self.dir, 5000, 300, seed=8)
        config, _ = self.train("fm", data)
        go = os.path.join(self.dir, "front-end-go")
        os.mkfifo(go)
        bin_dir = bin_with_wrapper(self.dir, "sparta-serve", f"""import os, sys
if "--rank" in sys.argv:  # the front-end itself, not a run that reads the configuration
    with open({go!r}) as fifo:  # blocks until the test writes
        fifo.read()
os.execv({os.path.join(BIN, "sparta-serve")!r}, sys.argv)
""")
        # Stopped, server-0 sends no heartbeats: long enough not to be
        # taken for dead while the front-end starts (seconds under TSan).
        proc, run = self.start_serve(config, "serve-restoring", f"serving.deadline={scaled(0.05):g}",
                                     f"cluster.heartbeat_timeout={scaled(120):g}",
                                     env={**os.environ, "SPARTA_BIN": bin_dir})
        info = os.path.join(run, "server-0.info.json")  # written once it has registered
        wait_for(lambda: os.path.exists(info) or proc.poll() is not None, scaled(120), "server-0 to register",
                 lambda: log_tails(run))
        server = json.loads(read(info))["pid"]
        os.kill(server, signal.SIGSTOP)
        try:
            # The front-end (started with the servers) is held in its open() of the pipe.
            writer = wait_for(lambda: open_for_writing(go) or proc.poll() is not None, scaled(120),
                              "the front-end to be started", lambda: log_tails(run))
            self.assertIsNone(proc.poll(), log_tails(run))
            os.write(writer, b"go")
            os.close(writer)
            log = os.path.join(run, "serve-0.log")
            wait_for(lambda: "waiting for the servers, which may still be restoring" in read(log)
                     or proc.poll() is not None, scaled(120), "the front-end to wait for server-0",
                     lambda: log_tails(run))
            # Still waiting, not failed: no answer yet, and no restart.
            self.assertFalse(os.path.exists(os.path.join(run, "serve-0.info.json")), read(log))
        finally:
            os.kill(server, signal.SIGCONT)
        wait_for(lambda: os.path.exists(os.path.join(run, "serve-0.info.json")) or proc.poll() is not None,
                 scaled(120), "the front-end to listen", lambda: log_tails(run))
        url = f"http://127.0.0.1:{json.loads(read(os.path.join(run, 'serve-0.info.json')))['port']}"
        status, ready = http(f"{url}/readyz")
        self.assertEqual(status, 200, ready)
        self.assertGreater(ready["model_version"], 0)
        self.assertFalse(os.path.exists(os.path.join(run, "serve-0.restart1.log")), read(log))
        self.stop_cluster(proc)

    def test_a_cluster_whose_every_front_end_keeps_failing_stops_and_says_why(self):
        """A front-end that cannot start (its port is taken) is started
        again, and given up after the last restart. Once no front-end is
        left the cluster serves nothing: the launcher stops it and exits
        non-zero, naming the cause, instead of running on unreachable."""
        data = datagen(self.dir, 5000, 300, seed=8)
        config, _ = self.train("fm", data)
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc, run = self.start_serve(config, "serve-no-port", f"serving.port={port}")
        _, err = proc.communicate(timeout=scaled(120))
        self.assertNotEqual(proc.returncode, 0, err)
        self.assertIn("no front-end is left", err)
        # Why, from the front-end's own log: the port.
        self.assertIn("cannot listen on", read(os.path.join(run, "serve-0.restart3.log")))
        for name in ("server-0", "server-1"):
            pid = json.loads(read(os.path.join(run, f"{name}.info.json")))["pid"]
            self.assertFalse(pid_alive(pid), f"{name} outlived the launcher")

    def test_serving_shards_under_a_memory_limit_answer_from_the_cold_tier_as_offline(self):
        """server.memory_limit on the serving cluster's servers: the rows
        they restore do not fit, so most go to their cold tier (RocksDB) and
        are read back for the requests that need them; every prediction is
        still the worker's own, bit for bit."""
        data = datagen(self.dir, 60000, 3000, seed=8, max_vocab=400000)
        test_lines = read(data["test"]).splitlines()
        config, offline = self.train("fm", data, dim=32)
        # A request's cold rows are read behind the tier thread's write of
        # evicted rows: milliseconds at full speed, past the default 1 s
        # deadline under ThreadSanitizer (seen once in a whole-module run).
        proc, run, (url,) = self.serve_cluster(config, "serve-tiered", "server.memory_limit=16MiB",
                                               "server.threads=2", f"serving.deadline={scaled(1.0):g}")
        # The front-end waited for the servers' restore (slow here: most
        # rows go through the cold tier; seconds under TSan, past
        # serving.deadline) instead of failing and being started again.
        self.assertFalse(os.path.exists(os.path.join(run, "serve-0.restart1.log")),
                         read(os.path.join(run, "serve-0.log")))
        served, _ = self.predict_all(url, "fm", test_lines, 100)
        self.assertEqual(["%.9g" % p for p in served], [float_text(p) for p in offline])
        code, served, err = self.ctl_predict(data["test"], [self.zmq_urls[url]], "fm", "--batch", "100")
        self.assertEqual(code, 0, err)
        self.assertEqual(served, [float_text(p) for p in offline])
        self.stop_cluster(proc)
        # Each server held more of its rows cold than hot, and read cold
        # rows back to answer.
        for r in (0, 1):
            log = read(os.path.join(run, f"server-{r}.log"))
            tier = tier_line(log, "fm.wv")
            self.assertIsNotNone(tier, log[-3000:])
            self.assertGreater(tier["cold"], tier["hot"], tier)
            self.assertGreater(tier["cold_reads"], 0, tier)

    def test_sigterm_to_one_front_end_leaves_the_cluster_serving(self):
        data = datagen(self.dir, 5000, 300, seed=8)
        test_lines = read(data["test"]).splitlines()
        config, offline = self.train("fm", data)
        proc, run, urls = self.serve_cluster(config, "serve-two", front_ends=2)
        pid = json.loads(read(os.path.join(run, "serve-0.info.json")))["pid"]
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not pid_alive(pid), scaled(30), "serve-0 to exit")
        # It left: it exits only once the scheduler has let it go.
        self.assertRegex(read(os.path.join(run, "scheduler.log")), r"serve-0 .* got SIGTERM; the serving cluster goes on")
        # The other front-end and both servers serve on.
        served, _ = self.predict_all(urls[1], "fm", test_lines, 50)
        self.assertEqual(["%.9g" % p for p in served], [float_text(p) for p in offline])
        for r in (0, 1):
            self.assertTrue(pid_alive(json.loads(read(os.path.join(run, f"server-{r}.info.json")))["pid"]))
        self.stop_cluster(proc)

    def test_kill_9_of_a_serving_shard_with_replication_2_serving_goes_on(self):
        data = datagen(self.dir, 20000, 1500, seed=7)
        test_lines = read(data["test"]).splitlines()
        config, offline = self.train("fm", data)
        proc, run, (url,) = self.serve_cluster(config, "serve-kill", "serving.max_batch=8")
        # With R=2 the front-end answers once either server holds each shard:
        # server-1 may register (and write its info file) a moment later.
        info = os.path.join(run, "server-1.info.json")
        wait_for(lambda: os.path.exists(info), scaled(30), "server-1 to register")
        server_pid = json.loads(read(info))["pid"]
        answers, errors = [], []

        def load():
            # Requests of 5 lines, one after the other, while server-1 dies.
            for i in range(0, len(test_lines), 5):
                status, answer = http(f"{url}/v1/models/fm:predict",
                                      json.dumps({"instances": test_lines[i:i + 5]}).encode())
                if status != 200:
                    errors.append(answer)
                    continue
                answers.append((i, answer["predictions"]))
        thread = threading.Thread(target=load)
        thread.start()
        wait_for(lambda: len(answers) >= 20 or not thread.is_alive(), scaled(60), "the first answers")
        os.kill(server_pid, signal.SIGKILL)
        thread.join(timeout=scaled(300))
        self.assertFalse(thread.is_alive())
        self.assertEqual(errors, [])
        served = [p for _, predictions in sorted(answers) for p in predictions]
        self.assertEqual(["%.9g" % p for p in served], [float_text(p) for p in offline])
        scheduler = read(os.path.join(run, "scheduler.log"))
        self.assertIn("failing over to its replicas", scheduler)
        self.stop_cluster(proc)


def criteo_object(line):
    """A Criteo TSV line as the JSON object of its named fields (a missing
    value left out)."""
    columns = line.split("\t")
    names = ["label"] + [f"I{i}" for i in range(1, 14)] + [f"C{i}" for i in range(1, 27)]
    out = {}
    for name, value in zip(names, columns):
        if value == "":
            continue
        out[name] = int(value) if name == "label" or name.startswith("I") else value
    return out


def float_text(line):
    """A line of eval.predictions_out as the server formats the same float."""
    return "%.9g" % float(line)
