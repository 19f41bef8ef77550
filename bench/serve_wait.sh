# bench/serve_wait.sh (sourced by the bench scripts that start ignis serve): wait_health PORT PID [TENTHS] waits
# until http://127.0.0.1:PORT/health answers 200 (returns 0), the server PID exits (1) or TENTHS tenths of a second
# pass (1; default 600). serve_setup (GPU machine): unpacks the pack of bench/cuda_pack.sh into $PK (/tmp/cudapack),
# makes the 8B-shape model in $M (MODEL, default /tmp/l8b) with the pack's tokenizer, and the pack's libraries
# reachable; creates $OUT.
serve_setup() {
  PK=/tmp/cudapack
  [ -d $PK/bin ] || { mkdir -p $PK && tar -C $PK -xJf .dev/cudapack/pack.tar.xz; } || exit 1
  M=${MODEL:-/tmp/l8b}
  mkdir -p $OUT
  [ -f $M/config.json ] || python3 bench/cuda_llama8b.py save $M > $OUT/l8b_save.log 2>&1
  cp $PK/tok/tokenizer.json $PK/tok/tokenizer_config.json $M/
  ldd $PK/bin/ignis | grep -q "not found" && export LD_LIBRARY_PATH=$PK/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
}
wait_health() {
  local i
  for i in $(seq 1 "${3:-600}"); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/health")" = 200 ] && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
