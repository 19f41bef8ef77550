/* tests/server/test_server_params: request parsing and TGI's validation rules and messages (params.c), and
 * the shapes of the bodies render.c writes (parsed back with jansson). */
#include "engine/jsonschema.h"
#include "server/params.h"
#include "server/metrics.h"
#include "server/render.h"
#include "test.h"
#include <stdlib.h>

static ig_server_limits lim = {2, 4, 5, 100, 200, 4, NULL, 0};

/* Parses body for api; returns the status and copies the message. On success the request goes to *keep (the
 * caller frees it) when keep is not NULL, else it is freed. */
#define DESER_PREFIX "Failed to deserialize the JSON body into the target type: "
static int parse_keep(ig_api api, const char *body, char *msg, size_t n, ig_server_req *keep) {
  json_error_t je;
  json_t *j = json_loads(body, 0, &je);
  if (!j) {
    fprintf(stderr, "bad test json: %s\n", body);
    return -1;
  }
  ig_server_req r;
  const char *etype;
  int rc = ig_server_req_parse(api, j, &lim, &r, &etype, msg, n);
  json_decref(j);
  if (!rc) rc = ig_server_req_compile_grammar(&r, msg, n); /* as the server's validation worker does next */
  if (keep && !rc) *keep = r;
  else ig_server_req_free(&r);
  return rc;
}
/* The same, also giving (when json_mode is not NULL and the parse succeeded) 0 none, 1 JSON mode, 2 a schema. */
static int run_jm(ig_api api, const char *body, char *msg, size_t n, int *json_mode) {
  ig_server_req r;
  int rc = parse_keep(api, body, msg, n, &r);
  if (rc) return rc;
  if (json_mode) *json_mode = r.gp.json_mode ? 1 + (r.gp.schema != NULL) : 0;
  ig_server_req_free(&r);
  return 0;
}
static int run(ig_api api, const char *body, char *msg, size_t n) { return run_jm(api, body, msg, n, NULL); }

#define EXPECT(api, body, status, message)                                                                      \
  do {                                                                                                         \
    char m_[512] = "";                                                                                         \
    int st_ = run(api, body, m_, sizeof m_);                                                                   \
    CHECK_MSG(st_ == (status), "%s -> %d (%s)", body, st_, m_);                                                \
    if (status) CHECK_MSG(strcmp(m_, message) == 0, "%s -> \"%s\"", body, m_);                                \
  } while (0)

static void test_tgi_rules(void) {
  const ig_api G = IG_API_GENERATE, S = IG_API_GENERATE_STREAM;
  EXPECT(G, "{\"inputs\":\"hi\"}", 0, "");
  EXPECT(G, "{}", 422, "Failed to deserialize the JSON body into the target type: missing field `inputs`");
  EXPECT(G, "{\"inputs\":5}", 422,
         "Failed to deserialize the JSON body into the target type: inputs: invalid type: integer `5`, expected a string");
  EXPECT(G, "[1]", 422, "Failed to deserialize the JSON body into the target type: invalid type: sequence, expected a map");
  EXPECT(G, "{\"inputs\":\"\"}", 422, "`inputs` cannot be empty");
  EXPECT(G, "{\"inputs\":\"a\",\"parameters\":{\"temperature\":0}}", 422, "`temperature` must be strictly positive");
  EXPECT(G, "{\"inputs\":\"a\",\"parameters\":{\"temperature\":-1}}", 422, "`temperature` must be strictly positive");
  EXPECT(G, "{\"inputs\":\"a\",\"parameters\":{\"temperature\":\"hot\"}}", 422,
         "Failed to deserialize the JSON body into the target type: parameters.temperature: invalid type: string "
         "\"hot\", expected f32");
  EXPECT(G, "{\"inputs\":\"a\",\"parameters\":{\"repetition_penalty\":0}}", 422,
         "`repetition_penalty` must be strictly positive");
  EXPECT(G, "{\"inputs\":\"a\",\"parameters\":{\"frequency_penalty\":2.5}}", 422,
         "`frequency_penalty` must be >= -2.0 and <= 2.0");
  EXPECT(G, "{\"inputs\":\"a\",\"parameters\":{\"top_p\":1.0}}", 422, "`top_p` must be > 0.0 and < 1.0");
  EXPECT(G, "{\"inputs\":\"a\",\"parameters\":{\"top_p\":0}}", 422, "`top_p` must be > 0.0 and < 1.0");
  EXPECT(G, "{\"inputs\":\"a\",\"parameters\":{\"typical_p\":1.5}}", 422, "`typical_p` must be > 0.0 and < 1.0");
  EXPECT(G, "{\"inputs\":\"a\",\"parameters\":{\"top_k\":0}}", 422, "`top_k` must be strictly positive");
  EXPECT(G, "{\"inputs\":\"a\",\"parameters\":{\"top_k\":-3}}", 422, "`top_k` must be strictly positive");
  EXPECT(G, "{\"inputs\":\"a\",\"parameters\":{\"top_k\":1.5}}", 422,
         "Failed to deserialize the JSON body into the target type: parameters.top_k: invalid type: floating point "
         "`1.5`, expected i32");
  EXPECT(G, "{\"inputs\":\"a\",\"parameters\":{\"max_new_tokens\":0}}", 422, "`max_new_tokens` must be strictly positive");
  EXPECT(G, "{\"inputs\":\"a\",\"parameters\":{\"max_new_tokens\":-1}}", 422,
         "Failed to deserialize the JSON body into the target type: parameters.max_new_tokens: invalid value: integer "
         "`-1`, expected u32");
  EXPECT(G, "{\"inputs\":\"a\",\"parameters\":{\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}}", 422,
         "`stop` supports up to 4 stop sequences. Given: 5");
  EXPECT(G, "{\"inputs\":\"a\",\"parameters\":{\"stop\":\"x\"}}", 422,
         "Failed to deserialize the JSON body into the target type: parameters.stop: invalid type: string \"x\", "
         "expected a sequence");
  EXPECT(G, "{\"inputs\":\"a\",\"parameters\":{\"best_of\":3}}", 422, "`best_of` must be > 0 and <= 2. Given: 3");
  EXPECT(G, "{\"inputs\":\"a\",\"parameters\":{\"best_of\":0}}", 422, "`best_of` must be > 0 and <= 2. Given: 0");
  EXPECT(G, "{\"inputs\":\"a\",\"parameters\":{\"best_of\":2}}", 422, "you must use sampling when `best_of` is > 1");
  EXPECT(G, "{\"inputs\":\"a\",\"parameters\":{\"best_of\":2,\"do_sample\":true,\"seed\":3}}", 422,
         "`seed` must not be set when `best_of` > 1");
  EXPECT(G, "{\"inputs\":\"a\",\"parameters\":{\"best_of\":2,\"do_sample\":true}}", 0, "");
  EXPECT(S, "{\"inputs\":\"a\",\"parameters\":{\"best_of\":2,\"do_sample\":true}}", 422,
         "`best_of` != 1 is not supported when streaming tokens");
  EXPECT(S, "{\"inputs\":\"a\",\"parameters\":{\"decoder_input_details\":true}}", 422,
         "`decoder_input_details` == true is not supported when streaming tokens");
  EXPECT(G, "{\"inputs\":\"a\",\"parameters\":{\"top_n_tokens\":6}}", 422, "`top_n_tokens` must be >= 0 and <= 5. Given: 6");
  EXPECT(G, "{\"inputs\":\"a\",\"parameters\":{\"truncate\":0}}", 422,
         "`truncate` must be strictly positive and less than 100. Given: 0");
  EXPECT(G, "{\"inputs\":\"a\",\"parameters\":{\"truncate\":101}}", 422,
         "`truncate` must be strictly positive and less than 100. Given: 101");
  EXPECT(G, "{\"inputs\":\"a\",\"parameters\":{\"details\":null}}", 422,
         "Failed to deserialize the JSON body into the target type: parameters.details: invalid type: null, expected a "
         "boolean");
  EXPECT(G, "{\"inputs\":\"a\",\"parameters\":{\"seed\":null,\"temperature\":null,\"top_k\":null}}", 0, "");
  EXPECT(G, "{\"inputs\":\"a\",\"parameters\":5}", 422,
         "Failed to deserialize the JSON body into the target type: parameters: invalid type: integer `5`, expected "
         "struct GenerateParameters");
}

static void test_tgi_values(void) {
  json_t *j = json_loads("{\"inputs\":\"hello\",\"parameters\":{\"max_new_tokens\":7,\"temperature\":0.5,\"top_k\":4,"
                         "\"seed\":42,\"stop\":[\"x\"],\"details\":true,\"decoder_input_details\":true,"
                         "\"return_full_text\":true,\"top_n_tokens\":2,\"watermark\":true,\"ignore_eos\":true}}",
                         0, NULL);
  ig_server_req r;
  const char *et;
  char m[256];
  CHECK_EQ_INT(ig_server_req_parse(IG_API_GENERATE, j, &lim, &r, &et, m, sizeof m), 0);
  CHECK_EQ_INT(r.gp.max_new_tokens, 7);
  CHECK(r.gp.do_sample); /* a temperature turns sampling on, as TGI's warpers do */
  CHECK_NEAR(r.gp.temperature, 0.5, 1e-6);
  CHECK_EQ_INT(r.gp.top_k, 4);
  CHECK_EQ_INT(r.gp.seed, 42);
  CHECK(r.seed_set);
  CHECK_EQ_INT(r.gp.n_stop, 1);
  CHECK_EQ_STR(r.gp.stop[0], "x");
  CHECK(r.details && r.decoder_input_details && r.return_full_text && r.gp.watermark && r.gp.ignore_eos);
  CHECK(r.gp.prefill_logprobs);
  CHECK_EQ_INT(r.gp.top_n_tokens, 2);
  CHECK_EQ_STR(r.prompts[0], "hello");
  CHECK_EQ_INT(ig_server_req_check_lengths(&r, 10, &lim, m, sizeof m), 0);
  ig_server_req_free(&r);
  json_decref(j);

  j = json_loads("{\"inputs\":\"hello\"}", 0, NULL);
  CHECK_EQ_INT(ig_server_req_parse(IG_API_GENERATE, j, &lim, &r, &et, m, sizeof m), 0);
  CHECK(!r.gp.do_sample);
  CHECK(!r.details);
  CHECK_EQ_INT(ig_server_req_check_lengths(&r, 10, &lim, m, sizeof m), 0);
  CHECK_EQ_INT(r.gp.max_new_tokens, 190); /* max_total_tokens - input */
  CHECK_EQ_INT(ig_server_req_check_lengths(&r, 101, &lim, m, sizeof m), 422);
  CHECK_EQ_STR(m, "`inputs` must have less than 100 tokens. Given: 101");
  r.max_new_tokens_set = 1;
  r.gp.max_new_tokens = 150;
  CHECK_EQ_INT(ig_server_req_check_lengths(&r, 60, &lim, m, sizeof m), 422);
  CHECK_EQ_STR(m, "`inputs` tokens + `max_new_tokens` must be <= 200. Given: 60 `inputs` tokens and 150 `max_new_tokens`");
  ig_server_req_free(&r);
  json_decref(j);
}

