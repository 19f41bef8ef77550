/* bench/run: the load generator. One libevent loop drives every request: HTTP/1.1 on connections kept
 * alive and reused (a pool of idle ones; --no-keep-alive opens one per request), the answer parsed as it
 * streams (http.c frames it, sse.c splits events, jansson reads each event). Closed loop keeps N requests in
 * flight; open loop launches requests at Poisson arrival times planned up front from the seed (so timer
 * lateness never drifts the rate), optionally capped at N in flight. */
#include "bench/bench.h"
#include "bench/http.h"
#include "bench/net.h"
#include "bench/rng.h"
#include "bench/sse.h"
#include "util/str.h"
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>
#include <jansson.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

typedef struct run run;

typedef struct conn {
  struct conn *prev, *next; /* the run's in-flight list */
  run *r;
  ig_bench_record *rec;
  struct bufferevent *bev;
  struct event *timer;
  ig_http_resp http;
  ig_sse sse;
  ig_str errbody;
  double t_last;
  int connected;
  int reused;       /* the connection came from the idle pool (its failure before any answer is retried) */
  int saw_end;      /* TGI's final event (generated_text) or OpenAI's [DONE] */
  int usage_in, usage_out;
  ig_bench_err err; /* set by the parsing callbacks; acted upon once feeding returns */
  char msg[120];
} conn;

struct run {
  const ig_bench_config *cfg;
  const ig_bench_prompts *prompts;
  ig_bench_target target;
  struct event_base *base;
  ig_bench_result *res;
  int total, warm;       /* records: warm warmup ones first */
  int next;              /* next record to launch */
  int in_flight, done_warm, done_meas, errors_meas;
  int phase;             /* 0 warmup, 1 measured, 2 finished */
  int cap;               /* in-flight cap (0: none) */
  int pending;           /* open loop: arrivals waiting for the cap */
  double t0;             /* absolute start of the measured phase */
  double *plan;          /* open loop: arrival times of the measured requests, seconds after t0 */
  double t_last_done;
  struct event *arrival, *progress;
  int series_cap;
  long long tokens_all, tokens_at_last_tick;
  double t_last_tick;
  int tty;
  int progress_shown;
  const char *model;
  ig_str body;
  conn *live;            /* in-flight connections */
  struct bufferevent **idle; /* keep-alive pool of idle connections */
  int n_idle, cap_idle;
  struct event *sigint;
};

/* ---- helpers ---- */

static void rec_itl_push(ig_bench_record *rec, float v) {
  if (rec->n_itl == rec->cap_itl) {
    int nc = rec->cap_itl ? rec->cap_itl * 2 : 64;
    float *p = realloc(rec->itl, (size_t)nc * sizeof *p);
    if (!p) return; /* a lost gap under memory pressure: the statistics use what was kept */
    rec->itl = p;
    rec->cap_itl = nc;
  }
  rec->itl[rec->n_itl++] = v;
}

static void series_add(run *r, double t_abs, int tokens, int done) {
  if (r->phase != 1) return;
  double rel = t_abs - r->t0;
  int idx = rel <= 0 ? 0 : (int)rel;
  if (idx > 10 * 1000 * 1000) return;
  ig_bench_result *res = r->res;
  if (idx >= r->series_cap) {
    int nc = r->series_cap ? r->series_cap : 64;
    while (nc <= idx) nc *= 2;
    int *a = realloc(res->series_tokens, (size_t)nc * sizeof *a);
    if (!a) return;
    res->series_tokens = a;
    int *b = realloc(res->series_done, (size_t)nc * sizeof *b);
    if (!b) return;
    res->series_done = b;
    memset(a + r->series_cap, 0, (size_t)(nc - r->series_cap) * sizeof *a);
    memset(b + r->series_cap, 0, (size_t)(nc - r->series_cap) * sizeof *b);
    r->series_cap = nc;
  }
  if (idx + 1 > res->n_series) res->n_series = idx + 1;
  res->series_tokens[idx] += tokens;
  res->series_done[idx] += done;
}

