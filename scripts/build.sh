#!/usr/bin/env bash
# Configures (once) and builds Sparta into build/. Extra arguments are build
# targets (default: everything).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ! -f build/build.ninja ]]; then
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo ${SPARTA_CMAKE_ARGS:-}
fi
jobs=$(( $(nproc) < 2 ? $(nproc) : 2 ))
if [[ $# -gt 0 ]]; then
  cmake --build build -j "$jobs" --target "$@"
else
  cmake --build build -j "$jobs"
fi