static void test_openai(void) {
  const ig_api C = IG_API_CHAT, P = IG_API_COMPLETIONS;
  EXPECT(C, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", 0, "");
  EXPECT(C, "{}", 422, "Failed to deserialize the JSON body into the target type: missing field `messages`");
  EXPECT(C, "{\"messages\":{}}", 422,
         "Failed to deserialize the JSON body into the target type: messages: invalid type: map, expected a sequence");
  EXPECT(C, "{\"messages\":[{\"content\":\"x\"}]}", 422,
         "Failed to deserialize the JSON body into the target type: messages[0]: missing field `role`");
  /* OpenAI's n: choices per prompt, at most 64 sequences in all */
  EXPECT(C, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"n\":2}", 0, "");
  EXPECT(C, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"n\":0}", 422, "`n` must be between 1 and 64. Given: 0");
  EXPECT(C, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"n\":65}", 422, "`n` must be between 1 and 64. Given: 65");
  EXPECT(P, "{\"prompt\":[\"a\",\"b\",\"c\"],\"n\":22}", 422,
         "`n` times the number of prompts must be at most 64. Given: 22 x 3");
  EXPECT(P, "{\"prompt\":[\"a\",\"b\",\"c\"],\"n\":21}", 0, "");
  EXPECT(C, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":0}", 422,
         "`max_new_tokens` must be strictly positive");
  EXPECT(C, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"top_logprobs\":6,\"logprobs\":true}", 422,
         "`top_n_tokens` must be >= 0 and <= 5. Given: 6");
  EXPECT(C, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"presence_penalty\":3}", 422,
         "`presence_penalty` must be >= -2.0 and <= 2.0");
  EXPECT(C, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":\"x\"}}]}]}",
         422, "image_url modality is not supported");
  EXPECT(P, "{\"prompt\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}", 422,
         "Number of prompts exceeds the maximum allowed batch size of 4");
  EXPECT(P, "{\"prompt\":\"a\",\"suffix\":\"b\"}", 422,
         "Suffix is not supported and can be achieved by preprocessing the prompt.");
  EXPECT(P, "{\"prompt\":\"a\",\"stop\":\"x\",\"max_tokens\":3}", 0, "");

  json_t *j = json_loads("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},"
                         "{\"type\":\"text\",\"text\":\"b\"}]}],\"temperature\":0,\"max_completion_tokens\":5,"
                         "\"stream\":true,\"stream_options\":{\"include_usage\":true},\"logprobs\":true,"
                         "\"top_logprobs\":2,\"model\":\"tgi\"}",
                         0, NULL);
  ig_server_req r;
  const char *et;
  char m[256];
  CHECK_EQ_INT(ig_server_req_parse(C, j, &lim, &r, &et, m, sizeof m), 0);
  CHECK(!r.gp.do_sample);
  CHECK_EQ_INT(r.gp.max_new_tokens, 5);
  CHECK(r.stream && r.include_usage && r.logprobs);
  CHECK_EQ_INT(r.gp.top_n_tokens, 2);
  CHECK_EQ_STR(r.model, "tgi");
  CHECK(!r.add_special);
  CHECK_EQ_STR(json_string_value(json_object_get(json_array_get(r.messages, 0), "content")), "ab");
  ig_server_req_free(&r);
  json_decref(j);

  j = json_loads("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", 0, NULL);
  CHECK_EQ_INT(ig_server_req_parse(C, j, &lim, &r, &et, m, sizeof m), 0);
  CHECK(r.gp.do_sample); /* TGI: greedy only with temperature 0 */
  ig_server_req_free(&r);
  json_decref(j);
}

static json_t *parse(ig_str *o) {
  json_error_t je;
  json_t *j = json_loadb(o->p, o->len, 0, &je);
  CHECK_MSG(j != NULL, "invalid JSON: %.*s (%s)", (int)o->len, o->p, je.text);
  return j;
}

static void test_render(void) {
  ig_server_req r;
  memset(&r, 0, sizeof r);
  r.details = 1;
  r.decoder_input_details = 1;
  r.return_full_text = 1;
  r.gp.top_n_tokens = 1;
  ig_seq_out s[2];
  memset(s, 0, sizeof s);
  int32_t pids[2] = {1, 5};
  float plp[2] = {NAN, -1.5f};
  char *ptext[2] = {"<s>", "h\"i"};
  for (int q = 0; q < 2; q++) {
    s[q].n_prompt = 2;
    s[q].prompt_ids = pids;
    s[q].prefill_lp = plp;
    s[q].prefill_text = ptext;
    s[q].input_text = "In:";
    s[q].input_len = 3;
    s[q].sampled = 1;
    s[q].seed = 7 + q;
    s[q].finish = q ? IG_FINISH_EOS : IG_FINISH_LENGTH;
    for (int i = 0; i < 2; i++) {
      ig_out_token t;
      memset(&t, 0, sizeof t);
      t.id = 10 + i;
      t.logprob = q ? -0.1f : -2.0f;
      t.text = strdup(i ? "\xc3\xa9\n" : "x");
      t.n_top = 1;
      t.top = calloc(1, sizeof *t.top);
      t.top[0].id = 3;
      t.top[0].logprob = -0.01f;
      t.top[0].text = strdup("t");
      CHECK_EQ_INT(ig_seq_out_push(&s[q], &t), 0);
    }
  }
  ig_str o;
  ig_str_init(&o);
  ig_render_tgi_generate(&o, &r, s, 2, 1);
  json_t *j = parse(&o);
  CHECK_EQ_STR(json_string_value(json_object_get(j, "generated_text")), "In:x\xc3\xa9\n");
  json_t *d = json_object_get(j, "details");
  CHECK_EQ_STR(json_string_value(json_object_get(d, "finish_reason")), "eos_token");
  CHECK_EQ_INT(json_integer_value(json_object_get(d, "generated_tokens")), 2);
  CHECK_EQ_INT(json_integer_value(json_object_get(d, "seed")), 8);
  CHECK(json_is_null(json_object_get(json_array_get(json_object_get(d, "prefill"), 0), "logprob")));
  CHECK_EQ_STR(json_string_value(json_object_get(json_array_get(json_object_get(d, "prefill"), 1), "text")), "h\"i");
  CHECK_EQ_INT(json_array_size(json_object_get(d, "tokens")), 2);
  CHECK_EQ_INT(json_array_size(json_object_get(d, "top_tokens")), 2);
  CHECK_EQ_INT(json_array_size(json_object_get(d, "best_of_sequences")), 1);
  CHECK_EQ_STR(json_string_value(json_object_get(json_array_get(json_object_get(d, "best_of_sequences"), 0),
                                                 "finish_reason")),
               "length");
  json_decref(j);

  ig_str_clear(&o);
  ig_render_tgi_stream(&o, 2, &s[0].tokens[1], 1, 0, &s[0], 1, 2);
  j = parse(&o);
  CHECK_EQ_INT(json_integer_value(json_object_get(j, "index")), 2);
  CHECK_EQ_STR(json_string_value(json_object_get(json_object_get(j, "token"), "text")), "\xc3\xa9\n");
  CHECK_EQ_STR(json_string_value(json_object_get(j, "generated_text")), "x\xc3\xa9\n");
  CHECK_EQ_INT(json_integer_value(json_object_get(json_object_get(j, "details"), "input_length")), 2);
  json_decref(j);

  ig_oai_meta m = {"chatcmpl-1", 123, "model", "fp", 0};
  r.logprobs = 1;
  r.top_logprobs = 1;
  r.include_usage = 1;
  ig_str_clear(&o);
  ig_render_chat_chunk(&o, &m, &r, &s[0].tokens[0], "x", IG_FINISH_NONE);
  j = parse(&o);
  CHECK_EQ_STR(json_string_value(json_object_get(j, "object")), "chat.completion.chunk");
  json_t *c0 = json_array_get(json_object_get(j, "choices"), 0);
  CHECK_EQ_STR(json_string_value(json_object_get(json_object_get(c0, "delta"), "content")), "x");
  CHECK(json_is_null(json_object_get(c0, "finish_reason")));
  CHECK(json_is_null(json_object_get(j, "usage")));
  CHECK_EQ_INT(json_array_size(json_object_get(json_object_get(c0, "logprobs"), "content")), 1);
  json_decref(j);

  ig_str_clear(&o);
  ig_render_chat_completion(&o, &m, &r, &s[1], 1);
  j = parse(&o);
  c0 = json_array_get(json_object_get(j, "choices"), 0);
  CHECK_EQ_STR(json_string_value(json_object_get(c0, "finish_reason")), "stop");
  CHECK_EQ_STR(json_string_value(json_object_get(json_object_get(c0, "message"), "content")), "x\xc3\xa9\n");
  CHECK_EQ_INT(json_integer_value(json_object_get(json_object_get(j, "usage"), "total_tokens")), 4);
  json_decref(j);

  ig_str_clear(&o);
  r.logprobs = 0;
  ig_render_completion(&o, &m, &r, s, 2);
  j = parse(&o);
  CHECK_EQ_STR(json_string_value(json_object_get(j, "object")), "text_completion");
  CHECK_EQ_INT(json_integer_value(json_object_get(json_array_get(json_object_get(j, "choices"), 1), "index")), 1);
  CHECK_EQ_INT(json_integer_value(json_object_get(json_object_get(j, "usage"), "completion_tokens")), 4);
  json_decref(j);

  /* OpenAI's n: a choice per sequence, the prompt counted once; chunks carry their choice's index */
  ig_str_clear(&o);
  ig_render_chat_completion(&o, &m, &r, s, 2);
  j = parse(&o);
  CHECK_EQ_INT(json_array_size(json_object_get(j, "choices")), 2);
  CHECK_EQ_INT(json_integer_value(json_object_get(json_array_get(json_object_get(j, "choices"), 1), "index")), 1);
  CHECK_EQ_INT(json_integer_value(json_object_get(json_object_get(j, "usage"), "prompt_tokens")), s[0].n_prompt);
  CHECK_EQ_INT(json_integer_value(json_object_get(json_object_get(j, "usage"), "completion_tokens")),
               s[0].n_tokens + s[1].n_tokens);
  json_decref(j);
  ig_str_clear(&o);
  ig_oai_meta m1 = m;
  m1.choice = 1;
  ig_render_chat_chunk(&o, &m1, &r, &s[0].tokens[0], "x", IG_FINISH_NONE);
  j = parse(&o);
  CHECK_EQ_INT(json_integer_value(json_object_get(json_array_get(json_object_get(j, "choices"), 0), "index")), 1);
  json_decref(j);
  ig_str_clear(&o);
  r.n_choices = 2; /* both sequences are choices of one prompt */
  ig_render_completion(&o, &m, &r, s, 2);
  j = parse(&o);
  CHECK_EQ_INT(json_integer_value(json_object_get(json_object_get(j, "usage"), "prompt_tokens")), s[0].n_prompt);
  json_decref(j);
  r.n_choices = 1;

  ig_str_clear(&o);
  ig_render_error_openai(&o, 422, "bad \"x\"", "validation");
  j = parse(&o);
  CHECK_EQ_STR(json_string_value(json_object_get(json_object_get(j, "error"), "message")), "bad \"x\"");
  CHECK_EQ_STR(json_string_value(json_object_get(json_object_get(j, "error"), "type")), "invalid_request_error");
  json_decref(j);

  for (int q = 0; q < 2; q++) {
    s[q].prefill_text = NULL;
    ig_seq_out_free(&s[q]);
  }
  ig_str_free(&o);
}

static void test_metrics(void) {
  ig_metrics m;
  ig_metrics_init(&m, 100, 200);
  m.request_count = 3;
  m.request_failure[IG_ERR_VALIDATION] = 1;
  ig_metrics_observe(&m.duration, 0.01);
  ig_metrics_observe(&m.input_length, 5);
  ig_str o;
  ig_str_init(&o);
  ig_server_stats st = {.queue_size = 2, .kv_blocks_total = 9, .grammar_masks = 40, .grammar_walks = 7,
                        .grammar_cache_entries = 5, .spec_draft_tokens = 31, .spec_accepted_tokens = 12};
  ig_metrics_render(&m, &st, 1, 0, &o);
  CHECK(strstr(o.p, "# TYPE tgi_request_count counter\ntgi_request_count 3\n") != NULL);
  CHECK(strstr(o.p, "tgi_request_failure{err=\"validation\"} 1\n") != NULL);
  CHECK(strstr(o.p, "# TYPE tgi_request_duration histogram\n") != NULL);
  CHECK(strstr(o.p, "tgi_request_duration_bucket{le=\"+Inf\"} 1\ntgi_request_duration_sum 0.01") != NULL);
  CHECK(strstr(o.p, "tgi_request_input_length_bucket{le=\"5\"} 1\n") != NULL);
  CHECK(strstr(o.p, "tgi_request_input_length_bucket{le=\"4\"} 0\n") != NULL);
  CHECK(strstr(o.p, "tgi_queue_size 2\n") != NULL);
  CHECK(strstr(o.p, "ignis_kv_blocks_total 9\n") != NULL);
  CHECK(strstr(o.p, "# TYPE ignis_grammar_masks_total counter\nignis_grammar_masks_total 40\n") != NULL);
  CHECK(strstr(o.p, "ignis_grammar_mask_walks_total 7\n") != NULL);
  CHECK(strstr(o.p, "# TYPE ignis_grammar_mask_cache_entries gauge\nignis_grammar_mask_cache_entries 5\n") != NULL);
  CHECK(strstr(o.p, "# TYPE ignis_speculative_draft_tokens_total counter\nignis_speculative_draft_tokens_total 31\n"));
  CHECK(strstr(o.p, "# TYPE ignis_speculative_accepted_tokens_total counter\nignis_speculative_accepted_tokens_total 12\n"));
  ig_str_free(&o);
}

/* JSON mode and schemas: TGI's grammar and OpenAI's response_format. 0: none, 1: JSON mode (any object), 2: a
 * compiled schema, -422: refused (the message in *m when given). */
static int json_mode_of_m(ig_api api, const char *body, char *m, size_t n) {
  int jm = 0, rc = run_jm(api, body, m, n, &jm);
  return rc < 0 ? rc : rc ? -rc : jm; /* -1: the test's own JSON is bad */
}
static int json_mode_of(ig_api api, const char *body) {
  char m[512];
  return json_mode_of_m(api, body, m, sizeof m);
}
/* vLLM's guided decoding fields on the OpenAI routes: each body's fields beside a chat message, and what it gives (0
 * none, 1 JSON mode, 2 a schema or pattern) or its 422 message. */
static int guided_whole(const char *body, const char *text) { /* 1: the body's constraint takes the whole text */
  ig_server_req r;
  char m[256];
  if (parse_keep(IG_API_CHAT, body, m, sizeof m, &r)) return -1;
  int whole = -1;
  if (r.gp.schema) {
    ig_jsm st;
    ig_jsm_init(&st, r.gp.schema);
    whole = ig_jsm_feed(&st, r.gp.schema, (const unsigned char *)text, strlen(text)) == 0 &&
            ig_jsm_complete(&st, r.gp.schema);
  }
  ig_server_req_free(&r);
  return whole;
}
static void test_guided(void) {
  static const struct {
    const char *fields;
    int mode;
    const char *msg;
  } cases[] = {
      {"\"guided_regex\":\"[a-z]+\"", 2, NULL},
      {"\"guided_choice\":[\"yes.\",\"no (maybe)\",\"a|b*\",\"caf\u00e9\"]", 2, NULL},
      {"\"guided_json\":{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"}}}", 2, NULL},
      {"\"guided_json\":{}", 1, NULL},
      {"\"guided_json\":null,\"guided_regex\":null", 0, NULL},
      {"\"guided_regex\":\"a\",\"response_format\":{\"type\":\"json_object\"}", 422,
       "guided_json, guided_regex, guided_choice and response_format: give one of them"},
      {"\"guided_regex\":\"a\",\"guided_choice\":[\"a\"]", 422,
       "guided_json, guided_regex, guided_choice and response_format: give one of them"},
      {"\"guided_choice\":[]", 422, "guided_choice: expected a list of 1 to 1024 strings"},
      {"\"guided_choice\":[\"a\",1]", 422, "guided_choice: expected a list of 1 to 1024 strings"},
      {"\"guided_regex\":7", 422, "guided_regex: expected a string (the pattern)"},
      {"\"guided_json\":5", 422, NULL},
      {"\"guided_regex\":\"(?i)a\"", 422, NULL},
      {"\"guided_grammar\":\"root ::= x\"", 422,
       "guided_grammar: grammars other than JSON schemas and regular expressions are not supported"},
  };
  char b[1024], m[512];
  for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
    snprintf(b, sizeof b, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],%s}", cases[k].fields);
    int got = json_mode_of_m(IG_API_CHAT, b, m, sizeof m);
    CHECK_MSG(got == (cases[k].mode == 422 ? -422 : cases[k].mode), "%s -> %d (%s)", cases[k].fields, got, m);
    if (cases[k].mode == 422)
      CHECK_MSG(cases[k].msg ? !strcmp(m, cases[k].msg) : !strncmp(m, "guided_", 7), "%s -> %s", cases[k].fields, m);
  }
  CHECK_EQ_INT(json_mode_of(IG_API_COMPLETIONS, "{\"prompt\":\"a\",\"guided_choice\":[\"x\",\"y\"]}"), 2);
  /* the choices are literals: punctuation is not regex syntax */
  const char *ch = "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"guided_choice\":[\"no (maybe)\",\"a|b*\",\"x.\"]}";
  CHECK_EQ_INT(guided_whole(ch, "no (maybe)"), 1);
  CHECK_EQ_INT(guided_whole(ch, "a|b*"), 1);
  CHECK_EQ_INT(guided_whole(ch, "x."), 1);
  CHECK_EQ_INT(guided_whole(ch, "a"), 0);
  CHECK_EQ_INT(guided_whole(ch, "no maybe"), 0);
  CHECK_EQ_INT(guided_whole(ch, "xy"), 0);
}

