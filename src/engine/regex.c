/* engine/regex: see regex.h. Three stages:
 * - the parser: a recursive descent over the pattern (its depth is the group nesting, capped) that emits a
 *   Thompson NFA over bytes as it goes. Every fragment (a piece of the pattern) occupies a contiguous run of
 *   NFA states whose edges stay inside it, but for its exit's one open edge; so a counted repetition copies the
 *   run with its edges shifted, and x{0} drops it. A code point set (a literal, '.', a class) becomes the
 *   alternation of its UTF-8 byte-range sequences (the standard splitting of code point ranges), which share
 *   their tails (so "two continuation bytes to go" is one NFA state, whatever the lead byte was).
 * - the subset construction: the bytes are first cut into classes that no NFA edge tells apart; a DFA state is
 *   the set of the NFA's byte and match states reached (epsilon closures), interned in a hash table (a set
 *   hashed without regard to order, compared through the closure's visited marks: nothing is sorted).
 * - the pruning: states from which no accepting state can be reached (found backwards from the accepting ones)
 *   are dropped, and steps into them become -1. */
#include "engine/regex.h"
#include "util/str.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CP 0x10FFFFu
#define INF_COUNT UINT32_MAX       /* the m of {n,} */
#define MAX_POOL (8u << 20)        /* NFA state ids held by all DFA states' sets together (32 MB) */
#define MAX_TABLE (8u << 20)       /* DFA states x byte classes (32 MB of transitions) */
#define MAX_PAIRS (4u << 20)       /* (class, NFA state) moves out of one DFA state */
#define MAX_WORK (1ull << 27)      /* subset construction steps (closure visits, edges followed) */

struct ig_regex {
  uint32_t n_states, n_classes;
  uint8_t cls[256];  /* byte -> class */
  int32_t *trans;    /* [n_states * n_classes]: next state, -1 */
  uint8_t *accept;   /* [n_states] */
};

/* ---- the NFA --------------------------------------------------------------------------------------------- */

enum { N_EPS, N_SPLIT, N_BYTE, N_MATCH, N_FAIL };

typedef struct nstate {
  uint8_t kind, lo, hi; /* N_BYTE: a byte in lo..hi goes to out */
  int32_t out, out2;    /* N_EPS: out; N_SPLIT: out and out2; -1: not yet patched */
} nstate;

/* States [first, end) of the NFA; entry is where it starts, exit the N_EPS or N_BYTE state whose out is open. */
typedef struct frag {
  uint32_t first, end, entry, exit;
} frag;

typedef struct cprange {
  uint32_t lo, hi;
} cprange;

typedef struct rcomp {
  const unsigned char *p;
  size_t len, pos;
  char *err;
  size_t errlen;
  int failed;
  nstate *ns;
  uint32_t n, cap;
  cprange *set, *tmp; /* the code point set being built, and scratch for its complement */
  uint32_t n_set, cap_set, cap_tmp;
  uint32_t *cache, *cache_stamp; /* shared_byte's table */
  uint32_t cap_cache, n_cache, stamp;
} rcomp;

static uint32_t cache_hash(unsigned lo, unsigned hi, int32_t next) {
  uint64_t h = ((uint64_t)(uint32_t)next << 16 | lo << 8 | hi) * 0x9E3779B97F4A7C15ull;
  return (uint32_t)(h >> 32);
}

static void put_err(char *err, size_t errlen, const char *msg) {
  if (!errlen) return;
  snprintf(err, errlen, "%s", msg);
  ig_str_oneline(err); /* one line, whatever the pattern holds */
}

/* "at offset N: msg"; only the first failure is reported. */
static int fail_at(rcomp *c, size_t off, const char *fmt, ...) {
  if (c->failed) return -1;
  c->failed = 1;
  char msg[200], line[240];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  snprintf(line, sizeof line, "at offset %zu: %s", off, msg);
  put_err(c->err, c->errlen, line);
  return -1;
}

static int oom(rcomp *c) {
  if (!c->failed) put_err(c->err, c->errlen, "out of memory");
  c->failed = 1;
  return -1;
}

static int grow(void **p, uint32_t *cap, uint64_t need, size_t elem) {
  if (need <= *cap) return 0;
  uint64_t n = *cap ? *cap : 16;
  while (n < need) n *= 2;
  if (n > UINT32_MAX) return -1;
  void *q = realloc(*p, (size_t)n * elem);
  if (!q) return -1;
  *p = q, *cap = (uint32_t)n;
  return 0;
}

static int too_big(rcomp *c) {
  return fail_at(c, c->pos, "the pattern is too large: more than %d automaton states once repetitions are expanded",
                 IG_REGEX_MAX_NFA);
}

static int reserve(rcomp *c, uint64_t k) {
  if ((uint64_t)c->n + k > IG_REGEX_MAX_NFA) return too_big(c);
  if (grow((void **)&c->ns, &c->cap, c->n + k, sizeof *c->ns)) return oom(c);
  return 0;
}

/* Appends a state; its index, or -1. */
static int32_t add(rcomp *c, int kind, unsigned lo, unsigned hi, int32_t out, int32_t out2) {
  if (reserve(c, 1)) return -1;
  c->ns[c->n] = (nstate){(uint8_t)kind, (uint8_t)lo, (uint8_t)hi, out, out2};
  return (int32_t)c->n++;
}

static void patch(rcomp *c, const frag *f, int32_t to) { c->ns[f->exit].out = to; }

static int frag_empty(rcomp *c, frag *f) {
  int32_t e = add(c, N_EPS, 0, 0, -1, -1);
  if (e < 0) return -1;
  *f = (frag){(uint32_t)e, (uint32_t)e + 1, (uint32_t)e, (uint32_t)e};
  return 0;
}

/* a then b (b's states right after a's) */
static frag frag_cat(rcomp *c, const frag *a, const frag *b) {
  patch(c, a, (int32_t)b->entry);
  return (frag){a->first, b->end, a->entry, b->exit};
}

/* a or b (b's states right after a's) */
static int frag_alt(rcomp *c, frag *a, const frag *b) {
  int32_t s = add(c, N_SPLIT, 0, 0, (int32_t)a->entry, (int32_t)b->entry), j = s < 0 ? -1 : add(c, N_EPS, 0, 0, -1, -1);
  if (j < 0) return -1;
  patch(c, a, j), patch(c, b, j);
  *a = (frag){a->first, (uint32_t)j + 1, (uint32_t)s, (uint32_t)j};
  return 0;
}

/* A byte-range sequence (1 to 4 ranges): a chain of N_BYTE states. */
static int frag_bytes(rcomp *c, const uint8_t *lo, const uint8_t *hi, int k, frag *f) {
  if (reserve(c, (uint64_t)k)) return -1;
  uint32_t first = c->n;
  for (int i = 0; i < k; i++)
    add(c, N_BYTE, lo[i], hi[i], i + 1 < k ? (int32_t)(first + (uint32_t)i + 1) : -1, -1);
  *f = (frag){first, c->n, first, c->n - 1};
  return 0;
}

/* Appends `times` copies of f's states (edges shifted); the copies follow f contiguously. */
static int frag_copies(rcomp *c, const frag *f, uint32_t times) {
  uint32_t size = f->end - f->first;
  if (reserve(c, (uint64_t)size * times)) return -1;
  for (uint32_t t = 0; t < times; t++) {
    int32_t delta = (int32_t)(c->n - f->first);
    for (uint32_t i = f->first; i < f->end; i++) {
      nstate s = c->ns[i];
      if (s.out >= 0) s.out += delta;
      if (s.out2 >= 0) s.out2 += delta;
      c->ns[c->n++] = s;
    }
  }
  return 0;
}

