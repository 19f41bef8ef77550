/* bench/cuda_batch: batched decode through src/model as the engine drives it on the GPU (issue 6): B sequences
 * prefilled to --ctx random tokens, then --steps decode steps of B one-token sequences whose next tokens come
 * from the on-device greedy sampler (ig_model_forward_sample). Per batch size, ms per step and output tokens/s:
 *   eager        no decode graphs; logits stay on the device, greedy + logprob sampled there
 *   graphs       decode steps padded to a --graphs bucket and replayed as CUDA graphs
 *   graphs+host  graphs, but every row's logits downloaded (the old host-sampling path's transfer)
 *   fwd only     graphs, no sampling at all (the forward's own time)
 *   cuda_batch DIR [--batch 1,16,64,128,256] [--ctx 256] [--steps 64] [--graphs 1,2,4,...] [--modes 0,1,2,3] [--mix]
 *              [--kv-dtype fp8_e4m3fn|fp8_e5m2] (the KV cache's format, --kv-cache-dtype of ignis serve)
 * The prompts go in 4,096-row steps, each timed (--mix: with the earlier steps' sequences as decode rows beside them,
 * as the engine runs a wave of new requests). 
 * Also checks that eager and graph steps choose the same tokens (they run the same kernels on the same rows:
 * "check: graphs vs eager ids equal N/M"). */
#include "model/model.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BS 16

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}
#define DIE(...) (fprintf(stderr, "cuda_batch: " __VA_ARGS__), fputc('\n', stderr), exit(1))

static int parse_list(const char *s, int *out, int max) {
  int n = 0;
  while (*s && n < max) {
    out[n++] = atoi(s);
    while (*s && *s != ',') s++;
    if (*s == ',') s++;
  }
  return n;
}

typedef struct {
  int B, per_seq, max_blocks;
  int32_t *tok, *pos, *slot, *ss, *ctx, *bt, *outr, *last;
  int *len;
} sess;

/* One step: sequence i appends n_per tokens (or, with n_first > 0, 1 token for the first n_first sequences and
 * n_per for the rest: decode rows beside a prompt chunk, as the engine mixes them), logits of its last row wanted. */
static void step(ig_model *m, sess *s, int n_per, const int32_t *next, ig_sample_row *rows, ig_sample_out *outs,
                 float *host, int host_all, int sample, int n_first) {
  int r = 0;
  for (int i = 0; i < s->B; i++) {
    s->ss[i] = r;
    int n_i = i < n_first ? 1 : n_per;
    for (int t = 0; t < n_i; t++, r++) {
      int p = s->len[i] + t;
      s->tok[r] = next ? next[i] : (int32_t)((p * 7919 + i * 104729 + 13) % 100000);
      s->pos[r] = p;
      s->slot[r] = s->bt[(size_t)i * s->max_blocks + p / BS] * BS + p % BS;
    }
    s->ctx[i] = s->len[i] + n_i;
    s->outr[i] = r - 1;
    rows[i] = (ig_sample_row){.row = i, .temperature = 1, .top_p = 1, .typical_p = 1, .repetition_penalty = 1,
                              .want_logprob = 1};
  }
  s->ss[s->B] = r;
  int mb = (s->ctx[0] + BS - 1) / BS; /* the engine's table width: the longest sequence's blocks */
  for (int i = 1; i < s->B; i++) if ((s->ctx[i] + BS - 1) / BS > mb) mb = (s->ctx[i] + BS - 1) / BS;
  /* the engine packs the table at width mb; here rows keep their max_blocks stride, so repack */
  int32_t *bt = malloc(sizeof(int32_t) * (size_t)s->B * mb);
  for (int i = 0; i < s->B; i++) memcpy(bt + (size_t)i * mb, s->bt + (size_t)i * s->max_blocks, sizeof(int32_t) * mb);
  ig_batch b = {r, s->tok, s->pos, s->slot, s->B, s->ss, s->ctx, mb, bt, s->B, s->outr, NULL};
  char err[512];
  int32_t *hr = NULL;
  int nh = host_all ? s->B : 0;
  if (nh) {
    hr = malloc(sizeof(int32_t) * nh);
    for (int i = 0; i < nh; i++) hr[i] = i;
  }
  if (ig_model_forward_sample(m, &b, rows, sample ? s->B : 0, outs, hr, nh, host, err, sizeof err)) DIE("%s", err);
  free(hr);
  free(bt);
  for (int i = 0; i < s->B; i++) s->len[i] += i < n_first ? 1 : n_per;
}

