/* tok/tok_int: the structures behind ig_tok, shared by the tok/ sources (not a public header).
 * Pipeline as in HF tokenizers: added-token split -> normalizer -> pre-tokenizer -> model -> post-processor;
 * decoding: id -> token string -> decoder chain. */
#ifndef IG_TOK_INT_H
#define IG_TOK_INT_H
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "tok/tok.h"

/* ---- hash maps -------------------------------------------------------------------------------------- */
/* String -> id over a string table held elsewhere (keys are (off,len) into pool). A slot keeps the hash, id,
 * offset and length together, so a lookup touches one slot line and the key bytes. */
typedef struct tk_slot {
  uint32_t hash, id1; /* id1 = id + 1; 0 = empty */
  uint32_t off, len;
} tk_slot;
typedef struct tk_strmap {
  tk_slot *slot;
  uint32_t mask;
  const char *pool; /* base of the key bytes */
  const uint32_t *off, *len; /* key of id i */
} tk_strmap;
uint32_t tk_hash(const void *p, size_t n);
int tk_strmap_init(tk_strmap *m, size_t n_keys);
void tk_strmap_free(tk_strmap *m);
/* Inserts id (key read through m->pool/off/len); an existing equal key is replaced when replace != 0. */
void tk_strmap_put(tk_strmap *m, int32_t id, int replace);
/* Inserts every id 0..n-1 that has a key (len != UINT32_MAX), in id order, as tk_strmap_put. */
void tk_strmap_put_all(tk_strmap *m, int32_t n, int replace);
/* Lookup with a precomputed tk_hash (callers that prefetch). */
static inline int32_t tk_strmap_get_h(const tk_strmap *m, const char *s, size_t n, uint32_t h) {
  if (!m->slot) return -1;
  uint32_t i = h & m->mask;
  for (;;) {
    const tk_slot *sl = &m->slot[i];
    if (!sl->id1) return -1;
    if (sl->hash == h && sl->len == n && !memcmp(m->pool + sl->off, s, n)) return (int32_t)sl->id1 - 1;
    i = (i + 1) & m->mask;
  }
}
static inline int32_t tk_strmap_get(const tk_strmap *m, const char *s, size_t n) {
  return tk_strmap_get_h(m, s, n, tk_hash(s, n));
}
static inline void tk_strmap_prefetch(const tk_strmap *m, uint32_t h) {
  if (m->slot) __builtin_prefetch(&m->slot[h & m->mask]);
}

/* (a,b) pair of ids -> (rank, new id). */
typedef struct tk_pair {
  uint64_t key; /* (a<<32|b)+1, 0 = empty */
  uint32_t rank, val;
} tk_pair;
typedef struct tk_pairmap {
  tk_pair *e;
  uint32_t mask;
} tk_pairmap;
int tk_pairmap_init(tk_pairmap *m, size_t n);
void tk_pairmap_free(tk_pairmap *m);
void tk_pairmap_put(tk_pairmap *m, uint32_t a, uint32_t b, uint32_t rank, uint32_t val);
static inline uint32_t tk_pair_slot(const tk_pairmap *m, uint64_t k) {
  return (uint32_t)((k * 0x9E3779B97F4A7C15ull) >> 32) & m->mask;
}
/* Returns 1 and fills rank/val when present. */
static inline int tk_pairmap_get(const tk_pairmap *m, uint32_t a, uint32_t b, uint32_t *rank, uint32_t *val) {
  if (!m->e) return 0;
  uint64_t k = (((uint64_t)a << 32) | b) + 1;
  uint32_t i = tk_pair_slot(m, k);
  for (;;) {
    const tk_pair *p = &m->e[i];
    if (p->key == k) {
      *rank = p->rank;
      *val = p->val;
      return 1;
    }
    if (!p->key) return 0;
    i = (i + 1) & m->mask;
  }
}

/* A growable byte pool. */
typedef struct tk_buf {
  char *p;
  size_t len, cap;
} tk_buf;
int tk_buf_add(tk_buf *b, const void *p, size_t n); /* returns 0 / -1 */

/* A flat list of strings in a pool: entry i is pool[off[2i] .. +off[2i+1]), with an id for vocabularies.
 * Merges use two entries per merge (a, b). */
