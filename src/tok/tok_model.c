/* tok/tok_model: the models that turn one pre-tokenized word into ids: BPE (HF's merge order: a min-heap
 * on (rank, position) with stale entries skipped, byte_fallback, unk fusing, ignore_merges, subword
 * prefix/suffix), Unigram (Viterbi over the pieces), WordPiece (greedy longest match) and WordLevel. */
#include <stdlib.h>
#include <string.h>

#include "tok/tok_int.h"

static int emit(tk_ctx *c, const tk_piece *w, int32_t id, uint32_t s, uint32_t len) {
  uint32_t os = 0, oe = 0;
  if (c->want_offsets) {
    if (!w->a) {
      /* Tokens of raw bytes may cover part of a character; HF aligns them to the whole character. */
      const unsigned char *b = (const unsigned char *)w->s + w->off;
      uint32_t e = s + len;
      while (s > 0 && (b[s] & 0xC0) == 0x80) s--;
      while (e < w->len && (b[e] & 0xC0) == 0x80) e++;
      len = e - s;
    }
    tk_piece_orig(w, w->off + s, len, &os, &oe);
  }
  return tk_out_push(c, id, os, oe);
}

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
  if (need <= *cap) return 0;
  size_t nc = *cap ? *cap : 64;
  while (nc < need) nc *= 2;
  void *q = realloc(*p, nc * elem);
  if (!q) return -1;
  *p = q;
  *cap = nc;
  return 0;
}

/* ---- BPE -------------------------------------------------------------------------------------------- */
static inline int merge_less(const tk_merge *a, const tk_merge *b) {
  return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void heap_push(tk_merge *h, size_t *n, tk_merge x) {
  size_t i = (*n)++;
  while (i) {
    size_t p = (i - 1) / 2;
    if (!merge_less(&x, &h[p])) break;
    h[i] = h[p];
    i = p;
  }
  h[i] = x;
}

static tk_merge heap_pop(tk_merge *h, size_t *n) {
  tk_merge top = h[0], x = h[--(*n)];
  size_t i = 0;
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    const tk_merge *best = &x;
    if (l < *n && merge_less(&h[l], best)) m = l, best = &h[l];
    if (r < *n && merge_less(&h[r], best)) m = r;
    if (m == i) break;
    h[i] = h[m];
    i = m;
  }
  if (*n) h[i] = x;
  return top;
}

/* Looks up a string, with the model's prefix (not first) and suffix (last) around it. */
static int32_t bpe_lookup(tk_ctx *c, const tk_model *m, const char *s, size_t n, int first, int last) {
  int pre = !first && m->prefix, suf = last && m->suffix;
  if (!pre && !suf) return tk_strmap_get(&m->map, s, n);
  size_t need = n + m->prefix_len + m->suffix_len;
  if (grow((void **)&c->word, &c->cap_word, need + 1, 1)) return -2;
  size_t o = 0;
  if (pre) memcpy(c->word, m->prefix, m->prefix_len), o += m->prefix_len;
  memcpy(c->word + o, s, n), o += n;
  if (suf) memcpy(c->word + o, m->suffix, m->suffix_len), o += m->suffix_len;
  return tk_strmap_get(&m->map, c->word, o);
}

/* ---- the per-call word cache ---- */
static tk_centry *cache_find(tk_ctx *c, const char *s, uint32_t n, uint32_t h) {
  uint32_t i = h & c->cache_mask;
  for (;;) {
    tk_centry *e = &c->cache[i];
    if (!e->key_len || (e->hash == h && e->key_len == n && !memcmp(c->ckeys.p + e->key_off, s, n))) return e;
    i = (i + 1) & c->cache_mask;
  }
}

static void cache_put(tk_ctx *c, tk_centry *e, const char *s, uint32_t n, uint32_t h, const tk_sym *sym, int32_t ns) {
  if (c->cache_n * 2 > c->cache_mask) return; /* full enough: stop adding */
  size_t cnt = 0;
  for (int32_t i = 0; i < ns; i++) cnt += sym[i].len != 0;
  if (grow((void **)&c->cvals, &c->cap_cvals, c->n_cvals + 3 * cnt, sizeof(uint32_t))) return;
  uint32_t off = (uint32_t)c->ckeys.len;
  if (tk_buf_add(&c->ckeys, s, n)) return;
  e->hash = h;
  e->key_off = off;
  e->key_len = n;
  e->val_off = (uint32_t)c->n_cvals;
  e->val_n = (uint32_t)cnt;
  for (int32_t i = 0; i < ns; i++)
    if (sym[i].len) {
      c->cvals[c->n_cvals++] = (uint32_t)sym[i].id;
      c->cvals[c->n_cvals++] = sym[i].start;
      c->cvals[c->n_cvals++] = sym[i].len;
    }
  c->cache_n++;
}

