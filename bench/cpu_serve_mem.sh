#!/bin/bash
# bench/cpu_serve_mem.sh: does ignis serve hold memory per request? On the CPU backend with a small model:
# ROUNDS rounds of N requests (16 prompt + 16 output tokens, 64 concurrent, a connection each), and after each
# the process RSS and glibc's heap in use / free kept (bench/mallinfo_preload.c, read on SIGUSR2).
#   bench/cpu_serve_mem.sh IGNIS_BINARY MODEL_DIR [ROUNDS] [N]
set -e
IGNIS=${1:?ignis binary}; M=${2:?model dir}; ROUNDS=${3:-6}; N=${4:-3000}; P=${PORT:-3190}
T=$(mktemp -d)
cc -shared -fPIC -O2 -o $T/mi.so "$(dirname "$0")/mallinfo_preload.c"
LD_PRELOAD=$T/mi.so $IGNIS serve --model-id $M --device cpu --port $P --max-concurrent-requests 512 > $T/serve.log 2>&1 &
SP=$!
for i in $(seq 1 300); do [ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$P/health)" = 200 ] && break; sleep 0.1; done
mb() { $IGNIS bench --url http://127.0.0.1:$P --concurrency 64 --num-requests $1 --input-tokens 16 --output-tokens 16 \
         --ignore-eos --no-progress --no-keep-alive > $T/bench.txt 2>&1; }
snap() { sleep 1.5; kill -USR2 $SP; sleep 0.3; echo "$1: RSS $(ps -o rss= -p $SP | tr -d ' ') KiB, $(grep MALLINFO $T/serve.log | tail -1 | cut -d' ' -f2-), $(grep -E 'Failed' $T/bench.txt | tr -s ' ')"; }
mb 200; snap "after 200 warm-up requests"
for k in $(seq 1 $ROUNDS); do mb $N; snap "after +$N x$k"; done
kill $SP; wait $SP || true
rm -rf $T
