"""PyTorch modules whose parameters live on Sparta's parameter servers.

    emb = sparta.torch.EmbeddingBag(worker, "emb", num_fields=worker.num_fields)
    mlp = sparta.torch.DenseTable(worker, "mlp")     # a dense table: a layer's weights
    for batch in worker.batches():
        pooled = emb(batch)              # (n, num_fields, dim): per example and field, sum of value * row
        flat = mlp()                     # the table's values, this step
        loss = ...                       # summed over the batch, as the servers' optimizers expect
        loss.backward()                  # the gradients go to the servers (each table's optimizer applies them)

A forward pass pulls the rows the batch needs into a leaf tensor; backward
pushes that tensor's gradient, so the model needs no optimizer for these
parameters: the servers apply each table's own (sgd, adagrad, ftrl, adam).
Parameters a model keeps in PyTorch stay with a PyTorch optimizer.

Dense parameters may instead stay in PyTorch with a PyTorch optimizer,
their gradients averaged over the job's Python workers each step with
torch.distributed (gloo): see AllReduce.

Gradients are pushed as they are: a table's optimizer sees the gradient of
whatever loss backward() was called on. Sparta's built-in models push that
of the batch's summed logloss (reduction="sum"); use the same to train with
the same learning rates.
"""

import atexit
import math
import os

import numpy as np
import torch

from sparta import _native
from sparta.jobs import SpartaError

__all__ = ["AllReduce", "EmbeddingBag", "Embedding", "DenseTable", "DenseTables", "split"]


def _rows(pulled):
    """An array, or a pull's future: its rows."""
    return pulled.result() if hasattr(pulled, "result") else pulled


class _ServerRows(torch.nn.Module):
    def __init__(self, worker, table):
        super().__init__()
        self.worker, self.table = worker, table
        self.dim = worker.table(table)["dim"]

    def _leaf(self, rows, keys):
        """`rows` (NumPy, pulled) as a tensor whose gradient is pushed for `keys`."""
        table, worker, shape = self.table, self.worker, rows.shape
        return _server_tensors(rows, [(0, shape)], lambda flat: worker.push(table, keys, flat.reshape(shape)))[0]


