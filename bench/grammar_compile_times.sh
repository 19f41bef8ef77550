#!/bin/bash
# bench/grammar_compile_times.sh [IGNIS]: how long `ignis serve` takes to answer requests whose regex grammar or
# schema patterns are costly to compile or refuse (the compile runs on a validation worker, not the event loop),
# each timed by curl end to end on the default model; then how long /health takes while the slowest of them
# compiles (a loop that compiled would answer it only after the 422), and that the server still answers /health.
B=${1:-build-me/ignis}
P=${PORT:-3120}
$B serve --port $P > /tmp/grammar_times.log 2>&1 &
SP=$!
for i in $(seq 1 100); do curl -sf localhost:$P/health > /dev/null && break; sleep 0.1; done
t() { # label, body file
  local out s
  s=$(date +%s.%N)
  out=$(curl -s localhost:$P/generate -H 'content-type: application/json' --data-binary @$2 | head -c 150)
  printf '%-44s %6.3f s  %s\n' "$1" "$(echo "$(date +%s.%N) - $s" | bc)" "$out"
}
mk() { python3 -c "import json,sys; print(json.dumps({'inputs': 'x', 'parameters': {'max_new_tokens': 3, 'grammar': $1}}))" > $2; }
mk "{'type': 'regex', 'value': '(a|b)*a(a|b){20}'}" /tmp/g1.json
mk "{'type': 'regex', 'value': r'[-a]+(\W{2}|[-a][^\w]+(?:[^a]{1,3}\S){1,3}){1,3}'}" /tmp/g2.json
mk "{'type': 'regex', 'value': '.{1000}.{1000}.{1000}'}" /tmp/g3.json
mk "{'type': 'regex', 'value': 'a' * 70000}" /tmp/g4.json
mk "{'type': 'json', 'value': {'type': 'object', 'properties': {'p%d' % i: {'type': 'string', 'pattern': '(a|b)*a(a|b){11}'} for i in range(32)}}}" /tmp/g5.json
mk "{'type': 'json', 'value': {'type': 'object', 'properties': {'p%d' % i: {'type': 'string', 'pattern': '(a|b)*a(a|b){13}'} for i in range(32)}}}" /tmp/g6.json
t "regex past 65,536 states" /tmp/g1.json
t "regex with nested counted repeats" /tmp/g2.json
t "regex .{1000}.{1000}.{1000} (compiles)" /tmp/g3.json
t "regex of 70,000 bytes" /tmp/g4.json
t "schema, 32 patterns of 4,096 states" /tmp/g5.json
t "schema, a pattern past 8,192 states" /tmp/g6.json
# /health asked 20 ms after the slowest request went in
for k in 1 2 3; do
  s=$(date +%s.%N)
  curl -s localhost:$P/generate -H 'content-type: application/json' --data-binary @/tmp/g2.json > /dev/null &
  CP=$!
  sleep 0.02
  h=$(date +%s.%N)
  curl -sf localhost:$P/health > /dev/null
  he=$(date +%s.%N)
  wait $CP
  printf '/health during the slow compile: %6.3f s (the slow request: %6.3f s)\n' "$(echo "$he - $h" | bc)" "$(echo "$(date +%s.%N) - $s" | bc)"
done
curl -sf localhost:$P/health > /dev/null && echo "server still answers /health" || echo "server DOWN"
kill $SP; wait $SP 2>/dev/null
