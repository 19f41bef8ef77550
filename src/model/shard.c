/* model/shard: tensor parallelism behind the ig_model API. A sharded model is N shard models (model/llama.c, each
 * holding its heads, intermediate columns and vocabulary rows on its own backend, with its part of the KV cache)
 * and one thread per shard driving it; the front model hands every call (load, KV init, forward) to all threads
 * at once and waits for all of them: a barrier per step. Inside a forward, the shards meet in the communicator's
 * two all-reduces per layer. The engine sees one model and does not change. */
#include "model/shard.h"
#include "util/log.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---------------------------------------------------------------------------------------------------- */
/* the split */

static int gcd(int a, int b) { return b ? gcd(b, a % b) : a; }

int ig_tp_check(const ig_config *c, int n, char *err, size_t errlen) {
  if (n < 1) {
    snprintf(err, errlen, "the shard count must be at least 1 (got %d)", n);
    return -1;
  }
  if (n == 1) return 0;
  if (c->n_heads % n == 0 && c->n_kv_heads % n == 0 && c->intermediate_size >= n && c->vocab_size >= n) return 0;
  /* shard counts that work: the divisors of gcd(heads, kv heads) */
  int g = gcd(c->n_heads, c->n_kv_heads), o = 0;
  char ok[128] = "";
  for (int d = 1; d <= g && o < (int)sizeof ok - 16; d++)
    if (g % d == 0) o += snprintf(ok + o, sizeof ok - (size_t)o, "%s%d", o ? ", " : "", d);
  snprintf(err, errlen, "cannot split the model over %d shards: its %d attention heads and %d key/value heads must "
           "both be divisible by the shard count (possible: %s)", n, c->n_heads, c->n_kv_heads, ok);
  return -1;
}

/* Where shard `rank` of n starts in a dimension of `total`: balanced, on multiples of the largest power of two up
 * to 128 that divides it (GEMM tiles and vector loads stay aligned: 14336 / 8 = 1792 = 14 * 128). */
static int64_t split_at(int64_t total, int rank, int n) {
  int64_t g = 1;
  for (int64_t c = 128; c > 1 && g == 1; c /= 2)
    if (total % c == 0 && total / c >= n) g = c;
  return total / g * rank / n * g;
}

void ig_tp_part(const ig_config *c, int rank, int n, ig_tp *tp) {
  memset(tp, 0, sizeof *tp);
  tp->rank = rank;
  tp->size = n;
  tp->nh = c->n_heads / n;
  tp->nkv = c->n_kv_heads / n;
  int64_t I = c->intermediate_size, V = c->vocab_size;
  tp->i0 = split_at(I, rank, n);
  tp->ni = split_at(I, rank + 1, n) - tp->i0;
  tp->v0 = split_at(V, rank, n);
  tp->nv = split_at(V, rank + 1, n) - tp->v0;
}

/* ---------------------------------------------------------------------------------------------------- */
/* the group: one thread per shard, one job at a time */

typedef enum { JOB_LOAD, JOB_KV_INIT, JOB_FORWARD, JOB_QUIT } job_kind;

typedef struct {
  ig_shard_group *g;
  int rank;
} worker;

struct ig_shard_group {
  int n;
  ig_comm *comm;
  int own_comm;
  ig_backend **be;     /* [n] */
  int own_be;          /* backends made by the workers (ig_model_load_tp) */
  ig_model_tp_opts opts;
  ig_model **m;        /* [n] shard models */
  ig_tp *tp;           /* [n] their parts (vocabulary columns of the logits) */
  int vocab;
  pthread_t *th;
  worker *w;
  int n_threads;

  pthread_mutex_t mu;
  pthread_cond_t go, done;
  unsigned gen;        /* bumped for every job */
  int pending;         /* shards still on the current job */
  job_kind kind;
  /* the job's arguments and results */
  const char *dir;
  const ig_batch *b;
  int kv_blocks, kv_block_size;
  float **part;        /* [n] each shard's logits [n_out, tp.nv] */
  int64_t *part_cap;
  float *logits;       /* n == 1: straight into the caller's buffer */
  int *rc;
  char (*err)[512];
  atomic_int first_fail; /* the rank that failed first in the current job, -1 when none */
};