class EmbeddingBag(_ServerRows):
    """A sparse table's rows, pooled (summed, each weighted by its feature's
    value) per example, or per example and field with `num_fields`. Forward
    takes a sparta batch; with torch.no_grad() (evaluation) nothing is pushed.

    With `split` (widths that add up to the table's dim), forward gives one
    tensor per part of the rows, as torch.split(pooled, split, dim=-1)
    would: e.g. [1, k] for rows that hold a wide weight and a deep
    embedding, as the built-in dnn's do. The parts are made apart and their
    gradients gathered natively, without the copies of a split's backward."""

    def __init__(self, worker, table, num_fields=None, split=None):
        super().__init__(worker, table)
        self.num_fields = num_fields
        self.split = [self.dim] if split is None else [int(w) for w in split]
        if sum(self.split) != self.dim or min(self.split) < 0:
            raise ValueError(f"table '{table}': split {self.split} must be widths that add up to its dim {self.dim}")
        self._ahead = {}  # batch id -> (batch, the pull of its early rows), from prefetch()

    def pull_async(self, batch):
        """Starts the pull of `batch`'s rows, for forward(batch, rows=...), so
        that it overlaps other pulls or computation (the part prefetch()
        started is not pulled again)."""
        ahead = self._ahead.pop(batch.id, None)
        if ahead is not None:
            _, rows, early, late = ahead
            if late is None:
                late = self._pull_late(batch, rows)
            return _Joined(rows, early, late)
        return self.worker.pull_async(self.table, batch.unique_keys)

    def _pull_late(self, batch, rows):
        return self.worker.pull_async(self.table, batch.unique_keys[batch.fresh_keys:], out=rows[batch.fresh_keys:])

    def prefetch(self, batch):
        """Starts pulling the rows of the next step's `batch` (worker.peek())
        that this step does not update (its first batch.fresh_keys keys); its
        forward (or pull_async) pulls the rest then, after this step's push,
        so every row it reads has this worker's earlier updates, as
        sparta-worker's own prefetch does."""
        # Keyed by the batch; the batch itself is kept too, as the futures'
        # keys are views of it. Both parts land in one array, each in its rows.
        rows = np.empty((len(batch.unique_keys), self.dim), dtype=np.float32)
        early = self.worker.pull_async(self.table, batch.unique_keys[:batch.fresh_keys], out=rows[:batch.fresh_keys])
        self._ahead[batch.id] = (batch, rows, early, None)
        while len(self._ahead) > 2:  # this step's and the next's; an older one was never used
            del self._ahead[next(iter(self._ahead))]

    def prefetch_updated(self, batch):
        """Starts pulling the rest of the next step's `batch` (the rows this
        step updates), once this step's backward has pushed: a pull posted
        after a push reflects it, so the rows are those its forward would
        pull, and the wait overlaps what happens between the steps. Only
        after prefetch(batch) in the same step."""
        ahead = self._ahead.get(batch.id)
        if ahead is not None and ahead[3] is None:
            self._ahead[batch.id] = ahead[:3] + (self._pull_late(batch, ahead[1]),)

    def forward(self, batch, rows=None):
        """`rows`: the batch's rows if already pulled, or their pull_async() future."""
        keys = batch.unique_keys
        if rows is None and batch.id in self._ahead:
            rows = self.pull_async(batch)
        rows = _rows(rows) if rows is not None else self.worker.pull(self.table, keys)
        row, bag = _native.pooling(batch.offsets, batch.slots, batch.fields, batch.values, self.num_fields or 0)
        bags = batch.size * (self.num_fields or 1)
        if torch.is_grad_enabled():
            table, worker = self.table, self.worker
            parts = _PooledServerRows.apply(_the_anchor(), rows, row, bag, batch.values, bags, self.split,
                                            lambda grads: worker.push(table, keys, grads))
        else:
            parts = [torch.from_numpy(p) for p in _native.scatter_add([rows], row, bag, batch.values, bags, self.split)]
        if self.num_fields is not None:
            parts = [p.view(batch.size, self.num_fields, p.shape[1]) for p in parts]
        return tuple(parts) if len(self.split) > 1 else parts[0]


class _PooledServerRows(torch.autograd.Function):
    """Rows pulled off the servers, pooled per bag (each weighted by its
    feature's value), whose gradient goes back to the servers: backward
    sums each row's share of the bags' gradient and pushes it. Natively in
    both directions (_native.scatter_add): as a leaf tensor indexed and
    placed by PyTorch, the pooling and its backward were a tenth of the DLRM
    example's operator time."""

    @staticmethod
    def forward(ctx, anchor, rows, row, bag, values, bags, split, push):
        ctx.row, ctx.bag, ctx.values, ctx.push = row, bag, values, push
        ctx.rows, ctx.bags, ctx.split = len(rows), bags, split
        return tuple(torch.from_numpy(p) for p in _native.scatter_add([rows], row, bag, values, bags, split))

    @staticmethod
    def backward(ctx, *grads):
        # A part that did not reach the loss has no gradient: zeros.
        parts = [np.zeros((ctx.bags, w), np.float32) if g is None else
                 g.contiguous().numpy() for g, w in zip(grads, ctx.split)]
        ctx.push(_native.scatter_add(parts, ctx.bag, ctx.row, ctx.values, ctx.rows, [sum(ctx.split)])[0])
        return None, None, None, None, None, None, None, None


class _Joined:
    """Two pulls into the rows of one array, one after the other."""

    def __init__(self, rows, first, second):
        self.rows, self.first, self.second = rows, first, second

    def result(self):
        self.first.result()
        self.second.result()
        return self.rows


class Embedding(_ServerRows):
    """A sparse table's rows for given keys: forward(keys) -> (len(keys), dim)."""

    def forward(self, keys):
        keys = np.asarray(keys, dtype=np.uint64)
        unique, inverse = np.unique(keys, return_inverse=True)
        leaf = self._leaf(self.worker.pull(self.table, unique), unique)
        return leaf[torch.from_numpy(inverse.astype(np.int64))]


