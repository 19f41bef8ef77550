/* tok/tok_pretok: pre-tokenizers, which cut normalized text into words: Split (regex or string, every
 * SplitDelimiterBehavior and invert), ByteLevel, Metaspace (prepend schemes), Whitespace, WhitespaceSplit,
 * BertPreTokenizer, Punctuation, Digits, CharDelimiterSplit and Sequence, as HF tokenizers defines them. */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tok/tok_int.h"

int tk_pieces_push(tk_pieces *p, tk_piece x) {
  if (p->n == p->cap) {
    size_t nc = p->cap ? p->cap * 2 : 64;
    tk_piece *q = realloc(p->v, nc * sizeof *q);
    if (!q) return -1;
    p->v = q;
    p->cap = nc;
  }
  p->v[p->n++] = x;
  return 0;
}

/* ---- splitting by matches, with HF's delimiter behaviours ------------------------------------------ */
typedef struct splitter {
  tk_ctx *c;
  const tk_piece *in;
  tk_pieces *out;
  int behavior;
  int invert;
  /* pending list of (start, end, is_match) built incrementally */
  size_t prev;      /* end of the last match */
  int have_last;    /* an emitted-but-extendable piece exists */
  uint32_t last_s, last_e;
  int prev_match;
  /* MergedWithNext needs one piece of lookahead: a match waiting for the next piece */
  int pend;
  uint32_t pend_s;
  int err;
} splitter;

static void emit_piece(splitter *sp, uint32_t s, uint32_t e) {
  if (e <= s) return;
  tk_piece x = *sp->in;
  x.off = sp->in->off + s;
  x.len = e - s;
  if (tk_pieces_push(sp->out, x)) sp->err = 1;
}

static void flush_last(splitter *sp) {
  if (sp->have_last) emit_piece(sp, sp->last_s, sp->last_e);
  sp->have_last = 0;
}

/* One element of the (offsets, is_match) list, in order. */
static void feed(splitter *sp, uint32_t s, uint32_t e, int is_match) {
  if (sp->invert) is_match = !is_match;
  switch (sp->behavior) {
  case TK_B_REMOVED:
    if (!is_match) emit_piece(sp, s, e);
    break;
  case TK_B_ISOLATED:
    emit_piece(sp, s, e);
    break;
  case TK_B_MERGED_PREV:
    if (is_match && !sp->prev_match && sp->have_last) {
      sp->last_e = e;
    } else {
      flush_last(sp);
      sp->have_last = 1;
      sp->last_s = s;
      sp->last_e = e;
    }
    break;
  case TK_B_CONTIGUOUS:
    if (is_match == sp->prev_match && sp->have_last) {
      sp->last_e = e;
    } else {
      flush_last(sp);
      sp->have_last = 1;
      sp->last_s = s;
      sp->last_e = e;
    }
    break;
  case TK_B_MERGED_NEXT:
    /* HF folds from the right: a match followed by a non-match merges into it. Left to right: a match
     * waits; the next element starts from the match's start when it is not itself a match. */
    if (sp->pend) {
      if (!is_match) {
        emit_piece(sp, sp->pend_s, e);
        sp->pend = 0;
        break;
      }
      emit_piece(sp, sp->pend_s, s);
      sp->pend = 0;
    }
    if (is_match) {
      sp->pend = 1;
      sp->pend_s = s;
    } else {
      emit_piece(sp, s, e);
    }
    break;
  }
  sp->prev_match = is_match;
}

static void feed_end(splitter *sp) {
  if (sp->behavior == TK_B_MERGED_NEXT && sp->pend) emit_piece(sp, sp->pend_s, sp->in->len);
  flush_last(sp);
}

static int on_match(void *arg, size_t s, size_t e) {
  splitter *sp = arg;
  if (s > sp->prev) feed(sp, (uint32_t)sp->prev, (uint32_t)s, 0);
  feed(sp, (uint32_t)s, (uint32_t)e, 1);
  sp->prev = e;
  return sp->err ? -1 : 0;
}

static void split_init(splitter *sp, tk_ctx *c, const tk_piece *in, tk_pieces *out, int behavior, int invert) {
  memset(sp, 0, sizeof *sp);
  sp->c = c;
  sp->in = in;
  sp->out = out;
  sp->behavior = behavior;
  sp->invert = invert;
}

static int split_finish(splitter *sp) {
  if (sp->prev < sp->in->len) feed(sp, (uint32_t)sp->prev, sp->in->len, 0);
  feed_end(sp);
  return sp->err ? -1 : 0;
}

