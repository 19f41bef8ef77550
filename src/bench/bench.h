/* bench/bench: `ignis bench`, a load generator for servers speaking TGI's or OpenAI's streaming API.
 * One libevent thread drives many HTTP/1.1 connections (closed loop: --concurrency N; open loop: Poisson
 * --request-rate R), records per request TTFT, every inter-token gap, end-to-end time, tokens in and out
 * and the error kind, and reports throughput and latency percentiles (text, JSON, SVG).
 * Usage from C: ig_bench_config_default, fill, ig_bench_prepare (prompts), ig_bench_run, report, free. */
#ifndef IG_BENCH_BENCH_H
#define IG_BENCH_BENCH_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum { IG_BENCH_API_TGI = 0, IG_BENCH_API_OPENAI = 1 } ig_bench_api;

typedef struct ig_bench_config {
  const char *url;         /* http://host:port[/prefix]; default http://127.0.0.1:3000 */
  ig_bench_api api;
  const char *model;       /* OpenAI "model"; NULL: first id of GET /v1/models, else omitted */
  int concurrency;         /* closed loop when request_rate <= 0; caps in-flight requests otherwise (0: none) */
  double request_rate;     /* Poisson arrivals per second; <= 0: closed loop */
  int num_requests;        /* measured requests (default 100) */
  int warmup;              /* requests sent first and excluded from the statistics */
  int input_tokens;        /* synthetic prompt length (default 128) */
  int output_tokens;       /* max new tokens (default 128); -1: take them from the prompts file (default 128) */
  int ignore_eos;
  const char *prompts_file; /* JSONL (or a JSON array) of {"prompt","output_tokens"} or ShareGPT records */
  const char *model_id;    /* local model directory: tokenizer for synthetic prompts (hook, see prompts.c) */
  uint64_t seed;
  double timeout_s;        /* per request (default 600) */
  const char *json_out;
  const char *svg_out;
  int progress;            /* live progress line on stderr once a second (default on) */
  int keep_alive;          /* reuse connections between requests (default on) */
  int max_distinct_prompts; /* synthetic prompts made (default 1024); requests beyond cycle through them */
} ig_bench_config;

void ig_bench_config_default(ig_bench_config *c);

/* Error kinds a request can end with. */
typedef enum {
  IG_BENCH_OK = 0,
  IG_BENCH_ERR_CONNECT,    /* could not connect */
  IG_BENCH_ERR_HTTP,       /* a non-200 status (the status is kept) */
  IG_BENCH_ERR_TIMEOUT,    /* no complete answer within --timeout */
  IG_BENCH_ERR_DISCONNECT, /* the connection ended (FIN or RST) before the answer was complete */
  IG_BENCH_ERR_MALFORMED,  /* unparsable HTTP, SSE data that is not the expected JSON */
  IG_BENCH_ERR_STREAM,     /* an {"error": ...} event inside a 200 stream */
  IG_BENCH_ERR_EMPTY,      /* a complete 200 answer without a single token */
  IG_BENCH_ERR_COUNT
} ig_bench_err;
const char *ig_bench_err_name(ig_bench_err e);

/* One prompt to send. */
typedef struct ig_bench_prompt {
  char *text;
  int input_tokens;  /* as counted by the tokenizer, or estimated (input_exact 0) */
  int input_exact;
  int output_tokens; /* max new tokens for it */
} ig_bench_prompt;

typedef struct ig_bench_prompts {
  ig_bench_prompt *v;
  int n;
  char note[160];    /* how they were made (shown in the report) */
} ig_bench_prompts;
void ig_bench_prompts_free(ig_bench_prompts *p);

/* One request's record. Times are seconds relative to the start of the measured phase. */
typedef struct ig_bench_record {
  int prompt;          /* index into the prompts */
  int warmup;
  int finished;        /* 0: never sent, or still in flight when the run was interrupted (not counted) */
  double t_start, t_first, t_end; /* t_first < 0: no token */
  int input_tokens, output_tokens; /* output: token events, or the server's usage count when given */
  int events;          /* token events received */
  float *itl;          /* inter-token gaps, seconds (events - 1 of them); freed by ig_bench_result_free */
  int n_itl, cap_itl;
  ig_bench_err err;
  int http_status;
  char msg[120];
} ig_bench_record;

typedef struct ig_bench_summary {
  int completed, failed;
  double duration_s;
  long long input_tokens, output_tokens;
  double req_per_s, out_tok_per_s, total_tok_per_s;
  /* milliseconds: mean, p50, p90, p99, min, max */
  double ttft[6], itl[6], e2e[6], tpot[6];
  int errors[IG_BENCH_ERR_COUNT];
} ig_bench_summary;

typedef struct ig_bench_result {
  ig_bench_record *rec; /* warmup records first, then measured ones */
  int n_rec;
  double duration_s;    /* measured phase: first send to last completion */
  int *series_tokens;   /* output tokens received in each second of the measured phase */
  int *series_done;     /* requests completed in each second */
  int n_series;
  char started_at[32];  /* UTC, ISO 8601 */
  char model[128];      /* the model name used (OpenAI) */
  int interrupted;      /* SIGINT ended the run early: the statistics cover the finished requests */
  ig_bench_summary sum;
} ig_bench_result;
void ig_bench_result_free(ig_bench_result *r);

/* Make the prompts (synthetic via the server's /tokenize, or from cfg->prompts_file). Needs the server for
 * synthetic prompts. Returns 0 or negative with err filled. */
int ig_bench_prepare(const ig_bench_config *cfg, ig_bench_prompts *out, char *err, size_t errlen);
/* Run the benchmark; fills res (caller frees with ig_bench_result_free). */
int ig_bench_run(const ig_bench_config *cfg, const ig_bench_prompts *prompts, ig_bench_result *res, char *err,
                 size_t errlen);
/* Compute res->sum from the records (ig_bench_run calls it). */
void ig_bench_summarize(ig_bench_result *res);

/* Reports. */
void ig_bench_report_text(const ig_bench_config *cfg, const ig_bench_prompts *p, const ig_bench_result *r, FILE *f);
int ig_bench_write_json(const ig_bench_config *cfg, const ig_bench_prompts *p, const ig_bench_result *r,
                        const char *path, char *err, size_t errlen);
int ig_bench_write_svg(const ig_bench_config *cfg, const ig_bench_result *r, const char *path, char *err,
                       size_t errlen);

/* The whole command: parse argv (argv[0] is "bench"), run, report. Returns the exit code
 * (0 ok, 1 the run had errors... see --help; 2 usage or setup errors). */
int ig_bench_main(int argc, char **argv);
int ig_bench_parse_args(ig_bench_config *c, int argc, char **argv, char *err, size_t errlen);

/* Open loop: the planned arrival times (seconds after the measured phase starts) of n requests at a Poisson
 * rate; out[0] = 0. The run follows this plan exactly (same seed, same plan). Returns 0, or -1 on bad args. */
int ig_bench_arrival_plan(uint64_t seed, double rate, int n, double *out);

/* Percentile (0..100) of a sorted array, linearly interpolated (numpy's default). */
double ig_bench_percentile(const double *sorted, size_t n, double pct);

#endif
