/* fuzz/fuzz_tok_load: arbitrary bytes as tokenizer.json (and, split at the first NUL, as
 * tokenizer_config.json): loading must fail cleanly or give a tokenizer that encodes and decodes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tok/tok.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *js = (const char *)data, *cfg = memchr(data, 0, size);
  size_t jl = cfg ? (size_t)(cfg - js) : size, cl = cfg ? size - jl - 1 : 0;
  if (cfg) cfg++;
  ig_tok *t = NULL;
  char err[256];
  if (ig_tok_load_mem(&t, js, jl, cfg, cl, err, sizeof err) == 0) {
    ig_tok_enc e = {0};
    static const char text[] = "Hello wörld <s> 123 🙂\n\t x";
    if (ig_tok_encode(t, text, sizeof text - 1, 1, 1, &e) == 0) {
      char *d = ig_tok_decode(t, e.ids, e.n, 0, NULL);
      free(d);
    }
    ig_tok_enc_free(&e);
    ig_tok_free(t);
  }
  return 0;
}
