#!/usr/bin/env python3
"""Microseconds per render with Python's jinja2 under transformers' settings (the oracle's environment from
tests/tmpl/make_golden.py), for the same templates and conversations as bench/tmpl_bench.c.
  python3 bench/tmpl_bench.py [renders]"""
import json, os, statistics, sys, time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
sys.path.insert(0, os.path.join(ROOT, 'tests', 'tmpl'))
from make_golden import FIX, make_env, special_tokens  # noqa: E402

renders = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
env = make_env()
convs = json.load(open(os.path.join(FIX, 'conversations.json'), encoding='utf-8'))
print('%-10s %-11s %8s %12s %12s' % ('template', 'conversation', 'bytes', 'us/render', 'compile us'))
for model in ('llama3_3', 'npm_qwen3'):
    cfg = json.load(open(os.path.join(FIX, model, 'tokenizer_config.json'), encoding='utf-8'))
    t0 = time.perf_counter()
    for _ in range(20):
        tmpl = env.from_string(cfg['chat_template'])
    compile_us = (time.perf_counter() - t0) / 20 * 1e6
    for cname in ('ten_turns', 'tools_call'):
        conv = convs[cname]
        ctx = dict(special_tokens(cfg), messages=conv['messages'], tools=conv.get('tools'), documents=None,
                   add_generation_prompt=True)
        runs = []
        for _ in range(5):
            a = time.perf_counter()
            for _ in range(renders):
                out = tmpl.render(**ctx)
            runs.append((time.perf_counter() - a) / renders * 1e6)
        print('%-10s %-11s %8d %12.2f %12.1f' % (model, cname, len(out.encode('utf-8')), statistics.median(runs), compile_us))
