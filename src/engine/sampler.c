/* engine/sampler: see sampler.h. The processors follow Hugging Face transformers' logits processors and
 * TGI's heterogeneous versions of them, line for line where the math matters (tie handling, the <= in
 * top_p, the min_tokens_to_keep of 1), so hand-computed distributions in tests/engine match both. */
#include "engine/sampler.h"
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int ig_sampler_init(ig_sampler *s, int vocab) {
  memset(s, 0, sizeof *s);
  s->vocab = vocab;
  s->scores = malloc(sizeof(float) * (size_t)vocab);
  s->idx = malloc(sizeof(int32_t) * (size_t)vocab);
  s->key = malloc(sizeof(float) * (size_t)vocab);
  s->cnt = calloc((size_t)vocab, sizeof(int32_t));
  s->perm = malloc(sizeof(uint32_t) * (size_t)vocab);
  if (!s->scores || !s->idx || !s->key || !s->cnt || !s->perm) {
    ig_sampler_free(s);
    return -ENOMEM;
  }
  return 0;
}

void ig_sampler_free(ig_sampler *s) {
  free(s->scores);
  free(s->idx);
  free(s->key);
  free(s->cnt);
  free(s->perm);
  memset(s, 0, sizeof *s);
}

int ig_sampler_is_sampling(const ig_gen_params *p) {
  if (p->temperature <= 0.0f) return 0; /* OpenAI's temperature 0: greedy */
  return p->do_sample || p->temperature != 1.0f || p->top_k > 0 || (p->top_p > 0.0f && p->top_p < 1.0f) ||
         (p->typical_p > 0.0f && p->typical_p < 1.0f);
}

/* ---- penalties ---------------------------------------------------------------------------------------- */

void ig_sample_repetition(ig_sampler *s, float *scores, const int32_t *tokens, int n, float penalty) {
  /* cnt marks tokens already penalised so a repeated token is penalised once (HF gathers then scatters). */
  for (int i = 0; i < n; i++) {
    int32_t t = tokens[i];
    if (t < 0 || t >= s->vocab || s->cnt[t]) continue;
    s->cnt[t] = 1;
    float v = scores[t];
    scores[t] = v < 0 ? v * penalty : v / penalty;
  }
  for (int i = 0; i < n; i++)
    if (tokens[i] >= 0 && tokens[i] < s->vocab) s->cnt[tokens[i]] = 0;
}

void ig_sample_freq_presence(ig_sampler *s, float *scores, const int32_t *tokens, int n, float freq, float pres) {
  for (int i = 0; i < n; i++)
    if (tokens[i] >= 0 && tokens[i] < s->vocab) s->cnt[tokens[i]]++;
  for (int i = 0; i < n; i++) {
    int32_t t = tokens[i];
    if (t < 0 || t >= s->vocab || !s->cnt[t]) continue;
    scores[t] -= (float)s->cnt[t] * freq + pres;
    s->cnt[t] = 0;
  }
}

/* ---- watermark ---------------------------------------------------------------------------------------- */

/* mt19937 exactly as at::mt19937 (== std::mt19937): what torch's CPU generator draws from. */
typedef struct {
  uint32_t st[624];
  int next;
} mt19937;

static void mt_seed(mt19937 *m, uint32_t seed) {
  m->st[0] = seed;
  for (int j = 1; j < 624; j++) m->st[j] = 1812433253u * (m->st[j - 1] ^ (m->st[j - 1] >> 30)) + (uint32_t)j;
  m->next = 624;
}

static uint32_t mt_next(mt19937 *m) {
  if (m->next >= 624) {
    for (int k = 0; k < 624; k++) {
      uint32_t y = (m->st[k] & 0x80000000u) | (m->st[(k + 1) % 624] & 0x7fffffffu);
      m->st[k] = m->st[(k + 397) % 624] ^ (y >> 1) ^ ((y & 1u) ? 0x9908b0dfu : 0u);
    }
    m->next = 0;
  }
  uint32_t y = m->st[m->next++];
  y ^= y >> 11;
  y ^= (y << 7) & 0x9d2c5680u;
  y ^= (y << 15) & 0xefc60000u;
  y ^= y >> 18;
  return y;
}

