/* engine/engine: the engine thread. Requests arrive through a mutex-protected queue; each step the thread
 * handles cancellations, admits waiting requests (FIFO, within the KV-block budget and TGI's waiting rules),
 * builds one batch (one decode token per running sequence first, then whole prompt chunks up to
 * max_batch_prefill_tokens), runs the model, samples, detokenizes, checks stop criteria and pushes token
 * events into each request's outbox. When blocks run out the newest sequence is preempted (its blocks freed,
 * requeued to recompute its prompt and generated tokens), so a running sequence never fails for lack of KV.
 * When the runner can keep a step in flight (forward_sample_begin/end: a GPU), steps are pipelined (step_async):
 * the previous step's text, stop sequences and events are done while the device runs the next step.
 * --speculate: a greedy sequence may draft tokens from its own (n-gram lookup) and check them all in one step, each
 * row sampled as a one-token step would (spec_* below); its tokens go through the same per-token path. */
#include "engine/engine_int.h"
#include "engine/jsonschema.h"
#include "engine/kvblocks.h"
#include "engine/sample_pool.h"
#include "engine/sampler.h"
#include "engine/stopseq.h"
#include "util/log.h"
#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define JSON_CACHE 64 /* masks kept at least; more when a step has more than half as many constrained rows */
#define SPEC_WINDOW 2048 /* --speculate: the last tokens a sequence's drafts are looked up in */

/* ---- per-sequence state ------------------------------------------------------------------------------- */

typedef struct seq {
  ig_request *r;
  uint64_t order;      /* arrival number: smaller is older */
  int32_t *tokens;     /* prompt then generated tokens; capacity n_prompt + max_new_tokens */
  int n_tokens, n_prompt, n_generated;
  int n_computed;      /* tokens whose K/V are in the cache */
  /* prefix cache: tokens [0, n_canon) were computed as any chunking computes them (in steps of at least
   * canon_rows rows of this sequence, or taken from the cache); its first n_reg blocks are registered, the chain
   * through them named `chain` */
  int n_canon, n_reg;
  uint64_t chain;
  int admitted_once;
  ig_jsm *json;        /* JSON mode: the state after the generated tokens */
  const ig_jschema *schema; /* JSON mode: what the document follows (the request's, or the engine's any object) */
  int prefilling;      /* since (re)admission its prompt (+ generated tokens on recompute) is being computed */
  int scheduled_once;
  int lp_done;         /* prefill logprobs known for prompt positions [1, lp_done) */
  float *prefill_lp;   /* [n_prompt] when asked, handed to the request once complete */
  ig_logprob_top *prefill_top; /* [n_prompt][prefill_top_n] when asked, handed over with prefill_lp */
  ig_kvb_table bt;
  void *detok;
  ig_stopseq stop;
  int text_started;    /* detok created */
  int released;        /* seq_release done */
  int pend;            /* index of its held-back token in e->pend (step_async), -1 when none */
  int in_flight;       /* in the batch of the step the device is running (step_async): its blocks stay */
  int zombie;          /* ended (final event sent) while in flight: freed when that step's results are in */
} seq;

typedef struct pend { /* step_async: a token appended whose text half (token_text) is still to do */
  seq *s;              /* NULL when s ended meanwhile */
  ig_sample_result res;
} pend;

typedef struct item { /* one sequence's rows in this step */
  seq *s;
  int start, end;      /* token positions [start, end) */
  int prefill;         /* counts against max_batch_prefill_tokens */
  int sample_job;      /* index into the step's sampling jobs, -1 when it samples nothing this step */
  int dev_sample;      /* index into the step's device-sampled rows, -1 when not sampled on the device */
  int ends;            /* a request of max_new_tokens 0 whose prompt this step completed: it ends, nothing sampled */
  int n_draft;         /* --speculate: a verify piece, [start, end) = the pending token and n_draft drafts (also in
                        * s->tokens past n_tokens until accepted), each row sampled; 0 for any other item */
  int32_t draft[IG_MAX_SPECULATE];
} item;

struct ig_engine {
  ig_engine_runner run;
  ig_engine_text text;
  int has_text;
  ig_engine_config cfg;
  ig_engine_stats stats;

  /* shared with submit(), under mu */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  seq **pending;
  int n_pending, cap_pending;
  int n_inflight;       /* submitted and not yet finished */
  int stopping;
  int64_t deadline_ns;
  uint64_t next_order;

  /* engine thread only */
  pthread_t thread;
  int thread_started;
  seq **waiting;        /* sorted by order */
  int n_waiting, cap_waiting;
  seq **running;        /* sorted by order: running[n_running-1] is the newest */
  int n_running, cap_running;
  int waiting_steps;    /* steps since requests were last admitted (TGI's waiting_tokens) */
  ig_kvb kvb;
  int canon_rows;           /* runner.kv_canon_rows, at least 1 */
  int spec_k;               /* drafts per step at most (cfg.speculate as it can run), 0: none */
  int32_t *match_ids;       /* prefix cache: blocks found for the sequence being admitted */
  /* JSON mode, made at its first request: every token's raw bytes and their trie; the mask of one row */
  int json_ready;           /* 0 not yet, 1 made, -1 failed */
  ig_json_vocab *jvocab;
  int jmax_len;             /* the longest token's bytes (mask-cache keys: ig_jsm_cache_key) */
  unsigned char *jpool;
  size_t *joff, *jlen;
  ig_jschema *jany;         /* the schema of plain JSON mode: any JSON object */
  /* masks of the last (schema, recognizer state) pairs met (a mask depends on them alone, and inside a string the
   * state stays the same token after token): a hit reuses the mask instead of walking the trie (~1.8 ms at 128k
   * tokens). Each entry holds a reference to its schema. A step's misses are walked in parallel (sample pool). */
  int jc_cap, jc_n, jc_off; /* jc_off: IGNIS_JSON_MASK_CACHE=0, every mask walked (tests) */
  int jc_nofold;            /* IGNIS_JSON_MASK_FOLD=0: no folded counts in the keys (measurements) */
  int jc_limit;             /* entries the cache may grow to before it evicts (IGNIS_JSON_MASK_CACHE_MB) */
  double jc_mb;             /* IGNIS_JSON_MASK_CACHE_MB [96] */
  int jc_serial;            /* IGNIS_JSON_WALK_SERIAL=1: a step's walks one after another (for comparisons) */
  int json_host;            /* IGNIS_JSON_DEVICE=0: constrained rows sampled on the host even with a device sampler */
  ig_jsm *jc_key;           /* [jc_cap] */
  ig_jschema **jc_schema;
  int *jc_allowed, *jc_walk; /* jc_walk: the entries this step walks */
  uint64_t *jc_used, jc_tick;
  uint64_t *jc_hash;        /* of each entry's state: compared before the state itself */
  ig_json_seg *jsegs;       /* the trie in segments: a walk is spread over the sample pool's threads */
  int n_jsegs;
  int *jc_segcount;         /* [walks x segments] this step's counts, summed per walk */
  size_t cap_segcount;
  uint8_t *jc_mask;         /* [jc_cap][vocab] */
  struct jrow { int job; seq *s; int entry; } *jrows; /* this step's constrained rows (job: host sampling job, or
                                                          device sample row) */
  uint32_t *jc_bits;        /* [jc_cap][ceil(vocab / 32)] the masks as bitmaps, for sampling on the device */
  uint32_t *eos_bits;       /* only the EOS ids: a row where nothing else may follow */
  size_t cap_jrows;
  ig_sampler sampler;
  ig_sample_pool *pool;     /* host sampling workers (NULL: none) */
  int64_t sample_par_min;   /* sample in parallel from this many logits (jobs x vocab) per step */
  ig_sample_job *jobs;
  size_t cap_jobs;
  struct lp_job *lpjobs; /* a step's prompt rows whose logprobs are asked for, computed over the pool */
  size_t cap_lpjobs;
  item *items;
  int cap_items;
  int32_t *b_tokens, *b_pos, *b_slot, *b_seq_start, *b_ctx_len, *b_rope_len, *b_table, *b_out;
  size_t cap_rows, cap_seqs, cap_table;
  float *logits;
  size_t cap_logits;
  ig_sample_row *srows;     /* rows sampled on the device this step (runner.forward_sample) */
  ig_sample_out *souts;
  size_t cap_srows, cap_souts;
  int *lp_srow;             /* the device rows of the step's prompt logprob rows, in row order */
  size_t cap_lp_srow;
  int32_t *hrows;           /* out rows whose logits come to the host */
  size_t cap_hrows;
  ig_str piece, emit;
  /* the pipelined step (step_async, when the runner has forward_sample_begin/end) */
  int async;
  int n_held;               /* items[0..n_held) ran in the last step; their results are on the host, not taken */
  pend *pend;               /* tokens taken whose text and events go out while the next step runs */
  int n_pend;
  size_t cap_pend;
  /* IGNIS_PROFILE_STEPS=N: one log line per N steps with where the engine thread's time went (profile_step) */
  int prof_every, prof_n;
  int64_t prof_part[5], prof_rows, prof_seqs, prof_t0;
  int64_t prof_json_ns, prof_json_rows, prof_json_walks, prof_host_ns; /* constrained rows' masks; host sampling */
  int64_t prof_walk_wall_ns;
  _Atomic int64_t prof_walk_cpu_ns;
};

/* ---- small helpers ------------------------------------------------------------------------------------ */

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
  if (need <= *cap) return 0;
  size_t c = *cap ? *cap : 16;
  while (c < need) c *= 2;
  void *q = realloc(*p, c * elem);
  if (!q) return -ENOMEM;
  *p = q;
  *cap = c;
  return 0;
}

static int grow_ptrs(seq ***arr, int *cap, int need) {
  size_t c = (size_t)*cap;
  int rc = grow((void **)arr, &c, (size_t)need, sizeof(seq *));
  *cap = (int)c;
  return rc;
}

/* Inserts s into arr (sorted by order). */
static int insert_sorted(seq ***arr, int *n, int *cap, seq *s) {
  if (grow_ptrs(arr, cap, *n + 1)) return -ENOMEM;
  int i = *n;
  while (i > 0 && (*arr)[i - 1]->order > s->order) {
    (*arr)[i] = (*arr)[i - 1];
    i--;
  }
  (*arr)[i] = s;
  (*n)++;
  return 0;
}

static void remove_at(seq **arr, int *n, int i) {
  memmove(arr + i, arr + i + 1, sizeof(seq *) * (size_t)(*n - i - 1));
  (*n)--;
}

static int index_of(seq **arr, int n, seq *s) {
  for (int i = 0; i < n; i++)
    if (arr[i] == s) return i;
  return -1;
}

static void update_gauges(ig_engine *e) {
  atomic_store(&e->stats.kv_blocks_used, ig_kvb_used(&e->kvb));
  atomic_store(&e->stats.kv_blocks_cached, ig_kvb_cached_free(&e->kvb));
  pthread_mutex_lock(&e->mu);
  atomic_store(&e->stats.queue_size, e->n_waiting + e->n_pending);
  pthread_mutex_unlock(&e->mu);
}

/* ---- finishing ---------------------------------------------------------------------------------------- */

/* Frees a sequence and its buffers; alone, for one that never reached the engine thread (submit failed). */
static void seq_free_mem(seq *s) {
  if (!s) return;
  ig_stopseq_free(&s->stop);
  free(s->tokens);
  free(s->prefill_lp);
  free(s->prefill_top);
  free(s->json);
  free(s);
}

static void seq_free(ig_engine *e, seq *s) {
  ig_kvb_release(&e->kvb, &s->bt);
  ig_kvb_table_free(&s->bt);
  if (s->detok && e->has_text) e->text.detok_free(e->text.ctx, s->detok);
  seq_free_mem(s);
}

/* Pushes one event to s's request and wakes the server. `text` may be NULL. */
static void emit_event(seq *s, int32_t id, float logprob, int special, const char *text, size_t len,
                       const ig_sample_result *sr, ig_finish_reason fin) {
  ig_request *r = s->r;
  ig_token_event ev;
  memset(&ev, 0, sizeof ev);
  ev.id = id;
  ev.logprob = logprob;
  ev.special = special;
  ev.text = malloc(len + 1);
  if (ev.text) {
    if (len) memcpy(ev.text, text, len);
    ev.text[len] = 0;
  }
  if (sr && sr->n_top > 0) {
    ev.n_top = sr->n_top;
    memcpy(ev.top_ids, sr->top_ids, sizeof(int32_t) * (size_t)sr->n_top);
    memcpy(ev.top_logprobs, sr->top_logprobs, sizeof(float) * (size_t)sr->n_top);
  }
  ev.finish = fin;
  if (id >= 0 && r->t_first_token == 0) r->t_first_token = ig_engine_now_ns();
  ig_request_push_event(r, &ev);
  if (r->wake) r->wake(r->wake_arg);
}

/* Ends a sequence that is in neither list any more: final event (when not already pushed), blocks freed,
 * the engine's reference dropped. */
/* Gives back what a finishing sequence holds (blocks, its max_concurrent_requests slot) before its last
 * event goes out, so a client that sees the end can rely on the gauges and submit again at once. */
