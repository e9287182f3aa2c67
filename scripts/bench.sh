#!/usr/bin/env bash
# `make bench`: every benchmark in benchmarks/, each printing its own table. Results go to build/bench/.
# Figures in BENCHMARKS.md come from these commands run one at a time on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p build/bench
PY=.venv/bin/python
run() { echo "== $*"; "$PY" "$@" | tee "build/bench/$(basename "$1" .py).txt"; }
run benchmarks/bench_reader.py
[ -f benchmarks/bench_train.py ] && run benchmarks/bench_train.py
[ -f benchmarks/bench_api.py ] && run benchmarks/bench_api.py
[ -f benchmarks/bench_audio.py ] && run benchmarks/bench_audio.py
[ -f benchmarks/bench_load.py ] && run benchmarks/bench_load.py
echo "results in build/bench/"
