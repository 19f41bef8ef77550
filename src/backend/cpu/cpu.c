/* backend/cpu/cpu: the CPU backend: f32 activations, weights read in place from the mmap (bf16/f16/f32),
 * a paged f32 KV cache (with an FP8 kv dtype, every value written is rounded through that format: the exact
 * numerical reference of a device that stores the FP8 bytes), ops threaded over a persistent pool (pool.c), inner
 * loops in kernels.c.
 * Batch invariance: matmul picks its kernel per sequence segment from that segment's own length (short:
 * our matvec, one fixed order per output, whatever the tiling; long: OpenBLAS sgemm over fixed f32 weight
 * tiles), and attention runs per (row, KV head) in a fixed order, so no row's result depends on what else
 * is in the batch. Work is split into items (tiles of outputs x rows, (row, KV head) pairs) that any thread
 * may run: the split changes the speed, never the arithmetic. Nothing is allocated per step once the
 * buffers have grown to the batch sizes seen. */
#include "backend/backend.h"
#include "backend/cpu/kernels.h"
#include "backend/cpu/pool.h"
#include "backend/fp8.h"
#include <cblas.h>
#undef I /* complex.h (pulled in by cblas.h) defines I; we use it as a dimension name */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Matvec items only decide which thread computes an output, never how (each output is one fixed-order dot
 * product). sgemm tiles are fixed (not derived from the thread count) and wide: OpenBLAS 0.3.21 (SkylakeX)
 * gives rows that are bitwise independent of M and of the row offset except in its small-matrix path
 * (M*N*K <= 1e6), which wide tiles avoid for K >= 250. */
#define TILE_O 64           /* outputs per matvec item */
#define TILE_R 16           /* rows per matvec item */
#define TILE_G 256          /* outputs per sgemm tile */
#define GEMM_MIN_ROWS 16    /* segments with at least this many rows go through sgemm */
#define POOL_MIN_WORK 262144.0 /* multiply-adds below which an op runs on the calling thread alone */

typedef struct {
  float *p;
  size_t cap; /* floats */
} scratch;

typedef struct cpu_impl {
  ig_pool *pool;
  int nth;
  int gemm_min_rows;
  /* the step's batch (copied at set_batch) */
  int n_tokens, n_seqs, max_blocks, n_out;
  int32_t *tokens, *pos, *slot, *seq_start, *ctx_len, *block_table, *out_rows, *row_seq;
  size_t cap_tokens, cap_seqs, cap_bt;
  /* rotary: tables 0 and 1 (set_rope's table), the selected one in inv_freq / rope_half / attn_factor */
  float *inv_freq;
  int rope_half, rope_head_dim;
  float attn_factor;
  float *tab_inv[2];
  int tab_half[2], rope_sel;
  float tab_af[2];
  float *cs;              /* [n_tokens, half, 2]: cos, sin at each row's position */
  size_t cs_cap;
  int cs_valid;
  /* KV cache: per layer K and V of [n_blocks * block_size, n_kv_heads * head_dim] f32 */
  ig_kv_config kv;
  float **k, **v;
  float *kscale, *vscale; /* [n_layers]: an FP8 cache's scales (kv_init's, else 1) */
  scratch *scr;           /* one per thread */
  int32_t *plan;          /* matmul's row plan, [3 * plan_cap] */
  size_t plan_cap;
  float *normw;           /* rmsnorm weights as f32 */
  size_t normw_cap;
} cpu_impl;

static int fail(ig_backend *be, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(be->err, sizeof be->err, fmt, ap);
  va_end(ap);
  return -1;
}

static float *scratch_get(scratch *s, size_t n) {
  if (s->cap < n) {
    free(s->p);
    s->p = aligned_alloc(64, ((n * 4 + 63) / 64) * 64);
    s->cap = s->p ? n : 0;
  }
  return s->p;
}

/* ---------------------------------------------------------------------------------------------------- */
/* memory */

static int cpu_alloc(ig_backend *be, ig_tensor *t, ig_dtype dt, int64_t rows, int64_t cols) {
  size_t bytes = (size_t)(rows * cols) * ig_dtype_size(dt);
  memset(t, 0, sizeof *t);
  t->data = aligned_alloc(64, ((bytes + 63) / 64) * 64 + 64);
  if (!t->data) return fail(be, "out of memory allocating a [%lld, %lld] tensor", (long long)rows, (long long)cols);
  t->dtype = dt;
  t->rows = rows;
  t->cols = cols;
  t->owned = 1;
  return 0;
}

static void cpu_free(ig_backend *be, ig_tensor *t) {
  if (t->owned) free(t->data);
  memset(t, 0, sizeof *t);
}

static int cpu_weight(ig_backend *be, ig_tensor *t, const void *host, ig_dtype dt, int64_t rows, int64_t cols) {
  if (dt != IG_DT_F32 && dt != IG_DT_F16 && dt != IG_DT_BF16) return fail(be, "weights must be F32, F16 or BF16");
  *t = (ig_tensor){(void *)host, dt, rows, cols, 0};
  return 0;
}

