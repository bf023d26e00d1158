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
      [--seeds 1,2,3] [--init torch|sparta]

With --init sparta every embedding row and MLP layer starts from exactly the
values Sparta's servers draw for it (the same hash of seed, key and column),
so the two systems train the same model from the same start and their AUCs
can be compared run by run.

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
MASK = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


def mix64(x):
    """Sparta's 64-bit mixer (common/hash.h)."""
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & MASK
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & MASK
    return x ^ (x >> 31)


def sparta_key(field, token):
    """The key Sparta's Criteo reader gives (column, token); column is 1-based."""
    value = int(token, 16) if isinstance(token, str) else token & MASK
    return mix64(value ^ (((field + 1) * GOLDEN) & MASK))


def sparta_uniform(key, seed, columns, scale):
    """Sparta's initial row of `key` (server/initializer.h): U(-scale, scale) per column."""
    base = mix64(key ^ mix64(seed))
    return [(2 * ((mix64((base + (j + 1) * GOLDEN) & MASK) >> 11) * (1.0 / 9007199254740992.0)) - 1) * scale
            for j in range(columns)]


def features(cols, vocab, grow):
    """One line's columns (label first) as (per-field vocabulary index, -1 = missing; dense inputs)."""
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
    return row, d


def parse(path, vocab, grow):
    """Rows of `path` as (labels, per-field index matrix with -1 = missing, dense)."""
    labels, index, dense = [], [], []
    for line in open(path):
        cols = line.rstrip("\n").split("\t")
        if len(cols) != 1 + FIELDS:
            continue
        labels.append(float(cols[0]))
        row, d = features(cols, vocab, grow)
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


def sparta_rows(vocab, seed, columns, scale, rows):
    """Every vocabulary key's Sparta initial row, as a (rows x columns) tensor."""
    out = torch.zeros(rows, columns)
    for (field, token), i in vocab.items():
        out[i] = torch.tensor(sparta_uniform(sparta_key(field + 1, token), seed, columns, scale))
    return out


def sparta_linear(layer, seed, table):
    """A Linear layer initialized as Sparta's dense table `table` of that layer (W row-major, then b)."""
    fan_in, fan_out = layer.in_features, layer.out_features
    size = (fan_in + 1) * fan_out
    block = min(size, 16384)
    flat = []
    for b in range((size + block - 1) // block):
        flat += sparta_uniform(b, seed + table, block, 1.0 / math.sqrt(fan_in))
    flat = torch.tensor(flat[:size])
    with torch.no_grad():
        layer.weight.copy_(flat[:fan_in * fan_out].view(fan_in, fan_out).t())
        layer.bias.copy_(flat[fan_in * fan_out:])


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
        offsets = torch.searchsorted(example, torch.arange(index.shape[0], device=index.device))
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
        linear = torch.zeros(b, device=index.device).index_add_(0, example, self.w(flat).squeeze(1))
        s = torch.zeros(b, v.shape[1], device=index.device).index_add_(0, example, v)
        sq = torch.zeros(b, v.shape[1], device=index.device).index_add_(0, example, v * v)
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
    ap.add_argument("--device", default="cpu", help="cpu, or cuda to train on the GPU (batches copied in per step)")
    ap.add_argument("--sparse-lr", type=float, default=0.05)
    ap.add_argument("--initial-accumulator", type=float, default=0.1)
    ap.add_argument("--dense-lr", type=float, default=0.001)
    ap.add_argument("--embedding-dim", type=int, default=8)
    ap.add_argument("--init-scale", type=float, default=0.01)
    ap.add_argument("--bottom", default="32,8")
    ap.add_argument("--top", default="128,64")
    ap.add_argument("--init", choices=["torch", "sparta"], default="torch",
                    help="sparta: start from exactly Sparta's initial weights for each seed (and give test-only "
                         "keys their initial rows, as Sparta's servers do), so both train the same model")
    ap.add_argument("--seeds", default="2024",
                    help="initializer seeds (Sparta: model.seed): each model is trained once per seed; "
                         "the fastest run's examples/s and the mean AUC are reported")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    vocab = {}
    t0 = time.time()
    train = parse(args.train, vocab, grow=True)
    test = parse(args.test, vocab, grow=args.init == "sparta")
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


def init_like_sparta(model, name, vocab, seed, scale):
    """Sparta's tables: lr.w zeros; fm.wv and dnn.emb rows [w, v_1..v_k] ~ U(-scale, scale) by key;
    dnn layers as their dense tables (bottom ones first, table ids from 1)."""
    if name == "lr":
        return
    k = model.v.weight.shape[1]
    rows = sparta_rows(vocab, seed, k + 1, scale, model.v.weight.shape[0])
    with torch.no_grad():
        model.w.weight.copy_(rows[:, :1])
        model.v.weight.copy_(rows[:, 1:])
        if name == "dnn":
            model.w.weight[model.vocab].zero_()
            model.v.weight[model.vocab].zero_()
    if name == "dnn":
        layers = [m for m in model.bottom if isinstance(m, nn.Linear)] + [m for m in model.top if isinstance(m, nn.Linear)]
        for table, layer in enumerate(layers, start=1):
            sparta_linear(layer, seed, table)


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
    if args.init == "sparta":
        init_like_sparta(model, name, vocab, seed, args.init_scale)
    device = torch.device(args.device)
    model.to(device)
    if device.type == "cuda":
        # As Sparta's worker does: each batch crosses PCIe in its step, from pinned memory.
        batches = [tuple(t.pin_memory() for t in b) for b in batches]
    opt_sparse = torch.optim.Adagrad(sparse, lr=args.sparse_lr, initial_accumulator_value=args.initial_accumulator,
                                     eps=1e-8)
    opt_dense = torch.optim.Adam(dense, lr=args.dense_lr)
    loss_fn = nn.BCEWithLogitsLoss(reduction="sum")  # Sparta's gradients are of the summed loss too
    start = time.time()
    for batch in batches:
        y, index, d = (t.to(device, non_blocking=True) for t in batch)
        opt_sparse.zero_grad()
        opt_dense.zero_grad()
        loss = loss_fn(model(index, d), y)
        loss.backward()
        opt_sparse.step()
        opt_dense.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.time() - start
    with torch.no_grad():
        scores = torch.cat([torch.sigmoid(model(test[1][i:i + 65536].to(device), test[2][i:i + 65536].to(device)))
                            for i in range(0, len(test[0]), 65536)]).cpu().numpy()
    return {"model": name, "examples": n, "seconds": seconds, "examples_per_sec": n / seconds,
            "auc": auc(scores.astype(np.float64), test[0].numpy()), "threads": args.threads,
            "batch": args.batch, "device": args.device}


if __name__ == "__main__":
    main()
