/* fuzz/fuzz_engine_jsonmask: JSON mode's recognizer and token mask on arbitrary bytes (the first byte picks a
 * cut, the rest is the document). Any of these breaking is a bug:
 *  - fed whole, byte by byte, or in two pieces at the cut, the verdict and the state are the same, and the first
 *    byte refused one at a time is the byte the whole fails at;
 *  - where this module and jansson are meant to agree (see common_ground), "complete" equals "json_loadb
 *    accepts it";
 *  - the mask for the state at the cut and at the longest valid prefix equals trying every token of a small
 *    vocabulary one by one.
 *   CC=clang cmake -B build-fuzz -DIGNIS_FUZZ=ON -DIGNIS_CUDA=OFF && cmake --build build-fuzz --target fuzz_engine_jsonmask
 *   build-fuzz/fuzz/fuzz_engine_jsonmask -max_total_time=120 fuzz/corpus/engine_jsonmask
 * (jansson comes with ig_engine through ig_tok, as in every full build.) */
#include "engine/jsonmask.h"
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../tests/engine/json_common.h"

/* ---- a small vocabulary: every single byte, JSON-ish pieces, UTF-8 fragments, a long token, specials ---- */

static const char *const PIECES[] = {
    "{", "}", "\":", "\":\"", "\", \"", "{\"", "\"}", "}}", "]}", "[{", ",\"", "  ", "    ", "\t\n", ": ", ", ",
    "12", "-1", "1.", ".5", "0.", "e+", "E-3", "00", "1e", "true", "tru", "true}", "false", "null", "nul",
    "hello", " world", "\\n", "\\u", "\\u00", "\\u00e9", "\\uD83D", "\\uDE00", "\xC3\xA9", "\xA9\"",
    "\xE2\x82\xAC", "\xE2\x82", "\x82\xAC", "\xF0\x9D\x84\x9E", "\xF0\x9D", "\x84\x9E", "\xED\xA0\x80",
    "\xED\x9F", "\xC0\x80", "\xF4\x90", "\xF4\x8F", "\"a\": 1", "{\"a\":", "1}", "1,", "1]", "1 ", "}\n", "[]",
    "{}", "null]", " {",
    /* whitespace gaps: the allowed shapes (" ", "\n" + indent up to IG_JSON_INDENT_PER_LEVEL per open container,
     * IG_JSON_MAX_INDENT at most) and refused ones */
    "\n", "\n  ", "\n\t\t", ",\n    ", "{\n  ", "\n}", "\n    ", "\n     ", "\n        ", "\n         ",
    "\n                    ", "\n                     ",
    "\n\n", " \n", "\r\n"};

typedef struct fz_vocab {
  int n;
  const unsigned char *bytes[512];
  size_t len[512];
  unsigned char special[512];
  int32_t eos[2];
  ig_json_vocab *v;
} fz_vocab;

static fz_vocab *vocab_get(void) {
  static fz_vocab fv;
  static unsigned char singles[256], longtok[160];
  if (fv.v) return &fv;
  for (int c = 0; c < 256; c++) {
    singles[c] = (unsigned char)c;
    fv.bytes[fv.n] = singles + c, fv.len[fv.n++] = 1;
  }
  for (size_t i = 0; i < sizeof PIECES / sizeof *PIECES; i++)
    fv.bytes[fv.n] = (const unsigned char *)PIECES[i], fv.len[fv.n++] = strlen(PIECES[i]);
  memset(longtok, 'x', sizeof longtok); /* longer than the trie keeps: tried on its own */
  longtok[sizeof longtok - 1] = '"';
  fv.bytes[fv.n] = longtok, fv.len[fv.n++] = sizeof longtok;
  fv.bytes[fv.n] = (const unsigned char *)"", fv.len[fv.n++] = 0;
  fv.special[fv.n] = 1, fv.bytes[fv.n] = (const unsigned char *)"{", fv.len[fv.n++] = 1;
  fv.eos[0] = fv.n, fv.special[fv.n] = 1, fv.bytes[fv.n] = (const unsigned char *)"</s>", fv.len[fv.n++] = 4;
  fv.eos[1] = fv.n, fv.bytes[fv.n] = (const unsigned char *)"}", fv.len[fv.n++] = 1;
  if (ig_json_vocab_build(&fv.v, fv.n, fv.bytes, fv.len, fv.special)) abort();
  return &fv;
}

static void check_mask(const ig_json_fsm *f) {
  fz_vocab *fv = vocab_get();
  uint8_t allowed[512];
  int n = ig_json_allowed(fv->v, f, fv->eos, 2, allowed), done = ig_json_fsm_complete(f), sum = 0;
  for (int i = 0; i < fv->n; i++) {
    int want;
    if (i == fv->eos[0] || i == fv->eos[1]) want = done;
    else {
      ig_json_fsm g = *f;
      want = !done && fv->len[i] && !fv->special[i] && ig_json_fsm_feed(&g, fv->bytes[i], fv->len[i]) == 0;
    }
    if (!!allowed[i] != want) abort();
    sum += allowed[i] != 0;
  }
  if (n != sum) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  const uint8_t *p = data + 1;
  size_t n = size - 1, cut = n ? data[0] % (n + 1) : 0;

  ig_json_fsm whole, bytewise, pieces, at_cut;
  ig_json_fsm_init(&whole);
  int rc = ig_json_fsm_feed(&whole, p, n);
  int complete = rc == 0 && ig_json_fsm_complete(&whole);

  ig_json_fsm_init(&bytewise);
  size_t first_bad = n;
  for (size_t i = 0; i < n; i++) {
    ig_json_fsm before = bytewise;
    if (ig_json_fsm_feed(&bytewise, p + i, 1)) {
      first_bad = i;
      bytewise = before;
      break;
    }
  }
  if ((rc == 0) != (first_bad == n)) abort();
  if (rc == 0 && memcmp(&whole, &bytewise, sizeof whole)) abort();
  if (rc && ig_json_fsm_complete(&whole)) abort(); /* a failed feed never reads as complete */

  ig_json_fsm_init(&pieces);
  int rc2 = ig_json_fsm_feed(&pieces, p, cut);
  at_cut = pieces;
  if ((rc2 == 0) != (cut <= first_bad)) abort();
  if (rc2 == 0) rc2 = ig_json_fsm_feed(&pieces, p + cut, n - cut);
  if (rc2 != rc || (rc == 0 && memcmp(&whole, &pieces, sizeof whole))) abort();

  /* bytewise holds the state after the longest valid prefix; the byte after it is refused from there too */
  if (first_bad < n) {
    ig_json_fsm g = bytewise;
    if (ig_json_fsm_feed(&g, p + first_bad, 1) == 0) abort();
  }

  if (common_ground((const char *)p, n)) {
    json_error_t err;
    json_t *j = json_loadb((const char *)p, n, 0, &err);
    int theirs = j != NULL;
    json_decref(j);
    if (theirs != complete) abort();
  }

  check_mask(&bytewise);
  if (cut <= first_bad) check_mask(&at_cut);
  return 0;
}
