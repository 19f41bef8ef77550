/* bench/cuda_hgemm.cu: can a Hopper GEMM written for the decode products (warp-specialized: one producer warp
 * issuing TMA copies into a ring of shared-memory stages, consumer warpgroups running wgmma) beat cuBLASLt's
 * algorithms without split-K at 32..256 rows while giving their bits?
 *
 * out[m, O] = x[m, I] @ W[O, I]^T in bf16 (f32 accumulate), computed as out^T = W x^T: each consumer warpgroup takes
 * 64 weight rows as wgmma's M (A, K-major from 128-byte-swizzled shared memory) and MT x rows as its N (B, K-major
 * too). Every output is one chain of k16 MMAs over K in order into one f32 accumulator starting at 0, as the
 * mma.sync skinny GEMM and cuBLASLt's algorithms without split-K sum (bench/cuda_mma_order.cu), so the rows should
 * equal cuBLASLt's bit for bit: checked here at every shape and m.
 *
 * Each consumer waits for a stage's MMAs before releasing it (wgmma.wait_group 0). The pipelined form (wait_group 1,
 * the previous stage released while this one's MMAs run; variant "64x1p", run only when named) gave wrong sums on the
 * H100 (tens of thousands of outputs off by up to ~34,000 bf16 ulps) with one arrival per warpgroup or per warp, with
 * the stage released one iteration later, and with CUTLASS's register fences; the cause was not found. The K loop's
 * trip count is a template parameter: with a run-time count ptxas serialized the MMAs (C7514) whatever the loop.
 *
 * For each product of the Llama-3-8B shape (q|k|v, o, gate|up as one buffer, down) and row count m: cuBLASLt's
 * heuristic pick without split-K (what the batch-invariant mode runs today) and the variants of this kernel (MT x
 * rows per tile, C consumer warpgroups = 64 C weight rows per block, "o2": two blocks per SM), each timed as the mean
 * of 20 calls after 3, rotating over weight copies so that every call reads its weights from HBM, and compared
 * bitwise with cuBLASLt. HG_VARIANTS=64x1,128x2 runs only the variants named.
 *   cuda_hgemm [m,m,...]     (on the GPU machine; default 32,64,128,192,256) */
#include <cublasLt.h>
#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "backend/cuda/cuda_mma.cuh"
#include "cuda_bench_common.cuh"
#include "cuda_lt_plan.cuh"
#include "cuda_wgmma.cuh"

/* arrive when on != 0, predicated rather than branched around: a branch between asynchronous wgmma and their wait
 * makes ptxas serialize them (C7514) */
__device__ __forceinline__ void mbar_arrive_if(uint64_t *bar, int on) {
  asm volatile("{\n\t.reg .pred p;\n\tsetp.ne.s32 p, %1, 0;\n\t@p mbarrier.arrive.shared::cta.b64 _, [%0];\n\t}"
               ::"r"((unsigned)__cvta_generic_to_shared(bar)), "r"(on) : "memory");
}
/* mbar_wait with the spin loop inside one asm block */
__device__ __forceinline__ void mbar_wait_asm(uint64_t *bar, unsigned parity) {
  asm volatile("{\n\t.reg .pred p;\n"
               "HG_WAIT_%=:\n\t"
               "mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n\t"
               "@!p bra HG_WAIT_%=;\n\t}"
               ::"r"((unsigned)__cvta_generic_to_shared(bar)), "r"(parity) : "memory");
}
/* shared-memory descriptor of a K-major tile of 128-byte rows with the 128-byte swizzle: 8-row groups 1,024 bytes
 * apart, the tile on a 1,024-byte boundary; +2 (32 bytes) per 16 k inside the 64-k atom */
__device__ __forceinline__ uint64_t hg_desc(const void *p) {
  uint32_t addr = (uint32_t)__cvta_generic_to_shared(p);
  return (uint64_t)((addr & 0x3FFFF) >> 4) | ((uint64_t)1 << 16) | ((uint64_t)(1024 >> 4) << 32) | ((uint64_t)1 << 62);
}

struct hg_maps {
  CUtensorMap w, x; /* W: boxes of 64 k x 64 C rows; x: 64 k x MT rows */
};

/* OCC blocks per SM: the ring takes what fits in 200 KB / OCC, at most 12 stages */
template <int MT, int C, int OCC> struct hg_cfg {
  static const int BN = 64 * C, THREADS = 128 * (C + 1);
  static const int stage = (BN + MT) * 128; /* bytes: 64 k of BN weight rows and MT x rows */
  static const int fit = (200 * 1024 / OCC - 1024) / stage;
  static const int stages = fit > 12 ? 12 : fit;
  static const size_t smem = (size_t)stages * stage + 1024;
  static_assert(stages >= 2, "ring too small");
  static_assert((size_t)C * MT * 72 * 2 <= (size_t)stages * stage, "epilogue staging does not fit the ring");
};

