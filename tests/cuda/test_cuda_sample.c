/* tests/cuda/test_cuda_sample.c: the CUDA backend's sample op against the host sampler (engine/sampler.c's
 * ig_sampler_sample) on the same logits and parameters: 256 rows per call at vocabularies of 128256 (Llama 3),
 * 4099, 1000 and 50, every parameter combination below on every kind of logits row (normal, many exact ties,
 * -inf and NaN entries, bf16-rounded, a few finite entries only, nothing finite, all equal). Checks:
 *  - ids equal (greedy rows exactly; a sampled row may differ only at a genuine rounding tie: the host's own
 *    cumulative mass within 1e-5 of the draw, relative; the margin is printed), logprobs within 1e-4,
 *    top-n ids and logprobs equal (1e-4);
 *  - results in flight until sample_wait (out[] untouched before it);
 *  - determinism (a second call returns the same bytes) and batch invariance (a row alone, and the rows in
 *    reverse order, give the same bytes as inside the 256-row call);
 *  - input validation (clear errors, the backend still works afterwards).
 * Prints a timing table (never a pass/fail criterion). Exits 77 (ctest SKIP) when no GPU is present. */
#include "backend/backend.h"
#include "engine/sampler.h"
#include "test.h"
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NROWS 256
#ifndef SAMPLE_TIMING_ITERS
#define SAMPLE_TIMING_ITERS 10 /* timed calls per case (after 2 warm-up calls); 0: no timing table */
#endif
#define NKINDS 8
#define NLROWS 40 /* logits rows per tensor: a multiple of NKINDS, so row r has kind r % NKINDS */

/* The op and its results: sample may leave them in flight until sample_wait (the backend's optional op). */
static int sample_now(ig_backend *gpu, const ig_tensor *t, const ig_sample_row *rows, int n, ig_sample_out *out) {
  int rc = gpu->sample(gpu, t, rows, n, out);
  return rc || !gpu->sample_wait ? rc : gpu->sample_wait(gpu);
}

static uint64_t rs = 0x2545f4914f6cdd1dull;
static uint64_t rnext(void) {
  rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17;
  return rs;
}
static double urand(void) { return (double)(rnext() >> 11) * 0x1p-53; }
static int irand(int n) { return (int)(rnext() % (uint64_t)n); }
static float nrand(void) {
  double u1 = urand() + 1e-300, u2 = urand();
  return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}
static float bf16_round(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  u &= 0xffff0000u;
  memcpy(&f, &u, 4);
  return f;
}

/* One row of logits of the given kind (never all zero). */
static void gen_row(float *x, int V, int kind) {
  switch (kind) {
  case 0: /* normal, std 3 */
    for (int i = 0; i < V; i++) x[i] = 3.0f * nrand();
    break;
  case 1: /* many exact ties, +0 and -0 among them */
    for (int i = 0; i < V; i++) {
      x[i] = (float)irand(12) * 0.5f - 2.0f;
      if (x[i] == 0.0f && irand(2)) x[i] = -0.0f;
    }
    break;
  case 2: /* normal with -inf (10%) and NaN (1%) entries */
    for (int i = 0; i < V; i++) {
      int u = irand(100);
      x[i] = u < 10 ? -INFINITY : u < 11 ? NAN : 3.0f * nrand();
    }
    break;
  case 3: { /* peaked, with a tie at the max */
    for (int i = 0; i < V; i++) x[i] = 1.5f * nrand();
    int a = irand(V), b = irand(V), c = irand(V);
    x[a] = 14.0f, x[b] = 14.0f, x[c] = 12.5f;
    break;
  }
  case 4: { /* a few finite entries only (ties among them) */
    for (int i = 0; i < V; i++) x[i] = -INFINITY;
    for (int k = 0; k < 7; k++) x[irand(V)] = k < 2 ? 3.0f : nrand();
    break;
  }
  case 5: /* nothing finite */
    for (int i = 0; i < V; i++) x[i] = (i & 1) ? NAN : -INFINITY;
    break;
  case 6: /* all equal */
    for (int i = 0; i < V; i++) x[i] = 1.5f;
    break;
  default: /* normal, std 3, rounded to bf16 (what a bf16 lm_head gives: many close ties) */
    for (int i = 0; i < V; i++) x[i] = bf16_round(3.0f * nrand());
    break;
  }
}

