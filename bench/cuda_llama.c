/* bench/cuda_llama.c: a Llama forward written straight against backend.h (independent of src/model) to check
 * and time the CUDA backend on real checkpoints: greedy generation (stories260K vs expected.json), logits at
 * chosen positions of a teacher-forced sequence (vs transformers), and batch-1 decode / prefill timings.
 *   cuda_llama greedy DIR IDS N [--f32|--cpu]      prints the N greedy continuation ids of IDS (1,2,3)
 *   cuda_llama logits DIR L:IDS.bin:OUT.bin ... [--chunk C]  per spec: prefill the first L ids (chunks of
 *                                                  C), decode the rest teacher-forced (graphs); writes f32
 *                                                  logits at positions 0, L/2, L-1, L, L+31, L+127, L+255
 *   cuda_llama bench DIR [--ctx 512] [--steps 64]  load time, decode ms/token (eager, graphs), prefill 2048
 *   cuda_llama gemm [m,m,...]                      decode-shape products per backend variant (see gemm_bench)
 * --model: load and run through src/model (ig_model_load / ig_model_forward) instead of the forward here; then
 * --kv-dtype fp8_e4m3fn|fp8_e5m2 stores the KV cache in that format. */
#include "backend/backend.h"
#include "io/config.h"
#include "io/safetensors.h"
#ifdef IG_HAVE_MODEL
#include "model/model.h"
static ig_model *gm; /* --model: run src/model's forward (ig_model_forward) instead of the one here */
#endif
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int gm_wanted;
static int g_kvdt; /* --kv-dtype (with --model) */
static int skip_attn; /* bench only: time a step without the attention op */
static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}
#define DIE(...) (fprintf(stderr, __VA_ARGS__), fputc('\n', stderr), exit(1))
#define OK(be, call) \
  do { if ((call) != 0) DIE("%s:%d: %s: %s", __FILE__, __LINE__, #call, (be)->err); } while (0)

/* ---- model ------------------------------------------------------------------------------------------ */
typedef struct layer {
  ig_tensor in_norm, q, k, v, o, post_norm, gate, up, down;
} layer;
typedef struct model {
  ig_config cfg;
  ig_st_model *st;
  ig_backend *be;
  ig_tensor embed, norm, lm_head;
  layer *L;
  int hd, max_tokens, bs, n_blocks, max_blocks;
  /* activations, allocated for max_tokens rows; steps use views of n rows */
  ig_tensor x, xn, q, k, v, att, tmp, g, u, sel, logits;
  float *inv_freq;
} model;

static ig_dtype dt_of(ig_st_dtype d) {
  return d == IG_ST_F32 ? IG_DT_F32 : d == IG_ST_F16 ? IG_DT_F16 : IG_DT_BF16;
}
static void load_w(model *m, ig_tensor *t, const char *name) {
  const ig_st_tensor *s = ig_st_find(m->st, name);
  if (!s) DIE("missing tensor %s", name);
  if (s->dtype != IG_ST_F32 && s->dtype != IG_ST_F16 && s->dtype != IG_ST_BF16) DIE("%s: dtype %s", name, s->dtype_name);
  int64_t rows = s->shape[0], cols = s->n_dims > 1 ? s->shape[1] : 1;
  if (s->n_dims == 1) rows = 1, cols = s->shape[0];
  OK(m->be, m->be->weight(m->be, t, s->data, dt_of(s->dtype), rows, cols));
}

static double model_load(model *m, const char *dir, ig_backend *be, int max_tokens, int max_ctx) {
  char err[512];
  memset(m, 0, sizeof *m);
  m->be = be;
  double t0 = now();
  if (ig_config_load(dir, &m->cfg, err, sizeof err)) DIE("%s", err);
  if (ig_st_open(dir, &m->st, err, sizeof err)) DIE("%s", err);
  ig_config *c = &m->cfg;
  m->hd = c->head_dim;
#ifdef IG_HAVE_MODEL
  if (gm_wanted) {
    if (ig_model_load(dir, be, &gm, err, sizeof err)) DIE("%s", err);
    ig_model_set_kv_dtype(gm, g_kvdt);
    OK(be, be->sync(be));
    double tl = now() - t0;
    m->bs = 16;
    m->max_blocks = (max_ctx + m->bs - 1) / m->bs;
    if (ig_model_kv_init(gm, m->max_blocks + 1, m->bs, err, sizeof err)) DIE("%s", err);
    return tl;
  }
#endif
  m->L = calloc(c->n_layers, sizeof(layer));
  char nm[256];
  load_w(m, &m->embed, "model.embed_tokens.weight");
  for (int l = 0; l < c->n_layers; l++) {
    layer *y = &m->L[l];
#define LW(f, s) snprintf(nm, sizeof nm, "model.layers.%d.%s.weight", l, s), load_w(m, &y->f, nm)
    LW(in_norm, "input_layernorm");
    LW(q, "self_attn.q_proj");
    LW(k, "self_attn.k_proj");
    LW(v, "self_attn.v_proj");
    LW(o, "self_attn.o_proj");
    LW(post_norm, "post_attention_layernorm");
    LW(gate, "mlp.gate_proj");
    LW(up, "mlp.up_proj");
    LW(down, "mlp.down_proj");
#undef LW
  }
  load_w(m, &m->norm, "model.norm.weight");
  if (ig_st_find(m->st, "lm_head.weight")) load_w(m, &m->lm_head, "lm_head.weight");
  else m->lm_head = m->embed, m->lm_head.owned = 0;
  OK(be, be->sync(be));
  double t_load = now() - t0;
  /* rope: default or linear scaling only (what the checks here use), computed in f32 as transformers does */
  if (c->rope.kind != IG_ROPE_DEFAULT && c->rope.kind != IG_ROPE_LINEAR) DIE("bench: rope kind %d not handled here", c->rope.kind);
  m->inv_freq = malloc(sizeof(float) * m->hd / 2);
  for (int j = 0; j < m->hd / 2; j++) {
    float e = (float)(2 * j) / (float)m->hd;
    m->inv_freq[j] = 1.0f / powf((float)c->rope.theta, e);
    if (c->rope.kind == IG_ROPE_LINEAR) m->inv_freq[j] /= (float)c->rope.factor;
  }
  ig_rope r = {.head_dim = m->hd, .rot_dim = m->hd, .inv_freq = m->inv_freq, .attn_factor = 1.f};
  OK(be, be->set_rope(be, &r));
  m->bs = 16;
  m->max_blocks = (max_ctx + m->bs - 1) / m->bs;
  m->n_blocks = m->max_blocks + 1;
  ig_kv_config kc = {.n_layers = c->n_layers, .n_blocks = m->n_blocks, .block_size = m->bs, .n_kv_heads = c->n_kv_heads, .head_dim = m->hd};
  OK(be, be->kv_init(be, &kc));
  m->max_tokens = max_tokens;
  int H = c->hidden_size, I = c->intermediate_size, QW = c->n_heads * m->hd, KW = c->n_kv_heads * m->hd;
  ig_dtype a = be->act_dtype;
  OK(be, be->alloc(be, &m->x, a, max_tokens, H));
  OK(be, be->alloc(be, &m->xn, a, max_tokens, H));
  OK(be, be->alloc(be, &m->q, a, max_tokens, QW));
  OK(be, be->alloc(be, &m->k, a, max_tokens, KW));
  OK(be, be->alloc(be, &m->v, a, max_tokens, KW));
  OK(be, be->alloc(be, &m->att, a, max_tokens, QW));
  OK(be, be->alloc(be, &m->tmp, a, max_tokens, H));
  OK(be, be->alloc(be, &m->g, a, max_tokens, I));
  OK(be, be->alloc(be, &m->u, a, max_tokens, I));
  OK(be, be->alloc(be, &m->sel, a, 8, H));
  OK(be, be->alloc(be, &m->logits, IG_DT_F32, 8, c->vocab_size));
  return t_load;
}

static ig_tensor view(const ig_tensor *t, int rows) {
  ig_tensor v = *t;
  v.rows = rows, v.owned = 0;
  return v;
}

/* One step over one sequence: rows at positions ctx-n .. ctx-1, logits for out_rows (<= 8). graph_key != 0
 * brackets the ops with graph_begin/end. */
static void forward(model *m, const int32_t *ids, int n, int ctx, const int32_t *out_rows, int n_out, float *logits,
                    uint64_t graph_key) {
  ig_backend *be = m->be;
  ig_config *c = &m->cfg;
  int32_t *pos = malloc(n * 4), *slot = malloc(n * 4), *bt = malloc(m->max_blocks * 4);
  for (int b = 0; b < m->max_blocks; b++) bt[b] = m->max_blocks - 1 - b; /* not the identity: exercise the table */
  for (int i = 0; i < n; i++) {
    pos[i] = ctx - n + i;
    slot[i] = bt[pos[i] / m->bs] * m->bs + pos[i] % m->bs;
  }
  int32_t ss[2] = {0, n}, cl[1] = {ctx};
  ig_batch b = {.n_tokens = n, .tokens = ids, .pos = pos, .slot = slot, .n_seqs = 1, .seq_start = ss, .ctx_len = cl,
                .max_blocks = m->max_blocks, .block_table = bt, .n_out = n_out, .out_rows = out_rows};
#ifdef IG_HAVE_MODEL
  if (gm) {
    char err[512];
    static float *tmp;
    static size_t tmp_n;
    size_t need = (size_t)n_out * c->vocab_size;
    if (!logits && need > tmp_n) tmp = realloc(tmp, need * 4), tmp_n = need;
    if (ig_model_forward(gm, &b, logits ? logits : tmp, err, sizeof err)) DIE("ig_model_forward: %s", err);
    free(pos), free(slot), free(bt);
    return;
  }
#endif
  OK(be, be->set_batch(be, &b));
  int skip = 0;
  if (graph_key && be->graph_begin) {
    int g = be->graph_begin(be, graph_key);
    if (g < 0) DIE("graph_begin: %s", be->err);
    skip = g == 1;
  }
  if (!skip) {
    ig_tensor x = view(&m->x, n), xn = view(&m->xn, n), q = view(&m->q, n), k = view(&m->k, n), v = view(&m->v, n);
    ig_tensor att = view(&m->att, n), tmp = view(&m->tmp, n), g = view(&m->g, n), u = view(&m->u, n);
    ig_tensor sel = view(&m->sel, n_out), lg = view(&m->logits, n_out);
    ig_attn_params ap = {.n_heads = c->n_heads, .n_kv_heads = c->n_kv_heads, .head_dim = m->hd,
                         .scale = 1.f / sqrtf((float)m->hd), .sliding_window = 0};
    float eps = (float)c->rms_norm_eps;
    OK(be, be->embed(be, &x, &m->embed));                              // x: [n, H]
    for (int l = 0; l < c->n_layers; l++) {
      layer *y = &m->L[l];
      OK(be, be->rmsnorm(be, &xn, &x, l ? &tmp : NULL, &y->in_norm, eps)); // x += mlp out; xn = norm(x)
      OK(be, be->matmul(be, &q, &xn, &y->q, NULL));                    // q: [n, nh*hd]
      OK(be, be->matmul(be, &k, &xn, &y->k, NULL));                    // k, v: [n, nkv*hd]
      OK(be, be->matmul(be, &v, &xn, &y->v, NULL));
      OK(be, be->rope(be, &q, &k, c->n_heads, c->n_kv_heads));
      OK(be, be->kv_write(be, l, &k, &v));
      if (!skip_attn) OK(be, be->attention(be, &att, &q, l, &ap));     // att: [n, nh*hd]
      OK(be, be->matmul(be, &tmp, &att, &y->o, NULL));                 // tmp: [n, H]
      OK(be, be->rmsnorm(be, &xn, &x, &tmp, &y->post_norm, eps));      // x += attn out; xn = norm(x)
      OK(be, be->matmul(be, &g, &xn, &y->gate, NULL));                 // g, u: [n, I]
      OK(be, be->matmul(be, &u, &xn, &y->up, NULL));
      OK(be, be->swiglu(be, &g, &g, &u));
      OK(be, be->matmul(be, &tmp, &g, &y->down, NULL));                // tmp: [n, H]
    }
    OK(be, be->rmsnorm(be, &xn, &x, &tmp, &m->norm, eps));
    OK(be, be->gather_rows(be, &sel, &xn));                            // sel: [n_out, H]
    OK(be, be->matmul(be, &lg, &sel, &m->lm_head, NULL));              // logits: [n_out, vocab]
  }
  if (graph_key && be->graph_end) OK(be, be->graph_end(be));
  if (logits) {
    ig_tensor lg = view(&m->logits, n_out);
    OK(be, be->download_f32(be, &lg, logits));
  } else {
    OK(be, be->sync(be));
  }
  free(pos), free(slot), free(bt);
}

static int argmax(const float *v, int n) {
  int b = 0;
  for (int i = 1; i < n; i++)
    if (v[i] > v[b]) b = i;
  return b;
}

static ig_backend *make_backend(int argc, char **argv) {
  char err[256];
  ig_backend *be = NULL;
  for (int i = 0; i < argc; i++) {
    if (!strcmp(argv[i], "--cpu")) be = ig_backend_cpu_create(0, err, sizeof err);
    if (!strcmp(argv[i], "--f32")) be = ig_backend_cuda_create_ex(0, IG_DT_F32, err, sizeof err);
  }
  if (!be) be = ig_backend_cuda_create(0, err, sizeof err);
  if (!be) DIE("%s", err);
  return be;
}
static int opt_int(int argc, char **argv, const char *name, int def) {
  for (int i = 0; i + 1 < argc; i++)
    if (!strcmp(argv[i], name)) return atoi(argv[i + 1]);
  return def;
}

/* cuda_device gemm [m,m,...]: us per call of the decode products at the Llama-3-8B shapes (q|k|v over one buffer,
 * o_proj, gate/up + SwiGLU over one buffer, down_proj, lm_head into f32) for each backend variant in
 * IG_GEMM_VARIANTS ("name:ENV=V,ENV=V;name2:..."; default: cuBLASLt, the skinny GEMM at every m, the same with twice the K splits), and the
 * weight bytes read per microsecond (GB/s). Random bf16 weights; x rows random. */
static uint16_t bf16_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}
static int gemm_bench(int argc, char **argv) {
  const char *vars = getenv("IG_GEMM_VARIANTS");
  if (!vars) vars = "cublas:IGNIS_CUDA_BI_SGEMM=0;default:;fastest:IGNIS_CUDA_BATCH_INVARIANT=0";
  int ms[16], nm = 0;
  const int64_t H = 4096, F = 14336, V = 128256, MM = 512;
  for (const char *q = argc >= 3 ? argv[2] : "16,32,64,96,128"; *q && nm < 16;) {
    char *end;
    long m = strtol(q, &end, 10);
    if (end == q || m < 1 || m > MM || (*end && *end != ',')) DIE("gemm: rows must be a list of 1..%d, got '%s'", (int)MM, argv[2]);
    ms[nm++] = (int)m;
    q = *end == ',' ? end + 1 : end;
  }
  size_t nbig = (size_t)V * H;
  uint16_t *wh = malloc(nbig * 2);
  float *xh = malloc((size_t)MM * F * 4);
  if (!wh || !xh) DIE("gemm: out of host memory");
  uint32_t r = 12345;
  for (size_t i = 0; i < nbig; i++) r = r * 1664525u + 1013904223u, wh[i] = bf16_bits(((int)(r >> 9) % 2001 - 1000) * 5e-5f);
  for (size_t i = 0; i < (size_t)MM * F; i++) r = r * 1664525u + 1013904223u, xh[i] = ((int)(r >> 9) % 2001 - 1000) * 1e-3f;
  char buf[1024];
  snprintf(buf, sizeof buf, "%s", vars);
  printf("%-6s %-16s %5s %9s %8s %10s\n", "var", "product", "m", "us", "GB/s", "vs first");
  float *ref[5][16] = {{0}}; /* the first variant's outputs: later variants report their rel L2 difference */
  for (char *save = NULL, *v = strtok_r(buf, ";", &save); v; v = strtok_r(NULL, ";", &save)) {
    char name[64], envs[256];
    const char *colon = strchr(v, ':');
    snprintf(name, sizeof name, "%.*s", colon ? (int)(colon - v) : (int)strlen(v), v);
    snprintf(envs, sizeof envs, "%s", colon ? colon + 1 : "");
    static const char *knobs[] = {"IGNIS_CUDA_SGEMM_WAVES", "IGNIS_CUDA_BI_SGEMM", "IGNIS_CUDA_BATCH_INVARIANT", "IGNIS_CUDA_SGEMM_DEEP", "IGNIS_CUDA_BI_SGEMM_TILES", "IGNIS_CUDA_SGEMM_BULK",
                                  "IGNIS_CUDA_GEMM_TUNE", "IGNIS_CUDA_FUSED_GATE_UP", "IGNIS_CUDA_BI_REF_M", "IGNIS_CUDA_BI_SGEMM_SWIGLU"};
    for (int k = 0; k < 10; k++) unsetenv(knobs[k]);
    for (char *s2 = NULL, *e = strtok_r(envs, ",", &s2); e; e = strtok_r(NULL, ",", &s2)) {
      char *eq = strchr(e, '=');
      if (eq) *eq = 0, setenv(e, eq + 1, 1);
    }
    char err[256];
    ig_backend *be = ig_backend_cuda_create(0, err, sizeof err);
    if (!be) DIE("%s", err);
    ig_tensor qkv, o, gu, dn, lm, x4, x14, y4, y14, yq, yk, yv, yl, yu;
    if (be->weight_alloc(be, &qkv, IG_DT_BF16, H + 2048, H) || be->weight_rows(be, &qkv, 0, wh, IG_DT_BF16, H + 2048) ||
        be->weight(be, &o, wh, IG_DT_BF16, H, H) || be->weight_alloc(be, &gu, IG_DT_BF16, 2 * F, H) ||
        be->weight_rows(be, &gu, 0, wh, IG_DT_BF16, 2 * F) || be->weight(be, &dn, wh, IG_DT_BF16, H, F) ||
        be->weight(be, &lm, wh, IG_DT_BF16, V, H) || be->alloc(be, &x4, IG_DT_BF16, MM, H) ||
        be->alloc(be, &x14, IG_DT_BF16, MM, F) || be->alloc(be, &y4, IG_DT_BF16, MM, H) ||
        be->alloc(be, &y14, IG_DT_BF16, MM, F) || be->alloc(be, &yu, IG_DT_BF16, MM, F) ||
        be->alloc(be, &yq, IG_DT_BF16, MM, H) || be->alloc(be, &yk, IG_DT_BF16, MM, 1024) ||
        be->alloc(be, &yv, IG_DT_BF16, MM, 1024) || be->alloc(be, &yl, IG_DT_F32, MM, V) ||
        be->upload(be, &x4, xh, IG_DT_F32) || be->upload(be, &x14, xh, IG_DT_F32) || be->sync(be))
      DIE("gemm: %s", be->err);
    /* q|k|v (50 MB) and o (34 MB) fit in the H100's 50 MB L2 when one copy is run over and over: the timed runs
     * cycle through 4 copies of each, so they read HBM as a model's layers do */
    ig_tensor qkvc[4], oc[4], pq[4], pk[4], pv[4];
    qkvc[0] = qkv, oc[0] = o;
    for (int c4 = 1; c4 < 4; c4++)
      if (be->weight_alloc(be, &qkvc[c4], IG_DT_BF16, H + 2048, H) || be->weight_rows(be, &qkvc[c4], 0, wh, IG_DT_BF16, H + 2048) ||
          be->weight(be, &oc[c4], wh, IG_DT_BF16, H, H) || be->sync(be))
        DIE("gemm: %s", be->err);
    for (int c4 = 0; c4 < 4; c4++) {
      pq[c4] = pk[c4] = pv[c4] = qkvc[c4];
      pq[c4].rows = H, pk[c4].rows = pv[c4].rows = 1024, pq[c4].owned = pk[c4].owned = pv[c4].owned = 0;
      pk[c4].data = (char *)qkvc[c4].data + (size_t)H * H * 2, pv[c4].data = (char *)pk[c4].data + (size_t)1024 * H * 2;
    }
    ig_tensor pg = gu, pu = gu;
    pg.owned = pu.owned = 0;
    pg.rows = pu.rows = F, pu.data = (char *)gu.data + (size_t)F * H * 2;
    for (int p = 0; p < 5; p++) {
      static const char *names[] = {"qkv 6144x4096", "o 4096x4096", "gate/up 2x14336", "down 4096x14336", "lm_head"};
      static const double bytes[] = {6144.0 * 4096 * 2, 4096.0 * 4096 * 2, 2 * 14336.0 * 4096 * 2, 4096.0 * 14336 * 2,
                                     128256.0 * 4096 * 2};
      for (int mi = 0; mi < nm; mi++) {
        int m = ms[mi];
        ig_tensor xa = x4, xb = x14;
        xa.rows = xb.rows = m;
        double t0 = 0;
        for (int it = 0; it < 23; it++) {
          if (it == 3) {
            if (be->sync(be)) DIE("gemm: %s", be->err);
            t0 = now();
          }
          int rc = 0;
          if (p == 0) {
            ig_tensor *outs[3] = {&yq, &yk, &yv};
            const ig_tensor *ws[3] = {&pq[it % 4], &pk[it % 4], &pv[it % 4]}, *bs[3] = {NULL, NULL, NULL};
            rc = be->matmul_n(be, 3, outs, &xa, ws, bs);
          } else if (p == 1) rc = be->matmul(be, &y4, &xa, &oc[it % 4], NULL);
          else if (p == 2) rc = be->matmul_swiglu(be, &y14, &yu, &xa, &pg, NULL, &pu, NULL);
          else if (p == 3) rc = be->matmul(be, &y4, &xb, &dn, NULL);
          else rc = be->matmul(be, &yl, &xa, &lm, NULL);
          if (rc) DIE("gemm %s m=%d: %s", names[p], m, be->err);
        }
        if (be->sync(be)) DIE("gemm: %s", be->err);
        double us = (now() - t0) / 20 * 1e6;
        ig_tensor yo = p == 0 ? yk : p == 1 || p == 3 ? y4 : p == 2 ? y14 : yl;
        yo.rows = m;
        size_t n = (size_t)m * (size_t)yo.cols;
        float *got = malloc(n * 4);
        if (!got || be->download_f32(be, &yo, got)) DIE("gemm: download");
        double num = 0, den = 0;
        if (!ref[p][mi]) ref[p][mi] = got, got = NULL;
        else
          for (size_t i = 0; i < n; i++) num += (got[i] - ref[p][mi][i]) * (double)(got[i] - ref[p][mi][i]), den += (double)ref[p][mi][i] * ref[p][mi][i];
        free(got);
        printf("%-6s %-16s %5d %9.1f %8.0f %10.2e\n", name, names[p], m, us, bytes[p] / us / 1e3, den > 0 ? sqrt(num / den) : 0.0);
      }
    }
    fflush(stdout);
    ig_tensor *all[] = {&qkv, &o, &gu, &dn, &lm, &x4, &x14, &y4, &y14, &yu, &yq, &yk, &yv, &yl};
    for (int i = 0; i < 14; i++) be->free(be, all[i]);
    for (int c4 = 1; c4 < 4; c4++) be->free(be, &qkvc[c4]), be->free(be, &oc[c4]);
    be->destroy(be);
  }
  for (int p = 0; p < 5; p++)
    for (int i = 0; i < 16; i++) free(ref[p][i]);
  free(wh), free(xh);
  return 0;
}

#ifdef IG_CUDA_DEVICE_BUNDLE
int cuda_ops_main(void); /* tests/cuda/test_cuda_ops.c, linked into the cuda_device bundle */
#endif
#ifdef IG_CUDA_DEVICE_SAMPLE
int cuda_sample_main(void); /* tests/cuda/test_cuda_sample.c, likewise ("cuda_device sample") */
#endif

int main(int argc, char **argv) {
#ifdef IG_CUDA_DEVICE_BUNDLE
  if (argc >= 2 && !strcmp(argv[1], "ops")) return cuda_ops_main();
#endif
#ifdef IG_CUDA_DEVICE_SAMPLE
  if (argc >= 2 && !strcmp(argv[1], "sample")) return cuda_sample_main();
#endif
  if (argc >= 2 && !strcmp(argv[1], "gemm")) return gemm_bench(argc, argv);
  if (argc < 3) DIE("usage: see the header of bench/cuda_llama.c");
  const char *mode = argv[1], *dir = argv[2];
  ig_backend *be = make_backend(argc, argv);
  for (int i = 0; i < argc; i++) {
    if (!strcmp(argv[i], "--model")) gm_wanted = 1;
    if (!strcmp(argv[i], "--kv-dtype") && i + 1 < argc) { /* with --model: the KV cache's format */
      g_kvdt = ig_kv_dtype_parse(argv[i + 1]);
      if (g_kvdt < 0 || !gm_wanted) DIE("--kv-dtype fp8_e4m3fn|fp8_e5m2, after --model");
    }
  }
  model m;
  if (!strcmp(mode, "greedy")) {
    if (argc < 5) DIE("greedy DIR IDS N");
    int32_t ids[4096];
    int n = 0;
    for (char *s = argv[3]; *s && n < 4096;) {
      ids[n++] = (int32_t)strtol(s, &s, 10);
      if (*s == ',') s++;
    }
    int N = atoi(argv[4]);
    model_load(&m, dir, be, n + N + 1, n + N + 16);
    int V = m.cfg.vocab_size;
    float *lg = malloc((size_t)V * 4);
    int32_t last = n - 1;
    forward(&m, ids, n, n, &last, 1, lg, 0);
    printf("ids:");
    for (int t = 0; t < N; t++) {
      int next = argmax(lg, V);
      printf(" %d", next);
      ids[n++] = next;
      int32_t zero = 0;
      forward(&m, &ids[n - 1], 1, n, &zero, 1, lg, 0);
    }
    printf("\n");
    free(lg);
  } else if (!strcmp(mode, "logits")) {
    /* logits DIR L:IDS.bin:OUT.bin ... [--chunk C]: one load, several teacher-forced sequences */
    int chunk = opt_int(argc, argv, "--chunk", 2048);
    static int32_t ids[1 << 16];
    int maxT = 0, maxL = 0;
    for (int a = 3; a < argc; a++) {
      if (!strcmp(argv[a], "--chunk") || !strcmp(argv[a], "--kv-dtype")) { a++; continue; }
      if (argv[a][0] == '-') continue;
      char idsf[512];
      int L;
      if (sscanf(argv[a], "%d:%511[^:]", &L, idsf) != 2) DIE("bad spec %s", argv[a]);
      FILE *f = fopen(idsf, "rb");
      if (!f) DIE("cannot open %s", idsf);
      int T = (int)fread(ids, 4, 1 << 16, f);
      fclose(f);
      if (T > maxT) maxT = T;
      if (L > maxL) maxL = L;
    }
    model_load(&m, dir, be, chunk < maxL ? chunk : maxL, maxT + 16);
    int V = m.cfg.vocab_size;
    float *lg = malloc((size_t)V * 4 * 8);
    for (int a = 3; a < argc; a++) {
      if (!strcmp(argv[a], "--chunk") || !strcmp(argv[a], "--kv-dtype")) { a++; continue; }
      if (argv[a][0] == '-') continue;
      char idsf[512], outf[512];
      int L;
      if (sscanf(argv[a], "%d:%511[^:]:%511s", &L, idsf, outf) != 3) DIE("bad spec %s", argv[a]);
      FILE *f = fopen(idsf, "rb");
      int T = (int)fread(ids, 4, 1 << 16, f);
      fclose(f);
      FILE *o = fopen(outf, "wb");
      if (!o) DIE("cannot write %s", outf);
      int ch = chunk > L ? L : chunk;
      int want[7] = {0, L / 2, L - 1, L, L + 31, L + 127, L + 255};
      printf("L=%d positions:", L);
      double t0 = now();
      for (int c0 = 0; c0 < L; c0 += ch) {
        int n = L - c0 < ch ? L - c0 : ch;
        int32_t rows[3];
        int nr = 0;
        for (int w = 0; w < 3; w++)
          if (want[w] >= c0 && want[w] < c0 + n && (nr == 0 || rows[nr - 1] != want[w] - c0)) rows[nr++] = want[w] - c0;
        if (!nr) rows[0] = n - 1;
        forward(&m, ids + c0, n, c0 + n, rows, nr ? nr : 1, lg, 0);
        for (int r = 0; r < nr; r++) printf(" %d", c0 + rows[r]), fwrite(lg + (size_t)r * V, 4, V, o);
      }
      double t1 = now();
      for (int p = L; p < T; p++) {
        int32_t zero = 0;
        forward(&m, ids + p, 1, p + 1, &zero, 1, lg, (uint64_t)1 << 32 | m.max_blocks);
        for (int w = 3; w < 7; w++)
          if (p == want[w]) printf(" %d", p), fwrite(lg, 4, V, o);
      }
      printf("  (prefill %.1f ms in chunks of %d, decode %.2f ms/token incl. logits download)\n", (t1 - t0) * 1e3, ch,
             (now() - t1) * 1e3 / (T > L ? T - L : 1));
      fclose(o);
    }
    free(lg);
  } else if (!strcmp(mode, "bench")) {
    int ctx = opt_int(argc, argv, "--ctx", 512), steps = opt_int(argc, argv, "--steps", 64);
    int np = opt_int(argc, argv, "--prefill", 2048);
    double tl = model_load(&m, dir, be, np > ctx ? np : ctx, (np > ctx + steps ? np : ctx + steps) + 16);
    printf("load: %.2f s\n", tl);
    int32_t *ids = malloc(sizeof(int32_t) * (np > ctx + steps ? np : ctx + steps));
    for (int i = 0; i < (np > ctx + steps ? np : ctx + steps); i++) ids[i] = (i * 7919 + 13) % m.cfg.vocab_size;
    int32_t zero = 0;
    float *lg = malloc((size_t)m.cfg.vocab_size * 4);
    /* prefill of np tokens: median of 5 */
    double pt[5];
    for (int r = 0; r < 6; r++) {
      double t0 = now();
      int32_t last = np - 1;
      forward(&m, ids, np, np, &last, 1, lg, 0);
      if (r) pt[r - 1] = now() - t0;
    }
    for (int i = 0; i < 5; i++)
      for (int j = i + 1; j < 5; j++)
        if (pt[j] < pt[i]) { double t = pt[i]; pt[i] = pt[j]; pt[j] = t; }
    printf("prefill %d tokens: %.2f ms (median of 5)\n", np, pt[2] * 1e3);
    skip_attn = 1;
    for (int r = 0; r < 6; r++) {
      double t0 = now();
      int32_t last = np - 1;
      forward(&m, ids, np, np, &last, 1, lg, 0);
      if (r) pt[r - 1] = now() - t0;
    }
    skip_attn = 0;
    for (int i = 0; i < 5; i++)
      for (int j = i + 1; j < 5; j++)
        if (pt[j] < pt[i]) { double t = pt[i]; pt[i] = pt[j]; pt[j] = t; }
    printf("prefill %d tokens without attention: %.2f ms (median of 5)\n", np, pt[2] * 1e3);
    for (int gmode = 0; gmode < 3; gmode++) {
      skip_attn = gmode == 2;
      int32_t last = ctx - 1;
      forward(&m, ids, ctx, ctx, &last, 1, lg, 0); /* context */
      uint64_t key = gmode ? ((uint64_t)(gmode + 1) << 32 | m.max_blocks) : 0;
      for (int w = 0; w < 3; w++) forward(&m, ids + ctx, 1, ctx + 1, &zero, 1, lg, key); /* warm-up, capture */
      double t0 = now();
      for (int s = 0; s < steps; s++) forward(&m, ids + ctx + s, 1, ctx + 1 + s, &zero, 1, lg, key);
      double dt = (now() - t0) / steps;
      printf("decode batch 1 ctx %d %s: %.3f ms/token (%.1f tok/s)\n", ctx,
             gmode == 2 ? "graphs, attention skipped" : gmode ? "graphs" : "eager", dt * 1e3, 1 / dt);
    }
    skip_attn = 0;
    size_t wb = 0;
    for (int i = 0; i < ig_st_count(m.st); i++) wb += ig_st_at(m.st, i)->nbytes;
    printf("weight bytes: %zu\n", wb);
    free(ids), free(lg);
  } else DIE("unknown mode %s", mode);
  return 0;
}
