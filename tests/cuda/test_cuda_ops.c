/* tests/cuda/test_cuda_ops.c: each CUDA backend op against the CPU backend (the reference), on fresh random
 * inputs at several sizes (odd ones included), in both activation modes (bf16 and f32). Reports the relative
 * L2 error ||gpu - cpu|| / ||cpu|| per case; outputs are poisoned first so unwritten elements show.
 * Exits 77 (ctest SKIP) when no GPU is present. */
#include "backend/backend.h"
#include "backend/fp8.h"
#include "test.h"
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static ig_backend *cpu, *gpu;
static double tol; /* relative L2 tolerance of the current mode */
static uint64_t rng = 88172645463325252ull;
static double worst;

static float frand(void) { /* uniform in [-1, 1) */
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.f - 1.f;
}
static int irand(int n) {
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (int)((rng >> 33) % (uint64_t)n);
}
static uint16_t to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}
static float from_bf16(uint16_t b) {
  uint32_t u = (uint32_t)b << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}
/* Random values, rounded to what the GPU's activation dtype holds, so both sides start from the same input. */
static float *rnd(int64_t n, float scale) {
  float *v = malloc((size_t)n * sizeof(float));
  for (int64_t i = 0; i < n; i++) {
    v[i] = frand() * scale;
    if (gpu->act_dtype == IG_DT_BF16) v[i] = from_bf16(to_bf16(v[i]));
  }
  return v;
}

typedef struct pair {
  ig_tensor c, g;
} pair;

static void act(pair *p, int64_t rows, int64_t cols, const float *init) {
  CHECK(cpu->alloc(cpu, &p->c, cpu->act_dtype, rows, cols) == 0);
  CHECK(gpu->alloc(gpu, &p->g, gpu->act_dtype, rows, cols) == 0);
  float *tmp = NULL;
  if (!init) { /* poison: NaN everywhere, so an element the op fails to write shows in the error */
    tmp = malloc((size_t)(rows * cols > 0 ? rows * cols : 1) * sizeof(float));
    for (int64_t i = 0; i < rows * cols; i++) tmp[i] = NAN;
    init = tmp;
  }
  CHECK(cpu->upload(cpu, &p->c, init, IG_DT_F32) == 0);
  CHECK(gpu->upload(gpu, &p->g, init, IG_DT_F32) == 0);
  free(tmp);
}
/* A weight given to both backends as bf16 (or f16 / f32) host data. */
static void *wbuf;
static void *keeps[4096]; /* weights' host data, freed at exit */
static int n_keeps;
static void weight(pair *p, int64_t rows, int64_t cols, ig_dtype dt, float scale) {
  int64_t n = rows * cols;
  wbuf = realloc(wbuf, (size_t)n * 4);
  for (int64_t i = 0; i < n; i++) {
    float v = frand() * scale;
    if (dt == IG_DT_BF16) ((uint16_t *)wbuf)[i] = to_bf16(v);
    else ((float *)wbuf)[i] = v;
  }
  /* both backends read the host data lazily: keep one buffer per weight alive */
  void *keep = malloc((size_t)n * 4);
  memcpy(keep, wbuf, (size_t)n * 4);
  CHECK(cpu->weight(cpu, &p->c, keep, dt, rows, cols) == 0);
  CHECK(gpu->weight(gpu, &p->g, keep, dt, rows, cols) == 0);
  CHECK(gpu->sync(gpu) == 0);
  if (n_keeps < 4096) keeps[n_keeps++] = keep;
  else free(keep); /* not reached by these tests */
}
static void drop(pair *p) {
  cpu->free(cpu, &p->c);
  gpu->free(gpu, &p->g);
}
static double compare(const char *what, pair *p, int64_t rows) {
  int64_t n = rows * p->c.cols;
  float *a = malloc((size_t)ig_tensor_numel(&p->c) * 4), *b = malloc((size_t)ig_tensor_numel(&p->g) * 4);
  CHECK(cpu->download_f32(cpu, &p->c, a) == 0);
  int rc = gpu->download_f32(gpu, &p->g, b);
  CHECK_MSG(rc == 0, "%s: %s", what, gpu->err);
  double num = 0, den = 0;
  int bad = 0;
  for (int64_t i = 0; i < n; i++) {
    if (!isfinite(b[i]) || !isfinite(a[i])) bad++;
    double d = (double)b[i] - a[i];
    num += d * d, den += (double)a[i] * a[i];
  }
  double rel = den > 0 ? sqrt(num / den) : sqrt(num);
  if (bad) rel = INFINITY;
  if (rel > worst) worst = rel;
  CHECK_MSG(rel <= tol, "%s: rel L2 %.3g > %.3g (%d non-finite)", what, rel, tol, bad);
  printf("  %-58s rel %.2e\n", what, rel);
  free(a), free(b);
  return rel;
}

/* ---- batches ---------------------------------------------------------------------------------------- */
typedef struct seqspec {
  int ctx, q;
} seqspec;
typedef struct hb { /* host batch storage */
  ig_batch b;
  int32_t *tokens, *pos, *slot, *seq_start, *ctx_len, *bt, *out_rows;
} hb;
static void hb_free(hb *h) {
  free(h->tokens), free(h->pos), free(h->slot), free(h->seq_start), free(h->ctx_len), free(h->out_rows);
}
/* Sequences with the given (ctx, q) over block table bt (max_blocks per row); `full` = all ctx positions. */
static void make_batch(hb *h, const seqspec *ss, int ns, int32_t *bt, int mb, int bs, int full, int vocab) {
  int n = 0;
  for (int s = 0; s < ns; s++) n += full ? ss[s].ctx : ss[s].q;
  h->tokens = malloc(n * 4 + 4), h->pos = malloc(n * 4 + 4), h->slot = malloc(n * 4 + 4);
  h->seq_start = malloc((ns + 1) * 4), h->ctx_len = malloc(ns * 4 + 4), h->out_rows = malloc(n * 4 + 4);
  int r = 0;
  for (int s = 0; s < ns; s++) {
    h->seq_start[s] = r;
    int q = full ? ss[s].ctx : ss[s].q;
    h->ctx_len[s] = ss[s].ctx;
    for (int i = 0; i < q; i++, r++) {
      int p = ss[s].ctx - q + i;
      h->tokens[r] = irand(vocab);
      h->pos[r] = p;
      h->slot[r] = bt[s * mb + p / bs] * bs + p % bs;
      h->out_rows[r] = r;
    }
  }
  h->seq_start[ns] = n;
  h->b = (ig_batch){.n_tokens = n, .tokens = h->tokens, .pos = h->pos, .slot = h->slot, .n_seqs = ns,
                    .seq_start = h->seq_start, .ctx_len = h->ctx_len, .max_blocks = mb, .block_table = bt,
                    .n_out = n, .out_rows = h->out_rows};
}
static void set_batch_both(const ig_batch *b) {
  CHECK_MSG(cpu->set_batch(cpu, b) == 0, "%s", cpu->err);
  CHECK_MSG(gpu->set_batch(gpu, b) == 0, "%s", gpu->err);
}

/* A batch of n one-token sequences (row i at position pos[i], context pos[i]+1), no KV blocks: what the ops
 * other than kv_write/attention read (tokens, positions, out_rows). NULL arrays default to zeros / all rows. */
static void simple_batch(int n, const int32_t *pos, const int32_t *tokens, int n_out, const int32_t *out_rows) {
  static int32_t tk[8192], ps[8192], sl[8192], ss[8193], cl[8192], orow[8192];
  for (int i = 0; i < n; i++) {
    tk[i] = tokens ? tokens[i] : 0;
    ps[i] = pos ? pos[i] : 0;
    sl[i] = -1;
    ss[i] = i;
    cl[i] = ps[i] + 1;
  }
  ss[n] = n;
  for (int j = 0; j < n_out; j++) orow[j] = out_rows[j];
  ig_batch b = {.n_tokens = n, .tokens = tk, .pos = ps, .slot = sl, .n_seqs = n, .seq_start = ss, .ctx_len = cl,
                .max_blocks = 0, .block_table = NULL, .n_out = n_out, .out_rows = orow};
  set_batch_both(&b);
}

/* ---- op tests --------------------------------------------------------------------------------------- */
static void test_matmul(void) {
  static const int cases[][3] = {{1, 64, 96}, {1, 4096, 1000}, {3, 136, 72}, {5, 520, 333}, {8, 256, 128},
                                 {9, 264, 520}, {17, 256, 1000}, {64, 1024, 768}, {130, 96, 40}};
  for (int ci = 0; ci < (int)(sizeof cases / sizeof cases[0]); ci++) {
    int m = cases[ci][0], I = cases[ci][1], O = cases[ci][2];
    for (int variant = 0; variant < 3; variant++) {
      ig_dtype wdt = variant == 2 ? IG_DT_F32 : IG_DT_BF16;
      int use_bias = variant == 1;
      pair x, w, b, out;
      float *xv = rnd((int64_t)m * I, 1.f);
      act(&x, m, I, xv);
      weight(&w, O, I, wdt, 0.05f);
      if (use_bias) weight(&b, 1, O, wdt, 0.5f);
      act(&out, m, O, NULL);
      simple_batch(m, NULL, NULL, 0, NULL);
      CHECK(cpu->matmul(cpu, &out.c, &x.c, &w.c, use_bias ? &b.c : NULL) == 0);
      int rc = gpu->matmul(gpu, &out.g, &x.g, &w.g, use_bias ? &b.g : NULL);
      CHECK_MSG(rc == 0, "%s", gpu->err);
      char name[96];
      snprintf(name, sizeof name, "matmul m=%d I=%d O=%d w=%s%s", m, I, O, ig_dtype_name(wdt), use_bias ? " +bias" : "");
      compare(name, &out, m);
      drop(&x), drop(&w), drop(&out);
      if (use_bias) drop(&b);
      free(xv);
    }
  }
}

/* The fused products (matmul_n: q/k/v; matmul_swiglu: gate/up/swiglu) are bitwise the separate ops on the GPU
 * (fused GEMV for m <= 8, the separate ops above), and within tolerance of the CPU's. */
static int same_gpu(const ig_tensor *a, const ig_tensor *b, int64_t rows) {
  int64_t n = rows * a->cols;
  float *x = malloc((size_t)n * 4), *y = malloc((size_t)n * 4);
  ig_tensor a2 = *a, b2 = *b;
  a2.rows = b2.rows = rows;
  CHECK(gpu->download_f32(gpu, &a2, x) == 0 && gpu->download_f32(gpu, &b2, y) == 0);
  int eq = memcmp(x, y, (size_t)n * 4) == 0;
  free(x), free(y);
  return eq;
}