/* weight_fp8: the codes dequantized into a new bf16 weight by the pool's threads, a row each, with the host rule
 * (backend.h; llama.c's loader computes the same). The CPU has no weight_alloc, so never into an existing buffer. */
typedef struct {
  const uint8_t *codes;
  const float *scales;
  float lut[256];
  int64_t srow0, br, bc, sc, cols;
  uint16_t *out;
} fp8w_ctx;
static void fp8w_row(void *ctx, int64_t i, int ith) {
  (void)ith;
  const fp8w_ctx *x = ctx;
  ig_fp8_dequant_row(x->out + i * x->cols, x->codes + i * x->cols, x->lut, x->scales + ((x->srow0 + i) / x->br) * x->sc,
                     0, x->bc, x->cols);
}
static int cpu_weight_fp8(ig_backend *be, ig_tensor *t, int64_t row0, const uint8_t *codes, int e5m2, const float *scales,
                          int64_t n_scales, int64_t srow0, int64_t br, int64_t bc, int64_t sc, int64_t rows,
                          int64_t cols) {
  cpu_impl *im = be->impl;
  if (t->data || row0) return fail(be, "weight_fp8: the CPU makes new weights only");
  if (rows < 1 || !ig_fp8_scales_cover(n_scales, srow0, rows, cols, br, bc, sc))
    return fail(be, "weight_fp8: scales do not cover the weight");
  if (cpu_alloc(be, t, IG_DT_BF16, rows, cols)) return -1;
  fp8w_ctx x = {codes, scales, {0}, srow0, br, bc, sc, cols, (uint16_t *)t->data};
  ig_fp8_table(x.lut, e5m2);
  ig_pool_run(im->pool, fp8w_row, &x, rows);
  return 0;
}

static int cpu_download_f32(ig_backend *be, const ig_tensor *t, float *host) {
  if (t->dtype == IG_DT_I32) return fail(be, "download_f32 of an I32 tensor");
  ig_cpu_to_f32(t->data, t->dtype, host, ig_tensor_numel(t));
  return 0;
}

static int cpu_upload(ig_backend *be, ig_tensor *t, const void *host, ig_dtype dt) {
  int64_t n = ig_tensor_numel(t);
  if (t->dtype == dt) {
    memcpy(t->data, host, (size_t)n * ig_dtype_size(dt));
    return 0;
  }
  if (t->dtype != IG_DT_F32 || dt == IG_DT_I32) return fail(be, "upload: cannot convert %s to %s", ig_dtype_name(dt),
                                                           ig_dtype_name(t->dtype));
  ig_cpu_to_f32(host, dt, t->data, n);
  return 0;
}

static int cpu_sync(ig_backend *be) { return 0; }

/* ---------------------------------------------------------------------------------------------------- */
/* per-step state */

static int kv_dtype_known(int d) { return d == IG_KV_AUTO || d == IG_KV_FP8_E4M3 || d == IG_KV_FP8_E5M2; }

/* 4 bytes a value whatever the kv dtype: FP8 values are kept as the f32 they decode to (rounded, no memory saved) */
static size_t cpu_kv_bytes_per_block(ig_backend *be, const ig_kv_config *c) {
  if (!kv_dtype_known(c->dtype)) return 0;
  return (size_t)c->n_layers * 2 * (size_t)c->block_size * (size_t)c->n_kv_heads * (size_t)c->head_dim * 4;
}

static void kv_release(cpu_impl *im) {
  for (int l = 0; l < im->kv.n_layers && im->k; l++) {
    free(im->k[l]);
    free(im->v[l]);
  }
  free(im->k);
  free(im->v);
  free(im->kscale);
  free(im->vscale);
  im->k = im->v = NULL;
  im->kscale = im->vscale = NULL;
  memset(&im->kv, 0, sizeof im->kv);
}

static int cpu_kv_init(ig_backend *be, const ig_kv_config *c) {
  cpu_impl *im = be->impl;
  if (c->n_layers <= 0 || c->n_blocks <= 0 || c->block_size <= 0 || c->n_kv_heads <= 0 || c->head_dim <= 0)
    return fail(be, "kv_init: bad configuration");
  if (!kv_dtype_known(c->dtype))
    return fail(be, "kv_init: unknown KV cache dtype %d (expected auto, fp8_e4m3fn or fp8_e5m2)", c->dtype);
  int bad = ig_kv_scales_bad(c);
  if (bad >= 0) return fail(be, "kv_init: layer %d's K/V cache scale is not a positive number", bad);
  kv_release(im);
  size_t per = (size_t)c->n_blocks * (size_t)c->block_size * (size_t)c->n_kv_heads * (size_t)c->head_dim;
  im->k = calloc((size_t)c->n_layers, sizeof *im->k);
  im->v = calloc((size_t)c->n_layers, sizeof *im->v);
  im->kscale = malloc((size_t)c->n_layers * sizeof *im->kscale);
  im->vscale = malloc((size_t)c->n_layers * sizeof *im->vscale);
  if (!im->k || !im->v || !im->kscale || !im->vscale) goto oom;
  for (int l = 0; l < c->n_layers; l++) {
    im->kscale[l] = c->k_scale ? c->k_scale[l] : 1.f;
    im->vscale[l] = c->v_scale ? c->v_scale[l] : 1.f;
  }
  im->kv = *c;
  im->kv.k_scale = im->kv.v_scale = NULL; /* the copies above */
  for (int l = 0; l < c->n_layers; l++) {
    im->k[l] = calloc(per, 4);
    im->v[l] = calloc(per, 4);
    if (!im->k[l] || !im->v[l]) goto oom;
  }
  return 0;
oom:
  im->kv.n_layers = c->n_layers;
  kv_release(im);
  return fail(be, "out of memory for the KV cache (%zu bytes)", per * 8 * (size_t)c->n_layers);
}