typedef struct cfg {
  const char *name;
  int do_sample;
  float temp;
  int top_k;
  float top_p, typical_p, rep, freq, pres;
  int want_lp, top_n;
} cfg;

static const cfg CFGS[] = {
    {"greedy", 0, 1.0f, 0, 1.0f, 1.0f, 1.0f, 0, 0, 0, 0},
    {"greedy+lp", 0, 1.0f, 0, 1.0f, 1.0f, 1.0f, 0, 0, 1, 0},
    {"greedy+lp+top5", 0, 1.0f, 0, 1.0f, 1.0f, 1.0f, 0, 0, 1, 5},
    {"greedy+top20", 0, 1.0f, 0, 1.0f, 1.0f, 1.0f, 0, 0, 0, 20},
    {"greedy+rep1.3", 0, 1.0f, 0, 1.0f, 1.0f, 1.3f, 0, 0, 0, 0},
    {"greedy+freq/pres+lp", 0, 1.0f, 0, 1.0f, 1.0f, 1.0f, 0.5f, 0.3f, 1, 0},
    {"greedy+rep0.8+freq/pres+top5", 0, 1.0f, 0, 1.0f, 1.0f, 0.8f, -0.4f, 0.6f, 0, 5},
    {"temp0.7", 1, 0.7f, 0, 1.0f, 1.0f, 1.0f, 0, 0, 0, 0},
    {"temp1.3", 1, 1.3f, 0, 1.0f, 1.0f, 1.0f, 0, 0, 1, 0},
    {"do_sample", 1, 1.0f, 0, 1.0f, 1.0f, 1.0f, 0, 0, 0, 0},
    {"top_k1", 0, 1.0f, 1, 1.0f, 1.0f, 1.0f, 0, 0, 1, 0},
    {"top_k50", 0, 1.0f, 50, 1.0f, 1.0f, 1.0f, 0, 0, 0, 0},
    {"top_k4099", 0, 1.0f, 4099, 1.0f, 1.0f, 1.0f, 0, 0, 0, 3},
    {"top_p0.9", 0, 1.0f, 0, 0.9f, 1.0f, 1.0f, 0, 0, 0, 0},
    {"top_p0.5", 0, 1.0f, 0, 0.5f, 1.0f, 1.0f, 0, 0, 1, 0},
    {"do_sample+top_p1.0", 1, 1.0f, 0, 1.0f, 1.0f, 1.0f, 0, 0, 0, 0},
    {"typical0.9", 0, 1.0f, 0, 1.0f, 0.9f, 1.0f, 0, 0, 0, 0},
    {"top_k50+top_p0.9", 0, 1.0f, 50, 0.9f, 1.0f, 1.0f, 0, 0, 0, 0},
    {"temp0.7+k50+p0.9+typ0.9+rep1.2+top5", 0, 0.7f, 50, 0.9f, 0.9f, 1.2f, 0, 0, 1, 5},
    {"temp1.3+p0.5+freq/pres", 0, 1.3f, 0, 0.5f, 1.0f, 1.0f, 0.5f, 0.2f, 0, 0},
    {"k4099+p0.9+typ0.5", 0, 1.0f, 4099, 0.9f, 0.5f, 1.0f, 0, 0, 0, 0},
    {"typ0.5+temp0.7+top20", 0, 0.7f, 0, 1.0f, 0.5f, 1.0f, 0, 0, 0, 20},
    {"p0.95+rep1.1+top3", 0, 1.0f, 0, 0.95f, 1.0f, 1.1f, 0, 0, 0, 3},
    {"temp0(greedy)+lp", 0, 0.0f, 0, 1.0f, 1.0f, 1.0f, 0, 0, 1, 0},
};
#define NCFG ((int)(sizeof CFGS / sizeof CFGS[0]))

typedef struct rowcase {
  ig_gen_params p;
  uint64_t step;
  int32_t *tokens;
  int n_tokens, n_prompt;
  ig_sample_row row;
} rowcase;

/* Row r's parameters (config (r / NKINDS) % NCFG), penalty tokens: ids near the row's top, random ids,
 * duplicates and out-of-range ids. */
