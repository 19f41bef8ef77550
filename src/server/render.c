/* server/render: JSON bodies and SSE payloads of the TGI and OpenAI routes (see render.h). Field order
 * follows TGI's serde structs, so byte-level diffs against a TGI answer only show the values. */
#include "server/render.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void js(ig_str *o, const char *s) { ig_str_json_string(o, s ? s : "", s ? strlen(s) : 0); }
static void jsn(ig_str *o, const char *s, size_t n) { ig_str_json_string(o, s, n); }
/* An f32 in the fewest digits that read back as the same float (as serde writes f32: -0.51, not -0.50999999). */
static void jf(ig_str *o, float v) {
  if (!isfinite(v)) {
    ig_str_puts(o, "null");
    return;
  }
  char buf[32];
  for (int prec = 6; prec <= 9; prec++) {
    snprintf(buf, sizeof buf, "%.*g", prec, (double)v);
    if (strtof(buf, NULL) == v) break;
  }
  ig_str_puts(o, buf);
}

void ig_seq_out_free(ig_seq_out *s) {
  ig_str_free(&s->text);
  for (int i = 0; i < s->n_tokens; i++) {
    free(s->tokens[i].text);
    for (int k = 0; k < s->tokens[i].n_top; k++) free(s->tokens[i].top[k].text);
    free(s->tokens[i].top);
  }
  free(s->tokens);
  if (s->prefill_text)
    for (int i = 0; i < s->n_prompt; i++) free(s->prefill_text[i]);
  free(s->prefill_text);
  memset(s, 0, sizeof *s);
}

int ig_seq_out_push(ig_seq_out *s, ig_out_token *t) {
  if (s->n_tokens == s->cap) {
    int nc = s->cap ? s->cap * 2 : 64;
    ig_out_token *p = realloc(s->tokens, (size_t)nc * sizeof *p);
    if (!p) return -1;
    s->tokens = p;
    s->cap = nc;
  }
  if (!t->special && t->text) ig_str_puts(&s->text, t->text);
  if (isfinite(t->logprob)) s->logprob_sum += t->logprob;
  s->tokens[s->n_tokens++] = *t;
  memset(t, 0, sizeof *t);
  return s->text.oom ? -1 : 0;
}

const char *ig_finish_tgi(ig_finish_reason r) {
  switch (r) {
  case IG_FINISH_EOS: return "eos_token";
  case IG_FINISH_STOP: return "stop_sequence";
  default: return "length";
  }
}

const char *ig_finish_openai(ig_finish_reason r) {
  return (r == IG_FINISH_EOS || r == IG_FINISH_STOP) ? "stop" : "length";
}

/* ---- errors ------------------------------------------------------------------------------------------------ */

void ig_render_error(ig_str *o, const char *msg, const char *etype) {
  ig_str_puts(o, "{\"error\":");
  js(o, msg);
  ig_str_puts(o, ",\"error_type\":");
  js(o, etype);
  ig_str_putc(o, '}');
}

void ig_render_error_openai(ig_str *o, int status, const char *msg, const char *etype) {
  const char *type = status == 401   ? "authentication_error"
                     : status == 429 ? "rate_limit_error"
                     : status >= 500 ? "server_error"
                     : status == 424 ? "server_error"
                                     : "invalid_request_error";
  ig_str_puts(o, "{\"error\":{\"message\":");
  js(o, msg);
  ig_str_puts(o, ",\"type\":");
  js(o, type);
  ig_str_puts(o, ",\"param\":null,\"code\":");
  js(o, etype);
  ig_str_puts(o, "},\"error_type\":");
  js(o, etype);
  ig_str_putc(o, '}');
}

/* ---- TGI ----------------------------------------------------------------------------------------------------- */

void ig_render_tgi_token(ig_str *o, const ig_out_token *t) {
  ig_str_printf(o, "{\"id\":%d,\"text\":", t->id);
  js(o, t->text);
  ig_str_puts(o, ",\"logprob\":");
  jf(o, t->logprob);
  ig_str_printf(o, ",\"special\":%s}", t->special ? "true" : "false");
}