#define GRAMMAR(v) "{\"inputs\":\"a\",\"parameters\":{\"grammar\":" v "}}"
/* The loop thread's parse only reads a grammar; the compile (up to ~0.3 s) is the validation worker's: after the
 * parse a request holds the schema or pattern to compile and no constraint yet, and a pattern the compiler refuses
 * passes the parse and fails the compile with its reason. */
static void test_grammar_deferred(void) {
  static const struct {
    const char *body;
    int regex, compile_rc;
    const char *msg;
  } cases[] = {
      {GRAMMAR("{\"type\":\"regex\",\"value\":\"[a-z]{1,3}\"}"), 1, 0, ""},
      {GRAMMAR("{\"type\":\"regex\",\"value\":\"(?=a)b\"}"), 1, 422, "grammar: regex: "},
      {GRAMMAR("{\"type\":\"json\",\"value\":{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"}}}}"), 0, 0, ""},
      {GRAMMAR("{\"type\":\"json\",\"value\":\"{\\\"type\\\":\\\"string\\\",\\\"pattern\\\":\\\"(a\\\"}\"}"), 0, 422,
       "grammar: schema: "},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    json_t *j = json_loads(cases[i].body, 0, NULL);
    CHECK_MSG(j != NULL, "case %zu: bad test JSON", i);
    if (!j) continue;
    ig_server_req r;
    const char *etype;
    char m[512] = "";
    CHECK_EQ_INT(ig_server_req_parse(IG_API_GENERATE, j, &lim, &r, &etype, m, sizeof m), 0);
    json_decref(j);
    CHECK_MSG(r.gp.json_mode && r.gp.schema == NULL, "case %zu: compiled by the parse", i);
    CHECK_MSG(cases[i].regex ? r.grammar_regex != NULL : r.grammar_schema != NULL, "case %zu: nothing to compile", i);
    CHECK_EQ_INT(ig_server_req_compile_grammar(&r, m, sizeof m), cases[i].compile_rc);
    if (cases[i].compile_rc) CHECK_MSG(strncmp(m, cases[i].msg, strlen(cases[i].msg)) == 0, "case %zu: %s", i, m);
    else CHECK_MSG(r.gp.schema != NULL, "case %zu: no constraint after the compile", i);
    CHECK(r.grammar_regex == NULL && r.grammar_schema == NULL);
    CHECK_EQ_INT(ig_server_req_compile_grammar(&r, m, sizeof m), 0); /* nothing left: a no-op */
    ig_server_req_free(&r);
  }
}

