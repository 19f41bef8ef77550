#!/bin/bash
# bench/cuda_spec_check.sh: ignis serve --speculate N (n-gram drafts) on the GPU against the same server without it:
# the same texts for the prompts below (greedy, one request at a time; then all at once beside seeded sampled ones at
# temperatures 0.3 to 0.7, which draft too), and ignis bench's greedy serving workload at CLIENTS concurrent clients
# (tok/s, ITL), with the draft counters from /metrics.
# Needs the WITH_SERVE=1 pack and /tmp/l8b (bench/cuda_llama8b.py save), or SPEC_MODEL=DIR (e.g. models/kjv-llama,
# a trained model whose text repeats). SPEC (default 4), CLIENTS ("1 16").
. "$(dirname "$0")/serve_wait.sh"
PK=/tmp/cudapack
[ -f $PK/bin/ignis ] || { mkdir -p $PK && tar -C $PK -xJf .dev/cudapack/pack.tar.xz || exit 1; }
M=${SPEC_MODEL:-/tmp/l8b}
if [ -z "$SPEC_MODEL" ]; then # the random 8B model with Llama 3's tokenizer; SPEC_MODEL=DIR: a model with its own
  [ -f $M/config.json ] || python3 bench/cuda_llama8b.py save $M > /dev/null 2>&1
  cp $PK/tok/tokenizer.json $PK/tok/tokenizer_config.json $M/ 2>/dev/null
fi
ldd $PK/bin/ignis | grep -q "not found" && export LD_LIBRARY_PATH=$PK/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
T=$(mktemp -d)
prompts=("The capital of France is" "one two three four one two three four one two" "def f(x):\n    return x\n\ndef g(x):\n    return"
         "Once upon a time there was a" "a b c d e f g a b c d e f g a b c")
for spec in 0 ${SPEC:-4}; do
  $PK/bin/ignis serve --model-id $M --device cuda --port 3000 --max-batch-total-tokens 131072 --speculate $spec > $T/serve_$spec.log 2>&1 &
  SP=$!
  wait_health 3000 $SP || { echo "[speculate $spec] the server did not come up"; tail -3 $T/serve_$spec.log; continue; }
  for i in "${!prompts[@]}"; do # one at a time
    curl -s -m 60 -X POST http://127.0.0.1:3000/generate -H 'Content-Type: application/json' \
      -d "{\"inputs\":\"${prompts[$i]}\",\"parameters\":{\"max_new_tokens\":160,\"details\":true}}" > $T/one_${spec}_$i.json
  done
  pids=""
  for i in "${!prompts[@]}"; do # all at once, beside seeded sampled requests
    curl -s -m 60 -X POST http://127.0.0.1:3000/generate -H 'Content-Type: application/json' \
      -d "{\"inputs\":\"${prompts[$i]}\",\"parameters\":{\"max_new_tokens\":160}}" > $T/all_${spec}_$i.json &
    pids="$pids $!"
    curl -s -m 60 -X POST http://127.0.0.1:3000/generate -H 'Content-Type: application/json' \
      -d "{\"inputs\":\"${prompts[$i]}\",\"parameters\":{\"max_new_tokens\":100,\"do_sample\":true,\"seed\":$i,\"temperature\":0.$((3 + i))}}" > $T/smp_${spec}_$i.json &
    pids="$pids $!"
  done
  wait $pids
  for c in ${CLIENTS:-1 16}; do
    n=$((c < 4 ? 4 : c))
    $PK/bin/ignis bench --url http://127.0.0.1:3000 --concurrency $c --num-requests $n --warmup $((c < 8 ? c : 8)) \
      --input-tokens 128 --output-tokens 256 --ignore-eos --no-progress --seed $c > $T/bench_${spec}_$c.txt 2>&1
    echo "[speculate $spec] c=$c: $(grep -E 'Output throughput|Failed' $T/bench_${spec}_$c.txt | tr -s ' ' | tr '\n' ' ') $(grep -E '^(TTFT|ITL)' $T/bench_${spec}_$c.txt | awk '{print $1, "p50", $5, "ms"}' | tr '\n' ' ')"
  done
  echo "[speculate $spec] $(curl -s http://127.0.0.1:3000/metrics | grep -iE '^(ignis|tgi)_[a-z_]*(spec|draft)[a-z_]* ' | tr '\n' ' ')"
  grep -iE "engine ready|speculat" $T/serve_$spec.log | head -2 | cut -c1-240
  kill $SP; wait $SP 2>/dev/null
done
same=0; diff=0
for f in $T/one_0_*.json $T/all_0_*.json $T/smp_0_*.json; do
  g=${f/_0_/_${SPEC:-4}_}
  a=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["generated_text"])' $f 2>&1)
  b=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["generated_text"])' $g 2>&1)
  if [ "$a" = "$b" ] && [ -n "$a" ]; then same=$((same + 1)); else diff=$((diff + 1)); echo "differs: $(basename $f): '${a:0:60}' vs '${b:0:60}'"; fi
done
echo "texts with and without --speculate: $same the same, $diff different"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("sample text:", repr(d["generated_text"][:100]))' $T/one_0_1.json
