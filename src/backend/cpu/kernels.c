/* backend/cpu/kernels: see kernels.h. Two implementations of the same arithmetic: an AVX2+FMA one selected
 * at run time, and portable C with fmaf that follows the same lane layout (so both give the same sums). */
#include "backend/cpu/kernels.h"
#include <math.h>
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#define IG_X86 1
#endif

float ig_f16_to_f32(uint16_t h) {
  uint32_t s = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 31, m = h & 1023, u;
  if (e == 0) {
    if (m == 0) {
      u = s;
    } else { /* subnormal: renormalise */
      e = 127 - 15 + 1;
      while (!(m & 1024)) {
        m <<= 1;
        e--;
      }
      u = s | (e << 23) | ((m & 1023) << 13);
    }
  } else if (e == 31) {
    u = s | 0x7f800000u | (m << 13);
  } else {
    u = s | ((e + 127 - 15) << 23) | (m << 13);
  }
  union { uint32_t u; float f; } v = {u};
  return v.f;
}

static inline float load_w(const void *w, ig_dtype dt, int64_t i) {
  switch (dt) {
  case IG_DT_BF16: return ig_bf16_to_f32(((const uint16_t *)w)[i]);
  case IG_DT_F16: return ig_f16_to_f32(((const uint16_t *)w)[i]);
  default: return ((const float *)w)[i];
  }
}

/* ---------------------------------------------------------------------------------------------------- */
/* portable version: acc0 = lanes 0..7 of each 16-chunk, acc1 = lanes 8..15, then the fixed reduction */

static float reduce16(const float a0[8], const float a1[8]) {
  float s[8];
  for (int l = 0; l < 8; l++) s[l] = a0[l] + a1[l];
  /* same tree as hsum256 below: (0+4,1+5,2+6,3+7) -> (0+2,1+3) -> 0+1 */
  float t0 = s[0] + s[4], t1 = s[1] + s[5], t2 = s[2] + s[6], t3 = s[3] + s[7];
  float u0 = t0 + t2, u1 = t1 + t3;
  return u0 + u1;
}

static float dot_scalar(const float *x, const void *w, ig_dtype dt, int64_t n) {
  float a0[8] = {0}, a1[8] = {0};
  int64_t k = 0;
  for (; k + 16 <= n; k += 16)
    for (int l = 0; l < 8; l++) {
      a0[l] = fmaf(x[k + l], load_w(w, dt, k + l), a0[l]);
      a1[l] = fmaf(x[k + 8 + l], load_w(w, dt, k + 8 + l), a1[l]);
    }
  float tail = 0;
  for (; k < n; k++) tail = fmaf(x[k], load_w(w, dt, k), tail);
  return reduce16(a0, a1) + tail;
}

static void matvec_scalar(const float *x, int64_t ldx, const int32_t *rows, int nrows, const void *w, ig_dtype dt,
                          int64_t n, int64_t o0, int64_t o1, float *out, int64_t ldo) {
  size_t es = ig_dtype_size(dt);
  for (int64_t o = o0; o < o1; o++) {
    const void *wr = (const char *)w + (size_t)o * (size_t)n * es;
    for (int r = 0; r < nrows; r++) out[rows[r] * ldo + o] = dot_scalar(x + rows[r] * ldx, wr, dt, n);
  }
}

/* ---------------------------------------------------------------------------------------------------- */
/* AVX2 + FMA + F16C */
#ifdef IG_X86
#define IG_AVX2 __attribute__((target("avx2,fma,f16c")))

IG_AVX2 static inline float hsum256(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
  __m128 t = _mm_add_ps(lo, hi);                        /* (0+4, 1+5, 2+6, 3+7) */
  __m128 u = _mm_add_ps(t, _mm_movehl_ps(t, t));       /* (t0+t2, t1+t3, ..) */
  __m128 s = _mm_add_ss(u, _mm_shuffle_ps(u, u, 0x55)); /* u0 + u1 */
  return _mm_cvtss_f32(s);
}

/* 8 weights at w[k..k+8) as f32 */
IG_AVX2 static inline __m256 load8(const void *w, ig_dtype dt, int64_t k) {
  if (dt == IG_DT_BF16) {
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + k));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  if (dt == IG_DT_F16) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)w + k)));
  return _mm256_loadu_ps((const float *)w + k);
}

IG_AVX2 static float tail_avx2(const float *x, const void *w, ig_dtype dt, int64_t k, int64_t n) {
  float t = 0;
  for (; k < n; k++) t = fmaf(x[k], load_w(w, dt, k), t);
  return t;
}

/* One x row against 4 consecutive weight rows (8 accumulators keep both FMA ports busy). */
IG_AVX2 static void dot_1x4(const float *x, const void *w, ig_dtype dt, int64_t n, size_t wstride, float out[4]) {
  const char *wb = w;
  __m256 a0[4], a1[4];
  for (int j = 0; j < 4; j++) a0[j] = a1[j] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 16 <= n; k += 16) {
    __m256 x0 = _mm256_loadu_ps(x + k), x1 = _mm256_loadu_ps(x + k + 8);
    for (int j = 0; j < 4; j++) {
      a0[j] = _mm256_fmadd_ps(x0, load8(wb + j * wstride, dt, k), a0[j]);
      a1[j] = _mm256_fmadd_ps(x1, load8(wb + j * wstride, dt, k + 8), a1[j]);
    }
  }
  for (int j = 0; j < 4; j++)
    out[j] = hsum256(_mm256_add_ps(a0[j], a1[j])) + tail_avx2(x, wb + j * wstride, dt, k, n);
}

