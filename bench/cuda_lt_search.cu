/* bench/cuda_lt_search.cu: are there cuBLASLt configurations without split-K that multiply the Llama-3-8B decode
 * products faster than the one the heuristic proposes, and which of them give its bits? For each product (q|k|v,
 * o, gate|up as one buffer, gate alone, down) and row count m, each algorithm among the heuristic's candidates
 * with every tile it supports, its own stages or the default, CTA swizzling off/on and its own or four other
 * cluster shapes (auto, 1x1, 2x1, 1x2), split-K fixed at 1 (setting these on algorithm ids from
 * cublasLtMatmulAlgoGetIds alone gave only slow generic kernels): each configuration cuBLASLt accepts is timed (mean of 10 calls, rotating over weight
 * copies so that every call reads HBM, not L2) and its output compared bitwise with the heuristic's first
 * configuration without split-K (what the backend's batch-invariant mode runs). Random bf16 weights and rows.
 * Prints the heuristic's time and the fastest configurations, bitwise-equal ones marked.
 *   cuda_lt_search [m,m,...]     (on the GPU machine; default 64,128,256) */
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cuda_bench_common.cuh"


typedef struct cfg {
  cublasLtMatmulAlgo_t algo;
  int id, tile, swz, cluster, stages;
  float us;
  int same;
} cfg;