static void test_fused_matmul(void) {
  if (!gpu->matmul_n || !gpu->matmul_swiglu) {
    printf("fused matmul ops: not installed\n");
    return;
  }
  static const int ms[] = {1, 3, 8, 9, 20, 2};
  for (int mi = 0; mi < 6; mi++)
    for (int bias = 0; bias < 2; bias++) {
      int m = ms[mi], I = 264, O[3] = {256, 72, 72}, Ig = 176;
      pair x, w[3], b[3], out[3], ref[3], wg, wu, bg, bu, g, u, gr, ur;
      float *xv = rnd((int64_t)m * I, 1.f);
      act(&x, m, I, xv);
      for (int i = 0; i < 3; i++) {
        weight(&w[i], O[i], I, IG_DT_BF16, 0.05f);
        if (bias) weight(&b[i], 1, O[i], IG_DT_BF16, 0.5f);
        act(&out[i], m, O[i], NULL);
        act(&ref[i], m, O[i], NULL);
      }
      ig_tensor *oc[3] = {&out[0].c, &out[1].c, &out[2].c}, *og[3] = {&out[0].g, &out[1].g, &out[2].g};
      const ig_tensor *wc[3] = {&w[0].c, &w[1].c, &w[2].c}, *wgp[3] = {&w[0].g, &w[1].g, &w[2].g};
      const ig_tensor *bc[3] = {bias ? &b[0].c : NULL, bias ? &b[1].c : NULL, bias ? &b[2].c : NULL};
      const ig_tensor *bgp[3] = {bias ? &b[0].g : NULL, bias ? &b[1].g : NULL, bias ? &b[2].g : NULL};
      simple_batch(m, NULL, NULL, 0, NULL);
      for (int i = 0; i < 3; i++) {
        CHECK(cpu->matmul(cpu, oc[i], &x.c, wc[i], bc[i]) == 0);
        CHECK_MSG(gpu->matmul(gpu, &ref[i].g, &x.g, wgp[i], bgp[i]) == 0, "%s", gpu->err);
      }
      CHECK_MSG(gpu->matmul_n(gpu, 3, og, &x.g, wgp, bgp) == 0, "%s", gpu->err);
      for (int i = 0; i < 3; i++) {
        char name[96];
        snprintf(name, sizeof name, "matmul_n m=%d part %d O=%d%s", m, i, O[i], bias ? " +bias" : "");
        compare(name, &out[i], m);
        CHECK_MSG(same_gpu(&out[i].g, &ref[i].g, m), "%s: not bitwise the separate matmul", name);
      }
      /* gate/up/swiglu */
      weight(&wg, Ig, I, IG_DT_BF16, 0.05f);
      weight(&wu, Ig, I, IG_DT_BF16, 0.05f);
      if (bias) weight(&bg, 1, Ig, IG_DT_BF16, 0.5f), weight(&bu, 1, Ig, IG_DT_BF16, 0.5f);
      act(&g, m, Ig, NULL), act(&u, m, Ig, NULL), act(&gr, m, Ig, NULL), act(&ur, m, Ig, NULL);
      CHECK(cpu->matmul(cpu, &g.c, &x.c, &wg.c, bias ? &bg.c : NULL) == 0);
      CHECK(cpu->matmul(cpu, &u.c, &x.c, &wu.c, bias ? &bu.c : NULL) == 0);
      CHECK(cpu->swiglu(cpu, &g.c, &g.c, &u.c) == 0);
      CHECK(gpu->matmul(gpu, &gr.g, &x.g, &wg.g, bias ? &bg.g : NULL) == 0);
      CHECK(gpu->matmul(gpu, &ur.g, &x.g, &wu.g, bias ? &bu.g : NULL) == 0);
      CHECK(gpu->swiglu(gpu, &gr.g, &gr.g, &ur.g) == 0);
      CHECK_MSG(gpu->matmul_swiglu(gpu, &g.g, &u.g, &x.g, &wg.g, bias ? &bg.g : NULL, &wu.g, bias ? &bu.g : NULL) == 0,
                "%s", gpu->err);
      char name[96];
      snprintf(name, sizeof name, "matmul_swiglu m=%d I=%d O=%d%s", m, I, Ig, bias ? " +bias" : "");
      compare(name, &g, m);
      CHECK_MSG(same_gpu(&g.g, &gr.g, m), "%s: not bitwise matmul, matmul, swiglu", name);
      /* the same weights as adjacent rows of one buffer (weight_alloc / weight_rows, as the model loads them): one
       * GEMM for m > 8 (close to the separate ops, not bitwise), the GEMV for m <= 8 (bitwise) */
      if (gpu->weight_alloc && !bias) {
        ig_tensor qkv, gu, parts[3], gp, up_;
        CHECK(gpu->weight_alloc(gpu, &qkv, IG_DT_BF16, O[0] + O[1] + O[2], I) == 0);
        for (int i = 0, r0 = 0; i < 3; r0 += O[i], i++) {
          CHECK_MSG(gpu->weight_rows(gpu, &qkv, r0, keeps[n_keeps - 5 + i], IG_DT_BF16, O[i]) == 0, "%s", gpu->err);
          parts[i] = qkv, parts[i].rows = O[i], parts[i].owned = 0;
          parts[i].data = (char *)qkv.data + (size_t)r0 * I * ig_dtype_size(qkv.dtype);
        }
        CHECK(gpu->weight_alloc(gpu, &gu, IG_DT_BF16, 2 * Ig, I) == 0);
        CHECK(gpu->weight_rows(gpu, &gu, 0, keeps[n_keeps - 2], IG_DT_BF16, Ig) == 0);
        CHECK(gpu->weight_rows(gpu, &gu, Ig, keeps[n_keeps - 1], IG_DT_BF16, Ig) == 0);
        CHECK(gpu->sync(gpu) == 0);
        gp = gu, gp.rows = Ig, gp.owned = 0;
        up_ = gp, up_.data = (char *)gu.data + (size_t)Ig * I * ig_dtype_size(gu.dtype);
        const ig_tensor *pw[3] = {&parts[0], &parts[1], &parts[2]}, *nob[3] = {NULL, NULL, NULL};
        CHECK_MSG(gpu->matmul_n(gpu, 3, og, &x.g, pw, nob) == 0, "%s", gpu->err);
        for (int i = 0; i < 3; i++) {
          snprintf(name, sizeof name, "matmul_n one buffer m=%d part %d O=%d", m, i, O[i]);
          compare(name, &out[i], m);
          if (m <= 8 && gpu->act_dtype == IG_DT_BF16) CHECK_MSG(same_gpu(&out[i].g, &ref[i].g, m), "%s: not bitwise the separate matmul", name);
        }
        CHECK_MSG(gpu->matmul_swiglu(gpu, &g.g, &u.g, &x.g, &gp, NULL, &up_, NULL) == 0, "%s", gpu->err);
        snprintf(name, sizeof name, "matmul_swiglu one buffer m=%d O=%d", m, Ig);
        compare(name, &g, m);
        if (m <= 8 && gpu->act_dtype == IG_DT_BF16) CHECK_MSG(same_gpu(&g.g, &gr.g, m), "%s: not bitwise", name);
        gpu->free(gpu, &qkv), gpu->free(gpu, &gu);
      }
      if (gpu->matmul_geglu && cpu->geglu && gpu->geglu) { /* Gemma3's gelu_tanh(gate) * up, the same way (after the swiglu checks: it reuses g and gr) */
        CHECK(cpu->matmul(cpu, &g.c, &x.c, &wg.c, bias ? &bg.c : NULL) == 0);
        CHECK(cpu->matmul(cpu, &u.c, &x.c, &wu.c, bias ? &bu.c : NULL) == 0);
        CHECK(cpu->geglu(cpu, &g.c, &g.c, &u.c) == 0);
        CHECK(gpu->matmul(gpu, &gr.g, &x.g, &wg.g, bias ? &bg.g : NULL) == 0);
        CHECK(gpu->matmul(gpu, &ur.g, &x.g, &wu.g, bias ? &bu.g : NULL) == 0);
        CHECK(gpu->geglu(gpu, &gr.g, &gr.g, &ur.g) == 0);
        CHECK_MSG(gpu->matmul_geglu(gpu, &g.g, &u.g, &x.g, &wg.g, bias ? &bg.g : NULL, &wu.g, bias ? &bu.g : NULL) == 0,
                  "%s", gpu->err);
        snprintf(name, sizeof name, "matmul_geglu m=%d I=%d O=%d%s", m, I, Ig, bias ? " +bias" : "");
        compare(name, &g, m);
        CHECK_MSG(same_gpu(&g.g, &gr.g, m), "%s: not bitwise matmul, matmul, geglu", name);
      }
      for (int i = 0; i < 3; i++) {
        drop(&w[i]), drop(&out[i]), drop(&ref[i]);
        if (bias) drop(&b[i]);
      }
      drop(&wg), drop(&wu), drop(&g), drop(&u), drop(&gr), drop(&ur), drop(&x);
      if (bias) drop(&bg), drop(&bu);
      free(xv);
    }
}

/* More distinct shapes than the cuBLASLt plan cache holds (a long-running server meets every batch size): the cache
 * starts over instead of failing, and the results stay right. */
static void test_matmul_many_shapes(void) {
  pair x, w, out;
  int I = 24, O = 40, mmax = 9 + 700;
  float *xv = rnd((int64_t)mmax * I, 1.f);
  act(&x, mmax, I, xv);
  weight(&w, O, I, IG_DT_BF16, 0.1f);
  act(&out, mmax, O, NULL);
  int bad = 0;
  for (int m = 9; m < mmax; m++) {
    ig_tensor xg = x.g, og = out.g, xc = x.c, oc = out.c;
    xg.rows = xc.rows = og.rows = oc.rows = m;
    simple_batch(m, NULL, NULL, 0, NULL);
    int rc = gpu->matmul(gpu, &og, &xg, &w.g, NULL);
    if (rc) {
      bad++;
      fprintf(stderr, "matmul m=%d: %s\n", m, gpu->err);
      break;
    }
    if (m % 97 == 0 || m == mmax - 1) {
      CHECK(cpu->matmul(cpu, &oc, &xc, &w.c, NULL) == 0);
      char name[64];
      snprintf(name, sizeof name, "matmul many shapes m=%d", m);
      compare(name, &out, m);
    }
  }
  CHECK_EQ_INT(bad, 0);
  drop(&x), drop(&w), drop(&out);
  free(xv);
}

/* The tiny models' shapes (stories260K: hidden 64, intermediate 172, vocab 512, tied; llama3-gqa-tied: 48, 104,
 * 128, tied; their tensor-parallel shards: 84/88 and 32/16 wide) at every row count the tensor-parallel schedule
 * uses: K = 172 (rows of 344 bytes, not a multiple of 16: cuBLASLt, never the GEMV) and O = 172 at m <= 8 (GEMV)
 * and m > 8 (cuBLASLt); and the tied lm_head, the embedding table itself as W, turning bf16 rows gathered from
 * that table into f32 logits (GEMV with an f32 output, cuBLASLt bf16 x bf16 -> f32). */
static void test_matmul_tiny(void) {
  static const int shapes[][3] = {{64, 172, 0}, {172, 64, 0}, {64, 512, 1}, {48, 104, 0}, {104, 48, 0}, {48, 128, 1},
                                  {64, 64, 0},  {64, 32, 0},  {84, 64, 0},  {88, 64, 0},  {64, 256, 1}};
  static const int ms[] = {1, 2, 5, 7, 8, 9, 16, 60, 96};
  for (int si = 0; si < (int)(sizeof shapes / sizeof shapes[0]); si++) {
    int I = shapes[si][0], O = shapes[si][1], tied = shapes[si][2];
    for (int mi = 0; mi < (int)(sizeof ms / sizeof ms[0]); mi++) {
      int m = ms[mi];
      pair x, w, out;
      char name[128];
      if (tied) { /* W = the embedding table [O = vocab, I = hidden]; x = rows of it looked up by embed */
        weight(&w, O, I, IG_DT_BF16, 1.f);
        int32_t tok[96], rows[96];
        for (int i = 0; i < m; i++) tok[i] = irand(O), rows[i] = i;
        simple_batch(m, NULL, tok, m, rows);
        act(&x, m, I, NULL);
        CHECK(cpu->embed(cpu, &x.c, &w.c) == 0);
        CHECK_MSG(gpu->embed(gpu, &x.g, &w.g) == 0, "%s", gpu->err);
        /* logits are f32 on both backends */
        CHECK(cpu->alloc(cpu, &out.c, IG_DT_F32, m, O) == 0);
        CHECK(gpu->alloc(gpu, &out.g, IG_DT_F32, m, O) == 0);
        float *nan = malloc((size_t)m * O * 4);
        for (int i = 0; i < m * O; i++) nan[i] = NAN;
        CHECK(cpu->upload(cpu, &out.c, nan, IG_DT_F32) == 0);
        CHECK(gpu->upload(gpu, &out.g, nan, IG_DT_F32) == 0);
        free(nan);
      } else {
        float *xv = rnd((int64_t)m * I, 1.f);
        act(&x, m, I, xv);
        free(xv);
        weight(&w, O, I, IG_DT_BF16, 0.1f);
        act(&out, m, O, NULL);
        simple_batch(m, NULL, NULL, 0, NULL);
      }
      CHECK(cpu->matmul(cpu, &out.c, &x.c, &w.c, NULL) == 0);
      int rc = gpu->matmul(gpu, &out.g, &x.g, &w.g, NULL);
      CHECK_MSG(rc == 0, "%s", gpu->err);
      snprintf(name, sizeof name, "matmul tiny m=%d I=%d O=%d%s", m, I, O, tied ? " tied lm_head -> f32" : "");
      compare(name, &out, m);
      drop(&x), drop(&w), drop(&out);
    }
  }
}

