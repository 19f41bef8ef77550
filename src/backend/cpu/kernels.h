/* backend/cpu/kernels: the inner loops of the CPU backend: dot products of f32 activations with bf16/f16/f32
 * weight rows (AVX-512 or AVX2+FMA when the CPU has them, else portable C with the same arithmetic order),
 * exp/SiLU, the attention of one row over its paged context, and dtype conversion. Every dot product of
 * length n is computed in one fixed order (two 8-lane accumulators over 16-element chunks, or one 16-lane
 * one, which is the same arithmetic; a fixed horizontal sum; then the tail), whatever else is computed
 * beside it and whichever instruction set runs it: this is what makes a row's result independent of the
 * batch it is in, and the same on every kernel set. */
#ifndef IG_BACKEND_CPU_KERNELS_H
#define IG_BACKEND_CPU_KERNELS_H
#include "backend/backend.h"
#include "util/half.h" /* ig_bf16_to_f32, ig_f16_to_f32 */
#include <stdint.h>

void ig_cpu_kernels_init(void);
const char *ig_cpu_kernels_name(void); /* "avx512", "avx2" or "scalar" */
/* Forces a kernel set ("avx512", "avx2", "scalar"; also read from IGNIS_CPU_KERNELS at init). Returns 0, or -1
 * when the CPU lacks it. For tests: every set must give bitwise identical results. */
int ig_cpu_kernels_set(const char *name);

/* out[rows[r] * ldo + o] = dot(x[rows[r] * ldx .. + n], w[o * n .. + n]) for r < nrows, o in [o0, o1).
 * Weights are read once per tile of outputs and applied to all rows. */
void ig_cpu_matvec(const float *x, int64_t ldx, const int32_t *rows, int nrows, const void *w, ig_dtype wdt,
                   int64_t n, int64_t o0, int64_t o1, float *out, int64_t ldo);
/* dst[i] = (float)src[i] */
void ig_cpu_to_f32(const void *src, ig_dtype dt, float *dst, int64_t n);
/* f32 dot product, same fixed order as above. */
float ig_cpu_dot(const float *a, const float *b, int64_t n);
/* y[i] += a * x[i] */
void ig_cpu_axpy(float *y, float a, const float *x, int64_t n);
/* expf to ~2 ulp (Cephes polynomial); the vector and scalar paths give the same bits for every element. */
float ig_cpu_expf(float x);
/* out[i] = silu(g[i]) * u[i] = g[i] / (1 + exp(-g[i])) * u[i]; element-wise, so bitwise independent of n. */
void ig_cpu_silu_mul(float *out, const float *g, const float *u, int64_t n);
/* Attention of G query heads (q: [G, hd] contiguous) that share one KV head, over nk keys: key t is
 * K + koff[t] and value t is V + koff[t] (hd floats each). out [G, hd] = softmax(q k^T * scale) v, computed
 * in one fixed order given (q, keys, values); softcap > 0: each score s = q k^T * scale becomes
 * softcap * tanh(s / softcap) before the softmax (Gemma2). sc: scratch of G * nk floats. */
void ig_cpu_attn(const float *q, int G, int hd, const float *K, const float *V, const int64_t *koff, int nk,
                 float scale, float softcap, float *sc, float *out);

#endif
