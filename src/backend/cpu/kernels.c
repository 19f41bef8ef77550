/* backend/cpu/kernels: see kernels.h. Three implementations of the same arithmetic: AVX-512 (one 16-lane
 * accumulator per dot, whose halves are exactly AVX2's two 8-lane ones), AVX2+FMA, and portable C with fmaf
 * that follows the same lane layout; one is selected at run time and all give the same bits. Multi-row
 * matvec applies each tile of weight rows (read once, converted once per 16-element chunk) to a tile of x
 * rows held in registers; each (row, output) pair keeps its own accumulator, so its sum is the 1-row sum. */
#include "backend/cpu/kernels.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#define IG_X86 1
#endif

static inline float load_w(const void *w, ig_dtype dt, int64_t i) {
  switch (dt) {
  case IG_DT_BF16: return ig_bf16_to_f32(((const uint16_t *)w)[i]);
  case IG_DT_F16: return ig_f16_to_f32(((const uint16_t *)w)[i]);
  default: return ((const float *)w)[i];
  }
}

/* ---------------------------------------------------------------------------------------------------- */
/* portable version: acc0 = lanes 0..7 of each 16-chunk, acc1 = lanes 8..15, then the fixed reduction */

static float reduce8(const float s[8]) {
  /* same tree as hsum256 below: (0+4,1+5,2+6,3+7) -> (0+2,1+3) -> 0+1 */
  float t0 = s[0] + s[4], t1 = s[1] + s[5], t2 = s[2] + s[6], t3 = s[3] + s[7];
  float u0 = t0 + t2, u1 = t1 + t3;
  return u0 + u1;
}

