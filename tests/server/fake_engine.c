/* tests/server/fake_engine: see fake_engine.h. Implements the ig_request_* functions of engine.h too. */
#include "fake_engine.h"
#include "engine/jsonschema.h"
#include "util/str.h"
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static atomic_int live;
int fake_engine_live_requests(void) { return atomic_load(&live); }

static long long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

ig_request *ig_request_new(void) {
  ig_request *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  pthread_mutex_init(&r->mu, NULL);
  atomic_store(&r->refs, 1);
  atomic_fetch_add(&live, 1);
  return r;
}
void ig_request_ref(ig_request *r) { atomic_fetch_add(&r->refs, 1); }
void ig_token_event_clear(ig_token_event *ev) {
  free(ev->text);
  ev->text = NULL;
}
void ig_request_unref(ig_request *r) {
  if (atomic_fetch_sub(&r->refs, 1) != 1) return;
  for (int i = r->ev_head; i < r->ev_tail; i++) ig_token_event_clear(&r->events[i]);
  free(r->events);
  free(r->prompt);
  for (int i = 0; i < r->params.n_stop; i++) free(r->params.stop[i]);
  free(r->params.stop);
  ig_jschema_unref(r->params.schema);
  free(r->prefill_logprobs);
  free(r->prefill_top);
  pthread_mutex_destroy(&r->mu);
  free(r);
  atomic_fetch_sub(&live, 1);
}
int ig_request_take_events(ig_request *r, ig_token_event *out, int max) {
  pthread_mutex_lock(&r->mu);
  int n = 0;
  while (n < max && r->ev_head < r->ev_tail) out[n++] = r->events[r->ev_head++];
  pthread_mutex_unlock(&r->mu);
  return n;
}
const char *ig_finish_reason_name(ig_finish_reason r) { return r == IG_FINISH_EOS ? "eos_token" : "length"; }

static void push(ig_request *r, ig_token_event *ev) {
  pthread_mutex_lock(&r->mu);
  if (r->ev_tail == r->ev_cap) {
    if (r->ev_head > 0) {
      memmove(r->events, r->events + r->ev_head, (size_t)(r->ev_tail - r->ev_head) * sizeof *r->events);
      r->ev_tail -= r->ev_head;
      r->ev_head = 0;
    }
    if (r->ev_tail == r->ev_cap) {
      r->ev_cap = r->ev_cap ? r->ev_cap * 2 : 16;
      r->events = realloc(r->events, (size_t)r->ev_cap * sizeof *r->events);
    }
  }
  r->events[r->ev_tail++] = *ev;
  if (ev->finish) {
    r->finished = 1;
    r->finish = ev->finish;
  }
  pthread_mutex_unlock(&r->mu);
}

/* ---- the fake engine ---------------------------------------------------------------------------------- */

struct fake_engine {
  pthread_t th;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  ig_request *run[1024];
  int n_run, max_conc, quit;
};

static int contains(const ig_request *r, const char *word) {
  int n = (int)strlen(word);
  for (int i = 0; i + n <= r->n_prompt; i++) {
    int k = 0;
    while (k < n && r->prompt[i + k] == (unsigned char)word[k] + 3) k++;
    if (k == n) return 1;
  }
  return 0;
}

