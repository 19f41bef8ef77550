/* tests/engine: the engine end to end on stories260K (CPU backend, real tokenizer): greedy output equals
 * expected.json (ids and text); 32 concurrent requests of different prompts and lengths, greedy and seeded
 * sampling, each equal their solo run; a tiny KV budget forces preemption (stats say so) and outputs stay
 * identical; stop sequences on real text; cancellation frees blocks. --speculate: greedy and seeded sampling
 * requests give the same tokens, logprobs and text in fewer steps, beside ones that do not draft, however their ends
 * (length, stop sequences, stop ids, EOS) fall, on the serial and on the pipelined engine path (a runner over the CPU
 * model that samples as a device would and keeps each step in flight until its end). */
#include "engine/engine_int.h"
#include "engine/sampler.h"
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
static int g_spec;               /* cfg.speculate */
static int g_piped;              /* the pipelined engine path: start() makes the engine over piped_runner() */
static ig_engine_runner piped_runner(void);

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
  cfg.speculate = g_spec;
  ig_engine *e = NULL;
  if (g_piped) {
    ig_engine_runner run = piped_runner();
    ig_engine_text text = ig_engine_tok_text(tok);
    rc = ig_engine_create_custom(&run, &text, &cfg, &e, err, sizeof err);
  } else {
    rc = ig_engine_create(model, tok, &cfg, &e, err, sizeof err);
  }
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

/* ---- the pipelined engine path on the CPU model ------------------------------------------------------------- */
/* A runner over the CPU model with forward_sample_begin/end, as a device backend has: begin runs the step, samples
 * each ig_sample_row with the host sampler from what the row carries (as the device sampler would), copies the host
 * rows and keeps the results to itself until end. The engine then takes its pipelined path (step_async) on the real
 * model's logits. */
static struct {
  float *lg;
  size_t cap;
  ig_sample_out *res, *out;
  int n, in_flight;
} pp;

static int pr_forward_sample(void *ctx, const ig_batch *b, const ig_sample_row *rows, int n_rows, ig_sample_out *out,
                             const int32_t *host_rows, int n_host, float *host_logits, char *err, size_t errlen) {
  const int V = ig_model_get_info(ctx)->vocab_size;
  if ((size_t)b->n_out * V > pp.cap) {
    pp.cap = (size_t)b->n_out * V;
    pp.lg = realloc(pp.lg, sizeof(float) * pp.cap);
  }
  int rc = ig_model_forward(ctx, b, pp.lg, err, errlen);
  if (rc || (rc = h_sample_rows(V, pp.lg, rows, n_rows, out))) return rc;
  for (int k = 0; k < n_host; k++)
    memcpy(host_logits + (size_t)k * V, pp.lg + (size_t)host_rows[k] * V, sizeof(float) * (size_t)V);
  return 0;
}
static int pr_begin(void *ctx, const ig_batch *b, const ig_sample_row *rows, int n_rows, ig_sample_out *out,
                    const int32_t *host_rows, int n_host, float *host_logits, char *err, size_t errlen) {
  CHECK_MSG(!pp.in_flight, "begin while a step is in flight");
  pp.res = realloc(pp.res, sizeof(ig_sample_out) * (size_t)(n_rows + 1));
  int rc = pr_forward_sample(ctx, b, rows, n_rows, pp.res, host_rows, n_host, host_logits, err, errlen);
  if (rc) return rc;
  for (int i = 0; i < n_rows; i++) memset(&out[i], 0, sizeof out[i]), out[i].id = -7; /* read before end: caught */
  pp.out = out, pp.n = n_rows, pp.in_flight = 1;
  return 0;
}
static int pr_end(void *ctx, char *err, size_t errlen) {
  CHECK_MSG(pp.in_flight, "end without begin");
  pp.in_flight = 0;
  if (pp.n) memcpy(pp.out, pp.res, sizeof(ig_sample_out) * (size_t)pp.n);
  return 0;
}
static ig_engine_runner piped_runner(void) {
  ig_engine_runner run = ig_engine_model_runner(model);
  run.sampler_threads = -1;
  run.forward_sample = pr_forward_sample;
  run.forward_sample_begin = pr_begin;
  run.forward_sample_end = pr_end;
  return run;
}

/* ---- --speculate ------------------------------------------------------------------------------------------ */
/* One workload, run whole (all requests at once) on engines that differ in --speculate, the engine path, the KV
 * budget or the prefix cache: every output (ids, logprobs, top tokens' count, text, finish reason) must be the
 * same. Greedy requests of real text (stories260K repeats its phrases: drafts are taken) end on length, EOS, stop
 * sequences and stop ids anywhere in their runs of accepted drafts; beside them sampled (seeded) requests and greedy
 * ones that cannot draft (repetition penalty, watermark). */
#define NS 64
typedef struct spec_req {
  int32_t prompt[128];
  int n;
  ig_gen_params p;
  char stop[16];
  int32_t stop_id; /* -1: none */
} spec_req;
static spec_req sreq[NS];
static int n_sreq;

typedef struct spec_stats {
  long long steps, drafted, accepted;
} spec_stats;