static void test_grammar(void) {
  const ig_api G = IG_API_GENERATE, C = IG_API_CHAT;
  char m[512];
  CHECK_EQ_INT(json_mode_of(G, "{\"inputs\":\"a\"}"), 0);
  CHECK_EQ_INT(json_mode_of(G, GRAMMAR("null")), 0);
  CHECK_EQ_INT(json_mode_of(G, GRAMMAR("{\"type\":\"json\",\"value\":{}}")), 1); /* {}: JSON mode, any object */
  CHECK_EQ_INT(json_mode_of(G, GRAMMAR("{\"type\":\"json\",\"value\":{\"type\":\"object\",\"title\":\"T\"}}")), 2);
  CHECK_EQ_INT(json_mode_of(G, GRAMMAR("{\"type\":\"json\",\"value\":{\"type\":\"object\",\"properties\":{\"a\":"
                                       "{\"type\":\"integer\"}},\"required\":[\"a\"]}}")), 2);
  CHECK_EQ_INT(json_mode_of(G, GRAMMAR("{\"type\":\"json\",\"value\":{\"type\":\"array\",\"items\":{\"enum\":[1,\"b\"]}}}")), 2);
  /* what the recognizer cannot follow is refused, and the message names it */
  CHECK_EQ_INT(json_mode_of_m(G, GRAMMAR("{\"type\":\"json\",\"value\":{\"type\":\"integer\",\"minimum\":3}}"), m, sizeof m), -422);
  CHECK_MSG(strncmp(m, "grammar: schema: ", 17) == 0 && strstr(m, "minimum"), "%s", m);
  CHECK_EQ_INT(json_mode_of(G, GRAMMAR("{\"type\":\"json\",\"value\":{\"properties\":{\"s\":{\"type\":\"string\","
                                       "\"pattern\":\"^a\"}}}}")), 2); /* a pattern is followed */
  CHECK_EQ_INT(json_mode_of_m(G, GRAMMAR("{\"type\":\"json\",\"value\":{\"properties\":{\"s\":{\"type\":\"string\","
                                         "\"format\":\"date\"}}}}"), m, sizeof m), -422);
  CHECK_MSG(strstr(m, "format") != NULL, "%s", m);
  CHECK_EQ_INT(json_mode_of_m(G, GRAMMAR("{\"type\":\"json\",\"value\":{\"type\":\"colour\"}}"), m, sizeof m), -422);
  CHECK_MSG(strstr(m, "'type' must be one of") != NULL, "%s", m);
  /* regex grammars: the pattern compiled into the request's constraint, or 422 with the reason */
  CHECK_EQ_INT(json_mode_of(G, GRAMMAR("{\"type\":\"regex\",\"value\":\"a+\"}")), 2);
  CHECK_EQ_INT(json_mode_of(G, GRAMMAR("{\"type\":\"regex\",\"value\":\"(yes|no), [0-9]{1,3} \\\\w+\\\\.\"}")), 2);
  EXPECT(G, GRAMMAR("{\"type\":\"regex\",\"value\":5}"), 422, "grammar: regex: `value` must be a string (the pattern)");
  EXPECT(G, GRAMMAR("{\"type\":\"regex\"}"), 422, "grammar: regex: `value` must be a string (the pattern)");
  CHECK_EQ_INT(json_mode_of_m(G, GRAMMAR("{\"type\":\"regex\",\"value\":\"(a)\\\\1\"}"), m, sizeof m), -422);
  CHECK_MSG(strncmp(m, "grammar: regex: ", 16) == 0 && strstr(m, "backreference"), "%s", m);
  CHECK_EQ_INT(json_mode_of_m(G, GRAMMAR("{\"type\":\"regex\",\"value\":\"(a\"}"), m, sizeof m), -422);
  CHECK_MSG(strncmp(m, "grammar: regex: ", 16) == 0, "%s", m);
  EXPECT(G, GRAMMAR("{\"type\":\"yaml\"}"), 422, "grammar: unknown type 'yaml'");
  EXPECT(G, GRAMMAR("\"json\""), 422, "grammar: expected an object with a \"type\"");
  EXPECT(G, GRAMMAR("{\"type\":\"json\"}"), 422, "grammar: missing field `value`");
  const char *msgs = "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]";
  char b[1024];
  snprintf(b, sizeof b, "{%s}", msgs);
  CHECK_EQ_INT(json_mode_of(C, b), 0);
  snprintf(b, sizeof b, "{%s,\"response_format\":{\"type\":\"text\"}}", msgs);
  CHECK_EQ_INT(json_mode_of(C, b), 0);
  snprintf(b, sizeof b, "{%s,\"response_format\":{\"type\":\"json_object\"}}", msgs);
  CHECK_EQ_INT(json_mode_of(C, b), 1);
  snprintf(b, sizeof b, "{%s,\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"x\"}}}", msgs);
  CHECK_EQ_INT(json_mode_of(C, b), 1);
  snprintf(b, sizeof b, "{%s,\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"x\",\"strict\":true,"
           "\"schema\":{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\"}},\"required\":[\"a\"],"
           "\"additionalProperties\":false}}}}", msgs);
  CHECK_EQ_INT(json_mode_of(C, b), 2);
  snprintf(b, sizeof b, "{%s,\"response_format\":{\"type\":\"json\",\"value\":{}}}", msgs);
  CHECK_EQ_INT(json_mode_of(C, b), 1);
  snprintf(b, sizeof b, "{%s,\"response_format\":{\"type\":\"json_schema\"}}", msgs);
  CHECK_EQ_INT(json_mode_of(C, b), -422);
  /* /v1/completions takes response_format too, rather than ignoring it */
  CHECK_EQ_INT(json_mode_of(IG_API_COMPLETIONS, "{\"prompt\":\"a\",\"response_format\":{\"type\":\"json_object\"}}"), 1);
  CHECK_EQ_INT(json_mode_of(IG_API_COMPLETIONS, "{\"prompt\":\"a\",\"response_format\":{\"type\":\"regex\"}}"), -422);
  /* TGI's chat takes a regex as response_format too */
  snprintf(b, sizeof b, "{%s,\"response_format\":{\"type\":\"regex\",\"value\":\"[a-z]+\"}}", msgs);
  CHECK_EQ_INT(json_mode_of(C, b), 2);
  CHECK_EQ_INT(json_mode_of(IG_API_COMPLETIONS, "{\"prompt\":\"a\"}"), 0);
  /* TGI's forms: json_schema's config under "value", and a schema given as a string of JSON */
  snprintf(b, sizeof b, "{%s,\"response_format\":{\"type\":\"json_schema\",\"value\":{\"name\":\"x\",\"schema\":{}}}}", msgs);
  CHECK_EQ_INT(json_mode_of(C, b), 1);
  CHECK_EQ_INT(json_mode_of(G, GRAMMAR("{\"type\":\"json\",\"value\":\"{\\\"type\\\":\\\"object\\\"}\"}")), 2);
  CHECK_EQ_INT(json_mode_of(G, GRAMMAR("{\"type\":\"json\",\"value\":\"{\\\"type\\\":\\\"object\\\",\\\"minimum\\\":1}\"}")), -422);
  EXPECT(G, GRAMMAR("{\"type\":\"json\",\"value\":\"{oops\"}"), 422, "grammar: value: not a JSON schema");
}

/* tools and tool_choice. Returns the tool mode (IG_TOOLS_*) + 10 when the output is constrained, or -status. */
static int tools_of(const char *tools_and_choice, char *m, size_t n, ig_server_req *keep) {
  char b[4096];
  snprintf(b, sizeof b, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]%s}", tools_and_choice);
  ig_server_req r;
  int rc = parse_keep(IG_API_CHAT, b, m, n, &r);
  if (rc) return rc < 0 ? rc : -rc; /* -1: the test's own JSON is bad */
  int out = r.tool_choice + 10 * (r.gp.json_mode && r.gp.schema);
  if (keep) *keep = r;
  else ig_server_req_free(&r);
  return out;
}
#define WEATHER "{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"d\",\"parameters\":" \
  "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"]}}}"
#define TIME "{\"type\":\"function\",\"function\":{\"name\":\"get-time\"}}"
static void test_tools(void) {
  char m[512];
  ig_server_req r;
  CHECK_EQ_INT(tools_of("", m, sizeof m, NULL), IG_TOOLS_NONE);
  CHECK_EQ_INT(tools_of(",\"tools\":[]", m, sizeof m, NULL), IG_TOOLS_NONE);
  CHECK_EQ_INT(tools_of(",\"tools\":null,\"tool_choice\":\"none\"", m, sizeof m, NULL), IG_TOOLS_NONE);
  /* auto by default: the tools reach the template with the default tool prompt; the output is not constrained */
  CHECK_EQ_INT(tools_of(",\"tools\":[" WEATHER "," TIME "]", m, sizeof m, &r), IG_TOOLS_AUTO);
  CHECK(json_array_size(r.tools) == 2 && r.tool_prompt && strstr(r.tool_prompt, "\"arguments\""));
  ig_server_req_free(&r);
  CHECK_EQ_INT(tools_of(",\"tools\":[" WEATHER "],\"tool_choice\":\"none\",\"tool_prompt\":\"P\"", m, sizeof m, &r),
               IG_TOOLS_NONE);
  CHECK(r.tools && r.tool_prompt && !strcmp(r.tool_prompt, "P"));
  ig_server_req_free(&r);
  /* required / a named function: constrained by the calls' schema */
  CHECK_EQ_INT(tools_of(",\"tools\":[" WEATHER "," TIME "],\"tool_choice\":\"required\"", m, sizeof m, NULL),
               10 + IG_TOOLS_REQUIRED);
  CHECK_EQ_INT(tools_of(",\"tools\":[" WEATHER "," TIME "],\"tool_choice\":{\"type\":\"function\",\"function\":"
                        "{\"name\":\"get-time\"}}", m, sizeof m, NULL), 10 + IG_TOOLS_REQUIRED);
  /* the arguments' key follows the model's template: "parameters" (Llama 3.1) when the server says so */
  CHECK_EQ_INT(tools_of(",\"tools\":[" TIME "],\"tool_choice\":\"required\"", m, sizeof m, &r), 10 + IG_TOOLS_REQUIRED);
  static const char *call_args = "{\"name\":\"get-time\",\"arguments\":{}}";
  static const char *call_params = "{\"name\":\"get-time\",\"parameters\":{}}";
  ig_jsm st;
  ig_jsm_init(&st, r.gp.schema);
  CHECK(ig_jsm_feed(&st, r.gp.schema, (const unsigned char *)call_args, strlen(call_args)) == 0 &&
        ig_jsm_complete(&st, r.gp.schema));
  ig_jsm_init(&st, r.gp.schema);
  CHECK(ig_jsm_feed(&st, r.gp.schema, (const unsigned char *)call_params, strlen(call_params)) != 0);
  ig_server_req_free(&r);
  lim.tool_args_key = "parameters";
  CHECK_EQ_INT(tools_of(",\"tools\":[" TIME "],\"tool_choice\":\"required\"", m, sizeof m, &r), 10 + IG_TOOLS_REQUIRED);
  lim.tool_args_key = NULL;
  CHECK(r.tool_prompt && strstr(r.tool_prompt, "\"parameters\"") && !strstr(r.tool_prompt, "\"arguments\""));
  ig_jsm_init(&st, r.gp.schema);
  CHECK(ig_jsm_feed(&st, r.gp.schema, (const unsigned char *)call_params, strlen(call_params)) == 0 &&
        ig_jsm_complete(&st, r.gp.schema));
  ig_jsm_init(&st, r.gp.schema);
  CHECK(ig_jsm_feed(&st, r.gp.schema, (const unsigned char *)call_args, strlen(call_args)) != 0);
  ig_server_req_free(&r);
  /* $defs of two tools meet at the root of the calls' schema */
  CHECK_EQ_INT(tools_of(",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"a\",\"parameters\":{\"type\":"
                        "\"object\",\"properties\":{\"p\":{\"$ref\":\"#/$defs/P\"}},\"$defs\":{\"P\":{\"type\":\"integer\"}}}}},"
                        "{\"type\":\"function\",\"function\":{\"name\":\"b\",\"parameters\":{\"type\":\"object\",\"properties\":"
                        "{\"q\":{\"$ref\":\"#/$defs/Q\"}},\"$defs\":{\"Q\":{\"type\":\"string\"}}}}}],\"tool_choice\":\"required\"",
                        m, sizeof m, NULL), 10 + IG_TOOLS_REQUIRED);
  CHECK_EQ_INT(tools_of(",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"a\",\"parameters\":{\"$defs\":"
                        "{\"P\":{\"type\":\"integer\"}}}}},{\"type\":\"function\",\"function\":{\"name\":\"b\",\"parameters\":"
                        "{\"$defs\":{\"P\":{\"type\":\"string\"}}}}}],\"tool_choice\":\"required\"", m, sizeof m, NULL), -422);
  CHECK_MSG(strstr(m, "$defs.P: another tool defines it differently") != NULL, "%s", m);
  /* refusals */
  struct {
    const char *body, *msg;
  } bad[] = {
      {",\"tool_choice\":\"auto\"", "tool_choice: there are no tools to choose from"},
      {",\"tools\":{}", "tools: invalid type: map, expected a sequence"},
      {",\"tools\":[5]", "tools[0]: invalid type: integer `5`, expected struct Tool"},
      {",\"tools\":[{\"type\":\"code\",\"function\":{\"name\":\"a\"}}]", "tools[0].type: only \"function\" tools are supported"},
      {",\"tools\":[{\"type\":\"function\"}]", "tools[0]: missing field `function`"},
      {",\"tools\":[{\"type\":\"function\",\"function\":{}}]", "tools[0].function: missing field `name`"},
      {",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"a b\"}}]",
       "tools[0].function.name: 1 to 64 letters, digits, '_' or '-'"},
      {",\"tools\":[" TIME "," TIME "]", "tools[1].function.name: 'get-time' is also tools[0]'s"},
      {",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"a\",\"parameters\":[]}}]",
       "tools[0].function.parameters: invalid type: sequence, expected a JSON schema object"},
      {",\"tools\":[" TIME "],\"tool_choice\":\"sometimes\"",
       "tool_choice: expected \"none\", \"auto\", \"required\" or a function, got 'sometimes'"},
      {",\"tools\":[" TIME "],\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"nope\"}}",
       "tool_choice: no tool is named 'nope'"},
      {",\"tools\":[" TIME "],\"tool_choice\":{\"type\":\"function\"}",
       "tool_choice: expected a string or {\"type\": \"function\", \"function\": {\"name\": ...}}"},
      {",\"tools\":[" TIME "],\"tool_choice\":\"required\",\"response_format\":{\"type\":\"json_object\"}",
       "tool_choice: a required tool call cannot be combined with response_format"},
      {",\"tools\":[" TIME "],\"tool_prompt\":3", "tool_prompt: invalid type: integer `3`, expected a string"},
  };
  for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
    CHECK_EQ_INT(tools_of(bad[k].body, m, sizeof m, NULL), -422);
    const char *got = strncmp(m, DESER_PREFIX, strlen(DESER_PREFIX)) ? m : m + strlen(DESER_PREFIX);
    CHECK_MSG(strcmp(got, bad[k].msg) == 0, "%s -> %s", bad[k].body, m);
  }
  /* a tool whose parameters the recognizer cannot follow: fine for auto, refused when the call is required */
  const char *minimum = ",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"n\",\"parameters\":{\"type\":\"object\","
                        "\"properties\":{\"x\":{\"type\":\"integer\",\"minimum\":0}}}}}]";
  CHECK_EQ_INT(tools_of(minimum, m, sizeof m, NULL), IG_TOOLS_AUTO);
  char b[1024];
  snprintf(b, sizeof b, "%s,\"tool_choice\":\"required\"", minimum);
  CHECK_EQ_INT(tools_of(b, m, sizeof m, NULL), -422);
  CHECK_MSG(strncmp(m, "tools: schema: ", 15) == 0 && strstr(m, "minimum"), "%s", m);
  char many[8192] = ",\"tools\":[";
  for (int k = 0; k < 129; k++)
    snprintf(many + strlen(many), sizeof many - strlen(many), "%s{\"function\":{\"name\":\"f%d\"}}", k ? "," : "", k);
  strcat(many, "]");
  char big[9000];
  snprintf(big, sizeof big, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]%s}", many);
  EXPECT(IG_API_CHAT, big, 422, "tools: at most 128 tools. Given: 129");
  /* an assistant turn's tool call arguments (a string of JSON, as OpenAI clients send them) reach the template
   * as an object */
  EXPECT(IG_API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"tool_calls\":"
                      "[{\"id\":\"c\",\"type\":\"function\",\"function\":{\"name\":\"a\",\"arguments\":\"{\\\"x\\\":1}\"}}]},"
                      "{\"role\":\"tool\",\"tool_call_id\":\"c\",\"content\":\"2\"}]}", 0, "");
  json_t *j = json_loads("{\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"function\":{\"name\":\"a\","
                         "\"arguments\":\"{\\\"x\\\":1}\"}}]}]}", 0, NULL);
  const char *etype;
  CHECK_EQ_INT(ig_server_req_parse(IG_API_CHAT, j, &lim, &r, &etype, m, sizeof m), 0);
  json_t *args = json_object_get(json_object_get(json_array_get(json_object_get(json_array_get(r.messages, 0),
                                                                                 "tool_calls"), 0), "function"), "arguments");
  CHECK(json_is_object(args) && json_integer_value(json_object_get(args, "x")) == 1);
  ig_server_req_free(&r);
  json_decref(j);
}

