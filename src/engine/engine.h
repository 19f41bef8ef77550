/* engine/engine.h: the contract between the server (HTTP) and the engine (scheduler, KV blocks, sampler).
 * The server hands in already-tokenized requests; the engine thread batches them continuously, runs the
 * model, samples, detokenizes incrementally, checks stop conditions and pushes token events into each
 * request's outbox, then calls the request's wake callback (the server turns that into event_active on its
 * libevent loop). A request is reference-counted: the server and the engine each hold one reference. */
#ifndef IG_ENGINE_H
#define IG_ENGINE_H
#include "model/model.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

struct ig_tok; /* src/tok: used read-only for incremental detokenization */
struct ig_jschema; /* engine/jsonschema.h */

typedef enum {
  IG_FINISH_NONE = 0,
  IG_FINISH_LENGTH,       /* max_new_tokens reached (or max_total_tokens) */
  IG_FINISH_EOS,          /* an EOS id was produced */
  IG_FINISH_STOP,         /* a stop sequence matched (its text is not emitted) */
  IG_FINISH_CANCELLED,    /* client went away */
  IG_FINISH_ERROR,        /* generation failed (message in the event) -> HTTP 424 */
} ig_finish_reason;
const char *ig_finish_reason_name(ig_finish_reason r); /* "length", "eos_token", "stop_sequence", ... */

#define IG_MAX_TOP_N 20

typedef struct ig_gen_params {
  int max_new_tokens;             /* 0: the prompt only is computed (its prefill logprobs), nothing is generated */
  int do_sample;                  /* 0: greedy (after penalties) unless a warper is set: as TGI, temperature
                                     != 1, top_k > 0, top_p < 1 or typical_p < 1 imply sampling */
  float temperature;              /* 1.0 = off; <= 0 means greedy (OpenAI's temperature 0) */
  int top_k;                      /* 0 = off */
  float top_p;                    /* 1.0 = off */
  float typical_p;                /* 1.0 = off */
  float repetition_penalty;       /* 1.0 = off (TGI/HF multiplicative) */
  float frequency_penalty;        /* 0 = off (OpenAI additive, by count of each generated token) */
  float presence_penalty;         /* 0 = off (OpenAI additive, once per generated token seen) */
  uint64_t seed;                  /* always set by the server (random when the client gave none) */
  int watermark;                  /* Kirchenbauer green-list bias */
  float watermark_gamma;          /* its green share and bias; 0: the engine's (--watermark-gamma/-delta, TGI's */
  float watermark_delta;          /* defaults 0.5 and 2.0) */
  int ignore_eos;
  int top_n_tokens;               /* 0..IG_MAX_TOP_N: top alternatives per generated token */
  int want_logprobs;              /* compute logprob of each chosen token (details / OpenAI logprobs) */
  int prefill_logprobs;           /* decoder_input_details: logprobs of prompt tokens */
  int prefill_top_n;              /* with prefill_logprobs, 0..IG_MAX_TOP_N: also the most likely tokens at each prompt
                                     position (OpenAI's completions with echo and logprobs) */
  int json_mode;                  /* the output is one JSON document (engine/jsonschema.h): tokens that cannot
                                     continue one are masked out, and once it is complete EOS ends the request
                                     (even with ignore_eos) */
  struct ig_jschema *schema;      /* with json_mode: the schema the document follows, or a regex grammar's
                                     pattern (ig_jschema_compile_regex: then the text is not JSON but what the
                                     pattern matches); a reference the request owns (ig_request_unref drops it);
                                     NULL: any JSON object (JSON mode) */
  int n_stop;
  char **stop;                    /* stop sequences (owned by the request) */
  int include_stop;               /* vLLM's include_stop_str_in_output: a matched stop sequence ends the text */
  float min_p;                    /* vLLM's min_p: while sampling, entries below min_p x the top probability go
                                     (after top_p, as transformers' MinPLogitsWarper) [0: off] */
  int min_tokens;                 /* vLLM's min_tokens: no EOS (masked) and no stop-sequence match before this many
                                     generated tokens [0]; such rows are sampled on the host */
  const int32_t *eos_ids;         /* set by the engine at submission for min_tokens: the model's EOS ids */
  int n_eos;
  int n_stop_ids;                 /* vLLM's stop_token_ids: each ends the reply as EOS does (finish STOP, its text */
  int32_t *stop_ids;              /* not sent; held off by min_tokens too); owned by the request */
  int n_bias;                     /* OpenAI's logit_bias: bias_val[k] added to token bias_id[k]'s logit before */
  int32_t *bias_id;               /* anything else (owned by the request; one allocation, the values after the */
  float *bias_val;                /* ids); such rows are sampled on the host */
} ig_gen_params;

