#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite with ctest:
# unit tests (Catch2) and integration tests that start the real daemons on
# loopback. Extra arguments go to ctest (e.g. -R cluster).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --tests
scripts/build.sh
# Integration tests each run a small cluster on both cores; run them one at a
# time so they do not starve each other's heartbeats.
ctest --test-dir build --output-on-failure --timeout 600 "$@"
