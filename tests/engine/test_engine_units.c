/* tests/engine: the engine's pieces in isolation: block manager accounting, each logits processor against
 * hand-computed distributions, the seeded RNG and the torch-compatible permutation, top-n ties, and stop
 * sequences held back across token boundaries. */
#include "engine/kvblocks.h"
#include "engine/sampler.h"
#include "engine/stopseq.h"
#include "test.h"
#include <errno.h>
#include <math.h>
#include <stdlib.h>

#define NEG (-INFINITY)

/* ---- block manager ------------------------------------------------------------------------------------- */
static void test_kvblocks(void) {
  ig_kvb m;
  CHECK(ig_kvb_init(&m, 10, 4) == 0);
  CHECK_EQ_INT(ig_kvb_used(&m), 0);
  CHECK_EQ_INT(ig_kvb_blocks_for(&m, 0), 0);
  CHECK_EQ_INT(ig_kvb_blocks_for(&m, 1), 1);
  CHECK_EQ_INT(ig_kvb_blocks_for(&m, 4), 1);
  CHECK_EQ_INT(ig_kvb_blocks_for(&m, 5), 2);
  ig_kvb_table a = {0}, b = {0};
  CHECK(ig_kvb_ensure(&m, &a, 5) == 0);
  CHECK_EQ_INT(a.n, 2);
  CHECK_EQ_INT(ig_kvb_used(&m), 2);
  CHECK(ig_kvb_ensure(&m, &a, 8) == 0); /* still 2 blocks */
  CHECK_EQ_INT(a.n, 2);
  CHECK(ig_kvb_ensure(&m, &a, 9) == 0);
  CHECK_EQ_INT(a.n, 3);
  CHECK_EQ_INT(ig_kvb_slot(&m, &a, 0), a.ids[0] * 4);
  CHECK_EQ_INT(ig_kvb_slot(&m, &a, 6), a.ids[1] * 4 + 2);
  CHECK(ig_kvb_ensure(&m, &b, 28) == 0); /* 7 blocks: all the rest */
  CHECK_EQ_INT(ig_kvb_used(&m), 10);
  CHECK(ig_kvb_ensure(&m, &b, 29) == -ENOSPC); /* all or nothing */
  CHECK_EQ_INT(b.n, 7);
  CHECK(ig_kvb_ensure(&m, &a, 13) == -ENOSPC);
  CHECK_EQ_INT(a.n, 3);
  /* No block is owned twice. */
  int seen[10] = {0};
  for (int i = 0; i < a.n; i++) seen[a.ids[i]]++;
  for (int i = 0; i < b.n; i++) seen[b.ids[i]]++;
  for (int i = 0; i < 10; i++) CHECK_EQ_INT(seen[i], 1);
  ig_kvb_release(&m, &a);
  CHECK_EQ_INT(a.n, 0);
  CHECK_EQ_INT(ig_kvb_used(&m), 7);
  CHECK(ig_kvb_ensure(&m, &b, 40) == 0);
  CHECK_EQ_INT(ig_kvb_used(&m), 10);
  ig_kvb_release(&m, &b);
  ig_kvb_release(&m, &a); /* empty: no-op */
  CHECK_EQ_INT(ig_kvb_used(&m), 0);
  CHECK_EQ_INT(m.n_free, 10);
  /* Churn: random grow/release keeps used == sum of table sizes. */
  ig_kvb_table t[5] = {{0}};
  unsigned x = 12345;
  for (int it = 0; it < 2000; it++) {
    x = x * 1103515245u + 12345u;
    int k = (x >> 16) % 5;
    if ((x >> 8) % 3 == 0) ig_kvb_release(&m, &t[k]);
    else ig_kvb_ensure(&m, &t[k], t[k].n * 4 + 1 + (int)((x >> 20) % 9));
    int sum = 0;
    for (int j = 0; j < 5; j++) sum += t[j].n;
    if (sum != ig_kvb_used(&m)) {
      CHECK_EQ_INT(sum, ig_kvb_used(&m));
      break;
    }
  }
  for (int j = 0; j < 5; j++) {
    ig_kvb_release(&m, &t[j]);
    ig_kvb_table_free(&t[j]);
  }
  CHECK_EQ_INT(ig_kvb_used(&m), 0);
  ig_kvb_table_free(&a);
  ig_kvb_table_free(&b);
  ig_kvb_free(&m);
}

/* The prefix cache of the block manager: keys, reference counts, kept blocks taken back oldest first, the
 * duplicate and stale-chain cases, and exact accounting under churn. */
