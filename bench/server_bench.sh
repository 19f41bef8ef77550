#!/usr/bin/env bash
# bench/server_bench.sh: what the HTTP server and engine add per streamed token, and requests/s for short
# generations at 64 concurrent clients, on stories260K (CPU), measured with `ignis bench`.
#  1. one stream at a time, 256 tokens each: client-side inter-token latency vs the server's own
#     tgi_request_mean_time_per_token_duration (engine step incl. the model) -> the HTTP/SSE share;
#  2. 64 concurrent clients, 16 prompt + 16 new tokens: requests/s.
# Usage: bench/server_bench.sh [IGNIS_BINARY] [SHARED_DIR]   (a Release build: build/ignis)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
IGNIS=${1:-$ROOT/build/ignis}
SHARED=${2:-$ROOT/../shared}
MODEL=$SHARED/models/stories260K
WORK=$(mktemp -d)
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
URL=http://127.0.0.1:$PORT
"$IGNIS" serve --model-id "$MODEL" --port "$PORT" --hostname 127.0.0.1 --max-concurrent-requests 256 \
  >"$WORK/serve.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 300); do curl -sf "$URL/health" >/dev/null && break; sleep 0.1; done

metric() { curl -s "$URL/metrics" | awk -v k="$1" '$1 == k {print $2}'; }

"$IGNIS" bench --url "$URL" --concurrency 1 --num-requests 4 --input-tokens 16 --output-tokens 16 --ignore-eos \
  --no-progress >/dev/null 2>&1
s0=$(metric tgi_request_mean_time_per_token_duration_sum); c0=$(metric tgi_request_mean_time_per_token_duration_count)
"$IGNIS" bench --url "$URL" --concurrency 1 --num-requests 30 --input-tokens 16 --output-tokens 256 --ignore-eos \
  --seed 1 --no-progress --json-out "$WORK/single.json" >/dev/null 2>&1
s1=$(metric tgi_request_mean_time_per_token_duration_sum); c1=$(metric tgi_request_mean_time_per_token_duration_count)
"$IGNIS" bench --url "$URL" --concurrency 64 --num-requests 2000 --warmup 64 --input-tokens 16 --output-tokens 16 \
  --ignore-eos --seed 2 --no-progress --json-out "$WORK/c64.json" >/dev/null 2>&1

python3 - "$WORK/single.json" "$WORK/c64.json" "$s0" "$c0" "$s1" "$c1" <<'PY'
import json, sys
one, c64 = json.load(open(sys.argv[1]))["summary"], json.load(open(sys.argv[2]))["summary"]
s0, c0, s1, c1 = map(float, sys.argv[3:7])
engine_ms = (s1 - s0) / (c1 - c0) * 1e3
itl = one["itl_ms"]
per_tok = (one["e2e_ms"]["mean"] - one["ttft_ms"]["mean"]) / 255
print(f"single stream, 256 tokens x {one['completed']}: client ITL mean {itl['mean']:.3f} ms, p50 {itl['p50']:.3f} ms, "
      f"p99 {itl['p99']:.3f} ms; client (E2E - TTFT) / 255 = {per_tok:.3f} ms per token; server time per token "
      f"(engine + model) {engine_ms:.3f} ms; HTTP/SSE/client share ~{per_tok - engine_ms:.3f} ms per token")
print(f"64 clients, 16+16 tokens: {c64['completed']} requests, {c64['request_throughput']:.1f} req/s, "
      f"{c64['output_throughput']:.0f} output tok/s, TTFT p50 {c64['ttft_ms']['p50']:.1f} ms, "
      f"E2E p50 {c64['e2e_ms']['p50']:.1f} ms, errors {json.load(open(sys.argv[2]))['errors']['total']}")
PY
