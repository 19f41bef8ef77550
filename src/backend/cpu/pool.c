/* backend/cpu/pool: see pool.h. One generation counter announces a run; workers that see it run their share
 * and count themselves done. Spinning first keeps the hand-over in the microseconds during decode. */
#include "backend/cpu/pool.h"
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

#define SPIN_ITERS 20000

struct ig_pool {
  int n;
  pthread_t *threads;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  atomic_uint gen;      /* incremented once per run */
  atomic_int pending;   /* workers still running the current run */
  atomic_int quit;
  ig_pool_fn fn;
  void *ctx;
};

typedef struct {
  ig_pool *p;
  int ith;
} worker_arg;

static void *worker(void *arg) {
  worker_arg *wa = arg;
  ig_pool *p = wa->p;
  int ith = wa->ith;
  free(wa);
  unsigned seen = 0; /* gen starts at 0; reading it here could miss a run issued before we started */
  for (;;) {
    int spins = 0;
    while (atomic_load_explicit(&p->gen, memory_order_acquire) == seen && !atomic_load(&p->quit)) {
      if (++spins < SPIN_ITERS) {
        cpu_relax();
        continue;
      }
      pthread_mutex_lock(&p->mu);
      while (atomic_load(&p->gen) == seen && !atomic_load(&p->quit)) pthread_cond_wait(&p->cv, &p->mu);
      pthread_mutex_unlock(&p->mu);
    }
    if (atomic_load(&p->quit)) return NULL;
    seen = atomic_load(&p->gen);
    p->fn(p->ctx, ith, p->n);
    atomic_fetch_sub_explicit(&p->pending, 1, memory_order_release);
  }
}

ig_pool *ig_pool_create(int n_threads) {
  if (n_threads < 1) n_threads = 1;
  ig_pool *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  p->n = n_threads;
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->cv, NULL);
  p->threads = calloc((size_t)n_threads, sizeof *p->threads);
  if (!p->threads) {
    free(p);
    return NULL;
  }
  for (int i = 1; i < n_threads; i++) {
    worker_arg *wa = malloc(sizeof *wa);
    if (!wa || pthread_create(&p->threads[i], NULL, worker, (wa->p = p, wa->ith = i, wa))) {
      free(wa);
      p->n = i; /* the pool runs with the threads it got */
      break;
    }
  }
  return p;
}

int ig_pool_size(const ig_pool *p) { return p->n; }

void ig_pool_run(ig_pool *p, ig_pool_fn fn, void *ctx) {
  if (p->n == 1) {
    fn(ctx, 0, 1);
    return;
  }
  p->fn = fn;
  p->ctx = ctx;
  atomic_store(&p->pending, p->n - 1);
  pthread_mutex_lock(&p->mu);
  atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
  fn(ctx, 0, p->n);
  /* yield now and then: on an oversubscribed machine the worker we wait for may need this core */
  for (unsigned spins = 0; atomic_load_explicit(&p->pending, memory_order_acquire) > 0; spins++) {
    if (spins % 1024 == 1023) sched_yield();
    else cpu_relax();
  }
}

void ig_pool_destroy(ig_pool *p) {
  if (!p) return;
  pthread_mutex_lock(&p->mu);
  atomic_store(&p->quit, 1);
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
  for (int i = 1; i < p->n; i++) pthread_join(p->threads[i], NULL);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->cv);
  free(p->threads);
  free(p);
}
