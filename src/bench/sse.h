/* bench/sse: an incremental Server-Sent Events parser (WHATWG rules: LF, CRLF or CR line ends, "data:"
 * lines joined by LF, ":" comments, an empty line dispatches). Bytes arrive in arbitrary pieces: an event may
 * be split across reads and one read may hold many events. No I/O here; the caller feeds body bytes. */
#ifndef IG_BENCH_SSE_H
#define IG_BENCH_SSE_H
#include "util/str.h"
#include <stddef.h>

/* Called once per dispatched event that carried at least one data line. `event` is the event type
 * ("" when none), data is NUL-terminated. Return non-zero to stop parsing (ig_sse_feed returns that value). */
typedef int (*ig_sse_event_fn)(void *ud, const char *event, const char *data, size_t len);

typedef struct ig_sse {
  ig_str line;     /* the current, not yet terminated line */
  ig_str data;     /* data of the event being assembled */
  char event[64];  /* event type of the event being assembled */
  int has_data;
  int skip_lf;     /* the previous piece ended in CR: a leading LF belongs to that line end */
  size_t max_line; /* a longer line is an error (default 16 MiB) */
} ig_sse;

void ig_sse_init(ig_sse *p);
void ig_sse_free(ig_sse *p);
/* Feed n bytes. Returns 0, the callback's non-zero value, or -1 (line too long / out of memory). */
int ig_sse_feed(ig_sse *p, const char *buf, size_t n, ig_sse_event_fn fn, void *ud);

#endif
