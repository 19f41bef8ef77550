/* server/metrics: Prometheus counters, gauges and histograms under TGI's metric names (tgi_request_*,
 * tgi_queue_size, tgi_batch_current_*) and ignis' own (ignis_*), rendered in the text exposition format.
 * Updated and read on the loop thread only, so no locking. */
#ifndef IG_SERVER_METRICS_H
#define IG_SERVER_METRICS_H
#include "server/server.h"
#include "util/str.h"

#define IG_METRICS_MAX_BUCKETS 100

typedef struct ig_histogram {
  const char *name, *help;
  int n_buckets;
  double le[IG_METRICS_MAX_BUCKETS];
  long long counts[IG_METRICS_MAX_BUCKETS]; /* per bucket (not cumulative) */
  long long count;
  double sum;
} ig_histogram;

enum { IG_ERR_VALIDATION, IG_ERR_GENERATION, IG_ERR_OVERLOADED, IG_ERR_INCOMPLETE, IG_ERR_CANCELLED, IG_ERR_N };

typedef struct ig_metrics {
  long long request_count, request_success;
  long long request_failure[IG_ERR_N];
  long long http_requests, http_errors_4xx, http_errors_5xx;
  ig_histogram duration, validation_duration, queue_duration, inference_duration, time_per_token,
      input_length, generated_tokens, max_new_tokens;
  double start_time; /* CLOCK_MONOTONIC seconds */
} ig_metrics;

void ig_metrics_init(ig_metrics *m, int max_input_tokens, int max_total_tokens);
void ig_metrics_observe(ig_histogram *h, double v);
const char *ig_metrics_err_name(int err); /* "validation", "generation", "overloaded", ... */
/* Appends the exposition text: our series plus the engine's numbers (st may be NULL), open connections and
 * requests in flight. */
void ig_metrics_render(const ig_metrics *m, const ig_server_stats *st, int n_connections, int n_in_flight,
                       ig_str *o);

#endif
