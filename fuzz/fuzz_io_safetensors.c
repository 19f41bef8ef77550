/* fuzz/fuzz_io_safetensors: feeds arbitrary bytes to the safetensors header parser (io/safetensors.c) as a
 * whole file; every accepted tensor must lie inside the buffer. Run: fuzz_io_safetensors -max_total_time=60 */
#include "io/safetensors.h"
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  ig_st_header h;
  char err[512];
  if (ig_st_parse(data, size, &h, err, sizeof err) == 0) {
    for (int i = 0; i < h.n; i++) {
      const ig_st_tensor *t = &h.t[i];
      if (t->data < data || t->data + t->nbytes > data + size) abort();
      volatile uint8_t sum = 0;
      for (size_t k = 0; k < t->nbytes; k++) sum += t->data[k];
    }
    ig_st_header_free(&h);
  }
  return 0;
}
