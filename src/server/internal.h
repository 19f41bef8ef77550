/* server/internal: the server's private state, shared by http.c (listener, routing, plain routes, auth,
 * CORS, logs, shutdown) and gen.c (generation jobs: validation workers, engine hand-over, SSE/JSON replies). */
#ifndef IG_SERVER_INTERNAL_H
#define IG_SERVER_INTERNAL_H
#include "server/metrics.h"
#include "server/params.h"
#include "server/render.h"
#include "server/server.h"
#include <event2/event.h>
#include <event2/http.h>
#include <pthread.h>
#include <stdatomic.h>

typedef struct ig_job ig_job;
typedef struct ig_conn_watch ig_conn_watch;

struct ig_server {
  ig_server_config cfg; /* strings below are our own copies */
  char *hostname, *model_id, *model_dtype, *device, *version, *api_key, *cors;
  ig_server_hooks hooks;
  ig_server_limits lim;
  atomic_int ready;
  atomic_int stopping;
  int draining;
  long long drain_waited_ns, flush_waited_ns;
  struct event_base *base;
  struct evhttp *http;
  struct evhttp_bound_socket *sock;
  struct evhttp *http_prom;              /* --prometheus-port: /metrics alone on its own port, or NULL */
  struct evhttp_bound_socket *sock_prom;
  int port;
  struct event *ev_sigint, *ev_sigterm, *ev_stop, *ev_done, *ev_grace;
  ig_metrics metrics;
  char fingerprint[64];
  long long created;
  atomic_ullong next_id;

  /* validation workers: jobs in (wq_head), results out (dq_head) -> ev_done on the loop; also large final bodies to
   * write (a job marked `rendering`) */
  pthread_t *workers;
  int n_workers;
  pthread_mutex_t wq_mu;
  pthread_cond_t wq_cv;
  ig_job *wq_head, *wq_tail, *dq_head, *dq_tail;
  int wq_quit;

  /* engine wakeups: jobs with new token events, queued by the engine thread; one ev_wake_all per batch runs them
   * on the loop (an event_active per token event took the base's lock ~250 times per step at 256 clients) */
  pthread_mutex_t wake_mu;
  ig_job **wake_q, **wake_run;
  int n_wake, cap_wake, cap_run;
  struct event *ev_wake_all;

  ig_conn_watch *watches; /* every connection's slow-client watch (http.c) */
  ig_job *jobs; /* every live job (doubly linked), for shutdown */
  int n_jobs;
  int n_gen_active; /* generation jobs admitted and not yet freed: max_concurrent_requests bounds them */
};

/* One generation request from arrival to the last byte (and until the engine let go of its requests). */
struct ig_job {
  ig_server *srv;
  struct evhttp_request *req; /* NULL once answered or the client went away */
  struct evhttp_connection *evcon;
  ig_job *prev, *next, *qnext;
  int gone;                   /* client disconnected */
  int replied;                /* final answer sent (or the client is gone) */
  int streaming;              /* chunked reply started */
  int openai;                 /* OpenAI error shape */
  int compat;                 /* "/" or /invocations in TGI form: body wrapped in a list */
  int admitted;               /* counted in n_gen_active */
  const char *route;
  int status;                 /* HTTP status sent (for the log) */
  int counted_err;            /* -1: none yet; IG_ERR_* once counted */
  ig_server_req r;

  /* validation (worker) results */
  int v_status;
  const char *v_etype;
  char v_err[512];
  int32_t **ids;              /* per prompt */
  int *n_ids;
  uint32_t **offs;            /* completions with echo and logprobs: each text prompt's token offsets (tokenize's) */
  char **prefill_text;        /* decoder_input_details: per prompt id of prompt 0 */

  /* engine side */
  int n_seqs;
  ig_request **reqs;
  ig_seq_out *outs;
  int *seq_prompt;            /* which prompt each sequence generates for */
  int *seq_done;
  int *stream_index;
  /* chat streams with tools, per sequence (choice): tool_stream 0 undecided, 1 a call (maybe): streamed or held,
   * 2 text; tools_ts: the calls streamed so far */
  int *tool_stream;
  ig_tool_stream *tools_ts;
  int n_done;
  char gen_err[256];
  struct event *ev_wake, *ev_free;
  int wake_queued;            /* in srv->wake_q (under srv->wake_mu) */
  struct event *ev_hup;       /* non-streaming: watches the socket for the client's close */
  int hup;                    /* the client closed while we were generating */
  int submitted;
  /* a large final JSON body is written by a validation worker (render_body), not the loop: while `rendering` the
   * worker owns outs (and body), and the job is not freed even if its client goes away */
  int rendering;
  ig_str body;

  ig_oai_meta meta;
  char id[48];
  long long t_start, t_validated; /* CLOCK_MONOTONIC ns */
};

long long ig_server_now_ns(void);
/* http.c helpers used by gen.c */
void ig_server_send(ig_server *s, struct evhttp_request *req, int status, const char *ctype, const char *body,
                    size_t len);
void ig_server_send_error(ig_server *s, struct evhttp_request *req, int openai, int status, const char *msg,
                          const char *etype);
void ig_server_log_request(ig_server *s, struct evhttp_request *req, const char *method, const char *path,
                           int status, long long t_start, const char *extra);
void ig_server_cors(ig_server *s, struct evhttp_request *req);

/* gen.c */
int ig_gen_start_workers(ig_server *s, char *err, size_t errlen);
void ig_gen_stop_workers(ig_server *s);
void ig_gen_on_done(evutil_socket_t fd, short what, void *arg); /* ev_done: worker results */
void ig_gen_on_wake_all(evutil_socket_t fd, short what, void *arg); /* ev_wake_all: queued engine wakeups */
/* Handles a generation route; body already read. api from the route ("/" and /invocations pick it). */
void ig_gen_handle(ig_server *s, struct evhttp_request *req, ig_api api, const char *route, int openai,
                   const char *body, size_t len, long long t_start);
/* POST /tokenize, and /chat_tokenize (chat != 0: template, then tokens and the templated text) */
void ig_gen_handle_tokenize(ig_server *s, struct evhttp_request *req, int chat, const char *body, size_t len,
                            long long t0);
void ig_gen_cancel_all(ig_server *s);
/* After the loop ended and the engine is gone: frees every job left. */
void ig_gen_destroy_all(ig_server *s);

#endif
