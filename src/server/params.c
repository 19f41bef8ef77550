/* server/params: JSON request bodies -> ig_server_req, with TGI's validation order and messages. Type errors
 * read like the serde/axum rejections TGI answers with ("Failed to deserialize the JSON body into the target
 * type: parameters.top_k: invalid type: string \"x\", expected i32"), so clients that match on them still do. */
#include "server/params.h"
#include "engine/jsonschema.h"
#include "util/str.h"
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DESER "Failed to deserialize the JSON body into the target type: "

/* ---- serde-style type errors -------------------------------------------------------------------------- */

static void describe(const json_t *v, char *buf, size_t n) {
  switch (json_typeof(v)) {
  case JSON_STRING: {
    const char *s = json_string_value(v);
    snprintf(buf, n, "string \"%.60s%s\"", s, strlen(s) > 60 ? "..." : "");
    break;
  }
  case JSON_INTEGER: snprintf(buf, n, "integer `%lld`", (long long)json_integer_value(v)); break;
  case JSON_REAL: {
    double d = json_real_value(v);
    if (d == floor(d) && fabs(d) < 1e15)
      snprintf(buf, n, "floating point `%.1f`", d);
    else
      snprintf(buf, n, "floating point `%.17g`", d);
    break;
  }
  case JSON_TRUE: snprintf(buf, n, "boolean `true`"); break;
  case JSON_FALSE: snprintf(buf, n, "boolean `false`"); break;
  case JSON_NULL: snprintf(buf, n, "null"); break;
  case JSON_ARRAY: snprintf(buf, n, "sequence"); break;
  default: snprintf(buf, n, "map"); break;
  }
}

static int type_err(char *err, size_t errlen, const char *path, const json_t *v, const char *expected) {
  char d[96];
  describe(v, d, sizeof d);
  snprintf(err, errlen, DESER "%s: invalid type: %s, expected %s", path, d, expected);
  return 422;
}

static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return 422;
}

/* Grammars are read while the body is parsed (on the loop thread: shapes and the cheap checks) and compiled later on
 * a validation worker (ig_server_req_compile_grammar): the largest schemas and regexes take up to ~0.3 s to compile
 * or refuse, which must not stall the other streams. Until then the request holds what to compile. */
static void grammar_clear(ig_server_req *r) {
  json_decref(r->grammar_schema);
  free(r->grammar_regex);
  r->grammar_schema = NULL, r->grammar_regex = NULL, r->grammar_regex_len = 0;
}

/* A schema given as a value, or (TGI) as a string of JSON: kept in r->grammar_schema (its own copy) for the worker.
 * The empty schema {} stays what it meant before schemas were followed: JSON mode, any JSON object. */
static int take_schema(const json_t *v, const char *what, ig_server_req *r, char *err, size_t errlen) {
  json_t *own = NULL;
  if (json_is_string(v)) { /* TGI: the schema may come as a string of JSON */
    own = json_loadb(json_string_value(v), json_string_length(v), JSON_DECODE_ANY, NULL);
    if (!own) return fail(err, errlen, "%s: value: not a JSON schema", what);
    v = own;
  }
  grammar_clear(r);
  r->gp.json_mode = 1;
  if (json_is_object(v) && json_object_size(v) == 0) { /* {}: JSON mode, one JSON object, as before schemas */
    json_decref(own);
    return 0;
  }
  if (!own && !(own = json_deep_copy(v))) return fail(err, errlen, "out of memory");
  r->grammar_schema = own;
  snprintf(r->grammar_what, sizeof r->grammar_what, "%s", what);
  return 0;
}

/* OpenAI's logit_bias: {"token id": bias in [-100, 100], ...}. null, {} and TGI's declared type's empty list mean
 * none; anything else is a 422 (TGI takes the field and ignores it, which would sample other than asked). Token ids
 * past the vocabulary are the engine's 422. */
#define IG_MAX_LOGIT_BIAS 65536
static int read_logit_bias(const json_t *v, ig_gen_params *g, char *err, size_t errlen) {
  if (!v || json_is_null(v) || (json_is_array(v) && json_array_size(v) == 0)) return 0;
  if (!json_is_object(v))
    return fail(err, errlen, "logit_bias: expected an object mapping token ids to biases from -100 to 100");
  size_t n = json_object_size(v);
  if (n == 0) return 0;
  if (n > IG_MAX_LOGIT_BIAS) return fail(err, errlen, "logit_bias: at most %d tokens. Given: %zu", IG_MAX_LOGIT_BIAS, n);
  void *mem = malloc(n * (sizeof(int32_t) + sizeof(float)));
  if (!mem) return fail(err, errlen, "out of memory");
  int32_t *ids = mem;
  float *vals = (float *)(ids + n);
  size_t k = 0;
  const char *key;
  const json_t *b;
  json_object_foreach((json_t *)v, key, b) {
    char *end;
    errno = 0;
    long long id = strtoll(key, &end, 10);
    if (!*key || *end || errno || id < 0 || id > INT32_MAX || (key[0] == '0' && key[1]) || key[0] == '+' ||
        key[0] == ' ') {
      free(mem);
      return fail(err, errlen, "logit_bias: key '%.40s' is not a token id", key);
    }
    double x = json_is_number(b) ? json_number_value(b) : NAN;
    if (!(x >= -100.0 && x <= 100.0)) {
      free(mem);
      return fail(err, errlen, "logit_bias: the bias of token %lld must be a number from -100 to 100", id);
    }
    ids[k] = (int32_t)id, vals[k] = (float)x, k++;
  }
  free(g->bias_id);
  g->bias_id = ids, g->bias_val = vals, g->n_bias = (int)k;
  return 0;
}

/* vLLM's stop_token_ids: a list of token ids (0..2^31), each ending the reply as EOS does (finish "stop", its text
 * not sent); ids past the vocabulary are the engine's 422. */
#define IG_MAX_STOP_IDS 1024
static int read_stop_ids(const json_t *v, ig_gen_params *g, char *err, size_t errlen) {
  if (!v || json_is_null(v)) return 0;
  if (!json_is_array(v)) return type_err(err, errlen, "stop_token_ids", v, "a sequence");
  size_t n = json_array_size(v);
  if (n == 0) return 0;
  if (n > IG_MAX_STOP_IDS) return fail(err, errlen, "stop_token_ids: at most %d ids. Given: %zu", IG_MAX_STOP_IDS, n);
  int32_t *ids = malloc(n * sizeof *ids);
  if (!ids) return fail(err, errlen, "out of memory");
  for (size_t k = 0; k < n; k++) {
    const json_t *x = json_array_get(v, k);
    if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) > INT32_MAX) {
      free(ids);
      return fail(err, errlen, "stop_token_ids[%zu]: expected a token id", k);
    }
    ids[k] = (int32_t)json_integer_value(x);
  }
  free(g->stop_ids);
  g->stop_ids = ids, g->n_stop_ids = (int)n;
  return 0;
}

/* A regex grammar: the pattern kept for the worker. */
static int take_regex(const char *pat, size_t n, const char *what, ig_server_req *r, char *err, size_t errlen) {
  grammar_clear(r);
  if (!(r->grammar_regex = malloc(n + 1))) return fail(err, errlen, "out of memory");
  memcpy(r->grammar_regex, pat, n);
  r->grammar_regex[n] = 0;
  r->grammar_regex_len = n;
  snprintf(r->grammar_what, sizeof r->grammar_what, "%s", what);
  r->gp.json_mode = 1;
  return 0;
}

