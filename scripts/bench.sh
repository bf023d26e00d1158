#!/usr/bin/env bash
# Sparta's benchmark: data-plane throughput on loopback (sparse push/pull for
# dim 8/16/64 and 1k-1M keys with Adagrad on the server, dense push/pull of
# 1 KB-16 MB; sparse push/pull on a table 10x a server's memory_limit against
# plain RocksDB MultiGet; the cold tier's store against an append-only log with
# an index), this machine's memcpy bandwidth in the same run, and
# end-to-end training throughput of lr and fm (1 worker + 1 server, and
# 2 workers + 2 servers), lr/fm/dnn against the same models in PyTorch
# (scripts/bench/torch_ctr.py: speed ratio and test AUC), checkpoint and restore cost (1M and 10M rows),
# training throughput with replication 1/2/3 and ack all|primary, the
# time from a server's kill -9 to resumed training, and elastic jobs (a
# standby scheduler's takeover through etcd, a worker's kill -9 with
# data.assignment on_demand, live shard moves: a drain and a join of 1M
# rows, and of 10M without --quick, with the hand-off pauses and the
# workers' longest step).
#   scripts/bench.sh [--quick] [--json FILE] [--no-build]
# With --json FILE it also draws FILE's sparse figures as an SVG chart (FILE.svg,
# the .json suffix replaced).
set -euo pipefail
cd "$(dirname "$0")/.."
quick="" json="" build=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) quick="--quick" ;;
    --json) json="$2"; shift ;;
    --no-build) build=0 ;;
    *) echo "usage: scripts/bench.sh [--quick] [--json FILE] [--no-build]" >&2; exit 2 ;;
  esac
  shift
done
if [[ $build == 1 ]]; then
  scripts/install-deps.sh --tests  # etcd-server: the standby scheduler benchmark
  scripts/build.sh sparta-scheduler sparta-server sparta-worker sparta-datagen sparta-kv-bench sparta-row-memory \
    sparta-batch-bench sparta-checkpoint-bench sparta-serve sparta-serve-bench sparta-cold-store-bench
  # The GPU kernel benchmark exists when the build has the CUDA backend.
  if cmake --build build --target help | grep -q sparta-gpu-bench; then scripts/build.sh sparta-gpu-bench; fi
