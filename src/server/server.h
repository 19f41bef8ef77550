/* server/server: the HTTP front of ignis (libevent evhttp, one loop thread, a pool of validation workers).
 * It speaks TGI's API (/generate, /generate_stream, /, /info, /health, /metrics, /tokenize, /chat_tokenize,
 * /invocations, /ping) and OpenAI's (/v1/chat/completions, /v1/completions, /v1/models). It never touches a tokenizer,
 * template or engine directly: the caller (app/cmd_serve.c) plugs them in through ig_server_hooks, so tests
 * can drive the server with a fake engine. */
#ifndef IG_SERVER_H
#define IG_SERVER_H
#include "engine/engine.h"
#include <stddef.h>
#include <stdint.h>

typedef struct ig_server ig_server;

/* Engine-side numbers for /metrics (filled by hooks.stats; zero when absent). */
typedef struct ig_server_stats {
  int queue_size, batch_size, batch_max_tokens;
  int kv_blocks_used, kv_blocks_total;
  long long preemptions, steps, prefill_tokens, decode_tokens;
  int kv_blocks_cached;
  long long prefix_query_tokens, prefix_hit_tokens;
  long long grammar_masks, grammar_walks;
  int grammar_cache_entries;
  long long spec_draft_tokens, spec_accepted_tokens; /* --speculate: tokens drafted; of those, accepted */
  /* TGI's batch metrics, [0] prefill steps, [1] decode steps: counts, failures, time sums (s), counts per duration
   * bucket (TGI's: bucket i up to 0.1 ms x 1.5^(i+1), then the overflow), sequences per step (bucket i: up to 2^i) */
  long long step_count[2], step_failed[2];
  double step_s[2], forward_s[2];
  long long step_hist[2][36], forward_hist[2][36];
  long long size_hist[12], size_sum;
} ig_server_stats;

/* A chat request's messages and what it asks of the chat template (vLLM's fields besides OpenAI's). The JSON values
 * are jansson ones (void * keeps jansson out of this header). */
typedef struct ig_chat_input {
  const void *messages;      /* an array, contents flattened to strings */
  const void *tools;         /* an array, or NULL */
  const char *tool_prompt;   /* for templates that do not read `tools` */
  const void *documents;     /* an array of objects (RAG templates' `documents`), or NULL */
  const void *kwargs;        /* chat_template_kwargs: an object of extra template variables, or NULL */
  const char *chat_template; /* the request's own template (or the name of one of the model's), or NULL */
  size_t chat_template_len;
  int add_generation_prompt;
  int continue_final_message; /* leave the last message open; never with add_generation_prompt */
} ig_chat_input;

/* What the server needs from the rest of ignis. Called from validation workers (tokenize, decode, token_text,
 * is_special, chat_render: must be thread-safe) and from the loop thread (submit, stats). */
typedef struct ig_server_hooks {
  void *ctx;
  /* Tokenizes text[0..len); add_special applies BOS/EOS as HF's add_special_tokens. *ids (and *offsets, 2 per
   * token, when offsets != NULL) are malloc'd for the caller. Returns the count or negative with err. */
  int (*tokenize)(void *ctx, const char *text, size_t len, int add_special, int32_t **ids, uint32_t **offsets,
                  char *err, size_t errlen);
  /* decode(ids) as HF's tokenizer.decode; malloc'd (caller frees), NULL on failure. */
  char *(*decode)(void *ctx, const int32_t *ids, int n, int skip_special);
  int (*is_special)(void *ctx, int32_t id);
  /* Renders the chat template (the model's, or in->chat_template) for in->messages; in->tools go to the template
   * as its `tools`, and when the template does not read them, tool_prompt and the tools are added to the last
   * message instead. *prompt malloc'd. Returns 0, -ENOENT when there is no template to render, or another
   * negative with err (the template's raise_exception message verbatim, or why in->chat_template does not
   * compile). */
  int (*chat_render)(void *ctx, const ig_chat_input *in, char **prompt, char *err, size_t errlen);
  /* ig_engine_submit: 0, -EAGAIN (overloaded), -EINVAL (never fits, message in err). */
  int (*submit)(void *ctx, ig_request *r, char *err, size_t errlen);
  void (*stats)(void *ctx, ig_server_stats *out);
  /* The key of a tool call's arguments in the model's own format: "arguments" (NULL: the default) or "parameters"
   * (Llama 3.1's templates ask for {"name": ..., "parameters": ...}); a required call is constrained to it. */
  const char *tool_args_key;
} ig_server_hooks;

typedef struct ig_server_config {
  const char *hostname;          /* "0.0.0.0" */
  int port;                      /* 3000; 0 = any free port (see ig_server_port) */
  const char *model_id;          /* shown in /info, /v1/models, responses' "model" */
  const char *model_dtype;       /* "float32", ... */
  const char *device;            /* "cpu" | "cuda" */
  const char *version;           /* ignis version */
  int max_concurrent_requests;   /* 128 */
  int max_best_of;               /* 2 */
  int max_stop_sequences;        /* 4 */
  int max_top_n_tokens;          /* 5 */
  int max_input_tokens;
  int max_total_tokens;
  int max_client_batch_size;     /* 4 */
  int validation_workers;        /* 2 */
  int render_worker_entries;     /* a final JSON body listing this many token entries or more (tokens, each with its
                                    alternatives) is written by a validation worker, off the loop (256); 0: never */
  const char *api_key;           /* NULL or "": no auth */
  const char *cors_allow_origin; /* NULL: no CORS headers; comma-separated list or "*" */
  size_t payload_limit;          /* request body bytes (2,000,000) -> 413 beyond */
  int read_timeout_s;            /* headers/body must arrive within (slow clients), and keep-alive idle (60) */
  int grace_ms;                  /* on SIGTERM/SIGINT: in-flight requests get this long before cancellation */
  int handle_signals;            /* install SIGINT/SIGTERM handlers on the loop */
  int log_requests;              /* one line per request */
  int disable_grammar;           /* TGI's --disable-grammar-support: constrained output -> 422 */
  int prometheus_port;           /* > 0: /metrics also served alone on this port (TGI's --prometheus-port); 0: off */
  int trust_request_chat_template; /* vLLM's --trust-request-chat-template: chat requests may bring a template */
} ig_server_config;

/* Fills TGI's defaults (limits derived later by the caller). */
void ig_server_config_defaults(ig_server_config *c);

/* Binds the listening socket (not yet ready: generation routes and /health answer 503). */
int ig_server_create(const ig_server_config *cfg, const ig_server_hooks *hooks, ig_server **out, char *err,
                     size_t errlen);
int ig_server_port(const ig_server *s);
/* Marks the model loaded (thread-safe): /health answers 200 from now on. hooks may be replaced (NULL keeps). */
void ig_server_set_ready(ig_server *s, const ig_server_hooks *hooks);
/* Runs the loop until ig_server_stop or a signal, then drains in-flight requests (grace_ms, then cancels).
 * Returns 0. */
int ig_server_run(ig_server *s);
void ig_server_stop(ig_server *s); /* thread-safe */
void ig_server_destroy(ig_server *s);

#endif
