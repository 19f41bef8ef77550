/* tests/bench/test_bench_units: the benchmark's parsers and helpers without a network: SSE events split at
 * every byte and several per read, HTTP framing (chunked, Content-Length, close) split at every byte,
 * percentiles, the seeded RNG, prompt files (JSONL, ShareGPT, arrays), /tokenize answers, and the trimming of
 * synthetic prompts to an exact token count. */
#include "bench/bench.h"
#include "bench/http.h"
#include "bench/prompts.h"
#include "bench/rng.h"
#include "bench/sse.h"
#include "test.h"
#include <stdlib.h>
#include <string.h>

/* ---- SSE ---- */

typedef struct evlog {
  ig_str s;
  int n;
} evlog;

static int log_event(void *ud, const char *event, const char *data, size_t len) {
  evlog *l = ud;
  ig_str_printf(&l->s, "[%s|", event);
  ig_str_append(&l->s, data, len);
  ig_str_puts(&l->s, "]");
  l->n++;
  return 0;
}

static void test_sse(void) {
  const char *stream = "data:{\"a\":1}\n\n"
                       ": keep-alive comment\n\n"
                       "data: {\"b\":2}\r\n\r\n"
                       "event: error\ndata: x\ndata: y\n\n"
                       "data:z\r\rdata: [DONE]\n\n"
                       "id: 7\nretry: 10\n\n";
  const char *want = "[|{\"a\":1}][|{\"b\":2}][error|x\ny][|z][|[DONE]]";
  size_t n = strlen(stream);
  /* whole, then split into two pieces at every position, then byte by byte */
  for (size_t cut = 0; cut <= n; cut++) {
    ig_sse p;
    ig_sse_init(&p);
    evlog l = {0};
    ig_str_init(&l.s);
    CHECK(ig_sse_feed(&p, stream, cut, log_event, &l) == 0);
    CHECK(ig_sse_feed(&p, stream + cut, n - cut, log_event, &l) == 0);
    CHECK_MSG(l.s.p && !strcmp(l.s.p, want), "cut %zu: %s", cut, l.s.p ? l.s.p : "(none)");
    ig_str_free(&l.s);
    ig_sse_free(&p);
  }
  ig_sse p;
  ig_sse_init(&p);
  evlog l = {0};
  ig_str_init(&l.s);
  for (size_t i = 0; i < n; i++) CHECK(ig_sse_feed(&p, stream + i, 1, log_event, &l) == 0);
  CHECK_EQ_STR(l.s.p, want);
  CHECK_EQ_INT(l.n, 5);
  ig_str_free(&l.s);
  ig_sse_free(&p);
  /* a line longer than the limit is an error, not unbounded memory */
  ig_sse_init(&p);
  p.max_line = 16;
  CHECK(ig_sse_feed(&p, "data: 0123456789abcdef", 22, log_event, NULL) == -1);
  ig_sse_free(&p);
}

/* ---- HTTP ---- */

static int collect(void *ud, const char *p, size_t n) {
  ig_str_append(ud, p, n);
  return 0;
}

static void http_case(const char *resp, int want_status, const char *want_body, int want_done_before_eof) {
  size_t n = strlen(resp);
  for (size_t cut = 0; cut <= n; cut++) {
    ig_http_resp r;
    ig_http_resp_init(&r);
    ig_str body;
    ig_str_init(&body);
    int rc1 = ig_http_feed(&r, resp, cut, collect, &body);
    int rc2 = ig_http_feed(&r, resp + cut, n - cut, collect, &body);
    CHECK_MSG(rc1 == 0 && rc2 == 0, "cut %zu: %s", cut, r.err);
    CHECK_EQ_INT(r.status, want_status);
    CHECK_EQ_INT(r.state == IG_HTTP_DONE, want_done_before_eof);
    CHECK(ig_http_eof(&r) == 1);
    CHECK_MSG(!strcmp(body.p ? body.p : "", want_body), "cut %zu: body '%s'", cut, body.p ? body.p : "");
    ig_str_free(&body);
    ig_http_resp_free(&r);
  }
}

static void test_http(void) {
  http_case("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
            "5\r\nhello\r\n1;ext=1\r\n \r\nA\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\nJUNK",
            200, "hello 0123456789", 1);
  http_case("HTTP/1.1 422 Unprocessable Entity\r\ncontent-length: 7\r\n\r\n{\"a\":1}", 422, "{\"a\":1}", 1);
  http_case("HTTP/1.0 200 OK\nContent-Type: text/event-stream\n\ndata: x\n\n", 200, "data: x\n\n", 0);
  http_case("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n", 204, "", 1);
  /* cut short: not complete at EOF */
  ig_http_resp r;
  ig_http_resp_init(&r);
  const char *cut = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel";
  CHECK(ig_http_feed(&r, cut, strlen(cut), NULL, NULL) == 0);
  CHECK(ig_http_eof(&r) == 0);
  ig_http_resp_free(&r);
  /* malformed */
  const char *bad[] = {"HTTX/1.1 200 OK\r\n\r\n", "HTTP/1.1 2x0 OK\r\n\r\n",
                       "HTTP/1.1 200 OK\r\nContent-Length: 12a\r\n\r\n",
                       "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                       "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX\r\n", "HTTP/1.1 200 OK\r\nno colon\r\n\r\n"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    ig_http_resp_init(&r);
    CHECK_MSG(ig_http_feed(&r, bad[i], strlen(bad[i]), NULL, NULL) == -1, "accepted: %s", bad[i]);
    CHECK(r.err[0]);
    ig_http_resp_free(&r);
  }
}

