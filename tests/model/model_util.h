/* tests/model/model_util: helpers shared by the model tests: a tiny one-engine-free "session" that runs
 * sequences through ig_model_forward with a simple block allocator, greedy argmax. */
#ifndef IG_TESTS_MODEL_UTIL_H
#define IG_TESTS_MODEL_UTIL_H
#include "model/model.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MU_BLOCK 4       /* small blocks exercise the paging */
#define MU_MAX_BLOCKS 64 /* per sequence: 256 tokens */
#define MU_CACHE_BLOCKS (MU_MAX_BLOCKS * 16) /* room for 16 sequences */

typedef struct {
  int32_t blocks[MU_MAX_BLOCKS];
  int len; /* tokens in the cache */
} mu_seq;

static inline int mu_argmax(const float *v, int n) {
  int b = 0;
  for (int i = 1; i < n; i++)
    if (v[i] > v[b]) b = i;
  return b;
}

/* Gives sequence `seq_id` (of at most 16) its blocks, interleaved with the others' so that pages are not
 * contiguous: block of sequence s, index k = k * 16 + s, reversed within the cache. */
static inline void mu_seq_init(mu_seq *s, int seq_id, int n_blocks_total) {
  memset(s, 0, sizeof *s);
  for (int k = 0; k < MU_MAX_BLOCKS; k++) s->blocks[k] = n_blocks_total - 1 - (k * 16 + seq_id);
}

/* One step over several sequences: seq i appends toks[i][0..n[i]); logits of every new row (want_all) or
 * of each sequence's last row go to logits (rows in batch order). Returns 0 or -1. */
static inline int mu_step(ig_model *m, mu_seq **seqs, const int32_t *const *toks, const int *n, int n_seqs, int want_all,
                   float *logits, char *err, size_t errlen) {
  int total = 0;
  for (int i = 0; i < n_seqs; i++) total += n[i];
  int32_t *tok = malloc(sizeof(int32_t) * (size_t)total * 4 + sizeof(int32_t) * (size_t)(n_seqs * (MU_MAX_BLOCKS + 3) + 1));
  int32_t *pos = tok + total, *slot = pos + total, *outr = slot + total, *ss = outr + total, *ctx = ss + n_seqs + 1,
          *bt = ctx + n_seqs;
  int r = 0, no = 0;
  for (int i = 0; i < n_seqs; i++) {
    ss[i] = r;
    for (int t = 0; t < n[i]; t++, r++) {
      int p = seqs[i]->len + t;
      tok[r] = toks[i][t];
      pos[r] = p;
      slot[r] = seqs[i]->blocks[p / MU_BLOCK] * MU_BLOCK + p % MU_BLOCK;
      if (want_all || t == n[i] - 1) outr[no++] = r;
    }
    ctx[i] = seqs[i]->len + n[i];
    memcpy(bt + (size_t)i * MU_MAX_BLOCKS, seqs[i]->blocks, sizeof seqs[i]->blocks);
  }
  ss[n_seqs] = r;
  ig_batch b = {total, tok, pos, slot, n_seqs, ss, ctx, MU_MAX_BLOCKS, bt, no, outr, NULL};
  int rc = ig_model_forward(m, &b, logits, err, errlen);
  for (int i = 0; i < n_seqs; i++) seqs[i]->len += n[i];
  free(tok);
  return rc;
}

#endif
