/* tests/engine/test_jsonmask: JSON mode. The recognizer on hand-written valid and invalid documents (whole,
 * byte by byte and split at every point, with the exact byte an invalid one fails at), strict UTF-8 against an
 * independent encoder-based reference, random documents and one-byte mutations of them against jansson, the
 * token mask against trying every token by brute force, and the mask's cost on 128k-token vocabularies. */
#include "util/str.h"
#include "json_common.h"
#include "engine/jsonmask.h"
#include "test.h"
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

/* ---- helpers --------------------------------------------------------------------------------------------- */

static uint64_t rng_next(uint64_t *s) {
  *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
  return *s;
}
static unsigned rng_below(uint64_t *s, unsigned n) { return (unsigned)(rng_next(s) % n); }

static int feed(ig_json_fsm *f, const void *s, size_t n) { return ig_json_fsm_feed(f, s, n); }

/* The state after a prefix (which must be valid). */
static ig_json_fsm state_after(const char *s, size_t n) {
  ig_json_fsm f;
  ig_json_fsm_init(&f);
  CHECK_MSG(feed(&f, s, n) == 0, "prefix \"%.*s\" rejected", (int)n, s);
  return f;
}

/* 1 when the whole of s is one complete document. */
static int accepts(const char *s, size_t n) {
  ig_json_fsm f;
  ig_json_fsm_init(&f);
  return feed(&f, s, n) == 0 && ig_json_fsm_complete(&f);
}

/* A valid document: complete when fed whole, byte by byte (every proper prefix valid and not complete) and
 * in two pieces cut at every point. */
static void check_valid(const char *s, size_t n, int line) {
  CHECK_MSG(accepts(s, n), "line %d: \"%.*s\" not accepted whole", line, (int)n, s);
  ig_json_fsm f;
  ig_json_fsm_init(&f);
  for (size_t i = 0; i < n; i++) {
    int rc = feed(&f, s + i, 1);
    CHECK_MSG(rc == 0, "line %d: byte %zu of \"%.*s\" rejected", line, i, (int)n, s);
    if (rc) return;
    CHECK_MSG(ig_json_fsm_complete(&f) == (i == n - 1), "line %d: complete after byte %zu of %zu", line, i, n);
  }
  for (size_t k = 0; k <= n; k++) {
    ig_json_fsm g;
    ig_json_fsm_init(&g);
    int rc = feed(&g, s, k);
    int done = ig_json_fsm_complete(&g);
    rc |= feed(&g, s + k, n - k);
    CHECK_MSG(rc == 0 && ig_json_fsm_complete(&g) && done == (k == n), "line %d: cut at %zu", line, k);
  }
}
#define VALID(lit) check_valid(lit, sizeof(lit) - 1, __LINE__)

/* An invalid document whose first bad byte is the first byte of `bad`: `ok` is a valid prefix, and fed whole,
 * byte by byte or from `ok`'s state, the document fails exactly there. */
static void check_reject(const char *ok, const char *bad, int line) {
  size_t nok = strlen(ok), nbad = strlen(bad);
  char doc[512];
  memcpy(doc, ok, nok);
  memcpy(doc + nok, bad, nbad);
  ig_json_fsm f;
  ig_json_fsm_init(&f);
  CHECK_MSG(feed(&f, doc, nok + nbad) == -1, "line %d: \"%s%s\" accepted", line, ok, bad);
  CHECK(!ig_json_fsm_complete(&f));
  ig_json_fsm_init(&f);
  size_t first_bad = nok + nbad;
  for (size_t i = 0; i < nok + nbad; i++)
    if (feed(&f, doc + i, 1)) {
      first_bad = i;
      break;
    }
  CHECK_MSG(first_bad == nok, "line %d: \"%s%s\" fails at byte %zu, expected %zu", line, ok, bad, first_bad, nok);
  ig_json_fsm g = state_after(ok, nok);
  CHECK_MSG(feed(&g, bad, 1) == -1, "line %d", line);
  /* after a failure the state stays dead */
  CHECK(feed(&g, "}", 1) == -1 && !ig_json_fsm_complete(&g));
}
#define REJECT(ok, bad) check_reject(ok, bad, __LINE__)

/* ---- hand-written documents ------------------------------------------------------------------------------ */

static void test_valid_docs(void) {
  VALID("{}");
  VALID(" {}");
  VALID("{\"a\":1}");
  VALID("{\"a\": [1, -2.5e+3, true, false, null, {\"b\": \"x\\u00e9\\n\"}]}");
  VALID("{\"\":\"\"}");
  VALID("{\"a\":0,\"b\":-0,\"c\":0.5,\"d\":1E5,\"e\":1e-05,\"f\":-0.0e+0,\"g\":1234567890,\"h\":10.25E-1}");
  VALID("{\"s\":\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uABCD \\uabcd \\u0000 \\uD800 \\uDe00\"}");
  VALID("\n{\n\t\"a\" :\n[ ]\n}");
  VALID("{\n  \"a\": [\n    1,\n    {\n      \"b\": {\n\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t"
        "\"c\": 2\n      }\n    }\n  ]\n}"); /* 16 tabs: the most at depth 4 */
  VALID("\n{\n    \"a\"\n    :\n    [\n        1\n        ,\n        2\n        ]\n    }"); /* the most per depth */
  REJECT("\n{\n    \"a\"\n    :\n    [\n        1\n        ", " "); /* one more at depth 2 */
  VALID("{\"a\":[[],{},[{}]],\"b\":{\"c\":{}},\"d\":[{\"e\":[[1]]}]}");
  VALID("{\"a\":[true,false,null],\"b\":true,\"c\":false,\"d\":null}");
  VALID("{\"a\":1 ,\"b\":[1 ,2\n],\"c\":0}");
  VALID("{\"a\":[0],\"b\":[1.5],\"c\":[1e2],\"d\":{\"x\":0}}");
  VALID("{\"a\":\"\x7f ~ !#$%&'()*+,-./:;<=>?@[]^_`{|}\"}");
  VALID("{\"{\":\"}\",\"[\":\"]\",\":\":\",\"}");
  VALID("{\"a\":{\"a\":{\"a\":{\"a\":[[[[{\"a\":[]}]]]]}}}}");
  /* UTF-8 at the edges of each length's range, in values and keys (byte-by-byte feeding splits each
   * character at every byte). */
  VALID("{\"\xC2\x80\xDF\xBF\":\"\xC2\x80\xC3\xA9\xDF\xBF\"}");
  VALID("{\"\xE0\xA0\x80\":\"\xE0\xA0\x80\xE2\x82\xAC\xED\x9F\xBF\xEE\x80\x80\xEF\xBF\xBF\"}");
  VALID("{\"\xF0\x90\x80\x80\":\"\xF0\x90\x80\x80\xF0\x9D\x84\x9E\xF3\xBF\xBF\xBF\xF4\x8F\xBF\xBF\"}");
  VALID("{\"k\\u00e9\xC3\xA9\":[\"\xE2\x82\xAC\\n\xF0\x9F\x98\x80\"]}");
}


