/* tests/engine/test_regex: regex-constrained generation's DFA (engine/regex.h). Random patterns over a small
 * alphabet against glibc's POSIX regex (an independent oracle: "^(" pattern ")$", REG_EXTENDED) on every short
 * string and random longer ones, with liveness both ways (a state the DFA keeps has an extension the oracle
 * accepts; a byte the DFA refuses leaves no short extension the oracle accepts); then UTF-8 (code point ranges
 * checked exhaustively, invalid and overlong forms refused), hand-written syntax cases, every refused construct
 * and the limits. Every compiled DFA is checked whole: every reachable state is live. */
#include "engine/regex.h"
#include "util/str.h"
#include "regex_common.h"
#include "test.h"
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

static ig_regex *compile_ok_(const char *pat, size_t len, int line) {
  ig_regex *r = NULL;
  char err[256] = "";
  int rc = ig_regex_compile(pat, len, &r, err, sizeof err);
  CHECK_MSG(rc == 0 && r, "line %d: compiling \"%s\" failed: %s", line, pat, err);
  if (r) CHECK_MSG(dfa_sound(r), "line %d: \"%s\": a dead or bad state", line, pat);
  return r;
}
#define compile_ok(pat) compile_ok_((pat), strlen(pat), __LINE__)

/* -1: refused at byte i (returned as -(i + 2)); 1 / 0: accepted or not at the end. */
static int walk(const ig_regex *r, const void *text, size_t n) {
  const unsigned char *p = text;
  uint32_t s = ig_regex_start(r);
  for (size_t i = 0; i < n; i++) {
    int32_t t = ig_regex_step(r, s, p[i]);
    if (t < 0) return -(int)i - 2;
    s = (uint32_t)t;
  }
  return ig_regex_accepting(r, s);
}
static int matches(const ig_regex *r, const void *text, size_t n) { return walk(r, text, n) == 1; }

static void expect_match_(const char *pat, const char *const *yes, const char *const *no, int line) {
  ig_regex *r = compile_ok_(pat, strlen(pat), line);
  if (!r) return;
  for (; yes && *yes; yes++) CHECK_MSG(matches(r, *yes, strlen(*yes)), "line %d: \"%s\" should match \"%s\"", line, pat, *yes);
  for (; no && *no; no++) CHECK_MSG(!matches(r, *no, strlen(*no)), "line %d: \"%s\" should not match \"%s\"", line, pat, *no);
  ig_regex_free(r);
}
#define L(...) ((const char *const[]){__VA_ARGS__, NULL})
#define MATCH(pat, yes, no) expect_match_((pat), (yes), (no), __LINE__)
#define NONE NULL

static void expect_error_(const char *pat, size_t len, const char *want, int line) {
  ig_regex *r = (ig_regex *)1;
  char err[256] = "";
  int rc = ig_regex_compile(pat, len, &r, err, sizeof err);
  CHECK_MSG(rc == -1 && r == NULL, "line %d: \"%.60s\" compiled", line, pat);
  CHECK_MSG(err[0] && !strchr(err, '\n'), "line %d: \"%.60s\": empty or multi-line message", line, pat);
  CHECK_MSG(strstr(err, want) != NULL, "line %d: \"%.60s\": message \"%s\" lacks \"%s\"", line, pat, err, want);
  if (rc == 0) ig_regex_free(r);
}
#define ERR(pat, want) expect_error_((pat), strlen(pat), (want), __LINE__)

/* ---- against POSIX regex --------------------------------------------------------------------------------- */

typedef struct pbuf {
  char ours[512], posix[512];
  size_t n, m;
} pbuf;

static void both(pbuf *b, const char *ours, const char *posix) {
  size_t k = strlen(ours), j = strlen(posix);
  if (b->n + k < sizeof b->ours) memcpy(b->ours + b->n, ours, k), b->n += k, b->ours[b->n] = 0;
  if (b->m + j < sizeof b->posix) memcpy(b->posix + b->m, posix, j), b->m += j, b->posix[b->m] = 0;
}
static void same(pbuf *b, const char *s) { both(b, s, s); }

static const char *const ATOMS[] = {"a", "b", "c", ".", "[ab]", "[^a]", "[a-c]", "[^bc]", "[ac]"};

static void gen_alt(uint64_t *r, pbuf *b, int depth);

static void gen_piece(uint64_t *r, pbuf *b, int depth) {
  if (depth < 3 && rnd(r, 4) == 0) {
    int named = rnd(r, 4) == 0;
    both(b, named ? "(?P<g>" : rnd(r, 2) ? "(?:" : "(", "(");
    gen_alt(r, b, depth + 1);
    same(b, ")");
  } else same(b, ATOMS[rnd(r, sizeof ATOMS / sizeof *ATOMS)]);
  if (rnd(r, 3)) return;
  char q[32], qp[32];
  unsigned lo = rnd(r, 2), hi = lo + rnd(r, 3);
  switch (rnd(r, 7)) {
  case 0: strcpy(q, "*"); break;
  case 1: strcpy(q, "+"); break;
  case 2: strcpy(q, "?"); break;
  case 3: snprintf(q, sizeof q, "{%u}", lo); break;
  case 4: snprintf(q, sizeof q, "{%u,}", lo); break;
  case 5: snprintf(q, sizeof q, "{%u,%u}", lo, hi); break;
  default:
    snprintf(q, sizeof q, "{,%u}", hi);
    snprintf(qp, sizeof qp, "{0,%u}", hi);
    both(b, q, qp);
    if (rnd(r, 3) == 0) both(b, "?", ""); /* lazy: the same language */
    return;
  }
  same(b, q);
  if (rnd(r, 3) == 0) both(b, "?", "");
}

