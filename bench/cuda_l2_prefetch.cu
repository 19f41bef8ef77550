/* bench/cuda_l2_prefetch.cu: does prefetching a weight into L2 while the GPU does little else make the product that
 * follows faster? (sixteenth session; the question behind IGNIS_CUDA_PREFETCH)
 *
 * For a [rows, cols] bf16 weight W (default 4096 x 4096, Llama-3-8B's o_proj): flush L2 (read 256 MB), then
 *   none:   spin S us on one block, then the consumer;
 *   bulk:   cp.async.bulk.prefetch.L2 of every row (the first segment of all rows first), spin S us, consumer;
 *   line:   prefetch.global.L2 per 128-byte line, spin, consumer;
 *   last:   bulk with an evict_last cache policy, spin, consumer;
 *   hot:    the consumer once, spin, the consumer again (W in L2 as far as it fits).
 * The consumer is either a plain read of W by 64 blocks (one 64-row tile each, as cuBLASLt's m = 1 kernel splits
 * o_proj) or cuBLASLt's own product y[1, rows] = x[1, cols] W^T. Times are event pairs around the consumer alone, the
 * median of 20 runs. Usage: cuda_l2_prefetch [rows cols spin_us] */
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <algorithm>
#include <vector>

#define CK(x)                                                                                                          \
  do {                                                                                                                 \
    cudaError_t e_ = (x);                                                                                              \
    if (e_ != cudaSuccess) {                                                                                           \
      fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, cudaGetErrorString(e_));                                      \
      exit(1);                                                                                                         \
    }                                                                                                                  \
  } while (0)

__global__ void fill(uint4 *p, size_t n, unsigned seed) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    unsigned h = (unsigned)i * 2654435761u ^ seed;
    /* bf16 values in [-0.03, 0.03]-ish: exponent bits fixed, mantissa random */
    unsigned a = 0x3c003c00u | (h & 0x007f007fu) | ((h & 0x80008000u));
    p[i] = make_uint4(a, a ^ 0x00550055u, a ^ 0x002a002au, a ^ 0x00110011u);
  }
}
__global__ void sink_read(const uint4 *p, size_t n, unsigned *out) {
  unsigned acc = 0;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    uint4 v = p[i];
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (acc == 0x12345678u) out[0] = acc;
}
/* one block per 64-row tile, reading its rows' K in order, 16 bytes per thread per load */
__global__ void tile_read(const uint4 *w, int rows, int cols16, unsigned *out) {
  unsigned acc = 0;
  int r0 = blockIdx.x * 64;
  for (int k = threadIdx.x; k < 64 * cols16; k += blockDim.x) {
    int r = r0 + k % 64, c = k / 64;
    if (r < rows) {
      uint4 v = w[(size_t)r * cols16 + c];
      acc ^= v.x ^ v.y ^ v.z ^ v.w;
    }
  }
  if (acc == 0x12345678u) out[0] = acc;
}
__global__ void spin(long long cycles) {
  long long t0 = clock64();
  while (clock64() - t0 < cycles) {
  }
}
#define SEG 2048
__global__ void pf_bulk(const char *w, int rows, long long rb, int last) {
  uint64_t pol;
  asm volatile("createpolicy.fractional.L2::evict_last.b64 %0, 1.0;" : "=l"(pol));
  int nseg = (int)((rb + SEG - 1) / SEG);
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < (long long)nseg * rows;
       i += (long long)gridDim.x * blockDim.x) {
    int seg = (int)(i / rows), r = (int)(i % rows);
    long long left = rb - (long long)seg * SEG;
    unsigned sz = (unsigned)(left < SEG ? left : SEG);
    const char *a = w + r * rb + (long long)seg * SEG;
    if (last)
      asm volatile("cp.async.bulk.prefetch.L2.global.L2::cache_hint [%0], %1, %2;" ::"l"(a), "r"(sz), "l"(pol) : "memory");
    else
      asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(a), "r"(sz) : "memory");
  }
}
__global__ void pf_line(const char *w, size_t bytes) {
  for (size_t i = (blockIdx.x * (size_t)blockDim.x + threadIdx.x) * 128; i < bytes; i += (size_t)gridDim.x * blockDim.x * 128)
    asm volatile("prefetch.global.L2 [%0];" ::"l"(w + i) : "memory");
}