/* Each gap shape at each kind of place, at depths from 0 (before the top-level '{') to past the indent cap: the
 * allowed ones pass, the others fail at their first bad byte. An indent is allowed up to indent_max(d) for the
 * d containers open at the gap, so a shape with a longer one fails at its byte 1 + indent_max(d). */
static void test_gaps(void) {
  static const char *const places[][2] = {
      {"", "{}"},           {"{", "}"},          {"{\"a\"", ":1}"},      {"{\"a\":", "1}"},
      {"{\"a\":1", "}"},    {"{\"a\":-0.5e3", ",\"b\":0}"}, {"{\"a\":[", "]}"}, {"{\"a\":[1,", "2]}"},
      {"{\"a\":true", "}"}, {"{\"a\":{}", ",\"b\":0}"}, {"{\"a\":\"x\"", "}"}, {"{\"a\":1,", "\"b\":[]}"},
      {"{\"a\":{\"b\":0", "}}"}, {"{\"a\":[[", "]]}"}, {"{\"a\":[{\"[\":[1", "]}]}"},
      /* deep enough (d >= 5) for the longest indent */
      {"{\"a\":[[[[", "]]]]}"}, {"{\"a\":[[[{\"b\"", ":1}]]]}"}, {"{\"a\":[[[{\"b\":1", "}]]]}"},
      {"{\"a\":[[[[[[1", "]]]]]]}"}, {"{\"a\":[[[[[[", "1]]]]]]}"},
  };
  static const char SP[] = "                        ";
  char doc[256], pre[256];
  size_t seen[IG_JSON_MAX_INDENT + 2] = {0};
  for (size_t p = 0; p < sizeof places / sizeof *places; p++) {
    size_t max = indent_max(open_at(places[p][0]));
    seen[max]++;
    for (size_t k = 0; k < sizeof GAP_OK / sizeof *GAP_OK; k++) {
      size_t len = strlen(GAP_OK[k]);
      if (len && GAP_OK[k][0] == '\n' && len - 1 > max) { /* too deep an indent here */
        snprintf(pre, sizeof pre, "%s%.*s", places[p][0], (int)(1 + max), GAP_OK[k]);
        snprintf(doc, sizeof doc, "%s%s", GAP_OK[k] + 1 + max, places[p][1]);
        check_reject(pre, doc, __LINE__);
        continue;
      }
      snprintf(doc, sizeof doc, "%s%s%s", places[p][0], GAP_OK[k], places[p][1]);
      check_valid(doc, strlen(doc), __LINE__);
    }
    for (size_t k = 0; k < sizeof GAP_BAD / sizeof *GAP_BAD; k++) {
      size_t good = GAP_BAD[k].g[0] == '\n' && GAP_BAD[k].good > 1 + max ? 1 + max : GAP_BAD[k].good;
      snprintf(pre, sizeof pre, "%s%.*s", places[p][0], (int)good, GAP_BAD[k].g);
      snprintf(doc, sizeof doc, "%s%s", GAP_BAD[k].g + good, places[p][1]);
      check_reject(pre, doc, __LINE__);
    }
    /* exactly the longest indent allowed here, and one byte more */
    snprintf(doc, sizeof doc, "%s\n%.*s%s", places[p][0], (int)max, SP, places[p][1]);
    check_valid(doc, strlen(doc), __LINE__);
    snprintf(pre, sizeof pre, "%s\n%.*s", places[p][0], (int)max, SP);
    snprintf(doc, sizeof doc, "%s", max % 2 ? "\t" : " ");
    check_reject(pre, doc, __LINE__);
  }
  CHECK(seen[0] == 1 && seen[4] >= 3 && seen[8] >= 3 && seen[12] >= 1 && seen[20] >= 3); /* d = 0, 1, 2, 3, 5+ */
  /* spelled out: "\n" then 4 * d spaces, not one more, at d = 0, 1, 2 (before a closer: still inside) */
  VALID("\n{}");
  REJECT("\n", " ");
  REJECT("\n", "\t");
  VALID("{\n    \"a\":1\n    }");
  REJECT("{\n    ", " ");
  REJECT("{\"a\":1\n    ", "\t");
  VALID("{\"a\":[\n        1\n        ]}");
  REJECT("{\"a\":[\n        ", " ");
  REJECT("{\"a\":{\"b\":0\n        ", " ");
  VALID("{\"a\":[[[[" NL20 "]]]]}");
  REJECT("{\"a\":[[[[" NL20, " ");
  /* never after the document, not even a gap that is fine elsewhere */
  REJECT("{}", " ");
  REJECT("{}", "\n");
}