static frag copy_k(const frag *f, uint32_t base, uint32_t k) {
  if (!k) return *f;
  uint32_t delta = base + (k - 1) * (f->end - f->first) - f->first;
  return (frag){f->first + delta, f->end + delta, f->entry + delta, f->exit + delta};
}

/* f{lo,hi} (hi may be INF_COUNT); f is the NFA's last fragment. x{n,m} = x^n (x (x ...)?)?, x{n,} = x^(n-1) x+. */
static int frag_repeat(rcomp *c, frag *f, uint32_t lo, uint32_t hi) {
  if (hi == 0) {
    c->n = f->first;
    return frag_empty(c, f);
  }
  uint32_t k = hi != INF_COUNT ? hi : lo ? lo : 1, base = c->n;
  uint64_t size = f->end - f->first;
  if ((uint64_t)c->n + size * (k - 1) + k + 1 > IG_REGEX_MAX_NFA) return too_big(c);
  if (frag_copies(c, f, k - 1)) return -1;
  int32_t end = (int32_t)(c->n + (hi == INF_COUNT ? 1 : hi - lo)), next = end;
  uint32_t mand = lo;
  if (hi == INF_COUNT) {
    frag last = copy_k(f, base, k - 1);
    patch(c, &last, (int32_t)c->n);
    int32_t s = add(c, N_SPLIT, 0, 0, (int32_t)last.entry, end);
    if (s < 0) return -1;
    next = lo ? (int32_t)last.entry : s;
    mand = lo ? k - 1 : 0;
  } else {
    for (uint32_t i = hi; i-- > lo;) {
      frag ci = copy_k(f, base, i);
      patch(c, &ci, next);
      if ((next = add(c, N_SPLIT, 0, 0, (int32_t)ci.entry, end)) < 0) return -1;
    }
  }
  for (uint32_t i = mand; i-- > 0;) {
    frag ci = copy_k(f, base, i);
    patch(c, &ci, next);
    next = (int32_t)ci.entry;
  }
  int32_t e = add(c, N_EPS, 0, 0, -1, -1);
  if (e < 0) return -1;
  *f = (frag){f->first, c->n, (uint32_t)next, (uint32_t)e};
  return 0;
}

/* ---- code point sets and UTF-8 ---------------------------------------------------------------------------- */

static const cprange SET_DIGIT[] = {{'0', '9'}};
static const cprange SET_WORD[] = {{'0', '9'}, {'A', 'Z'}, {'_', '_'}, {'a', 'z'}};
static const cprange SET_SPACE[] = {{'\t', '\r'}, {' ', ' '}};
static const cprange SET_DOT[] = {{0, '\n' - 1}, {'\n' + 1, MAX_CP}};

static int set_add(rcomp *c, uint32_t lo, uint32_t hi) {
  if (grow((void **)&c->set, &c->cap_set, (uint64_t)c->n_set + 1, sizeof *c->set)) return oom(c);
  c->set[c->n_set++] = (cprange){lo, hi};
  return 0;
}

/* Adds rs (sorted, disjoint), or its complement over all code points. */
static int set_add_ranges(rcomp *c, const cprange *rs, uint32_t n, int negate) {
  uint32_t from = 0;
  for (uint32_t i = 0; i < n; i++) {
    if (!negate && set_add(c, rs[i].lo, rs[i].hi)) return -1;
    if (negate && rs[i].lo > from && set_add(c, from, rs[i].lo - 1)) return -1;
    from = rs[i].hi + 1;
  }
  if (negate && from <= MAX_CP && set_add(c, from, MAX_CP)) return -1;
  return 0;
}

static int cmp_range(const void *a, const void *b) {
  const cprange *x = a, *y = b;
  return (x->lo > y->lo) - (x->lo < y->lo);
}

/* Sorts and merges the set, complements it when negate, and drops the surrogates (UTF-8 cannot encode them). */
static int set_finish(rcomp *c, int negate) {
  qsort(c->set, c->n_set, sizeof *c->set, cmp_range);
  uint32_t m = 0;
  for (uint32_t i = 0; i < c->n_set; i++) {
    if (m && c->set[i].lo <= c->set[m - 1].hi + 1) {
      if (c->set[i].hi > c->set[m - 1].hi) c->set[m - 1].hi = c->set[i].hi;
    } else c->set[m++] = c->set[i];
  }
  if (grow((void **)&c->tmp, &c->cap_tmp, (uint64_t)m + 2, sizeof *c->tmp)) return oom(c);
  if (m) memcpy(c->tmp, c->set, m * sizeof *c->set);
  c->n_set = 0;
  const cprange sur[] = {{0xD800, 0xDFFF}};
  if (negate) {
    if (set_add_ranges(c, c->tmp, m, 1)) return -1;
    if (grow((void **)&c->tmp, &c->cap_tmp, (uint64_t)c->n_set + 2, sizeof *c->tmp)) return oom(c);
    memcpy(c->tmp, c->set, c->n_set * sizeof *c->set);
    m = c->n_set, c->n_set = 0;
  }
  for (uint32_t i = 0; i < m; i++) { /* minus the surrogates */
    cprange r = c->tmp[i];
    if (r.hi < sur[0].lo || r.lo > sur[0].hi) {
      if (set_add(c, r.lo, r.hi)) return -1;
      continue;
    }
    if (r.lo < sur[0].lo && set_add(c, r.lo, sur[0].lo - 1)) return -1;
    if (r.hi > sur[0].hi && set_add(c, sur[0].hi + 1, r.hi)) return -1;
  }
  return 0;
}