static void make_case(rowcase *c, const cfg *g, int lrow, const float *x, int V, uint64_t seed, uint64_t step) {
  memset(c, 0, sizeof *c);
  ig_gen_params *p = &c->p;
  p->do_sample = g->do_sample;
  p->temperature = g->temp;
  p->top_k = g->top_k;
  p->top_p = g->top_p;
  p->typical_p = g->typical_p;
  p->repetition_penalty = g->rep;
  p->frequency_penalty = g->freq;
  p->presence_penalty = g->pres;
  p->seed = seed;
  p->want_logprobs = g->want_lp;
  p->top_n_tokens = g->top_n;
  c->step = step;
  int top[8];
  int nt = 0;
  for (int i = 0; i < V && nt < 8; i++) /* some ids that matter: the first 8 entries at or above 2.5 */
    if (x[i] >= 2.5f) top[nt++] = i;
  c->n_tokens = irand(5) == 0 ? 0 : irand(300);
  c->n_prompt = c->n_tokens ? irand(c->n_tokens + 1) : 0;
  c->tokens = malloc(sizeof(int32_t) * (size_t)(c->n_tokens + 1));
  for (int j = 0; j < c->n_tokens; j++) {
    int u = irand(10);
    if (u < 4 && nt) c->tokens[j] = top[irand(nt)];
    else if (u < 9) c->tokens[j] = irand(V);
    else {
      static const int bad[4] = {-1, -5, 0, 3};
      int k = irand(4);
      c->tokens[j] = k < 2 ? bad[k] : V + bad[k];
    }
  }
  ig_sample_row *s = &c->row;
  s->row = lrow;
  s->do_sample = ig_sampler_is_sampling(p);
  s->temperature = p->temperature;
  s->top_k = p->top_k;
  s->top_p = p->top_p;
  s->typical_p = p->typical_p;
  s->repetition_penalty = p->repetition_penalty;
  s->frequency_penalty = p->frequency_penalty;
  s->presence_penalty = p->presence_penalty;
  s->uniform = ig_sample_uniform(p->seed, step);
  s->want_logprob = p->want_logprobs;
  s->top_n = p->top_n_tokens;
  s->tokens = c->tokens;
  s->n_tokens = c->n_tokens;
  s->n_prompt = c->n_prompt;
  /* a target token (a prompt row's next one), now and then out of range: its logprob on greedy rows */
  int tk = irand(16);
  s->target = tk == 0 ? -1 : tk == 1 ? V : tk == 2 ? V - 1 : irand(V);
}

static int lp_close(float a, float b, double tol) {
  if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
  if (isinf(a) || isinf(b)) return a == b;
  return fabs((double)a - (double)b) <= tol;
}

static int n_ties_allowed, n_warper_ties, n_compared;
static double worst_lp, worst_tie_margin;

typedef struct kv {
  float key;
  int32_t id;
} kv;
static int cmp_kv(const void *a, const void *b) {
  const kv *x = a, *y = b;
  if (x->key != y->key) return x->key < y->key ? -1 : 1;
  return (x->id > y->id) - (x->id < y->id);
}

/* How close the host's top_p / typical_p walks come to their thresholds: min |cumulative probability -
 * threshold| over the entries the walk visits (INFINITY when neither warper is on). Below ~1e-7 the two
 * implementations may legitimately keep different sets (the host sums in sequence, the device in fixed point:
 * e.g. 500 of 1000 equal entries at top_p 0.5). Rebuilds the host's chain from the exposed pieces. */
