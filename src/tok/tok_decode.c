/* tok/tok_decode: ids -> text through the decoder chain (ByteLevel, ByteFallback, Fuse, Strip, Replace,
 * Metaspace, WordPiece, BPEDecoder, Sequence) exactly as HF's Tokenizer::decode, the incremental
 * detokenizer that streams it (TGI's prefix/read offsets), and the vocabulary and config accessors. */
#include <stdlib.h>
#include <string.h>

#include "tok/tok_int.h"

/* A list of token strings being decoded; raw[i]: bytes already decoded from the byte-level alphabet. */
typedef struct tokent {
  size_t off, len;
  uint8_t raw;
} tokent;
typedef struct toks {
  tk_buf b;
  tokent *v;
  size_t n, cap;
} toks;

/* Sizes a fresh list for about n tokens of nbytes bytes: one allocation each for the list and the bytes. */
static int toks_reserve(toks *t, size_t n, size_t nbytes) {
  t->v = malloc((n ? n : 1) * sizeof *t->v);
  t->b.p = malloc(nbytes + 16);
  if (!t->v || !t->b.p) return -1;
  t->cap = n ? n : 1;
  t->b.cap = nbytes + 16;
  t->b.p[0] = 0;
  return 0;
}

static int toks_add(toks *t, const char *s, size_t n, int raw) {
  if (t->n == t->cap) {
    size_t nc = t->cap ? t->cap * 2 : 32;
    tokent *v = realloc(t->v, nc * sizeof *v);
    if (!v) return -1;
    t->v = v;
    t->cap = nc;
  }
  t->v[t->n].off = t->b.len;
  t->v[t->n].len = n;
  t->v[t->n].raw = (uint8_t)raw;
  t->n++;
  return tk_buf_add(&t->b, s, n);
}

/* Appends to the last token (used to build a token from parts). */
static int toks_extend(toks *t, const char *s, size_t n) {
  t->v[t->n - 1].len += n;
  return tk_buf_add(&t->b, s, n);
}

static void toks_free(toks *t) {
  free(t->b.p);
  free(t->v);
  memset(t, 0, sizeof *t);
}

#define TOK(t, i) ((t)->b.p + (t)->v[i].off)
#define TLEN(t, i) ((t)->v[i].len)
#define TRAW(t, i) ((t)->v[i].raw)