static void seq_release(ig_engine *e, seq *s) {
  if (s->released) return;
  s->released = 1;
  if (!s->in_flight) { /* else the step in flight may still write them: seq_free gives them back */
    ig_kvb_release(&e->kvb, &s->bt);
    atomic_store(&e->stats.kv_blocks_used, ig_kvb_used(&e->kvb));
  }
  atomic_fetch_add(&e->stats.requests_finished, 1);
  pthread_mutex_lock(&e->mu);
  e->n_inflight--;
  pthread_cond_broadcast(&e->cv);
  pthread_mutex_unlock(&e->mu);
}

static void seq_end(ig_engine *e, seq *s, ig_finish_reason fin, const char *msg) {
  ig_request *r = s->r;
  assert(!s->in_flight);
  if (s->pend >= 0) { /* its held-back token goes with it */
    e->pend[s->pend].s = NULL;
    s->pend = -1;
  }
  seq_release(e, s);
  if (fin == IG_FINISH_CANCELLED || fin == IG_FINISH_ERROR) {
    if (fin == IG_FINISH_ERROR) {
      pthread_mutex_lock(&r->mu);
      snprintf(r->error, sizeof r->error, "%s", msg ? msg : "generation failed");
      pthread_mutex_unlock(&r->mu);
    }
    emit_event(s, -1, NAN, 0, "", 0, NULL, fin);
  }
  r->engine_state = NULL;
  seq_free(e, s);
  ig_request_unref(r);
}

static void finish_running(ig_engine *e, seq *s, ig_finish_reason fin, const char *msg) {
  int i = index_of(e->running, e->n_running, s);
  if (i >= 0) remove_at(e->running, &e->n_running, i);
  seq_end(e, s, fin, msg);
}

/* ---- submission --------------------------------------------------------------------------------------- */

int ig_engine_submit(ig_engine *e, ig_request *r, char *err, size_t errlen) {
  const ig_gen_params *p = &r->params;
  if (r->n_prompt < 1 || !r->prompt) {
    snprintf(err, errlen, "the prompt must have at least one token");
    return -EINVAL;
  }
  if (p->max_new_tokens < 0) {
    snprintf(err, errlen, "max_new_tokens must be >= 0");
    return -EINVAL;
  }
  if ((int64_t)r->n_prompt + p->max_new_tokens > e->cfg.max_total_tokens) {
    snprintf(err, errlen, "input tokens (%d) + max_new_tokens (%d) must be <= %d", r->n_prompt, p->max_new_tokens,
             e->cfg.max_total_tokens);
    return -EINVAL;
  }
  if (e->run.max_position > 0 && (int64_t)r->n_prompt + p->max_new_tokens > e->run.max_position) {
    snprintf(err, errlen, "input tokens (%d) + max_new_tokens (%d) exceed the model's %d positions", r->n_prompt,
             p->max_new_tokens, e->run.max_position);
    return -EINVAL;
  }
  for (int i = 0; i < r->n_prompt; i++) {
    if (r->prompt[i] < 0 || r->prompt[i] >= e->run.vocab_size) {
      snprintf(err, errlen, "token id %d out of the vocabulary (%d)", r->prompt[i], e->run.vocab_size);
      return -EINVAL;
    }
  }
  if (p->top_n_tokens < 0 || p->top_n_tokens > IG_MAX_TOP_N || p->prefill_top_n < 0 ||
      p->prefill_top_n > IG_MAX_TOP_N) {
    snprintf(err, errlen, "top_n_tokens and prefill_top_n must be in [0, %d]", IG_MAX_TOP_N);
    return -EINVAL;
  }
  for (int k = 0; k < p->n_stop_ids; k++) {
    if (p->stop_ids[k] < 0 || p->stop_ids[k] >= e->run.vocab_size) {
      snprintf(err, errlen, "stop_token_ids: token id %d is outside the vocabulary (0..%d)", p->stop_ids[k],
               e->run.vocab_size - 1);
      return -EINVAL;
    }
  }
  for (int k = 0; k < p->n_bias; k++) {
    if (p->bias_id[k] < 0 || p->bias_id[k] >= e->run.vocab_size) {
      snprintf(err, errlen, "logit_bias: token id %d is outside the vocabulary (0..%d)", p->bias_id[k],
               e->run.vocab_size - 1);
      return -EINVAL;
    }
  }
  if (p->min_tokens < 0 || p->min_tokens > p->max_new_tokens) {
    snprintf(err, errlen, "min_tokens (%d) must be between 0 and max_new_tokens (%d)", p->min_tokens, p->max_new_tokens);
    return -EINVAL;
  }
  if (p->min_tokens > 0 && p->json_mode) {
    snprintf(err, errlen, "min_tokens cannot be combined with constrained output (a grammar or response_format)");
    return -EINVAL;
  }
  if (!(p->min_p >= 0.0f && p->min_p <= 1.0f)) {
    snprintf(err, errlen, "min_p must be in [0, 1]");
    return -EINVAL;
  }
  if (p->min_tokens > 0) r->params.eos_ids = e->run.eos_ids, r->params.n_eos = e->run.n_eos;
  if (p->watermark_gamma == 0.0f) r->params.watermark_gamma = e->cfg.watermark_gamma;
  if (p->watermark_delta == 0.0f) r->params.watermark_delta = e->cfg.watermark_delta;
  if (p->json_mode && (!(e->has_text && e->text.raw_piece) || e->run.n_eos < 1 || (!p->schema && !e->jany))) {
    snprintf(err, errlen,
             "constrained output (JSON mode, a schema or a regex) needs the model's tokenizer and an EOS token");
    return -EINVAL;
  }
  const int top_n = p->prefill_logprobs ? p->prefill_top_n : 0;
  seq *s = calloc(1, sizeof *s);
  if (s) s->tokens = malloc(sizeof(int32_t) * (size_t)(r->n_prompt + p->max_new_tokens));
  if (s && p->prefill_logprobs) s->prefill_lp = malloc(sizeof(float) * (size_t)r->n_prompt);
  if (s && top_n) s->prefill_top = malloc(sizeof *s->prefill_top * (size_t)r->n_prompt * (size_t)top_n);
  if (s && p->json_mode && (s->json = malloc(sizeof *s->json))) {
    s->schema = p->schema ? p->schema : e->jany;
    ig_jsm_init(s->json, s->schema);
  }
  if (!s || !s->tokens || (p->prefill_logprobs && !s->prefill_lp) || (top_n && !s->prefill_top) ||
      (p->json_mode && !s->json)) {
    seq_free_mem(s);
    snprintf(err, errlen, "out of memory");
    return -ENOMEM;
  }
  memcpy(s->tokens, r->prompt, sizeof(int32_t) * (size_t)r->n_prompt);
  s->n_tokens = s->n_prompt = r->n_prompt;
  s->lp_done = 1;
  s->pend = -1;
  if (s->prefill_lp) {
    for (int i = 0; i < r->n_prompt; i++) s->prefill_lp[i] = NAN;
  }
  for (size_t i = 0; s->prefill_top && i < (size_t)r->n_prompt * (size_t)top_n; i++)
    s->prefill_top[i] = (ig_logprob_top){-1, NAN};
  ig_stopseq_init(&s->stop, p->stop, p->n_stop);
  s->stop.include = p->include_stop;
  s->r = r;

  pthread_mutex_lock(&e->mu);
  int rc = 0;
  if (e->stopping) {
    snprintf(err, errlen, "the engine is shutting down");
    rc = -ESHUTDOWN;
  } else if (e->n_inflight >= e->cfg.max_concurrent_requests) {
    snprintf(err, errlen, "Model is overloaded");
    rc = -EAGAIN;
  } else if (grow_ptrs(&e->pending, &e->cap_pending, e->n_pending + 1)) {
    snprintf(err, errlen, "out of memory");
    rc = -ENOMEM;
  }
  if (rc) {
    pthread_mutex_unlock(&e->mu);
    seq_free_mem(s);
    return rc;
  }
  ig_request_ref(r);
  r->engine_state = s;
  r->t_queued = ig_engine_now_ns();
  s->order = e->next_order++;
  e->pending[e->n_pending++] = s;
  e->n_inflight++;
  atomic_fetch_add(&e->stats.queue_size, 1); /* the engine thread recounts it exactly each step */
  pthread_cond_signal(&e->cv);
  pthread_mutex_unlock(&e->mu);
  return 0;
}

/* ---- admission ---------------------------------------------------------------------------------------- */

/* Blocks a sequence needs to finish computing what it has (+1 token for what it will sample next). */
static int blocks_to_finish(ig_engine *e, const seq *s) {
  int need = ig_kvb_blocks_for(&e->kvb, (int64_t)s->n_tokens + 1) - s->bt.n;
  return need > 0 ? need : 0;
}

/* Prefix cache: the leading blocks of s's tokens it takes from the cache when admitted (ids in e->match_ids;
 * *live of them referenced already, the others leave the free count). What it then computes itself must be what
 * it would compute without the cache, bit for bit: at least canon_rows tokens (one at least, to sample), and the
 * first piece of it, up to the next chunk boundary, canon_rows rows or more (a shorter piece would take the
 * backend's few-rows path, e.g. the decode attention kernel, where a cold run has the chunk's). A request that
 * asks for prompt logprobs computes its whole prompt. */
static int reuse_blocks(ig_engine *e, const seq *s, int *live) {
  *live = 0;
  if (!e->cfg.prefix_caching || s->prefill_lp) return 0;
  const int bs = e->kvb.block_size, C = e->cfg.max_batch_prefill_tokens, keep = e->canon_rows;
  int max_blocks = (s->n_tokens - keep) / bs;
  if (max_blocks <= 0) return 0;
  int k = ig_kvb_match(&e->kvb, s->tokens, max_blocks, e->match_ids, NULL);
  for (; k > 0; k--) {
    int r = k * bs, end = (r / C + 1) * C;
    if (end > s->n_tokens) end = s->n_tokens;
    if (end - r >= keep) break;
  }
  for (int i = 0; i < k; i++) *live += e->kvb.ref[e->match_ids[i]] > 0;
  return k;
}

/* Attaches what reuse_blocks found to the sequence being admitted. */
static void take_cached(ig_engine *e, seq *s) {
  int live, k = reuse_blocks(e, s, &live);
  if (k > 0 && ig_kvb_attach(&e->kvb, &s->bt, e->match_ids, k) == 0) {
    s->n_computed = s->n_canon = k * e->kvb.block_size;
    s->n_reg = k;
    s->chain = e->kvb.serial[e->match_ids[k - 1]];
    atomic_fetch_add(&e->stats.prefix_hit_tokens, s->n_computed);
  }
  if (!s->admitted_once) {
    s->admitted_once = 1;
    s->r->n_cached = s->n_computed;
  }
  if (e->cfg.prefix_caching) atomic_fetch_add(&e->stats.prefix_query_tokens, s->n_tokens);
}

/* Prefix cache, after s computed it's item's rows: the blocks that are now complete and canonical are registered.
 * Rows computed the few-rows way end s's canonical run for good (later rows read them). */
static void register_blocks(ig_engine *e, seq *s, const item *it) {
  if (!e->cfg.prefix_caching || it->start != s->n_canon || it->end - it->start < e->canon_rows) return;
  s->n_canon = it->end;
  const int bs = e->kvb.block_size;
  for (; (s->n_reg + 1) * bs <= s->n_canon; s->n_reg++)
    ig_kvb_register(&e->kvb, &s->bt, s->n_reg, s->tokens + (size_t)s->n_reg * bs, &s->chain);
}

/* FIFO admission. A request is admitted when the free blocks, less what running prefills still need,
 * hold its whole prompt (plus one token), less the blocks it shares with running sequences (prefix cache). TGI's waiting rules decide whether to admit at all while
 * others decode: new requests join when at least floor(running * waiting_served_ratio) of them can, or
 * once max_waiting_tokens steps have passed since the last admission (so a lone request is never starved);
 * an idle engine admits at once. */
static void admit(ig_engine *e) {
  if (e->n_waiting == 0) return;
  int avail = e->kvb.n_free;
  for (int i = 0; i < e->n_running; i++) {
    const seq *r = e->running[i];
    if (r->prefilling) avail -= blocks_to_finish(e, r);
    else if (r->n_computed % e->kvb.block_size == 0) avail--; /* its next token opens a block this step */
  }
  int n_fit = 0;
  for (int i = 0; i < e->n_waiting; i++) {
    int live;
    reuse_blocks(e, e->waiting[i], &live);
    int need = blocks_to_finish(e, e->waiting[i]) - live;
    if (need > avail || e->n_running + n_fit >= e->cfg.max_concurrent_requests ||
        (e->cfg.max_batch_size > 0 && e->n_running + n_fit >= e->cfg.max_batch_size))
      break;
    avail -= need;
    n_fit++;
  }
  if (n_fit == 0) return;
  if (e->n_running > 0 && e->waiting_steps < e->cfg.max_waiting_tokens) {
    int min_size = (int)floorf((float)e->n_running * e->cfg.waiting_served_ratio);
    if (n_fit < min_size) return;
  }
  for (int i = 0; i < n_fit; i++) {
    seq *s = e->waiting[i];
    s->prefilling = 1;
    take_cached(e, s);
    insert_sorted(&e->running, &e->n_running, &e->cap_running, s); /* capacity reserved by engine_main */
    if (!s->text_started && e->has_text) {
      s->detok = e->text.detok_new(e->text.ctx, s->tokens, s->n_prompt);
      s->text_started = 1;
    }
  }
  memmove(e->waiting, e->waiting + n_fit, sizeof(seq *) * (size_t)(e->n_waiting - n_fit));
  e->n_waiting -= n_fit;
  e->waiting_steps = 0;
  for (int i = e->n_running - 1; i >= 0; i--)
    if (e->has_text && !e->running[i]->detok) finish_running(e, e->running[i], IG_FINISH_ERROR, "out of memory");
}

