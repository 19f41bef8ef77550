/* bench/http: see http.h. Header lines are at most 64 KiB; chunk sizes are hex with optional extensions. */
#include "bench/http.h"
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define IG_HTTP_MAX_LINE 65536

void ig_http_resp_init(ig_http_resp *r) {
  memset(r, 0, sizeof *r);
  ig_str_init(&r->line);
  r->state = IG_HTTP_STATUS_LINE;
  r->content_length = -1;
}

void ig_http_resp_free(ig_http_resp *r) { ig_str_free(&r->line); }

static int fail(ig_http_resp *r, const char *why) {
  r->state = IG_HTTP_ERROR;
  snprintf(r->err, sizeof r->err, "%s", why);
  return -1;
}

static int parse_status(ig_http_resp *r, const char *l, size_t n) {
  /* HTTP/1.x SP 3DIGIT [SP reason] */
  if (n < 12 || memcmp(l, "HTTP/1.", 7) || (l[7] != '0' && l[7] != '1') || l[8] != ' ') return fail(r, "bad status line");
  if (!isdigit((unsigned char)l[9]) || !isdigit((unsigned char)l[10]) || !isdigit((unsigned char)l[11]))
    return fail(r, "bad status code");
  if (n > 12 && l[12] != ' ') return fail(r, "bad status line");
  r->status = (l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0');
  r->keep_alive = l[7] == '1';
  r->state = IG_HTTP_HEADERS;
  return 0;
}

static int has_token(const char *v, size_t n, const char *tok) {
  size_t tl = strlen(tok);
  for (size_t i = 0; i + tl <= n; i++)
    if (!strncasecmp(v + i, tok, tl)) return 1;
  return 0;
}

static void trim(const char **v, size_t *n) {
  while (*n && (**v == ' ' || **v == '\t')) (*v)++, (*n)--;
  while (*n && ((*v)[*n - 1] == ' ' || (*v)[*n - 1] == '\t')) (*n)--;
}

static int end_of_headers(ig_http_resp *r) {
  int no_body = (r->status >= 100 && r->status < 200) || r->status == 204 || r->status == 304;
  if (r->status >= 100 && r->status < 200) { /* interim response (100 Continue): the real one follows */
    r->state = IG_HTTP_STATUS_LINE;
    r->status = 0;
    r->chunked = 0;
    r->content_length = -1;
    r->content_type[0] = 0;
    return 0;
  }
  if (no_body) r->state = IG_HTTP_DONE;
  else if (r->chunked) r->state = IG_HTTP_CHUNK_SIZE;
  else if (r->content_length >= 0) {
    r->remaining = r->content_length;
    r->state = r->remaining ? IG_HTTP_BODY_LENGTH : IG_HTTP_DONE;
  } else {
    r->state = IG_HTTP_BODY_CLOSE;
    r->keep_alive = 0;
  }
  return 0;
}

static int parse_header(ig_http_resp *r, const char *l, size_t n) {
  if (n == 0) return end_of_headers(r);
  const char *colon = memchr(l, ':', n);
  if (!colon || colon == l) return fail(r, "bad header line");
  size_t nl = (size_t)(colon - l);
  const char *v = colon + 1;
  size_t vn = n - nl - 1;
  trim(&v, &vn);
  if (nl == 14 && !strncasecmp(l, "content-length", 14)) {
    long long cl = 0;
    if (vn == 0 || vn > 18) return fail(r, "bad Content-Length");
    for (size_t i = 0; i < vn; i++) {
      if (!isdigit((unsigned char)v[i])) return fail(r, "bad Content-Length");
      cl = cl * 10 + (v[i] - '0');
    }
    r->content_length = cl;
  } else if (nl == 17 && !strncasecmp(l, "transfer-encoding", 17)) {
    if (has_token(v, vn, "chunked")) r->chunked = 1;
  } else if (nl == 10 && !strncasecmp(l, "connection", 10)) {
    if (has_token(v, vn, "close")) r->keep_alive = 0;
    else if (has_token(v, vn, "keep-alive")) r->keep_alive = 1;
  } else if (nl == 12 && !strncasecmp(l, "content-type", 12)) {
    size_t k = vn < sizeof r->content_type - 1 ? vn : sizeof r->content_type - 1;
    memcpy(r->content_type, v, k);
    r->content_type[k] = 0;
  }
  return 0;
}

static int parse_chunk_size(ig_http_resp *r, const char *l, size_t n) {
  long long sz = 0;
  size_t i = 0;
  for (; i < n && isxdigit((unsigned char)l[i]); i++) {
    if (sz > (1LL << 40)) return fail(r, "chunk too large");
    int c = l[i];
    sz = sz * 16 + (isdigit(c) ? c - '0' : (tolower(c) - 'a' + 10));
  }
  if (i == 0) return fail(r, "bad chunk size");
  while (i < n && (l[i] == ' ' || l[i] == '\t')) i++;
  if (i < n && l[i] != ';') return fail(r, "bad chunk size");
  r->remaining = sz;
  r->state = sz ? IG_HTTP_CHUNK_DATA : IG_HTTP_TRAILERS;
  return 0;
}

static int on_line(ig_http_resp *r, const char *l, size_t n) {
  if (n && l[n - 1] == '\r') n--; /* CRLF; a bare LF is tolerated */
  switch (r->state) {
  case IG_HTTP_STATUS_LINE: return parse_status(r, l, n);
  case IG_HTTP_HEADERS: return parse_header(r, l, n);
  case IG_HTTP_CHUNK_SIZE: return parse_chunk_size(r, l, n);
  case IG_HTTP_CHUNK_END:
    if (n) return fail(r, "missing CRLF after chunk");
    r->state = IG_HTTP_CHUNK_SIZE;
    return 0;
  case IG_HTTP_TRAILERS:
    if (n == 0) r->state = IG_HTTP_DONE;
    return 0;
  default: return fail(r, "internal parser state");
  }
}

static int line_state(ig_http_state s) {
  return s == IG_HTTP_STATUS_LINE || s == IG_HTTP_HEADERS || s == IG_HTTP_CHUNK_SIZE || s == IG_HTTP_CHUNK_END ||
         s == IG_HTTP_TRAILERS;
}

int ig_http_feed(ig_http_resp *r, const char *p, size_t n, ig_http_body_fn fn, void *ud) {
  size_t i = 0;
  while (i < n) {
    if (r->state == IG_HTTP_DONE) return 0;
    if (r->state == IG_HTTP_ERROR) return -1;
    if (line_state(r->state)) {
      const char *nl = memchr(p + i, '\n', n - i);
      size_t k = nl ? (size_t)(nl - (p + i)) : n - i;
      if (r->line.len + k > IG_HTTP_MAX_LINE) return fail(r, "line too long");
      if (!nl) {
        if (ig_str_append(&r->line, p + i, k)) return fail(r, "out of memory");
        return 0;
      }
      int rc;
      if (r->line.len) {
        if (ig_str_append(&r->line, p + i, k)) return fail(r, "out of memory");
        rc = on_line(r, r->line.p, r->line.len);
        ig_str_clear(&r->line);
      } else {
        rc = on_line(r, p + i, k);
      }
      i += k + 1;
      if (rc) return rc;
      continue;
    }
    size_t take = n - i;
    if (r->state == IG_HTTP_BODY_LENGTH || r->state == IG_HTTP_CHUNK_DATA) {
      if ((long long)take > r->remaining) take = (size_t)r->remaining;
      r->remaining -= (long long)take;
    }
    const char *body = p + i;
    i += take;
    if (r->remaining == 0) {
      if (r->state == IG_HTTP_BODY_LENGTH) r->state = IG_HTTP_DONE;
      else if (r->state == IG_HTTP_CHUNK_DATA) r->state = IG_HTTP_CHUNK_END;
    }
    if (take && fn) {
      int rc = fn(ud, body, take);
      if (rc) return rc;
    }
  }
  return r->state == IG_HTTP_ERROR ? -1 : 0;
}

int ig_http_eof(ig_http_resp *r) {
  if (r->state == IG_HTTP_BODY_CLOSE) r->state = IG_HTTP_DONE;
  return r->state == IG_HTTP_DONE;
}
