/* tests/engine: the scheduler on a fake model. The fake keeps a real paged KV store (token and position
 * per slot), checks every batch it is given (row positions, slots against block tables, no block shared
 * between sequences) and computes each row's logits from the tokens it reads back through the block table,
 * so any scheduling or block-table mistake changes the output. Checks: concurrent requests equal their solo
 * runs (greedy and seeded sampling), a tiny KV budget preempts and changes nothing, prefill logprobs, stop
 * sequences, cancellation, overload, forward errors, shutdown, --speculate (drafts never change an output). Everything
 * runs twice: with the serial step, then with the pipelined one (a fake runner with forward_sample_begin/end whose
 * results arrive only at end), whose outputs must equal the serial run's. */
#include "engine/engine_int.h"
#include "engine/jsonmask.h"
#include "engine/jsonschema.h"
#include "engine/sampler.h"
#include "harness.h"
#include "test.h"
#include <errno.h>
#include <math.h>
#include <regex.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

#define V 64

/* ---- fake model ------------------------------------------------------------------------------------- */
typedef struct fake {
  int n_blocks, bs;
  int32_t *kv_tok, *kv_pos;
  uint32_t *kv_tag; /* how the slot's row was computed: 0, or (canon > 0) a few-rows piece, tagged by its range */
  int *owner;
  int *grp, cap_grp; /* per batch sequence: the first with its block table (a verify piece's rows share one) */
  int canon;        /* rows below which a sequence's piece is computed "the other way" (runner.kv_canon_rows) */
  int row_tags;     /* single-row pieces tagged alike (a one-token step's row, the same whatever its position: greedy
                     * text of the Markov fake then cycles), longer ones below canon still by their range */
  int max_seq_out;  /* the most logits rows of one sequence in a step */
  atomic_int sleep_us;
  atomic_int fail_next;
  int max_rows, max_seqs;
  int max_extra_out; /* logits rows of a step beyond one per sequence (prompt logprob rows) */
  /* the pipelined runner (fake_begin / fake_end): one step in flight at most */
  const ig_engine_stats *st;
  atomic_int fail_next_end;
  int in_flight, n_out;
  ig_sample_out *out, *res; /* the engine's out[] and the results it gets at end */
  int res_cap;
  int blocks_in_flight, used_at_begin;
  long long finished_at_begin;
  atomic_int steps_async, ended_in_flight; /* steps; requests that ended while their step was in flight */
} fake;

static int g_markov; /* the fake's logits depend on the last token (and its row's tag) alone: greedy text repeats */

static uint64_t mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* Logits after tokens[0..n): a fixed pseudo-random function of the whole prefix and (tags, when not NULL) of how
 * each of its K/V rows was computed: a row computed in a piece of fewer than `canon` rows changes every later
 * logit, as the GPU's decode attention kernel changes the last bits. */
static void fake_logits_t(const int32_t *tokens, const uint32_t *tags, int n, float *out) {
  uint64_t h = 1469598103934665603ull;
  for (int i = g_markov && n > 0 ? n - 1 : 0; i < n; i++) {
    h = mix(h ^ (uint64_t)tokens[i]) + (uint64_t)(g_markov ? 0 : i);
    if (tags && tags[i]) h = mix(h + tags[i]);
  }
  for (int v = 0; v < V; v++) out[v] = (float)((double)(mix(h ^ ((uint64_t)v << 32)) >> 40) / (1 << 24) * 6.0 - 3.0);
  out[0] -= 1.0f; /* EOS now and then, not too often */
}
static void fake_logits(const int32_t *tokens, int n, float *out) { fake_logits_t(tokens, NULL, n, out); }

static size_t fake_kv_bytes(void *ctx, int bs) { return (size_t)bs * 8; }
static int fake_kv_init(void *ctx, int n_blocks, int bs, char *err, size_t errlen) {
  fake *f = ctx;
  f->n_blocks = n_blocks;
  f->bs = bs;
  f->kv_tok = malloc(sizeof(int32_t) * (size_t)n_blocks * bs);
  f->kv_pos = malloc(sizeof(int32_t) * (size_t)n_blocks * bs);
  f->kv_tag = calloc((size_t)n_blocks * bs, sizeof(uint32_t));
  f->owner = malloc(sizeof(int) * (size_t)n_blocks);
  for (int i = 0; i < n_blocks * bs; i++) f->kv_pos[i] = -1;
  return 0;
}

static int fake_forward(void *ctx, const ig_batch *b, float *logits, char *err, size_t errlen) {
  fake *f = ctx;
  int us = atomic_load(&f->sleep_us);
  if (us) usleep((useconds_t)us);
  if (atomic_exchange(&f->fail_next, 0)) {
    snprintf(err, errlen, "injected failure");
    return -EIO;
  }
  if (b->n_tokens > f->max_rows) f->max_rows = b->n_tokens;
  if (b->n_seqs > f->max_seqs) f->max_seqs = b->n_seqs;
  if (b->n_out - b->n_seqs > f->max_extra_out) f->max_extra_out = b->n_out - b->n_seqs;
#define BAD(...) do { snprintf(err, errlen, __VA_ARGS__); return -EINVAL; } while (0)
  if (b->seq_start[0] != 0 || b->seq_start[b->n_seqs] != b->n_tokens) BAD("seq_start");
  /* Blocks may be shared (prefix cache) but never written while shared: owner is the one sequence of the step that
   * holds the block, -2 when several do. The rows of a --speculate verify piece come as single-row sequences over one
   * block table (the same table row): they are one sequence here (grp: the first with that table). */
  for (int i = 0; i < f->n_blocks; i++) f->owner[i] = -1;
  if (b->n_seqs > f->cap_grp) {
    free(f->grp);
    f->grp = malloc(sizeof(int) * (size_t)b->n_seqs);
    f->cap_grp = b->n_seqs;
  }
  for (int s = 0; s < b->n_seqs; s++) {
    const int32_t *bt = b->block_table + (size_t)s * b->max_blocks;
    f->grp[s] = s;
    for (int t = 0; t < s && f->grp[s] == s; t++)
      if (f->grp[t] == t && !memcmp(bt, b->block_table + (size_t)t * b->max_blocks, sizeof(int32_t) * (size_t)b->max_blocks))
        f->grp[s] = t;
  }
  for (int s = 0; s < b->n_seqs; s++) {
    int q = b->seq_start[s + 1] - b->seq_start[s], ctx_len = b->ctx_len[s];
    if (q <= 0 || ctx_len < q) BAD("q_len");
    const int32_t *bt = b->block_table + (size_t)s * b->max_blocks;
    int nb = (ctx_len + f->bs - 1) / f->bs;
    if (nb > b->max_blocks) BAD("max_blocks");
    for (int j = 0; j < nb; j++) {
      if (bt[j] < 0 || bt[j] >= f->n_blocks) BAD("block id");
      for (int k = 0; k < j; k++)
        if (bt[k] == bt[j]) BAD("block %d twice in one table", bt[j]);
      int g = f->grp[s];
      f->owner[bt[j]] = f->owner[bt[j]] == -1 || f->owner[bt[j]] == g ? g : -2;
    }
  }
  for (int s = 0; s < b->n_seqs; s++) {
    int q = b->seq_start[s + 1] - b->seq_start[s], ctx_len = b->ctx_len[s];
    const int32_t *bt = b->block_table + (size_t)s * b->max_blocks;
    uint32_t tag = q >= f->canon                ? 0
                   : f->row_tags && q == 1 ? 1u
                                           : (uint32_t)mix(((uint64_t)(ctx_len - q) << 32) + (uint64_t)ctx_len) | 1u;
    for (int r = b->seq_start[s]; r < b->seq_start[s + 1]; r++) {
      int pos = ctx_len - q + (r - b->seq_start[s]);
      if (b->pos[r] != pos) BAD("pos");
      if (b->slot[r] != bt[pos / f->bs] * f->bs + pos % f->bs) BAD("slot");
      if (f->owner[bt[pos / f->bs]] != f->grp[s]) BAD("block %d written while shared", bt[pos / f->bs]);
      f->kv_tok[b->slot[r]] = b->tokens[r];
      f->kv_pos[b->slot[r]] = pos;
      f->kv_tag[b->slot[r]] = tag;
    }
  }
  int32_t ctx_tokens[4096];
  uint32_t ctx_tags[4096];
  int s_prev = -1, n_seq_out = 0;
  for (int j = 0; j < b->n_out; j++) {
    int r = b->out_rows[j];
    if (j > 0 && r <= b->out_rows[j - 1]) BAD("out_rows order");
    int s = 0;
    while (b->seq_start[s + 1] <= r) s++;
    n_seq_out = f->grp[s] == s_prev ? n_seq_out + 1 : 1; /* (a verify piece's single-row sequences: one sequence) */
    s_prev = f->grp[s];
    if (n_seq_out > f->max_seq_out) f->max_seq_out = n_seq_out;
    const int32_t *bt = b->block_table + (size_t)s * b->max_blocks;
    for (int p = 0; p <= b->pos[r]; p++) {
      int slot = bt[p / f->bs] * f->bs + p % f->bs;
      if (f->kv_pos[slot] != p) BAD("KV slot %d holds position %d, not %d", slot, f->kv_pos[slot], p);
      ctx_tokens[p] = f->kv_tok[slot];
      ctx_tags[p] = f->kv_tag[slot];
    }
    fake_logits_t(ctx_tokens, ctx_tags, b->pos[r] + 1, logits + (size_t)j * V);
  }
  return 0;
}

/* The device-sampling entry point (runner.forward_sample) on the fake: the logits as fake_forward makes them,
 * rows sampled by the host sampler from what an ig_sample_row carries (as a device would be), host rows copied. */
static atomic_int fs_rows, fs_host, fs_target; /* device-sampled rows; logits rows to the host; prompt rows' targets */
static int fake_forward_sample(void *ctx, const ig_batch *b, const ig_sample_row *rows, int n_rows, ig_sample_out *out,
                               const int32_t *host_rows, int n_host, float *host_logits, char *err, size_t errlen) {
  float *lg = malloc(sizeof(float) * V * (size_t)(b->n_out + 1));
  int rc = fake_forward(ctx, b, lg, err, errlen);
  for (int i = 0; !rc && i < n_rows; i++) {
    CHECK(rows[i].row >= 0 && rows[i].row < b->n_out);
    if (!rows[i].do_sample && rows[i].target >= 0) atomic_fetch_add(&fs_target, 1);
  }
  if (!rc && h_sample_rows(V, lg, rows, n_rows, out) == 0) {
    for (int k = 0; k < n_host; k++) memcpy(host_logits + (size_t)k * V, lg + (size_t)host_rows[k] * V, sizeof(float) * V);
    atomic_fetch_add(&fs_rows, n_rows);
    atomic_fetch_add(&fs_host, n_host);
  }
  free(lg);
  return rc;
}

/* The pipelined runner: begin runs the step (host rows complete) but keeps the sampled results to itself and
 * poisons out[]; end hands them over. In between the engine emits the previous step's events: a stop sequence may
 * end a sequence of this step, whose KV blocks must stay allocated until end (the gauge cannot drop). */
