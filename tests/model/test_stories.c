/* tests/model/test_stories: stories260K (a real trained Llama, f32) must reproduce the reference greedy
 * continuations of ../shared/models/stories260K/expected.json exactly (200 tokens per prompt, KV cache). */
#include "model_util.h"
#include "test.h"
#include <jansson.h>

int main(void) {
  const char *dir = IG_SHARED_DIR "/models/stories260K";
  char err[512];
  json_error_t je;
  json_t *exp = json_load_file(IG_SHARED_DIR "/models/stories260K/expected.json", 0, &je);
  CHECK(exp != NULL);
  ig_backend *be = ig_backend_cpu_create(2, err, sizeof err);
  ig_model *m = NULL;
  CHECK(be && ig_model_load(dir, be, &m, err, sizeof err) == 0);
  if (!exp || !m) {
    fprintf(stderr, "%s\n", err);
    TEST_DONE();
  }
  const ig_model_info *in = ig_model_get_info(m);
  CHECK_EQ_INT(in->vocab_size, 512);
  CHECK_EQ_INT(in->n_layers, 5);
  CHECK(ig_model_kv_init(m, MU_CACHE_BLOCKS, MU_BLOCK, err, sizeof err) == 0);
  json_t *prompts = json_object_get(exp, "prompts");
  float *logits = malloc(sizeof(float) * 512);
  for (size_t p = 0; p < json_array_size(prompts); p++) {
    json_t *pr = json_array_get(prompts, p), *pids = json_object_get(pr, "prompt_ids"),
           *cont = json_object_get(pr, "continuation_ids");
    int np = (int)json_array_size(pids), nc = (int)json_array_size(cont);
    int32_t ids[16];
    for (int i = 0; i < np; i++) ids[i] = (int32_t)json_integer_value(json_array_get(pids, i));
    mu_seq s, *sp = &s;
    mu_seq_init(&s, (int)p, MU_CACHE_BLOCKS);
    const int32_t *tp = ids;
    CHECK(mu_step(m, &sp, &tp, &np, 1, 0, logits, err, sizeof err) == 0);
    int first_bad = -1;
    for (int t = 0; t < nc; t++) {
      int32_t next = mu_argmax(logits, 512);
      if (next != json_integer_value(json_array_get(cont, t)) && first_bad < 0) first_bad = t;
      if (t == 0) {
        double top = json_real_value(json_array_get(
            json_object_get(json_object_get(pr, "first_generated_position_logits"), "top5_values"), 0));
        CHECK_NEAR(logits[next], top, 1e-4);
      }
      int one = 1;
      tp = &next;
      if (t + 1 < nc && mu_step(m, &sp, &tp, &one, 1, 0, logits, err, sizeof err)) {
        CHECK_MSG(0, "step failed: %s", err);
        break;
      }
    }
    CHECK_MSG(first_bad < 0, "prompt %zu: greedy continuation differs from token %d", p, first_bad);
  }
  free(logits);
  ig_model_free(m);
  be->destroy(be);
  json_decref(exp);
  TEST_DONE();
}
