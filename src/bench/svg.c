/* bench/svg: --svg-out, one self-contained SVG (no scripts, no external fonts or files): a header with the
 * run's numbers, output tokens/s over time (1 s bins), and the distributions (CDFs) of TTFT, ITL and
 * end-to-end latency with their p50/p90/p99 marked. */
#include "bench/bench.h"
#include "util/str.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define W 1000
#define H 780

static void xml_text(ig_str *s, const char *t) {
  for (; *t; t++) {
    switch (*t) {
    case '&': ig_str_puts(s, "&amp;"); break;
    case '<': ig_str_puts(s, "&lt;"); break;
    case '>': ig_str_puts(s, "&gt;"); break;
    case '"': ig_str_puts(s, "&quot;"); break;
    default:
      if ((unsigned char)*t >= 0x20 || *t == '\t') ig_str_putc(s, *t);
    }
  }
}

/* Tick step giving about n ticks over [0, hi]. */
static double nice_step(double hi, int n) {
  if (!(hi > 0)) return 1;
  double raw = hi / n, mag = pow(10, floor(log10(raw))), f = raw / mag;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
}

/* A tick label: as many decimals as the step needs; thousands as "k" when the step allows. */
static void fmt_num(char *b, size_t n, double v, double step) {
  if (fabs(v) < step * 1e-6) v = 0;
  if (step >= 1000 && fabs(v) >= 10000) {
    snprintf(b, n, "%.0fk", v / 1000);
    return;
  }
  int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
  if (dec > 6) dec = 6;
  snprintf(b, n, "%.*f", dec, v);
}

typedef struct panel {
  double x, y, w, h;   /* plot area in pixels */
  double xmax, ymax;   /* y starts at 0; x at xmin */
  double xmin;
} panel;

static double px(const panel *p, double v) {
  double span = p->xmax - p->xmin;
  return p->x + (span > 0 ? (v - p->xmin) / span : 0) * p->w;
}
static double py(const panel *p, double v) { return p->y + p->h - (p->ymax > 0 ? v / p->ymax : 0) * p->h; }

