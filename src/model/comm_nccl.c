/* model/comm_nccl: the communicator over the GPUs of one host through NCCL (built only when IGNIS_CUDA is on and
 * nccl.h/libnccl are found). One process, one thread per GPU: ncclCommInitAll makes one communicator per device
 * and each shard's thread issues ncclAllReduce on its own. The reduction is enqueued on the backend's stream when
 * the backend provides backend.h's all_reduce op; otherwise the backend is synchronized and the reduction runs on
 * a stream of our own, waited for before returning (correct, slower). NVLink multicast (NVLS) stays off. */
#include "model/comm.h"
#include <cuda_runtime.h>
#include <nccl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  ig_comm base;
  int *dev;             /* [n] CUDA device of each rank */
  ncclComm_t *comms;    /* [n] */
  cudaStream_t *stream; /* [n] fallback streams, made by each rank's thread on its device */
  atomic_int aborted;
} nccl_comm;

static int nc_bind_thread(ig_comm *c, int rank, char *err, size_t errlen) {
  nccl_comm *nc = (nccl_comm *)c;
  cudaError_t e = cudaSetDevice(nc->dev[rank]);
  if (e == cudaSuccess && !nc->stream[rank]) e = cudaStreamCreateWithFlags(&nc->stream[rank], cudaStreamNonBlocking);
  if (e != cudaSuccess) {
    snprintf(err, errlen, "%s:%d: rank %d (device %d): %s", __FILE__, __LINE__, rank, nc->dev[rank], cudaGetErrorString(e));
    return -1;
  }
  return 0;
}

static int nc_all_reduce(ig_comm *c, int rank, ig_backend *be, ig_tensor *x) {
  nccl_comm *nc = (nccl_comm *)c;
  if (atomic_load(&nc->aborted)) {
    snprintf(be->err, sizeof be->err, "all-reduce: the NCCL communicator was aborted after an earlier error");
    return -1;
  }
  ncclDataType_t dt;
  switch (x->dtype) {
  case IG_DT_F32: dt = ncclFloat32; break;
  case IG_DT_BF16: dt = ncclBfloat16; break;
  case IG_DT_F16: dt = ncclFloat16; break;
  default: snprintf(be->err, sizeof be->err, "all-reduce: unsupported dtype %s", ig_dtype_name(x->dtype)); return -1;
  }
  if (be->all_reduce) return be->all_reduce(be, x, nc->comms[rank]);
  if (be->sync(be)) return -1;
  ncclResult_t r = ncclAllReduce(x->data, x->data, (size_t)ig_tensor_numel(x), dt, ncclSum, nc->comms[rank], nc->stream[rank]);
  if (r != ncclSuccess) {
    snprintf(be->err, sizeof be->err, "%s:%d: ncclAllReduce: %s", __FILE__, __LINE__, ncclGetErrorString(r));
    return -1;
  }
  cudaError_t e = cudaStreamSynchronize(nc->stream[rank]);
  if (e != cudaSuccess) {
    snprintf(be->err, sizeof be->err, "%s:%d: all-reduce: %s", __FILE__, __LINE__, cudaGetErrorString(e));
    return -1;
  }
  return 0;
}

/* Unblocks ranks waiting in a collective (ncclCommAbort may be called from any thread); the communicator stays
 * unusable afterwards. */
static void nc_abort(ig_comm *c) {
  nccl_comm *nc = (nccl_comm *)c;
  if (atomic_exchange(&nc->aborted, 1)) return;
  for (int r = 0; r < c->n; r++)
    if (nc->comms[r]) ncclCommAbort(nc->comms[r]);
}

static void nc_destroy(ig_comm *c) {
  nccl_comm *nc = (nccl_comm *)c;
  for (int r = 0; r < c->n; r++) {
    if (nc->stream && nc->stream[r]) {
      cudaSetDevice(nc->dev[r]);
      cudaStreamDestroy(nc->stream[r]);
    }
    if (nc->comms && nc->comms[r] && !atomic_load(&nc->aborted)) ncclCommDestroy(nc->comms[r]);
  }
  free(nc->stream);
  free(nc->comms);
  free(nc->dev);
  free(nc);
}

static const ig_comm_vt nccl_vt = {"nccl", nc_bind_thread, nc_all_reduce, nc_abort, NULL, nc_destroy};

int ig_comm_nccl_create(int n, const int *devices, ig_comm **out, char *err, size_t errlen) {
  *out = NULL;
  nccl_comm *nc = calloc(1, sizeof *nc);
  if (!nc || !(nc->dev = calloc((size_t)n, sizeof *nc->dev)) || !(nc->comms = calloc((size_t)n, sizeof *nc->comms)) ||
      !(nc->stream = calloc((size_t)n, sizeof *nc->stream))) {
    if (nc) free(nc->dev), free(nc->comms), free(nc->stream), free(nc);
    snprintf(err, errlen, "NCCL: out of memory");
    return -1;
  }
  nc->base.vt = &nccl_vt;
  nc->base.n = n;
  memcpy(nc->dev, devices, sizeof(int) * (size_t)n);
  /* NVLink SHARP/multicast off: it reserves memory and is not what this host's NVLink setup supports. */
  setenv("NCCL_NVLS_ENABLE", "0", 1);
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count < n) {
    snprintf(err, errlen, "NCCL: %d shards need %d GPUs, %d visible", n, n, count);
    free(nc->dev), free(nc->comms), free(nc->stream), free(nc);
    return -1;
  }
  ncclResult_t r = ncclCommInitAll(nc->comms, n, nc->dev);
  if (r != ncclSuccess) {
    snprintf(err, errlen, "ncclCommInitAll over %d GPUs: %s", n, ncclGetErrorString(r));
    free(nc->dev), free(nc->comms), free(nc->stream), free(nc);
    return -1;
  }
  int v = 0;
  ncclGetVersion(&v);
  (void)v;
  *out = &nc->base;
  return 0;
}
