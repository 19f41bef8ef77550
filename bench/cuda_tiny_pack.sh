#!/bin/bash
# bench/cuda_tiny_pack.sh: packs what bench/cuda_tiny_check.sh needs on the GPU machine (test_cuda_ops,
# cuda_tiny_check, stories260K without its tokenizer) into the git-ignored .dev/cudatiny/pack.tar.xz (~2 MB).
# Build first: cmake -S . -B build-cudafix -DIGNIS_CUDA=ON -DIGNIS_MODULES="util;io;tok;backend;model;engine"
#              cmake --build build-cudafix -j2        (BUILD=other/dir to pack another build)
set -e
cd "$(dirname "$0")/.."
B=${BUILD:-build-cudafix}
T=$(mktemp -d)
mkdir -p $T/bin $T/stories260K .dev/cudatiny
cp $B/tests/cuda/test_cuda_ops $B/src/backend/cuda_tiny_check $T/bin/
strip $T/bin/*
S=../shared/models/stories260K
cp $S/config.json $S/generation_config.json $S/model.safetensors $T/stories260K/
git rev-parse --short HEAD > $T/commit 2>/dev/null || true
tar -C $T -cf - . | xz -9e > .dev/cudatiny/pack.tar.xz
rm -rf $T
ls -la .dev/cudatiny/pack.tar.xz
