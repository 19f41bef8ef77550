/* engine/kvblocks: see kvblocks.h. */
#include "engine/kvblocks.h"
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

int ig_kvb_init(ig_kvb *m, int n_blocks, int block_size) {
  memset(m, 0, sizeof *m);
  if (n_blocks <= 0 || block_size <= 0) return -EINVAL;
  m->free_ids = malloc(sizeof(int32_t) * (size_t)n_blocks);
  if (!m->free_ids) return -ENOMEM;
  m->n_blocks = n_blocks;
  m->block_size = block_size;
  /* Pushed in reverse so that the first blocks handed out are 0, 1, 2, ... (easier to read in logs). */
  for (int i = 0; i < n_blocks; i++) m->free_ids[i] = n_blocks - 1 - i;
  m->n_stack = m->n_free = n_blocks;
  m->lru_head = m->lru_tail = -1;
  return 0;
}

int ig_kvb_enable_cache(ig_kvb *m) {
  if (m->ref) return 0;
  size_t n = (size_t)m->n_blocks;
  uint32_t nb = 16;
  while (nb < n && nb < (1u << 30)) nb <<= 1;
  m->ref = calloc(n, sizeof(int32_t));
  m->serial = calloc(n, sizeof(uint64_t));
  m->parent = calloc(n, sizeof(uint64_t));
  m->toks = malloc(n * (size_t)m->block_size * sizeof(int32_t));
  m->hnext = malloc(n * sizeof(int32_t));
  m->buckets = malloc(nb * sizeof(int32_t));
  m->lru_prev = malloc(n * sizeof(int32_t));
  m->lru_next = malloc(n * sizeof(int32_t));
  if (!m->ref || !m->serial || !m->parent || !m->toks || !m->hnext || !m->buckets || !m->lru_prev || !m->lru_next) {
    free(m->ref), free(m->serial), free(m->parent), free(m->toks), free(m->hnext), free(m->buckets);
    free(m->lru_prev), free(m->lru_next);
    m->ref = NULL, m->serial = m->parent = NULL, m->toks = m->hnext = m->buckets = m->lru_prev = m->lru_next = NULL;
    return -ENOMEM;
  }
  for (uint32_t i = 0; i < nb; i++) m->buckets[i] = -1;
  m->n_buckets = nb;
  m->next_serial = 1;
  return 0;
}

void ig_kvb_free(ig_kvb *m) {
  free(m->free_ids);
  free(m->ref), free(m->serial), free(m->parent), free(m->toks), free(m->hnext), free(m->buckets);
  free(m->lru_prev), free(m->lru_next);
  memset(m, 0, sizeof *m);
}

/* ---- prefix-cache internals ---- */

static uint32_t key_hash(const ig_kvb *m, uint64_t parent, const int32_t *tokens) {
  uint64_t h = parent * 0x9e3779b97f4a7c15ull + 0x632be59bd9b4e019ull;
  for (int i = 0; i < m->block_size; i++) {
    h ^= (uint32_t)tokens[i];
    h *= 0x100000001b3ull;
    h ^= h >> 29;
  }
  return (uint32_t)(h ^ (h >> 32)) & (m->n_buckets - 1);
}

static int key_find(const ig_kvb *m, uint64_t parent, const int32_t *tokens) {
  for (int b = m->buckets[key_hash(m, parent, tokens)]; b >= 0; b = m->hnext[b])
    if (m->parent[b] == parent && !memcmp(m->toks + (size_t)b * m->block_size, tokens, sizeof(int32_t) * (size_t)m->block_size))
      return b;
  return -1;
}

static void lru_unlink(ig_kvb *m, int b) {
  int p = m->lru_prev[b], n = m->lru_next[b];
  if (p >= 0) m->lru_next[p] = n;
  else m->lru_head = n;
  if (n >= 0) m->lru_prev[n] = p;
  else m->lru_tail = p;
}

static void lru_append(ig_kvb *m, int b) {
  m->lru_prev[b] = m->lru_tail;
  m->lru_next[b] = -1;
  if (m->lru_tail >= 0) m->lru_next[m->lru_tail] = b;
  else m->lru_head = b;
  m->lru_tail = b;
}

/* Forgets registered block b (no reference): out of its hash chain and the kept list. */
static void forget(ig_kvb *m, int b) {
  int32_t *pp = &m->buckets[key_hash(m, m->parent[b], m->toks + (size_t)b * m->block_size)];
  while (*pp != b) {
    assert(*pp >= 0);
    pp = &m->hnext[*pp];
  }
  *pp = m->hnext[b];
  lru_unlink(m, b);
  m->serial[b] = 0;
  m->n_cached--;
  m->evictions++;
}

