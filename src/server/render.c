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
    free(s->tokens[i].piece);
    for (int k = 0; k < s->tokens[i].n_top; k++) free(s->tokens[i].top[k].text);
    free(s->tokens[i].top);
  }
  free(s->tokens);
  if (s->prefill_text)
    for (int i = 0; i < s->n_prompt; i++) free(s->prefill_text[i]);
  free(s->prefill_text);
  for (int i = 0; s->prompt_piece && i < s->n_prompt; i++) free(s->prompt_piece[i]);
  free(s->prompt_piece);
  for (size_t i = 0; s->prefill_top_piece && i < (size_t)s->n_prompt * (size_t)s->prefill_top_n; i++)
    free(s->prefill_top_piece[i]);
  free(s->prefill_top_piece);
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

static size_t skip_ws(const char *t, size_t n, size_t i) {
  while (i < n && (t[i] == ' ' || t[i] == '\t' || t[i] == '\n' || t[i] == '\r')) i++;
  return i;
}

int ig_tool_call_start(const char *text, size_t len, size_t *at) {
  size_t i = skip_ws(text, len, 0);
  if (at) *at = i;
  return i == len ? -1 : text[i] == '{' || text[i] == '[';
}

json_t *ig_tool_calls_parse(const char *text, size_t len, const json_t *tools) {
  size_t i;
  if (ig_tool_call_start(text, len, &i) != 1) return NULL;
  json_t *calls = json_array();
  int ok = calls != NULL;
  if (ok && text[i] == '[') {
    json_t *v = json_loadb(text + i, len - i, 0, NULL);
    ok = json_is_array(v) && json_array_size(v) > 0;
    for (size_t k = 0; ok && k < json_array_size(v); k++) {
      json_t *c = one_call(json_array_get(v, k), tools);
      ok = c && json_array_append_new(calls, c) == 0;
    }
    json_decref(v);
  } else {
    /* one call object, or several one after another, apart by whitespace, ';' or ',' (a last one may follow) */
    while (ok && i < len) {
      json_error_t e; /* with JSON_DISABLE_EOF_CHECK, e.position is how many bytes the value took */
      json_t *v = json_loadb(text + i, len - i, JSON_DISABLE_EOF_CHECK, &e);
      json_t *c = v ? one_call(v, tools) : NULL;
      json_decref(v);
      if (!(ok = c && json_array_append_new(calls, c) == 0)) break;
      i = skip_ws(text, len, i + (size_t)e.position);
      if (i < len && (text[i] == ';' || text[i] == ',')) i = skip_ws(text, len, i + 1);
    }
  }
  if (!ok) json_decref(calls), calls = NULL;
  return calls;
}

/* a call's id: call_<response id's tail>_<k>, with the choice between them after the first choice */
static void call_id(ig_str *o, const ig_oai_meta *m, int choice, int k) {
  const char *id = m->id ? m->id : "", *dash = strchr(id, '-');
  if (choice) ig_str_printf(o, "\"id\":\"call_%s_%d_%d\"", dash ? dash + 1 : id, choice, k);
  else ig_str_printf(o, "\"id\":\"call_%s_%d\"", dash ? dash + 1 : id, k);
}

/* "tool_calls":[{("index":k,) "id":"call_<response id>_<k>","type":"function",
 *                "function":{"name":..,"arguments":..}}] */
static void tool_calls(ig_str *o, const ig_oai_meta *m, int choice, const json_t *calls, int with_index) {
  ig_str_puts(o, "\"tool_calls\":[");
  for (size_t k = 0; k < json_array_size(calls); k++) {
    const json_t *c = json_array_get(calls, k);
    if (k) ig_str_putc(o, ',');
    ig_str_putc(o, '{');
    if (with_index) ig_str_printf(o, "\"index\":%zu,", k);
    call_id(o, m, choice, (int)k);
    ig_str_puts(o, ",\"type\":\"function\",\"function\":{\"name\":");
    js(o, json_string_value(json_object_get(c, "name")));
    ig_str_puts(o, ",\"arguments\":");
    js(o, json_string_value(json_object_get(c, "arguments")));
    ig_str_puts(o, "}}");
  }
  ig_str_putc(o, ']');
}

/* the legacy "function_call":{"name":..,"arguments":..} of a reply's first call */
static void function_call(ig_str *o, const json_t *calls) {
  const json_t *f = json_array_get(calls, 0);
  ig_str_puts(o, "\"function_call\":{\"name\":");
  js(o, json_string_value(json_object_get(f, "name")));
  ig_str_puts(o, ",\"arguments\":");
  js(o, json_string_value(json_object_get(f, "arguments")));
  ig_str_putc(o, '}');
}

