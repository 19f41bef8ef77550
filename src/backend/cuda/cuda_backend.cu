/* backend/cuda/cuda_backend.cu: the CUDA backend's table (ig_backend_cuda_create): device memory, weight
 * upload (several threads copy the mmap'd checkpoint into pinned staging buffers, converting f32 -> bf16 on
 * the way, while each thread's stream copies the previous chunk to the device), per-step batch metadata (one
 * host->device copy per step into fixed buffers), rotary tables, the paged KV cache, and the op wrappers that
 * wait for pending weight loads before launching. Kernels live in cuda_kernels.cu, cuda_attention.cu and
 * cuda_matmul.cu. */
#include "backend/cuda/cuda_common.h"
#include <cuda_fp8.h>
extern "C" {
#include "util/log.h"
}
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- host-side dtype conversion ---------------------------------------------------------------------- */
static inline float h_bf16_to_f32(uint16_t v) {
  uint32_t u = (uint32_t)v << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}
static inline uint16_t h_f32_to_bf16(float f) { /* round to nearest even; NaN stays NaN */
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}
static inline float h_f16_to_f32(uint16_t h) {
  uint32_t s = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 0x1f, m = h & 0x3ff, u;
  if (e == 0) {
    if (m == 0) u = s;
    else { /* subnormal */
      e = 127 - 15 + 1;
      while (!(m & 0x400)) m <<= 1, e--;
      u = s | (e << 23) | ((m & 0x3ff) << 13);
    }
  } else if (e == 31) u = s | 0x7f800000u | (m << 13);
  else u = s | ((e + 127 - 15) << 23) | (m << 13);
  float f;
  memcpy(&f, &u, 4);
  return f;
}
static inline uint16_t h_f32_to_f16(float f) {
  __half h = __float2half_rn(f); /* host-callable in cuda_fp16.h */
  uint16_t r;
  memcpy(&r, &h, 2);
  return r;
}
static float h_load(const void *p, ig_dtype dt, size_t i) {
  switch (dt) {
  case IG_DT_F32: return ((const float *)p)[i];
  case IG_DT_BF16: return h_bf16_to_f32(((const uint16_t *)p)[i]);
  case IG_DT_F16: return h_f16_to_f32(((const uint16_t *)p)[i]);
  case IG_DT_I32: return (float)((const int32_t *)p)[i];
  }
  return 0.f;
}
/* dst[0..n) (dtype ddt) = src[0..n) (dtype sdt). */
static void h_convert(void *dst, ig_dtype ddt, const void *src, ig_dtype sdt, size_t n) {
  if (ddt == sdt) {
    memcpy(dst, src, n * ig_dtype_size(ddt));
    return;
  }
  if (ddt == IG_DT_BF16 && sdt == IG_DT_F32) {
    const float *s = (const float *)src;
    uint16_t *d = (uint16_t *)dst;
    for (size_t i = 0; i < n; i++) d[i] = h_f32_to_bf16(s[i]);
    return;
  }
  for (size_t i = 0; i < n; i++) {
    float v = h_load(src, sdt, i);
    switch (ddt) {
    case IG_DT_F32: ((float *)dst)[i] = v; break;
    case IG_DT_BF16: ((uint16_t *)dst)[i] = h_f32_to_bf16(v); break;
    case IG_DT_F16: ((uint16_t *)dst)[i] = h_f32_to_f16(v); break;
    case IG_DT_I32: ((int32_t *)dst)[i] = (int32_t)v; break;
    }
  }
}

/* ---- scratch ----------------------------------------------------------------------------------------- */
int cu_scratch(ig_backend *be, void **buf, size_t *cap, size_t need) {
  if (need <= *cap) return 0;
  cu_impl *c = CU(be);
  if (c->capturing) FAIL(be, "cuda: scratch must grow (%zu bytes) while capturing a graph; warm up first", need);
  if (buf != &c->dl) cu_graphs_release(be); /* captured graphs point into the old buffer */
  if (*buf) {
    CUDA_CHECK(be, cudaStreamSynchronize(c->st));
    CUDA_CHECK(be, cudaFree(*buf));
    *buf = NULL, *cap = 0;
  }
  size_t sz = need + need / 4 + 4096;
  CUDA_CHECK(be, cudaMalloc(buf, sz));
  *cap = sz;
  return 0;
}

/* ---- weight loader ----------------------------------------------------------------------------------- */
/* A job copies n elements of host memory (dtype sdt) to dst on the device (dtype ddt). Workers take jobs from
 * a queue; each has two pinned staging buffers and its own stream, so the CPU fills one buffer (converting)
 * while the other is in flight over PCIe. */
#define LD_THREADS 8
#define LD_STAGE (32u << 20)
#define LD_JOB_MAX (64u << 20) /* big tensors are split so all threads share them */

typedef struct ld_job {
  const void *src;
  ig_dtype sdt, ddt;
  void *dst;
  size_t n;
  /* an FP8 checkpoint's codes (fp8 1: e4m3, 2: e5m2), staged as they are and dequantized to bf16 on the device;
   * element e0 + k of the part, whose first row is the tensor's srow0 */
  int fp8;
  const float *dscales;
  int64_t e0, srow0, br, bc, sc, cols;
  struct ld_job *next;
} ld_job;

/* dst[k] = bf16(decode(codes[k]) * scale) for element e0 + k of a [., cols] part starting at the tensor's row srow0:
 * the f32 product and one rounding, as the host's dequantization (llama.c) computes it */
__global__ void fp8_dequant_kernel(__nv_bfloat16 *dst, const uint8_t *codes, size_t n, int e5m2, const float *scales,
                                   int64_t e0, int64_t srow0, int64_t br, int64_t bc, int64_t sc, int64_t cols) {
  for (size_t k = blockIdx.x * (size_t)blockDim.x + threadIdx.x; k < n; k += (size_t)gridDim.x * blockDim.x) {
    int64_t e = e0 + (int64_t)k, row = srow0 + e / cols, col = e % cols;
    __half_raw h = __nv_cvt_fp8_to_halfraw((__nv_fp8_storage_t)codes[k], e5m2 ? __NV_E5M2 : __NV_E4M3);
    float v = __half2float(__half(h)) * scales[(row / br) * sc + col / bc];
    dst[k] = __float2bfloat16_rn(v);
  }
}

typedef struct cu_loader {
  ig_backend *be;
  int device;
  pthread_t th[LD_THREADS];
  int n_threads;
  pthread_mutex_t mu;
  pthread_cond_t cv_job, cv_done;
  ld_job *head, *tail;
  int busy;      /* jobs queued or running */
  int stop;
  void **dev_bufs; /* FP8 jobs' scales on the device, freed when loading ends */
  int n_dev_bufs;
  char err[256]; /* first error */
} cu_loader;

