"""Nothing lost, nothing hidden: faults injected into real clusters end in a
correct result or in a clear failure that says what was lost, never in a
job that reports success on a damaged model. Real daemons, kill -9,
SIGTERM, RocksDB files damaged on disk, and a real full filesystem (a small
tmpfs, when the test runs as root)."""

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

from harness import ClusterTest, datagen, launch, read, summary, wait_for, write_config


def daemon_pids(run):
    return {(d["role"], d["rank"]): d["pid"] for d in json.loads(read(os.path.join(run, "daemons.json")))}


def start(test, config, log, text, sets=()):
    """Launches `config` in the background and waits until `text` appears in
    the run's `log`; returns the launcher's process and the run folder."""
    run = test.run_dir()
    proc = launch(config, run, sets, wait=False)
    test.procs.append(proc)
    wait_for(lambda: text in read(os.path.join(run, log)), 120, f"'{text}' in {log}")
    return proc, run


def exactly_once(test, s):
    """Every acknowledged push applied once: the audit table (one counter per
    worker, +1 per step) equals each worker's steps."""
    test.assertEqual(len(s["audit_counts"]), 2)
    test.assertGreater(min(s["worker_steps"]), 0)
    test.assertEqual(s["audit_counts"], s["worker_steps"])


class LostShardsTest(ClusterTest):
    def job(self, data, **storage):
        return write_config(
            self.dir, f"job-{len(os.listdir(self.dir))}.yaml",
            cluster={"servers": 3, "workers": 2, "heartbeat_interval": 0.2, "heartbeat_timeout": 1.5},
            server={"threads": 1},
            data={"train": data["train"], "test": data["test"], "batch_size": 512, "epochs": 40},
            model={"name": "lr"}, optimizer={"name": "ftrl", "learning_rate": 0.2},
            storage={"replication_factor": 2, "ack": "all", **storage}, worker={"audit": 1})

    def kill_two_servers_at_once(self, run, after):
        wait_for(after, 120, "training with a checkpoint behind it")
        pids = daemon_pids(run)
        # Both copies of a third of the shards at the same moment.
        os.kill(pids[("server", 1)], signal.SIGKILL)
        os.kill(pids[("server", 2)], signal.SIGKILL)

    def test_both_copies_lost_rolls_back_to_the_last_checkpoint(self):
        data = datagen(self.dir, 60000, 5000, seed=21)
        run = self.run_dir()
        proc = launch(self.job(data, checkpoint_every="1s"), run, wait=False)
        self.procs.append(proc)
        self.kill_two_servers_at_once(run, lambda: "checkpoint 2 published" in read(os.path.join(run, "scheduler.log")))
        out, err = proc.communicate(timeout=300)
        self.assertEqual(proc.returncode, 0, err)
        # One clear line: what was lost, which checkpoint, what is redone.
        self.assertRegex(err, r"rolling back: [1-9][0-9]* shards lost every copy \(dead servers: .*server-1.*\); "
                              r"restarting every daemon from checkpoint .*ckpt-0000[0-9]+; [0-9]+ worker steps")
        failed = read(os.path.join(run, "attempt-1", "scheduler.log"))
        self.assertIn("lost every copy", failed)
        s = summary(run)
        self.assertEqual(s["status"], "ok", s.get("error"))
        self.assertEqual(s["rollbacks"], 1)
        # Steps redone: what the workers had finished when the shards were
        # lost, less what the checkpoint had saved.
        lost = summary(os.path.join(run, "attempt-1"))
        self.assertEqual(lost["rollback_checkpoint"], s["restored_from"])
        self.assertEqual(s["steps_redone"], sum(now - then for now, then in zip(lost["worker_steps"],
                                                                                  lost["rollback_steps"])))
        self.assertIn("ckpt-", s["restored_from"])
        # The audit ends exact: nothing lost, nothing applied twice.
        exactly_once(self, s)

    def test_both_copies_lost_without_a_checkpoint_fail_naming_shards_servers_and_the_fix(self):
        data = datagen(self.dir, 60000, 5000, seed=22)
        run = self.run_dir()
        proc = launch(self.job(data), run, wait=False)
        self.procs.append(proc)
        self.kill_two_servers_at_once(run, lambda: "epoch 2 done" in read(os.path.join(run, "worker-0.log")))
        out, err = proc.communicate(timeout=300)
        self.assertEqual(proc.returncode, 1, out)
        s = summary(run)
        self.assertEqual(s["status"], "failed")
        self.assertGreater(len(s["lost_shards"]), 0)
        self.assertEqual(sorted(s["dead_servers"]), [1, 2])
        for words in ("lost every copy", "server-1", "server-2", "storage.checkpoint_every", "replication_factor"):
            self.assertIn(words, s["error"])
        self.assertIn("lost every copy", err)


