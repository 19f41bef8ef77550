#!/usr/bin/env python3
"""Oracle for tmpl: renders every (template, conversation) pair of tests/fixtures/templates with Python's jinja2
under transformers' settings (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loopcontrols, a
json.dumps tojson, raise_exception, strftime_now), each conversation with add_generation_prompt true and false,
and writes tests/fixtures/templates/golden.json (or, with --check, compares against it).

  python3 tests/tmpl/make_golden.py            # rewrite golden.json
  python3 tests/tmpl/make_golden.py --check    # exit 1 if golden.json is stale
Run with TZ=UTC: strftime_now sees the fixed time NOW below, formatted in local time.
"""
import copy, datetime, json, os, sys

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, '..', 'fixtures', 'templates')
NOW = 1795435200  # 2026-11-23 12:00:00 UTC
SPECIAL = ('bos_token', 'eos_token', 'unk_token', 'sep_token', 'pad_token', 'cls_token', 'mask_token')


class RaisedError(TemplateError):
    pass


class AssistantTracker(jinja2.ext.Extension):
    """transformers' {% generation %} tag: renders its body unchanged."""
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def make_env():
    def raise_exception(message):
        raise RaisedError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(format):
        return datetime.datetime.fromtimestamp(NOW).strftime(format)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[AssistantTracker, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def token_str(v):
    if isinstance(v, str):
        return v
    if isinstance(v, dict) and isinstance(v.get('content'), str):
        return v['content']
    return None


def special_tokens(cfg):
    out = {}
    for k in SPECIAL:
        s = token_str(cfg.get(k))
        if s is not None:
            out[k] = s
    if isinstance(cfg.get('additional_special_tokens'), list):
        out['additional_special_tokens'] = [t for t in map(token_str, cfg['additional_special_tokens']) if t is not None]
    return out


def render_all():
    env = make_env()
    convs = json.load(open(os.path.join(FIX, 'conversations.json'), encoding='utf-8'))
    cases = []
    for name in sorted(os.listdir(FIX)):
        path = os.path.join(FIX, name, 'tokenizer_config.json')
        if not os.path.isfile(path):
            continue
        cfg = json.load(open(path, encoding='utf-8'))
        tmpl = env.from_string(cfg['chat_template'])
        for cname in sorted(convs):
            conv = convs[cname]
            for agp in (True, False):
                ctx = dict(special_tokens(cfg))
                ctx.update(messages=conv['messages'], tools=conv.get('tools'), documents=conv.get('documents'),
                           add_generation_prompt=agp)
                ctx.update(conv.get('kwargs', {}))
                ctx = copy.deepcopy(ctx)  # filters may mutate their input (list | indent)
                case = {'template': name, 'conversation': cname, 'add_generation_prompt': agp}
                try:
                    case['output'] = tmpl.render(**ctx)
                except RaisedError as e:
                    case['error'] = str(e)
                    case['error_kind'] = 'raise'
                except Exception as e:  # jinja2 raised: ignis must fail too
                    case['error'] = '%s: %s' % (type(e).__name__, e)
                    case['error_kind'] = 'other'
                cases.append(case)
    return {'generator': 'tests/tmpl/make_golden.py', 'jinja2': jinja2.__version__, 'now': NOW, 'cases': cases}


def render_lang():
    """The language suite (lang_cases.py): each snippet with the context lang_cases.D."""
    sys.path.insert(0, HERE)
    import lang_cases
    env = make_env()
    cases = []
    for src in lang_cases.CASES:
        case = {'template': src}
        try:
            case['output'] = env.from_string(src).render(**copy.deepcopy(lang_cases.D))
        except RaisedError as e:
            case['error'] = str(e)
            case['error_kind'] = 'raise'
        except Exception as e:
            case['error'] = '%s: %s' % (type(e).__name__, e)
            case['error_kind'] = 'other'
        cases.append(case)
    return {'generator': 'tests/tmpl/make_golden.py', 'jinja2': jinja2.__version__, 'now': NOW,
            'context': lang_cases.D, 'cases': cases}


def essence(case):
    """What must not change between jinja2 versions: outputs, and which cases fail (the wording of
    non-raise_exception errors may differ between releases, e.g. Debian's 3.1.2 and 3.1.6)."""
    if 'output' in case:
        return (case['template'], case.get('conversation'), case.get('add_generation_prompt'), 'ok', case['output'])
    msg = case['error'] if case['error_kind'] == 'raise' else ''
    return (case['template'], case.get('conversation'), case.get('add_generation_prompt'), case['error_kind'], msg)


def main():
    rc = 0
    for fname, fn in (('golden.json', render_all), ('lang_golden.json', render_lang)):
        data = json.dumps(fn(), ensure_ascii=False, indent=1) + '\n'
        path = os.path.join(FIX, fname)
        if '--check' in sys.argv:
            new = json.loads(data)
            ref = json.load(open(path, encoding='utf-8'))
            if [essence(x) for x in new['cases']] != [essence(x) for x in ref['cases']]:
                print('%s is stale: run python3 tests/tmpl/make_golden.py' % fname, file=sys.stderr)
                rc = 1
            else:
                print('%s matches jinja2 %s (%d cases)' % (fname, jinja2.__version__, len(new['cases'])))
            continue
        with open(path, 'w', encoding='utf-8') as f:
            f.write(data)
        print('wrote %s (%d cases)' % (path, len(json.loads(data)['cases'])))
    return rc


if __name__ == '__main__':
    sys.exit(main())
