/* backend/cuda/cuda_sample.cu: the optional sample op (backend.h's ig_sample_row): engine/sampler.c's chain on
 * the device, so that only the chosen ids (and logprobs / top-n) cross to the host.
 *
 * Layout: one block of 1024 threads per sampled row; warp w owns the contiguous slice [w*seg, (w+1)*seg) of the
 * vocabulary and reads it 32 consecutive entries at a time, so "index order" is (warp, chunk, lane) order. Every
 * step is a pass over the row's logits that recomputes the processed score of each entry from the logits and
 * what earlier steps decided (penalties through a bitmap, temperature, then each warper as a threshold), so
 * nothing vocabulary-sized is written. A greedy row without top-n is one pass (max, argmax and the online sum
 * of exponentials); each warper is a radix select over the 32-bit order key of the value (or of typical_p's
 * key): three passes (11 + 11 + 10 bits) of shared-memory histograms of counts (top_k, top-n) or of masses
 * (top_p, typical_p). Masses are fixed point (2^shift per unit, integer atomics), so histograms are exact and
 * the same on every run; no float is ever accumulated in an order that varies. Sums over the vocabulary are
 * per-thread running sums in a fixed order, then fixed shuffle trees.
 *
 * Matching the host: the per-entry arithmetic is the host's, operation for operation and rounded the same
 * way (the penalties, the temperature division and exp_neg() are written with __f*_rn so nvcc cannot contract
 * them into FMAs; sampler.c is C17 without -march, so GCC emits no FMA either). So z = sum exp_neg(s - max)
 * and the inverse-CDF walk see the host's very terms, and only the order of double additions differs (about
 * 1e-16 relative). top_p and typical_p use exp() in double as the host does; their fixed-point masses round
 * each term to 2^-shift of the largest (shift = 62 - bit length of V, 2^-45 for 128k entries). Ties follow the
 * host: top_k keeps every value >= the k-th largest; top_p removes, in ascending (value, index) order, the
 * entries whose cumulative probability is <= 1 - top_p, never the last (so a tie group at the boundary can be
 * cut by index); typical_p keeps the keys <= the key where its cumulative mass first reaches typical_p; the
 * argmax takes the lowest index; top-n lists ties with the n-th (from the host's 20 best, value descending then
 * index ascending), never -inf. The greedy row's logprob comes from an online sum (rescaled in double), the
 * one place where the sum of exponentials is not the host's term by term (about 1e-7 relative). */
#include "backend/cuda/cuda_common.h"
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SP_THREADS 1024
#define SP_WARPS (SP_THREADS / 32)
#define SP_TOP IG_SAMPLE_MAX_TOP
#define SP_BINS 2048
#define SP_REP_BIT (1 << 30) /* in a penalised token's flag word: the repetition penalty applies */
#define SP_MAX_V (1 << 24)
#define FULLM 0xffffffffu

/* row flags, decided on the host with sampler.c's conditions */
enum {
  SPF_SAMPLE = 1, /* sampling (the warpers and the draw); else the argmax */
  SPF_LSE = 2,    /* logprob wanted (want_logprob, sampling or top-n: when the host computes one) */
  SPF_REP = 4,    /* repetition penalty over tokens[0 .. tok_n) */
  SPF_FP = 8,     /* frequency / presence penalties over tokens[gen_start .. tok_n) */
  SPF_TEMP = 16,
  SPF_TOPK = 32,
  SPF_TOPP = 64,
  SPF_TYP = 128,
};

/* One row's parameters as the kernel reads them (staged with the tokens in one host->device copy). */
typedef struct sp_param {
  int row, flags, top_k, top_n;
  float temp, top_p, typical_p, rep, freq, pres;
  double uniform;
  int tok_off, tok_n;  /* this row's penalty tokens in the staged token array */
  int gen_start;       /* first generated token within them (frequency / presence) */
  int pen_off;         /* this row's slice of the penalty scratch: tok_n ints */
  int mask_off;        /* -1, or this row's allowed-token bitmap (ceil(V/32) words) in the staged token array */
  int target;          /* a greedy row's token whose logprob is wanted too, or -1 */
} sp_param;

/* ---- per-entry arithmetic --------------------------------------------------------------------------- */

/* engine/sampler.c's exp_neg, bit for bit: the same float operations in the same order, none fused. */
__device__ __forceinline__ float sp_exp_neg(float x) {
  float xc = x < -87.0f ? -87.0f : x;
  float t = __fmul_rn(xc, 1.44269504088896341f);
  float n = __fsub_rn(__fadd_rn(t, 12582912.0f), 12582912.0f);
  float r = __fsub_rn(__fsub_rn(xc, __fmul_rn(n, 0.693145751953125f)), __fmul_rn(n, 1.428606765330187e-06f));
  float q = __fadd_rn(1.0f / 120, __fmul_rn(r, 1.0f / 720));
  q = __fadd_rn(1.0f / 24, __fmul_rn(r, q));
  q = __fadd_rn(1.0f / 6, __fmul_rn(r, q));
  q = __fadd_rn(0.5f, __fmul_rn(r, q));
  q = __fadd_rn(1.0f, __fmul_rn(r, q));
  float p = __fadd_rn(1.0f, __fmul_rn(r, q));
  float scale = __int_as_float(((int)n + 127) << 23);
  return x == -INFINITY ? 0.0f : __fmul_rn(p, scale);
}