/* grid: (row tiles, weight tiles): both row tiles of one weight tile run side by side, so the second reads it from L2 */
/* NK: K / 64, a compile-time constant: with a run-time trip count ptxas serializes the asynchronous wgmma (C7514,
 * "non wgmma instructions reading accumulator registers") whatever the loop's shape */
template <int MT, int C, int OCC, int NK, bool PIPE>
__global__ void __launch_bounds__(128 * (C + 1), OCC) hg_kernel(const __grid_constant__ hg_maps tm, __nv_bfloat16 *out, int m, int O, int I) {
  typedef hg_cfg<MT, C, OCC> T;
  const int STAGES = T::stages;
  extern __shared__ unsigned char smraw[];
  unsigned char *base = (unsigned char *)(((uintptr_t)smraw + 1023) & ~(uintptr_t)1023);
  __shared__ __align__(8) uint64_t full[STAGES], empty[STAGES];
  const int tid = threadIdx.x, wg = tid >> 7;
  const int rt = blockIdx.x, wt = blockIdx.y;
  const int nk = NK;
  if (tid == 0) {
    for (int s = 0; s < STAGES; s++) mbar_init(&full[s], 1), mbar_init(&empty[s], 4 * C);
  }
  __syncthreads();
  if (wg == C) { /* producer warpgroup: one thread issues every copy */
    if (tid == 128 * C) {
      for (int it = 0; it < nk; it++) {
        int s = it % STAGES;
        if (it >= STAGES) mbar_wait(&empty[s], (unsigned)((it / STAGES) - 1) & 1u);
        unsigned char *st = base + (size_t)s * T::stage;
        mbar_expect(&full[s], (unsigned)T::stage);
        tma_load_2d(st, &tm.w, it * 64, wt * T::BN, &full[s]);
        tma_load_2d(st + T::BN * 128, &tm.x, it * 64, rt * MT, &full[s]);
      }
    }
    return;
  }
  float d[MT / 2];
#pragma unroll
  for (int i = 0; i < MT / 2; i++) d[i] = 0.f;
  for (int it = 0; it < nk; it++) {
    int s = it % STAGES;
    mbar_wait_asm(&full[s], (unsigned)(it / STAGES) & 1u);
    unsigned char *st = base + (size_t)s * T::stage;
    const uint64_t da = hg_desc(st + wg * 64 * 128), db = hg_desc(st + T::BN * 128);
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < 4; kk++) wgmma_op<MT>::run(d, da + 2 * kk, db + 2 * kk);
    wgmma_commit();
    if (PIPE) wgmma_wait<1>(); /* the previous stage's MMAs are done: give its slot back */
    else wgmma_wait<0>();
    /* one arrival per warp: wgmma.wait_group returns per warp, so a warp done with the stage cannot vouch for the
     * others (one arrival per warpgroup gave wrong sums once the MMAs ran ahead) */
    mbar_arrive_if(&empty[(it + STAGES - 1) % STAGES], it > 0 && (tid & 31) == 0);
  }
  wgmma_wait<0>();
#pragma unroll
  for (int i = 0; i < MT / 2; i++) wgmma_reg_fence(d[i]);
  /* every consumer is done with the ring (all copies were waited for), so it becomes the output staging:
   * per warpgroup [MT x rows][64 features] bf16 with a 16-byte pad per row */
  asm volatile("bar.sync 1, %0;" ::"n"(128 * C) : "memory");
  const int P = 64 + 8;
  __nv_bfloat16 *os = (__nv_bfloat16 *)base + (size_t)wg * MT * P;
  {
    const int t = tid & 127, warp = t >> 5, lane = t & 31;
    const int r = warp * 16 + (lane >> 2), cq = lane & 3;
#pragma unroll
    for (int j = 0; j < MT / 8; j++) {
      int c = j * 8 + 2 * cq;
      os[c * P + r] = __float2bfloat16_rn(d[4 * j]);
      os[(c + 1) * P + r] = __float2bfloat16_rn(d[4 * j + 1]);
      os[c * P + r + 8] = __float2bfloat16_rn(d[4 * j + 2]);
      os[(c + 1) * P + r + 8] = __float2bfloat16_rn(d[4 * j + 3]);
    }
  }
  asm volatile("bar.sync %0, 128;" ::"r"(2 + wg) : "memory"); /* per warpgroup (barrier 2 + wg): its own staging */
  const int f0 = wt * T::BN + wg * 64;
  for (int idx = tid & 127; idx < MT * 8; idx += 128) {
    int c = idx >> 3, ch = idx & 7, row = rt * MT + c, f = f0 + ch * 8;
    if (row >= m || f >= O) continue;
    if (f + 8 <= O) *(uint4 *)(out + (size_t)row * O + f) = *(const uint4 *)(os + c * P + ch * 8);
    else
      for (int e = 0; f + e < O; e++) out[(size_t)row * O + f + e] = os[c * P + ch * 8 + e];
  }
}

