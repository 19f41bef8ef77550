/* tests/backend/test_cpu_ops: the CPU backend's ops against naive double-precision references (matmul over
 * f32/bf16/f16 weights with odd sizes and biases, rmsnorm, rope, swiglu, paged attention with GQA and a
 * sliding window, an FP8 KV cache against K/V rounded by hand), and the invariances the engine relies on: a row's
 * matmul result is bitwise the same whatever other rows are in the batch and whatever the thread count. */
#include "backend/backend.h"
#include "backend/cpu/kernels.h"
#include "backend/fp8.h"
#include "test.h"
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

static uint64_t rng = 88172645463325252ull;
static float frand(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}
static uint16_t to_bf16(float f) {
  union { float f; uint32_t u; } v = {f};
  return (uint16_t)((v.u + 0x7fff + ((v.u >> 16) & 1)) >> 16);
}
static uint16_t to_f16(float f) { /* normal range only, round to nearest */
  union { float f; uint32_t u; } v = {f};
  uint32_t s = (v.u >> 16) & 0x8000, e = (v.u >> 23) & 255, m = v.u & 0x7fffff;
  if (e < 113) return (uint16_t)s;
  uint32_t h = s | ((e - 112) << 10) | (m >> 13);
  if ((m & 0x1fff) > 0x1000 || ((m & 0x1fff) == 0x1000 && (h & 1))) h++;
  return (uint16_t)h;
}
static float wval(const void *w, ig_dtype dt, int64_t i) {
  if (dt == IG_DT_BF16) return ig_bf16_to_f32(((const uint16_t *)w)[i]);
  if (dt == IG_DT_F16) return ig_f16_to_f32(((const uint16_t *)w)[i]);
  return ((const float *)w)[i];
}

/* A batch of n single-token sequences at position 0 (enough for matmul, which reads only the segments). */
typedef struct {
  int32_t tokens[256], pos[256], slot[256], seq_start[257], ctx[256], bt[256], out[256];
  ig_batch b;
} fake_batch;
static void make_batch(fake_batch *f, int n_seqs, const int *lens) {
  int r = 0;
  f->seq_start[0] = 0;
  for (int s = 0; s < n_seqs; s++) {
    for (int i = 0; i < lens[s]; i++, r++) {
      f->tokens[r] = 0;
      f->pos[r] = i;
      f->slot[r] = 0;
    }
    f->seq_start[s + 1] = r;
    f->ctx[s] = lens[s];
    f->bt[s] = 0;
  }
  f->b = (ig_batch){.n_tokens = r, .tokens = f->tokens, .pos = f->pos, .slot = f->slot, .n_seqs = n_seqs,
                    .seq_start = f->seq_start, .ctx_len = f->ctx, .max_blocks = 1, .block_table = f->bt, .n_out = 0,
                    .out_rows = f->out, NULL};
}