/* Order key: unsigned order = float order; -0 is folded onto +0 because the host compares them equal. */
__device__ __forceinline__ uint32_t sp_okey(float f) {
  uint32_t u = __float_as_uint(f);
  if ((u << 1) == 0) u = 0; /* in integers: no compiler may treat the two zeros as interchangeable here */
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
__device__ __forceinline__ float sp_unokey(uint32_t k) {
  return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

/* The processed score of entry i from its logit xi: NaN -> -inf, penalties, temperature, then the warpers
 * decided so far (an entry they remove is -inf). All fields are the same in every thread of the block. */
struct SpScore {
  const uint32_t *bm; /* penalised entries: bitmap (shared memory); NULL when the row has no penalties */
  const int *pre;     /* exclusive popcount prefix per bitmap word: rank of a penalised entry */
  const int *pv;      /* penalised values (float bits), by rank (global scratch, written by this block) */
  const uint32_t *am; /* allowed entries: bitmap (global), NULL: all; the others score -inf */
  int use_temp;
  float temp;
  int m_topk;
  float tk; /* keep s >= tk */
  int m_topp;
  float pv_v; /* keep s > pv_v, or s == pv_v and i >= pv_i */
  int pv_i;
  int m_typ;
  double lse, ent;
  float kappa; /* keep typical key <= kappa */

  __device__ __forceinline__ float base(int i, float xi) const {
    float s = xi != xi ? -INFINITY : xi;
    if (bm) {
      uint32_t w = bm[i >> 5], bit = 1u << (i & 31);
      if (w & bit) s = __int_as_float(__ldcg(pv + pre[i >> 5] + __popc(w & (bit - 1))));
    }
    if (am && !((__ldg(am + (i >> 5)) >> (i & 31)) & 1u)) s = -INFINITY;
    if (use_temp) s = __fdiv_rn(s, temp);
    return s;
  }
  /* sampler.c's typical_p key: (float)fabs(-((double)s - lse) - ent) */
  __device__ __forceinline__ float typ_key(float s) const {
    double lp = (double)s - lse;
    return (float)fabs(-lp - ent);
  }
  __device__ __forceinline__ float fin(int i, float xi) const {
    float s = base(i, xi);
    if (s == -INFINITY) return s;
    if (m_topk && s < tk) return -INFINITY;
    if (m_topp && !(s > pv_v || (s == pv_v && i >= pv_i))) return -INFINITY;
    if (m_typ && typ_key(s) > kappa) return -INFINITY;
    return s;
  }
};

/* ---- shared memory and block-wide helpers ----------------------------------------------------------- */

struct SpSmem {
  unsigned cnt[SP_BINS];
  union {
    unsigned long long w[SP_BINS];
    struct { /* top-n candidates per warp, in index order: above the threshold, equal to it */
      int gi[SP_WARPS][SP_TOP];
      float gv[SP_WARPS][SP_TOP];
      int ei[SP_WARPS][SP_TOP];
      float ev[SP_WARPS][SP_TOP];
    } tl;
  } u;
  double red_d[SP_WARPS + 1];
  float red_f[SP_WARPS + 1];
  int red_i[SP_WARPS + 1];
  float gm[SP_WARPS];
  int ga[SP_WARPS];
  double gz[SP_WARPS];
  double ws[SP_WARPS]; /* the draw: per-warp sum of weights */
  int wl[SP_WARPS];    /* ... the last kept entry of the warp's slice and its score */
  float wls[SP_WARPS];
  int wc[SP_WARPS], wc2[SP_WARPS];
  /* radix select */
  unsigned long long r_T, r_total, r_below;
  unsigned r_bin, r_cnt;
  int r_found;
  /* broadcasts */
  int b_w, b_r, b_res;
  float b_f;
  double b_d, b_t, b_z;
};

template <class F>
__device__ __forceinline__ void sp_seg_for(const float *__restrict__ x, int s0, int s1, F &&f) {
  /* f(chunk start, index, valid, logit) for each entry of this warp's slice, in index order; every lane of the
   * warp makes the same calls, so f may use warp collectives. Four chunks are loaded before any is used. */
  const int lane = threadIdx.x & 31;
  for (int b = s0; b < s1; b += 128) {
    float v[4];
#pragma unroll
    for (int u = 0; u < 4; u++) {
      int i = b + u * 32 + lane;
      v[u] = i < s1 ? __ldg(x + i) : 0.0f;
    }
#pragma unroll
    for (int u = 0; u < 4; u++) {
      int c = b + u * 32;
      if (c < s1) f(c, c + lane, c + lane < s1, v[u]);
    }
  }
}

__device__ __forceinline__ double sp_warp_sum_d(double v) {
  /* xor butterfly: each step adds the same two numbers in both lanes (addition commutes), so every lane ends
   * with the same, fixed-order sum */
  for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(FULLM, v, o);
  return v;
}
__device__ __forceinline__ float sp_warp_max_f(float v) {
  for (int o = 16; o; o >>= 1) v = fmaxf(v, __shfl_xor_sync(FULLM, v, o));
  return v;
}
__device__ __forceinline__ double sp_warp_scan_d(double v) { /* inclusive */
  const int lane = threadIdx.x & 31;
  for (int o = 1; o < 32; o <<= 1) {
    double y = __shfl_up_sync(FULLM, v, o);
    if (lane >= o) v += y;
  }
  return v;
}

/* Block-wide reductions: every thread of the block must call them (they synchronize). */
__device__ double sp_block_sum_d(double v, SpSmem &sm) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = sp_warp_sum_d(v);
  if (lane == 0) sm.red_d[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = sp_warp_sum_d(sm.red_d[lane]);
    if (lane == 0) sm.red_d[SP_WARPS] = v;
  }
  __syncthreads();
  v = sm.red_d[SP_WARPS];
  __syncthreads();
  return v;
}
__device__ float sp_block_max_f(float v, SpSmem &sm) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = sp_warp_max_f(v);
  if (lane == 0) sm.red_f[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = sp_warp_max_f(sm.red_f[lane]);
    if (lane == 0) sm.red_f[SP_WARPS] = v;
  }
  __syncthreads();
  v = sm.red_f[SP_WARPS];
  __syncthreads();
  return v;
}
/* Exclusive prefix sum of v over the threads in order; *total = the sum of all. */
__device__ int sp_block_excl_scan(int v, SpSmem &sm, int *total) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  int inc = v;
  for (int o = 1; o < 32; o <<= 1) {
    int y = __shfl_up_sync(FULLM, inc, o);
    if (lane >= o) inc += y;
  }
  if (lane == 31) sm.red_i[warp] = inc;
  __syncthreads();
  if (warp == 0) {
    int t = sm.red_i[lane], ti = t;
    for (int o = 1; o < 32; o <<= 1) {
      int y = __shfl_up_sync(FULLM, ti, o);
      if (lane >= o) ti += y;
    }
    sm.red_i[lane] = ti - t;
    if (lane == 31) sm.red_i[SP_WARPS] = ti;
  }
  __syncthreads();
  int r = sm.red_i[warp] + inc - v;
  *total = sm.red_i[SP_WARPS];
  __syncthreads();
  return r;
}

/* ---- radix select ----------------------------------------------------------------------------------- */

enum { TG_FIXED = 0, TG_MIN_TOTAL = 1, TG_TOPP = 2 };

/* Finds the smallest 32-bit key K with W(key <= K) >= T over the participating entries, where W is the count
 * (MASS false) or the sum of the fixed-point weights (MASS true) and T follows from the total weight of the
 * first pass: TG_FIXED: tfix; TG_MIN_TOTAL: min(tfix, total); TG_TOPP: min(floor(thr * total) + 1, total)
 * (the first key whose cumulative weight exceeds thr * total). kf(i, logit, &score, &key) says whether entry i
 * participates; wf(score) is its weight (MASS), computed only for entries in the bucket being refined. Returns
 * 0 when T is 0 or above the total. Out: *below = W(key < K), *ceq = count(key == K),
 * *total. Three passes over the row (bits 31..21, 20..10, 9..0); the histograms hold integers only. */
