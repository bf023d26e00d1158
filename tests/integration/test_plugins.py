"""The plugin SDK end to end: install Sparta into a temporary prefix, build
the example plugin (worker/sdk/example) against it with a separate CMake
project, train it on a small cluster, and check that a plugin of another ABI
version, or a library that is not a plugin, is refused with a clear message."""

import os
import subprocess
import textwrap

from harness import ROOT, ClusterTest, datagen, launch, read, summary, write_config

BUILD = os.environ.get("SPARTA_BUILD", os.path.join(ROOT, "build"))


def criteo_to_csv(src, dst):
    """The example reader's format: label, the 26 categorical columns, then the 13 integers as tokens."""
    with open(src) as f, open(dst, "w") as out:
        for line in f:
            cols = line.rstrip("\n").split("\t")
            out.write(",".join([cols[0]] + cols[14:] + cols[1:14]) + "\n")


class PluginTest(ClusterTest):
    def setUp(self):
        super().setUp()
        self.prefix = os.path.join(self.dir, "prefix")
        subprocess.run(["cmake", "--install", BUILD, "--prefix", self.prefix], check=True,
                       stdout=subprocess.DEVNULL)

    def logs(self, run_dir):
        return "".join(read(os.path.join(run_dir, f)) for f in sorted(os.listdir(run_dir)) if f.endswith(".log"))

    def test_example_plugin_builds_out_of_tree_and_trains(self):
        # The installed package is all the example sees: a separate CMake project.
        self.assertTrue(os.path.exists(os.path.join(self.prefix, "include", "sparta", "sdk", "plugin.h")))
        build = os.path.join(self.dir, "example-build")
        subprocess.run(["cmake", "-S", os.path.join(ROOT, "worker", "sdk", "example"), "-B", build, "-G", "Ninja",
                        f"-DCMAKE_PREFIX_PATH={self.prefix}", "-DCMAKE_BUILD_TYPE=Release"],
                       check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["cmake", "--build", build], check=True, stdout=subprocess.DEVNULL)
        plugin = os.path.join(build, "libsparta_example.so")
        self.assertTrue(os.path.exists(plugin))

        data = datagen(self.dir, 100000, 20000, seed=3, interaction=1.5, max_vocab=5000)
        csv = {k: data[k] + ".csv" for k in ("train", "test")}
        for k in csv:
            criteo_to_csv(data[k], csv[k])
        # The reference: the built-in lr on the same rows in Criteo form.
        lr_config = write_config(self.dir, "lr.yaml", cluster={"servers": 2, "workers": 2},
                                 data={"train": data["train"], "test": data["test"], "batch_size": 1024},
                                 model={"name": "lr"}, optimizer={"name": "adagrad", "learning_rate": 0.1})
        result = launch(lr_config, self.run_dir("lr"))
        self.assertEqual(result.returncode, 0, result.stderr)
        config = write_config(
            self.dir, "plugin.yaml", cluster={"servers": 2, "workers": 2},
            data={"train": csv["train"], "test": csv["test"], "batch_size": 1024, "plugin": plugin,
                  "options": {"columns": 39, "crosses": 6}},
            model={"plugin": plugin, "options": {"l2": 0.0}},
            optimizer={"name": "adagrad", "learning_rate": 0.1})
        result = launch(config, self.run_dir("plugin"))
        self.assertEqual(result.returncode, 0, result.stderr + self.logs(self.run_dir("plugin")))
        lr, plugin_auc = summary(self.run_dir("lr"))["auc"], summary(self.run_dir("plugin"))["auc"]
        print(f"\nbuilt-in lr AUC {lr:.5f}, example plugin (lr + crosses of 6 columns) AUC {plugin_auc:.5f}")
        self.assertIn("example_cross_lr", self.logs(self.run_dir("plugin")))
        # The generator's interactions are among the first 6 categorical fields, which the
        # plugin crosses: a linear model over the crosses must beat one without them.
        self.assertGreater(plugin_auc, lr + 0.005)

        # A bad record in the plugin's format is counted with file and line, as for built-in readers.
        with open(csv["train"], "a") as f:
            f.write("1,only,three\n")
        result = launch(config, self.run_dir("bad-line"))
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn(f"{csv['train']}:100001: skipped malformed line: expected a label and 39 columns",
                      self.logs(self.run_dir("bad-line")))

    def compile_library(self, name, source):
        src = os.path.join(self.dir, name + ".cc")
        with open(src, "w") as f:
            f.write(textwrap.dedent(source))
        lib = os.path.join(self.dir, "lib" + name + ".so")
        subprocess.run(["g++", "-std=c++20", "-shared", "-fPIC", "-I", os.path.join(self.prefix, "include"),
                        src, "-o", lib], check=True)
        return lib

    def test_bad_plugins_are_refused_with_their_reason(self):
        """Another ABI version, no entry point, a missing file, a factory that throws."""
        data = datagen(self.dir, 2000, 200, seed=4)
        stale = self.compile_library("stale", """
            #include "sparta/sdk/plugin.h"
            extern "C" const sparta::PluginInfo* sparta_plugin() {
              static const sparta::PluginInfo info{1, "stale", nullptr, nullptr};  // ABI 1: before ComputeOn
              return &info;
            }
        """)
        plain = self.compile_library("plain", "extern \"C\" int not_a_plugin() { return 1; }\n")
        throwing = self.compile_library("throwing", """
            #include <stdexcept>
            #include "sparta/sdk/plugin.h"
            sparta::Model* Boom(const sparta::ModelContext&, std::string*) { throw std::runtime_error("boom"); }
            SPARTA_PLUGIN("throwing", Boom, nullptr)
        """)
        cases = [(stale, "was built against Sparta SDK ABI version 1,"), (plain, "is not a Sparta plugin"),
                 (os.path.join(self.dir, "missing.so"), "cannot load plugin"),
                 (throwing, "model 'throwing': the model factory threw: boom")]
        for i, (lib, message) in enumerate(cases):
            config = write_config(self.dir, f"job{i}.yaml", data={"train": data["train"]},
                                  model={"name": "lr", "plugin": lib})
            result = launch(config, self.run_dir(f"refused{i}"), timeout=60)
            self.assertNotEqual(result.returncode, 0)
            output = result.stderr + self.logs(self.run_dir(f"refused{i}"))
            self.assertIn(message, output)
            self.assertNotIn("signal", result.stderr)  # refused, not crashed
            # The message points at the key in the file.
            self.assertIn(f"job{i}.yaml:", output)
            self.assertIn("'model.plugin'", output)
