"""Malformed and oversized messages thrown at a live server and scheduler
are dropped and logged; the daemons keep serving and the training result is
bit-for-bit the one of an undisturbed run (1 worker + 1 server is
deterministic)."""

import os
import random
import unittest

from harness import ClusterTest, datagen, launch, pb_encode as header, read, summary, wait_for, write_config

try:
    import zmq
except ImportError:  # python3-zmq is installed by scripts/install-deps.sh --tests
    zmq = None


PULL, PUSH, CREATE_TABLE, HEARTBEAT, BARRIER = 21, 22, 20, 4, 5
REPLICATE, SHARD_SNAPSHOT = 24, 25


def hostile_messages(rng):
    yield [b"\xff\xfe garbage that is not a protobuf"]
    yield [header({1: PUSH, 6: 4, 7: 2}), b"k" * 31, b"v" * 32]          # keys frame too short
    yield [header({1: PUSH, 6: 1, 7: 1 << 30}), b"k" * 8, b""]            # absurd dim
    yield [header({1: PULL, 6: 10})]                                      # keys frame missing
    yield [header({1: PULL, 6: 1, 5: 999}), b"\x01" * 8]                  # unknown table
    yield [header({1: PUSH, 6: 1, 7: 1, 4: 77}), b"\x01" * 8, b"\x00" * 4]  # stale epoch
    yield [header({1: 99})]                                               # unknown type
    yield [header({1: HEARTBEAT})]                                        # from an unregistered peer
    yield [header({1: BARRIER})] + [b"x"] * 30                            # too many frames
    yield [header({1: CREATE_TABLE})]                                     # empty table spec
    # Replication traffic from a peer that is not a current primary: a
    # forward of epoch 0 (stale), snapshots with bad sizes, a stale epoch, and
    # a table spec that cannot be created. None may change a row.
    yield [header({1: REPLICATE, 6: 1, 7: 1, 18: 5}), b"\x01" * 8, b"\x00" * 4]
    yield [header({1: SHARD_SNAPSHOT, 6: 2, 7: 3}), b"k" * 16, b"v" * 4]
    yield [header({1: SHARD_SNAPSHOT, 6: 1, 7: 3}), b"\x01" * 8, b"\x00" * 12]
    yield [header({1: SHARD_SNAPSHOT, 4: 1000, 6: 1, 7: 3, 13: header({1: 0})}), b"\x01" * 8, b"\x00" * 12]
    # A legal but enormous table, then a pull whose reply would be 26 GB.
    wide = header({1: 77, 2: b"wide", 4: 65536, 7: header({1: 0, 2: 0.1})})
    yield [header({1: CREATE_TABLE, 13: wide})]
    yield [header({1: PULL, 4: 1, 5: 77, 6: 100000}), os.urandom(800000)]
    # A well-formed push cut short: every prefix of its header, and its
    # payload frames truncated at random points.
    push = [header({1: PUSH, 4: 1, 5: 0, 6: 4, 7: 8}), b"\x01" * 32, b"\x00" * 128]
    for cut in range(1, len(push[0])):
        yield [push[0][:cut]] + push[1:]
    for _ in range(10):
        yield [push[0], push[1][:rng.randint(0, 31)], push[2][:rng.randint(0, 127)]]
    for _ in range(50):
        yield [rng.randbytes(rng.randint(0, 64)) for _ in range(rng.randint(1, 4))]


@unittest.skipIf(zmq is None, "python3-zmq is not installed")
class HostileInputTest(ClusterTest):
    def test_garbage_is_dropped_and_training_is_unchanged(self):
        data = datagen(self.dir, 30000, 3000, seed=9)
        predictions = {}
        config = write_config(
            self.dir, data={"train": data["train"], "test": data["test"], "batch_size": 256, "epochs": 3},
            model={"name": "fm"}, optimizer={"name": "adagrad"},
            eval={"predictions_out": os.path.join(self.dir, "clean.txt")})
        result = launch(config, self.run_dir("clean"))
        self.assertEqual(result.returncode, 0, result.stderr)
        predictions["clean"] = read(os.path.join(self.dir, "clean.txt"))

        run = self.run_dir("attacked")
        out = os.path.join(self.dir, "attacked.txt")
        proc = launch(config, run, sets=[f"eval.predictions_out={out}"], wait=False)
        self.procs.append(proc)
        info = wait_for(lambda: read(os.path.join(run, "server-0.info.json")), 60, "the server to register")
        import json
        server_port = json.loads(info)["port"]
        scheduler_port = wait_for(
            lambda: next((d["ports"].get("control") for d in json.loads(read(os.path.join(run, "daemons.json")) or "[]")
                          if d["role"] == "scheduler"), None), 60, "daemons.json")
        context = zmq.Context()
        rng = random.Random(4)
        sent = 0
        for port in (server_port, scheduler_port):
            sock = context.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 1000)
            sock.connect(f"tcp://127.0.0.1:{port}")
            for frames in hostile_messages(rng):
                sock.send_multipart(frames)
                sent += 1
            # An oversized frame (over the daemon's per-frame cap would be
            # 4 GiB; here: a large but bounded junk frame) must not hurt either.
            sock.send_multipart([b"\x08\x16", os.urandom(8 << 20)])
            sock.close()
        context.term()
        _, err = proc.communicate(timeout=300)
        self.assertEqual(proc.returncode, 0, err)
        self.assertEqual(summary(run)["status"], "ok")
        # The garbage reached both daemons and was logged as dropped.
        self.assertIn("dropped", read(os.path.join(run, "server-0.log")))
        self.assertGreater(summary(run)["dropped_messages"], 0)
        self.assertEqual(read(out), predictions["clean"])


if __name__ == "__main__":
    unittest.main()
