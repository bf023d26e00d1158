#!/usr/bin/python3
"""The PyTorch reference for sparta-serve: what a user would write instead.
Sparta's `dnn` (scripts/bench/torch_ctr.py's DNN, the same layers) trained
for one pass, behind Python's standard ThreadingHTTPServer, answering the
same route and body as sparta-serve:

  POST /v1/models/dnn:predict  {"instances": [CRITEO_LINE, ...]}
       -> {"predictions": [...], "model_version": 1}

Each request parses its lines as torch_ctr.py does (the vocabulary from the
training file) and runs the model under torch.no_grad(). Used by
tests/bench/serving_bench.py with sparta-serve-bench as the load.

  /usr/bin/python3 tests/bench/torch_serve.py --train T --port P [--threads N]
"""

import argparse
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts", "bench"))
import torch_ctr  # noqa: E402

FIELDS = torch_ctr.FIELDS


def parse_lines(lines, vocab):
    index, dense = [], []
    for line in lines:
        cols = line.rstrip("\n").split("\t")
        if len(cols) != 1 + FIELDS:
            raise ValueError(f"expected {1 + FIELDS} tab-separated fields, found {len(cols)}")
        row, d = torch_ctr.features(cols, vocab, grow=False)
        index.append(row)
        dense.append(d)
    return torch.tensor(index, dtype=torch.int64), torch.tensor(dense)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    vocab = {}
    labels, index, dense = torch_ctr.parse(args.train, vocab, grow=True)
    model = torch_ctr.DNN(len(vocab), 8, 0.01, [32, 8], [128, 64])
    optimizer = torch.optim.Adagrad(model.parameters(), lr=0.05)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    for start in range(0, len(labels), 512):
        end = start + 512
        optimizer.zero_grad()
        loss_fn(model(index[start:end], dense[start:end]), labels[start:end]).backward()
        optimizer.step()
    model.eval()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as sparta-serve-bench's connections expect

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            try:
                lines = json.loads(body)["instances"]
                idx, d = parse_lines(lines, vocab)
                with torch.no_grad():
                    probs = torch.sigmoid(model(idx, d)).tolist()
                status, answer = 200, {"predictions": probs, "model_version": 1}
            except (ValueError, KeyError, TypeError) as e:
                status, answer = 400, {"error": str(e)}
            out = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
