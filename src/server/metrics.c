/* server/metrics: see metrics.h. Bucket layouts are TGI's (router/src/server.rs): 35 durations growing by 1.5x
 * from 0.1 ms, and 100 even steps up to max_input_tokens / max_total_tokens for the token counts. */
#include "server/metrics.h"
#include <string.h>
#include <time.h>

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void hist_duration(ig_histogram *h, const char *name, const char *help) {
  h->name = name;
  h->help = help;
  h->n_buckets = 35;
  double v = 0.0001;
  for (int i = 0; i < 35; i++) {
    v *= 1.5;
    h->le[i] = v;
  }
}

static void hist_linear(ig_histogram *h, const char *name, const char *help, int max) {
  h->name = name;
  h->help = help;
  h->n_buckets = 100;
  if (max < 1) max = 1;
  for (int i = 0; i < 100; i++) h->le[i] = (double)max / 100.0 * (i + 1);
}

void ig_metrics_init(ig_metrics *m, int max_input_tokens, int max_total_tokens) {
  memset(m, 0, sizeof *m);
  hist_duration(&m->duration, "tgi_request_duration", "End-to-end request duration in seconds");
  hist_duration(&m->validation_duration, "tgi_request_validation_duration", "Validation (tokenization) duration");
  hist_duration(&m->queue_duration, "tgi_request_queue_duration", "Time spent waiting in the queue");
  hist_duration(&m->inference_duration, "tgi_request_inference_duration", "Time from first schedule to last token");
  hist_duration(&m->time_per_token, "tgi_request_mean_time_per_token_duration", "Mean time per generated token");
  hist_linear(&m->input_length, "tgi_request_input_length", "Prompt tokens per request", max_input_tokens);
  hist_linear(&m->generated_tokens, "tgi_request_generated_tokens", "Generated tokens per request", max_total_tokens);
  hist_linear(&m->max_new_tokens, "tgi_request_max_new_tokens", "max_new_tokens per request", max_total_tokens);
  m->start_time = now_s();
}

void ig_metrics_observe(ig_histogram *h, double v) {
  int i = 0;
  while (i < h->n_buckets && v > h->le[i]) i++;
  if (i < h->n_buckets) h->counts[i]++;
  h->count++;
  h->sum += v;
}

const char *ig_metrics_err_name(int err) {
  static const char *names[IG_ERR_N] = {"validation", "generation", "overloaded", "incomplete_generation",
                                        "cancelled"};
  return err >= 0 && err < IG_ERR_N ? names[err] : "unknown";
}

static void counter(ig_str *o, const char *name, const char *help, long long v) {
  ig_str_printf(o, "# HELP %s %s\n# TYPE %s counter\n%s %lld\n", name, help, name, name, v);
}

static void gauge(ig_str *o, const char *name, const char *help, double v) {
  ig_str_printf(o, "# HELP %s %s\n# TYPE %s gauge\n%s %.12g\n", name, help, name, name, v);
}

static void hist(ig_str *o, const ig_histogram *h) {
  ig_str_printf(o, "# HELP %s %s\n# TYPE %s histogram\n", h->name, h->help, h->name);
  long long cum = 0;
  for (int i = 0; i < h->n_buckets; i++) {
    cum += h->counts[i];
    ig_str_printf(o, "%s_bucket{le=\"%.10g\"} %lld\n", h->name, h->le[i], cum);
  }
  ig_str_printf(o, "%s_bucket{le=\"+Inf\"} %lld\n%s_sum %.12g\n%s_count %lld\n", h->name, h->count, h->name, h->sum,
                h->name, h->count);
}

