/* bench/cuda_bench_common.cuh: what the CUDA bench programs share: checked CUDA and cuBLAS(Lt) calls (exit with
 * file, line and the call on failure) and a fill of bf16 buffers with a repeatable pseudo-random pattern. */
#ifndef IG_BENCH_CUDA_BENCH_COMMON_CUH
#define IG_BENCH_CUDA_BENCH_COMMON_CUH
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define CK(x) do { cudaError_t e = (x); if (e != cudaSuccess) { fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e)); exit(1); } } while (0)
#define LK(x) do { cublasStatus_t s = (x); if (s != CUBLAS_STATUS_SUCCESS) { fprintf(stderr, "%s:%d: %s: status %d\n", __FILE__, __LINE__, #x, (int)s); exit(1); } } while (0)

/* p[i] = scale * (an integer in -1000..1000 hashed from i and seed) */
static __global__ void fill(__nv_bfloat16 *p, size_t n, uint32_t seed, float scale) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    uint32_t h = (uint32_t)i * 2654435761u ^ seed;
    h ^= h >> 15, h *= 2246822519u, h ^= h >> 13;
    p[i] = __float2bfloat16(((int)(h % 2001) - 1000) * scale);
  }
}

#endif
