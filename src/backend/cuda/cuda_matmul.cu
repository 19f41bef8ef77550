/* backend/cuda/cuda_matmul.cu: out[m, O] = x[m, I] @ W[O, I]^T (+ bias) through cuBLASLt (bf16 or f16 in, f32
 * accumulate; pure f32 in the f32 mode), with the plans (descriptors + heuristic algorithm) cached per shape so
 * a decode step costs no planning; and a GEMV kernel of our own for m <= IG_GEMV_MAX_M bf16 rows (decode), which streams
 * the weight once with 16-byte loads, used only with IGNIS_CUDA_BATCH_INVARIANT=0 (IGNIS_CUDA_GEMV=0 turns it off
 * there). Up to IGNIS_CUDA_BI_SGEMM rows (default 32) of the products with enough 64-row tiles go to cuda_gemm.cu's
 * skinny tensor-core GEMM without K splits, once sg_verified has seen it give cuBLASLt's bits for the shape. */
#include "backend/cuda/cuda_common.h"
#include "backend/cuda/cuda_dtype.cuh"
extern "C" {
#include "util/log.h"
}
#include <stdlib.h>
#include <string.h>

/* ---- GEMV for small m -------------------------------------------------------------------------------- */
__device__ __forceinline__ uint4 ld_stream(const uint4 *p) {
  uint4 r;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
               : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
               : "l"(p));
  return r;
}
__device__ __forceinline__ void bf16x8(uint4 v, float *f) {
  const __nv_bfloat162 *h = (const __nv_bfloat162 *)&v;
#pragma unroll
  for (int i = 0; i < 4; i++) {
    float2 t = __bfloat1622float2(h[i]);
    f[2 * i] = t.x, f[2 * i + 1] = t.y;
  }
}

/* One warp per output feature o: lanes stride over W[o, :] in 16-byte chunks (8 bf16, loaded once, not kept in
 * L1), multiply with each of the M input rows (read through the read-only cache: they are small and shared by
 * every warp), then reduce over the warp. 8 warps per block. Needs I % 8 == 0. Several weights over the same x go
 * in one launch (q/k/v): warps are numbered over the concatenated output rows and each finds its segment, so one
 * weight alone and the same weight among others give bitwise the same results. */
struct gemv_seg {
  const __nv_bfloat16 *W;
  void *out;
  const void *bias;
  int odt, bdt, O;
};
struct gemv_multi_args {
  gemv_seg s[4];
  int n, I;
};

template <int M>
__global__ void __launch_bounds__(256) gemv_multi_kernel(const gemv_multi_args a, const __nv_bfloat16 *__restrict__ x) {
  PDL_ENTRY();
  int o = blockIdx.x * 8 + (threadIdx.x >> 5);
  int lane = threadIdx.x & 31;
  int k = 0;
  while (k < a.n && o >= a.s[k].O) o -= a.s[k].O, k++;
  if (k >= a.n) return;
  const int O = a.s[k].O, I = a.I;
  const uint4 *wr = (const uint4 *)(a.s[k].W + (size_t)o * I);
  const uint4 *xr = (const uint4 *)x;
  int nc = I / 8;
  float acc[M];
#pragma unroll
  for (int m = 0; m < M; m++) acc[m] = 0.f;
#pragma unroll(M <= 2 ? 8 : 4) /* loads in flight per lane: 8 took batch-1 decode 5.77 -> 5.71 ms (H100); 16 no further */
  for (int c = lane; c < nc; c += 32) {
    float wf[8], xf[8];
    bf16x8(ld_stream(wr + c), wf);
#pragma unroll
    for (int m = 0; m < M; m++) {
      bf16x8(__ldg(xr + (size_t)m * nc + c), xf);
#pragma unroll
      for (int e = 0; e < 8; e++) acc[m] += wf[e] * xf[e];
    }
  }
#pragma unroll
  for (int m = 0; m < M; m++) acc[m] = warp_sum(acc[m]);
  if (lane == 0) {
    float b = a.s[k].bias ? ldf(a.s[k].bias, a.s[k].bdt, o) : 0.f;
#pragma unroll
    for (int m = 0; m < M; m++) stf(a.s[k].out, a.s[k].odt, (long long)m * O + o, acc[m] + b);
  }
}

static int gemv_launch(ig_backend *be, const gemv_multi_args &a, const __nv_bfloat16 *X, int m, int64_t total) {
  dim3 grid((unsigned)((total + 7) / 8));
  switch (m) {
#define G(M) case M: CU_LAUNCH(be, (gemv_multi_kernel<M>), grid, 256, 0, a, X); break;
    G(1) G(2) G(3) G(4) G(5) G(6) G(7) G(8)
#undef G
  }
  LAUNCH_CHECK(be);
  return 0;
}

static int gemv(ig_backend *be, ig_tensor *out, const ig_tensor *x, const ig_tensor *w, const ig_tensor *bias, int m) {
  gemv_multi_args a;
  memset(&a, 0, sizeof a);
  a.n = 1, a.I = (int)w->cols;
  a.s[0] = gemv_seg{(const __nv_bfloat16 *)w->data, out->data, bias ? bias->data : NULL, (int)out->dtype,
                    bias ? (int)bias->dtype : 0, (int)w->rows};
  return gemv_launch(be, a, (const __nv_bfloat16 *)x->data, m, w->rows);
}

/* gate and up rows o of one warp, then silu(gate) * up: the two products rounded to their tensors' dtypes first,
 * as the separate matmuls would store them, so the result is bitwise matmul, matmul, swiglu. */
__device__ __forceinline__ float round_to(float v, int dt) {
  return dt == IG_DT_BF16 ? __bfloat162float(__float2bfloat16(v)) : dt == IG_DT_F16 ? __half2float(__float2half(v)) : v;
}

