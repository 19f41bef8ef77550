/* backend/cuda/cuda_gemm.cu: out[m, O] = x[m, I] @ W[O, I]^T for the skinny products of decode steps (bf16, up to
 * 128 rows per launch), where cuBLASLt and the GEMV read the weights below the H100's ~3.1 TB/s.
 *
 * Tensor cores with the weight as the 16-row A operand (out^T = W x^T), so a block streams a 64-row weight tile
 * through a pipeline of shared-memory stages while the few x rows ride along as the B operand. On Hopper the stages
 * arrive by TMA tensor copies that one thread issues (16-byte cp.async from every thread elsewhere, or with
 * IGNIS_CUDA_SGEMM_BULK=0): with cp.async the kernel was bound by issuing instructions (ncu: one per 3.5 cycles per
 * warp), not by memory, and reached ~24 GB/s per block.
 *
 * Two ways to sum K:
 *  - no split (the batch-invariant modes, the default): each output is one mma.sync chain over K in order, 16 at a
 *    time, into one f32 accumulator. That is what cuBLASLt's algorithms without split-K give at the Llama-3-8B
 *    shapes on the H100 (bench/cuda_mma_order.cu: bitwise at 1 to 4,096 rows), so these rows equal the cuBLASLt rows
 *    of larger steps; cuda_matmul.cu checks each shape against cuBLASLt before using it (not every shape agrees).
 *  - K split over S blocks per tile (IGNIS_CUDA_BATCH_INVARIANT=sgemm): each writes its f32 partial tile and the
 *    last to arrive (a counter per tile) adds the S partials in split order. S depends only on (O, I) and the
 *    device, so a row's result does not depend on m either, but it is not cuBLASLt's.
 * Epilogues: bias + several outputs over one weight buffer (q|k|v), or gate and up tiles side by side in one
 * block followed by silu(gate) * up (the SwiGLU MLP) so the 2 x [m, I] products never reach memory.
 * The first pipeline stages of weights are requested before waiting on the previous kernel (programmatic
 * dependent launch): weights never depend on it, x does. */
#include "backend/cuda/cuda_common.h"
#include "backend/cuda/cuda_dtype.cuh"
#include "backend/cuda/cuda_mma.cuh"
#include <cuda.h>
#include <cudaTypedefs.h>
#include <string.h>

/* Tile: BN = 64 weight rows per block (swiglu: 32 gate + 32 up rows), BK = 128 k per pipeline stage (256 bytes of
 * each row); 4 warps of 16 rows. Measured on the H100 against 128 x 64 and 64 x 256 tiles (and twice the K splits):
 * 64 x 128 was the fastest for every product at m = 16 and 32 (bench/RESULTS.md, third session). The kernel keeps BN/BK as template
 * parameters. */
#define SG_TILE_BN 64
#define SG_TILE_BK 128
#define SG_NT(BN) ((BN) * 2) /* threads: one warp per 16 weight rows */
#define SG_MAX_CNT 16384 /* arrival counters: tiles of a split product */

struct sg_seg {
  void *out;
  const void *bias;
  int odt, bdt, O, off; /* rows [off, off + O) of the product go to out ([m, O]) */
};
struct sg_args {
  const __nv_bfloat16 *W;  /* [O, I]; swiglu: gate */
  const __nv_bfloat16 *Wu; /* swiglu: up [O, I]; NULL otherwise */
  const __nv_bfloat16 *X;  /* [m, I] */
  float *part;             /* [S][tiles][BN * MT] partial tiles when S > 1 */
  int *cnt;                /* [tiles] arrivals; the last block sets it back to 0 */
  sg_seg s[4];
  const void *ubias; /* swiglu: up's bias (s[0].bias is gate's) */
  int ubdt, udt;     /* swiglu: up's bias dtype, and the dtype up is rounded to as a separate product would be */
  int act;           /* swiglu: 0 silu(gate) * up, 1 gelu_tanh(gate) * up (Gemma3's GeGLU) */
  int nseg, m, I, O, S, nk, tiles;
};

/* Chunk c (16 bytes) of row r sits at chunk c ^ (r & 7) (low 3 bits): the 8 rows an ldmatrix phase reads fall in
 * distinct banks. */
