/* engine/sample_pool: see sample_pool.h. One generation counter wakes the workers for a batch of jobs; jobs
 * are claimed through an atomic index; the caller waits until every worker has left the batch. */
#include "engine/sample_pool.h"
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

struct ig_sample_pool {
  int n;
  pthread_t *th;
  ig_sampler *samplers;
  pthread_mutex_t mu;
  pthread_cond_t cv_work, cv_done;
  uint64_t gen;
  int stop;
  int busy;           /* workers still inside the current batch */
  ig_sample_job *jobs;
  int n_jobs;
  void (*fn)(void *ctx, int i); /* ig_sample_pool_for's batch instead of jobs, when set */
  void *fn_ctx;
  atomic_int next;
};

typedef struct {
  ig_sample_pool *p;
  int idx;
} worker_arg;

static void sample_job(ig_sampler *s, ig_sample_job *jb) {
  if (jb->allowed) { /* branch-free, so that it vectorizes */
    float *lg = (float *)jb->logits;
    const uint8_t *a = jb->allowed;
    for (int v = 0; v < s->vocab; v++) lg[v] = a[v] ? lg[v] : -INFINITY;
  }
  ig_sampler_sample(s, jb->params, jb->logits, jb->tokens, jb->n_tokens, jb->n_prompt, jb->step, &jb->res);
}

static void run_jobs(ig_sample_pool *p, ig_sampler *s) {
  for (;;) {
    int j = atomic_fetch_add(&p->next, 1);
    if (j >= p->n_jobs) return;
    if (p->fn)
      p->fn(p->fn_ctx, j);
    else
      sample_job(s, &p->jobs[j]);
  }
}

static void *worker(void *arg) {
  worker_arg wa = *(worker_arg *)arg;
  free(arg);
  ig_sample_pool *p = wa.p;
  uint64_t seen = 0;
  pthread_mutex_lock(&p->mu);
  for (;;) {
    while (!p->stop && p->gen == seen) pthread_cond_wait(&p->cv_work, &p->mu);
    if (p->stop) break;
    seen = p->gen;
    pthread_mutex_unlock(&p->mu);
    run_jobs(p, &p->samplers[wa.idx]);
    pthread_mutex_lock(&p->mu);
    if (--p->busy == 0) pthread_cond_signal(&p->cv_done);
  }
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

int ig_sample_pool_create(int n_workers, int vocab, ig_sample_pool **out) {
  *out = NULL;
  ig_sample_pool *p = calloc(1, sizeof *p);
  if (!p) return -ENOMEM;
  p->th = calloc((size_t)n_workers, sizeof *p->th);
  p->samplers = calloc((size_t)n_workers, sizeof *p->samplers);
  if (!p->th || !p->samplers) {
    free(p->th);
    free(p->samplers);
    free(p);
    return -ENOMEM;
  }
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->cv_work, NULL);
  pthread_cond_init(&p->cv_done, NULL);
  for (int i = 0; i < n_workers; i++) {
    worker_arg *wa = malloc(sizeof *wa);
    if (!wa || ig_sampler_init(&p->samplers[i], vocab)) {
      free(wa);
      ig_sample_pool_destroy(p);
      return -ENOMEM;
    }
    wa->p = p;
    wa->idx = i;
    if (pthread_create(&p->th[i], NULL, worker, wa)) {
      free(wa);
      ig_sampler_free(&p->samplers[i]);
      ig_sample_pool_destroy(p);
      return -EAGAIN;
    }
    p->n = i + 1;
  }
  *out = p;
  return 0;
}

int ig_sample_pool_threads(const ig_sample_pool *p) { return p ? p->n : 0; }

void ig_sample_pool_destroy(ig_sample_pool *p) {
  if (!p) return;
  pthread_mutex_lock(&p->mu);
  p->stop = 1;
  pthread_cond_broadcast(&p->cv_work);
  pthread_mutex_unlock(&p->mu);
  for (int i = 0; i < p->n; i++) {
    pthread_join(p->th[i], NULL);
    ig_sampler_free(&p->samplers[i]);
  }
  pthread_cond_destroy(&p->cv_work);
  pthread_cond_destroy(&p->cv_done);
  pthread_mutex_destroy(&p->mu);
  free(p->th);
  free(p->samplers);
  free(p);
}

/* One batch over the workers and the caller: jobs, or fn's calls. */
static void run_batch(ig_sample_pool *p, ig_sampler *own, ig_sample_job *jobs, int n, void (*fn)(void *, int),
                      void *ctx) {
  pthread_mutex_lock(&p->mu);
  p->jobs = jobs;
  p->n_jobs = n;
  p->fn = fn;
  p->fn_ctx = ctx;
  atomic_store(&p->next, 0);
  p->busy = p->n;
  p->gen++;
  pthread_cond_broadcast(&p->cv_work);
  pthread_mutex_unlock(&p->mu);
  run_jobs(p, own);
  pthread_mutex_lock(&p->mu);
  while (p->busy > 0) pthread_cond_wait(&p->cv_done, &p->mu);
  pthread_mutex_unlock(&p->mu);
}

void ig_sample_pool_run(ig_sample_pool *p, ig_sampler *own, ig_sample_job *jobs, int n) {
  if (!p || p->n == 0 || n < 2) {
    for (int i = 0; i < n; i++) sample_job(own, &jobs[i]);
    return;
  }
  run_batch(p, own, jobs, n, NULL, NULL);
}

void ig_sample_pool_for(ig_sample_pool *p, int n, void (*fn)(void *ctx, int i), void *ctx) {
  if (!p || p->n == 0 || n < 2) {
    for (int i = 0; i < n; i++) fn(ctx, i);
    return;
  }
  run_batch(p, NULL, NULL, n, fn, ctx);
}
