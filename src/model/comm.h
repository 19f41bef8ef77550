/* model/comm: the collective communicator tensor parallelism (model/shard.c) sums partial results with.
 * One rank per shard, one thread per rank; every rank calls the same collectives in the same order.
 * Two implementations: a loopback one for N ranks inside one process over any backend (host memory, used on
 * the CPU and by the tests), and NCCL over the GPUs of one host (model/comm_nccl.c, built when IGNIS_CUDA is on
 * and NCCL is found; IG_HAVE_NCCL is then defined). */
#ifndef IG_MODEL_COMM_H
#define IG_MODEL_COMM_H
#include "backend/backend.h"
#include <stddef.h>

typedef struct ig_comm ig_comm;

/* For implementations: a communicator is this header followed by its own state. */
typedef struct ig_comm_vt {
  const char *kind; /* "loopback", "nccl" */
  int (*bind_thread)(ig_comm *c, int rank, char *err, size_t errlen);
  int (*all_reduce)(ig_comm *c, int rank, ig_backend *be, ig_tensor *x);
  void (*abort)(ig_comm *c);
  void (*reset)(ig_comm *c);
  void (*destroy)(ig_comm *c);
} ig_comm_vt;

struct ig_comm {
  const ig_comm_vt *vt;
  int n; /* ranks */
};

/* N ranks in this process, reducing in host memory: each rank's tensor is read in place when its backend keeps
 * activations as f32 host memory (the CPU backend), else through download_f32/upload. The sum is taken in
 * rank order, so every rank gets bit-identical results. Free with ig_comm_free. */
int ig_comm_loopback_create(int n, ig_comm **out, char *err, size_t errlen);

#ifdef IG_HAVE_NCCL
/* N ranks on CUDA devices devices[0..n) through ncclCommInitAll (NCCL_NVLS_ENABLE=0 is set in the environment
 * first: NVLink multicast stays off). Each rank's thread calls ig_comm_bind_thread once (cudaSetDevice). */
int ig_comm_nccl_create(int n, const int *devices, ig_comm **out, char *err, size_t errlen);
#endif

static inline int ig_comm_size(const ig_comm *c) { return c->n; }
static inline const char *ig_comm_kind(const ig_comm *c) { return c->vt->kind; }

/* Called once by the thread that drives `rank` before its first op (NCCL: selects that rank's device). */
int ig_comm_bind_thread(ig_comm *c, int rank, char *err, size_t errlen);

/* x = sum over all ranks of x (in place, same shape on every rank), ordered after the ops already issued on
 * `be`. Returns 0, or -1 with the reason in be->err (e.g. after another rank failed and aborted). */
int ig_comm_all_reduce(ig_comm *c, int rank, ig_backend *be, ig_tensor *x);

/* A rank that fails between collectives calls abort so that the others, waiting in a collective, return an
 * error instead of hanging. reset (loopback only; NCCL communicators stay failed) makes it usable again once
 * every rank has returned. */
void ig_comm_abort(ig_comm *c);
void ig_comm_reset(ig_comm *c);
void ig_comm_free(ig_comm *c);

#endif
