/* model/llama: the Llama family (Llama, Mistral, Qwen2, Qwen3, Phi3, Gemma3, Granite, and the text models of
 * Gemma 3's and Mistral Small 3.1's multimodal checkpoints): which tensors a checkpoint holds, loading
 * them onto a backend, and the forward pass of one batch written once against backend.h. The architectures
 * differ only in flags read from config.json: q/k/v biases (Qwen2), q/k RMSNorm (Qwen3), sliding-window
 * layers (Mistral, Phi3, Gemma3), q|k|v and gate|up stored as one tensor each and partial rotary (Phi3), Gemma3's
 * (1 + w) norms around both sublayers, scaled embedding, GELU-tanh MLP and second rope for its sliding layers,
 * Granite's multipliers, the tensor-name prefix of a multimodal checkpoint, tied embeddings, rope scaling. */
#include "model/model.h"
#include "backend/fp8.h"
#include "io/config.h"
#include "io/safetensors.h"
#include "model/rope.h"
#include "model/shard.h"
#include "util/half.h"
#include "util/log.h"
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------------- */
/* weights and state */

typedef struct {
  ig_tensor attn_norm;            /* [1, H] */
  ig_tensor wq, wk, wv, wo;       /* [nh*hd, H], [nkv*hd, H], [nkv*hd, H], [H, nh*hd] */
  ig_tensor bq, bk, bv, bo;       /* biases (data NULL when absent) */
  ig_tensor q_norm, k_norm;       /* [1, hd] (Qwen3) */
  ig_tensor ffn_norm;             /* [1, H] */
  ig_tensor w_gate, w_up, w_down; /* [I, H], [I, H], [H, I] */
  ig_tensor b_gate, b_up, b_down; /* mlp_bias */
  ig_tensor qkv, gu;              /* q/k/v and gate/up in one buffer each (weight_alloc); the parts are views */
  ig_tensor post_attn_norm, post_ffn_norm; /* [1, H] (Gemma3: on the attention's and the MLP's outputs) */
} layer_weights;

/* Activations for up to cap tokens; each step views them with its own row count. */
typedef struct {
  int cap, cap_out;
  ig_tensor x;        /* [n, H] residual stream */
  ig_tensor h;        /* [n, H] normed input of a sublayer */
  ig_tensor q, k, v;  /* [n, nh*hd], [n, nkv*hd], [n, nkv*hd] */
  ig_tensor qn, kn;   /* q/k after q/k norm (Qwen3) */
  ig_tensor att;      /* [n, nh*hd] attention output */
  ig_tensor o;        /* [n, H] sublayer output */
  ig_tensor gate, up; /* [n, I] */
  ig_tensor xo, xon;  /* [n_out, H] gathered rows, normed */
  ig_tensor logits;   /* [n_out, V] */
} activations;

struct ig_model {
  ig_config cfg;
  ig_model_info info;
  ig_backend *be;
  ig_st_model *st;
  ig_tensor embed, final_norm, lm_head; /* [V, H], [1, H], [V, H] */
  layer_weights *layers;
  float *inv_freq;                      /* [hd/2] */
  int rope_len;                         /* seq_len the backend's rope was set for (dynamic scaling), -1 default */
  const char *pfx;                      /* the text model's tensor names: "model." or, in Gemma 3's multimodal
                                         * checkpoints, "language_model.model." / "model.language_model." */
  const char *head_name;                /* lm_head's: "lm_head.weight" or "language_model.lm_head.weight" */
  activations a;
  int kv_ready;
  int kv_dtype;         /* ig_kv_dtype of the KV cache (ig_model_set_kv_dtype) */
  int kv_scales;        /* the checkpoint has per-layer K/V cache scales (an FP8 checkpoint's k_scale / v_scale) */
  float *k_scale, *v_scale; /* [n_layers] those scales (1 where absent), for an FP8 KV cache */
  /* decode-step graphs (ig_model_set_graphs): bucket sizes, ascending; the KV block padding rows write to */
  int graph_sizes[32];
  int n_graph_sizes;
  int pad_block;        /* -1: no graphs */
  int kv_block_size;
  int32_t *pb;          /* the padded batch's arrays, in one allocation of pb_cap int32s */
  long long graph_steps; /* steps padded to a bucket (ig_model_graph_steps) */
  int sample_pending;   /* ig_model_forward_sample_begin left the backend's sample results in flight */
  size_t pb_cap;
  /* tensor parallelism (model/shard.c): this model's part; a front model (group != NULL) only forwards calls */
  ig_tp tp;
  ig_shard_group *group;
  void **wbufs;         /* host copies of strided weight slices (column slices of o_proj/down_proj) */
  unsigned char *wbuf_copied; /* [n_wbufs] 1: the backend made its own copy (freed once loading is done) */
  int n_wbufs;
};

const ig_model_info *ig_model_get_info(const ig_model *m) { return &m->info; }
ig_backend *ig_model_backend(const ig_model *m) { return m->be; }

ig_model *ig_model_front_new(ig_shard_group *g, ig_backend *be0, const ig_model_info *info) {
  ig_model *m = calloc(1, sizeof *m);
  if (!m) return NULL;
  m->group = g;
  m->be = be0;
  m->info = *info;
  return m;
}

static void free_acts(ig_model *m) {
  if (m->be->graph_reset) m->be->graph_reset(m->be); /* captured graphs point into these buffers */
  ig_tensor *ts[] = {&m->a.x, &m->a.h, &m->a.q, &m->a.k, &m->a.v, &m->a.qn, &m->a.kn, &m->a.att,
                     &m->a.o, &m->a.gate, &m->a.up, &m->a.xo, &m->a.xon, &m->a.logits};
  for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
    if (ts[i]->data) m->be->free(m->be, ts[i]);
  m->a.cap = m->a.cap_out = 0;
}

/* free_acts after a failed allocation: the backend's message stays for the caller */
static void free_acts_keep_err(ig_model *m) {
  char keep[sizeof m->be->err];
  memcpy(keep, m->be->err, sizeof keep);
  free_acts(m);
  memcpy(m->be->err, keep, sizeof keep);
}

void ig_model_free(ig_model *m) {
  if (!m) return;
  if (m->group) {
    ig_shard_free(m->group);
    free(m);
    return;
  }
  if (m->be) {
    if (m->n_wbufs) m->be->sync(m->be); /* queued uploads may still read the slice copies freed below */
    free_acts(m);
    /* weights are views on the CPU; a device backend owns copies */
    ig_tensor *ts[] = {&m->embed, &m->final_norm, &m->lm_head};
    for (int i = 0; i < 3; i++)
      if (ts[i]->data && ts[i]->owned && !(i == 2 && m->lm_head.data == m->embed.data)) m->be->free(m->be, ts[i]);
    for (int l = 0; m->layers && l < m->cfg.n_layers; l++) {
      ig_tensor *lw = (ig_tensor *)&m->layers[l];
      for (size_t i = 0; i < sizeof(layer_weights) / sizeof(ig_tensor); i++)
        if (lw[i].data && lw[i].owned) m->be->free(m->be, &lw[i]);
    }
  }
  free(m->layers);
  free(m->inv_freq);
  free(m->pb);
  for (int i = 0; i < m->n_wbufs; i++) free(m->wbufs[i]);
  free(m->wbufs);
  free(m->wbuf_copied);
  ig_st_close(m->st);
  ig_config_free(&m->cfg);
  free(m->k_scale);
  free(m->v_scale);
  free(m);
}

/* ---------------------------------------------------------------------------------------------------- */
/* loading */

typedef struct {
  ig_model *m;
  char *err;
  size_t errlen;
  size_t done, total; /* bytes, for the progress line */
  int again;          /* binding a part of a tensor already counted (a shard's rows of tied embeddings) */
  ig_tensor *into;    /* non-NULL: load into rows [into_row0, ...) of this fused weight (weight_rows), as a view */
  int64_t into_row0;
  int plus_one;       /* Gemma's norm weights: bound as 1 + w in f32, as transformers applies them */
} loader;

/* element i of a checkpoint tensor as f32 */
static float st_elem_f32(const uint8_t *p, ig_st_dtype dt, size_t i) {
  if (dt == IG_ST_F32) {
    float f;
    memcpy(&f, p + i * 4, 4);
    return f;
  }
  uint16_t h;
  memcpy(&h, p + i * 2, 2);
  return dt == IG_ST_BF16 ? ig_bf16_to_f32(h) : ig_f16_to_f32(h);
}

/* Which part of a [rows, cols] tensor a shard binds: all of it, or [off, off + len) of its rows or columns.
 * Row slices of a row-major tensor are contiguous views; column slices of a matrix are copied once. */
typedef struct {
  int axis; /* -1 whole, 0 rows, 1 cols */
  int64_t off, len;
} part;
#define WHOLE ((part){-1, 0, 0})
#define ROWS(o, n) ((part){0, (o), (n)})
#define COLS(o, n) ((part){1, (o), (n)})

static void shape_str(char *buf, size_t n, const int64_t *shape, int nd) {
  size_t o = (size_t)snprintf(buf, n, "[");
  for (int i = 0; i < nd && o < n; i++) o += (size_t)snprintf(buf + o, n - o, "%s%lld", i ? ", " : "", (long long)shape[i]);
  if (o < n) snprintf(buf + o, n - o, "]");
}

/* Reads every page once so the weights are in memory before the first step (and the progress line means
 * something); returns a checksum the compiler cannot drop. */
static unsigned touch_pages(const uint8_t *p, size_t n) {
  unsigned s = 0;
  for (size_t i = 0; i < n; i += 4096) s += p[i];
  return s;
}

/* Keeps a host copy alive: until the model is freed when the backend views it (CPU), else until the backend's
 * queued uploads are done (release_bufs), since weight() may read `host` later. */
