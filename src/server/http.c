/* server/http: the listener and everything that is not generation: routing, API-key auth, CORS, request
 * logs, /health /ping /info /metrics /v1/models, limits (body size, slow clients), signals and graceful
 * shutdown. Generation routes are handed to gen.c. Every input path ends in an answer to its client. */
#include "server/internal.h"
#include "util/log.h"
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

long long ig_server_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

void ig_server_config_defaults(ig_server_config *c) {
  memset(c, 0, sizeof *c);
  c->hostname = "0.0.0.0";
  c->port = 3000;
  c->model_id = "";
  c->model_dtype = "float32";
  c->device = "cpu";
  c->version = "0.1.0";
  c->max_concurrent_requests = 128;
  c->max_best_of = 2;
  c->max_stop_sequences = 4;
  c->max_top_n_tokens = 5;
  c->max_input_tokens = 4095;
  c->max_total_tokens = 4096;
  c->max_client_batch_size = 4;
  c->validation_workers = 2;
  c->render_worker_entries = 256;
  c->payload_limit = 2000000;
  c->read_timeout_s = 60;
  c->grace_ms = 10000;
  c->handle_signals = 1;
  c->log_requests = 1;
}

/* ---- replies ------------------------------------------------------------------------------------------------- */

static void count_status(ig_server *s, int status) {
  s->metrics.http_requests++;
  if (status >= 500)
    s->metrics.http_errors_5xx++;
  else if (status >= 400)
    s->metrics.http_errors_4xx++;
}

static const char *reason_of(int status) {
  switch (status) {
  case 200: return "OK";
  case 204: return "No Content";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 413: return "Payload Too Large";
  case 422: return "Unprocessable Entity";
  case 424: return "Failed Dependency";
  case 429: return "Too Many Requests";
  case 500: return "Internal Server Error";
  case 503: return "Service Unavailable";
  default: return "Error";
  }
}

void ig_server_cors(ig_server *s, struct evhttp_request *req) {
  struct evkeyvalq *out = evhttp_request_get_output_headers(req);
  const char *origin = evhttp_find_header(evhttp_request_get_input_headers(req), "Origin");
  if (!s->cors || strcmp(s->cors, "*") == 0) {
    evhttp_add_header(out, "Access-Control-Allow-Origin", "*");
    return;
  }
  if (!origin) return;
  /* the configured list is comma-separated; echo the request's origin when it is on it */
  size_t ol = strlen(origin);
  for (const char *p = s->cors; *p;) {
    while (*p == ' ' || *p == ',') p++;
    const char *e = p;
    while (*e && *e != ',') e++;
    const char *t = e;
    while (t > p && t[-1] == ' ') t--;
    if ((size_t)(t - p) == ol && strncmp(p, origin, ol) == 0) {
      evhttp_add_header(out, "Access-Control-Allow-Origin", origin);
      evhttp_add_header(out, "Vary", "Origin");
      return;
    }
    p = e;
  }
}

void ig_server_send(ig_server *s, struct evhttp_request *req, int status, const char *ctype, const char *body,
                    size_t len) {
  count_status(s, status);
  struct evkeyvalq *h = evhttp_request_get_output_headers(req);
  if (ctype) evhttp_add_header(h, "Content-Type", ctype);
  ig_server_cors(s, req);
  struct evbuffer *b = evbuffer_new();
  if (b && len) evbuffer_add(b, body, len);
  evhttp_send_reply(req, status, reason_of(status), b);
  if (b) evbuffer_free(b);
}

void ig_server_send_error(ig_server *s, struct evhttp_request *req, int openai, int status, const char *msg,
                          const char *etype) {
  ig_str o;
  ig_str_init(&o);
  if (openai)
    ig_render_error_openai(&o, status, msg, etype);
  else
    ig_render_error(&o, msg, etype);
  ig_server_send(s, req, status, "application/json", o.oom ? "{}" : o.p, o.oom ? 2 : o.len);
  ig_str_free(&o);
}

