/* server/render: response bodies and SSE events of every route, written by hand into an ig_str (one shared
 * JSON string escaper), exactly in the shapes of spec/tgi-openapi.json and OpenAI's API. No I/O and no state of its
 * own: the loop thread fills ig_seq_out (and a streamed reply's ig_tool_stream) as engine events arrive and calls
 * these to write. */
#ifndef IG_SERVER_RENDER_H
#define IG_SERVER_RENDER_H
#include "engine/engine.h"
#include "server/params.h"
#include "util/str.h"
#include <stdint.h>

typedef struct ig_out_top {
  int32_t id;
  float logprob;
  int special;
  char *text; /* malloc'd: its decoding alone; on /v1/completions with logprobs, its string after the tokens
                 before it (as the chosen token's piece) */
} ig_out_top;

typedef struct ig_out_token {
  int32_t id;
  float logprob;
  int special;
  char *text; /* malloc'd piece */
  char *piece; /* /v1/completions with logprobs: its string after the tokens before it (malloc'd), else NULL */
  int n_top;
  ig_out_top *top; /* malloc'd array of n_top */
} ig_out_token;

/* What one engine request produced (one per best_of candidate / completions prompt). */
typedef struct ig_seq_out {
  ig_str text;              /* generated text (pieces of non-special tokens) */
  ig_out_token *tokens;     /* every generated token (kept for details / logprobs) */
  int n_tokens, cap;
  ig_finish_reason finish;
  int n_prompt;
  int n_cached;             /* prompt tokens the engine found in its prefix cache (OpenAI usage) */
  int32_t *prompt_ids;      /* not owned */
  float *prefill_lp;        /* not owned (the engine request's), may be NULL */
  char **prefill_text;      /* malloc'd when decoder_input_details */
  uint64_t seed;
  int sampled;              /* details.seed is null for greedy requests, as in TGI */
  double logprob_sum;
  char *input_text;         /* not owned: the prompt text (return_full_text, echo) */
  size_t input_len;
  /* /v1/completions with echo and logprobs: the prompt's tokens in the logprobs object */
  const ig_logprob_top *prefill_top; /* not owned (the engine request's): [n_prompt][prefill_top_n], may be NULL */
  int prefill_top_n;
  char **prompt_piece;      /* [n_prompt] each prompt token's string after the tokens before it (malloc'd) */
  char **prefill_top_piece; /* [n_prompt][prefill_top_n] the same of prefill_top's tokens (malloc'd; NULL: none) */
  const uint32_t *prompt_offsets; /* not owned: [n_prompt][2] byte offsets of a text prompt's tokens in input_text
                                     (the tokenizer's), NULL: none (a prompt of token ids: input_text decodes them) */
  int lp_offset;            /* streamed: text_offset of the next token (the strings' code points so far) */
} ig_seq_out;

void ig_seq_out_free(ig_seq_out *s);
/* Appends a copy of the token (moves ev->text) to s->tokens and its text to s->text. 0 or -1 (no memory). */
int ig_seq_out_push(ig_seq_out *s, ig_out_token *tok);

/* Identity of an OpenAI response. */
typedef struct ig_oai_meta {
  const char *id;           /* "chatcmpl-..." / "cmpl-..." */
  long long created;
  const char *model;
  const char *fingerprint;
  int choice;               /* the choice a chat chunk is of (OpenAI's n): its "index" */
} ig_oai_meta;

const char *ig_finish_tgi(ig_finish_reason r);    /* "length" | "eos_token" | "stop_sequence" */
const char *ig_finish_openai(ig_finish_reason r); /* "length" | "stop" */

/* {"error": msg, "error_type": etype} */
void ig_render_error(ig_str *o, const char *msg, const char *etype);
/* {"error": {"message": msg, "type": ..., "param": null, "code": etype}} plus TGI's "error_type" */
void ig_render_error_openai(ig_str *o, int status, const char *msg, const char *etype);

/* TGI */
void ig_render_tgi_token(ig_str *o, const ig_out_token *t);
/* One /generate_stream event payload (without "data: "). final: generated_text and details when asked. */
void ig_render_tgi_stream(ig_str *o, int index, const ig_out_token *t, int final, int full_text,
                          const ig_seq_out *s, int details, int n_input);
/* The /generate body: best is the chosen sequence; others (best_of) go to best_of_sequences. */
void ig_render_tgi_generate(ig_str *o, const ig_server_req *r, const ig_seq_out *seqs, int n, int best);

/* OpenAI chat */
void ig_render_chat_chunk(ig_str *o, const ig_oai_meta *m, const ig_server_req *r, const ig_out_token *t,
                          const char *content, ig_finish_reason finish);