static int bpe_word(tk_ctx *c, const tk_model *m, const tk_piece *w) {
  const char *s = w->s + w->off;
  uint32_t n = w->len;
  if (m->ignore_merges) {
    int32_t id = m->raw || (!m->prefix && !m->suffix) ? tk_strmap_get(&m->map, s, n) : bpe_lookup(c, m, s, n, 1, 1);
    if (id >= 0) return emit(c, w, id, 0, n);
  }
  tk_centry *ce = NULL;
  uint32_t ch = 0;
  if (c->cache && n > 1 && n <= 256) {
    ch = tk_hash(s, n);
    ce = cache_find(c, s, n, ch);
    if (ce->key_len) {
      const uint32_t *v = c->cvals + ce->val_off;
      for (uint32_t i = 0; i < ce->val_n; i++)
        if (emit(c, w, (int32_t)v[3 * i], v[3 * i + 1], v[3 * i + 2])) return -1;
      return 0;
    }
  }
  if (grow((void **)&c->sym, &c->cap_sym, (size_t)n + 1, sizeof(tk_sym))) return -1;
  tk_sym *sym = c->sym;
  int32_t ns = 0;
  int32_t unk_id = -1;
  uint32_t unk_start = 0, unk_len = 0;
  int have_unk = 0;
#define ADD_SYM(ID, ST, LEN)                                                                                           \
  do {                                                                                                               \
    sym[ns].id = (ID);                                                                                               \
    sym[ns].start = (ST);                                                                                            \
    sym[ns].len = (LEN);                                                                                             \
    sym[ns].prev = ns - 1;                                                                                           \
    sym[ns].next = ns + 1;                                                                                           \
    ns++;                                                                                                            \
  } while (0)
  for (uint32_t i = 0; i < n;) {
    uint32_t cl = m->raw ? 1 : (uint32_t)tk_utf8_len((unsigned char)s[i]);
    if (i + cl > n) cl = n - i;
    int32_t id = m->raw ? m->raw_byte[(unsigned char)s[i]] : bpe_lookup(c, m, s + i, cl, i == 0, i + cl == n);
    if (id == -2) return -1;
    if (id >= 0) {
      if (have_unk) {
        ADD_SYM(unk_id, unk_start, unk_len);
        have_unk = 0;
      }
      ADD_SYM(id, i, cl);
    } else {
      int done = 0;
      if (m->byte_fallback) {
        /* HF spells the character with its prefix/suffix and needs a <0xXX> token for every byte of that. */
        const char *bs = s + i;
        size_t bl = cl;
        int pre = i > 0 && m->prefix, suf = i + cl == n && m->suffix;
        if (pre || suf) {
          if (grow((void **)&c->word, &c->cap_word, cl + m->prefix_len + m->suffix_len + 1, 1)) return -1;
          bl = 0;
          if (pre) memcpy(c->word, m->prefix, m->prefix_len), bl += m->prefix_len;
          memcpy(c->word + bl, s + i, cl), bl += cl;
          if (suf) memcpy(c->word + bl, m->suffix, m->suffix_len), bl += m->suffix_len;
          bs = c->word;
        }
        int ok = 1;
        for (size_t k = 0; k < bl; k++)
          if (m->byte_tok[(unsigned char)bs[k]] < 0) ok = 0;
        if (ok) {
          if (grow((void **)&c->sym, &c->cap_sym, (size_t)ns + bl + (n - i) + 2, sizeof(tk_sym))) return -1;
          sym = c->sym;
          for (size_t k = 0; k < bl; k++) {
            uint32_t at = i + (k < cl ? (uint32_t)k : cl - 1); /* affix bytes point into the character */
            ADD_SYM(m->byte_tok[(unsigned char)bs[k]], at, 1);
          }
          done = 1;
        }
      }
      if (!done && m->unk_id >= 0) {
        if (have_unk && m->fuse_unk) {
          unk_len += cl;
        } else {
          if (have_unk) ADD_SYM(unk_id, unk_start, unk_len);
          have_unk = 1;
          unk_id = m->unk_id;
          unk_start = i;
          unk_len = cl;
        }
      }
    }
    i += cl;
  }
  if (have_unk) ADD_SYM(unk_id, unk_start, unk_len);
#undef ADD_SYM
  if (ns == 0) return 0;
  sym[ns - 1].next = -1;

  /* Merge: always the lowest rank, leftmost first; entries made stale by earlier merges are skipped. */
  if (ns > 1 && m->merges.e) {
    if (grow((void **)&c->heap, &c->cap_heap, (size_t)ns * 2 + 8, sizeof(tk_merge))) return -1;
    size_t hn = 0;
    for (int32_t i = 0; i + 1 < ns; i++) {
      uint32_t r, v;
      if (tk_pairmap_get(&m->merges, (uint32_t)sym[i].id, (uint32_t)sym[i + 1].id, &r, &v))
        heap_push(c->heap, &hn, (tk_merge){r, (uint32_t)i, (int32_t)v});
    }
    while (hn) {
      tk_merge top = heap_pop(c->heap, &hn);
      tk_sym *a = &sym[top.pos];
      if (a->len == 0 || a->next < 0) continue;
      tk_sym *b = &sym[a->next];
      uint32_t r, v;
      if (!tk_pairmap_get(&m->merges, (uint32_t)a->id, (uint32_t)b->id, &r, &v) || (int32_t)v != top.new_id) continue;
      a->id = top.new_id;
      a->len += b->len;
      a->next = b->next;
      b->len = 0;
      if (a->next >= 0) sym[a->next].prev = (int32_t)top.pos;
      if (grow((void **)&c->heap, &c->cap_heap, hn + 2, sizeof(tk_merge))) return -1;
      if (a->prev >= 0 && tk_pairmap_get(&m->merges, (uint32_t)sym[a->prev].id, (uint32_t)a->id, &r, &v))
        heap_push(c->heap, &hn, (tk_merge){r, (uint32_t)a->prev, (int32_t)v});
      if (a->next >= 0 && tk_pairmap_get(&m->merges, (uint32_t)a->id, (uint32_t)sym[a->next].id, &r, &v))
        heap_push(c->heap, &hn, (tk_merge){r, top.pos, (int32_t)v});
    }
  }
  for (int32_t i = 0; i < ns; i++)
    if (sym[i].len && emit(c, w, sym[i].id, sym[i].start, sym[i].len)) return -1;
  if (ce) cache_put(c, ce, s, n, ch, sym, ns);
  return 0;
}