/* One generated token as the server sees it. Every generated token gives exactly one event; the last event
 * has finish != NONE. A cancelled or failed request ends with an extra event of id -1 (no token), and so does a
 * request of max_new_tokens 0 once its prompt is computed (finish LENGTH, its only event).
 * `text` is the text released by this token: the detokenizer's new piece (TGI prefix/read offsets, special
 * tokens skipped), less anything that could still start a stop sequence (held back, released by a later
 * event or at the end), cut right before a matched stop sequence. So the concatenation of all events'
 * text is exactly generated_text, and a stream never leaks a stop sequence. A special token (EOS) adds no
 * text of its own: to show it as TGI's token.text does ("</s>"), decode its id with the tokenizer. But the
 * last event, special or not, may carry text released at the end (e.g. a "\n" held back for the stop
 * sequence "\n\n" when EOS came next): append ev->text to the generated text even when ev->special. */
typedef struct ig_token_event {
  int32_t id;                     /* -1 on the final event of a cancelled / failed request */
  float logprob;                  /* log_softmax of the processed scores at the chosen id; set when
                                     want_logprobs, top_n_tokens or sampling, else NAN */
  int special;                    /* the token is a special/added token */
  char *text;                     /* text released by this token, valid UTF-8 (may be ""), malloc'd */
  int n_top;
  int32_t top_ids[IG_MAX_TOP_N];
  float top_logprobs[IG_MAX_TOP_N]; /* n_top may exceed top_n_tokens: ties with the n-th are included (TGI),
                                       up to IG_MAX_TOP_N; -inf entries are never listed */
  ig_finish_reason finish;        /* != NONE on the last event of the request */
} ig_token_event;

/* One of the most likely tokens at a prompt position (ig_request.prefill_top). */
typedef struct ig_logprob_top {
  int32_t id;                     /* -1: none (fewer tokens than asked had a finite logprob) */
  float logprob;
} ig_logprob_top;

typedef struct ig_request ig_request;
typedef void (*ig_wake_fn)(void *arg);

struct ig_request {
  /* --- set by the server before submit; read-only afterwards ----------------------------------------- */
  uint64_t id;
  int32_t *prompt;                /* prompt token ids (owned by the request) */
  int n_prompt;
  ig_gen_params params;
  ig_wake_fn wake;                /* called by the engine thread after pushing events (may be NULL) */
  void *wake_arg;

  /* --- set by the server at any time --------------------------------------------------------------- */
  atomic_int cancelled;           /* the engine finishes it with IG_FINISH_CANCELLED at its next step */