/* Grows each of the arrays in ps (all of capacity *cap) to hold n elements. */
static int grow_i32(int32_t **ps[], int count, size_t *cap, size_t n) {
  if (*cap >= n) return 0;
  for (int i = 0; i < count; i++) {
    int32_t *q = realloc(*ps[i], n * sizeof *q);
    if (!q) return -1;
    *ps[i] = q;
  }
  *cap = n;
  return 0;
}

/* Copies the batch and checks it against the KV cache, so a bad batch is an error, never a wild write. */
static int cpu_set_batch(ig_backend *be, const ig_batch *b) {
  cpu_impl *im = be->impl;
  int n = b->n_tokens, ns = b->n_seqs;
  if (n <= 0 || ns <= 0 || b->n_out < 0 || b->n_out > n || b->max_blocks < 0)
    return fail(be, "set_batch: bad sizes (n_tokens %d, n_seqs %d, n_out %d)", n, ns, b->n_out);
  size_t nbt = (size_t)ns * (size_t)b->max_blocks;
  int32_t **per_token[] = {&im->tokens, &im->pos, &im->slot, &im->row_seq, &im->out_rows};
  int32_t **per_seq[] = {&im->seq_start, &im->ctx_len};
  int32_t **bts[] = {&im->block_table};
  if (grow_i32(per_token, 5, &im->cap_tokens, (size_t)n) || grow_i32(per_seq, 2, &im->cap_seqs, (size_t)ns + 1) ||
      grow_i32(bts, 1, &im->cap_bt, nbt ? nbt : 1))
    return fail(be, "out of memory");

  memcpy(im->tokens, b->tokens, (size_t)n * 4);
  memcpy(im->pos, b->pos, (size_t)n * 4);
  memcpy(im->slot, b->slot, (size_t)n * 4);
  memcpy(im->seq_start, b->seq_start, ((size_t)ns + 1) * 4);
  memcpy(im->ctx_len, b->ctx_len, (size_t)ns * 4);
  if (nbt) memcpy(im->block_table, b->block_table, nbt * 4);
  if (b->n_out) memcpy(im->out_rows, b->out_rows, (size_t)b->n_out * 4);
  im->n_tokens = n;
  im->n_seqs = ns;
  im->max_blocks = b->max_blocks;
  im->n_out = b->n_out;
  im->cs_valid = 0;

  if (im->seq_start[0] != 0 || im->seq_start[ns] != n) return fail(be, "set_batch: seq_start must run from 0 to n_tokens");
  int64_t n_slots = (int64_t)im->kv.n_blocks * im->kv.block_size;
  for (int s = 0; s < ns; s++) {
    int a = im->seq_start[s], e = im->seq_start[s + 1];
    if (e < a) return fail(be, "set_batch: seq_start is not ascending");
    if (im->ctx_len[s] < e - a) return fail(be, "set_batch: sequence %d has ctx_len %d < its %d new tokens", s,
                                             im->ctx_len[s], e - a);
    if (n_slots && (int64_t)im->ctx_len[s] > (int64_t)b->max_blocks * im->kv.block_size)
      return fail(be, "set_batch: sequence %d needs %d tokens but its block table holds %d", s, im->ctx_len[s],
                  b->max_blocks * im->kv.block_size);
    if (n_slots) {
      int nb = (im->ctx_len[s] + im->kv.block_size - 1) / im->kv.block_size;
      for (int k = 0; k < nb; k++) {
        int32_t blk = im->block_table[(size_t)s * b->max_blocks + k];
        if (blk < 0 || blk >= im->kv.n_blocks) return fail(be, "set_batch: block id %d out of range", blk);
      }
    }
    for (int i = a; i < e; i++) {
      im->row_seq[i] = s;
      if (im->pos[i] < 0 || im->pos[i] >= im->ctx_len[s])
        return fail(be, "set_batch: row %d has position %d outside its context (%d)", i, im->pos[i], im->ctx_len[s]);
      if (n_slots && (im->slot[i] < 0 || im->slot[i] >= n_slots))
        return fail(be, "set_batch: row %d has KV slot %d outside the cache", i, im->slot[i]);
    }
  }
  for (int j = 0; j < b->n_out; j++)
    if (im->out_rows[j] < 0 || im->out_rows[j] >= n || (j && im->out_rows[j] <= im->out_rows[j - 1]))
      return fail(be, "set_batch: out_rows must be ascending row indices");
  return 0;
}

