/* bench/net: see net.h. */
#include "bench/net.h"
#include "bench/http.h"
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double ig_bench_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int ig_bench_target_parse(const char *url, ig_bench_target *t, char *err, size_t errlen) {
  memset(t, 0, sizeof *t);
  const char *p = url;
  if (!strncmp(p, "http://", 7)) p += 7;
  else if (strstr(p, "://")) {
    snprintf(err, errlen, "unsupported URL scheme in '%s' (only http://)", url);
    return -1;
  }
  const char *slash = strchr(p, '/');
  size_t hl = slash ? (size_t)(slash - p) : strlen(p);
  if (hl == 0 || hl >= sizeof t->hostport) {
    snprintf(err, errlen, "bad URL '%s'", url);
    return -1;
  }
  memcpy(t->hostport, p, hl);
  t->hostport[hl] = 0;
  if (slash) {
    size_t pl = strlen(slash);
    while (pl && slash[pl - 1] == '/') pl--;
    if (pl >= sizeof t->prefix) {
      snprintf(err, errlen, "URL path too long");
      return -1;
    }
    memcpy(t->prefix, slash, pl);
    t->prefix[pl] = 0;
  }
  char host[300], port[16] = "80";
  snprintf(host, sizeof host, "%s", t->hostport);
  char *h = host;
  if (h[0] == '[') { /* [v6]:port */
    char *e = strchr(h, ']');
    if (!e) {
      snprintf(err, errlen, "bad URL '%s'", url);
      return -1;
    }
    *e = 0;
    if (e[1] == ':') snprintf(port, sizeof port, "%s", e + 2);
    h++;
  } else {
    char *c = strrchr(h, ':');
    if (c) {
      *c = 0;
      snprintf(port, sizeof port, "%s", c + 1);
    }
  }
  struct addrinfo hints = {0}, *res = NULL;
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  int rc = getaddrinfo(h, port, &hints, &res);
  if (rc || !res) {
    snprintf(err, errlen, "cannot resolve '%s': %s", h, gai_strerror(rc));
    return -1;
  }
  memcpy(&t->addr, res->ai_addr, res->ai_addrlen);
  t->addrlen = res->ai_addrlen;
  freeaddrinfo(res);
  return 0;
}

int ig_bench_request(ig_str *out, const ig_bench_target *t, const char *method, const char *path,
                     const char *body, size_t body_len, int keep_alive) {
  ig_str_printf(out, "%s %s%s HTTP/1.1\r\nHost: %s\r\nUser-Agent: ignis-bench\r\n", method, t->prefix, path,
                t->hostport);
  if (body) {
    ig_str_printf(out, "Content-Type: application/json\r\nContent-Length: %zu\r\n", body_len);
  }
  ig_str_printf(out, "Accept: text/event-stream, application/json\r\nConnection: %s\r\n\r\n",
                keep_alive ? "keep-alive" : "close");
  if (body) ig_str_append(out, body, body_len);
  return out->oom ? -1 : 0;
}

/* ---- one-shot request ---- */

typedef struct once_ctx {
  ig_http_resp http;
  ig_str *resp;
  int done, failed;
  char *err;
  size_t errlen;
  struct event_base *base;
} once_ctx;

static int once_body(void *ud, const char *p, size_t n) {
  once_ctx *c = ud;
  if (c->resp->len + n > ((size_t)256 << 20)) return 1;
  return ig_str_append(c->resp, p, n) ? 1 : 0;
}

static void once_finish(once_ctx *c, int failed, const char *why) {
  if (c->done) return;
  c->done = 1;
  c->failed = failed;
  if (failed && why) snprintf(c->err, c->errlen, "%s", why);
  event_base_loopbreak(c->base);
}

static void once_read(struct bufferevent *bev, void *ud) {
  once_ctx *c = ud;
  struct evbuffer *in = bufferevent_get_input(bev);
  size_t n = evbuffer_get_length(in);
  unsigned char *p = evbuffer_pullup(in, -1);
  int rc = ig_http_feed(&c->http, (const char *)p, n, once_body, c);
  evbuffer_drain(in, n);
  if (rc) once_finish(c, 1, c->http.state == IG_HTTP_ERROR ? c->http.err : "response too large");
  else if (c->http.state == IG_HTTP_DONE) once_finish(c, 0, NULL);
}

static void once_event(struct bufferevent *bev, short what, void *ud) {
  once_ctx *c = ud;
  if (what & BEV_EVENT_CONNECTED) return;
  if (what & BEV_EVENT_TIMEOUT) {
    once_finish(c, 1, "timeout");
    return;
  }
  if (ig_http_eof(&c->http)) once_finish(c, 0, NULL);
  else {
    char why[96];
    snprintf(why, sizeof why, "%s", c->http.status ? "connection closed mid-answer" : strerror(errno));
    once_finish(c, 1, why);
  }
}

int ig_bench_http_once(struct event_base *base, const ig_bench_target *t, const char *method, const char *path,
                       const char *body, double timeout_s, int *status, ig_str *resp, char *err, size_t errlen) {
  *status = 0;
  ig_str_clear(resp);
  once_ctx c = {0};
  ig_http_resp_init(&c.http);
  c.resp = resp;
  c.err = err;
  c.errlen = errlen;
  c.base = base;
  ig_str req;
  ig_str_init(&req);
  int rc = -1;
  struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
  if (!bev || ig_bench_request(&req, t, method, path, body, body ? strlen(body) : 0, 0)) {
    snprintf(err, errlen, "out of memory");
    goto out;
  }
  struct timeval tv = {(time_t)timeout_s, (suseconds_t)((timeout_s - (double)(time_t)timeout_s) * 1e6)};
  bufferevent_set_timeouts(bev, &tv, &tv);
  bufferevent_setcb(bev, once_read, NULL, once_event, &c);
  bufferevent_enable(bev, EV_READ | EV_WRITE);
  if (bufferevent_socket_connect(bev, (struct sockaddr *)&t->addr, (int)t->addrlen) < 0) {
    snprintf(err, errlen, "cannot connect to %s: %s", t->hostport, strerror(errno));
    goto out;
  }
  bufferevent_write(bev, req.p, req.len);
  while (!c.done) {
    if (event_base_dispatch(base) < 0) break;
    if (!c.done && !event_base_got_break(base)) {
      /* the loop ran out of events without an answer */
      once_finish(&c, 1, "no answer");
    }
  }
  *status = c.http.status;
  rc = c.failed ? -1 : 0;
out:
  if (bev) bufferevent_free(bev);
  ig_str_free(&req);
  ig_http_resp_free(&c.http);
  return rc;
}
