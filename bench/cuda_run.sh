#!/bin/bash
# bench/cuda_run.sh: the one script a GPU-machine call runs. It builds nothing: the binaries are built here
# (cmake -B build-cuda -DIGNIS_CUDA=ON -DIGNIS_MODULES="util;io;backend;model") and packed with stories260K
# into the git-ignored .dev/cudapack/pack.tar.xz (small: the repository itself nearly fills what a call may
# carry) by bench/cuda_pack.sh, which the call carries. Stages, all by default: tests floors stories l8b bench.
# Prints a summary at the end; full logs in $OUT. Also: batch (bench/cuda_batch), hf (transformers' generate
# baseline of the serving workload), serve (ignis serve + ignis bench), kernels (variants per batch size), memory
# (10,000 requests: RSS, GPU memory, KV blocks).
#   bench/cuda_run.sh [stage ...]
. "$(dirname "$0")/serve_wait.sh"
PK=/tmp/cudapack
mkdir -p $PK && tar -C $PK -xJf .dev/cudapack/pack.tar.xz || exit 1
BIN=$PK/bin
OUT=${OUT:-/tmp/cuda_out}
mkdir -p "$OUT"
STAGES="${*:-tests floors stories l8b bench}"
export PYTHONUNBUFFERED=1
M=/tmp/l8b
LLAMA=$BIN/cuda_device
SUMMARY=$OUT/summary.txt
: > $SUMMARY
has() { [[ " $STAGES " == *" $1 "* ]]; }
note() { echo "$*" | tee -a $SUMMARY; }
T0=$(date +%s)
nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total,clocks.sm,clocks.mem --format=csv,noheader | tee -a $SUMMARY

if has tests; then
  t=$(date +%s)
  timeout 500 $BIN/cuda_device ops > $OUT/ops.log 2>&1
  rc=$?
  grep -E "^==|FAIL|CHECK failed|checks" $OUT/ops.log | head -40
  note "tests: test_cuda_ops rc=$rc, $(grep -c 'rel ' $OUT/ops.log) op cases, $(tail -1 $OUT/ops.log), $(($(date +%s)-t))s"
  t=$(date +%s)
  timeout 300 $BIN/cuda_device sample > $OUT/sample.log 2>&1
  rc=$?
  grep -E "FAIL|CHECK failed|checks|ms|margin" $OUT/sample.log | head -40
  note "tests: test_cuda_sample rc=$rc, $(tail -1 $OUT/sample.log), $(($(date +%s)-t))s"
fi
if has floors; then
  $BIN/cuda_floors | tee $OUT/floors.txt
  note "$(grep floor $OUT/floors.txt | tr '\n' ' ')"
fi
if has stories; then
  S=$PK/stories260K
  [ -d $S ] || { note "stories: not in the pack (bench/cuda_pack.sh leaves it out when the tree is near the limit)"; S=""; }
  for mode in ${S:+bf16 f32 bf16-model f32-model}; do
    flag="--bf16"; [[ $mode == f32* ]] && flag=--f32
    [[ $mode == *model ]] && flag="$flag --model"
    python3 - "$S" "$LLAMA" "$flag" <<'PY' 2>&1 | tee -a $OUT/stories.log
import json, subprocess, sys
S, llama, flag = sys.argv[1], sys.argv[2], sys.argv[3]
d = json.load(open(f"{S}/expected.json"))
res = []
for p in d["prompts"]:
    exp = p["continuation_ids"]
    cmd = [llama, "greedy", S, ",".join(map(str, p["prompt_ids"])), str(len(exp))] + flag.split()
    out = subprocess.run(cmd, capture_output=True, text=True)
    got = [int(x) for x in out.stdout.split()[1:]] if out.returncode == 0 else []
    first = next((i for i, (a, b) in enumerate(zip(got, exp)) if a != b), None if len(got) == len(exp) else len(got))
    res.append(first)
    if out.returncode: print(out.stderr[-500:])
n_ok = sum(r is None for r in res)
print(f"stories260K {flag}: {n_ok}/{len(res)} prompts equal expected.json; first divergence per prompt: {res}")
PY
  done
  grep -s stories260K $OUT/stories.log >> $SUMMARY
