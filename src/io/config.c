/* io/config: see config.h. Reads the keys transformers' LlamaConfig, MistralConfig, Qwen2Config, Qwen3Config,
 * Phi3Config, Gemma3TextConfig and GraniteConfig read, with their defaults, and checks that the shapes they describe
 * are consistent. */
#include "io/config.h"
#include "util/file.h"
#include "util/str.h"
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *supported[] = {"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM",
                                  "Phi3ForCausalLM", "Gemma2ForCausalLM", "Gemma3ForCausalLM", "Gemma3ForConditionalGeneration",
                                  "GraniteForCausalLM", "Mistral3ForConditionalGeneration"};

const char *ig_config_supported_archs(void) {
  return "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, Phi3ForCausalLM, Gemma2ForCausalLM, "
         "Gemma3ForCausalLM, "
         "Gemma3ForConditionalGeneration (its text model), GraniteForCausalLM, Mistral3ForConditionalGeneration (its text "
         "model)";
}

void ig_config_free(ig_config *c) {
  if (!c) return;
  free(c->layer_sliding);
  c->layer_sliding = NULL;
}

/* ---------------------------------------------------------------------------------------------------- */
/* typed getters: a missing or null key gives the default; a key of the wrong type is an error */

typedef struct {
  char *err;
  size_t errlen;
  int failed;
} cfg_ctx;

static void bad(cfg_ctx *x, const char *key, const char *want) {
  if (!x->failed) snprintf(x->err, x->errlen, "config.json: '%s' must be %s", key, want);
  x->failed = 1;
}

static int get_int(cfg_ctx *x, json_t *o, const char *key, int def, int min) {
  json_t *v = json_object_get(o, key);
  if (!v || json_is_null(v)) return def;
  double d = json_is_integer(v) ? (double)json_integer_value(v) : json_is_real(v) ? json_real_value(v) : NAN;
  if (!(d == floor(d)) || d < min || d > 1e9) {
    char want[64];
    snprintf(want, sizeof want, "an integer >= %d", min);
    bad(x, key, want);
    return def;
  }
  return (int)d;
}

static double get_num(cfg_ctx *x, json_t *o, const char *key, double def) {
  json_t *v = json_object_get(o, key);
  if (!v || json_is_null(v)) return def;
  if (!json_is_number(v)) {
    bad(x, key, "a number");
    return def;
  }
  return json_number_value(v);
}

static int get_bool(cfg_ctx *x, json_t *o, const char *key, int def) {
  json_t *v = json_object_get(o, key);
  if (!v || json_is_null(v)) return def;
  if (!json_is_boolean(v)) {
    bad(x, key, "true or false");
    return def;
  }
  return json_is_true(v);
}

static int require_int(cfg_ctx *x, json_t *o, const char *key, int min) {
  json_t *v = json_object_get(o, key);
  if (!v || json_is_null(v)) {
    if (!x->failed) snprintf(x->err, x->errlen, "config.json: missing '%s'", key);
    x->failed = 1;
    return 0;
  }
  return get_int(x, o, key, 0, min);
}

/* eos_token_id: an int or a list of ints; appended to c->eos_ids without duplicates. */
static void add_eos(cfg_ctx *x, ig_config *c, json_t *v, const char *file) {
  if (!v || json_is_null(v)) return;
  size_t n = json_is_array(v) ? json_array_size(v) : 1;
  for (size_t i = 0; i < n; i++) {
    json_t *e = json_is_array(v) ? json_array_get(v, i) : v;
    if (!json_is_integer(e) || json_integer_value(e) < 0) {
      if (!x->failed) snprintf(x->err, x->errlen, "%s: 'eos_token_id' must be an integer or a list of integers", file);
      x->failed = 1;
      return;
    }
    int id = (int)json_integer_value(e), dup = 0;
    for (int k = 0; k < c->n_eos; k++) dup |= c->eos_ids[k] == id;
    if (!dup && c->n_eos < IG_CONFIG_MAX_EOS) c->eos_ids[c->n_eos++] = id;
  }
}

/* ---------------------------------------------------------------------------------------------------- */
/* rope: rope_theta + rope_scaling (transformers 4.x) or rope_parameters (5.x) */

