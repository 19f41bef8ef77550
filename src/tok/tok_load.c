/* tok/tok_load: reads tokenizer.json (model, added tokens, normalizer, pre-tokenizer, post-processor,
 * decoder) and tokenizer_config.json (special tokens, add_bos/eos, model_max_length, chat templates) into
 * an immutable ig_tok. Unknown component types are reported as errors rather than silently ignored. */
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tok/tok_int.h"
#include "util/file.h"

typedef struct ld {
  ig_tok *t;
  char *err;
  size_t errlen;
  tk_strlist vocab, merges; /* model.vocab / model.merges, from the fast scanner or from jansson */
} ld;

static int fail(ld *L, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(ld *L, int code, const char *fmt, ...) {
  if (L->err && L->errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(L->err, L->errlen, fmt, ap);
    va_end(ap);
  }
  return code;
}

static char *dupn(const char *s, size_t n) {
  char *p = malloc(n + 1);
  if (p) {
    memcpy(p, s, n);
    p[n] = 0;
  }
  return p;
}

static const char *jstr(json_t *o, const char *key) { return json_string_value(json_object_get(o, key)); }
static int jbool(json_t *o, const char *key, int dflt) {
  json_t *v = json_object_get(o, key);
  return json_is_boolean(v) ? json_is_true(v) : dflt;
}

/* A "pattern" object: {"String": s} or {"Regex": r}. */
static int parse_pattern(ld *L, json_t *pat, char **s, size_t *slen, pcre2_code **re, int need_re) {
  json_t *v;
  if ((v = json_object_get(pat, "String")) && json_is_string(v)) {
    *s = dupn(json_string_value(v), json_string_length(v));
    *slen = json_string_length(v);
    if (!*s) return IG_TOK_ERR_NOMEM;
    if (need_re) {
      char e[256];
      *re = tk_re_compile(*s, *slen, 1, e, sizeof e);
      if (!*re) return fail(L, IG_TOK_ERR_PARSE, "%s", e);
    }
    return 0;
  }
  if ((v = json_object_get(pat, "Regex")) && json_is_string(v)) {
    char e[256];
    *re = tk_re_compile(json_string_value(v), json_string_length(v), 0, e, sizeof e);
    if (!*re) return fail(L, IG_TOK_ERR_PARSE, "%s", e);
    return 0;
  }
  return fail(L, IG_TOK_ERR_PARSE, "pattern is neither String nor Regex");
}

static int prepend_scheme(json_t *o) {
  const char *s = jstr(o, "prepend_scheme");
  if (s) return !strcmp(s, "first") ? TK_PREPEND_FIRST : !strcmp(s, "never") ? TK_PREPEND_NEVER : TK_PREPEND_ALWAYS;
  return jbool(o, "add_prefix_space", 1) ? TK_PREPEND_ALWAYS : TK_PREPEND_NEVER;
}

static uint32_t first_cp(const char *s, uint32_t dflt) {
  if (!s || !*s) return dflt;
  uint32_t cp;
  tk_utf8_dec((const unsigned char *)s, strlen(s), &cp);
  return cp;
}

/* ---- normalizers ------------------------------------------------------------------------------------ */
static int parse_norm(ld *L, json_t *j, tk_norm *n) {
  memset(n, 0, sizeof *n);
  const char *ty = jstr(j, "type");
  if (!ty) return fail(L, IG_TOK_ERR_PARSE, "normalizer without type");
  if (!strcmp(ty, "Sequence")) {
    json_t *arr = json_object_get(j, "normalizers");
    n->type = TK_N_SEQ;
    n->nsubs = (int)json_array_size(arr);
    n->subs = calloc(n->nsubs ? n->nsubs : 1, sizeof *n->subs);
    if (!n->subs) return IG_TOK_ERR_NOMEM;
    for (int i = 0; i < n->nsubs; i++) {
      int rc = parse_norm(L, json_array_get(arr, i), &n->subs[i]);
      if (rc) return rc;
    }
    return 0;
  }
  if (!strcmp(ty, "NFC")) n->type = TK_N_NFC;
  else if (!strcmp(ty, "NFD")) n->type = TK_N_NFD;
  else if (!strcmp(ty, "NFKC")) n->type = TK_N_NFKC;
  else if (!strcmp(ty, "NFKD")) n->type = TK_N_NFKD;
  else if (!strcmp(ty, "Lowercase")) n->type = TK_N_LOWER;
  else if (!strcmp(ty, "StripAccents")) n->type = TK_N_STRIP_ACCENTS;
  else if (!strcmp(ty, "Nmt")) n->type = TK_N_NMT;
  else if (!strcmp(ty, "Strip")) {
    n->type = TK_N_STRIP;
    n->left = jbool(j, "strip_left", 1);
    n->right = jbool(j, "strip_right", 1);
  } else if (!strcmp(ty, "Replace")) {
    n->type = TK_N_REPLACE;
    const char *c = jstr(j, "content");
    n->content = dupn(c ? c : "", c ? json_string_length(json_object_get(j, "content")) : 0);
    n->content_len = c ? json_string_length(json_object_get(j, "content")) : 0;
    if (!n->content) return IG_TOK_ERR_NOMEM;
    return parse_pattern(L, json_object_get(j, "pattern"), &n->pat, &n->pat_len, &n->re, 0);
  } else if (!strcmp(ty, "Prepend")) {
    n->type = TK_N_PREPEND;
    const char *c = jstr(j, "prepend");
    n->content_len = c ? json_string_length(json_object_get(j, "prepend")) : 0;
    n->content = dupn(c ? c : "", n->content_len);
    if (!n->content) return IG_TOK_ERR_NOMEM;
  } else if (!strcmp(ty, "BertNormalizer")) {
    n->type = TK_N_BERT;
    n->clean_text = jbool(j, "clean_text", 1);
    n->chinese = jbool(j, "handle_chinese_chars", 1);
    n->lowercase = jbool(j, "lowercase", 1);
    json_t *sa = json_object_get(j, "strip_accents");
    n->strip_accents = json_is_boolean(sa) ? json_is_true(sa) : -1;
  } else if (!strcmp(ty, "Precompiled")) {
    /* SentencePiece's precompiled charsmap: NFKC-like with a few extra rules; NFKC is the close match. */
    n->type = TK_N_PRECOMPILED;
  } else {
    return fail(L, IG_TOK_ERR_PARSE, "unsupported normalizer type '%s'", ty);
  }
  return 0;
}

void tk_norm_free(tk_norm *n) {
  if (!n) return;
  for (int i = 0; i < n->nsubs; i++) tk_norm_free(&n->subs[i]);
  free(n->subs);
  free(n->pat);
  free(n->content);
  if (n->re) pcre2_code_free(n->re);
}

/* ---- pre-tokenizers --------------------------------------------------------------------------------- */
static const char GPT2_RE[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static int behavior(const char *s) {
  if (!s) return TK_B_ISOLATED;
  if (!strcmp(s, "Removed")) return TK_B_REMOVED;
  if (!strcmp(s, "MergedWithPrevious")) return TK_B_MERGED_PREV;
  if (!strcmp(s, "MergedWithNext")) return TK_B_MERGED_NEXT;
  if (!strcmp(s, "Contiguous")) return TK_B_CONTIGUOUS;
  return TK_B_ISOLATED;
}

static int parse_pretok(ld *L, json_t *j, tk_pretok *p) {
  memset(p, 0, sizeof *p);
  const char *ty = jstr(j, "type");
  if (!ty) return fail(L, IG_TOK_ERR_PARSE, "pre_tokenizer without type");
  char e[256];
  if (!strcmp(ty, "Sequence")) {
    json_t *arr = json_object_get(j, "pretokenizers");
    p->type = TK_P_SEQ;
    p->nsubs = (int)json_array_size(arr);
    p->subs = calloc(p->nsubs ? p->nsubs : 1, sizeof *p->subs);
    if (!p->subs) return IG_TOK_ERR_NOMEM;
    for (int i = 0; i < p->nsubs; i++) {
      int rc = parse_pretok(L, json_array_get(arr, i), &p->subs[i]);
      if (rc) return rc;
    }
  } else if (!strcmp(ty, "Split")) {
    p->type = TK_P_SPLIT;
    p->behavior = behavior(jstr(j, "behavior"));
    p->invert = jbool(j, "invert", 0);
    char *s = NULL;
    size_t sl = 0;
    int rc = parse_pattern(L, json_object_get(j, "pattern"), &s, &sl, &p->re, 1);
    free(s);
    if (rc) return rc;
  } else if (!strcmp(ty, "ByteLevel")) {
    p->type = TK_P_BYTELEVEL;
    p->add_prefix_space = jbool(j, "add_prefix_space", 1);
    if (jbool(j, "use_regex", 1)) {
      p->re = tk_re_compile(GPT2_RE, sizeof GPT2_RE - 1, 0, e, sizeof e);
      if (!p->re) return fail(L, IG_TOK_ERR_PARSE, "%s", e);
    }
  } else if (!strcmp(ty, "Metaspace")) {
    p->type = TK_P_METASPACE;
    p->repl = first_cp(jstr(j, "replacement"), 0x2581);
    p->repl_len = tk_utf8_enc(p->repl, p->repl_s);
    p->prepend_scheme = prepend_scheme(j);
    p->split = jbool(j, "split", 1);
  } else if (!strcmp(ty, "Whitespace")) {
    p->type = TK_P_WHITESPACE;
    /* HF: \w+|[^\w\s]+ in Oniguruma, whose \w also takes marks and only decimal digits (PCRE2's differs). */
    static const char WS_RE[] = "[\\p{L}\\p{Nl}\\p{M}\\p{Nd}\\p{Pc}\\x{200C}\\x{200D}]+|[^\\p{L}\\p{Nl}\\p{M}\\p{Nd}\\p{Pc}\\x{200C}\\x{200D}\\s]+";
    p->re = tk_re_compile(WS_RE, sizeof WS_RE - 1, 0, e, sizeof e);
    if (!p->re) return fail(L, IG_TOK_ERR_PARSE, "%s", e);
  } else if (!strcmp(ty, "WhitespaceSplit")) p->type = TK_P_WSSPLIT;
  else if (!strcmp(ty, "BertPreTokenizer")) p->type = TK_P_BERT;
  else if (!strcmp(ty, "Punctuation")) {
    p->type = TK_P_PUNCT;
    p->behavior = json_object_get(j, "behavior") ? behavior(jstr(j, "behavior")) : TK_B_ISOLATED;
  } else if (!strcmp(ty, "Digits")) {
    p->type = TK_P_DIGITS;
    p->individual_digits = jbool(j, "individual_digits", 0);
  } else if (!strcmp(ty, "CharDelimiterSplit")) {
    p->type = TK_P_CHARDELIM;
    p->delim = first_cp(jstr(j, "delimiter"), ' ');
  } else {
    return fail(L, IG_TOK_ERR_PARSE, "unsupported pre_tokenizer type '%s'", ty);
  }
  return 0;
}

void tk_pretok_free(tk_pretok *p) {
  if (!p) return;
  for (int i = 0; i < p->nsubs; i++) tk_pretok_free(&p->subs[i]);
  free(p->subs);
  if (p->re) pcre2_code_free(p->re);
}

static int has_bytelevel(const tk_pretok *p) {
  if (!p) return 0;
  if (p->type == TK_P_BYTELEVEL) return 1;
  for (int i = 0; i < p->nsubs; i++)
    if (has_bytelevel(&p->subs[i])) return 1;
  return 0;
}

/* ---- decoders --------------------------------------------------------------------------------------- */
static int parse_dec(ld *L, json_t *j, tk_dec *d) {
  memset(d, 0, sizeof *d);
  const char *ty = jstr(j, "type");
  if (!ty) return fail(L, IG_TOK_ERR_PARSE, "decoder without type");
  if (!strcmp(ty, "Sequence")) {
    json_t *arr = json_object_get(j, "decoders");
    d->type = TK_D_SEQ;
    d->nsubs = (int)json_array_size(arr);
    d->subs = calloc(d->nsubs ? d->nsubs : 1, sizeof *d->subs);
    if (!d->subs) return IG_TOK_ERR_NOMEM;
    for (int i = 0; i < d->nsubs; i++) {
      int rc = parse_dec(L, json_array_get(arr, i), &d->subs[i]);
      if (rc) return rc;
    }
  } else if (!strcmp(ty, "ByteLevel")) d->type = TK_D_BYTELEVEL;
  else if (!strcmp(ty, "ByteFallback")) d->type = TK_D_BYTEFALLBACK;
  else if (!strcmp(ty, "Fuse")) d->type = TK_D_FUSE;
  else if (!strcmp(ty, "Strip")) {
    d->type = TK_D_STRIP;
    d->content = dupn(jstr(j, "content") ? jstr(j, "content") : " ", strlen(jstr(j, "content") ? jstr(j, "content") : " "));
    d->content_len = strlen(d->content);
    d->start = (int)json_integer_value(json_object_get(j, "start"));
    d->stop = (int)json_integer_value(json_object_get(j, "stop"));
  } else if (!strcmp(ty, "Replace")) {
    d->type = TK_D_REPLACE;
    const char *c = jstr(j, "content");
    d->content_len = c ? json_string_length(json_object_get(j, "content")) : 0;
    d->content = dupn(c ? c : "", d->content_len);
    if (!d->content) return IG_TOK_ERR_NOMEM;
    return parse_pattern(L, json_object_get(j, "pattern"), &d->pat, &d->pat_len, &d->re, 0);
  } else if (!strcmp(ty, "Metaspace")) {
    d->type = TK_D_METASPACE;
    d->repl = first_cp(jstr(j, "replacement"), 0x2581);
    d->prepend_scheme = prepend_scheme(j);
  } else if (!strcmp(ty, "WordPiece")) {
    d->type = TK_D_WORDPIECE;
    const char *pre = jstr(j, "prefix");
    d->prefix = dupn(pre ? pre : "##", strlen(pre ? pre : "##"));
    d->cleanup = jbool(j, "cleanup", 1);
  } else if (!strcmp(ty, "BPEDecoder")) {
    d->type = TK_D_BPE;
    const char *suf = jstr(j, "suffix");
    d->prefix = dupn(suf ? suf : "</w>", strlen(suf ? suf : "</w>"));
  } else {
    return fail(L, IG_TOK_ERR_PARSE, "unsupported decoder type '%s'", ty);
  }
  return 0;
}

void tk_dec_free(tk_dec *d) {
  if (!d) return;
  for (int i = 0; i < d->nsubs; i++) tk_dec_free(&d->subs[i]);
  free(d->subs);
  free(d->pat);
  free(d->content);
  free(d->prefix);
  if (d->re) pcre2_code_free(d->re);
}

/* ---- post-processors -------------------------------------------------------------------------------- */
static int push_id(int32_t **v, size_t *n, int32_t id) {
  int32_t *q = realloc(*v, (*n + 1) * sizeof **v);
  if (!q) return IG_TOK_ERR_NOMEM;
  q[(*n)++] = id;
  *v = q;
  return 0;
}

static int special_pair(ld *L, json_t *j, const char *key, int32_t *id) {
  json_t *a = json_object_get(j, key); /* ["<s>", 0] */
  if (!json_is_array(a) || !json_is_string(json_array_get(a, 0)))
    return fail(L, IG_TOK_ERR_PARSE, "post_processor: bad '%s'", key);
  *id = (int32_t)json_integer_value(json_array_get(a, 1));
  return 0;
}

static int parse_post(ld *L, json_t *j, tk_post *p) {
  memset(p, 0, sizeof *p);
  const char *ty = jstr(j, "type");
  if (!ty) return fail(L, IG_TOK_ERR_PARSE, "post_processor without type");
  int rc;
  if (!strcmp(ty, "Sequence")) {
    json_t *arr = json_object_get(j, "processors");
    p->type = TK_PP_SEQ;
    p->nsubs = (int)json_array_size(arr);
    p->subs = calloc(p->nsubs ? p->nsubs : 1, sizeof *p->subs);
    if (!p->subs) return IG_TOK_ERR_NOMEM;
    for (int i = 0; i < p->nsubs; i++)
      if ((rc = parse_post(L, json_array_get(arr, i), &p->subs[i]))) return rc;
  } else if (!strcmp(ty, "ByteLevel")) {
    p->type = TK_PP_BYTELEVEL;
    p->trim_offsets = jbool(j, "trim_offsets", 1);
    p->add_prefix_space = jbool(j, "add_prefix_space", 1);
  } else if (!strcmp(ty, "TemplateProcessing")) {
    p->type = TK_PP_TEMPLATE;
    json_t *single = json_object_get(j, "single"), *specials = json_object_get(j, "special_tokens");
    int seen_seq = 0;
    for (size_t i = 0; i < json_array_size(single); i++) {
      json_t *it = json_array_get(single, i), *st = json_object_get(it, "SpecialToken");
      if (json_object_get(it, "Sequence")) {
        seen_seq = 1;
        continue;
      }
      const char *name = jstr(st, "id");
      json_t *sp = name ? json_object_get(specials, name) : NULL;
      json_t *ids = json_object_get(sp, "ids");
      if (!json_is_array(ids)) return fail(L, IG_TOK_ERR_PARSE, "TemplateProcessing: unknown special token '%s'", name ? name : "?");
      for (size_t k = 0; k < json_array_size(ids); k++) {
        int32_t id = (int32_t)json_integer_value(json_array_get(ids, k));
        if ((rc = seen_seq ? push_id(&p->post_ids, &p->n_post, id) : push_id(&p->pre_ids, &p->n_pre, id))) return rc;
      }
    }
  } else if (!strcmp(ty, "RobertaProcessing") || !strcmp(ty, "BertProcessing")) {
    p->type = !strcmp(ty, "RobertaProcessing") ? TK_PP_ROBERTA : TK_PP_BERT;
    int32_t cls, sep;
    if ((rc = special_pair(L, j, "cls", &cls)) || (rc = special_pair(L, j, "sep", &sep))) return rc;
    if ((rc = push_id(&p->pre_ids, &p->n_pre, cls)) || (rc = push_id(&p->post_ids, &p->n_post, sep))) return rc;
    p->trim_offsets = p->type == TK_PP_ROBERTA && jbool(j, "trim_offsets", 1);
    p->add_prefix_space = jbool(j, "add_prefix_space", 1);
  } else {
    return fail(L, IG_TOK_ERR_PARSE, "unsupported post_processor type '%s'", ty);
  }
  return 0;
}

void tk_post_free(tk_post *p) {
  if (!p) return;
  for (int i = 0; i < p->nsubs; i++) tk_post_free(&p->subs[i]);
  free(p->subs);
  free(p->pre_ids);
  free(p->post_ids);
}

/* ---- model ------------------------------------------------------------------------------------------ */
/* Converts a byte-level token string ("Ġthe") to its raw bytes; returns 0 if a char is outside the map. */
static int bytelevel_to_raw(const char *s, size_t n, char *out, size_t *out_len) {
  size_t o = 0;
  for (size_t i = 0; i < n;) {
    uint32_t cp;
    i += (size_t)tk_utf8_dec((const unsigned char *)s + i, n - i, &cp);
    int b = tk_cp2byte(cp);
    if (b < 0) return 0;
    out[o++] = (char)b;
  }
  *out_len = o;
  return 1;
}

/* Fills the lists from jansson values when the fast scanner did not apply. */
static int lists_from_json(ld *L, json_t *vocab, json_t *merges) {
  const char *k;
  json_t *v;
  if (!L->vocab.has) {
    json_object_foreach(vocab, k, v) {
      json_int_t id = json_integer_value(v);
      if (tk_strlist_add(&L->vocab, k, strlen(k), id >= 0 && id < INT32_MAX ? (int32_t)id : -1)) return IG_TOK_ERR_NOMEM;
    }
    L->vocab.has = 1;
  }
  if (!L->merges.has && merges) {
    for (size_t r = 0; r < json_array_size(merges); r++) {
      json_t *e = json_array_get(merges, r);
      const char *a, *b;
      size_t al, bl;
      if (json_is_string(e)) {
        const char *s = json_string_value(e), *sp = strchr(s, ' ');
        if (!sp) return fail(L, IG_TOK_ERR_PARSE, "merge %zu has no space", r);
        a = s, al = (size_t)(sp - s), b = sp + 1, bl = json_string_length(e) - al - 1;
      } else if (json_is_array(e) && json_array_size(e) == 2 && json_is_string(json_array_get(e, 0)) &&
                 json_is_string(json_array_get(e, 1))) {
        a = json_string_value(json_array_get(e, 0)), al = json_string_length(json_array_get(e, 0));
        b = json_string_value(json_array_get(e, 1)), bl = json_string_length(json_array_get(e, 1));
      } else {
        return fail(L, IG_TOK_ERR_PARSE, "merge %zu is neither \"a b\" nor [\"a\", \"b\"]", r);
      }
      if (tk_strlist_add(&L->merges, a, al, 0) || tk_strlist_add(&L->merges, b, bl, 0)) return IG_TOK_ERR_NOMEM;
    }
    L->merges.has = 1;
  }
  return 0;
}

static int add_hf_piece(ig_tok *t, int32_t id, const char *s, size_t n) {
  t->hoff[id] = (uint32_t)t->hpool.len;
  t->hlen[id] = (uint32_t)n;
  return tk_buf_add(&t->hpool, s, n) ? IG_TOK_ERR_NOMEM : 0;
}

/* Builds the model's lookup keys (raw bytes for byte-level BPE) over ids 0..m->n-1 from the HF strings. */
static int build_model_keys(ig_tok *t) {
  tk_model *m = &t->model;
  tk_buf kp = {0};
  m->koff = malloc((size_t)(m->n ? m->n : 1) * sizeof(uint32_t));
  m->klen = malloc((size_t)(m->n ? m->n : 1) * sizeof(uint32_t));
  if (!m->koff || !m->klen || tk_strmap_init(&m->map, (size_t)m->n)) return IG_TOK_ERR_NOMEM;
  char tmp[1024];
  for (int32_t id = 0; id < m->n; id++) {
    m->klen[id] = UINT32_MAX;
    if (t->hlen[id] == UINT32_MAX) continue;
    const char *s = t->hpool.p + t->hoff[id];
    size_t n = t->hlen[id], kn = n;
    const char *k = s;
    if (m->raw) {
      if (n > sizeof tmp || !bytelevel_to_raw(s, n, tmp, &kn)) continue;
      k = tmp;
    }
    m->koff[id] = (uint32_t)kp.len;
    m->klen[id] = (uint32_t)kn;
    if (tk_buf_add(&kp, k, kn)) {
      free(kp.p);
      return IG_TOK_ERR_NOMEM;
    }
  }
  for (int32_t id = 0; id < m->n; id++)
    if (m->klen[id] != UINT32_MAX && m->klen[id] > m->max_key_len) m->max_key_len = m->klen[id];
  m->kpool = kp.p ? kp.p : calloc(1, 1);
  m->map.pool = m->kpool;
  m->map.off = m->koff;
  m->map.len = m->klen;
  /* HF's vocab is a map: on duplicate strings the last id read wins; JSON objects have unique keys. */
  tk_strmap_put_all(&m->map, m->n, 0);
  return 0;
}

/* Resolves "a b" merges to ids. The three lookups per merge are random accesses into tables of a few MB,
 * so they run in batches: hash and prefetch everything of a batch first, then look up. */
#define MERGE_BATCH 32
static int parse_merges(ld *L) {
  ig_tok *t = L->t;
  tk_model *m = &t->model;
  size_t nm = L->merges.n / 2;
  if (tk_pairmap_init(&m->merges, nm ? nm : 1)) return IG_TOK_ERR_NOMEM;
  tk_buf tmp = {0};
  const char *pool = L->merges.pool.p;
  const uint32_t *off = L->merges.off;
  const tk_strmap *pm = &t->piece_map;
  uint32_t ha[MERGE_BATCH], hb[MERGE_BATCH], hn[MERGE_BATCH], no[MERGE_BATCH], nl[MERGE_BATCH];
  int32_t ia[MERGE_BATCH], ib[MERGE_BATCH];
  for (size_t r0 = 0; r0 < nm; r0 += MERGE_BATCH) {
    size_t nb = nm - r0 < MERGE_BATCH ? nm - r0 : MERGE_BATCH;
    for (size_t k = 0; k < nb; k++) {
      size_t r = r0 + k;
      ha[k] = tk_hash(pool + off[4 * r], off[4 * r + 1]);
      hb[k] = tk_hash(pool + off[4 * r + 2], off[4 * r + 3]);
      tk_strmap_prefetch(pm, ha[k]);
      tk_strmap_prefetch(pm, hb[k]);
    }
    tmp.len = 0;
    for (size_t k = 0; k < nb; k++) {
      size_t r = r0 + k;
      const char *a = pool + off[4 * r], *b = pool + off[4 * r + 2];
      size_t al = off[4 * r + 1], bl = off[4 * r + 3];
      ia[k] = tk_strmap_get_h(pm, a, al, ha[k]);
      ib[k] = tk_strmap_get_h(pm, b, bl, hb[k]);
      if (ia[k] < 0 || ib[k] < 0) continue; /* HF refuses such a file; a merge that cannot apply is harmless */
      size_t skip = m->prefix_len && bl >= m->prefix_len && !memcmp(b, m->prefix, m->prefix_len) ? m->prefix_len : 0;
      no[k] = (uint32_t)tmp.len;
      if (tk_buf_add(&tmp, a, al) || tk_buf_add(&tmp, b + skip, bl - skip)) {
        free(tmp.p);
        return IG_TOK_ERR_NOMEM;
      }
      nl[k] = (uint32_t)(tmp.len - no[k]);
      hn[k] = tk_hash(tmp.p + no[k], nl[k]);
      tk_strmap_prefetch(pm, hn[k]);
      __builtin_prefetch(&m->merges.e[tk_pair_slot(&m->merges, (((uint64_t)ia[k] << 32) | (uint32_t)ib[k]) + 1)], 1);
    }
    for (size_t k = 0; k < nb; k++) {
      if (ia[k] < 0 || ib[k] < 0) continue;
      int32_t in = tk_strmap_get_h(pm, tmp.p + no[k], nl[k], hn[k]);
      if (in >= 0) tk_pairmap_put(&m->merges, (uint32_t)ia[k], (uint32_t)ib[k], (uint32_t)(r0 + k), (uint32_t)in);
    }
  }
  free(tmp.p);
  return 0;
}

static int parse_model(ld *L, json_t *j, json_t *added) {
  ig_tok *t = L->t;
  tk_model *m = &t->model;
  const char *ty = jstr(j, "type");
  json_t *vocab = json_object_get(j, "vocab");
  if (!ty) ty = json_object_get(j, "merges") ? "BPE" : json_is_array(vocab) ? "Unigram" : "WordPiece";
  if (!strcmp(ty, "BPE")) m->type = TK_M_BPE;
  else if (!strcmp(ty, "Unigram")) m->type = TK_M_UNIGRAM;
  else if (!strcmp(ty, "WordPiece")) m->type = TK_M_WORDPIECE;
  else if (!strcmp(ty, "WordLevel")) m->type = TK_M_WORDLEVEL;
  else return fail(L, IG_TOK_ERR_PARSE, "unsupported model type '%s'", ty);

  int32_t max_id = -1;
  if (m->type == TK_M_UNIGRAM) {
    max_id = (int32_t)json_array_size(vocab) - 1;
  } else {
    if (!L->vocab.has && !json_is_object(vocab)) return fail(L, IG_TOK_ERR_PARSE, "model.vocab is not an object");
    int rc = lists_from_json(L, vocab, json_object_get(j, "merges"));
    if (rc) return rc;
    for (size_t i = 0; i < L->vocab.n; i++)
      if (L->vocab.id[i] > max_id) max_id = L->vocab.id[i];
  }
  if (m->type == TK_M_UNIGRAM && !json_is_array(vocab)) return fail(L, IG_TOK_ERR_PARSE, "Unigram vocab is not a list");
  m->n = max_id + 1;
  int32_t n_ids = m->n;
  for (size_t i = 0; i < json_array_size(added); i++) {
    json_int_t id = json_integer_value(json_object_get(json_array_get(added, i), "id"));
    if (id >= n_ids && id < INT32_MAX) n_ids = (int32_t)id + 1;
  }
  t->n_ids = n_ids;
  size_t nn = (size_t)(n_ids ? n_ids : 1);
  t->hoff = malloc(nn * sizeof(uint32_t));
  t->hlen = malloc(nn * sizeof(uint32_t));
  t->aoff = malloc(nn * sizeof(uint32_t));
  t->alen = malloc(nn * sizeof(uint32_t));
  t->flags = calloc(nn, 1);
  if (!t->hoff || !t->hlen || !t->aoff || !t->alen || !t->flags) return IG_TOK_ERR_NOMEM;
  memset(t->hlen, 0xFF, nn * sizeof(uint32_t));
  memset(t->alen, 0xFF, nn * sizeof(uint32_t));
  if (tk_buf_add(&t->hpool, "", 0)) return IG_TOK_ERR_NOMEM;

  if (m->type == TK_M_UNIGRAM) {
    m->scores = malloc(nn * sizeof(double));
    if (!m->scores) return IG_TOK_ERR_NOMEM;
    m->min_score = 0;
    for (int32_t i = 0; i < m->n; i++) {
      json_t *e = json_array_get(vocab, (size_t)i);
      json_t *s = json_array_get(e, 0);
      if (!json_is_string(s)) return fail(L, IG_TOK_ERR_PARSE, "Unigram vocab entry %d is not [piece, score]", i);
      m->scores[i] = json_number_value(json_array_get(e, 1));
      if (m->scores[i] < m->min_score) m->min_score = m->scores[i];
      if (add_hf_piece(t, i, json_string_value(s), json_string_length(s))) return IG_TOK_ERR_NOMEM;
    }
    json_t *u = json_object_get(j, "unk_id");
    m->unk_id = json_is_integer(u) ? (int32_t)json_integer_value(u) : -1;
    m->byte_fallback = jbool(j, "byte_fallback", 0);
  } else {
    char *q = realloc(t->hpool.p, t->hpool.len + L->vocab.pool.len + 1); /* one allocation for all pieces */
    if (!q) return IG_TOK_ERR_NOMEM;
    t->hpool.p = q;
    t->hpool.cap = t->hpool.len + L->vocab.pool.len + 1;
    for (size_t i = 0; i < L->vocab.n; i++) {
      int32_t id = L->vocab.id[i];
      if (id < 0 || id >= m->n) continue;
      if (add_hf_piece(t, id, L->vocab.pool.p + L->vocab.off[2 * i], L->vocab.off[2 * i + 1])) return IG_TOK_ERR_NOMEM;
    }
  }
  t->piece_map.pool = t->hpool.p;
  t->piece_map.off = t->hoff;
  t->piece_map.len = t->hlen;
  if (tk_strmap_init(&t->piece_map, (size_t)m->n)) return IG_TOK_ERR_NOMEM;
  tk_strmap_put_all(&t->piece_map, m->n, 0);

  const char *unk = jstr(j, "unk_token");
  if (m->type != TK_M_UNIGRAM) m->unk_id = unk ? tk_strmap_get(&t->piece_map, unk, strlen(unk)) : -1;
  if (m->type == TK_M_BPE) {
    m->byte_fallback = jbool(j, "byte_fallback", 0);
    m->fuse_unk = jbool(j, "fuse_unk", 0);
    m->ignore_merges = jbool(j, "ignore_merges", 0);
    const char *pre = jstr(j, "continuing_subword_prefix"), *suf = jstr(j, "end_of_word_suffix");
    if (pre && *pre) {
      m->prefix = dupn(pre, strlen(pre));
      m->prefix_len = strlen(pre);
    }
    if (suf && *suf) {
      m->suffix = dupn(suf, strlen(suf));
      m->suffix_len = strlen(suf);
    }
    json_t *dr = json_object_get(j, "dropout");
    if (json_is_number(dr) && json_number_value(dr) > 0)
      return fail(L, IG_TOK_ERR_PARSE, "BPE dropout is not supported (inference tokenizers use null)");
    m->raw = has_bytelevel(t->pretok);
    if (m->raw && (m->prefix || m->suffix))
      return fail(L, IG_TOK_ERR_PARSE, "ByteLevel pre-tokenizer with a BPE subword prefix/suffix is not supported");
  } else if (m->type == TK_M_WORDPIECE) {
    const char *pre = jstr(j, "continuing_subword_prefix");
    m->prefix = dupn(pre ? pre : "##", strlen(pre ? pre : "##"));
    m->prefix_len = strlen(m->prefix);
    json_t *mx = json_object_get(j, "max_input_chars_per_word");
    m->max_input_chars = json_is_integer(mx) ? (int)json_integer_value(mx) : 100;
  }
  if (m->type != TK_M_BPE && has_bytelevel(t->pretok))
    return fail(L, IG_TOK_ERR_PARSE, "ByteLevel pre-tokenizer is supported with BPE models only");
  int rc = build_model_keys(t);
  if (rc) return rc;
  /* Which characters precede a U+2581 inside a vocabulary entry? (see tk_model.meta_before) */
  m->meta_n = m->type == TK_M_BPE && !m->raw && !m->prefix && !m->suffix &&
                      tk_strmap_get(&m->map, "\xE2\x96\x81", 3) >= 0 /* else it could fuse into an unk run */
                  ? 0
                  : -1;
  for (int32_t id = 0; id < m->n && m->meta_n >= 0; id++) {
    if (m->klen[id] == UINT32_MAX) continue;
    const unsigned char *k = (const unsigned char *)m->kpool + m->koff[id];
    uint32_t kl = m->klen[id], prev = 0;
    for (uint32_t i = 0; i < kl;) {
      uint32_t cp;
      int l = tk_utf8_dec(k + i, kl - i, &cp);
      if (cp == 0x2581 && i > 0) {
        int seen = 0;
        for (int q = 0; q < m->meta_n; q++) seen |= m->meta_before[q] == prev;
        if (!seen) {
          if (m->meta_n == 32) {
            m->meta_n = -1;
            break;
          }
          m->meta_before[m->meta_n++] = prev;
        }
      }
      prev = cp;
      i += (uint32_t)l;
    }
  }
  if (rc) return rc;
  for (int b = 0; b < 256; b++) {
    char name[8];
    snprintf(name, sizeof name, "<0x%02X>", b);
    m->byte_tok[b] = tk_strmap_get(&t->piece_map, name, 6);
    char ch = (char)b;
    m->raw_byte[b] = m->raw ? tk_strmap_get(&m->map, &ch, 1) : -1;
  }
  if (m->type == TK_M_BPE) return parse_merges(L);
  return 0;
}

void tk_model_free(tk_model *m) {
  tk_strmap_free(&m->map);
  tk_pairmap_free(&m->merges);
  free(m->kpool);
  free(m->koff);
  free(m->klen);
  free(m->prefix);
  free(m->suffix);
  free(m->scores);
}

/* ---- added tokens ----------------------------------------------------------------------------------- */
static int trie_node(tk_trie *tr) {
  if (tr->n_nodes == tr->cap) {
    size_t nc = tr->cap ? tr->cap * 2 : 64;
    int32_t *q = realloc(tr->term, nc * sizeof *q);
    if (!q) return -1;
    tr->term = q;
    tr->cap = nc;
  }
  tr->term[tr->n_nodes] = -1;
  return (int)tr->n_nodes++;
}

static int trie_build(tk_trie *tr, const ig_tok *t, int normalized) {
  size_t total = 1;
  for (size_t i = 0; i < t->n_added; i++) total += t->added[i].len + t->added[i].norm_len;
  if (tk_pairmap_init(&tr->edges, total) || trie_node(tr) < 0) return IG_TOK_ERR_NOMEM;
  /* Special tokens first, then the others, as HF orders its patterns. */
  for (int pass = 0; pass < 2; pass++) {
    for (size_t i = 0; i < t->n_added; i++) {
      const tk_added *a = &t->added[i];
      if (a->normalized != normalized || a->special != (pass == 0)) continue;
      const char *s = normalized ? a->norm : a->content;
      size_t n = normalized ? a->norm_len : a->len;
      if (!n) continue;
      uint32_t node = 0;
      for (size_t k = 0; k < n; k++) {
        uint32_t r, child;
        if (!tk_pairmap_get(&tr->edges, node, (unsigned char)s[k], &r, &child)) {
          int c = trie_node(tr);
          if (c < 0) return IG_TOK_ERR_NOMEM;
          child = (uint32_t)c;
          tk_pairmap_put(&tr->edges, node, (unsigned char)s[k], 0, child);
        }
        node = child;
      }
      if (tr->term[node] < 0) tr->term[node] = (int32_t)i;
      tr->first[(unsigned char)s[0]] = 1;
      tr->empty = 0;
    }
  }
  return 0;
}

static int parse_added(ld *L, json_t *arr) {
  ig_tok *t = L->t;
  size_t n = json_array_size(arr);
  t->added = calloc(n ? n : 1, sizeof *t->added);
  if (!t->added) return IG_TOK_ERR_NOMEM;
  if (tk_buf_add(&t->apool, "", 0)) return IG_TOK_ERR_NOMEM;
  t->added_map.pool = NULL;
  for (size_t i = 0; i < n; i++) {
    json_t *o = json_array_get(arr, i);
    const char *c = jstr(o, "content");
    json_int_t id = json_integer_value(json_object_get(o, "id"));
    if (!c || !*c || id < 0 || id >= t->n_ids) continue;
    tk_added *a = &t->added[t->n_added];
    a->id = (int32_t)id;
    a->len = json_string_length(json_object_get(o, "content"));
    a->content = dupn(c, a->len);
    if (!a->content) return IG_TOK_ERR_NOMEM;
    a->special = (uint8_t)jbool(o, "special", 0);
    a->lstrip = (uint8_t)jbool(o, "lstrip", 0);
    a->rstrip = (uint8_t)jbool(o, "rstrip", 0);
    a->single_word = (uint8_t)jbool(o, "single_word", 0);
    a->normalized = (uint8_t)jbool(o, "normalized", !a->special);
    if (a->normalized) {
      if (t->norm) {
        a->norm = tk_normalize_str(t->norm, a->content, a->len, &a->norm_len);
        if (!a->norm) return IG_TOK_ERR_NOMEM;
      } else {
        a->norm = dupn(a->content, a->len);
        a->norm_len = a->len;
        if (!a->norm) return IG_TOK_ERR_NOMEM;
      }
    }
    t->aoff[id] = (uint32_t)t->apool.len;
    t->alen[id] = (uint32_t)a->len;
    if (tk_buf_add(&t->apool, c, a->len)) return IG_TOK_ERR_NOMEM;
    t->flags[id] |= TK_FLAG_ADDED | (a->special ? TK_FLAG_SPECIAL : 0);
    t->n_added++;
  }
  /* Special status is per content in HF (special_tokens_set): an id shares it when its content is special. */
  t->added_map.pool = t->apool.p;
  t->added_map.off = t->aoff;
  t->added_map.len = t->alen;
  if (tk_strmap_init(&t->added_map, t->n_added)) return IG_TOK_ERR_NOMEM;
  for (size_t i = 0; i < t->n_added; i++) tk_strmap_put(&t->added_map, t->added[i].id, 1);
  int rc;
  if ((rc = trie_build(&t->trie_raw, t, 0)) || (rc = trie_build(&t->trie_norm, t, 1))) return rc;
  return 0;
}

/* ---- tokenizer_config.json -------------------------------------------------------------------------- */
static const char *token_value(json_t *v) {
  if (json_is_string(v)) return json_string_value(v);
  if (json_is_object(v)) return jstr(v, "content");
  return NULL;
}

static int parse_config(ld *L, json_t *c) {
  ig_tok *t = L->t;
  const char *key;
  json_t *v;
  size_t nk = json_object_size(c);
  t->cfg_names = calloc(nk ? nk : 1, sizeof(char *));
  t->cfg_values = calloc(nk ? nk : 1, sizeof(char *));
  if (!t->cfg_names || !t->cfg_values) return IG_TOK_ERR_NOMEM;
  json_object_foreach(c, key, v) {
    size_t kl = strlen(key);
    const char *val = token_value(v);
    if (kl > 6 && !strcmp(key + kl - 6, "_token") && val) {
      t->cfg_names[t->n_cfg] = dupn(key, kl);
      t->cfg_values[t->n_cfg] = dupn(val, strlen(val));
      if (!t->cfg_names[t->n_cfg] || !t->cfg_values[t->n_cfg]) return IG_TOK_ERR_NOMEM;
      t->n_cfg++;
    }
  }
  const char *names[4] = {"bos_token", "eos_token", "pad_token", "unk_token"};
  char **dst[4] = {&t->bos, &t->eos, &t->pad, &t->unk};
  for (int i = 0; i < 4; i++) {
    const char *val = token_value(json_object_get(c, names[i]));
    if (val && !(*dst[i] = dupn(val, strlen(val)))) return IG_TOK_ERR_NOMEM;
  }
  json_t *ab = json_object_get(c, "add_bos_token"), *ae = json_object_get(c, "add_eos_token");
  t->add_bos = json_is_boolean(ab) ? json_is_true(ab) : -1;
  t->add_eos = json_is_boolean(ae) ? json_is_true(ae) : -1;
  json_t *ml = json_object_get(c, "model_max_length");
  double mlv = json_is_number(ml) ? json_number_value(ml) : 0;
  t->max_len = mlv > 0 && mlv < 1e18 ? (int64_t)mlv : 0;
  json_t *ct = json_object_get(c, "chat_template");
  if (json_is_string(ct)) {
    if (!(t->chat_template = dupn(json_string_value(ct), json_string_length(ct)))) return IG_TOK_ERR_NOMEM;
  } else if (json_is_array(ct)) {
    size_t n = json_array_size(ct);
    t->tmpl_names = calloc(n ? n : 1, sizeof(char *));
    t->tmpl_texts = calloc(n ? n : 1, sizeof(char *));
    if (!t->tmpl_names || !t->tmpl_texts) return IG_TOK_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
      json_t *e = json_array_get(ct, i);
      const char *nm = jstr(e, "name"), *tx = jstr(e, "template");
      if (!nm || !tx) continue;
      t->tmpl_names[t->n_tmpl] = dupn(nm, strlen(nm));
      t->tmpl_texts[t->n_tmpl] = dupn(tx, json_string_length(json_object_get(e, "template")));
      if (!t->tmpl_names[t->n_tmpl] || !t->tmpl_texts[t->n_tmpl]) return IG_TOK_ERR_NOMEM;
      t->n_tmpl++;
    }
  }
  return 0;
}

/* ---- entry points ----------------------------------------------------------------------------------- */
void ig_tok_free(ig_tok *t) {
  if (!t) return;
  free(t->hpool.p);
  free(t->hoff);
  free(t->hlen);
  tk_strmap_free(&t->piece_map);
  free(t->apool.p);
  free(t->aoff);
  free(t->alen);
  tk_strmap_free(&t->added_map);
  free(t->flags);
  tk_model_free(&t->model);
  for (size_t i = 0; i < t->n_added; i++) {
    free(t->added[i].content);
    free(t->added[i].norm);
  }
  free(t->added);
  tk_trie *tries[2] = {&t->trie_raw, &t->trie_norm};
  for (int i = 0; i < 2; i++) {
    tk_pairmap_free(&tries[i]->edges);
    free(tries[i]->term);
  }
  tk_norm_free(t->norm);
  free(t->norm);
  tk_pretok_free(t->pretok);
  free(t->pretok);
  tk_post_free(t->post);
  free(t->post);
  tk_dec_free(t->dec);
  free(t->dec);
  free(t->bos);
  free(t->eos);
  free(t->pad);
  free(t->unk);
  free(t->chat_template);
  for (size_t i = 0; i < t->n_tmpl; i++) {
    free(t->tmpl_names[i]);
    free(t->tmpl_texts[i]);
  }
  free(t->tmpl_names);
  free(t->tmpl_texts);
  for (size_t i = 0; i < t->n_cfg; i++) {
    free(t->cfg_names[i]);
    free(t->cfg_values[i]);
  }
  free(t->cfg_names);
  free(t->cfg_values);
  free(t);
}

static int load_tokenizer_json(ld *L, json_t *root) {
  ig_tok *t = L->t;
  int rc;
  json_t *j;
  if (!json_is_object(root) || !json_is_object(json_object_get(root, "model")))
    return fail(L, IG_TOK_ERR_PARSE, "tokenizer.json has no \"model\" object");
  if ((j = json_object_get(root, "normalizer")) && !json_is_null(j)) {
    if (!(t->norm = calloc(1, sizeof *t->norm))) return IG_TOK_ERR_NOMEM;
    if ((rc = parse_norm(L, j, t->norm))) return rc;
  }
  if ((j = json_object_get(root, "pre_tokenizer")) && !json_is_null(j)) {
    if (!(t->pretok = calloc(1, sizeof *t->pretok))) return IG_TOK_ERR_NOMEM;
    if ((rc = parse_pretok(L, j, t->pretok))) return rc;
  }
  if ((j = json_object_get(root, "decoder")) && !json_is_null(j)) {
    if (!(t->dec = calloc(1, sizeof *t->dec))) return IG_TOK_ERR_NOMEM;
    if ((rc = parse_dec(L, j, t->dec))) return rc;
  }
  json_t *added = json_object_get(root, "added_tokens");
  if ((rc = parse_model(L, json_object_get(root, "model"), added))) return rc;
  if ((rc = parse_added(L, added))) return rc;
  if ((j = json_object_get(root, "post_processor")) && !json_is_null(j)) {
    if (!(t->post = calloc(1, sizeof *t->post))) return IG_TOK_ERR_NOMEM;
    if ((rc = parse_post(L, j, t->post))) return rc;
  }
  return 0;
}

int ig_tok_load_mem(ig_tok **out, const char *json, size_t len, const char *config_json, size_t config_len,
                    char *err, size_t errlen) {
  *out = NULL;
  ig_tok *t = calloc(1, sizeof *t);
  if (!t) return IG_TOK_ERR_NOMEM;
  t->add_bos = t->add_eos = -1;
  ld L;
  memset(&L, 0, sizeof L);
  L.t = t;
  L.err = err;
  L.errlen = errlen;
  json_error_t je;
  char *rest = NULL;
  size_t rest_len = 0;
  int rc = tk_json_extract_model(json, len, &rest, &rest_len, &L.vocab, &L.merges);
  if (rc < 0) {
    free(t);
    return IG_TOK_ERR_NOMEM;
  }
  json_t *root = rc == 0 ? json_loadb(rest, rest_len, JSON_ALLOW_NUL, &je) : json_loadb(json, len, JSON_ALLOW_NUL, &je);
  free(rest);
  if (!root) {
    rc = fail(&L, IG_TOK_ERR_PARSE, "tokenizer.json: line %d column %d: %s", je.line, je.column, je.text);
  } else {
    rc = load_tokenizer_json(&L, root);
    json_decref(root);
  }
  tk_strlist_free(&L.vocab);
  tk_strlist_free(&L.merges);
  if (!rc && config_json) {
    json_t *c = json_loadb(config_json, config_len, JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &je);
    if (!c) rc = fail(&L, IG_TOK_ERR_PARSE, "tokenizer_config.json: line %d column %d: %s", je.line, je.column, je.text);
    else if (!json_is_object(c)) rc = fail(&L, IG_TOK_ERR_PARSE, "tokenizer_config.json is not an object");
    else rc = parse_config(&L, c);
    json_decref(c);
  }
  if (rc) {
    if (rc == IG_TOK_ERR_NOMEM) fail(&L, rc, "out of memory loading the tokenizer");
    ig_tok_free(t);
    return rc;
  }
  *out = t;
  return 0;
}

int ig_tok_load_files(ig_tok **out, const char *tokenizer_json, const char *config_path, char *err, size_t errlen) {
  char *js = NULL, *cs = NULL;
  size_t jl = 0, cl = 0;
  *out = NULL;
  if (ig_file_read(tokenizer_json, (size_t)1 << 31, &js, &jl, err, errlen)) return IG_TOK_ERR_IO;
  if (config_path && ig_file_read(config_path, (size_t)1 << 28, &cs, &cl, err, errlen)) {
    free(js);
    return IG_TOK_ERR_IO;
  }
  int rc = ig_tok_load_mem(out, js, jl, cs, cl, err, errlen);
  free(js);
  free(cs);
  return rc;
}

int ig_tok_load(ig_tok **out, const char *dir, char *err, size_t errlen) {
  size_t dl = strlen(dir);
  char *p1 = malloc(dl + 32), *p2 = malloc(dl + 32), *p3 = malloc(dl + 32);
  *out = NULL;
  if (!p1 || !p2 || !p3) {
    free(p1), free(p2), free(p3);
    if (err && errlen) snprintf(err, errlen, "out of memory");
    return IG_TOK_ERR_NOMEM;
  }
  snprintf(p1, dl + 32, "%s/tokenizer.json", dir);
  snprintf(p2, dl + 32, "%s/tokenizer_config.json", dir);
  snprintf(p3, dl + 32, "%s/chat_template.jinja", dir);
  int rc;
  if (!ig_file_exists(p1)) {
    if (err && errlen) snprintf(err, errlen, "%s: no tokenizer.json in this directory", dir);
    rc = IG_TOK_ERR_IO;
  } else {
    rc = ig_tok_load_files(out, p1, ig_file_exists(p2) ? p2 : NULL, err, errlen);
  }
  if (!rc && ig_file_exists(p3)) {
    char *tx = NULL;
    size_t tl = 0;
    if (ig_file_read(p3, (size_t)1 << 26, &tx, &tl, err, errlen)) {
      ig_tok_free(*out);
      *out = NULL;
      rc = IG_TOK_ERR_IO;
    } else {
      free((*out)->chat_template);
      (*out)->chat_template = tx;
    }
  }
  free(p1);
  free(p2);
  free(p3);
  return rc;
}