static void *ld_worker(void *arg) {
  cu_loader *L = (cu_loader *)arg;
  void *stage[2] = {NULL, NULL}, *dstage[2] = {NULL, NULL}; /* dstage: FP8 codes on the device, made on first use */
  cudaStream_t st = NULL;
  cudaEvent_t ev[2] = {NULL, NULL};
  char err[256] = "";
  int ok = cudaSetDevice(L->device) == cudaSuccess && cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking) == cudaSuccess &&
           cudaEventCreateWithFlags(&ev[0], cudaEventDisableTiming) == cudaSuccess &&
           cudaEventCreateWithFlags(&ev[1], cudaEventDisableTiming) == cudaSuccess &&
           cudaHostAlloc(&stage[0], LD_STAGE, cudaHostAllocDefault) == cudaSuccess &&
           cudaHostAlloc(&stage[1], LD_STAGE, cudaHostAllocDefault) == cudaSuccess;
  if (!ok) snprintf(err, sizeof err, "cuda weight loader: cannot set up staging (%s)", cudaGetErrorString(cudaGetLastError()));
  int cur = 0;
  for (;;) {
    pthread_mutex_lock(&L->mu);
    while (!L->head && !L->stop) pthread_cond_wait(&L->cv_job, &L->mu);
    if (!L->head) {
      pthread_mutex_unlock(&L->mu);
      break;
    }
    ld_job *j = L->head;
    L->head = j->next;
    if (!L->head) L->tail = NULL;
    pthread_mutex_unlock(&L->mu);
    if (ok && !err[0] && j->fp8) {
      for (size_t off = 0; off < j->n && !err[0]; off += LD_STAGE) {
        size_t cnt = j->n - off < LD_STAGE ? j->n - off : LD_STAGE;
        cudaError_t e = cudaEventSynchronize(ev[cur]); /* this buffer's previous copy and kernel are done */
        if (e == cudaSuccess && !dstage[cur]) e = cudaMalloc(&dstage[cur], LD_STAGE);
        if (e == cudaSuccess) {
          memcpy(stage[cur], (const uint8_t *)j->src + off, cnt);
          e = cudaMemcpyAsync(dstage[cur], stage[cur], cnt, cudaMemcpyHostToDevice, st);
        }
        if (e == cudaSuccess) {
          unsigned blocks = (unsigned)((cnt + 255) / 256 < 4096 ? (cnt + 255) / 256 : 4096);
          fp8_dequant_kernel<<<blocks, 256, 0, st>>>((__nv_bfloat16 *)j->dst + off, (const uint8_t *)dstage[cur], cnt,
                                                      j->fp8 == 2, j->dscales, j->e0 + (int64_t)off, j->srow0, j->br,
                                                      j->bc, j->sc, j->cols);
          e = cudaGetLastError();
        }
        if (e == cudaSuccess) e = cudaEventRecord(ev[cur], st);
        if (e != cudaSuccess) snprintf(err, sizeof err, "cuda weight loader: FP8 copy failed: %s", cudaGetErrorString(e));
        cur ^= 1;
      }
      cudaError_t e = cudaStreamSynchronize(st);
      if (e != cudaSuccess && !err[0]) snprintf(err, sizeof err, "cuda weight loader: %s", cudaGetErrorString(e));
    } else if (ok && !err[0]) {
      size_t des = ig_dtype_size(j->ddt), ses = ig_dtype_size(j->sdt);
      size_t per = LD_STAGE / des;
      for (size_t off = 0; off < j->n && !err[0]; off += per) {
        size_t cnt = j->n - off < per ? j->n - off : per;
        cudaError_t e = cudaEventSynchronize(ev[cur]); /* this buffer's previous copy is done */
        if (e == cudaSuccess) {
          h_convert(stage[cur], j->ddt, (const char *)j->src + off * ses, j->sdt, cnt);
          e = cudaMemcpyAsync((char *)j->dst + off * des, stage[cur], cnt * des, cudaMemcpyHostToDevice, st);
        }
        if (e == cudaSuccess) e = cudaEventRecord(ev[cur], st);
        if (e != cudaSuccess) snprintf(err, sizeof err, "cuda weight loader: copy failed: %s", cudaGetErrorString(e));
        cur ^= 1;
      }
      cudaError_t e = cudaStreamSynchronize(st);
      if (e != cudaSuccess && !err[0]) snprintf(err, sizeof err, "cuda weight loader: %s", cudaGetErrorString(e));
    }
    free(j);
    pthread_mutex_lock(&L->mu);
    if (err[0] && !L->err[0]) snprintf(L->err, sizeof L->err, "%s", err);
    if (!ok && !L->err[0]) snprintf(L->err, sizeof L->err, "%s", err);
    if (--L->busy == 0) pthread_cond_broadcast(&L->cv_done);
    pthread_mutex_unlock(&L->mu);
  }
  if (st) cudaStreamSynchronize(st), cudaStreamDestroy(st);
  for (int i = 0; i < 2; i++) {
    if (ev[i]) cudaEventDestroy(ev[i]);
    if (stage[i]) cudaFreeHost(stage[i]);
    if (dstage[i]) cudaFree(dstage[i]);
  }
  return NULL;
}

static int ld_start(ig_backend *be) {
  cu_impl *c = CU(be);
  cu_loader *L = (cu_loader *)calloc(1, sizeof *L);
  if (!L) FAIL(be, "cuda: out of host memory");
  L->be = be, L->device = c->device;
  pthread_mutex_init(&L->mu, NULL);
  pthread_cond_init(&L->cv_job, NULL);
  pthread_cond_init(&L->cv_done, NULL);
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  int n = ncpu > 1 ? (int)(ncpu < LD_THREADS ? ncpu : LD_THREADS) : 1;
  for (int i = 0; i < n; i++) {
    if (pthread_create(&L->th[i], NULL, ld_worker, L)) break;
    L->n_threads++;
  }
  if (!L->n_threads) {
    free(L);
    FAIL(be, "cuda: cannot start weight loader threads");
  }
  c->loader = L;
  return 0;
}

/* Waits for all queued weight copies and stops the loader (its pinned buffers are released). */
static int ld_finish(ig_backend *be) {
  cu_impl *c = CU(be);
  cu_loader *L = c->loader;
  if (!L) return 0;
  pthread_mutex_lock(&L->mu);
  while (L->busy) pthread_cond_wait(&L->cv_done, &L->mu);
  L->stop = 1;
  pthread_cond_broadcast(&L->cv_job);
  pthread_mutex_unlock(&L->mu);
  for (int i = 0; i < L->n_threads; i++) pthread_join(L->th[i], NULL);
  int rc = 0;
  if (L->err[0]) {
    snprintf(be->err, sizeof be->err, "%s", L->err);
    rc = -1;
  }
  for (int i = 0; i < L->n_dev_bufs; i++) cudaFree(L->dev_bufs[i]);
  free(L->dev_bufs);
  pthread_mutex_destroy(&L->mu);
  pthread_cond_destroy(&L->cv_job);
  pthread_cond_destroy(&L->cv_done);
  free(L);
  c->loader = NULL;
  return rc;
}

/* fp8 (NULL: a plain copy): the FP8 job every piece of this one copies (its e0 advanced by the piece's offset) */
static int ld_queue_x(ig_backend *be, void *dst, ig_dtype ddt, const void *src, ig_dtype sdt, size_t n, const ld_job *fp8) {
  if (!CU(be)->loader && ld_start(be)) return -1;
  cu_loader *L = CU(be)->loader;
  const size_t ses = fp8 ? 1 : ig_dtype_size(sdt), per = LD_JOB_MAX / ses; /* FP8 codes: one byte each */
  for (size_t off = 0; off < n; off += per) {
    ld_job *j = (ld_job *)calloc(1, sizeof *j);
    if (!j) FAIL(be, "cuda: out of host memory");
    if (fp8) *j = *fp8, j->e0 += (int64_t)off, j->next = NULL;
    j->src = (const char *)src + off * ses;
    j->dst = (char *)dst + off * ig_dtype_size(ddt);
    j->sdt = sdt, j->ddt = ddt;
    j->n = n - off < per ? n - off : per;
    pthread_mutex_lock(&L->mu);
    if (L->tail) L->tail->next = j;
    else L->head = j;
    L->tail = j;
    L->busy++;
    pthread_cond_signal(&L->cv_job);
    pthread_mutex_unlock(&L->mu);
  }
  return 0;
}

static int ld_queue(ig_backend *be, void *dst, ig_dtype ddt, const void *src, ig_dtype sdt, size_t n) {
  return ld_queue_x(be, dst, ddt, src, sdt, n, NULL);
}

/* Every op starts here: pending weight copies must land first. */
static inline int ready(ig_backend *be) { return CU(be)->loader ? ld_finish(be) : 0; }