static int keep_buf(ig_model *m, void *buf, int copied) {
  void **nb = realloc(m->wbufs, sizeof(void *) * (size_t)(m->n_wbufs + 1));
  if (nb) m->wbufs = nb;
  unsigned char *nc = nb ? realloc(m->wbuf_copied, (size_t)m->n_wbufs + 1) : NULL;
  if (!nc) return -1;
  m->wbuf_copied = nc;
  m->wbufs[m->n_wbufs] = buf;
  m->wbuf_copied[m->n_wbufs++] = (unsigned char)copied;
  return 0;
}

/* After the last weight: waits for the backend's uploads, then frees the copies it no longer reads. */
static int release_bufs(ig_model *m) {
  int any = 0, k = 0;
  for (int i = 0; i < m->n_wbufs; i++) any |= m->wbuf_copied[i];
  if (!any) return 0;
  if (m->be->sync(m->be)) return -1;
  for (int i = 0; i < m->n_wbufs; i++)
    if (m->wbuf_copied[i]) free(m->wbufs[i]);
    else m->wbufs[k] = m->wbufs[i], m->wbuf_copied[k++] = 0;
  m->n_wbufs = k;
  return 0;
}

/* ---- FP8 checkpoints: weights stored as F8_E4M3 (or F8_E5M2) with a scale tensor beside them, dequantized to bf16
 * as they load. The scale is one value (per tensor), one per row ([rows] or [rows, 1]: per channel), or one per block
 * of br x bc ([ceil(rows / br), ceil(cols / bc)]: fp8's weight_block_size, compressed-tensors' groups). w = code * s,
 * computed in f32 and rounded to bf16 once, as `weight.float() * scale` then `.to(bfloat16)` gives it. */
typedef struct {
  const uint8_t *q;  /* the codes, [rows, cols] */
  float lut[256];    /* code -> value */
  float *sv;         /* the scales in f32, [sr, sc] (malloc'd by fp8_layout; the caller frees) */
  int64_t rows, cols, br, bc, sr, sc; /* block shape; the scale tensor's [sr, sc] */
  int64_t r0, nr, c0, nc;             /* the part that loads: rows [r0, r0 + nr), cols [c0, c0 + nc) */
  uint16_t *out;                      /* [nr, nc] bf16 */
} fp8_job;

static void *fp8_rows(void *arg) {
  const fp8_job *j = ((const fp8_job **)arg)[0];
  const int64_t *range = ((const int64_t **)arg)[1];
  for (int64_t i = range[0]; i < range[1]; i++) {
    const int64_t row = j->r0 + i;
    ig_fp8_dequant_row(j->out + i * j->nc, j->q + row * j->cols + j->c0, j->lut, j->sv + (row / j->br) * j->sc, j->c0,
                       j->bc, j->nc);
  }
  return NULL;
}

/* The scale tensor beside FP8 tensor st (named name) and its layout, validated, into j (codes, scales, block shape,
 * decode table; the part is the caller's). Returns 0 or -1 with L->err set. */
static int fp8_layout(loader *L, const ig_st_tensor *st, const char *name, fp8_job *j) {
  ig_model *m = L->m;
  const int64_t rows = st->n_dims == 2 ? st->shape[0] : 1, cols = st->shape[st->n_dims - 1];
  size_t nl = strlen(name);
  char sn[300];
  const ig_st_tensor *sc = NULL;
  if (nl > 7 && !strcmp(name + nl - 7, ".weight")) {
    snprintf(sn, sizeof sn, "%.*s.weight_scale", (int)(nl - 7), name);
    if (!(sc = ig_st_find(m->st, sn))) {
      snprintf(sn, sizeof sn, "%.*s.weight_scale_inv", (int)(nl - 7), name);
      sc = ig_st_find(m->st, sn);
    }
  }
  if (!sc) {
    snprintf(L->err, L->errlen, "tensor '%s' is %s but has no weight_scale (or weight_scale_inv) beside it", name,
             st->dtype_name);
    return -1;
  }
  if (sc->dtype != IG_ST_F32 && sc->dtype != IG_ST_BF16 && sc->dtype != IG_ST_F16) {
    snprintf(L->err, L->errlen, "tensor '%s': dtype %s (a scale must be F32, BF16 or F16)", sn, sc->dtype_name);
    return -1;
  }
  memset(j, 0, sizeof *j);
  j->q = st->data, j->rows = rows, j->cols = cols;
  int64_t n = 1;
  for (int d = 0; d < sc->n_dims; d++) n *= sc->shape[d];
  const int *qb = m->cfg.quant_block;
  if (n == 1) { /* per tensor */
    j->br = rows, j->bc = cols, j->sr = j->sc = 1;
  } else if (n == rows && (sc->n_dims == 1 || (sc->n_dims == 2 && sc->shape[1] == 1))) { /* per row */
    j->br = 1, j->bc = cols, j->sr = rows, j->sc = 1;
  } else if (sc->n_dims == 2 && sc->shape[0] > 0 && sc->shape[1] > 0) { /* per block: the config's block shape, else
                                                                            * the one the scale's shape implies */
    j->sr = sc->shape[0], j->sc = sc->shape[1];
    j->br = qb[0] > 0 ? qb[0] : (rows + j->sr - 1) / j->sr;
    j->bc = qb[1] > 0 ? qb[1] : (cols + j->sc - 1) / j->sc;
    if ((rows + j->br - 1) / j->br != j->sr || (cols + j->bc - 1) / j->bc != j->sc) j->sr = -1;
  } else {
    j->sr = -1;
  }
  if (j->sr < 0) {
    char got[128];
    shape_str(got, sizeof got, sc->shape, sc->n_dims);
    snprintf(L->err, L->errlen, "tensor '%s' has shape %s, which is no scale layout of its [%lld, %lld] weight", sn, got,
             (long long)rows, (long long)cols);
    return -1;
  }
  if (!(j->sv = malloc((size_t)n * sizeof *j->sv))) {
    snprintf(L->err, L->errlen, "tensor '%s': out of memory", sn);
    return -1;
  }
  for (int64_t i = 0; i < n; i++) {
    j->sv[i] = st_elem_f32(sc->data, sc->dtype, (size_t)i);
    if (!isfinite(j->sv[i])) {
      snprintf(L->err, L->errlen, "tensor '%s': scale %lld is not finite", sn, (long long)i);
      free(j->sv);
      j->sv = NULL;
      return -1;
    }
  }
  ig_fp8_table(j->lut, st->dtype == IG_ST_F8_E5M2);
  return 0;
}

/* Dequantizes the part [r0, r0 + nr) x [c0, c0 + nc) of FP8 tensor st (layout j) into a new bf16 buffer. */
static uint16_t *fp8_dequant(loader *L, fp8_job *jj, const char *name, int64_t r0, int64_t nr, int64_t c0, int64_t nc) {
  fp8_job j = *jj;
  j.r0 = r0, j.nr = nr, j.c0 = c0, j.nc = nc;
  if (!(j.out = malloc((size_t)(nr * nc) * 2))) {
    snprintf(L->err, L->errlen, "tensor '%s': out of memory dequantizing it", name);
    return NULL;
  }
  /* rows over up to 16 threads (an 8B checkpoint is ~8G codes) */
  enum { NT = 16 };
  const fp8_job *jp = &j;
  int64_t ranges[NT][2];
  const void *args[NT][2];
  pthread_t th[NT];
  int nt = nr * nc >= (1 << 20) ? NT : 1, started = 0;
  if (nt > nr) nt = (int)nr;
  for (int t = 0; t < nt; t++) {
    ranges[t][0] = nr * t / nt, ranges[t][1] = nr * (t + 1) / nt;
    args[t][0] = jp, args[t][1] = ranges[t];
    if (t > 0 && pthread_create(&th[t], NULL, fp8_rows, (void *)args[t]) == 0) started |= 1 << t;
  }
  if (nt > 0) fp8_rows((void *)args[0]);
  for (int t = 1; t < nt; t++)
    if (started & (1 << t)) pthread_join(th[t], NULL);
    else fp8_rows((void *)args[t]);
  return j.out;
}

/* The backend's own dequantization (weight_fp8: the CUDA backend stages the codes, half the bytes, and converts them
 * on the device) of rows [r0, r0 + nr) of FP8 tensor st (layout j), into L->into's rows or a new weight t. */
static int fp8_device(loader *L, ig_tensor *t, const ig_st_tensor *st, const fp8_job *j, int64_t r0, int64_t nr) {
  ig_model *m = L->m;
  const int64_t n = j->sr * j->sc;
  const float *sv = j->sv;
  const uint8_t *codes = j->q + (size_t)(r0 * j->cols);
  int rc;
  if (L->into) {
    rc = m->be->weight_fp8(m->be, L->into, L->into_row0, codes, st->dtype == IG_ST_F8_E5M2, sv, n, r0, j->br, j->bc,
                           j->sc, nr, j->cols);
    if (!rc) {
      *t = *L->into;
      t->data = (char *)L->into->data + (size_t)(L->into_row0 * j->cols) * ig_dtype_size(L->into->dtype);
      t->rows = nr;
      t->owned = 0;
    }
  } else {
    memset(t, 0, sizeof *t);
    rc = m->be->weight_fp8(m->be, t, 0, codes, st->dtype == IG_ST_F8_E5M2, sv, n, r0, j->br, j->bc, j->sc, nr, j->cols);
  }
  return rc;
}

/* After a tensor is bound: the whole tensor is counted (every shard's info describes the whole model); rank 0 shows the
 * progress. */
static int loaded(loader *L, const ig_st_tensor *st, int64_t rows, int64_t cols) {
  ig_model *m = L->m;
  if (L->again) return 0;
  L->done += st->nbytes;
  m->info.n_params += rows * cols;
  m->info.weight_bytes += st->nbytes;
  if (m->tp.rank == 0)
    ig_log_progress("loading weights", (double)L->done / 1048576.0, (double)L->total / 1048576.0, "MiB");
  return 0;
}