static void gen_alt(uint64_t *r, pbuf *b, int depth) {
  unsigned alts = rnd(r, 4) ? 1 : 2 + rnd(r, 2);
  for (unsigned a = 0; a < alts; a++) {
    if (a) same(b, "|");
    if (!depth && rnd(r, 8) == 0) both(b, "^", "");
    unsigned pieces = 1 + rnd(r, 3);
    for (unsigned i = 0; i < pieces; i++) gen_piece(r, b, depth);
    if (!depth && rnd(r, 8) == 0) both(b, "$", "");
  }
}

static const char ALPHA[] = "abcz"; /* every set the atoms use is a union of {a} {b} {c} and the rest ({z}) */

static int posix_match(const regex_t *re, const char *s, size_t n) {
  char t[64];
  memcpy(t, s, n), t[n] = 0;
  return regexec(re, t, 0, NULL, 0) == 0;
}

/* The shortest extension (over ALPHA) that the DFA accepts from state s, into w; -1 when none or longer than cap. */
static int witness(const ig_regex *r, uint32_t s, char *w, size_t cap) {
  unsigned char *t;
  long len = shortest_accepted(r, s, (const unsigned char *)ALPHA, (int)strlen(ALPHA), &t);
  if (len >= 0 && (size_t)len < cap) memcpy(w, t, (size_t)len);
  free(t);
  return len >= 0 && (size_t)len < cap ? (int)len : -1;
}

/* Any extension of s[0..n) by up to `more` bytes of ALPHA that the oracle accepts. */
static int posix_extends(const regex_t *re, char *s, size_t n, int more) {
  if (posix_match(re, s, n)) return 1;
  if (!more) return 0;
  for (int i = 0; ALPHA[i]; i++) {
    s[n] = ALPHA[i];
    if (posix_extends(re, s, n + 1, more - 1)) return 1;
  }
  return 0;
}

static void check_string(const ig_regex *r, const regex_t *re, const pbuf *b, const char *s, size_t n, int exhaustive) {
  int w = walk(r, s, n);
  int want = posix_match(re, s, n);
  CHECK_MSG((w == 1) == want, "\"%s\" (posix \"%s\") on \"%.*s\": ours %d, posix %d", b->ours, b->posix, (int)n, s,
            w, want);
  char t[64];
  memcpy(t, s, n);
  if (w >= 0) { /* the state is live: its shortest extension is accepted by the oracle */
    uint32_t st = ig_regex_start(r);
    for (size_t i = 0; i < n; i++) st = (uint32_t)ig_regex_step(r, st, (unsigned char)s[i]);
    int k = witness(r, st, t + n, sizeof t - n - 1);
    CHECK_MSG(k >= 0 && posix_match(re, t, n + (size_t)k), "\"%s\" on \"%.*s\": no accepted extension", b->ours,
              (int)n, s);
  } else if (exhaustive && (size_t)(-w - 2) == n - 1) { /* refused at the last byte: no short extension */
    CHECK_MSG(!posix_extends(re, t, n, 2), "\"%s\": \"%.*s\" refused but posix extends it", b->ours, (int)n, s);
  }
}

static void test_oracle(void) {
  uint64_t seed = 0x9E3779B97F4A7C15ull;
  int patterns = 0, blown = 0;
  for (int it = 0; it < 1500; it++) {
    pbuf b = {{0}, {0}, 0, 0};
    gen_alt(&seed, &b, 0);
    char full[600];
    snprintf(full, sizeof full, "^(%s)$", b.posix);
    regex_t re;
    if (regcomp(&re, full, REG_EXTENDED | REG_NOSUB)) {
      fprintf(stderr, "posix refused %s (skipped)\n", full);
      continue;
    }
    ig_regex *r = NULL;
    char err[256];
    if (ig_regex_compile(b.ours, b.n, &r, err, sizeof err)) { /* only an automaton too big is fine */
      CHECK_MSG(strstr(err, "automaton states") != NULL, "\"%s\": %s", b.ours, err);
      blown++;
      regfree(&re);
      continue;
    }
    CHECK_MSG(dfa_sound(r), "\"%s\": a dead or bad state", b.ours);
    patterns++;
    char s[16];
    /* every string of length 0..3 over ALPHA */
    for (size_t n = 0; n <= 3; n++) {
      unsigned total = 1;
      for (size_t i = 0; i < n; i++) total *= 4;
      for (unsigned x = 0; x < total; x++) {
        unsigned y = x;
        for (size_t i = 0; i < n; i++) s[i] = ALPHA[y % 4], y /= 4;
        check_string(r, &re, &b, s, n, 1);
      }
    }
    for (int k = 0; k < 12; k++) { /* random ones of 4..8 */
      size_t n = 4 + rnd(&seed, 5);
      for (size_t i = 0; i < n; i++) s[i] = ALPHA[rnd(&seed, 4)];
      check_string(r, &re, &b, s, n, 0);
    }
    ig_regex_free(r);
    regfree(&re);
  }
  CHECK_MSG(patterns > 1450, "only %d patterns compared (%d too big)", patterns, blown);
  if (getenv("REGEX_TEST_TIMES")) fprintf(stderr, "%d patterns compared, %d too big\n", patterns, blown);
}

