/* tests/engine/harness.h: helpers shared by the engine tests: build a request, wait for many requests to
 * finish (through the wake callback), collect each request's tokens and text; a device sampler on the host. */
#ifndef IG_TEST_ENGINE_HARNESS_H
#define IG_TEST_ENGINE_HARNESS_H
#include "engine/engine.h"
#include "engine/sampler.h"
#include "util/str.h"
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static pthread_mutex_t h_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t h_cv = PTHREAD_COND_INITIALIZER;
static long h_wakes;

static void h_wake(void *arg) {
  (void)arg;
  pthread_mutex_lock(&h_mu);
  h_wakes++;
  pthread_cond_broadcast(&h_cv);
  pthread_mutex_unlock(&h_mu);
}

/* What one request produced. */
typedef struct h_out {
  int32_t ids[1024];
  float logprobs[1024];
  int n;
  ig_str text;
  ig_finish_reason finish;
  int events;
  int max_top;
} h_out;

static inline ig_gen_params h_params(int max_new) {
  ig_gen_params p;
  memset(&p, 0, sizeof p);
  p.max_new_tokens = max_new;
  p.temperature = 1;
  p.top_p = 1;
  p.typical_p = 1;
  p.repetition_penalty = 1;
  return p;
}

static inline ig_request *h_request(const int32_t *prompt, int n, const ig_gen_params *p, const char *const *stops,
                             int n_stop) {
  ig_request *r = ig_request_new();
  r->prompt = malloc(sizeof(int32_t) * (size_t)n);
  memcpy(r->prompt, prompt, sizeof(int32_t) * (size_t)n);
  r->n_prompt = n;
  r->params = *p;
  r->params.n_stop = n_stop;
  r->params.stop = n_stop ? calloc((size_t)n_stop, sizeof(char *)) : NULL;
  for (int i = 0; i < n_stop; i++) r->params.stop[i] = strdup(stops[i]);
  r->wake = h_wake;
  return r;
}

/* Drains the events of r into o. Returns 1 once the request has finished. */
static inline int h_drain(ig_request *r, h_out *o) {
  ig_token_event ev[16];
  int n;
  while ((n = ig_request_take_events(r, ev, 16)) > 0) {
    for (int i = 0; i < n; i++) {
      o->events++;
      if (ev[i].id >= 0 && o->n < 1024) {
        o->logprobs[o->n] = ev[i].logprob;
        o->ids[o->n++] = ev[i].id;
      }
      if (ev[i].text) ig_str_puts(&o->text, ev[i].text);
      if (ev[i].n_top > o->max_top) o->max_top = ev[i].n_top;
      if (ev[i].finish != IG_FINISH_NONE) o->finish = ev[i].finish;
      ig_token_event_clear(&ev[i]);
    }
  }
  pthread_mutex_lock(&r->mu);
  int done = r->finished && r->ev_head == r->ev_tail;
  pthread_mutex_unlock(&r->mu);
  return done;
}

/* Waits (up to timeout_s) until all n requests have finished, draining their events as they come. */
static inline int h_wait_all(ig_request **rs, h_out *outs, int n, double timeout_s) {
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (;;) {
    pthread_mutex_lock(&h_mu);
    long w = h_wakes;
    pthread_mutex_unlock(&h_mu);
    int done = 0;
    for (int i = 0; i < n; i++) done += h_drain(rs[i], &outs[i]);
    if (done == n) return 0;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if ((double)(now.tv_sec - t0.tv_sec) + 1e-9 * (double)(now.tv_nsec - t0.tv_nsec) > timeout_s) return -1;
    pthread_mutex_lock(&h_mu);
    if (h_wakes == w) {
      struct timespec dl;
      clock_gettime(CLOCK_REALTIME, &dl);
      dl.tv_nsec += 20 * 1000000;
      if (dl.tv_nsec >= 1000000000) dl.tv_sec++, dl.tv_nsec -= 1000000000;
      pthread_cond_timedwait(&h_cv, &h_mu, &dl);
    }
    pthread_mutex_unlock(&h_mu);
  }
}

/* What a device sampler does with a step's rows (runner.forward_sample), on the host: each row's logits (lg + row x
 * vocab) get its constrained mask (as -inf), then its greedy target's logprob and the host sampler's choice from what
 * its ig_sample_row carries go to out. 0 or -ENOMEM. */
static inline int h_sample_rows(int vocab, float *lg, const ig_sample_row *rows, int n_rows, ig_sample_out *out) {
  ig_sampler sm;
  if (ig_sampler_init(&sm, vocab)) return -ENOMEM;
  for (int i = 0; i < n_rows; i++) {
    const ig_sample_row *r = &rows[i];
    ig_gen_params p;
    memset(&p, 0, sizeof p);
    p.do_sample = r->do_sample;
    p.temperature = r->do_sample ? r->temperature : 1.0f;
    p.top_k = r->do_sample ? r->top_k : 0;
    p.top_p = r->do_sample ? r->top_p : 1.0f;
    p.typical_p = r->do_sample ? r->typical_p : 1.0f;
    p.repetition_penalty = r->repetition_penalty;
    p.frequency_penalty = r->frequency_penalty;
    p.presence_penalty = r->presence_penalty;
    p.want_logprobs = r->want_logprob;
    p.top_n_tokens = r->top_n;
    float *row = lg + (size_t)r->row * (size_t)vocab;
    if (r->allowed) /* a constrained row's mask, as the device applies it */
      for (int v = 0; v < vocab; v++)
        if (!((r->allowed[v >> 5] >> (v & 31)) & 1u)) row[v] = -INFINITY;
    /* a greedy row's target: its logprob under the row's logits (a prompt logprob row), as the device gives it */
    out[i].target_logprob = !r->do_sample && r->target >= 0 && r->target < vocab
                                ? (float)(row[r->target] - ig_sample_logsumexp(row, vocab)) : NAN;
    ig_sample_result res;
    ig_sampler_sample_u(&sm, &p, row, r->tokens, r->n_tokens, r->n_prompt, r->uniform, &res);
    out[i].id = res.id;
    out[i].logprob = res.logprob;
    out[i].n_top = res.n_top;
    memcpy(out[i].top_ids, res.top_ids, sizeof res.top_ids);
    memcpy(out[i].top_logprobs, res.top_logprobs, sizeof res.top_logprobs);
  }
  ig_sampler_free(&sm);
  return 0;
}

static inline int h_same(const h_out *a, const h_out *b) {
  if (a->n != b->n || a->finish != b->finish) return 0;
  for (int i = 0; i < a->n; i++)
    if (a->ids[i] != b->ids[i]) return 0;
  if (a->text.len != b->text.len) return 0;
  return a->text.len == 0 || memcmp(a->text.p, b->text.p, a->text.len) == 0;
}

#endif