static void test_matmul(ig_backend *be, ig_backend *be1, ig_dtype dt) {
  const int I = 172, O = 141, M = 40;
  size_t es = ig_dtype_size(dt);
  void *w = malloc((size_t)O * I * es);
  float *x = malloc((size_t)M * I * 4), *bias = malloc((size_t)O * 4);
  for (int i = 0; i < O * I; i++) {
    float v = frand() * 0.5f;
    if (dt == IG_DT_F32) ((float *)w)[i] = v;
    else if (dt == IG_DT_BF16) ((uint16_t *)w)[i] = to_bf16(v);
    else ((uint16_t *)w)[i] = to_f16(v);
  }
  for (int i = 0; i < M * I; i++) x[i] = frand();
  for (int i = 0; i < O; i++) bias[i] = frand();
  ig_tensor W, B, X, Y;
  CHECK(be->weight(be, &W, w, dt, O, I) == 0);
  CHECK(be->weight(be, &B, bias, IG_DT_F32, 1, O) == 0);
  CHECK(be->alloc(be, &X, IG_DT_F32, M, I) == 0);
  CHECK(be->alloc(be, &Y, IG_DT_F32, M, O) == 0);
  CHECK(be->upload(be, &X, x, IG_DT_F32) == 0);
  float *ref = malloc((size_t)M * O * 4), *y = malloc((size_t)M * O * 4), *y2 = malloc((size_t)M * O * 4);
  for (int m = 0; m < M; m++)
    for (int o = 0; o < O; o++) {
      double s = bias[o];
      for (int k = 0; k < I; k++) s += (double)x[m * I + k] * wval(w, dt, (int64_t)o * I + k);
      ref[m * O + o] = (float)s;
    }
  /* batch A: sequences of 1, 3, 20 (sgemm), 16 (sgemm) rows */
  fake_batch fb;
  int lensA[] = {1, 3, 20, 16};
  make_batch(&fb, 4, lensA);
  CHECK(be->set_batch(be, &fb.b) == 0);
  CHECK(be->matmul(be, &Y, &X, &W, &B) == 0);
  be->download_f32(be, &Y, y);
  double maxrel = 0; /* relative L2 error per row */
  for (int m = 0; m < M; m++) {
    double num = 0, den = 0;
    for (int o = 0; o < O; o++) {
      num += (y[m * O + o] - ref[m * O + o]) * (double)(y[m * O + o] - ref[m * O + o]);
      den += (double)ref[m * O + o] * ref[m * O + o];
    }
    if (sqrt(num / den) > maxrel) maxrel = sqrt(num / den);
  }
  CHECK_MSG(maxrel < 1e-6, "%s matmul max rel err %g", ig_dtype_name(dt), maxrel);
  /* batch B: the same rows as 40 single-row sequences (all matvec); rows of A's short segments must match
   * bitwise, and the one-thread backend must agree bitwise with the pooled one */
  int lensB[40];
  for (int i = 0; i < 40; i++) lensB[i] = 1;
  make_batch(&fb, 40, lensB);
  CHECK(be1->set_batch(be1, &fb.b) == 0);
  CHECK(be1->matmul(be1, &Y, &X, &W, &B) == 0);
  be1->download_f32(be1, &Y, y2);
  CHECK_MSG(memcmp(y, y2, (size_t)4 * O * 4) == 0, "matvec rows differ between batch shapes (%s)", ig_dtype_name(dt));
  CHECK(be->set_batch(be, &fb.b) == 0);
  CHECK(be->matmul(be, &Y, &X, &W, &B) == 0);
  be->download_f32(be, &Y, y);
  CHECK_MSG(memcmp(y, y2, (size_t)M * O * 4) == 0, "matvec differs between thread counts (%s)", ig_dtype_name(dt));
  /* sgemm segments: rows 4..19 of a 20-row segment vs a 16-row segment of the same rows */
  int lensC[] = {4, 16, 20};
  make_batch(&fb, 3, lensC);
  CHECK(be->set_batch(be, &fb.b) == 0);
  CHECK(be->matmul(be, &Y, &X, &W, &B) == 0);
  be->download_f32(be, &Y, y);
  float *y3 = malloc((size_t)M * O * 4);
  int lensD[] = {1, 3, 16, 4, 16};
  make_batch(&fb, 2, lensD);
  CHECK(be1->set_batch(be1, &fb.b) == 0);
  CHECK(be1->matmul(be1, &Y, &X, &W, &B) == 0);
  be1->download_f32(be1, &Y, y3);
  /* rows 4..19: a 16-row segment in both, beside other segments, other thread count */
  CHECK_MSG(memcmp(y + 4 * O, y3 + 4 * O, (size_t)16 * O * 4) == 0, "sgemm rows depend on the batch (%s)",
            ig_dtype_name(dt));
  int same = memcmp(y + 24 * O, y3 + 24 * O, (size_t)16 * O * 4) == 0;
  fprintf(stderr, "%s: sgemm rows bitwise equal for M=20 vs M=16 (K=%d, tiny: small-matrix path): %s\n",
          ig_dtype_name(dt), I, same ? "yes" : "no");
  be->free(be, &X);
  be->free(be, &Y);
  free(w), free(x), free(bias), free(ref), free(y), free(y2), free(y3);
}

