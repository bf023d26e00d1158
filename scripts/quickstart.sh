#!/usr/bin/env bash
# The main job: installs what is missing, builds, generates a Criteo-like
# data set, and trains a factorization machine on a local cluster
# (1 scheduler, 2 servers, 2 workers) from configs/quickstart.yaml.
# Extra arguments go to the launcher (e.g. --set model.name=lr).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh sparta-scheduler sparta-server sparta-worker sparta-serve sparta-datagen

data=data/quickstart
if [[ ! -f $data/test.txt ]]; then
  echo "quickstart: generating 500k training and 50k test rows in $data/"
  mkdir -p "$data"
  build/bin/sparta-datagen --train-rows 500000 --test-rows 50000 --interaction 1.5 --max-vocab 20000 \
    --seed 7 --train "$data/train.txt.tmp" --test "$data/test.txt.tmp"
  mv "$data/train.txt.tmp" "$data/train.txt"
  mv "$data/test.txt.tmp" "$data/test.txt"
fi
exec scripts/sparta launch configs/quickstart.yaml "$@"
