/* tests/engine: the engine end to end on stories260K (CPU backend, real tokenizer): greedy output equals
 * expected.json (ids and text); 32 concurrent requests of different prompts and lengths, greedy and seeded
 * sampling, each equal their solo run; a tiny KV budget forces preemption (stats say so) and outputs stay
 * identical; stop sequences on real text; cancellation frees blocks. */
#include "engine/engine.h"
#include "harness.h"
#include "model/model.h"
#include "test.h"
#include "tok/tok.h"
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <unistd.h>

#define MODEL_DIR IG_SHARED_DIR "/models/stories260K"

static ig_backend *be;
static ig_model *model;
static ig_tok *tok;
static int g_prefix, g_bs = 16; /* cfg.prefix_caching, cfg.block_size */

/* A fresh model each time: the engine sizes the KV cache once per model. */
static ig_engine *start(int kv_tokens, int chunk, int max_total) {
  char err[256];
  if (model) ig_model_free(model);
  model = NULL;
  int rc = ig_model_load(MODEL_DIR, be, &model, err, sizeof err);
  CHECK_MSG(rc == 0, "load: %s", err);
  if (rc) return NULL;
  ig_engine_config cfg = {0};
  cfg.max_batch_prefill_tokens = chunk;
  cfg.max_batch_total_tokens = kv_tokens;
  cfg.max_concurrent_requests = 64;
  cfg.max_waiting_tokens = 20;
  cfg.waiting_served_ratio = 0.3f;
  cfg.block_size = g_bs;
  cfg.max_total_tokens = max_total;
  cfg.prefix_caching = g_prefix;
  ig_engine *e = NULL;
  rc = ig_engine_create(model, tok, &cfg, &e, err, sizeof err);
  CHECK_MSG(rc == 0, "engine: %s", err);
  return e;
}

static void stop_engine(ig_engine *e) {
  ig_engine_destroy(e, 1000);
  ig_model_free(model);
  model = NULL;
}

static ig_request *submit(ig_engine *e, const int32_t *ids, int n, const ig_gen_params *p, const char *const *stops,
                          int n_stop) {
  char err[256];
  ig_request *r = h_request(ids, n, p, stops, n_stop);
  int rc = ig_engine_submit(e, r, err, sizeof err);
  CHECK_MSG(rc == 0, "submit: %s", err);
  return r;
}

/* ---- expected.json: greedy ids and text ------------------------------------------------------------- */
static void test_expected(void) {
  json_error_t jerr;
  json_t *root = json_load_file(MODEL_DIR "/expected.json", 0, &jerr);
  CHECK_MSG(root != NULL, "expected.json: %s", jerr.text);
  if (!root) return;
  ig_engine *e = start(0, 64, 256);
  json_t *prompts = json_object_get(root, "prompts");
  size_t np = json_array_size(prompts);
  ig_request *rs[8];
  h_out outs[8];
  memset(outs, 0, sizeof outs);
  int32_t ids[8][64];
  int nids[8];
  for (size_t i = 0; i < np && i < 8; i++) {
    json_t *pi = json_object_get(json_array_get(prompts, i), "prompt_ids");
    nids[i] = (int)json_array_size(pi);
    for (int j = 0; j < nids[i]; j++) ids[i][j] = (int32_t)json_integer_value(json_array_get(pi, (size_t)j));
    ig_gen_params p = h_params(200);
    p.want_logprobs = 1;
    rs[i] = submit(e, ids[i], nids[i], &p, NULL, 0); /* all at once: batched */
  }
  CHECK(h_wait_all(rs, outs, (int)np, 100) == 0);
  for (size_t i = 0; i < np && i < 8; i++) {
    json_t *pr = json_array_get(prompts, i);
    json_t *cont = json_object_get(pr, "continuation_ids");
    int bad = (int)json_array_size(cont) != outs[i].n;
    for (int j = 0; !bad && j < outs[i].n; j++) bad = outs[i].ids[j] != json_integer_value(json_array_get(cont, (size_t)j));
    CHECK_MSG(!bad, "prompt %zu: generated ids differ from expected.json", i);
    CHECK_EQ_INT(outs[i].finish, IG_FINISH_LENGTH);
    const char *want = json_string_value(json_object_get(pr, "continuation_text"));
    CHECK_EQ_STR(outs[i].text.p ? outs[i].text.p : "", want ? want : "?");
    ig_request_unref(rs[i]);
    ig_str_free(&outs[i].text);
  }
  json_decref(root);
  stop_engine(e);
}