template <bool MASS, class KF, class WF>
__device__ __forceinline__ int sp_radix(SpSmem &sm, const float *x, int s0, int s1, KF &&kf, WF &&wf, int tkind,
                                        unsigned long long tfix, double thr, uint32_t *key_out,
                                        unsigned long long *below_out, unsigned *ceq_out,
                                        unsigned long long *total_out) {
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  uint32_t prefix = 0, pmask = 0;
  unsigned long long below = 0;
  unsigned ceq = 0;
  for (int rd = 0; rd < 3; rd++) {
    const int shift = rd == 0 ? 21 : rd == 1 ? 10 : 0;
    const uint32_t nbm = rd == 2 ? 1023u : 2047u;
    for (int j = tid; j < SP_BINS; j += SP_THREADS) {
      sm.cnt[j] = 0;
      if (MASS) sm.u.w[j] = 0;
    }
    __syncthreads();
    sp_seg_for(x, s0, s1, [&](int, int i, bool valid, float xi) {
      uint32_t key;
      float s;
      if (valid && kf(i, xi, s, key) && (key & pmask) == prefix) {
        uint32_t b = (key >> shift) & nbm;
        atomicAdd(&sm.cnt[b], 1u);
        if (MASS) atomicAdd(&sm.u.w[b], (unsigned long long)wf(s));
      }
    });
    __syncthreads();
    if (warp == 0) {
      /* lane l owns bins [64 l, 64 l + 64): its sum, a scan over lanes, then the lane where the cumulative
       * weight reaches T walks its bins */
      unsigned long long loc = 0;
      for (int k = 0; k < 64; k++) loc += MASS ? sm.u.w[lane * 64 + k] : (unsigned long long)sm.cnt[lane * 64 + k];
      unsigned long long inc = loc;
      for (int o = 1; o < 32; o <<= 1) {
        unsigned long long y = __shfl_up_sync(FULLM, inc, o);
        if (lane >= o) inc += y;
      }
      unsigned long long T;
      if (rd == 0) {
        unsigned long long total = __shfl_sync(FULLM, inc, 31);
        if (tkind == TG_FIXED) T = tfix;
        else if (tkind == TG_MIN_TOTAL) T = total < tfix ? total : tfix;
        else {
          double th = floor(thr * (double)total);
          T = th < 0 ? 1 : (unsigned long long)th + 1;
          if (T > total) T = total;
        }
        if (lane == 0) sm.r_T = T, sm.r_total = total;
      } else {
        T = sm.r_T;
      }
      unsigned bal = __ballot_sync(FULLM, T > 0 && below + inc >= T);
      if (bal == 0) {
        if (lane == 0) sm.r_found = 0;
      } else if (lane == __ffs(bal) - 1) {
        unsigned long long acc = below + inc - loc;
        int b = lane * 64, e = b + 63;
        for (; b < e; b++) {
          unsigned long long wb = MASS ? sm.u.w[b] : (unsigned long long)sm.cnt[b];
          if (acc + wb >= T) break;
          acc += wb;
        }
        sm.r_found = 1, sm.r_bin = (unsigned)b, sm.r_below = acc, sm.r_cnt = sm.cnt[b];
      }
    }
    __syncthreads();
    const int found = sm.r_found;
    if (found) {
      prefix |= sm.r_bin << shift;
      pmask |= nbm << shift;
      below = sm.r_below;
      ceq = sm.r_cnt;
    }
    *total_out = sm.r_total;
    __syncthreads(); /* everyone has read r_* before the next round rewrites them */
    if (!found) return 0; /* block-uniform */
  }
  *key_out = prefix, *below_out = below, *ceq_out = ceq;
  return 1;
}

/* Index of the r-th (0-based) entry in index order for which pred(i, logit) holds; -1 if there are not that
 * many. One pass counting per warp, then the warp that holds it walks its slice again. */
template <class P>
__device__ __forceinline__ int sp_nth(SpSmem &sm, const float *x, int s0, int s1, P &&pred, unsigned r) {
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  unsigned c = 0;
  sp_seg_for(x, s0, s1,
             [&](int, int i, bool valid, float xi) { c += __popc(__ballot_sync(FULLM, valid && pred(i, xi))); });
  if (lane == 0) sm.wc[warp] = (int)c;
  __syncthreads();
  if (tid == 0) {
    unsigned acc = 0;
    int w = 0;
#pragma unroll 1
    for (; w < SP_WARPS; w++) {
      if (r < acc + (unsigned)sm.wc[w]) break;
      acc += (unsigned)sm.wc[w];
    }
    sm.b_w = w, sm.b_r = (int)(r - acc), sm.b_res = -1;
  }
  __syncthreads();
  if (warp == sm.b_w) {
    int rr = sm.b_r, res = -1;
    for (int b = s0; b < s1; b += 32) {
      int i = b + lane;
      bool valid = i < s1;
      float xi = valid ? __ldg(x + i) : 0.0f;
      unsigned bal = __ballot_sync(FULLM, valid && pred(i, xi));
      int cc = __popc(bal);
      if (rr < cc) {
        for (int k = 0; k < rr; k++) bal &= bal - 1;
        res = b + __ffs(bal) - 1;
        break;
      }
      rr -= cc;
    }
    if (lane == 0) sm.b_res = res;
  }
  __syncthreads();
  int res = sm.b_res;
  __syncthreads();
  return res;
}

/* ---- top-n ------------------------------------------------------------------------------------------ */

/* The host's ig_sample_top_n on the scores sc.fin(): the SP_TOP best finite entries (value descending, index
 * ascending), the first n of them plus ties with the n-th. Thread 0 writes o->n_top and the lists. */
__device__ __forceinline__ void sp_topn(SpSmem &sm, const float *x, int s0, int s1, const SpScore sc, int n_req,
                                        double lse, ig_sample_out *o) {
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  uint32_t K = 0;
  unsigned long long below = 0, total = 0;
  unsigned ceq = 0;
  /* descending keys: the M-th largest value, M = min(SP_TOP, finite entries) */
  int ok = sp_radix<false>(
      sm, x, s0, s1,
      [&](int i, float xi, float &s, uint32_t &key) {
        s = sc.fin(i, xi);
        key = ~sp_okey(s);
        return s != -INFINITY;
      },
      [](float) { return 1ull; }, TG_MIN_TOTAL, SP_TOP, 0.0, &K, &below, &ceq, &total);
  if (!ok) { /* no finite entry */
    if (tid == 0) o->n_top = 0;
    return;
  }
  const float T = sp_unokey(~K);
  const int M = total < SP_TOP ? (int)total : SP_TOP;
  int ng = 0, ne = 0; /* per warp: entries above T, equal to T (the first SP_TOP of each, in index order) */
  sp_seg_for(x, s0, s1, [&](int, int i, bool valid, float xi) {
    float s = valid ? sc.fin(i, xi) : -INFINITY;
    unsigned bg = __ballot_sync(FULLM, s > T), be = __ballot_sync(FULLM, s == T);
    unsigned lt = (1u << lane) - 1;
    if (s > T) {
      int pos = ng + __popc(bg & lt);
      if (pos < SP_TOP) sm.u.tl.gi[warp][pos] = i, sm.u.tl.gv[warp][pos] = s;
    }
    if (s == T) {
      int pos = ne + __popc(be & lt);
      if (pos < SP_TOP) sm.u.tl.ei[warp][pos] = i, sm.u.tl.ev[warp][pos] = s;
    }
    ng += __popc(bg), ne += __popc(be);
  });
  if (lane == 0) sm.wc[warp] = ng < SP_TOP ? ng : SP_TOP, sm.wc2[warp] = ne < SP_TOP ? ne : SP_TOP;
  __syncthreads();
  if (tid == 0) {
    int ids[SP_TOP];
    float vs[SP_TOP];
    int m = 0;
    /* all entries above T (fewer than M of them), then those equal to T in index order up to M */
#pragma unroll 1
    for (int w = 0; w < SP_WARPS; w++)
      for (int k = 0; k < sm.wc[w] && m < M; k++) ids[m] = sm.u.tl.gi[w][k], vs[m] = sm.u.tl.gv[w][k], m++;
#pragma unroll 1
    for (int w = 0; w < SP_WARPS; w++)
      for (int k = 0; k < sm.wc2[w] && m < M; k++) ids[m] = sm.u.tl.ei[w][k], vs[m] = sm.u.tl.ev[w][k], m++;
    for (int a = 1; a < m; a++) { /* value descending, index ascending */
      int id = ids[a];
      float v = vs[a];
      int j = a;
      while (j > 0 && (vs[j - 1] < v || (vs[j - 1] == v && ids[j - 1] > id)))
        ids[j] = ids[j - 1], vs[j] = vs[j - 1], j--;
      ids[j] = id, vs[j] = v;
    }
    int k = n_req < m ? n_req : m;
    while (k > 0 && k < m && vs[k] == vs[k - 1]) k++; /* ties with the n-th */
    o->n_top = k;
    for (int j = 0; j < k; j++) o->top_ids[j] = ids[j], o->top_logprobs[j] = (float)((double)vs[j] - lse);
  }
  __syncthreads();
}

