/* engine/jsonschema: see jsonschema.h. Three parts: the compiler (jansson schema -> a table of nodes, $refs
 * resolved, unions flattened and checked, the minimal depth of each node's values by a fixpoint), the
 * recognizer (a stack of 12-byte frames, one per open value; a byte goes to the top frame, which may pop and
 * hand it to its parent) and the mask (the vocabulary trie walked as ig_json_allowed does, copying only the
 * live part of the state per trie node). */
#include "engine/jsonschema.h"
#include "engine/jsonmask_int.h"
#include "engine/regex.h"
#include "util/str.h"
#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the compiled schema --------------------------------------------------------------------------------- */

#define MAX_NODES 4096
#define MAX_PROPS 256 /* per object */
#define MAX_ENUM_BYTES 65535 /* all enum/const texts of a schema together */
#define MAX_ENUM_VALUES 16384
#define MAX_ALTS 64 /* alternatives of one union, flattened */
#define MAX_NEST 64 /* nesting of the schema document itself */
#define MAX_NAME 1024 /* bytes of a property name */
#define COUNT_SAT 0xFFFFu /* item and code point counts saturate here; a maximum at or past it is none */
#define NO_MAX UINT32_MAX
#define FOLD_L 128u /* regex grammars: mask-cache keys fold states no text of this many bytes tells apart (Llama 3's
                     * longest token is 128 bytes; a vocabulary with longer ones gets exact keys) */
#define FOLD_BUDGET 16000000u /* transitions visited, at most, to find them (~0.1 s on this VM) */
#define INF_DEPTH 255

enum kind {
  K_ANY, /* any JSON value (an embedded ig_json_fsm) */
  K_ANYOBJ, /* any JSON object (the same) */
  K_OBJ, /* properties in order: props[off .. off + n) */
  K_TAGGED, /* a tagged union: an object whose one property props[off] is the tag; alts[off2 .. off2 + n2) in the
               tag enum's order become the frame's node once the tag is known */
  K_ARR, /* items: child; minItems lo, maxItems hi */
  K_STR, /* minLength lo, maxLength hi (code points) */
  K_PSTR, /* a string with a "pattern": pats[off] runs over its decoded bytes */
  K_NUM,
  K_INT,
  K_BOOL,
  K_NULL,
  K_ENUM, /* one of vals[off .. off + n) (compact texts, sorted bytewise) */
  K_UNION, /* alts[off2 .. off2 + n2): each starts with bytes no other one starts with; lo: from "oneOf" */
  K_REF, /* resolved away after compiling: ref is the target */
};

typedef struct jnode {
  uint8_t kind, mind; /* mind: frames a complete value needs, its own included (INF_DEPTH: cannot complete) */
  uint16_t child;
  uint32_t lo, hi;
  uint32_t off, n, off2, n2;
  uint8_t first[32]; /* bytes a value may start with */
  const json_t *ref;
} jnode;

typedef struct jprop {
  uint32_t name_off, name_len; /* in bytes[] */
  uint16_t node;
  uint8_t required;
  uint16_t nreq; /* index (in its object) of the first required property at or after this one, n if none */
} jprop;

typedef struct jval {
  uint32_t off, len; /* in bytes[] */
} jval;

struct ig_jschema {
  int refs;
  int fast; /* {"type": "object"}: JSON mode, the state holds an ig_json_fsm */
  ig_regex *re; /* a regex grammar instead of a schema: the state holds a rstate */
  uint32_t *re_rep; /* re: each state's representative under FOLD_L-byte equivalence (ig_regex_fold); NULL: none */
  uint32_t **pat_rep; /* [n_pats]: the same for each pattern (an entry NULL: not folded) */
  ig_regex **pats; /* the strings' patterns (K_PSTR nodes), over the bytes a JSON string's content can hold */
  uint32_t n_pats;
  uint16_t root;
  jnode *nodes;
  uint32_t n_nodes, cap_nodes;
  jprop *props;
  uint16_t *korder; /* [n_props]: per object, its property indices sorted by name */
  uint32_t n_props, cap_props;
  jval *vals;
  uint32_t n_vals, cap_vals;
  uint16_t *alts;
  uint32_t n_alts, cap_alts;
  char *bytes;
  size_t n_bytes, cap_bytes;
  size_t enum_bytes;
  char *canon; /* the schema as compact JSON with sorted keys: what ig_jschema_same compares */
  size_t canon_len;
  uint64_t hash;
};

static inline int bit(const uint8_t *set, unsigned c) { return set[c >> 3] >> (c & 7) & 1; }
static inline void bit_set(uint8_t *set, unsigned c) { set[c >> 3] |= (uint8_t)(1u << (c & 7)); }

static inline const char *val_text(const ig_jschema *s, uint32_t i) { return s->bytes + s->vals[i].off; }

/* ---- the compiler ---------------------------------------------------------------------------------------- */

typedef struct cctx {
  ig_jschema *s;
  const json_t *root;
  char *err;
  size_t errlen;
  char path[512];
  size_t path_len;
  const json_t **memo_json; /* $ref targets compiled so far, and their nodes */
  uint16_t *memo_node;
  uint32_t n_memo, cap_memo;
  int failed;
} cctx;

static int fail(cctx *c, const char *fmt, ...) {
  if (c->failed) return -1;
  c->failed = 1;
  char msg[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (c->errlen) {
    if (c->path_len > 120) snprintf(c->err, c->errlen, "...%s: %s", c->path + c->path_len - 100, msg);
    else if (c->path_len) snprintf(c->err, c->errlen, "%s: %s", c->path, msg);
    else snprintf(c->err, c->errlen, "%s", msg);
    ig_str_oneline(c->err); /* one line, whatever the schema's keys hold */
  }
  return -1;
}

/* path grows as ".key" (or "key" at the start) and shrinks back to `old` */
static size_t path_push(cctx *c, const char *a, const char *b) {
  size_t old = c->path_len;
  int k = snprintf(c->path + old, sizeof c->path - old, "%s%s%s%s", old ? "." : "", a, b ? "." : "", b ? b : "");
  if (k > 0) c->path_len = old + (size_t)k < sizeof c->path ? old + (size_t)k : sizeof c->path - 1;
  return old;
}
static void path_pop(cctx *c, size_t old) {
  c->path_len = old;
  c->path[old] = 0;
}

static int grow(void **p, uint32_t *cap, uint32_t need, size_t elem) {
  if (need <= *cap) return 0;
  uint32_t n = *cap ? *cap * 2 : 16;
  while (n < need) n *= 2;
  void *q = realloc(*p, (size_t)n * elem);
  if (!q) return -1;
  *p = q, *cap = n;
  return 0;
}

static int new_node(cctx *c, int kind) {
  ig_jschema *s = c->s;
  if (s->n_nodes >= MAX_NODES) return fail(c, "the schema has more than %d nodes", MAX_NODES);
  if (grow((void **)&s->nodes, &s->cap_nodes, s->n_nodes + 1, sizeof *s->nodes)) return fail(c, "out of memory");
  jnode *n = &s->nodes[s->n_nodes];
  memset(n, 0, sizeof *n);
  n->kind = (uint8_t)kind;
  n->mind = INF_DEPTH;
  return (int)s->n_nodes++;
}

static int add_bytes(cctx *c, const char *p, size_t n, uint32_t *off) {
  ig_jschema *s = c->s;
  if (s->n_bytes + n > (size_t)UINT32_MAX / 2) return fail(c, "the schema is too large");
  if (s->n_bytes + n > s->cap_bytes) {
    size_t cap = s->cap_bytes ? s->cap_bytes * 2 : 256;
    while (cap < s->n_bytes + n) cap *= 2;
    char *q = realloc(s->bytes, cap);
    if (!q) return fail(c, "out of memory");
    s->bytes = q, s->cap_bytes = cap;
  }
  memcpy(s->bytes + s->n_bytes, p, n);
  *off = (uint32_t)s->n_bytes;
  s->n_bytes += n;
  return 0;
}

static const char *const ANNOTATIONS[] = {"title",    "description", "$schema",  "$id",
                                          "examples", "default",     "$comment", "deprecated",
                                          "readOnly", "writeOnly",   "$defs",    "definitions"};

static int is_annotation(const char *k) {
  for (size_t i = 0; i < sizeof ANNOTATIONS / sizeof *ANNOTATIONS; i++)
    if (!strcmp(k, ANNOTATIONS[i])) return 1;
  return 0;
}

/* A non-negative integer keyword, or dflt when absent. */
static int get_count(cctx *c, const json_t *sch, const char *key, uint32_t dflt, uint32_t *out) {
  const json_t *v = json_object_get(sch, key);
  *out = dflt;
  if (!v) return 0;
  if (!json_is_integer(v) || json_integer_value(v) < 0) return fail(c, "'%s' must be a non-negative integer", key);
  json_int_t x = json_integer_value(v);
  *out = x >= (json_int_t)COUNT_SAT ? NO_MAX : (uint32_t)x;
  return 0;
}

static int type_bit(const char *t) {
  static const char *const names[] = {"object", "array", "string", "number", "integer", "boolean", "null"};
  for (int i = 0; i < 7; i++)
    if (!strcmp(t, names[i])) return 1 << i;
  return 0;
}
enum { T_OBJ = 1, T_ARR = 2, T_STR = 4, T_NUM = 8, T_INT = 16, T_BOOL = 32, T_NULL = 64 };

static int compile(cctx *c, const json_t *sch, int nest);
static int compile_pattern(cctx *c, const json_t *pv, uint32_t *out);

static void first_of_value_start(uint8_t *first, int types) {
  if (types & T_OBJ) bit_set(first, '{');
  if (types & T_ARR) bit_set(first, '[');
  if (types & T_STR) bit_set(first, '"');
  if (types & (T_NUM | T_INT)) {
    bit_set(first, '-');
    for (unsigned d = '0'; d <= '9'; d++) bit_set(first, d);
  }
  if (types & T_BOOL) bit_set(first, 't'), bit_set(first, 'f');
  if (types & T_NULL) bit_set(first, 'n');
}

static int value_type(const json_t *v) {
  switch (json_typeof(v)) {
  case JSON_OBJECT: return T_OBJ;
  case JSON_ARRAY: return T_ARR;
  case JSON_STRING: return T_STR;
  case JSON_INTEGER: return T_INT | T_NUM;
  case JSON_REAL: return T_NUM;
  case JSON_TRUE:
  case JSON_FALSE: return T_BOOL;
  default: return T_NULL;
  }
}

static int cmp_val_ctx_bytes(const char *a, uint32_t na, const char *b, uint32_t nb) {
  int r = memcmp(a, b, na < nb ? na : nb);
  return r ? r : (na > nb) - (na < nb);
}

typedef struct vitem {
  jval v;
  uint16_t p;
} vitem;

/* Sorts vals[off .. off + n) by text (a merge sort: n may be 16k) and drops duplicates; perm (may be NULL) is
 * permuted alongside. Returns the new count, or UINT32_MAX when out of memory. */
static uint32_t sort_vals(ig_jschema *s, uint32_t off, uint32_t n, uint16_t *perm) {
  jval *v = s->vals + off;
  vitem *base = malloc((size_t)(n ? n : 1) * 2 * sizeof *base), *a = base, *b = base + n;
  if (!base) return UINT32_MAX;
  for (uint32_t i = 0; i < n; i++) a[i] = (vitem){v[i], perm ? perm[i] : 0};
  for (uint32_t w = 1; w < n; w *= 2) {
    for (uint32_t lo = 0; lo < n; lo += 2 * w) {
      uint32_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n, i = lo, j = mid, k = lo;
      while (i < mid && j < hi)
        b[k++] = cmp_val_ctx_bytes(s->bytes + a[j].v.off, a[j].v.len, s->bytes + a[i].v.off, a[i].v.len) < 0 ? a[j++]
                                                                                                             : a[i++];
      while (i < mid) b[k++] = a[i++];
      while (j < hi) b[k++] = a[j++];
    }
    vitem *t = a;
    a = b, b = t;
  }
  uint32_t m = 0;
  for (uint32_t i = 0; i < n; i++) {
    if (m && cmp_val_ctx_bytes(s->bytes + v[m - 1].off, v[m - 1].len, s->bytes + a[i].v.off, a[i].v.len) == 0)
      continue;
    v[m] = a[i].v;
    if (perm) perm[m] = a[i].p;
    m++;
  }
  free(base);
  return m;
}

/* An enum node of the values of `list` (a JSON array) whose type is among `types`. */
static int compile_enum(cctx *c, const json_t *list, int types, const char *kw) {
  ig_jschema *s = c->s;
  int id = new_node(c, K_ENUM);
  if (id < 0) return -1;
  uint32_t off = s->n_vals, n = 0;
  size_t i;
  const json_t *v;
  if (json_array_size(list) > MAX_ENUM_VALUES) return fail(c, "'%s' has more than %d values", kw, MAX_ENUM_VALUES);
  json_array_foreach(list, i, v) {
    if (!(value_type(v) & types)) continue;
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS);
    if (!text) return fail(c, "'%s': a value cannot be serialized", kw);
    size_t len = strlen(text);
    s->enum_bytes += len;
    uint32_t boff;
    int rc = s->enum_bytes > MAX_ENUM_BYTES ? fail(c, "'%s' values exceed %d bytes", kw, MAX_ENUM_BYTES)
                                            : add_bytes(c, text, len, &boff);
    free(text);
    if (rc) return -1;
    if (grow((void **)&s->vals, &s->cap_vals, s->n_vals + 1, sizeof *s->vals)) return fail(c, "out of memory");
    s->vals[s->n_vals++] = (jval){boff, (uint32_t)len};
    n++;
  }
  if (n == 0) return fail(c, "'%s' has no value of the given type", kw);
  n = sort_vals(s, off, n, NULL);
  if (n == UINT32_MAX) return fail(c, "out of memory");
  s->n_vals = off + n;
  jnode *nd = &s->nodes[id];
  nd->off = off, nd->n = n;
  for (uint32_t k = 0; k < n; k++) bit_set(nd->first, (unsigned char)val_text(s, off + k)[0]);
  return id;
}

