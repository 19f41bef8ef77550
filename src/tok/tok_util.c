/* tok/tok_util: the small machinery under the tokenizer: open-addressing hash maps (string -> id for
 * vocabularies, id pair -> merge for BPE), a byte pool, UTF-8 helpers (lossy decoding exactly as Rust's
 * from_utf8_lossy), GPT-2's byte <-> code point map, and PCRE2 regex iteration. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tok/tok_int.h"

/* ---- hashing ---------------------------------------------------------------------------------------- */
uint32_t tk_hash(const void *p, size_t n) {
  /* FNV-1a over 8-byte words, then a final mix; fast for the short keys of a vocabulary. */
  const unsigned char *s = p;
  uint64_t h = 0xcbf29ce484222325ull ^ n;
  while (n >= 8) {
    uint64_t w;
    memcpy(&w, s, 8);
    h = (h ^ w) * 0x100000001b3ull;
    h ^= h >> 29;
    s += 8;
    n -= 8;
  }
  uint64_t w = 0;
  memcpy(&w, s, n);
  h = (h ^ w) * 0x100000001b3ull;
  h ^= h >> 32;
  h *= 0x9E3779B97F4A7C15ull;
  return (uint32_t)(h >> 32);
}

static uint32_t pow2_at_least(size_t n) {
  uint32_t c = 16;
  while (c < n * 2) c <<= 1;
  return c;
}

int tk_strmap_init(tk_strmap *m, size_t n_keys) {
  uint32_t cap = pow2_at_least(n_keys);
  m->slot = calloc(cap, sizeof(tk_slot));
  if (!m->slot) return -1;
  m->mask = cap - 1;
  return 0;
}

void tk_strmap_free(tk_strmap *m) {
  free(m->slot);
  m->slot = NULL;
}

void tk_strmap_put(tk_strmap *m, int32_t id, int replace) {
  const char *k = m->pool + m->off[id];
  uint32_t kl = m->len[id];
  uint32_t h = tk_hash(k, kl), i = h & m->mask;
  for (;;) {
    tk_slot *sl = &m->slot[i];
    if (!sl->id1) {
      sl->hash = h;
      sl->id1 = (uint32_t)id + 1;
      sl->off = m->off[id];
      sl->len = kl;
      return;
    }
    if (sl->hash == h && sl->len == kl && !memcmp(m->pool + sl->off, k, kl)) {
      if (replace) {
        sl->id1 = (uint32_t)id + 1;
        sl->off = m->off[id];
      }
      return;
    }
    i = (i + 1) & m->mask;
  }
}

void tk_strmap_put_all(tk_strmap *m, int32_t n, int replace) {
  /* Batched: hash and prefetch 32 slots, then insert them (random slots are the cost). */
  enum { B = 32 };
  uint32_t h[B];
  for (int32_t i0 = 0; i0 < n; i0 += B) {
    int32_t nb = n - i0 < B ? n - i0 : B;
    for (int32_t k = 0; k < nb; k++) {
      int32_t id = i0 + k;
      if (m->len[id] == UINT32_MAX) continue;
      h[k] = tk_hash(m->pool + m->off[id], m->len[id]);
      __builtin_prefetch(&m->slot[h[k] & m->mask], 1);
    }
    for (int32_t k = 0; k < nb; k++) {
      int32_t id = i0 + k;
      if (m->len[id] == UINT32_MAX) continue;
      uint32_t kl = m->len[id], i = h[k] & m->mask;
      const char *key = m->pool + m->off[id];
      for (;;) {
        tk_slot *sl = &m->slot[i];
        if (!sl->id1) {
          sl->hash = h[k];
          sl->id1 = (uint32_t)id + 1;
          sl->off = m->off[id];
          sl->len = kl;
          break;
        }
        if (sl->hash == h[k] && sl->len == kl && !memcmp(m->pool + sl->off, key, kl)) {
          if (replace) {
            sl->id1 = (uint32_t)id + 1;
            sl->off = m->off[id];
          }
          break;
        }
        i = (i + 1) & m->mask;
      }
    }
  }
}

