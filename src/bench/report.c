/* bench/report: the text summary (stdout) and the JSON result file (--json-out): configuration, summary,
 * errors by kind and HTTP status, per-second series, and every request with its inter-token gaps. */
#include "bench/bench.h"
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static void line_stat(FILE *f, const char *name, const double v[6]) {
  fprintf(f, "%-8s mean %9.2f  p50 %9.2f  p90 %9.2f  p99 %9.2f  (ms)\n", name, v[0], v[1], v[2], v[3]);
}

void ig_bench_report_text(const ig_bench_config *cfg, const ig_bench_prompts *p, const ig_bench_result *r, FILE *f) {
  const ig_bench_summary *s = &r->sum;
  fprintf(f, "============ ignis bench ============\n");
  fprintf(f, "%-28s %s (%s)\n", "Server:", cfg->url, cfg->api == IG_BENCH_API_TGI ? "tgi" : "openai");
  if (r->model[0]) fprintf(f, "%-28s %s\n", "Model:", r->model);
  if (cfg->request_rate > 0)
    fprintf(f, "%-28s Poisson %.2f req/s, max concurrency %s\n", "Load:", cfg->request_rate,
            cfg->concurrency > 0 ? "capped" : "unlimited");
  else
    fprintf(f, "%-28s closed loop, concurrency %d\n", "Load:", cfg->concurrency > 0 ? cfg->concurrency : 1);
  fprintf(f, "%-28s %s\n", "Prompts:", p->note);
  if (r->interrupted) fprintf(f, "%-28s %s\n", "Interrupted:", "yes (Ctrl-C): requests still in flight are not counted");
  fprintf(f, "%-28s %d\n", "Successful requests:", s->completed);
  fprintf(f, "%-28s %d\n", "Failed requests:", s->failed);
  fprintf(f, "%-28s %.3f\n", "Duration (s):", s->duration_s);
  fprintf(f, "%-28s %lld\n", "Input tokens:", s->input_tokens);
  fprintf(f, "%-28s %lld\n", "Output tokens:", s->output_tokens);
  fprintf(f, "%-28s %.2f\n", "Request throughput (req/s):", s->req_per_s);
  fprintf(f, "%-28s %.1f\n", "Output throughput (tok/s):", s->out_tok_per_s);
  fprintf(f, "%-28s %.1f\n", "Total throughput (tok/s):", s->total_tok_per_s);
  line_stat(f, "TTFT", s->ttft);
  line_stat(f, "ITL", s->itl);
  line_stat(f, "TPOT", s->tpot);
  line_stat(f, "E2E", s->e2e);
  if (s->failed) {
    fprintf(f, "Errors:");
    for (int k = 1; k < IG_BENCH_ERR_COUNT; k++)
      if (s->errors[k]) fprintf(f, " %s=%d", ig_bench_err_name((ig_bench_err)k), s->errors[k]);
    fputc('\n', f);
    /* the first message of each kind, to say what went wrong */
    for (int k = 1; k < IG_BENCH_ERR_COUNT; k++) {
      for (int i = 0; i < r->n_rec; i++) {
        const ig_bench_record *rec = &r->rec[i];
        if (rec->warmup || !rec->finished || (int)rec->err != k) continue;
        fprintf(f, "  %-12s e.g. %s\n", ig_bench_err_name((ig_bench_err)k), rec->msg);
        break;
      }
    }
  }
  fprintf(f, "=====================================\n");
}

static json_t *num(double v) { return isfinite(v) ? json_real(v) : json_null(); }

static json_t *stat_obj(const double v[6]) {
  json_t *o = json_object();
  const char *k[6] = {"mean", "p50", "p90", "p99", "min", "max"};
  for (int i = 0; i < 6; i++) json_object_set_new(o, k[i], num(v[i]));
  return o;
}

static json_t *config_obj(const ig_bench_config *c, const ig_bench_result *r) {
  json_t *o = json_object();
  json_object_set_new(o, "url", json_string(c->url));
  json_object_set_new(o, "api", json_string(c->api == IG_BENCH_API_TGI ? "tgi" : "openai"));
  json_object_set_new(o, "model", r->model[0] ? json_string(r->model) : json_null());
  json_object_set_new(o, "concurrency", json_integer(c->concurrency));
  json_object_set_new(o, "request_rate", c->request_rate > 0 ? json_real(c->request_rate) : json_null());
  json_object_set_new(o, "num_requests", json_integer(c->num_requests));
  json_object_set_new(o, "warmup", json_integer(c->warmup));
  json_object_set_new(o, "input_tokens", c->prompts_file ? json_null() : json_integer(c->input_tokens));
  json_object_set_new(o, "output_tokens", c->output_tokens > 0 ? json_integer(c->output_tokens) : json_null());
  json_object_set_new(o, "ignore_eos", json_boolean(c->ignore_eos));
  json_object_set_new(o, "prompts_file", c->prompts_file ? json_string(c->prompts_file) : json_null());
  json_object_set_new(o, "model_id", c->model_id ? json_string(c->model_id) : json_null());
  json_object_set_new(o, "seed", json_integer((json_int_t)c->seed));
  json_object_set_new(o, "timeout_s", json_real(c->timeout_s));
  return o;
}

