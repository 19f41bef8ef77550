/* tests/model/test_batching: the forward of a general batch. The same three sequences (stories260K) run
 * (A) one at a time, (B) interleaved in one batch, (C) with the prompt prefilled in chunks, and (D) staggered
 * as a continuous-batching engine would (chunks of one sequence beside decode rows of others). With every
 * segment on the matvec kernel (IGNIS_CPU_GEMM_MIN_ROWS large) all four give bitwise identical logits; with
 * the default kernels A == B bitwise (kernel picked per sequence) and C, D agree within 1e-5. Also the model's
 * sampling entry points over a backend whose sample results stay in flight (test_sample_async). */
#include "model_util.h"
#include "test.h"
#include <jansson.h>
#include <math.h>

#define NS 3
#define NDEC 8
static const int plen[NS] = {5, 20, 40};
static int32_t toks[NS][64];
static int V;

/* logits[s][p] for every position p of every sequence */
typedef struct {
  float *l[NS];
} run_out;

static float *at(run_out *r, int s, int p) { return r->l[s] + (size_t)p * V; }

static int total_len(int s) { return plen[s] + NDEC; }

/* Runs a schedule: sched(step, s) gives how many tokens sequence s feeds at that step (0 = idle). */
typedef int (*sched_fn)(int step, int s, int done);

static int run(ig_model *m, sched_fn sched, run_out *out) {
  char err[512];
  mu_seq seqs[NS];
  for (int s = 0; s < NS; s++) {
    mu_seq_init(&seqs[s], s, MU_CACHE_BLOCKS);
    out->l[s] = malloc(sizeof(float) * (size_t)V * (size_t)total_len(s));
  }
  float *lg = malloc(sizeof(float) * (size_t)V * 256);
  for (int step = 0; step < 200; step++) {
    mu_seq *sp[NS];
    const int32_t *tp[NS];
    int n[NS], ids[NS], k = 0;
    for (int s = 0; s < NS; s++) {
      int want = sched(step, s, seqs[s].len);
      if (want > total_len(s) - seqs[s].len) want = total_len(s) - seqs[s].len;
      if (want <= 0) continue;
      sp[k] = &seqs[s];
      tp[k] = toks[s] + seqs[s].len;
      n[k] = want;
      ids[k++] = s;
    }
    if (!k) {
      int all = 1;
      for (int s = 0; s < NS; s++) all &= seqs[s].len == total_len(s);
      if (all) break;
      continue;
    }
    int start[NS];
    for (int i = 0; i < k; i++) start[i] = sp[i]->len;
    if (mu_step(m, sp, tp, n, k, 1, lg, err, sizeof err)) {
      fprintf(stderr, "step failed: %s\n", err);
      free(lg);
      return -1;
    }
    for (int i = 0, r = 0; i < k; i++)
      for (int t = 0; t < n[i]; t++, r++) memcpy(at(out, ids[i], start[i] + t), lg + (size_t)r * V, sizeof(float) * V);
  }
  free(lg);
  return 0;
}

static void free_run(run_out *r) {
  for (int s = 0; s < NS; s++) free(r->l[s]);
}

/* A: one sequence at a time (prompt whole, then decode) */
static int sched_alone(int step, int s, int done) {
  int first = 0; /* sequence s runs during steps [first, first + 1 + NDEC) */
  for (int i = 0; i < s; i++) first += 1 + NDEC;
  if (step < first || step >= first + 1 + NDEC) return 0;
  return done == 0 ? plen[s] : 1;
}
/* B: all together */
static int sched_together(int step, int s, int done) { return done == 0 ? plen[s] : 1; }
/* C: alone, prompts in chunks of 7 */
static int sched_chunks(int step, int s, int done) {
  int first = 0;
  for (int i = 0; i < s; i++) first += (plen[i] + 6) / 7 + NDEC;
  if (step < first) return 0;
  return done < plen[s] ? (plen[s] - done < 7 ? plen[s] - done : 7) : 1;
}
/* D: staggered: sequence s joins at step 2s, prompts in chunks of 3 + s*9 beside others' decode rows */
static int sched_staggered(int step, int s, int done) {
  if (step < 2 * s) return 0;
  int c = 3 + s * 9;
  return done < plen[s] ? (plen[s] - done < c ? plen[s] - done : c) : 1;
}