static void test_prefix_blocks(void) {
  ig_kvb m;
  CHECK(ig_kvb_init(&m, 8, 4) == 0);
  int32_t ids[8];
  int live = -1;
  CHECK_EQ_INT(ig_kvb_match(&m, (int32_t[]){1, 2, 3, 4}, 1, ids, &live), 0); /* off: nothing, ever */
  CHECK(ig_kvb_enable_cache(&m) == 0);
  int32_t T[16] = {5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20};
  ig_kvb_table a = {0}, b = {0}, c = {0}, d = {0};
  CHECK(ig_kvb_ensure(&m, &a, 12) == 0);
  uint64_t chain = 0;
  for (int j = 0; j < 3; j++) ig_kvb_register(&m, &a, j, T + 4 * j, &chain);
  CHECK(chain == m.serial[a.ids[2]] && chain != 0);
  CHECK_EQ_INT(m.n_cached, 3);
  CHECK_EQ_INT(ig_kvb_match(&m, T, 4, ids, &live), 3);
  CHECK_EQ_INT(live, 3);
  for (int j = 0; j < 3; j++) CHECK_EQ_INT(ids[j], a.ids[j]);
  CHECK_EQ_INT(ig_kvb_match(&m, T, 2, ids, NULL), 2); /* at most max_blocks */
  int32_t U[12] = {5, 6, 7, 8, 9, 10, 11, 99, 13, 14, 15, 16};
  CHECK_EQ_INT(ig_kvb_match(&m, U, 3, ids, NULL), 1); /* a token differs in block 1: block 2's key differs too */
  int32_t W[4] = {9, 10, 11, 12};
  CHECK_EQ_INT(ig_kvb_match(&m, W, 1, ids, NULL), 0); /* block 1's tokens, but not after block 0 */
  /* sharing */
  CHECK_EQ_INT(ig_kvb_match(&m, T, 3, ids, NULL), 3);
  CHECK(ig_kvb_attach(&m, &b, ids, 3) == 0);
  CHECK_EQ_INT(b.n, 3);
  CHECK_EQ_INT(ig_kvb_used(&m), 3); /* shared blocks count once */
  CHECK(ig_kvb_ensure(&m, &b, 14) == 0); /* b's own fourth block */
  CHECK_EQ_INT(ig_kvb_used(&m), 4);
  ig_kvb_release(&m, &a);
  CHECK_EQ_INT(ig_kvb_used(&m), 4); /* b still holds them */
  CHECK_EQ_INT(ig_kvb_cached_free(&m), 0);
  ig_kvb_release(&m, &b);
  CHECK_EQ_INT(ig_kvb_used(&m), 0);
  CHECK_EQ_INT(m.n_free, 8);
  CHECK_EQ_INT(ig_kvb_cached_free(&m), 3); /* kept: free, but found */
  CHECK_EQ_INT(ig_kvb_match(&m, T, 3, ids, &live), 3);
  CHECK_EQ_INT(live, 0);
  /* allocation takes the never-cached blocks first (5), then the kept ones, deepest first */
  CHECK(ig_kvb_ensure(&m, &c, 24) == 0);
  CHECK_EQ_INT(ig_kvb_match(&m, T, 3, ids, NULL), 2);
  CHECK(ig_kvb_ensure(&m, &c, 28) == 0);
  CHECK_EQ_INT(ig_kvb_match(&m, T, 3, ids, NULL), 1);
  CHECK_EQ_INT(m.n_cached, 1);
  CHECK_EQ_INT(ig_kvb_used(&m), 7);
  CHECK(ig_kvb_ensure(&m, &c, 36) == -ENOSPC);
  ig_kvb_release(&m, &c);
  /* the same content registered twice: the second block stays unregistered and is freed, not kept */
  CHECK(ig_kvb_ensure(&m, &a, 4) == 0);
  CHECK(ig_kvb_ensure(&m, &b, 8) == 0);
  chain = 0;
  ig_kvb_register(&m, &a, 0, T + 4, &chain); /* content X = {9..12} at the root */
  uint64_t ca = chain;
  chain = 0;
  ig_kvb_register(&m, &b, 0, T + 4, &chain);
  CHECK(chain == ca && m.serial[b.ids[0]] == 0);
  ig_kvb_register(&m, &b, 1, T + 8, &chain); /* b's block 1 continues a's chain */
  CHECK(m.serial[b.ids[1]] != 0);
  CHECK_EQ_INT(ig_kvb_match(&m, T + 4, 2, ids, NULL), 2);
  CHECK(ids[0] == a.ids[0] && ids[1] == b.ids[1]);
  int kept0 = ig_kvb_cached_free(&m);
  ig_kvb_release(&m, &b);
  CHECK_EQ_INT(ig_kvb_cached_free(&m), kept0 + 1); /* its block 1 kept, its block 0 freed */
  ig_kvb_release(&m, &a);
  /* a chain whose first block is taken back: the rest is unreachable, even when its id gets new content */
  CHECK(ig_kvb_ensure(&m, &a, 32) == 0); /* every block: all kept ones taken back */
  CHECK_EQ_INT(m.n_cached, 0);
  CHECK_EQ_INT(ig_kvb_match(&m, T + 4, 2, ids, NULL), 0);
  ig_kvb_release(&m, &a);
  /* churn: random tables, registrations and attachments keep the books exact */
  ig_kvb_table t[5] = {{0}};
  int32_t toks[5][64];
  unsigned x = 99;
  for (int it = 0; it < 3000; it++) {
    x = x * 1103515245u + 12345u;
    int k = (x >> 16) % 5, op = (x >> 8) % 4;
    if (op == 0) {
      ig_kvb_release(&m, &t[k]);
    } else if (op == 1 && t[k].n == 0) { /* a new sequence from a few shared prompts */
      for (int i = 0; i < 32; i++) toks[k][i] = 1 + (int)((x >> 4) % 3) * 100 + (i < 20 ? i : (int)(x >> (i % 16)) % 7);
      int n = ig_kvb_match(&m, toks[k], 5, ids, NULL);
      CHECK(ig_kvb_attach(&m, &t[k], ids, n) == 0);
    } else if (t[k].n < 8 && ig_kvb_ensure(&m, &t[k], (t[k].n + 1) * 4) == 0) {
      uint64_t ch = 0;
      for (int j = 0; j < t[k].n; j++) ig_kvb_register(&m, &t[k], j, toks[k] + 4 * j, &ch);
    }
    int refs = 0, used = 0, kept = 0, sum = 0;
    for (int i = 0; i < 8; i++) {
      refs += m.ref[i];
      used += m.ref[i] > 0;
      kept += m.ref[i] == 0 && m.serial[i] != 0;
    }
    for (int j = 0; j < 5; j++) sum += t[j].n;
    if (refs != sum || used != ig_kvb_used(&m) || kept != ig_kvb_cached_free(&m) || m.n_stack + kept != m.n_free) {
      CHECK_MSG(0, "books at step %d: refs %d tables %d used %d/%d kept %d/%d", it, refs, sum, used, ig_kvb_used(&m),
                kept, ig_kvb_cached_free(&m));
      break;
    }
  }
  for (int j = 0; j < 5; j++) {
    ig_kvb_release(&m, &t[j]);
    ig_kvb_table_free(&t[j]);
  }
  CHECK_EQ_INT(ig_kvb_used(&m), 0);
  ig_kvb_table_free(&a), ig_kvb_table_free(&b), ig_kvb_table_free(&c), ig_kvb_table_free(&d);
  ig_kvb_free(&m);
}