/* Replies that are tool calls, and how they are rendered. */
static void test_tool_calls(void) {
  json_t *tools = json_loads("[" WEATHER "," TIME "]", 0, NULL);
  struct {
    const char *text;
    int n; /* calls, 0: not a call */
    const char *args0;
  } cases[] = {
      {"{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\"}}", 1, "{\"city\":\"Paris\"}"},
      {" \n{\"name\": \"get-time\", \"parameters\": {}}", 1, "{}"},
      {"[{\"name\":\"get-time\",\"arguments\":{}},{\"name\":\"get_weather\",\"arguments\":{\"city\":\"\\u00e9\"}}]", 2, "{}"},
      {"{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\"}} and more", 0, NULL},
      /* several without a list: apart by whitespace, ';' or ',' (a last one may follow) */
      {"{\"name\":\"get-time\",\"arguments\":{}}; {\"name\":\"get_weather\",\"arguments\":{\"city\":\"Oslo\"}}", 2, "{}"},
      {"{\"name\":\"get-time\",\"arguments\":{}}\n{\"name\":\"get-time\",\"parameters\":{}}\n", 2, "{}"},
      {"{\"name\":\"get-time\",\"arguments\":{}},{\"name\":\"get-time\",\"arguments\":{}};", 2, "{}"},
      {"{\"name\":\"get-time\",\"arguments\":{}};;{\"name\":\"get-time\",\"arguments\":{}}", 0, NULL},
      {"{\"name\":\"get-time\",\"arguments\":{}}; hello", 0, NULL},
      {"{\"name\":\"nope\",\"arguments\":{}}", 0, NULL},
      {"{\"name\":\"get-time\",\"arguments\":\"{}\"}", 0, NULL},
      {"{\"name\":\"get-time\",\"arguments\":{},\"extra\":1}", 0, NULL},
      {"{\"name\":\"get-time\"", 0, NULL},
      {"[]", 0, NULL},
      {"The weather is fine.", 0, NULL},
      {"", 0, NULL},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    json_t *c = ig_tool_calls_parse(cases[k].text, strlen(cases[k].text), tools);
    CHECK_MSG((int)json_array_size(c) == cases[k].n && (c != NULL) == (cases[k].n > 0), "%s", cases[k].text);
    if (c && cases[k].args0)
      CHECK_EQ_STR(json_string_value(json_object_get(json_array_get(c, 0), "arguments")), cases[k].args0);
    json_decref(c);
  }
  /* the reply: content null, tool_calls with ids and the arguments as a string, finish_reason "tool_calls" */
  ig_server_req r;
  memset(&r, 0, sizeof r);
  r.tools = tools;
  r.tool_choice = IG_TOOLS_AUTO;
  ig_seq_out s;
  memset(&s, 0, sizeof s);
  s.finish = IG_FINISH_EOS;
  ig_str_puts(&s.text, cases[0].text);
  ig_oai_meta meta = {.id = "chatcmpl-abc", .created = 1, .model = "m", .fingerprint = "f"};
  ig_str o;
  ig_str_init(&o);
  ig_render_chat_completion(&o, &meta, &r, &s, 1);
  json_t *j = parse(&o);
  json_t *ch = json_array_get(json_object_get(j, "choices"), 0), *msg = json_object_get(ch, "message");
  CHECK(json_is_null(json_object_get(msg, "content")));
  json_t *call = json_array_get(json_object_get(msg, "tool_calls"), 0);
  CHECK_EQ_STR(json_string_value(json_object_get(call, "id")), "call_abc_0");
  CHECK_EQ_STR(json_string_value(json_object_get(call, "type")), "function");
  CHECK_EQ_STR(json_string_value(json_object_get(json_object_get(call, "function"), "name")), "get_weather");
  CHECK_EQ_STR(json_string_value(json_object_get(json_object_get(call, "function"), "arguments")), "{\"city\":\"Paris\"}");
  CHECK_EQ_STR(json_string_value(json_object_get(ch, "finish_reason")), "tool_calls");
  json_decref(j);
  /* with tool_choice "none" the same text stays text */
  ig_str_clear(&o);
  r.tool_choice = IG_TOOLS_NONE;
  ig_render_chat_completion(&o, &meta, &r, &s, 1);
  j = parse(&o);
  ch = json_array_get(json_object_get(j, "choices"), 0);
  CHECK_EQ_STR(json_string_value(json_object_get(json_object_get(ch, "message"), "content")), cases[0].text);
  CHECK_EQ_STR(json_string_value(json_object_get(ch, "finish_reason")), "stop");
  json_decref(j);
  /* the streamed form: one chunk, delta.tool_calls with index */
  ig_str_clear(&o);
  json_t *calls = ig_tool_calls_parse(cases[2].text, strlen(cases[2].text), tools);
  ig_render_chat_tool_chunk(&o, &meta, &r, calls);
  j = parse(&o);
  ch = json_array_get(json_object_get(j, "choices"), 0);
  json_t *tc = json_object_get(json_object_get(ch, "delta"), "tool_calls");
  CHECK(json_array_size(tc) == 2 && json_integer_value(json_object_get(json_array_get(tc, 1), "index")) == 1);
  CHECK_EQ_STR(json_string_value(json_object_get(json_array_get(tc, 1), "id")), "call_abc_1");
  CHECK_EQ_STR(json_string_value(json_object_get(ch, "finish_reason")), "tool_calls");
  json_decref(j);
  json_decref(calls);
  ig_str_free(&o);
  ig_seq_out_free(&s);
  json_decref(tools);
}

/* Tool calls streamed as they are written: each reply fed in pieces of 1, 2, 3 and 7 bytes (plus the whole at
 * once); every chunk is valid JSON, and the deltas, joined per index as OpenAI clients join them, give the calls
 * the non-streamed reply gives (names, ids, arguments equal as JSON). Replies in another shape send nothing until
 * the end. */
