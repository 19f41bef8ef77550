/* backend/cuda/cuda_attention.cu: paged causal attention over the KV cache (GQA, variable-length batch,
 * sliding window, chunked prefill against cached blocks). Two kernels, chosen per sequence in set_batch:
 *  - split-K "decode" kernel for sequences with few new rows: one block per (row, kv head, key split of
 *    IG_ATTN_SPLIT_KEYS keys) serving the whole GQA group of query heads, then a combine kernel; on tensor
 *    cores (mma.sync, the group as the 16 rows of the tile) for bf16 at head_dim 64/128, SIMT otherwise;
 *  - tiled FlashAttention-style prefill kernel (bf16, tensor cores through WMMA, head_dim 64 or 128) for
 *    sequences with at least IG_ATTN_MIN_TILE_QLEN new rows: one block per (64-row query tile, query head).
 * A row's split count depends only on its own position, so results do not depend on the rest of the batch.
 * Every kernel takes Gemma2's softcap (score_l2): 0 leaves the arithmetic as it was, bit for bit. */
#include "backend/cuda/cuda_common.h"
#include "backend/cuda/cuda_dtype.cuh"
#include "backend/cuda/cuda_mma.cuh"
#include <mma.h>
using namespace nvcuda;

#define LOG2E 1.4426950408889634f

/* A raw score x = q.k in the log2 domain of the online softmax: x * sl2 (sl2 = scale * log2 e), or, with Gemma2's
 * attn_logit_softcapping (cap > 0), the scaled score s = x * scale capped first: cap * tanh(s / cap) * log2 e (the
 * order of transformers' eager attention: s / cap, tanh, * cap). */
__device__ __forceinline__ float score_l2(float x, float sl2, float scale, float cap) {
  return cap > 0.f ? cap * tanhf(x * scale / cap) * LOG2E : x * sl2;
}

/* Key range [lo, hi) a query at position p sees. */
__device__ __forceinline__ void key_range(int p, int window, int *lo, int *hi) {
  *lo = window > 0 ? max(0, p - window + 1) : 0;
  *hi = p + 1;
}

/* ---- split-K decode kernel --------------------------------------------------------------------------- */
/* 8 consecutive elements of a row as floats, in one or two 16-byte loads. */
__device__ __forceinline__ void load8(const __nv_bfloat16 *p, float *f) {
  uint4 v = *(const uint4 *)p;
  const __nv_bfloat162 *h = (const __nv_bfloat162 *)&v;
#pragma unroll
  for (int i = 0; i < 4; i++) {
    float2 t = __bfloat1622float2(h[i]);
    f[2 * i] = t.x, f[2 * i + 1] = t.y;
  }
}
__device__ __forceinline__ void load8(const float *p, float *f) {
  float4 a = *(const float4 *)p, b = *(const float4 *)(p + 4);
  f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w, f[4] = b.x, f[5] = b.y, f[6] = b.z, f[7] = b.w;
}

/* Block (row i of dec_rows, kv head, split z) covers keys [lo + z*SPLIT, min(hi, lo + (z+1)*SPLIT)) for the
 * G = nh/nkv query heads of that kv head (the K/V rows are read once for the whole group). 128 threads.
 * Phase 1: one thread per key: its K row in 16-byte loads, G dot products with q (shared memory, pre-scaled
 * into the log2 domain; with a softcap, pre-scaled by scale alone and capped after the product). Phase 2: one
 * warp per head: max, exp2, sum over the split. Phase 3: thread = (key lane kl, 8-wide chunk dc of head_dim): it
 * accumulates p[g][j] * V[j][dc*8..+8] over keys j = kl (mod KL) with 16-byte loads, then the KL partial sums are
 * added through shared memory. Writes unnormalised partials (o[hd], max, sum) per (row, head, split) for the combine
 * kernel. head_dim % 8 == 0. */
#define DEC_THREADS 128
__device__ __forceinline__ void cp_async16_dec(void *dst, const void *src) {
  unsigned d = (unsigned)__cvta_generic_to_shared(dst);
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(d), "l"(src));
}
/* STAGED: the split's K and V rows are first copied into shared memory with cp.async, all in flight at once
 * (one memory round trip instead of one per phase and unrolled step); rows are padded by 16 bytes so the
 * per-key reads of phase 1 do not collide in banks. Default when the stage fits (IGNIS_CUDA_DECODE_STAGED=0
 * turns it off): on the H100, batch-1 decode attention at context 512 went from 0.70 to 0.41 ms per token. */
template <typename T, int GMAX, bool STAGED>
__global__ void __launch_bounds__(DEC_THREADS) attn_decode_kernel(const T *__restrict__ q, float *__restrict__ part,
                                   const T *__restrict__ kc, const T *__restrict__ vc, const int *dec_rows,
                                   const int *row_seq, const int *pos, const int *block_table, int max_blocks, int nh,
                                   int nkv, int hd, int bs, float scale, int window, int max_splits, float softcap) {
  PDL_ENTRY();
  extern __shared__ float sm[];
  const int G = nh / nkv;
  const int CH = hd / 8, KL = DEC_THREADS / CH;
  int i = blockIdx.x, kvh = blockIdx.y, z = blockIdx.z;
  int r = dec_rows[i];
  int s = row_seq[r], p = pos[r];
  int lo, hi;
  key_range(p, window, &lo, &hi);
  int nsplit = (hi - lo + IG_ATTN_SPLIT_KEYS - 1) / IG_ATTN_SPLIT_KEYS;
  if (z >= nsplit) return;
  int k0 = lo + z * IG_ATTN_SPLIT_KEYS, k1 = min(hi, k0 + IG_ATTN_SPLIT_KEYS);
  int nk = k1 - k0;
  float *qs = sm;                           /* [G][hd] */
  float *sc = qs + G * hd;                  /* [G][SPLIT] */
  const int pitch = hd + 16 / (int)sizeof(T);  /* staged row pitch in elements */
  /* red [KL][G][hd] is written after phase 1, when the staged K rows are dead: it shares their space when it fits
   * (dec_red_aliases; the launcher sizes shared memory by the same rule), so more blocks fit on an SM */
  const bool alias = STAGED && (size_t)KL * G * hd * sizeof(float) <= (size_t)IG_ATTN_SPLIT_KEYS * pitch * sizeof(T);
  float *red_sep = sc + G * IG_ATTN_SPLIT_KEYS;
  T *Ks = (T *)(alias ? red_sep : red_sep + (size_t)KL * G * hd); /* [SPLIT][pitch] when STAGED */
  float *red = alias ? (float *)Ks : red_sep;
  T *Vs = Ks + (size_t)IG_ATTN_SPLIT_KEYS * pitch;
  __shared__ int rowoff[IG_ATTN_SPLIT_KEYS]; /* element offset of each key's row in the layer's cache */
  __shared__ float stat[2 * 16];
  const int *bt = block_table + (size_t)s * max_blocks;
  for (int t = threadIdx.x; t < G * hd; t += DEC_THREADS) {
    float qv = tof<T>(q[(size_t)r * nh * hd + (size_t)kvh * G * hd + t]) * scale;
    qs[t] = softcap > 0.f ? qv : qv * LOG2E;
  }
  for (int j = threadIdx.x; j < nk; j += DEC_THREADS) {
    int key = k0 + j;
    rowoff[j] = (int)((((size_t)bt[key / bs] * nkv + kvh) * bs + key % bs) * hd);
  }
  __syncthreads();
  if (STAGED) {
    const int per = hd * (int)sizeof(T) / 16; /* 16-byte pieces per row */
    for (int c = threadIdx.x; c < nk * per; c += DEC_THREADS) {
      int j = c / per, e = (c % per) * (16 / (int)sizeof(T));
      cp_async16_dec(Ks + (size_t)j * pitch + e, kc + (size_t)(unsigned)rowoff[j] + e);
      cp_async16_dec(Vs + (size_t)j * pitch + e, vc + (size_t)(unsigned)rowoff[j] + e);
    }
    asm volatile("cp.async.commit_group;\ncp.async.wait_group 0;" ::: "memory");
    __syncthreads();
  }
  /* phase 1: scores */
  for (int j = threadIdx.x; j < nk; j += DEC_THREADS) {
    const T *kr = STAGED ? Ks + (size_t)j * pitch : kc + (size_t)(unsigned)rowoff[j];
    float acc[GMAX];
#pragma unroll
    for (int g = 0; g < GMAX; g++) acc[g] = 0.f;
#pragma unroll 4
    for (int c = 0; c < CH; c++) {
      float kf[8];
      load8(kr + c * 8, kf);
#pragma unroll
      for (int g = 0; g < GMAX; g++)
        if (g < G) {
          const float *qq = qs + g * hd + c * 8;
#pragma unroll
          for (int e = 0; e < 8; e++) acc[g] += qq[e] * kf[e];
        }
    }
#pragma unroll
    for (int g = 0; g < GMAX; g++)
      if (g < G) sc[g * IG_ATTN_SPLIT_KEYS + j] = softcap > 0.f ? softcap * tanhf(acc[g] / softcap) * LOG2E : acc[g];
  }
  __syncthreads();
  /* phase 2: per head max and sum; p stored over the scores */
  int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  for (int g = warp; g < G; g += DEC_THREADS / 32) {
    float m = -INFINITY;
    for (int j = lane; j < nk; j += 32) m = fmaxf(m, sc[g * IG_ATTN_SPLIT_KEYS + j]);
    m = warp_max(m);
    float l = 0.f;
    for (int j = lane; j < nk; j += 32) {
      float e = exp2f(sc[g * IG_ATTN_SPLIT_KEYS + j] - m);
      sc[g * IG_ATTN_SPLIT_KEYS + j] = e;
      l += e;
    }
    l = warp_sum(l);
    if (lane == 0) stat[2 * g] = m, stat[2 * g + 1] = l;
  }
  __syncthreads();
  /* phase 3: p @ V */
  int dc = threadIdx.x % CH, kl = threadIdx.x / CH;
  if (kl < KL) {
    float o[GMAX][8];
#pragma unroll
    for (int g = 0; g < GMAX; g++)
#pragma unroll
      for (int e = 0; e < 8; e++) o[g][e] = 0.f;
#pragma unroll 4
    for (int j = kl; j < nk; j += KL) {
      float vf[8];
      load8((STAGED ? Vs + (size_t)j * pitch : vc + (size_t)(unsigned)rowoff[j]) + dc * 8, vf);
#pragma unroll
      for (int g = 0; g < GMAX; g++)
        if (g < G) {
          float pg = sc[g * IG_ATTN_SPLIT_KEYS + j];
#pragma unroll
          for (int e = 0; e < 8; e++) o[g][e] += pg * vf[e];
        }
    }
#pragma unroll
    for (int g = 0; g < GMAX; g++)
      if (g < G)
#pragma unroll
        for (int e = 0; e < 8; e++) red[((size_t)kl * G + g) * hd + dc * 8 + e] = o[g][e];
  }
  __syncthreads();
  for (int t = threadIdx.x; t < G * hd; t += DEC_THREADS) {
    int g = t / hd, d = t % hd;
    float acc = 0.f;
    for (int k = 0; k < KL; k++) acc += red[((size_t)k * G + g) * hd + d];
    part[(((size_t)i * nh + kvh * G + g) * max_splits + z) * (hd + 2) + d] = acc;
  }
  if (threadIdx.x < G) {
    float *pp = part + (((size_t)i * nh + kvh * G + threadIdx.x) * max_splits + z) * (hd + 2);
    pp[hd] = stat[2 * threadIdx.x];
    pp[hd + 1] = stat[2 * threadIdx.x + 1];
  }
}