/* ---- 32 concurrent requests vs their solo runs -------------------------------------------------------- */
#define NR 32
static const char *texts[] = {
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her "
    "friends and her dog Max.",
    "The little dog wanted to run and jump in the big green field near the river.",
    "Tom and Sue went to the store to buy some candy. They were very happy.",
    "One day, a bird flew into the house and sat on the table.",
};
static int32_t prompts[NR][128];
static int plen[NR];
static ig_gen_params params[NR];

static void make_workload(void) {
  for (int i = 0; i < NR; i++) {
    ig_tok_enc enc = {0};
    const char *t = texts[i % 4];
    ig_tok_encode(tok, t, strlen(t), 1, 0, &enc);
    int n = (int)enc.n;
    plen[i] = 2 + (i * 7) % (n - 1); /* 2 .. n tokens */
    if (plen[i] > n) plen[i] = n;
    memcpy(prompts[i], enc.ids, sizeof(int32_t) * (size_t)plen[i]);
    ig_tok_enc_free(&enc);
    params[i] = h_params(8 + (i * 13) % 90);
    params[i].seed = 42 + (uint64_t)i;
    switch (i % 4) {
    case 0: break;
    case 1: params[i].do_sample = 1; break;
    case 2:
      params[i].temperature = 0.7f;
      params[i].top_k = 20;
      params[i].top_p = 0.9f;
      params[i].repetition_penalty = 1.2f;
      params[i].top_n_tokens = 2;
      break;
    case 3:
      params[i].do_sample = 1;
      params[i].typical_p = 0.95f;
      params[i].frequency_penalty = 0.3f;
      params[i].watermark = 1;
      params[i].prefill_logprobs = 1;
      break;
    }
  }
}

static void run_all(ig_engine *e, h_out *outs, int together, float **plp) {
  ig_request *rs[NR];
  for (int i = 0; i < NR; i++) {
    rs[i] = submit(e, prompts[i], plen[i], &params[i], NULL, 0);
    if (!together) CHECK(h_wait_all(&rs[i], &outs[i], 1, 60) == 0);
  }
  if (together) CHECK(h_wait_all(rs, outs, NR, 100) == 0);
  for (int i = 0; i < NR; i++) {
    if (plp && rs[i]->prefill_logprobs) {
      plp[i] = malloc(sizeof(float) * (size_t)plen[i]);
      memcpy(plp[i], rs[i]->prefill_logprobs, sizeof(float) * (size_t)plen[i]);
    }
    ig_request_unref(rs[i]);
  }
}

static void test_batching(void) {
  static h_out solo[NR], batch[NR], tiny[NR];
  float *plp_solo[NR] = {0}, *plp_tiny[NR] = {0};
  make_workload();
  ig_engine *e = start(0, 16, 256);
  run_all(e, solo, 0, plp_solo);
  for (int i = 0; i < NR; i++) CHECK(solo[i].n >= 1);
  run_all(e, batch, 1, NULL);
  for (int i = 0; i < NR; i++) CHECK_MSG(h_same(&solo[i], &batch[i]), "request %d differs when batched", i);
  const ig_engine_stats *st = ig_engine_get_stats(e);
  for (int k = 0; k < 200 && atomic_load(&st->kv_blocks_used); k++) usleep(1000);
  CHECK_EQ_INT(atomic_load(&st->kv_blocks_used), 0);
  stop_engine(e);

  /* The prefix cache (blocks of 4 tokens; the CPU computes every row the same however chunked, so prompt and
   * generated rows are shared): one at a time, each request finds the earlier prompts of its text; batched. The
   * outputs are the same bits as without the cache. */
  static h_out pc[NR];
  g_prefix = 1, g_bs = 4;
  for (int together = 0; together < 2; together++) {
    e = start(0, 16, 256);
    memset(pc, 0, sizeof pc);
    run_all(e, pc, together, NULL);
    for (int i = 0; i < NR; i++) CHECK_MSG(h_same(&solo[i], &pc[i]), "request %d differs with the prefix cache", i);
    st = ig_engine_get_stats(e);
    long long hits = atomic_load(&st->prefix_hit_tokens);
    fprintf(stderr, "prefix cache (%s): %lld of %lld prompt tokens found cached\n", together ? "batched" : "solo", hits,
            (long long)atomic_load(&st->prefix_query_tokens));
    if (!together) CHECK(hits > 100);
    stop_engine(e);
    for (int i = 0; i < NR; i++) ig_str_free(&pc[i].text);
  }
  g_prefix = 0, g_bs = 16;

  /* KV of 320 tokens (20 blocks) for 32 requests of up to 256 tokens: preemption. */
  e = start(320, 16, 256);
  st = ig_engine_get_stats(e);
  run_all(e, tiny, 1, plp_tiny);
  for (int i = 0; i < NR; i++) CHECK_MSG(h_same(&solo[i], &tiny[i]), "request %d differs under preemption", i);
  CHECK(atomic_load(&st->preemptions) > 0);
  fprintf(stderr, "tiny KV: %lld preemptions in %lld steps\n", (long long)atomic_load(&st->preemptions),
          (long long)atomic_load(&st->steps));
  for (int i = 0; i < NR; i++) {
    if (!plp_solo[i]) continue;
    CHECK(plp_tiny[i] != NULL);
    for (int j = 1; plp_tiny[i] && j < plen[i]; j++)
      CHECK_MSG(plp_solo[i][j] == plp_tiny[i][j] && plp_solo[i][j] <= 0, "req %d pos %d: %.9g vs %.9g", i, j, plp_solo[i][j], plp_tiny[i][j]);
  }
  for (int k = 0; k < 200 && atomic_load(&st->kv_blocks_used); k++) usleep(1000);
  CHECK_EQ_INT(atomic_load(&st->kv_blocks_used), 0);
  stop_engine(e);
  for (int i = 0; i < NR; i++) {
    ig_str_free(&solo[i].text);
    ig_str_free(&batch[i].text);
    ig_str_free(&tiny[i].text);
    free(plp_solo[i]);
    free(plp_tiny[i]);
  }
}