template <int BK> __device__ __forceinline__ int sg_swz(int r, int c) { return r * BK + ((c ^ (r & 7)) << 3); }

/* TMA (BULK): each stage arrives by 2-D tensor copies (Hopper's TMA unit; one thread issues 4 per stage, counted
 * on the stage's mbarrier) instead of 16-byte cp.async from every thread: a 64-column half of the stage's rows per
 * copy, 128-byte swizzled, which is the same chunk ^ (row & 7) pattern, half by half. Out-of-range rows and columns
 * arrive as zeros. The maps are kernel parameters; sm_90 only. */
struct sg_maps {
  CUtensorMap w, wu, x; /* W (or gate) and up: boxes of 64 columns x BN (swiglu BN/2) rows; x: 64 x MT */
};
template <bool BULK, int BK> __device__ __forceinline__ int sg_at(int R, int r, int c) {
  return BULK ? (c >> 3) * R * 64 + r * 64 + (((c & 7) ^ (r & 7)) << 3) : sg_swz<BK>(r, c);
}

template <int MT, int BN, int BK, int STAGES, bool SWIGLU, bool BULK>
__global__ void __launch_bounds__(SG_NT(BN)) sgemm_kernel(const sg_args a, const __grid_constant__ sg_maps tm) {
  const int SG_THREADS = SG_NT(BN);
  const int SG_BN = BN, SG_BK = BK, CPR = BK / 8, WR = 16, MTW = 1; /* chunks per row, rows per warp */
  const int WPT = BN * BK / 8 / SG_THREADS; /* weight chunks per thread per stage */
  static_assert(WPT * 8 * SG_THREADS == BN * BK && WPT <= 16, "weight chunks per thread");
  extern __shared__ __align__(128) unsigned char smraw[];
  const int PITCH = BK;
  /* TMA's 128-byte swizzle follows the address bits: its tiles start on 1,024-byte boundaries */
  __nv_bfloat16 *Ws = (__nv_bfloat16 *)(BULK ? (unsigned char *)(((uintptr_t)smraw + 1023) & ~(uintptr_t)1023) : smraw);
  __nv_bfloat16 *Xs = Ws + STAGES * SG_BN * PITCH;   /* [STAGES][MT * PITCH] */
  __shared__ int last;
  __shared__ __align__(8) uint64_t bar[BULK ? STAGES : 1];
  const int tile = blockIdx.x, z = blockIdx.y;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int kc0 = (int)((long long)z * a.nk / a.S), n = (int)((long long)(z + 1) * a.nk / a.S) - kc0;
  const int I = a.I;

  /* this thread's WPT weight rows (r = tid / CPR + (128 / CPR) i) and its 16-byte chunk c = tid % CPR of each */
  const int wc = tid % CPR, RST = SG_THREADS / CPR;
  const __nv_bfloat16 *wrow[WPT];
  unsigned wvalid = 0;
#pragma unroll
  for (int i = 0; i < WPT; i++) {
    int r = tid / CPR + RST * i;
    bool ok;
    if (SWIGLU) {
      int f = tile * (SG_BN / 2) + (r & (SG_BN / 2 - 1));
      ok = f < a.O;
      wrow[i] = (r < SG_BN / 2 ? a.W : a.Wu) + (size_t)(ok ? f : 0) * I;
    } else {
      int o = tile * SG_BN + r;
      ok = o < a.O;
      wrow[i] = a.W + (size_t)(ok ? o : 0) * I;
    }
    wvalid |= (unsigned)ok << i;
  }
  if (BULK) {
    if (tid == 0)
      for (int s = 0; s < STAGES; s++) mbar_init(&bar[s], 1);
    __syncthreads();
  }
  auto load_w = [&](int st, int kc) {
    if (BULK) {
      if (tid == 0) {
        mbar_expect(&bar[st], (unsigned)(SG_BN + MT) * SG_BK * 2); /* whole boxes, zero-filled parts included */
        __nv_bfloat16 *d = Ws + st * SG_BN * PITCH;
#pragma unroll
        for (int h = 0; h < SG_BK / 64; h++) {
          int k = kc * SG_BK + h * 64;
          if (SWIGLU) {
            tma_load_2d(d + h * SG_BN * 64, &tm.w, k, tile * (SG_BN / 2), &bar[st]);
            tma_load_2d(d + h * SG_BN * 64 + (SG_BN / 2) * 64, &tm.wu, k, tile * (SG_BN / 2), &bar[st]);
          } else {
            tma_load_2d(d + h * SG_BN * 64, &tm.w, k, tile * SG_BN, &bar[st]);
          }
        }
      }
    } else {
      int k = kc * SG_BK + wc * 8;
      bool kin = k < I;
#pragma unroll
      for (int i = 0; i < WPT; i++) {
        int r = tid / CPR + RST * i;
        bool ok = kin && ((wvalid >> i) & 1);
        cp_async_16z(Ws + st * SG_BN * SG_BK + sg_swz<BK>(r, wc), ok ? wrow[i] + k : a.W, ok);
      }
    }
  };
  auto load_x = [&](int st, int kc) {
    if (BULK) {
      if (tid == 0)
#pragma unroll
        for (int h = 0; h < SG_BK / 64; h++) tma_load_2d(Xs + st * MT * PITCH + h * MT * 64, &tm.x, kc * SG_BK + h * 64, 0, &bar[st]);
    } else {
#pragma unroll
      for (int idx = tid; idx < MT * CPR; idx += SG_THREADS) {
        int r = idx / CPR, c = idx % CPR, k = kc * SG_BK + c * 8;
        bool ok = r < a.m && k < I;
        cp_async_16z(Xs + st * MT * SG_BK + sg_swz<BK>(r, c), ok ? a.X + (size_t)r * I + k : a.X, ok);
      }
    }
  };

  /* weights first (independent of the previous kernel), then wait for it, then x; group s holds stage s's x
   * (and, for s = 0, every prologue weight stage) */
#pragma unroll
  for (int s = 0; s < STAGES - 1; s++)
    if (s < n) load_w(s, kc0 + s);
  PDL_ENTRY();
#pragma unroll
  for (int s = 0; s < STAGES - 1; s++) {
    if (s < n) load_x(s, kc0 + s);
    cp_async_commit_group();
  }

  float acc[MTW][MT / 8][4];
#pragma unroll
  for (int i = 0; i < MTW; i++)
#pragma unroll
    for (int j = 0; j < MT / 8; j++) acc[i][j][0] = acc[i][j][1] = acc[i][j][2] = acc[i][j][3] = 0.f;

  for (int it = 0; it < n; it++) {
    if (BULK) mbar_wait(&bar[it % STAGES], (unsigned)(it / STAGES) & 1u);
    else cp_async_wait_group<STAGES - 2>();
    __syncthreads(); /* stage it is in; every warp is done with stage it - 1, which is refilled next */
    int pf = it + STAGES - 1;
    if (pf < n) {
      if (BULK && tid == 0) fence_proxy_async();
      load_w(pf % STAGES, kc0 + pf);
      load_x(pf % STAGES, kc0 + pf);
    }
    if (!BULK) cp_async_commit_group();
    const __nv_bfloat16 *ws = Ws + (it % STAGES) * SG_BN * PITCH, *xs = Xs + (it % STAGES) * MT * PITCH;
#pragma unroll
    for (int kk = 0; kk < SG_BK / 16; kk++) {
      uint32_t af[MTW][4];
#pragma unroll
      for (int mt = 0; mt < MTW; mt++) {
        int r = warp * WR + mt * 16 + (lane & 15);
        ldsm4(af[mt], ws + sg_at<BULK, BK>(SG_BN, r, kk * 2 + (lane >> 4)));
      }
#pragma unroll
      for (int np = 0; np < MT / 16; np++) {
        uint32_t b[4];
        int r = np * 16 + (lane & 7) + ((lane >> 4) << 3);
        ldsm4(b, xs + sg_at<BULK, BK>(MT, r, kk * 2 + ((lane >> 3) & 1)));
#pragma unroll
        for (int mt = 0; mt < MTW; mt++) {
          mma_bf16_16816(acc[mt][2 * np], af[mt], b[0], b[1]);
          mma_bf16_16816(acc[mt][2 * np + 1], af[mt], b[2], b[3]);
        }
      }
    }
  }
  if (!BULK) cp_async_wait_group<0>(); /* BULK: every stage issued has been waited for */
  __syncthreads(); /* the pipeline's shared memory becomes the f32 tile */

  const int P = MT + 1; /* odd pitch: the epilogue's reads down a column do not collide in banks */
  float *red = (float *)smraw;
  {
    const int g = lane >> 2, cq = lane & 3;
#pragma unroll
    for (int mt = 0; mt < MTW; mt++)
#pragma unroll
      for (int nt = 0; nt < MT / 8; nt++) {
        int r = warp * WR + mt * 16 + g, col = nt * 8 + 2 * cq;
        red[r * P + col] = acc[mt][nt][0];
        red[r * P + col + 1] = acc[mt][nt][1];
        red[(r + 8) * P + col] = acc[mt][nt][2];
        red[(r + 8) * P + col + 1] = acc[mt][nt][3];
      }
  }
  __syncthreads();
  const int m = a.m;
  if (a.S > 1) {
    /* partial tiles go out in float4s (columns past m skipped); the last block to arrive reads the S partials of
     * each float4 at once (all loads in flight, then added in split order): one L2 round trip per float4 */
    const int Q = MT / 4;
    float *mine = a.part + ((size_t)z * a.tiles + tile) * (BN * MT);
    for (int idx = tid; idx < SG_BN * Q; idx += SG_THREADS) {
      int r = idx / Q, c4 = (idx % Q) * 4;
      if (c4 >= m) continue;
      const float *q = red + r * P + c4;
      __stcg((float4 *)(mine + r * MT + c4), make_float4(q[0], q[1], q[2], q[3]));
    }
    __threadfence();
    __syncthreads();
    if (tid == 0) last = atomicAdd(&a.cnt[tile], 1) == a.S - 1;
    __syncthreads();
    if (!last) return;
    __threadfence();
    const float *base = a.part + (size_t)tile * (BN * MT);
    const size_t zstride = (size_t)a.tiles * (BN * MT);
#pragma unroll 2
    for (int idx = tid; idx < SG_BN * Q; idx += SG_THREADS) {
      int r = idx / Q, c4 = (idx % Q) * 4;
      if (c4 >= m) continue;
      float4 t[16];
#pragma unroll
      for (int zz = 0; zz < 16; zz++)
        if (zz < a.S) t[zz] = __ldcg((const float4 *)(base + zz * zstride + r * MT + c4));
      float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
      for (int zz = 0; zz < 16; zz++)
        if (zz < a.S) v.x += t[zz].x, v.y += t[zz].y, v.z += t[zz].z, v.w += t[zz].w;
      float *q = red + r * P + c4;
      q[0] = v.x, q[1] = v.y, q[2] = v.z, q[3] = v.w;
    }
    if (tid == 0) a.cnt[tile] = 0;
    __syncthreads();
  }
  /* S == 1: red holds the sums as they are (0 + partial, the same bits the split path gives for one split) */
  if (SWIGLU) {
    const int H = SG_BN / 2;
    for (int idx = tid; idx < H * m; idx += SG_THREADS) {
      int col = idx / H, r = idx % H, f = tile * H + r;
      if (f >= a.O) continue;
      float gv = red[r * P + col] + (a.s[0].bias ? ldf(a.s[0].bias, a.s[0].bdt, f) : 0.f);
      float uv = red[(r + H) * P + col] + (a.ubias ? ldf(a.ubias, a.ubdt, f) : 0.f);
      gv = roundf_dt(a.s[0].odt, gv), uv = roundf_dt(a.udt, uv);
      stf(a.s[0].out, a.s[0].odt, (long long)col * a.O + f, (a.act ? gelu_tanh(gv) : gv / (1.f + expf(-gv))) * uv);
    }
  } else {
    for (int idx = tid; idx < SG_BN * m; idx += SG_THREADS) {
      int col = idx / SG_BN, r = idx % SG_BN, o = tile * SG_BN + r;
      if (o >= a.O) continue;
      int k = 0;
      while (k + 1 < a.nseg && o >= a.s[k + 1].off) k++;
      const sg_seg &sg = a.s[k];
      int oo = o - sg.off;
      float v = red[r * P + col] + (sg.bias ? ldf(sg.bias, sg.bdt, oo) : 0.f);
      stf(sg.out, sg.odt, (long long)col * sg.O + oo, v);
    }
  }
}