static float reduce16(const float a0[8], const float a1[8]) {
  float s[8];
  for (int l = 0; l < 8; l++) s[l] = a0[l] + a1[l];
  return reduce8(s);
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

/* dot over n with one 8-lane accumulator (attention's q.k), same tree, then the tail */
static float dot8_scalar(const float *a, const float *b, int n) {
  float s[8] = {0};
  int k = 0;
  for (; k + 8 <= n; k += 8)
    for (int l = 0; l < 8; l++) s[l] = fmaf(a[k + l], b[k + l], s[l]);
  float tail = 0;
  for (; k < n; k++) tail = fmaf(a[k], b[k], tail);
  return reduce8(s) + tail;
}

/* exp: x = n ln2 + r, |r| <= ln2/2; exp(r) by Cephes' degree-6 polynomial; times 2^n via the exponent bits.
 * Every step is one IEEE operation that the vector version performs identically. */
#define EXP_LO -87.0f
#define EXP_HI 88.0f
#define EXP_LOG2E 1.44269504088896341f
#define EXP_C1 -0.693359375f
#define EXP_C2 2.12194440e-4f
#define EXP_P0 1.9875691500e-4f
#define EXP_P1 1.3981999507e-3f
#define EXP_P2 8.3334519073e-3f
#define EXP_P3 4.1665795894e-2f
#define EXP_P4 1.6666665459e-1f
#define EXP_P5 5.0000001201e-1f

static float exp_scalar(float x) {
  if (x != x) return x;
  if (x <= EXP_LO) return 0.0f;
  if (x > EXP_HI) return INFINITY;
  float n = rintf(x * EXP_LOG2E);
  float r = fmaf(n, EXP_C1, x);
  r = fmaf(n, EXP_C2, r);
  float p = fmaf(EXP_P0, r, EXP_P1);
  p = fmaf(p, r, EXP_P2);
  p = fmaf(p, r, EXP_P3);
  p = fmaf(p, r, EXP_P4);
  p = fmaf(p, r, EXP_P5);
  float z = r * r;
  float y = fmaf(p, z, r) + 1.0f;
  union { uint32_t u; float f; } s = {(uint32_t)((int32_t)n + 127) << 23};
  return y * s.f;
}

static void silu_mul_scalar(float *o, const float *g, const float *u, int64_t i0, int64_t n) {
  for (int64_t i = i0; i < n; i++) o[i] = g[i] / (1.0f + exp_scalar(-g[i])) * u[i];
}

/* Softmax weights of one score row in place: e[t] = exp(s[t] - max); returns 1 / sum (sum in 8 lanes over
 * chunks of 8, the fixed tree, then the tail in order). */
static float softmax_scalar(float *s, int nk) {
  float mx = -INFINITY;
  for (int t = 0; t < nk; t++) mx = s[t] > mx ? s[t] : mx;
  float acc[8] = {0};
  int t = 0;
  for (; t + 8 <= nk; t += 8)
    for (int l = 0; l < 8; l++) {
      s[t + l] = exp_scalar(s[t + l] - mx);
      acc[l] += s[t + l];
    }
  float sum = reduce8(acc);
  for (; t < nk; t++) {
    s[t] = exp_scalar(s[t] - mx);
    sum += s[t];
  }
  return 1.0f / sum;
}

/* Gemma2's attention softcapping of n scores in place: s = cap * tanh(s / cap) (tanhf on every path, so the scalar
 * and vector kernels agree) */
static void softcap_scores(float *s, int64_t n, float cap) {
  for (int64_t i = 0; i < n; i++) s[i] = cap * tanhf(s[i] / cap);
}

/* Attention's value sum for one head: o[d] = (sum over t of e[t] * v_t[d]) * inv, with four accumulators
 * (key t goes to acc[t % 4]; four independent FMA chains) summed as (a0 + a1) + (a2 + a3). */
static void attn_scalar(const float *q, int G, int hd, const float *K, const float *V, const int64_t *koff, int nk,
                        float scale, float softcap, float *sc, float *out) {
  for (int t = 0; t < nk; t++)
    for (int g = 0; g < G; g++) sc[(size_t)g * nk + t] = dot8_scalar(q + g * hd, K + koff[t], hd) * scale;
  if (softcap > 0) softcap_scores(sc, (int64_t)G * nk, softcap);
  for (int g = 0; g < G; g++) {
    float *s = sc + (size_t)g * nk, inv = softmax_scalar(s, nk), *o = out + g * hd;
    for (int d = 0; d < hd; d++) {
      float a[4] = {0, 0, 0, 0};
      for (int t = 0; t < nk; t++) a[t & 3] = fmaf(s[t], V[koff[t] + d], a[t & 3]);
      o[d] = ((a[0] + a[1]) + (a[2] + a[3])) * inv;
    }
  }
}

/* ---------------------------------------------------------------------------------------------------- */
/* AVX2 + FMA + F16C */
#ifdef IG_X86
#define IG_AVX2 __attribute__((target("avx2,fma,f16c")))
#define IG_INLINE static inline __attribute__((always_inline))

IG_AVX2 IG_INLINE float hsum256(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
  __m128 t = _mm_add_ps(lo, hi);                        /* (0+4, 1+5, 2+6, 3+7) */
  __m128 u = _mm_add_ps(t, _mm_movehl_ps(t, t));       /* (t0+t2, t1+t3, ..) */
  __m128 s = _mm_add_ss(u, _mm_shuffle_ps(u, u, 0x55)); /* u0 + u1 */
  return _mm_cvtss_f32(s);
}

/* 8 weights at w[k..k+8) as f32 */
IG_AVX2 IG_INLINE __m256 load8(const void *w, ig_dtype dt, int64_t k) {
  if (dt == IG_DT_BF16) {
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + k));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  if (dt == IG_DT_F16) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)w + k)));
  return _mm256_loadu_ps((const float *)w + k);
}

IG_AVX2 IG_INLINE float tail_w(const float *x, const void *w, ig_dtype dt, int64_t k, int64_t n) {
  float t = 0;
  for (; k < n; k++) t = fmaf(x[k], load_w(w, dt, k), t);
  return t;
}

/* NR x rows against NO consecutive weight rows; two 8-lane accumulators per pair (NR * NO <= 4 keeps all
 * of them in the 16 ymm registers). dt and the tile shape are compile-time constants after inlining. */