/* ---- the kernel ------------------------------------------------------------------------------------- */

/* Greedy row: (max, lowest index of the max, sum of exp(s - max)) combined; the same result in both lanes of
 * a butterfly step (max and + commute). */
__device__ __forceinline__ void sp_gcomb(float &m, int &a, double &z, float m2, int a2, double z2, bool need) {
  float M = m > m2 ? m : m2;
  int A = m > m2 ? a : m2 > m ? a2 : (a < a2 ? a : a2);
  if (need) {
    double za = m == -INFINITY ? 0.0 : m == M ? z : z * exp((double)m - (double)M);
    double zb = m2 == -INFINITY ? 0.0 : m2 == M ? z2 : z2 * exp((double)m2 - (double)M);
    z = za + zb;
  }
  m = M, a = A;
}

/* The greedy pass of a row split over the GPU: a plain greedy row (no penalties, no top-n) is one block's pass over
 * all V entries in sample_kernel, ~68 us on the H100 at Llama 3's 128,256 entries (bound by issuing its ~118
 * instructions per entry on one SM), whatever the batch. sample_parts_kernel runs it over slices of SP_SLICE entries
 * (16 at 128,256) on as many blocks, each (max, lowest index of the max, sum of exp(s - max)) as the whole-row pass computes them,
 * and sample_kernel combines the slices in order with sp_gcomb. The slices depend only on V, so a row's result does
 * not depend on the batch; the sum is associated differently from the one-block pass (the id is the same, the
 * logprob within the host check's 1e-4). */
#define SP_PART_THREADS 512
#define SP_SLICE 8192 /* entries per slice of a split row (at most SP_SLICES_MAX slices) */
#define SP_SLICES_MAX 64
struct sp_part {
  float m;
  int a;
  double z;
};
__device__ __forceinline__ bool sp_split_row(const sp_param &p) {
  return !(p.flags & (SPF_SAMPLE | SPF_REP | SPF_FP)) && p.top_n == 0;
}
/* one warp's greedy fold over [s0, s1) of row x (every lane ends with the warp's result) */
__device__ __forceinline__ void sp_greedy_fold(const float *__restrict__ x, int s0, int s1, const SpScore &sc, bool need,
                                               float &m, int &a, double &z) {
  m = -INFINITY, a = INT_MAX, z = 0.0;
  sp_seg_for(x, s0, s1, [&](int, int i, bool valid, float xi) {
    if (!valid) return;
    float s = sc.base(i, xi);
    if (s > m) { /* per lane the indices ascend: the first of equal maxima stays */
      if (need) z = (m == -INFINITY ? 0.0 : z * exp((double)m - (double)s)) + 1.0;
      m = s, a = i;
    } else if (need && s != -INFINITY) {
      z += (double)sp_exp_neg(__fsub_rn(s, m));
    }
  });
  for (int off = 16; off; off >>= 1) {
    float m2 = __shfl_xor_sync(FULLM, m, off);
    int a2 = __shfl_xor_sync(FULLM, a, off);
    double z2 = __shfl_xor_sync(FULLM, z, off);
    sp_gcomb(m, a, z, m2, a2, z2, need);
  }
}
__global__ void __launch_bounds__(SP_PART_THREADS)
    sample_parts_kernel(const float *__restrict__ logits, int V, const sp_param *__restrict__ P,
                        const int *__restrict__ toks, sp_part *parts, int nsplit) {
  PDL_ENTRY();
  const sp_param p = P[blockIdx.x];
  if (!sp_split_row(p)) return;
  __shared__ float gm[SP_PART_THREADS / 32];
  __shared__ int ga[SP_PART_THREADS / 32];
  __shared__ double gz[SP_PART_THREADS / 32];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, NW = SP_PART_THREADS / 32;
  const int z0 = (int)((long long)V * blockIdx.y / nsplit), z1 = (int)((long long)V * (blockIdx.y + 1) / nsplit);
  const int seg = ((z1 - z0 + SP_PART_THREADS - 1) / SP_PART_THREADS) * 32;
  const int s0 = z0 + warp * seg < z1 ? z0 + warp * seg : z1, s1 = s0 + seg < z1 ? s0 + seg : z1;
  SpScore sc;
  memset(&sc, 0, sizeof sc);
  if (p.mask_off >= 0) sc.am = (const uint32_t *)(toks + p.mask_off);
  const bool need = (p.flags & SPF_LSE) != 0;
  float m;
  int a;
  double z;
  sp_greedy_fold(logits + (size_t)p.row * (size_t)V, s0, s1, sc, need, m, a, z);
  if (lane == 0) gm[warp] = m, ga[warp] = a, gz[warp] = z;
  __syncthreads();
  if (tid == 0) {
    for (int w = 1; w < NW; w++) sp_gcomb(m, a, z, gm[w], ga[w], gz[w], need);
    parts[(size_t)blockIdx.x * nsplit + blockIdx.y] = sp_part{m, a, z};
  }
}