int ig_server_req_compile_grammar(ig_server_req *r, char *err, size_t errlen) {
  if (!r->grammar_schema && !r->grammar_regex) return 0;
  char why[256];
  ig_jschema *sc = NULL;
  int rc = r->grammar_schema ? ig_jschema_compile(r->grammar_schema, &sc, why, sizeof why)
                             : ig_jschema_compile_regex(r->grammar_regex, r->grammar_regex_len, &sc, why, sizeof why);
  if (rc) {
    rc = fail(err, errlen, "%s: %s: %s", r->grammar_what, r->grammar_schema ? "schema" : "regex", why);
  } else {
    ig_jschema_unref(r->gp.schema);
    r->gp.schema = sc;
  }
  grammar_clear(r);
  return rc;
}

/* vLLM's guided decoding fields on the OpenAI routes (clients send them as extra_body): guided_json (a schema,
 * or a string of one), guided_regex, guided_choice (the output is one of the strings exactly); guided_grammar is
 * refused. At most one of them, and not beside a response_format other than text. */
static int parse_guided(const json_t *body, ig_server_req *r, char *err, size_t errlen) {
  const json_t *gj = json_object_get(body, "guided_json"), *gr = json_object_get(body, "guided_regex"),
               *gc = json_object_get(body, "guided_choice"), *gg = json_object_get(body, "guided_grammar");
  gj = json_is_null(gj) ? NULL : gj, gr = json_is_null(gr) ? NULL : gr, gc = json_is_null(gc) ? NULL : gc;
  if (gg && !json_is_null(gg)) return fail(err, errlen, "guided_grammar: grammars other than JSON schemas and regular "
                                           "expressions are not supported");
  int n = !!gj + !!gr + !!gc;
  if (!n) return 0;
  if (n > 1 || r->gp.json_mode)
    return fail(err, errlen, "guided_json, guided_regex, guided_choice and response_format: give one of them");
  if (gj) return take_schema(gj, "guided_json", r, err, errlen);
  if (gr) {
    if (!json_is_string(gr)) return fail(err, errlen, "guided_regex: expected a string (the pattern)");
    return take_regex(json_string_value(gr), json_string_length(gr), "guided_regex", r, err, errlen);
  }
  if (!json_is_array(gc) || json_array_size(gc) == 0 || json_array_size(gc) > 1024)
    return fail(err, errlen, "guided_choice: expected a list of 1 to 1024 strings");
  ig_str re = {0};
  size_t i;
  const json_t *e;
  int bad = 0, oom = 0;
  json_array_foreach(gc, i, e) {
    if (!json_is_string(e)) {
      bad = 1;
      break;
    }
    if (i) oom |= ig_str_putc(&re, '|');
    const char *t = json_string_value(e);
    for (size_t k = 0, len = json_string_length(e); k < len; k++) { /* every ASCII punctuation escaped: literals */
      unsigned char ch = (unsigned char)t[k];
      if (ch < 0x80 && ispunct(ch)) oom |= ig_str_putc(&re, '\\');
      oom |= ig_str_putc(&re, (char)ch);
    }
  }
  int rc = bad   ? fail(err, errlen, "guided_choice: expected a list of 1 to 1024 strings")
           : oom ? fail(err, errlen, "out of memory")
                 : take_regex(re.p ? re.p : "", re.len, "guided_choice", r, err, errlen);
  ig_str_free(&re);
  return rc;
}

/* TGI's grammar ({"type": "json", "value": schema}, {"type": "json_schema", "value": {"schema": ...}} or
 * {"type": "regex", ...}) and OpenAI's response_format ({"type": "text" | "json_object" | "json_schema", ...}):
 * sets gp.json_mode and the grammar to compile (none: any JSON object), or 422. `what` names the field. */
static int parse_grammar(const json_t *g, const char *what, ig_server_req *r, char *err, size_t errlen) {
  ig_gen_params *gp = &r->gp;
  gp->json_mode = 0;
  if (!g || json_is_null(g)) return 0;
  const json_t *t = json_is_object(g) ? json_object_get(g, "type") : NULL;
  if (!json_is_string(t)) return fail(err, errlen, "%s: expected an object with a \"type\"", what);
  const char *ty = json_string_value(t);
  if (!strcmp(ty, "text")) return 0;
  if (!strcmp(ty, "json_object")) return gp->json_mode = 1, 0;
  if (!strcmp(ty, "json")) {
    const json_t *v = json_object_get(g, "value");
    if (!v) return fail(err, errlen, "%s: missing field `value`", what);
    return take_schema(v, what, r, err, errlen);
  }
  if (!strcmp(ty, "json_schema")) {
    const json_t *js = json_object_get(g, "json_schema"); /* OpenAI's place; TGI's is "value" */
    if (!js) js = json_object_get(g, "value");
    if (!json_is_object(js)) return fail(err, errlen, "%s: json_schema: expected an object", what);
    const json_t *schema = json_object_get(js, "schema");
    if (!schema) return gp->json_mode = 1, 0; /* no schema: any JSON object */
    return take_schema(schema, what, r, err, errlen);
  }
  if (!strcmp(ty, "regex")) {
    const json_t *v = json_object_get(g, "value");
    if (!json_is_string(v)) return fail(err, errlen, "%s: regex: `value` must be a string (the pattern)", what);
    return take_regex(json_string_value(v), json_string_length(v), what, r, err, errlen);
  }
  return fail(err, errlen, "%s: unknown type '%s'", what, ty);
}

/* Each reader: returns 0 when absent (or null for nullable fields: *set = 0), 1 when read, 422 on error. */
static int read_bool(const json_t *obj, const char *key, const char *path, int nullable, int *out, char *err,
                     size_t errlen) {
  const json_t *v = json_object_get(obj, key);
  if (!v || (nullable && json_is_null(v))) return 0;
  if (!json_is_boolean(v)) return type_err(err, errlen, path, v, "a boolean");
  *out = json_is_true(v);
  return 1;
}

static int read_int(const json_t *obj, const char *key, const char *path, const char *tname, long long lo,
                    long long hi, long long *out, char *err, size_t errlen) {
  const json_t *v = json_object_get(obj, key);
  if (!v || json_is_null(v)) return 0;
  if (!json_is_integer(v)) return type_err(err, errlen, path, v, tname);
  long long x = json_integer_value(v);
  if (x < lo || x > hi) {
    snprintf(err, errlen, DESER "%s: invalid value: integer `%lld`, expected %s", path, x, tname);
    return 422;
  }
  *out = x;
  return 1;
}

static int read_float(const json_t *obj, const char *key, const char *path, double *out, char *err, size_t errlen) {
  const json_t *v = json_object_get(obj, key);
  if (!v || json_is_null(v)) return 0;
  if (!json_is_number(v)) return type_err(err, errlen, path, v, "f32");
  *out = json_number_value(v);
  return 1;
}

/* A list of strings; with allow_string a lone string counts as a list of one (OpenAI's `stop`). */
static int read_strings(const json_t *obj, const char *key, const char *path, int nullable, int allow_string,
                        char ***out, int *n_out, size_t **lens, char *err, size_t errlen) {
  const json_t *v = json_object_get(obj, key);
  if (!v || (nullable && json_is_null(v))) return 0;
  if (allow_string && json_is_string(v)) {
    char **a = calloc(1, sizeof *a);
    size_t n = json_string_length(v);
    if (!a || !(a[0] = malloc(n + 1))) {
      free(a);
      return fail(err, errlen, "out of memory");
    }
    memcpy(a[0], json_string_value(v), n + 1);
    if (lens && !(*lens = malloc(sizeof **lens))) {
      free(a[0]);
      free(a);
      return fail(err, errlen, "out of memory");
    }
    if (lens) (*lens)[0] = n;
    *out = a;
    *n_out = 1;
    return 1;
  }
  if (!json_is_array(v)) return type_err(err, errlen, path, v, "a sequence");
  size_t n = json_array_size(v);
  for (size_t i = 0; i < n; i++) {
    const json_t *s = json_array_get(v, i);
    if (!json_is_string(s)) {
      char p[96];
      snprintf(p, sizeof p, "%s[%zu]", path, i);
      return type_err(err, errlen, p, s, "a string");
    }
  }
  char **a = calloc(n ? n : 1, sizeof *a);
  if (!a) return fail(err, errlen, "out of memory");
  if (lens && !(*lens = calloc(n ? n : 1, sizeof **lens))) {
    free(a);
    return fail(err, errlen, "out of memory");
  }
  for (size_t i = 0; i < n; i++) {
    const json_t *s = json_array_get(v, i);
    a[i] = malloc(json_string_length(s) + 1);
    if (!a[i]) {
      for (size_t j = 0; j < i; j++) free(a[j]);
      free(a);
      if (lens) {
        free(*lens);
        *lens = NULL;
      }
      return fail(err, errlen, "out of memory");
    }
    memcpy(a[i], json_string_value(s), json_string_length(s) + 1);
    if (lens) (*lens)[i] = json_string_length(s);
  }
  *out = a;
  *n_out = (int)n;
  return 1;
}

