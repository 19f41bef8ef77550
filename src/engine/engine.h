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
  int max_new_tokens;
  int do_sample;                  /* 0: greedy (after penalties) */
  float temperature;              /* 1.0 = off */
  int top_k;                      /* 0 = off */
  float top_p;                    /* 1.0 = off */
  float typical_p;                /* 1.0 = off */
  float repetition_penalty;       /* 1.0 = off (TGI/HF multiplicative) */
  float frequency_penalty;        /* 0 = off (OpenAI additive, by count) */
  float presence_penalty;         /* 0 = off */
  uint64_t seed;                  /* always set by the server (random when the client gave none) */
  int watermark;                  /* Kirchenbauer green-list bias, TGI's gamma 0.5 / delta 2.0 */
  int ignore_eos;
  int top_n_tokens;               /* 0..IG_MAX_TOP_N: top alternatives per generated token */
  int want_logprobs;              /* compute logprob of each chosen token (details / OpenAI logprobs) */
  int prefill_logprobs;           /* decoder_input_details: logprobs of prompt tokens */
  int n_stop;
  char **stop;                    /* stop sequences (owned by the request) */
} ig_gen_params;

/* One generated token as the server sees it. */
typedef struct ig_token_event {
  int32_t id;
  float logprob;                  /* NAN when not computed */
  int special;                    /* the token is a special/added token */
  char *text;                     /* its text piece for streaming, valid UTF-8 (may be ""), malloc'd */
  int n_top;
  int32_t top_ids[IG_MAX_TOP_N];
  float top_logprobs[IG_MAX_TOP_N];
  ig_finish_reason finish;        /* != NONE on the last event of the request */
} ig_token_event;

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
  /* timings (CLOCK_MONOTONIC ns), for metrics and logs */
  int64_t t_queued, t_first_scheduled, t_first_token, t_done;
  int n_generated;

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

typedef struct ig_engine_config {
  int max_batch_prefill_tokens;   /* tokens of prompt chunks per step */
  int max_batch_total_tokens;     /* KV capacity in tokens (0: derive from memory) */
  int max_concurrent_requests;    /* submit() beyond it fails with -EAGAIN (HTTP 429) */
  int max_waiting_tokens;         /* TGI: steps a waiting request can be delayed while decoding */
  float waiting_served_ratio;
  int block_size;                 /* KV tokens per block (16) */
  int max_total_tokens;           /* per request: prompt + new tokens */
} ig_engine_config;

typedef struct ig_engine_stats {
  /* gauges */
  atomic_int queue_size;          /* waiting requests */
  atomic_int batch_size;          /* running sequences in the last step */
  atomic_int kv_blocks_used, kv_blocks_total;
  /* counters */
  atomic_llong steps, prefill_tokens, decode_tokens, preemptions, requests_finished;
  /* last step's duration, ns */
  atomic_llong last_step_ns;
} ig_engine_stats;

typedef struct ig_engine ig_engine;

/* Creates the engine and starts its thread. The model must have no KV cache yet; the engine sizes and
 * allocates it. `tok` stays owned by the caller and must outlive the engine. */
int ig_engine_create(ig_model *model, struct ig_tok *tok, const ig_engine_config *cfg, ig_engine **out, char *err,
                     size_t errlen);
/* Stops accepting, cancels or finishes in-flight requests (grace_ms), joins the thread, frees everything. */
void ig_engine_destroy(ig_engine *e, int grace_ms);
/* Hands a request over (the engine takes its own reference). Returns 0, -EAGAIN when at
 * max_concurrent_requests, or -EINVAL when it can never fit (message in err). */
int ig_engine_submit(ig_engine *e, ig_request *r, char *err, size_t errlen);
const ig_engine_stats *ig_engine_get_stats(const ig_engine *e);
const ig_engine_config *ig_engine_get_config(const ig_engine *e);

#endif