static void test_rmsnorm(void) {
  static const int cases[][2] = {{1, 64}, {5, 100}, {33, 4096}, {2, 5120}, {7, 8}, {60, 64}, {8, 48}, {3, 172},
                                   {3, 8192}, {2, 16384}, {2, 24576}, {5, 1152}, {4, 1032}};
  for (int ci = 0; ci < (int)(sizeof cases / sizeof cases[0]); ci++) {
    int n = cases[ci][0], W = cases[ci][1];
    for (int with_res = 0; with_res < 2; with_res++) {
      pair x, r, w, out;
      float *xv = rnd((int64_t)n * W, 2.f), *rv = rnd((int64_t)n * W, 1.f);
      act(&x, n, W, xv), act(&r, n, W, rv), act(&out, n, W, NULL);
      weight(&w, 1, W, IG_DT_BF16, 1.f);
      CHECK(cpu->rmsnorm(cpu, &out.c, &x.c, with_res ? &r.c : NULL, &w.c, 1e-5f) == 0);
      CHECK_MSG(gpu->rmsnorm(gpu, &out.g, &x.g, with_res ? &r.g : NULL, &w.g, 1e-5f) == 0, "%s", gpu->err);
      char name[96];
      snprintf(name, sizeof name, "rmsnorm n=%d W=%d%s", n, W, with_res ? " +residual (out)" : "");
      compare(name, &out, n);
      if (with_res) {
        snprintf(name, sizeof name, "rmsnorm n=%d W=%d +residual (x updated)", n, W);
        compare(name, &x, n);
      }
      drop(&x), drop(&r), drop(&w), drop(&out);
      free(xv), free(rv);
    }
  }
  /* Gemma's (1 + w) norms: f32 weights kept f32 on the GPU (weight_keep), bf16 x, with and without the residual */
  static const int kcases[][2] = {{3, 1152}, {2, 4096}, {4, 256}, {1, 2304}};
  for (int ci = 0; ci < (int)(sizeof kcases / sizeof kcases[0]) && gpu->weight_keep && gpu->act_dtype == IG_DT_BF16; ci++) {
    int n = kcases[ci][0], W = kcases[ci][1];
    for (int with_res = 0; with_res < 2; with_res++) {
      pair x, r, w, out;
      float *xv = rnd((int64_t)n * W, 2.f), *rv = rnd((int64_t)n * W, 1.f), *wv = malloc((size_t)W * sizeof(float));
      for (int i = 0; i < W; i++) wv[i] = 1.f + 0.05f * frand(); /* 1 + w, w small: what bf16 would round */
      act(&x, n, W, xv), act(&r, n, W, rv), act(&out, n, W, NULL);
      CHECK(cpu->weight(cpu, &w.c, wv, IG_DT_F32, 1, W) == 0);
      CHECK(gpu->weight_keep(gpu, &w.g, wv, IG_DT_F32, 1, W) == 0);
      CHECK(gpu->sync(gpu) == 0);
      CHECK_MSG(w.g.dtype == IG_DT_F32, "weight_keep gave dtype %d", (int)w.g.dtype);
      CHECK(cpu->rmsnorm(cpu, &out.c, &x.c, with_res ? &r.c : NULL, &w.c, 1e-6f) == 0);
      CHECK_MSG(gpu->rmsnorm(gpu, &out.g, &x.g, with_res ? &r.g : NULL, &w.g, 1e-6f) == 0, "%s", gpu->err);
      char name[96];
      snprintf(name, sizeof name, "rmsnorm f32 (1 + w) n=%d W=%d%s", n, W, with_res ? " +residual" : "");
      compare(name, &out, n);
      drop(&x), drop(&r), drop(&w), drop(&out);
      free(xv), free(rv), free(wv);
    }
  }
  /* rmsnorm_post (Gemma's post-sublayer norm folded into the next norm): bitwise the two separate GPU norms, and
   * against the CPU's two norms; f32 or bf16 weights, widths with 1 to 3 chunks per thread, and a width the fast
   * kernel does not take (100) */
  static const int pcases[][4] = {{3, 2304, 1, 1}, {2, 1152, 1, 0}, {4, 4096, 0, 0}, {1, 256, 0, 1}, {2, 100, 1, 1}};
  for (int ci = 0; ci < (int)(sizeof pcases / sizeof pcases[0]) && gpu->rmsnorm_post && gpu->act_dtype == IG_DT_BF16; ci++) {
    int n = pcases[ci][0], W = pcases[ci][1];
    pair x, x2, r, r2, wr, w, out, out2;
    float *xv = rnd((int64_t)n * W, 2.f), *rv = rnd((int64_t)n * W, 1.f), *wv[2];
    act(&x, n, W, xv), act(&x2, n, W, xv), act(&r, n, W, rv), act(&r2, n, W, rv), act(&out, n, W, NULL), act(&out2, n, W, NULL);
    pair *ws[2] = {&wr, &w};
    for (int k = 0; k < 2; k++) {
      wv[k] = malloc((size_t)W * sizeof(float));
      for (int i = 0; i < W; i++) wv[k][i] = 1.f + 0.1f * frand();
      if (pcases[ci][2 + k]) { /* f32 (1 + w), kept f32 on the GPU */
        CHECK(cpu->weight(cpu, &ws[k]->c, wv[k], IG_DT_F32, 1, W) == 0);
        CHECK(gpu->weight_keep(gpu, &ws[k]->g, wv[k], IG_DT_F32, 1, W) == 0);
      } else {
        for (int i = 0; i < W; i++) wv[k][i] = from_bf16(to_bf16(wv[k][i]));
        CHECK(cpu->weight(cpu, &ws[k]->c, wv[k], IG_DT_F32, 1, W) == 0);
        CHECK(gpu->weight(gpu, &ws[k]->g, wv[k], IG_DT_F32, 1, W) == 0); /* bf16 on the GPU */
      }
    }
    CHECK(gpu->sync(gpu) == 0);
    /* CPU reference: the two norms; GPU: the fused op (out, x) and the two norms (out2, x2) */
    CHECK(cpu->rmsnorm(cpu, &r.c, &r.c, NULL, &wr.c, 1e-6f) == 0);
    CHECK(cpu->rmsnorm(cpu, &out.c, &x.c, &r.c, &w.c, 1e-6f) == 0);
    CHECK_MSG(gpu->rmsnorm_post(gpu, &out.g, &x.g, &r.g, &wr.g, &w.g, 1e-6f) == 0, "%s", gpu->err);
    CHECK(gpu->rmsnorm(gpu, &r2.g, &r2.g, NULL, &wr.g, 1e-6f) == 0);
    CHECK(gpu->rmsnorm(gpu, &out2.g, &x2.g, &r2.g, &w.g, 1e-6f) == 0);
    char name[96];
    snprintf(name, sizeof name, "rmsnorm_post n=%d W=%d (w %s, wres %s)", n, W, pcases[ci][3] ? "f32" : "bf16",
             pcases[ci][2] ? "f32" : "bf16");
    compare(name, &out, n);
    float *a = malloc((size_t)n * W * sizeof(float)), *b = malloc((size_t)n * W * sizeof(float));
    CHECK(gpu->download_f32(gpu, &out.g, a) == 0 && gpu->download_f32(gpu, &out2.g, b) == 0);
    CHECK_MSG(!memcmp(a, b, (size_t)n * W * sizeof(float)), "%s: out not bitwise the two norms'", name);
    CHECK(gpu->download_f32(gpu, &x.g, a) == 0 && gpu->download_f32(gpu, &x2.g, b) == 0);
    CHECK_MSG(!memcmp(a, b, (size_t)n * W * sizeof(float)), "%s: x not bitwise the two norms'", name);
    free(a), free(b);
    drop(&x), drop(&x2), drop(&r), drop(&r2), drop(&wr), drop(&w), drop(&out), drop(&out2);
    free(xv), free(rv), free(wv[0]), free(wv[1]);
  }
  /* q/k norm: x [n, heads*hd] normalised per head with w [1, hd] */
  pair x, w, out;
  int n = 3, heads = 5, hd = 64;
  float *xv = rnd((int64_t)n * heads * hd, 1.f);
  act(&x, n, heads * hd, xv), act(&out, n, heads * hd, NULL);
  weight(&w, 1, hd, IG_DT_BF16, 1.f);
  ig_tensor xc = x.c, xg = x.g, oc = out.c, og = out.g;
  xc.rows = xg.rows = oc.rows = og.rows = n * heads;
  xc.cols = xg.cols = oc.cols = og.cols = hd;
  CHECK(cpu->rmsnorm(cpu, &oc, &xc, NULL, &w.c, 1e-6f) == 0);
  CHECK_MSG(gpu->rmsnorm(gpu, &og, &xg, NULL, &w.g, 1e-6f) == 0, "%s", gpu->err);
  compare("rmsnorm per head (q/k norm) n=3 heads=5 hd=64", &out, n);
  drop(&x), drop(&w), drop(&out);
  free(xv);
}

/* rotary dims of the rope cases below (0: the whole head; Phi3's partial_rotary_factor otherwise) */
static int g_rot;
static void test_rope(void) {
  static const int cases[][5] = {{1, 8, 2, 64, 0}, {13, 32, 8, 128, 0}, {5, 4, 4, 8, 0}, {70, 6, 3, 256, 0},
                                 {13, 24, 8, 128, 96}, {3, 4, 1, 12, 6}};
  for (int ci = 0; ci < 6; ci++) {
    int n = cases[ci][0], nh = cases[ci][1], nkv = cases[ci][2], hd = cases[ci][3], rot = cases[ci][4] ? cases[ci][4] : hd;
    float inv[128];
    for (int j = 0; j < rot / 2; j++) inv[j] = (float)pow(500000.0, -2.0 * j / rot);
    for (int af = 0; af < 2; af++) {
      ig_rope r = {.head_dim = hd, .rot_dim = rot, .inv_freq = inv, .attn_factor = af ? 1.3f : 1.f};
      CHECK(cpu->set_rope(cpu, &r) == 0);
      CHECK_MSG(gpu->set_rope(gpu, &r) == 0, "%s", gpu->err);
      int32_t *pos = malloc(n * 4);
      for (int i = 0; i < n; i++) pos[i] = irand(8192);
      simple_batch(n, pos, NULL, 0, NULL);
      pair q, k;
      float *qv = rnd((int64_t)n * nh * hd, 1.f), *kv = rnd((int64_t)n * nkv * hd, 1.f);
      act(&q, n, nh * hd, qv), act(&k, n, nkv * hd, kv);
      CHECK(cpu->rope(cpu, &q.c, &k.c, nh, nkv) == 0);
      CHECK_MSG(gpu->rope(gpu, &q.g, &k.g, nh, nkv) == 0, "%s", gpu->err);
      char name[96];
      snprintf(name, sizeof name, "rope q n=%d nh=%d hd=%d rot=%d attn_factor=%.1f", n, nh, hd, rot, r.attn_factor);
      compare(name, &q, n);
      snprintf(name, sizeof name, "rope k n=%d nkv=%d hd=%d", n, nkv, hd);
      compare(name, &k, n);
      drop(&q), drop(&k);
      free(qv), free(kv), free(pos);
    }
  }
}

static void test_elementwise(void) {
  /* 7 x 172 and 1 x 172: not a multiple of 8 elements (scalar kernel); 60 x 172, 2 x 172: the 16-byte kernel over
   * rows of 344 bytes (a flat array: rows need not be 16-byte aligned); 8 x 104: llama3-gqa's intermediate */
  static const int cases[][2] = {{1, 14336}, {7, 172}, {33, 1000}, {60, 172}, {2, 172}, {1, 172}, {8, 104}};
  for (int ci = 0; ci < (int)(sizeof cases / sizeof cases[0]); ci++) {
    int n = cases[ci][0], W = cases[ci][1];
    pair g, u, out, y;
    float *gv = rnd((int64_t)n * W, 4.f), *uv = rnd((int64_t)n * W, 2.f), *yv = rnd((int64_t)n * W, 1.f);
    act(&g, n, W, gv), act(&u, n, W, uv), act(&out, n, W, NULL), act(&y, n, W, yv);
    CHECK(cpu->swiglu(cpu, &out.c, &g.c, &u.c) == 0);
    CHECK_MSG(gpu->swiglu(gpu, &out.g, &g.g, &u.g) == 0, "%s", gpu->err);
    char name[96];
    snprintf(name, sizeof name, "swiglu n=%d I=%d", n, W);
    compare(name, &out, n);
    if (gpu->geglu && cpu->geglu) { /* Gemma3's MLP activation */
      CHECK(cpu->geglu(cpu, &out.c, &g.c, &u.c) == 0);
      CHECK_MSG(gpu->geglu(gpu, &out.g, &g.g, &u.g) == 0, "%s", gpu->err);
      snprintf(name, sizeof name, "geglu n=%d I=%d", n, W);
      compare(name, &out, n);
    }
    CHECK(cpu->add(cpu, &g.c, &y.c) == 0);
    CHECK_MSG(gpu->add(gpu, &g.g, &y.g) == 0, "%s", gpu->err);
    snprintf(name, sizeof name, "add n=%d W=%d", n, W);
    compare(name, &g, n);
    if (gpu->scale && cpu->scale) { /* Gemma3's embedding scale */
      CHECK(cpu->scale(cpu, &g.c, 33.94f) == 0);
      CHECK_MSG(gpu->scale(gpu, &g.g, 33.94f) == 0, "%s", gpu->err);
      snprintf(name, sizeof name, "scale n=%d W=%d", n, W);
      compare(name, &g, n);
    }
    if (gpu->softcap && cpu->softcap) { /* Gemma2's final logit softcapping (values up to 4: tanh bends them) */
      CHECK(cpu->softcap(cpu, &u.c, 1.5f) == 0);
      CHECK_MSG(gpu->softcap(gpu, &u.g, 1.5f) == 0, "%s", gpu->err);
      snprintf(name, sizeof name, "softcap 1.5 n=%d W=%d", n, W);
      compare(name, &u, n);
    }
    drop(&g), drop(&u), drop(&out), drop(&y);
    free(gv), free(uv), free(yv);
  }
  /* embed + gather_rows */
  int vocab = 1000, H = 72, n = 11;
  pair tab, e, gth;
  weight(&tab, vocab, H, IG_DT_BF16, 1.f);
  int32_t tok[11], rows[4] = {0, 3, 4, 10};
  for (int i = 0; i < n; i++) tok[i] = irand(vocab);
  simple_batch(n, NULL, tok, 4, rows);
  act(&e, n, H, NULL), act(&gth, 4, H, NULL);
  CHECK(cpu->embed(cpu, &e.c, &tab.c) == 0);
  CHECK_MSG(gpu->embed(gpu, &e.g, &tab.g) == 0, "%s", gpu->err);
  compare("embed n=11 vocab=1000 H=72", &e, n);
  CHECK(cpu->gather_rows(cpu, &gth.c, &e.c) == 0);
  CHECK_MSG(gpu->gather_rows(gpu, &gth.g, &e.g) == 0, "%s", gpu->err);
  compare("gather_rows 4 of 11", &gth, 4);
  drop(&tab), drop(&e), drop(&gth);
}

/* Attention: fill the caches with all ctx positions (kv_write), then attend the last q rows of each sequence.
 * The mix covers fresh prefill, chunked prefill over cached blocks, decode at short and long contexts and
 * the split/tile thresholds. */
/* The attention outputs of mode 0 (default kernels), per case in order, and the mode that must reproduce them bit for
 * bit (the fused decode kernel forced on: the same splits and combine as the split kernel, in one block). */
