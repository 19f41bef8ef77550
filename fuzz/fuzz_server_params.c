/* fuzz/fuzz_server_params: request bodies of every generation route through the JSON parser, TGI's
 * validation (params.c: grammars and JSON schemas compiled, tools and tool_choice) and the length checks, then
 * the response renderers on the parsed request (the prompt text doubling as the reply, so that a chat request
 * whose prompt is a tool call renders tool_calls, whole and streamed as written; a prompt of token ids is the
 * echoed prompt of the completions logprobs object). */
#include "server/params.h"
#include "server/render.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  ig_api api = (ig_api)(data[0] % 4);
  json_error_t je;
  json_t *body = json_loadb((const char *)data + 1, size - 1, JSON_ALLOW_NUL, &je);
  if (!body) return 0;
  ig_server_limits lim = {2, 4, 5, 100, 200, 4, size % 2 ? "parameters" : NULL, (int)(size / 2 % 2)};
  ig_server_req r;
  const char *etype;
  char err[512];
  if (ig_server_req_parse(api, body, &lim, &r, &etype, err, sizeof err) == 0) {
    ig_server_req_compile_grammar(&r, err, sizeof err);
    ig_server_req_check_lengths(&r, (int)(size % 300), &lim, err, sizeof err);
    ig_seq_out s;
    memset(&s, 0, sizeof s);
    s.input_text = r.prompts && r.prompts[0] ? r.prompts[0] : "";
    s.input_len = r.prompts && r.prompts[0] ? r.prompt_lens[0] : 0;
    /* chat (no prompt before the template): the last message's content is the reply */
    json_t *last = json_array_get(r.messages, json_array_size(r.messages) ? json_array_size(r.messages) - 1 : 0);
    if (!s.input_len && json_is_string(json_object_get(last, "content")))
      s.input_text = (char *)json_string_value(json_object_get(last, "content")),
      s.input_len = json_string_length(json_object_get(last, "content"));
    if (r.prompt_ids && r.prompt_ids[0]) s.prompt_ids = r.prompt_ids[0], s.n_prompt = r.n_prompt_ids[0];
    ig_out_token t;
    memset(&t, 0, sizeof t);
    t.id = 5;
    t.logprob = -0.5f;
    t.text = strdup(s.input_text);
    t.piece = strdup(s.input_text);
    ig_seq_out_push(&s, &t);
    ig_str o;
    ig_str_init(&o);
    ig_oai_meta m = {"id", 1, r.model ? r.model : "m", "fp", 0};
    ig_render_tgi_generate(&o, &r, &s, 1, 0);
    ig_render_chat_completion(&o, &m, &r, &s, 1);
    ig_render_completion(&o, &m, &r, &s, 1);
    ig_render_tgi_stream(&o, 1, &s.tokens[0], 1, 1, &s, 1, 3);
    int off = 0, all = (r.echo ? s.n_prompt : 0) + s.n_tokens;
    ig_render_completion_chunk(&o, &m, &r, 0, s.input_text, IG_FINISH_NONE, &s, 0, all - 1, &off);
    ig_render_completion_chunk(&o, &m, &r, 0, "", IG_FINISH_LENGTH, &s, all - 1, all, &off);
    if (r.tools) { /* the reply text as a tool call, streamed form */
      json_t *calls = ig_tool_calls_parse(s.text.p ? s.text.p : "", s.text.len, r.tools);
      if (calls) ig_render_chat_tool_chunk(&o, &m, &r, calls);
      json_decref(calls);
      /* and streamed as written, fed in pieces whose sizes come from the input; every chunk must be JSON */
      ig_tool_stream ts;
      memset(&ts, 0, sizeof ts);
      size_t step = 1 + size % 7;
      for (size_t n = 0; n < s.text.len;) {
        n = n + step < s.text.len ? n + step : s.text.len;
        ig_str c;
        ig_str_init(&c);
        if (ig_tool_stream_feed(&ts, &c, &m, &r, s.text.p, n)) {
          json_t *j = json_loadb(c.p, c.len, 0, NULL);
          if (!j) abort();
          json_decref(j);
        }
        ig_str_free(&c);
      }
    }
    ig_str_free(&o);
    ig_seq_out_free(&s);
  }
  ig_server_req_free(&r);
  json_decref(body);
  return 0;
}