/* ---- memory ------------------------------------------------------------------------------------------ */
static int cuda_alloc(ig_backend *be, ig_tensor *t, ig_dtype dt, int64_t rows, int64_t cols) {
  memset(t, 0, sizeof *t);
  if (rows < 0 || cols < 0) FAIL(be, "cuda alloc: negative shape");
  size_t bytes = (size_t)rows * cols * ig_dtype_size(dt);
  if (bytes) {
    cudaError_t e = cudaMalloc(&t->data, bytes);
    if (e != cudaSuccess) {
      t->data = NULL;
      FAIL(be, "cuda alloc: %zu bytes: %s (lower the batch/KV limits)", bytes, cudaGetErrorString(e));
    }
  }
  t->dtype = dt, t->rows = rows, t->cols = cols, t->owned = 1;
  return 0;
}

static void cuda_free(ig_backend *be, ig_tensor *t) {
  if (!t) return;
  if (t->owned && t->data) {
    ready(be);
    /* a captured graph may point into this buffer, and a replay would then touch freed (or reused) memory: every
     * graph goes (buffers are freed only when they are reallocated or at teardown, so this costs a recapture) */
    cu_graphs_release(be);
    cudaFree(t->data);
  }
  memset(t, 0, sizeof *t);
}

static int cuda_weight(ig_backend *be, ig_tensor *t, const void *host, ig_dtype dt, int64_t rows, int64_t cols) {
  ig_dtype ddt;
  if (dt == IG_DT_I32) ddt = IG_DT_I32;
  else if (be->act_dtype == IG_DT_F32) ddt = IG_DT_F32;
  else ddt = dt == IG_DT_F16 ? IG_DT_F16 : IG_DT_BF16;
  if (cuda_alloc(be, t, ddt, rows, cols)) return -1;
  if (!t->data) return 0;
  return ld_queue(be, t->data, ddt, host, dt, (size_t)rows * cols);
}

static int cuda_weight_keep(ig_backend *be, ig_tensor *t, const void *host, ig_dtype dt, int64_t rows, int64_t cols) {
  if (dt != IG_DT_F32 && dt != IG_DT_BF16 && dt != IG_DT_F16) return cuda_weight(be, t, host, dt, rows, cols);
  if (cuda_alloc(be, t, dt, rows, cols)) return -1;
  if (!t->data) return 0;
  return ld_queue(be, t->data, dt, host, dt, (size_t)rows * cols);
}

static ig_dtype weight_dtype(ig_backend *be, ig_dtype dt) {
  if (dt == IG_DT_I32) return IG_DT_I32;
  if (be->act_dtype == IG_DT_F32) return IG_DT_F32;
  return dt == IG_DT_F16 ? IG_DT_F16 : IG_DT_BF16;
}

/* Like cuda_weight, these do not wait for queued loads (ready()): loading stays parallel. */
static int cuda_weight_alloc(ig_backend *be, ig_tensor *t, ig_dtype dt, int64_t rows, int64_t cols) {
  return cuda_alloc(be, t, weight_dtype(be, dt), rows, cols);
}

static int cuda_weight_rows(ig_backend *be, ig_tensor *t, int64_t row0, const void *host, ig_dtype dt, int64_t rows) {
  if (!t->data || row0 < 0 || rows < 0 || row0 + rows > t->rows) FAIL(be, "cuda weight_rows: rows [%lld, %lld) outside [0, %lld)",
                                                                      (long long)row0, (long long)(row0 + rows), (long long)t->rows);
  if (t->dtype == IG_DT_I32 || dt == IG_DT_I32) FAIL(be, "cuda weight_rows: i32 weights");
  char *dst = (char *)t->data + (size_t)row0 * (size_t)t->cols * ig_dtype_size(t->dtype);
  return rows ? ld_queue(be, dst, t->dtype, host, dt, (size_t)rows * (size_t)t->cols) : 0;
}

static int cuda_weight_fp8(ig_backend *be, ig_tensor *t, int64_t row0, const uint8_t *codes, int e5m2,
                           const float *scales, int64_t n_scales, int64_t srow0, int64_t br, int64_t bc, int64_t sc,
                           int64_t rows, int64_t cols) {
  if (be->act_dtype != IG_DT_BF16) FAIL(be, "cuda weight_fp8: bf16 activations only");
  if (!ig_fp8_scales_cover(n_scales, srow0, rows, cols, br, bc, sc)) FAIL(be, "cuda weight_fp8: scales do not cover the weight");
  char *dst;
  if (t->data) {
    if (t->dtype != IG_DT_BF16 || t->cols != cols || row0 < 0 || row0 + rows > t->rows)
      FAIL(be, "cuda weight_fp8: rows [%lld, %lld) do not fit the buffer", (long long)row0, (long long)(row0 + rows));
    dst = (char *)t->data + (size_t)row0 * (size_t)cols * 2;
  } else {
    if (cuda_alloc(be, t, IG_DT_BF16, rows, cols)) return -1;
    dst = (char *)t->data;
  }
  if (!rows || !dst) return 0;
  if (!CU(be)->loader && ld_start(be)) return -1;
  cu_loader *L = CU(be)->loader;
  void *ds = NULL;
  void **nb = (void **)realloc(L->dev_bufs, sizeof(void *) * (size_t)(L->n_dev_bufs + 1));
  if (!nb) FAIL(be, "cuda: out of host memory");
  L->dev_bufs = nb;
  CUDA_CHECK(be, cudaMalloc(&ds, (size_t)n_scales * sizeof(float)));
  L->dev_bufs[L->n_dev_bufs++] = ds;
  /* on the backend's stream, waited for: a pageable copy may return before it lands, and the loader's streams do not
   * wait for the default one */
  CUDA_CHECK(be, cudaMemcpyAsync(ds, scales, (size_t)n_scales * sizeof(float), cudaMemcpyHostToDevice, CU(be)->st));
  CUDA_CHECK(be, cudaStreamSynchronize(CU(be)->st));
  ld_job f;
  memset(&f, 0, sizeof f);
  f.fp8 = e5m2 ? 2 : 1, f.dscales = (const float *)ds, f.e0 = 0, f.srow0 = srow0, f.br = br, f.bc = bc, f.sc = sc;
  f.cols = cols;
  return ld_queue_x(be, dst, IG_DT_BF16, codes, IG_DT_BF16 /* unused: the codes are bytes */, (size_t)rows * (size_t)cols, &f);
}

static int cuda_sync(ig_backend *be) {
  if (ready(be)) return -1;
  CUDA_CHECK(be, cudaStreamSynchronize(CU(be)->st));
  return 0;
}

static int cuda_download_f32(ig_backend *be, const ig_tensor *t, float *host) {
  cu_impl *c = CU(be);
  if (ready(be)) return -1;
  size_t n = (size_t)ig_tensor_numel(t);
  if (!n) return 0;
  const void *src = t->data;
  if (t->dtype != IG_DT_F32) {
    if (cu_scratch(be, &c->dl, &c->dl_size, n * 4)) return -1;
    if (t->dtype == IG_DT_I32) FAIL(be, "cuda download_f32: I32 tensor");
    if (cu_convert(be, c->dl, IG_DT_F32, t->data, t->dtype, (int64_t)n)) return -1;
    src = c->dl;
  }
  CUDA_CHECK(be, cudaMemcpyAsync(host, src, n * 4, cudaMemcpyDeviceToHost, c->st));
  CUDA_CHECK(be, cudaStreamSynchronize(c->st));
  return 0;
}

static int cuda_upload(ig_backend *be, ig_tensor *t, const void *host, ig_dtype dt) {
  cu_impl *c = CU(be);
  if (ready(be)) return -1;
  size_t n = (size_t)ig_tensor_numel(t);
  if (!n) return 0;
  void *tmp = NULL;
  const void *src = host;
  if (dt != t->dtype) {
    tmp = malloc(n * ig_dtype_size(t->dtype));
    if (!tmp) FAIL(be, "cuda upload: out of host memory");
    h_convert(tmp, t->dtype, host, dt, n);
    src = tmp;
  }
  cudaError_t e = cudaMemcpyAsync(t->data, src, n * ig_dtype_size(t->dtype), cudaMemcpyHostToDevice, c->st);
  if (e == cudaSuccess) e = cudaStreamSynchronize(c->st);
  free(tmp);
  if (e != cudaSuccess) FAIL(be, "%s:%d: cuda upload: %s", __FILE__, __LINE__, cudaGetErrorString(e));
  return 0;
}

