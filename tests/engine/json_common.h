/* tests/engine/json_common.h: where strict JSON mode (engine/jsonmask) and jansson are meant to decide alike, for
 * the unit test (test_jsonmask.c) and the fuzz target (fuzz/fuzz_engine_jsonmask.c), which compare the two. */
#ifndef IG_TESTS_JSON_COMMON_H
#define IG_TESTS_JSON_COMMON_H
#include "engine/jsonmask.h"
#include <stddef.h>
#include <string.h>

static int is_ws_byte(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
static int is_hex_byte(char c) { return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f'); }

static int u_escape(const char *s, size_t n, size_t i, unsigned *v) {
  if (i + 5 >= n || s[i] != '\\' || s[i + 1] != 'u') return 0;
  *v = 0;
  for (int k = 2; k < 6; k++) {
    char c = s[i + k];
    if (!is_hex_byte(c)) return 0;
    *v = *v << 4 | (unsigned)(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
  }
  return 1;
}

/* Skipped, conservatively on the raw bytes: whitespace runs over the cap and trailing whitespace (jansson
 * takes any), a top level other than an object, \u0000 and unpaired surrogate escapes (jansson refuses them,
 * RFC 8259's grammar does not), a NUL byte anywhere (jansson 2.14 takes {"a":true<NUL>}), numbers jansson
 * refuses as too big (long digit runs, 3+ digit exponents) and nesting deeper than ours (jansson allows more). */
static int common_ground(const char *s, size_t n) {
  size_t i = 0;
  while (i < n && is_ws_byte(s[i])) i++;
  if (i == n || s[i] != '{' || is_ws_byte(s[n - 1]) || memchr(s, 0, n)) return 0;
  size_t run = 0, digits = 0, opens = 0;
  for (i = 0; i < n; i++) {
    run = is_ws_byte(s[i]) ? run + 1 : 0;
    digits = s[i] >= '0' && s[i] <= '9' ? digits + 1 : 0;
    opens += s[i] == '{' || s[i] == '[';
    if (run > IG_JSON_MAX_WS || digits >= 16) return 0;
    if ((s[i] == 'e' || s[i] == 'E') && i + 1 < n) {
      size_t j = i + 1 + (s[i + 1] == '+' || s[i + 1] == '-'), d = 0;
      while (j < n && s[j] >= '0' && s[j] <= '9') j++, d++;
      if (d >= 3) return 0;
    }
  }
  if (opens > IG_JSON_MAX_DEPTH) return 0;
  for (i = 0; i < n; i++) {
    unsigned v, w;
    if (s[i] != '\\') continue;
    if (!u_escape(s, n, i, &v)) {
      i++;
      continue;
    }
    if (v == 0 || (v >= 0xDC00 && v <= 0xDFFF)) return 0;
    if (v >= 0xD800 && v <= 0xDBFF) {
      if (!u_escape(s, n, i + 6, &w) || w < 0xDC00 || w > 0xDFFF) return 0;
      i += 6;
    }
    i += 5;
  }
  return 1;
}

#endif
