/* engine/engine_int: what the engine core needs from below, as two small tables, so the scheduler can run
 * on the real model (engine_model.c wires ig_model + ig_tok) or on a fake one in tests/engine. */
#ifndef IG_ENGINE_INT_H
#define IG_ENGINE_INT_H
#include "engine/engine.h"
#include "util/str.h"
#include <stddef.h>
#include <stdint.h>

/* The model side: vocabulary, EOS ids, KV cache sizing and one forward step. */
typedef struct ig_engine_runner {
  void *ctx;
  int vocab_size;
  int n_eos;
  int32_t eos_ids[IG_MAX_EOS];
  int max_position;        /* max_position_embeddings, 0 when unknown */
  size_t kv_mem_limit;     /* bytes the KV cache may take when its size is derived (0: no bound) */
  int kv_fill;             /* derived size: fill kv_mem_limit (device memory) instead of the 16k-token default */
  int sampler_threads;     /* host sampling workers: 0 auto (large vocabularies only), < 0 none, > 0 that many */
  /* rows a sequence must have in one step for the backend to compute their K/V bitwise as any other chunking of
   * its prompt would (the prefix cache shares only such blocks); 0 or 1: every row */
  int kv_canon_rows;
  /* > 0: keys computed while a sequence held at most this many tokens do not fit it once it holds more, so it
   * recomputes all of them then (longrope: transformers' Phi3 drops its cache at that length and recomputes with
   * the long factors) */
  int rope_recompute_len;
  /* the rotary frequencies depend on the sequence's length (dynamic scaling, longrope): a step's rows of one sequence
   * share one length, so such a model drafts nothing (--speculate) */
  int rope_by_len;
  size_t (*kv_bytes_per_block)(void *ctx, int block_size);
  int (*kv_init)(void *ctx, int n_blocks, int block_size, char *err, size_t errlen);
  /* optional, after kv_init: run the steps whose first occurrence is slow (ig_model_warmup) before serving; returns
   * the steps run or < 0 with err set */
  int (*warmup)(void *ctx, int max_rows, int max_total_tokens, int prefill_chunk, char *err, size_t errlen);
  /* logits[j * vocab_size + v] for the batch's out_rows */
  int (*forward)(void *ctx, const ig_batch *b, float *logits, char *err, size_t errlen);
  /* Optional (a backend that samples on the device): the step with rows[i] sampled there into out[i] and only
   * host_rows[0..n_host) downloaded, as host_logits[k * vocab_size + v]; rows[i].row and host_rows[k] index the
   * batch's out_rows. Used for every step when set. */
  int (*forward_sample)(void *ctx, const ig_batch *b, const ig_sample_row *rows, int n_rows, ig_sample_out *out,
                        const int32_t *host_rows, int n_host, float *host_logits, char *err, size_t errlen);
  /* Optional, beside forward_sample (a device that can keep a step in flight): the same step in two halves, and
   * the engine pipelines its steps (the previous step's text and events while the device runs this one).
   * forward_sample_begin takes forward_sample's arguments and may return before out[] is filled (it has read b,
   * rows and their tokens; host_logits is complete); forward_sample_end waits until out[] is. The engine calls end
   * after every begin that returned 0, before the next begin. */
  int (*forward_sample_begin)(void *ctx, const ig_batch *b, const ig_sample_row *rows, int n_rows, ig_sample_out *out,
                              const int32_t *host_rows, int n_host, float *host_logits, char *err, size_t errlen);
  int (*forward_sample_end)(void *ctx, char *err, size_t errlen);
} ig_engine_runner;

/* The text side (NULL table: no text, no stop sequences): one streaming detokenizer per request. */
typedef struct ig_engine_text {
  void *ctx;
  void *(*detok_new)(void *ctx, const int32_t *prompt, int n_prompt); /* NULL when out of memory */
  int (*detok_push)(void *ctx, void *d, int32_t id, ig_str *out);    /* appends the new valid-UTF-8 piece */
  int (*detok_flush)(void *ctx, void *d, ig_str *out);
  void (*detok_free)(void *ctx, void *d);
  int (*is_special)(void *ctx, int32_t id);
  /* optional: the bytes token id adds to a text, as they are (ig_tok_raw_piece): 0, or < 0 when it adds none; JSON
   * mode needs it */
  int (*raw_piece)(void *ctx, int32_t id, ig_str *out);
} ig_engine_text;

/* The runner ig_engine_create starts from over a model (engine_model.c): vocabulary, EOS ids, positions, rotary and
 * row facts, KV sizing and init, warm-up, forward; it adds the KV memory bound and the device sampling hooks. */
ig_engine_runner ig_engine_model_runner(ig_model *model);

/* The text table ig_engine_create uses over a tokenizer (engine_model.c: TGI's streaming detokenizer primed with the
 * last 5 prompt ids, special tokens skipped). */
ig_engine_text ig_engine_tok_text(struct ig_tok *tok);

/* Same as ig_engine_create, over explicit tables (copied; their ctx must outlive the engine). */
int ig_engine_create_custom(const ig_engine_runner *run, const ig_engine_text *text, const ig_engine_config *cfg,
                            ig_engine **out, char *err, size_t errlen);

/* Request outbox, engine side: appends one event (takes ownership of ev->text) and, when ev->finish is set,
 * marks the request finished. Returns 0 or -ENOMEM. */
int ig_request_push_event(ig_request *r, ig_token_event *ev);
int64_t ig_engine_now_ns(void);

#endif
