#!/bin/bash
# bench/cuda_prefix.sh: the prefix cache (--prefix-caching) on the GPU machine (the pack of bench/cuda_pack.sh with
# WITH_SERVE=1, the 8B-shape model in /tmp/l8b). Two parts, each on a server without the cache ("cold") and one with
# it ("warm"):
#  1. exactness: prompts sharing a ~1,000-token "system prompt", with tails of 1..400 tokens, some repeated, greedy
#     and seeded, 16 clients at once; then a second turn of some (prompt + first answer + more). Every token id must
#     be the same on both servers. (ignis serve keeps a prompt in one chunk, as TGI: --max-batch-prefill-tokens must
#     hold --max-input-tokens; the scheduler tests cover reuse that ends near a chunk boundary.)
#  2. speed (default chunk): TTFT of one client sending the system prompt with a new 20-word question, 24 times;
#     then ignis bench at 64 clients over 512 such prompts (128 output tokens, EOS ignored).
. "$(dirname "$0")/serve_wait.sh"
OUT=${OUT:-/tmp/prefix_out}
serve_setup
cat > $OUT/client.py <<'PY'
import json, random, sys, threading, time, urllib.request
URL = "http://127.0.0.1:3005"
WORDS = ("the of and to in is was that for on with as by at from his her they which one you were all we when there "
         "can an your each about how up out them then she many some so these would other into has more two like him "
         "see time could no make than first been its who now people my made over did down only way find use may water "
         "long little very after words called just where most know get through back much before go good new write "
         "our used me man too any day same right look think also around another came come work three word must").split()
r = random.Random(11)
SYSTEM = "System: " + " ".join(r.choice(WORDS) for _ in range(800)) + "\n"
def words(n, rr): return " ".join(rr.choice(WORDS) for _ in range(n))
def post(path, body):
    req = urllib.request.Request(URL + path, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=300) as f: return json.loads(f.read())
def gen(prompt, i, n=48):
    p = {"max_new_tokens": n, "details": True}
    if i % 2: p.update(do_sample=True, temperature=0.9, top_k=50, seed=1000 + i)
    j = post("/generate", {"inputs": prompt, "parameters": p})
    return [t["id"] for t in j["details"]["tokens"]], j["generated_text"]
def run_all(prompts, conc=16):
    res = [None] * len(prompts); nxt = [0]; lock = threading.Lock()
    def worker():
        while True:
            with lock:
                k = nxt[0]; nxt[0] += 1
            if k >= len(prompts): return
            res[k] = gen(prompts[k], k)
    ts = [threading.Thread(target=worker) for _ in range(conc)]
    [t.start() for t in ts]; [t.join() for t in ts]
    return res
mode, out = sys.argv[1], sys.argv[2]
if mode == "exact":
    rr = random.Random(5)
    first = [SYSTEM + "User %d: " % i + words(rr.choice([1, 3, 7, 12, 20, 40, 90, 200, 300]), rr) for i in range(40)]
    first += first[:8]  # repeats
    a = run_all(first)
    cold = json.load(open(sys.argv[3])) if len(sys.argv) > 3 else None
    texts = [x[1] for x in (cold["first"] if cold else a)]
    second = [first[i] + texts[i] + "\nUser: " + words(10 + i, rr) for i in range(0, 40, 3)]
    b = run_all(second)
    json.dump({"first": a, "second": b}, open(out, "w"))
elif mode == "ttft":
    rr = random.Random(9); ts = []
    for i in range(24):
        body = json.dumps({"inputs": SYSTEM + "User: " + words(20, rr), "parameters": {"max_new_tokens": 2}}).encode()
        req = urllib.request.Request(URL + "/generate_stream", body, {"Content-Type": "application/json"})
        t0 = time.perf_counter()
        with urllib.request.urlopen(req, timeout=60) as f:
            while not f.readline().startswith(b"data:"): pass
            ts.append((time.perf_counter() - t0) * 1e3)
            f.read()
    s = sorted(ts[4:])  # the first ones fill the cache
    print("TTFT ms over 20 requests (after 4): p50 %.2f min %.2f max %.2f (first request %.2f)" % (s[len(s) // 2], s[0], s[-1], ts[0]))
elif mode == "benchprompts":
    rr = random.Random(13)
    with open(out, "w") as f:
        for i in range(2048): f.write(json.dumps({"prompt": SYSTEM + "User: " + words(20, rr), "output_tokens": 128}) + "\n")
PY
python3 $OUT/client.py benchprompts $OUT/bench.jsonl
start() { # name, flags...
  local name=$1; shift
  $PK/bin/ignis serve --model-id $M --device cuda --port 3005 --max-batch-total-tokens 196608 \
    --max-concurrent-requests 512 "$@" > $OUT/serve_$name.log 2>&1 &
  SP=$!
  wait_health 3005 $SP || { echo "$name: server did not start"; tail -3 $OUT/serve_$name.log; exit 1; }
}
stop() { kill $SP; wait $SP; }
metrics() { curl -s http://127.0.0.1:3005/metrics | grep -E "^ignis_(prefix|kv_blocks)" | tr '\n' ' '; echo; }
for m in cold warm; do
  f="--prefix-caching false"; [ $m = warm ] && f="--prefix-caching true"
  start exact_$m $f
  python3 $OUT/client.py exact $OUT/ids_$m.json $( [ $m = warm ] && echo $OUT/ids_cold.json ) || echo "exact $m: client failed"
  echo "exact $m: $(metrics)"
  stop
done
python3 - $OUT/ids_cold.json $OUT/ids_warm.json <<'PY'
import json, sys
a, b = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
for part in ("first", "second"):
    n = len(a[part]); same = sum(x[0] == y[0] for x, y in zip(a[part], b[part]))
    bad = [i for i, (x, y) in enumerate(zip(a[part], b[part])) if x[0] != y[0]]
    print("exactness %s turn: %d of %d requests give the same token ids with the prefix cache%s" % (part, same, n, (" (differ: %s)" % bad[:10]) if bad else ""))
PY
for m in cold warm; do
  f="--prefix-caching false"; [ $m = warm ] && f="--prefix-caching true"
  start speed_$m $f
  echo "speed $m: $(python3 $OUT/client.py ttft x)"
  timeout 300 $PK/bin/ignis bench --url http://127.0.0.1:3005 --concurrency 64 --num-requests 512 --warmup 8 \
    --prompts $OUT/bench.jsonl --ignore-eos --no-progress > $OUT/bench_$m.txt 2>&1
  echo "speed $m, 64 clients: $(grep -E 'Output throughput|Failed' $OUT/bench_$m.txt | tr -s ' ' | tr '\n' ' ')" \
       "$(grep -E '^(TTFT|ITL)' $OUT/bench_$m.txt | awk '{print $1, "p50", $5, "ms"}' | tr '\n' ' ')"
  echo "speed $m: $(metrics)"
  stop
done
