/* backend/cuda/cuda_kernels.cu: the memory-bound ops of the CUDA backend: embedding lookup, RMSNorm fused
 * with the residual add, rotary embedding, SwiGLU, KV-cache write into paged blocks, row gather, add and
 * dtype conversion. Each kernel is preceded by what it computes and how the work is split; its launcher
 * follows it. All run on the backend's one stream; batch metadata comes from the device copy (set_batch). */
#include "backend/cuda/cuda_common.h"
#include "backend/cuda/cuda_dtype.cuh"

/* 8 bf16 <-> 8 floats through one 16-byte access. */
__device__ __forceinline__ void unpack8(uint4 v, float *f) {
  const __nv_bfloat162 *h = (const __nv_bfloat162 *)&v;
#pragma unroll
  for (int i = 0; i < 4; i++) {
    float2 t = __bfloat1622float2(h[i]);
    f[2 * i] = t.x, f[2 * i + 1] = t.y;
  }
}
__device__ __forceinline__ uint4 pack8(const float *f) {
  uint4 v;
  __nv_bfloat162 *h = (__nv_bfloat162 *)&v;
#pragma unroll
  for (int i = 0; i < 4; i++) h[i] = __floats2bfloat162_rn(f[2 * i], f[2 * i + 1]);
  return v;
}

/* ---- embedding --------------------------------------------------------------------------------------- */
/* out[i, :] = table[tokens[i], :]. One block per token row, threads stride over the width. */
__global__ void embed_kernel(void *out, int odt, const void *table, int tdt, const int *tokens, int H, int vocab) {
  PDL_ENTRY();
  int i = blockIdx.x;
  int tok = tokens[i];
  if (tok < 0 || tok >= vocab) tok = 0; /* the model validates ids; never read out of bounds */
  for (int j = threadIdx.x; j < H; j += blockDim.x)
    stf(out, odt, (long long)i * H + j, ldf(table, tdt, (long long)tok * H + j));
}

cudaError_t cu_kernels_probe(void) {
  cudaFuncAttributes fa;
  return cudaFuncGetAttributes(&fa, embed_kernel);
}

int cu_embed(ig_backend *be, ig_tensor *out, const ig_tensor *table) {
  cu_impl *c = CU(be);
  int n = c->b.n_tokens;
  if (out->rows < n || out->cols != table->cols) FAIL(be, "cuda embed: shape mismatch");
  if (n == 0) return 0;
  CU_LAUNCH(be, (embed_kernel), n, 256, 0, out->data, out->dtype, table->data, table->dtype, c->b.tokens, (int)table->cols,
                                     (int)table->rows);
  LAUNCH_CHECK(be);
  return 0;
}

/* ---- RMSNorm with the residual add ------------------------------------------------------------------- */
/* One chunk's 8 norm weights, bf16 or f32. */
template <bool WF32> __device__ __forceinline__ void norm_w8(const void *w, int j, float *ww) {
  if (WF32) {
    float4 a = ((const float4 *)w)[2 * j], b = ((const float4 *)w)[2 * j + 1];
    ww[0] = a.x, ww[1] = a.y, ww[2] = a.z, ww[3] = a.w, ww[4] = b.x, ww[5] = b.y, ww[6] = b.z, ww[7] = b.w;
  } else {
    unpack8(((const uint4 *)w)[j], ww);
  }
}
/* The block's sum of ss over its threads, in rmsnorm_bf16_kernel's order (warps, then the warps' sums); red[0]. */
__device__ __forceinline__ float norm_block_sum(float ss, float *red) {
  ss = warp_sum(ss);
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = ss;
  __syncthreads();
  if (threadIdx.x < 32) {
    float t = threadIdx.x < (blockDim.x >> 5) ? red[threadIdx.x] : 0.f;
    t = warp_sum(t);
    if (threadIdx.x == 0) red[0] = t;
  }
  __syncthreads();
  float r = red[0];
  __syncthreads(); /* red is written again by the next sum */
  return r;
}
/* out = x * scale * w over a row's 16-byte chunks, thread t on chunks t, t + blockDim.x, ... (the bf16 norms' last pass) */
template <bool WF32>
__device__ __forceinline__ void norm_scale_store(uint4 *out, const uint4 *x, const void *w, long long base, int W8, float scale) {
  for (int j = threadIdx.x; j < W8; j += blockDim.x) {
    float v[8], ww[8];
    unpack8(x[base + j], v);
    norm_w8<WF32>(w, j, ww);
#pragma unroll
    for (int e = 0; e < 8; e++) v[e] = v[e] * scale * ww[e];
    out[base + j] = pack8(v);
  }
}
/* The bf16 norms' block size for a row of W8 chunks; their sums depend on it (qknorm_rope_kv_kernel assumes 32 for a
 * head_dim row, W8 < 128). */
static int norm_threads(int W8) { return W8 >= 512 ? 512 : (W8 >= 128 ? 128 : 32); }
/* For each row r of width W: if res, x[r] += res[r] (stored, rounded to x's dtype); out[r] = x[r] * rsqrt(mean
 * (x[r]^2) + eps) * w. One block per row; the sum of squares is reduced over warps through shared memory. */
__global__ void rmsnorm_kernel(void *out, int odt, void *x, int xdt, const void *res, int rdt, const void *w, int wdt,
                               int W, float eps) {
  PDL_ENTRY();
  long long base = (long long)blockIdx.x * W;
  float ss = 0.f;
  for (int j = threadIdx.x; j < W; j += blockDim.x) {
    float v = ldf(x, xdt, base + j);
    if (res) {
      v = roundf_dt(xdt, v + ldf(res, rdt, base + j));
      stf(x, xdt, base + j, v);
    }
    ss += v * v;
  }
  __shared__ float red[32];
  float scale = rsqrtf(norm_block_sum(ss, red) / (float)W + eps);
  for (int j = threadIdx.x; j < W; j += blockDim.x)
    stf(out, odt, base + j, ldf(x, xdt, base + j) * scale * ldf(w, wdt, j));
}

/* The same for bf16 x/res/out with W % 8 == 0: 16-byte accesses (what prefill and decode use); w bf16, or f32
 * (WF32: Gemma's (1 + w), kept in f32 as transformers applies it). */