#define TRY(x)                                                                                                 \
  do {                                                                                                         \
    int rc_ = (x);                                                                                             \
    if (rc_ > 1) return rc_;                                                                                   \
  } while (0)

static void params_defaults(ig_gen_params *g) {
  memset(g, 0, sizeof *g);
  g->temperature = 1.0f;
  g->top_p = 1.0f;
  g->typical_p = 1.0f;
  g->repetition_penalty = 1.0f;
}

/* ---- TGI: {"inputs": "...", "parameters": {...}} ----------------------------------------------------------- */

static int parse_tgi(const json_t *body, const ig_server_limits *lim, ig_server_req *r, char *err, size_t errlen) {
  const json_t *inputs = json_object_get(body, "inputs");
  if (!inputs) return fail(err, errlen, DESER "missing field `inputs`");
  if (!json_is_string(inputs)) return type_err(err, errlen, "inputs", inputs, "a string");
  const json_t *p = json_object_get(body, "parameters");
  json_t *tmp = NULL;
  if (!p || json_is_null(p)) {
    p = tmp = json_object();
    if (!tmp) return fail(err, errlen, "out of memory");
  } else if (!json_is_object(p)) {
    return type_err(err, errlen, "parameters", p, "struct GenerateParameters");
  }
  int rc = 0;
  long long best_of = 1, top_k = 0, max_new = 0, seed = 0, top_n = 0, truncate = 0;
  int has_best_of = 0, has_top_k = 0, has_max_new = 0, has_seed = 0, has_top_n = 0, has_trunc = 0;
  double temperature = 1, rep = 1, freq = 0, top_p = 1, typical_p = 1;
  int has_temp = 0, has_rep = 0, has_freq = 0, has_top_p = 0, has_typ = 0;
  int do_sample = 0, details = 0, dec = 0, watermark = 0, ignore_eos = 0, rft = 0;
#define R(x)                                                                                                   \
  do {                                                                                                         \
    rc = (x);                                                                                                  \
    if (rc > 1) goto out;                                                                                      \
  } while (0)
  R(has_best_of = read_int(p, "best_of", "parameters.best_of", "usize", 0, INT32_MAX, &best_of, err, errlen));
  R(read_bool(p, "decoder_input_details", "parameters.decoder_input_details", 0, &dec, err, errlen));
  R(read_bool(p, "details", "parameters.details", 0, &details, err, errlen));
  R(read_bool(p, "do_sample", "parameters.do_sample", 0, &do_sample, err, errlen));
  R(has_freq = read_float(p, "frequency_penalty", "parameters.frequency_penalty", &freq, err, errlen));
  R(has_max_new = read_int(p, "max_new_tokens", "parameters.max_new_tokens", "u32", 0, UINT32_MAX, &max_new, err,
                           errlen));
  R(has_rep = read_float(p, "repetition_penalty", "parameters.repetition_penalty", &rep, err, errlen));
  int has_rft = 0;
  R(has_rft = read_bool(p, "return_full_text", "parameters.return_full_text", 1, &rft, err, errlen));
  R(has_seed = read_int(p, "seed", "parameters.seed", "u64", 0, INT64_MAX, &seed, err, errlen));
  R(read_strings(p, "stop", "parameters.stop", 0, 0, &r->gp.stop, &r->gp.n_stop, NULL, err, errlen));
  R(has_temp = read_float(p, "temperature", "parameters.temperature", &temperature, err, errlen));
  R(has_top_k = read_int(p, "top_k", "parameters.top_k", "i32", INT32_MIN, INT32_MAX, &top_k, err, errlen));
  R(has_top_n = read_int(p, "top_n_tokens", "parameters.top_n_tokens", "u32", 0, UINT32_MAX, &top_n, err, errlen));
  R(has_top_p = read_float(p, "top_p", "parameters.top_p", &top_p, err, errlen));
  R(has_trunc = read_int(p, "truncate", "parameters.truncate", "usize", 0, INT32_MAX, &truncate, err, errlen));
  R(has_typ = read_float(p, "typical_p", "parameters.typical_p", &typical_p, err, errlen));
  R(read_bool(p, "watermark", "parameters.watermark", 0, &watermark, err, errlen));
  R(read_bool(p, "ignore_eos", "parameters.ignore_eos", 1, &ignore_eos, err, errlen));
  {
    R(parse_grammar(json_object_get(p, "grammar"), "grammar", r, err, errlen));
    const json_t *ad = json_object_get(p, "adapter_id");
    if (ad && !json_is_null(ad)) R(fail(err, errlen, "invalid lora id"));
  }
  rc = 0;
  int stream = r->api == IG_API_GENERATE_STREAM;
  /* TGI's order: endpoint checks, best_of, then validate() */
  if (stream && has_best_of && best_of > 1) R(fail(err, errlen, "`best_of` != 1 is not supported when streaming tokens"));
  if (stream && dec) R(fail(err, errlen, "`decoder_input_details` == true is not supported when streaming tokens"));
  if (has_best_of) {
    if (lim->max_best_of == 1 && best_of != 1) R(fail(err, errlen, "`best_of` != 1 is not allowed for this endpoint"));
    if (best_of == 0 || best_of > lim->max_best_of)
      R(fail(err, errlen, "`best_of` must be > 0 and <= %d. Given: %lld", lim->max_best_of, best_of));
  }
  int sampling = do_sample || has_temp || has_top_k || has_top_p || has_typ;
  if (best_of > 1 && !sampling) R(fail(err, errlen, "you must use sampling when `best_of` is > 1"));
  if (temperature <= 0.0) R(fail(err, errlen, "`temperature` must be strictly positive"));
  if (rep <= 0.0) R(fail(err, errlen, "`repetition_penalty` must be strictly positive"));
  if (!(freq >= -2.0 && freq <= 2.0)) R(fail(err, errlen, "`frequency_penalty` must be >= -2.0 and <= 2.0"));
  if (has_top_p && (top_p <= 0.0 || top_p >= 1.0)) R(fail(err, errlen, "`top_p` must be > 0.0 and < 1.0"));
  if (has_typ && (typical_p <= 0.0 || typical_p >= 1.0)) R(fail(err, errlen, "`typical_p` must be > 0.0 and < 1.0"));
  if (has_top_k && top_k <= 0) R(fail(err, errlen, "`top_k` must be strictly positive"));
  if (has_max_new && max_new == 0) R(fail(err, errlen, "`max_new_tokens` must be strictly positive"));
  if (r->gp.n_stop > lim->max_stop_sequences)
    R(fail(err, errlen, "`stop` supports up to %d stop sequences. Given: %d", lim->max_stop_sequences, r->gp.n_stop));
  if (has_seed && best_of > 1) R(fail(err, errlen, "`seed` must not be set when `best_of` > 1"));
  if (has_top_n && top_n > lim->max_top_n_tokens)
    R(fail(err, errlen, "`top_n_tokens` must be >= 0 and <= %d. Given: %lld", lim->max_top_n_tokens, top_n));
  if (json_string_length(inputs) == 0) R(fail(err, errlen, "`inputs` cannot be empty"));
  if (has_trunc && (truncate == 0 || truncate > lim->max_input_tokens))
    R(fail(err, errlen, "`truncate` must be strictly positive and less than %d. Given: %lld", lim->max_input_tokens,
           truncate));

  r->prompts = calloc(1, sizeof *r->prompts);
  r->prompt_lens = calloc(1, sizeof *r->prompt_lens);
  if (!r->prompts || !r->prompt_lens || !(r->prompts[0] = malloc(json_string_length(inputs) + 1)))
    R(fail(err, errlen, "out of memory"));
  memcpy(r->prompts[0], json_string_value(inputs), json_string_length(inputs) + 1);
  r->prompt_lens[0] = json_string_length(inputs);
  r->n_prompts = 1;
  ig_gen_params *g = &r->gp;
  g->max_new_tokens = has_max_new ? (int)(max_new > INT32_MAX ? INT32_MAX : max_new) : 0;
  r->max_new_tokens_set = has_max_new;
  g->temperature = (float)temperature;
  g->top_k = has_top_k ? (int)top_k : 0;
  g->top_p = (float)top_p;
  g->typical_p = (float)typical_p;
  g->repetition_penalty = (float)rep;
  g->frequency_penalty = (float)freq;
  g->watermark = watermark;
  g->ignore_eos = ignore_eos;
  g->top_n_tokens = (int)top_n;
  /* TGI's NextTokenChooser samples when asked or when any warper is active */
  g->do_sample = do_sample || temperature != 1.0 || g->top_k > 0 || top_p < 1.0 || typical_p < 1.0;
  g->seed = (uint64_t)seed;
  r->seed_set = has_seed;
  g->want_logprobs = 1;
  g->prefill_logprobs = dec;
  r->best_of = (int)best_of;
  r->details = details || (!stream && dec);
  r->decoder_input_details = dec;
  r->return_full_text = rft;
  r->return_full_text_set = has_rft;
  r->truncate = (int)truncate;
  r->add_special = 1;
out:
  json_decref(tmp);
  return rc > 1 ? rc : 0;
#undef R
}