int main(int argc, char **argv) {
  if (argc < 2) DIE("usage: cuda_batch DIR [--batch 1,16,64] [--ctx 256] [--steps 64] [--graphs LIST]");
  const char *dir = argv[1], *batches = "1,16,64,128,256", *graphs = "1,2,4,8,16,32,48,64,96,128,192,256";
  int ctx = 256, steps = 64, modes = 15; /* --modes 0,1,2,3: which columns to run (others print 0) */
  int mix = 0; /* --mix: prompt chunks carry the earlier chunks' sequences as decode rows (the engine's wave) */
  int kvdt = IG_KV_AUTO;
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
    if (!strcmp(a, "--batch")) batches = v, i++;
    else if (!strcmp(a, "--ctx")) ctx = atoi(v), i++;
    else if (!strcmp(a, "--steps")) steps = atoi(v), i++;
    else if (!strcmp(a, "--graphs")) graphs = v, i++;
    else if (!strcmp(a, "--mix")) mix = 1;
    else if (!strcmp(a, "--kv-dtype")) {
      kvdt = ig_kv_dtype_parse(v);
      if (kvdt < 0) DIE("--kv-dtype: expected fp8_e4m3fn or fp8_e5m2, not '%s'", v);
      i++;
    }
    else if (!strcmp(a, "--modes")) {
      int ml[4], nm = parse_list(v, ml, 4);
      modes = 0;
      for (int k = 0; k < nm; k++) if (ml[k] >= 0 && ml[k] < 4) modes |= 1 << ml[k];
      i++;
    }
    else DIE("unknown option %s", a);
  }
  int bl[32], gl[64];
  int nb = parse_list(batches, bl, 32), ng = parse_list(graphs, gl, 64), bmax = 1;
  for (int i = 0; i < nb; i++) if (bl[i] > bmax) bmax = bl[i];
  char err[512];
#ifdef IG_HAVE_CUDA
  ig_backend *be = ig_backend_cuda_create(0, err, sizeof err);
#else
  ig_backend *be = NULL;
  snprintf(err, sizeof err, "built without CUDA");
