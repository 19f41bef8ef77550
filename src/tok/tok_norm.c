/* tok/tok_norm: normalizers (NFC/NFD/NFKC/NFKD through utf8proc, Lowercase, Strip, StripAccents, Replace,
 * Prepend, BertNormalizer, Nmt, Sequence). Each writes a new buffer in which every byte remembers the
 * [start, stop) range of the input character it came from, so tokens can report input byte offsets. */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tok/tok_int.h"

/* A buffer being built: bytes plus 2 alignment words per byte. */
typedef struct nb {
  char *s;
  uint32_t *a;
  size_t len, cap;
  int oom;
  int noalign;    /* offsets not wanted: no alignment kept, the piece maps to base + offset */
  uint32_t base;  /* original start of the text being normalized (used when noalign) */
} nb;

/* A builder for normalizing `in`: alignment only when the caller wants offsets. */
static nb nb_for(const tk_ctx *c, const tk_piece *in) {
  nb b;
  memset(&b, 0, sizeof b);
  b.noalign = !c->want_offsets;
  uint32_t e;
  tk_piece_orig(in, in->off, 0, &b.base, &e);
  return b;
}

static void nb_emit(nb *b, const char *p, size_t n, uint32_t s, uint32_t e) {
  if (b->oom) return;
  if (b->len + n > b->cap) {
    size_t nc = b->cap ? b->cap * 2 : 64;
    while (nc < b->len + n) nc *= 2;
    char *q = realloc(b->s, nc + 1);
    if (q) b->s = q;
    uint32_t *qa = q && !b->noalign ? realloc(b->a, nc * 2 * sizeof(uint32_t)) : NULL;
    if (!q || (!b->noalign && !qa)) {
      b->oom = 1;
      return;
    }
    if (qa) b->a = qa;
    b->cap = nc;
  }
  memcpy(b->s + b->len, p, n);
  if (b->noalign) {
    b->len += n;
    return;
  }
  for (size_t i = 0; i < n; i++) {
    b->a[2 * (b->len + i)] = s;
    b->a[2 * (b->len + i) + 1] = e;
  }
  b->len += n;
}

static void nb_emit_cp(nb *b, uint32_t cp, uint32_t s, uint32_t e) {
  char tmp[4];
  nb_emit(b, tmp, (size_t)tk_utf8_enc(cp, tmp), s, e);
}

/* Hands the built buffer to the context and describes it as a piece. */
static int nb_finish(tk_ctx *c, nb *b, tk_piece *out) {
  if (b->oom) {
    free(b->s);
    free(b->a);
    return -1;
  }
  if (!b->s) {
    b->s = malloc(1);
    if (!b->s) return -1;
  }
  b->s[b->len] = 0;
  if (tk_ctx_adopt(c, b->s)) {
    free(b->s);
    free(b->a);
    return -1;
  }
  if (b->a && tk_ctx_adopt(c, b->a)) {
    free(b->a);
    return -1;
  }
  out->s = b->s;
  out->a = b->a;
  out->base = b->noalign ? b->base : 0;
  out->off = 0;
  out->len = (uint32_t)b->len;
  return 0;
}

/* Iterates the characters of a piece: cp, bytes, original range. */
#define FOR_CHARS(in, i, cp, cl, os, oe)                                                                             \
  for (uint32_t i = 0, cl = 0; i < (in)->len; i += cl)                                                                \
    for (uint32_t cp = 0, os = 0, oe = 0, _once = 1;                                                                  \
         _once && ((cl = (uint32_t)tk_utf8_dec((const unsigned char *)(in)->s + (in)->off + i, (in)->len - i, &cp)),   \
                   tk_piece_orig((in), (in)->off + i, cl, &os, &oe), 1);                                              \
         _once = 0)