static int fake_begin(void *ctx, const ig_batch *b, const ig_sample_row *rows, int n_rows, ig_sample_out *out,
                      const int32_t *host_rows, int n_host, float *host_logits, char *err, size_t errlen) {
  fake *f = ctx;
  CHECK_MSG(!f->in_flight, "begin while a step is in flight");
  if (n_rows > f->res_cap) {
    f->res_cap = n_rows * 2;
    f->res = realloc(f->res, sizeof(ig_sample_out) * (size_t)f->res_cap);
  }
  int rc = fake_forward_sample(ctx, b, rows, n_rows, f->res, host_rows, n_host, host_logits, err, errlen);
  if (rc) return rc;
  for (int i = 0; i < n_rows; i++) memset(&out[i], 0, sizeof out[i]), out[i].id = -7; /* read before end: caught */
  int used = 0; /* distinct blocks (a block may be shared: the prefix cache) */
  for (int i = 0; i < f->n_blocks; i++) f->owner[i] = 0;
  for (int s = 0; s < b->n_seqs; s++)
    for (int j = 0; j < (b->ctx_len[s] + f->bs - 1) / f->bs; j++) {
      int id = b->block_table[(size_t)s * b->max_blocks + j];
      used += !f->owner[id];
      f->owner[id] = 1;
    }
  f->blocks_in_flight = used;
  f->used_at_begin = atomic_load(&f->st->kv_blocks_used);
  f->finished_at_begin = atomic_load(&f->st->requests_finished);
  f->out = out;
  f->n_out = n_rows;
  f->in_flight = 1;
  return 0;
}

static int fake_end(void *ctx, char *err, size_t errlen) {
  fake *f = ctx;
  CHECK_MSG(f->in_flight, "end without begin");
  f->in_flight = 0;
  int us = atomic_load(&f->sleep_us);
  if (us) usleep((useconds_t)us); /* the device's time: the engine's events go out meanwhile */
  int used = atomic_load(&f->st->kv_blocks_used);
  CHECK_MSG(used == f->used_at_begin && used >= f->blocks_in_flight,
            "KV blocks released while their step ran: %d used at begin, %d at end, %d in the batch", f->used_at_begin,
            used, f->blocks_in_flight);
  if (atomic_load(&f->st->requests_finished) != f->finished_at_begin) atomic_fetch_add(&f->ended_in_flight, 1);
  atomic_fetch_add(&f->steps_async, 1);
  if (atomic_exchange(&f->fail_next_end, 0)) {
    snprintf(err, errlen, "injected failure at end");
    return -EIO;
  }
  if (f->n_out) memcpy(f->out, f->res, sizeof(ig_sample_out) * (size_t)f->n_out);
  return 0;
}

/* ---- fake text: a piece per id, id 0 is a special EOS with no text ------------------------------------ */
static char pieces[V][8];
static void *txt_new(void *ctx, const int32_t *p, int n) { return malloc(1); }
static int txt_push(void *ctx, void *d, int32_t id, ig_str *out) { return ig_str_puts(out, pieces[id]); }
static int txt_flush(void *ctx, void *d, ig_str *out) { return 0; }
static void txt_free(void *ctx, void *d) { free(d); }
static int txt_special(void *ctx, int32_t id) { return id == 0; }
static int txt_raw(void *ctx, int32_t id, ig_str *out) { return pieces[id][0] && !ig_str_puts(out, pieces[id]) ? 0 : -1; }
static const ig_engine_text fake_text = {NULL, txt_new, txt_push, txt_flush, txt_free, txt_special, txt_raw};

static void init_pieces(void) {
  pieces[0][0] = 0;
  for (int v = 1; v < V; v++) {
    if (v < 27) snprintf(pieces[v], 8, "%c", 'a' + v - 1);
    else if (v < 40) snprintf(pieces[v], 8, " %c", 'a' + v - 27);
    else if (v < 50) snprintf(pieces[v], 8, "\xc3\xa9%c", 'A' + v - 40);
    else snprintf(pieces[v], 8, "%c%c", 'A' + v - 50, 'z' - (v - 50));
  }
}

static fake *fake_new(void) { return calloc(1, sizeof(fake)); }
static void fake_free(fake *f) {
  free(f->res);
  free(f->kv_tok);
  free(f->kv_pos);
  free(f->kv_tag);
  free(f->owner);
  free(f->grp);
  free(f);
}

static int g_max_waiting = 20;
static float g_ratio = 0.3f;
static int g_sampler_threads = -1; /* the parallel host sampler is used where set */
static int g_device_sampling;      /* runner.forward_sample set */
static int g_async;                /* the pipelined runner (forward_sample and forward_sample_begin/end) */
static int g_prefix;               /* cfg.prefix_caching */

static int g_max_batch; /* cfg.max_batch_size of the engines start() makes */
static int g_spec;      /* and cfg.speculate */
static int g_lp_rows;   /* and cfg.prompt_logprob_rows */
static ig_engine *start(fake *f, int kv_tokens, int chunk, int max_conc, int bs) {
  ig_engine_runner run;
  memset(&run, 0, sizeof run);
  run.ctx = f;
  run.vocab_size = V;
  run.n_eos = 1;
  run.eos_ids[0] = 0;
  run.kv_bytes_per_block = fake_kv_bytes;
  run.kv_init = fake_kv_init;
  run.forward = fake_forward;
  run.sampler_threads = g_sampler_threads;
  run.kv_canon_rows = f->canon;
  if (g_device_sampling || g_async) run.forward_sample = fake_forward_sample;
  if (g_async) run.forward_sample_begin = fake_begin, run.forward_sample_end = fake_end;
  ig_engine_config cfg = {0};
  cfg.max_batch_prefill_tokens = chunk;
  cfg.max_batch_total_tokens = kv_tokens;
  cfg.max_concurrent_requests = max_conc;
  cfg.max_waiting_tokens = g_max_waiting;
  cfg.waiting_served_ratio = g_ratio;
  cfg.block_size = bs;
  cfg.max_total_tokens = 200;
  cfg.prefix_caching = g_prefix;
  cfg.max_batch_size = g_max_batch;
  cfg.prompt_logprob_rows = g_lp_rows;
  cfg.speculate = g_spec;
  ig_engine *e = NULL;
  char err[256];
  int rc = ig_engine_create_custom(&run, &fake_text, &cfg, &e, err, sizeof err);
  CHECK_MSG(rc == 0, "create: %s", err);
  f->st = ig_engine_get_stats(e); /* before any request: the engine thread reads it in fake_begin */
  return e;
}

/* r's prefill logprobs (and prefill_top when asked) against the fake's raw logits after prompt[<j]. */
static void check_prefill(const ig_request *r, const int32_t *prompt, int n, int top_n) {
  CHECK(r->prefill_logprobs != NULL);
  CHECK(!top_n || r->prefill_top != NULL);
  if (!r->prefill_logprobs || (top_n && !r->prefill_top)) return;
  CHECK(isnan(r->prefill_logprobs[0]));
  float lg[V];
  int bad = 0;
  for (int j = 1; j < n; j++) {
    fake_logits(prompt, j, lg);
    double lse = ig_sample_logsumexp(lg, V);
    if (fabs(r->prefill_logprobs[j] - (lg[prompt[j]] - lse)) > 1e-5) bad++;
    int32_t ids[IG_MAX_TOP_N];
    float lps[IG_MAX_TOP_N];
    int k = ig_sample_top_n(lg, V, lse, top_n, ids, lps);
    for (int t = 0; t < top_n; t++) {
      const ig_logprob_top *e = &r->prefill_top[(size_t)j * top_n + t];
      if (t < k ? (e->id != ids[t] || fabsf(e->logprob - lps[t]) > 1e-5f) : e->id != -1) bad++;
      if (t > 0 && e->id >= 0 && e->logprob > e[-1].logprob) bad++; /* best first */
    }
  }
  for (int t = 0; t < top_n; t++) bad += r->prefill_top[t].id != -1; /* position 0: none */
  CHECK_EQ_INT(bad, 0);
}

/* ---- the workload: 32 requests of every kind ---------------------------------------------------------- */
#define NR 32
static int32_t prompts[NR][100];
static int plen[NR];
static ig_gen_params params[NR];

static void make_workload(void) {
  uint64_t x = 777;
  for (int i = 0; i < NR; i++) {
    x = mix(x + (uint64_t)i);
    plen[i] = 1 + (int)(x % 90);
    for (int j = 0; j < plen[i]; j++) prompts[i][j] = 1 + (int)(mix(x + (uint64_t)j) % (V - 1));
    params[i] = h_params(1 + (int)((x >> 20) % 80));
    if (plen[i] + params[i].max_new_tokens > 200) params[i].max_new_tokens = 200 - plen[i];
    params[i].seed = 1000 + (uint64_t)i;
    switch (i % 4) {
    case 0: params[i].want_logprobs = 1; break; /* greedy */
    case 1: params[i].do_sample = 1; break;
    case 2:
      params[i].temperature = 0.8f;
      params[i].top_k = 10;
      params[i].top_p = 0.9f;
      params[i].repetition_penalty = 1.3f;
      break;
    case 3:
      params[i].frequency_penalty = 0.5f;
      params[i].presence_penalty = 0.3f;
      params[i].watermark = 1;
      params[i].top_n_tokens = 3;
      params[i].prefill_logprobs = 1;
      params[i].prefill_top_n = 2;
      params[i].typical_p = 0.9f;
      params[i].do_sample = 1;
      break;
    }
    if (i == 5) params[i].ignore_eos = 1;
  }
}

static void run_all(ig_engine *e, h_out *outs, int together) {
  ig_request *rs[NR];
  char err[256];
  for (int i = 0; i < NR; i++) {
    rs[i] = h_request(prompts[i], plen[i], &params[i], NULL, 0);
    int rc = ig_engine_submit(e, rs[i], err, sizeof err);
    CHECK_MSG(rc == 0, "submit %d: %s", i, err);
    if (!together) CHECK(h_wait_all(&rs[i], &outs[i], 1, 30) == 0);
  }
  if (together) CHECK(h_wait_all(rs, outs, NR, 60) == 0);
  for (int i = 0; i < NR; i++) {
    /* prefill logprobs: logprob of prompt[j] under the fake's raw logits after prompt[<j] */
    if (params[i].prefill_logprobs) check_prefill(rs[i], prompts[i], plen[i], params[i].prefill_top_n);
    CHECK(rs[i]->t_queued > 0 && rs[i]->t_first_scheduled >= rs[i]->t_queued);
    CHECK(rs[i]->t_first_token >= rs[i]->t_first_scheduled && rs[i]->t_done >= rs[i]->t_first_token);
    CHECK_EQ_INT(rs[i]->n_generated, outs[i].n);
    ig_request_unref(rs[i]);
  }
}

/* One more engine (the g_* knobs as set now) over the workload, together: every output must equal solo's. Returns
 * its fake, for the per-step records (the caller frees it). */
static fake *rerun_same(const h_out *solo, const char *what) {
  static h_out outs[NR];
  memset(outs, 0, sizeof outs);
  fake *f = fake_new();
  ig_engine *e = start(f, 8192, 32, 64, 4);
  run_all(e, outs, 1);
  for (int i = 0; i < NR; i++) CHECK_MSG(h_same(&solo[i], &outs[i]), "request %d differs %s", i, what);
  for (int i = 0; i < NR; i++) ig_str_free(&outs[i].text);
  ig_engine_destroy(e, 1000);
  return f;
}

/* The serial run's outputs, which the pipelined run must repeat. */
static void h_copy(h_out *dst, const h_out *src) {
  *dst = *src;
  ig_str_init(&dst->text);
  if (src->text.len) ig_str_append(&dst->text, src->text.p, src->text.len);
}
static void check_same_as_serial(h_out *serial, const h_out *got, int n, const char *what) {
  for (int i = 0; i < n; i++) {
    if (!g_async) h_copy(&serial[i], &got[i]);
    else CHECK_MSG(h_same(&serial[i], &got[i]), "%s: request %d differs from the serial step's output", what, i);
  }
}
static void free_outs(h_out *o, int n) {
  for (int i = 0; i < n; i++) ig_str_free(&o[i].text);
}

