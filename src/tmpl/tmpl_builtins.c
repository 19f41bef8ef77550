/* tmpl_builtins: jinja2's filters and tests, the globals transformers provides (raise_exception,
 * strftime_now) with jinja2's own (range, namespace, dict), and the Python str/dict/list methods that chat
 * templates call. Mutating methods (list.append, dict.update, ...) are refused as jinja2's
 * ImmutableSandboxedEnvironment refuses them. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <utf8proc.h>

#include "tmpl/tmpl_int.h"

#define SV(z) ((tm_sv){z, sizeof(z) - 1})
static bool sv_eq(tm_sv a, const char *z) { return a.n == strlen(z) && memcmp(a.p, z, a.n) == 0; }
static int find_name(const char *const *names, tm_sv n) {
  if (!n.n) return -1;
  for (int i = 0; names[i]; i++)
    if (names[i][0] == n.p[0] && sv_eq(n, names[i])) return i;
  return -1;
}

/* ---------------------------------------------------------------- argument helpers */
/* The i-th argument, by position or by keyword `kw`; NULL when absent. */
static tm_val *arg(tm_args *a, int i, const char *kw) {
  if (i >= 0 && i < a->n) return &a->v[i];
  if (kw)
    for (int k = 0; k < a->nkw; k++)
      if (sv_eq(a->kwn[k], kw)) return &a->kwv[k];
  return NULL;
}
static bool arg_bool(tm_args *a, int i, const char *kw, bool def) {
  tm_val *v = arg(a, i, kw);
  return v ? tm_truthy(v) : def;
}
static int64_t arg_int(tm_ctx *c, tm_args *a, int i, const char *kw, int64_t def) {
  tm_val *v = arg(a, i, kw);
  if (!v || v->t == V_NONE) return def;
  if (v->t == V_INT || v->t == V_BOOL) return v->i;
  tm_fail(c, IG_TMPL_ERUNTIME, "'%s' object cannot be interpreted as an integer", tm_type_name(v));
}
static tm_val need_str(tm_ctx *c, tm_val *v, const char *what) {
  if (!v) tm_fail(c, IG_TMPL_ERUNTIME, "%s: missing argument", what);
  if (v->t != V_STR) {
    if (v->t == V_UNDEF) tm_undef_fail(c, v);
    tm_fail(c, IG_TMPL_ERUNTIME, "must be str, not %s", tm_type_name(v));
  }
  return *v;
}
static tm_val dictv(tm_dict *d) {
  tm_val v = {0};
  v.t = V_DICT;
  v.d = d;
  return v;
}
#define undef_error tm_undef_fail

/* ---------------------------------------------------------------- string helpers */
static bool is_cased(uint32_t cp) {
  utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)cp);
  return k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT;
}
enum { CASE_UPPER, CASE_LOWER, CASE_TITLE, CASE_CAPITALIZE, CASE_SWAP };
static tm_val str_case(tm_ctx *c, tm_val s, int mode) {
  ig_str *o = tm_buf_get(c);
  size_t i = 0;
  bool prev_cased = false, first = true;
  while (i < s.n) {
    size_t adv;
    uint32_t cp = tm_u8_decode(s.s + i, s.n - i, &adv);
    uint32_t r = cp;
    switch (mode) {
    case CASE_UPPER: r = (uint32_t)utf8proc_toupper((utf8proc_int32_t)cp); break;
    case CASE_LOWER: r = (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp); break;
    case CASE_TITLE:
      r = prev_cased ? (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp) : (uint32_t)utf8proc_totitle((utf8proc_int32_t)cp);
      prev_cased = is_cased(cp);
      break;
    case CASE_CAPITALIZE:
      r = first ? (uint32_t)utf8proc_totitle((utf8proc_int32_t)cp) : (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp);
      break;
    case CASE_SWAP: {
      utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)cp);
      if (k == UTF8PROC_CATEGORY_LU) r = (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp);
      else if (k == UTF8PROC_CATEGORY_LL) r = (uint32_t)utf8proc_toupper((utf8proc_int32_t)cp);
      break;
    }
    }
    first = false;
    if (r == cp) ig_str_append(o, s.s + i, adv);
    else tm_u8_put(o, r);
    i += adv;
  }
  tm_val v = tm_str_from(c, o);
  tm_buf_put(c, o);
  return v;
}
static bool cp_in(uint32_t cp, tm_val chars) {
  size_t i = 0;
  while (i < chars.n) {
    size_t adv;
    if (tm_u8_decode(chars.s + i, chars.n - i, &adv) == cp) return true;
    i += adv;
  }
  return false;
}
/* strip: which 1 = left, 2 = right, 3 = both; chars NULL/None = whitespace */
static tm_val str_strip(tm_ctx *c, tm_val s, tm_val *chars, int which) {
  bool ws = !chars || chars->t == V_NONE;
  if (!ws && chars->t != V_STR) tm_fail(c, IG_TMPL_ERUNTIME, "strip arg must be None or str");
  size_t a = 0, b = s.n;
  if (which & 1)
    while (a < b) {
      size_t adv;
      uint32_t cp = tm_u8_decode(s.s + a, b - a, &adv);
      if (ws ? !tm_isspace_cp(cp) : !cp_in(cp, *chars)) break;
      a += adv;
    }
  if (which & 2)
    while (b > a) {
      size_t k = b - 1;
      while (k > a && ((unsigned char)s.s[k] & 0xC0) == 0x80) k--;
      size_t adv;
      uint32_t cp = tm_u8_decode(s.s + k, b - k, &adv);
      if (ws ? !tm_isspace_cp(cp) : !cp_in(cp, *chars)) break;
      b = k;
    }
  return tm_str(c, s.s + a, b - a);
}
static tm_val str_replace(tm_ctx *c, tm_val s, tm_val old, tm_val new_, int64_t count) {
  ig_str *o = tm_buf_get(c);
  if (old.n == 0) {
    /* Python inserts `new` before every character and at the end */
    size_t i = 0;
    int64_t done = 0;
    while (i <= s.n) {
      if (count < 0 || done < count) {
        ig_str_append(o, new_.s, new_.n);
        done++;
      }
      if (i == s.n) break;
      size_t j = i + 1;
      while (j < s.n && ((unsigned char)s.s[j] & 0xC0) == 0x80) j++;
      ig_str_append(o, s.s + i, j - i);
      i = j;
      tm_check_str(c, o);
    }
  } else {
    size_t i = 0;
    int64_t done = 0;
    while (i < s.n) {
      const char *f = (count < 0 || done < count) ? memmem(s.s + i, s.n - i, old.s, old.n) : NULL;
      if (!f) {
        ig_str_append(o, s.s + i, s.n - i);
        break;
      }
      ig_str_append(o, s.s + i, (size_t)(f - (s.s + i)));
      ig_str_append(o, new_.s, new_.n);
      tm_check_str(c, o);
      i = (size_t)(f - s.s) + old.n;
      done++;
    }
  }
  tm_val v = tm_str_from(c, o);
  tm_buf_put(c, o);
  return v;
}
static tm_val str_split(tm_ctx *c, tm_val s, tm_val *sep, int64_t maxsplit, bool right) {
  tm_list *l = tm_list_new(c, 0);
  if (!sep || sep->t == V_NONE) {
    /* whitespace split */
    size_t i = 0;
    int64_t splits = 0;
    if (right) {
      /* rsplit(None): scan from the right */
      tm_list *rev = tm_list_new(c, 0);
      size_t b = s.n;
      while (b > 0) {
        while (b > 0) {
          size_t k = b - 1;
          while (k > 0 && ((unsigned char)s.s[k] & 0xC0) == 0x80) k--;
          size_t adv;
          if (!tm_isspace_cp(tm_u8_decode(s.s + k, b - k, &adv))) break;
          b = k;
        }
        if (!b) break;
        if (maxsplit >= 0 && splits >= maxsplit) {
          tm_list_push(c, rev, tm_str(c, s.s, b));
          b = 0;
          break;
        }
        size_t a = b;
        while (a > 0) {
          size_t k = a - 1;
          while (k > 0 && ((unsigned char)s.s[k] & 0xC0) == 0x80) k--;
          size_t adv;
          if (tm_isspace_cp(tm_u8_decode(s.s + k, a - k, &adv))) break;
          a = k;
        }
        tm_list_push(c, rev, tm_str(c, s.s + a, b - a));
        splits++;
        b = a;
      }
      for (uint32_t k = rev->n; k > 0; k--) tm_list_push(c, l, rev->v[k - 1]);
      return tm_list_val(l, false);
    }
    while (i < s.n) {
      size_t adv;
      while (i < s.n && tm_isspace_cp(tm_u8_decode(s.s + i, s.n - i, &adv))) i += adv;
      if (i >= s.n) break;
      if (maxsplit >= 0 && splits >= maxsplit) {
        /* the rest, with trailing whitespace stripped */
        tm_val rest = str_strip(c, tm_str(c, s.s + i, s.n - i), NULL, 2);
        tm_list_push(c, l, rest);
        break;
      }
      size_t j = i;
      while (j < s.n && !tm_isspace_cp(tm_u8_decode(s.s + j, s.n - j, &adv))) j += adv;
      tm_list_push(c, l, tm_str(c, s.s + i, j - i));
      splits++;
      i = j;
    }
    return tm_list_val(l, false);
  }
  if (sep->t != V_STR) tm_fail(c, IG_TMPL_ERUNTIME, "must be str or None, not %s", tm_type_name(sep));
  if (sep->n == 0) tm_fail(c, IG_TMPL_ERUNTIME, "empty separator");
  if (right) {
    tm_list *rev = tm_list_new(c, 0);
    size_t b = s.n;
    int64_t splits = 0;
    for (;;) {
      const char *f = NULL;
      if (maxsplit < 0 || splits < maxsplit)
        for (size_t k = b >= sep->n ? b - sep->n + 1 : 0; k > 0; k--)
          if (memcmp(s.s + k - 1, sep->s, sep->n) == 0) {
            f = s.s + k - 1;
            break;
          }
      if (!f) {
        tm_list_push(c, rev, tm_str(c, s.s, b));
        break;
      }
      size_t a = (size_t)(f - s.s);
      tm_list_push(c, rev, tm_str(c, s.s + a + sep->n, b - a - sep->n));
      b = a;
      splits++;
    }
    for (uint32_t k = rev->n; k > 0; k--) tm_list_push(c, l, rev->v[k - 1]);
    return tm_list_val(l, false);
  }
  size_t i = 0;
  int64_t splits = 0;
  for (;;) {
    const char *f = (maxsplit < 0 || splits < maxsplit) ? memmem(s.s + i, s.n - i, sep->s, sep->n) : NULL;
    if (!f) {
      tm_list_push(c, l, tm_str(c, s.s + i, s.n - i));
      break;
    }
    tm_list_push(c, l, tm_str(c, s.s + i, (size_t)(f - (s.s + i))));
    i = (size_t)(f - s.s) + sep->n;
    splits++;
  }
  return tm_list_val(l, false);
}
/* Python str.splitlines line boundaries */
static size_t line_break_at(const char *s, size_t n, size_t i) {
  unsigned char ch = (unsigned char)s[i];
  if (ch == '\r') return (i + 1 < n && s[i + 1] == '\n') ? 2 : 1;
  if (ch == '\n' || ch == '\v' || ch == '\f' || ch == 0x1c || ch == 0x1d || ch == 0x1e) return 1;
  if (ch >= 0x80) {
    size_t adv;
    uint32_t cp = tm_u8_decode(s + i, n - i, &adv);
    if (cp == 0x85 || cp == 0x2028 || cp == 0x2029) return adv;
  }
  return 0;
}
static tm_list *splitlines(tm_ctx *c, tm_val s, bool keepends) {
  tm_list *l = tm_list_new(c, 0);
  size_t i = 0, start = 0;
  while (i < s.n) {
    size_t k = line_break_at(s.s, s.n, i);
    if (k) {
      tm_list_push(c, l, tm_str(c, s.s + start, (keepends ? i + k : i) - start));
      i += k;
      start = i;
    } else
      i++;
  }
  if (start < s.n) tm_list_push(c, l, tm_str(c, s.s + start, s.n - start));
  return l;
}
static bool str_starts(tm_val s, tm_val p) { return p.n <= s.n && memcmp(s.s, p.s, p.n) == 0; }
static bool str_ends(tm_val s, tm_val p) { return p.n <= s.n && memcmp(s.s + s.n - p.n, p.s, p.n) == 0; }
tm_val tm_html_escape(tm_ctx *c, tm_val s) {
  if (s.t == V_STR && s.unsafe) return s; /* already Markup */
  s = tm_stringify(c, &s);
  ig_str *o = tm_buf_get(c);
  for (size_t i = 0; i < s.n; i++) {
    switch (s.s[i]) {
    case '&': ig_str_puts(o, "&amp;"); break;
    case '<': ig_str_puts(o, "&lt;"); break;
    case '>': ig_str_puts(o, "&gt;"); break;
    case '"': ig_str_puts(o, "&#34;"); break;
    case '\'': ig_str_puts(o, "&#39;"); break;
    default: ig_str_putc(o, s.s[i]);
    }
  }
  tm_val v = tm_str_from(c, o);
  tm_buf_put(c, o);
  v.unsafe = 1;
  return v;
}
static tm_val join_vals(tm_ctx *c, tm_list *l, tm_val sep) {
  ig_str *o = tm_buf_get(c);
  for (uint32_t i = 0; i < l->n; i++) {
    if (i) ig_str_append(o, sep.s, sep.n);
    tm_to_str(c, o, &l->v[i]);
  }
  tm_val v = tm_str_from(c, o);
  tm_buf_put(c, o);
  return v;
}
static int64_t py_len(tm_ctx *c, const tm_val *v) {
  switch (v->t) {
  case V_STR: return (int64_t)tm_u8_len(v->s, v->n);
  case V_LIST:
    if (v->unsafe) tm_fail(c, IG_TMPL_ERUNTIME, "object of type 'generator' has no len()");
    return v->l->n;
  case V_DICT: case V_NS: return v->d->n;
  case V_UNDEF: return 0;
  default: tm_fail(c, IG_TMPL_ERUNTIME, "object of type '%s' has no len()", tm_type_name(v));
  }
}