static double rel_l2(const float *a, const float *b, int n) {
  double num = 0, den = 0;
  for (int i = 0; i < n; i++) {
    num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    den += (double)b[i] * b[i];
  }
  return sqrt(num / (den > 0 ? den : 1));
}

static void compare(run_out *a, run_out *b, int bitwise, const char *what) {
  double worst = 0;
  int diff = 0;
  for (int s = 0; s < NS; s++)
    for (int p = 0; p < total_len(s); p++) {
      if (memcmp(at(a, s, p), at(b, s, p), sizeof(float) * V)) diff++;
      double e = rel_l2(at(b, s, p), at(a, s, p), V);
      if (e > worst) worst = e;
    }
  fprintf(stderr, "%s: %d positions not bitwise equal, worst rel L2 %.3g\n", what, diff, worst);
  if (bitwise) CHECK_MSG(diff == 0, "%s: %d positions differ", what, diff);
  CHECK_MSG(worst <= 1e-5, "%s: rel L2 %g", what, worst);
}

static ig_model *load_dir(ig_backend **be, const char *gemm_min, const char *dir) {
  char err[512];
  if (gemm_min) setenv("IGNIS_CPU_GEMM_MIN_ROWS", gemm_min, 1);
  else unsetenv("IGNIS_CPU_GEMM_MIN_ROWS");
  *be = ig_backend_cpu_create(2, err, sizeof err);
  ig_model *m = NULL;
  if (!*be || ig_model_load(dir, *be, &m, err, sizeof err) ||
      ig_model_kv_init(m, MU_CACHE_BLOCKS, MU_BLOCK, err, sizeof err)) {
    fprintf(stderr, "%s\n", err);
    return NULL;
  }
  return m;
}

static ig_model *load(ig_backend **be, const char *gemm_min) {
  return load_dir(be, gemm_min, IG_SHARED_DIR "/models/stories260K");
}

/* stories260K with dynamic NTK rope scaling and max_position_embeddings 16: sequences past 16 tokens use
 * their own frequencies, so a mixed batch runs per sequence; the result must equal running alone. */
static void test_dynamic_rope(void) {
  char tmp[] = "/tmp/ig_test_dyn_XXXXXX", cmd[1024];
  if (!mkdtemp(tmp)) return;
  snprintf(cmd, sizeof cmd,
           "sed -e 's/\"rope_scaling\": null/\"rope_scaling\": {\"rope_type\": \"dynamic\", \"factor\": 2.0}/' "
           "-e 's/\"max_position_embeddings\": 512/\"max_position_embeddings\": 16/' %s/config.json > %s/config.json"
           " && ln -s %s/model.safetensors %s/model.safetensors",
           IG_SHARED_DIR "/models/stories260K", tmp, IG_SHARED_DIR "/models/stories260K", tmp);
  CHECK(system(cmd) == 0);
  ig_backend *be, *be0;
  ig_model *m = load_dir(&be, "1000000", tmp), *m0 = load(&be0, "1000000");
  CHECK(m && m0);
  if (m && m0) {
    run_out a, b, c;
    CHECK(run(m, sched_alone, &a) == 0);
    CHECK(run(m, sched_together, &b) == 0);
    CHECK(run(m0, sched_alone, &c) == 0);
    compare(&a, &b, 1, "dynamic rope: together vs alone");
    /* scaling active only for contexts past 16 (transformers: frequencies from the step's context length,
     * so a chunked prefill differs from a whole one there, as in transformers) */
    CHECK(memcmp(at(&a, 0, 12), at(&c, 0, 12), sizeof(float) * V) == 0);
    CHECK(memcmp(at(&a, 2, 30), at(&c, 2, 30), sizeof(float) * V) != 0);
    free_run(&a), free_run(&b), free_run(&c);
  }
  if (m) ig_model_free(m), be->destroy(be);
  if (m0) ig_model_free(m0), be0->destroy(be0);
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
  CHECK(system(cmd) == 0);
}