/* ---- KV cache, rope, batch --------------------------------------------------------------------------- */
/* bytes per cache element: the activation dtype's, 1 for an FP8 cache, 0 for a cache this backend cannot hold (an
 * unknown dtype; FP8 values are read by the tensor-core attention kernels only, as f16: bf16 activations and head_dim
 * 64, 128 or 256) */
static size_t kv_elem_size(ig_backend *be, const ig_kv_config *k) {
  if (k->dtype == IG_KV_AUTO) return ig_dtype_size(be->act_dtype);
  if (k->dtype != IG_KV_FP8_E4M3 && k->dtype != IG_KV_FP8_E5M2) return 0;
  return be->act_dtype == IG_DT_BF16 && (k->head_dim == 64 || k->head_dim == 128 || k->head_dim == 256);
}
static size_t cuda_kv_bytes_per_block(ig_backend *be, const ig_kv_config *k) {
  return (size_t)k->n_layers * 2 * k->block_size * k->n_kv_heads * k->head_dim * kv_elem_size(be, k);
}

static int cuda_kv_init(ig_backend *be, const ig_kv_config *k) {
  cu_impl *c = CU(be);
  if (ready(be)) return -1;
  if (k->n_layers <= 0 || k->n_blocks <= 0 || k->block_size <= 0 || k->n_kv_heads <= 0 || k->head_dim <= 0)
    FAIL(be, "cuda kv_init: bad configuration");
  if (k->head_dim % 8) FAIL(be, "cuda kv_init: head_dim %d is not a multiple of 8", k->head_dim);
  if (k->dtype != IG_KV_AUTO && k->dtype != IG_KV_FP8_E4M3 && k->dtype != IG_KV_FP8_E5M2)
    FAIL(be, "cuda kv_init: unknown KV cache dtype %d", k->dtype);
  int bad = ig_kv_scales_bad(k);
  if (bad >= 0) FAIL(be, "cuda kv_init: layer %d's K/V cache scale is not a positive number", bad);
  if (!kv_elem_size(be, k))
    FAIL(be, "cuda kv_init: a %s KV cache needs bf16 activations and head_dim 64, 128 or 256 (this model: %s, head_dim "
             "%d); leave --kv-cache-dtype out", ig_kv_dtype_name(k->dtype), ig_dtype_name(be->act_dtype), k->head_dim);
  /* the attention kernels index a layer's cache rows (block, kv head, slot) with 32-bit ints */
  if ((int64_t)k->n_blocks * k->block_size * k->n_kv_heads > INT32_MAX)
    FAIL(be, "cuda kv_init: %d blocks x %d tokens x %d kv heads is over 2^31 cache rows per layer; lower "
             "max_batch_total_tokens", k->n_blocks, k->block_size, k->n_kv_heads);
  if (c->kv_mem) {
    CUDA_CHECK(be, cudaStreamSynchronize(c->st));
    cu_graphs_release(be);
    CUDA_CHECK(be, cudaFree(c->kv_mem));
    c->kv_mem = NULL;
  }
  size_t bytes = (size_t)k->n_blocks * cuda_kv_bytes_per_block(be, k);
  cudaError_t e = cudaMalloc(&c->kv_mem, bytes);
  if (e != cudaSuccess) {
    c->kv_mem = NULL;
    FAIL(be, "cuda kv_init: cannot allocate %zu MiB of KV cache (%d blocks): %s; lower max_batch_total_tokens or "
             "--cuda-memory-fraction", bytes >> 20, k->n_blocks, cudaGetErrorString(e));
  }
  CUDA_CHECK(be, cudaMemsetAsync(c->kv_mem, 0, bytes, c->st));
  c->kv = *k;
  c->kv.k_scale = c->kv.v_scale = NULL;
  c->kv_layer_elems = (size_t)k->n_blocks * k->block_size * k->n_kv_heads * k->head_dim;
  c->kv_fp8 = k->dtype == IG_KV_FP8_E4M3 ? 1 : k->dtype == IG_KV_FP8_E5M2 ? 2 : 0;
  free(c->kv_ks), free(c->kv_vs);
  c->kv_ks = c->kv_vs = NULL;
  if (c->kv_fp8 && (k->k_scale || k->v_scale)) { /* an FP8 cache with scales (checked above; none: 1, no multiplies) */
    float *ks = (float *)malloc((size_t)k->n_layers * sizeof(float)), *vs = (float *)malloc((size_t)k->n_layers * sizeof(float));
    if (!ks || !vs) {
      free(ks), free(vs);
      FAIL(be, "cuda kv_init: out of host memory");
    }
    for (int l = 0; l < k->n_layers; l++) ks[l] = k->k_scale ? k->k_scale[l] : 1.f, vs[l] = k->v_scale ? k->v_scale[l] : 1.f;
    c->kv_ks = ks, c->kv_vs = vs;
  }
  c->kv_cdt = c->kv_fp8 == 1 ? IG_CU_DT_E4M3 : c->kv_fp8 == 2 ? IG_CU_DT_E5M2 : (int)be->act_dtype;
  c->kv_es = kv_elem_size(be, k);
  return 0;
}

static int cuda_set_rope(ig_backend *be, const ig_rope *r) {
  cu_impl *c = CU(be);
  if (ready(be)) return -1;
  if (r->rot_dim <= 0 || r->rot_dim % 2 || r->rot_dim > r->head_dim) FAIL(be, "cuda set_rope: bad rot_dim %d", r->rot_dim);
  if (c->inv_freq && c->rot_dim != r->rot_dim) {
    CUDA_CHECK(be, cudaStreamSynchronize(c->st));
    cu_graphs_release(be);
    cudaFree(c->inv_freq);
    c->inv_freq = NULL;
  }
  if (r->table < 0 || r->table > 1) FAIL(be, "cuda set_rope: table %d", r->table);
  const size_t half = (size_t)r->rot_dim / 2;
  if (!c->inv_freq) {
    CUDA_CHECK(be, cudaMalloc(&c->inv_freq, 2 * half * sizeof(float)));
    c->rope_set = 0, c->rope_tab = 0, c->rope_cur = c->inv_freq;
  }
  /* stream-ordered with the kernels that read it; a pageable source is copied before the call returns */
  CUDA_CHECK(be, cudaMemcpyAsync(c->inv_freq + r->table * half, r->inv_freq, half * sizeof(float), cudaMemcpyHostToDevice, c->st));
  CUDA_CHECK(be, cudaStreamSynchronize(c->st));
  c->rot_dim = r->rot_dim, c->head_dim_rope = r->head_dim;
  c->attn_factors[r->table] = r->attn_factor;
  c->rope_set |= 1 << r->table;
  if (r->table == c->rope_tab) c->attn_factor = r->attn_factor;
  return 0;
}

/* The rope kernels launched from now on read table t (a host-side choice, so a captured graph keeps it). */
static int cuda_rope_select(ig_backend *be, int t) {
  cu_impl *c = CU(be);
  if (ready(be)) return -1;
  if (t < 0 || t > 1 || !c->inv_freq || !(c->rope_set >> t & 1)) FAIL(be, "cuda rope_select: table %d was not set", t);
  c->rope_tab = t, c->rope_cur = c->inv_freq + (size_t)t * (c->rot_dim / 2), c->attn_factor = c->attn_factors[t];
  return 0;
}

/* Copies the batch to the device in one transfer, with what the kernels derive from it: each row's sequence,
 * the rows for the split-K attention kernel and the 64-row tiles for the prefill kernel. Checks every slot
 * and block id against the cache so a bad batch is an error, not a fault. */
