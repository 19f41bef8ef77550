/* bench/cuda_mma_order.cu: does a plain mma.sync kernel that sums K in order, 16 at a time, into one f32
 * accumulator give the same bits as cuBLASLt's algorithms without split-K? If it does, a kernel of our own can
 * take the small row counts in the batch-invariant mode and still agree with cuBLASLt at the large ones.
 *
 * For each Llama-3-8B product shape and several row counts m: cuBLASLt (the heuristic's first algorithm without
 * split-K at that m, bf16 and f32 outputs) against two naive mma.sync kernels (W as the A operand, and x as the A
 * operand), counting outputs whose bits differ; and cuBLASLt at m against cuBLASLt at 4,096 rows. Random bf16
 * data, never zero. Prints one line per (shape, m). */
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cuda_bench_common.cuh"

#define CB(x) do { cublasStatus_t s = (x); if (s != CUBLAS_STATUS_SUCCESS) { fprintf(stderr, "%s:%d: %s: %d\n", __FILE__, __LINE__, #x, (int)s); exit(1); } } while (0)

__device__ __forceinline__ void mma16816(float *c, const uint32_t *a, uint32_t b0, uint32_t b1) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
               "{%0,%1,%2,%3};"
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ uint32_t ld2(const __nv_bfloat16 *p, bool ok) { return ok ? *(const uint32_t *)p : 0u; }

/* out[r][o] (f32) = sum_k A-side . B-side; WA: A = W rows (16 outputs), B = x rows (8); else A = x rows, B = W */
template <bool WA>
__global__ void naive_kernel(const __nv_bfloat16 *W, const __nv_bfloat16 *X, float *out, int m, int O, int I) {
  int lane = threadIdx.x, g = lane >> 2, q = lane & 3;
  int a0 = blockIdx.x * 16, b0 = blockIdx.y * 8; /* WA: a = outputs, b = rows; else a = rows, b = outputs */
  const __nv_bfloat16 *A = WA ? W : X, *B = WA ? X : W;
  int na = WA ? O : m, nb = WA ? m : O;
  float c[4] = {0.f, 0.f, 0.f, 0.f};
  for (int k = 0; k < I; k += 16) {
    uint32_t a[4];
    a[0] = ld2(A + (size_t)(a0 + g) * I + k + 2 * q, a0 + g < na);
    a[1] = ld2(A + (size_t)(a0 + g + 8) * I + k + 2 * q, a0 + g + 8 < na);
    a[2] = ld2(A + (size_t)(a0 + g) * I + k + 8 + 2 * q, a0 + g < na);
    a[3] = ld2(A + (size_t)(a0 + g + 8) * I + k + 8 + 2 * q, a0 + g + 8 < na);
    uint32_t b_0 = ld2(B + (size_t)(b0 + g) * I + k + 2 * q, b0 + g < nb);
    uint32_t b_1 = ld2(B + (size_t)(b0 + g) * I + k + 8 + 2 * q, b0 + g < nb);
    mma16816(c, a, b_0, b_1);
  }
  for (int i = 0; i < 4; i++) {
    int ai = a0 + g + (i >= 2 ? 8 : 0), bi = b0 + 2 * q + (i & 1);
    if (ai >= na || bi >= nb) continue;
    int r = WA ? bi : ai, o = WA ? ai : bi;
    out[(size_t)r * O + o] = c[i];
  }
}
__global__ void fill_nz(__nv_bfloat16 *p, size_t n, unsigned seed, float scale) { /* never 0 */
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    unsigned h = (unsigned)i * 2654435761u ^ seed;
    h ^= h >> 13, h *= 0x5bd1e995u, h ^= h >> 15;
    float v = ((h & 0xffff) / 32768.f - 1.f) * scale;
    p[i] = __float2bfloat16(v == 0.f ? scale * 1e-3f : v);
  }
}
__global__ void to_bf16(const float *s, __nv_bfloat16 *d, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    d[i] = __float2bfloat16(s[i]);
}

static cublasLtHandle_t lt;
static void *ws;
static size_t wss = 64 << 20;

