/* tests/model/test_fixtures: golden data from transformers (tests/fixtures/engine/<name>/, made by
 * tools/make_fixtures.py): for every fixture directory, the logits at every position of each prompt must
 * match transformers' float32 logits (logits.safetensors "prompt<i>") within a relative L2 error of 1e-4,
 * and greedy decoding must reproduce expected.json's "greedy" ids (and "gen<i>" logits while on track).
 * Fails when no fixture directory exists. */
#include "io/safetensors.h"
#include "model_util.h"
#include "test.h"
#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <sys/stat.h>

#define FIX_DIR IG_SOURCE_DIR "/tests/fixtures/engine"
#define TOL 1e-4

/* ids from an array of ints, or from an object holding one under a usual key */
static int get_ids(json_t *v, int32_t *out, int max) {
  if (json_is_object(v)) {
    const char *keys[] = {"ids", "prompt_ids", "input_ids", "greedy", "continuation_ids", "generated_ids", "tokens"};
    json_t *f = NULL;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0] && !f; i++) f = json_object_get(v, keys[i]);
    v = f;
  }
  if (!json_is_array(v)) return -1;
  int n = 0;
  for (size_t i = 0; i < json_array_size(v) && n < max; i++) {
    json_t *e = json_array_get(v, i);
    if (!json_is_integer(e)) return -1;
    out[n++] = (int32_t)json_integer_value(e);
  }
  return n;
}

static double rel_l2(const float *ours, const float *ref, int n) {
  double num = 0, den = 0;
  for (int i = 0; i < n; i++) {
    num += ((double)ours[i] - ref[i]) * ((double)ours[i] - ref[i]);
    den += (double)ref[i] * ref[i];
  }
  return sqrt(num / (den > 0 ? den : 1e-30));
}

static const float *ref_rows(ig_st_model *st, const char *name, int V, int *rows) {
  const ig_st_tensor *t = ig_st_find(st, name);
  *rows = 0;
  if (!t || t->dtype != IG_ST_F32 || t->n_dims < 2 || t->shape[t->n_dims - 1] != V) return NULL;
  *rows = (int)(t->nbytes / 4 / (size_t)V);
  return (const float *)t->data;
}

