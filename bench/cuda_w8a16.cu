/* bench/cuda_w8a16.cu: what keeping an FP8 checkpoint's weights as FP8 on the GPU would give decode (nineteenth
 * session: FP8 checkpoints load dequantized to bf16, so they run at bf16 speed). One plain GEMV-style kernel (a warp
 * per output row, 16-byte loads in flight, the x rows read through the read-only cache, f32 sums, per-row scale at the
 * end), instantiated for bf16 weights and for F8_E4M3 codes (converted by cvt.rn.f16x2.e4m3x2), over the Llama-3-8B
 * decode products at m = 1, 4 and 16 rows. Each weight is one of 4 copies in turn, so every call reads HBM, not L2.
 * Checked against a host sum in double on 64 random outputs of each (relative to the sum of |terms|, 1e-5).
 * Usage: cuda_w8a16 [rows,rows,...] */
#include "cuda_bench_common.cuh"
#include <cuda_fp8.h>
#include <math.h>
#include <vector>

#define COPIES 4

__device__ __forceinline__ uint4 ld_stream(const uint4 *p) {
  uint4 r;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];" : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "l"(p));
  return r;
}

/* out[m, o] = scale[o] * sum_k W[o, k] x[m, k]; FP8: W holds e4m3 codes (16 per 16 bytes), else bf16 (8 per 16 bytes) */
template <int M, bool FP8>
__global__ void __launch_bounds__(256) gemv(const uint4 *__restrict__ W, const float *__restrict__ scale,
                                            const __nv_bfloat16 *__restrict__ x, float *out, int O, int I) {
  const int o = blockIdx.x * 8 + (threadIdx.x >> 5), lane = threadIdx.x & 31;
  if (o >= O) return;
  const int per = FP8 ? 16 : 8, nc = I / per;
  const uint4 *wr = W + (size_t)o * nc;
  float acc[M];
#pragma unroll
  for (int m = 0; m < M; m++) acc[m] = 0.f;
#pragma unroll 4
  for (int c = lane; c < nc; c += 32) {
    uint4 v = ld_stream(wr + c);
    float wf[16];
    if (FP8) {
      const unsigned *u = (const unsigned *)&v;
#pragma unroll
      for (int q = 0; q < 4; q++) {
        __half2_raw lo = __nv_cvt_fp8x2_to_halfraw2((__nv_fp8x2_storage_t)(u[q] & 0xffff), __NV_E4M3);
        __half2_raw hi = __nv_cvt_fp8x2_to_halfraw2((__nv_fp8x2_storage_t)(u[q] >> 16), __NV_E4M3);
        float2 a = __half22float2(__half2(lo)), b = __half22float2(__half2(hi));
        wf[4 * q] = a.x, wf[4 * q + 1] = a.y, wf[4 * q + 2] = b.x, wf[4 * q + 3] = b.y;
      }
    } else {
      const __nv_bfloat162 *h = (const __nv_bfloat162 *)&v;
#pragma unroll
      for (int q = 0; q < 4; q++) {
        float2 t = __bfloat1622float2(h[q]);
        wf[2 * q] = t.x, wf[2 * q + 1] = t.y;
      }
    }
#pragma unroll
    for (int m = 0; m < M; m++) {
      const uint4 *xr = (const uint4 *)(x + (size_t)m * I + (size_t)c * per);
#pragma unroll
      for (int h = 0; h < per / 8; h++) {
        uint4 xv = __ldg(xr + h);
        const __nv_bfloat162 *xh = (const __nv_bfloat162 *)&xv;
#pragma unroll
        for (int q = 0; q < 4; q++) {
          float2 t = __bfloat1622float2(xh[q]);
          acc[m] += wf[8 * h + 2 * q] * t.x + wf[8 * h + 2 * q + 1] * t.y;
        }
      }
    }
  }
#pragma unroll
  for (int m = 0; m < M; m++) {
    float v = acc[m];
#pragma unroll
    for (int s = 16; s > 0; s >>= 1) v += __shfl_xor_sync(0xffffffffu, v, s);
    if (lane == 0) out[(size_t)m * O + o] = v * (scale ? scale[o] : 1.f);
  }
}

template <bool FP8> static void launch(int m, const uint4 *W, const float *s, const __nv_bfloat16 *x, float *out, int O, int I) {
  dim3 g((O + 7) / 8);
  switch (m) {
    case 1: gemv<1, FP8><<<g, 256>>>(W, s, x, out, O, I); break;
    case 4: gemv<4, FP8><<<g, 256>>>(W, s, x, out, O, I); break;
    case 16: gemv<16, FP8><<<g, 256>>>(W, s, x, out, O, I); break;
    default: fprintf(stderr, "cuda_w8a16: rows must be 1, 4 or 16\n"); exit(2);
  }
  CK(cudaGetLastError());
}