static int cpu_set_rope(ig_backend *be, const ig_rope *r) {
  cpu_impl *im = be->impl;
  if (r->rot_dim <= 0 || r->rot_dim > r->head_dim || r->rot_dim % 2 || r->head_dim % 2)
    return fail(be, "set_rope: bad dimensions");
  if (r->table < 0 || r->table > 1) return fail(be, "set_rope: table %d", r->table);
  int half = r->rot_dim / 2, t = r->table;
  float *f = realloc(im->tab_inv[t], (size_t)half * sizeof *f);
  if (!f) return fail(be, "out of memory");
  memcpy(f, r->inv_freq, (size_t)half * sizeof *f);
  im->tab_inv[t] = f;
  im->tab_half[t] = half;
  im->tab_af[t] = r->attn_factor;
  im->rope_head_dim = r->head_dim;
  if (t == im->rope_sel) im->inv_freq = f, im->rope_half = half, im->attn_factor = r->attn_factor, im->cs_valid = 0;
  return 0;
}

static int cpu_rope_select(ig_backend *be, int table) {
  cpu_impl *im = be->impl;
  if (table < 0 || table > 1 || !im->tab_inv[table]) return fail(be, "rope_select: table %d was not set", table);
  if (table == im->rope_sel) return 0;
  im->rope_sel = table;
  im->inv_freq = im->tab_inv[table], im->rope_half = im->tab_half[table], im->attn_factor = im->tab_af[table];
  im->cs_valid = 0;
  return 0;
}

static int cpu_scale(ig_backend *be, ig_tensor *x, float s) {
  if (x->dtype != IG_DT_F32) return fail(be, "scale: f32 activations only");
  int64_t n = ig_tensor_numel(x);
  float *p = x->data;
  for (int64_t i = 0; i < n; i++) p[i] *= s;
  return 0;
}

/* Gemma2's final_logit_softcapping: x = cap * tanh(x / cap), as torch computes it in f32 */
static int cpu_softcap(ig_backend *be, ig_tensor *x, float cap) {
  if (x->dtype != IG_DT_F32) return fail(be, "softcap: f32 activations only");
  if (!(cap > 0)) return fail(be, "softcap: cap %g is not positive", (double)cap);
  int64_t n = ig_tensor_numel(x);
  float *p = x->data;
  for (int64_t i = 0; i < n; i++) p[i] = cap * tanhf(p[i] / cap);
  return 0;
}

/* gelu_pytorch_tanh: 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))), in f32 as torch computes it */
static int cpu_geglu(ig_backend *be, ig_tensor *out, const ig_tensor *gate, const ig_tensor *up) {
  int64_t n = ig_tensor_numel(gate);
  if (ig_tensor_numel(up) != n || ig_tensor_numel(out) < n) return fail(be, "geglu: shape mismatch");
  const float *g = gate->data, *u = up->data;
  float *o = out->data;
  const float k = 0.7978845608028654f;
  for (int64_t i = 0; i < n; i++) {
    float x = g[i];
    o[i] = 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x))) * u[i];
  }
  return 0;
}

/* ---------------------------------------------------------------------------------------------------- */
/* elementwise and row ops */

static int cpu_embed(ig_backend *be, ig_tensor *out, const ig_tensor *table) {
  cpu_impl *im = be->impl;
  int64_t H = table->cols;
  if (out->dtype != IG_DT_F32 || out->cols != H || out->rows < im->n_tokens) return fail(be, "embed: shape mismatch");
  size_t es = ig_dtype_size(table->dtype);
  for (int i = 0; i < im->n_tokens; i++) {
    int32_t t = im->tokens[i];
    if (t < 0 || t >= table->rows) return fail(be, "token id %d out of range (vocabulary %lld)", t, (long long)table->rows);
    ig_cpu_to_f32((const char *)table->data + (size_t)t * (size_t)H * es, table->dtype, (float *)out->data + i * H, H);
  }
  return 0;
}

static int cpu_rmsnorm(ig_backend *be, ig_tensor *out, ig_tensor *x, const ig_tensor *residual, const ig_tensor *w,
                       float eps) {
  int64_t W = w->cols, rows = ig_tensor_numel(x) / W;
  if (ig_tensor_numel(x) % W || ig_tensor_numel(out) < rows * W || x->dtype != IG_DT_F32)
    return fail(be, "rmsnorm: shape mismatch");
  if (residual && ig_tensor_numel(residual) != ig_tensor_numel(x)) return fail(be, "rmsnorm: residual shape mismatch");
  float *xp = x->data, *op = out->data;
  const float *rp = residual ? residual->data : NULL;
  cpu_impl *im = be->impl;
  const float *wf = w->data;
  if (w->dtype != IG_DT_F32) {
    if (im->normw_cap < (size_t)W) {
      float *nw = realloc(im->normw, (size_t)W * 4);
      if (!nw) return fail(be, "out of memory");
      im->normw = nw;
      im->normw_cap = (size_t)W;
    }
    ig_cpu_to_f32(w->data, w->dtype, im->normw, W);
    wf = im->normw;
  }
  for (int64_t r = 0; r < rows; r++) {
    float *xr = xp + r * W, *orow = op + r * W;
    if (rp)
      for (int64_t i = 0; i < W; i++) xr[i] += rp[r * W + i];
    double ss = 0;
    for (int64_t i = 0; i < W; i++) ss += (double)xr[i] * xr[i];
    float inv = (float)(1.0 / sqrt(ss / (double)W + (double)eps));
    for (int64_t i = 0; i < W; i++) orow[i] = wf[i] * (xr[i] * inv);
  }
  return 0;
}

