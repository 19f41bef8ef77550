/* tests/model/test_kv_dtype: stories260K with an FP8 KV cache (--kv-cache-dtype) on the CPU, where each K and V value
 * is rounded through the format as it is written. Teacher-forced on the f32 cache's greedy continuation of each
 * expected.json prompt, the logits with fp8_e4m3fn and fp8_e5m2 stay close to the f32 cache's (LIMITS) and are not
 * bitwise the same (the rounding happens); free greedy generation runs with each. A 2-shard model gets
 * the dtype on every shard (its logits are the unsharded FP8 ones up to the all-reduce's order, not the f32 ones);
 * an unknown dtype gives 0 bytes per block and fails kv_init. */
#include "model/model.h"
#include "model_util.h"
#include "test.h"
#include <jansson.h>
#include <math.h>
#include <stdlib.h>

#define STORIES IG_SHARED_DIR "/models/stories260K"
#define VOCAB 512
#define STEPS 80       /* logits rows per prompt: the prompt's last row, then 79 decode steps */
#define MAX_PROMPTS 3
/* Against the f32 cache's rows, measured over the 240 rows (3 prompts x 80): relative L2 ||x - ref|| / ||ref||
 * mean 0.040 (e4m3) / 0.076 (e5m2), worst 0.21 / 1.94 (a row of small norm: the worst row says little, so its KL
 * divergence is bounded instead); KL(ref || x) of the softmaxes worst 0.117 / 0.432; teacher-forced argmax agreement
 * 98.3% / 92.1%. The limits leave ~1.5x of room and tell the formats apart (e5m2's rounding fails e4m3's). */
static const struct {
  int dtype;
  double mean_rel, worst_kl, agree_pct;
} LIMITS[2] = {{IG_KV_FP8_E4M3, 0.06, 0.2, 95}, {IG_KV_FP8_E5M2, 0.12, 0.65, 85}};
/* a 2-shard model against the unsharded one, same dtype (tests/tp's bound for sharded vs unsharded) */
#define TOL_TP 1e-5

typedef struct {
  int n_prompts;
  int32_t prompt[MAX_PROMPTS][16];
  int np[MAX_PROMPTS];
  int32_t ids[MAX_PROMPTS][STEPS]; /* the f32 cache's greedy tokens */
  float *logits;                   /* [MAX_PROMPTS][STEPS][VOCAB] */
} run_out;

static double rel_l2(const float *a, const float *b, int n) {
  double d = 0, r = 0;
  for (int i = 0; i < n; i++) d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]), r += (double)b[i] * b[i];
  return sqrt(d / (r > 0 ? r : 1));
}

/* Runs prompt p: the prompt, then STEPS - 1 decode steps fed `forced` (NULL: greedy, ids written to o->ids[p]);
 * logits rows into o->logits. Returns 0 or -1 (message in err). */
static int run_prompt(ig_model *m, run_out *o, int p, const int32_t *forced, char *err, size_t errlen) {
  mu_seq s, *sp = &s;
  mu_seq_init(&s, p, MU_CACHE_BLOCKS);
  const int32_t *tp = o->prompt[p];
  float *lg = o->logits + (size_t)p * STEPS * VOCAB;
  if (mu_step(m, &sp, &tp, &o->np[p], 1, 0, lg, err, errlen)) return -1;
  for (int t = 1; t < STEPS; t++) {
    int32_t next = forced ? forced[t - 1] : mu_argmax(lg + (size_t)(t - 1) * VOCAB, VOCAB);
    if (!forced) o->ids[p][t - 1] = next;
    int one = 1;
    tp = &next;
    if (mu_step(m, &sp, &tp, &one, 1, 0, lg + (size_t)t * VOCAB, err, errlen)) return -1;
  }
  if (!forced) o->ids[p][STEPS - 1] = mu_argmax(lg + (size_t)(STEPS - 1) * VOCAB, VOCAB);
  return 0;
}

