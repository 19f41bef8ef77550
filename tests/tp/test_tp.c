/* tests/tp/test_tp: tensor parallelism on the CPU (N shards in one process, loopback all-reduce). For every engine
 * fixture (tests/fixtures/engine/<name>), stories260K and a random Llama with every bias and uneven MLP/vocabulary
 * splits, the same two-sequence schedule (a long prefill, then decode steps beside a chunked prefill) runs with
 * N = 1 and with N = 2 and 4 where the heads divide: every logits row must be within relative L2 1e-5 of N = 1
 * and the greedy ids identical. Bad shard counts must fail with a clear message. */
#include "model/comm.h"
#include "tp_sched.h"
#include "test.h"
#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FIX_DIR IG_SOURCE_DIR "/tests/fixtures/engine"
#define STORIES IG_SHARED_DIR "/models/stories260K"
#define TOL 1e-5

/* ---------------------------------------------------------------------------------------------------- */
/* N shards vs one */

static ig_backend *cpu(void) {
  char err[256];
  ig_backend *be = ig_backend_cpu_create(1, err, sizeof err);
  CHECK_MSG(be != NULL, "%s", err);
  return be;
}

static int heads_divide(const char *dir, int n) {
  char p[1200];
  snprintf(p, sizeof p, "%s/config.json", dir);
  FILE *f = fopen(p, "r");
  if (!f) return 0;
  char buf[8192];
  size_t len = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[len] = 0;
  int nh = 0, nkv = 0;
  char *a = strstr(buf, "\"num_attention_heads\""), *b = strstr(buf, "\"num_key_value_heads\"");
  if (a) sscanf(strchr(a, ':') + 1, "%d", &nh);
  if (b) sscanf(strchr(b, ':') + 1, "%d", &nkv);
  else nkv = nh;
  return nh > 0 && nh % n == 0 && nkv % n == 0;
}

static void compare(const char *name, const char *dir) {
  char err[1024];
  ig_backend *b1 = cpu();
  ig_model *m1 = NULL;
  CHECK_MSG(ig_model_load(dir, b1, &m1, err, sizeof err) == 0, "%s: %s", name, err);
  if (!m1) {
    b1->destroy(b1);
    return;
  }
  CHECK(ig_model_kv_init(m1, MU_CACHE_BLOCKS, MU_BLOCK, err, sizeof err) == 0);
  int V = ig_model_get_info(m1)->vocab_size;
  trace ref;
  CHECK_MSG(run_schedule(m1, &ref, err, sizeof err) == 0, "%s: %s", name, err);
  for (int n = 2; n <= 4; n *= 2) {
    if (!heads_divide(dir, n)) continue;
    ig_backend *bs[4];
    for (int r = 0; r < n; r++) bs[r] = cpu();
    ig_model *mn = NULL;
    int ok = ig_model_load_sharded(dir, bs, n, NULL, &mn, err, sizeof err) == 0;
    CHECK_MSG(ok, "%s N=%d: %s", name, n, err);
    if (ok) {
      const ig_model_info *a = ig_model_get_info(m1), *b = ig_model_get_info(mn);
      CHECK_MSG(a->n_params == b->n_params && a->weight_bytes == b->weight_bytes && a->vocab_size == b->vocab_size &&
                    a->n_heads == b->n_heads,
                "%s N=%d: model info differs", name, n);
      CHECK_MSG(ig_model_kv_bytes_per_block(mn, MU_BLOCK) == ig_model_kv_bytes_per_block(m1, MU_BLOCK),
                "%s N=%d: KV bytes per block", name, n);
      CHECK(ig_model_kv_init(mn, MU_CACHE_BLOCKS, MU_BLOCK, err, sizeof err) == 0);
      trace t;
      CHECK_MSG(run_schedule(mn, &t, err, sizeof err) == 0, "%s N=%d: %s", name, n, err);
      CHECK_EQ_INT(t.n_rows, ref.n_rows);
      double worst = 0;
      for (int r = 0; r < t.n_rows && r < ref.n_rows; r++) {
        double e = rel_l2(t.rows + (size_t)r * V, ref.rows + (size_t)r * V, V);
        if (e > worst) worst = e;
      }
      int same = 1;
      for (int s = 0; s < NSEQ; s++)
        same &= t.n_ids[s] == ref.n_ids[s] && !memcmp(t.ids[s], ref.ids[s], sizeof(int32_t) * (size_t)t.n_ids[s]);
      CHECK_MSG(worst <= TOL, "%s N=%d: worst rel L2 %.3g > %g", name, n, worst, TOL);
      CHECK_MSG(same, "%s N=%d: greedy ids differ", name, n);
      fprintf(stderr, "  %-26s N=%d: %d rows, worst rel L2 %.2e, greedy %d+%d ids %s\n", name, n, t.n_rows, worst,
              t.n_ids[0], t.n_ids[1], same ? "identical" : "DIFFER");
      free(t.rows);
    }
    ig_model_free(mn);
    for (int r = 0; r < n; r++) bs[r]->destroy(bs[r]);
  }
  free(ref.rows);
  ig_model_free(m1);
  b1->destroy(b1);
}