static ig_backend *make_backend(ig_shard_group *g, int rank, char *err, size_t errlen) {
  const ig_model_tp_opts *o = &g->opts;
  if (o->device && !strcmp(o->device, "cuda")) {
#ifdef IG_HAVE_CUDA
    return ig_backend_cuda_create_ex(o->first_device + rank, o->cuda_f32 ? IG_DT_F32 : IG_DT_BF16, err, errlen);
#else
    snprintf(err, errlen, "this ignis was built without CUDA");
    return NULL;
#endif
  }
  int threads = o->threads > 0 ? o->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
  threads /= g->n;
  return ig_backend_cpu_create(threads > 0 ? threads : 1, err, errlen);
}

static int run_one(ig_shard_group *g, int r, job_kind kind) {
  char *err = g->err[r];
  size_t errlen = sizeof g->err[r];
  switch (kind) {
  case JOB_LOAD:
    if (ig_comm_bind_thread(g->comm, r, err, errlen)) return -1;
    if (g->own_be && !(g->be[r] = make_backend(g, r, err, errlen))) return -1;
    return ig_model_load_part(g->dir, g->be[r], r, g->n, g->comm, &g->m[r], err, errlen);
  case JOB_KV_INIT:
    return ig_model_kv_init(g->m[r], g->kv_blocks, g->kv_block_size, err, errlen);
  case JOB_FORWARD:
    return ig_model_forward(g->m[r], g->b, g->n == 1 ? g->logits : g->part[r], err, errlen);
  case JOB_QUIT:
    /* a device backend's memory is released from the thread bound to its device */
    ig_model_free(g->m[r]);
    g->m[r] = NULL;
    if (g->own_be && g->be[r]) g->be[r]->destroy(g->be[r]);
    if (g->own_be) g->be[r] = NULL;
    return 0;
  }
  return -1;
}

static void *worker_main(void *arg) {
  worker *w = arg;
  ig_shard_group *g = w->g;
  unsigned seen = 0;
  for (;;) {
    pthread_mutex_lock(&g->mu);
    while (g->gen == seen) pthread_cond_wait(&g->go, &g->mu);
    seen = g->gen;
    job_kind kind = g->kind;
    pthread_mutex_unlock(&g->mu);

    int rc = run_one(g, w->rank, kind);
    g->rc[w->rank] = rc;
    if (rc) {
      /* the first failure of a forward unblocks the other shards waiting in a collective (only forwards have
       * collectives; an aborted NCCL communicator stays unusable) */
      int none = -1;
      if (atomic_compare_exchange_strong(&g->first_fail, &none, w->rank) && kind == JOB_FORWARD) ig_comm_abort(g->comm);
    }
    pthread_mutex_lock(&g->mu);
    if (--g->pending == 0) pthread_cond_signal(&g->done);
    pthread_mutex_unlock(&g->mu);
    if (kind == JOB_QUIT) return NULL;
  }
}

/* Runs one job on every shard and waits for all. Returns 0, or -1 with the first failing shard's message. */
static int run_job(ig_shard_group *g, job_kind kind, char *err, size_t errlen) {
  atomic_store(&g->first_fail, -1);
  pthread_mutex_lock(&g->mu);
  g->kind = kind;
  g->pending = g->n_threads; /* all n once loading started */
  g->gen++;
  pthread_cond_broadcast(&g->go);
  while (g->pending > 0) pthread_cond_wait(&g->done, &g->mu);
  pthread_mutex_unlock(&g->mu);
  int f = atomic_load(&g->first_fail);
  if (f < 0) return 0;
  ig_comm_reset(g->comm);
  if (g->n > 1) snprintf(err, errlen, "shard %d of %d: %s", f, g->n, g->err[f]);
  else snprintf(err, errlen, "%s", g->err[f]);
  return -1;
}

void ig_shard_free(ig_shard_group *g) {
  if (!g) return;
  if (g->n_threads > 0) {
    char err[16];
    run_job(g, JOB_QUIT, err, sizeof err);
  }
  for (int r = 0; r < g->n_threads; r++) pthread_join(g->th[r], NULL);
  if (g->own_comm) ig_comm_free(g->comm);
  for (int r = 0; g->part && r < g->n; r++) free(g->part[r]);
  free(g->part);
  free(g->part_cap);
  free(g->be);
  free(g->m);
  free(g->tp);
  free(g->th);
  free(g->w);
  free(g->rc);
  free(g->err);
  pthread_mutex_destroy(&g->mu);
  pthread_cond_destroy(&g->go);
  pthread_cond_destroy(&g->done);
  free(g);
}

