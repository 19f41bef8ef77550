/* tests/model/test_fp8_ckpt: FP8 checkpoints (quantization_config "fp8", "fbgemm_fp8", "compressed-tensors"), made
 * here from stories260K: every projection matrix stored as F8_E4M3 codes with scales beside it (per tensor, per row,
 * per 16 x 16 block with edge blocks, and an F8_E5M2 one), the embedding and norms left as they are. The loader
 * dequantizes each weight to bf16(code * scale); a reference checkpoint holding exactly those bf16 values as BF16
 * tensors must then give bitwise the same logits, unsharded and in 2 shards (whose column parts of o_proj and
 * down_proj dequantize a slice), through the backend's weight_fp8 and through the loader's own dequantization. Broken FP8 checkpoints and unsupported quantization methods fail with one line. */
#include "backend/fp8.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "model_util.h"
#include "test.h"
#include "util/half.h"
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <sys/stat.h>

#define SRC IG_SHARED_DIR "/models/stories260K"
#define VOCAB 512
static char tmp[256];

/* how one variant stores a quantized weight */
typedef enum { PER_TENSOR, PER_ROW, PER_BLOCK } strategy;
typedef struct {
  const char *name;
  strategy how;
  int e5m2;               /* F8_E5M2 codes instead of F8_E4M3 */
  const char *scale_dt;   /* "F32", "BF16" or "F16" */
  const char *quant_json; /* config.json's quantization_config */
  /* breakages: */
  int no_scale, bad_scale_shape, nan_scale;
  float kv_scale; /* != 0: every layer's self_attn.k_scale and v_scale (a bad one when not positive) */
} variant;

#define BLOCK 16
#define V(...) {__VA_ARGS__} /* name, how, e5m2, scale dtype, quantization_config, then the three breakages */
#define OK 0, 0, 0, 0.f /* no breakage, no KV cache scales */

static int is_proj(const char *n) { return strstr(n, "_proj.weight") != NULL; }

/* A tensor to write: name, dtype, shape, bytes */
typedef struct {
  char name[128];
  char dtype[8];
  int nd;
  int64_t shape[2];
  uint8_t *data;
  size_t n;
} out_t;

/* As the safetensors library writes: tensors by element size, largest first (so each starts at a multiple of its
 * own), the header padded with spaces to a multiple of 8; `packed` keeps the given order instead (an F32 tensor after
 * odd-sized FP8 ones then sits at an unaligned offset, which the loader must copy, not read in place). */
static size_t es_of(const char *dt) { return !strcmp(dt, "F32") ? 4 : !strcmp(dt, "BF16") || !strcmp(dt, "F16") ? 2 : 1; }
static int by_size(const void *a, const void *b) {
  size_t x = es_of(((const out_t *)a)->dtype), y = es_of(((const out_t *)b)->dtype);
  return x < y ? 1 : x > y ? -1 : strcmp(((const out_t *)a)->name, ((const out_t *)b)->name);
}
static int packed;
static void write_st(const char *path, out_t *t, int nt) {
  if (!packed) qsort(t, (size_t)nt, sizeof *t, by_size);
  json_t *h = json_object();
  size_t off = 0;
  for (int i = 0; i < nt; i++) {
    json_t *o = json_object(), *sh = json_array(), *of = json_array();
    for (int k = 0; k < t[i].nd; k++) json_array_append_new(sh, json_integer(t[i].shape[k]));
    json_array_append_new(of, json_integer((json_int_t)off));
    json_array_append_new(of, json_integer((json_int_t)(off + t[i].n)));
    json_object_set_new(o, "dtype", json_string(t[i].dtype));
    json_object_set_new(o, "shape", sh);
    json_object_set_new(o, "data_offsets", of);
    json_object_set_new(h, t[i].name, o);
    off += t[i].n;
  }
  char *hs = json_dumps(h, JSON_COMPACT);
  json_decref(h);
  FILE *f = fopen(path, "wb");
  uint64_t n = strlen(hs), hl = packed ? n : (n + 7) / 8 * 8;
  for (int i = 0; i < 8; i++) fputc((int)((hl >> (8 * i)) & 255), f);
  fwrite(hs, 1, n, f);
  for (uint64_t i = n; i < hl; i++) fputc(' ', f);
  for (int i = 0; i < nt; i++) fwrite(t[i].data, 1, t[i].n, f);
  fclose(f);
  free(hs);
}