static void top_tokens_of(ig_str *o, const ig_out_token *t) {
  ig_str_putc(o, '[');
  for (int k = 0; k < t->n_top; k++) {
    if (k) ig_str_putc(o, ',');
    ig_str_printf(o, "{\"id\":%d,\"text\":", t->top[k].id);
    js(o, t->top[k].text);
    ig_str_puts(o, ",\"logprob\":");
    jf(o, t->top[k].logprob);
    ig_str_printf(o, ",\"special\":%s}", t->top[k].special ? "true" : "false");
  }
  ig_str_putc(o, ']');
}

static void full_text(ig_str *o, int with_prompt, const ig_seq_out *s) {
  if (with_prompt && s->input_text) {
    ig_str t;
    ig_str_init(&t);
    ig_str_append(&t, s->input_text, s->input_len);
    ig_str_append(&t, s->text.p ? s->text.p : "", s->text.len);
    jsn(o, t.p ? t.p : "", t.len);
    ig_str_free(&t);
  } else {
    jsn(o, s->text.p ? s->text.p : "", s->text.len);
  }
}

void ig_render_tgi_stream(ig_str *o, int index, const ig_out_token *t, int final, int with_prompt,
                          const ig_seq_out *s, int details, int n_input) {
  ig_str_printf(o, "{\"index\":%d,\"token\":", index);
  ig_render_tgi_token(o, t);
  if (t->n_top > 0) {
    ig_str_puts(o, ",\"top_tokens\":");
    top_tokens_of(o, t);
  }
  ig_str_puts(o, ",\"generated_text\":");
  if (final)
    full_text(o, with_prompt, s);
  else
    ig_str_puts(o, "null");
  ig_str_puts(o, ",\"details\":");
  if (final && details) {
    ig_str_printf(o, "{\"finish_reason\":\"%s\",\"generated_tokens\":%d,\"input_length\":%d,\"seed\":",
                  ig_finish_tgi(s->finish), s->n_tokens, n_input);
    if (s->sampled)
      ig_str_printf(o, "%llu}", (unsigned long long)s->seed);
    else
      ig_str_puts(o, "null}");
  } else {
    ig_str_puts(o, "null");
  }
  ig_str_putc(o, '}');
}

static void seq_details_body(ig_str *o, const ig_server_req *r, const ig_seq_out *s) {
  ig_str_printf(o, "\"finish_reason\":\"%s\",\"generated_tokens\":%d,\"seed\":", ig_finish_tgi(s->finish),
                s->n_tokens);
  if (s->sampled)
    ig_str_printf(o, "%llu", (unsigned long long)s->seed);
  else
    ig_str_puts(o, "null");
  ig_str_puts(o, ",\"prefill\":[");
  if (r->decoder_input_details) {
    for (int i = 0; i < s->n_prompt; i++) {
      if (i) ig_str_putc(o, ',');
      ig_str_printf(o, "{\"id\":%d,\"text\":", s->prompt_ids[i]);
      js(o, s->prefill_text ? s->prefill_text[i] : "");
      ig_str_puts(o, ",\"logprob\":");
      if (i == 0 || !s->prefill_lp)
        ig_str_puts(o, "null");
      else
        jf(o, s->prefill_lp[i]);
      ig_str_putc(o, '}');
    }
  }
  ig_str_puts(o, "],\"tokens\":[");
  for (int i = 0; i < s->n_tokens; i++) {
    if (i) ig_str_putc(o, ',');
    ig_render_tgi_token(o, &s->tokens[i]);
  }
  ig_str_putc(o, ']');
  if (r->gp.top_n_tokens > 0) {
    ig_str_puts(o, ",\"top_tokens\":[");
    for (int i = 0; i < s->n_tokens; i++) {
      if (i) ig_str_putc(o, ',');
      top_tokens_of(o, &s->tokens[i]);
    }
    ig_str_putc(o, ']');
  }
}

