#!/bin/bash
# bench/cuda_gemm_check.sh: one GPU call after a GEMM change: the bf16 matmul op checks alone (IG_OPS_ONLY=gemm:
# every product against the CPU, batch invariance across tile heights), the decode-shape products per variant
# (cuda_device gemm, IG_GEMM_VARIANTS), then batched decode through src/model per variant (cuda_run.sh kernels,
# KVARS / KBATCHES). Logs under $OUT.
O=${OUT:-/tmp/cuda_out}
mkdir -p $O
PK=/tmp/cudapack
mkdir -p $PK && tar -C $PK -xJf .dev/cudapack/pack.tar.xz || exit 1
B=$PK/bin
[ -f /tmp/l8b/config.json ] || (python3 bench/cuda_llama8b.py save /tmp/l8b > $O/save.log 2>&1) &
SP=$!
t=$(date +%s)
IG_OPS_ONLY=gemm timeout 240 $B/cuda_device ops > $O/ops_gemm.log 2>&1
echo "ops (gemm only) rc=$?: $(grep -c 'rel ' $O/ops_gemm.log) cases, $(tail -1 $O/ops_gemm.log), $(($(date +%s)-t)) s"
grep -E "FAIL|CHECK failed" $O/ops_gemm.log | head -20
wait $SP
[ -n "$NO_GEMM" ] || timeout 240 $B/cuda_device gemm ${GEMM_MS:-16,32,64,128,256} 2>&1 | tee $O/gemm.log
OUT=$O/k KPROF="${KPROF:- }" KBATCHES=${KBATCHES:-16,32,64,128,256} bench/cuda_run.sh kernels 2>&1 | grep -vE "^NVIDIA|^$"