void ig_render_chat_tool_chunk(ig_str *o, const ig_oai_meta *m, const ig_server_req *r, const json_t *calls) {
  meta_head(o, m, "chat.completion.chunk");
  ig_str_printf(o, ",\"choices\":[{\"index\":%d,\"delta\":{\"role\":\"assistant\",\"content\":null,", m->choice);
  if (r->legacy_functions) { /* the legacy shape: the first call as delta.function_call, whole */
    function_call(o, calls);
    ig_str_puts(o, "},\"logprobs\":null,\"finish_reason\":\"function_call\"}]");
  } else {
    tool_calls(o, m, m->choice, calls, 1);
    ig_str_puts(o, "},\"logprobs\":null,\"finish_reason\":\"tool_calls\"}]");
  }
  if (r->include_usage) ig_str_puts(o, ",\"usage\":null");
  ig_str_putc(o, '}');
}

/* ---- tool calls as they stream ---- */

enum { TS_START = 0, TS_HEAD, TS_ARGS, TS_AFTER, TS_SEP, TS_DONE, TS_TAIL, TS_HOLD };

/* the literal `lit` at t[*i]: 1 (consumed), -1 (the text ends inside it), 0 (something else) */
static int lit(const char *t, size_t n, size_t *i, const char *lit) {
  size_t k = 0, L = strlen(lit);
  while (k < L && *i + k < n && t[*i + k] == lit[k]) k++;
  if (k == L) return *i += L, 1;
  return *i + k == n ? -1 : 0;
}
/* A call's head at t[i]: `{ "name" : STRING , "arguments"|"parameters" : {` with any whitespace between. 1: *end
 * is the offset of the arguments' '{' and *name the unescaped name (malloc'd); -1: the text ends before the head
 * does; 0: not that shape, or the name is not one of the tools. */
static int call_head(const char *t, size_t n, size_t i, const json_t *tools, size_t *end, char **name) {
  int r;
  i = skip_ws(t, n, i);
  if ((r = lit(t, n, &i, "{")) != 1) return r;
  i = skip_ws(t, n, i);
  if ((r = lit(t, n, &i, "\"name\"")) != 1) return r;
  i = skip_ws(t, n, i);
  if ((r = lit(t, n, &i, ":")) != 1) return r;
  i = skip_ws(t, n, i);
  if (i == n) return -1;
  if (t[i] != '"') return 0;
  size_t s0 = i++;
  for (int esc = 0; i < n && (esc || t[i] != '"'); i++) esc = !esc && t[i] == '\\';
  if (i == n) return -1;
  size_t s1 = ++i; /* past the closing quote */
  i = skip_ws(t, n, i);
  if ((r = lit(t, n, &i, ",")) != 1) return r;
  i = skip_ws(t, n, i);
  size_t j = i;
  if ((r = lit(t, n, &i, "\"arguments\"")) == 0) {
    i = j;
    r = lit(t, n, &i, "\"parameters\"");
  }
  if (r != 1) return r;
  i = skip_ws(t, n, i);
  if ((r = lit(t, n, &i, ":")) != 1) return r;
  i = skip_ws(t, n, i);
  if (i == n) return -1;
  if (t[i] != '{') return 0;
  json_t *nm = json_loadb(t + s0, s1 - s0, JSON_DECODE_ANY, NULL);
  int known = 0;
  for (size_t k = 0; json_is_string(nm) && k < json_array_size(tools) && !known; k++)
    known = json_equal(nm, json_object_get(json_object_get(json_array_get(tools, k), "function"), "name"));
  *name = known ? strdup(json_string_value(nm)) : NULL;
  json_decref(nm);
  if (!*name) return 0;
  *end = i;
  return 1;
}


/* One tool_calls entry of a streamed chunk: call k's first (id, type, name: `name` not NULL) with the arguments'
 * bytes so far, or more of its arguments; nothing when there is nothing new. Clears frag and frees name. */
static void tool_entry(ig_str *ent, int *n_ent, const ig_oai_meta *m, int k, char **name, ig_str *frag) {
  if (k < 0 || (!*name && !frag->len)) return;
  if ((*n_ent)++) ig_str_putc(ent, ',');
  ig_str_printf(ent, "{\"index\":%d,", k);
  if (*name) {
    call_id(ent, m, m->choice, k);
    ig_str_puts(ent, ",\"type\":\"function\",\"function\":{\"name\":");
    js(ent, *name);
    ig_str_putc(ent, ',');
  } else {
    ig_str_puts(ent, "\"function\":{");
  }
  ig_str_puts(ent, "\"arguments\":");
  jsn(ent, frag->p ? frag->p : "", frag->len);
  ig_str_puts(ent, "}}");
  ig_str_clear(frag);
  free(*name);
  *name = NULL;
}

