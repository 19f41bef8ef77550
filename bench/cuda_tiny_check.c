/* bench/cuda_tiny_check: the tiny tied-embedding, head_dim-8 models (stories260K, llama3-gqa-tied) through src/model
 * on the CUDA backend in f32 and bf16 (default kernels, the fastest non-invariant products, PDL off) against the
 * CPU backend (f32), on the tensor-parallel test's schedule (tests/tp/tp_sched.h: a 60-row prompt with logits of every row, a 15-token prompt
 * in chunks of 7 beside decode rows, 96 rows). Two ways: "forced", every run fed the CPU run's greedy tokens (same
 * inputs, so rel L2 measures the kernels), and "free", each run feeding its own argmax as tp_sched does (rows after
 * a greedy flip see other tokens, which is not a kernel error). Prints a PASS/FAIL table; exit 1 on any FAIL.
 *   cuda_tiny_check MODEL_DIR...        (exit 77 without a GPU) */
#define _POSIX_C_SOURCE 200809L /* setenv */
#include "backend/backend.h"
#include "model/model.h"
#include "model_util.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NSEQ 2
#define NSTEP 12
#define CHUNK 7
#define MAXROWS 512
static const int plen[NSEQ] = {60, 15};

typedef struct {
  float *rows; /* every logits row, in order */
  int n_rows;
  int32_t ids[NSEQ][NSTEP + 2]; /* tokens fed after each prompt (own argmax, or forced) */
  int32_t own[NSEQ][NSTEP + 2]; /* this run's own argmax at those points */
  int row_of[NSEQ][NSTEP + 2];   /* the logits row each was taken from */
  int n_ids[NSEQ];
} trace;

static uint32_t lcg(uint32_t *s) { return *s = *s * 1664525u + 1013904223u, *s >> 8; }

static int argmax(const float *v, int n) {
  int b = 0;
  for (int i = 1; i < n; i++)
    if (v[i] > v[b]) b = i;
  return b;
}

/* tp_sched's schedule; forced != NULL: feed forced->ids instead of this run's argmax */
static int run(ig_model *m, trace *t, const trace *forced, char *err, size_t errlen) {
  int V = ig_model_get_info(m)->vocab_size;
  memset(t, 0, sizeof *t);
  int32_t prompt[NSEQ][64];
  uint32_t seed = 7;
  for (int s = 0; s < NSEQ; s++)
    for (int i = 0; i < plen[s]; i++) prompt[s][i] = (int32_t)(lcg(&seed) % (uint32_t)V);
  t->rows = malloc(sizeof(float) * (size_t)V * MAXROWS);
  float *lg = malloc(sizeof(float) * (size_t)V * 128);
  mu_seq seqs[NSEQ];
  for (int s = 0; s < NSEQ; s++) mu_seq_init(&seqs[s], s, MU_CACHE_BLOCKS);
  int fed[NSEQ] = {0, 0}, rc = 0;
  for (int step = 0; step <= NSTEP && !rc; step++) {
    mu_seq *sp[NSEQ];
    const int32_t *tp[NSEQ];
    int n[NSEQ], who[NSEQ], k = 0;
    for (int s = 0; s < NSEQ; s++) {
      if (s == 1 && step == 0) continue;
      if (fed[s] < plen[s]) {
        int c = s == 0 ? plen[0] : (plen[s] - fed[s] < CHUNK ? plen[s] - fed[s] : CHUNK);
        tp[k] = prompt[s] + fed[s], n[k] = c;
        fed[s] += c;
      } else {
        tp[k] = &t->ids[s][t->n_ids[s] - 1], n[k] = 1;
      }
      sp[k] = &seqs[s], who[k++] = s;
    }
    int total = 0;
    for (int i = 0; i < k; i++) total += n[i];
    if ((rc = mu_step(m, sp, tp, n, k, 1, lg, err, errlen))) break;
    memcpy(t->rows + (size_t)t->n_rows * V, lg, sizeof(float) * (size_t)V * (size_t)total);
    t->n_rows += total;
    for (int i = 0, r = 0; i < k; i++) {
      r += n[i];
      int s = who[i];
      if (fed[s] == plen[s] && t->n_ids[s] <= NSTEP) {
        int j = t->n_ids[s]++;
        t->own[s][j] = argmax(lg + (size_t)(r - 1) * V, V);
        t->row_of[s][j] = t->n_rows - total + r - 1;
        t->ids[s][j] = forced ? forced->ids[s][j] : t->own[s][j];
      }
    }
  }
  free(lg);
  return rc;
}

