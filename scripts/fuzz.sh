#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) into build-fuzz/ and
# runs each for a bounded time on its corpus in tests/fuzz/corpus/.
#   scripts/fuzz.sh [SECONDS_EACH] [--merge]
# SECONDS_EACH defaults to 60. New inputs that add coverage are kept in a
# scratch corpus; --merge folds them into tests/fuzz/corpus/ (to commit).
# A crash stops with a non-zero exit and leaves the input in build-fuzz/crashes/.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=60
merge=0
for arg in "$@"; do
  case "$arg" in
    --merge) merge=1 ;;
    *) seconds="$arg" ;;
  esac
done
scripts/install-deps.sh --tests
if [[ ! -f build-fuzz/build.ninja ]]; then
  CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DSPARTA_FUZZ=ON -DSPARTA_TESTS=OFF -DSPARTA_CUDA=OFF \
    -DCMAKE_UNITY_BUILD=ON -DCMAKE_UNITY_BUILD_BATCH_SIZE=16
fi
targets=(message config criteo libsvm)
cmake --build build-fuzz -j 2 --target "${targets[@]/%/_fuzzer}"
mkdir -p build-fuzz/crashes build-fuzz/report
# One target's run: a crash is reported and leaves a non-zero exit.
fuzz_one() {
  local t=$1 scratch="build-fuzz/corpus/$1" log="build-fuzz/report/$1.log" status=0
  mkdir -p "$scratch"
  if ! build-fuzz/bin/${t}_fuzzer -max_total_time="$seconds" -print_final_stats=1 -max_len=4096 \
       -artifact_prefix="build-fuzz/crashes/$t-" "$scratch" "tests/fuzz/corpus/$t" >"$log" 2>&1; then
    echo "fuzz: $t FOUND A CRASH; see $log and build-fuzz/crashes/" >&2
    tail -40 "$log" >&2
    status=1
  fi
  local runs cov
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo 0)
  echo "fuzz: $t: $runs executions in ${seconds} s, coverage $cov edges, corpus $(ls "$scratch" "tests/fuzz/corpus/$t" | wc -l) inputs"
  if [[ $merge -eq 1 ]]; then
    build-fuzz/bin/${t}_fuzzer -merge=1 "tests/fuzz/corpus/$t" "$scratch" >>"$log" 2>&1
  fi
  return $status
}
# A fuzzer runs on one core: as many at a time as there are cores, each for
# the whole of its time (on two cores, four targets take two rounds).
parallel=$(( $(nproc) < ${#targets[@]} ? $(nproc) : ${#targets[@]} ))
status=0
for (( i = 0; i < ${#targets[@]}; i += parallel )); do
  pids=()
  for t in "${targets[@]:i:parallel}"; do
    echo "fuzz: $t for ${seconds} s"
    fuzz_one "$t" &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do
    wait "$pid" || status=1
  done
done
exit $status
