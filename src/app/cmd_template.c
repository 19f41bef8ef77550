/* app/cmd_template: `ignis template --model-id DIR [--no-generation-prompt] [--tools FILE] < messages.json`
 * renders a model's chat template exactly as the server would (tmpl/), and prints the prompt with no added
 * newline. stdin holds a JSON array of messages, or an object {"messages": [...], "tools": [...], ...} whose
 * other keys become template keyword arguments. Exits 1 with the template's message when rendering fails. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/cmds.h"
#include "tmpl/tmpl.h"
#include "util/file.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: ignis template --model-id DIR [options] < messages.json\n"
          "  --model-id DIR            model directory (tokenizer_config.json / chat_template.jinja), or an\n"
          "                            org/name found in the Hugging Face cache; default $MODEL_ID\n"
          "  --no-generation-prompt    do not add the assistant prompt (add_generation_prompt=false)\n"
          "  --continue-final-message  leave the last message open for the model to continue (no generation prompt)\n"
          "  --tools FILE              JSON array of tool definitions\n"
          "  --template FILE           use this Jinja file instead of the model's template\n"
          "  --template-name NAME      pick a named template (e.g. tool_use) from tokenizer_config.json\n"
          "  --kwargs JSON             extra template variables, e.g. '{\"enable_thinking\": false}'\n"
          "  --now SECONDS             the time strftime_now sees (Unix seconds; default: now)\n"
          "stdin: a JSON array of messages, or {\"messages\": [...], \"tools\": [...], ...}\n");
}

/* DIR as given, or $HF_HOME/hub/models--org--name/snapshots/<first> for an org/name id. */
static int resolve_model_dir(const char *id, char *out, size_t outlen) {
  if (ig_dir_exists(id)) {
    snprintf(out, outlen, "%s", id);
    return 0;
  }
  const char *slash = strchr(id, '/');
  if (!slash || strchr(slash + 1, '/')) return -1;
  char hub[2048];
  const char *hf = getenv("HF_HOME");
  const char *home = getenv("HOME");
  if (hf) snprintf(hub, sizeof hub, "%s/hub", hf);
  else snprintf(hub, sizeof hub, "%s/.cache/huggingface/hub", home ? home : ".");
  char snaps[8192];
  snprintf(snaps, sizeof snaps, "%s/models--%.*s--%s/snapshots", hub, (int)(slash - id), id, slash + 1);
  DIR *d = opendir(snaps);
  if (!d) return -1;
  struct dirent *e;
  int rc = -1;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    if (snprintf(out, outlen, "%s/%s", snaps, e->d_name) < (int)outlen) rc = 0;
    break;
  }
  closedir(d);
  return rc;
}

static json_t *read_stdin_json(char *err, size_t errlen) {
  json_error_t je;
  json_t *j = json_loadf(stdin, JSON_ALLOW_NUL, &je);
  if (!j) snprintf(err, errlen, "stdin: line %d column %d: %s", je.line, je.column, je.text);
  return j;
}

