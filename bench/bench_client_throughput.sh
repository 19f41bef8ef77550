#!/usr/bin/env bash
# bench/bench_client_throughput.sh: how many streamed tokens/s `ignis bench` itself can take in, measured
# against the scripted fake server (tests/bench/fake_server.c) on loopback, so the client is known not to be
# the bottleneck of a benchmark. Builds util+bench in Release into build-bench-rel unless BUILD is given.
#   bench/bench_client_throughput.sh [zero|paced]    (default: both)
# zero:  the server writes tokens with no delay (one token per write, as fast as its loop turns).
# paced: TTFT 0, ITL 1 ms per stream, 128 streams: ~128k tokens/s offered, each token its own TCP segment.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build-bench-rel}
if [ ! -x "$BUILD/ignis_bench_cli" ] || [ ! -x "$BUILD/fake_server" ]; then
  cmake -S "$ROOT" -B "$BUILD" -DIGNIS_CUDA=OFF -DIGNIS_MODULES="util;bench" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$BUILD" -j"$(nproc)" --target ignis_bench_cli fake_server >/dev/null
fi
MODES=${1:-"zero paced"}
for mode in $MODES; do
  case $mode in
    zero)  SERVER_ARGS=(--ttft-ms 0 --itl-ms 0); BENCH_ARGS=(--concurrency 64 --num-requests 2000 --warmup 64) ;;
    paced) SERVER_ARGS=(--ttft-ms 0 --itl-ms 1); BENCH_ARGS=(--concurrency 128 --num-requests 1000 --warmup 128) ;;
    *) echo "unknown mode $mode" >&2; exit 2 ;;
  esac
  portfile=$(mktemp)
  "$BUILD/fake_server" --port 0 "${SERVER_ARGS[@]}" >"$portfile" &
  spid=$!
  for _ in $(seq 50); do [ -s "$portfile" ] && break; sleep 0.1; done
  port=$(awk '/^PORT/ {print $2}' "$portfile")
  rm -f "$portfile"
  echo "== $mode: fake_server ${SERVER_ARGS[*]}; ignis bench ${BENCH_ARGS[*]} --input-tokens 32 --output-tokens 256"
  timefile=$(mktemp)
  TIMER=()
  [ -x /usr/bin/time ] && TIMER=(/usr/bin/time -o "$timefile" -f "client CPU: %U s user + %S s sys over %e s wall (includes prompt preparation)")
  "${TIMER[@]}" "$BUILD/ignis_bench_cli" --url "http://127.0.0.1:$port" "${BENCH_ARGS[@]}" --input-tokens 32 \
    --output-tokens 256 --no-progress --fail-on-error | grep -E "Successful|Failed|Duration|Output thr|TTFT|ITL"
  cat "$timefile"
  rm -f "$timefile"
  kill "$spid"
  wait "$spid" || true
done
