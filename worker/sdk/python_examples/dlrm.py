#!/usr/bin/env python3
"""A DLRM-style network in PyTorch, trained by Python workers on Sparta's
parameter servers: the network of the built-in `dnn`
(worker/models/dnn_model.cc), with the same tables, so the same config
trains either one.

    scripts/sparta launch configs/quickstart.yaml --set model.name=dnn \\
        --worker-command 'python3 worker/sdk/python_examples/dlrm.py'

    wide  = sum_i x_i w[key_i]                    (a linear term per key)
    e_f   = sum_{i in field f} x_i v[key_i]       (one pooled embedding per field)
    b     = bottom MLP(dense features)            (ReLU layers)
    logit = wide + top MLP([e_1 .. e_F, b])       (ReLU hidden layers, linear output)

By default every parameter lives on the servers: the rows [w, v_1..v_k] of "dnn.emb"
(sparse, model.embedding_dim + 1 floats per key) and one dense table per
layer, W (in x out, row-major) then b (out). Forward pulls what the batch
needs, backward pushes the gradients, and the servers apply the optimizers:
optimizer.name to the embeddings, optimizer.dense_name to the layers (Adam
at 0.005 when it is not set, as for the built-in dnn). Each table starts as
the built-in's does (the same initializer and seed), so both begin from the
same weights.

With `--dense torch` the layers stay in PyTorch instead, trained by
torch.optim.Adam on the gradients averaged over the workers each step
(sparta.torch.AllReduce, gloo); only the embeddings are on the servers:

    scripts/sparta launch configs/quickstart.yaml --set model.name=dnn \
        --worker-command 'python3 worker/sdk/python_examples/dlrm.py --dense torch'
"""

import argparse

import math

import numpy as np
import torch

import sparta
import sparta.torch

# As the built-in dnn when optimizer.dense_name is not set (worker/model_tables.h).
DEFAULT_DENSE_OPTIMIZER, DEFAULT_DENSE_LEARNING_RATE = "adam", 0.005


def layer_shapes(config, num_fields, num_dense):
    """[(table name, in, out, relu)] of the bottom and the top MLP, in the built-in's order."""
    k = config["model.embedding_dim"]
    layers, width = [], num_dense
    if num_dense > 0:
        for i, units in enumerate(config["model.bottom_mlp"]):
            layers.append((f"dnn.bottom.{i}", width, units, True))
            width = units
    width = num_fields * k + (width if num_dense > 0 else 0)
    top = config["model.top_mlp"]
    for i, units in enumerate(top):
        layers.append((f"dnn.top.{i}", width, units, True))
        width = units
    layers.append((f"dnn.top.{len(top)}", width, 1, False))
    return layers


def tables(worker, dense_on_servers=True):
    c = worker.config
    dense_optimizer = c["optimizer.dense_name"] or DEFAULT_DENSE_OPTIMIZER
    dense_rate = c["optimizer.dense_learning_rate"]
    if dense_rate <= 0:
        dense_rate = DEFAULT_DENSE_LEARNING_RATE if not c["optimizer.dense_name"] else -1.0
    seed = c["model.seed"]
    out = [sparta.Sparse("dnn.emb", dim=c["model.embedding_dim"] + 1, initializer="uniform",
                         scale=c["model.init_scale"], seed=seed)]
    for t, (name, fan_in, units, _) in enumerate(layer_shapes(c, worker.num_fields, worker.num_dense), start=1):
        if not dense_on_servers:
            break
        out.append(sparta.Dense(name, size=(fan_in + 1) * units, initializer="uniform", scale=1 / math.sqrt(fan_in),
                                seed=seed + t, optimizer=dense_optimizer, learning_rate=dense_rate))
    return out


class TorchLayers(torch.nn.Module):
    """The layers' W (in x out, row-major) then b, each layer one flat
    PyTorch parameter (--dense torch), drawn from U(-1/sqrt(in), 1/sqrt(in))
    as the servers' tables are; called as sparta.torch.DenseTables is."""

    def __init__(self, shapes, seed):
        super().__init__()
        self.flat = torch.nn.ParameterList()
        for t, (_, fan_in, units, _) in enumerate(shapes, start=1):
            generator = torch.Generator().manual_seed(seed + t)
            self.flat.append(torch.nn.Parameter((torch.rand((fan_in + 1) * units, generator=generator) * 2 - 1)
                                                / math.sqrt(fan_in)))

    def pull_async(self):
        return None

    def prefetch(self):
        pass

    def forward(self, values=None, shapes=None):
        return [sparta.torch.split(flat, s) for flat, s in zip(self.flat, shapes)]