template <int M>
__global__ void __launch_bounds__(256) gemv_swiglu_kernel(const __nv_bfloat16 *__restrict__ Wg, const __nv_bfloat16 *__restrict__ Wu,
                                                          const __nv_bfloat16 *__restrict__ x, void *out, int odt, int udt,
                                                          const void *bg, const void *bu, int bdt, int O, int I) {
  PDL_ENTRY();
  int o = blockIdx.x * 8 + (threadIdx.x >> 5);
  int lane = threadIdx.x & 31;
  if (o >= O) return;
  const uint4 *gr = (const uint4 *)(Wg + (size_t)o * I), *ur = (const uint4 *)(Wu + (size_t)o * I);
  const uint4 *xr = (const uint4 *)x;
  int nc = I / 8;
  float ag[M], au[M];
#pragma unroll
  for (int m = 0; m < M; m++) ag[m] = au[m] = 0.f;
#pragma unroll(M <= 2 ? 4 : 2)
  for (int c = lane; c < nc; c += 32) {
    float gf[8], uf[8], xf[8];
    bf16x8(ld_stream(gr + c), gf);
    bf16x8(ld_stream(ur + c), uf);
#pragma unroll
    for (int m = 0; m < M; m++) {
      bf16x8(__ldg(xr + (size_t)m * nc + c), xf);
#pragma unroll
      for (int e = 0; e < 8; e++) ag[m] += gf[e] * xf[e], au[m] += uf[e] * xf[e];
    }
  }
#pragma unroll
  for (int m = 0; m < M; m++) ag[m] = warp_sum(ag[m]), au[m] = warp_sum(au[m]);
  if (lane == 0) {
    float b1 = bg ? ldf(bg, bdt, o) : 0.f, b2 = bu ? ldf(bu, bdt, o) : 0.f;
#pragma unroll
    for (int m = 0; m < M; m++) {
      float g = round_to(ag[m] + b1, odt), u = round_to(au[m] + b2, udt);
      stf(out, odt, (long long)m * O + o, g / (1.f + expf(-g)) * u);
    }
  }
}

/* Whether the GEMV takes x @ w^T (bf16, m <= IG_GEMV_MAX_M, I % 8 == 0, 16-byte aligned rows). */
static int gemv_ok(ig_backend *be, const ig_tensor *x, const ig_tensor *w) {
  return w->dtype == IG_DT_BF16 && x->dtype == IG_DT_BF16 && x->rows >= 1 && x->rows <= IG_GEMV_MAX_M && w->cols % 8 == 0 &&
         CU(be)->use_gemv && ((uintptr_t)x->data | (uintptr_t)w->data) % 16 == 0;
}

static int check_mm(ig_backend *be, const ig_tensor *out, const ig_tensor *x, const ig_tensor *w, const ig_tensor *bias) {
  int64_t m = x->rows, O = w->rows, I = w->cols;
  if (x->cols != I) FAIL(be, "cuda matmul: x has %lld columns, W has %lld", (long long)x->cols, (long long)I);
  if (out->cols != O || out->rows < m) FAIL(be, "cuda matmul: out is [%lld, %lld], want [%lld, %lld]", (long long)out->rows,
                                            (long long)out->cols, (long long)m, (long long)O);
  if (bias && ig_tensor_numel(bias) != O) FAIL(be, "cuda matmul: bias has %lld elements, want %lld", (long long)ig_tensor_numel(bias), (long long)O);
  if (bias && bias->dtype == IG_DT_I32) FAIL(be, "cuda matmul: bias of dtype i32");
  return 0;
}

static int lt_matmul(ig_backend *be, void *out, int odt, const void *x, int xdt, const void *w, int wdt, const void *bias,
                     int bdt, int64_t m, int64_t O, int64_t I);

/* Whether b's rows follow a's in memory (one weight_alloc buffer): one GEMM can cover both. */
static int adjacent(const ig_tensor *a, const ig_tensor *b) {
  return a->dtype == b->dtype && a->cols == b->cols &&
         (const char *)a->data + (size_t)a->rows * (size_t)a->cols * ig_dtype_size(a->dtype) == (const char *)b->data;
}

/* out_k[r, :] = src[r, off_k .. off_k + w_k) for up to 4 column segments of a [m, total] product. */
struct split_args {
  void *out[4];
  int off[4], w[4], odt[4];
  int n;
};
__global__ void split_cols_kernel(const split_args a, const void *src, int sdt, int total) {
  PDL_ENTRY();
  long long r = blockIdx.x;
  for (int t = threadIdx.x; t < total; t += blockDim.x) {
    int k = 0;
    while (k + 1 < a.n && t >= a.off[k + 1]) k++;
    int col = t - a.off[k];
    stf(a.out[k], a.odt[k], r * a.w[k] + col, ldf(src, sdt, r * total + t));
  }
}

/* The same copy 16 bytes at a time (2-byte elements, every segment 8-aligned): blocks (row, part), one chunk per
 * thread. The loop above is latency-bound at 6,144 columns (15 us per q|k|v split on the H100 at any m). */
__global__ void split_cols16_kernel(const split_args a, const uint4 *src, int total8) {
  PDL_ENTRY();
  long long r = blockIdx.x;
  int t = blockIdx.y * blockDim.x + threadIdx.x;
  if (t >= total8) return;
  int k = 0;
  while (k + 1 < a.n && t >= a.off[k + 1] / 8) k++;
  ((uint4 *)a.out[k])[r * (a.w[k] / 8) + t - a.off[k] / 8] = src[r * total8 + t];
}

/* out[r, j] = silu(s[r, j]) * s[r, I + j] over a [m, 2I] gate|up product (values already rounded as stored). */
__global__ void swiglu_halves_kernel(void *out, int odt, const void *s, int sdt, int I, long long n) {
  PDL_ENTRY();
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    long long r = i / I, j = i % I;
    float a = ldf(s, sdt, r * 2 * I + j);
    stf(out, odt, i, a / (1.f + expf(-a)) * ldf(s, sdt, r * 2 * I + I + j));
  }
}

