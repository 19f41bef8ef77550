/* bench/cli: `ignis bench` flags, the run, and the reports. Kept in the library (not app/) so the tests can
 * drive the whole command in-process. */
#include "bench/bench.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ig_bench_config_default(ig_bench_config *c) {
  memset(c, 0, sizeof *c);
  c->url = "http://127.0.0.1:3000";
  c->api = IG_BENCH_API_TGI;
  c->concurrency = 0;
  c->num_requests = 100;
  c->input_tokens = 128;
  c->output_tokens = -1;
  c->timeout_s = 600;
  c->progress = 1;
  c->keep_alive = 1;
  c->max_distinct_prompts = 1024;
}

static const char usage[] =
    "usage: ignis bench --url URL [--api tgi|openai] [--model NAME]\n"
    "                   (--concurrency N | --request-rate R [--concurrency N])\n"
    "                   [--num-requests M] [--input-tokens I] [--output-tokens O] [--ignore-eos]\n"
    "                   [--prompts FILE.jsonl] [--model-id DIR] [--warmup K] [--seed S] [--timeout SEC]\n"
    "                   [--json-out FILE] [--svg-out FILE] [--no-progress] [--no-keep-alive]\n"
    "                   [--fail-on-error]\n"
    "\n"
    "Benchmarks a server speaking TGI's (POST /generate_stream) or OpenAI's (POST /v1/completions) streaming\n"
    "API: every request is streamed; time to first token, every inter-token gap and end-to-end time are\n"
    "recorded; throughput, latency percentiles and errors by kind are reported.\n"
    "\n"
    "  --url URL            server base URL (default http://127.0.0.1:3000; or env IGNIS_BENCH_URL)\n"
    "  --api tgi|openai     which API to use (default tgi)\n"
    "  --model NAME         OpenAI \"model\" (default: the first of GET /v1/models)\n"
    "  --concurrency N      closed loop: N requests in flight (default 1); with --request-rate: a cap\n"
    "  --request-rate R     open loop: Poisson arrivals, R requests per second\n"
    "  --num-requests M     measured requests (default 100)\n"
    "  --warmup K           requests sent first, not counted (default 0)\n"
    "  --input-tokens I     synthetic prompts of exactly I tokens, counted by the server's POST /tokenize\n"
    "                       (default 128)\n"
    "  --output-tokens O    max new tokens per request (default 128, or the prompts file's lengths)\n"
    "  --ignore-eos         ask for exactly O tokens: OpenAI \"ignore_eos\" (vLLM, ignis); TGI has no such\n"
    "                       option (sent as an extension with \"stop\": []), so TGI may stop early at EOS\n"
    "  --prompts FILE       JSONL or JSON array: {\"prompt\": ..., \"output_tokens\": N} or ShareGPT records\n"
    "                       ({\"conversations\": [{\"from\": \"human\", ...}, {\"from\": \"gpt\", ...}]})\n"
    "  --model-id DIR       count prompt tokens with the model's own tokenizer (a directory or an org/name in\n"
    "                       the local Hugging Face cache) instead of the server's POST /tokenize\n"
    "  --seed S             seeds prompts and arrival times (default 0)\n"
    "  --timeout SEC        per-request limit (default 600)\n"
    "  --json-out FILE      the whole result as JSON (configuration, summary, series, every request)\n"
    "  --svg-out FILE       a self-contained SVG: output tokens/s over time, TTFT/ITL/E2E distributions\n"
    "  --no-progress        no live progress line on stderr\n"
    "  --no-keep-alive      a new connection for every request (default: reuse idle connections, so TTFT\n"
    "                       holds no TCP handshake; a reused connection the server closed is retried once)\n"
    "  --fail-on-error      exit 1 when any measured request failed\n"
    "\n"
    "Exit: 0 the run completed (errors are reported), 1 every request failed (or --fail-on-error),\n"
    "2 bad usage or setup failure, 130 interrupted (Ctrl-C stops the run and reports the finished requests).\n";

static int parse_int(const char *s, long lo, long hi, long *out) {
  char *e;
  errno = 0;
  long v = strtol(s, &e, 10);
  if (errno || e == s || *e || v < lo || v > hi) return -1;
  *out = v;
  return 0;
}

static int parse_double(const char *s, double lo, double *out) {
  char *e;
  errno = 0;
  double v = strtod(s, &e);
  if (errno || e == s || *e || !(v >= lo)) return -1;
  *out = v;
  return 0;
}

