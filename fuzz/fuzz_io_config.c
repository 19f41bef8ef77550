/* fuzz/fuzz_io_config: feeds arbitrary bytes to the config.json parser (io/config.c); the first byte picks
 * whether the rest is split into config.json and generation_config.json at a NUL. */
#include "io/config.h"
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  const char *txt = (const char *)data + 1, *gen = NULL;
  size_t len = size - 1, glen = 0;
  if (data[0] & 1) {
    const char *z = memchr(txt, 0, len);
    if (z) {
      gen = z + 1;
      glen = len - (size_t)(gen - txt);
      len = (size_t)(z - txt);
    }
  }
  ig_config c;
  char err[512];
  if (ig_config_parse(txt, len, gen, glen, &c, err, sizeof err) == 0) ig_config_free(&c);
  return 0;
}