int ig_bench_write_json(const ig_bench_config *cfg, const ig_bench_prompts *p, const ig_bench_result *r,
                        const char *path, char *err, size_t errlen) {
  const ig_bench_summary *s = &r->sum;
  json_t *root = json_object();
  json_object_set_new(root, "tool", json_string("ignis bench"));
  json_object_set_new(root, "started_at", json_string(r->started_at));
  json_object_set_new(root, "config", config_obj(cfg, r));
  json_object_set_new(root, "prompts", json_string(p->note));
  json_object_set_new(root, "interrupted", json_boolean(r->interrupted));

  json_t *sum = json_object();
  json_object_set_new(sum, "completed", json_integer(s->completed));
  json_object_set_new(sum, "failed", json_integer(s->failed));
  json_object_set_new(sum, "duration_s", num(s->duration_s));
  json_object_set_new(sum, "input_tokens", json_integer(s->input_tokens));
  json_object_set_new(sum, "output_tokens", json_integer(s->output_tokens));
  json_object_set_new(sum, "request_throughput", num(s->req_per_s));
  json_object_set_new(sum, "output_throughput", num(s->out_tok_per_s));
  json_object_set_new(sum, "total_token_throughput", num(s->total_tok_per_s));
  json_object_set_new(sum, "ttft_ms", stat_obj(s->ttft));
  json_object_set_new(sum, "itl_ms", stat_obj(s->itl));
  json_object_set_new(sum, "tpot_ms", stat_obj(s->tpot));
  json_object_set_new(sum, "e2e_ms", stat_obj(s->e2e));
  json_object_set_new(root, "summary", sum);

  json_t *errs = json_object(), *kinds = json_object(), *status = json_object();
  for (int k = 1; k < IG_BENCH_ERR_COUNT; k++) json_object_set_new(kinds, ig_bench_err_name((ig_bench_err)k), json_integer(s->errors[k]));
  for (int i = 0; i < r->n_rec; i++) {
    const ig_bench_record *rec = &r->rec[i];
    if (rec->warmup || !rec->finished || rec->err != IG_BENCH_ERR_HTTP) continue;
    char key[16];
    snprintf(key, sizeof key, "%d", rec->http_status);
    json_t *v = json_object_get(status, key);
    json_object_set_new(status, key, json_integer(v ? json_integer_value(v) + 1 : 1));
  }
  json_object_set_new(errs, "total", json_integer(s->failed));
  json_object_set_new(errs, "by_kind", kinds);
  json_object_set_new(errs, "by_http_status", status);
  json_object_set_new(root, "errors", errs);

  json_t *series = json_object(), *tok = json_array(), *done = json_array();
  for (int i = 0; i < r->n_series; i++) {
    json_array_append_new(tok, json_integer(r->series_tokens[i]));
    json_array_append_new(done, json_integer(r->series_done[i]));
  }
  json_object_set_new(series, "interval_s", json_integer(1));
  json_object_set_new(series, "output_tokens", tok);
  json_object_set_new(series, "completed_requests", done);
  json_object_set_new(root, "series", series);

  json_t *reqs = json_array();
  for (int i = 0; i < r->n_rec; i++) {
    const ig_bench_record *rec = &r->rec[i];
    if (!rec->finished) continue;
    json_t *o = json_object();
    json_object_set_new(o, "warmup", json_boolean(rec->warmup));
    json_object_set_new(o, "prompt", json_integer(rec->prompt));
    json_object_set_new(o, "start_s", num(rec->t_start));
    json_object_set_new(o, "ttft_ms", rec->t_first >= 0 && !rec->warmup ? num((rec->t_first - rec->t_start) * 1e3) : json_null());
    json_object_set_new(o, "e2e_ms", num((rec->t_end - rec->t_start) * 1e3));
    json_object_set_new(o, "input_tokens", json_integer(rec->input_tokens));
    json_object_set_new(o, "output_tokens", json_integer(rec->output_tokens));
    json_object_set_new(o, "error", rec->err ? json_string(ig_bench_err_name(rec->err)) : json_null());
    if (rec->http_status) json_object_set_new(o, "http_status", json_integer(rec->http_status));
    if (rec->err) json_object_set_new(o, "message", json_string(rec->msg));
    json_t *itl = json_array();
    for (int k = 0; k < rec->n_itl; k++) json_array_append_new(itl, json_real(round((double)rec->itl[k] * 1e6) / 1e3));
    json_object_set_new(o, "itl_ms", itl);
    json_array_append_new(reqs, o);
  }
  json_object_set_new(root, "requests", reqs);

  int rc = json_dump_file(root, path, JSON_COMPACT);
  json_decref(root);
  if (rc) {
    snprintf(err, errlen, "cannot write %s", path);
    return -1;
  }
  return 0;
}
