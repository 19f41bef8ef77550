/* model/rope: rotary inverse frequencies from config.json's rope settings, as transformers computes them
 * (modeling_rope_utils: default, linear, dynamic NTK, yarn, llama3). Every kind reduces to inv_freq[dim/2]
 * and one attention factor that scales cos and sin. */
#ifndef IG_MODEL_ROPE_H
#define IG_MODEL_ROPE_H
#include "io/config.h"

/* seq_len: the sequence's context length (only dynamic scaling uses it: above max_position_embeddings the
 * base grows with it). inv_freq has head_dim/2 entries. */
void ig_rope_inv_freq(const ig_config *c, int seq_len, float *inv_freq, float *attn_factor);
/* 1 when the frequencies for seq_len differ from those at seq_len 1 (dynamic scaling past the trained length). */
int ig_rope_depends_on_len(const ig_config *c, int seq_len);

#endif