int tk_pairmap_init(tk_pairmap *m, size_t n) {
  /* load factor up to 2/3: the table is probed on every merge, so size (cache misses) beats probe length */
  uint32_t cap = 16;
  while (cap < n + n / 2) cap <<= 1;
  m->e = calloc(cap, sizeof(tk_pair));
  m->mask = cap - 1;
  return m->e ? 0 : -1;
}

void tk_pairmap_free(tk_pairmap *m) {
  free(m->e);
  memset(m, 0, sizeof *m);
}

void tk_pairmap_put(tk_pairmap *m, uint32_t a, uint32_t b, uint32_t rank, uint32_t val) {
  uint64_t k = (((uint64_t)a << 32) | b) + 1;
  uint32_t i = tk_pair_slot(m, k);
  while (m->e[i].key && m->e[i].key != k) i = (i + 1) & m->mask;
  m->e[i].key = k;
  m->e[i].rank = rank;
  m->e[i].val = val;
}

int tk_buf_add(tk_buf *b, const void *p, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t nc = b->cap ? b->cap * 2 : 256;
    while (nc < b->len + n + 1) nc *= 2;
    char *q = realloc(b->p, nc);
    if (!q) return -1;
    b->p = q;
    b->cap = nc;
  }
  if (n) memcpy(b->p + b->len, p, n);
  b->len += n;
  b->p[b->len] = 0;
  return 0;
}

/* ---- UTF-8 ------------------------------------------------------------------------------------------ */
int tk_utf8_enc(uint32_t cp, char *o) { return ig_utf8_encode(cp, o); }

/* Length of the valid sequence at p, or -k where k >= 1 is the length of the maximal invalid prefix to
 * replace by one U+FFFD (Unicode's "maximal subpart" practice, as Rust and WHATWG decoders do). */
static int utf8_step(const unsigned char *p, size_t n) {
  unsigned c = p[0];
  if (c < 0x80) return 1;
  int need;
  unsigned lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) need = 1;
  else if (c == 0xE0) { need = 2; lo = 0xA0; }
  else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) need = 2;
  else if (c == 0xED) { need = 2; hi = 0x9F; }
  else if (c == 0xF0) { need = 3; lo = 0x90; }
  else if (c >= 0xF1 && c <= 0xF3) need = 3;
  else if (c == 0xF4) { need = 3; hi = 0x8F; }
  else return -1;
  for (int k = 1; k <= need; k++) {
    if ((size_t)k >= n) return -k;
    unsigned b = p[k];
    if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) return -k;
  }
  return need + 1;
}

int tk_utf8_lossy(tk_buf *out, const char *src, size_t n) {
  const unsigned char *p = (const unsigned char *)src;
  size_t i = 0, run = 0;
  while (i < n) {
    if (p[i] < 0x80) { i++; continue; }
    int k = utf8_step(p + i, n - i);
    if (k > 0) { i += (size_t)k; continue; }
    if (tk_buf_add(out, src + run, i - run) || tk_buf_add(out, "\xEF\xBF\xBD", 3)) return -1;
    i += (size_t)(-k);
    run = i;
  }
  return tk_buf_add(out, src + run, n - run);
}

size_t tk_utf8_count(const char *s, size_t n) {
  size_t c = 0;
  for (size_t i = 0; i < n; i++) c += ((unsigned char)s[i] & 0xC0) != 0x80;
  return c;
}

