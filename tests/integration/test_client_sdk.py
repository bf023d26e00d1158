"""The SDK's C++ prediction client end to end: install Sparta into a
temporary prefix, build the client example (worker/sdk/client_example) against
it as a separate CMake project, and score a test file through sparta-serve
over HTTP and ZeroMQ at once; the predictions equal the worker's offline ones.
(Plain build only: a sanitized libsparta_client.so needs its sanitizer's
runtime loaded first, which a program built without it does not do.)"""

import os
import subprocess

from harness import ROOT, datagen, read
from test_serving import ServingCase, float_text

BUILD = os.environ.get("SPARTA_BUILD", os.path.join(ROOT, "build"))


class ClientSdkTest(ServingCase):
    def build_example(self):
        prefix = os.path.join(self.dir, "prefix")
        subprocess.run(["cmake", "--install", BUILD, "--prefix", prefix], check=True, stdout=subprocess.DEVNULL)
        # The installed package is all the example sees: its header shows
        # only the standard library.
        header = read(os.path.join(prefix, "include", "sparta", "client", "predict_client.h"))
        includes = [line.split()[1] for line in header.splitlines() if line.startswith("#include")]
        self.assertTrue(includes)
        self.assertEqual([i for i in includes if not (i.startswith("<") and "." not in i and "/" not in i)], [])
        build = os.path.join(self.dir, "client-build")
        subprocess.run(["cmake", "-S", os.path.join(ROOT, "worker", "sdk", "client_example"), "-B", build, "-G",
                        "Ninja", f"-DCMAKE_PREFIX_PATH={prefix}", "-DCMAKE_BUILD_TYPE=Release"],
                       check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["cmake", "--build", build], check=True, stdout=subprocess.DEVNULL)
        return os.path.join(build, "sparta_predict_lines")

    def test_the_example_client_scores_a_file_as_the_worker_did(self):
        program = self.build_example()
        data = datagen(self.dir, 10000, 1000, seed=31)
        config, offline = self.train("fm", data)
        _, http_url = self.serve(config)
        _, other_url = self.serve(config)
        urls = f"{http_url},{self.zmq_urls[other_url]}"  # one over HTTP, one over ZeroMQ

        def run(urls, stdin, *args):
            return subprocess.run([program, urls, "fm", *args], input=stdin, capture_output=True, text=True,
                                  timeout=300)

        result = run(urls, read(data["test"]), "7")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout.splitlines(), [float_text(p) for p in offline])
        # Both replicas answered some (least outstanding spreads them).
        self.assertGreater(self.answered(http_url), 0)
        self.assertGreater(self.answered(other_url), 0)
        # A bad line is the request's fault, said as the server says it.
        bad = run(urls, "1\tnot\ta\tcriteo\tline\n")
        self.assertEqual(bad.returncode, 1)
        self.assertIn("instances[0]", bad.stderr)
        # So is a URL that is not a replica's, before any request.
        wrong = run("ftp://127.0.0.1:1", "")
        self.assertEqual(wrong.returncode, 2)
        self.assertIn("http://HOST:PORT or tcp://HOST:PORT", wrong.stderr)


if __name__ == "__main__":
    import unittest
    unittest.main()