typedef struct tk_strlist {
  tk_buf pool;
  uint32_t *off;
  int32_t *id;
  size_t n, cap;
  int has;
} tk_strlist;
void tk_strlist_free(tk_strlist *l);
int tk_strlist_add(tk_strlist *l, const char *s, size_t n, int32_t id);
/* Reads model.vocab (object form) and model.merges of tokenizer.json without a general parser; *rest gets
 * a malloc'd copy of the document with those values emptied. Returns 0, 1 (not applicable), -1 (no memory). */
int tk_json_extract_model(const char *js, size_t n, char **rest, size_t *rest_len, tk_strlist *vocab,
                          tk_strlist *merges);

/* ---- UTF-8 helpers ---------------------------------------------------------------------------------- */
/* Decodes one code point of valid UTF-8 at p (n bytes left); returns its length. */
static inline int tk_utf8_dec(const unsigned char *p, size_t n, uint32_t *cp) {
  unsigned c = p[0];
  if (c < 0x80 || n < 2) { *cp = c; return 1; }
  if (c < 0xE0) { *cp = ((c & 0x1F) << 6) | (p[1] & 0x3F); return 2; }
  if (c < 0xF0 || n < 4) { *cp = ((c & 0x0F) << 12) | ((p[1] & 0x3F) << 6) | (n > 2 ? (p[2] & 0x3F) : 0); return n > 2 ? 3 : 2; }
  *cp = ((c & 0x07) << 18) | ((p[1] & 0x3F) << 12) | ((p[2] & 0x3F) << 6) | (p[3] & 0x3F);
  return 4;
}
static inline int tk_utf8_len(unsigned char c) { return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4; }
int tk_utf8_enc(uint32_t cp, char *out);
/* Appends src with invalid sequences replaced by U+FFFD as Rust's from_utf8_lossy / WHATWG do. */
int tk_utf8_lossy(tk_buf *out, const char *src, size_t n);
size_t tk_utf8_count(const char *s, size_t n); /* code points */

/* GPT-2 byte-level map: byte -> code point, and its inverse (-1 when not in the map). */
extern const uint16_t tk_byte2cp[256];
int tk_cp2byte(uint32_t cp);

/* ---- components ------------------------------------------------------------------------------------- */
enum { TK_N_NONE, TK_N_SEQ, TK_N_NFC, TK_N_NFD, TK_N_NFKC, TK_N_NFKD, TK_N_LOWER, TK_N_STRIP, TK_N_STRIP_ACCENTS,
       TK_N_REPLACE, TK_N_PREPEND, TK_N_BERT, TK_N_PRECOMPILED, TK_N_NMT };
typedef struct tk_norm {
  int type;
  struct tk_norm *subs;
  int nsubs;
  char *pat, *content; /* Replace: string pattern (or NULL with re) and content; Prepend: content */
  size_t pat_len, content_len;
  pcre2_code *re;
  int left, right;                             /* Strip */
  int clean_text, chinese, strip_accents, lowercase; /* BertNormalizer (strip_accents -1 = follow lowercase) */
} tk_norm;

enum { TK_P_NONE, TK_P_SEQ, TK_P_SPLIT, TK_P_BYTELEVEL, TK_P_METASPACE, TK_P_WHITESPACE, TK_P_WSSPLIT, TK_P_BERT,
       TK_P_DIGITS, TK_P_PUNCT, TK_P_CHARDELIM, TK_P_UNICODE_SCRIPTS };
enum { TK_B_REMOVED, TK_B_ISOLATED, TK_B_MERGED_PREV, TK_B_MERGED_NEXT, TK_B_CONTIGUOUS };
enum { TK_PREPEND_ALWAYS, TK_PREPEND_FIRST, TK_PREPEND_NEVER };
typedef struct tk_pretok {
  int type;
  struct tk_pretok *subs;
  int nsubs;
  pcre2_code *re;     /* Split (regex or escaped string), ByteLevel use_regex */
  int behavior, invert;
  int add_prefix_space; /* ByteLevel */
  uint32_t repl;        /* Metaspace replacement char */
  char repl_s[8];
  int repl_len;
  int prepend_scheme, split; /* Metaspace */
  int individual_digits;     /* Digits */
  uint32_t delim;            /* CharDelimiterSplit */
} tk_pretok;

enum { TK_D_NONE, TK_D_SEQ, TK_D_BYTELEVEL, TK_D_METASPACE, TK_D_BYTEFALLBACK, TK_D_FUSE, TK_D_STRIP, TK_D_REPLACE,
       TK_D_WORDPIECE, TK_D_BPE, TK_D_CTC };