/* ---------------------------------------------------------------- Python string formatting */
/* fmt % args: %s %r %d %i %f %F %e %E %g %G %x %X %o %c %% with flags, width, precision, %(name)s */
tm_val tm_percent_format(tm_ctx *c, tm_val fmt, tm_val args) {
  ig_str *o = tm_buf_get(c);
  tm_list *al = NULL;
  tm_dict *ad = NULL;
  uint32_t ai = 0;
  if (args.t == V_LIST && args.tuple == 1) al = args.l;
  else if (args.t == V_DICT) ad = args.d;
  size_t i = 0;
  while (i < fmt.n) {
    char ch = fmt.s[i];
    if (ch != '%') {
      ig_str_putc(o, ch);
      i++;
      continue;
    }
    i++;
    if (i >= fmt.n) tm_fail(c, IG_TMPL_ERUNTIME, "incomplete format");
    if (fmt.s[i] == '%') {
      ig_str_putc(o, '%');
      i++;
      continue;
    }
    tm_val v;
    bool have = false;
    if (fmt.s[i] == '(') {
      size_t j = i + 1;
      while (j < fmt.n && fmt.s[j] != ')') j++;
      if (j >= fmt.n || !ad) tm_fail(c, IG_TMPL_ERUNTIME, "format requires a mapping");
      int k = tm_dict_find_str(c, ad, fmt.s + i + 1, j - i - 1);
      if (k < 0) tm_fail(c, IG_TMPL_ERUNTIME, "KeyError: '%.*s'", (int)(j - i - 1), fmt.s + i + 1);
      v = ad->v[k];
      have = true;
      i = j + 1;
    }
    char flags[8];
    int nf = 0;
    while (i < fmt.n && strchr("-+ #0", fmt.s[i])) {
      if (nf < 7 && !memchr(flags, fmt.s[i], (size_t)nf)) flags[nf++] = fmt.s[i];
      i++;
    }
    flags[nf] = 0;
    long width = -1, prec = -1;
    while (i < fmt.n && fmt.s[i] >= '0' && fmt.s[i] <= '9') {
      width = (width < 0 ? 0 : width * 10) + (fmt.s[i++] - '0');
      if (width > 100000 || (size_t)width > c->max_output) tm_fail(c, IG_TMPL_ELIMIT, "format width too large");
    }
    if (i < fmt.n && fmt.s[i] == '.') {
      i++;
      prec = 0;
      while (i < fmt.n && fmt.s[i] >= '0' && fmt.s[i] <= '9') {
        prec = prec * 10 + (fmt.s[i++] - '0');
        if (prec > 100000) tm_fail(c, IG_TMPL_ELIMIT, "format precision too large");
      }
    }
    if (i >= fmt.n) tm_fail(c, IG_TMPL_ERUNTIME, "incomplete format");
    char conv = fmt.s[i++];
    if (!have) {
      if (al) {
        if (ai >= al->n) tm_fail(c, IG_TMPL_ERUNTIME, "not enough arguments for format string");
        v = al->v[ai++];
      } else {
        if (ai > 0) tm_fail(c, IG_TMPL_ERUNTIME, "not enough arguments for format string");
        v = args;
        ai++;
      }
    }
    char spec[32]; /* % flags width .prec for snprintf, widths already bounded */
    int sl = snprintf(spec, sizeof spec, "%%%s", flags);
    if (width >= 0) sl += snprintf(spec + sl, sizeof spec - (size_t)sl, "%ld", width);
    if (prec >= 0) sl += snprintf(spec + sl, sizeof spec - (size_t)sl, ".%ld", prec > 1000 ? 1000L : prec);
    size_t blen = (size_t)(width > 0 ? width : 0) + 1400;
    char *buf = tm_ralloc(c, blen);
    switch (conv) {
    case 's': case 'r': case 'a': {
      tm_val sv;
      if (conv == 's') sv = tm_stringify(c, &v);
      else {
        ig_str *t = tm_buf_get(c);
        tm_repr(c, t, &v);
        sv = tm_str_from(c, t);
        tm_buf_put(c, t);
      }
      size_t n = prec >= 0 ? tm_u8_offset(sv.s, sv.n, (size_t)prec) : sv.n; /* precision counts characters */
      size_t cps = tm_u8_len(sv.s, n);
      bool left = strchr(flags, '-') != NULL;
      if (!left)
        for (long k = (long)cps; k < width; k++) ig_str_putc(o, ' ');
      ig_str_append(o, sv.s, n);
      if (left)
        for (long k = (long)cps; k < width; k++) ig_str_putc(o, ' ');
      break;
    }
    case 'd': case 'i': case 'u': case 'x': case 'X': case 'o': {
      if (v.t == V_FLOAT && (conv == 'd' || conv == 'i' || conv == 'u')) {
        if (!isfinite(v.f)) tm_fail(c, IG_TMPL_ERUNTIME, "cannot convert float %s to integer", isnan(v.f) ? "NaN" : "infinity");
        if (fabs(v.f) >= 9.2e18) tm_fail(c, IG_TMPL_ERUNTIME, "integer overflow");
        v = tm_int((int64_t)v.f);
      }
      if (v.t != V_INT && v.t != V_BOOL) tm_fail(c, IG_TMPL_ERUNTIME, "%%%c format: %s is required, not %s", conv, conv == 'd' || conv == 'i' || conv == 'u' ? "a real number" : "an integer", tm_type_name(&v));
      spec[sl++] = 'l';
      spec[sl++] = 'l';
      spec[sl++] = conv == 'i' || conv == 'u' ? 'd' : conv;
      spec[sl] = 0;
      snprintf(buf, blen, spec, (long long)v.i);
      ig_str_puts(o, buf);
      break;
    }
    case 'f': case 'F': case 'e': case 'E': case 'g': case 'G': {
      if (v.t != V_INT && v.t != V_BOOL && v.t != V_FLOAT) tm_fail(c, IG_TMPL_ERUNTIME, "must be real number, not %s", tm_type_name(&v));
      spec[sl++] = conv;
      spec[sl] = 0;
      snprintf(buf, blen, spec, v.t == V_FLOAT ? v.f : (double)v.i);
      ig_str_puts(o, buf);
      break;
    }
    case 'c':
      if (v.t == V_INT || v.t == V_BOOL) {
        if (v.i < 0 || v.i > 0x10FFFF) tm_fail(c, IG_TMPL_ERUNTIME, "%%c arg not in range(0x110000)");
        tm_u8_put(o, (uint32_t)v.i);
      } else if (v.t == V_STR && tm_u8_len(v.s, v.n) == 1)
        ig_str_append(o, v.s, v.n);
      else
        tm_fail(c, IG_TMPL_ERUNTIME, "%%c requires int or char");
      break;
    default: tm_fail(c, IG_TMPL_ERUNTIME, "unsupported format character '%c'", conv);
    }
    tm_check_str(c, o);
  }
  bool mapping_like = args.t == V_DICT || (args.t == V_LIST && args.tuple != 1 && !args.unsafe);
  if (!mapping_like && ((al && ai < al->n) || (!al && ai == 0)))
    tm_fail(c, IG_TMPL_ERUNTIME, "not all arguments converted during string formatting");
  tm_val r = tm_str_from(c, o);
  tm_buf_put(c, o);
  return r;
}

