/* tests/backend/test_cpu_kernels: the CPU kernels' batch invariance at the kernel level, on every kernel set
 * this CPU has (avx512, avx2, scalar): a multi-row matvec gives each row the bits of the 1-row matvec, for
 * any row count, row order, output range and dtype; all kernel sets give the same bits; exp/SiLU give the
 * same bits at any offset in an array (vector body vs scalar tail) and stay close to libm; attention of a
 * row is the same on every kernel set and close to a double-precision reference. Also the thread pool:
 * every item runs exactly once, over many runs, with more threads than cores. */
#include "backend/cpu/kernels.h"
#include "backend/cpu/pool.h"
#include "test.h"
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float frand(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static const char *sets[] = {"avx512", "avx2", "scalar"};
#define N_SETS 3

/* back to the best set this CPU has */
static void best_set(void) {
  for (int s = 0; s < N_SETS; s++)
    if (ig_cpu_kernels_set(sets[s]) == 0) return;
}

static void fill_w(void *w, ig_dtype dt, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    float v = frand() * 0.5f;
    union { float f; uint32_t u; } u = {v};
    if (dt == IG_DT_F32) ((float *)w)[i] = v;
    else if (dt == IG_DT_BF16) ((uint16_t *)w)[i] = (uint16_t)(u.u >> 16);
    else ((uint16_t *)w)[i] = (uint16_t)(0x3000 + (rng & 0x7ff) + ((rng >> 20) & 1) * 0x8000); /* f16 in +-[0.125, 0.5) */
  }
}

static void test_matvec(ig_dtype dt, int n, int O) {
  const int R = 37; /* rows: odd, more than one row block (16) and tile (4) */
  size_t es = ig_dtype_size(dt);
  void *w = malloc((size_t)O * n * es);
  float *x = malloc(sizeof(float) * R * n), *y1 = malloc(sizeof(float) * R * O), *yr = malloc(sizeof(float) * R * O);
  float *y0 = malloc(sizeof(float) * R * O);
  fill_w(w, dt, (int64_t)O * n);
  for (int i = 0; i < R * n; i++) x[i] = frand();
  int32_t rows[R];
  int ok_rows = 1, ok_sets = 1, ok_ranges = 1, n_sets = 0;
  for (int s = 0; s < N_SETS; s++) {
    if (ig_cpu_kernels_set(sets[s])) continue;
    /* every row alone */
    for (int r = 0; r < R; r++) {
      rows[0] = r;
      ig_cpu_matvec(x, n, rows, 1, w, dt, n, 0, O, y1, O);
    }
    /* all rows at once, in a shuffled order, then in pieces of 1..R rows over odd output ranges */
    for (int r = 0; r < R; r++) rows[r] = (r * 7 + 3) % R;
    ig_cpu_matvec(x, n, rows, R, w, dt, n, 0, O, yr, O);
    ok_rows &= memcmp(y1, yr, sizeof(float) * R * O) == 0;
    memset(yr, 0, sizeof(float) * R * O);
    for (int r0 = 0, k = 1; r0 < R; r0 += k, k = k % 6 + 1) {
      int nr = R - r0 < k ? R - r0 : k;
      for (int o0 = 0, step = 5; o0 < O; o0 += step, step = step * 2 + 1)
        ig_cpu_matvec(x, n, rows + r0, nr, w, dt, n, o0, o0 + step < O ? o0 + step : O, yr, O);
    }
    ok_ranges &= memcmp(y1, yr, sizeof(float) * R * O) == 0;
    if (n_sets++ == 0) memcpy(y0, y1, sizeof(float) * R * O);
    else ok_sets &= memcmp(y0, y1, sizeof(float) * R * O) == 0;
  }
  best_set();
  CHECK_MSG(ok_rows, "%s n=%d O=%d: multi-row matvec differs from 1-row", ig_dtype_name(dt), n, O);
  CHECK_MSG(ok_ranges, "%s n=%d O=%d: matvec depends on the row/output split", ig_dtype_name(dt), n, O);
  CHECK_MSG(ok_sets, "%s n=%d O=%d: kernel sets disagree", ig_dtype_name(dt), n, O);
  /* and close to a double-precision reference */
  double maxerr = 0;
  for (int r = 0; r < R; r++)
    for (int o = 0; o < O; o++) {
      double s = 0, a = 0;
      for (int k = 0; k < n; k++) {
        float wv = dt == IG_DT_F32 ? ((float *)w)[(int64_t)o * n + k]
                   : dt == IG_DT_BF16 ? ig_bf16_to_f32(((uint16_t *)w)[(int64_t)o * n + k])
                                      : ig_f16_to_f32(((uint16_t *)w)[(int64_t)o * n + k]);
        s += (double)x[r * n + k] * wv;
        a += fabs((double)x[r * n + k] * wv);
      }
      double e = fabs(y0[r * O + o] - s) / (a + 1e-30);
      if (e > maxerr) maxerr = e;
    }
  CHECK_MSG(maxerr < 1e-6, "%s n=%d O=%d: matvec error %g", ig_dtype_name(dt), n, O, maxerr);
  free(w), free(x), free(y1), free(yr), free(y0);
}

