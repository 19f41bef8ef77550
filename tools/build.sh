#!/usr/bin/env bash
# tools/build.sh: release build of the ignis binary into build/ (CUDA backend included when nvcc is found).
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build build -j"$(nproc)" --target ignis