/* Python's format-spec mini-language for one value: [[fill]align][sign][#][0][width][,][.precision][type]. */
static void format_spec(tm_ctx *c, ig_str *o, tm_val v, tm_sv spec) {
  size_t i = 0;
  uint32_t fill = ' ';
  char align = 0, sign = '-', type = 0;
  int zero = 0, comma = 0, alt = 0;
  long width = -1, prec = -1;
  size_t adv = 0;
  uint32_t first = spec.n ? tm_u8_decode(spec.p, spec.n, &adv) : 0;
  if (spec.n > adv && strchr("<>^=", spec.p[adv])) {
    fill = first;
    align = spec.p[adv];
    i = adv + 1;
  } else if (spec.n && strchr("<>^=", spec.p[0])) {
    align = spec.p[0];
    i = 1;
  }
  if (i < spec.n && strchr("+- ", spec.p[i])) sign = spec.p[i++];
  if (i < spec.n && spec.p[i] == '#') alt = 1, i++;
  if (i < spec.n && spec.p[i] == '0') zero = 1, i++;
  while (i < spec.n && spec.p[i] >= '0' && spec.p[i] <= '9') {
    width = (width < 0 ? 0 : width * 10) + (spec.p[i++] - '0');
    if (width > 100000) tm_fail(c, IG_TMPL_ELIMIT, "format width or precision too large");
  }
  if (i < spec.n && spec.p[i] == ',') comma = 1, i++;
  if (i < spec.n && spec.p[i] == '.') {
    i++;
    prec = 0;
    while (i < spec.n && spec.p[i] >= '0' && spec.p[i] <= '9') {
      prec = prec * 10 + (spec.p[i++] - '0');
      if (prec > 100000) tm_fail(c, IG_TMPL_ELIMIT, "format width or precision too large");
    }
  }
  if (i < spec.n) type = spec.p[i++];
  if (i != spec.n) tm_fail(c, IG_TMPL_ERUNTIME, "Invalid format specifier '%.*s' for object of type '%s'", (int)spec.n, spec.p, tm_type_name(&v));
  if (width > 100000 || prec > 1000) tm_fail(c, IG_TMPL_ELIMIT, "format width or precision too large");
  ig_str *body = tm_buf_get(c);
  char buf[1200];
  bool numeric = v.t == V_INT || v.t == V_BOOL || v.t == V_FLOAT;
  if (!numeric) {
    if (type && type != 's') tm_fail(c, IG_TMPL_ERUNTIME, "Unknown format code '%c' for object of type '%s'", type, tm_type_name(&v));
    if (v.t != V_STR && spec.n) tm_fail(c, IG_TMPL_ERUNTIME, "unsupported format string passed to %s.__format__", tm_type_name(&v));
    tm_val s = tm_stringify(c, &v);
    size_t cut = prec >= 0 ? tm_u8_offset(s.s, s.n, (size_t)prec) : s.n;
    ig_str_append(body, s.s, cut);
    if (!align) align = '<';
  } else {
    bool is_float = v.t == V_FLOAT || strchr("eEfFgG%", type ? type : 'd');
    if (v.t == V_FLOAT && type && strchr("dxXob", type)) tm_fail(c, IG_TMPL_ERUNTIME, "Unknown format code '%c' for object of type 'float'", type);
    if (is_float) {
      double x = v.t == V_FLOAT ? v.f : (double)v.i;
      char t = type ? type : (prec >= 0 ? 'g' : 0);
      if (!t) { /* repr, with the sign option */
        if (sign != '-' && x >= 0) ig_str_putc(body, sign);
        tm_float_repr(body, x);
      } else {
        double y = t == '%' ? x * 100 : x;
        char f[16];
        snprintf(f, sizeof f, "%%%s%s.*%c", sign != '-' ? (char[]){sign, 0} : "", alt ? "#" : "", t == '%' ? 'f' : t);
        snprintf(buf, sizeof buf, f, (int)(prec >= 0 ? prec : 6), y);
        ig_str_puts(body, buf);
        if (t == '%') ig_str_putc(body, '%');
      }
    } else {
      long long n = v.i;
      char t = type ? type : 'd';
      if (!strchr("dxXobcn", t)) tm_fail(c, IG_TMPL_ERUNTIME, "Unknown format code '%c' for object of type 'int'", t);
      if (sign != '-' && n >= 0) ig_str_putc(body, sign);
      if (n < 0) ig_str_putc(body, '-');
      unsigned long long u = n < 0 ? 0ULL - (unsigned long long)n : (unsigned long long)n;
      if (t == 'b') {
        char tmp[70];
        int k = 0;
        do tmp[k++] = (char)('0' + (u & 1)); while (u >>= 1);
        if (alt) ig_str_puts(body, "0b");
        while (k) ig_str_putc(body, tmp[--k]);
      } else if (t == 'c') {
        if (n < 0 || u > 0x10FFFF) tm_fail(c, IG_TMPL_ERUNTIME, "%%c arg not in range(0x110000)");
        tm_u8_put(body, (uint32_t)u);
      } else {
        if (alt && t != 'd' && t != 'n') ig_str_puts(body, t == 'x' ? "0x" : t == 'X' ? "0X" : "0o");
        snprintf(buf, sizeof buf, t == 'x' ? "%llx" : t == 'X' ? "%llX" : t == 'o' ? "%llo" : "%llu", u);
        if (comma && (t == 'd' || t == 'n')) {
          size_t len = strlen(buf);
          for (size_t k = 0; k < len; k++) {
            if (k && (len - k) % 3 == 0) ig_str_putc(body, ',');
            ig_str_putc(body, buf[k]);
          }
        } else
          ig_str_puts(body, buf);
      }
    }
    if (!align) align = zero ? '=' : '>';
    if (zero && fill == ' ' && align == '=') fill = '0';
  }
  size_t len = tm_u8_len(body->p ? body->p : "", body->len);
  long pad = width > (long)len ? width - (long)len : 0;
  long left = align == '<' ? 0 : align == '^' ? pad / 2 : pad;
  if (align == '=' && body->len && strchr("+- ", body->p[0])) { /* padding after the sign */
    ig_str_putc(o, body->p[0]);
    for (long k = 0; k < pad; k++) tm_u8_put(o, fill);
    ig_str_append(o, body->p + 1, body->len - 1);
  } else {
    for (long k = 0; k < left; k++) tm_u8_put(o, fill);
    ig_str_append(o, body->p ? body->p : "", body->len);
    for (long k = 0; k < pad - left; k++) tm_u8_put(o, fill);
  }
  tm_buf_put(c, body);
}

/* str.format: {} {0} {name} {{ }}, !r / !s conversions and format specs */
static tm_val str_format(tm_ctx *c, tm_val fmt, tm_args *a) {
  ig_str *o = tm_buf_get(c);
  int auto_idx = 0;
  size_t i = 0;
  while (i < fmt.n) {
    char ch = fmt.s[i];
    if (ch == '{' && i + 1 < fmt.n && fmt.s[i + 1] == '{') {
      ig_str_putc(o, '{');
      i += 2;
      continue;
    }
    if (ch == '}' && i + 1 < fmt.n && fmt.s[i + 1] == '}') {
      ig_str_putc(o, '}');
      i += 2;
      continue;
    }
    if (ch != '{') {
      ig_str_putc(o, ch);
      i++;
      continue;
    }
    size_t j = i + 1;
    int depth = 1;
    for (; j < fmt.n; j++) { /* nested {} in a format spec: '{0:>{1}}' */
      if (fmt.s[j] == '{') depth++;
      else if (fmt.s[j] == '}' && --depth == 0) break;
    }
    if (j >= fmt.n) tm_fail(c, IG_TMPL_ERUNTIME, "Single '{' encountered in format string");
    tm_sv field = {fmt.s + i + 1, j - i - 1};
    char conv = 0;
    tm_sv spec = {"", 0};
    for (size_t k = 0; k < field.n; k++)
      if (field.p[k] == '!' || field.p[k] == ':') {
        size_t colon = k;
        if (field.p[k] == '!' && k + 1 < field.n) {
          conv = field.p[k + 1];
          colon = k + 2;
        }
        if (colon < field.n && field.p[colon] == ':') spec = (tm_sv){field.p + colon + 1, field.n - colon - 1};
        field.n = k;
        break;
      }
    tm_val v;
    if (field.n == 0) {
      if (auto_idx >= a->n) tm_fail(c, IG_TMPL_ERUNTIME, "Replacement index %d out of range for positional args tuple", auto_idx);
      v = a->v[auto_idx++];
    } else if (field.p[0] >= '0' && field.p[0] <= '9') {
      long idx = 0;
      for (size_t k = 0; k < field.n && field.p[k] >= '0' && field.p[k] <= '9'; k++) {
        idx = idx * 10 + (field.p[k] - '0');
        if (idx > 1000000) break;
      }
      if (idx >= a->n) tm_fail(c, IG_TMPL_ERUNTIME, "Replacement index %ld out of range for positional args tuple", idx);
      v = a->v[idx];
    } else {
      int found = -1;
      for (int k = 0; k < a->nkw; k++)
        if (a->kwn[k].n == field.n && memcmp(a->kwn[k].p, field.p, field.n) == 0) found = k;
      if (found < 0) tm_fail(c, IG_TMPL_ERUNTIME, "KeyError: '%.*s'", (int)field.n, field.p);
      v = a->kwv[found];
    }
    if (conv == 'r' || conv == 's') {
      ig_str *t = tm_buf_get(c);
      if (conv == 'r') tm_repr(c, t, &v);
      else tm_to_str(c, t, &v);
      v = tm_str_from(c, t);
      tm_buf_put(c, t);
    }
    if (spec.n && memchr(spec.p, '{', spec.n)) {
      if (++c->depth > c->max_depth) tm_fail(c, IG_TMPL_ELIMIT, "format specifiers nested too deeply");
      tm_val sv = str_format(c, tm_str(c, spec.p, spec.n), a);
      c->depth--;
      spec = (tm_sv){sv.s, sv.n};
    }
    if (spec.n) format_spec(c, o, v, spec);
    else tm_to_str(c, o, &v);
    tm_check_str(c, o);
    i = j + 1;
  }
  tm_val r = tm_str_from(c, o);
  tm_buf_put(c, o);
  return r;
}

/* ---------------------------------------------------------------- sorting */
typedef struct sort_item {
  tm_val key;
  tm_val val;
} sort_item;
static tm_val ignore_case(tm_ctx *c, tm_val v, bool case_sensitive) {
  if (!case_sensitive && v.t == V_STR) return str_case(c, v, CASE_LOWER);
  return v;
}
static void merge_sort(tm_ctx *c, sort_item *a, sort_item *tmp, size_t n, bool reverse) {
  if (n < 2) return;
  size_t h = n / 2;
  merge_sort(c, a, tmp, h, reverse);
  merge_sort(c, a + h, tmp, n - h, reverse);
  size_t i = 0, j = h, k = 0;
  while (i < h && j < n) {
    int r = tm_compare(c, &a[j].key, &a[i].key);
    if (reverse) r = -r;
    if (r < 0) tmp[k++] = a[j++];
    else tmp[k++] = a[i++];
  }
  while (i < h) tmp[k++] = a[i++];
  while (j < n) tmp[k++] = a[j++];
  memcpy(a, tmp, sizeof(sort_item) * n);
  c->steps += n;
}
/* attribute lookup as environment.getitem does it, with dotted paths ("a.b") and integer parts */
static tm_val attr_path(tm_ctx *c, tm_val v, tm_val attr) {
  if (attr.t != V_STR) return tm_getitem(c, v, attr);
  size_t i = 0;
  while (i <= attr.n) {
    size_t j = i;
    while (j < attr.n && attr.s[j] != '.') j++;
    tm_val part = tm_str(c, attr.s + i, j - i);
    bool digits = j > i;
    for (size_t k = i; k < j; k++) digits = digits && attr.s[k] >= '0' && attr.s[k] <= '9';
    if (digits) part = tm_int(strtoll(attr.s + i, NULL, 10)); /* clamps on overflow */
    if (v.t == V_UNDEF) return v;
    v = tm_getitem(c, v, part);
    i = j + 1;
  }
  return v;
}