template <bool WF32>
__global__ void rmsnorm_bf16_kernel(uint4 *out, uint4 *x, const uint4 *res, const void *w, int W8, float eps) {
  PDL_ENTRY();
  long long base = (long long)blockIdx.x * W8;
  float ss = 0.f;
  for (int j = threadIdx.x; j < W8; j += blockDim.x) {
    float v[8];
    unpack8(x[base + j], v);
    if (res) {
      float r[8];
      unpack8(res[base + j], r);
#pragma unroll
      for (int e = 0; e < 8; e++) v[e] += r[e];
      uint4 pk = pack8(v);
      x[base + j] = pk;
      unpack8(pk, v); /* continue with the rounded sum, as stored */
    }
#pragma unroll
    for (int e = 0; e < 8; e++) ss += v[e] * v[e];
  }
  __shared__ float red[32];
  float scale = rsqrtf(norm_block_sum(ss, red) / (float)(W8 * 8) + eps);
  norm_scale_store<WF32>(out, x, w, base, W8, scale);
}

/* rmsnorm_bf16_kernel(res, res, NULL, wres) then rmsnorm_bf16_kernel(out, x, res, w) in one launch, with their block
 * size, sums and roundings, so the same bits; res itself is not written (Gemma's post-attention / post-feedforward
 * norm folded into the next norm). */
template <bool WF32R, bool WF32>
__global__ void rmsnorm_post_bf16_kernel(uint4 *out, uint4 *x, const uint4 *res, const void *wres, const void *w,
                                         int W8, float eps) {
  PDL_ENTRY();
  __shared__ float red[32];
  long long base = (long long)blockIdx.x * W8;
  float ss = 0.f;
  for (int j = threadIdx.x; j < W8; j += blockDim.x) {
    float v[8];
    unpack8(res[base + j], v);
#pragma unroll
    for (int e = 0; e < 8; e++) ss += v[e] * v[e];
  }
  const float s1 = rsqrtf(norm_block_sum(ss, red) / (float)(W8 * 8) + eps);
  ss = 0.f;
  for (int j = threadIdx.x; j < W8; j += blockDim.x) {
    float v[8], ww[8], r[8];
    unpack8(res[base + j], r);
    norm_w8<WF32R>(wres, j, ww);
#pragma unroll
    for (int e = 0; e < 8; e++) r[e] = r[e] * s1 * ww[e];
    unpack8(pack8(r), r); /* the normed residual as the separate norm stores it */
    unpack8(x[base + j], v);
#pragma unroll
    for (int e = 0; e < 8; e++) v[e] += r[e];
    uint4 pk = pack8(v);
    x[base + j] = pk;
    unpack8(pk, v);
#pragma unroll
    for (int e = 0; e < 8; e++) ss += v[e] * v[e];
  }
  const float s2 = rsqrtf(norm_block_sum(ss, red) / (float)(W8 * 8) + eps);
  norm_scale_store<WF32>(out, x, w, base, W8, s2);
}

int cu_rmsnorm_post(ig_backend *be, ig_tensor *out, ig_tensor *x, const ig_tensor *res, const ig_tensor *wres,
                    const ig_tensor *w, float eps) {
  int64_t W = w->cols * w->rows, numel = ig_tensor_numel(x);
  if (W != wres->cols * wres->rows) FAIL(be, "cuda rmsnorm_post: weights of %lld and %lld", (long long)W, (long long)(wres->cols * wres->rows));
  if (W <= 0 || numel % W) FAIL(be, "cuda rmsnorm_post: x width %lld is not a multiple of w %lld", (long long)x->cols, (long long)W);
  if (ig_tensor_numel(out) < numel || ig_tensor_numel(res) < numel) FAIL(be, "cuda rmsnorm_post: out or residual too small");
  int64_t rows = numel / W;
  if (rows == 0) return 0;
  int wr32 = wres->dtype == IG_DT_F32, w32 = w->dtype == IG_DT_F32;
  int fast = x->dtype == IG_DT_BF16 && out->dtype == IG_DT_BF16 && res->dtype == IG_DT_BF16 && W % 8 == 0 &&
             (w32 || w->dtype == IG_DT_BF16) && (wr32 || wres->dtype == IG_DT_BF16) && out->data != res->data &&
             ((uintptr_t)out->data | (uintptr_t)x->data | (uintptr_t)w->data | (uintptr_t)wres->data | (uintptr_t)res->data) % 16 == 0;
  if (!fast) { /* the two ops */
    ig_tensor r = *res;
    if (cu_rmsnorm(be, &r, &r, NULL, wres, eps)) return -1;
    return cu_rmsnorm(be, out, x, &r, w, eps);
  }
  int W8 = (int)(W / 8);
  int threads = norm_threads(W8); /* rmsnorm_bf16_kernel's, so its sums */
  uint4 *o4 = (uint4 *)out->data, *x4 = (uint4 *)x->data;
  const uint4 *r4 = (const uint4 *)res->data;
#define NP(A, B) CU_LAUNCH(be, (rmsnorm_post_bf16_kernel<A, B>), (unsigned)rows, threads, 0, o4, x4, r4, (const void *)wres->data, (const void *)w->data, W8, eps)
  if (wr32 && w32) NP(true, true);
  else if (wr32) NP(true, false);
  else if (w32) NP(false, true);
  else NP(false, false);
#undef NP
  LAUNCH_CHECK(be);
  return 0;
}