static void set_err(conn *c, ig_bench_err e, const char *fmt, const char *arg) {
  if (c->err) return;
  c->err = e;
  snprintf(c->msg, sizeof c->msg, fmt, arg);
}

/* ---- request bodies ---- */

static int build_body(run *r, const ig_bench_prompt *p, ig_str *b) {
  const ig_bench_config *cfg = r->cfg;
  ig_str_clear(b);
  if (cfg->api == IG_BENCH_API_TGI) {
    ig_str_puts(b, "{\"inputs\":");
    ig_str_json_string(b, p->text, strlen(p->text));
    ig_str_printf(b, ",\"parameters\":{\"max_new_tokens\":%d,\"details\":false", p->output_tokens);
    /* TGI has no ignore_eos: an empty stop list is all it takes; ignis reads "ignore_eos" as an extension. */
    if (cfg->ignore_eos) ig_str_puts(b, ",\"stop\":[],\"ignore_eos\":true");
    ig_str_puts(b, "}}");
  } else {
    ig_str_puts(b, "{");
    if (r->model) {
      ig_str_puts(b, "\"model\":");
      ig_str_json_string(b, r->model, strlen(r->model));
      ig_str_putc(b, ',');
    }
    ig_str_puts(b, "\"prompt\":");
    ig_str_json_string(b, p->text, strlen(p->text));
    ig_str_printf(b, ",\"max_tokens\":%d,\"stream\":true,\"stream_options\":{\"include_usage\":true}",
                  p->output_tokens);
    if (cfg->ignore_eos) ig_str_puts(b, ",\"ignore_eos\":true"); /* vLLM's extension, also read by ignis */
    ig_str_putc(b, '}');
  }
  return b->oom ? -1 : 0;
}

/* ---- stream events ---- */

static void on_token(conn *c, double now) {
  ig_bench_record *rec = c->rec;
  rec->events++;
  if (rec->t_first < 0) rec->t_first = now;
  else rec_itl_push(rec, (float)(now - c->t_last));
  c->t_last = now;
  c->r->tokens_all++;
  if (!rec->warmup) series_add(c->r, now, 1, 0);
}

static const char *error_text(json_t *o) {
  json_t *e = json_object_get(o, "error");
  if (json_is_string(e)) return json_string_value(e);
  if (json_is_object(e)) {
    json_t *m = json_object_get(e, "message");
    if (json_is_string(m)) return json_string_value(m);
    return "error";
  }
  json_t *obj = json_object_get(o, "object");
  if (json_is_string(obj) && !strcmp(json_string_value(obj), "error")) {
    json_t *m = json_object_get(o, "message");
    return json_is_string(m) ? json_string_value(m) : "error";
  }
  return NULL;
}

