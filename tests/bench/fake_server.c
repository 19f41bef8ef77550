/* tests/bench/fake_server: a scripted TGI/OpenAI streaming server for testing `ignis bench`. Tokens leave at
 * planned times (first at request + --ttft-ms, then every --itl-ms, on an absolute schedule so timer lateness
 * does not accumulate). Markers in the prompt script failures: __500__, __422__, __reset__ (3 tokens then a
 * TCP RST), __close__ (2 tokens then FIN mid-stream), __empty__ (200, no token), __malformed__, __streamerr__,
 * __stall__ (headers, then nothing), __json__ (a plain JSON answer, not a stream). POST /tokenize splits words (one token, two when longer than 6 bytes)
 * after a BOS token. Connections are kept alive unless the client asks to close (--max-per-conn N closes
 * silently after N answers, as an idle timeout would); GET /stats counts connections and requests. Prints "PORT <n>" on stdout once listening. Ends on SIGTERM/SIGINT. */
#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <jansson.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double g_ttft = 0.05, g_itl = 0.01;
static int g_tokens = -1; /* fixed count; -1: from the request */
static int g_burst = 1;   /* max tokens written per timer fire when they are due */
static int g_split = 0;   /* write every event in two chunked pieces, 1 ms apart */
static const char *g_tokenize = "tgi"; /* tgi | vllm | none */
static int g_max_per_conn = 0; /* close (silently, as an idle timeout would) after this many answers; 0: never */
static long g_connections, g_requests;
static struct event_base *g_base;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef enum { M_OK, M_500, M_422, M_RESET, M_CLOSE, M_EMPTY, M_MALFORMED, M_STREAMERR, M_STALL, M_JSON } mode;

typedef struct client {
  struct client *prev, *next; /* all open connections, freed at shutdown */
  struct bufferevent *bev;
  struct event *timer;
  int openai;
  mode m;
  int n_tokens, sent, prompt_tokens;
  double t0;
  int done;        /* response fully queued: close (or wait for the next request) once flushed */
  int keep;        /* keep-alive: the client did not ask to close */
  int served;      /* answers on this connection */
  char *pending;   /* second half of a split event */
} client;

static client *g_clients;

static void client_free(client *c) {
  if (c->prev) c->prev->next = c->next;
  else g_clients = c->next;
  if (c->next) c->next->prev = c->prev;
  if (c->timer) event_free(c->timer);
  if (c->bev) bufferevent_free(c->bev);
  free(c->pending);
  free(c);
}

static void write_chunk(client *c, const char *p, size_t n) {
  struct evbuffer *out = bufferevent_get_output(c->bev);
  evbuffer_add_printf(out, "%zx\r\n", n);
  evbuffer_add(out, p, n);
  evbuffer_add(out, "\r\n", 2);
}

static void end_chunked(client *c) {
  evbuffer_add(bufferevent_get_output(c->bev), "0\r\n\r\n", 5);
  c->done = 1;
}

static void reply_json(client *c, int status, const char *reason, const char *body) {
  evbuffer_add_printf(bufferevent_get_output(c->bev),
                      "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                      "Connection: %s\r\n\r\n%s",
                      status, reason, strlen(body), c->keep ? "keep-alive" : "close", body);
  c->done = 1;
}

