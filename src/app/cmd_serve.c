/* app/cmd_serve: `ignis serve`. TGI launcher flags and env vars -> limits; the HTTP server listens at once
 * (/health answers 503) while a loader thread reads the tokenizer, chat template and model and starts the
 * engine; then the server turns ready. SIGTERM/SIGINT: stop accepting, let in-flight requests finish within
 * the grace period (then cancel them), exit 0. Here the server's hooks are wired to tok/, tmpl/, engine/. */
#include "app/cmds.h"
#include "engine/engine.h"
#include "io/config.h"
#include "io/modeldir.h"
#include "model/model.h"
#include "server/server.h"
#include "tmpl/tmpl.h"
#include "tok/tok.h"
#include "util/file.h"
#include "util/log.h"
#include "util/str.h"
#include <jansson.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* ---- flags ------------------------------------------------------------------------------------------------ */

typedef enum { F_STR, F_INT, F_FLOAT, F_BOOL } ftype;

typedef struct flag {
  const char *name;  /* --name */
  const char *alias; /* another --name, or NULL */
  const char *env;   /* env var, or NULL */
  const char *env2;
  ftype type;
  const char *dflt;  /* shown in --help; NULL: derived */
  const char *help;
  const char *value; /* set from argv or env */
} flag;

static flag flags[] = {
    {"model-id", NULL, "MODEL_ID", "HF_MODEL_ID", F_STR, "models/kjv-llama",
     "model directory, or org/name in the local Hugging Face cache", NULL},
    {"revision", NULL, "REVISION", NULL, F_STR, "main", "revision (commit, branch or tag) of a cached model", NULL},
    {"hostname", NULL, "HOSTNAME", NULL, F_STR, "0.0.0.0", "address to listen on", NULL},
    {"port", NULL, "PORT", NULL, F_INT, "3000", "port to listen on", NULL},
    {"max-concurrent-requests", NULL, "MAX_CONCURRENT_REQUESTS", NULL, F_INT, "128",
     "requests in flight at once; beyond: 429 Model is overloaded", NULL},
    {"max-best-of", NULL, "MAX_BEST_OF", NULL, F_INT, "2", "largest best_of a request may ask for", NULL},
    {"max-stop-sequences", NULL, "MAX_STOP_SEQUENCES", NULL, F_INT, "4", "stop sequences per request", NULL},
    {"max-top-n-tokens", NULL, "MAX_TOP_N_TOKENS", NULL, F_INT, "5", "largest top_n_tokens (max 20)", NULL},
    {"max-input-tokens", "max-input-length", "MAX_INPUT_TOKENS", "MAX_INPUT_LENGTH", F_INT, NULL,
     "prompt tokens per request [max-total-tokens - 1]", NULL},
    {"max-total-tokens", NULL, "MAX_TOTAL_TOKENS", NULL, F_INT, NULL,
     "prompt + new tokens per request [min(4096, max_position_embeddings)]", NULL},
    {"max-batch-prefill-tokens", NULL, "MAX_BATCH_PREFILL_TOKENS", NULL, F_INT, NULL,
     "prompt tokens computed per step (chunked prefill) [max-input-tokens + 50]", NULL},
    {"max-batch-total-tokens", NULL, "MAX_BATCH_TOTAL_TOKENS", NULL, F_INT, NULL,
     "KV-cache capacity in tokens [derived from memory]", NULL},
    {"max-waiting-tokens", NULL, "MAX_WAITING_TOKENS", NULL, F_INT, "20",
     "decode steps a waiting request may be delayed", NULL},
    {"waiting-served-ratio", NULL, "WAITING_SERVED_RATIO", NULL, F_FLOAT, "0.3",
     "waiting/running ratio that lets new requests join the batch", NULL},
    {"max-client-batch-size", NULL, "MAX_CLIENT_BATCH_SIZE", NULL, F_INT, "4", "prompts per /v1/completions request",
     NULL},
    {"validation-workers", NULL, "VALIDATION_WORKERS", NULL, F_INT, "2",
     "threads that render templates and tokenize", NULL},
    {"payload-limit", NULL, "PAYLOAD_LIMIT", NULL, F_INT, "2000000", "request body bytes; beyond: 413", NULL},
    {"client-timeout", NULL, "IGNIS_CLIENT_TIMEOUT", NULL, F_INT, "60",
     "seconds a client may take to send a request (slow clients) or stay idle between requests", NULL},
    {"shutdown-grace", "graceful-termination-timeout", "IGNIS_SHUTDOWN_GRACE", "GRACEFUL_TERMINATION_TIMEOUT", F_INT, "10",
     "seconds in-flight requests get to finish on SIGTERM/SIGINT before they are cancelled", NULL},
    {"dtype", NULL, "DTYPE", NULL, F_STR, NULL,
     "float32 | float16 | bfloat16: compute dtype on the GPU [bfloat16; the CPU computes in float32]", NULL},
    {"device", NULL, "IGNIS_DEVICE", NULL, F_STR, NULL, "cpu | cuda [cuda when built with it and a GPU is present]", NULL},
    {"threads", NULL, "IGNIS_THREADS", NULL, F_INT, "0", "CPU compute threads (0: all cores)", NULL},
    {"cuda-memory-fraction", NULL, "CUDA_MEMORY_FRACTION", NULL, F_FLOAT, "1.0",
     "share of GPU memory ignis may use; the KV cache fills what the weights and activations leave", NULL},
    {"cuda-graphs", NULL, "CUDA_GRAPHS", NULL, F_STR, IG_DEFAULT_CUDA_GRAPHS,
     "decode batch sizes replayed as CUDA graphs (a step is padded up to the next size; larger ones run eagerly); "
     "0 turns graphs off", NULL},
    {"batch-invariant", NULL, "IGNIS_BATCH_INVARIANT", NULL, F_BOOL, "true",
     "GPU: a request's tokens do not depend on what else shares its steps (every product through kernels that sum "
     "in one order); false: a GEMV for steps of 1-2 rows (batch-1 decode ~2% faster, results then depend on the "
     "batch in the last bits); the CPU always is invariant",
     NULL},
    {"prefix-caching", NULL, "PREFIX_CACHING", "USE_PREFIX_CACHING", F_BOOL, "true (false on the CPU)",
     "keep the KV cache of computed prompts and reuse it for requests that start with the same tokens (a shared "
     "system prompt, a chat's earlier turns); on CUDA outputs are the same bits with or without it (on the CPU a "
     "logprob's last digits may differ, hence off there by default); kept blocks count as free (taken back oldest "
     "first)",
     NULL},
    {"num-shard", NULL, "NUM_SHARD", NULL, F_INT, "1", "tensor-parallel shards (GPUs with --device cuda, thread groups on the CPU)", NULL},
    {"api-key", NULL, "API_KEY", NULL, F_STR, NULL,
     "require Authorization: Bearer <key> on the API routes (/health, /ping, /info, /metrics stay open)", NULL},
    {"cors-allow-origin", NULL, "CORS_ALLOW_ORIGIN", NULL, F_STR, "*", "allowed origins, comma-separated", NULL},
    {"json-output", NULL, "JSON_OUTPUT", NULL, F_BOOL, "false", "log lines as JSON", NULL},
    /* TGI's other launcher flags, so that its deployments (Kubernetes manifests, KServe, SageMaker) start ignis
     * unchanged: each does what TGI's does, has no effect where ignis has nothing to set (logged), or is refused
     * with a one-line message where going on would serve something other than what was asked */
    {"max-batch-size", NULL, "MAX_BATCH_SIZE", NULL, F_INT, NULL,
     "sequences that run in one step at most; more wait for a place [no limit but --max-concurrent-requests]", NULL},
    {"sharded", NULL, "SHARDED", NULL, F_BOOL, NULL,
     "false: one shard (refused with --num-shard > 1); true without --num-shard: every visible GPU", NULL},
    {"huggingface-hub-cache", NULL, "HUGGINGFACE_HUB_CACHE", NULL, F_STR, NULL,
     "the Hugging Face cache where --model-id org/name is looked up [HF_HUB_CACHE, $HF_HOME/hub, "
     "~/.cache/huggingface/hub]", NULL},
    {"rope-scaling", NULL, "ROPE_SCALING", NULL, F_STR, NULL,
     "linear | dynamic: replaces the checkpoint's rope scaling, with --rope-factor (default 1)", NULL},
    {"rope-factor", NULL, "ROPE_FACTOR", NULL, F_FLOAT, NULL, "the rope scaling factor (alone: linear scaling)", NULL},
    {"tokenizer-config-path", NULL, "TOKENIZER_CONFIG_PATH", NULL, F_STR, NULL,
     "a tokenizer_config.json to take the chat template and special tokens from instead of the model's", NULL},
    {"disable-grammar-support", NULL, "DISABLE_GRAMMAR_SUPPORT", NULL, F_BOOL, "false",
     "refuse constrained output (grammar, response_format, tools that must be called, guided_*) with 422", NULL},
    {"trust-request-chat-template", NULL, "IGNIS_TRUST_REQUEST_CHAT_TEMPLATE", NULL, F_BOOL, "false",
     "accept chat requests that bring their own chat_template (vLLM's flag; it is compiled and run per request "
     "within the template limits); without it: 422", NULL},
    {"watermark-gamma", NULL, "WATERMARK_GAMMA", NULL, F_FLOAT, "0.5",
     "share of the vocabulary in the green list of requests with watermark: true, in (0, 1]", NULL},
    {"watermark-delta", NULL, "WATERMARK_DELTA", NULL, F_FLOAT, "2.0", "bias added to the green list's logits", NULL},
    {"prometheus-port", NULL, "PROMETHEUS_PORT", NULL, F_INT, NULL,
     "also serve /metrics alone on this port [off; /metrics is always on --port]", NULL},
    {"enable-prefill-logprobs", NULL, "ENABLE_PREFILL_LOGPROBS", NULL, F_BOOL, NULL,
     "allow prompt logprobs (decoder_input_details): ignis always does", NULL},
    {"env", NULL, NULL, NULL, F_BOOL, NULL, "log the runtime environment at start (-e)", NULL},
    {"trust-remote-code", NULL, "TRUST_REMOTE_CODE", NULL, F_BOOL, NULL,
     "no effect: ignis runs no code from the model repository", NULL},
    {"disable-custom-kernels", NULL, "DISABLE_CUSTOM_KERNELS", NULL, F_BOOL, NULL, "no effect in ignis", NULL},
    {"shard-uds-path", NULL, "SHARD_UDS_PATH", NULL, F_STR, NULL, "no effect: ignis's shards live in its process", NULL},
    {"master-addr", NULL, "MASTER_ADDR", NULL, F_STR, NULL, "no effect: ignis's shards live in its process", NULL},
    {"master-port", NULL, "MASTER_PORT", NULL, F_STR, NULL, "no effect: ignis's shards live in its process", NULL},
    {"usage-stats", NULL, "USAGE_STATS", NULL, F_STR, NULL, "on | off | no-stack: ignis sends no usage statistics", NULL},
    {"otlp-endpoint", NULL, "OTLP_ENDPOINT", NULL, F_STR, NULL, "ignis exports no traces (a warning at start)", NULL},
    {"otlp-service-name", NULL, "OTLP_SERVICE_NAME", NULL, F_STR, NULL, "no effect (no traces)", NULL},
    {"speculate", NULL, "SPECULATE", NULL, F_STR, "0",
     "n-gram speculative decoding, 0..15: a request without penalties, bias or grammar (greedy or sampling) drafts "
     "up to N tokens per step from its own tokens (what "
     "followed the last earlier occurrence of its last 1-3 tokens) and one step checks them; the same outputs in "
     "fewer steps", NULL},
    {"quantize", NULL, "QUANTIZE", NULL, F_STR, NULL,
     "refused (no quantizing at load): ignis serves float16, bfloat16 and float32 checkpoints as they are, and FP8 "
     "ones dequantized to bfloat16, found by their config.json; fp8 or compressed-tensors naming such a checkpoint "
     "is accepted", NULL},
    {"kv-cache-dtype", NULL, "KV_CACHE_DTYPE", NULL, F_STR, NULL,
     "fp8_e4m3fn | fp8_e5m2: keep the KV cache's keys and values in that FP8 format (rounded to nearest even with "
     "scale 1, saturating at 448 / 57344): half the cache's bytes on CUDA, values only rounded on the CPU; outputs "
     "then differ from transformers' [the compute dtype]",
     NULL},
    {"lora-adapters", NULL, "LORA_ADAPTERS", NULL, F_STR, NULL, "refused: LoRA adapters are not supported", NULL},
    {"weights-cache-override", NULL, "WEIGHTS_CACHE_OVERRIDE", NULL, F_STR, NULL,
     "refused: give the directory that holds the weights as --model-id", NULL},
    {"ngrok", NULL, "NGROK", NULL, F_BOOL, NULL, "refused when true: ignis opens no tunnel", NULL},
    {"ngrok-authtoken", NULL, "NGROK_AUTHTOKEN", NULL, F_STR, NULL, "no effect without --ngrok", NULL},
    {"ngrok-edge", NULL, "NGROK_EDGE", NULL, F_STR, NULL, "no effect without --ngrok", NULL},
};
#define N_FLAGS (sizeof flags / sizeof flags[0])

