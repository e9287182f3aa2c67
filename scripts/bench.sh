#!/usr/bin/env bash
# `make bench`: every benchmark in benchmarks/, each printing its own table. Results go to build/bench/.
# Figures in BENCHMARKS.md come from these commands run one at a time on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p build/bench
PY=.venv/bin/python
run() { echo "== $*"; "$PY" "$@" | tee "build/bench/$(basename "$1" .py).txt"; }
run benchmarks/bench_reader.py  # writes about 8.5 GB of candidate mels under build/bench-real once
run benchmarks/bench_duplicates.py
[ -f benchmarks/bench_train.py ] && run benchmarks/bench_train.py
run benchmarks/bench_knn.py
# The service benchmark needs synthetic versions at three sizes; they are written once and reused.
for n in 10000 100000 707989; do
  [ -f "build/bench-artifacts/$n/current" ] || \
    "$PY" benchmarks/make_synthetic_artifacts.py --songs "$n" --out "build/bench-artifacts/$n" --index ivf
done
run benchmarks/bench_api.py build/bench-artifacts/10000 build/bench-artifacts/100000 build/bench-artifacts/707989
[ -f benchmarks/bench_audio.py ] && run benchmarks/bench_audio.py
[ -f benchmarks/bench_load.py ] && run benchmarks/bench_load.py
echo "results in build/bench/"
