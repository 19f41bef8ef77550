/* engine/request: the request object shared by server and engine: allocation, reference counting and the
 * outbox of token events (engine pushes, server takes, both under the request's mutex). */
#include "engine/engine_int.h"
#include "engine/jsonschema.h"
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *ig_finish_reason_name(ig_finish_reason r) {
  switch (r) {
  case IG_FINISH_NONE: return "";
  case IG_FINISH_LENGTH: return "length";
  case IG_FINISH_EOS: return "eos_token";
  case IG_FINISH_STOP: return "stop_sequence";
  case IG_FINISH_CANCELLED: return "cancelled";
  case IG_FINISH_ERROR: return "error";
  }
  return "unknown";
}

int64_t ig_engine_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

ig_request *ig_request_new(void) {
  ig_request *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  pthread_mutex_init(&r->mu, NULL);
  atomic_init(&r->refs, 1);
  atomic_init(&r->cancelled, 0);
  r->params.max_new_tokens = 20;
  r->params.temperature = 1.0f;
  r->params.top_p = 1.0f;
  r->params.typical_p = 1.0f;
  r->params.repetition_penalty = 1.0f;
  return r;
}

void ig_request_ref(ig_request *r) { atomic_fetch_add(&r->refs, 1); }

void ig_token_event_clear(ig_token_event *ev) {
  free(ev->text);
  ev->text = NULL;
}

void ig_request_unref(ig_request *r) {
  if (!r || atomic_fetch_sub(&r->refs, 1) != 1) return;
  free(r->prompt);
  for (int i = 0; i < r->params.n_stop; i++) free(r->params.stop[i]);
  free(r->params.stop);
  free(r->params.bias_id); /* bias_val lives in the same allocation */
  free(r->params.stop_ids);
  ig_jschema_unref(r->params.schema);
  for (int i = r->ev_head; i < r->ev_tail; i++) ig_token_event_clear(&r->events[i]);
  free(r->events);
  free(r->prefill_logprobs);
  free(r->prefill_top);
  pthread_mutex_destroy(&r->mu);
  free(r);
}

int ig_request_take_events(ig_request *r, ig_token_event *out, int max) {
  pthread_mutex_lock(&r->mu);
  int n = r->ev_tail - r->ev_head;
  if (n > max) n = max;
  if (n > 0) memcpy(out, r->events + r->ev_head, sizeof *out * (size_t)n);
  r->ev_head += n;
  if (r->ev_head == r->ev_tail) r->ev_head = r->ev_tail = 0;
  pthread_mutex_unlock(&r->mu);
  return n < 0 ? 0 : n;
}

int ig_request_push_event(ig_request *r, ig_token_event *ev) {
  pthread_mutex_lock(&r->mu);
  if (r->ev_tail == r->ev_cap) {
    if (r->ev_head > 0) { /* compact before growing */
      memmove(r->events, r->events + r->ev_head, sizeof *r->events * (size_t)(r->ev_tail - r->ev_head));
      r->ev_tail -= r->ev_head;
      r->ev_head = 0;
    }
    if (r->ev_tail == r->ev_cap) {
      int cap = r->ev_cap ? r->ev_cap * 2 : 16;
      ig_token_event *p = realloc(r->events, sizeof *p * (size_t)cap);
      if (!p) {
        /* The server must still see the end of the request: finish it without the event. */
        if (ev->finish != IG_FINISH_NONE) {
          r->finished = 1;
          r->finish = IG_FINISH_ERROR;
          snprintf(r->error, sizeof r->error, "out of memory");
          r->t_done = ig_engine_now_ns();
        }
        ig_token_event_clear(ev);
        pthread_mutex_unlock(&r->mu);
        return -ENOMEM;
      }
      r->events = p;
      r->ev_cap = cap;
    }
  }
  r->events[r->ev_tail++] = *ev;
  ev->text = NULL;
  if (ev->id >= 0) r->n_generated++;
  if (ev->finish != IG_FINISH_NONE) {
    r->finished = 1;
    r->finish = ev->finish;
    r->t_done = ig_engine_now_ns();
  }
  pthread_mutex_unlock(&r->mu);
  return 0;
}