static double warper_margin(ig_sampler *smp, const rowcase *c, const float *x, int V) {
  const ig_gen_params *p = &c->p;
  int topp = p->top_p > 0.0f && p->top_p < 1.0f, typ = p->typical_p > 0.0f && p->typical_p < 1.0f;
  if (!c->row.do_sample || (!topp && !typ)) return INFINITY;
  float *sc = malloc(sizeof(float) * (size_t)V);
  kv *a = malloc(sizeof(kv) * (size_t)V);
  for (int i = 0; i < V; i++) sc[i] = isnan(x[i]) ? -INFINITY : x[i];
  if (p->repetition_penalty > 0.0f && p->repetition_penalty != 1.0f)
    ig_sample_repetition(smp, sc, c->tokens, c->n_tokens, p->repetition_penalty);
  if (p->frequency_penalty != 0.0f || p->presence_penalty != 0.0f)
    ig_sample_freq_presence(smp, sc, c->tokens + c->n_prompt, c->n_tokens - c->n_prompt, p->frequency_penalty,
                            p->presence_penalty);
  if (p->temperature != 1.0f) ig_sample_temperature(sc, V, p->temperature);
  if (p->top_k > 0) ig_sample_top_k(smp, sc, V, p->top_k);
  double margin = INFINITY;
  float mx = -INFINITY;
  int n = 0;
  for (int i = 0; i < V; i++)
    if (sc[i] != -INFINITY) {
      a[n].key = sc[i], a[n].id = i, n++;
      if (sc[i] > mx) mx = sc[i];
    }
  if (topp && n > 0) {
    qsort(a, (size_t)n, sizeof(kv), cmp_kv);
    double total = 0, cum = 0, thr = 1.0 - (double)p->top_p;
    for (int j = 0; j < n; j++) total += exp((double)a[j].key - mx);
    for (int j = 0; j < n - 1; j++) {
      cum += exp((double)a[j].key - mx) / total;
      margin = fmin(margin, fabs(cum - thr));
      if (cum > thr) break;
    }
    ig_sample_top_p(smp, sc, V, p->top_p);
  }
  n = 0;
  for (int i = 0; i < V; i++)
    if (sc[i] != -INFINITY) a[n].id = i, n++;
  if (typ && n > 0) {
    double lse = ig_sample_logsumexp(sc, V), ent = 0, cum = 0;
    for (int j = 0; j < n; j++) {
      double lp = sc[a[j].id] - lse;
      ent -= lp * exp(lp);
    }
    for (int j = 0; j < n; j++) a[j].key = (float)fabs(-((double)sc[a[j].id] - lse) - ent);
    qsort(a, (size_t)n, sizeof(kv), cmp_kv);
    for (int j = 0; j < n; j++) {
      cum += exp((double)sc[a[j].id] - lse);
      margin = fmin(margin, fabs(cum - (double)p->typical_p));
      if (cum >= p->typical_p) break;
    }
  }
  free(sc);
  free(a);
  return margin;
}