/* ---------------------------------------------------------------------------------------------------- */
/* a random Llama with q/k/v/o and MLP biases, intermediate and vocabulary not divisible by the shard count */

static float frand(uint32_t *s) { return ((float)(lcg(s) & 0xffff) / 65535.0f - 0.5f) * 0.4f; }

static int write_random_llama(const char *dir) {
  const int H = 32, I = 37, V = 61, L = 2, NH = 4, HD = 8;
  char p[1200];
  mkdir(dir, 0755);
  snprintf(p, sizeof p, "%s/config.json", dir);
  FILE *f = fopen(p, "w");
  if (!f) return -1;
  fprintf(f, "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"hidden_size\": %d, "
          "\"intermediate_size\": %d, \"num_hidden_layers\": %d, \"num_attention_heads\": %d, \"num_key_value_heads\": %d, "
          "\"head_dim\": %d, \"vocab_size\": %d, \"max_position_embeddings\": 256, \"rms_norm_eps\": 1e-5, "
          "\"rope_theta\": 10000.0, \"attention_bias\": true, \"mlp_bias\": true, \"tie_word_embeddings\": false, "
          "\"bos_token_id\": 1, \"eos_token_id\": 2, \"torch_dtype\": \"float32\"}\n", H, I, L, NH, NH, HD, V);
  fclose(f);
  /* tensors: name, rows, cols (rows 0: 1-D) */
  struct { char name[96]; int rows, cols; } t[64];
  int nt = 0;
#define T(nm, r, c) (snprintf(t[nt].name, sizeof t[nt].name, "%s", nm), t[nt].rows = (r), t[nt].cols = (c), nt++)
  char nm[96];
  T("model.embed_tokens.weight", V, H);
  T("lm_head.weight", V, H);
  T("model.norm.weight", 0, H);
  for (int l = 0; l < L; l++) {
#define TL(suffix, r, c) (snprintf(nm, sizeof nm, "model.layers.%d.%s", l, suffix), T(nm, r, c))
    TL("input_layernorm.weight", 0, H);
    TL("post_attention_layernorm.weight", 0, H);
    TL("self_attn.q_proj.weight", NH * HD, H);
    TL("self_attn.k_proj.weight", NH * HD, H);
    TL("self_attn.v_proj.weight", NH * HD, H);
    TL("self_attn.o_proj.weight", H, NH * HD);
    TL("self_attn.q_proj.bias", 0, NH * HD);
    TL("self_attn.k_proj.bias", 0, NH * HD);
    TL("self_attn.v_proj.bias", 0, NH * HD);
    TL("self_attn.o_proj.bias", 0, H);
    TL("mlp.gate_proj.weight", I, H);
    TL("mlp.up_proj.weight", I, H);
    TL("mlp.down_proj.weight", H, I);
    TL("mlp.gate_proj.bias", 0, I);
    TL("mlp.up_proj.bias", 0, I);
    TL("mlp.down_proj.bias", 0, H);
  }
  char hdr[16384];
  size_t o = (size_t)snprintf(hdr, sizeof hdr, "{");
  size_t off = 0;
  for (int i = 0; i < nt; i++) {
    size_t n = (size_t)(t[i].rows ? t[i].rows : 1) * (size_t)t[i].cols;
    if (t[i].rows)
      o += (size_t)snprintf(hdr + o, sizeof hdr - o, "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[%d,%d],\"data_offsets\":[%zu,%zu]}",
                            i ? "," : "", t[i].name, t[i].rows, t[i].cols, off, off + n * 4);
    else
      o += (size_t)snprintf(hdr + o, sizeof hdr - o, "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[%d],\"data_offsets\":[%zu,%zu]}",
                            i ? "," : "", t[i].name, t[i].cols, off, off + n * 4);
    off += n * 4;
  }
  o += (size_t)snprintf(hdr + o, sizeof hdr - o, "}");
  while (o % 8) hdr[o++] = ' ';
  snprintf(p, sizeof p, "%s/model.safetensors", dir);
  f = fopen(p, "wb");
  if (!f) return -1;
  uint64_t hl = o;
  fwrite(&hl, 8, 1, f);
  fwrite(hdr, 1, o, f);
  uint32_t seed = 12345;
  for (int i = 0; i < nt; i++) {
    size_t n = (size_t)(t[i].rows ? t[i].rows : 1) * (size_t)t[i].cols;
    int norm = strstr(t[i].name, "norm") != NULL;
    for (size_t j = 0; j < n; j++) {
      float v = norm ? 1.0f + frand(&seed) : frand(&seed);
      fwrite(&v, 4, 1, f);
    }
  }
  fclose(f);
  return 0;
}

