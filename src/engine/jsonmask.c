/* engine/jsonmask: see jsonmask.h. The recognizer is one switch over the grammar states below; the hot case,
 * a plain ASCII byte inside a string, changes nothing and is tested first. The vocabulary trie is stored in
 * depth-first preorder (a few node arrays, one allocation each), so a mask is one linear pass over the nodes
 * that jumps past the whole subtree of every byte that fails. */
#include "engine/jsonmask.h"
#include "engine/jsonmask_int.h"
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- the recognizer -------------------------------------------------------------------------------------- */

enum {
  ST_START,     /* before the top-level '{' */
  ST_OBJ_OPEN,  /* after '{': a key or '}' */
  ST_OBJ_KEY,   /* after ',' in an object: a key */
  ST_COLON,     /* after a key: ':' */
  ST_VALUE,     /* after ':', or after ',' in an array: a value */
  ST_ARR_OPEN,  /* after '[': a value or ']' */
  ST_AFTER,     /* after a value inside a container: ',' or the container's closer */
  /* The states above sit between tokens and take whitespace; none below does (a number ends at it). */
  ST_STR,       /* inside a string; aux & AUX_KEY: it is an object key (IG_JSON_FSM_IN_STRING) */
  ST_ESC,       /* after '\' */
  ST_HEX,       /* inside \uXXXX; aux & 7: hex digits still to come */
  ST_UTF8,      /* inside a multibyte character; aux & 3: continuation bytes left, (aux >> 2) & 7: next one's range */
  ST_LIT,       /* inside true/false/null; aux: index in LITS of the byte expected next */
  ST_NUM_MINUS, /* after '-': a digit must follow */
  ST_NUM_ZERO,  /* a leading 0: '.', 'e' or the end of the number, never another digit */
  ST_NUM_INT,   /* integer digits */
  ST_NUM_DOT,   /* after '.': a digit must follow */
  ST_NUM_FRAC,  /* fraction digits */
  ST_NUM_E,     /* after 'e': a sign or a digit must follow */
  ST_NUM_ESIGN, /* after the exponent's sign: a digit must follow */
  ST_NUM_EXP,   /* exponent digits */
  ST_DONE,      /* the top-level object is closed: nothing may follow */
  ST_DEAD,      /* an invalid byte was fed */
};

_Static_assert(ST_STR == IG_JSON_FSM_IN_STRING, "jsonmask_int.h names ST_STR");

#define AUX_KEY 0x80u /* in the string states: the string is an object key, so ':' follows it */

/* The literals back to back; a literal's state is the index of its next byte, and its NUL ends it. */
static const char LITS[] = "true\0false\0null";
enum { LIT_TRUE = 1, LIT_FALSE = 6, LIT_NULL = 12 };

/* Range of the first continuation byte after a lead byte (RFC 3629 table): 0 for most leads, the others keep
 * out overlong forms (E0, F0), UTF-16 surrogates (ED) and code points past U+10FFFF (F4). Later continuation
 * bytes are always 80..BF. */
static const uint8_t CONT_LO[5] = {0x80, 0xA0, 0x80, 0x90, 0x80};
static const uint8_t CONT_HI[5] = {0xBF, 0xBF, 0x9F, 0xBF, 0x8F};

