#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite with ctest:
# unit tests (Catch2) and integration tests that start the real daemons on
# loopback. Extra arguments go to ctest (e.g. -R cluster).
#   scripts/test.sh --sanitize   the unit tests and a selection of the
#                                integration tests, built with AddressSanitizer
#                                and UndefinedBehaviorSanitizer into build-asan/
#                                (any report fails the test that caused it)
#   scripts/test.sh --tsan       the same with ThreadSanitizer, into build-tsan/
#                                (a data race fails the test)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --tests
# The suite built with a sanitizer (CMake option $2) into folder $1. Such a
# build registers every unit test and a selection of the integration tests
# (tests/CMakeLists.txt says which, and why). Reports abort the process, so
# the daemon (and its test) fails visibly.
sanitized_suite() {
  local dir=$1 option=$2
  shift 2
  if [[ ! -f $dir/build.ninja ]]; then
    # -O1: the sanitizers' usual level; builds twice as fast as -O3 on two cores.
    # -g1: the line tables a report's stack needs, without types and locals,
    # which took 40% of each compile (GCC 12 has no -gline-tables-only).
    # A unity build (16 sources a unit) parses the shared headers (Protobuf,
    # Abseil, RocksDB) once per unit instead of once per source: the build
    # takes a third of the time, and CI builds these trees from scratch.
    cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g1" \
      -DCMAKE_UNITY_BUILD=ON -DCMAKE_UNITY_BUILD_BATCH_SIZE=16 "-D$option=ON" -DSPARTA_CUDA=OFF
  fi
  cmake --build "$dir" -j "$(( $(nproc) < 2 ? $(nproc) : 2 ))"
  ctest --test-dir "$dir" --output-on-failure --timeout 900 "$@"
}
case "${1:-}" in
  --sanitize)
    shift
    export ASAN_OPTIONS="abort_on_error=1:detect_leaks=1:detect_stack_use_after_return=0"
    export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
    export LSAN_OPTIONS="suppressions=$PWD/tests/sanitize/lsan.supp:print_suppressions=0"
    sanitized_suite build-asan SPARTA_SANITIZE "$@"
    exit ;;
  --tsan)
    shift
    # Races inside libraries that are not instrumented (their own locks are
    # invisible to TSan) are suppressed by library; Sparta's never are.
    export TSAN_OPTIONS="halt_on_error=1:abort_on_error=1:second_deadlock_stack=1:suppressions=$PWD/tests/sanitize/tsan.supp"
    sanitized_suite build-tsan SPARTA_TSAN "$@"
    exit ;;
esac
scripts/build.sh
# Integration tests each run a small cluster on both cores; run them one at a
# time so they do not starve each other's heartbeats.
ctest --test-dir build --output-on-failure --timeout 600 "$@"
