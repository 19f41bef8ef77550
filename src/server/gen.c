/* server/gen: the life of a generation request. The loop thread parses and validates the body (params.c),
 * a validation worker compiles its grammar, renders the chat template and tokenizes (checking lengths), the loop
 * submits one engine request per sequence (best_of candidates, completions prompts), the engine wakes the loop
 * (event_active) and the loop drains token events into SSE chunks or, at the end, one JSON body (a large one, such as
 * a long prompt's scores, written by a validation worker and handed back through the same queue). A job outlives its
 * HTTP request when the client goes away: it cancels its engine requests and is freed once the engine let go. */
#include "server/internal.h"
#include "engine/jsonschema.h"
#include "util/log.h"
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

static void job_wake_cb(evutil_socket_t fd, short what, void *arg);
static void job_free_cb(evutil_socket_t fd, short what, void *arg);
static void job_maybe_free(ig_job *j);
static void render_body(ig_job *j, ig_str *o);
static void send_body(ig_job *j, ig_str *o);

/* ---- small helpers ---------------------------------------------------------------------------------------- */

static uint64_t random_seed(void) {
  /* per-request RNG seed when the client gives none (splitmix64 over time and a counter) */
  static _Atomic uint64_t ctr;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  uint64_t z = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ (atomic_fetch_add(&ctr, 1) * 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return (z ^ (z >> 31)) & 0x7FFFFFFFFFFFFFFFull;
}

static void count_failure(ig_job *j, int err) {
  if (j->counted_err >= 0) return;
  j->counted_err = err;
  j->srv->metrics.request_failure[err]++;
}

static void closecb(struct evhttp_connection *evcon, void *arg);

/* Stops watching the socket: before any reply (the fd may be closed and reused afterwards). */
static void hup_stop(ig_job *j) {
  if (j->ev_hup) {
    event_free(j->ev_hup);
    j->ev_hup = NULL;
  }
}

/* Answers with an error and forgets the request (job stays until the engine is done). */
static void job_reply_error(ig_job *j, int status, const char *msg, const char *etype) {
  int e = status == 429 ? IG_ERR_OVERLOADED
          : status == 424 ? IG_ERR_GENERATION
          : status == 500 ? IG_ERR_INCOMPLETE
                          : IG_ERR_VALIDATION;
  count_failure(j, j->hup ? IG_ERR_CANCELLED : e);
  j->status = status;
  hup_stop(j);
  if (j->replied || !j->req) return;
  if (j->evcon) evhttp_connection_set_closecb(j->evcon, NULL, NULL);
  if (j->streaming) {
    ig_str o;
    ig_str_init(&o);
    ig_str_puts(&o, "data: ");
    if (j->openai)
      ig_render_error_openai(&o, status, msg, etype);
    else
      ig_render_error(&o, msg, etype);
    ig_str_puts(&o, "\n\n");
    struct evbuffer *b = evbuffer_new();
    if (b && !o.oom) {
      evbuffer_add(b, o.p, o.len);
      evhttp_send_reply_chunk(j->req, b);
    }
    if (b) evbuffer_free(b);
    ig_str_free(&o);
    evhttp_send_reply_end(j->req);
  } else {
    ig_server_send_error(j->srv, j->req, j->openai, status, msg, etype);
  }
  char extra[128];
  snprintf(extra, sizeof extra, j->hup ? "client_disconnected=1" : "error_type=%s", etype);
  ig_server_log_request(j->srv, NULL, j->route, NULL, j->hup ? 499 : status, j->t_start, extra);
  j->req = NULL;
  j->replied = 1;
}

static void job_unlink(ig_job *j) {
  ig_server *s = j->srv;
  if (j->prev)
    j->prev->next = j->next;
  else if (s->jobs == j)
    s->jobs = j->next;
  if (j->next) j->next->prev = j->prev;
  j->prev = j->next = NULL;
  s->n_jobs--;
}

static void job_destroy(ig_job *j) {
  job_unlink(j);
  pthread_mutex_lock(&j->srv->wake_mu);
  if (j->wake_queued) /* queued by the engine's last wakeup: no longer to be run */
    for (int i = 0; i < j->srv->n_wake; i++)
      if (j->srv->wake_q[i] == j) {
        j->srv->wake_q[i] = j->srv->wake_q[--j->srv->n_wake];
        break;
      }
  j->wake_queued = 0;
  pthread_mutex_unlock(&j->srv->wake_mu);
  if (j->admitted) j->srv->n_gen_active--;
  for (int i = 0; i < j->n_seqs; i++) {
    if (j->reqs && j->reqs[i]) ig_request_unref(j->reqs[i]);
    if (j->outs) ig_seq_out_free(&j->outs[i]);
  }
  free(j->reqs);
  free(j->outs);
  free(j->seq_prompt);
  free(j->seq_done);
  free(j->stream_index);
  free(j->tool_stream);
  free(j->tools_ts);
  if (j->prefill_text && j->n_ids)
    for (int i = 0; i < j->n_ids[0]; i++) free(j->prefill_text[i]);
  free(j->prefill_text);
  for (int i = 0; i < j->r.n_prompts; i++) {
    if (j->ids) free(j->ids[i]);
    if (j->offs) free(j->offs[i]);
  }
  free(j->ids);
  free(j->n_ids);
  free(j->offs);
  hup_stop(j);
  ig_str_free(&j->body);
  if (j->ev_wake) event_free(j->ev_wake);
  if (j->ev_free) event_free(j->ev_free);
  ig_server_req_free(&j->r);
  free(j);
}

/* A job is freed once it has answered (or lost its client), no worker holds it, and the engine has let go of
 * every request (refs back to 1: ours). The engine drops its reference right after its last wake, so until
 * then we look again shortly. */
static void job_maybe_free(ig_job *j) {
  if (!j->replied || j->rendering) return; /* a worker writing its body comes back through ig_gen_on_done */
  /* The answer is out and every sequence has finished: the admission slot is free now, even if the engine's
   * last reference is dropped a moment later (a client that sends its next request at once is not refused). */
  int all_done = 1;
  for (int i = 0; i < j->n_seqs; i++)
    if (j->reqs && j->reqs[i] && !j->seq_done[i]) all_done = 0;
  if (all_done && j->admitted) {
    j->srv->n_gen_active--;
    j->admitted = 0;
  }
  for (int i = 0; i < j->n_seqs; i++) {
    ig_request *r = j->reqs[i];
    if (!r) continue;
    if (!j->seq_done[i] || atomic_load(&r->refs) > 1) {
      if (!j->seq_done[i]) return; /* a later wake brings us back */
      struct timeval tv = {0, 2000};
      if (!j->ev_free) j->ev_free = evtimer_new(j->srv->base, job_free_cb, j);
      if (j->ev_free) evtimer_add(j->ev_free, &tv);
      return;
    }
  }
  job_destroy(j);
}

static void job_free_cb(evutil_socket_t fd, short what, void *arg) { job_maybe_free(arg); }

static void closecb(struct evhttp_connection *evcon, void *arg) {
  ig_job *j = arg;
  j->gone = 1;
  j->evcon = NULL;
  hup_stop(j);
  for (int i = 0; i < j->n_seqs; i++)
    if (j->reqs && j->reqs[i]) atomic_store(&j->reqs[i]->cancelled, 1);
  if (!j->replied) {
    count_failure(j, IG_ERR_CANCELLED);
    /* libevent detached the request from the dead connection; it is ours to free */
    if (j->req && !evhttp_request_get_connection(j->req)) evhttp_request_free(j->req);
    j->req = NULL;
    j->replied = 1;
    j->status = 499;
    ig_server_log_request(j->srv, NULL, j->route, NULL, 499, j->t_start, "client_disconnected=1");
  }
  if (!j->submitted && j->n_seqs == 0) {
    /* still with a validation worker: ig_gen_on_done frees it */
    return;
  }
  job_maybe_free(j);
}

/* ---- validation workers ---------------------------------------------------------------------------------- */

/* Chat messages -> prompts[0] through the model's template. 0, or -1 with the job's error set. */
static int render_chat(ig_server *s, ig_job *j) {
  const ig_server_hooks *h = &s->hooks;
  ig_server_req *r = &j->r;
  char err[400];
  err[0] = 0;
  char *prompt = NULL;
  ig_chat_input in = {.messages = r->messages, .tools = r->tools, .tool_prompt = r->tool_prompt,
                      .documents = r->documents, .kwargs = r->chat_kwargs, .chat_template = r->chat_template,
                      .chat_template_len = r->chat_template_len, .add_generation_prompt = r->add_generation_prompt,
                      .continue_final_message = r->continue_final_message};
  int rc = h->chat_render ? h->chat_render(h->ctx, &in, &prompt, err, sizeof err) : -ENOENT;
  if (rc == -ENOENT) {
    j->v_status = 422;
    j->v_etype = "template_error";
    snprintf(j->v_err, sizeof j->v_err,
             "Template error: template not found (this model has no chat template; use /v1/completions or /generate)");
    return -1;
  }
  if (rc < 0) {
    j->v_status = 422;
    j->v_etype = "template_error";
    snprintf(j->v_err, sizeof j->v_err, "Template error: %s", err);
    free(prompt);
    return -1;
  }
  r->prompts[0] = prompt;
  r->prompt_lens[0] = strlen(prompt);
  return 0;
}

static void validate_job(ig_server *s, ig_job *j) {
  ig_server_req *r = &j->r;
  const ig_server_hooks *h = &s->hooks;
  char err[400];
  err[0] = 0;
  int grc = ig_server_req_compile_grammar(r, j->v_err, sizeof j->v_err); /* off the loop: up to ~0.3 s */
  if (grc) {
    j->v_status = grc;
    j->v_etype = "validation";
    return;
  }
  if (r->api == IG_API_CHAT && render_chat(s, j) != 0) return;
  j->ids = calloc((size_t)r->n_prompts, sizeof *j->ids);
  j->n_ids = calloc((size_t)r->n_prompts, sizeof *j->n_ids);
  const int want_offs = r->api == IG_API_COMPLETIONS && r->echo && r->logprobs; /* the echoed tokens' text_offset */
  if (want_offs) j->offs = calloc((size_t)r->n_prompts, sizeof *j->offs);
  if (!j->ids || !j->n_ids || (want_offs && !j->offs)) goto oom;
  for (int i = 0; i < r->n_prompts; i++) {
    int32_t *ids = NULL;
    int n;
    if (r->prompt_ids && r->prompt_ids[i]) { /* given as token ids: taken as they are, their text their decoding */
      ids = r->prompt_ids[i], n = r->n_prompt_ids[i];
      r->prompt_ids[i] = NULL;
      if (!(r->prompts[i] = h->decode(h->ctx, ids, n, 0))) {
        free(ids);
        goto oom;
      }
      r->prompt_lens[i] = strlen(r->prompts[i]);
    } else if ((n = h->tokenize(h->ctx, r->prompts[i], r->prompt_lens[i], r->add_special, &ids,
                                j->offs ? &j->offs[i] : NULL, err, sizeof err)) < 0) {
      j->v_status = 422;
      j->v_etype = "validation";
      snprintf(j->v_err, sizeof j->v_err, "tokenizer error %s", err);
      return;
    }
    if (r->truncate > 0 && n > r->truncate) { /* TGI truncates on the left: keep the last tokens */
      memmove(ids, ids + (n - r->truncate), (size_t)r->truncate * sizeof *ids);
      n = r->truncate;
    }
    j->ids[i] = ids;
    j->n_ids[i] = n;
    int rc = ig_server_req_check_lengths(r, n, &s->lim, j->v_err, sizeof j->v_err);
    if (rc) {
      j->v_status = rc;
      j->v_etype = "validation";
      return;
    }
  }
  if (r->decoder_input_details) {
    j->prefill_text = calloc((size_t)j->n_ids[0] + 1, sizeof *j->prefill_text);
    if (!j->prefill_text) goto oom;
    for (int k = 0; k < j->n_ids[0]; k++) j->prefill_text[k] = h->decode(h->ctx, &j->ids[0][k], 1, 0);
  }
  return;
oom:
  j->v_status = 500;
  j->v_etype = "validation";
  snprintf(j->v_err, sizeof j->v_err, "out of memory");
}

static void validate_tokenize(ig_server *s, ig_job *j) {
  /* /tokenize: the result goes into v_err's place as a JSON body built here (off the loop) */
  const ig_server_hooks *h = &s->hooks;
  char err[256];
  int32_t *ids = NULL;
  uint32_t *off = NULL;
  int chat = j->r.api == IG_API_CHAT; /* /chat_tokenize: template first, no special tokens added */
  if (chat && render_chat(s, j) != 0) return;
  const char *text = j->r.prompts[0];
  int n = h->tokenize(h->ctx, text, j->r.prompt_lens[0], !chat, &ids, &off, err, sizeof err);
  if (n < 0) {
    j->v_status = 422;
    j->v_etype = "validation";
    snprintf(j->v_err, sizeof j->v_err, "tokenizer error %s", err);
    return;
  }
  ig_str o;
  ig_str_init(&o);
  if (chat) ig_str_puts(&o, "{\"tokenize_response\":");
  ig_str_putc(&o, '[');
  for (int i = 0; i < n; i++) {
    if (i) ig_str_putc(&o, ',');
    ig_str_printf(&o, "{\"id\":%d,\"text\":", ids[i]);
    if (off && off[2 * i + 1] > off[2 * i]) {
      size_t a = off[2 * i], b = off[2 * i + 1];
      ig_str_json_string(&o, text + a, b > a ? b - a : 0);
      ig_str_printf(&o, ",\"start\":%u,\"stop\":%u}", off[2 * i], off[2 * i + 1]);
    } else {
      char *t = h->decode(h->ctx, &ids[i], 1, 0);
      ig_str_json_string(&o, t ? t : "", t ? strlen(t) : 0);
      free(t);
      unsigned st = off ? off[2 * i] : 0;
      ig_str_printf(&o, ",\"start\":%u,\"stop\":%u}", st, st);
    }
  }
  ig_str_putc(&o, ']');
  if (chat) {
    ig_str_puts(&o, ",\"templated_text\":");
    ig_str_json_string(&o, text, j->r.prompt_lens[0]);
    ig_str_putc(&o, '}');
  }
  free(ids);
  free(off);
  j->outs = calloc(1, sizeof *j->outs); /* carries the body back */
  if (!j->outs || o.oom) {
    ig_str_free(&o);
    j->v_status = 500;
    j->v_etype = "validation";
    snprintf(j->v_err, sizeof j->v_err, "out of memory");
    return;
  }
  j->outs[0].text = o;
}

static void *worker_main(void *arg) {
  ig_server *s = arg;
  for (;;) {
    pthread_mutex_lock(&s->wq_mu);
    while (!s->wq_head && !s->wq_quit) pthread_cond_wait(&s->wq_cv, &s->wq_mu);
    if (!s->wq_head) {
      pthread_mutex_unlock(&s->wq_mu);
      return NULL;
    }
    ig_job *j = s->wq_head;
    s->wq_head = j->qnext;
    if (!s->wq_head) s->wq_tail = NULL;
    j->qnext = NULL;
    pthread_mutex_unlock(&s->wq_mu);

    if (j->rendering)
      render_body(j, &j->body);
    else if (j->route && (strcmp(j->route, "/tokenize") == 0 || strcmp(j->route, "/chat_tokenize") == 0))
      validate_tokenize(s, j);
    else
      validate_job(s, j);

    pthread_mutex_lock(&s->wq_mu);
    if (s->dq_tail)
      s->dq_tail->qnext = j;
    else
      s->dq_head = j;
    s->dq_tail = j;
    pthread_mutex_unlock(&s->wq_mu);
    event_active(s->ev_done, EV_READ, 0);
  }
}

int ig_gen_start_workers(ig_server *s, char *err, size_t errlen) {
  int n = s->cfg.validation_workers > 0 ? s->cfg.validation_workers : 2;
  s->workers = calloc((size_t)n, sizeof *s->workers);
  if (!s->workers) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  for (int i = 0; i < n; i++) {
    if (pthread_create(&s->workers[i], NULL, worker_main, s) != 0) {
      snprintf(err, errlen, "cannot start validation worker %d", i);
      ig_gen_stop_workers(s);
      return -1;
    }
    s->n_workers++;
  }
  return 0;
}

void ig_gen_stop_workers(ig_server *s) {
  pthread_mutex_lock(&s->wq_mu);
  s->wq_quit = 1;
  pthread_cond_broadcast(&s->wq_cv);
  pthread_mutex_unlock(&s->wq_mu);
  for (int i = 0; i < s->n_workers; i++) pthread_join(s->workers[i], NULL);
  free(s->workers);
  s->workers = NULL;
  s->n_workers = 0;
}

static void enqueue(ig_server *s, ig_job *j) {
  pthread_mutex_lock(&s->wq_mu);
  if (s->wq_tail)
    s->wq_tail->qnext = j;
  else
    s->wq_head = j;
  s->wq_tail = j;
  pthread_cond_signal(&s->wq_cv);
  pthread_mutex_unlock(&s->wq_mu);
}

/* ---- engine hand-over ---------------------------------------------------------------------------------------- */

/* Engine thread: queue the job for the loop; only the first job of a batch activates ev_wake_all, so a step's
 * events cost one base-lock acquisition instead of one per event. A queue that cannot grow falls back to the
 * job's own event. */
static void engine_wake(void *arg) {
  ig_job *j = arg;
  ig_server *s = j->srv;
  int first = 0, queued = 1;
  pthread_mutex_lock(&s->wake_mu);
  if (!j->wake_queued) {
    if (s->n_wake == s->cap_wake) {
      int nc = s->cap_wake ? 2 * s->cap_wake : 64;
      ig_job **q = realloc(s->wake_q, (size_t)nc * sizeof *q);
      if (q) s->wake_q = q, s->cap_wake = nc;
    }
    if (s->n_wake < s->cap_wake) {
      s->wake_q[s->n_wake++] = j;
      j->wake_queued = 1;
      first = s->n_wake == 1;
    } else {
      queued = 0;
    }
  }
  pthread_mutex_unlock(&s->wake_mu);
  if (!queued) event_active(j->ev_wake, EV_READ, 0);
  else if (first) event_active(s->ev_wake_all, EV_READ, 0);
}

/* Loop: run the queued jobs' wakeups. The queue is taken whole first (the engine keeps queueing meanwhile); a job
 * freed while queued has taken itself out (job_destroy), and running one job's wakeup frees no other job. */
void ig_gen_on_wake_all(evutil_socket_t fd, short what, void *arg) {
  (void)fd, (void)what;
  ig_server *s = arg;
  pthread_mutex_lock(&s->wake_mu);
  int n = s->n_wake;
  if (n > s->cap_run) {
    ig_job **r = realloc(s->wake_run, (size_t)s->cap_wake * sizeof *r);
    if (r) s->wake_run = r, s->cap_run = s->cap_wake;
  }
  if (n > s->cap_run) { /* no room to take them: leave them queued and look again on the next loop pass */
    pthread_mutex_unlock(&s->wake_mu);
    event_active(s->ev_wake_all, EV_READ, 0);
    return;
  }
  for (int i = 0; i < n; i++) {
    s->wake_run[i] = s->wake_q[i];
    s->wake_q[i]->wake_queued = 0;
  }
  s->n_wake = 0;
  pthread_mutex_unlock(&s->wake_mu);
  for (int i = 0; i < n; i++) job_wake_cb(-1, EV_READ, s->wake_run[i]);
}

/* TGI's x-compute-type: COMPUTE_TYPE when set (as TGI reads it), else "gpu+optimized" on a GPU and "cpu" */
static const char *compute_type(const ig_server *s) {
  const char *e = getenv("COMPUTE_TYPE");
  if (e && *e) return e;
  return s->cfg.device && !strcmp(s->cfg.device, "cpu") ? "cpu" : "gpu+optimized";
}

static void start_stream(ig_job *j) {
  struct evkeyvalq *h = evhttp_request_get_output_headers(j->req);
  evhttp_add_header(h, "Content-Type", "text/event-stream");
  evhttp_add_header(h, "Cache-Control", "no-cache");
  evhttp_add_header(h, "X-Accel-Buffering", "no");
  evhttp_add_header(h, "x-compute-type", compute_type(j->srv));
  ig_server_cors(j->srv, j->req);
  evhttp_send_reply_start(j->req, 200, "OK");
  j->streaming = 1;
  j->status = 200;
}

/* libevent reads nothing from a connection whose non-streaming reply is pending, so it would only notice a
 * client that went away when the reply is written. We peek at the socket ourselves: EOF cancels the engine
 * requests (their blocks are freed at the next step); pipelined bytes just end the watch. */
static void hup_cb(evutil_socket_t fd, short what, void *arg) {
  ig_job *j = arg;
  char c;
  ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
  if (n <= 0) {
    j->hup = 1;
    for (int i = 0; i < j->n_seqs; i++)
      if (j->reqs[i]) atomic_store(&j->reqs[i]->cancelled, 1);
  }
  hup_stop(j);
}

static void hup_start(ig_job *j) {
  struct bufferevent *bev = j->evcon ? evhttp_connection_get_bufferevent(j->evcon) : NULL;
  evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
  if (fd < 0) return;
  j->ev_hup = event_new(j->srv->base, fd, EV_READ | EV_PERSIST, hup_cb, j);
  if (j->ev_hup) event_add(j->ev_hup, NULL);
}

/* The engine requests a job makes: best_of candidates (TGI), or n choices (OpenAI) of each prompt, prompt by prompt. */
static int job_n_seqs(const ig_server_req *r) {
  return r->api == IG_API_COMPLETIONS ? r->n_prompts * r->n_choices : r->api == IG_API_CHAT ? r->n_choices : r->best_of;
}

static void submit_job(ig_job *j) {
  ig_server *s = j->srv;
  ig_server_req *r = &j->r;
  int n = job_n_seqs(r);
  j->reqs = calloc((size_t)n, sizeof *j->reqs);
  j->outs = calloc((size_t)n, sizeof *j->outs);
  j->seq_prompt = calloc((size_t)n, sizeof *j->seq_prompt);
  j->seq_done = calloc((size_t)n, sizeof *j->seq_done);
  j->stream_index = calloc((size_t)n, sizeof *j->stream_index);
  j->tool_stream = calloc((size_t)n, sizeof *j->tool_stream);
  j->tools_ts = calloc((size_t)n, sizeof *j->tools_ts);
  j->ev_wake = event_new(s->base, -1, 0, job_wake_cb, j);
  if (!j->reqs || !j->outs || !j->seq_prompt || !j->seq_done || !j->stream_index || !j->tool_stream || !j->tools_ts ||
      !j->ev_wake) {
    job_reply_error(j, 500, "out of memory", "generation");
    job_maybe_free(j);
    return;
  }
  j->n_seqs = n;
  uint64_t base_seed = r->seed_set ? r->gp.seed : random_seed();
  for (int i = 0; i < n; i++) {
    int p = r->api == IG_API_COMPLETIONS ? i / r->n_choices : 0;
    j->seq_prompt[i] = p;
    ig_request *q = ig_request_new();
    if (!q) goto oom;
    j->reqs[i] = q;
    q->id = atomic_fetch_add(&s->next_id, 1);
    q->n_prompt = j->n_ids[p];
    q->prompt = malloc((size_t)(q->n_prompt ? q->n_prompt : 1) * sizeof *q->prompt);
    if (!q->prompt) goto oom;
    memcpy(q->prompt, j->ids[p], (size_t)q->n_prompt * sizeof *q->prompt);
    q->params = r->gp;
    q->params.schema = r->gp.schema ? ig_jschema_ref(r->gp.schema) : NULL;
    q->params.stop = NULL;
    q->params.n_stop = 0;
    q->params.bias_id = NULL, q->params.bias_val = NULL, q->params.n_bias = 0;
    q->params.stop_ids = NULL, q->params.n_stop_ids = 0;
    if (r->gp.n_stop_ids) {
      if (!(q->params.stop_ids = malloc((size_t)r->gp.n_stop_ids * sizeof(int32_t)))) goto oom;
      memcpy(q->params.stop_ids, r->gp.stop_ids, (size_t)r->gp.n_stop_ids * sizeof(int32_t));
      q->params.n_stop_ids = r->gp.n_stop_ids;
    }
    if (r->gp.n_bias) { /* one allocation: ids, then values */
      size_t nb = (size_t)r->gp.n_bias;
      if (!(q->params.bias_id = malloc(nb * (sizeof(int32_t) + sizeof(float))))) goto oom;
      q->params.bias_val = (float *)(q->params.bias_id + nb);
      memcpy(q->params.bias_id, r->gp.bias_id, nb * sizeof(int32_t));
      memcpy(q->params.bias_val, r->gp.bias_val, nb * sizeof(float));
      q->params.n_bias = r->gp.n_bias;
    }
    if (r->gp.n_stop) {
      q->params.stop = calloc((size_t)r->gp.n_stop, sizeof *q->params.stop);
      if (!q->params.stop) goto oom;
      q->params.n_stop = r->gp.n_stop;
      for (int k = 0; k < r->gp.n_stop; k++)
        if (!(q->params.stop[k] = strdup(r->gp.stop[k]))) goto oom;
    }
    if (r->best_of > 1) {
      q->params.do_sample = 1;
      q->params.seed = random_seed();
    } else {
      q->params.seed = base_seed + (uint64_t)i;
    }
    q->wake = engine_wake;
    q->wake_arg = j;
    ig_seq_out *o = &j->outs[i];
    o->n_prompt = q->n_prompt;
    o->prompt_ids = q->prompt;
    o->seed = q->params.seed;
    o->sampled = q->params.do_sample;
    o->input_text = r->prompts[p];
    o->input_len = r->prompt_lens[p];
    o->prefill_text = NULL;
  }
  for (int i = 0; i < n; i++) {
    char err[256];
    err[0] = 0;
    int rc = s->hooks.submit(s->hooks.ctx, j->reqs[i], err, sizeof err);
    if (rc != 0) {
      /* the ones already in the engine are cancelled; the rest never started */
      for (int k = 0; k < n; k++) {
        if (k < i) {
          atomic_store(&j->reqs[k]->cancelled, 1);
        } else {
          j->seq_done[k] = 1;
          j->n_done++;
        }
      }
      j->submitted = 1;
      if (rc == -EAGAIN)
        job_reply_error(j, 429, "Model is overloaded", "overloaded");
      else
        job_reply_error(j, 422, err[0] ? err : "request rejected by the engine", "validation");
      job_maybe_free(j);
      return;
    }
  }
  j->submitted = 1;
  if (r->stream)
    start_stream(j);
  else
    hup_start(j);
  return;
oom:
  for (int k = 0; k < n; k++) {
    j->seq_done[k] = 1;
    j->n_done++;
  }
  j->submitted = 1;
  job_reply_error(j, 500, "out of memory", "generation");
  job_maybe_free(j);
}

void ig_gen_on_done(evutil_socket_t fd, short what, void *arg) {
  ig_server *s = arg;
  pthread_mutex_lock(&s->wq_mu);
  ig_job *list = s->dq_head;
  s->dq_head = s->dq_tail = NULL;
  pthread_mutex_unlock(&s->wq_mu);
  while (list) {
    ig_job *j = list;
    list = j->qnext;
    j->qnext = NULL;
    if (j->rendering) { /* a final body written by the worker: sent unless the client went away meanwhile */
      j->rendering = 0;
      if (!j->replied) send_body(j, &j->body);
      ig_str_free(&j->body);
      job_maybe_free(j);
      continue;
    }
    j->t_validated = ig_server_now_ns();
    if (j->gone || j->replied) {
      job_maybe_free(j);
      continue;
    }
    if (j->v_status) {
      job_reply_error(j, j->v_status, j->v_err, j->v_etype);
      job_maybe_free(j);
      continue;
    }
    if (strcmp(j->route, "/tokenize") == 0 || strcmp(j->route, "/chat_tokenize") == 0) {
      if (j->evcon) evhttp_connection_set_closecb(j->evcon, NULL, NULL);
      ig_str *b = &j->outs[0].text;
      ig_server_send(s, j->req, 200, "application/json", b->p, b->len);
      ig_server_log_request(s, NULL, j->route, NULL, 200, j->t_start, NULL);
      j->req = NULL;
      j->replied = 1;
      ig_seq_out_free(&j->outs[0]);
      free(j->outs);
      j->outs = NULL;
      job_maybe_free(j);
      continue;
    }
    if (atomic_load(&s->stopping)) {
      job_reply_error(j, 503, "the server is shutting down", "unhealthy");
      job_maybe_free(j);
      continue;
    }
    submit_job(j);
  }
}

/* ---- engine events -> client ------------------------------------------------------------------------------------- */

static void write_sse(ig_job *j, ig_str *payload) {
  if (j->replied || !j->req || payload->oom) return;
  struct evbuffer *b = evbuffer_new();
  if (!b) return;
  evbuffer_add(b, "data: ", 6);
  evbuffer_add(b, payload->p, payload->len);
  evbuffer_add(b, "\n\n", 2);
  evhttp_send_reply_chunk(j->req, b);
  evbuffer_free(b);
}

/* ---- OpenAI completions' logprobs: the strings of tokens -------------------------------------------------------- */

/* A token's string as it reads after the tokens before it: decode(the PIECE_CTX tokens before it, then it) less
 * decode(those), so that a SentencePiece word keeps its leading space, as vLLM shows tokens; its decoding alone
 * when the longer text does not start with the shorter one (a character cut between tokens). Special tokens show
 * as themselves. Decoding happens on the loop thread (a large final body's, on a validation worker), PIECE_CTX + 2
 * tokens at most per string. */
#define PIECE_CTX 4
typedef struct piece_ctx {
  const ig_server_hooks *h;
  int32_t ids[PIECE_CTX + 1];
  int n;
  char *pre; /* decode(ids[0..n)), NULL when out of memory */
} piece_ctx;

/* The tokens before position `at` of sequence o (its prompt, then its generated tokens). */
static void piece_ctx_at(piece_ctx *c, const ig_server_hooks *h, const ig_seq_out *o, int at) {
  c->h = h;
  c->n = 0;
  for (int q = at > PIECE_CTX ? at - PIECE_CTX : 0; q < at; q++)
    c->ids[c->n++] = q < o->n_prompt ? o->prompt_ids[q] : o->tokens[q - o->n_prompt].id;
  c->pre = h->decode(h->ctx, c->ids, c->n, 0);
}

/* id's string at that position: malloc'd, NULL when out of memory. */
static char *piece_of(piece_ctx *c, int32_t id) {
  if (!c->pre) return NULL;
  c->ids[c->n] = id;
  char *full = c->h->decode(c->h->ctx, c->ids, c->n + 1, 0);
  size_t k = strlen(c->pre);
  if (full && strncmp(full, c->pre, k) == 0) {
    memmove(full, full + k, strlen(full + k) + 1);
    return full;
  }
  free(full);
  return c->h->decode(c->h->ctx, &id, 1, 0);
}

/* With echo and logprobs: the engine's prompt logprobs and most likely tokens lent to outs[i] (they were published
 * before its first event), and the strings of those tokens, made once. 0, or -1 when out of memory. */
static int echo_logprobs(ig_job *j, int i) {
  ig_seq_out *o = &j->outs[i];
  const ig_request *q = j->reqs[i];
  if (o->prompt_piece) return 0;
  o->prefill_lp = q->prefill_logprobs;
  o->prefill_top = q->prefill_top;
  o->prefill_top_n = q->prefill_top ? q->params.prefill_top_n : 0;
  o->prompt_offsets = j->offs ? j->offs[j->seq_prompt[i]] : NULL;
  const size_t np = (size_t)o->n_prompt, tn = (size_t)o->prefill_top_n;
  if (!(o->prompt_piece = calloc(np ? np : 1, sizeof *o->prompt_piece))) return -1;
  if (tn && !(o->prefill_top_piece = calloc(np * tn, sizeof *o->prefill_top_piece))) return -1;
  int oom = 0;
  for (size_t u = 0; u < np && !oom; u++) {
    piece_ctx c;
    piece_ctx_at(&c, &j->srv->hooks, o, (int)u);
    oom |= !(o->prompt_piece[u] = piece_of(&c, o->prompt_ids[u]));
    for (size_t k = 0; k < tn && !oom && o->prefill_top[u * tn + k].id >= 0; k++)
      oom |= !(o->prefill_top_piece[u * tn + k] = piece_of(&c, o->prefill_top[u * tn + k].id));
    free(c.pre);
  }
  return oom ? -1 : 0;
}

/* An engine event -> a token of outs[i] (its text moved). On /v1/completions with logprobs the token's string and
 * its alternatives' are the ones after the tokens before it (piece_of). */
static void fill_token(ig_job *j, int i, ig_token_event *ev, ig_out_token *t) {
  const ig_server_hooks *h = &j->srv->hooks;
  const ig_seq_out *o = &j->outs[i];
  piece_ctx c = {0};
  if (j->r.api == IG_API_COMPLETIONS && j->r.logprobs) piece_ctx_at(&c, h, o, o->n_prompt + o->n_tokens);
  memset(t, 0, sizeof *t);
  t->id = ev->id;
  t->logprob = ev->logprob;
  t->special = ev->special;
  if (ev->special && ev->id >= 0) {
    /* the engine releases no text for special tokens; TGI's token.text shows them ("</s>") */
    free(ev->text);
    t->text = h->decode(h->ctx, &ev->id, 1, 0);
  } else {
    t->text = ev->text;
  }
  if (!t->text) t->text = strdup("");
  ev->text = NULL;
  if (c.h) t->piece = piece_of(&c, ev->id);
  if (ev->n_top > 0) {
    t->top = calloc((size_t)ev->n_top, sizeof *t->top);
    if (t->top) {
      t->n_top = ev->n_top;
      for (int k = 0; k < ev->n_top; k++) {
        t->top[k].id = ev->top_ids[k];
        t->top[k].logprob = ev->top_logprobs[k];
        t->top[k].special = h->is_special ? h->is_special(h->ctx, ev->top_ids[k]) : 0;
        t->top[k].text = c.h ? piece_of(&c, ev->top_ids[k]) : h->decode(h->ctx, &ev->top_ids[k], 1, 0);
      }
    }
  }
  free(c.pre);
}

static void oai_meta(ig_job *j) {
  ig_server *s = j->srv;
  j->meta.id = j->id;
  j->meta.model = j->r.model && j->r.model[0] ? j->r.model : s->model_id;
  j->meta.fingerprint = s->fingerprint;
}

/* Streams one token of sequence i (tok already pushed into outs[i]); final when the sequence ended. */
/* A chat stream with tools: a reply that starts (after whitespace) with '{' or '[' may be a tool call. When it takes
 * the shape this server's tool prompt asks for ({"name": ..., "arguments": {...}}, or a list of them), each call
 * streams as it is written (ig_tool_stream_feed: the id and name first, then the arguments' text); any other shape
 * is held back to its end and then sent as tool_calls (one chunk) or, when it is not a call, as one text chunk. A
 * reply that starts otherwise streams as text from there on (what was held first). With tool_choice "required" the
 * reply is always a call. */
static void stream_tools(ig_job *j, int i, const ig_out_token *t, int final) {
  const ig_server_req *r = &j->r;
  const ig_seq_out *o = &j->outs[i];
  const char *text = o->text.p ? o->text.p : "";
  ig_oai_meta m = j->meta;
  m.choice = i;
  int *mode = &j->tool_stream[i];
  if (*mode == 0) {
    int start = ig_tool_call_start(text, o->text.len, NULL);
    if (r->tool_choice == IG_TOOLS_REQUIRED || start == 1) *mode = 1;
    else if (start == 0) *mode = 2;
  }
  ig_str p;
  ig_str_init(&p);
  /* (legacy functions: held to the end, then one function_call chunk) */
  if (*mode == 1 && !r->legacy_functions && ig_tool_stream_feed(&j->tools_ts[i], &p, &m, r, text, o->text.len))
    write_sse(j, &p);
  ig_str_clear(&p);
  if (*mode != 2 && !final) {
    ig_str_free(&p);
    return;
  }
  json_t *calls = *mode == 1 ? ig_tool_calls_parse(text, o->text.len, r->tools) : NULL;
  if (*mode == 1 && !ig_tool_stream_held(&j->tools_ts[i])) /* the calls went out as they were written */
    ig_render_chat_tool_end(&p, &m, r, calls != NULL, o->finish);
  else if (calls)
    ig_render_chat_tool_chunk(&p, &m, r, calls);
  else /* everything held so far, this token's text included */
    ig_render_chat_chunk(&p, &m, r, t->special ? NULL : t, text, final ? o->finish : IG_FINISH_NONE);
  json_decref(calls);
  write_sse(j, &p);
  ig_str_free(&p);
}

static void stream_token(ig_job *j, int i, const ig_out_token *t, int final) {
  ig_server_req *r = &j->r;
  ig_seq_out *o = &j->outs[i];
  ig_str p;
  ig_str_init(&p);
  switch (r->api) {
  case IG_API_GENERATE_STREAM:
    ig_render_tgi_stream(&p, ++j->stream_index[i], t, final, r->return_full_text, o,
                         r->details, o->n_prompt);
    write_sse(j, &p);
    break;
  case IG_API_CHAT:
    if (r->tools && r->tool_choice != IG_TOOLS_NONE && j->tool_stream[i] != 2) {
      stream_tools(j, i, t, final);
      break;
    }
    if (!t->special || final) {
      ig_oai_meta m = j->meta;
      m.choice = i;
      ig_render_chat_chunk(&p, &m, r, t->special ? NULL : t, t->special ? "" : t->text,
                           final ? o->finish : IG_FINISH_NONE);
      write_sse(j, &p);
    }
    break;
  default: {
    /* with logprobs each chunk carries its tokens' (special ones' too): the echoed prompt's, then one generated
     * token's, none for a bare end marker (not one of the sequence's tokens) */
    const int np = r->echo ? o->n_prompt : 0, u = np + o->n_tokens;
    const int bare = !o->n_tokens || t != &o->tokens[o->n_tokens - 1];
    if (r->echo && j->stream_index[i]++ == 0) { /* echo: the prompt first, as a chunk of its own */
      char *pt = strndup(o->input_text ? o->input_text : "", o->input_len);
      if (!pt || (r->logprobs && echo_logprobs(j, i))) {
        snprintf(j->gen_err, sizeof j->gen_err, "out of memory");
      } else {
        ig_render_completion_chunk(&p, &j->meta, r, i, pt, IG_FINISH_NONE, o, 0, np, &o->lp_offset);
        write_sse(j, &p);
      }
      ig_str_clear(&p);
      free(pt);
    }
    if (!j->gen_err[0] && (!t->special || final || r->logprobs)) {
      ig_render_completion_chunk(&p, &j->meta, r, i, t->special ? "" : t->text, final ? o->finish : IG_FINISH_NONE, o,
                                 bare ? u : u - 1, u, &o->lp_offset);
      write_sse(j, &p);
    }
    break;
  }
  }
  ig_str_free(&p);
}

/* A finished job's times in ns (TGI's): total, validation, queue (first request: queued to first scheduled),
 * inference (first scheduled to done) */
typedef struct job_times {
  long long total, valid, queue, inf;
} job_times;
static job_times times_of(const ig_job *j) {
  const ig_request *q = j->reqs[0];
  long long now = ig_server_now_ns(), t_end = q->t_done > 0 ? q->t_done : now;
  job_times t = {now - j->t_start, j->t_validated - j->t_start, 0, 0};
  if (q->t_first_scheduled > q->t_queued) t.queue = q->t_first_scheduled - q->t_queued;
  if (q->t_first_scheduled > 0 && t_end > q->t_first_scheduled) t.inf = t_end - q->t_first_scheduled;
  return t;
}

static void record_success(ig_job *j) {
  ig_server *s = j->srv;
  ig_metrics *m = &s->metrics;
  job_times jt = times_of(j);
  m->request_success++;
  ig_metrics_observe(&m->duration, jt.total * 1e-9);
  ig_metrics_observe(&m->validation_duration, jt.valid * 1e-9);
  double qd = jt.queue * 1e-9, inf = jt.inf * 1e-9;
  ig_metrics_observe(&m->queue_duration, qd);
  ig_metrics_observe(&m->inference_duration, inf);
  int gen = j->outs[0].n_tokens;
  if (gen > 0) ig_metrics_observe(&m->time_per_token, inf / gen);
  for (int i = 0; i < j->n_seqs; i++) {
    ig_metrics_observe(&m->input_length, j->outs[i].n_prompt);
    ig_metrics_observe(&m->generated_tokens, j->outs[i].n_tokens);
    ig_metrics_observe(&m->max_new_tokens, j->reqs[i]->params.max_new_tokens);
  }
  if (s->cfg.log_requests) {
    char extra[512];
    snprintf(extra, sizeof extra,
             "validation_time=%.3fms queue_time=%.3fms inference_time=%.3fms time_per_token=%.3fms "
             "input_tokens=%d generated_tokens=%d seed=%" PRIu64 " finish_reason=%s",
             jt.valid * 1e-6, qd * 1e3, inf * 1e3, gen ? inf * 1e3 / gen : 0.0,
             j->outs[0].n_prompt, gen, j->outs[0].seed, ig_finish_tgi(j->outs[0].finish));
    ig_server_log_request(s, NULL, j->route, NULL, 200, j->t_start, extra);
  }
}

static void finish_stream(ig_job *j) {
  ig_server_req *r = &j->r;
  hup_stop(j);
  if (r->api != IG_API_GENERATE_STREAM) {
    ig_str p;
    ig_str_init(&p);
    if (r->include_usage) {
      int pt = 0, ct = 0, cached = 0;
      for (int i = 0; i < j->n_seqs; i++) {
        if (i == 0 || j->seq_prompt[i] != j->seq_prompt[i - 1]) /* each prompt once, whatever its n choices */
          pt += j->outs[i].n_prompt, cached += j->outs[i].n_cached;
        ct += j->outs[i].n_tokens;
      }
      if (r->api == IG_API_CHAT)
        ig_render_chat_usage_chunk(&p, &j->meta, pt, ct, cached);
      else
        ig_render_completion_usage_chunk(&p, &j->meta, pt, ct, cached);
      write_sse(j, &p);
    }
    ig_str_clear(&p);
    ig_str_puts(&p, "[DONE]");
    write_sse(j, &p);
    ig_str_free(&p);
  }
  if (j->evcon) evhttp_connection_set_closecb(j->evcon, NULL, NULL);
  evhttp_send_reply_end(j->req);
  j->req = NULL;
  j->replied = 1;
}

/* TGI's timing headers on a finished non-streamed reply (milliseconds, whole): x-compute-time / x-total-time,
 * x-validation-time, x-queue-time, x-inference-time, x-time-per-token, and the sizes x-compute-characters (the
 * prompts' characters), x-prompt-tokens (each prompt once), x-generated-tokens, x-total-tokens. */
static void timing_headers(ig_job *j) {
  struct evkeyvalq *h = evhttp_request_get_output_headers(j->req);
  job_times jt = times_of(j);
  long long total = jt.total / 1000000, valid = jt.valid / 1000000, queue = jt.queue / 1000000, inf = jt.inf / 1000000;
  long long pt = 0, gen = 0, chars = 0;
  for (int i = 0; i < j->n_seqs; i++) {
    if (i == 0 || j->seq_prompt[i] != j->seq_prompt[i - 1]) pt += j->outs[i].n_prompt;
    gen += j->outs[i].n_tokens;
  }
  for (int p = 0; p < j->r.n_prompts; p++) /* code points: UTF-8 bytes that do not continue a character */
    for (size_t b = 0; j->r.prompts && j->r.prompts[p] && b < j->r.prompt_lens[p]; b++)
      chars += ((unsigned char)j->r.prompts[p][b] & 0xc0) != 0x80;
  char v[32];
#define HDR(name, val) (snprintf(v, sizeof v, "%lld", (long long)(val)), evhttp_add_header(h, name, v))
  evhttp_add_header(h, "x-compute-type", compute_type(j->srv));
  HDR("x-compute-time", total);
  HDR("x-compute-characters", chars);
  HDR("x-total-time", total);
  HDR("x-validation-time", valid);
  HDR("x-queue-time", queue);
  HDR("x-inference-time", inf);
  HDR("x-time-per-token", gen ? inf / (j->outs[0].n_tokens > 0 ? j->outs[0].n_tokens : 1) : 0);
  HDR("x-prompt-tokens", pt);
  HDR("x-generated-tokens", gen);
  HDR("x-total-tokens", pt + gen);
#undef HDR
}

/* Token entries a job's final body lists: each generated token when the body lists them (TGI's details, OpenAI's
 * logprobs), and each prompt token with OpenAI's echo and logprobs or TGI's decoder_input_details, once and once more
 * per alternative shown with it. Writing the body takes ~1 us an entry on this VM's CPU (1.5 us with echo, which
 * decodes each token's piece; a 4,000-token prompt scored with 5 alternatives: 24,000 entries, 35-65 ms), and a text
 * alone next to nothing, so a body of many goes to a worker (render_worker_entries). */
static long body_entries(const ig_job *j) {
  const ig_server_req *r = &j->r;
  const int tgi = r->api == IG_API_GENERATE;
  const int listed = tgi ? r->details : r->logprobs;
  const int top = tgi ? r->gp.top_n_tokens : r->top_logprobs;
  long n = 0;
  for (int i = 0; i < j->n_seqs && listed; i++) {
    n += (long)j->outs[i].n_tokens * (1 + top);
    if (!tgi && r->echo) n += (long)j->outs[i].n_prompt * (1 + top);
    else if (tgi && r->decoder_input_details) n += j->outs[i].n_prompt;
  }
  return n;
}

/* Writes a finished job's JSON body into o (o->oom when out of memory). It reads the request, the outputs and the
 * engine requests' prompt logprobs and fills the outputs' echoed pieces, and touches nothing of the connection, so a
 * validation worker may run it while the loop goes on (the job marked `rendering`). */
static void render_body(ig_job *j, ig_str *o) {
  ig_server_req *r = &j->r;
  if (r->api == IG_API_GENERATE) {
    int best = 0;
    for (int i = 1; i < j->n_seqs; i++)
      if (j->outs[i].logprob_sum > j->outs[best].logprob_sum) best = i;
    if (r->decoder_input_details)
      for (int i = 0; i < j->n_seqs; i++) {
        j->outs[i].prefill_lp = j->reqs[i]->prefill_logprobs;
        j->outs[i].prefill_text = NULL;
      }
    /* prefill texts are per prompt; lend them to each sequence for rendering */
    for (int i = 0; i < j->n_seqs; i++) j->outs[i].prefill_text = j->prefill_text;
    if (j->compat) ig_str_putc(o, '[');
    ig_render_tgi_generate(o, r, j->outs, j->n_seqs, best);
    if (j->compat) ig_str_putc(o, ']');
    for (int i = 0; i < j->n_seqs; i++) j->outs[i].prefill_text = NULL;
  } else if (r->api == IG_API_CHAT) {
    ig_render_chat_completion(o, &j->meta, r, j->outs, j->n_seqs);
  } else {
    int oom = 0;
    for (int i = 0; i < j->n_seqs && r->echo && r->logprobs; i++) oom |= echo_logprobs(j, i);
    if (oom) o->oom = 1;
    else ig_render_completion(o, &j->meta, r, j->outs, j->n_seqs);
  }
}

/* Loop: the final reply with its body (a 500 when the body could not be written), and the request's success. */
static void send_body(ig_job *j, ig_str *o) {
  if (j->evcon) evhttp_connection_set_closecb(j->evcon, NULL, NULL);
  if (o->oom) {
    ig_server_send_error(j->srv, j->req, j->openai, 500, "out of memory", "generation");
  } else {
    timing_headers(j);
    ig_server_send(j->srv, j->req, 200, "application/json", o->p, o->len);
  }
  j->req = NULL;
  j->replied = 1;
  j->status = 200;
  record_success(j);
}

/* The non-streamed reply of a finished job: written here when small, else by a validation worker (ig_gen_on_done
 * sends it), so that a long scoring reply does not hold up every other stream of the loop. */
static void finish_json(ig_job *j) {
  ig_server *s = j->srv;
  hup_stop(j);
  if (s->cfg.render_worker_entries > 0 && s->n_workers > 0 && body_entries(j) >= s->cfg.render_worker_entries) {
    j->rendering = 1;
    ig_str_init(&j->body);
    enqueue(s, j);
    return;
  }
  ig_str o;
  ig_str_init(&o);
  render_body(j, &o);
  send_body(j, &o);
  ig_str_free(&o);
}

static void job_wake_cb(evutil_socket_t fd, short what, void *arg) {
  ig_job *j = arg;
  ig_token_event evs[32];
  for (int i = 0; i < j->n_seqs; i++) {
    ig_request *q = j->reqs[i];
    if (!q || j->seq_done[i]) continue;
    int n;
    while (!j->seq_done[i] && (n = ig_request_take_events(q, evs, 32)) > 0) {
      j->outs[i].n_cached = q->n_cached; /* set by the engine before its first event */
      for (int e = 0; e < n; e++) {
        ig_token_event *ev = &evs[e];
        ig_seq_out *o = &j->outs[i];
        if (j->seq_done[i]) {
          ig_token_event_clear(ev);
          continue;
        }
        int final = ev->finish != IG_FINISH_NONE;
        if (final) {
          o->finish = ev->finish;
          j->seq_done[i] = 1;
          j->n_done++;
        }
        if (ev->finish == IG_FINISH_ERROR || ev->finish == IG_FINISH_CANCELLED) {
          if (ev->finish == IG_FINISH_ERROR) {
            pthread_mutex_lock(&q->mu);
            snprintf(j->gen_err, sizeof j->gen_err, "%s", q->error[0] ? q->error : "Request failed during generation");
            pthread_mutex_unlock(&q->mu);
          } else if (!j->gen_err[0]) {
            snprintf(j->gen_err, sizeof j->gen_err, "Incomplete generation");
          }
          ig_token_event_clear(ev);
          continue;
        }
        ig_out_token t;
        int has_token = ev->id >= 0;
        if (has_token) {
          /* A special last token (EOS) can carry text the engine held back for a possible stop sequence: it
           * belongs to the generated text even though the token's own text is its special string. */
          if (ev->special && ev->text && ev->text[0]) ig_str_puts(&o->text, ev->text);
          fill_token(j, i, ev, &t);
          if (ig_seq_out_push(o, &t) != 0) snprintf(j->gen_err, sizeof j->gen_err, "out of memory");
        }
        ig_token_event_clear(ev);
        if (j->r.stream && !j->replied && !j->gen_err[0]) {
          if (has_token) {
            stream_token(j, i, &o->tokens[o->n_tokens - 1], final);
          } else if (final) {
            /* a bare end marker: close the stream with an empty special token */
            ig_out_token z;
            memset(&z, 0, sizeof z);
            z.id = o->n_tokens ? o->tokens[o->n_tokens - 1].id : 0;
            z.special = 1;
            z.text = "";
            z.logprob = NAN;
            stream_token(j, i, &z, 1);
          }
        }
      }
    }
  }
  if (j->n_done < j->n_seqs) return;
  if (!j->replied && !j->rendering) {
    if (j->gen_err[0]) {
      int cancelled = strcmp(j->gen_err, "Incomplete generation") == 0;
      job_reply_error(j, cancelled ? 500 : 424, j->gen_err, cancelled ? "incomplete_generation" : "generation");
    } else if (j->r.stream) {
      finish_stream(j);
      record_success(j);
    } else {
      finish_json(j); /* records the success once the body is sent */
    }
  }
  job_maybe_free(j);
}

/* ---- entry ------------------------------------------------------------------------------------------------------- */

static const char *json_syntax_prefix = "Failed to parse the request body as JSON: ";

static json_t *parse_body(ig_server *s, struct evhttp_request *req, int openai, const char *body, size_t len,
                          const char *route, long long t0) {
  json_error_t je;
  json_t *root = json_loadb(body, len, JSON_ALLOW_NUL, &je);
  if (!root) {
    char msg[400];
    if (len == 0)
      snprintf(msg, sizeof msg, "%sEOF while parsing a value at line 1 column 0", json_syntax_prefix);
    else
      snprintf(msg, sizeof msg, "%s%s at line %d column %d", json_syntax_prefix, je.text, je.line, je.column);
    ig_server_send_error(s, req, openai, 400, msg, "validation");
    ig_server_log_request(s, NULL, route, NULL, 400, t0, "error_type=invalid_json");
    return NULL;
  }
  return root;
}

void ig_gen_handle(ig_server *s, struct evhttp_request *req, ig_api api, const char *route, int openai,
                   const char *body, size_t len, long long t0) {
  json_t *root = parse_body(s, req, openai, body, len, route, t0);
  if (!root) return;
  /* "/" and /invocations pick the API from the body */
  int compat = 0;
  if (strcmp(route, "/") == 0 || strcmp(route, "/invocations") == 0) {
    if (strcmp(route, "/invocations") == 0 && json_is_object(root) && json_object_get(root, "messages")) {
      api = IG_API_CHAT;
      openai = 1;
    } else if (strcmp(route, "/invocations") == 0 && json_is_object(root) && json_object_get(root, "prompt")) {
      api = IG_API_COMPLETIONS;
      openai = 1;
    } else {
      json_t *st = json_is_object(root) ? json_object_get(root, "stream") : NULL;
      api = json_is_true(st) ? IG_API_GENERATE_STREAM : IG_API_GENERATE;
      compat = 1;
    }
  }
  ig_job *j = calloc(1, sizeof *j);
  if (!j) {
    json_decref(root);
    ig_server_send_error(s, req, openai, 500, "out of memory", "validation");
    return;
  }
  j->srv = s;
  j->req = req;
  j->route = route;
  j->openai = openai;
  j->compat = compat;
  j->t_start = t0;
  j->counted_err = -1;
  j->next = s->jobs;
  if (s->jobs) s->jobs->prev = j;
  s->jobs = j;
  s->n_jobs++;
  s->metrics.request_count++;
  char err[512];
  const char *etype = "validation";
  int rc = ig_server_req_parse(api, root, &s->lim, &j->r, &etype, err, sizeof err);
  json_decref(root);
  /* the engine counts sequences against max_concurrent_requests: a request of more could never start, and a 429
   * would have its client retry forever */
  int n_seq = rc ? 0 : job_n_seqs(&j->r);
  if (n_seq > s->cfg.max_concurrent_requests)
    rc = 422, snprintf(err, sizeof err,
                       "this request asks for %d sequences (n, best_of or prompts), more than max_concurrent_requests "
                       "(%d)", n_seq, s->cfg.max_concurrent_requests);
  /* --disable-grammar-support: every constrained output (grammar, response_format, tools that must be called,
   * vLLM's guided fields) is refused with TGI's message */
  if (!rc && s->cfg.disable_grammar && j->r.gp.json_mode) rc = 422, snprintf(err, sizeof err, "grammar is not supported");
  if (rc) {
    job_reply_error(j, rc, err, etype);
    job_maybe_free(j);
    return;
  }
  /* as TGI's router: beyond max_concurrent_requests, answer at once rather than queue for validation */
  if (s->n_gen_active >= s->cfg.max_concurrent_requests) {
    job_reply_error(j, 429, "Model is overloaded", "overloaded");
    job_maybe_free(j);
    return;
  }
  j->admitted = 1;
  s->n_gen_active++;
  /* TGI's compat route: return_full_text defaults to true for text-generation models, and the non-streaming
   * answer is a list of one, as the Inference API's */
  if (compat && !j->r.return_full_text_set) j->r.return_full_text = 1;
  j->meta.created = (long long)time(NULL);
  snprintf(j->id, sizeof j->id, "%s-%llu", api == IG_API_CHAT ? "chatcmpl" : "cmpl",
           (unsigned long long)atomic_fetch_add(&s->next_id, 1));
  oai_meta(j);
  j->evcon = evhttp_request_get_connection(req);
  if (j->evcon) evhttp_connection_set_closecb(j->evcon, closecb, j);
  enqueue(s, j);
}

void ig_gen_handle_tokenize(ig_server *s, struct evhttp_request *req, int chat, const char *body, size_t len,
                            long long t0) {
  const char *route = chat ? "/chat_tokenize" : "/tokenize";
  json_t *root = parse_body(s, req, 0, body, len, route, t0);
  if (!root) return;
  ig_job *j = calloc(1, sizeof *j);
  if (!j) {
    json_decref(root);
    ig_server_send_error(s, req, 0, 500, "out of memory", "validation");
    return;
  }
  j->srv = s;
  j->req = req;
  j->route = route;
  j->t_start = t0;
  j->counted_err = IG_ERR_N; /* not a generation request: no metrics */
  j->next = s->jobs;
  if (s->jobs) s->jobs->prev = j;
  s->jobs = j;
  s->n_jobs++;
  char err[512];
  const char *etype;
  ig_server_limits lim = s->lim;
  lim.max_input_tokens = INT32_MAX; /* tokenize only */
  int rc = ig_server_req_parse(chat ? IG_API_CHAT : IG_API_GENERATE, root, &lim, &j->r, &etype, err, sizeof err);
  json_decref(root);
  if (rc) {
    ig_server_send_error(s, req, 0, rc, err, etype);
    ig_server_log_request(s, NULL, j->route, NULL, rc, t0, NULL);
    j->req = NULL;
    j->replied = 1;
    job_maybe_free(j);
    return;
  }
  j->evcon = evhttp_request_get_connection(req);
  if (j->evcon) evhttp_connection_set_closecb(j->evcon, closecb, j);
  enqueue(s, j);
}

void ig_gen_cancel_all(ig_server *s) {
  for (ig_job *j = s->jobs; j; j = j->next)
    for (int i = 0; i < j->n_seqs; i++)
      if (j->reqs && j->reqs[i]) atomic_store(&j->reqs[i]->cancelled, 1);
}

void ig_gen_destroy_all(ig_server *s) {
  while (s->jobs) {
    ig_job *j = s->jobs;
    if (j->evcon) evhttp_connection_set_closecb(j->evcon, NULL, NULL);
    job_destroy(j); /* its evhttp request, if any, goes with the connection in evhttp_free */
  }
}