static flag *find(const char *name) {
  for (size_t i = 0; i < N_FLAGS; i++)
    if (!strcmp(flags[i].name, name) || (flags[i].alias && !strcmp(flags[i].alias, name))) return &flags[i];
  return NULL;
}
static const char *val(const char *name) { return find(name)->value; }

static void usage(FILE *f) {
  fprintf(f, "usage: ignis serve [options]\n\nServes a model over HTTP with TGI's and OpenAI's APIs. Each option "
             "can also be set by the environment variable shown.\n\n");
  for (size_t i = 0; i < N_FLAGS; i++) {
    const flag *fl = &flags[i];
    char left[96];
    snprintf(left, sizeof left, "--%s%s%s%s", fl->name, fl->alias ? ", --" : "", fl->alias ? fl->alias : "",
             fl->type == F_BOOL ? "" : " <v>");
    fprintf(f, "  %-44s %s", left, fl->help);
    if (fl->dflt) fprintf(f, " (default: %s)", fl->dflt);
    if (fl->env) fprintf(f, " [env: %s%s%s]", fl->env, fl->env2 ? ", " : "", fl->env2 ? fl->env2 : "");
    fputc('\n', f);
  }
  fprintf(f, "  %-44s %s\n", "-p", "--port");
  fprintf(f, "  %-44s %s\n", "-e", "--env");
  fprintf(f, "  %-44s %s\n", "-h, --help", "this help");
}