/* ---- sampler pieces ----------------------------------------------------------------------------------- */
static void check_scores(const float *got, const float *want, int n, const char *what) {
  for (int i = 0; i < n; i++) {
    if (isinf(want[i])) CHECK_MSG(isinf(got[i]) && got[i] < 0, "%s[%d] = %g, want -inf", what, i, got[i]);
    else CHECK_MSG(fabsf(got[i] - want[i]) < 1e-5f, "%s[%d] = %g, want %g", what, i, got[i], want[i]);
  }
}

static void test_processors(void) {
  ig_sampler s;
  CHECK(ig_sampler_init(&s, 8) == 0);
  { /* HF repetition penalty: negative scores multiplied, positive divided, each seen token once */
    float sc[4] = {2, -1, 0.5f, 3};
    int32_t toks[] = {0, 1, 1};
    ig_sample_repetition(&s, sc, toks, 3, 2.0f);
    float want[4] = {1, -2, 0.5f, 3};
    check_scores(sc, want, 4, "repetition");
  }
  { /* OpenAI frequency/presence over counts */
    float sc[3] = {1, 1, 1};
    int32_t toks[] = {0, 0, 2};
    ig_sample_freq_presence(&s, sc, toks, 3, 0.5f, 0.25f);
    float want[3] = {-0.25f, 1, 0.25f};
    check_scores(sc, want, 3, "freq_presence");
    for (int i = 0; i < 8; i++) CHECK_EQ_INT(s.cnt[i], 0); /* scratch left clean */
  }
  {
    float sc[3] = {1, -2, 4};
    ig_sample_temperature(sc, 3, 0.5f);
    float want[3] = {2, -4, 8};
    check_scores(sc, want, 3, "temperature");
  }
  { /* top_k keeps ties with the k-th value */
    float sc[5] = {1, 3, 2, 3, 0};
    ig_sample_top_k(&s, sc, 5, 2);
    float want[5] = {NEG, 3, NEG, 3, NEG};
    check_scores(sc, want, 5, "top_k=2");
    float sc2[5] = {1, 3, 2, 3, 0};
    ig_sample_top_k(&s, sc2, 5, 3);
    float want2[5] = {NEG, 3, 2, 3, NEG};
    check_scores(sc2, want2, 5, "top_k=3");
  }
  { /* top_k against a brute-force count on random data with many ties */
    ig_sampler big;
    ig_sampler_init(&big, 1000);
    unsigned x = 99;
    float sc[1000];
    int ok = 1;
    for (int round = 0; round < 50 && ok; round++) {
      for (int i = 0; i < 1000; i++) {
        x = x * 1664525u + 1013904223u;
        sc[i] = (float)((x >> 16) % (round % 2 ? 37 : 100000)) - 50.0f;
        if ((x >> 8) % 17 == 0) sc[i] = NEG;
      }
      int k = round % 3 ? 1 + (int)(x % 999) : 1 + (int)(x % 14); /* both the heap and quickselect */
      float orig[1000];
      memcpy(orig, sc, sizeof sc);
      ig_sample_top_k(&big, sc, 1000, k);
      for (int i = 0; i < 1000 && ok; i++) {
        int greater = 0;
        for (int j = 0; j < 1000; j++) greater += orig[j] > orig[i];
        int keep = greater < k; /* i is among the top k, counting ties as HF does */
        ok = keep ? sc[i] == orig[i] : (isinf(sc[i]) && sc[i] < 0);
      }
    }
    CHECK(ok);
    ig_sampler_free(&big);
  }
  { /* top_p on p = .1 .2 .3 .4: ascending cumsum .1 .3 .6 1; removed where cum <= 1 - top_p */
    float base[4] = {logf(0.1f), logf(0.2f), logf(0.3f), logf(0.4f)};
    float sc[4];
    memcpy(sc, base, sizeof sc);
    ig_sample_top_p(&s, sc, 4, 0.75f);
    float want[4] = {NEG, base[1], base[2], base[3]};
    check_scores(sc, want, 4, "top_p=.75");
    memcpy(sc, base, sizeof sc);
    ig_sample_top_p(&s, sc, 4, 0.5f);
    float want2[4] = {NEG, NEG, base[2], base[3]};
    check_scores(sc, want2, 4, "top_p=.5");
    memcpy(sc, base, sizeof sc);
    ig_sample_top_p(&s, sc, 4, 0.01f); /* the most likely is always kept */
    float want3[4] = {NEG, NEG, NEG, base[3]};
    check_scores(sc, want3, 4, "top_p=.01");
  }
  { /* typical_p on p = 1/2 1/4 1/8 1/8: entropy 1.75 ln2; |-log p - H| = .52 .17 .87 .87 (ln units) */
    float base[4] = {logf(0.5f), logf(0.25f), logf(0.125f), logf(0.125f)};
    float sc[4];
    memcpy(sc, base, sizeof sc);
    ig_sample_typical_p(&s, sc, 4, 0.5f); /* sorted 1,0,2,3; cum .25 .75: one below .5 -> keep 1 and 0 */
    float want[4] = {base[0], base[1], NEG, NEG};
    check_scores(sc, want, 4, "typical=.5");
    memcpy(sc, base, sizeof sc);
    ig_sample_typical_p(&s, sc, 4, 0.2f);
    float want2[4] = {NEG, base[1], NEG, NEG};
    check_scores(sc, want2, 4, "typical=.2");
    memcpy(sc, base, sizeof sc);
    ig_sample_typical_p(&s, sc, 4, 0.8f); /* threshold lands on the tied pair: both kept */
    check_scores(sc, base, 4, "typical=.8");
  }
  { /* log-sum-exp and top-n with ties */
    float sc[6] = {0, logf(3), NEG, logf(3), logf(2), 0};
    double lse = ig_sample_logsumexp(sc, 6);
    CHECK_NEAR(lse, log(1 + 3 + 3 + 2 + 1), 1e-6);
    int32_t ids[IG_MAX_TOP_N];
    float lps[IG_MAX_TOP_N];
    int n = ig_sample_top_n(sc, 6, lse, 1, ids, lps); /* the tie with the first is included */
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_INT(ids[0], 1);
    CHECK_EQ_INT(ids[1], 3);
    CHECK_NEAR(lps[0], log(0.3), 1e-6);
    n = ig_sample_top_n(sc, 6, lse, 3, ids, lps);
    CHECK_EQ_INT(n, 3);
    CHECK_EQ_INT(ids[2], 4);
    n = ig_sample_top_n(sc, 6, lse, 4, ids, lps); /* 0 and 5 tie at the 4th place */
    CHECK_EQ_INT(n, 5);
    CHECK_EQ_INT(ids[3], 0);
    CHECK_EQ_INT(ids[4], 5);
    n = ig_sample_top_n(sc, 6, lse, 10, ids, lps); /* -inf never listed */
    CHECK_EQ_INT(n, 5);
  }
  ig_sampler_free(&s);
}

