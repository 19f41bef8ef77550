/* tests/tp/test_tp_cuda: tensor parallelism on the CUDA backend. With one GPU: the shard group at N = 1, and N = 2
 * and 4 shards placed on the same GPU (loopback all-reduce through host memory), against the plain model, in f32
 * (rel L2 <= 1e-4, greedy ids identical) and bf16 (rel L2 <= 1e-2 against the plain bf16 model, or, for tiny
 * models whose bf16 noise is larger, no more than 1.5x the plain bf16 model's own error against f32); the NCCL
 * communicator over one rank. With several GPUs and NCCL: N = 2, 4, ... over distinct GPUs through
 * ig_model_load_tp (the `--num-shard` path).
 * Models: stories260K and any model directories given as arguments. Exits 77 (ctest SKIP) without a GPU. */
#include "model/comm.h"
#include "tp_sched.h"
#include "test.h"
#include <cuda_runtime.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define STORIES IG_SHARED_DIR "/models/stories260K"

static int heads_ok(ig_model *m, int n) {
  const ig_model_info *in = ig_model_get_info(m);
  return in->n_heads % n == 0 && in->n_kv_heads % n == 0;
}

static double worst_of(const trace *t, const trace *ref, int V) {
  double worst = 0;
  for (int r = 0; r < t->n_rows && r < ref->n_rows; r++) {
    double e = rel_l2(t->rows + (size_t)r * V, ref->rows + (size_t)r * V, V);
    if (e > worst) worst = e;
  }
  return worst;
}

static trace f32_ref; /* the plain model in f32, for the bf16 runs' second criterion */
static double bf16_own; /* the plain bf16 model's error against it */

static void cmp_trace(const char *what, const trace *t, const trace *ref, int V, double tol, int want_ids) {
  double worst = worst_of(t, ref, V);
  int same = t->n_rows == ref->n_rows;
  for (int s = 0; s < NSEQ; s++)
    same &= t->n_ids[s] == ref->n_ids[s] && !memcmp(t->ids[s], ref->ids[s], sizeof(int32_t) * (size_t)t->n_ids[s]);
  double vs32 = -1;
  if (!want_ids && f32_ref.n_rows == t->n_rows) vs32 = worst_of(t, &f32_ref, V);
  int ok = worst <= tol || (vs32 >= 0 && vs32 <= 1.5 * bf16_own);
  CHECK_MSG(ok, "%s: worst rel L2 %.3g > %g (vs f32 %.3g, the plain bf16 model's %.3g)", what, worst, tol, vs32, bf16_own);
  if (want_ids) CHECK_MSG(same, "%s: greedy ids differ", what);
  fprintf(stderr, "  %-50s %d rows, worst rel L2 %.2e (tol %g)", what, t->n_rows, worst, tol);
  if (vs32 >= 0) fprintf(stderr, ", vs f32 %.2e (plain bf16: %.2e)", vs32, bf16_own);
  fprintf(stderr, ", greedy ids %s\n", same ? "identical" : "differ");
}