/* Combine: block (row i, head h), thread d: out = sum_z 2^(m_z - M) o_z / sum_z 2^(m_z - M) l_z. */
#define CB_Z 8 /* splits the combine kernel's unrolled path (and the fused decode kernel) takes */
/* One output of the combine for up to CB_Z splits from a (row, head)'s partials pp (split z's o at pp + z * (hd + 2),
 * then its max and sum): every partial the thread needs, the maxima with the values, requested at once (one memory
 * round trip). Shared by the combine kernel and the fused decode kernel, so both give the same bits. */
__device__ __forceinline__ float combine_splits(const float *pp, int hd, int d, int nsplit) {
  float mz[CB_Z], oz[CB_Z], lz[CB_Z];
#pragma unroll
  for (int z = 0; z < CB_Z; z++) {
    mz[z] = z < nsplit ? pp[z * (hd + 2) + hd] : -INFINITY;
    if (z < nsplit) oz[z] = pp[z * (hd + 2) + d], lz[z] = pp[z * (hd + 2) + hd + 1];
  }
  float M = -INFINITY;
#pragma unroll
  for (int z = 0; z < CB_Z; z++)
    if (z < nsplit) M = fmaxf(M, mz[z]);
  float num = 0.f, den = 0.f;
#pragma unroll
  for (int z = 0; z < CB_Z; z++)
    if (z < nsplit) {
      float w = exp2f(mz[z] - M);
      num += w * oz[z];
      den += w * lz[z];
    }
  return den > 0.f ? num / den : 0.f;
}
template <typename T>
__global__ void attn_combine_kernel(T *out, const float *part, const int *dec_rows, const int *pos, int nh, int hd,
                                    int window, int max_splits, int unrolled, float vs) {
  PDL_ENTRY();
  int i = blockIdx.x, h = blockIdx.y;
  int r = dec_rows[i];
  int lo, hi;
  key_range(pos[r], window, &lo, &hi);
  int nsplit = (hi - lo + IG_ATTN_SPLIT_KEYS - 1) / IG_ATTN_SPLIT_KEYS;
  const float *pp = part + ((size_t)i * nh + h) * max_splits * (hd + 2);
  if (unrolled && nsplit <= CB_Z) {
    /* up to CB_Z splits (contexts of up to 512 keys): one memory round trip instead of two per split; the same
     * operations in the same order as the loop below, so the same bits */
    for (int d = threadIdx.x; d < hd; d += blockDim.x)
      out[(size_t)r * nh * hd + (size_t)h * hd + d] = fromf<T>(combine_splits(pp, hd, d, nsplit) * vs);
    return;
  }
  float M = -INFINITY;
  for (int z = 0; z < nsplit; z++) M = fmaxf(M, pp[z * (hd + 2) + hd]);
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    float num = 0.f, den = 0.f;
    for (int z = 0; z < nsplit; z++) {
      float w = exp2f(pp[z * (hd + 2) + hd] - M);
      num += w * pp[z * (hd + 2) + d];
      den += w * pp[z * (hd + 2) + hd + 1];
    }
    out[(size_t)r * nh * hd + (size_t)h * hd + d] = fromf<T>((den > 0.f ? num / den : 0.f) * vs);
  }
}

/* ---- tiled prefill kernel (bf16, WMMA) --------------------------------------------------------------- */
/* Block (tile t, query head h), 4 warps; warp w owns query rows 16w..16w+15 of the 64-row tile. Per key tile
 * of 64 keys (gathered from the paged cache into shared memory, zero past the end): S = Q K^T on tensor cores
 * (f32 accumulate) into a per-warp f32 strip; lane pair (2 lanes per row) masks (causal, window), updates the
 * running max/sum (online softmax, log2 domain), writes P as bf16 and rescales its half of the O row held in
 * registers; then P V on tensor cores into the strip, added into O. Rows past the tile's end are computed
 * on zero queries and not written. */
#define PF_BM 64
#define PF_BN 64
template <int HD>
struct pf_smem {
  static const int LDK = HD + 8;            /* bf16 row pitch of Q/K/V tiles (16-byte multiple, breaks bank aliasing) */
  static const int LDP = PF_BN + 8;         /* bf16 pitch of P */
  static const int LDS = (HD > PF_BN ? HD : PF_BN) + 4; /* f32 pitch of the per-warp strip */
  static const size_t q_off = 0;
  static const size_t k_off = q_off + (size_t)PF_BM * LDK * 2;
  static const size_t v_off = k_off + (size_t)PF_BN * LDK * 2;
  static const size_t p_off = v_off + (size_t)PF_BN * LDK * 2;
  static const size_t s_off = p_off + (size_t)PF_BM * LDP * 2;
  static const size_t bytes = s_off + (size_t)PF_BM * LDS * 4;
};

template <int HD>
__global__ void __launch_bounds__(128) attn_prefill_kernel(const __nv_bfloat16 *__restrict__ q, __nv_bfloat16 *__restrict__ out,
                                                           const __nv_bfloat16 *__restrict__ kc, const __nv_bfloat16 *__restrict__ vc,
                                                           const int *tiles, const int *pos, const int *block_table,
                                                           int max_blocks, int nh, int nkv, int bs, float scale, int window,
                                                           float softcap) {
  PDL_ENTRY();
  typedef pf_smem<HD> L;
  extern __shared__ __align__(128) unsigned char smraw[];
  __nv_bfloat16 *Qs = (__nv_bfloat16 *)(smraw + L::q_off);
  __nv_bfloat16 *Ks = (__nv_bfloat16 *)(smraw + L::k_off);
  __nv_bfloat16 *Vs = (__nv_bfloat16 *)(smraw + L::v_off);
  __nv_bfloat16 *Ps = (__nv_bfloat16 *)(smraw + L::p_off);
  float *Ss = (float *)(smraw + L::s_off);
  const int t = blockIdx.x, h = blockIdx.y;
  const int s = tiles[3 * t], row0 = tiles[3 * t + 1], nrows = tiles[3 * t + 2];
  const int kvh = h / (nh / nkv);
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int *bt = block_table + (size_t)s * max_blocks;
  const int CH = HD / 8; /* 16-byte chunks per row */

  for (int c = tid; c < PF_BM * CH; c += 128) {
    int rr = c / CH, cc = c % CH;
    uint4 v = make_uint4(0, 0, 0, 0);
    if (rr < nrows) v = *(const uint4 *)(q + ((size_t)(row0 + rr) * nh + h) * HD + cc * 8);
    *(uint4 *)(Qs + rr * L::LDK + cc * 8) = v;
  }
  const int qmin = pos[row0], qmax = pos[row0 + nrows - 1];
  const int kstart = window > 0 ? max(0, qmin - window + 1) : 0;
  const int kend = qmax + 1;

  const int my_row = warp * 16 + (lane >> 1), half = lane & 1;
  const bool row_ok = my_row < nrows;
  const int my_pos = row_ok ? pos[row0 + my_row] : -1;
  const float sl2 = scale * LOG2E;
  float o[HD / 2];
#pragma unroll
  for (int c = 0; c < HD / 2; c++) o[c] = 0.f;
  float m_run = -INFINITY, l_run = 0.f;
  float *Sw = Ss + warp * 16 * L::LDS;
  __nv_bfloat16 *Pw = Ps + warp * 16 * L::LDP;

  for (int kt = (kstart / PF_BN) * PF_BN; kt < kend; kt += PF_BN) {
    __syncthreads(); /* previous tile's K/V fully consumed */
    for (int c = tid; c < PF_BN * CH; c += 128) {
      int rr = c / CH, cc = c % CH;
      int key = kt + rr;
      uint4 kv4 = make_uint4(0, 0, 0, 0), vv4 = make_uint4(0, 0, 0, 0);
      if (key < kend) {
        size_t off = (((size_t)bt[key / bs] * nkv + kvh) * bs + key % bs) * HD + cc * 8;
        kv4 = *(const uint4 *)(kc + off);
        vv4 = *(const uint4 *)(vc + off);
      }
      *(uint4 *)(Ks + rr * L::LDK + cc * 8) = kv4;
      *(uint4 *)(Vs + rr * L::LDK + cc * 8) = vv4;
    }
    __syncthreads();
    /* S = Q K^T for this warp's 16 rows */
#pragma unroll
    for (int nf = 0; nf < PF_BN / 16; nf++) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::fill_fragment(acc, 0.f);
#pragma unroll
      for (int kk = 0; kk < HD / 16; kk++) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> a;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> b;
        wmma::load_matrix_sync(a, Qs + warp * 16 * L::LDK + kk * 16, L::LDK);
        wmma::load_matrix_sync(b, Ks + nf * 16 * L::LDK + kk * 16, L::LDK);
        wmma::mma_sync(acc, a, b, acc);
      }
      wmma::store_matrix_sync(Sw + nf * 16, acc, L::LDS, wmma::mem_row_major);
    }
    __syncwarp();
    /* online softmax on my half row */
    const int lr = lane >> 1;
    float sv[PF_BN / 2];
    float tmax = -INFINITY;