/* The length of the valid UTF-8 code point at p[0..n), 0 when invalid; *cp its value. */
static int utf8_decode(const unsigned char *p, size_t n, uint32_t *cp) {
  unsigned b = p[0];
  if (b < 0x80) return *cp = b, 1;
  int k = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 0;
  if (!k || b > 0xF4 || (size_t)k > n) return 0;
  uint32_t v = b & (0x7Fu >> k);
  for (int i = 1; i < k; i++) {
    if ((p[i] & 0xC0) != 0x80) return 0;
    v = v << 6 | (p[i] & 0x3Fu);
  }
  static const uint32_t MIN[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (v < MIN[k] || v > MAX_CP || (v >= 0xD800 && v <= 0xDFFF)) return 0;
  return *cp = v, k;
}

/* The N_BYTE state lo..hi -> next of the set being emitted: shared when it exists already (so that the
 * sequences share their tails: after E1 or EE, "two continuation bytes" is one NFA state, and so one DFA
 * state). The cache holds state index + 1 per slot, valid while its stamp is the set's. */
static int32_t shared_byte(rcomp *c, unsigned lo, unsigned hi, int32_t next) {
  if (c->n_cache * 2 >= c->cap_cache) { /* grow (and rehash this set's entries) */
    uint32_t cap = c->cap_cache ? c->cap_cache * 2 : 256;
    uint32_t *slot = calloc(cap, sizeof *slot), *stamp = calloc(cap, sizeof *stamp);
    if (!slot || !stamp) return free(slot), free(stamp), oom(c);
    for (uint32_t i = 0; i < c->cap_cache; i++) {
      if (c->cache_stamp[i] != c->stamp) continue;
      const nstate *s = &c->ns[c->cache[i] - 1];
      uint32_t j = cache_hash(s->lo, s->hi, s->out) & (cap - 1);
      while (stamp[j] == c->stamp) j = (j + 1) & (cap - 1);
      slot[j] = c->cache[i], stamp[j] = c->stamp;
    }
    free(c->cache), free(c->cache_stamp);
    c->cache = slot, c->cache_stamp = stamp, c->cap_cache = cap;
  }
  uint32_t j = cache_hash(lo, hi, next) & (c->cap_cache - 1);
  for (; c->cache_stamp[j] == c->stamp; j = (j + 1) & (c->cap_cache - 1)) {
    const nstate *s = &c->ns[c->cache[j] - 1];
    if (s->lo == lo && s->hi == hi && s->out == next) return (int32_t)c->cache[j] - 1;
  }
  int32_t t = add(c, N_BYTE, lo, hi, next, -1);
  if (t < 0) return -1;
  c->cache[j] = (uint32_t)t + 1, c->cache_stamp[j] = c->stamp, c->n_cache++;
  return t;
}

/* The code points lo..hi (one UTF-8 length, split so that every byte position is a plain range) as a byte
 * sequence into f->exit, its tail shared, its head alternated into f->entry. */
static int emit_seq(rcomp *c, uint32_t lo, uint32_t hi, frag *f, int *have) {
  uint8_t a[4], b[4];
  int k = ig_utf8_encode(lo, (char *)a);
  ig_utf8_encode(hi, (char *)b);
  int32_t next = (int32_t)f->exit;
  for (int i = k - 1; i > 0; i--)
    if ((next = shared_byte(c, a[i], b[i], next)) < 0) return -1;
  int32_t head = add(c, N_BYTE, a[0], b[0], next, -1);
  if (head < 0) return -1;
  if (*have && (head = add(c, N_SPLIT, 0, 0, head, (int32_t)f->entry)) < 0) return -1;
  f->entry = (uint32_t)head, *have = 1;
  return 0;
}

/* The code points lo..hi (no surrogates in it) as byte-range sequences. */
static int emit_range(rcomp *c, uint32_t lo, uint32_t hi, frag *f, int *have) {
  static const uint32_t LEN_MAX[3] = {0x7F, 0x7FF, 0xFFFF};
  cprange stack[64];
  int sp = 0;
  stack[sp++] = (cprange){lo, hi};
  while (sp) {
    cprange r = stack[--sp];
    int split = 0;
    for (int i = 0; i < 3 && !split; i++)
      if (r.lo <= LEN_MAX[i] && LEN_MAX[i] < r.hi) {
        stack[sp++] = (cprange){LEN_MAX[i] + 1, r.hi}, stack[sp++] = (cprange){r.lo, LEN_MAX[i]};
        split = 1;
      }
    for (int i = 1; i < 4 && !split && r.hi > 0x7F; i++) {
      uint32_t m = (1u << (6 * i)) - 1;
      if ((r.lo & ~m) == (r.hi & ~m)) continue;
      if (r.lo & m) {
        stack[sp++] = (cprange){(r.lo | m) + 1, r.hi}, stack[sp++] = (cprange){r.lo, r.lo | m};
        split = 1;
      } else if ((r.hi & m) != m) {
        stack[sp++] = (cprange){r.hi & ~m, r.hi}, stack[sp++] = (cprange){r.lo, (r.hi & ~m) - 1};
        split = 1;
      }
    }
    if (!split && emit_seq(c, r.lo, r.hi, f, have)) return -1;
  }
  return 0;
}

/* The finished set (set_finish) as a fragment: its exit first, then the sequences back to front into it; no
 * code point at all is a fragment whose entry leads nowhere. */
static int emit_set(rcomp *c, frag *f) {
  int32_t join = add(c, N_EPS, 0, 0, -1, -1);
  if (join < 0) return -1;
  *f = (frag){(uint32_t)join, 0, 0, (uint32_t)join};
  c->stamp++, c->n_cache = 0;
  if (c->stamp == 0) { /* wrapped: forget every stamp */
    if (c->cap_cache) memset(c->cache_stamp, 0, c->cap_cache * sizeof *c->cache_stamp);
    c->stamp = 1;
  }
  int have = 0;
  for (uint32_t i = 0; i < c->n_set; i++)
    if (emit_range(c, c->set[i].lo, c->set[i].hi, f, &have)) return -1;
  if (!have) {
    int32_t dead = add(c, N_FAIL, 0, 0, -1, -1);
    if (dead < 0) return -1;
    f->entry = (uint32_t)dead;
  }
  f->end = c->n;
  return 0;
}

static int emit_cp(rcomp *c, uint32_t cp, frag *f) {
  uint8_t b[4];
  int k = ig_utf8_encode(cp, (char *)b);
  return frag_bytes(c, b, b, k, f);
}

static int emit_named(rcomp *c, const cprange *rs, uint32_t n, int negate, frag *f) {
  c->n_set = 0;
  if (set_add_ranges(c, rs, n, 0) || set_finish(c, negate)) return -1;
  return emit_set(c, f);
}

/* ---- the parser ------------------------------------------------------------------------------------------ */

static int at_end(const rcomp *c) { return c->pos >= c->len; }
static int peek(const rcomp *c, size_t k) { return c->pos + k < c->len ? c->p[c->pos + k] : -1; }
static int is_digit(int ch) { return ch >= '0' && ch <= '9'; }
static int is_octal(int ch) { return ch >= '0' && ch <= '7'; }
static int is_alpha(int ch) { return (ch | 0x20) >= 'a' && (ch | 0x20) <= 'z'; }
static int hex_val(int ch) {
  if (is_digit(ch)) return ch - '0';
  if ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'f') return (ch | 0x20) - 'a' + 10;
  return -1;
}

/* A quantifier's {n}, {n,}, {,m}, {n,m} or {,} at p[at] == '{'. 1 (and *lo, *hi, *next) when it is one, 0 when
 * the '{' is a literal (as Python: anything else). Counts saturate past the limit (checked by the caller). */
static int brace_quant(const rcomp *c, size_t at, uint32_t *lo, uint32_t *hi, size_t *next) {
  size_t i = at + 1;
  uint32_t a = 0, b = 0;
  int da = 0, db = 0, comma = 0;
  for (; i < c->len && is_digit(c->p[i]); i++, da = 1) a = a > IG_REGEX_MAX_COUNT ? a : a * 10 + (c->p[i] - '0');
  if (i < c->len && c->p[i] == ',') {
    comma = 1;
    for (i++; i < c->len && is_digit(c->p[i]); i++, db = 1) b = b > IG_REGEX_MAX_COUNT ? b : b * 10 + (c->p[i] - '0');
  }
  if (i >= c->len || c->p[i] != '}' || (!da && !comma)) return 0;
  *lo = da ? a : 0;
  *hi = comma ? (db ? b : INF_COUNT) : a;
  *next = i + 1;
  return 1;
}