static int on_sse_event(void *ud, const char *event, const char *data, size_t len) {
  conn *c = ud;
  double now = ig_bench_now();
  if (len == 6 && !memcmp(data, "[DONE]", 6)) {
    c->saw_end = 1;
    return 0;
  }
  json_error_t je;
  json_t *o = json_loadb(data, len, 0, &je);
  if (!o || !json_is_object(o)) {
    json_decref(o);
    set_err(c, IG_BENCH_ERR_MALFORMED, "event data is not a JSON object: %.80s", data);
    return 1;
  }
  const char *etext = error_text(o);
  if (etext || !strcmp(event, "error")) {
    set_err(c, IG_BENCH_ERR_STREAM, "%s", etext ? etext : data);
    json_decref(o);
    return 1;
  }
  json_t *tok = json_object_get(o, "token");
  json_t *choices = json_object_get(o, "choices");
  if (json_is_object(tok)) { /* TGI */
    on_token(c, now);
    json_t *gt = json_object_get(o, "generated_text");
    if (json_is_string(gt)) c->saw_end = 1;
    json_t *det = json_object_get(o, "details");
    json_t *gen = json_is_object(det) ? json_object_get(det, "generated_tokens") : NULL;
    if (json_is_integer(gen)) c->usage_out = (int)json_integer_value(gen);
  } else if (json_is_array(choices)) { /* OpenAI completions (or chat) chunk */
    json_t *ch = json_array_get(choices, 0);
    if (json_is_object(ch)) {
      json_t *text = json_object_get(ch, "text");
      if (!text) {
        json_t *delta = json_object_get(ch, "delta");
        text = json_is_object(delta) ? json_object_get(delta, "content") : NULL;
      }
      json_t *fin = json_object_get(ch, "finish_reason");
      int has_text = json_is_string(text) && json_string_length(text) > 0;
      /* one chunk ~ one token; an empty chunk counts unless it only carries the finish reason */
      if (has_text || (json_is_string(text) && !json_is_string(fin))) on_token(c, now);
    }
    json_t *usage = json_object_get(o, "usage");
    if (json_is_object(usage)) {
      json_t *ct = json_object_get(usage, "completion_tokens"), *pt = json_object_get(usage, "prompt_tokens");
      if (json_is_integer(ct)) c->usage_out = (int)json_integer_value(ct);
      if (json_is_integer(pt)) c->usage_in = (int)json_integer_value(pt);
    }
  }
  json_decref(o);
  return 0;
}

static int on_body(void *ud, const char *p, size_t n) {
  conn *c = ud;
  if (c->http.status != 200) {
    size_t room = c->errbody.len < 4096 ? 4096 - c->errbody.len : 0;
    ig_str_append(&c->errbody, p, n < room ? n : room);
    return 0;
  }
  int rc = ig_sse_feed(&c->sse, p, n, on_sse_event, c);
  if (rc < 0) set_err(c, IG_BENCH_ERR_MALFORMED, "%s", "SSE line too long");
  return rc ? 1 : 0;
}

/* ---- lifecycle ---- */

static void launch(run *r);
static int idle_park(conn *c);
static int send_request(conn *c, int may_reuse);
static void start_measured(run *r);

static void conn_free(conn *c) {
  run *r = c->r;
  if (c->prev) c->prev->next = c->next;
  else if (r->live == c) r->live = c->next;
  if (c->next) c->next->prev = c->prev;
  if (c->bev) bufferevent_free(c->bev);
  if (c->timer) event_free(c->timer);
  ig_http_resp_free(&c->http);
  ig_sse_free(&c->sse);
  ig_str_free(&c->errbody);
  free(c);
}