static int cpu_swiglu(ig_backend *be, ig_tensor *out, const ig_tensor *gate, const ig_tensor *up) {
  int64_t n = ig_tensor_numel(gate);
  if (ig_tensor_numel(up) != n || ig_tensor_numel(out) < n) return fail(be, "swiglu: shape mismatch");
  ig_cpu_silu_mul(out->data, gate->data, up->data, n);
  return 0;
}

static int cpu_add(ig_backend *be, ig_tensor *x, const ig_tensor *y) {
  int64_t n = ig_tensor_numel(x);
  if (ig_tensor_numel(y) != n) return fail(be, "add: shape mismatch");
  float *a = x->data;
  const float *b = y->data;
  for (int64_t i = 0; i < n; i++) a[i] += b[i];
  return 0;
}

static int cpu_gather_rows(ig_backend *be, ig_tensor *out, const ig_tensor *x) {
  cpu_impl *im = be->impl;
  int64_t H = x->cols;
  if (out->cols != H || out->rows < im->n_out) return fail(be, "gather_rows: shape mismatch");
  for (int j = 0; j < im->n_out; j++)
    memcpy((float *)out->data + j * H, (const float *)x->data + (int64_t)im->out_rows[j] * H, (size_t)H * 4);
  return 0;
}

/* HF/NeoX rotary: pairs (i, i + half) of each head's first rot_dim = 2 half dims (the rest pass through: Phi3's
 * partial_rotary_factor); cos/sin of pos * inv_freq[i], times attn_factor. */
static int cpu_rope(ig_backend *be, ig_tensor *q, ig_tensor *k, int n_heads, int n_kv_heads) {
  cpu_impl *im = be->impl;
  int half = im->rope_half, hd = im->rope_head_dim, n = im->n_tokens;
  if (!im->inv_freq) return fail(be, "rope: set_rope was not called");
  if (q->cols != (int64_t)n_heads * hd || k->cols != (int64_t)n_kv_heads * hd) return fail(be, "rope: shape mismatch");
  if (!im->cs_valid) {
    size_t need = (size_t)n * (size_t)half * 2;
    if (im->cs_cap < need) {
      float *c = realloc(im->cs, need * 4);
      if (!c) return fail(be, "out of memory");
      im->cs = c;
      im->cs_cap = need;
    }
    for (int i = 0; i < n; i++)
      for (int f = 0; f < half; f++) {
        float ang = (float)im->pos[i] * im->inv_freq[f];
        im->cs[((size_t)i * half + f) * 2] = cosf(ang) * im->attn_factor;
        im->cs[((size_t)i * half + f) * 2 + 1] = sinf(ang) * im->attn_factor;
      }
    im->cs_valid = 1;
  }
  for (int t = 0; t < 2; t++) {
    ig_tensor *x = t ? k : q;
    int nh = t ? n_kv_heads : n_heads;
    for (int i = 0; i < n; i++) {
      const float *cs = im->cs + (size_t)i * half * 2;
      for (int h = 0; h < nh; h++) {
        float *v = (float *)x->data + (int64_t)i * x->cols + (int64_t)h * hd;
        for (int f = 0; f < half; f++) {
          float c = cs[2 * f], s = cs[2 * f + 1], a = v[f], b = v[f + half];
          v[f] = a * c - b * s;
          v[f + half] = b * c + a * s;
        }
      }
    }
  }
  return 0;
}

/* One row of W values into the cache, rounded through the kv dtype's format at scale s (the code of x * (1 / s),
 * read back as code * s; IG_KV_AUTO: copied). */
static void kv_store(float *dst, const float *src, int64_t W, int dtype, float s) {
  if (dtype == IG_KV_AUTO) {
    memcpy(dst, src, (size_t)W * 4);
    return;
  }
  if (s == 1.f) {
    for (int64_t j = 0; j < W; j++) dst[j] = ig_fp8_round(dtype, src[j]);
    return;
  }
  const float inv = 1.f / s;
  for (int64_t j = 0; j < W; j++) dst[j] = ig_fp8_round(dtype, src[j] * inv) * s;
}

/* The only op that writes the cache (the CPU has no fused rope_kv_write / qkv_rope_kv_write /
 * qk_norm_rope_kv_write: the model falls back to rope then kv_write). */