/* The quantifier at pos, if any: 1 and its bounds (pos moves past it), 0 when none. */
static int quantifier(rcomp *c, uint32_t *lo, uint32_t *hi) {
  int ch = peek(c, 0);
  size_t next;
  if (ch == '*') *lo = 0, *hi = INF_COUNT, next = c->pos + 1;
  else if (ch == '+') *lo = 1, *hi = INF_COUNT, next = c->pos + 1;
  else if (ch == '?') *lo = 0, *hi = 1, next = c->pos + 1;
  else if (ch != '{' || !brace_quant(c, c->pos, lo, hi, &next)) return 0;
  c->pos = next;
  return 1;
}

enum { ESC_CP, ESC_SET };

typedef struct escape {
  int kind;
  uint32_t cp;          /* ESC_CP */
  const cprange *set;   /* ESC_SET */
  uint32_t n_set;
  int negate;
} escape;

static int esc_hex(rcomp *c, size_t at, int digits, escape *e) {
  uint32_t v = 0;
  for (int i = 0; i < digits; i++) {
    int h = hex_val(peek(c, 1 + (size_t)i));
    if (h < 0) return fail_at(c, at, "incomplete escape \\%c", c->p[c->pos]);
    v = v << 4 | (uint32_t)h;
  }
  if (v > MAX_CP) return fail_at(c, at, "bad escape: U+%X is past U+10FFFF", v);
  if (v >= 0xD800 && v <= 0xDFFF) return fail_at(c, at, "U+%04X is a surrogate, which UTF-8 cannot encode", v);
  c->pos += 1 + (size_t)digits;
  e->kind = ESC_CP, e->cp = v;
  return 0;
}

/* Up to `more` further octal digits after the one at pos. */
static int esc_octal(rcomp *c, size_t at, int more, escape *e) {
  uint32_t v = (uint32_t)(c->p[c->pos++] - '0');
  for (int i = 0; i < more && is_octal(peek(c, 0)); i++) v = v * 8 + (uint32_t)(c->p[c->pos++] - '0');
  if (v > 0377) return fail_at(c, at, "octal escape value \\%o outside of range 0-0o377", v);
  e->kind = ESC_CP, e->cp = v;
  return 0;
}

static int esc_set(rcomp *c, int ch, escape *e) {
  int low = ch | 0x20;
  e->kind = ESC_SET, e->negate = ch != low;
  if (low == 'd') e->set = SET_DIGIT, e->n_set = 1;
  else if (low == 'w') e->set = SET_WORD, e->n_set = 4;
  else e->set = SET_SPACE, e->n_set = 2;
  c->pos++;
  return 0;
}

/* The escape at pos ('\'); inside a class or not. */
static int parse_escape(rcomp *c, int in_class, escape *e) {
  size_t at = c->pos++;
  int ch = peek(c, 0);
  if (ch < 0) return fail_at(c, at, "bad escape (end of pattern)");
  if (ch >= 0x80) {
    int k = utf8_decode(c->p + c->pos, c->len - c->pos, &e->cp);
    c->pos += (size_t)k;
    return e->kind = ESC_CP, 0;
  }
  static const char SIMPLE[] = "n\nt\tr\rf\fv\va\a";
  for (int i = 0; SIMPLE[i]; i += 2)
    if (ch == SIMPLE[i]) return c->pos++, e->kind = ESC_CP, e->cp = (unsigned char)SIMPLE[i + 1], 0;
  switch (ch) {
  case 'd': case 'D': case 'w': case 'W': case 's': case 'S': return esc_set(c, ch, e);
  case 'x': return esc_hex(c, at, 2, e);
  case 'u': return esc_hex(c, at, 4, e);
  case 'U': return esc_hex(c, at, 8, e);
  case 'b':
    if (in_class) return c->pos++, e->kind = ESC_CP, e->cp = 8, 0;
    return fail_at(c, at, "word boundaries (\\b) are not supported");
  case 'N': return fail_at(c, at, "named characters (\\N{...}) are not supported");
  case '0': return esc_octal(c, at, 2, e);
  default: break;
  }
  if (!in_class && (ch == 'B' || ch == 'A' || ch == 'Z' || ch == 'z' || ch == 'G'))
    return fail_at(c, at, "the anchor \\%c is not supported", ch);
  if (is_digit(ch)) {
    if (in_class) {
      if (is_octal(ch)) return esc_octal(c, at, 2, e);
      return fail_at(c, at, "bad escape \\%c", ch);
    }
    if (is_octal(ch) && is_octal(peek(c, 1)) && is_octal(peek(c, 2))) return esc_octal(c, at, 2, e);
    return fail_at(c, at, "backreferences are not supported");
  }
  if (is_alpha(ch)) return fail_at(c, at, "bad escape \\%c", ch);
  c->pos++;
  e->kind = ESC_CP, e->cp = (uint32_t)ch;
  return 0;
}

/* One class member at pos: a code point or a set. */
static int class_item(rcomp *c, escape *e) {
  if (c->p[c->pos] == '\\') return parse_escape(c, 1, e);
  e->kind = ESC_CP;
  c->pos += (size_t)utf8_decode(c->p + c->pos, c->len - c->pos, &e->cp);
  return 0;
}

static int class_add(rcomp *c, const escape *e) {
  if (e->kind == ESC_SET) return set_add_ranges(c, e->set, e->n_set, e->negate);
  return set_add(c, e->cp, e->cp);
}

/* [...] at pos. */
static int parse_class(rcomp *c, frag *f) {
  size_t at = c->pos++;
  int negate = peek(c, 0) == '^';
  c->pos += (size_t)negate;
  c->n_set = 0;
  for (int first = 1;; first = 0) {
    if (at_end(c)) return fail_at(c, at, "unterminated character set");
    if (c->p[c->pos] == ']' && !first) {
      c->pos++;
      break;
    }
    size_t item_at = c->pos;
    escape a, b;
    if (class_item(c, &a)) return -1;
    if (peek(c, 0) != '-') {
      if (class_add(c, &a)) return -1;
      continue;
    }
    c->pos++;
    if (at_end(c)) return fail_at(c, at, "unterminated character set");
    if (c->p[c->pos] == ']') { /* "a-]": a and '-' */
      c->pos++;
      if (class_add(c, &a) || set_add(c, '-', '-')) return -1;
      break;
    }
    if (class_item(c, &b)) return -1;
    if (a.kind != ESC_CP || b.kind != ESC_CP || b.cp < a.cp)
      return fail_at(c, item_at, "bad character range");
    if (set_add(c, a.cp, b.cp)) return -1;
  }
  if (set_finish(c, negate)) return -1;
  return emit_set(c, f);
}

static int parse_alt(rcomp *c, int depth, frag *f);

/* (?P<name> or (?<name>: the name at pos up to '>'. */
static int group_name(rcomp *c, size_t at) {
  size_t start = c->pos;
  while (!at_end(c) && c->p[c->pos] != '>') {
    int ch = c->p[c->pos];
    if (!(ch >= 0x80 || ch == '_' || is_alpha(ch) || (is_digit(ch) && c->pos > start)))
      return fail_at(c, c->pos, "bad character in group name");
    c->pos++;
  }
  if (at_end(c)) return fail_at(c, at, "missing >, unterminated name");
  if (c->pos == start) return fail_at(c, at, "missing group name");
  c->pos++;
  return 0;
}