static void step_one(ig_request *r) {
  ig_token_event ev;
  memset(&ev, 0, sizeof ev);
  int i = r->n_generated;
  long sum = 0;
  for (int k = 0; k < r->n_prompt; k++) sum += r->prompt[k];
  if (r->n_generated == 0) {
    r->t_first_scheduled = now_ns();
    if (r->params.prefill_logprobs) {
      r->prefill_logprobs = malloc((size_t)r->n_prompt * sizeof(float));
      for (int k = 0; k < r->n_prompt; k++) r->prefill_logprobs[k] = k == 0 ? NAN : -1.0f - k * 0.01f;
      int tn = r->params.prefill_top_n;
      if (tn > 0) { /* row 0 none, then the letters 'a', 'b', ... */
        r->prefill_top = malloc((size_t)r->n_prompt * (size_t)tn * sizeof *r->prefill_top);
        for (int k = 0; k < r->n_prompt * tn; k++) {
          r->prefill_top[k].id = k < tn ? -1 : 'a' + 3 + k % tn;
          r->prefill_top[k].logprob = -0.5f - (float)(k % tn);
        }
      }
    }
  }
  if (atomic_load(&r->cancelled)) {
    ev.id = -1;
    ev.finish = IG_FINISH_CANCELLED;
  } else if (r->params.max_new_tokens == 0) { /* the prompt only: one event of no token */
    ev.id = -1;
    ev.finish = IG_FINISH_LENGTH;
  } else if (contains(r, "FAIL") && i == 2) {
    ev.id = -1;
    ev.finish = IG_FINISH_ERROR;
    pthread_mutex_lock(&r->mu);
    snprintf(r->error, sizeof r->error, "fake failure");
    pthread_mutex_unlock(&r->mu);
  } else if (contains(r, "EOS") && i == 3 && !r->params.ignore_eos) {
    ev.id = 2;
    ev.special = 1;
    ev.text = strdup("</s>");
    ev.logprob = -0.25f;
    ev.finish = IG_FINISH_EOS;
  } else {
    char c = (char)('a' + (sum + i + (r->params.do_sample ? (long)(r->params.seed % 7) : 0)) % 26);
    ev.id = c + 3;
    ev.text = malloc(2);
    ev.text[0] = c;
    ev.text[1] = 0;
    ev.logprob = -0.5f - 0.01f * i;
    ev.n_top = r->params.top_n_tokens;
    for (int k = 0; k < ev.n_top; k++) {
      ev.top_ids[k] = 'a' + 3 + k;
      ev.top_logprobs[k] = -0.5f - k;
    }
    if (i + 1 >= r->params.max_new_tokens) ev.finish = IG_FINISH_LENGTH;
  }
  if (ev.id >= 0) r->n_generated++;
  if (r->n_generated == 1 && ev.id >= 0) r->t_first_token = now_ns();
  if (ev.finish) r->t_done = now_ns();
  push(r, &ev);
  if (r->wake) r->wake(r->wake_arg);
}

static void *engine_main(void *arg) {
  fake_engine *e = arg;
  pthread_mutex_lock(&e->mu);
  for (;;) {
    while (!e->n_run && !e->quit) pthread_cond_wait(&e->cv, &e->mu);
    if (e->quit && !e->n_run) break;
    int slow = 0;
    for (int k = 0; k < e->n_run; k++) {
      ig_request *r = e->run[k];
      if (e->quit) atomic_store(&r->cancelled, 1);
      slow |= contains(r, "SLOW");
      step_one(r);
      if (r->finished) {
        e->run[k] = e->run[--e->n_run];
        k--;
        ig_request_unref(r);
      }
    }
    pthread_mutex_unlock(&e->mu);
    usleep(slow ? 20000 : 200);
    pthread_mutex_lock(&e->mu);
  }
  pthread_mutex_unlock(&e->mu);
  return NULL;
}

fake_engine *fake_engine_start(int max_concurrent) {
  fake_engine *e = calloc(1, sizeof *e);
  pthread_mutex_init(&e->mu, NULL);
  pthread_cond_init(&e->cv, NULL);
  e->max_conc = max_concurrent;
  pthread_create(&e->th, NULL, engine_main, e);
  return e;
}

void fake_engine_stop(fake_engine *e) {
  pthread_mutex_lock(&e->mu);
  e->quit = 1;
  pthread_cond_signal(&e->cv);
  pthread_mutex_unlock(&e->mu);
  pthread_join(e->th, NULL);
  pthread_mutex_destroy(&e->mu);
  pthread_cond_destroy(&e->cv);
  free(e);
}

static int f_submit(void *ctx, ig_request *r, char *err, size_t errlen) {
  fake_engine *e = ctx;
  pthread_mutex_lock(&e->mu);
  if (e->n_run >= e->max_conc || e->n_run >= 1024) {
    pthread_mutex_unlock(&e->mu);
    return -EAGAIN;
  }
  ig_request_ref(r);
  r->t_queued = now_ns();
  e->run[e->n_run++] = r;
  pthread_cond_signal(&e->cv);
  pthread_mutex_unlock(&e->mu);
  return 0;
}