static void test_invalid_docs(void) {
  /* top level: one object */
  REJECT("", "[]");
  REJECT("", "\"a\"");
  REJECT("", "1");
  REJECT("", "x");
  REJECT("{}", "{}");
  REJECT("{\"a\":1}", "}");
  REJECT("{}", " ");
  REJECT("{\"a\":1}", "\n");
  /* structure */
  REJECT("{\"a\":1,", "}");
  REJECT("{", "a:1}");
  REJECT("{", "'a':1}");
  REJECT("{", "1:2}");
  REJECT("{\"a\":1,", "2}");
  REJECT("{", "/*x*/}");
  REJECT("{", ",}");
  REJECT("{\"a\"", "}");
  REJECT("{\"a\" ", "1}");
  REJECT("{\"a\":", "}");
  REJECT("{\"a\":1 ", "\"b\":2}");
  REJECT("{\"a\":1", ":2}");
  REJECT("{\"a\":[1", "}");
  REJECT("{\"a\":{", "]}");
  REJECT("{\"a\":[1,", "]}");
  REJECT("{\"a\":[", ",]}");
  REJECT("{\"a\":[1]", "]}");
  REJECT("{\"a\":\"x\"", "\"y\"}");
  /* literals */
  REJECT("{\"a\":tru", "}");
  REJECT("{\"a\":tru", "E}");
  REJECT("{\"a\":t", "ure}");
  REJECT("{\"a\":true", "e}");
  REJECT("{\"a\":nul", "}");
  REJECT("{\"a\":", "True}");
  REJECT("{\"a\":", "NaN}");
  REJECT("{\"a\":", "Infinity}");
  REJECT("{\"a\":-", "Infinity}");
  /* numbers */
  REJECT("{\"a\":0", "1}");
  REJECT("{\"a\":-0", "1}");
  REJECT("{\"a\":-", "}");
  REJECT("{\"a\":-", "a}");
  REJECT("{\"a\":1.", "}");
  REJECT("{\"a\":1.", "e5}");
  REJECT("{\"a\":1e", "}");
  REJECT("{\"a\":1e+", "}");
  REJECT("{\"a\":1E-", "-1}");
  REJECT("{\"a\":1.5", ".}");
  REJECT("{\"a\":1e5", ".}");
  REJECT("{\"a\":1e5", "e}");
  REJECT("{\"a\":", ".5}");
  REJECT("{\"a\":", "+1}");
  REJECT("{\"a\":1", "x}");
  REJECT("{\"a\":0", "x}");
  /* strings */
  REJECT("{\"a\":\"", "\x01\"}");
  REJECT("{\"a\":\"", "\x1f\"}");
  REJECT("{\"a\":\"x", "\n\"}");
  REJECT("{\"a\":\"x", "\t\"}");
  REJECT("{\"a\":\"\\", "x\"}");
  REJECT("{\"a\":\"\\", "U0041\"}");
  REJECT("{\"a\":\"\\", "'\"}");
  REJECT("{\"a\":\"\\", "0\"}");
  REJECT("{\"a\":\"\\", "\xC3\xA9\"}");
  REJECT("{\"a\":\"\\u12", "G4\"}");
  REJECT("{\"a\":\"\\u12", "\"}");
  REJECT("{\"a\":\"\\u", "\"}");
  REJECT("{\"", "\x01\":1}");
  REJECT("{\"a\\", "q\":1}");
  /* UTF-8 */
  REJECT("{\"a\":\"", "\xC0\x80\"}");
  REJECT("{\"a\":\"", "\xC1\xBF\"}");
  REJECT("{\"a\":\"\xE0", "\x9F\xBF\"}");
  REJECT("{\"a\":\"\xED", "\xA0\x80\"}");
  REJECT("{\"a\":\"\xED", "\xBF\xBF\"}");
  REJECT("{\"a\":\"\xF0", "\x8F\xBF\xBF\"}");
  REJECT("{\"a\":\"\xF4", "\x90\x80\x80\"}");
  REJECT("{\"a\":\"", "\xF5\x80\x80\x80\"}");
  REJECT("{\"a\":\"", "\xFF\"}");
  REJECT("{\"a\":\"", "\xFE\"}");
  REJECT("{\"a\":\"", "\x80\"}");
  REJECT("{\"a\":\"\xC3\xA9", "\xA9\"}");
  REJECT("{\"a\":\"\xE2\x82", "\"}");
  REJECT("{\"a\":\"\xE2", "A\"}");
  REJECT("{\"a\":\"\xF0\x9D\x84", "\xC0\"}");
  REJECT("{\"\xE2\x82", "\xC0\":1}");
  REJECT("{", "\xC3\xA9:1}");
  /* whitespace: every gap is empty, " ", or "\n" then at most IG_JSON_MAX_INDENT spaces/tabs */
  test_gaps();
  VALID("{\"a\":\"        \\n\\n  \\t                      \"}"); /* inside strings nothing counts */
  VALID("{ \"a\" : 1 , \"b\" : [ 1 , { } ] }");
}

/* Nesting up to IG_JSON_MAX_DEPTH (the top-level object counts) is fine, one more is not. */
static void test_depth(void) {
  char s[1024], ok[1024];
  size_t n = 0;
  for (int i = 1; i < IG_JSON_MAX_DEPTH; i++) n += (size_t)sprintf(s + n, "{\"a\":");
  n += (size_t)sprintf(s + n, "{}");
  for (int i = 1; i < IG_JSON_MAX_DEPTH; i++) s[n++] = '}';
  check_valid(s, n, __LINE__);
  n = (size_t)sprintf(s, "{\"a\":");
  for (int i = 1; i < IG_JSON_MAX_DEPTH; i++) s[n++] = '[';
  for (int i = 1; i < IG_JSON_MAX_DEPTH; i++) s[n++] = ']';
  s[n++] = '}';
  check_valid(s, n, __LINE__);
  /* Objects and arrays alternating, with a member after each inner container: each level's kind must be
   * right again once the levels inside it close. */
  n = 0;
  for (int i = 0; i < IG_JSON_MAX_DEPTH - 1; i++) n += (size_t)sprintf(s + n, i % 2 ? "[1," : "{\"a\":");
  n += (size_t)sprintf(s + n, "{}");
  for (int i = IG_JSON_MAX_DEPTH - 2; i >= 0; i--) n += (size_t)sprintf(s + n, i % 2 ? ",2]" : ",\"b\":3}");
  check_valid(s, n, __LINE__);
  /* Inside 32 levels a scalar is fine, one more container is not (as an object or an array). */
  n = 0;
  for (int i = 0; i < IG_JSON_MAX_DEPTH; i++) n += (size_t)sprintf(ok + n, "{\"a\":");
  memcpy(s, ok, n);
  size_t m = n + (size_t)sprintf(s + n, "1");
  for (int i = 0; i < IG_JSON_MAX_DEPTH; i++) s[m++] = '}';
  check_valid(s, m, __LINE__);
  check_reject(ok, "{}", __LINE__);
  check_reject(ok, "[]", __LINE__);
  n = (size_t)sprintf(ok, "{\"a\":");
  for (int i = 1; i < IG_JSON_MAX_DEPTH; i++) ok[n++] = '[';
  ok[n] = 0;
  check_reject(ok, "[]", __LINE__);
  check_reject(ok, "{}", __LINE__);
}