#endif
  if (!be) DIE("%s", err);
  ig_model *m;
  double t0 = now();
  if (ig_model_load(dir, be, &m, err, sizeof err)) DIE("%s", err);
  printf("load: %.2f s\n", now() - t0);
  int V = ig_model_get_info(m)->vocab_size;
  /* 4 passes of `steps` decode steps per batch size */
  int per_seq = (ctx + 4 * steps + 8 + bmax + BS - 1) / BS; /* + bmax: --mix decode rows during the prefill */
  ig_model_set_graphs(m, gl, ng);
  ig_model_set_kv_dtype(m, kvdt);
  if (ig_model_kv_init(m, bmax * per_seq, BS, err, sizeof err)) DIE("%s", err);
  if (kvdt) printf("kv cache: %s\n", ig_kv_dtype_name(kvdt));
  sess s = {0};
  s.per_seq = s.max_blocks = per_seq;
  size_t rows = (size_t)bmax * (ctx > 1 ? ctx : 1);
  s.tok = malloc(4 * rows), s.pos = malloc(4 * rows), s.slot = malloc(4 * rows);
  s.ss = malloc(4 * (bmax + 1)), s.ctx = malloc(4 * bmax), s.outr = malloc(4 * bmax), s.len = malloc(sizeof(int) * bmax);
  s.bt = malloc(4 * (size_t)bmax * per_seq);
  for (int i = 0; i < bmax; i++) /* interleaved, reversed: pages are not contiguous */
    for (int k = 0; k < per_seq; k++) s.bt[(size_t)i * per_seq + k] = bmax * per_seq - 1 - (k * bmax + i);
  ig_sample_row *srows = malloc(sizeof *srows * bmax);
  ig_sample_out *outs = malloc(sizeof *outs * bmax);
  float *host = malloc(sizeof(float) * (size_t)V * bmax);
  int32_t *next = malloc(4 * bmax), *ids_e = malloc(4 * (size_t)bmax * steps), *ids_g = malloc(4 * (size_t)bmax * steps);
  printf("%6s %12s %12s %12s %12s %10s\n", "batch", "eager ms", "graphs ms", "graphs+host", "fwd only", "tok/s");
  for (int bi = 0; bi < nb; bi++) {
    int B = bl[bi];
    s.B = B;
    double res[4] = {0, 0, 0, 0};
    int same = 0;
    for (int mode = 0; mode < 4; mode++) {
      if (!(modes & (1 << mode))) continue;
      /* each mode from the same prefilled state: prefill again (same tokens, same slots) */
      for (int i = 0; i < B; i++) s.len[i] = 0;
      ig_model_set_graphs(m, gl, mode == 0 ? 0 : ng);
      int chunk = 4096 / (ctx > 0 ? ctx : 1);
      if (chunk < 1) chunk = 1;
      double pf_t = 0, pf_max = 0;
      int pf_n = 0;
      for (int i0 = 0; i0 < B; i0 += chunk) { /* prefill, a few sequences per step */
        sess sub = s;
        int nb_ = B - i0 < chunk ? B - i0 : chunk;
        if (mix) { /* the engine's wave: earlier chunks' sequences decode one token beside this chunk */
          sub.B = i0 + nb_;
        } else {
          sub.B = nb_;
          sub.bt = s.bt + (size_t)i0 * per_seq;
          sub.len = s.len + i0;
        }
        double t1 = now(); /* the sampled ids come back to the host: the step is over when step() returns */
        step(m, &sub, ctx, NULL, srows, outs, host, 0, 1, mix ? i0 : 0);
        t1 = now() - t1;
        pf_t += t1, pf_n++;
        if (t1 > pf_max) pf_max = t1;
        printf("prefill step %d (mode %d): %d prompt rows + %d decode rows: %.2f ms\n", pf_n, mode, nb_ * ctx,
               mix ? i0 : 0, t1 * 1e3);
      }
      printf("prefill (mode %d): %d sequences of %d tokens in %d steps, %.2f ms per step (max %.2f)%s\n", mode, B, ctx,
               pf_n, pf_t * 1e3 / pf_n, pf_max * 1e3, mix ? ", decode rows mixed in" : "");
      for (int i = 0; i < B; i++) next[i] = outs[0].id;
      double t = 0;
      for (int st = 0; st < steps + 3; st++) {
        if (st == 3) t = now(); /* eager warm-up, capture, first replay */
        step(m, &s, 1, next, srows, outs, host, mode == 2, mode != 3, 0);
        for (int i = 0; i < B; i++) next[i] = mode == 3 ? (next[i] + 1) % V : outs[i].id;
        if (st >= 3 && mode < 2) memcpy((mode ? ids_g : ids_e) + (size_t)(st - 3) * B, next, 4 * B);
      }
      res[mode] = (now() - t) / steps;
    }
    for (size_t k = 0; k < (size_t)B * steps && (modes & 3) == 3; k++) same += ids_e[k] == ids_g[k];
    printf("%6d %12.3f %12.3f %12.3f %12.3f %10.0f\n", B, res[0] * 1e3, res[1] * 1e3, res[2] * 1e3, res[3] * 1e3,
           res[1] > 0 ? B / res[1] : B / res[0]);
    /* a hash of the chosen ids, to compare runs under different kernel switches (same bits, same ids) */
    uint64_t hsh = 1469598103934665603ull;
    const int32_t *ids = (modes & 2) ? ids_g : ids_e;
    for (size_t k = 0; k < (size_t)B * steps && (modes & 3); k++) hsh = (hsh ^ (uint32_t)ids[k]) * 1099511628211ull;
    printf("ids: batch %d steps %d hash %016llx\n", B, steps, (unsigned long long)hsh);
    if ((modes & 3) == 3) printf("check: batch %d graphs vs eager ids equal %d/%d\n", B, same, B * steps);
    else printf("check: batch %d graphs vs eager: not compared (run --modes 0,1 for both)\n", B);
    fflush(stdout);
  }
  ig_model_free(m);
  be->destroy(be);
  return 0;
}
