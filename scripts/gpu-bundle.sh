#!/usr/bin/env bash
# Builds Sparta with the CUDA backend and writes DIR: a self-contained bundle
# of the GPU checks for a machine that has a GPU, CUDA 13 and Python but none
# of Sparta's Debian libraries, and cannot install any. DIR holds
#   bin/                the daemons, sparta-ctl, sparta-datagen, sparta_cuda_tests
#                       and sparta-gpu-bench, stripped, and the CUDA backend's
#                       module (libsparta_cuda.so), which they load from there
#   lib.tar.xz          every shared library they load that such a machine
#                       lacks (from ldd: all but glibc, libstdc++, libgcc_s and
#                       CUDA's own), packed; unpacked on the first run
#   data/               a generated Criteo-like data set (xz)
#   scripts/, configs/, tests/   the launcher, the PyTorch reference, the
#                       backend test and the GPU benchmark drivers
#   run-gpu-checks.sh   the one command to run there: run-gpu-checks.sh RESULTS_DIR
# and stays under 48 MiB, so that it travels with a working tree (64 MiB).
#
#   scripts/gpu-bundle.sh DIR
#
# SPARTA_GPU_BUILD names the build folder (default build-gpu: Release, SPARTA_CUDA=ON,
# CUDA architectures $SPARTA_CUDA_ARCH, default 90 = Hopper); a folder already
# configured with the CUDA backend (build/, say) is used as it is.
# SPARTA_GPU_ROWS sets the training rows of the data set (default 300000; the
# test set is a tenth of it).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: scripts/gpu-bundle.sh DIR}
build=${SPARTA_GPU_BUILD:-build-gpu}
rows=${SPARTA_GPU_ROWS:-300000}
limit=$((48 * 1024 * 1024))
programs=(sparta-scheduler sparta-server sparta-worker sparta-ctl sparta-datagen sparta_cuda_tests sparta-gpu-bench)
modules=(libsparta_cuda.so)  # built by the target sparta_cuda, loaded by the programs beside them
# The machine provides these: glibc, the C++ runtime, and CUDA's libraries
# (the driver's, the runtime and cuBLAS, whose 600 MB would not travel). One
# list, in the checks that verify it.
system_libs=$(cd tests/bench && PYTHONDONTWRITEBYTECODE=1 python3 -c 'import gpu_checks; print(gpu_checks.SYSTEM_LIBRARY.pattern)')

scripts/install-deps.sh
if [[ ! -f $build/build.ninja ]]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSPARTA_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES="${SPARTA_CUDA_ARCH:-90}"
fi
if ! cmake --build "$build" --target help | grep -q sparta_cuda_tests; then
  echo "gpu-bundle: $build has no CUDA backend (is nvcc at /usr/local/cuda/bin?)" >&2
  exit 1
fi
jobs=$(( $(nproc) < 2 ? $(nproc) : 2 ))
cmake --build "$build" -j "$jobs" --target "${programs[@]}" sparta_cuda

rm -rf "$out"
mkdir -p "$out"/{bin,data,configs,scripts/bench,tests/integration,tests/bench}
staging=$(mktemp -d)
trap 'rm -rf "$staging"' EXIT
for p in "${programs[@]}" "${modules[@]}"; do
  install -m 755 "$build/bin/$p" "$out/bin/$p"
  strip --strip-unneeded "$out/bin/$p"
done
# Every library the programs load, found by the loader here, minus what the
# GPU machine provides; copied through symbolic links under the name the
# programs ask for (their soname).
for p in "${programs[@]}" "${modules[@]}"; do
  ldd "$build/bin/$p" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}'
done | sort -u | while read -r name path; do
  if [[ ! $name =~ $system_libs ]]; then
    cp -L "$path" "$staging/$name"
  fi
done
strip --strip-unneeded "$staging"/* 2>/dev/null || true
ls "$staging" > "$out/lib.manifest"
tar -C "$staging" -cf - . | xz -T0 -6 > "$out/lib.tar.xz"
rm -f "$staging"/*

install -m 755 scripts/sparta "$out/scripts/sparta"
install -m 755 scripts/bench/torch_ctr.py "$out/scripts/bench/torch_ctr.py"
cp configs/quickstart.yaml "$out/configs/"
cp tests/integration/harness.py tests/integration/test_backends.py "$out/tests/integration/"
install -m 755 tests/bench/gpu_checks.py tests/bench/gpu_models_bench.py tests/bench/models_bench.py "$out/tests/bench/"
install -m 755 scripts/gpu/run-gpu-checks.sh "$out/run-gpu-checks.sh"

# The data set scripts/bench.sh trains on, smaller.
"$build/bin/sparta-datagen" --train-rows "$rows" --test-rows "$((rows / 10))" --interaction 1.5 --max-vocab 20000 \
  --train "$staging/train.txt" --test "$staging/test.txt" > /dev/null
xz -T0 -6 -c "$staging/train.txt" > "$out/data/train.txt.xz"
xz -T0 -6 -c "$staging/test.txt" > "$out/data/test.txt.xz"

size=$(du -sb "$out" | cut -f1)
if (( size > limit )); then
  echo "gpu-bundle: $out is $((size / 1024 / 1024)) MiB, over the 48 MiB a bundle may take" >&2
  exit 1
fi
echo "gpu-bundle: $out ($((size / 1024 / 1024)) MiB, $(wc -l < "$out/lib.manifest") libraries); run there: $out/run-gpu-checks.sh RESULTS_DIR"