static void put_scale(uint8_t *p, const char *dt, size_t i, float s) {
  if (!strcmp(dt, "F32")) memcpy(p + 4 * i, &s, 4);
  else {
    uint16_t h = ig_f32_to_bf16(s); /* BF16; F16 scales are written as powers of two, exact in both */
    if (!strcmp(dt, "F16")) {
      int e;
      frexpf(s, &e); /* s = 2^(e - 1) exactly for these */
      h = (uint16_t)((e - 1 + 15) << 10);
    }
    memcpy(p + 2 * i, &h, 2);
  }
}
static float got_scale(const char *dt, float s) { /* the value a scale has once stored in dt */
  if (!strcmp(dt, "F32")) return s;
  if (!strcmp(dt, "BF16")) return ig_bf16_to_f32(ig_f32_to_bf16(s));
  return s; /* F16: powers of two */
}

/* Writes dir/<name> (FP8) and dir/<name>-ref (the dequantized values as BF16), each with config.json. */
static void make_pair(const variant *v) {
  char d[512], dr[512], p[600];
  snprintf(d, sizeof d, "%s/%s", tmp, v->name);
  snprintf(dr, sizeof dr, "%s/%s-ref", tmp, v->name);
  mkdir(d, 0755);
  mkdir(dr, 0755);
  /* config.json with the quantization_config; the reference's without */
  json_error_t je;
  json_t *cfg = json_load_file(SRC "/config.json", 0, &je);
  CHECK(cfg != NULL);
  snprintf(p, sizeof p, "%s/config.json", dr);
  CHECK(json_dump_file(cfg, p, JSON_INDENT(1)) == 0);
  if (v->quant_json) {
    json_t *q = json_loads(v->quant_json, 0, &je);
    CHECK_MSG(q != NULL, "%s: bad test JSON", v->name);
    json_object_set_new(cfg, "quantization_config", q);
  }
  snprintf(p, sizeof p, "%s/config.json", d);
  CHECK(json_dump_file(cfg, p, JSON_INDENT(1)) == 0);
  json_decref(cfg);

  char err[256];
  ig_st_model *st;
  CHECK(ig_st_open(SRC "/model.safetensors", &st, err, sizeof err) == 0);
  int n = ig_st_count(st);
  out_t *q = calloc((size_t)n * 2, sizeof *q), *r = calloc((size_t)n, sizeof *r);
  int nq = 0;
  for (int i = 0; i < n; i++) {
    const ig_st_tensor *t = ig_st_at(st, i);
    CHECK(!strcmp(t->dtype_name, "F32"));
    const float *w = (const float *)t->data;
    out_t *o = &q[nq++], *ro = &r[i];
    snprintf(o->name, sizeof o->name, "%s", t->name);
    snprintf(ro->name, sizeof ro->name, "%s", t->name);
    o->nd = ro->nd = t->n_dims;
    for (int k = 0; k < t->n_dims; k++) o->shape[k] = ro->shape[k] = t->shape[k];
    if (!is_proj(t->name)) { /* as it is, in both */
      snprintf(o->dtype, sizeof o->dtype, "F32");
      snprintf(ro->dtype, sizeof ro->dtype, "F32");
      o->n = ro->n = t->nbytes;
      o->data = malloc(t->nbytes), ro->data = malloc(t->nbytes);
      memcpy(o->data, t->data, t->nbytes);
      memcpy(ro->data, t->data, t->nbytes);
      continue;
    }
    const int64_t R = t->shape[0], C = t->shape[1];
    const int64_t sr = v->how == PER_TENSOR ? 1 : v->how == PER_ROW ? R : (R + BLOCK - 1) / BLOCK;
    const int64_t sc = v->how == PER_BLOCK ? (C + BLOCK - 1) / BLOCK : 1;
    float *sv = calloc((size_t)(sr * sc), sizeof *sv);
    for (int64_t i2 = 0; i2 < R; i2++) /* amax per scale cell */
      for (int64_t j = 0; j < C; j++) {
        int64_t a = v->how == PER_TENSOR ? 0 : v->how == PER_ROW ? i2 : (i2 / BLOCK) * sc + j / BLOCK;
        sv[a] = fmaxf(sv[a], fabsf(w[i2 * C + j]));
      }
    const float fmax8 = v->e5m2 ? 57344.f : 448.f;
    for (int64_t a = 0; a < sr * sc; a++) {
      float s = sv[a] > 0 ? sv[a] / fmax8 : 1.f;
      if (!strcmp(v->scale_dt, "F16")) s = exp2f(ceilf(log2f(s))); /* a power of two */
      sv[a] = got_scale(v->scale_dt, s);
    }
    snprintf(o->dtype, sizeof o->dtype, "%s", v->e5m2 ? "F8_E5M2" : "F8_E4M3");
    o->n = (size_t)(R * C);
    o->data = malloc(o->n);
    snprintf(ro->dtype, sizeof ro->dtype, "BF16");
    ro->n = (size_t)(R * C) * 2;
    ro->data = malloc(ro->n);
    for (int64_t i2 = 0; i2 < R; i2++)
      for (int64_t j = 0; j < C; j++) {
        int64_t a = v->how == PER_TENSOR ? 0 : v->how == PER_ROW ? i2 : (i2 / BLOCK) * sc + j / BLOCK;
        float x = w[i2 * C + j] / sv[a];
        uint8_t code = v->e5m2 ? ig_fp8_e5m2_from_f32(x) : ig_fp8_e4m3_from_f32(x);
        float deq = (v->e5m2 ? ig_fp8_e5m2_to_f32(code) : ig_fp8_e4m3_to_f32(code)) * sv[a];
        o->data[i2 * C + j] = code;
        uint16_t b = ig_f32_to_bf16(deq);
        memcpy(ro->data + 2 * (i2 * C + j), &b, 2);
      }
    if (v->no_scale) {
      free(sv);
      continue;
    }
    out_t *s = &q[nq++];
    snprintf(s->name, sizeof s->name, "%.*s.%s", (int)(strlen(t->name) - 7), t->name,
             v->how == PER_BLOCK ? "weight_scale_inv" : "weight_scale");
    snprintf(s->dtype, sizeof s->dtype, "%s", v->scale_dt);
    size_t es = !strcmp(v->scale_dt, "F32") ? 4 : 2;
    s->n = (size_t)(sr * sc) * es;
    s->data = malloc(s->n);
    for (int64_t a = 0; a < sr * sc; a++) put_scale(s->data, v->scale_dt, (size_t)a, v->nan_scale && a == 0 ? NAN : sv[a]);
    if (v->how == PER_TENSOR) s->nd = 0; /* a scalar, as compressed-tensors saves it */
    else if (v->how == PER_ROW) s->nd = 2, s->shape[0] = R, s->shape[1] = 1;
    else s->nd = 2, s->shape[0] = sr, s->shape[1] = sc;
    if (v->bad_scale_shape) { /* one row too many: [R + 1, 1] */
      s->nd = 2, s->shape[0] = R + 1, s->shape[1] = 1, s->n = (size_t)(R + 1) * es;
      s->data = realloc(s->data, s->n);
      for (int64_t a = 0; a <= R; a++) put_scale(s->data, v->scale_dt, (size_t)a, 1.f);
    }
    free(sv);
  }
  if (v->kv_scale != 0.f) { /* per-layer FP8 KV cache scales, F32 scalars */
    q = realloc(q, (size_t)(nq + 10) * sizeof *q);
    for (int l = 0; l < 5; l++)
      for (int w = 0; w < 2; w++) {
        out_t *o = &q[nq++];
        memset(o, 0, sizeof *o);
        snprintf(o->name, sizeof o->name, "model.layers.%d.self_attn.%s_scale", l, w ? "v" : "k");
        snprintf(o->dtype, sizeof o->dtype, "F32");
        o->nd = 0, o->n = 4, o->data = malloc(4);
        memcpy(o->data, &v->kv_scale, 4);
      }
  }
  snprintf(p, sizeof p, "%s/model.safetensors", d);
  write_st(p, q, nq);
  snprintf(p, sizeof p, "%s/model.safetensors", dr);
  write_st(p, r, n);
  for (int i = 0; i < nq; i++) free(q[i].data);
  for (int i = 0; i < n; i++) free(r[i].data);
  free(q);
  free(r);
  ig_st_close(st);
}