int main(int argc, char **argv) {
  int rows = argc > 1 ? atoi(argv[1]) : 4096, cols = argc > 2 ? atoi(argv[2]) : 4096;
  double spin_us = argc > 3 ? atof(argv[3]) : 20;
  size_t wb = (size_t)rows * cols * 2, fb = 256u << 20;
  char *W, *F, *X, *Y;
  unsigned *sink;
  CK(cudaMalloc(&W, wb));
  CK(cudaMalloc(&F, fb));
  CK(cudaMalloc(&X, (size_t)cols * 2 * 16));
  CK(cudaMalloc(&Y, (size_t)rows * 2 * 16));
  CK(cudaMalloc(&sink, 4));
  fill<<<1024, 256>>>((uint4 *)W, wb / 16, 1);
  fill<<<1024, 256>>>((uint4 *)F, fb / 16, 2);
  fill<<<16, 256>>>((uint4 *)X, (size_t)cols * 2 * 16 / 16, 3);
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  int khz = 0;
  CK(cudaDeviceGetAttribute(&khz, cudaDevAttrClockRate, 0));
  long long cyc = (long long)(spin_us * khz / 1000.0);
  cublasLtHandle_t lt;
  cublasLtCreate(&lt);
  cublasLtMatmulDesc_t op;
  cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F);
  cublasOperation_t tA = CUBLAS_OP_T, tB = CUBLAS_OP_N;
  cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &tA, sizeof tA);
  cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tB, sizeof tB);
  cublasLtMatrixLayout_t la, lb, lc;
  cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, cols, rows, cols); /* W^T as col-major [cols, rows] transposed */
  cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, cols, 1, cols);
  cublasLtMatrixLayoutCreate(&lc, CUDA_R_16BF, rows, 1, rows);
  cublasLtMatmulPreference_t pref;
  cublasLtMatmulPreferenceCreate(&pref);
  size_t wsb = 32u << 20;
  void *ws;
  CK(cudaMalloc(&ws, wsb));
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsb, sizeof wsb);
  cublasLtMatmulHeuristicResult_t hr;
  int nres = 0;
  cublasLtMatmulAlgoGetHeuristic(lt, op, la, lb, lc, lc, pref, 1, &hr, &nres);
  if (!nres) {
    fprintf(stderr, "no cuBLASLt algorithm\n");
    return 1;
  }
  float one = 1, zero = 0;
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0), cudaEventCreate(&e1);
  const char *pfn[] = {"none", "bulk", "line", "last", "hot"};
  const char *con[] = {"tile_read", "cublasLt"};
  printf("W %d x %d (%.1f MB), spin %.1f us, L2 %d MB\n", rows, cols, wb / 1e6, spin_us, prop.l2CacheSize >> 20);
  printf("%-10s %-6s %10s %10s\n", "consumer", "pf", "us", "GB/s");
  for (int cs = 0; cs < 2; cs++)
    for (int pf = 0; pf < 5; pf++) {
      std::vector<float> t;
      for (int it = 0; it < 21; it++) {
        sink_read<<<528, 512>>>((const uint4 *)F, fb / 16, sink);
        if (pf == 1 || pf == 3) pf_bulk<<<64, 128>>>(W, rows, (long long)cols * 2, pf == 3);
        if (pf == 2) pf_line<<<132, 256>>>(W, wb);
        if (pf == 4) { /* hot: the consumer once before, so W is in L2 as far as it fits */
          if (cs == 0)
            tile_read<<<(rows + 63) / 64, 256>>>((const uint4 *)W, rows, cols / 8, sink);
          else
            cublasLtMatmul(lt, op, &one, W, la, X, lb, &zero, Y, lc, Y, lc, &hr.algo, ws, wsb, 0);
        }
        spin<<<1, 32>>>(cyc);
        CK(cudaEventRecord(e0));
        if (cs == 0)
          tile_read<<<(rows + 63) / 64, 256>>>((const uint4 *)W, rows, cols / 8, sink);
        else
          cublasLtMatmul(lt, op, &one, W, la, X, lb, &zero, Y, lc, Y, lc, &hr.algo, ws, wsb, 0);
        CK(cudaEventRecord(e1));
        CK(cudaEventSynchronize(e1));
        float ms;
        cudaEventElapsedTime(&ms, e0, e1);
        if (it) t.push_back(ms * 1000);
      }
      std::sort(t.begin(), t.end());
      float med = t[t.size() / 2];
      printf("%-10s %-6s %10.2f %10.0f\n", con[cs], pfn[pf], med, wb / (med * 1e3));
    }
  CK(cudaDeviceSynchronize());
  return 0;
}