  /* --- outbox: written by the engine, read by the server, under `mu` --------------------------------- */
  pthread_mutex_t mu;
  ig_token_event *events;         /* FIFO [ev_head, ev_tail) */
  int ev_head, ev_tail, ev_cap;
  int finished;                   /* the last event has been pushed */
  ig_finish_reason finish;
  char error[256];                /* for IG_FINISH_ERROR */
  /* prefill details (when params.prefill_logprobs): logprob of prompt[i] given prompt[<i]; [0] is NAN */
  float *prefill_logprobs;
  /* with params.prefill_top_n: [n_prompt][prefill_top_n], row i the most likely tokens at position i (given
   * prompt[<i]), best first, as top_n_tokens ranks them (ties past the n-th left out); row 0 all -1. Published with
   * prefill_logprobs. */
  ig_logprob_top *prefill_top;
  /* timings (CLOCK_MONOTONIC ns), for metrics and logs */
  int64_t t_queued, t_first_scheduled, t_first_token, t_done;
  int n_generated;
  int n_cached;                   /* prompt tokens taken from the prefix cache (set before the first event) */

  atomic_int refs;
  void *engine_state;             /* private to the engine */
};

/* Allocation and reference counting (the request starts with refs = 1: the server's). */
ig_request *ig_request_new(void);
void ig_request_ref(ig_request *r);
void ig_request_unref(ig_request *r); /* frees prompt, stop strings, events, everything at 0 */
/* Pops up to `max` events into `out` (ownership of each event's text moves to the caller). Returns count. */
int ig_request_take_events(ig_request *r, ig_token_event *out, int max);
void ig_token_event_clear(ig_token_event *ev);

/* Defaults apply to fields <= 0 (max_waiting_tokens, waiting_served_ratio: < 0), shown in brackets.
 * Prompts are computed in chunks [k*C, (k+1)*C) with C = max_batch_prefill_tokens, whatever else runs.
 * Admission (TGI's rules, approximated for chunked prefill): FIFO; a request joins when the free KV blocks,
 * less what running prefills still need, hold its prompt + 1 token; while others run, new requests join
 * only when at least floor(running * waiting_served_ratio) of them can, or when max_waiting_tokens steps
 * have passed since the last admission. Out of blocks mid-generation: the newest sequence is preempted. */
typedef struct ig_engine_config {
  int max_batch_prefill_tokens;   /* prompt tokens (whole chunks) per step [4096] */
  int max_batch_total_tokens;     /* KV capacity in tokens (0: on the CPU 16k tokens bounded by half the free
                                     memory; on a GPU what memory_fraction of its memory leaves free);
                                     ig_engine_get_config() reports the capacity actually allocated */
  int max_concurrent_requests;    /* submit() beyond it fails with -EAGAIN (HTTP 429) [128] */
  int max_waiting_tokens;         /* TGI: steps a waiting request can be delayed while decoding [20] */
  float waiting_served_ratio;     /* [0.3] */
  int block_size;                 /* KV tokens per block [16] */
  int max_total_tokens;           /* per request: prompt + new tokens [min(2048, max_position_embeddings)] */
  float memory_fraction;          /* device backends (mem_info): share of device memory the process may use;
                                     the KV cache fills what the weights and activations leave [1.0] */
  int prefix_caching;             /* keep the KV blocks of computed prompts and share them with later requests
                                     whose tokens start the same way (kvblocks.h); a request's output is the
                                     same with or without [0] */
  int max_batch_size;             /* TGI's max_batch_size: sequences that run at once (more wait) [0: no limit
                                     but max_concurrent_requests] */
  float watermark_gamma, watermark_delta; /* for requests with watermark: green share (0, 1] and bias > 0 [0 or
                                             out of range: TGI's 0.5, 2.0] */
  int prompt_logprob_rows;        /* prompt rows with logprobs (each a logits row) per step, and the prompt chunk
                                     of a sequence that asks for them [0: ~256 MiB of f32 logits, at least 64] */
  int speculate;                  /* TGI's --speculate N: n-gram (prompt lookup) speculative decoding. A greedy
                                     or sampling request (no penalties, watermark, logit_bias, min_tokens or grammar)
                                     past its prompt drafts up to N tokens per step from what followed the last
                                     earlier occurrence of its last 1-3 tokens, and the step checks them all; its
                                     output is the same token for token, in fewer steps. At most IG_MAX_SPECULATE; 0
                                     for a model whose rotary frequencies follow the length (ig_engine_get_config()
                                     reports what runs) [0: off] */
} ig_engine_config;

