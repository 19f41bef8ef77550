/* backend/cpu/kernels: the inner loops of the CPU backend: dot products of f32 activations with bf16/f16/f32
 * weight rows (AVX2+FMA when the CPU has it, else portable C with the same arithmetic order), and dtype
 * conversion. Every dot product of length n is computed in one fixed order (two 8-lane accumulators over
 * 16-element chunks, a fixed horizontal sum, then the tail), whatever else is computed beside it: this is
 * what makes a row's result independent of the batch it is in. */
#ifndef IG_BACKEND_CPU_KERNELS_H
#define IG_BACKEND_CPU_KERNELS_H
#include "backend/backend.h"
#include <stdint.h>

void ig_cpu_kernels_init(void);
const char *ig_cpu_kernels_name(void); /* "avx2" or "scalar" */

/* out[rows[r] * ldo + o] = dot(x[rows[r] * ldx .. + n], w[o * n .. + n]) for r < nrows, o in [o0, o1). */
void ig_cpu_matvec(const float *x, int64_t ldx, const int32_t *rows, int nrows, const void *w, ig_dtype wdt,
                   int64_t n, int64_t o0, int64_t o1, float *out, int64_t ldo);
/* dst[i] = (float)src[i] */
void ig_cpu_to_f32(const void *src, ig_dtype dt, float *dst, int64_t n);
/* f32 dot product, same fixed order as above. */
float ig_cpu_dot(const float *a, const float *b, int64_t n);
/* y[i] += a * x[i] */
void ig_cpu_axpy(float *y, float a, const float *x, int64_t n);

static inline float ig_bf16_to_f32(uint16_t h) {
  union { uint32_t u; float f; } v = {(uint32_t)h << 16};
  return v.f;
}
float ig_f16_to_f32(uint16_t h);

#endif
