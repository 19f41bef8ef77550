#!/usr/bin/env python3
"""Differential testing of tmpl against jinja2: generates random templates from a small grammar over the
language suite's context (lang_cases.D), renders them with jinja2 and writes a file test_tmpl_lang reads:
  python3 tests/tmpl/diff_random.py 3000 /tmp/rand.json && build/tests/tmpl/test_tmpl_lang /tmp/rand.json
Not part of ctest (random); the seed is printed so that a failure can be replayed."""
import copy, json, os, random, sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import lang_cases  # noqa: E402
from make_golden import RaisedError, make_env, NOW  # noqa: E402

ATOMS = ["a", "b", "s", "d", "n", "t", "f", "e", "u", "msgs", "neg", "nested", "missing", "d.x", "d.y", "d.z",
         "msgs[0]", "msgs[-1].content", "b[1]", "s[0]", "u[2:]", "d['z'][0]", "0", "1", "-1", "2.5", "0.0",
         "'x'", "''", "' pad '", "'A b'", "'日本'", "none", "true", "false", "[]", "[1, 'a']", "{}", "{'k': 2}",
         "(1, 2)", "range(3)", "msgs | map(attribute='role') | list", "nested.a.b"]
FILTERS = ["length", "upper", "lower", "trim", "string", "list", "first", "last", "reverse", "tojson", "int",
           "float", "abs", "title", "capitalize", "default('D')", "join(',')", "sort", "unique", "items",
           "dictsort", "count", "wordcount", "round", "sum", "max", "min", "select", "reject('none')",
           "tojson(indent=1)", "replace('a', 'b')", "indent(2)", "center(7)", "batch(2) | list",
           "selectattr('role') | list", "map('string') | list", "e", "format", "pprint", "truncate(9)"]
TESTS = ["defined", "undefined", "none", "string", "number", "integer", "float", "mapping", "iterable",
         "sequence", "boolean", "true", "false", "odd", "even", "callable", "lower", "upper",
         "eq 1", "ne 'x'", "in [1, 2, 'x']", "divisibleby 2", "gt 0", "sameas none"]
BINOPS = ["+", "-", "*", "/", "//", "%", "~", "==", "!=", "<", ">=", "in", "not in", "and", "or"]
METHODS = ["strip()", "upper()", "split()", "split(',')", "startswith('H')", "endswith('d')", "replace('l', 'L')",
           "title()", "get('x')", "get('q', 0)", "items() | list", "keys() | list", "values() | list",
           "count('l')", "find('o')", "lstrip('H')", "format(1)", "index(2)", "capitalize()", "isdigit()"]


def expr(r, depth=0):
    k = r.random()
    if depth > 3 or k < 0.3:
        return r.choice(ATOMS)
    if k < 0.5:
        return "%s | %s" % (expr(r, depth + 1), r.choice(FILTERS))
    if k < 0.62:
        return "(%s %s %s)" % (expr(r, depth + 1), r.choice(BINOPS), expr(r, depth + 1))
    if k < 0.72:
        return "(%s is %s%s)" % (expr(r, depth + 1), r.choice(["", "not "]), r.choice(TESTS))
    if k < 0.8:
        return "(%s).%s" % (expr(r, depth + 1), r.choice(METHODS))
    if k < 0.86:
        return "(%s if %s else %s)" % (expr(r, depth + 1), expr(r, depth + 1), expr(r, depth + 1))
    if k < 0.92:
        return "(not %s)" % expr(r, depth + 1)
    return "[%s, %s]" % (expr(r, depth + 1), expr(r, depth + 1))


def stmt(r):
    k = r.random()
    e = expr(r)
    if k < 0.5:
        return "{{ %s }}" % e
    if k < 0.7:
        return "{%% for x in %s %%}[{{ x }}{{ loop.index }}]{%% else %%}E{%% endfor %%}" % e
    if k < 0.85:
        return "{%% if %s %%}Y{%% else %%}N{%% endif %%}" % e
    return "{%% set v = %s %%}{{ v }}|{{ v | tojson }}" % e


TEXTS = ["", " ", "  ", "\t", "\n", " \n", "\n  ", "  \n  ", "\n\n", "x", " x ", "a\n b", "\r\n", "\t\n\t"]
OPEN = ["{%", "{%-", "{%+"]
CLOSE = ["%}", "-%}", "+%}"]


def ws_template(r):
    """Random text and tags with every whitespace-control marker: exercises the lexer (trim_blocks,
    lstrip_blocks, -, +, comments, raw)."""
    parts, depth = [], 0
    for _ in range(r.randint(2, 10)):
        parts.append(r.choice(TEXTS))
        k = r.random()
        o, c = r.choice(OPEN), r.choice(CLOSE)
        if k < 0.25 and depth < 3:
            parts.append("%s if %s %s" % (o, r.choice(["true", "false", "a"]), c))
            depth += 1
        elif k < 0.4 and depth:
            parts.append("%s endif %s" % (o, c))
            depth -= 1
        elif k < 0.6:
            parts.append("{{%s %s %s}}" % (r.choice(["", "-", "+"]), r.choice(["'v'", "a", "' w '"]), r.choice(["", "-"])))
        elif k < 0.75:
            parts.append("{#%s c %s#}" % (r.choice(["", "-", "+"]), r.choice(["", "-", "+"])))
        elif k < 0.85:
            parts.append("%s set q = 1 %s" % (o, c))
        elif k < 0.9:
            parts.append("%s raw %s{{ r }}%s endraw %s" % (r.choice(["{%", "{%-"]), r.choice(["%}", "-%}"]), r.choice(["{%", "{%-"]), r.choice(["%}", "-%}"])))
        else:
            parts.append("%s for i in [1, 2] %s%s{{ i }}%s%s endfor %s" % (o, c, r.choice(TEXTS), r.choice(TEXTS), r.choice(OPEN), r.choice(CLOSE)))
    while depth:
        parts.append(r.choice(TEXTS) + "%s endif %s" % (r.choice(OPEN), r.choice(CLOSE)))
        depth -= 1
    parts.append(r.choice(TEXTS))
    return "".join(parts)


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    out = sys.argv[2] if len(sys.argv) > 2 else "/tmp/tmpl_random.json"
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else random.randrange(1 << 30)
    r = random.Random(seed)
    env = make_env()
    cases = []
    for _ in range(n):
        src = ws_template(r) if r.random() < 0.3 else "".join(stmt(r) for _ in range(r.randint(1, 3)))
        case = {"template": src}
        try:
            # a fresh copy each time: jinja2 filters can mutate their input (list | indent appends to the list)
            case["output"] = env.from_string(src).render(**copy.deepcopy(lang_cases.D))
            if " at 0x" in case["output"]:
                continue  # Python object addresses
        except RaisedError as e:
            case["error"], case["error_kind"] = str(e), "raise"
        except Exception as e:
            case["error"], case["error_kind"] = "%s: %s" % (type(e).__name__, e), "other"
        cases.append(case)
    json.dump({"seed": seed, "now": NOW, "context": lang_cases.D, "cases": cases}, open(out, "w"), ensure_ascii=False)
    print("seed %d: %d cases -> %s" % (seed, len(cases), out))


if __name__ == "__main__":
    main()
