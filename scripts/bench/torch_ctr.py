#!/usr/bin/python3
"""The PyTorch reference for Sparta's built-in models (lr, fm, dnn), written
plainly: EmbeddingBag/Embedding with sparse gradients and Adagrad for the
embedding tables, Adam for the dense parameters, batch 4096, 2 CPU threads.

It reads the same Criteo-format files as Sparta, with the same features
(integer columns bucketized to floor(ln(v)^2) for v > 2, plus log1p(v) as
dense inputs; empty columns are missing), the same initializers and the same
optimizer settings, trains one pass, and prints one JSON line per model:
examples/s of the training loop (parsing and batching are done before the
clock starts, in PyTorch's favour) and the test AUC.

  /usr/bin/python3 scripts/bench/torch_ctr.py --train T --test T [--models lr,fm,dnn]

Debian's python3-torch provides torch (scripts/bench.sh installs it).
"""

import argparse
import json
import math
import sys
import time

import numpy as np
import torch
import torch.nn as nn

INT_FIELDS, CAT_FIELDS = 13, 26
FIELDS = INT_FIELDS + CAT_FIELDS


def parse(path, vocab, grow):
    """Rows of `path` as (labels, per-field index matrix with -1 = missing, dense)."""
    labels, index, dense = [], [], []
    for line in open(path):
        cols = line.rstrip("\n").split("\t")
        if len(cols) != 1 + FIELDS:
            continue
        labels.append(float(cols[0]))
        row, d = [-1] * FIELDS, [0.0] * INT_FIELDS
        for f in range(FIELDS):
            v = cols[1 + f]
            if not v:
                continue
            if f < INT_FIELDS:
                n = int(v)
                token = n if n <= 2 else int(math.log(n) ** 2)
                d[f] = math.log1p(max(n, 0))
            else:
                token = v
            key = (f, token)
            i = vocab.get(key)
            if i is None and grow:
                i = vocab[key] = len(vocab)
            row[f] = -1 if i is None else i
        index.append(row)
        dense.append(d)
    return (torch.tensor(labels), torch.tensor(index, dtype=torch.int64), torch.tensor(dense))


def auc(scores, labels):
    order = np.argsort(scores, kind="mergesort")
    s, y = scores[order], labels[order]
    ranks = np.empty(len(s))
    i = 0
    while i < len(s):  # average ranks over ties
        j = i
        while j < len(s) and s[j] == s[i]:
            j += 1
        ranks[i:j] = (i + 1 + j) / 2
        i = j
    pos = y.sum()
    return float((ranks[y == 1].sum() - pos * (pos + 1) / 2) / (pos * (len(y) - pos)))


class Sparse(nn.Module):
    """The sparse inputs of a batch: every present (field, token) as a flat list."""

    @staticmethod
    def flatten(index):
        present = index >= 0
        flat = index[present]
        example = present.nonzero()[:, 0]
        return flat, example


class LR(nn.Module):
    def __init__(self, vocab):
        super().__init__()
        self.w = nn.EmbeddingBag(vocab, 1, mode="sum", sparse=True)
        nn.init.zeros_(self.w.weight)
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, index, dense):
        flat, example = Sparse.flatten(index)
        offsets = torch.searchsorted(example, torch.arange(index.shape[0]))
        return self.w(flat, offsets).squeeze(1) + self.bias


class FM(nn.Module):
    def __init__(self, vocab, k, scale):
        super().__init__()
        self.w = nn.Embedding(vocab, 1, sparse=True)
        self.v = nn.Embedding(vocab, k, sparse=True)
        nn.init.uniform_(self.w.weight, -scale, scale)
        nn.init.uniform_(self.v.weight, -scale, scale)
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, index, dense):
        flat, example = Sparse.flatten(index)
        b = index.shape[0]
        v = self.v(flat)
        linear = torch.zeros(b).index_add_(0, example, self.w(flat).squeeze(1))
        s = torch.zeros(b, v.shape[1]).index_add_(0, example, v)
        sq = torch.zeros(b, v.shape[1]).index_add_(0, example, v * v)
        return self.bias + linear + 0.5 * (s * s - sq).sum(1)