/* A property name the output writes as is: no byte JSON would escape. */
static int plain_name(const char *k, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char b = (unsigned char)k[i];
    if (b < 0x20 || b == '"' || b == '\\') return 0;
  }
  return 1;
}

static int compile_object(cctx *c, const json_t *sch, int nest) {
  ig_jschema *s = c->s;
  const json_t *props = json_object_get(sch, "properties"), *req = json_object_get(sch, "required");
  const json_t *addl = json_object_get(sch, "additionalProperties");
  if (props && !json_is_object(props)) return fail(c, "'properties' must be an object");
  if (req && !json_is_array(req)) return fail(c, "'required' must be an array");
  if (json_is_object(addl) && json_object_size(addl) == 0) addl = NULL; /* {}: the same as true */
  if (!props && !json_is_false(addl)) { /* any object */
    if (addl && !json_is_true(addl))
      return fail(c, "'additionalProperties' other than a boolean without 'properties' is not supported");
    if (req && json_array_size(req)) return fail(c, "'required' without 'properties' is not supported");
    int id = new_node(c, K_ANYOBJ);
    if (id >= 0) bit_set(s->nodes[id].first, '{');
    return id;
  }
  if (addl && !json_is_false(addl))
    return fail(c, "'additionalProperties' other than false is not supported with 'properties'");
  /* from here on, props may be NULL: "additionalProperties": false alone, the empty object */
  size_t np = json_object_size(props);
  if (np > MAX_PROPS) return fail(c, "more than %d properties", MAX_PROPS);
  size_t i;
  const json_t *r;
  json_array_foreach(req, i, r) {
    if (!json_is_string(r)) return fail(c, "'required' must list strings");
    if (!json_object_get(props, json_string_value(r)))
      return fail(c, "required property '%s' is not in 'properties'", json_string_value(r));
  }
  /* Children first (they append nodes and properties of their own), then this object's properties together. */
  uint16_t kids[MAX_PROPS];
  const char *key;
  const json_t *sub;
  size_t k = 0;
  json_object_foreach((json_t *)props, key, sub) {
    size_t klen = strlen(key);
    if (klen > MAX_NAME) return fail(c, "property name longer than %d bytes", MAX_NAME);
    if (!plain_name(key, klen)) return fail(c, "property name \"%.40s\" needs escapes, which are not supported", key);
    size_t old = path_push(c, "properties", key);
    int kid = compile(c, sub, nest + 1);
    path_pop(c, old);
    if (kid < 0) return -1;
    kids[k++] = (uint16_t)kid;
  }
  int id = new_node(c, K_OBJ);
  if (id < 0) return -1;
  if (grow((void **)&s->props, &s->cap_props, s->n_props + (uint32_t)np, sizeof *s->props) ||
      !(s->korder = realloc(s->korder, (size_t)s->cap_props * sizeof *s->korder)))
    return fail(c, "out of memory");
  uint32_t off = s->n_props;
  k = 0;
  json_object_foreach((json_t *)props, key, sub) {
    jprop *p = &s->props[off + k];
    memset(p, 0, sizeof *p);
    if (add_bytes(c, key, strlen(key), &p->name_off)) return -1;
    p->name_len = (uint32_t)strlen(key);
    p->node = kids[k];
    json_array_foreach(req, i, r) if (!strcmp(json_string_value(r), key)) p->required = 1;
    k++;
  }
  s->n_props += (uint32_t)np;
  uint16_t nreq = (uint16_t)np;
  for (size_t j = np; j-- > 0;) {
    if (s->props[off + j].required) nreq = (uint16_t)j;
    s->props[off + j].nreq = nreq;
  }
  /* names sorted bytewise: candidates sharing a typed prefix are then contiguous */
  uint16_t *ko = s->korder + off;
  for (size_t j = 0; j < np; j++) {
    uint16_t x = (uint16_t)j;
    size_t m = j;
    const jprop *px = &s->props[off + x];
    while (m > 0) {
      const jprop *pm = &s->props[off + ko[m - 1]];
      if (cmp_val_ctx_bytes(s->bytes + pm->name_off, pm->name_len, s->bytes + px->name_off, px->name_len) <= 0) break;
      ko[m] = ko[m - 1];
      m--;
    }
    ko[m] = x;
  }
  jnode *nd = &s->nodes[id];
  nd->off = off, nd->n = (uint32_t)np;
  bit_set(nd->first, '{');
  return id;
}

static int compile_typed(cctx *c, const json_t *sch, int t, int nest) {
  ig_jschema *s = c->s;
  int id;
  switch (t) {
  case T_OBJ: return compile_object(c, sch, nest);
  case T_ARR: {
    const json_t *items = json_object_get(sch, "items");
    uint32_t lo, hi;
    if (get_count(c, sch, "minItems", 0, &lo) || get_count(c, sch, "maxItems", NO_MAX, &hi)) return -1;
    if (lo >= COUNT_SAT) return fail(c, "'minItems' too large");
    if (lo > hi) return fail(c, "'minItems' is greater than 'maxItems'");
    int kid;
    if (items && !json_is_object(items) && !json_is_boolean(items))
      return fail(c, "'items' must be a schema (tuple forms are not supported)");
    if (items && json_is_false(items)) {
      if (lo > 0) return fail(c, "'items': false with 'minItems'");
      hi = 0;
    }
    if (!items || json_is_boolean(items)) {
      kid = new_node(c, K_ANY);
      if (kid >= 0) first_of_value_start(s->nodes[kid].first, 127);
    } else {
      size_t old = path_push(c, "items", NULL);
      kid = compile(c, items, nest + 1);
      path_pop(c, old);
    }
    if (kid < 0 || (id = new_node(c, K_ARR)) < 0) return -1;
    jnode *nd = &s->nodes[id];
    nd->child = (uint16_t)kid, nd->lo = lo, nd->hi = hi;
    bit_set(nd->first, '[');
    return id;
  }
  case T_STR: {
    uint32_t lo, hi;
    if (get_count(c, sch, "minLength", 0, &lo) || get_count(c, sch, "maxLength", NO_MAX, &hi)) return -1;
    if (lo >= COUNT_SAT) return fail(c, "'minLength' too large");
    if (lo > hi) return fail(c, "'minLength' is greater than 'maxLength'");
    const json_t *pv = json_object_get(sch, "pattern");
    if (pv) {
      if (json_object_get(sch, "minLength") || json_object_get(sch, "maxLength"))
        return fail(c, "'pattern' beside 'minLength'/'maxLength' is not supported (say the length in the pattern)");
      uint32_t pi = 0;
      if (compile_pattern(c, pv, &pi) || (id = new_node(c, K_PSTR)) < 0) return -1;
      s->nodes[id].off = pi;
      bit_set(s->nodes[id].first, '"');
      return id;
    }
    if ((id = new_node(c, K_STR)) < 0) return -1;
    s->nodes[id].lo = lo, s->nodes[id].hi = hi;
    bit_set(s->nodes[id].first, '"');
    return id;
  }
  default:
    id = new_node(c, t == T_NUM ? K_NUM : t == T_INT ? K_INT : t == T_BOOL ? K_BOOL : K_NULL);
    if (id >= 0) first_of_value_start(s->nodes[id].first, t);
    return id;
  }
}