static int lt_matmul(ig_backend *be, void *out, int odt, const void *x, int xdt, const void *w, int wdt, const void *bias,
                     int bdt, int64_t m, int64_t O, int64_t I);

/* The batch-invariant mode gives a product to the skinny GEMM (no K split) only once that has given, on random rows,
 * bitwise what cuBLASLt gives for the same weights: true of the algorithms cuBLASLt picks for the Llama-3-8B shapes on
 * the H100 (they sum K in order, as the skinny GEMM does), not of every shape (I = 4096, O = 333 differed), so each
 * (O, I) is checked at its first use, outside graph capture, and keeps cuBLASLt when it differs. */
static int sg_verified(ig_backend *be, const ig_tensor *w) {
  cu_impl *c = CU(be);
  for (int i = 0; i < c->n_sgv; i++)
    if (c->sgv[i].O == w->rows && c->sgv[i].I == w->cols) return c->sgv[i].ok;
  if (c->capturing || c->n_sgv >= IG_CUDA_SGV) return 0;
  const int R = 20; /* two m tiles' worth of neither size: partial tiles too */
  int64_t O = w->rows, I = w->cols;
  size_t nx = (size_t)R * I, no = (size_t)R * O;
  uint16_t *hx = (uint16_t *)malloc(nx * 2), *h1 = (uint16_t *)malloc(no * 2), *h2 = (uint16_t *)malloc(no * 2);
  void *dx = NULL, *d1 = NULL, *d2 = NULL;
  int ok = 0, ran = 0;
  if (hx && h1 && h2 && cudaMalloc(&dx, nx * 2) == cudaSuccess && cudaMalloc(&d1, no * 2) == cudaSuccess &&
      cudaMalloc(&d2, no * 2) == cudaSuccess) {
    ran = 1;
    uint32_t r = 0x9e3779b9u;
    for (size_t i = 0; i < nx; i++) {
      r = r * 1664525u + 1013904223u;
      float v = ((int)(r >> 9) % 2001 - 1000) * 1e-3f;
      uint32_t b;
      memcpy(&b, &v, 4);
      hx[i] = (uint16_t)((b + 0x7fffu + ((b >> 16) & 1)) >> 16);
    }
    sg_seg_desc d = {d2, NULL, IG_DT_BF16, 0, (int)O, 0};
    ok = cudaMemcpyAsync(dx, hx, nx * 2, cudaMemcpyHostToDevice, c->st) == cudaSuccess &&
         lt_matmul(be, d1, IG_DT_BF16, dx, IG_DT_BF16, w->data, IG_DT_BF16, NULL, 0, R, O, I) == 0 &&
         cu_sgemm(be, &d, 1, w->data, NULL, NULL, 0, 0, dx, R, (int)O, (int)I) == 0 &&
         cudaMemcpyAsync(h1, d1, no * 2, cudaMemcpyDeviceToHost, c->st) == cudaSuccess &&
         cudaMemcpyAsync(h2, d2, no * 2, cudaMemcpyDeviceToHost, c->st) == cudaSuccess &&
         cudaStreamSynchronize(c->st) == cudaSuccess && memcmp(h1, h2, no * 2) == 0;
  }
  cudaFree(dx), cudaFree(d1), cudaFree(d2);
  free(hx), free(h1), free(h2);
  cudaGetLastError();
  be->err[0] = 0;
  c->sgv[c->n_sgv].O = O, c->sgv[c->n_sgv].I = I, c->sgv[c->n_sgv].ok = ok, c->n_sgv++;
  if (!ran) /* once per shape, like the verdict: a failed allocation at every product would cost more */
    ig_log(IG_LOG_WARN, "cuda matmul: O=%lld I=%lld: no memory to check the skinny GEMM against cuBLASLt; cuBLASLt "
           "keeps the product", (long long)O, (long long)I);
  else
    ig_log(IG_LOG_INFO, "cuda matmul: O=%lld I=%lld: the skinny GEMM %s cuBLASLt's bits%s", (long long)O, (long long)I,
           ok ? "gives" : "does not give", ok ? ", so it takes up to IGNIS_CUDA_BI_SGEMM rows" : "; cuBLASLt keeps the product");
  return ok;
}
/* the skinny GEMM for this product? (in the batch-invariant mode, only a verified one) */
static int sg_route(ig_backend *be, const ig_tensor *x, const ig_tensor *w, int swiglu = 0) {
  return cu_sgemm_ok(be, x, w, swiglu) && (!CU(be)->bi_lt || sg_verified(be, w));
}

int cu_matmul_n(ig_backend *be, int n, ig_tensor *const *outs, const ig_tensor *x, const ig_tensor *const *ws,
                const ig_tensor *const *biases) {
  return cu_matmul_n_packed(be, n, outs, x, ws, biases, NULL);
}

/* cu_matmul_n; with `packed` set, a product that goes through one GEMM into the scratch buffer skips the split and
 * returns the scratch ([m, sum of widths], outs[0]'s dtype) in *packed, leaving outs unwritten; *packed = NULL when
 * the outs were written (the skinny GEMM, the GEMV, separate products). */
