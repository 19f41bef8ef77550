#!/bin/sh
# tests/fuzz/run_all.sh: builds every fuzz/fuzz_<module>_<what>.c target with clang's libFuzzer (a separate
# CMake build with IGNIS_FUZZ=ON) and runs each for SECONDS on its seed corpus (fuzz/corpus/<module>_<what>
# when present), with a fixed seed and a bounded number of runs so that CI replays the same inputs every
# time (longer exploratory runs: run a target by hand). A crash, leak or sanitizer report fails the test.
# The io targets have their own ctests.
# usage: run_all.sh SOURCE_DIR BUILD_DIR SECONDS          exits 77 (skipped) when clang is missing.
set -e
src=$1; out=$2/fuzz-build; secs=${3:-15}
CLANG=$(command -v clang || command -v clang-14 || true)
if [ -z "$CLANG" ]; then echo "clang not found: skipping the fuzz runs"; exit 77; fi
CC=$CLANG cmake -S "$src" -B "$out" -DIGNIS_FUZZ=ON -DIGNIS_CUDA=OFF -DIGNIS_TESTS=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
targets=""
for f in "$src"/fuzz/fuzz_*.c; do
  t=$(basename "$f" .c)
  case "$t" in fuzz_io_*) continue ;; esac
  targets="$targets $t"
done
# shellcheck disable=SC2086
cmake --build "$out" -j2 --target $targets >/dev/null
fail=0
for t in $targets; do
  name=${t#fuzz_}
  work="$out/run_$name"
  rm -rf "$work"; mkdir -p "$work/corpus"
  if [ -d "$src/fuzz/corpus/$name" ]; then cp "$src/fuzz/corpus/$name"/* "$work/corpus/" 2>/dev/null || true; fi
  if (cd "$work" && "$out/fuzz/$t" -seed=1 -runs=150000 -max_total_time="$secs" -rss_limit_mb=2048 -max_len=8192 \
        corpus >"$work/log" 2>&1); then
    echo "ok    $t ($(grep -c . "$work/log") log lines)"
  else
    echo "FAIL  $t"; tail -40 "$work/log"; fail=1
  fi
done
exit $fail
