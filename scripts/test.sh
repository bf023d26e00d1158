#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite with ctest:
# unit tests (Catch2) and integration tests that start the real daemons on
# loopback. Extra arguments go to ctest (e.g. -R cluster).
#   scripts/test.sh --sanitize   the same suite, built with AddressSanitizer and
#                                UndefinedBehaviorSanitizer into build-asan/
#                                (any report fails the test that caused it)
#   scripts/test.sh --tsan       the same suite, built with ThreadSanitizer
#                                into build-tsan/ (a data race fails the test)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --tests
if [[ "${1:-}" == "--sanitize" ]]; then
  shift
  if [[ ! -f build-asan/build.ninja ]]; then
    # -O1: the sanitizers' usual level; builds twice as fast as -O3 on two cores.
    cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g" \
      -DSPARTA_SANITIZE=ON -DSPARTA_CUDA=OFF
  fi
  cmake --build build-asan -j "$(( $(nproc) < 2 ? $(nproc) : 2 ))"
  # Reports abort the process, so the daemon (and its test) fails visibly.
  # The benchmark smoke test measures nothing under a sanitizer: left out.
  export ASAN_OPTIONS="abort_on_error=1:detect_leaks=1:detect_stack_use_after_return=0"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
  export LSAN_OPTIONS="suppressions=$PWD/tests/sanitize/lsan.supp:print_suppressions=0"
  ctest --test-dir build-asan --output-on-failure --timeout 900 -E '^bench\.' "$@"
  exit
fi
if [[ "${1:-}" == "--tsan" ]]; then
  shift
  if [[ ! -f build-tsan/build.ninja ]]; then
    cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g" \
      -DSPARTA_TSAN=ON -DSPARTA_CUDA=OFF
  fi
  cmake --build build-tsan -j "$(( $(nproc) < 2 ? $(nproc) : 2 ))"
  # Races in libraries that are not instrumented (their own locks are
  # invisible to TSan) are suppressed by library; Sparta's are not.
  export TSAN_OPTIONS="halt_on_error=1:abort_on_error=1:second_deadlock_stack=1:suppressions=$PWD/tests/sanitize/tsan.supp"
  ctest --test-dir build-tsan --output-on-failure --timeout 900 -E '^bench\.' "$@"
  exit
fi
scripts/build.sh
# Integration tests each run a small cluster on both cores; run them one at a
# time so they do not starve each other's heartbeats.
ctest --test-dir build --output-on-failure --timeout 600 "$@"
