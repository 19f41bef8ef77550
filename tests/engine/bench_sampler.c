/* tests/engine/bench_sampler: CPU time of one ig_sampler_sample call on a synthetic logits row, for a few
 * parameter sets, at a given vocabulary size. Not a test (timings never go in tests).
 * Then one step of 64 sequences (greedy + logprobs) over 0..3 worker threads beside the caller (wall time).
 * Usage: bench_sampler [vocab=128256] [iterations=300] */
#include "engine/sample_pool.h"
#include "engine/sampler.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double cpu_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv) {
  int V = argc > 1 ? atoi(argv[1]) : 128256, N = argc > 2 ? atoi(argv[2]) : 300;
  ig_sampler s;
  if (V < 2 || N < 1 || ig_sampler_init(&s, V)) return 2;
  float *lg = malloc(sizeof(float) * (size_t)V);
  for (int i = 0; i < V; i++) lg[i] = (float)((i * 2654435761u) % 10000) / 1000.0f - 5;
  int32_t toks[3] = {1, 2, 3};
  const char *names[] = {"greedy", "greedy + logprobs", "sample (t=0.8, top_k=50, top_p=0.95)", "sample plain",
                         "greedy + repetition 1.2 + top_n 5"};
  for (int mode = 0; mode < 5; mode++) {
    ig_gen_params p;
    memset(&p, 0, sizeof p);
    p.max_new_tokens = 1;
    p.temperature = 1;
    p.top_p = 1;
    p.typical_p = 1;
    p.repetition_penalty = 1;
    if (mode == 1) p.want_logprobs = 1;
    if (mode == 2) p.do_sample = 1, p.temperature = 0.8f, p.top_k = 50, p.top_p = 0.95f;
    if (mode == 3) p.do_sample = 1;
    if (mode == 4) p.repetition_penalty = 1.2f, p.top_n_tokens = 5;
    ig_sample_result r;
    double t0 = cpu_s();
    for (int i = 0; i < N; i++) ig_sampler_sample(&s, &p, lg, toks, 3, 3, (uint64_t)i, &r);
    printf("vocab %d, %s: %.2f us/token\n", V, names[mode], (cpu_s() - t0) / N * 1e6);
  }
  /* A step of 64 sequences sharing the same row (reads stay in cache as they would not: a lower bound). */
  enum { NJ = 64 };
  static ig_sample_job jobs[NJ];
  ig_gen_params p;
  memset(&p, 0, sizeof p);
  p.max_new_tokens = 1, p.temperature = 1, p.top_p = 1, p.typical_p = 1, p.repetition_penalty = 1;
  p.want_logprobs = 1;
  for (int w = 0; w <= 3; w++) {
    ig_sample_pool *pool = NULL;
    if (w > 0 && ig_sample_pool_create(w, V, &pool)) return 1;
    for (int j = 0; j < NJ; j++) {
      jobs[j].params = &p;
      jobs[j].logits = lg;
      jobs[j].tokens = toks;
      jobs[j].n_tokens = 3;
      jobs[j].n_prompt = 3;
      jobs[j].step = (uint64_t)j;
    }
    struct timespec t0, t1;
    int steps = N / 8 > 0 ? N / 8 : 1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int k = 0; k < steps; k++) ig_sample_pool_run(pool, &s, jobs, NJ);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double us = ((double)(t1.tv_sec - t0.tv_sec) * 1e6 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e3) / steps;
    printf("vocab %d, 64 sequences greedy + logprobs, %d workers + caller: %.0f us/step (wall)\n", V, w, us);
    ig_sample_pool_destroy(pool);
  }
  free(lg);
  ig_sampler_free(&s);
  return 0;
}