/* ---- UTF-8 ----------------------------------------------------------------------------------------------- */

static int enc(uint32_t cp, unsigned char *b) { return ig_utf8_encode(cp, (char *)b); }

/* One valid code point exactly (the RFC 3629 table, written out). */
static int one_cp(const unsigned char *b, size_t n) {
  if (n == 1) return b[0] < 0x80;
  int c1 = n > 1 && b[1] >= 0x80 && b[1] <= 0xBF, c2 = n > 2 && b[2] >= 0x80 && b[2] <= 0xBF;
  int c3 = n > 3 && b[3] >= 0x80 && b[3] <= 0xBF;
  if (n == 2) return b[0] >= 0xC2 && b[0] <= 0xDF && c1;
  if (n == 3) {
    if (!c2) return 0;
    if (b[0] == 0xE0) return b[1] >= 0xA0 && b[1] <= 0xBF;
    if (b[0] == 0xED) return b[1] >= 0x80 && b[1] <= 0x9F;
    return b[0] >= 0xE1 && b[0] <= 0xEF && c1;
  }
  if (n == 4) {
    if (!c2 || !c3) return 0;
    if (b[0] == 0xF0) return b[1] >= 0x90 && b[1] <= 0xBF;
    if (b[0] == 0xF4) return b[1] >= 0x80 && b[1] <= 0x8F;
    return b[0] >= 0xF1 && b[0] <= 0xF3 && c1;
  }
  return 0;
}

/* "." and "[^\n]"-like patterns against the byte-level validity table, on byte strings of length 1..4. */
static void test_utf8_bytes(void) {
  ig_regex *dot = compile_ok("."), *neg = compile_ok("[^a]");
  if (!dot || !neg) return;
  unsigned char b[4];
  long bad = 0;
  for (unsigned x = 0; x < 256; x++) {
    b[0] = (unsigned char)x;
    bad += matches(dot, b, 1) != (one_cp(b, 1) && x != '\n');
    bad += matches(neg, b, 1) != (one_cp(b, 1) && x != 'a');
    for (unsigned y = 0; y < 256; y++) {
      b[1] = (unsigned char)y;
      bad += matches(dot, b, 2) != one_cp(b, 2);
      if (x < 0xE0 || x > 0xF4) continue;
      for (unsigned z = 0; z < 256; z++) {
        b[2] = (unsigned char)z;
        bad += matches(neg, b, 3) != one_cp(b, 3);
        if (x < 0xF0) continue;
        static const unsigned char LAST[] = {0x00, 0x7F, 0x80, 0x9F, 0xBF, 0xC0, 0xFF};
        if (z != 0x7F && z != 0x80 && z != 0xBF && z != 0xC0) continue;
        for (size_t k = 0; k < sizeof LAST; k++) {
          b[3] = LAST[k];
          bad += matches(dot, b, 4) != one_cp(b, 4);
        }
      }
    }
  }
  CHECK_MSG(bad == 0, "%ld byte strings judged wrongly", bad);
  /* the named ones */
  CHECK(walk(dot, "\xC0\x80", 2) == -2); /* overlong: refused at its first byte */
  CHECK(walk(dot, "\xC1\xBF", 2) == -2);
  CHECK(walk(dot, "\xED\xA0\x80", 3) == -3); /* a surrogate: refused at its second byte */
  CHECK(walk(dot, "\xE0\x80\x80", 3) == -3); /* overlong */
  CHECK(walk(dot, "\xF4\x90\x80\x80", 4) == -3); /* past U+10FFFF */
  CHECK(walk(dot, "\xF5\x80\x80\x80", 4) == -2);
  CHECK(walk(dot, "\xFF", 1) == -2);
  CHECK(walk(dot, "\x80", 1) == -2);
  CHECK(walk(dot, "\xE2\x82", 2) == 0); /* a prefix: alive, not accepted */
  ig_regex_free(dot), ig_regex_free(neg);
}

/* 1 when r judges code point cp wrongly (r being [lo-hi], or [^lo-hi] when negate). */
static int judge(const ig_regex *r, uint32_t cp, uint32_t lo, uint32_t hi, int negate) {
  if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  unsigned char b[4];
  int in = cp >= lo && cp <= hi;
  return matches(r, b, (size_t)enc(cp, b)) != (in != negate);
}