class FastDetectionTest(ClusterTest):
    def test_a_killed_server_is_failed_over_without_waiting_for_the_heartbeat_timeout(self):
        data = datagen(self.dir, 60000, 5000, seed=27)
        # A heartbeat timeout longer than the whole job: only the closed
        # connection can tell the scheduler in time.
        config = write_config(
            self.dir, cluster={"servers": 3, "workers": 2, "heartbeat_timeout": 600},
            data={"train": data["train"], "test": data["test"], "batch_size": 512, "epochs": 30},
            model={"name": "lr"}, storage={"replication_factor": 2}, worker={"audit": 1})
        proc, run = start(self, config, "worker-0.log", "epoch 2 done")
        os.kill(daemon_pids(run)[("server", 1)], signal.SIGKILL)
        scheduler_log = os.path.join(run, "scheduler.log")
        wait_for(lambda: "failing over" in read(scheduler_log), 30, "the failover")
        self.assertIn("server-1", read(scheduler_log))
        self.assertIn("is gone: its connection closed and its port refuses connections", read(scheduler_log))
        wait_for(lambda: "resending" in read(os.path.join(run, "worker-0.log")), 60, "worker-0 to resend")
        out, err = proc.communicate(timeout=300)
        self.assertEqual(proc.returncode, 0, err)
        exactly_once(self, summary(run))


