/* fuzz/fuzz_engine_jsonschema: JSON Schema compilation and the schema's recognizer and mask on arbitrary bytes.
 * The input is a schema and a document: a first byte below 0x10 picks one of a few built-in schemas and the rest is
 * the document; otherwise the schema's text runs up to the first NUL byte and the document follows it. Any of these
 * breaking is a bug:
 *  - compiling crashes, leaks or runs long (errors are fine);
 *  - a prefix of the document the recognizer calls complete is refused by the independent validator
 *    (tests/engine/jsonschema_common.h), where the two can agree (jsv_ground);
 *  - fed whole or byte by byte, the verdict or the state (memcmp) differs;
 *  - the mask at the longest valid prefix differs from trying every token of a small vocabulary one by one, or
 *    from the mask of its cache key (ig_jsm_cache_key).
 *   CC=clang cmake -B build-fuzz -DIGNIS_FUZZ=ON -DIGNIS_CUDA=OFF && cmake --build build-fuzz --target
 * fuzz_engine_jsonschema mkdir -p /tmp/js && build-fuzz/fuzz/fuzz_engine_jsonschema -max_total_time=120 /tmp/js
 * fuzz/corpus/engine_jsonschema */
#include "engine/jsonmask.h"
#include "engine/jsonschema.h"
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../tests/engine/jsonschema_common.h"

static const char *const BUILTIN[] = {
    ("{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"maxLength\":4},\"age\":{\"type\":"
     "\"integer\"},"
     "\"tags\":{\"type\":\"array\",\"items\":{\"enum\":[1,12,\"a\",\"ab\",null]},\"minItems\":1,\"maxItems\":2}},"
     "\"required\":[\"age\"]}"),
    ("{\"oneOf\":[{\"type\":\"object\",\"properties\":{\"name\":{\"const\":\"f\"},\"arguments\":{\"type\":\"object\","
     "\"properties\":{\"x\":{\"type\":\"number\"}},\"required\":[\"x\"]}},\"required\":[\"name\",\"arguments\"]},"
     "{\"type\":\"object\",\"properties\":{\"name\":{\"const\":\"fg\"},\"arguments\":{}},\"required\":[\"name\"]}]}"),
    ("{\"$defs\":{\"n\":{\"type\":\"object\",\"properties\":{\"v\":{\"type\":[\"integer\",\"null\"]},\"c\":{\"type\":"
     "\"array\",\"items\":{\"$ref\":\"#/$defs/n\"}}},\"required\":[\"v\"]}},\"$ref\":\"#/$defs/n\"}"),
    "{\"type\":\"string\",\"minLength\":1,\"maxLength\":3}",
    "{\"enum\":[1,12,123,-1,1.5,\"x\",[1],{\"a\":null}]}",
    "{\"type\":\"number\"}",
    "true",
    "{\"type\":\"object\"}",
};
#define N_BUILTIN (sizeof BUILTIN / sizeof *BUILTIN)

static const char *const PIECES[] = {
    "{",      "}",        "\":",       "\":\"",    "{\"",      "\"}",       "]}",   ",\"", "  ",
    ": ",     ", ",       "12",        "-1",       "1.",       "e+",        "true", "nul", "null",
    "hello",  "\\u",      "\\uD83D",   "\xC3\xA9", "\xE2\x82", "\"name\":", "\"f",  "g\"", "\"arguments\":{",
    "\"x\":", "\"v\":",   "\"c\":[",   "1}",       "1,",       "1]",        "[]",   "{}",  "\"a",
    "b\"",    "\"age\":", "\"tags\":[",
    /* whitespace gaps: the allowed shapes (" ", "\n" + indent up to IG_JSON_INDENT_PER_LEVEL per open container,
     * IG_JSON_MAX_INDENT at most) and refused ones */
    "\n", "\n  ", "\n\t\t", ",\n    ", "{\n  ", "\n}", "\n    ", "\n     ", "\n        ", "\n         ",
    "\n                    ", "\n                     ",
    "\n\n", " \n", "\r\n"};

