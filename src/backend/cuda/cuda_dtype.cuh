/* backend/cuda/cuda_dtype.cuh: element loads and stores by run-time dtype (f32, f16, bf16), used by the
 * memory-bound kernels where one uniform branch per element costs nothing next to the memory traffic. */
#ifndef IG_CUDA_DTYPE_CUH
#define IG_CUDA_DTYPE_CUH
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <stdint.h>

/* The KV cache's FP8 formats (IG_CU_DT_E4M3 / IG_CU_DT_E5M2, cuda_common.h): stores round to nearest even and
 * saturate (cvt.rn.satfinite), as src/backend/fp8.h does on the host. */
__device__ __forceinline__ float fp8_to_f(uint8_t c, int dt) {
  return __half2float(__half(__nv_cvt_fp8_to_halfraw((__nv_fp8_storage_t)c, dt == IG_CU_DT_E4M3 ? __NV_E4M3 : __NV_E5M2)));
}
__device__ __forceinline__ uint8_t f_to_fp8(float v, int dt) {
  return (uint8_t)__nv_cvt_float_to_fp8(v, __NV_SATFINITE, dt == IG_CU_DT_E4M3 ? __NV_E4M3 : __NV_E5M2);
}
/* KF: 1 e4m3, 2 e5m2. Two fp8 values (first in the low byte) as f16x2 (first in the low half): exact, every value of
 * both formats is an f16. */
template <int KF> __device__ __forceinline__ uint32_t fp8x2_to_f16x2(uint32_t v) {
  __half2_raw h = __nv_cvt_fp8x2_to_halfraw2((__nv_fp8x2_storage_t)(v & 0xffffu), KF == 1 ? __NV_E4M3 : __NV_E5M2);
  return (uint32_t)h.x | ((uint32_t)h.y << 16);
}
/* fp8 values 0 and 1 (sel 0x1404) or 2 and 3 (sel 0x3424) of w as f16x2: an e5m2 value is the high byte of the f16
 * of the same value, so one byte permute places it (the conversion instruction's result, for less issue) */
template <int KF> __device__ __forceinline__ uint32_t fp8x2_pick_f16x2(uint32_t w, int hi_pair) {
  if constexpr (KF == 2) return __byte_perm(w, 0, hi_pair ? 0x3424 : 0x1404);
  else return fp8x2_to_f16x2<KF>(hi_pair ? w >> 16 : w);
}
/* 16 fp8 values -> 16 f16 (lo: the first 8) */
template <int KF> __device__ __forceinline__ void fp8x16_to_f16(uint4 in, uint4 &lo, uint4 &hi) {
  lo.x = fp8x2_pick_f16x2<KF>(in.x, 0), lo.y = fp8x2_pick_f16x2<KF>(in.x, 1);
  lo.z = fp8x2_pick_f16x2<KF>(in.y, 0), lo.w = fp8x2_pick_f16x2<KF>(in.y, 1);
  hi.x = fp8x2_pick_f16x2<KF>(in.z, 0), hi.y = fp8x2_pick_f16x2<KF>(in.z, 1);
  hi.z = fp8x2_pick_f16x2<KF>(in.w, 0), hi.w = fp8x2_pick_f16x2<KF>(in.w, 1);
}
/* 8 floats -> 8 fp8 values (uint2, the first in the lowest byte) */
template <int KF> __device__ __forceinline__ uint2 f8_to_fp8x8(const float *x) {
  uint32_t w[4];
#pragma unroll
  for (int i = 0; i < 4; i++)
    w[i] = (uint32_t)__nv_cvt_float2_to_fp8x2(make_float2(x[2 * i], x[2 * i + 1]), __NV_SATFINITE, KF == 1 ? __NV_E4M3 : __NV_E5M2);
  return make_uint2(w[0] | (w[1] << 16), w[2] | (w[3] << 16));
}

__device__ __forceinline__ float ldf(const void *p, int dt, long long i) {
  if (dt >= IG_CU_DT_E4M3) return fp8_to_f(((const uint8_t *)p)[i], dt);
  if (dt == IG_DT_BF16) return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
  if (dt == IG_DT_F16) return __half2float(((const __half *)p)[i]);
  return ((const float *)p)[i];
}
__device__ __forceinline__ void stf(void *p, int dt, long long i, float v) {
  if (dt >= IG_CU_DT_E4M3) ((uint8_t *)p)[i] = f_to_fp8(v, dt);
  else if (dt == IG_DT_BF16) ((__nv_bfloat16 *)p)[i] = __float2bfloat16(v);
  else if (dt == IG_DT_F16) ((__half *)p)[i] = __float2half(v);
  else ((float *)p)[i] = v;
}
/* The value v takes once stored in dtype dt (so a kernel can keep computing with what memory holds). */
__device__ __forceinline__ float roundf_dt(int dt, float v) {
  if (dt == IG_DT_BF16) return __bfloat162float(__float2bfloat16(v));
  if (dt == IG_DT_F16) return __half2float(__float2half(v));
  return v;
}
/* The same by element type, for kernels templated on it. */
template <typename T> __device__ __forceinline__ float tof(T v);
template <> __device__ __forceinline__ float tof<float>(float v) { return v; }
template <> __device__ __forceinline__ float tof<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }
template <> __device__ __forceinline__ float tof<__half>(__half v) { return __half2float(v); }
template <typename T> __device__ __forceinline__ T fromf(float v);
template <> __device__ __forceinline__ float fromf<float>(float v) { return v; }
template <> __device__ __forceinline__ __nv_bfloat16 fromf<__nv_bfloat16>(float v) { return __float2bfloat16(v); }
template <> __device__ __forceinline__ __half fromf<__half>(float v) { return __float2half(v); }
__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
/* transformers' gelu_pytorch_tanh: 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))), in f32 (Gemma3's MLP) */
__device__ __forceinline__ float gelu_tanh(float x) {
  return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
}
#endif
