/* util/str: see str.h. */
#include "util/str.h"
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ig_str_init(ig_str *s) { memset(s, 0, sizeof *s); }
void ig_str_free(ig_str *s) {
  free(s->p);
  memset(s, 0, sizeof *s);
}
void ig_str_clear(ig_str *s) {
  s->len = 0;
  if (s->p) s->p[0] = 0;
}

int ig_str_reserve(ig_str *s, size_t extra) {
  if (s->oom) return -1;
  if (extra > SIZE_MAX / 2 - s->len) {
    s->oom = 1;
    return -1;
  }
  size_t need = s->len + extra + 1;
  if (need <= s->cap) return 0;
  size_t cap = s->cap ? s->cap : 64;
  while (cap < need) cap *= 2;
  char *p = realloc(s->p, cap);
  if (!p) {
    s->oom = 1;
    return -1;
  }
  s->p = p;
  s->cap = cap;
  return 0;
}

int ig_str_append(ig_str *s, const void *data, size_t n) {
  if (ig_str_reserve(s, n)) return -1;
  if (n) memcpy(s->p + s->len, data, n);
  s->len += n;
  s->p[s->len] = 0;
  return 0;
}
int ig_str_puts(ig_str *s, const char *z) { return ig_str_append(s, z, strlen(z)); }
int ig_str_putc(ig_str *s, char c) { return ig_str_append(s, &c, 1); }

int ig_str_printf(ig_str *s, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char tmp[256];
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n < 0) {
    va_end(ap2);
    return -1;
  }
  if ((size_t)n < sizeof tmp) {
    va_end(ap2);
    return ig_str_append(s, tmp, (size_t)n);
  }
  if (ig_str_reserve(s, (size_t)n)) {
    va_end(ap2);
    return -1;
  }
  vsnprintf(s->p + s->len, (size_t)n + 1, fmt, ap2);
  va_end(ap2);
  s->len += (size_t)n;
  return 0;
}

/* Decode one UTF-8 sequence at p (n bytes available). Returns its length, or 0 if invalid/incomplete. */
static size_t utf8_seq(const unsigned char *p, size_t n, int *incomplete) {
  *incomplete = 0;
  unsigned c = p[0];
  if (c < 0x80) return 1;
  size_t len;
  unsigned min;
  if (c >= 0xC2 && c <= 0xDF) len = 2, min = 0x80;
  else if (c >= 0xE0 && c <= 0xEF) len = 3, min = 0x800;
  else if (c >= 0xF0 && c <= 0xF4) len = 4, min = 0x10000;
  else return 0;
  unsigned cp = c & (0x3F >> (len - 1));
  for (size_t i = 1; i < len; i++) {
    if (i >= n) {
      *incomplete = 1;
      return 0;
    }
    if ((p[i] & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (p[i] & 0x3F);
    /* early rejection of overlongs/surrogates/out-of-range on the second byte */
    if (i == 1) {
      if (len == 3 && c == 0xE0 && p[1] < 0xA0) return 0;
      if (len == 3 && c == 0xED && p[1] > 0x9F) return 0;
      if (len == 4 && c == 0xF0 && p[1] < 0x90) return 0;
      if (len == 4 && c == 0xF4 && p[1] > 0x8F) return 0;
    }
  }
  if (cp < min) return 0;
  return len;
}

int ig_utf8_encode(uint32_t cp, char *o) {
  if (cp < 0x80) return o[0] = (char)cp, 1;
  if (cp < 0x800) return o[0] = (char)(0xC0 | cp >> 6), o[1] = (char)(0x80 | (cp & 0x3F)), 2;
  if (cp < 0x10000) {
    o[0] = (char)(0xE0 | cp >> 12), o[1] = (char)(0x80 | (cp >> 6 & 0x3F)), o[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  o[0] = (char)(0xF0 | cp >> 18), o[1] = (char)(0x80 | (cp >> 12 & 0x3F));
  o[2] = (char)(0x80 | (cp >> 6 & 0x3F)), o[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

size_t ig_utf8_valid_prefix(const char *p, size_t n) {
  size_t i = 0;
  while (i < n) {
    int inc;
    size_t k = utf8_seq((const unsigned char *)p + i, n - i, &inc);
    if (!k) break;
    i += k;
  }
  return i;
}
int ig_utf8_valid(const char *p, size_t n) { return ig_utf8_valid_prefix(p, n) == n; }

int ig_str_json_string(ig_str *s, const char *data, size_t n) {
  static const char hex[] = "0123456789abcdef";
  if (ig_str_reserve(s, n + 2)) return -1;
  ig_str_putc(s, '"');
  const unsigned char *p = (const unsigned char *)data;
  size_t i = 0;
  while (i < n) {
    unsigned char c = p[i];
    if (c >= 0x80) {
      int inc;
      size_t k = utf8_seq(p + i, n - i, &inc);
      if (k) {
        ig_str_append(s, p + i, k);
        i += k;
      } else {
        ig_str_append(s, "\xEF\xBF\xBD", 3);
        i++;
      }
      continue;
    }
    switch (c) {
    case '"': ig_str_append(s, "\\\"", 2); break;
    case '\\': ig_str_append(s, "\\\\", 2); break;
    case '\n': ig_str_append(s, "\\n", 2); break;
    case '\r': ig_str_append(s, "\\r", 2); break;
    case '\t': ig_str_append(s, "\\t", 2); break;
    case '\b': ig_str_append(s, "\\b", 2); break;
    case '\f': ig_str_append(s, "\\f", 2); break;
    default:
      if (c < 0x20 || c == 0x7f) {
        char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
        ig_str_append(s, u, 6);
      } else {
        ig_str_putc(s, (char)c);
      }
    }
    i++;
  }
  return ig_str_putc(s, '"');
}

int ig_str_json_number(ig_str *s, double v) {
  if (!isfinite(v)) return ig_str_puts(s, "null");
  if (v == (double)(long long)v && fabs(v) < 1e15) return ig_str_printf(s, "%lld", (long long)v);
  return ig_str_printf(s, "%.9g", v);
}

char *ig_str_steal(ig_str *s, size_t *len) {
  if (!s->p) ig_str_reserve(s, 0);
  char *p = s->p;
  if (len) *len = s->len;
  memset(s, 0, sizeof *s);
  return p;
}

void ig_str_oneline(char *z) {
  for (; *z; z++)
    if ((unsigned char)*z < 0x20 || *z == 0x7f) *z = '?';
}