class DamagedCheckpointTest(ClusterTest):
    def setUp(self):
        super().setUp()
        self.data = datagen(self.dir, 20000, 2000, seed=23)
        self.storage = os.path.join(self.dir, "storage")
        self.config = write_config(
            self.dir, cluster={"servers": 2, "workers": 1},
            data={"train": self.data["train"], "test": self.data["test"], "batch_size": 512, "epochs": 1},
            model={"name": "lr"}, storage={"path": self.storage})
        # Two jobs, two checkpoints (the second resumed from the first).
        for name, sets in (("first", []), ("second", ["storage.restore=latest", "data.epochs=2"])):
            result = launch(self.config, self.run_dir(name), sets)
            self.assertEqual(result.returncode, 0, result.stderr)
        self.checkpoints = os.path.join(self.storage, "checkpoints")
        self.assertEqual(read(os.path.join(self.checkpoints, "LATEST")).strip(), "ckpt-000002")

    def largest_sst(self, checkpoint):
        files = [os.path.join(dp, f) for dp, _, fs in os.walk(os.path.join(self.checkpoints, checkpoint))
                 for f in fs if f.endswith(".sst")]
        return max(files, key=os.path.getsize)

    def damage(self, path, separate=True):
        """Overwrites 64 bytes in the middle of `path`; `separate`: in its own
        copy first (checkpoints share unchanged files through hard links)."""
        if separate:
            tmp = path + ".copy"
            shutil.copyfile(path, tmp)
            os.replace(tmp, path)
        with open(path, "r+b") as f:
            f.seek(os.path.getsize(path) // 2)
            f.write(b"\xab" * 64)

    def restore(self, name):
        return launch(self.config, self.run_dir(name), ["storage.restore=latest", "data.epochs=3"])

    def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_one_naming_the_bad_file(self):
        bad = self.largest_sst("ckpt-000002")
        self.damage(bad)
        result = self.restore("restored")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(summary(self.run_dir("restored"))["restored_from"],
                         os.path.join(self.checkpoints, "ckpt-000001"))
        log = read(os.path.join(self.run_dir("restored"), "scheduler.log"))
        self.assertIn("ckpt-000002 is damaged", log)
        self.assertIn(os.path.basename(bad), log)  # RocksDB's checksum error names the file

    def test_every_checkpoint_damaged_fails_naming_the_file_and_publishes_nothing(self):
        bad = self.largest_sst("ckpt-000002")
        self.damage(bad, separate=False)  # the first checkpoint shares it
        for other in ("ckpt-000001",):
            if os.stat(self.largest_sst(other)).st_ino != os.stat(bad).st_ino:
                self.damage(self.largest_sst(other))
        result = self.restore("restored")
        self.assertEqual(result.returncode, 1)
        s = summary(self.run_dir("restored"))
        self.assertEqual(s["status"], "failed")
        self.assertIn("no intact checkpoint", s["error"])
        self.assertIn(".sst", s["error"])
        self.assertEqual(read(os.path.join(self.checkpoints, "LATEST")).strip(), "ckpt-000002")

    def test_rows_missing_from_a_part_are_found(self):
        # A part that lost a whole table file reads back cleanly, with rows
        # missing: the manifest's per-part row counts catch it.
        part = os.path.join(self.checkpoints, "ckpt-000002", "server-1")
        manifest = json.loads(read(os.path.join(self.checkpoints, "ckpt-000002", "manifest.json")))
        manifest["parts"] = [dict(p, rows=str(int(p["rows"]) + 5)) if p["server"] == 1 else p
                             for p in manifest["parts"]]
        with open(os.path.join(self.checkpoints, "ckpt-000002", "manifest.json"), "w") as f:
            json.dump(manifest, f)
        self.assertTrue(os.path.isdir(part))
        result = self.restore("restored")
        self.assertEqual(result.returncode, 0, result.stderr)
        log = read(os.path.join(self.run_dir("restored"), "scheduler.log"))
        self.assertRegex(log, r"server-1: table 0 has [0-9]+ rows; the manifest says it was saved with")
        self.assertIn("ckpt-000001", summary(self.run_dir("restored"))["restored_from"])

    def test_a_garbled_latest_falls_back_to_the_newest_complete_checkpoint(self):
        with open(os.path.join(self.checkpoints, "LATEST"), "wb") as f:
            f.write(b"\x00\xffgarbage")
        result = self.restore("restored")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(summary(self.run_dir("restored"))["restored_from"],
                         os.path.join(self.checkpoints, "ckpt-000002"))


class PreemptionCase(ClusterTest):
    """Preempted (SIGTERM), then resumed: the same steps as a job never
    interrupted. `launcher_flags`: what else the jobs are launched with."""
    launcher_flags = ()

    def job(self, data, storage):
        return write_config(
            self.dir, f"job-{len(os.listdir(self.dir))}.yaml",
            cluster={"servers": 2, "workers": 2, "shutdown_grace": 20},
            data={"train": data["train"], "test": data["test"], "batch_size": 256, "epochs": 12},
            model={"name": "lr"}, storage={"path": storage}, worker={"audit": 1})

    def preempt_and_resume(self, send_sigterm):
        data = datagen(self.dir, 40000, 2000, seed=24)
        clean = launch(self.job(data, os.path.join(self.dir, "clean")), self.run_dir("clean"), extra=self.launcher_flags)
        self.assertEqual(clean.returncode, 0, clean.stderr)
        expected = summary(self.run_dir("clean"))["worker_steps"]

        storage = os.path.join(self.dir, "storage")
        config = self.job(data, storage)
        run = self.run_dir("preempted")
        proc = launch(config, run, wait=False, extra=self.launcher_flags)
        self.procs.append(proc)
        wait_for(lambda: "epoch 3 done" in read(os.path.join(run, "worker-0.log")), 120, "epoch 3")
        send_sigterm(proc, run)
        out, err = proc.communicate(timeout=60)
        self.assertEqual(proc.returncode, 143, err)
        s = summary(run)
        self.assertEqual(s["status"], "preempted", s.get("error"))
        self.assertGreaterEqual(s["checkpoint_version"], 1)
        self.assertIn(f"storage.path={storage}", out)  # the resume hint names where the checkpoint is
        self.assertRegex(out, r"preempted \(SIGTERM\) after [1-9][0-9]* examples")
        self.assertLess(sum(s["worker_steps"]), sum(expected))

        resumed = launch(config, self.run_dir("resumed"), ["storage.restore=latest"], extra=self.launcher_flags)
        self.assertEqual(resumed.returncode, 0, resumed.stderr)
        r = summary(self.run_dir("resumed"))
        # The same steps as the uninterrupted job, each applied once.
        self.assertEqual(r["worker_steps"], expected)
        exactly_once(self, r)

    def sigterm_to_every_daemon(self, proc, run):
        for pid in daemon_pids(run).values():
            os.kill(pid, signal.SIGTERM)


class PreemptionTest(PreemptionCase):
    def test_sigterm_to_the_launcher_checkpoints_and_resumes_exactly(self):
        self.preempt_and_resume(lambda proc, run: os.kill(proc.pid, signal.SIGTERM))

    def test_sigterm_to_every_daemon_at_once_checkpoints_and_resumes_exactly(self):
        # Kubernetes evicts every pod of the job at the same moment.
        self.preempt_and_resume(self.sigterm_to_every_daemon)


@unittest.skipUnless(os.geteuid() == 0, "mounting a small tmpfs needs root (CI runs as root)")
class DiskFullTest(ClusterTest):
    def setUp(self):
        super().setUp()
        self.disk = tempfile.mkdtemp(prefix="sparta-full-")
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128M", "tmpfs", self.disk], check=True)
        self.data = datagen(self.dir, 60000, 2000, seed=25)

    def tearDown(self):
        super().tearDown()
        subprocess.run(["umount", "-l", self.disk], check=False)
        os.rmdir(self.disk)

    def fill(self):
        """Writes a file until the filesystem is full (ENOSPC)."""
        filler = os.path.join(self.disk, "filler")
        with open(filler, "wb", buffering=0) as f:
            for chunk in (1 << 20, 4096):
                try:
                    while True:
                        f.write(b"\0" * chunk)
                except OSError:
                    pass
        return filler

    def job(self, **storage):
        return write_config(
            self.dir, f"job-{len(os.listdir(self.dir))}.yaml", cluster={"servers": 2, "workers": 2},
            data={"train": self.data["train"], "test": self.data["test"], "batch_size": 256, "epochs": 40},
            model={"name": "fm"}, storage={"path": os.path.join(self.disk, "storage"), **storage})

    def test_a_full_disk_under_a_write_ahead_log_fails_the_job_naming_path_and_cause(self):
        proc, run = start(self, self.job(durability="wal"), "scheduler.log", "published cluster view")
        self.fill()  # (the log of 40 epochs would also fill it, a little later)
        out, err = proc.communicate(timeout=120)
        self.assertEqual(proc.returncode, 1, err)
        s = summary(run)
        self.assertEqual(s["status"], "failed", err)
        self.assertIn("No space left on device", s["error"], err)  # (err ends with every log's last lines)
        self.assertIn(os.path.join(self.disk, "storage", "server-"), s["error"])
        self.assertNotIn("signal", err)  # no daemon crashed (an abort was "ended with signal 6")

    def test_a_failed_checkpoint_is_a_warning_and_is_retried_once_space_is_freed(self):
        config = self.job(checkpoint_every="2s")
        proc, run = start(self, config, "worker-0.log", " ex/s ")
        filler = self.fill()
        scheduler_log = os.path.join(run, "scheduler.log")
        wait_for(lambda: "failed (1 of 3 failures" in read(scheduler_log), 60, "a checkpoint to fail")
        os.remove(filler)
        out, err = proc.communicate(timeout=180)
        self.assertEqual(proc.returncode, 0, err)
        log = read(scheduler_log)
        self.assertIn("No space left on device", log)
        failed_at = log.index("failed (1 of 3 failures")
        self.assertIn("published", log[failed_at:])  # a later checkpoint made it
        s = summary(run)
        self.assertEqual(s["status"], "ok")
        # The final model reads back whole.
        restored = launch(config, self.run_dir("restored"), ["storage.restore=latest", "data.epochs=41"])
        self.assertEqual(restored.returncode, 0, restored.stderr)
        self.assertNotIn("damaged", read(os.path.join(self.run_dir("restored"), "scheduler.log")))


class SummaryAndInputTest(ClusterTest):
    def test_a_killed_worker_leaves_a_valid_summary_that_says_what_happened(self):
        data = datagen(self.dir, 20000, 0)
        config = write_config(self.dir, cluster={"servers": 1, "workers": 2},
                              data={"train": data["train"], "epochs": 100000, "batch_size": 256})
        proc, run = start(self, config, "worker-0.log", " ex/s ")
        os.kill(daemon_pids(run)[("worker", 1)], signal.SIGKILL)
        out, err = proc.communicate(timeout=60)
        self.assertEqual(proc.returncode, 1)
        s = summary(run)  # valid JSON, or this raises
        self.assertEqual(s["status"], "failed")
        self.assertIn("worker-1", s["error"])
        self.assertNotIn("Traceback", err)

    def test_a_bad_line_that_is_not_utf8_fails_at_once_with_its_bytes_escaped(self):
        data = datagen(self.dir, 5000, 0)
        with open(data["train"], "ab") as f:
            f.write(b"\xff\xfe\x1b[2J\t1\t2\n")
        config = write_config(self.dir, cluster={"servers": 1, "workers": 1, "heartbeat_timeout": 30},
                              data={"train": data["train"], "max_bad_lines": 0, "batch_size": 256})
        run = self.run_dir()
        started = time.monotonic()
        result = launch(config, run, timeout=60)
        self.assertEqual(result.returncode, 1)
        # The worker's own report, not a heartbeat timeout (30 s here).
        self.assertLess(time.monotonic() - started, 25)
        s = summary(run)
        self.assertIn(f"{data['train']}:5001", s["error"])
        self.assertIn("\\xFF\\xFE\\x1B[2J", s["error"])
        self.assertNotIn("stopped responding", s["error"])
        log = open(os.path.join(run, "worker-0.log"), "rb").read()
        self.assertNotIn(b"\xff", log)
        self.assertNotIn(b"\x1b", log)

    def test_an_input_with_no_example_is_an_error_naming_the_files(self):
        empty = os.path.join(self.dir, "empty.txt")
        open(empty, "w").close()
        config = write_config(self.dir, cluster={"servers": 1, "workers": 1}, data={"train": empty})
        result = launch(config, self.run_dir("refused"))
        self.assertEqual(result.returncode, 1)
        s = summary(self.run_dir("refused"))
        self.assertIn("no training example", s["error"])
        self.assertIn(empty, s["error"])
        self.assertIn("data.allow_empty", s["error"])
        allowed = launch(config, self.run_dir("allowed"), ["data.allow_empty=true"])
        self.assertEqual(allowed.returncode, 0, allowed.stderr)

    def test_a_resumed_job_measures_staleness_from_the_restored_clocks(self):
        data = datagen(self.dir, 40000, 0, seed=26)
        storage = os.path.join(self.dir, "storage")
        config = write_config(self.dir, cluster={"servers": 1, "workers": 2},
                              data={"train": data["train"], "batch_size": 256, "epochs": 6},
                              worker={"consistency": "ssp", "staleness": 2}, model={"name": "lr"},
                              storage={"path": storage})
        first = launch(config, self.run_dir("first"))
        self.assertEqual(first.returncode, 0, first.stderr)
        self.assertGreater(min(summary(self.run_dir("first"))["worker_steps"]), 100)
        resumed = launch(config, self.run_dir("resumed"), ["storage.restore=latest", "data.epochs=8"])
        self.assertEqual(resumed.returncode, 0, resumed.stderr)
        s = summary(self.run_dir("resumed"))
        # SSP keeps every worker within staleness + 1 steps of the slowest;
        # measured against a slowest worker at step 0, it was hundreds.
        self.assertLessEqual(max(s["max_staleness"]), 3)
        self.assertLessEqual(s["max_clock_spread"], 3)


if __name__ == "__main__":
    unittest.main()
