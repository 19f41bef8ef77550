/* bench/cuda_tma_read.cu: how fast can one block stream its weight tile into shared memory, by the way the skinny GEMM
 * reads it (2-D TMA boxes of 64 columns x 64 rows from the row-major [O, I] matrix, rows I * 2 bytes apart, 128-byte
 * swizzle) against one 1-D bulk copy of a 16 KB tile stored contiguously (a load-time re-layout), and against plain
 * 16-byte loads by every thread? The skinny GEMM tops out near 27-38 GB/s per block whatever its warps do (RESULTS,
 * seventh session); this separates the copy pattern from the kernel.
 *
 * Each block owns 64 weight rows (one GEMM tile) and walks K in stages of 128 columns (16 KB) through an 8-stage
 * ring: one thread issues the copies, every warp waits for the stage's mbarrier and reads one word of it, then the
 * block syncs and the stage is refilled (the skinny GEMM's pipeline without the mma.sync work). Blocks: one per tile
 * (q|k|v: 96, o/down: 64, gate/up: 448, lm_head: 2004). Prints us and GB/s per (pattern, shape); the data are
 * random bf16 (never all zero); each pattern prints a checksum of the words its warps read, so an all-zero read shows
 * (the 2-D boxes land swizzled, so the patterns read different words and their checksums differ). Times are event
 * pairs around one launch, so they include its start-up (a few us).
 *   cuda_tma_read [reps]     (on the GPU machine; build with the CUDA tree, sm_90a) */
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


#define BN 64          /* rows per tile */
#define BK 128         /* columns per stage: 256 bytes of each row, 16 KB per stage */
#define STAGES 8
#define NT 128         /* threads per block */
#define STAGE_BYTES (BN * BK * 2)

/* the backend's mbarrier and TMA helpers (they trap before sm_90); the 1-D bulk copy is this program's own */
__device__ __forceinline__ void bulk1d(void *dst, const void *src, unsigned bytes, uint64_t *b) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 900
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];"
               ::"r"((unsigned)__cvta_generic_to_shared(dst)), "l"(src), "r"(bytes),
               "r"((unsigned)__cvta_generic_to_shared(b)) : "memory");
#else
  __trap();
#endif
}

/* MODE 0: 2-D boxes from the row-major matrix; 1: one 1-D copy of the tile's contiguous 16 KB stage; 2: 16-byte
 * loads by every thread straight into registers (no shared memory) */
template <int MODE>
__global__ void __launch_bounds__(NT) stream_kernel(const __grid_constant__ CUtensorMap map, const __nv_bfloat16 *W,
                                                     const __nv_bfloat16 *Wt, int I, unsigned *sum) {
  extern __shared__ __align__(128) unsigned char raw[];
  unsigned char *sm = (unsigned char *)(((uintptr_t)raw + 1023) & ~(uintptr_t)1023);
  __shared__ __align__(8) uint64_t bar[STAGES];
  const int tile = blockIdx.x, tid = threadIdx.x, nk = I / BK;
  unsigned acc = 0;
  if (MODE == 2) {
    /* thread: 16-byte chunk tid % 16 of rows tid / 16 + 8 j, all of a stage's loads in flight at once */
    for (int kc = 0; kc < nk; kc++) {
      uint4 v[8];
#pragma unroll
      for (int j = 0; j < 8; j++)
        v[j] = __ldg((const uint4 *)(W + (size_t)(tile * BN + tid / 16 + 8 * j) * I + kc * BK + (tid % 16) * 8));
#pragma unroll
      for (int j = 0; j < 8; j++) acc += v[j].x ^ v[j].w;
    }
    atomicAdd(sum, acc);
    return;
  }
  if (tid == 0)
    for (int s = 0; s < STAGES; s++) mbar_init(&bar[s], 1);
  __syncthreads();
  auto issue = [&](int s, int kc) {
    mbar_expect(&bar[s], STAGE_BYTES);
    unsigned char *d = sm + (size_t)s * STAGE_BYTES;
    if (MODE == 0) {
      tma_load_2d(d, &map, kc * BK, tile * BN, &bar[s]);
      tma_load_2d(d + STAGE_BYTES / 2, &map, kc * BK + 64, tile * BN, &bar[s]);
    } else {
      bulk1d(d, Wt + ((size_t)tile * nk + kc) * (BN * BK), STAGE_BYTES, &bar[s]);
    }
  };
  if (tid == 0)
    for (int s = 0; s < STAGES && s < nk; s++) issue(s, s);
  for (int it = 0; it < nk; it++) {
    const int s = it % STAGES;
    mbar_wait(&bar[s], (unsigned)(it / STAGES) & 1u);
    acc += ((const unsigned *)(sm + (size_t)s * STAGE_BYTES))[tid * 32 % (STAGE_BYTES / 4)];
    __syncthreads();
    if (tid == 0 && it + STAGES < nk) {
      fence_proxy_async();
      issue(s, it + STAGES);
    }
  }
  atomicAdd(sum, acc);
}

