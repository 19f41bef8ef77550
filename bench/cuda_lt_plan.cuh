/* bench/cuda_lt_plan.cuh: the cuBLASLt plans the GEMM bench programs compare against: out[m, O] = x[m, I] @ W[O, I]^T
 * (W row-major, so A = W^T in cuBLASLt's column-major terms), f32 compute. make_plan(m, O, I, S): S == 0 the
 * heuristic's first pick (split-K allowed), bf16 out; S == 1 its first algorithm without split-K (what the
 * batch-invariant mode runs), bf16 out; S > 1 K cut into S slices, one strided-batched GEMM without split-K into
 * f32 partials. One translation unit per program: the handle and workspace are file statics. */
#ifndef IG_BENCH_CUDA_LT_PLAN_CUH
#define IG_BENCH_CUDA_LT_PLAN_CUH
#include <cublasLt.h>
#include <string.h>
#include "cuda_bench_common.cuh"

struct plan {
  cublasLtMatmulDesc_t desc;
  cublasLtMatrixLayout_t la, lb, lc;
  cublasLtMatmulAlgo_t algo;
  int ok, split;
};

static cublasLtHandle_t lt;
static void *ws;
static const size_t wsz = 64u << 20;

/* S == 0: heuristic's pick (split allowed), bf16 out; S >= 1: K/S slices, no split-K, f32 out (S == 1: bf16 out) */
static plan make_plan(int64_t m, int64_t O, int64_t I, int S) {
  plan p;
  memset(&p, 0, sizeof p);
  int64_t k = S > 1 ? I / S : I;
  cudaDataType_t odt = S > 1 ? CUDA_R_32F : CUDA_R_16BF;
  LK(cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  LK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
  LK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
  LK(cublasLtMatrixLayoutCreate(&p.la, CUDA_R_16BF, k, O, I));
  LK(cublasLtMatrixLayoutCreate(&p.lb, CUDA_R_16BF, k, m, I));
  LK(cublasLtMatrixLayoutCreate(&p.lc, odt, O, m, O));
  if (S > 1) {
    int32_t bc = S;
    int64_t sa = k, sb = k, sc = O * m;
    LK(cublasLtMatrixLayoutSetAttribute(p.la, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &bc, sizeof bc));
    LK(cublasLtMatrixLayoutSetAttribute(p.lb, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &bc, sizeof bc));
    LK(cublasLtMatrixLayoutSetAttribute(p.lc, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &bc, sizeof bc));
    LK(cublasLtMatrixLayoutSetAttribute(p.la, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &sa, sizeof sa));
    LK(cublasLtMatrixLayoutSetAttribute(p.lb, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &sb, sizeof sb));
    LK(cublasLtMatrixLayoutSetAttribute(p.lc, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &sc, sizeof sc));
  }
  cublasLtMatmulPreference_t pref;
  LK(cublasLtMatmulPreferenceCreate(&pref));
  LK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsz, sizeof wsz));
  cublasLtMatmulHeuristicResult_t rs[24];
  int nres = 0;
  if (cublasLtMatmulAlgoGetHeuristic(lt, p.desc, p.la, p.lb, p.lc, p.lc, pref, 24, rs, &nres) != CUBLAS_STATUS_SUCCESS)
    nres = 0;
  cublasLtMatmulPreferenceDestroy(pref);
  for (int i = 0; i < nres && !p.ok; i++) {
    uint32_t split = 0, red = 0;
    size_t wr;
    cublasLtMatmulAlgoConfigGetAttribute(&rs[i].algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &split, sizeof split, &wr);
    cublasLtMatmulAlgoConfigGetAttribute(&rs[i].algo, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME, &red, sizeof red, &wr);
    if (rs[i].state != CUBLAS_STATUS_SUCCESS) continue;
    if (S == 0 || (split <= 1 && red == CUBLASLT_REDUCTION_SCHEME_NONE)) p.algo = rs[i].algo, p.ok = 1, p.split = (int)split;
  }
  return p;
}

static void free_plan(plan &p) {
  cublasLtMatrixLayoutDestroy(p.la), cublasLtMatrixLayoutDestroy(p.lb), cublasLtMatrixLayoutDestroy(p.lc);
  cublasLtMatmulDescDestroy(p.desc);
}

/* the Llama-3-8B decode products (gate|up as one buffer), and the handle + workspace set up */
struct product_shape {
  const char *name;
  int64_t O, I;
};
static const product_shape PRODUCTS_8B[4] = {{"q|k|v", 6144, 4096}, {"o", 4096, 4096}, {"gate|up", 28672, 4096}, {"down", 4096, 14336}};
static void lt_init(void) {
  LK(cublasLtCreate(&lt));
  CK(cudaMalloc(&ws, wsz));
}
#endif