/* After "(?" at `at`: moves past the group's head, or refuses it. 1: a comment (skipped whole). */
static int group_head(rcomp *c, size_t at) {
  int ch = peek(c, 0), ch2 = peek(c, 1);
  switch (ch) {
  case ':': return c->pos++, 0;
  case 'P':
    if (ch2 == '<') return c->pos += 2, group_name(c, at);
    if (ch2 == '=') return fail_at(c, at, "backreferences are not supported");
    return fail_at(c, at, "unknown extension ?P");
  case '<':
    if (ch2 == '=' || ch2 == '!') return fail_at(c, at, "lookbehind assertions are not supported");
    return c->pos++, group_name(c, at);
  case '=':
  case '!': return fail_at(c, at, "lookahead assertions are not supported");
  case '(': return fail_at(c, at, "conditionals are not supported");
  case '>': return fail_at(c, at, "atomic groups are not supported");
  case '#':
    while (!at_end(c) && c->p[c->pos] != ')') c->pos++;
    if (at_end(c)) return fail_at(c, at, "missing ), unterminated comment");
    return c->pos++, 1;
  default: break;
  }
  if (ch > 0 && strchr("aiLmsux-", ch)) return fail_at(c, at, "inline flags are not supported");
  if (ch < 0) return fail_at(c, at, "unexpected end of pattern");
  return fail_at(c, at, "unknown extension ?%c", ch >= 0x20 && ch < 0x7F ? ch : '?');
}

/* ( ... ) at pos; *f is empty for a comment. */
static int parse_group(rcomp *c, int depth, frag *f) {
  size_t at = c->pos++;
  if (peek(c, 0) == '?') {
    c->pos++;
    int h = group_head(c, at);
    if (h < 0) return -1;
    if (h == 1) return frag_empty(c, f);
  }
  if (depth >= IG_REGEX_MAX_NEST) return fail_at(c, at, "groups nest deeper than %d", IG_REGEX_MAX_NEST);
  if (parse_alt(c, depth + 1, f)) return -1;
  if (at_end(c)) return fail_at(c, at, "missing ), unterminated subpattern");
  c->pos++;
  return 0;
}

static int parse_atom(rcomp *c, int depth, frag *f) {
  int ch = c->p[c->pos];
  escape e;
  switch (ch) {
  case '(': return parse_group(c, depth, f);
  case '[': return parse_class(c, f);
  case '.': return c->pos++, emit_named(c, SET_DOT, 2, 0, f);
  case '^': return fail_at(c, c->pos, "'^' is only supported at the start of the pattern");
  case '$': return fail_at(c, c->pos, "'$' is only supported at the end of the pattern");
  case '\\':
    if (parse_escape(c, 0, &e)) return -1;
    if (e.kind == ESC_SET) return emit_named(c, e.set, e.n_set, e.negate, f);
    return emit_cp(c, e.cp, f);
  default: break;
  }
  uint32_t cp;
  c->pos += (size_t)utf8_decode(c->p + c->pos, c->len - c->pos, &cp);
  return emit_cp(c, cp, f);
}

static int is_quant_start(const rcomp *c) {
  int ch = peek(c, 0);
  uint32_t lo, hi;
  size_t next;
  return ch == '*' || ch == '+' || ch == '?' || (ch == '{' && brace_quant(c, c->pos, &lo, &hi, &next));
}

/* An atom and its quantifier. */
static int parse_piece(rcomp *c, int depth, frag *f) {
  if (is_quant_start(c)) return fail_at(c, c->pos, "nothing to repeat");
  int comment = c->p[c->pos] == '(' && peek(c, 1) == '?' && peek(c, 2) == '#';
  if (parse_atom(c, depth, f)) return -1;
  size_t at = c->pos;
  uint32_t lo, hi;
  if (!quantifier(c, &lo, &hi)) return 0;
  if (comment) return fail_at(c, at, "a quantifier after a comment is not supported");
  if ((lo > IG_REGEX_MAX_COUNT && lo != INF_COUNT) || (hi > IG_REGEX_MAX_COUNT && hi != INF_COUNT))
    return fail_at(c, at, "the repetition count is above %d", IG_REGEX_MAX_COUNT);
  if (lo > hi) return fail_at(c, at, "min repeat greater than max repeat");
  if (peek(c, 0) == '?') c->pos++; /* lazy: the same language */
  else if (peek(c, 0) == '+') return fail_at(c, c->pos, "possessive quantifiers are not supported");
  if (is_quant_start(c)) return fail_at(c, c->pos, "multiple repeat");
  return frag_repeat(c, f, lo, hi);
}

/* A sequence of pieces, up to '|', ')' or the end. alt_start: where this alternative starts (for '^'). */
static int parse_concat(rcomp *c, int depth, size_t alt_start, frag *f) {
  int have = 0;
  while (!at_end(c)) {
    int ch = c->p[c->pos];
    if (ch == '|') break;
    if (ch == ')') {
      if (!depth) return fail_at(c, c->pos, "unbalanced parenthesis");
      break;
    }
    if (!depth && ch == '^' && c->pos == alt_start) { /* full match anyway */
      c->pos++;
      continue;
    }
    if (!depth && ch == '$' && (c->pos + 1 == c->len || c->p[c->pos + 1] == '|')) {
      c->pos++;
      continue;
    }
    frag g;
    if (parse_piece(c, depth, &g)) return -1;
    *f = have ? frag_cat(c, f, &g) : g;
    have = 1;
  }
  return have ? 0 : frag_empty(c, f);
}

static int parse_alt(rcomp *c, int depth, frag *f) {
  if (parse_concat(c, depth, c->pos, f)) return -1;
  while (!at_end(c) && c->p[c->pos] == '|') {
    c->pos++;
    frag g;
    if (parse_concat(c, depth, c->pos, &g) || frag_alt(c, f, &g)) return -1;
  }
  return 0;
}

static int check_utf8(rcomp *c) {
  for (size_t i = 0; i < c->len;) {
    uint32_t cp;
    int k = utf8_decode(c->p + i, c->len - i, &cp);
    if (!k) return fail_at(c, i, "the pattern is not valid UTF-8");
    i += (size_t)k;
  }
  return 0;
}

/* ---- the subset construction ----------------------------------------------------------------------------- */

typedef struct dinfo {
  uint32_t off, len, hash; /* its set: pool[off .. off + len) */
  uint8_t accept;
} dinfo;

typedef struct dbuild {
  const nstate *ns;
  uint32_t n_ns;
  char *err;
  size_t errlen;
  uint32_t n_cls, n_iv;
  uint8_t cls[256];     /* byte -> class */
  uint8_t iv[256];      /* byte -> elementary interval (bytes no range boundary separates) */
  uint8_t iv_cls[256];  /* elementary interval -> class */
  uint32_t *pool;       /* the DFA states' NFA sets, back to back */
  uint32_t n_pool, cap_pool;
  dinfo *d;
  int32_t *trans;       /* [n_d * n_cls] */
  uint32_t n_d, cap_d, cap_trans;
  uint32_t *ht; /* open addressing: DFA state + 1, 0 empty */
  uint32_t ht_cap;
  uint32_t *mark, gen, *stack, *cur; /* closure scratch: visited stamps, DFS stack, the set being built */
  uint32_t n_cur, cur_hash;
  int cur_accept;
  uint32_t *pair_cls, *pair_tgt, *tgt; /* a state's moves: (class, NFA target), then targets grouped by class */
  uint32_t n_pair, cap_pair, cap_pair2, cap_tgt;
  uint32_t seen[256], cnt[256], start[256];
  uint32_t tick;
  uint64_t work, max_work;
  uint32_t max_states;
  const uint8_t *byte_ok; /* NULL, or the bytes the text may hold: the others lead nowhere */
  int failed;
} dbuild;

