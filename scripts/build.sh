#!/usr/bin/env bash
# Configures (once) and builds Sparta into build/. Extra arguments are build
# targets (default: everything).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ! -f build/build.ninja ]]; then
  # A unity build (16 sources a unit) parses the shared headers (Protobuf,
  # Abseil, RocksDB) once per unit instead of once per source: a fresh build
  # (CI's, a new user's) takes about a third of the time. Working on the
  # code, where one file changes at a time, SPARTA_CMAKE_ARGS=
  # -DCMAKE_UNITY_BUILD=OFF rebuilds less per change.
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_UNITY_BUILD=ON \
    -DCMAKE_UNITY_BUILD_BATCH_SIZE=16 ${SPARTA_CMAKE_ARGS:-}
fi
jobs=$(( $(nproc) < 2 ? $(nproc) : 2 ))
if [[ $# -gt 0 ]]; then
  cmake --build build -j "$jobs" --target "$@"
else
  cmake --build build -j "$jobs"
fi