#define ATTN_SAVED 64
static float *attn_saved[ATTN_SAVED];
static int attn_n, cur_mode;
static int attn_saveable; /* the case runs in modes 4 and 5 too: mode 0 keeps its output for them */
static float attn_softcap; /* Gemma2's attn_logit_softcapping of the cases (0: none) */
static int g_kvdt;        /* the caches' ig_kv_dtype (FP8 cases: the CPU rounds K/V through the format as the GPU stores them) */
/* FP8 cases: per-layer K/V scales (kv_init's k_scale / v_scale; NULL: none), powers of two and not. The fused-writer
 * cases compare a layer written by the separate ops with one written by the fused op: one scale for both layers. */
static const float *g_ks, *g_vs;
static const float ks_layers[2] = {0.5f, 3.f}, vs_layers[2] = {2.5f, 0.25f}, ks_same[2] = {3.f, 3.f}, vs_same[2] = {0.25f, 0.25f};
static void attn_case(int nh, int nkv, int hd, int bs, int window, const seqspec *ss, int ns, const char *label) {
  int maxctx = 0;
  for (int s = 0; s < ns; s++) maxctx = ss[s].ctx > maxctx ? ss[s].ctx : maxctx;
  int mb = (maxctx + bs - 1) / bs + 1;
  int nblocks = ns * mb + 3;
  ig_kv_config kc = {.n_layers = 2, .n_blocks = nblocks, .block_size = bs, .n_kv_heads = nkv, .head_dim = hd, .dtype = g_kvdt,
                     .k_scale = g_ks, .v_scale = g_vs};
  CHECK_MSG(cpu->kv_init(cpu, &kc) == 0, "%s", cpu->err);
  CHECK_MSG(gpu->kv_init(gpu, &kc) == 0, "%s", gpu->err);
  /* block table: a random permutation of the blocks */
  int32_t *perm = malloc(nblocks * 4), *bt = malloc((size_t)ns * mb * 4);
  for (int i = 0; i < nblocks; i++) perm[i] = i;
  for (int i = nblocks - 1; i > 0; i--) {
    int j = irand(i + 1), t = perm[i];
    perm[i] = perm[j], perm[j] = t;
  }
  for (int i = 0; i < ns * mb; i++) bt[i] = perm[i];
  hb full, step;
  make_batch(&full, ss, ns, bt, mb, bs, 1, 100);
  make_batch(&step, ss, ns, bt, mb, bs, 0, 100);
  int nf = full.b.n_tokens, n = step.b.n_tokens, W = nkv * hd;
  for (int layer = 0; layer < 2; layer++) {
    set_batch_both(&full.b);
    pair k, v;
    float *kv = rnd((int64_t)nf * W, 1.f), *vv = rnd((int64_t)nf * W, 1.f);
    act(&k, nf, W, kv), act(&v, nf, W, vv);
    CHECK(cpu->kv_write(cpu, layer, &k.c, &v.c) == 0);
    CHECK_MSG(gpu->kv_write(gpu, layer, &k.g, &v.g) == 0, "%s", gpu->err);
    drop(&k), drop(&v);
    free(kv), free(vv);
  }
  set_batch_both(&step.b);
  pair q, out;
  float *qv = rnd((int64_t)n * nh * hd, 2.f);
  act(&q, n, nh * hd, qv), act(&out, n, nh * hd, NULL);
  ig_attn_params p = {.n_heads = nh, .n_kv_heads = nkv, .head_dim = hd, .scale = 1.f / sqrtf((float)hd), .sliding_window = window,
                      .softcap = attn_softcap};
  CHECK(cpu->attention(cpu, &out.c, &q.c, 1, &p) == 0);
  CHECK_MSG(gpu->attention(gpu, &out.g, &q.g, 1, &p) == 0, "%s", gpu->err);
  char name[128];
  snprintf(name, sizeof name, "attention %s nh=%d nkv=%d hd=%d bs=%d win=%d rows=%d%s%s%s", label, nh, nkv, hd, bs, window, n,
           g_kvdt ? " kv " : "", g_kvdt ? ig_kv_dtype_name(g_kvdt) : "", g_ks ? " scaled" : "");
  if (attn_softcap > 0) snprintf(name + strlen(name), sizeof name - strlen(name), " softcap=%g", (double)attn_softcap);
  compare(name, &out, n);
  if (getenv("IG_OPS_HASH")) { /* the output's bits, to compare a kernel change against the build before it */
    float *o = malloc((size_t)n * nh * hd * 4);
    CHECK(gpu->download_f32(gpu, &out.g, o) == 0);
    uint64_t hsh = 1469598103934665603ull;
    const unsigned char *ob = (const unsigned char *)o;
    for (size_t i = 0; i < (size_t)n * nh * hd * 4; i++) hsh = (hsh ^ ob[i]) * 1099511628211ull;
    printf("hash mode %d %s %016llx\n", cur_mode, name, (unsigned long long)hsh);
    free(o);
  }
  if ((cur_mode == 0 || cur_mode >= 4) && attn_saveable && attn_n < ATTN_SAVED) {
    float *o = malloc((size_t)n * nh * hd * 4);
    CHECK(gpu->download_f32(gpu, &out.g, o) == 0);
    if (cur_mode == 0) {
      attn_saved[attn_n] = o;
    } else {
      CHECK_MSG(attn_saved[attn_n] && memcmp(o, attn_saved[attn_n], (size_t)n * nh * hd * 4) == 0,
                "%s: the fused decode kernel's output differs from the split kernel + combine", name);
      free(o);
    }
    attn_n++;
  }
  /* graph capture of the same step replays to the same result */
  if (gpu->graph_begin) {
    static int graph_keys; /* fresh key per case: a graph is bound to the tensors it was captured with */
    uint64_t key = (uint64_t)(graph_keys += 10);
    int replays = 0;
    float *first = malloc((size_t)n * nh * hd * 4), *again = malloc((size_t)n * nh * hd * 4);
    CHECK(gpu->download_f32(gpu, &out.g, first) == 0);
    for (int it = 0; it < 3; it++) {
      CHECK(gpu->set_batch(gpu, &step.b) == 0);
      int g = gpu->graph_begin(gpu, key);
      CHECK_MSG(g >= 0, "%s", gpu->err);
      replays += g == 1;
      if (g == 0) CHECK_MSG(gpu->attention(gpu, &out.g, &q.g, 1, &p) == 0, "%s", gpu->err);
      CHECK_MSG(gpu->graph_end(gpu) == 0, "%s", gpu->err);
      CHECK(gpu->download_f32(gpu, &out.g, again) == 0);
      CHECK_MSG(memcmp(first, again, (size_t)n * nh * hd * 4) == 0, "graph step %d differs from eager", it);
    }
    CHECK_MSG(replays == 1, "graph replays %d != 1 (eager, capture, replay)", replays);
    /* freeing any device buffer drops the captured graphs (one may point into it): the same key runs eagerly */
    ig_tensor tmp;
    CHECK(gpu->alloc(gpu, &tmp, IG_DT_F32, 4, 4) == 0);
    gpu->free(gpu, &tmp);
    CHECK(gpu->set_batch(gpu, &step.b) == 0);
    int g = gpu->graph_begin(gpu, key);
    CHECK_MSG(g == 0, "a graph replayed after a device buffer was freed");
    if (g == 0) CHECK_MSG(gpu->attention(gpu, &out.g, &q.g, 1, &p) == 0, "%s", gpu->err);
    CHECK_MSG(gpu->graph_end(gpu) == 0, "%s", gpu->err);
    free(first), free(again);
  }
  drop(&q), drop(&out);
  free(qv), free(perm), free(bt);
  hb_free(&full), hb_free(&step);
}

/* Optional ops: argmax_rows against the host argmax of the same logits (ties included), mem_info sane. */
static void test_optional(void) {
  static const int cases[][2] = {{1, 128256}, {3, 1000}, {5, 37}};
  for (int ci = 0; ci < 3; ci++) {
    int rows = cases[ci][0], V = cases[ci][1];
    float *v = rnd((int64_t)rows * V, 10.f);
    v[V / 3] = v[V / 2] = 100.f; /* a tie in row 0: the lower index wins */
    ig_tensor t;
    CHECK(gpu->alloc(gpu, &t, ci == 2 ? IG_DT_F32 : gpu->act_dtype, rows, V) == 0);
    CHECK(gpu->upload(gpu, &t, v, IG_DT_F32) == 0);
    float *back = malloc((size_t)rows * V * 4);
    CHECK(gpu->download_f32(gpu, &t, back) == 0);
    int32_t ids[8];
    CHECK_MSG(gpu->argmax_rows(gpu, &t, ids) == 0, "%s", gpu->err);
    for (int r = 0; r < rows; r++) {
      int b = 0;
      for (int j = 1; j < V; j++)
        if (back[(size_t)r * V + j] > back[(size_t)r * V + b]) b = j;
      CHECK_MSG(ids[r] == b, "argmax rows=%d V=%d row %d: %d != %d", rows, V, r, ids[r], b);
    }
    printf("  argmax_rows rows=%d V=%d                                  ok\n", rows, V);
    gpu->free(gpu, &t);
    free(v), free(back);
  }
  size_t fr = 0, tot = 0;
  CHECK(gpu->mem_info(gpu, &fr, &tot) == 0);
  CHECK(tot > 0 && fr <= tot);
  CHECK(cpu->argmax_rows == NULL || cpu->argmax_rows != gpu->argmax_rows);
}

/* Two cache layers holding the same random context (both backends), rope set up, and the step batch (the last q
 * rows of each sequence) current: the stage on which a fused op writing layer 1 is compared with the ops it
 * replaces writing layer 0. */
typedef struct two_layers {
  int32_t *bt;
  hb full, step;
  int n; /* rows of the step */
} two_layers;
static void two_layers_setup(two_layers *t, int nkv, int hd, int bs, const seqspec *ss, int ns) {
  int maxctx = 0;
  for (int s = 0; s < ns; s++) maxctx = ss[s].ctx > maxctx ? ss[s].ctx : maxctx;
  int mb = (maxctx + bs - 1) / bs + 1, nblocks = ns * mb + 2, W = nkv * hd;
  ig_kv_config kc = {.n_layers = 2, .n_blocks = nblocks, .block_size = bs, .n_kv_heads = nkv, .head_dim = hd, .dtype = g_kvdt,
                     .k_scale = g_ks, .v_scale = g_vs};
  CHECK_MSG(cpu->kv_init(cpu, &kc) == 0, "%s", cpu->err);
  CHECK_MSG(gpu->kv_init(gpu, &kc) == 0, "%s", gpu->err);
  t->bt = malloc((size_t)ns * mb * 4);
  for (int i = 0; i < ns * mb; i++) t->bt[i] = nblocks - 1 - i;
  float inv[128];
  int rot = g_rot ? g_rot : hd;
  for (int j = 0; j < rot / 2; j++) inv[j] = (float)pow(500000.0, -2.0 * j / rot);
  ig_rope r = {.head_dim = hd, .rot_dim = rot, .inv_freq = inv, .attn_factor = 1.f};
  CHECK(cpu->set_rope(cpu, &r) == 0);
  CHECK(gpu->set_rope(gpu, &r) == 0);
  make_batch(&t->full, ss, ns, t->bt, mb, bs, 1, 100);
  make_batch(&t->step, ss, ns, t->bt, mb, bs, 0, 100);
  int nf = t->full.b.n_tokens;
  t->n = t->step.b.n_tokens;
  set_batch_both(&t->full.b); /* the same context in both layers */
  pair ck, cv;
  float *kv0 = rnd((int64_t)nf * W, 1.f), *vv0 = rnd((int64_t)nf * W, 1.f);
  act(&ck, nf, W, kv0), act(&cv, nf, W, vv0);
  for (int layer = 0; layer < 2; layer++) {
    CHECK(cpu->kv_write(cpu, layer, &ck.c, &cv.c) == 0);
    CHECK_MSG(gpu->kv_write(gpu, layer, &ck.g, &cv.g) == 0, "%s", gpu->err);
  }
  drop(&ck), drop(&cv);
  free(kv0), free(vv0);
  set_batch_both(&t->step.b);
}
static void two_layers_free(two_layers *t) {
  free(t->bt);
  hb_free(&t->full), hb_free(&t->step);
}

/* rope_kv_write (rope then kv_write in one launch) is bitwise the two ops: layer 0 written by the pair, layer 1 by
 * the fused op, from the same cached context; q/k and the attention over each layer must be identical, and q
 * within tolerance of the CPU's rope. Decode rows and prompt chunks. */