#define IG_MAX_SPECULATE 15

/* Prompt rows with logprobs per step (each a logits row) for cfg and a vocabulary: cfg->prompt_logprob_rows, else
 * ~256 MiB of f32 logits and at least 64; at least canon_rows; at most cfg->max_batch_prefill_tokens (when set). The
 * device backend's reserve counts them at startup. */
int ig_engine_prompt_logprob_rows(const ig_engine_config *cfg, int vocab, int canon_rows);

#define IG_STEP_HIST 36 /* TGI's 35 duration buckets and the overflow */
#define IG_SIZE_HIST 12 /* 1, 2, 4, ... 1024 sequences and the overflow */

typedef struct ig_engine_stats {
  /* gauges */
  atomic_int queue_size;          /* waiting requests */
  atomic_int batch_size;          /* running sequences in the last step */
  atomic_int kv_blocks_used, kv_blocks_total;
  atomic_int kv_blocks_cached;    /* prefix cache: free blocks that keep a computed prefix */
  /* counters */
  atomic_llong steps, prefill_tokens, decode_tokens, preemptions, requests_finished;
  atomic_llong prefix_query_tokens, prefix_hit_tokens; /* tokens of admitted sequences; of those found cached */
  atomic_llong grammar_masks, grammar_walks; /* constrained rows' token masks; of those, walked (not cached) */
  atomic_int grammar_cache_entries;          /* masks kept in the cache */
  atomic_llong spec_draft_tokens, spec_accepted_tokens; /* --speculate: tokens drafted; of those, accepted (each an
                                                         extra token of its step) */
  /* last step's duration, ns */
  atomic_llong last_step_ns;
  /* per step, [0] steps with prompt rows ("prefill"), [1] the others ("decode"), as TGI's batch metrics: counts,
   * failures, the whole step's and the forward's time (sums in ns, and counts per TGI duration bucket: bucket i
   * holds up to 0.1 ms x 1.5^(i+1), the last one beyond), and sequences per step (bucket i: up to 2^i) */
  atomic_llong step_count[2], step_failed[2], step_ns[2], forward_ns[2];
  atomic_llong step_hist[2][IG_STEP_HIST], forward_hist[2][IG_STEP_HIST];
  atomic_llong size_hist[IG_SIZE_HIST], size_sum;
} ig_engine_stats;

typedef struct ig_engine ig_engine;

/* Creates the engine and starts its thread. The model must have no KV cache yet; the engine sizes and
 * allocates it. `tok` stays owned by the caller and must outlive the engine. */
int ig_engine_create(ig_model *model, struct ig_tok *tok, const ig_engine_config *cfg, ig_engine **out, char *err,
                     size_t errlen);
/* Stops accepting, cancels or finishes in-flight requests (grace_ms), joins the thread, frees everything. */
void ig_engine_destroy(ig_engine *e, int grace_ms);
/* Hands a request over (the engine takes its own reference). Returns 0, -EAGAIN when at
 * max_concurrent_requests ("Model is overloaded"), -EINVAL when it can never fit or is malformed (empty
 * prompt, max_new_tokens < 0, prompt + max_new_tokens > max_total_tokens or > the model's
 * max_position_embeddings, ids outside the vocabulary,
 * top_n_tokens or prefill_top_n > IG_MAX_TOP_N), -ESHUTDOWN after destroy began (message in err). When
 * params.prefill_logprobs is set, r->prefill_logprobs (and prefill_top) are filled before the first event. */
int ig_engine_submit(ig_engine *e, ig_request *r, char *err, size_t errlen);
const ig_engine_stats *ig_engine_get_stats(const ig_engine *e);
const ig_engine_config *ig_engine_get_config(const ig_engine *e);

#endif