int cu_rmsnorm(ig_backend *be, ig_tensor *out, ig_tensor *x, const ig_tensor *res, const ig_tensor *w, float eps) {
  cu_impl *c = CU(be);
  int64_t W = w->cols * w->rows; /* a norm weight is [1, W] (or [W, 1]) */
  int64_t numel = ig_tensor_numel(x);
  if (W <= 0 || numel % W) FAIL(be, "cuda rmsnorm: x width %lld is not a multiple of w %lld", (long long)x->cols, (long long)W);
  if (ig_tensor_numel(out) < numel) FAIL(be, "cuda rmsnorm: out too small");
  if (res && ig_tensor_numel(res) < numel) FAIL(be, "cuda rmsnorm: residual too small");
  int64_t rows = numel / W;
  if (rows == 0) return 0;
  int wf32 = w->dtype == IG_DT_F32;
  int bf = x->dtype == IG_DT_BF16 && out->dtype == IG_DT_BF16 && (w->dtype == IG_DT_BF16 || wf32) &&
           (!res || res->dtype == IG_DT_BF16);
  /* 16-byte accesses: the width a multiple of 8 and every base 16-byte aligned (views may start anywhere) */
  bf = bf && ((uintptr_t)out->data | (uintptr_t)x->data | (uintptr_t)w->data | (uintptr_t)(res ? res->data : NULL)) % 16 == 0;
  if (bf && W % 8 == 0) {
    int W8 = (int)(W / 8);
    int threads = norm_threads(W8);
    if (wf32)
      CU_LAUNCH(be, (rmsnorm_bf16_kernel<true>), (unsigned)rows, threads, 0, (uint4 *)out->data, (uint4 *)x->data,
                res ? (const uint4 *)res->data : NULL, (const void *)w->data, W8, eps);
    else
      CU_LAUNCH(be, (rmsnorm_bf16_kernel<false>), (unsigned)rows, threads, 0, (uint4 *)out->data, (uint4 *)x->data,
                res ? (const uint4 *)res->data : NULL, (const void *)w->data, W8, eps);
    LAUNCH_CHECK(be);
    return 0;
  }
  int threads = W >= 1024 ? 1024 : (W >= 256 ? 256 : (W >= 64 ? 64 : 32));
  CU_LAUNCH(be, (rmsnorm_kernel), (unsigned)rows, threads, 0, out->data, out->dtype, x->data, x->dtype, res ? res->data : NULL,
                                                        res ? res->dtype : 0, w->data, w->dtype, (int)W, eps);
  LAUNCH_CHECK(be);
  return 0;
}

/* ---- rotary embedding -------------------------------------------------------------------------------- */
/* One pair's rotation, the roundings pinned: y1 = x1 co - x2 s with x1 co fused, y2 = x2 co + x1 s with x1 s fused,
 * which is what nvcc made of the plain expressions (checked bitwise on the H100), so every rope kernel gives these
 * bits however it loads and stores. */
__device__ __forceinline__ void rope_rot(float x1, float x2, float p, float inv_freq, float attn_factor, float *y1,
                                         float *y2) {
  float s, co;
  sincosf(p * inv_freq, &s, &co);
  s = __fmul_rn(s, attn_factor), co = __fmul_rn(co, attn_factor);
  *y1 = __fmaf_rn(co, x1, -__fmul_rn(s, x2));
  *y2 = __fmaf_rn(s, x1, __fmul_rn(co, x2));
}
__device__ __forceinline__ void rope_pair(void *base, int dt, long long off, int j, int half, float p, const float *inv_freq,
                                          float attn_factor) {
  float y1, y2;
  rope_rot(ldf(base, dt, off + j), ldf(base, dt, off + j + half), p, inv_freq[j], attn_factor, &y1, &y2);
  stf(base, dt, off + j, y1);
  stf(base, dt, off + j + half, y2);
}

/* In place on q [n, nh*hd] and k [n, nkv*hd]: for token i at position p and pair j < rot/2 of each head,
 * angle = p * inv_freq[j] (f32, as transformers computes it), (x_j, x_{j+rot/2}) rotated by it, cos and sin
 * scaled by attn_factor. One block per token; threads over (head, pair) of q then k. */
__global__ void rope_kernel(void *q, int qdt, void *k, int kdt, const int *pos, const float *inv_freq, int nh, int nkv,
                            int hd, int rot, float attn_factor) {
  PDL_ENTRY();
  int i = blockIdx.x;
  float p = (float)pos[i];
  int half = rot / 2;
  int total = (nh + nkv) * half;
  for (int t = threadIdx.x; t < total; t += blockDim.x) {
    int h = t / half, j = t % half;
    void *base;
    int dt;
    long long off;
    if (h < nh) {
      base = q, dt = qdt, off = (long long)i * nh * hd + (long long)h * hd;
    } else {
      base = k, dt = kdt, off = (long long)i * nkv * hd + (long long)(h - nh) * hd;
    }
    rope_pair(base, dt, off, j, half, p, inv_freq, attn_factor);
  }
}

int cu_rope(ig_backend *be, ig_tensor *q, ig_tensor *k, int n_heads, int n_kv_heads) {
  cu_impl *c = CU(be);
  int n = c->b.n_tokens;
  if (!c->inv_freq) FAIL(be, "cuda rope: set_rope was not called");
  int hd = c->head_dim_rope;
  if (q->cols != (int64_t)n_heads * hd || (k && k->cols != (int64_t)n_kv_heads * hd))
    FAIL(be, "cuda rope: q/k widths do not match heads * head_dim %d", hd);
  if (n == 0) return 0;
  int work = (n_heads + (k ? n_kv_heads : 0)) * (c->rot_dim / 2);
  int threads = work >= 256 ? 256 : ((work + 31) / 32) * 32;
  CU_LAUNCH(be, (rope_kernel), n, threads, 0, q->data, q->dtype, k ? k->data : NULL, k ? k->dtype : 0, c->b.pos, c->rope_cur,
                                        n_heads, k ? n_kv_heads : 0, hd, c->rot_dim, c->attn_factor);
  LAUNCH_CHECK(be);
  return 0;
}

/* ---- SwiGLU ------------------------------------------------------------------------------------------ */
/* out = silu(gate) * up, elementwise over n*I; grid-stride loop. */
__global__ void swiglu_kernel(void *out, int odt, const void *g, int gdt, const void *u, int udt, long long n) {
  PDL_ENTRY();
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    float a = ldf(g, gdt, i);
    stf(out, odt, i, a / (1.f + expf(-a)) * ldf(u, udt, i));
  }
}

__global__ void swiglu_bf16_kernel(uint4 *out, const uint4 *g, const uint4 *u, long long n8) {
  PDL_ENTRY();
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n8; i += (long long)gridDim.x * blockDim.x) {
    float a[8], b[8];
    unpack8(g[i], a);
    unpack8(u[i], b);
#pragma unroll
    for (int e = 0; e < 8; e++) a[e] = a[e] / (1.f + expf(-a[e])) * b[e];
    out[i] = pack8(a);
  }
}

static unsigned grid_for(long long n, int threads) {
  long long b = (n + threads - 1) / threads;
  return (unsigned)(b > 65535 * 8 ? 65535 * 8 : (b < 1 ? 1 : b));
}

