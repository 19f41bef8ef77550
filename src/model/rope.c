/* model/rope: see rope.h. Follows transformers' float32 arithmetic where it matters (the base powers and the
 * per-frequency products are float32 there); python-scalar parts are computed in double as Python does. */
#include "model/rope.h"
#include <math.h>

static void default_freq(double base, int dim, float *inv) {
  for (int i = 0; i < dim / 2; i++) inv[i] = 1.0f / powf((float)base, (float)(2 * i) / (float)dim);
}

static double yarn_get_mscale(double scale, double mscale) {
  return scale <= 1 ? 1.0 : 0.1 * mscale * log(scale) + 1.0;
}

static double yarn_correction_dim(double rot, int dim, double base, double max_pos) {
  return (dim * log(max_pos / (rot * 2 * M_PI))) / (2 * log(base));
}

int ig_rope_len_key(const ig_config *c, int seq_len) {
  if (c->rope.kind == IG_ROPE_DYNAMIC && seq_len > c->max_position_embeddings) return seq_len;
  if (c->rope.kind == IG_ROPE_LONGROPE && seq_len > c->rope.original_max_pos) return 1;
  return 0;
}

void ig_rope_inv_freq(const ig_config *c, int seq_len, float *inv, float *attn_factor) {
  ig_rope_inv_freq_with(c, &c->rope, seq_len, inv, attn_factor);
}

void ig_rope_inv_freq_with(const ig_config *c, const ig_rope_config *r, int seq_len, float *inv, float *attn_factor) {
  int dim = c->rot_dim, half = dim / 2; /* transformers: int(head_dim * partial_rotary_factor) */
  *attn_factor = 1.0f;
  switch (r->kind) {
  case IG_ROPE_DEFAULT:
    default_freq(r->theta, dim, inv);
    break;
  case IG_ROPE_LINEAR:
    default_freq(r->theta, dim, inv);
    for (int i = 0; i < half; i++) inv[i] /= (float)r->factor;
    break;
  case IG_ROPE_DYNAMIC: {
    /* NTK-aware: past the trained length the base grows so the longest wavelength covers seq_len */
    double base = r->theta, maxp = c->max_position_embeddings;
    if (seq_len > maxp) base = base * pow(r->factor * seq_len / maxp - (r->factor - 1), (double)dim / (dim - 2));
    default_freq(base, dim, inv);
    break;
  }
  case IG_ROPE_LLAMA3: {
    default_freq(r->theta, dim, inv);
    double old_ctx = r->original_max_pos, lo_wl = old_ctx / r->low_freq_factor, hi_wl = old_ctx / r->high_freq_factor;
    for (int i = 0; i < half; i++) {
      float f = inv[i], wavelen = (float)(2 * M_PI) / f;
      if (wavelen < hi_wl) continue;                 /* high frequency: kept */
      if (wavelen > lo_wl) {                         /* low frequency: scaled down */
        inv[i] = f / (float)r->factor;
      } else {                                       /* in between: smooth interpolation */
        float smooth = (float)((old_ctx / wavelen - r->low_freq_factor) / (r->high_freq_factor - r->low_freq_factor));
        inv[i] = (1 - smooth) * f / (float)r->factor + smooth * f;
      }
    }
    break;
  }
  case IG_ROPE_LONGROPE: {
    /* inv_freq = 1 / (ext * base ** (arange(0, dim, 2) / dim)) in float32, ext the long factors once the step's
     * length passes original_max_position_embeddings, else the short ones; cos and sin times attention_factor */
    const float *ext = seq_len > r->original_max_pos ? r->long_factor : r->short_factor;
    for (int i = 0; i < half; i++) inv[i] = 1.0f / (ext[i] * powf((float)r->theta, (float)(2 * i) / (float)dim));
    *attn_factor = (float)r->attention_factor;
    break;
  }
  case IG_ROPE_YARN: {
    double factor = r->factor, orig = c->max_position_embeddings;
    if (r->original_max_pos > 0) { /* as transformers: the factor is the ratio of the two lengths */
      orig = r->original_max_pos;
      factor = (double)c->max_position_embeddings / orig;
    }
    double af = r->attention_factor;
    if (af <= 0) af = r->mscale > 0 && r->mscale_all_dim > 0
                          ? yarn_get_mscale(factor, r->mscale) / yarn_get_mscale(factor, r->mscale_all_dim)
                          : yarn_get_mscale(factor, 1.0);
    double lo = yarn_correction_dim(r->beta_fast, dim, r->theta, orig),
           hi = yarn_correction_dim(r->beta_slow, dim, r->theta, orig);
    if (r->truncate) {
      lo = floor(lo);
      hi = ceil(hi);
    }
    if (lo < 0) lo = 0;
    if (hi > dim - 1) hi = dim - 1;
    if (lo == hi) hi += 0.001;
    for (int i = 0; i < half; i++) {
      float pos_freq = powf((float)r->theta, (float)(2 * i) / (float)dim);
      float extra = 1.0f / pos_freq, inter = 1.0f / ((float)factor * pos_freq);
      float ramp = (float)((i - lo) / (hi - lo));
      ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
      float extra_factor = 1 - ramp;
      inv[i] = inter * (1 - extra_factor) + extra * extra_factor;
    }
    *attn_factor = (float)af;
    break;
  }
  }
}
