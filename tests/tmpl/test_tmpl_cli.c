/* tests/tmpl/test_tmpl_cli: runs `ignis template` (path in argv[1]) on fixture model directories and checks the
 * prompt it prints is the golden jinja2 output byte for byte (no added newline), that stdin may be an array
 * or an object with tools, and that a template error exits non-zero with the template's message. */
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"
#include "tmpl/tmpl.h"

#define FIX IG_SOURCE_DIR "/tests/fixtures/templates"

/* Run cmd with `input` on stdin; returns exit status, stdout in *out (malloc'd), stderr in errbuf. */
static int run(const char *cmd, const char *input, char **out, size_t *outlen, char *errbuf, size_t errlen) {
  char in_path[] = "/tmp/ig_tmpl_cli_inXXXXXX", err_path[] = "/tmp/ig_tmpl_cli_errXXXXXX";
  int fd = mkstemp(in_path), efd = mkstemp(err_path);
  if (fd < 0 || efd < 0) return -1;
  if (write(fd, input, strlen(input)) < 0) return -1;
  close(fd);
  close(efd);
  char full[4096];
  snprintf(full, sizeof full, "%s < %s 2> %s", cmd, in_path, err_path);
  FILE *p = popen(full, "r");
  ig_str s;
  ig_str_init(&s);
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) ig_str_append(&s, buf, n);
  int st = pclose(p);
  FILE *e = fopen(err_path, "r");
  size_t el = e ? fread(errbuf, 1, errlen - 1, e) : 0;
  errbuf[el] = 0;
  if (e) fclose(e);
  unlink(in_path);
  unlink(err_path);
  *outlen = s.len;
  *out = s.p ? s.p : strdup("");
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static const char *golden_output(json_t *golden, const char *tmpl, const char *conv, int agp) {
  size_t i;
  json_t *c;
  json_array_foreach(json_object_get(golden, "cases"), i, c) {
    if (!strcmp(json_string_value(json_object_get(c, "template")), tmpl) &&
        !strcmp(json_string_value(json_object_get(c, "conversation")), conv) &&
        json_is_true(json_object_get(c, "add_generation_prompt")) == agp)
      return json_string_value(json_object_get(c, "output"));
  }
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: test_tmpl_cli /path/to/ignis\n");
    return 2;
  }
  const char *ignis = argv[1];
  json_error_t je;
  json_t *golden = json_load_file(FIX "/golden.json", 0, &je);
  json_t *convs = json_load_file(FIX "/conversations.json", 0, &je);
  CHECK(golden && convs);
  if (!golden || !convs) TEST_DONE();
  long long now = json_integer_value(json_object_get(golden, "now"));
  static const struct {
    const char *tmpl, *conv;
    int agp, as_object;
  } cases[] = {
      {"llama3_3", "tools_call", 1, 1}, {"llama3_3", "system_multi", 0, 0}, {"npm_qwen3", "tools_call", 1, 1},
      {"npm_qwen3", "ten_turns", 1, 0}, {"mistral_nemo", "tools_only", 1, 1}, {"zephyr", "system_multi", 1, 0},
      {"npm_deepseek_v3", "tools_call", 0, 1}, {"stories260k", "no_system_multi", 1, 0},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    json_t *conv = json_object_get(convs, cases[k].conv);
    char *input = cases[k].as_object ? json_dumps(conv, 0) : json_dumps(json_object_get(conv, "messages"), 0);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s template --model-id %s/%s --now %lld%s", ignis, FIX, cases[k].tmpl, now,
             cases[k].agp ? "" : " --no-generation-prompt");
    char *out;
    size_t len;
    char err[1024];
    int rc = run(cmd, input, &out, &len, err, sizeof err);
    const char *want = golden_output(golden, cases[k].tmpl, cases[k].conv, cases[k].agp);
    CHECK_MSG(rc == 0, "%s: exit %d: %s", cmd, rc, err);
    CHECK_MSG(want && len == strlen(want) && memcmp(out, want, len) == 0, "%s: output differs from jinja2", cmd);
    free(out);
    free(input);
  }
  /* --tools FILE with messages as an array */
  {
    char tools_path[] = "/tmp/ig_tmpl_cli_toolsXXXXXX";
    int fd = mkstemp(tools_path);
    char *tools = json_dumps(json_object_get(json_object_get(convs, "tools_only"), "tools"), 0);
    CHECK(write(fd, tools, strlen(tools)) > 0);
    close(fd);
    char *input = json_dumps(json_object_get(json_object_get(convs, "tools_only"), "messages"), 0);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s template --model-id %s/qwen2_5 --tools %s", ignis, FIX, tools_path);
    char *out, err[1024];
    size_t len;
    int rc = run(cmd, input, &out, &len, err, sizeof err);
    const char *want = golden_output(golden, "qwen2_5", "tools_only", 1);
    CHECK_MSG(rc == 0 && want && len == strlen(want) && !memcmp(out, want, len), "--tools: rc %d %s", rc, err);
    free(out);
    free(input);
    free(tools);
    unlink(tools_path);
  }
  /* a template error: non-zero exit, the template's message on stderr, nothing on stdout */
  {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s template --model-id %s/gemma2", ignis, FIX);
    char *out, err[1024];
    size_t len;
    int rc = run(cmd, "[{\"role\":\"system\",\"content\":\"x\"},{\"role\":\"user\",\"content\":\"y\"}]", &out, &len, err, sizeof err);
    CHECK(rc != 0);
    CHECK_MSG(strstr(err, "System role not supported") != NULL, "stderr: %s", err);
    CHECK_EQ_INT(len, 0);
    free(out);
    rc = run(cmd, "{not json", &out, &len, err, sizeof err);
    CHECK(rc != 0);
    free(out);
    snprintf(cmd, sizeof cmd, "%s template --model-id /nonexistent/dir", ignis);
    rc = run(cmd, "[]", &out, &len, err, sizeof err);
    CHECK(rc != 0);
    free(out);
  }
  json_decref(golden);
  json_decref(convs);
  TEST_DONE();
}
