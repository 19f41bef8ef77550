/* fuzz/fuzz_bench_http: the benchmark's HTTP/1.1 response parser (status, headers, chunked and
 * Content-Length framing) on arbitrary bytes, whole and split at a point chosen by the first byte: same
 * status, same body, same verdict. */
#include "bench/http.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int collect(void *ud, const char *p, size_t n) {
  ig_str_append(ud, p, n);
  return 0;
}

static int run(const uint8_t *p, size_t n, size_t cut, ig_str *body, int *status, int *state) {
  ig_http_resp r;
  ig_http_resp_init(&r);
  int rc = ig_http_feed(&r, (const char *)p, cut, collect, body);
  if (!rc) rc = ig_http_feed(&r, (const char *)p + cut, n - cut, collect, body);
  int complete = ig_http_eof(&r);
  *status = r.status;
  *state = (int)r.state;
  ig_http_resp_free(&r);
  return rc ? -1 : complete;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  const uint8_t *p = data + 1;
  size_t n = size - 1;
  size_t cut = n ? data[0] % (n + 1) : 0;
  ig_str a, b;
  ig_str_init(&a);
  ig_str_init(&b);
  int sa, sb, ta, tb;
  int ra = run(p, n, n, &a, &sa, &ta);
  int rb = run(p, n, cut, &b, &sb, &tb);
  if (ra != rb || sa != sb || ta != tb) abort();
  if (ra >= 0 && (a.len != b.len || (a.len && memcmp(a.p, b.p, a.len)))) abort();
  ig_str_free(&a);
  ig_str_free(&b);
  return 0;
}