/* ---- decoders --------------------------------------------------------------------------------------- */
/* raw: the bytes as they are (ig_tok_raw_piece); otherwise invalid UTF-8 becomes U+FFFD, as HF decodes */
static int dec_bytelevel(const toks *in, toks *out, int raw) {
  tk_buf bytes = {0};
  int rc = 0;
  for (size_t i = 0; i < in->n && !rc; i++) {
    const char *s = TOK(in, i);
    size_t n = TLEN(in, i);
    if (TRAW(in, i)) {
      rc = tk_buf_add(&bytes, s, n);
      continue;
    }
    /* HF: map every char back to its byte; a token with a char outside the map keeps its own bytes. */
    size_t mark = bytes.len;
    int ok = 1;
    for (size_t k = 0; k < n && ok && !rc;) {
      uint32_t cp;
      k += (size_t)tk_utf8_dec((const unsigned char *)s + k, n - k, &cp);
      int b = tk_cp2byte(cp);
      if (b < 0) ok = 0;
      else {
        char ch = (char)b;
        rc = tk_buf_add(&bytes, &ch, 1);
      }
    }
    if (!ok && !rc) {
      bytes.len = mark;
      rc = tk_buf_add(&bytes, s, n);
    }
  }
  tk_buf fixed = {0};
  if (raw) rc = rc ? rc : toks_add(out, bytes.p ? bytes.p : "", bytes.len, 1);
  else {
    if (!rc) rc = tk_utf8_lossy(&fixed, bytes.p ? bytes.p : "", bytes.len);
    if (!rc) rc = toks_add(out, fixed.p ? fixed.p : "", fixed.len, 1);
  }
  free(bytes.p);
  free(fixed.p);
  return rc;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static int flush_bytes(tk_buf *pend, toks *out, int raw) {
  if (!pend->len) return 0;
  int rc = 0;
  if (raw || ig_utf8_valid(pend->p, pend->len)) rc = toks_add(out, pend->p, pend->len, 0);
  else
    for (size_t k = 0; k < pend->len && !rc; k++) rc = toks_add(out, "\xEF\xBF\xBD", 3, 0);
  pend->len = 0;
  return rc;
}

static int dec_bytefallback(const toks *in, toks *out, int raw) {
  tk_buf pend = {0};
  int rc = 0;
  for (size_t i = 0; i < in->n && !rc; i++) {
    const char *s = TOK(in, i);
    size_t n = TLEN(in, i);
    if (n == 6 && !memcmp(s, "<0x", 3) && s[5] == '>' && hexval(s[3]) >= 0 && hexval(s[4]) >= 0) {
      char b = (char)(hexval(s[3]) * 16 + hexval(s[4]));
      rc = tk_buf_add(&pend, &b, 1);
      continue;
    }
    rc = flush_bytes(&pend, out, raw);
    if (!rc) rc = toks_add(out, s, n, TRAW(in, i));
  }
  if (!rc) rc = flush_bytes(&pend, out, raw);
  free(pend.p);
  return rc;
}

static int dec_fuse(const toks *in, toks *out) {
  if (toks_add(out, "", 0, 0)) return -1;
  for (size_t i = 0; i < in->n; i++)
    if (toks_extend(out, TOK(in, i), TLEN(in, i))) return -1;
  return 0;
}

static int dec_strip(const tk_dec *d, const toks *in, toks *out) {
  size_t cl = d->content_len;
  for (size_t i = 0; i < in->n; i++) {
    const char *s = TOK(in, i);
    size_t a = 0, b = TLEN(in, i);
    for (int k = 0; k < d->start && b - a >= cl && cl && !memcmp(s + a, d->content, cl); k++) a += cl;
    for (int k = 0; k < d->stop && b - a >= cl && cl && !memcmp(s + b - cl, d->content, cl); k++) b -= cl;
    if (toks_add(out, s + a, b - a, TRAW(in, i))) return -1;
  }
  return 0;
}

typedef struct rep_ctx {
  toks *out;
  const char *s;
  size_t pos;
  const tk_dec *d;
} rep_ctx;

static int rep_match(void *arg, size_t st, size_t en) {
  rep_ctx *r = arg;
  if (toks_extend(r->out, r->s + r->pos, st - r->pos) || toks_extend(r->out, r->d->content, r->d->content_len)) return -1;
  r->pos = en;
  return 0;
}

static int dec_replace(const tk_dec *d, const toks *in, toks *out) {
  tk_ctx c;
  memset(&c, 0, sizeof c);
  int rc = 0;
  for (size_t i = 0; i < in->n && !rc; i++) {
    const char *s = TOK(in, i);
    size_t n = TLEN(in, i);
    rep_ctx r = {out, s, 0, d};
    if ((rc = toks_add(out, "", 0, TRAW(in, i)))) break;
    if (d->re) {
      rc = tk_re_each(&c, d->re, s, n, rep_match, &r);
    } else if (d->pat_len) {
      for (size_t k = 0; k + d->pat_len <= n && !rc;) {
        const char *q = memmem(s + k, n - k, d->pat, d->pat_len);
        if (!q) break;
        size_t st = (size_t)(q - s);
        rc = rep_match(&r, st, st + d->pat_len);
        k = st + d->pat_len;
      }
    }
    if (!rc) rc = toks_extend(out, s + r.pos, n - r.pos);
  }
  tk_ctx_release(&c);
  return rc;
}

static int dec_metaspace(const tk_dec *d, const toks *in, toks *out) {
  char rs[4];
  int rl = tk_utf8_enc(d->repl, rs);
  for (size_t i = 0; i < in->n; i++) {
    const char *s = TOK(in, i);
    size_t n = TLEN(in, i);
    if (toks_add(out, "", 0, TRAW(in, i))) return -1;
    size_t run = 0;
    for (size_t k = 0; k + (size_t)rl <= n;) {
      if (!memcmp(s + k, rs, (size_t)rl)) {
        if (toks_extend(out, s + run, k - run)) return -1;
        if (!(i == 0 && d->prepend_scheme != TK_PREPEND_NEVER) && toks_extend(out, " ", 1)) return -1;
        k += (size_t)rl;
        run = k;
      } else {
        k += (size_t)tk_utf8_len((unsigned char)s[k]);
      }
    }
    if (toks_extend(out, s + run, n - run)) return -1;
  }
  return 0;
}

static int cleanup_append(toks *out, const char *s, size_t n) {
  static const char *from[] = {" .", " ?", " !", " ,", " ' ", " n't", " 'm", " do not", " 's", " 've", " 're"};
  static const char *to[] = {".", "?", "!", ",", "'", "n't", "'m", " don't", "'s", "'ve", "'re"};
  /* Apply the replacements in HF's order, each over the whole string. */
  tk_buf a = {0}, b = {0};
  if (tk_buf_add(&a, s, n)) return -1;
  for (size_t r = 0; r < sizeof from / sizeof from[0]; r++) {
    size_t fl = strlen(from[r]), tl = strlen(to[r]);
    b.len = 0;
    if (tk_buf_add(&b, "", 0)) goto oom;
    size_t k = 0;
    while (k < a.len) {
      const char *q = a.len - k >= fl ? memmem(a.p + k, a.len - k, from[r], fl) : NULL;
      if (!q) break;
      size_t st = (size_t)(q - a.p);
      if (tk_buf_add(&b, a.p + k, st - k) || tk_buf_add(&b, to[r], tl)) goto oom;
      k = st + fl;
    }
    if (tk_buf_add(&b, a.p + k, a.len - k)) goto oom;
    tk_buf t = a;
    a = b;
    b = t;
  }
  int rc = toks_extend(out, a.p, a.len);
  free(a.p);
  free(b.p);
  return rc;
oom:
  free(a.p);
  free(b.p);
  return -1;
}

static int dec_wordpiece(const tk_dec *d, const toks *in, toks *out) {
  size_t pl = strlen(d->prefix);
  tk_buf tmp = {0};
  int rc = 0;
  for (size_t i = 0; i < in->n && !rc; i++) {
    const char *s = TOK(in, i);
    size_t n = TLEN(in, i);
    tmp.len = 0;
    if (i != 0) {
      if (n >= pl && !memcmp(s, d->prefix, pl)) s += pl, n -= pl;
      else if (tk_buf_add(&tmp, " ", 1)) rc = -1;
    }
    /* HF cleans each token up after the space went in front of it */
    if (!rc && tk_buf_add(&tmp, s, n)) rc = -1;
    if (!rc) rc = toks_add(out, "", 0, TRAW(in, i));
    if (!rc) rc = d->cleanup ? cleanup_append(out, tmp.p, tmp.len) : toks_extend(out, tmp.p, tmp.len);
  }
  free(tmp.p);
  return rc;
}

static int dec_bpe(const tk_dec *d, const toks *in, toks *out) {
  size_t sl = strlen(d->prefix);
  for (size_t i = 0; i < in->n; i++) {
    const char *s = TOK(in, i);
    size_t n = TLEN(in, i), run = 0;
    if (toks_add(out, "", 0, TRAW(in, i))) return -1;
    for (size_t k = 0; sl && k + sl <= n;) {
      if (!memcmp(s + k, d->prefix, sl)) {
        if (toks_extend(out, s + run, k - run) || (i + 1 != in->n && toks_extend(out, " ", 1))) return -1;
        k += sl;
        run = k;
      } else {
        k++;
      }
    }
    if (toks_extend(out, s + run, n - run)) return -1;
  }
  return 0;
}

static int run_decoder(const tk_dec *d, toks *cur, int raw) {
  if (d->type == TK_D_SEQ) {
    for (int i = 0; i < d->nsubs; i++)
      if (run_decoder(&d->subs[i], cur, raw)) return -1;
    return 0;
  }
  toks out = {0};
  int rc;
  if (toks_reserve(&out, cur->n + 1, cur->b.len + cur->n + 8)) {
    toks_free(&out);
    return -1;
  }
  switch (d->type) {
  case TK_D_BYTELEVEL: rc = dec_bytelevel(cur, &out, raw); break;
  case TK_D_BYTEFALLBACK: rc = dec_bytefallback(cur, &out, raw); break;
  case TK_D_FUSE: rc = dec_fuse(cur, &out); break;
  case TK_D_STRIP: rc = dec_strip(d, cur, &out); break;
  case TK_D_REPLACE: rc = dec_replace(d, cur, &out); break;
  case TK_D_METASPACE: rc = dec_metaspace(d, cur, &out); break;
  case TK_D_WORDPIECE: rc = dec_wordpiece(d, cur, &out); break;
  case TK_D_BPE: rc = dec_bpe(d, cur, &out); break;
  default: return 0;
  }
  if (rc) {
    toks_free(&out);
    return -1;
  }
  toks_free(cur);
  *cur = out;
  return 0;
}

/* Is the first decoding step ByteLevel (so raw model bytes may enter it directly)? */
static int starts_bytelevel(const tk_dec *d) {
  while (d && d->type == TK_D_SEQ) d = d->nsubs ? &d->subs[0] : NULL;
  return d && d->type == TK_D_BYTELEVEL;
}

static int decode_tokens(const ig_tok *t, const int32_t *ids, size_t n, int skip_special, int raw, ig_str *out) {
  toks cur = {0};
  if (toks_reserve(&cur, n + 1, n * 8 + 16)) {
    toks_free(&cur);
    return IG_TOK_ERR_NOMEM;
  }
  int raw_ok = t->model.raw && starts_bytelevel(t->dec);
  int rc = 0;
  for (size_t i = 0; i < n && !rc; i++) {
    int32_t id = ids[i];
    if (id < 0 || id >= t->n_ids) continue;
    if (t->alen[id] != UINT32_MAX) {
      if (skip_special && (t->flags[id] & TK_FLAG_SPECIAL)) continue;
      rc = toks_add(&cur, t->apool.p + t->aoff[id], t->alen[id], 0);
    } else if (id < t->model.n && raw_ok && t->model.klen[id] != UINT32_MAX) {
      rc = toks_add(&cur, t->model.kpool + t->model.koff[id], t->model.klen[id], 1);
    } else if (t->hlen[id] != UINT32_MAX) {
      rc = toks_add(&cur, t->hpool.p + t->hoff[id], t->hlen[id], 0);
    }
  }
  if (!rc && t->dec) rc = run_decoder(t->dec, &cur, raw);
  for (size_t i = 0; i < cur.n && !rc; i++) {
    if (!t->dec && i && ig_str_putc(out, ' ')) rc = -1;
    if (!rc && ig_str_append(out, TOK(&cur, i), TLEN(&cur, i))) rc = -1;
  }
  if (!rc && !out->p && ig_str_append(out, "", 0)) rc = -1;
  toks_free(&cur);
  return rc ? IG_TOK_ERR_NOMEM : 0;
}

int tk_decode_tokens(const ig_tok *t, const int32_t *ids, size_t n, int skip_special, ig_str *out) {
  return decode_tokens(t, ids, n, skip_special, 0, out);
}

/* The bytes token id adds after other text: decode(ctx id) less decode(ctx), raw, with ctx the token of "a" (or of
 * any plain piece) to take the decoders' start-of-text rules (a stripped first space). */
int ig_tok_raw_piece(const ig_tok *t, int32_t id, ig_str *out) {
  static const char *ctxs[] = {"a", "x", "the", "0"};
  int32_t ctx = -1;
  for (size_t i = 0; i < sizeof ctxs / sizeof ctxs[0] && ctx < 0; i++) ctx = ig_tok_piece_to_id(t, ctxs[i], strlen(ctxs[i]));
  if (ctx < 0) ctx = 0;
  ig_str a, b;
  ig_str_init(&a), ig_str_init(&b);
  int32_t ids[2] = {ctx, id};
  int rc = decode_tokens(t, ids, 1, 0, 1, &a) || decode_tokens(t, ids, 2, 0, 1, &b) || a.oom || b.oom ? IG_TOK_ERR_NOMEM : 0;
  if (!rc && b.len >= a.len && !memcmp(a.p, b.p, a.len)) rc = ig_str_append(out, b.p + a.len, b.len - a.len) ? IG_TOK_ERR_NOMEM : 0;
  else if (!rc) rc = -1; /* not a plain continuation: no bytes of its own */
  ig_str_free(&a), ig_str_free(&b);
  return rc;
}

int ig_tok_decode_to(const ig_tok *t, const int32_t *ids, size_t n, int skip_special, ig_str *out) {
  return tk_decode_tokens(t, ids, n, skip_special, out);
}

char *ig_tok_decode(const ig_tok *t, const int32_t *ids, size_t n, int skip_special, size_t *len_out) {
  ig_str s;
  ig_str_init(&s);
  if (tk_decode_tokens(t, ids, n, skip_special, &s) || s.oom) {
    ig_str_free(&s);
    return NULL;
  }
  return ig_str_steal(&s, len_out);
}

/* ---- incremental detokenizer ------------------------------------------------------------------------ */
void ig_tok_detok_init(ig_tok_detok *d, const ig_tok *t, int skip_special) {
  memset(d, 0, sizeof *d);
  d->tok = t;
  d->skip_special = skip_special;
}

void ig_tok_detok_free(ig_tok_detok *d) {
  free(d->ids);
  d->ids = NULL;
  d->n = d->cap = 0;
}

static int detok_append(ig_tok_detok *d, int32_t id) {
  if (d->prefix_offset > 64 && d->prefix_offset * 2 > d->n) {
    /* ids before prefix_offset are never read again */
    memmove(d->ids, d->ids + d->prefix_offset, (d->n - d->prefix_offset) * sizeof *d->ids);
    d->n -= d->prefix_offset;
    d->read_offset -= d->prefix_offset;
    d->prefix_offset = 0;
  }
  if (d->n == d->cap) {
    size_t nc = d->cap ? d->cap * 2 : 32;
    int32_t *q = realloc(d->ids, nc * sizeof *q);
    if (!q) return -1;
    d->ids = q;
    d->cap = nc;
  }
  d->ids[d->n++] = id;
  return 0;
}

int ig_tok_detok_prime(ig_tok_detok *d, const int32_t *prompt, size_t n) {
  size_t k = n < 5 ? n : 5;
  d->n = d->prefix_offset = d->read_offset = 0;
  for (size_t i = n - k; i < n; i++)
    if (detok_append(d, prompt[i])) return IG_TOK_ERR_NOMEM;
  d->read_offset = d->n;
  return 0;
}

/* Byte offset of the code point with index cps in s. */
static size_t cp_offset(const char *s, size_t n, size_t cps) {
  size_t i = 0, seen = 0;
  for (; i < n; i++)
    if (((unsigned char)s[i] & 0xC0) != 0x80) {
      if (seen == cps) break;
      seen++;
    }
  return i;
}

static int detok_step(ig_tok_detok *d, ig_str *out, int final) {
  ig_str pre, full;
  ig_str_init(&pre);
  ig_str_init(&full);
  int rc = 0;
  if (tk_decode_tokens(d->tok, d->ids + d->prefix_offset, d->read_offset - d->prefix_offset, d->skip_special, &pre) ||
      tk_decode_tokens(d->tok, d->ids + d->prefix_offset, d->n - d->prefix_offset, d->skip_special, &full)) {
    rc = IG_TOK_ERR_NOMEM;
  } else {
    size_t pc = tk_utf8_count(pre.p, pre.len), fc = tk_utf8_count(full.p, full.len);
    int partial = full.len >= 3 && !memcmp(full.p + full.len - 3, "\xEF\xBF\xBD", 3);
    if (fc > pc && (final || !partial)) {
      size_t at = cp_offset(full.p, full.len, pc);
      if (ig_str_append(out, full.p + at, full.len - at)) rc = IG_TOK_ERR_NOMEM;
      d->prefix_offset = d->read_offset;
      d->read_offset = d->n;
    } else if (final) {
      d->prefix_offset = d->read_offset = d->n;
    }
  }
  ig_str_free(&pre);
  ig_str_free(&full);
  return rc;
}

int ig_tok_detok_push(ig_tok_detok *d, int32_t id, ig_str *out) {
  if (detok_append(d, id)) return IG_TOK_ERR_NOMEM;
  return detok_step(d, out, 0);
}

int ig_tok_detok_flush(ig_tok_detok *d, ig_str *out) {
  if (d->read_offset == d->n) return 0;
  return detok_step(d, out, 1);
}

/* ---- vocabulary and config accessors ---------------------------------------------------------------- */
int32_t ig_tok_vocab_size(const ig_tok *t) { return t->n_ids; }

const char *ig_tok_id_to_piece(const ig_tok *t, int32_t id, size_t *len) {
  if (id < 0 || id >= t->n_ids) return NULL;
  if (t->alen[id] != UINT32_MAX) {
    if (len) *len = t->alen[id];
    return t->apool.p + t->aoff[id];
  }
  if (t->hlen[id] != UINT32_MAX) {
    if (len) *len = t->hlen[id];
    return t->hpool.p + t->hoff[id];
  }
  return NULL;
}

int32_t ig_tok_piece_to_id(const ig_tok *t, const char *piece, size_t len) {
  int32_t id = tk_strmap_get(&t->added_map, piece, len);
  return id >= 0 ? id : tk_strmap_get(&t->piece_map, piece, len);
}

int ig_tok_is_special(const ig_tok *t, int32_t id) {
  return id >= 0 && id < t->n_ids && (t->flags[id] & TK_FLAG_SPECIAL);
}
int ig_tok_is_added(const ig_tok *t, int32_t id) { return id >= 0 && id < t->n_ids && (t->flags[id] & TK_FLAG_ADDED); }

const char *ig_tok_bos_token(const ig_tok *t) { return t->bos; }
const char *ig_tok_eos_token(const ig_tok *t) { return t->eos; }
const char *ig_tok_pad_token(const ig_tok *t) { return t->pad; }
const char *ig_tok_unk_token(const ig_tok *t) { return t->unk; }
static int32_t id_of(const ig_tok *t, const char *s) { return s ? ig_tok_piece_to_id(t, s, strlen(s)) : -1; }
int32_t ig_tok_bos_id(const ig_tok *t) { return id_of(t, t->bos); }
int32_t ig_tok_eos_id(const ig_tok *t) { return id_of(t, t->eos); }
int32_t ig_tok_pad_id(const ig_tok *t) { return id_of(t, t->pad); }
int32_t ig_tok_unk_id(const ig_tok *t) { return id_of(t, t->unk); }
int ig_tok_add_bos(const ig_tok *t) { return t->add_bos; }
int ig_tok_add_eos(const ig_tok *t) { return t->add_eos; }
int64_t ig_tok_model_max_length(const ig_tok *t) { return t->max_len; }

const char *ig_tok_chat_template(const ig_tok *t) {
  if (t->chat_template) return t->chat_template;
  const char *d = ig_tok_chat_template_named(t, "default");
  return d ? d : t->n_tmpl ? t->tmpl_texts[0] : NULL;
}

const char *ig_tok_chat_template_named(const ig_tok *t, const char *name) {
  for (size_t i = 0; i < t->n_tmpl; i++)
    if (!strcmp(t->tmpl_names[i], name)) return t->tmpl_texts[i];
  return NULL;
}

size_t ig_tok_n_config_tokens(const ig_tok *t) { return t->n_cfg; }
const char *ig_tok_config_token(const ig_tok *t, size_t i, const char **name) {
  if (i >= t->n_cfg) return NULL;
  if (name) *name = t->cfg_names[i];
  return t->cfg_values[i];
}