void ig_sample_torch_randperm(uint64_t seed, uint32_t *perm, int n) {
  /* aten randperm_cpu for n < 2^32/20: identity, then for i < n-1 swap r[i] with r[i + random() % (n-i)]. */
  mt19937 m;
  mt_seed(&m, (uint32_t)(seed & 0xffffffffu));
  for (int i = 0; i < n; i++) perm[i] = (uint32_t)i;
  for (int i = 0; i < n - 1; i++) {
    int64_t z = (int64_t)(mt_next(&m) % (uint32_t)(n - i));
    uint32_t sav = perm[i];
    perm[i] = perm[z + i];
    perm[z + i] = sav;
  }
}

uint32_t ig_sample_mt19937_nth(uint32_t seed, int n) {
  mt19937 m;
  mt_seed(&m, seed);
  uint32_t y = 0;
  for (int i = 0; i < n; i++) y = mt_next(&m);
  return y;
}

void ig_sample_watermark(ig_sampler *s, float *scores, int vocab, int32_t prev_token, float gamma, float delta) {
  const uint64_t hash_key = 15485863u;
  if (!(gamma > 0.0f && gamma <= 1.0f)) gamma = 0.5f; /* TGI's defaults where the request left them unset */
  if (!(delta > 0.0f)) delta = 2.0f;
  ig_sample_torch_randperm(hash_key * (uint64_t)(uint32_t)prev_token, s->perm, vocab);
  int green = (int)(vocab * (double)gamma);
  for (int i = 0; i < green; i++) scores[s->perm[i]] += delta;
}

/* ---- warpers ------------------------------------------------------------------------------------------ */

void ig_sample_temperature(float *scores, int vocab, float t) {
  for (int i = 0; i < vocab; i++) scores[i] /= t;
}

/* The k-th largest of a[0..n) (1 <= k <= n), by quickselect (Hoare partition, median-of-3 pivot): O(n)
 * on average; a is reordered. */
static float kth_largest(float *a, int n, int k) {
  int lo = 0, hi = n - 1, want = k - 1; /* index of the k-th largest in descending order */
  while (lo < hi) {
    int mid = lo + (hi - lo) / 2;
    float x = a[lo], y = a[mid], z = a[hi];
    float pivot = (x > y) == (y > z) ? y : ((x > y) == (x > z) ? z : x); /* median of three */
    int i = lo, j = hi;
    while (i <= j) {
      while (a[i] > pivot) i++;
      while (a[j] < pivot) j--;
      if (i <= j) {
        float t = a[i];
        a[i] = a[j];
        a[j] = t;
        i++;
        j--;
      }
    }
    if (want <= j) hi = j;
    else if (want >= i) lo = i;
    else return a[want];
  }
  return a[want];
}

/* Min-heap on values (the k largest seen so far; heap[0] is the k-th largest). */
static void heap_down(float *h, int n, int i) {
  for (;;) {
    int l = 2 * i + 1, r = l + 1, m = i;
    if (l < n && h[l] < h[m]) m = l;
    if (r < n && h[r] < h[m]) m = r;
    if (m == i) return;
    float t = h[i];
    h[i] = h[m];
    h[m] = t;
    i = m;
  }
}

static float kth_largest_heap(const float *x, int n, int k, float *h) {
  for (int i = 0; i < k; i++) h[i] = x[i];
  for (int i = k / 2 - 1; i >= 0; i--) heap_down(h, k, i);
  for (int i = k; i < n; i++) {
    if (x[i] > h[0]) {
      h[0] = x[i];
      heap_down(h, k, 0);
    }
  }
  return h[0];
}

void ig_sample_top_k(ig_sampler *s, float *scores, int vocab, int k) {
  /* HF TopKLogitsWarper: remove scores < the k-th largest (ties with it are kept). A small k over a large
   * vocabulary: a k-heap (most entries cost one compare); else quickselect on a copy. */
  if (k <= 0 || k >= vocab) return;
  float kth;
  if (k < vocab / 64) {
    kth = kth_largest_heap(scores, vocab, k, s->key);
  } else {
    memcpy(s->key, scores, sizeof(float) * (size_t)vocab);
    kth = kth_largest(s->key, vocab, k);
  }
  for (int i = 0; i < vocab; i++)
    if (scores[i] < kth) scores[i] = -INFINITY;
}

