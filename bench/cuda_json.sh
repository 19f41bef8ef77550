#!/bin/bash
# bench/cuda_json.sh: JSON mode on the GPU machine (the pack of bench/cuda_pack.sh with WITH_SERVE=1, the 8B-shape
# model with Llama 3's tokenizer, 128,256 tokens): one client streams 200 tokens with and without
# grammar {"type": "json", "value": {}} (greedy and seeded), with a JSON schema (nested object, integer, enum, bounded
# strings and array, a nullable), chat requests with tools (tool_choice required / a named function / auto), then a
# chat request with response_format json_object; 16 and 64 clients at once (plain, JSON mode, schema), and 64 schema
# clients again on a server whose mask walks run one after another (IGNIS_JSON_WALK_SERIAL=1);
# prints the inter-token latency (p50) of each and whether every JSON-mode text is one JSON object (or, ended by the
# length, a prefix of one), and the engine's log line for the vocabulary trie. MODE=regex: regex grammars (one
# stream each, greedy and seeded twice; 16 and 64 clients) and a schema with patterns only, each text checked with
# Python's re.fullmatch. MODE=fold: a schema of unbounded strings (FOLD_SCHEMA=bounded: the schema above) at 16 and
# 64 clients, by default and with AB_ENV (default IGNIS_JSON_MASK_FOLD=0: exact cache keys), two rounds, with the
# engine profile's mask line.
. "$(dirname "$0")/serve_wait.sh"
OUT=${OUT:-/tmp/json_out}
serve_setup
$PK/bin/ignis serve --model-id $M --device cuda --port 3005 --max-batch-total-tokens 65536 > $OUT/serve.log 2>&1 &
SP=$!
wait_health 3005 $SP || { echo "server did not start"; tail -3 $OUT/serve.log; exit 1; }
cat > $OUT/json_bench.py <<'PY'
import json, os, time, urllib.request
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
SERIAL = os.environ.get("MODE") == "serial"
REGEX = os.environ.get("MODE") == "regex"  # regex grammars and schema patterns only
FOLD = os.environ.get("MODE") == "fold"
SKIP = SERIAL or REGEX or FOLD
for name, p in ([] if SKIP else [("plain greedy", {"max_new_tokens": 200}),
                ("json greedy", {"max_new_tokens": 200, "grammar": {"type": "json", "value": {}}}),
                ("json seeded", {"max_new_tokens": 200, "do_sample": True, "seed": 5, "grammar": {"type": "json", "value": {}}}),
                ("json seeded again", {"max_new_tokens": 200, "do_sample": True, "seed": 5, "grammar": {"type": "json", "value": {}}})]):
    itl, last = stream(dict(p, details=True))
    t = last["generated_text"]; fin = last["details"]["finish_reason"]
    ok = ""
    if "grammar" in p:
        if fin == "eos_token":
            try: ok = "one JSON object: %s" % (type(json.loads(t)).__name__ == "dict")
            except Exception as e: ok = "NOT JSON: %s" % e
        else: ok = "a prefix of one: %s" % prefix_ok(t)
    print("%-18s ITL p50 %.2f ms, %d tokens, finish %s %s | %r" % (name, itl, last["details"]["generated_tokens"], fin, ok, t[:100]))
SCHEMA = {"type": "object", "properties": {
    "name": {"type": "string", "maxLength": 40}, "age": {"type": "integer"},
    "mood": {"enum": ["happy", "sad", "sleepy"]}, "tags": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 4},
    "home": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}, "zip": {"anyOf": [{"type": "null"}, {"type": "integer"}]}}, "required": ["city"]}},
    "required": ["name", "age", "mood", "home"], "additionalProperties": False}
def follows(v):
    return (isinstance(v, dict) and all(k in v for k in SCHEMA["required"]) and isinstance(v["name"], str) and len(v["name"]) <= 40
            and isinstance(v["age"], int) and v["mood"] in ("happy", "sad", "sleepy") and isinstance(v["home"], dict)
            and set(v) <= set(SCHEMA["properties"]))
for name, p in ([] if SKIP else [("schema greedy", {"max_new_tokens": 300, "grammar": {"type": "json", "value": SCHEMA}}),
                ("schema seeded", {"max_new_tokens": 300, "do_sample": True, "seed": 7, "grammar": {"type": "json", "value": SCHEMA}}),
                ("schema seeded again", {"max_new_tokens": 300, "do_sample": True, "seed": 7, "grammar": {"type": "json", "value": SCHEMA}})]):
    itl, last = stream(dict(p, details=True))
    t = last["generated_text"]; fin = last["details"]["finish_reason"]
    try: ok = "follows the schema: %s" % follows(json.loads(t))
    except Exception as e: ok = "NOT JSON: %s" % e
    print("%-19s ITL p50 %.2f ms, %d tokens, finish %s, %s | %r" % (name, itl, last["details"]["generated_tokens"], fin, ok, t[:160]))
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30}, "unit": {"enum": ["celsius", "fahrenheit"]}}, "required": ["city", "unit"]}}},
         {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {"zone": {"type": "string", "maxLength": 20}}, "required": ["zone"]}}}]