static void test_exp_silu(void) {
  enum { N = 4099 };
  static float g[N + 8], u[N + 8], a[N + 8], b[N + 8], first[N];
  for (int i = 0; i < N + 8; i++) {
    g[i] = frand() * (i % 3 ? 12.0f : 100.0f);
    u[i] = frand();
  }
  g[5] = NAN, g[6] = INFINITY, g[7] = -INFINITY, g[8] = 88.0f, g[9] = -87.0f, g[10] = 0.0f, g[11] = -0.0f;
  int same = 1, n_sets = 0;
  for (int s = 0; s < N_SETS; s++) {
    if (ig_cpu_kernels_set(sets[s])) continue;
    /* the whole array, and shifted by 1..7 elements (elements move between vector body and tail) */
    ig_cpu_silu_mul(a, g, u, N);
    for (int off = 1; off < 8; off++) {
      ig_cpu_silu_mul(b, g + off, u + off, N - off);
      same &= memcmp(a + off, b, sizeof(float) * (N - off)) == 0;
    }
    if (n_sets++ == 0) memcpy(first, a, sizeof first);
    else same &= memcmp(first, a, sizeof first) == 0;
  }
  best_set();
  CHECK_MSG(same, "silu_mul depends on the position in the array or on the kernel set");
  double maxrel = 0;
  for (int i = 0; i < N; i++) {
    if (i == 5) {
      CHECK(isnan(a[i]));
      continue;
    }
    double ref = (double)g[i] / (1.0 + exp(-(double)g[i])) * u[i];
    double e = fabs(a[i] - ref) / (fabs(ref) + 1e-30);
    if (fabs(ref) > 1e-30 && e > maxrel) maxrel = e;
  }
  CHECK_MSG(maxrel < 1e-6, "silu_mul max rel err %g", maxrel);
  double maxe = 0;
  for (float x = -86.99f; x < 88.0f; x += 0.0137f) {
    double e = fabs(ig_cpu_expf(x) - exp((double)x)) / exp((double)x);
    if (e > maxe) maxe = e;
  }
  CHECK_MSG(maxe < 4e-7, "expf max rel err %g", maxe);
  CHECK(ig_cpu_expf(-100.0f) == 0.0f && isinf(ig_cpu_expf(100.0f)) && ig_cpu_expf(0.0f) == 1.0f);
}

