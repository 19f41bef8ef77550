#!/bin/sh
# Builds fuzz/fuzz_io_safetensors with clang's libFuzzer (outside the main build, so it runs in any build
# type) and runs it briefly on the seed corpus. Exits 77 (ctest: skipped) when clang is not installed.
# usage: run_fuzz.sh SOURCE_DIR BUILD_DIR SECONDS
set -e
src=$1; out=$2; secs=${3:-20}
CLANG=$(command -v clang || command -v clang-14 || true)
if [ -z "$CLANG" ]; then echo "clang not found: skipping the fuzz run"; exit 77; fi
mkdir -p "$out/fuzz_io"
$CLANG -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -I"$src/src" \
  "$src/fuzz/fuzz_io_safetensors.c" "$src/src/io/safetensors.c" "$src/src/util/file.c" \
  $(pkg-config --cflags --libs jansson) -o "$out/fuzz_io/fuzz_io_safetensors"
mkdir -p "$out/fuzz_io/corpus"
cp "$src"/fuzz/corpus/io_safetensors/* "$out/fuzz_io/corpus/"
"$out/fuzz_io/fuzz_io_safetensors" -max_total_time="$secs" -rss_limit_mb=1024 -max_len=4096 "$out/fuzz_io/corpus"