static void rope_kv_case(int nh, int nkv, int hd, int bs, const seqspec *ss, int ns) {
  if (!gpu->rope_kv_write) return;
  two_layers tl;
  two_layers_setup(&tl, nkv, hd, bs, ss, ns);
  int n = tl.n, W = nkv * hd;
  float *qv = rnd((int64_t)n * nh * hd, 1.f), *kv = rnd((int64_t)n * W, 1.f), *vv = rnd((int64_t)n * W, 1.f);
  pair q1, k1, q2, k2, v, o1, o2;
  act(&q1, n, nh * hd, qv), act(&k1, n, W, kv), act(&q2, n, nh * hd, qv), act(&k2, n, W, kv), act(&v, n, W, vv);
  act(&o1, n, nh * hd, NULL), act(&o2, n, nh * hd, NULL);
  CHECK(cpu->rope(cpu, &q1.c, &k1.c, nh, nkv) == 0);
  CHECK_MSG(gpu->rope(gpu, &q1.g, &k1.g, nh, nkv) == 0, "%s", gpu->err);
  CHECK_MSG(gpu->kv_write(gpu, 0, &k1.g, &v.g) == 0, "%s", gpu->err);
  CHECK_MSG(gpu->rope_kv_write(gpu, &q2.g, &k2.g, &v.g, nh, nkv, 1) == 0, "%s", gpu->err);
  char name[96];
  snprintf(name, sizeof name, "rope_kv_write q nh=%d nkv=%d hd=%d rot=%d bs=%d rows=%d", nh, nkv, hd, g_rot ? g_rot : hd,
           bs, n);
  compare(name, &q1, n);
  CHECK_MSG(same_gpu(&q1.g, &q2.g, n) && same_gpu(&k1.g, &k2.g, n), "%s: q/k not bitwise rope", name);
  ig_attn_params p = {.n_heads = nh, .n_kv_heads = nkv, .head_dim = hd, .scale = 1.f / sqrtf((float)hd), .sliding_window = 0};
  CHECK_MSG(gpu->attention(gpu, &o1.g, &q1.g, 0, &p) == 0 && gpu->attention(gpu, &o2.g, &q2.g, 1, &p) == 0, "%s", gpu->err);
  CHECK_MSG(same_gpu(&o1.g, &o2.g, n), "%s: attention over the fused op's cache differs", name);
  drop(&q1), drop(&k1), drop(&q2), drop(&k2), drop(&v), drop(&o1), drop(&o2);
  free(qv), free(kv), free(vv);
  two_layers_free(&tl);
}

/* qk_norm_rope_kv_write (Qwen3's and Gemma3's per-head q/k norms, rope and the cache write as one op) is bitwise
 * rmsnorm over heads, rmsnorm, rope_kv_write: layer 0 written by the three ops, layer 1 by the fused one; qn, kn and
 * the attention over each layer must be identical, qn within tolerance of the CPU's norms and rope; norm weights bf16
 * or f32 (Gemma's 1 + w), and q/k left as they were. */
static void qk_norm_rope_case(int nh, int nkv, int hd, int bs, int w32, const seqspec *ss, int ns) {
  if (!gpu->qk_norm_rope_kv_write) return;
  two_layers tl;
  two_layers_setup(&tl, nkv, hd, bs, ss, ns);
  int n = tl.n, W = nkv * hd;
  float *qv = rnd((int64_t)n * nh * hd, 2.f), *kv = rnd((int64_t)n * W, 2.f), *vv = rnd((int64_t)n * W, 1.f);
  pair q, k, v, qn1, kn1, qn2, kn2, wq, wk, o1, o2;
  act(&q, n, nh * hd, qv), act(&k, n, W, kv), act(&v, n, W, vv);
  act(&qn1, n, nh * hd, NULL), act(&kn1, n, W, NULL), act(&qn2, n, nh * hd, NULL), act(&kn2, n, W, NULL);
  act(&o1, n, nh * hd, NULL), act(&o2, n, nh * hd, NULL);
  float *wv[2];
  pair *ws[2] = {&wq, &wk};
  for (int i = 0; i < 2; i++) {
    wv[i] = malloc((size_t)hd * sizeof(float));
    for (int j = 0; j < hd; j++) wv[i][j] = w32 ? 1.f + 0.1f * frand() : from_bf16(to_bf16(1.f + 0.1f * frand()));
    CHECK(cpu->weight(cpu, &ws[i]->c, wv[i], IG_DT_F32, 1, hd) == 0);
    CHECK((w32 ? gpu->weight_keep(gpu, &ws[i]->g, wv[i], IG_DT_F32, 1, hd) : gpu->weight(gpu, &ws[i]->g, wv[i], IG_DT_F32, 1, hd)) == 0);
  }
  CHECK(gpu->sync(gpu) == 0);
  /* the three ops (GPU, layer 0), and the CPU's norms and rope */
  ig_tensor hq = q.g, hk = k.g, hqn = qn1.g, hkn = kn1.g;
  hq.rows = hqn.rows = (int64_t)n * nh, hk.rows = hkn.rows = (int64_t)n * nkv;
  hq.cols = hk.cols = hqn.cols = hkn.cols = hd;
  CHECK_MSG(gpu->rmsnorm(gpu, &hqn, &hq, NULL, &wq.g, 1e-6f) == 0 && gpu->rmsnorm(gpu, &hkn, &hk, NULL, &wk.g, 1e-6f) == 0,
            "%s", gpu->err);
  CHECK_MSG(gpu->rope_kv_write(gpu, &qn1.g, &kn1.g, &v.g, nh, nkv, 0) == 0, "%s", gpu->err);
  CHECK_MSG(gpu->qk_norm_rope_kv_write(gpu, &qn2.g, &kn2.g, &q.g, &k.g, &v.g, &wq.g, &wk.g, 1e-6f, nh, nkv, 1) == 0, "%s", gpu->err);
  ig_tensor cq = q.c, ck = k.c, cqn = qn1.c, ckn = kn1.c;
  cq.rows = cqn.rows = (int64_t)n * nh, ck.rows = ckn.rows = (int64_t)n * nkv;
  cq.cols = ck.cols = cqn.cols = ckn.cols = hd;
  CHECK(cpu->rmsnorm(cpu, &cqn, &cq, NULL, &wq.c, 1e-6f) == 0 && cpu->rmsnorm(cpu, &ckn, &ck, NULL, &wk.c, 1e-6f) == 0);
  CHECK(cpu->rope(cpu, &qn1.c, &kn1.c, nh, nkv) == 0);
  char name[112];
  snprintf(name, sizeof name, "qk_norm_rope_kv_write q nh=%d nkv=%d hd=%d rot=%d bs=%d rows=%d w %s", nh, nkv, hd,
           g_rot ? g_rot : hd, bs, n, w32 ? "f32" : "bf16");
  compare(name, &qn1, n);
  CHECK_MSG(same_gpu(&qn1.g, &qn2.g, n) && same_gpu(&kn1.g, &kn2.g, n), "%s: qn/kn not bitwise the three ops'", name);
  ig_attn_params p = {.n_heads = nh, .n_kv_heads = nkv, .head_dim = hd, .scale = 1.f / sqrtf((float)hd), .sliding_window = 0};
  CHECK_MSG(gpu->attention(gpu, &o1.g, &qn1.g, 0, &p) == 0 && gpu->attention(gpu, &o2.g, &qn2.g, 1, &p) == 0, "%s", gpu->err);
  CHECK_MSG(same_gpu(&o1.g, &o2.g, n), "%s: attention over the fused op's cache differs", name);
  float *back = malloc((size_t)n * nh * hd * sizeof(float));
  CHECK(gpu->download_f32(gpu, &q.g, back) == 0);
  int same = 1;
  for (int64_t i = 0; i < (int64_t)n * nh * hd; i++) /* q as uploaded: rounded to the activation dtype */
    same &= back[i] == (gpu->act_dtype == IG_DT_F32 ? qv[i] : from_bf16(to_bf16(qv[i])));
  CHECK_MSG(same, "%s: q was written", name);
  free(back);
  drop(&q), drop(&k), drop(&v), drop(&qn1), drop(&kn1), drop(&qn2), drop(&kn2), drop(&wq), drop(&wk), drop(&o1), drop(&o2);
  free(qv), free(kv), free(vv), free(wv[0]), free(wv[1]);
  two_layers_free(&tl);
}

/* qkv_rope_kv_write (the q|k|v product, rope and the cache write as one op; CUDA: one GEMM into a packed buffer and
 * one kernel, above the skinny GEMM's rows) is bitwise matmul_n then rope_kv_write: layer 0 written by the pair,
 * layer 1 by the fused op, over one cached context; q and the attention over each layer must be identical, and q
 * within tolerance of the CPU's products and rope. */
static void qkv_rope_case(int nh, int nkv, int hd, int bs, int I, const seqspec *ss, int ns) {
  if (!gpu->qkv_rope_kv_write || !gpu->weight_alloc) return;
  two_layers tl;
  two_layers_setup(&tl, nkv, hd, bs, ss, ns);
  int n = tl.n, W = nkv * hd, Q = nh * hd;
  /* the weights: each part for the CPU, the three as adjacent rows of one buffer for the GPU (as the model loads) */
  pair w[3];
  int O[3] = {Q, W, W};
  for (int i = 0; i < 3; i++) weight(&w[i], O[i], I, IG_DT_BF16, 0.05f);
  ig_tensor qkv, parts[3];
  CHECK(gpu->weight_alloc(gpu, &qkv, IG_DT_BF16, Q + 2 * W, I) == 0);
  for (int i = 0, r0 = 0; i < 3; r0 += O[i], i++) {
    CHECK_MSG(gpu->weight_rows(gpu, &qkv, r0, keeps[n_keeps - 3 + i], IG_DT_BF16, O[i]) == 0, "%s", gpu->err);
    parts[i] = qkv, parts[i].rows = O[i], parts[i].owned = 0;
    parts[i].data = (char *)qkv.data + (size_t)r0 * I * ig_dtype_size(qkv.dtype);
  }
  CHECK(gpu->sync(gpu) == 0);
  float *xv = rnd((int64_t)n * I, 1.f);
  pair x, q1, k1, v1, q2, k2, v2, kc_, o1, o2;
  act(&x, n, I, xv), act(&q1, n, Q, NULL), act(&k1, n, W, NULL), act(&v1, n, W, NULL), act(&q2, n, Q, NULL);
  act(&k2, n, W, NULL), act(&v2, n, W, NULL), act(&kc_, n, W, NULL), act(&o1, n, Q, NULL), act(&o2, n, Q, NULL);
  ig_tensor *outs[3] = {&q1.g, &k1.g, &v1.g};
  const ig_tensor *pw[3] = {&parts[0], &parts[1], &parts[2]}, *nob[3] = {NULL, NULL, NULL};
  CHECK_MSG(gpu->matmul_n(gpu, 3, outs, &x.g, pw, nob) == 0, "%s", gpu->err);
  CHECK_MSG(gpu->rope_kv_write(gpu, &q1.g, &k1.g, &v1.g, nh, nkv, 0) == 0, "%s", gpu->err);
  CHECK_MSG(gpu->qkv_rope_kv_write(gpu, &q2.g, &k2.g, &v2.g, &x.g, pw, nh, nkv, 1) == 0, "%s", gpu->err);
  CHECK(cpu->matmul(cpu, &q2.c, &x.c, &w[0].c, NULL) == 0 && cpu->matmul(cpu, &kc_.c, &x.c, &w[1].c, NULL) == 0);
  CHECK(cpu->rope(cpu, &q2.c, &kc_.c, nh, nkv) == 0);
  char name[112];
  snprintf(name, sizeof name, "qkv_rope_kv_write q nh=%d nkv=%d hd=%d rot=%d I=%d bs=%d rows=%d", nh, nkv, hd,
           g_rot ? g_rot : hd, I, bs, n);
  compare(name, &q2, n);
  CHECK_MSG(same_gpu(&q1.g, &q2.g, n), "%s: q not bitwise matmul_n + rope_kv_write", name);
  ig_attn_params p = {.n_heads = nh, .n_kv_heads = nkv, .head_dim = hd, .scale = 1.f / sqrtf((float)hd), .sliding_window = 0};
  CHECK_MSG(gpu->attention(gpu, &o1.g, &q1.g, 0, &p) == 0 && gpu->attention(gpu, &o2.g, &q2.g, 1, &p) == 0, "%s", gpu->err);
  CHECK_MSG(same_gpu(&o1.g, &o2.g, n), "%s: attention over the fused op's cache differs", name);
  drop(&x), drop(&q1), drop(&k1), drop(&v1), drop(&q2), drop(&k2), drop(&v2), drop(&kc_), drop(&o1), drop(&o2);
  for (int i = 0; i < 3; i++) drop(&w[i]);
  gpu->free(gpu, &qkv);
  free(xv);
  two_layers_free(&tl);
}

/* The skinny tensor-core GEMM (cuda_gemm.cu, up to 128 rows per launch): against the CPU, and batch-invariant: rows
 * of a product of M rows bitwise those of fewer rows (other tile heights, the same sums in the same order), with K
 * split over blocks (the "sgemm" mode) and without (the other modes, where its rows must also be cuBLASLt's).
 * Plain with bias, the SwiGLU epilogue, and q|k|v outputs over one weight buffer. */
/* weight_fp8: FP8 codes dequantized on the device give exactly the host's bf16(decode(code) * scale) (llama.c's
 * rule), for e4m3 and e5m2, scales per tensor, per row and per 16 x 16 block (edge blocks included), a part starting
 * past the tensor's first row, into a new weight and into rows of a weight_alloc buffer; scales that do not cover
 * the part are refused. bf16 activations only (the op is not offered for f32). */