static PFN_cuTensorMapEncodeTiled_v12000 encode_fn(void) {
  void *p = NULL;
  cudaDriverEntryPointQueryResult q;
  CK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &q));
  if (q != cudaDriverEntryPointSuccess) { fprintf(stderr, "no cuTensorMapEncodeTiled\n"); exit(1); }
  return (PFN_cuTensorMapEncodeTiled_v12000)p;
}
static void make_map(CUtensorMap *mp, const void *p, int64_t rows, int64_t I, int box) {
  static PFN_cuTensorMapEncodeTiled_v12000 enc;
  if (!enc) enc = encode_fn();
  cuuint64_t dim[2] = {(cuuint64_t)I, (cuuint64_t)rows}, stride[1] = {(cuuint64_t)I * 2};
  cuuint32_t boxd[2] = {64, (cuuint32_t)box}, es[2] = {1, 1};
  if (enc(mp, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, (void *)p, dim, stride, boxd, es, CU_TENSOR_MAP_INTERLEAVE_NONE,
          CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) != CUDA_SUCCESS) {
    fprintf(stderr, "cuTensorMapEncodeTiled failed (rows %lld, box %d)\n", (long long)rows, box);
    exit(1);
  }
}

template <int MT, int C, int OCC, bool PIPE> static void hg_run(const __nv_bfloat16 *w, const __nv_bfloat16 *x, __nv_bfloat16 *out, int m, int O, int I) {
  typedef hg_cfg<MT, C, OCC> T;
  static bool attr;
  if (I != 4096 && I != 14336) { fprintf(stderr, "cuda_hgemm: K %d not instantiated\n", I); exit(1); }
  auto k = I == 4096 ? hg_kernel<MT, C, OCC, 64, PIPE> : hg_kernel<MT, C, OCC, 224, PIPE>;
  if (!attr) {
    CK(cudaFuncSetAttribute(hg_kernel<MT, C, OCC, 64, PIPE>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)T::smem));
    CK(cudaFuncSetAttribute(hg_kernel<MT, C, OCC, 224, PIPE>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)T::smem));
    attr = true;
  }
  hg_maps tm;
  make_map(&tm.w, w, O, I, T::BN);
  make_map(&tm.x, x, m, I, MT);
  dim3 grid((unsigned)((m + MT - 1) / MT), (unsigned)((O + T::BN - 1) / T::BN));
  k<<<grid, T::THREADS, T::smem>>>(tm, out, m, O, I);
  CK(cudaGetLastError());
}

struct variant {
  const char *name;
  int mt, c, opt; /* opt: run only when HG_VARIANTS names it */
  void (*run)(const __nv_bfloat16 *, const __nv_bfloat16 *, __nv_bfloat16 *, int, int, int);
};
/* name: MT x C, "o2" two blocks per SM, "p" the pipelined consumer (one stage's MMAs left in flight: wrong sums, see
 * the header) */
static const variant VARS[] = {
    {"64x1", 64, 1, 0, hg_run<64, 1, 1, false>},      {"64x1o2", 64, 1, 0, hg_run<64, 1, 2, false>},
    {"64x2", 64, 2, 0, hg_run<64, 2, 1, false>},      {"128x1", 128, 1, 0, hg_run<128, 1, 1, false>},
    {"128x1o2", 128, 1, 0, hg_run<128, 1, 2, false>}, {"128x2", 128, 2, 0, hg_run<128, 2, 1, false>},
    {"256x1", 256, 1, 0, hg_run<256, 1, 1, false>},   {"256x2", 256, 2, 0, hg_run<256, 2, 1, false>},
    {"64x1p", 64, 1, 1, hg_run<64, 1, 1, true>},
};
#define NVARS ((int)(sizeof VARS / sizeof VARS[0]))
/* whether variant v runs: named in the comma-separated list, or (no list) not optional */
static bool runs(const char *list, const variant &v) {
  if (!list) return !v.opt;
  size_t n = strlen(v.name);
  for (const char *q = list; (q = strstr(q, v.name)) != NULL; q += n)
    if ((q == list || q[-1] == ',') && (q[n] == ',' || q[n] == 0)) return true;
  return false;
}