static int split_regex(tk_ctx *c, const pcre2_code *re, const tk_piece *in, tk_pieces *out, int behavior, int invert) {
  splitter sp;
  split_init(&sp, c, in, out, behavior, invert);
  if (!in->len) return 0;
  if (tk_re_each(c, re, in->s + in->off, in->len, on_match, &sp)) return -1;
  return split_finish(&sp);
}

/* Splits on characters for which pred() holds: each such character is one match. */
static int split_chars(tk_ctx *c, const tk_piece *in, tk_pieces *out, int (*pred)(uint32_t, const tk_pretok *),
                       const tk_pretok *p, int behavior) {
  splitter sp;
  split_init(&sp, c, in, out, behavior, 0);
  const unsigned char *s = (const unsigned char *)in->s + in->off;
  for (uint32_t i = 0; i < in->len;) {
    uint32_t cp;
    int l = tk_utf8_dec(s + i, in->len - i, &cp);
    if (pred(cp, p) && on_match(&sp, i, i + (uint32_t)l)) return -1;
    i += (uint32_t)l;
  }
  return split_finish(&sp);
}

/* ---- character classes (Rust's char methods) -------------------------------------------------------- */
static int is_ws(uint32_t c, const tk_pretok *p) {
  (void)p;
  return (c >= 9 && c <= 13) || c == 32 || c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
         c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

static int is_punct(uint32_t c, const tk_pretok *p) {
  (void)p;
  if (c < 128) return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126);
  utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
  return k >= UTF8PROC_CATEGORY_PC && k <= UTF8PROC_CATEGORY_PO;
}

static int is_numeric(uint32_t c, const tk_pretok *p) {
  (void)p;
  if (c < 128) return c >= '0' && c <= '9';
  utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
  return k == UTF8PROC_CATEGORY_ND || k == UTF8PROC_CATEGORY_NL || k == UTF8PROC_CATEGORY_NO;
}

static int is_delim(uint32_t c, const tk_pretok *p) { return c == p->delim; }

/* ---- prepending (ByteLevel's prefix space, Metaspace) ----------------------------------------------- */
/* A copy of the piece with `pre` in front (aligned to the first character) and, when repl_from is non-zero,
 * each repl_from character replaced by repl. */
static int rebuild(tk_ctx *c, const tk_piece *in, const char *pre, size_t pre_len, uint32_t repl_from,
                   const char *repl, size_t repl_len, tk_piece *out) {
  size_t extra = 0;
  const char *src = in->s + in->off;
  if (repl_from)
    for (uint32_t i = 0; i < in->len; i++)
      if ((uint32_t)(unsigned char)src[i] == repl_from) extra += repl_len;
  size_t cap = pre_len + in->len + extra + 1;
  char *s = malloc(cap);
  /* without offsets the new buffer keeps no alignment: it maps to its original start + offset */
  uint32_t *a = c->want_offsets ? malloc(cap * 2 * sizeof(uint32_t)) : NULL;
  if (!s || (c->want_offsets && !a) || tk_ctx_adopt(c, s)) {
    free(s);
    free(a);
    return -1;
  }
  if (a && tk_ctx_adopt(c, a)) {
    free(a);
    return -1;
  }
  size_t o = 0;
  uint32_t fs, fe;
  tk_piece_orig(in, in->off, in->len ? (uint32_t)tk_utf8_len((unsigned char)src[0]) : 0, &fs, &fe);
  if (!a) {
    /* fast path: bytes only */
    memcpy(s, pre, pre_len);
    o = pre_len;
    for (uint32_t i = 0; i < in->len; i++) {
      if (repl_from && (unsigned char)src[i] == repl_from) {
        memcpy(s + o, repl, repl_len);
        o += repl_len;
      } else {
        s[o++] = src[i];
      }
    }
    s[o] = 0;
    out->s = s;
    out->a = NULL;
    out->base = fs;
    out->off = 0;
    out->len = (uint32_t)o;
    return 0;
  }
  for (size_t k = 0; k < pre_len; k++, o++) {
    s[o] = pre[k];
    a[2 * o] = fs;
    a[2 * o + 1] = fe;
  }
  for (uint32_t i = 0; i < in->len;) {
    uint32_t cl = (uint32_t)tk_utf8_len((unsigned char)src[i]), os, oe;
    tk_piece_orig(in, in->off + i, cl, &os, &oe);
    const char *w = src + i;
    size_t wl = cl;
    if (repl_from && cl == 1 && (unsigned char)src[i] == repl_from) {
      w = repl;
      wl = repl_len;
    }
    for (size_t k = 0; k < wl; k++, o++) {
      s[o] = w[k];
      a[2 * o] = os;
      a[2 * o + 1] = oe;
    }
    i += cl;
  }
  s[o] = 0;
  out->s = s;
  out->a = a;
  out->base = 0;
  out->off = 0;
  out->len = (uint32_t)o;
  return 0;
}