static int dfail(dbuild *b, const char *msg) {
  if (!b->failed) put_err(b->err, b->errlen, msg);
  b->failed = 1;
  return -1;
}

/* The byte classes: elementary intervals from the ranges' boundaries, then merged when every range holds both
 * or neither (partition refinement, one distinct range at a time). */
static int byte_classes(dbuild *b) {
  uint8_t bound[257] = {0};
  uint8_t *seen = calloc(256 * 256 / 8, 1); /* distinct (lo, hi) pairs */
  if (!seen) return dfail(b, "out of memory");
  for (uint32_t i = 0; i < b->n_ns; i++)
    if (b->ns[i].kind == N_BYTE) bound[b->ns[i].lo] = 1, bound[b->ns[i].hi + 1] = 1;
  for (int x = 1; x < 256 && b->byte_ok; x++) /* a byte filter's edges cut classes too */
    if (!b->byte_ok[x] != !b->byte_ok[x - 1]) bound[x] = 1;
  b->n_iv = 0;
  for (int x = 0; x < 256; x++) {
    if (x && bound[x]) b->n_iv++;
    b->iv[x] = (uint8_t)b->n_iv;
  }
  b->n_iv++;
  uint16_t ivc[256] = {0}; /* interval -> class while refining (ids may pass 255 before compaction) */
  uint32_t n_cls = 1;
  for (uint32_t i = 0; i < b->n_ns; i++) {
    const nstate *s = &b->ns[i];
    unsigned key = (unsigned)s->lo << 8 | s->hi;
    if (s->kind != N_BYTE || (seen[key >> 3] >> (key & 7) & 1)) continue;
    seen[key >> 3] |= (uint8_t)(1u << (key & 7));
    int16_t remap[256];
    memset(remap, -1, sizeof remap);
    for (unsigned v = b->iv[s->lo]; v <= b->iv[s->hi]; v++) { /* the marked part of each class gets a new id */
      unsigned k = ivc[v];
      if (remap[k] < 0) remap[k] = (int16_t)n_cls++;
      ivc[v] = (uint16_t)remap[k];
    }
    int16_t renum[512]; /* compact the ids back to 0.. in order of first interval */
    memset(renum, -1, sizeof renum);
    uint32_t m = 0;
    for (uint32_t v = 0; v < b->n_iv; v++) {
      if (renum[ivc[v]] < 0) renum[ivc[v]] = (int16_t)m++;
      ivc[v] = (uint16_t)renum[ivc[v]];
    }
    n_cls = m;
  }
  if (b->byte_ok) { /* the allowed intervals marked as one more range: no class mixes allowed and other bytes */
    int16_t remap[512], renum[512];
    memset(remap, -1, sizeof remap);
    memset(renum, -1, sizeof renum);
    for (int x = 0; x < 256; x++) {
      unsigned v = b->iv[x], k = ivc[v];
      if ((x == 0 || b->iv[x - 1] != v) && b->byte_ok[x]) {
        if (remap[k] < 0) remap[k] = (int16_t)n_cls++;
        ivc[v] = (uint16_t)remap[k];
      }
    }
    uint32_t m = 0;
    for (uint32_t v = 0; v < b->n_iv; v++) {
      if (renum[ivc[v]] < 0) renum[ivc[v]] = (int16_t)m++;
      ivc[v] = (uint16_t)renum[ivc[v]];
    }
    n_cls = m;
  }
  free(seen);
  b->n_cls = n_cls;
  for (uint32_t v = 0; v < b->n_iv; v++) b->iv_cls[v] = (uint8_t)ivc[v];
  for (int x = 0; x < 256; x++) b->cls[x] = b->iv_cls[b->iv[x]];
  return 0;
}

static uint32_t mix(uint32_t x) {
  uint64_t h = (x + 1) * 0x9E3779B97F4A7C15ull;
  return (uint32_t)(h >> 32 ^ h);
}

/* cur = the byte and match states reachable from seeds[0..n) by epsilon moves (in no particular order: they
 * are exactly the ones of those whose mark is gen, which is how intern compares sets), cur_hash a hash that
 * does not depend on the order, cur_accept whether the match state is among them. */
static void closure(dbuild *b, const uint32_t *seeds, uint32_t n) {
  if (++b->gen == 0) memset(b->mark, 0, b->n_ns * sizeof *b->mark), b->gen = 1;
  uint32_t sp = 0, h = 0;
  b->n_cur = 0, b->cur_accept = 0;
  for (uint32_t i = 0; i < n; i++)
    if (b->mark[seeds[i]] != b->gen) b->mark[seeds[i]] = b->gen, b->stack[sp++] = seeds[i];
  while (sp) {
    uint32_t s = b->stack[--sp];
    const nstate *t = &b->ns[s];
    b->work++;
    if (t->kind == N_BYTE || t->kind == N_MATCH) b->cur[b->n_cur++] = s, h += mix(s);
    b->cur_accept |= t->kind == N_MATCH;
    if (t->kind != N_EPS && t->kind != N_SPLIT) continue;
    if (t->out >= 0 && b->mark[t->out] != b->gen) b->mark[t->out] = b->gen, b->stack[sp++] = (uint32_t)t->out;
    if (t->kind == N_SPLIT && t->out2 >= 0 && b->mark[t->out2] != b->gen)
      b->mark[t->out2] = b->gen, b->stack[sp++] = (uint32_t)t->out2;
  }
  b->cur_hash = h ^ b->n_cur * 0x85EBCA6Bu;
}

/* DFA state d's set is cur: as many states, every one of them marked by the last closure. */
static int same_set(const dbuild *b, uint32_t d) {
  const dinfo *di = &b->d[d];
  if (di->hash != b->cur_hash || di->len != b->n_cur) return 0;
  for (uint32_t i = 0; i < di->len; i++)
    if (b->mark[b->pool[di->off + i]] != b->gen) return 0;
  return 1;
}

static int ht_grow(dbuild *b) {
  uint32_t cap = b->ht_cap ? b->ht_cap * 2 : 1024;
  uint32_t *t = calloc(cap, sizeof *t);
  if (!t) return dfail(b, "out of memory");
  for (uint32_t d = 0; d < b->n_d; d++) {
    uint32_t i = b->d[d].hash & (cap - 1);
    while (t[i]) i = (i + 1) & (cap - 1);
    t[i] = d + 1;
  }
  free(b->ht);
  b->ht = t, b->ht_cap = cap;
  return 0;
}