/* The request is over (answer complete, or err). Records it, frees the connection, launches what follows. */
static void finish(conn *c, ig_bench_err err, const char *msg) {
  run *r = c->r;
  ig_bench_record *rec = c->rec;
  double now = ig_bench_now();
  rec->t_end = now;
  rec->http_status = c->http.status;
  if (!err && c->http.status != 200 && c->http.status) {
    err = IG_BENCH_ERR_HTTP;
    json_t *o = c->errbody.len ? json_loadb(c->errbody.p, c->errbody.len, 0, NULL) : NULL;
    const char *t = o ? error_text(o) : NULL;
    snprintf(rec->msg, sizeof rec->msg, "HTTP %d: %.100s", c->http.status,
             t ? t : (c->errbody.len ? c->errbody.p : ""));
    json_decref(o);
  } else if (!err && c->err) {
    err = c->err;
    snprintf(rec->msg, sizeof rec->msg, "%s", c->msg);
  } else if (!err && rec->events == 0 && c->http.content_type[0] && !strstr(c->http.content_type, "event-stream")) {
    err = IG_BENCH_ERR_MALFORMED;
    snprintf(rec->msg, sizeof rec->msg, "the answer is not an event stream (Content-Type: %.60s)",
             c->http.content_type);
  } else if (!err && rec->events == 0) {
    err = IG_BENCH_ERR_EMPTY;
    snprintf(rec->msg, sizeof rec->msg, "the answer held no token");
  } else if (msg) {
    snprintf(rec->msg, sizeof rec->msg, "%s", msg);
  }
  rec->err = err;
  rec->finished = 1;
  rec->output_tokens = c->usage_out >= 0 ? c->usage_out : rec->events;
  if (c->usage_in >= 0) rec->input_tokens = c->usage_in;
  idle_park(c);
  conn_free(c);
  r->in_flight--;
  if (rec->warmup) {
    r->done_warm++;
    if (r->done_warm == r->warm) start_measured(r);
    else if (r->next < r->warm) launch(r);
    return;
  }
  r->done_meas++;
  if (err) r->errors_meas++;
  r->t_last_done = now;
  series_add(r, now, 0, 1);
  if (r->done_meas == r->total - r->warm) {
    r->phase = 2;
    event_base_loopbreak(r->base);
    return;
  }
  if (r->cfg->request_rate > 0) {
    if (r->pending > 0 && (!r->cap || r->in_flight < r->cap)) {
      r->pending--;
      launch(r);
    }
  } else if (r->next < r->total) {
    launch(r);
  }
}

/* Parse what has arrived. Returns 1 when the request finished (c is freed then). */
static int feed_input(conn *c, struct bufferevent *bev) {
  struct evbuffer *in = bufferevent_get_input(bev);
  struct evbuffer_iovec vec[16];
  while (evbuffer_get_length(in) > 0) {
    int nv = evbuffer_peek(in, -1, NULL, vec, 16);
    if (nv > 16) nv = 16;
    size_t used = 0;
    int rc = 0;
    for (int i = 0; i < nv && !rc; i++) {
      rc = ig_http_feed(&c->http, vec[i].iov_base, vec[i].iov_len, on_body, c);
      used += vec[i].iov_len;
      if (c->http.state == IG_HTTP_DONE) break;
    }
    evbuffer_drain(in, used);
    if (rc < 0 && c->http.state == IG_HTTP_ERROR) {
      finish(c, IG_BENCH_ERR_MALFORMED, c->http.err);
      return 1;
    }
    if (rc || c->err || c->http.state == IG_HTTP_DONE) { /* done, or a callback stopped: c->err says why */
      finish(c, 0, NULL);
      return 1;
    }
  }
  return 0;
}

static void on_read(struct bufferevent *bev, void *ud) { feed_input(ud, bev); }

static void on_event(struct bufferevent *bev, short what, void *ud) {
  conn *c = ud;
  if (what & BEV_EVENT_CONNECTED) {
    c->connected = 1;
    int one = 1;
    setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return;
  }
  int e = EVUTIL_SOCKET_ERROR();
  if (c->reused && c->http.state == IG_HTTP_STATUS_LINE && c->http.line.len == 0 &&
      evbuffer_get_length(bufferevent_get_input(bev)) == 0) {
    /* the server had closed this idle connection before our request reached it: retry on a new one */
    bufferevent_free(c->bev);
    c->bev = NULL;
    c->rec->t_start = ig_bench_now();
    if (send_request(c, 0)) {
      if (c->bev) {
        bufferevent_free(c->bev);
        c->bev = NULL;
      }
      finish(c, IG_BENCH_ERR_CONNECT, c->msg[0] ? c->msg : "reconnect failed");
    }
    return;
  }
  if (!c->connected) {
    char m[120];
    snprintf(m, sizeof m, "connect: %s", (what & BEV_EVENT_ERROR) ? evutil_socket_error_to_string(e) : "closed");
    finish(c, IG_BENCH_ERR_CONNECT, m);
    return;
  }
  /* give buffered bytes to the parser first (libevent may report EOF with data still queued) */
  if (feed_input(c, bev)) return;
  if (!(what & BEV_EVENT_ERROR) && ig_http_eof(&c->http)) {
    if (c->http.status == 200 && !c->saw_end && !c->err)
      finish(c, IG_BENCH_ERR_DISCONNECT, "the connection closed before the stream's end");
    else
      finish(c, 0, NULL);
    return;
  }
  char m[120];
  snprintf(m, sizeof m, "%s after %d tokens", (what & BEV_EVENT_ERROR) ? evutil_socket_error_to_string(e) : "connection closed",
           c->rec->events);
  finish(c, IG_BENCH_ERR_DISCONNECT, m);
}