/* ---- scheduling one step ------------------------------------------------------------------------------ */

/* Evicts the newest running sequence: its blocks go back, it waits at the front to recompute. */
static seq *preempt_newest(ig_engine *e, int *n_items) {
  seq *v = e->running[e->n_running - 1];
  assert(!v->in_flight); /* scheduling runs with no step in flight */
  e->n_running--;
  for (int i = 0; i < *n_items; i++) {
    if (e->items[i].s == v) {
      memmove(e->items + i, e->items + i + 1, sizeof(item) * (size_t)(*n_items - i - 1));
      (*n_items)--;
      break;
    }
  }
  ig_kvb_release(&e->kvb, &v->bt);
  v->n_computed = v->n_canon = v->n_reg = 0;
  v->chain = 0;
  v->prefilling = 0;
  if (insert_sorted(&e->waiting, &e->n_waiting, &e->cap_waiting, v)) {
    seq_end(e, v, IG_FINISH_ERROR, "out of memory");
    return NULL;
  }
  atomic_fetch_add(&e->stats.preemptions, 1);
  ig_log(IG_LOG_DEBUG, "engine: preempted request %llu (%d tokens to recompute)", (unsigned long long)v->r->id,
         v->n_tokens);
  return v;
}

/* Gives s the blocks for [start, end) and adds its item; preempts the newest sequences while blocks are
 * short. Returns 1 when added, 0 when s itself was preempted or failed. */
static int try_add(ig_engine *e, seq *s, int start, int end, int prefill, int *n_items) {
  for (;;) {
    int rc = ig_kvb_ensure(&e->kvb, &s->bt, end);
    if (rc == 0) break;
    if (rc != -ENOSPC) {
      finish_running(e, s, IG_FINISH_ERROR, "out of memory");
      return 0;
    }
    seq *v = e->running[e->n_running - 1];
    preempt_newest(e, n_items);
    if (v == s) return 0;
  }
  item *it = &e->items[(*n_items)++];
  it->s = s;
  it->start = start;
  it->end = end;
  it->prefill = prefill;
  it->n_draft = 0;
  return 1;
}

/* Prompt rows whose logprobs are asked for (decoder_input_details, echo + logprobs) each need a whole logits row on
 * the device and on the host. Such a sequence's prompt goes in chunks of at most this many rows, and at most this many
 * such rows go in one step: ~256 MiB of f32 logits (523 rows at Llama 3's 128,256 entries) rather than a full
 * max_batch_prefill_tokens chunk (4,096 rows: 2.1 GB, beyond what the device keeps back from the KV cache), or
 * cfg.prompt_logprob_rows. At least canon_rows, so the chunks keep the K/V bits of any other chunking. */
int ig_engine_prompt_logprob_rows(const ig_engine_config *cfg, int vocab, int canon_rows) {
  long long r = (256LL << 20) / (4LL * (vocab > 0 ? vocab : 1));
  if (r < 64) r = 64;
  if (cfg->prompt_logprob_rows > 0) r = cfg->prompt_logprob_rows;
  if (r < canon_rows) r = canon_rows;
  return cfg->max_batch_prefill_tokens > 0 && r > cfg->max_batch_prefill_tokens ? cfg->max_batch_prefill_tokens : (int)r;
}
static int lp_chunk_rows(const ig_engine *e) {
  return ig_engine_prompt_logprob_rows(&e->cfg, e->run.vocab_size, e->canon_rows);
}

/* ---- speculation (--speculate): drafts by n-gram lookup ----------------------------------------------------- */

/* Whether s's next tokens may be drafted: a request whose next token depends on its row's logits alone (no
 * penalties, watermark, logit_bias, min_tokens or grammar: none of the processors that read the tokens before it or
 * their count), past its prompt. Greedy or sampling: a verify row samples with the uniform draw of the position it
 * stands for (ig_sample_uniform(seed, n_generated + j)), so its token is the one a one-token step would draw, and a
 * draft is taken only when it equals that token: the output is the non-speculative one, draw for draw. */
static int spec_eligible(const seq *s) {
  const ig_gen_params *p = &s->r->params;
  return !s->prefilling && !s->json && !p->json_mode &&
         !(p->repetition_penalty > 0.0f && p->repetition_penalty != 1.0f) && p->frequency_penalty == 0.0f &&
         p->presence_penalty == 0.0f && !p->watermark && !p->n_bias && !p->min_tokens;
}

/* Prompt lookup: the most recent earlier occurrence of s's last g tokens (g = 3, else 2, else 1) within its last
 * SPEC_WINDOW tokens, and up to max_k of the tokens that followed it, copied to out. Returns how many (0: none). One
 * scan, from the end back: an occurrence ending at e (before the last token) matches as far back as t[e - j] ==
 * t[n - 1 - j]; the first e matching 3 wins, else the first matching 2, else the first matching 1. */
static int spec_find(const seq *s, int max_k, int32_t *out) {
  const int32_t *t = s->tokens;
  const int n = s->n_tokens, lo = n > SPEC_WINDOW ? n - SPEC_WINDOW : 0;
  int best[4] = {-1, -1, -1, -1}; /* best[g]: the last end e of an occurrence of the last g tokens */
  for (int e = n - 2; e >= lo; e--) {
    if (t[e] != t[n - 1]) continue;
    int g = 1;
    while (g < 3 && e - g >= lo && t[e - g] == t[n - 1 - g]) g++;
    for (int h = 1; h <= g; h++)
      if (best[h] < 0) best[h] = e;
    if (g == 3) break;
  }
  int e = best[3] >= 0 ? best[3] : best[2] >= 0 ? best[2] : best[1];
  if (e < 0) return 0;
  int k = n - 1 - e < max_k ? n - 1 - e : max_k;
  memcpy(out, t + e + 1, sizeof(int32_t) * (size_t)k);
  return k;
}

/* After the step's decodes and prompt chunks: each eligible decode item with drafts becomes a verify piece, its
 * pending token and k drafts, k at most spec_k, the request's remaining tokens less one, the rows the step leaves of
 * max_batch_prefill_tokens and of the logits rows (rows_left: the device's activations and logits are reserved for
 * those) and what the free KV blocks hold beyond what running prompts still need: drafts never preempt anyone nor
 * delay a prompt chunk. The drafts go to s->tokens past n_tokens (room: n_tokens + k < n_prompt + max_new_tokens);
 * the blocks they take stay the sequence's (its next tokens fill them). */
static void spec_add_drafts(ig_engine *e, int n_items, int rows_left) {
  const int bs = e->kvb.block_size;
  int spare = e->kvb.n_free;
  for (int i = 0; i < e->n_running; i++)
    if (e->running[i]->prefilling) spare -= blocks_to_finish(e, e->running[i]);
  for (int i = 0; i < n_items && rows_left > 0 && spare >= 0; i++) {
    item *it = &e->items[i];
    seq *s = it->s;
    if (it->prefill || it->end != s->n_tokens || !spec_eligible(s)) continue;
    int k = e->spec_k, room = (s->bt.n + spare) * bs - s->n_tokens;
    if (k > rows_left) k = rows_left;
    if (k > s->r->params.max_new_tokens - s->n_generated - 1) k = s->r->params.max_new_tokens - s->n_generated - 1;
    if (k > room) k = room;
    if (k < 1 || (k = spec_find(s, k, s->tokens + s->n_tokens)) < 1) continue;
    const int had = s->bt.n;
    if (ig_kvb_ensure(&e->kvb, &s->bt, s->n_tokens + k)) continue; /* (cannot be short: counted above) */
    spare -= s->bt.n - had;
    memcpy(it->draft, s->tokens + s->n_tokens, sizeof(int32_t) * (size_t)k);
    it->n_draft = k;
    it->end = s->n_tokens + k;
    rows_left -= k;
  }
}

static int build_items(ig_engine *e) {
  size_t cap = (size_t)e->cap_items;
  if (grow((void **)&e->items, &cap, (size_t)e->n_running + 1, sizeof(item))) return -ENOMEM;
  e->cap_items = (int)cap;
  int n = 0;
  /* Decodes first, oldest first. A sequence that grows past run.rope_recompute_len now recomputes every key
   * instead (its blocks go back; the prompt chunks below take it, and its last row samples as the decode would). */
  const int rl = e->run.rope_recompute_len;
  for (int i = 0; i < e->n_running; i++) {
    seq *s = e->running[i];
    if (!s->prefilling && rl > 0 && s->n_computed == rl && s->n_tokens == rl + 1) {
      ig_kvb_release(&e->kvb, &s->bt);
      s->n_computed = s->n_canon = s->n_reg = 0;
      s->chain = 0;
      s->prefilling = 1;
      ig_log(IG_LOG_DEBUG, "engine: request %llu recomputes its %d tokens past the rotary switch length %d",
             (unsigned long long)s->r->id, s->n_tokens, rl);
    }
    if (s->prefilling) continue;
    assert(s->n_tokens - s->n_computed == 1);
    if (!try_add(e, s, s->n_computed, s->n_tokens, 0, &n)) i--; /* s left the running list */
  }
  /* Then whole prompt chunks: chunk k of a sequence is [k*C, (k+1)*C) of its tokens, whatever else runs (C the
   * smaller lp_chunk_rows for a sequence whose prompt logprobs are asked for, and those rows within their own
   * per-step budget too). */
  const int C = e->cfg.max_batch_prefill_tokens, CL = lp_chunk_rows(e);
  int budget = C, lp_budget = CL;
  for (int i = 0; i < e->n_running; i++) {
    seq *s = e->running[i];
    if (!s->prefilling) continue;
    const int lp = s->prefill_lp != NULL, Cs = lp ? CL : C;
    int start = s->n_computed;
    int end = (start / Cs + 1) * Cs;
    if (end > s->n_tokens) end = s->n_tokens;
    if (end - start > budget || (lp && end - start > lp_budget)) continue;
    if (!try_add(e, s, start, end, 1, &n)) i--; /* s left the running list (preempted or failed): the next sequence
                                                 * took its index */
    /* A preempted sequence is always the newest, so earlier indices and budget bookkeeping stay valid
     * except for prefill items of the victim: recount. */
    budget = C, lp_budget = CL;
    for (int j = 0; j < n; j++)
      if (e->items[j].prefill) {
        budget -= e->items[j].end - e->items[j].start;
        if (e->items[j].s->prefill_lp) lp_budget -= e->items[j].end - e->items[j].start;
      }
  }
  if (e->spec_k > 0) spec_add_drafts(e, n, budget < lp_budget ? budget : lp_budget);
  return n;
}

/* ---- running the step --------------------------------------------------------------------------------- */

/* The step's batch. A verify piece (--speculate) goes in as one single-row sequence per row, each over the
 * sequence's blocks at its own position (row p attends to keys 0..p, those of the piece's earlier rows included: a
 * step writes every row's K/V before its attention): each row is then computed exactly as a one-token step computes
 * it (the backends' per-sequence paths see one row), and a step of such rows is a decode-only batch, which a decode
 * graph replays. */
