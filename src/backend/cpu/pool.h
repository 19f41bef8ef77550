/* backend/cpu/pool: a small persistent thread pool. ig_pool_run(fn, n_items) runs fn(ctx, item, ith) once for
 * every item in [0, n_items); the caller (thread 0) and the workers claim items from a shared counter, so a
 * worker that is asleep or descheduled never holds the caller up: whoever is running takes the next item.
 * Results must therefore not depend on which thread runs an item (ith only selects per-thread scratch).
 * Workers spin briefly between runs (a decode step issues hundreds of short ops), then sleep on a condition
 * variable; no thread is created per op. */
#ifndef IG_BACKEND_CPU_POOL_H
#define IG_BACKEND_CPU_POOL_H
#include <stdint.h>

typedef struct ig_pool ig_pool;
typedef void (*ig_pool_fn)(void *ctx, int64_t item, int ith);

ig_pool *ig_pool_create(int n_threads); /* n_threads >= 1; NULL on failure */
void ig_pool_destroy(ig_pool *p);
int ig_pool_size(const ig_pool *p);
void ig_pool_run(ig_pool *p, ig_pool_fn fn, void *ctx, int64_t n_items);

#endif
