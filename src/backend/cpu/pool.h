/* backend/cpu/pool: a small persistent thread pool. ig_pool_run(fn) runs fn(ctx, i, n) on all n threads (the
 * caller is thread 0) and returns when every thread is done. Workers spin briefly between runs (a decode
 * step issues hundreds of short ops) and then sleep on a condition variable; no thread is created per op. */
#ifndef IG_BACKEND_CPU_POOL_H
#define IG_BACKEND_CPU_POOL_H

typedef struct ig_pool ig_pool;
typedef void (*ig_pool_fn)(void *ctx, int ith, int nth);

ig_pool *ig_pool_create(int n_threads); /* n_threads >= 1; NULL on failure */
void ig_pool_destroy(ig_pool *p);
int ig_pool_size(const ig_pool *p);
void ig_pool_run(ig_pool *p, ig_pool_fn fn, void *ctx);

#endif