static void test_attn(int G, int hd, int nk, float cap) {
  size_t per = (size_t)(nk + 5) * 3 * hd; /* a cache with gaps: key t at slot 3 * t + 1 */
  float *K = malloc(sizeof(float) * per), *V = malloc(sizeof(float) * per), *q = malloc(sizeof(float) * G * hd);
  float *sc = malloc(sizeof(float) * G * nk), *o = malloc(sizeof(float) * G * hd), *o0 = malloc(sizeof(float) * G * hd);
  int64_t *off = malloc(sizeof(int64_t) * nk);
  for (size_t i = 0; i < per; i++) K[i] = frand(), V[i] = frand();
  for (int i = 0; i < G * hd; i++) q[i] = frand() * 2;
  for (int t = 0; t < nk; t++) off[t] = (int64_t)(3 * t + 1) * hd;
  int same = 1, n_sets = 0;
  for (int s = 0; s < N_SETS; s++) {
    if (ig_cpu_kernels_set(sets[s])) continue;
    ig_cpu_attn(q, G, hd, K, V, off, nk, 0.3f, cap, sc, o);
    if (n_sets++ == 0) memcpy(o0, o, sizeof(float) * G * hd);
    else same &= memcmp(o0, o, sizeof(float) * G * hd) == 0;
  }
  best_set();
  CHECK_MSG(same, "attention G=%d hd=%d nk=%d cap=%g: kernel sets disagree", G, hd, nk, (double)cap);
  double maxd = 0;
  for (int g = 0; g < G; g++) {
    double *p = malloc(sizeof(double) * nk), mx = -1e300, sum = 0;
    for (int t = 0; t < nk; t++) {
      double d = 0;
      for (int k = 0; k < hd; k++) d += (double)q[g * hd + k] * K[off[t] + k];
      p[t] = d * 0.3;
      if (cap > 0) p[t] = cap * tanh(p[t] / cap); /* Gemma2's softcapping */
      if (p[t] > mx) mx = p[t];
    }
    for (int t = 0; t < nk; t++) sum += p[t] = exp(p[t] - mx);
    for (int k = 0; k < hd; k++) {
      double acc = 0;
      for (int t = 0; t < nk; t++) acc += p[t] / sum * V[off[t] + k];
      if (fabs(acc - o0[g * hd + k]) > maxd) maxd = fabs(acc - o0[g * hd + k]);
    }
    free(p);
  }
  CHECK_MSG(maxd < 2e-6, "attention G=%d hd=%d nk=%d cap=%g: max abs err %g", G, hd, nk, (double)cap, maxd);
  free(K), free(V), free(q), free(sc), free(o), free(o0), free(off);
}

/* Decode attention through the backend: 40 one-token sequences with their own paged contexts, as one batch
 * (pooled, all KV heads of a row per item) and each row alone (inline, one KV head per item), on a 3-thread
 * and a 1-thread backend: every row's output must be the same bits. */
enum { NSEQ = 40, NH = 6, NKV = 2, HD = 16, BS = 4, MAXB = 32 };
static void decode_attention(ig_backend *be, const int *ctx, const int32_t *bt, const float *q, int only,
                             float *out) {
  int n = only >= 0 ? 1 : NSEQ;
  int32_t tok[NSEQ] = {0}, pos[NSEQ], slot[NSEQ], ss[NSEQ + 1], cl[NSEQ], outr[NSEQ], bts[NSEQ * MAXB];
  for (int i = 0; i < n; i++) {
    int s = only >= 0 ? only : i;
    pos[i] = ctx[s] - 1;
    slot[i] = bt[s * MAXB + pos[i] / BS] * BS + pos[i] % BS;
    ss[i] = i;
    cl[i] = ctx[s];
    outr[i] = i;
    memcpy(bts + i * MAXB, bt + s * MAXB, sizeof(int32_t) * MAXB);
  }
  ss[n] = n;
  ig_batch b = {n, tok, pos, slot, n, ss, cl, MAXB, bts, n, outr, NULL};
  CHECK(be->set_batch(be, &b) == 0);
  ig_tensor Q = {(void *)(q + (only >= 0 ? only : 0) * NH * HD), IG_DT_F32, n, NH * HD, 0};
  ig_tensor O = {out, IG_DT_F32, n, NH * HD, 0};
  ig_attn_params ap = {NH, NKV, HD, 0.25f, 0, 0};
  CHECK(be->attention(be, &O, &Q, 0, &ap) == 0);
}