/* Binds part p of tensor `name` of shape [rows, cols] (cols only: a 1-D [cols] tensor, sliced as [1, cols]);
 * optional: absent is fine. */
static int load(loader *L, ig_tensor *t, const char *name, int64_t rows, int64_t cols, int one_d, int optional, part p) {
  ig_model *m = L->m;
  const ig_st_tensor *st = ig_st_find(m->st, name);
  memset(t, 0, sizeof *t);
  if (!st) {
    if (optional) return 0;
    snprintf(L->err, L->errlen, "missing tensor '%s' in the checkpoint", name);
    return -1;
  }
  ig_dtype dt;
  int fp8 = 0;
  switch (st->dtype) {
  case IG_ST_F32: dt = IG_DT_F32; break;
  case IG_ST_F16: dt = IG_DT_F16; break;
  case IG_ST_BF16: dt = IG_DT_BF16; break;
  case IG_ST_F8_E4M3:
  case IG_ST_F8_E5M2:
    if (m->cfg.quant_fp8 && !one_d && !L->plus_one) { /* dequantized to bf16 below */
      dt = IG_DT_BF16, fp8 = 1;
      break;
    }
    /* fallthrough */
  default:
    snprintf(L->err, L->errlen, "tensor '%s': unsupported dtype %s (supported: F32, F16, BF16; F8_E4M3 and F8_E5M2 "
             "weight matrices in a checkpoint whose config.json names an FP8 quantization_config)", name, st->dtype_name);
    return -1;
  }
  int ok = one_d ? st->n_dims == 1 && st->shape[0] == cols
                 : st->n_dims == 2 && st->shape[0] == rows && st->shape[1] == cols;
  if (!ok) {
    char got[128], want[64];
    shape_str(got, sizeof got, st->shape, st->n_dims);
    if (one_d) snprintf(want, sizeof want, "[%lld]", (long long)cols);
    else snprintf(want, sizeof want, "[%lld, %lld]", (long long)rows, (long long)cols);
    snprintf(L->err, L->errlen, "tensor '%s' has shape %s but config.json implies %s", name, got, want);
    return -1;
  }
  /* this shard's part: a contiguous [r, c] block at `host`, or a strided column block copied to `buf` */
  int64_t r = one_d ? 1 : rows, c = cols;
  size_t es = ig_st_elem_size(st->dtype);
  const uint8_t *host = st->data;
  void *buf = NULL;
  if (p.axis == 1 && p.len == cols) p.axis = -1;
  if (fp8) {
    fp8_job lay;
    if (fp8_layout(L, st, name, &lay)) return -1;
    const int64_t r0 = p.axis == 0 ? p.off : 0, c0 = p.axis == 1 ? p.off : 0;
    if (p.axis == 0) r = p.len;
    if (p.axis == 1) c = p.len;
    /* the backend's own dequantization where it has one (rows only: a column slice is not contiguous);
     * IGNIS_FP8_HOST=1: the host's, for comparison */
    if (m->be->weight_fp8 && p.axis != 1 && !getenv("IGNIS_FP8_HOST")) {
      int frc = fp8_device(L, t, st, &lay, r0, r);
      free(lay.sv);
      if (frc) {
        snprintf(L->err, L->errlen, "tensor '%s': %s", name, ig_backend_error(m->be));
        return -1;
      }
      return loaded(L, st, rows, cols);
    }
    buf = fp8_dequant(L, &lay, name, r0, r, c0, c);
    free(lay.sv);
    if (!buf) return -1;
    host = buf, es = 2;
    p.axis = -1; /* sliced already */
  }
  if (p.axis == 0) host += (size_t)(p.off * cols) * es, r = p.len;
  if (p.axis == 1) {
    c = p.len;
    host += (size_t)p.off * es;
    if (r > 1) {
      if (!(buf = malloc((size_t)(r * c) * es))) {
        snprintf(L->err, L->errlen, "tensor '%s': out of memory slicing it", name);
        return -1;
      }
      for (int64_t i = 0; i < r; i++) memcpy((uint8_t *)buf + (size_t)(i * c) * es, host + (size_t)(i * cols) * es, (size_t)c * es);
      host = buf;
    }
  }
  if (!buf && (uintptr_t)host % es) { /* a tensor at an offset that is no multiple of its element size (the format
                                        * allows it; the safetensors library's own files never do it): copied */
    if (!(buf = malloc((size_t)(r * c) * es))) {
      snprintf(L->err, L->errlen, "tensor '%s': out of memory", name);
      return -1;
    }
    memcpy(buf, host, (size_t)(r * c) * es);
    host = buf;
  }
  if (L->plus_one) { /* (1 + w) in f32 */
    float *f = malloc((size_t)(r * c) * sizeof(float));
    if (!f) {
      free(buf);
      snprintf(L->err, L->errlen, "tensor '%s': out of memory", name);
      return -1;
    }
    for (int64_t i = 0; i < r * c; i++) f[i] = 1.0f + st_elem_f32(host, st->dtype, (size_t)i);
    free(buf);
    buf = f, host = (const uint8_t *)f, dt = IG_DT_F32;
  }
  static atomic_uint sink; /* shards load on several threads */
  if (!buf) atomic_fetch_add_explicit(&sink, touch_pages(host, (size_t)(r * c) * es), memory_order_relaxed);
  int rc;
  if (L->into) { /* the part's rows of the fused buffer (from the mapping, or from a copy: FP8, unaligned) */
    rc = m->be->weight_rows(m->be, L->into, L->into_row0, host, dt, r);
    if (!rc) {
      *t = *L->into;
      t->data = (char *)L->into->data + (size_t)(L->into_row0 * c) * ig_dtype_size(L->into->dtype);
      t->rows = r;
      t->owned = 0;
    }
  } else if (L->plus_one && m->be->weight_keep) {
    rc = m->be->weight_keep(m->be, t, host, dt, r, c); /* (1 + w) stays f32, as transformers applies it */
  } else {
    rc = m->be->weight(m->be, t, host, dt, r, c);
  }
  if (!rc && buf && keep_buf(m, buf, t->owned || L->into != NULL)) { /* weight_rows copied it */
    m->be->sync(m->be); /* the upload may be queued: let it finish before the buffer goes */
    m->be->free(m->be, t);
    free(buf);
    snprintf(m->be->err, sizeof m->be->err, "out of memory");
    rc = -1;
  } else if (buf && rc) {
    free(buf);
  }
  if (rc) {
    snprintf(L->err, L->errlen, "tensor '%s': %s", name, ig_backend_error(m->be));
    return -1;
  }
  return loaded(L, st, rows, cols);
}

/* An FP8 checkpoint's per-layer KV cache scales: self_attn.k_scale / v_scale (compressed-tensors' kv_cache_scheme),
 * or k_proj / v_proj.output_scale (AutoFP8's), one positive number each; every layer then has both (1 where one is
 * absent). None: m->k_scale stays NULL. Returns 0 or -1 with err set. */
static int kv_scales_load(ig_model *m, char *err, size_t errlen) {
  const int L = m->cfg.n_layers;
  for (int l = 0; l < L; l++)
    for (int w = 0; w < 2; w++) {
      static const char *const names[2][2] = {{"self_attn.k_scale", "self_attn.k_proj.output_scale"},
                                              {"self_attn.v_scale", "self_attn.v_proj.output_scale"}};
      char n[256];
      const ig_st_tensor *t = NULL;
      for (int a = 0; a < 2 && !t; a++) {
        snprintf(n, sizeof n, "%slayers.%d.%s", m->pfx, l, names[w][a]);
        t = ig_st_find(m->st, n);
      }
      if (!t) continue;
      int64_t numel = 1;
      for (int d = 0; d < t->n_dims; d++) numel *= t->shape[d];
      float v = numel == 1 && (t->dtype == IG_ST_F32 || t->dtype == IG_ST_BF16 || t->dtype == IG_ST_F16)
                    ? st_elem_f32(t->data, t->dtype, 0) : NAN;
      if (!(v > 0.f && isfinite(v))) {
        snprintf(err, errlen, "tensor '%s': a KV cache scale must be one positive number (%s, %lld values)", n,
                 t->dtype_name, (long long)numel);
        return -1;
      }
      if (!m->k_scale) {
        m->k_scale = malloc((size_t)L * sizeof(float));
        m->v_scale = malloc((size_t)L * sizeof(float));
        if (!m->k_scale || !m->v_scale) {
          snprintf(err, errlen, "out of memory");
          return -1;
        }
        for (int i = 0; i < L; i++) m->k_scale[i] = m->v_scale[i] = 1.f;
      }
      (w ? m->v_scale : m->k_scale)[l] = v;
      m->kv_scales = 1;
    }
  return 0;
}

/* Starts loading a group of weights into one buffer of `rows` x `cols` (the backend's weight_alloc), typed from
 * the first member's checkpoint dtype; the next LOADs fill it (L->into, L->into_row0). Without weight_alloc (the
 * CPU views the mmap) or without the first tensor (load() reports it), each weight is its own. */
static int fused_begin(loader *L, ig_tensor *dst, int layer, const char *first, int64_t rows, int64_t cols) {
  ig_model *m = L->m;
  L->into = NULL, L->into_row0 = 0;
  memset(dst, 0, sizeof *dst);
  if (!m->be->weight_alloc || !m->be->weight_rows || getenv("IGNIS_NO_FUSED_WEIGHTS")) return 0;
  char n[256];
  snprintf(n, sizeof n, "%slayers.%d.%s", m->pfx, layer, first);
  const ig_st_tensor *st = ig_st_find(m->st, n);
  if (!st) return 0;
  ig_dtype dt = st->dtype == IG_ST_F16                                   ? IG_DT_F16
               : st->dtype == IG_ST_BF16 || st->dtype == IG_ST_F8_E4M3 ||
                         st->dtype == IG_ST_F8_E5M2                      ? IG_DT_BF16 /* FP8: dequantized to bf16 */
                                                                         : IG_DT_F32;
  if (m->be->weight_alloc(m->be, dst, dt, rows, cols)) {
    snprintf(L->err, L->errlen, "%s: %s", n, ig_backend_error(m->be));
    return -1;
  }
  L->into = dst;
  return 0;
}