__global__ void __launch_bounds__(SP_THREADS, 1)
    sample_kernel(const float *__restrict__ logits, int V, const sp_param *__restrict__ P, const int *__restrict__ toks,
                  int *pen, ig_sample_out *out, const sp_part *parts, int nsplit) {
  PDL_ENTRY();
  extern __shared__ uint32_t sp_dyn[]; /* penalties: bitmap [W], then prefix [W] */
  __shared__ SpSmem sm;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const sp_param p = P[blockIdx.x];
  const float *x = logits + (size_t)p.row * (size_t)V;
  const int seg = ((V + SP_THREADS - 1) / SP_THREADS) * 32;
  const int s0 = warp * seg < V ? warp * seg : V, s1 = s0 + seg < V ? s0 + seg : V;
  ig_sample_out *o = out + blockIdx.x;

  if (tid == 0) { /* every byte of the result is written: two identical calls return identical bytes */
    o->id = 0, o->logprob = 0.0f, o->n_top = 0, o->target_logprob = NAN;
    for (int j = 0; j < SP_TOP; j++) o->top_ids[j] = 0, o->top_logprobs[j] = 0.0f;
  }
  SpScore sc;
  memset(&sc, 0, sizeof sc);
  if (p.mask_off >= 0) sc.am = (const uint32_t *)(toks + p.mask_off);

  /* ---- penalties: mark the distinct in-range tokens, rank them, compute their penalised values ---- */
  if (p.flags & (SPF_REP | SPF_FP)) {
    const int W = (V + 31) >> 5;
    uint32_t *bm = sp_dyn;
    int *pre = (int *)(sp_dyn + W);
    int *pv = pen + p.pen_off;
    const int *tk = toks + p.tok_off;
    for (int j = tid; j < W; j += SP_THREADS) bm[j] = 0;
    __syncthreads();
    for (int j = tid; j < p.tok_n; j += SP_THREADS) {
      int t = tk[j];
      if ((unsigned)t < (unsigned)V) atomicOr(&bm[t >> 5], 1u << (t & 31));
    }
    __syncthreads();
    const int per = (W + SP_THREADS - 1) / SP_THREADS;
    const int w0 = tid * per < W ? tid * per : W, w1 = w0 + per < W ? w0 + per : W;
    int loc = 0;
    for (int w = w0; w < w1; w++) loc += __popc(bm[w]);
    int nd;
    int ex = sp_block_excl_scan(loc, sm, &nd);
    for (int w = w0; w < w1; w++) pre[w] = ex, ex += __popc(bm[w]);
    for (int k = tid; k < nd; k += SP_THREADS) pv[k] = 0;
    __syncthreads();
    for (int j = tid; j < p.tok_n; j += SP_THREADS) {
      int t = tk[j];
      if ((unsigned)t >= (unsigned)V) continue;
      uint32_t bit = 1u << (t & 31);
      int k = pre[t >> 5] + __popc(bm[t >> 5] & (bit - 1));
      if (p.flags & SPF_REP) atomicOr(&pv[k], SP_REP_BIT);
      if ((p.flags & SPF_FP) && j >= p.gen_start) atomicAdd(&pv[k], 1);
    }
    __syncthreads();
    for (int w = tid; w < W; w += SP_THREADS) {
      uint32_t m = bm[w];
      int k = pre[w];
      while (m) {
        int b = __ffs(m) - 1;
        m &= m - 1;
        int f = __ldcg(pv + k);
        float v = __ldg(x + w * 32 + b);
        v = v != v ? -INFINITY : v;
        if (f & SP_REP_BIT) v = v < 0 ? __fmul_rn(v, p.rep) : __fdiv_rn(v, p.rep);
        int cn = f & (SP_REP_BIT - 1);
        if (cn > 0) v = __fsub_rn(v, __fadd_rn(__fmul_rn((float)cn, p.freq), p.pres));
        pv[k] = __float_as_int(v);
        k++;
      }
    }
    __syncthreads();
    sc.bm = bm, sc.pre = pre, sc.pv = pv;
  }

  if (!(p.flags & SPF_SAMPLE)) {
    /* ---- greedy: one pass for the argmax (and the normaliser when a logprob is wanted) ---- */
    const bool need = (p.flags & SPF_LSE) != 0;
    float m = -INFINITY;
    int a = INT_MAX;
    double z = 0.0;
    if (parts && sp_split_row(p)) { /* the pass ran split (sample_parts_kernel): its slices in order */
      if (tid == 0) {
        const sp_part *q = parts + (size_t)blockIdx.x * nsplit;
        m = q[0].m, a = q[0].a, z = q[0].z;
        for (int k = 1; k < nsplit; k++) sp_gcomb(m, a, z, q[k].m, q[k].a, q[k].z, need);
        sm.b_f = m, sm.b_w = a, sm.b_z = z;
      }
    } else {
      sp_greedy_fold(x, s0, s1, sc, need, m, a, z);
      if (lane == 0) sm.gm[warp] = m, sm.ga[warp] = a, sm.gz[warp] = z;
      __syncthreads();
      if (warp == 0) {
        m = sm.gm[lane], a = sm.ga[lane], z = sm.gz[lane];
        for (int off = 16; off; off >>= 1) {
          float m2 = __shfl_xor_sync(FULLM, m, off);
          int a2 = __shfl_xor_sync(FULLM, a, off);
          double z2 = __shfl_xor_sync(FULLM, z, off);
          sp_gcomb(m, a, z, m2, a2, z2, need);
        }
        if (lane == 0) sm.b_f = m, sm.b_w = a, sm.b_z = z;
      }
    }
    __syncthreads();
    m = sm.b_f, a = sm.b_w, z = sm.b_z;
    __syncthreads();
    const int id = a == INT_MAX ? 0 : a; /* every entry -inf: the host's argmax is 0 */
    const double lse = !need ? (double)NAN : m == -INFINITY ? -(double)INFINITY : (double)m + log(z);
    if (tid == 0) {
      o->id = id;
      o->logprob = need ? (float)((double)m - lse) : NAN; /* s[id] == m (both -inf: NaN, as the host) */
      o->n_top = 0;
      if (need && p.target >= 0 && p.target < V) o->target_logprob = (float)((double)sc.base(p.target, x[p.target]) - lse);
    }
    if (p.top_n > 0) sp_topn(sm, x, s0, s1, sc, p.top_n, lse, o);
    return;
  }

  /* ---- sampling ---- */
  sc.use_temp = (p.flags & SPF_TEMP) != 0, sc.temp = p.temp;
  float mx = -INFINITY;
  sp_seg_for(x, s0, s1, [&](int, int i, bool valid, float xi) {
    if (valid) mx = fmaxf(mx, sc.base(i, xi));
  });
  mx = sp_block_max_f(mx, sm); /* top_k and top_p keep the max */
  const int shift = 62 - (32 - __clz(V)); /* fixed point: every weight <= 2^shift, V of them < 2^62 */
  const double fscale = ldexp(1.0, shift);
  uint32_t K;
  unsigned long long below, total;
  unsigned ceq;

  if (p.flags & SPF_TOPK) { /* k-th largest over all V entries (-inf included), as the host */
    if (sp_radix<false>(
            sm, x, s0, s1,
            [&](int i, float xi, float &s, uint32_t &key) {
              s = sc.base(i, xi);
              key = ~sp_okey(s);
              return true;
            },
            [](float) { return 1ull; }, TG_FIXED, (unsigned long long)p.top_k, 0.0, &K, &below, &ceq, &total))
      sc.m_topk = 1, sc.tk = sp_unokey(~K);
  }

  if ((p.flags & SPF_TOPP) && mx != -INFINITY) {
    /* ascending (value, index) order: the first entry whose cumulative mass exceeds (1 - top_p) * total is the
     * first one kept; ties with it are removed by index up to the mass */
    const double thr = 1.0 - (double)p.top_p;
    if (sp_radix<true>(
            sm, x, s0, s1,
            [&](int i, float xi, float &s, uint32_t &key) {
              s = sc.fin(i, xi);
              key = sp_okey(s);
              return s != -INFINITY;
            },
            [&](float s) { return __double2ull_rn(exp((double)s - (double)mx) * fscale); }, TG_TOPP, 0, thr, &K,
            &below, &ceq, &total)) {
      const float v = sp_unokey(K);
      const unsigned long long q = __double2ull_rn(exp((double)v - (double)mx) * fscale);
      const double theta = thr * (double)total;
      long long r = 0; /* entries of value v removed: those whose cumulative mass stays <= theta */
      if (q > 0) {
        double rr = floor((theta - (double)below) / (double)q);
        r = rr < 0 ? 0 : rr > (double)ceq - 1 ? (long long)ceq - 1 : (long long)rr;
      }
      int ip = 0;
      if (r > 0) {
        ip = sp_nth(
            sm, x, s0, s1, [&](int i, float xi) { return sc.fin(i, xi) == v; }, (unsigned)r);
        if (ip < 0) ip = 0;
      }
      sc.m_topp = 1, sc.pv_v = v, sc.pv_i = ip;
    }
  }

  if ((p.flags & SPF_TYP) && mx != -INFINITY) {
    double z = 0.0; /* ig_sample_logsumexp over the current scores (exp_neg terms) */
    sp_seg_for(x, s0, s1, [&](int, int i, bool valid, float xi) {
      if (!valid) return;
      float s = sc.fin(i, xi);
      if (s != -INFINITY) z += (double)sp_exp_neg(__fsub_rn(s, mx));
    });
    z = sp_block_sum_d(z, sm);
    const double lse = (double)mx + log(z);
    double e = 0.0;
    sp_seg_for(x, s0, s1, [&](int, int i, bool valid, float xi) {
      if (!valid) return;
      float s = sc.fin(i, xi);
      if (s != -INFINITY) {
        double lp = (double)s - lse;
        e += lp * exp(lp);
      }
    });
    e = sp_block_sum_d(e, sm);
    sc.lse = lse, sc.ent = -e;
    /* ascending key: the first key at which the cumulative probability reaches typical_p; keys <= it stay */
    const unsigned long long tm = (unsigned long long)ceil((double)p.typical_p * fscale);
    if (sp_radix<true>(
            sm, x, s0, s1,
            [&](int i, float xi, float &s, uint32_t &key) {
              s = sc.fin(i, xi);
              if (s == -INFINITY) return false;
              key = sp_okey(sc.typ_key(s));
              return true;
            },
            [&](float s) { return __double2ull_rn(exp((double)s - sc.lse) * fscale); }, TG_FIXED, tm > 0 ? tm : 1,
            0.0, &K, &below, &ceq, &total))
      sc.m_typ = 1, sc.kappa = sp_unokey(K);
    /* typical_p may drop the max */
    float m2 = -INFINITY;
    sp_seg_for(x, s0, s1, [&](int, int i, bool valid, float xi) {
      if (valid) m2 = fmaxf(m2, sc.fin(i, xi));
    });
    mx = sp_block_max_f(m2, sm);
  }

  /* ---- the draw: inverse CDF over ids in order at uniform * z, z = sum exp_neg(s - mx) ---- */
  {
    double run = 0.0;
    int last_i = -1;
    float last_s = -INFINITY;
    const float mxf = mx;
    sp_seg_for(x, s0, s1, [&](int c0, int i, bool valid, float xi) {
      float s = valid ? sc.fin(i, xi) : -INFINITY;
      double e = s == -INFINITY ? 0.0 : (double)sp_exp_neg(__fsub_rn(s, mxf));
      double inc = sp_warp_scan_d(e);
      run += __shfl_sync(FULLM, inc, 31);
      unsigned bal = __ballot_sync(FULLM, s != -INFINITY);
      if (bal) {
        int hl = 31 - __clz(bal);
        last_i = c0 + hl;
        last_s = __shfl_sync(FULLM, s, hl);
      }
    });
    if (lane == 0) sm.ws[warp] = run, sm.wl[warp] = last_i, sm.wls[warp] = last_s;
    __syncthreads();
    if (tid == 0) {
      double Z = 0.0;
#pragma unroll 1
      for (int w = 0; w < SP_WARPS; w++) Z += sm.ws[w];
      const double target = p.uniform * Z;
      double P0 = 0.0, Pw = 0.0;
      int wst = -1;
#pragma unroll 1
      for (int w = 0; w < SP_WARPS; w++) { /* the same additions as for Z */
        double nx = P0 + sm.ws[w];
        if (wst < 0 && sm.ws[w] > 0.0 && nx > target) wst = w, Pw = P0;
        P0 = nx;
      }
      int fid = 0; /* no crossing (rounding, or nothing finite): the last finite entry, as the host */
      float fs = -INFINITY;
#pragma unroll 1
      for (int w = SP_WARPS - 1; w >= 0; w--)
        if (sm.wl[w] >= 0) {
          fid = sm.wl[w], fs = sm.wls[w];
          break;
        }
      sm.b_w = wst, sm.b_d = Pw, sm.b_t = target, sm.b_z = Z, sm.b_res = fid, sm.b_f = fs;
    }
    __syncthreads();
    if (warp == sm.b_w) { /* walk the slice that holds the draw again, with the same running sums */
      const double Pw = sm.b_d, target = sm.b_t;
      double run2 = 0.0;
      int fid = -1;
      float fs = 0.0f;
      for (int b = s0; b < s1; b += 32) {
        int i = b + lane;
        bool valid = i < s1;
        float xi = valid ? __ldg(x + i) : 0.0f;
        float s = valid ? sc.fin(i, xi) : -INFINITY;
        double e = s == -INFINITY ? 0.0 : (double)sp_exp_neg(__fsub_rn(s, mxf));
        double inc = sp_warp_scan_d(e);
        unsigned bal = __ballot_sync(FULLM, e > 0.0 && Pw + (run2 + inc) > target);
        if (bal) {
          int l = __ffs(bal) - 1;
          fid = b + l;
          fs = __shfl_sync(FULLM, s, l);
          break;
        }
        run2 += __shfl_sync(FULLM, inc, 31);
      }
      if (lane == 0) {
        if (fid < 0) fid = sm.wl[warp], fs = sm.wls[warp]; /* rounding: the slice's last finite entry */
        sm.b_res = fid, sm.b_f = fs;
      }
    }
    __syncthreads();
    const int id = sm.b_res;
    const float s_id = sm.b_f;
    const double Z = sm.b_z;
    __syncthreads();
    const double lse = mxf == -INFINITY ? -(double)INFINITY : (double)mxf + log(Z);
    if (tid == 0) {
      o->id = id;
      o->logprob = (float)((double)s_id - lse);
      o->n_top = 0;
    }
    if (p.top_n > 0) sp_topn(sm, x, s0, s1, sc, p.top_n, lse, o);
  }
}