/* All prompts with the cache in kv_dtype (re-initialised), forced on ref's ids (NULL: greedy into o->ids). */
static int run_all(ig_model *m, int kv_dtype, run_out *o, const run_out *ref, char *err, size_t errlen) {
  ig_model_set_kv_dtype(m, kv_dtype);
  if (ig_model_kv_init(m, MU_CACHE_BLOCKS, MU_BLOCK, err, errlen)) return -1;
  for (int p = 0; p < o->n_prompts; p++)
    if (run_prompt(m, o, p, ref ? ref->ids[p] : NULL, err, errlen)) return -1;
  return 0;
}

/* KL(softmax(ref) || softmax(x)) */
static double kl(const float *x, const float *ref, int n) {
  double mx = -INFINITY, mr = -INFINITY, sx = 0, sr = 0, d = 0;
  for (int i = 0; i < n; i++) mx = fmax(mx, x[i]), mr = fmax(mr, ref[i]);
  for (int i = 0; i < n; i++) sx += exp(x[i] - mx), sr += exp(ref[i] - mr);
  for (int i = 0; i < n; i++) {
    double lr = ref[i] - mr - log(sr), lx = x[i] - mx - log(sx);
    d += exp(lr) * (lr - lx);
  }
  return d;
}

typedef struct {
  double mean_rel, worst_rel, worst_kl, agree_pct;
  int same; /* every row bitwise equal */
} cmp;

/* a's rows against ref's; agreement: a's argmax against ref's greedy tokens (a teacher-forced on them) */
static cmp compare(const run_out *a, const run_out *ref) {
  cmp c = {0, 0, 0, 0, 1};
  int rows = a->n_prompts * STEPS, k = 0;
  for (int r = 0; r < rows; r++) {
    const float *x = a->logits + (size_t)r * VOCAB, *y = ref->logits + (size_t)r * VOCAB;
    double e = rel_l2(x, y, VOCAB);
    c.mean_rel += e / rows;
    c.worst_rel = fmax(c.worst_rel, e);
    c.worst_kl = fmax(c.worst_kl, kl(x, y, VOCAB));
    c.same &= !memcmp(x, y, sizeof(float) * VOCAB);
    k += mu_argmax(x, VOCAB) == ref->ids[r / STEPS][r % STEPS];
  }
  c.agree_pct = 100.0 * k / rows;
  return c;
}

static void run_out_init(run_out *o, const run_out *from) {
  *o = *from;
  o->logits = calloc((size_t)MAX_PROMPTS * STEPS * VOCAB, sizeof(float));
}