IG_AVX2 IG_INLINE void tile_avx2(const float *const *xs, const char *w, size_t wstride, ig_dtype dt, int64_t n,
                                 float *const *outs, const int NR, const int NO) {
  __m256 a0[2][4], a1[2][4];
  for (int r = 0; r < NR; r++)
    for (int o = 0; o < NO; o++) a0[r][o] = a1[r][o] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 16 <= n; k += 16) {
    /* x chunks first, then one weight row's chunk at a time (keeps everything in the 16 registers) */
    __m256 x0[2], x1[2];
    for (int r = 0; r < NR; r++) x0[r] = _mm256_loadu_ps(xs[r] + k), x1[r] = _mm256_loadu_ps(xs[r] + k + 8);
    for (int o = 0; o < NO; o++) {
      __m256 w0 = load8(w + o * wstride, dt, k), w1 = load8(w + o * wstride, dt, k + 8);
      for (int r = 0; r < NR; r++) {
        a0[r][o] = _mm256_fmadd_ps(x0[r], w0, a0[r][o]);
        a1[r][o] = _mm256_fmadd_ps(x1[r], w1, a1[r][o]);
      }
    }
  }
  for (int r = 0; r < NR; r++)
    for (int o = 0; o < NO; o++)
      outs[r][o] = hsum256(_mm256_add_ps(a0[r][o], a1[r][o])) + tail_w(xs[r], w + o * wstride, dt, k, n);
}

#define MV_BODY(TILE, RT, OT1)                                                                                         \
  do {                                                                                                                 \
    size_t wstride = (size_t)n * ig_dtype_size(dt);                                                                    \
    const char *wb = w;                                                                                                \
    int64_t o = o0;                                                                                                    \
    for (; o < o1; o += (o1 - o >= OT1 ? OT1 : 1)) {                                                                   \
      int no = o1 - o >= OT1 ? OT1 : 1;                                                                                \
      const char *wo = wb + (size_t)o * wstride;                                                                       \
      if (o + 2 * OT1 <= o1) _mm_prefetch(wo + (size_t)(2 * OT1) * wstride, _MM_HINT_T0);                           \
      for (int r = 0; r < nrows; r += RT) {                                                                            \
        int nr = nrows - r < RT ? nrows - r : RT;                                                                      \
        const float *xs[RT];                                                                                           \
        float *outs[RT];                                                                                               \
        for (int j = 0; j < nr; j++) {                                                                                 \
          xs[j] = x + rows[r + j] * ldx;                                                                               \
          outs[j] = out + rows[r + j] * ldo + o;                                                                       \
        }                                                                                                              \
        TILE(xs, wo, wstride, n, outs, nr, no);                                                                        \
      }                                                                                                                \
    }                                                                                                                  \
  } while (0)

/* one function per weight dtype, so that the tiles' loads are specialised */
#define AVX2_TILES(DT, NAME)                                                                                           \
  IG_AVX2 static void NAME(const float *const *xs, const char *w, size_t ws, int64_t n, float *const *outs, int nr,   \
                           int no) {                                                                                   \
    if (no == 4) tile_avx2(xs, w, ws, DT, n, outs, 1, 4);                                                              \
    else if (no == 2 && nr == 2) tile_avx2(xs, w, ws, DT, n, outs, 2, 2);                                              \
    else if (no == 2) tile_avx2(xs, w, ws, DT, n, outs, 1, 2);                                                         \
    else if (nr == 2) tile_avx2(xs, w, ws, DT, n, outs, 2, 1);                                                         \
    else tile_avx2(xs, w, ws, DT, n, outs, 1, 1);                                                                      \
  }
AVX2_TILES(IG_DT_F32, tiles_avx2_f32)
AVX2_TILES(IG_DT_BF16, tiles_avx2_bf16)
AVX2_TILES(IG_DT_F16, tiles_avx2_f16)

IG_AVX2 static void matvec_avx2(const float *x, int64_t ldx, const int32_t *rows, int nrows, const void *w,
                                ig_dtype dt, int64_t n, int64_t o0, int64_t o1, float *out, int64_t ldo) {
  void (*tiles)(const float *const *, const char *, size_t, int64_t, float *const *, int, int) =
      dt == IG_DT_BF16 ? tiles_avx2_bf16 : dt == IG_DT_F16 ? tiles_avx2_f16 : tiles_avx2_f32;
  if (nrows == 1) MV_BODY(tiles, 1, 4); /* 1 x 4: eight accumulators in flight */
  else MV_BODY(tiles, 2, 2);            /* 2 x 2: each weight chunk serves two rows */
}

