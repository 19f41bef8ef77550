/* tok/tok_encode: ig_tok_encode, HF's pipeline: split out added tokens on the raw text, normalize the rest,
 * split out normalized added tokens, pre-tokenize, run the model on each word, then the post-processor
 * (BOS/EOS templates). All state of a call lives in a tk_ctx on its stack, so callers may share an ig_tok. */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tok/tok_int.h"

/* ---- per-call context ------------------------------------------------------------------------------- */
int tk_ctx_adopt(tk_ctx *c, void *p) {
  if (c->n_bufs == c->cap_bufs) {
    size_t nc = c->cap_bufs ? c->cap_bufs * 2 : 16;
    void **q = realloc(c->bufs, nc * sizeof *q);
    if (!q) return -1;
    c->bufs = q;
    c->cap_bufs = nc;
  }
  c->bufs[c->n_bufs++] = p;
  return 0;
}

void tk_ctx_release(tk_ctx *c) {
  for (size_t i = 0; i < c->n_bufs; i++) free(c->bufs[i]);
  free(c->bufs);
  free(c->p1.v);
  free(c->p2.v);
  free(c->sym);
  free(c->heap);
  free(c->best);
  free(c->word);
  free(c->cache);
  free(c->ckeys.p);
  free(c->cvals);
  if (c->md) pcre2_match_data_free(c->md);
  if (c->mctx) pcre2_match_context_free(c->mctx);
  if (c->jit) pcre2_jit_stack_free(c->jit);
  memset(c, 0, sizeof *c);
}

int tk_out_push(tk_ctx *c, int32_t id, uint32_t start, uint32_t stop) {
  ig_tok_enc *e = c->out;
  if (e->n == e->cap) {
    size_t nc = e->cap ? e->cap * 2 : 64;
    int32_t *q = realloc(e->ids, nc * sizeof *q);
    if (!q) return -1;
    e->ids = q;
    if (c->want_offsets || e->offsets) {
      uint32_t *o = realloc(e->offsets, nc * 2 * sizeof *o);
      if (!o) return -1;
      e->offsets = o;
    }
    e->cap = nc;
  }
  e->ids[e->n] = id;
  if (c->want_offsets) {
    e->offsets[2 * e->n] = start;
    e->offsets[2 * e->n + 1] = stop;
  }
  e->n++;
  return 0;
}

