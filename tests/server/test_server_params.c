/* tests/server/test_server_params: request parsing and TGI's validation rules and messages (params.c), and
 * the shapes of the bodies render.c writes (parsed back with jansson). */
#include "server/params.h"
#include "server/metrics.h"
#include "server/render.h"
#include "test.h"
#include <stdlib.h>

static ig_server_limits lim = {2, 4, 5, 100, 200, 4};

/* Parses body for api; returns the status and copies the message (and, when json_mode is not NULL and the parse
 * succeeded, the request's gp.json_mode). */
static int run_jm(ig_api api, const char *body, char *msg, size_t n, int *json_mode) {
  json_error_t je;
  json_t *j = json_loads(body, 0, &je);
  if (!j) {
    fprintf(stderr, "bad test json: %s\n", body);
    return -1;
  }
  ig_server_req r;
  const char *etype;
  int rc = ig_server_req_parse(api, j, &lim, &r, &etype, msg, n);
  if (!rc && json_mode) *json_mode = r.gp.json_mode;
  ig_server_req_free(&r);
  json_decref(j);
  return rc;
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
  EXPECT(C, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"n\":2}", 422,
         "`n` must be 1 (only one choice per request is supported). Given: 2");
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

  ig_oai_meta m = {"chatcmpl-1", 123, "model", "fp"};
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
  ig_render_chat_completion(&o, &m, &r, &s[1]);
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
  ig_server_stats st = {.queue_size = 2, .kv_blocks_total = 9};
  ig_metrics_render(&m, &st, 1, 0, &o);
  CHECK(strstr(o.p, "# TYPE tgi_request_count counter\ntgi_request_count 3\n") != NULL);
  CHECK(strstr(o.p, "tgi_request_failure{err=\"validation\"} 1\n") != NULL);
  CHECK(strstr(o.p, "# TYPE tgi_request_duration histogram\n") != NULL);
  CHECK(strstr(o.p, "tgi_request_duration_bucket{le=\"+Inf\"} 1\ntgi_request_duration_sum 0.01") != NULL);
  CHECK(strstr(o.p, "tgi_request_input_length_bucket{le=\"5\"} 1\n") != NULL);
  CHECK(strstr(o.p, "tgi_request_input_length_bucket{le=\"4\"} 0\n") != NULL);
  CHECK(strstr(o.p, "tgi_queue_size 2\n") != NULL);
  CHECK(strstr(o.p, "ignis_kv_blocks_total 9\n") != NULL);
  ig_str_free(&o);
}

