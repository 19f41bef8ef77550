/* tmpl_value: the interpreter's values and how Python shows them: str() and repr() of None, bools, ints,
 * floats (shortest repr), strings (quote choice and escapes), lists, tuples and dicts; json.dumps with
 * ensure_ascii=False; truthiness, equality and ordering with Python's rules; UTF-8 helpers. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tmpl/tmpl_int.h"

/* ---------------------------------------------------------------- UTF-8 */
uint32_t tm_u8_decode(const char *p, size_t n, size_t *adv) {
  const unsigned char *s = (const unsigned char *)p;
  if (n == 0) {
    *adv = 0;
    return 0;
  }
  unsigned c = s[0];
  if (c < 0x80) {
    *adv = 1;
    return c;
  }
  int len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
  if ((size_t)len > n || len == 1) {
    *adv = 1;
    return 0xFFFD;
  }
  uint32_t cp = c & (len == 2 ? 0x1F : len == 3 ? 0x0F : 0x07);
  for (int i = 1; i < len; i++) {
    if ((s[i] & 0xC0) != 0x80) {
      *adv = 1;
      return 0xFFFD;
    }
    cp = (cp << 6) | (s[i] & 0x3F);
  }
  *adv = (size_t)len;
  return cp;
}
void tm_u8_put(ig_str *s, uint32_t cp) {
  char b[4];
  ig_str_append(s, b, (size_t)ig_utf8_encode(cp, b));
}
size_t tm_u8_len(const char *p, size_t n) {
  size_t c = 0;
  for (size_t i = 0; i < n; i++) c += ((unsigned char)p[i] & 0xC0) != 0x80;
  return c;
}
size_t tm_u8_offset(const char *p, size_t n, size_t cp) {
  size_t i = 0;
  while (i < n && cp) {
    i++;
    while (i < n && ((unsigned char)p[i] & 0xC0) == 0x80) i++;
    cp--;
  }
  return i;
}
/* Python's str.isspace */
bool tm_isspace_cp(uint32_t c) {
  return c == ' ' || (c >= 9 && c <= 13) || (c >= 0x1c && c <= 0x1f) || c == 0x85 || c == 0xa0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

/* ---------------------------------------------------------------- constructors */
void tm_check_str(tm_ctx *c, ig_str *s) {
  if (s->oom) tm_fail(c, IG_TMPL_ENOMEM, "out of memory");
  if (s->len > c->max_output) tm_fail(c, IG_TMPL_ELIMIT, "string or output larger than the limit (%zu bytes)", c->max_output);
}
tm_val tm_str(tm_ctx *c, const char *p, size_t n) {
  if (n > c->max_output || n > UINT32_MAX)
    tm_fail(c, IG_TMPL_ELIMIT, "string larger than the limit (%zu bytes)", c->max_output);
  tm_val v = {0};
  v.t = V_STR;
  v.s = p;
  v.n = (uint32_t)n;
  return v;
}
tm_val tm_str_copy(tm_ctx *c, const char *p, size_t n) {
  if (n > c->max_output || n > UINT32_MAX)
    tm_fail(c, IG_TMPL_ELIMIT, "string larger than the limit (%zu bytes)", c->max_output);
  char *d = tm_ralloc(c, n + 1);
  if (n) memcpy(d, p, n);
  d[n] = 0;
  return tm_str(c, d, n);
}
tm_val tm_str_from(tm_ctx *c, ig_str *s) {
  tm_check_str(c, s);
  tm_val v = tm_str_copy(c, s->p ? s->p : "", s->len);
  ig_str_clear(s);
  return v;
}
tm_list *tm_list_new(tm_ctx *c, uint32_t cap) {
  tm_list *l = tm_ralloc(c, sizeof *l);
  l->err = NULL;
  l->start = l->stop = 0;
  l->step = 1;
  l->n = 0;
  l->cap = cap;
  l->v = cap ? tm_ralloc(c, sizeof(tm_val) * cap) : NULL;
  return l;
}
tm_val tm_gen_err(tm_ctx *c, const char *fmt, ...) {
  char buf[256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n < 0) n = 0;
  if ((size_t)n >= sizeof buf) n = sizeof buf - 1;
  tm_list *l = tm_list_new(c, 0);
  char *d = tm_ralloc(c, (size_t)n + 1);
  memcpy(d, buf, (size_t)n + 1);
  l->err = d;
  return tm_gen(l);
}
void tm_list_push(tm_ctx *c, tm_list *l, tm_val v) {
  if (l->n == l->cap) {
    uint32_t cap = l->cap ? l->cap * 2 : 4;
    tm_val *nv = tm_ralloc(c, sizeof(tm_val) * cap);
    if (l->n) memcpy(nv, l->v, sizeof(tm_val) * l->n);
    l->v = nv;
    l->cap = cap;
  }
  l->v[l->n++] = v;
}
tm_val tm_list_val(tm_list *l, bool tuple) {
  tm_val v = {0};
  v.t = V_LIST;
  v.tuple = tuple;
  v.l = l;
  return v;
}
tm_dict *tm_dict_new(tm_ctx *c, uint32_t cap) {
  tm_dict *d = tm_ralloc(c, sizeof *d);
  d->n = 0;
  d->cap = cap;
  d->k = cap ? tm_ralloc(c, sizeof(tm_val) * cap) : NULL;
  d->v = cap ? tm_ralloc(c, sizeof(tm_val) * cap) : NULL;
  return d;
}
/* Lookups scan the keys: each is charged a step per 16 of them, so that a render cannot spend its steps on
 * lookups in a request's 100,000-key object and run quadratic long within the step limit. */
int tm_dict_find_str(tm_ctx *c, const tm_dict *d, const char *p, size_t n) {
  tm_charge(c, d->n >> 4);
  for (uint32_t i = 0; i < d->n; i++)
    if (d->k[i].t == V_STR && d->k[i].n == n && memcmp(d->k[i].s, p, n) == 0) return (int)i;
  return -1;
}
int tm_dict_find(tm_ctx *c, const tm_dict *d, tm_val k) {
  if (k.t == V_STR) return tm_dict_find_str(c, d, k.s, k.n);
  tm_charge(c, d->n >> 4);
  for (uint32_t i = 0; i < d->n; i++)
    if (tm_equal(c, &d->k[i], &k)) return (int)i;
  return -1;
}
void tm_dict_set(tm_ctx *c, tm_dict *d, tm_val k, tm_val v) {
  int i = tm_dict_find(c, d, k);
  if (i >= 0) {
    d->v[i] = v;
    return;
  }
  if (d->n == d->cap) {
    uint32_t cap = d->cap ? d->cap * 2 : 4;
    tm_val *nk = tm_ralloc(c, sizeof(tm_val) * cap), *nv = tm_ralloc(c, sizeof(tm_val) * cap);
    if (d->n) {
      memcpy(nk, d->k, sizeof(tm_val) * d->n);
      memcpy(nv, d->v, sizeof(tm_val) * d->n);
    }
    d->k = nk;
    d->v = nv;
    d->cap = cap;
  }
  d->k[d->n] = k;
  d->v[d->n] = v;
  d->n++;
}

/* JSON -> value. Strings point into the JSON (it outlives the render). */
tm_val tm_from_json(tm_ctx *c, const json_t *j) {
  tm_charge(c, 1);
  switch (json_typeof(j)) {
  case JSON_NULL: return tm_none();
  case JSON_TRUE: return tm_bool(true);
  case JSON_FALSE: return tm_bool(false);
  case JSON_INTEGER: return tm_int((int64_t)json_integer_value(j));
  case JSON_REAL: return tm_float(json_real_value(j));
  case JSON_STRING: return tm_str(c, json_string_value(j), json_string_length(j));
  case JSON_ARRAY: {
    size_t n = json_array_size(j);
    tm_list *l = tm_list_new(c, (uint32_t)n);
    for (size_t i = 0; i < n; i++) l->v[l->n++] = tm_from_json(c, json_array_get(j, i));
    return tm_list_val(l, false);
  }
  case JSON_OBJECT: {
    size_t n = json_object_size(j);
    tm_dict *d = tm_dict_new(c, (uint32_t)n);
    const char *k;
    size_t kl;
    json_t *v;
    json_object_keylen_foreach((json_t *)j, k, kl, v) {
      d->k[d->n] = tm_str(c, k, kl);
      d->v[d->n] = tm_from_json(c, v);
      d->n++;
    }
    tm_val r = {0};
    r.t = V_DICT;
    r.d = d;
    return r;
  }
  }
  return tm_none();
}

/* ---------------------------------------------------------------- truth, equality, order */
bool tm_truthy(const tm_val *v) {
  switch (v->t) {
  case V_UNDEF: case V_NONE: return false;
  case V_BOOL: case V_INT: return v->i != 0;
  case V_FLOAT: return v->f != 0.0;
  case V_STR: return v->n != 0;
  case V_LIST: return v->unsafe || v->l->n != 0; /* a generator is always true */
  case V_DICT: return v->d->n != 0;
  default: return true;
  }
}
static bool is_num(const tm_val *v) { return v->t == V_BOOL || v->t == V_INT || v->t == V_FLOAT; }
bool tm_equal(tm_ctx *c, const tm_val *a, const tm_val *b) {
  if (is_num(a) && is_num(b)) {
    if (a->t == V_FLOAT || b->t == V_FLOAT) {
      double x = a->t == V_FLOAT ? a->f : (double)a->i, y = b->t == V_FLOAT ? b->f : (double)b->i;
      return x == y;
    }
    return a->i == b->i;
  }
  if (a->t != b->t) return false;
  switch (a->t) {
  case V_UNDEF: case V_NONE: return true;
  case V_STR:
    if (a->n != b->n) return false;
    tm_charge(c, a->n >> 10); /* a step per KiB compared */
    return memcmp(a->s, b->s, a->n) == 0;
  case V_LIST:
    if (a->unsafe || b->unsafe) return a->l == b->l;
    if (a->tuple != b->tuple || a->l->n != b->l->n) return false;
    tm_charge(c, a->l->n >> 4);
    for (uint32_t i = 0; i < a->l->n; i++)
      if (!tm_equal(c, &a->l->v[i], &b->l->v[i])) return false;
    return true;
  case V_DICT:
    if (a->d->n != b->d->n) return false;
    tm_charge(c, a->d->n >> 4);
    for (uint32_t i = 0; i < a->d->n; i++) { /* the same order (usual) costs no lookups */
      int j = tm_equal(c, &a->d->k[i], &b->d->k[i]) ? (int)i : tm_dict_find(c, b->d, a->d->k[i]);
      if (j < 0 || !tm_equal(c, &a->d->v[i], &b->d->v[j])) return false;
    }
    return true;
  case V_NS: return a->d == b->d;
  case V_MACRO: return a->m == b->m;
  case V_FUNC: return a->fn == b->fn;
  case V_METHOD: return a->mt == b->mt;
  case V_LOOP: return a->lp == b->lp;
  }
  return false;
}
int tm_compare(tm_ctx *c, const tm_val *a, const tm_val *b) { return tm_compare_op(c, a, b, "<"); }
int tm_compare_op(tm_ctx *c, const tm_val *a, const tm_val *b, const char *sym) {
  if (is_num(a) && is_num(b)) {
    if (a->t == V_FLOAT || b->t == V_FLOAT) {
      double x = a->t == V_FLOAT ? a->f : (double)a->i, y = b->t == V_FLOAT ? b->f : (double)b->i;
      return x < y ? -1 : x > y ? 1 : 0;
    }
    return a->i < b->i ? -1 : a->i > b->i ? 1 : 0;
  }
  if (a->t == V_STR && b->t == V_STR) {
    size_t n = a->n < b->n ? a->n : b->n;
    int r = memcmp(a->s, b->s, n); /* UTF-8 byte order == code point order */
    if (r) return r < 0 ? -1 : 1;
    return a->n < b->n ? -1 : a->n > b->n ? 1 : 0;
  }
  if (a->t == V_LIST && b->t == V_LIST && a->tuple == b->tuple) {
    uint32_t n = a->l->n < b->l->n ? a->l->n : b->l->n;
    for (uint32_t i = 0; i < n; i++) {
      if (tm_equal(c, &a->l->v[i], &b->l->v[i])) continue;
      return tm_compare_op(c, &a->l->v[i], &b->l->v[i], sym);
    }
    return a->l->n < b->l->n ? -1 : a->l->n > b->l->n ? 1 : 0;
  }
  tm_fail(c, IG_TMPL_ERUNTIME, "'%s' not supported between instances of '%s' and '%s'", sym, tm_type_name(a), tm_type_name(b));
}
const char *tm_type_name(const tm_val *v) {
  switch (v->t) {
  case V_UNDEF: return "Undefined";
  case V_NONE: return "NoneType";
  case V_BOOL: return "bool";
  case V_INT: return "int";
  case V_FLOAT: return "float";
  case V_STR: return "str";
  case V_LIST: return v->unsafe ? "generator" : v->tuple == 2 ? "range" : v->tuple ? "tuple" : "list";
  case V_DICT: return "dict";
  case V_NS: return "Namespace";
  case V_MACRO: return "Macro";
  case V_FUNC: return "function";
  case V_METHOD: return "builtin_function_or_method";
  case V_LOOP: return "LoopContext";
  }
  return "object";
}

/* ---------------------------------------------------------------- float repr */
/* Python's repr(float): the shortest digits that round-trip; exponent form when exp < -4 or exp >= 16. */
void tm_float_repr(ig_str *s, double f) {
  if (isnan(f)) {
    ig_str_puts(s, "nan");
    return;
  }
  if (isinf(f)) {
    ig_str_puts(s, f < 0 ? "-inf" : "inf");
    return;
  }
  if (f == 0) {
    ig_str_puts(s, signbit(f) ? "-0.0" : "0.0");
    return;
  }
  char buf[64];
  int prec;
  for (prec = 1; prec <= 17; prec++) {
    snprintf(buf, sizeof buf, "%.*e", prec - 1, f);
    if (strtod(buf, NULL) == f) break;
  }
  /* buf: [-]d.ddde[+-]XX -> digits and exponent */
  char digits[32];
  int nd = 0, neg = 0;
  const char *q = buf;
  if (*q == '-') {
    neg = 1;
    q++;
  }
  while (*q && *q != 'e') {
    if (*q != '.') digits[nd++] = *q;
    q++;
  }
  int exp = atoi(q + 1);
  while (nd > 1 && digits[nd - 1] == '0') nd--;
  digits[nd] = 0;
  if (neg) ig_str_putc(s, '-');
  int decpt = exp + 1; /* digits d1d2... with the point after decpt digits */
  if (exp >= -4 && exp < 16) {
    if (decpt <= 0) {
      ig_str_puts(s, "0.");
      for (int i = 0; i < -decpt; i++) ig_str_putc(s, '0');
      ig_str_append(s, digits, (size_t)nd);
    } else if (decpt >= nd) {
      ig_str_append(s, digits, (size_t)nd);
      for (int i = nd; i < decpt; i++) ig_str_putc(s, '0');
      ig_str_puts(s, ".0");
    } else {
      ig_str_append(s, digits, (size_t)decpt);
      ig_str_putc(s, '.');
      ig_str_append(s, digits + decpt, (size_t)(nd - decpt));
    }
  } else {
    ig_str_putc(s, digits[0]);
    if (nd > 1) {
      ig_str_putc(s, '.');
      ig_str_append(s, digits + 1, (size_t)(nd - 1));
    }
    ig_str_printf(s, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
  }
}

/* ---------------------------------------------------------------- str / repr */
static bool printable_cp(uint32_t cp) {
  if (cp == ' ') return true;
  if (cp < 0x20 || cp == 0x7f) return false;
  if (cp < 0x7f) return true;
  utf8proc_category_t cat = utf8proc_category((utf8proc_int32_t)cp);
  switch (cat) {
  case UTF8PROC_CATEGORY_CC: case UTF8PROC_CATEGORY_CF: case UTF8PROC_CATEGORY_CS: case UTF8PROC_CATEGORY_CO:
  case UTF8PROC_CATEGORY_CN: case UTF8PROC_CATEGORY_ZL: case UTF8PROC_CATEGORY_ZP: case UTF8PROC_CATEGORY_ZS:
    return false;
  default: return true;
  }
}
static void repr_str(ig_str *s, const char *p, size_t n) {
  char q = '\'';
  if (memchr(p, '\'', n) && !memchr(p, '"', n)) q = '"';
  ig_str_putc(s, q);
  size_t i = 0;
  while (i < n) {
    unsigned char ch = (unsigned char)p[i];
    if (ch < 0x80) {
      if (ch == (unsigned char)q || ch == '\\') {
        ig_str_putc(s, '\\');
        ig_str_putc(s, (char)ch);
      } else if (ch == '\n') ig_str_puts(s, "\\n");
      else if (ch == '\r') ig_str_puts(s, "\\r");
      else if (ch == '\t') ig_str_puts(s, "\\t");
      else if (ch < 0x20 || ch == 0x7f) ig_str_printf(s, "\\x%02x", ch);
      else ig_str_putc(s, (char)ch);
      i++;
      continue;
    }
    size_t adv;
    uint32_t cp = tm_u8_decode(p + i, n - i, &adv);
    if (printable_cp(cp)) ig_str_append(s, p + i, adv);
    else if (cp <= 0xff) ig_str_printf(s, "\\x%02x", cp);
    else if (cp <= 0xffff) ig_str_printf(s, "\\u%04x", cp);
    else ig_str_printf(s, "\\U%08x", cp);
    i += adv;
  }
  ig_str_putc(s, q);
}

void tm_repr(tm_ctx *c, ig_str *s, const tm_val *v) {
  tm_charge(c, 1);
  if (++c->repr_depth > 512) tm_fail(c, IG_TMPL_ELIMIT, "value nested too deeply to print");
  switch (v->t) {
  case V_STR:
    if (v->unsafe) ig_str_puts(s, "Markup(");
    repr_str(s, v->s, v->n);
    if (v->unsafe) ig_str_putc(s, ')');
    break;
  case V_UNDEF: ig_str_puts(s, "Undefined"); break;
  case V_LIST: {
    if (v->unsafe) {
      ig_str_puts(s, "<generator object>");
      break;
    }
    if (v->tuple == 2) {
      ig_str_printf(s, "range(%lld, %lld", (long long)v->l->start, (long long)v->l->stop);
      if (v->l->step != 1) ig_str_printf(s, ", %lld", (long long)v->l->step);
      ig_str_putc(s, ')');
      break;
    }
    ig_str_putc(s, v->tuple ? '(' : '[');
    for (uint32_t i = 0; i < v->l->n; i++) {
      if (i) ig_str_puts(s, ", ");
      tm_repr(c, s, &v->l->v[i]);
    }
    if (v->tuple && v->l->n == 1) ig_str_putc(s, ',');
    ig_str_putc(s, v->tuple ? ')' : ']');
    break;
  }
  case V_DICT: case V_NS: {
    if (v->t == V_NS) ig_str_puts(s, "<Namespace ");
    ig_str_putc(s, '{');
    for (uint32_t i = 0; i < v->d->n; i++) {
      if (i) ig_str_puts(s, ", ");
      tm_repr(c, s, &v->d->k[i]);
      ig_str_puts(s, ": ");
      tm_repr(c, s, &v->d->v[i]);
    }
    ig_str_putc(s, '}');
    if (v->t == V_NS) ig_str_putc(s, '>');
    break;
  }
  default: tm_to_str(c, s, v);
  }
  c->repr_depth--;
  tm_check_str(c, s);
}

void tm_to_str(tm_ctx *c, ig_str *s, const tm_val *v) {
  switch (v->t) {
  case V_UNDEF: break;
  case V_NONE: ig_str_puts(s, "None"); break;
  case V_BOOL: ig_str_puts(s, v->i ? "True" : "False"); break;
  case V_INT: ig_str_printf(s, "%lld", (long long)v->i); break;
  case V_FLOAT: tm_float_repr(s, v->f); break;
  case V_STR: ig_str_append(s, v->s, v->n); break;
  case V_LIST: case V_DICT: case V_NS: tm_repr(c, s, v); break;
  case V_MACRO: ig_str_puts(s, "<Macro>"); break;
  case V_FUNC: ig_str_puts(s, "<function>"); break;
  case V_METHOD: ig_str_puts(s, "<built-in method>"); break;
  case V_LOOP: ig_str_puts(s, "<LoopContext>"); break;
  }
  tm_check_str(c, s);
}
tm_val tm_stringify(tm_ctx *c, const tm_val *v) {
  if (v->t == V_STR) return *v;
  if (v->t == V_UNDEF) return tm_str(c, "", 0);
  if (v->t == V_NONE) return tm_str(c, "None", 4);
  if (v->t == V_BOOL) return v->i ? tm_str(c, "True", 4) : tm_str(c, "False", 5);
  ig_str *s = tm_buf_get(c);
  tm_to_str(c, s, v);
  tm_val r = tm_str_copy(c, s->p ? s->p : "", s->len);
  tm_buf_put(c, s);
  return r;
}

/* ---------------------------------------------------------------- json.dumps */
static void json_str_ascii(ig_str *s, const char *p, size_t n) {
  ig_str_putc(s, '"');
  size_t i = 0;
  while (i < n) {
    unsigned char ch = (unsigned char)p[i];
    if (ch >= 0x80) {
      size_t adv;
      uint32_t cp = tm_u8_decode(p + i, n - i, &adv);
      if (cp >= 0x10000) {
        cp -= 0x10000;
        ig_str_printf(s, "\\u%04x\\u%04x", 0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF));
      } else
        ig_str_printf(s, "\\u%04x", cp);
      i += adv;
      continue;
    }
    switch (ch) {
    case '"': ig_str_puts(s, "\\\""); break;
    case '\\': ig_str_puts(s, "\\\\"); break;
    case '\n': ig_str_puts(s, "\\n"); break;
    case '\r': ig_str_puts(s, "\\r"); break;
    case '\t': ig_str_puts(s, "\\t"); break;
    case '\b': ig_str_puts(s, "\\b"); break;
    case '\f': ig_str_puts(s, "\\f"); break;
    default:
      if (ch < 0x20) ig_str_printf(s, "\\u%04x", ch);
      else ig_str_putc(s, (char)ch);
    }
    i++;
  }
  ig_str_putc(s, '"');
}
static void json_str(ig_str *s, const char *p, size_t n) {
  ig_str_putc(s, '"');
  size_t run = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)p[i];
    if (ch >= 0x20 && ch != '"' && ch != '\\') continue;
    ig_str_append(s, p + run, i - run);
    run = i + 1;
    switch (ch) {
    case '"': ig_str_puts(s, "\\\""); break;
    case '\\': ig_str_puts(s, "\\\\"); break;
    case '\n': ig_str_puts(s, "\\n"); break;
    case '\r': ig_str_puts(s, "\\r"); break;
    case '\t': ig_str_puts(s, "\\t"); break;
    case '\b': ig_str_puts(s, "\\b"); break;
    case '\f': ig_str_puts(s, "\\f"); break;
    default: ig_str_printf(s, "\\u%04x", ch);
    }
  }
  ig_str_append(s, p + run, n - run);
  ig_str_putc(s, '"');
}
static void json_indent(ig_str *s, const char *indent_str, int level) {
  ig_str_putc(s, '\n');
  for (int i = 0; i < level; i++) ig_str_puts(s, indent_str);
}
static void json_key(tm_ctx *c, ig_str *s, const tm_val *k) {
  switch (k->t) {
  case V_STR:
    if (c->json_ascii) json_str_ascii(s, k->s, k->n);
    else json_str(s, k->s, k->n);
    return;
  case V_NONE: ig_str_puts(s, "\"null\""); return;
  case V_BOOL: ig_str_puts(s, k->i ? "\"true\"" : "\"false\""); return;
  case V_INT: ig_str_printf(s, "\"%lld\"", (long long)k->i); return;
  case V_FLOAT: ig_str_putc(s, '"'); tm_float_repr(s, k->f); ig_str_putc(s, '"'); return;
  default: tm_fail(c, IG_TMPL_ERUNTIME, "keys must be str, int, float, bool or None, not %s", tm_type_name(k));
  }
}
void tm_to_json(tm_ctx *c, ig_str *s, const tm_val *v, int indent, const char *indent_str, tm_sv item_sep,
                tm_sv key_sep, bool sort_keys, int level) {
  tm_charge(c, 1);
  if (level > 512) tm_fail(c, IG_TMPL_ELIMIT, "value nested too deeply for tojson");
  switch (v->t) {
  case V_NONE: ig_str_puts(s, "null"); break;
  case V_BOOL: ig_str_puts(s, v->i ? "true" : "false"); break;
  case V_INT: ig_str_printf(s, "%lld", (long long)v->i); break;
  case V_FLOAT:
    if (isnan(v->f)) ig_str_puts(s, "NaN");
    else if (isinf(v->f)) ig_str_puts(s, v->f < 0 ? "-Infinity" : "Infinity");
    else tm_float_repr(s, v->f);
    break;
  case V_STR:
    if (c->json_ascii) json_str_ascii(s, v->s, v->n);
    else json_str(s, v->s, v->n);
    break;
  case V_LIST: {
    if (v->unsafe || v->tuple == 2)
      tm_fail(c, IG_TMPL_ERUNTIME, "Object of type %s is not JSON serializable", tm_type_name(v));
    if (!v->l->n) {
      ig_str_puts(s, "[]");
      break;
    }
    ig_str_putc(s, '[');
    for (uint32_t i = 0; i < v->l->n; i++) {
      if (i) ig_str_append(s, item_sep.p, item_sep.n);
      if (indent >= 0) json_indent(s, indent_str, level + 1);
      tm_to_json(c, s, &v->l->v[i], indent, indent_str, item_sep, key_sep, sort_keys, level + 1);
    }
    if (indent >= 0) json_indent(s, indent_str, level);
    ig_str_putc(s, ']');
    break;
  }
  case V_DICT: {
    const tm_dict *d = v->d;
    if (!d->n) {
      ig_str_puts(s, "{}");
      break;
    }
    uint32_t *order = tm_ralloc(c, sizeof(uint32_t) * d->n);
    for (uint32_t i = 0; i < d->n; i++) order[i] = i;
    if (sort_keys) { /* insertion sort: stable, no callback state */
      for (uint32_t i = 1; i < d->n; i++) {
        uint32_t x = order[i];
        int64_t j = (int64_t)i - 1;
        while (j >= 0 && tm_compare(c, &d->k[order[j]], &d->k[x]) > 0) {
          order[j + 1] = order[j];
          j--;
        }
        order[j + 1] = x;
      }
    }
    ig_str_putc(s, '{');
    for (uint32_t i = 0; i < d->n; i++) {
      if (i) ig_str_append(s, item_sep.p, item_sep.n);
      if (indent >= 0) json_indent(s, indent_str, level + 1);
      json_key(c, s, &d->k[order[i]]);
      ig_str_append(s, key_sep.p, key_sep.n);
      tm_to_json(c, s, &d->v[order[i]], indent, indent_str, item_sep, key_sep, sort_keys, level + 1);
    }
    if (indent >= 0) json_indent(s, indent_str, level);
    ig_str_putc(s, '}');
    break;
  }
  default:
    tm_fail(c, IG_TMPL_ERUNTIME, "Object of type %s is not JSON serializable", tm_type_name(v));
  }
  tm_check_str(c, s);
}