int cu_matmul_n_packed(ig_backend *be, int n, ig_tensor *const *outs, const ig_tensor *x, const ig_tensor *const *ws,
                       const ig_tensor *const *biases, void **packed) {
  if (packed) *packed = NULL;
  if (n < 1 || n > 4) FAIL(be, "cuda matmul_n: %d products (1..4)", n);
  int fused = 1, bdt = -1;
  int64_t total = 0;
  for (int i = 0; i < n; i++) {
    if (check_mm(be, outs[i], x, ws[i], biases[i])) return -1;
    fused &= gemv_ok(be, x, ws[i]);
    if (biases[i]) fused &= bdt < 0 || bdt == biases[i]->dtype, bdt = biases[i]->dtype;
    total += ws[i]->rows;
  }
  if (!fused && total <= (int64_t)INT32_MAX / 2) {
    /* the skinny GEMM over adjacent weights (one weight_alloc buffer): one launch, each output its own segment */
    int adj = 1;
    for (int i = 1; i < n; i++) adj &= adjacent(ws[i - 1], ws[i]);
    ig_tensor wt = *ws[0];
    wt.rows = total; /* the rows of all n, which adjacent weights are */
    if (adj && sg_route(be, x, &wt)) {
      sg_seg_desc d[4];
      for (int i = 0, off = 0; i < n; off += (int)ws[i]->rows, i++)
        d[i] = sg_seg_desc{outs[i]->data, biases[i] ? biases[i]->data : NULL, (int)outs[i]->dtype,
                           biases[i] ? (int)biases[i]->dtype : 0, (int)ws[i]->rows, off};
      return cu_sgemm(be, d, n, ws[0]->data, NULL, NULL, 0, 0, x->data, (int)x->rows, (int)total, (int)x->cols);
    }
  }
  if (!fused || total > (int64_t)INT32_MAX - 8) {
    /* adjacent weights, no biases, one output dtype, x and W of one dtype: one GEMM into scratch, then a split */
    /* measured on the H100 (8B shapes): one GEMM over q|k|v beats three for decode batches (m = 256: 48 vs 62 us)
     * and loses for prefill (m > 512: 559 vs 502 us) */
    int one = x->dtype == ws[0]->dtype && x->rows > 0 && (x->rows <= 512 || CU(be)->bi_lt) &&
              total <= (int64_t)INT32_MAX / 2 && CU(be)->fused_qkv_gemm;
    for (int i = 0; i < n && one; i++) {
      one &= !biases[i] && outs[i]->dtype == outs[0]->dtype;
      if (i) one &= adjacent(ws[i - 1], ws[i]);
    }
    if (!one) {
      for (int i = 0; i < n; i++)
        if (cu_matmul(be, outs[i], x, ws[i], biases[i])) return -1;
      return 0;
    }
    cu_impl *c = CU(be);
    int64_t m = x->rows;
    int odt = outs[0]->dtype;
    if (cu_scratch(be, &c->fscratch, &c->fscratch_size, (size_t)(m * total) * ig_dtype_size((ig_dtype)odt))) return -1;
    if (lt_matmul(be, c->fscratch, odt, x->data, x->dtype, ws[0]->data, ws[0]->dtype, NULL, 0, m, total, x->cols)) return -1;
    if (packed) {
      *packed = c->fscratch;
      return 0;
    }
    split_args sa;
    memset(&sa, 0, sizeof sa);
    sa.n = n;
    for (int i = 0, off = 0; i < n; off += (int)ws[i]->rows, i++)
      sa.out[i] = outs[i]->data, sa.off[i] = off, sa.w[i] = (int)ws[i]->rows, sa.odt[i] = (int)outs[i]->dtype;
    int v16 = ig_dtype_size((ig_dtype)odt) == 2 && total % 8 == 0 && (uintptr_t)c->fscratch % 16 == 0;
    for (int i = 0; i < n; i++) v16 &= sa.off[i] % 8 == 0 && sa.w[i] % 8 == 0 && (uintptr_t)sa.out[i] % 16 == 0;
    if (v16)
      CU_LAUNCH(be, (split_cols16_kernel), dim3((unsigned)m, (unsigned)((total / 8 + 255) / 256)), 256, 0, sa,
                (const uint4 *)c->fscratch, (int)(total / 8));
    else
      CU_LAUNCH(be, (split_cols_kernel), (unsigned)m, 256, 0, sa, (const void *)c->fscratch, odt, (int)total);
    LAUNCH_CHECK(be);
    return 0;
  }
  gemv_multi_args a;
  memset(&a, 0, sizeof a);
  a.n = n, a.I = (int)x->cols;
  for (int i = 0; i < n; i++)
    a.s[i] = gemv_seg{(const __nv_bfloat16 *)ws[i]->data, outs[i]->data, biases[i] ? biases[i]->data : NULL,
                      (int)outs[i]->dtype, biases[i] ? (int)biases[i]->dtype : 0, (int)ws[i]->rows};
  return gemv_launch(be, a, (const __nv_bfloat16 *)x->data, (int)x->rows, total);
}