static void test_weight_fp8(void) {
  if (gpu->act_dtype != IG_DT_BF16 || !gpu->weight_fp8) return;
  static const int shapes[][2] = {{37, 70}, {128, 256}, {5, 8}, {300, 4104}};
  int cases = 0, bad = 0;
  for (int si = 0; si < 4; si++)
    for (int e5 = 0; e5 < 2; e5++)
      for (int lay = 0; lay < 3; lay++) {
        const int R = shapes[si][0] * 2, C = shapes[si][1], rows = shapes[si][0], srow0 = R / 4;
        const int br = lay == 0 ? R : lay == 1 ? 1 : 16, bc = lay == 2 ? 16 : C;
        const int sr = (R + br - 1) / br, sc = (C + bc - 1) / bc;
        uint8_t *codes = malloc((size_t)R * C);
        float *sv = malloc((size_t)sr * sc * sizeof(float));
        for (int64_t i = 0; i < (int64_t)R * C; i++) {
          uint8_t b;
          do b = (uint8_t)irand(256);
          while (e5 ? ((b & 0x7c) == 0x7c) : ((b & 0x7f) == 0x7f)); /* no NaN or infinity codes */
          codes[i] = b;
        }
        for (int i = 0; i < sr * sc; i++) sv[i] = (0.5f + frand()) * 1e-2f;
        uint16_t *want = malloc((size_t)rows * C * 2);
        for (int i = 0; i < rows; i++)
          for (int j = 0; j < C; j++) {
            uint8_t b = codes[(size_t)(srow0 + i) * C + j];
            float v = (e5 ? ig_fp8_e5m2_to_f32(b) : ig_fp8_e4m3_to_f32(b)) * sv[((srow0 + i) / br) * sc + j / bc];
            want[(size_t)i * C + j] = to_bf16(v);
          }
        float *got = malloc((size_t)(rows + 7) * C * sizeof(float));
        for (int into = 0; into < 2; into++) {
          ig_tensor t;
          memset(&t, 0, sizeof t);
          int row0 = 0;
          if (into) {
            CHECK(gpu->weight_alloc(gpu, &t, IG_DT_BF16, rows + 7, C) == 0);
            row0 = 3;
          }
          CHECK_MSG(gpu->weight_fp8(gpu, &t, row0, codes + (size_t)srow0 * C, e5, sv, (int64_t)sr * sc, srow0, br, bc, sc,
                                    rows, C) == 0, "weight_fp8: %s", gpu->err);
          CHECK(gpu->sync(gpu) == 0 && gpu->download_f32(gpu, &t, got) == 0);
          for (int64_t k = 0; k < (int64_t)rows * C; k++)
            if (to_bf16(got[(size_t)row0 * C + k]) != want[k]) {
              if (bad++ < 5)
                fprintf(stderr, "weight_fp8 %dx%d %s layout %d into %d: element %lld %g, want %g\n", rows, C,
                        e5 ? "e5m2" : "e4m3", lay, into, (long long)k, got[(size_t)row0 * C + k], from_bf16(want[k]));
            }
          gpu->free(gpu, &t);
          cases++;
        }
        /* scales one short of the part: refused, nothing read */
        ig_tensor t;
        memset(&t, 0, sizeof t);
        CHECK(gpu->weight_fp8(gpu, &t, 0, codes, e5, sv, (int64_t)sr * sc - 1, R - rows, br, bc, sc, rows, C) != 0);
        CHECK(strstr(gpu->err, "scales do not cover") != NULL);
        free(codes);
        free(sv);
        free(want);
        free(got);
      }
  CHECK_MSG(bad == 0, "weight_fp8: %d elements differ from the host's dequantization", bad);
  printf("  weight_fp8: %d cases (e4m3 / e5m2; per tensor, row, 16 x 16 block; new and into rows) bitwise the host's\n",
         cases);
}

static void test_sgemm_shapes(int M, const int *ms, int nms);
static void test_bi_model_shapes(void);
static int sgemm_lt; /* the cuBLASLt batch-invariant mode: q|k|v is a product of its own width (checked vs the CPU) */
static void test_sgemm(void) {
  if (gpu->act_dtype != IG_DT_BF16) return;
  /* backends of their own: v == 0, the fastest mode with every shape offered to the skinny GEMM up to 128 rows (its
   * tile heights 16..128, where it gives cuBLASLt's bits), against the CPU; v == 1, the "sgemm" mode (every row count
   * through it with K splits, 128 rows per launch): rows of a 300-row product bitwise those of 1, 2, 9, 130 and 200
   * rows; v >= 2, the cuBLASLt forms below. The op helpers use the global backend, so each stands in for a while. */
  ig_backend *keep = gpu;
  char err[256];
  static const int ms[] = {9, 20, 64}, ms_bi[] = {1, 2, 9, 130, 200}, ms_lt[] = {1, 2, 9, 16, 17, 64, 130, 300, 1000};
  for (int v = 0; v < 5; v++) {
    /* v == 3 sets nothing: the default must be the invariant cuBLASLt form (with the skinny GEMM for up to 32 rows of
     * the products it has checked against cuBLASLt); v == 4 offers every shape and up to 128 rows to that check */
    if (v == 0) setenv("IGNIS_CUDA_BI_SGEMM", "128", 1), setenv("IGNIS_CUDA_BI_SGEMM_TILES", "0", 1), setenv("IGNIS_CUDA_BATCH_INVARIANT", "0", 1);
    else if (v == 1) setenv("IGNIS_CUDA_BATCH_INVARIANT", "sgemm", 1);
    else if (v == 2) setenv("IGNIS_CUDA_BATCH_INVARIANT", "1", 1); /* the cuBLASLt form, pinned below */
    if (v == 2) setenv("IGNIS_CUDA_BI_REF_M", "128", 1); /* one algorithm per shape (v == 3: one per m) */
    if (v == 4) setenv("IGNIS_CUDA_BI_SGEMM", "128", 1), setenv("IGNIS_CUDA_BI_SGEMM_TILES", "0", 1);
    gpu = ig_backend_cuda_create_ex(0, IG_DT_BF16, err, sizeof err);
    unsetenv("IGNIS_CUDA_BATCH_INVARIANT"), unsetenv("IGNIS_CUDA_BI_REF_M");
    unsetenv("IGNIS_CUDA_BI_SGEMM"), unsetenv("IGNIS_CUDA_BI_SGEMM_TILES");
    CHECK_MSG(gpu != NULL, "%s", err);
    if (gpu) {
      sgemm_lt = v >= 2;
      fflush(stdout);
      fprintf(stderr, "sgemm variant %d%s\n", v,
              v == 4   ? " (batch-invariant, every checked shape through the skinny GEMM up to 128 rows)"
              : v == 3 ? " (the default: cuBLASLt, batch-invariant)"
              : v == 2 ? " (cuBLASLt, batch-invariant, pinned at 128 rows)" : "");
      if (v >= 2) test_sgemm_shapes(1100, ms_lt, 9), test_bi_model_shapes();
      else if (v) test_sgemm_shapes(300, ms_bi, 5);
      else test_sgemm_shapes(100, ms, 3);
      sgemm_lt = 0;
      gpu->destroy(gpu);
    }
  }
  gpu = keep;
}
/* The batch-invariant cuBLASLt mode at the Llama-3-8B shapes (q|k|v, o, gate/up, down, lm_head, and an odd one):
 * rows of many row counts bitwise those of 4,096 rows (a full prompt chunk; lm_head: 1,100), on the GPU alone (no CPU reference at these sizes). */
static void test_bi_model_shapes(void) {
  static const int shapes[][2] = {{4096, 6144}, {4096, 4096}, {4096, 14336}, {14336, 4096}, {4096, 128256}, {4096, 333}};
  static const int ms[] = {1, 2, 3, 5, 8, 9, 15, 16, 17, 24, 32, 48, 64, 96, 128, 200, 256, 384, 512, 1100, 2047, 3000};
  const int nall = (int)(sizeof ms / sizeof ms[0]);
  for (int si = 0; si < 6; si++) {
    int I = shapes[si][0], O = shapes[si][1];
    /* prompt chunks reach 4,096 rows (--max-batch-prefill-tokens); lm_head only ever sees the sampled rows */
    const int M = O > 100000 ? 1100 : 4096, nms = O > 100000 ? nall - 3 : nall;
    size_t nw = (size_t)O * I;
    uint16_t *hw = malloc(nw * 2), *hx = malloc((size_t)M * I * 2);
    for (size_t i = 0; i < nw; i++) hw[i] = to_bf16(frand() * 0.02f);
    for (size_t i = 0; i < (size_t)M * I; i++) hx[i] = to_bf16(frand());
    ig_tensor w, x, ref, o;
    CHECK(gpu->weight(gpu, &w, hw, IG_DT_BF16, O, I) == 0 && gpu->sync(gpu) == 0);
    CHECK(gpu->alloc(gpu, &x, IG_DT_BF16, M, I) == 0 && gpu->upload(gpu, &x, hx, IG_DT_BF16) == 0);
    CHECK(gpu->alloc(gpu, &ref, IG_DT_BF16, M, O) == 0 && gpu->alloc(gpu, &o, IG_DT_BF16, M, O) == 0);
    CHECK_MSG(gpu->matmul(gpu, &ref, &x, &w, NULL) == 0, "%s", gpu->err);
    int bad = 0;
    for (int mi = 0; mi < nms; mi++) {
      ig_tensor xg = x, og = o;
      xg.rows = og.rows = ms[mi];
      CHECK_MSG(gpu->matmul(gpu, &og, &xg, &w, NULL) == 0, "%s", gpu->err);
      if (!same_gpu(&og, &ref, ms[mi])) {
        bad++;
        fprintf(stderr, "  lt-invariant model shape I=%d O=%d: rows of m=%d differ from m=%d\n", I, O, ms[mi], M);
      }
    }
    CHECK_MSG(bad == 0, "lt-invariant model shape I=%d O=%d: %d row counts differ", I, O, bad);
    printf("  lt-invariant model shape I=%d O=%d: %d row counts, %d differ\n", I, O, nms, bad);
    gpu->free(gpu, &w), gpu->free(gpu, &x), gpu->free(gpu, &ref), gpu->free(gpu, &o);
    free(hw), free(hx);
  }
}

static void test_sgemm_shapes(int M, const int *ms, int nms) {
  static const int shapes[][2] = {{4096, 333}, {2048, 520}, {1032, 200}}; /* I, O */
  for (int si = 0; si < 3; si++) {
    int I = shapes[si][0], O = shapes[si][1];
    pair x, w, b, wu, ref, refg, refu, o, g, u;
    float *xv = rnd((int64_t)M * I, 1.f);
    act(&x, M, I, xv);
    weight(&w, O, I, IG_DT_BF16, 0.05f);
    weight(&wu, O, I, IG_DT_BF16, 0.05f);
    weight(&b, 1, O, IG_DT_BF16, 0.5f);
    act(&ref, M, O, NULL), act(&o, M, O, NULL), act(&refg, M, O, NULL), act(&refu, M, O, NULL);
    act(&g, M, O, NULL), act(&u, M, O, NULL);
    simple_batch(M, NULL, NULL, 0, NULL);
    CHECK(cpu->matmul(cpu, &ref.c, &x.c, &w.c, &b.c) == 0);
    CHECK_MSG(gpu->matmul(gpu, &ref.g, &x.g, &w.g, &b.g) == 0, "%s", gpu->err);
    char name[96];
    snprintf(name, sizeof name, "sgemm split m=%d I=%d O=%d +bias", M, I, O);
    compare(name, &ref, M);
    CHECK(cpu->matmul(cpu, &refg.c, &x.c, &w.c, NULL) == 0 && cpu->matmul(cpu, &refu.c, &x.c, &wu.c, NULL) == 0);
    CHECK(cpu->swiglu(cpu, &g.c, &refg.c, &refu.c) == 0);
    CHECK_MSG(gpu->matmul_swiglu(gpu, &g.g, &u.g, &x.g, &w.g, NULL, &wu.g, NULL) == 0, "%s", gpu->err);
    snprintf(name, sizeof name, "sgemm swiglu split m=%d I=%d O=%d", M, I, O);
    compare(name, &g, M);
    for (int mi = 0; mi < nms; mi++) {
      int m = ms[mi];
      ig_tensor xg = x.g, og = o.g;
      xg.rows = og.rows = m;
      CHECK_MSG(gpu->matmul(gpu, &og, &xg, &w.g, &b.g) == 0, "%s", gpu->err);
      CHECK_MSG(same_gpu(&og, &ref.g, m), "sgemm I=%d O=%d: rows of m=%d differ from the same rows at m=%d", I, O, m, M);
      ig_tensor ug = refu.g;
      CHECK_MSG(gpu->matmul_swiglu(gpu, &og, &ug, &xg, &w.g, NULL, &wu.g, NULL) == 0, "%s", gpu->err);
      CHECK_MSG(same_gpu(&og, &g.g, m), "sgemm swiglu I=%d O=%d: rows of m=%d differ from the same rows at m=%d", I, O, m, M);
    }
    if (gpu->weight_alloc) { /* q|k|v as three outputs over one buffer: rows 0..O-1 of w, then two 72-row parts */
      ig_tensor qkv, parts[3];
      int Os[3] = {O, 72, 72};
      pair outs[3];
      float *extra = malloc((size_t)144 * I * 2);
      uint16_t *e16 = (uint16_t *)extra;
      for (int i = 0; i < 144 * I; i++) e16[i] = to_bf16(frand() * 0.05f);
      CHECK(gpu->weight_alloc(gpu, &qkv, IG_DT_BF16, O + 144, I) == 0);
      /* w's host rows: weight() kept them third from last (w, wu, b) */
      CHECK(gpu->weight_rows(gpu, &qkv, 0, keeps[n_keeps - 3], IG_DT_BF16, O) == 0);
      CHECK(gpu->weight_rows(gpu, &qkv, O, extra, IG_DT_BF16, 144) == 0);
      CHECK(gpu->sync(gpu) == 0);
      for (int i = 0, r0 = 0; i < 3; r0 += Os[i], i++) {
        parts[i] = qkv, parts[i].rows = Os[i], parts[i].owned = 0;
        parts[i].data = (char *)qkv.data + (size_t)r0 * I * 2;
        act(&outs[i], M, Os[i], NULL);
      }
      ig_tensor *og[3] = {&outs[0].g, &outs[1].g, &outs[2].g};
      const ig_tensor *pw[3] = {&parts[0], &parts[1], &parts[2]}, *pb[3] = {&b.g, NULL, NULL};
      CHECK_MSG(gpu->matmul_n(gpu, 3, og, &x.g, pw, pb) == 0, "%s", gpu->err);
      if (sgemm_lt) {
        CHECK(cpu->matmul(cpu, &outs[0].c, &x.c, &w.c, &b.c) == 0);
        snprintf(name, sizeof name, "lt-invariant q|k|v m=%d I=%d part 0", M, I);
        compare(name, &outs[0], M);
        for (int mi = 0; mi < nms; mi++) { /* rows across m, as for the plain product */
          pair tmp;
          act(&tmp, M, O, NULL);
          ig_tensor xg = x.g, o0 = tmp.g, s1, s2;
          xg.rows = o0.rows = ms[mi];
          CHECK(gpu->alloc(gpu, &s1, IG_DT_BF16, ms[mi], 72) == 0 && gpu->alloc(gpu, &s2, IG_DT_BF16, ms[mi], 72) == 0);
          ig_tensor *om[3] = {&o0, &s1, &s2};
          CHECK_MSG(gpu->matmul_n(gpu, 3, om, &xg, pw, pb) == 0, "%s", gpu->err);
          CHECK_MSG(same_gpu(&o0, &outs[0].g, ms[mi]), "lt-invariant q|k|v I=%d: rows of m=%d differ from m=%d", I, ms[mi], M);
          gpu->free(gpu, &s1), gpu->free(gpu, &s2);
          drop(&tmp);
        }
      } else {
        CHECK_MSG(same_gpu(&outs[0].g, &ref.g, M), "sgemm q|k|v I=%d: the first output differs from the plain product", I);
      }
      /* the other parts against the CPU: the same rows loaded there as a weight of their own */
      pair we;
      CHECK(cpu->weight(cpu, &we.c, extra, IG_DT_BF16, 144, I) == 0);
      for (int i = 1; i < 3; i++) {
        ig_tensor wc = we.c;
        wc.rows = 72, wc.owned = 0, wc.data = (char *)we.c.data + (size_t)(i - 1) * 72 * I * ig_dtype_size(we.c.dtype);
        CHECK(cpu->matmul(cpu, &outs[i].c, &x.c, &wc, NULL) == 0);
        snprintf(name, sizeof name, "sgemm q|k|v one buffer m=%d I=%d part %d", M, I, i);
        compare(name, &outs[i], M);
      }
      cpu->free(cpu, &we.c);
      for (int i = 0; i < 3; i++) drop(&outs[i]);
      gpu->free(gpu, &qkv);
      if (n_keeps < 4096) keeps[n_keeps++] = extra;
      else free(extra);
    }
    drop(&x), drop(&w), drop(&wu), drop(&b), drop(&ref), drop(&o), drop(&refg), drop(&refu), drop(&g), drop(&u);
    free(xv);
  }
}

