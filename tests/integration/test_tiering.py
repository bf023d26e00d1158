"""Tables larger than memory, with real daemons and real RocksDB files:
server.memory_limit moves the coldest rows to the server's RocksDB and back,
and the model comes out bit for bit what an unbounded run makes; admission
gives a row only to keys seen often enough; a tiered job survives kill -9 of
a server and restores onto another number of servers and another limit."""

import collections
import json
import os
import re
import signal
import subprocess
import unittest

from harness import (BIN, ClusterTest, config_with, datagen, launch, read, run_with_predictions, summary,
                     scaled, wait_for, write_config)
from test_durability import build_counter_plugin

MiB = 1 << 20
# What a server uses besides what server.memory_limit covers (README,
# "Tables larger than memory"): the process itself, ZeroMQ, RocksDB's open
# files, and the requests in flight.
FIXED_OVERHEAD = 96 * MiB
# What a primary may have sent a new replica and not yet heard was loaded
# (ShardStreamer::kWindowBytes).
WINDOW_KIB = 4096


def request_bytes(batch_size, features, dim, max_inflight):
    """The README's bound on a worker's requests in flight at a server: its
    pushes in the window plus two pulls, each a batch's keys with, per key,
    its row on the wire (or gradient) and its cold-read buffer (row and
    optimizer state): 12 (dim + 1) + 12 bytes."""
    return (max_inflight + 2) * batch_size * features * (12 * (dim + 1) + 12)


def tier_line(log, table):
    """The figures a server logs for a table when it stops."""
    m = re.search(rf"table '{re.escape(table)}': (\d+) hot \+ (\d+) cold rows; (\d+) demoted, (\d+) promoted; "
                  rf"(\d+) cold reads in \d+ batches, [0-9.]+ s; (\d+) admitted, (\d+) occurrences not admitted",
                  log)
    if m is None:
        return None
    names = ("hot", "cold", "demoted", "promoted", "cold_reads", "admitted", "deferred")
    return dict(zip(names, map(int, m.groups())))


def checkpoint_rows(run):
    """Rows the run's last checkpoint holds: every row ever trained (a row
    only pulled is its key's initial values and is stored by no one)."""
    checkpoints = os.path.join(run, "storage", "checkpoints")
    manifest = os.path.join(checkpoints, read(os.path.join(checkpoints, "LATEST")).strip(), "manifest.json")
    return sum(int(part["rows"]) for part in json.loads(read(manifest))["parts"])


def peak_mib(log):
    return int(re.search(r"peak resident memory (\d+) MiB", log).group(1))


def job_config(test, data, **overrides):
    """One server, one worker, fm of dim 32 on `data` (section__key=value overrides)."""
    return config_with(test.dir, {
        "cluster": {"servers": 1, "workers": 1},
        "server": {"threads": 2},
        "data": {"train": data["train"], "test": data["test"], "batch_size": 512},
        "model": {"name": "fm", "embedding_dim": 32},
    }, **overrides)