static int load_weights(loader *L) {
  ig_model *m = L->m;
  const ig_config *c = &m->cfg;
  int64_t H = c->hidden_size, I = c->intermediate_size, V = c->vocab_size, hd = c->head_dim;
  int64_t QW = (int64_t)c->n_heads * hd, KW = (int64_t)c->n_kv_heads * hd;
  /* this shard's heads (rows of q/k/v, columns of o), intermediate columns and vocabulary rows */
  const ig_tp *tp = &m->tp;
  int64_t q0 = (int64_t)tp->rank * tp->nh * hd, qn = (int64_t)tp->nh * hd;
  int64_t k0 = (int64_t)tp->rank * tp->nkv * hd, kn = (int64_t)tp->nkv * hd;
  int first = tp->rank == 0; /* o_proj and down_proj biases are added once, before the sum over shards */
  char n[256];
  char en[160], nn[160];
  snprintf(en, sizeof en, "%sembed_tokens.weight", m->pfx);
  snprintf(nn, sizeof nn, "%snorm.weight", m->pfx);
  if (load(L, &m->embed, en, V, H, 0, 0, WHOLE)) return -1;
  for (int l = 0; l < c->n_layers; l++) {
    layer_weights *w = &m->layers[l];
    /* biases exist exactly where transformers' modules create them (io/config decides per architecture) */
    const int qkv_bias = c->attention_bias, o_bias = c->o_bias, mlp_bias = c->mlp_bias;
#define LOAD(t, suffix, rows, cols, one_d, opt, part)                                                                  \
  do {                                                                                                                 \
    snprintf(n, sizeof n, "%slayers.%d.%s", m->pfx, l, suffix);                                                        \
    if (load(L, t, n, rows, cols, one_d, opt, part)) return -1;                                                       \
  } while (0)
#define LOAD_IF(cond, t, suffix, rows, cols, part)                                                                     \
  do {                                                                                                                 \
    if (cond) LOAD(t, suffix, rows, cols, 1, 0, part);                                                                 \
  } while (0)
    L->plus_one = c->gemma != 0;
    LOAD(&w->attn_norm, "input_layernorm.weight", 1, H, 1, 0, WHOLE);
    L->plus_one = 0;
    /* q/k/v (and gate/up below) in one buffer when the backend can multiply them at once. Phi3 stores them so
     * already: rows of self_attn.qkv_proj (q, then k, then v) and of mlp.gate_up_proj (gate, then up), each
     * part loaded as its own weight (the whole tensor counted once, with its first part) */
    const int fz = c->fused_qkv_gate_up;
    const char *qn_ = fz ? "self_attn.qkv_proj.weight" : "self_attn.q_proj.weight";
    const char *kn_ = fz ? qn_ : "self_attn.k_proj.weight", *vn_ = fz ? qn_ : "self_attn.v_proj.weight";
    const int64_t QKR = fz ? QW + 2 * KW : 0; /* the fused tensor's rows */
    if (fused_begin(L, &w->qkv, l, qn_, qn + 2 * kn, H)) return -1;
    LOAD(&w->wq, qn_, fz ? QKR : QW, H, 0, 0, ROWS(q0, qn));
    L->into_row0 = qn, L->again = fz;
    LOAD(&w->wk, kn_, fz ? QKR : KW, H, 0, 0, ROWS((fz ? QW : 0) + k0, kn));
    L->into_row0 = qn + kn;
    LOAD(&w->wv, vn_, fz ? QKR : KW, H, 0, 0, ROWS((fz ? QW + KW : 0) + k0, kn));
    L->into = NULL, L->again = 0;
    LOAD(&w->wo, "self_attn.o_proj.weight", H, QW, 0, 0, COLS(q0, qn));
    LOAD_IF(qkv_bias, &w->bq, "self_attn.q_proj.bias", 1, QW, COLS(q0, qn));
    LOAD_IF(qkv_bias, &w->bk, "self_attn.k_proj.bias", 1, KW, COLS(k0, kn));
    LOAD_IF(qkv_bias, &w->bv, "self_attn.v_proj.bias", 1, KW, COLS(k0, kn));
    LOAD_IF(o_bias && first, &w->bo, "self_attn.o_proj.bias", 1, H, WHOLE);
    L->plus_one = c->gemma != 0; /* Gemma's norms: (1 + w) */
    if (c->qk_norm) {
      LOAD(&w->q_norm, "self_attn.q_norm.weight", 1, hd, 1, 0, WHOLE);
      LOAD(&w->k_norm, "self_attn.k_norm.weight", 1, hd, 1, 0, WHOLE);
    }
    if (c->gemma) { /* Gemma: post_attention_layernorm is on the attention's output, then the MLP's two */
      LOAD(&w->post_attn_norm, "post_attention_layernorm.weight", 1, H, 1, 0, WHOLE);
      LOAD(&w->ffn_norm, "pre_feedforward_layernorm.weight", 1, H, 1, 0, WHOLE);
      LOAD(&w->post_ffn_norm, "post_feedforward_layernorm.weight", 1, H, 1, 0, WHOLE);
    } else {
      LOAD(&w->ffn_norm, "post_attention_layernorm.weight", 1, H, 1, 0, WHOLE);
    }
    L->plus_one = 0;
    const char *gn_ = fz ? "mlp.gate_up_proj.weight" : "mlp.gate_proj.weight", *un_ = fz ? gn_ : "mlp.up_proj.weight";
    if (fused_begin(L, &w->gu, l, gn_, 2 * (int64_t)tp->ni, H)) return -1;
    LOAD(&w->w_gate, gn_, fz ? 2 * I : I, H, 0, 0, ROWS(tp->i0, tp->ni));
    L->into_row0 = tp->ni, L->again = fz;
    LOAD(&w->w_up, un_, fz ? 2 * I : I, H, 0, 0, ROWS((fz ? I : 0) + tp->i0, tp->ni));
    L->into = NULL, L->again = 0;
    LOAD(&w->w_down, "mlp.down_proj.weight", H, I, 0, 0, COLS(tp->i0, tp->ni));
    LOAD_IF(mlp_bias, &w->b_gate, "mlp.gate_proj.bias", 1, I, COLS(tp->i0, tp->ni));
    LOAD_IF(mlp_bias, &w->b_up, "mlp.up_proj.bias", 1, I, COLS(tp->i0, tp->ni));
    LOAD_IF(mlp_bias && first, &w->b_down, "mlp.down_proj.bias", 1, H, WHOLE);
#undef LOAD
#undef LOAD_IF
  }
  L->plus_one = c->gemma != 0;
  if (load(L, &m->final_norm, nn, 1, H, 1, 0, WHOLE)) return -1;
  L->plus_one = 0;
  if (c->tie_word_embeddings && tp->nv == V) {
    m->lm_head = m->embed;
    m->lm_head.owned = 0;
  } else if (c->tie_word_embeddings) {
    /* a shard's vocabulary rows of the tied table (counted once, as the embedding) */
    L->again = 1;
    if (load(L, &m->lm_head, en, V, H, 0, 0, ROWS(tp->v0, tp->nv))) return -1;
    L->again = 0;
  } else if (load(L, &m->lm_head, m->head_name, V, H, 0, 0, ROWS(tp->v0, tp->nv))) {
    return -1;
  }
  return 0;
}

int ig_model_load(const char *dir, ig_backend *be, ig_model **out, char *err, size_t errlen) {
  return ig_model_load_part(dir, be, 0, 1, NULL, out, err, errlen);
}

