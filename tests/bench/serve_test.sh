#!/usr/bin/env bash
# tests/bench/serve_test.sh: `ignis bench` against a real `ignis serve` on stories260K: 100 requests must
# complete with no error, and the SVG must be well-formed XML and the JSON must parse.
# Registered in ctest as bench_serve. Usage:
#   tests/bench/serve_test.sh [IGNIS_BINARY] [SHARED_DIR] [WORK_DIR]
# defaults: build/ignis, ../shared beside the checkout, a fresh temporary folder.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
IGNIS=${1:-$ROOT/build/ignis}
SHARED=${2:-$ROOT/../shared}
WORK=${3:-$(mktemp -d)}
MODEL=$SHARED/models/stories260K
[ -x "$IGNIS" ] || { echo "serve_test: no ignis binary at $IGNIS" >&2; exit 2; }
[ -d "$MODEL" ] || { echo "serve_test: no model at $MODEL" >&2; exit 2; }
mkdir -p "$WORK"

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
URL=http://127.0.0.1:$PORT
"$IGNIS" serve --model-id "$MODEL" --port "$PORT" >"$WORK/serve.log" 2>&1 &
SERVER=$!
stop_server() {
  if kill -0 "$SERVER" 2>/dev/null; then
    kill "$SERVER"
    for _ in $(seq 50); do kill -0 "$SERVER" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$SERVER" 2>/dev/null && kill -9 "$SERVER"
    wait "$SERVER" 2>/dev/null || true
  fi
}
trap stop_server EXIT

# wait for GET /health to answer 200 (60 s at most)
ok=0
for _ in $(seq 600); do
  if ! kill -0 "$SERVER" 2>/dev/null; then
    echo "serve_test: ignis serve exited early:" >&2
    tail -20 "$WORK/serve.log" >&2
    exit 1
  fi
  if python3 -c 'import sys, urllib.request; sys.exit(0 if urllib.request.urlopen(sys.argv[1], timeout=1).status == 200 else 1)' \
      "$URL/health" 2>/dev/null; then
    ok=1
    break
  fi
  sleep 0.1
done
[ "$ok" = 1 ] || { echo "serve_test: /health never answered 200" >&2; tail -20 "$WORK/serve.log" >&2; exit 1; }

"$IGNIS" bench --url "$URL" --concurrency 8 --num-requests 100 --warmup 4 --input-tokens 16 \
  --output-tokens 16 --ignore-eos --seed 1 --timeout 60 --no-progress --fail-on-error \
  --json-out "$WORK/bench.json" --svg-out "$WORK/bench.svg"

python3 - "$WORK/bench.json" "$WORK/bench.svg" <<'PY'
import json, sys, xml.dom.minidom
r = json.load(open(sys.argv[1]))
s = r["summary"]
assert r["errors"]["total"] == 0, r["errors"]
assert s["completed"] == 100, s
assert s["output_tokens"] > 0, s
doc = xml.dom.minidom.parse(sys.argv[2])
assert doc.documentElement.tagName == "svg"
print("serve_test: ok: %d requests, %.1f output tok/s, TTFT p50 %.1f ms, ITL p50 %.2f ms"
      % (s["completed"], s["output_throughput"], s["ttft_ms"]["p50"], s["itl_ms"]["p50"]))
PY

# the same prompts counted by the local tokenizer (--model-id): the run says so, and the server counts the prompts'
# tokens as the local tokenizer did (its /tokenize and ours are one tokenizer here)
"$IGNIS" bench --url "$URL" --model-id "$MODEL" --concurrency 4 --num-requests 8 --input-tokens 16 \
  --output-tokens 4 --ignore-eos --seed 1 --timeout 60 --no-progress --fail-on-error --json-out "$WORK/bench_local.json"
python3 - "$WORK/bench_local.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
assert "by the local tokenizer" in r["prompts"], r["prompts"]
assert r["errors"]["total"] == 0 and r["summary"]["completed"] == 8, r["summary"]
ins = [q["input_tokens"] for q in r["requests"] if not q["warmup"]]
assert ins and all(n == 16 for n in ins), ins
print("serve_test: ok: --model-id counts prompts with the local tokenizer:", r["prompts"])
PY
stop_server
trap - EXIT