static double rel_l2(const float *a, const float *ref, int n) {
  double num = 0, den = 0;
  for (int i = 0; i < n; i++) {
    double d = (double)a[i] - ref[i];
    if (!isfinite(a[i])) return INFINITY;
    num += d * d, den += (double)ref[i] * ref[i];
  }
  return sqrt(num / (den > 0 ? den : 1e-30));
}
static double worst(const trace *t, const trace *ref, int V, int r0, int r1) {
  double w = 0;
  for (int r = r0; r < r1 && r < t->n_rows && r < ref->n_rows; r++) {
    double e = rel_l2(t->rows + (size_t)r * V, ref->rows + (size_t)r * V, V);
    if (!(e <= w)) w = e;
  }
  return w;
}
/* top-1 minus top-2 of a row */
static float margin(const float *v, int n) {
  int b = argmax(v, n), c = b ? 0 : 1;
  for (int i = 0; i < n; i++)
    if (i != b && v[i] > v[c]) c = i;
  return v[b] - v[c];
}

typedef struct {
  const char *name;
  int cuda;       /* 0: CPU reference */
  ig_dtype act;
  const char *env; /* "NAME=VALUE" set while the backend is created, or NULL */
} variant;

static const variant variants[] = {
    {"cpu f32 (reference)", 0, IG_DT_F32, NULL},
    {"cuda f32", 1, IG_DT_F32, NULL},
    {"cuda bf16", 1, IG_DT_BF16, NULL},
    {"cuda bf16 fastest (not invariant)", 1, IG_DT_BF16, "IGNIS_CUDA_BATCH_INVARIANT=0"},
    {"cuda bf16 PDL off, unstaged", 1, IG_DT_BF16, "IGNIS_CUDA_PDL=0"},
};
#define NV (int)(sizeof variants / sizeof variants[0])

static ig_backend *make(const variant *v, char *err, size_t errlen) {
  if (!v->cuda) return ig_backend_cpu_create(2, err, errlen);
  unsetenv("IGNIS_CUDA_BATCH_INVARIANT"), unsetenv("IGNIS_CUDA_PDL"), unsetenv("IGNIS_CUDA_DECODE_STAGED");
  if (v->env) {
    char nm[64];
    const char *eq = strchr(v->env, '=');
    snprintf(nm, sizeof nm, "%.*s", (int)(eq - v->env), v->env);
    setenv(nm, eq + 1, 1);
    if (!strcmp(nm, "IGNIS_CUDA_PDL")) setenv("IGNIS_CUDA_DECODE_STAGED", "0", 1);
  }
  ig_backend *be = ig_backend_cuda_create_ex(0, v->act, err, errlen);
  unsetenv("IGNIS_CUDA_BATCH_INVARIANT"), unsetenv("IGNIS_CUDA_PDL"), unsetenv("IGNIS_CUDA_DECODE_STAGED");
  return be;
}

static int load_run(const char *dir, const variant *v, trace *t, const trace *forced, int *V, char *err, size_t errlen) {
  ig_backend *be = make(v, err, errlen);
  if (!be) return -1;
  ig_model *m = NULL;
  int rc = ig_model_load(dir, be, &m, err, errlen);
  if (!rc) rc = ig_model_kv_init(m, MU_CACHE_BLOCKS, MU_BLOCK, err, errlen);
  if (!rc) rc = run(m, t, forced, err, errlen);
  if (!rc) *V = ig_model_get_info(m)->vocab_size;
  ig_model_free(m);
  be->destroy(be);
  return rc;
}