/* Decode graphs (ig_model_set_graphs): decode-only steps are padded up to a bucket with one-token sequences on a
 * block of their own. On the CPU (no graph ops) the padding alone runs: the real rows must not change, bitwise,
 * with every segment on the matvec kernel. */
static void test_graph_padding(void) {
  char err[512];
  setenv("IGNIS_CPU_GEMM_MIN_ROWS", "1000000", 1);
  ig_backend *be = ig_backend_cpu_create(2, err, sizeof err), *be0;
  ig_model *m = NULL, *m0 = load(&be0, "1000000");
  CHECK(be && ig_model_load(IG_SHARED_DIR "/models/stories260K", be, &m, err, sizeof err) == 0);
  if (!m || !m0) return;
  int sizes[] = {8, 2, 0, 2, 5};
  ig_model_set_graphs(m, sizes, 5);
  CHECK(ig_model_kv_init(m, MU_CACHE_BLOCKS, MU_BLOCK, err, sizeof err) == 0);
  run_out a, b, c, d;
  CHECK(run(m0, sched_alone, &a) == 0);
  CHECK(run(m, sched_alone, &b) == 0);     /* decode steps of 1 sequence padded to 2 */
  long long g1 = ig_model_graph_steps(m);
  CHECK(run(m, sched_together, &c) == 0);  /* 3 sequences padded to 5 */
  long long g2 = ig_model_graph_steps(m);
  CHECK(run(m, sched_staggered, &d) == 0); /* mixed steps run as they are */
  /* every decode step of the first two schedules was padded (NS sequences x NDEC steps alone, NDEC together) */
  CHECK_EQ_INT((int)g1, NS * NDEC);
  CHECK_EQ_INT((int)(g2 - g1), NDEC);
  compare(&a, &b, 1, "graph padding, alone");
  compare(&a, &c, 1, "graph padding, together");
  compare(&a, &d, 1, "graph padding, staggered");
  free_run(&a), free_run(&b), free_run(&c), free_run(&d);
  ig_model_free(m), be->destroy(be);
  ig_model_free(m0), be0->destroy(be0);
}

/* Graph lifetime: a captured decode graph points into the activations, so the model must drop the graphs
 * (graph_reset) before it frees a buffer one may use. The CPU backend gets graph ops that never replay (the
 * computation stays right) but count a graph as alive from graph_end to graph_reset, and a free that flags any
 * owned buffer freed while one is alive. The step that grows only the logits rows (a prompt with every row's
 * logits after decode steps, as a request with prompt logprobs does) used to free them under a live graph: on
 * the GPU every later replay then sampled stale logits. */
static int fg_in, fg_alive, fg_bad, fg_captured;
static void (*fg_free_orig)(ig_backend *, ig_tensor *);
static int fg_begin(ig_backend *be, uint64_t key) {
  (void)be, (void)key;
  fg_in = 1;
  return 0;
}
static int fg_end(ig_backend *be) {
  (void)be;
  if (fg_in) fg_alive = 1, fg_captured++;
  fg_in = 0;
  return 0;
}
static void fg_reset(ig_backend *be) {
  (void)be;
  fg_alive = fg_in = 0;
}
static void fg_free(ig_backend *be, ig_tensor *t) {
  if (fg_alive && t && t->owned && t->data) fg_bad++;
  fg_free_orig(be, t);
}

