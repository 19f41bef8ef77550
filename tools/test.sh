#!/usr/bin/env bash
# tools/test.sh: the whole test suite, as CI runs it: every module built under AddressSanitizer +
# UndefinedBehaviorSanitizer and run with ctest (which prints the closing summary line). When nvcc is present the
# CUDA backend is also compiled (release, separate folder) and its tests run; they skip without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# npm test dependencies (oracles and real clients), from the committed lockfiles.
for d in tests/*/ tests/e2e/; do
  if [ -f "$d/package-lock.json" ] && [ ! -d "$d/node_modules" ]; then (cd "$d" && npm ci --no-audit --no-fund --loglevel=error); fi
done
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DIGNIS_SANITIZE=ON -DIGNIS_CUDA=OFF >/dev/null
cmake --build build-asan -j"$jobs"
if command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ]; then
  cmake -S . -B build-cuda -DCMAKE_BUILD_TYPE=Release -DIGNIS_CUDA=ON -DIGNIS_TESTS=ON >/dev/null
  cmake --build build-cuda -j"$jobs"
  (cd build-cuda && ctest -R '^cuda' --output-on-failure) || exit 1
fi
cd build-asan && ctest --output-on-failure -j"$jobs" --timeout 900