int cu_matmul_swiglu(ig_backend *be, int act, ig_tensor *out, ig_tensor *up, const ig_tensor *x, const ig_tensor *wg,
                     const ig_tensor *bg, const ig_tensor *wu, const ig_tensor *bu) {
  if (check_mm(be, out, x, wg, bg) || check_mm(be, up, x, wu, bu)) return -1;
  if (wg->rows != wu->rows) FAIL(be, "cuda matmul_swiglu: gate has %lld rows, up %lld", (long long)wg->rows, (long long)wu->rows);
  int same_bias = !bg || !bu || bg->dtype == bu->dtype;
  if (!gemv_ok(be, x, wg) && sg_route(be, x, wg, 1) && sg_route(be, x, wu, 1)) {
    /* the skinny GEMM with gate and up tiles in one block and silu(gate) * up (gelu_tanh) in its epilogue */
    sg_seg_desc d = {out->data, bg ? bg->data : NULL, (int)out->dtype, bg ? (int)bg->dtype : 0, (int)wg->rows, 0, act};
    return cu_sgemm(be, &d, 1, wg->data, wu->data, bu ? bu->data : NULL, bu ? (int)bu->dtype : 0, (int)up->dtype, x->data,
                    (int)x->rows, (int)wg->rows, (int)wg->cols);
  }
  if (act || !gemv_ok(be, x, wg) || !gemv_ok(be, x, wu) || !same_bias || wg->rows > (int64_t)INT32_MAX - 8) {
    /* one GEMM over gate|up measured slower than two on the H100 (m = 256: 128 vs 121 us; prefill 1686 vs 1488 us):
     * only on request (IGNIS_CUDA_FUSED_GATE_UP=1) */
    if (!act && CU(be)->fused_gate_up && !bg && !bu && adjacent(wg, wu) && x->dtype == wg->dtype && out->dtype == up->dtype && x->rows > 0 &&
        wg->rows <= INT32_MAX / 4) {
      /* gate|up adjacent in one buffer: one GEMM of width 2I, then silu(gate) * up from its two halves */
      cu_impl *c = CU(be);
      int64_t m = x->rows, I2 = 2 * wg->rows;
      if (cu_scratch(be, &c->fscratch, &c->fscratch_size, (size_t)(m * I2) * ig_dtype_size(up->dtype))) return -1;
      if (lt_matmul(be, c->fscratch, up->dtype, x->data, x->dtype, wg->data, wg->dtype, NULL, 0, m, I2, x->cols)) return -1;
      long long nn = (long long)m * wg->rows;
      long long blocks = (nn + 255) / 256;
      CU_LAUNCH(be, (swiglu_halves_kernel), (unsigned)(blocks > 65535 * 8 ? 65535 * 8 : blocks), 256, 0, out->data,
                (int)out->dtype, (const void *)c->fscratch, (int)up->dtype, (int)wg->rows, nn);
      LAUNCH_CHECK(be);
      return 0;
    }
    ig_tensor o2 = *out, u2 = *up;
    o2.rows = u2.rows = x->rows;
    if (cu_matmul(be, &o2, x, wg, bg) || cu_matmul(be, &u2, x, wu, bu)) return -1;
    return act ? cu_geglu(be, &o2, &o2, &u2) : cu_swiglu(be, &o2, &o2, &u2);
  }
  int O = (int)wg->rows, I = (int)wg->cols;
  dim3 grid((O + 7) / 8);
  const __nv_bfloat16 *G_ = (const __nv_bfloat16 *)wg->data, *U_ = (const __nv_bfloat16 *)wu->data,
                      *X = (const __nv_bfloat16 *)x->data;
  const void *b1 = bg ? bg->data : NULL, *b2 = bu ? bu->data : NULL;
  int bdt = bg ? bg->dtype : bu ? bu->dtype : 0;
  switch ((int)x->rows) {
#define G(M) case M: CU_LAUNCH(be, (gemv_swiglu_kernel<M>), grid, 256, 0, G_, U_, X, out->data, (int)out->dtype, (int)up->dtype, b1, b2, bdt, O, I); break;
    G(1) G(2) G(3) G(4) G(5) G(6) G(7) G(8)
#undef G
  }
  LAUNCH_CHECK(be);
  return 0;
}

/* ---- cuBLASLt plans ---------------------------------------------------------------------------------- */
#define LT_CANDS 24
typedef struct lt_plan {
  int used;
  int64_t m, O, I;
  int xdt, wdt, odt, bdt; /* bdt = -1: no bias */
  cublasLtMatmulDesc_t desc;
  cublasLtMatrixLayout_t a, b, c;
  cublasLtMatmulAlgo_t algo;
  int n_cand, tuned;      /* IGNIS_CUDA_GEMM_TUNE: the heuristic's candidates, timed at first use */
  cublasLtMatmulAlgo_t cand[LT_CANDS];
} lt_plan;

/* Tuned algorithms per (m bucket, shape, dtypes): timed once per bucket, reused for every m in it. */
typedef struct lt_tuned {
  int used;
  int64_t mb, O, I;
  int key;
  cublasLtMatmulAlgo_t algo;
} lt_tuned;

/* Batch-invariant mode (bi_lt): the algorithm each shape uses at every m. */
typedef struct lt_pin {
  int used;
  int64_t O, I;
  int key;
  cublasLtMatmulAlgo_t algo;
} lt_pin;

#define LT_PLANS 512 /* open-addressed table; a model has a few dozen shapes per batch size */
#define LT_TUNED 256
#define LT_PINS 64
typedef struct lt_cache {
  lt_plan p[LT_PLANS];
  lt_tuned t[LT_TUNED];
  lt_pin pin[LT_PINS];
} lt_cache;

/* m buckets for tuning: 16, 24, 32, 48, ... up to 512 (decode batches); larger m (prefill) keeps the heuristic's */
static int64_t tune_bucket(int64_t m) {
  int64_t b = 16;
  while (b < m) b = (b & (b - 1)) ? (b / 3) * 4 : b + b / 2; /* 16 24 32 48 64 96 128 ... */
  return b;
}

static cudaDataType_t cuda_dt(int dt) {
  return dt == IG_DT_BF16 ? CUDA_R_16BF : (dt == IG_DT_F16 ? CUDA_R_16F : CUDA_R_32F);
}

static void plans_clear(lt_cache *lc) {
  for (int i = 0; i < LT_PLANS; i++) {
    lt_plan *p = &lc->p[i];
    if (!p->used) continue;
    cublasLtMatrixLayoutDestroy(p->a);
    cublasLtMatrixLayoutDestroy(p->b);
    cublasLtMatrixLayoutDestroy(p->c);
    cublasLtMatmulDescDestroy(p->desc);
    p->used = 0;
  }
}

void cu_matmul_release(ig_backend *be) {
  lt_cache *lc = (lt_cache *)CU(be)->lt_cache;
  if (!lc) return;
  plans_clear(lc);
  free(lc);
  CU(be)->lt_cache = NULL;
}

/* An algorithm for (O, I) that does not split K, from the heuristic's candidates at m rows: a split's partial
 * sums and their reduction depend on the grid, so on m. The first candidate without one, else the first candidate
 * with its split set to 1 (the caller checks that it runs). */