int ig_model_load_part(const char *dir, ig_backend *be, int rank, int size, ig_comm *comm, ig_model **out, char *err,
                       size_t errlen) {
  *out = NULL;
  ig_model *m = calloc(1, sizeof *m);
  if (!m) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  m->be = be;
  m->rope_len = -1;
  m->pad_block = -1;
  char e2[512];
  if (ig_config_load(dir, &m->cfg, e2, sizeof e2)) {
    snprintf(err, errlen, "%s: %s", dir, e2);
    goto fail;
  }
  const ig_config *c = &m->cfg;
  if ((c->embed_mult != 1.0 || c->resid_mult != 1.0 || c->logits_scaling != 1.0) && !be->scale) {
    snprintf(err, errlen, "%s: %s needs the scale op, which this backend lacks", dir, c->arch);
    goto fail;
  }
  if (c->gemma && (!be->rope_select || !be->scale || !be->geglu)) {
    snprintf(err, errlen, "%s: %s needs rope_select, scale and geglu, which this backend lacks", dir, c->arch);
    goto fail;
  }
  if (c->final_softcap > 0 && !be->softcap) {
    snprintf(err, errlen, "%s: %s needs the softcap op, which this backend lacks", dir, c->arch);
    goto fail;
  }
  if (ig_tp_check(c, size, e2, sizeof e2)) {
    snprintf(err, errlen, "%s: %s", dir, e2);
    goto fail;
  }
  ig_tp_part(c, rank, size, &m->tp);
  m->tp.comm = size > 1 ? comm : NULL;
  if (ig_st_open(dir, &m->st, e2, sizeof e2)) {
    snprintf(err, errlen, "%s: %s", dir, e2);
    goto fail;
  }
  m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
  m->inv_freq = calloc((size_t)c->head_dim / 2, sizeof *m->inv_freq);
  if (!m->layers || !m->inv_freq) {
    snprintf(err, errlen, "out of memory");
    goto fail;
  }
  /* the text model's names (a multimodal checkpoint's vision tower and projector are not loaded, nor counted) */
  m->pfx = "model.", m->head_name = "lm_head.weight";
  if (!ig_st_find(m->st, "model.embed_tokens.weight")) {
    if (ig_st_find(m->st, "language_model.model.embed_tokens.weight"))
      m->pfx = "language_model.model.", m->head_name = "language_model.lm_head.weight";
    else if (ig_st_find(m->st, "model.language_model.embed_tokens.weight"))
      m->pfx = "model.language_model.";
  }
  loader L = {m, e2, sizeof e2, 0, 0, 0, NULL, 0, 0};
  for (int i = 0; i < ig_st_count(m->st); i++) {
    const ig_st_tensor *t = ig_st_at(m->st, i);
    size_t nl = strlen(t->name);
    int scale = (nl > 6 && !strcmp(t->name + nl - 6, "_scale")) || (nl > 10 && !strcmp(t->name + nl - 10, "_scale_inv"));
    if ((!strncmp(t->name, m->pfx, strlen(m->pfx)) || !strcmp(t->name, m->head_name)) && !scale) /* FP8 scales: read */
      L.total += t->nbytes;                                                                    /* with their weights */
  }
  if (load_weights(&L) || kv_scales_load(m, e2, sizeof e2)) {
    snprintf(err, errlen, "%s: %s", dir, e2);
    goto fail;
  }
  if (release_bufs(m)) {
    snprintf(err, errlen, "%s: loading weights: %s", dir, ig_backend_error(be));
    goto fail;
  }
  if (!c->tie_word_embeddings) m->info.n_params += 0; /* counted by load() */
  ig_model_info *in = &m->info;
  snprintf(in->arch, sizeof in->arch, "%s", c->arch);
  snprintf(in->model_type, sizeof in->model_type, "%s", c->model_type);
  in->rope_by_len = c->rope.kind == IG_ROPE_DYNAMIC || c->rope.kind == IG_ROPE_LONGROPE;
  /* Phi3's generate recomputes every key with the long factors once a sequence passes the original length (its
   * prepare_inputs_for_generation drops the cache there; io/config decides which architectures do) */
  in->rope_switch_len = c->rope.kind == IG_ROPE_LONGROPE && c->longrope_recompute ? c->rope.original_max_pos : 0;
  char etn[160];
  snprintf(etn, sizeof etn, "%sembed_tokens.weight", m->pfx);
  const ig_st_tensor *et = ig_st_find(m->st, etn);
  snprintf(in->dtype, sizeof in->dtype, "%s", et->dtype == IG_ST_BF16 || et->dtype == IG_ST_F8_E4M3 || et->dtype == IG_ST_F8_E5M2
                                                  ? "bfloat16" /* FP8: dequantized to it */
                                              : et->dtype == IG_ST_F16 ? "float16" : "float32");
  /* a device backend holds copies of every weight: the checkpoint's mappings (the whole file set, counted in the
   * process's RSS while mapped) are not read again. The page cache keeps the files for a quick restart. */
  if (be->weights_copied) {
    if (be->sync(be)) {
      snprintf(err, errlen, "%s: loading weights: %s", dir, ig_backend_error(be));
      goto fail;
    }
    size_t un = ig_st_unmap(m->st);
    if (rank == 0) ig_log(IG_LOG_INFO, "model: weights copied to the device; released the checkpoint's mappings (%.1f MiB)",
                          (double)un / 1048576.0);
  }
  in->vocab_size = c->vocab_size;
  in->hidden_size = c->hidden_size;
  in->intermediate_size = c->intermediate_size;
  in->n_layers = c->n_layers;
  in->n_heads = c->n_heads;
  in->n_kv_heads = c->n_kv_heads;
  in->head_dim = c->head_dim;
  in->max_position_embeddings = c->max_position_embeddings;
  in->sliding_window = c->sliding_window;
  in->bos_id = c->bos_id;
  in->n_eos = c->n_eos < IG_MAX_EOS ? c->n_eos : IG_MAX_EOS;
  memcpy(in->eos_ids, c->eos_ids, (size_t)in->n_eos * sizeof(int));
  if (rank == 0)
    ig_log(IG_LOG_INFO, "model: %s, %d layers, hidden %d, intermediate %d, heads %d/%d (head_dim %d), vocab %d, "
         "%.1fM params, %s (%.1f MiB)%s%s%s%s%s", in->arch, in->n_layers, in->hidden_size, in->intermediate_size,
         in->n_heads, in->n_kv_heads, in->head_dim, in->vocab_size, (double)in->n_params / 1e6, in->dtype,
         (double)in->weight_bytes / 1048576.0, c->tie_word_embeddings ? ", tied embeddings" : "",
         c->sliding_window ? ", sliding window" : "", c->quant_fp8 ? ", FP8 weights (" : "",
         c->quant_fp8 ? c->quant_method : "", c->quant_fp8 ? ") dequantized to bfloat16" : "");
  *out = m;
  return 0;
fail:
  ig_model_free(m);
  return -1;
}

/* ---------------------------------------------------------------------------------------------------- */
/* KV cache */

void ig_model_set_kv_dtype(ig_model *m, int kv_dtype) {
  if (kv_dtype != IG_KV_AUTO && m->kv_scales && m->kv_dtype != kv_dtype && m->tp.rank == 0)
    ig_log(IG_LOG_INFO, "model: the %s KV cache keeps K and V at the checkpoint's per-layer scales (k_scale, v_scale)",
           ig_kv_dtype_name(kv_dtype));
  m->kv_dtype = kv_dtype;
  if (m->group) ig_shard_set_kv_dtype(m->group, kv_dtype);
}

size_t ig_model_kv_bytes_per_block(ig_model *m, int block_size) {
  if (m->group) return ig_shard_kv_bytes_per_block(m->group, block_size);
  ig_kv_config kc = {m->cfg.n_layers, 1, block_size, m->tp.nkv, m->cfg.head_dim, m->kv_dtype, m->k_scale, m->v_scale};
  return m->be->kv_bytes_per_block(m->be, &kc);
}

int ig_model_kv_init(ig_model *m, int n_blocks, int block_size, char *err, size_t errlen) {
  if (m->group) return ig_shard_kv_init(m->group, n_blocks, block_size, err, errlen);
  /* with decode graphs, one block more than the caller's: where padding rows write their K/V (a backend without
   * graph ops pads too, which is how the CPU tests check the padding) */
  int graphs = m->n_graph_sizes > 0 && !m->tp.comm;
  ig_kv_config kc = {m->cfg.n_layers, n_blocks + graphs, block_size, m->tp.nkv, m->cfg.head_dim, m->kv_dtype,
                     m->k_scale, m->v_scale};
  if (m->be->kv_init(m->be, &kc)) {
    snprintf(err, errlen, "KV cache (%s): %s", ig_kv_dtype_name(m->kv_dtype), ig_backend_error(m->be));
    return -1;
  }
  m->pad_block = graphs ? n_blocks : -1;
  m->kv_block_size = block_size;
  m->kv_ready = 1;
  return 0;
}

void ig_model_set_graphs(ig_model *m, const int *sizes, int n) {
  if (m->group) return; /* shards run eagerly (their collectives are outside the backend's graphs) */
  int k = 0;
  for (int i = 0; i < n && k < (int)(sizeof m->graph_sizes / sizeof m->graph_sizes[0]); i++) {
    if (sizes[i] <= 0) continue;
    int j = k;
    while (j > 0 && m->graph_sizes[j - 1] > sizes[i]) j--;
    if (j > 0 && m->graph_sizes[j - 1] == sizes[i]) continue;
    memmove(m->graph_sizes + j + 1, m->graph_sizes + j, sizeof(int) * (size_t)(k - j));
    m->graph_sizes[j] = sizes[i];
    k++;
  }
  m->n_graph_sizes = k;
}

long long ig_model_graph_steps(const ig_model *m) { return m->graph_steps; }

int ig_model_can_sample(const ig_model *m) { return !m->group && m->be && m->be->sample; }

/* ---------------------------------------------------------------------------------------------------- */
/* forward */

static int ensure_acts(ig_model *m, int n, int n_out) {
  ig_backend *be = m->be;
  const ig_config *c = &m->cfg;
  ig_dtype dt = be->act_dtype;
  /* this shard's widths (the whole model's when not sharded) */
  int64_t H = c->hidden_size, I = m->tp.ni, QW = (int64_t)m->tp.nh * c->head_dim, KW = (int64_t)m->tp.nkv * c->head_dim,
          V = m->tp.nv;
  if (n > m->a.cap) {
    int cap = n > 2 * m->a.cap ? n : 2 * m->a.cap;
    int cap_out = m->a.cap_out;
    free_acts(m);
    m->a.cap_out = cap_out;
    m->a.cap = cap;
    /* a failed allocation frees what was made and leaves no capacity, so a later step allocates afresh instead
     * of running on missing buffers (the caller reports the error; the model stays usable) */
    if (be->alloc(be, &m->a.x, dt, cap, H) || be->alloc(be, &m->a.h, dt, cap, H) ||
        be->alloc(be, &m->a.q, dt, cap, QW) || be->alloc(be, &m->a.k, dt, cap, KW) ||
        be->alloc(be, &m->a.v, dt, cap, KW) || be->alloc(be, &m->a.att, dt, cap, QW) ||
        be->alloc(be, &m->a.o, dt, cap, H) || be->alloc(be, &m->a.gate, dt, cap, I) ||
        be->alloc(be, &m->a.up, dt, cap, I) ||
        (c->qk_norm && (be->alloc(be, &m->a.qn, dt, cap, QW) || be->alloc(be, &m->a.kn, dt, cap, KW))) ||
        (m->a.cap_out && (be->alloc(be, &m->a.xo, dt, m->a.cap_out, H) || be->alloc(be, &m->a.xon, dt, m->a.cap_out, H) ||
                          be->alloc(be, &m->a.logits, IG_DT_F32, m->a.cap_out, V)))) {
      free_acts_keep_err(m);
      return -1;
    }
  }
  if (n_out > m->a.cap_out) {
    /* captured graphs write the logits (and read xo/xon) where these were: drop them first. Missing this made
     * every step replayed after a wider step (a request with prompt logprobs, a larger batch) sample stale logits
     * (found on the H100 in the fourth session: the same greedy request gave three different texts in a row) */
    if (be->graph_reset) be->graph_reset(be);
    if (m->a.xo.data) be->free(be, &m->a.xo), be->free(be, &m->a.xon), be->free(be, &m->a.logits);
    int cap = n_out > 2 * m->a.cap_out ? n_out : 2 * m->a.cap_out;
    m->a.cap_out = cap;
    if (be->alloc(be, &m->a.xo, dt, cap, H) || be->alloc(be, &m->a.xon, dt, cap, H) ||
        be->alloc(be, &m->a.logits, IG_DT_F32, cap, V)) {
      free_acts_keep_err(m);
      return -1;
    }
  }
  return 0;
}

