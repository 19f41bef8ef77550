/* bench/http: an incremental HTTP/1.1 response parser for the benchmark client: status line, headers,
 * then the body framed by Content-Length, chunked transfer encoding, or the connection's end. Body bytes
 * are handed to a callback as they arrive (SSE streams are consumed while they are being written). */
#ifndef IG_BENCH_HTTP_H
#define IG_BENCH_HTTP_H
#include "util/str.h"
#include <stddef.h>

typedef enum {
  IG_HTTP_STATUS_LINE,
  IG_HTTP_HEADERS,
  IG_HTTP_BODY_LENGTH, /* Content-Length body */
  IG_HTTP_CHUNK_SIZE,
  IG_HTTP_CHUNK_DATA,
  IG_HTTP_CHUNK_END,   /* CRLF after a chunk's data */
  IG_HTTP_TRAILERS,
  IG_HTTP_BODY_CLOSE,  /* body runs until the connection closes */
  IG_HTTP_DONE,
  IG_HTTP_ERROR
} ig_http_state;

/* Return non-zero to stop parsing; ig_http_feed then returns that value. */
typedef int (*ig_http_body_fn)(void *ud, const char *p, size_t n);

typedef struct ig_http_resp {
  ig_http_state state;
  int status;              /* e.g. 200 */
  int chunked;
  int keep_alive;          /* HTTP/1.1 without "Connection: close" */
  long long content_length; /* -1 when absent */
  long long remaining;     /* bytes left in the current chunk or Content-Length body */
  char content_type[64];
  ig_str line;             /* a status/header/chunk-size line split across pieces */
  char err[96];
} ig_http_resp;

void ig_http_resp_init(ig_http_resp *r);
void ig_http_resp_free(ig_http_resp *r);
/* Feed bytes; body bytes go to fn. Returns 0 (more wanted or done: check state), -1 on malformed input
 * (r->err says why), or the callback's non-zero value. Bytes after the end of the message are ignored. */
int ig_http_feed(ig_http_resp *r, const char *p, size_t n, ig_http_body_fn fn, void *ud);
/* The connection ended. Returns 1 when the message is complete (DONE, or a close-delimited body),
 * 0 when it was cut short. */
int ig_http_eof(ig_http_resp *r);

#endif