/* ---- GPT-2 byte-level map --------------------------------------------------------------------------- */
const uint16_t tk_byte2cp[256] = {
    256, 257, 258, 259, 260, 261, 262, 263, 264, 265, 266, 267, 268, 269, 270, 271,
    272, 273, 274, 275, 276, 277, 278, 279, 280, 281, 282, 283, 284, 285, 286, 287,
    288, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47,
    48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63,
    64, 65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76, 77, 78, 79,
    80, 81, 82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92, 93, 94, 95,
    96, 97, 98, 99, 100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111,
    112, 113, 114, 115, 116, 117, 118, 119, 120, 121, 122, 123, 124, 125, 126, 289,
    290, 291, 292, 293, 294, 295, 296, 297, 298, 299, 300, 301, 302, 303, 304, 305,
    306, 307, 308, 309, 310, 311, 312, 313, 314, 315, 316, 317, 318, 319, 320, 321,
    322, 161, 162, 163, 164, 165, 166, 167, 168, 169, 170, 171, 172, 323, 174, 175,
    176, 177, 178, 179, 180, 181, 182, 183, 184, 185, 186, 187, 188, 189, 190, 191,
    192, 193, 194, 195, 196, 197, 198, 199, 200, 201, 202, 203, 204, 205, 206, 207,
    208, 209, 210, 211, 212, 213, 214, 215, 216, 217, 218, 219, 220, 221, 222, 223,
    224, 225, 226, 227, 228, 229, 230, 231, 232, 233, 234, 235, 236, 237, 238, 239,
    240, 241, 242, 243, 244, 245, 246, 247, 248, 249, 250, 251, 252, 253, 254, 255,
};

/* Code points 256..323 stand for the bytes that are not printable as themselves, in byte order. */
static const uint8_t cp256_byte[68] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 127, 128, 129, 130, 131, 132, 133, 134, 135, 136, 137, 138, 139, 140, 141, 142, 143, 144, 145, 146, 147, 148, 149, 150, 151, 152, 153, 154, 155, 156, 157, 158, 159, 160, 173};

int tk_cp2byte(uint32_t cp) {
  if ((cp >= 33 && cp <= 126) || (cp >= 161 && cp <= 172) || (cp >= 174 && cp <= 255)) return (int)cp;
  if (cp >= 256 && cp < 256 + sizeof cp256_byte) return cp256_byte[cp - 256];
  return -1;
}

/* ---- regex ------------------------------------------------------------------------------------------ */
pcre2_code *tk_re_compile(const char *pat, size_t len, int literal, char *err, size_t errlen) {
  int ec;
  PCRE2_SIZE eo;
  uint32_t opts = PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK;
  if (literal) opts = (opts & ~(uint32_t)PCRE2_UCP) | PCRE2_LITERAL;
  pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, len, opts, &ec, &eo, NULL);
  if (!re) {
    PCRE2_UCHAR msg[160];
    pcre2_get_error_message(ec, msg, sizeof msg);
    if (err) snprintf(err, errlen, "regex /%.*s/ at %zu: %s", (int)(len > 60 ? 60 : len), pat, (size_t)eo, msg);
    return NULL;
  }
  pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* falls back to the interpreter when JIT is unavailable */
  return re;
}

int tk_re_each(tk_ctx *c, const pcre2_code *re, const char *s, size_t n,
               int (*fn)(void *arg, size_t start, size_t end), void *arg) {
  if (!c->md) {
    c->md = pcre2_match_data_create(4, NULL);
    if (!c->md) return -1;
  }
  size_t pos = 0;
  while (pos <= n) {
    int rc = pcre2_match(re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, c->md, c->mctx);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT && !c->jit) {
      /* Long runs under lookarounds can outgrow the default 32 KiB JIT stack: give this call a bigger one. */
      c->jit = pcre2_jit_stack_create(64 * 1024, 64 * 1024 * 1024, NULL);
      c->mctx = pcre2_match_context_create(NULL);
      if (!c->jit || !c->mctx) return -1;
      pcre2_jit_stack_assign(c->mctx, NULL, c->jit);
      continue;
    }
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      c->re_error = rc; /* e.g. PCRE2's match limit on a pathological input: not an allocation failure */
      return -1;
    }
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(c->md);
    size_t st = ov[0], en = ov[1];
    if (fn(arg, st, en)) return -1;
    if (en == st) {
      if (st >= n) break;
      pos = st + (size_t)tk_utf8_len((unsigned char)s[st]); /* empty match: step over one character */
    } else {
      pos = en;
    }
  }
  return 0;
}
