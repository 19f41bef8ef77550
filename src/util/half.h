/* util/half: bf16 and IEEE f16 bit patterns to float, exactly (both are subsets of f32), and f32 to bf16. Shared by the CPU
 * backend's kernels and by the model loader where it transforms weights on the host (Gemma's 1 + w norms). */
#ifndef IG_UTIL_HALF_H
#define IG_UTIL_HALF_H
#include <stdint.h>

static inline float ig_bf16_to_f32(uint16_t h) {
  union { uint32_t u; float f; } v = {(uint32_t)h << 16};
  return v.f;
}

/* f32 to bf16, rounded to nearest even (NaN kept a quiet NaN), as torch's .to(torch.bfloat16) */
static inline uint16_t ig_f32_to_bf16(float f) {
  union { float f; uint32_t u; } v = {f};
  if ((v.u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((v.u >> 16) | 0x40);
  return (uint16_t)((v.u + 0x7fffu + ((v.u >> 16) & 1)) >> 16);
}

static inline float ig_f16_to_f32(uint16_t h) {
  uint32_t s = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 31, m = h & 1023, u;
  if (e == 0) {
    if (m == 0) {
      u = s;
    } else { /* subnormal: renormalise */
      e = 127 - 15 + 1;
      while (!(m & 1024)) {
        m <<= 1;
        e--;
      }
      u = s | (e << 23) | ((m & 1023) << 13);
    }
  } else if (e == 31) {
    u = s | 0x7f800000u | (m << 13);
  } else {
    u = s | ((e + 127 - 15) << 23) | (m << 13);
  }
  union { uint32_t u; float f; } v = {u};
  return v.f;
}

#endif