fi
bin=${SPARTA_BIN:-build/bin}
tmp=$(mktemp -d /tmp/sparta-bench-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

cat > "$tmp/kv.yaml" <<YAML
cluster: {scheduler: "127.0.0.1:0", servers: 1, workers: 1}
server: {threads: 1}
data: {train: unused}
log: {level: warn}
YAML
# One data-plane run: a fresh scheduler + server, then the client.
#   run_kv OUT ONLY [--set k=v ...]   (ONLY: measurement-name prefix, "" for all;
#   the overrides go to all three)
run_kv() {
  local out=$1 only=$2; shift 2
  # The scheduler binds any free port and names it in its info file: a port
  # picked here would be free only until another program took it.
  local info=$tmp/scheduler.info.json
  rm -f "$info"
  "$bin/sparta-scheduler" --config "$tmp/kv.yaml" --info-file "$info" "$@" 2>> "$tmp/scheduler.log" & pids+=($!)
  local scheduler
  scheduler=$(python3 tests/bench/await_scheduler.py "$info" "${pids[-1]}") || { tail "$tmp/scheduler.log" >&2; exit 1; }
  set -- "$@" --set cluster.scheduler="$scheduler"
  "$bin/sparta-server" --config "$tmp/kv.yaml" --rank 0 "$@" 2>> "$tmp/server.log" & pids+=($!)
  "$bin/sparta-kv-bench" --config "$tmp/kv.yaml" $quick --json "$out" --only "$only" "$@"
  wait "${pids[@]}"
  pids=()
}
echo "== data plane (1 server, 1 client, loopback; Adagrad on the server)"
run_kv "$tmp/kv32.json" ""
echo "== data plane with fp16 values on the wire (wire.dtype: fp16)"
run_kv "$tmp/kv16.json" sparse_ --set wire.dtype=fp16
echo "== data plane on a table 10x the server's memory_limit (uniform keys: 9 in 10 cold), against plain RocksDB MultiGet"
run_kv "$tmp/kvtier.json" "" --set server.memory_limit="$([[ -n $quick ]] && echo 32MiB || echo 256MiB)" \
  --set storage.path="$tmp/kv-store"
python3 -c "import json,sys; json.dump(sum((json.load(open(f)) for f in sys.argv[1:-1]), []), open(sys.argv[-1], 'w'))" \
  "$tmp/kv32.json" "$tmp/kv16.json" "$tmp/kvtier.json" "$tmp/kv.json"

echo "== server memory per sparse row (Adagrad state included)"
"$bin/sparta-row-memory" "$([[ -n $quick ]] && echo 100000 || echo 1000000)" | tee "$tmp/memory.txt"

echo "== a worker's batches: BatchBuilder against sort+unique of the same keys (39 fields, batch 512)"
"$bin/sparta-batch-bench" "$([[ -n $quick ]] && echo 500 || echo 4000)" "$tmp/batch.json"

echo "== end-to-end training (generated Criteo-like data)"
rows=$([[ -n $quick ]] && echo 50000 || echo 1000000)
"$bin/sparta-datagen" --train-rows "$rows" --test-rows "$((rows / 10))" --interaction 1.5 --max-vocab 20000 \
  --train "$tmp/train.txt" --test "$tmp/test.txt"
e2e="$tmp/e2e.json"
echo "[" > "$e2e"
first=1
for setup in "1 1" "2 2"; do
  read -r servers workers <<< "$setup"
  for model in lr fm; do
    run="$tmp/run-$model-$servers-$workers"
    SPARTA_BIN="$bin" scripts/sparta launch configs/quickstart.yaml --quiet --run-dir "$run" \
      --set cluster.scheduler=127.0.0.1:0 --set cluster.servers="$servers" --set cluster.workers="$workers" \
      --set model.name="$model" --set data.train="$tmp/train.txt" --set data.test="$tmp/test.txt" \
      --set data.batch_size=4096 --set data.epochs=1 > /dev/null
    eps=$(python3 -c "import json; print(json.load(open('$run/summary.json'))['examples_per_sec'])")
    name="train_${model}_${workers}w${servers}s"
    printf "%-40s %14.0f examples/s\n" "$name" "$eps"
    [[ $first == 1 ]] || echo "," >> "$e2e"
    first=0
    printf '  {"name": "%s", "unit": "examples/s", "value": %s}' "$name" "$eps" >> "$e2e"
  done
done
# Latency shows at small batches: lr 1+1 at the quickstart's batch of 512,
# as a fraction of its batch-4096 speed in this run (target: 0.7).
run="$tmp/run-lr-512"
SPARTA_BIN="$bin" scripts/sparta launch configs/quickstart.yaml --quiet --run-dir "$run" \
  --set cluster.scheduler=127.0.0.1:0 --set cluster.servers=1 --set cluster.workers=1 --set model.name=lr \
  --set data.train="$tmp/train.txt" --set data.test="$tmp/test.txt" --set data.batch_size=512 --set data.epochs=1 \
  > /dev/null
eps512=$(python3 -c "import json; print(json.load(open('$run/summary.json'))['examples_per_sec'])")
eps4096=$(python3 -c "import json; print(json.load(open('$tmp/run-lr-1-1/summary.json'))['examples_per_sec'])")
ratio=$(python3 -c "print($eps512 / $eps4096)")
printf "%-40s %14.0f examples/s\n%-40s %14.2f fraction\n" train_lr_1w1s_batch512 "$eps512" \
  train_lr_1w1s_batch512_vs_batch4096 "$ratio"
printf ',\n  {"name": "train_lr_1w1s_batch512", "unit": "examples/s", "value": %s}' "$eps512" >> "$e2e"
printf ',\n  {"name": "train_lr_1w1s_batch512_vs_batch4096", "unit": "fraction", "value": %s}' "$ratio" >> "$e2e"
echo "]" >> "$e2e"

echo "== models against PyTorch (1 worker + 1 server vs scripts/bench/torch_ctr.py, same data and settings)"
if [[ -z $quick ]] && ! /usr/bin/python3 -c "import torch" 2>/dev/null; then
  # The reference needs Debian's PyTorch; installed here, not for the tests.
  if [[ $(id -u) == 0 ]]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-torch > /dev/null
  else
    echo "bench: python3-torch is missing (sudo apt-get install python3-torch); skipping the PyTorch reference" >&2
  fi
fi
SPARTA_BIN="$bin" python3 tests/bench/models_bench.py "$tmp/train.txt" "$tmp/test.txt" "$tmp/models.json" $quick

echo "== Python workers: the PyTorch DLRM example and the NumPy lr (2 workers) vs the built-in dnn and lr"
SPARTA_BIN="$bin" python3 tests/bench/python_worker_bench.py "$tmp/train.txt" "$tmp/test.txt" "$tmp/python.json" $quick

echo "== GPU: gather/scatter kernels against the copy bandwidth; dnn on a GPU worker vs the CPU worker and PyTorch"
echo '[]' > "$tmp/gpu.json"
if [[ ! -x "$bin/sparta-gpu-bench" ]]; then
  echo "GPU benchmark skipped: this build has no CUDA backend (no nvcc, or SPARTA_CUDA=OFF)"
elif "$bin/sparta-gpu-bench" $quick > "$tmp/kernels.jsonl"; then
  cat "$tmp/kernels.jsonl"
  SPARTA_BIN="$bin" python3 tests/bench/gpu_models_bench.py "$tmp/train.txt" "$tmp/test.txt" "$tmp/gpu.json"
  python3 - "$tmp/kernels.jsonl" "$tmp/gpu.json" <<'PY'
import json, sys
records = json.load(open(sys.argv[2]))
for line in open(sys.argv[1]):
    k = json.loads(line)
    records.append({"name": f"gpu_{k['kernel']}_b{k['examples']}_dim{k['dim']}", "unit": "fraction of copy bandwidth",
                    "value": k["fraction_of_copy"], **k})
json.dump(records, open(sys.argv[2], "w"), indent=1)
PY
else
  echo "GPU benchmark skipped: no usable GPU on this machine"
fi

echo "== checkpoints: cut, size on disk, incremental cut after 1% changed, restore (dim 8, Adagrad)"
"$bin/sparta-checkpoint-bench" --json "$tmp/checkpoint.json" $([[ -n $quick ]] && echo 100000 || echo 1000000 10000000)

echo "== replication (lr, 2 workers + 3 servers) and failover (kill -9 of a server)"
SPARTA_BIN="$bin" python3 tests/bench/replication_bench.py "$tmp/train.txt" "$tmp/test.txt" "$tmp/replication.json" $quick
echo "== tables larger than memory (fm, Zipf 1.1): memory_limit at 100%, 30%, 10% of the table vs unbounded; admission"
SPARTA_BIN="$bin" python3 tests/bench/tiering_bench.py "$tmp/tiering.json" $quick
echo "== the cold tier's store against its floor: CPU per row written and read back, RowStore vs an append-only log"
"$bin/sparta-cold-store-bench" $quick --json "$tmp/cold_store.json"
echo "== elastic jobs: scheduler takeover with etcd (kill -9 of the leader), a worker's kill -9 with on_demand work"
SPARTA_BIN="$bin" python3 tests/bench/elastic_bench.py "$tmp/train.txt" "$tmp/test.txt" "$tmp/elastic.json" $quick
echo "== serving: sparta-serve (embedded) under open-loop load, lr/fm/dnn, 1 and 100 examples a request; dnn in PyTorch"
SPARTA_BIN="$bin" python3 tests/bench/serving_bench.py "$tmp/train.txt" "$tmp/test.txt" "$tmp/serving.json" $quick
echo "== serving cache: a serving cluster's front-end cache at 1%, 10%, 30%, 100% of fm's rows; hit rate, speed vs embedded"
SPARTA_BIN="$bin" python3 tests/bench/serving_cache_bench.py "$tmp/train.txt" "$tmp/test.txt" "$tmp/serving_cache.json" $quick
echo "== freshness: a followed folder's new key, from the file's arrival to a served prediction that uses it"
SPARTA_BIN="$bin" python3 tests/bench/freshness_bench.py "$tmp/freshness.json" $quick
if [[ -n $json ]]; then
  python3 - "$tmp/kv.json" "$e2e" "$json" "$tmp/checkpoint.json" "$tmp/replication.json" "$tmp/models.json" \
    "$tmp/gpu.json" "$tmp/tiering.json" "$tmp/elastic.json" "$tmp/serving.json" "$tmp/freshness.json" \
    "$tmp/python.json" "$tmp/serving_cache.json" "$tmp/batch.json" "$tmp/cold_store.json" <<'PY'
import json, sys
records = json.load(open(sys.argv[1])) + json.load(open(sys.argv[2])) + json.load(open(sys.argv[13]))
records += json.load(open(sys.argv[4])) + json.load(open(sys.argv[5])) + json.load(open(sys.argv[6]))
records += json.load(open(sys.argv[7])) + json.load(open(sys.argv[8])) + json.load(open(sys.argv[9]))
records += json.load(open(sys.argv[10])) + json.load(open(sys.argv[11])) + json.load(open(sys.argv[12]))
records += json.load(open(sys.argv[14])) + json.load(open(sys.argv[15]))
for line in open(sys.argv[1].replace("kv.json", "memory.txt")):
    name, value = line.split()[:2]
    records.append({"name": name, "unit": "bytes/row", "value": float(value)})
json.dump(records, open(sys.argv[3], "w"), indent=1)
print(f"bench: {len(records)} results written to {sys.argv[3]}")
PY
  python3 scripts/bench_chart.py "$json" "${json%.json}.svg" && echo "bench: chart written to ${json%.json}.svg"
fi