static int cuda_set_batch(ig_backend *be, const ig_batch *b) {
  cu_impl *c = CU(be);
  if (ready(be)) return -1;
  int n = b->n_tokens, ns = b->n_seqs, mb = b->max_blocks;
  if (n < 0 || ns < 0 || b->n_out < 0 || (ns > 0 && mb <= 0 && c->kv_mem)) FAIL(be, "cuda set_batch: bad sizes");
  int tiled_ok = be->act_dtype == IG_DT_BF16 && (c->kv.head_dim == 64 || c->kv.head_dim == 128 ||
                                                  (c->kv.head_dim == 256 && c->attn_variant == 0));
  int n_tiles = 0;
  for (int s = 0; s < ns; s++) {
    int q = b->seq_start[s + 1] - b->seq_start[s];
    if (q < 0 || b->seq_start[s] < 0 || b->seq_start[s + 1] > n) FAIL(be, "cuda set_batch: bad seq_start");
    if (tiled_ok && q >= IG_ATTN_MIN_TILE_QLEN) n_tiles += (q + IG_ATTN_TILE_Q - 1) / IG_ATTN_TILE_Q;
  }
  size_t tot = (size_t)n * 3 + (ns + 1) + ns + (size_t)ns * (mb > 0 ? mb : 0) + b->n_out + n /*row_seq*/ + n /*dec*/ + 3 * (size_t)n_tiles;
  if (tot > c->meta_cap) {
    if (c->capturing) FAIL(be, "cuda set_batch: metadata grows during capture");
    CUDA_CHECK(be, cudaStreamSynchronize(c->st));
    cu_graphs_release(be);
    if (c->meta_host) cudaFreeHost(c->meta_host);
    if (c->meta_dev) cudaFree(c->meta_dev);
    c->meta_host = NULL, c->meta_dev = NULL, c->meta_cap = 0;
    size_t cap = tot + tot / 2 + 1024;
    CUDA_CHECK(be, cudaHostAlloc((void **)&c->meta_host, cap * 4, cudaHostAllocDefault));
    CUDA_CHECK(be, cudaMalloc((void **)&c->meta_dev, cap * 4));
    c->meta_cap = cap;
  }
  CUDA_CHECK(be, cudaEventSynchronize(c->meta_ev)); /* the previous step's copy has left the staging buffer */
  int *h = c->meta_host, *d = c->meta_dev;
  size_t o = 0;
  cu_batch *cb = &c->b;
#define PUT(field, src, cnt)                                                                                   \
  do {                                                                                                         \
    if ((cnt) > 0 && (src)) memcpy(h + o, (src), (size_t)(cnt) * 4);                                            \
    else if ((cnt) > 0) memset(h + o, 0, (size_t)(cnt) * 4); /* absent in op-level tests */                     \
    cb->field = d + o;                                                                                         \
    o += (size_t)(cnt);                                                                                        \
  } while (0)
  PUT(tokens, b->tokens, n);
  PUT(pos, b->pos, n);
  PUT(slot, b->slot, n);
  PUT(seq_start, b->seq_start, ns + 1);
  PUT(ctx_len, b->ctx_len, ns);
  PUT(block_table, b->block_table, (size_t)ns * (mb > 0 ? mb : 0));
  PUT(out_rows, b->out_rows, b->n_out);
#undef PUT
  int *row_seq = h + o;
  cb->row_seq = d + o;
  o += n;
  int *dec = h + o;
  cb->dec_rows = d + o;
  o += n;
  int *tiles = h + o;
  cb->tiles = d + o;
  o += 3 * (size_t)n_tiles;
  int n_dec = 0, nt = 0, max_splits = 1, max_ctx = 0;
  int64_t cap_slots = c->kv_mem ? (int64_t)c->kv.n_blocks * c->kv.block_size : 0;
  for (int s = 0; s < ns; s++) {
    int r0 = b->seq_start[s], r1 = b->seq_start[s + 1], q = r1 - r0, ctx = b->ctx_len[s];
    if (ctx > max_ctx) max_ctx = ctx;
    if (c->kv_mem) {
      int nblk = (ctx + c->kv.block_size - 1) / c->kv.block_size;
      if (ctx < q || nblk > mb) FAIL(be, "cuda set_batch: sequence %d: ctx_len %d does not fit %d blocks", s, ctx, mb);
      for (int k = 0; k < nblk; k++) {
        int id = b->block_table[(size_t)s * mb + k];
        if (id < 0 || id >= c->kv.n_blocks) FAIL(be, "cuda set_batch: sequence %d: block id %d out of range", s, id);
      }
    }
    for (int r = r0; r < r1; r++) {
      row_seq[r] = s;
      if (b->pos[r] < 0 || b->pos[r] >= ctx) FAIL(be, "cuda set_batch: row %d: position %d outside context %d", r, b->pos[r], ctx);
      if (c->kv_mem && (b->slot[r] >= cap_slots)) FAIL(be, "cuda set_batch: row %d: slot %d out of range", r, b->slot[r]);
    }
    if (tiled_ok && q >= IG_ATTN_MIN_TILE_QLEN) {
      for (int r = r0; r < r1; r += IG_ATTN_TILE_Q) {
        tiles[3 * nt] = s, tiles[3 * nt + 1] = r, tiles[3 * nt + 2] = r1 - r < IG_ATTN_TILE_Q ? r1 - r : IG_ATTN_TILE_Q;
        nt++;
      }
    } else {
      for (int r = r0; r < r1; r++) {
        dec[n_dec++] = r;
        int sp = (b->pos[r] + 1 + IG_ATTN_SPLIT_KEYS - 1) / IG_ATTN_SPLIT_KEYS;
        if (sp > max_splits) max_splits = sp;
      }
    }
  }
  for (int j = 0; j < b->n_out; j++)
    if (b->out_rows[j] < 0 || b->out_rows[j] >= n) FAIL(be, "cuda set_batch: out_rows[%d] = %d out of range", j, b->out_rows[j]);
  /* split count from the table width, not the contexts, so a captured decode graph covers every step */
  if (c->kv_mem && mb > 0) {
    int sp = (int)(((int64_t)mb * c->kv.block_size + IG_ATTN_SPLIT_KEYS - 1) / IG_ATTN_SPLIT_KEYS);
    if (sp > max_splits) max_splits = sp;
  }
  cb->n_tokens = n, cb->n_seqs = ns, cb->n_out = b->n_out, cb->max_blocks = mb;
  cb->n_dec = n_dec, cb->n_tiles = nt, cb->max_splits = max_splits, cb->max_ctx = max_ctx;
  if (o) CUDA_CHECK(be, cudaMemcpyAsync(d, h, o * 4, cudaMemcpyHostToDevice, c->st));
  CUDA_CHECK(be, cudaEventRecord(c->meta_ev, c->st));
  return 0;
}