static int cmp_key_asc(const void *a, const void *b, void *ctx) {
  const float *key = ctx;
  float x = key[*(const int32_t *)a], y = key[*(const int32_t *)b];
  if (x < y) return -1;
  if (x > y) return 1;
  return (*(const int32_t *)a > *(const int32_t *)b) - (*(const int32_t *)a < *(const int32_t *)b);
}

/* Collects the finite entries' indices into s->idx; returns their count and their max. */
static int finite_indices(ig_sampler *s, const float *scores, int vocab, float *mx) {
  int n = 0;
  float m = -INFINITY;
  for (int i = 0; i < vocab; i++) {
    if (isfinite(scores[i])) {
      s->idx[n++] = i;
      if (scores[i] > m) m = scores[i];
    }
  }
  *mx = m;
  return n;
}

void ig_sample_top_p(ig_sampler *s, float *scores, int vocab, float top_p) {
  /* HF TopPLogitsWarper: sort ascending, cumulative softmax, remove entries with cum <= 1 - top_p, always
   * keeping the largest. -inf entries have probability 0 and sort first: they stay removed. */
  if (!(top_p > 0.0f && top_p < 1.0f)) return;
  float mx;
  int n = finite_indices(s, scores, vocab, &mx);
  if (n == 0) return;
  qsort_r(s->idx, (size_t)n, sizeof(int32_t), cmp_key_asc, scores);
  double total = 0;
  for (int j = 0; j < n; j++) total += exp((double)scores[s->idx[j]] - mx);
  double cum = 0, thr = 1.0 - (double)top_p;
  for (int j = 0; j < n - 1; j++) {
    cum += exp((double)scores[s->idx[j]] - mx) / total;
    if (cum <= thr) scores[s->idx[j]] = -INFINITY;
    else break;
  }
}

void ig_sample_typical_p(ig_sampler *s, float *scores, int vocab, float mass) {
  /* HF TypicalLogitsWarper: keep the tokens whose -log p is closest to the entropy, up to `mass`. */
  if (!(mass > 0.0f && mass < 1.0f)) return;
  float mx;
  int n = finite_indices(s, scores, vocab, &mx);
  if (n == 0) return;
  double lse = ig_sample_logsumexp(scores, vocab);
  double ent = 0;
  for (int j = 0; j < n; j++) {
    double lp = scores[s->idx[j]] - lse;
    ent -= lp * exp(lp);
  }
  for (int j = 0; j < n; j++) {
    int i = s->idx[j];
    s->key[i] = (float)fabs(-((double)scores[i] - lse) - ent);
  }
  qsort_r(s->idx, (size_t)n, sizeof(int32_t), cmp_key_asc, s->key);
  double cum = 0;
  int last = 0;
  for (int j = 0; j < n; j++) {
    cum += exp((double)scores[s->idx[j]] - lse);
    if (cum < mass) last = j + 1;
    else break;
  }
  if (last > n - 1) last = n - 1;
  float thr = s->key[s->idx[last]];
  for (int j = 1; j < n; j++)
    if (s->key[s->idx[j]] > thr) scores[s->idx[j]] = -INFINITY;
}

/* ---- distribution helpers ----------------------------------------------------------------------------- */

/* exp(x) for x <= 0, about 2e-7 relative error, 0 for -inf: x = n ln2 + r with |r| <= ln2/2, a degree-6
 * polynomial for e^r and the exponent bits for 2^n. Written without branches or calls so that the loops
 * below vectorize (a vocabulary of 150k entries is summed every step). */
