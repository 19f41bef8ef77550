/* tok/tok_json: a fast path for the two big values of tokenizer.json, model.vocab (an object of string ->
 * id) and model.merges (strings "a b" or pairs ["a", "b"]). A general JSON parser spends ~300 ms on a
 * 128k-vocabulary file building objects; this scanner reads them straight into flat lists, and jansson
 * then parses the rest of the document (with those two values blanked out), which is small. */
#include <stdlib.h>
#include <string.h>

#include "tok/tok_int.h"

static const char *ws(const char *p, const char *e) {
  while (p < e && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
  return p;
}

/* p at '"': returns the position after the closing quote, or NULL. */
static const char *skip_string(const char *p, const char *e) {
  for (p++; p < e; p++) {
    if (*p == '\\') {
      p++;
      continue;
    }
    if (*p == '"') return p + 1;
  }
  return NULL;
}

/* Skips any JSON value at p; returns the position after it, or NULL. */
static const char *skip_value(const char *p, const char *e) {
  p = ws(p, e);
  if (p >= e) return NULL;
  if (*p == '"') return skip_string(p, e);
  if (*p != '{' && *p != '[') {
    while (p < e && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\n' && *p != '\r' && *p != '\t') p++;
    return p;
  }
  int depth = 0;
  for (; p < e; p++) {
    if (*p == '"') {
      p = skip_string(p, e);
      if (!p) return NULL;
      p--;
    } else if (*p == '{' || *p == '[') {
      depth++;
    } else if (*p == '}' || *p == ']') {
      if (--depth == 0) return p + 1;
    }
  }
  return NULL;
}

static int hex4(const char *p, uint32_t *v) {
  *v = 0;
  for (int i = 0; i < 4; i++) {
    char c = p[i];
    int d = c >= '0' && c <= '9' ? c - '0' : (c | 32) >= 'a' && (c | 32) <= 'f' ? (c | 32) - 'a' + 10 : -1;
    if (d < 0) return -1;
    *v = *v * 16 + (uint32_t)d;
  }
  return 0;
}

/* Decodes the string at p ('"') into pool; returns the position after it, or NULL. */
static const char *read_string(const char *p, const char *e, tk_buf *pool, uint32_t *off, uint32_t *len) {
  const char *s = ++p;
  *off = (uint32_t)pool->len;
  while (p < e && *p != '"' && *p != '\\') p++;
  if (p >= e) return NULL;
  if (tk_buf_add(pool, s, (size_t)(p - s))) return NULL;
  while (p < e && *p != '"') {
    if (*p == '\\') {
      if (p + 1 >= e) return NULL;
      char c = p[1], o;
      p += 2;
      switch (c) {
      case 'n': o = '\n'; break;
      case 't': o = '\t'; break;
      case 'r': o = '\r'; break;
      case 'b': o = '\b'; break;
      case 'f': o = '\f'; break;
      case '/': o = '/'; break;
      case '\\': o = '\\'; break;
      case '"': o = '"'; break;
      case 'u': {
        uint32_t cp, lo;
        if (p + 4 > e || hex4(p, &cp)) return NULL;
        p += 4;
        if (cp >= 0xD800 && cp <= 0xDBFF && p + 6 <= e && p[0] == '\\' && p[1] == 'u' && !hex4(p + 2, &lo) &&
            lo >= 0xDC00 && lo <= 0xDFFF) {
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          p += 6;
        } else if (cp >= 0xD800 && cp <= 0xDFFF) {
          cp = 0xFFFD; /* lone surrogate: not representable in UTF-8 */
        }
        char u[4];
        if (tk_buf_add(pool, u, (size_t)tk_utf8_enc(cp, u))) return NULL;
        continue;
      }
      default: return NULL;
      }
      if (tk_buf_add(pool, &o, 1)) return NULL;
    } else {
      const char *q = p;
      while (p < e && *p != '"' && *p != '\\') p++;
      if (p >= e || tk_buf_add(pool, q, (size_t)(p - q))) return NULL;
    }
  }
  if (p >= e) return NULL; /* unterminated after an escape */
  *len = (uint32_t)(pool->len - *off);
  return p + 1;
}

/* Room for two more entries. */
static int list_grow(tk_strlist *l) {
  if (l->n + 2 <= l->cap) return 0;
  size_t nc = l->cap ? l->cap * 2 : 1024;
  uint32_t *o = realloc(l->off, nc * 2 * sizeof *o);
  if (!o) return -1;
  l->off = o;
  int32_t *id = realloc(l->id, nc * sizeof *id);
  if (!id) return -1;
  l->id = id;
  l->cap = nc;
  return 0;
}

int tk_strlist_add(tk_strlist *l, const char *s, size_t n, int32_t id) {
  if (list_grow(l)) return -1;
  l->off[2 * l->n] = (uint32_t)l->pool.len;
  l->off[2 * l->n + 1] = (uint32_t)n;
  l->id[l->n++] = id;
  return tk_buf_add(&l->pool, s, n);
}

/* {"piece": id, ...} */
static const char *read_vocab(const char *p, const char *e, tk_strlist *v) {
  p = ws(p, e);
  if (p >= e || *p != '{') return NULL;
  p = ws(p + 1, e);
  if (p < e && *p == '}') return p + 1;
  for (;;) {
    if (p >= e || *p != '"' || list_grow(v)) return NULL;
    uint32_t off, len;
    p = read_string(p, e, &v->pool, &off, &len);
    if (!p) return NULL;
    p = ws(p, e);
    if (p >= e || *p != ':') return NULL;
    p = ws(p + 1, e);
    /* the id: a non-negative integer (the buffer need not be NUL-terminated, so no strtol) */
    long long id = 0;
    const char *d = p;
    while (p < e && *p >= '0' && *p <= '9' && id < INT32_MAX) id = id * 10 + (*p++ - '0');
    if (p == d || id >= INT32_MAX || (p < e && (*p == '.' || *p == 'e' || *p == 'E'))) return NULL;
    p = ws(p, e);
    v->off[2 * v->n] = off;
    v->off[2 * v->n + 1] = len;
    v->id[v->n++] = (int32_t)id;
    if (p < e && *p == ',') {
      p = ws(p + 1, e);
      continue;
    }
    return p < e && *p == '}' ? p + 1 : NULL;
  }
}

/* ["a b", ...] or [["a", "b"], ...]: stored as pairs (entry 2k = a, 2k+1 = b). */
static const char *read_merges(const char *p, const char *e, tk_strlist *m) {
  p = ws(p, e);
  if (p >= e || *p != '[') return NULL;
  p = ws(p + 1, e);
  if (p < e && *p == ']') return p + 1;
  for (;;) {
    if (p >= e || list_grow(m)) return NULL;
    uint32_t ao, al, bo, bl;
    if (*p == '"') {
      uint32_t off, len;
      p = read_string(p, e, &m->pool, &off, &len);
      if (!p) return NULL;
      const char *s = m->pool.p + off, *sp = memchr(s, ' ', len);
      if (!sp) return NULL;
      ao = off;
      al = (uint32_t)(sp - s);
      bo = off + al + 1;
      bl = len - al - 1;
    } else if (*p == '[') {
      p = ws(p + 1, e);
      if (p >= e || *p != '"' || !(p = read_string(p, e, &m->pool, &ao, &al))) return NULL;
      p = ws(p, e);
      if (p >= e || *p != ',') return NULL;
      p = ws(p + 1, e);
      if (p >= e || *p != '"' || !(p = read_string(p, e, &m->pool, &bo, &bl))) return NULL;
      p = ws(p, e);
      if (p >= e || *p != ']') return NULL;
      p++;
    } else {
      return NULL;
    }
    m->off[2 * m->n] = ao;
    m->off[2 * m->n + 1] = al;
    m->off[2 * m->n + 2] = bo;
    m->off[2 * m->n + 3] = bl;
    m->n += 2;
    p = ws(p, e);
    if (p < e && *p == ',') {
      p = ws(p + 1, e);
      continue;
    }
    return p < e && *p == ']' ? p + 1 : NULL;
  }
}

/* Walks the keys of the object at p. fn may consume a value and return its end; when it returns NULL
 * (and leaves *err at 0) the value is skipped. *end gets the position after the object. */
typedef const char *(*key_fn)(void *arg, const char *k, size_t kl, const char *vs, const char *e, int *err);
static int each_key(const char *p, const char *e, key_fn fn, void *arg, const char **end) {
  p = ws(p, e);
  if (p >= e || *p != '{') return -1;
  p = ws(p + 1, e);
  if (p < e && *p == '}') {
    *end = p + 1;
    return 0;
  }
  for (;;) {
    if (p >= e || *p != '"') return -1;
    const char *k = p + 1, *ke = skip_string(p, e);
    if (!ke) return -1;
    p = ws(ke, e);
    if (p >= e || *p != ':') return -1;
    const char *vs = ws(p + 1, e);
    int err = 0;
    const char *ve = fn(arg, k, (size_t)(ke - 1 - k), vs, e, &err);
    if (err) return -1;
    if (!ve) ve = skip_value(vs, e);
    if (!ve) return -1;
    p = ws(ve, e);
    if (p < e && *p == ',') {
      p = ws(p + 1, e);
      continue;
    }
    if (p < e && *p == '}') {
      *end = p + 1;
      return 0;
    }
    return -1;
  }
}

typedef struct spans {
  const char *vocab_s, *vocab_e, *merges_s, *merges_e;
  tk_strlist *vocab, *merges;
  int model;
} spans;

static const char *on_model(void *arg, const char *k, size_t kl, const char *vs, const char *e, int *err) {
  spans *s = arg;
  const char *end = NULL;
  if (kl == 5 && !memcmp(k, "vocab", 5) && vs < e && *vs == '{') {
    if (!(end = read_vocab(vs, e, s->vocab))) *err = 1;
    s->vocab_s = vs, s->vocab_e = end;
  } else if (kl == 6 && !memcmp(k, "merges", 6)) {
    if (!(end = read_merges(vs, e, s->merges))) *err = 1;
    s->merges_s = vs, s->merges_e = end;
  }
  return end;
}

static const char *on_top(void *arg, const char *k, size_t kl, const char *vs, const char *e, int *err) {
  spans *s = arg;
  const char *end = NULL;
  if (kl == 5 && !memcmp(k, "model", 5) && vs < e && *vs == '{') {
    if (each_key(vs, e, on_model, s, &end)) *err = 1;
    s->model = 1;
  }
  return end;
}

void tk_strlist_free(tk_strlist *l) {
  free(l->pool.p);
  free(l->off);
  free(l->id);
  memset(l, 0, sizeof *l);
}

int tk_json_extract_model(const char *js, size_t n, char **rest, size_t *rest_len, tk_strlist *vocab,
                          tk_strlist *merges) {
  const char *e = js + n, *end;
  spans s;
  memset(&s, 0, sizeof s);
  s.vocab = vocab;
  s.merges = merges;
  if (each_key(js, e, on_top, &s, &end) || !s.model || !s.vocab_s) {
    /* malformed, or Unigram's list form: the general parser handles it */
    tk_strlist_free(vocab);
    tk_strlist_free(merges);
    return 1;
  }
  /* The document without the two values: they become {} and [] in a copy. */
  const char *cut[2][2] = {{s.vocab_s, s.vocab_e}, {s.merges_s, s.merges_e}};
  if (s.merges_s && s.merges_s < s.vocab_s) {
    cut[0][0] = s.merges_s, cut[0][1] = s.merges_e;
    cut[1][0] = s.vocab_s, cut[1][1] = s.vocab_e;
  }
  char *r = malloc(n + 8);
  if (!r) return -1;
  size_t o = 0;
  const char *p = js;
  for (int i = 0; i < 2; i++) {
    if (!cut[i][0]) continue;
    memcpy(r + o, p, (size_t)(cut[i][0] - p));
    o += (size_t)(cut[i][0] - p);
    int is_vocab = cut[i][0] == s.vocab_s;
    memcpy(r + o, is_vocab ? "{}" : "[]", 2);
    o += 2;
    p = cut[i][1];
  }
  memcpy(r + o, p, (size_t)(e - p));
  o += (size_t)(e - p);
  r[o] = 0;
  *rest = r;
  *rest_len = o;
  vocab->has = 1;
  merges->has = s.merges_s != NULL;
  return 0;
}