static void run_fixture(const char *dir, const char *name) {
  char p[1200], err[512];
  snprintf(p, sizeof p, "%s/expected.json", dir);
  json_error_t je;
  json_t *exp = json_load_file(p, 0, &je);
  CHECK_MSG(exp != NULL, "%s: expected.json: %s", name, je.text);
  ig_backend *be = ig_backend_cpu_create(2, err, sizeof err);
  ig_model *m = NULL;
  int ok = be && ig_model_load(dir, be, &m, err, sizeof err) == 0;
  CHECK_MSG(ok, "%s: %s", name, err);
  snprintf(p, sizeof p, "%s/logits.safetensors", dir);
  ig_st_model *st = NULL;
  CHECK_MSG(ig_st_open(p, &st, err, sizeof err) == 0, "%s: %s", name, err);
  if (!exp || !ok || !st) goto done;
  CHECK(ig_model_kv_init(m, MU_CACHE_BLOCKS, MU_BLOCK, err, sizeof err) == 0);
  int V = ig_model_get_info(m)->vocab_size;
  json_t *prompts = json_object_get(exp, "prompts"), *greedy = json_object_get(exp, "greedy");
  CHECK_MSG(json_array_size(prompts) > 0, "%s: no prompts", name);
  float *lg = malloc(sizeof(float) * (size_t)V * 256);
  for (size_t i = 0; i < json_array_size(prompts); i++) {
    int32_t ids[256], want[256];
    int np = get_ids(json_array_get(prompts, i), ids, 200);
    int ng = get_ids(json_array_get(greedy, i), want, 200);
    CHECK_MSG(np > 0 && ng > 0, "%s: prompt %zu: no ids", name, i);
    if (np <= 0 || ng <= 0) continue;
    /* teacher-forced logits at every prompt position */
    mu_seq s, *sp = &s;
    mu_seq_init(&s, (int)i, MU_CACHE_BLOCKS);
    const int32_t *tp = ids;
    if (mu_step(m, &sp, &tp, &np, 1, 1, lg, err, sizeof err)) {
      CHECK_MSG(0, "%s: %s", name, err);
      continue;
    }
    char key[32];
    int rows;
    snprintf(key, sizeof key, "prompt%zu", i);
    const float *ref = ref_rows(st, key, V, &rows);
    CHECK_MSG(ref && rows == np, "%s: logits.safetensors '%s' missing or not [%d, %d] F32", name, key, np, V);
    double worst = 0;
    for (int r = 0; ref && r < rows && r < np; r++) {
      double e = rel_l2(lg + (size_t)r * V, ref + (size_t)r * V, V);
      if (e > worst) worst = e;
    }
    CHECK_MSG(worst <= TOL, "%s: prompt %zu: worst per-position rel L2 %.3g > %g", name, i, worst, TOL);
    /* greedy continuation from the last prompt position, with the KV cache */
    snprintf(key, sizeof key, "gen%zu", i);
    int grows;
    const float *gref = ref_rows(st, key, V, &grows);
    float *cur = lg + (size_t)(np - 1) * V;
    double gworst = 0;
    int first_bad = -1, recomputed = 0;
    /* longrope (Phi3): when the sequence grows past original_max_position_embeddings, transformers' generate drops
     * its cache and recomputes every key with the long factors; the engine does the same (run.rope_recompute_len) */
    const int sw = ig_model_get_info(m)->rope_switch_len;
    int32_t all[512];
    memcpy(all, ids, sizeof(int32_t) * (size_t)np);
    for (int t = 0; t < ng; t++) {
      if (gref && t < grows && first_bad < 0) {
        double e = rel_l2(cur, gref + (size_t)t * V, V);
        if (e > gworst) gworst = e;
      }
      int32_t next = mu_argmax(cur, V);
      if (next != want[t] && first_bad < 0) first_bad = t;
      if (t + 1 == ng) break;
      int one = 1;
      tp = &want[t]; /* stay on the reference path */
      all[np + t] = want[t];
      if (sw > 0 && s.len == sw) { /* recompute all np + t + 1 tokens as one prompt */
        mu_seq_init(&s, (int)i, MU_CACHE_BLOCKS);
        tp = all, one = np + t + 1;
        recomputed++;
      }
      if (mu_step(m, &sp, &tp, &one, 1, 0, lg, err, sizeof err)) {
        CHECK_MSG(0, "%s: %s", name, err);
        break;
      }
      cur = lg;
    }
    CHECK_MSG(first_bad < 0, "%s: prompt %zu: greedy ids differ from position %d", name, i, first_bad);
    CHECK_MSG(gworst <= TOL, "%s: prompt %zu: generation logits rel L2 %.3g > %g", name, i, gworst, TOL);
    fprintf(stderr, "  %-28s prompt %zu: %d positions, worst rel L2 %.2e; greedy %d ids %s; gen logits %.2e%s\n", name,
            i, np, worst, ng, first_bad < 0 ? "identical" : "DIFFER", gworst,
            recomputed ? " (recomputed at the rotary switch)" : "");
  }
  free(lg);
done:
  ig_st_close(st);
  ig_model_free(m);
  if (be) be->destroy(be);
  json_decref(exp);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(void) {
  DIR *d = opendir(FIX_DIR);
  char *names[256];
  int n = 0;
  struct dirent *e;
  while (d && (e = readdir(d)) && n < 256) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s/config.json", FIX_DIR, e->d_name);
    struct stat sb;
    if (e->d_name[0] != '.' && stat(p, &sb) == 0) names[n++] = strdup(e->d_name);
  }
  if (d) closedir(d);
  CHECK_MSG(n > 0, "no fixtures under %s (tools/make_fixtures.py makes them)", FIX_DIR);
  qsort(names, (size_t)n, sizeof *names, cmp_str);
  for (int i = 0; i < n; i++) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", FIX_DIR, names[i]);
    run_fixture(p, names[i]);
    free(names[i]);
  }
  TEST_DONE();
}
