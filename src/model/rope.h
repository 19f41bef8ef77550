/* model/rope: rotary inverse frequencies from config.json's rope settings, as transformers computes them
 * (modeling_rope_utils: default, linear, dynamic NTK, yarn, llama3, longrope). Every kind reduces to
 * inv_freq[rot_dim/2] and one attention factor that scales cos and sin. */
#ifndef IG_MODEL_ROPE_H
#define IG_MODEL_ROPE_H
#include "io/config.h"

/* seq_len: the step's context length for the sequence (dynamic scaling: above max_position_embeddings the base
 * grows with it; longrope: above original_max_position_embeddings the long factors replace the short ones, as
 * transformers switches per forward). inv_freq has rot_dim/2 entries. */
void ig_rope_inv_freq(const ig_config *c, int seq_len, float *inv_freq, float *attn_factor);
/* The same for settings r of c (Gemma3's rope_local). */
void ig_rope_inv_freq_with(const ig_config *c, const ig_rope_config *r, int seq_len, float *inv_freq, float *attn_factor);
/* Which frequencies seq_len takes: 0 those of seq_len 1, else a key that is equal exactly when the frequencies are
 * (dynamic scaling past the trained length: seq_len itself; longrope past its original length: 1). */
int ig_rope_len_key(const ig_config *c, int seq_len);

#endif
