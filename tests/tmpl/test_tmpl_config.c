/* tests/tmpl/test_tmpl_config: ig_tmpl_config_load reads chat_template as a string or as a list of named
 * templates ("default" chosen), prefers chat_template.jinja, reduces AddedToken dicts to their content, and
 * reports broken files; the real stories260K config loads and renders. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"
#include "tmpl/tmpl.h"

static void write_file(const char *dir, const char *name, const char *text) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "w");
  fputs(text, f);
  fclose(f);
}

int main(void) {
  char dir[] = "/tmp/ig_tmpl_cfgXXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  char err[512];
  ig_tmpl_config cfg;
  write_file(dir, "tokenizer_config.json",
             "{\"bos_token\": {\"__type\": \"AddedToken\", \"content\": \"<s>\", \"lstrip\": false},"
             " \"eos_token\": \"</s>\", \"pad_token\": null, \"unk_token\": {\"content\": \"<unk>\"},"
             " \"additional_special_tokens\": [\"<a>\", {\"content\": \"<b>\"}],"
             " \"chat_template\": [{\"name\": \"default\", \"template\": \"D{{ bos_token }}\"},"
             " {\"name\": \"tool_use\", \"template\": \"T{{ tools | length }}\"}]}");
  CHECK_EQ_INT(ig_tmpl_config_load(dir, &cfg, err, sizeof err), 0);
  CHECK(cfg.chat_template && !strcmp(cfg.chat_template, "D{{ bos_token }}"));
  CHECK(cfg.named_templates && json_is_string(json_object_get(cfg.named_templates, "tool_use")));
  CHECK_EQ_STR(json_string_value(json_object_get(cfg.special_tokens, "bos_token")), "<s>");
  CHECK_EQ_STR(json_string_value(json_object_get(cfg.special_tokens, "eos_token")), "</s>");
  CHECK_EQ_STR(json_string_value(json_object_get(cfg.special_tokens, "unk_token")), "<unk>");
  CHECK(json_object_get(cfg.special_tokens, "pad_token") == NULL);
  json_t *add = json_object_get(cfg.special_tokens, "additional_special_tokens");
  CHECK(json_array_size(add) == 2 && !strcmp(json_string_value(json_array_get(add, 1)), "<b>"));
  ig_tmpl *t = NULL;
  CHECK_EQ_INT(ig_tmpl_compile(cfg.chat_template, strlen(cfg.chat_template), &t, err, sizeof err), 0);
  ig_tmpl_chat chat = {.special_tokens = cfg.special_tokens};
  char *out = NULL;
  size_t len = 0;
  CHECK_EQ_INT(ig_tmpl_render_chat(t, &chat, NULL, &out, &len, err, sizeof err), 0);
  CHECK(out && !strcmp(out, "D<s>") && len == 4);
  free(out);
  /* extra kwargs override special tokens and messages; tools default to None */
  json_t *extra = json_pack("{s:s}", "bos_token", "<override>");
  chat.extra = extra;
  CHECK_EQ_INT(ig_tmpl_render_chat(t, &chat, NULL, &out, &len, err, sizeof err), 0);
  CHECK(out && !strcmp(out, "D<override>"));
  free(out);
  json_decref(extra);
  ig_tmpl_free(t);
  ig_tmpl_config_free(&cfg);

  /* chat_template.jinja wins over tokenizer_config.json */
  write_file(dir, "chat_template.jinja", "J{{ messages | length }}\n");
  CHECK_EQ_INT(ig_tmpl_config_load(dir, &cfg, err, sizeof err), 0);
  CHECK(cfg.chat_template && !strcmp(cfg.chat_template, "J{{ messages | length }}\n"));
  ig_tmpl_config_free(&cfg);

  /* --tokenizer-config-path: another file's template wins over the directory's .jinja; its special tokens too;
   * a file without a template leaves the directory's; a missing file is an error naming the flag */
  char other[] = "/tmp/ig_tmpl_otherXXXXXX";
  CHECK(mkdtemp(other) != NULL);
  write_file(other, "tc.json", "{\"eos_token\": \"<|end|>\", \"chat_template\": \"O{{ eos_token }}\"}");
  write_file(other, "plain.json", "{\"eos_token\": \"<|end|>\"}");
  char opath[1100], ppath[1100];
  snprintf(opath, sizeof opath, "%s/tc.json", other);
  snprintf(ppath, sizeof ppath, "%s/plain.json", other);
  CHECK_EQ_INT(ig_tmpl_config_load_ex(dir, opath, &cfg, err, sizeof err), 0);
  CHECK(cfg.chat_template && !strcmp(cfg.chat_template, "O{{ eos_token }}"));
  CHECK_EQ_STR(json_string_value(json_object_get(cfg.special_tokens, "eos_token")), "<|end|>");
  ig_tmpl_config_free(&cfg);
  CHECK_EQ_INT(ig_tmpl_config_load_ex(dir, ppath, &cfg, err, sizeof err), 0);
  CHECK(cfg.chat_template && !strcmp(cfg.chat_template, "J{{ messages | length }}\n"));
  ig_tmpl_config_free(&cfg);
  char missing[1200];
  snprintf(missing, sizeof missing, "%s/none.json", other);
  CHECK(ig_tmpl_config_load_ex(dir, missing, &cfg, err, sizeof err) != 0);
  CHECK(strstr(err, "none.json") && strstr(err, "--tokenizer-config-path"));
  unlink(opath), unlink(ppath), rmdir(other);

  /* a directory with only chat_template.jinja works; broken JSON is reported */
  char path[1024];
  snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
  unlink(path);
  CHECK_EQ_INT(ig_tmpl_config_load(dir, &cfg, err, sizeof err), 0);
  CHECK(cfg.chat_template != NULL && json_object_size(cfg.special_tokens) == 0);
  ig_tmpl_config_free(&cfg);
  write_file(dir, "tokenizer_config.json", "{\"chat_template\": ");
  CHECK(ig_tmpl_config_load(dir, &cfg, err, sizeof err) != 0);
  CHECK(strstr(err, "tokenizer_config.json") != NULL);
  unlink(path);
  snprintf(path, sizeof path, "%s/chat_template.jinja", dir);
  unlink(path);
  rmdir(dir);

  /* the real tiny model shipped with the project */
  CHECK_EQ_INT(ig_tmpl_config_load(IG_SHARED_DIR "/models/stories260K", &cfg, err, sizeof err), 0);
  CHECK(cfg.chat_template != NULL);
  if (cfg.chat_template) {
    CHECK_EQ_INT(ig_tmpl_compile(cfg.chat_template, strlen(cfg.chat_template), &t, err, sizeof err), 0);
    json_t *msgs = json_loads("[{\"role\":\"user\",\"content\":\"Once\"},{\"role\":\"assistant\",\"content\":\"upon\"}]", 0, NULL);
    ig_tmpl_chat c2 = {.messages = msgs, .special_tokens = cfg.special_tokens, .add_generation_prompt = 1};
    CHECK_EQ_INT(ig_tmpl_render_chat(t, &c2, NULL, &out, &len, err, sizeof err), 0);
    CHECK_MSG(out && !strcmp(out, "<s>Once\nupon"), "got '%s'", out ? out : err);
    free(out);
    json_decref(msgs);
    ig_tmpl_free(t);
  }
  ig_tmpl_config_free(&cfg);
  TEST_DONE();
}
