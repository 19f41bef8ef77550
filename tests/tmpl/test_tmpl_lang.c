/* tests/tmpl/test_tmpl_lang: the language suite. Each snippet of lang_cases.py was rendered by jinja2 into
 * tests/fixtures/templates/lang_golden.json; ignis must render the same bytes, or fail where jinja2 fails
 * with the same message (syntax errors only have to fail: their wording differs). */
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "tmpl/tmpl.h"

#define FIX IG_SOURCE_DIR "/tests/fixtures/templates"

int main(int argc, char **argv) {
  setenv("TZ", "UTC", 1);
  json_error_t je;
  /* argv[1]: another file of the same shape (e.g. the random differential cases of diff_random.py) */
  json_t *golden = json_load_file(argc > 1 ? argv[1] : FIX "/lang_golden.json", 0, &je);
  CHECK(golden != NULL);
  if (!golden) TEST_DONE();
  json_t *ctx = json_object_get(golden, "context");
  ig_tmpl_opts opts = {.now = (time_t)json_integer_value(json_object_get(golden, "now"))};
  size_t i;
  json_t *c;
  int ok = 0, total = 0;
  json_array_foreach(json_object_get(golden, "cases"), i, c) {
    const char *src = json_string_value(json_object_get(c, "template"));
    json_t *want = json_object_get(c, "output");
    char err[512] = "";
    ig_tmpl *t = NULL;
    ig_str out;
    ig_str_init(&out);
    int rc = ig_tmpl_compile(src, strlen(src), &t, err, sizeof err);
    if (rc == 0) rc = ig_tmpl_render(t, ctx, &opts, &out, err, sizeof err);
    total++;
    if (want) {
      const char *w = json_string_value(want);
      int same = rc == 0 && out.len == json_string_length(want) && (out.len == 0 || memcmp(out.p, w, out.len) == 0);
      CHECK_MSG(same, "case %zu: %s\n    want: %s\n    got:  %s", i, src, w, rc ? err : out.p ? out.p : "");
      ok += same;
    } else {
      const char *kind = json_string_value(json_object_get(c, "error_kind"));
      const char *msg = json_string_value(json_object_get(c, "error"));
      int same = rc != 0;
      if (same && !strcmp(kind, "raise")) same = rc == IG_TMPL_ERAISE && !strcmp(err, msg);
      /* runtime errors carry jinja2's message too ("TypeError: <message>"); syntax errors only have to fail */
      const char *sep = strstr(msg, ": ");
      if (same && strcmp(kind, "raise") && sep && strncmp(msg, "Template", 8)) same = !strcmp(err, sep + 2);
      CHECK_MSG(same, "case %zu: %s\n    jinja2 failed: %s\n    ignis: %s", i, src, msg, rc ? err : out.p ? out.p : "");
      ok += same;
    }
    ig_str_free(&out);
    ig_tmpl_free(t);
  }
  fprintf(stderr, "%d/%d language cases match jinja2\n", ok, total);
  json_decref(golden);
  TEST_DONE();
}
