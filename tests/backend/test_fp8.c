/* tests/backend/test_fp8: backend/fp8.h, the KV cache's FP8 formats on the host, against what NVIDIA's
 * cvt.rn.satfinite gives: every code decodes and re-encodes to itself (NaN and e5m2's infinities aside), ties go to
 * the even code, values past the largest finite one (and infinities) saturate, NaN stays NaN, zero keeps its sign;
 * and for random f32 values and every midpoint between neighbours the code is the nearest representable value. */
#include "backend/backend.h"
#include "backend/fp8.h"
#include "test.h"
#include <math.h>
#include <stdint.h>

typedef struct {
  const char *name;
  int kv;                          /* ig_kv_dtype */
  uint8_t (*enc)(float);
  float (*dec)(uint8_t);
  int mbits;
  uint8_t maxc;                    /* largest finite code */
  double maxv, min_sub;            /* its value; the smallest subnormal */
} fmt;

static const fmt E4M3 = {"e4m3", IG_KV_FP8_E4M3, ig_fp8_e4m3_from_f32, ig_fp8_e4m3_to_f32, 3, 0x7e, 448.0, 0x1p-9};
static const fmt E5M2 = {"e5m2", IG_KV_FP8_E5M2, ig_fp8_e5m2_from_f32, ig_fp8_e5m2_to_f32, 2, 0x7b, 57344.0, 0x1p-16};

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next_u64(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

static int is_nan_code(const fmt *f, uint8_t c) {
  uint8_t a = c & 0x7f;
  return f->kv == IG_KV_FP8_E4M3 ? a == 0x7f : a > 0x7c;
}

/* every code: NaN codes decode to NaN, the others back to themselves; positive finite values rise with the code */
static void test_codes(const fmt *f) {
  int bad = 0;
  for (int c = 0; c < 256; c++) {
    float x = f->dec((uint8_t)c);
    if (is_nan_code(f, (uint8_t)c)) {
      CHECK_MSG(isnan(x), "%s code 0x%02x decodes to %g, not NaN", f->name, c, (double)x);
      continue;
    }
    if (isinf(x)) { /* e5m2's 0x7c / 0xfc: satfinite gives the largest finite value of that sign */
      CHECK(f->kv == IG_KV_FP8_E5M2 && (c & 0x7f) == 0x7c);
      CHECK_EQ_INT(f->enc(x), (c & 0x80) | f->maxc);
      continue;
    }
    CHECK(!isnan(x));
    if (f->enc(x) != c) bad++;
    CHECK_MSG(f->enc(x) == c, "%s code 0x%02x -> %g -> 0x%02x", f->name, c, (double)x, f->enc(x));
    CHECK(!!signbit(x) == !!(c & 0x80));
    if (c > 0 && c <= f->maxc) CHECK(f->dec((uint8_t)(c - 1)) < x);
  }
  CHECK_EQ_INT(bad, 0);
  CHECK(f->dec(f->maxc) == (float)f->maxv);
  CHECK(f->dec(1) == (float)f->min_sub);
  CHECK(f->dec(0x80 | f->maxc) == -(float)f->maxv);
}

static void test_fixed(void) {
  /* ties to even: e4m3 steps 0.125 at 1 (1.0625 between 1 and 1.125; 1.1875 between 1.125 and 1.25), subnormal
   * step 2^-9 (2^-10 between 0 and 2^-9; 1.5 * 2^-9 between 2^-9 and 2 * 2^-9) */
  CHECK(ig_fp8_round(IG_KV_FP8_E4M3, 1.0625f) == 1.0f);
  CHECK(ig_fp8_round(IG_KV_FP8_E4M3, 1.1875f) == 1.25f);
  CHECK(ig_fp8_round(IG_KV_FP8_E4M3, 0x1p-10f) == 0.0f);
  CHECK(ig_fp8_round(IG_KV_FP8_E4M3, 1.5f * 0x1p-9f) == 2 * 0x1p-9f);
  CHECK(ig_fp8_round(IG_KV_FP8_E4M3, -1.1875f) == -1.25f);
  CHECK(ig_fp8_round(IG_KV_FP8_E4M3, 1.0625001f) == 1.125f); /* just past the tie */
  /* e5m2: step 0.25 at 1, subnormal step 2^-16 */
  CHECK(ig_fp8_round(IG_KV_FP8_E5M2, 1.125f) == 1.0f);
  CHECK(ig_fp8_round(IG_KV_FP8_E5M2, 1.375f) == 1.5f);
  CHECK(ig_fp8_round(IG_KV_FP8_E5M2, 0x1p-17f) == 0.0f);
  CHECK(ig_fp8_round(IG_KV_FP8_E5M2, 1.5f * 0x1p-16f) == 0x1p-15f);
  /* saturation: past the largest finite value (even where rounding would go up a binade) and infinities */
  CHECK_EQ_INT(ig_fp8_e4m3_from_f32(460.f), 0x7e);
  CHECK_EQ_INT(ig_fp8_e4m3_from_f32(464.f), 0x7e);
  CHECK_EQ_INT(ig_fp8_e4m3_from_f32(1e9f), 0x7e);
  CHECK_EQ_INT(ig_fp8_e4m3_from_f32(INFINITY), 0x7e);
  CHECK_EQ_INT(ig_fp8_e4m3_from_f32(-INFINITY), 0xfe);
  CHECK_EQ_INT(ig_fp8_e4m3_from_f32(-1e30f), 0xfe);
  CHECK(ig_fp8_round(IG_KV_FP8_E4M3, 460.f) == 448.f);
  CHECK(ig_fp8_round(IG_KV_FP8_E4M3, 1e9f) == 448.f);
  CHECK(ig_fp8_round(IG_KV_FP8_E4M3, INFINITY) == 448.f);
  CHECK(ig_fp8_round(IG_KV_FP8_E5M2, INFINITY) == 57344.f);
  CHECK(ig_fp8_round(IG_KV_FP8_E5M2, -INFINITY) == -57344.f);
  CHECK(ig_fp8_round(IG_KV_FP8_E5M2, 61440.f) == 57344.f);
  CHECK(ig_fp8_round(IG_KV_FP8_E5M2, 1e30f) == 57344.f);
  CHECK_EQ_INT(ig_fp8_e5m2_from_f32(INFINITY), 0x7b);
  /* NaN -> a NaN code, which decodes to NaN */
  CHECK_EQ_INT(ig_fp8_e4m3_from_f32(NAN) & 0x7f, 0x7f);
  CHECK(is_nan_code(&E5M2, ig_fp8_e5m2_from_f32(NAN)));
  CHECK(isnan(ig_fp8_round(IG_KV_FP8_E4M3, NAN)) && isnan(ig_fp8_round(IG_KV_FP8_E5M2, -NAN)));
  /* signed zero, and values that round to it keep their sign */
  CHECK_EQ_INT(ig_fp8_e4m3_from_f32(0.0f), 0x00);
  CHECK_EQ_INT(ig_fp8_e4m3_from_f32(-0.0f), 0x80);
  CHECK_EQ_INT(ig_fp8_e5m2_from_f32(-0.0f), 0x80);
  CHECK_EQ_INT(ig_fp8_e4m3_from_f32(-1e-30f), 0x80);
  CHECK_EQ_INT(ig_fp8_e5m2_from_f32(-0x1p-17f), 0x80);
  float nz = ig_fp8_round(IG_KV_FP8_E4M3, -0.0f);
  CHECK(nz == 0.0f && signbit(nz));
  CHECK(signbit(ig_fp8_round(IG_KV_FP8_E5M2, -1e-30f)));
  /* IG_KV_AUTO: unchanged, and the names */
  CHECK(ig_fp8_round(IG_KV_AUTO, 1.0625f) == 1.0625f);
  CHECK_EQ_STR(ig_kv_dtype_name(IG_KV_AUTO), "auto");
  CHECK_EQ_STR(ig_kv_dtype_name(IG_KV_FP8_E4M3), "fp8_e4m3fn");
  CHECK_EQ_INT(ig_kv_dtype_parse("fp8_e4m3fn"), IG_KV_FP8_E4M3);
  CHECK_EQ_INT(ig_kv_dtype_parse("fp8_e5m2"), IG_KV_FP8_E5M2);
  CHECK_EQ_INT(ig_kv_dtype_parse("fp8"), -1);
  CHECK_EQ_INT(ig_kv_dtype_parse("auto"), -1);
  CHECK_EQ_INT(ig_kv_dtype_parse(""), -1);
  CHECK_EQ_INT(ig_kv_dtype_parse(NULL), -1);
  CHECK_EQ_STR(ig_kv_dtype_name(IG_KV_FP8_E5M2), "fp8_e5m2");
  CHECK_EQ_STR(ig_kv_dtype_name(7), "?");
}

/* The code of x must be the nearest non-negative finite value of the table (codes 0..maxc, rising), ties to the
 * even code; past maxc: maxc. Sign: x's. Returns 0 when it is, else 1 (and says why). */
static int check_nearest(const fmt *f, const float *tab, float x) {
  uint8_t c = f->enc(x);
  double a = fabs((double)x);
  int want;
  if (a >= f->maxv) {
    want = f->maxc;
  } else {
    int lo = 0, hi = f->maxc; /* tab[lo] <= a < tab[hi] */
    while (hi - lo > 1) {
      int mid = (lo + hi) / 2;
      if (tab[mid] <= a) lo = mid;
      else hi = mid;
    }
    double dl = a - tab[lo], dh = tab[hi] - a;
    want = dl < dh ? lo : dh < dl ? hi : (lo & 1) ? hi : lo;
  }
  want |= signbit(x) ? 0x80 : 0;
  if (c == want) return 0;
  fprintf(stderr, "%s: %.9g (0x%08x) encodes to 0x%02x (%g), nearest 0x%02x (%g)\n", f->name, (double)x,
          (unsigned)(union { float f; uint32_t u; }){x}.u, c, (double)f->dec(c), want, (double)f->dec((uint8_t)want));
  return 1;
}

static void test_nearest(const fmt *f) {
  float tab[128];
  for (int c = 0; c <= f->maxc; c++) tab[c] = f->dec((uint8_t)c);
  int bad = 0, n = 0;
  /* random f32 values: exponents around the format's range (2^-20 .. 2^20 for e4m3, 2^-24 .. 2^18 for e5m2),
   * then raw bit patterns (mostly far outside it) */
  for (int i = 0; i < 300000; i++, n++) {
    uint64_t r = next_u64();
    float x;
    if (i % 3 == 2) {
      union { uint32_t u; float f; } u = {(uint32_t)(r >> 32)};
      x = u.f;
      if (isnan(x)) continue;
    } else {
      int e = (int)((r >> 40) % 42) - (f->kv == IG_KV_FP8_E4M3 ? 20 : 24);
      x = ldexpf(1.0f + (float)(r & 0x7fffff) / 0x1p23f, e) * (r >> 63 ? -1.f : 1.f);
    }
    bad += check_nearest(f, tab, x);
  }
  /* every midpoint between neighbours (a tie), and the f32 values on either side of it */
  for (int c = 0; c < f->maxc; c++) {
    float m = (float)(((double)tab[c] + tab[c + 1]) / 2); /* exact: one bit more than the format */
    float xs[3] = {nextafterf(m, 0.f), m, nextafterf(m, INFINITY)};
    for (int k = 0; k < 3; k++, n += 2) bad += check_nearest(f, tab, xs[k]) + check_nearest(f, tab, -xs[k]);
  }
  CHECK_MSG(bad == 0, "%s: %d of %d values not rounded to the nearest", f->name, bad, n);
}

int main(void) {
  test_codes(&E4M3);
  test_codes(&E5M2);
  test_fixed();
  test_nearest(&E4M3);
  test_nearest(&E5M2);
  TEST_DONE();
}