/* ---- OpenAI: shared sampling fields --------------------------------------------------------------------- */

static int parse_openai_common(const json_t *body, const ig_server_limits *lim, ig_server_req *r, char *err,
                               size_t errlen) {
  long long max_tokens = 0, seed = 0, n = 1, top_logprobs = 0;
  double temperature = 1, top_p = 1, freq = 0, pres = 0, rep = 1;
  int has_mt = 0, has_seed = 0, has_temp = 0, has_top_p = 0, has_tl = 0, has_rep = 0, logprobs = 0, stream = 0,
      ignore_eos = 0;
  TRY(has_mt = read_int(body, "max_tokens", "max_tokens", "u32", 0, UINT32_MAX, &max_tokens, err, errlen));
  if (!has_mt)
    TRY(has_mt = read_int(body, "max_completion_tokens", "max_completion_tokens", "u32", 0, UINT32_MAX, &max_tokens,
                          err, errlen));
  TRY(has_seed = read_int(body, "seed", "seed", "u64", 0, INT64_MAX, &seed, err, errlen));
  TRY(read_int(body, "n", "n", "u32", 0, UINT32_MAX, &n, err, errlen));
  TRY(has_temp = read_float(body, "temperature", "temperature", &temperature, err, errlen));
  TRY(has_top_p = read_float(body, "top_p", "top_p", &top_p, err, errlen));
  TRY(read_float(body, "frequency_penalty", "frequency_penalty", &freq, err, errlen));
  TRY(read_float(body, "presence_penalty", "presence_penalty", &pres, err, errlen));
  TRY(has_rep = read_float(body, "repetition_penalty", "repetition_penalty", &rep, err, errlen));
  TRY(read_strings(body, "stop", "stop", 1, 1, &r->gp.stop, &r->gp.n_stop, NULL, err, errlen));
  TRY(read_bool(body, "stream", "stream", 1, &stream, err, errlen));
  TRY(read_bool(body, "ignore_eos", "ignore_eos", 1, &ignore_eos, err, errlen));
  /* extension: TGI-style clients (@huggingface/inference's textGeneration) pass do_sample through */
  int do_sample = 1, has_ds = 0;
  TRY(has_ds = read_bool(body, "do_sample", "do_sample", 1, &do_sample, err, errlen));
  /* completions: logprobs is a count (OpenAI's legacy API, vLLM): the N most likely tokens at each position, 0 too;
   * true means 0 (or top_logprobs) */
  const json_t *lp = json_object_get(body, "logprobs");
  long long lp_count = 0;
  int has_lpc = 0;
  if (lp && !json_is_null(lp)) {
    if (json_is_boolean(lp))
      logprobs = json_is_true(lp);
    else if (r->api == IG_API_COMPLETIONS && json_is_integer(lp))
      logprobs = 1, has_lpc = 1, lp_count = json_integer_value(lp);
    else
      return type_err(err, errlen, "logprobs", lp,
                      r->api == IG_API_COMPLETIONS ? "a boolean or an integer" : "a boolean");
  }
  TRY(has_tl = read_int(body, "top_logprobs", "top_logprobs", "u32", 0, UINT32_MAX, &top_logprobs, err, errlen));
  TRY(read_logit_bias(json_object_get(body, "logit_bias"), &r->gp, err, errlen));
  if (r->api == IG_API_COMPLETIONS) TRY(read_bool(body, "echo", "echo", 1, &r->echo, err, errlen));
  TRY(read_bool(body, "include_stop_str_in_output", "include_stop_str_in_output", 1, &r->gp.include_stop, err, errlen));
  /* vLLM's min_p, min_tokens, top_k and stop_token_ids (clients send them as extra_body) */
  double min_p = 0.0;
  long long min_tokens = 0, top_k = 0;
  TRY(read_int(body, "top_k", "top_k", "i32", INT32_MIN, INT32_MAX, &top_k, err, errlen)); /* -1 or 0: off */
  if (top_k < -1) return fail(err, errlen, "`top_k` must be strictly positive, or -1 / 0 (off)");
  TRY(read_stop_ids(json_object_get(body, "stop_token_ids"), &r->gp, err, errlen));
  TRY(read_float(body, "min_p", "min_p", &min_p, err, errlen));
  TRY(read_int(body, "min_tokens", "min_tokens", "u32", 0, UINT32_MAX, &min_tokens, err, errlen));
  if (!(min_p >= 0.0 && min_p <= 1.0)) return fail(err, errlen, "`min_p` must be >= 0.0 and <= 1.0");
  r->gp.min_p = (float)min_p;
  r->gp.min_tokens = (int)(min_tokens > INT32_MAX ? INT32_MAX : min_tokens);
  const json_t *so = json_object_get(body, "stream_options");
  if (so && !json_is_null(so)) {
    if (!json_is_object(so)) return type_err(err, errlen, "stream_options", so, "struct StreamOptions");
    TRY(read_bool(so, "include_usage", "stream_options.include_usage", 1, &r->include_usage, err, errlen));
  }
  const json_t *model = json_object_get(body, "model");
  if (model && json_is_string(model) && !(r->model = strdup(json_string_value(model))))
    return fail(err, errlen, "out of memory");

  /* OpenAI's n: choices per prompt, each its own sequence (seeds seed, seed + 1, ...) */
  if (n < 1 || n > IG_MAX_CHOICES)
    return fail(err, errlen, "`n` must be between 1 and %d. Given: %lld", IG_MAX_CHOICES, n);
  if (n * (r->n_prompts > 1 ? r->n_prompts : 1) > IG_MAX_CHOICES)
    return fail(err, errlen, "`n` times the number of prompts must be at most %d. Given: %lld x %d", IG_MAX_CHOICES,
                n, r->n_prompts);
  r->n_choices = (int)n;
  if (has_temp && temperature < 0.0) return fail(err, errlen, "`temperature` must be strictly positive");
  if (has_top_p && (top_p <= 0.0 || top_p > 1.0)) return fail(err, errlen, "`top_p` must be > 0.0 and < 1.0");
  if (!(freq >= -2.0 && freq <= 2.0)) return fail(err, errlen, "`frequency_penalty` must be >= -2.0 and <= 2.0");
  if (!(pres >= -2.0 && pres <= 2.0)) return fail(err, errlen, "`presence_penalty` must be >= -2.0 and <= 2.0");
  if (has_rep && rep <= 0.0) return fail(err, errlen, "`repetition_penalty` must be strictly positive");
  /* max_tokens 0 with echo (completions): the prompt is scored, nothing generated (vLLM, lm-evaluation-harness) */
  if (has_mt && max_tokens == 0 && !r->echo) return fail(err, errlen, "`max_new_tokens` must be strictly positive");
  if (r->gp.n_stop > lim->max_stop_sequences)
    return fail(err, errlen, "`stop` supports up to %d stop sequences. Given: %d", lim->max_stop_sequences,
                r->gp.n_stop);
  if (has_tl && top_logprobs > lim->max_top_n_tokens)
    return fail(err, errlen, "`top_n_tokens` must be >= 0 and <= %d. Given: %lld", lim->max_top_n_tokens,
                top_logprobs);
  if (has_lpc && (lp_count < 0 || lp_count > lim->max_top_n_tokens))
    return fail(err, errlen, "`logprobs` must be >= 0 and <= %d. Given: %lld", lim->max_top_n_tokens, lp_count);

  ig_gen_params *g = &r->gp;
  r->stream = stream;
  g->max_new_tokens = has_mt ? (int)(max_tokens > INT32_MAX ? INT32_MAX : max_tokens) : 0;
  r->max_new_tokens_set = has_mt;
  /* TGI: greedy only when temperature is 0; otherwise sampling (temperature 1 by default) */
  if ((has_temp && temperature == 0.0) || (!has_temp && has_ds && !do_sample)) {
    g->do_sample = 0;
    g->temperature = 1.0f;
  } else {
    g->do_sample = 1;
    g->temperature = (float)temperature;
  }
  g->top_p = (float)top_p; /* 1.0 (OpenAI's default, sent by some clients) means off */
  g->top_k = g->do_sample && top_k > 0 ? (int)top_k : 0; /* greedy (temperature 0) stays greedy */
  g->frequency_penalty = (float)freq;
  g->presence_penalty = (float)pres;
  g->repetition_penalty = (float)rep;
  g->seed = (uint64_t)seed;
  r->seed_set = has_seed;
  g->ignore_eos = ignore_eos;
  g->want_logprobs = 1;
  r->logprobs = logprobs;
  r->top_logprobs = !logprobs ? 0 : has_lpc ? (int)lp_count : (int)top_logprobs;
  g->top_n_tokens = r->top_logprobs;
  g->prefill_logprobs = r->echo && logprobs; /* the echoed prompt's logprobs, and its most likely tokens */
  g->prefill_top_n = g->prefill_logprobs ? r->top_logprobs : 0;
  r->best_of = 1;
  r->details = 1;
  /* response_format: chat's, and taken on /v1/completions too (as vLLM does) rather than ignored; then vLLM's
   * guided_* fields */
  int rc = parse_grammar(json_object_get(body, "response_format"), "response_format", r, err, errlen);
  return rc ? rc : parse_guided(body, r, err, errlen);
}