class TieringTest(ClusterTest):
    def config(self, data, **overrides):
        return job_config(self, data, **overrides)

    def run_job(self, config, name, *sets):
        return run_with_predictions(self, config, name, *sets)

    def test_admission_gives_rows_to_keys_seen_three_times(self):
        data = datagen(self.dir, 20000, 2000, seed=3, max_vocab=30000)
        occurrences = collections.Counter()
        with open(data["train_libsvm"]) as f:
            for line in f:
                occurrences.update({item.split(":")[0] for item in line.split()[1:]})
        frequent = sum(1 for n in occurrences.values() if n >= 3)
        self.assertLess(frequent, len(occurrences))  # the data has rare keys
        sets = ["data.format=libsvm", f"data.train={data['train_libsvm']}", f"data.test={data['test_libsvm']}"]
        config = self.config(data, model__embedding_dim=4)
        everyone, _, everyone_run = self.run_job(config, "everyone", *sets)
        admitted, _, admitted_run = self.run_job(
            config, "admitted", *sets, "embedding.admission.min_count=3", "embedding.admission.counter_bytes=16MiB")
        tier = tier_line(read(os.path.join(admitted_run, "server-0.log")), "fm.wv")
        self.assertIsNotNone(tier)
        self.assertEqual(tier["admitted"], frequent)
        self.assertEqual(tier["hot"] + tier["cold"], frequent)
        # Without admission every trained key has a row (and the bias one block).
        self.assertEqual(checkpoint_rows(everyone_run), len(occurrences) + 1)
        self.assertEqual(checkpoint_rows(admitted_run), frequent + 1)
        self.assertGreater(tier["deferred"], 0)

    def test_per_table_policy_overrides_the_default(self):
        data = datagen(self.dir, 5000, 500, seed=4, max_vocab=5000)
        sets = ["data.format=libsvm", f"data.train={data['train_libsvm']}", f"data.test={data['test_libsvm']}"]
        config = self.config(data, model__embedding_dim=4)
        # Admission for every table but fm.wv: fm.wv keeps every key.
        _, _, run = self.run_job(config, "override", *sets, "embedding.admission.min_count=200",
                                 "embedding.tables.fm.wv.admission.min_count=0")
        self.assertIsNone(tier_line(read(os.path.join(run, "server-0.log")), "fm.wv"))  # nothing to report
        everyone = checkpoint_rows(run)
        _, _, run = self.run_job(config, "default", *sets, "embedding.admission.min_count=200")
        tier = tier_line(read(os.path.join(run, "server-0.log")), "fm.wv")
        occurrences = collections.Counter()
        with open(data["train_libsvm"]) as f:
            for line in f:
                occurrences.update({item.split(":")[0] for item in line.split()[1:]})
        popular = sum(1 for n in occurrences.values() if n >= 200)
        self.assertEqual(tier["admitted"], popular)
        self.assertEqual(checkpoint_rows(run), popular + 1)  # and the bias block
        self.assertLess(popular + 1, everyone)


