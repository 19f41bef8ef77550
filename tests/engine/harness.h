/* tests/engine/harness.h: helpers shared by the engine tests: build a request, wait for many requests to
 * finish (through the wake callback), collect each request's tokens and text. */
#ifndef IG_TEST_ENGINE_HARNESS_H
#define IG_TEST_ENGINE_HARNESS_H
#include "engine/engine.h"
#include "util/str.h"
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

static inline int h_same(const h_out *a, const h_out *b) {
  if (a->n != b->n || a->finish != b->finish) return 0;
  for (int i = 0; i < a->n; i++)
    if (a->ids[i] != b->ids[i]) return 0;
  if (a->text.len != b->text.len) return 0;
  return a->text.len == 0 || memcmp(a->text.p, b->text.p, a->text.len) == 0;
}

#endif