for choice in (() if SKIP else ("required", {"type": "function", "function": {"name": "get_time"}}, "auto")):
    body = json.dumps({"messages": [{"role": "user", "content": "What is the weather in Paris?"}], "max_tokens": 120,
                       "temperature": 0, "tools": TOOLS, "tool_choice": choice}).encode()
    req = urllib.request.Request(URL + "/v1/chat/completions", body, {"Content-Type": "application/json"})
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=120) as f: j = json.loads(f.read())
    ch = j["choices"][0]
    print("tools %-10s %.0f ms, %d tokens, finish %s | calls %s | content %r" % (choice if isinstance(choice, str) else "named",
          (time.perf_counter() - t0) * 1e3, j["usage"]["completion_tokens"], ch["finish_reason"],
          json.dumps(ch["message"].get("tool_calls"))[:200], (ch["message"]["content"] or "")[:80]))
# many clients at once: each step's constrained rows get their masks walked in parallel (the sample pool)
import threading
def wave(n, params, ok=None):
    """n clients at once, client k with params (or params(k)) seeded 100 + k; ok(k, result) checks a reply."""
    res = [None] * n
    def one(k):
        p = params(k) if callable(params) else params
        res[k] = stream(dict(p, seed=100 + k, do_sample=True, details=True), inputs="Client %d: a JSON record:" % k)
    th = [threading.Thread(target=one, args=(k,)) for k in range(n)]
    t0 = time.perf_counter()
    for t in th: t.start()
    for t in th: t.join()
    wall = time.perf_counter() - t0
    toks = sum(r[1]["details"]["generated_tokens"] for r in res)
    itl = sorted(r[0] for r in res)
    def valid(r):
        if "grammar" not in params or r[1]["details"]["finish_reason"] != "eos_token": return True  # plain, or cut by the length
        try: v = json.loads(r[1]["generated_text"])
        except Exception: return False
        return follows(v) if params["grammar"]["value"] is SCHEMA else isinstance(v, dict)
    return toks / wall, itl[len(itl) // 2], sum((ok(k, r) if ok else valid(r)) for k, r in enumerate(res))
if FOLD:  # a schema of unbounded strings: rows at different lengths share masks
    FREE = {"type": "object", "properties": {"title": {"type": "string"}, "summary": {"type": "string"},
            "tags": {"type": "array", "items": {"type": "string"}}}, "required": ["title", "summary", "tags"]}
    if os.environ.get("FOLD_SCHEMA") == "bounded": FREE = SCHEMA  # short bounded strings instead
    texts = {}
    for n in (16, 64):
        res_k = {}
        def ok(k, r, n=n):
            res_k[k] = r[1]["generated_text"]
            if r[1]["details"]["finish_reason"] != "eos_token": return True
            try: v = json.loads(r[1]["generated_text"])
            except Exception: return False
            return follows(v) if FREE is SCHEMA else isinstance(v, dict) and set(v) == {"title", "summary", "tags"}
        tps, itl, good = wave(n, {"max_new_tokens": 128, "grammar": {"type": "json", "value": FREE}}, ok)
        texts[n] = res_k
        print("%2d clients %s schema %7.0f tok/s, ITL p50 (median client) %.2f ms, %d/%d valid or cut by the length" % (n, "bounded" if FREE is SCHEMA else "free-strings", tps, itl, good, n))
    import hashlib
    print("texts hash %s" % hashlib.sha256(json.dumps(texts, sort_keys=True).encode()).hexdigest()[:16])
    raise SystemExit(0)
if REGEX:
    import re
    PATS = ["(yes|no), [0-9]{1,3} (sheep|goats)\\.", "[A-Z][a-z]{2,8}( [a-z]{1,6}){0,3}!", "\\d{4}-\\d{2}-\\d{2}",
            "[A-Za-z ,.']{1,400}"]
    for pat in PATS:
        for name, extra in (("greedy", {}), ("seeded", {"do_sample": True, "seed": 3}), ("seeded again", {"do_sample": True, "seed": 3})):
            itl, last = stream(dict({"max_new_tokens": 120, "grammar": {"type": "regex", "value": pat}, "details": True}, **extra))
            t = last["generated_text"]; fin = last["details"]["finish_reason"]
            full = re.fullmatch(pat, t, re.ASCII) is not None
            print("regex %-36s %-12s ITL p50 %.2f ms, %d tokens, finish %s, fullmatch %s | %r" % (pat, name, itl,
                  last["details"]["generated_tokens"], fin, full, t[:80]))
    PS = {"type": "object", "properties": {"code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{2,4}$"},
          "note": {"type": "string", "pattern": "^[a-z ]{1,30}$"}}, "required": ["code", "note"], "additionalProperties": False}
    itl, last = stream({"max_new_tokens": 200, "grammar": {"type": "json", "value": PS}, "details": True})
    t = last["generated_text"]
    try:
        v = json.loads(t); ok = bool(re.fullmatch("[A-Z]{3}-[0-9]{2,4}", v["code"]) and re.fullmatch("[a-z ]{1,30}", v["note"]))
    except Exception as e: ok = "NOT JSON %s" % e
    print("schema with patterns: ITL p50 %.2f ms, finish %s, follows %s | %r" % (itl, last["details"]["finish_reason"], ok, t[:120]))
    pat_of = lambda k: PATS[3] if k % 2 else PATS[k % 4]
    for n in (16, 64):
        tps, itl, good = wave(n, lambda k: {"max_new_tokens": 128, "grammar": {"type": "regex", "value": pat_of(k)}},
                              lambda k, r: re.fullmatch(pat_of(k), r[1]["generated_text"], re.ASCII) is not None
                              or r[1]["details"]["finish_reason"] == "length")
        print("%2d clients regex %7.0f tok/s, ITL p50 (median client) %.2f ms, %d/%d match or cut by the length" % (n, tps, itl, good, n))
    raise SystemExit(0)
