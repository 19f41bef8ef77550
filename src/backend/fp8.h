/* backend/fp8.h: the FP8 formats on the host: the KV cache's (ig_kv_dtype) rounding, as NVIDIA's cvt.rn.satfinite rounds:
 * to nearest, ties to even, values past the largest finite one (and infinities) saturating to it, NaN kept NaN.
 * e4m3fn: bias 7, subnormal step 2^-9, largest 448 (0x7e), NaN 0x7f, no infinities.
 * e5m2:   bias 15, subnormal step 2^-16, largest 57344 (0x7b), infinities 0x7c, NaN 0x7e.
 * The CPU backend rounds its K/V through these; the CUDA backend's conversions must give the same codes (the op test
 * compares them). */
#ifndef IG_BACKEND_FP8_H
#define IG_BACKEND_FP8_H
#include "util/half.h"
#include <math.h>
#include <stdint.h>

/* mbits mantissa bits, bias, largest finite code (sign bit clear), NaN code */
static inline uint8_t ig_fp8_encode_(float x, int mbits, int bias, uint8_t maxc, uint8_t nanc) {
  uint8_t sign = signbit(x) ? 0x80 : 0;
  if (isnan(x)) return (uint8_t)(sign | nanc);
  double a = fabs((double)x);
  int emin = 1 - bias;                 /* exponent of the smallest normal */
  double step;                         /* the spacing of representable values at a's exponent */
  if (a < ldexp(1.0, emin)) step = ldexp(1.0, emin - mbits);
  else {
    int e;
    (void)frexp(a, &e);                /* a = f * 2^e, 0.5 <= f < 1: a's exponent is e - 1 */
    step = ldexp(1.0, e - 1 - mbits);
  }
  double q = a / step, r = floor(q), d = q - r; /* exact: a is an f32, step a power of two */
  if (d > 0.5 || (d == 0.5 && fmod(r, 2.0) != 0.0)) r += 1.0;
  double v = r * step;                 /* the rounded magnitude (may be the next binade's first value) */
  /* the largest finite value: code maxc */
  int maxe = (maxc >> mbits) - bias;
  double maxv = ldexp(1.0 + (double)(maxc & ((1 << mbits) - 1)) / (1 << mbits), maxe);
  if (v >= maxv || isinf(a)) return (uint8_t)(sign | maxc);
  if (v == 0.0) return sign;
  if (v < ldexp(1.0, emin)) return (uint8_t)(sign | (uint8_t)(v / ldexp(1.0, emin - mbits))); /* subnormal */
  int e;
  double f = frexp(v, &e);             /* v = f * 2^e: exponent e - 1, mantissa 2f - 1 */
  int m = (int)((2.0 * f - 1.0) * (1 << mbits));
  return (uint8_t)(sign | (uint8_t)(((e - 1 + bias) << mbits) | m));
}

static inline float ig_fp8_decode_(uint8_t c, int mbits, int bias, int has_inf) {
  int ebits = 7 - mbits, e = (c >> mbits) & ((1 << ebits) - 1), m = c & ((1 << mbits) - 1);
  float s = (c & 0x80) ? -1.f : 1.f;
  if (has_inf && e == (1 << ebits) - 1) return m ? NAN : s * INFINITY;
  if (!has_inf && e == (1 << ebits) - 1 && m == (1 << mbits) - 1) return NAN;
  if (e == 0) return s * (float)ldexp((double)m, 1 - bias - mbits);
  return s * (float)ldexp(1.0 + (double)m / (1 << mbits), e - bias);
}

static inline uint8_t ig_fp8_e4m3_from_f32(float x) { return ig_fp8_encode_(x, 3, 7, 0x7e, 0x7f); }
static inline uint8_t ig_fp8_e5m2_from_f32(float x) { return ig_fp8_encode_(x, 2, 15, 0x7b, 0x7e); }
static inline float ig_fp8_e4m3_to_f32(uint8_t c) { return ig_fp8_decode_(c, 3, 7, 0); }
static inline float ig_fp8_e5m2_to_f32(uint8_t c) { return ig_fp8_decode_(c, 2, 15, 1); }

/* FP8 checkpoints' weights (the model loader's host path and the CPU backend's weight_fp8 use these; the CUDA
 * kernel computes the same): lut[c] = the value of code c (F8_E5M2 when e5m2, else F8_E4M3) */
static inline void ig_fp8_table(float lut[256], int e5m2) {
  for (int c = 0; c < 256; c++) lut[c] = e5m2 ? ig_fp8_e5m2_to_f32((uint8_t)c) : ig_fp8_e4m3_to_f32((uint8_t)c);
}
/* One row of an FP8 weight, columns [c0, c0 + n): out[j] = bf16(lut[codes[j]] * srow[(c0 + j) / bc]), the product in
 * f32 and one rounding to nearest even (as `weight.float() * scale` then `.to(torch.bfloat16)`); srow: the row's
 * scales, one per bc columns */
static inline void ig_fp8_dequant_row(uint16_t *out, const uint8_t *codes, const float *lut, const float *srow, int64_t c0,
                                      int64_t bc, int64_t n) {
  for (int64_t j = 0; j < n;) {
    const int64_t blk = (c0 + j) / bc, end = (blk + 1) * bc - c0 < n ? (blk + 1) * bc - c0 : n;
    const float s = srow[blk];
    for (; j < end; j++) out[j] = ig_f32_to_bf16(lut[codes[j]] * s);
  }
}

/* x rounded through kv_dtype's format (ig_kv_dtype; IG_KV_AUTO: x unchanged) */
static inline float ig_fp8_round(int kv_dtype, float x) {
  if (kv_dtype == 1) return ig_fp8_e4m3_to_f32(ig_fp8_e4m3_from_f32(x));
  if (kv_dtype == 2) return ig_fp8_e5m2_to_f32(ig_fp8_e5m2_from_f32(x));
  return x;
}
#endif