/* the model at N = 1 (plain), then the shard group at N = 1, 2, 4 on GPU 0 (loopback), then over distinct GPUs */
static void check_model(const char *dir, ig_dtype act, int n_gpus) {
  char err[1024], what[256];
  const char *dn = act == IG_DT_F32 ? "f32" : "bf16";
  double tol = act == IG_DT_F32 ? 1e-4 : 1e-2;
  const char *base = strrchr(dir, '/') ? strrchr(dir, '/') + 1 : dir;
  ig_backend *b1 = ig_backend_cuda_create_ex(0, act, err, sizeof err);
  CHECK_MSG(b1 != NULL, "%s", err);
  if (!b1) return;
  ig_model *m1 = NULL;
  CHECK_MSG(ig_model_load(dir, b1, &m1, err, sizeof err) == 0, "%s: %s", dir, err);
  trace ref = {0};
  if (!m1 || ig_model_kv_init(m1, MU_CACHE_BLOCKS, MU_BLOCK, err, sizeof err) || run_schedule(m1, &ref, err, sizeof err)) {
    CHECK_MSG(0, "%s: %s", dir, err);
    goto done;
  }
  int V = ig_model_get_info(m1)->vocab_size;
  if (act == IG_DT_F32) {
    free(f32_ref.rows);
    f32_ref = ref;
    f32_ref.rows = malloc(sizeof(float) * (size_t)V * (size_t)ref.n_rows);
    if (f32_ref.rows) memcpy(f32_ref.rows, ref.rows, sizeof(float) * (size_t)V * (size_t)ref.n_rows);
    else f32_ref.n_rows = 0;
  } else {
    bf16_own = f32_ref.n_rows == ref.n_rows ? worst_of(&ref, &f32_ref, V) : 0;
  }
  for (int n = 1; n <= 4; n *= 2) {
    if (!heads_ok(m1, n)) continue;
    ig_backend *bs[4] = {0};
    int ok = 1;
    for (int r = 0; r < n && ok; r++) ok = (bs[r] = ig_backend_cuda_create_ex(0, act, err, sizeof err)) != NULL;
    ig_model *mn = NULL;
    ok = ok && ig_model_load_sharded(dir, bs, n, NULL, &mn, err, sizeof err) == 0;
    snprintf(what, sizeof what, "%s %s N=%d on one GPU (loopback)", base, dn, n);
    CHECK_MSG(ok, "%s: %s", what, err);
    trace t = {0};
    if (ok && !ig_model_kv_init(mn, MU_CACHE_BLOCKS, MU_BLOCK, err, sizeof err) && !run_schedule(mn, &t, err, sizeof err))
      cmp_trace(what, &t, &ref, V, tol, act == IG_DT_F32);
    else if (ok)
      CHECK_MSG(0, "%s: %s", what, err);
    free(t.rows);
    ig_model_free(mn);
    for (int r = 0; r < n; r++)
      if (bs[r]) bs[r]->destroy(bs[r]);
  }
#ifdef IG_HAVE_NCCL
  for (int n = 2; n <= n_gpus; n *= 2) {
    if (!heads_ok(m1, n)) continue;
    ig_model_tp_opts o = {.num_shard = n, .device = "cuda", .cuda_f32 = act == IG_DT_F32};
    ig_model *mn = NULL;
    snprintf(what, sizeof what, "%s %s N=%d over %d GPUs (NCCL)", base, dn, n, n);
    int ok = ig_model_load_tp(dir, &o, &mn, err, sizeof err) == 0;
    CHECK_MSG(ok, "%s: %s", what, err);
    trace t = {0};
    if (ok && !ig_model_kv_init(mn, MU_CACHE_BLOCKS, MU_BLOCK, err, sizeof err) && !run_schedule(mn, &t, err, sizeof err))
      cmp_trace(what, &t, &ref, V, tol, act == IG_DT_F32);
    else if (ok)
      CHECK_MSG(0, "%s: %s", what, err);
    free(t.rows);
    ig_model_free(mn);
  }
#else
  (void)n_gpus;
#endif
done:
  free(ref.rows);
  ig_model_free(m1);
  b1->destroy(b1);
}

#ifdef IG_HAVE_NCCL
/* one rank: the all-reduce is the identity, but init, the thread binding, each dtype and the fallback path run */
static void nccl_one_rank(void) {
  char err[512];
  int dev = 0;
  ig_comm *c = NULL;
  CHECK_MSG(ig_comm_nccl_create(1, &dev, &c, err, sizeof err) == 0, "%s", err);
  if (!c) return;
  CHECK_EQ_STR(ig_comm_kind(c), "nccl");
  const char *nvls = getenv("NCCL_NVLS_ENABLE");
  CHECK(nvls && !strcmp(nvls, "0"));
  CHECK_MSG(ig_comm_bind_thread(c, 0, err, sizeof err) == 0, "%s", err);
  for (int a = 0; a < 2; a++) {
    ig_dtype act = a ? IG_DT_BF16 : IG_DT_F32;
    ig_backend *be = ig_backend_cuda_create_ex(0, act, err, sizeof err);
    CHECK_MSG(be != NULL, "%s", err);
    if (!be) continue;
    ig_tensor t;
    float in[1000], out[1000];
    for (int i = 0; i < 1000; i++) in[i] = (float)(i % 13) - 6.0f;
    CHECK(be->alloc(be, &t, act, 10, 100) == 0);
    CHECK(be->upload(be, &t, in, IG_DT_F32) == 0);
    CHECK_MSG(ig_comm_all_reduce(c, 0, be, &t) == 0, "%s", be->err);
    CHECK(be->download_f32(be, &t, out) == 0);
    CHECK_MSG(!memcmp(in, out, sizeof in), "NCCL 1-rank all-reduce changed the data (%s)", ig_dtype_name(act));
    be->free(be, &t);
    be->destroy(be);
  }
  ig_comm_free(c);
  fprintf(stderr, "  NCCL one-rank communicator: init, f32 and bf16 all-reduce ok\n");
}
#endif

int main(int argc, char **argv) {
  int n_gpus = 0;
  if (cudaGetDeviceCount(&n_gpus) != cudaSuccess || n_gpus < 1) {
    fprintf(stderr, "no GPU: skipped\n");
    return 77;
  }
#ifdef IG_HAVE_NCCL
  nccl_one_rank();
#endif
  int have_stories = access(STORIES "/config.json", R_OK) == 0; /* ../shared may not be beside a copied binary */
  /* each model in f32, then in bf16 (compared with the f32 run too) */
  for (int i = have_stories ? 0 : 1; i < argc; i++)
    for (int a = 0; a < 2; a++) check_model(i ? argv[i] : STORIES, a ? IG_DT_BF16 : IG_DT_F32, n_gpus);
  free(f32_ref.rows);
  TEST_DONE();
}