/* ---- Gemma3's elementwise ops ------------------------------------------------------------------------- */
/* out = gelu_tanh(gate) * up in f32, rounded once (cuda_dtype.cuh; the skinny GEMM's GeGLU epilogue gives the same
 * bits); x *= s */
__global__ void geglu_kernel(void *out, int odt, const void *g, int gdt, const void *u, int udt, long long n) {
  PDL_ENTRY();
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    stf(out, odt, i, gelu_tanh(ldf(g, gdt, i)) * ldf(u, udt, i));
}
__global__ void scale_kernel(void *x, int dt, float s, long long n) {
  PDL_ENTRY();
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    stf(x, dt, i, ldf(x, dt, i) * s);
}
int cu_geglu(ig_backend *be, ig_tensor *out, const ig_tensor *gate, const ig_tensor *up) {
  long long n = ig_tensor_numel(gate);
  if (ig_tensor_numel(up) != n || ig_tensor_numel(out) < n) FAIL(be, "cuda geglu: shape mismatch");
  if (n == 0) return 0;
  CU_LAUNCH(be, (geglu_kernel), grid_for(n, 256), 256, 0, out->data, out->dtype, gate->data, gate->dtype, up->data, up->dtype, n);
  LAUNCH_CHECK(be);
  return 0;
}
int cu_scale(ig_backend *be, ig_tensor *x, float s) {
  long long n = ig_tensor_numel(x);
  if (n == 0) return 0;
  CU_LAUNCH(be, (scale_kernel), grid_for(n, 256), 256, 0, x->data, x->dtype, s, n);
  LAUNCH_CHECK(be);
  return 0;
}

/* Gemma2's final_logit_softcapping: x = cap * tanh(x / cap) in f32 (the logits), rounded once for other dtypes */
__global__ void softcap_kernel(void *x, int dt, float cap, long long n) {
  PDL_ENTRY();
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    stf(x, dt, i, cap * tanhf(ldf(x, dt, i) / cap));
}
int cu_softcap(ig_backend *be, ig_tensor *x, float cap) {
  if (!(cap > 0.f)) FAIL(be, "cuda softcap: cap %g is not positive", (double)cap);
  long long n = ig_tensor_numel(x);
  if (n == 0) return 0;
  CU_LAUNCH(be, (softcap_kernel), grid_for(n, 256), 256, 0, x->data, x->dtype, cap, n);
  LAUNCH_CHECK(be);
  return 0;
}

int cu_swiglu(ig_backend *be, ig_tensor *out, const ig_tensor *gate, const ig_tensor *up) {
  cu_impl *c = CU(be);
  long long n = ig_tensor_numel(gate);
  if (ig_tensor_numel(up) != n || ig_tensor_numel(out) < n) FAIL(be, "cuda swiglu: shape mismatch");
  if (n == 0) return 0;
  if (out->dtype == IG_DT_BF16 && gate->dtype == IG_DT_BF16 && up->dtype == IG_DT_BF16 && n % 8 == 0 &&
      ((uintptr_t)out->data | (uintptr_t)gate->data | (uintptr_t)up->data) % 16 == 0) {
    CU_LAUNCH(be, (swiglu_bf16_kernel), grid_for(n / 8, 256), 256, 0, (uint4 *)out->data, (const uint4 *)gate->data,
                                                               (const uint4 *)up->data, n / 8);
    LAUNCH_CHECK(be);
    return 0;
  }
  CU_LAUNCH(be, (swiglu_kernel), grid_for(n, 256), 256, 0, out->data, out->dtype, gate->data, gate->dtype, up->data, up->dtype, n);
  LAUNCH_CHECK(be);
  return 0;
}

/* ---- KV-cache write ---------------------------------------------------------------------------------- */
/* Cache layout per layer: K then V, each [n_blocks][n_kv_heads][block_size][head_dim]. Token i goes to block
 * slot[i] / bs, offset slot[i] % bs (slot < 0: padding, skipped). One block per token, threads over kvh*hd. */
__global__ void kv_write_kernel(void *kc, void *vc, int cdt, const void *k, int kdt, const void *v, int vdt,
                                const int *slot, int nkv, int hd, int bs, float kinv, float vinv) {
  PDL_ENTRY();
  int i = blockIdx.x;
  int s = slot[i];
  if (s < 0) return;
  long long blk = s / bs, off = s % bs;
  int W = nkv * hd;
  for (int t = threadIdx.x; t < W; t += blockDim.x) {
    int h = t / hd, d = t % hd;
    long long dst = ((blk * nkv + h) * bs + off) * hd + d;
    stf(kc, cdt, dst, ldf(k, kdt, (long long)i * W + t) * kinv);
    stf(vc, cdt, dst, ldf(v, vdt, (long long)i * W + t) * vinv);
  }
}

int cu_kv_write(ig_backend *be, int layer, const ig_tensor *k, const ig_tensor *v) {
  cu_impl *c = CU(be);
  if (!c->kv_mem) FAIL(be, "cuda kv_write: kv_init was not called");
  if (layer < 0 || layer >= c->kv.n_layers) FAIL(be, "cuda kv_write: bad layer %d", layer);
  int W = c->kv.n_kv_heads * c->kv.head_dim;
  if (k->cols != W || v->cols != W) FAIL(be, "cuda kv_write: width %lld != n_kv_heads*head_dim %d", (long long)k->cols, W);
  int n = c->b.n_tokens;
  if (n == 0) return 0;
  char *kc, *vc;
  cu_kv_layer(c, layer, &kc, &vc);
  CU_LAUNCH(be, (kv_write_kernel), n, W >= 256 ? 256 : 128, 0, kc, vc, c->kv_cdt, k->data, k->dtype, v->data, v->dtype, c->b.slot,
                                                         c->kv.n_kv_heads, c->kv.head_dim, c->kv.block_size,
                                                         cu_kv_kinv(c, layer), cu_kv_vinv(c, layer));
  LAUNCH_CHECK(be);
  return 0;
}

/* rope then kv_write in one launch (decode steps are launch-bound): blocks (token, part); thread t of the token's
 * parts rotates (head, pair) t of q or k in place and, for k, stores the two rotated values (read back from k, so
 * rounded exactly as kv_write would read them) into the cache, and copies v element t (and, with a partial rotary
 * dimension, k's element t past rot). One item per thread: a block per token looping over 10 items was latency-bound
 * (16 us at any batch on the H100, 8B shape). Bitwise rope_kernel + kv_write_kernel. */