typedef struct tk_dec {
  int type;
  struct tk_dec *subs;
  int nsubs;
  char *pat, *content;
  size_t pat_len, content_len;
  pcre2_code *re;
  int start, stop;          /* Strip */
  uint32_t repl;            /* Metaspace */
  int prepend_scheme;
  char *prefix;             /* WordPiece prefix / BPEDecoder suffix */
  int cleanup;
} tk_dec;

enum { TK_PP_NONE, TK_PP_SEQ, TK_PP_TEMPLATE, TK_PP_BYTELEVEL, TK_PP_ROBERTA, TK_PP_BERT };
typedef struct tk_post {
  int type;
  struct tk_post *subs;
  int nsubs;
  /* Template "single": items; id >= 0 is a special token id list index, -1 = the sequence */
  int32_t *pre_ids, *post_ids; /* ids before / after the sequence (flattened) */
  size_t n_pre, n_post;
  int trim_offsets, add_prefix_space; /* ByteLevel / RobertaProcessing: offsets lose leading/trailing spaces */
} tk_post;

enum { TK_M_BPE, TK_M_UNIGRAM, TK_M_WORDPIECE, TK_M_WORDLEVEL };
typedef struct tk_model {
  int type;
  int32_t n;              /* ids 0..n-1 belong to the model */
  tk_strmap map;          /* key -> id (raw bytes for byte-level BPE) */
  char *kpool;            /* key bytes */
  uint32_t *koff, *klen;  /* per id; klen = UINT32_MAX when the id has no key */
  int32_t unk_id;
  /* BPE */
  tk_pairmap merges;
  int byte_fallback, fuse_unk, ignore_merges;
  int raw;                /* byte-level: keys are raw bytes, words are raw bytes */
  char *prefix, *suffix;  /* continuing_subword_prefix / end_of_word_suffix (NULL or non-empty) */
  size_t prefix_len, suffix_len;
  int32_t byte_tok[256];  /* <0xXX> token ids for byte_fallback (-1 if absent) */
  int32_t raw_byte[256];  /* raw mode: id of each single byte (-1 if absent) */
  /* SentencePiece-style words may be cut before each U+2581 that follows none of these characters: no
   * vocabulary entry holds such a pair, so no merge can cross the cut (meta_n < 0: never cut). */
  uint32_t meta_before[32];
  int meta_n;
  /* Unigram */
  double *scores;
  double min_score;
  uint32_t max_key_len; /* longest piece, in bytes */
  /* WordPiece */
  int max_input_chars;
} tk_model;

typedef struct tk_added {
  int32_t id;
  char *content; /* as given */
  size_t len;
  char *norm; /* normalized content for normalized tokens */
  size_t norm_len;
  uint8_t special, lstrip, rstrip, normalized, single_word;
} tk_added;

/* Byte trie for leftmost-longest matching of added tokens. */
typedef struct tk_trie {
  tk_pairmap edges;      /* (node, byte) -> child */
  int32_t *term;         /* node -> added index, -1 */
  size_t n_nodes, cap;
  uint8_t first[256];    /* bytes that start a pattern */
  int empty;
} tk_trie;

#define TK_FLAG_SPECIAL 1
#define TK_FLAG_ADDED 2

struct ig_tok {
  int32_t n_ids;         /* model ids and added ids are all < n_ids */
  tk_buf hpool;          /* model token strings as tokenizer.json spells them */
  uint32_t *hoff, *hlen; /* per id; hlen = UINT32_MAX when the model has no such id */
  tk_strmap piece_map;   /* model token string -> id */
  tk_buf apool;          /* added token contents */
  uint32_t *aoff, *alen; /* per id; alen = UINT32_MAX when not an added token */
  tk_strmap added_map;   /* added content -> id */
  uint8_t *flags;        /* TK_FLAG_* per id */
  tk_model model;
  tk_added *added;
  size_t n_added;
  tk_trie trie_raw, trie_norm;
  tk_norm *norm;
  tk_pretok *pretok;
  tk_post *post;
  tk_dec *dec;
  /* config */
  char *bos, *eos, *pad, *unk;
  int add_bos, add_eos;
  int64_t max_len;
  char *chat_template;
  char **tmpl_names, **tmpl_texts;
  size_t n_tmpl;
  char **cfg_names, **cfg_values;
  size_t n_cfg;
};