/* random bf16 in [-1, 1) from a hash of the index: never all zero */
__global__ void fill_kernel(__nv_bfloat16 *w, size_t n, uint32_t seed) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    uint32_t h = (uint32_t)i * 2654435761u ^ seed;
    h ^= h >> 15, h *= 2246822519u, h ^= h >> 13;
    w[i] = __float2bfloat16((float)(h & 0xffff) / 32768.f - 1.f);
  }
}
/* the same tiles, each (tile, stage) block of 64 rows x 128 columns stored contiguously (row-major inside) */
__global__ void tile_kernel(__nv_bfloat16 *wt, const __nv_bfloat16 *w, int O, int I) {
  size_t n = (size_t)O * I;
  int nk = I / BK;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    size_t r = i / I, c = i % I;
    size_t t = r / BN, rr = r % BN, kc = c / BK, cc = c % BK;
    wt[((t * nk + kc) * BN + rr) * BK + cc] = w[i];
  }
}

static PFN_cuTensorMapEncodeTiled_v12000 encode_fn(void) {
  void *p = NULL;
  cudaDriverEntryPointQueryResult q;
  if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &q) != cudaSuccess ||
      q != cudaDriverEntryPointSuccess) {
    fprintf(stderr, "cuda_tma_read: no cuTensorMapEncodeTiled\n");
    exit(1);
  }
  return (PFN_cuTensorMapEncodeTiled_v12000)p;
}

int main(int argc, char **argv) {
  int reps = argc > 1 ? atoi(argv[1]) : 20;
  if (reps < 1 || reps > 10000) {
    fprintf(stderr, "usage: cuda_tma_read [reps 1..10000]\n");
    return 2;
  }
  static const struct { const char *name; int O, I; } shapes[] = {
      {"q|k|v", 6144, 4096}, {"o", 4096, 4096}, {"down", 4096, 14336}, {"gate|up", 28672, 4096}, {"lm_head", 128256, 4096}};
  PFN_cuTensorMapEncodeTiled_v12000 enc = encode_fn();
  size_t smem = (size_t)STAGES * STAGE_BYTES + 1024;
  CK(cudaFuncSetAttribute(stream_kernel<0>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
  CK(cudaFuncSetAttribute(stream_kernel<1>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
  unsigned *sum;
  CK(cudaMalloc(&sum, sizeof(unsigned)));
  void *flush; /* written before every timed run, so the products that fit in L2 (50 MB) are read from HBM */
  const size_t flush_bytes = (size_t)128 << 20;
  CK(cudaMalloc(&flush, flush_bytes));
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  printf("%-9s %-8s %7s %9s %9s %10s %10s\n", "pattern", "product", "blocks", "us", "TB/s", "GB/s/blk", "checksum");
  for (int si = 0; si < 5; si++) {
    int O = shapes[si].O, I = shapes[si].I;
    size_t n = (size_t)O * I;
    __nv_bfloat16 *w, *wt;
    CK(cudaMalloc(&w, n * 2));
    CK(cudaMalloc(&wt, n * 2));
    fill_kernel<<<1024, 256>>>(w, n, 0x9e3779b9u + si);
    tile_kernel<<<1024, 256>>>(wt, w, O, I);
    CK(cudaGetLastError());
    CUtensorMap map;
    cuuint64_t dim[2] = {(cuuint64_t)I, (cuuint64_t)O}, stride[1] = {(cuuint64_t)I * 2};
    cuuint32_t box[2] = {64, BN}, es[2] = {1, 1};
    if (enc(&map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, w, dim, stride, box, es, CU_TENSOR_MAP_INTERLEAVE_NONE,
            CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) != CUDA_SUCCESS) {
      fprintf(stderr, "cuda_tma_read: tensor map for %s failed\n", shapes[si].name);
      return 1;
    }
    int blocks = O / BN;
    for (int mode = 0; mode < 3; mode++) {
      unsigned cs = 0;
      float best = 1e30f;
      for (int r = 0; r < reps + 2; r++) {
        CK(cudaMemset(sum, 0, sizeof(unsigned)));
        CK(cudaMemset(flush, r & 0xff, flush_bytes));
        CK(cudaEventRecord(e0));
        if (mode == 0) stream_kernel<0><<<blocks, NT, smem>>>(map, w, wt, I, sum);
        else if (mode == 1) stream_kernel<1><<<blocks, NT, smem>>>(map, w, wt, I, sum);
        else stream_kernel<2><<<blocks, NT>>>(map, w, wt, I, sum);
        CK(cudaEventRecord(e1));
        CK(cudaEventSynchronize(e1));
        CK(cudaGetLastError());
        float ms = 0;
        CK(cudaEventElapsedTime(&ms, e0, e1));
        if (r >= 2 && ms < best) best = ms;
        CK(cudaMemcpy(&cs, sum, sizeof cs, cudaMemcpyDeviceToHost));
      }
      double us = best * 1e3, tbs = n * 2 / (us * 1e-6) / 1e12;
      static const char *pat[] = {"tma-2d", "bulk-1d", "ld.16B"};
      /* the 2-D and 1-D patterns read different words of each stage (the swizzle), so only ld.16B's checksum is
       * comparable across runs; each is printed so that an all-zero read shows */
      printf("%-9s %-8s %7d %9.1f %9.2f %10.1f %10u\n", pat[mode], shapes[si].name, blocks, us, tbs, tbs * 1e3 / blocks, cs);
    }
    CK(cudaFree(w));
    CK(cudaFree(wt));
  }
  printf("(best of %d; one block per 64-row tile, 8 stages of 16 KB; L2 flushed before each run)\n", reps);
  CK(cudaFree(flush));
  CK(cudaFree(sum));
  return 0;
}