__global__ void rope_kv_kernel(void *q, int qdt, void *k, int kdt, const void *v, int vdt, void *kc, void *vc, int cdt,
                               const int *pos, const int *slot, const float *inv_freq, int nh, int nkv, int hd, int rot,
                               float attn_factor, int bs, float kinv, float vinv) {
  PDL_ENTRY();
  int i = blockIdx.x;
  float p = (float)pos[i];
  int half = rot / 2, s = slot[i];
  long long blk = s >= 0 ? s / bs : 0, off = s >= 0 ? s % bs : 0;
  int total = (nh + nkv) * half;
  int t0 = blockIdx.y * blockDim.x + threadIdx.x, tstep = gridDim.y * blockDim.x;
  for (int t = t0; t < total; t += tstep) {
    int h = t / half, j = t % half;
    int is_k = h >= nh;
    void *base = is_k ? k : q;
    int dt = is_k ? kdt : qdt;
    long long o = is_k ? (long long)i * nkv * hd + (long long)(h - nh) * hd : (long long)i * nh * hd + (long long)h * hd;
    rope_pair(base, dt, o, j, half, p, inv_freq, attn_factor);
    if (is_k && s >= 0) {
      long long dst = ((blk * nkv + (h - nh)) * bs + off) * hd;
      stf(kc, cdt, dst + j, ldf(k, kdt, o + j) * kinv);
      stf(kc, cdt, dst + j + half, ldf(k, kdt, o + j + half) * kinv);
    }
  }
  if (s < 0) return;
  int W = nkv * hd, pass = hd - rot;
  for (int t = t0; t < W; t += tstep) {
    int h = t / hd, d = t % hd;
    long long dst = ((blk * nkv + h) * bs + off) * hd + d;
    stf(vc, cdt, dst, ldf(v, vdt, (long long)i * W + t) * vinv);
  }
  for (int t = t0; t < nkv * pass; t += tstep) { /* k's dims past the rotary ones, as they are */
    int h = t / pass, d = rot + t % pass;
    stf(kc, cdt, ((blk * nkv + h) * bs + off) * hd + d, ldf(k, kdt, (long long)i * W + (long long)h * hd + d) * kinv);
  }
}

int cu_rope_kv_write(ig_backend *be, ig_tensor *q, ig_tensor *k, const ig_tensor *v, int n_heads, int n_kv_heads, int layer) {
  cu_impl *c = CU(be);
  int n = c->b.n_tokens;
  int hd = c->head_dim_rope;
  /* what the fused kernel cannot do (a cache width other than k's): the two ops */
  if (!c->inv_freq || !c->kv_mem || hd != c->kv.head_dim || n_kv_heads != c->kv.n_kv_heads) {
    if (cu_rope(be, q, k, n_heads, n_kv_heads)) return -1;
    return cu_kv_write(be, layer, k, v);
  }
  if (layer < 0 || layer >= c->kv.n_layers) FAIL(be, "cuda rope_kv_write: bad layer %d", layer);
  int W = n_kv_heads * hd;
  if (q->cols != (int64_t)n_heads * hd || k->cols != W || v->cols != W)
    FAIL(be, "cuda rope_kv_write: q/k/v widths do not match heads * head_dim %d", hd);
  if (n == 0) return 0;
  char *kc, *vc;
  cu_kv_layer(c, layer, &kc, &vc);
  int work = (n_heads + n_kv_heads) * (hd / 2);
  if (W > work) work = W;
  int threads = work >= 256 ? 256 : ((work + 31) / 32) * 32;
  dim3 grid((unsigned)n, (unsigned)((work + threads - 1) / threads));
  CU_LAUNCH(be, (rope_kv_kernel), grid, threads, 0, q->data, q->dtype, k->data, k->dtype, v->data, v->dtype, kc, vc,
            c->kv_cdt, c->b.pos, c->b.slot, c->rope_cur, n_heads, n_kv_heads, hd, c->rot_dim, c->attn_factor,
            c->kv.block_size, cu_kv_kinv(c, layer), cu_kv_vinv(c, layer));
  LAUNCH_CHECK(be);
  return 0;
}

/* Per-head q/k norms (Qwen3, Gemma3) then rope_kv_kernel in one launch, bitwise rmsnorm, rmsnorm, rope_kv_write: a
 * warp per (token, head of q then k). The norm is rmsnorm_bf16_kernel's at one warp (its launch for a head_dim row:
 * lane l holds chunk l, the warp's sum summed again alone), stored as bf16 into qn/kn; then each lane rotates pairs
 * of the stored values with rope_pair and, for k, copies them (read back, as stored) into the cache with the dims past
 * rot; a k head's warp also copies its v head (into a bf16 or an FP8 cache, cdt: stf rounds as kv_write does).
 * bf16 activations only, hd % 8 == 0 and hd <= 256. */