/* Code point ranges (classes, negated, escapes): every code point against the range, through its UTF-8. */
static void test_utf8_ranges(void) {
  static const uint32_t R[][2] = {{0x80, 0x10FFFF}, {0x7F, 0x800}, {0xE9, 0xEB},       {0x7FF, 0x10000},
                                  {0xD7FF, 0xE000}, {0x1234, 0x5678}, {0x10000, 0x10FFFF}, {0xFFF, 0x1000},
                                  {0x3FFFF, 0x40000}, {0x10FFFE, 0x10FFFF}, {0, 0x10FFFF}, {0x41, 0x41}};
  for (size_t i = 0; i < sizeof R / sizeof *R; i++) {
    for (int negate = 0; negate < 2; negate++) {
      char pat[64];
      snprintf(pat, sizeof pat, "[%s\\U%08X-\\U%08X]", negate ? "^" : "", (unsigned)R[i][0], (unsigned)R[i][1]);
      ig_regex *r = NULL;
      char err[256];
      int rc = ig_regex_compile(pat, strlen(pat), &r, err, sizeof err);
      if (negate && R[i][0] == 0 && R[i][1] == 0x10FFFF) {
        CHECK_MSG(rc == -1 && strstr(err, "matches nothing"), "%s: %s", pat, err);
        continue;
      }
      CHECK_MSG(rc == 0, "%s: %s", pat, err);
      if (rc) continue;
      CHECK(dfa_sound(r));
      long bad = 0;
      /* every code point for a few, a stride for the rest; around the ends and the UTF-8 lengths always */
      uint32_t stride = i < 2 ? 1 : 13;
      unsigned char b[4];
      for (uint32_t cp = 0; cp <= 0x10FFFF; cp += stride) bad += judge(r, cp, R[i][0], R[i][1], negate);
      const uint32_t edges[] = {R[i][0], R[i][1], 0x7F, 0x80, 0x7FF, 0x800, 0xFFFF, 0x10000, 0xD7FF, 0xE000, 0x10FFFF};
      for (size_t e = 0; e < sizeof edges / sizeof *edges; e++)
        for (uint32_t c = edges[e] < 3 ? 0 : edges[e] - 3; c <= edges[e] + 3; c++) bad += judge(r, c, R[i][0], R[i][1], negate);
      for (uint32_t c = 0xD800; c <= 0xDFFF; c += 0x55) /* surrogates: never */
        b[0] = (unsigned char)(0xE0 | c >> 12), b[1] = (unsigned char)(0x80 | (c >> 6 & 63)),
        b[2] = (unsigned char)(0x80 | (c & 63)), bad += matches(r, b, 3);
      CHECK_MSG(bad == 0, "%s: %ld code points judged wrongly", pat, bad);
      ig_regex_free(r);
    }
  }
  /* literals and named sets */
  MATCH(".", L("a", "\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\x98\x80", "\r"), L("", "\n", "ab", "\xC3\xA9\xC3\xA9"));
  MATCH("[^a]", L("\xC3\xA9", "\n", "\xF0\x9F\x98\x80", "b"), L("a", "", "bb"));
  MATCH("[é-ë]", L("é", "ê", "ë"), L("è", "ì", "e"));
  MATCH("[é-ë]+x", L("éêëx", "ëx"), L("x", "èx"));
  MATCH("\\u00e9", L("é"), L("e", "\\u00e9"));
  MATCH("caf\\u00E9|\\U0001F600", L("café", "😀"), L("cafe", "caf"));
  MATCH("\\x41\\x7e", L("A~"), NONE);
  MATCH("[\\u00e0-\\u00ff]+", L("àéÿ"), L("a", "Ā"));
  MATCH("[^\\x00-\\x7F]", L("é", "€"), L("a", "\x7F"));
  MATCH("日本語?", L("日本", "日本語"), L("日", "日本語語"));
  MATCH("[日本]+", L("日本日"), L("語"));
  MATCH("\\é", L("é"), NONE);
  MATCH("\\D\\W\\S", L("ééé", "a.x"), L("5ab", "a_x", "x. "));
  MATCH("[\\D]", L("é", "a"), L("5"));
  MATCH("[^\\d]", L("é", "a"), L("5"));
  MATCH("[\\W\\d]", L("é", "5", "-"), L("a", "_"));
  MATCH("\\w+", L("abc_09XYZ"), L("é", "a-b", ""));
  MATCH("\\s", L(" ", "\t", "\n", "\r", "\f", "\v"), L("a", "\xC2\xA0"));
  MATCH("\\d{4}", L("2024"), L("202", "２０２４"));
}

/* ---- syntax ---------------------------------------------------------------------------------------------- */

