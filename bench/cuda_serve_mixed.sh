#!/bin/bash
# bench/cuda_serve_mixed.sh: serving with clients out of step, on the GPU machine (the pack of bench/cuda_pack.sh
# with WITH_SERVE=1, the 8B-shape model in /tmp/l8b). Every request asks for its own number of output tokens
# (uniform in 128..384, EOS ignored; prompts of ~100 random words), so requests end and arrive at different steps
# and most decode steps also carry a new prompt, as in production, instead of the fixed-length bench's waves (all
# prompts, then pure decode steps). For each server variant in VARIANTS ("name:ENV=V,ENV=V;..."), ignis serve is
# started and ignis bench runs at each concurrency in LEVELS (REQS_PER_CLIENT x c requests).
#   VARIANTS="pick:IGNIS_CUDA_BI_TUNE=0;tuned:" LEVELS="64 256" bench/cuda_serve_mixed.sh
. "$(dirname "$0")/serve_wait.sh"
OUT=${OUT:-/tmp/mixed_out}
serve_setup
python3 - $OUT/prompts.jsonl <<'PY'
import json, random, sys
r = random.Random(7)
words = "the of and to in is was that for on with as by at from his her they which one you were all we when there can an your each about how up out them then she many some so these would other into has more two like him see time could no make than first been its who now people my made over did down only way find use may water long little very after words called just where most know get through back much before go good new write our used me man too any day same right look think also around another came come work three word must because does part even place well such here take why things help put years different away again off went old number great tell men say small every found still between name should home big give air line set own under read last never us left end along while might next sound".split()
with open(sys.argv[1], "w") as f:
    for i in range(4096):
        f.write(json.dumps({"prompt": " ".join(r.choice(words) for _ in range(100)), "output_tokens": r.randint(128, 384)}) + "\n")
PY
IFS=';' read -ra VS <<< "${VARIANTS:-default:}"
for v in "${VS[@]}"; do
  name=${v%%:*}; envs=${v#*:}
  ( IFS=',' read -ra ES <<< "$envs"
    for e in "${ES[@]}"; do [ -n "$e" ] && export "$e"; done
    IGNIS_PROFILE_STEPS=512 $PK/bin/ignis serve --model-id $M --device cuda --port 3005 --max-batch-total-tokens 196608 \
      --max-concurrent-requests 512 > $OUT/serve_$name.log 2>&1 &
    SP=$!
    wait_health 3005 $SP || { echo "$name: server did not start"; tail -3 $OUT/serve_$name.log; exit 1; }
    for c in ${LEVELS:-64 256}; do
      n=$((c * ${REQS_PER_CLIENT:-4}))
      timeout 300 $PK/bin/ignis bench --url http://127.0.0.1:3005 --concurrency $c --num-requests $n --warmup 8 \
        --prompts $OUT/prompts.jsonl --ignore-eos --no-progress > $OUT/bench_${name}_c$c.txt 2>&1
      echo "mixed $name c=$c n=$n: $(grep -E 'Output throughput|Failed' $OUT/bench_${name}_c$c.txt | tr -s ' ' | tr '\n' ' ')" \
           "$(grep -E '^(TTFT|ITL)' $OUT/bench_${name}_c$c.txt | awk '{print $1, "p50", $5, "ms"}' | tr '\n' ' ')"
    done
    kill $SP; wait $SP
    grep "engine profile" $OUT/serve_$name.log | tail -3 | sed "s/^/$name: /" )
done
