/* engine/sample_pool: samples the next token of many sequences at once over a few worker threads (the engine
 * thread works too). With a large vocabulary the host sampler costs a few hundred microseconds per sequence,
 * which at 64 sequences would outlast a GPU decode step. Each job is computed exactly as it would be alone
 * (its own scratch, its own (seed, step) stream), so results never depend on the thread that ran it. */
#ifndef IG_ENGINE_SAMPLE_POOL_H
#define IG_ENGINE_SAMPLE_POOL_H
#include "engine/sampler.h"

typedef struct ig_sample_job {
  const ig_gen_params *params;
  const float *logits;
  const int32_t *tokens;
  int n_tokens, n_prompt;
  uint64_t step;
  const uint8_t *allowed; /* NULL, or [vocab]: tokens with allowed[v] == 0 get -inf first (a constrained row's mask;
                             the logits are the job's own row, written in place) */
  ig_sample_result res; /* out */
} ig_sample_job;

typedef struct ig_sample_pool ig_sample_pool;

/* Starts n_workers threads with vocab-sized scratch each. 0 or -ENOMEM / -EAGAIN. */
int ig_sample_pool_create(int n_workers, int vocab, ig_sample_pool **out);
void ig_sample_pool_destroy(ig_sample_pool *p);
/* Its worker threads (the caller of a run works too). */
int ig_sample_pool_threads(const ig_sample_pool *p);
/* Runs jobs[0..n): on the calling thread only (with `own`) when p is NULL or n < 2, else spread over the
 * workers and the caller. Returns when every job is done. */
void ig_sample_pool_run(ig_sample_pool *p, ig_sampler *own, ig_sample_job *jobs, int n);
/* Calls fn(ctx, i) for i in [0, n), spread the same way (on the calling thread alone when p is NULL or n < 2).
 * Returns when every call is done. */
void ig_sample_pool_for(ig_sample_pool *p, int n, void (*fn)(void *ctx, int i), void *ctx);

#endif