void ig_render_tgi_generate(ig_str *o, const ig_server_req *r, const ig_seq_out *seqs, int n, int best) {
  const ig_seq_out *b = &seqs[best];
  int prefix = r->return_full_text;
  ig_str_puts(o, "{\"generated_text\":");
  full_text(o, prefix, b);
  if (r->details) {
    ig_str_puts(o, ",\"details\":{");
    seq_details_body(o, r, b);
    if (n > 1) {
      ig_str_puts(o, ",\"best_of_sequences\":[");
      int first = 1;
      for (int i = 0; i < n; i++) {
        if (i == best) continue;
        if (!first) ig_str_putc(o, ',');
        first = 0;
        ig_str_puts(o, "{\"generated_text\":");
        full_text(o, prefix, &seqs[i]);
        ig_str_putc(o, ',');
        seq_details_body(o, r, &seqs[i]);
        ig_str_putc(o, '}');
      }
      ig_str_putc(o, ']');
    }
    ig_str_putc(o, '}');
  }
  ig_str_putc(o, '}');
}

/* ---- OpenAI ----------------------------------------------------------------------------------------------------- */

static void meta_head(ig_str *o, const ig_oai_meta *m, const char *object) {
  ig_str_puts(o, "{\"id\":");
  js(o, m->id);
  ig_str_printf(o, ",\"object\":\"%s\",\"created\":%lld,\"model\":", object, m->created);
  js(o, m->model);
  ig_str_puts(o, ",\"system_fingerprint\":");
  js(o, m->fingerprint);
}

static void logprob_entry(ig_str *o, const ig_out_token *t, int n_top) {
  ig_str_puts(o, "{\"token\":");
  js(o, t->text);
  ig_str_puts(o, ",\"logprob\":");
  jf(o, t->logprob);
  ig_str_puts(o, ",\"top_logprobs\":[");
  for (int k = 0; k < t->n_top && k < n_top; k++) {
    if (k) ig_str_putc(o, ',');
    ig_str_puts(o, "{\"token\":");
    js(o, t->top[k].text);
    ig_str_puts(o, ",\"logprob\":");
    jf(o, t->top[k].logprob);
    ig_str_putc(o, '}');
  }
  ig_str_puts(o, "]}");
}

/* OpenAI's usage object; prompt_tokens_details.cached_tokens: prompt tokens found in the prefix cache */
static void usage(ig_str *o, int p, int c, int cached) {
  ig_str_printf(o, "{\"prompt_tokens\":%d,\"completion_tokens\":%d,\"total_tokens\":%d,"
                "\"prompt_tokens_details\":{\"cached_tokens\":%d}}", p, c, p + c, cached);
}

/* ---- tool calls ------------------------------------------------------------------------------------------ */