/* ---------------------------------------------------------------- filters */
enum {
  F_ABS, F_ATTR, F_CAPITALIZE, F_CENTER, F_COUNT, F_D, F_DEFAULT, F_DICTSORT, F_E, F_ESCAPE, F_FIRST, F_FLOAT,
  F_FORMAT, F_INDENT, F_INT, F_ITEMS, F_JOIN, F_LAST, F_LENGTH, F_LIST, F_LOWER, F_MAP, F_MAX, F_MIN, F_REJECT,
  F_REJECTATTR, F_REPLACE, F_REVERSE, F_ROUND, F_SAFE, F_SELECT, F_SELECTATTR, F_SORT, F_STRING, F_SUM, F_TITLE,
  F_TOJSON, F_TRIM, F_UNIQUE, F_UPPER, F_WORDCOUNT, F_BATCH, F_PPRINT, F_TRUNCATE,
};
static const char *const filter_names[] = {
    "abs", "attr", "capitalize", "center", "count", "d", "default", "dictsort", "e", "escape", "first", "float",
    "format", "indent", "int", "items", "join", "last", "length", "list", "lower", "map", "max", "min", "reject",
    "rejectattr", "replace", "reverse", "round", "safe", "select", "selectattr", "sort", "string", "sum", "title",
    "tojson", "trim", "unique", "upper", "wordcount", "batch", "pprint", "truncate", NULL};
int tm_filter_id(tm_sv name) { return find_name(filter_names, name); }

enum {
  T_BOOLEAN, T_CALLABLE, T_DEFINED, T_DIVISIBLEBY, T_EQ, T_EQUALTO, T_ESCAPED, T_EVEN, T_FALSE, T_FILTER, T_FLOAT,
  T_GE, T_GT, T_GREATERTHAN, T_IN, T_INTEGER, T_ITERABLE, T_LE, T_LOWER, T_LT, T_LESSTHAN, T_MAPPING, T_NE, T_NONE,
  T_NUMBER, T_ODD, T_SAMEAS, T_SEQUENCE, T_STRING, T_TEST, T_TRUE, T_UNDEFINED, T_UPPER,
};
static const char *const test_names[] = {
    "boolean", "callable", "defined", "divisibleby", "eq", "equalto", "escaped", "even", "false", "filter", "float",
    "ge", "gt", "greaterthan", "in", "integer", "iterable", "le", "lower", "lt", "lessthan", "mapping", "ne", "none",
    "number", "odd", "sameas", "sequence", "string", "test", "true", "undefined", "upper", NULL};
int tm_test_id(tm_sv name) { return find_name(test_names, name); }

static tm_val to_float(tm_ctx *c, tm_val v, bool *ok) {
  *ok = true;
  switch (v.t) {
  case V_FLOAT: return v;
  case V_INT: case V_BOOL: return tm_float((double)v.i);
  case V_STR: {
    char buf[128];
    tm_val t = str_strip(c, v, NULL, 3);
    if (t.n == 0 || t.n >= sizeof buf) break;
    size_t k = 0;
    for (size_t i = 0; i < t.n; i++)
      if (t.s[i] != '_') buf[k++] = t.s[i];
    buf[k] = 0;
    char *end;
    double f = strtod(buf, &end);
    if (*end == 0) {
      /* Python's float() accepts inf/nan spellings but not hex floats */
      if (strchr(buf, 'x') || strchr(buf, 'X')) break;
      return tm_float(f);
    }
    break;
  }
  default: break;
  }
  *ok = false;
  return v;
}
static tm_val to_int(tm_ctx *c, tm_val v, int base, bool *ok) {
  *ok = true;
  switch (v.t) {
  case V_INT: return v;
  case V_BOOL: return tm_int(v.i);
  case V_FLOAT:
    if (isfinite(v.f) && fabs(v.f) < 9.2e18) return tm_int((int64_t)v.f);
    break;
  case V_STR: {
    char buf[128];
    tm_val t = str_strip(c, v, NULL, 3);
    if (t.n > 0 && t.n < sizeof buf) {
      size_t k = 0;
      for (size_t i = 0; i < t.n; i++)
        if (t.s[i] != '_') buf[k++] = t.s[i];
      buf[k] = 0;
      char *end;
      errno = 0;
      long long x = strtoll(buf, &end, base);
      if (*end == 0 && !errno && buf[0] != ' ') return tm_int(x);
    }
    bool fok;
    tm_val f = to_float(c, v, &fok);
    if (fok && isfinite(f.f) && fabs(f.f) < 9.2e18) return tm_int((int64_t)f.f);
    break;
  }
  default: break;
  }
  *ok = false;
  return v;
}

static tm_val filter_select(tm_ctx *c, tm_val v, tm_args *a, bool attr_form, bool keep) {
  tm_list *out = tm_list_new(c, 0);
  if (!tm_truthy(&v)) return tm_gen(out); /* jinja2: `if value: for item in value: ...` */
  if (v.t != V_LIST && v.t != V_DICT && v.t != V_STR) return tm_gen_err(c, "'%s' object is not iterable", tm_type_name(&v));
  if (v.t == V_LIST && v.l->err) return v;
  tm_list *src = tm_iterate(c, &v);
  int first = 0;
  tm_val attr = {0};
  if (attr_form) {
    tm_val *at = arg(a, 0, "attribute");
    if (!at) tm_fail(c, IG_TMPL_ERUNTIME, "Missing parameter for attribute name");
    attr = *at;
    first = 1;
  }
  int test = -1;
  tm_args targs = {0};
  if (a->n > first) {
    tm_val tn = need_str(c, &a->v[first], "select");
    test = tm_test_id((tm_sv){tn.s, tn.n});
    if (test < 0) tm_fail(c, IG_TMPL_ERUNTIME, "No test named '%.*s'.", (int)tn.n, tn.s);
    targs.n = a->n - first - 1;
    targs.v = a->v + first + 1;
  }
  for (uint32_t i = 0; i < src->n; i++) {
    tm_val item = src->v[i];
    tm_val x = attr_form ? attr_path(c, item, attr) : item;
    bool r = test >= 0 ? tm_call_test(c, test, x, &targs) : tm_truthy(&x);
    if (r == keep) tm_list_push(c, out, item);
  }
  return tm_gen(out);
}

static tm_val filter_map(tm_ctx *c, tm_val v, tm_args *a) {
  if (!tm_truthy(&v)) return tm_gen(tm_list_new(c, 0));
  if (v.t != V_LIST && v.t != V_DICT && v.t != V_STR) return tm_gen_err(c, "'%s' object is not iterable", tm_type_name(&v));
  if (v.t == V_LIST && v.l->err) return v;
  tm_list *src = tm_iterate(c, &v);
  tm_list *out = tm_list_new(c, src->n);
  tm_val *attr = arg(a, -1, "attribute");
  if (attr) {
    tm_val *def = arg(a, -1, "default");
    for (uint32_t i = 0; i < src->n; i++) {
      tm_val x = attr_path(c, src->v[i], *attr);
      if (x.t == V_UNDEF && def) x = *def;
      out->v[out->n++] = x;
    }
    return tm_gen(out);
  }
  if (a->n < 1) tm_fail(c, IG_TMPL_ERUNTIME, "map requires a filter argument");
  tm_val fname = need_str(c, &a->v[0], "map");
  int f = tm_filter_id((tm_sv){fname.s, fname.n});
  if (f < 0) tm_fail(c, IG_TMPL_ERUNTIME, "No filter named '%.*s'.", (int)fname.n, fname.s);
  tm_args fa = *a;
  fa.n = a->n - 1;
  fa.v = a->v + 1;
  for (uint32_t i = 0; i < src->n; i++) out->v[out->n++] = tm_call_filter(c, f, src->v[i], &fa);
  return tm_gen(out);
}

static tm_val filter_tojson(tm_ctx *c, tm_val v, tm_args *a) {
  /* transformers: tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False) */
  bool ascii = arg_bool(a, 0, "ensure_ascii", false);
  tm_val *ind = arg(a, 1, "indent");
  tm_val *seps = arg(a, 2, "separators");
  bool sort_keys = arg_bool(a, 3, "sort_keys", false);
  int indent = -1;
  const char *indent_str = "";
  char spaces[65];
  if (ind && ind->t != V_NONE) {
    if (ind->t == V_STR) {
      char *d = tm_ralloc(c, ind->n + 1);
      memcpy(d, ind->s, ind->n);
      d[ind->n] = 0;
      indent_str = d;
      indent = 0;
    } else if (ind->t == V_INT || ind->t == V_BOOL) {
      int64_t w = ind->i;
      if (w < 0) w = 0;
      if (w > 64) w = 64;
      memset(spaces, ' ', (size_t)w);
      spaces[w] = 0;
      indent_str = spaces;
      indent = (int)w;
    } else
      tm_fail(c, IG_TMPL_ERUNTIME, "indent must be an int or a string");
  }
  tm_sv item_sep = indent >= 0 ? SV(",") : SV(", "), key_sep = SV(": ");
  if (seps && seps->t != V_NONE) {
    if (seps->t != V_LIST || seps->l->n != 2 || seps->l->v[0].t != V_STR || seps->l->v[1].t != V_STR)
      tm_fail(c, IG_TMPL_ERUNTIME, "separators must be a (item_separator, key_separator) pair of strings");
    item_sep = (tm_sv){seps->l->v[0].s, seps->l->v[0].n};
    key_sep = (tm_sv){seps->l->v[1].s, seps->l->v[1].n};
  }
  ig_str *o = tm_buf_get(c);
  c->json_ascii = ascii;
  tm_to_json(c, o, &v, indent, indent_str, item_sep, key_sep, sort_keys, 0);
  c->json_ascii = false;
  tm_val r = tm_str_from(c, o);
  tm_buf_put(c, o);
  return r;
}

static tm_val filter_indent(tm_ctx *c, tm_val v, tm_args *a) {
  /* jinja2 does `s += "\n"` on the value as given, then s.splitlines() */
  if (v.t == V_UNDEF) undef_error(c, &v);
  if (v.t == V_LIST && !v.tuple && !v.unsafe) tm_fail(c, IG_TMPL_ERUNTIME, "'list' object has no attribute 'splitlines'");
  if (v.t == V_LIST && v.tuple == 1) tm_fail(c, IG_TMPL_ERUNTIME, "can only concatenate tuple (not \"str\") to tuple");
  if (v.t != V_STR) tm_fail(c, IG_TMPL_ERUNTIME, "unsupported operand type(s) for +=: '%s' and 'str'", tm_type_name(&v));
  tm_val s = v;
  tm_val *w = arg(a, 0, "width");
  bool first = arg_bool(a, 1, "first", false), blank = arg_bool(a, 2, "blank", false);
  tm_val ind;
  if (w && w->t == V_STR) ind = *w;
  else {
    int64_t n = w ? arg_int(c, a, 0, "width", 4) : 4;
    if (n < 0) n = 0;
    if ((size_t)n > c->max_output) tm_fail(c, IG_TMPL_ELIMIT, "indent too large");
    char *d = tm_ralloc(c, (size_t)n + 1);
    memset(d, ' ', (size_t)n);
    ind = tm_str(c, d, (size_t)n);
  }
  /* s += "\n"; lines = s.splitlines() */
  char *d = tm_ralloc(c, (size_t)s.n + 2);
  memcpy(d, s.s, s.n);
  d[s.n] = '\n';
  tm_list *lines = splitlines(c, tm_str(c, d, (size_t)s.n + 1), false);
  ig_str *o = tm_buf_get(c);
  if (first) ig_str_append(o, ind.s, ind.n);
  for (uint32_t i = 0; i < lines->n; i++) {
    tm_val ln = lines->v[i];
    if (i) {
      ig_str_putc(o, '\n');
      if (blank || ln.n) ig_str_append(o, ind.s, ind.n);
    }
    ig_str_append(o, ln.s, ln.n);
    tm_check_str(c, o);
  }
  tm_val r = tm_str_from(c, o);
  tm_buf_put(c, o);
  return r;
}