static int cpu_kv_write(ig_backend *be, int layer, const ig_tensor *k, const ig_tensor *v) {
  cpu_impl *im = be->impl;
  int64_t W = (int64_t)im->kv.n_kv_heads * im->kv.head_dim;
  if (!im->k || layer < 0 || layer >= im->kv.n_layers) return fail(be, "kv_write: no KV cache for layer %d", layer);
  if (k->cols != W || v->cols != W) return fail(be, "kv_write: shape mismatch");
  for (int i = 0; i < im->n_tokens; i++) {
    kv_store(im->k[layer] + (int64_t)im->slot[i] * W, (const float *)k->data + i * W, W, im->kv.dtype, im->kscale[layer]);
    kv_store(im->v[layer] + (int64_t)im->slot[i] * W, (const float *)v->data + i * W, W, im->kv.dtype, im->vscale[layer]);
  }
  return 0;
}

/* ---------------------------------------------------------------------------------------------------- */
/* matmul: out[m, O] = x[m, I] @ W[O, I]^T (+ bias)
 * Items: first the matvec items (short rows, in tiles of TILE_R rows x TILE_O outputs: each tile of weight
 * rows is read once per item and applied to all its rows), then one item per TILE_G-output sgemm tile
 * (all long segments). */

typedef struct {
  cpu_impl *im;
  const float *x;
  const ig_tensor *w, *bias;
  float *out;
  int64_t I, O;
  const int32_t *short_rows;
  int n_short;
  const int32_t *long_seg; /* pairs (start row, rows) */
  int n_long;
  int64_t n_rt, n_ot;      /* matvec items: row tiles x output tiles */
  int failed;
} mm_job;

static float bias_at(const ig_tensor *b, int64_t o) {
  float v;
  ig_cpu_to_f32((const char *)b->data + (size_t)o * ig_dtype_size(b->dtype), b->dtype, &v, 1);
  return v;
}

static void mm_item(void *arg, int64_t item, int ith) {
  mm_job *j = arg;
  int64_t n_mv = j->n_rt * j->n_ot;
  if (item < n_mv) {
    /* output-tile major, so that neighbouring items share a weight tile */
    int64_t ot = item / j->n_rt, rt = item % j->n_rt;
    int64_t o0 = ot * TILE_O, o1 = o0 + TILE_O < j->O ? o0 + TILE_O : j->O;
    int r0 = (int)(rt * TILE_R), nr = j->n_short - r0 < TILE_R ? j->n_short - r0 : TILE_R;
    const int32_t *rows = j->short_rows + r0;
    ig_cpu_matvec(j->x, j->I, rows, nr, j->w->data, j->w->dtype, j->I, o0, o1, j->out, j->O);
    if (j->bias)
      for (int64_t o = o0; o < o1; o++) {
        float bo = bias_at(j->bias, o);
        for (int r = 0; r < nr; r++) j->out[(int64_t)rows[r] * j->O + o] += bo;
      }
    return;
  }
  /* sgemm over one 256-output tile for every long segment; non-f32 weights are converted once per tile */
  int64_t ot = (item - n_mv) * TILE_G, nt = j->O - ot < TILE_G ? j->O - ot : TILE_G;
  const float *wt;
  if (j->w->dtype != IG_DT_F32) {
    float *buf = scratch_get(&j->im->scr[ith], (size_t)TILE_G * (size_t)j->I);
    if (!buf) {
      j->failed = 1;
      return;
    }
    ig_cpu_to_f32((const char *)j->w->data + (size_t)ot * (size_t)j->I * ig_dtype_size(j->w->dtype), j->w->dtype,
                  buf, nt * j->I);
    wt = buf;
  } else {
    wt = (const float *)j->w->data + ot * j->I;
  }
  for (int s = 0; s < j->n_long; s++) {
    int r0 = j->long_seg[2 * s], m = j->long_seg[2 * s + 1];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, (int)nt, (int)j->I, 1.0f, j->x + (int64_t)r0 * j->I,
                (int)j->I, wt, (int)j->I, 0.0f, j->out + (int64_t)r0 * j->O + ot, (int)j->O);
    if (j->bias)
      for (int64_t o = ot; o < ot + nt; o++) {
        float bo = bias_at(j->bias, o);
        for (int r = r0; r < r0 + m; r++) j->out[(int64_t)r * j->O + o] += bo;
      }
  }
}

/* Splits x's rows into segments by sequence: the batch's sequences when x has a row per token, the
 * gathered rows grouped by sequence when x has a row per out_row, else one segment. */
