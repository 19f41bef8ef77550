/* bench/rng: a small seedable PRNG (xoshiro256**, seeded by splitmix64) for prompts and Poisson arrivals,
 * so a benchmark run with the same --seed sends the same prompts at the same planned times. */
#ifndef IG_BENCH_RNG_H
#define IG_BENCH_RNG_H
#include <stdint.h>

typedef struct ig_bench_rng {
  uint64_t s[4];
} ig_bench_rng;

void ig_bench_rng_seed(ig_bench_rng *r, uint64_t seed);
uint64_t ig_bench_rng_next(ig_bench_rng *r);
/* Uniform in [0, 1). */
double ig_bench_rng_uniform(ig_bench_rng *r);
/* Uniform integer in [0, n); n > 0. */
uint32_t ig_bench_rng_below(ig_bench_rng *r, uint32_t n);
/* Exponential with the given rate (mean 1/rate): gaps between Poisson arrivals. */
double ig_bench_rng_exp(ig_bench_rng *r, double rate);

#endif