static void test_rows_ops(ig_backend *be) {
  /* rmsnorm with residual, swiglu */
  const int n = 3, H = 20;
  float x[60], r[60], w[20], out[60], xs[60];
  for (int i = 0; i < n * H; i++) x[i] = frand(), r[i] = frand();
  for (int i = 0; i < H; i++) w[i] = frand();
  memcpy(xs, x, sizeof x);
  ig_tensor X = {x, IG_DT_F32, n, H, 0}, R = {r, IG_DT_F32, n, H, 0}, Wt = {w, IG_DT_F32, 1, H, 0},
            Out = {out, IG_DT_F32, n, H, 0};
  CHECK(be->rmsnorm(be, &Out, &X, &R, &Wt, 1e-5f) == 0);
  for (int i = 0; i < n; i++) {
    double ss = 0;
    for (int k = 0; k < H; k++) ss += (double)(xs[i * H + k] + r[i * H + k]) * (xs[i * H + k] + r[i * H + k]);
    double inv = 1 / sqrt(ss / H + 1e-5);
    for (int k = 0; k < H; k++) {
      CHECK_NEAR(x[i * H + k], xs[i * H + k] + r[i * H + k], 1e-6);
      CHECK_NEAR(out[i * H + k], w[k] * (xs[i * H + k] + r[i * H + k]) * inv, 1e-5);
    }
  }
  float g[60], u[60];
  for (int i = 0; i < 60; i++) g[i] = frand() * 4, u[i] = frand();
  ig_tensor G = {g, IG_DT_F32, n, H, 0}, U = {u, IG_DT_F32, n, H, 0};
  CHECK(be->swiglu(be, &Out, &G, &U) == 0);
  for (int i = 0; i < 60; i++) CHECK_NEAR(out[i], g[i] / (1 + exp(-g[i])) * u[i], 1e-5);
}

/* rope + kv_write + attention on a paged cache: 2 sequences, GQA 4/2 heads, head_dim 8, block_size 4; softcap > 0:
 * the scores capped as Gemma2's are (small enough a cap that tanh bends them) */