int ig_tool_stream_feed(ig_tool_stream *ts, ig_str *o, const ig_oai_meta *m, const ig_server_req *r, const char *text,
                        size_t len) {
  len = ig_utf8_valid_prefix(text, len); /* a character cut at the end waits for its last bytes */
  ig_str ent, frag;
  ig_str_init(&ent);
  ig_str_init(&frag);
  int n_ent = 0, cur = ts->state == TS_ARGS ? ts->k - 1 : -1; /* the call whose arguments frag holds */
  char *first = NULL; /* cur's name when it began in this feed */
  for (int progress = 1; progress;) {
    progress = 0;
    size_t i = ts->at;
    if (ts->state == TS_START) {
      i = skip_ws(text, len, i);
      if (i == len) break;
      if (text[i] == '[') ts->array = 1, i++;
      ts->at = i, ts->state = TS_HEAD, progress = 1;
    } else if (ts->state == TS_HEAD) {
      if (ts->k && r->no_parallel_calls) { /* parallel_tool_calls false: nothing after the first call */
        ts->state = TS_TAIL;
        break;
      }
      size_t end;
      char *name = NULL;
      int h = call_head(text, len, i, r->tools, &end, &name);
      if (h == 0) ts->state = ts->k ? TS_TAIL : TS_HOLD;
      if (h != 1) break;
      tool_entry(&ent, &n_ent, m, cur, &first, &frag); /* the previous call's last bytes */
      first = name, cur = ts->k++;
      ts->at = end, ts->state = TS_ARGS, ts->depth = ts->in_str = ts->esc = 0, progress = 1;
    } else if (ts->state == TS_ARGS) {
      for (; i < len && ts->state == TS_ARGS; i++) {
        char c = text[i];
        if (ts->in_str) {
          ig_str_putc(&frag, c);
          if (ts->esc) ts->esc = 0;
          else if (c == '\\') ts->esc = 1;
          else if (c == '"') ts->in_str = 0;
          continue;
        }
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') continue;
        ig_str_putc(&frag, c);
        if (c == '"') ts->in_str = 1;
        else if (c == '{' || c == '[') ts->depth++;
        else if ((c == '}' || c == ']') && --ts->depth == 0) ts->state = TS_AFTER;
      }
      ts->at = i, progress = ts->state != TS_ARGS;
    } else if (ts->state == TS_AFTER || ts->state == TS_SEP || ts->state == TS_DONE) {
      i = skip_ws(text, len, i);
      if (i == len) break;
      char c = text[i];
      /* a list's calls are apart by ',' and end at ']'; without a list, calls may follow one another, apart by
       * whitespace, ';' or ',' (a '{' starts the next one: not consumed here) */
      size_t at = i + 1;
      if (ts->state == TS_AFTER) ts->state = c == '}' ? (ts->array ? TS_SEP : TS_DONE) : TS_TAIL;
      else if (ts->array) ts->state = ts->state == TS_SEP && c == ',' ? TS_HEAD : ts->state == TS_SEP && c == ']' ? TS_DONE : TS_TAIL;
      else if (c == '{') ts->state = TS_HEAD, at = i;
      else ts->state = ts->state == TS_DONE && (c == ';' || c == ',') ? TS_SEP : TS_TAIL;
      ts->at = at, progress = ts->state != TS_TAIL;
    }
  }
  tool_entry(&ent, &n_ent, m, cur, &first, &frag);
  if (n_ent) {
    meta_head(o, m, "chat.completion.chunk");
    ig_str_printf(o, ",\"choices\":[{\"index\":%d,\"delta\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[", m->choice);
    ig_str_append(o, ent.p, ent.len);
    ig_str_puts(o, "]},\"logprobs\":null,\"finish_reason\":null}]");
    if (r->include_usage) ig_str_puts(o, ",\"usage\":null");
    ig_str_putc(o, '}');
  }
  ig_str_free(&ent);
  ig_str_free(&frag);
  return n_ent > 0;
}

int ig_tool_stream_held(const ig_tool_stream *ts) { return ts->k == 0; }