static void test_rng_and_watermark(void) {
  /* The C++ standard fixes the 10000th output of a default-seeded mt19937. */
  CHECK_EQ_INT(ig_sample_mt19937_nth(5489u, 10000), 4123659995u);
  CHECK_EQ_INT(ig_sample_mt19937_nth(5489u, 1), 3499211612u);
  uint32_t perm[100];
  ig_sample_torch_randperm(15485863ull * 7, perm, 100);
  int seen[100] = {0};
  for (int i = 0; i < 100; i++) seen[perm[i]]++;
  int ok = 1;
  for (int i = 0; i < 100; i++) ok &= seen[i] == 1;
  CHECK(ok);
  /* Watermark: exactly half the vocabulary gets +2, the same half for the same previous token. */
  ig_sampler s;
  ig_sampler_init(&s, 100);
  float a[100] = {0}, b[100] = {0}, c[100] = {0};
  ig_sample_watermark(&s, a, 100, 7, 0.0f, 0.0f); /* unset: TGI's 0.5 and 2.0 */
  ig_sample_watermark(&s, b, 100, 7, 0.5f, 2.0f);
  ig_sample_watermark(&s, c, 100, 8, 0.5f, 2.0f);
  int green = 0, same = 1, diff = 0;
  for (int i = 0; i < 100; i++) {
    green += a[i] == 2.0f;
    CHECK(a[i] == 0.0f || a[i] == 2.0f);
    same &= a[i] == b[i];
    diff += a[i] != c[i];
  }
  /* --watermark-gamma 0.25 --watermark-delta 1.5: the first quarter of the same permutation gets +1.5 */
  float d[100] = {0};
  ig_sample_watermark(&s, d, 100, 7, 0.25f, 1.5f);
  int green_d = 0, inside = 1;
  for (int i = 0; i < 100; i++) {
    green_d += d[i] == 1.5f;
    inside &= d[i] == 0.0f || (d[i] == 1.5f && a[i] == 2.0f); /* a prefix of the same permutation */
  }
  CHECK(green_d == 25);
  CHECK(inside);
  CHECK_EQ_INT(green, 50);
  CHECK(same);
  CHECK(diff > 0);
  for (int i = 0; i < 50; i++) CHECK(a[perm[i]] == 2.0f); /* the first half of randperm is green */
  ig_sampler_free(&s);
  /* Counter RNG: deterministic in (seed, step), spread over [0, 1). */
  CHECK(ig_sample_uniform(42, 3) == ig_sample_uniform(42, 3));
  CHECK(ig_sample_uniform(42, 3) != ig_sample_uniform(42, 4));
  CHECK(ig_sample_uniform(42, 3) != ig_sample_uniform(43, 3));
  double mean = 0;
  for (int i = 0; i < 10000; i++) {
    double u = ig_sample_uniform(7, (uint64_t)i);
    CHECK(u >= 0 && u < 1);
    mean += u;
  }
  CHECK_NEAR(mean / 10000, 0.5, 0.01);
}

