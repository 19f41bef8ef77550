#!/usr/bin/env python3
# tests/model/test_generate_serve.py: `ignis generate` and `ignis serve`'s POST /generate run the same engine
# (tokenization with BOS, sampler, stop rules, detokenizer), so for the same prompt and parameters on
# stories260K their texts must be identical: seeded sampling with warpers and penalties, stop sequences,
# greedy up to EOS. The server runs with --speculate 4 (n-gram drafts for its greedy requests, which must change
# nothing; /metrics says drafts were accepted). Registered in ctest as model_generate_serve. Usage:
#   test_generate_serve.py IGNIS_BINARY MODEL_DIR
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ignis, model = sys.argv[1], sys.argv[2]
THREADS = "2"  # the same CPU thread count in both, so the float reductions are split alike

# (prompt, /generate parameters, `ignis generate` flags)
CASES = [
    ("Once upon a time",
     {"do_sample": True, "seed": 7, "temperature": 0.8, "top_k": 40, "max_new_tokens": 24},
     ["--seed", "7", "--temperature", "0.8", "--top-k", "40", "--max-new-tokens", "24"]),
    ("The little dog",
     {"do_sample": True, "seed": 3, "temperature": 1.3, "top_p": 0.9, "typical_p": 0.95,
      "repetition_penalty": 1.3, "max_new_tokens": 40},
     ["--seed", "3", "--temperature", "1.3", "--top-p", "0.9", "--typical-p", "0.95",
      "--repetition-penalty", "1.3", "--max-new-tokens", "40"]),
    # warpers imply sampling on both sides (TGI's rule) without do_sample
    ("Lily and Ben", {"seed": 11, "temperature": 1.5, "max_new_tokens": 32},
     ["--seed", "11", "--temperature", "1.5", "--max-new-tokens", "32"]),
    # stop sequences: the text ends right before the first match
    ("Once upon a time", {"stop": ["named", "zzz"], "max_new_tokens": 30},
     ["--stop", "named", "--stop", "zzz", "--max-new-tokens", "30"]),
    # a stop sequence whose start ends the story: that text is held back, then released with the EOS token
    ("Once upon a time", {"stop": ["good friend.\"ZZZ"], "max_new_tokens": 400},
     ["--stop", "good friend.\"ZZZ", "--max-new-tokens", "400"]),
    # greedy until EOS (reached after a few hundred tokens on this prompt)
    ("Once", {"max_new_tokens": 400}, ["--max-new-tokens", "400"]),
    ("Once", {"do_sample": True, "seed": 5, "ignore_eos": True, "max_new_tokens": 120},
     ["--do-sample", "--seed", "5", "--ignore-eos", "--max-new-tokens", "120"]),
    # a seed alone does not sample (TGI's rule): greedy on both sides
    ("Lily and Ben", {"seed": 9, "max_new_tokens": 20}, ["--seed", "9", "--max-new-tokens", "20"]),
]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def post(url, body):
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())


def main():
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tempfile.TemporaryFile()
    srv = subprocess.Popen([ignis, "serve", "--model-id", model, "--hostname", "127.0.0.1", "--port", str(port),
                            "--device", "cpu", "--threads", THREADS, "--speculate", "4"], stdout=log, stderr=log)
    fails = 0
    try:
        deadline = time.time() + 60
        while True:
            if srv.poll() is not None:
                log.seek(0)
                raise SystemExit("FAIL: ignis serve exited early:\n" + log.read().decode()[-2000:])
            try:
                with urllib.request.urlopen(base + "/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            if time.time() > deadline:
                raise SystemExit("FAIL: /health never answered 200")
            time.sleep(0.1)
        for prompt, params, flags in CASES:
            want = post(base + "/generate", {"inputs": prompt, "parameters": params})["generated_text"]
            p = subprocess.run([ignis, "generate", "--model-id", model, "--device", "cpu", "--threads", THREADS]
                               + flags + [prompt], capture_output=True, timeout=120)
            if p.returncode != 0:
                print(f"FAIL generate {flags}: exit {p.returncode}: {p.stderr.decode()[-500:]}")
                fails += 1
                continue
            got = p.stdout.decode()
            if not got.endswith("\n"):
                print(f"FAIL generate {flags}: output lacks the final newline: {got!r}")
                fails += 1
                continue
            got = got[:-1]
            if got != want:
                print(f"FAIL {prompt!r} {params}:\n  generate {got!r}\n  serve    {want!r}")
                fails += 1
            elif not want:
                print(f"FAIL {prompt!r} {params}: empty text")
                fails += 1
            else:
                print(f"ok   {prompt!r} {params}: {want[:60]!r}...")
        with urllib.request.urlopen(base + "/metrics", timeout=10) as r:
            metrics = dict(line.rsplit(" ", 1) for line in r.read().decode().splitlines() if line and line[0] != "#")
        drafted = int(metrics.get("ignis_speculative_draft_tokens_total", "0"))
        accepted = int(metrics.get("ignis_speculative_accepted_tokens_total", "0"))
        print(f"--speculate 4: {drafted} tokens drafted, {accepted} accepted")
        if not 0 < accepted <= drafted:
            print("FAIL --speculate 4: no draft accepted")
            fails += 1
        log.seek(0)
        if "speculate 4" not in log.read().decode():
            print("FAIL --speculate 4: not in the startup lines")
            fails += 1
    finally:
        srv.terminate()
        try:
            srv.wait(timeout=20)
        except subprocess.TimeoutExpired:
            srv.kill()
            srv.wait()
    print(f"{len(CASES) - fails} passed, {fails} failed")
    return 1 if fails else 0


sys.exit(main())
