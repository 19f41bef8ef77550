/* tests/engine/json_common.h: where strict JSON mode (engine/jsonmask) and jansson are meant to decide alike, for
 * the unit test (test_jsonmask.c) and the fuzz target (fuzz/fuzz_engine_jsonmask.c), which compare the two. */
#ifndef IG_TESTS_JSON_COMMON_H
#define IG_TESTS_JSON_COMMON_H
#include "engine/jsonmask.h"
#include <stddef.h>
#include <string.h>

static inline int is_ws_byte(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
static inline int is_hex_byte(char c) { return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f'); }

/* The longest indent after a gap's newline with d containers open: IG_JSON_INDENT_PER_LEVEL per container, at
 * most IG_JSON_MAX_INDENT. */
static inline size_t indent_max(size_t d) {
  size_t m = d * IG_JSON_INDENT_PER_LEVEL;
  return m < IG_JSON_MAX_INDENT ? m : IG_JSON_MAX_INDENT;
}

/* The whitespace rule, written plainly: a gap of whitespace g[0..n) outside strings, with d containers open, is
 * empty, one space, or one newline followed by at most indent_max(d) spaces and/or tabs. */
static inline int gap_shape_ok(const char *g, size_t n, size_t d) {
  if (n == 0 || (n == 1 && g[0] == ' ')) return 1;
  if (g[0] != '\n' || n - 1 > indent_max(d)) return 0;
  for (size_t i = 1; i < n; i++)
    if (g[i] != ' ' && g[i] != '\t') return 0;
  return 1;
}

/* 1 when every whitespace run outside strings (strings tracked by their quotes and escapes) has a gap's shape
 * for the containers open there ('{' and '[' before it, less '}' and ']', outside strings). Meant for text that
 * is JSON otherwise (where the string tracking is exact). */
static inline int gaps_ok(const char *s, size_t n) {
  int in_str = 0;
  long d = 0;
  for (size_t i = 0; i < n;) {
    char c = s[i];
    if (in_str) {
      if (c == '\\') i++;
      else if (c == '"') in_str = 0;
      i++;
      continue;
    }
    if (is_ws_byte(c)) {
      size_t j = i;
      while (j < n && is_ws_byte(s[j])) j++;
      if (!gap_shape_ok(s + i, j - i, d > 0 ? (size_t)d : 0)) return 0;
      i = j;
      continue;
    }
    d += (c == '{' || c == '[') - (c == '}' || c == ']');
    in_str = c == '"';
    i++;
  }
  return 1;
}

/* Containers open after the text s (JSON, or a prefix of it, NUL-terminated): '{' and '[' less '}' and ']',
 * outside strings. */
static inline size_t open_at(const char *s) {
  size_t d = 0;
  for (int in_str = 0; *s; s++) {
    if (in_str && *s == '\\' && s[1]) s++;
    else if (*s == '"') in_str = !in_str;
    else if (!in_str) d += (size_t)((*s == '{' || *s == '[') - (*s == '}' || *s == ']'));
  }
  return d;
}

/* Numbers jansson refuses as too big (digit runs of 16 or more, exponents of 3 or more digits): 0 when s has one
 * (conservatively, on the raw bytes), else 1. *opens: the '{' and '[' bytes in it. */
static inline int numbers_ok(const char *s, size_t n, size_t *opens) {
  size_t digits = 0;
  *opens = 0;
  for (size_t i = 0; i < n; i++) {
    digits = s[i] >= '0' && s[i] <= '9' ? digits + 1 : 0;
    *opens += s[i] == '{' || s[i] == '[';
    if (digits >= 16) return 0;
    if ((s[i] == 'e' || s[i] == 'E') && i + 1 < n) {
      size_t j = i + 1 + (s[i + 1] == '+' || s[i + 1] == '-'), d = 0;
      while (j < n && s[j] >= '0' && s[j] <= '9') j++, d++;
      if (d >= 3) return 0;
    }
  }
  return 1;
}

static inline int u_escape(const char *s, size_t n, size_t i, unsigned *v) {
  if (i + 5 >= n || s[i] != '\\' || s[i + 1] != 'u') return 0;
  *v = 0;
  for (int k = 2; k < 6; k++) {
    char c = s[i + k];
    if (!is_hex_byte(c)) return 0;
    *v = *v << 4 | (unsigned)(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
  }
  return 1;
}

/* Skipped, conservatively on the raw bytes: whitespace outside strings not of a gap's shape (gaps_ok) and
 * trailing whitespace (jansson takes any), a top level other than an object, \u0000 and unpaired surrogate
 * escapes (jansson refuses them, RFC 8259's grammar does not), a NUL byte anywhere (jansson 2.14 takes
 * {"a":true<NUL>}), numbers jansson refuses as too big (long digit runs, 3+ digit exponents) and nesting deeper
 * than ours (jansson allows more). */
static inline int common_ground(const char *s, size_t n) {
  size_t i = 0;
  while (i < n && is_ws_byte(s[i])) i++;
  if (i == n || s[i] != '{' || is_ws_byte(s[n - 1]) || memchr(s, 0, n)) return 0;
  size_t opens;
  if (!gaps_ok(s, n) || !numbers_ok(s, n, &opens) || opens > IG_JSON_MAX_DEPTH) return 0;
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

/* Whitespace gaps for the tests' tables: the allowed shapes (NL20: the longest indent allowed), and disallowed ones
 * with how many of their bytes come before the first refused one (given the indent allowed at the gap). */
#define NL20 "\n    \t               "
_Static_assert(sizeof NL20 - 2 == IG_JSON_MAX_INDENT, "NL20 is the longest gap");
static const char *const GAP_OK[] __attribute__((unused)) = {"", " ", "\n", "\n\t\t", "\n  \t ", NL20};
static const struct {
  const char *g;
  size_t good;
} GAP_BAD[] __attribute__((unused)) = {{"  ", 1},   {"\n\n", 1}, {" \n", 1},   {"\t", 0},   {"\r\n", 0},     {"\r", 0},
               {" \t", 1}, {"\n\r", 1}, {"\n \n", 2}, {"\t\n", 0}, {NL20 " ", 21}, {NL20 "\t", 21}};

#endif