static ig_gen_params default_params(void) {
  ig_gen_params p;
  memset(&p, 0, sizeof p);
  p.max_new_tokens = 10;
  p.temperature = 1;
  p.top_p = 1;
  p.typical_p = 1;
  p.repetition_penalty = 1;
  p.want_logprobs = 1;
  return p;
}

/* N draws (steps 0 .. N-1) of the 4-token chain below: how often each id came */
static void draw_counts(ig_sampler *s, const ig_gen_params *p, const float *logits, const int32_t *toks, int N,
                        int counts[4]) {
  ig_sample_result r;
  memset(counts, 0, 4 * sizeof *counts);
  for (int i = 0; i < N; i++) {
    ig_sampler_sample(s, p, logits, toks, 3, 3, (uint64_t)i, &r);
    counts[r.id]++;
  }
}

static void test_chain(void) {
  ig_sampler s;
  ig_sampler_init(&s, 4);
  float logits[4] = {logf(0.1f), logf(0.2f), logf(0.3f), logf(0.4f)};
  int32_t toks[3] = {3, 3, 1};
  ig_sample_result r;
  ig_gen_params p = default_params();
  /* Greedy: argmax; logprob of the processed distribution. */
  ig_sampler_sample(&s, &p, logits, toks, 3, 3, 0, &r);
  CHECK_EQ_INT(r.id, 3);
  CHECK_NEAR(r.logprob, log(0.4), 1e-6);
  CHECK_EQ_INT(r.n_top, 0);
  p.want_logprobs = 0; /* greedy without logprobs skips the normaliser */
  ig_sampler_sample(&s, &p, logits, toks, 3, 3, 0, &r);
  CHECK_EQ_INT(r.id, 3);
  CHECK(isnan(r.logprob));
  p.want_logprobs = 1;
  /* Repetition penalty 2 on seen 3 and 1 (prompt counts): scores log p < 0 are doubled. */
  p.repetition_penalty = 2.0f;
  p.top_n_tokens = 2;
  ig_sampler_sample(&s, &p, logits, toks, 3, 3, 0, &r);
  double sc[4] = {log(0.1), 2 * log(0.2), log(0.3), 2 * log(0.4)};
  double z = exp(sc[0]) + exp(sc[1]) + exp(sc[2]) + exp(sc[3]);
  CHECK_EQ_INT(r.id, 2);
  CHECK_NEAR(r.logprob, sc[2] - log(z), 1e-5);
  CHECK_EQ_INT(r.n_top, 2);
  CHECK_EQ_INT(r.top_ids[0], 2);
  CHECK_EQ_INT(r.top_ids[1], 3);
  CHECK_NEAR(r.top_logprobs[1], sc[3] - log(z), 1e-5);
  /* Frequency penalty only counts generated tokens: toks[2] (id 1) with n_prompt = 2. */
  p = default_params();
  p.frequency_penalty = 10;
  ig_sampler_sample(&s, &p, logits, toks, 3, 2, 0, &r);
  CHECK_EQ_INT(r.id, 3);
  /* Temperature alone implies sampling (TGI); temperature 0 is greedy. */
  p = default_params();
  CHECK(!ig_sampler_is_sampling(&p));
  p.temperature = 0.5f;
  CHECK(ig_sampler_is_sampling(&p));
  p.temperature = 0;
  CHECK(!ig_sampler_is_sampling(&p));
  p = default_params();
  p.top_k = 2;
  CHECK(ig_sampler_is_sampling(&p));
  /* Sampling follows the processed distribution: top_k 2 at temperature 0.5 gives p ~ .3^2 : .4^2. */
  p = default_params();
  p.do_sample = 1;
  p.top_k = 2;
  p.temperature = 0.5f;
  p.seed = 1234;
  int counts[4];
  const int N = 20000;
  draw_counts(&s, &p, logits, toks, N, counts);
  CHECK_EQ_INT(counts[0] + counts[1], 0);
  CHECK_NEAR((double)counts[2] / N, 0.09 / 0.25, 0.015);
  ig_sampler_sample(&s, &p, logits, toks, 3, 3, 5, &r);
  double lp = r.id == 2 ? log(0.36) : log(0.64);
  CHECK_NEAR(r.logprob, lp, 1e-5);
  /* Same (seed, step) -> same token; plain do_sample draws from the softmax. */
  ig_sample_result r2;
  ig_sampler_sample(&s, &p, logits, toks, 3, 3, 5, &r2);
  CHECK_EQ_INT(r.id, r2.id);
  p = default_params();
  p.do_sample = 1;
  p.seed = 99;
  draw_counts(&s, &p, logits, toks, N, counts);
  for (int k = 0; k < 4; k++) CHECK_NEAR((double)counts[k] / N, 0.1 * (k + 1), 0.015);
  /* logit_bias, added before anything else: +ln 5 on id 0 makes it the argmax (0.5 against 0.4), and the logprob is
   * of the biased distribution; -100 on the argmax moves greedy to the next; sampling follows it */
  int32_t bid[2] = {0, 3};
  float bval[2] = {logf(5.0f), 0.0f};
  p = default_params();
  p.n_bias = 1, p.bias_id = bid, p.bias_val = bval;
  ig_sampler_sample(&s, &p, logits, toks, 3, 3, 0, &r);
  CHECK_EQ_INT(r.id, 0);
  CHECK_NEAR(r.logprob, log(0.5 / 1.4), 1e-5);
  bval[0] = 0.0f, bval[1] = -100.0f;
  p.n_bias = 2;
  ig_sampler_sample(&s, &p, logits, toks, 3, 3, 0, &r);
  CHECK_EQ_INT(r.id, 2);
  p.do_sample = 1;
  p.seed = 7;
  draw_counts(&s, &p, logits, toks, N, counts);
  CHECK(counts[3] == 0);
  for (int k = 0; k < 3; k++) CHECK_NEAR((double)counts[k] / N, 0.1 * (k + 1) / 0.6, 0.015);
  /* min_tokens 2 with EOS = 3: masked while fewer than 2 tokens were generated, then allowed */
  int32_t eos[1] = {3};
  p = default_params();
  p.min_tokens = 2, p.eos_ids = eos, p.n_eos = 1;
  ig_sampler_sample(&s, &p, logits, toks, 3, 2, 0, &r); /* one generated so far */
  CHECK_EQ_INT(r.id, 2);
  CHECK_NEAR(r.logprob, log(0.3 / 0.6), 1e-5);
  ig_sampler_sample(&s, &p, logits, toks, 3, 1, 0, &r); /* two */
  CHECK_EQ_INT(r.id, 3);
  int32_t stop2[1] = {2}; /* stop_token_ids are held off the same way: with 3 (EOS) and 2 masked, 1 */
  p.stop_ids = stop2, p.n_stop_ids = 1;
  ig_sampler_sample(&s, &p, logits, toks, 3, 2, 0, &r);
  CHECK_EQ_INT(r.id, 1);
  p.stop_ids = NULL, p.n_stop_ids = 0;
  /* min_p 0.6: p < 0.6 x 0.4 removed, so 0.3 : 0.4 remain; greedy is untouched */
  p = default_params();
  p.min_p = 0.6f;
  ig_sampler_sample(&s, &p, logits, toks, 3, 3, 0, &r);
  CHECK_EQ_INT(r.id, 3);
  p.do_sample = 1;
  p.seed = 11;
  draw_counts(&s, &p, logits, toks, N, counts);
  CHECK(counts[0] == 0 && counts[1] == 0);
  CHECK_NEAR((double)counts[2] / N, 3.0 / 7.0, 0.015);
  ig_sampler_free(&s);
}