/* A new DFA state for cur (whose hash is h). */
static int32_t new_dstate(dbuild *b, uint32_t h) {
  char msg[96];
  if (b->n_d >= b->max_states) {
    snprintf(msg, sizeof msg, "the pattern needs more than %u automaton states", b->max_states);
    return dfail(b, msg);
  }
  if ((uint64_t)b->n_pool + b->n_cur > MAX_POOL || (uint64_t)(b->n_d + 1) * b->n_cls > MAX_TABLE)
    return dfail(b, "the pattern is too complex: its automaton would be too large");
  uint32_t d = b->n_d;
  if ((d + 1) * 2 > b->ht_cap && ht_grow(b)) return -1; /* rehashes states 0 .. d - 1 */
  if (grow((void **)&b->pool, &b->cap_pool, (uint64_t)b->n_pool + b->n_cur, sizeof *b->pool) ||
      grow((void **)&b->d, &b->cap_d, d + 1, sizeof *b->d) ||
      grow((void **)&b->trans, &b->cap_trans, (uint64_t)(d + 1) * b->n_cls, sizeof *b->trans))
    return dfail(b, "out of memory");
  if (b->n_cur) memcpy(b->pool + b->n_pool, b->cur, b->n_cur * sizeof *b->cur);
  b->d[d] = (dinfo){b->n_pool, b->n_cur, h, (uint8_t)b->cur_accept};
  b->n_pool += b->n_cur;
  for (uint32_t k = 0; k < b->n_cls; k++) b->trans[(size_t)d * b->n_cls + k] = -1;
  uint32_t i = h & (b->ht_cap - 1);
  while (b->ht[i]) i = (i + 1) & (b->ht_cap - 1);
  b->ht[i] = d + 1;
  b->n_d++;
  return (int32_t)d;
}

/* The DFA state of cur: found or added. */
static int32_t intern(dbuild *b) {
  uint32_t h = b->cur_hash;
  if (b->ht_cap)
    for (uint32_t i = h & (b->ht_cap - 1); b->ht[i]; i = (i + 1) & (b->ht_cap - 1))
      if (same_set(b, b->ht[i] - 1)) return (int32_t)(b->ht[i] - 1);
  return new_dstate(b, h);
}

/* The moves of DFA state d, grouped by class into tgt (class k's targets at start[k], cnt[k] of them). */
static int moves(dbuild *b, uint32_t d) {
  b->n_pair = 0;
  memset(b->cnt, 0, b->n_cls * sizeof *b->cnt);
  for (uint32_t j = 0; j < b->d[d].len; j++) {
    const nstate *s = &b->ns[b->pool[b->d[d].off + j]];
    if (s->kind != N_BYTE) continue;
    b->tick++;
    if ((uint64_t)b->n_pair + b->n_iv > MAX_PAIRS) return dfail(b, "the pattern is too complex to compile");
    if (grow((void **)&b->pair_cls, &b->cap_pair, (uint64_t)b->n_pair + b->n_iv, sizeof *b->pair_cls) ||
        grow((void **)&b->pair_tgt, &b->cap_pair2, (uint64_t)b->n_pair + b->n_iv, sizeof *b->pair_tgt))
      return dfail(b, "out of memory");
    for (unsigned v = b->iv[s->lo]; v <= b->iv[s->hi]; v++) {
      unsigned k = b->iv_cls[v];
      if (b->seen[k] == b->tick) continue;
      b->seen[k] = b->tick, b->cnt[k]++;
      b->pair_cls[b->n_pair] = k, b->pair_tgt[b->n_pair++] = (uint32_t)s->out;
    }
  }
  b->work += b->n_pair + b->d[d].len + b->n_cls;
  if (grow((void **)&b->tgt, &b->cap_tgt, (uint64_t)b->n_pair + 1, sizeof *b->tgt)) return dfail(b, "out of memory");
  uint32_t at = 0;
  for (uint32_t k = 0; k < b->n_cls; k++) b->start[k] = at, at += b->cnt[k];
  uint32_t fill[256];
  memcpy(fill, b->start, b->n_cls * sizeof *fill);
  for (uint32_t i = 0; i < b->n_pair; i++) b->tgt[fill[b->pair_cls[i]]++] = b->pair_tgt[i];
  return 0;
}

static int subset(dbuild *b, uint32_t entry) {
  b->mark = calloc(b->n_ns, sizeof *b->mark);
  b->stack = malloc(b->n_ns * sizeof *b->stack);
  b->cur = malloc(b->n_ns * sizeof *b->cur);
  if (!b->mark || !b->stack || !b->cur) return dfail(b, "out of memory");
  closure(b, &entry, 1);
  if (intern(b) < 0) return -1;
  for (uint32_t d = 0; d < b->n_d; d++) {
    if (moves(b, d)) return -1;
    for (uint32_t k = 0; k < b->n_cls; k++) {
      if (!b->cnt[k]) continue;
      closure(b, b->tgt + b->start[k], b->cnt[k]);
      if (!b->n_cur) continue;
      int32_t t = intern(b);
      if (t < 0) return -1;
      b->trans[(size_t)d * b->n_cls + k] = t;
    }
    if (b->work > b->max_work) return dfail(b, "the pattern is too complex to compile");
  }
  return 0;
}

/* ---- pruning --------------------------------------------------------------------------------------------- */

/* live[d]: some accepting state is reachable from d (a search backwards from the accepting states). */
static int find_live(dbuild *b, uint8_t *live) {
  size_t n = b->n_d, edges = 0;
  uint32_t *off = calloc(n + 1, sizeof *off);
  if (!off) return dfail(b, "out of memory");
  for (size_t i = 0; i < n * b->n_cls; i++)
    if (b->trans[i] >= 0) off[b->trans[i] + 1]++, edges++;
  for (size_t d = 0; d < n; d++) off[d + 1] += off[d];
  uint32_t *rev = malloc((edges ? edges : 1) * sizeof *rev), *fill = malloc((n + 1) * sizeof *fill);
  uint32_t *queue = malloc(n * sizeof *queue);
  if (!rev || !fill || !queue) {
    free(off), free(rev), free(fill), free(queue);
    return dfail(b, "out of memory");
  }
  memcpy(fill, off, n * sizeof *fill);
  for (size_t i = 0; i < n * b->n_cls; i++)
    if (b->trans[i] >= 0) rev[fill[b->trans[i]]++] = (uint32_t)(i / b->n_cls);
  size_t head = 0, tail = 0;
  for (size_t d = 0; d < n; d++)
    if ((live[d] = b->d[d].accept)) queue[tail++] = (uint32_t)d;
  while (head < tail) {
    uint32_t d = queue[head++];
    for (uint32_t i = off[d]; i < off[d + 1]; i++)
      if (!live[rev[i]]) live[rev[i]] = 1, queue[tail++] = rev[i];
  }
  free(off), free(rev), free(fill), free(queue);
  return 0;
}

/* The final automaton: the live states, renumbered in order (the start state stays 0). */
static int prune(dbuild *b, ig_regex **out) {
  for (int x = 0; x < 256 && b->byte_ok; x++) /* moves on a filtered byte's class lead nowhere */
    if (!b->byte_ok[x])
      for (uint32_t d = 0; d < b->n_d; d++) b->trans[(size_t)d * b->n_cls + b->cls[x]] = -1;
  uint8_t *live = malloc(b->n_d);
  int32_t *map = malloc(b->n_d * sizeof *map);
  ig_regex *r = calloc(1, sizeof *r);
  if (!live || !map || !r || find_live(b, live)) {
    free(live), free(map), free(r);
    return dfail(b, "out of memory");
  }
  uint32_t n = 0;
  for (uint32_t d = 0; d < b->n_d; d++) map[d] = live[d] ? (int32_t)n++ : -1;
  if (!live[0]) {
    free(live), free(map), free(r);
    return dfail(b, "the pattern matches nothing");
  }
  r->n_states = n, r->n_classes = b->n_cls;
  memcpy(r->cls, b->cls, sizeof r->cls);
  r->trans = malloc((size_t)n * b->n_cls * sizeof *r->trans);
  r->accept = malloc(n);
  if (!r->trans || !r->accept) {
    free(live), free(map), ig_regex_free(r);
    return dfail(b, "out of memory");
  }
  for (uint32_t d = 0; d < b->n_d; d++) {
    if (!live[d]) continue;
    uint32_t nd = (uint32_t)map[d];
    r->accept[nd] = b->d[d].accept;
    for (uint32_t k = 0; k < b->n_cls; k++) {
      int32_t t = b->trans[(size_t)d * b->n_cls + k];
      r->trans[(size_t)nd * b->n_cls + k] = t < 0 ? -1 : map[t];
    }
  }
  free(live), free(map);
  *out = r;
  return 0;
}