/* ---- Unigram ---------------------------------------------------------------------------------------- */
static int unigram_word(tk_ctx *c, const tk_model *m, const tk_piece *w) {
  const char *s = w->s + w->off;
  uint32_t n = w->len;
  if (!n) return 0;
  if (grow((void **)&c->best, &c->cap_best, (size_t)n + 1, sizeof(double)) ||
      grow((void **)&c->sym, &c->cap_sym, (size_t)n + 1, sizeof(tk_sym)))
    return -1;
  /* sym[pos]: best path ending at byte pos: id, start (UINT32_MAX = unreached) */
  double *best = c->best;
  tk_sym *node = c->sym;
  for (uint32_t i = 0; i <= n; i++) node[i].start = UINT32_MAX, best[i] = 0;
  node[0].start = 0;
  double unk_score = m->min_score - 10.0;
  uint32_t maxlen = m->max_key_len;
  for (uint32_t st = 0; st < n;) {
    uint32_t mb = (uint32_t)tk_utf8_len((unsigned char)s[st]);
    if (st + mb > n) mb = n - st;
    int single = 0;
    for (uint32_t e = st + 1; e <= n && e - st <= maxlen; e++) {
      if (e < n && ((unsigned char)s[e] & 0xC0) == 0x80) continue;
      int32_t id = tk_strmap_get(&m->map, s + st, e - st);
      if (id < 0) continue;
      double sc = m->scores[id] + best[st];
      if (node[e].start == UINT32_MAX || sc > best[e]) {
        best[e] = sc;
        node[e].start = st;
        node[e].id = id;
      }
      if (e - st == mb) single = 1;
    }
    if (!single) {
      double sc = unk_score + best[st];
      uint32_t e = st + mb;
      if (node[e].start == UINT32_MAX || sc > best[e]) {
        best[e] = sc;
        node[e].start = st;
        node[e].id = m->unk_id;
      }
    }
    st += mb;
  }
  /* Backtrack into (start, end) segments; consecutive unknowns fuse (HF's fuse_unk default). */
  size_t cnt = 0;
  for (uint32_t e = n; e > 0; e = node[e].start) cnt++;
  uint32_t *seg = malloc(cnt * 2 * sizeof(uint32_t) + 1);
  int32_t *ids = malloc(cnt * sizeof(int32_t) + 1);
  if (!seg || !ids) {
    free(seg);
    free(ids);
    return -1;
  }
  size_t k = cnt;
  for (uint32_t e = n; e > 0; e = node[e].start) {
    k--;
    seg[2 * k] = node[e].start;
    seg[2 * k + 1] = e;
    ids[k] = node[e].id;
  }
  int rc = 0;
  for (size_t i = 0; i < cnt && !rc; i++) {
    uint32_t a = seg[2 * i], b = seg[2 * i + 1];
    int32_t id = ids[i];
    if (id == m->unk_id && m->unk_id >= 0) {
      while (i + 1 < cnt && ids[i + 1] == m->unk_id) b = seg[2 * (++i) + 1];
      id = tk_strmap_get(&m->map, s + a, b - a);
      if (id < 0) {
        if (m->byte_fallback) {
          int ok = 1;
          for (uint32_t q = a; q < b; q++)
            if (m->byte_tok[(unsigned char)s[q]] < 0) ok = 0;
          if (ok) {
            for (uint32_t q = a; q < b && !rc; q++) rc = emit(c, w, m->byte_tok[(unsigned char)s[q]], q, 1);
            continue;
          }
        }
        id = m->unk_id;
      }
    }
    rc = emit(c, w, id, a, b - a);
  }
  free(seg);
  free(ids);
  return rc;
}