class _ServerGradient(torch.autograd.Function):
    """Tensors made from values pulled off the servers, whose gradient goes
    back to them (one flat push) instead of into a .grad.

    A leaf tensor with requires_grad would do the same at a cost that
    dominated a small MLP's step: autograd accumulates each leaf's gradient
    (a copy of the whole table every step), and a slice of a flat leaf (a
    layer's W and b) turns into a zero-filled table-sized gradient per slice
    in backward (perf of the DLRM example: 40% of its autograd time in
    fill_, AccumulateGrad and add). Here backward writes each part's
    gradient once into the flat array that is pushed. `parts`: (offset,
    shape) of each tensor in `values`, in order of offset, not overlapping;
    what lies between them (tables' padding) is pushed as zeros. `anchor`
    is a scalar that requires grad, only so that autograd calls backward."""

    @staticmethod
    def forward(ctx, anchor, values, parts, push):
        ctx.parts, ctx.push, ctx.size = parts, push, values.size
        return _views(torch.from_numpy(values), parts)

    @staticmethod
    def backward(ctx, *grads):
        if len(grads) == 1 and grads[0] is not None and grads[0].numel() == ctx.size:
            # One part, the whole array (a sparse table's rows): pushed as it is.
            ctx.push(grads[0].contiguous().reshape(-1).numpy())
            return None, None, None, None
        flat = np.empty(ctx.size, dtype=np.float32)
        at = 0
        for (offset, shape), grad in zip(ctx.parts, grads):
            flat[at:offset] = 0  # padding before it
            at = offset + math.prod(shape)
            if grad is None:  # a part that did not reach the loss
                flat[offset:at] = 0
            else:
                flat[offset:at] = grad.reshape(-1).numpy()
        flat[at:] = 0  # the last table's padding to whole blocks
        ctx.push(flat)
        return None, None, None, None


def _layout(shapes, offset=0):
    """(offset, shape) of consecutive tensors of `shapes` from `offset`."""
    parts = []
    for shape in shapes:
        parts.append((offset, shape))
        offset += math.prod(shape)
    return parts


def _views(flat, parts):
    return tuple(flat[offset:offset + math.prod(shape)].view(shape) for offset, shape in parts)


def split(flat, shapes):
    """A flat tensor cut into views of `shapes`, in order (e.g. a layer's W then b)."""
    return _views(flat, _layout(shapes))


_anchor = None


def _the_anchor():
    """The scalar that makes autograd call the backward of tensors made from server values."""
    global _anchor
    if _anchor is None:
        _anchor = torch.zeros((), requires_grad=True)
    return _anchor


def _server_tensors(values, parts, push):
    """`values` (NumPy) as tensors at `parts` ((offset, shape), by offset);
    with grad enabled, backward pushes their gradients as one flat array
    (push(flat), zeros between the parts)."""
    if not torch.is_grad_enabled():
        return _views(torch.from_numpy(values), parts)
    return _ServerGradient.apply(_the_anchor(), values, parts, push)


