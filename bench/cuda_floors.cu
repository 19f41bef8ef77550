/* bench/cuda_floors.cu: the two ceilings the CUDA backend's numbers are compared with, measured in the same
 * run: HBM read bandwidth (a large read-only kernel, 16-byte loads, bytes read / time) and the bf16 GEMM rate of
 * cuBLASLt at 8192^3 (random data, f32 accumulate). Median of 20 timed runs after warm-up, CUDA events. */
#include <algorithm>
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <vector>
#include "cuda_bench_common.cuh"

#define CB(x) do { cublasStatus_t s = (x); if (s != CUBLAS_STATUS_SUCCESS) { fprintf(stderr, "%s:%d: %s: %d\n", __FILE__, __LINE__, #x, (int)s); exit(1); } } while (0)

/* Each thread reads 16-byte chunks in a grid-stride loop, 4 in flight, and folds them into one word written
 * only if it is impossible-valued (keeps the loads alive without a real store stream). */
__global__ void read_kernel(const uint4 *__restrict__ p, size_t n, unsigned *sink) {
  unsigned acc = 0;
  size_t stride = (size_t)gridDim.x * blockDim.x;
  size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
  for (; i + 3 * stride < n; i += 4 * stride) {
    uint4 a = __ldcs(p + i), b = __ldcs(p + i + stride), c = __ldcs(p + i + 2 * stride), d = __ldcs(p + i + 3 * stride);
    acc ^= a.x ^ a.y ^ a.z ^ a.w ^ b.x ^ b.y ^ b.z ^ b.w ^ c.x ^ c.y ^ c.z ^ c.w ^ d.x ^ d.y ^ d.z ^ d.w;
  }
  for (; i < n; i += stride) {
    uint4 a = __ldcs(p + i);
    acc ^= a.x ^ a.y ^ a.z ^ a.w;
  }
  if (acc == 0x9e3779b9u) *sink = acc;
}
__global__ void fill_kernel(__nv_bfloat16 *p, size_t n, unsigned seed) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    unsigned h = (unsigned)i * 2654435761u ^ seed;
    h ^= h >> 13, h *= 0x5bd1e995u, h ^= h >> 15;
    p[i] = __float2bfloat16(((h & 0xffff) / 32768.f - 1.f) * 0.5f);
  }
}

static float median(std::vector<float> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int main() {
  cudaDeviceProp pr;
  CK(cudaGetDeviceProperties(&pr, 0));
  printf("device: %s, %d SMs, L2 %d MB\n", pr.name, pr.multiProcessorCount, pr.l2CacheSize >> 20);
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  /* read bandwidth over 4 GiB (far over L2) */
  size_t bytes = (size_t)4 << 30;
  void *buf;
  unsigned *sink;
  CK(cudaMalloc(&buf, bytes));
  CK(cudaMalloc(&sink, 4));
  fill_kernel<<<4096, 256>>>((__nv_bfloat16 *)buf, bytes / 2, 1);
  CK(cudaGetLastError());
  std::vector<float> ts;
  int grid = pr.multiProcessorCount * 8;
  for (int r = 0; r < 23; r++) {
    CK(cudaEventRecord(e0));
    read_kernel<<<grid, 512>>>((const uint4 *)buf, bytes / 16, sink);
    CK(cudaEventRecord(e1));
    CK(cudaEventSynchronize(e1));
    float ms;
    CK(cudaEventElapsedTime(&ms, e0, e1));
    if (r >= 3) ts.push_back(ms);
  }
  CK(cudaGetLastError());
  float bw = bytes / (median(ts) * 1e-3) / 1e9;
  printf("floor read_bw_GBps %.0f\n", bw);
  CK(cudaFree(buf));
  /* GEMM 8192^3 bf16 -> bf16, f32 accumulate */
  int N = 8192;
  __nv_bfloat16 *A, *B, *C;
  CK(cudaMalloc(&A, (size_t)N * N * 2));
  CK(cudaMalloc(&B, (size_t)N * N * 2));
  CK(cudaMalloc(&C, (size_t)N * N * 2));
  fill_kernel<<<4096, 256>>>(A, (size_t)N * N, 2);
  fill_kernel<<<4096, 256>>>(B, (size_t)N * N, 3);
  cublasLtHandle_t lt;
  CB(cublasLtCreate(&lt));
  cublasLtMatmulDesc_t desc;
  CB(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  CB(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
  CB(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
  cublasLtMatrixLayout_t la, lb, lc;
  CB(cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, N, N, N));
  CB(cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, N, N, N));
  CB(cublasLtMatrixLayoutCreate(&lc, CUDA_R_16BF, N, N, N));
  size_t ws_size = 32 << 20;
  void *ws;
  CK(cudaMalloc(&ws, ws_size));
  cublasLtMatmulPreference_t pref;
  CB(cublasLtMatmulPreferenceCreate(&pref));
  CB(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_size, sizeof ws_size));
  cublasLtMatmulHeuristicResult_t res;
  int nres;
  CB(cublasLtMatmulAlgoGetHeuristic(lt, desc, la, lb, lc, lc, pref, 1, &res, &nres));
  float alpha = 1, beta = 0;
  ts.clear();
  for (int r = 0; r < 23; r++) {
    CK(cudaEventRecord(e0));
    CB(cublasLtMatmul(lt, desc, &alpha, A, la, B, lb, &beta, C, lc, C, lc, &res.algo, ws, ws_size, 0));
    CK(cudaEventRecord(e1));
    CK(cudaEventSynchronize(e1));
    float ms;
    CK(cudaEventElapsedTime(&ms, e0, e1));
    if (r >= 3) ts.push_back(ms);
  }
  double tf = 2.0 * N * N * (double)N / (median(ts) * 1e-3) / 1e12;
  printf("floor gemm_bf16_8192_TFLOPs %.0f\n", tf);
  return 0;
}