static void test_tool_stream(void) {
  json_t *tools = json_loads("[" WEATHER "," TIME "]", 0, NULL);
  static const struct {
    const char *text;
    int streams; /* 1: streamed as written, 0: held to the end */
  } cases[] = {
      {"{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\"}}", 1},
      {" \n{ \"name\" : \"get_weather\" ,\n \"arguments\" : { \"city\" : \"caf\xc3\xa9 \\\"x\\\" \\u00e9\", \"n\": [1, 2.5, {\"a\": null}] } }\n", 1},
      {"{\"name\": \"get-time\", \"parameters\": {}}", 1},
      {"[{\"name\":\"get-time\",\"arguments\":{}}, {\"name\":\"get_weather\",\"arguments\":{\"city\":\"\xe6\x9d\xb1\xe4\xba\xac\"}}]", 1},
      {"{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\"}} and more", 1}, /* streamed, then not a call */
      {"{\"name\":\"get-time\",\"arguments\":{}};\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}", 1},
      {"{\"name\":\"get_weather\",\"arguments\":{\"city\":\"a\"}}{\"name\":\"get-time\",\"arguments\":{}},", 1},
      {"{\"arguments\":{\"city\":\"Paris\"},\"name\":\"get_weather\"}", 0},          /* name second: held */
      {"{\"name\":\"nope\",\"arguments\":{}}", 0},
      {"{\"answer\": 42}", 0},
  };
  ig_server_req r;
  memset(&r, 0, sizeof r);
  r.tools = tools;
  r.tool_choice = IG_TOOLS_AUTO;
  ig_oai_meta meta = {.id = "chatcmpl-abc", .created = 1, .model = "m", .fingerprint = "f"};
  const size_t steps[] = {1, 2, 3, 7, 100000};
  /* np = 1: parallel_tool_calls false, the first call only, streamed or not */
  for (int np = 0; np < 2; np++)
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    r.no_parallel_calls = np;
    const char *text = cases[c].text;
    size_t len = strlen(text);
    json_t *want = ig_tool_calls_parse(text, len, tools);
    while (np && want && json_array_size(want) > 1) json_array_remove(want, 1);
    if (np && want) { /* the unstreamed reply carries the same one call */
      ig_seq_out so;
      memset(&so, 0, sizeof so);
      ig_str_init(&so.text);
      ig_str_append(&so.text, text, len);
      so.finish = IG_FINISH_EOS;
      ig_str ro;
      ig_str_init(&ro);
      ig_render_chat_completion(&ro, &meta, &r, &so, 1);
      json_t *rj = parse(&ro);
      json_t *tcs = json_object_get(json_object_get(json_array_get(json_object_get(rj, "choices"), 0), "message"), "tool_calls");
      CHECK_MSG(json_array_size(tcs) == 1, "case %zu: parallel_tool_calls false: %zu calls in the reply", c,
                json_array_size(tcs));
      json_decref(rj);
      ig_str_free(&ro);
      ig_str_free(&so.text);
    }
    for (size_t st = 0; st < sizeof steps / sizeof steps[0]; st++) {
      ig_tool_stream ts;
      memset(&ts, 0, sizeof ts);
      json_t *got = json_array(); /* per index: {"id", "name", "arguments"} joined */
      int chunks = 0;
      for (size_t n = 0; n < len;) {
        n = n + steps[st] < len ? n + steps[st] : len;
        ig_str o;
        ig_str_init(&o);
        if (ig_tool_stream_feed(&ts, &o, &meta, &r, text, n)) {
          chunks++;
          json_t *j = parse(&o);
          json_t *ch = json_array_get(json_object_get(j, "choices"), 0);
          CHECK(json_is_null(json_object_get(ch, "finish_reason")));
          json_t *tc = json_object_get(json_object_get(ch, "delta"), "tool_calls");
          for (size_t e = 0; e + 1 < json_array_size(tc); e++) /* one entry per call in a chunk */
            CHECK(json_integer_value(json_object_get(json_array_get(tc, e), "index")) <
                  json_integer_value(json_object_get(json_array_get(tc, e + 1), "index")));
          for (size_t e = 0; e < json_array_size(tc); e++) {
            json_t *d = json_array_get(tc, e), *fn = json_object_get(d, "function");
            size_t idx = (size_t)json_integer_value(json_object_get(d, "index"));
            CHECK_MSG(idx <= json_array_size(got), "case %zu: index %zu skips", c, idx);
            if (idx == json_array_size(got)) {
              CHECK_MSG(json_is_string(json_object_get(d, "id")) && json_is_string(json_object_get(fn, "name")),
                        "case %zu: a call's first delta has its id and name", c);
              json_array_append_new(got, json_pack("{s:O,s:O,s:s}", "id", json_object_get(d, "id"), "name",
                                                   json_object_get(fn, "name"), "arguments", ""));
            }
            json_t *slot = json_array_get(got, idx);
            const char *a = json_string_value(json_object_get(fn, "arguments"));
            if (slot && a) {
              char *cat = malloc(strlen(json_string_value(json_object_get(slot, "arguments"))) + strlen(a) + 1);
              strcpy(cat, json_string_value(json_object_get(slot, "arguments")));
              strcat(cat, a);
              json_object_set_new(slot, "arguments", json_string(cat));
              free(cat);
            }
          }
          json_decref(j);
        }
        ig_str_free(&o);
      }
      CHECK_MSG(ig_tool_stream_held(&ts) == !cases[c].streams, "case %zu step %zu: held %d", c, steps[st],
                ig_tool_stream_held(&ts));
      if (!cases[c].streams) CHECK_MSG(chunks == 0, "case %zu: a held reply sent %d chunks", c, chunks);
      if (cases[c].streams && steps[st] == 1 && !np) /* (np: only the first call's bytes) */
        CHECK_MSG(chunks >= (len > 40 ? 8 : 2), "case %zu: %d chunks byte by byte", c, chunks);
      if (want && cases[c].streams) {
        CHECK_MSG(json_array_size(got) == json_array_size(want), "case %zu step %zu: %zu calls streamed, %zu in the reply",
                  c, steps[st], json_array_size(got), json_array_size(want));
        for (size_t k = 0; k < json_array_size(want) && k < json_array_size(got); k++) {
          json_t *w = json_array_get(want, k), *g = json_array_get(got, k);
          char id[32];
          snprintf(id, sizeof id, "call_abc_%zu", k);
          CHECK_EQ_STR(json_string_value(json_object_get(g, "id")), id);
          CHECK(json_equal(json_object_get(w, "name"), json_object_get(g, "name")));
          json_t *wa = json_loads(json_string_value(json_object_get(w, "arguments")), 0, NULL);
          json_t *ga = json_loads(json_string_value(json_object_get(g, "arguments")), 0, NULL);
          CHECK_MSG(wa && ga && json_equal(wa, ga), "case %zu step %zu call %zu: arguments %s vs %s", c, steps[st], k,
                    json_string_value(json_object_get(w, "arguments")), json_string_value(json_object_get(g, "arguments")));
          json_decref(wa);
          json_decref(ga);
        }
      }
      json_decref(got);
    }
    json_decref(want);
  }
  r.no_parallel_calls = 0;
  /* the last chunk: an empty delta and the finish_reason */
  ig_str o;
  ig_str_init(&o);
  ig_render_chat_tool_end(&o, &meta, &r, 1, IG_FINISH_EOS);
  json_t *j = parse(&o);
  json_t *ch = json_array_get(json_object_get(j, "choices"), 0);
  CHECK_EQ_STR(json_string_value(json_object_get(ch, "finish_reason")), "tool_calls");
  CHECK(json_object_size(json_object_get(ch, "delta")) == 0);
  json_decref(j);
  ig_str_clear(&o);
  ig_render_chat_tool_end(&o, &meta, &r, 0, IG_FINISH_LENGTH);
  j = parse(&o);
  CHECK_EQ_STR(json_string_value(json_object_get(json_array_get(json_object_get(j, "choices"), 0), "finish_reason")), "length");
  json_decref(j);
  ig_str_free(&o);
  json_decref(tools);
}

/* OpenAI's and vLLM's extra fields: what each parses into, and each refusal's message */
static void test_openai_extras(void) {
  const ig_api C = IG_API_CHAT, P = IG_API_COMPLETIONS;
  char m[512];
  ig_server_req r;
  /* logit_bias: ids and values kept in order; null, {} and [] mean none */
  CHECK_EQ_INT(parse_keep(P, "{\"prompt\":\"a\",\"logit_bias\":{\"5\":100,\"17\":-2.5}}", m, sizeof m, &r), 0);
  CHECK(r.gp.n_bias == 2 && r.gp.bias_id[0] == 5 && r.gp.bias_val[0] == 100.0f && r.gp.bias_id[1] == 17 &&
        r.gp.bias_val[1] == -2.5f);
  ig_server_req_free(&r);
  for (int k = 0; k < 3; k++) {
    static const char *none[] = {"null", "{}", "[]"};
    char b[128];
    snprintf(b, sizeof b, "{\"prompt\":\"a\",\"logit_bias\":%s}", none[k]);
    CHECK_EQ_INT(parse_keep(P, b, m, sizeof m, &r), 0);
    CHECK(r.gp.n_bias == 0 && r.gp.bias_id == NULL);
    ig_server_req_free(&r);
  }
  EXPECT(P, "{\"prompt\":\"a\",\"logit_bias\":{\"x\":1}}", 422, "logit_bias: key 'x' is not a token id");
  EXPECT(P, "{\"prompt\":\"a\",\"logit_bias\":{\"007\":1}}", 422, "logit_bias: key '007' is not a token id");
  EXPECT(P, "{\"prompt\":\"a\",\"logit_bias\":{\"5\":101}}", 422,
         "logit_bias: the bias of token 5 must be a number from -100 to 100");
  EXPECT(C, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"logit_bias\":[1.5]}", 422,
         "logit_bias: expected an object mapping token ids to biases from -100 to 100");
  /* min_p, min_tokens, top_k (greedy stays greedy), stop_token_ids, include_stop_str_in_output */
  CHECK_EQ_INT(parse_keep(P, "{\"prompt\":\"a\",\"min_p\":0.25,\"min_tokens\":3,\"top_k\":7,\"temperature\":0.5,"
                             "\"stop_token_ids\":[4,9],\"include_stop_str_in_output\":true}", m, sizeof m, &r), 0);
  CHECK(r.gp.min_p == 0.25f && r.gp.min_tokens == 3 && r.gp.top_k == 7 && r.gp.include_stop == 1);
  CHECK(r.gp.n_stop_ids == 2 && r.gp.stop_ids[0] == 4 && r.gp.stop_ids[1] == 9);
  ig_server_req_free(&r);
  CHECK_EQ_INT(parse_keep(P, "{\"prompt\":\"a\",\"top_k\":7,\"temperature\":0}", m, sizeof m, &r), 0);
  CHECK(r.gp.top_k == 0 && !r.gp.do_sample);
  ig_server_req_free(&r);
  EXPECT(P, "{\"prompt\":\"a\",\"min_p\":1.5}", 422, "`min_p` must be >= 0.0 and <= 1.0");
  EXPECT(P, "{\"prompt\":\"a\",\"top_k\":-2}", 422, "`top_k` must be strictly positive, or -1 / 0 (off)");
  EXPECT(P, "{\"prompt\":\"a\",\"stop_token_ids\":[\"x\"]}", 422, "stop_token_ids[0]: expected a token id");
  EXPECT(P, "{\"prompt\":\"a\",\"stop_token_ids\":[-1]}", 422, "stop_token_ids[0]: expected a token id");
  /* echo: with logprobs, the prompt's logprobs are asked of the engine */
  CHECK_EQ_INT(parse_keep(P, "{\"prompt\":\"a\",\"echo\":true,\"logprobs\":1}", m, sizeof m, &r), 0);
  CHECK(r.echo == 1 && r.gp.prefill_logprobs == 1);
  ig_server_req_free(&r);
  CHECK_EQ_INT(parse_keep(P, "{\"prompt\":\"a\",\"echo\":true}", m, sizeof m, &r), 0);
  CHECK(r.echo == 1 && r.gp.prefill_logprobs == 0);
  ig_server_req_free(&r);
  EXPECT(P, "{\"prompt\":\"a\",\"echo\":\"yes\"}", 422,
         "Failed to deserialize the JSON body into the target type: echo: invalid type: string \"yes\", expected a "
         "boolean");
  /* legacy functions: tools and a named choice (so a schema), answered in the legacy shape; parallel_tool_calls */
  CHECK_EQ_INT(parse_keep(C, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"functions\":[{\"name\":\"f\","
                             "\"parameters\":{\"type\":\"object\"}}],\"function_call\":{\"name\":\"f\"},"
                             "\"parallel_tool_calls\":false}", m, sizeof m, &r), 0);
  CHECK(r.legacy_functions && json_array_size(r.tools) == 1 && r.tool_choice == IG_TOOLS_REQUIRED && r.gp.schema &&
        r.no_parallel_calls);
  ig_server_req_free(&r);
  CHECK_EQ_INT(parse_keep(C, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\","
                             "\"content\":null,\"function_call\":{\"name\":\"f\",\"arguments\":\"{}\"}},{\"role\":"
                             "\"function\",\"name\":\"f\",\"content\":\"ok\"}],\"functions\":[{\"name\":\"f\"}]}",
                          m, sizeof m, &r), 0);
  const json_t *a = json_array_get(r.messages, 1), *fm = json_array_get(r.messages, 2);
  CHECK(json_array_size(json_object_get(a, "tool_calls")) == 1 && !json_object_get(a, "function_call"));
  CHECK_EQ_STR(json_string_value(json_object_get(fm, "role")), "tool");
  CHECK(r.tool_choice == IG_TOOLS_AUTO && !r.gp.schema);
  ig_server_req_free(&r);
  EXPECT(C, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"functions\":[{\"name\":\"f\"}],\"function_call\":5}",
         422, "Failed to deserialize the JSON body into the target type: function_call: invalid type: integer `5`, "
         "expected \"none\", \"auto\" or {\"name\": ...}");
  EXPECT(C, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"tools\":[{\"type\":\"function\",\"function\":"
            "{\"name\":\"f\"}}],\"parallel_tool_calls\":\"no\"}", 422,
         "Failed to deserialize the JSON body into the target type: parallel_tool_calls: invalid type: string \"no\", "
         "expected a boolean");
}

