/* tests/engine/bench_engine: engine throughput on a real model, without HTTP. Runs N concurrent requests of
 * M new tokens (greedy or sampled) and reports tokens/s, steps, and how the engine thread's time splits
 * between the model's forward and everything else (scheduling, sampling, detokenizing, events): the
 * engine's own overhead per generated token. Not a test (timings never go in tests).
 * Usage: bench_engine MODEL_DIR [concurrency=64] [new_tokens=200] [sample=0] [threads=0] */
#include "engine/engine_int.h"
#include "harness.h"
#include "model/model.h"
#include "tok/tok.h"
#include <stdio.h>
#include <stdlib.h>

static ig_model *model;
static int64_t fwd_ns, gap_ns, last_end, gap_cpu_ns, last_cpu_end;
static long fwd_calls;

static int64_t thread_cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Times the forward, and the engine thread's gap between two forwards (its own work per step). */
static int timed_forward(void *ctx, const ig_batch *b, float *logits, char *err, size_t errlen) {
  int64_t t0 = ig_engine_now_ns(), c0 = thread_cpu_ns();
  if (last_end) gap_ns += t0 - last_end;
  if (last_cpu_end) gap_cpu_ns += c0 - last_cpu_end;
  int rc = ig_model_forward(ctx, b, logits, err, errlen);
  last_cpu_end = thread_cpu_ns();
  last_end = ig_engine_now_ns();
  fwd_ns += last_end - t0;
  fwd_calls++;
  return rc;
}
static size_t kv_bytes(void *ctx, int bs) { return ig_model_kv_bytes_per_block(ctx, bs); }
static int kv_init(void *ctx, int n, int bs, char *err, size_t errlen) { return ig_model_kv_init(ctx, n, bs, err, errlen); }
static void *t_new(void *ctx, const int32_t *p, int n) {
  ig_tok_detok *d = malloc(sizeof *d);
  ig_tok_detok_init(d, ctx, 1);
  int k = n < 5 ? n : 5;
  ig_tok_detok_prime(d, p + n - k, (size_t)k);
  return d;
}
static int64_t detok_ns;
static int t_push(void *ctx, void *d, int32_t id, ig_str *out) {
  int64_t t0 = ig_engine_now_ns();
  int rc = ig_tok_detok_push(d, id, out);
  detok_ns += ig_engine_now_ns() - t0;
  return rc;
}
static int t_flush(void *ctx, void *d, ig_str *out) { return ig_tok_detok_flush(d, out); }
static void t_free(void *ctx, void *d) {
  ig_tok_detok_free(d);
  free(d);
}
static int t_special(void *ctx, int32_t id) { return ig_tok_is_special(ctx, id); }

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s MODEL_DIR [concurrency] [new_tokens] [sample] [threads]\n", argv[0]);
    return 2;
  }
  int conc = argc > 2 ? atoi(argv[2]) : 64, new_tokens = argc > 3 ? atoi(argv[3]) : 200;
  int sample = argc > 4 ? atoi(argv[4]) : 0, threads = argc > 5 ? atoi(argv[5]) : 0;
  char err[256];
  ig_backend *be = ig_backend_cpu_create(threads, err, sizeof err);
  ig_tok *tok = NULL;
  if (!be || ig_model_load(argv[1], be, &model, err, sizeof err) || ig_tok_load(&tok, argv[1], err, sizeof err)) {
    fprintf(stderr, "bench_engine: %s\n", err);
    return 1;
  }
  const ig_model_info *mi = ig_model_get_info(model);
  ig_engine_runner run = {0};
  run.ctx = model;
  run.vocab_size = mi->vocab_size;
  run.max_position = mi->max_position_embeddings;
  run.kv_bytes_per_block = kv_bytes;
  run.kv_init = kv_init;
  run.forward = timed_forward;
  ig_engine_text text = {tok, t_new, t_push, t_flush, t_free, t_special, NULL};
  ig_engine_config cfg = {0};
  cfg.max_total_tokens = new_tokens + 16;
  cfg.max_batch_total_tokens = conc * (new_tokens + 16) + 64;
  cfg.max_concurrent_requests = conc;
  cfg.max_waiting_tokens = 20;
  cfg.waiting_served_ratio = 0.3f;
  ig_engine *e;
  if (ig_engine_create_custom(&run, &text, &cfg, &e, err, sizeof err)) {
    fprintf(stderr, "bench_engine: %s\n", err);
    return 1;
  }
  ig_request **rs = calloc((size_t)conc, sizeof *rs);
  h_out *outs = calloc((size_t)conc, sizeof *outs);
  int32_t prompt[5] = {1, 403, 407, 261, 378};
  int64_t t0 = ig_engine_now_ns();
  for (int i = 0; i < conc; i++) {
    ig_gen_params p = h_params(new_tokens);
    p.ignore_eos = 1;
    p.seed = (uint64_t)i;
    if (sample) {
      p.do_sample = 1;
      p.temperature = 0.8f;
      p.top_k = 50;
      p.top_p = 0.95f;
    }
    prompt[4] = 300 + i % 100; /* different prompts */
    rs[i] = h_request(prompt, 5, &p, NULL, 0);
    if (ig_engine_submit(e, rs[i], err, sizeof err)) {
      fprintf(stderr, "submit: %s\n", err);
      return 1;
    }
  }
  h_wait_all(rs, outs, conc, 600);
  int64_t wall = ig_engine_now_ns() - t0;
  long tokens = 0;
  for (int i = 0; i < conc; i++) tokens += outs[i].n;
  const ig_engine_stats *st = ig_engine_get_stats(e);
  long long steps = atomic_load(&st->steps);
  printf("model %s, %d threads, concurrency %d, %d new tokens each, %s\n", argv[1], threads, conc, new_tokens,
         sample ? "sampled (t=0.8, top_k=50, top_p=0.95)" : "greedy");
  printf("tokens %ld in %.3f s: %.0f tokens/s; steps %lld (%.1f tokens/step)\n", tokens, wall / 1e9,
         tokens / (wall / 1e9), steps, (double)tokens / (double)steps);
  printf("forward %.3f s (%.1f us/step); engine outside forward %.3f s = %.2f us per generated token\n",
         fwd_ns / 1e9, fwd_ns / 1e3 / (double)fwd_calls, (wall - fwd_ns) / 1e9, (wall - fwd_ns) / 1e3 / (double)tokens);
  printf("of which detokenizer %.2f us per generated token\n", detok_ns / 1e3 / (double)tokens);
  printf("engine thread between forwards: wall %.1f us/step, CPU %.1f us/step = %.2f us CPU per generated token\n",
         gap_ns / 1e3 / (double)(fwd_calls - 1), gap_cpu_ns / 1e3 / (double)(fwd_calls - 1),
         gap_cpu_ns / 1e3 / (double)tokens);
  for (int i = 0; i < conc; i++) {
    ig_request_unref(rs[i]);
    ig_str_free(&outs[i].text);
  }
  free(rs);
  free(outs);
  ig_engine_destroy(e, 0);
  ig_model_free(model);
  ig_tok_free(tok);
  be->destroy(be);
  return 0;
}
