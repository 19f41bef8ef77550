/* backend/backend.c: helpers shared by all backends (dtype names and sizes). */
#include "backend/backend.h"
#include <math.h>
#include <string.h>

size_t ig_dtype_size(ig_dtype t) {
  switch (t) {
  case IG_DT_F32: return 4;
  case IG_DT_F16: return 2;
  case IG_DT_BF16: return 2;
  case IG_DT_I32: return 4;
  }
  return 0;
}

const char *ig_dtype_name(ig_dtype t) {
  switch (t) {
  case IG_DT_F32: return "F32";
  case IG_DT_F16: return "F16";
  case IG_DT_BF16: return "BF16";
  case IG_DT_I32: return "I32";
  }
  return "?";
}

int ig_kv_scales_bad(const ig_kv_config *c) {
  for (int l = 0; l < c->n_layers && (c->k_scale || c->v_scale); l++) {
    float ks = c->k_scale ? c->k_scale[l] : 1.f, vs = c->v_scale ? c->v_scale[l] : 1.f;
    if (!(ks > 0.f && isfinite(ks)) || !(vs > 0.f && isfinite(vs))) return l;
  }
  return -1;
}

int ig_fp8_scales_cover(int64_t n_scales, int64_t srow0, int64_t rows, int64_t cols, int64_t br, int64_t bc, int64_t sc) {
  return rows >= 0 && cols >= 1 && br >= 1 && bc >= 1 && sc >= 1 && srow0 >= 0 && n_scales >= 1 &&
         ((srow0 + (rows > 0 ? rows : 1) - 1) / br) * sc + (cols - 1) / bc < n_scales;
}

int ig_kv_dtype_parse(const char *name) {
  if (name && !strcmp(name, "fp8_e4m3fn")) return IG_KV_FP8_E4M3;
  if (name && !strcmp(name, "fp8_e5m2")) return IG_KV_FP8_E5M2;
  return -1;
}

const char *ig_kv_dtype_name(int kv_dtype) {
  switch (kv_dtype) {
  case IG_KV_AUTO: return "auto";
  case IG_KV_FP8_E4M3: return "fp8_e4m3fn";
  case IG_KV_FP8_E5M2: return "fp8_e5m2";
  }
  return "?";
}