#pragma unroll
    for (int c = 0; c < PF_BN / 2; c++) {
      int col = half * (PF_BN / 2) + c, key = kt + col;
      bool ok = row_ok && key <= my_pos && key < kend && (window <= 0 || key > my_pos - window);
      sv[c] = ok ? score_l2(Sw[lr * L::LDS + col], sl2, scale, softcap) : -INFINITY;
      tmax = fmaxf(tmax, sv[c]);
    }
    tmax = fmaxf(tmax, __shfl_xor_sync(0xffffffffu, tmax, 1));
    float m_new = fmaxf(m_run, tmax);
    float alpha = (m_new == -INFINITY) ? 1.f : exp2f(m_run - m_new);
    float rs = 0.f;
#pragma unroll
    for (int c = 0; c < PF_BN / 2; c++) {
      float pv = (m_new == -INFINITY) ? 0.f : exp2f(sv[c] - m_new);
      __nv_bfloat16 pb = __float2bfloat16(pv);
      rs += __bfloat162float(pb); /* sum what the PV product will use */
      Pw[lr * L::LDP + half * (PF_BN / 2) + c] = pb;
    }
    rs += __shfl_xor_sync(0xffffffffu, rs, 1);
    l_run = l_run * alpha + rs;
    m_run = m_new;
#pragma unroll
    for (int c = 0; c < HD / 2; c++) o[c] *= alpha;
    __syncwarp();
    /* O += P V */
#pragma unroll
    for (int nf = 0; nf < HD / 16; nf++) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::fill_fragment(acc, 0.f);
#pragma unroll
      for (int kk = 0; kk < PF_BN / 16; kk++) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> a;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> b;
        wmma::load_matrix_sync(a, Pw + kk * 16, L::LDP);
        wmma::load_matrix_sync(b, Vs + kk * 16 * L::LDK + nf * 16, L::LDK);
        wmma::mma_sync(acc, a, b, acc);
      }
      wmma::store_matrix_sync(Sw + nf * 16, acc, L::LDS, wmma::mem_row_major);
    }
    __syncwarp();
#pragma unroll
    for (int c = 0; c < HD / 2; c++) o[c] += Sw[lr * L::LDS + half * (HD / 2) + c];
    __syncwarp();
  }
  if (row_ok) {
    float inv = l_run > 0.f ? 1.f / l_run : 0.f;
    __nv_bfloat16 *dst = out + ((size_t)(row0 + my_row) * nh + h) * HD + half * (HD / 2);
#pragma unroll
    for (int c = 0; c < HD / 2; c += 2) *(__nv_bfloat162 *)(dst + c) = __floats2bfloat162_rn(o[c] * inv, o[c + 1] * inv);
  }
}

/* ---- tiled prefill kernel, version 2 (bf16, mma.sync + ldmatrix + cp.async) -------------------------- */
/* FlashAttention-2 layout. Block (tile t, query head h), 4 warps, warp w owns query rows 16w..16w+15 of the
 * 64-row tile; its Q fragments stay in registers for the whole loop. Key tiles of 64 keys are gathered from
 * the paged cache into shared memory with cp.async (zero-filled past the end), double-buffered so the next
 * tile's copy overlaps this tile's math. S = Q K^T (m16n8k16, f32 accumulate) stays in registers; each lane
 * holds two rows' values, so the masked online softmax (log2 domain) needs only quad shuffles; P is packed to
 * bf16 straight into A fragments for O += P V (V read with ldmatrix.trans). Row sums are kept per lane and
 * reduced over the quad at the end. */
#define MMA_BN 64
__device__ __forceinline__ uint32_t pack_bf16(float a, float b) {
  __nv_bfloat162 h = __floats2bfloat162_rn(a, b);
  return *(uint32_t *)&h;
}
/* P's pairs in the tiles' type: bf16, or f16 over an FP8 cache (KF != 0; cuda_mma.cuh's mma_16816) */
template <int KF> __device__ __forceinline__ uint32_t pack_p(float a, float b) {
  if constexpr (KF == 0) return pack_bf16(a, b);
  __half2 h = __floats2half2_rn(a, b);
  return *(uint32_t *)&h;
}
/* 8 bf16 (16 bytes) as 8 f16: the queries over an FP8 cache (exact for |q| up to 65504 and down to f16's normals) */
__device__ __forceinline__ uint4 bf16x8_to_f16x8(uint4 v) {
  const __nv_bfloat162 *b = (const __nv_bfloat162 *)&v;
  uint4 r;
  __half2 *h = (__half2 *)&r;
#pragma unroll
  for (int e = 0; e < 4; e++) h[e] = __float22half2_rn(__bfloat1622float2(b[e]));
  return r;
}
/* NROWS K and V rows of an FP8 cache, in two halves so that a kernel can keep the next rows' loads in flight while it
 * computes: fp8_load_rows reads row rr from cache row rowof(rr) (element offset rowof(rr) * HD) into registers, a row
 * with rowof < 0 as zeros (nothing read); fp8_store_rows writes them as f16 tiles (pitch LDK) with plain stores, which
 * the caller's barrier publishes. Thread tid of 128: 16-element chunks tid + 128 * it. */
template <int HD, int NROWS> struct fp8_rows {
  static constexpr int C16 = HD / 16, IT = NROWS * C16 / 128;
  static_assert(NROWS * C16 % 128 == 0, "whole passes of 128 threads");
};
template <int HD, int NROWS, typename F>
__device__ __forceinline__ void fp8_load_rows(uint4 (&kr)[fp8_rows<HD, NROWS>::IT], uint4 (&vr)[fp8_rows<HD, NROWS>::IT],
                                              const uint8_t *kc, const uint8_t *vc, F rowof, int tid) {
  typedef fp8_rows<HD, NROWS> R;
#pragma unroll
  for (int it = 0; it < R::IT; it++) {
    int c = tid + it * 128, rr = c / R::C16, cc = c % R::C16, row = rowof(rr);
    if (row >= 0) {
      size_t o = (size_t)(unsigned)row * HD + cc * 16;
      kr[it] = __ldcg((const uint4 *)(kc + o));
      vr[it] = __ldcg((const uint4 *)(vc + o));
    } else {
      kr[it] = vr[it] = make_uint4(0, 0, 0, 0);
    }
  }
}
template <int HD, int KF, int NROWS, int LDK>
__device__ __forceinline__ void fp8_store_rows(__nv_bfloat16 *Ks, __nv_bfloat16 *Vs, const uint4 (&kr)[fp8_rows<HD, NROWS>::IT],
                                               const uint4 (&vr)[fp8_rows<HD, NROWS>::IT], int tid) {
  typedef fp8_rows<HD, NROWS> R;
#pragma unroll
  for (int it = 0; it < R::IT; it++) {
    int c = tid + it * 128, rr = c / R::C16, cc = c % R::C16;
    uint4 lo, hi;
    fp8x16_to_f16<KF>(kr[it], lo, hi);
    *(uint4 *)(Ks + rr * LDK + cc * 16) = lo, *(uint4 *)(Ks + rr * LDK + cc * 16 + 8) = hi;
    fp8x16_to_f16<KF>(vr[it], lo, hi);
    *(uint4 *)(Vs + rr * LDK + cc * 16) = lo, *(uint4 *)(Vs + rr * LDK + cc * 16 + 8) = hi;
  }
}
/* rows ri[0..nk) of a split or tile, zeros past them */
struct fp8_ri {
  const int *ri;
  int nk;
  __device__ __forceinline__ int operator()(int rr) const { return rr < nk ? ri[rr] : -1; }
};
/* both halves at once */
template <int HD, int KF, int NROWS, int LDK, typename F>
__device__ __forceinline__ void stage_fp8_rows(__nv_bfloat16 *Ks, __nv_bfloat16 *Vs, const uint8_t *kc, const uint8_t *vc,
                                               F rowof, int tid) {
  uint4 kr[fp8_rows<HD, NROWS>::IT], vr[fp8_rows<HD, NROWS>::IT];
  fp8_load_rows<HD, NROWS>(kr, vr, kc, vc, rowof, tid);
  fp8_store_rows<HD, KF, NROWS, LDK>(Ks, Vs, kr, vr, tid);
}

template <int HD>
struct mma_smem {
  static const int LDK = HD + 8; /* 16-byte row padding: ldmatrix rows fall in distinct banks */
  static const size_t q_bytes = (size_t)PF_BM * LDK * 2;
  static const size_t kv_bytes = (size_t)MMA_BN * LDK * 2;
  static const size_t bytes = q_bytes + 4 * kv_bytes; /* Q, K[2], V[2] */
};

/* CAP: softcap > 0 (without it the score is x * sl2, with no test per score). KF: the cache's format (0: bf16, the
 * tiles bf16 and K/V copied by cp.async; 1 e4m3 / 2 e5m2: Q, K, V and P as f16 tiles, K/V loaded and converted by
 * the threads, one tile at a time). */