static int is_ws(uint32_t c) {
  /* char::is_whitespace: Unicode White_Space */
  return (c >= 9 && c <= 13) || c == 32 || c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
         c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

static int is_mark(uint32_t c) {
  utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
  return k == UTF8PROC_CATEGORY_MN || k == UTF8PROC_CATEGORY_MC || k == UTF8PROC_CATEGORY_ME;
}

/* Lowercase as Rust's char::to_lowercase (one special multi-char case). */
static void emit_lower(nb *b, uint32_t cp, uint32_t s, uint32_t e) {
  if (cp == 0x130) {
    nb_emit(b, "i\xCC\x87", 3, s, e);
    return;
  }
  nb_emit_cp(b, (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp), s, e);
}

/* Characters that are NFC and never compose with a neighbour: Latin below U+0300 (its combining partners
 * are marks), Hangul syllables (composed algorithmically only with jamo, which are excluded), and any
 * character of ccc 0 without a decomposition that appears in no composition pair. A string made of them
 * only is NFC: the quick check that spares most text the full algorithm. */
static int nfc_stable(uint32_t cp) {
  if (cp < 0x300 || (cp >= 0xAC00 && cp <= 0xD7A3)) return 1;
  if (cp >= 0x1100 && cp <= 0x11FF) return 0;
  const utf8proc_property_t *p = utf8proc_get_property((utf8proc_int32_t)cp);
  return p->combining_class == 0 && p->decomp_seqindex == UINT16_MAX && p->comb_index == UINT16_MAX &&
         p->category != UTF8PROC_CATEGORY_CN;
}

static int unicode_norm(tk_ctx *c, int type, const tk_piece *in, tk_piece *out) {
  const char *src = in->s + in->off;
  size_t i = 0;
  while (i < in->len && (unsigned char)src[i] < 0x80) i++;
  if (i == in->len) {
    *out = *in; /* ASCII is invariant under every normalization form */
    return 0;
  }
  if (type == TK_N_NFC) {
    while (i < in->len) {
      uint32_t cp;
      int l = tk_utf8_dec((const unsigned char *)src + i, in->len - i, &cp);
      if (!nfc_stable(cp)) break;
      i += (size_t)l;
    }
    if (i == in->len) {
      *out = *in;
      return 0;
    }
  }
  int flags = UTF8PROC_STABLE;
  if (type == TK_N_NFC || type == TK_N_NFKC || type == TK_N_PRECOMPILED) flags |= UTF8PROC_COMPOSE;
  else flags |= UTF8PROC_DECOMPOSE;
  if (type == TK_N_NFKC || type == TK_N_NFKD || type == TK_N_PRECOMPILED) flags |= UTF8PROC_COMPAT;
  utf8proc_uint8_t *res = NULL;
  utf8proc_ssize_t rl = utf8proc_map((const utf8proc_uint8_t *)src, (utf8proc_ssize_t)in->len, &res, (utf8proc_option_t)flags);
  if (rl < 0) {
    *out = *in;
    return 0;
  }
  if ((size_t)rl == in->len && !memcmp(res, src, in->len)) {
    free(res);
    *out = *in;
    return 0;
  }
  /* Alignment: output characters map to input characters in proportion (exact when counts match). */
  size_t nin = tk_utf8_count(src, in->len), nout = tk_utf8_count((char *)res, (size_t)rl);
  uint32_t *starts = malloc((nin + 1) * sizeof(uint32_t));
  if (!starts) {
    free(res);
    return -1;
  }
  size_t k = 0;
  for (uint32_t p = 0; p < in->len; p += (uint32_t)tk_utf8_len((unsigned char)src[p])) starts[k++] = p;
  starts[k] = in->len;
  nb b = nb_for(c, in);
  size_t oi = 0;
  for (size_t p = 0; p < (size_t)rl; oi++) {
    int l = tk_utf8_len(res[p]);
    size_t ci = nout ? oi * nin / nout : 0;
    if (ci >= nin) ci = nin - 1;
    uint32_t os, oe;
    tk_piece_orig(in, in->off + starts[ci], starts[ci + 1] - starts[ci], &os, &oe);
    nb_emit(&b, (char *)res + p, (size_t)l, os, oe);
    p += (size_t)l;
  }
  free(starts);
  free(res);
  return nb_finish(c, &b, out);
}

typedef struct repl_arg {
  size_t *v;
  size_t n, cap;
} repl_arg;

static int collect(void *arg, size_t s, size_t e) {
  repl_arg *r = arg;
  if (r->n + 2 > r->cap) {
    size_t nc = r->cap ? r->cap * 2 : 32;
    size_t *q = realloc(r->v, nc * sizeof *q);
    if (!q) return -1;
    r->v = q;
    r->cap = nc;
  }
  r->v[r->n++] = s;
  r->v[r->n++] = e;
  return 0;
}

static int find_literal(const char *s, size_t n, const char *pat, size_t pl, repl_arg *r) {
  if (!pl) return 0;
  for (size_t i = 0; i + pl <= n;) {
    const char *q = memmem(s + i, n - i, pat, pl);
    if (!q) break;
    size_t st = (size_t)(q - s);
    if (collect(r, st, st + pl)) return -1;
    i = st + pl;
  }
  return 0;
}

static int replace(tk_ctx *c, const tk_norm *n, const tk_piece *in, tk_piece *out) {
  repl_arg r = {0};
  const char *src = in->s + in->off;
  int rc = n->re ? tk_re_each(c, n->re, src, in->len, collect, &r) : find_literal(src, in->len, n->pat, n->pat_len, &r);
  if (rc) {
    free(r.v);
    return -1;
  }
  if (!r.n) {
    free(r.v);
    *out = *in;
    return 0;
  }
  nb b = nb_for(c, in);
  size_t pos = 0;
  for (size_t k = 0; k < r.n; k += 2) {
    size_t ms = r.v[k], me = r.v[k + 1];
    for (size_t i = pos; i < ms;) {
      uint32_t cl = (uint32_t)tk_utf8_len((unsigned char)src[i]), os, oe;
      tk_piece_orig(in, in->off + (uint32_t)i, cl, &os, &oe);
      nb_emit(&b, src + i, cl, os, oe);
      i += cl;
    }
    uint32_t os, oe;
    tk_piece_orig(in, in->off + (uint32_t)ms, (uint32_t)(me - ms), &os, &oe);
    nb_emit(&b, n->content, n->content_len, os, oe);
    pos = me;
  }
  for (size_t i = pos; i < in->len;) {
    uint32_t cl = (uint32_t)tk_utf8_len((unsigned char)src[i]), os, oe;
    tk_piece_orig(in, in->off + (uint32_t)i, cl, &os, &oe);
    nb_emit(&b, src + i, cl, os, oe);
    i += cl;
  }
  free(r.v);
  return nb_finish(c, &b, out);
}

static int is_cjk(uint32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
         (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

static int is_control(uint32_t c) {
  if (c == '\t' || c == '\n' || c == '\r') return 0;
  utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
  return k == UTF8PROC_CATEGORY_CC || k == UTF8PROC_CATEGORY_CF || k == UTF8PROC_CATEGORY_CN ||
         k == UTF8PROC_CATEGORY_CO;
}

static int normalize_one(tk_ctx *c, const tk_norm *n, const tk_piece *in, tk_piece *out) {
  nb b = nb_for(c, in);
  switch (n->type) {
  case TK_N_SEQ: {
    tk_piece cur = *in;
    for (int i = 0; i < n->nsubs; i++) {
      tk_piece nx;
      if (normalize_one(c, &n->subs[i], &cur, &nx)) return -1;
      cur = nx;
    }
    *out = cur;
    return 0;
  }
  case TK_N_NFC: case TK_N_NFD: case TK_N_NFKC: case TK_N_NFKD: case TK_N_PRECOMPILED:
    return unicode_norm(c, n->type, in, out);
  case TK_N_REPLACE:
    return replace(c, n, in, out);
  case TK_N_PREPEND: {
    if (!in->len) {
      *out = *in;
      return 0;
    }
    uint32_t os, oe;
    uint32_t cl = (uint32_t)tk_utf8_len((unsigned char)in->s[in->off]);
    tk_piece_orig(in, in->off, cl, &os, &oe);
    nb_emit(&b, n->content, n->content_len, os, oe);
    FOR_CHARS(in, i, cp, cl2, s, e) { nb_emit(&b, in->s + in->off + i, cl2, s, e); (void)cp; }
    return nb_finish(c, &b, out);
  }
  case TK_N_STRIP: {
    uint32_t st = 0, en = in->len;
    const unsigned char *p = (const unsigned char *)in->s + in->off;
    if (n->left)
      while (st < en) {
        uint32_t cp;
        int l = tk_utf8_dec(p + st, en - st, &cp);
        if (!is_ws(cp)) break;
        st += (uint32_t)l;
      }
    if (n->right)
      while (en > st) {
        uint32_t b0 = en - 1;
        while (b0 > st && (p[b0] & 0xC0) == 0x80) b0--;
        uint32_t cp;
        tk_utf8_dec(p + b0, en - b0, &cp);
        if (!is_ws(cp)) break;
        en = b0;
      }
    *out = *in;
    out->off += st;
    out->len = en - st;
    return 0;
  }
  case TK_N_LOWER:
    FOR_CHARS(in, i, cp, cl, s, e) { emit_lower(&b, cp, s, e); }
    return nb_finish(c, &b, out);
  case TK_N_STRIP_ACCENTS:
    FOR_CHARS(in, i, cp, cl, s, e) {
      if (!is_mark(cp)) nb_emit(&b, in->s + in->off + i, cl, s, e);
    }
    return nb_finish(c, &b, out);
  case TK_N_NMT:
    FOR_CHARS(in, i, cp, cl, s, e) {
      if ((cp >= 1 && cp <= 8) || cp == 0xB || (cp >= 0xE && cp <= 0x1F) || cp == 0x7F || cp == 0x8F || cp == 0x9F) continue;
      if (cp == 9 || cp == 10 || cp == 0xC || cp == 13 || cp == 0x1680 || (cp >= 0x200B && cp <= 0x200F) ||
          cp == 0x2028 || cp == 0x2029 || cp == 0x2581 || cp == 0xFEFF || cp == 0xFFFD)
        nb_emit(&b, " ", 1, s, e);
      else
        nb_emit(&b, in->s + in->off + i, cl, s, e);
    }
    return nb_finish(c, &b, out);
  case TK_N_BERT: {
    tk_piece cur = *in;
    if (n->clean_text || n->chinese) {
      FOR_CHARS(in, i, cp, cl, s, e) {
        if (n->clean_text && (cp == 0 || cp == 0xFFFD || is_control(cp))) continue;
        if (n->clean_text && is_ws(cp)) { nb_emit(&b, " ", 1, s, e); continue; }
        if (n->chinese && is_cjk(cp)) {
          nb_emit(&b, " ", 1, s, e);
          nb_emit(&b, in->s + in->off + i, cl, s, e);
          nb_emit(&b, " ", 1, s, e);
          continue;
        }
        nb_emit(&b, in->s + in->off + i, cl, s, e);
      }
      if (nb_finish(c, &b, &cur)) return -1;
      b = nb_for(c, &cur);
    }
    int strip = n->strip_accents < 0 ? n->lowercase : n->strip_accents;
    if (strip) {
      tk_piece d;
      if (unicode_norm(c, TK_N_NFD, &cur, &d)) return -1;
      FOR_CHARS(&d, i, cp, cl, s, e) {
        if (utf8proc_category((utf8proc_int32_t)cp) != UTF8PROC_CATEGORY_MN) nb_emit(&b, d.s + d.off + i, cl, s, e);
      }
      if (nb_finish(c, &b, &cur)) return -1;
      b = nb_for(c, &cur);
    }
    if (n->lowercase) {
      FOR_CHARS(&cur, i, cp, cl, s, e) { emit_lower(&b, cp, s, e); }
      if (nb_finish(c, &b, &cur)) return -1;
    }
    *out = cur;
    return 0;
  }
  default:
    *out = *in;
    return 0;
  }
}

int tk_normalize(tk_ctx *c, const tk_norm *n, const tk_piece *in, tk_piece *out) {
  return normalize_one(c, n, in, out);
}

char *tk_normalize_str(const tk_norm *n, const char *s, size_t len, size_t *out_len) {
  tk_ctx c;
  memset(&c, 0, sizeof c);
  tk_piece in = {s, NULL, 0, 0, (uint32_t)len}, out;
  char *res = NULL;
  if (!normalize_one(&c, n, &in, &out)) {
    res = malloc(out.len + 1);
    if (res) {
      memcpy(res, out.s + out.off, out.len);
      res[out.len] = 0;
      *out_len = out.len;
    }
  }
  tk_ctx_release(&c);
  return res;
}
