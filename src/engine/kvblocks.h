/* engine/kvblocks: the paged KV-cache block manager. The cache is n_blocks fixed-size blocks of block_size
 * tokens; a sequence owns a block table (physical block ids in order) that grows as it does. Blocks come
 * from a LIFO free list; accounting is exact (used + free == total at all times). Engine thread only.
 *
 * Prefix cache (ig_kvb_enable_cache): a full block whose K/V are final can be registered under its content,
 * the key (serial of the block before it in its sequence, its block_size tokens); a block's serial names that
 * content chain (0 for "no block before"). A later sequence whose tokens start the same way finds the chain
 * block by block (ig_kvb_match) and shares those blocks (ig_kvb_attach: reference counts). A registered block
 * whose last reference goes is not freed but kept, least recently released first out, until an allocation needs
 * it (it is then forgotten: chains below it become unreachable and age out the same way). Keys compare the tokens
 * themselves, never a hash alone. Blocks kept this way count as free (n_free): caching never lowers capacity. */
#ifndef IG_ENGINE_KVBLOCKS_H
#define IG_ENGINE_KVBLOCKS_H
#include <stdint.h>

typedef struct ig_kvb {
  int n_blocks, block_size;
  int32_t *free_ids; /* stack of free blocks that hold nothing cached */
  int n_stack;
  int n_free;        /* blocks nobody references: the stack plus the cached ones kept */
  /* prefix cache; NULL arrays when off */
  int32_t *ref;       /* [n_blocks] references (sequences holding the block) */
  uint64_t *serial;   /* [n_blocks] 0: not registered */
  uint64_t *parent;   /* [n_blocks] key: serial of the chain before it */
  int32_t *toks;      /* [n_blocks * block_size] key: its tokens */
  int32_t *hnext;     /* [n_blocks] hash chain */
  int32_t *buckets;   /* [n_buckets] first block of each hash chain, -1 none */
  uint32_t n_buckets;
  int32_t *lru_prev, *lru_next; /* cached blocks with no reference, oldest first */
  int32_t lru_head, lru_tail;
  int n_cached;       /* registered blocks (referenced or kept) */
  uint64_t next_serial;
  long long evictions;
} ig_kvb;

typedef struct ig_kvb_table {
  int32_t *ids;
  int n, cap;
} ig_kvb_table;

int ig_kvb_init(ig_kvb *m, int n_blocks, int block_size); /* 0 or -ENOMEM */
/* Turns the prefix cache on (once, before any block is handed out). 0 or -ENOMEM. */
int ig_kvb_enable_cache(ig_kvb *m);
void ig_kvb_free(ig_kvb *m);
static inline int ig_kvb_used(const ig_kvb *m) { return m->n_blocks - m->n_free; }
/* Blocks needed to hold n_tokens tokens. */
static inline int ig_kvb_blocks_for(const ig_kvb *m, int64_t n_tokens) {
  return (int)((n_tokens + m->block_size - 1) / m->block_size);
}
/* Grows t so it holds at least n_tokens tokens: all or nothing. 0, -ENOSPC (not enough free blocks; t is
 * unchanged) or -ENOMEM. May take back kept cached blocks (oldest first). */
int ig_kvb_ensure(ig_kvb *m, ig_kvb_table *t, int n_tokens);
/* Drops t's reference to each of its blocks (a registered block is kept, the others are freed); t stays usable
 * (empty). */
void ig_kvb_release(ig_kvb *m, ig_kvb_table *t);
void ig_kvb_table_free(ig_kvb_table *t); /* frees the array; call release first */
/* KV slot of token position pos of t: block * block_size + offset. */
static inline int32_t ig_kvb_slot(const ig_kvb *m, const ig_kvb_table *t, int pos) {
  return t->ids[pos / m->block_size] * m->block_size + pos % m->block_size;
}

/* ---- prefix cache (every call is a no-op returning 0 when it is off) ---- */
/* The registered chain of tokens[0 .. max_blocks * block_size): up to max_blocks leading blocks found, their ids
 * into ids[] (room for max_blocks). *live (may be NULL): how many of them are referenced already (the others
 * leave the free count when attached). Changes nothing. */
int ig_kvb_match(const ig_kvb *m, const int32_t *tokens, int max_blocks, int32_t *ids, int *live);
/* Appends blocks ids[0..n) (from ig_kvb_match, no allocation since) to the empty table t, each referenced once
 * more. 0 or -ENOMEM (t unchanged). */
int ig_kvb_attach(ig_kvb *m, ig_kvb_table *t, const int32_t *ids, int n);
/* Registers block j of t (its tokens: tokens[0..block_size)) after the chain `*chain` (0 for the first block),
 * and sets *chain to the serial that names the chain through it: the block's own serial, or that of a block
 * already registered with the same key (t's block then stays unregistered and is freed at release). A block
 * that is registered already just reports its serial. */
void ig_kvb_register(ig_kvb *m, const ig_kvb_table *t, int j, const int32_t *tokens, uint64_t *chain);
/* Registered blocks kept with no reference (free, but holding a reusable prefix). */
int ig_kvb_cached_free(const ig_kvb *m);

#endif