/* ---- UTF-8 against an encoder-based reference ------------------------------------------------------------ */

/* full[L]: bit set for every valid L-byte encoding (L = 2, 3); pre[L]: for every L-byte proper prefix of a
 * valid encoding (L = 1, 2, 3). Built by encoding every scalar value U+0080..U+10FFFF (no surrogates). */
typedef struct utf8_ref {
  uint8_t pre1[256 / 8], pre2[65536 / 8], full2[65536 / 8];
  uint8_t *pre3, *full3; /* 2^24 bits each */
} utf8_ref;

static void bit_set(uint8_t *b, uint32_t i) { b[i >> 3] |= (uint8_t)(1u << (i & 7)); }
static int bit_get(const uint8_t *b, uint32_t i) { return b[i >> 3] >> (i & 7) & 1; }

static int encode(uint32_t cp, uint8_t *o) { return ig_utf8_encode(cp, (char *)o); }

static void utf8_ref_build(utf8_ref *r) {
  memset(r, 0, sizeof *r);
  r->pre3 = calloc(1 << 21, 1);
  r->full3 = calloc(1 << 21, 1);
  for (uint32_t cp = 0x80; cp <= 0x10FFFF; cp++) {
    if (cp >= 0xD800 && cp <= 0xDFFF) continue;
    uint8_t e[4];
    int n = encode(cp, e);
    bit_set(r->pre1, e[0]);
    if (n == 2) bit_set(r->full2, (uint32_t)e[0] << 8 | e[1]);
    if (n > 2) bit_set(r->pre2, (uint32_t)e[0] << 8 | e[1]);
    if (n == 3) bit_set(r->full3, (uint32_t)e[0] << 16 | (uint32_t)e[1] << 8 | e[2]);
    if (n == 4) bit_set(r->pre3, (uint32_t)e[0] << 16 | (uint32_t)e[1] << 8 | e[2]);
  }
}

/* A 4-byte sequence is valid when decoding it by the bit layout and encoding back gives the same bytes. */
static int full4(const uint8_t *b) {
  if ((b[0] & 0xF8) != 0xF0 || (b[1] & 0xC0) != 0x80 || (b[2] & 0xC0) != 0x80 || (b[3] & 0xC0) != 0x80) return 0;
  uint32_t cp = (uint32_t)(b[0] & 7) << 18 | (uint32_t)(b[1] & 63) << 12 | (uint32_t)(b[2] & 63) << 6 | (b[3] & 63);
  uint8_t e[4];
  return cp <= 0x10FFFF && encode(cp, e) == 4 && memcmp(e, b, 4) == 0;
}

/* b[0..n) is a prefix of string content made of ASCII letters and valid multibyte characters. */
static int utf8_ref_prefix_ok(const utf8_ref *r, const uint8_t *b, size_t n) {
  size_t i = 0;
  while (i < n) {
    if (b[i] < 0x80) {
      i++;
      continue;
    }
    size_t rem = n - i;
    if (rem >= 2 && bit_get(r->full2, (uint32_t)b[i] << 8 | b[i + 1])) i += 2;
    else if (rem >= 3 && bit_get(r->full3, (uint32_t)b[i] << 16 | (uint32_t)b[i + 1] << 8 | b[i + 2])) i += 3;
    else if (rem >= 4 && full4(b + i)) i += 4;
    else if (rem == 1) return bit_get(r->pre1, b[i]);
    else if (rem == 2) return bit_get(r->pre2, (uint32_t)b[i] << 8 | b[i + 1]);
    else if (rem == 3) return bit_get(r->pre3, (uint32_t)b[i] << 16 | (uint32_t)b[i + 1] << 8 | b[i + 2]);
    else return 0;
  }
  return 1;
}

static void test_utf8_exhaustive(void) {
  utf8_ref r;
  utf8_ref_build(&r);
  if (!r.pre3 || !r.full3) {
    CHECK(!"out of memory");
    return;
  }
  ig_json_fsm in_value = state_after("{\"a\":\"", 6), in_key = state_after("{\"", 2);
  /* All sequences of 1 to 3 bytes over 'A' and 0x80..0xFF, in a value and in a key. */
  uint8_t alpha[129];
  alpha[0] = 'A';
  for (int i = 0; i < 128; i++) alpha[i + 1] = (uint8_t)(0x80 + i);
  long bad = 0, checked = 0;
  for (int len = 1; len <= 3; len++) {
    long total = 1;
    for (int k = 0; k < len; k++) total *= 129;
    for (long x = 0; x < total; x++) {
      uint8_t b[4];
      long y = x;
      for (int k = 0; k < len; k++, y /= 129) b[k] = alpha[y % 129];
      int want = utf8_ref_prefix_ok(&r, b, (size_t)len);
      for (int w = 0; w < 2; w++) {
        ig_json_fsm f = w ? in_key : in_value;
        int got = feed(&f, b, (size_t)len) == 0;
        if (got != want && bad++ < 10)
          CHECK_MSG(0, "%d bytes %02x %02x %02x: fsm %d, reference %d", len, b[0], b[1], b[2], got, want);
        checked++;
      }
    }
  }
  /* 4-byte sequences around the 4-byte leads. */
  static const uint8_t leads[] = {0xC2, 0xDF, 0xE0, 0xED, 0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xF7};
  for (size_t l = 0; l < sizeof leads; l++)
    for (unsigned b1 = 0x7F; b1 <= 0xC1; b1++)
      for (unsigned b2 = 0x7F; b2 <= 0xC1; b2++)
        for (unsigned b3 = 0x7F; b3 <= 0xC1; b3++) {
          uint8_t b[4] = {leads[l], (uint8_t)b1, (uint8_t)b2, (uint8_t)b3};
          int want = utf8_ref_prefix_ok(&r, b, 4);
          ig_json_fsm f = in_value;
          int got = feed(&f, b, 4) == 0;
          if (got != want && bad++ < 10)
            CHECK_MSG(0, "4 bytes %02x %02x %02x %02x: fsm %d, reference %d", b[0], b[1], b[2], b[3], got, want);
          checked++;
        }
  CHECK_MSG(bad == 0, "%ld of %ld UTF-8 sequences disagree with the reference", bad, checked);
  free(r.pre3);
  free(r.full3);
}

