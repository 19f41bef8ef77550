#!/bin/sh
# bench/cpu_batch.sh: batched decode on the CPU backend, for bench/RESULTS.md. (1) the engine alone
# (tests/engine/bench_engine: N concurrent greedy requests of 200 tokens on stories260K, tokens/s), (2) the
# forward alone (bench/cpu_forward.c: steps of B one-token sequences, each with its own KV context) on
# stories260K and on the random ~500M bf16 model that bench/cpu_bench.sh makes in /tmp. Best of RUNS.
# usage: bench/cpu_batch.sh [build_dir]   (env: RUNS=3, THREADS=0 (all cores), CONC="1 16 64", BIG_B="1 8 32")
# The build dir needs util;io;tok;backend;model;engine (for bench_engine); it is configured if missing.
set -e
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build-bench-cpu-batch}
runs=${RUNS:-3}
th=${THREADS:-0}
stories="$root/../shared/models/stories260K"
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S "$root" -B "$build" -DIGNIS_CUDA=OFF -DCMAKE_BUILD_TYPE=Release \
    -DIGNIS_MODULES="util;io;tok;backend;model;engine" >/dev/null
fi
cmake --build "$build" -j"$(nproc)" --target bench_engine ig_model >/dev/null
fwd=/tmp/ig_cpu_forward.$$
cc -O2 -std=c17 -D_GNU_SOURCE -I"$root/src" "$root/bench/cpu_forward.c" "$build/src/model/libig_model.a" \
  "$build/src/io/libig_io.a" "$build/src/backend/libig_backend.a" "$build/src/util/libig_util.a" \
  $(pkg-config --libs openblas jansson) -pthread -lm -o "$fwd"
if [ ! -f /tmp/ig_rand500m/model.safetensors ]; then
  cc -O2 "$root/bench/cpu_make_model.c" -o /tmp/ig_cpu_make_model -lm
  /tmp/ig_cpu_make_model /tmp/ig_rand500m
fi
echo "== $(date -u +%FT%TZ) $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), build $build, threads $th"
best() { sort -g | tail -1; }
for c in ${CONC:-1 16 64}; do
  v=$(for r in $(seq "$runs"); do
    "$build/tests/engine/bench_engine" "$stories" "$c" 200 0 "$th" 2>&1 | sed -n 's/^tokens .*: \([0-9.]*\) tokens\/s.*/\1/p'
  done | best)
  echo "engine stories260K concurrency $c: $v tok/s (best of $runs)"
done
for b in ${CONC:-1 16 64}; do
  line=$(for r in $(seq "$runs"); do "$fwd" "$stories" "$b" 32 200 "$th" 2>/dev/null; done |
    awk -F'decode ' '{split($2, a, " "); print a[1], $0}' | sort -g | tail -1 | cut -d' ' -f2-)
  echo "forward stories260K: $line"
done
for b in ${BIG_B:-1 8 32}; do
  line=$(for r in $(seq "$runs"); do "$fwd" /tmp/ig_rand500m "$b" 16 6 "$th" 2>/dev/null; done |
    awk -F'decode ' '{split($2, a, " "); print a[1], $0}' | sort -g | tail -1 | cut -d' ' -f2-)
  echo "forward rand500m: $line"
done
rm -f "$fwd"
