/* fuzz/fuzz_bench_sse: the benchmark's SSE parser on arbitrary bytes. The events must be the same whether
 * the input arrives whole or split at any point (the first byte picks the cut). */
#include "bench/sse.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int collect(void *ud, const char *event, const char *data, size_t len) {
  ig_str *s = ud;
  ig_str_puts(s, event);
  ig_str_putc(s, 0);
  ig_str_append(s, data, len);
  ig_str_putc(s, 0);
  return 0;
}

static void run(const uint8_t *p, size_t n, size_t cut, ig_str *out) {
  ig_sse sse;
  ig_sse_init(&sse);
  sse.max_line = 4096;
  int rc = ig_sse_feed(&sse, (const char *)p, cut, collect, out);
  if (!rc) rc = ig_sse_feed(&sse, (const char *)p + cut, n - cut, collect, out);
  if (rc) ig_str_puts(out, "<error>");
  ig_sse_free(&sse);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  size_t cut = size > 1 ? data[0] % size : 0;
  const uint8_t *p = data + 1;
  size_t n = size - 1;
  if (cut > n) cut = n;
  ig_str a, b;
  ig_str_init(&a);
  ig_str_init(&b);
  run(p, n, n, &a);
  run(p, n, cut, &b);
  /* an over-long line may be reported at a different point, but never differently otherwise */
  if (!strstr(a.p ? a.p : "", "<error>") && (a.len != b.len || (a.len && memcmp(a.p, b.p, a.len)))) abort();
  ig_str_free(&a);
  ig_str_free(&b);
  return 0;
}
