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

/* A comma-separated list of row counts (1..4096) into ms (at most max); their count, or exits 2 naming `prog`. */
static int parse_rows(const char *list, int *ms, int max, const char *prog) {
  int nm = 0;
  for (const char *q = list; *q && nm < max;) {
    char *end;
    long m = strtol(q, &end, 10);
    if (end == q || m < 1 || m > 8192) {
      fprintf(stderr, "%s: rows must be 1..8192, got '%s'\n", prog, list);
      exit(2);
    }
    ms[nm++] = (int)m;
    q = *end == ',' ? end + 1 : end;
  }
  return nm;
}

/* The mean time in microseconds of `timed` calls f(i) after `warm` untimed ones (i counts all of them), by a pair of
 * events on the default stream. */
template <class F> static float time_us(int warm, int timed, F f) {
  static cudaEvent_t e0, e1;
  if (!e0) {
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
  }
  for (int i = 0; i < warm + timed; i++) {
    if (i == warm) CK(cudaEventRecord(e0));
    f(i);
  }
  CK(cudaEventRecord(e1));
  CK(cudaEventSynchronize(e1));
  float ms = 0;
  CK(cudaEventElapsedTime(&ms, e0, e1));
  return ms * 1e3f / (float)timed;
}

/* The Llama-3-8B product benches' buffers for up to `rows` rows: x [rows, 14336] filled (scale), out and ref
 * [rows, 28672]. */
static void gemm_buffers(int rows, float scale, __nv_bfloat16 **x, __nv_bfloat16 **out, __nv_bfloat16 **ref) {
  CK(cudaMalloc(x, (size_t)rows * 14336 * 2));
  CK(cudaMalloc(out, (size_t)rows * 28672 * 2));
  CK(cudaMalloc(ref, (size_t)rows * 28672 * 2));
  fill<<<1024, 256>>>(*x, (size_t)rows * 14336, 7u, scale);
}

#endif
