/* backend/cpu/pool: see pool.h. A run is announced by bumping `gen` and opening it (`open` = gen). A worker
 * that sees a new gen registers itself in `busy`, checks that the run is still open, and claims items from
 * `next` until none are left. The caller claims items too; when they are all taken it closes the run and
 * waits only for registered workers (those running an item). busy++/open-check in a worker and close/busy-
 * check in the caller are sequentially consistent, so a late worker either is waited for or skips the run. */
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

#define SPIN_ITERS 4000 /* about 0.1-0.5 ms of pause instructions before a worker sleeps */
static int spin_iters = -1;

struct ig_pool {
  int n;
  pthread_t *threads;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  atomic_uint gen;      /* incremented once per run (never 0 once a run was issued) */
  atomic_uint open;     /* gen of the run accepting workers, 0 when closed */
  atomic_int busy;      /* workers inside the current run */
  atomic_int sleeping;  /* workers waiting on cv */
  atomic_int quit;
  atomic_llong next;    /* next item to claim */
  int64_t n_items;
  ig_pool_fn fn;
  void *ctx;
};

typedef struct {
  ig_pool *p;
  int ith;
} worker_arg;

static void claim_all(ig_pool *p, int ith) {
  for (;;) {
    int64_t i = atomic_fetch_add(&p->next, 1);
    if (i >= p->n_items) return;
    p->fn(p->ctx, i, ith);
  }
}

static void *worker(void *arg) {
  worker_arg *wa = arg;
  ig_pool *p = wa->p;
  int ith = wa->ith;
  free(wa);
  unsigned seen = 0; /* gen starts at 0 */
  for (;;) {
    int spins = 0;
    while (atomic_load(&p->gen) == seen && !atomic_load(&p->quit)) {
      if (++spins < spin_iters) {
        cpu_relax();
        continue;
      }
      pthread_mutex_lock(&p->mu);
      atomic_fetch_add(&p->sleeping, 1);
      while (atomic_load(&p->gen) == seen && !atomic_load(&p->quit)) pthread_cond_wait(&p->cv, &p->mu);
      atomic_fetch_sub(&p->sleeping, 1);
      pthread_mutex_unlock(&p->mu);
    }
    if (atomic_load(&p->quit)) return NULL;
    seen = atomic_load(&p->gen);
    atomic_fetch_add(&p->busy, 1);
    if (atomic_load(&p->open) == seen) claim_all(p, ith);
    atomic_fetch_sub(&p->busy, 1);
  }
}

ig_pool *ig_pool_create(int n_threads) {
  if (n_threads < 1) n_threads = 1;
  ig_pool *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  p->n = n_threads;
  if (spin_iters < 0) {
    const char *e = getenv("IGNIS_CPU_SPIN");
    spin_iters = e && *e ? atoi(e) : SPIN_ITERS;
  }
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

void ig_pool_run(ig_pool *p, ig_pool_fn fn, void *ctx, int64_t n_items) {
  if (p->n == 1 || n_items <= 1) {
    for (int64_t i = 0; i < n_items; i++) fn(ctx, i, 0);
    return;
  }
  p->fn = fn;
  p->ctx = ctx;
  p->n_items = n_items;
  atomic_store(&p->next, 0);
  unsigned g = atomic_load(&p->gen) + 1;
  if (g == 0) g = 1;
  atomic_store(&p->open, g);
  atomic_store(&p->gen, g);
  if (atomic_load(&p->sleeping) > 0) {
    pthread_mutex_lock(&p->mu);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
  }
  claim_all(p, 0);
  atomic_store(&p->open, 0);
  /* only workers that joined (each finishing at most its last item) are waited for; yield now and then:
   * on an oversubscribed machine the worker we wait for may need this core */
  for (unsigned spins = 0; atomic_load(&p->busy) > 0; spins++) {
    if (spins % 256 == 255) sched_yield();
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