static inline int is_ws(unsigned c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
static inline int is_digit(unsigned c) { return c - '0' < 10u; }
static inline int is_hex(unsigned c) { return is_digit(c) || (c | 0x20u) - 'a' < 6u; }

static int open_container(ig_json_fsm *f, unsigned is_array) {
  if (f->depth >= IG_JSON_MAX_DEPTH) return -1;
  f->arrays = (f->arrays & ~(1u << f->depth)) | (is_array << f->depth);
  f->depth++;
  f->state = is_array ? ST_ARR_OPEN : ST_OBJ_OPEN;
  return 0;
}

static int close_container(ig_json_fsm *f, unsigned is_array) {
  if (((f->arrays >> (f->depth - 1)) & 1u) != is_array) return -1;
  f->depth--;
  f->state = f->depth ? ST_AFTER : ST_DONE;
  return 0;
}

static int start_string(ig_json_fsm *f, unsigned key) {
  f->state = ST_STR;
  f->aux = key ? AUX_KEY : 0;
  return 0;
}

static int start_value(ig_json_fsm *f, unsigned c) {
  switch (c) {
  case '{': return open_container(f, 0);
  case '[': return open_container(f, 1);
  case '"': return start_string(f, 0);
  case '-': f->state = ST_NUM_MINUS; return 0;
  case '0': f->state = ST_NUM_ZERO; return 0;
  case 't': f->state = ST_LIT, f->aux = LIT_TRUE; return 0;
  case 'f': f->state = ST_LIT, f->aux = LIT_FALSE; return 0;
  case 'n': f->state = ST_LIT, f->aux = LIT_NULL; return 0;
  default:
    if (!is_digit(c)) return -1;
    f->state = ST_NUM_INT;
    return 0;
  }
}

/* A byte between tokens (the states up to ST_AFTER). base: containers open around the fsm's value (a schema's). */
static int structural(ig_json_fsm *f, unsigned c, unsigned base) {
  if (is_ws(c)) return ig_json_ws_step(&f->ws, c, ig_json_max_indent(base + f->depth));
  f->ws = 0;
  switch (f->state) {
  case ST_START: return c == '{' ? open_container(f, 0) : -1;
  case ST_OBJ_OPEN:
    if (c == '}') return close_container(f, 0);
    return c == '"' ? start_string(f, 1) : -1;
  case ST_OBJ_KEY: return c == '"' ? start_string(f, 1) : -1;
  case ST_COLON:
    if (c != ':') return -1;
    f->state = ST_VALUE;
    return 0;
  case ST_VALUE: return start_value(f, c);
  case ST_ARR_OPEN: return c == ']' ? close_container(f, 1) : start_value(f, c);
  case ST_AFTER:
    if (c == '}') return close_container(f, 0);
    if (c == ']') return close_container(f, 1);
    if (c != ',') return -1;
    f->state = (f->arrays >> (f->depth - 1)) & 1u ? ST_VALUE : ST_OBJ_KEY;
    return 0;
  }
  return -1;
}

/* A number may end here: only at a delimiter, which then belongs to the container. */
static int end_number(ig_json_fsm *f, unsigned c, unsigned base) {
  if (f->depth == 0 || (c != ',' && c != '}' && c != ']' && !is_ws(c))) return -1; /* a lone number: the caller's */
  f->state = ST_AFTER;
  return structural(f, c, base);
}

/* A byte inside a string other than plain printable ASCII. */
static int string_byte(ig_json_fsm *f, unsigned c) {
  unsigned key = f->aux & AUX_KEY, left, range = 0;
  if (c == '"') {
    f->state = key ? ST_COLON : f->depth ? ST_AFTER : ST_DONE; /* depth 0: a lone value (init_value) */
    return 0;
  }
  if (c == '\\') {
    f->state = ST_ESC;
    return 0;
  }
  if (c >= 0x20 && c < 0x80) return 0;
  if (c < 0xC2) return -1; /* control bytes, a continuation byte with no lead, overlong C0/C1 */
  if (c < 0xE0) left = 1;
  else if (c < 0xF0) left = 2, range = c == 0xE0 ? 1 : c == 0xED ? 2 : 0;
  else if (c < 0xF5) left = 3, range = c == 0xF0 ? 3 : c == 0xF4 ? 4 : 0;
  else return -1;
  f->state = ST_UTF8;
  f->aux = (uint8_t)(key | range << 2 | left);
  return 0;
}

static int step_slow(ig_json_fsm *f, unsigned c, unsigned base) {
  unsigned key = f->aux & AUX_KEY;
  switch (f->state) {
  case ST_STR: return string_byte(f, c);
  case ST_ESC:
    switch (c) {
    case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't': f->state = ST_STR; return 0;
    case 'u': f->state = ST_HEX, f->aux = (uint8_t)(key | 4); return 0;
    default: return -1;
    }
  case ST_HEX:
    if (!is_hex(c)) return -1;
    if ((f->aux & 7) == 1) f->state = ST_STR, f->aux = (uint8_t)key;
    else f->aux--;
    return 0;
  case ST_UTF8: {
    unsigned range = (f->aux >> 2) & 7, left = f->aux & 3;
    if (c < CONT_LO[range] || c > CONT_HI[range]) return -1;
    if (left == 1) f->state = ST_STR, f->aux = (uint8_t)key;
    else f->aux = (uint8_t)(key | (left - 1));
    return 0;
  }
  case ST_LIT:
    if (c != (unsigned char)LITS[f->aux]) return -1;
    if (LITS[++f->aux] == 0) f->state = f->depth ? ST_AFTER : ST_DONE;
    return 0;
  case ST_NUM_MINUS:
    if (!is_digit(c)) return -1;
    f->state = c == '0' ? ST_NUM_ZERO : ST_NUM_INT;
    return 0;
  case ST_NUM_ZERO:
  case ST_NUM_INT:
  case ST_NUM_FRAC:
    if (is_digit(c) && f->state != ST_NUM_ZERO) return 0;
    if (c == '.' && f->state != ST_NUM_FRAC) {
      f->state = ST_NUM_DOT;
      return 0;
    }
    if (c == 'e' || c == 'E') {
      f->state = ST_NUM_E;
      return 0;
    }
    return end_number(f, c, base);
  case ST_NUM_DOT:
    if (!is_digit(c)) return -1;
    f->state = ST_NUM_FRAC;
    return 0;
  case ST_NUM_E:
    if (c == '+' || c == '-') {
      f->state = ST_NUM_ESIGN;
      return 0;
    }
    /* fall through */
  case ST_NUM_ESIGN:
    if (!is_digit(c)) return -1;
    f->state = ST_NUM_EXP;
    return 0;
  case ST_NUM_EXP: return is_digit(c) ? 0 : end_number(f, c, base);
  case ST_DONE:
  case ST_DEAD: return -1;
  default: return structural(f, c, base);
  }
}

/* One byte: 0 when it keeps the document valid, -1 when not (*f is then garbage). */
static inline int step(ig_json_fsm *f, unsigned c, unsigned base) {
  if (f->state == ST_STR && c >= 0x20 && c < 0x80 && c != '"' && c != '\\') return 0;
  return step_slow(f, c, base);
}

void ig_json_fsm_init(ig_json_fsm *f) {
  memset(f, 0, sizeof *f);
  f->state = ST_START;
}

int ig_json_fsm_feed(ig_json_fsm *f, const unsigned char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (step(f, s[i], 0)) {
      f->state = ST_DEAD; /* stays invalid (and not complete) whatever is fed next */
      return -1;
    }
  return 0;
}

int ig_json_fsm_complete(const ig_json_fsm *f) { return f->state == ST_DONE; }

void ig_json_fsm_init_value(ig_json_fsm *f) {
  memset(f, 0, sizeof *f);
  f->state = ST_VALUE;
}

int ig_json_fsm_step(ig_json_fsm *f, unsigned c, unsigned base) { return step(f, c, base); }

int ig_json_fsm_number_done(const ig_json_fsm *f) {
  return f->depth == 0 && (f->state == ST_NUM_ZERO || f->state == ST_NUM_INT || f->state == ST_NUM_FRAC ||
                           f->state == ST_NUM_EXP);
}

/* ---- the vocabulary trie --------------------------------------------------------------------------------- */

typedef struct tok_ref {
  const unsigned char *p;
  size_t len;
  int32_t id;
} tok_ref;

/* Byte order, a prefix before its extensions, equal strings by id: the trie's preorder. */
static int cmp_tok(const void *a, const void *b) {
  const tok_ref *x = a, *y = b;
  int c = memcmp(x->p, y->p, x->len < y->len ? x->len : y->len);
  if (c) return c;
  if (x->len != y->len) return x->len < y->len ? -1 : 1;
  return (x->id > y->id) - (x->id < y->id);
}

static size_t common_prefix(const tok_ref *a, const tok_ref *b) {
  size_t n = a->len < b->len ? a->len : b->len, i = 0;
  while (i < n && a->p[i] == b->p[i]) i++;
  return i;
}

size_t ig_json_vocab_max_len(const ig_json_vocab *v) {
  size_t most = 0;
  for (uint32_t i = 0; i < v->n_nodes; i++)
    if (v->depth[i] > most) most = v->depth[i];
  for (int k = 0; k < v->n_long; k++)
    if (v->long_off[k + 1] - v->long_off[k] > most) most = v->long_off[k + 1] - v->long_off[k];
  return most;
}

void ig_json_vocab_free(ig_json_vocab *v) {
  if (!v) return;
  free(v->byte), free(v->depth), free(v->next), free(v->first_tok), free(v->ids);
  free(v->long_ids), free(v->long_off), free(v->long_bytes);
  free(v);
}

/* Lays the sorted tokens out as the preorder trie. path[d] is the node at depth d on the way to the previous
 * token; a node's subtree ends when a token no longer shares it, i.e. where the next new node goes. */
static void fill_trie(ig_json_vocab *v, const tok_ref *refs, size_t n_refs) {
  uint32_t path[IG_JSON_TRIE_DEPTH + 1], m = 1, n_ids = 0;
  size_t cur = 0;
  path[0] = 0;
  v->byte[0] = 0, v->depth[0] = 0, v->first_tok[0] = 0;
  for (size_t k = 0; k < n_refs; k++) {
    const tok_ref *t = &refs[k];
    size_t lcp = k ? common_prefix(&refs[k - 1], t) : 0;
    for (size_t d = cur; d > lcp; d--) v->next[path[d]] = m;
    for (size_t d = lcp + 1; d <= t->len; d++, m++) {
      v->byte[m] = t->p[d - 1];
      v->depth[m] = (uint8_t)d;
      v->first_tok[m] = n_ids;
      path[d] = m;
    }
    cur = t->len;
    v->ids[n_ids++] = t->id;
  }
  for (size_t d = cur; d > 0; d--) v->next[path[d]] = m;
  v->next[0] = m;
  v->first_tok[m] = n_ids;
  assert(m == v->n_nodes);
}

int ig_json_vocab_build(ig_json_vocab **out, int n_vocab, const unsigned char *const *tok_bytes, const size_t *tok_len,
                        const unsigned char *special) {
  *out = NULL;
  if (n_vocab < 0) return -EINVAL;
  ig_json_vocab *v = calloc(1, sizeof *v);
  if (!v) return -ENOMEM;
  v->n_vocab = n_vocab;
  size_t n_refs = 0, n_long = 0, long_total = 0;
  for (int i = 0; i < n_vocab; i++) {
    if (tok_len[i] == 0 || (special && special[i])) continue;
    if (tok_len[i] <= IG_JSON_TRIE_DEPTH) n_refs++;
    else n_long++, long_total += tok_len[i];
  }
  tok_ref *refs = malloc((n_refs ? n_refs : 1) * sizeof *refs);
  v->long_ids = malloc((n_long ? n_long : 1) * sizeof *v->long_ids);
  v->long_off = malloc((n_long + 1) * sizeof *v->long_off);
  v->long_bytes = malloc(long_total ? long_total : 1);
  if (!refs || !v->long_ids || !v->long_off || !v->long_bytes) goto oom;
  n_refs = 0;
  v->long_off[0] = 0;
  for (int i = 0; i < n_vocab; i++) {
    if (tok_len[i] == 0 || (special && special[i])) continue;
    if (tok_len[i] <= IG_JSON_TRIE_DEPTH) {
      refs[n_refs++] = (tok_ref){tok_bytes[i], tok_len[i], i};
    } else {
      memcpy(v->long_bytes + v->long_off[v->n_long], tok_bytes[i], tok_len[i]);
      v->long_ids[v->n_long] = i;
      v->long_off[v->n_long + 1] = v->long_off[v->n_long] + tok_len[i];
      v->n_long++;
    }
  }
  qsort(refs, n_refs, sizeof *refs, cmp_tok);
  /* One node per byte of a token past what it shares with the token before it (in sorted order). */
  size_t n_nodes = 1;
  for (size_t k = 0; k < n_refs; k++) n_nodes += refs[k].len - (k ? common_prefix(&refs[k - 1], &refs[k]) : 0);
  if (n_nodes > UINT32_MAX - 1) goto oom;
  v->n_nodes = (uint32_t)n_nodes;
  v->byte = malloc(n_nodes);
  v->depth = malloc(n_nodes);
  v->next = malloc(n_nodes * sizeof *v->next);
  v->first_tok = malloc((n_nodes + 1) * sizeof *v->first_tok);
  v->ids = malloc((n_refs ? n_refs : 1) * sizeof *v->ids);
  if (!v->byte || !v->depth || !v->next || !v->first_tok || !v->ids) goto oom;
  fill_trie(v, refs, n_refs);
  free(refs);
  *out = v;
  return 0;
oom:
  free(refs);
  ig_json_vocab_free(v);
  return -ENOMEM;
}

/* ---- the mask -------------------------------------------------------------------------------------------- */

int ig_json_vocab_segments(const ig_json_vocab *v, int n, ig_json_seg **out) {
  *out = NULL;
  const uint32_t target = (v->n_nodes + (uint32_t)(n > 0 ? n : 1) - 1) / (uint32_t)(n > 0 ? n : 1) + 1;
  size_t cap = (size_t)(n > 0 ? n : 1) * 2 + 16, k = 0;
  ig_json_seg *g = malloc(cap * sizeof *g);
  if (!g) return -ENOMEM;
  uint32_t run = 1; /* whole depth-1 subtrees [run, c) gathered so far */
  for (uint32_t c = 1; c < v->n_nodes; c = v->next[c]) {
    uint32_t end = v->next[c];
    if (k + 4 >= cap) {
      ig_json_seg *ng = realloc(g, (cap *= 2) * sizeof *g);
      if (!ng) return free(g), -ENOMEM;
      g = ng;
    }
    if (end - c <= target) { /* a small subtree joins the run; the run ends at the target size */
      if (end - run >= target) g[k++] = (ig_json_seg){run, end, 0}, run = end;
      continue;
    }
    if (run < c) g[k++] = (ig_json_seg){run, c, 0};
    g[k++] = (ig_json_seg){c, c + 1, 0}; /* the node itself (its tokens), then its children in pieces */
    for (uint32_t lo = c + 1, i = c + 1; i < end; i = v->next[i]) {
      if (v->next[i] - lo >= target || v->next[i] == end) {
        if (k + 2 >= cap) {
          ig_json_seg *ng = realloc(g, (cap *= 2) * sizeof *g);
          if (!ng) return free(g), -ENOMEM;
          g = ng;
        }
        g[k++] = (ig_json_seg){lo, v->next[i], c}, lo = v->next[i];
      }
    }
    run = end;
  }
  if (run < v->n_nodes) g[k++] = (ig_json_seg){run, v->n_nodes, 0};
  *out = g;
  return (int)k;
}

int ig_json_allowed_seg(const ig_json_vocab *v, const ig_json_fsm *f, const ig_json_seg *g, uint8_t *allowed) {
  if (ig_json_fsm_complete(f)) return 0; /* once complete every byte fails: nothing to walk */
  /* st[d]: the state after the bytes of the current path down to depth d. In preorder the node visited before node
   * i at depth d - 1 is i's parent, so st[d - 1] is always the state to extend. */
  ig_json_fsm st[IG_JSON_TRIE_DEPTH + 1];
  st[0] = *f;
  const uint8_t *byte = v->byte, *depth = v->depth;
  if (g->parent) {
    st[1] = st[0];
    if (step(&st[1], byte[g->parent], 0)) return 0;
  }
  int count = 0;
  for (uint32_t i = g->lo, n = g->hi; i < n;) {
    unsigned d = depth[i];
    ig_json_fsm s = st[d - 1];
    if (step(&s, byte[i], 0)) {
      i = v->next[i];
      continue;
    }
    st[d] = s;
    for (uint32_t k = v->first_tok[i], e = v->first_tok[i + 1]; k < e; k++) allowed[v->ids[k]] = 1;
    count += (int)(v->first_tok[i + 1] - v->first_tok[i]);
    i++;
  }
  return count;
}

int ig_json_allowed_rest(const ig_json_vocab *v, const ig_json_fsm *f, const int32_t *eos, int n_eos,
                         uint8_t *allowed) {
  int count = 0, done = ig_json_fsm_complete(f);
  for (int k = 0; k < v->n_long && !done; k++) {
    ig_json_fsm s = *f;
    if (ig_json_fsm_feed(&s, v->long_bytes + v->long_off[k], v->long_off[k + 1] - v->long_off[k]) == 0)
      allowed[v->long_ids[k]] = 1, count++;
  }
  return count + ig_json_mark_eos(v, eos, n_eos, done, allowed);
}

int ig_json_allowed(const ig_json_vocab *v, const ig_json_fsm *f, const int32_t *eos, int n_eos, uint8_t *allowed) {
  if (v->n_vocab > 0) memset(allowed, 0, (size_t)v->n_vocab);
  const ig_json_seg all = {1, v->n_nodes, 0};
  return ig_json_allowed_seg(v, f, &all, allowed) + ig_json_allowed_rest(v, f, eos, n_eos, allowed);
}