int main(void) {
  char err[512];
  json_error_t je;
  json_t *exp = json_load_file(STORIES "/expected.json", 0, &je);
  ig_backend *be = ig_backend_cpu_create(2, err, sizeof err);
  ig_model *m = NULL;
  CHECK(exp && be && ig_model_load(STORIES, be, &m, err, sizeof err) == 0);
  if (!exp || !m) {
    fprintf(stderr, "%s\n", err);
    TEST_DONE();
  }
  /* the prompts, and the f32 cache's greedy continuation of each (expected.json's, which test_stories checks) */
  run_out ref = {0};
  json_t *prompts = json_object_get(exp, "prompts");
  for (size_t p = 0; p < json_array_size(prompts) && ref.n_prompts < MAX_PROMPTS; p++, ref.n_prompts++) {
    json_t *pids = json_object_get(json_array_get(prompts, p), "prompt_ids");
    ref.np[p] = json_array_size(pids) < 16 ? (int)json_array_size(pids) : 16;
    for (int i = 0; i < ref.np[p]; i++) ref.prompt[p][i] = (int32_t)json_integer_value(json_array_get(pids, i));
  }
  ref.logits = calloc((size_t)MAX_PROMPTS * STEPS * VOCAB, sizeof(float));
  CHECK_MSG(run_all(m, IG_KV_AUTO, &ref, NULL, err, sizeof err) == 0, "%s", err);
  for (int p = 0; p < ref.n_prompts; p++) {
    json_t *cont = json_object_get(json_array_get(prompts, (size_t)p), "continuation_ids");
    int first_bad = -1;
    for (int t = 0; t < STEPS && first_bad < 0; t++)
      if (ref.ids[p][t] != json_integer_value(json_array_get(cont, (size_t)t))) first_bad = t;
    CHECK_MSG(first_bad < 0, "prompt %d: the f32 cache's greedy ids differ from expected.json's at %d", p, first_bad);
  }

  run_out fp8[2];
  for (int d = 0; d < 2; d++) {
    const char *name = ig_kv_dtype_name(LIMITS[d].dtype);
    run_out_init(&fp8[d], &ref);
    CHECK_MSG(run_all(m, LIMITS[d].dtype, &fp8[d], &ref, err, sizeof err) == 0, "%s: %s", name, err);
    CHECK(ig_model_kv_bytes_per_block(m, MU_BLOCK) == (size_t)5 * 2 * MU_BLOCK * 4 * 8 * 4); /* f32 on the CPU */
    cmp c = compare(&fp8[d], &ref);
    CHECK_MSG(c.mean_rel <= LIMITS[d].mean_rel, "%s: mean rel L2 %.4f > %g", name, c.mean_rel, LIMITS[d].mean_rel);
    CHECK_MSG(c.worst_kl <= LIMITS[d].worst_kl, "%s: worst KL %.4f > %g", name, c.worst_kl, LIMITS[d].worst_kl);
    CHECK_MSG(c.agree_pct >= LIMITS[d].agree_pct, "%s: argmax agreement %.1f%% < %g%%", name, c.agree_pct,
              LIMITS[d].agree_pct);
    CHECK_MSG(!c.same, "%s: logits bitwise those of the f32 cache: nothing was rounded", name);
    /* free greedy generation with the FP8 cache: runs, and how far it follows the f32 one */
    run_out g;
    run_out_init(&g, &ref);
    CHECK_MSG(run_all(m, LIMITS[d].dtype, &g, NULL, err, sizeof err) == 0, "%s greedy: %s", name, err);
    int follow = 0;
    while (follow < STEPS && g.ids[0][follow] == ref.ids[0][follow]) follow++;
    fprintf(stderr, "  %-10s rel L2 mean %.4f worst %.4f, worst KL %.4f, teacher-forced argmax agreement %.1f%%; "
            "free greedy: the first %d of %d ids of prompt 0 as with the f32 cache\n", name, c.mean_rel, c.worst_rel,
            c.worst_kl, c.agree_pct, follow, STEPS);
    free(g.logits);
  }

  /* a 2-shard model: every shard rounds (close to the unsharded FP8 logits, far from the f32 ones) */
  ig_model *tp = NULL;
  ig_model_tp_opts o = {.num_shard = 2, .device = "cpu", .threads = 2};
  CHECK_MSG(ig_model_load_tp(STORIES, &o, &tp, err, sizeof err) == 0, "%s", err);
  if (tp) {
    run_out t;
    run_out_init(&t, &ref);
    CHECK_MSG(run_all(tp, IG_KV_FP8_E4M3, &t, &ref, err, sizeof err) == 0, "tp: %s", err);
    double w8 = compare(&t, &fp8[0]).worst_rel, w32 = compare(&t, &ref).worst_rel;
    CHECK_MSG(w8 <= TOL_TP, "2 shards, fp8_e4m3fn: worst rel L2 %.3g against 1 shard", w8);
    CHECK_MSG(w32 > 100 * TOL_TP, "2 shards, fp8_e4m3fn: rel L2 %.3g against the f32 cache: not rounded", w32);
    fprintf(stderr, "  2 shards fp8_e4m3fn: worst rel L2 %.2e against 1 shard, %.4f against the f32 cache\n", w8, w32);
    ig_model_set_kv_dtype(tp, 9);
    CHECK(ig_model_kv_bytes_per_block(tp, MU_BLOCK) == 0);
    free(t.logits);
    ig_model_free(tp);
  }

  /* an unknown dtype */
  ig_model_set_kv_dtype(m, 9);
  CHECK(ig_model_kv_bytes_per_block(m, MU_BLOCK) == 0);
  CHECK(ig_model_kv_init(m, MU_CACHE_BLOCKS, MU_BLOCK, err, sizeof err) < 0);
  CHECK_MSG(strstr(err, "unknown KV cache dtype 9"), "message: %s", err);

  for (int d = 0; d < 2; d++) free(fp8[d].logits);
  free(ref.logits);
  ig_model_free(m);
  be->destroy(be);
  json_decref(exp);
  TEST_DONE();
}