/* Chat content: a string, or a list of {"type":"text","text":...} parts, joined. */
static int flatten_content(const json_t *c, size_t i, json_t **out, char *err, size_t errlen) {
  if (json_is_string(c)) {
    *out = json_incref((json_t *)c);
    return 0;
  }
  if (json_is_array(c)) {
    size_t len = 0;
    for (size_t k = 0; k < json_array_size(c); k++) {
      const json_t *part = json_array_get(c, k);
      const json_t *type = json_is_object(part) ? json_object_get(part, "type") : NULL;
      if (!json_is_string(type)) return fail(err, errlen, DESER "messages[%zu].content[%zu]: missing field `type`", i, k);
      if (strcmp(json_string_value(type), "text") != 0)
        return fail(err, errlen, "%s modality is not supported", json_string_value(type));
      const json_t *t = json_object_get(part, "text");
      if (!json_is_string(t)) return fail(err, errlen, DESER "messages[%zu].content[%zu]: missing field `text`", i, k);
      len += json_string_length(t);
    }
    char *buf = malloc(len + 1);
    if (!buf) return fail(err, errlen, "out of memory");
    size_t o = 0;
    for (size_t k = 0; k < json_array_size(c); k++) {
      const json_t *t = json_object_get(json_array_get(c, k), "text");
      memcpy(buf + o, json_string_value(t), json_string_length(t));
      o += json_string_length(t);
    }
    *out = json_stringn_nocheck(buf, o);
    free(buf);
    return *out ? 0 : fail(err, errlen, "out of memory");
  }
  char p[64];
  snprintf(p, sizeof p, "messages[%zu].content", i);
  return type_err(err, errlen, p, c, "a string or a list of content parts");
}

/* ---- tools (OpenAI function calling) ------------------------------------------------------------------ */

#define MAX_TOOLS 128

/* The prompt added to the last message when the chat template does not read `tools` (TGI's tool_prompt); %s: the
 * key of the arguments, the one a required call is constrained to. */
#define DEFAULT_TOOL_PROMPT                                                                                        \
  "You may call one of the functions below. To call one, reply with nothing but a JSON object of the form "       \
  "{\"name\": <function name>, \"%s\": <object of its arguments>}."


static int tool_name_ok(const char *n, size_t len) {
  if (len == 0 || len > 64) return 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)n[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
      return 0;
  }
  return 1;
}

/* $defs / definitions of one tool's parameters, moved to the root of the call schema (a "$ref" such as
 * "#/$defs/X" resolves against the root). 0, or 422 when two tools name a definition alike. */
static int hoist_defs(json_t *params, json_t *root, size_t t, char *err, size_t errlen) {
  static const char *const keys[] = {"$defs", "definitions"};
  for (int k = 0; k < 2; k++) {
    json_t *d = json_object_get(params, keys[k]);
    if (!d) continue;
    if (!json_is_object(d))
      return fail(err, errlen, "tools[%zu].function.parameters.%s: expected an object", t, keys[k]);
    json_t *dst = json_object_get(root, keys[k]);
    if (!dst) {
      if (json_object_set_new(root, keys[k], dst = json_object())) return fail(err, errlen, "out of memory");
    }
    const char *name;
    json_t *v;
    json_object_foreach(d, name, v) {
      if (json_object_get(dst, name) && !json_equal(json_object_get(dst, name), v))
        return fail(err, errlen, "tools[%zu].function.parameters.%s.%s: another tool defines it differently", t,
                    keys[k], name);
      if (json_object_set(dst, name, v)) return fail(err, errlen, "out of memory");
    }
    json_object_del(params, keys[k]);
  }
  return 0;
}