static void test_attention_more(const seqspec *mix, const seqspec *decode, const seqspec *prefill);
/* An FP8 cache's values exactly: one key per sequence, so each output row is its V row as the cache holds it (softmax
 * weight 1), which must be the host's rounding (fp8.h) of the bf16 input: ties to even, subnormals, saturation. */
static void fp8_exact_case(int dt) {
  const int nkv = 2, hd = 128, nh = 4, W = nkv * hd, bs = 16;
  static const seqspec one[] = {{1, 1}, {1, 1}, {1, 1}};
  int32_t bt[6] = {4, 5, 2, 3, 0, 1};
  ig_kv_config kc = {.n_layers = 1, .n_blocks = 6, .block_size = bs, .n_kv_heads = nkv, .head_dim = hd, .dtype = dt};
  CHECK_MSG(gpu->kv_init(gpu, &kc) == 0, "%s", gpu->err);
  hb b;
  make_batch(&b, one, 3, bt, 2, bs, 1, 100);
  CHECK_MSG(gpu->set_batch(gpu, &b.b) == 0, "%s", gpu->err);
  int n = 3;
  float *kv = rnd((int64_t)n * W, 1.f), *vv = malloc((size_t)n * W * sizeof(float)), *qv = rnd((int64_t)n * nh * hd, 1.f);
  static const float special[] = {0.f, -0.f, 1.f, 1.0625f, 1.1875f, -1.1875f, 0.0009765625f, 0.0029296875f, 448.f, 464.f,
                                  480.f, 1e5f, -1e9f, 57344.f, 61440.f, 1e-30f, 3e-5f, 1.52587890625e-05f, INFINITY, -INFINITY};
  const int nsp = (int)(sizeof special / sizeof *special);
  for (int i = 0; i < n * W; i++) { /* the specials, then values over many binades */
    float v = i < nsp ? special[i] : ldexpf(frand(), irand(30) - 20);
    vv[i] = isinf(v) ? v : from_bf16(to_bf16(v));
  }
  ig_tensor k, v, q, o;
  CHECK(gpu->alloc(gpu, &k, IG_DT_BF16, n, W) == 0 && gpu->alloc(gpu, &v, IG_DT_BF16, n, W) == 0);
  CHECK(gpu->alloc(gpu, &q, IG_DT_BF16, n, nh * hd) == 0 && gpu->alloc(gpu, &o, IG_DT_BF16, n, nh * hd) == 0);
  CHECK(gpu->upload(gpu, &k, kv, IG_DT_F32) == 0 && gpu->upload(gpu, &v, vv, IG_DT_F32) == 0);
  CHECK(gpu->upload(gpu, &q, qv, IG_DT_F32) == 0);
  CHECK_MSG(gpu->kv_write(gpu, 0, &k, &v) == 0, "%s", gpu->err);
  ig_attn_params p = {.n_heads = nh, .n_kv_heads = nkv, .head_dim = hd, .scale = 1.f / sqrtf((float)hd)};
  CHECK_MSG(gpu->attention(gpu, &o, &q, 0, &p) == 0, "%s", gpu->err);
  float *out = malloc((size_t)n * nh * hd * sizeof(float));
  CHECK(gpu->download_f32(gpu, &o, out) == 0);
  int bad = 0;
  for (int i = 0; i < n; i++)
    for (int h = 0; h < nh; h++)
      for (int d = 0; d < hd; d++) {
        float want = ig_fp8_round(dt, vv[(size_t)i * W + (h / (nh / nkv)) * hd + d]), got = out[((size_t)i * nh + h) * hd + d];
        if (want != got) { /* (a -0 comes out +0: the accumulator starts at +0 and +0 + -0 is +0) */
          if (bad++ < 5) printf("    %s: row %d head %d dim %d: v %g -> %g, want %g\n", ig_kv_dtype_name(dt), i, h, d,
                                (double)vv[(size_t)i * W + (h / (nh / nkv)) * hd + d], (double)got, (double)want);
        }
      }
  CHECK_MSG(bad == 0, "fp8 %s: %d values not the host's rounding", ig_kv_dtype_name(dt), bad);
  printf("  %-58s ok\n", dt == IG_KV_FP8_E4M3 ? "fp8 cache values exact: fp8_e4m3fn" : "fp8 cache values exact: fp8_e5m2");
  gpu->free(gpu, &k), gpu->free(gpu, &v), gpu->free(gpu, &q), gpu->free(gpu, &o);
  free(kv), free(vv), free(qv), free(out);
  hb_free(&b);
}
/* Where the CUDA backend cannot read an FP8 cache (f32 activations, head_dim other than 64/128/256): kv_init fails with
 * a message naming the flag, and kv_bytes_per_block is 0 (so the engine refuses before sizing anything). */
static void fp8_refused(int hd) {
  ig_kv_config kc = {.n_layers = 1, .n_blocks = 4, .block_size = 16, .n_kv_heads = 2, .head_dim = hd, .dtype = IG_KV_FP8_E4M3};
  CHECK_EQ_INT((long long)gpu->kv_bytes_per_block(gpu, &kc), 0);
  CHECK(gpu->kv_init(gpu, &kc) != 0);
  CHECK_MSG(strstr(gpu->err, "--kv-cache-dtype") != NULL, "fp8 refusal: '%s'", gpu->err);
  printf("  %-58s ok\n", gpu->act_dtype == IG_DT_F32 ? "fp8 cache refused with f32 activations" : "fp8 cache refused at head_dim 32");
}
/* An FP8 cache (--kv-cache-dtype): the kernels that write it (kv_write, rope_kv_write, the packed q|k|v kernel; the
 * q/k-norm op falls back to the three ops) and every kernel that reads it (split and fused decode, mma prefill tiles,
 * head_dim 64/128/256) against the CPU, which rounds its f32 cache through the same format. Saveable cases: modes 4
 * and 5 (fused / grouped split decode) must give mode 0's bits. */
static void rope_kv_case(int nh, int nkv, int hd, int bs, const seqspec *ss, int ns);
static void qkv_rope_case(int nh, int nkv, int hd, int bs, int I, const seqspec *ss, int ns);
static void qk_norm_rope_case(int nh, int nkv, int hd, int bs, int w32, const seqspec *ss, int ns);
static void test_attention_fp8(const seqspec *short_dec, const seqspec *short_mix, const seqspec *mix, const seqspec *decode) {
  if (!cpu->kv_init || !gpu->kv_bytes_per_block) return;
  for (int dt = IG_KV_FP8_E4M3; dt <= IG_KV_FP8_E5M2; dt++) {
    ig_kv_config probe = {.n_layers = 1, .n_blocks = 1, .block_size = 16, .n_kv_heads = 8, .head_dim = 128, .dtype = dt};
    CHECK_MSG(gpu->kv_bytes_per_block(gpu, &probe) == (size_t)2 * 16 * 8 * 128, "fp8 cache: not one byte per value");
    if (cur_mode == 0) fp8_exact_case(dt);
    g_kvdt = dt;
    rng = 0x2545f4914f6cdd1dull + (uint64_t)dt; /* after the exact case: modes 4 and 5 (without it) see these inputs too */
    attn_saveable = 1;
    attn_case(32, 8, 128, 16, 0, short_dec, 9, "short-decode");
    attn_case(28, 4, 64, 16, 0, short_dec, 9, "short-decode");
    attn_case(16, 2, 128, 16, 100, short_dec, 9, "short-decode");
    attn_case(8, 2, 256, 16, 0, short_dec, 9, "short-decode");
    attn_case(32, 8, 128, 16, 0, short_mix, 7, "short-mix");
    attn_case(8, 4, 64, 5, 0, short_mix, 7, "short-mix");
    attn_softcap = 1.f;
    attn_case(32, 8, 128, 16, 0, short_dec, 9, "short-decode");
    attn_softcap = 0;
    if (cur_mode == 0) {
      attn_saveable = 0;
      attn_case(32, 8, 128, 16, 0, mix, 7, "mix");
      attn_case(16, 2, 128, 16, 50, mix, 7, "mix");
      attn_case(4, 1, 256, 16, 50, mix, 7, "mix");
      attn_case(32, 8, 128, 16, 0, decode, 4, "decode");
      rope_kv_case(32, 8, 128, 16, decode, 4);
      rope_kv_case(8, 2, 64, 5, mix, 7);
      qkv_rope_case(32, 8, 128, 16, 256, decode, 4);
      qkv_rope_case(32, 8, 128, 16, 256, mix, 7); /* 268 rows: the packed kernel's FP8 stores */
      qk_norm_rope_case(16, 8, 128, 16, 1, mix, 7); /* the fused q/k-norm kernel's FP8 stores */
      qk_norm_rope_case(4, 1, 256, 16, 1, decode, 4);
      g_rot = 96;
      qkv_rope_case(24, 8, 128, 16, 256, mix, 7);
      g_rot = 0;
      /* the checkpoint's per-layer scales (k_scale, v_scale): every writer and reader, against the CPU's rule */
      g_ks = ks_layers, g_vs = vs_layers;
      attn_case(32, 8, 128, 16, 0, short_dec, 9, "short-decode");
      attn_case(8, 2, 256, 16, 0, short_dec, 9, "short-decode");
      attn_case(32, 8, 128, 16, 0, mix, 7, "mix");
      attn_case(32, 8, 128, 16, 0, decode, 4, "decode");
      g_ks = ks_same, g_vs = vs_same;
      rope_kv_case(32, 8, 128, 16, decode, 4);
      qkv_rope_case(32, 8, 128, 16, 256, mix, 7);
      qk_norm_rope_case(16, 8, 128, 16, 1, mix, 7);
      g_ks = g_vs = NULL;
    }
    g_kvdt = 0;
  }
  /* a backend that cannot hold a dtype says so at kv_init (and reports no bytes for it) */
  ig_kv_config badc = {.n_layers = 1, .n_blocks = 1, .block_size = 16, .n_kv_heads = 2, .head_dim = 128, .dtype = 7};
  CHECK(gpu->kv_init(gpu, &badc) != 0 && gpu->kv_bytes_per_block(gpu, &badc) == 0);
  fp8_refused(32); /* no tensor-core attention kernel at head_dim 32 */
}
static void test_attention(void) {
  static const seqspec mix[] = {{70, 70}, {300, 37}, {1000, 1}, {5, 1}, {16, 16}, {600, 15}, {129, 128}};
  static const seqspec decode[] = {{1, 1}, {512, 1}, {257, 1}, {2049, 1}};
  static const seqspec prefill[] = {{200, 200}, {64, 64}, {65, 65}};
  /* tables of at most 512 keys (8 splits): the fused decode kernel's rows, 1 to 8 splits, partial last splits */
  const seqspec short_dec[] = {{1, 1}, {496, 1}, {257, 1}, {64, 1}, {65, 1}, {130, 1}, {448, 1}, {320, 1}, {33, 1}};
  const seqspec short_mix[] = {{70, 70}, {300, 37}, {5, 1}, {16, 16}, {400, 15}, {129, 128}, {480, 1}};
  rng = 88172645463325252ull; /* the same inputs in every mode, for the bitwise comparison of modes 0 and 4 */
  attn_n = 0;
  attn_saveable = 1, attn_softcap = 0;
  attn_case(32, 8, 128, 16, 0, short_dec, 9, "short-decode");
  attn_case(28, 4, 64, 16, 0, short_dec, 9, "short-decode");
  attn_case(32, 2, 128, 16, 0, short_dec, 9, "short-decode"); /* group of 16 */
  attn_case(16, 2, 128, 16, 100, short_dec, 9, "short-decode");
  attn_case(8, 2, 256, 16, 0, short_dec, 9, "short-decode"); /* head_dim 256 (Gemma): the split mma kernel */
  attn_case(4, 1, 256, 16, 100, short_dec, 9, "short-decode");
  attn_case(32, 8, 128, 16, 0, short_mix, 7, "short-mix");
  attn_case(8, 4, 64, 5, 0, short_mix, 7, "short-mix");
  if (cur_mode < 4) test_attention_more(mix, decode, prefill);
  /* Gemma2's attention softcapping (cap 1: scores of about +-0.7 typical, +-3 at most, bent by tanh) on every kernel:
   * the split decode kernels at head_dim 64/128/256 (tensor cores; SIMT unstaged in mode 1 and f32 in mode 2; fused in
   * mode 4), windows, the mma prefill tiles at 128 and 256 (WMMA in mode 1), SIMT at head_dim 8; in modes 4 and 5
   * bitwise the default mode's outputs. Inputs of their own, so the cases above keep theirs. */
  rng = 0x9e3779b97f4a7c15ull;
  attn_saveable = 1, attn_softcap = 1.f;
  attn_case(32, 8, 128, 16, 0, short_dec, 9, "short-decode");
  attn_case(16, 2, 64, 16, 100, short_dec, 9, "short-decode");
  attn_case(8, 2, 256, 16, 0, short_dec, 9, "short-decode");
  attn_case(32, 8, 128, 16, 0, short_mix, 7, "short-mix");
  attn_case(8, 4, 64, 16, 200, mix, 7, "mix");
  attn_case(4, 1, 256, 16, 50, mix, 7, "mix");
  attn_case(8, 4, 8, 4, 0, short_mix, 7, "short-mix");
  attn_case(32, 8, 128, 16, 0, decode, 4, "decode");
  attn_softcap = 0;
  if (gpu->act_dtype == IG_DT_BF16) test_attention_fp8(short_dec, short_mix, mix, decode);
  else if (cur_mode == 2) fp8_refused(128);
}