static void wait_idle(ig_engine *e) {
  const ig_engine_stats *st = ig_engine_get_stats(e);
  for (int i = 0; i < 500 && (atomic_load(&st->kv_blocks_used) != 0 || atomic_load(&st->batch_size) != 0); i++)
    usleep(2000);
}

static void test_batching(void) {
  static h_out solo[NR], batch[NR], tiny[NR], chunked[NR];
  memset(solo, 0, sizeof solo), memset(batch, 0, sizeof batch), memset(tiny, 0, sizeof tiny);
  memset(chunked, 0, sizeof chunked); /* (run once per kind of step) */
  make_workload();
  fake *f = fake_new();
  ig_engine *e = start(f, 8192, 32, 64, 4);
  run_all(e, solo, 0);
  const ig_engine_stats *st = ig_engine_get_stats(e);
  CHECK_EQ_INT(atomic_load(&st->preemptions), 0);
  /* Sanity of the reference: greedy logprob is the raw log_softmax; lengths and finish reasons. */
  int n_eos = 0;
  for (int i = 0; i < NR; i++) {
    CHECK(solo[i].n >= 1 && solo[i].n <= params[i].max_new_tokens);
    if (solo[i].finish == IG_FINISH_EOS) {
      n_eos++;
      CHECK(solo[i].ids[solo[i].n - 1] == 0);
    } else {
      CHECK_EQ_INT(solo[i].finish, IG_FINISH_LENGTH);
      CHECK_EQ_INT(solo[i].n, params[i].max_new_tokens);
    }
    if (params[i].top_n_tokens) CHECK(solo[i].max_top >= 3);
    if (i % 4 == 0) {
      int32_t ctx[400];
      memcpy(ctx, prompts[i], sizeof(int32_t) * (size_t)plen[i]);
      memcpy(ctx + plen[i], solo[i].ids, sizeof(int32_t) * (size_t)solo[i].n);
      float lg[V];
      fake_logits(ctx, plen[i], lg);
      int am = 0;
      for (int v = 1; v < V; v++) if (lg[v] > lg[am]) am = v;
      CHECK_EQ_INT(solo[i].ids[0], am);
      CHECK_NEAR(solo[i].logprobs[0], lg[am] - ig_sample_logsumexp(lg, V), 1e-5);
    }
  }
  fprintf(stderr, "solo: %d of %d ended on EOS\n", n_eos, NR);
  static h_out serial_solo[NR];
  check_same_as_serial(serial_solo, solo, NR, "solo");
  wait_idle(e);
  long long fin0 = atomic_load(&st->requests_finished);
  run_all(e, batch, 1);
  for (int i = 0; i < NR; i++) CHECK_MSG(h_same(&solo[i], &batch[i]), "request %d differs when batched", i);
  wait_idle(e);
  CHECK_EQ_INT(atomic_load(&st->kv_blocks_used), 0);
  CHECK_EQ_INT(atomic_load(&st->requests_finished) - fin0, NR);
  CHECK_EQ_INT(atomic_load(&st->preemptions), 0);
  CHECK_EQ_INT(atomic_load(&st->batch_size), 0); /* idle again */
  CHECK_EQ_INT(atomic_load(&st->queue_size), 0);
  CHECK(f->max_seqs > 1);
  if (g_async) CHECK(atomic_load(&f->steps_async) > 0);
  fprintf(stderr, "batched: up to %d sequences and %d rows per step\n", f->max_seqs, f->max_rows);
  const int f_extra_uncapped = f->max_extra_out;
  ig_engine_destroy(e, 1000);
  fake_free(f);
  /* TGI's --max-batch-size: at most 3 sequences per step, the rest wait; every output the same */
  g_max_batch = 3;
  f = rerun_same(solo, "under max_batch_size 3");
  g_max_batch = 0;
  CHECK_MSG(f->max_seqs == 3, "max_batch_size 3: up to %d sequences per step", f->max_seqs);
  fake_free(f);
  /* Prompt logprob rows capped at 5 per step (their sequences' prompts in chunks of 5): every output, prompt
   * logprobs included, the same; without the cap a step carries up to a 32-row chunk of them */
  CHECK_MSG(f_extra_uncapped > 5, "uncapped: up to %d prompt logprob rows per step", f_extra_uncapped);
  g_lp_rows = 5;
  f = rerun_same(solo, "with prompt logprob rows capped");
  g_lp_rows = 0;
  CHECK_MSG(f->max_extra_out <= 5, "prompt_logprob_rows 5: up to %d such rows in a step", f->max_extra_out);
  fake_free(f);

  /* A KV budget of 256 tokens for requests of up to 200: preemption must happen, outputs must not change. */
  f = fake_new();
  g_sampler_threads = 3; /* and sampled over 3 workers + the engine thread */
  e = start(f, 256, 16, 64, 4);
  g_sampler_threads = -1;
  st = ig_engine_get_stats(e);
  CHECK_EQ_INT(atomic_load(&st->kv_blocks_total), 64);
  run_all(e, tiny, 1);
  for (int i = 0; i < NR; i++) CHECK_MSG(h_same(&solo[i], &tiny[i]), "request %d differs under preemption", i);
  wait_idle(e);
  CHECK(atomic_load(&st->preemptions) > 0);
  CHECK_EQ_INT(atomic_load(&st->kv_blocks_used), 0);
  fprintf(stderr, "tiny KV: %lld preemptions, %lld steps\n", (long long)atomic_load(&st->preemptions),
          (long long)atomic_load(&st->steps));
  ig_engine_destroy(e, 1000);
  fake_free(f);

  /* Chunks of 7 prompt tokens and blocks of 16: never more than 7 prompt rows per step. */
  f = fake_new();
  e = start(f, 4096, 7, 64, 16);
  run_all(e, chunked, 1);
  for (int i = 0; i < NR; i++) CHECK_MSG(h_same(&solo[i], &chunked[i]), "request %d differs chunked", i);
  CHECK(f->max_rows <= 7 + NR);
  ig_engine_destroy(e, 1000);
  fake_free(f);
  /* Device sampling (runner.forward_sample): the sampling rows and the prompt logprob rows (their next token as
   * the target) go to the device sampler, watermarked rows come to the host; every request's output is unchanged. */
  static h_out devs[NR];
  memset(devs, 0, sizeof devs);
  f = fake_new();
  g_device_sampling = 1;
  e = start(f, 8192, 32, 64, 4);
  g_device_sampling = 0;
  run_all(e, devs, 1);
  for (int i = 0; i < NR; i++) CHECK_MSG(h_same(&solo[i], &devs[i]), "request %d differs with device sampling", i);
  CHECK(atomic_load(&fs_rows) > 0 && atomic_load(&fs_host) > 0);
  CHECK_MSG(atomic_load(&fs_target) > 0, "prompt logprob rows went to the device sampler (%d)", atomic_load(&fs_target));
  fprintf(stderr, "device sampling: %d rows sampled on the device, %d logits rows to the host\n", atomic_load(&fs_rows),
          atomic_load(&fs_host));
  ig_engine_destroy(e, 1000);
  fake_free(f);
  if (g_async) free_outs(serial_solo, NR);
  for (int i = 0; i < NR; i++) {
    ig_str_free(&devs[i].text);
    ig_str_free(&solo[i].text);
    ig_str_free(&batch[i].text);
    ig_str_free(&tiny[i].text);
    ig_str_free(&chunked[i].text);
  }
}

/* ---- the prefix cache ----------------------------------------------------------------------------------- */
/* 32 requests over 4 shared "system prompts" (17..68 tokens) with their own tails (0..29 tokens), some repeated
 * whole, some one token longer than another: the cache is found, partly found, and found up to the whole prompt. */
static void make_prefix_workload(int with_plp) {
  uint64_t x = 4242;
  int32_t sys[4][70];
  int slen[4] = {17, 33, 50, 68};
  for (int k = 0; k < 4; k++)
    for (int j = 0; j < slen[k]; j++) sys[k][j] = 1 + (int)(mix(x + (uint64_t)(k * 100 + j)) % (V - 1));
  for (int i = 0; i < NR; i++) {
    x = mix(x + (uint64_t)i);
    int k = (int)(x % 4), tail = (int)((x >> 8) % 30);
    if (i >= 4 && i % 8 == 3) { /* a repeat of an earlier prompt */
      int src = i - 3;
      plen[i] = plen[src];
      memcpy(prompts[i], prompts[src], sizeof(int32_t) * (size_t)plen[src]);
    } else if (i >= 4 && i % 8 == 5) { /* an earlier prompt plus one token */
      int src = i - 1;
      plen[i] = plen[src] + 1 <= 99 ? plen[src] + 1 : plen[src];
      memcpy(prompts[i], prompts[src], sizeof(int32_t) * (size_t)plen[src]);
      prompts[i][plen[i] - 1] = 7;
    } else {
      memcpy(prompts[i], sys[k], sizeof(int32_t) * (size_t)slen[k]);
      for (int j = 0; j < tail; j++) prompts[i][slen[k] + j] = 1 + (int)(mix(x + (uint64_t)j) % (V - 1));
      plen[i] = slen[k] + tail;
    }
    params[i] = h_params(1 + (int)((x >> 20) % 40));
    params[i].seed = 500 + (uint64_t)i;
    if (i % 3 == 1) params[i].do_sample = 1;
    if (i % 5 == 2) params[i].repetition_penalty = 1.2f;
    if (with_plp && i % 7 == 6) params[i].prefill_logprobs = 1; /* computes its whole prompt, registers it */
  }
}

/* Follow-ups, as a chat's next turn: request i (i % 8 == 7) becomes request i - 6's prompt and output (from a run
 * without the cache) plus 17 new tokens, so it may find i - 6's prompt, its short last piece and its decode rows. */
static void add_followups(const h_out *out) {
  for (int i = 8; i < NR; i++) {
    if (i % 8 != 7) continue;
    int j = i - 6, n = out[j].n;
    if (plen[j] + n + 17 > 99) n = 99 - 17 - plen[j];
    if (n < 0) continue;
    memcpy(prompts[i], prompts[j], sizeof(int32_t) * (size_t)plen[j]);
    memcpy(prompts[i] + plen[j], out[j].ids, sizeof(int32_t) * (size_t)n);
    for (int k = 0; k < 17; k++) prompts[i][plen[j] + n + k] = 1 + (int)(mix((uint64_t)(i * 31 + k)) % (V - 1));
    plen[i] = plen[j] + n + 17;
    if (plen[i] + params[i].max_new_tokens > 200) params[i].max_new_tokens = 200 - plen[i];
  }
}

static void prefix_run(h_out *outs, int canon, int caching, int kv_tokens, int chunk, int max_conc, int together,
                       long long *hits, long long *preempt) {
  fake *f = fake_new();
  f->canon = canon;
  g_prefix = caching;
  ig_engine *e = start(f, kv_tokens, chunk, max_conc, 4);
  g_prefix = 0;
  memset(outs, 0, sizeof(h_out) * NR);
  run_all(e, outs, together);
  wait_idle(e);
  const ig_engine_stats *st = ig_engine_get_stats(e);
  CHECK_EQ_INT(atomic_load(&st->kv_blocks_used), 0); /* every reference given back */
  int cached = atomic_load(&st->kv_blocks_cached);
  CHECK(cached >= 0 && cached <= atomic_load(&st->kv_blocks_total));
  if (!caching) CHECK_EQ_INT(cached, 0);
  *hits = atomic_load(&st->prefix_hit_tokens);
  *preempt = atomic_load(&st->preemptions);
  CHECK(*hits <= atomic_load(&st->prefix_query_tokens));
  ig_engine_destroy(e, 1000);
  fake_free(f);
}

