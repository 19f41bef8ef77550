O=$OUT; python3 bench/cuda_llama8b.py save /tmp/l8b > $O/save.log 2>&1
mkdir -p /tmp/cudapack && tar -C /tmp/cudapack -xJf .dev/cudapack/pack.tar.xz; B=/tmp/cudapack/bin
for v in fused kernel fused kernel; do e=""; [ $v = kernel ] && e="IGNIS_CUDA_ATTN_COMBINE=kernel"
  env $e $B/cuda_batch /tmp/l8b --batch 1,64,256 --ctx 256 --steps 48 --modes 1 2>&1 | grep -E "^ *[0-9]+ " | awk -v n=$v '{printf "%s B=%s %s; ", n, $1, $3} END {print ""}'; done
for v in fused kernel; do e=""; [ $v = kernel ] && e="IGNIS_CUDA_ATTN_COMBINE=kernel"
  env $e timeout 100 ncu --clock-control none -k regex:"attn_(decode|combine)" --launch-skip 300 --launch-count 4 --section SpeedOfLight $B/cuda_batch /tmp/l8b --batch 256 --ctx 256 --steps 4 --modes 0 2>&1 | grep -E "^  void attn|Duration" | sed 's/(const.*//' | paste - - | awk -v n=$v '{print n, $0}'; done