/* Up to 4 x rows against one weight row (the weight row is converted once per chunk). */
IG_AVX2 static void dot_rx1(const float *const *xs, int nr, const void *w, ig_dtype dt, int64_t n, float *out) {
  __m256 a0[4], a1[4];
  for (int j = 0; j < 4; j++) a0[j] = a1[j] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 16 <= n; k += 16) {
    __m256 w0 = load8(w, dt, k), w1 = load8(w, dt, k + 8);
    for (int j = 0; j < nr; j++) {
      a0[j] = _mm256_fmadd_ps(_mm256_loadu_ps(xs[j] + k), w0, a0[j]);
      a1[j] = _mm256_fmadd_ps(_mm256_loadu_ps(xs[j] + k + 8), w1, a1[j]);
    }
  }
  for (int j = 0; j < nr; j++) out[j] = hsum256(_mm256_add_ps(a0[j], a1[j])) + tail_avx2(xs[j], w, dt, k, n);
}

IG_AVX2 static void matvec_avx2(const float *x, int64_t ldx, const int32_t *rows, int nrows, const void *w,
                                ig_dtype dt, int64_t n, int64_t o0, int64_t o1, float *out, int64_t ldo) {
  size_t wstride = (size_t)n * ig_dtype_size(dt);
  const char *wb = w;
  if (nrows == 1) {
    const float *xr = x + rows[0] * ldx;
    float *orow = out + rows[0] * ldo;
    int64_t o = o0;
    for (; o + 4 <= o1; o += 4) {
      if (o + 16 <= o1) _mm_prefetch(wb + (size_t)(o + 8) * wstride, _MM_HINT_T0);
      dot_1x4(xr, wb + (size_t)o * wstride, dt, n, wstride, orow + o);
    }
    for (; o < o1; o++) dot_rx1(&xr, 1, wb + (size_t)o * wstride, dt, n, orow + o);
    return;
  }
  for (int64_t o = o0; o < o1; o++) {
    const void *wr = wb + (size_t)o * wstride;
    for (int r = 0; r < nrows; r += 4) {
      int nr = nrows - r < 4 ? nrows - r : 4;
      const float *xs[4];
      float res[4];
      for (int j = 0; j < nr; j++) xs[j] = x + rows[r + j] * ldx;
      dot_rx1(xs, nr, wr, dt, n, res);
      for (int j = 0; j < nr; j++) out[rows[r + j] * ldo + o] = res[j];
    }
  }
}

IG_AVX2 static float dot_avx2(const float *a, const float *b, int64_t n) {
  float r;
  dot_rx1(&a, 1, b, IG_DT_F32, n, &r);
  return r;
}

IG_AVX2 static void axpy_avx2(float *y, float a, const float *x, int64_t n) {
  __m256 va = _mm256_set1_ps(a);
  int64_t k = 0;
  for (; k + 8 <= n; k += 8) _mm256_storeu_ps(y + k, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + k), _mm256_loadu_ps(y + k)));
  for (; k < n; k++) y[k] = fmaf(a, x[k], y[k]);
}

IG_AVX2 static void to_f32_avx2(const void *src, ig_dtype dt, float *dst, int64_t n) {
  int64_t k = 0;
  for (; k + 8 <= n; k += 8) _mm256_storeu_ps(dst + k, load8(src, dt, k));
  for (; k < n; k++) dst[k] = load_w(src, dt, k);
}
#endif

/* ---------------------------------------------------------------------------------------------------- */

static int use_avx2 = -1;

void ig_cpu_kernels_init(void) {
  if (use_avx2 >= 0) return;
#ifdef IG_X86
  __builtin_cpu_init();
  use_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
#else
  use_avx2 = 0;
#endif
}

const char *ig_cpu_kernels_name(void) {
  ig_cpu_kernels_init();
  return use_avx2 ? "avx2" : "scalar";
}

void ig_cpu_matvec(const float *x, int64_t ldx, const int32_t *rows, int nrows, const void *w, ig_dtype wdt,
                   int64_t n, int64_t o0, int64_t o1, float *out, int64_t ldo) {
#ifdef IG_X86
  if (use_avx2 > 0) {
    matvec_avx2(x, ldx, rows, nrows, w, wdt, n, o0, o1, out, ldo);
    return;
  }
#endif
  matvec_scalar(x, ldx, rows, nrows, w, wdt, n, o0, o1, out, ldo);
}

float ig_cpu_dot(const float *a, const float *b, int64_t n) {
#ifdef IG_X86
  if (use_avx2 > 0) return dot_avx2(a, b, n);
#endif
  return dot_scalar(a, b, IG_DT_F32, n);
}

void ig_cpu_to_f32(const void *src, ig_dtype dt, float *dst, int64_t n) {
#ifdef IG_X86
  if (use_avx2 > 0) {
    to_f32_avx2(src, dt, dst, n);
    return;
  }
#endif
  if (dt == IG_DT_F32) {
    memcpy(dst, src, (size_t)n * 4);
    return;
  }
  for (int64_t k = 0; k < n; k++) dst[k] = load_w(src, dt, k);
}

void ig_cpu_axpy(float *y, float a, const float *x, int64_t n) {
#ifdef IG_X86
  if (use_avx2 > 0) {
    axpy_avx2(y, a, x, n);
    return;
  }
#endif
  for (int64_t k = 0; k < n; k++) y[k] = fmaf(a, x[k], y[k]);
}
