#!/bin/bash
# bench/cpu_serve_profile.sh: the engine thread's host time per generated token under many clients, on the CPU
# backend: ignis serve with IGNIS_PROFILE_STEPS=100, ignis bench at 256 concurrent (16 prompt + 128 output tokens,
# EOS ignored), then the profile lines summed: tokens/events microseconds per sequence per step, mean step wall
# time, and the bench's output tokens/s.
#   bench/cpu_serve_profile.sh IGNIS_BINARY MODEL_DIR [RUNS]
set -e
IGNIS=${1:?ignis binary}; M=${2:?model dir}; RUNS=${3:-3}; P=${PORT:-3191}
T=$(mktemp -d)
for r in $(seq 1 $RUNS); do
  IGNIS_PROFILE_STEPS=100 $IGNIS serve --model-id $M --device cpu --port $P --max-concurrent-requests 512 > $T/serve.log 2>&1 &
  SP=$!
  for i in $(seq 1 300); do [ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$P/health)" = 200 ] && break; sleep 0.1; done
  $IGNIS bench --url http://127.0.0.1:$P --concurrency 256 --num-requests 768 --input-tokens 16 --output-tokens 128 \
    --ignore-eos --no-progress > $T/bench.txt 2>&1
  kill $SP; wait $SP || true
  awk '/engine profile/ {for (i = 1; i <= NF; i++) {if ($i == "tokens/events") te = $(i + 1); if ($i == "sequences") sq = $(i - 1);
       if ($i == "wall") w = $(i + 1)}; T += te; S += sq; W += w; n++}
       END {printf "run: %d windows, tokens/events %.2f us per sequence-step, step wall %.2f ms; ", n, T / S * 1000, W / n}' $T/serve.log
  grep -E "Output throughput" $T/bench.txt | tr -s ' '
done
rm -rf $T