/* Compares one device result with the host sampler on the same row. */
static void check_row(ig_sampler *smp, const rowcase *c, const float *x, int V, const ig_sample_out *d,
                      const char *label, int r, const char *cname) {
  ig_sample_result h;
  memset(&h, 0, sizeof h);
  ig_sampler_sample(smp, &c->p, x, c->tokens, c->n_tokens, c->n_prompt, c->step, &h);
  const float *sc = smp->scores; /* the host's processed scores */
  n_compared++;
  int sampling = c->row.do_sample;
  float hlp = h.logprob;
  if (sampling && (d->id != h.id || !lp_close(d->logprob, h.logprob, 1e-4) || d->n_top != h.n_top)) {
    /* a different kept set at a top_p / typical_p rounding tie changes everything after it */
    float *keep = malloc(sizeof(float) * (size_t)V);
    memcpy(keep, sc, sizeof(float) * (size_t)V);
    double wm = warper_margin(smp, c, x, V);
    memcpy(smp->scores, keep, sizeof(float) * (size_t)V);
    free(keep);
    if (wm <= 1e-7) {
      n_warper_ties++;
      printf("  note: %s row %d (%s): id %d vs host %d, logprob %.7g vs %.7g: the host's top_p/typical_p walk is "
             "within %.2e of its threshold (a rounding tie there)\n",
             label, r, cname, d->id, h.id, (double)d->logprob, (double)h.logprob, wm);
      return;
    }
  }
  if (d->id != h.id) {
    int ok = 0;
    double margin = INFINITY;
    if (sampling && d->id >= 0 && d->id < V) {
      /* the host's cumulative mass around the two ids, relative to the draw */
      float mx = -INFINITY;
      for (int i = 0; i < V; i++)
        if (sc[i] > mx) mx = sc[i];
      double z = 0;
      for (int i = 0; i < V; i++)
        if (sc[i] != -INFINITY) z += exp((double)sc[i] - mx);
      double target = c->row.uniform * z, cum = 0;
      int lo = d->id < h.id ? d->id : h.id, hi = d->id < h.id ? h.id : d->id;
      for (int i = 0; i <= hi; i++) {
        if (sc[i] == -INFINITY) continue;
        cum += exp((double)sc[i] - mx);
        if (i >= lo - 1) {
          double mg = fabs(cum - target) / z;
          if (mg < margin) margin = mg;
        }
      }
      if (lo == 0) margin = fmin(margin, target / z);
      ok = margin <= 1e-5 && sc[d->id] != -INFINITY;
      hlp = (float)((double)sc[d->id] - (mx + log(z)));
    }
    if (ok) {
      n_ties_allowed++;
      if (margin > worst_tie_margin) worst_tie_margin = margin;
      printf("  note: %s row %d (%s): id %d vs host %d at a rounding tie (margin %.2e)\n", label, r, cname, d->id, h.id,
             margin);
    } else {
      CHECK_MSG(0, "%s row %d: id %d vs host %d (sampling %d, relative margin %.3e, uniform %.17g)", label, r, d->id,
                h.id, sampling, margin, c->row.uniform);
    }
  }
  CHECK_MSG(lp_close(d->logprob, hlp, 1e-4), "%s row %d: logprob %.9g vs host %.9g", label, r, (double)d->logprob,
            (double)hlp);
  if (!isnan(hlp) && !isnan(d->logprob) && !isinf(hlp)) {
    double e = fabs((double)d->logprob - hlp);
    if (e > worst_lp) worst_lp = e;
  }
  /* the target's logprob: the same log-softmax of the host's processed scores (greedy rows that want one) */
  const int need = c->row.want_logprob || c->row.top_n > 0;
  const float ht = !sampling && need && c->row.target >= 0 && c->row.target < V
                       ? (float)((double)sc[c->row.target] - ig_sample_logsumexp(sc, V)) : NAN;
  CHECK_MSG(lp_close(d->target_logprob, ht, 1e-4), "%s row %d: target %d logprob %.9g vs host %.9g", label, r,
            c->row.target, (double)d->target_logprob, (double)ht);
  CHECK_MSG(d->n_top == h.n_top, "%s row %d: n_top %d vs host %d", label, r, d->n_top, h.n_top);
  int nt = d->n_top < h.n_top ? d->n_top : h.n_top;
  if (nt > IG_SAMPLE_MAX_TOP) nt = IG_SAMPLE_MAX_TOP;
  for (int j = 0; j < nt; j++) {
    CHECK_MSG(d->top_ids[j] == h.top_ids[j], "%s row %d: top %d id %d vs host %d", label, r, j, d->top_ids[j],
              h.top_ids[j]);
    CHECK_MSG(lp_close(d->top_logprobs[j], h.top_logprobs[j], 1e-4), "%s row %d: top %d logprob %.9g vs host %.9g",
              label, r, j, (double)d->top_logprobs[j], (double)h.top_logprobs[j]);
    if (!isnan(h.top_logprobs[j]) && !isinf(h.top_logprobs[j])) {
      double e = fabs((double)d->top_logprobs[j] - h.top_logprobs[j]);
      if (e > worst_lp) worst_lp = e;
    }
  }
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* One vocabulary size: NLROWS logits rows, NROWS sampled rows (every config on every kind), checked against
 * the host; then determinism, batch invariance and validation. */
static void test_vocab(ig_backend *gpu, int V, uint64_t salt) {
  float *lg = malloc(sizeof(float) * (size_t)NLROWS * V);
  for (int r = 0; r < NLROWS; r++) gen_row(lg + (size_t)r * V, V, r % NKINDS);
  ig_tensor t;
  CHECK_MSG(gpu->alloc(gpu, &t, IG_DT_F32, NLROWS, V) == 0, "%s", gpu->err);
  CHECK_MSG(gpu->upload(gpu, &t, lg, IG_DT_F32) == 0, "%s", gpu->err);
  static rowcase cases[NROWS];
  ig_sample_row rows[NROWS];
  for (int r = 0; r < NROWS; r++) {
    int lrow = r % NLROWS;
    make_case(&cases[r], &CFGS[(r / NKINDS) % NCFG], lrow, lg + (size_t)lrow * V, V, salt * 1000 + (uint64_t)r,
              (uint64_t)(r * 7 % 13));
    rows[r] = cases[r].row;
  }
  static ig_sample_out out[NROWS], again[NROWS], one, rev[NROWS];
  memset(out, 0xa5, sizeof out);
  int rc = sample_now(gpu, &t, rows, NROWS, out);
  CHECK_MSG(rc == 0, "V=%d: sample: %s", V, gpu->err);
  char label[64];
  snprintf(label, sizeof label, "V=%d", V);
  ig_sampler smp;
  CHECK(ig_sampler_init(&smp, V) == 0);
  int before = ig_test_failures;
  for (int r = 0; r < NROWS && rc == 0; r++) {
    int f0 = ig_test_failures;
    check_row(&smp, &cases[r], lg + (size_t)rows[r].row * V, V, &out[r], label, r, CFGS[(r / NKINDS) % NCFG].name);
    if (ig_test_failures != f0)
      fprintf(stderr, "  (row %d: config %s, logits kind %d, %d tokens, %d prompt)\n", r,
              CFGS[(r / NKINDS) % NCFG].name, rows[r].row % NKINDS, cases[r].n_tokens, cases[r].n_prompt);
  }
  printf("V=%-6d %d rows vs host: %s\n", V, NROWS, ig_test_failures == before ? "ok" : "MISMATCH");

  /* determinism: the same call again, the same bytes */
  memset(again, 0x5a, sizeof again);
  CHECK_MSG(sample_now(gpu, &t, rows, NROWS, again) == 0, "%s", gpu->err);
  CHECK_MSG(memcmp(out, again, sizeof out) == 0, "V=%d: a second call differs", V);
  /* in flight: out[] is written by sample_wait, not before */
  if (gpu->sample_wait) {
    memset(again, 0x5a, sizeof again);
    CHECK_MSG(gpu->sample(gpu, &t, rows, NROWS, again) == 0, "%s", gpu->err);
    CHECK(((const unsigned char *)again)[0] == 0x5a);
    CHECK_MSG(gpu->sample_wait(gpu) == 0, "%s", gpu->err);
    CHECK_MSG(memcmp(out, again, sizeof out) == 0, "V=%d: collected by sample_wait, differs", V);
    CHECK(gpu->sample_wait(gpu) == 0); /* nothing pending */
  }
  /* batch invariance: rows alone, and in reverse order */
  for (int r = 0; r < NROWS; r += 5) {
    memset(&one, 0x3c, sizeof one);
    CHECK_MSG(sample_now(gpu, &t, &rows[r], 1, &one) == 0, "%s", gpu->err);
    CHECK_MSG(memcmp(&one, &out[r], sizeof one) == 0, "V=%d: row %d alone differs from the batch", V, r);
  }
  ig_sample_row rrows[NROWS];
  for (int r = 0; r < NROWS; r++) rrows[r] = rows[NROWS - 1 - r];
  CHECK_MSG(sample_now(gpu, &t, rrows, NROWS, rev) == 0, "%s", gpu->err);
  for (int r = 0; r < NROWS; r++)
    CHECK_MSG(memcmp(&rev[NROWS - 1 - r], &out[r], sizeof out[r]) == 0, "V=%d: row %d differs in reverse order", V, r);

  /* constrained rows (a JSON mask): an allowed-token bitmap on every third row, a few tokens (near the top or
   * not), about half, or all but a few; the host samples the same logits with -inf outside the mask */
  {
    const int W = (V + 31) / 32;
    uint32_t *bits = calloc((size_t)NROWS * W, sizeof(uint32_t));
    float *xm = malloc(sizeof(float) * (size_t)V);
    static ig_sample_out mout[NROWS];
    ig_sample_row mrows[NROWS];
    for (int r = 0; r < NROWS; r++) {
      mrows[r] = rows[r];
      if (r % 3 || !bits) continue;
      uint32_t *b = bits + (size_t)r * W;
      const float *x = lg + (size_t)rows[r].row * V;
      int kind = (r / 3) % 3;
      for (int i = 0; i < V; i++) {
        int on = kind == 0 ? (x[i] >= 2.5f && irand(2)) || irand(V / 8 + 1) == 0 : kind == 1 ? irand(2) : irand(50) != 0;
        if (on) b[i >> 5] |= 1u << (i & 31);
      }
      b[irand(V) >> 5] |= 1u; /* never empty */
      mrows[r].allowed = b;
    }
    memset(mout, 0xa5, sizeof mout);
    CHECK_MSG(bits && xm && sample_now(gpu, &t, mrows, NROWS, mout) == 0, "V=%d: masked sample: %s", V, gpu->err);
    int fm = ig_test_failures;
    for (int r = 0; r < NROWS && bits && xm; r++) {
      const float *x = lg + (size_t)rows[r].row * V;
      if (!mrows[r].allowed) { /* unmasked rows beside masked ones: as before */
        CHECK_MSG(memcmp(&mout[r], &out[r], sizeof out[r]) == 0, "V=%d: row %d changed beside masked rows", V, r);
        continue;
      }
      int finite = 0; /* an allowed entry with a finite logit (else every score is -inf, and id 0 comes out) */
      for (int i = 0; i < V; i++) {
        xm[i] = (mrows[r].allowed[i >> 5] >> (i & 31)) & 1u ? x[i] : -INFINITY;
        finite |= isfinite(xm[i]);
      }
      check_row(&smp, &cases[r], xm, V, &mout[r], label, r, CFGS[(r / NKINDS) % NCFG].name);
      CHECK_MSG(!finite || ((mrows[r].allowed[mout[r].id >> 5] >> (mout[r].id & 31)) & 1u),
                "V=%d: row %d chose a masked token %d", V, r, mout[r].id);
      if (r % 9 == 0) { /* alone, the same bytes */
        memset(&one, 0x3c, sizeof one);
        CHECK_MSG(sample_now(gpu, &t, &mrows[r], 1, &one) == 0, "%s", gpu->err);
        CHECK_MSG(memcmp(&one, &mout[r], sizeof one) == 0, "V=%d: masked row %d alone differs", V, r);
      }
    }
    printf("V=%-6d %d rows, every third masked, vs host: %s\n", V, NROWS, ig_test_failures == fm ? "ok" : "MISMATCH");
    free(bits);
    free(xm);
  }

  /* validation: clear errors, and the backend still works */
  ig_sample_row bad = rows[0];
  ig_sample_out bo;
  bad.row = NLROWS;
  CHECK(sample_now(gpu, &t, &bad, 1, &bo) != 0 && strstr(gpu->err, "out of range"));
  bad = rows[0], bad.row = -1;
  CHECK(sample_now(gpu, &t, &bad, 1, &bo) != 0);
  bad = rows[0], bad.top_n = IG_SAMPLE_MAX_TOP + 1;
  CHECK(sample_now(gpu, &t, &bad, 1, &bo) != 0 && strstr(gpu->err, "top_n"));
  bad = rows[0], bad.top_n = -1;
  CHECK(sample_now(gpu, &t, &bad, 1, &bo) != 0);
  bad = rows[0], bad.do_sample = 1, bad.temperature = 0.0f;
  CHECK(sample_now(gpu, &t, &bad, 1, &bo) != 0 && strstr(gpu->err, "temperature"));
  bad = rows[0], bad.do_sample = 1, bad.temperature = 1.0f, bad.uniform = 1.0;
  CHECK(sample_now(gpu, &t, &bad, 1, &bo) != 0 && strstr(gpu->err, "uniform"));
  bad = rows[0], bad.repetition_penalty = 1.2f, bad.n_tokens = 3, bad.n_prompt = 4;
  CHECK(sample_now(gpu, &t, &bad, 1, &bo) != 0 && strstr(gpu->err, "token counts"));
  bad = rows[0], bad.frequency_penalty = NAN;
  CHECK(sample_now(gpu, &t, &bad, 1, &bo) != 0 && strstr(gpu->err, "not finite"));
  CHECK(sample_now(gpu, &t, rows, 0, &bo) == 0);
  CHECK(sample_now(gpu, &t, rows, -1, &bo) != 0);
  ig_tensor tb;
  CHECK_MSG(gpu->alloc(gpu, &tb, IG_DT_BF16, 2, 16) == 0, "%s", gpu->err);
  bad = rows[0], bad.row = 0;
  CHECK(sample_now(gpu, &tb, &bad, 1, &bo) != 0 && strstr(gpu->err, "f32"));
  gpu->free(gpu, &tb);
  memset(&one, 0, sizeof one);
  CHECK_MSG(sample_now(gpu, &t, &rows[1], 1, &one) == 0, "after errors: %s", gpu->err);
  CHECK_MSG(memcmp(&one, &out[1], sizeof one) == 0, "V=%d: row 1 differs after the error calls", V);

  ig_sampler_free(&smp);
  for (int r = 0; r < NROWS; r++) free(cases[r].tokens);
  gpu->free(gpu, &t);
  free(lg);
}

/* Wall time per call (copies and the wait included) for 256 rows of a 128256 vocabulary, distinct rows. */
static void timing(ig_backend *gpu) {
  const int V = 128256;
  float *lg = malloc(sizeof(float) * (size_t)NROWS * V);
  for (int r = 0; r < NROWS; r++) gen_row(lg + (size_t)r * V, V, r & 1 ? 7 : 0);
  ig_tensor t;
  if (gpu->alloc(gpu, &t, IG_DT_F32, NROWS, V) || gpu->upload(gpu, &t, lg, IG_DT_F32)) {
    CHECK_MSG(0, "timing: %s", gpu->err);
    free(lg);
    return;
  }
  static int32_t toks[NROWS][200];
  for (int r = 0; r < NROWS; r++)
    for (int j = 0; j < 200; j++) toks[r][j] = irand(V);
  static ig_sample_row rows[NROWS];
  static ig_sample_out out[NROWS];
  static int32_t ids[NROWS];
  const char *names[] = {"greedy", "greedy + logprob", "greedy + logprob + top_n 5", "top_k 50 + top_p 0.9",
                         "temp 0.7 + rep 1.2 (200 tokens)", "top_p 0.9", "typical_p 0.9", "argmax_rows (reference)"};
  for (int nr = 1; nr <= NROWS; nr += NROWS - 1) /* one row (batch-1 decode), then NROWS */
  for (int cs = 0; cs < (nr == NROWS ? 8 : 7); cs++) {
    if (cs == 0)
      printf("timing: %d rows x %d vocabulary, f32 logits, ms per call (copies and wait included)\n", nr, V);
    for (int r = 0; r < NROWS; r++) {
      ig_sample_row *s = &rows[r];
      memset(s, 0, sizeof *s);
      s->row = r, s->temperature = 1.0f, s->top_p = 1.0f, s->typical_p = 1.0f, s->repetition_penalty = 1.0f;
      s->uniform = ig_sample_uniform(77, (uint64_t)r);
      switch (cs) {
      case 1: s->want_logprob = 1; break;
      case 2: s->want_logprob = 1, s->top_n = 5; break;
      case 3: s->do_sample = 1, s->top_k = 50, s->top_p = 0.9f; break;
      case 4:
        s->do_sample = 1, s->temperature = 0.7f, s->repetition_penalty = 1.2f;
        s->tokens = toks[r], s->n_tokens = 200, s->n_prompt = 150;
        break;
      case 5: s->do_sample = 1, s->top_p = 0.9f; break;
      case 6: s->do_sample = 1, s->typical_p = 0.9f; break;
      default: break;
      }
    }
    double best = 1e30;
    for (int it = 0; it < SAMPLE_TIMING_ITERS + 2; it++) {
      double t0 = now_s();
      int rc = cs == 7 ? gpu->argmax_rows(gpu, &t, ids) : sample_now(gpu, &t, rows, nr, out);
      double dt = now_s() - t0;
      if (rc) {
        CHECK_MSG(0, "timing %s: %s", names[cs], gpu->err);
        break;
      }
      if (it >= 2 && dt < best) best = dt;
    }
    printf("  %-34s %8.3f ms\n", names[cs], best * 1e3);
  }
  gpu->free(gpu, &t);
  free(lg);
}

int main(void) {
  if (ig_backend_cuda_device_count() == 0) {
    printf("SKIP: no CUDA device\n");
    return 77;
  }
  char err[256];
  ig_backend *gpu = ig_backend_cuda_create(0, err, sizeof err);
  if (!gpu) {
    fprintf(stderr, "cuda backend: %s\n", err);
    return 1;
  }
  CHECK(IG_SAMPLE_MAX_TOP == IG_MAX_TOP_N);
  if (!gpu->sample) {
    fprintf(stderr, "the CUDA backend has no sample op\n");
    gpu->destroy(gpu);
    return 1;
  }
  const int vocabs[4] = {128256, 4099, 1000, 50};
  for (int k = 0; k < 4; k++) test_vocab(gpu, vocabs[k], (uint64_t)k + 1);
  printf("compared %d rows; %d sampled ids differ at rounding ties of the draw (largest margin %.2e), %d rows at "
         "rounding ties of top_p/typical_p; worst logprob error %.2e\n",
         n_compared, n_ties_allowed, worst_tie_margin, n_warper_ties, worst_lp);
  if (SAMPLE_TIMING_ITERS > 0) timing(gpu);
  gpu->destroy(gpu);
  TEST_DONE();
}