void ig_server_log_request(ig_server *s, struct evhttp_request *req, const char *method, const char *path,
                           int status, long long t_start, const char *extra) {
  if (!s->cfg.log_requests) return;
  if (!path) { /* gen.c passes the route as `method` */
    path = method;
    method = "POST";
  }
  char st[16], tt[32];
  snprintf(st, sizeof st, "%d", status);
  snprintf(tt, sizeof tt, "%.3fms", (ig_server_now_ns() - t_start) * 1e-6);
  const char *kv[32];
  int k = 0;
  kv[k++] = "method";
  kv[k++] = method;
  kv[k++] = "path";
  kv[k++] = path;
  kv[k++] = "status";
  kv[k++] = st;
  kv[k++] = "total_time";
  kv[k++] = tt;
  char buf[600];
  char *keys[12], *vals[12];
  int n_extra = 0;
  if (extra) {
    /* "a=b c=d" -> key/value pairs */
    snprintf(buf, sizeof buf, "%s", extra);
    char *save = NULL;
    for (char *tok = strtok_r(buf, " ", &save); tok && n_extra < 12; tok = strtok_r(NULL, " ", &save)) {
      char *eq = strchr(tok, '=');
      if (!eq) continue;
      *eq = 0;
      keys[n_extra] = tok;
      vals[n_extra] = eq + 1;
      n_extra++;
    }
  }
  for (int i = 0; i < n_extra; i++) {
    kv[k++] = keys[i];
    kv[k++] = vals[i];
  }
  kv[k] = NULL;
  ig_log_kv(IG_LOG_INFO, "request", kv);
}

/* A connection's slow-client watch (see "slow clients" below). */
struct ig_conn_watch {
  ig_server *s;
  struct bufferevent *bev;
  struct event *timer;
  unsigned long dispatched, seen;
  int ticks; /* since the last idle check */
  ig_conn_watch *prev, *next;
};

/* ---- plain routes --------------------------------------------------------------------------------------------- */

static void route_health(ig_server *s, struct evhttp_request *req) {
  if (atomic_load(&s->ready) && !atomic_load(&s->stopping))
    ig_server_send(s, req, 200, NULL, NULL, 0);
  else
    ig_server_send_error(s, req, 0, 503, "unhealthy", "healthcheck");
}

static void route_info(ig_server *s, struct evhttp_request *req) {
  ig_str o;
  ig_str_init(&o);
  ig_str_puts(&o, "{\"model_id\":");
  ig_str_json_string(&o, s->model_id, strlen(s->model_id));
  ig_str_puts(&o, ",\"model_sha\":null,\"model_pipeline_tag\":\"text-generation\",\"model_dtype\":");
  ig_str_json_string(&o, s->model_dtype, strlen(s->model_dtype));
  ig_str_puts(&o, ",\"model_device_type\":");
  ig_str_json_string(&o, s->device, strlen(s->device));
  ig_str_printf(&o,
                ",\"max_concurrent_requests\":%d,\"max_best_of\":%d,\"max_stop_sequences\":%d,"
                "\"max_input_tokens\":%d,\"max_total_tokens\":%d,\"validation_workers\":%d,"
                "\"max_client_batch_size\":%d,\"router\":\"text-generation-router\",\"version\":",
                s->cfg.max_concurrent_requests, s->lim.max_best_of, s->lim.max_stop_sequences, s->lim.max_input_tokens,
                s->lim.max_total_tokens, s->cfg.validation_workers, s->lim.max_client_batch_size);
  ig_str_json_string(&o, s->version, strlen(s->version));
  ig_str_puts(&o, ",\"sha\":null,\"docker_label\":null}");
  ig_server_send(s, req, 200, "application/json", o.p, o.len);
  ig_str_free(&o);
}

static void route_models(ig_server *s, struct evhttp_request *req) {
  ig_str o;
  ig_str_init(&o);
  ig_str_puts(&o, "{\"object\":\"list\",\"data\":[{\"id\":");
  ig_str_json_string(&o, s->model_id, strlen(s->model_id));
  ig_str_printf(&o, ",\"object\":\"model\",\"created\":%lld,\"owned_by\":", s->created);
  ig_str_json_string(&o, s->model_id, strlen(s->model_id));
  ig_str_puts(&o, "}]}");
  ig_server_send(s, req, 200, "application/json", o.p, o.len);
  ig_str_free(&o);
}

