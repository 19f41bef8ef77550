/* tests/tp/test_tp_engine: the engine, unchanged, on a tensor-parallel model. stories260K through ig_model_load_tp
 * (CPU, N = 2 and 4) serves 8 concurrent greedy requests of different lengths (continuous batching, chunked
 * prefill, a KV budget small enough to preempt) and every request's ids equal those of the unsharded model. */
#include "engine/engine.h"
#include "harness.h"
#include "model/model.h"
#include "test.h"

#define MODEL_DIR IG_SHARED_DIR "/models/stories260K"
#define NREQ 8

static void run(int n_shard, h_out *outs) {
  char err[512];
  ig_backend *be = NULL;
  ig_model *m = NULL;
  if (n_shard == 1) {
    be = ig_backend_cpu_create(1, err, sizeof err);
    CHECK_MSG(be && ig_model_load(MODEL_DIR, be, &m, err, sizeof err) == 0, "%s", err);
  } else {
    ig_model_tp_opts o = {.num_shard = n_shard, .device = "cpu", .threads = n_shard};
    CHECK_MSG(ig_model_load_tp(MODEL_DIR, &o, &m, err, sizeof err) == 0, "N=%d: %s", n_shard, err);
  }
  ig_engine_config cfg = {0};
  cfg.max_batch_prefill_tokens = 24;
  cfg.max_batch_total_tokens = 384; /* less than 8 requests need at once: preemption */
  cfg.max_concurrent_requests = 64;
  cfg.block_size = 16;
  cfg.max_total_tokens = 256;
  ig_engine *e = NULL;
  if (m && ig_engine_create(m, NULL, &cfg, &e, err, sizeof err)) CHECK_MSG(0, "engine: %s", err);
  if (e) {
    ig_request *rs[NREQ];
    for (int i = 0; i < NREQ; i++) {
      int32_t ids[64];
      int n = 3 + 7 * i % 41;
      ids[0] = 1;
      for (int j = 1; j < n; j++) ids[j] = (int32_t)(3 + (j * 37 + i * 11) % 500);
      ig_gen_params p = h_params(40 + 5 * i);
      p.ignore_eos = 1;
      rs[i] = h_request(ids, n, &p, NULL, 0);
      CHECK_MSG(ig_engine_submit(e, rs[i], err, sizeof err) == 0, "submit: %s", err);
    }
    CHECK(h_wait_all(rs, outs, NREQ, 120) == 0);
    long long pre = atomic_load(&ig_engine_get_stats(e)->preemptions);
    CHECK_MSG(pre > 0, "N=%d: no preemption (the KV budget is meant to force some)", n_shard);
    fprintf(stderr, "  N=%d: %lld preemptions\n", n_shard, pre);
    for (int i = 0; i < NREQ; i++) ig_request_unref(rs[i]);
    ig_engine_destroy(e, 1000);
  }
  ig_model_free(m);
  if (be) be->destroy(be);
}

int main(void) {
  static h_out ref[NREQ], got[NREQ];
  run(1, ref);
  for (int i = 0; i < NREQ; i++) CHECK_EQ_INT(ref[i].n, 40 + 5 * i);
  for (int n = 2; n <= 4; n *= 2) {
    memset(got, 0, sizeof got);
    run(n, got);
    int same = 0;
    for (int i = 0; i < NREQ; i++) {
      same += h_same(&got[i], &ref[i]);
      ig_str_free(&got[i].text);
    }
    CHECK_MSG(same == NREQ, "N=%d: %d of %d requests equal the unsharded engine's", n, same, NREQ);
    fprintf(stderr, "  engine on N=%d shards: %d/%d requests identical to N=1\n", n, same, NREQ);
  }
  for (int i = 0; i < NREQ; i++) ig_str_free(&ref[i].text);
  TEST_DONE();
}