/* ---- added tokens ----------------------------------------------------------------------------------- */
static int is_ws_cp(uint32_t c) {
  return (c >= 9 && c <= 13) || c == 32 || c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
         c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/* Rust regex \w: alphanumeric, marks, connector punctuation. */
static int is_word_cp(uint32_t c) {
  if (c < 128) return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
  utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
  return (k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO) || (k >= UTF8PROC_CATEGORY_MN && k <= UTF8PROC_CATEGORY_ME) ||
         k == UTF8PROC_CATEGORY_ND || k == UTF8PROC_CATEGORY_NL || k == UTF8PROC_CATEGORY_PC;
}

static uint32_t cp_before(const char *s, size_t pos, size_t *start) {
  size_t b = pos - 1;
  while (b > 0 && ((unsigned char)s[b] & 0xC0) == 0x80) b--;
  uint32_t cp;
  tk_utf8_dec((const unsigned char *)s + b, pos - b, &cp);
  if (start) *start = b;
  return cp;
}

/* Leftmost-longest match of the trie at or after pos. Returns the added index or -1. */
static int trie_find(const tk_trie *tr, const char *s, size_t n, size_t pos, size_t *ms, size_t *me) {
  for (size_t i = pos; i < n; i++) {
    if (!tr->first[(unsigned char)s[i]]) continue;
    uint32_t node = 0;
    int best = -1;
    size_t best_end = 0;
    for (size_t k = i; k < n; k++) {
      uint32_t r, child;
      if (!tk_pairmap_get(&tr->edges, node, (unsigned char)s[k], &r, &child)) break;
      node = child;
      if (tr->term[node] >= 0) {
        best = tr->term[node];
        best_end = k + 1;
      }
    }
    if (best >= 0) {
      *ms = i;
      *me = best_end;
      return best;
    }
  }
  return -1;
}

typedef int (*seg_fn)(tk_ctx *c, const tk_piece *p, int32_t added_id, void *arg);

/* HF's AddedVocabulary::find_matches over one piece: calls fn for every text segment (added_id -1) and
 * every added token, in order. */
static int split_added(tk_ctx *c, const tk_trie *tr, const tk_piece *in, seg_fn fn, void *arg) {
  const ig_tok *t = c->t;
  if (!tr->edges.e || tr->n_nodes <= 1 || !in->len) return fn(c, in, -1, arg);
  const char *s = in->s + in->off;
  size_t n = in->len, start_off = 0, pos = 0, ms, me;
  int ai;
  while ((ai = trie_find(tr, s, n, pos, &ms, &me)) >= 0) {
    const tk_added *a = &t->added[ai];
    if (a->single_word) {
      int ok_l = ms == 0 || !is_word_cp(cp_before(s, ms, NULL));
      uint32_t nx = 0;
      if (me < n) tk_utf8_dec((const unsigned char *)s + me, n - me, &nx);
      int ok_r = me == n || !is_word_cp(nx);
      if (!ok_l || !ok_r) {
        pos = me; /* HF iterates non-overlapping automaton matches: a discarded one is still consumed */
        continue;
      }
    }
    size_t st = ms, en = me;
    if (a->lstrip) {
      size_t b = st;
      while (b > 0) {
        size_t cb;
        uint32_t cp = cp_before(s, b, &cb);
        if (!is_ws_cp(cp)) break;
        b = cb;
      }
      st = b > start_off ? b : start_off;
    }
    if (a->rstrip) {
      while (en < n) {
        uint32_t cp;
        int l = tk_utf8_dec((const unsigned char *)s + en, n - en, &cp);
        if (!is_ws_cp(cp)) break;
        en += (size_t)l;
      }
    }
    if (start_off < st) {
      tk_piece x = *in;
      x.off = in->off + (uint32_t)start_off;
      x.len = (uint32_t)(st - start_off);
      if (fn(c, &x, -1, arg)) return -1;
    }
    tk_piece x = *in;
    x.off = in->off + (uint32_t)st;
    x.len = (uint32_t)(en - st);
    if (fn(c, &x, a->id, arg)) return -1;
    start_off = en;
    pos = me; /* non-overlapping automaton matches; rstrip may reach past the next one, as in HF */
  }
  if (start_off < n) {
    tk_piece x = *in;
    x.off = in->off + (uint32_t)start_off;
    x.len = (uint32_t)(n - start_off);
    return fn(c, &x, -1, arg);
  }
  return 0;
}

static int emit_added(tk_ctx *c, const tk_piece *p, int32_t id) {
  uint32_t s = 0, e = 0;
  if (c->want_offsets) tk_piece_orig(p, p->off, p->len, &s, &e);
  return tk_out_push(c, id, s, e);
}

/* A normalized text segment (or added token within it). */
static int on_norm_seg(tk_ctx *c, const tk_piece *p, int32_t added_id, void *arg) {
  (void)arg;
  if (added_id >= 0) return emit_added(c, p, added_id);
  const ig_tok *t = c->t;
  if (!t->pretok) return tk_model_tokenize(c, &t->model, p);
  c->p1.n = 0;
  if (tk_pieces_push(&c->p1, *p)) return -1;
  if (tk_pretokenize(c, t->pretok, &c->p1, &c->p2)) return -1;
  for (size_t i = 0; i < c->p2.n; i++)
    if (tk_model_tokenize(c, &t->model, &c->p2.v[i])) return -1;
  return 0;
}

/* A raw text segment (or non-normalized added token). */
static int on_raw_seg(tk_ctx *c, const tk_piece *p, int32_t added_id, void *arg) {
  if (added_id >= 0) return emit_added(c, p, added_id);
  const ig_tok *t = c->t;
  tk_piece np = *p;
  if (t->norm && tk_normalize(c, t->norm, p, &np)) return -1;
  return split_added(c, &t->trie_norm, &np, on_norm_seg, arg);
}

/* ---- post-processing -------------------------------------------------------------------------------- */
static void post_counts(const tk_post *p, size_t *pre, size_t *post) {
  if (p->type == TK_PP_SEQ) {
    for (int i = 0; i < p->nsubs; i++) post_counts(&p->subs[i], pre, post);
    return;
  }
  *pre += p->n_pre;
  *post += p->n_post;
}

static void post_fill(const tk_post *p, int32_t *pre, size_t *npre, int32_t *post, size_t *npost) {
  if (p->type == TK_PP_SEQ) {
    for (int i = 0; i < p->nsubs; i++) post_fill(&p->subs[i], pre, npre, post, npost);
    return;
  }
  for (size_t i = 0; i < p->n_pre; i++) pre[(*npre)++] = p->pre_ids[i];
  for (size_t i = 0; i < p->n_post; i++) post[(*npost)++] = p->post_ids[i];
}

static int apply_post(tk_ctx *c, const tk_post *p) {
  size_t npre = 0, npost = 0;
  post_counts(p, &npre, &npost);
  if (!npre && !npost) return 0;
  int32_t *pre = malloc((npre + npost + 1) * sizeof(int32_t));
  if (!pre) return -1;
  int32_t *post = pre + npre;
  size_t a = 0, b = 0;
  post_fill(p, pre, &a, post, &b);
  ig_tok_enc *e = c->out;
  size_t n0 = e->n;
  int rc = 0;
  for (size_t i = 0; i < npre + npost && !rc; i++) rc = tk_out_push(c, 0, 0, 0); /* room */
  if (!rc) {
    memmove(e->ids + npre, e->ids, n0 * sizeof(int32_t));
    memcpy(e->ids, pre, npre * sizeof(int32_t));
    memcpy(e->ids + npre + n0, post, npost * sizeof(int32_t));
    if (c->want_offsets) {
      memmove(e->offsets + 2 * npre, e->offsets, n0 * 2 * sizeof(uint32_t));
      memset(e->offsets, 0, npre * 2 * sizeof(uint32_t));
      memset(e->offsets + 2 * (npre + n0), 0, npost * 2 * sizeof(uint32_t));
    }
  }
  free(pre);
  return rc;
}

/* HF's ByteLevel process_offsets: a token's leading/trailing spaces ('Ġ' or whitespace) leave its offsets,
 * except the one space a prefix-space option added in front of the first token. */
static int is_space_char(uint32_t cp) { return cp == 0x120 || is_ws_cp(cp); }

static void trim_offsets(tk_ctx *c, int add_prefix_space) {
  const ig_tok *t = c->t;
  ig_tok_enc *e = c->out;
  for (size_t i = 0; i < e->n; i++) {
    size_t pl;
    const unsigned char *p = (const unsigned char *)ig_tok_id_to_piece(t, e->ids[i], &pl);
    if (!p || !pl) continue;
    uint32_t lead = 0, trail = 0, cp;
    for (size_t k = 0; k < pl;) {
      int l = tk_utf8_dec(p + k, pl - k, &cp);
      if (!is_space_char(cp)) break;
      lead++;
      k += (size_t)l;
    }
    for (size_t k = pl; k > 0;) {
      size_t b = k - 1;
      while (b > 0 && (p[b] & 0xC0) == 0x80) b--;
      tk_utf8_dec(p + b, k - b, &cp);
      if (!is_space_char(cp)) break;
      trail++;
      k = b;
    }
    uint32_t *o = e->offsets + 2 * i;
    if (lead) {
      if ((i == 0 || o[0] == 0) && add_prefix_space && lead == 1) lead = 0;
      o[0] = o[0] + lead < o[1] ? o[0] + lead : o[1];
    }
    if (trail && o[1] >= trail) o[1] = o[1] - trail > o[0] ? o[1] - trail : o[0];
  }
}

static void post_trim(tk_ctx *c, const tk_post *p) {
  if (p->type == TK_PP_SEQ) {
    for (int i = 0; i < p->nsubs; i++) post_trim(c, &p->subs[i]);
    return;
  }
  if (p->trim_offsets) trim_offsets(c, p->add_prefix_space);
}

/* ---- entry point ------------------------------------------------------------------------------------ */
int ig_tok_encode(const ig_tok *t, const char *text, size_t len, int add_special, int want_offsets, ig_tok_enc *out) {
  out->n = 0;
  if (!text) len = 0;
  if (len > UINT32_MAX / 4) return IG_TOK_ERR_ARG;
  if (want_offsets && out->ids) {
    /* offsets may have been left behind by calls without them: size them to the ids */
    uint32_t *o = realloc(out->offsets, (out->cap ? out->cap : 1) * 2 * sizeof(uint32_t));
    if (!o) return IG_TOK_ERR_NOMEM;
    out->offsets = o;
  }
  tk_ctx c;
  memset(&c, 0, sizeof c);
  c.t = t;
  c.out = out;
  c.want_offsets = want_offsets;
  int rc = 0;
  tk_buf fixed = {0};
  const char *src = text ? text : "";
  if (!ig_utf8_valid(src, len)) {
    /* Not UTF-8: read it as a lossy decoder would (offsets then refer to the repaired text). */
    if (tk_utf8_lossy(&fixed, src, len)) return IG_TOK_ERR_NOMEM;
    src = fixed.p;
    len = fixed.len;
  }
  if (len >= 4096 && t->model.type == TK_M_BPE) {
    /* a long input repeats words: remember each word's tokens for this call */
    c.cache_mask = 8191;
    c.cache = calloc(c.cache_mask + 1, sizeof *c.cache);
  }
  tk_piece whole = {src, NULL, 0, 0, (uint32_t)len};
  if (len) rc = split_added(&c, &t->trie_raw, &whole, on_raw_seg, NULL);
  if (!rc && want_offsets && t->post) post_trim(&c, t->post);
  if (!rc && add_special && t->post) rc = apply_post(&c, t->post);
  int re_error = c.re_error;
  tk_ctx_release(&c);
  free(fixed.p);
  return rc ? (re_error ? IG_TOK_ERR_ARG : IG_TOK_ERR_NOMEM) : 0;
}

void ig_tok_enc_free(ig_tok_enc *e) {
  free(e->ids);
  free(e->offsets);
  memset(e, 0, sizeof *e);
}