static void axes(ig_str *s, const panel *p, const char *title, const char *xlabel, const char *ylabel, int ypct) {
  ig_str_printf(s, "<text x=\"%.1f\" y=\"%.1f\" class=\"t\">", p->x, p->y - 12);
  xml_text(s, title);
  ig_str_puts(s, "</text>\n");
  ig_str_printf(s, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" class=\"bg\"/>\n", p->x, p->y, p->w, p->h);
  double xs = nice_step(p->xmax - p->xmin, 6), ys = nice_step(p->ymax, 5);
  char b[32];
  for (double v = ceil(p->xmin / xs - 1e-9) * xs; v <= p->xmax + xs * 1e-4; v += xs) {
    fmt_num(b, sizeof b, v, xs);
    ig_str_printf(s, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"g\"/>", px(p, v), p->y, px(p, v), p->y + p->h);
    ig_str_printf(s, "<text x=\"%.1f\" y=\"%.1f\" class=\"xt\">%s</text>\n", px(p, v), p->y + p->h + 14, b);
  }
  for (double v = 0; v <= p->ymax * 1.0001; v += ys) {
    if (ypct) snprintf(b, sizeof b, "%.0f%%", v);
    else fmt_num(b, sizeof b, v, ys);
    ig_str_printf(s, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"g\"/>", p->x, py(p, v), p->x + p->w, py(p, v));
    ig_str_printf(s, "<text x=\"%.1f\" y=\"%.1f\" class=\"yt\">%s</text>\n", p->x - 5, py(p, v) + 4, b);
  }
  ig_str_printf(s, "<text x=\"%.1f\" y=\"%.1f\" class=\"xl\">", p->x + p->w / 2, p->y + p->h + 32);
  xml_text(s, xlabel);
  ig_str_puts(s, "</text>\n");
  ig_str_printf(s, "<text transform=\"translate(%.1f,%.1f) rotate(-90)\" class=\"xl\">", p->x - 44, p->y + p->h / 2);
  xml_text(s, ylabel);
  ig_str_puts(s, "</text>\n");
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* A CDF panel over v (ms), sorted here; x runs to p99.9 so one outlier does not flatten the curve. */
static void cdf_panel(ig_str *s, panel *p, const char *title, const char *ylabel, double *v, size_t n,
                      const char *color) {
  qsort(v, n, sizeof *v, cmp_double);
  double hi = n ? ig_bench_percentile(v, n, 99.9) : 1;
  double lo = n ? v[0] : 0;
  p->xmax = hi > 0 ? hi * 1.05 : 1;
  p->xmin = 0;
  /* a narrow distribution far from 0 gets a zoomed axis, else it is drawn as a vertical line */
  if (n && lo > 0.5 * hi && hi > lo) {
    double step = nice_step(hi - lo, 5);
    p->xmin = floor(lo / step) * step;
    p->xmax = (ceil(hi / step) + (hi == ceil(hi / step) * step)) * step;
  }
  p->ymax = 100;
  char label[64];
  snprintf(label, sizeof label, "milliseconds%s", n && v[n - 1] > hi ? " (to p99.9)" : "");
  axes(s, p, title, label, ylabel, 1);
  if (!n) {
    ig_str_printf(s, "<text x=\"%.1f\" y=\"%.1f\" class=\"xl\">no data</text>\n", p->x + p->w / 2, p->y + p->h / 2);
    return;
  }
  ig_str_printf(s, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", color);
  int pts = n < 400 ? (int)n : 400;
  for (int i = 0; i <= pts; i++) {
    double q = (double)i / pts * 100.0;
    double x = ig_bench_percentile(v, n, q);
    if (x > p->xmax) x = p->xmax;
    if (x < p->xmin) x = p->xmin;
    ig_str_printf(s, "%.1f,%.1f ", px(p, x), py(p, q));
  }
  ig_str_puts(s, "\"/>\n");
  const double qs[3] = {50, 90, 99};
  const char *names[3] = {"p50", "p90", "p99"};
  for (int i = 0; i < 3; i++) {
    double x = ig_bench_percentile(v, n, qs[i]);
    if (x > p->xmax) continue;
    char b[32];
    double span = p->xmax - p->xmin;
    fmt_num(b, sizeof b, x, span >= 100 ? 1 : span >= 10 ? 0.1 : span >= 1 ? 0.01 : 0.001);
    ig_str_printf(s, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"m\"/>", px(p, x), p->y, px(p, x), p->y + p->h);
    int right = px(p, x) > p->x + 0.7 * p->w; /* keep the label inside the panel */
    ig_str_printf(s, "<text x=\"%.1f\" y=\"%.1f\" class=\"ml\"%s>%s %s</text>\n", px(p, x) + (right ? -3 : 3),
                  p->y + 14 + 13 * i, right ? " text-anchor=\"end\"" : "", names[i], b);
  }
}

/* Tokens/s in second i; the last bin is usually partial: scaled by the fraction of a second it covers. */
static double series_rate(const ig_bench_result *r, int i) {
  double v = r->series_tokens[i];
  if (i == r->n_series - 1 && r->duration_s > i && r->duration_s - i < 1) v /= (r->duration_s - i);
  return v;
}

int ig_bench_write_svg(const ig_bench_config *cfg, const ig_bench_result *r, const char *path, char *err,
                       size_t errlen) {
  const ig_bench_summary *sm = &r->sum;
  ig_str s;
  ig_str_init(&s);
  ig_str_printf(&s,
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
                "font-family=\"Helvetica, Arial, sans-serif\">\n"
                "<style>.t{font-size:14px;font-weight:bold}.h{font-size:20px;font-weight:bold}.s{font-size:13px}"
                ".bg{fill:#fafafa;stroke:#999}.g{stroke:#e2e2e2}.xt{font-size:11px;text-anchor:middle}"
                ".yt{font-size:11px;text-anchor:end}.xl{font-size:12px;text-anchor:middle;fill:#444}"
                ".m{stroke:#555;stroke-dasharray:4 3}.ml{font-size:11px;fill:#333}</style>\n"
                "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n",
                W, H, W, H, W, H);
  /* header */
  ig_str_puts(&s, "<text x=\"30\" y=\"34\" class=\"h\">ignis bench: ");
  char head[512];
  snprintf(head, sizeof head, "%s (%s%s%s)", cfg->url, cfg->api == IG_BENCH_API_TGI ? "tgi" : "openai",
           r->model[0] ? ", " : "", r->model);
  xml_text(&s, head);
  ig_str_puts(&s, "</text>\n<text x=\"30\" y=\"56\" class=\"s\">");
  char load[96];
  if (cfg->request_rate > 0) snprintf(load, sizeof load, "Poisson %.2f req/s", cfg->request_rate);
  else snprintf(load, sizeof load, "concurrency %d", cfg->concurrency > 0 ? cfg->concurrency : 1);
  char outs[32];
  if (cfg->output_tokens > 0) snprintf(outs, sizeof outs, "%d", cfg->output_tokens);
  else snprintf(outs, sizeof outs, "from file");
  char ins[32];
  if (cfg->prompts_file) snprintf(ins, sizeof ins, "from file");
  else snprintf(ins, sizeof ins, "%d", cfg->input_tokens);
  snprintf(head, sizeof head, "%s, %d requests (%d failed), input %s / output %s tokens, started %s%s", load,
           sm->completed + sm->failed, sm->failed, ins, outs, r->started_at,
           r->interrupted ? " (interrupted)" : "");
  xml_text(&s, head);
  ig_str_puts(&s, "</text>\n<text x=\"30\" y=\"74\" class=\"s\">");
  snprintf(head, sizeof head,
           "%.2f req/s, %.0f output tok/s, %.0f total tok/s | TTFT p50 %.1f p99 %.1f ms | ITL p50 %.2f p99 %.2f ms "
           "| E2E p50 %.0f ms",
           sm->req_per_s, sm->out_tok_per_s, sm->total_tok_per_s, sm->ttft[1], sm->ttft[3], sm->itl[1], sm->itl[3],
           sm->e2e[1]);
  xml_text(&s, head);
  ig_str_puts(&s, "</text>\n");

  /* output tokens/s over time */
  panel tp = {80, 120, W - 120, 240, r->n_series > 0 ? r->n_series : 1, 1, 0};
  double ymax = 1;
  for (int i = 0; i < r->n_series; i++)
    if (series_rate(r, i) > ymax) ymax = series_rate(r, i);
  tp.ymax = ymax * 1.1;
  axes(&s, &tp, "Output tokens per second", "seconds since start", "tokens/s", 0);
  if (r->n_series > 0) {
    ig_str_puts(&s, "<polyline fill=\"#cfe3f7\" stroke=\"#1f77b4\" stroke-width=\"1.5\" points=\"");
    ig_str_printf(&s, "%.1f,%.1f ", px(&tp, 0), py(&tp, 0));
    for (int i = 0; i < r->n_series; i++) {
      double v = series_rate(r, i);
      ig_str_printf(&s, "%.1f,%.1f %.1f,%.1f ", px(&tp, i), py(&tp, v), px(&tp, i + 1), py(&tp, v));
    }
    ig_str_printf(&s, "%.1f,%.1f\"/>\n", px(&tp, r->n_series), py(&tp, 0));
    if (sm->out_tok_per_s > 0 && sm->out_tok_per_s <= tp.ymax) {
      ig_str_printf(&s, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"m\"/>", tp.x, py(&tp, sm->out_tok_per_s),
                    tp.x + tp.w, py(&tp, sm->out_tok_per_s));
      ig_str_printf(&s, "<text x=\"%.1f\" y=\"%.1f\" class=\"ml\">mean %.0f tok/s</text>\n", tp.x + 6,
                    py(&tp, sm->out_tok_per_s) - 4, sm->out_tok_per_s);
    }
  }

  /* latency distributions */
  size_t n = 0, n_itl = 0;
  for (int i = 0; i < r->n_rec; i++)
    if (!r->rec[i].warmup && r->rec[i].finished && !r->rec[i].err) n++, n_itl += (size_t)r->rec[i].n_itl;
  double *ttft = malloc((n + 1) * sizeof *ttft), *e2e = malloc((n + 1) * sizeof *e2e);
  double *itl = malloc((n_itl + 1) * sizeof *itl);
  if (!ttft || !e2e || !itl) {
    free(ttft), free(e2e), free(itl);
    ig_str_free(&s);
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  size_t a = 0, d = 0;
  for (int i = 0; i < r->n_rec; i++) {
    const ig_bench_record *rec = &r->rec[i];
    if (rec->warmup || !rec->finished || rec->err) continue;
    ttft[a] = (rec->t_first - rec->t_start) * 1e3;
    e2e[a++] = (rec->t_end - rec->t_start) * 1e3;
    for (int k = 0; k < rec->n_itl; k++) itl[d++] = rec->itl[k] * 1e3;
  }
  double pw = (W - 80 - 3 * 60) / 3.0;
  panel p1 = {80, 450, pw, 260, 1, 100, 0}, p2 = {80 + pw + 70, 450, pw, 260, 1, 100, 0},
        p3 = {80 + 2 * (pw + 70), 450, pw, 260, 1, 100, 0};
  cdf_panel(&s, &p1, "Time to first token (CDF)", "requests below", ttft, a, "#d62728");
  cdf_panel(&s, &p2, "Inter-token latency (CDF)", "token gaps below", itl, d, "#2ca02c");
  cdf_panel(&s, &p3, "End-to-end latency (CDF)", "requests below", e2e, a, "#9467bd");
  free(ttft), free(e2e), free(itl);
  ig_str_puts(&s, "</svg>\n");
  if (s.oom) {
    ig_str_free(&s);
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  FILE *f = fopen(path, "wb");
  int rc = -1;
  if (f) {
    rc = fwrite(s.p, 1, s.len, f) == s.len ? 0 : -1;
    if (fclose(f)) rc = -1;
  }
  if (rc) snprintf(err, errlen, "cannot write %s", path);
  ig_str_free(&s);
  return rc;
}