/* The schema of a call of tool t: {"name": its name, args_key: its parameters}, both required. */
static json_t *call_schema(const json_t *tool, size_t t, const char *args_key, json_t *root, int *rc, char *err,
                           size_t errlen) {
  const json_t *fn = json_object_get(tool, "function");
  const json_t *params = json_object_get(fn, "parameters");
  json_t *args = params ? json_deep_copy(params) : json_pack("{s:s}", "type", "object");
  json_t *o = args ? json_pack("{s:s, s:{s:{s:O}, s:o}, s:[s,s], s:b}", "type", "object", "properties", "name",
                               "const", json_object_get(fn, "name"), args_key, args, "required", "name", args_key,
                               "additionalProperties", 0)
                   : NULL;
  if (!o) {
    *rc = fail(err, errlen, "out of memory");
    return NULL;
  }
  if ((*rc = hoist_defs(args, root, t, err, errlen))) {
    json_decref(o);
    return NULL;
  }
  return o;
}

/* tools, tool_choice and TGI's tool_prompt of a chat request. For "required" or a named function the output is
 * constrained to a call: gp.schema. */
static int parse_tools(const json_t *body, const ig_server_limits *lim, ig_server_req *r, char *err, size_t errlen) {
  const json_t *tools = json_object_get(body, "tools"), *choice = json_object_get(body, "tool_choice");
  const json_t *tp = json_object_get(body, "tool_prompt");
  if (tp && !json_is_null(tp)) {
    if (!json_is_string(tp)) return type_err(err, errlen, "tool_prompt", tp, "a string");
    if (!(r->tool_prompt = strdup(json_string_value(tp)))) return fail(err, errlen, "out of memory");
  }
  if (!tools || json_is_null(tools) || (json_is_array(tools) && json_array_size(tools) == 0)) {
    if (choice && !json_is_null(choice) && !(json_is_string(choice) && !strcmp(json_string_value(choice), "none")))
      return fail(err, errlen, "tool_choice: there are no tools to choose from");
    return 0;
  }
  if (!json_is_array(tools)) return type_err(err, errlen, "tools", tools, "a sequence");
  size_t n = json_array_size(tools);
  if (n > MAX_TOOLS) return fail(err, errlen, "tools: at most %d tools. Given: %zu", MAX_TOOLS, n);
  for (size_t t = 0; t < n; t++) {
    const json_t *tool = json_array_get(tools, t);
    char p[64];
    snprintf(p, sizeof p, "tools[%zu]", t);
    if (!json_is_object(tool)) return type_err(err, errlen, p, tool, "struct Tool");
    const json_t *ty = json_object_get(tool, "type");
    if (ty && !(json_is_string(ty) && !strcmp(json_string_value(ty), "function")))
      return fail(err, errlen, "tools[%zu].type: only \"function\" tools are supported", t);
    const json_t *fn = json_object_get(tool, "function");
    if (!fn) return fail(err, errlen, DESER "tools[%zu]: missing field `function`", t);
    snprintf(p, sizeof p, "tools[%zu].function", t);
    if (!json_is_object(fn)) return type_err(err, errlen, p, fn, "struct FunctionDefinition");
    const json_t *name = json_object_get(fn, "name");
    if (!json_is_string(name)) return fail(err, errlen, DESER "tools[%zu].function: missing field `name`", t);
    if (!tool_name_ok(json_string_value(name), json_string_length(name)))
      return fail(err, errlen, "tools[%zu].function.name: 1 to 64 letters, digits, '_' or '-'", t);
    for (size_t u = 0; u < t; u++)
      if (json_equal(name, json_object_get(json_object_get(json_array_get(tools, u), "function"), "name")))
        return fail(err, errlen, "tools[%zu].function.name: '%s' is also tools[%zu]'s", t, json_string_value(name), u);
    const json_t *d = json_object_get(fn, "description");
    if (d && !json_is_null(d) && !json_is_string(d)) {
      snprintf(p, sizeof p, "tools[%zu].function.description", t);
      return type_err(err, errlen, p, d, "a string");
    }
    const json_t *pa = json_object_get(fn, "parameters");
    if (pa && !json_is_object(pa)) {
      snprintf(p, sizeof p, "tools[%zu].function.parameters", t);
      return type_err(err, errlen, p, pa, "a JSON schema object");
    }
  }
  int mode = IG_TOOLS_AUTO;
  const char *only = NULL; /* a named function */
  if (choice && !json_is_null(choice)) {
    if (json_is_string(choice)) {
      const char *c = json_string_value(choice);
      if (!strcmp(c, "none")) mode = IG_TOOLS_NONE;
      else if (!strcmp(c, "auto")) mode = IG_TOOLS_AUTO;
      else if (!strcmp(c, "required")) mode = IG_TOOLS_REQUIRED;
      else
        return fail(err, errlen, "tool_choice: expected \"none\", \"auto\", \"required\" or a function, got '%s'", c);
    } else {
      const json_t *fn = json_is_object(choice) ? json_object_get(choice, "function") : NULL;
      const json_t *nm = json_is_object(fn) ? json_object_get(fn, "name") : NULL;
      if (!json_is_string(nm))
        return fail(err, errlen,
                    "tool_choice: expected a string or {\"type\": \"function\", \"function\": {\"name\": ...}}");
      only = json_string_value(nm);
      mode = IG_TOOLS_REQUIRED;
    }
  }
  if (!(r->tools = json_deep_copy(tools))) return fail(err, errlen, "out of memory");
  const char *args_key = lim->tool_args_key ? lim->tool_args_key : "arguments";
  if (!r->tool_prompt) {
    size_t n_tp = sizeof DEFAULT_TOOL_PROMPT + strlen(args_key);
    if (!(r->tool_prompt = malloc(n_tp))) return fail(err, errlen, "out of memory");
    snprintf(r->tool_prompt, n_tp, DEFAULT_TOOL_PROMPT, args_key);
  }
  r->tool_choice = mode;
  int par = 1;
  int rp = read_bool(body, "parallel_tool_calls", "parallel_tool_calls", 1, &par, err, errlen);
  if (rp > 1) return rp; /* 422 */
  r->no_parallel_calls = !par;
  if (mode != IG_TOOLS_REQUIRED) return 0;
  if (r->gp.json_mode)
    return fail(err, errlen, "tool_choice: a required tool call cannot be combined with response_format");
  json_t *root = json_object(), *alts = json_array();
  int rc = root && alts ? 0 : fail(err, errlen, "out of memory");
  size_t found = 0;
  for (size_t t = 0; t < n && !rc; t++) {
    const json_t *tool = json_array_get(tools, t);
    if (only && strcmp(json_string_value(json_object_get(json_object_get(tool, "function"), "name")), only)) continue;
    json_t *o = call_schema(tool, t, args_key, root, &rc, err, errlen);
    if (o && json_array_append_new(alts, o)) rc = fail(err, errlen, "out of memory");
    found++;
  }
  if (!rc && only && !found) rc = fail(err, errlen, "tool_choice: no tool is named '%s'", only);
  if (!rc) {
    if (json_array_size(alts) == 1) { /* one call: its object is the root */
      json_t *o = json_array_get(alts, 0);
      const char *k;
      json_t *v;
      json_object_foreach(o, k, v) if (json_object_set(root, k, v)) rc = fail(err, errlen, "out of memory");
    } else if (json_object_set(root, "anyOf", alts)) {
      rc = fail(err, errlen, "out of memory");
    }
  }
  json_decref(alts);
  if (!rc) {
    rc = take_schema(root, "tools", r, err, errlen);
  }
  json_decref(root);
  return rc;
}

/* An assistant message's tool_calls as OpenAI clients send them (arguments as a string of JSON) -> arguments as an
 * object, which is what chat templates read (transformers' convention). Other shapes are left as they are. */
