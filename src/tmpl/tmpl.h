/* tmpl: a small, safe Jinja2 interpreter for chat templates. It renders what transformers'
 * apply_chat_template renders (jinja2 ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loopcontrols,
 * json.dumps-style tojson, raise_exception, strftime_now), byte for byte. A compiled template is read-only and
 * can be shared by threads; every render has its own state, bounded in steps, depth, output and memory (and time,
 * when asked).
 * Known differences from jinja2 (none met in real templates): integers are 64-bit (overflow is an error),
 * generator objects print without their address, {% include/import/extends %} are refused (a chat template
 * has no loader anyway), output/string sizes and work are bounded by the limits below. */
#ifndef IG_TMPL_H
#define IG_TMPL_H
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "util/str.h"

/* Error codes (negative) returned by compile and render. */
enum {
  IG_TMPL_ESYNTAX = -1, /* template does not parse */
  IG_TMPL_ERAISE = -2,  /* raise_exception(msg) was called: the message is msg, verbatim */
  IG_TMPL_ERUNTIME = -3, /* type error, undefined error, ... (as jinja2 would raise) */
  IG_TMPL_ELIMIT = -4,  /* a step, depth, output or memory limit was hit */
  IG_TMPL_ENOMEM = -5,
  IG_TMPL_EINVAL = -6, /* bad arguments (e.g. context is not a JSON object) */
};

typedef struct ig_tmpl ig_tmpl;

typedef struct ig_tmpl_limits {
  uint64_t max_steps;  /* evaluation steps (expressions, statements, copied data); default 1,000,000 */
  uint32_t max_depth;  /* nested macro/caller calls; default 64, at most 1000 */
  size_t max_output;   /* bytes of output and of any one string value; default 16 MiB */
  size_t max_memory;   /* bytes of render-time memory (values, scopes); default 128 MiB */
  uint32_t max_ms;     /* wall-clock milliseconds, read every 256 steps (for templates from outside: steps over a
                          request's megabytes of data are not all equal); default 0: no time limit */
} ig_tmpl_limits;

typedef struct ig_tmpl_opts {
  ig_tmpl_limits limits; /* zero fields take the defaults */
  time_t now;            /* the time strftime_now formats (local time); 0 = the current time */
} ig_tmpl_opts;

/* Compile src[0..len). On success *out owns the template (free with ig_tmpl_free). On failure returns
 * IG_TMPL_ESYNTAX (or ENOMEM) with a one-line reason ("line 3: unexpected '}'") in err. */
int ig_tmpl_compile(const char *src, size_t len, ig_tmpl **out, char *err, size_t errlen);
void ig_tmpl_free(ig_tmpl *t);

/* Render with the variables of the JSON object ctx (names -> values). Output is appended to out.
 * Returns 0, or a negative IG_TMPL_E* code with the message in err (for ERAISE, the template's message). */
int ig_tmpl_render(const ig_tmpl *t, const json_t *ctx, const ig_tmpl_opts *opts, ig_str *out, char *err,
                   size_t errlen);

/* The context apply_chat_template builds: messages, tools (None when NULL), documents (None when NULL),
 * add_generation_prompt, the special tokens (an object such as {"bos_token": "<s>", ...}, may be NULL) and
 * extra keyword arguments (an object, may be NULL; they override the others, as **kwargs do).
 * continue_final_message leaves the last message open for the model to continue, as transformers does: the
 * rendered text is cut right after the last place the message's content (stripped of whitespace; its trailing
 * whitespace too where the text has it) appears; IG_TMPL_EINVAL when the content is not a string (or a list
 * with a {"text": ...} part) or does not appear, or with add_generation_prompt. */
typedef struct ig_tmpl_chat {
  const json_t *messages;
  const json_t *tools;
  const json_t *documents;
  int add_generation_prompt;
  const json_t *special_tokens;
  const json_t *extra;
  int continue_final_message;
} ig_tmpl_chat;

/* Build the context above and render. *out is malloc'd, NUL-terminated (caller frees); *out_len its length. */
int ig_tmpl_render_chat(const ig_tmpl *t, const ig_tmpl_chat *chat, const ig_tmpl_opts *opts, char **out,
                        size_t *out_len, char *err, size_t errlen);

/* A model directory's chat template and special tokens, read as transformers does from tokenizer_config.json
 * (chat_template as a string, or a list of {name, template}: "default" is taken) and chat_template.jinja
 * (preferred when present; then chat_template.json, as processors ship it). special_tokens is {"bos_token": ..., "eos_token": ..., "unk_token": ...,
 * "pad_token": ..., ..., "additional_special_tokens": [...]} with AddedToken dicts reduced to their content. */
typedef struct ig_tmpl_config {
  char *chat_template; /* malloc'd, NULL when the model has none */
  json_t *special_tokens; /* owned reference, never NULL after a successful load */
  json_t *named_templates; /* object name -> template string when the config lists several, else NULL */
} ig_tmpl_config;

int ig_tmpl_config_load(const char *model_dir, ig_tmpl_config *cfg, char *err, size_t errlen);
/* The same with config_path (TGI's --tokenizer-config-path) read instead of model_dir/tokenizer_config.json; a
 * chat template found there is kept over the directory's chat_template.jinja / .json. A missing file is an error. */
int ig_tmpl_config_load_ex(const char *model_dir, const char *config_path, ig_tmpl_config *cfg, char *err,
                           size_t errlen);
void ig_tmpl_config_free(ig_tmpl_config *cfg);

#endif