/* ---- blocks ---- */

/* Room in t for `need` ids. 0 or -ENOMEM (t unchanged). */
static int table_reserve(ig_kvb_table *t, int need) {
  if (need <= t->cap) return 0;
  int cap = t->cap ? t->cap : 8;
  while (cap < need) cap *= 2;
  int32_t *p = realloc(t->ids, sizeof(int32_t) * (size_t)cap);
  if (!p) return -ENOMEM;
  t->ids = p;
  t->cap = cap;
  return 0;
}

int ig_kvb_ensure(ig_kvb *m, ig_kvb_table *t, int n_tokens) {
  int need = ig_kvb_blocks_for(m, n_tokens);
  if (need <= t->n) return 0;
  int extra = need - t->n;
  if (extra > m->n_free) return -ENOSPC;
  if (table_reserve(t, need)) return -ENOMEM;
  for (int i = 0; i < extra; i++) {
    int b;
    if (m->n_stack > 0) {
      b = m->free_ids[--m->n_stack];
    } else { /* the oldest kept cached block */
      b = m->lru_head;
      assert(b >= 0);
      forget(m, b);
    }
    if (m->ref) m->ref[b] = 1;
    t->ids[t->n++] = b;
    m->n_free--;
  }
  assert(m->n_free >= 0);
  return 0;
}

void ig_kvb_release(ig_kvb *m, ig_kvb_table *t) {
  /* Returned in reverse so a sequence re-admitted at once tends to get the same blocks back, and so a chain's
   * deeper blocks are kept as older than the blocks before them (taken back first). */
  for (int i = t->n - 1; i >= 0; i--) {
    int b = t->ids[i];
    assert(b >= 0 && b < m->n_blocks);
    if (m->ref && --m->ref[b] > 0) continue; /* still shared */
    if (m->ref && m->serial[b]) lru_append(m, b);
    else m->free_ids[m->n_stack++] = b;
    m->n_free++;
  }
  assert(m->n_free <= m->n_blocks && m->n_stack <= m->n_free);
  t->n = 0;
}

void ig_kvb_table_free(ig_kvb_table *t) {
  free(t->ids);
  memset(t, 0, sizeof *t);
}

/* ---- prefix cache ---- */

int ig_kvb_match(const ig_kvb *m, const int32_t *tokens, int max_blocks, int32_t *ids, int *live) {
  int n = 0, l = 0;
  uint64_t chain = 0;
  if (m->ref) {
    for (; n < max_blocks; n++) {
      int b = key_find(m, chain, tokens + (size_t)n * m->block_size);
      if (b < 0) break;
      ids[n] = b;
      l += m->ref[b] > 0;
      chain = m->serial[b];
    }
  }
  if (live) *live = l;
  return n;
}

int ig_kvb_attach(ig_kvb *m, ig_kvb_table *t, const int32_t *ids, int n) {
  if (!m->ref || n <= 0) return 0;
  assert(t->n == 0);
  if (table_reserve(t, n)) return -ENOMEM;
  for (int i = 0; i < n; i++) {
    int b = ids[i];
    assert(m->serial[b]);
    if (m->ref[b]++ == 0) {
      lru_unlink(m, b);
      m->n_free--;
    }
    t->ids[t->n++] = b;
  }
  return 0;
}

void ig_kvb_register(ig_kvb *m, const ig_kvb_table *t, int j, const int32_t *tokens, uint64_t *chain) {
  if (!m->ref) return;
  assert(j >= 0 && j < t->n);
  int b = t->ids[j];
  if (m->serial[b]) { /* registered already (it was found, or registered before) */
    *chain = m->serial[b];
    return;
  }
  int other = key_find(m, *chain, tokens);
  if (other >= 0) { /* the same content, computed by another sequence */
    *chain = m->serial[other];
    return;
  }
  m->parent[b] = *chain;
  memcpy(m->toks + (size_t)b * m->block_size, tokens, sizeof(int32_t) * (size_t)m->block_size);
  uint32_t h = key_hash(m, *chain, tokens);
  m->hnext[b] = m->buckets[h];
  m->buckets[h] = b;
  m->serial[b] = m->next_serial++;
  m->n_cached++;
  *chain = m->serial[b];
}

int ig_kvb_cached_free(const ig_kvb *m) {
  if (!m->ref) return 0;
  return m->n_free - m->n_stack;
}