static tm_val filter_sort(tm_ctx *c, tm_val v, tm_args *a, bool unique_only) {
  if (unique_only && v.t != V_LIST && v.t != V_DICT && v.t != V_STR && v.t != V_UNDEF)
    return tm_gen_err(c, "'%s' object is not iterable", tm_type_name(&v)); /* unique is a generator */
  if (unique_only && v.t == V_LIST && v.l->err) return v;
  tm_list *src = tm_iterate(c, &v);
  bool reverse = unique_only ? false : arg_bool(a, 0, "reverse", false);
  bool cs = arg_bool(a, unique_only ? 0 : 1, "case_sensitive", false);
  tm_val *attr = arg(a, unique_only ? 1 : 2, "attribute");
  size_t n = src->n;
  sort_item *items = tm_ralloc(c, sizeof(sort_item) * (n ? n : 1));
  for (size_t i = 0; i < n; i++) {
    tm_val k = attr && attr->t != V_NONE ? attr_path(c, src->v[i], *attr) : src->v[i];
    items[i].key = ignore_case(c, k, cs);
    items[i].val = src->v[i];
  }
  tm_list *out = tm_list_new(c, (uint32_t)n);
  if (unique_only) {
    for (size_t i = 0; i < n; i++) {
      bool seen = false;
      for (size_t j = 0; j < i && !seen; j++) {
        tm_charge(c, 1);
        seen = tm_equal(c, &items[j].key, &items[i].key);
      }
      if (!seen) out->v[out->n++] = items[i].val;
    }
    return tm_gen(out);
  }
  sort_item *tmp = tm_ralloc(c, sizeof(sort_item) * (n ? n : 1));
  merge_sort(c, items, tmp, n, reverse);
  for (size_t i = 0; i < n; i++) out->v[out->n++] = items[i].val;
  return tm_list_val(out, false);
}

static tm_val minmax(tm_ctx *c, tm_val v, tm_args *a, bool want_max) {
  tm_list *src = tm_iterate(c, &v);
  bool cs = arg_bool(a, 0, "case_sensitive", false);
  tm_val *attr = arg(a, 1, "attribute");
  if (!src->n) {
    tm_val u = tm_undef("No aggregated item, sequence was empty.");
    return u;
  }
  tm_val best = src->v[0];
  tm_val bk = ignore_case(c, attr ? attr_path(c, best, *attr) : best, cs);
  for (uint32_t i = 1; i < src->n; i++) {
    tm_val k = ignore_case(c, attr ? attr_path(c, src->v[i], *attr) : src->v[i], cs);
    int r = tm_compare(c, &k, &bk);
    if (want_max ? r > 0 : r < 0) {
      best = src->v[i];
      bk = k;
    }
  }
  return best;
}

static tm_val make_tuple2(tm_ctx *c, tm_val a, tm_val b) {
  tm_list *l = tm_list_new(c, 2);
  l->v[0] = a;
  l->v[1] = b;
  l->n = 2;
  return tm_list_val(l, true);
}