static void test_attention(ig_backend *be, int window, float softcap) {
  const int nh = 4, nkv = 2, hd = 8, bs = 4, nblk = 16, L = 11;
  ig_kv_config kc = {1, nblk, bs, nkv, hd, IG_KV_AUTO, NULL, NULL};
  CHECK(be->kv_init(be, &kc) == 0);
  float invf[4];
  for (int i = 0; i < 4; i++) invf[i] = powf(10000.f, -(float)(2 * i) / hd);
  ig_rope rp = {hd, hd, invf, 1.0f, 0};
  CHECK(be->set_rope(be, &rp) == 0);
  /* sequence 0: 11 tokens in blocks 5,2,9; sequence 1: 7 tokens in blocks 1,14 */
  int32_t bt[2 * 3] = {5, 2, 9, 1, 14, 0};
  int lens[2] = {L, 7};
  static float q[18 * 32], k[18 * 16], v[18 * 16], o[18 * 32], qr[18 * 32], kr[18 * 16];
  for (int i = 0; i < 18 * 32; i++) q[i] = frand();
  for (int i = 0; i < 18 * 16; i++) k[i] = frand(), v[i] = frand();
  int32_t tok[18] = {0}, pos[18], slot[18], ss[3] = {0, L, L + 7}, ctx[2] = {L, 7}, outr[1] = {0};
  for (int s = 0, r = 0; s < 2; s++)
    for (int i = 0; i < lens[s]; i++, r++) {
      pos[r] = i;
      slot[r] = bt[s * 3 + i / bs] * bs + i % bs;
    }
  ig_batch b = {18, tok, pos, slot, 2, ss, ctx, 3, bt, 1, outr, NULL};
  CHECK(be->set_batch(be, &b) == 0);
  memcpy(qr, q, sizeof q);
  memcpy(kr, k, sizeof k);
  ig_tensor Q = {q, IG_DT_F32, 18, 32, 0}, K = {k, IG_DT_F32, 18, 16, 0}, V = {v, IG_DT_F32, 18, 16, 0},
            O = {o, IG_DT_F32, 18, 32, 0};
  CHECK(be->rope(be, &Q, &K, nh, nkv) == 0);
  /* reference rope */
  for (int r = 0; r < 18; r++)
    for (int t = 0; t < 2; t++) {
      float *x = t ? kr + r * 16 : qr + r * 32;
      for (int h = 0; h < (t ? nkv : nh); h++)
        for (int f = 0; f < 4; f++) {
          double a = x[h * hd + f], c = x[h * hd + f + 4], ang = (double)pos[r] * invf[f];
          x[h * hd + f] = (float)(a * cos(ang) - c * sin(ang));
          x[h * hd + f + 4] = (float)(c * cos(ang) + a * sin(ang));
        }
    }
  for (int i = 0; i < 18 * 32; i++) CHECK_NEAR(q[i], qr[i], 1e-5);
  for (int i = 0; i < 18 * 16; i++) CHECK_NEAR(k[i], kr[i], 1e-5);
  CHECK(be->kv_write(be, 0, &K, &V) == 0);
  ig_attn_params ap = {nh, nkv, hd, 1.0f / sqrtf(hd), window, softcap};
  CHECK(be->attention(be, &O, &Q, 0, &ap) == 0);
  double maxd = 0;
  for (int s = 0, r0 = 0; s < 2; r0 += lens[s], s++)
    for (int i = 0; i < lens[s]; i++)
      for (int h = 0; h < nh; h++) {
        int kvh = h / 2, start = window && i - window + 1 > 0 ? i - window + 1 : 0;
        double sc[16], mx = -1e30, sum = 0, acc[8] = {0};
        for (int t = start; t <= i; t++) {
          double d = 0;
          for (int e = 0; e < hd; e++) d += (double)q[(r0 + i) * 32 + h * hd + e] * k[(r0 + t) * 16 + kvh * hd + e];
          sc[t] = d / sqrt(hd);
          if (softcap > 0) sc[t] = softcap * tanh(sc[t] / softcap);
          if (sc[t] > mx) mx = sc[t];
        }
        for (int t = start; t <= i; t++) sum += (sc[t] = exp(sc[t] - mx));
        for (int t = start; t <= i; t++)
          for (int e = 0; e < hd; e++) acc[e] += sc[t] / sum * v[(r0 + t) * 16 + kvh * hd + e];
        for (int e = 0; e < hd; e++) {
          double d = fabs(acc[e] - o[(r0 + i) * 32 + h * hd + e]);
          if (d > maxd) maxd = d;
        }
      }
  CHECK_MSG(maxd < 1e-5, "attention (window %d, softcap %g) max abs err %g", window, (double)softcap, maxd);
  /* a bad batch is an error, not a crash */
  int32_t badslot[18];
  memcpy(badslot, slot, sizeof slot);
  badslot[3] = nblk * bs;
  ig_batch bad = b;
  bad.slot = badslot;
  CHECK(be->set_batch(be, &bad) < 0);
  bad = b;
  int32_t badbt[6] = {5, 2, 99, 1, 14, 0};
  bad.block_table = badbt;
  CHECK(be->set_batch(be, &bad) < 0);
}

/* The KV cache with an FP8 dtype: attention over it is bitwise attention over an f32 cache holding K and V rounded
 * through the format by hand (fp8.h), and differs from attention over the unrounded values. Values up to +-6 and a
 * few of 1000 (past e4m3's 448: saturated). An unknown dtype fails kv_init and gives 0 bytes per block. */