static void route_metrics(ig_server *s, struct evhttp_request *req) {
  ig_server_stats st;
  memset(&st, 0, sizeof st);
  if (atomic_load(&s->ready) && s->hooks.stats) s->hooks.stats(s->hooks.ctx, &st);
  ig_str o;
  ig_str_init(&o);
  int n_conn = 0, n_watch = 0;
  for (ig_conn_watch *w = s->watches; w; w = w->next) {
    bufferevent_event_cb ecb = NULL;
    bufferevent_getcb(w->bev, NULL, NULL, &ecb, NULL);
    n_conn += ecb != NULL;
    n_watch++;
  }
  ig_metrics_render(&s->metrics, &st, n_conn, s->n_jobs, &o);
  /* connections still held by their slow-client watch (closed ones are let go at its next tick) */
  ig_str_printf(&o, "# HELP ignis_http_connection_watches Connections held by the slow-client watch, closed ones included\n"
                    "# TYPE ignis_http_connection_watches gauge\nignis_http_connection_watches %d\n", n_watch);
  ig_server_send(s, req, 200, "text/plain; version=0.0.4", o.p, o.len);
  ig_str_free(&o);
}

/* ---- slow clients --------------------------------------------------------------------------------------------
 * evhttp's timeout restarts with every byte, so a client trickling a header forever is never cut off. Each
 * connection gets a watch: a timer every read_timeout_s seconds; a connection that completed no request in a
 * whole period and has none in flight is shut down (evhttp then sees EOF and frees it). The watch holds a
 * reference on the connection's bufferevent, so it can tell when evhttp has let go (callbacks cleared).
 * The timer ticks every second and the idle check runs every read_timeout_s ticks: a closed connection's
 * bufferevent (with its buffers, ~13 KB) is let go within a second. Ticking only once per period kept every
 * connection of the last 60 s alive: RSS grew by ~16 KB per request under load until the period passed. */
#define WATCH_TICK_S 1
static void watch_free(ig_conn_watch *w) {
  ig_server *s = w->s;
  if (w->prev)
    w->prev->next = w->next;
  else
    s->watches = w->next;
  if (w->next) w->next->prev = w->prev;
  event_free(w->timer);
  bufferevent_decref(w->bev);
  free(w);
}

static int conn_busy(ig_server *s, struct bufferevent *bev) {
  for (ig_job *j = s->jobs; j; j = j->next)
    if (!j->replied && j->evcon && evhttp_connection_get_bufferevent(j->evcon) == bev) return 1;
  return 0;
}

static void watch_cb(evutil_socket_t fd, short what, void *arg) {
  ig_conn_watch *w = arg;
  bufferevent_event_cb ecb = NULL;
  bufferevent_getcb(w->bev, NULL, NULL, &ecb, NULL);
  if (!ecb) { /* evhttp freed the connection */
    watch_free(w);
    return;
  }
  int period = w->s->cfg.read_timeout_s > 0 ? w->s->cfg.read_timeout_s : 60;
  if (++w->ticks * WATCH_TICK_S >= period) {
    w->ticks = 0;
    if (w->dispatched == w->seen && !conn_busy(w->s, w->bev)) {
      evutil_socket_t sfd = bufferevent_getfd(w->bev);
      if (sfd >= 0) shutdown(sfd, SHUT_RDWR);
    }
    w->seen = w->dispatched;
  }
  struct timeval tv = {WATCH_TICK_S, 0};
  evtimer_add(w->timer, &tv);
}

static struct bufferevent *on_new_conn(struct event_base *base, void *arg) {
  ig_server *s = arg;
  struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
  if (!bev) return NULL;
  ig_conn_watch *w = calloc(1, sizeof *w);
  if (!w) return bev;
  w->s = s;
  w->bev = bev;
  w->timer = evtimer_new(base, watch_cb, w);
  if (!w->timer) {
    free(w);
    return bev;
  }
  bufferevent_incref(bev);
  w->next = s->watches;
  if (s->watches) s->watches->prev = w;
  s->watches = w;
  struct timeval tv = {WATCH_TICK_S, 0};
  evtimer_add(w->timer, &tv);
  return bev;
}

static void watch_dispatched(ig_server *s, struct evhttp_request *req) {
  struct evhttp_connection *evcon = evhttp_request_get_connection(req);
  struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
  /* every SSE token is its own small write: no Nagle delay */
  evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
  int one = 1;
  if (fd >= 0) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  for (ig_conn_watch *w = s->watches; w && bev; w = w->next)
    if (w->bev == bev) {
      w->dispatched++;
      return;
    }
}

/* ---- routing ---------------------------------------------------------------------------------------------------- */