static void mm_plan(cpu_impl *im, int64_t m, int32_t *short_rows, int *n_short, int32_t *long_seg, int *n_long) {
  *n_short = *n_long = 0;
  int gmin = im->gemm_min_rows;
#define ADD_SEG(a, len)                                                                                                \
  do {                                                                                                                 \
    if ((len) >= gmin) {                                                                                               \
      long_seg[2 * *n_long] = (a);                                                                                     \
      long_seg[2 * *n_long + 1] = (len);                                                                               \
      (*n_long)++;                                                                                                     \
    } else {                                                                                                           \
      for (int r_ = (a); r_ < (a) + (len); r_++) short_rows[(*n_short)++] = r_;                                        \
    }                                                                                                                  \
  } while (0)
  if (im->n_tokens > 0 && m == im->n_tokens) {
    for (int s = 0; s < im->n_seqs; s++) ADD_SEG(im->seq_start[s], im->seq_start[s + 1] - im->seq_start[s]);
  } else if (im->n_tokens > 0 && m == im->n_out) {
    int a = 0;
    for (int j = 1; j <= im->n_out; j++)
      if (j == im->n_out || im->row_seq[im->out_rows[j]] != im->row_seq[im->out_rows[a]]) {
        ADD_SEG(a, j - a);
        a = j;
      }
  } else {
    ADD_SEG(0, (int)m);
  }
#undef ADD_SEG
}

static int cpu_matmul(ig_backend *be, ig_tensor *out, const ig_tensor *x, const ig_tensor *w, const ig_tensor *bias) {
  cpu_impl *im = be->impl;
  int64_t m = x->rows, I = x->cols, O = w->rows;
  if (w->cols != I || out->cols != O || out->rows < m || x->dtype != IG_DT_F32 || out->dtype != IG_DT_F32)
    return fail(be, "matmul: shape mismatch (x [%lld, %lld], w [%lld, %lld], out [%lld, %lld])", (long long)m,
                (long long)I, (long long)w->rows, (long long)w->cols, (long long)out->rows, (long long)out->cols);
  if (bias && ig_tensor_numel(bias) != O) return fail(be, "matmul: bias shape mismatch");
  if (m == 0) return 0;
  if (im->plan_cap < (size_t)m) {
    int32_t *pl = realloc(im->plan, (size_t)m * 3 * sizeof *pl);
    if (!pl) return fail(be, "out of memory");
    im->plan = pl;
    im->plan_cap = (size_t)m;
  }
  mm_job j = {.im = im, .x = x->data, .w = w, .bias = bias, .out = out->data, .I = I, .O = O};
  int ns, nl;
  mm_plan(im, m, im->plan, &ns, im->plan + m, &nl);
  j.short_rows = im->plan;
  j.n_short = ns;
  j.long_seg = im->plan + m;
  j.n_long = nl;
  j.n_rt = (ns + TILE_R - 1) / TILE_R;
  j.n_ot = ns ? (O + TILE_O - 1) / TILE_O : 0;
  int64_t items = j.n_rt * j.n_ot + (nl ? (O + TILE_G - 1) / TILE_G : 0);
  /* small products are not worth waking the pool (the split never changes the result) */
  if ((double)m * (double)O * (double)I < POOL_MIN_WORK)
    for (int64_t i = 0; i < items; i++) mm_item(&j, i, 0);
  else ig_pool_run(im->pool, mm_item, &j, items);
  if (j.failed) return fail(be, "out of memory in matmul");
  return 0;
}

/* ---------------------------------------------------------------------------------------------------- */
/* attention: one item per (row, KV head): the query heads of that KV head over the row's context, keys in
 * position order (ig_cpu_attn) */

typedef struct {
  cpu_impl *im;
  const float *q;
  float *out;
  int layer;
  ig_attn_params p;
  int heads_per_item;     /* KV heads of one row per item: all of them (one pass over the row's cache lines)
                           * unless there are too few rows to keep the threads busy */
  int failed;
} attn_job;

static void attn_item(void *arg, int64_t item, int ith) {
  attn_job *j = arg;
  cpu_impl *im = j->im;
  int nkv = j->p.n_kv_heads, hd = j->p.head_dim, group = j->p.n_heads / nkv, bs = im->kv.block_size;
  int per_row = nkv / j->heads_per_item;
  int64_t W = (int64_t)nkv * hd, QW = (int64_t)j->p.n_heads * hd;
  int i = (int)(item / per_row), kv0 = (int)(item % per_row) * j->heads_per_item, s = im->row_seq[i], p = im->pos[i];
  int start = j->p.sliding_window > 0 && p - j->p.sliding_window + 1 > 0 ? p - j->p.sliding_window + 1 : 0;
  int nk = p + 1 - start;
  /* scratch: key offsets (int64), then group * nk scores */
  float *sc = scratch_get(&im->scr[ith], (size_t)nk * 2 + (size_t)group * nk);
  if (!sc) {
    j->failed = 1;
    return;
  }
  int64_t *off = (int64_t *)sc;
  const int32_t *bt = im->block_table + (size_t)s * im->max_blocks;
  for (int t = start, b = start / bs; t <= p; b++) { /* block by block: no division per key */
    int64_t base = ((int64_t)bt[b] - b) * bs * W;
    for (int e = (b + 1) * bs - 1 < p ? (b + 1) * bs - 1 : p; t <= e; t++) off[t - start] = base + (int64_t)t * W;
  }
  for (int kvh = kv0; kvh < kv0 + j->heads_per_item; kvh++) {
    int64_t col = (int64_t)kvh * group * hd;
    ig_cpu_attn(j->q + (int64_t)i * QW + col, group, hd, im->k[j->layer] + (int64_t)kvh * hd,
                im->v[j->layer] + (int64_t)kvh * hd, off, nk, j->p.scale, j->p.softcap, sc + (size_t)nk * 2,
                j->out + (int64_t)i * QW + col);
  }
}