static int f_tokenize(void *ctx, const char *text, size_t len, int add_special, int32_t **ids, uint32_t **offsets,
                      char *err, size_t errlen) {
  int n = (int)len + (add_special ? 1 : 0);
  int32_t *p = malloc((size_t)(n ? n : 1) * sizeof *p);
  uint32_t *o = offsets ? malloc((size_t)(n ? n : 1) * 2 * sizeof *o) : NULL;
  int k = 0;
  if (add_special) {
    if (o) o[0] = o[1] = 0;
    p[k++] = 1;
  }
  for (size_t i = 0; i < len; i++, k++) {
    p[k] = (unsigned char)text[i] + 3;
    if (o) {
      o[2 * k] = (uint32_t)i;
      o[2 * k + 1] = (uint32_t)i + 1;
    }
  }
  *ids = p;
  if (offsets) *offsets = o;
  return n;
}

static char *f_decode(void *ctx, const int32_t *ids, int n, int skip_special) {
  char *s = malloc((size_t)n * 4 + 1);
  size_t o = 0;
  for (int i = 0; i < n; i++)
    if (ids[i] == FAKE_SLOW_ID) { /* a reply listing it takes long to write */
      usleep(1000);
      break;
    }
  for (int i = 0; i < n; i++) {
    if (ids[i] < 3) {
      if (skip_special) continue;
      const char *t = ids[i] == 1 ? "<s>" : ids[i] == 2 ? "</s>" : "<unk>";
      memcpy(s + o, t, strlen(t));
      o += strlen(t);
    } else if (ids[i] - 3 < 128) {
      s[o++] = (char)(ids[i] - 3);
    }
  }
  s[o] = 0;
  return s;
}

static int f_is_special(void *ctx, int32_t id) { return id < 3; }

static int f_chat(void *ctx, const ig_chat_input *in, char **prompt, char *err, size_t errlen) {
  const json_t *m = in->messages, *tools = in->tools;
  const char *tool_prompt = in->tool_prompt;
  ig_str o;
  ig_str_init(&o);
  ig_str_puts(&o, "<s>");
  for (size_t i = 0; i < json_array_size(m); i++) {
    const json_t *msg = json_array_get(m, i);
    const char *c = json_string_value(json_object_get(msg, "content"));
    if (c && strcmp(c, "RAISE") == 0) {
      snprintf(err, errlen, "Conversation roles must alternate user/assistant/user/assistant/...");
      ig_str_free(&o);
      return -3; /* like IG_TMPL_ERUNTIME; -2 would read as -ENOENT */
    }
    ig_str_printf(&o, "[%s]%s", json_string_value(json_object_get(msg, "role")), c ? c : "");
  }
  if (tools) { /* the fake template shows the tools, so tests can see they came through */
    char *t = json_dumps(tools, JSON_COMPACT);
    ig_str_printf(&o, "[tools]%s[tool_prompt]%s", t ? t : "", tool_prompt ? tool_prompt : "");
    free(t);
  }
  if (in->add_generation_prompt) ig_str_puts(&o, "[assistant]");
  *prompt = ig_str_steal(&o, NULL);
  return 0;
}
static int f_chat_none(void *ctx, const ig_chat_input *in, char **prompt, char *err, size_t errlen) {
  return -ENOENT;
}

static void f_stats(void *ctx, ig_server_stats *st) {
  fake_engine *e = ctx;
  pthread_mutex_lock(&e->mu);
  st->batch_size = e->n_run;
  pthread_mutex_unlock(&e->mu);
  st->kv_blocks_total = 100;
}

void fake_engine_hooks(fake_engine *e, ig_server_hooks *h, int with_template) {
  memset(h, 0, sizeof *h);
  h->ctx = e;
  h->tokenize = f_tokenize;
  h->decode = f_decode;
  h->is_special = f_is_special;
  h->chat_render = with_template ? f_chat : f_chat_none;
  h->submit = f_submit;
  h->stats = f_stats;
}