enum { R_HEALTH, R_INFO, R_METRICS, R_MODELS, R_GEN, R_STREAM, R_COMPAT, R_TOKENIZE, R_CHAT_TOKENIZE, R_INVOC, R_CHAT,
       R_COMPL };

static const struct {
  const char *path;
  int get, post; /* route ids, -1 when the method is not allowed */
} routes[] = {
    {"/", R_HEALTH, R_COMPAT},
    {"/health", R_HEALTH, -1},
    {"/ping", R_HEALTH, -1},
    {"/info", R_INFO, -1},
    {"/metrics", R_METRICS, -1},
    {"/generate", -1, R_GEN},
    {"/generate_stream", -1, R_STREAM},
    {"/tokenize", -1, R_TOKENIZE},
    {"/chat_tokenize", -1, R_CHAT_TOKENIZE},
    {"/invocations", -1, R_INVOC},
    {"/v1/chat/completions", -1, R_CHAT},
    {"/v1/completions", -1, R_COMPL},
    {"/v1/models", R_MODELS, -1},
};

static int auth_ok(ig_server *s, struct evhttp_request *req) {
  if (!s->api_key || !s->api_key[0]) return 1;
  const char *h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
  if (!h || strncmp(h, "Bearer ", 7) != 0) return 0;
  const char *given = h + 7;
  size_t gl = strlen(given), kl = strlen(s->api_key);
  /* constant time in the key's length: every byte is compared whatever matched before */
  unsigned char diff = (unsigned char)(gl != kl);
  for (size_t i = 0; i < kl; i++) diff |= (unsigned char)(s->api_key[i] ^ (i < gl ? given[i] : 0));
  return diff == 0;
}

static void on_request(struct evhttp_request *req, void *arg) {
  ig_server *s = arg;
  long long t0 = ig_server_now_ns();
  watch_dispatched(s, req);
  enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
  const char *uri = evhttp_request_get_uri(req);
  char path[256];
  size_t pl = strcspn(uri, "?#");
  if (pl >= sizeof path) pl = sizeof path - 1;
  memcpy(path, uri, pl);
  path[pl] = 0;
  if (pl > 1 && path[pl - 1] == '/') path[pl - 1] = 0;
  const char *mname = cmd == EVHTTP_REQ_GET ? "GET" : cmd == EVHTTP_REQ_POST ? "POST" : cmd == EVHTTP_REQ_OPTIONS ? "OPTIONS" : "OTHER";

  int idx = -1;
  for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
    if (strcmp(routes[i].path, path) == 0) idx = (int)i;
  if (idx < 0) {
    ig_server_send_error(s, req, 0, 404, "Not Found", "not_found");
    ig_server_log_request(s, req, mname, path, 404, t0, NULL);
    return;
  }
  if (cmd == EVHTTP_REQ_OPTIONS) { /* CORS preflight */
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
    evhttp_add_header(h, "Access-Control-Allow-Headers", "content-type, authorization");
    evhttp_add_header(h, "Access-Control-Max-Age", "600");
    ig_server_send(s, req, 204, NULL, NULL, 0);
    return;
  }
  int route = cmd == EVHTTP_REQ_GET ? routes[idx].get : cmd == EVHTTP_REQ_POST ? routes[idx].post : -1;
  if (route < 0) {
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Allow", routes[idx].get >= 0 && routes[idx].post >= 0 ? "GET, POST"
                                  : routes[idx].get >= 0                        ? "GET"
                                                                                : "POST");
    ig_server_send_error(s, req, 0, 405, "Method Not Allowed", "method_not_allowed");
    ig_server_log_request(s, req, mname, path, 405, t0, NULL);
    return;
  }
  if (route == R_HEALTH) { /* probes poll it every few seconds: not logged */
    route_health(s, req);
    return;
  }
  if (route == R_INFO) {
    route_info(s, req);
    ig_server_log_request(s, req, mname, path, 200, t0, NULL);
    return;
  }
  if (route == R_METRICS) {
    route_metrics(s, req);
    return;
  }
  int openai = route == R_CHAT || route == R_COMPL || route == R_MODELS;
  if (!auth_ok(s, req)) {
    evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate", "Bearer");
    ig_server_send_error(s, req, openai, 401, "Unauthorized", "unauthorized");
    ig_server_log_request(s, req, mname, path, 401, t0, NULL);
    return;
  }
  if (route == R_MODELS) {
    route_models(s, req);
    ig_server_log_request(s, req, mname, path, 200, t0, NULL);
    return;
  }
  if (!atomic_load(&s->ready) || atomic_load(&s->stopping)) {
    ig_server_send_error(s, req, openai, 503, atomic_load(&s->stopping) ? "the server is shutting down" : "Model is loading",
                         "unhealthy");
    ig_server_log_request(s, req, mname, path, 503, t0, NULL);
    return;
  }
  struct evbuffer *in = evhttp_request_get_input_buffer(req);
  size_t len = evbuffer_get_length(in);
  const char *body = len ? (const char *)evbuffer_pullup(in, -1) : "";
  if (len && !body) {
    ig_server_send_error(s, req, openai, 500, "out of memory", "validation");
    return;
  }
  switch (route) {
  case R_TOKENIZE: ig_gen_handle_tokenize(s, req, 0, body, len, t0); break;
  case R_CHAT_TOKENIZE: ig_gen_handle_tokenize(s, req, 1, body, len, t0); break;
  case R_GEN: ig_gen_handle(s, req, IG_API_GENERATE, "/generate", 0, body, len, t0); break;
  case R_STREAM: ig_gen_handle(s, req, IG_API_GENERATE_STREAM, "/generate_stream", 0, body, len, t0); break;
  case R_COMPAT: ig_gen_handle(s, req, IG_API_GENERATE, "/", 0, body, len, t0); break;
  case R_INVOC: ig_gen_handle(s, req, IG_API_GENERATE, "/invocations", 0, body, len, t0); break;
  case R_CHAT: ig_gen_handle(s, req, IG_API_CHAT, "/v1/chat/completions", 1, body, len, t0); break;
  default: ig_gen_handle(s, req, IG_API_COMPLETIONS, "/v1/completions", 1, body, len, t0); break;
  }
}