static void test_graph_lifetime(void) {
  char err[512];
  setenv("IGNIS_CPU_GEMM_MIN_ROWS", "1000000", 1);
  ig_backend *be = ig_backend_cpu_create(2, err, sizeof err);
  ig_model *m = NULL;
  CHECK(be && ig_model_load(IG_SHARED_DIR "/models/stories260K", be, &m, err, sizeof err) == 0);
  if (!m) return;
  int sizes[] = {1, 2, 4};
  ig_model_set_graphs(m, sizes, 3);
  CHECK(ig_model_kv_init(m, MU_CACHE_BLOCKS, MU_BLOCK, err, sizeof err) == 0);
  fg_free_orig = be->free;
  be->free = fg_free, be->graph_begin = fg_begin, be->graph_end = fg_end, be->graph_reset = fg_reset;
  mu_seq q;
  mu_seq_init(&q, 0, MU_CACHE_BLOCKS);
  const int L = plen[2]; /* 40 prompt rows */
  int32_t tok[64], pos[64], slot[64], outr[64], bt[MU_MAX_BLOCKS];
  memcpy(bt, q.blocks, sizeof q.blocks);
  for (int p = 0; p <= L; p++) tok[p] = toks[2][p], pos[p] = p, slot[p] = q.blocks[p / MU_BLOCK] * MU_BLOCK + p % MU_BLOCK, outr[p] = p;
  float *lg = malloc(sizeof(float) * (size_t)V * (size_t)(L + 1)), *ref = malloc(sizeof(float) * (size_t)V * (size_t)L);
  /* (1) the prompt, its last row's logits; (2) one decode step (a graph bucket: "captured"); (3) the prompt again
   * with every row's logits: more logits rows than before, no more tokens */
  int32_t ss1[2] = {0, L}, ctx1 = L, last = L - 1;
  ig_batch b1 = {L, tok, pos, slot, 1, ss1, &ctx1, MU_MAX_BLOCKS, bt, 1, &last, NULL};
  CHECK(ig_model_forward(m, &b1, lg, err, sizeof err) == 0);
  int32_t ss2[2] = {0, 1}, ctx2 = L + 1, zero = 0;
  ig_batch b2 = {1, tok + L, pos + L, slot + L, 1, ss2, &ctx2, MU_MAX_BLOCKS, bt, 1, &zero, NULL};
  CHECK(ig_model_forward(m, &b2, lg, err, sizeof err) == 0);
  CHECK_MSG(fg_captured == 1 && fg_alive, "the decode step was not bracketed as a graph (%d)", fg_captured);
  ig_batch b3 = {L, tok, pos, slot, 1, ss1, &ctx1, MU_MAX_BLOCKS, bt, L, outr, NULL};
  CHECK(ig_model_forward(m, &b3, ref, err, sizeof err) == 0);
  CHECK_MSG(fg_bad == 0, "%d buffer(s) freed while a captured graph could still point into them", fg_bad);
  /* and the wider step's logits are the prompt's: its last row equals (1)'s */
  CHECK(ig_model_forward(m, &b1, lg, err, sizeof err) == 0);
  CHECK(memcmp(lg, ref + (size_t)(L - 1) * V, sizeof(float) * (size_t)V) == 0);
  be->free = fg_free_orig, be->graph_begin = NULL, be->graph_end = NULL, be->graph_reset = NULL;
  free(lg), free(ref);
  ig_model_free(m), be->destroy(be);
}

/* ig_model_forward_sample_begin/_end over a backend whose sample op leaves its results in flight until
 * sample_wait: the CPU backend with a test sample op (argmax) that hands its results over only in sample_wait. */
