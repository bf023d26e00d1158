#!/usr/bin/env python3
"""Logistic regression in NumPy on Sparta's parameter servers: the model of
the built-in `lr` (worker/models/lr_model.cc), written as a Python worker.

    scripts/sparta launch configs/quickstart.yaml --set model.name=lr \\
        --worker-command 'python3 worker/sdk/python_examples/logistic_regression.py'

The launcher runs this file once per worker with sparta-worker's arguments;
sparta.Worker(None, ...) reads them, joins the job and hands out this
worker's batches. The weights live on the servers, which apply the job's
optimizer to the gradients pushed here.

    p = sigmoid(b + sum_i w[key_i] * x_i)
"""

import numpy as np

import sparta


def logits(batch, w, b):
    """b + sum of w[key] * value per example; `w` holds the rows of batch.unique_keys."""
    example = np.repeat(np.arange(batch.size), np.diff(batch.offsets))
    return b + np.bincount(example, weights=w[batch.slots] * batch.values, minlength=batch.size)


def main():
    tables = [sparta.Sparse("lr.w", dim=1), sparta.Dense("lr.bias", size=1)]
    with sparta.Worker(None, tables) as worker:
        for batch in worker.batches():
            w = worker.pull("lr.w", batch.unique_keys)[:, 0].astype(np.float64)
            b = float(worker.pull("lr.bias")[0])
            p = 1 / (1 + np.exp(-logits(batch, w, b)))
            y = batch.labels
            d = p - y  # d(logloss)/d(logit), per example
            example = np.repeat(np.arange(batch.size), np.diff(batch.offsets))
            grad_w = np.bincount(batch.slots, weights=d[example] * batch.values, minlength=len(batch.unique_keys))
            worker.push("lr.w", batch.unique_keys, grad_w)
            worker.push("lr.bias", None, [d.sum()])
            eps = 1e-7
            worker.record_loss(-np.sum(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps)))
        probs, labels = [], []
        if worker.evaluates:
            for batch in worker.test_batches():
                w = worker.pull("lr.w", batch.unique_keys)[:, 0].astype(np.float64)
                b = float(worker.pull("lr.bias")[0])
                probs.append(1 / (1 + np.exp(-logits(batch, w, b))))
                labels.append(batch.labels)
        worker.finish(np.concatenate(probs), np.concatenate(labels)) if probs else worker.finish()


if __name__ == "__main__":
    main()
