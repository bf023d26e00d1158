"""sparta.Worker: a Python process as one of a job's workers.

    tables = [sparta.Sparse("emb", dim=16, initializer="normal", scale=0.01, optimizer="adagrad"),
              sparta.Dense("mlp", size=4096, optimizer="adam")]
    with sparta.Worker("job.yaml", tables) as w:
        for batch in w.batches():             # this worker's share of data.train, epoch after epoch
            rows = w.pull("emb", batch.unique_keys)        # (n, 16) float32
            ...                                            # the model, in NumPy or PyTorch
            w.push("emb", batch.unique_keys, grad_rows)    # a future; the servers apply adagrad
            w.record_loss(summed_logloss)                  # for the progress log (optional)
        probs, labels = ..., ...                           # the lead worker scores w.test_batches()
        w.finish(probs, labels)

It registers with the job's scheduler like sparta-worker, declares its
tables on the servers, and keeps the job's contract around the loop: a
step is one batch, ended by taking the next; at most worker.max_inflight
steps' pushes are in flight; ssp/bsp wait for the slowest worker;
checkpoints pause at a step boundary with every push acknowledged (a restore
skips exactly the batches trained); worker.audit counts every step's push;
a lost server's requests are resent to its replicas. `sparta-ctl stop` or
SIGTERM to the job ends `batches()` early, a pull or push in flight raises
sparta.JobStopped (which `with sparta.Worker(...)` absorbs), and finish()
returns False.

A batch holds NumPy arrays over the worker's own memory (read-only, no copy):
labels (n,), dense (n, num_dense), unique_keys (u,) uint64, and the
features in CSR form: offsets (n+1,), and per feature slots (index into
unique_keys), values and fields. Errors are sparta.SpartaError.
"""

import argparse
import json
import sys

import numpy as np

from . import _native
from .jobs import SpartaError


class JobStopped(SpartaError):
    """The job was stopped (sparta-ctl stop, SIGTERM: a final checkpoint is
    taken) while this worker trained. Raised by pull/push and their futures;
    `with sparta.Worker(...)` ends quietly on it, as sparta-worker does."""


def Sparse(name, dim, initializer="zero", scale=0.0, seed=0, optimizer="", learning_rate=-1.0):
    """A sparse table: `dim` floats per 64-bit key, made on first touch.
    optimizer "" (the job's optimizer.name) | sgd | adagrad | ftrl | adam."""
    return {"name": name, "kind": "sparse", "dim": int(dim), "initializer": initializer, "scale": float(scale),
            "seed": int(seed), "optimizer": optimizer, "learning_rate": float(learning_rate)}


def Dense(name, size, initializer="zero", scale=0.0, seed=0, optimizer="", learning_rate=-1.0):
    """A dense table of `size` floats (a layer's weights); optimizer "" is the job's optimizer.dense_name."""
    return {"name": name, "kind": "dense", "size": int(size), "initializer": initializer, "scale": float(scale),
            "seed": int(seed), "optimizer": optimizer, "learning_rate": float(learning_rate)}


def _sets(overrides):
    if overrides is None:
        return []
    if isinstance(overrides, dict):
        return [f"{k}={v}" for k, v in overrides.items()]
    return list(overrides)