/* longrope's short_factor / long_factor: n positive numbers, kept as float32 as transformers keeps them */
static void get_factors(cfg_ctx *x, json_t *s, const char *key, int n, float *out) {
  json_t *a = json_object_get(s, key);
  char want[96];
  snprintf(want, sizeof want, "a list of %d positive numbers (rotary dims / 2) for rope_scaling 'longrope'", n);
  if (!json_is_array(a) || (int)json_array_size(a) != n) {
    bad(x, key, want);
    return;
  }
  for (int i = 0; i < n; i++) {
    json_t *v = json_array_get(a, (size_t)i);
    double d = json_is_number(v) ? json_number_value(v) : NAN;
    if (!(d > 0) || d > 1e30) {
      bad(x, key, want);
      return;
    }
    out[i] = (float)d;
  }
}

/* Into r: rope_theta + rope_scaling (4.x) or rope_parameters (5.x) of root, or, when params is given, that object
 * alone as the rope_parameters (Gemma3's per-layer-type entries). */
static void parse_rope(cfg_ctx *x, json_t *root, ig_config *c, ig_rope_config *r, json_t *params) {
  memset(r, 0, sizeof *r);
  r->kind = IG_ROPE_DEFAULT;
  r->factor = 1.0;
  r->beta_fast = 32;
  r->beta_slow = 1;
  r->truncate = 1;
  r->partial_rotary_factor = get_num(x, root, "partial_rotary_factor", 1.0);
  double theta_default = c->gemma == 3 ? 1000000.0 : 10000.0; /* Gemma3TextConfig: 1e6 */
  r->theta = get_num(x, root, "rope_theta", theta_default);
  json_t *s = params ? NULL : json_object_get(root, "rope_scaling");
  json_t *p = params ? params : json_object_get(root, "rope_parameters");
  if (json_is_object(p)) {
    r->theta = get_num(x, p, "rope_theta", r->theta);
    r->partial_rotary_factor = get_num(x, p, "partial_rotary_factor", r->partial_rotary_factor);
    if (!s || json_is_null(s)) s = p;
  }
  /* as transformers: dim = int(head_dim * partial_rotary_factor) */
  double rd = c->head_dim * r->partial_rotary_factor;
  c->rot_dim = rd >= 2 && rd <= c->head_dim ? (int)rd : 0;
  if (!c->rot_dim || c->rot_dim % 2) {
    bad(x, "partial_rotary_factor", "a factor in (0, 1] that leaves an even number (>= 2) of rotary dims per head");
    return;
  }
  if (!s || json_is_null(s)) return;
  if (!json_is_object(s)) {
    bad(x, "rope_scaling", "an object or null");
    return;
  }
  json_t *t = json_object_get(s, "rope_type");
  if (!t) t = json_object_get(s, "type");
  const char *kind = json_is_string(t) ? json_string_value(t) : "default";
  if (!strcmp(kind, "default")) r->kind = IG_ROPE_DEFAULT;
  else if (!strcmp(kind, "linear")) r->kind = IG_ROPE_LINEAR;
  else if (!strcmp(kind, "dynamic")) r->kind = IG_ROPE_DYNAMIC;
  else if (!strcmp(kind, "yarn")) r->kind = IG_ROPE_YARN;
  else if (!strcmp(kind, "llama3")) r->kind = IG_ROPE_LLAMA3;
  else if (!strcmp(kind, "longrope") || !strcmp(kind, "su")) r->kind = IG_ROPE_LONGROPE; /* "su": its older name */
  else {
    if (!x->failed)
      snprintf(x->err, x->errlen, "config.json: unsupported rope_scaling type '%.40s' (supported: default, linear, "
               "dynamic, yarn, llama3, longrope)", kind);
    x->failed = 1;
    return;
  }
  if (r->kind == IG_ROPE_DEFAULT) return;
  if (r->kind == IG_ROPE_LONGROPE) {
    /* as transformers' _compute_longrope_parameters: a top-level original_max_position_embeddings (Phi3's) makes
     * the factor max_position_embeddings / it and is the length past which a step takes long_factor; without it,
     * the factor is rope_scaling's (1 when absent) and the length max_position_embeddings */
    r->n_factors = c->rot_dim / 2;
    if (r->n_factors > IG_ROPE_MAX_FACTORS) {
      bad(x, "head_dim", "at most 512 rotary dims for rope_scaling 'longrope'");
      return;
    }
    get_factors(x, s, "short_factor", r->n_factors, r->short_factor);
    get_factors(x, s, "long_factor", r->n_factors, r->long_factor);
    int orig = get_int(x, root, "original_max_position_embeddings", 0, 1);
    if (!orig) orig = get_int(x, s, "original_max_position_embeddings", 0, 1);
    r->factor = get_num(x, s, "factor", 1.0);
    if (orig) r->factor = (double)c->max_position_embeddings / orig;
    r->original_max_pos = orig ? orig : c->max_position_embeddings;
    r->attention_factor = get_num(x, s, "attention_factor", 0);
    if (r->attention_factor == 0)
      r->attention_factor = r->factor <= 1 ? 1.0 : sqrt(1 + log(r->factor) / log((double)r->original_max_pos));
    if (!(r->factor > 0) || !(r->attention_factor > 0)) bad(x, "rope_scaling", "a longrope factor and attention_factor > 0");
    return;
  }
  r->factor = get_num(x, s, "factor", NAN);
  if (!(r->factor > 0)) {
    if (!x->failed) snprintf(x->err, x->errlen, "config.json: rope_scaling '%s' needs a positive 'factor'", kind);
    x->failed = 1;
    return;
  }
  r->original_max_pos = get_int(x, s, "original_max_position_embeddings", 0, 1);
  if (r->kind == IG_ROPE_LLAMA3) {
    r->low_freq_factor = get_num(x, s, "low_freq_factor", NAN);
    r->high_freq_factor = get_num(x, s, "high_freq_factor", NAN);
    if (!(r->low_freq_factor > 0) || !(r->high_freq_factor > r->low_freq_factor) || r->original_max_pos <= 0) {
      if (!x->failed)
        snprintf(x->err, x->errlen, "config.json: rope_scaling 'llama3' needs low_freq_factor < high_freq_factor "
                 "and original_max_position_embeddings");
      x->failed = 1;
    }
  }
  if (r->kind == IG_ROPE_YARN) {
    r->beta_fast = get_num(x, s, "beta_fast", 32);
    r->beta_slow = get_num(x, s, "beta_slow", 1);
    r->mscale = get_num(x, s, "mscale", 0);
    r->mscale_all_dim = get_num(x, s, "mscale_all_dim", 0);
    r->attention_factor = get_num(x, s, "attention_factor", 0);
    r->truncate = get_bool(x, s, "truncate", 1);
  }
}