tm_val tm_call_filter(tm_ctx *c, int id, tm_val v, tm_args *a) {
  c->steps++;
  switch (id) {
  case F_ABS:
    if (v.t == V_INT || v.t == V_BOOL) {
      if (v.i == INT64_MIN) tm_fail(c, IG_TMPL_ERUNTIME, "integer overflow");
      return tm_int(v.i < 0 ? -v.i : v.i);
    }
    if (v.t == V_FLOAT) return tm_float(fabs(v.f));
    if (v.t == V_UNDEF) undef_error(c, &v);
    tm_fail(c, IG_TMPL_ERUNTIME, "bad operand type for abs(): '%s'", tm_type_name(&v));
  case F_ATTR: {
    /* Python's getattr only: dict keys are not attributes */
    tm_val name = need_str(c, arg(a, 0, "name"), "attr");
    tm_sv nm = {name.s, name.n};
    if (v.t == V_NS || v.t == V_LOOP || tm_method_id(&v, nm) >= 0 || tm_is_unsafe_method(&v, nm)) return tm_getattr(c, v, nm);
    return tm_undef(NULL);
  }
  case F_CAPITALIZE: return str_case(c, tm_stringify(c, &v), CASE_CAPITALIZE);
  case F_UPPER: return str_case(c, tm_stringify(c, &v), CASE_UPPER);
  case F_LOWER: return str_case(c, tm_stringify(c, &v), CASE_LOWER);
  case F_TITLE: {
    /* jinja2: words split on [-\s({\[<]+, each word[0].upper() + word[1:].lower() */
    tm_val s = tm_stringify(c, &v);
    ig_str *o = tm_buf_get(c);
    bool at_start = true;
    size_t i = 0;
    while (i < s.n) {
      size_t adv;
      uint32_t cp = tm_u8_decode(s.s + i, s.n - i, &adv);
      bool sep = tm_isspace_cp(cp) || cp == '-' || cp == '(' || cp == '{' || cp == '[' || cp == '<';
      if (sep) {
        ig_str_append(o, s.s + i, adv);
        at_start = true;
      } else {
        tm_u8_put(o, at_start ? (uint32_t)utf8proc_toupper((utf8proc_int32_t)cp) : (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp));
        at_start = false;
      }
      i += adv;
    }
    tm_val r = tm_str_from(c, o);
    tm_buf_put(c, o);
    return r;
  }
  case F_CENTER: {
    tm_val s = tm_stringify(c, &v);
    int64_t w = arg_int(c, a, 0, "width", 80);
    int64_t len = (int64_t)tm_u8_len(s.s, s.n);
    if (w <= len) return s;
    if ((size_t)w > c->max_output) tm_fail(c, IG_TMPL_ELIMIT, "center width too large");
    int64_t pad = w - len, left = pad / 2 + (pad & w & 1);
    ig_str *o = tm_buf_get(c);
    for (int64_t i = 0; i < left; i++) ig_str_putc(o, ' ');
    ig_str_append(o, s.s, s.n);
    for (int64_t i = 0; i < pad - left; i++) ig_str_putc(o, ' ');
    tm_val r = tm_str_from(c, o);
    tm_buf_put(c, o);
    return r;
  }
  case F_COUNT: case F_LENGTH: return tm_int(py_len(c, &v));
  case F_D: case F_DEFAULT: {
    tm_val *def = arg(a, 0, "default_value");
    bool boolean = arg_bool(a, 1, "boolean", false);
    if (v.t == V_UNDEF || (boolean && !tm_truthy(&v))) return def ? *def : tm_str(c, "", 0);
    return v;
  }
  case F_DICTSORT: {
    if (v.t == V_UNDEF) undef_error(c, &v);
    if (v.t != V_DICT) tm_fail(c, IG_TMPL_ERUNTIME, "'%s' object has no attribute 'items'", tm_type_name(&v));
    bool cs = arg_bool(a, 0, "case_sensitive", false);
    tm_val *by = arg(a, 1, "by");
    bool by_value = by && by->t == V_STR && by->n == 5 && memcmp(by->s, "value", 5) == 0;
    bool reverse = arg_bool(a, 2, "reverse", false);
    size_t n = v.d->n;
    sort_item *items = tm_ralloc(c, sizeof(sort_item) * (n ? n : 1));
    sort_item *tmp = tm_ralloc(c, sizeof(sort_item) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) {
      items[i].key = ignore_case(c, by_value ? v.d->v[i] : v.d->k[i], cs);
      items[i].val = make_tuple2(c, v.d->k[i], v.d->v[i]);
    }
    merge_sort(c, items, tmp, n, reverse);
    tm_list *out = tm_list_new(c, (uint32_t)n);
    for (size_t i = 0; i < n; i++) out->v[out->n++] = items[i].val;
    return tm_list_val(out, false);
  }
  case F_E: case F_ESCAPE: return tm_html_escape(c, v);
  case F_SAFE: {
    tm_val r = tm_stringify(c, &v);
    r.unsafe = 1;
    return r;
  }
  case F_FIRST: {
    if (v.t == V_UNDEF) return tm_undef("No first item, sequence was empty.");
    tm_list *l = tm_iterate(c, &v);
    if (!l->n) return tm_undef("No first item, sequence was empty.");
    return l->v[0];
  }
  case F_LAST: {
    if (v.t == V_UNDEF) return tm_undef("No last item, sequence was empty.");
    if (v.t == V_LIST && v.unsafe) tm_fail(c, IG_TMPL_ERUNTIME, "'generator' object is not reversible");
    if (v.t != V_LIST && v.t != V_STR && v.t != V_DICT) tm_fail(c, IG_TMPL_ERUNTIME, "'%s' object is not reversible", tm_type_name(&v));
    tm_list *l = tm_iterate(c, &v);
    if (!l->n) return tm_undef("No last item, sequence was empty.");
    return l->v[l->n - 1];
  }
  case F_FLOAT: {
    bool ok;
    tm_val r = to_float(c, v, &ok);
    if (ok) return r;
    tm_val *def = arg(a, 0, "default");
    return def ? *def : tm_float(0.0);
  }
  case F_INT: {
    int64_t base = arg_int(c, a, 1, "base", 10);
    bool ok;
    tm_val r = to_int(c, v, (int)base, &ok);
    if (ok) return r;
    tm_val *def = arg(a, 0, "default");
    return def ? *def : tm_int(0);
  }
  case F_FORMAT: {
    tm_val f = tm_stringify(c, &v);
    if (a->nkw) {
      tm_dict *d = tm_dict_new(c, 0);
      for (int k = 0; k < a->nkw; k++) tm_dict_set(c, d, tm_str(c, a->kwn[k].p, a->kwn[k].n), a->kwv[k]);
      return tm_percent_format(c, f, dictv(d));
    }
    tm_list *l = tm_list_new(c, (uint32_t)a->n);
    for (int i = 0; i < a->n; i++) l->v[l->n++] = a->v[i];
    return tm_percent_format(c, f, tm_list_val(l, true));
  }
  case F_INDENT: return filter_indent(c, v, a);
  case F_ITEMS: {
    if (v.t == V_UNDEF) return tm_gen(tm_list_new(c, 0));
    if (v.t != V_DICT) return tm_gen_err(c, "Can only get item pairs from a mapping."); /* raised when iterated */
    tm_list *l = tm_list_new(c, v.d->n);
    for (uint32_t i = 0; i < v.d->n; i++) l->v[l->n++] = make_tuple2(c, v.d->k[i], v.d->v[i]);
    return tm_gen(l);
  }
  case F_JOIN: {
    tm_list *l = tm_iterate(c, &v);
    tm_val *sep = arg(a, 0, "d");
    tm_val *attr = arg(a, 1, "attribute");
    tm_val sv = sep ? tm_stringify(c, sep) : tm_str(c, "", 0);
    if (attr && attr->t != V_NONE) {
      tm_list *m = tm_list_new(c, l->n);
      for (uint32_t i = 0; i < l->n; i++) m->v[m->n++] = attr_path(c, l->v[i], *attr);
      l = m;
    }
    return join_vals(c, l, sv);
  }
  case F_LIST: {
    tm_list *l = tm_iterate(c, &v);
    if (v.t == V_LIST && !v.tuple && !v.unsafe) return v;
    tm_list *m = tm_list_new(c, l->n);
    if (l->n) memcpy(m->v, l->v, sizeof(tm_val) * l->n);
    m->n = l->n;
    return tm_list_val(m, false);
  }
  case F_MAP: return filter_map(c, v, a);
  case F_MAX: return minmax(c, v, a, true);
  case F_MIN: return minmax(c, v, a, false);
  case F_SELECT: return filter_select(c, v, a, false, true);
  case F_REJECT: return filter_select(c, v, a, false, false);
  case F_SELECTATTR: return filter_select(c, v, a, true, true);
  case F_REJECTATTR: return filter_select(c, v, a, true, false);
  case F_REPLACE: {
    tm_val s = tm_stringify(c, &v);
    if (!arg(a, 0, "old")) tm_fail(c, IG_TMPL_ERUNTIME, "do_replace() missing 2 required positional arguments: 'old' and 'new'");
    if (!arg(a, 1, "new")) tm_fail(c, IG_TMPL_ERUNTIME, "do_replace() missing 1 required positional argument: 'new'");
    tm_val old = tm_stringify(c, arg(a, 0, "old"));
    tm_val nw = tm_stringify(c, arg(a, 1, "new"));
    return str_replace(c, s, old, nw, arg_int(c, a, 2, "count", -1));
  }
  case F_REVERSE: {
    if (v.t == V_STR) {
      ig_str *o = tm_buf_get(c);
      size_t i = v.n;
      while (i > 0) {
        size_t k = i - 1;
        while (k > 0 && ((unsigned char)v.s[k] & 0xC0) == 0x80) k--;
        ig_str_append(o, v.s + k, i - k);
        i = k;
      }
      tm_val r = tm_str_from(c, o);
      tm_buf_put(c, o);
      return r;
    }
    if (v.t != V_LIST && v.t != V_DICT && v.t != V_UNDEF) tm_fail(c, IG_TMPL_ERUNTIME, "argument must be iterable");
    tm_list *l = tm_iterate(c, &v);
    tm_list *m = tm_list_new(c, l->n);
    for (uint32_t i = l->n; i > 0; i--) m->v[m->n++] = l->v[i - 1];
    return tm_gen(m); /* reversed(...) is an iterator */
  }
  case F_ROUND: {
    int64_t prec = arg_int(c, a, 0, "precision", 0);
    tm_val *method = arg(a, 1, "method");
    if (v.t == V_UNDEF) undef_error(c, &v);
    if (v.t != V_INT && v.t != V_BOOL && v.t != V_FLOAT) tm_fail(c, IG_TMPL_ERUNTIME, "type %s doesn't define __round__ method", tm_type_name(&v));
    double x = v.t == V_FLOAT ? v.f : (double)v.i;
    if (method && method->t == V_STR && !(method->n == 6 && !memcmp(method->s, "common", 6))) {
      if (!(method->n == 5 && !memcmp(method->s, "floor", 5)) && !(method->n == 4 && !memcmp(method->s, "ceil", 4)))
        tm_fail(c, IG_TMPL_ERUNTIME, "method must be common, ceil or floor");
      double p = pow(10, (double)prec);
      bool floor_ = method->s[0] == 'f';
      return tm_float((floor_ ? floor(x * p) : ceil(x * p)) / p);
    }
    if (v.t != V_FLOAT) return tm_int(v.i); /* round(int, n) stays an int */
    if (!isfinite(x)) return tm_float(x);
    if (prec > 300 || prec < -300) return tm_float(x);
    if (prec >= 0) {
      char buf[512];
      snprintf(buf, sizeof buf, "%.*f", (int)prec, x); /* correctly rounded, ties to even */
      return tm_float(strtod(buf, NULL));
    }
    double p = pow(10, (double)-prec);
    return tm_float(nearbyint(x / p) * p);
  }
  case F_SORT: return filter_sort(c, v, a, false);
  case F_UNIQUE: return filter_sort(c, v, a, true);
  case F_STRING: return tm_stringify(c, &v);
  case F_PPRINT: {
    ig_str *o = tm_buf_get(c);
    tm_pformat(c, o, &v);
    tm_val r = tm_str_from(c, o);
    tm_buf_put(c, o);
    return r;
  }
  case F_SUM: {
    tm_list *l = tm_iterate(c, &v);
    tm_val *attr = arg(a, 0, "attribute");
    tm_val *start = arg(a, 1, "start");
    tm_val acc = start ? *start : tm_int(0);
    for (uint32_t i = 0; i < l->n; i++) {
      tm_val x = attr && attr->t != V_NONE ? attr_path(c, l->v[i], *attr) : l->v[i];
      if (x.t == V_UNDEF) undef_error(c, &x);
      if (!((acc.t == V_INT || acc.t == V_BOOL || acc.t == V_FLOAT) && (x.t == V_INT || x.t == V_BOOL || x.t == V_FLOAT)))
        tm_fail(c, IG_TMPL_ERUNTIME, "unsupported operand type(s) for +: '%s' and '%s'", tm_type_name(&acc), tm_type_name(&x));
      if (acc.t == V_FLOAT || x.t == V_FLOAT)
        acc = tm_float((acc.t == V_FLOAT ? acc.f : (double)acc.i) + (x.t == V_FLOAT ? x.f : (double)x.i));
      else if (__builtin_add_overflow(acc.i, x.i, &acc.i))
        tm_fail(c, IG_TMPL_ERUNTIME, "integer overflow");
      else
        acc.t = V_INT;
    }
    return acc;
  }
  case F_TOJSON: return filter_tojson(c, v, a);
  case F_TRIM: return str_strip(c, tm_stringify(c, &v), arg(a, 0, "chars"), 3);
  case F_WORDCOUNT: {
    tm_val s = tm_stringify(c, &v);
    int64_t n = 0;
    bool in = false;
    size_t i = 0;
    while (i < s.n) {
      size_t adv;
      uint32_t cp = tm_u8_decode(s.s + i, s.n - i, &adv);
      utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)cp);
      bool w = cp == '_' || (k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO) ||
               (k >= UTF8PROC_CATEGORY_ND && k <= UTF8PROC_CATEGORY_NO);
      if (w && !in) n++;
      in = w;
      i += adv;
    }
    return tm_int(n);
  }
  case F_TRUNCATE: {
    if (v.t != V_STR) { /* jinja2 measures len(value) and returns short values unchanged */
      int64_t length = arg_int(c, a, 0, "length", 255), leeway = arg_int(c, a, 3, "leeway", 5);
      if (py_len(c, &v) <= length + leeway) return v;
      tm_fail(c, IG_TMPL_ERUNTIME, "'%s' object has no attribute 'rsplit'", tm_type_name(&v));
    }
    tm_val s = v;
    int64_t length = arg_int(c, a, 0, "length", 255);
    bool killwords = arg_bool(a, 1, "killwords", false);
    tm_val *endv = arg(a, 2, "end");
    tm_val end = endv ? tm_stringify(c, endv) : tm_str(c, "...", 3);
    int64_t leeway = arg_int(c, a, 3, "leeway", 5);
    int64_t endlen = (int64_t)tm_u8_len(end.s, end.n), slen = (int64_t)tm_u8_len(s.s, s.n);
    if (length < endlen) tm_fail(c, IG_TMPL_ERUNTIME, "expected length >= %lld, got %lld", (long long)endlen, (long long)length);
    if (leeway < 0) tm_fail(c, IG_TMPL_ERUNTIME, "expected leeway >= 0, got %lld", (long long)leeway);
    if (slen <= length + leeway) return s;
    size_t cut = tm_u8_offset(s.s, s.n, (size_t)(length - endlen));
    tm_val head = tm_str(c, s.s, cut);
    if (!killwords) { /* result = s[:length - len(end)].rsplit(" ", 1)[0] */
      for (size_t k = cut; k > 0; k--)
        if (s.s[k - 1] == ' ') {
          head = tm_str(c, s.s, k - 1);
          break;
        }
    }
    ig_str *o = tm_buf_get(c);
    ig_str_append(o, head.s, head.n);
    ig_str_append(o, end.s, end.n);
    tm_val r = tm_str_from(c, o);
    tm_buf_put(c, o);
    return r;
  }
  case F_BATCH: {
    tm_list *l = tm_iterate(c, &v);
    int64_t size = arg_int(c, a, 0, "linecount", 1);
    tm_val *fill = arg(a, 1, "fill_with");
    if (size <= 0) tm_fail(c, IG_TMPL_ERUNTIME, "batch size must be positive");
    tm_list *out = tm_list_new(c, 0);
    tm_list *cur = NULL;
    for (uint32_t i = 0; i < l->n; i++) {
      if (!cur || cur->n == size) {
        cur = tm_list_new(c, 0);
        tm_list_push(c, out, tm_list_val(cur, false));
      }
      tm_list_push(c, cur, l->v[i]);
    }
    if (cur && fill && fill->t != V_NONE)
      while (cur->n < size) tm_list_push(c, cur, *fill);
    return tm_gen(out);
  }
  }
  tm_fail(c, IG_TMPL_ERUNTIME, "internal error: unknown filter %d", id);
}

