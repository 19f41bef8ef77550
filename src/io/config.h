/* io/config: config.json (+ generation_config.json) of Hugging Face Llama-family checkpoints, parsed into
 * one plain struct: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, with every
 * rope_scaling kind transformers defines for them (default, linear, dynamic, yarn, llama3), both the 4.x
 * keys (rope_theta + rope_scaling) and the 5.x ones (rope_parameters). Defaults follow transformers' config
 * classes. Anything else gives a one-line error naming what is wrong. */
#ifndef IG_IO_CONFIG_H
#define IG_IO_CONFIG_H
#include <stddef.h>

#define IG_CONFIG_MAX_EOS 8

typedef enum { IG_ROPE_DEFAULT = 0, IG_ROPE_LINEAR, IG_ROPE_DYNAMIC, IG_ROPE_YARN, IG_ROPE_LLAMA3 } ig_rope_kind;

typedef struct ig_rope_config {
  ig_rope_kind kind;
  double theta;                  /* rope_theta (base) */
  double factor;                 /* linear, dynamic, yarn, llama3 */
  double low_freq_factor, high_freq_factor; /* llama3 */
  int original_max_pos;          /* llama3, yarn, dynamic: original_max_position_embeddings (0: not given) */
  double beta_fast, beta_slow;   /* yarn (32, 1) */
  double mscale, mscale_all_dim; /* yarn (0: not given) */
  double attention_factor;       /* yarn (0: derive from factor) */
  int truncate;                  /* yarn (1) */
  double partial_rotary_factor;  /* 1.0 */
} ig_rope_config;

typedef struct ig_config {
  char arch[64];                 /* "LlamaForCausalLM", ... */
  char model_type[32];
  char torch_dtype[16];          /* "float32", "bfloat16", "float16" or "" */
  int vocab_size, hidden_size, intermediate_size;
  int n_layers, n_heads, n_kv_heads, head_dim;
  int max_position_embeddings;
  double rms_norm_eps;
  ig_rope_config rope;
  int tie_word_embeddings;
  int attention_bias;            /* q/k/v (and for Llama o) projections carry biases (Qwen2: always) */
  int mlp_bias;                  /* Llama's mlp_bias */
  int qk_norm;                   /* Qwen3: RMSNorm over head_dim on q and k before rotary */
  int sliding_window;            /* window size where used, 0 = none */
  unsigned char *layer_sliding;  /* [n_layers]: 1 when that layer uses the sliding window (malloc'd) */
  int bos_id;                    /* -1 when none */
  int n_eos;
  int eos_ids[IG_CONFIG_MAX_EOS];
} ig_config;

/* Parses config.json text (and generation_config.json text, or NULL). Returns 0 or -1 with err filled.
 * Free with ig_config_free. */
int ig_config_parse(const char *config_json, size_t len, const char *gen_json, size_t gen_len, ig_config *c,
                    char *err, size_t errlen);
/* Reads dir/config.json and dir/generation_config.json (optional). */
int ig_config_load(const char *dir, ig_config *c, char *err, size_t errlen);
void ig_config_free(ig_config *c);
/* "LlamaForCausalLM, MistralForCausalLM, ..." */
const char *ig_config_supported_archs(void);

#endif
