/* engine/stopseq: stop sequences matched on the streamed text across token boundaries. Text that could
 * still be the start of a stop sequence is held back (never sent to the client); on a match only the text
 * before the stop sequence is released. */
#ifndef IG_ENGINE_STOPSEQ_H
#define IG_ENGINE_STOPSEQ_H
#include "util/str.h"

typedef struct ig_stopseq {
  char *const *stop; /* borrowed from the request's params */
  int n_stop;
  int include;       /* the matched stop sequence is released too (vLLM's include_stop_str_in_output) */
  ig_str held;       /* text received but not yet released */
} ig_stopseq;

void ig_stopseq_init(ig_stopseq *s, char *const *stop, int n_stop);
void ig_stopseq_free(ig_stopseq *s);
/* Feeds a new text piece; appends to `out` the text that can be released now. Returns 1 when a stop
 * sequence matched (out then ends right before it, or with `include` right after it; the rest is dropped), 0 when
 * not, -ENOMEM. */
int ig_stopseq_feed(ig_stopseq *s, const char *piece, size_t n, ig_str *out);
/* At the end of generation without a match: releases what was held. */
int ig_stopseq_flush(ig_stopseq *s, ig_str *out);

#endif
