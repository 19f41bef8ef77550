/* bench/stats: the summary of a run (throughput, latency percentiles, errors by kind) computed from the
 * measured records. Percentiles interpolate linearly between order statistics, as numpy does. */
#include "bench/bench.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *ig_bench_err_name(ig_bench_err e) {
  switch (e) {
  case IG_BENCH_OK: return "ok";
  case IG_BENCH_ERR_CONNECT: return "connect";
  case IG_BENCH_ERR_HTTP: return "http";
  case IG_BENCH_ERR_TIMEOUT: return "timeout";
  case IG_BENCH_ERR_DISCONNECT: return "disconnect";
  case IG_BENCH_ERR_MALFORMED: return "malformed";
  case IG_BENCH_ERR_STREAM: return "stream_error";
  case IG_BENCH_ERR_EMPTY: return "empty";
  default: return "?";
  }
}

double ig_bench_percentile(const double *sorted, size_t n, double pct) {
  if (n == 0) return NAN;
  if (n == 1) return sorted[0];
  double pos = pct / 100.0 * (double)(n - 1);
  if (pos <= 0) return sorted[0];
  if (pos >= (double)(n - 1)) return sorted[n - 1];
  size_t i = (size_t)pos;
  double f = pos - (double)i;
  return sorted[i] + (sorted[i + 1] - sorted[i]) * f;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* out: mean, p50, p90, p99, min, max (NaN when empty). Sorts v. */
static void describe(double *v, size_t n, double out[6]) {
  if (n == 0) {
    for (int i = 0; i < 6; i++) out[i] = NAN;
    return;
  }
  qsort(v, n, sizeof *v, cmp_double);
  double s = 0;
  for (size_t i = 0; i < n; i++) s += v[i];
  out[0] = s / (double)n;
  out[1] = ig_bench_percentile(v, n, 50);
  out[2] = ig_bench_percentile(v, n, 90);
  out[3] = ig_bench_percentile(v, n, 99);
  out[4] = v[0];
  out[5] = v[n - 1];
}

void ig_bench_summarize(ig_bench_result *res) {
  ig_bench_summary *s = &res->sum;
  memset(s, 0, sizeof *s);
  size_t n_itl = 0, n = 0;
  for (int i = 0; i < res->n_rec; i++) {
    ig_bench_record *r = &res->rec[i];
    if (r->warmup || !r->finished) continue;
    n++;
    if (!r->err) n_itl += (size_t)r->n_itl;
  }
  double *ttft = malloc((n + 1) * sizeof *ttft), *e2e = malloc((n + 1) * sizeof *e2e);
  double *tpot = malloc((n + 1) * sizeof *tpot), *itl = malloc((n_itl + 1) * sizeof *itl);
  size_t a = 0, b = 0, c = 0, d = 0;
  for (int i = 0; i < res->n_rec; i++) {
    ig_bench_record *r = &res->rec[i];
    if (r->warmup || !r->finished) continue;
    s->errors[r->err]++;
    if (r->err) {
      s->failed++;
      continue;
    }
    s->completed++;
    s->input_tokens += r->input_tokens;
    s->output_tokens += r->output_tokens;
    if (!ttft || !e2e || !tpot || !itl) continue;
    ttft[a++] = (r->t_first - r->t_start) * 1e3;
    e2e[b++] = (r->t_end - r->t_start) * 1e3;
    if (r->output_tokens > 1) tpot[c++] = (r->t_end - r->t_first) * 1e3 / (double)(r->output_tokens - 1);
    for (int k = 0; k < r->n_itl; k++) itl[d++] = (double)r->itl[k] * 1e3;
  }
  describe(ttft, a, s->ttft);
  describe(e2e, b, s->e2e);
  describe(tpot, c, s->tpot);
  describe(itl, d, s->itl);
  free(ttft);
  free(e2e);
  free(tpot);
  free(itl);
  s->duration_s = res->duration_s;
  if (s->duration_s > 0) {
    s->req_per_s = s->completed / s->duration_s;
    s->out_tok_per_s = (double)s->output_tokens / s->duration_s;
    s->total_tok_per_s = (double)(s->input_tokens + s->output_tokens) / s->duration_s;
  }
}