void ig_render_chat_tool_end(ig_str *o, const ig_oai_meta *m, const ig_server_req *r, int calls_ok,
                             ig_finish_reason finish) {
  meta_head(o, m, "chat.completion.chunk");
  ig_str_printf(o, ",\"choices\":[{\"index\":%d,\"delta\":{},\"logprobs\":null,\"finish_reason\":", m->choice);
  ig_str_printf(o, "\"%s\"}]", calls_ok ? "tool_calls" : ig_finish_openai(finish));
  if (r->include_usage) ig_str_puts(o, ",\"usage\":null");
  ig_str_putc(o, '}');
}

void ig_render_chat_chunk(ig_str *o, const ig_oai_meta *m, const ig_server_req *r, const ig_out_token *t,
                          const char *content, ig_finish_reason finish) {
  meta_head(o, m, "chat.completion.chunk");
  ig_str_printf(o, ",\"choices\":[{\"index\":%d,\"delta\":{\"role\":\"assistant\",\"content\":", m->choice);
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

void ig_render_chat_completion(ig_str *o, const ig_oai_meta *m, const ig_server_req *r, const ig_seq_out *seqs, int n) {
  meta_head(o, m, "chat.completion");
  ig_str_puts(o, ",\"choices\":[");
  int ct = 0;
  for (int c = 0; c < n; c++) {
    const ig_seq_out *s = &seqs[c];
    json_t *calls = r->tool_choice != IG_TOOLS_NONE && r->tools
                        ? ig_tool_calls_parse(s->text.p ? s->text.p : "", s->text.len, r->tools) : NULL;
    while (calls && r->no_parallel_calls && json_array_size(calls) > 1) json_array_remove(calls, 1);
    ig_str_printf(o, "%s{\"index\":%d,\"message\":{\"role\":\"assistant\",\"content\":", c ? "," : "", c);
    if (calls && r->legacy_functions) { /* the legacy shape: the first call as message.function_call */
      ig_str_puts(o, "null,");
      function_call(o, calls);
    } else if (calls) {
      ig_str_puts(o, "null,");
      tool_calls(o, m, c, calls, 0);
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
    ig_str_printf(o, ",\"finish_reason\":\"%s\"}",
                  calls ? (r->legacy_functions ? "function_call" : "tool_calls") : ig_finish_openai(s->finish));
    json_decref(calls);
    ct += s->n_tokens;
  }
  ig_str_puts(o, "],\"usage\":");
  usage(o, n ? seqs[0].n_prompt : 0, ct, n ? seqs[0].n_cached : 0);
  ig_str_putc(o, '}');
}

/* ---- OpenAI completions' logprobs object (see render.h) ---- */

/* Token u of a choice's logprobs object: the prompt's u-th with echo (np = its tokens, else 0), else a generated one.
 * Its string, logprob (NAN: null) and up to IG_MAX_TOP_N alternatives (strings and logprobs); returns their count,
 * or -1 when its top_logprobs is null (the first prompt token). */
static int lp_token(const ig_server_req *r, const ig_seq_out *s, int np, int u, const char **str, float *lp,
                    const char **alt, float *alt_lp) {
  int n = 0, want = r->top_logprobs < IG_MAX_TOP_N ? r->top_logprobs : IG_MAX_TOP_N;
  if (u < np) {
    *str = s->prompt_piece ? s->prompt_piece[u] : NULL;
    *lp = u > 0 && s->prefill_lp ? s->prefill_lp[u] : NAN;
    if (u == 0) return -1;
    const ig_logprob_top *row = s->prefill_top ? s->prefill_top + (size_t)u * (size_t)s->prefill_top_n : NULL;
    for (int k = 0; row && k < s->prefill_top_n && k < want && row[k].id >= 0; k++, n++) {
      alt[n] = s->prefill_top_piece ? s->prefill_top_piece[(size_t)u * (size_t)s->prefill_top_n + k] : NULL;
      alt_lp[n] = row[k].logprob;
    }
    return n;
  }
  const ig_out_token *t = &s->tokens[u - np];
  *str = t->piece;
  *lp = t->logprob;
  for (; n < t->n_top && n < want; n++) alt[n] = t->top[n].text, alt_lp[n] = t->top[n].logprob;
  return n;
}

/* Code points of UTF-8 text: what Python's len() counts, as clients index a text with text_offset. */
static int cp_count(const char *p, size_t n) {
  int c = 0;
  for (size_t i = 0; p && i < n; i++) c += ((unsigned char)p[i] & 0xc0) != 0x80;
  return c;
}

static void completion_logprobs(ig_str *o, const ig_server_req *r, const ig_seq_out *s, int from, int to,
                                int *offset) {
  const int np = r->echo ? s->n_prompt : 0;
  const char *str, *alt[IG_MAX_TOP_N + 1];
  float lp, alt_lp[IG_MAX_TOP_N + 1];
  ig_str_puts(o, "{\"tokens\":[");
  for (int u = from; u < to; u++) {
    lp_token(r, s, np, u, &str, &lp, alt, alt_lp);
    if (u > from) ig_str_putc(o, ',');
    js(o, str);
  }
  ig_str_puts(o, "],\"token_logprobs\":[");
  for (int u = from; u < to; u++) {
    lp_token(r, s, np, u, &str, &lp, alt, alt_lp);
    if (u > from) ig_str_putc(o, ',');
    jf(o, lp);
  }
  ig_str_puts(o, "],\"top_logprobs\":[");
  for (int u = from; u < to; u++) {
    int n = lp_token(r, s, np, u, &str, &lp, alt, alt_lp);
    if (u > from) ig_str_putc(o, ',');
    if (n < 0) {
      ig_str_puts(o, "null");
      continue;
    }
    alt[n] = str, alt_lp[n] = lp; /* the chosen token after the most likely ones */
    ig_str_putc(o, '{');
    for (int k = 0, first = 1; k <= n; k++) {
      int seen = 0; /* a string twice (two tokens that read alike): the first, likelier, kept */
      for (int q = 0; q < k && !seen; q++) seen = !strcmp(alt[q] ? alt[q] : "", alt[k] ? alt[k] : "");
      if (seen) continue;
      if (!first) ig_str_putc(o, ',');
      first = 0;
      js(o, alt[k]);
      ig_str_putc(o, ':');
      jf(o, alt_lp[k]);
    }
    ig_str_putc(o, '}');
  }
  ig_str_puts(o, "],\"text_offset\":[");
  size_t at = 0; /* prompt_offsets: a cursor in input_text, in bytes, and the code points before it */
  int at_cp = 0;
  for (int u = from; u < to; u++) {
    lp_token(r, s, np, u, &str, &lp, alt, alt_lp);
    if (u < np && s->prompt_offsets && s->input_text) {
      size_t b = s->prompt_offsets[2 * u] < s->input_len ? s->prompt_offsets[2 * u] : s->input_len;
      if (b < at) at = 0, at_cp = 0;
      at_cp += cp_count(s->input_text + at, b - at), at = b;
      *offset = at_cp;
    } else if (u == np) { /* the completion starts after the echoed prompt */
      *offset = np ? cp_count(s->input_text, s->input_len) : 0;
    }
    ig_str_printf(o, "%s%d", u > from ? "," : "", *offset);
    if (u < np || !s->tokens[u - np].special) *offset += cp_count(str, str ? strlen(str) : 0);
  }
  ig_str_puts(o, "]}");
}

void ig_render_completion_chunk(ig_str *o, const ig_oai_meta *m, const ig_server_req *r, int index, const char *text,
                                ig_finish_reason finish, const ig_seq_out *s, int from, int to, int *offset) {
  meta_head(o, m, "text_completion");
  ig_str_printf(o, ",\"choices\":[{\"index\":%d,\"text\":", index);
  js(o, text);
  ig_str_puts(o, ",\"logprobs\":");
  if (r->logprobs)
    completion_logprobs(o, r, s, from, to, offset);
  else
    ig_str_puts(o, "null");
  ig_str_puts(o, ",\"finish_reason\":");
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
    if (r->echo) { /* the prompt, then the completion, as one string */
      ig_str t;
      ig_str_init(&t);
      ig_str_append(&t, s->input_text ? s->input_text : "", s->input_text ? s->input_len : 0);
      ig_str_append(&t, s->text.p ? s->text.p : "", s->text.len);
      jsn(o, t.p ? t.p : "", t.len);
      ig_str_free(&t);
    } else {
      jsn(o, s->text.p ? s->text.p : "", s->text.len);
    }
    ig_str_puts(o, ",\"logprobs\":");
    if (r->logprobs) {
      int offset = 0;
      completion_logprobs(o, r, s, 0, (r->echo ? s->n_prompt : 0) + s->n_tokens, &offset);
    } else {
      ig_str_puts(o, "null");
    }
    ig_str_printf(o, ",\"finish_reason\":\"%s\"}", ig_finish_openai(s->finish));
    if (i % (r->n_choices > 1 ? r->n_choices : 1) == 0) pt += s->n_prompt, cached += s->n_cached; /* once a prompt */
    ct += s->n_tokens;
  }
  ig_str_puts(o, "],\"usage\":");
  usage(o, pt, ct, cached);
  ig_str_putc(o, '}');
}
