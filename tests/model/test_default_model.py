#!/usr/bin/env python3
"""tests/model/test_default_model.py: the project's default model (models/kjv-llama) reproduces
transformers' greedy continuations exactly (tests/fixtures/default_model/expected.json, made by
tools/train_default_model.py), end to end through the ignis binary: the tokenizer gives the reference
prompt ids, the chat template renders the reference prompt, and greedy generation gives the reference ids.
usage: test_default_model.py IGNIS_BINARY SOURCE_DIR"""
import json
import os
import subprocess
import sys

ignis, src = sys.argv[1], sys.argv[2]
model = os.path.join(src, "models", "kjv-llama")
exp = json.load(open(os.path.join(src, "tests", "fixtures", "default_model", "expected.json")))
n_new = exp["max_new_tokens"]
fails = 0


def run(args, stdin=None):
    p = subprocess.run([ignis] + args, input=stdin, capture_output=True, timeout=120)
    if p.returncode != 0:
        raise SystemExit(f"FAIL: ignis {' '.join(args)} exited {p.returncode}: {p.stderr.decode()[-500:]}")
    return p.stdout.decode()


def check(what, got, want):
    global fails
    if got != want:
        fails += 1
        print(f"FAIL {what}:\n  got  {got}\n  want {want}")
    else:
        print(f"ok   {what}")


# `ignis generate` stops at EOS (and prints no id for it): compare up to the reference's first EOS. An EOS that
# is the last token allowed ends the run by length instead (TGI's order: length first), so it is printed.
def until_eos(case):
    if case["eos_at"] is None or case["eos_at"] == n_new - 1:
        return case["greedy"]
    return case["greedy"][:case["eos_at"]]


cases = [(p["text"], p["ids"], until_eos(p)) for p in exp["prompts"]]
for text, ids, greedy in cases:
    toks = json.loads(run(["tokenize", "--model-id", model, text]))
    check(f"tokenize {text!r}", [t["id"] for t in toks], ids)
chat = exp["chat"]
rendered = run(["template", "--model-id", model] + ([] if chat["add_generation_prompt"] else ["--no-generation-prompt"]),
               json.dumps(chat["messages"]).encode())
check("chat template", rendered, chat["rendered"])
cases.append(("chat", chat["ids"], until_eos(chat)))
for text, ids, greedy in cases:
    out = run(["generate", "--model-id", model, "--threads", "1", "--max-new-tokens", str(n_new), "--ids",
               "--prompt-ids", ",".join(map(str, ids))])
    got = [int(x) for x in out.split()]
    check(f"greedy {text!r}", got, greedy)
print(f"{len(cases) * 2 + 1 - fails} passed, {fails} failed")
sys.exit(1 if fails else 0)