static void test_backend_decode_attention(void) {
  char err[256];
  ig_backend *bes[2] = {ig_backend_cpu_create(3, err, sizeof err), ig_backend_cpu_create(1, err, sizeof err)};
  CHECK(bes[0] && bes[1]);
  if (!bes[0] || !bes[1]) return;
  static int ctx[NSEQ];
  static int32_t bt[NSEQ * MAXB];
  static float q[NSEQ * NH * HD], kbuf[MAXB * BS * NKV * HD], vbuf[MAXB * BS * NKV * HD];
  static float outb[2][NSEQ * NH * HD], one[NH * HD];
  ig_kv_config kc = {1, NSEQ * MAXB, BS, NKV, HD, IG_KV_AUTO, NULL, NULL};
  for (int s = 0; s < NSEQ; s++) {
    ctx[s] = 1 + (s * 37) % 113;
    for (int k = 0; k < MAXB; k++) bt[s * MAXB + k] = (k * NSEQ + (s * 7) % NSEQ) % (NSEQ * MAXB);
  }
  for (int i = 0; i < NSEQ * NH * HD; i++) q[i] = frand();
  int same = 1;
  for (int bi = 0; bi < 2; bi++) {
    ig_backend *be = bes[bi];
    CHECK(be->kv_init(be, &kc) == 0);
    uint64_t save = rng;
    for (int s = 0; s < NSEQ; s++) { /* write each context, one sequence per batch */
      int32_t tok[MAXB * BS] = {0}, pos[MAXB * BS], slot[MAXB * BS], ss[2] = {0, ctx[s]}, cl = ctx[s], o = 0;
      for (int t = 0; t < ctx[s]; t++) {
        pos[t] = t;
        slot[t] = bt[s * MAXB + t / BS] * BS + t % BS;
      }
      for (int i = 0; i < ctx[s] * NKV * HD; i++) kbuf[i] = frand(), vbuf[i] = frand();
      ig_batch b = {ctx[s], tok, pos, slot, 1, ss, &cl, MAXB, bt + s * MAXB, 1, &o, NULL};
      ig_tensor K = {kbuf, IG_DT_F32, ctx[s], NKV * HD, 0}, V = {vbuf, IG_DT_F32, ctx[s], NKV * HD, 0};
      CHECK(be->set_batch(be, &b) == 0);
      CHECK(be->kv_write(be, 0, &K, &V) == 0);
    }
    rng = save; /* both backends get the same cache */
    decode_attention(be, ctx, bt, q, -1, outb[bi]);
    for (int s = 0; s < NSEQ; s++) {
      decode_attention(be, ctx, bt, q, s, one);
      same &= memcmp(one, outb[bi] + s * NH * HD, sizeof one) == 0;
    }
  }
  CHECK_MSG(same, "decode attention: a row alone differs from the row in a batch");
  CHECK_MSG(memcmp(outb[0], outb[1], sizeof outb[0]) == 0, "decode attention differs between thread counts");
  bes[0]->destroy(bes[0]);
  bes[1]->destroy(bes[1]);
}

static atomic_int hits[5000];
static void count_item(void *ctx, int64_t item, int ith) {
  (void)ctx;
  (void)ith;
  atomic_fetch_add(&hits[item], 1);
}

static void test_pool(void) {
  ig_pool *p = ig_pool_create(6);
  CHECK(p != NULL);
  if (!p) return;
  int ok = 1;
  for (int run = 0; run < 3000; run++) {
    int n = run % 7 == 0 ? 4999 : run % 13;
    ig_pool_run(p, count_item, NULL, n);
    for (int i = 0; i < n; i++) ok &= atomic_exchange(&hits[i], 0) == 1;
  }
  CHECK_MSG(ok, "pool: an item ran other than exactly once");
  ig_pool_destroy(p);
}

int main(void) {
  ig_cpu_kernels_init();
  fprintf(stderr, "kernels: %s (all sets this CPU has are compared)\n", ig_cpu_kernels_name());
  ig_dtype dts[] = {IG_DT_F32, IG_DT_BF16, IG_DT_F16};
  for (int d = 0; d < 3; d++) {
    test_matvec(dts[d], 64, 67);
    test_matvec(dts[d], 172, 41);
    test_matvec(dts[d], 7, 9);
    test_matvec(dts[d], 1040, 13);
  }
  test_exp_silu();
  int shapes[][3] = {{2, 8, 1}, {2, 8, 7}, {2, 8, 8}, {2, 8, 131}, {3, 64, 29}, {1, 128, 300}, {4, 12, 17}, {1, 5, 9}};
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) test_attn(shapes[i][0], shapes[i][1], shapes[i][2], 0);
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) test_attn(shapes[i][0], shapes[i][1], shapes[i][2], 1.5f);
  test_backend_decode_attention();
  test_pool();
  TEST_DONE();
}
