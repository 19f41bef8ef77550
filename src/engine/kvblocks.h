/* engine/kvblocks: the paged KV-cache block manager. The cache is n_blocks fixed-size blocks of block_size
 * tokens; a sequence owns a block table (physical block ids in order) that grows as it does. Blocks come
 * from a LIFO free list; accounting is exact (used + free == total at all times). Engine thread only. */
#ifndef IG_ENGINE_KVBLOCKS_H
#define IG_ENGINE_KVBLOCKS_H
#include <stdint.h>

typedef struct ig_kvb {
  int n_blocks, block_size;
  int32_t *free_ids; /* stack of free block ids */
  int n_free;
} ig_kvb;

typedef struct ig_kvb_table {
  int32_t *ids;
  int n, cap;
} ig_kvb_table;

int ig_kvb_init(ig_kvb *m, int n_blocks, int block_size); /* 0 or -ENOMEM */
void ig_kvb_free(ig_kvb *m);
static inline int ig_kvb_used(const ig_kvb *m) { return m->n_blocks - m->n_free; }
/* Blocks needed to hold n_tokens tokens. */
static inline int ig_kvb_blocks_for(const ig_kvb *m, int64_t n_tokens) {
  return (int)((n_tokens + m->block_size - 1) / m->block_size);
}
/* Grows t so it holds at least n_tokens tokens: all or nothing. 0, -ENOSPC (not enough free blocks; t is
 * unchanged) or -ENOMEM. */
int ig_kvb_ensure(ig_kvb *m, ig_kvb_table *t, int n_tokens);
/* Returns every block of t to the free list; t stays usable (empty). */
void ig_kvb_release(ig_kvb *m, ig_kvb_table *t);
void ig_kvb_table_free(ig_kvb_table *t); /* frees the array; call release first */
/* KV slot of token position pos of t: block * block_size + offset. */
static inline int32_t ig_kvb_slot(const ig_kvb *m, const ig_kvb_table *t, int pos) {
  return t->ids[pos / m->block_size] * m->block_size + pos % m->block_size;
}

#endif