template <bool WQ32, bool WK32>
__global__ void qknorm_rope_kv_kernel(__nv_bfloat16 *qn, __nv_bfloat16 *kn, const __nv_bfloat16 *q, const __nv_bfloat16 *k,
                                      const __nv_bfloat16 *v, const void *wq, const void *wk, void *kc, void *vc,
                                      int cdt, const int *pos, const int *slot, const float *inv_freq, int nh,
                                      int nkv, int hd, int rot, float attn_factor, int bs, float eps, float kinv,
                                      float vinv) {
  PDL_ENTRY();
  const int i = blockIdx.x, lane = threadIdx.x & 31, h = blockIdx.y * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (h >= nh + nkv) return; /* a whole warp; the kernel has no block barrier */
  const bool is_k = h >= nh;
  const int hh = is_k ? h - nh : h, W8 = hd / 8;
  const long long o = is_k ? ((long long)i * nkv + hh) * hd : ((long long)i * nh + hh) * hd;
  __nv_bfloat16 *d = (is_k ? kn : qn) + o;
  float x[8], ss = 0.f;
  if (lane < W8) {
    unpack8(((const uint4 *)((is_k ? k : q) + o))[lane], x);
#pragma unroll
    for (int e = 0; e < 8; e++) ss += x[e] * x[e];
  }
  ss = warp_sum(ss);
  ss = warp_sum(lane == 0 ? ss : 0.f); /* norm_block_sum with one warp */
  const float scale = rsqrtf(ss / (float)hd + eps);
  if (lane < W8) {
    float ww[8];
    if (is_k) norm_w8<WK32>(wk, lane, ww);
    else norm_w8<WQ32>(wq, lane, ww);
#pragma unroll
    for (int e = 0; e < 8; e++) x[e] = x[e] * scale * ww[e];
    ((uint4 *)d)[lane] = pack8(x);
  }
  __syncwarp();
  const float p = (float)pos[i];
  const int half = rot / 2, s = slot[i];
  const long long blk = s >= 0 ? s / bs : 0, off = s >= 0 ? s % bs : 0;
  const long long cdst = ((blk * nkv + hh) * bs + off) * hd;
  for (int j = lane; j < half; j += 32) {
    rope_pair(d, IG_DT_BF16, 0, j, half, p, inv_freq, attn_factor);
    if (is_k && s >= 0)
      stf(kc, cdt, cdst + j, __bfloat162float(d[j]) * kinv), stf(kc, cdt, cdst + j + half, __bfloat162float(d[j + half]) * kinv);
  }
  if (!is_k || s < 0) return;
  for (int t = rot + lane; t < hd; t += 32) stf(kc, cdt, cdst + t, __bfloat162float(d[t]) * kinv); /* k's dims past rot */
  const __nv_bfloat16 *vr = v + ((long long)i * nkv + hh) * hd;
  for (int t = lane; t < hd; t += 32) stf(vc, cdt, cdst + t, __bfloat162float(vr[t]) * vinv);
}

int cu_qk_norm_rope_kv_write(ig_backend *be, ig_tensor *qn, ig_tensor *kn, const ig_tensor *q, const ig_tensor *k,
                             const ig_tensor *v, const ig_tensor *wq, const ig_tensor *wk, float eps, int n_heads,
                             int n_kv_heads, int layer) {
  cu_impl *c = CU(be);
  int n = c->b.n_tokens, hd = c->head_dim_rope;
  int fast = c->inv_freq && c->kv_mem && hd == c->kv.head_dim && n_kv_heads == c->kv.n_kv_heads && hd % 8 == 0 &&
             hd <= 256 && be->act_dtype == IG_DT_BF16 && wq->cols * wq->rows == hd && wk->cols * wk->rows == hd;
  const ig_tensor *ts[5] = {qn, kn, q, k, v};
  for (int t = 0; t < 5 && fast; t++) fast = ts[t]->dtype == IG_DT_BF16 && (uintptr_t)ts[t]->data % 16 == 0;
  fast = fast && (wq->dtype == IG_DT_BF16 || wq->dtype == IG_DT_F32) && (wk->dtype == IG_DT_BF16 || wk->dtype == IG_DT_F32) &&
         ((uintptr_t)wq->data | (uintptr_t)wk->data) % 16 == 0 && q->cols == (int64_t)n_heads * hd &&
         k->cols == (int64_t)n_kv_heads * hd && v->cols == k->cols && qn->cols == q->cols && kn->cols == k->cols;
  if (!fast) { /* the three ops */
    ig_tensor qh = *q, kh = *k, qnh = *qn, knh = *kn;
    int64_t W = wq->cols * wq->rows;
    if (W <= 0) FAIL(be, "cuda qk_norm_rope_kv_write: empty norm weight");
    qh.rows = qnh.rows = q->rows * (q->cols / W), kh.rows = knh.rows = k->rows * (k->cols / W);
    qh.cols = kh.cols = qnh.cols = knh.cols = W;
    if (cu_rmsnorm(be, &qnh, &qh, NULL, wq, eps) || cu_rmsnorm(be, &knh, &kh, NULL, wk, eps)) return -1;
    return cu_rope_kv_write(be, qn, kn, v, n_heads, n_kv_heads, layer);
  }
  if (layer < 0 || layer >= c->kv.n_layers) FAIL(be, "cuda qk_norm_rope_kv_write: bad layer %d", layer);
  for (int t = 0; t < 5; t++)
    if (ts[t]->rows < n) FAIL(be, "cuda qk_norm_rope_kv_write: %lld rows for a step of %d tokens", (long long)ts[t]->rows, n);
  if (n == 0) return 0;
  char *kcp, *vcp;
  cu_kv_layer(c, layer, &kcp, &vcp);
  const int WPB = 8; /* warps per block */
  dim3 grid((unsigned)n, (unsigned)((n_heads + n_kv_heads + WPB - 1) / WPB));
#define QN(A, B)                                                                                                   \
  CU_LAUNCH(be, (qknorm_rope_kv_kernel<A, B>), grid, WPB * 32, 0, (__nv_bfloat16 *)qn->data, (__nv_bfloat16 *)kn->data, \
            (const __nv_bfloat16 *)q->data, (const __nv_bfloat16 *)k->data, (const __nv_bfloat16 *)v->data,        \
            (const void *)wq->data, (const void *)wk->data, (void *)kcp, (void *)vcp, c->kv_cdt, c->b.pos,              \
            c->b.slot, c->rope_cur, n_heads, n_kv_heads, hd, c->rot_dim, c->attn_factor, c->kv.block_size, eps,       \
            cu_kv_kinv(c, layer), cu_kv_vinv(c, layer))
  int a32 = wq->dtype == IG_DT_F32, b32 = wk->dtype == IG_DT_F32;
  if (a32 && b32) QN(true, true);
  else if (a32) QN(true, false);
  else if (b32) QN(false, true);
  else QN(false, false);
#undef QN
  LAUNCH_CHECK(be);
  return 0;
}

/* The q|k|v product's packed rows [n, (nh + 2 nkv) hd] (one GEMM's output) rotated and scattered in one pass: q
 * heads into q [n, nh hd], k heads into the cache, v rows copied into it. Thread: 8 pairs (two 16-byte loads) of a
 * q or k head's first rot dims, 16 bytes of its dims past rot (a partial rotary dimension: copied as they are), or
 * 16 bytes of v; rope_rot's arithmetic, so bitwise matmul_n's split then rope_kv_kernel (both store in the
 * activation dtype, which the cache holds too). Replaces the split (a 2x copy of the product) and the scalar rope
 * (2-byte accesses). Needs hd % 8 == 0, rot % 16 == 0 and 16-byte aligned bases. */