static ig_sample_out ts_res[16], *ts_out;
static int ts_n, ts_pending;
static int ts_sample(ig_backend *be, const ig_tensor *lg, const ig_sample_row *rows, int n, ig_sample_out *out) {
  CHECK(lg->dtype == IG_DT_F32 && n <= 16);
  CHECK_MSG(!ts_pending, "sample called with results still pending");
  for (int i = 0; i < n; i++) {
    memset(&ts_res[i], 0, sizeof ts_res[i]);
    ts_res[i].id = mu_argmax((const float *)lg->data + (size_t)rows[i].row * (size_t)lg->cols, (int)lg->cols);
  }
  ts_out = out, ts_n = n, ts_pending = be->sample_wait != NULL;
  if (!ts_pending) memcpy(out, ts_res, sizeof(ig_sample_out) * (size_t)n);
  return 0;
}
static int ts_wait(ig_backend *be) {
  if (ts_pending) memcpy(ts_out, ts_res, sizeof(ig_sample_out) * (size_t)ts_n);
  ts_pending = 0;
  return 0;
}

static void test_sample_async(void) {
  ig_backend *be;
  ig_model *m = load(&be, "1000000");
  CHECK(m != NULL);
  if (!m) return;
  CHECK(!ig_model_can_sample(m)); /* the CPU backend samples on the host */
  be->sample = ts_sample;
  be->sample_wait = ts_wait;
  CHECK(ig_model_can_sample(m) && ig_model_sample_async(m));
  /* the three prompts in one batch; logits of every row of the first and of the others' last rows */
  int32_t tok[80], pos[80], slot[80], outr[80], ss[NS + 1], ctx[NS], bt[NS * MU_MAX_BLOCKS];
  int r = 0, no = 0;
  for (int s = 0; s < NS; s++) {
    mu_seq q;
    mu_seq_init(&q, s, MU_CACHE_BLOCKS);
    ss[s] = r;
    for (int p = 0; p < plen[s]; p++, r++) {
      tok[r] = toks[s][p], pos[r] = p, slot[r] = q.blocks[p / MU_BLOCK] * MU_BLOCK + p % MU_BLOCK;
      if (s == 0 || p == plen[s] - 1) outr[no++] = r;
    }
    ctx[s] = plen[s];
    memcpy(bt + s * MU_MAX_BLOCKS, q.blocks, sizeof q.blocks);
  }
  ss[NS] = r;
  ig_batch b = {r, tok, pos, slot, NS, ss, ctx, MU_MAX_BLOCKS, bt, no, outr, NULL};
  float *ref = malloc(sizeof(float) * (size_t)V * (size_t)no), *host = malloc(sizeof(float) * (size_t)V * (size_t)no);
  char err[512];
  CHECK(ig_model_forward(m, &b, ref, err, sizeof err) == 0);
  /* sampled: the last row of each sequence (out rows plen[0]-1, plen[0], plen[0]+1); host rows: the others */
  ig_sample_row rows[NS];
  int32_t hrows[16];
  memset(rows, 0, sizeof rows);
  for (int s = 0; s < NS; s++) rows[s].row = plen[0] - 1 + s, rows[s].temperature = 1, rows[s].top_p = 1;
  for (int k = 0; k < plen[0] - 1; k++) hrows[k] = k;
  for (int with_host = 0; with_host < 2; with_host++) {
    ig_sample_out out[NS];
    for (int s = 0; s < NS; s++) out[s].id = -7;
    int nh = with_host ? plen[0] - 1 : 0;
    CHECK(ig_model_forward_sample_begin(m, &b, rows, NS, out, hrows, nh, host, err, sizeof err) == 0);
    CHECK(ts_pending && out[0].id == -7); /* in flight; host rows are complete already */
    if (nh) CHECK(memcmp(host, ref, sizeof(float) * (size_t)V * (size_t)nh) == 0);
    CHECK(ig_model_forward_sample_end(m, err, sizeof err) == 0);
    CHECK(!ts_pending);
    for (int s = 0; s < NS; s++) CHECK_EQ_INT(out[s].id, mu_argmax(ref + (size_t)rows[s].row * V, V));
    CHECK(ig_model_forward_sample_end(m, err, sizeof err) == 0); /* nothing pending: returns at once */
  }
  /* the one-call form collects its results itself */
  ig_sample_out out[NS];
  CHECK(ig_model_forward_sample(m, &b, rows, NS, out, NULL, 0, NULL, err, sizeof err) == 0);
  CHECK(!ts_pending);
  for (int s = 0; s < NS; s++) CHECK_EQ_INT(out[s].id, mu_argmax(ref + (size_t)rows[s].row * V, V));
  /* a backend without sample_wait: _begin does it all */
  be->sample_wait = NULL;
  CHECK(!ig_model_sample_async(m));
  for (int s = 0; s < NS; s++) out[s].id = -7;
  CHECK(ig_model_forward_sample_begin(m, &b, rows, NS, out, NULL, 0, NULL, err, sizeof err) == 0);
  for (int s = 0; s < NS; s++) CHECK_EQ_INT(out[s].id, mu_argmax(ref + (size_t)rows[s].row * V, V));
  CHECK(ig_model_forward_sample_end(m, err, sizeof err) == 0);
  free(ref);
  free(host);
  ig_model_free(m);
  be->destroy(be);
}