/* One call object of a reply: {"name": a listed tool, "arguments" (or "parameters", Llama 3.1's word): object}. */
static json_t *one_call(const json_t *v, const json_t *tools) {
  if (!json_is_object(v)) return NULL;
  const json_t *name = json_object_get(v, "name");
  const json_t *args = json_object_get(v, "arguments");
  if (!args) args = json_object_get(v, "parameters");
  if (!json_is_string(name) || !json_is_object(args) || json_object_size(v) != 2) return NULL;
  int known = 0;
  for (size_t t = 0; t < json_array_size(tools) && !known; t++)
    known = json_equal(name, json_object_get(json_object_get(json_array_get(tools, t), "function"), "name"));
  if (!known) return NULL;
  char *a = json_dumps(args, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_t *c = a ? json_pack("{s:O, s:s}", "name", name, "arguments", a) : NULL;
  free(a);
  return c;
}

int ig_tool_call_start(const char *text, size_t len, size_t *at) {
  size_t i = 0;
  while (i < len && (text[i] == ' ' || text[i] == '\t' || text[i] == '\n' || text[i] == '\r')) i++;
  if (at) *at = i;
  return i == len ? -1 : text[i] == '{' || text[i] == '[';
}

json_t *ig_tool_calls_parse(const char *text, size_t len, const json_t *tools) {
  size_t i;
  if (ig_tool_call_start(text, len, &i) != 1) return NULL;
  json_t *v = json_loadb(text + i, len - i, 0, NULL), *calls = json_array();
  int ok = v && calls;
  if (ok && json_is_array(v)) {
    ok = json_array_size(v) > 0;
    for (size_t k = 0; ok && k < json_array_size(v); k++) {
      json_t *c = one_call(json_array_get(v, k), tools);
      ok = c && json_array_append_new(calls, c) == 0;
    }
  } else if (ok) {
    json_t *c = one_call(v, tools);
    ok = c && json_array_append_new(calls, c) == 0;
  }
  json_decref(v);
  if (!ok) json_decref(calls), calls = NULL;
  return calls;
}

/* "tool_calls":[{("index":k,) "id":"call_<response id>_<k>","type":"function",
 *                "function":{"name":..,"arguments":..}}] */
static void tool_calls(ig_str *o, const ig_oai_meta *m, const json_t *calls, int with_index) {
  const char *id = m->id ? m->id : "";
  const char *dash = strchr(id, '-');
  ig_str_puts(o, "\"tool_calls\":[");
  for (size_t k = 0; k < json_array_size(calls); k++) {
    const json_t *c = json_array_get(calls, k);
    if (k) ig_str_putc(o, ',');
    ig_str_putc(o, '{');
    if (with_index) ig_str_printf(o, "\"index\":%zu,", k);
    ig_str_printf(o, "\"id\":\"call_%s_%zu\",\"type\":\"function\",\"function\":{\"name\":", dash ? dash + 1 : id, k);
    js(o, json_string_value(json_object_get(c, "name")));
    ig_str_puts(o, ",\"arguments\":");
    js(o, json_string_value(json_object_get(c, "arguments")));
    ig_str_puts(o, "}}");
  }
  ig_str_putc(o, ']');
}

void ig_render_chat_tool_chunk(ig_str *o, const ig_oai_meta *m, const ig_server_req *r, const json_t *calls) {
  meta_head(o, m, "chat.completion.chunk");
  ig_str_puts(o, ",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null,");
  tool_calls(o, m, calls, 1);
  ig_str_puts(o, "},\"logprobs\":null,\"finish_reason\":\"tool_calls\"}]");
  if (r->include_usage) ig_str_puts(o, ",\"usage\":null");
  ig_str_putc(o, '}');
}

void ig_render_chat_chunk(ig_str *o, const ig_oai_meta *m, const ig_server_req *r, const ig_out_token *t,
                          const char *content, ig_finish_reason finish) {
  meta_head(o, m, "chat.completion.chunk");
  ig_str_puts(o, ",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":");
  js(o, content);
  ig_str_puts(o, "},\"logprobs\":");
  if (r->logprobs && t) {
    ig_str_puts(o, "{\"content\":[");
    logprob_entry(o, t, r->top_logprobs);
    ig_str_puts(o, "]}");
  } else {
    ig_str_puts(o, "null");
  }
  ig_str_puts(o, ",\"finish_reason\":");
  if (finish != IG_FINISH_NONE)
    ig_str_printf(o, "\"%s\"", ig_finish_openai(finish));
  else
    ig_str_puts(o, "null");
  ig_str_puts(o, "}]");
  if (r->include_usage) ig_str_puts(o, ",\"usage\":null");
  ig_str_putc(o, '}');
}

void ig_render_chat_usage_chunk(ig_str *o, const ig_oai_meta *m, int prompt_tokens, int completion_tokens,
                                int cached_tokens) {
  meta_head(o, m, "chat.completion.chunk");
  ig_str_puts(o, ",\"choices\":[],\"usage\":");
  usage(o, prompt_tokens, completion_tokens, cached_tokens);
  ig_str_putc(o, '}');
}

void ig_render_chat_completion(ig_str *o, const ig_oai_meta *m, const ig_server_req *r, const ig_seq_out *s) {
  meta_head(o, m, "chat.completion");
  json_t *calls = r->tool_choice != IG_TOOLS_NONE && r->tools
                      ? ig_tool_calls_parse(s->text.p ? s->text.p : "", s->text.len, r->tools) : NULL;
  ig_str_puts(o, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":");
  if (calls) {
    ig_str_puts(o, "null,");
    tool_calls(o, m, calls, 0);
  } else {
    jsn(o, s->text.p ? s->text.p : "", s->text.len);
  }
  ig_str_puts(o, "},\"logprobs\":");
  if (r->logprobs) {
    ig_str_puts(o, "{\"content\":[");
    int first = 1;
    for (int i = 0; i < s->n_tokens; i++) {
      if (s->tokens[i].special) continue;
      if (!first) ig_str_putc(o, ',');
      first = 0;
      logprob_entry(o, &s->tokens[i], r->top_logprobs);
    }
    ig_str_puts(o, "]}");
  } else {
    ig_str_puts(o, "null");
  }
  ig_str_printf(o, ",\"finish_reason\":\"%s\"}],\"usage\":", calls ? "tool_calls" : ig_finish_openai(s->finish));
  json_decref(calls);
  usage(o, s->n_prompt, s->n_tokens, s->n_cached);
  ig_str_putc(o, '}');
}

void ig_render_completion_chunk(ig_str *o, const ig_oai_meta *m, int index, const char *text,
                                ig_finish_reason finish) {
  meta_head(o, m, "text_completion");
  ig_str_printf(o, ",\"choices\":[{\"index\":%d,\"text\":", index);
  js(o, text);
  ig_str_puts(o, ",\"logprobs\":null,\"finish_reason\":");
  if (finish != IG_FINISH_NONE)
    ig_str_printf(o, "\"%s\"", ig_finish_openai(finish));
  else
    ig_str_puts(o, "null");
  ig_str_puts(o, "}]}");
}

void ig_render_completion_usage_chunk(ig_str *o, const ig_oai_meta *m, int prompt_tokens, int completion_tokens,
                                      int cached_tokens) {
  meta_head(o, m, "text_completion");
  ig_str_puts(o, ",\"choices\":[],\"usage\":");
  usage(o, prompt_tokens, completion_tokens, cached_tokens);
  ig_str_putc(o, '}');
}

void ig_render_completion(ig_str *o, const ig_oai_meta *m, const ig_server_req *r, const ig_seq_out *seqs, int n) {
  meta_head(o, m, "text_completion");
  ig_str_puts(o, ",\"choices\":[");
  int pt = 0, ct = 0, cached = 0;
  for (int i = 0; i < n; i++) {
    const ig_seq_out *s = &seqs[i];
    if (i) ig_str_putc(o, ',');
    ig_str_printf(o, "{\"index\":%d,\"text\":", i);
    jsn(o, s->text.p ? s->text.p : "", s->text.len);
    ig_str_puts(o, ",\"logprobs\":");
    if (r->logprobs) {
      ig_str_putc(o, '[');
      for (int k = 0; k < s->n_tokens; k++) {
        if (k) ig_str_putc(o, ',');
        jf(o, s->tokens[k].logprob);
      }
      ig_str_putc(o, ']');
    } else {
      ig_str_puts(o, "null");
    }
    ig_str_printf(o, ",\"finish_reason\":\"%s\"}", ig_finish_openai(s->finish));
    pt += s->n_prompt;
    ct += s->n_tokens;
    cached += s->n_cached;
  }
  ig_str_puts(o, "],\"usage\":");
  usage(o, pt, ct, cached);
  ig_str_putc(o, '}');
}