class DenseTables(torch.nn.Module):
    """Dense tables read and written together, e.g. every layer of an MLP:
    on the servers, pulled on each forward and their gradients pushed by
    backward, in one call each way per step for all of them (the worker
    posts a request per table at once). One module per layer would pay
    Python's and the module's overhead per table, each way, each step.
    forward(shapes=...) gives, per table, its values cut into tensors of
    that table's shapes, in order:

        mlp = sparta.torch.DenseTables(worker, ["mlp.0", "mlp.1"])
        (w0, b0), (w1, b1) = mlp(shapes=[[(13, 32), (32,)], [(32, 8), (8,)]])

    Without shapes, each table is one flat tensor.
    """

    def __init__(self, worker, tables):
        super().__init__()
        self.worker, self.tables = worker, list(tables)
        self._layout, self._padded = worker.dense_layout(self.tables)
        # The next step's pull, from prefetch(): a list, changed in place, as
        # setting a module's attribute goes through Module.__setattr__.
        self._ahead = []
        self._cuts = {}  # shapes given (as tuples) -> their parts, from _cut()

    def prefetch(self):
        """Starts pulling the values the next step reads, right after this
        step's backward (which posted the push): a pull posted after a push
        reflects it, so the values are the same as a pull in the next
        forward would get from this worker, and the wait overlaps what
        happens between the steps. Call it only when worker.peek() gave a
        batch (asp, no checkpoint pause due): ssp and bsp pull when the
        clock allows."""
        self._ahead[:] = [self.worker.pull_dense_async(self.tables)]

    def pull_async(self):
        """Starts the pull of the tables' values, for forward(values=...)
        (or gives the one prefetch() started)."""
        if self._ahead:
            return self._ahead.pop()
        return self.worker.pull_dense_async(self.tables)

    def forward(self, values=None, shapes=None):
        """`values`: the tables' values if already pulled, or their pull_async() future."""
        values = _rows(values) if values is not None else self.worker.pull_dense_async(self.tables).result()
        parts, counts = self._cut(shapes)
        worker, tables = self.worker, self.tables
        tensors = _server_tensors(values, parts, lambda flat: worker.push_dense(tables, flat))
        groups, at = [], 0
        for n in counts:
            groups.append(tensors[at:at + n])
            at += n
        return groups

    def _cut(self, shapes):
        """The parts of the tables cut into `shapes` (per table), and how many each table has."""
        key = None if shapes is None else tuple(tuple(tuple(shape) for shape in s) for s in shapes)
        if key in self._cuts:
            return self._cuts[key]
        if shapes is None:
            per_table = [[(size,)] for _, size in self._layout]
        else:
            per_table = [list(s) for s in shapes]
            if len(per_table) != len(self.tables):
                raise ValueError(f"shapes for {len(per_table)} tables, but these are {len(self.tables)}")
        parts = []
        for name, (offset, size), table_shapes in zip(self.tables, self._layout, per_table):
            if sum(math.prod(s) for s in table_shapes) > size:
                raise ValueError(f"table '{name}' holds {size} values, fewer than shapes {table_shapes}")
            parts += _layout(table_shapes, offset)
        cut = self._cuts[key] = (parts, [len(s) for s in per_table])
        return cut


class DenseTable(DenseTables):
    """A dense table's values for this step (pulled on each forward, their
    gradient pushed by backward): a layer's weights on the servers.
    forward() gives the table as one flat tensor; forward(shapes=[...]) gives
    it cut into tensors of those shapes, in order, e.g. W then b:

        w, b = table(shapes=[(fan_in, units), (units,)])

    Several tables used each step: DenseTables, one call for all.
    """

    def __init__(self, worker, table):
        super().__init__(worker, [table])
        self.table = table
        self.size = worker.table(table)["size"]

    def forward(self, values=None, shapes=None):
        """`values`: the table's values if already pulled, or their pull_async() future."""
        parts = super().forward(values, None if shapes is None else [shapes])[0]
        return parts if shapes is not None else parts[0]