static void test_syntax(void) {
  /* quantifiers */
  MATCH("a{3}", L("aaa"), L("aa", "aaaa", ""));
  MATCH("a{2,}", L("aa", "aaaaaaa"), L("a", ""));
  MATCH("a{,2}", L("", "a", "aa"), L("aaa"));
  MATCH("a{1,3}", L("a", "aa", "aaa"), L("", "aaaa"));
  MATCH("a{,}b", L("b", "aaab"), L("a"));
  MATCH("a{0}", L(""), L("a"));
  MATCH("ab{0}c", L("ac"), L("abc"));
  MATCH("(ab){0,0}c", L("c"), L("abc"));
  MATCH("a{0,1}b{1,1}", L("b", "ab"), L("a", "aab"));
  MATCH("(a|bc){2,3}", L("aa", "abc", "bcbcbc", "aabc"), L("a", "bcbcbcbc", "abca a"));
  MATCH("(a*)*b", L("b", "aab"), L("a"));
  MATCH("(a?){3}b", L("b", "aaab"), L("aaaab"));
  MATCH("(|a)+b", L("b", "aab"), L("ba"));
  MATCH("[a-z]{1,1000}", L("x", "hello"), L("", "Hello"));
  /* lazy: the same language */
  MATCH("a*?b", L("b", "aab"), L("a"));
  MATCH("a+?", L("a", "aa"), L(""));
  MATCH("a??b", L("b", "ab"), L("aab"));
  MATCH("a{1,3}?", L("a", "aaa"), L("aaaa"));
  MATCH("a{2}?", L("aa"), L("a", "aaa"));
  MATCH("a{,2}?x", L("x", "aax"), L("aaax"));
  /* a '{' that starts no quantifier is a literal */
  MATCH("a{", L("a{"), L("a"));
  MATCH("{", L("{"), NONE);
  MATCH("a{1", L("a{1"), NONE);
  MATCH("a{x}", L("a{x}"), NONE);
  MATCH("x{}", L("x{}"), NONE);
  MATCH("a{1,2", L("a{1,2"), NONE);
  MATCH("a{ 1}", L("a{ 1}"), NONE);
  MATCH("a{1}{", L("a{"), NONE);
  MATCH("a*{", L("aa{", "{"), NONE);
  MATCH("}]", L("}]"), NONE);
  /* anchors at the ends */
  MATCH("^abc$", L("abc"), L("ab", "abcabc", "^abc$"));
  MATCH("^a|^b$|c$", L("a", "b", "c"), L("ab", ""));
  MATCH("^$", L(""), L("a"));
  MATCH("$", L(""), L("$"));
  MATCH("^", L(""), L("^"));
  /* groups */
  MATCH("(?P<year>\\d{4})-(?<m>\\d\\d)", L("2024-05"), L("2024-5"));
  MATCH("(?:ab)+", L("ab", "abab"), L("a", ""));
  MATCH("(?P<x_1>a)(?<\xC3\xA9>b)", L("ab"), NONE);
  MATCH("a(?#a comment)b", L("ab"), L("a(?#a comment)b"));
  MATCH("()", L(""), L("()"));
  MATCH("(a|)", L("", "a"), NONE);
  MATCH("a|", L("", "a"), NONE);
  MATCH("|", L(""), L("|"));
  MATCH("((((a))))", L("a"), NONE);
  /* escapes */
  MATCH("\\.\\*\\+\\?\\(\\)\\[\\]\\{\\}\\|\\^\\$\\\\\\/\\-\\ \\#\\&\\~", L(".*+?()[]{}|^$\\/- #&~"), NONE);
  MATCH("\\n\\t\\r\\f\\v\\a", L("\n\t\r\f\v\a"), NONE);
  {
    ig_regex *r = compile_ok("\\101\\0\\x00[\\0]\\07");
    if (r) {
      CHECK(matches(r, "A\0\0\0\a", 5));
      ig_regex_free(r);
    }
  }
  /* classes */
  MATCH("[]a]", L("]", "a"), L("b", "[]a]"));
  MATCH("[^]a]", L("b", "é"), L("]", "a"));
  MATCH("[a-]", L("a", "-"), L("b"));
  MATCH("[-a]", L("a", "-"), L("b"));
  MATCH("[a-c-e]", L("a", "b", "c", "-", "e"), L("d"));
  MATCH("[\\]]", L("]"), NONE);
  MATCH("[\\\\-]", L("\\", "-"), L("a"));
  MATCH("[\\b]", L("\b"), L("b"));
  MATCH("[\\d-]", L("5", "-"), L("a"));
  MATCH("[\\w.]+", L("a.b_c"), L("a b"));
  MATCH("[[]", L("["), NONE);
  MATCH("[.*+?(){}|^$]", L(".", "*", "+", "?", "(", ")", "{", "}", "|", "^", "$"), L("a"));
  MATCH("[\\1]", L("\x01"), NONE);
  MATCH("[\\x41-\\x43]", L("A", "B", "C"), L("D"));
  /* realistic ones */
  MATCH("\\d{3}-\\d{3}-\\d{4}", L("555-123-4567"), L("555-123-456", "5551234567"));
  MATCH("(true|false)", L("true", "false"), L("tru", "truefalse"));
  MATCH("[A-Z][a-z]+ (?:[A-Z][a-z]+ )*[A-Z][a-z]+", L("John Smith", "Mary Ann Lee"), L("john smith"));
  MATCH("\\{\"name\": \"[a-z]+\"\\}", L("{\"name\": \"bob\"}"), NONE);
  MATCH("(a|b)*c", L("c", "ababc"), L("ab", "abca"));
  MATCH("(?:[0-9]{1,3}\\.){3}[0-9]{1,3}", L("192.168.0.1"), L("192.168.0", "1.2.3.4.5"));
  MATCH("[a-z0-9._%+-]+@[a-z0-9.-]+\\.[a-z]{2,}", L("a.b@c.io"), L("a@b", "@b.io"));

  /* a state refuses exactly what cannot lead to a match */
  ig_regex *r = compile_ok("ab|ac");
  if (r) {
    uint32_t s = ig_regex_start(r);
    CHECK(ig_regex_step(r, s, 'b') == -1);
    int32_t a = ig_regex_step(r, s, 'a');
    CHECK(a >= 0 && !ig_regex_accepting(r, (uint32_t)a));
    CHECK(a >= 0 && ig_regex_step(r, (uint32_t)a, 'b') >= 0 && ig_regex_step(r, (uint32_t)a, 'a') == -1);
    CHECK(ig_regex_step(r, ig_regex_n_states(r), 'a') == -1); /* out of range: refused */
    CHECK(!ig_regex_accepting(r, ig_regex_n_states(r)));
    ig_regex_free(r);
  }
  /* the last byte of a pattern can be a prefix-only dead end: "a[^\x00-\U0010FFFF]|b" keeps only b */
  r = compile_ok("a[^\\x00-\\U0010FFFF]|b");
  if (r) {
    CHECK(walk(r, "a", 1) == -2 && matches(r, "b", 1));
    ig_regex_free(r);
  }
  /* counted repetitions stay small: one state per count */
  r = compile_ok("[a-z]{1,1000}");
  if (r) {
    CHECK_MSG(ig_regex_n_states(r) == 1001, "%u states", ig_regex_n_states(r));
    ig_regex_free(r);
  }
  r = compile_ok(".{100}");
  if (r) {
    CHECK_MSG(ig_regex_n_states(r) < 1000, "%u states", ig_regex_n_states(r));
    ig_regex_free(r);
  }
  ig_regex_free(NULL);
}