static void on_timeout(evutil_socket_t fd, short what, void *ud) {
  conn *c = ud;
  char m[80];
  snprintf(m, sizeof m, "no complete answer after %.1f s", c->r->cfg->timeout_s);
  finish(c, IG_BENCH_ERR_TIMEOUT, m);
}

static void on_connect_failed(evutil_socket_t fd, short what, void *ud) {
  conn *c = ud;
  finish(c, IG_BENCH_ERR_CONNECT, c->msg[0] ? c->msg : "connect failed");
}

/* ---- the keep-alive pool ---- */

static void idle_drop(run *r, struct bufferevent *bev) {
  for (int i = 0; i < r->n_idle; i++)
    if (r->idle[i] == bev) {
      r->idle[i] = r->idle[--r->n_idle];
      break;
    }
  bufferevent_free(bev);
}

/* An idle connection that speaks or ends is of no more use. */
static void idle_read(struct bufferevent *bev, void *ud) { idle_drop(ud, bev); }
static void idle_event(struct bufferevent *bev, short what, void *ud) { idle_drop(ud, bev); }

/* Park c's connection when the answer was read to its end and the server keeps it open. Returns 1 if parked. */
static int idle_park(conn *c) {
  run *r = c->r;
  if (!r->cfg->keep_alive || !c->bev || c->http.state != IG_HTTP_DONE || !c->http.keep_alive ||
      evbuffer_get_length(bufferevent_get_input(c->bev)))
    return 0;
  if (r->n_idle == r->cap_idle) {
    int nc = r->cap_idle ? r->cap_idle * 2 : 16;
    struct bufferevent **v = realloc(r->idle, (size_t)nc * sizeof *v);
    if (!v) return 0;
    r->idle = v;
    r->cap_idle = nc;
  }
  bufferevent_setcb(c->bev, idle_read, NULL, idle_event, r);
  r->idle[r->n_idle++] = c->bev;
  c->bev = NULL;
  return 1;
}

/* Put c's request on a connection: an idle one when allowed and there is one, else a new one.
 * Returns 0, or -1 with c->msg set. */