/* DEEP: as many stages as fit in 200 KB, at most 8 (one block per SM, more bytes in flight: for products with few
 * tiles and no K split); otherwise 4 stages when two blocks fit per SM */
template <int MT, int BN, int BK, bool DEEP = false, bool BULK = false> struct sg_cfg {
  static const int sb = (BN + MT) * BK * 2, deep = 199 * 1024 / sb > 8 ? 8 : 199 * 1024 / sb;
  static const int stages = DEEP ? deep : sb * 4 <= 100 * 1024 ? 4 : sb * 3 <= 200 * 1024 ? 3 : 2;
  static const size_t pipe = (size_t)stages * sb, red = (size_t)BN * (MT + 1) * 4;
  static const size_t smem = (pipe > red ? pipe : red) + (BULK ? 1024 : 0); /* BULK: room to align to 1,024 */
};

template <int MT, int BN, int BK, bool SWIGLU, bool DEEP, bool BULK> static int sg_launch(ig_backend *be, const sg_args &a, const sg_maps &tm) {
  typedef sg_cfg<MT, BN, BK, DEEP, BULK> C;
  static_assert(C::smem <= 200 * 1024, "sgemm tile too large");
  auto k = sgemm_kernel<MT, BN, BK, C::stages, SWIGLU, BULK>;
  CUDA_CHECK(be, cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)C::smem));
  dim3 grid((unsigned)a.tiles, (unsigned)a.S);
  CU_LAUNCH(be, k, grid, SG_NT(BN), C::smem, a, tm);
  LAUNCH_CHECK(be);
  return 0;
}

