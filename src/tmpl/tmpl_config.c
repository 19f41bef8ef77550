/* tmpl_config: read a model directory's chat template and special tokens the way transformers does:
 * chat_template.jinja when present, else tokenizer_config.json's chat_template (a string, or a list of
 * {"name", "template"} where "default" is used), or chat_template.json's chat_template; special tokens may be
 * strings or AddedToken dicts. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tmpl/tmpl.h"
#include "util/file.h"

static json_t *token_string(json_t *v) {
  if (json_is_string(v)) return json_incref(v);
  if (json_is_object(v)) {
    json_t *c = json_object_get(v, "content");
    if (json_is_string(c)) return json_incref(c);
  }
  return NULL;
}

int ig_tmpl_config_load(const char *model_dir, ig_tmpl_config *cfg, char *err, size_t errlen) {
  return ig_tmpl_config_load_ex(model_dir, NULL, cfg, err, errlen);
}

int ig_tmpl_config_load_ex(const char *model_dir, const char *config_path, ig_tmpl_config *cfg, char *err,
                           size_t errlen) {
  memset(cfg, 0, sizeof *cfg);
  char path[4096];
  snprintf(path, sizeof path, "%s/tokenizer_config.json", model_dir);
  if (config_path) {
    if (!ig_file_exists(config_path)) {
      snprintf(err, errlen, "%.3000s: no such file (--tokenizer-config-path)", config_path);
      return -1;
    }
    snprintf(path, sizeof path, "%s", config_path);
  }
  json_t *root = NULL;
  if (ig_file_exists(path)) {
    json_error_t je;
    root = json_load_file(path, JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &je); /* Llama 3: model_max_length 1e30 */
    if (!root || !json_is_object(root)) {
      snprintf(err, errlen, "%s: line %d column %d: %s", path, je.line, je.column, root ? "not a JSON object" : je.text);
      json_decref(root);
      return -1;
    }
  }
  cfg->special_tokens = json_object();
  if (!cfg->special_tokens) {
    json_decref(root);
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  if (root) {
    static const char *const names[] = {"bos_token", "eos_token", "unk_token", "sep_token", "pad_token",
                                        "cls_token", "mask_token", NULL};
    for (int i = 0; names[i]; i++) {
      json_t *t = token_string(json_object_get(root, names[i]));
      if (t) json_object_set_new(cfg->special_tokens, names[i], t);
    }
    json_t *add = json_object_get(root, "additional_special_tokens");
    if (json_is_array(add)) {
      json_t *arr = json_array();
      size_t i;
      json_t *v;
      json_array_foreach(add, i, v) {
        json_t *t = token_string(v);
        if (t) json_array_append_new(arr, t);
      }
      json_object_set_new(cfg->special_tokens, "additional_special_tokens", arr);
    }
    json_t *ct = json_object_get(root, "chat_template");
    if (json_is_string(ct)) {
      cfg->chat_template = strdup(json_string_value(ct));
    } else if (json_is_array(ct)) {
      cfg->named_templates = json_object();
      size_t i;
      json_t *v;
      json_array_foreach(ct, i, v) {
        json_t *name = json_object_get(v, "name"), *tpl = json_object_get(v, "template");
        if (json_is_string(name) && json_is_string(tpl)) json_object_set(cfg->named_templates, json_string_value(name), tpl);
      }
      json_t *def = json_object_get(cfg->named_templates, "default");
      if (json_is_string(def)) cfg->chat_template = strdup(json_string_value(def));
    }
  }
  json_decref(root);
  if (config_path && cfg->chat_template) return 0; /* the named file's template wins over the directory's */
  /* processors' chat_template.json (multimodal models) overrides tokenizer_config.json */
  snprintf(path, sizeof path, "%s/chat_template.json", model_dir);
  if (ig_file_exists(path)) {
    json_error_t je;
    json_t *ct = json_load_file(path, 0, &je);
    json_t *tpl = json_object_get(ct, "chat_template");
    if (json_is_string(tpl)) {
      free(cfg->chat_template);
      cfg->chat_template = strdup(json_string_value(tpl));
    }
    json_decref(ct);
  }
  snprintf(path, sizeof path, "%s/chat_template.jinja", model_dir);
  if (ig_file_exists(path)) {
    char *data = NULL;
    size_t len = 0;
    if (ig_file_read(path, (size_t)64 << 20, &data, &len, err, errlen)) {
      ig_tmpl_config_free(cfg);
      return -1;
    }
    free(cfg->chat_template);
    cfg->chat_template = data;
  }
  return 0;
}

void ig_tmpl_config_free(ig_tmpl_config *cfg) {
  free(cfg->chat_template);
  json_decref(cfg->special_tokens);
  json_decref(cfg->named_templates);
  memset(cfg, 0, sizeof *cfg);
}