/* Requests give the same tokens with the prefix cache as without, alone or batched, under eviction and preemption.
 * The fake computes rows in pieces of fewer than `canon` rows "the other way" (their K/V change later logits), so
 * sharing a block holding such rows, or starting the computed rest with such a piece where a cold run has a longer
 * one, changes outputs: the cache must not. */
static void test_prefix_cache(void) {
  static h_out ref[NR], got[NR];
  long long hits, pre;
  make_prefix_workload(0);
  prefix_run(ref, 16, 0, 8192, 32, 64, 0, &hits, &pre);
  add_followups(ref);
  free_outs(ref, NR);
  prefix_run(ref, 16, 0, 8192, 32, 64, 0, &hits, &pre);
  CHECK_EQ_INT((int)hits, 0);
  prefix_run(got, 16, 1, 8192, 32, 64, 0, &hits, &pre); /* one at a time: each finds the ones before */
  for (int i = 0; i < NR; i++) CHECK_MSG(h_same(&ref[i], &got[i]), "request %d differs with the prefix cache (solo)", i);
  fprintf(stderr, "prefix cache, solo: %lld prompt tokens found cached\n", hits);
  CHECK(hits > 200);
  free_outs(got, NR);
  prefix_run(got, 16, 1, 8192, 32, 64, 1, &hits, &pre);
  for (int i = 0; i < NR; i++) CHECK_MSG(h_same(&ref[i], &got[i]), "request %d differs with the prefix cache (batched)", i);
  fprintf(stderr, "prefix cache, batched: %lld prompt tokens found cached\n", hits);
  free_outs(got, NR);
  /* 160 blocks, one request at a time (up to 50 blocks each, ~2,500 tokens in all): the kept blocks are taken back
   * oldest first, nobody is preempted */
  prefix_run(got, 16, 1, 640, 32, 64, 0, &hits, &pre);
  for (int i = 0; i < NR; i++) CHECK_MSG(h_same(&ref[i], &got[i]), "request %d differs with the prefix cache (evicting)", i);
  CHECK_EQ_INT((int)pre, 0);
  CHECK(hits > 0);
  free_outs(got, NR);
  /* prompt chunks of 7 rows: nothing is ever computed the canonical way, nothing may be shared */
  static h_out ref7[NR];
  prefix_run(ref7, 16, 0, 8192, 7, 64, 1, &hits, &pre);
  prefix_run(got, 16, 1, 8192, 7, 64, 1, &hits, &pre);
  for (int i = 0; i < NR; i++) CHECK_MSG(h_same(&ref7[i], &got[i]), "request %d differs with the prefix cache (chunk 7)", i);
  CHECK_EQ_INT((int)hits, 0);
  free_outs(got, NR);
  free_outs(ref7, NR);
  free_outs(ref, NR);
  /* A backend whose rows are the same however computed (the CPU), with prompt logprobs: a KV budget of 256 tokens
   * preempts, and a preempted sequence finds its own blocks again. */
  make_prefix_workload(1);
  prefix_run(ref, 0, 0, 8192, 32, 64, 0, &hits, &pre);
  add_followups(ref);
  free_outs(ref, NR);
  prefix_run(ref, 0, 0, 8192, 32, 64, 0, &hits, &pre);
  prefix_run(got, 0, 1, 256, 32, 64, 1, &hits, &pre);
  for (int i = 0; i < NR; i++) CHECK_MSG(h_same(&ref[i], &got[i]), "request %d differs with the prefix cache (tiny KV)", i);
  fprintf(stderr, "prefix cache, tiny KV: %lld preemptions, %lld tokens found cached\n", pre, hits);
  CHECK(pre > 0 && hits > 0);
  free_outs(got, NR);
  free_outs(ref, NR);
  make_workload();
}

/* ---- JSON mode ------------------------------------------------------------------------------------------ */
/* With JSON pieces in the vocabulary (braces, quotes, digits, literals, whitespace, and the letters, which strings
 * take), every output of a JSON-mode request is a prefix of one JSON object, and a complete object when it ended on
 * EOS (ignore_eos too); a request's output is the same alone and batched, serial and pipelined. */
/* The fake vocabulary's tokens 1..n become pieces p (the old ones kept in saved, put back by memcpy(pieces, saved)). */
static void set_pieces(const char *const *p, size_t n, char saved[V][8]) {
  memcpy(saved, pieces, sizeof pieces);
  for (size_t i = 0; i < n && 1 + i < V; i++) snprintf(pieces[1 + i], 8, "%s", p[i]);
}

/* Constrained requests (ps[i], with schemas[i] when given) run one at a time into solo, then all at once with
 * every mask walked (IGNIS_JSON_MASK_CACHE=0) into batch: the callers compare the two. */
static void json_runs(const ig_gen_params *ps, ig_jschema *const *schemas, int n, h_out *solo, h_out *batch) {
  int32_t prompt[3] = {5, 9, 30};
  char err[256];
  for (int together = 0; together < 2; together++) {
    fake *f = fake_new();
    if (together) setenv("IGNIS_JSON_MASK_CACHE", "0", 1);
    ig_engine *e = start(f, 8192, 32, 64, 4);
    unsetenv("IGNIS_JSON_MASK_CACHE");
    ig_request *rs[32];
    h_out *o = together ? batch : solo;
    for (int i = 0; i < n; i++) {
      rs[i] = h_request(prompt, 3, &ps[i], NULL, 0);
      if (schemas && schemas[i]) rs[i]->params.schema = ig_jschema_ref(schemas[i]);
      CHECK_MSG(ig_engine_submit(e, rs[i], err, sizeof err) == 0, "submit: %s", err);
      if (!together) CHECK(h_wait_all(&rs[i], &o[i], 1, 30) == 0);
    }
    if (together) CHECK(h_wait_all(rs, o, n, 60) == 0);
    for (int i = 0; i < n; i++) ig_request_unref(rs[i]);
    ig_engine_destroy(e, 1000);
    fake_free(f);
  }
}

/* The replies of json_runs whose request had a recognizer (which[i]): each a prefix `which[i]` keeps alive; one
 * ended on EOS is whole for `valid` (an independent check); otherwise the length ended it, and, where reaching a
 * whole document leaves nothing but EOS (`ends`: a schema), it is whole only if its last token made it so. Every
 * reply is the same alone and batched. Returns how many ended on EOS; *n_checked how many had a recognizer. */
static int check_constrained(const ig_gen_params *ps, ig_jschema *const *which, int n, const h_out *solo,
                             const h_out *batch, int ends, int (*valid)(const char *, size_t, void *), void *ctx,
                             int *n_checked) {
  int eos = 0;
  *n_checked = 0;
  for (int i = 0; i < n; i++) {
    CHECK_MSG(h_same(&solo[i], &batch[i]), "request %d differs when batched without the mask cache", i);
    if (!which[i]) continue;
    ++*n_checked;
    const char *t = solo[i].text.p ? solo[i].text.p : "";
    size_t len = solo[i].text.len;
    ig_jsm m;
    ig_jsm_init(&m, which[i]);
    CHECK_MSG(ig_jsm_feed(&m, which[i], (const unsigned char *)t, len) == 0, "request %d: not a live prefix: %s", i, t);
    if (solo[i].finish == IG_FINISH_EOS) {
      CHECK_MSG(ig_jsm_complete(&m, which[i]) && valid(t, len, ctx), "request %d ended on EOS, not whole: %s", i, t);
      eos++;
    } else {
      CHECK_EQ_INT(solo[i].finish, IG_FINISH_LENGTH);
      CHECK_MSG(!ends || !ig_jsm_complete(&m, which[i]) || solo[i].n == ps[i].max_new_tokens,
                "request %d: a complete document not followed by EOS: %s", i, t);
    }
  }
  return eos;
}

static void test_json_mode(void) {
  /* JSON's bytes outside strings alone (so that no allowed prefix is a dead end for this vocabulary, as none is
   * for real ones, which have every byte), and some longer pieces */
  static const char *jp[] = {"{", "}", "\"", "\":", ",", "1", "[", "]", "true", " ", "\"a\"", "-", ".5", "null",
                             "{\"", "\"}", "e", "\n", "}}", ":{", ":", "t", "r", "u", "f", "a", "l", "s", "n", "0",
                             "."};
  char saved[V][8];
  set_pieces(jp, sizeof jp / sizeof jp[0], saved);
  enum { NJ = 16 };
  static h_out solo[NJ], batch[NJ];
  memset(solo, 0, sizeof solo), memset(batch, 0, sizeof batch);
  ig_gen_params ps[NJ];
  for (int i = 0; i < NJ; i++) {
    ps[i] = h_params(10 + 7 * i);
    ps[i].json_mode = 1;
    ps[i].seed = 77 + (uint64_t)i;
    if (i % 2) ps[i].do_sample = 1, ps[i].temperature = 1.5f;
    if (i % 3 == 0) ps[i].repetition_penalty = 1.3f;
    if (i == 5) ps[i].ignore_eos = 1;
  }
  json_runs(ps, NULL, NJ, solo, batch);
  int complete = 0;
  for (int i = 0; i < NJ; i++) {
    CHECK_MSG(h_same(&solo[i], &batch[i]), "JSON request %d differs when batched without the mask cache", i);
    ig_json_fsm fsm;
    ig_json_fsm_init(&fsm);
    const char *t = solo[i].text.p ? solo[i].text.p : "";
    CHECK_MSG(ig_json_fsm_feed(&fsm, (const unsigned char *)t, solo[i].text.len) == 0, "request %d: not JSON: %s", i, t);
    if (solo[i].finish == IG_FINISH_EOS) {
      CHECK_MSG(ig_json_fsm_complete(&fsm), "request %d ended on EOS with an open object: %s", i, t);
      complete++;
    } else {
      CHECK_EQ_INT(solo[i].finish, IG_FINISH_LENGTH); /* complete only if its last token closed it */
      CHECK_MSG(!ig_json_fsm_complete(&fsm) || solo[i].n == ps[i].max_new_tokens,
                "request %d: a closed object not followed by EOS: %s", i, t);
    }
  }
  fprintf(stderr, "JSON mode: %d of %d requests closed their object (e.g. %s)\n", complete, NJ,
          solo[NJ - 1].text.p ? solo[NJ - 1].text.p : "");
  CHECK(complete > 0);
  for (int i = 0; i < NJ; i++) ig_str_free(&solo[i].text), ig_str_free(&batch[i].text);
  memcpy(pieces, saved, sizeof saved);
}

/* A JSON schema on the fake vocabulary: every reply ended by EOS is a document of the schema, a reply cut by the
 * length a prefix of one; alone and batched (with JSON-mode and plain requests beside, every mask walked) the
 * same; requests with equal schemas compiled apart share cache entries without changing anything. */