static void tool_call_args_to_objects(json_t *msg) {
  json_t *calls = json_object_get(msg, "tool_calls");
  for (size_t k = 0; k < json_array_size(calls); k++) {
    json_t *fn = json_object_get(json_array_get(calls, k), "function");
    json_t *a = json_object_get(fn, "arguments");
    if (!json_is_string(a)) continue;
    json_t *obj = json_loadb(json_string_value(a), json_string_length(a), 0, NULL);
    if (json_is_object(obj)) json_object_set(fn, "arguments", obj);
    json_decref(obj);
  }
}

/* A legacy message as the tools era writes it, for the template: an assistant's function_call {name, arguments} as
 * one tool_calls entry, a "function" message (a function's result) as a "tool" message. */
static void legacy_to_tools(json_t *msg, size_t i) {
  json_t *fc = json_object_get(msg, "function_call");
  if (json_is_object(fc) && !json_object_get(msg, "tool_calls")) {
    char id[32];
    snprintf(id, sizeof id, "call_%zu", i);
    json_object_set_new(msg, "tool_calls", json_pack("[{s:s,s:s,s:O}]", "id", id, "type", "function", "function", fc));
    json_object_del(msg, "function_call");
  }
  const json_t *role = json_object_get(msg, "role");
  if (json_is_string(role) && !strcmp(json_string_value(role), "function")) json_object_set_new(msg, "role", json_string("tool"));
}

/* ---- vLLM's chat template fields -------------------------------------------------------------------------- */

/* add_generation_prompt, continue_final_message, documents, chat_template_kwargs and chat_template. The request's
 * own fields win over kwargs of the same names (vLLM's merge_kwargs); as vLLM, `chat_template` and `tokenize` are
 * refused among the kwargs, and a template of the request's own unless the server trusts them. Each value is
 * copied once (linear in the body, which the payload limit bounds); the template is compiled later, by the
 * chat_render hook on a validation worker. */
static int parse_template_fields(const json_t *body, const ig_server_limits *lim, ig_server_req *r, char *err,
                                 size_t errlen) {
  r->add_generation_prompt = 1;
  int rc = read_bool(body, "add_generation_prompt", "add_generation_prompt", 1, &r->add_generation_prompt, err, errlen);
  if (rc <= 1) rc = read_bool(body, "continue_final_message", "continue_final_message", 1, &r->continue_final_message,
                              err, errlen);
  if (rc > 1) return rc;
  if (r->continue_final_message && r->add_generation_prompt)
    return fail(err, errlen, "Cannot set both `continue_final_message` and `add_generation_prompt` to True.");
  const json_t *docs = json_object_get(body, "documents");
  if (docs && !json_is_null(docs)) {
    if (!json_is_array(docs)) return type_err(err, errlen, "documents", docs, "a sequence");
    for (size_t i = 0; i < json_array_size(docs); i++)
      if (!json_is_object(json_array_get(docs, i))) {
        char p[48];
        snprintf(p, sizeof p, "documents[%zu]", i);
        return type_err(err, errlen, p, json_array_get(docs, i), "a map");
      }
    if (!(r->documents = json_deep_copy(docs))) return fail(err, errlen, "out of memory");
  }
  const json_t *kw = json_object_get(body, "chat_template_kwargs");
  if (kw && !json_is_null(kw)) {
    if (!json_is_object(kw)) return type_err(err, errlen, "chat_template_kwargs", kw, "a map");
    int ct = json_object_get(kw, "chat_template") != NULL, tk = json_object_get(kw, "tokenize") != NULL;
    if (ct || tk)
      return fail(err, errlen, "Found unexpected chat template kwargs from request: {%s%s%s}", ct ? "'chat_template'" : "",
                  ct && tk ? ", " : "", tk ? "'tokenize'" : "");
    if (!(r->chat_kwargs = json_deep_copy(kw))) return fail(err, errlen, "out of memory");
    json_object_del(r->chat_kwargs, "add_generation_prompt");
    json_object_del(r->chat_kwargs, "continue_final_message");
    if (r->documents) json_object_del(r->chat_kwargs, "documents");
    if (r->tools) json_object_del(r->chat_kwargs, "tools");
  }
  const json_t *tmpl = json_object_get(body, "chat_template");
  if (tmpl && !json_is_null(tmpl)) {
    if (!json_is_string(tmpl)) return type_err(err, errlen, "chat_template", tmpl, "a string");
    if (!lim->trust_request_chat_template)
      return fail(err, errlen, "Chat template is passed with request, but --trust-request-chat-template is not set. "
                               "Refused request with untrusted chat template.");
    size_t n = json_string_length(tmpl);
    if (n) { /* "": the model's (vLLM: `request.chat_template or default`) */
      if (!(r->chat_template = malloc(n + 1))) return fail(err, errlen, "out of memory");
      memcpy(r->chat_template, json_string_value(tmpl), n + 1);
      r->chat_template_len = n;
    }
  }
  return 0;
}

static int parse_chat(const json_t *body, const ig_server_limits *lim, ig_server_req *r, char *err, size_t errlen) {
  const json_t *msgs = json_object_get(body, "messages");
  if (!msgs) return fail(err, errlen, DESER "missing field `messages`");
  if (!json_is_array(msgs)) return type_err(err, errlen, "messages", msgs, "a sequence");
  r->messages = json_array();
  if (!r->messages) return fail(err, errlen, "out of memory");
  for (size_t i = 0; i < json_array_size(msgs); i++) {
    const json_t *m = json_array_get(msgs, i);
    char p[64];
    snprintf(p, sizeof p, "messages[%zu]", i);
    if (!json_is_object(m)) return type_err(err, errlen, p, m, "struct Message");
    const json_t *role = json_object_get(m, "role");
    if (!role) return fail(err, errlen, DESER "messages[%zu]: missing field `role`", i);
    if (!json_is_string(role)) {
      snprintf(p, sizeof p, "messages[%zu].role", i);
      return type_err(err, errlen, p, role, "a string");
    }
    json_t *copy = json_deep_copy(m);
    if (!copy || json_array_append_new(r->messages, copy)) return fail(err, errlen, "out of memory");
    legacy_to_tools(copy, i);
    tool_call_args_to_objects(copy);
    const json_t *c = json_object_get(m, "content");
    if (c && !json_is_null(c)) {
      json_t *flat = NULL;
      int rc = flatten_content(c, i, &flat, err, errlen);
      if (rc) return rc;
      json_object_set_new(copy, "content", flat);
    } else if (!json_object_get(copy, "tool_calls")) {
      return fail(err, errlen, DESER "messages[%zu]: missing field `content`", i);
    }
  }
  int rc = parse_openai_common(body, lim, r, err, errlen);
  if (rc) return rc;
  /* OpenAI's legacy functions / function_call: the request as tools / tool_choice (when it has no tools) */
  json_t *b2 = NULL;
  const json_t *fns = json_object_get(body, "functions");
  if (fns && !json_is_null(fns) && !json_object_get(body, "tools")) {
    if (!json_is_array(fns)) return type_err(err, errlen, "functions", fns, "a sequence");
    json_t *tools = json_array();
    if (!tools || !(b2 = json_copy((json_t *)body))) {
      json_decref(tools);
      return fail(err, errlen, "out of memory");
    }
    for (size_t k = 0; k < json_array_size(fns); k++)
      json_array_append_new(tools, json_pack("{s:s,s:O}", "type", "function", "function", json_array_get(fns, k)));
    json_object_set_new(b2, "tools", tools);
    json_object_del(b2, "tool_choice");
    const json_t *fc = json_object_get(body, "function_call");
    if (json_is_string(fc)) {
      json_object_set(b2, "tool_choice", (json_t *)fc); /* "none" | "auto" (others refused as tool_choice's) */
    } else if (json_is_object(fc)) {
      json_object_set_new(b2, "tool_choice", json_pack("{s:s,s:O}", "type", "function", "function", fc));
    } else if (fc && !json_is_null(fc)) {
      json_decref(b2);
      return type_err(err, errlen, "function_call", fc, "\"none\", \"auto\" or {\"name\": ...}");
    }
    r->legacy_functions = 1;
  }
  rc = parse_tools(b2 ? b2 : body, lim, r, err, errlen);
  json_decref(b2);
  if (!rc) rc = parse_template_fields(body, lim, r, err, errlen);
  if (rc) return rc;
  r->n_prompts = 1;
  r->prompts = calloc(1, sizeof *r->prompts);
  r->prompt_lens = calloc(1, sizeof *r->prompt_lens);
  if (!r->prompts || !r->prompt_lens) return fail(err, errlen, "out of memory");
  r->add_special = 0; /* the template writes the special tokens */
  return 0;
}