static int send_request(conn *c, int may_reuse) {
  run *r = c->r;
  const ig_bench_prompt *p = &r->prompts->v[c->rec->prompt];
  c->reused = 0;
  c->connected = 0;
  if (may_reuse && r->n_idle > 0) {
    c->bev = r->idle[--r->n_idle];
    c->reused = c->connected = 1;
  } else {
    c->bev = bufferevent_socket_new(r->base, -1, BEV_OPT_CLOSE_ON_FREE);
  }
  if (!c->bev || build_body(r, p, &r->body)) return -1;
  bufferevent_setcb(c->bev, on_read, NULL, on_event, c);
  bufferevent_enable(c->bev, EV_READ | EV_WRITE);
  ig_str head;
  ig_str_init(&head);
  int rc = ig_bench_request(&head, &r->target, "POST",
                            r->cfg->api == IG_BENCH_API_TGI ? "/generate_stream" : "/v1/completions", r->body.p,
                            r->body.len, r->cfg->keep_alive);
  if (!rc) rc = bufferevent_write(c->bev, head.p, head.len);
  ig_str_free(&head);
  if (rc) return -1;
  if (!c->reused &&
      bufferevent_socket_connect(c->bev, (struct sockaddr *)&r->target.addr, (int)r->target.addrlen) < 0) {
    snprintf(c->msg, sizeof c->msg, "connect: %s", evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
    return -1;
  }
  return 0;
}

static void launch(run *r) {
  int idx = r->next++;
  ig_bench_record *rec = &r->res->rec[idx];
  const ig_bench_prompt *p = &r->prompts->v[rec->prompt];
  conn *c = calloc(1, sizeof *c);
  if (!c) {
    rec->err = IG_BENCH_ERR_CONNECT;
    rec->finished = 1;
    snprintf(rec->msg, sizeof rec->msg, "out of memory");
    return;
  }
  c->r = r;
  c->rec = rec;
  c->next = r->live;
  if (r->live) r->live->prev = c;
  r->live = c;
  c->usage_in = c->usage_out = -1;
  ig_http_resp_init(&c->http);
  ig_sse_init(&c->sse);
  ig_str_init(&c->errbody);
  r->in_flight++;
  rec->t_start = ig_bench_now();
  rec->t_first = -1;
  rec->input_tokens = p->input_tokens;
  c->timer = evtimer_new(r->base, on_timeout, c);
  if (!c->timer) goto fail;
  double to = r->cfg->timeout_s;
  struct timeval tv = {(time_t)to, (suseconds_t)((to - floor(to)) * 1e6)};
  evtimer_add(c->timer, &tv);
  if (send_request(c, 1)) goto fail;
  return;
fail:
  /* finish from the loop, not from here: launch may be called from finish */
  if (!c->msg[0]) snprintf(c->msg, sizeof c->msg, "cannot start the request (out of memory?)");
  if (c->bev) {
    bufferevent_free(c->bev);
    c->bev = NULL;
  }
  if (c->timer) event_del(c->timer);
  struct timeval zero = {0, 0};
  if (event_base_once(r->base, -1, EV_TIMEOUT, on_connect_failed, c, &zero) < 0) {
    /* cannot even defer: record the failure in place */
    rec->err = IG_BENCH_ERR_CONNECT;
    rec->finished = 1;
    snprintf(rec->msg, sizeof rec->msg, "%s", c->msg);
    rec->t_end = ig_bench_now();
    conn_free(c);
    r->in_flight--;
  }
}

/* ---- arrivals, phases, progress ---- */

int ig_bench_arrival_plan(uint64_t seed, double rate, int n, double *out) {
  if (n <= 0 || !(rate > 0)) return -1;
  ig_bench_rng rng;
  ig_bench_rng_seed(&rng, seed ^ 0x617272697665ULL);
  out[0] = 0;
  for (int i = 1; i < n; i++) out[i] = out[i - 1] + ig_bench_rng_exp(&rng, rate);
  return 0;
}

static void on_arrival(evutil_socket_t fd, short what, void *ud) {
  run *r = ud;
  /* launch every arrival whose planned time has come (a late timer catches up) */
  int measured = r->total - r->warm;
  int j = r->next + r->pending - r->warm;
  double now = ig_bench_now();
  while (j < measured && r->t0 + r->plan[j] <= now) {
    if (r->cap && r->in_flight >= r->cap) r->pending++;
    else launch(r);
    j++;
  }
  if (j < measured) {
    double wait = r->t0 + r->plan[j] - ig_bench_now();
    if (wait < 0) wait = 0;
    struct timeval tv = {(time_t)wait, (suseconds_t)((wait - floor(wait)) * 1e6)};
    evtimer_add(r->arrival, &tv);
  }
}

static void start_measured(run *r) {
  r->phase = 1;
  r->t0 = ig_bench_now();
  if (r->cfg->request_rate > 0) {
    on_arrival(-1, 0, r);
  } else {
    int n = r->cap;
    for (int i = 0; i < n && r->next < r->total; i++) launch(r);
  }
}

static void on_progress(evutil_socket_t fd, short what, void *ud) {
  run *r = ud;
  double now = ig_bench_now();
  double dt = now - r->t_last_tick;
  double rate = dt > 0 ? (double)(r->tokens_all - r->tokens_at_last_tick) / dt : 0;
  r->tokens_at_last_tick = r->tokens_all;
  r->t_last_tick = now;
  char line[200];
  if (r->phase == 0)
    snprintf(line, sizeof line, "bench warmup %d/%d  in flight %d  %.0f tok/s", r->done_warm, r->warm, r->in_flight,
             rate);
  else
    snprintf(line, sizeof line, "bench %6.1fs  done %d/%d  errors %d  in flight %d  %.0f out tok/s",
             now - r->t0, r->done_meas, r->total - r->warm, r->errors_meas, r->in_flight, rate);
  if (r->tty) fprintf(stderr, "\r\033[K%s", line);
  else fprintf(stderr, "%s\n", line);
  r->progress_shown = 1;
}

/* Ctrl-C: stop now and report the requests that finished. */
static void on_sigint(evutil_socket_t sig, short what, void *ud) {
  run *r = ud;
  r->res->interrupted = 1;
  if (r->phase == 1) r->t_last_done = ig_bench_now();
  event_base_loopbreak(r->base);
}

static void raise_fd_limit(int want) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl)) return;
  if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)want + 64) {
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > (rlim_t)want + 64 ? (rlim_t)want + 64 : rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

/* GET /v1/models: the first model's id (OpenAI servers want "model"). */
static void discover_model(run *r, char *out, size_t outlen) {
  ig_str resp;
  ig_str_init(&resp);
  int status = 0;
  char err[160];
  if (ig_bench_http_once(r->base, &r->target, "GET", "/v1/models", NULL, 30, &status, &resp, err, sizeof err) == 0 &&
      status == 200) {
    json_t *o = json_loadb(resp.p ? resp.p : "", resp.len, 0, NULL);
    json_t *id = json_object_get(json_array_get(json_object_get(o, "data"), 0), "id");
    if (json_is_string(id)) snprintf(out, outlen, "%s", json_string_value(id));
    json_decref(o);
  }
  ig_str_free(&resp);
}

int ig_bench_run(const ig_bench_config *cfg, const ig_bench_prompts *prompts, ig_bench_result *res, char *err,
                 size_t errlen) {
  memset(res, 0, sizeof *res);
  if (!prompts->n) {
    snprintf(err, errlen, "no prompts");
    return -1;
  }
  run r = {0};
  r.cfg = cfg;
  r.prompts = prompts;
  r.res = res;
  r.warm = cfg->warmup > 0 ? cfg->warmup : 0;
  r.total = r.warm + (cfg->num_requests > 0 ? cfg->num_requests : 0);
  r.cap = cfg->concurrency > 0 ? cfg->concurrency : 0;
  if (cfg->request_rate <= 0 && !r.cap) r.cap = 1;
  r.tty = isatty(2);
  ig_str_init(&r.body);
  if (ig_bench_target_parse(cfg->url, &r.target, err, errlen)) return -1;
  res->rec = calloc((size_t)(r.total ? r.total : 1), sizeof *res->rec);
  /* precise timers (timerfd): open-loop arrivals are planned to the microsecond, epoll alone rounds to ms */
  struct event_config *ecfg = event_config_new();
  if (ecfg) event_config_set_flag(ecfg, EVENT_BASE_FLAG_PRECISE_TIMER);
  r.base = ecfg ? event_base_new_with_config(ecfg) : NULL;
  if (ecfg) event_config_free(ecfg);
  r.arrival = r.base ? evtimer_new(r.base, on_arrival, &r) : NULL;
  r.progress = r.base ? event_new(r.base, -1, EV_PERSIST, on_progress, &r) : NULL;
  r.sigint = r.base ? evsignal_new(r.base, SIGINT, on_sigint, &r) : NULL;
  if (!res->rec || !r.base || !r.arrival || !r.progress || !r.sigint) {
    snprintf(err, errlen, "out of memory");
    if (r.arrival) event_free(r.arrival);
    if (r.progress) event_free(r.progress);
    if (r.sigint) event_free(r.sigint);
    if (r.base) event_base_free(r.base);
    return -1;
  }
  if (cfg->request_rate > 0 && r.total > r.warm) {
    r.plan = malloc((size_t)(r.total - r.warm) * sizeof *r.plan);
    if (!r.plan) {
      snprintf(err, errlen, "out of memory");
      event_free(r.arrival);
      event_free(r.progress);
      event_free(r.sigint);
      event_base_free(r.base);
      return -1;
    }
    ig_bench_arrival_plan(cfg->seed, cfg->request_rate, r.total - r.warm, r.plan);
  }
  res->n_rec = r.total;
  for (int i = 0; i < r.total; i++) {
    res->rec[i].prompt = i % prompts->n;
    res->rec[i].warmup = i < r.warm;
    res->rec[i].t_first = -1;
  }
  raise_fd_limit(r.cap ? r.cap : (cfg->request_rate > 0 ? 4096 : 1));
  if (cfg->api == IG_BENCH_API_OPENAI) {
    if (cfg->model) snprintf(res->model, sizeof res->model, "%s", cfg->model);
    else discover_model(&r, res->model, sizeof res->model);
    r.model = res->model[0] ? res->model : NULL;
  }
  time_t wall = time(NULL);
  struct tm tmv;
  gmtime_r(&wall, &tmv);
  strftime(res->started_at, sizeof res->started_at, "%Y-%m-%dT%H:%M:%SZ", &tmv);

  double start = ig_bench_now();
  r.t_last_tick = start;
  event_add(r.sigint, NULL);
  if (cfg->progress) {
    struct timeval one = {1, 0};
    event_add(r.progress, &one);
  }
  if (r.total == r.warm) { /* nothing to measure */
    r.phase = 2;
  } else if (r.warm > 0) {
    int n = r.cap ? r.cap : r.warm;
    for (int i = 0; i < n && r.next < r.warm; i++) launch(&r);
  } else {
    start_measured(&r);
  }
  if (r.phase != 2) event_base_dispatch(r.base);
  if (r.progress_shown) {
    on_progress(-1, 0, &r);
    if (r.tty) fputc('\n', stderr);
  }
  for (int i = 0; i < r.n_idle; i++) bufferevent_free(r.idle[i]);
  free(r.idle);
  while (r.live) { /* interrupted: abandon what is in flight (its records stay unfinished) */
    conn *c = r.live;
    c->rec->t_start = 0;
    conn_free(c);
  }
  event_free(r.arrival);
  event_free(r.progress);
  event_free(r.sigint);
  event_base_free(r.base);
  ig_str_free(&r.body);
  free(r.plan);
  /* times relative to the measured phase's start */
  double t0 = r.phase >= 1 ? r.t0 : start;
  for (int i = 0; i < r.total; i++) {
    ig_bench_record *rec = &res->rec[i];
    if (!rec->finished) continue; /* never launched, or abandoned */
    rec->t_start -= t0;
    rec->t_end -= t0;
    if (rec->t_first >= 0) rec->t_first -= t0;
    else rec->t_first = -1;
  }
  res->duration_s = r.done_meas ? r.t_last_done - t0 : 0;
  ig_bench_summarize(res);
  return 0;
}

void ig_bench_result_free(ig_bench_result *r) {
  for (int i = 0; i < r->n_rec; i++) free(r->rec[i].itl);
  free(r->rec);
  free(r->series_tokens);
  free(r->series_done);
  memset(r, 0, sizeof *r);
}