/* The keywords this compiler knows, and the types they belong to (0: not type-specific). */
static const struct {
  const char *kw;
  int types;
} KEYWORDS[] = {{"type", 0},           {"enum", 0},         {"const", 0},
                {"anyOf", 0},          {"oneOf", 0},        {"$ref", 0},
                {"properties", T_OBJ}, {"required", T_OBJ}, {"additionalProperties", T_OBJ},
                {"items", T_ARR},      {"minItems", T_ARR}, {"maxItems", T_ARR},
                {"minLength", T_STR},  {"maxLength", T_STR}, {"pattern", T_STR}};

static int keyword_types(const char *k) {
  for (size_t i = 0; i < sizeof KEYWORDS / sizeof *KEYWORDS; i++)
    if (!strcmp(k, KEYWORDS[i].kw)) return KEYWORDS[i].types;
  return -1;
}

/* -1 (and the error) when sch has a keyword other than annotations and a, b, c (which may be NULL). */
static int only_beside(cctx *c, const json_t *sch, const char *a, const char *b, const char *t, const char *what) {
  const char *k;
  const json_t *v;
  json_object_foreach((json_t *)sch, k, v) {
    if (is_annotation(k) || !strcmp(k, a) || (b && !strcmp(k, b)) || (t && !strcmp(k, t))) continue;
    return fail(c, "'%s' beside %s is not supported", k, what);
  }
  return 0;
}

static int compile_ref(cctx *c, const json_t *sch) {
  const json_t *ref = json_object_get(sch, "$ref");
  if (!json_is_string(ref)) return fail(c, "'$ref' must be a string");
  if (only_beside(c, sch, "$ref", NULL, NULL, "'$ref'")) return -1;
  const char *r = json_string_value(ref);
  const json_t *target = NULL;
  if (!strcmp(r, "#")) target = c->root;
  else {
    const char *name = NULL, *where = NULL;
    if (!strncmp(r, "#/$defs/", 8)) where = "$defs", name = r + 8;
    else if (!strncmp(r, "#/definitions/", 14)) where = "definitions", name = r + 14;
    if (!name || strchr(name, '/') || strchr(name, '~'))
      return fail(c, "'$ref' \"%.60s\" is not supported (only \"#\", \"#/$defs/NAME\", \"#/definitions/NAME\")", r);
    target = json_object_get(json_object_get(c->root, where), name);
    if (!target) return fail(c, "'$ref' \"%.60s\" not found", r);
  }
  int id = new_node(c, K_REF);
  if (id >= 0) c->s->nodes[id].ref = target;
  return id;
}

static int compile_union(cctx *c, const json_t *list, const char *kw, int nest) {
  ig_jschema *s = c->s;
  if (!json_is_array(list) || json_array_size(list) == 0) return fail(c, "'%s' must be a non-empty array", kw);
  if (json_array_size(list) > MAX_ALTS) return fail(c, "'%s' has more than %d alternatives", kw, MAX_ALTS);
  uint16_t kids[MAX_ALTS];
  size_t i;
  const json_t *v;
  json_array_foreach(list, i, v) {
    char idx[24];
    snprintf(idx, sizeof idx, "%zu", i);
    size_t old = path_push(c, kw, idx);
    int kid = compile(c, v, nest + 1);
    path_pop(c, old);
    if (kid < 0) return -1;
    kids[i] = (uint16_t)kid;
  }
  int id = new_node(c, K_UNION);
  if (id < 0) return -1;
  uint32_t n = (uint32_t)json_array_size(list);
  if (grow((void **)&s->alts, &s->cap_alts, s->n_alts + n, sizeof *s->alts)) return fail(c, "out of memory");
  memcpy(s->alts + s->n_alts, kids, n * sizeof *kids);
  s->nodes[id].off2 = s->n_alts, s->nodes[id].n2 = n;
  s->nodes[id].lo = !strcmp(kw, "oneOf"); /* an integer would match both a number and an integer */
  s->n_alts += n;
  return id;
}

/* One schema value: a node id, or -1 (c->err says why). */
/* ---- "pattern" ---- */

/* The bytes a JSON string's content can hold as the generator writes it: raw ones from 0x20 up, and what the
 * short escapes decode to (\b \t \n \f \r; \" \\ \/ are raw bytes' values too). The pattern's automaton is
 * made over these alone, so each of its states can still reach a match through them. */
static const uint8_t PAT_BYTES[256] = {[8] = 1, [9] = 1, [10] = 1, [12] = 1, [13] = 1, [0x20 ... 0xFF] = 1};

/* Whether p[0..n) has a '|' outside groups and classes; *neg set when a ')' closes more than was opened. */
static int top_level_bar(const char *p, size_t n, int *neg) {
  int depth = 0, bar = 0;
  *neg = 0;
  for (size_t i = 0; i < n; i++) {
    if (p[i] == '\\') {
      i++;
    } else if (p[i] == '[') {
      size_t j = i + 1;
      if (j < n && p[j] == '^') j++;
      if (j < n && p[j] == ']') j++;
      for (; j < n && p[j] != ']'; j++)
        if (p[j] == '\\') j++;
      i = j;
    } else if (p[i] == '(') {
      depth++;
    } else if (p[i] == ')') {
      if (--depth < 0) *neg = 1;
    } else if (p[i] == '|' && depth == 0) {
      bar = 1;
    }
  }
  return bar;
}

#define IG_PAT_MAX_STATES 8192 /* a "pattern"'s automaton at most (32 of them compile in well under a second) */
#define IG_PAT_MAX 32            /* patterns in one schema (each compiles in ~1/8 of a regex grammar's work cap) */

/* JSON Schema's "pattern" is a search, as ECMA-262's RegExp.test: the string contains a match. A leading '^' and a
 * trailing '$' anchor it; what is not anchored may have any text before or after it. The pattern itself is read
 * as engine/regex.h reads one (Python's syntax, which ECMAScript's common patterns share). */
static int compile_pattern(cctx *c, const json_t *pv, uint32_t *out) {
  if (!json_is_string(pv)) return fail(c, "'pattern' must be a string");
  if (c->s->n_pats >= IG_PAT_MAX) return fail(c, "more than %d patterns", IG_PAT_MAX);
  const char *p = json_string_value(pv);
  size_t n = json_string_length(pv);
  int a0 = n > 0 && p[0] == '^', a1 = 0;
  if (n > (size_t)a0 && p[n - 1] == '$') {
    size_t k = 0; /* backslashes before it: an odd count escapes it */
    while (k + 1 < n && p[n - 2 - k] == '\\') k++;
    a1 = k % 2 == 0;
  }
  const char *core = p + a0;
  size_t cn = n - (size_t)a0 - (size_t)a1;
  int neg;
  int bar = top_level_bar(core, cn, &neg);
  if (neg) return fail(c, "'pattern': unbalanced ')'");
  if (bar && (a0 || a1))
    return fail(c, "'pattern' with '^' or '$' and a '|' outside groups is not supported (group the alternatives: "
                   "^(a|b)$)");
  static const char ANY[] = "[\\s\\S]*";
  size_t tn = cn + 2 * (sizeof ANY - 1) + 4;
  char *text = malloc(tn + 1);
  if (!text) return fail(c, "out of memory");
  size_t o = 0;
  if (!a0) memcpy(text + o, ANY, sizeof ANY - 1), o += sizeof ANY - 1;
  memcpy(text + o, "(?:", 3), o += 3;
  memcpy(text + o, core, cn), o += cn;
  text[o++] = ')';
  if (!a1) memcpy(text + o, ANY, sizeof ANY - 1), o += sizeof ANY - 1;
  ig_regex *re = NULL;
  char why[200];
  int rc = ig_regex_compile_max(text, o, IG_PAT_MAX_STATES, PAT_BYTES, &re, why, sizeof why);
  free(text);
  if (rc && !strcmp(why, "the pattern matches nothing"))
    return fail(c, "'pattern' matches no string a JSON string can hold without \\u escapes");
  if (rc) return fail(c, "'pattern': %s", why);
  ig_regex **np = realloc(c->s->pats, (c->s->n_pats + 1) * sizeof *np);
  if (!np) {
    ig_regex_free(re);
    return fail(c, "out of memory");
  }
  c->s->pats = np;
  np[c->s->n_pats] = re;
  *out = c->s->n_pats++;
  return 0;
}