static int lt_nosplit(ig_backend *be, cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t a, int64_t m, int64_t O,
                      int64_t I, int xdt, int odt, cublasLtMatmulAlgo_t *out) {
  cu_impl *c = CU(be);
  cublasLtMatrixLayout_t b, cc;
  CUBLAS_CHECK(be, cublasLtMatrixLayoutCreate(&b, cuda_dt(xdt), I, m, I));
  CUBLAS_CHECK(be, cublasLtMatrixLayoutCreate(&cc, cuda_dt(odt), O, m, O));
  cublasLtMatmulPreference_t pref;
  CUBLAS_CHECK(be, cublasLtMatmulPreferenceCreate(&pref));
  CUBLAS_CHECK(be, cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &c->lt_ws_size,
                                                        sizeof c->lt_ws_size));
  cublasLtMatmulHeuristicResult_t rs[LT_CANDS];
  int nres = 0, pick = -1, first = -1;
  cublasStatus_t s = cublasLtMatmulAlgoGetHeuristic(c->lt, desc, a, b, cc, cc, pref, LT_CANDS, rs, &nres);
  cublasLtMatmulPreferenceDestroy(pref);
  cublasLtMatrixLayoutDestroy(b);
  cublasLtMatrixLayoutDestroy(cc);
  for (int k = 0; s == CUBLAS_STATUS_SUCCESS && k < nres && pick < 0; k++) {
    if (rs[k].state != CUBLAS_STATUS_SUCCESS) continue;
    if (first < 0) first = k;
    uint32_t split = 0, red = 0;
    size_t wr = 0;
    if (cublasLtMatmulAlgoConfigGetAttribute(&rs[k].algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &split, sizeof split, &wr) !=
        CUBLAS_STATUS_SUCCESS)
      continue;
    cublasLtMatmulAlgoConfigGetAttribute(&rs[k].algo, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME, &red, sizeof red, &wr);
    if (split <= 1 && red == CUBLASLT_REDUCTION_SCHEME_NONE) pick = k;
  }
  if (pick < 0 && first >= 0) {
    uint32_t one = 1, none = CUBLASLT_REDUCTION_SCHEME_NONE;
    if (cublasLtMatmulAlgoConfigSetAttribute(&rs[first].algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &one, sizeof one) ==
            CUBLAS_STATUS_SUCCESS &&
        cublasLtMatmulAlgoConfigSetAttribute(&rs[first].algo, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME, &none,
                                             sizeof none) == CUBLAS_STATUS_SUCCESS)
      pick = first;
  }
  if (pick < 0)
    FAIL(be, "cuda matmul: no cuBLASLt algorithm without split-K for O=%lld I=%lld m=%lld (status %d, %d candidates)",
         (long long)O, (long long)I, (long long)m, (int)s, nres);
  *out = rs[pick].algo;
  return 0;
}

/* The batch-invariant algorithm of a shape. IGNIS_CUDA_BI_REF_M=R: the one chosen at R rows, for every m (one
 * kernel per shape). Otherwise (the default): the one chosen at each m from bi_auto_min rows up, and below that the
 * one chosen at bi_auto_min. The kernels the heuristic picks for 17 to 1,100 rows (what test_cuda_ops checks; prompt
 * chunks of up to 4,096 rows are not checked yet) all sum K in one order; for fewer rows it picks kernels that do
 * not (H100, cuBLAS 13.0: rows of 1, 2 and 9 differed from the same rows among 1,100 at K = 4096). */
static int lt_pinned(ig_backend *be, lt_cache *lc, cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t a, int64_t m,
                     int64_t O, int64_t I, int xdt, int odt, int key, cublasLtMatmulAlgo_t *out) {
  cu_impl *c = CU(be);
  if (c->bi_ref_m <= 0 && m >= c->bi_auto_min) return lt_nosplit(be, desc, a, m, O, I, xdt, odt, out);
  int64_t ref = c->bi_ref_m > 0 ? c->bi_ref_m : c->bi_auto_min;
  uint64_t h = (uint64_t)O * 7919u ^ (uint64_t)I * 31u ^ (uint64_t)key;
  lt_pin *slot = NULL;
  for (int k = 0; k < LT_PINS; k++) {
    lt_pin *t = &lc->pin[(h + (uint64_t)k) % LT_PINS];
    if (t->used && t->O == O && t->I == I && t->key == key) {
      *out = t->algo;
      return 0;
    }
    if (!t->used) {
      slot = t;
      break;
    }
  }
  if (!slot) FAIL(be, "cuda matmul: more than %d shapes in the batch-invariant mode", LT_PINS);
  if (lt_nosplit(be, desc, a, ref, O, I, xdt, odt, out)) return -1;
  slot->used = 1, slot->O = O, slot->I = I, slot->key = key, slot->algo = *out;
  return 0;
}

/* Finds or builds the plan for one shape. Row-major out[m,O] = x[m,I] W[O,I]^T is, column-major,
 * out^T[O,m] = op_T(W as [I,O]) * x^T[I,m]: A = W (transposed), B = x, C = D = out. */