/* /v1/completions for scoring (lm-evaluation-harness, vLLM): prompts as token ids, logprobs as a count, echo with
 * max_tokens 0 */
static void test_completions_scoring(void) {
  const ig_api C = IG_API_CHAT, P = IG_API_COMPLETIONS;
  char m[512];
  ig_server_req r;
  /* a list of ids is one prompt, a list of such lists several; taken as they are (no BOS added) */
  CHECK_EQ_INT(parse_keep(P, "{\"prompt\":[1,2,300],\"max_tokens\":1}", m, sizeof m, &r), 0);
  CHECK(r.n_prompts == 1 && r.prompt_ids && r.n_prompt_ids[0] == 3 && r.prompt_ids[0][0] == 1 &&
        r.prompt_ids[0][2] == 300 && r.prompts[0] == NULL);
  ig_server_req_free(&r);
  CHECK_EQ_INT(parse_keep(P, "{\"prompt\":[[5],[6,7]],\"n\":2}", m, sizeof m, &r), 0);
  CHECK(r.n_prompts == 2 && r.n_choices == 2 && r.n_prompt_ids[0] == 1 && r.n_prompt_ids[1] == 2 &&
        r.prompt_ids[1][1] == 7);
  ig_server_req_free(&r);
  CHECK_EQ_INT(parse_keep(P, "{\"prompt\":[\"a\",\"b\"]}", m, sizeof m, &r), 0);
  CHECK(r.n_prompts == 2 && r.prompt_ids == NULL && !strcmp(r.prompts[1], "b"));
  ig_server_req_free(&r);
  EXPECT(P, "{\"prompt\":[1,-2]}", 422, DESER_PREFIX "prompt[1]: invalid value: integer `-2`, expected a token id");
  EXPECT(P, "{\"prompt\":[1,2147483648]}", 422,
         DESER_PREFIX "prompt[1]: invalid value: integer `2147483648`, expected a token id");
  EXPECT(P, "{\"prompt\":[1,2.5]}", 422,
         DESER_PREFIX "prompt[1]: invalid type: floating point `2.5`, expected a token id");
  EXPECT(P, "{\"prompt\":[1,\"a\"]}", 422, DESER_PREFIX "prompt[1]: invalid type: string \"a\", expected a token id");
  EXPECT(P, "{\"prompt\":[[1],[2,true]]}", 422,
         DESER_PREFIX "prompt[1][1]: invalid type: boolean `true`, expected a token id");
  EXPECT(P, "{\"prompt\":[[1],\"a\"]}", 422,
         DESER_PREFIX "prompt[1]: invalid type: string \"a\", expected a sequence of token ids");
  EXPECT(P, "{\"prompt\":[\"a\",[1]]}", 422, DESER_PREFIX "prompt[1]: invalid type: sequence, expected a string");
  EXPECT(P, "{\"prompt\":[[1],[]]}", 422, "`inputs` cannot be empty");
  EXPECT(P, "{\"prompt\":[]}", 422, "`inputs` cannot be empty");
  EXPECT(P, "{\"prompt\":[[1],[2],[3],[4],[5]]}", 422, "Number of prompts exceeds the maximum allowed batch size of 4");
  EXPECT(P, "{\"prompt\":[[1],[2],[3]],\"n\":22}", 422,
         "`n` times the number of prompts must be at most 64. Given: 22 x 3");
  /* logprobs: N, the N most likely tokens (0 too); true is 0 (or top_logprobs); bounded as top_logprobs is */
  static const struct { const char *lp; int on, n; } lps[] = {
      {"3", 1, 3}, {"0", 1, 0}, {"5", 1, 5}, {"true", 1, 0}, {"false", 0, 0}, {"null", 0, 0}};
  for (size_t k = 0; k < sizeof lps / sizeof lps[0]; k++) {
    char b[160];
    snprintf(b, sizeof b, "{\"prompt\":[1,2],\"echo\":true,\"logprobs\":%s,\"max_tokens\":1}", lps[k].lp);
    CHECK_EQ_INT(parse_keep(P, b, m, sizeof m, &r), 0);
    CHECK_MSG(r.logprobs == lps[k].on && r.top_logprobs == lps[k].n && r.gp.top_n_tokens == lps[k].n &&
                  r.gp.prefill_logprobs == lps[k].on && r.gp.prefill_top_n == lps[k].n,
              "logprobs %s: on %d, top %d, prefill %d/%d", lps[k].lp, r.logprobs, r.top_logprobs, r.gp.prefill_logprobs,
              r.gp.prefill_top_n);
    ig_server_req_free(&r);
  }
  CHECK_EQ_INT(parse_keep(P, "{\"prompt\":\"a\",\"logprobs\":true,\"top_logprobs\":2}", m, sizeof m, &r), 0);
  CHECK(r.logprobs && r.top_logprobs == 2 && !r.gp.prefill_logprobs && r.gp.prefill_top_n == 0);
  ig_server_req_free(&r);
  EXPECT(P, "{\"prompt\":\"a\",\"logprobs\":6}", 422, "`logprobs` must be >= 0 and <= 5. Given: 6");
  EXPECT(P, "{\"prompt\":\"a\",\"logprobs\":-1}", 422, "`logprobs` must be >= 0 and <= 5. Given: -1");
  EXPECT(P, "{\"prompt\":\"a\",\"logprobs\":1.5}", 422,
         DESER_PREFIX "logprobs: invalid type: floating point `1.5`, expected a boolean or an integer");
  EXPECT(C, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"logprobs\":1}", 422,
         DESER_PREFIX "logprobs: invalid type: integer `1`, expected a boolean");
  /* max_tokens 0 with echo: the prompt scored, nothing generated; without echo (and on chat) still refused */
  CHECK_EQ_INT(parse_keep(P, "{\"prompt\":[1,2],\"echo\":true,\"logprobs\":1,\"max_tokens\":0}", m, sizeof m, &r), 0);
  CHECK(r.max_new_tokens_set && r.gp.max_new_tokens == 0);
  CHECK_EQ_INT(ig_server_req_check_lengths(&r, 200, &lim, m, sizeof m), 422); /* over max_input_tokens */
  CHECK_EQ_INT(ig_server_req_check_lengths(&r, 100, &lim, m, sizeof m), 0);
  CHECK_EQ_INT(r.gp.max_new_tokens, 0);
  ig_server_req_free(&r);
  EXPECT(P, "{\"prompt\":[1,2],\"max_tokens\":0}", 422, "`max_new_tokens` must be strictly positive");
  EXPECT(P, "{\"prompt\":[1,2],\"max_tokens\":0,\"echo\":false}", 422, "`max_new_tokens` must be strictly positive");
  EXPECT(C, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":0,\"echo\":true}", 422,
         "`max_new_tokens` must be strictly positive");
}

/* The logprobs object of /v1/completions, byte for byte, for a handmade choice: an echoed prompt of three tokens (the
 * first without logprob), then two generated ones (the last special, its logprob -inf); top_logprobs 2. */
