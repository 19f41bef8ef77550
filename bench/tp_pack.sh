#!/bin/bash
# bench/tp_pack.sh: builds the tensor-parallel GPU checks from a clean snapshot of HEAD (others' half-done work in
# the tree cannot break it) and packs them with stories260K into the git-ignored .dev/tp/pack.tar.xz, small enough
# for a device call to carry. On the GPU machine (device tool, carry [".dev/tp"]):
#   mkdir -p /tmp/tp && tar -C /tmp/tp -xJf .dev/tp/pack.tar.xz && cd /tmp/tp &&
#   bin/cpu_make_model /tmp/l8b4 4096 14336 4 32 8 128256 &&            # the 8B layer shape, 4 layers
#   bin/test_tp_cuda /tmp/tp/stories260K /tmp/l8b4 &&                    # N=1,2,4 on one GPU; NCCL over all GPUs
#   bin/tp_bench /tmp/l8b4 --shards 2 --batch 1,16                        # decode ms/step (add --same-gpu on one GPU)
set -e
cd "$(dirname "$0")/.."
W=$(mktemp -d)
mkdir -p "$W/main" .dev/tp
ln -s "$(cd ../shared && pwd)" "$W/shared"
git archive HEAD | tar -x -C "$W/main"
cmake -S "$W/main" -B "$W/main/build" -DIGNIS_CUDA=ON -DIGNIS_MODULES="util;io;backend;model" >/dev/null
cmake --build "$W/main/build" -j"$(nproc)" --target test_tp_cuda tp_bench >/dev/null
mkdir -p "$W/pack/bin" "$W/pack/stories260K"
cp "$W/main/build/tests/tp/test_tp_cuda" "$W/main/build/src/model/tp_bench" "$W/pack/bin/"
cc -O2 bench/cpu_make_model.c -o "$W/pack/bin/cpu_make_model" -lm
strip "$W/pack/bin/"*
S=../shared/models/stories260K
cp $S/config.json $S/generation_config.json $S/model.safetensors "$W/pack/stories260K/"
tar -C "$W/pack" -cf - . | xz -9 >.dev/tp/pack.tar.xz
rm -rf "$W"
ls -la .dev/tp/pack.tar.xz
