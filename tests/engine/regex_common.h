/* tests/engine/regex_common.h: a compiled regex's automaton checked whole, shared by test_regex and the regex fuzz
 * target. */
#ifndef IG_TESTS_REGEX_COMMON_H
#define IG_TESTS_REGEX_COMMON_H
#include "engine/regex.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Every state reachable from the start steps in range and is live (some path reaches an accepting state: a
 * search backwards from the accepting states). */
static int dfa_sound(const ig_regex *r) {
  uint32_t n = ig_regex_n_states(r);
  if (!n || ig_regex_start(r) >= n) return 0;
  uint8_t *reach = calloc(n, 1), *live = calloc(n, 1);
  uint32_t *queue = malloc(n * sizeof *queue), *off = calloc((size_t)n + 1, sizeof *off);
  if (!reach || !live || !queue || !off) abort();
  uint32_t head = 0, tail = 0;
  size_t edges = 0;
  int ok = 1;
  reach[ig_regex_start(r)] = 1, queue[tail++] = ig_regex_start(r);
  while (head < tail) {
    uint32_t s = queue[head++];
    for (int c = 0; c < 256; c++) {
      int32_t t = ig_regex_step(r, s, (unsigned char)c);
      if (t < -1 || t >= (int32_t)n) ok = 0, t = -1;
      if (t < 0) continue;
      off[t + 1]++, edges++;
      if (!reach[t]) reach[t] = 1, queue[tail++] = (uint32_t)t;
    }
  }
  for (uint32_t s = 0; s < n; s++) off[s + 1] += off[s];
  uint32_t *rev = malloc((edges + 1) * sizeof *rev), *fill = malloc(((size_t)n + 1) * sizeof *fill);
  if (!rev || !fill) abort();
  memcpy(fill, off, ((size_t)n + 1) * sizeof *fill);
  for (uint32_t s = 0; s < n; s++)
    for (int c = 0; c < 256 && reach[s]; c++) {
      int32_t t = ig_regex_step(r, s, (unsigned char)c);
      if (t >= 0 && t < (int32_t)n) rev[fill[t]++] = s;
    }
  head = tail = 0;
  for (uint32_t s = 0; s < n; s++)
    if (reach[s] && ig_regex_accepting(r, s)) live[s] = 1, queue[tail++] = s;
  while (head < tail) {
    uint32_t s = queue[head++];
    for (uint32_t i = off[s]; i < off[s + 1]; i++)
      if (!live[rev[i]]) live[rev[i]] = 1, queue[tail++] = rev[i];
  }
  for (uint32_t s = 0; s < n; s++)
    if (reach[s] && !live[s]) ok = 0;
  free(reach), free(live), free(queue), free(off), free(rev), free(fill);
  return ok;
}

/* The shortest text over the bytes alpha[0..n_alpha) that takes the DFA from state s to an accepting state: its
 * length, the text in a malloc'd *out (the caller frees; NULL when there is none), -1 when none exists. A step out
 * of range aborts. A breadth-first search. */
static long shortest_accepted(const ig_regex *r, uint32_t s, const unsigned char *alpha, int n_alpha,
                              unsigned char **out) {
  uint32_t n = ig_regex_n_states(r);
  int32_t *from = malloc(n * sizeof *from);
  unsigned char *by = malloc(n);
  uint32_t *queue = malloc(n * sizeof *queue), head = 0, tail = 0;
  if (!from || !by || !queue) abort();
  for (uint32_t i = 0; i < n; i++) from[i] = -2;
  from[s] = -1, queue[tail++] = s;
  int64_t found = -1;
  while (head < tail && found < 0) {
    uint32_t u = queue[head++];
    if (ig_regex_accepting(r, u)) {
      found = u;
      break;
    }
    for (int i = 0; i < n_alpha; i++) {
      int32_t t = ig_regex_step(r, u, alpha[i]);
      if (t < -1 || t >= (int32_t)n) abort();
      if (t >= 0 && from[t] == -2) from[t] = (int32_t)u, by[t] = alpha[i], queue[tail++] = (uint32_t)t;
    }
  }
  long len = -1;
  *out = NULL;
  if (found >= 0) {
    len = 0;
    for (int32_t v = (int32_t)found; from[v] >= 0; v = from[v]) len++;
    if (!(*out = malloc((size_t)len + 1))) abort();
    long k = len;
    for (int32_t v = (int32_t)found; from[v] >= 0; v = from[v]) (*out)[--k] = by[v];
  }
  free(from), free(by), free(queue);
  return len;
}

#endif