/* ---- stats, rng ---- */

static void test_stats_rng(void) {
  double v[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  CHECK_NEAR(ig_bench_percentile(v, 10, 50), 5.5, 1e-12);
  CHECK_NEAR(ig_bench_percentile(v, 10, 90), 9.1, 1e-12);
  CHECK_NEAR(ig_bench_percentile(v, 10, 99), 9.91, 1e-12);
  CHECK_NEAR(ig_bench_percentile(v, 10, 0), 1, 0);
  CHECK_NEAR(ig_bench_percentile(v, 1, 99), 1, 0);
  ig_bench_rng a, b;
  ig_bench_rng_seed(&a, 42);
  ig_bench_rng_seed(&b, 42);
  int same = 1;
  double sum = 0;
  for (int i = 0; i < 100000; i++) {
    uint64_t x = ig_bench_rng_next(&a);
    same &= x == ig_bench_rng_next(&b);
    sum += ig_bench_rng_exp(&a, 4.0);
    ig_bench_rng_exp(&b, 4.0);
  }
  CHECK(same);
  CHECK_NEAR(sum / 100000, 0.25, 0.005); /* exponential mean 1/rate */
  ig_bench_rng_seed(&b, 43);
  CHECK(ig_bench_rng_next(&a) != ig_bench_rng_next(&b));
  /* Poisson plan: starts at 0, increasing, mean gap 1/rate */
  static double plan[20000];
  CHECK(ig_bench_arrival_plan(11, 50.0, 20000, plan) == 0);
  int increasing = 1;
  for (int i = 1; i < 20000; i++) increasing &= plan[i] >= plan[i - 1];
  CHECK(plan[0] == 0 && increasing);
  CHECK_NEAR(plan[19999] / 19999, 0.02, 0.0006);
  CHECK(ig_bench_arrival_plan(11, 0, 5, plan) == -1);
}

/* ---- prompts ---- */

static void test_prompt_files(void) {
  const char *jsonl = "{\"prompt\": \"Hello there\", \"output_tokens\": 17}\n"
                      "\n"
                      "{\"conversations\": [{\"from\": \"system\", \"value\": \"be nice\"}, {\"from\": \"human\", \"value\": "
                      "\"What is two plus two\"}, {\"from\": \"gpt\", \"value\": \"It is four, as you know well\"}]}\n"
                      "{\"conversations\": [{\"from\": \"gpt\", \"value\": \"no human turn\"}]}\n"
                      "{\"conversations\": [{\"from\": \"human\", \"value\": \"explicit\"}, {\"from\": \"gpt\", \"value\": "
                      "\"x\"}], \"output_tokens\": 5}\n"
                      "{\"prompt\": \"no length\"}\r\n";
  ig_bench_prompts p;
  char err[200];
  CHECK(ig_bench_prompts_parse(jsonl, strlen(jsonl), 99, &p, err, sizeof err) == 0);
  CHECK_EQ_INT(p.n, 4);
  if (p.n == 4) {
    CHECK_EQ_STR(p.v[0].text, "Hello there");
    CHECK_EQ_INT(p.v[0].output_tokens, 17);
    CHECK_EQ_STR(p.v[1].text, "What is two plus two");
    CHECK_EQ_INT(p.v[1].output_tokens, 9); /* 7 words * 1.3 */
    CHECK_EQ_INT(p.v[2].output_tokens, 5);
    CHECK_EQ_INT(p.v[3].output_tokens, 99);
    CHECK_EQ_INT(p.v[1].input_tokens, 7); /* 5 words * 1.3, estimated */
    CHECK(!p.v[1].input_exact);
  }
  ig_bench_prompts_free(&p);
  const char *arr = "[{\"conversations\":[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"a b c d\"}]}]";
  CHECK(ig_bench_prompts_parse(arr, strlen(arr), 10, &p, err, sizeof err) == 0);
  CHECK_EQ_INT(p.n, 1);
  if (p.n == 1) CHECK_EQ_INT(p.v[0].output_tokens, 5);
  ig_bench_prompts_free(&p);
  CHECK(ig_bench_prompts_parse("{\"prompt\": 1}\n{bad", 18, 10, &p, err, sizeof err) == -1);
  CHECK(strstr(err, "line 2") != NULL);
  CHECK(ig_bench_prompts_parse("{\"x\": 1}\n", 9, 10, &p, err, sizeof err) == -1);
}

static void test_parse_tokenize(void) {
  int n;
  ig_bench_span *sp;
  char err[200];
  const char *tgi = "[{\"id\":1,\"text\":\"<s>\",\"start\":0,\"stop\":0},{\"id\":5,\"text\":\"Hi\",\"start\":0,\"stop\":2}]";
  CHECK(ig_bench_parse_tokenize(tgi, strlen(tgi), &n, &sp, err, sizeof err) == 0);
  CHECK_EQ_INT(n, 2);
  CHECK(sp && sp[1].stop == 2);
  free(sp);
  const char *vllm = "{\"count\":3,\"max_model_len\":4096,\"tokens\":[1,2,3]}";
  CHECK(ig_bench_parse_tokenize(vllm, strlen(vllm), &n, &sp, err, sizeof err) == 0);
  CHECK_EQ_INT(n, 3);
  CHECK(sp == NULL);
  CHECK(ig_bench_parse_tokenize("{\"tokens\":[4,5]}", 16, &n, &sp, err, sizeof err) == 0);
  CHECK_EQ_INT(n, 2);
  CHECK(ig_bench_parse_tokenize("nope", 4, &n, &sp, err, sizeof err) == -1);
}

/* A tokenizer with merges across word boundaries, so trimming needs more than one cut: BOS, then each word
 * (with its leading space) is one token, words longer than 5 bytes are two, and "of the" is one token. */
static int toy_tokenize(void *ud, const char *text, int *n, ig_bench_span **spans, char *err, size_t errlen) {
  int *calls = ud;
  (*calls)++;
  int cap = (int)strlen(text) + 2, k = 0;
  ig_bench_span *sp = malloc((size_t)cap * sizeof *sp);
  sp[k++] = (ig_bench_span){0, 0};
  size_t i = 0, len = strlen(text);
  while (i < len) {
    size_t a = i;
    while (i < len && text[i] == ' ') i++;
    size_t ws = i;
    while (i < len && text[i] != ' ') i++;
    if (i == ws) break;
    if (!strncmp(text + ws, "of the", 6) && (ws + 6 == len || text[ws + 6] == ' ')) i = ws + 6;
    else if (i - ws > 5) {
      sp[k++] = (ig_bench_span){(int)a, (int)ws + 3};
      a = ws + 3;
    }
    sp[k++] = (ig_bench_span){(int)a, (int)i};
  }
  *n = k;
  *spans = sp;
  return 0;
}

static int toy_count_only(void *ud, const char *text, int *n, ig_bench_span **spans, char *err, size_t errlen) {
  int rc = toy_tokenize(ud, text, n, spans, err, errlen);
  free(*spans);
  *spans = NULL;
  return rc;
}

static void test_synth(void) {
  int calls = 0;
  ig_bench_tokenizer tk = {&calls, toy_tokenize};
  ig_bench_rng rng;
  ig_bench_rng_seed(&rng, 7);
  int lens[] = {2, 3, 5, 32, 128, 777}; /* 1 would be BOS alone */
  char err[200];
  for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
    for (int rep = 0; rep < 20; rep++) {
      char *text;
      int got, n;
      ig_bench_span *sp;
      CHECK(ig_bench_synth_prompt(&tk, &rng, lens[i], &text, &got, err, sizeof err) == 0);
      toy_tokenize(&calls, text, &n, &sp, err, sizeof err);
      free(sp);
      CHECK_MSG(got == lens[i] && n == lens[i], "want %d got %d recount %d", lens[i], got, n);
      free(text);
    }
  }
  tk.tokenize = toy_count_only;
  for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
    char *text;
    int got;
    CHECK(ig_bench_synth_prompt(&tk, &rng, lens[i], &text, &got, err, sizeof err) == 0);
    CHECK_MSG(abs(got - lens[i]) <= 1, "counts only: want %d got %d", lens[i], got);
    free(text);
  }
  /* same seed, same prompt */
  tk.tokenize = toy_tokenize;
  ig_bench_rng a, b;
  ig_bench_rng_seed(&a, 9);
  ig_bench_rng_seed(&b, 9);
  char *t1, *t2;
  int g1, g2;
  ig_bench_synth_prompt(&tk, &a, 50, &t1, &g1, err, sizeof err);
  ig_bench_synth_prompt(&tk, &b, 50, &t2, &g2, err, sizeof err);
  CHECK_EQ_STR(t1, t2);
  free(t1);
  free(t2);
}

int main(void) {
  test_sse();
  test_http();
  test_stats_rng();
  test_prompt_files();
  test_parse_tokenize();
  test_synth();
  TEST_DONE();
}
