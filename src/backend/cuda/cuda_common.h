/* backend/cuda/cuda_common.h: what the CUDA backend's files share: the checking macros (file:line in every
 * message), the backend's private state (one stream, cuBLASLt handle, per-step batch metadata in fixed device
 * buffers, the paged KV cache, scratch) and the launchers each .cu file exports to cuda_backend.cu. */
#ifndef IG_CUDA_COMMON_H
#define IG_CUDA_COMMON_H
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
extern "C" {
#include "backend/backend.h"
}

/* Every CUDA/cuBLAS call goes through these: on failure they write "file:line: call: reason" into be->err and
 * return -1 from the calling function (no exit/abort below app/). */
#define CUDA_CHECK(be, call)                                                                                   \
  do {                                                                                                         \
    cudaError_t e_ = (call);                                                                                   \
    if (e_ != cudaSuccess) {                                                                                   \
      snprintf((be)->err, sizeof((be)->err), "%s:%d: %s: %s", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
      return -1;                                                                                               \
    }                                                                                                          \
  } while (0)
#define CUBLAS_CHECK(be, call)                                                                                 \
  do {                                                                                                         \
    cublasStatus_t s_ = (call);                                                                                \
    if (s_ != CUBLAS_STATUS_SUCCESS) {                                                                         \
      snprintf((be)->err, sizeof((be)->err), "%s:%d: %s: cublas status %d", __FILE__, __LINE__, #call, (int)s_); \
      return -1;                                                                                               \
    }                                                                                                          \
  } while (0)
/* After a kernel launch: a bad configuration shows here; faults show at the next synchronizing call. */
#define LAUNCH_CHECK(be) CUDA_CHECK(be, cudaGetLastError())
#define FAIL(be, ...)                                                                                          \
  do {                                                                                                         \
    snprintf((be)->err, sizeof((be)->err), __VA_ARGS__);                                                       \
    return -1;                                                                                                 \
  } while (0)

/* Device copy of one step's batch (set_batch). All int32, in one allocation; the pointers index into it. */
typedef struct cu_batch {
  int n_tokens, n_seqs, n_out, max_blocks;
  int *tokens, *pos, *slot, *seq_start, *ctx_len, *block_table, *out_rows;
  int *row_seq;      /* [n_tokens] sequence of each row */
  int *dec_rows;     /* [n_dec] rows attended by the split-K kernel (sequences with short q_len) */
  int *tiles;        /* [n_tiles * 3] (seq, first row, rows) for the tiled prefill kernel */
  int n_dec, n_tiles;
  int max_splits;    /* max over dec rows of ceil(keys / IG_ATTN_SPLIT_KEYS) */
  int max_ctx;
} cu_batch;

/* rows the skinny GEMM (no K splits) takes from cuBLASLt (IGNIS_CUDA_BI_SGEMM, up to 128): at 64 rows it is no faster
 * than cuBLASLt at the 8B shapes on the H100 (bench/RESULTS.md, sixth session) */
#define IG_CUDA_BI_SGEMM_DEFAULT 32
#define IG_CUDA_SGV 64              /* product shapes it checks against cuBLASLt (more: cuBLASLt) */
#define IG_GEMV_MAX_M 2 /* rows the GEMV takes (its per-row weight re-reads lose to the skinny GEMM from 3-4 rows) */
#define IG_ATTN_SPLIT_KEYS 64 /* keys per split of the decode kernel: fixed, so a row's split is batch-invariant (64: the
                                 staged K/V of a block take ~35 KB, so ~5 blocks share an SM; 128 fit only 2) */
#define IG_ATTN_TILE_Q 64      /* query rows per tile of the prefill kernel */
#define IG_ATTN_MIN_TILE_QLEN 16 /* sequences with at least this many new rows go to the tiled kernel */

struct cu_loader;

/* IGNIS_CUDA_PROFILE=1: every op bracketed by two events on the stream (eager steps only, not while capturing);
 * per-op-label totals printed to stderr when the backend is destroyed. A measurement aid, not for serving. */
#define CU_PROF_PAIRS 4096
#define CU_PROF_LABELS 64
typedef struct cu_prof {
  cudaEvent_t ev[2 * CU_PROF_PAIRS];
  short lab[CU_PROF_PAIRS];
  int n;
  char names[CU_PROF_LABELS][48];
  double ms[CU_PROF_LABELS];
  long long calls[CU_PROF_LABELS];
  int n_names;
} cu_prof;

typedef struct cu_impl {
  cu_prof *prof;
  int device;
  int sm_count;
  cudaStream_t st;
  cublasLtHandle_t lt;
  void *lt_ws;
  void *lt_cache; /* cuda_matmul.cu's plan cache */
  int use_gemv;
  int fused_qkv_gemm; /* one q|k|v GEMM for m <= 512 (default; IGNIS_CUDA_NO_FUSED_GEMM=1: three) */
  int gemm_tune;      /* IGNIS_CUDA_GEMM_TUNE=1: time cuBLASLt's candidates per m bucket (off: reproducible choice) */
  int fused_gate_up;  /* one gate|up GEMM (IGNIS_CUDA_FUSED_GATE_UP=1; measured slower, off by default) */
  int decode_staged; /* cp.async-staged decode kernel (default; IGNIS_CUDA_DECODE_STAGED=0: direct loads) */
  int decode_simt;   /* IGNIS_CUDA_DECODE=simt: SIMT decode kernel for bf16 head_dim 64/128 too (default: tensor cores) */
  int pdl;          /* programmatic dependent launch between our kernels (default; IGNIS_CUDA_PDL=0: off) */
  int attn_variant; /* prefill kernel: 0 = mma.sync (default), 1 = WMMA (IGNIS_CUDA_ATTN=wmma) */
  int batch_invariant; /* IGNIS_CUDA_BATCH_INVARIANT=sgemm: every bf16 product through the skinny GEMM (in 128-row
                        * launches), so a row's result does not depend on the other rows of its step */
  int bi_lt;           /* otherwise (the default, and "0" but for its GEMV): the same through cuBLASLt algorithms
                        * without split-K (lt_pinned in cuda_matmul.cu) and the skinny GEMM without K splits where it
                        * gives their bits (sg_verified) */
  int bi_ref_m;        /* IGNIS_CUDA_BI_REF_M=R: one algorithm per shape, chosen at R rows (default 0: per m) */
  int bi_auto_min;     /* IGNIS_CUDA_BI_AUTO_MIN: auto's smallest m of its own (default 17) */
  int decode_fused; /* IGNIS_CUDA_DECODE_FUSED=N: the fused decode kernel from N (row, kv head) blocks up; 0: never */
  int sample_split; /* greedy sample rows' pass split over the GPU (default; IGNIS_CUDA_SAMPLE_SPLIT=0: one block a row) */
  int decode_early; /* the tensor-core decode kernels request a split's K/V before the grid dependency when that split ends
                     * before the row's own key (default; IGNIS_CUDA_DECODE_EARLY=0: after it) */
  int combine_loop; /* IGNIS_CUDA_COMBINE=loop: the decode combine kernel's plain loop for every split count */
  size_t attn_scratch_cap; /* split-K decode partials at most this many bytes per launch (IGNIS_CUDA_ATTN_SCRATCH_MB) */
  int sgemm_max;    /* largest m for cuda_gemm.cu's skinny GEMM (IGNIS_CUDA_BI_SGEMM; 128 in the "sgemm" mode) */
  int sgemm_max_swiglu; /* the same for the gate/up/SwiGLU product (IGNIS_CUDA_BI_SGEMM_SWIGLU) */
  int sgemm_waves;  /* its K splits aim at this many blocks per SM (IGNIS_CUDA_SGEMM_WAVES) */
  int sg_deep;      /* as many pipeline stages as fit when K is not split, for plain products (default;
                       IGNIS_CUDA_SGEMM_DEEP=0: off) */
  int bi_sg_tiles;  /* the invariant mode gives it only products of at least this many 64-row tiles
                       (IGNIS_CUDA_BI_SGEMM_TILES; default two thirds of the SMs: without K splits fewer leave SMs idle) */
  int sg_bn;        /* weight rows per block of plain products through TMA: 0 auto, 64 or 48 (IGNIS_CUDA_SGEMM_BN) */
  int sg_bulk;      /* its stages arrive by TMA tensor copies (default on Hopper; IGNIS_CUDA_SGEMM_BULK=0: cp.async) */
  int sm90;         /* compute capability 9.0 or above */
  struct { int64_t O, I; int ok; } sgv[IG_CUDA_SGV]; /* shapes checked for the invariant skinny GEMM (cuda_matmul.cu) */
  int n_sgv;
  int *sg_cnt;      /* its arrival counters (zero between launches) */
  void *sg_part;    /* its partial tiles */
  size_t sg_part_size;
  size_t lt_ws_size;
  /* batch metadata: pinned host staging + device buffer, one copy per step */
  int *meta_host, *meta_dev;
  size_t meta_cap; /* ints */
  cudaEvent_t meta_ev;
  cu_batch b;
  /* rope */
  float *inv_freq; /* device [2][rot_dim/2]: set_rope's tables 0 and 1 */
  float *rope_cur; /* the table rope_select picked (what the rope kernels read) */
  int rope_tab, rope_set; /* its index; bit t: table t was set */
  float attn_factors[2];
  int qkv_rope; /* qkv_rope_kv_write from the packed q|k|v product (IGNIS_CUDA_QKV_ROPE, default on) */
  int rot_dim, head_dim_rope;
  float attn_factor;
  /* KV cache: per layer K then V, each [n_blocks][n_kv_heads][block_size][head_dim] of kv_cdt: the activation dtype,
   * or an FP8 format (IG_CU_DT_E4M3 / IG_CU_DT_E5M2, --kv-cache-dtype) whose values the attention kernels read as f16 */
  ig_kv_config kv;
  void *kv_mem;
  size_t kv_layer_elems; /* elements of K (or V) of one layer */
  int kv_cdt;            /* the cache's element dtype (ig_dtype, or IG_CU_DT_E4M3 / IG_CU_DT_E5M2) */
  int kv_fp8;            /* 0, or 1 e4m3 / 2 e5m2 (the attention kernels' KF template argument) */
  size_t kv_es;          /* bytes per cache element */
  float *kv_ks, *kv_vs;  /* [n_layers]: an FP8 cache's K and V scales (kv_init's, else 1; 1 for other dtypes) */
  float attn_vs;         /* the attention op's current layer's V scale (cu_attention sets it for its launches) */
  /* scratch */
  void *scratch;
  size_t scratch_size;
  void *scratch2;
  size_t scratch2_size;
  void *fscratch; /* fused q/k/v or gate/up products before they are split (matmul_n, matmul_swiglu) */
  size_t fscratch_size;
  void *dl; /* download conversion buffer */
  size_t dl_size;
  /* the sample op (cuda_sample.cu): pinned staging (params + penalty tokens in, results out) and its device
   * twin (+ penalty scratch); grown as needed, never part of a graph */
  void *samp_host, *samp_dev;
  size_t samp_host_size, samp_dev_size;
  /* weight loading */
  struct cu_loader *loader;
  /* CUDA graphs */
  int capturing, replaying;
  int capture_key;
  int cur_graph;
  struct cu_graph_ent *graphs;
  int n_graphs;
  /* the sample op's results in flight (cuda_sample.cu, cu_sample_wait): recorded after their copy into
   * samp_host at samp_off, unpacked into samp_out[0..samp_n) by cu_sample_wait */
  cudaEvent_t samp_ev;
  int samp_pending, samp_n;
  size_t samp_off;
  ig_sample_out *samp_out;
} cu_impl;

/* the KV cache's FP8 formats as element dtypes beside ig_dtype's (kv_cdt; cuda_dtype.cuh's ldf/stf take them) */
#define IG_CU_DT_E4M3 16
#define IG_CU_DT_E5M2 17

static inline cu_impl *CU(ig_backend *be) { return (cu_impl *)be->impl; }

/* Kernel launches go through cudaLaunchKernelEx so that, with impl->pdl set, each kernel
 * may be scheduled while its predecessor drains (programmatic dependent launch; on by default, IGNIS_CUDA_PDL=0
 * turns it off; on the H100 it took batch-1 decode from 7.19 to 6.74 ms/token eager, 6.73 to 6.58 with graphs):
 * every kernel begins with
 * PDL_ENTRY, which waits until the previous grid has completed and its memory is visible, then lets the next
 * grid launch. Without the attribute both instructions are no-ops. (Letting the next grid in before waiting, with
 * the GEMV requesting its first weight chunks before its wait, measured no faster at batch 1: 6.136 ms/token at
 * context 512 against 6.043-6.058 without, H100, fourth session.) */
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
#define PDL_ENTRY() ((void)0) /* before Hopper: no programmatic dependent launch (impl->pdl is off there) */
#else
#define PDL_ENTRY() asm volatile("griddepcontrol.wait;\n\tgriddepcontrol.launch_dependents;" ::: "memory")
#endif
template <typename... KArgs, typename... Args>
static inline cudaError_t cu_launch_k(cu_impl *c, void (*k)(KArgs...), dim3 g, dim3 b, size_t smem, Args... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = g, cfg.blockDim = b, cfg.dynamicSmemBytes = smem, cfg.stream = c->st;
  cudaLaunchAttribute at[1];
  at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  at[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = at, cfg.numAttrs = c->pdl ? 1 : 0;
  return cudaLaunchKernelEx(&cfg, k, ((KArgs)args)...);
}
#define CU_LAUNCH(be, k, g, b, smem, ...) CUDA_CHECK(be, cu_launch_k(CU(be), k, dim3(g), dim3(b), (size_t)(smem), __VA_ARGS__))

/* Layer `layer`'s K and V cache bases (each [n_blocks][n_kv_heads][block_size][head_dim] of kv_cdt). */
static inline void cu_kv_layer(const cu_impl *c, int layer, char **k, char **v) {
  *k = (char *)c->kv_mem + (size_t)layer * 2 * c->kv_layer_elems * c->kv_es;
  *v = *k + c->kv_layer_elems * c->kv_es;
}
/* What a writer multiplies a layer's K (V) values by before the cache's rounding (1 / scale, in f32), and a reader its
 * codes by (the scale): 1 unless an FP8 cache has scales */
static inline float cu_kv_kinv(const cu_impl *c, int layer) { return c->kv_ks ? 1.f / c->kv_ks[layer] : 1.f; }
static inline float cu_kv_vinv(const cu_impl *c, int layer) { return c->kv_vs ? 1.f / c->kv_vs[layer] : 1.f; }
static inline float cu_kv_kscale(const cu_impl *c, int layer) { return c->kv_ks ? c->kv_ks[layer] : 1.f; }
static inline float cu_kv_vscale(const cu_impl *c, int layer) { return c->kv_vs ? c->kv_vs[layer] : 1.f; }

/* Grows a scratch buffer (not while capturing a graph). */
int cu_scratch(ig_backend *be, void **buf, size_t *cap, size_t need);

/* Launchers (stream-ordered on impl->st). Each returns 0 or -1 with be->err filled. */
/* Whether this binary has code the device can run (cudaErrorInvalidDeviceFunction / NoKernelImageForDevice when
 * IGNIS_CUDA_ARCHS left its architecture out). */
cudaError_t cu_kernels_probe(void);
int cu_embed(ig_backend *be, ig_tensor *out, const ig_tensor *table);
int cu_rmsnorm(ig_backend *be, ig_tensor *out, ig_tensor *x, const ig_tensor *res, const ig_tensor *w, float eps);
int cu_qk_norm_rope_kv_write(ig_backend *be, ig_tensor *qn, ig_tensor *kn, const ig_tensor *q, const ig_tensor *k,
                             const ig_tensor *v, const ig_tensor *wq, const ig_tensor *wk, float eps, int n_heads,
                             int n_kv_heads, int layer);
int cu_rmsnorm_post(ig_backend *be, ig_tensor *out, ig_tensor *x, const ig_tensor *res, const ig_tensor *wres,
                    const ig_tensor *w, float eps);
int cu_rope(ig_backend *be, ig_tensor *q, ig_tensor *k, int n_heads, int n_kv_heads);
int cu_swiglu(ig_backend *be, ig_tensor *out, const ig_tensor *gate, const ig_tensor *up);
int cu_geglu(ig_backend *be, ig_tensor *out, const ig_tensor *gate, const ig_tensor *up);
int cu_scale(ig_backend *be, ig_tensor *x, float s);
int cu_softcap(ig_backend *be, ig_tensor *x, float cap);
int cu_kv_write(ig_backend *be, int layer, const ig_tensor *k, const ig_tensor *v);
int cu_gather_rows(ig_backend *be, ig_tensor *out, const ig_tensor *x);
int cu_add(ig_backend *be, ig_tensor *x, const ig_tensor *y);
int cu_argmax_rows(ig_backend *be, const ig_tensor *logits, int32_t *ids);
int cu_convert(ig_backend *be, void *dst, ig_dtype ddt, const void *src, ig_dtype sdt, int64_t n);
int cu_attention(ig_backend *be, ig_tensor *out, const ig_tensor *q, int layer, const ig_attn_params *p);
int cu_matmul(ig_backend *be, ig_tensor *out, const ig_tensor *x, const ig_tensor *w, const ig_tensor *bias);
int cu_rope_kv_write(ig_backend *be, ig_tensor *q, ig_tensor *k, const ig_tensor *v, int n_heads, int n_kv_heads, int layer);
int cu_matmul_n(ig_backend *be, int n, ig_tensor *const *outs, const ig_tensor *x, const ig_tensor *const *ws,
                const ig_tensor *const *biases);
int cu_matmul_n_packed(ig_backend *be, int n, ig_tensor *const *outs, const ig_tensor *x, const ig_tensor *const *ws,
                       const ig_tensor *const *biases, void **packed);
int cu_qkv_rope_kv_write(ig_backend *be, ig_tensor *q, ig_tensor *k, ig_tensor *v, const ig_tensor *x,
                         const ig_tensor *const *ws, int n_heads, int n_kv_heads, int layer);
/* act: 0 silu(gate) * up (matmul_swiglu), 1 gelu_tanh(gate) * up (matmul_geglu) */
int cu_matmul_swiglu(ig_backend *be, int act, ig_tensor *out, ig_tensor *up, const ig_tensor *x, const ig_tensor *wg,
                     const ig_tensor *bg, const ig_tensor *wu, const ig_tensor *bu);
void cu_matmul_release(ig_backend *be);
/* cuda_gemm.cu: the skinny GEMM. One output: rows [off, off + rows) of the product into out ([m, rows], dtype
 * odt). */
typedef struct sg_seg_desc {
  void *out;
  const void *bias;
  int odt, bdt, rows, off;
  int act; /* the gate|up epilogue (segs[0]): 0 silu(gate) * up, 1 gelu_tanh(gate) * up */
} sg_seg_desc;
int cu_sgemm_ok(ig_backend *be, const ig_tensor *x, const ig_tensor *w, int swiglu);
int cu_sgemm(ig_backend *be, const sg_seg_desc *segs, int nseg, const void *W, const void *Wu, const void *ubias,
             int ubdt, int udt, const void *X, int m, int O, int I);
/* cuda_sample.cu: the optional sample op (its results in flight until cu_sample_wait); release frees its
 * buffers */
int cu_sample(ig_backend *be, const ig_tensor *logits, const ig_sample_row *rows, int n, ig_sample_out *out);
int cu_sample_wait(ig_backend *be);
void cu_sample_release(ig_backend *be);
/* cuda_graph.cu: the optional graph ops */
void cu_graphs_install(ig_backend *be);
void cu_graphs_release(ig_backend *be);
void cu_graph_abort(ig_backend *be);

#endif