static int follows_schema(const char *t, size_t n, void *ctx) {
  (void)ctx;
  json_t *v = json_loadb(t, n, 0, NULL);
  int ok = json_is_object(v) && json_object_size(v) >= 1 && json_object_size(v) <= 2;
  const json_t *x = json_object_get(v, "x"), *y = json_object_get(v, "y");
  ok = ok && ((json_is_integer(x) && json_integer_value(x) == 1) || (json_is_string(x) && !strcmp(json_string_value(x), "x")));
  ok = ok && (json_object_size(v) == 1 || (json_is_array(y) && json_array_size(y) <= 2));
  for (size_t k = 0; ok && y && k < json_array_size(y); k++) ok = json_is_boolean(json_array_get(y, k));
  ok = ok && (!y || strstr(t, "\"x\"") < strstr(t, "\"y\"")); /* properties in the schema's order */
  json_decref(v);
  return ok;
}
static void test_json_schema(void) {
  /* every byte of the schema's documents alone (so that no allowed prefix is a dead end for this vocabulary, as
   * none is for real ones, which have every byte), and some longer pieces */
  static const char *jp[] = {"{", "}", "[", "]", "\"", ":", ",", "1", "x", "y", "t", "r", "u", "e", "f", "a", "l",
                             "s", " ", "\n", "true", "\"x\"", "\"y\"", "{\"", "\":", "false"};
  static const char *schema_text = "{\"type\":\"object\",\"properties\":{\"x\":{\"enum\":[1,\"x\"]},\"y\":{\"type\":"
                                   "\"array\",\"items\":{\"type\":\"boolean\"},\"maxItems\":2}},\"required\":[\"x\"],"
                                   "\"additionalProperties\":false}";
  char saved[V][8];
  set_pieces(jp, sizeof jp / sizeof jp[0], saved);
  enum { NJ = 18 };
  static h_out solo[NJ], batch[NJ];
  memset(solo, 0, sizeof solo), memset(batch, 0, sizeof batch);
  json_t *sj = json_loads(schema_text, 0, NULL);
  ig_jschema *sc[2] = {NULL, NULL}; /* the same schema compiled twice: ig_jschema_same lets them share masks */
  char err[256];
  for (int k = 0; k < 2; k++) CHECK_MSG(ig_jschema_compile(sj, &sc[k], err, sizeof err) == 0, "compile: %s", err);
  json_decref(sj);
  ig_gen_params ps[NJ];
  for (int i = 0; i < NJ; i++) {
    ps[i] = h_params(8 + 5 * i);
    ps[i].json_mode = i % 6 != 5;      /* every sixth is plain */
    ps[i].seed = 91 + (uint64_t)i;
    if (i % 2) ps[i].do_sample = 1, ps[i].temperature = 1.7f;
    if (i % 4 == 0) ps[i].repetition_penalty = 1.4f;
    if (i == 7) ps[i].ignore_eos = 1;
  }
  ig_jschema *which[NJ]; /* every third JSON request: JSON mode */
  for (int i = 0; i < NJ; i++) which[i] = ps[i].json_mode && i % 3 ? sc[i % 2] : NULL;
  json_runs(ps, which, NJ, solo, batch);
  int n_schema, complete = check_constrained(ps, which, NJ, solo, batch, 1, follows_schema, NULL, &n_schema);
  fprintf(stderr, "JSON schema: %d of %d requests completed their document\n", complete, n_schema);
  CHECK(complete > 2);
  for (int i = 0; i < NJ; i++) ig_str_free(&solo[i].text), ig_str_free(&batch[i].text);
  ig_jschema_unref(sc[0]);
  ig_jschema_unref(sc[1]);
  memcpy(pieces, saved, sizeof saved);
}

/* A regex grammar on the fake vocabulary: every reply ended by EOS is a whole match of the pattern (POSIX regexec
 * says so, independently of the automaton), a reply cut by the length a prefix the automaton keeps alive; alone
 * and batched (with JSON-mode and plain requests beside, every mask walked) the same. */
static int regex_matches(const char *t, size_t n, void *oracle) {
  char s[512];
  snprintf(s, sizeof s, "%.*s", (int)n, t);
  return n < sizeof s && regexec((const regex_t *)oracle, s, 0, NULL, 0) == 0;
}
static void test_regex_grammar(void) {
  /* every byte the pattern uses alone, and longer pieces crossing its parts */
  static const char *rp[] = {"a", "b", "c", "d", "-", "0", "1", "2", "7", "9", "ab", "ba", "cab", "d-", "-1", "12",
                             "ca", "bc", "{", "}", "\"", ":", " ", "x"};
  static const char *pat = "(ab|c)+d-[0-9]{2,3}|b(a|c)*";
  char saved[V][8];
  set_pieces(rp, sizeof rp / sizeof rp[0], saved);
  enum { NJ = 18 };
  static h_out solo[NJ], batch[NJ];
  memset(solo, 0, sizeof solo), memset(batch, 0, sizeof batch);
  ig_jschema *re = NULL;
  char err[256];
  CHECK_MSG(ig_jschema_compile_regex(pat, strlen(pat), &re, err, sizeof err) == 0, "compile: %s", err);
  regex_t oracle;
  CHECK(regcomp(&oracle, "^((ab|c)+d-[0-9]{2,3}|b(a|c)*)$", REG_EXTENDED | REG_NOSUB) == 0);
  ig_gen_params ps[NJ];
  ig_jschema *which[NJ];
  for (int i = 0; i < NJ; i++) {
    ps[i] = h_params(6 + 3 * i);
    ps[i].json_mode = i % 6 != 5; /* every sixth is plain, every fourth constrained one JSON mode */
    ps[i].seed = 311 + (uint64_t)i;
    if (i % 2) ps[i].do_sample = 1, ps[i].temperature = 1.6f;
    if (i % 4 == 1) ps[i].repetition_penalty = 1.4f;
    if (i == 7) ps[i].ignore_eos = 1;
    which[i] = ps[i].json_mode && i % 4 != 0 ? re : NULL;
  }
  json_runs(ps, which, NJ, solo, batch);
  int n_re, matched = check_constrained(ps, which, NJ, solo, batch, 0, regex_matches, &oracle, &n_re);
  fprintf(stderr, "regex grammar: %d of %d requests ended on a match (e.g. %.*s)\n", matched, n_re,
          (int)solo[1].text.len, solo[1].text.p ? solo[1].text.p : "");
  CHECK(matched > 2);
  regfree(&oracle);
  for (int i = 0; i < NJ; i++) ig_str_free(&solo[i].text), ig_str_free(&batch[i].text);
  ig_jschema_unref(re);
  memcpy(pieces, saved, sizeof saved);
}

static void test_stop_sequences(void) {
  fake *f = fake_new();
  ig_engine *e = start(f, 4096, 32, 64, 16);
  int32_t prompt[3] = {5, 6, 7};
  ig_gen_params p = h_params(60);
  p.ignore_eos = 1;
  char err[256];
  h_out ref = {0}, got = {0};
  ig_request *r = h_request(prompt, 3, &p, NULL, 0);
  CHECK(ig_engine_submit(e, r, err, sizeof err) == 0);
  CHECK(h_wait_all(&r, &ref, 1, 30) == 0);
  ig_request_unref(r);
  CHECK(ref.text.len > 20);
  /* A stop sequence that spans several tokens from the middle of the text. */
  char stop[8];
  memcpy(stop, ref.text.p + 10, 5);
  stop[5] = 0;
  const char *stops[] = {"never-there", stop};
  r = h_request(prompt, 3, &p, stops, 2);
  CHECK(ig_engine_submit(e, r, err, sizeof err) == 0);
  CHECK(h_wait_all(&r, &got, 1, 30) == 0);
  CHECK_EQ_INT(r->n_generated, got.n); /* pipelined: the token computed after the match is dropped */
  ig_request_unref(r);
  static h_out serial_stop;
  check_same_as_serial(&serial_stop, &got, 1, "stop sequence");
  if (g_async) {
    free_outs(&serial_stop, 1);
    /* it ended in (C) with its next token in flight: the fake saw it end while that step ran (its blocks kept) */
    wait_idle(e); /* (its step's end comes after its final event) */
    CHECK(atomic_load(&f->ended_in_flight) > 0);
    CHECK_EQ_INT(atomic_load(&ig_engine_get_stats(e)->kv_blocks_used), 0);
  }
  size_t at = (size_t)(strstr(ref.text.p, stop) - ref.text.p);
  CHECK_EQ_INT(got.finish, IG_FINISH_STOP);
  CHECK_EQ_INT(got.text.len, at);
  CHECK(strncmp(got.text.p ? got.text.p : "", ref.text.p, at) == 0);
  CHECK(got.n < ref.n);
  /* A stop that never matches but whose first bytes keep appearing: nothing is lost at the end. */
  h_out got2 = {0};
  const char *stops2[] = {"a\x01", " b\x01", "\xc3\xa9Q"};
  r = h_request(prompt, 3, &p, stops2, 3);
  CHECK(ig_engine_submit(e, r, err, sizeof err) == 0);
  CHECK(h_wait_all(&r, &got2, 1, 30) == 0);
  ig_request_unref(r);
  CHECK_MSG(h_same(&ref, &got2), "held text must be released at the end");
  /* Ending on EOS while text is held: the last (special) event carries it. */
  h_out eref = {0}, egot = {0};
  ig_gen_params pe = h_params(60);
  pe.do_sample = 1; /* greedy never picks the fake's EOS (its logit is shifted below the others' range) */
  pe.seed = 5;
  int32_t ep[2] = {9, 1};
  for (int k = 1; k < V && eref.finish != IG_FINISH_EOS; k++) {
    ig_str_free(&eref.text);
    memset(&eref, 0, sizeof eref);
    ep[1] = k;
    r = h_request(ep, 2, &pe, NULL, 0);
    CHECK(ig_engine_submit(e, r, err, sizeof err) == 0);
    CHECK(h_wait_all(&r, &eref, 1, 30) == 0);
    ig_request_unref(r);
  }
  CHECK_EQ_INT(eref.finish, IG_FINISH_EOS);
  if (eref.text.len > 0) {
    char held[4] = {eref.text.p[eref.text.len - 1], '\x01', 0};
    const char *stops3[] = {held};
    r = h_request(ep, 2, &pe, stops3, 1);
    CHECK(ig_engine_submit(e, r, err, sizeof err) == 0);
    ig_token_event ev[256];
    int n = 0, k;
    for (int t = 0; t < 3000 && !(n > 0 && ev[n - 1].finish); t++) {
      if ((k = ig_request_take_events(r, ev + n, 256 - n)) > 0) n += k;
      else usleep(1000);
    }
    CHECK(n > 0 && ev[n - 1].finish == IG_FINISH_EOS && ev[n - 1].special);
    CHECK(n > 0 && ev[n - 1].text && strcmp(ev[n - 1].text, held) != 0 && ev[n - 1].text[0] == held[0]);
    for (int i = 0; i < n; i++) {
      ig_str_puts(&egot.text, ev[i].text);
      ig_token_event_clear(&ev[i]);
    }
    CHECK(egot.text.len == eref.text.len && memcmp(egot.text.p, eref.text.p, eref.text.len) == 0);
    ig_request_unref(r);
  }
  ig_engine_destroy(e, 1000);
  fake_free(f);
  ig_str_free(&ref.text);
  ig_str_free(&got.text);
  ig_str_free(&got2.text);
  ig_str_free(&eref.text);
  ig_str_free(&egot.text);
}

/* max_new_tokens 0: the prompt is computed (its logprobs and most likely tokens when asked) and the request ends with
 * one event of no token, finish LENGTH, nothing sampled; beside ordinary requests, in chunks, on the host and (with
 * a device sampler) the device path, its blocks given back. */