static int parse_int(const char *s, long long *out) {
  char *e;
  errno = 0;
  long long v = strtoll(s, &e, 10);
  if (errno || e == s || *e) return -1;
  *out = v;
  return 0;
}

static int parse_bool(const char *s, int *out) {
  if (!strcasecmp(s, "true") || !strcmp(s, "1") || !strcasecmp(s, "yes") || !strcasecmp(s, "on")) return *out = 1, 0;
  if (!strcasecmp(s, "false") || !strcmp(s, "0") || !strcasecmp(s, "no") || !strcasecmp(s, "off") || !*s)
    return *out = 0, 0;
  return -1;
}

static int check_value(const flag *fl, const char *v) {
  long long i;
  int b;
  char *e;
  switch (fl->type) {
  case F_INT:
    if (parse_int(v, &i) || i < 0 || i > INT_MAX) {
      fprintf(stderr, "ignis serve: invalid value '%s' for --%s: expected a non-negative integer\n", v, fl->name);
      return -1;
    }
    return 0;
  case F_FLOAT:
    strtod(v, &e);
    if (e == v || *e) {
      fprintf(stderr, "ignis serve: invalid value '%s' for --%s: expected a number\n", v, fl->name);
      return -1;
    }
    return 0;
  case F_BOOL:
    if (parse_bool(v, &b)) {
      fprintf(stderr, "ignis serve: invalid value '%s' for --%s: expected true or false\n", v, fl->name);
      return -1;
    }
    return 0;
  default: return 0;
  }
}

/* Kubernetes exports <SERVICE>_PORT=tcp://10.96.0.5:9090 for every Service in the pod's namespace (service links):
 * with a Service named "prometheus" or "master", PROMETHEUS_PORT or MASTER_PORT would hold such an address, not a
 * setting. Those values are skipped (and logged once logging is set up) instead of stopping the start. */
static const char *svc_links[4];
static int n_svc_links;
static int service_link(const char *env, const char *v) {
  size_t n = strlen(env);
  return n >= 5 && !strcmp(env + n - 5, "_PORT") &&
         (!strncmp(v, "tcp://", 6) || !strncmp(v, "udp://", 6) || !strncmp(v, "sctp://", 7));
}

/* Returns 0, 1 for --help, 2 on a bad flag (message printed). */
static int parse_flags(int argc, char **argv) {
  n_svc_links = 0;
  for (size_t i = 0; i < N_FLAGS; i++) {
    flags[i].value = NULL;
    const char *e = flags[i].env ? getenv(flags[i].env) : NULL;
    if (e && service_link(flags[i].env, e)) {
      if (n_svc_links < 4) svc_links[n_svc_links++] = flags[i].env;
      e = NULL;
    }
    if (!e && flags[i].env2) e = getenv(flags[i].env2);
    /* HOSTNAME is exported by container runtimes as the machine's name; it is honoured only when it looks
     * like an address we can bind (checked at bind time) */
    if (e && *e) {
      if (check_value(&flags[i], e)) {
        fprintf(stderr, "ignis serve: (from environment variable %s)\n", flags[i].env);
        return 2;
      }
      flags[i].value = e;
    }
  }
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) return 1;
    if (!strcmp(a, "-p")) a = "--port"; /* TGI's short forms */
    else if (!strcmp(a, "-e")) a = "--env";
    if (strncmp(a, "--", 2) != 0) {
      fprintf(stderr, "ignis serve: unexpected argument '%s' (see ignis serve --help)\n", a);
      return 2;
    }
    char name[64];
    const char *eq = strchr(a + 2, '=');
    size_t nl = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
    if (nl >= sizeof name) nl = sizeof name - 1;
    memcpy(name, a + 2, nl);
    name[nl] = 0;
    flag *fl = find(name);
    if (!fl) {
      fprintf(stderr, "ignis serve: unknown option '--%s' (see ignis serve --help)\n", name);
      return 2;
    }
    const char *v;
    if (eq)
      v = eq + 1;
    else if (fl->type == F_BOOL && (i + 1 >= argc || argv[i + 1][0] == '-' ||
                                    (strcasecmp(argv[i + 1], "true") && strcasecmp(argv[i + 1], "false"))))
      v = "true";
    else if (i + 1 < argc)
      v = argv[++i];
    else {
      fprintf(stderr, "ignis serve: option '--%s' needs a value\n", name);
      return 2;
    }
    if (check_value(fl, v)) return 2;
    fl->value = v;
  }
  return 0;
}

static int get_int(const char *name, int dflt) {
  const char *v = val(name);
  long long x;
  return v && !parse_int(v, &x) ? (int)x : dflt;
}

/* TGI's --cuda-graphs: comma-separated batch sizes, "0" (or empty) for none. Returns how many, -1 when malformed. */
static int parse_cuda_graphs(const char *v, int *sizes, int max) {
  int n = 0;
  const char *p = v;
  while (*p == ' ') p++;
  if (!*p) return 0;
  for (;;) {
    char *end;
    errno = 0;
    long x = strtol(p, &end, 10);
    if (end == p || errno || x < 0 || x > 4096) return -1;
    if (x > 0) {
      if (n == max) return -1;
      sizes[n++] = (int)x;
    }
    p = end;
    while (*p == ' ') p++;
    if (!*p) break;
    if (*p != ',') return -1;
    p++;
  }
  return n;
}

/* ---- the model behind the hooks --------------------------------------------------------------------------------- */

typedef struct serve_ctx {
  char dir[4096];
  int graph_sizes[32], n_graphs; /* --cuda-graphs */
  const char *device, *dtype;
  int kv_dtype;  /* --kv-cache-dtype: ig_kv_dtype */
  int threads;
  int num_shard; /* tensor parallelism (issue 9): > 1 loads through ig_model_load_tp */
  const char *tokcfg_path; /* --tokenizer-config-path, or NULL */
  ig_engine_config ecfg;
  ig_tok *tok;
  ig_tmpl *tmpl;
  ig_tmpl *tmpl_tools;  /* the config's "tool_use" template, when it names one */
  int tmpl_reads_tools; /* the template used with tools mentions `tools` */
  const char *tool_args_key; /* "parameters" when that template asks for it (Llama 3.1), else NULL ("arguments") */
  ig_tmpl_config tcfg;
  int have_tcfg;
  ig_backend *be;
  ig_model *model;
  ig_engine *engine;
  ig_server *server;
  int failed;
  char err[512];
} serve_ctx;