/* Returns 0, 1 for --help, or -1 with err filled. Flags take "--flag value" or "--flag=value". */
static int parse(ig_bench_config *c, int argc, char **argv, int *fail_on_error, char *err, size_t errlen) {
  const char *env_url = getenv("IGNIS_BENCH_URL");
  if (env_url && *env_url) c->url = env_url;
  for (int i = 1; i < argc; i++) {
    char *a = argv[i];
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) return 1;
    if (strncmp(a, "--", 2)) {
      snprintf(err, errlen, "unexpected argument '%s'", a);
      return -1;
    }
    char name[64];
    const char *val = NULL;
    const char *eq = strchr(a, '=');
    size_t nl = eq ? (size_t)(eq - a) : strlen(a);
    if (nl >= sizeof name) nl = sizeof name - 1;
    memcpy(name, a, nl);
    name[nl] = 0;
    /* boolean flags */
    if (!strcmp(name, "--ignore-eos")) {
      c->ignore_eos = 1;
      continue;
    }
    if (!strcmp(name, "--no-progress")) {
      c->progress = 0;
      continue;
    }
    if (!strcmp(name, "--no-keep-alive")) {
      c->keep_alive = 0;
      continue;
    }
    if (!strcmp(name, "--fail-on-error")) {
      *fail_on_error = 1;
      continue;
    }
    if (eq) val = eq + 1;
    else if (i + 1 < argc) val = argv[++i];
    else {
      snprintf(err, errlen, "%s needs a value", name);
      return -1;
    }
    long v;
    double d;
    int bad = 0;
    if (!strcmp(name, "--url")) c->url = val;
    else if (!strcmp(name, "--api")) {
      if (!strcmp(val, "tgi")) c->api = IG_BENCH_API_TGI;
      else if (!strcmp(val, "openai")) c->api = IG_BENCH_API_OPENAI;
      else bad = 1;
    } else if (!strcmp(name, "--model")) c->model = val;
    else if (!strcmp(name, "--model-id")) c->model_id = val;
    else if (!strcmp(name, "--prompts")) c->prompts_file = val;
    else if (!strcmp(name, "--json-out")) c->json_out = val;
    else if (!strcmp(name, "--svg-out")) c->svg_out = val;
    else if (!strcmp(name, "--concurrency")) bad = parse_int(val, 1, 1000000, &v) || (c->concurrency = (int)v, 0);
    else if (!strcmp(name, "--num-requests")) bad = parse_int(val, 1, 100000000, &v) || (c->num_requests = (int)v, 0);
    else if (!strcmp(name, "--warmup")) bad = parse_int(val, 0, 100000000, &v) || (c->warmup = (int)v, 0);
    else if (!strcmp(name, "--input-tokens")) bad = parse_int(val, 1, 10000000, &v) || (c->input_tokens = (int)v, 0);
    else if (!strcmp(name, "--output-tokens")) bad = parse_int(val, 1, 10000000, &v) || (c->output_tokens = (int)v, 0);
    else if (!strcmp(name, "--seed")) {
      char *e;
      errno = 0;
      unsigned long long s = strtoull(val, &e, 10);
      if (errno || e == val || *e) bad = 1;
      else c->seed = s;
    } else if (!strcmp(name, "--request-rate")) bad = parse_double(val, 0, &d) || (c->request_rate = d, 0);
    else if (!strcmp(name, "--timeout")) bad = parse_double(val, 0.001, &d) || (c->timeout_s = d, 0);
    else {
      snprintf(err, errlen, "unknown option '%s' (see ignis bench --help)", name);
      return -1;
    }
    if (bad) {
      snprintf(err, errlen, "bad value for %s: '%s'", name, val);
      return -1;
    }
  }
  return 0;
}

int ig_bench_parse_args(ig_bench_config *c, int argc, char **argv, char *err, size_t errlen) {
  int foe = 0;
  return parse(c, argc, argv, &foe, err, errlen);
}

int ig_bench_main(int argc, char **argv) {
  ig_bench_config cfg;
  ig_bench_config_default(&cfg);
  char err[256] = "";
  int fail_on_error = 0;
  int prc = parse(&cfg, argc, argv, &fail_on_error, err, sizeof err);
  if (prc == 1) {
    fputs(usage, stdout);
    return 0;
  }
  if (prc) {
    fprintf(stderr, "ignis bench: %s\n", err);
    return 2;
  }
  if (cfg.request_rate <= 0 && cfg.concurrency <= 0) cfg.concurrency = 1;

  ig_bench_prompts prompts;
  if (ig_bench_prepare(&cfg, &prompts, err, sizeof err)) {
    fprintf(stderr, "ignis bench: %s\n", err);
    return 2;
  }
  ig_bench_result res;
  if (ig_bench_run(&cfg, &prompts, &res, err, sizeof err)) {
    fprintf(stderr, "ignis bench: %s\n", err);
    ig_bench_prompts_free(&prompts);
    return 2;
  }
  ig_bench_report_text(&cfg, &prompts, &res, stdout);
  fflush(stdout);
  int rc = 0;
  if (cfg.json_out && ig_bench_write_json(&cfg, &prompts, &res, cfg.json_out, err, sizeof err)) {
    fprintf(stderr, "ignis bench: %s\n", err);
    rc = 2;
  }
  if (cfg.svg_out && ig_bench_write_svg(&cfg, &res, cfg.svg_out, err, sizeof err)) {
    fprintf(stderr, "ignis bench: %s\n", err);
    rc = 2;
  }
  if (!rc && res.interrupted) rc = 130;
  if (!rc && res.sum.completed == 0 && res.sum.failed > 0) rc = 1;
  if (!rc && fail_on_error && res.sum.failed > 0) rc = 1;
  ig_bench_result_free(&res);
  ig_bench_prompts_free(&prompts);
  return rc;
}