/* 8 values of a q head (T) or of the cache (T, or fp8 when KF != 0: 8 bytes) */
template <typename T, int KF>
__device__ __forceinline__ void st8_cache(void *base, long long i, const float *x, float inv = 1.f) {
  if constexpr (KF != 0) { /* inv: the FP8 cache's 1 / scale */
    float y[8];
#pragma unroll
    for (int e = 0; e < 8; e++) y[e] = x[e] * inv;
    *(uint2 *)((uint8_t *)base + i) = f8_to_fp8x8<KF>(y);
  } else {
    uint4 y;
    T *yv = (T *)&y;
#pragma unroll
    for (int e = 0; e < 8; e++) yv[e] = fromf<T>(x[e]);
    *(uint4 *)((T *)base + i) = y;
  }
}
template <typename T, int KF>
__device__ __forceinline__ void copy8_cache(void *base, long long i, const T *src, float inv) {
  if constexpr (KF != 0) {
    uint4 a = *(const uint4 *)src;
    const T *av = (const T *)&a;
    float x[8];
#pragma unroll
    for (int e = 0; e < 8; e++) x[e] = tof<T>(av[e]) * inv;
    *(uint2 *)((uint8_t *)base + i) = f8_to_fp8x8<KF>(x);
  } else {
    *(uint4 *)((T *)base + i) = *(const uint4 *)src;
  }
}
/* KF: the cache holds T (0) or fp8 (1 e4m3, 2 e5m2: the values stored in T first, then rounded, as kv_write_kernel
 * rounds what k and v hold) */
template <typename T, int KF>
__global__ void __launch_bounds__(256) qkv_rope_kv_kernel(const T *__restrict__ pk, T *__restrict__ q, void *__restrict__ kc,
                                                          void *__restrict__ vc, const int *__restrict__ pos,
                                                          const int *__restrict__ slot, const float *__restrict__ inv_freq,
                                                          int nh, int nkv, int hd, int rot, float attn_factor, int bs,
                                                          int per_tok, long long total, float kinv, float vinv) {
  PDL_ENTRY();
  long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (idx >= total) return;
  int i = (int)(idx / per_tok), it = (int)(idx % per_tok);
  int half = rot / 2, g8 = half / 8, pp = (hd - rot) / 8, nrope = (nh + nkv) * (g8 + pp);
  const T *row = pk + (long long)i * (nh + 2 * nkv) * hd;
  int s = slot[i];
  long long blk = s >= 0 ? s / bs : 0, off = s >= 0 ? s % bs : 0;
  if (it < nrope) {
    int h = it / (g8 + pp), r = it % (g8 + pp), j0 = r * 8;
    const bool to_q = h < nh;
    void *dst;
    long long d0;
    if (to_q) dst = q, d0 = (long long)i * nh * hd + (long long)h * hd;
    else if (s >= 0) dst = kc, d0 = ((blk * nkv + (h - nh)) * bs + off) * hd;
    else return;
    const T *src = row + (long long)h * hd; /* q heads, then k heads, are contiguous in the packed row */
    if (r >= g8) { /* past the rotary dims */
      int d = rot + (r - g8) * 8;
      if (to_q) *(uint4 *)((T *)dst + d0 + d) = *(const uint4 *)(src + d);
      else copy8_cache<T, KF>(dst, d0 + d, src + d, kinv);
      return;
    }
    uint4 a = *(const uint4 *)(src + j0), b = *(const uint4 *)(src + j0 + half);
    const T *av = (const T *)&a, *bv = (const T *)&b;
    float ya[8], yb[8];
    float p = (float)pos[i];
#pragma unroll
    for (int e = 0; e < 8; e++) {
      float y1, y2;
      rope_rot(tof<T>(av[e]), tof<T>(bv[e]), p, inv_freq[j0 + e], attn_factor, &y1, &y2);
      ya[e] = tof<T>(fromf<T>(y1)), yb[e] = tof<T>(fromf<T>(y2)); /* as T holds them */
    }
    if (to_q) {
      st8_cache<T, 0>(dst, d0 + j0, ya);
      st8_cache<T, 0>(dst, d0 + j0 + half, yb);
    } else {
      st8_cache<T, KF>(dst, d0 + j0, ya, kinv);
      st8_cache<T, KF>(dst, d0 + j0 + half, yb, kinv);
    }
  } else if (s >= 0) {
    int t = (it - nrope) * 8, h = t / hd, d = t % hd;
    copy8_cache<T, KF>(vc, ((blk * nkv + h) * bs + off) * hd + d, row + (long long)(nh + nkv) * hd + t, vinv);
  }
}

int cu_qkv_rope_kv_write(ig_backend *be, ig_tensor *q, ig_tensor *k, ig_tensor *v, const ig_tensor *x,
                         const ig_tensor *const *ws, int n_heads, int n_kv_heads, int layer) {
  cu_impl *c = CU(be);
  int n = c->b.n_tokens, hd = c->head_dim_rope;
  ig_tensor *outs[3] = {q, k, v};
  const ig_tensor *nob[3] = {NULL, NULL, NULL};
  /* the packed form: rope over whole heads, cache and activations of one 2-byte dtype, 16-byte vectors */
  int dt = be->act_dtype, W = n_kv_heads * hd;
  const int rot = c->rot_dim;
  int can = c->qkv_rope && c->inv_freq && c->kv_mem && rot % 16 == 0 && (hd - rot) % 8 == 0 && hd == c->kv.head_dim &&
            n_kv_heads == c->kv.n_kv_heads && hd % 8 == 0 && (dt == IG_DT_BF16 || dt == IG_DT_F16) && q->dtype == dt && k->dtype == dt && v->dtype == dt &&
            q->cols == (int64_t)n_heads * hd && k->cols == W && v->cols == W && x->rows == n && (uintptr_t)q->data % 16 == 0 &&
            layer >= 0 && layer < c->kv.n_layers;
  void *pk = NULL;
  if (cu_matmul_n_packed(be, 3, outs, x, ws, nob, can ? &pk : NULL)) return -1;
  if (!pk) return cu_rope_kv_write(be, q, k, v, n_heads, n_kv_heads, layer);
  if (n == 0) return 0;
  char *kcp, *vcp;
  cu_kv_layer(c, layer, &kcp, &vcp);
  if (((uintptr_t)pk | (uintptr_t)kcp | (uintptr_t)vcp) % 16) FAIL(be, "cuda qkv_rope_kv_write: unaligned buffers");
  int per_tok = (n_heads + n_kv_heads) * (rot / 16 + (hd - rot) / 8) + W / 8;
  long long total = (long long)n * per_tok;
  unsigned blocks = (unsigned)((total + 255) / 256);
#define QKV_L(T, KF)                                                                                              \
  CU_LAUNCH(be, (qkv_rope_kv_kernel<T, KF>), blocks, 256, 0, (const T *)pk, (T *)q->data, (void *)kcp, (void *)vcp,     \
            c->b.pos, c->b.slot, c->rope_cur, n_heads, n_kv_heads, hd, rot, c->attn_factor, c->kv.block_size, per_tok, total, \
            cu_kv_kinv(c, layer), cu_kv_vinv(c, layer))
  if (dt == IG_DT_BF16 && c->kv_fp8 == 1) QKV_L(__nv_bfloat16, 1);
  else if (dt == IG_DT_BF16 && c->kv_fp8 == 2) QKV_L(__nv_bfloat16, 2);
  else if (dt == IG_DT_BF16) QKV_L(__nv_bfloat16, 0);
  else QKV_L(__half, 0);
#undef QKV_L
  LAUNCH_CHECK(be);
  return 0;
}