static int fill_batch(ig_engine *e, int n_items, ig_batch *b) {
  int rows = 0, n_out = 0, max_blocks = 1, n_seqs = 0;
  for (int i = 0; i < n_items; i++) {
    rows += e->items[i].end - e->items[i].start;
    n_seqs += e->items[i].n_draft ? e->items[i].end - e->items[i].start : e->items[i].end > e->items[i].start;
    if (e->items[i].s->bt.n > max_blocks) max_blocks = e->items[i].s->bt.n;
  }
  /* The per-row arrays share cap_rows and the per-sequence ones cap_seqs: they grow together. */
  size_t c = e->cap_rows;
  if (grow((void **)&e->b_tokens, &c, (size_t)rows, sizeof(int32_t))) return -ENOMEM;
  if (c != e->cap_rows) {
    int32_t **arrs[] = {&e->b_pos, &e->b_slot, &e->b_out};
    for (int k = 0; k < 3; k++) {
      int32_t *q = realloc(*arrs[k], c * sizeof(int32_t));
      if (!q) return -ENOMEM;
      *arrs[k] = q;
    }
    e->cap_rows = c;
  }
  size_t cs = e->cap_seqs;
  if (grow((void **)&e->b_seq_start, &cs, (size_t)n_seqs + 1, sizeof(int32_t))) return -ENOMEM;
  if (cs != e->cap_seqs) {
    int32_t *q = realloc(e->b_ctx_len, cs * sizeof(int32_t));
    if (!q) return -ENOMEM;
    e->b_ctx_len = q;
    if (!(q = realloc(e->b_rope_len, cs * sizeof(int32_t)))) return -ENOMEM;
    e->b_rope_len = q;
    e->cap_seqs = cs;
  }
  if (grow((void **)&e->b_table, &e->cap_table, (size_t)n_seqs * (size_t)max_blocks, sizeof(int32_t)))
    return -ENOMEM;

  int row = 0, si = 0;
  for (int i = 0; i < n_items; i++) {
    item *it = &e->items[i];
    seq *s = it->s;
    for (int p = it->start; p < it->end; p++, row++) {
      if (p == it->start || it->n_draft) { /* a sequence's rows, or one row of a verify piece */
        e->b_seq_start[si] = row;
        e->b_ctx_len[si] = it->n_draft ? p + 1 : it->end;
        /* rows take the rotary frequencies of everything the sequence holds: a prompt's chunks (or a recompute's)
         * those of its whole length, as transformers' one forward over it; a decode row those of its own length */
        e->b_rope_len[si] = s->n_tokens;
        for (int j = 0; j < max_blocks; j++) e->b_table[(size_t)si * max_blocks + j] = j < s->bt.n ? s->bt.ids[j] : 0;
        si++;
      }
      e->b_tokens[row] = s->tokens[p];
      e->b_pos[row] = p;
      e->b_slot[row] = ig_kvb_slot(&e->kvb, &s->bt, p);
      /* Logits wanted: prompt rows whose next-token logprob is asked for, and the last row of a sequence
       * that has computed everything it holds (it samples), and a verify piece's drafts (each samples). */
      int want_lp = s->prefill_lp && p + 1 >= s->lp_done && p + 1 < s->n_prompt;
      if (want_lp || p >= s->n_tokens - 1) e->b_out[n_out++] = row;
    }
  }
  assert(si == n_seqs);
  e->b_seq_start[n_seqs] = row;
  memset(b, 0, sizeof *b);
  b->n_tokens = rows;
  b->tokens = e->b_tokens;
  b->pos = e->b_pos;
  b->slot = e->b_slot;
  b->n_seqs = n_seqs;
  b->seq_start = e->b_seq_start;
  b->ctx_len = e->b_ctx_len;
  b->max_blocks = max_blocks;
  b->block_table = e->b_table;
  b->n_out = n_out;
  b->out_rows = e->b_out;
  b->rope_len = e->b_rope_len;
  return 0;
}

static int is_eos(const ig_engine *e, int32_t id) {
  for (int i = 0; i < e->run.n_eos; i++)
    if (e->run.eos_ids[i] == id) return 1;
  return 0;
}

/* one of the request's stop_token_ids */
static int is_stop_id(const ig_gen_params *p, int32_t id) {
  for (int i = 0; i < p->n_stop_ids; i++)
    if (p->stop_ids[i] == id) return 1;
  return 0;
}

/* Accepting a sampled token, in two halves so that the pipelined step (step_async) can do what needs no text
 * before it launches the next step, and the text while that step runs. The first half appends the token and
 * makes the finish checks that need no text (TGI's order: length, then EOS). */
static ig_finish_reason append_token(ig_engine *e, seq *s, int32_t id) {
  const ig_gen_params *p = &s->r->params;
  s->tokens[s->n_tokens++] = id;
  s->n_generated++;
  if (s->json) { /* the mask allowed only tokens that continue the document, and EOS once it is complete */
    if (is_eos(e, id)) return IG_FINISH_EOS;
    if (e->json_ready != 1 || ig_jsm_feed(s->json, s->schema, e->jpool + e->joff[id], e->jlen[id]))
      ig_log(IG_LOG_ERROR, "engine: request %llu: token %d does not continue its constrained text",
             (unsigned long long)s->r->id, id);
  }
  if (s->n_generated >= p->max_new_tokens || s->n_tokens >= e->cfg.max_total_tokens) return IG_FINISH_LENGTH;
  if (!p->ignore_eos && is_eos(e, id)) return IG_FINISH_EOS;
  if (p->n_stop_ids && is_stop_id(p, id)) return IG_FINISH_STOP;
  return IG_FINISH_NONE;
}

/* The second half: text through the detokenizer and the stop matcher (a stop match wins over `fin`, what
 * append_token decided, since its text must not be sent), one event. Returns the finish reason. */
static ig_finish_reason token_text(ig_engine *e, seq *s, const ig_sample_result *sr, ig_finish_reason fin) {
  int32_t id = sr->id;
  int special = e->has_text && e->text.is_special ? e->text.is_special(e->text.ctx, id) : 0;
  ig_str_clear(&e->piece);
  ig_str_clear(&e->emit);
  if (s->detok) e->text.detok_push(e->text.ctx, s->detok, id, &e->piece);
  if (fin == IG_FINISH_STOP && is_stop_id(&s->r->params, id)) ig_str_clear(&e->piece); /* a stop id's text is not sent */
  int stopped;
  if (s->n_generated < s->r->params.min_tokens) /* min_tokens: stop sequences are not looked for yet */
    stopped = ig_str_append(&e->emit, e->piece.p ? e->piece.p : "", e->piece.len) ? -1 : 0;
  else
    stopped = ig_stopseq_feed(&s->stop, e->piece.p ? e->piece.p : "", e->piece.len, &e->emit);
  if (stopped == 1) {
    fin = IG_FINISH_STOP;
  } else if (fin != IG_FINISH_NONE) {
    /* Ending without a stop match: what the detokenizer or the matcher still holds goes out now. */
    if (s->detok) {
      ig_str_clear(&e->piece);
      e->text.detok_flush(e->text.ctx, s->detok, &e->piece);
      if (e->piece.len && ig_stopseq_feed(&s->stop, e->piece.p, e->piece.len, &e->emit) == 1) fin = IG_FINISH_STOP;
    }
    if (fin != IG_FINISH_STOP) ig_stopseq_flush(&s->stop, &e->emit);
  }
  if (fin != IG_FINISH_NONE) seq_release(e, s);
  emit_event(s, id, sr->logprob, special, e->emit.p ? e->emit.p : "", e->emit.len, sr, fin);
  return fin;
}

/* Both halves at once (the serial step). */
static ig_finish_reason accept_token(ig_engine *e, seq *s, const ig_sample_result *sr) {
  return token_text(e, s, sr, append_token(e, s, sr->id));
}

/* A request of max_new_tokens 0 whose prompt is computed (its prefill logprobs published): one event of no token,
 * finish LENGTH, and it ends. */
static void end_prompt_only(ig_engine *e, seq *s) {
  seq_release(e, s);
  emit_event(s, -1, NAN, 0, "", 0, NULL, IG_FINISH_LENGTH);
  finish_running(e, s, IG_FINISH_LENGTH, NULL);
}

/* Ends s after token_text sent its final event, from the running or the waiting list (preempted meanwhile).
 * When the step in flight computes a row for it, it stays allocated (its KV blocks too, which that step may still
 * write) as a zombie until the step's results are in: take_held then frees it and drops its token. */
static void end_after_text(ig_engine *e, seq *s, ig_finish_reason fin) {
  int i = index_of(e->running, e->n_running, s);
  if (i >= 0) remove_at(e->running, &e->n_running, i);
  else if ((i = index_of(e->waiting, e->n_waiting, s)) >= 0) remove_at(e->waiting, &e->n_waiting, i);
  if (s->in_flight) s->zombie = 1;
  else seq_end(e, s, fin, NULL);
}

/* The text half of s's held-back token (e->pend[s->pend]). Returns 1 when that ended s (a stop sequence). */
static int emit_pending_of(ig_engine *e, seq *s) {
  pend *p = &e->pend[s->pend];
  s->pend = -1;
  p->s = NULL;
  ig_finish_reason fin = token_text(e, s, &p->res, IG_FINISH_NONE);
  if (fin == IG_FINISH_NONE) return 0;
  end_after_text(e, s, fin);
  return 1;
}

/* (C) of step_async: text, stop sequences and events of the tokens take_held held back. */
static void emit_pending(ig_engine *e) {
  for (int k = 0; k < e->n_pend; k++)
    if (e->pend[k].s) emit_pending_of(e, e->pend[k].s);
  e->n_pend = 0;
}

/* Cancellations: blocks freed now (no step is in flight when this runs). A sequence whose last token's event is
 * still held back (step_async) sends it first, as the serial engine did before it saw the cancellation. */
static void handle_cancellations(ig_engine *e) {
  for (int i = e->n_running - 1; i >= 0; i--) {
    seq *s = e->running[i];
    if (!atomic_load(&s->r->cancelled)) continue;
    if (s->pend >= 0 && emit_pending_of(e, s)) continue; /* it ended on a stop sequence */
    finish_running(e, s, IG_FINISH_CANCELLED, NULL);
  }
  for (int i = e->n_waiting - 1; i >= 0; i--) {
    seq *s = e->waiting[i];
    if (atomic_load(&s->r->cancelled)) {
      remove_at(e->waiting, &e->n_waiting, i);
      seq_end(e, s, IG_FINISH_CANCELLED, NULL);
    }
  }
}

/* Admission and the step's items. Returns how many (0: nothing to run this step). */
static int schedule(ig_engine *e) {
  admit(e);
  int n_items = build_items(e);
  update_gauges(e);
  if (n_items < 0) {
    for (int i = e->n_running - 1; i >= 0; i--) finish_running(e, e->running[i], IG_FINISH_ERROR, "out of memory");
    return 0;
  }
  if (n_items == 0) {
    atomic_store(&e->stats.batch_size, 0);
    return 0;
  }
  e->waiting_steps++;
  int64_t t_sched = ig_engine_now_ns();
  for (int i = 0; i < n_items; i++) {
    seq *s = e->items[i].s;
    if (!s->scheduled_once) {
      s->scheduled_once = 1;
      if (s->r->t_first_scheduled == 0) s->r->t_first_scheduled = t_sched;
    }
  }
  return n_items;
}

/* The step's batch and, when the runner samples on the device, the rows it samples there (e->srows) and those
 * whose logits come to the host (e->hrows); room for the logits that come to the host. 0 or -ENOMEM. */
static void json_entries(ig_engine *e, int n_rows);

/* A prompt logprob row of s goes to the device sampler (its next token as the row's target, its top-n there too)
 * rather than its logits to the host, when the runner samples on the device. */
static int lp_on_device(const ig_engine *e, const seq *s) {
  return e->run.forward_sample != NULL && s->r->params.prefill_top_n <= IG_SAMPLE_MAX_TOP;
}

static int prepare_step(ig_engine *e, int n_items, ig_batch *b, int *n_srows_out, int *n_host_out) {
  int V = e->run.vocab_size, n_srows = 0, n_host = 0, n_json = 0;
  const int dev = e->run.forward_sample != NULL;
  *n_srows_out = *n_host_out = 0;
  if (fill_batch(e, n_items, b)) return -ENOMEM;
  if (!dev) return grow((void **)&e->logits, &e->cap_logits, (size_t)b->n_out * (size_t)V + 1, sizeof(float));
  if (grow((void **)&e->srows, &e->cap_srows, (size_t)n_items, sizeof(ig_sample_row)) ||
      grow((void **)&e->souts, &e->cap_souts, (size_t)n_items, sizeof(ig_sample_out)) ||
      grow((void **)&e->hrows, &e->cap_hrows, (size_t)b->n_out + 1, sizeof(int32_t)) ||
      (e->async && grow((void **)&e->pend, &e->cap_pend, (size_t)n_items, sizeof(pend))))
    return -ENOMEM;
  /* Which logits rows the device samples (every sampling row it can: the choice depends on the request alone, so
   * a request's tokens never depend on its neighbours; and the prompt logprob rows, each with its next prompt token
   * as the target) and which come to the host (the watermark, which needs the host's permutation; logit_bias,
   * min_p, min_tokens; a prompt-only request's last row). */
  int out = 0, n_lpd = 0;
  for (int i = 0; i < n_items; i++) {
    item *it = &e->items[i];
    seq *s = it->s;
    it->dev_sample = -1;
    for (int p = it->start; p < it->end; p++) {
      int want_lp = s->prefill_lp && p + 1 >= s->lp_done && p + 1 < s->n_prompt;
      if (!want_lp && p < s->n_tokens - 1) continue;
      const ig_gen_params *gp = &s->r->params;
      if (want_lp && lp_on_device(e, s)) { /* the raw logits' log-softmax: a greedy row with the next token as target */
        if (grow((void **)&e->srows, &e->cap_srows, (size_t)n_srows + 1, sizeof(ig_sample_row)) ||
            grow((void **)&e->souts, &e->cap_souts, (size_t)n_srows + 1, sizeof(ig_sample_out)) ||
            grow((void **)&e->lp_srow, &e->cap_lp_srow, (size_t)n_lpd + 1, sizeof(int)))
          return -ENOMEM;
        ig_sample_row *r = &e->srows[n_srows];
        memset(r, 0, sizeof *r);
        r->row = out++;
        r->temperature = 1.0f, r->top_p = 1.0f, r->typical_p = 1.0f, r->repetition_penalty = 1.0f;
        r->want_logprob = 1;
        r->top_n = s->prefill_top ? gp->prefill_top_n : 0;
        r->target = s->tokens[p + 1];
        e->lp_srow[n_lpd++] = n_srows++;
        continue;
      }
      /* (a prompt-only request's last row comes to the host and is not sampled: collect_results) */
      if (want_lp || gp->watermark || gp->n_bias || gp->min_tokens || gp->min_p > 0.0f || gp->max_new_tokens < 1 ||
          gp->top_n_tokens > IG_SAMPLE_MAX_TOP || (gp->json_mode && e->json_host)) {
        e->hrows[n_host++] = out++;
        continue;
      }
      int sampling = ig_sampler_is_sampling(gp);
      if (grow((void **)&e->srows, &e->cap_srows, (size_t)n_srows + 1, sizeof(ig_sample_row)) ||
          grow((void **)&e->souts, &e->cap_souts, (size_t)n_srows + 1, sizeof(ig_sample_out)))
        return -ENOMEM;
      ig_sample_row *r = &e->srows[n_srows];
      memset(r, 0, sizeof *r);
      r->row = out++;
      r->target = -1;
      r->do_sample = sampling;
      r->temperature = gp->temperature;
      r->top_k = gp->top_k;
      r->top_p = gp->top_p;
      r->typical_p = gp->typical_p;
      r->repetition_penalty = gp->repetition_penalty;
      r->frequency_penalty = gp->frequency_penalty;
      r->presence_penalty = gp->presence_penalty;
      /* (a verify piece's row p samples the token after tokens [0, p], drafts included) */
      r->uniform = sampling ? ig_sample_uniform(gp->seed, (uint64_t)(s->n_generated + p - (s->n_tokens - 1))) : 0.0;
      r->want_logprob = sampling || gp->want_logprobs || gp->top_n_tokens > 0;
      r->top_n = gp->top_n_tokens;
      r->tokens = s->tokens;
      r->n_tokens = p + 1;
      r->n_prompt = s->n_prompt;
      if (s->json) { /* its mask, made below, goes to the device with it */
        if (grow((void **)&e->jrows, &e->cap_jrows, (size_t)n_json + 1, sizeof *e->jrows)) return -ENOMEM;
        e->jrows[n_json++] = (struct jrow){.job = n_srows, .s = s};
      }
      if (it->dev_sample < 0) it->dev_sample = n_srows; /* a verify piece's rows: consecutive from there */
      n_srows++;
    }
  }
  assert(out == b->n_out);
  if (n_json) { /* constrained rows sampled on the device: their masks as bitmaps (only EOS when none) */
    const int W = (V + 31) / 32;
    if (!e->eos_bits) {
      if (!(e->eos_bits = calloc((size_t)W, sizeof *e->eos_bits))) return -ENOMEM;
      for (int k = 0; k < e->run.n_eos; k++) {
        int32_t id = e->run.eos_ids[k];
        if (id >= 0 && id < V) e->eos_bits[id >> 5] |= 1u << (id & 31);
      }
    }
    json_entries(e, n_json);
    for (int r = 0; r < n_json; r++) {
      int k = e->jrows[r].entry;
      e->srows[e->jrows[r].job].allowed = k >= 0 ? e->jc_bits + (size_t)k * (size_t)W : e->eos_bits;
    }
  }
  *n_srows_out = n_srows;
  *n_host_out = n_host;
  return grow((void **)&e->logits, &e->cap_logits, (size_t)n_host * (size_t)V + 1, sizeof(float));
}

