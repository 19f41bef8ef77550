/* bench/net: the benchmark's view of the server: its address (resolved once), the request head writer and
 * a one-shot request helper (for /tokenize and /v1/models before the run). Internal to ig_bench. */
#ifndef IG_BENCH_NET_H
#define IG_BENCH_NET_H
#include "util/str.h"
#include <event2/event.h>
#include <netinet/in.h>
#include <sys/socket.h>

typedef struct ig_bench_target {
  struct sockaddr_storage addr;
  socklen_t addrlen;
  char hostport[300]; /* for the Host header */
  char prefix[256];   /* path prefix without trailing '/', may be "" */
} ig_bench_target;

/* http://host[:port][/prefix]. Resolves the host once (getaddrinfo). */
int ig_bench_target_parse(const char *url, ig_bench_target *t, char *err, size_t errlen);
/* Append a request head (and body) for METHOD prefix+path to out; keep_alive 0 asks the server to close. */
int ig_bench_request(ig_str *out, const ig_bench_target *t, const char *method, const char *path,
                     const char *body, size_t body_len, int keep_alive);
/* One request on a fresh connection, run to completion on base. *status: HTTP status, 0 when no answer.
 * The response body goes to resp (cleared first). Returns 0 when an answer came (any status), else -1. */
int ig_bench_http_once(struct event_base *base, const ig_bench_target *t, const char *method, const char *path,
                       const char *body, double timeout_s, int *status, ig_str *resp, char *err, size_t errlen);
double ig_bench_now(void); /* monotonic seconds */

#endif