static int compile(cctx *c, const json_t *sch, int nest) {
  ig_jschema *s = c->s;
  if (nest > MAX_NEST) return fail(c, "the schema is nested deeper than %d levels", MAX_NEST);
  if (json_is_true(sch) || (json_is_object(sch) && json_object_size(sch) == 0)) {
    int id = new_node(c, K_ANY);
    if (id >= 0) first_of_value_start(s->nodes[id].first, 127);
    return id;
  }
  if (json_is_false(sch)) return fail(c, "the schema false (no value) is not supported");
  if (!json_is_object(sch)) return fail(c, "a schema must be an object or a boolean");
  const char *k;
  const json_t *v;
  int kw_types = 0, has_enum = 0, has_union = 0;
  json_object_foreach((json_t *)sch, k, v) {
    if (is_annotation(k)) continue;
    int t = keyword_types(k);
    if (t < 0) return fail(c, "'%s' is not supported", k);
    kw_types |= t;
    has_enum |= !strcmp(k, "enum") || !strcmp(k, "const");
    has_union |= !strcmp(k, "anyOf") || !strcmp(k, "oneOf");
  }
  if (json_object_get(sch, "$ref")) return compile_ref(c, sch);
  /* the types asked for: "type", else what the keywords imply, else any */
  const json_t *type = json_object_get(sch, "type");
  int types = 0;
  if (type) {
    if (json_is_string(type)) types = type_bit(json_string_value(type));
    else if (json_is_array(type) && json_array_size(type)) {
      size_t i;
      json_array_foreach(type, i, v) {
        int b = json_is_string(v) ? type_bit(json_string_value(v)) : 0;
        if (!b) {
          types = 0;
          break;
        }
        types |= b;
      }
    }
    if (!types)
      return fail(c, "'type' must be one of object, array, string, number, integer, boolean, null or a list of them");
  }
  if (has_enum) {
    if (json_object_get(sch, "enum") && json_object_get(sch, "const"))
      return fail(c, "'enum' with 'const' is not supported");
    if (only_beside(c, sch, "enum", "const", "type", "'enum'/'const'")) return -1;
    const json_t *e = json_object_get(sch, "enum");
    if (e) {
      if (!json_is_array(e)) return fail(c, "'enum' must be an array");
      return compile_enum(c, e, types ? types | (types & T_NUM ? T_INT : 0) : 127, "enum");
    }
    json_t *one = json_array();
    if (!one || json_array_append(one, json_object_get(sch, "const"))) {
      json_decref(one);
      return fail(c, "out of memory");
    }
    int id = compile_enum(c, one, types ? types | (types & T_NUM ? T_INT : 0) : 127, "const");
    json_decref(one);
    return id;
  }
  if (has_union) {
    if (json_object_get(sch, "anyOf") && json_object_get(sch, "oneOf"))
      return fail(c, "'anyOf' with 'oneOf' is not supported");
    if (only_beside(c, sch, "anyOf", "oneOf", NULL, "'anyOf'/'oneOf'")) return -1;
    const char *kw = json_object_get(sch, "anyOf") ? "anyOf" : "oneOf";
    return compile_union(c, json_object_get(sch, kw), kw, nest);
  }
  if (!types) {
    if (kw_types & (kw_types - 1)) return fail(c, "keywords of several types without 'type'");
    types = kw_types;
    if (!types) {
      int id = new_node(c, K_ANY);
      if (id >= 0) first_of_value_start(s->nodes[id].first, 127);
      return id;
    }
  }
  if ((types & T_NUM) && (types & T_INT)) types &= ~T_INT; /* every integer is a number */
  if (!(types & (types - 1))) return compile_typed(c, sch, types, nest);
  /* a list of types: a union of one node per type, each with the keywords that apply to it */
  uint16_t kids[7];
  uint32_t n = 0;
  for (int t = 1; t <= T_NULL; t <<= 1) {
    if (!(types & t)) continue;
    int kid = compile_typed(c, sch, t, nest);
    if (kid < 0) return -1;
    kids[n++] = (uint16_t)kid;
  }
  int id = new_node(c, K_UNION);
  if (id < 0 || grow((void **)&s->alts, &s->cap_alts, s->n_alts + n, sizeof *s->alts))
    return id < 0 ? -1 : fail(c, "out of memory");
  memcpy(s->alts + s->n_alts, kids, n * sizeof *kids);
  s->nodes[id].off2 = s->n_alts, s->nodes[id].n2 = n;
  s->n_alts += n;
  return id;
}

/* ---- after compiling: $refs, unions, depths --------------------------------------------------------------- */

/* Compiles every $ref target once (a worklist: the targets may hold $refs of their own). */
static int compile_refs(cctx *c, uint16_t root_node) {
  ig_jschema *s = c->s;
  if (grow((void **)&c->memo_json, &c->cap_memo, 1, sizeof *c->memo_json) ||
      !(c->memo_node = realloc(c->memo_node, c->cap_memo * sizeof *c->memo_node)))
    return fail(c, "out of memory");
  c->memo_json[0] = c->root, c->memo_node[0] = root_node, c->n_memo = 1;
  for (uint32_t i = 0; i < s->n_nodes; i++) { /* n_nodes grows as targets compile */
    if (s->nodes[i].kind != K_REF) continue;
    const json_t *t = s->nodes[i].ref;
    uint32_t m = 0;
    while (m < c->n_memo && c->memo_json[m] != t) m++;
    if (m == c->n_memo) {
      path_pop(c, 0);
      path_push(c, "$ref", NULL);
      int id = compile(c, t, 0);
      path_pop(c, 0);
      if (id < 0) return -1;
      if (grow((void **)&c->memo_json, &c->cap_memo, c->n_memo + 1, sizeof *c->memo_json) ||
          !(c->memo_node = realloc(c->memo_node, c->cap_memo * sizeof *c->memo_node)))
        return fail(c, "out of memory");
      c->memo_json[m] = t, c->memo_node[m] = (uint16_t)id, c->n_memo++;
    }
    s->nodes[i].child = c->memo_node[m];
  }
  return 0;
}

/* The node a reference chain ends at; -1 for a cycle of $refs that names no value. */
static int resolve(cctx *c, uint32_t id) {
  for (uint32_t steps = 0; c->s->nodes[id].kind == K_REF; steps++) {
    if (steps > c->s->n_nodes) return fail(c, "'$ref' cycle without a value");
    id = c->s->nodes[id].child;
  }
  return (int)id;
}

static int resolve_all(cctx *c) {
  ig_jschema *s = c->s;
  int r;
  for (uint32_t i = 0; i < s->n_nodes; i++) {
    jnode *n = &s->nodes[i];
    if (n->kind == K_ARR) {
      if ((r = resolve(c, n->child)) < 0) return -1;
      n->child = (uint16_t)r;
    }
  }
  for (uint32_t i = 0; i < s->n_props; i++) {
    if ((r = resolve(c, s->props[i].node)) < 0) return -1;
    s->props[i].node = (uint16_t)r;
  }
  for (uint32_t i = 0; i < s->n_alts; i++) {
    if ((r = resolve(c, s->alts[i])) < 0) return -1;
    s->alts[i] = (uint16_t)r;
  }
  if ((r = resolve(c, s->root)) < 0) return -1;
  s->root = (uint16_t)r;
  return 0;
}

/* Appends the non-union alternatives under union `id` to out (nested unions flattened). */
static int flatten(cctx *c, uint32_t id, uint16_t *out, uint32_t *n, int nest) {
  const ig_jschema *s = c->s;
  if (nest > 16) return fail(c, "'anyOf'/'oneOf' nested too deeply or refers to itself");
  const jnode *u = &s->nodes[id];
  for (uint32_t k = 0; k < u->n2; k++) {
    uint16_t a = s->alts[u->off2 + k];
    if (s->nodes[a].kind == K_UNION) {
      if (flatten(c, a, out, n, nest + 1)) return -1;
      continue;
    }
    uint32_t j = 0;
    while (j < *n && out[j] != a) j++;
    if (j < *n) continue;
    if (*n >= MAX_ALTS) return fail(c, "more than %d alternatives", MAX_ALTS);
    out[(*n)++] = a;
  }
  return 0;
}

/* The tag of an alternative: its first property's name and single string value, if it has one. */
static int tag_of(const ig_jschema *s, uint16_t alt, const jprop **p, uint32_t *val) {
  const jnode *o = &s->nodes[alt];
  if (o->kind != K_OBJ || o->n == 0) return 0;
  *p = &s->props[o->off];
  const jnode *e = &s->nodes[(*p)->node];
  if (!(*p)->required || e->kind != K_ENUM || e->n != 1 || val_text(s, e->off)[0] != '"') return 0;
  *val = e->off;
  return 1;
}

/* A union whose alternatives all share the first byte '{': a tagged union, or an error. */
static int make_tagged(cctx *c, uint32_t id, uint16_t *alts, uint32_t n) {
  ig_jschema *s = c->s;
  jprop p0 = {0};
  for (uint32_t k = 0; k < n; k++) {
    const jprop *p;
    uint32_t v;
    if (!tag_of(s, alts[k], &p, &v))
      return fail(c, "'anyOf'/'oneOf': alternatives start alike and are not a tagged union (objects whose first, "
                     "required property has a distinct 'const' string)");
    if (k == 0) p0 = *p;
    else if (p->name_len != p0.name_len || memcmp(s->bytes + p->name_off, s->bytes + p0.name_off, p->name_len))
      return fail(c, "tagged union: the alternatives' first properties differ in name");
  }
  /* the tag enum: the alternatives' tag texts, sorted with the alternatives alongside */
  int eid = new_node(c, K_ENUM);
  if (eid < 0) return -1;
  if (grow((void **)&s->vals, &s->cap_vals, s->n_vals + n, sizeof *s->vals) ||
      grow((void **)&s->alts, &s->cap_alts, s->n_alts + n, sizeof *s->alts) ||
      grow((void **)&s->props, &s->cap_props, s->n_props + 1, sizeof *s->props) ||
      !(s->korder = realloc(s->korder, (size_t)s->cap_props * sizeof *s->korder)))
    return fail(c, "out of memory");
  uint32_t voff = s->n_vals;
  for (uint32_t k = 0; k < n; k++) {
    const jprop *p;
    uint32_t v = 0;
    tag_of(s, alts[k], &p, &v);
    s->vals[voff + k] = s->vals[v];
  }
  uint32_t sorted = sort_vals(s, voff, n, alts);
  if (sorted == UINT32_MAX) return fail(c, "out of memory");
  if (sorted != n) return fail(c, "tagged union: two alternatives have the same tag");
  s->n_vals += n;
  jnode *e = &s->nodes[eid];
  e->off = voff, e->n = n;
  for (uint32_t k = 0; k < n; k++) bit_set(e->first, (unsigned char)val_text(s, voff + k)[0]);
  jprop *tp = &s->props[s->n_props];
  *tp = p0;
  tp->node = (uint16_t)eid, tp->required = 1, tp->nreq = 0;
  s->korder[s->n_props] = 0;
  jnode *u = &s->nodes[id];
  u->kind = K_TAGGED;
  u->off = s->n_props++, u->n = 1;
  u->child = (uint16_t)eid;
  memcpy(s->alts + s->n_alts, alts, n * sizeof *alts);
  u->off2 = s->n_alts, u->n2 = n;
  s->n_alts += n;
  memset(u->first, 0, sizeof u->first);
  bit_set(u->first, '{');
  return 0;
}

static int check_unions(cctx *c) {
  ig_jschema *s = c->s;
  for (uint32_t i = 0; i < s->n_nodes; i++) {
    if (s->nodes[i].kind != K_UNION) continue;
    uint16_t alts[MAX_ALTS];
    uint32_t n = 0;
    if (flatten(c, i, alts, &n, 0)) return -1;
    /* number and integer: the number stands for both */
    int has_num = 0;
    for (uint32_t k = 0; k < n; k++) has_num |= s->nodes[alts[k]].kind == K_NUM;
    uint32_t m = 0;
    for (uint32_t k = 0; k < n; k++)
      if (!(has_num && s->nodes[alts[k]].kind == K_INT)) alts[m++] = alts[k];
    if (m < n && s->nodes[i].lo) return fail(c, "'oneOf' of both a number and an integer is not supported");
    n = m;
    int clash = 0, all_obj = 1;
    for (uint32_t a = 0; a < n; a++) {
      all_obj &= s->nodes[alts[a]].kind == K_OBJ;
      for (uint32_t b = a + 1; b < n; b++)
        for (int w = 0; w < 32; w++) clash |= s->nodes[alts[a]].first[w] & s->nodes[alts[b]].first[w];
    }
    if (clash) {
      if (!all_obj || n < 2)
        return fail(c, "'anyOf'/'oneOf': alternatives that start with the same byte are supported only as a tagged "
                       "union of objects");
      if (make_tagged(c, i, alts, n)) return -1;
      continue;
    }
    if (grow((void **)&s->alts, &s->cap_alts, s->n_alts + n, sizeof *s->alts)) return fail(c, "out of memory");
    memcpy(s->alts + s->n_alts, alts, n * sizeof *alts);
    jnode *u = &s->nodes[i];
    u->off2 = s->n_alts, u->n2 = n;
    s->n_alts += n;
    memset(u->first, 0, sizeof u->first);
    for (uint32_t k = 0; k < n; k++)
      for (int w = 0; w < 32; w++) u->first[w] |= s->nodes[alts[k]].first[w];
  }
  return 0;
}