/* A view of the first n rows of t. */
static ig_tensor rows(const ig_tensor *t, int64_t n) {
  ig_tensor v = *t;
  v.rows = n;
  v.owned = 0;
  return v;
}

/* The same memory viewed as [numel / cols, cols] (q/k norm over each head). */
static ig_tensor as_heads(const ig_tensor *t, int64_t head_dim) {
  ig_tensor v = *t;
  v.rows = t->rows * t->cols / head_dim;
  v.cols = head_dim;
  v.owned = 0;
  return v;
}

static const ig_tensor *opt(const ig_tensor *t) { return t->data ? t : NULL; }

/* Tensor parallelism: x = the sum over shards of each shard's partial x (nothing when not sharded). */
static int tp_sum(ig_model *m, ig_tensor *x) { return m->tp.comm ? ig_comm_all_reduce(m->tp.comm, m->tp.rank, m->be, x) : 0; }

#define TRY(call)                                                                                                      \
  do {                                                                                                                 \
    if ((call)) goto backend_error;                                                                                    \
  } while (0)

/* Sets the backend's rotary frequencies for context length len (they change only under dynamic scaling or
 * longrope, see ig_rope_len_key). */
static int set_rope_for(ig_model *m, int len) {
  int key = ig_rope_len_key(&m->cfg, len);
  if (m->rope_len == key) return 0;
  float af;
  ig_rope_inv_freq(&m->cfg, key ? len : 1, m->inv_freq, &af);
  ig_rope r = {m->cfg.head_dim, m->cfg.rot_dim, m->inv_freq, af, 0};
  if (m->be->set_rope(m->be, &r)) return -1;
  if (m->cfg.gemma == 3) { /* table 1: the sliding layers' frequencies (static: the parser refuses length-dependent kinds) */
    ig_rope_inv_freq_with(&m->cfg, &m->cfg.rope_local, 1, m->inv_freq, &af);
    ig_rope rl = {m->cfg.head_dim, m->cfg.rot_dim, m->inv_freq, af, 1};
    if (m->be->set_rope(m->be, &rl)) return -1;
  }
  m->rope_len = key;
  return 0;
}

/* The ops of one step over n rows (logits for n_out of them into m->a.logits). */
static int run_ops(ig_model *m, int n, int n_out) {
  ig_backend *be = m->be;
  const ig_config *c = &m->cfg;
  const int hd = c->head_dim;
  ig_tensor x = rows(&m->a.x, n), h = rows(&m->a.h, n), q = rows(&m->a.q, n), k = rows(&m->a.k, n),
            v = rows(&m->a.v, n), att = rows(&m->a.att, n), o = rows(&m->a.o, n), gate = rows(&m->a.gate, n),
            up = rows(&m->a.up, n);

  // x: [n, H] = embed_tokens[tokens]   (Gemma: times sqrt(H))
  if (be->embed(be, &x, &m->embed)) return -1;
  if (c->gemma) TRY(be->scale(be, &x, (float)sqrt((double)c->hidden_size)));
  if (c->embed_mult != 1.0) TRY(be->scale(be, &x, (float)c->embed_mult)); /* Granite */
  /* Gemma's post-attention and post-feedforward norms folded into the norm after them (same bits) */
  const int post_fused = c->gemma && be->rmsnorm_post && c->resid_mult == 1.0;
  for (int l = 0; l < c->n_layers; l++) {
    const layer_weights *w = &m->layers[l];
    const int nh = m->tp.nh, nkv = m->tp.nkv; /* this shard's heads (all of them when not sharded) */
    ig_attn_params ap = {nh, nkv, hd, (float)(c->attn_scale > 0 ? c->attn_scale : pow(hd, -0.5)),
                         c->layer_sliding[l] ? c->sliding_window : 0, (float)c->attn_softcap};
    if (c->gemma == 3) TRY(be->rope_select(be, c->layer_sliding[l] ? 1 : 0)); /* Gemma3: local rope on sliding layers */

    // ---- attention block ----
    // (x += the previous layer's MLP output o, folded into this norm); h = rmsnorm(x) * w_attn_norm   h: [n, H]
    // (Gemma, where the backend has rmsnorm_post: o's own norm, post_feedforward_layernorm, folded in too)
    if (l && post_fused) TRY(be->rmsnorm_post(be, &h, &x, &o, &m->layers[l - 1].post_ffn_norm, &w->attn_norm, (float)c->rms_norm_eps));
    else TRY(be->rmsnorm(be, &h, &x, l ? &o : NULL, &w->attn_norm, (float)c->rms_norm_eps));
    ig_tensor *qr = &q, *kr = &k, qn, kn;
    int roped = 0; /* the q/k norms, rope and cache write done in one op */
    if (be->qkv_rope_kv_write && !c->qk_norm && !w->bq.data && !w->bk.data && !w->bv.data && c->gemma != 3) {
      // q = rope(h Wq^T); cache[l][slot] = rope(h Wk^T), h Wv^T: one op where the backend fuses them (k, v: scratch)
      const ig_tensor *ws[3] = {&w->wq, &w->wk, &w->wv};
      TRY(be->qkv_rope_kv_write(be, &q, &k, &v, &h, ws, nh, nkv, l));
    } else {
      // q = h Wq^T (+bq), k = h Wk^T (+bk), v = h Wv^T (+bv)  q: [n, nh*hd], k, v: [n, nkv*hd]
      if (be->matmul_n) { /* one pass over h where the backend can */
        ig_tensor *outs[3] = {&q, &k, &v};
        const ig_tensor *ws[3] = {&w->wq, &w->wk, &w->wv}, *bs[3] = {opt(&w->bq), opt(&w->bk), opt(&w->bv)};
        TRY(be->matmul_n(be, 3, outs, &h, ws, bs));
      } else {
        TRY(be->matmul(be, &q, &h, &w->wq, opt(&w->bq)));
        TRY(be->matmul(be, &k, &h, &w->wk, opt(&w->bk)));
        TRY(be->matmul(be, &v, &h, &w->wv, opt(&w->bv)));
      }
      if (c->qk_norm && be->qk_norm_rope_kv_write) {
        // Qwen3, Gemma3: q, k = rmsnorm over each head, then rope and the cache write, in one op
        qn = rows(&m->a.qn, n), kn = rows(&m->a.kn, n);
        TRY(be->qk_norm_rope_kv_write(be, &qn, &kn, &q, &k, &v, &w->q_norm, &w->k_norm, (float)c->rms_norm_eps, nh, nkv, l));
        qr = &qn, kr = &kn, roped = 1;
      } else if (c->qk_norm) {
        // Qwen3: q, k = rmsnorm over each head                [n*nh, hd], [n*nkv, hd]
        qn = rows(&m->a.qn, n), kn = rows(&m->a.kn, n);
        ig_tensor qh = as_heads(&q, hd), kh = as_heads(&k, hd), qnh = as_heads(&qn, hd), knh = as_heads(&kn, hd);
        TRY(be->rmsnorm(be, &qnh, &qh, NULL, &w->q_norm, (float)c->rms_norm_eps));
        TRY(be->rmsnorm(be, &knh, &kh, NULL, &w->k_norm, (float)c->rms_norm_eps));
        qr = &qn, kr = &kn;
      }
      // q, k = rope(q, k) at each row's position; cache[l][slot] = k, v (one op where the backend fuses them)
      if (roped) {
      } else if (be->rope_kv_write) {
        TRY(be->rope_kv_write(be, qr, kr, &v, nh, nkv, l));
      } else {
        TRY(be->rope(be, qr, kr, nh, nkv));
        TRY(be->kv_write(be, l, kr, &v));
      }
    }
    // att = softmax(q k^T / sqrt(hd) + causal/window mask) v   att: [n, nh*hd]
    // (Gemma2: the scaled scores s capped first, s = cap * tanh(s / cap))
    TRY(be->attention(be, &att, qr, l, &ap));
    // o = att Wo^T                                      o: [n, H]
    TRY(be->matmul(be, &o, &att, &w->wo, opt(&w->bo)));
    // (sharded: o = sum over shards of their heads' share of the projection)
    TRY(tp_sum(m, &o));
    if (c->gemma && !post_fused) TRY(be->rmsnorm(be, &o, &o, NULL, &w->post_attn_norm, (float)c->rms_norm_eps)); // o = norm(o)
    if (c->resid_mult != 1.0) TRY(be->scale(be, &o, (float)c->resid_mult)); // Granite: o *= residual_multiplier

    // ---- MLP block ----
    // x = x + o; h = rmsnorm(x) * w_ffn_norm   (Gemma: o = norm(o) first, folded in where the backend can)
    if (post_fused) TRY(be->rmsnorm_post(be, &h, &x, &o, &w->post_attn_norm, &w->ffn_norm, (float)c->rms_norm_eps));
    else TRY(be->rmsnorm(be, &h, &x, &o, &w->ffn_norm, (float)c->rms_norm_eps));
    // gate = h Wg^T, up = h Wu^T                        [n, I]
    // gate = silu(gate) * up (fused where the backend can); o = gate Wd^T             o: [n, H]
    if (c->gemma && be->matmul_geglu) { // gate = gelu_tanh(gate) * up
      TRY(be->matmul_geglu(be, &gate, &up, &h, &w->w_gate, opt(&w->b_gate), &w->w_up, opt(&w->b_up)));
    } else if (c->gemma) {
      TRY(be->matmul(be, &gate, &h, &w->w_gate, opt(&w->b_gate)));
      TRY(be->matmul(be, &up, &h, &w->w_up, opt(&w->b_up)));
      TRY(be->geglu(be, &gate, &gate, &up));
    } else if (be->matmul_swiglu) {
      TRY(be->matmul_swiglu(be, &gate, &up, &h, &w->w_gate, opt(&w->b_gate), &w->w_up, opt(&w->b_up)));
    } else {
      TRY(be->matmul(be, &gate, &h, &w->w_gate, opt(&w->b_gate)));
      TRY(be->matmul(be, &up, &h, &w->w_up, opt(&w->b_up)));
      TRY(be->swiglu(be, &gate, &gate, &up));
    }
    TRY(be->matmul(be, &o, &gate, &w->w_down, opt(&w->b_down)));
    TRY(tp_sum(m, &o)); // (sharded: sum over shards of their intermediate columns' share)
    if (c->gemma && (!post_fused || l == c->n_layers - 1)) TRY(be->rmsnorm(be, &o, &o, NULL, &w->post_ffn_norm, (float)c->rms_norm_eps));
    if (c->resid_mult != 1.0) TRY(be->scale(be, &o, (float)c->resid_mult));
    // x = x + o: in the next layer's first norm, or here after the last layer
    if (l == c->n_layers - 1) TRY(be->add(be, &x, &o));
  }
  if (n_out == 0) return 0;
  // logits only for the rows asked for: xo = x[out_rows]; logits = rmsnorm(xo) lm_head^T   [n_out, V]
  // (sharded: this shard's vocabulary rows only, [n_out, tp.nv]; model/shard.c puts the columns together)
  ig_tensor xo = rows(&m->a.xo, n_out), xon = rows(&m->a.xon, n_out), lg = rows(&m->a.logits, n_out);
  TRY(be->gather_rows(be, &xo, &x));
  TRY(be->rmsnorm(be, &xon, &xo, NULL, &m->final_norm, (float)c->rms_norm_eps));
  TRY(be->matmul(be, &lg, &xon, &m->lm_head, NULL));
  if (c->logits_scaling != 1.0) TRY(be->scale(be, &lg, (float)(1.0 / c->logits_scaling))); // Granite: logits / s
  if (c->final_softcap > 0) TRY(be->softcap(be, &lg, (float)c->final_softcap)); // Gemma2: cap * tanh(logits / cap)
  return 0;
backend_error:
  return -1;
}