typedef struct fz_vocab {
  int n;
  const unsigned char *bytes[320];
  size_t len[320];
  int32_t eos;
  ig_json_vocab *v;
} fz_vocab;

static fz_vocab *vocab_get(void) {
  static fz_vocab fv;
  static unsigned char singles[256];
  if (fv.v) return &fv;
  for (int c = 0; c < 256; c++) singles[c] = (unsigned char)c, fv.bytes[fv.n] = singles + c, fv.len[fv.n++] = 1;
  for (size_t i = 0; i < sizeof PIECES / sizeof *PIECES; i++)
    fv.bytes[fv.n] = (const unsigned char *)PIECES[i], fv.len[fv.n++] = strlen(PIECES[i]);
  fv.eos = fv.n, fv.bytes[fv.n] = (const unsigned char *)"", fv.len[fv.n++] = 0;
  if (ig_json_vocab_build(&fv.v, fv.n, fv.bytes, fv.len, NULL)) abort();
  return &fv;
}

static void check_mask(const ig_jschema *s, const ig_jsm *m) {
  fz_vocab *fv = vocab_get();
  uint8_t mask[320];
  int n = ig_jschema_allowed(fv->v, s, m, &fv->eos, 1, mask), count = 0;
  for (int t = 0; t < fv->n; t++) {
    int want;
    if (t == fv->eos) want = ig_jsm_complete(m, s);
    else {
      ig_jsm c = *m;
      want = ig_jsm_feed(&c, s, fv->bytes[t], fv->len[t]) == 0;
    }
    if (mask[t] != want) abort();
    count += want;
  }
  if (n != count) abort();
  /* the mask cache's key (counts no token of the vocabulary's length can tell apart folded) gives the same mask */
  ig_jsm key;
  uint8_t kmask[320];
  ig_jsm_cache_key(m, s, (int)ig_json_vocab_max_len(fv->v), &key);
  if (ig_jschema_allowed(fv->v, s, &key, &fv->eos, 1, kmask) != n || memcmp(kmask, mask, (size_t)fv->n)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0) return 0;
  const char *schema_text;
  size_t schema_len;
  const uint8_t *doc;
  size_t doc_len;
  if (data[0] < 0x10) {
    schema_text = BUILTIN[data[0] % N_BUILTIN], schema_len = strlen(schema_text);
    doc = data + 1, doc_len = size - 1;
  } else {
    const uint8_t *nul = memchr(data, 0, size);
    schema_text = (const char *)data, schema_len = nul ? (size_t)(nul - data) : size;
    doc = nul ? nul + 1 : data + size, doc_len = nul ? size - schema_len - 1 : 0;
  }
  json_error_t je;
  json_t *schema = json_loadb(schema_text, schema_len, JSON_DECODE_ANY, &je);
  if (!schema) return 0;
  ig_jschema *s = NULL;
  char err[256];
  if (ig_jschema_compile(schema, &s, err, sizeof err)) {
    if (s || !err[0] || strchr(err, '\n')) abort();
    json_decref(schema);
    return 0;
  }
  ig_jsm m, whole;
  ig_jsm_init(&m, s);
  size_t ok = 0;
  for (; ok < doc_len; ok++) {
    ig_jsm t = m;
    if (ig_jsm_feed(&t, s, doc + ok, 1)) break;
    m = t;
    if (ig_jsm_complete(&m, s) && jsv_ground((const char *)doc, ok + 1) &&
        !jsv_accepts_text(schema, (const char *)doc, ok + 1, 0))
      abort();
  }
  ig_jsm_init(&whole, s);
  int rc = ig_jsm_feed(&whole, s, doc, ok);
  if (rc || memcmp(&whole, &m, sizeof m)) abort();
  if (ok < doc_len) {
    ig_jsm_init(&whole, s);
    if (ig_jsm_feed(&whole, s, doc, doc_len) != -1 || ig_jsm_complete(&whole, s)) abort();
  }
  check_mask(s, &m);
  ig_jschema_unref(s);
  json_decref(schema);
  return 0;
}