static int lt_plan_get(ig_backend *be, lt_plan **outp, int64_t m, int64_t O, int64_t I, int xdt, int wdt, int odt, int bdt) {
  cu_impl *c = CU(be);
  if (!c->lt_cache) {
    c->lt_cache = calloc(1, sizeof(lt_cache));
    if (!c->lt_cache) FAIL(be, "cuda matmul: out of host memory");
  }
  lt_cache *lc = (lt_cache *)c->lt_cache;
  uint64_t h = (uint64_t)m * 1000003u ^ (uint64_t)O * 10007u ^ (uint64_t)I * 131u ^ (uint64_t)(xdt * 64 + wdt * 16 + odt * 4 + bdt + 1);
  for (int probe = 0; probe < LT_PLANS; probe++) {
    lt_plan *p = &lc->p[(h + probe) % LT_PLANS];
    if (p->used && p->m == m && p->O == O && p->I == I && p->xdt == xdt && p->wdt == wdt && p->odt == odt && p->bdt == bdt) {
      *outp = p;
      return 0;
    }
    if (p->used) continue;
    CUBLAS_CHECK(be, cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    CUBLAS_CHECK(be, cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    CUBLAS_CHECK(be, cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    if (bdt >= 0) {
      cublasLtEpilogue_t ep = CUBLASLT_EPILOGUE_BIAS;
      cudaDataType_t bt = cuda_dt(bdt);
      CUBLAS_CHECK(be, cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &ep, sizeof ep));
      CUBLAS_CHECK(be, cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt));
    }
    CUBLAS_CHECK(be, cublasLtMatrixLayoutCreate(&p->a, cuda_dt(wdt), I, O, I));
    CUBLAS_CHECK(be, cublasLtMatrixLayoutCreate(&p->b, cuda_dt(xdt), I, m, I));
    CUBLAS_CHECK(be, cublasLtMatrixLayoutCreate(&p->c, cuda_dt(odt), O, m, O));
    cublasLtMatmulPreference_t pref;
    CUBLAS_CHECK(be, cublasLtMatmulPreferenceCreate(&pref));
    CUBLAS_CHECK(be, cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &c->lt_ws_size,
                                                          sizeof c->lt_ws_size));
    if (c->bi_lt) {
      cublasLtMatmulAlgo_t al;
      cublasLtMatmulHeuristicResult_t chk;
      int key = xdt * 4096 + wdt * 256 + odt * 16 + bdt + 1;
      cublasStatus_t st = CUBLAS_STATUS_NOT_SUPPORTED;
      int pr = lt_pinned(be, lc, p->desc, p->a, m, O, I, xdt, odt, key, &al);
      if (pr == 0) st = cublasLtMatmulAlgoCheck(c->lt, p->desc, p->a, p->b, p->c, p->c, &al, &chk);
      if (pr == 0 && st == CUBLAS_STATUS_SUCCESS && chk.workspaceSize <= c->lt_ws_size) {
        cublasLtMatmulPreferenceDestroy(pref);
        p->algo = al;
        p->n_cand = 0, p->tuned = 1;
        p->m = m, p->O = O, p->I = I, p->xdt = xdt, p->wdt = wdt, p->odt = odt, p->bdt = bdt;
        p->used = 1;
        *outp = p;
        return 0;
      }
      /* no such algorithm for this shape and m: the heuristic's own, and a warning (this product's rows may then
       * depend on the batch) rather than a failed step */
      static int warned; /* the first few only: a long-running server meets many m */
      if (warned++ < 8)
        ig_log(IG_LOG_WARN, "cuda matmul: no batch-invariant algorithm for O=%lld I=%lld m=%lld (%s); using cuBLASLt's "
               "choice, so these rows may depend on the batch", (long long)O, (long long)I, (long long)m,
               pr ? be->err : "the shape's algorithm does not run this m");
      be->err[0] = 0;
    }
    cublasLtMatmulHeuristicResult_t rs[LT_CANDS];
    int nres = 0, want = c->gemm_tune && m <= 512 ? LT_CANDS : 1;
    cublasStatus_t s = cublasLtMatmulAlgoGetHeuristic(c->lt, p->desc, p->a, p->b, p->c, p->c, pref, want, rs, &nres);
    cublasLtMatmulPreferenceDestroy(pref);
    if (s != CUBLAS_STATUS_SUCCESS || nres == 0) {
      cublasLtMatrixLayoutDestroy(p->a);
      cublasLtMatrixLayoutDestroy(p->b);
      cublasLtMatrixLayoutDestroy(p->c);
      cublasLtMatmulDescDestroy(p->desc);
      FAIL(be, "cuda matmul: cuBLASLt has no algorithm for m=%lld O=%lld I=%lld (%s x %s -> %s), status %d", (long long)m,
           (long long)O, (long long)I, ig_dtype_name((ig_dtype)xdt), ig_dtype_name((ig_dtype)wdt),
           ig_dtype_name((ig_dtype)odt), (int)s);
    }
    p->algo = rs[0].algo;
    p->n_cand = 0, p->tuned = nres < 2;
    for (int k = 0; k < nres && k < LT_CANDS; k++)
      if (rs[k].state == CUBLAS_STATUS_SUCCESS) p->cand[p->n_cand++] = rs[k].algo;
    p->m = m, p->O = O, p->I = I, p->xdt = xdt, p->wdt = wdt, p->odt = odt, p->bdt = bdt;
    p->used = 1;
    *outp = p;
    return 0;
  }
  /* Full: a long-running server meets many batch sizes (decode rows + prefill chunks). Drop every plan and start
   * over; nothing holds a plan between calls, and graphs keep their own copies of the launches. */
  static int warned;
  if (!warned++) ig_log(IG_LOG_INFO, "cuda matmul: %d cached plans, starting the cache over", LT_PLANS);
  plans_clear(lc);
  return lt_plan_get(be, outp, m, O, I, xdt, wdt, odt, bdt);
}