static int cpu_attention(ig_backend *be, ig_tensor *out, const ig_tensor *q, int layer, const ig_attn_params *p) {
  cpu_impl *im = be->impl;
  if (!im->k || layer < 0 || layer >= im->kv.n_layers) return fail(be, "attention: no KV cache for layer %d", layer);
  if (p->n_kv_heads != im->kv.n_kv_heads || p->head_dim != im->kv.head_dim || p->n_heads % p->n_kv_heads ||
      q->cols != (int64_t)p->n_heads * p->head_dim || out->cols != q->cols || out->rows < im->n_tokens)
    return fail(be, "attention: shape mismatch");
  attn_job j = {.im = im, .q = q->data, .out = out->data, .layer = layer, .p = *p};
  j.heads_per_item = im->n_tokens >= 4 * im->nth ? p->n_kv_heads : 1;
  int64_t items = (int64_t)im->n_tokens * (p->n_kv_heads / j.heads_per_item);
  double work = 0; /* query-key multiply-adds of this step (and as many for the values) */
  for (int i = 0; i < im->n_tokens; i++) work += 2.0 * (im->pos[i] + 1) * p->n_heads * p->head_dim;
  if (work < POOL_MIN_WORK / 4)
    for (int64_t i = 0; i < items; i++) attn_item(&j, i, 0);
  else ig_pool_run(im->pool, attn_item, &j, items);
  if (j.failed) return fail(be, "out of memory in attention");
  return 0;
}

/* ---------------------------------------------------------------------------------------------------- */

static void cpu_destroy(ig_backend *be) {
  if (!be) return;
  cpu_impl *im = be->impl;
  if (im) {
    ig_pool_destroy(im->pool);
    kv_release(im);
    if (im->scr)
      for (int i = 0; i < im->nth; i++) free(im->scr[i].p);
    free(im->scr);
    free(im->tokens);
    free(im->pos);
    free(im->slot);
    free(im->seq_start);
    free(im->ctx_len);
    free(im->block_table);
    free(im->out_rows);
    free(im->row_seq);
    free(im->tab_inv[0]);
    free(im->tab_inv[1]);
    free(im->cs);
    free(im->plan);
    free(im->normw);
    free(im);
  }
  free(be);
}

ig_backend *ig_backend_cpu_create(int threads, char *err, size_t errlen) {
  ig_cpu_kernels_init();
  if (threads <= 0) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    threads = n > 0 ? (int)n : 1;
  }
  if (threads > 256) threads = 256;
  ig_backend *be = calloc(1, sizeof *be);
  cpu_impl *im = calloc(1, sizeof *im);
  if (!be || !im) {
    free(be);
    free(im);
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  be->impl = im;
  be->name = "cpu";
  be->act_dtype = IG_DT_F32;
  /* OpenBLAS runs single-threaded inside each of our pool threads (on disjoint output tiles). */
  openblas_set_num_threads(1);
  im->pool = ig_pool_create(threads);
  im->nth = im->pool ? ig_pool_size(im->pool) : 0;
  im->scr = calloc((size_t)(im->nth ? im->nth : 1), sizeof *im->scr);
  if (!im->pool || !im->scr) {
    cpu_destroy(be);
    snprintf(err, errlen, "cannot start %d CPU threads", threads);
    return NULL;
  }
  const char *g = getenv("IGNIS_CPU_GEMM_MIN_ROWS");
  im->gemm_min_rows = g && atoi(g) > 0 ? atoi(g) : GEMM_MIN_ROWS;
  be->destroy = cpu_destroy;
  be->alloc = cpu_alloc;
  be->free = cpu_free;
  be->weight = cpu_weight;
  be->weight_fp8 = cpu_weight_fp8;
  be->download_f32 = cpu_download_f32;
  be->upload = cpu_upload;
  be->sync = cpu_sync;
  be->kv_init = cpu_kv_init;
  be->kv_bytes_per_block = cpu_kv_bytes_per_block;
  be->set_batch = cpu_set_batch;
  be->set_rope = cpu_set_rope;
  be->embed = cpu_embed;
  be->rmsnorm = cpu_rmsnorm;
  be->matmul = cpu_matmul;
  be->rope = cpu_rope;
  be->swiglu = cpu_swiglu;
  be->kv_write = cpu_kv_write;
  be->attention = cpu_attention;
  be->gather_rows = cpu_gather_rows;
  be->add = cpu_add;
  be->rope_select = cpu_rope_select;
  be->scale = cpu_scale;
  be->geglu = cpu_geglu;
  be->softcap = cpu_softcap;
  return be;
}