/* ---------------------------------------------------------------- tests */
bool tm_call_test(tm_ctx *c, int id, tm_val v, tm_args *a) {
  c->steps++;
  tm_val *x = arg(a, 0, NULL);
  switch (id) {
  case T_BOOLEAN: return v.t == V_BOOL;
  case T_CALLABLE: return v.t == V_MACRO || v.t == V_FUNC || v.t == V_METHOD || v.t == V_UNDEF; /* Undefined has __call__ */
  case T_DEFINED: return v.t != V_UNDEF;
  case T_UNDEFINED: return v.t == V_UNDEF;
  case T_DIVISIBLEBY: {
    if (!x) tm_fail(c, IG_TMPL_ERUNTIME, "divisibleby needs an argument");
    tm_val r = tm_binop(c, OP_MOD, v, *x); /* value % num == 0 */
    tm_val zero = tm_int(0);
    return tm_equal(c, &r, &zero);
  }
  case T_EQ: case T_EQUALTO:
    if (!x) tm_fail(c, IG_TMPL_ERUNTIME, "test needs an argument");
    return tm_equal(c, &v, x);
  case T_NE:
    if (!x) tm_fail(c, IG_TMPL_ERUNTIME, "test needs an argument");
    return !tm_equal(c, &v, x);
  case T_LT: case T_LESSTHAN: case T_LE: case T_GT: case T_GREATERTHAN: case T_GE: {
    if (!x) tm_fail(c, IG_TMPL_ERUNTIME, "test needs an argument");
    if (v.t == V_UNDEF) undef_error(c, &v);
    if (x->t == V_UNDEF) undef_error(c, x);
    const char *sym = id == T_LT || id == T_LESSTHAN ? "<" : id == T_LE ? "<=" : id == T_GE ? ">=" : ">";
    int r = tm_compare_op(c, &v, x, sym);
    return id == T_LT || id == T_LESSTHAN ? r < 0 : id == T_LE ? r <= 0 : id == T_GE ? r >= 0 : r > 0;
  }
  case T_ESCAPED: return false;
  case T_EVEN: case T_ODD: {
    if (v.t == V_UNDEF) undef_error(c, &v);
    tm_val r = tm_binop(c, OP_MOD, v, tm_int(2)); /* value % 2 == 1 (odd) or == 0 (even) */
    tm_val want = tm_int(id == T_ODD ? 1 : 0);
    return tm_equal(c, &r, &want);
  }
  case T_FALSE: return v.t == V_BOOL && !v.i;
  case T_TRUE: return v.t == V_BOOL && v.i;
  case T_FILTER: return v.t == V_STR && tm_filter_id((tm_sv){v.s, v.n}) >= 0;
  case T_TEST: return v.t == V_STR && tm_test_id((tm_sv){v.s, v.n}) >= 0;
  case T_FLOAT: return v.t == V_FLOAT;
  case T_INTEGER: return v.t == V_INT;
  case T_NUMBER: return v.t == V_INT || v.t == V_FLOAT || v.t == V_BOOL;
  case T_IN: {
    if (!x) tm_fail(c, IG_TMPL_ERUNTIME, "test needs an argument");
    if (x->t == V_STR) {
      if (v.t != V_STR) tm_fail(c, IG_TMPL_ERUNTIME, "'in <string>' requires string as left operand, not %s", tm_type_name(&v));
      if (v.n == 0) return true;
      tm_charge(c, x->n >> 10); /* a step per KiB searched */
      return memmem(x->s, x->n, v.s, v.n) != NULL;
    }
    if (x->t == V_DICT) {
      if ((v.t == V_LIST && v.tuple == 0 && !v.unsafe) || v.t == V_DICT || v.t == V_NS)
        tm_fail(c, IG_TMPL_ERUNTIME, "unhashable type: '%s'", tm_type_name(&v));
      return tm_dict_find(c, x->d, v) >= 0;
    }
    if (x->t == V_UNDEF) return false;
    tm_list *l = tm_iterate(c, x);
    tm_charge(c, l->n >> 4);
    for (uint32_t i = 0; i < l->n; i++)
      if (tm_equal(c, &l->v[i], &v)) return true;
    return false;
  }
  case T_ITERABLE: return v.t == V_LIST || v.t == V_DICT || v.t == V_STR || v.t == V_UNDEF;
  case T_SEQUENCE: return (v.t == V_LIST && !v.unsafe) || v.t == V_DICT || v.t == V_STR || v.t == V_UNDEF;
  case T_MAPPING: return v.t == V_DICT;
  case T_STRING: return v.t == V_STR;
  case T_NONE: return v.t == V_NONE;
  case T_LOWER: case T_UPPER: {
    if (v.t != V_STR) {
      tm_val s = tm_stringify(c, &v);
      v = s;
    }
    bool any = false;
    size_t i = 0;
    while (i < v.n) {
      size_t adv;
      uint32_t cp = tm_u8_decode(v.s + i, v.n - i, &adv);
      utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)cp);
      if (k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LT) {
        if (id == T_LOWER) return false;
        any = true;
      } else if (k == UTF8PROC_CATEGORY_LL) {
        if (id == T_UPPER) return false;
        any = true;
      }
      i += adv;
    }
    return any;
  }
  case T_SAMEAS:
    if (!x) tm_fail(c, IG_TMPL_ERUNTIME, "test needs an argument");
    if (v.t != x->t) return false;
    switch (v.t) {
    case V_NONE: case V_UNDEF: return true;
    case V_BOOL: return v.i == x->i;
    case V_INT: return v.i == x->i && v.i >= -5 && v.i <= 256; /* CPython's small int cache */
    case V_STR: return v.s == x->s && v.n == x->n;
    case V_LIST: return v.l == x->l;
    case V_DICT: case V_NS: return v.d == x->d;
    default: return tm_equal(c, &v, x);
    }
  }
  tm_fail(c, IG_TMPL_ERUNTIME, "internal error: unknown test %d", id);
}

/* ---------------------------------------------------------------- global functions */
enum { G_RANGE, G_NAMESPACE, G_DICT, G_RAISE, G_STRFTIME };
static const char *const func_names[] = {"range", "namespace", "dict", "raise_exception", "strftime_now", NULL};
int tm_func_id(tm_sv name) { return find_name(func_names, name); }

tm_val tm_call_func(tm_ctx *c, int id, tm_args *a) {
  switch (id) {
  case G_RANGE: {
    int64_t lo = 0, hi, st = 1;
    if (a->n == 1) hi = arg_int(c, a, 0, NULL, 0);
    else if (a->n == 2 || a->n == 3) {
      lo = arg_int(c, a, 0, NULL, 0);
      hi = arg_int(c, a, 1, NULL, 0);
      if (a->n == 3) st = arg_int(c, a, 2, NULL, 1);
    } else
      tm_fail(c, IG_TMPL_ERUNTIME, "range expected at most 3 arguments, got %d", a->n);
    if (st == 0) tm_fail(c, IG_TMPL_ERUNTIME, "range() arg 3 must not be zero");
    int64_t n = 0;
    if (st > 0 && hi > lo) n = (hi - lo - 1) / st + 1;
    if (st < 0 && hi < lo) n = (lo - hi - 1) / (-st) + 1;
    if (n > 100000) tm_fail(c, IG_TMPL_ERUNTIME, "Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
    tm_list *l = tm_list_new(c, (uint32_t)n);
    for (int64_t i = 0; i < n; i++) l->v[l->n++] = tm_int(lo + i * st);
    c->steps += (uint64_t)n / 8;
    l->start = lo;
    l->stop = hi;
    l->step = st;
    tm_val r = tm_list_val(l, false);
    r.tuple = 2;
    return r;
  }
  case G_NAMESPACE: case G_DICT: {
    tm_dict *d = tm_dict_new(c, 0);
    for (int i = 0; i < a->n; i++) {
      if (a->v[i].t != V_DICT) tm_fail(c, IG_TMPL_ERUNTIME, "%s() positional argument must be a mapping", id == G_DICT ? "dict" : "namespace");
      for (uint32_t k = 0; k < a->v[i].d->n; k++) tm_dict_set(c, d, a->v[i].d->k[k], a->v[i].d->v[k]);
    }
    for (int k = 0; k < a->nkw; k++) tm_dict_set(c, d, tm_str(c, a->kwn[k].p, a->kwn[k].n), a->kwv[k]);
    tm_val v = dictv(d);
    if (id == G_NAMESPACE) v.t = V_NS;
    return v;
  }
  case G_RAISE: {
    tm_val *m = arg(a, 0, "message");
    tm_val s = m ? tm_stringify(c, m) : tm_str(c, "", 0);
    tm_fail(c, IG_TMPL_ERAISE, "%.*s", (int)s.n, s.s);
  }
  case G_STRFTIME: {
    tm_val *f = arg(a, 0, "format");
    tm_val fs = need_str(c, f, "strftime_now");
    char fmt[256];
    if (fs.n >= sizeof fmt) tm_fail(c, IG_TMPL_ERUNTIME, "strftime_now: format too long");
    memcpy(fmt, fs.s, fs.n);
    fmt[fs.n] = 0;
    struct tm tmv;
    time_t now = c->now;
    localtime_r(&now, &tmv);
    char out[1024];
    size_t n = fs.n ? strftime(out, sizeof out, fmt, &tmv) : 0;
    return tm_str_copy(c, out, n);
  }
  }
  tm_fail(c, IG_TMPL_ERUNTIME, "internal error: unknown function %d", id);
}

/* ---------------------------------------------------------------- methods */
enum {
  M_STRIP, M_LSTRIP, M_RSTRIP, M_SPLIT, M_RSPLIT, M_SPLITLINES, M_STARTSWITH, M_ENDSWITH, M_UPPER, M_LOWER, M_TITLE,
  M_CAPITALIZE, M_SWAPCASE, M_CASEFOLD, M_REPLACE, M_FORMAT, M_JOIN, M_FIND, M_RFIND, M_INDEX_S, M_COUNT_S,
  M_ISDIGIT, M_ISALPHA, M_ISALNUM, M_ISSPACE, M_ISUPPER, M_ISLOWER, M_ISNUMERIC, M_ISDECIMAL, M_ZFILL, M_CENTER,
  M_LJUST, M_RJUST, M_REMOVEPREFIX, M_REMOVESUFFIX, M_PARTITION, M_RPARTITION, M_STR_END,
  M_ITEMS = 100, M_KEYS, M_VALUES, M_GET, M_DCOPY, M_DICT_END,
  M_LINDEX = 200, M_LCOUNT, M_LCOPY, M_LIST_END,
};
static const char *const str_methods[] = {
    "strip", "lstrip", "rstrip", "split", "rsplit", "splitlines", "startswith", "endswith", "upper", "lower", "title",
    "capitalize", "swapcase", "casefold", "replace", "format", "join", "find", "rfind", "index", "count", "isdigit",
    "isalpha", "isalnum", "isspace", "isupper", "islower", "isnumeric", "isdecimal", "zfill", "center", "ljust",
    "rjust", "removeprefix", "removesuffix", "partition", "rpartition", NULL};
static const char *const dict_methods[] = {"items", "keys", "values", "get", "copy", NULL};
static const char *const list_methods[] = {"index", "count", "copy", NULL};
static const char *const unsafe_list[] = {"append", "extend", "insert", "pop", "remove", "clear", "sort", "reverse", NULL};
static const char *const unsafe_dict[] = {"clear", "pop", "popitem", "setdefault", "update", NULL};

int tm_method_id(const tm_val *self, tm_sv name) {
  int i;
  switch (self->t) {
  case V_STR: return find_name(str_methods, name);
  case V_DICT: return (i = find_name(dict_methods, name)) >= 0 ? M_ITEMS + i : -1;
  case V_LIST: return (i = find_name(list_methods, name)) >= 0 ? M_LINDEX + i : -1;
  default: return -1;
  }
}
bool tm_is_unsafe_method(const tm_val *self, tm_sv name) {
  if (self->t == V_LIST) return find_name(unsafe_list, name) >= 0;
  if (self->t == V_DICT) return find_name(unsafe_dict, name) >= 0;
  return false;
}

static bool str_all(tm_val s, int kind) {
  if (!s.n) return false;
  bool any_cased = false;
  size_t i = 0;
  while (i < s.n) {
    size_t adv;
    uint32_t cp = tm_u8_decode(s.s + i, s.n - i, &adv);
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)cp);
    bool ok = true;
    switch (kind) {
    case M_ISDIGIT: case M_ISDECIMAL: ok = k == UTF8PROC_CATEGORY_ND; break;
    case M_ISNUMERIC: ok = k >= UTF8PROC_CATEGORY_ND && k <= UTF8PROC_CATEGORY_NO; break;
    case M_ISALPHA: ok = k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO; break;
    case M_ISALNUM: ok = (k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO) || (k >= UTF8PROC_CATEGORY_ND && k <= UTF8PROC_CATEGORY_NO); break;
    case M_ISSPACE: ok = tm_isspace_cp(cp); break;
    case M_ISUPPER:
      if (k == UTF8PROC_CATEGORY_LL) return false;
      if (k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LT) any_cased = true;
      break;
    case M_ISLOWER:
      if (k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LT) return false;
      if (k == UTF8PROC_CATEGORY_LL) any_cased = true;
      break;
    }
    if (!ok) return false;
    i += adv;
  }
  if (kind == M_ISUPPER || kind == M_ISLOWER) return any_cased;
  return true;
}
static tm_val pad(tm_ctx *c, tm_val s, int64_t width, tm_val *fillv, int mode) {
  int64_t len = (int64_t)tm_u8_len(s.s, s.n);
  if (width <= len) return s;
  if ((size_t)width > c->max_output) tm_fail(c, IG_TMPL_ELIMIT, "width too large");
  tm_val fill = fillv ? *fillv : tm_str(c, " ", 1);
  if (fill.t != V_STR || tm_u8_len(fill.s, fill.n) != 1) tm_fail(c, IG_TMPL_ERUNTIME, "The fill character must be exactly one character long");
  int64_t total = width - len, left = mode == 0 ? total / 2 + (total & width & 1) : mode == 1 ? 0 : total;
  ig_str *o = tm_buf_get(c);
  for (int64_t i = 0; i < left; i++) ig_str_append(o, fill.s, fill.n);
  ig_str_append(o, s.s, s.n);
  for (int64_t i = 0; i < total - left; i++) ig_str_append(o, fill.s, fill.n);
  tm_val r = tm_str_from(c, o);
  tm_buf_put(c, o);
  return r;
}
static bool match_prefix_any(tm_ctx *c, tm_val s, tm_val *p, bool end) {
  if (!p) tm_fail(c, IG_TMPL_ERUNTIME, "%s() takes at least 1 argument", end ? "endswith" : "startswith");
  if (p->t == V_STR) return end ? str_ends(s, *p) : str_starts(s, *p);
  if (p->t == V_LIST && p->tuple == 1) {
    for (uint32_t i = 0; i < p->l->n; i++) {
      tm_val x = need_str(c, &p->l->v[i], end ? "endswith" : "startswith");
      if (end ? str_ends(s, x) : str_starts(s, x)) return true;
    }
    return false;
  }
  tm_fail(c, IG_TMPL_ERUNTIME, "%s first arg must be str or a tuple of str, not %s", end ? "endswith" : "startswith", tm_type_name(p));
}
static int64_t find_cp(tm_val s, tm_val sub, bool right) {
  const char *f = NULL;
  if (right) {
    for (size_t k = s.n >= sub.n ? s.n - sub.n + 1 : 0; k > 0; k--)
      if (memcmp(s.s + k - 1, sub.s, sub.n) == 0) {
        f = s.s + k - 1;
        break;
      }
  } else
    f = sub.n ? memmem(s.s, s.n, sub.s, sub.n) : s.s;
  if (!f) return -1;
  return (int64_t)tm_u8_len(s.s, (size_t)(f - s.s));
}