static inline float exp_neg(float x) {
  float xc = x < -87.0f ? -87.0f : x;
  float t = xc * 1.44269504088896341f;
  float n = (t + 12582912.0f) - 12582912.0f; /* round to nearest */
  float r = xc - n * 0.693145751953125f - n * 1.428606765330187e-06f;
  float p = 1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 + r * (1.0f / 720))))));
  int32_t bits = ((int32_t)n + 127) << 23;
  float scale;
  memcpy(&scale, &bits, sizeof scale);
  return x == -INFINITY ? 0.0f : p * scale;
}

/* sum_i exp(x[i] - mx) in double, over 16 independent lanes (the order is fixed by the code, never by the
 * compiler, so a sum is the same on every call). */
static double sum_exp(const float *x, int n, float mx) {
  double acc[16] = {0};
  int i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; j++) acc[j] += (double)exp_neg(x[i + j] - mx);
  for (; i < n; i++) acc[i & 15] += (double)exp_neg(x[i] - mx);
  double sum = 0;
  for (int j = 0; j < 16; j++) sum += acc[j];
  return sum;
}

static float max_of(const float *x, int n) {
  float acc[16];
  for (int j = 0; j < 16; j++) acc[j] = -INFINITY;
  int i = 0;
  for (; i + 16 <= n; i += 16) /* 16 lanes: no loop-carried dependency, so it vectorizes */
    for (int j = 0; j < 16; j++) acc[j] = x[i + j] > acc[j] ? x[i + j] : acc[j];
  for (; i < n; i++) acc[0] = x[i] > acc[0] ? x[i] : acc[0];
  float m = acc[0];
  for (int j = 1; j < 16; j++) m = acc[j] > m ? acc[j] : m;
  return m;
}

void ig_sample_min_p(float *scores, int vocab, float min_p) {
  /* transformers' MinPLogitsWarper: p_i < min_p * p_max removed, i.e. s_i < s_max + log(min_p); the max stays */
  if (!(min_p > 0.0f && min_p <= 1.0f)) return;
  float mx = max_of(scores, vocab);
  if (mx == -INFINITY) return;
  float t = mx + logf(min_p);
  for (int i = 0; i < vocab; i++)
    if (scores[i] < t) scores[i] = -INFINITY;
}

double ig_sample_logsumexp(const float *scores, int vocab) {
  float mx = max_of(scores, vocab);
  if (mx == -INFINITY) return -INFINITY;
  return mx + log(sum_exp(scores, vocab, mx));
}

int ig_sample_top_n(const float *scores, int vocab, double lse, int n, int32_t *ids, float *logprobs) {
  if (n <= 0) return 0;
  if (n > IG_MAX_TOP_N) n = IG_MAX_TOP_N;
  /* Keep the IG_MAX_TOP_N largest, sorted descending; ids ascending among equals (scan order). */
  int32_t tid[IG_MAX_TOP_N];
  float tv[IG_MAX_TOP_N];
  int m = 0;
  for (int i = 0; i < vocab; i++) {
    float v = scores[i];
    if (v == -INFINITY || isnan(v)) continue;
    if (m == IG_MAX_TOP_N && v <= tv[m - 1]) continue;
    int j = m < IG_MAX_TOP_N ? m++ : m - 1;
    while (j > 0 && tv[j - 1] < v) {
      tv[j] = tv[j - 1];
      tid[j] = tid[j - 1];
      j--;
    }
    tv[j] = v;
    tid[j] = i;
  }
  int k = n < m ? n : m;
  while (k > 0 && k < m && tv[k] == tv[k - 1]) k++; /* TGI includes ties with the n-th */
  for (int j = 0; j < k; j++) {
    ids[j] = tid[j];
    logprobs[j] = (float)((double)tv[j] - lse);
  }
  return k;
}

static uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

double ig_sample_uniform(uint64_t seed, uint64_t step) {
  uint64_t z = mix64(mix64(seed + 0x9e3779b97f4a7c15ull) ^ (step * 0xd1b54a32d192ed03ull + 0x632be59bd9b4e019ull));
  return (double)(z >> 11) * 0x1p-53;
}

/* ---- the whole chain ---------------------------------------------------------------------------------- */

