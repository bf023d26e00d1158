#!/usr/bin/env bash
# Installs the Debian 12 packages Sparta needs, only those that are missing.
#   scripts/install-deps.sh           build + run (quickstart)
#   scripts/install-deps.sh --tests   also what the test suite uses
set -euo pipefail

packages=(build-essential cmake ninja-build pkg-config python3 xz-utils
  libzmq3-dev cppzmq-dev libprotobuf-dev protobuf-compiler librocksdb-dev libopenblas-dev
  libabsl-dev libyaml-cpp-dev libspdlog-dev libcli11-dev catch2 libcpp-httplib-dev zlib1g-dev
  pybind11-dev python3-dev python3-numpy)  # the last three: the Python module (sparta.Worker)
if [[ "${1:-}" == "--tests" ]]; then
  # liblinear: the quality reference; python3-zmq: hostile-input tests.
  # matplotlib: `sparta plot`; iproute2: network namespaces as hosts (ssh launcher test);
  # slurm-wlm + munge: the Slurm launcher test; clang: the fuzz targets (libFuzzer);
  # prometheus: a real Prometheus server scrapes a running job (test_operations);
  # etcd-server: the standby schedulers' etcd (test_standby); python3-torch: the PyTorch
  # DLRM example on Python workers (test_python_worker).
  packages+=(liblinear-tools python3-zmq python3-matplotlib python3-yaml iproute2 slurm-wlm munge clang libclang-rt-14-dev
             prometheus etcd-server etcd-client python3-torch)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "install-deps: installing ${missing[*]}"
sudo=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "install-deps: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600 "${missing[@]}"