/* JSON mode: every token's raw bytes and their trie, made once, at the first JSON request's first sampling (a
 * vocabulary of 128k tokens takes a few tens of ms). 0, or -1 (logged; JSON rows then get only EOS). */
static int json_vocab(ig_engine *e) {
  if (e->json_ready) return e->json_ready > 0 ? 0 : -1;
  e->json_ready = -1;
  int64_t t0 = ig_engine_now_ns();
  const int V = e->run.vocab_size;
  ig_str pool;
  ig_str_init(&pool);
  e->joff = malloc(sizeof(size_t) * (size_t)V), e->jlen = malloc(sizeof(size_t) * (size_t)V);
  unsigned char *special = calloc((size_t)V, 1);
  const unsigned char **ptr = malloc(sizeof(*ptr) * (size_t)V);
  int rc = !e->joff || !e->jlen || !special || !ptr;
  for (int v = 0; v < V && !rc; v++) {
    e->joff[v] = pool.len;
    special[v] = (unsigned char)(e->text.is_special && e->text.is_special(e->text.ctx, v));
    if (special[v] || e->text.raw_piece(e->text.ctx, v, &pool) != 0) pool.len = e->joff[v], special[v] = 1;
    e->jlen[v] = pool.len - e->joff[v];
    rc = pool.oom;
  }
  if (!rc) {
    const unsigned char *base = (const unsigned char *)(pool.p ? pool.p : "");
    for (int v = 0; v < V; v++) ptr[v] = base + e->joff[v];
    rc = ig_json_vocab_build(&e->jvocab, V, ptr, e->jlen, special) != 0;
  }
  free(special);
  free(ptr);
  if (!rc) e->jpool = pool.p ? (unsigned char *)ig_str_steal(&pool, NULL) : (unsigned char *)calloc(1, 1);
  if (rc || !e->jpool) {
    ig_str_free(&pool);
    ig_log(IG_LOG_ERROR, "engine: JSON mode: out of memory for the vocabulary's trie");
    return -1;
  }
  /* about four segments per thread that walks (the pool's and this one), so that uneven ones even out */
  if ((e->n_jsegs = ig_json_vocab_segments(e->jvocab, 4 * (e->pool ? ig_sample_pool_threads(e->pool) + 1 : 1),
                                           &e->jsegs)) < 1) {
    ig_log(IG_LOG_ERROR, "engine: JSON mode: out of memory for the vocabulary's trie");
    return -1;
  }
  /* the cache keeps up to IGNIS_JSON_MASK_CACHE_MB (default 96) of masks, each V bytes and V / 8 of bitmap: a
   * schema's states across requests (a bounded string's every length, say) stay cached; 1 .. 4,096 entries */
  double lim = e->jc_mb * 1048576.0 / ((double)V * 1.125 + 64.0);
  e->jc_limit = lim < 1 ? 1 : lim > 4096 ? 4096 : (int)lim;
  size_t ml = ig_json_vocab_max_len(e->jvocab);
  e->jmax_len = ml > INT32_MAX ? INT32_MAX : (int)ml;
  e->json_ready = 1;
  ig_log(IG_LOG_INFO, "engine: JSON mode: %d tokens' bytes in a trie (%.1f ms, %d segments)", V,
         (double)(ig_engine_now_ns() - t0) * 1e-6, e->n_jsegs);
  return 0;
}

/* The mask cache holding at least `want` entries (existing ones kept). 0 or -ENOMEM. */
static int json_cache_fit(ig_engine *e, int want) {
  if (want < JSON_CACHE) want = JSON_CACHE;
  if (e->jc_cap >= want) return 0;
  if (want < 2 * e->jc_cap) want = 2 * e->jc_cap; /* geometric: each growth copies every mask */
  const size_t V = (size_t)e->run.vocab_size, n = (size_t)want;
  void *p;
  if (!(p = realloc(e->jc_key, n * sizeof *e->jc_key))) return -ENOMEM;
  e->jc_key = p;
  if (!(p = realloc(e->jc_schema, n * sizeof *e->jc_schema))) return -ENOMEM;
  e->jc_schema = p;
  if (!(p = realloc(e->jc_allowed, n * sizeof *e->jc_allowed))) return -ENOMEM;
  e->jc_allowed = p;
  if (!(p = realloc(e->jc_walk, n * sizeof *e->jc_walk))) return -ENOMEM;
  e->jc_walk = p;
  if (!(p = realloc(e->jc_used, n * sizeof *e->jc_used))) return -ENOMEM;
  e->jc_used = p;
  if (!(p = realloc(e->jc_hash, n * sizeof *e->jc_hash))) return -ENOMEM;
  e->jc_hash = p;
  if (!(p = realloc(e->jc_mask, n * V))) return -ENOMEM;
  e->jc_mask = p;
  if (!(p = realloc(e->jc_bits, n * ((V + 31) / 32) * sizeof *e->jc_bits))) return -ENOMEM;
  e->jc_bits = p;
  e->jc_cap = want;
  return 0;
}

/* FNV-1a over a recognizer state's bytes: a cache lookup compares this first (a step may hold hundreds of rows). */
static uint64_t jsm_hash(const ig_jsm *m) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < sizeof m->opaque; i++) h = (h ^ m->opaque[i]) * 1099511628211ull;
  return h;
}

/* Job i of a step's walks: walk i / n_jsegs over segment i % n_jsegs (the masks were cleared before). */
static void json_walk(void *ctx, int i) {
  ig_engine *e = ctx;
  int k = e->jc_walk[i / e->n_jsegs];
  const int64_t t0 = e->prof_every ? ig_engine_now_ns() : 0;
  e->jc_segcount[i] = ig_jschema_allowed_seg(e->jvocab, e->jc_schema[k], &e->jc_key[k], &e->jsegs[i % e->n_jsegs],
                                             e->jc_mask + (size_t)k * (size_t)e->run.vocab_size);
  if (t0) atomic_fetch_add(&e->prof_walk_cpu_ns, ig_engine_now_ns() - t0);
}

/* Constrained rows (JSON mode, schemas; e->jrows[0 .. n_rows) name their sequences): each gets the mask-cache entry
 * of the tokens that continue its document (EOS once it is complete), in jrows[r].entry, or -1 when nothing else
 * could follow or the mask could not be made (no vocabulary trie, no memory): the row then gets only EOS. Cache hits
 * first, then the misses' walks spread in segments over the sample pool, so a step of many constrained rows does not
 * walk them one after another. The entries hold the mask as bytes (jc_mask) and as a bitmap (jc_bits). */
static void json_entries(ig_engine *e, int n_rows) {
  const int V = e->run.vocab_size, W = (V + 31) / 32;
  const int64_t t0 = e->prof_every ? ig_engine_now_ns() : 0;
  int ok = json_vocab(e) == 0 && json_cache_fit(e, 2 * n_rows) == 0, n_walk = 0;
  const uint64_t tick = ++e->jc_tick;
  for (int r = 0; r < n_rows && ok; r++) {
    const seq *s = e->jrows[r].s;
    ig_jsm key; /* counts no token can tell apart folded: rows deep in long strings share a mask */
    ig_jsm_cache_key(s->json, s->schema, e->jc_nofold ? 0 : e->jmax_len, &key);
    const uint64_t h = jsm_hash(&key);
    int k = -1;
    for (int i = 0; i < e->jc_n && !e->jc_off && k < 0; i++)
      if (e->jc_hash[i] == h && !memcmp(&e->jc_key[i], &key, sizeof key) && ig_jschema_same(e->jc_schema[i], s->schema))
        k = i;
    if (k < 0) { /* a miss: a new entry (the cache grows to its limit first), or the least recently used one not
                  * taken by this step */
      if (e->jc_n == e->jc_cap && e->jc_cap < e->jc_limit)
        json_cache_fit(e, e->jc_cap * 2 < e->jc_limit ? e->jc_cap * 2 : e->jc_limit); /* no memory: evict instead */
      if (e->jc_n < e->jc_cap) {
        k = e->jc_n++;
        e->jc_schema[k] = NULL;
      } else {
        for (int i = 0; i < e->jc_n; i++)
          if (e->jc_used[i] != tick && (k < 0 || e->jc_used[i] < e->jc_used[k])) k = i;
      }
      e->jc_key[k] = key; /* its mask is the row's own (ig_jsm_cache_key) */
      e->jc_hash[k] = h;
      ig_jschema_unref(e->jc_schema[k]);
      e->jc_schema[k] = ig_jschema_ref((ig_jschema *)s->schema);
      e->jc_walk[n_walk++] = k;
    }
    e->jc_used[k] = tick;
    e->jrows[r].entry = k;
  }
  const int64_t tw = e->prof_every ? ig_engine_now_ns() : 0;
  if (ok && n_walk) { /* each walk cleared, spread in segments over the pool, then its long tokens and EOS */
    ok = !grow((void **)&e->jc_segcount, &e->cap_segcount, (size_t)n_walk * (size_t)e->n_jsegs, sizeof(int));
    for (int w = 0; w < n_walk && ok; w++) memset(e->jc_mask + (size_t)e->jc_walk[w] * (size_t)V, 0, (size_t)V);
    if (ok) ig_sample_pool_for(e->jc_serial ? NULL : e->pool, n_walk * e->n_jsegs, json_walk, e);
    for (int w = 0; w < n_walk && ok; w++) {
      int k = e->jc_walk[w], n = 0;
      const uint8_t *m = e->jc_mask + (size_t)k * (size_t)V;
      for (int g = 0; g < e->n_jsegs; g++) n += e->jc_segcount[w * e->n_jsegs + g];
      e->jc_allowed[k] = n + ig_jschema_allowed_rest(e->jvocab, e->jc_schema[k], &e->jc_key[k], e->run.eos_ids,
                                                     e->run.n_eos, e->jc_mask + (size_t)k * (size_t)V);
      if (!e->run.forward_sample || e->json_host) continue; /* the bitmap is for sampling on the device only */
      uint32_t *bits = e->jc_bits + (size_t)k * (size_t)W;
      for (int j = 0; j < W; j++) {
        uint32_t x = 0;
        for (int t = 0, v = j * 32; t < 32 && v + t < V; t++) x |= (uint32_t)(m[v + t] != 0) << t;
        bits[j] = x;
      }
    }
    if (!ok) /* no memory for the counts: these entries must not be found again */
      for (int w = 0; w < n_walk; w++) {
        e->jc_hash[e->jc_walk[w]] = ~jsm_hash(&e->jc_key[e->jc_walk[w]]);
        e->jc_allowed[e->jc_walk[w]] = 0;
      }
  }
  if (tw) e->prof_walk_wall_ns += ig_engine_now_ns() - tw;
  e->prof_json_rows += n_rows, e->prof_json_walks += n_walk;
  atomic_fetch_add(&e->stats.grammar_masks, n_rows);
  atomic_fetch_add(&e->stats.grammar_walks, n_walk);
  atomic_store(&e->stats.grammar_cache_entries, e->jc_n);
  for (int r = 0; r < n_rows; r++) {
    int k = ok ? e->jrows[r].entry : -1;
    e->jrows[r].entry = k >= 0 && e->jc_allowed[k] > 0 ? k : -1;
  }
  if (t0) e->prof_json_ns += ig_engine_now_ns() - t0;
}