/* ---- op wrappers ------------------------------------------------------------------------------------- */
/* IGNIS_CUDA_PROFILE: sums the recorded event pairs into their labels. */
static void prof_flush(cu_impl *c) {
  cu_prof *p = c->prof;
  if (!p || !p->n) return;
  cudaEventSynchronize(p->ev[2 * p->n - 1]);
  for (int i = 0; i < p->n; i++) {
    float ms = 0;
    if (cudaEventElapsedTime(&ms, p->ev[2 * i], p->ev[2 * i + 1]) == cudaSuccess) p->ms[p->lab[i]] += ms;
    p->calls[p->lab[i]]++;
  }
  p->n = 0;
}
static int prof_label(cu_prof *p, const char *name) {
  for (int i = 0; i < p->n_names; i++)
    if (!strcmp(p->names[i], name)) return i;
  if (p->n_names == CU_PROF_LABELS) return CU_PROF_LABELS - 1;
  snprintf(p->names[p->n_names], sizeof p->names[0], "%s", name);
  return p->n_names++;
}
static int prof_begin(ig_backend *be, const char *name) {
  cu_impl *c = CU(be);
  if (!c->prof || c->capturing) return -1;
  if (c->prof->n == CU_PROF_PAIRS) prof_flush(c);
  int i = c->prof->n;
  c->prof->lab[i] = (short)prof_label(c->prof, name);
  cudaEventRecord(c->prof->ev[2 * i], c->st);
  return i;
}
static void prof_end(ig_backend *be, int i) {
  cu_impl *c = CU(be);
  if (i < 0) return;
  cudaEventRecord(c->prof->ev[2 * i + 1], c->st);
  c->prof->n = i + 1;
}
static void prof_report(cu_impl *c) {
  if (!c->prof) return;
  prof_flush(c);
  double tot = 0;
  for (int i = 0; i < c->prof->n_names; i++) tot += c->prof->ms[i];
  fprintf(stderr, "cuda profile (op, calls, total ms, mean us, share):\n");
  for (int i = 0; i < c->prof->n_names; i++)
    fprintf(stderr, "  %-44s %8lld %10.2f %9.1f %5.1f%%\n", c->prof->names[i], c->prof->calls[i], c->prof->ms[i],
            c->prof->calls[i] ? c->prof->ms[i] * 1e3 / c->prof->calls[i] : 0, tot > 0 ? 100 * c->prof->ms[i] / tot : 0);
  for (int i = 0; i < 2 * CU_PROF_PAIRS; i++) cudaEventDestroy(c->prof->ev[i]);
  free(c->prof);
  c->prof = NULL;
}
/* the label of a matmul: its weight's shape, and whether the GEMV (m <= 8) or a GEMM ran */
static const char *mm_label(char *buf, size_t n, const char *op, const ig_tensor *x, const ig_tensor *w) {
  if (x->rows <= 512) snprintf(buf, n, "%s %lldx%lld m=%lld", op, (long long)w->rows, (long long)w->cols, (long long)x->rows);
  else snprintf(buf, n, "%s %lldx%lld m>512", op, (long long)w->rows, (long long)w->cols);
  return buf;
}
/* the same for products over several weights (q|k|v): their rows together */
static const char *mm_label_n(char *buf, size_t n, const char *op, const ig_tensor *x, const ig_tensor *const *ws, int k) {
  if (k < 1) return op; /* the op itself rejects it */
  ig_tensor w = *ws[0];
  for (int i = 1; i < k; i++) w.rows += ws[i]->rows;
  return mm_label(buf, n, op, x, &w);
}
static const char *step_label(char *buf, size_t n, ig_backend *be, const char *op) {
  snprintf(buf, n, "%s %s", op, CU(be)->b.n_tokens == CU(be)->b.n_seqs ? "(decode step)" : "(prefill step)");
  return buf;
}

#define OPW_L(name, decl, label, call)                                                                         \
  static int name decl {                                                                                       \
    if (ready(be)) return -1;                                                                                  \
    char lb_[64];                                                                                              \
    int pi_ = CU(be)->prof ? prof_begin(be, label) : -1;                                                       \
    (void)lb_;                                                                                                 \
    int rc_ = call;                                                                                            \
    prof_end(be, pi_);                                                                                         \
    if (rc_) cu_graph_abort(be);                                                                               \
    return rc_;                                                                                                \
  }
#define OPW(name, decl, call) OPW_L(name, decl, #name, call)
OPW(op_embed, (ig_backend * be, ig_tensor *out, const ig_tensor *table), cu_embed(be, out, table))
OPW(op_rmsnorm, (ig_backend * be, ig_tensor *out, ig_tensor *x, const ig_tensor *r, const ig_tensor *w, float eps),
    cu_rmsnorm(be, out, x, r, w, eps))
OPW(op_rmsnorm_post, (ig_backend * be, ig_tensor *out, ig_tensor *x, const ig_tensor *r, const ig_tensor *wr,
                      const ig_tensor *w, float eps), cu_rmsnorm_post(be, out, x, r, wr, w, eps))
OPW_L(op_matmul, (ig_backend * be, ig_tensor *out, const ig_tensor *x, const ig_tensor *w, const ig_tensor *bias),
      mm_label(lb_, sizeof lb_, "matmul", x, w), cu_matmul(be, out, x, w, bias))
OPW(op_rope, (ig_backend * be, ig_tensor *q, ig_tensor *k, int nh, int nkv), cu_rope(be, q, k, nh, nkv))
OPW(op_swiglu, (ig_backend * be, ig_tensor *out, const ig_tensor *g, const ig_tensor *u), cu_swiglu(be, out, g, u))
OPW(op_kv_write, (ig_backend * be, int layer, const ig_tensor *k, const ig_tensor *v), cu_kv_write(be, layer, k, v))
OPW_L(op_attention, (ig_backend * be, ig_tensor *out, const ig_tensor *q, int layer, const ig_attn_params *p),
    step_label(lb_, sizeof lb_, be, "attention"), cu_attention(be, out, q, layer, p))
OPW(op_gather_rows, (ig_backend * be, ig_tensor *out, const ig_tensor *x), cu_gather_rows(be, out, x))
OPW(op_add, (ig_backend * be, ig_tensor *x, const ig_tensor *y), cu_add(be, x, y))
OPW(op_geglu, (ig_backend * be, ig_tensor *out, const ig_tensor *g, const ig_tensor *u), cu_geglu(be, out, g, u))
OPW(op_scale, (ig_backend * be, ig_tensor *x, float s), cu_scale(be, x, s))
OPW(op_softcap, (ig_backend * be, ig_tensor *x, float cap), cu_softcap(be, x, cap))
OPW(op_rope_kv_write, (ig_backend * be, ig_tensor *q, ig_tensor *k, const ig_tensor *v, int nh, int nkv, int layer),
    cu_rope_kv_write(be, q, k, v, nh, nkv, layer))
OPW(op_qk_norm_rope_kv_write, (ig_backend * be, ig_tensor *qn, ig_tensor *kn, const ig_tensor *q, const ig_tensor *k,
                               const ig_tensor *v, const ig_tensor *wq, const ig_tensor *wk, float eps, int nh, int nkv,
                               int layer), cu_qk_norm_rope_kv_write(be, qn, kn, q, k, v, wq, wk, eps, nh, nkv, layer))
OPW_L(op_matmul_n, (ig_backend * be, int n, ig_tensor *const *outs, const ig_tensor *x, const ig_tensor *const *ws,
                    const ig_tensor *const *bs), mm_label_n(lb_, sizeof lb_, "matmul_n", x, ws, n), cu_matmul_n(be, n, outs, x, ws, bs))
OPW_L(op_qkv_rope_kv_write, (ig_backend * be, ig_tensor *q, ig_tensor *k, ig_tensor *v, const ig_tensor *x,
                            const ig_tensor *const *ws, int nh, int nkv, int layer),
    mm_label_n(lb_, sizeof lb_, "qkv_rope_kv_write", x, ws, 3), cu_qkv_rope_kv_write(be, q, k, v, x, ws, nh, nkv, layer))
OPW_L(op_matmul_swiglu, (ig_backend * be, ig_tensor *out, ig_tensor *up, const ig_tensor *x, const ig_tensor *wg,
                       const ig_tensor *bg, const ig_tensor *wu, const ig_tensor *bu),
    mm_label(lb_, sizeof lb_, "matmul_swiglu", x, wg), cu_matmul_swiglu(be, 0, out, up, x, wg, bg, wu, bu))
OPW_L(op_matmul_geglu, (ig_backend * be, ig_tensor *out, ig_tensor *up, const ig_tensor *x, const ig_tensor *wg,
                       const ig_tensor *bg, const ig_tensor *wu, const ig_tensor *bu),
    mm_label(lb_, sizeof lb_, "matmul_geglu", x, wg), cu_matmul_swiglu(be, 1, out, up, x, wg, bg, wu, bu))