template <int BN, int BK, bool SWIGLU, bool DEEP, bool BULK>
static int sg_launch_m(ig_backend *be, const sg_args &a, const sg_maps &tm, int MT) {
  switch (MT) {
    case 16: return sg_launch<16, BN, BK, SWIGLU, DEEP, BULK>(be, a, tm);
    case 32: return sg_launch<32, BN, BK, SWIGLU, DEEP, BULK>(be, a, tm);
    case 64: return sg_launch<64, BN, BK, SWIGLU, DEEP, BULK>(be, a, tm);
    default: return sg_launch<128, BN, BK, SWIGLU, DEEP, BULK>(be, a, tm);
  }
}
template <int BN, int BK, bool BULK>
static int sg_launch_d(ig_backend *be, const sg_args &a, const sg_maps &tm, int MT, bool swiglu, bool deep) {
  if (swiglu) return sg_launch_m<BN, BK, true, false, BULK>(be, a, tm, MT); /* deep stages measured slower for it */
  return deep ? sg_launch_m<BN, BK, false, true, BULK>(be, a, tm, MT) : sg_launch_m<BN, BK, false, false, BULK>(be, a, tm, MT);
}

/* plain products (no SwiGLU) through TMA with BN-row tiles */
template <int BN, int BK>
static int sg_launch_p(ig_backend *be, const sg_args &a, const sg_maps &tm, int MT, bool deep) {
  return deep ? sg_launch_m<BN, BK, false, true, true>(be, a, tm, MT) : sg_launch_m<BN, BK, false, false, true>(be, a, tm, MT);
}