static void test_prompt_only(void) {
  for (int dev = 0; dev < 2 - g_async; dev++) {
    g_device_sampling = dev;
    fake *f = fake_new();
    ig_engine *e = start(f, 2048, 8, 16, 4);
    g_device_sampling = 0;
    const ig_engine_stats *st = ig_engine_get_stats(e);
    int32_t prompt[30];
    for (int i = 0; i < 30; i++) prompt[i] = 1 + (int)(mix((uint64_t)i + 99) % (V - 1));
    ig_gen_params only = h_params(0), bare = h_params(0), gen = h_params(10);
    only.prefill_logprobs = 1, only.prefill_top_n = 3;
    gen.prefill_logprobs = 1, gen.prefill_top_n = 3, gen.ignore_eos = 1, gen.want_logprobs = 1;
    ig_request *rs[4] = {h_request(prompt, 30, &only, NULL, 0), h_request(prompt, 1, &bare, NULL, 0),
                         h_request(prompt, 30, &gen, NULL, 0), h_request(prompt + 5, 20, &only, NULL, 0)};
    rs[3]->params.prefill_top_n = 0;
    h_out outs[4];
    memset(outs, 0, sizeof outs);
    char err[256];
    long long fin0 = atomic_load(&st->requests_finished);
    for (int i = 0; i < 4; i++) CHECK_MSG(ig_engine_submit(e, rs[i], err, sizeof err) == 0, "submit %d: %s", i, err);
    CHECK(h_wait_all(rs, outs, 4, 30) == 0);
    for (int i = 0; i < 4; i++) {
      if (i == 2) continue;
      CHECK_MSG(outs[i].n == 0 && outs[i].events == 1 && outs[i].finish == IG_FINISH_LENGTH && outs[i].text.len == 0,
                "prompt-only request %d: %d tokens, %d events, finish %d", i, outs[i].n, outs[i].events,
                outs[i].finish);
      CHECK(rs[i]->n_generated == 0 && rs[i]->t_done > 0);
    }
    check_prefill(rs[0], prompt, 30, 3);
    CHECK(rs[1]->prefill_logprobs == NULL && rs[1]->prefill_top == NULL);
    check_prefill(rs[3], prompt + 5, 20, 0);
    CHECK(rs[3]->prefill_top == NULL);
    CHECK_EQ_INT(outs[2].n, 10); /* the ordinary request beside them, with the same prompt logprobs */
    check_prefill(rs[2], prompt, 30, 3);
    wait_idle(e);
    CHECK_EQ_INT(atomic_load(&st->requests_finished) - fin0, 4);
    CHECK_EQ_INT(atomic_load(&st->kv_blocks_used), 0);
    for (int i = 0; i < 4; i++) {
      ig_request_unref(rs[i]);
      ig_str_free(&outs[i].text);
    }
    /* malformed: a negative max_new_tokens, more prompt top tokens than IG_MAX_TOP_N */
    ig_gen_params neg = h_params(-1), many = h_params(0);
    many.prefill_logprobs = 1, many.prefill_top_n = IG_MAX_TOP_N + 1;
    ig_request *rn = h_request(prompt, 3, &neg, NULL, 0), *rm = h_request(prompt, 3, &many, NULL, 0);
    CHECK_EQ_INT(ig_engine_submit(e, rn, err, sizeof err), -EINVAL);
    CHECK_EQ_STR(err, "max_new_tokens must be >= 0");
    CHECK_EQ_INT(ig_engine_submit(e, rm, err, sizeof err), -EINVAL);
    ig_request_unref(rn);
    ig_request_unref(rm);
    ig_engine_destroy(e, 1000);
    fake_free(f);
  }
}

static void test_cancel_overload_errors(void) {
  fake *f = fake_new();
  atomic_store(&f->sleep_us, 2000);
  ig_engine *e = start(f, 1024, 32, 4, 16);
  const ig_engine_stats *st = ig_engine_get_stats(e);
  int32_t prompt[40];
  for (int i = 0; i < 40; i++) prompt[i] = 1 + i;
  ig_gen_params p = h_params(150);
  p.ignore_eos = 1;
  char err[256];
  ig_request *rs[5];
  h_out outs[5];
  memset(outs, 0, sizeof outs);
  /* Cancel a request once it has streamed a few tokens: it ends CANCELLED and its blocks are freed. */
  rs[0] = h_request(prompt, 40, &p, NULL, 0);
  CHECK(ig_engine_submit(e, rs[0], err, sizeof err) == 0);
  for (int k = 0; k < 2000 && outs[0].n < 5; k++) {
    h_drain(rs[0], &outs[0]);
    usleep(1000);
  }
  CHECK(outs[0].n >= 5);
  CHECK(atomic_load(&st->kv_blocks_used) >= 3);
  atomic_store(&rs[0]->cancelled, 1);
  CHECK(h_wait_all(&rs[0], &outs[0], 1, 10) == 0);
  CHECK_EQ_INT(outs[0].finish, IG_FINISH_CANCELLED);
  CHECK(outs[0].n < 150);
  CHECK_EQ_INT(atomic_load(&st->kv_blocks_used), 0);
  ig_request_unref(rs[0]);
  ig_str_free(&outs[0].text);
  memset(outs, 0, sizeof outs);
  for (int i = 0; i < 4; i++) {
    rs[i] = h_request(prompt, 40, &p, NULL, 0);
    CHECK(ig_engine_submit(e, rs[i], err, sizeof err) == 0);
  }
  /* Over max_concurrent_requests: refused with -EAGAIN. */
  rs[4] = h_request(prompt, 40, &p, NULL, 0);
  CHECK_EQ_INT(ig_engine_submit(e, rs[4], err, sizeof err), -EAGAIN);
  CHECK_EQ_STR(err, "Model is overloaded");
  ig_request_unref(rs[4]);
  /* Too long for max_total_tokens: -EINVAL. */
  ig_gen_params big = h_params(190);
  ig_request *rb = h_request(prompt, 40, &big, NULL, 0);
  CHECK_EQ_INT(ig_engine_submit(e, rb, err, sizeof err), -EINVAL);
  ig_request_unref(rb);
  for (int k = 0; k < 2000 && outs[3].n < 2; k++) {
    h_drain(rs[3], &outs[3]);
    usleep(1000);
  }
  /* A forward failure ends the requests of that batch with IG_FINISH_ERROR and a message. */
  atomic_store(&f->fail_next, 1);
  CHECK(h_wait_all(rs, outs, 4, 30) == 0);
  for (int i = 0; i < 4; i++) {
    CHECK_EQ_INT(outs[i].finish, IG_FINISH_ERROR);
    CHECK_EQ_STR(rs[i]->error, "injected failure");
  }
  wait_idle(e);
  CHECK_EQ_INT(atomic_load(&st->kv_blocks_used), 0);
  for (int i = 0; i < 4; i++) {
    ig_request_unref(rs[i]);
    ig_str_free(&outs[i].text);
  }
  /* Pipelined: a failure reported by forward_sample_end ends that step's requests the same way. */
  if (g_async) {
    memset(outs, 0, sizeof outs);
    for (int i = 0; i < 2; i++) {
      rs[i] = h_request(prompt, 40, &p, NULL, 0);
      CHECK(ig_engine_submit(e, rs[i], err, sizeof err) == 0);
    }
    for (int k = 0; k < 2000 && outs[1].n < 2; k++) {
      h_drain(rs[1], &outs[1]);
      usleep(1000);
    }
    atomic_store(&f->fail_next_end, 1);
    CHECK(h_wait_all(rs, outs, 2, 30) == 0);
    for (int i = 0; i < 2; i++) {
      CHECK_EQ_INT(outs[i].finish, IG_FINISH_ERROR);
      CHECK_EQ_STR(rs[i]->error, "injected failure at end");
      ig_request_unref(rs[i]);
      ig_str_free(&outs[i].text);
    }
    wait_idle(e);
    CHECK_EQ_INT(atomic_load(&st->kv_blocks_used), 0);
  }
  /* The engine keeps serving; shutting down with requests in flight cancels them. */
  memset(outs, 0, sizeof outs);
  for (int i = 0; i < 3; i++) {
    rs[i] = h_request(prompt, 40, &p, NULL, 0);
    CHECK(ig_engine_submit(e, rs[i], err, sizeof err) == 0);
  }
  usleep(20000);
  ig_engine_destroy(e, 0);
  for (int i = 0; i < 3; i++) {
    CHECK(h_drain(rs[i], &outs[i]));
    CHECK_EQ_INT(outs[i].finish, IG_FINISH_CANCELLED);
    ig_request_unref(rs[i]);
    ig_str_free(&outs[i].text);
  }
  fake_free(f);
}

/* TGI's waiting rules: with ratio 10 a lone newcomer cannot join one running request until
 * max_waiting_tokens steps have passed; a request cancelled while it waits ends at once. */
static void test_waiting_rules(void) {
  g_max_waiting = 30;
  g_ratio = 10;
  fake *f = fake_new();
  atomic_store(&f->sleep_us, 500);
  ig_engine *e = start(f, 4096, 32, 64, 16);
  const ig_engine_stats *st = ig_engine_get_stats(e);
  int32_t prompt[4] = {1, 2, 3, 4};
  ig_gen_params p = h_params(100);
  p.ignore_eos = 1;
  char err[256];
  h_out o[3];
  memset(o, 0, sizeof o);
  ig_request *a = h_request(prompt, 4, &p, NULL, 0);
  CHECK(ig_engine_submit(e, a, err, sizeof err) == 0);
  for (int k = 0; k < 2000 && o[0].n < 2; k++) {
    h_drain(a, &o[0]);
    usleep(500);
  }
  ig_request *b = h_request(prompt, 4, &p, NULL, 0);
  ig_request *c = h_request(prompt, 4, &p, NULL, 0);
  CHECK(ig_engine_submit(e, b, err, sizeof err) == 0);
  CHECK(ig_engine_submit(e, c, err, sizeof err) == 0);
  usleep(2000);
  CHECK_EQ_INT(atomic_load(&st->queue_size), 2);
  atomic_store(&c->cancelled, 1);
  CHECK(h_wait_all(&c, &o[2], 1, 10) == 0);
  CHECK_EQ_INT(o[2].finish, IG_FINISH_CANCELLED);
  CHECK_EQ_INT(o[2].n, 0);
  CHECK(c->t_first_scheduled == 0);
  /* b joins after ~30 steps of a, not before */
  for (int k = 0; k < 5000 && o[1].n < 1; k++) {
    h_drain(b, &o[1]);
    h_drain(a, &o[0]);
    usleep(200);
  }
  h_drain(a, &o[0]);
  CHECK_MSG(o[0].n >= 29, "a had %d tokens when b started", o[0].n);
  ig_request *rs[2] = {a, b};
  CHECK(h_wait_all(rs, o, 2, 30) == 0);
  CHECK(h_same(&o[0], &o[1]));
  ig_request_unref(a);
  ig_request_unref(b);
  ig_request_unref(c);
  for (int i = 0; i < 3; i++) ig_str_free(&o[i].text);
  ig_engine_destroy(e, 0);
  fake_free(f);
  g_max_waiting = 20;
  g_ratio = 0.3f;
}

/* ---- stress: 4 client threads, 240 requests, tiny KV, overload retries, random cancellations ------------ */
#define NS 240
static int32_t s_prompt[NS][64];
static int s_plen[NS];
static ig_gen_params s_params[NS];
static const char *s_stop[] = {"ab", " c"};
static int s_nstop[NS];
static h_out s_ref[NS], s_got[NS];
static int s_cancel_after[NS]; /* -1: never */
static ig_engine *s_engine;
static atomic_int s_submit_errors;

/* One client: submits its share as fast as the engine accepts (retrying on -EAGAIN), drains every stream,
 * and cancels some streams after a few events. */
