/* util/str: a growable byte buffer (ig_str) and JSON string escaping shared by every module that writes
 * JSON by hand (SSE events, tokenize output). Allocation failure is reported, never ignored. */
#ifndef IG_UTIL_STR_H
#define IG_UTIL_STR_H
#include <stddef.h>
#include <stdint.h>

typedef struct ig_str {
  char *p;    /* always NUL-terminated when len > 0 or after any append */
  size_t len;
  size_t cap;
  int oom;    /* set once an allocation failed; further appends are no-ops */
} ig_str;

void ig_str_init(ig_str *s);
void ig_str_free(ig_str *s);
void ig_str_clear(ig_str *s);
int ig_str_reserve(ig_str *s, size_t extra);
int ig_str_append(ig_str *s, const void *data, size_t n);
int ig_str_puts(ig_str *s, const char *z);
int ig_str_putc(ig_str *s, char c);
int ig_str_printf(ig_str *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Replaces every control character (< 0x20, 0x7f) of the C string z with '?': an error message that quotes input
 * (a name or pattern from a file or request) stays one line. */
void ig_str_oneline(char *z);
/* Append `n` bytes as a JSON string literal with quotes. Invalid UTF-8 bytes become U+FFFD. */
int ig_str_json_string(ig_str *s, const char *data, size_t n);
/* Append a double as JSON (finite: shortest round-trip-ish %.9g; non-finite: null). */
int ig_str_json_number(ig_str *s, double v);
/* Take ownership of the buffer (caller frees with free()); s is reset. */
char *ig_str_steal(ig_str *s, size_t *len);

/* Writes code point cp (at most U+10FFFF) as UTF-8 into out (4 bytes of room); returns how many bytes. */
int ig_utf8_encode(uint32_t cp, char *out);
/* Length of the longest prefix of p[0..n) that is valid, complete UTF-8. */
size_t ig_utf8_valid_prefix(const char *p, size_t n);
int ig_utf8_valid(const char *p, size_t n);

#endif