/* logits of one prompt's last row and 8 greedy steps after it (the cache in kv_dtype) */
#define ROWS 9
static int kv_dtype = IG_KV_AUTO;
static int run(ig_model *m, float *lg, char *err, size_t errlen) {
  ig_model_set_kv_dtype(m, kv_dtype);
  if (ig_model_kv_init(m, MU_CACHE_BLOCKS, MU_BLOCK, err, errlen)) return -1;
  static const int32_t prompt[] = {1, 403, 407, 261, 378};
  int np = 5;
  mu_seq s, *sp = &s;
  mu_seq_init(&s, 0, MU_CACHE_BLOCKS);
  const int32_t *tp = prompt;
  if (mu_step(m, &sp, &tp, &np, 1, 0, lg, err, errlen)) return -1;
  for (int t = 1; t < ROWS; t++) {
    int32_t next = mu_argmax(lg + (size_t)(t - 1) * VOCAB, VOCAB);
    int one = 1;
    tp = &next;
    if (mu_step(m, &sp, &tp, &one, 1, 0, lg + (size_t)t * VOCAB, err, errlen)) return -1;
  }
  return 0;
}

static void expect_same(const variant *v, ig_backend *be) {
  char d[512], dr[512], err[512];
  snprintf(d, sizeof d, "%s/%s", tmp, v->name);
  snprintf(dr, sizeof dr, "%s/%s-ref", tmp, v->name);
  static float a[ROWS * VOCAB], b[ROWS * VOCAB], ref32[ROWS * VOCAB];
  ig_model *m = NULL, *r = NULL;
  CHECK_MSG(ig_model_load(d, be, &m, err, sizeof err) == 0, "%s: %s", v->name, err);
  CHECK_MSG(ig_model_load(dr, be, &r, err, sizeof err) == 0, "%s ref: %s", v->name, err);
  if (!m || !r) return;
  CHECK(run(m, a, err, sizeof err) == 0);
  CHECK(run(r, b, err, sizeof err) == 0);
  CHECK_MSG(!memcmp(a, b, sizeof a), "%s: logits differ from the dequantized BF16 checkpoint's", v->name);
  /* and they are near the f32 model's: the quantization is real but small */
  ig_model *o = NULL;
  CHECK(ig_model_load(SRC, be, &o, err, sizeof err) == 0);
  if (o) {
    CHECK(run(o, ref32, err, sizeof err) == 0);
    double dd = 0, rr = 0;
    for (int i = 0; i < VOCAB; i++) dd += pow(a[i] - ref32[i], 2), rr += pow(ref32[i], 2); /* the prompt's row */
    double rel = sqrt(dd / rr);
    fprintf(stderr, "  %-12s bitwise the BF16 reference; prompt row rel L2 %.4f against the f32 model\n", v->name, rel);
    CHECK_MSG(rel > 1e-4 && rel < (v->e5m2 ? 0.3 : 0.15), "%s: rel L2 %.4f against f32", v->name, rel);
    ig_model_free(o);
  }
  /* 2 shards: o_proj and down_proj load column slices of the codes */
  ig_model *tq = NULL, *tr = NULL;
  ig_model_tp_opts to = {.num_shard = 2, .device = "cpu", .threads = 2};
  CHECK_MSG(ig_model_load_tp(d, &to, &tq, err, sizeof err) == 0, "%s tp: %s", v->name, err);
  CHECK_MSG(ig_model_load_tp(dr, &to, &tr, err, sizeof err) == 0, "%s tp ref: %s", v->name, err);
  if (tq && tr) {
    CHECK(run(tq, a, err, sizeof err) == 0);
    CHECK(run(tr, b, err, sizeof err) == 0);
    CHECK_MSG(!memcmp(a, b, sizeof a), "%s, 2 shards: logits differ from the reference's", v->name);
  }
  ig_model_free(tq);
  ig_model_free(tr);
  ig_model_free(m);
  ig_model_free(r);
}

