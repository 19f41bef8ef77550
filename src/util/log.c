/* util/log: see log.h. A single write(2) per line keeps lines whole across threads. */
#include "util/log.h"
#include "util/str.h"
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static atomic_int g_json;
static atomic_int g_level = IG_LOG_INFO;

void ig_log_set_json(int on) { atomic_store(&g_json, on ? 1 : 0); }
void ig_log_set_level(ig_log_level lvl) { atomic_store(&g_level, (int)lvl); }
int ig_log_json(void) { return atomic_load(&g_json); }

static const char *level_name(ig_log_level l) {
  switch (l) {
  case IG_LOG_DEBUG: return "DEBUG";
  case IG_LOG_INFO: return "INFO";
  case IG_LOG_WARN: return "WARN";
  default: return "ERROR";
  }
}

static void timestamp(char *buf, size_t n) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  size_t k = strftime(buf, n, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(buf + k, n - k, ".%03ldZ", ts.tv_nsec / 1000000);
}

static void emit(ig_log_level lvl, const char *msg, size_t msglen, const char *const *kv) {
  if ((int)lvl < atomic_load(&g_level)) return;
  char ts[40];
  timestamp(ts, sizeof ts);
  ig_str s;
  ig_str_init(&s);
  if (atomic_load(&g_json)) {
    ig_str_printf(&s, "{\"timestamp\":\"%s\",\"level\":\"%s\",\"message\":", ts, level_name(lvl));
    ig_str_json_string(&s, msg, msglen);
    for (int i = 0; kv && kv[i] && kv[i + 1]; i += 2) {
      ig_str_putc(&s, ',');
      ig_str_json_string(&s, kv[i], strlen(kv[i]));
      ig_str_putc(&s, ':');
      ig_str_json_string(&s, kv[i + 1], strlen(kv[i + 1]));
    }
    ig_str_puts(&s, "}\n");
  } else {
    ig_str_printf(&s, "%s %-5s ", ts, level_name(lvl));
    for (size_t i = 0; i < msglen; i++) ig_str_putc(&s, msg[i] == '\n' ? ' ' : msg[i]);
    for (int i = 0; kv && kv[i] && kv[i + 1]; i += 2) ig_str_printf(&s, " %s=%s", kv[i], kv[i + 1]);
    ig_str_putc(&s, '\n');
  }
  if (!s.oom && s.len) {
    ssize_t w = write(2, s.p, s.len);
    (void)w;
  }
  ig_str_free(&s);
}

void ig_log(ig_log_level lvl, const char *fmt, ...) {
  char buf[2048];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n >= sizeof buf) n = sizeof buf - 1;
  emit(lvl, buf, (size_t)n, NULL);
}

void ig_log_kv(ig_log_level lvl, const char *msg, const char *const *kv) { emit(lvl, msg, strlen(msg), kv); }

void ig_log_progress(const char *what, double done, double total, const char *unit) {
  static _Thread_local int last_decile = -1;
  double frac = total > 0 ? done / total : 1.0;
  int decile = (int)(frac * 10.0);
  if (done <= 0) last_decile = -1;
  if (!atomic_load(&g_json) && isatty(2)) {
    char line[256];
    int n = snprintf(line, sizeof line, "\r%s: %5.1f%% (%.1f / %.1f %s)%s", what, 100.0 * frac, done, total, unit,
                     frac >= 1.0 ? "\n" : "");
    if (n > 0) {
      ssize_t w = write(2, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
      (void)w;
    }
    return;
  }
  if (decile == last_decile && frac < 1.0) return;
  last_decile = decile;
  ig_log(IG_LOG_INFO, "%s: %.0f%% (%.1f / %.1f %s)", what, 100.0 * frac, done, total, unit);
}