IG_AVX2 static float dot_avx2(const float *a, const float *b, int64_t n) {
  float r, *rp = &r;
  tile_avx2(&a, (const char *)b, 0, IG_DT_F32, n, &rp, 1, 1);
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

/* exp_scalar, 8 lanes at a time */
IG_AVX2 IG_INLINE __m256 exp8(__m256 x) {
  __m256 xc = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(EXP_LO)), _mm256_set1_ps(EXP_HI));
  __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(EXP_LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fmadd_ps(n, _mm256_set1_ps(EXP_C1), xc);
  r = _mm256_fmadd_ps(n, _mm256_set1_ps(EXP_C2), r);
  __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(EXP_P0), r, _mm256_set1_ps(EXP_P1));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_P2));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_P3));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_P4));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_P5));
  __m256 z = _mm256_mul_ps(r, r);
  __m256 y = _mm256_add_ps(_mm256_fmadd_ps(p, z, r), _mm256_set1_ps(1.0f));
  __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  y = _mm256_mul_ps(y, _mm256_castsi256_ps(e));
  y = _mm256_blendv_ps(y, _mm256_setzero_ps(), _mm256_cmp_ps(x, _mm256_set1_ps(EXP_LO), _CMP_LE_OQ));
  y = _mm256_blendv_ps(y, _mm256_set1_ps(INFINITY), _mm256_cmp_ps(x, _mm256_set1_ps(EXP_HI), _CMP_GT_OQ));
  return _mm256_blendv_ps(y, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

IG_AVX2 static void silu_mul_avx2(float *o, const float *g, const float *u, int64_t n) {
  int64_t i = 0;
  __m256 one = _mm256_set1_ps(1.0f), neg = _mm256_set1_ps(-0.0f);
  for (; i + 8 <= n; i += 8) {
    __m256 gv = _mm256_loadu_ps(g + i);
    __m256 e = exp8(_mm256_xor_ps(gv, neg));
    _mm256_storeu_ps(o + i, _mm256_mul_ps(_mm256_div_ps(gv, _mm256_add_ps(one, e)), _mm256_loadu_ps(u + i)));
  }
  silu_mul_scalar(o, g, u, i, n);
}

IG_AVX2 static float softmax_avx2(float *s, int nk) {
  __m256 vm = _mm256_set1_ps(-INFINITY);
  int t = 0;
  for (; t + 8 <= nk; t += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(s + t));
  float m8[8], mx = -INFINITY;
  _mm256_storeu_ps(m8, vm);
  for (int l = 0; l < 8; l++) mx = m8[l] > mx ? m8[l] : mx;
  for (; t < nk; t++) mx = s[t] > mx ? s[t] : mx;
  __m256 vmx = _mm256_set1_ps(mx), acc = _mm256_setzero_ps();
  for (t = 0; t + 8 <= nk; t += 8) {
    __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(s + t), vmx));
    _mm256_storeu_ps(s + t, e);
    acc = _mm256_add_ps(acc, e);
  }
  float sum = hsum256(acc);
  for (; t < nk; t++) {
    s[t] = exp_scalar(s[t] - mx);
    sum += s[t];
  }
  return 1.0f / sum;
}

IG_AVX2 IG_INLINE float dot8_avx2(const float *a, const float *b, int n) {
  __m256 acc = _mm256_setzero_ps();
  int k = 0;
  for (; k + 8 <= n; k += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + k), _mm256_loadu_ps(b + k), acc);
  float tail = 0;
  for (; k < n; k++) tail = fmaf(a[k], b[k], tail);
  return hsum256(acc) + tail;
}

/* hsum256 of eight vectors at once, by the same tree (each add has the same two operands): returns
 * (hsum(v[0]), .., hsum(v[7])) */