/* ---------------------------------------------------------------------------------------------------- */

/* quantization_config: FP8 weight formats only (each weight F8_E4M3 with a scale tensor beside it, dequantized to
 * bf16 at load); GPTQ, AWQ, bitsandbytes, ... name their method in the error */
static void parse_quant(cfg_ctx *x, ig_config *c, json_t *q) {
  if (!q || json_is_null(q)) return;
  if (!json_is_object(q)) { bad(x, "quantization_config", "an object"); return; }
  const char *m = json_string_value(json_object_get(q, "quant_method"));
  if (!m) { bad(x, "quantization_config.quant_method", "a string"); return; }
  snprintf(c->quant_method, sizeof c->quant_method, "%s", m);
  const char *why = NULL;
  if (!strcmp(m, "fp8") || !strcmp(m, "fbgemm_fp8")) {
    json_t *bs = json_object_get(q, "weight_block_size");
    if (bs && !json_is_null(bs)) {
      if (!json_is_array(bs) || json_array_size(bs) != 2) { bad(x, "quantization_config.weight_block_size", "[rows, cols]"); return; }
      for (int i = 0; i < 2; i++) {
        json_t *v = json_array_get(bs, (size_t)i);
        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 1 << 20)
          { bad(x, "quantization_config.weight_block_size", "two positive integers"); return; }
        c->quant_block[i] = (int)json_integer_value(v);
      }
    }
    /* activation_scheme (static or dynamic): the activations stay bf16 here either way */
  } else if (!strcmp(m, "compressed-tensors")) {
    const char *fmt = json_string_value(json_object_get(q, "format"));
    if (fmt && strcmp(fmt, "float-quantized") && strcmp(fmt, "naive-quantized"))
      why = "its format is not float-quantized";
    json_t *groups = json_object_get(q, "config_groups");
    const char *gk;
    json_t *g;
    if (!why && json_is_object(groups)) json_object_foreach(groups, gk, g) {
      json_t *w = json_object_get(g, "weights");
      if (!json_is_object(w)) continue;
      json_t *nb = json_object_get(w, "num_bits");
      const char *ty = json_string_value(json_object_get(w, "type"));
      if (!json_is_integer(nb) || json_integer_value(nb) != 8 || !ty || strcmp(ty, "float")) {
        why = "its weights are not 8-bit floats";
        break;
      }
      /* the scales' block: "block" strategy's block_structure [rows, cols], "group" strategy's group_size (1 row) */
      json_t *bs = json_object_get(w, "block_structure"), *gs = json_object_get(w, "group_size");
      if (json_is_array(bs) && json_array_size(bs) == 2 && json_is_integer(json_array_get(bs, 0)) &&
          json_is_integer(json_array_get(bs, 1))) {
        json_int_t a = json_integer_value(json_array_get(bs, 0)), b = json_integer_value(json_array_get(bs, 1));
        if (a < 1 || b < 1 || a > 1 << 20 || b > 1 << 20) { bad(x, "quantization_config block_structure", "two positive integers"); return; }
        c->quant_block[0] = (int)a, c->quant_block[1] = (int)b;
      } else if (json_is_integer(gs) && json_integer_value(gs) > 0) {
        json_int_t g = json_integer_value(gs);
        if (g > 1 << 20) { bad(x, "quantization_config group_size", "a positive integer"); return; }
        c->quant_block[0] = 1, c->quant_block[1] = (int)g;
      }
    }
  } else {
    why = "the method is not supported";
  }
  if (why) {
    if (!x->failed)
      snprintf(x->err, x->errlen,
               "config.json: quantization_config.quant_method '%s': %s (ignis loads float16, bfloat16 and float32 "
               "checkpoints, and FP8 ones: fp8, fbgemm_fp8, compressed-tensors with 8-bit float weights)", m, why);
    x->failed = 1;
    return;
  }
  c->quant_fp8 = 1;
}

