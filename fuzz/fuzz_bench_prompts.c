/* fuzz/fuzz_bench_prompts: prompt files (JSONL, JSON arrays, ShareGPT records) and /tokenize answers, as the
 * benchmark reads them, on arbitrary bytes: no crash, no leak, sane values. */
#include "bench/prompts.h"
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char err[256];
  ig_bench_prompts p;
  if (ig_bench_prompts_parse((const char *)data, size, 7, &p, err, sizeof err) == 0) {
    for (int i = 0; i < p.n; i++)
      if (!p.v[i].text || p.v[i].output_tokens < 1 || p.v[i].input_tokens < 1) abort();
    ig_bench_prompts_free(&p);
  }
  int n;
  ig_bench_span *sp;
  if (ig_bench_parse_tokenize((const char *)data, size, &n, &sp, err, sizeof err) == 0) {
    if (n < 0) abort();
    free(sp);
  }
  return 0;
}