static int lt_matmul(ig_backend *be, void *out, int odt, const void *x, int xdt, const void *w, int wdt, const void *bias,
                     int bdt, int64_t m, int64_t O, int64_t I) {
  cu_impl *c = CU(be);
  lt_plan *p;
  if (lt_plan_get(be, &p, m, O, I, xdt, wdt, odt, bias ? bdt : -1)) return -1;
  if (bias) CUBLAS_CHECK(be, cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
  float alpha = 1.f, beta = 0.f;
  if (!p->tuned && !c->capturing) {
    /* IGNIS_CUDA_GEMM_TUNE=1: the first use of a shape times the heuristic's candidates on the real operands (the
     * output is rewritten below) and keeps the fastest for the whole m bucket. Which one wins can vary between
     * runs, so results are reproducible only with tuning off (the default). */
    p->tuned = 1;
    lt_cache *lc = (lt_cache *)c->lt_cache;
    int64_t mb = tune_bucket(m);
    int key = p->xdt * 4096 + p->wdt * 256 + p->odt * 16 + p->bdt + 1;
    lt_tuned *slot = NULL;
    for (int k = 0; k < LT_TUNED; k++) {
      lt_tuned *t = &lc->t[((uint64_t)(mb * 31 + O * 7 + I + key) + (uint64_t)k) % LT_TUNED];
      if (t->used && t->mb == mb && t->O == O && t->I == I && t->key == key) {
        cublasLtMatmulHeuristicResult_t chk;
        if (cublasLtMatmulAlgoCheck(c->lt, p->desc, p->a, p->b, p->c, p->c, &t->algo, &chk) == CUBLAS_STATUS_SUCCESS &&
            chk.workspaceSize <= c->lt_ws_size)
          p->algo = t->algo;
        slot = NULL;
        break;
      }
      if (!t->used) {
        slot = t;
        break;
      }
    }
    if (slot) {
      cudaEvent_t e0, e1;
      CUDA_CHECK(be, cudaEventCreate(&e0));
      CUDA_CHECK(be, cudaEventCreate(&e1));
      float best = 1e30f;
      for (int k = 0; k < p->n_cand; k++) {
        cublasStatus_t st = cublasLtMatmul(c->lt, p->desc, &alpha, w, p->a, x, p->b, &beta, out, p->c, out, p->c, &p->cand[k],
                                           c->lt_ws, c->lt_ws_size, c->st);
        if (st != CUBLAS_STATUS_SUCCESS) continue;
        cudaEventRecord(e0, c->st);
        for (int r = 0; r < 3; r++)
          cublasLtMatmul(c->lt, p->desc, &alpha, w, p->a, x, p->b, &beta, out, p->c, out, p->c, &p->cand[k], c->lt_ws,
                         c->lt_ws_size, c->st);
        cudaEventRecord(e1, c->st);
        float ms = 0;
        if (cudaEventSynchronize(e1) == cudaSuccess && cudaEventElapsedTime(&ms, e0, e1) == cudaSuccess && ms < best)
          best = ms, p->algo = p->cand[k];
      }
      cudaEventDestroy(e0);
      cudaEventDestroy(e1);
      cudaGetLastError();
      slot->used = 1, slot->mb = mb, slot->O = O, slot->I = I, slot->key = key, slot->algo = p->algo;
    }
  }
  CUBLAS_CHECK(be, cublasLtMatmul(c->lt, p->desc, &alpha, w, p->a, x, p->b, &beta, out, p->c, out, p->c, &p->algo, c->lt_ws,
                                  c->lt_ws_size, c->st));
  return 0;
}

int cu_matmul(ig_backend *be, ig_tensor *out, const ig_tensor *x, const ig_tensor *w, const ig_tensor *bias) {
  cu_impl *c = CU(be);
  int64_t m = x->rows, O = w->rows, I = w->cols;
  if (x->cols != I) FAIL(be, "cuda matmul: x has %lld columns, W has %lld", (long long)x->cols, (long long)I);
  if (out->cols != O || out->rows < m) FAIL(be, "cuda matmul: out is [%lld, %lld], want [%lld, %lld]", (long long)out->rows,
                                            (long long)out->cols, (long long)m, (long long)O);
  if (bias && ig_tensor_numel(bias) != O) FAIL(be, "cuda matmul: bias has %lld elements, want %lld", (long long)ig_tensor_numel(bias), (long long)O);
  if (m == 0) return 0;
  /* the GEMV reads W rows and x rows with 16-byte loads: I % 8 == 0 and 16-byte aligned bases (a view into the
   * middle of a buffer may not be), else cuBLASLt */
  if (w->dtype == IG_DT_BF16 && x->dtype == IG_DT_BF16 && m <= IG_GEMV_MAX_M && I % 8 == 0 && c->use_gemv &&
      ((uintptr_t)x->data | (uintptr_t)w->data) % 16 == 0)
    return gemv(be, out, x, w, bias, (int)m);
  if (sg_route(be, x, w)) {
    sg_seg_desc d = {out->data, bias ? bias->data : NULL, (int)out->dtype, bias ? (int)bias->dtype : 0, (int)O, 0};
    return cu_sgemm(be, &d, 1, w->data, NULL, NULL, 0, 0, x->data, (int)m, (int)O, (int)I);
  }
  if (w->dtype == x->dtype)
    return lt_matmul(be, out->data, out->dtype, x->data, x->dtype, w->data, w->dtype, bias ? bias->data : NULL,
                     bias ? bias->dtype : 0, m, O, I);
  if (w->dtype == IG_DT_F16 && x->dtype == IG_DT_BF16) {
    /* f16 checkpoint under bf16 activations: x -> f16, f16 GEMM with f32 output, then -> out's dtype. */
    /* the f32 result starts on a 256-byte boundary: cuBLASLt's heuristic assumes 256-byte aligned pointers by
     * default (m * I * 2 bytes alone is not even 16-aligned when I is odd) */
    size_t xbytes = ((size_t)m * I * 2 + 255) & ~(size_t)255;
    size_t need = xbytes + (size_t)m * O * 4;
    if (cu_scratch(be, &c->scratch2, &c->scratch2_size, need)) return -1;
    void *xh = c->scratch2, *of = (char *)c->scratch2 + xbytes;
    if (cu_convert(be, xh, IG_DT_F16, x->data, x->dtype, m * I)) return -1;
    if (lt_matmul(be, of, IG_DT_F32, xh, IG_DT_F16, w->data, IG_DT_F16, bias ? bias->data : NULL, bias ? bias->dtype : 0, m, O, I))
      return -1;
    return cu_convert(be, out->data, out->dtype, of, IG_DT_F32, m * O);
  }
  FAIL(be, "cuda matmul: unsupported dtypes x %s, W %s", ig_dtype_name(x->dtype), ig_dtype_name(w->dtype));
}
