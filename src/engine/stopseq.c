/* engine/stopseq: see stopseq.h. The held text is at most the longest stop sequence minus one byte, so each
 * feed costs O(len(held) + len(piece)) per stop sequence. */
#include "engine/stopseq.h"
#include <errno.h>
#include <string.h>

void ig_stopseq_init(ig_stopseq *s, char *const *stop, int n_stop) {
  s->stop = stop;
  s->n_stop = n_stop;
  s->include = 0;
  ig_str_init(&s->held);
}

void ig_stopseq_free(ig_stopseq *s) { ig_str_free(&s->held); }

/* Longest k < len(stop) such that text ends with stop[0..k). */
static size_t partial_suffix(const char *text, size_t n, const char *stop, size_t slen) {
  size_t k = slen - 1 < n ? slen - 1 : n;
  for (; k > 0; k--)
    if (memcmp(text + n - k, stop, k) == 0) return k;
  return 0;
}

int ig_stopseq_feed(ig_stopseq *s, const char *piece, size_t n, ig_str *out) {
  if (s->n_stop == 0) return ig_str_append(out, piece, n) ? -ENOMEM : 0;
  if (ig_str_append(&s->held, piece, n)) return -ENOMEM;
  const char *t = s->held.p ? s->held.p : "";
  size_t tn = s->held.len;
  /* The earliest match wins (the text before it is what a client must see). */
  const char *first = NULL;
  size_t first_len = 0;
  for (int i = 0; i < s->n_stop; i++) {
    size_t sl = strlen(s->stop[i]);
    if (sl == 0) continue;
    const char *m = memmem(t, tn, s->stop[i], sl);
    if (m && (!first || m < first || (m == first && sl > first_len))) first = m, first_len = sl;
  }
  if (first) {
    int rc = ig_str_append(out, t, (size_t)(first - t) + (s->include ? first_len : 0));
    ig_str_clear(&s->held);
    return rc ? -ENOMEM : 1;
  }
  size_t hold = 0;
  for (int i = 0; i < s->n_stop; i++) {
    size_t sl = strlen(s->stop[i]);
    if (sl == 0) continue;
    size_t k = partial_suffix(t, tn, s->stop[i], sl);
    if (k > hold) hold = k;
  }
  /* hold starts where a stop sequence starts, so it is on a character boundary of valid UTF-8 text. */
  if (ig_str_append(out, t, tn - hold)) return -ENOMEM;
  memmove(s->held.p, t + tn - hold, hold);
  s->held.len = hold;
  s->held.p[hold] = 0;
  return 0;
}

int ig_stopseq_flush(ig_stopseq *s, ig_str *out) {
  int rc = s->held.len ? ig_str_append(out, s->held.p, s->held.len) : 0;
  ig_str_clear(&s->held);
  return rc ? -ENOMEM : 0;
}