/* ---- WordPiece and WordLevel ------------------------------------------------------------------------ */
static int wordpiece_word(tk_ctx *c, const tk_model *m, const tk_piece *w) {
  const char *s = w->s + w->off;
  uint32_t n = w->len;
  size_t mark = c->out->n;
  if (tk_utf8_count(s, n) > (size_t)m->max_input_chars) goto unk;
  for (uint32_t st = 0; st < n;) {
    uint32_t e = n;
    int32_t found = -1;
    while (st < e) {
      int32_t id = bpe_lookup(c, m, s + st, e - st, st == 0, 0);
      if (id == -2) return -1;
      if (id >= 0) {
        found = id;
        break;
      }
      e--;
      while (e > st && ((unsigned char)s[e] & 0xC0) == 0x80) e--;
    }
    if (found < 0) {
      c->out->n = mark;
      goto unk;
    }
    if (emit(c, w, found, st, e - st)) return -1;
    st = e;
  }
  return 0;
unk:
  return m->unk_id >= 0 ? emit(c, w, m->unk_id, 0, n) : 0;
}

/* Cuts a SentencePiece-style word before each U+2581 where no merge can reach across (see meta_before),
 * so each part is merged on its own (same result, shorter heaps, and the word cache applies). */
static int bpe_meta_split(tk_ctx *c, const tk_model *m, const tk_piece *w) {
  const unsigned char *s = (const unsigned char *)w->s + w->off;
  uint32_t n = w->len, start = 0, prev = 0;
  for (uint32_t i = 0; i < n;) {
    uint32_t cp;
    int l = tk_utf8_dec(s + i, n - i, &cp);
    if (cp == 0x2581 && i > start) {
      int cut = 1;
      for (int q = 0; q < m->meta_n; q++)
        if (m->meta_before[q] == prev) cut = 0;
      if (cut) {
        tk_piece p = *w;
        p.off = w->off + start;
        p.len = i - start;
        if (bpe_word(c, m, &p)) return -1;
        start = i;
      }
    }
    prev = cp;
    i += (uint32_t)l;
  }
  tk_piece p = *w;
  p.off = w->off + start;
  p.len = n - start;
  return bpe_word(c, m, &p);
}

int tk_model_tokenize(tk_ctx *c, const tk_model *m, const tk_piece *w) {
  if (!w->len) return 0;
  switch (m->type) {
  case TK_M_BPE: return m->meta_n >= 0 && !m->ignore_merges ? bpe_meta_split(c, m, w) : bpe_word(c, m, w);
  case TK_M_UNIGRAM: return unigram_word(c, m, w);
  case TK_M_WORDPIECE: return wordpiece_word(c, m, w);
  default: {
    int32_t id = tk_strmap_get(&m->map, w->s + w->off, w->len);
    if (id < 0) id = m->unk_id;
    return id >= 0 ? emit(c, w, id, 0, w->len) : 0;
  }
  }
}
