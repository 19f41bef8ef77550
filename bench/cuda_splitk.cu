/* bench/cuda_splitk.cu: would a fixed K split, the same at every row count, make the Llama-3-8B decode products
 * faster while keeping a row's bits independent of the batch? For each product (q|k|v, o, gate|up as one buffer,
 * down) and row count m:
 *  - S = 1: the heuristic's first algorithm without split-K (what the batch-invariant mode runs today);
 *  - S = 2, 3, 4: the K range cut into S equal slices (multiples of 128), each slice one GEMM without split-K into
 *    an f32 partial (one strided-batched cuBLASLt call), then a kernel adding the S partials in slice order and
 *    rounding to bf16;
 *  - "heur": the heuristic's own first pick, split-K allowed (fast mode; its bits may change with m).
 * Each is timed (mean of 10 calls after 2, rotating over weight copies so that every call reads HBM), and for
 * S > 1 the first rows are compared bitwise with the same rows computed at the largest m of the list (a row's
 * result must not depend on m). Random bf16 weights and rows.
 *   cuda_splitk [m,m,...]     (on the GPU machine; default 1,16,64,128,256,4096) */
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cuda_bench_common.cuh"
#include "cuda_lt_plan.cuh"


/* out[i] = bf16(p[0][i] + p[1][i] + ... ) in slice order; 4 elements per thread */
static __global__ void reduce_parts(__nv_bfloat16 *out, const float *p, size_t n, int S) {
  size_t i = (blockIdx.x * (size_t)blockDim.x + threadIdx.x) * 4;
  if (i >= n) return;
  float4 a = *(const float4 *)(p + i);
  for (int s = 1; s < S; s++) {
    float4 b = *(const float4 *)(p + (size_t)s * n + i);
    a.x += b.x, a.y += b.y, a.z += b.z, a.w += b.w;
  }
  __nv_bfloat162 lo = __floats2bfloat162_rn(a.x, a.y), hi = __floats2bfloat162_rn(a.z, a.w);
  *(__nv_bfloat162 *)(out + i) = lo;
  *(__nv_bfloat162 *)(out + i + 2) = hi;
}

/* one product: bf16 out[m, O] */
static void run_one(plan &p, int S, const __nv_bfloat16 *w, const __nv_bfloat16 *x, __nv_bfloat16 *out, float *part,
                    int64_t m, int64_t O) {
  float alpha = 1.f, beta = 0.f;
  if (S > 1) {
    LK(cublasLtMatmul(lt, p.desc, &alpha, w, p.la, x, p.lb, &beta, part, p.lc, part, p.lc, &p.algo, ws, wsz, 0));
    size_t n = (size_t)m * O;
    reduce_parts<<<(unsigned)((n / 4 + 255) / 256), 256>>>(out, part, n, S);
  } else {
    LK(cublasLtMatmul(lt, p.desc, &alpha, w, p.la, x, p.lb, &beta, out, p.lc, out, p.lc, &p.algo, ws, wsz, 0));
  }
}

int main(int argc, char **argv) {
  int ms[16];
  const int nm = parse_rows(argc > 1 ? argv[1] : "1,16,64,128,256,4096", ms, 16, "cuda_splitk");
  int mmax = 0;
  for (int i = 0; i < nm; i++) mmax = ms[i] > mmax ? ms[i] : mmax;
  const product_shape *shapes = PRODUCTS_8B;
  lt_init();
  __nv_bfloat16 *x, *out, *ref;
  float *part;
  gemm_buffers(mmax, 1e-2f, &x, &out, &ref);
  CK(cudaMalloc(&part, (size_t)mmax * 28672 * 4 * 4));
  const int SL[] = {1, 2, 3, 4, 0};
  printf("%-8s %5s | %-22s | %-22s | %-22s | %-22s | %-22s\n", "product", "m", "S=1 (today) us GB/s", "S=2 +reduce",
         "S=3", "S=4", "heuristic (split ok)");
  for (int si = 0; si < 4; si++) {
    int64_t O = shapes[si].O, I = shapes[si].I;
    size_t wbytes = (size_t)O * I * 2;
    int ncopy = (int)((200u << 20) / wbytes) + 1;
    __nv_bfloat16 *w[8];
    if (ncopy > 8) ncopy = 8;
    for (int c = 0; c < ncopy; c++) {
      CK(cudaMalloc(&w[c], wbytes));
      fill<<<1024, 256>>>(w[c], (size_t)O * I, 99u, 5e-3f); /* the same values in every copy */
    }
    /* references for the bits check: each S's rows at the largest m */
    uint16_t *href[5];
    for (int k = 0; k < 5; k++) {
      int S = SL[k];
      href[k] = NULL;
      if (S == 0 || I % (S * 128)) continue;
      plan p = make_plan(mmax, O, I, S);
      if (!p.ok) { free_plan(p); continue; }
      run_one(p, S, w[0], x, ref, part, mmax, O);
      CK(cudaDeviceSynchronize());
      href[k] = (uint16_t *)malloc((size_t)mmax * O * 2);
      CK(cudaMemcpy(href[k], ref, (size_t)mmax * O * 2, cudaMemcpyDeviceToHost));
      free_plan(p);
    }
    for (int mi = 0; mi < nm; mi++) {
      int64_t m = ms[mi];
      printf("%-8s %5lld |", shapes[si].name, (long long)m);
      for (int k = 0; k < 5; k++) {
        int S = SL[k];
        if (S > 1 && I % (S * 128)) { printf(" %-22s |", "-"); continue; }
        plan p = make_plan(m, O, I, S);
        if (!p.ok) { printf(" %-22s |", "no algorithm"); free_plan(p); continue; }
        float us = time_us(2, 10, [&](int it) { run_one(p, S, w[it % ncopy], x, out, part, m, O); });
        const char *bits = "";
        if (href[k]) {
          size_t ob = (size_t)m * O * 2;
          uint16_t *h = (uint16_t *)malloc(ob);
          CK(cudaMemcpy(h, out, ob, cudaMemcpyDeviceToHost));
          bits = memcmp(h, href[k], ob) ? " DIFF" : " =";
          free(h);
        }
        char cell[64];
        if (S == 0)
          snprintf(cell, sizeof cell, "%7.1f %5.0f split %d", us, wbytes / 1e3 / us, p.split);
        else
          snprintf(cell, sizeof cell, "%7.1f %5.0f%s", us, wbytes / 1e3 / us, bits);
        printf(" %-22s |", cell);
        free_plan(p);
      }
      printf("\n");
      fflush(stdout);
    }
    for (int k = 0; k < 5; k++) free(href[k]);
    for (int c = 0; c < ncopy; c++) cudaFree(w[c]);
  }
  printf("(= : the rows equal the same rows computed at m = %d; DIFF: they do not)\n", mmax);
  cudaFree(x), cudaFree(out), cudaFree(ref), cudaFree(part), cudaFree(ws);
  cublasLtDestroy(lt);
  return 0;
}