/* Host-sampled constrained rows: each job gets its mask, applied by the thread that samples it (only EOS when
 * json_entries found none). */
static void json_masks(ig_engine *e, int n_rows) {
  const int V = e->run.vocab_size;
  json_entries(e, n_rows);
  for (int r = 0; r < n_rows; r++) {
    ig_sample_job *jb = &e->jobs[e->jrows[r].job];
    int k = e->jrows[r].entry;
    if (k >= 0) {
      jb->allowed = e->jc_mask + (size_t)k * (size_t)V;
      continue;
    }
    float *lg = (float *)jb->logits;
    for (int v = 0; v < V; v++)
      if (!is_eos(e, v)) lg[v] = -INFINITY;
  }
}

/* Prompt position q's logprob (and most likely tokens, when asked) from the logits row of position q - 1. */
static void prompt_logprob(seq *s, int q, const float *lg, int V) {
  double lse = ig_sample_logsumexp(lg, V);
  s->prefill_lp[q] = (float)(lg[s->tokens[q]] - lse);
  if (!s->prefill_top) return;
  const int n = s->r->params.prefill_top_n;
  int32_t ids[IG_MAX_TOP_N];
  float lps[IG_MAX_TOP_N];
  int k = ig_sample_top_n(lg, V, lse, n, ids, lps);
  ig_logprob_top *row = s->prefill_top + (size_t)q * (size_t)n;
  for (int j = 0; j < n; j++) row[j] = j < k ? (ig_logprob_top){ids[j], lps[j]} : (ig_logprob_top){-1, NAN};
}

typedef struct lp_job {
  seq *s;
  int q;           /* the prompt position whose logprob (and top) row lg gives */
  const float *lg;
} lp_job;
static void lp_job_run(void *ctx, int i) {
  ig_engine *e = ctx;
  prompt_logprob(e->lpjobs[i].s, e->lpjobs[i].q, e->lpjobs[i].lg, e->run.vocab_size);
}

/* Row p of item it: 0 when it has no logits row; else 1 (2 when the row gives a prompt logprob), *lg its logits on
 * the host (NULL: sampled on the device), counting the out rows and the host rows in order. */
static int out_row(const ig_engine *e, const item *it, int p, int *out, int *host_k, const float **lg) {
  const seq *s = it->s;
  const int dev = e->run.forward_sample != NULL;
  int want_lp = s->prefill_lp && p + 1 >= s->lp_done && p + 1 < s->n_prompt;
  if (!want_lp && p < s->n_tokens - 1) return 0;
  int on_host = !dev || (want_lp ? !lp_on_device(e, s) : it->dev_sample < 0);
  *lg = on_host ? e->logits + (size_t)(dev ? (*host_k)++ : *out) * e->run.vocab_size : NULL;
  (*out)++;
  return want_lp ? 2 : 1;
}

/* The step's prompt logprob rows, before collect_results walks the same rows in the same order. Rows the device
 * sampler took (lp_on_device) carry their target's logprob and top-n in souts; the others are a log-softmax and a
 * top-n over the host's logits row each (~1 ms at 128K entries, so a chunk of hundreds of them would hold the
 * engine thread for as many milliseconds): spread over the sampling pool, each writing only its own position.
 * 0 or -ENOMEM. */
static int prompt_logprobs(ig_engine *e, int n_items) {
  int n = 0, out = 0, host_k = 0, k_dev = 0;
  for (int i = 0; i < n_items; i++) {
    item *it = &e->items[i];
    seq *s = it->s;
    for (int p = it->start; p < it->end; p++) {
      const float *lg;
      if (out_row(e, it, p, &out, &host_k, &lg) != 2) continue;
      if (!lg) { /* the device's: the target's logprob and the top-n of the same log-softmax */
        const ig_sample_out *so = &e->souts[e->lp_srow[k_dev++]];
        s->prefill_lp[p + 1] = so->target_logprob;
        if (s->prefill_top) {
          const int tn = s->r->params.prefill_top_n;
          ig_logprob_top *row = s->prefill_top + (size_t)(p + 1) * (size_t)tn;
          for (int j = 0; j < tn; j++)
            row[j] = j < so->n_top ? (ig_logprob_top){so->top_ids[j], so->top_logprobs[j]} : (ig_logprob_top){-1, NAN};
        }
        continue;
      }
      if (grow((void **)&e->lpjobs, &e->cap_lpjobs, (size_t)n + 1, sizeof(lp_job))) return -ENOMEM;
      e->lpjobs[n++] = (lp_job){s, p + 1, lg};
    }
  }
  if (n) ig_sample_pool_for(e->pool, n, lp_job_run, e);
  return 0;
}

/* After the runner has the step's results on the host: prefill logprobs, computed positions, host sampling (the
 * rows collected into jobs, run together, maybe in parallel) and the step counters. Host logits are every out row
 * in order, or (device sampling) the host rows in order. 0 or -ENOMEM. */
static int collect_results(ig_engine *e, int n_items) {
  const int dev = e->run.forward_sample != NULL;
  int V = e->run.vocab_size, n_jobs = 0, out = 0, host_k = 0, n_json = 0;
  long long n_prefill = 0, n_decode = 0;
  if (grow((void **)&e->jobs, &e->cap_jobs, (size_t)n_items, sizeof(ig_sample_job))) return -ENOMEM;
  if (prompt_logprobs(e, n_items)) return -ENOMEM;
  for (int i = 0; i < n_items; i++) {
    item *it = &e->items[i];
    seq *s = it->s;
    if (it->prefill) n_prefill += it->end - it->start;
    else n_decode += it->end - it->start - it->n_draft; /* (accepted drafts are counted as they are taken) */
    const float *sample_rows[IG_MAX_SPECULATE + 1]; /* one, or a verify piece's (host logits, or NULL: the device's) */
    int samples = 0;
    for (int p = it->start; p < it->end; p++) {
      const float *lg;
      int kind = out_row(e, it, p, &out, &host_k, &lg);
      if (kind == 0 || kind == 2) continue; /* no row; a prompt logprob row (done by prompt_logprobs) */
      if (s->r->params.max_new_tokens > 0) sample_rows[samples++] = lg;
      /* else the last row of a prompt-only request: nothing to sample */
    }
    assert(samples <= 1 + it->n_draft);
    const float *sample_row = samples ? sample_rows[0] : NULL;
    /* a verify piece's K/V rows count once its drafts are taken (spec_take): the rejected ones are overwritten later,
     * and the prefix cache must not register a block that holds them */
    s->n_computed = it->end - it->n_draft;
    if (!it->n_draft) register_blocks(e, s, it);
    /* rows [start, end) gave the logprobs of prompt positions up to end (row p predicts token p + 1) */
    if (s->prefill_lp && it->end + 1 > s->lp_done) s->lp_done = it->end + 1 < s->n_prompt ? it->end + 1 : s->n_prompt;
    it->sample_job = -1;
    it->ends = s->r->params.max_new_tokens < 1 && it->end == s->n_tokens;
    if (!samples && !it->ends) {
      if (dev) it->dev_sample = -1;
      continue;
    }
    s->prefilling = 0;
    if (s->prefill_lp && s->lp_done >= s->n_prompt) { /* publish before the first (or only) event */
      pthread_mutex_lock(&s->r->mu);
      if (!s->r->prefill_logprobs) {
        s->r->prefill_logprobs = s->prefill_lp;
        s->r->prefill_top = s->prefill_top;
        s->prefill_lp = NULL;
        s->prefill_top = NULL;
      }
      pthread_mutex_unlock(&s->r->mu);
    }
    if (!sample_row) continue; /* sampled on the device */
    if (s->json) {
      if (grow((void **)&e->jrows, &e->cap_jrows, (size_t)n_json + 1, sizeof *e->jrows)) return -ENOMEM;
      e->jrows[n_json++] = (struct jrow){.job = n_jobs, .s = s};
    }
    if (grow((void **)&e->jobs, &e->cap_jobs, (size_t)(n_jobs + samples), sizeof(ig_sample_job))) return -ENOMEM;
    it->sample_job = n_jobs;
    for (int j = 0; j < samples; j++) { /* row j samples the token after tokens [0, n_tokens + j) */
      ig_sample_job *jb = &e->jobs[n_jobs++];
      jb->allowed = NULL;
      jb->params = &s->r->params;
      jb->logits = sample_rows[j];
      jb->tokens = s->tokens;
      jb->n_tokens = s->n_tokens + j;
      jb->n_prompt = s->n_prompt;
      jb->step = (uint64_t)(s->n_generated + j);
    }
  }
  if (n_json) json_masks(e, n_json);
  int parallel = e->pool && (int64_t)n_jobs * V >= e->sample_par_min;
  const int64_t t_s = e->prof_every ? ig_engine_now_ns() : 0;
  if (n_jobs) ig_sample_pool_run(parallel ? e->pool : NULL, &e->sampler, e->jobs, n_jobs);
  if (t_s) e->prof_host_ns += ig_engine_now_ns() - t_s;
  atomic_fetch_add(&e->stats.steps, 1);
  atomic_fetch_add(&e->stats.prefill_tokens, n_prefill);
  atomic_fetch_add(&e->stats.decode_tokens, n_decode);
  return 0;
}

/* The token an item sampled (after collect_results) at its j-th sampled row (0 but for a verify piece), or NULL when
 * it sampled none; *dr holds a device result. */
static const ig_sample_result *item_result_at(ig_engine *e, const item *it, int j, ig_sample_result *dr) {
  if (it->sample_job >= 0) return &e->jobs[it->sample_job + j].res;
  if (!e->run.forward_sample || it->dev_sample < 0) return NULL;
  const ig_sample_out *so = &e->souts[it->dev_sample + j];
  dr->id = so->id;
  dr->logprob = so->logprob;
  dr->n_top = so->n_top < IG_MAX_TOP_N ? so->n_top : IG_MAX_TOP_N;
  memcpy(dr->top_ids, so->top_ids, sizeof(int32_t) * (size_t)dr->n_top);
  memcpy(dr->top_logprobs, so->top_logprobs, sizeof(float) * (size_t)dr->n_top);
  return dr;
}
static const ig_sample_result *item_result(ig_engine *e, const item *it, ig_sample_result *dr) {
  return item_result_at(e, it, 0, dr);
}

/* A verify piece's tokens (--speculate), after collect_results: row j's token c_j follows the pending token and
 * drafts d_1..d_j. c_0 is taken, then c_j while the draft before it was right (c_{j-1} == d_j), each through
 * accept_token (text, stop checks, its event) until one ends the request: 1 to n_draft + 1 tokens, the ones
 * one-token steps would have made. The K/V rows of the accepted drafts are then the sequence's (its blocks registered
 * for the prefix cache as any computed rows); the rejected ones are overwritten by later steps. Returns the finish
 * reason (the caller ends the request). */
static ig_finish_reason spec_take(ig_engine *e, const item *it) {
  seq *s = it->s;
  ig_finish_reason fin = IG_FINISH_NONE;
  int j = 0;
  for (;; j++) {
    ig_sample_result dr;
    const ig_sample_result *res = item_result_at(e, it, j, &dr);
    fin = accept_token(e, s, res);
    if (fin != IG_FINISH_NONE || j == it->n_draft || res->id != it->draft[j]) break;
  }
  atomic_fetch_add(&e->stats.spec_draft_tokens, it->n_draft);
  atomic_fetch_add(&e->stats.spec_accepted_tokens, j);
  atomic_fetch_add(&e->stats.decode_tokens, j);
  if (fin == IG_FINISH_NONE) {
    s->n_computed = s->n_tokens - 1;
    item done = {.s = s, .start = it->start, .end = s->n_computed};
    register_blocks(e, s, &done);
  }
  return fin;
}

/* A step that failed: its sequences end with IG_FINISH_ERROR (zombies, already ended, are just freed). */
static void fail_items(ig_engine *e, int n_items, const char *msg) {
  for (int i = 0; i < n_items; i++) {
    seq *s = e->items[i].s;
    s->in_flight = 0;
    if (s->zombie) seq_end(e, s, IG_FINISH_STOP, NULL);
    else finish_running(e, s, IG_FINISH_ERROR, msg);
  }
}