void ig_render_chat_usage_chunk(ig_str *o, const ig_oai_meta *m, int prompt_tokens, int completion_tokens,
                                int cached_tokens);
/* The reply, one choice per sequence (OpenAI's n); with tools (tool_choice not "none") a text that is a tool call
 * becomes message.tool_calls. Usage counts the prompt once. */
void ig_render_chat_completion(ig_str *o, const ig_oai_meta *m, const ig_server_req *r, const ig_seq_out *seqs, int n);
/* The tool calls in a reply: text that is, after whitespace, one JSON object {"name": a tool of `tools`,
 * "arguments" (or "parameters"): an object} and nothing else, several of them one after another (apart by
 * whitespace, ';' or ','), or a non-empty array of them. A new array of {"name", "arguments" (compact JSON text)},
 * or NULL when the text is not that. */
json_t *ig_tool_calls_parse(const char *text, size_t len, const json_t *tools);
/* Whether a reply may be a tool call: 1 when its first byte past whitespace is '{' or '[' (*at: its offset, when
 * at is not NULL), 0 when it is another byte, -1 when there is only whitespace so far. */
int ig_tool_call_start(const char *text, size_t len, size_t *at);
/* A streamed reply's tool calls, all in one chunk (delta.tool_calls with index), finish_reason "tool_calls". */
void ig_render_chat_tool_chunk(ig_str *o, const ig_oai_meta *m, const ig_server_req *r, const json_t *calls);

/* Tool calls streamed as they are written (OpenAI's form): for each call a first delta with its index, id, type,
 * name and the arguments' first bytes, then deltas with more of the arguments' text (JSON, whitespace outside
 * strings dropped), the finish_reason in a last chunk. The caller keeps the state (zeroed at the start) and feeds
 * the whole reply so far after each token. Only replies written as this server's tool prompt asks, "name" before
 * "arguments" (or "parameters"), stream this way; any other shape is held to the end (ig_tool_stream_held). */
typedef struct ig_tool_stream {
  int state;               /* internal: where the scanner is */
  size_t at;               /* bytes of the reply consumed */
  int array;               /* the reply is a list of calls */
  int k;                   /* calls begun (their deltas sent) */
  int depth, in_str, esc;  /* inside the arguments value */
} ig_tool_stream;
/* Scans what is new in text[0, len) and writes into `o` one chunk (finish_reason null) with the tool_calls entries
 * it has for the client, or nothing. Returns 1 when a chunk was written. */
int ig_tool_stream_feed(ig_tool_stream *ts, ig_str *o, const ig_oai_meta *m, const ig_server_req *r, const char *text,
                        size_t len);
/* 1 when the reply has not taken the streamable shape (not a call, or keys in another order): nothing was sent. */
int ig_tool_stream_held(const ig_tool_stream *ts);
/* The last chunk of a streamed reply whose calls were sent: an empty delta and the finish_reason ("tool_calls" when
 * the whole reply is the calls, else the sequence's own). */
void ig_render_chat_tool_end(ig_str *o, const ig_oai_meta *m, const ig_server_req *r, int calls_ok,
                             ig_finish_reason finish);
/* OpenAI completions. With r->logprobs a choice's "logprobs" is OpenAI's legacy object over its tokens: the echoed
 * prompt's (r->echo) first, then the generated ones (special ones too): {"tokens": their strings (prompt_piece,
 * ig_out_token.piece), "token_logprobs": [logprob or null (the first prompt token's)], "top_logprobs": [{string:
 * logprob} of the r->top_logprobs most likely tokens and the chosen one, each string once, or null (the first
 * prompt token's)], "text_offset": [where each starts in the choice's text, in code points (Python's len)]}. A
 * text prompt's tokens start where the tokenizer put them (prompt_offsets); a prompt of ids is its tokens' strings
 * one after another, and so is the completion (after the echoed prompt), special tokens adding nothing. */
/* A streamed chunk; its logprobs: s's tokens [from, to) in that order, text offsets from *offset on (advanced). */
void ig_render_completion_chunk(ig_str *o, const ig_oai_meta *m, const ig_server_req *r, int index, const char *text,
                                ig_finish_reason finish, const ig_seq_out *s, int from, int to, int *offset);
void ig_render_completion_usage_chunk(ig_str *o, const ig_oai_meta *m, int prompt_tokens, int completion_tokens,
                                      int cached_tokens);
/* One choice per sequence, prompt by prompt (n_choices each: OpenAI's n); usage counts each prompt once. */
void ig_render_completion(ig_str *o, const ig_oai_meta *m, const ig_server_req *r, const ig_seq_out *seqs, int n);

#endif