/* ig_model_reserve sizes the activations ahead: results are bitwise those without it. An allocation failing while
 * they grow (here by a backend whose alloc fails on request) is a clear error, and leaves a model that still runs
 * and gives the same results (the buffers are allocated afresh at the next step, not used half-made). */
static int (*real_alloc)(ig_backend *, ig_tensor *, ig_dtype, int64_t, int64_t);
static int alloc_budget = -1; /* allocations left before one fails; -1: never fail */
static int failing_alloc(ig_backend *be, ig_tensor *t, ig_dtype dt, int64_t rows, int64_t cols) {
  if (alloc_budget == 0) {
    memset(t, 0, sizeof *t);
    snprintf(be->err, sizeof be->err, "test: allocation refused");
    return -1;
  }
  if (alloc_budget > 0) alloc_budget--;
  return real_alloc(be, t, dt, rows, cols);
}
static void test_reserve(void) {
  ig_backend *be0, *be1;
  ig_model *m0 = load(&be0, NULL), *m1 = load(&be1, NULL);
  CHECK(m0 && m1);
  if (!m0 || !m1) return;
  V = ig_model_get_info(m0)->vocab_size;
  char err[256] = "";
  run_out a, b, c;
  CHECK(run(m0, sched_together, &a) == 0);
  CHECK_MSG(ig_model_reserve(m1, 200, 16, err, sizeof err) == 0, "%s", err);
  CHECK(run(m1, sched_together, &b) == 0);
  compare(&a, &b, 1, "reserved activations vs grown ones");
  real_alloc = be1->alloc;
  be1->alloc = failing_alloc;
  alloc_budget = 3; /* the fourth tensor of the next growth fails */
  err[0] = 0;
  CHECK(ig_model_reserve(m1, 1000, 64, err, sizeof err) == -1);
  CHECK_MSG(strstr(err, "activations for steps of 1000 tokens") && strstr(err, "allocation refused"), "message: %s", err);
  alloc_budget = -1;
  CHECK(run(m1, sched_together, &c) == 0);
  compare(&a, &c, 1, "after a failed growth");
  be1->alloc = real_alloc;
  free_run(&a), free_run(&b), free_run(&c);
  ig_model_free(m0), ig_model_free(m1);
  be0->destroy(be0), be1->destroy(be1);
}

/* Warm-up (ig_model_warmup): on the CPU (no graph ops) it runs only when forced; it runs the prompt chunk and, per
 * graph size up to the smallest that holds max_rows, two steps per table width (powers of two up to max_ctx's), and
 * the real rows that follow are bitwise those of a model that never warmed up (it writes only the padding block). */