/* ---------------------------------------------------------------- pprint */
/* Python's pprint.pformat(v) as jinja2's pprint filter calls it: width 80, indent 1, dict keys sorted; a value
 * whose repr does not fit is split one element per line, long strings into chunks at whitespace. */
static size_t u8len_str(const ig_str *s, size_t from) { return tm_u8_len(s->p ? s->p + from : "", s->len - from); }

/* key order of pprint's _safe_key: natural order when comparable, else by type name (stable otherwise) */
static int pp_key_cmp(tm_ctx *c, const tm_val *a, const tm_val *b) {
  bool an = a->t == V_INT || a->t == V_BOOL || a->t == V_FLOAT, bn = b->t == V_INT || b->t == V_BOOL || b->t == V_FLOAT;
  if ((an && bn) || (a->t == V_STR && b->t == V_STR)) return tm_compare(c, a, b);
  return strcmp(tm_type_name(a), tm_type_name(b));
}
static uint32_t *pp_sorted_keys(tm_ctx *c, const tm_dict *d) {
  uint32_t *ord = tm_ralloc(c, sizeof(uint32_t) * (d->n ? d->n : 1));
  for (uint32_t i = 0; i < d->n; i++) ord[i] = i;
  for (uint32_t i = 1; i < d->n; i++) { /* insertion sort: stable */
    uint32_t x = ord[i];
    int64_t j = (int64_t)i - 1;
    while (j >= 0 && pp_key_cmp(c, &d->k[ord[j]], &d->k[x]) > 0) {
      ord[j + 1] = ord[j];
      j--;
    }
    ord[j + 1] = x;
  }
  return ord;
}
/* safe_repr: repr with dict keys sorted, at any depth */
static void pp_repr(tm_ctx *c, ig_str *s, const tm_val *v) {
  tm_charge(c, 1);
  if (++c->repr_depth > 512) tm_fail(c, IG_TMPL_ELIMIT, "value nested too deeply to print");
  if (v->t == V_DICT) {
    uint32_t *ord = pp_sorted_keys(c, v->d);
    ig_str_putc(s, '{');
    for (uint32_t i = 0; i < v->d->n; i++) {
      if (i) ig_str_puts(s, ", ");
      pp_repr(c, s, &v->d->k[ord[i]]);
      ig_str_puts(s, ": ");
      pp_repr(c, s, &v->d->v[ord[i]]);
    }
    ig_str_putc(s, '}');
  } else if (v->t == V_LIST && !v->unsafe && v->tuple != 2) {
    ig_str_putc(s, v->tuple ? '(' : '[');
    for (uint32_t i = 0; i < v->l->n; i++) {
      if (i) ig_str_puts(s, ", ");
      pp_repr(c, s, &v->l->v[i]);
    }
    if (v->tuple && v->l->n == 1) ig_str_putc(s, ',');
    ig_str_putc(s, v->tuple ? ')' : ']');
  } else
    tm_repr(c, s, v);
  c->repr_depth--;
  tm_check_str(c, s);
}
static size_t pp_repr_len(tm_ctx *c, const char *p, size_t n) {
  ig_str *t = tm_buf_get(c);
  tm_val sv = tm_str(c, p, n);
  tm_repr(c, t, &sv);
  size_t len = u8len_str(t, 0);
  tm_buf_put(c, t);
  return len;
}
static void pp_format(tm_ctx *c, ig_str *s, const tm_val *v, long indent, long allowance, int level);
static void pp_str(tm_ctx *c, ig_str *s, const tm_val *v, long indent, long allowance, int level) {
  if (!v->n) {
    tm_repr(c, s, v);
    return;
  }
  if (level == 1) {
    indent++;
    allowance++;
  }
  long max_width1 = 80 - indent, max_width = 80 - indent;
  /* lines with their ends (splitlines(True)); then chunks of (non-space, space) runs that fit */
  tm_list *chunks = tm_list_new(c, 0);
  size_t i = 0;
  tm_val last_line_rep_src = *v;
  while (i < v->n) {
    size_t j = i;
    while (j < v->n && v->s[j] != '\n' && v->s[j] != '\r' && v->s[j] != '\v' && v->s[j] != '\f' &&
           !(v->s[j] >= 0x1c && v->s[j] <= 0x1e))
      j++;
    if (j < v->n) j += (v->s[j] == '\r' && j + 1 < v->n && v->s[j + 1] == '\n') ? 2 : 1;
    bool last = j >= v->n;
    tm_val line = tm_str(c, v->s + i, j - i);
    last_line_rep_src = line;
    if (last) max_width1 -= allowance;
    if ((long)pp_repr_len(c, line.s, line.n) <= max_width1) {
      tm_list_push(c, chunks, line);
    } else {
      long max_width2 = max_width;
      size_t cur_a = i, cur_b = i; /* current chunk [cur_a, cur_b) */
      size_t k = i;
      while (k < j) {
        size_t p = k; /* one part: \S*\s* */
        size_t adv;
        while (p < j && !tm_isspace_cp(tm_u8_decode(v->s + p, j - p, &adv))) p += adv;
        while (p < j && tm_isspace_cp(tm_u8_decode(v->s + p, j - p, &adv))) p += adv;
        if (p == k) break;
        if (p >= j && last) max_width2 -= allowance;
        if ((long)pp_repr_len(c, v->s + cur_a, p - cur_a) > max_width2) {
          if (cur_b > cur_a) tm_list_push(c, chunks, tm_str(c, v->s + cur_a, cur_b - cur_a));
          cur_a = k;
        }
        cur_b = p;
        k = p;
      }
      if (cur_b > cur_a) tm_list_push(c, chunks, tm_str(c, v->s + cur_a, cur_b - cur_a));
    }
    i = j;
  }
  if (chunks->n == 1) {
    tm_repr(c, s, &last_line_rep_src);
    return;
  }
  if (level == 1) ig_str_putc(s, '(');
  for (uint32_t k = 0; k < chunks->n; k++) {
    if (k) {
      ig_str_putc(s, '\n');
      for (long q = 0; q < indent; q++) ig_str_putc(s, ' ');
    }
    tm_repr(c, s, &chunks->v[k]);
  }
  if (level == 1) ig_str_putc(s, ')');
}
static void pp_format(tm_ctx *c, ig_str *s, const tm_val *v, long indent, long allowance, int level) {
  if (++c->repr_depth > 512) tm_fail(c, IG_TMPL_ELIMIT, "value nested too deeply to print");
  ig_str *rep = tm_buf_get(c);
  pp_repr(c, rep, v);
  long max_width = 80 - indent - allowance;
  bool container = v->t == V_DICT || (v->t == V_LIST && !v->unsafe && v->tuple != 2) || (v->t == V_STR && !v->unsafe);
  if ((long)u8len_str(rep, 0) > max_width && container) {
    if (v->t == V_STR) {
      pp_str(c, s, v, indent, allowance, level + 1);
    } else if (v->t == V_DICT) {
      ig_str_putc(s, '{');
      uint32_t *ord = pp_sorted_keys(c, v->d);
      long ind = indent + 1;
      for (uint32_t i = 0; i < v->d->n; i++) {
        bool last = i + 1 == v->d->n;
        size_t before = s->len;
        pp_repr(c, s, &v->d->k[ord[i]]);
        long klen = (long)u8len_str(s, before);
        ig_str_puts(s, ": ");
        pp_format(c, s, &v->d->v[ord[i]], ind + klen + 2, last ? allowance + 1 : 1, level + 1);
        if (!last) {
          ig_str_puts(s, ",\n");
          for (long q = 0; q < ind; q++) ig_str_putc(s, ' ');
        }
      }
      ig_str_putc(s, '}');
    } else {
      const char *endchar = v->tuple ? (v->l->n == 1 ? ",)" : ")") : "]";
      ig_str_putc(s, v->tuple ? '(' : '[');
      long ind = indent + 1, allow = allowance + (long)strlen(endchar);
      for (uint32_t i = 0; i < v->l->n; i++) {
        bool last = i + 1 == v->l->n;
        if (i) {
          ig_str_puts(s, ",\n");
          for (long q = 0; q < ind; q++) ig_str_putc(s, ' ');
        }
        pp_format(c, s, &v->l->v[i], ind, last ? allow : 1, level + 1);
      }
      ig_str_puts(s, endchar);
    }
  } else
    ig_str_append(s, rep->p ? rep->p : "", rep->len);
  tm_buf_put(c, rep);
  c->repr_depth--;
  tm_check_str(c, s);
}
void tm_pformat(tm_ctx *c, ig_str *s, const tm_val *v) { pp_format(c, s, v, 0, 0, 0); }