static void dbuild_free(dbuild *b) {
  free(b->pool), free(b->d), free(b->trans);
  free(b->ht), free(b->mark), free(b->stack), free(b->cur), free(b->pair_cls), free(b->pair_tgt), free(b->tgt);
}

static int build_dfa(const nstate *ns, uint32_t n_ns, uint32_t entry, uint32_t max_states, const uint8_t *byte_ok,
                     ig_regex **out, char *err, size_t errlen) {
  dbuild *b = calloc(1, sizeof *b);
  if (!b) return put_err(err, errlen, "out of memory"), -1;
  b->ns = ns, b->n_ns = n_ns, b->err = err, b->errlen = errlen, b->byte_ok = byte_ok;
  b->max_states = max_states; /* the work cap shrinks with it (a smaller automaton is refused sooner) */
  b->max_work = MAX_WORK / (IG_REGEX_MAX_STATES / max_states);
  int rc = byte_classes(b) || subset(b, entry) || prune(b, out) ? -1 : 0;
  dbuild_free(b);
  free(b);
  return rc;
}

/* ---- the API --------------------------------------------------------------------------------------------- */

int ig_regex_compile(const char *pat, size_t len, ig_regex **out, char *err, size_t errlen) {
  return ig_regex_compile_max(pat, len, IG_REGEX_MAX_STATES, NULL, out, err, errlen);
}

int ig_regex_compile_max(const char *pat, size_t len, uint32_t max_states, const uint8_t *byte_ok, ig_regex **out,
                         char *err, size_t errlen) {
  *out = NULL;
  if (max_states < 1 || max_states > IG_REGEX_MAX_STATES) max_states = IG_REGEX_MAX_STATES;
  if (errlen) err[0] = 0;
  if (len > IG_REGEX_MAX_PATTERN) {
    char msg[80];
    snprintf(msg, sizeof msg, "the pattern is longer than %d bytes", IG_REGEX_MAX_PATTERN);
    put_err(err, errlen, msg);
    return -1;
  }
  rcomp c = {.p = (const unsigned char *)pat, .len = len, .err = err, .errlen = errlen};
  frag f;
  int32_t m = -1;
  int rc = -1;
  if (!check_utf8(&c) && !parse_alt(&c, 0, &f) && (m = add(&c, N_MATCH, 0, 0, -1, -1)) >= 0) {
    patch(&c, &f, m);
    rc = build_dfa(c.ns, c.n, f.entry, max_states, byte_ok, out, err, errlen);
  }
  free(c.ns), free(c.set), free(c.tmp), free(c.cache), free(c.cache_stamp);
  return rc;
}

void ig_regex_free(ig_regex *r) {
  if (!r) return;
  free(r->trans), free(r->accept), free(r);
}

uint32_t ig_regex_start(const ig_regex *r) { return 0; }

int32_t ig_regex_step(const ig_regex *r, uint32_t s, unsigned char c) {
  if (s >= r->n_states) return -1;
  return r->trans[(size_t)s * r->n_classes + r->cls[c]];
}

int ig_regex_accepting(const ig_regex *r, uint32_t s) { return s < r->n_states && r->accept[s]; }

uint32_t ig_regex_n_states(const ig_regex *r) { return r->n_states; }

/* class of the state a transition goes to (-1: refused, its own class) */
static inline uint32_t fold_to(const uint32_t *cls, int32_t t) { return t < 0 ? UINT32_MAX : cls[t]; }

static int fold_same(const ig_regex *r, const uint32_t *cls, uint32_t a, uint32_t b) {
  if (cls[a] != cls[b]) return 0;
  const int32_t *ta = r->trans + (size_t)a * r->n_classes, *tb = r->trans + (size_t)b * r->n_classes;
  for (uint32_t c = 0; c < r->n_classes; c++)
    if (fold_to(cls, ta[c]) != fold_to(cls, tb[c])) return 0;
  return 1;
}

int ig_regex_fold(const ig_regex *r, uint32_t L, uint64_t *budget, uint32_t *rep) {
  const uint32_t n = r->n_states, k = r->n_classes;
  for (uint32_t s = 0; s < n; s++) rep[s] = s;
  if (n < 2) return 0;
  size_t cap = 1;
  while (cap < 2 * (size_t)n) cap <<= 1;
  uint32_t *cls = malloc(n * sizeof *cls), *nxt = malloc(n * sizeof *nxt), *first = malloc(n * sizeof *first);
  int64_t *tab = malloc(cap * sizeof *tab);
  int rc = cls && nxt && first && tab ? 0 : -1;
  uint32_t n_cls = 0;
  if (!rc) { /* round 0: accepting or not */
    int seen[2] = {-1, -1};
    for (uint32_t s = 0; s < n; s++) {
      int a = r->accept[s] != 0;
      if (seen[a] < 0) seen[a] = (int)n_cls++;
      cls[s] = (uint32_t)seen[a];
    }
  }
  uint64_t visits = 0;
  for (uint32_t round = 0; !rc && round < L && n_cls < n; round++) {
    if ((visits += 2 * (uint64_t)n * (k + 1)) > *budget) { rc = -1; break; }
    for (size_t i = 0; i < cap; i++) tab[i] = -1;
    uint32_t m = 0;
    for (uint32_t s = 0; s < n; s++) {
      uint64_t h = 1469598103934665603ull ^ cls[s];
      const int32_t *t = r->trans + (size_t)s * k;
      for (uint32_t c = 0; c < k; c++) h = (h ^ fold_to(cls, t[c])) * 1099511628211ull;
      size_t slot = (size_t)(h ^ (h >> 29)) & (cap - 1);
      for (;; slot = (slot + 1) & (cap - 1)) {
        if (tab[slot] < 0) { /* a new class; s its smallest state (states go up) */
          tab[slot] = s;
          nxt[s] = m++;
          break;
        }
        if (fold_same(r, cls, (uint32_t)tab[slot], s)) {
          nxt[s] = nxt[tab[slot]];
          break;
        }
      }
    }
    uint32_t *sw = cls;
    cls = nxt, nxt = sw;
    if (m == n_cls) break; /* stable: no longer text tells more apart */
    n_cls = m;
  }
  if (!rc) {
    for (uint32_t c = 0; c < n; c++) first[c] = UINT32_MAX;
    for (uint32_t s = 0; s < n; s++)
      if (first[cls[s]] == UINT32_MAX) first[cls[s]] = s;
    for (uint32_t s = 0; s < n; s++) rep[s] = first[cls[s]];
  } else {
    for (uint32_t s = 0; s < n; s++) rep[s] = s;
  }
  free(cls), free(nxt), free(first), free(tab);
  *budget = visits < *budget ? *budget - visits : 0;
  return rc;
}