IG_AVX2 IG_INLINE __m256 hsum256x8(const __m256 v[8]) {
  /* pairs (k, k+4) share a register after step 1, so that the result comes out in order */
  __m256 T[4];
  for (int i = 0; i < 4; i++)
    T[i] = _mm256_add_ps(_mm256_permute2f128_ps(v[i], v[i + 4], 0x20), _mm256_permute2f128_ps(v[i], v[i + 4], 0x31));
  /* T[i] = [t(v_i) | t(v_i+4)], t = (0+4, 1+5, 2+6, 3+7) */
  __m256 U0 = _mm256_add_ps(_mm256_unpacklo_ps(T[0], T[1]), _mm256_unpackhi_ps(T[0], T[1]));
  __m256 U1 = _mm256_add_ps(_mm256_unpacklo_ps(T[2], T[3]), _mm256_unpackhi_ps(T[2], T[3]));
  /* U0 = [u0(v0), u0(v1), u1(v0), u1(v1) | same for v4, v5]; U1 likewise for v2, v3 | v6, v7 */
  __m256 a = _mm256_shuffle_ps(U0, U1, _MM_SHUFFLE(1, 0, 1, 0)), b = _mm256_shuffle_ps(U0, U1, _MM_SHUFFLE(3, 2, 3, 2));
  return _mm256_add_ps(a, b); /* [s(v0), s(v1), s(v2), s(v3) | s(v4) .. s(v7)] */
}

IG_AVX2 static void attn_avx2(const float *q, int G, int hd, const float *K, const float *V, const int64_t *koff,
                              int nk, float scale, float softcap, float *sc, float *out) {
  __m256 vscale = _mm256_set1_ps(scale);
  for (int g = 0; g < G; g++) {
    const float *qg = q + g * hd;
    float *s = sc + (size_t)g * nk;
    int t = 0;
    if (hd % 8 == 0)
      for (; t + 8 <= nk; t += 8) { /* eight keys: their dot8 accumulators, then one transposed reduction */
        __m256 acc[8];
        for (int j = 0; j < 8; j++) acc[j] = _mm256_setzero_ps();
        for (int d = 0; d < hd; d += 8) {
          __m256 qv = _mm256_loadu_ps(qg + d);
          for (int j = 0; j < 8; j++) acc[j] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(K + koff[t + j] + d), acc[j]);
        }
        /* + tail (0: hd % 8 == 0), as dot8_avx2 does */
        __m256 r = _mm256_add_ps(hsum256x8(acc), _mm256_setzero_ps());
        _mm256_storeu_ps(s + t, _mm256_mul_ps(r, vscale));
      }
    for (; t < nk; t++) s[t] = dot8_avx2(qg, K + koff[t], hd) * scale;
  }
  if (softcap > 0) softcap_scores(sc, (int64_t)G * nk, softcap);
  for (int g = 0; g < G; g++) {
    float *s = sc + (size_t)g * nk, inv = softmax_avx2(s, nk), *o = out + g * hd;
    __m256 vinv = _mm256_set1_ps(inv);
    int d = 0;
    for (; d + 8 <= hd; d += 8) {
      __m256 a[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
      int t = 0;
      for (; t + 4 <= nk; t += 4)
        for (int j = 0; j < 4; j++)
          a[j] = _mm256_fmadd_ps(_mm256_set1_ps(s[t + j]), _mm256_loadu_ps(V + koff[t + j] + d), a[j]);
      for (int j = 0; t < nk; t++, j++) a[j] = _mm256_fmadd_ps(_mm256_set1_ps(s[t]), _mm256_loadu_ps(V + koff[t] + d), a[j]);
      __m256 sum = _mm256_add_ps(_mm256_add_ps(a[0], a[1]), _mm256_add_ps(a[2], a[3]));
      _mm256_storeu_ps(o + d, _mm256_mul_ps(sum, vinv));
    }
    for (; d < hd; d++) {
      float a[4] = {0, 0, 0, 0};
      for (int t = 0; t < nk; t++) a[t & 3] = fmaf(s[t], V[koff[t] + d], a[t & 3]);
      o[d] = ((a[0] + a[1]) + (a[2] + a[3])) * inv;
    }
  }
}

/* ---------------------------------------------------------------------------------------------------- */
/* AVX-512: one zmm accumulator per (row, output) = AVX2's (a0 | a1); 4 x 4 tiles use 16 of the 32 registers */
#define IG_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))

