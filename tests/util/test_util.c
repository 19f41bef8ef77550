/* tests/util: ig_str and UTF-8 helpers. */
#include "test.h"
#include "util/str.h"
#include <stdlib.h>

int main(void) {
  ig_str s;
  ig_str_init(&s);
  ig_str_json_string(&s, "a\"b\\\n\x01\xff\xe2\x82\xac", 10);
  CHECK_EQ_STR(s.p, "\"a\\\"b\\\\\\n\\u0001\xEF\xBF\xBD\xe2\x82\xac\"");
  ig_str_clear(&s);
  for (int i = 0; i < 1000; i++) ig_str_printf(&s, "%d,", i);
  CHECK(s.len == 3890);
  CHECK(!strncmp(s.p + s.len - 4, "999,", 4));
  ig_str_clear(&s);
  ig_str_json_number(&s, 1.5);
  ig_str_putc(&s, ' ');
  ig_str_json_number(&s, 3);
  ig_str_putc(&s, ' ');
  ig_str_json_number(&s, NAN);
  CHECK_EQ_STR(s.p, "1.5 3 null");
  ig_str_free(&s);

  CHECK(ig_utf8_valid("h\xc3\xa9llo", 6));
  CHECK(!ig_utf8_valid("\xc0\x80", 2));         /* overlong */
  CHECK(!ig_utf8_valid("\xed\xa0\x80", 3));     /* surrogate */
  CHECK(ig_utf8_valid_prefix("ab\xe2\x82", 4) == 2); /* incomplete euro sign */
  CHECK(ig_utf8_valid_prefix("\xf0\x9f\x98\x80!", 5) == 5);
  /* ig_utf8_encode: the bytes at each length's edges, and every non-surrogate code point valid and of its length */
  char u[4];
  CHECK(ig_utf8_encode(0x7F, u) == 1 && u[0] == 0x7F);
  CHECK(ig_utf8_encode(0xE9, u) == 2 && !memcmp(u, "\xc3\xa9", 2));
  CHECK(ig_utf8_encode(0x20AC, u) == 3 && !memcmp(u, "\xe2\x82\xac", 3));
  CHECK(ig_utf8_encode(0x1F600, u) == 4 && !memcmp(u, "\xf0\x9f\x98\x80", 4));
  CHECK(ig_utf8_encode(0x10FFFF, u) == 4 && !memcmp(u, "\xf4\x8f\xbf\xbf", 4));
  int bad = 0;
  for (uint32_t cp = 0; cp <= 0x10FFFF; cp++) {
    if (cp >= 0xD800 && cp <= 0xDFFF) continue;
    int n = ig_utf8_encode(cp, u), want = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    bad += n != want || !ig_utf8_valid(u, (size_t)n);
  }
  CHECK_MSG(bad == 0, "%d code points encoded wrong", bad);
  TEST_DONE();
}
