"""Model quality against references: Sparta's lr against liblinear's exact
L2-regularized logistic regression on the same libsvm data, and fm and dnn
against lr on data whose ground truth has feature interactions (bounded above
by the Bayes-optimal AUC of the generator's true probabilities)."""

import os
import shutil
import subprocess
import unittest

from harness import ClusterTest, auc, datagen, labels_of, launch, read, summary, write_config


class QualityTest(ClusterTest):
    @unittest.skipIf(shutil.which("liblinear-train") is None, "liblinear-tools is not installed")
    def test_lr_matches_liblinear(self):
        data = datagen(self.dir, 200000, 20000, seed=1)
        # The reference: liblinear -s 0 (primal L2-LR, solved exactly), its best C of a small grid.
        best = 0.0
        for c in ("0.1", "0.3", "1"):
            model = os.path.join(self.dir, f"liblinear-{c}.model")
            out = os.path.join(self.dir, f"liblinear-{c}.txt")
            subprocess.run(["liblinear-train", "-s", "0", "-c", c, "-q", data["train_libsvm"], model], check=True)
            subprocess.run(["liblinear-predict", "-b", "1", data["test_libsvm"], model, out], check=True,
                           stdout=subprocess.DEVNULL)
            lines = read(out).splitlines()
            column = lines[0].split()[1:].index("1") + 1  # the P(label=1) column
            probs = [float(line.split()[column]) for line in lines[1:]]
            best = max(best, auc(probs, labels_of(data["test_libsvm"])))
        config = write_config(
            self.dir, cluster={"servers": 2, "workers": 2},
            data={"train": data["train_libsvm"], "test": data["test_libsvm"], "format": "libsvm",
                  "batch_size": 1024, "epochs": 2},
            model={"name": "lr"}, optimizer={"name": "ftrl", "learning_rate": 0.2})
        result = launch(config, self.run_dir())
        self.assertEqual(result.returncode, 0, result.stderr)
        sparta = summary(self.run_dir())["auc"]
        print(f"\nliblinear AUC {best:.5f}, sparta lr (ftrl, 2 epochs) AUC {sparta:.5f}")
        self.assertGreaterEqual(sparta, best - 0.005)
        # The same lr with adagrad is held to the same bar.
        result = launch(config, self.run_dir("adagrad"), sets=["optimizer.name=adagrad", "optimizer.learning_rate=0.1"])
        self.assertEqual(result.returncode, 0, result.stderr)
        adagrad = summary(self.run_dir("adagrad"))["auc"]
        print(f"sparta lr (adagrad, 2 epochs) AUC {adagrad:.5f}")
        self.assertGreaterEqual(adagrad, best - 0.005)

    def test_fm_and_dnn_beat_lr_on_interactions(self):
        data = datagen(self.dir, 300000, 30000, seed=5, interaction=1.5, max_vocab=10000)
        config = write_config(
            self.dir, data={"train": data["train"], "test": data["test"], "batch_size": 512, "epochs": 2},
            model={"name": "fm", "embedding_dim": 8}, optimizer={"name": "ftrl", "learning_rate": 0.05})
        result = launch(config, self.run_dir("fm"))
        self.assertEqual(result.returncode, 0, result.stderr)
        result = launch(config, self.run_dir("lr"), sets=["model.name=lr", "optimizer.learning_rate=0.2"])
        self.assertEqual(result.returncode, 0, result.stderr)
        # dnn as deep CTR models are trained: sparse Adagrad, dense Adam.
        result = launch(config, self.run_dir("dnn"), sets=[
            "model.name=dnn", "optimizer.name=adagrad", "optimizer.learning_rate=0.05",
            "optimizer.dense_name=adam", "optimizer.dense_learning_rate=0.001"])
        self.assertEqual(result.returncode, 0, result.stderr)
        fm, lr = summary(self.run_dir("fm"))["auc"], summary(self.run_dir("lr"))["auc"]
        dnn = summary(self.run_dir("dnn"))["auc"]
        bayes = auc([float(x) for x in read(data["truth"]).split()], labels_of(data["test"]))
        print(f"\nfm AUC {fm:.5f}, dnn AUC {dnn:.5f}, lr AUC {lr:.5f}, Bayes-optimal AUC {bayes:.5f}")
        self.assertGreaterEqual(fm, lr + 0.01)
        self.assertGreaterEqual(dnn, lr + 0.01)
        self.assertLess(fm, bayes)
        self.assertLess(dnn, bayes)


if __name__ == "__main__":
    unittest.main()
