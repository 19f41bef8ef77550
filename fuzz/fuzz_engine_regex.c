/* fuzz/fuzz_engine_regex: regex compilation (engine/regex.h) and the DFA on arbitrary bytes. The input is a
 * pattern up to the first NUL byte (the whole input when there is none) and a text after it. Any of these
 * breaking is a bug:
 *  - compiling crashes, leaks or runs long; a refusal without a one-line message, or with *out set;
 *  - the start state or a step out of range; a state reachable from the start from which no accepting state
 *    can be reached (a search over the whole DFA, when it is small enough);
 *  - the shortest accepted text (a search from the start) is not valid UTF-8, or walking it does not end in an
 *    accepting state;
 *  - walking the text (and the pattern itself as a text): a prefix kept alive that is not the prefix of some
 *    valid UTF-8, or one accepted that is not whole valid UTF-8;
 *  - ig_regex_fold at L = 2 folding states that a text of two of the text's first bytes tells apart.
 *   CC=clang cmake -B build-fuzz -DIGNIS_FUZZ=ON -DIGNIS_CUDA=OFF && cmake --build build-fuzz --target
 * fuzz_engine_regex && mkdir -p /tmp/rx && build-fuzz/fuzz/fuzz_engine_regex -max_total_time=120 /tmp/rx
 * fuzz/corpus/engine_regex */
#include "engine/regex.h"
#include "../tests/engine/regex_common.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FULL_CHECK_STATES 8192 /* the whole-DFA checks cost states x 256 steps */

/* 0: s[0..n) is no prefix of valid UTF-8; 1: a prefix that stops inside a code point; 2: whole valid UTF-8. */
static int utf8_state(const uint8_t *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    unsigned b = s[i];
    int k = b < 0x80 ? 1 : b >= 0xC2 && b <= 0xDF ? 2 : b >= 0xE0 && b <= 0xEF ? 3 : b >= 0xF0 && b <= 0xF4 ? 4 : 0;
    if (!k) return 0;
    unsigned lo = 0x80, hi = 0xBF; /* the second byte's range (RFC 3629) */
    if (b == 0xE0) lo = 0xA0;
    if (b == 0xED) hi = 0x9F;
    if (b == 0xF0) lo = 0x90;
    if (b == 0xF4) hi = 0x8F;
    for (int j = 1; j < k; j++) {
      if (i + (size_t)j >= n) return 1;
      unsigned c = s[i + (size_t)j];
      if (j == 1 ? (c < lo || c > hi) : (c < 0x80 || c > 0xBF)) return 0;
    }
    i += (size_t)k;
  }
  return 2;
}

static void walk_text(const ig_regex *r, const uint8_t *t, size_t n) {
  uint32_t s = ig_regex_start(r), n_states = ig_regex_n_states(r);
  for (size_t i = 0; i < n; i++) {
    int32_t next = ig_regex_step(r, s, t[i]);
    if (next < -1 || next >= (int32_t)n_states) abort();
    if (next < 0) return;
    s = (uint32_t)next;
    int u = utf8_state(t, i + 1);
    if (!u || (ig_regex_accepting(r, s) && u != 2)) abort();
  }
}

/* Reachable states: in range, and live. */
static void check_whole(const ig_regex *r) {
  if (!dfa_sound(r)) abort();
}

/* The shortest accepted text: it exists, is valid UTF-8, and walks to an accepting state. */
static void check_shortest(const ig_regex *r) {
  unsigned char all[256], *text;
  for (int c = 0; c < 256; c++) all[c] = (unsigned char)c;
  uint32_t start = ig_regex_start(r), s = start;
  long len = shortest_accepted(r, start, all, 256, &text);
  if (len < 0) abort(); /* the start state is live: some text is accepted */
  if (utf8_state(text, (size_t)len) != 2) abort();
  for (long i = 0; i < len; i++) {
    int32_t t = ig_regex_step(r, s, text[i]);
    if (t < 0) abort();
    s = (uint32_t)t;
  }
  if (!ig_regex_accepting(r, s)) abort();
  free(text);
}

/* ig_regex_fold at L = 2: every representative is the smallest of its class and agrees with its states on every
 * text of at most 2 bytes taken from the input's text (and on acceptance). */
static void check_fold(const ig_regex *r, const uint8_t *t, size_t n) {
  uint32_t ns = ig_regex_n_states(r);
  if (ns > FULL_CHECK_STATES) return;
  uint32_t *rep = malloc(ns * sizeof *rep);
  uint64_t budget = 1u << 26;
  if (!rep || ig_regex_fold(r, 2, &budget, rep)) {
    free(rep);
    return;
  }
  size_t m = n < 8 ? n : 8;
  for (uint32_t s = 0; s < ns; s++) {
    uint32_t q = rep[s];
    if (q > s || rep[q] != q || ig_regex_accepting(r, s) != ig_regex_accepting(r, q)) abort();
    for (size_t i = 0; i < m; i++) {
      int32_t a = ig_regex_step(r, s, t[i]), b = ig_regex_step(r, q, t[i]);
      if ((a < 0) != (b < 0)) abort();
      if (a < 0) continue;
      if (ig_regex_accepting(r, (uint32_t)a) != ig_regex_accepting(r, (uint32_t)b)) abort();
      for (size_t j = 0; j < m; j++) {
        int32_t a2 = ig_regex_step(r, (uint32_t)a, t[j]), b2 = ig_regex_step(r, (uint32_t)b, t[j]);
        if ((a2 < 0) != (b2 < 0) || (a2 >= 0 && ig_regex_accepting(r, (uint32_t)a2) != ig_regex_accepting(r, (uint32_t)b2)))
          abort();
      }
    }
  }
  free(rep);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const uint8_t *nul = memchr(data, 0, size);
  size_t pat_len = nul ? (size_t)(nul - data) : size;
  const uint8_t *text = nul ? nul + 1 : data + size;
  size_t text_len = nul ? size - pat_len - 1 : 0;
  ig_regex *r = (ig_regex *)1;
  char err[256];
  if (ig_regex_compile((const char *)data, pat_len, &r, err, sizeof err)) {
    if (r || !err[0] || strchr(err, '\n')) abort();
    return 0;
  }
  uint32_t n = ig_regex_n_states(r);
  if (!n || n > IG_REGEX_MAX_STATES || ig_regex_start(r) >= n) abort();
  if (n <= FULL_CHECK_STATES) check_whole(r);
  check_shortest(r);
  walk_text(r, text, text_len);
  walk_text(r, data, pat_len);
  check_fold(r, text, text_len);
  ig_regex_free(r);
  /* the same pattern over a byte filter (a JSON string's bytes, as schema patterns use it): a sound automaton whose
   * filtered bytes step nowhere, or a one-line refusal */
  if (pat_len % 2) {
    uint8_t ok[256];
    for (int b = 0; b < 256; b++) ok[b] = b >= 0x20 || b == 8 || b == 9 || b == 10 || b == 12 || b == 13;
    r = NULL;
    if (ig_regex_compile_max((const char *)data, pat_len, 8192, ok, &r, err, sizeof err)) {
      if (r || !err[0] || strchr(err, '\n')) abort();
      return 0;
    }
    if (ig_regex_n_states(r) > 8192) abort();
    if (ig_regex_n_states(r) <= FULL_CHECK_STATES) check_whole(r);
    for (uint32_t s = 0; s < ig_regex_n_states(r); s++)
      for (int b = 0; b < 0x20; b++)
        if (!ok[b] && ig_regex_step(r, s, (unsigned char)b) != -1) abort();
    ig_regex_free(r);
  }
  return 0;
}