int ig_config_parse(const char *config_json, size_t len, const char *gen_json, size_t gen_len, ig_config *c,
                    char *err, size_t errlen) {
  memset(c, 0, sizeof *c);
  cfg_ctx x = {err, errlen, 0};
  json_error_t je;
  json_t *root = json_loadb(config_json, len, 0, &je);
  if (!root || !json_is_object(root)) {
    if (root) snprintf(err, errlen, "config.json: not a JSON object");
    else snprintf(err, errlen, "config.json: invalid JSON (line %d, column %d): %s", je.line, je.column, je.text);
    json_decref(root);
    return -1;
  }
  /* architecture */
  json_t *archs = json_object_get(root, "architectures");
  const char *arch = json_string_value(json_array_get(archs, 0));
  if (!arch) {
    snprintf(err, errlen, "config.json: no 'architectures' list (supported: %s)", ig_config_supported_archs());
    json_decref(root);
    return -1;
  }
  int known = 0;
  for (size_t i = 0; i < sizeof supported / sizeof supported[0]; i++) known |= !strcmp(arch, supported[i]);
  if (!known) {
    snprintf(err, errlen, "config.json: unsupported architecture '%.60s' (supported: %s)", arch,
             ig_config_supported_archs());
    json_decref(root);
    return -1;
  }
  snprintf(c->arch, sizeof c->arch, "%s", arch);
  /* Gemma 3's (4B and up) and Mistral Small 3.1's multimodal checkpoints: their text model, described by text_config
   * (the vision tower is not loaded); eos, bos and dtype stay the outer config's */
  json_t *outer = root;
  int is_gemma3_mm = !strcmp(arch, "Gemma3ForConditionalGeneration");
  int is_mistral3_mm = !strcmp(arch, "Mistral3ForConditionalGeneration");
  if (is_gemma3_mm || is_mistral3_mm) {
    root = json_object_get(outer, "text_config");
    if (!json_is_object(root)) {
      snprintf(err, errlen, "config.json: %s without a 'text_config' object", arch);
      json_decref(outer);
      return -1;
    }
  }
  const char *mt = json_string_value(json_object_get(outer, "model_type"));
  if (!mt) mt = !strcmp(arch, "MistralForCausalLM") ? "mistral"
               : !strcmp(arch, "Qwen2ForCausalLM") ? "qwen2"
               : !strcmp(arch, "Qwen3ForCausalLM") ? "qwen3"
               : !strcmp(arch, "Phi3ForCausalLM") ? "phi3"
               : !strcmp(arch, "Gemma2ForCausalLM") ? "gemma2"
               : !strcmp(arch, "Gemma3ForCausalLM") ? "gemma3_text" : is_gemma3_mm ? "gemma3"
               : !strcmp(arch, "GraniteForCausalLM") ? "granite" : is_mistral3_mm ? "mistral3" : "llama";
  snprintf(c->model_type, sizeof c->model_type, "%s", mt);
  int is_mistral = !strcmp(arch, "MistralForCausalLM") || is_mistral3_mm, is_qwen2 = !strcmp(arch, "Qwen2ForCausalLM"),
      is_qwen3 = !strcmp(arch, "Qwen3ForCausalLM"), is_phi3 = !strcmp(arch, "Phi3ForCausalLM"),
      is_gemma3 = !strcmp(arch, "Gemma3ForCausalLM") || is_gemma3_mm, is_gemma2 = !strcmp(arch, "Gemma2ForCausalLM");
  int is_gemma = is_gemma2 || is_gemma3;
  const char *dt = json_string_value(json_object_get(outer, "torch_dtype"));
  if (!dt) dt = json_string_value(json_object_get(outer, "dtype"));
  if (!dt) dt = json_string_value(json_object_get(root, "torch_dtype"));
  snprintf(c->torch_dtype, sizeof c->torch_dtype, "%s", dt ? dt : "");

  /* shapes */
  if (is_gemma) { /* Gemma2Config's and Gemma3TextConfig's defaults (a multimodal checkpoint's text_config names only
                   * what differs); they differ in the vocabulary only */
    c->vocab_size = get_int(&x, root, "vocab_size", is_gemma2 ? 256000 : 262208, 1);
    c->hidden_size = get_int(&x, root, "hidden_size", 2304, 1);
    c->intermediate_size = get_int(&x, root, "intermediate_size", 9216, 1);
    c->n_layers = get_int(&x, root, "num_hidden_layers", 26, 1);
    c->n_heads = get_int(&x, root, "num_attention_heads", 8, 1);
    c->n_kv_heads = get_int(&x, root, "num_key_value_heads", 4, 1);
    c->head_dim = get_int(&x, root, "head_dim", 256, 1);
  } else {
    c->vocab_size = require_int(&x, root, "vocab_size", 1);
    c->hidden_size = require_int(&x, root, "hidden_size", 1);
    c->intermediate_size = require_int(&x, root, "intermediate_size", 1);
    c->n_layers = require_int(&x, root, "num_hidden_layers", 1);
    c->n_heads = require_int(&x, root, "num_attention_heads", 1);
    c->n_kv_heads = get_int(&x, root, "num_key_value_heads", c->n_heads, 1);
    int hd_default = c->n_heads > 0 ? c->hidden_size / c->n_heads : 0;
    c->head_dim = get_int(&x, root, "head_dim", hd_default, 1);
  }
  c->max_position_embeddings = get_int(&x, root, "max_position_embeddings",
                                       is_mistral || is_gemma3 ? 131072 : is_qwen2 || is_qwen3 ? 32768 : is_phi3 ? 4096
                                       : is_gemma2 ? 8192 : 2048, 1);
  c->rms_norm_eps = get_num(&x, root, "rms_norm_eps", 1e-6);
  /* a multimodal checkpoint's own tie_word_embeddings decides whether lm_head is the embedding (as transformers ties) */
  c->tie_word_embeddings = get_bool(&x, outer != root && json_object_get(outer, "tie_word_embeddings") ? outer : root,
                                    "tie_word_embeddings", is_gemma);
  /* Phi3's projections never carry biases */
  /* biases exactly where transformers' modules create them: q/k/v with attention_bias (Qwen2: always; Mistral and
   * Phi3: never), o_proj with it too except for Qwen2, the MLP with mlp_bias for Llama and Granite only */
  c->attention_bias = is_qwen2 ? 1 : is_phi3 || is_mistral ? 0 : get_bool(&x, root, "attention_bias", 0);
  c->o_bias = c->attention_bias && !is_qwen2;
  int mlp_keyed = !strcmp(arch, "LlamaForCausalLM") || !strcmp(arch, "GraniteForCausalLM");
  c->mlp_bias = mlp_keyed ? get_bool(&x, root, "mlp_bias", 0) : 0;
  c->qk_norm = is_qwen3 || is_gemma3;
  c->fused_qkv_gate_up = is_phi3;
  c->longrope_recompute = is_phi3;
  c->gemma = is_gemma2 ? 2 : is_gemma3 ? 3 : 0;
  const char *act = json_string_value(json_object_get(root, is_gemma ? "hidden_activation" : "hidden_act"));
  if (is_gemma && !act) act = json_string_value(json_object_get(root, "hidden_act"));
  if (!x.failed && act && (is_gemma ? strcmp(act, "gelu_pytorch_tanh") && strcmp(act, "gelu_tanh") : strcmp(act, "silu") != 0)) {
    snprintf(err, errlen, "config.json: unsupported hidden activation '%.30s' (%s)", act,
             is_gemma ? "Gemma: only gelu_pytorch_tanh" : "only silu");
    x.failed = 1;
  }
  c->embed_mult = c->resid_mult = c->logits_scaling = 1.0;
  if (!strcmp(arch, "GraniteForCausalLM")) {
    const char *keys[4] = {"embedding_multiplier", "residual_multiplier", "logits_scaling", "attention_multiplier"};
    double *dst[4] = {&c->embed_mult, &c->resid_mult, &c->logits_scaling, &c->attn_scale};
    for (int i = 0; i < 4 && !x.failed; i++) {
      *dst[i] = get_num(&x, root, keys[i], 1.0);
      if (!(*dst[i] > 0) || *dst[i] > 1e6) bad(&x, keys[i], "a positive number");
    }
  }
  if (is_gemma) {
    double qs = get_num(&x, root, "query_pre_attn_scalar", 256);
    if (!(qs > 0)) bad(&x, "query_pre_attn_scalar", "a positive number");
    c->attn_scale = qs > 0 ? pow(qs, -0.5) : 0;
    /* Gemma2: tanh softcapping of the attention scores and of the logits (Gemma2Config: 50 and 30 when not given,
     * off when null); Gemma3 has neither */
    const char *caps[] = {"final_logit_softcapping", "attn_logit_softcapping"};
    double *dst[2] = {&c->final_softcap, &c->attn_softcap}, defaults[2] = {30.0, 50.0};
    for (int i = 0; i < 2 && !x.failed; i++) {
      json_t *v = json_object_get(root, caps[i]);
      if (is_gemma3 && v && !json_is_null(v)) {
        snprintf(err, errlen, "config.json: %s is not supported (Gemma3 leaves it null)", caps[i]);
        x.failed = 1;
      } else if (is_gemma2 && (!v || !json_is_null(v))) {
        *dst[i] = get_num(&x, root, caps[i], defaults[i]);
        if (!x.failed && !(*dst[i] > 0 && *dst[i] < 1e6)) bad(&x, caps[i], "a positive number or null");
      }
    }
  }
  if (!x.failed && (c->n_heads % c->n_kv_heads)) {
    snprintf(err, errlen, "config.json: num_attention_heads (%d) is not a multiple of num_key_value_heads (%d)",
             c->n_heads, c->n_kv_heads);
    x.failed = 1;
  }
  if (!x.failed && !json_object_get(root, "head_dim") && c->hidden_size % c->n_heads) {
    snprintf(err, errlen, "config.json: hidden_size (%d) is not a multiple of num_attention_heads (%d)",
             c->hidden_size, c->n_heads);
    x.failed = 1;
  }
  if (!x.failed && (c->head_dim % 2)) {
    snprintf(err, errlen, "config.json: head_dim (%d) must be even for rotary embeddings", c->head_dim);
    x.failed = 1;
  }
  if (!x.failed && !(c->rms_norm_eps > 0)) {
    snprintf(err, errlen, "config.json: rms_norm_eps must be positive");
    x.failed = 1;
  }
  if (!x.failed && is_gemma3) {
    /* 5.x: rope_parameters {"full_attention": {...}, "sliding_attention": {...}}; 4.x: rope_theta + rope_scaling for
     * the full-attention layers, rope_local_base_freq (10000) for the sliding ones */
    json_t *p = json_object_get(root, "rope_parameters");
    json_t *pf = json_is_object(p) ? json_object_get(p, "full_attention") : NULL;
    json_t *ps = json_is_object(p) ? json_object_get(p, "sliding_attention") : NULL;
    parse_rope(&x, root, c, &c->rope, json_is_object(pf) ? pf : NULL);
    if (!x.failed && json_is_object(ps)) {
      parse_rope(&x, root, c, &c->rope_local, ps);
    } else if (!x.failed) {
      c->rope_local = c->rope;
      c->rope_local.kind = IG_ROPE_DEFAULT;
      c->rope_local.factor = 1.0;
      c->rope_local.theta = get_num(&x, root, "rope_local_base_freq", 10000.0);
    }
    int k = c->rope_local.kind;
    if (!x.failed && (k == IG_ROPE_DYNAMIC || k == IG_ROPE_LONGROPE || c->rope.kind == IG_ROPE_DYNAMIC ||
                      c->rope.kind == IG_ROPE_LONGROPE)) {
      snprintf(err, errlen, "config.json: Gemma3 with dynamic or longrope rope scaling is not supported");
      x.failed = 1;
    }
  } else if (!x.failed) {
    parse_rope(&x, root, c, &c->rope, NULL);
  }
  if (!x.failed && c->rope.partial_rotary_factor != 1.0 && !is_phi3) {
    /* transformers applies it for Phi3 only among these (Llama's attention would fail on it) */
    snprintf(err, errlen, "config.json: partial_rotary_factor != 1 is supported for Phi3ForCausalLM only");
    x.failed = 1;
  }

  /* sliding window: Mistral and Phi3 on every layer; Gemma2 on every other (even) layer; Gemma3 on all but every
   * 6th; Qwen2/Qwen3 only with use_sliding_window, on the layers layer_types (or max_window_layers) marks; an explicit
   * layer_types list wins for any architecture. */
  if (!x.failed) {
    c->layer_sliding = calloc((size_t)c->n_layers, 1);
    if (!c->layer_sliding) {
      snprintf(err, errlen, "out of memory");
      x.failed = 1;
    }
  }
  if (!x.failed) {
    int win = get_int(&x, root, "sliding_window", is_gemma ? 4096 : 0, 0);
    json_t *lt = json_object_get(root, "layer_types");
    int use = 0;
    if (json_is_array(lt)) {
      if ((int)json_array_size(lt) != c->n_layers) bad(&x, "layer_types", "a list of num_hidden_layers strings");
      for (int i = 0; i < c->n_layers && !x.failed; i++) {
        const char *s = json_string_value(json_array_get(lt, (size_t)i));
        c->layer_sliding[i] = s && !strcmp(s, "sliding_attention");
        use |= c->layer_sliding[i];
      }
    } else if (is_mistral || is_phi3) {
      use = win > 0;
      memset(c->layer_sliding, use, (size_t)c->n_layers);
    } else if (is_gemma2) {
      /* Gemma2Config: layer i slides when (i + 1) % 2, i.e. the even layers */
      for (int i = 0; i < c->n_layers; i++) use |= c->layer_sliding[i] = (i + 1) % 2 != 0;
    } else if (is_gemma3) {
      /* 4.x: every sliding_window_pattern-th layer (6) attends globally, the others within the window */
      int pat = get_int(&x, root, "sliding_window_pattern", 6, 1);
      for (int i = 0; i < c->n_layers; i++) use |= c->layer_sliding[i] = (i + 1) % pat != 0;
    } else if (is_qwen2 || is_qwen3) {
      if (get_bool(&x, root, "use_sliding_window", 0)) {
        int mwl = get_int(&x, root, "max_window_layers", 28, 0);
        for (int i = 0; i < c->n_layers; i++) c->layer_sliding[i] = i >= mwl;
        use = mwl < c->n_layers;
      }
    }
    if (use && win <= 0) {
      if (!x.failed) snprintf(err, errlen, "config.json: sliding attention layers but no positive 'sliding_window'");
      x.failed = 1;
    }
    c->sliding_window = use ? win : 0;
    if (!use) memset(c->layer_sliding, 0, (size_t)c->n_layers);
  }

  if (!x.failed) parse_quant(&x, c, json_object_get(outer, "quantization_config"));

  /* special ids: generation_config.json's eos list first, then config.json's */
  c->bos_id = -1;
  json_t *groot = NULL;
  if (!x.failed && gen_json) {
    groot = json_loadb(gen_json, gen_len, 0, &je);
    if (!json_is_object(groot)) {
      snprintf(err, errlen, "generation_config.json: invalid JSON (line %d, column %d): %s", je.line, je.column,
               je.text);
      x.failed = 1;
    } else {
      add_eos(&x, c, json_object_get(groot, "eos_token_id"), "generation_config.json");
      json_t *b = json_object_get(groot, "bos_token_id");
      if (json_is_integer(b)) c->bos_id = (int)json_integer_value(b);
    }
  }
  if (!x.failed) {
    add_eos(&x, c, json_object_get(outer, "eos_token_id"), "config.json");
    if (outer != root) add_eos(&x, c, json_object_get(root, "eos_token_id"), "config.json");
    json_t *b = json_object_get(outer, "bos_token_id");
    if (!json_is_integer(b)) b = json_object_get(root, "bos_token_id");
    if (c->bos_id < 0 && json_is_integer(b)) c->bos_id = (int)json_integer_value(b);
  }
  json_decref(groot);
  json_decref(outer);
  if (x.failed) {
    ig_str_oneline(err); /* values quoted from the file (a quant_method with a "\n") stay on one line */
    ig_config_free(c);
    return -1;
  }
  return 0;
}