OPW(op_argmax_rows, (ig_backend * be, const ig_tensor *logits, int32_t *ids), cu_argmax_rows(be, logits, ids))
OPW(op_sample, (ig_backend * be, const ig_tensor *logits, const ig_sample_row *rows, int n, ig_sample_out *out),
    cu_sample(be, logits, rows, n, out))
OPW(op_sample_wait, (ig_backend * be), cu_sample_wait(be))

static int cuda_mem_info(ig_backend *be, size_t *free_bytes, size_t *total_bytes) {
  if (ready(be)) return -1;
  CUDA_CHECK(be, cudaMemGetInfo(free_bytes, total_bytes));
  return 0;
}

/* ---- create / destroy -------------------------------------------------------------------------------- */
static void cuda_destroy(ig_backend *be) {
  if (!be) return;
  cu_impl *c = CU(be);
  if (c) {
    ready(be);
    if (c->st) cudaStreamSynchronize(c->st);
    prof_report(c);
    cu_graphs_release(be);
    cu_matmul_release(be);
    cu_sample_release(be);
    if (c->lt) cublasLtDestroy(c->lt);
    cudaFree(c->lt_ws);
    cudaFree(c->kv_mem);
    free(c->kv_ks);
    free(c->kv_vs);
    cudaFree(c->scratch);
    cudaFree(c->fscratch);
    cudaFree(c->sg_part);
    cudaFree(c->sg_cnt);
    cudaFree(c->scratch2);
    cudaFree(c->dl);
    cudaFree(c->inv_freq);
    cudaFree(c->meta_dev);
    if (c->meta_host) cudaFreeHost(c->meta_host);
    if (c->meta_ev) cudaEventDestroy(c->meta_ev);
    if (c->st) cudaStreamDestroy(c->st);
    free(c);
  }
  free(be);
}

/* An integer knob from the environment: 1 and *out set when it is a number in [lo, hi]; a value that is not is
 * logged and ignored (0: the caller keeps its default), never read as 0 the way atoi would. */
static int env_int(const char *name, long lo, long hi, int *out) {
  const char *v = getenv(name);
  if (!v) return 0;
  char *end;
  long x = strtol(v, &end, 10);
  if (end == v || *end || x < lo || x > hi) {
    ig_log(IG_LOG_WARN, "%s=%s is not a number in [%ld, %ld]; using the default", name, v, lo, hi);
    return 0;
  }
  *out = (int)x;
  return 1;
}