static void rm_dir(const char *dir) {
  char p[1200];
  snprintf(p, sizeof p, "%s/config.json", dir);
  unlink(p);
  snprintf(p, sizeof p, "%s/model.safetensors", dir);
  unlink(p);
  rmdir(dir);
}

/* ---------------------------------------------------------------------------------------------------- */
/* errors */

static void bad_counts(void) {
  char err[1024];
  ig_backend *bs[8];
  for (int r = 0; r < 8; r++) bs[r] = cpu();
  ig_model *m = NULL;
  /* stories260K: 8 heads, 4 KV heads */
  int rc = ig_model_load_sharded(STORIES, bs, 3, NULL, &m, err, sizeof err);
  CHECK(rc < 0 && m == NULL);
  CHECK_MSG(strstr(err, "3 shards") && strstr(err, "8 attention heads and 4 key/value heads") &&
                strstr(err, "possible: 1, 2, 4"),
            "message: %s", err);
  rc = ig_model_load_sharded(STORIES, bs, 8, NULL, &m, err, sizeof err);
  CHECK_MSG(rc < 0 && strstr(err, "8 shards"), "message: %s", err);
  rc = ig_model_load_sharded(STORIES, bs, 0, NULL, &m, err, sizeof err);
  CHECK(rc < 0 && m == NULL);
  ig_model_tp_opts o = {.num_shard = 3, .device = "cpu", .threads = 1};
  rc = ig_model_load_tp(STORIES, &o, &m, err, sizeof err);
  CHECK_MSG(rc < 0 && strstr(err, "divisible"), "message: %s", err);
  o.num_shard = 0;
  rc = ig_model_load_tp(STORIES, &o, &m, err, sizeof err);
  CHECK_MSG(rc < 0 && strstr(err, "at least 1"), "message: %s", err);
  /* a missing directory and a communicator of another size */
  rc = ig_model_load_sharded("/nonexistent/model", bs, 2, NULL, &m, err, sizeof err);
  CHECK(rc < 0 && m == NULL && err[0]);
  ig_comm *c = NULL;
  CHECK(ig_comm_loopback_create(4, &c, err, sizeof err) == 0);
  rc = ig_model_load_sharded(STORIES, bs, 2, c, &m, err, sizeof err);
  CHECK_MSG(rc < 0 && strstr(err, "communicator"), "message: %s", err);
  ig_comm_free(c);
  for (int r = 0; r < 8; r++) bs[r]->destroy(bs[r]);
}

/* ig_model_load_tp (backends made by the model, threads split between shards) gives N=2 of stories260K, and a
 * forward before the KV cache fails cleanly on every shard. */