/* The cases of the modes with every kernel (not 4 and 5): larger mixes, the fused rope + cache kernels, long decode
 * contexts, prefill-only batches and the tensor-parallel schedule's shapes. */
static void test_attention_more(const seqspec *mix, const seqspec *decode, const seqspec *prefill) {
  attn_saveable = 0;
  attn_case(8, 2, 64, 16, 0, mix, 7, "mix");
  attn_case(32, 8, 128, 16, 0, mix, 7, "mix");
  attn_case(8, 8, 128, 5, 0, mix, 7, "mix");
  attn_case(16, 2, 128, 16, 50, mix, 7, "mix");
  attn_case(8, 4, 8, 16, 0, mix, 7, "mix");
  attn_case(12, 4, 32, 3, 0, mix, 7, "mix");
  attn_case(8, 2, 256, 16, 0, mix, 7, "mix");  /* head_dim 256 (Gemma): the mma prefill tiles, Q from shared memory */
  attn_case(4, 1, 256, 16, 50, mix, 7, "mix");
  rope_kv_case(32, 8, 128, 16, decode, 4);
  rope_kv_case(8, 2, 64, 5, mix, 7);
  rope_kv_case(12, 4, 32, 3, mix, 7);
  qkv_rope_case(32, 8, 128, 16, 256, decode, 4); /* 96 64-row tiles: the skinny GEMM's rows, then rope_kv_write */
  qkv_rope_case(32, 8, 128, 16, 256, mix, 7);    /* 268 rows: one GEMM into the packed buffer, the fused kernel */
  qkv_rope_case(8, 2, 64, 5, 264, mix, 7);
  qkv_rope_case(12, 4, 32, 3, 136, decode, 4);   /* 4 rows through cuBLASLt: the packed path at a small batch */
  qkv_rope_case(4, 2, 24, 4, 64, mix, 7);        /* head_dim 24 (not 16-aligned): matmul_n and rope_kv_write */
  qk_norm_rope_case(32, 8, 128, 16, 0, decode, 4); /* Qwen3-8B's heads */
  qk_norm_rope_case(16, 8, 128, 16, 1, mix, 7);
  qk_norm_rope_case(4, 1, 256, 16, 1, decode, 4);  /* gemma-3-1b's, (1 + w) in f32 */
  qk_norm_rope_case(8, 4, 256, 5, 0, mix, 7);
  qk_norm_rope_case(4, 2, 24, 4, 1, mix, 7);
  /* a partial rotary dimension (Phi-4-mini: 96 of 128; 48 of 64): the fused kernels copy the dims past it */
  g_rot = 96;
  rope_kv_case(24, 8, 128, 16, decode, 4);
  qk_norm_rope_case(24, 8, 128, 16, 0, mix, 7);
  qkv_rope_case(24, 8, 128, 16, 256, decode, 4);
  qkv_rope_case(24, 8, 128, 16, 256, mix, 7);
  g_rot = 48;
  rope_kv_case(8, 2, 64, 5, mix, 7);
  qkv_rope_case(8, 2, 64, 5, 264, mix, 7);
  g_rot = 0;
  attn_case(32, 8, 128, 16, 0, decode, 4, "decode");
  attn_case(28, 4, 128, 32, 0, decode, 4, "decode");
  attn_case(16, 1, 64, 16, 0, decode, 4, "decode");
  attn_case(32, 2, 128, 16, 0, decode, 4, "decode");   /* GQA group of 16 at head_dim 128 */
  attn_case(8, 4, 64, 16, 200, mix, 7, "mix");         /* window over several key splits, group of 2 */
  attn_case(32, 8, 128, 16, 0, prefill, 3, "prefill");
  attn_case(8, 2, 64, 16, 100, prefill, 3, "prefill");
  /* the tensor-parallel schedule on the tiny models: head_dim 8, block size 4, a 60-row prompt, then one decode
   * row beside a 7-row chunk, then decode rows; 2 (stories260K and its shards) or 3 (llama3-gqa) query heads per
   * kv head; a 200-key sequence gives two key splits as the schedule's 64-block tables do */
  const seqspec tp0[] = {{60, 60}}, tp1[] = {{61, 1}, {7, 7}}, tp2[] = {{72, 1}, {15, 1}}, tp3[] = {{200, 1}, {21, 7}, {60, 60}};
  static const int tph[][2] = {{8, 4}, {4, 2}, {2, 1}, {6, 2}, {3, 1}};
  for (int i = 0; i < 5; i++) {
    attn_case(tph[i][0], tph[i][1], 8, 4, 0, tp0, 1, "tp-prompt");
    attn_case(tph[i][0], tph[i][1], 8, 4, 0, tp1, 2, "tp-chunk");
    attn_case(tph[i][0], tph[i][1], 8, 4, 0, tp2, 2, "tp-decode");
    attn_case(tph[i][0], tph[i][1], 8, 4, 0, tp3, 3, "tp-mix");
  }
}


int main(void) {
  char err[256];
  /* bf16 with the default kernels (batch-invariant products) and programmatic dependent launch; bf16 with the WMMA
   * prefill kernel, the unstaged decode kernel and plain launches (attention only); f32 with PDL; bf16 with the
   * fastest product per row count (IGNIS_CUDA_BATCH_INVARIANT=0: GEMV, skinny GEMM, cuBLASLt's heuristic; products
   * only); bf16 with the fused decode attention kernel for every batch (IGNIS_CUDA_DECODE_FUSED=1; attention only,
   * bitwise against the first mode's outputs); bf16 with the split kernel for every batch and its partials capped at
   * 1 MB (IGNIS_CUDA_DECODE_FUSED=0, IGNIS_CUDA_ATTN_SCRATCH_MB=1: the rows go in groups; attention only, bitwise) */
  int modes[6] = {IG_DT_BF16, IG_DT_BF16, IG_DT_F32, IG_DT_BF16, IG_DT_BF16, IG_DT_BF16};
  /* IG_OPS_ONLY=gemm / attn: the bf16 matmul or attention checks alone (a quick device call after a kernel change);
   * attn_modes: the attention checks alone in every mode that has them (the WMMA prefill, unstaged and f32 decode
   * kernels too); weight_fp8: the FP8 weight dequantization alone. IG_OPS_HASH=1 prints a hash of each attention
   * case's output bits. */
  const char *only = getenv("IG_OPS_ONLY");
  int gemm_only = only && !strcmp(only, "gemm"), attn_modes = only && !strcmp(only, "attn_modes");
  int fp8w_only = only && !strcmp(only, "weight_fp8"); /* the FP8 weight dequantization alone (bf16 mode) */
  int attn_only = (only && !strcmp(only, "attn")) || attn_modes;
  for (int mi = 0; mi < 6; mi++) {
    if ((gemm_only && (mi == 1 || mi == 2 || mi >= 4)) || (attn_only && !attn_modes && mi > 0 && mi < 4) ||
        (attn_modes && mi == 3) || (fp8w_only && mi > 0))
      continue;
    cur_mode = mi;
    if (mi >= 4) setenv("IGNIS_CUDA_DECODE_FUSED", mi == 4 ? "1" : "0", 1);
    else unsetenv("IGNIS_CUDA_DECODE_FUSED");
    if (mi == 5) setenv("IGNIS_CUDA_ATTN_SCRATCH_MB", "1", 1);
    else unsetenv("IGNIS_CUDA_ATTN_SCRATCH_MB");
    if (mi == 1) setenv("IGNIS_CUDA_ATTN", "wmma", 1), setenv("IGNIS_CUDA_DECODE_STAGED", "0", 1), setenv("IGNIS_CUDA_PDL", "0", 1);
    else unsetenv("IGNIS_CUDA_ATTN"), unsetenv("IGNIS_CUDA_DECODE_STAGED"), unsetenv("IGNIS_CUDA_PDL");
    if (mi == 3) setenv("IGNIS_CUDA_BATCH_INVARIANT", "0", 1);
    else unsetenv("IGNIS_CUDA_BATCH_INVARIANT");
    gpu = ig_backend_cuda_create_ex(0, (ig_dtype)modes[mi], err, sizeof err);
    if (!gpu) {
      printf("SKIP: %s\n", err);
      return 77;
    }
    cpu = ig_backend_cpu_create(2, err, sizeof err);
    if (!cpu) {
      fprintf(stderr, "cpu backend: %s\n", err);
      return 1;
    }
    tol = modes[mi] == IG_DT_BF16 ? 1.2e-2 : 2e-5;
    worst = 0;
    printf("== activations %s%s (tolerance %.1e)\n", ig_dtype_name(gpu->act_dtype),
           mi == 1   ? ", WMMA prefill, unstaged decode"
           : mi == 3 ? ", fastest product per row count"
           : mi == 4 ? ", fused decode kernel (bitwise the default's)"
           : mi == 5 ? ", split decode kernel, rows in groups of 1 MB of partials (bitwise the default's)"
                     : "",
           tol);
    if (fp8w_only) {
      test_weight_fp8();
    } else if (attn_only || mi >= 4) {
      if (attn_only && !attn_modes && mi == 0) test_rope(), test_elementwise(), test_fused_matmul(), test_rmsnorm(), test_weight_fp8(); /* cheap, and beside the fused rope + cache kernels */
    } else if (gemm_only || mi == 3) {
      test_matmul();
      test_fused_matmul();
      if (mi == 3) test_matmul_tiny(), test_matmul_many_shapes();
      else test_sgemm();
    } else if (mi != 1) {
      test_matmul();
      test_matmul_tiny();
      test_matmul_many_shapes();
      test_fused_matmul();
      test_sgemm();
      test_rmsnorm();
      test_rope();
      test_elementwise();
      test_optional();
      test_weight_fp8();
    }
    if (!gemm_only && !fp8w_only && mi != 3) test_attention();
    printf("== %s: worst rel L2 %.2e\n", ig_dtype_name(gpu->act_dtype), worst);
    gpu->destroy(gpu);
    cpu->destroy(cpu);
  }
  free(wbuf);
  for (int i = 0; i < n_keeps; i++) free(keeps[i]);
  for (int i = 0; i < ATTN_SAVED; i++) free(attn_saved[i]);
  TEST_DONE();
}
