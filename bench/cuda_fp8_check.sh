#!/bin/bash
# bench/cuda_fp8_check.sh: FP8 checkpoints on the GPU (nineteenth session). The random 8B model (/tmp/l8b, made here
# by bench/cuda_llama8b.py save) quantized with torch per channel (compressed-tensors) and per 128 x 128 block (fp8)
# by bench/cuda_fp8_ckpt.py, each beside a bf16 twin holding the dequantized weights:
#  - cuda_batch's ids hashes of the FP8 directory must equal the twin's, with the device's dequantization (weight_fp8)
#    and with the loader's host one (IGNIS_FP8_HOST=1); the load times of all three;
#  - ignis serve's cold start to /health on the per-channel directory and on its twin (Llama 3's tokenizer), twice;
#  - the op tests of the device dequantization and of the FP8 KV cache (the scaled cases included).
# Needs the WITH_SERVE=1 pack (bench/cuda_pack.sh); ~25 GB of disk for a directory pair at a time.
. "$(dirname "$0")/serve_wait.sh"
PK=/tmp/cudapack
[ -f $PK/bin/ignis ] || { mkdir -p $PK && tar -C $PK -xJf .dev/cudapack/pack.tar.xz || exit 1; }
ldd $PK/bin/ignis | grep -q "not found" && export LD_LIBRARY_PATH=$PK/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
M=/tmp/l8b
[ -f $M/config.json ] || python3 bench/cuda_llama8b.py save $M > /dev/null 2>&1
T=$(mktemp -d)
echo "== op tests"
IG_OPS_ONLY=weight_fp8 $PK/bin/cuda_device ops 2>&1 | grep -E "weight_fp8:|CHECK failed|checks"
IG_OPS_ONLY=attn $PK/bin/cuda_device ops > $T/ops_attn.txt 2>&1
echo "attention op tests rc $? ($(grep -c scaled $T/ops_attn.txt) scaled cases); failures:"
grep -E "CHECK failed" $T/ops_attn.txt | head -5
for s in channel block; do
  python3 bench/cuda_fp8_ckpt.py make $M /tmp/f8 /tmp/dq $s 2>&1 | tail -1
  for v in "f8" "f8 IGNIS_FP8_HOST=1" "dq"; do
    set -- $v
    echo "== $s: $v"
    env X=1 $2 $PK/bin/cuda_batch /tmp/$1 --batch 1,64 --ctx 256 --steps 16 --modes 1 2>&1 | grep -E "^load|hash|rror" | head -4
  done
  if [ $s = channel ]; then
    for d in f8 dq; do cp $PK/tok/tokenizer.json $PK/tok/tokenizer_config.json /tmp/$d/; done
    for d in f8 dq f8 dq; do
      t0=$(date +%s.%N)
      $PK/bin/ignis serve --model-id /tmp/$d --port 3000 > $T/serve_$d.log 2>&1 &
      SP=$!
      wait_health 3000 $SP || { echo "serve $d did not come up"; tail -3 $T/serve_$d.log; continue; }
      echo "serve $d: cold start to /health 200: $(awk "BEGIN{printf \"%.2f\", $(date +%s.%N) - $t0}") s; $(curl -s \
        localhost:3000/generate -H 'Content-Type: application/json' -d '{"inputs":"Hello there","parameters":{"max_new_tokens":8}}')"
      kill $SP; wait $SP
    done
  fi
  rm -rf /tmp/f8 /tmp/dq
done
rm -rf $T
