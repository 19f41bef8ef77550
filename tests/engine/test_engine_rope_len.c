/* tests/engine/test_engine_rope_len: the engine on models whose rotary frequencies depend on the sequence's length,
 * against transformers' greedy ids (tests/fixtures/engine, tools/make_fixtures.py), with prompts prefilled in
 * 16-token chunks beside each other's decode rows:
 *  - phi3-longrope: 48-token prompts (short factors) whose decoding passes original_max_position_embeddings (64),
 *    where every key is recomputed with the long factors (run.rope_recompute_len);
 *  - phi3-longrope-long: prompts longer than the original length, so every chunk takes the long factors of the
 *    whole prompt (ig_batch.rope_len), as transformers' one forward over it.
 * (Dynamic NTK scaling changes past max_position_embeddings, which the engine does not serve past; the model-level
 * fixture test covers it.) The prefix cache, asked for, stays off for these models (no tokens queried). */
#include "engine/engine.h"
#include "harness.h"
#include "model/model.h"
#include "test.h"
#include <jansson.h>

#define FIX_DIR IG_SOURCE_DIR "/tests/fixtures/engine/"

static void run_fixture(const char *name) {
  char dir[512], p[600], err[512];
  snprintf(dir, sizeof dir, FIX_DIR "%s", name);
  snprintf(p, sizeof p, "%s/expected.json", dir);
  json_error_t je;
  json_t *exp = json_load_file(p, 0, &je);
  CHECK_MSG(exp != NULL, "%s: %s", p, je.text);
  ig_backend *be = ig_backend_cpu_create(2, err, sizeof err);
  ig_model *m = NULL;
  CHECK_MSG(be && ig_model_load(dir, be, &m, err, sizeof err) == 0, "%s: %s", name, err);
  ig_engine *e = NULL;
  if (m) {
    ig_engine_config cfg = {0};
    cfg.max_batch_prefill_tokens = 16;
    cfg.max_batch_total_tokens = 1024;
    cfg.max_concurrent_requests = 8;
    cfg.block_size = 16;
    cfg.max_total_tokens = 128;
    cfg.prefix_caching = 1;
    CHECK_MSG(ig_engine_create(m, NULL, &cfg, &e, err, sizeof err) == 0, "%s: engine: %s", name, err);
  }
  json_t *prompts = json_object_get(exp, "prompts"), *greedy = json_object_get(exp, "greedy");
  size_t n = json_array_size(prompts);
  if (e && n == 2 && json_array_size(greedy) == 2) {
    ig_request *rs[2];
    static h_out outs[2];
    memset(outs, 0, sizeof outs);
    for (size_t i = 0; i < n; i++) {
      json_t *pa = json_array_get(prompts, i);
      int32_t ids[256];
      int np = 0;
      for (size_t j = 0; j < json_array_size(pa) && np < 256; j++) ids[np++] = (int32_t)json_integer_value(json_array_get(pa, j));
      ig_gen_params gp = h_params((int)json_array_size(json_array_get(greedy, i)));
      gp.ignore_eos = 1;
      rs[i] = h_request(ids, np, &gp, NULL, 0);
      CHECK_MSG(ig_engine_submit(e, rs[i], err, sizeof err) == 0, "%s: submit: %s", name, err);
    }
    CHECK(h_wait_all(rs, outs, 2, 120) == 0);
    for (size_t i = 0; i < n; i++) {
      json_t *ga = json_array_get(greedy, i);
      int same = outs[i].n == (int)json_array_size(ga), first = -1;
      for (int t = 0; same && t < outs[i].n; t++)
        if (outs[i].ids[t] != (int32_t)json_integer_value(json_array_get(ga, (size_t)t))) same = 0, first = t;
      CHECK_MSG(same, "%s: prompt %zu: %d ids, differ from transformers' at %d", name, i, outs[i].n, first);
      fprintf(stderr, "  %-22s prompt %zu: %d greedy ids %s\n", name, i, outs[i].n, same ? "identical" : "DIFFER");
      ig_str_free(&outs[i].text);
      ig_request_unref(rs[i]);
    }
    CHECK_MSG(atomic_load(&ig_engine_get_stats(e)->prefix_query_tokens) == 0, "%s: the prefix cache was used", name);
  } else {
    CHECK_MSG(0, "%s: expected.json: want 2 prompts and 2 greedy lists", name);
  }
  if (e) ig_engine_destroy(e, 1000);
  ig_model_free(m);
  if (be) be->destroy(be);
  json_decref(exp);
}

int main(void) {
  run_fixture("phi3-longrope-f32");
  run_fixture("phi3-longrope-long-f32");
  TEST_DONE();
}
