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
  TEST_DONE();
}
