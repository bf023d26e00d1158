"""A table ten times larger than server.memory_limit, with real daemons and
real RocksDB files: the job trains to the same model, bit for bit, as the
unbounded run, and the server's peak resident memory stays under the limit
plus the README's fixed overhead; the data generator draws 10^8-key Zipf
spaces in constant memory. (Left out of the sanitizer passes: their
shadow memory is most of a process's resident memory there.)"""

import collections
import os
import subprocess
import unittest

from harness import BIN, ClusterTest, datagen, read, run_with_predictions
from test_tiering import FIXED_OVERHEAD, MiB, checkpoint_rows, job_config, peak_mib, request_bytes, tier_line


class TableLargerThanMemoryTest(ClusterTest):
    def config(self, data, **overrides):
        return job_config(self, data, **overrides)

    def run_job(self, config, name, *sets):
        return run_with_predictions(self, config, name, *sets)

    def test_table_ten_times_the_limit_trains_to_the_same_model(self):
        # About 700k distinct keys of 66 floats (fm: 33 weights + Adagrad's
        # 33 accumulators): 180 MB of table against a 16 MiB limit.
        data = datagen(self.dir, 400000, 20000, seed=11, max_vocab=4000000)
        config = self.config(data)
        free, free_predictions, free_run = self.run_job(config, "unbounded")
        tiered, tiered_predictions, tiered_run = self.run_job(config, "tiered", "server.memory_limit=16MiB")

        self.assertEqual(len(tiered_predictions.splitlines()), 20000)
        self.assertEqual(tiered_predictions, free_predictions)  # bit for bit
        self.assertEqual(tiered["auc"], free["auc"])

        log = read(os.path.join(tiered_run, "server-0.log"))
        tier = tier_line(log, "fm.wv")
        self.assertIsNotNone(tier, log[-3000:])
        table_bytes = (tier["hot"] + tier["cold"]) * 66 * 4
        self.assertGreaterEqual(table_bytes, 10 * 16 * MiB)
        self.assertGreater(tier["cold"], 9 * tier["hot"])
        self.assertGreater(tier["promoted"], 0)
        # The final checkpoints hold the same rows: every trained row, hot or
        # cold (rows only ever pulled are their key's initial values, kept by
        # neither).
        self.assertEqual(checkpoint_rows(tiered_run), checkpoint_rows(free_run))
        bound = 16 * MiB + FIXED_OVERHEAD + request_bytes(512, 39, 32, 4)
        self.assertLessEqual(peak_mib(log) * MiB, bound, log[-2000:])
        # The same job unbounded needs several times that: the limit is what held it down.
        self.assertGreater(peak_mib(read(os.path.join(free_run, "server-0.log"))) * MiB, bound)


class DatagenTest(ClusterTest):
    def test_zipf_key_spaces_stream_in_bounded_memory(self):
        path = os.path.join(self.dir, "zipf.txt")
        generator = subprocess.Popen([os.path.join(BIN, "sparta-datagen"), "--train-rows", "200000", "--test-rows",
                                      "0", "--train", path, "--zipf", "1.1", "--vocab", "100000000"])
        _, status, usage = os.wait4(generator.pid, 0)
        generator.returncode = os.waitstatus_to_exitcode(status)
        self.assertEqual(generator.returncode, 0)
        # 10^8 tokens per field: nothing per token is kept (ru_maxrss: KiB).
        self.assertLess(usage.ru_maxrss, 64 * 1024)
        counts = collections.Counter()
        with open(path) as f:
            for line in f:
                token = line.rstrip("\n").split("\t")[14 + 10]  # field C11
                if token:
                    counts[token] += 1
        ranked = [n for _, n in counts.most_common()]
        self.assertEqual(len(next(iter(counts))), 16)  # 16 hex digits past 2^24 tokens
        # Zipf(1.1): frequency falls as rank^-1.1, so rank 1 is 10^1.1 = 12.6
        # times rank 10, and 2^1.1 = 2.14 times rank 2.
        self.assertAlmostEqual(ranked[0] / ranked[9], 10 ** 1.1, delta=0.15 * 10 ** 1.1)
        self.assertAlmostEqual(ranked[0] / ranked[1], 2 ** 1.1, delta=0.1 * 2 ** 1.1)
        # P(rank 1) = 1 / H(10^8, 1.1), H the generalized harmonic number
        # (its first 10^5 terms summed, the tail by its integral).
        harmonic = sum(k ** -1.1 for k in range(1, 100000)) + ((100000 - 0.5) ** -0.1 - (10 ** 8 + 0.5) ** -0.1) / 0.1
        present = sum(counts.values())
        self.assertAlmostEqual(ranked[0] / present, 1 / harmonic, delta=0.005)


if __name__ == "__main__":
    unittest.main()