class AllReduce:
    """Dense parameters kept in PyTorch, trained by a PyTorch optimizer on
    the gradients averaged over every Python worker of the job, each step,
    with torch.distributed (gloo), as DistributedDataParallel does:

        sync = sparta.torch.AllReduce(worker, model.mlp.parameters(), torch.optim.Adam(...))
        for batch in sync.batches():     # worker.batches(), in step with the other workers
            loss = ...; loss.backward()  # sparse tables: pushed to the servers as usual
            sync.step()                  # averages the gradients, steps the optimizer, zeroes them

    Every worker starts from worker 0's values (broadcast). Workers' shares
    of the input may differ by a batch or so: one that runs out goes on
    taking part, with no gradient of its own, until every worker is done,
    so that all apply the same updates. The group meets at MASTER_ADDR and
    MASTER_PORT (the launcher sets them for --worker-command), with
    cluster.workers members; it cannot follow workers joining or leaving
    (data.assignment on_demand). The parameters and the optimizer's state
    are in the job's checkpoints (worker 0 writes them, as CHECKPOINT_FILE,
    at the cut, when every worker holds the same values), and a job that
    resumes from one starts from them.
    """

    CHECKPOINT_FILE = "torch-allreduce.pt"

    def __init__(self, worker, parameters, optimizer, timeout_seconds=None):
        import datetime
        import torch.distributed as dist
        self.worker, self.optimizer, self.dist = worker, optimizer, dist
        self.parameters = [p for p in parameters]
        self.size = worker.config["cluster.workers"]
        # A group made here is destroyed here (close()); one the caller made is theirs.
        self._owns_group = not dist.is_initialized()
        if self._owns_group:
            # A worker that died leaves the others waiting in a collective:
            # they give up after the job's heartbeat timeout, by then failed.
            timeout = timeout_seconds or max(60.0, 4 * worker.config["cluster.heartbeat_timeout"])
            dist.init_process_group("gloo", rank=worker.rank, world_size=self.size,
                                    timeout=datetime.timedelta(seconds=timeout))
            # Also on the way out of a failed job: see close().
            atexit.register(self.close)
        if worker.restored_from:
            self._restore(os.path.join(worker.restored_from, self.CHECKPOINT_FILE))
        with torch.no_grad():
            for p in self.parameters:
                dist.broadcast(p, 0)
        if worker.rank == 0:
            worker.on_checkpoint(self._save)
        self._contributors = 1

    def _save(self, folder):
        # Written whole, then renamed: the checkpoint is published only
        # after this returns, but a torn file must never look complete.
        path = os.path.join(folder, self.CHECKPOINT_FILE)
        torch.save({"parameters": [p.detach().clone() for p in self.parameters],
                    "optimizer": self.optimizer.state_dict()}, path + ".tmp")
        os.replace(path + ".tmp", path)

    def _restore(self, path):
        if not os.path.exists(path):
            raise SpartaError(f"{path}: the checkpoint holds no PyTorch parameters of sparta.torch.AllReduce "
                              "(it was taken by a job that kept them elsewhere)")
        state = torch.load(path)
        if len(state["parameters"]) != len(self.parameters) or any(
                saved.shape != p.shape for saved, p in zip(state["parameters"], self.parameters)):
            raise SpartaError(f"{path}: its parameters' shapes are not this model's")
        with torch.no_grad():
            for saved, p in zip(state["parameters"], self.parameters):
                p.copy_(saved)
        self.optimizer.load_state_dict(state["optimizer"])

    def batches(self):
        mine = self.worker.batches()
        while True:
            batch = next(mine, None)
            have = torch.tensor([0.0 if batch is None else 1.0])
            self.dist.all_reduce(have)
            self._contributors = int(have.item())
            if self._contributors == 0:
                self.close()
                return
            if batch is not None:
                yield batch
            else:  # out of input: this round's update, with nothing of its own
                self.optimizer.zero_grad(set_to_none=False)
                for p in self.parameters:
                    if p.grad is None:
                        p.grad = torch.zeros_like(p)
                self.step()

    def close(self):
        """Destroys the process group this AllReduce made, if it made one;
        batches() calls it when every worker is done. Gloo's threads drop
        their last reference to a collective's tensors just after the
        caller's wait returns; left until the interpreter shuts down, that
        drop can come once Python is finalizing, and the thread, asking for
        the GIL, is ended mid-C++ and aborts the process (SIGABRT,
        "terminate called without an active exception") after a job that
        succeeded. Destroying the group joins those threads first."""
        if self._owns_group and self.dist.is_initialized():
            self.dist.destroy_process_group()
        self._owns_group = False

    def step(self):
        """Averages the gradients over the workers that had a batch this round, then steps."""
        for p in self.parameters:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        flat = torch.cat([p.grad.reshape(-1) for p in self.parameters])
        self.dist.all_reduce(flat)
        flat /= self._contributors
        offset = 0
        for p in self.parameters:
            n = p.numel()
            p.grad.copy_(flat[offset:offset + n].view_as(p.grad))
            offset += n
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=False)