/* --prometheus-port: GET /metrics; anything else 404 */
static void on_prom_request(struct evhttp_request *req, void *arg) {
  ig_server *s = arg;
  const char *uri = evhttp_request_get_uri(req);
  size_t pl = strcspn(uri, "?#");
  if ((pl == 8 || (pl == 9 && uri[8] == '/')) && !strncmp(uri, "/metrics", 8)) route_metrics(s, req);
  else ig_server_send_error(s, req, 0, 404, "Not Found", "not_found");
}

/* ---- lifecycle -------------------------------------------------------------------------------------------------- */

static void check_drained(evutil_socket_t fd, short what, void *arg);

static void begin_stop(ig_server *s) {
  if (s->draining) return;
  s->draining = 1;
  atomic_store(&s->stopping, 1);
  if (s->sock) {
    evhttp_del_accept_socket(s->http, s->sock);
    s->sock = NULL;
  }
  if (s->sock_prom) {
    evhttp_del_accept_socket(s->http_prom, s->sock_prom);
    s->sock_prom = NULL;
  }
  ig_log(IG_LOG_INFO, "shutting down: %d request(s) in flight, grace %d ms", s->n_jobs, s->cfg.grace_ms);
  s->ev_grace = evtimer_new(s->base, check_drained, s);
  check_drained(-1, 0, s);
}

/* Bytes of finished replies still waiting in some connection's output buffer. */
static size_t pending_output(ig_server *s) {
  size_t n = 0;
  for (ig_conn_watch *w = s->watches; w; w = w->next) {
    bufferevent_event_cb ecb = NULL;
    bufferevent_getcb(w->bev, NULL, NULL, &ecb, NULL);
    if (ecb) n += evbuffer_get_length(bufferevent_get_output(w->bev));
  }
  return n;
}