/* cuTensorMapEncodeTiled from the driver, through the runtime (no link against libcuda) */
static PFN_cuTensorMapEncodeTiled_v12000 sg_encode_fn(void) {
  static PFN_cuTensorMapEncodeTiled_v12000 fn;
  static int tried;
  if (!tried) {
    tried = 1;
    void *p = NULL;
    cudaDriverEntryPointQueryResult q;
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &q) == cudaSuccess &&
        q == cudaDriverEntryPointSuccess)
      fn = (PFN_cuTensorMapEncodeTiled_v12000)p;
    cudaGetLastError();
  }
  return fn;
}
/* a [rows, I] bf16 matrix, boxes of 64 columns x box rows, 128-byte swizzle, zeros out of range */
static int sg_map(CUtensorMap *m, const void *base, int64_t rows, int64_t I, int box) {
  PFN_cuTensorMapEncodeTiled_v12000 enc = sg_encode_fn();
  if (!enc) return -1;
  cuuint64_t dim[2] = {(cuuint64_t)I, (cuuint64_t)rows}, stride[1] = {(cuuint64_t)I * 2};
  cuuint32_t boxd[2] = {64, (cuuint32_t)box}, es[2] = {1, 1};
  return enc(m, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, (void *)base, dim, stride, boxd, es, CU_TENSOR_MAP_INTERLEAVE_NONE,
             CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS
             ? 0 : -1;
}

/* Weight rows per block: the SwiGLU product and the cp.async path keep 64; a plain product through TMA takes 48 when
 * that fills the SMs' waves better by a tenth (q|k|v at the 8B shape: 96 -> 128 blocks on 132 SMs; m = 1 19.4 ->
 * 18.7 us on the H100, batch-1 decode -0.5%; lm_head stays at 64, where 48 measured slower), or what
 * IGNIS_CUDA_SGEMM_BN says (64 or 48). Each output's sum over K is the same chain either way: the same bits. */
static int sg_bn_for(const cu_impl *c, int swiglu, int64_t O) {
  if (swiglu || !c->sg_bulk || !c->sm90) return SG_TILE_BN;
  if (c->sg_bn == 48 || c->sg_bn == 64) return c->sg_bn;
  int64_t t64 = (O + 63) / 64, t48 = (O + 47) / 48, sm = c->sm_count;
  double e64 = (double)t64 / (double)(((t64 + sm - 1) / sm) * sm), e48 = (double)t48 / (double)(((t48 + sm - 1) / sm) * sm);
  return e48 > e64 + 0.1 ? 48 : SG_TILE_BN;
}

int cu_sgemm_ok(ig_backend *be, const ig_tensor *x, const ig_tensor *w, int swiglu) {
  cu_impl *c = CU(be);
  int64_t m = x->rows;
  int most = swiglu ? c->sgemm_max_swiglu : c->sgemm_max;
  return most > 0 && w->dtype == IG_DT_BF16 && x->dtype == IG_DT_BF16 && m >= (c->use_gemv ? IG_GEMV_MAX_M + 1 : 1) &&
         (c->batch_invariant || (m <= most && m <= 128)) &&
         (!c->bi_lt || w->rows / sg_bn_for(c, swiglu, w->rows) >= c->bi_sg_tiles) && w->cols % 8 == 0 && w->cols <= INT32_MAX / 2 && w->rows <= INT32_MAX / 2 &&
         ((uintptr_t)x->data | (uintptr_t)w->data) % 16 == 0;
}

/* Splits of K per output tile: enough blocks for sgemm_waves blocks per SM, at least 4 stages per split, at
 * most 16 splits. A function of the shape and the device only (never of m), so results are batch-invariant. */
static int sg_splits(cu_impl *c, int tiles, int nk) {
  if (tiles >= SG_MAX_CNT) return 1;
  int want = (c->sgemm_waves * c->sm_count + tiles - 1) / tiles;
  int most = nk / 4 < 16 ? nk / 4 : 16;
  if (want > most) want = most;
  return want < 1 ? 1 : want;
}

/* segs: the outputs over rows of W (concatenated q|k|v, or one); Wu != NULL: swiglu of W (gate) and Wu (up),
 * out = segs[0] with up's bias and rounding dtype given apart. */
static int sgemm_rows(ig_backend *be, const sg_seg_desc *segs, int nseg, const void *W, const void *Wu, const void *ubias,
                      int ubdt, int udt, const void *X, int m, int O, int I) {
  cu_impl *c = CU(be);
  if (m < 1 || m > 128 || nseg < 1 || nseg > 4) FAIL(be, "cuda sgemm: m %d, %d outputs", m, nseg);
  sg_args a;
  memset(&a, 0, sizeof a);
  a.W = (const __nv_bfloat16 *)W, a.Wu = (const __nv_bfloat16 *)Wu, a.X = (const __nv_bfloat16 *)X;
  for (int i = 0; i < nseg; i++)
    a.s[i] = sg_seg{segs[i].out, segs[i].bias, segs[i].odt, segs[i].bdt, segs[i].rows, segs[i].off};
  a.ubias = ubias, a.ubdt = ubdt, a.udt = udt, a.act = segs[0].act;
  a.nseg = nseg, a.m = m, a.I = I, a.O = O;
  const int BN = sg_bn_for(c, Wu != NULL, O), BK = SG_TILE_BK;
  a.tiles = Wu ? (O + BN / 2 - 1) / (BN / 2) : (O + BN - 1) / BN;
  a.nk = (I + BK - 1) / BK;
  /* the cuBLASLt batch-invariant mode: no split, so each output is one mma.sync chain over K in order, 16 at a
   * time, which gives cuBLASLt's own bits (its algorithms without split-K sum the same way: bench/cuda_mma_order.cu,
   * and test_cuda_ops checks these rows against cuBLASLt's at 4,096) */
  a.S = c->bi_lt ? 1 : sg_splits(c, a.tiles, a.nk);
  int MT = m <= 16 ? 16 : m <= 32 ? 32 : m <= 64 ? 64 : 128;
  if (a.S > 1) {
    if (!c->sg_cnt) {
      if (c->capturing) FAIL(be, "cuda sgemm: first split product while capturing a graph; warm up first");
      CUDA_CHECK(be, cudaMalloc((void **)&c->sg_cnt, SG_MAX_CNT * sizeof(int)));
      CUDA_CHECK(be, cudaMemsetAsync(c->sg_cnt, 0, SG_MAX_CNT * sizeof(int), c->st));
    }
    if (cu_scratch(be, &c->sg_part, &c->sg_part_size, (size_t)a.S * a.tiles * BN * MT * sizeof(float))) return -1;
    a.part = (float *)c->sg_part, a.cnt = c->sg_cnt;
  }
  /* deep pipelines for plain products without K splits (few blocks, each a long K walk; IGNIS_CUDA_SGEMM_DEEP=0: off) */
  bool deep = a.S == 1 && !Wu && c->sg_deep;
  /* TMA tensor copies (IGNIS_CUDA_SGEMM_BULK=1; Hopper; 16-byte aligned rows) */
  sg_maps tm;
  memset(&tm, 0, sizeof tm);
  if (c->sg_bulk && c->sm90 && ((uintptr_t)W | (uintptr_t)(Wu ? Wu : W) | (uintptr_t)X) % 16 == 0 &&
      sg_map(&tm.w, W, O, I, Wu ? BN / 2 : BN) == 0 && (!Wu || sg_map(&tm.wu, Wu, O, I, BN / 2) == 0) &&
      sg_map(&tm.x, X, m, I, MT) == 0) {
    if (BN == 48) return sg_launch_p<48, SG_TILE_BK>(be, a, tm, MT, deep);
    return sg_launch_d<SG_TILE_BN, SG_TILE_BK, true>(be, a, tm, MT, Wu != NULL, deep);
  }
  if (BN != SG_TILE_BN) FAIL(be, "cuda sgemm: %d-row tiles need TMA", BN);
  return sg_launch_d<SG_TILE_BN, SG_TILE_BK, false>(be, a, tm, MT, Wu != NULL, deep);
}

/* Up to 128 rows in one launch; more (only in the batch-invariant mode) in launches of 128 rows, each row's sums the
 * same whatever launch and tile height it falls in. */
int cu_sgemm(ig_backend *be, const sg_seg_desc *segs, int nseg, const void *W, const void *Wu, const void *ubias,
             int ubdt, int udt, const void *X, int m, int O, int I) {
  if (m <= 128 || nseg < 1 || nseg > 4) return sgemm_rows(be, segs, nseg, W, Wu, ubias, ubdt, udt, X, m, O, I);
  for (int r0 = 0; r0 < m; r0 += 128) {
    sg_seg_desc d[4];
    for (int i = 0; i < nseg; i++) {
      d[i] = segs[i];
      d[i].out = (char *)segs[i].out + (size_t)r0 * segs[i].rows * ig_dtype_size((ig_dtype)segs[i].odt);
    }
    const void *x = (const char *)X + (size_t)r0 * I * sizeof(__nv_bfloat16);
    if (sgemm_rows(be, d, nseg, W, Wu, ubias, ubdt, udt, x, m - r0 < 128 ? m - r0 : 128, O, I)) return -1;
  }
  return 0;
}
