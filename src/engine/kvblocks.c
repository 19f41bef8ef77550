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
  m->n_free = n_blocks;
  return 0;
}

void ig_kvb_free(ig_kvb *m) {
  free(m->free_ids);
  memset(m, 0, sizeof *m);
}

int ig_kvb_ensure(ig_kvb *m, ig_kvb_table *t, int n_tokens) {
  int need = ig_kvb_blocks_for(m, n_tokens);
  if (need <= t->n) return 0;
  int extra = need - t->n;
  if (extra > m->n_free) return -ENOSPC;
  if (need > t->cap) {
    int cap = t->cap ? t->cap : 8;
    while (cap < need) cap *= 2;
    int32_t *p = realloc(t->ids, sizeof(int32_t) * (size_t)cap);
    if (!p) return -ENOMEM;
    t->ids = p;
    t->cap = cap;
  }
  for (int i = 0; i < extra; i++) t->ids[t->n++] = m->free_ids[--m->n_free];
  assert(m->n_free >= 0);
  return 0;
}

void ig_kvb_release(ig_kvb *m, ig_kvb_table *t) {
  /* Returned in reverse so a sequence re-admitted at once tends to get the same blocks back. */
  for (int i = t->n - 1; i >= 0; i--) {
    assert(t->ids[i] >= 0 && t->ids[i] < m->n_blocks);
    m->free_ids[m->n_free++] = t->ids[i];
  }
  assert(m->n_free <= m->n_blocks);
  t->n = 0;
}

void ig_kvb_table_free(ig_kvb_table *t) {
  free(t->ids);
  memset(t, 0, sizeof *t);
}
