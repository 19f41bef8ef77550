/* util/log: one line per event on stderr, as text or as JSON (--json-output / JSON_OUTPUT).
 * ig_log(IG_LOG_INFO, "loaded %d tensors", n) -> "2026-11-23T16:40:00.123Z INFO loaded 3 tensors"
 * or {"timestamp":"...","level":"INFO","message":"loaded 3 tensors"}. Thread-safe (one write per line). */
#ifndef IG_UTIL_LOG_H
#define IG_UTIL_LOG_H
#include <stdarg.h>

typedef enum { IG_LOG_DEBUG = 0, IG_LOG_INFO = 1, IG_LOG_WARN = 2, IG_LOG_ERROR = 3 } ig_log_level;

void ig_log_set_json(int on);
void ig_log_set_level(ig_log_level lvl);
int ig_log_json(void);
void ig_log(ig_log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A log line with extra key/value fields: kv is a NULL-terminated list of key, value strings.
 * Text: "... message key=value key=value"; JSON: extra string fields. */
void ig_log_kv(ig_log_level lvl, const char *msg, const char *const *kv);

/* Progress line for long work (weight loading): rewrites one line on a terminal, else logs every ~10%. */
void ig_log_progress(const char *what, double done, double total, const char *unit);

#endif