/* ---- errors and limits ----------------------------------------------------------------------------------- */

static void test_errors(void) {
  ERR("(a)\\1", "at offset 3: backreferences are not supported");
  ERR("\\1", "backreferences");
  ERR("\\8", "backreferences");
  ERR("(?P<n>a)(?P=n)", "at offset 8: backreferences");
  ERR("abc(?=x)", "at offset 3: lookahead");
  ERR("(?!x)", "lookahead");
  ERR("(?<=a)b", "lookbehind");
  ERR("(?<!a)b", "lookbehind");
  ERR("(?i)abc", "inline flags");
  ERR("(?i:abc)", "inline flags");
  ERR("(?-i:abc)", "inline flags");
  ERR("(?s).", "inline flags");
  ERR("(?(1)a|b)", "conditionals");
  ERR("(?>a)", "atomic");
  ERR("(?Q)", "unknown extension ?Q");
  ERR("(?Px)", "unknown extension");
  ERR("(?", "end of pattern");
  ERR("a*+", "possessive");
  ERR("a++", "possessive");
  ERR("a{2}+", "possessive");
  ERR("\\bfoo", "\\b");
  ERR("a\\B", "\\B");
  ERR("\\Aa", "\\A");
  ERR("a\\Z", "\\Z");
  ERR("a\\z", "\\z");
  ERR("a^b", "at offset 1: '^'");
  ERR("(^a)", "'^'");
  ERR("a|b^", "'^'");
  ERR("a$b", "at offset 1: '$'");
  ERR("(a$)", "'$'");
  ERR("a$$", "'$'");
  ERR("*a", "at offset 0: nothing to repeat");
  ERR("a|*", "nothing to repeat");
  ERR("(*)", "nothing to repeat");
  ERR("{1}a", "nothing to repeat");
  ERR("^*", "nothing to repeat");
  ERR("a**", "at offset 2: multiple repeat");
  ERR("a{2}{3}", "multiple repeat");
  ERR("a*??", "multiple repeat");
  ERR("a?*", "multiple repeat");
  ERR("a(?#c)*", "comment");
  ERR("(a", "at offset 0: missing ), unterminated subpattern");
  ERR("((a)", "missing )");
  ERR("a)", "at offset 1: unbalanced parenthesis");
  ERR("[a", "unterminated character set");
  ERR("[", "unterminated character set");
  ERR("[]", "unterminated character set");
  ERR("[^]", "unterminated character set");
  ERR("[a-", "unterminated character set");
  ERR("\\q", "bad escape \\q");
  ERR("[\\q]", "bad escape \\q");
  ERR("\\", "bad escape");
  ERR("\\x4", "incomplete escape");
  ERR("\\xg0", "incomplete escape");
  ERR("\\u12", "incomplete escape");
  ERR("\\U0011000", "incomplete escape");
  ERR("\\U00110000", "past U+10FFFF");
  ERR("\\ud800", "surrogate");
  ERR("[\\udfff]", "surrogate");
  ERR("\\N{EM DASH}", "\\N");
  ERR("[z-a]", "bad character range");
  ERR("[a-\\d]", "bad character range");
  ERR("[\\w-z]", "bad character range");
  ERR("\\777", "octal");
  ERR("[\\8]", "bad escape");
  ERR("a{1001}", "above 1000");
  ERR("a{0,1001}", "above 1000");
  ERR("a{99999999999999999999}", "above 1000");
  ERR("a{2,1}", "min repeat greater than max repeat");
  ERR("(?P<1a>x)", "bad character in group name");
  ERR("(?P<>x)", "missing group name");
  ERR("(?<a", "unterminated name");
  ERR("(?P<a-b>x)", "bad character in group name");
  ERR("[^\\x00-\\U0010FFFF]", "the pattern matches nothing");
  ERR("[^\\s\\S]a|b[^\\d\\D]", "the pattern matches nothing");
  ERR("a(b[^\\w\\W])*[^\\x00-\\U0010FFFF]", "the pattern matches nothing");
  expect_error_("a\xff", 2, "at offset 1: the pattern is not valid UTF-8", __LINE__);
  expect_error_("\xC0\x80", 2, "not valid UTF-8", __LINE__);
  expect_error_("\xED\xA0\x80", 3, "not valid UTF-8", __LINE__);
  expect_error_("\xE2\x82", 2, "not valid UTF-8", __LINE__);
  /* a NUL byte in the pattern is a literal (the length is given) */
  ig_regex *r = NULL;
  char err[256];
  CHECK(ig_regex_compile("a\0b", 3, &r, err, sizeof err) == 0);
  if (r) {
    CHECK(matches(r, "a\0b", 3) && !matches(r, "a", 1));
    ig_regex_free(r);
  }
  /* no room for the message: still refused */
  r = (ig_regex *)1;
  CHECK(ig_regex_compile("(", 1, &r, NULL, 0) == -1 && r == NULL);
  char tiny[8];
  CHECK(ig_regex_compile("(?=a)", 5, &r, tiny, sizeof tiny) == -1 && strlen(tiny) == sizeof tiny - 1);
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

static void test_limits(void) {
  /* group nesting: 256 is fine, 257 is refused (and no deep recursion either way) */
  char *p = malloc(4096);
  if (!p) abort();
  for (int depth = 256; depth <= 257; depth++) {
    size_t n = 0;
    for (int i = 0; i < depth; i++) p[n++] = '(';
    p[n++] = 'a';
    for (int i = 0; i < depth; i++) p[n++] = ')';
    p[n] = 0;
    if (depth == 256) {
      ig_regex *r = compile_ok_(p, n, __LINE__);
      if (r) {
        CHECK(matches(r, "a", 1));
        ig_regex_free(r);
      }
    } else expect_error_(p, n, "at offset 256: groups nest deeper than 256", __LINE__);
  }
  free(p);
  /* a very deep one: refused at the limit, whatever follows */
  size_t big = 60000;
  p = malloc(big + 1);
  if (!p) abort();
  memset(p, '(', big), p[big] = 0;
  expect_error_(p, big, "nest deeper", __LINE__);
  p = realloc(p, IG_REGEX_MAX_PATTERN + 2);
  if (!p) abort();
  memset(p, '(', IG_REGEX_MAX_PATTERN + 1);
  expect_error_(p, IG_REGEX_MAX_PATTERN + 1, "longer than 65536 bytes", __LINE__);
  /* the longest pattern: fine */
  memset(p, 'a', IG_REGEX_MAX_PATTERN - 1), p[IG_REGEX_MAX_PATTERN - 1] = '$';
  ig_regex *r = compile_ok_(p, IG_REGEX_MAX_PATTERN, __LINE__);
  if (r) {
    CHECK(ig_regex_n_states(r) == IG_REGEX_MAX_STATES);
    ig_regex_free(r);
  }
  memset(p, 'a', IG_REGEX_MAX_PATTERN);
  expect_error_(p, IG_REGEX_MAX_PATTERN, "more than 65536 automaton states", __LINE__);
  /* an alternation of many branches */
  size_t n = 0;
  for (int i = 0; i < 5000; i++) n += (size_t)snprintf(p + n, big - n, "%sw%d", i ? "|" : "", i);
  r = compile_ok_(p, n, __LINE__);
  if (r) {
    CHECK(matches(r, "w4321", 5) && !matches(r, "w5000", 5));
    ig_regex_free(r);
  }
  free(p);
  /* repetition expanding past the NFA's limit: refused, quickly */
  ERR("(a{1000}){1000}", "too large");
  ERR("((a{1000}){1000}){1000}", "too large");
  ERR("(.{1000}){1000}", "too large");
  ERR("(\\W{1000}){10}", "too large");
  /* a DFA blow-up: refused with the message */
  double t0 = now();
  ERR("(a|b)*a(a|b){20}", "the pattern needs more than 65536 automaton states");
  ERR("(.*a.*){0,1}(.|\n)*a(a|b){40}", "more than 65536");
  double t1 = now();
  if (t1 - t0 > 5) fprintf(stderr, "note: the blow-up patterns took %.1f s\n", t1 - t0);
  /* big but fine */
  r = compile_ok("(a|b)*a(a|b){12}");
  if (r) {
    CHECK(ig_regex_n_states(r) == 8192);
    ig_regex_free(r);
  }
  r = compile_ok("[\\u0000-\\U0010FFFF]{0,1000}");
  if (r) {
    CHECK(matches(r, "\xF0\x9F\x98\x80", 4));
    ig_regex_free(r);
  }
}

#define TIMED(f) do { double t_ = now(); f(); if (getenv("REGEX_TEST_TIMES")) fprintf(stderr, "%s: %.2f s\n", #f, now() - t_); } while (0)
/* ig_regex_compile_max's byte filter: a filtered byte steps nowhere, even inside a class that also holds allowed
 * bytes, a state that reaches a match only through filtered bytes is gone, and no allowed text left is "matches
 * nothing"; the state cap is the one given. */
static void test_filter(void) {
  uint8_t ok[256];
  for (int b = 0; b < 256; b++) ok[b] = b >= 0x20 || b == '\n';
  ig_regex *r = NULL;
  char err[256] = "";
  const char *p1 = "a\x01|b|[\\x00-\\x7f]+c";
  CHECK_MSG(ig_regex_compile_max(p1, strlen(p1), 0, ok, &r, err, sizeof err) == 0, "%s", err);
  if (r) {
    CHECK_MSG(dfa_sound(r), "filtered automaton unsound");
    CHECK(walk(r, "b", 1) == 1);
    CHECK(walk(r, "Ac", 2) == 1);
    CHECK(walk(r, "A\nc", 3) == 1);
    CHECK(walk(r, "A\x05", 2) == -3);  /* refused at byte 1: filtered inside the class */
    uint32_t s = ig_regex_start(r);
    CHECK(ig_regex_step(r, s, 0x01) == -1);
    int32_t a = ig_regex_step(r, s, 'a'); /* 'a' still goes on through the class, not through \x01 */
    CHECK(a >= 0 && ig_regex_step(r, (uint32_t)a, 0x01) == -1 && ig_regex_step(r, (uint32_t)a, 'c') >= 0);
    ig_regex_free(r);
  }
  r = NULL;
  CHECK(ig_regex_compile_max("\x01+", 2, 0, ok, &r, err, sizeof err) == -1 && !r);
  CHECK_MSG(strstr(err, "matches nothing") != NULL, "%s", err);
  CHECK(ig_regex_compile_max("(a|b)*a(a|b){12}", 16, 4096, NULL, &r, err, sizeof err) == -1 && !r);
  CHECK_MSG(strstr(err, "more than 4096 automaton states") != NULL, "%s", err);
  CHECK(ig_regex_compile_max("(a|b)*a(a|b){10}", 16, 4096, NULL, &r, err, sizeof err) == 0 && r);
  ig_regex_free(r);
}

/* ---- folding states no short text tells apart ------------------------------------------------------------ */

/* 1 when states a and b agree on every string of length 1..L over ALPHA: both refuse it, or both take it and then
 * both accept or neither does (and a and b themselves both accept or neither). */
static int agree(const ig_regex *r, uint32_t a, uint32_t b, unsigned L) {
  if (ig_regex_accepting(r, a) != ig_regex_accepting(r, b)) return 0;
  if (L == 0) return 1;
  for (int i = 0; i < 4; i++) {
    int32_t x = ig_regex_step(r, a, (unsigned char)ALPHA[i]), y = ig_regex_step(r, b, (unsigned char)ALPHA[i]);
    if ((x < 0) != (y < 0)) return 0;
    if (x >= 0 && !agree(r, (uint32_t)x, (uint32_t)y, L - 1)) return 0;
  }
  return 1;
}

/* ig_regex_fold: states sharing a representative agree on every text of up to L bytes (checked over ALPHA for the
 * oracle's random patterns, L = 0..3); the representative is the smallest state of its class; a counted repeat
 * folds where no text of L bytes reaches its bounds. */
static void test_fold(void) {
  uint64_t seed = 0x5851F42D4C957F2Dull;
  long pairs = 0;
  for (int it = 0; it < 400; it++) {
    pbuf b = {{0}, {0}, 0, 0};
    gen_alt(&seed, &b, 0);
    ig_regex *r = NULL;
    char err[256];
    if (ig_regex_compile(b.ours, b.n, &r, err, sizeof err)) continue;
    uint32_t n = ig_regex_n_states(r), *rep = malloc(n * sizeof *rep);
    for (unsigned L = 0; L <= 3; L++) {
      uint64_t budget = 1u << 30;
      CHECK_EQ_INT(ig_regex_fold(r, L, &budget, rep), 0);
      for (uint32_t s = 0; s < n; s++) {
        CHECK_MSG(rep[s] <= s && rep[rep[s]] == rep[s], "\"%s\" L %u: state %u's representative %u", b.ours, L, s, rep[s]);
        if (rep[s] != s) {
          pairs++;
          CHECK_MSG(agree(r, s, rep[s], L), "\"%s\" L %u: states %u and %u told apart", b.ours, L, s, rep[s]);
        }
      }
    }
    free(rep);
    ig_regex_free(r);
  }
  CHECK_MSG(pairs > 1000, "only %ld folded pairs checked", pairs);
  /* [a-z]{1,40}: the start, lengths 1..35 (5 more letters always fit, and it matches), 36..40 apart: 7 classes */
  ig_regex *r = NULL;
  char err[256];
  CHECK_EQ_INT(ig_regex_compile("[a-z]{1,40}", 11, &r, err, sizeof err), 0);
  if (r) {
    uint32_t n = ig_regex_n_states(r), *rep = malloc(n * sizeof *rep), distinct = 0;
    uint64_t budget = 1u << 30, small = 10;
    CHECK_EQ_INT(ig_regex_fold(r, 5, &budget, rep), 0);
    CHECK(budget < (1u << 30)); /* what it visited came off the budget */
    for (uint32_t s = 0; s < n; s++) distinct += rep[s] == s;
    CHECK_MSG(distinct == 7, "[a-z]{1,40} at L 5: %u classes of %u states", distinct, n);
    CHECK_EQ_INT(ig_regex_fold(r, 5, &small, rep), -1); /* past the budget: refused, the identity */
    for (uint32_t s = 0; s < n; s++) CHECK(rep[s] == s);
    free(rep);
    ig_regex_free(r);
  }
}

int main(void) {
  TIMED(test_oracle);
  TIMED(test_utf8_bytes);
  TIMED(test_utf8_ranges);
  TIMED(test_syntax);
  TIMED(test_errors);
  TIMED(test_limits);
  TIMED(test_filter);
  TIMED(test_fold);
  TEST_DONE();
}
