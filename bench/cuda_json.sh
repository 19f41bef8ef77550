#!/bin/bash
# bench/cuda_json.sh: JSON mode on the GPU machine (the pack of bench/cuda_pack.sh with WITH_SERVE=1, the 8B-shape
# model with Llama 3's tokenizer, 128,256 tokens): one client streams 200 tokens with and without
# grammar {"type": "json", "value": {}} (greedy and seeded), then a chat request with response_format json_object;
# prints the inter-token latency (p50) of each and whether every JSON-mode text is one JSON object (or, ended by the
# length, a prefix of one), and the engine's log line for the vocabulary trie.
. "$(dirname "$0")/serve_wait.sh"
OUT=${OUT:-/tmp/json_out}
serve_setup
$PK/bin/ignis serve --model-id $M --device cuda --port 3005 --max-batch-total-tokens 65536 > $OUT/serve.log 2>&1 &
SP=$!
wait_health 3005 $SP || { echo "server did not start"; tail -3 $OUT/serve.log; exit 1; }
python3 - <<'PY'
import json, time, urllib.request
URL = "http://127.0.0.1:3005"
def stream(params, inputs="Write a JSON object about a shepherd:"):
    body = json.dumps({"inputs": inputs, "parameters": params}).encode()
    req = urllib.request.Request(URL + "/generate_stream", body, {"Content-Type": "application/json"})
    ts, last = [], None
    with urllib.request.urlopen(req, timeout=120) as f:
        for line in f:
            if not line.startswith(b"data:"): continue
            ts.append(time.perf_counter()); last = json.loads(line[5:])
    itl = sorted(b - a for a, b in zip(ts, ts[1:]))
    return (itl[len(itl) // 2] * 1e3 if itl else 0), last
def prefix_ok(t):
    # a prefix of one JSON object: some completion of it parses (the open escape, string, literal or number
    # finished, then a value for a key, then the closers of the open containers)
    st, instr, esc, exp_key = [], False, False, False
    for c in t:
        if instr:
            if esc: esc = False
            elif c == "\\": esc = True
            elif c == '"': instr = False
            continue
        if c == '"': instr = True; exp_key = False
        elif c == "{": st.append(c); exp_key = True
        elif c == "[": st.append(c)
        elif c in "}]": st.pop()
    closers = "".join("}" if c == "{" else "]" for c in reversed(st))
    for fix in ("", "n", "0", "00", "000", "0000"):
        for q in ('"', ""):
            for mid in ("", ":null", "null", "0", ".0", "e0", "ue", "e", "rue", "ull", "ll", "l", "alse", "lse", "se"):
                for mid2 in ("", ":null"):
                    try:
                        json.loads(t + fix + q + mid + mid2 + closers); return True
                    except Exception: pass
    return False
for name, p in [("plain greedy", {"max_new_tokens": 200}),
                ("json greedy", {"max_new_tokens": 200, "grammar": {"type": "json", "value": {}}}),
                ("json seeded", {"max_new_tokens": 200, "do_sample": True, "seed": 5, "grammar": {"type": "json", "value": {}}}),
                ("json seeded again", {"max_new_tokens": 200, "do_sample": True, "seed": 5, "grammar": {"type": "json", "value": {}}})]:
    itl, last = stream(dict(p, details=True))
    t = last["generated_text"]; fin = last["details"]["finish_reason"]
    ok = ""
    if "grammar" in p:
        if fin == "eos_token":
            try: ok = "one JSON object: %s" % (type(json.loads(t)).__name__ == "dict")
            except Exception as e: ok = "NOT JSON: %s" % e
        else: ok = "a prefix of one: %s" % prefix_ok(t)
    print("%-18s ITL p50 %.2f ms, %d tokens, finish %s %s | %r" % (name, itl, last["details"]["generated_tokens"], fin, ok, t[:100]))
body = json.dumps({"messages": [{"role": "user", "content": "A JSON object, please."}], "max_tokens": 100,
                   "temperature": 0, "response_format": {"type": "json_object"}}).encode()
req = urllib.request.Request(URL + "/v1/chat/completions", body, {"Content-Type": "application/json"})
with urllib.request.urlopen(req, timeout=120) as f: j = json.loads(f.read())
print("chat json_object: finish %s | %r" % (j["choices"][0]["finish_reason"], j["choices"][0]["message"]["content"][:120]))
PY
grep -E "JSON mode" $OUT/serve.log | head -2
kill $SP; wait $SP
