/* tests/tmpl/test_tmpl_golden: renders every (template, conversation, add_generation_prompt) case of
 * tests/fixtures/templates/golden.json (made by make_golden.py with Python's jinja2) and checks the output is
 * byte-identical, or that rendering fails where jinja2 failed, with jinja2's message (raise_exception's verbatim,
 * TypeError/UndefinedError/... without the exception's name).
 * Templates and special tokens are read through ig_tmpl_config_load from each fixture directory. */
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "tmpl/tmpl.h"

#define FIX IG_SOURCE_DIR "/tests/fixtures/templates"

static void show_diff(const char *want, const char *got) {
  size_t i = 0;
  while (want[i] && want[i] == got[i]) i++;
  size_t from = i > 40 ? i - 40 : 0;
  fprintf(stderr, "    first difference at byte %zu\n    want: ", i);
  for (size_t k = from; want[k] && k < i + 60; k++) fputc(want[k] == '\n' ? '|' : want[k], stderr);
  fprintf(stderr, "\n    got:  ");
  for (size_t k = from; got[k] && k < i + 60; k++) fputc(got[k] == '\n' ? '|' : got[k], stderr);
  fputc('\n', stderr);
}

int main(void) {
  setenv("TZ", "UTC", 1);
  json_error_t je;
  json_t *golden = json_load_file(FIX "/golden.json", 0, &je);
  json_t *convs = json_load_file(FIX "/conversations.json", 0, &je);
  CHECK(golden && convs);
  if (!golden || !convs) TEST_DONE();
  ig_tmpl_opts opts = {.now = (time_t)json_integer_value(json_object_get(golden, "now"))};
  json_t *cases = json_object_get(golden, "cases");
  const char *cur_name = "";
  ig_tmpl *t = NULL;
  ig_tmpl_config cfg = {0};
  int ok = 0, total = 0;
  size_t i;
  json_t *c;
  json_array_foreach(cases, i, c) {
    const char *name = json_string_value(json_object_get(c, "template"));
    const char *cname = json_string_value(json_object_get(c, "conversation"));
    int agp = json_is_true(json_object_get(c, "add_generation_prompt"));
    char err[512];
    if (strcmp(name, cur_name)) {
      ig_tmpl_free(t);
      t = NULL;
      ig_tmpl_config_free(&cfg);
      char dir[1024];
      snprintf(dir, sizeof dir, FIX "/%s", name);
      int rc = ig_tmpl_config_load(dir, &cfg, err, sizeof err);
      CHECK_MSG(rc == 0 && cfg.chat_template, "%s: %s", name, err);
      rc = ig_tmpl_compile(cfg.chat_template, strlen(cfg.chat_template), &t, err, sizeof err);
      CHECK_MSG(rc == 0, "%s: compile: %s", name, err);
      cur_name = name;
    }
    total++;
    if (!t) continue;
    json_t *conv = json_object_get(convs, cname);
    ig_tmpl_chat chat = {
        .messages = json_object_get(conv, "messages"),
        .tools = json_object_get(conv, "tools"),
        .documents = json_object_get(conv, "documents"),
        .add_generation_prompt = agp,
        .special_tokens = cfg.special_tokens,
        .extra = json_object_get(conv, "kwargs"),
    };
    char *out = NULL;
    size_t len = 0;
    int rc = ig_tmpl_render_chat(t, &chat, &opts, &out, &len, err, sizeof err);
    json_t *want = json_object_get(c, "output");
    if (want) {
      const char *w = json_string_value(want);
      int same = rc == 0 && len == json_string_length(want) && memcmp(out, w, len) == 0;
      CHECK_MSG(same, "%s / %s / agp=%d: %s", name, cname, agp, rc ? err : "output differs");
      if (!same && rc == 0) show_diff(w, out);
      ok += same;
    } else {
      const char *kind = json_string_value(json_object_get(c, "error_kind"));
      const char *msg = json_string_value(json_object_get(c, "error"));
      int same = rc != 0;
      if (same && !strcmp(kind, "raise")) same = rc == IG_TMPL_ERAISE && !strcmp(err, msg);
      /* runtime errors carry jinja2's message too ("TypeError: <message>"); syntax errors only have to fail */
      const char *sep = strstr(msg, ": ");
      if (same && strcmp(kind, "raise") && sep && strncmp(msg, "Template", 8)) same = !strcmp(err, sep + 2);
      CHECK_MSG(same, "%s / %s / agp=%d: jinja2 failed (%s) but ignis %s: %s", name, cname, agp, msg,
                rc ? "failed differently" : "rendered", rc ? err : "");
      ok += same;
    }
    free(out);
  }
  ig_tmpl_free(t);
  ig_tmpl_config_free(&cfg);
  fprintf(stderr, "%d/%d golden cases match jinja2\n", ok, total);
  json_decref(golden);
  json_decref(convs);
  TEST_DONE();
}