/* ---- host side -------------------------------------------------------------------------------------- */

#define SP_ALIGN(v) (((v) + 255) & ~(size_t)255)

/* The op's own buffers (not cu_scratch: that one drops captured graphs when it grows, and nothing here is
 * part of a graph). */
static int sp_grow(ig_backend *be, void **buf, size_t *cap, size_t need, int host) {
  if (need <= *cap) return 0;
  cu_impl *c = CU(be);
  if (*buf) {
    CUDA_CHECK(be, cudaStreamSynchronize(c->st));
    if (host) CUDA_CHECK(be, cudaFreeHost(*buf));
    else CUDA_CHECK(be, cudaFree(*buf));
    *buf = NULL, *cap = 0;
  }
  size_t sz = need + need / 2 + 4096;
  if (host) CUDA_CHECK(be, cudaHostAlloc(buf, sz, cudaHostAllocDefault));
  else CUDA_CHECK(be, cudaMalloc(buf, sz));
  *cap = sz;
  return 0;
}

/* Copy in, launch, copy out, record samp_ev (cu_sample_wait waits for it). Staging layout (host and device
 * alike): params and penalty tokens [0, in_bytes), results [in_bytes, + out_bytes); the device buffer then holds
 * the penalty scratch. */
static int sp_run(ig_backend *be, const ig_tensor *logits, int n, int V, size_t dyn, size_t copy_in, size_t par_bytes,
                  size_t in_bytes, size_t out_bytes, size_t parts_off, int nsplit) {
  cu_impl *c = CU(be);
  char *h = (char *)c->samp_host, *d = (char *)c->samp_dev;
  sp_part *parts = nsplit > 0 ? (sp_part *)(d + parts_off) : NULL;
  CUDA_CHECK(be, cudaMemcpyAsync(d, h, copy_in, cudaMemcpyHostToDevice, c->st));
  if (parts) {
    CU_LAUNCH(be, sample_parts_kernel, dim3((unsigned)n, (unsigned)nsplit), SP_PART_THREADS, 0,
              (const float *)logits->data, V, (const sp_param *)d, (const int *)(d + par_bytes), parts, nsplit);
    LAUNCH_CHECK(be);
  }
  CU_LAUNCH(be, sample_kernel, n, SP_THREADS, dyn, (const float *)logits->data, V, (const sp_param *)d,
            (const int *)(d + par_bytes), (int *)(d + in_bytes + out_bytes), (ig_sample_out *)(d + in_bytes),
            (const sp_part *)parts, nsplit);
  LAUNCH_CHECK(be);
  CUDA_CHECK(be, cudaMemcpyAsync(h + in_bytes, d + in_bytes, (size_t)n * sizeof(ig_sample_out), cudaMemcpyDeviceToHost,
                                 c->st));
  CUDA_CHECK(be, cudaEventRecord(c->samp_ev, c->st));
  return 0;
}