class PlanTest(ClusterTest):
    def test_plan_measures_rows_and_sizes_the_cluster(self):
        config = write_config(self.dir, cluster={"servers": 4, "workers": 1}, data={"train": "unused.txt"},
                              model={"name": "fm", "embedding_dim": 8}, storage={"replication_factor": 2})
        out = subprocess.run([os.path.join(BIN, "sparta-ctl"), "plan", config, "--keys", "50000000",
                              "--set", "server.memory_limit=1GiB"], capture_output=True, text=True, timeout=120)
        self.assertEqual(out.returncode, 0, out.stderr)
        units = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}
        size = lambda text: float(text.split()[0]) * units[text.split()[1]]
        row = re.search(r"fm\.wv\s+sparse\s+50000000\s+(\S+ \S+)\s+(\S+ \S+)\s+(\S+ \S+)\s+(\S+ \S+)", out.stdout)
        self.assertIsNotNone(row, out.stdout)
        dram, disk, dram_server, disk_server = map(size, row.groups())
        payload = (9 + 9) * 4  # fm: 9 weights and 9 Adagrad accumulators
        self.assertGreater(dram, payload + 8)  # plus the key and the index: measured, so above the payload
        self.assertGreater(disk, payload + 12)  # plus the 12-byte RocksDB key
        # Two copies of every row over four servers.
        self.assertAlmostEqual(dram_server / (50000000 * 2 / 4 * dram), 1, delta=0.005)
        self.assertAlmostEqual(disk_server / (50000000 * 2 / 4 * disk), 1, delta=0.005)
        m = re.search(r"1\.00 GiB: (\S+ \S+) for hot rows per server, so ([0-9.]+)% of the rows stay hot; "
                      r"(\d+) servers would hold every row hot", out.stdout)
        self.assertIsNotNone(m, out.stdout)
        hot = size(m.group(1))
        self.assertAlmostEqual(float(m.group(2)), 100 * hot / dram_server, delta=0.2)
        self.assertEqual(int(m.group(3)), -(-int(4 * dram_server) // int(hot)))


class ExpiryTest(ClusterTest):
    def test_rows_untouched_for_the_ttl_are_deleted_and_touched_ones_kept(self):
        # The counting model of test_durability: a row counts its key's
        # occurrences, and a prediction is the count / 1000.
        plugin = build_counter_plugin(self.dir)
        # 100 steps of 5 lines: keys 1..100 only in steps 1-50, keys 200..299
        # in steps 51-100 (each also in 81-100), key 999 in every line.
        train = os.path.join(self.dir, "train.svm")
        with open(train, "w") as f:
            f.writelines(f"1 {1 + i % 100 if i < 250 else 200 + i % 100}:1 999:1\n" for i in range(500))
        test = os.path.join(self.dir, "test.svm")
        old, recent = list(range(1, 101)), list(range(200, 300))
        with open(test, "w") as f:
            f.writelines(f"1 {k}:1\n" for k in old + recent + [999])
        config = write_config(self.dir, cluster={"servers": 1, "workers": 1}, server={"threads": 2},
                              data={"train": train, "test": test, "format": "libsvm", "batch_size": 5},
                              model={"plugin": plugin}, embedding={"eviction": {"ttl": "20 steps"}})
        predictions = os.path.join(self.dir, "counts.txt")
        run = self.run_dir("ttl")
        result = launch(config, run, [f"eval.predictions_out={predictions}"])
        self.assertEqual(result.returncode, 0, result.stderr)
        counts = [round(float(p) * 1000) for p in read(predictions).split()]
        occurrences = collections.Counter(200 + i % 100 for i in range(250, 500))
        # Last updated at step 50 or before, 20 steps ago by step 71: gone,
        # so a pull reads the initial row (0).
        self.assertEqual(counts[:100], [0] * 100)
        # Updated within the last 20 steps: kept, every occurrence counted.
        self.assertEqual(counts[100:200], [occurrences[k] for k in recent])
        self.assertEqual(counts[200], 500)
        log = read(os.path.join(run, "server-0.log"))
        self.assertRegex(log, r"table 'count': .* 100 expired")
        self.assertEqual(checkpoint_rows(run), 101)


class TieredDurabilityTest(ClusterTest):
    def test_checkpoint_of_a_tiered_table_restores_elsewhere_bit_for_bit(self):
        data = datagen(self.dir, 60000, 3000, seed=8, max_vocab=400000)
        config = write_config(self.dir, cluster={"servers": 2, "workers": 1}, server={"threads": 2},
                              data={"train": data["train"], "test": data["test"], "batch_size": 512},
                              model={"name": "fm", "embedding_dim": 16})
        store = os.path.join(self.dir, "store2")
        saved_predictions = os.path.join(self.dir, "saved.txt")
        result = launch(config, self.run_dir("saved"), [f"storage.path={store}", "server.memory_limit=16MiB",
                                                        f"eval.predictions_out={saved_predictions}"])
        self.assertEqual(result.returncode, 0, result.stderr)
        tier = tier_line(read(os.path.join(self.run_dir("saved"), "server-0.log")), "fm.wv")
        self.assertGreater(tier["cold"], tier["hot"])  # the checkpoint holds cold rows
        checkpoint = os.path.join(store, "checkpoints", read(os.path.join(store, "checkpoints", "LATEST")).strip())

        restored_predictions = os.path.join(self.dir, "restored.txt")
        result = launch(config, self.run_dir("restored"),
                        ["cluster.servers=3", f"storage.path={os.path.join(self.dir, 'store3')}",
                         f"storage.restore={checkpoint}", "server.memory_limit=20MiB",
                         f"eval.predictions_out={restored_predictions}"])
        self.assertEqual(result.returncode, 0, result.stderr)
        restored = summary(self.run_dir("restored"))
        self.assertEqual(restored["train_examples"], 0)
        self.assertEqual(restored["restored_from"], checkpoint)
        self.assertEqual(len(read(restored_predictions).splitlines()), 3000)
        self.assertEqual(read(restored_predictions), read(saved_predictions))

    def run_killing_server_1(self, name, data, epochs, **overrides):
        """3 servers (R=2, ack all) under a 16 MiB limit and 2 workers train fm;
        server-1 is killed -9 after epoch 2 (the launcher starts a fresh one).
        The job must succeed; returns its run folder, summary and stderr."""
        config = write_config(
            self.dir, cluster={"servers": 3, "workers": 2, "heartbeat_interval": 0.2, "heartbeat_timeout": scaled(1.5)},
            server={"threads": 1, "memory_limit": "16MiB"},
            data={"train": data["train"], "test": data["test"], "batch_size": 512, "epochs": epochs},
            model={"name": "fm", "embedding_dim": 8},
            storage={"replication_factor": 2, "ack": "all"}, worker={"audit": 1}, **overrides)
        run = self.run_dir(name)
        proc = launch(config, run, wait=False)
        self.procs.append(proc)
        wait_for(lambda: "epoch 2 done" in read(os.path.join(run, "worker-0.log")), 300, "epoch 2")
        pids = {(d["role"], d["rank"]): d["pid"] for d in json.loads(read(os.path.join(run, "daemons.json")))}
        os.kill(pids[("server", 1)], signal.SIGKILL)
        out, err = proc.communicate(timeout=600)
        self.assertEqual(proc.returncode, 0, err)
        s = summary(run)
        self.assertEqual(s["status"], "ok", s.get("error"))
        return run, s, err

    def test_killed_server_under_a_memory_limit_loses_nothing(self):
        data = datagen(self.dir, 60000, 5000, seed=12, max_vocab=300000)
        run, s, _ = self.run_killing_server_1("killed", data, 6)
        self.assertGreater(min(s["worker_steps"]), 0)
        # Every acknowledged push counted once, across the failover and the
        # new replica's copy of rows that were partly on disk.
        self.assertEqual(s["audit_counts"], s["worker_steps"])
        self.assertIn("failing over to its replicas", read(os.path.join(run, "scheduler.log")))
        tier = tier_line(read(os.path.join(run, "server-0.log")), "fm.wv")
        self.assertGreater(tier["demoted"], 0)

    def test_new_replica_gets_its_shards_in_bounded_parts(self):
        """A fresh server that rejoins a job under a memory limit is sent its
        shards' rows, most of them from the primaries' disks, as a stream of
        parts: many windows' worth in all, never more than the window
        unacknowledged, and every row sent is loaded."""
        data = datagen(self.dir, 150000, 5000, seed=13, max_vocab=600000)
        run, s, err = self.run_killing_server_1(
            "rejoined", data, 4, embedding={"admission": {"min_count": 2, "counter_bytes": "2MiB"}})
        self.assertIn("starting a fresh server-1 to rejoin", err)
        self.assertEqual(s["audit_counts"], s["worker_steps"])

        primaries = [read(os.path.join(run, f"server-{rank}.log")) for rank in (0, 2)]
        rejoined = read(os.path.join(run, "server-1.restart1.log"))
        sent_rows = sum(int(n) for log in primaries
                        for n in re.findall(r"streamed shard \d+ to server-1: (\d+) rows", log))
        loaded_rows = sum(int(n) for n in re.findall(r"loading (\d+) rows of table '[^']+' for shard", rejoined))
        self.assertGreater(sent_rows, 0)
        self.assertEqual(loaded_rows, sent_rows)
        self.assertNotIn("counting starts over", rejoined)  # the admission counts came along
        sent_kib, peak_kib = 0, 0
        for log in primaries:
            m = re.search(r"shards sent to new replicas: (\d+) KiB in \d+ parts, at most (\d+) KiB unacknowledged", log)
            self.assertIsNotNone(m)
            sent_kib += int(m.group(1))
            peak_kib = max(peak_kib, int(m.group(2)))
        self.assertGreater(sent_kib, 4 * WINDOW_KIB)
        self.assertLessEqual(peak_kib, WINDOW_KIB)


if __name__ == "__main__":
    unittest.main()