static void sse_head(client *c) {
  evbuffer_add_printf(bufferevent_get_output(c->bev),
                      "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                      "Transfer-Encoding: chunked\r\nConnection: %s\r\n\r\n", c->keep ? "keep-alive" : "close");
}

static void send_event(client *c, const char *ev) {
  size_t n = strlen(ev);
  if (g_split && n > 4) {
    size_t h = n / 2;
    write_chunk(c, ev, h);
    c->pending = strdup(ev + h);
  } else {
    write_chunk(c, ev, n);
  }
}

static void token_event(client *c, int k) {
  char ev[512];
  int last = k == c->n_tokens - 1;
  if (!c->openai) {
    snprintf(ev, sizeof ev,
             "data:{\"index\":%d,\"token\":{\"id\":%d,\"text\":\" tok\",\"logprob\":-0.25,\"special\":false},"
             "\"generated_text\":%s,\"details\":null}\n\n",
             k + 1, 100 + k, last ? "\"done\"" : "null");
  } else {
    snprintf(ev, sizeof ev,
             "data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":0,\"model\":\"fake-model\","
             "\"choices\":[{\"index\":0,\"text\":\" tok\",\"logprobs\":null,\"finish_reason\":%s}]}\n\n",
             last ? "\"length\"" : "null");
  }
  send_event(c, ev);
}

static void arm(client *c, double at) {
  double w = at - now_s();
  if (w < 0) w = 0;
  struct timeval tv = {(time_t)w, (suseconds_t)((w - floor(w)) * 1e6)};
  evtimer_add(c->timer, &tv);
}

static void finish_stream(client *c) {
  if (c->openai) {
    char ev[256];
    snprintf(ev, sizeof ev,
             "data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":0,\"model\":\"fake-model\","
             "\"choices\":[],\"usage\":{\"prompt_tokens\":%d,\"completion_tokens\":%d,\"total_tokens\":%d}}\n\n",
             c->prompt_tokens, c->sent, c->prompt_tokens + c->sent);
    write_chunk(c, ev, strlen(ev));
    const char *d = "data: [DONE]\n\n";
    write_chunk(c, d, strlen(d));
  }
  end_chunked(c);
}

static void on_tick(evutil_socket_t fd, short what, void *ud) {
  client *c = ud;
  if (c->pending) { /* the second half of a split event */
    write_chunk(c, c->pending, strlen(c->pending));
    free(c->pending);
    c->pending = NULL;
  }
  if (c->m == M_RESET && c->sent >= 3) {
    struct linger lg = {1, 0};
    setsockopt(bufferevent_getfd(c->bev), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    client_free(c); /* close() with linger 0: RST */
    return;
  }
  if (c->m == M_CLOSE && c->sent >= 2) {
    client_free(c); /* FIN in the middle of a chunked stream */
    return;
  }
  if (c->m == M_STREAMERR && c->sent >= 2) {
    const char *e = "data:{\"error\":\"Request failed during generation\",\"error_type\":\"generation\"}\n\n";
    write_chunk(c, e, strlen(e));
    end_chunked(c);
    return;
  }
  double now = now_s();
  int burst = 0;
  while (c->sent < c->n_tokens && burst < g_burst && !c->pending) {
    double due = c->t0 + g_ttft + g_itl * c->sent;
    if (due > now) break;
    token_event(c, c->sent++);
    burst++;
  }
  if (c->pending) {
    struct timeval ms = {0, 1000};
    evtimer_add(c->timer, &ms);
    return;
  }
  if (c->sent == c->n_tokens) {
    finish_stream(c);
    return;
  }
  if ((c->m == M_RESET && c->sent >= 3) || (c->m == M_CLOSE && c->sent >= 2) || (c->m == M_STREAMERR && c->sent >= 2)) {
    struct timeval ms = {0, 20000}; /* let the tokens leave first */
    evtimer_add(c->timer, &ms);
    return;
  }
  arm(c, c->t0 + g_ttft + g_itl * c->sent);
}

static int count_words(const char *s) {
  int n = 0, in = 0;
  for (; *s; s++) {
    int sp = *s == ' ';
    if (!sp && !in) n++;
    in = !sp;
  }
  return n;
}

static void do_tokenize(client *c, const char *text) {
  if (!strcmp(g_tokenize, "none")) {
    reply_json(c, 404, "Not Found", "{\"error\":\"No fast tokenizer available\",\"error_type\":\"tokenizer\"}");
    return;
  }
  json_t *arr = json_array();
  int ntok = 0;
  json_t *bos = json_pack("{s:i,s:s,s:i,s:i}", "id", 1, "text", "<s>", "start", 0, "stop", 0);
  json_array_append_new(arr, bos);
  ntok++;
  size_t i = 0, n = strlen(text);
  while (i < n) {
    size_t a = i; /* a token includes its leading space */
    while (i < n && text[i] == ' ') i++;
    size_t ws = i;
    while (i < n && text[i] != ' ') i++;
    if (i == ws) break;
    size_t len = i - ws;
    if (len > 6) { /* two tokens: leading part and the rest */
      size_t mid = ws + 4;
      json_array_append_new(arr, json_pack("{s:i,s:s%,s:i,s:i}", "id", 10 + ntok, "text", text + a, mid - a, "start",
                                           (int)a, "stop", (int)mid));
      json_array_append_new(arr, json_pack("{s:i,s:s%,s:i,s:i}", "id", 10 + ntok + 1, "text", text + mid, i - mid,
                                           "start", (int)mid, "stop", (int)i));
      ntok += 2;
    } else {
      json_array_append_new(arr, json_pack("{s:i,s:s%,s:i,s:i}", "id", 10 + ntok, "text", text + a, i - a, "start",
                                           (int)a, "stop", (int)i));
      ntok++;
    }
  }
  char *body;
  if (!strcmp(g_tokenize, "vllm")) {
    json_t *o = json_pack("{s:i,s:o}", "count", ntok, "tokens", json_array());
    body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
  } else {
    body = json_dumps(arr, JSON_COMPACT);
  }
  json_decref(arr);
  reply_json(c, 200, "OK", body);
  free(body);
}

static void handle(client *c, const char *method, const char *path, const char *body, size_t blen) {
  if (!strcmp(method, "GET") && !strcmp(path, "/health")) {
    reply_json(c, 200, "OK", "{}");
    return;
  }
  if (!strcmp(method, "GET") && !strcmp(path, "/stats")) {
    char b[128];
    snprintf(b, sizeof b, "{\"connections\":%ld,\"requests\":%ld}", g_connections, g_requests);
    reply_json(c, 200, "OK", b);
    return;
  }
  if (!strcmp(method, "GET") && !strcmp(path, "/v1/models")) {
    reply_json(c, 200, "OK", "{\"object\":\"list\",\"data\":[{\"id\":\"fake-model\",\"object\":\"model\"}]}");
    return;
  }
  json_t *o = json_loadb(body, blen, 0, NULL);
  if (!o) {
    reply_json(c, 422, "Unprocessable Entity", "{\"error\":\"bad json\",\"error_type\":\"validation\"}");
    return;
  }
  json_t *inputs = json_object_get(o, "inputs");
  if (!inputs) inputs = json_object_get(o, "prompt");
  const char *text = json_is_string(inputs) ? json_string_value(inputs) : "";
  if (!strcmp(path, "/tokenize")) {
    do_tokenize(c, text);
    json_decref(o);
    return;
  }
  int stream_tgi = !strcmp(path, "/generate_stream");
  int stream_oai = !strcmp(path, "/v1/completions");
  if (!stream_tgi && !stream_oai) {
    reply_json(c, 404, "Not Found", "{\"error\":\"no route\",\"error_type\":\"not_found\"}");
    json_decref(o);
    return;
  }
  c->openai = stream_oai;
  json_t *params = json_object_get(o, "parameters");
  json_t *mx = stream_tgi ? json_object_get(params, "max_new_tokens") : json_object_get(o, "max_tokens");
  c->n_tokens = g_tokens >= 0 ? g_tokens : json_is_integer(mx) ? (int)json_integer_value(mx) : 16;
  c->prompt_tokens = count_words(text) + 1;
  c->m = strstr(text, "__500__")         ? M_500
         : strstr(text, "__422__")       ? M_422
         : strstr(text, "__reset__")     ? M_RESET
         : strstr(text, "__close__")     ? M_CLOSE
         : strstr(text, "__empty__")     ? M_EMPTY
         : strstr(text, "__malformed__") ? M_MALFORMED
         : strstr(text, "__streamerr__") ? M_STREAMERR
         : strstr(text, "__stall__")     ? M_STALL
         : strstr(text, "__json__")      ? M_JSON
                                         : M_OK;
  json_decref(o);
  switch (c->m) {
  case M_500:
    reply_json(c, 500, "Internal Server Error", "{\"error\":\"Incomplete generation\",\"error_type\":\"incomplete_generation\"}");
    return;
  case M_422:
    reply_json(c, 422, "Unprocessable Entity", "{\"error\":\"Input validation error: `inputs` must be shorter\",\"error_type\":\"validation\"}");
    return;
  case M_EMPTY:
    sse_head(c);
    finish_stream(c);
    return;
  case M_MALFORMED:
    sse_head(c);
    write_chunk(c, "data: {not json\n\n", 17);
    end_chunked(c);
    return;
  case M_STALL:
    sse_head(c);
    return;
  case M_JSON: /* a server that ignores streaming and answers once */
    reply_json(c, 200, "OK", "[{\"generated_text\":\" tok tok\"}]");
    return;
  default:
    sse_head(c);
    if (c->n_tokens == 0) {
      finish_stream(c);
      return;
    }
    arm(c, c->t0 + g_ttft);
  }
}

static void on_read(struct bufferevent *bev, void *ud);

static void on_write(struct bufferevent *bev, void *ud) {
  client *c = ud;
  if (!c->done || evbuffer_get_length(bufferevent_get_output(bev)) != 0) return;
  c->served++;
  if (!c->keep || (g_max_per_conn && c->served >= g_max_per_conn)) {
    client_free(c);
    return;
  }
  /* keep-alive: ready for the next request on this connection */
  c->done = 0;
  c->t0 = 0;
  c->sent = c->n_tokens = 0;
  c->m = M_OK;
  if (evbuffer_get_length(bufferevent_get_input(bev))) on_read(bev, c);
}

static void on_read(struct bufferevent *bev, void *ud) {
  client *c = ud;
  if (c->t0 > 0) return; /* one request per connection; ignore the rest */
  struct evbuffer *in = bufferevent_get_input(bev);
  struct evbuffer_ptr hdr_end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
  if (hdr_end.pos < 0) return;
  size_t hlen = (size_t)hdr_end.pos + 4;
  char *head = malloc(hlen + 1);
  evbuffer_copyout(in, head, hlen);
  head[hlen] = 0;
  size_t clen = 0;
  for (char *l = strstr(head, "\r\n"); l && l[2]; l = strstr(l + 2, "\r\n"))
    if (!strncasecmp(l + 2, "content-length:", 15)) clen = (size_t)strtoul(l + 17, NULL, 10);
  if (evbuffer_get_length(in) < hlen + clen) {
    free(head);
    return;
  }
  char method[16] = "", path[256] = "";
  sscanf(head, "%15s %255s", method, path);
  c->keep = 1;
  for (char *l = strstr(head, "\r\n"); l && l[2]; l = strstr(l + 2, "\r\n")) {
    char *eol = strstr(l + 2, "\r\n");
    if (eol && !strncasecmp(l + 2, "connection:", 11)) {
      *eol = 0;
      if (strcasestr(l + 13, "close")) c->keep = 0;
      *eol = '\r';
    }
  }
  free(head);
  g_requests++;
  evbuffer_drain(in, hlen);
  char *body = malloc(clen + 1);
  evbuffer_remove(in, body, clen);
  body[clen] = 0;
  c->t0 = now_s();
  handle(c, method, path, body, clen);
  free(body);
  if (c->done) on_write(bev, c);
}

static void on_event(struct bufferevent *bev, short what, void *ud) {
  (void)bev;
  if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) client_free(ud);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len, void *ud) {
  client *c = calloc(1, sizeof *c);
  g_connections++;
  c->next = g_clients;
  if (g_clients) g_clients->prev = c;
  g_clients = c;
  c->bev = bufferevent_socket_new(g_base, fd, BEV_OPT_CLOSE_ON_FREE);
  c->timer = evtimer_new(g_base, on_tick, c);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
  bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

static void on_signal(evutil_socket_t sig, short what, void *ud) { event_base_loopbreak(g_base); }

int main(int argc, char **argv) {
  int port = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const char *k = argv[i], *v = argv[i + 1];
    if (!strcmp(k, "--port")) port = atoi(v);
    else if (!strcmp(k, "--ttft-ms")) g_ttft = atof(v) / 1e3;
    else if (!strcmp(k, "--itl-ms")) g_itl = atof(v) / 1e3;
    else if (!strcmp(k, "--tokens")) g_tokens = atoi(v);
    else if (!strcmp(k, "--burst")) g_burst = atoi(v) > 0 ? atoi(v) : 1;
    else if (!strcmp(k, "--split")) g_split = atoi(v);
    else if (!strcmp(k, "--tokenize")) g_tokenize = v;
    else if (!strcmp(k, "--max-per-conn")) g_max_per_conn = atoi(v);
    else {
      fprintf(stderr, "fake_server: unknown option %s\n", k);
      return 2;
    }
  }
  signal(SIGPIPE, SIG_IGN);
  struct event_config *ecfg = event_config_new();
  event_config_set_flag(ecfg, EVENT_BASE_FLAG_PRECISE_TIMER); /* token times to the microsecond */
  g_base = event_base_new_with_config(ecfg);
  event_config_free(ecfg);
  struct sockaddr_in sin = {0};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sin.sin_port = htons((uint16_t)port);
  struct evconnlistener *l = evconnlistener_new_bind(g_base, on_accept, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
                                                     1024, (struct sockaddr *)&sin, sizeof sin);
  if (!l) {
    perror("fake_server: bind");
    return 1;
  }
  struct sockaddr_in got;
  socklen_t gl = sizeof got;
  getsockname(evconnlistener_get_fd(l), (struct sockaddr *)&got, &gl);
  printf("PORT %d\n", ntohs(got.sin_port));
  fflush(stdout);
  struct event *s1 = evsignal_new(g_base, SIGTERM, on_signal, NULL), *s2 = evsignal_new(g_base, SIGINT, on_signal, NULL);
  event_add(s1, NULL);
  event_add(s2, NULL);
  event_base_dispatch(g_base);
  while (g_clients) client_free(g_clients);
  event_free(s1);
  event_free(s2);
  evconnlistener_free(l);
  event_base_free(g_base);
  return 0;
}