static int64_t next_pow2(int64_t v) {
  int64_t p = 1;
  while (p < v) p *= 2;
  return p;
}

/* A decode-only batch (every sequence one row, every row's logits wanted, in order) that a graph bucket holds:
 * padded up to the bucket with one-token sequences on the padding block, its block table widened to a power of
 * two, into m->pb. Returns the graph key (0: run eagerly, b untouched). */
static uint64_t pad_for_graph(ig_model *m, const ig_batch *b, ig_batch *pb) {
  if (m->pad_block < 0) return 0;
  int n = b->n_tokens;
  if (b->n_seqs != n || b->n_out != n) return 0;
  for (int i = 0; i < n; i++)
    if (b->seq_start[i] != i || b->out_rows[i] != i) return 0;
  int np = 0;
  for (int i = 0; i < m->n_graph_sizes && !np; i++)
    if (m->graph_sizes[i] >= n) np = m->graph_sizes[i];
  if (!np) return 0;
  int64_t mb = next_pow2(b->max_blocks > 0 ? b->max_blocks : 1);
  if (mb > INT32_MAX / 4 || (int64_t)np * mb > INT32_MAX / 2) return 0;
  size_t need = (size_t)np * 6 + 1 + (size_t)np * (size_t)mb;
  if (need > m->pb_cap) {
    int32_t *q = realloc(m->pb, need * sizeof(int32_t));
    if (!q) return 0; /* out of memory: eager is still right */
    m->pb = q;
    m->pb_cap = need;
  }
  int32_t *tok = m->pb, *pos = tok + np, *slot = pos + np, *ss = slot + np, *ctx = ss + np + 1, *out = ctx + np,
          *tab = out + np;
  const int bs = m->kv_block_size;
  for (int i = 0; i < np; i++) {
    int real = i < n;
    tok[i] = real ? b->tokens[i] : 0;
    pos[i] = real ? b->pos[i] : 0;
    slot[i] = real ? b->slot[i] : m->pad_block * bs;
    ss[i] = i;
    ctx[i] = real ? b->ctx_len[i] : 1;
    out[i] = i;
    int32_t *row = tab + (size_t)i * mb;
    for (int64_t k = 0; k < mb; k++)
      row[k] = real ? (k < b->max_blocks ? b->block_table[(size_t)i * b->max_blocks + k] : 0) : (k ? 0 : m->pad_block);
  }
  ss[np] = np;
  *pb = (ig_batch){np, tok, pos, slot, np, ss, ctx, (int)mb, tab, np, out, NULL};
  return (uint64_t)np << 32 | (uint64_t)mb;
}

int ig_model_warmup(ig_model *m, int max_rows, int max_ctx, int chunk, int force, char *err, size_t errlen) {
  if (m->group || m->pad_block < 0 || !m->kv_ready || m->n_graph_sizes == 0) return 0;
  if (!force && !m->be->graph_begin) return 0;
  const int bs = m->kv_block_size;
  if (max_ctx < 1) max_ctx = 1;
  if (chunk > max_ctx) chunk = max_ctx;
  int maxw = 1, widest = (max_ctx + bs - 1) / bs;
  while (maxw < widest && maxw < (1 << 20)) maxw *= 2;
  int rows = chunk > m->graph_sizes[m->n_graph_sizes - 1] ? chunk : m->graph_sizes[m->n_graph_sizes - 1];
  /* one allocation for every batch: tokens, pos, slot, seq_start, ctx_len, out_rows, table; sampling rows */
  size_t tab = (size_t)m->graph_sizes[m->n_graph_sizes - 1] * (size_t)maxw;
  size_t ctab = ((size_t)chunk + bs - 1) / bs;
  if (tab < ctab) tab = ctab;
  int32_t *buf = malloc(sizeof(int32_t) * ((size_t)rows * 6 + 1 + tab));
  ig_sample_row *sr = calloc((size_t)rows, sizeof *sr);
  ig_sample_out *so = calloc((size_t)rows, sizeof *so);
  int steps = 0, rc = 0;
  if (!buf || !sr || !so) {
    snprintf(err, errlen, "warm-up: out of memory");
    rc = -1;
  }
  int32_t *tok = buf, *pos = tok + rows, *slot = pos + rows, *ss = slot + rows, *ctx = ss + rows + 1, *out = ctx + rows,
          *tb = out + rows;
  for (size_t i = 0; rc == 0 && i < tab; i++) tb[i] = m->pad_block;
  for (int i = 0; rc == 0 && i < rows; i++) {
    tok[i] = 0, ss[i] = i, ctx[i] = 1, out[i] = i;
    sr[i] = (ig_sample_row){.row = i, .temperature = 1, .top_p = 1, .typical_p = 1, .repetition_penalty = 1};
  }
  float *lg = NULL;
  int sample = ig_model_can_sample(m);
  if (rc == 0 && !sample && !(lg = malloc(sizeof(float) * (size_t)m->info.vocab_size * (size_t)rows))) {
    snprintf(err, errlen, "warm-up: out of memory");
    rc = -1;
  }
  /* a prompt chunk: one sequence of `chunk` tokens, its last row's logits */
  if (rc == 0 && chunk > 0) {
    for (int p = 0; p < chunk; p++) pos[p] = p, slot[p] = m->pad_block * bs + p % bs;
    int32_t s2[2] = {0, chunk}, c1 = chunk, o1 = chunk - 1;
    ig_batch b = {chunk, tok, pos, slot, 1, s2, &c1, (int)ctab, tb, 1, &o1, NULL};
    rc = sample ? ig_model_forward_sample(m, &b, sr, 1, so, NULL, 0, NULL, err, errlen) : ig_model_forward(m, &b, lg, err, errlen);
    steps++;
  }
  /* decode steps: every graph size and table width, twice (the first runs eagerly, the second is captured) */
  for (int i = 0; rc == 0 && i < rows; i++) pos[i] = 0, slot[i] = m->pad_block * bs;
  for (int gi = 0; rc == 0 && gi < m->n_graph_sizes; gi++) {
    int n = m->graph_sizes[gi];
    if (gi > 0 && m->graph_sizes[gi - 1] >= max_rows) break; /* the smallest size that holds max_rows is the last */
    for (int i = 0; i <= n; i++) ss[i] = i;
    for (int w = 1; rc == 0 && w <= maxw; w *= 2)
      for (int rep = 0; rc == 0 && rep < 2; rep++) {
        ig_batch b = {n, tok, pos, slot, n, ss, ctx, w, tb, n, out, NULL};
        rc = sample ? ig_model_forward_sample(m, &b, sr, n, so, NULL, 0, NULL, err, errlen) : ig_model_forward(m, &b, lg, err, errlen);
        steps++;
      }
  }
  free(lg);
  free(buf);
  free(sr);
  free(so);
  return rc ? -1 : steps;
}

int ig_model_reserve(ig_model *m, int n_tokens, int n_out, char *err, size_t errlen) {
  if (m->group || n_tokens <= 0) return 0;
  if (ensure_acts(m, n_tokens, n_out < 0 ? 0 : n_out)) {
    snprintf(err, errlen, "activations for steps of %d tokens: %s", n_tokens, ig_backend_error(m->be));
    return -1;
  }
  return 0;
}