/* ---------------------------------------------------------------------------------------------------- */
/* what the front model's calls turn into */

/* 0 when any shard cannot hold the cache (its kv dtype) */
size_t ig_shard_kv_bytes_per_block(ig_shard_group *g, int block_size) {
  size_t sum = 0;
  for (int r = 0; r < g->n; r++) {
    size_t b = ig_model_kv_bytes_per_block(g->m[r], block_size);
    if (!b) return 0;
    sum += b;
  }
  return sum;
}

/* from the caller's thread, between jobs: the shards read it in their next KV_INIT job (run_job's lock orders it) */
void ig_shard_set_kv_dtype(ig_shard_group *g, int kv_dtype) {
  for (int r = 0; r < g->n; r++) ig_model_set_kv_dtype(g->m[r], kv_dtype);
}

int ig_shard_kv_init(ig_shard_group *g, int n_blocks, int block_size, char *err, size_t errlen) {
  g->kv_blocks = n_blocks;
  g->kv_block_size = block_size;
  return run_job(g, JOB_KV_INIT, err, errlen);
}

int ig_shard_forward(ig_shard_group *g, const ig_batch *b, float *logits, char *err, size_t errlen) {
  int n_out = b->n_out > 0 ? b->n_out : 0;
  for (int r = 0; r < g->n && g->n > 1; r++) {
    int64_t need = (int64_t)n_out * g->tp[r].nv;
    if (need > g->part_cap[r]) {
      free(g->part[r]);
      g->part[r] = malloc(sizeof(float) * (size_t)need);
      g->part_cap[r] = g->part[r] ? need : 0;
      if (!g->part[r]) {
        snprintf(err, errlen, "forward: out of memory");
        return -1;
      }
    }
  }
  g->b = b;
  g->logits = logits;
  int rc = run_job(g, JOB_FORWARD, err, errlen);
  g->b = NULL;
  if (rc || g->n == 1) return rc;
  /* logits[j, v0 .. v0 + nv) = shard's [j, 0 .. nv) */
  for (int r = 0; r < g->n; r++) {
    const ig_tp *tp = &g->tp[r];
    for (int j = 0; j < n_out; j++)
      memcpy(logits + (size_t)j * g->vocab + tp->v0, g->part[r] + (size_t)j * tp->nv, sizeof(float) * (size_t)tp->nv);
  }
  return 0;
}

/* ---------------------------------------------------------------------------------------------------- */
/* loading */

static int group_new(int n, ig_shard_group **out, char *err, size_t errlen) {
  ig_shard_group *g = calloc(1, sizeof *g);
  if (!g) goto oom;
  g->n = n;
  pthread_mutex_init(&g->mu, NULL);
  pthread_cond_init(&g->go, NULL);
  pthread_cond_init(&g->done, NULL);
  g->be = calloc((size_t)n, sizeof *g->be);
  g->m = calloc((size_t)n, sizeof *g->m);
  g->tp = calloc((size_t)n, sizeof *g->tp);
  g->th = calloc((size_t)n, sizeof *g->th);
  g->w = calloc((size_t)n, sizeof *g->w);
  g->part = calloc((size_t)n, sizeof *g->part);
  g->part_cap = calloc((size_t)n, sizeof *g->part_cap);
  g->rc = calloc((size_t)n, sizeof *g->rc);
  g->err = calloc((size_t)n, sizeof *g->err);
  *out = g;
  if (g->be && g->m && g->tp && g->th && g->w && g->part && g->part_cap && g->rc && g->err) return 0;
  ig_shard_free(g);
  *out = NULL;
oom:
  snprintf(err, errlen, "out of memory");
  return -1;
}