/* mind of every node: the least fixpoint from "cannot complete", by rounds until nothing changes. Values past
 * IG_JSM_MAX_DEPTH count as "cannot". Each round settles at least the next level, so rounds are few. */
static void compute_depths(ig_jschema *s) {
  for (int round = 0, changed = 1; changed && round < 4 * (IG_JSM_MAX_DEPTH + 2) + 8; round++) {
    changed = 0;
    for (uint32_t i = 0; i < s->n_nodes; i++) {
      jnode *n = &s->nodes[i];
      unsigned d = INF_DEPTH;
      switch (n->kind) {
      case K_OBJ: {
        unsigned mx = 0;
        for (uint32_t k = 0; k < n->n; k++)
          if (s->props[n->off + k].required && s->nodes[s->props[n->off + k].node].mind > mx)
            mx = s->nodes[s->props[n->off + k].node].mind;
        d = mx >= INF_DEPTH ? INF_DEPTH : 1 + mx;
        break;
      }
      case K_TAGGED: {
        unsigned mx = 0;
        for (uint32_t k = 0; k < n->n2; k++)
          mx = s->nodes[s->alts[n->off2 + k]].mind > mx ? s->nodes[s->alts[n->off2 + k]].mind : mx;
        d = mx;
        break;
      }
      case K_ARR: {
        unsigned kid = n->lo ? s->nodes[n->child].mind : 0;
        d = kid >= INF_DEPTH ? INF_DEPTH : 1 + kid;
        break;
      }
      case K_UNION:
        for (uint32_t k = 0; k < n->n2; k++)
          d = s->nodes[s->alts[n->off2 + k]].mind < d ? s->nodes[s->alts[n->off2 + k]].mind : d;
        break;
      case K_REF: d = INF_DEPTH; break;
      default: d = 1;
      }
      if (d > IG_JSM_MAX_DEPTH) d = INF_DEPTH;
      if (d != n->mind) n->mind = (uint8_t)d, changed = 1;
    }
  }
}

static uint64_t fnv1a(const char *p, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
  return h;
}

void ig_jschema_unref(ig_jschema *s) {
  if (!s || __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) > 0) return;
  free(s->nodes), free(s->props), free(s->korder), free(s->vals), free(s->alts), free(s->bytes), free(s->canon);
  ig_regex_free(s->re);
  free(s->re_rep);
  for (uint32_t i = 0; i < s->n_pats; i++) {
    ig_regex_free(s->pats[i]);
    if (s->pat_rep) free(s->pat_rep[i]);
  }
  free(s->pat_rep);
  free(s->pats);
  free(s);
}