static void check_drained(evutil_socket_t fd, short what, void *arg) {
  ig_server *s = arg;
  static const long long poll_ns = 20000000;
  /* done when no job is left and their last bytes have left too (at most 2 s more for slow readers) */
  if (s->n_jobs == 0 && (pending_output(s) == 0 || s->flush_waited_ns >= 2000000000LL)) {
    event_base_loopexit(s->base, NULL);
    return;
  }
  if (s->n_jobs == 0) {
    s->flush_waited_ns += poll_ns;
    struct timeval tv = {0, (suseconds_t)(poll_ns / 1000)};
    evtimer_add(s->ev_grace, &tv);
    return;
  }
  /* the grace period is counted in polls of 20 ms; after it, cancel everything, then wait a little more */
  s->drain_waited_ns += poll_ns;
  if (s->drain_waited_ns >= (long long)s->cfg.grace_ms * 1000000LL) ig_gen_cancel_all(s);
  if (s->drain_waited_ns >= (long long)s->cfg.grace_ms * 1000000LL + 5000000000LL) {
    ig_log(IG_LOG_WARN, "%d request(s) did not finish after cancellation; exiting anyway", s->n_jobs);
    event_base_loopexit(s->base, NULL);
    return;
  }
  struct timeval tv = {0, (suseconds_t)(poll_ns / 1000)};
  evtimer_add(s->ev_grace, &tv);
}

static void on_signal(evutil_socket_t sig, short what, void *arg) {
  ig_log(IG_LOG_INFO, "received %s", sig == SIGINT ? "SIGINT" : "SIGTERM");
  begin_stop(arg);
}

static void on_stop(evutil_socket_t fd, short what, void *arg) { begin_stop(arg); }

static char *dup_or(const char *s, const char *dflt) {
  const char *v = s ? s : dflt;
  return v ? strdup(v) : NULL;
}

int ig_server_create(const ig_server_config *cfg, const ig_server_hooks *hooks, ig_server **out, char *err,
                     size_t errlen) {
  *out = NULL;
  static int threads_on;
  if (!threads_on) {
    if (evthread_use_pthreads() != 0) {
      snprintf(err, errlen, "evthread_use_pthreads failed");
      return -1;
    }
    threads_on = 1;
  }
  ig_server *s = calloc(1, sizeof *s);
  if (!s) {
    snprintf(err, errlen, "out of memory");
    return -ENOMEM;
  }
  s->cfg = *cfg;
  s->hostname = dup_or(cfg->hostname, "0.0.0.0");
  s->model_id = dup_or(cfg->model_id, "");
  s->model_dtype = dup_or(cfg->model_dtype, "float32");
  s->device = dup_or(cfg->device, "cpu");
  s->version = dup_or(cfg->version, "0.1.0");
  s->api_key = cfg->api_key && cfg->api_key[0] ? strdup(cfg->api_key) : NULL;
  s->cors = cfg->cors_allow_origin && cfg->cors_allow_origin[0] ? strdup(cfg->cors_allow_origin) : NULL;
  if (hooks) s->hooks = *hooks;
  s->lim.max_best_of = cfg->max_best_of;
  s->lim.max_stop_sequences = cfg->max_stop_sequences;
  s->lim.max_top_n_tokens = cfg->max_top_n_tokens > IG_MAX_TOP_N ? IG_MAX_TOP_N : cfg->max_top_n_tokens;
  s->lim.max_input_tokens = cfg->max_input_tokens;
  s->lim.max_total_tokens = cfg->max_total_tokens;
  s->lim.max_client_batch_size = cfg->max_client_batch_size;
  s->lim.trust_request_chat_template = cfg->trust_request_chat_template;
  snprintf(s->fingerprint, sizeof s->fingerprint, "%s-native", s->version);
  s->created = (long long)time(NULL);
  atomic_store(&s->next_id, 1);
  ig_metrics_init(&s->metrics, cfg->max_input_tokens, cfg->max_total_tokens);
  pthread_mutex_init(&s->wq_mu, NULL);
  pthread_mutex_init(&s->wake_mu, NULL);
  pthread_cond_init(&s->wq_cv, NULL);

  s->base = event_base_new();
  s->http = s->base ? evhttp_new(s->base) : NULL;
  if (!s->http) {
    snprintf(err, errlen, "cannot create the event loop");
    ig_server_destroy(s);
    return -1;
  }
  evhttp_set_allowed_methods(s->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_HEAD |
                                          EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_PATCH);
  evhttp_set_max_body_size(s->http, (ev_ssize_t)(cfg->payload_limit ? cfg->payload_limit : 2000000));
  evhttp_set_max_headers_size(s->http, 64 * 1024);
  /* a too-large body gets its 413 read by the client: drain what it still sends instead of resetting */
  evhttp_set_flags(s->http, EVHTTP_SERVER_LINGERING_CLOSE);
  evhttp_set_timeout(s->http, cfg->read_timeout_s > 0 ? cfg->read_timeout_s : 60);
  evhttp_set_gencb(s->http, on_request, s);
  evhttp_set_bevcb(s->http, on_new_conn, s);
  s->sock = evhttp_bind_socket_with_handle(s->http, s->hostname, (ev_uint16_t)cfg->port);
  if (!s->sock) {
    snprintf(err, errlen, "cannot listen on %s:%d: %s", s->hostname, cfg->port, strerror(errno));
    ig_server_destroy(s);
    return -1;
  }
  if (cfg->prometheus_port > 0) { /* TGI's --prometheus-port: the metrics alone, for scrapers that expect them there */
    s->http_prom = evhttp_new(s->base);
    if (s->http_prom) {
      evhttp_set_allowed_methods(s->http_prom, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
      evhttp_set_timeout(s->http_prom, cfg->read_timeout_s > 0 ? cfg->read_timeout_s : 60);
      evhttp_set_gencb(s->http_prom, on_prom_request, s);
      s->sock_prom = evhttp_bind_socket_with_handle(s->http_prom, s->hostname, (ev_uint16_t)cfg->prometheus_port);
    }
    if (!s->sock_prom) {
      snprintf(err, errlen, "cannot listen on %s:%d (--prometheus-port): %s", s->hostname, cfg->prometheus_port,
               strerror(errno));
      ig_server_destroy(s);
      return -1;
    }
  }
  evutil_socket_t fd = evhttp_bound_socket_get_fd(s->sock);
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
    if (ss.ss_family == AF_INET)
      s->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    else if (ss.ss_family == AF_INET6)
      s->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  }
  s->ev_done = event_new(s->base, -1, 0, ig_gen_on_done, s);
  s->ev_wake_all = event_new(s->base, -1, 0, ig_gen_on_wake_all, s);
  s->ev_stop = event_new(s->base, -1, 0, on_stop, s);
  if (cfg->handle_signals) {
    s->ev_sigint = evsignal_new(s->base, SIGINT, on_signal, s);
    s->ev_sigterm = evsignal_new(s->base, SIGTERM, on_signal, s);
    if (s->ev_sigint) event_add(s->ev_sigint, NULL);
    if (s->ev_sigterm) event_add(s->ev_sigterm, NULL);
  }
  if (!s->ev_done || !s->ev_wake_all || !s->ev_stop || ig_gen_start_workers(s, err, errlen) != 0) {
    if (!err[0]) snprintf(err, errlen, "cannot create events");
    ig_server_destroy(s);
    return -1;
  }
  *out = s;
  return 0;
}