void ig_sampler_sample(ig_sampler *s, const ig_gen_params *p, const float *logits, const int32_t *tokens,
                       int n_tokens, int n_prompt, uint64_t step, ig_sample_result *out) {
  ig_sampler_sample_u(s, p, logits, tokens, n_tokens, n_prompt, ig_sample_uniform(p->seed, step), out);
}

void ig_sampler_sample_u(ig_sampler *s, const ig_gen_params *p, const float *logits, const int32_t *tokens,
                         int n_tokens, int n_prompt, double uniform, ig_sample_result *out) {
  int V = s->vocab;
  float *sc = s->scores;
  for (int i = 0; i < V; i++) sc[i] = logits[i] != logits[i] ? -INFINITY : logits[i]; /* NaN -> -inf */

  if (p->min_tokens > 0 && n_tokens - n_prompt < p->min_tokens) { /* min_tokens: EOS and stop ids cannot come yet */
    for (int k = 0; k < p->n_eos; k++)
      if (p->eos_ids[k] >= 0 && p->eos_ids[k] < V) sc[p->eos_ids[k]] = -INFINITY;
    for (int k = 0; k < p->n_stop_ids; k++)
      if (p->stop_ids[k] >= 0 && p->stop_ids[k] < V) sc[p->stop_ids[k]] = -INFINITY;
  }
  for (int k = 0; k < p->n_bias; k++) /* logit_bias, first (ids checked at submission) */
    if (p->bias_id[k] >= 0 && p->bias_id[k] < V) sc[p->bias_id[k]] += p->bias_val[k];
  if (p->watermark && n_tokens > 0)
    ig_sample_watermark(s, sc, V, tokens[n_tokens - 1], p->watermark_gamma, p->watermark_delta);
  if (p->repetition_penalty > 0.0f && p->repetition_penalty != 1.0f)
    ig_sample_repetition(s, sc, tokens, n_tokens, p->repetition_penalty);
  if (p->frequency_penalty != 0.0f || p->presence_penalty != 0.0f)
    ig_sample_freq_presence(s, sc, tokens + n_prompt, n_tokens - n_prompt, p->frequency_penalty,
                            p->presence_penalty);
  int sampling = ig_sampler_is_sampling(p);
  if (sampling) {
    if (p->temperature != 1.0f) ig_sample_temperature(sc, V, p->temperature);
    if (p->top_k > 0) ig_sample_top_k(s, sc, V, p->top_k);
    ig_sample_top_p(s, sc, V, p->top_p);
    ig_sample_min_p(sc, V, p->min_p);
    ig_sample_typical_p(s, sc, V, p->typical_p);
  }

  /* The normaliser costs an exp per vocabulary entry: only computed when something needs it. */
  int need_lse = sampling || p->want_logprobs || p->top_n_tokens > 0;
  float mx = need_lse ? max_of(sc, V) : 0.0f;
  double z = need_lse && mx != -INFINITY ? sum_exp(sc, V, mx) : 0.0; /* sum of exp(s - mx) */
  double lse = !need_lse ? NAN : mx == -INFINITY ? -INFINITY : mx + log(z);
  int32_t id = 0;
  if (!sampling) {
    float best = max_of(sc, V); /* vectorized max, then the first index that holds it */
    while (id < V - 1 && sc[id] != best) id++;
  } else {
    /* Inverse CDF over ids in order with one uniform draw per (seed, step), on the unnormalised weights
     * exp(s - max) that the normaliser summed. */
    double target = uniform * z, cum = 0;
    int32_t last_ok = -1;
    id = -1;
    for (int i = 0; i < V; i++) {
      if (sc[i] == -INFINITY) continue;
      last_ok = i;
      cum += (double)exp_neg(sc[i] - mx); /* only up to the draw: about half the finite entries */
      if (cum > target) {
        id = i;
        break;
      }
    }
    if (id < 0) id = last_ok >= 0 ? last_ok : 0; /* rounding left cum just below target */
  }
  out->id = id;
  out->logprob = need_lse ? (float)((double)sc[id] - lse) : NAN;
  out->n_top = p->top_n_tokens > 0 ? ig_sample_top_n(sc, V, lse, p->top_n_tokens, out->top_ids, out->top_logprobs) : 0;
}
