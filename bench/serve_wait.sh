# bench/serve_wait.sh (sourced by the bench scripts that start ignis serve): wait_health PORT PID [TENTHS] waits
# until http://127.0.0.1:PORT/health answers 200 (returns 0), the server PID exits (1) or TENTHS tenths of a second
# pass (1; default 600).
wait_health() {
  local i
  for i in $(seq 1 "${3:-600}"); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/health")" = 200 ] && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