tm_val tm_call_method(tm_ctx *c, const tm_method *m, tm_args *a) {
  c->steps++;
  tm_val self = m->self;
  tm_val *a0 = arg(a, 0, NULL), *a1 = arg(a, 1, NULL);
  switch (m->id) {
  case M_STRIP: return str_strip(c, self, a0, 3);
  case M_LSTRIP: return str_strip(c, self, a0, 1);
  case M_RSTRIP: return str_strip(c, self, a0, 2);
  case M_SPLIT: case M_RSPLIT:
    return str_split(c, self, arg(a, 0, "sep"), arg_int(c, a, 1, "maxsplit", -1), m->id == M_RSPLIT);
  case M_SPLITLINES: return tm_list_val(splitlines(c, self, arg_bool(a, 0, "keepends", false)), false);
  case M_STARTSWITH: return tm_bool(match_prefix_any(c, self, a0, false));
  case M_ENDSWITH: return tm_bool(match_prefix_any(c, self, a0, true));
  case M_UPPER: return str_case(c, self, CASE_UPPER);
  case M_LOWER: case M_CASEFOLD: return str_case(c, self, CASE_LOWER);
  case M_TITLE: return str_case(c, self, CASE_TITLE);
  case M_CAPITALIZE: return str_case(c, self, CASE_CAPITALIZE);
  case M_SWAPCASE: return str_case(c, self, CASE_SWAP);
  case M_REPLACE:
    return str_replace(c, self, need_str(c, a0, "replace"), need_str(c, a1, "replace"), arg_int(c, a, 2, "count", -1));
  case M_FORMAT: return str_format(c, self, a);
  case M_JOIN: {
    if (!a0) tm_fail(c, IG_TMPL_ERUNTIME, "join() takes exactly one argument");
    tm_list *l = tm_iterate(c, a0);
    for (uint32_t i = 0; i < l->n; i++)
      if (l->v[i].t != V_STR)
        tm_fail(c, IG_TMPL_ERUNTIME, "sequence item %u: expected str instance, %s found", i, tm_type_name(&l->v[i]));
    return join_vals(c, l, self);
  }
  case M_FIND: case M_RFIND: case M_INDEX_S: {
    int64_t r = find_cp(self, need_str(c, a0, "find"), m->id == M_RFIND);
    if (r < 0 && m->id == M_INDEX_S) tm_fail(c, IG_TMPL_ERUNTIME, "substring not found");
    return tm_int(r);
  }
  case M_COUNT_S: {
    tm_val sub = need_str(c, a0, "count");
    if (!sub.n) return tm_int((int64_t)tm_u8_len(self.s, self.n) + 1);
    int64_t n = 0;
    size_t i = 0;
    const char *f;
    while (i <= self.n && (f = memmem(self.s + i, self.n - i, sub.s, sub.n))) {
      n++;
      i = (size_t)(f - self.s) + sub.n;
    }
    return tm_int(n);
  }
  case M_ISDIGIT: case M_ISALPHA: case M_ISALNUM: case M_ISSPACE: case M_ISUPPER: case M_ISLOWER: case M_ISNUMERIC:
  case M_ISDECIMAL:
    return tm_bool(str_all(self, m->id));
  case M_ZFILL: {
    int64_t w = arg_int(c, a, 0, NULL, 0);
    int64_t len = (int64_t)tm_u8_len(self.s, self.n);
    if (w <= len) return self;
    if ((size_t)w > c->max_output) tm_fail(c, IG_TMPL_ELIMIT, "width too large");
    ig_str *o = tm_buf_get(c);
    size_t start = 0;
    if (self.n && (self.s[0] == '-' || self.s[0] == '+')) {
      ig_str_putc(o, self.s[0]);
      start = 1;
    }
    for (int64_t i = 0; i < w - len; i++) ig_str_putc(o, '0');
    ig_str_append(o, self.s + start, self.n - start);
    tm_val r = tm_str_from(c, o);
    tm_buf_put(c, o);
    return r;
  }
  case M_CENTER: return pad(c, self, arg_int(c, a, 0, NULL, 0), a1, 0);
  case M_LJUST: return pad(c, self, arg_int(c, a, 0, NULL, 0), a1, 1);
  case M_RJUST: return pad(c, self, arg_int(c, a, 0, NULL, 0), a1, 2);
  case M_REMOVEPREFIX: {
    tm_val p = need_str(c, a0, "removeprefix");
    return str_starts(self, p) ? tm_str(c, self.s + p.n, self.n - p.n) : self;
  }
  case M_REMOVESUFFIX: {
    tm_val p = need_str(c, a0, "removesuffix");
    return p.n && str_ends(self, p) ? tm_str(c, self.s, self.n - p.n) : self;
  }
  case M_PARTITION: case M_RPARTITION: {
    tm_val sep = need_str(c, a0, "partition");
    if (!sep.n) tm_fail(c, IG_TMPL_ERUNTIME, "empty separator");
    int64_t cp = find_cp(self, sep, m->id == M_RPARTITION);
    tm_list *l = tm_list_new(c, 3);
    if (cp < 0) {
      tm_val e = tm_str(c, "", 0);
      if (m->id == M_PARTITION) {
        l->v[0] = self; l->v[1] = e; l->v[2] = e;
      } else {
        l->v[0] = e; l->v[1] = e; l->v[2] = self;
      }
    } else {
      size_t off = tm_u8_offset(self.s, self.n, (size_t)cp);
      l->v[0] = tm_str(c, self.s, off);
      l->v[1] = sep;
      l->v[2] = tm_str(c, self.s + off + sep.n, self.n - off - sep.n);
    }
    l->n = 3;
    return tm_list_val(l, true);
  }
  case M_ITEMS: case M_KEYS: case M_VALUES: {
    tm_list *l = tm_list_new(c, self.d->n);
    for (uint32_t i = 0; i < self.d->n; i++)
      l->v[l->n++] = m->id == M_KEYS ? self.d->k[i] : m->id == M_VALUES ? self.d->v[i] : make_tuple2(c, self.d->k[i], self.d->v[i]);
    return tm_list_val(l, false);
  }
  case M_GET: {
    if (!a0) tm_fail(c, IG_TMPL_ERUNTIME, "get expected at least 1 argument, got 0");
    int i = tm_dict_find(c, self.d, *a0);
    if (i >= 0) return self.d->v[i];
    return a1 ? *a1 : tm_none();
  }
  case M_DCOPY: {
    tm_dict *d = tm_dict_new(c, self.d->n);
    for (uint32_t i = 0; i < self.d->n; i++) tm_dict_set(c, d, self.d->k[i], self.d->v[i]);
    return dictv(d);
  }
  case M_LINDEX: case M_LCOUNT: {
    if (!a0) tm_fail(c, IG_TMPL_ERUNTIME, "missing argument");
    int64_t n = 0;
    for (uint32_t i = 0; i < self.l->n; i++)
      if (tm_equal(c, &self.l->v[i], a0)) {
        if (m->id == M_LINDEX) return tm_int(i);
        n++;
      }
    if (m->id == M_LINDEX) {
      ig_str *r = tm_buf_get(c);
      tm_repr(c, r, a0);
      tm_fail(c, IG_TMPL_ERUNTIME, "%.*s is not in list", (int)(r->len > 200 ? 200 : r->len), r->p);
    }
    return tm_int(n);
  }
  case M_LCOPY: {
    tm_list *l = tm_list_new(c, self.l->n);
    if (self.l->n) memcpy(l->v, self.l->v, sizeof(tm_val) * self.l->n);
    l->n = self.l->n;
    return tm_list_val(l, self.tuple);
  }
  }
  tm_fail(c, IG_TMPL_ERUNTIME, "internal error: unknown method %d", m->id);
}