for n in ((64,) if SERIAL else (16, 64)):
    for name, p in [("plain", {"max_new_tokens": 128, "ignore_eos": True}),
                    ("json mode", {"max_new_tokens": 128, "grammar": {"type": "json", "value": {}}}),
                    ("schema", {"max_new_tokens": 128, "grammar": {"type": "json", "value": SCHEMA}})][2 if SERIAL else 0:]:
        tps, itl, valid = wave(n, p)
        print("%2d clients %-9s %7.0f tok/s, ITL p50 (median client) %.2f ms, %d/%d valid or cut by the length" % (n, name, tps, itl, valid, n))
if SERIAL: raise SystemExit(0)
body = json.dumps({"messages": [{"role": "user", "content": "A JSON object, please."}], "max_tokens": 100,
                   "temperature": 0, "response_format": {"type": "json_object"}}).encode()
req = urllib.request.Request(URL + "/v1/chat/completions", body, {"Content-Type": "application/json"})
with urllib.request.urlopen(req, timeout=120) as f: j = json.loads(f.read())
print("chat json_object: finish %s | %r" % (j["choices"][0]["finish_reason"], j["choices"][0]["message"]["content"][:120]))
PY
if [ "$MODE" = regex ]; then MODE=regex python3 $OUT/json_bench.py; kill $SP; wait $SP; exit 0; fi
if [ "$MODE" = fold ]; then # mask-cache keys with folded counts (the default) against exact states, two rounds
  for r in 1 2; do
    echo "default:"; MODE=fold python3 $OUT/json_bench.py; grep "constrained rows" $OUT/serve.log | tail -1
    kill $SP; wait $SP
    env IGNIS_PROFILE_STEPS=100 ${AB_ENV:-IGNIS_JSON_MASK_FOLD=0} $PK/bin/ignis serve --model-id $M --device cuda --port 3005 --max-batch-total-tokens 65536 > $OUT/serve.log 2>&1 &
    SP=$!; wait_health 3005 $SP || exit 1
    echo "with ${AB_ENV:=IGNIS_JSON_MASK_FOLD=0}:"; MODE=fold python3 $OUT/json_bench.py; grep "constrained rows" $OUT/serve.log | tail -1
    kill $SP; wait $SP
    IGNIS_PROFILE_STEPS=100 $PK/bin/ignis serve --model-id $M --device cuda --port 3005 --max-batch-total-tokens 65536 > $OUT/serve.log 2>&1 &
    SP=$!; wait_health 3005 $SP || exit 1
  done
  kill $SP; wait $SP; exit 0
fi
python3 $OUT/json_bench.py
grep -E "JSON mode" $OUT/serve.log | head -2
kill $SP; wait $SP
# the same 64 clients with a step's mask walks one after another (IGNIS_JSON_WALK_SERIAL=1), for comparison
IGNIS_JSON_WALK_SERIAL=1 $PK/bin/ignis serve --model-id $M --device cuda --port 3005 --max-batch-total-tokens 65536 > $OUT/serve2.log 2>&1 &
SP=$!
wait_health 3005 $SP || { echo "server did not start"; tail -3 $OUT/serve2.log; exit 1; }
echo "walks serial:"
MODE=serial python3 $OUT/json_bench.py
kill $SP; wait $SP