static int by_time(const void *a, const void *b) {
  float x = ((const cfg *)a)->us, y = ((const cfg *)b)->us;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  int ms[8];
  const int nm = parse_rows(argc > 1 ? argv[1] : "64,128,256", ms, 8, "cuda_lt_search");
  struct { const char *name; int64_t O, I; } shapes[] = {
      {"q|k|v", 6144, 4096}, {"o", 4096, 4096}, {"gate|up", 28672, 4096}, {"gate", 14336, 4096}, {"down", 4096, 14336}};
  cublasLtHandle_t lt;
  LK(cublasLtCreate(&lt));
  size_t wsz = 64u << 20;
  void *ws;
  CK(cudaMalloc(&ws, wsz));
  int MAXM = 1;
  for (int i = 0; i < nm; i++) MAXM = ms[i] > MAXM ? ms[i] : MAXM;
  __nv_bfloat16 *x, *out, *ref;
  gemm_buffers(MAXM, 1e-3f, &x, &out, &ref);
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  int ids[256], nid = 0;
  LK(cublasLtMatmulAlgoGetIds(lt, CUBLAS_COMPUTE_32F, CUDA_R_32F, CUDA_R_16BF, CUDA_R_16BF, CUDA_R_16BF, CUDA_R_16BF, 256,
                              ids, &nid));
  printf("%d algorithm ids\n", nid);
  static cfg cs[20000];
  for (int si = 0; si < 5; si++) {
    int64_t O = shapes[si].O, I = shapes[si].I;
    size_t wbytes = (size_t)O * I * 2;
    int ncopy = (int)((160u << 20) / wbytes) + 1;
    __nv_bfloat16 *w[8];
    if (ncopy > 8) ncopy = 8;
    for (int c = 0; c < ncopy; c++) {
      CK(cudaMalloc(&w[c], wbytes));
      fill<<<1024, 256>>>(w[c], (size_t)O * I, 99u, 5e-5f); /* the same values in every copy */
    }
    for (int mi = 0; mi < nm; mi++) {
      int64_t m = ms[mi];
      cublasLtMatmulDesc_t desc;
      LK(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
      cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
      LK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
      LK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
      cublasLtMatrixLayout_t la, lb, lc;
      LK(cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, I, O, I));
      LK(cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, I, m, I));
      LK(cublasLtMatrixLayoutCreate(&lc, CUDA_R_16BF, O, m, O));
      cublasLtMatmulPreference_t pref;
      LK(cublasLtMatmulPreferenceCreate(&pref));
      LK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsz, sizeof wsz));
      cublasLtMatmulHeuristicResult_t rs[24];
      int nres = 0;
      LK(cublasLtMatmulAlgoGetHeuristic(lt, desc, la, lb, lc, lc, pref, 24, rs, &nres));
      cublasLtMatmulPreferenceDestroy(pref);
      int pick = -1;
      for (int k = 0; k < nres && pick < 0; k++) {
        uint32_t split = 0, red = 0;
        size_t wr;
        cublasLtMatmulAlgoConfigGetAttribute(&rs[k].algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &split, sizeof split, &wr);
        cublasLtMatmulAlgoConfigGetAttribute(&rs[k].algo, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME, &red, sizeof red, &wr);
        if (rs[k].state == CUBLAS_STATUS_SUCCESS && split <= 1 && red == CUBLASLT_REDUCTION_SCHEME_NONE) pick = k;
      }
      if (pick < 0) { printf("%s m=%lld: no heuristic algorithm without split-K\n", shapes[si].name, (long long)m); continue; }
      float alpha = 1.f, beta = 0.f;
      size_t obytes = (size_t)m * O * 2;
      uint16_t *h1 = (uint16_t *)malloc(obytes), *h2 = (uint16_t *)malloc(obytes);
      /* times one configuration: mean us of 10 calls after 2 warm-ups; -1 when it fails */
      auto run = [&](const cublasLtMatmulAlgo_t *al, __nv_bfloat16 *dst) -> float {
        for (int it = 0; it < 12; it++) {
          if (it == 2) cudaEventRecord(e0);
          if (cublasLtMatmul(lt, desc, &alpha, w[it % ncopy], la, x, lb, &beta, dst, lc, dst, lc, al, ws, wsz, 0) !=
              CUBLAS_STATUS_SUCCESS)
            return -1;
        }
        cudaEventRecord(e1);
        if (cudaEventSynchronize(e1) != cudaSuccess) return -1;
        float ms_ = 0;
        cudaEventElapsedTime(&ms_, e0, e1);
        return ms_ * 1e3f / 10;
      };
      float t_ref = run(&rs[pick].algo, ref);
      CK(cudaMemcpy(h1, ref, obytes, cudaMemcpyDeviceToHost));
      int nc = 0;
      {
        uint32_t id = 0, tile = 0, stages = 0, swz = 0, custom = 0;
        uint16_t cl = 0, inner = 0;
        size_t wr;
        const cublasLtMatmulAlgo_t *pa = &rs[pick].algo;
        cublasLtMatmulAlgoConfigGetAttribute(pa, CUBLASLT_ALGO_CONFIG_ID, &id, sizeof id, &wr);
        cublasLtMatmulAlgoConfigGetAttribute(pa, CUBLASLT_ALGO_CONFIG_TILE_ID, &tile, sizeof tile, &wr);
        cublasLtMatmulAlgoConfigGetAttribute(pa, CUBLASLT_ALGO_CONFIG_STAGES_ID, &stages, sizeof stages, &wr);
        cublasLtMatmulAlgoConfigGetAttribute(pa, CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING, &swz, sizeof swz, &wr);
        cublasLtMatmulAlgoConfigGetAttribute(pa, CUBLASLT_ALGO_CONFIG_CUSTOM_OPTION, &custom, sizeof custom, &wr);
        cublasLtMatmulAlgoConfigGetAttribute(pa, CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID, &cl, sizeof cl, &wr);
        cublasLtMatmulAlgoConfigGetAttribute(pa, CUBLASLT_ALGO_CONFIG_INNER_SHAPE_ID, &inner, sizeof inner, &wr);
        printf("%-8s m=%-4lld heuristic's pick (candidate %d of %d): algo %u tile %u stages %u swizzle %u custom %u cluster %u inner %u\n",
               shapes[si].name, (long long)m, pick, nres, id, tile, stages, swz, custom, (unsigned)cl, (unsigned)inner);
      }
      /* variations of every heuristic candidate (split-K set to 1): its tiles, its stages or the default, cluster
       * shapes, swizzling */
      int nset = 0, nchk[16] = {0};
      for (int k = 0; k < nres; k++) {
        if (rs[k].state != CUBLAS_STATUS_SUCCESS) continue;
        { /* the candidate as it is, split-K set to 1 */
          cublasLtMatmulAlgo_t al = rs[k].algo;
          uint32_t one = 1, none = CUBLASLT_REDUCTION_SCHEME_NONE, id = 0, tl = 0, st = 0;
          uint16_t cl = 0;
          size_t wr;
          cublasLtMatmulAlgoConfigGetAttribute(&al, CUBLASLT_ALGO_CONFIG_ID, &id, sizeof id, &wr);
          cublasLtMatmulAlgoConfigGetAttribute(&al, CUBLASLT_ALGO_CONFIG_TILE_ID, &tl, sizeof tl, &wr);
          cublasLtMatmulAlgoConfigGetAttribute(&al, CUBLASLT_ALGO_CONFIG_STAGES_ID, &st, sizeof st, &wr);
          cublasLtMatmulAlgoConfigGetAttribute(&al, CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID, &cl, sizeof cl, &wr);
          cublasLtMatmulHeuristicResult_t chk;
          if (!cublasLtMatmulAlgoConfigSetAttribute(&al, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &one, sizeof one) &&
              !cublasLtMatmulAlgoConfigSetAttribute(&al, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME, &none, sizeof none) &&
              cublasLtMatmulAlgoCheck(lt, desc, la, lb, lc, lc, &al, &chk) == CUBLAS_STATUS_SUCCESS && chk.workspaceSize <= wsz) {
            float us = run(&al, out);
            cudaGetLastError();
            if (us >= 0) {
              CK(cudaMemcpy(h2, out, obytes, cudaMemcpyDeviceToHost));
              cs[nc].algo = al, cs[nc].id = (int)id, cs[nc].tile = (int)tl, cs[nc].swz = -k, cs[nc].cluster = cl;
              cs[nc].stages = (int)st, cs[nc].us = us, cs[nc].same = memcmp(h1, h2, obytes) == 0;
              nc++;
            }
          }
        }
        cublasLtMatmulAlgo_t base = rs[k].algo;
        uint32_t id = 0, st0 = 0;
        uint16_t cl0 = 0;
        size_t wr;
        cublasLtMatmulAlgoConfigGetAttribute(&base, CUBLASLT_ALGO_CONFIG_ID, &id, sizeof id, &wr);
        cublasLtMatmulAlgoConfigGetAttribute(&base, CUBLASLT_ALGO_CONFIG_STAGES_ID, &st0, sizeof st0, &wr);
        cublasLtMatmulAlgoConfigGetAttribute(&base, CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID, &cl0, sizeof cl0, &wr);
        int dup = 0;
        for (int k2 = 0; k2 < k && !dup; k2++) {
          uint32_t id2 = 0;
          cublasLtMatmulAlgoConfigGetAttribute(&rs[k2].algo, CUBLASLT_ALGO_CONFIG_ID, &id2, sizeof id2, &wr);
          dup = id2 == id;
        }
        if (dup) continue; /* one sweep per algorithm id */
        uint32_t tiles[128];
        size_t nt = 0;
        cublasLtMatmulAlgoCapGetAttribute(&base, CUBLASLT_ALGO_CAP_TILE_IDS, tiles, sizeof tiles, &nt);
        int ntile = (int)(nt / sizeof(uint32_t));
        if (ntile == 0) tiles[0] = CUBLASLT_MATMUL_TILE_UNDEFINED, ntile = 1;
        uint32_t stl[2] = {st0, 0};
        uint16_t clusters[] = {cl0, CUBLASLT_CLUSTER_SHAPE_AUTO, CUBLASLT_CLUSTER_SHAPE_1x1x1, CUBLASLT_CLUSTER_SHAPE_2x1x1,
                               CUBLASLT_CLUSTER_SHAPE_1x2x1};
        for (int t = 0; t < ntile; t++)
          for (int sti = 0; sti < (st0 ? 2 : 1); sti++)
            for (int swz = 0; swz <= 1; swz++)
              for (int c = 0; c < 5; c++) {
                if (c && clusters[c] == cl0) continue;
                cublasLtMatmulAlgo_t al = base;
                uint32_t one = 1, none = CUBLASLT_REDUCTION_SCHEME_NONE, sw = (uint32_t)swz;
                if (cublasLtMatmulAlgoConfigSetAttribute(&al, CUBLASLT_ALGO_CONFIG_TILE_ID, &tiles[t], sizeof tiles[t]) ||
                    cublasLtMatmulAlgoConfigSetAttribute(&al, CUBLASLT_ALGO_CONFIG_STAGES_ID, &stl[sti], sizeof stl[sti]) ||
                    cublasLtMatmulAlgoConfigSetAttribute(&al, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &one, sizeof one) ||
                    cublasLtMatmulAlgoConfigSetAttribute(&al, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME, &none, sizeof none) ||
                    cublasLtMatmulAlgoConfigSetAttribute(&al, CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING, &sw, sizeof sw) ||
                    cublasLtMatmulAlgoConfigSetAttribute(&al, CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID, &clusters[c], sizeof clusters[c])) {
                  nset++;
                  continue;
                }
                cublasLtMatmulHeuristicResult_t chk;
                cublasStatus_t cst = cublasLtMatmulAlgoCheck(lt, desc, la, lb, lc, lc, &al, &chk);
                if (cst != CUBLAS_STATUS_SUCCESS || chk.workspaceSize > wsz || nc >= 20000) {
                  nchk[(int)cst & 15]++;
                  continue;
                }
                float us = run(&al, out);
                cudaGetLastError();
                if (us < 0) continue;
                CK(cudaMemcpy(h2, out, obytes, cudaMemcpyDeviceToHost));
                cs[nc].algo = al, cs[nc].id = (int)id, cs[nc].tile = (int)tiles[t], cs[nc].swz = swz;
                cs[nc].cluster = clusters[c], cs[nc].stages = (int)stl[sti];
                cs[nc].us = us, cs[nc].same = memcmp(h1, h2, obytes) == 0;
                nc++;
              }
      }
      printf("   (variations: %d refused by a setter; by AlgoCheck status:", nset);
      for (int i = 0; i < 16; i++)
        if (nchk[i]) printf(" %d x%d", i, nchk[i]);
      printf(")\n");
      qsort(cs, nc, sizeof(cfg), by_time);
      int nsame = 0;
      for (int i = 0; i < nc; i++) nsame += cs[i].same;
      double gb = (double)O * I * 2 / 1e3;
      printf("%-8s m=%-4lld heuristic %7.1f us (%4.0f GB/s); %d configs, %d with its bits; fastest:\n", shapes[si].name,
             (long long)m, t_ref, gb / t_ref, nc, nsame);
      for (int i = 0, shown = 0, shown_same = 0; i < nc && (shown < 5 || shown_same < 3); i++) {
        if (shown >= 5 && !cs[i].same) continue;
        printf("   %7.1f us  %s  algo %3d tile %3d stages %3d swizzle %d cluster %2d\n", cs[i].us,
               cs[i].same ? "same bits" : "OTHER bits", cs[i].id, cs[i].tile, cs[i].stages, cs[i].swz, cs[i].cluster);
        shown++, shown_same += cs[i].same;
      }
      fflush(stdout);
      free(h1), free(h2);
      cublasLtMatrixLayoutDestroy(la), cublasLtMatrixLayoutDestroy(lb), cublasLtMatrixLayoutDestroy(lc);
      cublasLtMatmulDescDestroy(desc);
    }
    for (int c = 0; c < ncopy; c++) cudaFree(w[c]);
  }
  cudaFree(x), cudaFree(out), cudaFree(ref), cudaFree(ws);
  cublasLtDestroy(lt);
  return 0;
}