/* out (odt) [m, O] = x [m, I] W[O, I]^T with the first no-split algorithm the heuristic gives at m */
static void lt_run(const __nv_bfloat16 *W, const __nv_bfloat16 *X, void *out, bool f32, int m, int O, int I, int *tile) {
  cublasLtMatmulDesc_t d;
  CB(cublasLtMatmulDescCreate(&d, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  CB(cublasLtMatmulDescSetAttribute(d, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
  CB(cublasLtMatmulDescSetAttribute(d, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
  cublasLtMatrixLayout_t a, b, c;
  CB(cublasLtMatrixLayoutCreate(&a, CUDA_R_16BF, I, O, I));
  CB(cublasLtMatrixLayoutCreate(&b, CUDA_R_16BF, I, m, I));
  CB(cublasLtMatrixLayoutCreate(&c, f32 ? CUDA_R_32F : CUDA_R_16BF, O, m, O));
  cublasLtMatmulPreference_t pref;
  CB(cublasLtMatmulPreferenceCreate(&pref));
  CB(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wss, sizeof wss));
  cublasLtMatmulHeuristicResult_t rs[16];
  int n = 0, pick = -1;
  CB(cublasLtMatmulAlgoGetHeuristic(lt, d, a, b, c, c, pref, 16, rs, &n));
  for (int k = 0; k < n && pick < 0; k++) {
    uint32_t split = 0, red = 0;
    size_t wr;
    cublasLtMatmulAlgoConfigGetAttribute(&rs[k].algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &split, sizeof split, &wr);
    cublasLtMatmulAlgoConfigGetAttribute(&rs[k].algo, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME, &red, sizeof red, &wr);
    if (rs[k].state == CUBLAS_STATUS_SUCCESS && split <= 1 && red == 0) pick = k;
  }
  if (pick < 0) { printf("  no no-split algorithm at m=%d\n", m); exit(1); }
  int t = 0;
  size_t wr;
  cublasLtMatmulAlgoConfigGetAttribute(&rs[pick].algo, CUBLASLT_ALGO_CONFIG_TILE_ID, &t, sizeof t, &wr);
  *tile = t;
  float al = 1.f, be = 0.f;
  CB(cublasLtMatmul(lt, d, &al, W, a, X, b, &be, out, c, out, c, &rs[pick].algo, ws, wss, 0));
  cublasLtMatmulPreferenceDestroy(pref);
  cublasLtMatrixLayoutDestroy(a), cublasLtMatrixLayoutDestroy(b), cublasLtMatrixLayoutDestroy(c);
  cublasLtMatmulDescDestroy(d);
}

static long long diff_bits(const void *a, const void *b, size_t n, size_t esz) {
  char *ha = (char *)malloc(n * esz), *hb = (char *)malloc(n * esz);
  CK(cudaMemcpy(ha, a, n * esz, cudaMemcpyDeviceToHost));
  CK(cudaMemcpy(hb, b, n * esz, cudaMemcpyDeviceToHost));
  long long d = 0;
  for (size_t i = 0; i < n; i++) d += memcmp(ha + i * esz, hb + i * esz, esz) != 0;
  free(ha), free(hb);
  return d;
}

int main() {
  CB(cublasLtCreate(&lt));
  CK(cudaMalloc(&ws, wss));
  static const int shapes[][2] = {{4096, 6144}, {4096, 4096}, {4096, 28672}, {14336, 4096}, {4096, 333}};
  static const int ms[] = {1, 16, 17, 64, 256, 1100, 4096};
  const int MMAX = 4096;
  printf("%-14s %5s %6s | %12s %12s | %12s %12s | %12s %12s\n", "I x O", "m", "tile", "f32 vs W-A", "f32 vs x-A",
         "bf16 vs W-A", "bf16 vs x-A", "f32 vs 4096", "bf16 vs 4096");
  for (int si = 0; si < 5; si++) {
    int I = shapes[si][0], O = shapes[si][1];
    __nv_bfloat16 *W, *X, *ob, *ob_ref, *nb;
    float *of, *of_ref, *nf;
    CK(cudaMalloc(&W, (size_t)O * I * 2));
    CK(cudaMalloc(&X, (size_t)MMAX * I * 2));
    CK(cudaMalloc(&ob, (size_t)MMAX * O * 2));
    CK(cudaMalloc(&ob_ref, (size_t)MMAX * O * 2));
    CK(cudaMalloc(&nb, (size_t)MMAX * O * 2));
    CK(cudaMalloc(&of, (size_t)MMAX * O * 4));
    CK(cudaMalloc(&of_ref, (size_t)MMAX * O * 4));
    CK(cudaMalloc(&nf, (size_t)MMAX * O * 4));
    fill_nz<<<1024, 256>>>(W, (size_t)O * I, 7 + si, 0.02f);
    fill_nz<<<1024, 256>>>(X, (size_t)MMAX * I, 99 + si, 1.f);
    int t;
    lt_run(W, X, of_ref, true, MMAX, O, I, &t);
    lt_run(W, X, ob_ref, false, MMAX, O, I, &t);
    for (int mi = 0; mi < 7; mi++) {
      int m = ms[mi];
      int tile;
      lt_run(W, X, of, true, m, O, I, &tile);
      lt_run(W, X, ob, false, m, O, I, &tile);
      long long d[6];
      for (int v = 0; v < 2; v++) {
        dim3 g = v == 0 ? dim3((O + 15) / 16, (m + 7) / 8) : dim3((m + 15) / 16, (O + 7) / 8);
        if (v == 0) naive_kernel<true><<<g, 32>>>(W, X, nf, m, O, I);
        else naive_kernel<false><<<g, 32>>>(W, X, nf, m, O, I);
        CK(cudaGetLastError());
        to_bf16<<<1024, 256>>>(nf, nb, (size_t)m * O);
        CK(cudaDeviceSynchronize());
        d[v] = diff_bits(of, nf, (size_t)m * O, 4);
        d[2 + v] = diff_bits(ob, nb, (size_t)m * O, 2);
      }
      d[4] = diff_bits(of, of_ref, (size_t)m * O, 4);
      d[5] = diff_bits(ob, ob_ref, (size_t)m * O, 2);
      char nm[32];
      snprintf(nm, sizeof nm, "%dx%d", I, O);
      printf("%-14s %5d %6d | %12lld %12lld | %12lld %12lld | %12lld %12lld   (of %lld)\n", nm, m, tile, d[0], d[1], d[2],
             d[3], d[4], d[5], (long long)m * O);
      fflush(stdout);
    }
    cudaFree(W), cudaFree(X), cudaFree(ob), cudaFree(ob_ref), cudaFree(nb), cudaFree(of), cudaFree(of_ref), cudaFree(nf);
  }
  return 0;
}
