#!/bin/sh
# Builds fuzz/fuzz_io_<what>.c with clang's libFuzzer (outside the main build, so it runs in any build type)
# and runs it briefly on its seed corpus. Exits 77 (ctest: skipped) when clang is not installed.
# usage: run_fuzz.sh SOURCE_DIR BUILD_DIR SECONDS WHAT      (WHAT: safetensors | config)
set -e
src=$1; out=$2; secs=${3:-20}; what=${4:-safetensors}
CLANG=$(command -v clang || command -v clang-14 || true)
if [ -z "$CLANG" ]; then echo "clang not found: skipping the fuzz run"; exit 77; fi
dir="$out/fuzz_io_$what"
mkdir -p "$dir/corpus"
$CLANG -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -I"$src/src" \
  "$src/fuzz/fuzz_io_$what.c" "$src/src/io/safetensors.c" "$src/src/io/config.c" "$src/src/util/file.c" "$src/src/util/str.c" \
  $(pkg-config --cflags --libs jansson) -lm -o "$dir/fuzz_io_$what"
cp "$src"/fuzz/corpus/io_"$what"/* "$dir/corpus/"
"$dir/fuzz_io_$what" -seed=1 -max_total_time="$secs" -rss_limit_mb=1024 -max_len=4096 "$dir/corpus"
