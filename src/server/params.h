/* server/params: request bodies (JSON) of every generation route -> one ig_server_req (prompts + generation
 * parameters), with TGI's validation rules and messages (router/src/validation.rs) and serde-style type
 * errors. Pure functions, no I/O: the loop thread parses, a validation worker compiles grammars and tokenizes
 * later (lengths). */
#ifndef IG_SERVER_PARAMS_H
#define IG_SERVER_PARAMS_H
#include "engine/engine.h"
#include <jansson.h>

typedef enum {
  IG_API_GENERATE = 0, /* POST /generate (and / with stream false) */
  IG_API_GENERATE_STREAM,
  IG_API_CHAT,         /* POST /v1/chat/completions */
  IG_API_COMPLETIONS,  /* POST /v1/completions */
} ig_api;

#define IG_MAX_CHOICES 64 /* OpenAI's n, times the prompts of a completions request */

typedef struct ig_server_limits {
  int max_best_of, max_stop_sequences, max_top_n_tokens, max_input_tokens, max_total_tokens;
  int max_client_batch_size;
  const char *tool_args_key;  /* a required tool call's arguments key: "arguments" (NULL) or "parameters" */
  int trust_request_chat_template; /* vLLM's --trust-request-chat-template: else a request's chat_template is a 422 */
} ig_server_limits;

/* What a chat request with tools asks of the output (OpenAI's tool_choice). */
enum {
  IG_TOOLS_NONE = 0, /* no tools, or "none": plain text */
  IG_TOOLS_AUTO,     /* the model may answer in text or call tools; a reply that is a tool call becomes tool_calls */
  IG_TOOLS_REQUIRED, /* "required" or one named function: the output is constrained to a call (gp.schema) */
};

/* A validated generation request, before tokenization. */
typedef struct ig_server_req {
  ig_api api;
  int stream;
  int n_prompts;               /* TGI: 1; completions: the list's length */
  char **prompts;              /* malloc'd strings (chat: NULL until the template is rendered; completions' token
                                  prompts: NULL until a validation worker decodes them) */
  size_t *prompt_lens;         /* their lengths in bytes (JSON strings may hold \u0000) */
  int32_t **prompt_ids;        /* completions: prompts given as token ids (malloc'd; prompt_ids[i] NULL: a string),
                                  NULL when none is; taken as they are (no special tokens added) */
  int *n_prompt_ids;
  json_t *messages;            /* chat: normalized messages (owned reference) */
  json_t *tools;               /* chat: the tool definitions as given, checked (owned), NULL: none */
  int tool_choice;             /* chat with tools: IG_TOOLS_* */
  int no_parallel_calls;       /* OpenAI's parallel_tool_calls: false: a reply's first call only */
  int legacy_functions;        /* OpenAI's legacy functions / function_call: taken as tools / tool_choice, the reply's
                                  first call answered as message.function_call, finish_reason "function_call" */
  char *tool_prompt;           /* TGI's tool_prompt (malloc'd), for templates that do not read `tools` */
  /* chat: vLLM's fields for the template */
  json_t *chat_kwargs;         /* chat_template_kwargs (owned), less the names the request's own fields set; NULL: none */
  json_t *documents;           /* documents: an array of objects (owned), NULL: none */
  char *chat_template;         /* the request's own template (malloc'd; compiled by the chat_render hook), NULL: none */
  size_t chat_template_len;
  int add_generation_prompt;   /* default 1 */
  int continue_final_message;  /* the last message is left open for the model to continue */
  char *model;                 /* "model" of OpenAI requests (malloc'd, may be NULL) */
  ig_gen_params gp;            /* stop strings owned here (copied into each engine request) */
  int max_new_tokens_set;      /* else max_total_tokens - input length */
  int seed_set;
  int best_of;                 /* >= 1 */
  int n_choices;               /* OpenAI's n: choices (sequences) per prompt, 1..IG_MAX_CHOICES (TGI routes: 1) */
  int details, decoder_input_details, return_full_text, truncate; /* truncate 0: none */
  int return_full_text_set;    /* the client said; "/" defaults it to true, as TGI's compat route does */
  int logprobs, top_logprobs;  /* OpenAI */
  int include_usage;           /* stream_options.include_usage */
  int echo;                    /* OpenAI completions: the prompt comes back before the completion (with logprobs:
                                  its tokens' logprobs first, the first one null) */
  int add_special;             /* tokenize with special tokens (not for rendered chat prompts) */
  /* the grammar to compile (gp.json_mode is already set): a schema (owned) or a regex (malloc'd), named in
   * refusals by the field it came from; ig_server_req_compile_grammar turns it into gp.schema */
  json_t *grammar_schema;
  char *grammar_regex;
  size_t grammar_regex_len;
  char grammar_what[24];
} ig_server_req;

/* Parses and validates `body` for `api`. Returns 0, or the HTTP status (400, 422) with the message in err and
 * the TGI error_type in *etype ("validation"). `out` must be freed with ig_server_req_free in both cases. */
int ig_server_req_parse(ig_api api, const json_t *body, const ig_server_limits *lim, ig_server_req *out,
                        const char **etype, char *err, size_t errlen);
void ig_server_req_free(ig_server_req *r);

/* Compiles the request's grammar (a JSON schema or a regex, if any) into gp.schema: up to ~0.3 s for the largest
 * accepted or refused ones, so a validation worker does it, not the loop thread. Returns 0 or 422 with the reason
 * ("grammar: regex: ..."). */
int ig_server_req_compile_grammar(ig_server_req *r, char *err, size_t errlen);

/* Checks the token counts once the prompt is tokenized (TGI's validate_input). n_input is after truncation.
 * Sets gp.max_new_tokens when not given. Returns 0 or 422 with the message. */
int ig_server_req_check_lengths(ig_server_req *r, int n_input, const ig_server_limits *lim, char *err,
                                size_t errlen);

#endif