static float e4m3_val(uint8_t c) { /* host decode, for the check */
  int e = (c >> 3) & 15, mm = c & 7;
  float v = e ? ldexpf(1.f + mm / 8.f, e - 7) : ldexpf((float)mm, -9);
  if (e == 15 && mm == 7) v = NAN;
  return (c & 0x80) ? -v : v;
}
static float bf(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

int main(int argc, char **argv) {
  int ms[8], nm = parse_rows(argc > 1 ? argv[1] : "1,4,16", ms, 8, "cuda_w8a16");
  struct { const char *name; int O, I; } P[] = {{"qkv", 6144, 4096}, {"o", 4096, 4096}, {"gate|up", 28672, 4096}, {"down", 4096, 14336}};
  const int MMAX = 16;
  __nv_bfloat16 *x;
  float *out, *scale;
  CK(cudaMalloc(&x, (size_t)MMAX * 14336 * 2));
  CK(cudaMalloc(&out, (size_t)MMAX * 28672 * 4));
  CK(cudaMalloc(&scale, 28672 * 4));
  fill<<<1024, 256>>>(x, (size_t)MMAX * 14336, 7, 1e-3f);
  std::vector<float> hs(28672);
  for (int i = 0; i < 28672; i++) hs[i] = 1e-3f * (1 + (i * 37) % 101);
  CK(cudaMemcpy(scale, hs.data(), hs.size() * 4, cudaMemcpyHostToDevice));
  std::vector<uint16_t> hx((size_t)MMAX * 14336);
  CK(cudaMemcpy(hx.data(), x, hx.size() * 2, cudaMemcpyDeviceToHost));
  printf("%-8s %3s %10s %8s %10s %8s %7s\n", "product", "m", "bf16 us", "GB/s", "fp8 us", "GB/s", "ratio");
  int bad = 0;
  for (auto &p : P) {
    size_t n = (size_t)p.O * p.I;
    void *wb[COPIES], *wq[COPIES];
    for (int c = 0; c < COPIES; c++) {
      CK(cudaMalloc(&wb[c], n * 2));
      CK(cudaMalloc(&wq[c], n));
      fill<<<1024, 256>>>((__nv_bfloat16 *)wb[c], n, 11 + c, 2e-5f);
      /* codes: a hash of the index, NaN codes (0x7f, 0xff) avoided */
      std::vector<uint8_t> hq(n);
      for (size_t i = 0; i < n; i++) {
        uint32_t h = (uint32_t)i * 2654435761u ^ (uint32_t)(c * 977);
        h ^= h >> 15;
        uint8_t b = (uint8_t)h;
        if ((b & 0x7f) == 0x7f) b ^= 1;
        hq[i] = b;
      }
      CK(cudaMemcpy(wq[c], hq.data(), n, cudaMemcpyHostToDevice));
    }
    for (int mi = 0; mi < nm; mi++) {
      int m = ms[mi];
      float tb = time_us(3, 20, [&](int i) { launch<false>(m, (const uint4 *)wb[i % COPIES], NULL, x, out, p.O, p.I); });
      float tq = time_us(3, 20, [&](int i) { launch<true>(m, (const uint4 *)wq[i % COPIES], scale, x, out, p.O, p.I); });
      /* check both on copy 0 */
      std::vector<float> ho((size_t)m * p.O);
      std::vector<uint16_t> hw((size_t)p.I);
      std::vector<uint8_t> hq((size_t)p.I);
      for (int f = 0; f < 2; f++) {
        if (f) launch<true>(m, (const uint4 *)wq[0], scale, x, out, p.O, p.I);
        else launch<false>(m, (const uint4 *)wb[0], NULL, x, out, p.O, p.I);
        CK(cudaMemcpy(ho.data(), out, ho.size() * 4, cudaMemcpyDeviceToHost));
        for (int t = 0; t < 64; t++) {
          int o = (int)(((uint32_t)t * 2654435761u) % (uint32_t)p.O), r = t % m;
          if (f) CK(cudaMemcpy(hq.data(), (uint8_t *)wq[0] + (size_t)o * p.I, p.I, cudaMemcpyDeviceToHost));
          else CK(cudaMemcpy(hw.data(), (uint16_t *)wb[0] + (size_t)o * p.I, (size_t)p.I * 2, cudaMemcpyDeviceToHost));
          double s = 0, a = 0;
          for (int k = 0; k < p.I; k++) {
            double w = f ? e4m3_val(hq[k]) : bf(hw[k]), xv = bf(hx[(size_t)r * p.I + k]);
            s += w * xv, a += fabs(w * xv);
          }
          if (f) s *= hs[o], a *= hs[o];
          double got = ho[(size_t)r * p.O + o];
          if (!(fabs(got - s) <= 1e-5 * a + 1e-30)) {
            if (bad++ < 5) fprintf(stderr, "%s m=%d %s out[%d,%d] %.9g want %.9g\n", p.name, m, f ? "fp8" : "bf16", r, o, got, s);
          }
        }
      }
      printf("%-8s %3d %10.1f %8.0f %10.1f %8.0f %7.2f\n", p.name, m, tb, n * 2 / tb / 1e3, tq, n / tq / 1e3, tb / tq);
    }
    for (int c = 0; c < COPIES; c++) {
      CK(cudaFree(wb[c]));
      CK(cudaFree(wq[c]));
    }
  }
  printf("check: %d of the sampled outputs off\n", bad);
  return bad ? 1 : 0;
}
