/* fuzz/fuzz_tok_encode: arbitrary bytes to ig_tok_encode (with and without special tokens and offsets),
 * arbitrary ids to ig_tok_decode and the streaming detokenizer, over a byte-level tokenizer (GPT-2), a
 * SentencePiece-style one (stories260K) and a WordPiece one. Checks: no crash, decode is valid UTF-8,
 * offsets lie within the input. Run: build-fuzz/fuzz/fuzz_tok_encode -max_total_time=60 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tok/tok.h"

static ig_tok *toks[3];

static void load(void) {
  static int done;
  if (done) return;
  done = 1;
  const char *dirs[3] = {IG_SOURCE_DIR "/tests/fixtures/tokenizers/gpt2", IG_SHARED_DIR "/models/stories260K",
                         IG_SOURCE_DIR "/tests/fixtures/tokenizers/bert"};
  char err[256];
  for (int i = 0; i < 3; i++)
    if (ig_tok_load(&toks[i], dirs[i], err, sizeof err)) fprintf(stderr, "fuzz_tok_encode: %s\n", err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  load();
  if (size < 1) return 0;
  ig_tok *t = toks[data[0] % 3];
  if (!t) return 0;
  int flags = data[0] >> 2;
  const char *text = (const char *)data + 1;
  size_t n = size - 1;
  ig_tok_enc e = {0};
  if (ig_tok_encode(t, text, n, flags & 1, 1, &e) == 0) {
    for (size_t i = 0; i < e.n; i++)
      if (e.offsets[2 * i] > e.offsets[2 * i + 1] || e.offsets[2 * i + 1] > n + 3 * n) __builtin_trap();
    size_t dl;
    char *d = ig_tok_decode(t, e.ids, e.n, flags & 2, &dl);
    if (!d || !ig_utf8_valid(d, dl)) __builtin_trap();
    free(d);
  }
  ig_tok_enc_free(&e);
  /* the same bytes as ids */
  size_t ni = n / 4;
  int32_t *ids = malloc((ni + 1) * sizeof *ids);
  for (size_t i = 0; i < ni; i++) {
    uint32_t v;
    memcpy(&v, text + 4 * i, 4);
    ids[i] = (int32_t)(v % (uint32_t)(ig_tok_vocab_size(t) + 8)) - 4; /* some negative and out-of-range ids */
  }
  size_t dl;
  char *d = ig_tok_decode(t, ids, ni, flags & 2, &dl);
  if (!d || !ig_utf8_valid(d, dl)) __builtin_trap();
  free(d);
  ig_tok_detok dt;
  ig_tok_detok_init(&dt, t, flags & 2);
  ig_str out;
  ig_str_init(&out);
  for (size_t i = 0; i < ni; i++) {
    size_t before = out.len;
    ig_tok_detok_push(&dt, ids[i], &out);
    if (out.len > before && !ig_utf8_valid(out.p + before, out.len - before)) __builtin_trap();
  }
  ig_tok_detok_flush(&dt, &out);
  ig_str_free(&out);
  ig_tok_detok_free(&dt);
  free(ids);
  return 0;
}