ig_jschema *ig_jschema_ref(ig_jschema *s) {
  __atomic_add_fetch(&s->refs, 1, __ATOMIC_RELAXED);
  return s;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

/* A copy of the schema whose objects list their keys sorted, except the maps of "properties", whose order is the
 * output's (and so part of what the schema accepts). literal: inside an "enum"/"const" value, all sorted. */
static json_t *canon_copy(const json_t *v, int keep_order, int literal) {
  if (json_is_array(v)) {
    json_t *a = json_array();
    size_t i;
    const json_t *e;
    json_array_foreach(v, i, e) {
      if (!a || json_array_append_new(a, canon_copy(e, 0, literal))) {
        json_decref(a);
        return NULL;
      }
    }
    return a;
  }
  if (!json_is_object(v)) return json_incref((json_t *)v);
  size_t n = json_object_size(v), k = 0;
  const char **keys = malloc((n ? n : 1) * sizeof *keys);
  json_t *o = json_object();
  const char *key;
  const json_t *e;
  if (!keys || !o) goto oom;
  json_object_foreach((json_t *)v, key, e) keys[k++] = key;
  if (!keep_order) qsort(keys, n, sizeof *keys, cmp_str);
  for (k = 0; k < n; k++) {
    int lit = literal || !strcmp(keys[k], "enum") || !strcmp(keys[k], "const");
    json_t *c = canon_copy(json_object_get(v, keys[k]), !lit && !strcmp(keys[k], "properties"), lit);
    if (!c || json_object_set_new(o, keys[k], c)) goto oom;
  }
  free(keys);
  return o;
oom:
  free(keys);
  json_decref(o);
  return NULL;
}

static int set_canon(ig_jschema *s, const json_t *schema) {
  json_t *c = canon_copy(schema, 0, 0);
  if (!c) return -1;
  s->canon = json_dumps(c, JSON_COMPACT | JSON_ENCODE_ANY);
  json_decref(c);
  if (!s->canon) return -1;
  s->canon_len = strlen(s->canon);
  s->hash = fnv1a(s->canon, s->canon_len);
  return 0;
}

/* Each pattern's states folded as a regex grammar's are (the mask cache's keys), within one FOLD_BUDGET for all of
 * them; a pattern past it (or out of memory) keeps exact states. */
static void fold_patterns(ig_jschema *s) {
  if (!s->n_pats || !(s->pat_rep = calloc(s->n_pats, sizeof *s->pat_rep))) return;
  uint64_t left = FOLD_BUDGET;
  for (uint32_t i = 0; i < s->n_pats && left > 0; i++) {
    uint32_t *rep = malloc((size_t)ig_regex_n_states(s->pats[i]) * sizeof *rep);
    if (rep && !ig_regex_fold(s->pats[i], FOLD_L, &left, rep)) s->pat_rep[i] = rep;
    else free(rep);
  }
}

int ig_jschema_compile(const json_t *schema, ig_jschema **out, char *err, size_t errlen) {
  *out = NULL;
  if (errlen) err[0] = 0;
  ig_jschema *s = calloc(1, sizeof *s);
  cctx c = {.s = s, .root = schema, .err = err, .errlen = errlen};
  if (!s) return snprintf(err, errlen, "out of memory"), -1;
  s->refs = 1;
  int root = schema ? compile(&c, schema, 0) : fail(&c, "no schema");
  if (root >= 0) s->root = (uint16_t)root;
  if (root < 0 || compile_refs(&c, (uint16_t)root) || resolve_all(&c) || check_unions(&c)) goto bad;
  compute_depths(s);
  if (s->nodes[s->root].mind > IG_JSM_MAX_DEPTH) {
    fail(&c,
         "the schema has no document nested at most %d deep (a required property that refers back to its "
         "object?)",
         IG_JSM_MAX_DEPTH);
    goto bad;
  }
  s->fast = s->nodes[s->root].kind == K_ANYOBJ;
  fold_patterns(s);
  if (set_canon(s, schema)) {
    fail(&c, "out of memory");
    goto bad;
  }
  free(c.memo_json), free(c.memo_node);
  *out = s;
  return 0;
bad:
  free(c.memo_json), free(c.memo_node);
  ig_jschema_unref(s);
  return -1;
}

int ig_jschema_compile_regex(const char *pattern, size_t len, ig_jschema **out, char *err, size_t errlen) {
  *out = NULL;
  if (errlen) err[0] = 0;
  ig_jschema *s = calloc(1, sizeof *s);
  /* canon: a byte no JSON text starts with, then the pattern (so a regex and a schema are never "the same") */
  if (!s || !(s->canon = malloc(len + 2))) {
    free(s);
    return snprintf(err, errlen, "out of memory"), -1;
  }
  s->refs = 1;
  if (ig_regex_compile(pattern, len, &s->re, err, errlen)) {
    ig_jschema_unref(s);
    return -1;
  }
  s->canon[0] = 1;
  memcpy(s->canon + 1, pattern, len);
  s->canon[len + 1] = 0;
  s->canon_len = len + 1;
  s->hash = fnv1a(s->canon, s->canon_len);
  /* the states tokens of up to FOLD_L bytes cannot tell apart, for the mask cache (ig_jsm_cache_key): counted
   * repeats like [a-z]{1,400} share masks far from their bounds; skipped (no folding) past FOLD_BUDGET visits */
  uint32_t n = ig_regex_n_states(s->re);
  uint64_t budget = FOLD_BUDGET;
  if ((s->re_rep = malloc((size_t)n * sizeof *s->re_rep)) && ig_regex_fold(s->re, FOLD_L, &budget, s->re_rep))
    free(s->re_rep), s->re_rep = NULL;
  *out = s;
  return 0;
}

int ig_jschema_any_object(ig_jschema **out) {
  json_t *j = json_pack("{s:s}", "type", "object");
  char err[128];
  int rc = j ? ig_jschema_compile(j, out, err, sizeof err) : -1;
  json_decref(j);
  return rc ? -ENOMEM : 0;
}

int ig_jschema_same(const ig_jschema *a, const ig_jschema *b) {
  if (a == b) return 1;
  if (!a || !b) return 0;
  return a->hash == b->hash && a->canon_len == b->canon_len && !memcmp(a->canon, b->canon, a->canon_len);
}

/* ---- the recognizer --------------------------------------------------------------------------------------- */

/* A frame: one open value. Its fields by the node's kind:
 *   object, tagged: st (O_*); a: properties before index a are given or passed; in O_KEY b..c is the range of
 *     candidate keys in name order and d the bytes of the key typed so far; in O_COLON / O_VALUE b is the key's
 *     property index;
 *   array: st (A_*); a: items begun (saturating);
 *   string: st (S_*); aux: \u digits or UTF-8 bytes to come; a: code points so far (saturating); b: SF_* flags;
 *   number, integer: st (N_*);  boolean, null: aux: index in LITS of the byte expected next;
 *   enum: a..b the range of values still possible (sorted), c the bytes matched;
 *   any, any object: a..d hold an ig_json_fsm. */
typedef struct frame {
  uint16_t node;
  uint8_t st, aux;
  uint16_t a, b, c, d;
} frame;

typedef struct jsm {
  uint8_t depth; /* live frames; every frame below the top is an object or an array, so in a gap between tokens
                  * (the top frame an object or array) it is the number of containers open in the document */
  uint8_t ws; /* the whitespace gap between tokens so far (ig_json_ws_step) */
  uint8_t done; /* the root value has closed: nothing may follow */
  uint8_t dead; /* a byte was refused */
  frame f[IG_JSM_MAX_DEPTH];
} jsm;

_Static_assert(sizeof(jsm) <= sizeof(ig_jsm), "ig_jsm too small");
_Static_assert(sizeof(frame) == 12, "frame layout");
_Static_assert(sizeof(ig_json_fsm) == 8, "an fsm fits a frame's a..d");

enum { O_OPEN, O_NEXT, O_KEY, O_COLON, O_VALUE, O_AFTER };
enum { A_OPEN, A_VALUE, A_AFTER };
enum { S_IN, S_ESC, S_HEX, S_UTF8 };
enum { N_MINUS, N_ZERO, N_INT, N_DOT, N_FRAC, N_E, N_ESIGN, N_EXP };
/* string flags: how a \u escape counts (a surrogate pair of escapes is one code point) */
enum { SF_HI = 1, SF_PAIR = 2, SF_D = 4, SF_LOW = 8, SF_HIGH = 16 };

static const char LITS[] = "true\0false\0null";
enum { LIT_TRUE = 1, LIT_FALSE = 6, LIT_NULL = 12 }; /* the index after each literal's first byte */

static const uint8_t CONT_LO[5] = {0x80, 0xA0, 0x80, 0x90, 0x80};
static const uint8_t CONT_HI[5] = {0xBF, 0xBF, 0x9F, 0xBF, 0x8F};

static inline int is_ws(unsigned c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
static inline int is_digit(unsigned c) { return c - '0' < 10u; }
static inline int is_hex(unsigned c) { return is_digit(c) || (c | 0x20u) - 'a' < 6u; }

/* Result of a byte for a frame: taken, refused, or the frame ended before it and its parent must take it. */
enum { R_OK = 0, R_BAD = -1, R_PASS = 1 };

static inline int fits(const jsm *m, const ig_jschema *s, unsigned at, uint16_t node) {
  return at + s->nodes[node].mind <= IG_JSM_MAX_DEPTH;
}

/* The top frame's value is whole: pop it and move its parent past it. idx: the enum value it was (tags). */
static void value_done(jsm *m, const ig_jschema *s, unsigned idx) {
  memset(&m->f[--m->depth], 0, sizeof(frame));
  if (m->depth == 0) {
    m->done = 1;
    return;
  }
  frame *p = &m->f[m->depth - 1];
  const jnode *n = &s->nodes[p->node];
  if (n->kind == K_ARR) p->st = A_AFTER;
  else {
    p->st = O_AFTER;
    if (n->kind == K_TAGGED) p->node = s->alts[n->off2 + idx], p->a = 1; /* the tag was the first property */
  }
}

/* A value of `node` starts with byte c (not whitespace) in a new frame. */
static int start_value(jsm *m, const ig_jschema *s, uint16_t node, unsigned c) {
  const jnode *n = &s->nodes[node];
  if (!bit(n->first, c)) return R_BAD;
  if (n->kind == K_UNION) {
    uint32_t k = 0;
    while (k < n->n2 && !bit(s->nodes[s->alts[n->off2 + k]].first, c)) k++;
    node = s->alts[n->off2 + k];
    n = &s->nodes[node];
  }
  if (!fits(m, s, m->depth, node)) return R_BAD;
  frame *f = &m->f[m->depth++];
  *f = (frame){.node = node};
  switch (n->kind) {
  case K_OBJ:
  case K_TAGGED: f->st = O_OPEN; return R_OK;
  case K_ARR: f->st = A_OPEN; return R_OK;
  case K_STR: f->st = S_IN; return R_OK;
  case K_PSTR: f->st = S_IN, f->c = (uint16_t)ig_regex_start(s->pats[n->off]); return R_OK;
  case K_NUM:
  case K_INT: f->st = c == '-' ? N_MINUS : c == '0' ? N_ZERO : N_INT; return R_OK;
  case K_BOOL: f->aux = c == 't' ? LIT_TRUE : LIT_FALSE; return R_OK;
  case K_NULL: f->aux = LIT_NULL; return R_OK;
  case K_ENUM: {
    f->a = 0, f->b = (uint16_t)n->n, f->c = 0;
    break;
  }
  default: { /* K_ANY, K_ANYOBJ */
    ig_json_fsm fsm;
    if (n->kind == K_ANY) ig_json_fsm_init_value(&fsm);
    else ig_json_fsm_init(&fsm);
    memcpy(&f->a, &fsm, sizeof fsm);
    break;
  }
  }
  return -2; /* the frame is set up; the byte itself goes to it */
}

/* ---- frames: objects ---- */

/* Whether the key candidates sorted at [lo, hi) hold one that may come: an index in the window [a, nreq(a)]
 * whose value fits. */
static int key_ok(const jsm *m, const ig_jschema *s, const jnode *n, const frame *f, unsigned k) {
  unsigned j = s->korder[n->off + k];
  unsigned limit = f->a < n->n ? s->props[n->off + f->a].nreq : n->n;
  return j >= f->a && j <= limit && j < n->n && fits(m, s, m->depth, s->props[n->off + j].node);
}

static int any_key(const jsm *m, const ig_jschema *s, const jnode *n, const frame *f, unsigned lo, unsigned hi) {
  for (unsigned k = lo; k < hi; k++)
    if (key_ok(m, s, n, f, k)) return 1;
  return 0;
}

static int may_close_object(const ig_jschema *s, const jnode *n, const frame *f) {
  return f->a >= n->n || s->props[n->off + f->a].nreq == n->n;
}

static int obj_byte(jsm *m, const ig_jschema *s, frame *f, unsigned c) {
  const jnode *n = &s->nodes[f->node];
  if (f->st != O_KEY && is_ws(c)) return ig_json_ws_step(&m->ws, c, ig_json_max_indent(m->depth)) ? R_BAD : R_OK;
  m->ws = 0;
  switch (f->st) {
  case O_OPEN:
  case O_NEXT:
    if (c == '}' && f->st == O_OPEN) {
      if (!may_close_object(s, n, f)) return R_BAD;
      value_done(m, s, 0);
      return R_OK;
    }
    if (c != '"' || !any_key(m, s, n, f, 0, n->n)) return R_BAD;
    f->st = O_KEY, f->b = 0, f->c = (uint16_t)n->n, f->d = 0;
    return R_OK;
  case O_KEY: {
    unsigned lo = f->b, hi = f->c, pos = f->d;
    const jprop *pl = &s->props[n->off + s->korder[n->off + lo]];
    int whole = pl->name_len == pos; /* sorted: a name equal to the typed prefix comes first */
    if (c == '"') {
      if (!whole || !key_ok(m, s, n, f, lo)) return R_BAD;
      f->st = O_COLON, f->b = s->korder[n->off + lo], f->c = f->d = 0;
      f->a = (uint16_t)(f->b + 1);
      return R_OK;
    }
    unsigned k = lo + (unsigned)whole;
    while (k < hi && (unsigned char)s->bytes[s->props[n->off + s->korder[n->off + k]].name_off + pos] < c) k++;
    unsigned nlo = k;
    while (k < hi && (unsigned char)s->bytes[s->props[n->off + s->korder[n->off + k]].name_off + pos] == c) k++;
    if (!any_key(m, s, n, f, nlo, k)) return R_BAD;
    f->b = (uint16_t)nlo, f->c = (uint16_t)k, f->d = (uint16_t)(pos + 1);
    return R_OK;
  }
  case O_COLON:
    if (c != ':') return R_BAD;
    f->st = O_VALUE;
    return R_OK;
  case O_VALUE: return start_value(m, s, s->props[n->off + f->b].node, c);
  default: /* O_AFTER */
    if (c == '}') {
      if (!may_close_object(s, n, f)) return R_BAD;
      value_done(m, s, 0);
      return R_OK;
    }
    if (c != ',' || !any_key(m, s, n, f, 0, n->n)) return R_BAD;
    f->st = O_NEXT;
    return R_OK;
  }
}

/* ---- frames: arrays ---- */

static int arr_byte(jsm *m, const ig_jschema *s, frame *f, unsigned c) {
  const jnode *n = &s->nodes[f->node];
  if (is_ws(c)) return ig_json_ws_step(&m->ws, c, ig_json_max_indent(m->depth)) ? R_BAD : R_OK;
  m->ws = 0;
  if (c == ']' && f->st != A_VALUE) {
    if (f->a < n->lo) return R_BAD;
    value_done(m, s, 0);
    return R_OK;
  }
  if (f->st == A_AFTER) {
    if (c != ',' || f->a >= n->hi || !fits(m, s, m->depth, n->child)) return R_BAD;
    f->st = A_VALUE;
    return R_OK;
  }
  if (f->a >= n->hi || !fits(m, s, m->depth, n->child)) return R_BAD; /* maxItems 0, or no room */
  if (f->a < COUNT_SAT) f->a++;
  return start_value(m, s, n->child, c);
}

/* ---- frames: strings ---- */

/* One more code point, if maxLength lets it. */
static inline int str_count(frame *f, const jnode *n) {
  if (f->a >= n->hi) return R_BAD;
  if (f->a < COUNT_SAT) f->a++;
  return R_OK;
}

static int str_byte(jsm *m, const ig_jschema *s, frame *f, unsigned c) {
  const jnode *n = &s->nodes[f->node];
  switch (f->st) {
  case S_IN: {
    if (c == '"') {
      if (f->a < n->lo) return R_BAD;
      value_done(m, s, 0);
      return R_OK;
    }
    if (c == '\\') {
      f->st = S_ESC;
      if (f->b & SF_HI) { /* may be the low half of a pair: counted at its end */
        f->b = SF_PAIR;
        return R_OK;
      }
      f->b = 0;
      return str_count(f, n);
    }
    f->b = 0;
    unsigned left, range = 0;
    if (c >= 0x20 && c < 0x80) return str_count(f, n);
    if (c < 0xC2) return R_BAD;
    if (c < 0xE0) left = 1;
    else if (c < 0xF0) left = 2, range = c == 0xE0 ? 1 : c == 0xED ? 2 : 0;
    else if (c < 0xF5) left = 3, range = c == 0xF0 ? 3 : c == 0xF4 ? 4 : 0;
    else return R_BAD;
    f->st = S_UTF8, f->aux = (uint8_t)(range << 2 | left);
    return str_count(f, n);
  }
  case S_ESC:
    switch (c) {
    case '"':
    case '\\':
    case '/':
    case 'b':
    case 'f':
    case 'n':
    case 'r':
    case 't':
      f->st = S_IN;
      if (f->b & SF_PAIR) {
        f->b = 0;
        return str_count(f, n);
      }
      return R_OK;
    case 'u': f->st = S_HEX, f->aux = 4; return R_OK;
    default: return R_BAD;
    }
  case S_HEX: {
    if (!is_hex(c)) return R_BAD;
    unsigned lc = c | 0x20u, full = (f->b & SF_PAIR) && f->a >= n->hi; /* full: only a low half may come */
    if (f->aux == 4) {
      if (lc == 'd') f->b |= SF_D;
      else if (full) return R_BAD;
    } else if (f->aux == 3 && (f->b & SF_D)) {
      if (lc == '8' || lc == '9' || lc == 'a' || lc == 'b') f->b |= SF_HIGH;
      else if (lc >= 'c') f->b |= SF_LOW;
    }
    if (f->aux == 3 && full && !(f->b & SF_LOW)) return R_BAD;
    if (--f->aux) return R_OK;
    f->st = S_IN;
    unsigned fl = f->b;
    f->b = fl & SF_HIGH ? SF_HI : 0;
    if ((fl & SF_PAIR) && !(fl & SF_LOW)) return str_count(f, n);
    return R_OK;
  }
  default: { /* S_UTF8 */
    unsigned range = (f->aux >> 2) & 7, left = f->aux & 3;
    if (c < CONT_LO[range] || c > CONT_HI[range]) return R_BAD;
    if (left == 1) f->st = S_IN, f->aux = 0;
    else f->aux = (uint8_t)(left - 1); /* later continuation bytes: 80..BF */
    return R_OK;
  }
  }
}

/* A string with a pattern: its automaton state in c runs over the content's decoded bytes; the closing quote only
 * in a matching state; escapes: the short ones (a \u escape is never generated), each only where its byte keeps
 * a match reachable. */
static int pstr_byte(jsm *m, const ig_jschema *s, frame *f, unsigned c) {
  const ig_regex *re = s->pats[s->nodes[f->node].off];
  unsigned b = c;
  if (f->st == S_ESC) {
    switch (c) {
    case '"':
    case '\\':
    case '/': b = c; break;
    case 'b': b = 8; break;
    case 'f': b = 12; break;
    case 'n': b = 10; break;
    case 'r': b = 13; break;
    case 't': b = 9; break;
    default: return R_BAD;
    }
    f->st = S_IN;
  } else if (c == '"') {
    if (!ig_regex_accepting(re, f->c)) return R_BAD;
    value_done(m, s, 0);
    return R_OK;
  } else if (c == '\\') {
    static const unsigned char ESC[] = {'"', '\\', '/', 8, 12, 10, 13, 9};
    for (size_t k = 0; k < sizeof ESC; k++) {
      if (ig_regex_step(re, f->c, ESC[k]) >= 0) {
        f->st = S_ESC;
        return R_OK;
      }
    }
    return R_BAD;
  } else if (c < 0x20) {
    return R_BAD;
  }
  int32_t t = ig_regex_step(re, f->c, (unsigned char)b);
  if (t < 0) return R_BAD;
  f->c = (uint16_t)t;
  return R_OK;
}

/* ---- frames: numbers, literals, enums, free-form values ---- */

static int num_byte(jsm *m, const ig_jschema *s, frame *f, unsigned c) {
  int integer = s->nodes[f->node].kind == K_INT;
  switch (f->st) {
  case N_MINUS:
    if (!is_digit(c)) return R_BAD;
    f->st = c == '0' ? N_ZERO : N_INT;
    return R_OK;
  case N_ZERO:
  case N_INT:
  case N_FRAC:
    if (is_digit(c) && f->st != N_ZERO) return R_OK;
    if (!integer && c == '.' && f->st != N_FRAC) {
      f->st = N_DOT;
      return R_OK;
    }
    if (!integer && (c == 'e' || c == 'E')) {
      f->st = N_E;
      return R_OK;
    }
    break;
  case N_DOT:
    if (!is_digit(c)) return R_BAD;
    f->st = N_FRAC;
    return R_OK;
  case N_E:
    if (c == '+' || c == '-') {
      f->st = N_ESIGN;
      return R_OK;
    }
    /* fall through */
  case N_ESIGN:
    if (!is_digit(c)) return R_BAD;
    f->st = N_EXP;
    return R_OK;
  default: /* N_EXP */
    if (is_digit(c)) return R_OK;
  }
  value_done(m, s, 0);
  return R_PASS;
}

static int lit_byte(jsm *m, const ig_jschema *s, frame *f, unsigned c) {
  if (c != (unsigned char)LITS[f->aux]) return R_BAD;
  if (LITS[++f->aux] == 0) value_done(m, s, 0);
  return R_OK;
}

static int enum_byte(jsm *m, const ig_jschema *s, frame *f, unsigned c) {
  const jnode *n = &s->nodes[f->node];
  unsigned lo = f->a, hi = f->b, pos = f->c;
  int whole = s->vals[n->off + lo].len == pos;
  /* [lo + whole, hi) all have a byte at pos, in order: binary search its run of c */
  unsigned a = lo + (unsigned)whole, b = hi;
  while (a < b) {
    unsigned mid = (a + b) / 2;
    if ((unsigned char)val_text(s, n->off + mid)[pos] < c) a = mid + 1;
    else b = mid;
  }
  unsigned nlo = a;
  b = hi;
  while (a < b) {
    unsigned mid = (a + b) / 2;
    if ((unsigned char)val_text(s, n->off + mid)[pos] <= c) a = mid + 1;
    else b = mid;
  }
  if (nlo == a) {
    if (!whole) return R_BAD;
    value_done(m, s, lo); /* a number that a longer value extends: it ends here */
    return R_PASS;
  }
  f->a = (uint16_t)nlo, f->b = (uint16_t)a, f->c = (uint16_t)(pos + 1);
  if (a - nlo == 1 && s->vals[n->off + nlo].len == pos + 1) value_done(m, s, nlo);
  return R_OK;
}

static int any_byte(jsm *m, const ig_jschema *s, frame *f, unsigned c) {
  ig_json_fsm fsm;
  memcpy(&fsm, &f->a, sizeof fsm);
  if (fsm.state == IG_JSON_FSM_IN_STRING && c >= 0x20 && c < 0x80 && c != '"' && c != '\\') return R_OK;
  int num = ig_json_fsm_number_done(&fsm);
  if (ig_json_fsm_step(&fsm, c, m->depth - 1u)) { /* the frames below are the schema's open containers */
    if (!num) return R_BAD;
    value_done(m, s, 0);
    return R_PASS;
  }
  if (ig_json_fsm_complete(&fsm)) {
    value_done(m, s, 0);
    return R_OK;
  }
  memcpy(&f->a, &fsm, sizeof fsm);
  return R_OK;
}

/* One byte: R_OK or R_BAD. */
static int step(jsm *m, const ig_jschema *s, unsigned c) {
  for (;;) {
    int r;
    if (m->depth == 0) {
      if (m->done) return R_BAD;
      if (is_ws(c)) return ig_json_ws_step(&m->ws, c, 0) ? R_BAD : R_OK; /* no container open yet */
      m->ws = 0;
      r = start_value(m, s, s->root, c);
      if (r != -2) return r;
    }
    frame *f = &m->f[m->depth - 1];
    switch (s->nodes[f->node].kind) {
    case K_STR:
      if (f->st == S_IN && c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
        f->b = 0;
        return str_count(f, &s->nodes[f->node]);
      }
      r = str_byte(m, s, f, c);
      break;
    case K_PSTR: r = pstr_byte(m, s, f, c); break;
    case K_OBJ:
    case K_TAGGED: r = obj_byte(m, s, f, c); break;
    case K_ARR: r = arr_byte(m, s, f, c); break;
    case K_NUM:
    case K_INT: r = num_byte(m, s, f, c); break;
    case K_BOOL:
    case K_NULL: r = lit_byte(m, s, f, c); break;
    case K_ENUM: r = enum_byte(m, s, f, c); break;
    default: r = any_byte(m, s, f, c); break;
    }
    if (r == -2) continue; /* a value started: its frame takes the byte */
    if (r != R_PASS) return r;
  }
}

static inline jsm *J(ig_jsm *m) { return (jsm *)(void *)m->opaque; }
static inline const jsm *JC(const ig_jsm *m) { return (const jsm *)(const void *)m->opaque; }

/* A regex grammar's state: the automaton's state, or dead. The rest of ig_jsm stays zero. */
typedef struct rstate {
  uint32_t st;
  uint32_t dead;
} rstate;
static inline rstate *R(ig_jsm *m) { return (rstate *)(void *)m->opaque; }
static inline const rstate *RC(const ig_jsm *m) { return (const rstate *)(const void *)m->opaque; }

static int regex_feed(ig_jsm *m, const ig_regex *re, const unsigned char *b, size_t n) {
  rstate *r = R(m);
  if (r->dead) return -1;
  for (size_t i = 0; i < n; i++) {
    int32_t t = ig_regex_step(re, r->st, b[i]);
    if (t < 0) {
      r->st = 0, r->dead = 1; /* stays refused, and never complete */
      return -1;
    }
    r->st = (uint32_t)t;
  }
  return 0;
}

void ig_jsm_init(ig_jsm *m, const ig_jschema *s) {
  memset(m, 0, sizeof *m);
  if (s->re) R(m)->st = ig_regex_start(s->re);
  if (s->fast) {
    ig_json_fsm f;
    ig_json_fsm_init(&f);
    memcpy(m->opaque, &f, sizeof f);
  }
}

int ig_jsm_feed(ig_jsm *m, const ig_jschema *s, const unsigned char *b, size_t n) {
  if (s->re) return regex_feed(m, s->re, b, n);
  if (s->fast) {
    ig_json_fsm f;
    memcpy(&f, m->opaque, sizeof f);
    int rc = ig_json_fsm_feed(&f, b, n);
    memcpy(m->opaque, &f, sizeof f);
    return rc;
  }
  jsm *j = J(m);
  if (j->dead) return -1;
  for (size_t i = 0; i < n; i++)
    if (step(j, s, b[i])) {
      memset(m, 0, sizeof *m);
      J(m)->dead = 1; /* stays refused, and never complete */
      return -1;
    }
  return 0;
}

static int complete(const jsm *j, const ig_jschema *s) {
  if (j->done) return 1;
  if (j->depth != 1) return 0;
  const frame *f = &j->f[0];
  const jnode *n = &s->nodes[f->node];
  switch (n->kind) {
  case K_NUM:
  case K_INT: return f->st == N_ZERO || f->st == N_INT || f->st == N_FRAC || f->st == N_EXP;
  case K_ENUM: return s->vals[n->off + f->a].len == f->c;
  case K_ANY: {
    ig_json_fsm fsm;
    memcpy(&fsm, &f->a, sizeof fsm);
    return ig_json_fsm_number_done(&fsm);
  }
  default: return 0;
  }
}

int ig_jsm_complete(const ig_jsm *m, const ig_jschema *s) {
  if (s->re) return !RC(m)->dead && ig_regex_accepting(s->re, RC(m)->st);
  if (s->fast) {
    ig_json_fsm f;
    memcpy(&f, m->opaque, sizeof f);
    return ig_json_fsm_complete(&f);
  }
  return complete(JC(m), s);
}

/* A count c of code points (strings) or items (arrays) against [lo, hi], as far as any text of at most L bytes can
 * tell: such a text adds at most L code points (or L items), so every c with lo <= c and c + L <= hi behaves as
 * lo does (every continuation fits, the value may close), and every c with c + L < lo as 0 does (none can reach
 * lo, every continuation fits). */
static uint16_t count_key(uint16_t c, uint32_t lo, uint32_t hi, uint64_t L) {
  uint64_t c64 = c, hi64 = hi == NO_MAX ? UINT64_MAX / 2 : hi;
  if (c64 + L > hi64) return c;
  if (c64 >= lo) return (uint16_t)lo;
  if (c64 + L < lo) return 0;
  return c;
}

void ig_jsm_cache_key(const ig_jsm *m, const ig_jschema *s, int max_len, ig_jsm *key) {
  *key = *m;
  if (s->re) { /* a regex grammar: its state's representative, for vocabularies whose tokens FOLD_L covers */
    rstate *r = (rstate *)key->opaque;
    if (s->re_rep && max_len >= 1 && max_len <= FOLD_L && !r->dead && r->st < ig_regex_n_states(s->re))
      r->st = s->re_rep[r->st];
    return;
  }
  if (s->fast || max_len < 1) return;
  jsm *j = J(key);
  if (j->dead) return;
  for (int d = 0; d < j->depth; d++) {
    frame *f = &j->f[d];
    const jnode *n = &s->nodes[f->node];
    if (n->kind == K_STR || n->kind == K_ARR) f->a = count_key(f->a, n->lo, n->hi, (uint64_t)max_len);
    else if (n->kind == K_PSTR && max_len <= (int)FOLD_L && s->pat_rep && s->pat_rep[n->off] &&
             f->c < ig_regex_n_states(s->pats[n->off]))
      f->c = (uint16_t)s->pat_rep[n->off][f->c]; /* the pattern's state (decoded bytes: at most max_len of them) */
  }
}

/* ---- the mask -------------------------------------------------------------------------------------------- */

/* The bytes of a state that matter: its header and live frames (the rest is zero in states kept, and never read
 * in the walk's scratch states). */
static inline size_t live_size(const jsm *j) { return offsetof(jsm, f) + (size_t)j->depth * sizeof(frame); }

/* One trie node on the walk (ig_jschema_allowed's loop body): makes st[d] (or its lazy count) from st[d - 1] and
 * the node's byte. 0 when the path stays valid (its tokens are allowed, its subtree is walked), -1 when not.
 * st[d]: the state after the path down to trie depth d (as in ig_json_allowed). A frame's push only writes a whole
 * frame, so st[d]'s bytes past its live frames may be stale without harm. The hot case, a plain ASCII byte inside a
 * string, goes without copying states: when the step's state is a string (the schema's, or one inside a free-form
 * value), a path of such bytes below it is kept as a count only (lazy[d]: st[d] is st[0] with the string's count
 * cnt[d]), and made a whole state when another byte comes. */
typedef struct walk {
  const ig_jschema *s;
  const jsm *j0;
  int mode; /* 1: in a schema string (the count grows), 2: in an fsm's string (nothing changes) */
  uint32_t hi;
  jsm st[IG_JSON_TRIE_DEPTH + 1];
  uint8_t lazy[IG_JSON_TRIE_DEPTH + 1];
  uint16_t cnt[IG_JSON_TRIE_DEPTH + 1];
} walk;

static inline int visit(walk *w, unsigned d, unsigned c) {
  if (w->lazy[d - 1]) {
    unsigned pc = w->cnt[d - 1];
    if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
      if (w->mode == 1 && pc >= w->hi) return -1;
      w->lazy[d] = 1, w->cnt[d] = (uint16_t)(w->mode == 1 && pc < COUNT_SAT ? pc + 1 : pc);
      return 0;
    }
    jsm *q = &w->st[d];
    memcpy(q, w->j0, live_size(w->j0));
    if (w->mode == 1 && d > 1) { /* past the first byte: the string's flags are clear */
      frame *qf = &q->f[q->depth - 1];
      qf->a = (uint16_t)pc, qf->b = 0;
    }
    w->lazy[d] = 0;
    return step(q, w->s, c) ? -1 : 0;
  }
  const jsm *p = &w->st[d - 1];
  jsm *q = &w->st[d];
  memcpy(q, p, live_size(p));
  w->lazy[d] = 0;
  return step(q, w->s, c) ? -1 : 0;
}

/* The walk over one segment of the trie (see ig_json_seg): marks the allowed tokens of nodes [lo, hi), returns how
 * many. */
static int walk_seg(const ig_json_vocab *v, const ig_jschema *s, const jsm *j0, const ig_json_seg *g,
                    uint8_t *allowed) {
  if (j0->dead || j0->done) return 0;
  walk wk, *w = &wk; /* ~25 KB of stack */
  w->s = s, w->j0 = j0, w->mode = 0, w->hi = 0;
  memcpy(&w->st[0], j0, live_size(j0));
  const frame *top = j0->depth ? &j0->f[j0->depth - 1] : NULL;
  if (top && s->nodes[top->node].kind == K_STR && top->st == S_IN) w->mode = 1, w->hi = s->nodes[top->node].hi;
  if (top && (s->nodes[top->node].kind == K_ANY || s->nodes[top->node].kind == K_ANYOBJ)) {
    ig_json_fsm fsm;
    memcpy(&fsm, &top->a, sizeof fsm);
    if (fsm.state == IG_JSON_FSM_IN_STRING) w->mode = 2;
  }
  w->lazy[0] = w->mode != 0, w->cnt[0] = top ? top->a : 0;
  const uint8_t *byte = v->byte, *depth = v->depth;
  int count = 0;
  if (g->parent && visit(w, 1, byte[g->parent])) return 0;
  for (uint32_t i = g->lo, n = g->hi; i < n;) {
    if (visit(w, depth[i], byte[i])) {
      i = v->next[i];
      continue;
    }
    for (uint32_t k = v->first_tok[i], e = v->first_tok[i + 1]; k < e; k++) allowed[v->ids[k]] = 1;
    count += (int)(v->first_tok[i + 1] - v->first_tok[i]);
    i++;
  }
  return count;
}

/* walk_seg for a regex grammar: one automaton state per trie depth. */
static int regex_seg(const ig_json_vocab *v, const ig_regex *re, const rstate *r0, const ig_json_seg *g,
                     uint8_t *allowed) {
  if (r0->dead) return 0;
  int32_t st[IG_JSON_TRIE_DEPTH + 1];
  st[0] = (int32_t)r0->st;
  if (g->parent && (st[1] = ig_regex_step(re, (uint32_t)st[0], v->byte[g->parent])) < 0) return 0;
  int count = 0;
  for (uint32_t i = g->lo, n = g->hi; i < n;) {
    unsigned d = v->depth[i];
    int32_t t = ig_regex_step(re, (uint32_t)st[d - 1], v->byte[i]);
    if (t < 0) {
      i = v->next[i];
      continue;
    }
    st[d] = t;
    for (uint32_t k = v->first_tok[i], e = v->first_tok[i + 1]; k < e; k++) allowed[v->ids[k]] = 1;
    count += (int)(v->first_tok[i + 1] - v->first_tok[i]);
    i++;
  }
  return count;
}

int ig_jschema_allowed_seg(const ig_json_vocab *v, const ig_jschema *s, const ig_jsm *m, const ig_json_seg *g,
                           uint8_t *allowed) {
  if (s->re) return regex_seg(v, s->re, RC(m), g, allowed);
  if (s->fast) {
    ig_json_fsm f;
    memcpy(&f, m->opaque, sizeof f);
    return ig_json_allowed_seg(v, &f, g, allowed);
  }
  return walk_seg(v, s, JC(m), g, allowed);
}

int ig_jschema_allowed_rest(const ig_json_vocab *v, const ig_jschema *s, const ig_jsm *m, const int32_t *eos,
                            int n_eos, uint8_t *allowed) {
  if (s->fast) {
    ig_json_fsm f;
    memcpy(&f, m->opaque, sizeof f);
    return ig_json_allowed_rest(v, &f, eos, n_eos, allowed);
  }
  if (s->re) {
    int count = 0;
    for (int k = 0; k < v->n_long && !RC(m)->dead; k++) {
      ig_jsm t = *m;
      if (regex_feed(&t, s->re, v->long_bytes + v->long_off[k], v->long_off[k + 1] - v->long_off[k]) == 0)
        allowed[v->long_ids[k]] = 1, count++;
    }
    return count + ig_json_mark_eos(v, eos, n_eos, ig_jsm_complete(m, s), allowed);
  }
  const jsm *j0 = JC(m);
  int count = 0, done = complete(j0, s);
  if (!j0->dead && !j0->done) {
    for (int k = 0; k < v->n_long; k++) {
      ig_jsm t = *m;
      if (ig_jsm_feed(&t, s, v->long_bytes + v->long_off[k], v->long_off[k + 1] - v->long_off[k]) == 0)
        allowed[v->long_ids[k]] = 1, count++;
    }
  }
  return count + ig_json_mark_eos(v, eos, n_eos, done, allowed);
}

int ig_jschema_allowed(const ig_json_vocab *v, const ig_jschema *s, const ig_jsm *m, const int32_t *eos, int n_eos,
                       uint8_t *allowed) {
  if (v->n_vocab > 0) memset(allowed, 0, (size_t)v->n_vocab);
  const ig_json_seg all = {1, v->n_nodes, 0};
  int c = ig_jschema_allowed_seg(v, s, m, &all, allowed);
  return c + ig_jschema_allowed_rest(v, s, m, eos, n_eos, allowed);
}
