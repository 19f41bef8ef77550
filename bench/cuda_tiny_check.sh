#!/bin/bash
# bench/cuda_tiny_check.sh: ONE device call (about a minute, no Python): the CUDA op tests (test_cuda_ops, with the
# tiny models' exact shapes: K = 172 at m <= 8 and m > 8, the tied lm_head to f32 logits, head_dim 8 attention at
# block size 4 with 2-3 query heads per kv head) and cuda_tiny_check (stories260K and llama3-gqa-tied through
# src/model on CUDA f32/bf16 vs the CPU backend, on the tensor-parallel test's 96-row, 2-sequence, chunked
# schedule). Prints a PASS/FAIL table; full logs in $OUT. Binaries come from bench/cuda_tiny_pack.sh, run here:
#   run(command="bench/cuda_tiny_check.sh", carry=[".dev/cudatiny"])
PK=/tmp/cudatiny
rm -rf $PK && mkdir -p $PK && tar -C $PK -xJf .dev/cudatiny/pack.tar.xz || { echo "FAIL: no .dev/cudatiny/pack.tar.xz"; exit 1; }
OUT=${OUT:-/tmp/cudatiny_out}
mkdir -p "$OUT"
T0=$(date +%s)
echo "pack from commit $(cat $PK/commit 2>/dev/null); $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader)"
if ldd $PK/bin/* | grep "not found"; then echo "FAIL: libraries missing on this machine"; fi

# 1. op tests (each CUDA op vs the CPU backend; bf16, bf16 WMMA/unstaged/no-PDL, f32)
timeout 110 $PK/bin/test_cuda_ops > $OUT/ops.log 2>&1
ops_rc=$?
n_fail=$(grep -c "CHECK failed" $OUT/ops.log)
echo "---- test_cuda_ops: rc=$ops_rc, $(grep -c ' rel ' $OUT/ops.log) cases, $n_fail failed checks, $(($(date +%s)-T0))s"
grep -E "CHECK failed" $OUT/ops.log | head -20
echo "  the tiny-model cases, worst per kind and mode:"
awk '/^== activations/ {mode = $3; sub(/,/, "", mode); if ($0 ~ /WMMA/) mode = mode "-wmma"}
     / rel / { name = $0; sub(/ +rel .*/, "", name);
       if (name !~ /tiny|tp-|I=172|I=104|W=48|W=172|n=60 W=64/) next;
       k = $1 " " $2; if ($2 == "tiny") k = k (name ~ /tied/ ? " tied->f32" : "");
       if ($1 == "swiglu" || $1 == "add" || $1 == "rmsnorm") k = $1 " (tiny widths)";
       k = mode " " k; v = $NF + 0; if (!(k in w) || v > w[k]) w[k] = v; n[k]++ }
     END { for (k in w) printf "    %-44s %3d cases, worst rel L2 %.2e\n", k, n[k], w[k] }' $OUT/ops.log | sort

# 2. the models through src/model
t=$(date +%s)
timeout 100 $PK/bin/cuda_tiny_check $PK/stories260K tests/fixtures/engine/llama3-gqa-tied-bf16 > $OUT/tiny.log 2> $OUT/tiny.err
tiny_rc=$?
echo "---- cuda_tiny_check: rc=$tiny_rc, $(($(date +%s)-t))s (forced: every run fed the CPU run's tokens; free: own argmax fed back as tests/tp does)"
cat $OUT/tiny.log
grep -v INFO $OUT/tiny.err | tail -5

echo "==== SUMMARY ($(($(date +%s)-T0))s)"
printf "%-60s %s\n" "test_cuda_ops (all ops, tiny shapes included)" "$([ $ops_rc = 0 ] && echo PASS || echo "FAIL (rc $ops_rc)")"
printf "%-60s %s\n" "stories260K + llama3-gqa-tied, CUDA f32/bf16 vs CPU (forced)" "$([ $tiny_rc = 0 ] && echo PASS || echo "FAIL (rc $tiny_rc)")"
[ $ops_rc = 0 ] && [ $tiny_rc = 0 ]
