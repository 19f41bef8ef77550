/* bench/rng: xoshiro256** (Blackman & Vigna), state filled by splitmix64 from one 64-bit seed. */
#include "bench/rng.h"
#include <math.h>

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

void ig_bench_rng_seed(ig_bench_rng *r, uint64_t seed) {
  for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t ig_bench_rng_next(ig_bench_rng *r) {
  uint64_t *s = r->s;
  uint64_t out = rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return out;
}

double ig_bench_rng_uniform(ig_bench_rng *r) { return (double)(ig_bench_rng_next(r) >> 11) * 0x1.0p-53; }

uint32_t ig_bench_rng_below(ig_bench_rng *r, uint32_t n) {
  /* Lemire's multiply-shift; the tiny bias is irrelevant for prompt words. */
  return (uint32_t)(((ig_bench_rng_next(r) >> 32) * (uint64_t)n) >> 32);
}

double ig_bench_rng_exp(ig_bench_rng *r, double rate) {
  double u = ig_bench_rng_uniform(r);
  return -log1p(-u) / rate;
}