/* IGNIS_PROFILE_STEPS: adds one step's parts (ns) and logs their means every prof_every steps. */
static void profile_step(ig_engine *e, int64_t t0, int64_t t_end, const int64_t *part, int rows, int seqs) {
  if (!e->prof_n) e->prof_t0 = t0;
  for (int k = 0; k < 5; k++) e->prof_part[k] += part[k];
  e->prof_rows += rows, e->prof_seqs += seqs;
  if (++e->prof_n < e->prof_every) return;
  double k = 1e-6 / e->prof_n, wall = (double)(t_end - e->prof_t0) * k, idle = wall;
  double p[5];
  for (int j = 0; j < 5; j++) idle -= (p[j] = (double)e->prof_part[j] * k);
  if (e->async)
    ig_log(IG_LOG_INFO, "engine profile: %d steps, mean per step: wall %.3f ms = results %.3f + schedule %.3f + "
           "launch %.3f + tokens/events %.3f (while the device runs) + wait %.3f ms (+ idle %.3f); %.1f rows, %.1f "
           "sequences", e->prof_n, wall, p[0], p[1], p[2], p[3], p[4], idle, (double)e->prof_rows / e->prof_n,
           (double)e->prof_seqs / e->prof_n);
  else
    ig_log(IG_LOG_INFO, "engine profile: %d steps, mean per step: wall %.3f ms = schedule %.3f + forward/sample %.3f + "
           "tokens/events %.3f ms (+ idle %.3f); %.1f rows, %.1f sequences", e->prof_n, wall, p[1], p[2], p[3], idle,
           (double)e->prof_rows / e->prof_n, (double)e->prof_seqs / e->prof_n);
  if (e->prof_json_rows || e->prof_host_ns)
    ig_log(IG_LOG_INFO, "engine profile: of that, per step: host sampling %.3f ms; constrained rows %.1f, their masks "
           "%.3f ms (%.1f trie walks, the rest from the cache; the walks %.3f ms, %.3f ms of CPU time)",
           (double)e->prof_host_ns * k, (double)e->prof_json_rows / e->prof_n, (double)e->prof_json_ns * k,
           (double)e->prof_json_walks / e->prof_n, (double)e->prof_walk_wall_ns * k,
           (double)atomic_load(&e->prof_walk_cpu_ns) * k);
  e->prof_n = 0, e->prof_rows = e->prof_seqs = 0;
  e->prof_json_ns = e->prof_json_rows = e->prof_json_walks = e->prof_host_ns = e->prof_walk_wall_ns = 0;
  atomic_store(&e->prof_walk_cpu_ns, 0);
  memset(e->prof_part, 0, sizeof e->prof_part);
}

/* the TGI duration bucket of ns: bucket i holds up to 0.1 ms x 1.5^(i+1), the last one beyond */
static int duration_bucket(int64_t ns) {
  double le = 0.00015, s = (double)ns * 1e-9;
  int i = 0;
  while (i < IG_STEP_HIST - 1 && s > le) le *= 1.5, i++;
  return i;
}

/* TGI's batch metrics of one step (engine stats): prefill when it computed prompt rows, else decode */
static void record_step(ig_engine *e, int n_items, int64_t step_ns, int64_t fwd_ns, int failed) {
  int k = 1;
  for (int i = 0; i < n_items && k; i++) k = !e->items[i].prefill;
  ig_engine_stats *st = &e->stats;
  atomic_fetch_add(&st->step_count[k], 1);
  if (failed) atomic_fetch_add(&st->step_failed[k], 1);
  atomic_fetch_add(&st->step_ns[k], step_ns);
  atomic_fetch_add(&st->forward_ns[k], fwd_ns);
  atomic_fetch_add(&st->step_hist[k][duration_bucket(step_ns)], 1);
  atomic_fetch_add(&st->forward_hist[k][duration_bucket(fwd_ns)], 1);
  int c = 0;
  while (c < IG_SIZE_HIST - 1 && n_items > (1 << c)) c++;
  atomic_fetch_add(&st->size_hist[c], 1);
  atomic_fetch_add(&st->size_sum, n_items);
}

/* The serial step: schedule, run the model (the runner returns with the results on the host), accept every
 * sampled token. Profile parts: schedule (cancellations, admission, the batch), forward/sample (the runner),
 * tokens/events (prefill logprobs, host sampling, text, stop sequences, events). */
static void step_sync(ig_engine *e) {
  int64_t t0 = ig_engine_now_ns();
  handle_cancellations(e);
  int n_items = schedule(e);
  if (!n_items) return;
  ig_batch b;
  char err[256] = "";
  int n_srows = 0, n_host = 0;
  int rc = prepare_step(e, n_items, &b, &n_srows, &n_host);
  if (rc) snprintf(err, sizeof err, "out of memory");
  int64_t t_fwd = ig_engine_now_ns();
  if (!rc)
    rc = e->run.forward_sample ? e->run.forward_sample(e->run.ctx, &b, e->srows, n_srows, e->souts, e->hrows, n_host,
                                                       e->logits, err, sizeof err)
                               : e->run.forward(e->run.ctx, &b, e->logits, err, sizeof err);
  int64_t t_post = ig_engine_now_ns();
  if (!rc && collect_results(e, n_items)) rc = -ENOMEM, snprintf(err, sizeof err, "out of memory");
  if (rc) {
    ig_log(IG_LOG_ERROR, "engine: forward failed: %s", err);
    record_step(e, n_items, ig_engine_now_ns() - t0, t_post - t_fwd, 1);
    fail_items(e, n_items, err);
    update_gauges(e);
    return;
  }
  /* the step's metrics before its events: a client that has its last token may read /metrics at once (as in the
   * pipelined path, where a step is recorded before the next iteration emits its events) */
  int64_t t_rec = ig_engine_now_ns();
  atomic_store(&e->stats.batch_size, n_items);
  atomic_store(&e->stats.last_step_ns, t_rec - t0);
  record_step(e, n_items, t_rec - t0, t_post - t_fwd, 0);
  /* Tokens accepted in batch order: text, stop checks, events, finishing. */
  for (int i = 0; i < n_items; i++) {
    seq *s = e->items[i].s;
    if (e->items[i].ends) {
      end_prompt_only(e, s);
      continue;
    }
    ig_sample_result dr;
    const ig_sample_result *res = item_result(e, &e->items[i], &dr);
    if (!res) continue;
    ig_finish_reason fin = e->items[i].n_draft ? spec_take(e, &e->items[i]) : accept_token(e, s, res);
    if (fin != IG_FINISH_NONE) finish_running(e, s, fin, NULL);
  }
  int64_t t_end = ig_engine_now_ns();
  update_gauges(e);
  int64_t part[5] = {0, t_fwd - t0, t_post - t_fwd, t_end - t_post, 0};
  if (e->prof_every) profile_step(e, t0, t_end, part, b.n_tokens, n_items);
}

/* (A) of step_async: the held step's results (its sequences are no longer in flight). A zombie (it ended on a stop
 * sequence while the step ran) is freed, its token dropped. Every other sampled token is appended; a sequence that
 * ends on length or EOS is finished at once (text, final event, blocks freed), and a first token is sent at once
 * (time to first token); the others' text waits in e->pend for emit_pending. */
static void take_held(ig_engine *e) {
  int n_items = e->n_held;
  if (!n_items) return;
  e->n_held = 0;
  for (int i = 0; i < n_items; i++) e->items[i].s->in_flight = 0;
  if (collect_results(e, n_items)) {
    fail_items(e, n_items, "out of memory");
    return;
  }
  e->n_pend = 0;
  for (int i = 0; i < n_items; i++) {
    item *it = &e->items[i];
    seq *s = it->s;
    if (s->zombie) {
      seq_end(e, s, IG_FINISH_STOP, NULL); /* its final event went out already */
      continue;
    }
    if (it->ends) {
      end_prompt_only(e, s);
      continue;
    }
    ig_sample_result dr;
    const ig_sample_result *res = item_result(e, it, &dr);
    if (!res) continue;
    if (it->n_draft) { /* a verify piece's tokens, all of them now (one pend slot holds one token) */
      ig_finish_reason fin = spec_take(e, it);
      if (fin != IG_FINISH_NONE) finish_running(e, s, fin, NULL);
      continue;
    }
    ig_finish_reason fin = append_token(e, s, res->id);
    if (fin != IG_FINISH_NONE) {
      finish_running(e, s, token_text(e, s, res, fin), NULL);
      continue;
    }
    if (s->n_generated == 1) {
      /* a first token goes out now, not while the next step runs: that step is often a long prompt chunk, and
       * waiting for its launch put the first tokens of a closed-loop wave of 64 clients ~50 ms later (H100) */
      fin = token_text(e, s, res, IG_FINISH_NONE);
      if (fin != IG_FINISH_NONE) finish_running(e, s, fin, NULL); /* a stop sequence in the first token */
      continue;
    }
    pend *p = &e->pend[e->n_pend]; /* room made by prepare_step */
    p->s = s;
    p->res = *res;
    s->pend = e->n_pend++;
  }
}

/* The pipelined step (runner.forward_sample_begin/end): (A) take the previous step's results, finishing what
 * needs no text; cancellations and schedule (no step in flight: blocks are freed at once); (B) launch this
 * step; (C) while the device runs it, the text, stop sequences and events of the previous step's other tokens;
 * (D) wait for this step's results, held for the next call's (A). A sequence that a stop sequence ends in (C) is
 * in this step's batch already: it stays allocated until (A) drops its token. Seeded draws, penalties and the
 * finish checks see the same tokens and counts as in step_sync, so every request's output is the same.
 * Profile parts: results (A), schedule, launch (B), tokens/events (C), wait (D). */
static void step_async(ig_engine *e) {
  int64_t t0 = ig_engine_now_ns();
  take_held(e);
  int64_t t_res = ig_engine_now_ns();
  handle_cancellations(e);
  int n_items = schedule(e);
  ig_batch b;
  char err[256] = "";
  int rc = 0, n_srows = 0, n_host = 0;
  if (n_items && (rc = prepare_step(e, n_items, &b, &n_srows, &n_host))) snprintf(err, sizeof err, "out of memory");
  int64_t t_sched = ig_engine_now_ns();
  if (n_items && !rc)
    rc = e->run.forward_sample_begin(e->run.ctx, &b, e->srows, n_srows, e->souts, e->hrows, n_host, e->logits, err,
                                     sizeof err);
  for (int i = 0; i < n_items; i++) e->items[i].s->in_flight = 1; /* also when it failed: see fail_items */
  int64_t t_launch = ig_engine_now_ns();
  emit_pending(e);
  int64_t t_text = ig_engine_now_ns();
  if (n_items && !rc) rc = e->run.forward_sample_end(e->run.ctx, err, sizeof err);
  if (n_items) { /* the forward: its launch and the wait for it */
    int64_t t_wait = ig_engine_now_ns();
    record_step(e, n_items, t_wait - t0, (t_launch - t_sched) + (t_wait - t_text), rc != 0);
  }
  if (n_items && rc) {
    ig_log(IG_LOG_ERROR, "engine: forward failed: %s", err);
    fail_items(e, n_items, err);
  } else if (n_items) {
    e->n_held = n_items;
    atomic_store(&e->stats.batch_size, n_items);
  }
  int64_t t_end = ig_engine_now_ns();
  update_gauges(e);
  if (!n_items) return;
  atomic_store(&e->stats.last_step_ns, t_end - t0);
  int64_t part[5] = {t_res - t0, t_sched - t_res, t_launch - t_sched, t_text - t_launch, t_end - t_text};
  if (e->prof_every) profile_step(e, t0, t_end, part, rc ? 0 : b.n_tokens, n_items);
}

/* Gives back the held step at shutdown: its zombies are freed (the others are in the running list). */
static void drop_held(ig_engine *e) {
  for (int i = 0; i < e->n_held; i++) {
    seq *s = e->items[i].s;
    s->in_flight = 0;
    if (s->zombie) seq_end(e, s, IG_FINISH_STOP, NULL);
  }
  e->n_held = 0;
  e->n_pend = 0;
}

/* ---- the thread --------------------------------------------------------------------------------------- */

static void cancel_all(ig_engine *e) {
  drop_held(e);
  while (e->n_running) finish_running(e, e->running[e->n_running - 1], IG_FINISH_CANCELLED, NULL);
  while (e->n_waiting) {
    seq *s = e->waiting[--e->n_waiting];
    seq_end(e, s, IG_FINISH_CANCELLED, NULL);
  }
}

static void *engine_main(void *arg) {
  ig_engine *e = arg;
  for (;;) {
    pthread_mutex_lock(&e->mu);
    /* (a held step's results, even of zombies alone, are taken before going idle) */
    if (!e->stopping && e->n_pending == 0 && e->n_waiting == 0 && e->n_running == 0 && !e->n_held)
      atomic_store(&e->stats.batch_size, 0); /* idle */
    while (!e->stopping && e->n_pending == 0 && e->n_waiting == 0 && e->n_running == 0 && !e->n_held)
      pthread_cond_wait(&e->cv, &e->mu);
    for (int i = 0; i < e->n_pending; i++) /* one that cannot be moved (out of memory) stays pending */
      if (insert_sorted(&e->waiting, &e->n_waiting, &e->cap_waiting, e->pending[i]) == 0) e->pending[i] = NULL;
    int k = 0;
    for (int i = 0; i < e->n_pending; i++)
      if (e->pending[i]) e->pending[k++] = e->pending[i];
    e->n_pending = k;
    int stopping = e->stopping;
    int64_t deadline = e->deadline_ns;
    pthread_mutex_unlock(&e->mu);
    if (stopping && ((e->n_running == 0 && e->n_waiting == 0 && k == 0) || ig_engine_now_ns() >= deadline)) break;
    /* Room for every running sequence must exist before admission (insert_sorted into running). */
    if (grow_ptrs(&e->running, &e->cap_running, e->n_running + e->n_waiting + 1)) continue;
    if (e->async) step_async(e);
    else step_sync(e);
  }
  cancel_all(e);
  for (;;) { /* requests that could not be queued (out of memory) */
    pthread_mutex_lock(&e->mu);
    seq *s = e->n_pending ? e->pending[--e->n_pending] : NULL;
    pthread_mutex_unlock(&e->mu);
    if (!s) break;
    seq_end(e, s, IG_FINISH_CANCELLED, NULL);
  }
  update_gauges(e);
  return NULL;
}