static void load_tp(void) {
  char err[1024];
  ig_model *m = NULL;
  ig_model_tp_opts o = {.num_shard = 2, .device = "cpu", .threads = 2};
  CHECK_MSG(ig_model_load_tp(STORIES, &o, &m, err, sizeof err) == 0, "%s", err);
  if (!m) return;
  CHECK(ig_model_backend(m) != NULL);
  int32_t tok = 1, pos = 0, slot = 0, ss[2] = {0, 1}, ctx = 1, bt = 0, out = 0;
  ig_batch b = {1, &tok, &pos, &slot, 1, ss, &ctx, 1, &bt, 1, &out, NULL};
  float *lg = malloc(sizeof(float) * 512);
  CHECK(ig_model_forward(m, &b, lg, err, sizeof err) < 0);
  CHECK_MSG(strstr(err, "KV cache"), "message: %s", err);
  CHECK(ig_model_kv_init(m, 4, 16, err, sizeof err) == 0);
  CHECK_MSG(ig_model_forward(m, &b, lg, err, sizeof err) == 0, "%s", err);
  free(lg);
  ig_model_free(m);
}

/* ---------------------------------------------------------------------------------------------------- */
/* the loopback communicator on its own */

typedef struct {
  ig_comm *c;
  ig_backend *be;
  int rank, len, fail;
  float *x;
  int rc;
} ar_arg;

static void *ar_thread(void *p) {
  ar_arg *a = p;
  ig_tensor t = {a->x, IG_DT_F32, 1, a->len, 0};
  a->rc = 0;
  for (int it = 0; it < 50 && !a->rc; it++) {
    if (a->fail && it == 10) {
      ig_comm_abort(a->c);
      a->rc = -2;
      break;
    }
    a->rc = ig_comm_all_reduce(a->c, a->rank, a->be, &t);
  }
  return NULL;
}

static void comm_loopback(void) {
  char err[256];
  const int n = 3, len = 1001;
  ig_comm *c = NULL;
  CHECK(ig_comm_loopback_create(n, &c, err, sizeof err) == 0);
  CHECK_EQ_STR(ig_comm_kind(c), "loopback");
  ar_arg a[3];
  pthread_t th[3];
  for (int round = 0; round < 2; round++) {
    for (int r = 0; r < n; r++) {
      a[r] = (ar_arg){c, cpu(), r, len, round == 1 && r == 1, malloc(sizeof(float) * len), 0};
      for (int i = 0; i < len; i++) a[r].x[i] = (float)((r + 1) * (i % 7)) / 64.0f; /* exact in f32 */
      pthread_create(&th[r], NULL, ar_thread, &a[r]);
    }
    for (int r = 0; r < n; r++) pthread_join(th[r], NULL);
    if (round == 0) {
      /* 50 rounds of summing: x * 3^50 would overflow; scale keeps exact values small: (1+2+3)=6 per step */
      for (int r = 0; r < n; r++) CHECK_EQ_INT(a[r].rc, 0);
      int same = 1;
      for (int r = 1; r < n; r++) same &= !memcmp(a[r].x, a[0].x, sizeof(float) * len);
      CHECK_MSG(same, "ranks differ after all-reduce");
      double want = 6.0 * pow(3.0, 49) * (5 % 7) / 64.0;
      CHECK_MSG(fabs(a[0].x[5] - want) <= 1e-5 * want, "x[5] = %g, want %g", a[0].x[5], want);
    } else {
      /* rank 1 aborts at iteration 10: everyone returns an error instead of hanging */
      for (int r = 0; r < n; r++) CHECK_MSG(a[r].rc != 0, "rank %d rc %d", r, a[r].rc);
      ig_comm_reset(c);
    }
    for (int r = 0; r < n; r++) {
      free(a[r].x);
      a[r].be->destroy(a[r].be);
    }
  }
  ig_comm_free(c);
}

int main(void) {
  comm_loopback();
  bad_counts();
  load_tp();
  compare("stories260K", STORIES);
  char tmp[] = "/tmp/ig_tp_random_XXXXXX";
  if (mkdtemp(tmp)) {
    CHECK(write_random_llama(tmp) == 0);
    compare("random-llama-biases", tmp);
    rm_dir(tmp);
  }
  DIR *d = opendir(FIX_DIR);
  char *names[64];
  int n = 0;
  struct dirent *e;
  while (d && (e = readdir(d)) && n < 64)
    if (e->d_name[0] != '.' && strcmp(e->d_name, "README.md")) names[n++] = strdup(e->d_name);
  if (d) closedir(d);
  CHECK_MSG(n > 0, "no fixtures under %s", FIX_DIR);
  for (int i = 0; i < n; i++) {
    char p[1200];
    snprintf(p, sizeof p, "%s/%s", FIX_DIR, names[i]);
    compare(names[i], p);
    free(names[i]);
  }
  TEST_DONE();
}
