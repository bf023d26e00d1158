"""Jobs from Python: a handle on a job that `scripts/sparta launch` runs.

    import sparta
    job = sparta.launch("configs/quickstart.yaml", overrides={"model.name": "fm"})
    print(job.run_dir, job.status()["phase"])
    version = job.checkpoint()          # waits until the checkpoint is published
    summary = job.wait()                # summary.json; JobFailed if the job failed

The job is the launcher's, started as `scripts/sparta launch CONFIG --set
KEY=VALUE ... --quiet` in its own process group; status, checkpoints and
stopping are `sparta-ctl ... --run RUN_DIR`. Nothing here is a second
implementation of either: a job launched from Python is the job the command
line would have run, with the same run folder (daemon logs, daemons.json,
summary.json, ctl.yaml), and sparta-ctl and `scripts/sparta` work on it too.

The launcher's own output goes to RUN_DIR/launch.log. A Job is safe to use
from several threads; `with sparta.launch(...) as job:` ends the job (SIGTERM:
a final checkpoint, then every daemon stops) if it is still running when the
block is left.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time

from ._paths import LAUNCHER, ctl_path


class SpartaError(RuntimeError):
    """A launcher or sparta-ctl command failed; the message is Sparta's
    (a config error names the file, line and key)."""


class JobFailed(SpartaError):
    """The job ended with a non-zero exit code. `exit_code`, `summary` (the
    dict of summary.json, or None) and `run_dir` say what happened."""

    def __init__(self, message, exit_code, summary, run_dir):
        super().__init__(message)
        self.exit_code = exit_code
        self.summary = summary
        self.run_dir = run_dir


def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


class Job:
    """A running (or ended) job; made by launch()."""

    def __init__(self, process, run_dir, log_path, log_copier=None):
        self._process = process
        self.run_dir = run_dir
        self.log_path = log_path
        # The thread copying the launcher's output into log_path: wait()
        # joins it, so that the log is whole once the job has ended.
        self._log_copier = log_copier

    # --- while it runs -------------------------------------------------

    def running(self):
        """True until the launcher has exited (every daemon stopped)."""
        return self._process.poll() is None

    def _ctl(self, *args, timeout=30):
        result = subprocess.run([ctl_path(), *args, "--run", self.run_dir], capture_output=True, text=True,
                                timeout=timeout)
        if result.returncode != 0:
            raise SpartaError(f"sparta-ctl {args[0]}: {(result.stderr or result.stdout).strip()}")
        return result.stdout

    def status(self):
        """The job's status as `sparta-ctl status --json` gives it (phase,
        epoch, nodes, shards, clocks, checkpoint_version, ...). Raises
        SpartaError when the scheduler does not answer (the job has not
        started yet, or has ended: see running())."""
        if not os.path.exists(os.path.join(self.run_dir, "ctl.yaml")):
            raise SpartaError(f"{self.run_dir}: the job has not started yet (no ctl.yaml)")
        return json.loads(self._ctl("status", "--json"))

    def checkpoint(self, timeout=300):
        """Takes a checkpoint now and waits until it is published; returns
        its version (its folder is storage/checkpoints/ckpt-VERSION)."""
        before = self.status().get("checkpoint_version", 0)
        self._ctl("checkpoint")
        until = time.monotonic() + timeout
        while True:
            # The scheduler publishes asynchronously; its status says when.
            status = self.status()
            version = int(status.get("checkpoint_version", 0))
            if version > int(before) and not status.get("checkpoint_running", False):
                return version
            if not self.running():
                raise SpartaError(f"{self.run_dir}: the job ended before the checkpoint was published")
            if time.monotonic() > until:
                raise TimeoutError(f"{self.run_dir}: no checkpoint published within {timeout} s")
            time.sleep(0.2)

    def stop(self, timeout=None):
        """Ends the job as `sparta-ctl stop` does (a checkpoint when it has
        storage, then every daemon stops) and waits for it; returns the
        summary (or raises JobFailed, as wait())."""
        if self.running():
            self._ctl("stop")
        return self.wait(timeout)

    def terminate(self):
        """SIGTERM to the launcher: as Ctrl-C would, it ends the job (a final
        checkpoint within cluster.shutdown_grace) and stops every daemon."""
        if self.running():
            os.killpg(self._process.pid, signal.SIGTERM)

    # --- when it ends --------------------------------------------------

    def wait(self, timeout=None):
        """Waits for the job to end; returns its summary (summary.json as a
        dict). Raises JobFailed if it failed, TimeoutError after `timeout`
        seconds."""
        try:
            code = self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"{self.run_dir}: the job is still running after {timeout} s") from None
        if self._log_copier is not None:
            # The launcher has exited: its output ends (the copy reaches
            # EOF) unless a daemon it left behind holds the pipe open.
            self._log_copier.join(10)
        summary = self.summary()
        if code != 0:
            why = (summary or {}).get("error") or self._log_tail()
            raise JobFailed(f"{self.run_dir}: the job failed (exit code {code}): {why}", code, summary,
                            self.run_dir)
        return summary

    def summary(self):
        """summary.json of the job (what the scheduler wrote when it ended),
        or None while it runs."""
        return _read_json(os.path.join(self.run_dir, "summary.json"))

    def _log_tail(self, lines=20):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:]).strip()
        except OSError:
            return ""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.running():
            self.terminate()
            try:
                self._process.wait(120)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait()
        return False

    def __repr__(self):
        return f"Job({self.run_dir!r}, {'running' if self.running() else 'ended'})"


def launch(config, overrides=None, run_dir=None):
    """Starts `config` (a YAML file) with `overrides` ({key: value}, as
    --set key=value) on this host, in `run_dir` (default: a new folder under
    runs/, the launcher's choice); returns its Job once the run folder
    exists. A config error raises SpartaError with the launcher's message."""
    cmd = [sys.executable, LAUNCHER, "launch", os.path.abspath(config), "--quiet"]
    for key, value in (overrides or {}).items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        cmd += ["--set", f"{key}={value}"]
    if run_dir is not None:
        os.makedirs(run_dir, exist_ok=True)
        cmd += ["--run-dir", os.path.abspath(run_dir)]
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    # The launcher names its run folder on its first line (before any daemon
    # starts); what comes before it (a config error) is the error.
    early = []
    chosen = None
    for raw in process.stdout:
        line = raw.decode(errors="replace")
        if line.startswith("sparta: run folder "):
            chosen = line[len("sparta: run folder "):].strip()
            break
        early.append(line)
    if chosen is None:
        process.stdout.close()
        process.wait()
        raise SpartaError("".join(early).strip() or f"the launcher exited with code {process.returncode}")
    log_path = os.path.join(chosen, "launch.log")
    log = open(log_path, "ab")
    log.write("".join(early).encode() + raw)
    log.flush()  # the run folder's line is in the log from the start

    def copy_rest():
        with log, process.stdout:
            for rest in process.stdout:
                log.write(rest)
                log.flush()

    copier = threading.Thread(target=copy_rest, daemon=True)
    copier.start()
    return Job(process, chosen, log_path, copier)