static void *stress_client(void *arg) {
  int t = (int)(intptr_t)arg;
  char err[256];
  ig_request *act[NS];
  int act_i[NS], n_act = 0, next = t, cancelled[NS] = {0};
  while (next < NS || n_act > 0) {
    if (next < NS) {
      ig_request *r = h_request(s_prompt[next], s_plen[next], &s_params[next], s_stop, s_nstop[next]);
      int rc = ig_engine_submit(s_engine, r, err, sizeof err);
      if (rc == 0) {
        act[n_act] = r;
        act_i[n_act++] = next;
        next += 4;
      } else {
        ig_request_unref(r);
        if (rc != -EAGAIN) atomic_fetch_add(&s_submit_errors, 1); /* checked by the main thread */
      }
    }
    for (int k = 0; k < n_act; k++) {
      int i = act_i[k];
      if (h_drain(act[k], &s_got[i])) {
        ig_request_unref(act[k]);
        act[k] = act[--n_act];
        act_i[k] = act_i[n_act];
        k--;
        continue;
      }
      if (!cancelled[i] && s_cancel_after[i] >= 0 && s_got[i].events >= s_cancel_after[i]) {
        atomic_store(&act[k]->cancelled, 1);
        cancelled[i] = 1;
      }
    }
    usleep(50);
  }
  return NULL;
}

static void test_stress(void) {
  uint64_t x = 4242;
  for (int i = 0; i < NS; i++) {
    x = mix(x + (uint64_t)i);
    s_plen[i] = 1 + (int)(x % 60);
    for (int j = 0; j < s_plen[i]; j++) s_prompt[i][j] = 1 + (int)(mix(x + 7 * (uint64_t)j) % (V - 1));
    s_params[i] = h_params(1 + (int)((x >> 13) % 80));
    s_params[i].seed = x;
    s_params[i].do_sample = (x >> 7) & 1;
    if ((x >> 9) % 3 == 0) s_params[i].repetition_penalty = 1.1f, s_params[i].top_k = 8;
    if ((x >> 11) % 4 == 0) s_params[i].prefill_logprobs = 1, s_params[i].top_n_tokens = 2;
    s_nstop[i] = (x >> 17) % 3 == 0 ? 2 : 0;
    s_cancel_after[i] = (x >> 21) % 5 == 0 ? (int)((x >> 25) % 10) : -1;
  }
  /* Reference: each alone. */
  fake *f = fake_new();
  ig_engine *e = start(f, 4096, 32, 64, 16);
  char err[256];
  for (int i = 0; i < NS; i++) {
    ig_request *r = h_request(s_prompt[i], s_plen[i], &s_params[i], s_stop, s_nstop[i]);
    CHECK(ig_engine_submit(e, r, err, sizeof err) == 0);
    CHECK(h_wait_all(&r, &s_ref[i], 1, 30) == 0);
    ig_request_unref(r);
  }
  ig_engine_destroy(e, 0);
  fake_free(f);
  static h_out serial_ref[NS];
  check_same_as_serial(serial_ref, s_ref, NS, "stress reference");
  /* Stress: KV for ~2 full requests, chunks of 8, at most 24 in flight. */
  f = fake_new();
  g_sampler_threads = 2;
  s_engine = start(f, 448, 8, 24, 4);
  g_sampler_threads = -1;
  pthread_t th[4];
  for (int t = 0; t < 4; t++) pthread_create(&th[t], NULL, stress_client, (void *)(intptr_t)t);
  for (int t = 0; t < 4; t++) pthread_join(th[t], NULL);
  const ig_engine_stats *st = ig_engine_get_stats(s_engine);
  int same = 0, cancelled = 0, bad = 0;
  for (int i = 0; i < NS; i++) {
    if (s_got[i].finish == IG_FINISH_CANCELLED) {
      cancelled++;
      /* what was streamed before the cancellation is the start of the reference */
      int ok = s_got[i].n <= s_ref[i].n;
      for (int k = 0; ok && k < s_got[i].n; k++) ok = s_got[i].ids[k] == s_ref[i].ids[k];
      if (!ok) bad++;
    } else if (h_same(&s_got[i], &s_ref[i])) {
      same++;
    } else {
      bad++;
      if (bad < 4) fprintf(stderr, "stress: request %d differs (finish %d vs %d, n %d vs %d)\n", i, s_got[i].finish,
                           s_ref[i].finish, s_got[i].n, s_ref[i].n);
    }
  }
  CHECK_EQ_INT(bad, 0);
  CHECK_EQ_INT(atomic_load(&s_submit_errors), 0);
  CHECK_EQ_INT(same + cancelled, NS);
  CHECK(cancelled > 0);
  CHECK(atomic_load(&st->preemptions) > 0);
  CHECK_EQ_INT(atomic_load(&st->requests_finished), NS);
  wait_idle(s_engine);
  CHECK_EQ_INT(atomic_load(&st->kv_blocks_used), 0);
  CHECK_EQ_INT(atomic_load(&st->queue_size), 0);
  fprintf(stderr, "stress: %d identical, %d cancelled, %lld preemptions, %lld steps, %d ended while in flight\n",
          same, cancelled, (long long)atomic_load(&st->preemptions), (long long)atomic_load(&st->steps),
          atomic_load(&f->ended_in_flight));
  if (g_async) {
    CHECK(atomic_load(&f->ended_in_flight) > 0);
    free_outs(serial_ref, NS);
  }
  ig_engine_destroy(s_engine, 0);
  fake_free(f);
  for (int i = 0; i < NS; i++) {
    ig_str_free(&s_ref[i].text);
    ig_str_free(&s_got[i].text);
  }
  memset(s_ref, 0, sizeof s_ref);
  memset(s_got, 0, sizeof s_got);
}

/* A runner over fake f with only the hooks engine creation needs (no sampling, no text). */
static ig_engine_runner fake_min_runner(fake *f) {
  ig_engine_runner run;
  memset(&run, 0, sizeof run);
  run.ctx = f;
  run.vocab_size = V;
  run.kv_bytes_per_block = fake_kv_bytes;
  run.kv_init = fake_kv_init;
  run.forward = fake_forward;
  return run;
}

static void test_config_errors(void) {
  fake *f = fake_new();
  ig_engine_runner run = fake_min_runner(f);
  ig_engine_config cfg = {0};
  cfg.max_total_tokens = 500;
  cfg.max_batch_total_tokens = 400;
  ig_engine *e = NULL;
  char err[256] = "";
  CHECK_EQ_INT(ig_engine_create_custom(&run, NULL, &cfg, &e, err, sizeof err), -EINVAL);
  CHECK(strstr(err, "cannot hold one request") != NULL);
  /* Derived size bounded by memory: 100 blocks of 16 tokens is too small for 2048 either. */
  cfg.max_batch_total_tokens = 0;
  cfg.max_total_tokens = 2048;
  run.kv_mem_limit = 100 * fake_kv_bytes(NULL, 16);
  CHECK_EQ_INT(ig_engine_create_custom(&run, NULL, &cfg, &e, err, sizeof err), -EINVAL);
  CHECK(strstr(err, "bounded by memory") != NULL);
  run.kv_mem_limit = 0;
  /* the mask cache's size: a number of megabytes, or the start fails naming the variable */
  static const char *const bad_mb[] = {"abc", "-1", "1e9", "12x"};
  for (size_t i = 0; i < sizeof bad_mb / sizeof *bad_mb; i++) {
    setenv("IGNIS_JSON_MASK_CACHE_MB", bad_mb[i], 1);
    CHECK_EQ_INT(ig_engine_create_custom(&run, NULL, &cfg, &e, err, sizeof err), -EINVAL);
    CHECK_MSG(strstr(err, "IGNIS_JSON_MASK_CACHE_MB") != NULL && strstr(err, bad_mb[i]) != NULL, "%s", err);
  }
  unsetenv("IGNIS_JSON_MASK_CACHE_MB");
  CHECK_EQ_INT(ig_engine_create_custom(&run, NULL, &cfg, &e, err, sizeof err), 0);
  CHECK_EQ_INT(ig_engine_get_config(e)->max_batch_total_tokens, 16384);
  CHECK_EQ_INT(atomic_load(&ig_engine_get_stats(e)->kv_blocks_total), 1024);
  /* an engine without a tokenizer's raw pieces refuses JSON mode at submission, with a message */
  ig_gen_params jp = h_params(5);
  jp.json_mode = 1;
  int32_t jprompt[2] = {3, 4};
  ig_request *jr = h_request(jprompt, 2, &jp, NULL, 0);
  CHECK_EQ_INT(ig_engine_submit(e, jr, err, sizeof err), -EINVAL);
  CHECK_MSG(strstr(err, "constrained output (JSON mode, a schema or a regex) needs") != NULL, "message: %s", err);
  ig_request_unref(jr);
  ig_engine_destroy(e, 0);
  /* A device backend fills the memory it is given (not the 16k-token default): 3000 blocks here. */
  fake_free(f);
  f = fake_new();
  run.ctx = f;
  run.kv_mem_limit = 3000 * fake_kv_bytes(NULL, 16) + 5;
  run.kv_fill = 1;
  CHECK_EQ_INT(ig_engine_create_custom(&run, NULL, &cfg, &e, err, sizeof err), 0);
  CHECK_EQ_INT(ig_engine_get_config(e)->max_batch_total_tokens, 3000 * 16);
  CHECK_EQ_INT(atomic_load(&ig_engine_get_stats(e)->kv_blocks_total), 3000);
  ig_engine_destroy(e, 0);
  fake_free(f);
}

/* The runner's warm-up: called once after kv_init with the configured limits (contexts capped at 4,096 tokens, the
 * prompt chunk at max_total_tokens), skipped with IGNIS_WARMUP=0, and its failure is a startup error that names the
 * flags to change. */
static int wu_calls, wu_rows, wu_ctx, wu_chunk, wu_fail;
static int fake_warmup(void *ctx, int max_rows, int max_total_tokens, int chunk, char *err, size_t errlen) {
  (void)ctx;
  wu_calls++, wu_rows = max_rows, wu_ctx = max_total_tokens, wu_chunk = chunk;
  if (wu_fail) {
    snprintf(err, errlen, "cuda: out of memory");
    return -1;
  }
  return 7;
}
static void test_warmup_hook(void) {
  fake *f = fake_new();
  ig_engine_runner run = fake_min_runner(f);
  run.warmup = fake_warmup;
  ig_engine_config cfg = {0};
  cfg.max_total_tokens = 8192;
  cfg.max_batch_total_tokens = 16384;
  cfg.max_batch_prefill_tokens = 10000;
  cfg.max_concurrent_requests = 48;
  ig_engine *e = NULL;
  char err[256] = "";
  unsetenv("IGNIS_WARMUP");
  CHECK_EQ_INT(ig_engine_create_custom(&run, NULL, &cfg, &e, err, sizeof err), 0);
  CHECK_EQ_INT(wu_calls, 1);
  CHECK_EQ_INT(wu_rows, 48);
  CHECK_EQ_INT(wu_ctx, 4096);   /* widths beyond 4,096 tokens are left to first use */
  CHECK_EQ_INT(wu_chunk, 8192); /* the chunk, at most one request's tokens */
  ig_engine_destroy(e, 0);
  fake_free(f); /* the fake's kv_init allocates per call */
  run.ctx = f = fake_new(); /* --max-batch-size below the concurrency: graphs up to it */
  cfg.max_batch_size = 20;
  CHECK_EQ_INT(ig_engine_create_custom(&run, NULL, &cfg, &e, err, sizeof err), 0);
  CHECK_EQ_INT(wu_calls, 2);
  CHECK_EQ_INT(wu_rows, 20);
  cfg.max_batch_size = 0;
  ig_engine_destroy(e, 0);
  fake_free(f);
  run.ctx = f = fake_new();
  setenv("IGNIS_WARMUP", "0", 1);
  CHECK_EQ_INT(ig_engine_create_custom(&run, NULL, &cfg, &e, err, sizeof err), 0);
  CHECK_EQ_INT(wu_calls, 2);
  ig_engine_destroy(e, 0);
  unsetenv("IGNIS_WARMUP");
  fake_free(f);
  run.ctx = f = fake_new();
  wu_fail = 1;
  e = NULL;
  CHECK(ig_engine_create_custom(&run, NULL, &cfg, &e, err, sizeof err) < 0);
  CHECK(e == NULL);
  CHECK_MSG(strstr(err, "warm-up: cuda: out of memory") && strstr(err, "--max-batch-prefill-tokens"), "message: %s", err);
  wu_fail = 0;
  fake_free(f);
}