/* ---- stop sequences ----------------------------------------------------------------------------------- */
static void test_stopseq(void) {
  char *stops[] = {"</end>", "STOP", "\xc3\xa9t\xc3\xa9"};
  ig_stopseq st;
  ig_str out;
  ig_str_init(&out);
  ig_stopseq_init(&st, stops, 3);
  CHECK_EQ_INT(ig_stopseq_feed(&st, "Hello <", 7, &out), 0);
  CHECK_EQ_STR(out.p, "Hello "); /* "<" could start "</end>" */
  CHECK_EQ_INT(ig_stopseq_feed(&st, "/e", 2, &out), 0);
  CHECK_EQ_STR(out.p, "Hello ");
  CHECK_EQ_INT(ig_stopseq_feed(&st, "x>", 2, &out), 0); /* not a stop after all: released */
  CHECK_EQ_STR(out.p, "Hello </ex>");
  CHECK_EQ_INT(ig_stopseq_feed(&st, " ST", 3, &out), 0);
  CHECK_EQ_STR(out.p, "Hello </ex> ");
  CHECK_EQ_INT(ig_stopseq_feed(&st, "OP and more", 11, &out), 1);
  CHECK_EQ_STR(out.p, "Hello </ex> ");
  ig_stopseq_free(&st);

  /* Multi-byte stop split across pieces; the earliest match wins. */
  ig_str_clear(&out);
  ig_stopseq_init(&st, stops, 3);
  CHECK_EQ_INT(ig_stopseq_feed(&st, "caf\xc3\xa9", 5, &out), 0);
  CHECK_EQ_STR(out.p, "caf");
  CHECK_EQ_INT(ig_stopseq_feed(&st, "t", 1, &out), 0);
  CHECK_EQ_STR(out.p, "caf");
  CHECK_EQ_INT(ig_stopseq_feed(&st, "\xc3\xa9STOP</end>", 12, &out), 1);
  CHECK_EQ_STR(out.p, "caf");
  ig_stopseq_free(&st);

  /* include_stop_str_in_output: the text ends with the matched stop sequence (the longest one where several start) */
  char *stops2[] = {"ab", "abc", "x"};
  ig_str_clear(&out);
  ig_stopseq_init(&st, stops2, 3);
  st.include = 1;
  CHECK_EQ_INT(ig_stopseq_feed(&st, "zza", 3, &out), 0);
  CHECK_EQ_INT(ig_stopseq_feed(&st, "bcd", 3, &out), 1);
  CHECK_EQ_STR(out.p, "zzabc");
  ig_stopseq_free(&st);
  ig_str_clear(&out);
  ig_stopseq_init(&st, stops2, 3);
  CHECK_EQ_INT(ig_stopseq_feed(&st, "zzabcd", 6, &out), 1); /* without include: right before it */
  CHECK_EQ_STR(out.p, "zz");
  ig_stopseq_free(&st);

  /* End of generation without a match releases the held text. */
  ig_str_clear(&out);
  ig_stopseq_init(&st, stops, 3);
  ig_stopseq_feed(&st, "abc</en", 7, &out);
  CHECK_EQ_STR(out.p, "abc");
  ig_stopseq_flush(&st, &out);
  CHECK_EQ_STR(out.p, "abc</en");
  ig_stopseq_free(&st);

  /* No stop sequences: everything passes at once. */
  ig_str_clear(&out);
  ig_stopseq_init(&st, NULL, 0);
  CHECK_EQ_INT(ig_stopseq_feed(&st, "</", 2, &out), 0);
  CHECK_EQ_STR(out.p, "</");
  ig_stopseq_free(&st);

  /* Stop sequence matched inside a single piece and at the very start. */
  ig_str_clear(&out);
  ig_stopseq_init(&st, stops, 3);
  CHECK_EQ_INT(ig_stopseq_feed(&st, "STOP", 4, &out), 1);
  CHECK_EQ_INT((int)out.len, 0);
  ig_stopseq_free(&st);
  ig_str_free(&out);
}