/* One prompt of token ids: prompt_ids[i] from the array v (`path` names it in refusals). 0 or 422. */
static int read_token_ids(const json_t *v, const char *path, ig_server_req *r, size_t i, char *err, size_t errlen) {
  if (!json_is_array(v)) return type_err(err, errlen, path, v, "a sequence of token ids");
  size_t n = json_array_size(v);
  if (!(r->prompt_ids[i] = malloc((n ? n : 1) * sizeof(int32_t)))) return fail(err, errlen, "out of memory");
  for (size_t k = 0; k < n; k++) {
    const json_t *x = json_array_get(v, k);
    char p[96];
    snprintf(p, sizeof p, "%s[%zu]", path, k);
    if (!json_is_integer(x)) return type_err(err, errlen, p, x, "a token id");
    if (json_integer_value(x) < 0 || json_integer_value(x) > INT32_MAX)
      return fail(err, errlen, DESER "%s: invalid value: integer `%lld`, expected a token id", p,
                  (long long)json_integer_value(x));
    r->prompt_ids[i][k] = (int32_t)json_integer_value(x);
  }
  r->n_prompt_ids[i] = (int)n;
  return 0;
}

/* OpenAI's prompt: a string, a list of strings, a list of token ids (one prompt) or a list of such lists (several,
 * as lm-evaluation-harness sends them). Token ids go to r->prompt_ids as they are (ids past the vocabulary are the
 * engine's 422); their strings are made later, by decoding them. 1 or 422. */
static int read_prompt(const json_t *body, ig_server_req *r, char *err, size_t errlen) {
  const json_t *v = json_object_get(body, "prompt"), *first = json_array_get(v, 0);
  if (!json_is_integer(first) && !json_is_array(first))
    return read_strings(body, "prompt", "prompt", 0, 1, &r->prompts, &r->n_prompts, &r->prompt_lens, err, errlen);
  int one = json_is_integer(first);
  size_t n = one ? 1 : json_array_size(v);
  r->prompts = calloc(n, sizeof *r->prompts);
  r->prompt_lens = calloc(n, sizeof *r->prompt_lens);
  r->prompt_ids = calloc(n, sizeof *r->prompt_ids);
  r->n_prompt_ids = calloc(n, sizeof *r->n_prompt_ids);
  if (!r->prompts || !r->prompt_lens || !r->prompt_ids || !r->n_prompt_ids) return fail(err, errlen, "out of memory");
  r->n_prompts = (int)n;
  for (size_t i = 0; i < n; i++) {
    char p[48];
    snprintf(p, sizeof p, one ? "prompt" : "prompt[%zu]", i);
    int rc = read_token_ids(one ? v : json_array_get(v, i), p, r, i, err, errlen);
    if (rc) return rc;
  }
  return 1;
}

static int parse_completions(const json_t *body, const ig_server_limits *lim, ig_server_req *r, char *err,
                             size_t errlen) {
  const json_t *prompt = json_object_get(body, "prompt");
  if (!prompt) return fail(err, errlen, DESER "missing field `prompt`");
  int rc = read_prompt(body, r, err, errlen);
  if (rc > 1) return rc;
  const json_t *suffix = json_object_get(body, "suffix");
  if (suffix && !json_is_null(suffix))
    return fail(err, errlen, "Suffix is not supported and can be achieved by preprocessing the prompt.");
  if (r->n_prompts > lim->max_client_batch_size) {
    snprintf(err, errlen, "Number of prompts exceeds the maximum allowed batch size of %d", lim->max_client_batch_size);
    return 422;
  }
  if (r->n_prompts == 0) return fail(err, errlen, "`inputs` cannot be empty");
  for (int i = 0; i < r->n_prompts; i++)
    if (r->prompt_ids ? !r->n_prompt_ids[i] : !r->prompt_lens[i]) return fail(err, errlen, "`inputs` cannot be empty");
  rc = parse_openai_common(body, lim, r, err, errlen);
  if (rc) return rc;
  r->add_special = 1;
  return 0;
}

/* ---- entry points ------------------------------------------------------------------------------------------ */

int ig_server_req_parse(ig_api api, const json_t *body, const ig_server_limits *lim, ig_server_req *r,
                        const char **etype, char *err, size_t errlen) {
  memset(r, 0, sizeof *r);
  params_defaults(&r->gp);
  r->api = api;
  r->best_of = 1;
  r->n_choices = 1;
  *etype = "validation";
  err[0] = 0;
  if (!json_is_object(body)) {
    char d[96];
    describe(body, d, sizeof d);
    snprintf(err, errlen, DESER "invalid type: %s, expected a map", d);
    return 422;
  }
  int rc;
  switch (api) {
  case IG_API_GENERATE:
  case IG_API_GENERATE_STREAM:
    r->stream = api == IG_API_GENERATE_STREAM;
    rc = parse_tgi(body, lim, r, err, errlen);
    break;
  case IG_API_CHAT: rc = parse_chat(body, lim, r, err, errlen); break;
  default:
    rc = parse_completions(body, lim, r, err, errlen);
    if (rc && strncmp(err, "Number of prompts", 17) == 0) *etype = "batch size exceeded";
    break;
  }
  return rc;
}

int ig_server_req_check_lengths(ig_server_req *r, int n_input, const ig_server_limits *lim, char *err,
                                size_t errlen) {
  long long max_new = r->max_new_tokens_set ? r->gp.max_new_tokens
                                            : (n_input >= lim->max_total_tokens ? 0 : lim->max_total_tokens - n_input);
  if ((long long)n_input + max_new > lim->max_total_tokens)
    return fail(err, errlen,
                "`inputs` tokens + `max_new_tokens` must be <= %d. Given: %d `inputs` tokens and %lld `max_new_tokens`",
                lim->max_total_tokens, n_input, max_new);
  if (n_input > lim->max_input_tokens)
    return fail(err, errlen, "`inputs` must have less than %d tokens. Given: %d", lim->max_input_tokens, n_input);
  r->gp.max_new_tokens = (int)max_new;
  return 0;
}

void ig_server_req_free(ig_server_req *r) {
  for (int i = 0; i < r->n_prompts; i++) free(r->prompts ? r->prompts[i] : NULL);
  free(r->prompts);
  free(r->prompt_lens);
  for (int i = 0; r->prompt_ids && i < r->n_prompts; i++) free(r->prompt_ids[i]);
  free(r->prompt_ids);
  free(r->n_prompt_ids);
  for (int i = 0; i < r->gp.n_stop; i++) free(r->gp.stop[i]);
  free(r->gp.stop);
  free(r->gp.bias_id);
  free(r->gp.stop_ids);
  ig_jschema_unref(r->gp.schema);
  grammar_clear(r);
  json_decref(r->messages);
  json_decref(r->tools);
  free(r->tool_prompt);
  json_decref(r->chat_kwargs);
  json_decref(r->documents);
  free(r->chat_template);
  free(r->model);
  memset(r, 0, sizeof *r);
}
