/* backend/cuda/cuda_dtype.cuh: element loads and stores by run-time dtype (f32, f16, bf16), used by the
 * memory-bound kernels where one uniform branch per element costs nothing next to the memory traffic. */
#ifndef IG_CUDA_DTYPE_CUH
#define IG_CUDA_DTYPE_CUH
#include <cuda_bf16.h>
#include <cuda_fp16.h>

__device__ __forceinline__ float ldf(const void *p, int dt, long long i) {
  if (dt == IG_DT_BF16) return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
  if (dt == IG_DT_F16) return __half2float(((const __half *)p)[i]);
  return ((const float *)p)[i];
}
__device__ __forceinline__ void stf(void *p, int dt, long long i, float v) {
  if (dt == IG_DT_BF16) ((__nv_bfloat16 *)p)[i] = __float2bfloat16(v);
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