/* ---- random documents, against jansson ------------------------------------------------------------------- */

typedef struct buf {
  char *p;
  size_t len, cap;
} buf;

static void put(buf *b, const void *s, size_t n) {
  if (b->len + n + 1 > b->cap) {
    b->cap = (b->len + n + 1) * 2;
    b->p = realloc(b->p, b->cap);
    if (!b->p) abort();
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = 0;
}
static void puts_(buf *b, const char *s) { put(b, s, strlen(s)); }
static void putc_(buf *b, char c) { put(b, &c, 1); }

/* A gap with d containers open: empty, " ", or "\n" and an indent of spaces/tabs, sometimes the longest allowed
 * there (indent_max(d)). */
static void gen_ws(uint64_t *r, buf *b, int d) {
  if (rng_below(r, 3)) return;
  if (rng_below(r, 3) == 0) {
    putc_(b, ' ');
    return;
  }
  putc_(b, '\n');
  unsigned max = (unsigned)indent_max((size_t)d), k = rng_below(r, 4) ? rng_below(r, max + 1) : max;
  for (; k; k--) putc_(b, rng_below(r, 4) ? ' ' : '\t');
}

static void gen_string(uint64_t *r, buf *b) {
  putc_(b, '"');
  for (unsigned n = rng_below(r, 8); n; n--) {
    unsigned k = rng_below(r, 10);
    if (k < 5) {
      char c = (char)(0x20 + rng_below(r, 0x5F));
      putc_(b, c == '"' || c == '\\' ? 'q' : c);
    } else if (k == 5) {
      static const char *esc[] = {"\\\"", "\\\\", "\\/", "\\b", "\\f", "\\n", "\\r", "\\t"};
      puts_(b, esc[rng_below(r, 8)]);
    } else if (k == 6) {
      /* \uXXXX: no NUL and no lone surrogate (jansson refuses those); sometimes a surrogate pair */
      char tmp[16];
      if (rng_below(r, 4) == 0) {
        snprintf(tmp, sizeof tmp, "\\u%04X\\u%04x", 0xD800 + rng_below(r, 0x400), 0xDC00 + rng_below(r, 0x400));
      } else {
        unsigned v = 1 + rng_below(r, 0xFFFF);
        if (v >= 0xD800 && v <= 0xDFFF) v = 0x41;
        snprintf(tmp, sizeof tmp, rng_below(r, 2) ? "\\u%04x" : "\\u%04X", v);
      }
      puts_(b, tmp);
    } else {
      /* a multibyte character of 2, 3 or 4 bytes */
      static const uint32_t lo[] = {0x80, 0x800, 0x10000}, span[] = {0x780, 0xF800, 0x100000};
      unsigned w = rng_below(r, 3);
      uint32_t cp = lo[w] + rng_below(r, span[w]);
      if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xE9;
      uint8_t e[4];
      put(b, e, (size_t)encode(cp, e));
    }
  }
  putc_(b, '"');
}

static void gen_number(uint64_t *r, buf *b) {
  char tmp[64];
  size_t n = 0;
  if (rng_below(r, 3) == 0) tmp[n++] = '-';
  if (rng_below(r, 4) == 0) tmp[n++] = '0';
  else {
    tmp[n++] = (char)('1' + rng_below(r, 9));
    for (unsigned k = rng_below(r, 6); k; k--) tmp[n++] = (char)('0' + rng_below(r, 10));
  }
  if (rng_below(r, 3) == 0) {
    tmp[n++] = '.';
    for (unsigned k = 1 + rng_below(r, 4); k; k--) tmp[n++] = (char)('0' + rng_below(r, 10));
  }
  if (rng_below(r, 4) == 0) {
    tmp[n++] = rng_below(r, 2) ? 'e' : 'E';
    unsigned s = rng_below(r, 3);
    if (s) tmp[n++] = s == 1 ? '+' : '-';
    for (unsigned k = 1 + rng_below(r, 2); k; k--) tmp[n++] = (char)('0' + rng_below(r, 10));
  }
  put(b, tmp, n);
}

static void gen_value(uint64_t *r, buf *b, int depth);

static void gen_container(uint64_t *r, buf *b, int depth, int is_array) {
  putc_(b, is_array ? '[' : '{');
  gen_ws(r, b, depth);
  unsigned n = rng_below(r, 5);
  for (unsigned i = 0; i < n; i++) {
    if (i) {
      putc_(b, ',');
      gen_ws(r, b, depth);
    }
    if (!is_array) {
      gen_string(r, b);
      gen_ws(r, b, depth);
      putc_(b, ':');
      gen_ws(r, b, depth);
    }
    gen_value(r, b, depth + 1);
    gen_ws(r, b, depth);
  }
  putc_(b, is_array ? ']' : '}');
}

static void gen_value(uint64_t *r, buf *b, int depth) {
  unsigned k = rng_below(r, depth < 5 ? 9 : 7);
  switch (k) {
  case 0: case 1: gen_string(r, b); break;
  case 2: case 3: gen_number(r, b); break;
  case 4: puts_(b, "true"); break;
  case 5: puts_(b, rng_below(r, 2) ? "false" : "null"); break;
  case 6: if (depth < 5) { gen_container(r, b, depth, 0); break; } /* fall through */
  default: gen_container(r, b, depth, k == 7); break;
  }
}

static void gen_doc(uint64_t *r, buf *b) {
  b->len = 0;
  gen_ws(r, b, 0);
  gen_container(r, b, 1, 0);
}


static int jansson_accepts(const char *s, size_t n) {
  json_error_t err;
  json_t *j = json_loadb(s, n, 0, &err);
  json_decref(j);
  return j != NULL;
}

static void test_random_docs(void) {
  uint64_t r = 0x9E3779B97F4A7C15ull;
  buf b = {0}, m = {0};
  long compared = 0, rejected = 0, skipped = 0;
  for (int it = 0; it < 3000; it++) {
    gen_doc(&r, &b);
    CHECK_MSG(jansson_accepts(b.p, b.len), "generator made invalid JSON: %s", b.p);
    /* Fed in random pieces: valid throughout, complete only at the end. */
    ig_json_fsm f;
    ig_json_fsm_init(&f);
    size_t at = 0;
    int ok = 1;
    while (at < b.len) {
      size_t k = 1 + rng_below(&r, (unsigned)(b.len - at < 16 ? b.len - at : 16));
      ok &= feed(&f, b.p + at, k) == 0;
      at += k;
      ok &= ig_json_fsm_complete(&f) == (at == b.len);
    }
    CHECK_MSG(ok, "random document rejected: %s", b.p);
    /* One-byte mutations: replaced, inserted or deleted. */
    static const char interesting[] = "{}[]\",:\\ 0123456789.eE+-tfnul/abu\t\n\x01\x7f\xC3\xA9\xE2\x82\xAC\xED\xF0\xFF";
    for (int k = 0; k < 12; k++) {
      m.len = 0;
      put(&m, b.p, b.len);
      size_t pos = rng_below(&r, (unsigned)m.len);
      char c = rng_below(&r, 3) ? interesting[rng_below(&r, sizeof interesting - 1)] : (char)rng_below(&r, 256);
      unsigned op = rng_below(&r, 3);
      if (op == 0) m.p[pos] = c;
      else if (op == 1) {
        put(&m, "", 1);
        memmove(m.p + pos + 1, m.p + pos, m.len - pos - 1);
        m.p[pos] = c;
      } else {
        memmove(m.p + pos, m.p + pos + 1, m.len - pos - 1);
        m.len--;
      }
      int mine = accepts(m.p, m.len);
      /* whole and byte by byte agree */
      ig_json_fsm g;
      ig_json_fsm_init(&g);
      int bytewise = 1;
      for (size_t i = 0; i < m.len && bytewise; i++) bytewise = feed(&g, m.p + i, 1) == 0;
      CHECK(mine == (bytewise && ig_json_fsm_complete(&g)));
      rejected += !mine;
      if (!common_ground(m.p, m.len)) {
        skipped++;
        continue;
      }
      compared++;
      int theirs = jansson_accepts(m.p, m.len);
      CHECK_MSG(mine == theirs, "fsm %d, jansson %d on: %.*s", mine, theirs, (int)m.len, m.p);
    }
  }
  fprintf(stderr, "mutations: %ld compared with jansson (%ld skipped), %ld rejected\n", compared, skipped, rejected);
  CHECK(compared > 20000 && rejected > 10000);
  free(b.p);
  free(m.p);
}

/* ---- the mask against brute force ------------------------------------------------------------------------ */

typedef struct vocab_src {
  int n, cap;
  unsigned char **bytes;
  size_t *len;
  unsigned char *special;
} vocab_src;

static void vs_add(vocab_src *v, const void *s, size_t n, int special) {
  if (v->n == v->cap) {
    v->cap = v->cap ? 2 * v->cap : 256;
    v->bytes = realloc(v->bytes, (size_t)v->cap * sizeof *v->bytes);
    v->len = realloc(v->len, (size_t)v->cap * sizeof *v->len);
    v->special = realloc(v->special, (size_t)v->cap);
    if (!v->bytes || !v->len || !v->special) abort();
  }
  v->bytes[v->n] = malloc(n ? n : 1);
  if (n) memcpy(v->bytes[v->n], s, n);
  v->len[v->n] = n;
  v->special[v->n] = (unsigned char)special;
  v->n++;
}

static void vs_free(vocab_src *v) {
  for (int i = 0; i < v->n; i++) free(v->bytes[i]);
  free(v->bytes), free(v->len), free(v->special);
  memset(v, 0, sizeof *v);
}

/* Compares ig_json_allowed on state f with feeding every token to a copy. Returns the mismatches. */
static int check_mask(const ig_json_vocab *jv, const vocab_src *src, const ig_json_fsm *f, const int32_t *eos,
                      int n_eos, uint8_t *allowed, const char *what) {
  int n = ig_json_allowed(jv, f, eos, n_eos, allowed);
  int done = ig_json_fsm_complete(f), sum = 0, bad = 0;
  for (int i = 0; i < src->n; i++) {
    int is_eos = 0;
    for (int k = 0; k < n_eos; k++) is_eos |= eos[k] == i;
    int want;
    if (is_eos) want = done;
    else {
      ig_json_fsm g = *f;
      want = !done && src->len[i] > 0 && !src->special[i] && feed(&g, src->bytes[i], src->len[i]) == 0;
    }
    sum += allowed[i] != 0;
    if ((allowed[i] != 0) != want && bad++ < 5)
      CHECK_MSG(0, "%s: token %d (\"%.*s\") allowed %d, brute force %d", what, i, (int)src->len[i], src->bytes[i],
                allowed[i], want);
  }
  if (n != sum && bad++ < 5) CHECK_MSG(0, "%s: returned %d, %d allowed", what, n, sum);
  /* the same mask in segments (as the engine's threads make it), for several cuts, walked last to first */
  static const int cuts[] = {1, 3, 8, 33};
  uint8_t *part = malloc((size_t)src->n + 1);
  for (size_t c = 0; c < sizeof cuts / sizeof cuts[0] && part; c++) {
    ig_json_seg *g = NULL;
    int ng = ig_json_vocab_segments(jv, cuts[c], &g), got = 0;
    memset(part, 0, (size_t)src->n + 1);
    for (int k = ng - 1; k >= 0; k--) got += ig_json_allowed_seg(jv, f, &g[k], part);
    got += ig_json_allowed_rest(jv, f, eos, n_eos, part);
    if ((ng < 1 || got != n || memcmp(part, allowed, (size_t)src->n)) && bad++ < 5)
      CHECK_MSG(0, "%s: %d segments: count %d of %d, or another mask", what, ng, got, n);
    free(g);
  }
  free(part);
  return bad;
}

static void test_mask_brute_force(void) {
  vocab_src src = {0};
  for (int c = 0; c < 256; c++) { /* every single byte: ids 0..255 */
    unsigned char b = (unsigned char)c;
    vs_add(&src, &b, 1, 0);
  }
  static const char *pieces[] = {
      "{", "}", "[", "]", "\"", "\":", "\":\"", "\", \"", "\",\"", "{\"", "\"}", "}}", "]}", "[{", ",\"", " ", "  ",
      "   ", "    ", "\t\n", "\n\n\n\n\n", " \"", ": ", ", ", "0", "1", "12", "123", "-1", "-", "1.", ".5", "0.",
      "e", "e+", "E-3", "e5", "00", "10", "1e", "true", "tru", "t", "tr", "true}", "true,", "false", "fa", "null",
      "nul", "l", "n", "a", "a", "ab", "hello", " world", "\\", "\\n", "\\u", "\\u00", "\\u00e9", "e9", "u00",
      "\xC3", "\xC3\xA9", "\xA9", "\xA9\"", "\xE2\x82\xAC", "\xE2\x82", "\x82\xAC", "\xAC", "\xF0\x9D\x84\x9E",
      "\xF0\x9D", "\x84\x9E", "\x9E\"}", "\xED\xA0\x80", "\xED\x9F", "\xC0\x80", "\xF4\x90", "\xF4\x8F",
      "\"a\"", "\"a\":", "\"a\": 1", "{\"a\":", "1}", "1,", "1]", "1 ", "\"}\n", "}\n", "},{", "[[", "]]", "[]",
      "{}", "\x01", "\x7f", "<s>", "</s>", "null]", " {", "\r\n", "\n\n", " \n", "\n ", "\n\t\t", "\n    ",
      "\n        ", "\n                    ", "\n                     ", "                    ", "\t", ",\n  ",
      "{\n", "\n}", ":\n", " \t"};
  for (size_t i = 0; i < sizeof pieces / sizeof *pieces; i++) vs_add(&src, pieces[i], strlen(pieces[i]), 0);
  vs_add(&src, "{\"", 2, 0); /* identical bytes under another id */
  vs_add(&src, "", 0, 0);    /* zero length: never */
  vs_add(&src, "<s>", 3, 1);
  vs_add(&src, "{", 1, 1); /* special with valid bytes: never */
  int32_t eos[3];
  eos[0] = src.n;
  vs_add(&src, "</s>", 4, 1);
  eos[1] = src.n;
  vs_add(&src, "}", 1, 0); /* a non-special eos: still only when complete */
  eos[2] = 1 << 20;        /* out of range: ignored */
  /* Longer than the trie keeps: tried one by one. 128 and 129 straddle the cut. */
  char big[300];
  memset(big, 'a', sizeof big);
  vs_add(&src, big, 128, 0);
  vs_add(&src, big, 129, 0);
  vs_add(&src, big, 200, 0);
  memset(big, ' ', sizeof big);
  vs_add(&src, big, 150, 0);
  memset(big, 'x', sizeof big);
  big[0] = big[140] = '"';
  vs_add(&src, big, 141, 0);
  memset(big, '1', sizeof big);
  vs_add(&src, big, 130, 0);

  ig_json_vocab *jv;
  CHECK(ig_json_vocab_build(&jv, src.n, (const unsigned char *const *)src.bytes, src.len, src.special) == 0);
  uint8_t *allowed = malloc((size_t)src.n);
  int bad = 0, states = 0;
  /* States: every prefix of hand-written documents (whitespace at the cap, depth at the limit, UTF-8 split
   * everywhere) and of random ones. */
  static const char *docs[] = {
      "\n{\n    \"a\"\n    :\n    [\n        1\n        ,\n        2 ]\n    ,\n    \"b\":[[[[" NL20 "1" NL20 "]]]]\n    }",
      "{\"a\": [1, -2.5e+3, true, false, null, {\"b\": \"x\\u00e9\\n\"}]}",
      "{\"\xE2\x82\xAC\":\"\xF0\x9D\x84\x9E\xC3\xA9\\u00e9\\\"\",\"n\":-0.5e-3,\"m\":0,\"t\":[true,{}]}",
      ("{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":"
       "[[[[[[[[[[[[[[[{}]]]]]]]]]]]]]]]}}}}}}}}}}}}}}}}"), /* depth 32 */
  };
  uint64_t r = 12345;
  buf b = {0};
  for (int d = 0; d < 4 + 150; d++) {
    if (d < 4) {
      b.len = 0;
      puts_(&b, docs[d]);
    } else gen_doc(&r, &b);
    ig_json_fsm f;
    ig_json_fsm_init(&f);
    for (size_t i = 0; i <= b.len; i++) {
      char what[64];
      snprintf(what, sizeof what, "doc %d prefix %zu", d, i);
      bad += check_mask(jv, &src, &f, eos, 3, allowed, what);
      states++;
      if (i < b.len) CHECK(feed(&f, b.p + i, 1) == 0);
    }
    /* complete: only the eos ids (two distinct in range) */
    CHECK_EQ_INT(ig_json_allowed(jv, &f, eos, 3, allowed), 2);
    CHECK(allowed[eos[0]] && allowed[eos[1]]);
  }
  CHECK_MSG(bad == 0, "%d mask mismatches over %d states", bad, states);
  /* The gap's shape, spelled out: after one space no whitespace token fits, after "\n" an indent does up to
   * indent_max(d) (none before the top-level '{'); the rest still does. */
  ig_json_fsm f = state_after("{ ", 2);
  CHECK(ig_json_allowed(jv, &f, eos, 3, allowed) > 0);
  CHECK(!allowed[' '] && !allowed['\n'] && !allowed['\t'] && allowed['"'] && allowed['}'] && !allowed[eos[1]]);
  f = state_after("{", 1);
  ig_json_allowed(jv, &f, eos, 3, allowed);
  CHECK(allowed[' '] && allowed['\n'] && !allowed['\t'] && !allowed['\r'] && allowed['"'] && allowed['}']);
  f = state_after("{\n", 2);
  ig_json_allowed(jv, &f, eos, 3, allowed);
  CHECK(allowed[' '] && !allowed['\n'] && allowed['\t'] && !allowed['\r'] && allowed['"'] && allowed['}']);
  f = state_after("\n", 1);
  ig_json_allowed(jv, &f, eos, 3, allowed);
  CHECK(!allowed[' '] && !allowed['\n'] && !allowed['\t'] && allowed['{']);
  f = state_after("{\n   ", 5);
  ig_json_allowed(jv, &f, eos, 3, allowed);
  CHECK(allowed[' '] && allowed['\t'] && !allowed['\n'] && allowed['"'] && allowed['}']);
  f = state_after("{\n    ", 6);
  ig_json_allowed(jv, &f, eos, 3, allowed);
  CHECK(!allowed[' '] && !allowed['\n'] && !allowed['\t'] && allowed['"'] && allowed['}']);
  f = state_after("{\"a\":[[[[" NL20, 9 + sizeof NL20 - 1);
  ig_json_allowed(jv, &f, eos, 3, allowed);
  CHECK(!allowed[' '] && !allowed['\n'] && !allowed['\t'] && allowed[']'] && allowed['{']);
  /* No eos list at all. */
  f = state_after("{}", 2);
  CHECK_EQ_INT(ig_json_allowed(jv, &f, NULL, 0, allowed), 0);
  free(allowed);
  free(b.p);
  ig_json_vocab_free(jv);
  vs_free(&src);

  /* Degenerate vocabularies. */
  CHECK(ig_json_vocab_build(&jv, 0, NULL, NULL, NULL) == 0);
  ig_json_fsm_init(&f);
  CHECK_EQ_INT(ig_json_allowed(jv, &f, NULL, 0, NULL), 0);
  ig_json_vocab_free(jv);
  ig_json_vocab_free(NULL);
  CHECK(ig_json_vocab_build(&jv, -1, NULL, NULL, NULL) == -EINVAL && jv == NULL);
  /* Nothing fits: 0 tells the caller to stop. */
  const unsigned char *only_a[] = {(const unsigned char *)"a", (const unsigned char *)"aa"};
  size_t only_a_len[] = {1, 2};
  uint8_t two[2];
  CHECK(ig_json_vocab_build(&jv, 2, only_a, only_a_len, NULL) == 0);
  f = state_after("{", 1);
  CHECK_EQ_INT(ig_json_allowed(jv, &f, NULL, 0, two), 0);
  f = state_after("{\"", 2);
  CHECK_EQ_INT(ig_json_allowed(jv, &f, NULL, 0, two), 2);
  ig_json_vocab_free(jv);
}

/* ---- cost on a 128k-token vocabulary --------------------------------------------------------------------- */

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Builds a synthetic vocabulary of n tokens of 1..12 bytes (random bytes, or printable ASCII like a real
 * BPE vocabulary), checks the mask against brute force in a few states and prints its cost. */
static void bench_vocab(const char *name, int n, int ascii, uint64_t seed) {
  vocab_src src = {0};
  uint64_t r = seed;
  for (int i = 0; i < n; i++) {
    unsigned char t[12];
    size_t len = 1 + rng_below(&r, 12);
    for (size_t k = 0; k < len; k++) t[k] = (unsigned char)(ascii ? 0x20 + rng_below(&r, 0x5F) : rng_below(&r, 256));
    vs_add(&src, t, len, 0);
  }
  int32_t eos = n - 1;
  src.special[eos] = 1;
  double t0 = now_ms();
  ig_json_vocab *jv;
  CHECK(ig_json_vocab_build(&jv, src.n, (const unsigned char *const *)src.bytes, src.len, src.special) == 0);
  double t_build = now_ms() - t0;
  uint8_t *allowed = malloc((size_t)n);
  static const char *prefixes[] = {"{\"a\":\"", "{\"", "{\"a\":", "{\"a\":1", "{", ""};
  static const char *names[] = {"in a value string", "in a key string", "at a value", "in a number", "after {",
                                "at the start"};
  fprintf(stderr, "%s vocabulary, %d tokens: build %.1f ms\n", name, n, t_build);
  for (int p = 0; p < 6; p++) {
    ig_json_fsm f = state_after(prefixes[p], strlen(prefixes[p]));
    CHECK_EQ_INT(check_mask(jv, &src, &f, &eos, 1, allowed, names[p]), 0);
    int iters = 30, count = 0;
    double best = 1e9;
    for (int it = 0; it < iters; it++) {
      double a = now_ms();
      count = ig_json_allowed(jv, &f, &eos, 1, allowed);
      double dt = now_ms() - a;
      if (dt < best) best = dt;
    }
    fprintf(stderr, "  mask %-18s %7.3f ms (best of %d), %d allowed\n", names[p], best, iters, count);
  }
  free(allowed);
  ig_json_vocab_free(jv);
  vs_free(&src);
}

int main(void) {
  test_valid_docs();
  test_invalid_docs();
  test_depth();
  test_utf8_exhaustive();
  test_random_docs();
  test_mask_brute_force();
  bench_vocab("random-byte", 128000, 0, 77);
  bench_vocab("printable-ASCII", 128000, 1, 78);
  TEST_DONE();
}