/* TGI's ROPE_SCALING / ROPE_FACTOR (its launcher's --rope-scaling / --rope-factor): the checkpoint's rope scaling
 * replaced by {type, factor}, as TGI's server does; the type alone means factor 1, the factor alone linear. */
static int rope_from_env(ig_config *c, char *err, size_t errlen) {
  const char *t = getenv("ROPE_SCALING"), *f = getenv("ROPE_FACTOR");
  if (t && !*t) t = NULL;
  if (f && !*f) f = NULL;
  if (!t && !f) return 0;
  ig_rope_kind kind = IG_ROPE_LINEAR;
  if (t && !strcmp(t, "dynamic")) kind = IG_ROPE_DYNAMIC;
  else if (t && strcmp(t, "linear")) {
    snprintf(err, errlen, "ROPE_SCALING (--rope-scaling) '%.40s': expected linear or dynamic", t);
    return -1;
  }
  double factor = 1.0;
  if (f) {
    char *end;
    factor = strtod(f, &end);
    if (end == f || *end || !(factor > 0) || factor > 1e6) {
      snprintf(err, errlen, "ROPE_FACTOR (--rope-factor) '%.40s': expected a positive number", f);
      return -1;
    }
  }
  double theta = c->rope.theta, partial = c->rope.partial_rotary_factor;
  memset(&c->rope, 0, sizeof c->rope);
  c->rope.kind = kind, c->rope.factor = factor, c->rope.theta = theta, c->rope.partial_rotary_factor = partial;
  c->rope.beta_fast = 32, c->rope.beta_slow = 1, c->rope.truncate = 1; /* the parser's defaults */
  return 0;
}

int ig_config_load(const char *dir, ig_config *c, char *err, size_t errlen) {
  char path[4096], e2[512];
  char *txt = NULL, *gtxt = NULL;
  size_t len = 0, glen = 0;
  memset(c, 0, sizeof *c);
  snprintf(path, sizeof path, "%s/config.json", dir);
  if (ig_file_read(path, 16u << 20, &txt, &len, e2, sizeof e2)) {
    snprintf(err, errlen, "%s", e2);
    return -1;
  }
  snprintf(path, sizeof path, "%s/generation_config.json", dir);
  if (ig_file_exists(path) && ig_file_read(path, 16u << 20, &gtxt, &glen, e2, sizeof e2)) {
    snprintf(err, errlen, "%s", e2);
    free(txt);
    return -1;
  }
  int rc = ig_config_parse(txt, len, gtxt, glen, c, err, errlen);
  free(txt);
  free(gtxt);
  if (rc == 0 && rope_from_env(c, err, errlen)) {
    ig_config_free(c);
    return -1;
  }
  return rc;
}