static void spec_run(h_out *outs, spec_stats *ss, int kv_tokens) {
  memset(outs, 0, sizeof(h_out) * NS);
  ig_engine *e = start(kv_tokens, 64, 256);
  if (!e) return;
  ig_request *rs[NS];
  char err[256];
  for (int i = 0; i < n_sreq; i++) {
    const char *stops[1] = {sreq[i].stop};
    rs[i] = h_request(sreq[i].prompt, sreq[i].n, &sreq[i].p, stops, sreq[i].stop[0] ? 1 : 0);
    if (sreq[i].stop_id >= 0) {
      rs[i]->params.stop_ids = malloc(sizeof(int32_t));
      rs[i]->params.stop_ids[0] = sreq[i].stop_id;
      rs[i]->params.n_stop_ids = 1;
    }
    int rc = ig_engine_submit(e, rs[i], err, sizeof err);
    CHECK_MSG(rc == 0, "submit %d: %s", i, err);
  }
  CHECK(h_wait_all(rs, outs, n_sreq, 300) == 0);
  for (int i = 0; i < n_sreq; i++) ig_request_unref(rs[i]);
  const ig_engine_stats *st = ig_engine_get_stats(e);
  for (int k = 0; k < 200 && atomic_load(&st->kv_blocks_used); k++) usleep(1000);
  CHECK_EQ_INT(atomic_load(&st->kv_blocks_used), 0);
  CHECK_EQ_INT(ig_engine_get_config(e)->speculate, g_spec);
  ss->steps = atomic_load(&st->steps);
  ss->drafted = atomic_load(&st->spec_draft_tokens);
  ss->accepted = atomic_load(&st->spec_accepted_tokens);
  stop_engine(e);
}

static void spec_free(h_out *o) {
  for (int i = 0; i < NS; i++) ig_str_free(&o[i].text);
}

static int spec_same(const h_out *a, const h_out *b) {
  return h_same(a, b) && a->max_top == b->max_top && memcmp(a->logprobs, b->logprobs, sizeof(float) * (size_t)a->n) == 0;
}

/* lp: logprobs compared too (bitwise). Not under preemption, nor with the prefix cache: a recomputed row, or a block
 * another request computed, may come from the CPU's sgemm (a sequence's piece of 16 rows or more) where the reference
 * computed it through its matvec, and the last bits differ (with or without --speculate) */
static void spec_check(const h_out *ref, const h_out *got, const char *what, int lp) {
  for (int i = 0; i < n_sreq; i++) {
    CHECK_MSG(lp ? spec_same(&ref[i], &got[i]) : h_same(&ref[i], &got[i]),
              "%s: request %d differs (%d tokens, finish %d; reference %d, finish %d)", what, i, got[i].n,
              got[i].finish, ref[i].n, ref[i].finish);
  }
}

