/* io/config: config.json (+ generation_config.json) of Hugging Face Llama-family checkpoints, parsed into
 * one plain struct: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, Phi3ForCausalLM
 * (Phi-3, Phi-3.5, Phi-4, Phi-4-mini), Gemma2ForCausalLM, Gemma3ForCausalLM, GraniteForCausalLM, and the text models of
 * Gemma3ForConditionalGeneration and Mistral3ForConditionalGeneration (their text_config), with every rope_scaling
 * kind transformers defines for them (default, linear, dynamic, yarn, llama3, longrope), both the 4.x keys
 * (rope_theta + rope_scaling) and the 5.x ones (rope_parameters). Defaults follow transformers' config classes.
 * Anything else gives a one-line error naming what is wrong. */
#ifndef IG_IO_CONFIG_H
#define IG_IO_CONFIG_H
#include <stddef.h>

#define IG_CONFIG_MAX_EOS 8

typedef enum { IG_ROPE_DEFAULT = 0, IG_ROPE_LINEAR, IG_ROPE_DYNAMIC, IG_ROPE_YARN, IG_ROPE_LLAMA3, IG_ROPE_LONGROPE } ig_rope_kind;

#define IG_ROPE_MAX_FACTORS 256 /* longrope: rot_dim / 2 entries at most */

typedef struct ig_rope_config {
  ig_rope_kind kind;
  double theta;                  /* rope_theta (base) */
  double factor;                 /* linear, dynamic, yarn, llama3 */
  double low_freq_factor, high_freq_factor; /* llama3 */
  int original_max_pos;          /* llama3, yarn, dynamic: original_max_position_embeddings (0: not given); longrope:
                                  * the length past which a step takes long_factor (always set) */
  double beta_fast, beta_slow;   /* yarn (32, 1) */
  double mscale, mscale_all_dim; /* yarn (0: not given) */
  double attention_factor;       /* yarn (0: derive from factor); longrope (derived when not given) */
  int truncate;                  /* yarn (1) */
  double partial_rotary_factor;  /* 1.0 (Phi3 only may set less: the first rot_dim dims of a head rotate) */
  int n_factors;                 /* longrope: entries of short_factor and long_factor (rot_dim / 2) */
  float short_factor[IG_ROPE_MAX_FACTORS], long_factor[IG_ROPE_MAX_FACTORS]; /* longrope (float32, as transformers) */
} ig_rope_config;

typedef struct ig_config {
  char arch[64];                 /* "LlamaForCausalLM", ... */
  char model_type[32];
  char torch_dtype[16];          /* "float32", "bfloat16", "float16" or "" */
  int vocab_size, hidden_size, intermediate_size;
  int n_layers, n_heads, n_kv_heads, head_dim;
  int rot_dim;                   /* rotated dims of each head: int(head_dim * partial_rotary_factor), even */
  int max_position_embeddings;
  double rms_norm_eps;
  ig_rope_config rope;
  int tie_word_embeddings;
  int attention_bias;            /* q/k/v projections carry biases (Qwen2: always; Mistral, Phi3: never) */
  int o_bias;                    /* o_proj carries one (attention_bias, except Qwen2's) */
  int mlp_bias;                  /* Llama's and Granite's mlp_bias (0 for the others) */
  int qk_norm;                   /* Qwen3: RMSNorm over head_dim on q and k before rotary */
  int fused_qkv_gate_up;         /* Phi3: self_attn.qkv_proj and mlp.gate_up_proj hold q|k|v and gate|up by rows */
  int longrope_recompute;        /* Phi3: past original_max_pos its generate drops the cache, recomputing every key
                                  * with the long factors (other longrope models keep the keys they have) */
  /* Gemma2 and Gemma3 (gemma = 2 or 3, 0 elsewhere): RMSNorm weights applied as (1 + w), the embedding scaled by
   * sqrt(hidden_size), norms after attention and after the MLP too (pre/post_feedforward_layernorm), the MLP's gate
   * through tanh-approximated GELU, the attention scaled by query_pre_attn_scalar^-0.5. Gemma3 adds q/k norms
   * (qk_norm) and rope_local (rope_local_base_freq) on its sliding-window layers; Gemma2 has one rope and the tanh
   * softcaps below */
  int gemma;
  double attn_scale;             /* 0: head_dim^-0.5 */
  double attn_softcap;           /* Gemma2's attn_logit_softcapping: scores s -> cap * tanh(s / cap); 0 = none */
  double final_softcap;          /* Gemma2's final_logit_softcapping, on the logits; 0 = none */
  /* Granite: the embedding times embedding_multiplier, each sublayer's output times residual_multiplier before its
   * residual add, the logits divided by logits_scaling (all 1 elsewhere); attention_multiplier is attn_scale */
  double embed_mult, resid_mult, logits_scaling;
  ig_rope_config rope_local;     /* Gemma3: the sliding layers' rotary settings (rope is the full-attention layers') */
  int sliding_window;            /* window size where used, 0 = none */
  unsigned char *layer_sliding;  /* [n_layers]: 1 when that layer uses the sliding window (malloc'd) */
  /* quantization_config: FP8 checkpoints (quant_method "fp8", "fbgemm_fp8", or "compressed-tensors" with 8-bit
   * float weights), whose F8_E4M3 weights and their weight_scale / weight_scale_inv tensors the loader dequantizes to
   * bf16; any other method is refused here */
  int quant_fp8;                 /* 1: such a checkpoint */
  char quant_method[32];         /* as config.json names it ("" when none) */
  int quant_block[2];            /* fp8's weight_block_size (rows, cols) of block-wise scales; 0 when not given */
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