static void lt_run(plan &p, const __nv_bfloat16 *w, const __nv_bfloat16 *x, __nv_bfloat16 *out) {
  float alpha = 1.f, beta = 0.f;
  LK(cublasLtMatmul(lt, p.desc, &alpha, w, p.la, x, p.lb, &beta, out, p.lc, out, p.lc, &p.algo, ws, wsz, 0));
}

int main(int argc, char **argv) {
  int ms[16];
  const int nm = parse_rows(argc > 1 ? argv[1] : "32,64,128,192,256", ms, 16, "cuda_hgemm");
  const char *only = getenv("HG_VARIANTS"); /* e.g. "64x1,128x2": only these */
  int mmax = 0;
  for (int i = 0; i < nm; i++) mmax = ms[i] > mmax ? ms[i] : mmax;
  const product_shape *shapes = PRODUCTS_8B;
  lt_init();
  __nv_bfloat16 *x, *out, *ref;
  gemm_buffers(mmax, 1e-2f, &x, &out, &ref);
  printf("%-8s %4s | %-14s", "product", "m", "cuBLASLt us");
  for (int v = 0; v < NVARS; v++)
    if (runs(only, VARS[v])) printf(" | %-14s", VARS[v].name);
  printf("   (us, then = if bitwise cuBLASLt's, Dn/uu if n outputs differ by at most u bf16 ulps; floor = weight bytes / 3.08 TB/s)\n");
  int ndiff_total = 0;
  for (int si = 0; si < 4; si++) {
    int64_t O = shapes[si].O, I = shapes[si].I;
    size_t wbytes = (size_t)O * I * 2;
    int ncopy = (int)((200u << 20) / wbytes) + 1;
    if (ncopy > 8) ncopy = 8;
    __nv_bfloat16 *w[8];
    for (int c = 0; c < ncopy; c++) {
      CK(cudaMalloc(&w[c], wbytes));
      fill<<<1024, 256>>>(w[c], (size_t)O * I, 99u, 5e-3f); /* the same values in every copy */
    }
    for (int mi = 0; mi < nm; mi++) {
      int m = ms[mi];
      size_t ob = (size_t)m * O * 2;
      plan p = make_plan(m, O, I, 1);
      if (!p.ok) { printf("%-8s %4d | no cuBLASLt algorithm\n", shapes[si].name, m); free_plan(p); continue; }
      uint16_t *href = (uint16_t *)malloc(ob), *h = (uint16_t *)malloc(ob);
      float t = time_us(3, 20, [&](int it) { lt_run(p, w[it % ncopy], x, ref); });
      CK(cudaMemcpy(href, ref, ob, cudaMemcpyDeviceToHost));
      printf("%-8s %4d | %7.1f f%5.1f", shapes[si].name, m, t, wbytes / 3.08e6);
      for (int v = 0; v < NVARS; v++) {
        if (!runs(only, VARS[v])) continue;
        CK(cudaMemset(out, 0xff, ob));
        t = time_us(3, 20, [&](int it) { VARS[v].run(w[it % ncopy], x, out, m, (int)O, (int)I); });
        CK(cudaMemcpy(h, out, ob, cudaMemcpyDeviceToHost));
        size_t nd = 0;
        int maxu = 0;
        for (size_t i = 0; i < (size_t)m * O; i++)
          if (h[i] != href[i]) {
            nd++;
            int a = (int16_t)h[i] < 0 ? -(h[i] & 0x7fff) : h[i], b = (int16_t)href[i] < 0 ? -(href[i] & 0x7fff) : href[i];
            int u = a > b ? a - b : b - a;
            maxu = u > maxu ? u : maxu;
          }
        ndiff_total += nd != 0;
        char cell[48];
        if (nd) snprintf(cell, sizeof cell, "%7.1f D%zu/%du", t, nd, maxu);
        else snprintf(cell, sizeof cell, "%7.1f =", t);
        printf(" | %-14s", cell);
      }
      printf("\n");
      fflush(stdout);
      free_plan(p);
      free(href), free(h);
    }
    for (int c = 0; c < ncopy; c++) cudaFree(w[c]);
  }
  printf("%s\n", ndiff_total ? "SOME VARIANTS DIFFER FROM cuBLASLt" : "every variant bitwise cuBLASLt's");
  cudaFree(x), cudaFree(out), cudaFree(ref), cudaFree(ws);
  cublasLtDestroy(lt);
  return ndiff_total ? 1 : 0;
}