static void test_speculate(void) {
  static h_out ref1[NS];
  /* the reference greedy run of "Once upon a time" */
  const int32_t once[] = {1, 403, 407, 261, 378};
  n_sreq = 1;
  memcpy(sreq[0].prompt, once, sizeof once);
  sreq[0].n = 5, sreq[0].p = h_params(200), sreq[0].stop_id = -1;
  spec_stats s0;
  spec_run(ref1, &s0, 0);
  const h_out *R = &ref1[0];
  CHECK(R->n >= 80);
  if (R->n < 80) return;
  /* the workload */
  n_sreq = 0;
  for (int t = 0; t < 5; t++) { /* long greedy runs (some with logprobs and top tokens: they draft too) */
    spec_req *q = &sreq[n_sreq++];
    memset(q, 0, sizeof *q);
    q->stop_id = -1;
    if (t < 4) {
      ig_tok_enc enc = {0};
      ig_tok_encode(tok, texts[t], strlen(texts[t]), 1, 0, &enc);
      q->n = (int)enc.n < 40 ? (int)enc.n : 40;
      memcpy(q->prompt, enc.ids, sizeof(int32_t) * (size_t)q->n);
      ig_tok_enc_free(&enc);
    } else {
      memcpy(q->prompt, once, sizeof once), q->n = 5;
    }
    q->p = h_params(200);
    if (t & 1) q->p.want_logprobs = 1, q->p.top_n_tokens = 3;
  }
  for (int t = 0; t < 4; t++) { /* sampled requests (they draft too), and two that never draft */
    spec_req *q = &sreq[n_sreq++];
    memset(q, 0, sizeof *q);
    q->stop_id = -1;
    memcpy(q->prompt, once, sizeof once), q->n = 5;
    q->p = h_params(120);
    q->p.seed = 7 + (uint64_t)t;
    if (t == 0) q->p.do_sample = 1;
    if (t == 1) q->p.temperature = 0.7f, q->p.top_k = 20, q->p.want_logprobs = 1;
    if (t == 2) q->p.repetition_penalty = 1.3f;
    if (t == 3) q->p.watermark = 1;
  }
  for (int c = 2; c <= 40; c++) { /* max_new_tokens at every point of the first 40 tokens */
    spec_req *q = &sreq[n_sreq++];
    memset(q, 0, sizeof *q);
    q->stop_id = -1;
    memcpy(q->prompt, once, sizeof once), q->n = 5;
    q->p = h_params(c);
  }
  for (int j = 0; j < 8; j++) { /* stop sequences: 5 bytes of the reference text, from 10 to 185 bytes in */
    spec_req *q = &sreq[n_sreq++];
    memset(q, 0, sizeof *q);
    q->stop_id = -1;
    memcpy(q->prompt, once, sizeof once), q->n = 5;
    q->p = h_params(200);
    size_t off = 10 + 25 * (size_t)j;
    if (off + 5 <= R->text.len) memcpy(q->stop, R->text.p + off, 5);
  }
  const int at[] = {12, 27, 45, 70}; /* stop ids: the reference's tokens there (their first occurrence ends it) */
  for (int j = 0; j < 4; j++) {
    spec_req *q = &sreq[n_sreq++];
    memset(q, 0, sizeof *q);
    memcpy(q->prompt, once, sizeof once), q->n = 5;
    q->p = h_params(200);
    q->stop_id = R->ids[at[j]];
  }
  CHECK(n_sreq <= NS);

  static h_out a[NS], b[NS], c[NS];
  spec_stats sa, sb, sc;
  g_spec = 0;
  spec_run(a, &sa, 0);
  int n_eos = 0, n_stop = 0;
  for (int i = 0; i < n_sreq; i++) n_eos += a[i].finish == IG_FINISH_EOS, n_stop += a[i].finish == IG_FINISH_STOP;
  for (int i = 9; i < 48; i++) CHECK(a[i].n == i - 7 && a[i].finish == IG_FINISH_LENGTH);
  CHECK(n_eos >= 1 && n_stop >= 8);
  g_spec = 4;
  spec_run(b, &sb, 0);
  spec_check(a, b, "--speculate 4", 1);
  fprintf(stderr, "speculate 4: %lld steps (%lld without), %lld draft tokens, %lld accepted; %d of %d requests ended "
          "on EOS, %d on a stop sequence or id\n", sb.steps, sa.steps, sb.drafted, sb.accepted, n_eos, n_sreq, n_stop);
  CHECK(sa.drafted == 0 && sb.drafted > 0 && sb.accepted > 0 && sb.accepted <= sb.drafted);
  CHECK(sb.steps < sa.steps);
  /* a KV budget of 1,024 tokens (preemption), and the prefix cache (blocks of 4: drafted rows must never be cached) */
  spec_run(c, &sc, 1024);
  spec_check(a, c, "--speculate 4, tiny KV", 0);
  CHECK(sc.accepted > 0);
  spec_free(c);
  g_prefix = 1, g_bs = 4;
  spec_run(c, &sc, 0);
  spec_check(a, c, "--speculate 4, prefix cache", 0);
  spec_free(c);
  g_prefix = 0, g_bs = 16;
  /* the pipelined path, without and with drafts */
  g_piped = 1;
  g_spec = 0;
  spec_run(c, &sc, 0);
  spec_check(a, c, "pipelined", 1);
  spec_free(c);
  g_spec = 15;
  spec_run(c, &sc, 0);
  spec_check(a, c, "pipelined, --speculate 15", 1);
  fprintf(stderr, "pipelined, speculate 15: %lld steps, %lld draft tokens, %lld accepted\n", sc.steps, sc.drafted,
          sc.accepted);
  CHECK(sc.accepted > 0 && sc.steps < sa.steps);
  CHECK(!pp.in_flight);
  g_piped = 0, g_spec = 0;
  free(pp.lg), free(pp.res);
  memset(&pp, 0, sizeof pp);
  spec_free(ref1), spec_free(a), spec_free(b), spec_free(c);
  /* Sampled requests alone (seeded, temperatures 0.3 to 0.9, top-k / top-p): a verify row draws with the uniform of
   * the position it stands for, so the same draws, the same tokens and logprobs; drafts are accepted (the model's
   * text repeats at these temperatures) */
  n_sreq = 0;
  for (int t = 0; t < 8; t++) {
    spec_req *q = &sreq[n_sreq++];
    memset(q, 0, sizeof *q);
    q->stop_id = -1;
    memcpy(q->prompt, once, sizeof once), q->n = 5;
    q->p = h_params(160);
    q->p.do_sample = 1, q->p.seed = 100 + (uint64_t)t, q->p.temperature = 0.3f + 0.2f * (float)(t % 4);
    q->p.want_logprobs = 1;
    if (t & 4) q->p.top_k = 40, q->p.top_p = 0.9f;
  }
  g_spec = 0;
  spec_run(a, &sa, 0);
  g_spec = 4;
  spec_run(b, &sb, 0);
  spec_check(a, b, "sampled, --speculate 4", 1);
  fprintf(stderr, "sampled, speculate 4: %lld steps (%lld without), %lld draft tokens, %lld accepted\n", sb.steps,
          sa.steps, sb.drafted, sb.accepted);
  CHECK(sb.accepted > 0 && sb.steps < sa.steps);
  g_spec = 0;
  spec_free(a), spec_free(b);
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
  test_speculate();
  ig_tok_free(tok);
  be->destroy(be);
  TEST_DONE();
}
