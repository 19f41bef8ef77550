#!/bin/bash
# bench/cuda_repeat_check.sh: the same request several times in a row through ignis serve --device cuda must give
# the same text (REQS: plain, lp = with prompt logprobs, details, long, busy = while 12 other requests run, seeded,
# busyseeded). Per server flag set (SERVE_VARIANTS, ';'-separated; default: graphs on, --cuda-graphs 0,
# IGNIS_CUDA_PDL=0, IGNIS_ENGINE_PIPELINE=0). A busy request equals the plain one only with
# the default IGNIS_CUDA_BATCH_INVARIANT (not with =0, where the products' kernels depend on the step's row count). Needs the WITH_SERVE=1 pack and /tmp/l8b (bench/cuda_llama8b.py save).
. "$(dirname "$0")/serve_wait.sh"
PK=/tmp/cudapack
[ -f $PK/bin/ignis ] || { mkdir -p $PK && tar -C $PK -xJf .dev/cudapack/pack.tar.xz || exit 1; }
M=/tmp/l8b
[ -f $M/config.json ] || python3 bench/cuda_llama8b.py save $M > /dev/null 2>&1
cp $PK/tok/tokenizer.json $PK/tok/tokenizer_config.json $M/
ldd $PK/bin/ignis | grep -q "not found" && export LD_LIBRARY_PATH=$PK/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
IFS=';' read -ra VARS <<< "${SERVE_VARIANTS:-default;--cuda-graphs 0;IGNIS_CUDA_PDL=0;IGNIS_ENGINE_PIPELINE=0}"
for v in "${VARS[@]}"; do
  envs=""; flags=""
  case "$v" in default) ;; --*) flags="$v" ;; *) envs="$v" ;; esac
  env $envs $PK/bin/ignis serve --model-id $M --device cuda --port 3000 --max-batch-total-tokens 131072 $flags > /tmp/rc_serve.log 2>&1 &
  SP=$!
  wait_health 3000 $SP || echo "[$v] the server did not come up"
  out=""
  for k in ${REQS:-plain lp plain plain}; do
    case $k in
      plain) prm='"max_new_tokens":24' ;;
      details) prm='"max_new_tokens":24,"details":true' ;;
      lp) prm='"max_new_tokens":24,"details":true,"decoder_input_details":true' ;;
      long) prm='"max_new_tokens":60' ;;
      busy) prm='"max_new_tokens":24' ;; # the plain request while 12 others with other prompts run
      seeded|busyseeded) prm='"max_new_tokens":24,"do_sample":true,"seed":11,"temperature":0.9,"top_k":50' ;;
    esac
    bp=""
    if [ "${k#busy}" != "$k" ]; then
      for j in $(seq 1 12); do
        curl -s -m 30 -X POST http://127.0.0.1:3000/generate -H 'Content-Type: application/json' \
          -d "{\"inputs\":\"Request $j of the crowd: $(printf 'word%.0s ' $(seq 1 $((j * 7))))\",\"parameters\":{\"max_new_tokens\":$((20 + j * 5))}}" > /dev/null &
        bp="$bp $!"
      done
      sleep 0.05
    fi
    body="{\"inputs\":\"${PROMPT:-The capital of France is}\",\"parameters\":{$prm}}"
    t=$(curl -s -m 30 -X POST http://127.0.0.1:3000/generate -H 'Content-Type: application/json' -d "$body" | python3 -c 'import json,sys; print(json.load(sys.stdin)["generated_text"][:60])')
    [ -n "$bp" ] && wait $bp
    echo "[$v] $k: $t"
  done
  kill $SP; for i in $(seq 1 50); do kill -0 $SP 2>/dev/null || break; sleep 0.1; done; kill -9 $SP 2>/dev/null
done
