#!/bin/bash
# bench/cuda_final.sh: one GPU call that re-checks and re-times everything issue 6 asks for after a kernel change:
# the 8B check against transformers (src/model), the op and sample tests, stories260K greedy, the floors (HBM read,
# cuBLASLt 8192^3) with prefill-2048 and batch-1 timings of bench/cuda_llama.c, batched decode per
# variant, batch-1 decode at context 512, serving at 1/16/64/256 clients, memory over 10,000 requests and the tiny
# models' bf16 check. Logs under $OUT/{l,t,k,s,m}.
O=${OUT:-/tmp/cuda_out}
(L8B_BENCH=0 OUT=$O/l bench/cuda_run.sh l8b > $O/l8b.txt 2>&1) & LP=$!
OUT=$O/t bench/cuda_run.sh ${FINAL_T_STAGES:-tests stories floors} 2>&1 | grep -E "FAIL|CHECK failed|^tests:|stories260K|floor" | awk '!seen[$0]++'
wait $LP; grep -E "l8b|check|ratio|pass" $O/l8b.txt | tail -12
OUT=$O/k KPROF=" " KBATCHES=${KBATCHES:-1,2,3,4,8,12,16,32,64,128,256} KVARS="${KVARS:-new:}" bench/cuda_run.sh kernels 2>&1 | grep -E "^kernels"
B=/tmp/cudapack/bin
OUT=$O/b bench/cuda_run.sh bench 2>&1 | grep -E "^(load|prefill|decode|weight|\[no-pdl\])" | awk '!seen[$0]++'
timeout 100 $B/cuda_batch /tmp/l8b --batch 1 --ctx 512 --steps 128 --modes 1 2>&1 | grep -E "^ *1 " | awk '{print "batch-1 decode ctx 512: " $3 " ms/token"}'
OUT=$O/s SERVE_LEVELS="${SERVE_LEVELS:-1 16 64 256}" bench/cuda_run.sh serve 2>&1 | grep -E "^serve|engine profile"
# SKIP_MEMORY=1: no memory stage (10,000 requests, a few minutes); WITH_BI=1: the default's batch invariance against
# the fastest non-invariant products (IGNIS_CUDA_BATCH_INVARIANT=0): decode, prefill and served busy-vs-plain texts
[ -n "$SKIP_MEMORY" ] || OUT=$O/m bench/cuda_run.sh memory 2>&1 | grep -E "^memory|^  Failed" | awk '!seen[$0]++'
if [ -n "$WITH_BI" ]; then
  IGNIS_CUDA_BATCH_INVARIANT=0 timeout 100 $B/cuda_batch /tmp/l8b --batch 1,16,64,256 --ctx 256 --steps 32 --modes 1 2>&1 \
    | grep -E "^ *[0-9]+ " | awk '{printf "not invariant: decode B=%s %s ms; ", $1, $3} END {print ""}'
  IGNIS_CUDA_BATCH_INVARIANT=0 timeout 60 $B/cuda_batch /tmp/l8b --batch 1 --ctx 512 --steps 128 --modes 1 2>&1 \
    | grep -E "^ *1 " | awk '{print "not invariant: batch-1 decode ctx 512: " $3 " ms/token"}'
  IGNIS_CUDA_BATCH_INVARIANT=0 timeout 100 $B/cuda_device bench /tmp/l8b --ctx 512 --prefill 2048 --model 2>&1 \
    | grep -E "^prefill 2048 tokens:" | sed 's/^/not invariant: /'
  SERVE_VARIANTS="default;IGNIS_CUDA_BATCH_INVARIANT=0" REQS="plain busy seeded busyseeded" timeout 150 \
    bash bench/cuda_repeat_check.sh 2>&1 | tail -8
  OUT=$O/s2 SERVE_LEVELS=1 SERVE_FLAGS="--batch-invariant false" bench/cuda_run.sh serve 2>&1 | grep -E "^serve c" | sed 's/^/not invariant: /'
fi
[ -x $B/cuda_tiny_check ] && timeout 100 $B/cuda_tiny_check /tmp/cudapack/stories260K tests/fixtures/engine/llama3-gqa-tied-bf16 2>/dev/null | tail -9