/* The results of the last cu_sample: waits for their copy, then unpacks them into its `out`. */
int cu_sample_wait(ig_backend *be) {
  cu_impl *c = CU(be);
  if (!c->samp_pending) return 0;
  c->samp_pending = 0;
  CUDA_CHECK(be, cudaEventSynchronize(c->samp_ev));
  memcpy(c->samp_out, (char *)c->samp_host + c->samp_off, (size_t)c->samp_n * sizeof(ig_sample_out));
  return 0;
}

void cu_sample_release(ig_backend *be) {
  cu_impl *c = CU(be);
  if (c->samp_dev) cudaFree(c->samp_dev);
  if (c->samp_host) cudaFreeHost(c->samp_host);
  if (c->samp_ev) cudaEventDestroy(c->samp_ev);
  c->samp_ev = NULL, c->samp_pending = 0;
  c->samp_dev = NULL, c->samp_host = NULL, c->samp_dev_size = 0, c->samp_host_size = 0;
}

int cu_sample(ig_backend *be, const ig_tensor *logits, const ig_sample_row *rows, int n, ig_sample_out *out) {
  cu_impl *c = CU(be);
  if (n < 0) FAIL(be, "cuda sample: negative row count %d", n);
  if (n == 0) return 0;
  if (!logits || !rows || !out) FAIL(be, "cuda sample: NULL argument");
  if (logits->dtype != IG_DT_F32) FAIL(be, "cuda sample: logits must be f32, not %s", ig_dtype_name(logits->dtype));
  if (!logits->data || logits->rows <= 0 || logits->cols <= 0)
    FAIL(be, "cuda sample: logits must be a non-empty 2-D tensor (%lld x %lld)", (long long)logits->rows,
         (long long)logits->cols);
  if (logits->cols > SP_MAX_V)
    FAIL(be, "cuda sample: vocabulary of %lld entries (at most %d)", (long long)logits->cols, SP_MAX_V);
  if (n > INT_MAX / 2) FAIL(be, "cuda sample: %d rows", n);
  if (c->capturing) FAIL(be, "cuda sample: cannot run while a graph is being captured (it waits for its results)");
  /* results nobody collected: dropped, but their copy must have left the staging buffer before it is reused */
  if (c->samp_pending) {
    c->samp_pending = 0;
    CUDA_CHECK(be, cudaEventSynchronize(c->samp_ev));
  }
  if (!c->samp_ev) CUDA_CHECK(be, cudaEventCreateWithFlags(&c->samp_ev, cudaEventDisableTiming));
  const int V = (int)logits->cols;

  /* validate every row and size the staging: the penalty tokens of rows with penalties only */
  size_t ntok = 0, nmask = 0;
  int any_pen = 0;
  const size_t W = ((size_t)V + 31) / 32;
  for (int r = 0; r < n; r++) {
    const ig_sample_row *s = &rows[r];
    if (s->row < 0 || s->row >= logits->rows)
      FAIL(be, "cuda sample: row %d: logits row %d out of range (0..%lld)", r, s->row, (long long)logits->rows - 1);
    if (s->top_n < 0 || s->top_n > IG_SAMPLE_MAX_TOP)
      FAIL(be, "cuda sample: row %d: top_n %d outside 0..%d", r, s->top_n, IG_SAMPLE_MAX_TOP);
    if (s->do_sample) {
      if (!(s->temperature > 0.0f) || !isfinite(s->temperature))
        FAIL(be, "cuda sample: row %d: temperature %g when sampling (must be finite and > 0)", r,
             (double)s->temperature);
      if (!(s->uniform >= 0.0 && s->uniform < 1.0))
        FAIL(be, "cuda sample: row %d: uniform %g outside [0, 1)", r, s->uniform);
    }
    int rep = s->repetition_penalty > 0.0f && s->repetition_penalty != 1.0f;
    int fp = s->frequency_penalty != 0.0f || s->presence_penalty != 0.0f;
    if (rep && !isfinite(s->repetition_penalty)) FAIL(be, "cuda sample: row %d: repetition_penalty is not finite", r);
    if (fp && (!isfinite(s->frequency_penalty) || !isfinite(s->presence_penalty)))
      FAIL(be, "cuda sample: row %d: frequency/presence penalty is not finite", r);
    if (rep || fp) {
      if (s->n_tokens < 0 || s->n_prompt < 0 || s->n_prompt > s->n_tokens)
        FAIL(be, "cuda sample: row %d: bad token counts (n_tokens %d, n_prompt %d)", r, s->n_tokens, s->n_prompt);
      if (s->n_tokens > 0 && !s->tokens) FAIL(be, "cuda sample: row %d: tokens is NULL", r);
      int cnt = s->n_tokens - (rep ? 0 : s->n_prompt);
      if (cnt > 0) any_pen = 1;
      ntok += (size_t)cnt;
      if (ntok > (size_t)INT_MAX / 4) FAIL(be, "cuda sample: too many penalty tokens (%zu)", ntok);
    }
    if (s->allowed) nmask++;
  }
  if (ntok + nmask * W > (size_t)INT_MAX / 4) FAIL(be, "cuda sample: too many penalty tokens and masks");

  const size_t par_bytes = SP_ALIGN((size_t)n * sizeof(sp_param));
  const size_t in_bytes = SP_ALIGN(par_bytes + (ntok + nmask * W) * sizeof(int32_t));
  const size_t out_bytes = SP_ALIGN((size_t)n * sizeof(ig_sample_out));
  const size_t pen_bytes = SP_ALIGN(ntok * sizeof(int32_t) + 4);
  /* plain greedy rows run their pass split over slices of SP_SLICE entries (sample_parts_kernel;
   * IGNIS_CUDA_SAMPLE_SPLIT=0: one block per row) */
  int nsplit = 0;
  if (c->sample_split) {
    for (int r = 0; r < n && !nsplit; r++) /* any row sp_split_row takes (its flags are set below, as here) */
      if (!rows[r].do_sample && rows[r].top_n == 0 && !(rows[r].repetition_penalty > 0.0f && rows[r].repetition_penalty != 1.0f) &&
          rows[r].frequency_penalty == 0.0f && rows[r].presence_penalty == 0.0f)
        nsplit = (V + SP_SLICE - 1) / SP_SLICE < SP_SLICES_MAX ? (V + SP_SLICE - 1) / SP_SLICE : SP_SLICES_MAX;
    if (nsplit == 1) nsplit = 0; /* one slice: the one-block pass */
  }
  const size_t parts_bytes = SP_ALIGN((size_t)n * (size_t)nsplit * sizeof(sp_part));
  if (sp_grow(be, &c->samp_host, &c->samp_host_size, in_bytes + out_bytes, 1)) return -1;
  if (sp_grow(be, &c->samp_dev, &c->samp_dev_size, in_bytes + out_bytes + pen_bytes + parts_bytes, 0)) return -1;
  char *h = (char *)c->samp_host;
  sp_param *hp = (sp_param *)h;
  int32_t *ht = (int32_t *)(h + par_bytes);
  size_t to = 0;
  for (int r = 0; r < n; r++) {
    const ig_sample_row *s = &rows[r];
    sp_param *q = &hp[r];
    memset(q, 0, sizeof *q);
    q->row = s->row;
    q->top_n = s->top_n;
    q->temp = s->temperature, q->top_p = s->top_p, q->typical_p = s->typical_p;
    q->rep = s->repetition_penalty, q->freq = s->frequency_penalty, q->pres = s->presence_penalty;
    q->uniform = s->uniform;
    q->top_k = s->top_k;
    q->target = s->do_sample ? -1 : s->target;
    int f = 0;
    int rep = s->repetition_penalty > 0.0f && s->repetition_penalty != 1.0f;
    int fp = s->frequency_penalty != 0.0f || s->presence_penalty != 0.0f;
    if (rep || fp) {
      int j0 = rep ? 0 : s->n_prompt, cnt = s->n_tokens - j0;
      if (cnt > 0) {
        memcpy(ht + to, s->tokens + j0, (size_t)cnt * sizeof(int32_t));
        q->tok_off = (int)to, q->tok_n = cnt, q->pen_off = (int)to;
        q->gen_start = rep ? s->n_prompt : 0;
        to += (size_t)cnt;
        f |= (rep ? SPF_REP : 0) | (fp ? SPF_FP : 0);
      }
    }
    if (s->do_sample) {
      f |= SPF_SAMPLE | SPF_LSE;
      if (s->temperature != 1.0f) f |= SPF_TEMP;
      if (s->top_k > 0 && s->top_k < V) f |= SPF_TOPK;
      if (s->top_p > 0.0f && s->top_p < 1.0f) f |= SPF_TOPP;
      if (s->typical_p > 0.0f && s->typical_p < 1.0f) f |= SPF_TYP;
    }
    if (s->want_logprob || s->top_n > 0) f |= SPF_LSE;
    q->flags = f;
    q->mask_off = -1;
  }
  for (int r = 0; r < n; r++) /* the allowed-token bitmaps after every penalty token */
    if (rows[r].allowed) {
      memcpy(ht + to, rows[r].allowed, W * sizeof(uint32_t));
      hp[r].mask_off = (int)to;
      to += W;
    }

  /* penalties: bitmap and prefix of ceil(V/32) words each in dynamic shared memory */
  size_t dyn = any_pen ? 2 * (size_t)((V + 31) / 32) * sizeof(uint32_t) : 0;
  if (dyn) {
    int optin = 0;
    cudaFuncAttributes fa;
    CUDA_CHECK(be, cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, c->device));
    CUDA_CHECK(be, cudaFuncGetAttributes(&fa, sample_kernel));
    if (dyn + fa.sharedSizeBytes > (size_t)optin)
      FAIL(be, "cuda sample: vocabulary of %d entries is too large for penalties on the device (%zu bytes of shared "
               "memory)", V, dyn + fa.sharedSizeBytes);
    CUDA_CHECK(be, cudaFuncSetAttribute(sample_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)dyn));
  }
  if (sp_run(be, logits, n, V, dyn, par_bytes + to * sizeof(int32_t), par_bytes, in_bytes, out_bytes,
             in_bytes + out_bytes + pen_bytes, nsplit)) {
    (void)cudaStreamSynchronize(c->st); /* the staging buffer is not reused while a copy may still read it */
    return -1;
  }
  /* in flight: the host neither reads nor writes the staging buffer until cu_sample_wait (or the next cu_sample)
   * has waited for samp_ev */
  c->samp_out = out, c->samp_n = n, c->samp_off = in_bytes, c->samp_pending = 1;
  return 0;
}