fi
if has l8b; then
  t=$(date +%s)
  python3 bench/cuda_llama8b.py make $M 2>&1 | grep -v Warning | tee $OUT/l8b_make.log | tail -8
  note "l8b make+reference: $(($(date +%s)-t))s"
  specs=""
  for L in 16 128 1024 4096; do specs="$specs $L:$M/ids_$L.bin:$M/ours_$L.bin"; done
  if [ "${L8B_BENCH:-1}" != 0 ]; then
    $LLAMA logits $M $specs --chunk 2048 2>&1 | tee $OUT/l8b_ours.log
    python3 bench/cuda_llama8b.py compare $M ours 2>&1 | tee $OUT/l8b_compare.log
    grep l8b_check $OUT/l8b_compare.log | sed 's/^/bench forward: /' >> $SUMMARY
  fi
  [ "${L8B_MODEL:-1}" = 0 ] || $LLAMA logits $M ${specs//ours_/model_} --chunk 2048 --model 2>&1 | grep -v "loading weights" | tee $OUT/l8b_model.log
  [ "${L8B_MODEL:-1}" = 0 ] || python3 bench/cuda_llama8b.py compare $M model 2>&1 | tee $OUT/l8b_compare_model.log
  grep -s l8b_check $OUT/l8b_compare_model.log | sed 's/^/src\/model forward: /' >> $SUMMARY
fi
if has bench; then
  [ -d $M ] || python3 bench/cuda_llama8b.py make $M > /dev/null 2>&1
  sync; echo "files: $(du -sh $M | cut -f1)"
  $LLAMA bench $M --ctx 512 --steps 128 --prefill 2048 2>&1 | tee $OUT/bench.log
  IGNIS_CUDA_PDL=0 $LLAMA bench $M --ctx 512 --steps 128 --prefill 2048 2>&1 | sed "s/^/[no-pdl] /" | tee -a $OUT/bench.log
  grep -E "load|prefill|decode|weight" $OUT/bench.log >> $SUMMARY
fi
if has batch; then
  # batched decode through src/model (on-device sampling, decode graphs): bench/cuda_batch.c
  [ -f $M/config.json ] || python3 bench/cuda_llama8b.py save $M > $OUT/l8b_save.log 2>&1
  for tune in ${BATCH_TUNE:-0}; do
    IGNIS_CUDA_GEMM_TUNE=$tune $BIN/cuda_batch $M --batch ${BATCHES:-1,16,64,128,256} --ctx ${BATCH_CTX:-256} \
      --steps ${BATCH_STEPS:-48} 2>&1 | grep -v "loading weights" | tee $OUT/batch_tune$tune.log
    note "batch (IGNIS_CUDA_GEMM_TUNE=$tune):"
    grep -E "^ *[0-9]+ |check:" $OUT/batch_tune$tune.log >> $SUMMARY
  done
fi
if has kernels; then
  # The skinny GEMM and the decode attention kernel against what they replace (cuBLASLt; the SIMT decode kernel):
  # batched decode through src/model, graphs, same run; then per-op GPU time at batch 64 and 256.
  [ -f $M/config.json ] || python3 bench/cuda_llama8b.py save $M > $OUT/l8b_save.log 2>&1
  KB=${KBATCHES:-1,16,32,64,96,128,256}
  # KVARS: space-separated name:ENV=VALUE[,ENV=VALUE] variants
  for v in ${KVARS:-new: cublas-gemm:IGNIS_CUDA_BI_SGEMM=0 simt-attn:IGNIS_CUDA_DECODE=simt \
           old-both:IGNIS_CUDA_BI_SGEMM=0,IGNIS_CUDA_DECODE=simt}; do
    name=${v%%:*}; envs=${v#*:}; envs=${envs//,/ }
    env $envs timeout 120 $BIN/cuda_batch $M --batch $KB --ctx ${BATCH_CTX:-256} --steps ${BATCH_STEPS:-32} --modes 1 2>&1 \
      | grep -v "loading weights" > $OUT/kern_$name.log
    note "kernels $name ($envs): $(grep -E '^ *[0-9]+ ' $OUT/kern_$name.log | awk '{printf "B=%s %s ms; ", $1, $3}')"
  done
  for b in ${KPROF:-64 256}; do
    IGNIS_CUDA_PROFILE=1 timeout 60 $BIN/cuda_batch $M --batch $b --ctx ${BATCH_CTX:-256} --steps 8 --modes 0 > $OUT/prof_$b.log 2>&1
    grep -iE "prof|us|ms" $OUT/prof_$b.log | grep -v "loading weights" | head -40
  done
fi
if has hf; then
  [ -f $M/config.json ] || python3 bench/cuda_llama8b.py save $M > $OUT/l8b_save.log 2>&1
  timeout 400 python3 bench/hf_generate_baseline.py $M ${HF_LEVELS:-1,16,64,256} 2>&1 | grep -v Warning | tee $OUT/hf.log
  grep hf_generate $OUT/hf.log >> $SUMMARY
fi
if has kvsize; then
  # KV capacity from free GPU memory (--cuda-memory-fraction, no --max-batch-total-tokens), and the clear startup
  # error when the fraction leaves no room: start, read the engine line, stop.
  [ -f $M/tokenizer.json ] || cp $PK/tok/tokenizer.json $PK/tok/tokenizer_config.json $M/
  ldd $PK/bin/ignis | grep -q "not found" && export LD_LIBRARY_PATH=$PK/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  for f in 1.0 0.5 0.2 0.1; do
    timeout 60 $PK/bin/ignis serve --model-id $M --device cuda --port 3001 --cuda-memory-fraction $f > $OUT/kv_$f.log 2>&1 &
    KP=$!
    wait_health 3001 $KP 300
    used=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader)
    kill $KP 2>/dev/null; wait $KP; rc=$?
    note "kvsize fraction $f: $(grep -hoE 'KV capacity [0-9]+ tokens|engine: .*' $OUT/kv_$f.log | head -1) (GPU used $used, exit $rc)"
  done
fi
if has memory; then
  # Issue 6's memory bar: 10,000 requests through ignis serve on the 8B-shape model (16 prompt + 16 output tokens,
  # 64 concurrent): process RSS and GPU memory after a warm-up and after every 5,000 requests, and the
  # largest KV-block use /metrics reported (sampled every 0.2 s) against the cache's total.
  [ -f $M/config.json ] || python3 bench/cuda_llama8b.py save $M > $OUT/l8b_save.log 2>&1
  cp $PK/tok/tokenizer.json $PK/tok/tokenizer_config.json $M/
  ldd $PK/bin/ignis | grep -q "not found" && export LD_LIBRARY_PATH=$PK/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  $PK/bin/ignis serve --model-id $M --device cuda --port 3002 --max-batch-total-tokens 65536 \
    --max-concurrent-requests 512 > $OUT/mem_serve.log 2>&1 &
  MP=$!
  wait_health 3002 $MP
  (while kill -0 $MP 2>/dev/null; do curl -s http://127.0.0.1:3002/metrics | grep -E "^ignis_kv_blocks_(used|total) " | tr '\n' ' '; echo; sleep 0.2; done) > $OUT/mem_kv.log 2>/dev/null &
  KVP=$!
  mb() { timeout 300 $PK/bin/ignis bench --url http://127.0.0.1:3002 --concurrency 64 --num-requests $1 --warmup 0 \
           --input-tokens 16 --output-tokens 16 --ignore-eos --no-progress > $OUT/mem_bench_$2.txt 2>&1; }
  snap() { note "memory $1: RSS $(ps -o rss= -p $MP | tr -d ' ') KiB, GPU $(nvidia-smi --query-gpu=memory.used --format=csv,noheader)"; }
  mb 200 warm; snap "after 200 warm-up requests"
  # MEM_ROUNDS=N (default 2): rounds of 5,000 requests, a snapshot after each
  for r in $(seq 1 ${MEM_ROUNDS:-2}); do
    mb 5000 r$r; snap "after $((200 + 5000 * r)) requests"
    note "  $(grep -E 'Failed|Output throughput' $OUT/mem_bench_r$r.txt | tr -s ' ' | tr '\n' ' ')"
  done
  kill $KVP 2>/dev/null
  note "memory: KV blocks used at most $(awk '{for (i = 1; i < NF; i++) if ($i == "ignis_kv_blocks_used") print $(i + 1)}' $OUT/mem_kv.log | sort -n | tail -1) of $(awk '{for (i = 1; i < NF; i++) if ($i == "ignis_kv_blocks_total") print $(i + 1)}' $OUT/mem_kv.log | tail -1) ($(wc -l < $OUT/mem_kv.log) samples)"
  kill $MP; wait $MP
  note "memory: server exit $? ; $(grep -cE 'ERROR|error' $OUT/mem_serve.log) error lines"
fi
if has serve; then
  # Serving (issue 6): ignis serve --device cuda on the 8B-shape model with Llama 3's tokenizer, then ignis bench
  # at 1/16/64/256 concurrent, 128 prompt + 256 output tokens, EOS ignored. Needs a pack made with
  # WITH_SERVE=1 bench/cuda_pack.sh (ignis binary, tokenizer, the libraries the device image may lack).
  # Written at the end of its session, not yet run on a GPU.
  [ -f $PK/bin/ignis ] || { note "serve: the pack has no ignis binary"; STAGES=""; }
  if [ -n "$STAGES" ]; then
    SM=${SERVE_MODEL:-$M}  # SERVE_MODEL/SERVE_DEVICE: try the stage elsewhere (e.g. stories260K on the CPU)
    if [ -z "$SERVE_MODEL" ]; then
      [ -f $M/config.json ] || python3 bench/cuda_llama8b.py save $M > $OUT/l8b_save.log 2>&1
      cp $PK/tok/tokenizer.json $PK/tok/tokenizer_config.json $M/
    fi
    ldd $PK/bin/ignis | grep -q "not found" && export LD_LIBRARY_PATH=$PK/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    t0=$(date +%s.%N)
    IGNIS_PROFILE_STEPS=${PROFILE_STEPS:-256} $PK/bin/ignis serve --model-id $SM --device ${SERVE_DEVICE:-cuda} \
      --port 3000 --max-batch-total-tokens 131072 --max-concurrent-requests 512 ${SERVE_FLAGS:-} > $OUT/serve.log 2>&1 &
    SP=$!
    wait_health 3000 $SP
    note "serve: cold start to /health 200: $(awk "BEGIN{printf \"%.2f\", $(date +%s.%N) - $t0}") s"
    for c in ${SERVE_LEVELS:-1 16 64 256}; do
      # SERVE_WAVES=k: k x c requests at concurrency c (a closed loop in its steady state, newcomers' prompts beside
      # the others' decode rows) instead of one wave of c
      n=$((c < 4 ? 4 : c)); n=$((n * ${SERVE_WAVES:-1})); w=$((c < 8 ? c : 8))
      timeout $((60 * ${SERVE_WAVES:-1})) $PK/bin/ignis bench --url http://127.0.0.1:3000 --concurrency $c --num-requests $n --warmup $w \
        --input-tokens 128 --output-tokens 256 --ignore-eos --no-progress --seed $c > $OUT/serve_c$c.txt 2>&1
      note "serve c=$c: $(grep -E 'Output throughput|Failed' $OUT/serve_c$c.txt | tr -s ' ' | tr '\n' ' ')" \
           "$(grep -E '^(TTFT|ITL)' $OUT/serve_c$c.txt | awk '{print $1, "p50", $5, "ms"}' | tr '\n' ' ')"
    done
    # (each level its own prompts, --seed c: with the same seed every level repeated the earlier levels' prompts,
    # which the prefix cache, on by default, then found: 11,312 of 46,720 prompt tokens at 11:02 on 2026-11-24)
    note "serve: prefix cache (on by default; random prompts): $(curl -s http://127.0.0.1:3000/metrics | grep -E '^ignis_prefix' | tr '\n' ' ')"
    kill $SP; wait $SP
    grep "engine profile" $OUT/serve.log | tail -12
    tail -3 $OUT/serve.log
  fi
fi
echo "==== summary ($(($(date +%s)-T0))s)"
cat $SUMMARY
