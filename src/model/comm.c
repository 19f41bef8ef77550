/* model/comm: the communicator front (dispatch to an implementation) and the loopback implementation: N ranks
 * of one process that sum tensors in host memory. An all-reduce is two barriers: every rank publishes its
 * buffer, rank r sums slice r of all buffers (in rank order) into a shared result, and after the second
 * barrier every rank copies the result back. Tensor parallelism on the CPU runs on it, and so do the tests. */
#include "model/comm.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------------- */
/* front */

int ig_comm_bind_thread(ig_comm *c, int rank, char *err, size_t errlen) {
  return c->vt->bind_thread ? c->vt->bind_thread(c, rank, err, errlen) : 0;
}
int ig_comm_all_reduce(ig_comm *c, int rank, ig_backend *be, ig_tensor *x) { return c->vt->all_reduce(c, rank, be, x); }
void ig_comm_abort(ig_comm *c) {
  if (c) c->vt->abort(c);
}
void ig_comm_reset(ig_comm *c) {
  if (c && c->vt->reset) c->vt->reset(c);
}
void ig_comm_free(ig_comm *c) {
  if (c) c->vt->destroy(c);
}

/* ---------------------------------------------------------------------------------------------------- */
/* loopback */

typedef struct {
  ig_comm base;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int arrived;
  unsigned gen;
  int aborted;
  const float **src;  /* [n] the buffer each rank contributes */
  int64_t *len;       /* [n] its element count */
  float **stage;      /* [n] staging for ranks whose tensors are not f32 host memory */
  int64_t *stage_cap;
  float *sum;         /* the result, shared */
  int64_t sum_cap;
  int mismatch;       /* set by the last arriver when the lengths differ */
} loopback;

/* Waits until all ranks arrive. The last one runs `last` (under the lock) before releasing the others.
 * Returns -1 when the communicator is aborted. */
static int barrier(loopback *lb, void (*last)(loopback *)) {
  pthread_mutex_lock(&lb->mu);
  if (lb->aborted) {
    pthread_mutex_unlock(&lb->mu);
    return -1;
  }
  unsigned g = lb->gen;
  if (++lb->arrived == lb->base.n) {
    if (last) last(lb);
    lb->arrived = 0;
    lb->gen++;
    pthread_cond_broadcast(&lb->cv);
  } else {
    while (g == lb->gen && !lb->aborted) pthread_cond_wait(&lb->cv, &lb->mu);
  }
  int rc = g == lb->gen ? -1 : 0; /* released by abort, not by the last arriver */
  pthread_mutex_unlock(&lb->mu);
  return rc;
}

static void prepare_sum(loopback *lb) {
  lb->mismatch = 0;
  for (int r = 1; r < lb->base.n; r++) lb->mismatch |= lb->len[r] != lb->len[0];
  if (lb->mismatch || lb->len[0] <= lb->sum_cap) return;
  free(lb->sum);
  lb->sum = malloc(sizeof(float) * (size_t)lb->len[0]);
  lb->sum_cap = lb->sum ? lb->len[0] : 0;
  if (!lb->sum) lb->mismatch = 2;
}

static int host_f32(const ig_backend *be, const ig_tensor *x) {
  return x->dtype == IG_DT_F32 && be->name && !strcmp(be->name, "cpu");
}

static int lb_all_reduce(ig_comm *c, int rank, ig_backend *be, ig_tensor *x) {
  loopback *lb = (loopback *)c;
  int n = c->n;
  int64_t len = ig_tensor_numel(x);
  int direct = host_f32(be, x);
  if (direct) {
    lb->src[rank] = x->data;
  } else {
    if (lb->stage_cap[rank] < len) {
      free(lb->stage[rank]);
      lb->stage[rank] = malloc(sizeof(float) * (size_t)len);
      lb->stage_cap[rank] = lb->stage[rank] ? len : 0;
      if (!lb->stage[rank]) {
        snprintf(be->err, sizeof be->err, "all-reduce: out of memory");
        ig_comm_abort(c);
        return -1;
      }
    }
    if (be->download_f32(be, x, lb->stage[rank])) {
      ig_comm_abort(c);
      return -1;
    }
    lb->src[rank] = lb->stage[rank];
  }
  lb->len[rank] = len;
  if (barrier(lb, prepare_sum)) goto aborted;
  if (lb->mismatch) {
    snprintf(be->err, sizeof be->err, "all-reduce: %s", lb->mismatch == 2 ? "out of memory" : "ranks passed tensors of different sizes");
    ig_comm_abort(c);
    return -1;
  }
  /* this rank's slice of the sum, ranks added in order (every rank sees the same bits) */
  int64_t a = len * rank / n, b = len * (rank + 1) / n;
  float *s = lb->sum;
  memcpy(s + a, lb->src[0] + a, sizeof(float) * (size_t)(b - a));
  for (int r = 1; r < n; r++) {
    const float *p = lb->src[r];
    for (int64_t i = a; i < b; i++) s[i] += p[i];
  }
  if (barrier(lb, NULL)) goto aborted;
  if (direct) {
    memcpy(x->data, s, sizeof(float) * (size_t)len);
    return 0;
  }
  return be->upload(be, x, s, IG_DT_F32);
aborted:
  snprintf(be->err, sizeof be->err, "all-reduce: another shard failed");
  return -1;
}

static void lb_abort(ig_comm *c) {
  loopback *lb = (loopback *)c;
  pthread_mutex_lock(&lb->mu);
  lb->aborted = 1;
  pthread_cond_broadcast(&lb->cv);
  pthread_mutex_unlock(&lb->mu);
}

static void lb_reset(ig_comm *c) {
  loopback *lb = (loopback *)c;
  pthread_mutex_lock(&lb->mu);
  lb->aborted = 0;
  lb->arrived = 0;
  lb->gen++;
  pthread_mutex_unlock(&lb->mu);
}

static void lb_destroy(ig_comm *c) {
  loopback *lb = (loopback *)c;
  for (int r = 0; lb->stage && r < c->n; r++) free(lb->stage[r]);
  free(lb->stage);
  free(lb->stage_cap);
  free(lb->src);
  free(lb->len);
  free(lb->sum);
  pthread_mutex_destroy(&lb->mu);
  pthread_cond_destroy(&lb->cv);
  free(lb);
}

static const ig_comm_vt loopback_vt = {"loopback", NULL, lb_all_reduce, lb_abort, lb_reset, lb_destroy};

int ig_comm_loopback_create(int n, ig_comm **out, char *err, size_t errlen) {
  *out = NULL;
  if (n < 1) {
    snprintf(err, errlen, "communicator: %d ranks", n);
    return -1;
  }
  loopback *lb = calloc(1, sizeof *lb);
  if (!lb) goto oom;
  lb->base.vt = &loopback_vt;
  lb->base.n = n;
  pthread_mutex_init(&lb->mu, NULL);
  pthread_cond_init(&lb->cv, NULL);
  lb->src = calloc((size_t)n, sizeof *lb->src);
  lb->len = calloc((size_t)n, sizeof *lb->len);
  lb->stage = calloc((size_t)n, sizeof *lb->stage);
  lb->stage_cap = calloc((size_t)n, sizeof *lb->stage_cap);
  if (!lb->src || !lb->len || !lb->stage || !lb->stage_cap) {
    lb_destroy(&lb->base);
    goto oom;
  }
  *out = &lb->base;
  return 0;
oom:
  snprintf(err, errlen, "communicator: out of memory");
  return -1;
}
