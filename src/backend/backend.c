/* backend/backend.c: helpers shared by all backends (dtype names and sizes). */
#include "backend/backend.h"
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