int ig_cmd_template(int argc, char **argv) {
  const char *model = getenv("MODEL_ID");
  const char *tools_file = NULL, *template_file = NULL, *template_name = NULL, *kwargs_json = NULL;
  int gen_prompt = 1, cont = 0;
  time_t now = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(a, "--no-generation-prompt")) gen_prompt = 0;
    else if (!strcmp(a, "--continue-final-message")) cont = 1, gen_prompt = 0;
    else if (v && !strcmp(a, "--model-id")) model = argv[++i];
    else if (v && !strcmp(a, "--tools")) tools_file = argv[++i];
    else if (v && !strcmp(a, "--template")) template_file = argv[++i];
    else if (v && !strcmp(a, "--template-name")) template_name = argv[++i];
    else if (v && !strcmp(a, "--kwargs")) kwargs_json = argv[++i];
    else if (v && !strcmp(a, "--now")) now = (time_t)strtoll(argv[++i], NULL, 10);
    else {
      fprintf(stderr, "ignis template: unknown or incomplete option '%s'\n", a);
      usage(stderr);
      return 2;
    }
  }
  if (!model && !template_file) {
    fprintf(stderr, "ignis template: --model-id is required\n");
    return 2;
  }
  char err[1024] = "";
  int rc = 1;
  ig_tmpl_config cfg = {0};
  json_t *input = NULL, *tools = NULL, *extra = NULL, *kw = NULL, *docs = NULL;
  ig_tmpl *t = NULL;
  char *out = NULL;
  char *src = NULL;
  if (model) {
    char dir[4096];
    if (resolve_model_dir(model, dir, sizeof dir)) {
      fprintf(stderr, "ignis template: model '%s' not found (not a directory nor in the Hugging Face cache)\n", model);
      return 1;
    }
    if (ig_tmpl_config_load(dir, &cfg, err, sizeof err)) goto fail;
  }
  if (tools_file) {
    json_error_t je;
    tools = json_load_file(tools_file, JSON_ALLOW_NUL, &je);
    if (!tools) {
      snprintf(err, sizeof err, "%s: line %d column %d: %s", tools_file, je.line, je.column, je.text);
      goto fail;
    }
  }
  if (template_file) {
    size_t len;
    if (ig_file_read(template_file, (size_t)64 << 20, &src, &len, err, sizeof err)) goto fail;
  } else if (template_name) {
    json_t *nt = cfg.named_templates ? json_object_get(cfg.named_templates, template_name) : NULL;
    if (!json_is_string(nt)) {
      snprintf(err, sizeof err, "the model has no chat template named '%s'", template_name);
      goto fail;
    }
    src = strdup(json_string_value(nt));
  } else {
    json_t *tu = tools && cfg.named_templates ? json_object_get(cfg.named_templates, "tool_use") : NULL;
    if (json_is_string(tu)) src = strdup(json_string_value(tu)); /* transformers picks tool_use with tools */
    else if (cfg.chat_template) src = strdup(cfg.chat_template);
  }
  if (!src) {
    snprintf(err, sizeof err, "the model has no chat template (tokenizer_config.json chat_template or chat_template.jinja)");
    goto fail;
  }
  input = read_stdin_json(err, sizeof err);
  if (!input) goto fail;
  json_t *messages = input;
  extra = json_object();
  if (json_is_object(input)) {
    messages = json_object_get(input, "messages");
    const char *k;
    json_t *v;
    json_object_foreach(input, k, v) {
      if (!strcmp(k, "messages")) continue;
      if (!strcmp(k, "tools") && !tools) {
        tools = json_incref(v);
        continue;
      }
      if (!strcmp(k, "add_generation_prompt")) {
        gen_prompt = json_is_true(v) && gen_prompt;
        continue;
      }
      if (!strcmp(k, "continue_final_message")) {
        cont = cont || json_is_true(v);
        continue;
      }
      json_object_set(extra, k, v);
    }
  }
  if (cont && !json_is_true(json_object_get(input, "add_generation_prompt"))) gen_prompt = 0;
  if (!json_is_array(messages)) {
    snprintf(err, sizeof err, "stdin must hold a JSON array of messages or an object with \"messages\"");
    goto fail;
  }
  if (kwargs_json) {
    json_error_t je;
    kw = json_loads(kwargs_json, 0, &je);
    if (!json_is_object(kw)) {
      snprintf(err, sizeof err, "--kwargs must be a JSON object");
      goto fail;
    }
    json_object_update(extra, kw);
  }
  if (ig_tmpl_compile(src, strlen(src), &t, err, sizeof err)) goto fail;
  ig_tmpl_chat chat = {
      .messages = messages,
      .tools = json_is_null(tools) ? NULL : tools,
      .documents = NULL,
      .add_generation_prompt = gen_prompt,
      .special_tokens = cfg.special_tokens,
      .extra = extra,
      .continue_final_message = cont,
  };
  docs = json_incref(json_object_get(extra, "documents"));
  if (docs) {
    chat.documents = json_is_null(docs) ? NULL : docs;
    json_object_del(extra, "documents");
  }
  ig_tmpl_opts opts = {.now = now};
  size_t len = 0;
  if (ig_tmpl_render_chat(t, &chat, &opts, &out, &len, err, sizeof err)) goto fail;
  if (fwrite(out, 1, len, stdout) != len || fflush(stdout)) {
    snprintf(err, sizeof err, "cannot write to stdout");
    goto fail;
  }
  rc = 0;
  goto done;
fail:
  fprintf(stderr, "ignis template: %s\n", err);
done:
  free(out);
  free(src);
  ig_tmpl_free(t);
  json_decref(input);
  json_decref(tools);
  json_decref(extra);
  json_decref(kw);
  json_decref(docs);
  ig_tmpl_config_free(&cfg);
  return rc;
}
