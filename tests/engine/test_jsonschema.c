/* tests/engine/test_jsonschema: JSON-Schema-constrained generation. For ~20 schemas: random documents made by a
 * generator that follows the schema are accepted byte by byte (and no proper prefix is complete unless it is
 * itself valid), mutated documents and the independent validator (jsonschema_common.h) agree, random walks over
 * the allowed bytes never dead-end, and the token mask equals brute force; then compile errors (with bounded
 * work), ig_jschema_same and the reference counts. */
#include "engine/jsonmask.h"
#include "engine/jsonschema.h"
#include "jsonschema_common.h"
#include "test.h"
#include <jansson.h>
#include <locale.h>
#include <regex.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

/* ---- helpers --------------------------------------------------------------------------------------------- */

static uint64_t rng_next(uint64_t *s) {
  *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
  return *s;
}
static unsigned rnd(uint64_t *s, unsigned n) { return n ? (unsigned)(rng_next(s) % n) : 0; }

typedef struct buf {
  char *p;
  size_t n, cap;
} buf;

static void put(buf *b, const void *s, size_t n) {
  if (b->n + n + 1 > b->cap) {
    b->cap = (b->n + n + 1) * 2;
    b->p = realloc(b->p, b->cap);
    if (!b->p) abort();
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = 0;
}
static void puts_(buf *b, const char *s) { put(b, s, strlen(s)); }

static json_t *load(const char *text) {
  json_error_t je;
  json_t *j = json_loads(text, JSON_DECODE_ANY, &je);
  if (!j) fprintf(stderr, "bad test schema: %s: %s\n", je.text, text), abort();
  return j;
}

static ig_jschema *compile_ok(const json_t *j) {
  ig_jschema *s = NULL;
  char err[256];
  int rc = ig_jschema_compile(j, &s, err, sizeof err);
  CHECK_MSG(rc == 0, "compile failed: %s", err);
  return rc ? NULL : s;
}

static int feed(ig_jsm *m, const ig_jschema *s, const void *p, size_t n) { return ig_jsm_feed(m, s, p, n); }

/* ---- the generator: random documents that follow a schema ------------------------------------------------ */

/* A gap with d containers open: empty, " ", or "\n" and an indent of spaces/tabs, sometimes the longest allowed
 * there (min(IG_JSON_MAX_INDENT, IG_JSON_INDENT_PER_LEVEL * d)). */
static void gen_ws(uint64_t *r, buf *b, int d) {
  if (rnd(r, 4)) return;
  if (rnd(r, 3) == 0) {
    put(b, " ", 1);
    return;
  }
  put(b, "\n", 1);
  unsigned max = (unsigned)d * IG_JSON_INDENT_PER_LEVEL < IG_JSON_MAX_INDENT ? (unsigned)d * IG_JSON_INDENT_PER_LEVEL
                                                                                : IG_JSON_MAX_INDENT;
  unsigned k = rnd(r, 4) ? rnd(r, max + 1) : max;
  for (; k; k--) put(b, rnd(r, 4) ? " " : "\t", 1);
}

static const char *const STR_PIECES[] = {"a",
                                         "Z",
                                         " ",
                                         "0",
                                         "\\n",
                                         "\\\"",
                                         "\\\\",
                                         "\\/",
                                         "\\u00e9",
                                         "\\uD83D\\uDE00",
                                         "\xC3\xA9",
                                         "\xE2\x82\xAC",
                                         "\xF0\x9F\x98\x80",
                                         "\\u0041",
                                         "\\t",
                                         "~"};

static void gen_string(uint64_t *r, buf *b, unsigned lo, unsigned hi) {
  unsigned top = hi < lo + 6 ? hi : lo + 6;
  unsigned n = lo + rnd(r, top - lo + 1);
  puts_(b, "\"");
  for (unsigned i = 0; i < n; i++) puts_(b, STR_PIECES[rnd(r, sizeof STR_PIECES / sizeof *STR_PIECES)]);
  puts_(b, "\"");
}

static void gen_number(uint64_t *r, buf *b, int integer) {
  char t[64];
  int k = 0;
  if (rnd(r, 3) == 0) t[k++] = '-';
  if (rnd(r, 4) == 0) t[k++] = '0';
  else {
    t[k++] = (char)('1' + rnd(r, 9));
    for (unsigned i = rnd(r, 6); i > 0; i--) t[k++] = (char)('0' + rnd(r, 10));
  }
  if (!integer && rnd(r, 2)) {
    t[k++] = '.';
    for (unsigned i = 1 + rnd(r, 3); i > 0; i--) t[k++] = (char)('0' + rnd(r, 10));
  }
  if (!integer && rnd(r, 3) == 0) {
    t[k++] = rnd(r, 2) ? 'e' : 'E';
    if (rnd(r, 2)) t[k++] = rnd(r, 2) ? '+' : '-';
    for (unsigned i = 1 + rnd(r, 2); i > 0; i--) t[k++] = (char)('0' + rnd(r, 10));
  }
  put(b, t, (size_t)k);
}

/* Any JSON value; objects only when obj_only. */
static void gen_free(uint64_t *r, buf *b, int depth, int obj_only) {
  unsigned kind = obj_only ? 0 : rnd(r, depth > 4 ? 6 : 8) + (depth > 4 ? 2 : 0);
  switch (kind) {
  case 0:
  case 1: {
    int open = kind == 0;
    puts_(b, open ? "{" : "[");
    gen_ws(r, b, depth + 1);
    unsigned n = depth > 4 ? 0 : rnd(r, 4);
    for (unsigned i = 0; i < n; i++) {
      if (i) puts_(b, ","), gen_ws(r, b, depth + 1);
      if (open) {
        gen_string(r, b, 0, 3);
        gen_ws(r, b, depth + 1);
        puts_(b, ":");
        gen_ws(r, b, depth + 1);
      }
      gen_free(r, b, depth + 1, 0);
      gen_ws(r, b, depth + 1);
    }
    puts_(b, open ? "}" : "]");
    return;
  }
  case 2:
  case 3: gen_string(r, b, 0, 5); return;
  case 4:
  case 5: gen_number(r, b, 0); return;
  case 6: puts_(b, rnd(r, 2) ? "true" : "false"); return;
  default: puts_(b, "null"); return;
  }
}

static const char *pick_type(uint64_t *r, const json_t *sch) {
  const json_t *t = json_object_get(sch, "type");
  if (json_is_string(t)) return json_string_value(t);
  if (json_is_array(t)) return json_string_value(json_array_get(t, rnd(r, (unsigned)json_array_size(t))));
  if (json_object_get(sch, "properties")) return "object";
  if (json_object_get(sch, "items") || json_object_get(sch, "minItems") || json_object_get(sch, "maxItems"))
    return "array";
  if (json_object_get(sch, "minLength") || json_object_get(sch, "maxLength")) return "string";
  return NULL;
}

static unsigned count_kw(const json_t *sch, const char *k, unsigned dflt) {
  const json_t *v = json_object_get(sch, k);
  return v ? (unsigned)json_integer_value(v) : dflt;
}

/* A value valid against sch; depth: open values above it (optional parts are left out when deep). */
static void gen(uint64_t *r, const json_t *root, const json_t *sch, buf *b, int depth) {
  sch = jsv_deref(root, sch);
  const json_t *v;
  if ((v = json_object_get(sch, "const")) || (v = json_object_get(sch, "enum"))) {
    const json_t *e = json_object_get(sch, "const") ? v : json_array_get(v, rnd(r, (unsigned)json_array_size(v)));
    char *t = json_dumps(e, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS);
    puts_(b, t);
    free(t);
    return;
  }
  if ((v = json_object_get(sch, "anyOf")) || (v = json_object_get(sch, "oneOf"))) {
    gen(r, root, json_array_get(v, rnd(r, (unsigned)json_array_size(v))), b, depth);
    return;
  }
  const char *t = json_is_object(sch) ? pick_type(r, sch) : NULL;
  int deep = depth >= 9;
  if (!t) {
    gen_free(r, b, depth, 0);
    return;
  }
  if (!strcmp(t, "object")) {
    const json_t *props = json_object_get(sch, "properties"), *req = json_object_get(sch, "required");
    if (!props) {
      gen_free(r, b, depth, 1);
      return;
    }
    puts_(b, "{");
    gen_ws(r, b, depth + 1);
    const char *k;
    const json_t *ps;
    int first = 1;
    json_object_foreach((json_t *)props, k, ps) {
      int required = 0;
      size_t i;
      const json_t *q;
      json_array_foreach(req, i, q) required |= !strcmp(json_string_value(q), k);
      if (!required && (deep || rnd(r, 2))) continue;
      if (!first) puts_(b, ","), gen_ws(r, b, depth + 1);
      first = 0;
      puts_(b, "\""), puts_(b, k), puts_(b, "\"");
      gen_ws(r, b, depth + 1);
      puts_(b, ":");
      gen_ws(r, b, depth + 1);
      gen(r, root, ps, b, depth + 1);
      gen_ws(r, b, depth + 1);
    }
    puts_(b, "}");
  } else if (!strcmp(t, "array")) {
    unsigned lo = count_kw(sch, "minItems", 0), hi = count_kw(sch, "maxItems", 1000);
    unsigned top = hi < lo + 3 ? hi : lo + 3, n = deep ? lo : lo + rnd(r, top - lo + 1);
    const json_t *items = json_object_get(sch, "items");
    puts_(b, "[");
    gen_ws(r, b, depth + 1);
    for (unsigned i = 0; i < n; i++) {
      if (i) puts_(b, ","), gen_ws(r, b, depth + 1);
      if (items) gen(r, root, items, b, depth + 1);
      else gen_free(r, b, depth + 1, 0);
      gen_ws(r, b, depth + 1);
    }
    puts_(b, "]");
  } else if (!strcmp(t, "string")) {
    gen_string(r, b, count_kw(sch, "minLength", 0), count_kw(sch, "maxLength", 1000));
  } else if (!strcmp(t, "integer") || !strcmp(t, "number")) {
    gen_number(r, b, !strcmp(t, "integer"));
  } else if (!strcmp(t, "boolean")) {
    puts_(b, rnd(r, 2) ? "true" : "false");
  } else {
    puts_(b, "null");
  }
}

static void gen_doc(uint64_t *r, const json_t *schema, buf *b) {
  b->n = 0;
  gen_ws(r, b, 0);
  gen(r, schema, schema, b, 0);
}

/* ---- the schemas ----------------------------------------------------------------------------------------- */

static const char *const SCHEMAS[] = {
    /* 0 plain object, required and optional */
    "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},\"age\":{\"type\":\"integer\"},"
    "\"email\":{\"type\":\"string\"}},\"required\":[\"name\",\"age\"]}",
    /* 1 nested objects, fixed-length string */
    "{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"integer\"},\"address\":{\"type\":\"object\","
    "\"properties\":{\"street\":{\"type\":\"string\"},\"zip\":{\"type\":\"string\",\"minLength\":5,\"maxLength\":5}},"
    "\"required\":[\"zip\"]}},\"required\":[\"address\"]}",
    /* 2 arrays with bounds */
    "{\"type\":\"object\",\"properties\":{\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\",\"maxLength\":3},"
    "\"minItems\":1,\"maxItems\":3},\"none\":{\"type\":\"array\",\"items\":{\"type\":\"number\"},\"maxItems\":0},"
    "\"two\":{\"type\":\"array\",\"items\":{\"type\":\"boolean\"},\"minItems\":2,\"maxItems\":2}},\"required\":["
    "\"tags\"]}",
    /* 3 enum of mixed values, prefix pairs 1/12 and "a"/"ab" */
    "{\"enum\":[1,12,\"a\",\"ab\",null,true,{\"x\":1,\"a\":[2]},[1,2],1.5,-3,\"\"]}",
    /* 4 strings with bounds */
    "{\"type\":\"array\",\"items\":{\"type\":\"string\",\"minLength\":2,\"maxLength\":4}}",
    /* 5 integer vs number */
    "{\"type\":\"object\",\"properties\":{\"i\":{\"type\":\"integer\"},\"n\":{\"type\":\"number\"},"
    "\"in\":{\"type\":[\"integer\",\"number\"]}},\"required\":[\"i\",\"n\"]}",
    /* 6 unions of a type and null */
    "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":[\"string\",\"null\"]},\"b\":{\"anyOf\":[{\"type\":"
    "\"integer\"},"
    "{\"type\":\"null\"},{\"type\":\"array\",\"items\":{\"type\":\"boolean\"}}]}},\"required\":[\"a\",\"b\"]}",
    /* 7 a tagged union of tool calls */
    "{\"oneOf\":[{\"type\":\"object\",\"properties\":{\"name\":{\"const\":\"get_weather\"},\"arguments\":{\"type\":"
    "\"object\","
    "\"properties\":{\"city\":{\"type\":\"string\"},\"unit\":{\"enum\":[\"c\",\"f\"]}},\"required\":[\"city\"]}},"
    "\"required\":[\"name\",\"arguments\"]},{\"type\":\"object\",\"properties\":{\"name\":{\"const\":\"get_time\"},"
    "\"arguments\":{\"type\":\"object\",\"properties\":{\"tz\":{\"type\":\"string\"}}}},\"required\":[\"name\","
    "\"arguments\"]},"
    "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"enum\":[\"get\"]},\"arguments\":{}},"
    "\"required\":[\"name\"]}]}",
    /* 8 a recursive tree */
    "{\"$defs\":{\"node\":{\"type\":\"object\",\"properties\":{\"value\":{\"type\":\"integer\"},\"children\":{\"type\":"
    "\"array\",\"items\":{\"$ref\":\"#/$defs/node\"}}},\"required\":[\"value\"]}},\"$ref\":\"#/$defs/node\"}",
    /* 9 free-form values inside */
    "{\"type\":\"object\",\"properties\":{\"meta\":{},\"data\":{\"type\":\"object\"},\"list\":{\"type\":\"array\"},"
    "\"any\":true},\"required\":[\"meta\",\"data\"]}",
    /* 10-13 top-level scalars */
    "{\"type\":\"number\"}",
    "{\"enum\":[1,12,123,-1]}",
    "{\"type\":\"string\",\"maxLength\":3}",
    "true",
    /* 14 JSON mode */
    "{\"type\":\"object\",\"title\":\"x\"}",
    /* 15 keys that share prefixes, all optional */
    "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},\"ab\":{\"type\":\"integer\"},\"abc\":{\"type\":"
    "\"boolean\"},\"b\":{\"type\":\"null\"}}}",
    /* 16 $ref to the root */
    "{\"type\":\"object\",\"properties\":{\"v\":{\"type\":\"boolean\"},\"next\":{\"$ref\":\"#\"}},\"required\":[\"v\"]"
    "}",
    /* 17 enum strings with non-ASCII and escapes */
    "{\"type\":\"array\",\"items\":{\"enum\":[\"\xC3\xA9\",\"e\",\"\xE2\x82\xAC uro\",\"a\\\"b\",\"\\n\",\"a/b\"]},"
    "\"minItems\":2}",
    /* 18 nested arrays */
    "{\"type\":\"array\",\"items\":{\"type\":\"array\",\"items\":{\"type\":\"integer\"},\"minItems\":1,\"maxItems\":2},"
    "\"maxItems\":3}",
    /* 19 non-ASCII keys, definitions */
    "{\"definitions\":{\"s\":{\"type\":\"string\",\"minLength\":1}},\"type\":\"object\",\"properties\":{"
    "\"\xE5\x90\x8D\xE5\x89\x8D\":{\"$ref\":\"#/definitions/s\"},\"\xC3\xB1\":{\"type\":\"boolean\"}},"
    "\"required\":[\"\xC3\xB1\"]}",
    /* 20 a union of many first bytes */
    "{\"anyOf\":[{\"type\":\"boolean\"},{\"type\":\"null\"},{\"type\":\"string\",\"maxLength\":2},{\"type\":"
    "\"integer\"},"
    "{\"type\":\"array\",\"maxItems\":1,\"items\":{\"type\":\"null\"}},{\"type\":\"object\",\"properties\":"
    "{\"k\":{\"type\":\"boolean\"}},\"required\":[\"k\"]}]}",
    /* 21 empty object and required-after-optional */
    "{\"type\":\"object\",\"properties\":{\"o1\":{\"type\":\"null\"},\"r\":{\"type\":\"object\",\"properties\":{}},"
    "\"o2\":{\"type\":\"integer\"},\"r2\":{\"enum\":[0,10]}},\"required\":[\"r\",\"r2\"]}",
};
#define N_SCHEMAS (sizeof SCHEMAS / sizeof *SCHEMAS)

/* ---- 1: generated documents ------------------------------------------------------------------------------- */

static void test_generated(void) {
  uint64_t r = 0x9E3779B97F4A7C15ull;
  buf b = {0};
  for (size_t si = 0; si < N_SCHEMAS; si++) {
    json_t *j = load(SCHEMAS[si]);
    ig_jschema *s = compile_ok(j);
    if (!s) {
      json_decref(j);
      continue;
    }
    int bad = 0;
    for (int it = 0; it < 300 && bad < 3; it++) {
      gen_doc(&r, j, &b);
      int ok = jsv_accepts_text(j, b.p, b.n, 1);
      CHECK_MSG(ok, "schema %zu: the validator refuses generated %s", si, b.p);
      ig_jsm m, w;
      ig_jsm_init(&m, s);
      for (size_t i = 0; i < b.n; i++) {
        int rc = feed(&m, s, b.p + i, 1);
        CHECK_MSG(rc == 0, "schema %zu: byte %zu of %s refused", si, i, b.p);
        if (rc) {
          bad++;
          break;
        }
        if (i + 1 < b.n && ig_jsm_complete(&m, s) && jsv_ground(b.p, i + 1)) {
          int v = jsv_accepts_text(j, b.p, i + 1, 0);
          CHECK_MSG(v, "schema %zu: prefix %.*s complete but invalid", si, (int)(i + 1), b.p);
          bad += !v;
        }
      }
      CHECK_MSG(ig_jsm_complete(&m, s), "schema %zu: %s not complete", si, b.p);
      /* the state does not depend on how the text was cut: memcmp-equal states */
      ig_jsm_init(&w, s);
      size_t cut = rnd(&r, (unsigned)b.n + 1);
      feed(&w, s, b.p, cut);
      feed(&w, s, b.p + cut, b.n - cut);
      CHECK_MSG(!memcmp(&m, &w, sizeof m), "schema %zu: states differ for %s cut at %zu", si, b.p, cut);
    }
    ig_jschema_unref(s);
    json_decref(j);
  }
  free(b.p);
}

/* ---- 2: mutated documents --------------------------------------------------------------------------------- */

static const char MUT_BYTES[] = "{}[],:\" \n0123456789-+.eEtrufalsn\\abxyz\xC3\xA9";

static void mutate(uint64_t *r, buf *b) {
  for (unsigned k = 1 + rnd(r, 2); k > 0; k--) {
    unsigned op = rnd(r, 4), at = rnd(r, (unsigned)b->n + 1);
    char c = rnd(r, 8) ? MUT_BYTES[rnd(r, sizeof MUT_BYTES - 1)] : (char)rnd(r, 256);
    if (op == 0 && at < b->n) b->p[at] = c;
    else if (op == 1) {
      put(b, "", 1);
      memmove(b->p + at + 1, b->p + at, b->n - 1 - at);
      b->p[at] = c;
    } else if (op == 2 && at < b->n) {
      memmove(b->p + at, b->p + at + 1, b->n - at - 1);
      b->n--;
    } else if (op == 3) b->n = at;
  }
}

static void test_mutations(void) {
  uint64_t r = 12345;
  buf b = {0};
  long agree_valid = 0, agree_invalid = 0;
  for (size_t si = 0; si < N_SCHEMAS; si++) {
    json_t *j = load(SCHEMAS[si]);
    ig_jschema *s = compile_ok(j);
    if (!s) continue;
    int cont = jsv_container_enum(j);
    for (int it = 0; it < 1500; it++) {
      gen_doc(&r, j, &b);
      mutate(&r, &b);
      ig_jsm m;
      ig_jsm_init(&m, s);
      int acc = feed(&m, s, b.p, b.n) == 0 && ig_jsm_complete(&m, s);
      int ground = jsv_ground(b.p, b.n);
      if (acc && ground)
        CHECK_MSG(jsv_accepts_text(j, b.p, b.n, 0), "schema %zu: recognizer accepts invalid %.*s", si, (int)b.n, b.p);
      if (ground && jsv_accepts_text(j, b.p, b.n, 1) && jsv_canonical(b.p, b.n)) {
        if (cont) { /* whitespace inside an enum's array or object is not generated: try the compact text */
          char *t = malloc(b.n + 1);
          size_t tn = jsv_compact(b.p, b.n, t);
          ig_jsm_init(&m, s);
          acc = feed(&m, s, t, tn) == 0 && ig_jsm_complete(&m, s);
          free(t);
        }
        CHECK_MSG(acc, "schema %zu: recognizer refuses valid %.*s", si, (int)b.n, b.p);
        agree_valid++;
      } else if (!acc) agree_invalid++;
    }
    ig_jschema_unref(s);
    json_decref(j);
  }
  fprintf(stderr, "mutations: %ld valid and %ld invalid ones agreed on\n", agree_valid, agree_invalid);
  CHECK(agree_valid > 1000 && agree_invalid > 1000);
  free(b.p);
}

/* ---- 3: no dead ends -------------------------------------------------------------------------------------- */

/* ok[c] = 1 for each byte the state takes; returns how many. */
static int allowed_bytes(const ig_jsm *m, const ig_jschema *s, uint8_t ok[256]) {
  int n_ok = 0;
  for (int c = 0; c < 256; c++) {
    ig_jsm t = *m;
    unsigned char ch = (unsigned char)c;
    ok[c] = (uint8_t)(feed(&t, s, &ch, 1) == 0);
    n_ok += ok[c];
  }
  return n_ok;
}

static const char PREFER[] = "\"}],:0n1tf[{a";

/* A random walk over the bytes the recognizer allows from *m, each appended to b: at most max_steps of them, ending
 * at random once the document is complete. prefer(ok, step, r) may pick the byte (-1: one of the allowed bytes,
 * uniformly); each(m, step, ctx), when given, runs before every step. Returns 1 when it dead-ended (nothing
 * allowed and the document not complete). */
static int random_walk(ig_jsm *m, const ig_jschema *s, uint64_t *r, buf *b, int max_steps,
                       int (*prefer)(const uint8_t *ok, int step, uint64_t *r),
                       void (*each)(const ig_jsm *m, int step, void *ctx), void *ctx) {
  for (int step = 0; step < max_steps; step++) {
    if (each) each(m, step, ctx);
    uint8_t ok[256];
    int n_ok = allowed_bytes(m, s, ok);
    int done = ig_jsm_complete(m, s);
    if (!n_ok) return !done;
    if (done && rnd(r, 2)) break;
    int pick = prefer(ok, step, r);
    if (pick < 0) {
      int k = (int)rnd(r, (unsigned)n_ok);
      for (int c = 0; c < 256; c++)
        if (ok[c] && k-- == 0) pick = c;
    }
    unsigned char ch = (unsigned char)pick;
    feed(m, s, &ch, 1);
    put(b, &ch, 1);
  }
  return 0;
}

/* JSON's structure bytes first, 7 times in 10 */
static int prefer_structure(const uint8_t *ok, int step, uint64_t *r) {
  (void)step;
  if (rnd(r, 10) < 7)
    for (const char *p = PREFER; *p; p++)
      if (ok[(unsigned char)*p]) return (unsigned char)*p;
  return -1;
}

static void test_no_dead_ends(void) {
  uint64_t r = 777;
  buf b = {0};
  long walks = 0;
  for (size_t si = 0; si < N_SCHEMAS; si++) {
    json_t *j = load(SCHEMAS[si]);
    ig_jschema *s = compile_ok(j);
    if (!s) continue;
    for (int it = 0; it < 150; it++) {
      gen_doc(&r, j, &b);
      size_t cut = rnd(&r, (unsigned)b.n + 1);
      b.n = cut;
      ig_jsm m;
      ig_jsm_init(&m, s);
      if (feed(&m, s, b.p, b.n)) {
        CHECK_MSG(0, "schema %zu: generated prefix refused", si);
        continue;
      }
      int stuck = random_walk(&m, s, &r, &b, 4000, prefer_structure, NULL, NULL);
      CHECK_MSG(!stuck, "schema %zu: dead end after %.*s", si, (int)b.n, b.p);
      CHECK_MSG(ig_jsm_complete(&m, s), "schema %zu: walk did not finish: %.*s", si, (int)b.n, b.p);
      if (ig_jsm_complete(&m, s) && jsv_ground(b.p, b.n))
        CHECK_MSG(jsv_accepts_text(j, b.p, b.n, 0), "schema %zu: walk ended invalid: %.*s", si, (int)b.n, b.p);
      walks++;
    }
    ig_jschema_unref(s);
    json_decref(j);
  }
  CHECK(walks > 2000);
  free(b.p);
}

/* ---- 4: the mask against brute force ---------------------------------------------------------------------- */

static const char *const PIECES[] = {"{",
                                     "}",
                                     "\":",
                                     "\":\"",
                                     "\", \"",
                                     "{\"",
                                     "\"}",
                                     "}}",
                                     "]}",
                                     "[{",
                                     ",\"",
                                     "  ",
                                     "    ",
                                     "\t\n",
                                     ": ",
                                     ", ",
                                     "12",
                                     "-1",
                                     "1.",
                                     ".5",
                                     "0.",
                                     "e+",
                                     "E-3",
                                     "00",
                                     "1e",
                                     "true",
                                     "tru",
                                     "true}",
                                     "false",
                                     "null",
                                     "nul",
                                     "hello",
                                     " world",
                                     "\\n",
                                     "\\u",
                                     "\\u00",
                                     "\\u00e9",
                                     "\\uD83D",
                                     "\\uDE00",
                                     "\xC3\xA9",
                                     "\xA9\"",
                                     "\xE2\x82\xAC",
                                     "\xE2\x82",
                                     "\x82\xAC",
                                     "\xF0\x9F\x98\x80",
                                     "\xED\xA0\x80",
                                     "1}",
                                     "1,",
                                     "1]",
                                     "1 ",
                                     "[]",
                                     "{}",
                                     "null]",
                                     " {",
                                     "\"name\"",
                                     "\"name\":",
                                     "\"name\": \"",
                                     "get",
                                     "_weather",
                                     "get_time\"",
                                     "\"arguments\":",
                                     "{\"city\":\"",
                                     "\"age\":",
                                     "\"a",
                                     "ab\"",
                                     "abc",
                                     "\"value\": 1",
                                     "children",
                                     "\":[",
                                     "\"]",
                                     "\"],",
                                     "\xC3\xB1\":",
                                     "\xE5\x90\x8D",
                                     "123",
                                     "12]",
                                     "1.5,",
                                     "\"zip\":\"",
                                     "00000",
                                     "\"tags\":[\"",
                                     "\"\"",
                                     "\"a\\\"b\"",
                                     "\"\\n\"",
                                     "\"e\",",
                                     "\"\xC3\xA9\"",
                                     "null,"};

typedef struct tvocab {
  int n;
  const unsigned char *bytes[512];
  size_t len[512];
  unsigned char special[512];
  int32_t eos[2];
  ig_json_vocab *v;
} tvocab;

/* longlen: the bytes of the one token past the trie's depth (at most 150) */
static void tvocab_build_long(tvocab *tv, size_t longlen) {
  static unsigned char singles[256], longtok[150];
  memset(tv, 0, sizeof *tv);
  for (int c = 0; c < 256; c++) singles[c] = (unsigned char)c, tv->bytes[tv->n] = singles + c, tv->len[tv->n++] = 1;
  for (size_t i = 0; i < sizeof PIECES / sizeof *PIECES; i++)
    tv->bytes[tv->n] = (const unsigned char *)PIECES[i], tv->len[tv->n++] = strlen(PIECES[i]);
  memset(longtok, 'a', sizeof longtok); /* past the trie's depth: tried on its own */
  longtok[longlen - 1] = '"';
  tv->bytes[tv->n] = longtok, tv->len[tv->n++] = longlen;
  tv->bytes[tv->n] = (const unsigned char *)"", tv->len[tv->n++] = 0;
  tv->special[tv->n] = 1, tv->bytes[tv->n] = (const unsigned char *)"{", tv->len[tv->n++] = 1;
  tv->eos[0] = tv->n, tv->special[tv->n] = 1, tv->bytes[tv->n] = (const unsigned char *)"</s>", tv->len[tv->n++] = 4;
  tv->eos[1] = tv->n, tv->bytes[tv->n] = (const unsigned char *)"}", tv->len[tv->n++] = 1;
  if (ig_json_vocab_build(&tv->v, tv->n, tv->bytes, tv->len, tv->special)) abort();
}
static void tvocab_build(tvocab *tv) { tvocab_build_long(tv, 150); }

static void check_mask(const tvocab *tv, const ig_jschema *s, const ig_jsm *m, size_t si) {
  uint8_t mask[512];
  int n = ig_jschema_allowed(tv->v, s, m, tv->eos, 2, mask), count = 0, bad = 0;
  int done = ig_jsm_complete(m, s);
  for (int t = 0; t < tv->n; t++) {
    int want;
    if (t == tv->eos[0] || t == tv->eos[1]) want = done;
    else if (tv->special[t] || tv->len[t] == 0) want = 0;
    else {
      ig_jsm c = *m;
      want = feed(&c, s, tv->bytes[t], tv->len[t]) == 0;
    }
    count += want;
    if (mask[t] != want && bad++ < 3)
      CHECK_MSG(0, "schema %zu: token %d (%.*s): mask %d, brute force %d", si, t, (int)tv->len[t], tv->bytes[t],
                mask[t], want);
  }
  CHECK_MSG(n == count, "schema %zu: mask count %d, expected %d", si, n, count);
  /* the mask-cache key's mask is this one (ig_jsm_cache_key: counts no token can tell apart folded) */
  ig_jsm key;
  uint8_t kmask[512];
  ig_jsm_cache_key(m, s, (int)ig_json_vocab_max_len(tv->v), &key);
  int kn = ig_jschema_allowed(tv->v, s, &key, tv->eos, 2, kmask);
  CHECK_MSG(kn == n && !memcmp(kmask, mask, (size_t)tv->n), "schema %zu: the cache key's mask differs", si);
  /* the same mask in segments (as the engine's threads make it), for several cuts */
  static const int cuts[] = {1, 2, 5, 17, 64};
  for (size_t c = 0; c < sizeof cuts / sizeof cuts[0]; c++) {
    ig_json_seg *g = NULL;
    int ng = ig_json_vocab_segments(tv->v, cuts[c], &g), sum = 0;
    uint8_t part[512];
    memset(part, 0, sizeof part);
    for (int k = ng - 1; k >= 0; k--) sum += ig_jschema_allowed_seg(tv->v, s, m, &g[k], part);
    sum += ig_jschema_allowed_rest(tv->v, s, m, tv->eos, 2, part);
    CHECK_MSG(ng > 0 && sum == n && !memcmp(part, mask, (size_t)tv->n), "schema %zu: %d segments: count %d of %d",
              si, ng, sum, n);
    free(g);
  }
}

static void test_mask(void) {
  tvocab tv;
  tvocab_build(&tv);
  uint64_t r = 4242;
  buf b = {0};
  long states = 0;
  for (size_t si = 0; si < N_SCHEMAS; si++) {
    json_t *j = load(SCHEMAS[si]);
    ig_jschema *s = compile_ok(j);
    if (!s) continue;
    for (int it = 0; it < 60; it++) {
      gen_doc(&r, j, &b);
      size_t cut = it == 0 ? b.n : rnd(&r, (unsigned)b.n + 1);
      ig_jsm m;
      ig_jsm_init(&m, s);
      if (feed(&m, s, b.p, cut)) continue;
      check_mask(&tv, s, &m, si);
      states++;
    }
    ig_jsm m;
    ig_jsm_init(&m, s);
    check_mask(&tv, s, &m, si); /* the start */
    ig_jschema_unref(s);
    json_decref(j);
  }
  CHECK(states > 1000);
  ig_json_vocab_free(tv.v);
  free(b.p);
}

/* Mask-cache keys along long strings and arrays: with the test vocabulary's longest token (150 bytes), a string of
 * minLength 200 and maxLength 400 folds the lengths 0..49 (none can reach 200 in one token) and 200..250 (every
 * token fits, the string may close) into one key each, 302 keys for its 401 lengths; an unbounded string's
 * lengths all fold; an array of 200..400 items the same way as the string. At every length the key's mask is the
 * state's own. */
static void test_cache_key(void) {
  tvocab tv;
  tvocab_build(&tv);
  const int L = (int)ig_json_vocab_max_len(tv.v);
  CHECK_EQ_INT(L, 150);
  static const struct {
    const char *schema, *open, *unit;
    int n, keys;
  } cases[] = {
      {"{\"type\":\"string\",\"minLength\":200,\"maxLength\":400}", "\"", "a", 400, 302},
      {"{\"type\":\"string\",\"minLength\":200,\"maxLength\":400}", "\"", "\xc3\xa9", 400, 302},
      {"{\"type\":\"string\"}", "\"", "\\n", 500, 1},
      {"{\"type\":\"array\",\"items\":{\"type\":\"integer\"},\"minItems\":200,\"maxItems\":400}", "[", "7,", 399, 302}, /* 301 + the state right after '[' */
      {"{\"type\":\"object\",\"properties\":{\"t\":{\"type\":\"string\",\"maxLength\":300}}}", "{\"t\":\"", "b", 300, 151},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    json_t *j = load(cases[c].schema);
    ig_jschema *s = compile_ok(j);
    if (!s) continue;
    ig_jsm m, *keys = calloc((size_t)cases[c].n + 1, sizeof *keys);
    ig_jsm_init(&m, s);
    CHECK(feed(&m, s, cases[c].open, strlen(cases[c].open)) == 0);
    int distinct = 0;
    for (int i = 0; i <= cases[c].n; i++) {
      if (i) CHECK_MSG(feed(&m, s, cases[c].unit, strlen(cases[c].unit)) == 0, "case %zu: unit %d refused", c, i);
      check_mask(&tv, s, &m, 1000 + c); /* also compares the key's mask */
      ig_jsm key;
      ig_jsm_cache_key(&m, s, L, &key);
      int seen = 0;
      for (int k = 0; k < distinct && !seen; k++) seen = !memcmp(&keys[k], &key, sizeof key);
      if (!seen) keys[distinct++] = key;
    }
    CHECK_MSG(distinct == cases[c].keys, "case %zu: %d keys for %d lengths, expected %d", c, distinct, cases[c].n + 1,
              cases[c].keys);
    free(keys);
    ig_jschema_unref(s);
    json_decref(j);
  }
  ig_json_vocab_free(tv.v);
  /* a regex grammar with a vocabulary whose longest token is 128 bytes (the fold's reach; the 150-byte one above
   * gets exact keys): [a-z ,.]{1,400} folds the lengths 1..272 into one key, 130 keys for its 401 lengths */
  tvocab_build_long(&tv, 128);
  CHECK_EQ_INT((int)ig_json_vocab_max_len(tv.v), 128);
  ig_jschema *s = NULL;
  char err[256];
  CHECK_EQ_INT(ig_jschema_compile_regex("[a-z ,.]{1,400}", 15, &s, err, sizeof err), 0);
  if (s) {
    ig_jsm m, key, *keys = calloc(401, sizeof *keys);
    ig_jsm_init(&m, s);
    int distinct = 0;
    for (int i = 0; i <= 400; i++) {
      if (i) CHECK(ig_jsm_feed(&m, s, (const unsigned char *)(i % 7 ? "a" : " "), 1) == 0);
      check_mask(&tv, s, &m, 2000);
      ig_jsm_cache_key(&m, s, 128, &key);
      int seen = 0;
      for (int k = 0; k < distinct && !seen; k++) seen = !memcmp(&keys[k], &key, sizeof key);
      if (!seen) keys[distinct++] = key;
      ig_jsm same;
      ig_jsm_cache_key(&m, s, 129, &same); /* a longer token than the fold covers: the exact state */
      CHECK(!memcmp(&same, &m, sizeof m));
    }
    CHECK_MSG(distinct == 130, "[a-z ,.]{1,400}: %d keys", distinct);
    free(keys);
    ig_jschema_unref(s);
  }
  /* a schema string's pattern folds the same way: ^[a-z ]{1,300}$ inside a string, 1 + 1 + 128 keys for its 301
   * lengths (the pattern's states run over the decoded bytes, at most as many as a token's) */
  json_t *pj = load("{\"type\":\"string\",\"pattern\":\"^[a-z ]{1,300}$\"}");
  s = compile_ok(pj);
  if (s) {
    ig_jsm m, key, *keys = calloc(301, sizeof *keys);
    ig_jsm_init(&m, s);
    CHECK(feed(&m, s, "\"", 1) == 0);
    int distinct = 0;
    for (int i = 0; i <= 300; i++) {
      if (i) CHECK(feed(&m, s, i % 5 ? "q" : " ", 1) == 0);
      check_mask(&tv, s, &m, 3000);
      ig_jsm_cache_key(&m, s, 128, &key);
      int seen = 0;
      for (int k = 0; k < distinct && !seen; k++) seen = !memcmp(&keys[k], &key, sizeof key);
      if (!seen) keys[distinct++] = key;
    }
    CHECK_MSG(distinct == 130, "pattern ^[a-z ]{1,300}$: %d keys", distinct);
    free(keys);
    ig_jschema_unref(s);
  }
  json_decref(pj);
  ig_json_vocab_free(tv.v);
}

/* ---- hand-written cases ------------------------------------------------------------------------------------ */

/* 1 when the text is a prefix the schema allows; *complete when it is whole. */
static int try_text(const char *schema, const char *text, int *complete) {
  json_t *j = load(schema);
  ig_jschema *s = compile_ok(j);
  int ok = 0;
  if (s) {
    ig_jsm m;
    ig_jsm_init(&m, s);
    ok = feed(&m, s, text, strlen(text)) == 0;
    *complete = ok && ig_jsm_complete(&m, s);
    ig_jschema_unref(s);
  }
  json_decref(j);
  return ok;
}
#define PREFIX(sch, text)                                                                                              \
  do {                                                                                                                 \
    int c_;                                                                                                            \
    CHECK_MSG(try_text(sch, text, &c_) && !c_, "%s: %s", sch, text);                                                   \
  } while (0)
#define WHOLE(sch, text)                                                                                               \
  do {                                                                                                                 \
    int c_;                                                                                                            \
    CHECK_MSG(try_text(sch, text, &c_) && c_, "%s: %s", sch, text);                                                    \
  } while (0)
#define REFUSED(sch, text)                                                                                             \
  do {                                                                                                                 \
    int c_;                                                                                                            \
    CHECK_MSG(!try_text(sch, text, &c_), "%s: %s", sch, text);                                                         \
  } while (0)


/* Each gap shape at each kind of place, in schema frames, in free-form values (an embedded ig_json_fsm, whose
 * gaps count the schema's open containers too) and in the JSON-mode fast path, at depths from 0 (before the root
 * value) to past the indent cap: the allowed ones pass, the others are refused at their first bad byte. After
 * the newline an indent may have min(IG_JSON_MAX_INDENT, IG_JSON_INDENT_PER_LEVEL * d) bytes for the d
 * containers open at the gap, so a longer one is refused at its byte 1 + that. */
static void test_gaps(void) {
  const char *sch = "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},\"b\":{\"type\":\"array\","
                    "\"items\":{\"type\":\"string\"}},\"e\":{\"enum\":[1,12]},\"x\":{},\"o\":{\"type\":\"object\"},"
                    "\"d\":{\"type\":\"array\",\"items\":{\"type\":\"array\",\"items\":{\"type\":\"array\",\"items\":"
                    "{\"type\":\"array\",\"items\":{\"type\":\"object\",\"properties\":{\"z\":{\"type\":\"integer\"}}}}"
                    "}}}},\"required\":[\"a\"]}";
  const char *fast = "{\"type\":\"object\"}";
  static const struct {
    int fast;
    const char *ctx, *rest;
  } places[] = {
      {0, "", "{\"a\":1}"}, {0, "{", "\"a\":1}"}, {0, "{\"a\"", ":1}"}, {0, "{\"a\":", "1}"}, {0, "{\"a\":1", "}"},
      {0, "{\"a\":1,", "\"b\":[]}"}, {0, "{\"a\":1,\"b\":[", "\"s\"]}"}, {0, "{\"a\":1,\"b\":[\"s\"", "]}"},
      {0, "{\"a\":1,\"e\":1", "}"}, {0, "{\"a\":1,\"e\":12", "}"},
      /* free-form values: around them, inside them (the fsm's own gaps), after a number that the gap ends */
      {0, "{\"a\":1,\"x\":", "{}}"}, {0, "{\"a\":1,\"x\":{", "\"k\":[1]}}"}, {0, "{\"a\":1,\"x\":{\"k\"", ":[1]}}"},
      {0, "{\"a\":1,\"x\":{\"k\":", "[1]}}"}, {0, "{\"a\":1,\"x\":{\"k\":[1", "]}}"},
      {0, "{\"a\":1,\"x\":{\"k\":2", "}}"}, {0, "{\"a\":1,\"x\":[", "1,2]}"}, {0, "{\"a\":1,\"x\":3", "}"},
      {0, "{\"a\":1,\"x\":\"s\"", "}"}, {0, "{\"a\":1,\"x\":[]", "}"}, {0, "{\"a\":1,\"o\":{", "\"k\":null}}"},
      {0, "{\"a\":1,\"o\":{\"k\":null", "}}"}, {0, "{\"a\":1,\"o\":{}", "}"},
      /* deep enough (d >= 5) for the longest indent: schema frames, and free-form values under the schema's */
      {0, "{\"a\":1,\"d\":[[[", "]]]}"}, {0, "{\"a\":1,\"d\":[[[[", "]]]]}"}, {0, "{\"a\":1,\"d\":[[[[{", "}]]]]}"},
      {0, "{\"a\":1,\"d\":[[[[{\"z\"", ":1}]]]]}"}, {0, "{\"a\":1,\"d\":[[[[{\"z\":1", "}]]]]}"},
      {0, "{\"a\":1,\"x\":[[[", "1]]]}"}, {0, "{\"a\":1,\"x\":[[[[1", "]]]]}"}, {0, "{\"a\":1,\"x\":[[[[[", "]]]]]}"},
      {1, "", "{}"}, {1, "{", "\"k\":1}"}, {1, "{\"k\":", "1}"}, {1, "{\"k\":1", "}"}, {1, "{\"k\":[1,", "2]}"},
      {1, "{\"k\":[[[[", "]]]]}"}};
  static const char SP[] = "                        ";
  char doc[512];
  size_t seen[IG_JSON_MAX_INDENT + 2] = {0};
  for (size_t p = 0; p < sizeof places / sizeof *places; p++) {
    const char *sc = places[p].fast ? fast : sch;
    size_t d = open_at(places[p].ctx);
    size_t max = d * IG_JSON_INDENT_PER_LEVEL < IG_JSON_MAX_INDENT ? d * IG_JSON_INDENT_PER_LEVEL : IG_JSON_MAX_INDENT;
    seen[max]++;
    for (size_t k = 0; k < sizeof GAP_OK / sizeof *GAP_OK; k++) {
      size_t len = strlen(GAP_OK[k]);
      if (len && GAP_OK[k][0] == '\n' && len - 1 > max) { /* too deep an indent here */
        snprintf(doc, sizeof doc, "%s%.*s", places[p].ctx, (int)(1 + max), GAP_OK[k]);
        PREFIX(sc, doc);
        snprintf(doc, sizeof doc, "%s%.*s", places[p].ctx, (int)(2 + max), GAP_OK[k]);
        REFUSED(sc, doc);
        continue;
      }
      snprintf(doc, sizeof doc, "%s%s", places[p].ctx, GAP_OK[k]);
      PREFIX(sc, doc);
      snprintf(doc, sizeof doc, "%s%s%s", places[p].ctx, GAP_OK[k], places[p].rest);
      WHOLE(sc, doc);
    }
    for (size_t k = 0; k < sizeof GAP_BAD / sizeof *GAP_BAD; k++) {
      size_t good = GAP_BAD[k].g[0] == '\n' && GAP_BAD[k].good > 1 + max ? 1 + max : GAP_BAD[k].good;
      snprintf(doc, sizeof doc, "%s%.*s", places[p].ctx, (int)good, GAP_BAD[k].g);
      PREFIX(sc, doc);
      snprintf(doc, sizeof doc, "%s%.*s", places[p].ctx, (int)good + 1, GAP_BAD[k].g);
      REFUSED(sc, doc);
      snprintf(doc, sizeof doc, "%s%s%s", places[p].ctx, GAP_BAD[k].g, places[p].rest);
      REFUSED(sc, doc);
    }
    /* exactly the longest indent allowed here, and one byte more */
    snprintf(doc, sizeof doc, "%s\n%.*s%s", places[p].ctx, (int)max, SP, places[p].rest);
    WHOLE(sc, doc);
    snprintf(doc, sizeof doc, "%s\n%.*s%s", places[p].ctx, (int)max, SP, max % 2 ? "\t" : " ");
    REFUSED(sc, doc);
  }
  CHECK(seen[0] == 2 && seen[4] >= 3 && seen[8] >= 3 && seen[12] >= 1 && seen[20] >= 3); /* d = 0, 1, 2, 3, 5+ */
  /* spelled out: "\n" then 4 * d spaces, not one more, at d = 0, 1, 2 (before a closer: still inside) */
  WHOLE(sch, "\n{\"a\":1}");
  REFUSED(sch, "\n ");
  REFUSED(sch, "\n\t");
  WHOLE(sch, "{\n    \"a\":1\n    }");
  REFUSED(sch, "{\n     ");
  REFUSED(sch, "{\"a\":1\n    \t");
  WHOLE(sch, "{\"a\":1,\"b\":[\n        \"s\"\n        ]}");
  REFUSED(sch, "{\"a\":1,\"b\":[\n         ");
  WHOLE(sch, "{\"a\":1,\"x\":{\n        \"k\":1\n        }}"); /* free-form: the schema's object and its own */
  REFUSED(sch, "{\"a\":1,\"x\":{\n         ");
  REFUSED(sch, "{\"a\":1,\"x\":{\"k\":1\n         ");
  WHOLE(fast, "{\"k\":[\n        1\n        ]}");
  REFUSED(fast, "{\"k\":[\n         ");
  /* never after the root value */
  REFUSED(sch, "{\"a\":1} ");
  REFUSED(sch, "{\"a\":1}\n");
  REFUSED(fast, "{}\n");
  REFUSED("{\"type\":\"integer\"}", "1\n");
  REFUSED("{}", "[1]\n");
}

static void test_cases(void) {
  const char *arr = "{\"type\":\"array\",\"items\":{\"type\":\"integer\"},\"minItems\":2,\"maxItems\":3}";
  REFUSED(arr, "[]");
  REFUSED(arr, "[1]");
  PREFIX(arr, "[1,");
  WHOLE(arr, "[1,2]");
  WHOLE(arr, "[1,2,3]");
  REFUSED(arr, "[1,2,3,");
  REFUSED(arr, "[1.5");
  REFUSED(arr, "[01");
  WHOLE(arr, "[-0, 10 ]");
  const char *obj = "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"null\"},\"b\":{\"type\":\"null\"},\"c\":"
                    "{\"type\":\"null\"}},\"required\":[\"b\"]}";
  REFUSED(obj, "{}");
  REFUSED(obj, "{\"c\"");
  REFUSED(obj, "{\"a\":null}");
  WHOLE(obj, "{\"b\":null}");
  WHOLE(obj, "{\"a\":null,\"b\":null,\"c\":null}");
  REFUSED(obj, "{\"b\":null,\"a\"");
  REFUSED(obj, "{\"b\":null,\"b\"");
  REFUSED(obj, "{\"b\":null,\"c\":null,");
  REFUSED(obj, "{\"\\u0062\"");
  REFUSED(obj, "{\"b\" :null,\"d\"");
  const char *en = "{\"enum\":[1,12,\"a\",\"ab\"]}";
  WHOLE(en, "1");
  WHOLE(en, "12");
  REFUSED(en, "13");
  REFUSED(en, "1 ");
  PREFIX(en, "\"a");
  WHOLE(en, "\"a\"");
  WHOLE(en, "\"ab\"");
  REFUSED(en, "\"abc");
  WHOLE("{\"type\":\"array\",\"items\":{\"enum\":[1,12]}}", "[1 ,12,1]");
  REFUSED("{\"type\":\"array\",\"items\":{\"enum\":[1,12]}}", "[123");
  const char *str = "{\"type\":\"string\",\"minLength\":2,\"maxLength\":2}";
  REFUSED(str, "\"a\"");
  WHOLE(str, "\"\\uD83D\\uDE00\xC3\xA9\"");
  WHOLE(str, "\"\\uD83D\\u0041\"");
  REFUSED(str, "\"ab\\n");
  REFUSED(str, "\"a\\uD83D\\u0041");
  PREFIX(str, "\"a\\uD83D\\uDE");
  REFUSED(str, "\"a\\uD83D\\uE");
  REFUSED(str, "\"a\\uD83D\\n");
  REFUSED("{\"type\":\"integer\"}", "1.");
  REFUSED("{\"type\":\"integer\"}", "1e");
  WHOLE("{\"type\":\"integer\"}", "-120");
  WHOLE("{\"type\":\"number\"}", "-1.5e+3");
  REFUSED("{\"type\":\"number\"}", "1 ");
  WHOLE("true", "[1,{\"a\":\"b\"}]");
  WHOLE("{}", "12");
  WHOLE("{}", " \"x\"");
  REFUSED("{}", "\"x\" ");
  REFUSED("{\"type\":\"boolean\"}", "nul");
  WHOLE("{\"type\":[\"boolean\",\"null\"]}", "null");
  WHOLE("{\"anyOf\":[{\"type\":\"integer\"},{\"type\":\"number\"}]}", "1.5");
  WHOLE("{\"type\":\"object\",\"additionalProperties\":false}", "{ }");
  REFUSED("{\"type\":\"object\",\"additionalProperties\":false}", "{\"");
  WHOLE("{\"type\":\"object\",\"additionalProperties\":true}", "{\"a\":[]}");
  WHOLE("{\"type\":\"object\",\"additionalProperties\":{}}", "{\"a\":[]}");
  /* whitespace: every gap is empty, " ", or "\n" then at most IG_JSON_INDENT_PER_LEVEL spaces/tabs per open
   * container (IG_JSON_MAX_INDENT at most) */
  WHOLE(arr, "\n[1,\n    2]");
  REFUSED(arr, "\n ");
  REFUSED(arr, "[1,\n     ");
  REFUSED(arr, "[1,  2]");
  test_gaps();
  /* tagged union */
  const char *tag =
      "{\"anyOf\":[{\"type\":\"object\",\"properties\":{\"t\":{\"const\":\"a\"},\"x\":{\"type\":\"integer\"}},"
      "\"required\":[\"t\",\"x\"]},{\"type\":\"object\",\"properties\":{\"t\":{\"const\":\"ab\"},\"y\":"
      "{\"type\":\"null\"}},\"required\":[\"t\"]}]}";
  REFUSED(tag, "{}");
  REFUSED(tag, "{\"x\"");
  REFUSED(tag, "{\"t\":\"b");
  REFUSED(tag, "{\"t\":\"a\"}");
  WHOLE(tag, "{\"t\":\"a\",\"x\":1}");
  REFUSED(tag, "{\"t\":\"a\",\"y\"");
  WHOLE(tag, "{\"t\":\"ab\"}");
  WHOLE(tag, "{\"t\":\"ab\", \"y\":null}");
  /* depth: a tree stops offering children where a child no longer fits */
  const char *tree = "{\"type\":\"object\",\"properties\":{\"c\":{\"type\":\"array\",\"items\":{\"$ref\":\"#\"}}}}";
  char deep[512] = "";
  for (int i = 0; i < IG_JSM_MAX_DEPTH / 2; i++) strcat(deep, "{\"c\":[");
  PREFIX(tree, deep); /* 16 frames open: the last array fits, but has no room for an item */
  strcat(deep, "{");
  REFUSED(tree, deep);
  deep[strlen(deep) - 1] = 0;
  strcat(deep, "]}");
  PREFIX(tree, deep);
  /* depth: an optional property whose value no longer fits is not offered (and so no key at all here) */
  const char *nest = "{\"type\":\"object\",\"properties\":{\"o\":{\"$ref\":\"#\"},\"v\":{\"type\":\"null\"}}}";
  deep[0] = 0;
  for (int i = 0; i < IG_JSM_MAX_DEPTH - 1; i++) strcat(deep, "{\"o\":");
  strcat(deep, "{");
  PREFIX(nest, deep);
  strcat(deep, "\"");
  REFUSED(nest, deep);
  deep[strlen(deep) - 1] = 0;
  for (int i = 0; i < IG_JSM_MAX_DEPTH; i++) strcat(deep, "}");
  WHOLE(nest, deep);
  /* ... an array whose minItems asks for an item that would not fit, either */
  const char *arrmin = "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"array\",\"minItems\":1,\"items\":"
                       "{\"$ref\":\"#\"}}}}";
  deep[0] = 0;
  for (int i = 0; i < IG_JSM_MAX_DEPTH / 2 - 1; i++) strcat(deep, "{\"a\":[");
  strcat(deep, "{");
  PREFIX(arrmin, deep);
  strcat(deep, "\"");
  REFUSED(arrmin, deep);
  /* ... a union alternative that would not fit, while another does */
  const char *chain = "{\"type\":\"object\",\"properties\":{\"n\":{\"anyOf\":[{\"type\":\"null\"},{\"$ref\":\"#\"}]}},"
                      "\"required\":[\"n\"]}";
  deep[0] = 0;
  for (int i = 0; i < IG_JSM_MAX_DEPTH - 1; i++) strcat(deep, "{\"n\":");
  PREFIX(chain, deep);
  strcat(deep, "{");
  REFUSED(chain, deep);
  deep[strlen(deep) - 1] = 0;
  strcat(deep, "null");
  for (int i = 0; i < IG_JSM_MAX_DEPTH - 1; i++) strcat(deep, "}");
  WHOLE(chain, deep);
  /* whitespace in objects: the same gaps */
  WHOLE(obj, "{\n    \"b\"\n    :\n    null\n    }");
  REFUSED(obj, "{\n     ");
  REFUSED(obj, "{\"b\":null\n\n");
  REFUSED(obj, "{  \"b\"");
  /* a deep free-form value inside: the embedded fsm's own depth cap */
  WHOLE("{\"type\":\"object\",\"properties\":{\"a\":{}}}", "{\"a\":[[[[[[[[[[[[[[[[[[[[{}]]]]]]]]]]]]]]]]]]]]}");
}

/* ---- 5: compile errors ------------------------------------------------------------------------------------ */

static void expect_error(const char *text, const char *needle, int line) {
  json_t *j = load(text);
  ig_jschema *s = NULL;
  char err[256] = "";
  int rc = ig_jschema_compile(j, &s, err, sizeof err);
  CHECK_MSG(rc == -1 && s == NULL, "line %d: compiled: %s", line, text);
  CHECK_MSG(strstr(err, needle) != NULL, "line %d: error \"%s\" does not mention \"%s\"", line, err, needle);
  CHECK_MSG(!strchr(err, '\n'), "line %d: multi-line error", line);
  ig_jschema_unref(s);
  json_decref(j);
}
#define ERR(text, needle) expect_error(text, needle, __LINE__)

/* this thread's CPU time: a refusal's cost, not how busy the machine is (ctest runs tests side by side) */
static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void expect_error_json(json_t *j, const char *needle, int line) {
  double t0 = now_s();
  ig_jschema *s = NULL;
  char err[256] = "";
  int rc = ig_jschema_compile(j, &s, err, sizeof err);
  double dt = now_s() - t0;
  CHECK_MSG(rc == -1, "line %d: compiled", line);
  CHECK_MSG(strstr(err, needle) != NULL, "line %d: error \"%s\" does not mention \"%s\"", line, err, needle);
  CHECK_MSG(dt < 0.5, "line %d: %.3f s to refuse", line, dt);
  ig_jschema_unref(s);
  json_decref(j);
}

static void test_errors(void) {
  ERR("{\"type\":\"string\",\"contentEncoding\":\"x\"}", "'contentEncoding' is not supported");
  ERR("{\"type\":\"string\",\"format\":\"date\"}", "'format'");
  ERR("{\"type\":\"number\",\"minimum\":0}", "'minimum'");
  ERR("{\"type\":\"object\",\"properties\":{\"address\":{\"type\":\"object\",\"properties\":{\"zip\":{\"type\":"
      "\"string\",\"pattern\":\"(x\"}}}}}",
      "properties.address.properties.zip: 'pattern': ");
  ERR("{\"allOf\":[{}]}", "'allOf'");
  ERR("{\"not\":{}}", "'not'");
  ERR("{\"if\":{}}", "'if'");
  ERR("{\"type\":\"foo\"}", "'type'");
  ERR("{\"type\":[]}", "'type'");
  ERR("{\"type\":\"array\",\"items\":[{}]}", "'items'");
  ERR("{\"type\":\"array\",\"prefixItems\":[{}]}", "'prefixItems'");
  ERR("{\"type\":\"array\",\"uniqueItems\":true}", "'uniqueItems'");
  ERR("{\"type\":\"object\",\"additionalProperties\":{\"type\":\"string\"}}", "'additionalProperties'");
  ERR("{\"type\":\"object\",\"properties\":{\"a\":{}},\"additionalProperties\":true}", "'additionalProperties'");
  ERR("{\"type\":\"object\",\"patternProperties\":{}}", "'patternProperties'");
  ERR("{\"type\":\"object\",\"properties\":{\"a\":{}},\"required\":[\"b\"]}", "required");
  ERR("{\"type\":\"object\",\"required\":[\"b\"]}", "'required'");
  ERR("{\"$ref\":\"#/$defs/x\"}", "'$ref'");
  ERR("{\"$ref\":\"http://example.com/s.json\"}", "'$ref'");
  ERR("{\"$ref\":\"#/$defs/a\",\"type\":\"string\"}", "'type' beside '$ref'");
  ERR("{\"$defs\":{\"a\":{\"$ref\":\"#/$defs/b\"},\"b\":{\"$ref\":\"#/$defs/a\"}},\"$ref\":\"#/$defs/a\"}",
      "'$ref' cycle");
  ERR("{\"$ref\":\"#\"}", "'$ref' cycle");
  ERR("{\"type\":\"object\",\"properties\":{\"self\":{\"$ref\":\"#\"}},\"required\":[\"self\"]}", "nested");
  ERR("{\"anyOf\":[{\"$ref\":\"#\"},{\"type\":\"null\"}]}", "'anyOf'");
  ERR("{\"anyOf\":[{\"type\":\"string\"},{\"type\":\"string\",\"maxLength\":2}]}", "'anyOf'");
  ERR("{\"anyOf\":[{}, {\"type\":\"null\"}]}", "'anyOf'");
  ERR("{\"oneOf\":[{\"type\":\"object\",\"properties\":{\"a\":{}}},{\"type\":\"object\",\"properties\":{\"b\":{}}}]}",
      "tagged union");
  ERR("{\"oneOf\":[{\"properties\":{\"t\":{\"const\":\"x\"}},\"required\":[\"t\"]},{\"properties\":{\"t\":{\"const\":"
      "\"x\"}},\"required\":[\"t\"]}]}",
      "same tag");
  ERR("{\"oneOf\":[{\"properties\":{\"t\":{\"const\":\"x\"}},\"required\":[\"t\"]},{\"properties\":{\"u\":{\"const\":"
      "\"y\"}},\"required\":[\"u\"]}]}",
      "differ in name");
  ERR("{\"anyOf\":[]}", "'anyOf'");
  ERR("{\"oneOf\":[{\"type\":\"integer\"},{\"type\":\"number\"}]}", "'oneOf'");
  ERR("{\"type\":\"string\",\"minLength\":5,\"maxLength\":2}", "'minLength'");
  ERR("{\"type\":\"array\",\"minItems\":-1}", "'minItems'");
  ERR("{\"type\":\"array\",\"maxItems\":1.5}", "'maxItems'");
  ERR("{\"enum\":[]}", "'enum'");
  ERR("{\"enum\":3}", "'enum'");
  ERR("{\"type\":\"string\",\"enum\":[1,2]}", "'enum'");
  ERR("{\"enum\":[1],\"minLength\":1}", "'minLength' beside");
  ERR("false", "false");
  ERR("42", "schema must be");
  ERR("{\"properties\":{\"a\\\"b\":{}}}", "escapes");
  ERR("{\"properties\":{\"a\":1}}", "properties.a: a schema must be");
  ERR("{\"properties\":{\"a\":{\"type\":\"string\"}},\"items\":{}}", "several types");
  /* bounded work */
  json_t *big = json_array();
  for (int i = 0; i < 20000; i++) json_array_append_new(big, json_integer(i));
  expect_error_json(json_pack("{s:o}", "enum", big), "'enum'", __LINE__);
  big = json_array();
  char longs[1001];
  memset(longs, 'x', 1000), longs[1000] = 0;
  for (int i = 0; i < 100; i++) {
    longs[0] = (char)('a' + i % 26), longs[1] = (char)('a' + i / 26);
    json_array_append_new(big, json_string(longs));
  }
  expect_error_json(json_pack("{s:o}", "enum", big), "bytes", __LINE__);
  /* a big enum that compiles: 12000 values, in reverse order, 48 KB */
  big = json_array();
  for (int i = 11999; i >= 0; i--) json_array_append_new(big, json_integer(i));
  json_t *bj = json_pack("{s:o}", "enum", big);
  double t0 = now_s();
  ig_jschema *bs = compile_ok(bj);
  CHECK_MSG(now_s() - t0 < 0.5, "a big enum takes %.3f s", now_s() - t0);
  if (bs) {
    ig_jsm bm;
    ig_jsm_init(&bm, bs);
    CHECK(feed(&bm, bs, "1199", 4) == 0 && ig_jsm_complete(&bm, bs));
    CHECK(feed(&bm, bs, "99", 2) == -1);
    ig_jsm_init(&bm, bs);
    CHECK(feed(&bm, bs, "11999", 5) == 0 && ig_jsm_complete(&bm, bs));
    ig_jschema_unref(bs);
  }
  json_decref(bj);
  json_t *deep = json_object();
  for (int i = 0; i < 200; i++) deep = json_pack("{s:s,s:o}", "type", "array", "items", deep);
  expect_error_json(deep, "nested deeper", __LINE__);
  json_t *props = json_object();
  char name[16];
  for (int i = 0; i < 300; i++) snprintf(name, sizeof name, "p%d", i), json_object_set_new(props, name, json_object());
  expect_error_json(json_pack("{s:o}", "properties", props), "properties", __LINE__);
  props = json_object();
  for (int i = 0; i < 200; i++) {
    json_t *inner = json_object();
    for (int k = 0; k < 30; k++) snprintf(name, sizeof name, "q%d", k), json_object_set_new(inner, name, json_object());
    snprintf(name, sizeof name, "p%d", i);
    json_object_set_new(props, name, json_pack("{s:o}", "properties", inner));
  }
  expect_error_json(json_pack("{s:o}", "properties", props), "nodes", __LINE__);
  /* a chain of $refs through many definitions, each a union with itself */
  json_t *defs = json_object();
  for (int i = 0; i < 3000; i++) {
    char ref[32];
    snprintf(name, sizeof name, "d%d", i), snprintf(ref, sizeof ref, "#/$defs/d%d", (i + 1) % 3000);
    json_object_set_new(defs, name, json_pack("{s:s}", "$ref", ref));
  }
  expect_error_json(json_pack("{s:o,s:s}", "$defs", defs, "$ref", "#/$defs/d0"), "'$ref' cycle", __LINE__);
  /* required chains: 16 frames fit, 17 do not */
  for (int levels = 15; levels <= 16; levels++) {
    json_t *sch = json_pack("{s:s}", "type", "null");
    for (int i = 0; i < levels; i++)
      sch = json_pack("{s:s,s:{s:o},s:[s]}", "type", "object", "properties", "x", sch, "required", "x");
    ig_jschema *s = NULL;
    char err[256];
    int rc = ig_jschema_compile(sch, &s, err, sizeof err);
    CHECK_MSG(rc == (levels + 1 > IG_JSM_MAX_DEPTH ? -1 : 0), "%d levels: rc %d (%s)", levels, rc, err);
    ig_jschema_unref(s);
    json_decref(sch);
  }
}

/* ---- 6: same, references ---------------------------------------------------------------------------------- */

static void test_same(void) {
  json_t *a = load("{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},\"b\":{\"type\":\"string\"}}}");
  json_t *a2 = load("{\"properties\":{\"a\":{\"type\":\"integer\"},\"b\":{\"type\":\"string\"}},\"type\":\"object\"}");
  json_t *b = load("{\"type\":\"object\",\"properties\":{\"b\":{\"type\":\"string\"},\"a\":{\"type\":\"integer\"}}}");
  json_t *o = load("{\"type\":\"object\"}");
  ig_jschema *sa = compile_ok(a), *sa2 = compile_ok(a2), *sb = compile_ok(b), *so = compile_ok(o), *any = NULL;
  CHECK(ig_jschema_any_object(&any) == 0);
  if (!sa || !sa2 || !sb || !so || !any) return;
  CHECK(ig_jschema_same(sa, sa));
  CHECK(ig_jschema_same(sa, sa2)); /* keyword order does not matter */
  CHECK(!ig_jschema_same(sa, sb)); /* property order does: it is the output's */
  CHECK(ig_jschema_same(so, any));
  CHECK(!ig_jschema_same(sa, so));
  /* JSON mode through the schema API: the same as ig_json_fsm */
  ig_jsm m;
  ig_jsm_init(&m, any);
  CHECK(feed(&m, any, "{\"x\":[1]}", 9) == 0 && ig_jsm_complete(&m, any));
  ig_jsm_init(&m, any);
  CHECK(feed(&m, any, "[", 1) == -1);
  /* references: the schema lives while one is held */
  ig_jschema *r = ig_jschema_ref(sa);
  CHECK(r == sa);
  ig_jschema_unref(sa);
  ig_jsm_init(&m, r);
  CHECK(feed(&m, r, "{\"a\":1}", 7) == 0 && ig_jsm_complete(&m, r));
  ig_jschema_unref(r);
  ig_jschema_unref(NULL);
  ig_jschema_unref(sa2), ig_jschema_unref(sb), ig_jschema_unref(so), ig_jschema_unref(any);
  json_decref(a), json_decref(a2), json_decref(b), json_decref(o);
  /* the bytes of popped frames are zero: two paths to one place give memcmp-equal states */
  json_t *fa = load("{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"array\"},\"b\":{\"type\":\"null\"}}}");
  ig_jschema *sf = compile_ok(fa);
  if (sf) {
    ig_jsm x, y;
    ig_jsm_init(&x, sf), ig_jsm_init(&y, sf);
    CHECK(feed(&x, sf, "{\"a\":[1,{\"x\":\"yy\"},[[2]],\"s\"],", 30) == 0);
    CHECK(feed(&y, sf, "{\"a\":[],", 8) == 0);
    CHECK(!memcmp(&x, &y, sizeof x));
    ig_jschema_unref(sf);
  }
  json_decref(fa);
  /* a refused byte: refused from then on, never complete */
  json_t *n = load("{\"type\":\"number\"}");
  ig_jschema *sn = compile_ok(n);
  ig_jsm_init(&m, sn);
  CHECK(feed(&m, sn, "1x", 2) == -1 && !ig_jsm_complete(&m, sn) && feed(&m, sn, "1", 1) == -1);
  ig_jschema_unref(sn);
  json_decref(n);
}

/* ---- "pattern" ------------------------------------------------------------------------------------------- */

/* Strings with a "pattern": hand cases (anchors, search, escapes), then random walks over the allowed bytes that
 * never dead-end and end in documents whose string POSIX regexec (a search, as JSON Schema's pattern is) finds the
 * pattern in, with the token mask checked against brute force along the way. */
static const char *const PATTERNS[] = {
    /* schema patterns in the syntax POSIX EREs share with ECMAScript and Python */
    "^[a-z]{2,4}-[0-9]+$", "ab+c", "^(yes|no)$", "x[0-9]$", "^\\.", "^[^a]*$", "(ab|cd)(ef)?", "^a.c", "é+$",
};
/* A pattern walk's bytes: the closing quote once long enough and allowed, now and then pattern-ish characters */
static int prefer_pattern(const uint8_t *ok, int step, uint64_t *r) {
  if (step > 30 && ok['"']) return '"'; /* long enough: close when the pattern allows */
  if (step > 20 && rnd(r, 3) == 0)
    for (const char *p = "abcdefxyz0123456789-.\xC3\xA9"; *p; p++)
      if (ok[(unsigned char)*p]) return (unsigned char)*p;
  return -1;
}
typedef struct pat_walk {
  const tvocab *tv;
  const ig_jschema *s;
  size_t pi;
  long *masks;
} pat_walk;
/* every 7th step of a pattern walk, up to 4,000 in all: the token mask against brute force */
static void pattern_masks(const ig_jsm *m, int step, void *ctx) {
  pat_walk *w = ctx;
  if (step % 7 == 0 && *w->masks < 4000) check_mask(w->tv, w->s, m, 1000 + w->pi), (*w->masks)++;
}

static void test_patterns(void) {
  const char *sch = "{\"type\":\"string\",\"pattern\":\"^[a-z]{2}-[0-9]+$\"}";
  WHOLE(sch, "\"ab-1\"");
  WHOLE(sch, "\"ab-123\"");
  PREFIX(sch, "\"ab-");
  REFUSED(sch, "\"ab-\"");  /* the quote only where the pattern matches */
  REFUSED(sch, "\"A");
  REFUSED(sch, "\"abc");
  REFUSED(sch, "\"a\\u0062");  /* \u escapes are never generated */
  const char *search = "{\"type\":\"string\",\"pattern\":\"ab\"}";
  WHOLE(search, "\"xxabyy\"");
  WHOLE(search, "\"ab\"");
  PREFIX(search, "\"xyz");
  REFUSED(search, "\"xyz\"");
  const char *esc = "{\"type\":\"string\",\"pattern\":\"^a\\\\nb\\\"$\"}"; /* a, newline, b, quote */
  WHOLE(esc, "\"a\\nb\\\"\"");
  REFUSED(esc, "\"a\\t");
  REFUSED(esc, "\"a\\\\");
  const char *obj = "{\"type\":\"object\",\"properties\":{\"d\":{\"type\":\"string\",\"pattern\":\"^[0-9]{4}-[0-9]{2}$\"},"
                    "\"n\":{\"type\":\"integer\"}},\"required\":[\"d\",\"n\"]}";
  WHOLE(obj, "{\"d\": \"2026-11\", \"n\": 3}");
  REFUSED(obj, "{\"d\": \"2026-1\",");
  const char *any = "{\"type\":\"array\",\"items\":{\"type\":\"string\",\"pattern\":\"^(a|bb)+$\"},\"maxItems\":2}";
  WHOLE(any, "[\"abba\", \"a\"]");
  REFUSED(any, "[\"ab\"");
  ERR("{\"type\":\"string\",\"pattern\":\"^a$\",\"maxLength\":3}", "minLength");
  ERR("{\"type\":\"string\",\"pattern\":\"(a\"}", "pattern");
  ERR("{\"type\":\"string\",\"pattern\":\"a)(b\"}", "unbalanced");
  ERR("{\"type\":\"string\",\"pattern\":\"^a|b$\"}", "group the alternatives");
  ERR("{\"type\":\"string\",\"pattern\":\"^\\\\x01$\"}", "\\u escapes");
  ERR("{\"type\":\"string\",\"pattern\":\"(a)\\\\1\"}", "backreference");
  ERR("{\"type\":\"string\",\"pattern\":5}", "must be a string");
  ERR("{\"type\":\"string\",\"pattern\":\"(a|b)*a(a|b){14}\"}", "automaton states"); /* 2^15 states: refused fast */
  {
    buf many = {0};
    puts_(&many, "{\"type\":\"object\",\"properties\":{");
    for (int k = 0; k < 33; k++) {
      char one[64];
      snprintf(one, sizeof one, "%s\"p%d\":{\"type\":\"string\",\"pattern\":\"^x{%d}$\"}", k ? "," : "", k, k + 1);
      puts_(&many, one);
    }
    puts_(&many, "}}");
    put(&many, "", 1);
    ERR(many.p, "more than 32 patterns");
    free(many.p);
  }

  setlocale(LC_CTYPE, "C.UTF-8"); /* the oracle reads UTF-8: its '.' and [^a] take whole code points */
  tvocab tv;
  tvocab_build(&tv);
  uint64_t r = 99;
  buf b = {0};
  long walks = 0, masks = 0;
  for (size_t pi = 0; pi < sizeof PATTERNS / sizeof *PATTERNS; pi++) {
    json_t *j = json_pack("{s:s,s:s}", "type", "string", "pattern", PATTERNS[pi]);
    ig_jschema *s = compile_ok(j);
    regex_t oracle;
    CHECK(regcomp(&oracle, PATTERNS[pi], REG_EXTENDED | REG_NOSUB) == 0);
    for (int it = 0; s && it < 120; it++) {
      ig_jsm m;
      ig_jsm_init(&m, s);
      b.n = 0;
      pat_walk w = {&tv, s, pi, &masks};
      int stuck = random_walk(&m, s, &r, &b, 200, prefer_pattern, pattern_masks, &w);
      CHECK_MSG(!stuck, "pattern %s: dead end after %.*s", PATTERNS[pi], (int)b.n, b.p);
      if (!ig_jsm_complete(&m, s)) continue; /* cut by the step limit: a prefix, checked byte by byte above */
      json_t *v = json_loadb(b.p, b.n, JSON_DECODE_ANY, NULL);
      CHECK_MSG(json_is_string(v), "pattern %s: not a string: %.*s", PATTERNS[pi], (int)b.n, b.p);
      if (json_is_string(v)) {
        CHECK_MSG(strlen(json_string_value(v)) == json_string_length(v) &&
                      regexec(&oracle, json_string_value(v), 0, NULL, 0) == 0,
                  "pattern %s: %.*s does not contain a match", PATTERNS[pi], (int)b.n, b.p);
        walks++;
      }
      json_decref(v);
    }
    regfree(&oracle);
    ig_jschema_unref(s);
    json_decref(j);
  }
  setlocale(LC_CTYPE, "C");
  fprintf(stderr, "patterns: %ld walks ended in a matching string, %ld masks checked\n", walks, masks);
  CHECK(walks > 400 && masks > 1000);
  ig_json_vocab_free(tv.v);
  free(b.p);
}

int main(void) {
  test_cache_key();
  test_cases();
  test_generated();
  test_mutations();
  test_no_dead_ends();
  test_mask();
  test_errors();
  test_same();
  test_patterns();
  TEST_DONE();
}
