/* tests/tp/tp_sched: the schedule the tensor-parallel tests run on a model (CPU and GPU alike): two sequences, a
 * 60-token prefill with logits of every row, then decode steps of the first beside the second's prompt in chunks
 * of 7, then both decoding (greedy); every logits row and the greedy ids are kept for comparison. */
#ifndef IG_TESTS_TP_SCHED_H
#define IG_TESTS_TP_SCHED_H
#include "model_util.h"
#include <math.h>
#include <stdio.h>

#define NSEQ 2
#define NSTEP 12
static const int plen[NSEQ] = {60, 15};
#define CHUNK 7

typedef struct {
  float *rows;  /* every logits row produced, in order */
  int n_rows;
  int32_t ids[NSEQ][NSTEP + 1]; /* greedy ids of each sequence */
  int n_ids[NSEQ];
} trace;

static inline uint32_t lcg(uint32_t *s) { return *s = *s * 1664525u + 1013904223u, *s >> 8; }

static inline int run_schedule(ig_model *m, trace *t, char *err, size_t errlen) {
  int V = ig_model_get_info(m)->vocab_size;
  memset(t, 0, sizeof *t);
  int32_t prompt[NSEQ][64];
  uint32_t seed = 7;
  for (int s = 0; s < NSEQ; s++)
    for (int i = 0; i < plen[s]; i++) prompt[s][i] = (int32_t)(lcg(&seed) % (uint32_t)V);
  t->rows = malloc(sizeof(float) * (size_t)V * 512);
  float *lg = malloc(sizeof(float) * (size_t)V * 128);
  mu_seq seqs[NSEQ];
  for (int s = 0; s < NSEQ; s++) mu_seq_init(&seqs[s], s, MU_CACHE_BLOCKS);
  int fed[NSEQ] = {0, 0}; /* prompt tokens fed */
  int rc = 0;
  /* step 0: sequence 0's prompt, logits of every row; steps 1..: sequence 0 decodes while sequence 1 prefills
   * in chunks, then both decode */
  for (int step = 0; step <= NSTEP && !rc; step++) {
    mu_seq *sp[NSEQ];
    const int32_t *tp[NSEQ];
    int n[NSEQ], who[NSEQ], k = 0;
    for (int s = 0; s < NSEQ; s++) {
      if (s == 1 && step == 0) continue;
      if (fed[s] < plen[s]) {
        int c = s == 0 ? plen[0] : (plen[s] - fed[s] < CHUNK ? plen[s] - fed[s] : CHUNK);
        tp[k] = prompt[s] + fed[s], n[k] = c;
        fed[s] += c;
      } else {
        tp[k] = &t->ids[s][t->n_ids[s] - 1], n[k] = 1;
      }
      sp[k] = &seqs[s], who[k++] = s;
    }
    int total = 0;
    for (int i = 0; i < k; i++) total += n[i];
    if ((rc = mu_step(m, sp, tp, n, k, 1, lg, err, errlen))) break;
    memcpy(t->rows + (size_t)t->n_rows * V, lg, sizeof(float) * (size_t)V * (size_t)total);
    t->n_rows += total;
    /* greedy next id of each sequence whose prompt is done */
    for (int i = 0, r = 0; i < k; i++) {
      r += n[i];
      int s = who[i];
      if (fed[s] == plen[s] && t->n_ids[s] <= NSTEP) t->ids[s][t->n_ids[s]++] = mu_argmax(lg + (size_t)(r - 1) * V, V);
    }
  }
  free(lg);
  return rc;
}

static inline double rel_l2(const float *a, const float *ref, int n) {
  double num = 0, den = 0;
  for (int i = 0; i < n; i++) {
    num += ((double)a[i] - ref[i]) * ((double)a[i] - ref[i]);
    den += (double)ref[i] * ref[i];
  }
  return sqrt(num / (den > 0 ? den : 1e-30));
}

#endif