int main(int argc, char **argv) {
  char err[1024];
  ig_backend *probe = ig_backend_cuda_create_ex(0, IG_DT_F32, err, sizeof err);
  if (!probe) {
    printf("SKIP: %s\n", err);
    return 77;
  }
  probe->destroy(probe);
  if (argc < 2) {
    fprintf(stderr, "usage: cuda_tiny_check MODEL_DIR...\n");
    return 2;
  }
  int fails = 0;
  printf("%-22s %-28s %12s %12s %12s  %-40s %s\n", "model", "backend", "forced all", "forced 0-59", "forced 60+",
         "free run (own argmax fed back)", "verdict");
  for (int a = 1; a < argc; a++) {
    const char *dir = argv[a], *base = strrchr(dir, '/') ? strrchr(dir, '/') + 1 : dir;
    trace ref = {0};
    int V = 0;
    if (load_run(dir, &variants[0], &ref, NULL, &V, err, sizeof err)) {
      printf("%-22s %-28s FAIL: %s\n", base, variants[0].name, err);
      fails++;
      continue;
    }
    for (int vi = 1; vi < NV; vi++) {
      const variant *v = &variants[vi];
      trace tf = {0}, tr = {0};
      int V2 = 0;
      if (load_run(dir, v, &tf, &ref, &V2, err, sizeof err) || load_run(dir, v, &tr, NULL, &V2, err, sizeof err)) {
        printf("%-22s %-28s FAIL: %s\n", base, v->name, err);
        fails++;
        free(tf.rows), free(tr.rows);
        continue;
      }
      double all = worst(&tf, &ref, V, 0, ref.n_rows), p0 = worst(&tf, &ref, V, 0, 60), p1 = worst(&tf, &ref, V, 60, ref.n_rows);
      /* free run: where its own argmax first differs from the reference's, and the reference's margin there */
      char fr[128];
      int fs = -1, fj = -1;
      for (int j = 0; j <= NSTEP && fs < 0; j++)
        for (int s = 0; s < NSEQ; s++)
          if (j < tr.n_ids[s] && j < ref.n_ids[s] && tr.own[s][j] != ref.own[s][j] && fs < 0) fs = s, fj = j;
      double fw = worst(&tr, &ref, V, 0, ref.n_rows);
      if (fs < 0) snprintf(fr, sizeof fr, "ids same, worst %.2e", fw);
      else snprintf(fr, sizeof fr, "seq %d flips at id %d, worst %.2e", fs, fj, fw);
      if (fs >= 0)
        snprintf(fr + strlen(fr), sizeof fr - strlen(fr), " (ref margin %.4f)",
                 margin(ref.rows + (size_t)ref.row_of[fs][fj] * V, V));
      /* bf16: 1.5x transformers' own bf16-vs-float32 error on these checkpoints (the rule issue 6 sets for the 8B
       * check), measured on the H100 by bench/tiny_bf16_ref.py: worst row 3.27e-2 (llama3-gqa-tied-bf16), 1.03e-2
       * (stories260K); the limit is the larger, 4.9e-2 (3e-2 before, a guess made without a GPU) */
      double lim = v->act == IG_DT_F32 ? 1e-4 : 4.9e-2;
      int ok = tf.n_rows == ref.n_rows && all <= lim;
      fails += !ok;
      printf("%-22s %-28s %12.2e %12.2e %12.2e  %-40s %s (forced <= %g)\n", base, v->name, all, p0, p1, fr,
             ok ? "PASS" : "FAIL", lim);
      free(tf.rows), free(tr.rows);
    }
    free(ref.rows);
  }
  printf("cuda_tiny_check: %s (%d failed)\n", fails ? "FAIL" : "PASS", fails);
  return fails ? 1 : 0;
}