/* a histogram per step kind, labelled method="prefill" / "decode" as TGI's batch metrics (buckets as above) */
static void step_hist(ig_str *o, const char *name, const char *help, const long long (*counts)[36], const double *sum) {
  static const char *method[2] = {"prefill", "decode"};
  ig_str_printf(o, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
  for (int k = 0; k < 2; k++) {
    long long cum = 0;
    double le = 0.0001;
    for (int i = 0; i < 35; i++) {
      le *= 1.5;
      cum += counts[k][i];
      ig_str_printf(o, "%s_bucket{method=\"%s\",le=\"%.10g\"} %lld\n", name, method[k], le, cum);
    }
    cum += counts[k][35];
    ig_str_printf(o, "%s_bucket{method=\"%s\",le=\"+Inf\"} %lld\n%s_sum{method=\"%s\"} %.12g\n%s_count{method=\"%s\"} %lld\n",
                  name, method[k], cum, name, method[k], sum[k], name, method[k], cum);
  }
}

void ig_metrics_render(const ig_metrics *m, const ig_server_stats *st, int n_connections, int n_in_flight,
                       ig_str *o) {
  counter(o, "tgi_request_count", "Generation requests received", m->request_count);
  counter(o, "tgi_request_success", "Generation requests that succeeded", m->request_success);
  ig_str_puts(o, "# HELP tgi_request_failure Generation requests that failed, by error type\n"
                 "# TYPE tgi_request_failure counter\n");
  for (int e = 0; e < IG_ERR_N; e++)
    ig_str_printf(o, "tgi_request_failure{err=\"%s\"} %lld\n", ig_metrics_err_name(e), m->request_failure[e]);
  const ig_histogram *hs[] = {&m->duration,        &m->validation_duration, &m->queue_duration,
                              &m->inference_duration, &m->time_per_token,   &m->input_length,
                              &m->generated_tokens, &m->max_new_tokens};
  for (size_t i = 0; i < sizeof hs / sizeof hs[0]; i++) hist(o, hs[i]);
  ig_server_stats z;
  memset(&z, 0, sizeof z);
  if (!st) st = &z;
  gauge(o, "tgi_queue_size", "Requests waiting in the queue", st->queue_size);
  gauge(o, "tgi_batch_current_size", "Sequences in the running batch", st->batch_size);
  gauge(o, "tgi_batch_current_max_tokens", "Token budget of the running batch", st->batch_max_tokens);
  ig_str_puts(o, "# HELP tgi_batch_inference_count Engine steps, by kind (prefill: with prompt rows)\n"
                 "# TYPE tgi_batch_inference_count counter\n");
  ig_str_printf(o, "tgi_batch_inference_count{method=\"prefill\"} %lld\ntgi_batch_inference_count{method=\"decode\"} %lld\n",
                st->step_count[0], st->step_count[1]);
  ig_str_puts(o, "# HELP tgi_batch_inference_success Engine steps that succeeded, by kind\n"
                 "# TYPE tgi_batch_inference_success counter\n");
  ig_str_printf(o, "tgi_batch_inference_success{method=\"prefill\"} %lld\ntgi_batch_inference_success{method=\"decode\"} %lld\n",
                st->step_count[0] - st->step_failed[0], st->step_count[1] - st->step_failed[1]);
  step_hist(o, "tgi_batch_inference_duration", "Engine step duration in seconds (schedule, forward, tokens), by kind",
            st->step_hist, st->step_s);
  step_hist(o, "tgi_batch_forward_duration", "Model forward (and sampling) duration in seconds, by kind",
            st->forward_hist, st->forward_s);
  ig_str_puts(o, "# HELP tgi_batch_next_size Sequences per engine step\n# TYPE tgi_batch_next_size histogram\n");
  long long cum = 0;
  for (int i = 0; i < 11; i++) {
    cum += st->size_hist[i];
    ig_str_printf(o, "tgi_batch_next_size_bucket{le=\"%d\"} %lld\n", 1 << i, cum);
  }
  cum += st->size_hist[11];
  ig_str_printf(o, "tgi_batch_next_size_bucket{le=\"+Inf\"} %lld\ntgi_batch_next_size_sum %lld\ntgi_batch_next_size_count %lld\n",
                cum, st->size_sum, cum);
  gauge(o, "ignis_uptime_seconds", "Seconds since the server started", now_s() - m->start_time);
  gauge(o, "ignis_kv_blocks_used", "KV-cache blocks in use", st->kv_blocks_used);
  gauge(o, "ignis_kv_blocks_total", "KV-cache blocks in all", st->kv_blocks_total);
  counter(o, "ignis_preemptions_total", "Sequences preempted (recomputed) for lack of KV blocks", st->preemptions);
  counter(o, "ignis_engine_steps_total", "Engine steps (forward passes)", st->steps);
  counter(o, "ignis_prefill_tokens_total", "Prompt tokens computed", st->prefill_tokens);
  counter(o, "ignis_decode_tokens_total", "Tokens generated by decode steps", st->decode_tokens);
  gauge(o, "ignis_kv_blocks_cached", "Free KV-cache blocks that keep a computed prefix (--prefix-caching)",
        st->kv_blocks_cached);
  counter(o, "ignis_prefix_cache_queries_total", "Tokens of sequences admitted with --prefix-caching",
          st->prefix_query_tokens);
  counter(o, "ignis_prefix_cache_hits_total", "Of those, tokens found in the prefix cache", st->prefix_hit_tokens);
  counter(o, "ignis_grammar_masks_total", "Token masks of constrained rows (JSON mode, schemas, regexes, tool calls)",
          st->grammar_masks);
  counter(o, "ignis_grammar_mask_walks_total", "Of those, computed by a walk of the vocabulary (not found cached)",
          st->grammar_walks);
  gauge(o, "ignis_grammar_mask_cache_entries", "Token masks kept in the cache", st->grammar_cache_entries);
  counter(o, "ignis_speculative_draft_tokens_total",
          "Tokens drafted by n-gram lookup for greedy requests and checked in their steps (--speculate)",
          st->spec_draft_tokens);
  counter(o, "ignis_speculative_accepted_tokens_total",
          "Of those, accepted: tokens generated beyond the one per step (--speculate)", st->spec_accepted_tokens);
  gauge(o, "ignis_http_connections", "Open HTTP connections", n_connections);
  gauge(o, "ignis_requests_in_flight", "Generation and tokenize requests being served", n_in_flight);
  counter(o, "ignis_http_requests_total", "HTTP requests answered", m->http_requests);
  counter(o, "ignis_http_responses_4xx_total", "HTTP responses with a 4xx status", m->http_errors_4xx);
  counter(o, "ignis_http_responses_5xx_total", "HTTP responses with a 5xx status", m->http_errors_5xx);
}