static void test_render_completion_logprobs(void) {
  ig_server_req r;
  memset(&r, 0, sizeof r);
  r.api = IG_API_COMPLETIONS;
  r.echo = 1, r.logprobs = 1, r.top_logprobs = 2, r.n_choices = 1;
  ig_seq_out s;
  memset(&s, 0, sizeof s);
  int32_t pids[3] = {1, 7, 8};
  float plp[3] = {NAN, -1.5f, -0.25f};
  const ig_logprob_top ptop[6] = {{-1, NAN}, {-1, NAN}, {9, -0.5f}, {7, -1.5f}, {8, -0.25f}, {-1, NAN}};
  s.n_prompt = 3, s.prompt_ids = pids, s.prefill_lp = plp, s.prefill_top = ptop, s.prefill_top_n = 2;
  s.input_text = "<s> h\"i\xc3\xa9", s.input_len = 9, s.finish = IG_FINISH_EOS; /* a prompt of ids: their decoding */
  s.prompt_piece = calloc(3, sizeof *s.prompt_piece);
  s.prefill_top_piece = calloc(6, sizeof *s.prefill_top_piece);
  s.prompt_piece[0] = strdup("<s>"), s.prompt_piece[1] = strdup(" h\"i"), s.prompt_piece[2] = strdup("\xc3\xa9");
  s.prefill_top_piece[2] = strdup(" x"), s.prefill_top_piece[3] = strdup(" h\"i");
  s.prefill_top_piece[4] = strdup("\xc3\xa9");
  static const struct { int32_t id; const char *piece; float lp; int special, n_top; int32_t tid[3]; const char *tt[3];
                        float tlp[3]; } gen[2] = {
      {10, " a", -2.0f, 0, 3, {11, 12, 13}, {" b", " a2", "z"}, {-0.1f, -0.2f, -0.3f}},
      {2, "</s>", -INFINITY, 1, 2, {14, 15}, {" c", " c"}, {-0.3f, -0.9f}}}; /* two alternatives that read alike */
  for (int i = 0; i < 2; i++) {
    ig_out_token t;
    memset(&t, 0, sizeof t);
    t.id = gen[i].id, t.logprob = gen[i].lp, t.special = gen[i].special;
    t.text = strdup(gen[i].piece), t.piece = strdup(gen[i].piece);
    t.n_top = gen[i].n_top;
    t.top = calloc((size_t)t.n_top, sizeof *t.top);
    for (int k = 0; k < t.n_top; k++)
      t.top[k] = (ig_out_top){gen[i].tid[k], gen[i].tlp[k], 0, strdup(gen[i].tt[k])};
    CHECK_EQ_INT(ig_seq_out_push(&s, &t), 0);
  }
  const char *lp_all = "{\"tokens\":[\"<s>\",\" h\\\"i\",\"\xc3\xa9\",\" a\",\"</s>\"],"
                       "\"token_logprobs\":[null,-1.5,-0.25,-2,null],"
                       "\"top_logprobs\":[null,{\" x\":-0.5,\" h\\\"i\":-1.5},{\"\xc3\xa9\":-0.25},"
                       "{\" b\":-0.1,\" a2\":-0.2,\" a\":-2},{\" c\":-0.3,\"</s>\":null}],"
                       "\"text_offset\":[0,3,7,8,10]}";
  ig_oai_meta m = {"cmpl-1", 123, "model", "fp", 0};
  ig_str o, want;
  ig_str_init(&o), ig_str_init(&want);
  ig_render_completion(&o, &m, &r, &s, 1);
  ig_str_printf(&want, "{\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":123,\"model\":\"model\","
                       "\"system_fingerprint\":\"fp\",\"choices\":[{\"index\":0,"
                       "\"text\":\"<s> h\\\"i\xc3\xa9 a\",\"logprobs\":%s,"
                       "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,"
                       "\"total_tokens\":5,\"prompt_tokens_details\":{\"cached_tokens\":0}}}", lp_all);
  CHECK_EQ_STR(o.p, want.p);
  json_decref(parse(&o));
  /* streamed: the prompt's chunk, then one token's each, the offsets going on; a bare end has empty lists */
  int off = 0;
  ig_str_clear(&o);
  ig_render_completion_chunk(&o, &m, &r, 0, "<s> h\"i\xc3\xa9", IG_FINISH_NONE, &s, 0, 3, &off);
  CHECK_EQ_STR(o.p, "{\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":123,\"model\":\"model\","
                    "\"system_fingerprint\":\"fp\",\"choices\":[{\"index\":0,"
                    "\"text\":\"<s> h\\\"i\xc3\xa9\",\"logprobs\":{\"tokens\":"
                    "[\"<s>\",\" h\\\"i\",\"\xc3\xa9\"],\"token_logprobs\":[null,-1.5,-0.25],\"top_logprobs\":[null,"
                    "{\" x\":-0.5,\" h\\\"i\":-1.5},{\"\xc3\xa9\":-0.25}],\"text_offset\":[0,3,7]},"
                    "\"finish_reason\":null}]}");
  CHECK_EQ_INT(off, 8);
  ig_str_clear(&o);
  ig_render_completion_chunk(&o, &m, &r, 0, " a", IG_FINISH_NONE, &s, 3, 4, &off);
  CHECK(strstr(o.p, "\"text_offset\":[8]}") != NULL);
  ig_str_clear(&o);
  ig_render_completion_chunk(&o, &m, &r, 0, "", IG_FINISH_EOS, &s, 4, 5, &off);
  CHECK(strstr(o.p, "\"logprobs\":{\"tokens\":[\"</s>\"],\"token_logprobs\":[null],\"top_logprobs\":[{\" c\":-0.3,"
                    "\"</s>\":null}],\"text_offset\":[10]},\"finish_reason\":\"stop\"}") != NULL);
  CHECK_EQ_INT(off, 10); /* a special token adds nothing to the text */
  ig_str_clear(&o);
  ig_render_completion_chunk(&o, &m, &r, 0, "", IG_FINISH_LENGTH, &s, 5, 5, &off);
  CHECK(strstr(o.p, "\"logprobs\":{\"tokens\":[],\"token_logprobs\":[],\"top_logprobs\":[],\"text_offset\":[]},"
                    "\"finish_reason\":\"length\"") != NULL);
  /* a text prompt: its tokens start where the tokenizer put them (bytes -> code points), the completion after it */
  const uint32_t poffs[6] = {0, 0, 0, 3, 3, 5};
  s.input_text = "h\"i\xc3\xa9", s.input_len = 5, s.prompt_offsets = poffs;
  ig_str_clear(&o);
  ig_render_completion(&o, &m, &r, &s, 1);
  CHECK(strstr(o.p, "\"text_offset\":[0,0,3,4,6]}") != NULL);
  s.prompt_offsets = NULL;
  /* without echo: the generated tokens alone, from offset 0; without logprobs: null */
  r.echo = 0;
  ig_str_clear(&o);
  ig_render_completion(&o, &m, &r, &s, 1);
  CHECK(strstr(o.p, "\"text\":\" a\",\"logprobs\":{\"tokens\":[\" a\",\"</s>\"],\"token_logprobs\":[-2,null],"
                    "\"top_logprobs\":[{\" b\":-0.1,\" a2\":-0.2,\" a\":-2},{\" c\":-0.3,\"</s>\":null}],"
                    "\"text_offset\":[0,2]}") != NULL);
  r.logprobs = 0;
  ig_str_clear(&o);
  ig_render_completion_chunk(&o, &m, &r, 0, "x", IG_FINISH_NONE, &s, 0, 1, &off);
  CHECK(strstr(o.p, "\"text\":\"x\",\"logprobs\":null,") != NULL);
  ig_seq_out_free(&s);
  ig_str_free(&o), ig_str_free(&want);
}

/* vLLM's chat template fields: chat_template_kwargs, add_generation_prompt, continue_final_message, documents,
 * chat_template (only when the server trusts request templates), with vLLM's refusals. */
static void test_chat_template_fields(void) {
  const ig_api C = IG_API_CHAT;
#define MSGS "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"Sure\"}]"
  char m[512] = "";
  ig_server_req r;
  /* defaults: the generation prompt, nothing else */
  CHECK_EQ_INT(parse_keep(C, MSGS "}", m, sizeof m, &r), 0);
  CHECK(r.add_generation_prompt == 1 && !r.continue_final_message && !r.chat_kwargs && !r.documents && !r.chat_template);
  ig_server_req_free(&r);
  /* kwargs kept (a copy), the names the request's own fields set taken out of them (vLLM's merge_kwargs) */
  CHECK_EQ_INT(parse_keep(C, MSGS ",\"chat_template_kwargs\":{\"enable_thinking\":false,\"add_generation_prompt\":true,"
                              "\"continue_final_message\":true,\"documents\":[1],\"x\":{\"y\":[1,2]}},"
                              "\"add_generation_prompt\":false,\"continue_final_message\":true,"
                              "\"documents\":[{\"title\":\"T\",\"text\":\"D\"}]}",
                          m, sizeof m, &r), 0);
  CHECK(r.add_generation_prompt == 0 && r.continue_final_message == 1);
  CHECK_EQ_INT((int)json_object_size(r.chat_kwargs), 2);
  CHECK(json_is_false(json_object_get(r.chat_kwargs, "enable_thinking")));
  CHECK_EQ_INT((int)json_array_size(json_object_get(json_object_get(r.chat_kwargs, "x"), "y")), 2);
  CHECK_EQ_STR(json_string_value(json_object_get(json_array_get(r.documents, 0), "title")), "T");
  ig_server_req_free(&r);
  /* without the request's documents or tools, kwargs of those names stay (they set the template's variables) */
  CHECK_EQ_INT(parse_keep(C, MSGS ",\"chat_template_kwargs\":{\"documents\":[{\"a\":\"b\"}],\"tools\":[]}}", m, sizeof m, &r), 0);
  CHECK(json_is_array(json_object_get(r.chat_kwargs, "documents")) && json_is_array(json_object_get(r.chat_kwargs, "tools")));
  ig_server_req_free(&r);
  CHECK_EQ_INT(parse_keep(C, MSGS ",\"chat_template_kwargs\":{\"tools\":[],\"k\":1},\"tools\":[{\"type\":\"function\","
                              "\"function\":{\"name\":\"f\"}}]}", m, sizeof m, &r), 0);
  CHECK(!json_object_get(r.chat_kwargs, "tools") && json_object_get(r.chat_kwargs, "k") && json_array_size(r.tools) == 1);
  ig_server_req_free(&r);
  /* null is "not given" */
  CHECK_EQ_INT(parse_keep(C, MSGS ",\"chat_template_kwargs\":null,\"documents\":null,\"add_generation_prompt\":null,"
                              "\"continue_final_message\":null,\"chat_template\":null}", m, sizeof m, &r), 0);
  CHECK(r.add_generation_prompt == 1 && !r.chat_kwargs && !r.documents && !r.chat_template);
  ig_server_req_free(&r);
  /* the refusals, with vLLM's messages where vLLM has one */
  EXPECT(C, MSGS ",\"chat_template_kwargs\":[1]}", 422,
         DESER_PREFIX "chat_template_kwargs: invalid type: sequence, expected a map");
  EXPECT(C, MSGS ",\"chat_template_kwargs\":\"enable_thinking=False\"}", 422,
         DESER_PREFIX "chat_template_kwargs: invalid type: string \"enable_thinking=False\", expected a map");
  EXPECT(C, MSGS ",\"chat_template_kwargs\":{\"chat_template\":\"x\"}}", 422,
         "Found unexpected chat template kwargs from request: {'chat_template'}");
  EXPECT(C, MSGS ",\"chat_template_kwargs\":{\"tokenize\":true,\"chat_template\":null}}", 422,
         "Found unexpected chat template kwargs from request: {'chat_template', 'tokenize'}");
  EXPECT(C, MSGS ",\"add_generation_prompt\":1}", 422,
         DESER_PREFIX "add_generation_prompt: invalid type: integer `1`, expected a boolean");
  EXPECT(C, MSGS ",\"continue_final_message\":\"yes\"}", 422,
         DESER_PREFIX "continue_final_message: invalid type: string \"yes\", expected a boolean");
  /* add_generation_prompt defaults to true: continuing asks for it false */
  EXPECT(C, MSGS ",\"continue_final_message\":true}", 422,
         "Cannot set both `continue_final_message` and `add_generation_prompt` to True.");
  EXPECT(C, MSGS ",\"continue_final_message\":true,\"add_generation_prompt\":true}", 422,
         "Cannot set both `continue_final_message` and `add_generation_prompt` to True.");
  EXPECT(C, MSGS ",\"continue_final_message\":false,\"add_generation_prompt\":false}", 0, "");
  EXPECT(C, MSGS ",\"documents\":{\"title\":\"T\"}}", 422,
         DESER_PREFIX "documents: invalid type: map, expected a sequence");
  EXPECT(C, MSGS ",\"documents\":[{\"a\":\"b\"},\"text\"]}", 422,
         DESER_PREFIX "documents[1]: invalid type: string \"text\", expected a map");
  EXPECT(C, MSGS ",\"documents\":[]}", 0, "");
  /* a request's own template: refused unless the server trusts them (vLLM's --trust-request-chat-template) */
  EXPECT(C, MSGS ",\"chat_template\":\"{{ messages[0].content }}\"}", 422,
         "Chat template is passed with request, but --trust-request-chat-template is not set. Refused request with "
         "untrusted chat template.");
  EXPECT(C, MSGS ",\"chat_template\":\"\"}", 422,
         "Chat template is passed with request, but --trust-request-chat-template is not set. Refused request with "
         "untrusted chat template.");
  lim.trust_request_chat_template = 1;
  EXPECT(C, MSGS ",\"chat_template\":7}", 422, DESER_PREFIX "chat_template: invalid type: integer `7`, expected a string");
  json_t *j = json_loads(MSGS ",\"chat_template\":\"{{ x }}\\u0000!\"}", JSON_ALLOW_NUL, NULL); /* kept whole */
  const char *etype;
  CHECK_EQ_INT(ig_server_req_parse(C, j, &lim, &r, &etype, m, sizeof m), 0);
  CHECK(r.chat_template && r.chat_template_len == 9 && memcmp(r.chat_template, "{{ x }}\0!", 10) == 0);
  ig_server_req_free(&r);
  json_decref(j);
  CHECK_EQ_INT(parse_keep(C, MSGS ",\"chat_template\":\"\"}", m, sizeof m, &r), 0); /* "": the model's */
  CHECK(!r.chat_template && r.chat_template_len == 0);
  ig_server_req_free(&r);
  lim.trust_request_chat_template = 0;
  /* the fields are chat's: the other routes' bodies do not read them */
  EXPECT(IG_API_COMPLETIONS, "{\"prompt\":\"a\",\"chat_template_kwargs\":5,\"continue_final_message\":true}", 0, "");
#undef MSGS
}

int main(void) {
  test_chat_template_fields();
  test_grammar_deferred();
  test_grammar();
  test_guided();
  test_tools();
  test_tool_calls();
  test_tool_stream();
  test_tgi_rules();
  test_tgi_values();
  test_openai();
  test_openai_extras();
  test_completions_scoring();
  test_render();
  test_render_completion_logprobs();
  test_metrics();
  TEST_DONE();
}