static void expect_fail(const variant *v, ig_backend *be, const char *needle) {
  char d[512], err[512] = "";
  snprintf(d, sizeof d, "%s/%s", tmp, v->name);
  ig_model *m = NULL;
  int rc = ig_model_load(d, be, &m, err, sizeof err);
  CHECK_MSG(rc < 0, "%s: loaded", v->name);
  CHECK_MSG(strstr(err, needle) != NULL, "%s: error '%s' lacks '%s'", v->name, err, needle);
  CHECK_MSG(!strchr(err, '\n'), "%s: multi-line error", v->name);
  if (rc == 0) ig_model_free(m);
}

int main(void) {
  snprintf(tmp, sizeof tmp, "/tmp/ig_fp8ckpt_XXXXXX");
  CHECK(mkdtemp(tmp) != NULL);
  char err[256];
  ig_backend *be = ig_backend_cpu_create(2, err, sizeof err);
  CHECK(be != NULL);
  const char *ct = "{\"quant_method\": \"compressed-tensors\", \"format\": \"float-quantized\", \"config_groups\": "
                   "{\"group_0\": {\"targets\": [\"Linear\"], \"weights\": {\"num_bits\": 8, \"type\": \"float\", "
                   "\"strategy\": \"channel\"}}}, \"ignore\": [\"lm_head\"]}";
  const variant good[] = {
      V("tensor", PER_TENSOR, 0, "F32", "{\"quant_method\": \"compressed-tensors\", \"format\": \"float-quantized\"}", OK),
      V("row-bf16", PER_ROW, 0, "BF16", ct, OK),
      V("row-fbgemm", PER_ROW, 0, "F32", "{\"quant_method\": \"fbgemm_fp8\", \"activation_scale_ub\": 1200.0}", OK),
      V("block", PER_BLOCK, 0, "F32",
        "{\"quant_method\": \"fp8\", \"activation_scheme\": \"dynamic\", \"weight_block_size\": [16, 16]}", OK),
      V("block-noblk", PER_BLOCK, 0, "F16", "{\"quant_method\": \"fp8\"}", OK), /* the block shape from the scale's */
      V("row-e5m2", PER_ROW, 1, "F32", "{\"quant_method\": \"fp8\"}", OK),
      V("ct-block", PER_BLOCK, 0, "BF16",
        "{\"quant_method\": \"compressed-tensors\", \"format\": \"float-quantized\", \"config_groups\": {\"g\": "
        "{\"weights\": {\"num_bits\": 8, \"type\": \"float\", \"strategy\": \"block\", \"block_structure\": [16, 16]}}}}",
        OK),
  };
  /* the backend's weight_fp8 (rows of the checkpoint's tensors; column slices of the 2-shard models still take the
   * host's path), then the host's dequantization for every weight (IGNIS_FP8_HOST=1) */
  for (int host = 0; host < 2; host++) {
    if (host) setenv("IGNIS_FP8_HOST", "1", 1);
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
      if (!host) make_pair(&good[i]);
      expect_same(&good[i], be);
    }
    unsetenv("IGNIS_FP8_HOST");
  }
  /* the checkpoint's KV cache scales, with an FP8 cache: scales of 1 give the logits of none (row-fbgemm's weights are
   * these), others other logits, still close */
  {
    const variant k1 = V("kvs-1", PER_ROW, 0, "F32", "{\"quant_method\": \"fbgemm_fp8\"}", 0, 0, 0, 1.f),
                  k2 = V("kvs-8", PER_ROW, 0, "F32", "{\"quant_method\": \"fbgemm_fp8\"}", 0, 0, 0, 8.f);
    make_pair(&k1);
    make_pair(&k2);
    static float base[ROWS * VOCAB], one[ROWS * VOCAB], eight[ROWS * VOCAB];
    const char *dirs[3] = {"row-fbgemm", "kvs-1", "kvs-8"};
    float *outs[3] = {base, one, eight};
    kv_dtype = IG_KV_FP8_E4M3;
    for (int i = 0; i < 3; i++) {
      char d[512], e[512];
      snprintf(d, sizeof d, "%s/%s", tmp, dirs[i]);
      ig_model *m = NULL;
      CHECK_MSG(ig_model_load(d, be, &m, e, sizeof e) == 0, "%s: %s", dirs[i], e);
      if (m) CHECK_MSG(run(m, outs[i], e, sizeof e) == 0, "%s: %s", dirs[i], e);
      ig_model_free(m);
    }
    kv_dtype = IG_KV_AUTO;
    CHECK_MSG(!memcmp(base, one, sizeof base), "KV scales of 1 changed the logits");
    double dd = 0, rr = 0;
    for (int i = 0; i < VOCAB; i++) dd += pow(eight[i] - base[i], 2), rr += pow(base[i], 2);
    double rel = sqrt(dd / rr);
    fprintf(stderr, "  KV scales 8 with an fp8_e4m3fn cache: prompt row rel L2 %.4f against scale 1\n", rel);
    CHECK_MSG(rel > 1e-3 && rel < 0.5, "KV scales 8: rel L2 %.4f against scale 1", rel);
  }

  packed = 1; /* unaligned F32 tensors after the FP8 ones */
  const variant unaligned = V("row-packed", PER_ROW, 0, "F32", ct, OK);
  make_pair(&unaligned);
  expect_same(&unaligned, be);
  packed = 0;
  const char *fp8 = "{\"quant_method\": \"fp8\"}";
  const variant bad[] = {
      V("no-config", PER_ROW, 0, "F32", NULL, OK),
      V("no-scale", PER_ROW, 0, "F32", fp8, 1, 0, 0, 0.f),
      V("scale-shape", PER_ROW, 0, "F32", fp8, 0, 1, 0, 0.f),
      V("scale-nan", PER_ROW, 0, "F32", fp8, 0, 0, 1, 0.f),
      V("block-wrong", PER_BLOCK, 0, "F32", "{\"quant_method\": \"fp8\", \"weight_block_size\": [32, 32]}", OK),
      V("gptq", PER_ROW, 0, "F32", "{\"quant_method\": \"gptq\", \"bits\": 4}", OK),
      V("ct-int4", PER_ROW, 0, "F32", "{\"quant_method\": \"compressed-tensors\", \"format\": \"pack-quantized\"}", OK),
      V("ct-w4", PER_ROW, 0, "F32",
        "{\"quant_method\": \"compressed-tensors\", \"config_groups\": {\"g\": {\"weights\": {\"num_bits\": 4, "
        "\"type\": \"int\"}}}}", OK),
      V("bad-block", PER_ROW, 0, "F32", "{\"quant_method\": \"fp8\", \"weight_block_size\": [0, 128]}", OK),
      V("no-method", PER_ROW, 0, "F32", "{\"bits\": 8}", OK),
      V("kv-scale-neg", PER_ROW, 0, "F32", fp8, 0, 0, 0, -1.f),
      V("ct-block-wrong", PER_BLOCK, 0, "F32",
        "{\"quant_method\": \"compressed-tensors\", \"config_groups\": {\"g\": {\"weights\": {\"num_bits\": 8, "
        "\"type\": \"float\", \"strategy\": \"group\", \"group_size\": 32}}}}", OK),
  };
  const char *needles[] = {"unsupported dtype F8_E4M3",
                           "has no weight_scale",
                           "which is no scale layout",
                           "is not finite",
                           "which is no scale layout",
                           "quant_method 'gptq': the method is not supported",
                           "its format is not float-quantized",
                           "its weights are not 8-bit floats",
                           "'quantization_config.weight_block_size' must be two positive integers",
                           "'quantization_config.quant_method' must be a string",
                           "a KV cache scale must be one positive number",
                           "which is no scale layout"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    make_pair(&bad[i]);
    expect_fail(&bad[i], be, needles[i]);
  }
  be->destroy(be);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
  CHECK(system(cmd) == 0);
  TEST_DONE();
}