/* ---- --speculate ------------------------------------------------------------------------------------------ */
/* On a fake whose logits depend on the last token alone (greedy text falls into a cycle within a few tokens, so
 * drafts are taken) and whose rows computed in pieces of 2 or 3 rows are tagged by the piece's range (so a row keeps
 * a one-token step's bits only when it comes as a piece of its own, as one-token steps' rows are), greedy requests
 * draft and
 * every output is the one without drafts: ids, logprobs, top tokens, text and finish, whether length, EOS, a stop
 * sequence or a stop id ends it in a run of accepted drafts; beside sampled and penalised requests; under preemption
 * and with the prefix cache (a block of rejected draft rows, overwritten later, must never be shared). Verify steps of
 * 7 rows: as one piece they would be tagged otherwise (a 7-row piece) and change the outputs; as single-row pieces
 * (fill_batch) they do not. */
static char spec_stop[NR][16]; /* the stop sequence of request i, or "" */

static void spec_workload(void) {
  uint64_t x = 99;
  for (int i = 0; i < NR; i++) {
    x = mix(x + (uint64_t)i);
    plen[i] = 1 + (int)(x % 30);
    for (int j = 0; j < plen[i]; j++) /* even ones: a shared start of 9 tokens (the prefix cache finds it) */
      prompts[i][j] = i % 2 == 0 && j < 9 ? 3 + j : 1 + (int)(mix(x + (uint64_t)j) % (V - 1));
    params[i] = h_params(1 + (int)((x >> 20) % 120));
    params[i].seed = 300 + (uint64_t)i;
    spec_stop[i][0] = 0;
    switch (i % 8) {
    case 0: params[i].want_logprobs = 1; break;
    case 1: params[i].top_n_tokens = 3, params[i].ignore_eos = 1; break;
    case 2: params[i].do_sample = 1; break;
    case 3: params[i].repetition_penalty = 1.3f; break;
    case 4: params[i].temperature = 0; params[i].ignore_eos = 1; break; /* OpenAI's greedy */
    case 5: case 6: params[i].max_new_tokens = 100, params[i].ignore_eos = 1; break; /* stops set by test_speculate */
    default: break;
    }
  }
}

/* Requests 5 and 6 of each 8 end at a stop id / a stop sequence met halfway through their output in out. */
static void spec_stops(const h_out *out) {
  for (int i = 0; i < NR; i++) {
    const int h = out[i].n / 2;
    if (i % 8 == 5 && out[i].n > 4) {
      params[i].stop_ids = malloc(sizeof(int32_t));
      params[i].stop_ids[0] = out[i].ids[h];
      params[i].n_stop_ids = 1;
    }
    if (i % 8 == 6 && out[i].n > 4) snprintf(spec_stop[i], sizeof spec_stop[i], "%s%s", pieces[out[i].ids[h]],
                                             pieces[out[i].ids[h + 1]]);
  }
}

static void spec_run(fake *f, h_out *outs, int kv, long long *steps, long long *accepted) {
  ig_engine *e = start(f, kv, 32, 64, 4);
  const ig_engine_stats *st = ig_engine_get_stats(e);
  memset(outs, 0, sizeof(h_out) * NR);
  ig_request *rs[NR];
  char err[256];
  for (int i = 0; i < NR; i++) {
    ig_gen_params p = params[i];
    if (p.stop_ids) { /* the request owns its copy */
      p.stop_ids = malloc(sizeof(int32_t));
      p.stop_ids[0] = params[i].stop_ids[0];
    }
    const char *stop = spec_stop[i];
    rs[i] = h_request(prompts[i], plen[i], &p, &stop, stop[0] != 0);
    CHECK_MSG(ig_engine_submit(e, rs[i], err, sizeof err) == 0, "submit %d: %s", i, err);
  }
  CHECK(h_wait_all(rs, outs, NR, 60) == 0);
  for (int i = 0; i < NR; i++) {
    CHECK_EQ_INT(rs[i]->n_generated, outs[i].n);
    ig_request_unref(rs[i]);
  }
  wait_idle(e);
  CHECK_EQ_INT(atomic_load(&st->kv_blocks_used), 0);
  *steps = atomic_load(&st->steps);
  *accepted = atomic_load(&st->spec_accepted_tokens);
  CHECK(*accepted <= atomic_load(&st->spec_draft_tokens));
  if (!g_spec) CHECK_EQ_INT(atomic_load(&st->spec_draft_tokens), 0);
  ig_engine_destroy(e, 1000);
}

static int spec_same(const h_out *a, const h_out *b) {
  return h_same(a, b) && a->max_top == b->max_top && memcmp(a->logprobs, b->logprobs, sizeof(float) * (size_t)a->n) == 0;
}

static void test_speculate(void) {
  static h_out ref[NR], ref0[NR], got[NR];
  long long steps0, steps, acc;
  g_markov = 1;
  spec_workload();
  fake *f = fake_new();
  f->canon = 4, f->row_tags = 1;
  spec_run(f, ref, 8192, &steps0, &acc);
  fake_free(f);
  spec_stops(ref);
  free_outs(ref, NR);
  f = fake_new();
  f->canon = 4, f->row_tags = 1;
  spec_run(f, ref, 8192, &steps0, &acc);
  fake_free(f);
  int ends[IG_FINISH_ERROR + 1] = {0};
  for (int i = 0; i < NR; i++) ends[ref[i].finish]++;
  CHECK(ends[IG_FINISH_EOS] > 0 && ends[IG_FINISH_STOP] > 0 && ends[IG_FINISH_LENGTH] > 0);
  /* drafts of 6 (7-row verify pieces, past the 4-row `canon`): the same outputs in fewer steps */
  g_spec = 6;
  f = fake_new();
  f->canon = 4, f->row_tags = 1;
  spec_run(f, got, 8192, &steps, &acc);
  for (int i = 0; i < NR; i++) CHECK_MSG(spec_same(&ref[i], &got[i]), "request %d differs with --speculate", i);
  fprintf(stderr, "speculate: %lld steps (%lld without), %lld drafts accepted, up to %d rows of a sequence sampled in "
          "a step; %d EOS, %d stop, %d length\n", steps, steps0, acc, f->max_seq_out, ends[IG_FINISH_EOS],
          ends[IG_FINISH_STOP], ends[IG_FINISH_LENGTH]);
  CHECK(acc > 0 && steps < steps0);
  CHECK_EQ_INT(f->max_seq_out, 7);
  fake_free(f);
  free_outs(got, NR);
  /* A backend whose rows are the same however computed (canon 0; a recomputed row then keeps its bits): drafts of up
   * to 6, a KV budget of 256 tokens (preemption; drafts take only free blocks), and the prefix cache with blocks of 4
   * (decode and verify rows are registered too, never a block of rejected drafts): one at a time (each request
   * finds the blocks of those before) and all at once. */
  g_spec = 0;
  f = fake_new();
  spec_run(f, ref0, 8192, &steps0, &acc);
  fake_free(f);
  g_spec = 6;
  for (int k = 0; k < 3; k++) {
    f = fake_new();
    g_prefix = k > 0;
    long long pre = 0;
    if (k == 1) { /* one at a time */
      ig_engine *e = start(f, 8192, 32, 64, 4);
      char err[256];
      memset(got, 0, sizeof got);
      for (int i = 0; i < NR; i++) {
        ig_gen_params p = params[i];
        if (p.stop_ids) p.stop_ids = malloc(sizeof(int32_t)), p.stop_ids[0] = params[i].stop_ids[0];
        const char *stop = spec_stop[i];
        ig_request *r = h_request(prompts[i], plen[i], &p, &stop, stop[0] != 0);
        CHECK(ig_engine_submit(e, r, err, sizeof err) == 0);
        CHECK(h_wait_all(&r, &got[i], 1, 30) == 0);
        ig_request_unref(r);
      }
      wait_idle(e);
      const ig_engine_stats *st = ig_engine_get_stats(e);
      CHECK_EQ_INT(atomic_load(&st->kv_blocks_used), 0);
      acc = atomic_load(&st->spec_accepted_tokens);
      CHECK_MSG(atomic_load(&st->prefix_hit_tokens) > 50, "%lld tokens found cached",
                (long long)atomic_load(&st->prefix_hit_tokens));
      ig_engine_destroy(e, 1000);
    } else {
      spec_run(f, got, k == 0 ? 256 : 8192, &steps, &acc);
    }
    fake_free(f);
    const char *what = k == 0 ? "tiny KV" : k == 1 ? "prefix cache, one at a time" : "prefix cache, together";
    for (int i = 0; i < NR; i++) CHECK_MSG(spec_same(&ref0[i], &got[i]), "request %d differs with --speculate, %s", i, what);
    CHECK(acc > 0);
    (void)pre;
    free_outs(got, NR);
  }
  g_prefix = 0;
  /* cancellation of a greedy request in a run of drafts: it ends CANCELLED, its blocks come back */
  f = fake_new();
  atomic_store(&f->sleep_us, 2000);
  ig_engine *e = start(f, 8192, 32, 64, 4);
  ig_gen_params p = h_params(150);
  p.ignore_eos = 1;
  ig_request *r = h_request(prompts[0], plen[0], &p, NULL, 0);
  char err[256];
  CHECK(ig_engine_submit(e, r, err, sizeof err) == 0);
  h_out c = {0};
  for (int k = 0; k < 5000 && c.n < 20; k++) h_drain(r, &c), usleep(200);
  atomic_store(&r->cancelled, 1);
  CHECK(h_wait_all(&r, &c, 1, 30) == 0);
  CHECK_EQ_INT(c.finish, IG_FINISH_CANCELLED);
  CHECK(c.n >= 20 && c.n < 150);
  wait_idle(e);
  CHECK_EQ_INT(atomic_load(&ig_engine_get_stats(e)->kv_blocks_used), 0);
  CHECK(atomic_load(&ig_engine_get_stats(e)->spec_accepted_tokens) > 0);
  ig_request_unref(r);
  ig_str_free(&c.text);
  ig_engine_destroy(e, 1000);
  fake_free(f);
  g_spec = 0, g_markov = 0;
  for (int i = 0; i < NR; i++) free(params[i].stop_ids), spec_stop[i][0] = 0;
  free_outs(ref, NR);
  free_outs(ref0, NR);
  make_workload();
}

int main(void) {
  init_pieces();
  for (g_async = 0; g_async < 2; g_async++) {
    fprintf(stderr, "---- %s step\n", g_async ? "pipelined" : "serial");
    test_batching();
    test_stop_sequences();
    test_prompt_only();
    test_cancel_overload_errors();
    test_waiting_rules();
    test_stress();
    test_prefix_cache();
    test_json_mode();
    test_json_schema();
    test_regex_grammar();
    test_speculate();
  }
  g_async = 0;
  test_config_errors();
  test_warmup_hook();
  TEST_DONE();
}
