/* bench/cpu_matvec: bandwidth of the CPU backend's decode matmul (R one-token sequences against a bf16
 * weight larger than the caches), per thread count, against the machine's read bandwidth (bench/cpu_membw).
 * Build: see bench/cpu_bench.sh. usage: cpu_matvec [threads] [rows=1] */
#include "backend/backend.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
  int th = argc > 1 ? atoi(argv[1]) : 0, R = argc > 2 ? atoi(argv[2]) : 1;
  if (R < 1 || R > 256) R = 1;
  const int64_t O = 32768, I = 4096; /* 256 MiB of bf16 */
  uint16_t *w = malloc((size_t)(O * I) * 2);
  for (int64_t i = 0; i < O * I; i++) w[i] = (uint16_t)(0x3c00 + (i & 255));
  char err[256];
  ig_backend *be = ig_backend_cpu_create(th, err, sizeof err);
  ig_tensor W, X, Y;
  be->weight(be, &W, w, IG_DT_BF16, O, I);
  be->alloc(be, &X, IG_DT_F32, R, I);
  be->alloc(be, &Y, IG_DT_F32, R, O);
  memset(X.data, 0, (size_t)I * 4 * R);
  int32_t tok[256] = {0}, pos[256] = {0}, slot[256] = {0}, ss[257], ctx[256], bt[256] = {0}, outr[256];
  for (int r = 0; r <= R; r++) ss[r] = r;
  for (int r = 0; r < R; r++) ctx[r] = 1, outr[r] = r;
  ig_batch b = {R, tok, pos, slot, R, ss, ctx, 1, bt, R, outr, NULL}; /* R sequences of one token */
  be->set_batch(be, &b);
  double best = 1e9;
  for (int r = 0; r < 10; r++) {
    double t0 = now();
    be->matmul(be, &Y, &X, &W, NULL);
    double t = now() - t0;
    if (t < best) best = t;
  }
  printf("matvec bf16 [%lld x %lld] x %d rows, %s threads: %.2f ms, %.2f GB/s of weights, %.1f GFMA/s\n",
         (long long)O, (long long)I, R, argc > 1 ? argv[1] : "all", best * 1e3, (double)(O * I * 2) / best / 1e9,
         (double)(O * I) * R / best / 1e9);
  be->destroy(be);
  free(w);
  return 0;
}