class DLRM(torch.nn.Module):
    def __init__(self, worker, dense_on_servers=True):
        super().__init__()
        self.fields, self.num_dense = worker.num_fields, worker.num_dense
        self.k = worker.config["model.embedding_dim"]
        self.embeddings = sparta.torch.EmbeddingBag(worker, "dnn.emb", num_fields=self.fields,
                                                     split=[1, self.k])  # a row: [w, v_1..v_k]
        self.shapes = layer_shapes(worker.config, self.fields, self.num_dense)
        self.cuts = [[(fan_in, units), (units,)] for _, fan_in, units, _ in self.shapes]  # W, b per layer
        # Every layer pulled, and pushed, in one call per step.
        self.layers = (sparta.torch.DenseTables(worker, [name for name, *_ in self.shapes]) if dense_on_servers
                       else TorchLayers(self.shapes, worker.config["model.seed"]))
        self.bottom = sum(name.startswith("dnn.bottom.") for name, *_ in self.shapes)

    def forward(self, batch):
        n = batch.size
        # Every pull of the step at once: one wait on the network, not one per table.
        rows = self.embeddings.pull_async(batch)
        values = self.layers.pull_async()  # None for layers kept in PyTorch
        wide, deep = self.embeddings(batch, rows)  # (n, fields, 1) and (n, fields, k)
        wide = wide.sum((1, 2))
        x = torch.from_numpy(batch.dense.copy()) if self.num_dense else None
        for i, ((w, b), (_, _, _, relu)) in enumerate(zip(self.layers(values, shapes=self.cuts), self.shapes)):
            if i == self.bottom:  # the top's input: [pooled embeddings per field, bottom output]
                top = deep.reshape(n, self.fields * self.k)
                x = top if x is None else torch.cat([top, x], 1)
            x = torch.addmm(b, x, w)
            if relu:
                x = torch.relu(x)
        return x[:, 0] + wide


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dense", choices=["servers", "torch"], default="servers",
                        help="where the MLP layers live (default: %(default)s)")
    options, _ = parser.parse_known_args()  # the rest: sparta-worker's arguments, for sparta.Worker
    on_servers = options.dense == "servers"
    torch.set_num_threads(1)  # one compute thread per worker, as sparta-worker has by default
    with sparta.Worker(None, lambda w: tables(w, on_servers)) as worker:
        model = DLRM(worker, on_servers)
        sync = None
        if not on_servers:
            c = worker.config
            rate = c["optimizer.dense_learning_rate"] if c["optimizer.dense_learning_rate"] > 0 \
                else DEFAULT_DENSE_LEARNING_RATE
            sync = sparta.torch.AllReduce(worker, model.layers.parameters(),
                                          torch.optim.Adam(model.layers.parameters(), lr=rate))
        for batch in (worker.batches() if sync is None else sync.batches()):
            # The next batch's rows that this step does not update start
            # coming now, while this step computes (asp only; else None).
            ahead = worker.peek()
            if ahead is not None:
                model.embeddings.prefetch(ahead)
            logits = model(batch)
            # The summed logloss: the gradient the servers' optimizers expect.
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                logits, torch.from_numpy(batch.labels.copy()), reduction="sum")
            loss.backward()
            if ahead is not None:
                # What the next step reads and this one updated starts
                # coming now (backward pushed it), during the step's tail.
                model.embeddings.prefetch_updated(ahead)
                model.layers.prefetch()
            if sync is not None:
                sync.step()
            worker.record_loss(loss.item())
        probs, labels = [], []
        with torch.no_grad():
            for batch in worker.test_batches():
                probs.append(torch.sigmoid(model(batch)).numpy())
                labels.append(batch.labels.copy())
        worker.finish(np.concatenate(probs), np.concatenate(labels)) if probs else worker.finish()


if __name__ == "__main__":
    main()
