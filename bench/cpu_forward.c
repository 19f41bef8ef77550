/* bench/cpu_forward.c: the model's forward alone on the CPU backend, decode steps of B one-token sequences
 * (each its own sequence with its own KV context, as the engine batches them). Every sequence is first
 * prefilled with CTX tokens on its own; then STEPS decode steps of all B rows are timed. Prints the median
 * and best step time, the process CPU time per step, and decode tokens/s (B / median step).
 * usage: cpu_forward MODEL_DIR [B=1] [CTX=32] [STEPS=50] [THREADS=0] */
#include "model/model.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BS 16

static double now(clockid_t c) {
  struct timespec ts;
  clock_gettime(c, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s MODEL_DIR [B] [CTX] [STEPS] [THREADS]\n", argv[0]);
    return 2;
  }
  int B = argc > 2 ? atoi(argv[2]) : 1, ctx = argc > 3 ? atoi(argv[3]) : 32, steps = argc > 4 ? atoi(argv[4]) : 50;
  int th = argc > 5 ? atoi(argv[5]) : 0;
  char err[512];
  ig_backend *be = ig_backend_cpu_create(th, err, sizeof err);
  ig_model *m = NULL;
  if (!be || ig_model_load(argv[1], be, &m, err, sizeof err)) {
    fprintf(stderr, "cpu_forward: %s\n", err);
    return 1;
  }
  const ig_model_info *mi = ig_model_get_info(m);
  int V = mi->vocab_size, maxlen = ctx + steps + 1, mb = (maxlen + BS - 1) / BS;
  if (ig_model_kv_init(m, mb * B, BS, err, sizeof err)) {
    fprintf(stderr, "cpu_forward: %s\n", err);
    return 1;
  }
  int32_t *bt = malloc(sizeof(int32_t) * (size_t)mb * B), *len = calloc((size_t)B, sizeof(int32_t));
  for (int s = 0; s < B; s++)
    for (int k = 0; k < mb; k++) bt[(size_t)s * mb + k] = k * B + s; /* interleaved pages */
  int nmax = ctx > B ? ctx : B;
  int32_t *tok = malloc(sizeof(int32_t) * (size_t)nmax * 4), *pos = tok + nmax, *slot = pos + nmax, *outr = slot + nmax;
  int32_t *ss = malloc(sizeof(int32_t) * (size_t)(B + 1)), *cl = malloc(sizeof(int32_t) * (size_t)B);
  float *lg = malloc(sizeof(float) * (size_t)V * (size_t)B);
  /* prefill each sequence alone */
  for (int s = 0; s < B; s++) {
    for (int t = 0; t < ctx; t++) {
      tok[t] = 1 + (t * 7 + s) % (V - 1);
      pos[t] = t;
      slot[t] = bt[(size_t)s * mb + t / BS] * BS + t % BS;
    }
    int32_t s2[2] = {0, ctx}, c1 = ctx, o1 = ctx - 1;
    ig_batch b = {ctx, tok, pos, slot, 1, s2, &c1, mb, bt + (size_t)s * mb, 1, &o1, NULL};
    if (ctx && ig_model_forward(m, &b, lg, err, sizeof err)) {
      fprintf(stderr, "cpu_forward: prefill: %s\n", err);
      return 1;
    }
    len[s] = ctx;
  }
  double *wt = malloc(sizeof(double) * (size_t)steps), cpu0 = now(CLOCK_PROCESS_CPUTIME_ID), w0 = now(CLOCK_MONOTONIC);
  for (int it = 0; it < steps; it++) {
    for (int s = 0; s < B; s++) {
      int p = len[s];
      tok[s] = 1 + (p * 13 + s) % (V - 1);
      pos[s] = p;
      slot[s] = bt[(size_t)s * mb + p / BS] * BS + p % BS;
      ss[s] = s;
      cl[s] = p + 1;
      outr[s] = s;
    }
    ss[B] = B;
    ig_batch b = {B, tok, pos, slot, B, ss, cl, mb, bt, B, outr, NULL};
    double t0 = now(CLOCK_MONOTONIC);
    if (ig_model_forward(m, &b, lg, err, sizeof err)) {
      fprintf(stderr, "cpu_forward: decode: %s\n", err);
      return 1;
    }
    wt[it] = now(CLOCK_MONOTONIC) - t0;
    for (int s = 0; s < B; s++) len[s]++;
  }
  double cpu = now(CLOCK_PROCESS_CPUTIME_ID) - cpu0, wall = now(CLOCK_MONOTONIC) - w0;
  qsort(wt, (size_t)steps, sizeof *wt, cmp_d);
  double med = wt[steps / 2];
  printf("B=%d ctx=%d steps=%d threads=%d: step median %.1f us, best %.1f us, cpu/step %.1f us (cpu/wall %.2f); "
         "decode %.1f tok/s (median), %.1f tok/s (best)\n",
         B, ctx, steps, th, med * 1e6, wt[0] * 1e6, cpu / steps * 1e6, cpu / wall, B / med, B / wt[0]);
  free(wt);
  free(lg);
  free(ss);
  free(cl);
  free(tok);
  free(bt);
  free(len);
  ig_model_free(m);
  be->destroy(be);
  return 0;
}