/* ---- the pre-tokenizers ----------------------------------------------------------------------------- */
static int pretok_one(tk_ctx *c, const tk_pretok *p, const tk_piece *in, tk_pieces *out) {
  switch (p->type) {
  case TK_P_SPLIT:
    return split_regex(c, p->re, in, out, p->behavior, p->invert);
  case TK_P_BYTELEVEL: {
    tk_piece x = *in;
    if (p->add_prefix_space && !(in->len && in->s[in->off] == ' ')) {
      if (rebuild(c, in, " ", 1, 0, NULL, 0, &x)) return -1;
    }
    /* Bytes stay raw: the model's vocabulary was converted from the byte-level alphabet at load. */
    if (p->re) return split_regex(c, p->re, &x, out, TK_B_ISOLATED, 0);
    return x.len ? tk_pieces_push(out, x) : 0;
  }
  case TK_P_METASPACE: {
    tk_piece x;
    int pre = 0;
    const char *src = in->s + in->off;
    int starts = in->len >= (uint32_t)p->repl_len && !memcmp(src, p->repl_s, (size_t)p->repl_len);
    int starts_space = in->len && src[0] == ' ' && p->repl != ' ';
    if (p->prepend_scheme == TK_PREPEND_ALWAYS) pre = !starts && !starts_space;
    else if (p->prepend_scheme == TK_PREPEND_FIRST) {
      uint32_t os, oe;
      tk_piece_orig(in, in->off, 0, &os, &oe);
      pre = !starts && !starts_space && os == 0;
    }
    if (rebuild(c, in, p->repl_s, pre ? (size_t)p->repl_len : 0, ' ', p->repl_s, (size_t)p->repl_len, &x)) return -1;
    if (!p->split) return x.len ? tk_pieces_push(out, x) : 0;
    splitter sp;
    split_init(&sp, c, &x, out, TK_B_MERGED_NEXT, 0);
    const char *xs = x.s + x.off;
    for (uint32_t i = 0; i + (uint32_t)p->repl_len <= x.len;) {
      if (!memcmp(xs + i, p->repl_s, (size_t)p->repl_len)) {
        if (on_match(&sp, i, i + (uint32_t)p->repl_len)) return -1;
        i += (uint32_t)p->repl_len;
      } else {
        i += (uint32_t)tk_utf8_len((unsigned char)xs[i]);
      }
    }
    return split_finish(&sp);
  }
  case TK_P_WHITESPACE:
    return split_regex(c, p->re, in, out, TK_B_REMOVED, 1); /* HF: the matches are the words */
  case TK_P_WSSPLIT:
    return split_chars(c, in, out, is_ws, p, TK_B_REMOVED);
  case TK_P_BERT: {
    tk_pieces tmp = {0};
    int rc = split_chars(c, in, &tmp, is_ws, p, TK_B_REMOVED);
    for (size_t i = 0; !rc && i < tmp.n; i++) rc = split_chars(c, &tmp.v[i], out, is_punct, p, TK_B_ISOLATED);
    free(tmp.v);
    return rc;
  }
  case TK_P_PUNCT:
    return split_chars(c, in, out, is_punct, p, p->behavior);
  case TK_P_DIGITS:
    return split_chars(c, in, out, is_numeric, p, p->individual_digits ? TK_B_ISOLATED : TK_B_CONTIGUOUS);
  case TK_P_CHARDELIM:
    return split_chars(c, in, out, is_delim, p, TK_B_REMOVED);
  default:
    return in->len ? tk_pieces_push(out, *in) : 0;
  }
}

int tk_pretokenize(tk_ctx *c, const tk_pretok *p, tk_pieces *in, tk_pieces *out) {
  out->n = 0;
  if (p->type != TK_P_SEQ) {
    for (size_t i = 0; i < in->n; i++)
      if (pretok_one(c, p, &in->v[i], out)) return -1;
    return 0;
  }
  /* Sequence: each step reads `in` and writes `out`, then the lists swap; both stay owned by the caller. */
  for (int k = 0; k < p->nsubs; k++) {
    out->n = 0;
    for (size_t i = 0; i < in->n; i++)
      if (pretok_one(c, &p->subs[k], &in->v[i], out)) return -1;
    tk_pieces t = *in;
    *in = *out;
    *out = t;
  }
  tk_pieces t = *in;
  *in = *out;
  *out = t;
  return 0;
}