/* The shared part of both loaders: g has its backends (or own_be + opts) and its communicator. */
static int group_load(ig_shard_group *g, const char *dir, ig_model **out, char *err, size_t errlen) {
  char e2[512];
  ig_config c;
  memset(&c, 0, sizeof c);
  if (ig_config_load(dir, &c, e2, sizeof e2)) {
    snprintf(err, errlen, "%s: %s", dir, e2);
    goto fail;
  }
  int bad = ig_tp_check(&c, g->n, e2, sizeof e2);
  for (int r = 0; r < g->n && !bad; r++) ig_tp_part(&c, r, g->n, &g->tp[r]);
  g->vocab = c.vocab_size;
  ig_config_free(&c);
  if (bad) {
    snprintf(err, errlen, "%s: %s", dir, e2);
    goto fail;
  }
  for (int r = 0; r < g->n; r++) {
    g->w[r] = (worker){g, r};
    if (pthread_create(&g->th[r], NULL, worker_main, &g->w[r])) {
      snprintf(err, errlen, "cannot start the thread of shard %d", r);
      goto fail;
    }
    g->n_threads++;
  }
  g->dir = dir;
  int rc = run_job(g, JOB_LOAD, err, errlen);
  g->dir = NULL;
  if (rc) goto fail;
  ig_model *front = ig_model_front_new(g, g->be[0], ig_model_get_info(g->m[0]));
  if (!front) {
    snprintf(err, errlen, "out of memory");
    goto fail;
  }
  const ig_tp *t = &g->tp[0];
  ig_log(IG_LOG_INFO, "tensor parallel: %d shards over %s (%s all-reduce); each holds %d/%d heads, %lld "
         "intermediate columns, %lld vocabulary rows", g->n, g->be[0]->name, ig_comm_kind(g->comm), t->nh, t->nkv,
         (long long)t->ni, (long long)t->nv);
  *out = front;
  return 0;
fail:
  ig_shard_free(g);
  return -1;
}

int ig_model_load_sharded(const char *dir, ig_backend *const *backends, int n, struct ig_comm *comm, ig_model **out,
                          char *err, size_t errlen) {
  *out = NULL;
  if (n < 1 || (comm && ig_comm_size(comm) != n)) {
    snprintf(err, errlen, "tensor parallel: %d shards%s", n, n < 1 ? "" : " but the communicator has another size");
    return -1;
  }
  ig_shard_group *g;
  if (group_new(n, &g, err, errlen)) return -1;
  for (int r = 0; r < n; r++) g->be[r] = backends[r];
  if (comm) {
    g->comm = comm;
  } else if (ig_comm_loopback_create(n, &g->comm, err, errlen)) {
    ig_shard_free(g);
    return -1;
  } else {
    g->own_comm = 1;
  }
  return group_load(g, dir, out, err, errlen);
}

int ig_model_load_tp(const char *dir, const ig_model_tp_opts *o, ig_model **out, char *err, size_t errlen) {
  *out = NULL;
  int n = o->num_shard;
  int cuda = o->device && !strcmp(o->device, "cuda");
  if (n < 1) {
    snprintf(err, errlen, "--num-shard must be at least 1 (got %d)", n);
    return -1;
  }
  /* a bad shard count is answered before any backend or communicator is made */
  ig_config c;
  char e2[512];
  memset(&c, 0, sizeof c);
  if (ig_config_load(dir, &c, e2, sizeof e2)) {
    snprintf(err, errlen, "%s: %s", dir, e2);
    return -1;
  }
  int bad = ig_tp_check(&c, n, e2, sizeof e2);
  ig_config_free(&c);
  if (bad) {
    snprintf(err, errlen, "%s: %s", dir, e2);
    return -1;
  }
  ig_shard_group *g;
  if (group_new(n, &g, err, errlen)) return -1;
  g->own_be = 1;
  g->opts = *o;
  g->own_comm = 1;
  int rc;
  if (cuda) {
#ifdef IG_HAVE_NCCL
    int *dev = malloc(sizeof(int) * (size_t)n);
    for (int r = 0; dev && r < n; r++) dev[r] = o->first_device + r;
    rc = !dev ? (snprintf(err, errlen, "out of memory"), -1)
         : n > 1 ? ig_comm_nccl_create(n, dev, &g->comm, err, errlen)
                 : ig_comm_loopback_create(n, &g->comm, err, errlen);
    free(dev);
#else
    rc = n > 1 ? (snprintf(err, errlen, "--num-shard %d on CUDA needs NCCL, and this ignis was built without it", n), -1)
               : ig_comm_loopback_create(n, &g->comm, err, errlen);
#endif
  } else {
    rc = ig_comm_loopback_create(n, &g->comm, err, errlen);
  }
  if (rc) {
    ig_shard_free(g);
    return -1;
  }
  return group_load(g, dir, out, err, errlen);
}