/* ---- gather rows, add, convert ----------------------------------------------------------------------- */
/* out[j, :] = x[rows[j], :]; one block per output row. */
__global__ void gather_kernel(void *out, int odt, const void *x, int xdt, const int *rows, int H) {
  PDL_ENTRY();
  int j = blockIdx.x;
  long long r = rows[j];
  for (int t = threadIdx.x; t < H; t += blockDim.x) stf(out, odt, (long long)j * H + t, ldf(x, xdt, r * H + t));
}

int cu_gather_rows(ig_backend *be, ig_tensor *out, const ig_tensor *x) {
  cu_impl *c = CU(be);
  int n = c->b.n_out;
  if (out->cols != x->cols || out->rows < n) FAIL(be, "cuda gather_rows: shape mismatch");
  if (n == 0) return 0;
  CU_LAUNCH(be, (gather_kernel), n, 256, 0, out->data, out->dtype, x->data, x->dtype, c->b.out_rows, (int)x->cols);
  LAUNCH_CHECK(be);
  return 0;
}

/* x += y elementwise; also dtype conversion (dst = src). Grid-stride loops. */
__global__ void add_kernel(void *x, int xdt, const void *y, int ydt, long long n) {
  PDL_ENTRY();
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    stf(x, xdt, i, ldf(x, xdt, i) + ldf(y, ydt, i));
}
__global__ void convert_kernel(void *d, int ddt, const void *s, int sdt, long long n) {
  PDL_ENTRY();
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    stf(d, ddt, i, ldf(s, sdt, i));
}

int cu_add(ig_backend *be, ig_tensor *x, const ig_tensor *y) {
  long long n = ig_tensor_numel(x);
  if (ig_tensor_numel(y) != n) FAIL(be, "cuda add: shape mismatch");
  if (n == 0) return 0;
  CU_LAUNCH(be, (add_kernel), grid_for(n, 256), 256, 0, x->data, x->dtype, y->data, y->dtype, n);
  LAUNCH_CHECK(be);
  return 0;
}

int cu_convert(ig_backend *be, void *dst, ig_dtype ddt, const void *src, ig_dtype sdt, int64_t n) {
  if (n == 0) return 0;
  CU_LAUNCH(be, (convert_kernel), grid_for(n, 256), 256, 0, dst, ddt, src, sdt, n);
  LAUNCH_CHECK(be);
  return 0;
}

/* ---- argmax per row (greedy sampling on the device) -------------------------------------------------- */
/* One block per row: each thread scans a strided slice keeping (max, lowest index), then a block reduction
 * on (value, index) pairs; NaN never wins. */
__global__ void argmax_kernel(const void *x, int xdt, int V, int *ids) {
  PDL_ENTRY();
  long long base = (long long)blockIdx.x * V;
  float best = -INFINITY;
  int bi = 0x7fffffff;
  for (int j = threadIdx.x; j < V; j += blockDim.x) {
    float v = ldf(x, xdt, base + j);
    if (v > best || (v == best && j < bi)) best = v, bi = j;
  }
  __shared__ float sv[32];
  __shared__ int si[32];
  for (int o = 16; o > 0; o >>= 1) {
    float ov = __shfl_xor_sync(0xffffffffu, best, o);
    int oi = __shfl_xor_sync(0xffffffffu, bi, o);
    if (ov > best || (ov == best && oi < bi)) best = ov, bi = oi;
  }
  if ((threadIdx.x & 31) == 0) sv[threadIdx.x >> 5] = best, si[threadIdx.x >> 5] = bi;
  __syncthreads();
  if (threadIdx.x < 32) {
    int nw = blockDim.x >> 5;
    best = threadIdx.x < nw ? sv[threadIdx.x] : -INFINITY;
    bi = threadIdx.x < nw ? si[threadIdx.x] : 0x7fffffff;
    for (int o = 16; o > 0; o >>= 1) {
      float ov = __shfl_xor_sync(0xffffffffu, best, o);
      int oi = __shfl_xor_sync(0xffffffffu, bi, o);
      if (ov > best || (ov == best && oi < bi)) best = ov, bi = oi;
    }
    if (threadIdx.x == 0) ids[blockIdx.x] = bi == 0x7fffffff ? 0 : bi;
  }
}

int cu_argmax_rows(ig_backend *be, const ig_tensor *logits, int32_t *ids) {
  cu_impl *c = CU(be);
  int rows = (int)logits->rows;
  if (rows <= 0) return 0;
  if (cu_scratch(be, &c->dl, &c->dl_size, (size_t)rows * 4)) return -1;
  CU_LAUNCH(be, (argmax_kernel), rows, 1024, 0, logits->data, logits->dtype, (int)logits->cols, (int *)c->dl);
  LAUNCH_CHECK(be);
  CUDA_CHECK(be, cudaMemcpyAsync(ids, c->dl, (size_t)rows * 4, cudaMemcpyDeviceToHost, c->st));
  CUDA_CHECK(be, cudaStreamSynchronize(c->st));
  return 0;
}