IG_AVX512 IG_INLINE __m512 load16(const void *w, ig_dtype dt, int64_t k) {
  if (dt == IG_DT_BF16) {
    __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)w + k));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
  if (dt == IG_DT_F16) return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)w + k)));
  return _mm512_loadu_ps((const float *)w + k);
}

IG_AVX512 IG_INLINE float hsum512(__m512 a) {
  __m256 lo = _mm512_castps512_ps256(a), hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1));
  return hsum256(_mm256_add_ps(lo, hi));
}

/* NR x rows against NO consecutive weight rows, one 16-lane sum per pair in registers; then the sums are
 * reduced eight at a time (hsum256x8: the same adds as hsum512; for small n they cost as much as the FMAs)
 * and "+ tail" is one vector add. */
IG_AVX512 IG_INLINE void tile_avx512(const float *const *xs, const char *w, size_t wstride, ig_dtype dt, int64_t n,
                                     float *const *outs, const int NR, const int NO) {
  __m512 acc[4][8];
  for (int r = 0; r < NR; r++)
    for (int o = 0; o < NO; o++) acc[r][o] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 16 <= n; k += 16) {
    __m512 wv[8];
    for (int o = 0; o < NO; o++) wv[o] = load16(w + o * wstride, dt, k);
    for (int r = 0; r < NR; r++) {
      __m512 xv = _mm512_loadu_ps(xs[r] + k);
      for (int o = 0; o < NO; o++) acc[r][o] = _mm512_fmadd_ps(xv, wv[o], acc[r][o]);
    }
  }
  __m256 v[32];
  float t[32], res[32];
  for (int r = 0; r < NR; r++)
    for (int o = 0; o < NO; o++) {
      __m512 a = acc[r][o];
      v[r * NO + o] = _mm256_add_ps(_mm512_castps512_ps256(a), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)));
      t[r * NO + o] = tail_w(xs[r], w + o * wstride, dt, k, n);
    }
  int i = 0;
  for (; i + 8 <= NR * NO; i += 8) _mm256_storeu_ps(res + i, _mm256_add_ps(hsum256x8(v + i), _mm256_loadu_ps(t + i)));
  for (; i < NR * NO; i++) res[i] = hsum256(v[i]) + t[i];
  for (int r = 0; r < NR; r++)
    for (int o = 0; o < NO; o++) outs[r][o] = res[r * NO + o];
}

#define AVX512_TILES(DT, NAME)                                                                                         \
  IG_AVX512 static void NAME(const float *const *xs, const char *w, size_t ws, int64_t n, float *const *outs, int nr,  \
                             int no) {                                                                                 \
    if (no == 8) tile_avx512(xs, w, ws, DT, n, outs, 1, 8);                                                            \
    else if (no == 4) {                                                                                                \
      switch (nr) {                                                                                                    \
      case 4: tile_avx512(xs, w, ws, DT, n, outs, 4, 4); break;                                                        \
      case 3: tile_avx512(xs, w, ws, DT, n, outs, 3, 4); break;                                                        \
      case 2: tile_avx512(xs, w, ws, DT, n, outs, 2, 4); break;                                                        \
      default: tile_avx512(xs, w, ws, DT, n, outs, 1, 4); break;                                                       \
      }                                                                                                                \
    } else {                                                                                                           \
      switch (nr) {                                                                                                    \
      case 4: tile_avx512(xs, w, ws, DT, n, outs, 4, 1); break;                                                        \
      case 3: tile_avx512(xs, w, ws, DT, n, outs, 3, 1); break;                                                        \
      case 2: tile_avx512(xs, w, ws, DT, n, outs, 2, 1); break;                                                        \
      default: tile_avx512(xs, w, ws, DT, n, outs, 1, 1); break;                                                       \
      }                                                                                                                \
    }                                                                                                                  \
  }
AVX512_TILES(IG_DT_F32, tiles_avx512_f32)
AVX512_TILES(IG_DT_BF16, tiles_avx512_bf16)
AVX512_TILES(IG_DT_F16, tiles_avx512_f16)

/* Tiles of 4 weight rows x 4 x rows (1 x 8 for a single x row): each weight chunk is read once per 4 x rows
 * (in L1 for the next ones). (Blocking over k as well, to keep x in L1, measured slower.) */
