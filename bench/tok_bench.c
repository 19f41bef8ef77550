/* bench/tok_bench: tokenizer speed of ig_tok, single thread. Loads DIR's tokenizer (timed, best of 5),
 * then encodes TEXT_FILE in chunks of about CHUNK bytes (split at newlines) for a few rounds and prints the
 * best MB/s (per CPU second of this process, so a busy machine skews it less), with the token count so it can be checked against the HF run (bench/tok_bench_hf.js).
 * Usage: tok_bench DIR TEXT_FILE [CHUNK=16384] [ROUNDS=5] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tok/tok.h"
#include "util/file.h"

/* CPU time of this process: on a shared machine it is what the work costs, whatever else runs. */
static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}
static double wall(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: tok_bench DIR TEXT_FILE [CHUNK] [ROUNDS]\n");
    return 2;
  }
  size_t chunk = argc > 3 ? (size_t)atol(argv[3]) : 16384;
  int rounds = argc > 4 ? atoi(argv[4]) : 5;
  char err[512];
  ig_tok *tok = NULL;
  double best_load = 1e9;
  for (int r = 0; r < 5; r++) {
    double t0 = now();
    if (ig_tok_load(&tok, argv[1], err, sizeof err)) {
      fprintf(stderr, "load: %s\n", err);
      return 1;
    }
    double dt = now() - t0;
    if (dt < best_load) best_load = dt;
    if (r < 4) ig_tok_free(tok);
  }
  char *text;
  size_t len;
  if (ig_file_read(argv[2], (size_t)1 << 32, &text, &len, err, sizeof err)) {
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  ig_tok_enc enc = {0};
  double best = 1e9, best_wall = 1e9;
  size_t ntok = 0;
  for (int r = 0; r < rounds; r++) {
    double t0 = now(), w0 = wall();
    ntok = 0;
    for (size_t pos = 0; pos < len;) {
      size_t end = pos + chunk < len ? pos + chunk : len;
      while (end < len && text[end - 1] != '\n') end++;
      if (ig_tok_encode(tok, text + pos, end - pos, 0, 0, &enc)) return 1;
      ntok += enc.n;
      pos = end;
    }
    double dt = now() - t0, dw = wall() - w0;
    if (dt < best) best = dt;
    if (dw < best_wall) best_wall = dw;
  }
  printf("{\"impl\": \"ignis\", \"vocab\": %d, \"load_ms\": %.1f, \"bytes\": %zu, \"tokens\": %zu, \"encode_s\": %.4f, "
         "\"MB_per_s\": %.2f, \"MB_per_s_wall\": %.2f}\n",
         ig_tok_vocab_size(tok), best_load * 1e3, len, ntok, best, len / best / 1e6, len / best_wall / 1e6);
  ig_tok_enc_free(&enc);
  free(text);
  ig_tok_free(tok);
  return 0;
}