static int h_tokenize(void *ctx, const char *text, size_t len, int add_special, int32_t **ids, uint32_t **offsets,
                      char *err, size_t errlen) {
  serve_ctx *c = ctx;
  ig_tok_enc enc;
  memset(&enc, 0, sizeof enc);
  if (ig_tok_encode(c->tok, text, len, add_special, offsets != NULL, &enc) != 0) {
    ig_tok_enc_free(&enc);
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  int n = (int)enc.n;
  *ids = malloc((n ? n : 1) * sizeof **ids);
  if (offsets) *offsets = malloc((n ? n : 1) * 2 * sizeof **offsets);
  if (!*ids || (offsets && !*offsets)) {
    free(*ids);
    if (offsets) free(*offsets);
    ig_tok_enc_free(&enc);
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  memcpy(*ids, enc.ids, (size_t)n * sizeof **ids);
  if (offsets && enc.offsets) memcpy(*offsets, enc.offsets, (size_t)n * 2 * sizeof **offsets);
  ig_tok_enc_free(&enc);
  return n;
}

static char *h_decode(void *ctx, const int32_t *ids, int n, int skip_special) {
  serve_ctx *c = ctx;
  return ig_tok_decode(c->tok, ids, (size_t)n, skip_special, NULL);
}

static int h_is_special(void *ctx, int32_t id) { return ig_tok_is_special(((serve_ctx *)ctx)->tok, id); }

/* Messages with the tools written into message `at` (the last one, or the one before a final message left open), for
 * templates that do not read `tools`: "\n\n" + the tool prompt + "\n" + the tools as JSON after its content. NULL
 * when out of memory. */
static json_t *messages_with_tools(const json_t *messages, size_t at, const json_t *tools, const char *tool_prompt) {
  json_t *m = json_deep_copy(messages);
  char *tj = json_dumps(tools, JSON_COMPACT);
  json_t *msg = json_array_get(m, at);
  const json_t *content = msg ? json_object_get(msg, "content") : NULL;
  int ok = m && tj;
  if (ok && json_is_string(content)) {
    ig_str t;
    ig_str_init(&t);
    ig_str_append(&t, json_string_value(content), json_string_length(content));
    ig_str_printf(&t, "\n\n%s\n%s", tool_prompt ? tool_prompt : "", tj);
    ok = !t.oom && json_object_set_new(msg, "content", json_stringn(t.p ? t.p : "", t.len)) == 0;
    ig_str_free(&t);
  }
  free(tj);
  if (!ok) json_decref(m), m = NULL;
  return m;
}

/* A request's own template renders within the model templates' limits and this time too: its steps may each scan the
 * request's megabytes (the model's templates render in microseconds to milliseconds). */
#define IG_REQUEST_TEMPLATE_MS 1000

/* The template a request renders with: the model's (its tool_use one when there are tools, as transformers picks), or
 * the request's own chat_template: the name of one of the model's templates, or a template compiled for this request
 * alone (*own, freed by the caller) with the limits and errors of a model's. NULL when the model has none, or with err
 * when the request's does not compile. */
static const ig_tmpl *request_template(serve_ctx *c, const ig_chat_input *in, ig_tmpl **own, int *reads_tools,
                                       char *err, size_t errlen) {
  *own = NULL;
  *reads_tools = c->tmpl_reads_tools;
  if (!in->chat_template) return in->tools && c->tmpl_tools ? c->tmpl_tools : c->tmpl;
  const char *src = in->chat_template;
  size_t len = in->chat_template_len;
  const json_t *named = c->tcfg.named_templates && strlen(src) == len ? json_object_get(c->tcfg.named_templates, src) : NULL;
  if (json_is_string(named)) src = json_string_value(named), len = json_string_length(named);
  char why[320];
  if (ig_tmpl_compile(src, len, own, why, sizeof why) != 0) {
    snprintf(err, errlen, "chat_template: %s", why);
    *own = NULL;
    return NULL;
  }
  *reads_tools = memmem(src, len, "tools", 5) != NULL;
  return *own;
}

static int h_chat(void *ctx, const ig_chat_input *in, char **prompt, char *err, size_t errlen) {
  serve_ctx *c = ctx;
  ig_tmpl *own_t = NULL;
  int reads_tools;
  const ig_tmpl *t = request_template(c, in, &own_t, &reads_tools, err, errlen);
  if (!t) return in->chat_template ? -EINVAL : -ENOENT;
  ig_tmpl_chat chat = {.messages = in->messages, .documents = in->documents,
                       .add_generation_prompt = in->add_generation_prompt, .special_tokens = c->tcfg.special_tokens,
                       .extra = in->kwargs, .continue_final_message = in->continue_final_message};
  json_t *own = NULL;
  if (in->tools) {
    size_t n = json_array_size(in->messages);
    if (reads_tools) {
      chat.tools = in->tools;
    } else if (!(own = messages_with_tools(in->messages, n > 1 && in->continue_final_message ? n - 2 : n ? n - 1 : 0,
                                           in->tools, in->tool_prompt))) {
      if (own_t) ig_tmpl_free(own_t);
      snprintf(err, errlen, "out of memory");
      return -ENOMEM;
    } else {
      chat.messages = own;
    }
  }
  ig_tmpl_opts opts = {.limits = {.max_ms = own_t ? IG_REQUEST_TEMPLATE_MS : 0}};
  size_t len;
  int rc = ig_tmpl_render_chat(t, &chat, &opts, prompt, &len, err, errlen);
  json_decref(own);
  if (own_t) ig_tmpl_free(own_t);
  return rc < 0 ? (rc == -ENOENT ? -EINVAL : rc) : 0;
}

static int h_submit(void *ctx, ig_request *r, char *err, size_t errlen) {
  return ig_engine_submit(((serve_ctx *)ctx)->engine, r, err, errlen);
}

static void h_stats(void *ctx, ig_server_stats *o) {
  serve_ctx *c = ctx;
  const ig_engine_stats *st = ig_engine_get_stats(c->engine);
  const ig_engine_config *ec = ig_engine_get_config(c->engine);
  o->queue_size = atomic_load(&st->queue_size);
  o->batch_size = atomic_load(&st->batch_size);
  o->batch_max_tokens = ec->max_batch_total_tokens;
  o->kv_blocks_used = atomic_load(&st->kv_blocks_used);
  o->kv_blocks_total = atomic_load(&st->kv_blocks_total);
  o->preemptions = atomic_load(&st->preemptions);
  o->steps = atomic_load(&st->steps);
  o->prefill_tokens = atomic_load(&st->prefill_tokens);
  o->decode_tokens = atomic_load(&st->decode_tokens);
  o->kv_blocks_cached = atomic_load(&st->kv_blocks_cached);
  o->prefix_query_tokens = atomic_load(&st->prefix_query_tokens);
  o->prefix_hit_tokens = atomic_load(&st->prefix_hit_tokens);
  o->grammar_masks = atomic_load(&st->grammar_masks);
  o->grammar_walks = atomic_load(&st->grammar_walks);
  o->grammar_cache_entries = atomic_load(&st->grammar_cache_entries);
  o->spec_draft_tokens = atomic_load(&st->spec_draft_tokens);
  o->spec_accepted_tokens = atomic_load(&st->spec_accepted_tokens);
  _Static_assert(IG_STEP_HIST == 36 && IG_SIZE_HIST == 12, "ig_server_stats' batch histograms");
  for (int k = 0; k < 2; k++) {
    o->step_count[k] = atomic_load(&st->step_count[k]);
    o->step_failed[k] = atomic_load(&st->step_failed[k]);
    o->step_s[k] = atomic_load(&st->step_ns[k]) * 1e-9;
    o->forward_s[k] = atomic_load(&st->forward_ns[k]) * 1e-9;
    for (int b = 0; b < IG_STEP_HIST; b++)
      o->step_hist[k][b] = atomic_load(&st->step_hist[k][b]), o->forward_hist[k][b] = atomic_load(&st->forward_hist[k][b]);
  }
  for (int b = 0; b < IG_SIZE_HIST; b++) o->size_hist[b] = atomic_load(&st->size_hist[b]);
  o->size_sum = atomic_load(&st->size_sum);
}

static void *loader_main(void *arg) {
  serve_ctx *c = arg;
  char err[400] = "";
  /* tests: hold the model back a moment so that /health's 503 can be seen */
  const char *delay = getenv("IGNIS_TEST_LOAD_DELAY_MS");
  if (delay && atoi(delay) > 0) usleep((useconds_t)atoi(delay) * 1000);
  if (ig_tok_load(&c->tok, c->dir, err, sizeof err) != 0) {
    snprintf(c->err, sizeof c->err, "tokenizer: %s", err);
    goto fail;
  }
  if (ig_tmpl_config_load_ex(c->dir, c->tokcfg_path, &c->tcfg, err, sizeof err) == 0) {
    c->have_tcfg = 1;
    if (c->tcfg.chat_template &&
        ig_tmpl_compile(c->tcfg.chat_template, strlen(c->tcfg.chat_template), &c->tmpl, err, sizeof err) != 0) {
      ig_log(IG_LOG_WARN, "chat template does not compile (%s): /v1/chat/completions will answer 422", err);
      c->tmpl = NULL;
    }
    const json_t *tu = c->tmpl && c->tcfg.named_templates ? json_object_get(c->tcfg.named_templates, "tool_use") : NULL;
    const char *tsrc = c->tcfg.chat_template;
    if (json_is_string(tu)) {
      if (ig_tmpl_compile(json_string_value(tu), json_string_length(tu), &c->tmpl_tools, err, sizeof err) != 0) {
        ig_log(IG_LOG_WARN, "the tool_use chat template does not compile (%s): requests with tools use the default",
               err);
        c->tmpl_tools = NULL;
      } else {
        tsrc = json_string_value(tu);
      }
    }
    c->tmpl_reads_tools = tsrc && strstr(tsrc, "tools") != NULL;
    /* the format a template asks calls in: Llama 3.1's says {"name": ..., "parameters": ...}, most say "arguments" */
    if (tsrc && strstr(tsrc, "\"parameters\":") && !strstr(tsrc, "\"arguments\":")) c->tool_args_key = "parameters";
  } else if (c->tokcfg_path) { /* asked for by name: its failure is the start's */
    snprintf(c->err, sizeof c->err, "--tokenizer-config-path: %s", err);
    goto fail;
  } else {
    ig_log(IG_LOG_WARN, "no chat template config (%s)", err);
  }
  if (!c->tmpl) ig_log(IG_LOG_INFO, "the model has no chat template: /v1/chat/completions answers 422");
  /* --- tensor parallelism hook (issue 9, model/shard.c): N shards that make and own their backends --- */
  if (c->num_shard > 1) {
    ig_model_tp_opts to = {.num_shard = c->num_shard, .device = c->device, .threads = c->threads,
                           .cuda_f32 = c->dtype && !strcmp(c->dtype, "float32")};
    if (ig_model_load_tp(c->dir, &to, &c->model, err, sizeof err) != 0) {
      snprintf(c->err, sizeof c->err, "model: %s", err);
      goto fail;
    }
  } else /* --- end of the tensor parallelism hook --- */
  if (!strcmp(c->device, "cuda")) {
#ifdef IG_HAVE_CUDA
    c->be = ig_backend_cuda_create_ex(0, c->dtype && !strcmp(c->dtype, "float32") ? IG_DT_F32 : IG_DT_BF16, err,
                                      sizeof err);
#else
    snprintf(err, sizeof err, "this ignis was built without CUDA");
#endif
  } else {
    c->be = ig_backend_cpu_create(c->threads, err, sizeof err);
  }
  if (!c->model && !c->be) {
    snprintf(c->err, sizeof c->err, "backend %s: %s", c->device, err);
    goto fail;
  }
  if (!c->model && ig_model_load(c->dir, c->be, &c->model, err, sizeof err) != 0) {
    snprintf(c->err, sizeof c->err, "model: %s", err);
    goto fail;
  }
  if (!strcmp(c->device, "cuda") && c->n_graphs) ig_model_set_graphs(c->model, c->graph_sizes, c->n_graphs);
  /* before the engine sizes and allocates the KV cache; a backend that cannot hold the format says so by 0 bytes */
  const char *kvname = ig_kv_dtype_name(c->kv_dtype);
  ig_model_set_kv_dtype(c->model, c->kv_dtype);
  int bs = c->ecfg.block_size > 0 ? c->ecfg.block_size : 16;
  if (c->kv_dtype != IG_KV_AUTO && !ig_model_kv_bytes_per_block(c->model, bs)) {
    snprintf(c->err, sizeof c->err, "--kv-cache-dtype %s: the %s backend cannot keep the KV cache in that format",
             kvname, c->device);
    goto fail;
  }
  if (ig_engine_create(c->model, c->tok, &c->ecfg, &c->engine, err, sizeof err) != 0) {
    if (c->kv_dtype != IG_KV_AUTO) /* the backend may have refused the format in kv_init: name the flag */
      snprintf(c->err, sizeof c->err, "engine: %s (with --kv-cache-dtype %s)", err, kvname);
    else
      snprintf(c->err, sizeof c->err, "engine: %s", err);
    goto fail;
  }
  const ig_engine_config *ec = ig_engine_get_config(c->engine);
  ig_log(IG_LOG_INFO, "engine ready: KV capacity %d tokens (blocks of %d), KV cache dtype %s%s, "
         "max_batch_prefill_tokens %d", ec->max_batch_total_tokens, ec->block_size, kvname,
         c->kv_dtype == IG_KV_AUTO ? " (the compute dtype)" : !strcmp(c->device, "cpu") ?
         " (values rounded to it, kept as float32 on the CPU)" : "", ec->max_batch_prefill_tokens);
  ig_server_hooks h = {c, h_tokenize, h_decode, h_is_special, h_chat, h_submit, h_stats, c->tool_args_key};
  ig_server_set_ready(c->server, &h);
  ig_log(IG_LOG_INFO, "ready");
  return NULL;
fail:
  c->failed = 1;
  ig_log(IG_LOG_ERROR, "%s", c->err);
  ig_server_stop(c->server);
  return NULL;
}

/* TGI's launcher flags beyond ignis's own (see the table): refusals and value checks (a one-line message, 2),
 * the shard count --sharded implies, the environment the model loader and cache lookup read (ROPE_SCALING,
 * ROPE_FACTOR, HF_HUB_CACHE, as TGI passes them to its shards), and a log line for each flag without effect. */
/* --quantize: refused (2), unless it is fp8 or compressed-tensors and the checkpoint is an FP8 one (ckpt_fp8 >= 0: its
 * config.json is read; -1: not yet), which loads as it would without the flag (TGI's manifests for such checkpoints
 * may name the method) */
static int quantize_flag(int ckpt_fp8) {
  static const char *const quant[] = {"awq", "compressed-tensors", "eetq", "exl2", "gptq", "marlin", "bitsandbytes",
                                      "bitsandbytes-nf4", "bitsandbytes-fp4", "fp8", NULL};
  const char *v = val("quantize");
  if (!v) return 0;
  int known = 0;
  for (int i = 0; quant[i]; i++) known |= !strcmp(v, quant[i]);
  if (!known) {
    fprintf(stderr, "ignis serve: invalid value '%s' for --quantize: expected awq, compressed-tensors, eetq, exl2, "
            "gptq, marlin, bitsandbytes, bitsandbytes-nf4, bitsandbytes-fp4 or fp8\n", v);
    return 2;
  }
  const int fp8_name = !strcmp(v, "fp8") || !strcmp(v, "compressed-tensors");
  if (fp8_name && ckpt_fp8 < 0) return 0; /* decided once the config is read */
  if (fp8_name && ckpt_fp8 > 0) {
    ig_log(IG_LOG_INFO, "--quantize %s: the checkpoint is FP8-quantized; it loads as without the flag", v);
    return 0;
  }
  fprintf(stderr, "ignis serve: --quantize %s: quantizing at load is not supported; ignis serves float16, bfloat16 "
          "and float32 checkpoints as they are, and FP8 ones (fp8, fbgemm_fp8, compressed-tensors) dequantized to "
          "bfloat16, found by their config.json (leave --quantize out)\n", v);
  return 2;
}

static int tgi_flags(const char *device, int *num_shard) {
  const char *v;
  int b = 0;
  if (quantize_flag(-1)) return 2;
  if ((v = val("kv-cache-dtype")) && ig_kv_dtype_parse(v) < 0) {
    fprintf(stderr, "ignis serve: invalid value '%s' for --kv-cache-dtype: expected fp8_e4m3fn or fp8_e5m2\n", v);
    return 2;
  }
  if ((v = val("lora-adapters"))) {
    fprintf(stderr, "ignis serve: --lora-adapters: LoRA adapters are not supported\n");
    return 2;
  }
  if ((v = val("weights-cache-override"))) {
    fprintf(stderr, "ignis serve: --weights-cache-override: not supported; give the directory that holds the weights "
            "(with its config.json) as --model-id\n");
    return 2;
  }
  if (val("ngrok") && !parse_bool(val("ngrok"), &b) && b) {
    fprintf(stderr, "ignis serve: --ngrok: ignis opens no tunnel; expose --port another way\n");
    return 2;
  }
  if ((v = val("usage-stats")) && strcmp(v, "on") && strcmp(v, "off") && strcmp(v, "no-stack")) {
    fprintf(stderr, "ignis serve: invalid value '%s' for --usage-stats: expected on, off or no-stack\n", v);
    return 2;
  }
  if ((v = val("rope-scaling")) && strcmp(v, "linear") && strcmp(v, "dynamic")) {
    fprintf(stderr, "ignis serve: invalid value '%s' for --rope-scaling: expected linear or dynamic\n", v);
    return 2;
  }
  if ((v = val("rope-factor")) && !(strtod(v, NULL) > 0 && strtod(v, NULL) <= 1e6)) {
    fprintf(stderr, "ignis serve: invalid value '%s' for --rope-factor: expected a positive number\n", v);
    return 2;
  }
  if ((v = val("tokenizer-config-path")) && !ig_file_exists(v)) {
    fprintf(stderr, "ignis serve: --tokenizer-config-path %s: no such file\n", v);
    return 2;
  }
  double g = val("watermark-gamma") ? strtod(val("watermark-gamma"), NULL) : 0.5;
  double d = val("watermark-delta") ? strtod(val("watermark-delta"), NULL) : 2.0;
  if (!(g > 0 && g <= 1) || !(d > 0 && d < 1e6)) {
    fprintf(stderr, "ignis serve: --watermark-gamma must be in (0, 1] and --watermark-delta in (0, 1e6)\n");
    return 2;
  }
  if (val("max-batch-size") && get_int("max-batch-size", 0) < 1) {
    fprintf(stderr, "ignis serve: --max-batch-size %s: must be at least 1\n", val("max-batch-size"));
    return 2;
  }
  int pp = get_int("prometheus-port", 0);
  if (val("prometheus-port") && (pp < 1 || pp > 65535 || pp == get_int("port", 3000))) {
    fprintf(stderr, "ignis serve: --prometheus-port %s: expected a port (1..65535) other than --port\n",
            val("prometheus-port"));
    return 2;
  }
  if (val("sharded") && !parse_bool(val("sharded"), &b)) {
    int given = val("num-shard") != NULL;
    if (!b && given && *num_shard > 1) {
      fprintf(stderr, "ignis serve: --sharded false with --num-shard %d: leave one out\n", *num_shard);
      return 2;
    }
    if (b && given && *num_shard < 2) {
      fprintf(stderr, "ignis serve: --sharded true with --num-shard %d: sharding needs at least 2 shards\n", *num_shard);
      return 2;
    }
    if (b && !given) { /* TGI: every visible GPU */
      int n = 0;
#ifdef IG_HAVE_CUDA
      if (!strcmp(device, "cuda")) n = ig_backend_cuda_device_count();
#endif
      if (n < 2) {
        fprintf(stderr, "ignis serve: --sharded true: %d GPU(s) visible on --device %s; give --num-shard (2 or more)\n",
                n, device);
        return 2;
      }
      *num_shard = n;
    }
  }
  /* for the loaders, as TGI hands them to its shards */
  if (val("rope-scaling")) setenv("ROPE_SCALING", val("rope-scaling"), 1);
  if (val("rope-factor")) setenv("ROPE_FACTOR", val("rope-factor"), 1);
  if (val("huggingface-hub-cache")) setenv("HF_HUB_CACHE", val("huggingface-hub-cache"), 1);
  long long spec;
  if ((v = val("speculate")) && (parse_int(v, &spec) || spec < 0 || spec > IG_MAX_SPECULATE)) {
    fprintf(stderr, "ignis serve: invalid value '%s' for --speculate: expected an integer from 0 to %d\n", v,
            IG_MAX_SPECULATE);
    return 2;
  }
  /* flags with nothing to do here: said once at start */
  if (val("otlp-endpoint")) ig_log(IG_LOG_WARN, "--otlp-endpoint %s: ignis exports no traces", val("otlp-endpoint"));
  static const char *const inert[] = {"trust-remote-code", "disable-custom-kernels", "shard-uds-path", "master-addr",
                                      "master-port", "usage-stats", "otlp-service-name", "enable-prefill-logprobs",
                                      "ngrok-authtoken", "ngrok-edge", NULL};
  for (int i = 0; inert[i]; i++)
    if (val(inert[i])) ig_log(IG_LOG_INFO, "--%s given: %s", inert[i], find(inert[i])->help);
  return 0;
}

/* -e / --env: what TGI's prints, as log lines */
static void log_env(const char *device, const char *dir, const char *dtype, int num_shard) {
  int gpus = 0;
#ifdef IG_HAVE_CUDA
  gpus = ig_backend_cuda_device_count();
#endif
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  ig_log(IG_LOG_INFO, "env: ignis %s, built %s%s; %ld CPU(s) online, %d CUDA device(s) visible (CUDA_VISIBLE_DEVICES=%s)",
         IG_VERSION, __DATE__,
#ifdef IG_HAVE_CUDA
         " with CUDA",
#else
         " without CUDA",
#endif
         cpus, gpus, getenv("CUDA_VISIBLE_DEVICES") ? getenv("CUDA_VISIBLE_DEVICES") : "(unset)");
  ig_log(IG_LOG_INFO, "env: model directory %s; device %s, compute dtype %s, %d shard(s)", dir, device,
         dtype ? dtype : "(default)", num_shard);
}

/* models/kjv-llama relative to the working directory, else to the binary's checkout (build/ignis -> ../). */
static void default_model(char *out, size_t n) {
  const char *rel = "models/kjv-llama";
  if (ig_dir_exists(rel)) {
    snprintf(out, n, "%s", rel);
    return;
  }
  char exe[4000];
  ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (k > 0) {
    exe[k] = 0;
    for (int up = 0; up < 3; up++) {
      char *slash = strrchr(exe, '/');
      if (!slash) break;
      *slash = 0;
      char cand[4096 + 32];
      snprintf(cand, sizeof cand, "%s/%s", exe, rel);
      if (ig_dir_exists(cand)) {
        snprintf(out, n, "%.4000s", cand);
        return;
      }
    }
  }
  snprintf(out, n, "%s", rel);
}

int ig_cmd_serve(int argc, char **argv) {
  int pf = parse_flags(argc, argv);
  if (pf == 1) {
    usage(stdout);
    return 0;
  }
  if (pf) return 2;
  int json_out = 0;
  if (val("json-output")) parse_bool(val("json-output"), &json_out);
  int batch_inv = 1;
  if (val("batch-invariant")) parse_bool(val("batch-invariant"), &batch_inv);
  /* read when the CUDA backend is made: the flag (or IGNIS_BATCH_INVARIANT) when given; otherwise the default, unless
   * the backend's own IGNIS_CUDA_BATCH_INVARIANT is set */
  setenv("IGNIS_CUDA_BATCH_INVARIANT", batch_inv ? "1" : "0", val("batch-invariant") != NULL);
  ig_log_set_json(json_out);
  for (int i = 0; i < n_svc_links; i++)
    ig_log(IG_LOG_WARN, "ignoring %s=%s: a Kubernetes service link (the address of a Service), not a port number; "
           "the flag's default applies (set enableServiceLinks: false, or the flag, to silence this)", svc_links[i],
           getenv(svc_links[i]));
  signal(SIGPIPE, SIG_IGN);

  const char *device = val("device");
#ifdef IG_HAVE_CUDA
  if (!device) device = ig_backend_cuda_device_count() > 0 ? "cuda" : "cpu"; /* the GPU when one is present */
#else
  if (!device) device = "cpu";
#endif
  if (strcmp(device, "cpu") && strcmp(device, "cuda")) {
    fprintf(stderr, "ignis serve: invalid value '%s' for --device: expected cpu or cuda\n", device);
    return 2;
  }
  const char *dtype = val("dtype");
  if (dtype && strcmp(dtype, "float32") && strcmp(dtype, "float16") && strcmp(dtype, "bfloat16")) {
    fprintf(stderr, "ignis serve: invalid value '%s' for --dtype: expected float32, float16 or bfloat16\n", dtype);
    return 2;
  }
  if (get_int("num-shard", 1) < 1) { /* tensor parallelism (issue 9): shard counts the model's heads refuse fail at load */
    fprintf(stderr, "ignis serve: --num-shard %d: must be at least 1\n", get_int("num-shard", 1));
    return 2;
  }
  int num_shard = get_int("num-shard", 1);
  if (tgi_flags(device, &num_shard)) return 2;

  static serve_ctx c; /* lives for the whole command; the loader thread and hooks use it */
  memset(&c, 0, sizeof c);
  char err[1024] = "";
  const char *model_id = val("model-id");
  char dflt[4096];
  if (!model_id) {
    default_model(dflt, sizeof dflt);
    model_id = dflt;
  }
  if (ig_modeldir_resolve(model_id, val("revision"), c.dir, sizeof c.dir, err, sizeof err) != 0) {
    fprintf(stderr, "ignis serve: %s\n", err);
    return 1;
  }
  ig_config mc;
  if (ig_config_load(c.dir, &mc, err, sizeof err) != 0) {
    fprintf(stderr, "ignis serve: %s\n", err);
    return 1;
  }
  if (quantize_flag(mc.quant_fp8)) {
    ig_config_free(&mc);
    return 2;
  }
  int max_pos = mc.max_position_embeddings > 0 ? mc.max_position_embeddings : 4096;
  char ckpt_dtype[16];
  snprintf(ckpt_dtype, sizeof ckpt_dtype, "%s", mc.torch_dtype[0] ? mc.torch_dtype : "float32");
  ig_config_free(&mc);

  /* TGI's derivation of the limits: total from the model's context, input one less */
  int max_total = get_int("max-total-tokens", 0);
  int max_input = get_int("max-input-tokens", 0);
  if (!max_total) max_total = max_input ? max_input + 1 : (max_pos < 4096 ? max_pos : 4096);
  if (!max_input) max_input = max_total - 1;
  if (max_input < 1 || max_input >= max_total) {
    fprintf(stderr, "ignis serve: --max-input-tokens (%d) must be at least 1 and below --max-total-tokens (%d)\n",
            max_input, max_total);
    return 2;
  }
  int prefill = get_int("max-batch-prefill-tokens", 0);
  if (!prefill) prefill = max_input + 50;
  if (prefill < max_input) {
    fprintf(stderr, "ignis serve: --max-batch-prefill-tokens (%d) must be >= --max-input-tokens (%d)\n", prefill,
            max_input);
    return 2;
  }
  int batch_total = get_int("max-batch-total-tokens", 0);
  if (batch_total && batch_total < max_total) {
    fprintf(stderr, "ignis serve: --max-batch-total-tokens (%d) must be >= --max-total-tokens (%d)\n", batch_total,
            max_total);
    return 2;
  }
  int top_n = get_int("max-top-n-tokens", 5);
  if (top_n > IG_MAX_TOP_N) {
    fprintf(stderr, "ignis serve: --max-top-n-tokens %d: at most %d\n", top_n, IG_MAX_TOP_N);
    return 2;
  }
  c.n_graphs = parse_cuda_graphs(val("cuda-graphs") ? val("cuda-graphs") : IG_DEFAULT_CUDA_GRAPHS, c.graph_sizes, 32);
  if (c.n_graphs < 0) {
    fprintf(stderr, "ignis serve: invalid value '%s' for --cuda-graphs: expected batch sizes like 1,2,4,8 (at most 32, "
            "each 1..4096) or 0\n", val("cuda-graphs"));
    return 2;
  }
  c.device = device;
  c.dtype = dtype;
  const char *kvd = val("kv-cache-dtype"); /* checked by tgi_flags */
  c.kv_dtype = kvd ? ig_kv_dtype_parse(kvd) : IG_KV_AUTO;
  c.threads = get_int("threads", 0);
  c.num_shard = num_shard; /* tensor parallelism hook (issue 9) */
  c.tokcfg_path = val("tokenizer-config-path");
  c.ecfg.max_batch_size = get_int("max-batch-size", 0);
  c.ecfg.speculate = get_int("speculate", 0); /* checked by tgi_flags */
  c.ecfg.watermark_gamma = val("watermark-gamma") ? (float)strtod(val("watermark-gamma"), NULL) : 0.5f;
  c.ecfg.watermark_delta = val("watermark-delta") ? (float)strtod(val("watermark-delta"), NULL) : 2.0f;
  c.ecfg.max_batch_prefill_tokens = prefill;
  c.ecfg.max_batch_total_tokens = batch_total;
  c.ecfg.max_concurrent_requests = get_int("max-concurrent-requests", 128);
  c.ecfg.max_waiting_tokens = get_int("max-waiting-tokens", 20);
  c.ecfg.waiting_served_ratio = val("waiting-served-ratio") ? (float)strtod(val("waiting-served-ratio"), NULL) : 0.3f;
  c.ecfg.max_total_tokens = max_total;
  /* on, as TGI 3, where a cached prompt gives a cold run's bits (CUDA: batch-invariant products, tiled prompt rows).
   * The CPU backend's products take OpenBLAS's sgemm for pieces of 16 rows or more and its own matvec below, so a
   * prompt whose first blocks come from the cache could differ from a cold run in a logprob's last digits: off there
   * unless asked for. */
  c.ecfg.prefix_caching = strcmp(device, "cpu") != 0;
  if (val("prefix-caching")) parse_bool(val("prefix-caching"), &c.ecfg.prefix_caching);
  else if (!c.ecfg.prefix_caching)
    ig_log(IG_LOG_INFO, "prefix caching is off on the CPU unless asked for (--prefix-caching true): there a cached "
                        "prompt could change a logprob's last digits");
  c.ecfg.memory_fraction = val("cuda-memory-fraction") ? (float)strtod(val("cuda-memory-fraction"), NULL) : 1.0f;
  if (!(c.ecfg.memory_fraction > 0.0f && c.ecfg.memory_fraction <= 1.0f)) {
    fprintf(stderr, "ignis serve: --cuda-memory-fraction %s: must be in (0, 1]\n", val("cuda-memory-fraction"));
    return 2;
  }

  ig_server_config sc;
  ig_server_config_defaults(&sc);
  sc.hostname = val("hostname") ? val("hostname") : "0.0.0.0";
  sc.port = get_int("port", 3000);
  sc.model_id = model_id;
  sc.model_dtype = strcmp(device, "cpu") == 0 ? "float32" : (dtype ? dtype : "bfloat16");
  sc.device = device;
  sc.version = IG_VERSION;
  sc.max_concurrent_requests = c.ecfg.max_concurrent_requests;
  sc.max_best_of = get_int("max-best-of", 2);
  sc.max_stop_sequences = get_int("max-stop-sequences", 4);
  sc.max_top_n_tokens = top_n;
  sc.max_input_tokens = max_input;
  sc.max_total_tokens = max_total;
  sc.max_client_batch_size = get_int("max-client-batch-size", 4);
  sc.validation_workers = get_int("validation-workers", 2);
  if (sc.validation_workers < 1) sc.validation_workers = 1;
  sc.api_key = val("api-key");
  sc.cors_allow_origin = val("cors-allow-origin");
  sc.payload_limit = (size_t)get_int("payload-limit", 2000000);
  sc.read_timeout_s = get_int("client-timeout", 60);
  sc.grace_ms = get_int("shutdown-grace", 10) * 1000;
  sc.disable_grammar = 0;
  if (val("disable-grammar-support")) parse_bool(val("disable-grammar-support"), &sc.disable_grammar);
  sc.prometheus_port = get_int("prometheus-port", 0);
  if (val("trust-request-chat-template")) parse_bool(val("trust-request-chat-template"), &sc.trust_request_chat_template);

  /* 1,000s of idle keep-alive connections need descriptors */
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }

  ig_log(IG_LOG_INFO, "ignis %s serving %s (%s): device %s, checkpoint dtype %s, compute dtype %s", IG_VERSION,
         model_id, c.dir, device, ckpt_dtype, sc.model_dtype);
  ig_log(IG_LOG_INFO,
         "limits: max_input_tokens %d, max_total_tokens %d, max_batch_prefill_tokens %d, max_batch_total_tokens %s, "
         "max_concurrent_requests %d, max_batch_size %s, max_best_of %d, max_stop_sequences %d, max_client_batch_size "
         "%d, payload %zu bytes, speculate %d%s",
         max_input, max_total, prefill, batch_total ? val("max-batch-total-tokens") : "auto",
         sc.max_concurrent_requests, val("max-batch-size") ? val("max-batch-size") : "none", sc.max_best_of,
         sc.max_stop_sequences, sc.max_client_batch_size, sc.payload_limit, c.ecfg.speculate,
         sc.disable_grammar ? ", grammars refused" : "");

  int rc = ig_server_create(&sc, NULL, &c.server, err, sizeof err);
  if (rc != 0 && val("hostname") && getenv("HOSTNAME") && !strcmp(val("hostname"), getenv("HOSTNAME"))) {
    ig_log(IG_LOG_WARN, "cannot listen on HOSTNAME=%s (%s); listening on 0.0.0.0", sc.hostname, err);
    sc.hostname = "0.0.0.0";
    rc = ig_server_create(&sc, NULL, &c.server, err, sizeof err);
  }
  if (rc != 0) {
    fprintf(stderr, "ignis serve: %s\n", err);
    return 1;
  }
  ig_log(IG_LOG_INFO, "listening on http://%s:%d (health answers 503 until the model is loaded)", sc.hostname,
         ig_server_port(c.server));
  if (sc.prometheus_port) ig_log(IG_LOG_INFO, "metrics also on http://%s:%d/metrics", sc.hostname, sc.prometheus_port);
  int show_env = 0;
  if (val("env")) parse_bool(val("env"), &show_env);
  if (show_env) log_env(device, c.dir, dtype, num_shard);

  pthread_t loader;
  if (pthread_create(&loader, NULL, loader_main, &c) != 0) {
    fprintf(stderr, "ignis serve: cannot start the loader thread\n");
    ig_server_destroy(c.server);
    return 1;
  }
  ig_server_run(c.server);
  pthread_join(loader, NULL);
  if (c.engine) ig_engine_destroy(c.engine, 0); /* in-flight requests were drained or cancelled already */
  ig_server_destroy(c.server);
  if (c.model) ig_model_free(c.model);
  if (c.be) c.be->destroy(c.be);
  if (c.tmpl) ig_tmpl_free(c.tmpl);
  if (c.tmpl_tools) ig_tmpl_free(c.tmpl_tools);
  if (c.have_tcfg) ig_tmpl_config_free(&c.tcfg);
  if (c.tok) ig_tok_free(c.tok);
  if (c.failed) {
    fprintf(stderr, "ignis serve: %s\n", c.err);
    return 1;
  }
  ig_log(IG_LOG_INFO, "stopped");
  return 0;
}