def mlp(sizes, last_relu):
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2 or last_relu:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class DNN(nn.Module):
    """Wide term + per-field embeddings, bottom MLP over dense, top MLP (as Sparta's dnn)."""

    def __init__(self, vocab, k, scale, bottom, top):
        super().__init__()
        self.vocab = vocab
        self.w = nn.Embedding(vocab + 1, 1, sparse=True, padding_idx=vocab)
        self.v = nn.Embedding(vocab + 1, k, sparse=True, padding_idx=vocab)
        with torch.no_grad():
            nn.init.uniform_(self.w.weight, -scale, scale)
            nn.init.uniform_(self.v.weight, -scale, scale)
            self.w.weight[vocab].zero_()
            self.v.weight[vocab].zero_()
        self.bottom = mlp([INT_FIELDS] + bottom, last_relu=True)
        self.top = mlp([FIELDS * k + bottom[-1]] + top + [1], last_relu=False)

    def forward(self, index, dense):
        idx = torch.where(index >= 0, index, torch.full_like(index, self.vocab))
        wide = self.w(idx).sum((1, 2))
        e = self.v(idx).flatten(1)
        return wide + self.top(torch.cat([e, self.bottom(dense)], 1)).squeeze(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--models", default="lr,fm,dnn")
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sparse-lr", type=float, default=0.05)
    ap.add_argument("--initial-accumulator", type=float, default=0.1)
    ap.add_argument("--dense-lr", type=float, default=0.001)
    ap.add_argument("--embedding-dim", type=int, default=8)
    ap.add_argument("--init-scale", type=float, default=0.01)
    ap.add_argument("--bottom", default="32,8")
    ap.add_argument("--top", default="128,64")
    ap.add_argument("--seeds", default="2024",
                    help="initializer seeds (Sparta: model.seed): each model is trained once per seed; "
                         "the fastest run's examples/s and the mean AUC are reported")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    vocab = {}
    t0 = time.time()
    train = parse(args.train, vocab, grow=True)
    test = parse(args.test, vocab, grow=False)
    print(f"parsed {len(train[0])} train and {len(test[0])} test rows, {len(vocab)} keys, "
          f"in {time.time() - t0:.1f} s", file=sys.stderr)
    batches = [(train[0][i:i + args.batch], train[1][i:i + args.batch], train[2][i:i + args.batch])
               for i in range(0, len(train[0]), args.batch)]
    bottom = [int(x) for x in args.bottom.split(",")]
    top = [int(x) for x in args.top.split(",")]

    for name in args.models.split(","):
        runs = [train_one(name, args, vocab, batches, test, bottom, top, int(seed)) for seed in args.seeds.split(",")]
        best = max(runs, key=lambda r: r["examples_per_sec"])
        best["aucs"] = [r["auc"] for r in runs]
        best["auc"] = sum(best["aucs"]) / len(runs)
        print(json.dumps(best), flush=True)


def train_one(name, args, vocab, batches, test, bottom, top, seed):
    torch.manual_seed(seed)
    n = sum(len(b[0]) for b in batches)
    if name == "lr":
        model = LR(len(vocab))
    elif name == "fm":
        model = FM(len(vocab), args.embedding_dim, args.init_scale)
    else:
        model = DNN(len(vocab), args.embedding_dim, args.init_scale, bottom, top)
    sparse = [p for m in model.modules() if isinstance(m, (nn.Embedding, nn.EmbeddingBag)) for p in m.parameters()]
    dense = [p for p in model.parameters() if all(p is not q for q in sparse)]
    opt_sparse = torch.optim.Adagrad(sparse, lr=args.sparse_lr, initial_accumulator_value=args.initial_accumulator)
    opt_dense = torch.optim.Adam(dense, lr=args.dense_lr)
    loss_fn = nn.BCEWithLogitsLoss(reduction="sum")  # Sparta's gradients are of the summed loss too
    start = time.time()
    for y, index, d in batches:
        opt_sparse.zero_grad()
        opt_dense.zero_grad()
        loss = loss_fn(model(index, d), y)
        loss.backward()
        opt_sparse.step()
        opt_dense.step()
    seconds = time.time() - start
    with torch.no_grad():
        scores = torch.cat([torch.sigmoid(model(test[1][i:i + 65536], test[2][i:i + 65536]))
                            for i in range(0, len(test[0]), 65536)]).numpy()
    return {"model": name, "examples": n, "seconds": seconds, "examples_per_sec": n / seconds,
            "auc": auc(scores.astype(np.float64), test[0].numpy()), "threads": args.threads,
            "batch": args.batch}


if __name__ == "__main__":
    main()