/* ---- creation and teardown ---------------------------------------------------------------------------- */

static void apply_defaults(ig_engine_config *c, const ig_engine_runner *run) {
  if (c->block_size <= 0) c->block_size = 16;
  if (c->max_total_tokens <= 0) {
    c->max_total_tokens = 2048;
    if (run->max_position > 0 && run->max_position < c->max_total_tokens) c->max_total_tokens = run->max_position;
  }
  if (c->max_batch_prefill_tokens <= 0) c->max_batch_prefill_tokens = 4096;
  if (c->max_concurrent_requests <= 0) c->max_concurrent_requests = 128;
  if (c->max_waiting_tokens < 0) c->max_waiting_tokens = 20;
  if (c->waiting_served_ratio < 0) c->waiting_served_ratio = 0.3f;
  if (c->max_batch_size < 0) c->max_batch_size = 0;
  if (!(c->watermark_gamma > 0.0f && c->watermark_gamma <= 1.0f)) c->watermark_gamma = 0.5f;
  if (!(c->watermark_delta > 0.0f && c->watermark_delta < 1e30f)) c->watermark_delta = 2.0f;
}

/* KV capacity in tokens: the configured max_batch_total_tokens, or a default of 16k tokens bounded by the
 * memory the runner allows for the cache. */
static int kv_tokens(const ig_engine_config *c, const ig_engine_runner *run, char *err, size_t errlen) {
  if (c->max_batch_total_tokens > 0) return c->max_batch_total_tokens;
  int64_t tokens = 16384;
  if (tokens < c->max_total_tokens) tokens = c->max_total_tokens;
  size_t per_block = run->kv_bytes_per_block ? run->kv_bytes_per_block(run->ctx, c->block_size) : 0;
  if (run->kv_mem_limit && per_block) {
    int64_t max_blocks = (int64_t)(run->kv_mem_limit / per_block);
    if (run->kv_fill || max_blocks * c->block_size < tokens) tokens = max_blocks * c->block_size;
  }
  if (tokens > INT32_MAX / 2) tokens = INT32_MAX / 2;
  return (int)tokens;
}

int ig_engine_create_custom(const ig_engine_runner *run, const ig_engine_text *text, const ig_engine_config *cfg,
                            ig_engine **out, char *err, size_t errlen) {
  *out = NULL;
  if (!run || !run->forward || run->vocab_size <= 0) {
    snprintf(err, errlen, "engine: no model to run");
    return -EINVAL;
  }
  /* the grammar mask cache's size in MB (json_vocab): a number from 0 to 65536, or the whole start fails */
  const char *mbs = getenv("IGNIS_JSON_MASK_CACHE_MB");
  double mask_mb = 96.0;
  if (mbs && *mbs) {
    char *end;
    mask_mb = strtod(mbs, &end);
    if (end == mbs || *end || !(mask_mb >= 0 && mask_mb <= 65536)) {
      snprintf(err, errlen, "IGNIS_JSON_MASK_CACHE_MB: expected megabytes from 0 to 65536, got '%.40s'", mbs);
      return -EINVAL;
    }
  }
  ig_engine *e = calloc(1, sizeof *e);
  if (!e) {
    snprintf(err, errlen, "out of memory");
    return -ENOMEM;
  }
  e->run = *run;
  e->jc_mb = mask_mb;
  e->async = run->forward_sample && run->forward_sample_begin && run->forward_sample_end;
  if (text) {
    e->text = *text;
    e->has_text = 1;
  }
  e->cfg = *cfg;
  apply_defaults(&e->cfg, run);
  int tokens = kv_tokens(&e->cfg, run, err, errlen);
  int n_blocks = tokens / e->cfg.block_size;
  if ((int64_t)n_blocks * e->cfg.block_size < e->cfg.max_total_tokens) {
    snprintf(err, errlen,
             "the KV cache (%d tokens%s) cannot hold one request of max_total_tokens (%d): lower "
             "max_total_tokens or raise max_batch_total_tokens",
             n_blocks * e->cfg.block_size, cfg->max_batch_total_tokens > 0 ? "" : ", bounded by memory",
             e->cfg.max_total_tokens);
    free(e);
    return -EINVAL;
  }
  e->cfg.max_batch_total_tokens = n_blocks * e->cfg.block_size;
  e->canon_rows = run->kv_canon_rows > 1 ? run->kv_canon_rows : 1;
  /* --speculate: a verify piece (the pending token and its drafts) goes in as single-row sequences (fill_batch), so
   * each row is computed as a one-token step computes it, however many drafts; a model whose rotary frequencies
   * follow the sequence's length drafts nothing (one length per sequence and step) */
  e->spec_k = e->cfg.speculate < 0 ? 0 : e->cfg.speculate > IG_MAX_SPECULATE ? IG_MAX_SPECULATE : e->cfg.speculate;
  if (run->rope_by_len || run->rope_recompute_len > 0) e->spec_k = 0;
  if (e->spec_k != e->cfg.speculate && e->cfg.speculate > 0)
    ig_log(IG_LOG_WARN, "engine: --speculate %d: %d draft tokens per step at most (%s)", e->cfg.speculate, e->spec_k,
           e->spec_k == 0 ? "this model's rotary frequencies depend on the sequence's length" : "the most ignis drafts");
  e->cfg.speculate = e->spec_k;
  if (ig_kvb_init(&e->kvb, n_blocks, e->cfg.block_size) || ig_sampler_init(&e->sampler, run->vocab_size) ||
      (e->cfg.prefix_caching &&
       (ig_kvb_enable_cache(&e->kvb) ||
        !(e->match_ids = malloc(sizeof(int32_t) * (size_t)ig_kvb_blocks_for(&e->kvb, e->cfg.max_total_tokens)))))) {
    snprintf(err, errlen, "out of memory");
    ig_sampler_free(&e->sampler);
    ig_kvb_free(&e->kvb);
    free(e->match_ids);
    free(e);
    return -ENOMEM;
  }
  if (run->kv_init) {
    int rc = run->kv_init(run->ctx, n_blocks, e->cfg.block_size, err, errlen);
    if (rc) {
      ig_sampler_free(&e->sampler);
      ig_kvb_free(&e->kvb);
      free(e->match_ids);
      free(e);
      return rc;
    }
  }
  /* warm-up (IGNIS_WARMUP=0: none): its failure is a startup error, like the memory it may have run out of */
  const char *wu = getenv("IGNIS_WARMUP");
  if (run->kv_init && run->warmup && !(wu && wu[0] == '0')) {
    int64_t t0 = ig_engine_now_ns();
    char werr[256] = "";
    /* decode graphs for contexts of up to 4,096 tokens: each doubling of the table width adds a round of captures
     * (8B shape on the H100: 9 widths x 12 graph sizes in 2.1-2.2 s), so wider tables (longer contexts) are captured
     * when first met */
    int wctx = e->cfg.max_total_tokens < 4096 ? e->cfg.max_total_tokens : 4096;
    int wchunk = e->cfg.max_batch_prefill_tokens < e->cfg.max_total_tokens ? e->cfg.max_batch_prefill_tokens
                                                                            : e->cfg.max_total_tokens;
    int wrows = e->cfg.max_batch_size > 0 && e->cfg.max_batch_size < e->cfg.max_concurrent_requests
                    ? e->cfg.max_batch_size : e->cfg.max_concurrent_requests; /* the most rows a decode step has */
    int n = run->warmup(run->ctx, wrows, wctx, wchunk, werr, sizeof werr);
    if (n < 0) {
      snprintf(err, errlen, "warm-up: %s: lower --max-batch-prefill-tokens, --max-total-tokens or "
               "--max-concurrent-requests, or raise --cuda-memory-fraction", werr);
      ig_sampler_free(&e->sampler);
      ig_kvb_free(&e->kvb);
      free(e->match_ids);
      free(e);
      return -ENOMEM;
    }
    if (n > 0)
      ig_log(IG_LOG_INFO, "engine: warm-up: %d steps (a prompt chunk of %d tokens; decode graphs up to batch %d and "
             "context %d) in %.2f s", n, wchunk, wrows, wctx,
             (double)(ig_engine_now_ns() - t0) * 1e-9);
  }
  /* Host sampling workers: explicit count, or by default for large vocabularies (where one sequence's
   * sampling costs hundreds of microseconds) up to 7 workers beside the engine thread. */
  const char *jmc = getenv("IGNIS_JSON_MASK_CACHE");
  e->jc_off = jmc && jmc[0] == '0';
  const char *jmf = getenv("IGNIS_JSON_MASK_FOLD"); /* 0: cache keys are the exact states (measurements) */
  e->jc_nofold = jmf && jmf[0] == '0';
  const char *jws = getenv("IGNIS_JSON_WALK_SERIAL"), *jdv = getenv("IGNIS_JSON_DEVICE");
  e->jc_serial = jws && jws[0] == '1';
  e->json_host = jdv && jdv[0] == '0';
  if (ig_jschema_any_object(&e->jany)) e->jany = NULL; /* then JSON mode without a schema is a submit error */
  const char *pe = getenv("IGNIS_PROFILE_STEPS");
  e->prof_every = pe && atoi(pe) > 0 ? atoi(pe) : 0;
  int workers = run->sampler_threads;
  e->sample_par_min = workers > 0 ? 0 : 262144;
  if (workers == 0 && run->vocab_size >= 32000) {
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    workers = ncpu > 2 ? (int)(ncpu - 1 < 7 ? ncpu - 1 : 7) : 0;
  }
  if (workers > 0 && ig_sample_pool_create(workers, run->vocab_size, &e->pool)) e->pool = NULL; /* sequential */
  atomic_store(&e->stats.kv_blocks_total, n_blocks);
  ig_str_init(&e->piece);
  ig_str_init(&e->emit);
  pthread_mutex_init(&e->mu, NULL);
  pthread_cond_init(&e->cv, NULL);
  if (pthread_create(&e->thread, NULL, engine_main, e)) {
    snprintf(err, errlen, "engine: cannot start its thread");
    e->thread_started = 0;
    ig_engine_destroy(e, 0);
    return -EAGAIN;
  }
  e->thread_started = 1;
  ig_log(IG_LOG_INFO, "engine: KV cache %d blocks x %d tokens (%d tokens), max_total_tokens %d, prefill chunk %d, "
         "prefix caching %s, speculate %d", n_blocks, e->cfg.block_size, e->cfg.max_batch_total_tokens,
         e->cfg.max_total_tokens, e->cfg.max_batch_prefill_tokens, e->cfg.prefix_caching ? "on" : "off", e->spec_k);
  *out = e;
  return 0;
}

void ig_engine_destroy(ig_engine *e, int grace_ms) {
  if (!e) return;
  if (e->thread_started) {
    pthread_mutex_lock(&e->mu);
    e->stopping = 1;
    e->deadline_ns = ig_engine_now_ns() + (int64_t)(grace_ms > 0 ? grace_ms : 0) * 1000000;
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
    pthread_join(e->thread, NULL);
  }
  free(e->pending);
  free(e->waiting);
  free(e->running);
  ig_sample_pool_destroy(e->pool);
  free(e->jobs);
  free(e->lpjobs);
  free(e->lp_srow);
  free(e->items);
  free(e->b_tokens);
  free(e->b_pos);
  free(e->b_slot);
  free(e->b_seq_start);
  free(e->b_ctx_len);
  free(e->b_rope_len);
  free(e->b_table);
  free(e->b_out);
  free(e->logits);
  free(e->srows);
  free(e->souts);
  free(e->hrows);
  free(e->pend);
  ig_str_free(&e->piece);
  ig_str_free(&e->emit);
  ig_sampler_free(&e->sampler);
  ig_kvb_free(&e->kvb);
  free(e->match_ids);
  ig_json_vocab_free(e->jvocab);
  for (int k = 0; k < e->jc_n; k++) ig_jschema_unref(e->jc_schema[k]);
  free(e->jc_key), free(e->jc_schema), free(e->jc_allowed), free(e->jc_walk), free(e->jc_used), free(e->jc_hash);
  free(e->jrows), free(e->jsegs), free(e->jc_segcount), free(e->jc_bits), free(e->eos_bits);
  ig_jschema_unref(e->jany);
  free(e->jpool);
  free(e->joff);
  free(e->jlen);
  free(e->jc_mask);
  pthread_cond_destroy(&e->cv);
  pthread_mutex_destroy(&e->mu);
  free(e);
}

const ig_engine_stats *ig_engine_get_stats(const ig_engine *e) { return &e->stats; }
const ig_engine_config *ig_engine_get_config(const ig_engine *e) { return &e->cfg; }