/* ---- per-call encode machinery (tok_encode.c, tok_pretok.c, tok_norm.c, tok_model.c) ---------------- */
/* A piece of text: bytes s[off..off+len) of a buffer; a (2 per byte, original [start,stop)) maps bytes to
 * the input, or NULL when the buffer is the input itself shifted by base. */
typedef struct tk_piece {
  const char *s;
  const uint32_t *a;
  uint32_t base;
  uint32_t off, len;
} tk_piece;

typedef struct tk_pieces {
  tk_piece *v;
  size_t n, cap;
} tk_pieces;

typedef struct tk_sym {
  int32_t id;
  int32_t prev, next;
  uint32_t start, len; /* bytes in the word */
} tk_sym;

typedef struct tk_merge {
  uint32_t rank, pos;
  int32_t new_id;
} tk_merge;

typedef struct tk_ctx {
  const ig_tok *t;
  pcre2_match_data *md;
  pcre2_jit_stack *jit;
  pcre2_match_context *mctx;
  void **bufs; /* owned buffers of this call */
  size_t n_bufs, cap_bufs;
  tk_pieces p1, p2; /* ping-pong piece lists */
  tk_sym *sym;
  size_t cap_sym;
  tk_merge *heap;
  size_t cap_heap;
  double *best;
  size_t cap_best;
  char *word;
  size_t cap_word;
  ig_tok_enc *out;
  int want_offsets;
  int oom;
  int re_error; /* a PCRE2 match error code, when matching failed */
  /* BPE word cache of this call (long inputs repeat words): word bytes -> (id, start, len) triples */
  struct tk_centry *cache;
  uint32_t cache_mask, cache_n;
  tk_buf ckeys;
  uint32_t *cvals;
  size_t n_cvals, cap_cvals;
} tk_ctx;
typedef struct tk_centry {
  uint32_t hash, key_off, key_len, val_off, val_n; /* key_len 0 = empty */
} tk_centry;

int tk_ctx_adopt(tk_ctx *c, void *p);   /* p is freed with the context (on failure the caller frees) */
void tk_ctx_release(tk_ctx *c);
int tk_pieces_push(tk_pieces *p, tk_piece x);
int tk_out_push(tk_ctx *c, int32_t id, uint32_t start, uint32_t stop);
/* Original offsets of bytes [off, off+len) of a piece's buffer. */
static inline void tk_piece_orig(const tk_piece *p, uint32_t off, uint32_t len, uint32_t *s, uint32_t *e) {
  if (!p->a) {
    *s = p->base + off;
    *e = p->base + off + len;
  } else if (len == 0) {
    *s = *e = p->a[2 * off];
  } else {
    *s = p->a[2 * off];
    *e = p->a[2 * (off + len - 1) + 1];
  }
}

/* Regex: every match of re in s[0..n): calls fn(start, end) for each; returns 0 or -1. */
int tk_re_each(tk_ctx *c, const pcre2_code *re, const char *s, size_t n,
               int (*fn)(void *arg, size_t start, size_t end), void *arg);
pcre2_code *tk_re_compile(const char *pat, size_t len, int literal, char *err, size_t errlen);

/* Normalizes one piece into a new buffer (owned by c); returns the normalized piece. */
int tk_normalize(tk_ctx *c, const tk_norm *n, const tk_piece *in, tk_piece *out);
/* Normalizes a standalone string (for added-token patterns); malloc'd result. */
char *tk_normalize_str(const tk_norm *n, const char *s, size_t len, size_t *out_len);
/* Pre-tokenizes: in -> out (both lists owned by the caller). */
int tk_pretokenize(tk_ctx *c, const tk_pretok *p, tk_pieces *in, tk_pieces *out);
/* Model: tokenizes one word piece and appends tokens to c->out. */
int tk_model_tokenize(tk_ctx *c, const tk_model *m, const tk_piece *w);

/* Decoding: token strings -> text (tok_decode.c). */
int tk_decode_tokens(const ig_tok *t, const int32_t *ids, size_t n, int skip_special, ig_str *out);

/* Building (tok_load.c helpers used by tok_model.c). */
void tk_model_free(tk_model *m);
void tk_norm_free(tk_norm *n);
void tk_pretok_free(tk_pretok *p);
void tk_dec_free(tk_dec *d);
void tk_post_free(tk_post *p);

#endif
