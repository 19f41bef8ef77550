/* engine/sampler: next-token choice on host f32 logits. Logits processors run in TGI's order
 * (watermark, repetition penalty, frequency/presence penalties, then the warpers temperature, top_k, top_p,
 * typical_p), then greedy argmax or a draw from a counter-based RNG keyed by (seed, step), so a seeded
 * request samples the same tokens whatever else is in the batch. Logprobs are log_softmax of the processed
 * scores (what TGI reports); top-n alternatives come from the same distribution. */
#ifndef IG_ENGINE_SAMPLER_H
#define IG_ENGINE_SAMPLER_H
#include "engine/engine.h"
#include <stdint.h>

/* Scratch for one engine thread (vocab-sized buffers, reused every call). */
typedef struct ig_sampler {
  int vocab;
  float *scores;   /* processed scores */
  int32_t *idx;    /* sort/index scratch */
  float *key;      /* sort key scratch */
  int32_t *cnt;    /* per-token counts, kept all-zero between calls */
  uint32_t *perm;  /* watermark permutation */
} ig_sampler;

typedef struct ig_sample_result {
  int32_t id;
  float logprob;
  int n_top;
  int32_t top_ids[IG_MAX_TOP_N];
  float top_logprobs[IG_MAX_TOP_N];
} ig_sample_result;

int ig_sampler_init(ig_sampler *s, int vocab); /* 0 or -ENOMEM */
void ig_sampler_free(ig_sampler *s);

/* Whether the request samples (TGI: do_sample, or any warper set) rather than taking the argmax. */
int ig_sampler_is_sampling(const ig_gen_params *p);

/* Chooses the token that follows tokens[0..n_tokens) (the prompt is tokens[0..n_prompt)); `step` is the
 * index of the token being generated (0 for the first). */
void ig_sampler_sample(ig_sampler *s, const ig_gen_params *p, const float *logits, const int32_t *tokens,
                       int n_tokens, int n_prompt, uint64_t step, ig_sample_result *out);

/* The same with the draw given (uniform in [0, 1), used when sampling): what the device sampler is handed. */
void ig_sampler_sample_u(ig_sampler *s, const ig_gen_params *p, const float *logits, const int32_t *tokens,
                         int n_tokens, int n_prompt, double uniform, ig_sample_result *out);

/* ---- the pieces, exposed for tests ---------------------------------------------------------------- */
/* HF RepetitionPenaltyLogitsProcessor: every token seen in tokens[0..n): s < 0 ? s * p : s / p. */
void ig_sample_repetition(ig_sampler *s, float *scores, const int32_t *tokens, int n, float penalty);
/* OpenAI: s -= count * frequency + (count > 0) * presence, counts over tokens[0..n) (generated tokens). */
void ig_sample_freq_presence(ig_sampler *s, float *scores, const int32_t *tokens, int n, float freq, float pres);
/* TGI WatermarkLogitsProcessor (CPU generator): green list = first vocab*gamma ids of torch.randperm(vocab)
 * from an mt19937 seeded with 15485863 * prev_token; green scores += delta. */
/* Kirchenbauer et al.'s green list as TGI draws it (torch's randperm seeded by 15485863 x the previous token): the
 * first gamma x vocab of the permutation get +delta. gamma outside (0, 1] or delta <= 0: TGI's 0.5 and 2.0. */
void ig_sample_min_p(float *scores, int vocab, float min_p); /* min_p in (0, 1]; otherwise nothing */
void ig_sample_watermark(ig_sampler *s, float *scores, int vocab, int32_t prev_token, float gamma, float delta);
void ig_sample_temperature(float *scores, int vocab, float t);
void ig_sample_top_k(ig_sampler *s, float *scores, int vocab, int k);
void ig_sample_top_p(ig_sampler *s, float *scores, int vocab, float top_p);
void ig_sample_typical_p(ig_sampler *s, float *scores, int vocab, float mass);
/* log(sum(exp(scores))) over finite entries (-INFINITY when none). */
double ig_sample_logsumexp(const float *scores, int vocab);
/* Top n of log_softmax(scores) by value (ties with the n-th included, up to IG_MAX_TOP_N; -inf excluded). */
int ig_sample_top_n(const float *scores, int vocab, double lse, int n, int32_t *ids, float *logprobs);
/* Uniform double in [0, 1) for (seed, step): SplitMix64-style mixing, no state. */
double ig_sample_uniform(uint64_t seed, uint64_t step);
/* torch.randperm(n) with a CPU generator after manual_seed(seed) (mt19937, seed truncated to 32 bits). */
void ig_sample_torch_randperm(uint64_t seed, uint32_t *perm, int n);
/* The n-th (1-based) output of mt19937 seeded with `seed` (a test hook for the generator). */
uint32_t ig_sample_mt19937_nth(uint32_t seed, int n);

#endif
