/* bench/sse: see sse.h. Lines are processed in place when they lie whole in the fed buffer; only a line
 * split across pieces is copied into p->line. */
#include "bench/sse.h"
#include <string.h>

void ig_sse_init(ig_sse *p) {
  memset(p, 0, sizeof *p);
  ig_str_init(&p->line);
  ig_str_init(&p->data);
  p->max_line = (size_t)16 << 20;
}

void ig_sse_free(ig_sse *p) {
  ig_str_free(&p->line);
  ig_str_free(&p->data);
}

/* One complete line (without its terminator). */
static int sse_line(ig_sse *p, const char *l, size_t n, ig_sse_event_fn fn, void *ud) {
  if (n == 0) {
    int rc = 0;
    if (p->has_data) {
      if (p->data.oom) return -1;
      rc = fn(ud, p->event, p->data.p ? p->data.p : "", p->data.len);
    }
    ig_str_clear(&p->data);
    p->has_data = 0;
    p->event[0] = 0;
    return rc;
  }
  if (l[0] == ':') return 0; /* comment (keep-alive pings) */
  const char *colon = memchr(l, ':', n);
  size_t flen = colon ? (size_t)(colon - l) : n;
  const char *v = colon ? colon + 1 : l + n;
  size_t vlen = colon ? n - flen - 1 : 0;
  if (vlen && v[0] == ' ') v++, vlen--;
  if (flen == 4 && !memcmp(l, "data", 4)) {
    if (p->has_data) ig_str_putc(&p->data, '\n');
    if (ig_str_append(&p->data, v, vlen)) return -1;
    p->has_data = 1;
  } else if (flen == 5 && !memcmp(l, "event", 5)) {
    size_t k = vlen < sizeof p->event - 1 ? vlen : sizeof p->event - 1;
    memcpy(p->event, v, k);
    p->event[k] = 0;
  } /* id, retry and unknown fields are ignored */
  return 0;
}

int ig_sse_feed(ig_sse *p, const char *buf, size_t n, ig_sse_event_fn fn, void *ud) {
  size_t i = 0;
  if (p->skip_lf && n > 0) {
    if (buf[0] == '\n') i = 1;
    p->skip_lf = 0;
  }
  while (i < n) {
    /* find the next CR or LF */
    const char *s = buf + i;
    size_t rem = n - i, k = 0;
    while (k < rem && s[k] != '\n' && s[k] != '\r') k++;
    if (k == rem) { /* no terminator: keep the partial line */
      if (p->line.len + rem > p->max_line) return -1;
      if (ig_str_append(&p->line, s, rem)) return -1;
      return 0;
    }
    int rc;
    if (p->line.len) {
      if (p->line.len + k > p->max_line) return -1;
      if (ig_str_append(&p->line, s, k)) return -1;
      rc = sse_line(p, p->line.p, p->line.len, fn, ud);
      ig_str_clear(&p->line);
    } else {
      rc = sse_line(p, s, k, fn, ud);
    }
    i += k + 1;
    if (s[k] == '\r') {
      if (i < n) {
        if (buf[i] == '\n') i++;
      } else {
        p->skip_lf = 1;
      }
    }
    if (rc) return rc;
  }
  return 0;
}