static void test_kv_fp8(ig_backend *be, int dtype) {
  enum { NH = 4, NKV = 2, HD = 8, BS = 4, NBLK = 8, N = 13, QW = NH * HD, W = NKV * HD };
  static float q[N * QW], k[N * W], v[N * W], kr[N * W], vr[N * W], o8[N * QW], oref[N * QW], of32[N * QW];
  for (int i = 0; i < N * QW; i++) q[i] = frand();
  for (int i = 0; i < N * W; i++) k[i] = 6 * frand(), v[i] = 6 * frand();
  v[5] = 1000.f, v[W + 3] = -1000.f, k[2 * W + 1] = 1000.f;
  for (int i = 0; i < N * W; i++) kr[i] = ig_fp8_round(dtype, k[i]), vr[i] = ig_fp8_round(dtype, v[i]);
  /* one sequence of N tokens in blocks 6, 1, 3, 7 */
  int32_t bt[4] = {6, 1, 3, 7}, tok[N] = {0}, pos[N], slot[N], ss[2] = {0, N}, ctx[1] = {N}, outr[1] = {0};
  for (int i = 0; i < N; i++) pos[i] = i, slot[i] = bt[i / BS] * BS + i % BS;
  ig_batch b = {N, tok, pos, slot, 1, ss, ctx, 4, bt, 1, outr, NULL};
  ig_attn_params ap = {NH, NKV, HD, 1.0f / sqrtf(HD), 0, 0};
  ig_tensor Q = {q, IG_DT_F32, N, QW, 0};
  const float *kvs[3][2] = {{k, v}, {kr, vr}, {k, v}};
  float *outs[3] = {o8, oref, of32};
  for (int run = 0; run < 3; run++) { /* the FP8 cache; the f32 cache with rounded K/V; the f32 cache */
    ig_kv_config kc = {1, NBLK, BS, NKV, HD, run == 0 ? dtype : IG_KV_AUTO, NULL, NULL};
    CHECK(be->kv_init(be, &kc) == 0);
    CHECK_EQ_INT(be->kv_bytes_per_block(be, &kc), (size_t)BS * W * 2 * 4); /* f32 storage whatever the dtype */
    CHECK(be->set_batch(be, &b) == 0);
    ig_tensor K = {(void *)kvs[run][0], IG_DT_F32, N, W, 0}, V = {(void *)kvs[run][1], IG_DT_F32, N, W, 0},
              O = {outs[run], IG_DT_F32, N, QW, 0};
    CHECK(be->kv_write(be, 0, &K, &V) == 0);
    CHECK(be->attention(be, &O, &Q, 0, &ap) == 0);
  }
  int same = 1;
  double diff = 0;
  for (int i = 0; i < N * QW; i++) {
    same &= o8[i] == oref[i];
    diff = fmax(diff, fabs((double)o8[i] - of32[i]));
  }
  CHECK_MSG(same, "%s cache: attention differs from attention over K/V rounded by hand", ig_kv_dtype_name(dtype));
  CHECK_MSG(diff > 1e-3, "%s cache: attention equals the unrounded one (max diff %g)", ig_kv_dtype_name(dtype), diff);
  ig_kv_config bad = {1, NBLK, BS, NKV, HD, 3, NULL, NULL};
  CHECK(be->kv_bytes_per_block(be, &bad) == 0);
  CHECK(be->kv_init(be, &bad) < 0);
  CHECK_MSG(strstr(be->err, "unknown KV cache dtype 3") != NULL, "%s", be->err);
  bad.dtype = -1;
  CHECK(be->kv_init(be, &bad) < 0);
  /* an FP8 cache's scales must be positive numbers */
  const float nanscale[1] = {NAN}, zero[1] = {0.f};
  ig_kv_config scaled = {1, NBLK, BS, NKV, HD, dtype, nanscale, NULL};
  CHECK(be->kv_init(be, &scaled) < 0);
  CHECK_MSG(strstr(be->err, "layer 0's K/V cache scale is not a positive number") != NULL, "%s", be->err);
  scaled.k_scale = NULL, scaled.v_scale = zero;
  CHECK(be->kv_init(be, &scaled) < 0);
}

int main(void) {
  char err[256];
  ig_backend *be = ig_backend_cpu_create(3, err, sizeof err), *be1 = ig_backend_cpu_create(1, err, sizeof err);
  CHECK(be && be1);
  if (!be || !be1) TEST_DONE();
  fprintf(stderr, "kernels: %s\n", ig_cpu_kernels_name());
  test_matmul(be, be1, IG_DT_F32);
  test_matmul(be, be1, IG_DT_BF16);
  test_matmul(be, be1, IG_DT_F16);
  test_rows_ops(be);
  test_attention(be, 0, 0);
  test_attention(be, 3, 0);
  test_attention(be, 0, 0.3f);
  test_attention(be, 3, 0.3f);
  test_kv_fp8(be, IG_KV_FP8_E4M3);
  test_kv_fp8(be, IG_KV_FP8_E5M2);
  be->destroy(be);
  be1->destroy(be1);
  TEST_DONE();
}