/* JSON mode: TGI's grammar and OpenAI's response_format; what it cannot do is a 422 that says so. */
static int json_mode_of(ig_api api, const char *body) {
  char m[256];
  int jm = 0, rc = run_jm(api, body, m, sizeof m, &jm);
  return rc ? -rc : jm;
}
static void test_grammar(void) {
  const ig_api G = IG_API_GENERATE, C = IG_API_CHAT;
  CHECK_EQ_INT(json_mode_of(G, "{\"inputs\":\"a\"}"), 0);
  CHECK_EQ_INT(json_mode_of(G, "{\"inputs\":\"a\",\"parameters\":{\"grammar\":null}}"), 0);
  CHECK_EQ_INT(json_mode_of(G, "{\"inputs\":\"a\",\"parameters\":{\"grammar\":{\"type\":\"json\",\"value\":{}}}}"), 1);
  CHECK_EQ_INT(json_mode_of(G, "{\"inputs\":\"a\",\"parameters\":{\"grammar\":{\"type\":\"json\",\"value\":"
                               "{\"type\":\"object\",\"title\":\"T\"}}}}"), 1);
  EXPECT(G, "{\"inputs\":\"a\",\"parameters\":{\"grammar\":{\"type\":\"json\",\"value\":{\"type\":\"object\","
            "\"properties\":{\"a\":{\"type\":\"integer\"}}}}}}", 422,
         "grammar: only JSON mode is supported: any JSON object (a schema of {} or {\"type\": \"object\"}); schemas "
         "with properties, other types or constraints are not");
  EXPECT(G, "{\"inputs\":\"a\",\"parameters\":{\"grammar\":{\"type\":\"json\",\"value\":{\"type\":\"array\"}}}}", 422,
         "grammar: only JSON mode is supported: any JSON object (a schema of {} or {\"type\": \"object\"}); schemas "
         "with properties, other types or constraints are not");
  EXPECT(G, "{\"inputs\":\"a\",\"parameters\":{\"grammar\":{\"type\":\"regex\",\"value\":\"a+\"}}}", 422,
         "grammar: regex grammars are not supported (JSON mode is: {\"type\": \"json_object\"})");
  EXPECT(G, "{\"inputs\":\"a\",\"parameters\":{\"grammar\":{\"type\":\"yaml\"}}}", 422, "grammar: unknown type 'yaml'");
  EXPECT(G, "{\"inputs\":\"a\",\"parameters\":{\"grammar\":\"json\"}}", 422,
         "grammar: expected an object with a \"type\"");
  const char *msgs = "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]";
  char b[512];
  snprintf(b, sizeof b, "{%s}", msgs);
  CHECK_EQ_INT(json_mode_of(C, b), 0);
  snprintf(b, sizeof b, "{%s,\"response_format\":{\"type\":\"text\"}}", msgs);
  CHECK_EQ_INT(json_mode_of(C, b), 0);
  snprintf(b, sizeof b, "{%s,\"response_format\":{\"type\":\"json_object\"}}", msgs);
  CHECK_EQ_INT(json_mode_of(C, b), 1);
  snprintf(b, sizeof b, "{%s,\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"x\"}}}", msgs);
  CHECK_EQ_INT(json_mode_of(C, b), 1);
  snprintf(b, sizeof b, "{%s,\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"x\","
           "\"schema\":{\"type\":\"object\",\"required\":[\"a\"]}}}}", msgs);
  CHECK_EQ_INT(json_mode_of(C, b), -422);
  snprintf(b, sizeof b, "{%s,\"response_format\":{\"type\":\"json\",\"value\":{}}}", msgs);
  CHECK_EQ_INT(json_mode_of(C, b), 1);
  snprintf(b, sizeof b, "{%s,\"response_format\":{\"type\":\"json_schema\"}}", msgs);
  CHECK_EQ_INT(json_mode_of(C, b), -422);
  /* /v1/completions takes response_format too, rather than ignoring it */
  CHECK_EQ_INT(json_mode_of(IG_API_COMPLETIONS, "{\"prompt\":\"a\",\"response_format\":{\"type\":\"json_object\"}}"), 1);
  CHECK_EQ_INT(json_mode_of(IG_API_COMPLETIONS, "{\"prompt\":\"a\",\"response_format\":{\"type\":\"regex\"}}"), -422);
  CHECK_EQ_INT(json_mode_of(IG_API_COMPLETIONS, "{\"prompt\":\"a\"}"), 0);
  /* TGI's forms: json_schema's config under "value", and a schema given as a string of JSON */
  snprintf(b, sizeof b, "{%s,\"response_format\":{\"type\":\"json_schema\",\"value\":{\"name\":\"x\",\"schema\":{}}}}", msgs);
  CHECK_EQ_INT(json_mode_of(C, b), 1);
  CHECK_EQ_INT(json_mode_of(G, "{\"inputs\":\"a\",\"parameters\":{\"grammar\":{\"type\":\"json\",\"value\":"
                               "\"{\\\"type\\\":\\\"object\\\"}\"}}}"), 1);
  CHECK_EQ_INT(json_mode_of(G, "{\"inputs\":\"a\",\"parameters\":{\"grammar\":{\"type\":\"json\",\"value\":"
                               "\"{\\\"required\\\":[]}\"}}}"), -422);
  CHECK_EQ_INT(json_mode_of(G, "{\"inputs\":\"a\",\"parameters\":{\"grammar\":{\"type\":\"json\",\"value\":\"{oops\"}}}"), -422);
}

int main(void) {
  test_grammar();
  test_tgi_rules();
  test_tgi_values();
  test_openai();
  test_render();
  test_metrics();
  TEST_DONE();
}
