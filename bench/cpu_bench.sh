#!/bin/sh
# bench/cpu_bench.sh: the CPU backend's numbers for bench/RESULTS.md: memory bandwidth (memcpy, read),
# decode matvec bandwidth, and `ignis generate` prefill/decode tokens/s for stories260K and a random-weight
# ~500M-parameter bf16 Llama (made in /tmp by bench/cpu_make_model.c; never committed). Best of RUNS runs.
# usage: bench/cpu_bench.sh [threads]     (env: BUILD=build dir, RUNS=3)
set -e
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$root/build-bench-cpu}
runs=${RUNS:-3}
th=${1:-$(nproc)}
cmake -S "$root" -B "$build" -DIGNIS_CUDA=OFF -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j"$(nproc)" --target ignis ig_backend >/dev/null
cc -O2 "$root/bench/cpu_make_model.c" -o /tmp/ig_cpu_make_model -lm
cc -O2 -pthread "$root/bench/cpu_membw.c" -o /tmp/ig_cpu_membw
cc -O2 -std=c17 -D_GNU_SOURCE -I"$root/src" "$root/bench/cpu_matvec.c" "$build/src/backend/libig_backend.a" \
  "$build/src/util/libig_util.a" $(pkg-config --libs openblas) -pthread -lm -o /tmp/ig_cpu_matvec
[ -f /tmp/ig_rand500m/model.safetensors ] || /tmp/ig_cpu_make_model /tmp/ig_rand500m
echo "== $(date -u +%F) $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
/tmp/ig_cpu_membw "$th"
/tmp/ig_cpu_matvec 1
/tmp/ig_cpu_matvec "$th"
gen() { # model prompt_len new_tokens
  ids=$(seq -s, 1 "$2")
  best_p=0; best_d=0
  for r in $(seq "$runs"); do
    line=$("$build/ignis" generate --model-id "$1" --threads "$th" --max-new-tokens "$3" --prompt-ids "$ids" --ids 2>&1 >/dev/null | grep "decode")
    p=$(echo "$line" | sed -n 's/.*s (\([0-9.]*\) tok\/s); generated.*/\1/p')
    d=$(echo "$line" | sed -n 's/.*decode \([0-9.]*\) tok\/s.*/\1/p')
    best_p=$(echo "$p $best_p" | awk '{print ($1 > $2) ? $1 : $2}')
    best_d=$(echo "$d $best_d" | awk '{print ($1 > $2) ? $1 : $2}')
  done
  echo "$(basename "$1"): prefill $2 tokens: $best_p tok/s; decode $3 tokens: $best_d tok/s (best of $runs, $th threads)"
}
gen "$root/../shared/models/stories260K" 128 256
gen /tmp/ig_rand500m 128 32
