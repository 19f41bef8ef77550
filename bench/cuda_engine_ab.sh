#!/bin/bash
# bench/cuda_engine_ab.sh: the pipelined engine (default) against the serial step (IGNIS_ENGINE_PIPELINE=0) on the
# GPU, through ignis serve on the 8B-shape model: (1) the same requests give the same output through both (greedy,
# seeded sampling, a stop sequence taken from the greedy text so that it matches, logprobs); (2) serving
# throughput at SERVE_LEVELS with the engine profile. Needs the pack of WITH_SERVE=1 bench/cuda_pack.sh and the
# model at /tmp/l8b (bench/cuda_llama8b.py save).
. "$(dirname "$0")/serve_wait.sh"
O=${OUT:-/tmp/cuda_out}
mkdir -p $O
PK=/tmp/cudapack
[ -f $PK/bin/ignis ] || { mkdir -p $PK && tar -C $PK -xJf .dev/cudapack/pack.tar.xz || exit 1; }
M=/tmp/l8b
[ -f $M/config.json ] || python3 bench/cuda_llama8b.py save $M > $O/save.log 2>&1
cp $PK/tok/tokenizer.json $PK/tok/tokenizer_config.json $M/
ldd $PK/bin/ignis | grep -q "not found" && export LD_LIBRARY_PATH=$PK/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
start() { # $1: IGNIS_ENGINE_PIPELINE value
  IGNIS_ENGINE_PIPELINE=$1 IGNIS_PROFILE_STEPS=${PROFILE_STEPS:-256} $PK/bin/ignis serve --model-id $M --device cuda \
    --port 3000 --max-batch-total-tokens 131072 --max-concurrent-requests 512 > $O/serve_p$1.log 2>&1 &
  SP=$!
  wait_health 3000 $SP
}
gen() { curl -s -m 30 -X POST http://127.0.0.1:3000/generate -H 'Content-Type: application/json' -d "$1"; echo; }
requests() { # the same requests; $1: file; the stop string comes from the first greedy text ($STOP)
  {
    gen '{"inputs":"The capital of France is","parameters":{"max_new_tokens":40,"details":true,"decoder_input_details":true}}'
    gen '{"inputs":"Once upon a time","parameters":{"max_new_tokens":40,"do_sample":true,"seed":7,"temperature":0.8,"top_k":40,"top_p":0.9,"details":true}}'
    gen "{\"inputs\":\"The capital of France is\",\"parameters\":{\"max_new_tokens\":40,\"stop\":[$STOP],\"details\":true}}"
    gen '{"inputs":"1, 2, 3,","parameters":{"max_new_tokens":24,"repetition_penalty":1.3,"top_n_tokens":3,"details":true}}'
  } > $1
}
stop_server() { kill $SP 2>/dev/null; for i in $(seq 1 50); do kill -0 $SP 2>/dev/null || return 0; sleep 0.1; done
  echo "server did not stop in 5 s: killed"; kill -9 $SP 2>/dev/null; }
for p in ${PIPELINES:-0 1}; do
  start $p || { echo "serve (pipeline $p) did not start"; tail -5 $O/serve_p$p.log; exit 1; }
  if [ -z "$STOP" ]; then
    t=$(gen '{"inputs":"The capital of France is","parameters":{"max_new_tokens":40}}' | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["generated_text"][12:20]))')
    STOP=$t
  fi
  requests $O/req_p$p.json
  # concurrent copies of the same requests, so that they share steps with others
  cp=""
  for k in 1 2 3 4; do requests $O/req_p${p}_c$k.json & cp="$cp $!"; done
  wait $cp # (not a bare wait: the server is a child too)
  echo "pipeline=$p: requests done"
  for c in ${SERVE_LEVELS:-16 64 256}; do
    n=$((c < 4 ? 4 : c)); w=$((c < 8 ? c : 8))
    timeout ${BENCH_TIMEOUT:-60} $PK/bin/ignis bench --url http://127.0.0.1:3000 --concurrency $c --num-requests $n --warmup $w \
      --input-tokens 128 --output-tokens 256 --ignore-eos --no-progress > $O/bench_p${p}_c$c.txt 2>&1
    echo "pipeline=$p c=$c: $(grep -E 'Output throughput|Failed' $O/bench_p${p}_c$c.txt | tr -s ' ' | tr '\n' ' ')" \
         "$(grep -E '^(TTFT|ITL)' $O/bench_p${p}_c$c.txt | awk '{print $1, "p50", $5, "ms"}' | tr '\n' ' ')"
  done
  stop_server
  grep "engine profile" $O/serve_p$p.log | tail -4
  grep -vE "engine profile|loading weights" $O/serve_p$p.log | tail -8
done
echo "stop string: $STOP"
for f in $O/req_p1.json $O/req_p1_c*.json $O/req_p0_c*.json; do
  [ -f $f ] || continue
  cmp -s $f $O/req_p0.json && echo "same: $(basename $f)" || { echo "DIFFERENT: $(basename $f)"; diff <(head -c 600 $f) <(head -c 600 $O/req_p0.json) | head -6; }
done
head -c 300 $O/req_p0.json; echo
sed -n 3p $O/req_p0.json | head -c 300; echo