extern "C" ig_backend *ig_backend_cuda_create_ex(int device, ig_dtype act, char *err, size_t errlen) {
  int ndev = 0;
  cudaError_t e = cudaGetDeviceCount(&ndev);
  if (e != cudaSuccess || ndev == 0) {
    snprintf(err, errlen, "cuda: no GPU found (%s)", e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
    return NULL;
  }
  if (device < 0 || device >= ndev) {
    snprintf(err, errlen, "cuda: device %d does not exist (%d found)", device, ndev);
    return NULL;
  }
  if (act != IG_DT_BF16 && act != IG_DT_F32) {
    snprintf(err, errlen, "cuda: activations must be BF16 or F32");
    return NULL;
  }
  ig_backend *be = (ig_backend *)calloc(1, sizeof *be);
  cu_impl *c = (cu_impl *)calloc(1, sizeof *c);
  if (!be || !c) {
    free(be), free(c);
    snprintf(err, errlen, "cuda: out of host memory");
    return NULL;
  }
  be->impl = c;
  be->name = "cuda";
  be->act_dtype = act;
  be->weights_copied = 1; /* to the device */
  be->kv_canon_rows = IG_ATTN_MIN_TILE_QLEN; /* fewer rows of a sequence go to the decode attention kernel */
  c->device = device;
  const char *g = getenv("IGNIS_CUDA_GEMV");
  c->use_gemv = !(g && g[0] == '0');
  c->fused_qkv_gemm = !getenv("IGNIS_CUDA_NO_FUSED_GEMM");
  const char *gt = getenv("IGNIS_CUDA_GEMM_TUNE");
  c->gemm_tune = gt && gt[0] == '1';
  const char *fg = getenv("IGNIS_CUDA_FUSED_GATE_UP");
  c->fused_gate_up = fg && fg[0] == '1';
  const char *pe = getenv("IGNIS_CUDA_PROFILE");
  if (pe && pe[0] == '1' && (c->prof = (cu_prof *)calloc(1, sizeof(cu_prof)))) {
    for (int i = 0; i < 2 * CU_PROF_PAIRS; i++) cudaEventCreate(&c->prof->ev[i]);
  }
  const char *ds = getenv("IGNIS_CUDA_DECODE_STAGED");
  c->decode_staged = !(ds && ds[0] == '0');
  const char *dk = getenv("IGNIS_CUDA_DECODE");
  c->decode_simt = dk && !strcmp(dk, "simt");
  const char *cbl = getenv("IGNIS_CUDA_COMBINE");
  c->combine_loop = cbl && !strcmp(cbl, "loop");
  c->decode_fused = -1; /* (row, kv head) pairs from which the fused kernel runs; default the SM count (H100, 8B
                         * shape: B = 32 6.67 against 6.75-6.79 ms with the split kernel, B = 16 the same either way),
                         * set once the device is known */
  env_int("IGNIS_CUDA_DECODE_FUSED", 0, INT32_MAX, &c->decode_fused);
  const char *ss = getenv("IGNIS_CUDA_SAMPLE_SPLIT");
  c->sample_split = !(ss && ss[0] == '0');
  const char *de = getenv("IGNIS_CUDA_DECODE_EARLY");
  c->decode_early = !(de && de[0] == '0');
  int scr_mb = 256;
  env_int("IGNIS_CUDA_ATTN_SCRATCH_MB", 1, 1 << 20, &scr_mb);
  c->attn_scratch_cap = (size_t)scr_mb << 20;
  const char *qr = getenv("IGNIS_CUDA_QKV_ROPE"); /* "0": q|k|v split into three tensors, then the rope + KV write op */
  c->qkv_rope = !(qr && qr[0] == '0');
  const char *pd = getenv("IGNIS_CUDA_PDL");
  c->pdl = !(pd && pd[0] == '0');
  const char *av = getenv("IGNIS_CUDA_ATTN");
  c->attn_variant = av && !strcmp(av, "wmma") ? 1 : 0;
  c->sgemm_waves = 1; /* the "sgemm" mode's K splits: blocks per SM */
  env_int("IGNIS_CUDA_SGEMM_WAVES", 1, 64, &c->sgemm_waves);
  c->sg_bn = 0; /* auto */
  if (env_int("IGNIS_CUDA_SGEMM_BN", 48, 64, &c->sg_bn) && c->sg_bn != 48 && c->sg_bn != 64) {
    ig_log(IG_LOG_WARN, "IGNIS_CUDA_SGEMM_BN=%d: must be 48 or 64; chosen per product", c->sg_bn);
    c->sg_bn = 0;
  }
  const char *sbk = getenv("IGNIS_CUDA_SGEMM_BULK");
  c->sg_bulk = !(sbk && sbk[0] == '0'); /* on Hopper */
  const char *sdp = getenv("IGNIS_CUDA_SGEMM_DEEP");
  c->sg_deep = !(sdp && sdp[0] == '0'); /* deep stages for plain products (the SwiGLU one measured slower with them) */
  /* IGNIS_CUDA_BATCH_INVARIANT: a row's result must not depend on the other rows of its step (DESIGN's engine rule:
   * a seeded request gives the same output whatever else is in the batch).
   *   unset, "1" (default): no GEMV (its sums differ from a GEMM's); cuBLASLt algorithms without split-K, chosen
   *     per m from IGNIS_CUDA_BI_AUTO_MIN rows up (the 17-row choice below), or one per shape chosen at
   *     IGNIS_CUDA_BI_REF_M rows; q|k|v stay one product at every m; up to IGNIS_CUDA_BI_SGEMM rows, the skinny
   *     GEMM without K splits for the products where it gives cuBLASLt's bits (cuda_matmul.cu checks each shape).
   *   "0": the same, but the GEMV for 1-2 rows, whose bits depend on the step's row count (batch-1 decode ~2%
   *     faster on the H100). (Before the skinny GEMM matched cuBLASLt, "0" had its own split-K forms for 3-16 rows
   *     and cuBLASLt's heuristic above; the forms above are now as fast or faster there.)
   *   "sgemm": the older form, every product through the skinny GEMM in 128-row launches (several times slower).
   *   "heur": for measurements: cuBLASLt's heuristic choice at every m (split-K allowed), the GEMV for 1-2 rows. */
  const char *bi = getenv("IGNIS_CUDA_BATCH_INVARIANT");
  c->batch_invariant = bi && !strcmp(bi, "sgemm");
  if (c->batch_invariant) c->use_gemv = 0, c->sgemm_max = 128;
  int fastest = bi && !strcmp(bi, "0");
  int heur = bi && !strcmp(bi, "heur"); /* measurement only: cuBLASLt's own heuristic (split-K allowed), no skinny GEMM */
  c->bi_lt = !c->batch_invariant && !heur;
  const char *brm = getenv("IGNIS_CUDA_BI_REF_M");
  c->bi_ref_m = 0; /* default (or "auto"): the choice per m */
  if (!(brm && !strcmp(brm, "auto"))) env_int("IGNIS_CUDA_BI_REF_M", 1, 1 << 20, &c->bi_ref_m);
  c->bi_auto_min = 17;
  env_int("IGNIS_CUDA_BI_AUTO_MIN", 1, 1 << 20, &c->bi_auto_min);
  /* IGNIS_CUDA_BI_SGEMM=N: rows up to N (<= 128) through the skinny GEMM without K splits, which sums each output
   * in cuBLASLt's order (see cuda_gemm.cu), so those rows are bitwise what cuBLASLt gives at any m */
  int bi_sg = IG_CUDA_BI_SGEMM_DEFAULT, bi_sw = 0;
  int bsg = env_int("IGNIS_CUDA_BI_SGEMM", 0, 128, &bi_sg);
  if (c->bi_lt) c->use_gemv = fastest && c->use_gemv, c->sgemm_max = bi_sg;
  if (heur) c->sgemm_max = 0;
  /* rows up to which gate/up/SwiGLU takes the skinny GEMM: measured on the H100 (8B shape), that product gains from it
   * up to 64 rows (m = 48: 89.5 against cuBLASLt's 94.6 us; decode B = 40 / 64 -1%), the others only up to 32; a limit
   * set with IGNIS_CUDA_BI_SGEMM applies to it too, unless IGNIS_CUDA_BI_SGEMM_SWIGLU sets its own */
  c->sgemm_max_swiglu = !bsg && c->sgemm_max > 0 && c->sgemm_max < 64 && c->bi_lt && !heur ? 64 : c->sgemm_max;
  if (env_int("IGNIS_CUDA_BI_SGEMM_SWIGLU", 0, 128, &bi_sw) && c->bi_lt && !heur) c->sgemm_max_swiglu = bi_sw;
  c->bi_sg_tiles = -1; /* two thirds of the SM count, set once the device is known */
  env_int("IGNIS_CUDA_BI_SGEMM_TILES", 0, INT32_MAX, &c->bi_sg_tiles);
#define CK(call)                                                                                               \
  do {                                                                                                         \
    cudaError_t e_ = (call);                                                                                   \
    if (e_ != cudaSuccess) {                                                                                   \
      snprintf(err, errlen, "%s:%d: %s: %s", __FILE__, __LINE__, #call, cudaGetErrorString(e_));              \
      cuda_destroy(be);                                                                                        \
      return NULL;                                                                                             \
    }                                                                                                          \
  } while (0)
  CK(cudaSetDevice(device));
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, device));
  c->sm_count = prop.multiProcessorCount;
  if (c->bi_sg_tiles < 0) c->bi_sg_tiles = c->sm_count * 2 / 3;
  if (c->decode_fused < 0) c->decode_fused = c->sm_count;
  c->sm90 = prop.major >= 9;
  if (prop.major < 9) c->pdl = 0; /* programmatic dependent launch is Hopper's */
  {
    cudaError_t pe = cu_kernels_probe();
    if (pe != cudaSuccess) {
      snprintf(err, errlen, "this ignis has no CUDA code for %s (sm_%d%d): rebuild with -DIGNIS_CUDA_ARCHS=\"90a;%d%d\" (%s)",
               prop.name, prop.major, prop.minor, prop.major, prop.minor, cudaGetErrorString(pe));
      cuda_destroy(be);
      return NULL;
    }
  }
  CK(cudaStreamCreateWithFlags(&c->st, cudaStreamNonBlocking));
  CK(cudaEventCreateWithFlags(&c->meta_ev, cudaEventDisableTiming));
  CK(cudaEventRecord(c->meta_ev, c->st));
  c->lt_ws_size = 32u << 20;
  CK(cudaMalloc(&c->lt_ws, c->lt_ws_size));
#undef CK
  if (cublasLtCreate(&c->lt) != CUBLAS_STATUS_SUCCESS) {
    snprintf(err, errlen, "cuda: cublasLtCreate failed");
    cuda_destroy(be);
    return NULL;
  }
  be->destroy = cuda_destroy;
  be->alloc = cuda_alloc;
  be->free = cuda_free;
  be->weight = cuda_weight;
  be->download_f32 = cuda_download_f32;
  be->upload = cuda_upload;
  be->sync = cuda_sync;
  be->kv_init = cuda_kv_init;
  be->kv_bytes_per_block = cuda_kv_bytes_per_block;
  be->set_batch = cuda_set_batch;
  be->set_rope = cuda_set_rope;
  be->embed = op_embed;
  be->rmsnorm = op_rmsnorm;
  const char *np_ = getenv("IGNIS_CUDA_NORM_POST"); /* "0": Gemma's post norms as separate ops (the same bits) */
  if (!(np_ && np_[0] == '0')) be->rmsnorm_post = op_rmsnorm_post;
  be->matmul = op_matmul;
  be->rope = op_rope;
  be->swiglu = op_swiglu;
  be->kv_write = op_kv_write;
  be->attention = op_attention;
  be->gather_rows = op_gather_rows;
  be->add = op_add;
  be->geglu = op_geglu;
  be->scale = op_scale;
  be->softcap = op_softcap;
  be->rope_select = cuda_rope_select;
  be->mem_info = cuda_mem_info;
  be->argmax_rows = op_argmax_rows;
  be->sample = op_sample;
  be->sample_wait = op_sample_wait;
  be->matmul_n = op_matmul_n;
  be->weight_alloc = cuda_weight_alloc;
  be->weight_rows = cuda_weight_rows;
  be->weight_keep = cuda_weight_keep;
  be->weight_fp8 = act == IG_DT_BF16 ? cuda_weight_fp8 : NULL; /* f32 activations: the loader's host path */
  be->rope_kv_write = op_rope_kv_write;
  const char *qk_ = getenv("IGNIS_CUDA_QK_NORM_FUSED"); /* "0": q/k norms and rope + KV write as separate ops */
  if (!(qk_ && qk_[0] == '0')) be->qk_norm_rope_kv_write = op_qk_norm_rope_kv_write;
  be->qkv_rope_kv_write = op_qkv_rope_kv_write;
  be->matmul_swiglu = op_matmul_swiglu;
  be->matmul_geglu = op_matmul_geglu;
  cu_graphs_install(be);
  return be;
}

extern "C" int ig_backend_cuda_device_count(void) {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError(); /* clear the sticky "no driver" error */
    return 0;
  }
  return n;
}

extern "C" ig_backend *ig_backend_cuda_create(int device, char *err, size_t errlen) {
  return ig_backend_cuda_create_ex(device, IG_DT_BF16, err, errlen);
}