template <int HD, bool CAP, int KF>
__global__ void __launch_bounds__(128) attn_prefill_mma_kernel(const __nv_bfloat16 *__restrict__ q, __nv_bfloat16 *__restrict__ out,
                                                               const void *__restrict__ kcv, const void *__restrict__ vcv,
                                                               const int *tiles, const int *pos, const int *block_table,
                                                               int max_blocks, int nh, int nkv, int bs, float scale, int window,
                                                               float softcap, float vs) {
  PDL_ENTRY();
  typedef mma_smem<HD> L;
  extern __shared__ __align__(128) unsigned char smraw[];
  __nv_bfloat16 *Qs = (__nv_bfloat16 *)smraw;
#define KBUF(b) ((__nv_bfloat16 *)(smraw + L::q_bytes + (size_t)(b) * L::kv_bytes))
#define VBUF(b) ((__nv_bfloat16 *)(smraw + L::q_bytes + (size_t)(2 + (b)) * L::kv_bytes))
  const int t = blockIdx.x, h = blockIdx.y;
  const int s = tiles[3 * t], row0 = tiles[3 * t + 1], nrows = tiles[3 * t + 2];
  const int kvh = h / (nh / nkv);
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int *bt = block_table + (size_t)s * max_blocks;
  const int CH = HD / 8;
  const int qmin = pos[row0], qmax = pos[row0 + nrows - 1];
  const int kstart = window > 0 ? max(0, qmin - window + 1) : 0;
  const int kend = qmax + 1;
  const int kt0 = (kstart / MMA_BN) * MMA_BN;

  const __nv_bfloat16 *kc = (const __nv_bfloat16 *)kcv, *vc = (const __nv_bfloat16 *)vcv;
  /* an FP8 cache: the cache row of key tile kt's row rr (-1 past the keys) */
  auto tile_row = [&](int kt) {
    return [=](int rr) { int key = kt + rr; return key < kend ? (bt[key / bs] * nkv + kvh) * bs + key % bs : -1; };
  };
  auto load_kv = [&](int kt, int buf) {
    if constexpr (KF == 0) {
      for (int c = tid; c < MMA_BN * CH; c += 128) {
        int rr = c / CH, cc = c % CH;
        int key = kt + rr;
        bool ok = key < kend;
        size_t off = ok ? (((size_t)bt[key / bs] * nkv + kvh) * bs + key % bs) * HD + cc * 8 : 0;
        cp_async_16z(KBUF(buf) + rr * L::LDK + cc * 8, kc + off, ok);
        cp_async_16z(VBUF(buf) + rr * L::LDK + cc * 8, vc + off, ok);
      }
    } else {
      stage_fp8_rows<HD, KF, MMA_BN, L::LDK>(KBUF(buf), VBUF(buf), (const uint8_t *)kcv, (const uint8_t *)vcv, tile_row(kt), tid);
    }
  };
  for (int c = tid; c < PF_BM * CH; c += 128) {
    int rr = c / CH, cc = c % CH;
    bool ok = rr < nrows;
    if constexpr (KF == 0) {
      cp_async_16z(Qs + rr * L::LDK + cc * 8, ok ? q + ((size_t)(row0 + rr) * nh + h) * HD + cc * 8 : q, ok);
    } else {
      uint4 v = ok ? *(const uint4 *)(q + ((size_t)(row0 + rr) * nh + h) * HD + cc * 8) : make_uint4(0, 0, 0, 0);
      *(uint4 *)(Qs + rr * L::LDK + cc * 8) = bf16x8_to_f16x8(v);
    }
  }
  load_kv(kt0, 0);
  cp_async_commit_group();

  const int g = lane >> 2, cq = lane & 3;
  const int rA = warp * 16 + g, rB = rA + 8; /* this lane's two rows in the tile */
  const int pA = rA < nrows ? pos[row0 + rA] : -1, pB = rB < nrows ? pos[row0 + rB] : -1;
  const float sl2 = scale * LOG2E;
  /* head_dim 256 (Gemma): Q's fragments are read from shared memory at each key tile instead of kept in registers
   * (the O accumulator alone takes 128 of them); the sums are the same */
  constexpr bool QREG = HD <= 128;
  uint32_t qf[QREG ? HD / 16 : 1][4];
  float o[HD / 8][4];
#pragma unroll
  for (int i = 0; i < HD / 8; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
  float mA = -INFINITY, mB = -INFINITY, lA = 0.f, lB = 0.f;

  /* an FP8 cache at head_dim <= 128: the next tile's values are loaded into registers during this tile's math, and
   * stored (converted) after it; at 256 (no registers to spare) loaded and stored after it */
  constexpr bool FP8_PIPE = KF != 0 && HD <= 128;
  uint4 kr[FP8_PIPE ? fp8_rows<HD, MMA_BN>::IT : 1], vr[FP8_PIPE ? fp8_rows<HD, MMA_BN>::IT : 1];
  int buf = 0;
  for (int kt = kt0; kt < kend; kt += MMA_BN, buf ^= 1) {
    if (KF == 0 && kt + MMA_BN < kend) {
      load_kv(kt + MMA_BN, buf ^ 1);
      cp_async_commit_group();
      cp_async_wait_group<1>();
    } else {
      cp_async_wait_group<0>();
    }
    __syncthreads();
    if constexpr (FP8_PIPE) {
      if (kt + MMA_BN < kend) fp8_load_rows<HD, MMA_BN>(kr, vr, (const uint8_t *)kcv, (const uint8_t *)vcv, tile_row(kt + MMA_BN), tid);
    }
    if (QREG && kt == kt0) { /* Q arrived with the first group: keep its fragments in registers */
#pragma unroll
      for (int kk = 0; kk < (QREG ? HD / 16 : 0); kk++) {
        int mi = lane >> 3, r = lane & 7;
        ldsm4(qf[kk], Qs + (warp * 16 + (mi & 1) * 8 + r) * L::LDK + kk * 16 + (mi >> 1) * 8);
      }
    }
    const __nv_bfloat16 *Ks = KBUF(buf), *Vs = VBUF(buf);
    /* S = Q K^T: 16 x 64 per warp, 8 n-tiles of 8 keys */
    float sc[MMA_BN / 8][4];
#pragma unroll
    for (int j = 0; j < MMA_BN / 8; j++) sc[j][0] = sc[j][1] = sc[j][2] = sc[j][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < HD / 16; kk++) {
      uint32_t *qk = qf[QREG ? kk : 0];
      if (!QREG) {
        int mi = lane >> 3, r = lane & 7;
        ldsm4(qk, Qs + (warp * 16 + (mi & 1) * 8 + r) * L::LDK + kk * 16 + (mi >> 1) * 8);
      }
#pragma unroll
      for (int jp = 0; jp < MMA_BN / 16; jp++) {
        uint32_t b[4];
        int mi = lane >> 3, r = lane & 7;
        ldsm4(b, Ks + (jp * 16 + (mi >> 1) * 8 + r) * L::LDK + kk * 16 + (mi & 1) * 8);
        mma_16816<KF>(sc[2 * jp], qk, b[0], b[1]);
        mma_16816<KF>(sc[2 * jp + 1], qk, b[2], b[3]);
      }
    }
    /* mask + online softmax; lane holds rows rA (c0,c1) and rB (c2,c3), keys kt + 8j + 2cq + {0,1} */
    float tA = -INFINITY, tB = -INFINITY;
#pragma unroll
    for (int j = 0; j < MMA_BN / 8; j++) {
#pragma unroll
      for (int e = 0; e < 2; e++) {
        int key = kt + 8 * j + 2 * cq + e;
        bool okA = key <= pA && (window <= 0 || key > pA - window);
        bool okB = key <= pB && (window <= 0 || key > pB - window);
        sc[j][e] = okA ? score_l2(sc[j][e], sl2, scale, CAP ? softcap : 0.f) : -INFINITY;
        sc[j][2 + e] = okB ? score_l2(sc[j][2 + e], sl2, scale, CAP ? softcap : 0.f) : -INFINITY;
        tA = fmaxf(tA, sc[j][e]);
        tB = fmaxf(tB, sc[j][2 + e]);
      }
    }
    tA = quad_max(tA), tB = quad_max(tB);
    float nA = fmaxf(mA, tA), nB = fmaxf(mB, tB);
    float aA = nA == -INFINITY ? 1.f : exp2f(mA - nA), aB = nB == -INFINITY ? 1.f : exp2f(mB - nB);
    float bA = nA == -INFINITY ? 0.f : nA, bB = nB == -INFINITY ? 0.f : nB; /* exp2(-inf - 0) = 0 */
    mA = nA, mB = nB;
    lA *= aA, lB *= aB;
#pragma unroll
    for (int i = 0; i < HD / 8; i++) o[i][0] *= aA, o[i][1] *= aA, o[i][2] *= aB, o[i][3] *= aB;
    uint32_t pf[MMA_BN / 16][4];
#pragma unroll
    for (int j = 0; j < MMA_BN / 8; j++) {
      float p0 = exp2f(sc[j][0] - bA), p1 = exp2f(sc[j][1] - bA), p2 = exp2f(sc[j][2] - bB), p3 = exp2f(sc[j][3] - bB);
      lA += p0 + p1, lB += p2 + p3;
      pf[j >> 1][(j & 1) * 2 + 0] = pack_p<KF>(p0, p1);
      pf[j >> 1][(j & 1) * 2 + 1] = pack_p<KF>(p2, p3);
    }
    /* O += P V: k = 64 keys in 4 steps, n = HD dims in pairs of n-tiles */
#pragma unroll
    for (int kk = 0; kk < MMA_BN / 16; kk++) {
#pragma unroll
      for (int dp = 0; dp < HD / 16; dp++) {
        uint32_t b[4];
        int mi = lane >> 3, r = lane & 7;
        ldsm4_t(b, Vs + (kk * 16 + (mi & 1) * 8 + r) * L::LDK + dp * 16 + (mi >> 1) * 8);
        mma_16816<KF>(o[2 * dp], pf[kk], b[0], b[1]);
        mma_16816<KF>(o[2 * dp + 1], pf[kk], b[2], b[3]);
      }
    }
    __syncthreads(); /* this buffer is refilled two iterations on */
    if constexpr (FP8_PIPE) { /* FP8: the next tile, converted by the threads */
      if (kt + MMA_BN < kend) fp8_store_rows<HD, KF, MMA_BN, L::LDK>(KBUF(buf ^ 1), VBUF(buf ^ 1), kr, vr, tid);
    } else if (KF != 0 && kt + MMA_BN < kend) {
      load_kv(kt + MMA_BN, buf ^ 1);
    }
  }
  lA = quad_sum(lA), lB = quad_sum(lB);
  float iA = lA > 0.f ? 1.f / lA : 0.f, iB = lB > 0.f ? 1.f / lB : 0.f;
  iA *= vs, iB *= vs; /* an FP8 cache's V scale (1 otherwise: the same bits) */
#pragma unroll
  for (int i = 0; i < HD / 8; i++) {
    int d = i * 8 + 2 * cq;
    if (rA < nrows) *(uint32_t *)(out + ((size_t)(row0 + rA) * nh + h) * HD + d) = pack_bf16(o[i][0] * iA, o[i][1] * iA);
    if (rB < nrows) *(uint32_t *)(out + ((size_t)(row0 + rB) * nh + h) * HD + d) = pack_bf16(o[i][2] * iB, o[i][3] * iB);
  }
#undef KBUF
#undef VBUF
}

/* ---- split-K decode kernel on tensor cores (bf16, head_dim 64 or 128) -------------------------------- */
/* Same blocks, keys and partials as attn_decode_kernel, but the GQA group's G <= 16 query heads are the 16 rows
 * of an m16n8k16 tile: S = Q K^T (warp w: keys 16w..16w+15) and O = P V (warp w: a quarter of head_dim) run on
 * tensor cores from cp.async-staged shared memory, so a block's time is its K/V copy rather than SIMT FMAs over a
 * half-idle block. Rows g >= G are zero queries: computed (scores 0, harmless) and never written. */
template <int HD>
struct dec_mma_smem {
  static const int LDK = HD + 8;                 /* bf16 pitch of Q/K/V rows: ldmatrix rows in distinct banks */
  static const int LDP = IG_ATTN_SPLIT_KEYS + 8; /* bf16 pitch of P */
  static const size_t q_off = 0;
  static const size_t k_off = q_off + (size_t)16 * LDK * 2;
  static const size_t v_off = k_off + (size_t)IG_ATTN_SPLIT_KEYS * LDK * 2;
  static const size_t p_off = v_off + (size_t)IG_ATTN_SPLIT_KEYS * LDK * 2;
  static const size_t r_off = p_off + (size_t)16 * LDP * 2; /* f32 per-warp row max [4][16], then row sum [4][16] */
  static const size_t bytes = r_off + 2 * 4 * 16 * 4;
};

/* barrier id over n threads (id 0 with the whole 128-thread block is __syncthreads) */
__device__ __forceinline__ void bar_sync(int id, int n) { asm volatile("bar.sync %0, %1;" ::"r"(id), "r"(n) : "memory"); }

/* Row index in the layer's cache ((block * nkv + kvh) * bs + key % bs, times HD for the element offset) of keys
 * k0 + j, j < nk, into ri[j], by threads 0..nk-1 of the block (one division each, once per key instead of once per
 * 16-byte copy). The cache has fewer than 2^31 rows per layer (checked by the host). */
__device__ __forceinline__ void dec_row_index(int *ri, const int *bt, int k0, int nk, int kvh, int nkv, int bs) {
  for (int j = threadIdx.x; j < nk; j += blockDim.x) {
    int key = k0 + j;
    ri[j] = (bt[key / bs] * nkv + kvh) * bs + key % bs;
  }
}
/* Stage a split's K (or V) rows (rows j >= nk zero-filled, nothing read: a masked key then gives p = 0 times V = 0,
 * never 0 times stale NaN) from their row indices ri[j]; thread: chunk tid % CH of rows tid / CH + RS * it. Not
 * committed. */
template <int HD>
__device__ __forceinline__ void dec_mma_stage_rows(__nv_bfloat16 *Ds, const __nv_bfloat16 *cache, const int *ri, int nk,
                                                   int tid) {
  typedef dec_mma_smem<HD> L;
  const int CH = HD / 8, RS = 128 / CH;
#pragma unroll
  for (int it = 0; it < IG_ATTN_SPLIT_KEYS / RS; it++) {
    int j = tid / CH + it * RS, cc = tid % CH;
    bool ok = j < nk;
    cp_async_16z(Ds + j * L::LDK + cc * 8, cache + (ok ? (size_t)ri[j] * HD + cc * 8 : 0), ok);
  }
}
/* A split's K and V rows: cp.async copies (KF 0, not committed), or, from an FP8 cache, loaded and converted to f16 by
 * the threads (done on return). */
template <int HD, int KF>
__device__ __forceinline__ void dec_mma_stage_kv(__nv_bfloat16 *Ks, __nv_bfloat16 *Vs, const void *kc, const void *vc,
                                                 const int *ri, int nk, int tid) {
  if constexpr (KF == 0) {
    dec_mma_stage_rows<HD>(Ks, (const __nv_bfloat16 *)kc, ri, nk, tid);
    dec_mma_stage_rows<HD>(Vs, (const __nv_bfloat16 *)vc, ri, nk, tid);
  } else {
    stage_fp8_rows<HD, KF, IG_ATTN_SPLIT_KEYS, dec_mma_smem<HD>::LDK>(Ks, Vs, (const uint8_t *)kc, (const uint8_t *)vc,
                                                                       fp8_ri{ri, nk}, tid);
  }
}
/* Stage the GQA group's queries (rows g >= G zero): cp.async (not committed), or as f16 over an FP8 cache. */
template <int HD, int KF>
__device__ __forceinline__ void dec_mma_stage_q(__nv_bfloat16 *Qs, const __nv_bfloat16 *qg, const __nv_bfloat16 *q, int G,
                                                int tid) {
  typedef dec_mma_smem<HD> L;
  const int CH = HD / 8, RS = 128 / CH;
#pragma unroll
  for (int it = 0; it < 16 / RS; it++) {
    int g = tid / CH + it * RS, cc = tid % CH;
    bool ok = g < G;
    if constexpr (KF == 0) {
      cp_async_16z(Qs + g * L::LDK + cc * 8, ok ? qg + (size_t)g * HD + cc * 8 : q, ok);
    } else {
      uint4 v = ok ? *(const uint4 *)(qg + (size_t)g * HD + cc * 8) : make_uint4(0, 0, 0, 0);
      *(uint4 *)(Qs + g * L::LDK + cc * 8) = bf16x8_to_f16x8(v);
    }
  }
}

/* One split on tensor cores from staged Q/K/V (nk valid keys), in two phases shared by the split kernel and the fused
 * one, so both give the same bits. Lane (g = lane / 4, cq = lane % 4) of warp w holds heads g and g + 8.
 * Scores: S = Q K^T, the per-head maxima mA/mB over the split, P = 2^(S - m) as bf16 into Ps, the per-warp sums into
 * rsum. Ends after a barrier, past which K is no longer read. */
template <int HD, int KF>
__device__ __forceinline__ void dec_mma_scores(const __nv_bfloat16 *Qs, const __nv_bfloat16 *Ks, __nv_bfloat16 *Ps,
                                               float *rmax, float *rsum, int nk, float scale, float softcap, float &mA,
                                               float &mB, int tid, int bar) {
  typedef dec_mma_smem<HD> L;
  const int warp = tid >> 5, lane = tid & 31; /* tid: 0..127 within the 4 warps that share bar */
  /* S = Q K^T: 16 heads x this warp's 16 keys, two n-tiles of 8 keys; lane holds heads g (c0,c1) and g + 8
   * (c2,c3) at keys 16w + 8n + 2cq + {0,1} */
  const int g = lane >> 2, cq = lane & 3, mi = lane >> 3, lr = lane & 7;
  float sc[2][4];
#pragma unroll
  for (int n = 0; n < 2; n++) sc[n][0] = sc[n][1] = sc[n][2] = sc[n][3] = 0.f;
#pragma unroll
  for (int kk = 0; kk < HD / 16; kk++) {
    uint32_t a[4], b[4];
    ldsm4(a, Qs + ((mi & 1) * 8 + lr) * L::LDK + kk * 16 + (mi >> 1) * 8);
    ldsm4(b, Ks + (warp * 16 + (mi >> 1) * 8 + lr) * L::LDK + kk * 16 + (mi & 1) * 8);
    mma_16816<KF>(sc[0], a, b[0], b[1]);
    mma_16816<KF>(sc[1], a, b[2], b[3]);
  }
  /* log2-domain scores, keys past the split's end masked; per-head max over the 64 keys across the 4 warps */
  const float sl2 = scale * LOG2E;
  float tA = -INFINITY, tB = -INFINITY;
#pragma unroll
  for (int n = 0; n < 2; n++) {
#pragma unroll
    for (int e = 0; e < 2; e++) {
      bool ok = warp * 16 + n * 8 + 2 * cq + e < nk;
      sc[n][e] = ok ? score_l2(sc[n][e], sl2, scale, softcap) : -INFINITY;
      sc[n][2 + e] = ok ? score_l2(sc[n][2 + e], sl2, scale, softcap) : -INFINITY;
      tA = fmaxf(tA, sc[n][e]);
      tB = fmaxf(tB, sc[n][2 + e]);
    }
  }
  tA = quad_max(tA), tB = quad_max(tB);
  if (cq == 0) rmax[warp * 16 + g] = tA, rmax[warp * 16 + g + 8] = tB;
  bar_sync(bar, 128);
  /* key 0 of the split is valid, so the max is finite and exp2(-inf - m) = 0 for masked keys */
  mA = fmaxf(fmaxf(rmax[g], rmax[16 + g]), fmaxf(rmax[32 + g], rmax[48 + g]));
  mB = fmaxf(fmaxf(rmax[8 + g], rmax[24 + g]), fmaxf(rmax[40 + g], rmax[56 + g]));
  float lA = 0.f, lB = 0.f;
#pragma unroll
  for (int n = 0; n < 2; n++) {
    float p0 = exp2f(sc[n][0] - mA), p1 = exp2f(sc[n][1] - mA), p2 = exp2f(sc[n][2] - mB), p3 = exp2f(sc[n][3] - mB);
    lA += p0 + p1, lB += p2 + p3;
    int col = warp * 16 + n * 8 + 2 * cq;
    *(uint32_t *)(Ps + g * L::LDP + col) = pack_p<KF>(p0, p1);
    *(uint32_t *)(Ps + (g + 8) * L::LDP + col) = pack_p<KF>(p2, p3);
  }
  lA = quad_sum(lA), lB = quad_sum(lB);
  if (cq == 0) rsum[warp * 16 + g] = lA, rsum[warp * 16 + g + 8] = lB;
  bar_sync(bar, 128);
}
/* O = P V: the unnormalised o of heads g and g + 8 (o[n][0..1] and o[n][2..3] at columns w * HD/4 + 8n + 2cq) over
 * the 64 keys in 4 k-steps, and the heads' sums sA/sB over the split. */
template <int HD, int KF>
__device__ __forceinline__ void dec_mma_pv(const __nv_bfloat16 *Ps, const __nv_bfloat16 *Vs, const float *rsum,
                                           float (&o)[HD / 32][4], float &sA, float &sB, int tid) {
  typedef dec_mma_smem<HD> L;
  const int warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2, mi = lane >> 3, lr = lane & 7;
  const int NT = HD / 32; /* n-tiles of 8 columns per warp */
  const int d0 = warp * (HD / 4);
#pragma unroll
  for (int n = 0; n < NT; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
#pragma unroll
  for (int kk = 0; kk < IG_ATTN_SPLIT_KEYS / 16; kk++) {
    uint32_t a[4];
    ldsm4(a, Ps + ((mi & 1) * 8 + lr) * L::LDP + kk * 16 + (mi >> 1) * 8);
#pragma unroll
    for (int dp = 0; dp < NT / 2; dp++) {
      uint32_t b[4];
      ldsm4_t(b, Vs + (kk * 16 + (mi & 1) * 8 + lr) * L::LDK + d0 + dp * 16 + (mi >> 1) * 8);
      mma_16816<KF>(o[2 * dp], a, b[0], b[1]);
      mma_16816<KF>(o[2 * dp + 1], a, b[2], b[3]);
    }
  }
  sA = rsum[g] + rsum[16 + g] + rsum[32 + g] + rsum[48 + g];
  sB = rsum[8 + g] + rsum[24 + g] + rsum[40 + g] + rsum[56 + g];
}
/* A split's partials of heads g and g + 8 where they are in the group: o (unnormalised), then max and sum once per
 * head, at pA / pB (HD + 2 floats each). */
template <int HD>
__device__ __forceinline__ void dec_mma_put(float *pA, float *pB, int G, const float (&o)[HD / 32][4], float mA, float mB,
                                            float sA, float sB, int tid) {
  const int warp = tid >> 5, lane = tid & 31, g = lane >> 2, cq = lane & 3, d0 = warp * (HD / 4);
  if (g < G) {
#pragma unroll
    for (int n = 0; n < HD / 32; n++) *(float2 *)(pA + d0 + n * 8 + 2 * cq) = make_float2(o[n][0], o[n][1]);
    if (warp == 0 && cq == 0) pA[HD] = mA, pA[HD + 1] = sA;
  }
  if (g + 8 < G) {
#pragma unroll
    for (int n = 0; n < HD / 32; n++) *(float2 *)(pB + d0 + n * 8 + 2 * cq) = make_float2(o[n][2], o[n][3]);
    if (warp == 0 && cq == 0) pB[HD] = mB, pB[HD + 1] = sB;
  }
}

template <int HD, int KF>
__global__ void __launch_bounds__(128)
    attn_decode_mma_kernel(const __nv_bfloat16 *__restrict__ q, float *__restrict__ part,
                           const void *__restrict__ kc, const void *__restrict__ vc,
                           const int *dec_rows, const int *row_seq, const int *pos, const int *block_table,
                           int max_blocks, int nh, int nkv, int bs, float scale, int window, int max_splits,
                           int early, float softcap) {
  static_assert(IG_ATTN_SPLIT_KEYS == 64, "4 warps of 16 keys cover a split");
  static_assert(HD == 64 || HD == 128 || HD == 256, "head_dim 64, 128 or 256");
  typedef dec_mma_smem<HD> L;
  extern __shared__ __align__(128) unsigned char smraw[];
  __nv_bfloat16 *Qs = (__nv_bfloat16 *)(smraw + L::q_off);
  __nv_bfloat16 *Ks = (__nv_bfloat16 *)(smraw + L::k_off);
  __nv_bfloat16 *Vs = (__nv_bfloat16 *)(smraw + L::v_off);
  __nv_bfloat16 *Ps = (__nv_bfloat16 *)(smraw + L::p_off);
  float *rmax = (float *)(smraw + L::r_off), *rsum = rmax + 4 * 16;
  const int G = nh / nkv;
  const int i = blockIdx.x, kvh = blockIdx.y, z = blockIdx.z;
  const int r = dec_rows[i];
  const int s = row_seq[r], p = pos[r];
  int lo, hi;
  key_range(p, window, &lo, &hi);
  const int nsplit = (hi - lo + IG_ATTN_SPLIT_KEYS - 1) / IG_ATTN_SPLIT_KEYS;
  if (z >= nsplit) return; /* the whole block: no barrier is skipped by part of it */
  const int k0 = lo + z * IG_ATTN_SPLIT_KEYS, nk = min(hi, k0 + IG_ATTN_SPLIT_KEYS) - k0; /* 1 <= nk <= 64 */
  const int tid = threadIdx.x;
  __shared__ int ri[IG_ATTN_SPLIT_KEYS];
  /* the batch tables are the host's, and a split that ends before the row's own key is not written by the previous
   * kernel (see the fused kernel): both before the grid dependency when early != 0 */
  dec_row_index(ri, block_table + (size_t)s * max_blocks, k0, nk, kvh, nkv, bs);
  __syncthreads();
  const bool pre = early && z + 1 < nsplit;
  if (pre) dec_mma_stage_kv<HD, KF>(Ks, Vs, kc, vc, ri, nk, tid);
  PDL_ENTRY();
  dec_mma_stage_q<HD, KF>(Qs, q + (size_t)r * nh * HD + (size_t)kvh * G * HD, q, G, tid);
  if (!pre) dec_mma_stage_kv<HD, KF>(Ks, Vs, kc, vc, ri, nk, tid);
  cp_async_commit_group();
  cp_async_wait_group<0>();
  __syncthreads();
  float o[HD / 32][4], mA, mB, sA, sB;
  dec_mma_scores<HD, KF>(Qs, Ks, Ps, rmax, rsum, nk, scale, softcap, mA, mB, tid, 0);
  dec_mma_pv<HD, KF>(Ps, Vs, rsum, o, sA, sB, tid);
  const int g = (tid & 31) >> 2;
  dec_mma_put<HD>(part + (((size_t)i * nh + kvh * G + g) * max_splits + z) * (HD + 2),
                  part + (((size_t)i * nh + kvh * G + g + 8) * max_splits + z) * (HD + 2), G, o, mA, mB, sA, sB, tid);
}

/* The fused form for large decode batches: block (row i, kv head) walks the row's <= CB_Z splits itself, keeps the
 * partials in shared memory and ends with the combine. Every split and the combine are the same code as
 * attn_decode_mma_kernel + attn_combine_kernel, so the output is the same bits: which form runs may depend on the
 * batch. It saves the combine launch, the partials' round trip through memory and the blocks of splits past a row's
 * end. Two groups of 4 warps per block, each on every other split with its own K/V buffer (the other group's copy is
 * in flight while one computes), two blocks per SM: the kernel is bound by instruction latency, and 16 warps per SM
 * hide more of it than 8 (one group per block with two K/V buffers measured 117 against 110 us per layer at B = 256). */
#define DEC_FUSED_KEYS (CB_Z * IG_ATTN_SPLIT_KEYS)
template <int HD>
struct dec_fused_smem {
  typedef dec_mma_smem<HD> L;
  static const size_t grp_bytes = L::bytes - L::k_off;       /* K, V, P, rmax/rsum of one group */
  static const size_t g0_off = L::k_off, g1_off = g0_off + grp_bytes;
  static const size_t ri_off = g1_off + grp_bytes;           /* int [DEC_FUSED_KEYS]: row indices */
  static const size_t part_off = ri_off + DEC_FUSED_KEYS * 4; /* f32 [G][CB_Z][HD + 2] */
  static size_t bytes(int G) { return part_off + (size_t)G * CB_Z * (HD + 2) * sizeof(float); }
};
template <int HD, int KF>
__global__ void __launch_bounds__(256, 2) /* two blocks per SM: without the 2, ptxas kept 64 registers and spilled */
    attn_decode_fused_kernel(const __nv_bfloat16 *__restrict__ q, __nv_bfloat16 *__restrict__ out,
                             const void *__restrict__ kc, const void *__restrict__ vc,
                             const int *dec_rows, const int *row_seq, const int *pos, const int *block_table,
                             int max_blocks, int nh, int nkv, int bs, float scale, int window, int early,
                             float softcap, float vs) {
  static_assert(IG_ATTN_SPLIT_KEYS == 64, "4 warps of 16 keys cover a split");
  typedef dec_mma_smem<HD> L;
  typedef dec_fused_smem<HD> F;
  extern __shared__ __align__(128) unsigned char smraw[];
  const int grp = threadIdx.x >> 7, gt = threadIdx.x & 127;
  unsigned char *gb = smraw + (grp ? F::g1_off : F::g0_off) - L::k_off; /* this group's copy of the split layout */
  __nv_bfloat16 *Qs = (__nv_bfloat16 *)(smraw + L::q_off);
  __nv_bfloat16 *Ks = (__nv_bfloat16 *)(gb + L::k_off), *Vs = (__nv_bfloat16 *)(gb + L::v_off);
  __nv_bfloat16 *Ps = (__nv_bfloat16 *)(gb + L::p_off);
  float *rmax = (float *)(gb + L::r_off), *rsum = rmax + 4 * 16;
  int *ri = (int *)(smraw + F::ri_off);
  float *ps = (float *)(smraw + F::part_off);
  const int G = nh / nkv;
  const int i = blockIdx.x, kvh = blockIdx.y;
  const int r = dec_rows[i];
  const int s = row_seq[r], p = pos[r];
  int lo, hi;
  key_range(p, window, &lo, &hi);
  const int nsplit = (hi - lo + IG_ATTN_SPLIT_KEYS - 1) / IG_ATTN_SPLIT_KEYS; /* 1..CB_Z (the host checks) */
  /* Before the grid dependency (early != 0): the row indices (the block table is the host's), and each group's first
   * split when it ends before the row's own key. The previous kernel (q|k|v with rope and KV write, or rope + KV
   * write) writes only the key at each row's position, and every kernel before it has completed. */
  dec_row_index(ri, block_table + (size_t)s * max_blocks, lo, hi - lo, kvh, nkv, bs);
  __syncthreads();
  const bool pre = early && grp + 1 < nsplit;
  const int g = (gt & 31) >> 2;
  /* split z (nk keys) from the group's staged K/V into its partials; ends past a barrier after which K, V, Ps and
   * rsum may be rewritten by the group's next split */
  auto split = [&](int z, int nk) {
    float o[HD / 32][4], mA, mB, sA, sB;
    dec_mma_scores<HD, KF>(Qs, Ks, Ps, rmax, rsum, nk, scale, softcap, mA, mB, gt, 1 + grp);
    dec_mma_pv<HD, KF>(Ps, Vs, rsum, o, sA, sB, gt);
    dec_mma_put<HD>(ps + ((size_t)g * CB_Z + z) * (HD + 2), ps + ((size_t)(g + 8) * CB_Z + z) * (HD + 2), G, o, mA, mB,
                    sA, sB, gt);
    bar_sync(1 + grp, 128);
  };
  if constexpr (KF != 0) {
    /* An FP8 cache: each group's next split is loaded into registers while it computes this one (the threads convert
     * the values, so cp.async cannot stage them); the same splits, the same arithmetic. */
    typedef fp8_rows<HD, IG_ATTN_SPLIT_KEYS> R;
    const uint8_t *kb = (const uint8_t *)kc, *vb = (const uint8_t *)vc;
    auto rows_of = [&](int z) { /* split z's keys */
      return fp8_ri{ri + z * IG_ATTN_SPLIT_KEYS, min(hi - lo - z * IG_ATTN_SPLIT_KEYS, IG_ATTN_SPLIT_KEYS)};
    };
    uint4 kr[R::IT], vr[R::IT];
    if (pre) fp8_load_rows<HD, IG_ATTN_SPLIT_KEYS>(kr, vr, kb, vb, rows_of(grp), gt);
    PDL_ENTRY();
    if (grp == 0) dec_mma_stage_q<HD, KF>(Qs, q + (size_t)r * nh * HD + (size_t)kvh * G * HD, q, G, gt);
    if (!pre && grp < nsplit) fp8_load_rows<HD, IG_ATTN_SPLIT_KEYS>(kr, vr, kb, vb, rows_of(grp), gt);
    __syncthreads(); /* the queries */
    for (int z = grp; z < nsplit; z += 2) {
      fp8_store_rows<HD, KF, IG_ATTN_SPLIT_KEYS, L::LDK>(Ks, Vs, kr, vr, gt);
      bar_sync(1 + grp, 128);
      if (z + 2 < nsplit) fp8_load_rows<HD, IG_ATTN_SPLIT_KEYS>(kr, vr, kb, vb, rows_of(z + 2), gt);
      split(z, rows_of(z).nk);
    }
  } else {
    if (pre) dec_mma_stage_kv<HD, KF>(Ks, Vs, kc, vc, ri + grp * IG_ATTN_SPLIT_KEYS, IG_ATTN_SPLIT_KEYS, gt);
    PDL_ENTRY();
    if (grp == 0) dec_mma_stage_q<HD, KF>(Qs, q + (size_t)r * nh * HD + (size_t)kvh * G * HD, q, G, gt);
    cp_async_commit_group();
    cp_async_wait_group<0>();
    __syncthreads();
    for (int z = grp; z < nsplit; z += 2) {
      const int j0 = z * IG_ATTN_SPLIT_KEYS, nk = min(hi - lo - j0, IG_ATTN_SPLIT_KEYS);
      if (!(pre && z == grp)) dec_mma_stage_kv<HD, KF>(Ks, Vs, kc, vc, ri + j0, nk, gt);
      cp_async_commit_group();
      cp_async_wait_group<0>();
      bar_sync(1 + grp, 128);
      split(z, nk);
    }
  }
  __syncthreads();
  for (int t = threadIdx.x; t < G * HD; t += 256) { /* the combine kernel's unrolled path, from shared memory */
    const int hg = t / HD, d = t % HD;
    const float *pp = ps + (size_t)hg * CB_Z * (HD + 2);
    out[(size_t)r * nh * HD + (size_t)(kvh * G + hg) * HD + d] = __float2bfloat16(combine_splits(pp, HD, d, nsplit) * vs);
  }
}

/* ---- launcher ---------------------------------------------------------------------------------------- */
template <int HD, int KF>
static int launch_prefill_mma(ig_backend *be, ig_tensor *out, const ig_tensor *q, const void *kc, const void *vc,
                              const ig_attn_params *p) {
  cu_impl *c = CU(be);
  size_t smem = mma_smem<HD>::bytes;
  auto k = p->softcap > 0.f ? attn_prefill_mma_kernel<HD, true, KF> : attn_prefill_mma_kernel<HD, false, KF>;
  CUDA_CHECK(be, cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
  dim3 grid(c->b.n_tiles, p->n_heads);
  CU_LAUNCH(be, k, grid, 128, smem, (const __nv_bfloat16 *)q->data, (__nv_bfloat16 *)out->data, kc, vc, c->b.tiles,
            c->b.pos, c->b.block_table, c->b.max_blocks, p->n_heads, p->n_kv_heads, c->kv.block_size, p->scale,
            p->sliding_window, p->softcap, c->attn_vs);
  LAUNCH_CHECK(be);
  return 0;
}
template <int HD>
static int launch_prefill(ig_backend *be, ig_tensor *out, const ig_tensor *q, const void *kc, const void *vc,
                          const ig_attn_params *p) {
  cu_impl *c = CU(be);
  /* v2: mma.sync (the only one for head_dim 256 and over an FP8 cache) */
  if (c->kv_fp8 == 1) return launch_prefill_mma<HD, 1>(be, out, q, kc, vc, p);
  if (c->kv_fp8 == 2) return launch_prefill_mma<HD, 2>(be, out, q, kc, vc, p);
  if (HD == 256 || c->attn_variant == 0) return launch_prefill_mma<HD, 0>(be, out, q, kc, vc, p);
  if constexpr (HD != 256) {
    size_t smem = pf_smem<HD>::bytes;
    static_assert(pf_smem<HD>::bytes <= 200 * 1024, "prefill tile too large");
    CUDA_CHECK(be, cudaFuncSetAttribute(attn_prefill_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    dim3 grid(c->b.n_tiles, p->n_heads);
    CU_LAUNCH(be, (attn_prefill_kernel<HD>), grid, 128, smem, (const __nv_bfloat16 *)q->data, (__nv_bfloat16 *)out->data,
                                                        (const __nv_bfloat16 *)kc, (const __nv_bfloat16 *)vc, c->b.tiles,
                                                        c->b.pos, c->b.block_table, c->b.max_blocks, p->n_heads,
                                                        p->n_kv_heads, c->kv.block_size, p->scale, p->sliding_window,
                                                        p->softcap);
    LAUNCH_CHECK(be);
  }
  return 0;
}

template <typename T, int GMAX>
static int launch_decode_g(ig_backend *be, const ig_tensor *q, const void *kc, const void *vc, const ig_attn_params *p,
                           float *part, size_t smem, int r0, int nr) {
  cu_impl *c = CU(be);
  /* smem = q, scores and the reduction buffer; staged: + K and V rows, the reduction inside K's when it fits */
  int G = p->n_heads / p->n_kv_heads, hd = p->head_dim, KL = DEC_THREADS / (hd / 8);
  size_t red = (size_t)KL * G * hd * sizeof(float), ks = (size_t)IG_ATTN_SPLIT_KEYS * (hd + 16 / sizeof(T)) * sizeof(T);
  size_t staged = smem - (red <= ks ? red : 0) + 2 * ks;
  dim3 grid(nr, p->n_kv_heads, c->b.max_splits);
  const int *dec = c->b.dec_rows + r0;
  if (c->decode_staged && staged <= 160 * 1024) {
    CUDA_CHECK(be, cudaFuncSetAttribute(attn_decode_kernel<T, GMAX, true>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)staged));
    CU_LAUNCH(be, (attn_decode_kernel<T, GMAX, true>), grid, DEC_THREADS, staged, 
        (const T *)q->data, part, (const T *)kc, (const T *)vc, dec, c->b.row_seq, c->b.pos, c->b.block_table,
        c->b.max_blocks, p->n_heads, p->n_kv_heads, p->head_dim, c->kv.block_size, p->scale, p->sliding_window, c->b.max_splits,
        p->softcap);
    LAUNCH_CHECK(be);
    return 0;
  }
  if (smem > 48 * 1024)
    CUDA_CHECK(be, cudaFuncSetAttribute(attn_decode_kernel<T, GMAX, false>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
  CU_LAUNCH(be, (attn_decode_kernel<T, GMAX, false>), grid, DEC_THREADS, smem, 
      (const T *)q->data, part, (const T *)kc, (const T *)vc, dec, c->b.row_seq, c->b.pos, c->b.block_table,
      c->b.max_blocks, p->n_heads, p->n_kv_heads, p->head_dim, c->kv.block_size, p->scale, p->sliding_window, c->b.max_splits,
      p->softcap);
  LAUNCH_CHECK(be);
  return 0;
}

template <int HD, int KF>
static int launch_decode_mma_k(ig_backend *be, const ig_tensor *q, const void *kc, const void *vc,
                               const ig_attn_params *p, float *part, int r0, int nr) {
  cu_impl *c = CU(be);
  size_t smem = dec_mma_smem<HD>::bytes;
  if (smem > 48 * 1024)
    CUDA_CHECK(be, cudaFuncSetAttribute(attn_decode_mma_kernel<HD, KF>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        (int)smem));
  dim3 grid(nr, p->n_kv_heads, c->b.max_splits);
  CU_LAUNCH(be, (attn_decode_mma_kernel<HD, KF>), grid, 128, smem, (const __nv_bfloat16 *)q->data, part, kc, vc,
            c->b.dec_rows + r0, c->b.row_seq, c->b.pos,
            c->b.block_table, c->b.max_blocks, p->n_heads, p->n_kv_heads, c->kv.block_size, p->scale,
            p->sliding_window, c->b.max_splits, c->decode_early, p->softcap);
  LAUNCH_CHECK(be);
  return 0;
}
template <int HD>
static int launch_decode_mma(ig_backend *be, const ig_tensor *q, const void *kc, const void *vc,
                             const ig_attn_params *p, float *part, int r0, int nr) {
  int f = CU(be)->kv_fp8;
  return f == 1 ? launch_decode_mma_k<HD, 1>(be, q, kc, vc, p, part, r0, nr)
       : f == 2 ? launch_decode_mma_k<HD, 2>(be, q, kc, vc, p, part, r0, nr)
                : launch_decode_mma_k<HD, 0>(be, q, kc, vc, p, part, r0, nr);
}

template <int HD, int KF>
static int launch_decode_fused_k(ig_backend *be, ig_tensor *out, const ig_tensor *q, const void *kc, const void *vc,
                                 const ig_attn_params *p) {
  cu_impl *c = CU(be);
  dim3 grid(c->b.n_dec, p->n_kv_heads);
  size_t smem = dec_fused_smem<HD>::bytes(p->n_heads / p->n_kv_heads);
  CUDA_CHECK(be, cudaFuncSetAttribute(attn_decode_fused_kernel<HD, KF>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
  CU_LAUNCH(be, (attn_decode_fused_kernel<HD, KF>), grid, 256, smem, (const __nv_bfloat16 *)q->data,
            (__nv_bfloat16 *)out->data, kc, vc, c->b.dec_rows, c->b.row_seq, c->b.pos, c->b.block_table,
            c->b.max_blocks, p->n_heads, p->n_kv_heads, c->kv.block_size, p->scale, p->sliding_window,
            c->decode_early, p->softcap, c->attn_vs);
  LAUNCH_CHECK(be);
  return 0;
}
template <int HD>
static int launch_decode_fused(ig_backend *be, ig_tensor *out, const ig_tensor *q, const void *kc, const void *vc,
                               const ig_attn_params *p) {
  int f = CU(be)->kv_fp8;
  return f == 1 ? launch_decode_fused_k<HD, 1>(be, out, q, kc, vc, p)
       : f == 2 ? launch_decode_fused_k<HD, 2>(be, out, q, kc, vc, p)
                : launch_decode_fused_k<HD, 0>(be, out, q, kc, vc, p);
}

template <typename T>
static int launch_decode(ig_backend *be, ig_tensor *out, const ig_tensor *q, const void *kc, const void *vc,
                         const ig_attn_params *p) {
  cu_impl *c = CU(be);
  int G = p->n_heads / p->n_kv_heads, hd = p->head_dim, S = c->b.max_splits;
  if (hd % 8 || hd / 8 > DEC_THREADS) FAIL(be, "cuda attention: head_dim %d unsupported", hd);
  /* tensor cores for bf16 at head_dim 64/128/256 unless IGNIS_CUDA_DECODE=simt or IGNIS_CUDA_DECODE_STAGED=0 (which
   * keep the SIMT kernels reachable and tested); G <= 16 is checked by cu_attention */
  bool mma = sizeof(T) == 2 && (hd == 64 || hd == 128 || hd == 256) && c->decode_staged && !c->decode_simt;
  if (c->kv_fp8) { /* only the tensor-core kernels read an FP8 cache (kv_init allowed it for these shapes only) */
    if (sizeof(T) != 2 || (hd != 64 && hd != 128 && hd != 256)) FAIL(be, "cuda attention: FP8 KV cache at head_dim %d", hd);
    mma = true;
  }
  /* enough (row, kv head) blocks to fill the GPU and rows of at most CB_Z splits: the fused form (same bits; not
   * for head_dim 256, where the split kernel and the combine run) */
  if (mma && hd != 256 && S <= CB_Z && c->decode_fused > 0 && (int64_t)c->b.n_dec * p->n_kv_heads >= c->decode_fused)
    return hd == 128 ? launch_decode_fused<128>(be, out, q, kc, vc, p) : launch_decode_fused<64>(be, out, q, kc, vc, p);
  /* The partials of every (row, head, split) go through scratch. Their size grows with the rows times the splits of
   * the table width (what a decode graph is captured for), e.g. 256 rows at 32K-token contexts would take 2.2 GB:
   * past IGNIS_CUDA_ATTN_SCRATCH_MB (default 256) the rows go in groups, each its split and combine launches, so the
   * scratch stays bounded and no step grows it past that mid-run. Each row's arithmetic is the same either way. */
  size_t per_row = (size_t)p->n_heads * S * (hd + 2) * sizeof(float);
  size_t fit = c->attn_scratch_cap / per_row; /* rows per launch */
  int group = fit < 1 ? 1 : fit < (size_t)c->b.n_dec ? (int)fit : c->b.n_dec;
  if (cu_scratch(be, &c->scratch, &c->scratch_size, per_row * (size_t)group)) return -1;
  int KL = DEC_THREADS / (hd / 8);
  size_t smem = (size_t)G * (hd + IG_ATTN_SPLIT_KEYS + (size_t)KL * hd) * sizeof(float);
  float *part = (float *)c->scratch;
  for (int r0 = 0; r0 < c->b.n_dec; r0 += group) {
    const int nr = c->b.n_dec - r0 < group ? c->b.n_dec - r0 : group;
    int rc = mma && hd == 256 ? launch_decode_mma<256>(be, q, kc, vc, p, part, r0, nr)
           : mma && hd == 128 ? launch_decode_mma<128>(be, q, kc, vc, p, part, r0, nr)
           : mma                ? launch_decode_mma<64>(be, q, kc, vc, p, part, r0, nr)
           : G <= 1 ? launch_decode_g<T, 1>(be, q, kc, vc, p, part, smem, r0, nr)
           : G <= 4 ? launch_decode_g<T, 4>(be, q, kc, vc, p, part, smem, r0, nr)
           : G <= 8 ? launch_decode_g<T, 8>(be, q, kc, vc, p, part, smem, r0, nr)
                    : launch_decode_g<T, 16>(be, q, kc, vc, p, part, smem, r0, nr);
    if (rc) return rc;
    dim3 g2(nr, p->n_heads);
    CU_LAUNCH(be, (attn_combine_kernel<T>), g2, hd >= 128 ? 128 : 64, 0, (T *)out->data, part, c->b.dec_rows + r0, c->b.pos,
              p->n_heads, hd, p->sliding_window, S, !c->combine_loop, c->attn_vs);
    LAUNCH_CHECK(be);
  }
  return 0;
}

int cu_attention(ig_backend *be, ig_tensor *out, const ig_tensor *q, int layer, const ig_attn_params *p) {
  cu_impl *c = CU(be);
  if (!c->kv_mem) FAIL(be, "cuda attention: kv_init was not called");
  if (layer < 0 || layer >= c->kv.n_layers) FAIL(be, "cuda attention: bad layer %d", layer);
  if (p->n_kv_heads != c->kv.n_kv_heads || p->head_dim != c->kv.head_dim) FAIL(be, "cuda attention: params do not match the KV cache");
  if (p->n_kv_heads <= 0 || p->n_heads % p->n_kv_heads) FAIL(be, "cuda attention: n_heads %% n_kv_heads != 0");
  if (p->n_heads / p->n_kv_heads > 16) FAIL(be, "cuda attention: GQA group of %d heads is over 16", p->n_heads / p->n_kv_heads);
  if (q->cols != (int64_t)p->n_heads * p->head_dim || out->cols != q->cols) FAIL(be, "cuda attention: q/out width mismatch");
  if (q->dtype != be->act_dtype || out->dtype != be->act_dtype) FAIL(be, "cuda attention: q/out must be %s", ig_dtype_name(be->act_dtype));
  char *kc, *vc;
  cu_kv_layer(c, layer, &kc, &vc);
  /* an FP8 cache with scales: the codes' K scale folds into the score scale, the V scale into the outputs */
  ig_attn_params ps = *p;
  ps.scale *= cu_kv_kscale(c, layer);
  c->attn_vs = cu_kv_vscale(c, layer);
  p = &ps;
  if (c->b.n_tiles > 0) {
    /* set_batch makes tiles only for head_dim 64/128 (256 with the mma kernel) in bf16; anything else here would run
     * the wrong kernel */
    if ((p->head_dim != 64 && p->head_dim != 128 && p->head_dim != 256) || be->act_dtype != IG_DT_BF16)
      FAIL(be, "cuda attention: tiled prefill for head_dim %d (%s)", p->head_dim, ig_dtype_name(be->act_dtype));
    int r = p->head_dim == 256   ? launch_prefill<256>(be, out, q, kc, vc, p)
            : p->head_dim == 128 ? launch_prefill<128>(be, out, q, kc, vc, p)
                                 : launch_prefill<64>(be, out, q, kc, vc, p);
    if (r) return r;
  }
  if (c->b.n_dec > 0) {
    if (be->act_dtype == IG_DT_BF16) return launch_decode<__nv_bfloat16>(be, out, q, kc, vc, p);
    return launch_decode<float>(be, out, q, kc, vc, p);
  }
  return 0;
}