/* ---- stop sequences and cancellation on real text ----------------------------------------------------- */
static void test_stop_and_cancel(void) {
  ig_engine *e = start(0, 64, 256);
  const ig_engine_stats *st = ig_engine_get_stats(e);
  int32_t prompt[] = {1, 403, 407, 261, 378}; /* "Once upon a time" */
  ig_gen_params p = h_params(100);
  h_out ref = {0}, got = {0};
  ig_request *r = submit(e, prompt, 5, &p, NULL, 0);
  CHECK(h_wait_all(&r, &ref, 1, 60) == 0);
  ig_request_unref(r);
  const char *stops[] = {"Lily. She"};
  r = submit(e, prompt, 5, &p, stops, 1);
  CHECK(h_wait_all(&r, &got, 1, 60) == 0);
  ig_request_unref(r);
  const char *at = ref.text.p ? strstr(ref.text.p, stops[0]) : NULL;
  CHECK(at != NULL);
  CHECK_EQ_INT(got.finish, IG_FINISH_STOP);
  if (at) {
    CHECK_EQ_INT(got.text.len, (size_t)(at - ref.text.p));
    CHECK(strncmp(got.text.p, ref.text.p, got.text.len) == 0);
  }
  /* Cancellation: blocks back to zero. */
  h_out c = {0};
  ig_gen_params lp = h_params(250);
  lp.ignore_eos = 1;
  r = submit(e, prompt, 5, &lp, NULL, 0);
  for (int k = 0; k < 5000 && c.n < 3; k++) {
    h_drain(r, &c);
    usleep(200);
  }
  atomic_store(&r->cancelled, 1);
  CHECK(h_wait_all(&r, &c, 1, 30) == 0);
  CHECK(c.finish == IG_FINISH_CANCELLED || (c.finish == IG_FINISH_LENGTH && c.n == 250));
  CHECK_EQ_INT(atomic_load(&st->kv_blocks_used), 0);
  ig_request_unref(r);
  ig_str_free(&ref.text);
  ig_str_free(&got.text);
  ig_str_free(&c.text);
  stop_engine(e);
}

int main(void) {
  char err[256];
  be = ig_backend_cpu_create(2, err, sizeof err);
  CHECK_MSG(be != NULL, "backend: %s", err);
  int rc = ig_tok_load(&tok, MODEL_DIR, err, sizeof err);
  CHECK_MSG(rc == 0, "tokenizer: %s", err);
  if (!be || rc) TEST_DONE();
  test_expected();
  test_batching();
  test_stop_and_cancel();
  ig_tok_free(tok);
  be->destroy(be);
  TEST_DONE();
}