int ig_server_port(const ig_server *s) { return s->port; }

void ig_server_set_ready(ig_server *s, const ig_server_hooks *hooks) {
  if (hooks) s->hooks = *hooks;
  s->lim.tool_args_key = s->hooks.tool_args_key; /* read by the parser once ready is seen */
  atomic_store(&s->ready, 1);
}

int ig_server_run(ig_server *s) {
  event_base_dispatch(s->base);
  return 0;
}

void ig_server_stop(ig_server *s) { event_active(s->ev_stop, EV_READ, 0); }

void ig_server_destroy(ig_server *s) {
  if (!s) return;
  if (s->n_workers) ig_gen_stop_workers(s);
  /* jobs left (only after a forced exit): the engine must be gone by now */
  ig_gen_destroy_all(s);
  if (s->http) evhttp_free(s->http);
  if (s->http_prom) evhttp_free(s->http_prom);
  while (s->watches) watch_free(s->watches);
  if (s->ev_done) event_free(s->ev_done);
  if (s->ev_wake_all) event_free(s->ev_wake_all);
  free(s->wake_q);
  free(s->wake_run);
  if (s->ev_stop) event_free(s->ev_stop);
  if (s->ev_grace) event_free(s->ev_grace);
  if (s->ev_sigint) event_free(s->ev_sigint);
  if (s->ev_sigterm) event_free(s->ev_sigterm);
  if (s->base) event_base_free(s->base);
  pthread_mutex_destroy(&s->wq_mu);
  pthread_mutex_destroy(&s->wake_mu);
  pthread_cond_destroy(&s->wq_cv);
  free(s->hostname);
  free(s->model_id);
  free(s->model_dtype);
  free(s->device);
  free(s->version);
  free(s->api_key);
  free(s->cors);
  free(s);
}
