#!/usr/bin/env bash
# Runs Sparta's GPU checks from the bundle this script sits in (written by
# scripts/gpu-bundle.sh) and writes RESULTS_DIR/gpu-checks.json and
# RESULTS_DIR/report.txt. The machine needs an NVIDIA driver, CUDA 13's
# runtime and cuBLAS, and a python3 (with PyTorch for the reference); the
# bundle brings every other library, and the Sparta programs load those from
# it through LD_LIBRARY_PATH (tests/bench/gpu_checks.py sets it). Without a
# GPU the GPU checks are reported as skipped, with the reason, and it exits 0.
# It finishes in under 6 minutes.
#
#   run-gpu-checks.sh RESULTS_DIR
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
results=${1:?usage: run-gpu-checks.sh RESULTS_DIR}
python=$(command -v python3) || { echo "run-gpu-checks: no python3 on this machine" >&2; exit 1; }
exec "$python" "$here/tests/bench/gpu_checks.py" "$here" "$results"