/* Property check on random pieces and stop sequences over a small alphabet (so matches and near-matches are
 * frequent): the released text is always a prefix of the output up to the first stop occurrence, never holds
 * a stop sequence, and at the end equals exactly that prefix (or everything when nothing matched). */
static void test_stopseq_random(void) {
  static const char *alpha[] = {"a", "b", "c", "\xc3\xa9"};
  unsigned x = 2024;
#define RND() (x = x * 1103515245u + 12345u, (x >> 16) & 0x7fff)
  int failures = 0;
  for (int round = 0; round < 3000 && failures < 5; round++) {
    char stopbuf[3][16];
    char *stops[3];
    int n_stop = 1 + (int)(RND() % 3);
    for (int k = 0; k < n_stop; k++) {
      stopbuf[k][0] = 0;
      int len = 1 + (int)(RND() % 4);
      for (int i = 0; i < len; i++) strcat(stopbuf[k], alpha[RND() % 4]);
      stops[k] = stopbuf[k];
    }
    ig_stopseq st;
    ig_stopseq_init(&st, stops, n_stop);
    ig_str out, all;
    ig_str_init(&out);
    ig_str_init(&all);
    int matched = 0;
    size_t want_len = 0;
    int n_pieces = 1 + (int)(RND() % 12);
    for (int p = 0; p < n_pieces && !matched; p++) {
      char piece[32] = "";
      int len = (int)(RND() % 4);
      for (int i = 0; i < len; i++) strcat(piece, alpha[RND() % 4]);
      ig_str_puts(&all, piece);
      int rc = ig_stopseq_feed(&st, piece, strlen(piece), &out);
      /* Where does the first stop occur in everything so far? */
      const char *first = NULL;
      for (int k = 0; k < n_stop; k++) {
        const char *m = all.len ? strstr(all.p, stops[k]) : NULL;
        if (m && (!first || m < first)) first = m;
      }
      if (first) {
        matched = 1;
        want_len = (size_t)(first - all.p);
        if (rc != 1 || out.len != want_len || (want_len && memcmp(out.p, all.p, want_len))) failures++;
      } else {
        if (rc != 0 || out.len > all.len || (out.len && memcmp(out.p, all.p, out.len))) failures++;
      }
    }
    if (!matched) {
      ig_stopseq_flush(&st, &out);
      if (out.len != all.len || (out.len && memcmp(out.p, all.p, out.len))) failures++;
    }
    if (out.len && !ig_utf8_valid(out.p, out.len)) failures++;
    ig_stopseq_free(&st);
    ig_str_free(&out);
    ig_str_free(&all);
  }
#undef RND
  CHECK_EQ_INT(failures, 0);
}

int main(void) {
  test_kvblocks();
  test_prefix_blocks();
  test_stopseq_random();
  test_processors();
  test_rng_and_watermark();
  test_chain();
  test_stopseq();
  TEST_DONE();
}