def _daemon_arguments(argv):
    """sparta-worker's command line, as `scripts/sparta launch --worker-command` passes it."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--config")
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--rank", type=int)
    p.add_argument("--info-file", default="")
    args, _ = p.parse_known_args(argv)
    return args


class Worker:
    def __init__(self, config, tables, overrides=None, rank=None):
        """Joins the job of `config` (a YAML file; `overrides` as --set:
        {"key": value} or ["key=value"]) as a worker, rank `rank` or the
        scheduler's choice, and declares `tables`: a list of Sparse/Dense, or
        a function of this worker (its `config`, `num_fields`, `num_dense`)
        that returns one, for tables whose shape depends on the data.
        config None: from this program's command line, as the launcher gives
        it (`scripts/sparta launch JOB.yaml --worker-command 'python3 train.py'`):
        --config, --set, --rank and --info-file, the same as sparta-worker's."""
        info_file = ""
        sets = _sets(overrides)
        if config is None:
            args = _daemon_arguments(sys.argv[1:])
            if not args.config:
                raise ValueError("sparta.Worker(None, ...): no --config on the command line")
            config, sets, info_file = args.config, args.set + sets, args.info_file
            rank = args.rank if rank is None else rank
        self._native = _native.Worker(str(config), sets, -1 if rank is None else int(rank), info_file)
        self.config = json.loads(self._native.config_json)
        self.num_fields, self.num_dense = self._native.probe_schema()
        self._finished = True  # until open() succeeds
        if callable(tables):
            tables = tables(self)
        self.training = self._native.open(list(tables))  # False: the job had already finished training
        self._index = {}
        self._tables = []
        if self.training:
            self._tables = self._native.tables
            self._index = {t["name"]: i for i, t in enumerate(self._tables)}
            for t in self._tables:
                if t["kind"] == "dense":  # stored in blocks of dim floats, the last one padded
                    t["padded"] = (t["size"] + t["dim"] - 1) // t["dim"] * t["dim"]
        self._finished = not self.training

    @property
    def rank(self):
        return self._native.rank

    @property
    def stopped(self):
        """Whether the job was stopped (sparta-ctl stop, SIGTERM) before this
        worker finished: batches() and test_batches() end early then, and
        finish() returns False."""
        return self._native.stopped

    @property
    def restored_from(self):
        """The checkpoint folder the job resumed from (storage.restore), or None."""
        return self._native.restored_from or None

    def on_checkpoint(self, save):
        """Has save(folder) called at every checkpoint, once this worker has
        paused for it (a step boundary, every push acknowledged) and before
        it says so: state kept outside the servers (PyTorch's parameters and
        optimizer) goes into `folder`, the checkpoint's, which restored_from
        names when a job resumes from it. An exception fails that checkpoint
        (the job trains on and tries again). Called on another thread than
        the training loop's, while that loop waits in batches() or finish()."""
        self._native.on_checkpoint(save)

    @property
    def evaluates(self):
        """Whether this worker (the lead) evaluates data.test and gives finish() its scores."""
        return self._native.evaluates

    def table(self, name):
        """The table's description: name, kind, dim, size."""
        return self._tables[self._table_index(name)]

    def _table_index(self, name):
        try:
            return self._index[name]
        except KeyError:
            raise KeyError(f"no table '{name}' (declared: {', '.join(self._index)})") from None

    def batches(self):
        """This worker's share of data.train, one batch per step."""
        while not self._finished:
            batch = self._native.next_batch()
            if batch is None:
                return
            yield batch

    def peek(self):
        """The next step's batch, read ahead during this step so that its
        pulls can start early (see sparta.torch.EmbeddingBag.prefetch), or
        None: under asp only (ssp and bsp pull when the clock allows), and
        not when a checkpoint's pause is due or the input is done. The next
        batch from batches() is this one."""
        return self._native.peek()

    def pull_async(self, table, keys=None, out=None):
        """Starts a pull of `keys`' rows (a dense table: keys None); .result() gives them.
        `out`: a writable, C-contiguous float32 array of (len(keys), dim) that
        the rows are written into (e.g. rows of a larger array), instead of a
        new one."""
        i = self._table_index(table)
        t = self._tables[i]
        if t["kind"] == "dense":
            return _Future(self, self._native.pull_dense_async([i]), t["size"])
        return _Future(self, self._native.pull_async(i, np.asarray(keys, dtype=np.uint64), out))

    def pull(self, table, keys=None):
        """The rows of `keys` as a (len(keys), dim) float32 array; a dense table's values (keys None)."""
        return self.pull_async(table, keys).result()

    def push(self, table, keys, grads, counts=None):
        """Sends gradients (len(keys), dim) of `keys` (a dense table: keys None,
        grads of its size); the servers apply the table's optimizer. Returns a
        future (.wait(), .done()); the step's pushes are waited for as the job's
        consistency mode says, so a training loop need not wait itself."""
        i = self._table_index(table)
        t = self._tables[i]
        grads = np.ascontiguousarray(grads, dtype=np.float32).reshape(-1)
        if t["kind"] == "dense":
            padded = np.zeros(t["padded"], dtype=np.float32)
            padded[:t["size"]] = grads
            return _Future(self, self._native.push_dense([i], padded))
        if counts is not None:
            counts = np.asarray(counts, dtype=np.uint32)
        return _Future(self, self._native.push(i, np.asarray(keys, dtype=np.uint64), grads, counts))

    def dense_layout(self, tables):
        """Where each of dense `tables` lies in pull_dense_async's values and
        push_dense's gradients: [(offset, size)], each table padded to whole
        blocks of its dim, in the order given; and the total length."""
        layout, at = [], 0
        for name in tables:
            t = self.table(name)
            if t["kind"] != "dense":
                raise ValueError(f"table '{name}' is not dense")
            layout.append((at, t["size"]))
            at += t["padded"]
        return layout, at

    def pull_dense_async(self, tables):
        """Starts one pull of several dense tables (one request each, posted
        together); .result() gives their values as one array laid out as
        dense_layout(tables) says. A model that pulls every layer each step
        does it in one call (sparta.torch.DenseTables)."""
        return _Future(self, self._native.pull_dense_async([self._table_index(n) for n in tables]))

    def push_dense(self, tables, grads):
        """Sends the gradients of several dense tables at once, `grads` laid
        out as dense_layout(tables) says (padding ignored). Returns a future,
        as push() does."""
        return _Future(self, self._native.push_dense([self._table_index(n) for n in tables],
                                                     np.ascontiguousarray(grads, dtype=np.float32).reshape(-1)))

    def record_loss(self, summed_loss):
        """The step's summed logloss, for the progress log and the job's metrics."""
        self._native.record_loss(float(summed_loss))

    def test_batches(self):
        """data.test in one pass for the lead worker (see `evaluates`); nothing for the others."""
        if self.stopped or not self.evaluates:
            return
        source = self._native.open_test()
        while (batch := source.next()) is not None:
            yield batch

    def finish(self, probs=None, labels=None):
        """Ends training and waits for the end of the job. The lead worker
        passes its predicted probabilities on data.test and their labels: the
        job's summary reports their AUC and logloss. False if the job was
        stopped instead (sparta-ctl stop, SIGTERM)."""
        if self._finished:
            return self.training
        self._finished = True
        if probs is not None:
            probs = np.ascontiguousarray(probs, dtype=np.float32).reshape(-1)
            labels = np.ascontiguousarray(labels, dtype=np.float32).reshape(-1)
        return self._native.finish(probs, labels)

    def fail(self, message):
        """Ends the job as failed, with `message` in its summary."""
        self._finished = True
        self._native.fail(str(message))

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        if kind is not None and issubclass(kind, JobStopped):
            self._finished = True
            return True  # the job ends as stopped; nothing here failed
        if kind is not None and not self._finished:
            self.fail(f"{kind.__name__}: {value}")
        return False

    def _stopped_or(self, error):
        return JobStopped(str(error)) if self._native.stopped else error


class _Future:
    """A pull (result(): the rows) or a push (wait()) in flight."""

    def __init__(self, worker, future, dense_size=None):
        self._worker, self._future, self._dense_size = worker, future, dense_size

    def result(self):
        try:
            rows = self._future.result()
        except _native.Error as e:
            raise self._worker._stopped_or(e) from None
        return rows if self._dense_size is None else rows.reshape(-1)[:self._dense_size]

    def wait(self):
        try:
            self._future.wait()
        except _native.Error as e:
            raise self._worker._stopped_or(e) from None

    def done(self):
        return self._future.done()
