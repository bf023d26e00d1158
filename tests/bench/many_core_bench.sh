#!/usr/bin/env bash
# The CPU-bound targets of issues 15 and 16, measured on a machine with more
# cores than a job has busy threads (this VM has two, so there every figure
# below also measures the contention of a job's six or more threads):
#   1. the data plane against its limits (sparta-kv-bench, as scripts/bench.sh
#      runs it: 1 server with 1 executor, peers over ipc), then its dense
#      family again with 4 executors (a dense table's blocks spread over the
#      shards, so its Adagrad runs on four cores: what one executor cannot
#      reach, 0.36 of the one-way limit on 2026-12-04);
#   2. lr, 1 worker + 1 server, batch 512 against 4096 (1M generated rows, the
#      quickstart's settings), four alternating pairs (two read 0.61 and 0.90 on 2026-12-04:
#      not enough to tell);
#   3. fm at 10% of its table in DRAM against the unbounded run
#      (tests/bench/tiering_bench.py --speed-only on 1M examples).
# It runs from a GPU bundle (scripts/gpu-bundle.sh) that also carries
# bin/sparta-kv-bench and tests/bench/tiering_bench.py, on a machine that
# has none of Sparta's Debian libraries:
#   many_core_bench.sh BUNDLE_DIR OUT_DIR
# Each part writes its files into OUT_DIR as it ends, and has its own time
# limit, so that a machine lent for minutes returns what finished.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bundle=$(cd "${1:?usage: many_core_bench.sh BUNDLE_DIR OUT_DIR}" && pwd)
out=$(mkdir -p "${2:?usage: many_core_bench.sh BUNDLE_DIR OUT_DIR}" && cd "$2" && pwd)
if [[ ! -d $bundle/lib ]]; then
  mkdir -p "$bundle/lib" && tar -C "$bundle/lib" -xJf "$bundle/lib.tar.xz"
fi
export LD_LIBRARY_PATH=$bundle/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} SPARTA_BIN=$bundle/bin
bin=$bundle/bin
tmp=$(mktemp -d /tmp/sparta-many-core-XXXXXX)
trap 'pkill -P $$ 2>/dev/null; rm -rf "$tmp"' EXIT
{ nproc; grep -m1 "model name" /proc/cpuinfo; free -g | head -2; } > "$out/machine.txt"

# 1. The data plane, with its limits measured in the same run.
#   data_plane NAME EXECUTORS SECONDS [--only PREFIX]: a scheduler (on any
#   free port, named in its info file), one server with EXECUTORS executor
#   threads and sparta-kv-bench, into OUT_DIR/NAME.{json,txt}.
data_plane() {
  local name=$1 executors=$2 seconds=$3
  shift 3
  cat > "$tmp/$name.yaml" <<YAML
cluster: {scheduler: "127.0.0.1:0", servers: 1, workers: 1}
server: {threads: $executors}
data: {train: unused}
log: {level: warn}
YAML
  "$bin/sparta-scheduler" --config "$tmp/$name.yaml" --info-file "$tmp/$name.scheduler.json" \
    2>> "$tmp/scheduler.log" &
  local at
  at=$(python3 "$here/await_scheduler.py" "$tmp/$name.scheduler.json" $!)
  "$bin/sparta-server" --config "$tmp/$name.yaml" --set cluster.scheduler="$at" --rank 0 2>> "$tmp/server.log" &
  timeout "$seconds" "$bin/sparta-kv-bench" --config "$tmp/$name.yaml" --set cluster.scheduler="$at" "$@" \
    --json "$out/$name.json" > "$out/$name.txt" 2>&1
  echo "kv-bench rc $?" >> "$out/$name.txt"
  wait
}
data_plane kv 1 170
data_plane kv-dense-4-executors 4 120 --only dense_

# 2. lr at batch 512 against 4096, alternating.
"$bin/sparta-datagen" --train-rows 1000000 --test-rows 100000 --interaction 1.5 --max-vocab 20000 \
  --train "$tmp/train.txt" --test "$tmp/test.txt" > /dev/null
for pair in 1 2 3 4; do
  for batch in 4096 512; do
    run="$tmp/lr-$batch-$pair"
    timeout 60 python3 "$bundle/scripts/sparta" launch "$bundle/configs/quickstart.yaml" --quiet --run-dir "$run" \
      --set cluster.scheduler=127.0.0.1:0 --set cluster.servers=1 --set cluster.workers=1 --set model.name=lr \
      --set data.train="$tmp/train.txt" --set data.test="$tmp/test.txt" --set data.batch_size=$batch \
      --set data.epochs=1 > /dev/null 2>&1
    python3 -c "import json,sys; s=json.load(open(sys.argv[1])); print(sys.argv[2], sys.argv[3], s['examples_per_sec'])" \
      "$run/summary.json" "$pair" "$batch" >> "$out/lr.txt" 2>&1
  done
done

# 3. fm at 10% hot against unbounded.
timeout 240 python3 "$bundle/tests/bench/tiering_bench.py" "$out/tiering.json" --rows 1000000 --percents 10 \
  --speed-only > "$out/tiering.txt" 2>&1
echo "tiering rc $?" >> "$out/tiering.txt"