static void test_warmup(void) {
  char err[512] = "";
  setenv("IGNIS_CPU_GEMM_MIN_ROWS", "1000000", 1);
  ig_backend *be = ig_backend_cpu_create(2, err, sizeof err), *be0;
  ig_model *m = NULL, *m0 = load(&be0, "1000000");
  CHECK(be && ig_model_load(IG_SHARED_DIR "/models/stories260K", be, &m, err, sizeof err) == 0);
  if (!m || !m0) return;
  V = ig_model_get_info(m)->vocab_size;
  CHECK_EQ_INT(ig_model_warmup(m, 3, 64, 20, 1, err, sizeof err), 0); /* no graphs yet */
  int sizes[] = {4, 1, 2, 8};
  ig_model_set_graphs(m, sizes, 4);
  CHECK(ig_model_kv_init(m, MU_CACHE_BLOCKS, MU_BLOCK, err, sizeof err) == 0);
  CHECK_EQ_INT(ig_model_warmup(m, 3, 64, 20, 0, err, sizeof err), 0); /* no graph ops here: nothing unless forced */
  /* 64 tokens of 4-token blocks: widths 1, 2, 4, 8, 16; sizes 1, 2, 4 (4 holds 3 rows; 8 is left out) */
  int n = ig_model_warmup(m, 3, 64, 20, 1, err, sizeof err);
  CHECK_MSG(n == 1 + 3 * 5 * 2, "warm-up steps: %d (%s)", n, err);
  n = ig_model_warmup(m, 1, 10, 40, 1, err, sizeof err); /* the chunk is cut to max_ctx; widths 1, 2, 4; size 1 */
  CHECK_MSG(n == 1 + 1 * 3 * 2, "warm-up steps: %d (%s)", n, err);
  run_out a, b;
  CHECK(run(m0, sched_together, &a) == 0);
  CHECK(run(m, sched_together, &b) == 0);
  compare(&a, &b, 1, "after a warm-up");
  free_run(&a), free_run(&b);
  ig_model_free(m), be->destroy(be);
  ig_model_free(m0), be0->destroy(be0);
}

int main(void) {
  json_error_t je;
  json_t *exp = json_load_file(IG_SHARED_DIR "/models/stories260K/expected.json", 0, &je);
  CHECK(exp != NULL);
  if (!exp) TEST_DONE();
  /* token streams: each expected prompt followed by its continuation, cut to prompt + NDEC tokens */
  json_t *prompts = json_object_get(exp, "prompts");
  for (int s = 0; s < NS; s++) {
    json_t *pr = json_array_get(prompts, (size_t)s);
    json_t *p = json_object_get(pr, "prompt_ids"), *c = json_object_get(pr, "continuation_ids");
    int k = 0;
    for (size_t i = 0; i < json_array_size(p) && k < 64; i++) toks[s][k++] = (int32_t)json_integer_value(json_array_get(p, i));
    for (size_t i = 0; i < json_array_size(c) && k < 64; i++) toks[s][k++] = (int32_t)json_integer_value(json_array_get(c, i));
  }
  json_decref(exp);
  sched_fn scheds[4] = {sched_alone, sched_together, sched_chunks, sched_staggered};
  const char *names[4] = {"alone", "together", "chunks", "staggered"};
  for (int variant = 0; variant < 2; variant++) {
    ig_backend *be;
    ig_model *m = load(&be, variant == 0 ? "1000000" : NULL);
    CHECK(m != NULL);
    if (!m) break;
    V = ig_model_get_info(m)->vocab_size;
    run_out r[4];
    for (int i = 0; i < 4; i++) CHECK(run(m, scheds[i], &r[i]) == 0);
    for (int i = 1; i < 4; i++) {
      char what[96];
      snprintf(what, sizeof what, "%s vs alone (%s)", names[i], variant == 0 ? "all matvec" : "default kernels");
      compare(&r[0], &r[i], variant == 0 || i == 1, what);
    }
    for (int i = 0; i < 4; i++) free_run(&r[i]);
    ig_model_free(m);
    be->destroy(be);
  }
  test_dynamic_rope();
  test_graph_padding();
  test_graph_lifetime();
  test_sample_async();
  test_reserve();
  test_warmup();
  TEST_DONE();
}