/* One step; logits != NULL: downloaded for the out_rows, else left in m->a.logits. */
static int forward_batch(ig_model *m, const ig_batch *b, float *logits, char *err, size_t errlen) {
  ig_backend *be = m->be;
  int rope_len = 0;
  for (int s = 0; s < b->n_seqs; s++) { /* every one of the same rope key (split above) */
    int l = b->rope_len ? b->rope_len[s] : b->ctx_len[s];
    if (l > rope_len) rope_len = l;
  }
  ig_batch pb;
  uint64_t key = pad_for_graph(m, b, &pb);
  const ig_batch *rb = key ? &pb : b;
  if (ensure_acts(m, rb->n_tokens, rb->n_out)) {
    snprintf(err, errlen, "activations: %s", ig_backend_error(be));
    return -1;
  }
  TRY(be->set_batch(be, rb));
  TRY(set_rope_for(m, rope_len));
  int replayed = 0;
  if (key) m->graph_steps++;
  if (!be->graph_begin) key = 0; /* padded all the same */
  if (key) {
    int g = be->graph_begin(be, key);
    if (g < 0) goto backend_error;
    replayed = g == 1;
  }
  if (!replayed && run_ops(m, rb->n_tokens, rb->n_out)) {
    if (key && be->graph_reset) be->graph_reset(be); /* ends a capture the failure left open */
    goto backend_error;
  }
  if (key) TRY(be->graph_end(be));
  if (logits && b->n_out) {
    ig_tensor lg = rows(&m->a.logits, b->n_out);
    TRY(be->download_f32(be, &lg, logits));
  }
  return 0;
backend_error:
  snprintf(err, errlen, "forward: %s", ig_backend_error(be));
  return -1;
}

/* After a forward of the out_rows [j0, j1) (their logits in m->a.logits rows 0..j1-j0): samples the rows[] that
 * fall in that range and downloads the host_rows[] that do. async (the whole batch at once only): the sample
 * results may stay in flight (m->sample_pending; ig_model_forward_sample_end collects them). */
static int finish_rows(ig_model *m, int j0, int j1, const ig_sample_row *rows_in, int n_rows, ig_sample_out *out,
                       const int32_t *host_rows, int n_host, float *host_logits, int async, char *err,
                       size_t errlen) {
  ig_backend *be = m->be;
  const int64_t V = m->tp.nv;
  ig_tensor lg = rows(&m->a.logits, j1 - j0);
  int cnt = 0;
  for (int i = 0; i < n_rows; i++) cnt += rows_in[i].row >= j0 && rows_in[i].row < j1;
  if (cnt && j0 == 0 && cnt == n_rows) {
    TRY(be->sample(be, &lg, rows_in, n_rows, out));
    if (async && be->sample_wait) m->sample_pending = 1;
    else if (be->sample_wait) TRY(be->sample_wait(be));
  } else if (cnt) {
    ig_sample_row *sr = malloc(sizeof *sr * (size_t)cnt);
    ig_sample_out *so = malloc(sizeof *so * (size_t)cnt);
    int k = 0, rc = 0;
    if (sr && so) {
      for (int i = 0; i < n_rows; i++)
        if (rows_in[i].row >= j0 && rows_in[i].row < j1) sr[k] = rows_in[i], sr[k++].row -= j0;
      rc = be->sample(be, &lg, sr, cnt, so);
      if (!rc && be->sample_wait) rc = be->sample_wait(be); /* so[] is read (and freed) below */
      for (int i = 0, t = 0; !rc && i < n_rows; i++)
        if (rows_in[i].row >= j0 && rows_in[i].row < j1) out[i] = so[t++];
    }
    free(sr);
    free(so);
    if (!sr || !so) {
      snprintf(err, errlen, "out of memory");
      return -1;
    }
    if (rc) goto backend_error;
  }
  for (int k = 0; k < n_host;) {
    int r0 = host_rows[k], len = 1;
    if (r0 < j0 || r0 >= j1) {
      k++;
      continue;
    }
    while (k + len < n_host && host_rows[k + len] == r0 + len && r0 + len < j1) len++;
    ig_tensor v = rows(&m->a.logits, len);
    v.data = (char *)v.data + (size_t)(r0 - j0) * (size_t)V * ig_dtype_size(v.dtype);
    TRY(be->download_f32(be, &v, host_logits + (size_t)k * (size_t)V));
    k += len;
  }
  return 0;
backend_error:
  snprintf(err, errlen, "sampling: %s", ig_backend_error(be));
  return -1;
}

/* Both entry points: logits != NULL downloads every out_row (ig_model_forward); else rows are sampled on the
 * backend and host_rows downloaded (ig_model_forward_sample; async: see finish_rows).
 * When its sequences need different rotary frequencies (dynamic scaling past the trained length, longrope with
 * some sequences past the original length and some not), the batch runs one sequence at a time (ops are
 * row-independent, so the result is the same). */
static int forward_any(ig_model *m, const ig_batch *b, float *logits, const ig_sample_row *srows, int n_rows,
                       ig_sample_out *out, const int32_t *host_rows, int n_host, float *host_logits, int async,
                       char *err, size_t errlen) {
  if (!m->kv_ready) {
    snprintf(err, errlen, "forward: the KV cache is not allocated (ig_model_kv_init)");
    return -1;
  }
  if (b->n_tokens <= 0 || b->n_seqs <= 0 || b->n_out < 0) {
    snprintf(err, errlen, "forward: empty batch");
    return -1;
  }
  const int32_t *rl = b->rope_len ? b->rope_len : b->ctx_len;
  int split = 0, key0 = ig_rope_len_key(&m->cfg, rl[0]);
  for (int s = 1; s < b->n_seqs; s++) split |= ig_rope_len_key(&m->cfg, rl[s]) != key0;
  if (!split) {
    if (forward_batch(m, b, logits, err, errlen)) return -1;
    return logits ? 0
                  : finish_rows(m, 0, b->n_out, srows, n_rows, out, host_rows, n_host, host_logits, async, err, errlen);
  }
  int j = 0;
  for (int s = 0; s < b->n_seqs; s++) {
    int a = b->seq_start[s], e = b->seq_start[s + 1], j0 = j;
    while (j < b->n_out && b->out_rows[j] < e) j++;
    int32_t ss[2] = {0, e - a}, *outr = malloc(sizeof(int32_t) * (size_t)(j - j0 + 1));
    if (!outr) {
      snprintf(err, errlen, "out of memory");
      return -1;
    }
    for (int t = j0; t < j; t++) outr[t - j0] = b->out_rows[t] - a;
    ig_batch sb = {e - a, b->tokens + a, b->pos + a, b->slot + a, 1, ss, b->ctx_len + s, b->max_blocks,
                   b->block_table + (size_t)s * b->max_blocks, j - j0, outr, b->rope_len ? b->rope_len + s : NULL};
    int rc = e > a ? forward_batch(m, &sb, logits ? logits + (size_t)j0 * m->tp.nv : NULL, err, errlen) : 0;
    free(outr);
    if (!rc && e > a && !logits)
      rc = finish_rows(m, j0, j, srows, n_rows, out, host_rows, n_host, host_logits, 0, err, errlen);
    if (rc) return rc;
  }
  return 0;
}

int ig_model_forward(ig_model *m, const ig_batch *b, float *logits, char *err, size_t errlen) {
  if (m->group) return ig_shard_forward(m->group, b, logits, err, errlen);
  return forward_any(m, b, logits, NULL, 0, NULL, NULL, 0, NULL, 0, err, errlen);
}

int ig_model_sample_async(const ig_model *m) { return ig_model_can_sample(m) && m->be->sample_wait; }

int ig_model_forward_sample_end(ig_model *m, char *err, size_t errlen) {
  if (!m->sample_pending) return 0;
  m->sample_pending = 0;
  if (m->be->sample_wait(m->be)) {
    snprintf(err, errlen, "sampling: %s", ig_backend_error(m->be));
    return -1;
  }
  return 0;
}

int ig_model_forward_sample_begin(ig_model *m, const ig_batch *b, const ig_sample_row *rows, int n_rows,
                                  ig_sample_out *out, const int32_t *host_rows, int n_host, float *host_logits,
                                  char *err, size_t errlen) {
  if (!ig_model_can_sample(m)) {
    snprintf(err, errlen, "forward: this backend does not sample on the device");
    return -1;
  }
  if (m->sample_pending && ig_model_forward_sample_end(m, err, errlen)) return -1; /* a step left unfinished */
  for (int i = 0; i < n_rows; i++)
    if (rows[i].row < 0 || rows[i].row >= b->n_out) {
      snprintf(err, errlen, "forward: sample row %d out of range (%d logits rows)", rows[i].row, b->n_out);
      return -1;
    }
  for (int k = 0; k < n_host; k++)
    if (host_rows[k] < 0 || host_rows[k] >= b->n_out || (k && host_rows[k] <= host_rows[k - 1])) {
      snprintf(err, errlen, "forward: host row %d out of range or out of order", host_rows[k]);
      return -1;
    }
  int rc = forward_any(m, b, NULL, rows, n_rows, out, host_rows, n_host, host_logits, 1, err, errlen);
  if (rc && m->sample_pending) { /* failed after the sampling was launched: nothing stays in flight */
    m->sample_pending = 0;
    (void)m->be->sample_wait(m->be);
  }
  return rc;
}

int ig_model_forward_sample(ig_model *m, const ig_batch *b, const ig_sample_row *rows, int n_rows, ig_sample_out *out,
                            const int32_t *host_rows, int n_host, float *host_logits, char *err, size_t errlen) {
  int rc = ig_model_forward_sample_begin(m, b, rows, n_rows, out, host_rows, n_host, host_logits, err, errlen);
  return rc ? rc : ig_model_forward_sample_end(m, err, errlen);
}