IG_AVX512 static void matvec_avx512(const float *x, int64_t ldx, const int32_t *rows, int nrows, const void *w,
                                    ig_dtype dt, int64_t n, int64_t o0, int64_t o1, float *out, int64_t ldo) {
  void (*tiles)(const float *const *, const char *, size_t, int64_t, float *const *, int, int) =
      dt == IG_DT_BF16 ? tiles_avx512_bf16 : dt == IG_DT_F16 ? tiles_avx512_f16 : tiles_avx512_f32;
  if (nrows == 1) MV_BODY(tiles, 1, 8);
  else MV_BODY(tiles, 4, 4);
}
#endif

/* ---------------------------------------------------------------------------------------------------- */

enum { K_SCALAR = 0, K_AVX2 = 1, K_AVX512 = 2 };
static int level = -1, level_max = -1;
static const char *const level_names[] = {"scalar", "avx2", "avx512"};

int ig_cpu_kernels_set(const char *name) {
  ig_cpu_kernels_init();
  for (int i = 0; i <= level_max; i++)
    if (!strcmp(name, level_names[i])) {
      level = i;
      return 0;
    }
  return -1;
}

void ig_cpu_kernels_init(void) {
  if (level >= 0) return;
  level_max = K_SCALAR;
#ifdef IG_X86
  __builtin_cpu_init();
  /* clang 14's __builtin_cpu_supports knows no "f16c"; every AVX2+FMA x86 CPU has F16C (Haswell, Zen 1 on). */
#if defined(__clang__)
  int f16c = 1;
#else
  int f16c = __builtin_cpu_supports("f16c");
#endif
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c) {
    level_max = K_AVX2;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
      level_max = K_AVX512;
  }
#endif
  level = level_max;
  const char *e = getenv("IGNIS_CPU_KERNELS");
  if (e && *e) ig_cpu_kernels_set(e);
}

const char *ig_cpu_kernels_name(void) {
  ig_cpu_kernels_init();
  return level_names[level];
}

void ig_cpu_matvec(const float *x, int64_t ldx, const int32_t *rows, int nrows, const void *w, ig_dtype wdt,
                   int64_t n, int64_t o0, int64_t o1, float *out, int64_t ldo) {
#ifdef IG_X86
  if (level == K_AVX512) {
    matvec_avx512(x, ldx, rows, nrows, w, wdt, n, o0, o1, out, ldo);
    return;
  }
  if (level == K_AVX2) {
    matvec_avx2(x, ldx, rows, nrows, w, wdt, n, o0, o1, out, ldo);
    return;
  }
#endif
  matvec_scalar(x, ldx, rows, nrows, w, wdt, n, o0, o1, out, ldo);
}

float ig_cpu_dot(const float *a, const float *b, int64_t n) {
#ifdef IG_X86
  if (level >= K_AVX2) return dot_avx2(a, b, n);
#endif
  return dot_scalar(a, b, IG_DT_F32, n);
}

void ig_cpu_to_f32(const void *src, ig_dtype dt, float *dst, int64_t n) {
#ifdef IG_X86
  if (level >= K_AVX2) {
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
  if (level >= K_AVX2) {
    axpy_avx2(y, a, x, n);
    return;
  }
#endif
  for (int64_t k = 0; k < n; k++) y[k] = fmaf(a, x[k], y[k]);
}

float ig_cpu_expf(float x) { return exp_scalar(x); }

void ig_cpu_silu_mul(float *out, const float *g, const float *u, int64_t n) {
#ifdef IG_X86
  if (level >= K_AVX2) {
    silu_mul_avx2(out, g, u, n);
    return;
  }
#endif
  silu_mul_scalar(out, g, u, 0, n);
}

void ig_cpu_attn(const float *q, int G, int hd, const float *K, const float *V, const int64_t *koff, int nk,
                 float scale, float softcap, float *sc, float *out) {
#ifdef IG_X86
  if (level >= K_AVX2) {
    attn_avx2(q, G, hd, K, V, koff, nk, scale, softcap, sc, out);
    return;
  }
#endif
  attn_scalar(q, G, hd, K, V, koff, nk, scale, softcap, sc, out);
}
