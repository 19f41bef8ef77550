/* bench/tp_bench: decode speed of a model split over N tensor-parallel shards (model/shard.c) through the public
 * model API, as the engine runs it: B sequences prefilled to --ctx tokens, then --steps decode steps of B tokens.
 *   tp_bench DIR [--shards N] [--device cuda|cpu] [--batch 1,8,32] [--ctx 512] [--steps 64] [--f32] [--threads T]
 *                [--group] [--same-gpu] [--check FILE]
 * N = 1 runs the plain model (what `--num-shard 1` runs); --group forces the shard group at N = 1 (its overhead);
 * --same-gpu puts all N shards on GPU 0 with the loopback all-reduce (checks, not speed). One line per batch size:
 *   tp_bench shards=N batch=B ctx=C steps=S decode_ms=X tok_s=Y   (plus load and prefill times).
 * --check FILE: the batch-1 logits (last prefill row and every decode step) are written to FILE when it does not
 * exist, else compared with it: "tp_bench check: worst rel L2 E" (exit 1 above 1e-2, bf16's tolerance). */
#include "model/model.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <time.h>

#define BS 16

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}
#define DIE(...) (fprintf(stderr, "tp_bench: " __VA_ARGS__), fputc('\n', stderr), exit(1))

int main(int argc, char **argv) {
  if (argc < 2) DIE("usage: tp_bench DIR [--shards N] [--device cuda|cpu] [--batch 1,8,32] [--ctx C] [--steps S] [--f32]");
  const char *dir = argv[1], *device = "cuda", *batches = "1", *check = NULL;
  int n = 1, ctx = 512, steps = 64, f32 = 0, threads = 0, group = 0, same_gpu = 0;
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
    if (!strcmp(a, "--shards")) n = atoi(v), i++;
    else if (!strcmp(a, "--device")) device = v, i++;
    else if (!strcmp(a, "--batch")) batches = v, i++;
    else if (!strcmp(a, "--ctx")) ctx = atoi(v), i++;
    else if (!strcmp(a, "--steps")) steps = atoi(v), i++;
    else if (!strcmp(a, "--threads")) threads = atoi(v), i++;
    else if (!strcmp(a, "--f32")) f32 = 1;
    else if (!strcmp(a, "--group")) group = 1;
    else if (!strcmp(a, "--same-gpu")) same_gpu = 1;
    else if (!strcmp(a, "--check")) check = v, i++;
    else DIE("unknown option %s", a);
  }
  int bmax = 0, bl[16], nb = 0;
  for (const char *p = batches; *p && nb < 16;) {
    bl[nb] = atoi(p);
    if (bl[nb] > bmax) bmax = bl[nb];
    nb++;
    p = strchr(p, ',');
    if (!p) break;
    p++;
  }
  if (n < 1 || ctx < 1 || steps < 1 || bmax < 1) DIE("bad arguments");
  int cuda = !strcmp(device, "cuda");
  char err[1024];
  ig_backend *bes[64] = {0};
  ig_model *m = NULL;
  double t0 = now();
  if (n == 1 && !group) {
#ifdef IG_HAVE_CUDA
    bes[0] = cuda ? ig_backend_cuda_create_ex(0, f32 ? IG_DT_F32 : IG_DT_BF16, err, sizeof err)
                  : ig_backend_cpu_create(threads, err, sizeof err);
#else
    bes[0] = cuda ? NULL : ig_backend_cpu_create(threads, err, sizeof err);
    if (cuda) snprintf(err, sizeof err, "built without CUDA");
#endif
    if (!bes[0]) DIE("%s", err);
    if (ig_model_load(dir, bes[0], &m, err, sizeof err)) DIE("%s", err);
  } else if (same_gpu) {
#ifdef IG_HAVE_CUDA
    for (int r = 0; r < n && r < 64; r++)
      if (!(bes[r] = ig_backend_cuda_create_ex(0, f32 ? IG_DT_F32 : IG_DT_BF16, err, sizeof err))) DIE("%s", err);
    if (ig_model_load_sharded(dir, bes, n, NULL, &m, err, sizeof err)) DIE("%s", err);
#else
    DIE("--same-gpu needs CUDA");
#endif
  } else {
    ig_model_tp_opts o = {.num_shard = n, .device = device, .threads = threads, .cuda_f32 = f32};
    if (ig_model_load_tp(dir, &o, &m, err, sizeof err)) DIE("%s", err);
  }
  double t_load = now() - t0;
  const ig_model_info *in = ig_model_get_info(m);
  int V = in->vocab_size, per_seq = (ctx + steps + BS - 1) / BS + 1;
  if (ig_model_kv_init(m, bmax * per_seq, BS, err, sizeof err)) DIE("%s", err);
  float *logits = malloc(sizeof(float) * (size_t)V * (size_t)bmax);
  int32_t *tok = malloc(sizeof(int32_t) * (size_t)ctx * 3), *pos = tok + ctx, *slot = pos + ctx;
  int32_t *bt = malloc(sizeof(int32_t) * (size_t)bmax * per_seq);
  int32_t *dtok = malloc(sizeof(int32_t) * ((size_t)bmax * 6 + 1));
  int32_t *dpos = dtok + bmax, *dslot = dpos + bmax, *dss = dslot + bmax, *dctx = dss + bmax + 1, *dout = dctx + bmax;
  float *rec = check ? malloc(sizeof(float) * (size_t)V * (size_t)(steps + 1)) : NULL; /* batch-1 logits rows */
  if (!logits || !tok || !bt || !dtok || (check && !rec)) DIE("out of memory");
  for (int i = 0; i < bmax * per_seq; i++) bt[i] = i;
  printf("tp_bench model=%s shards=%d device=%s%s load_s=%.2f params=%.2fB\n", in->arch, n, device,
         same_gpu ? " (same GPU)" : "", t_load, (double)in->n_params / 1e9);
  for (int bi = 0; bi < nb; bi++) {
    int B = bl[bi];
    /* prefill every sequence to ctx tokens, one sequence per step */
    double tp = now();
    for (int s = 0; s < B; s++) {
      const int32_t *tb = bt + (size_t)s * per_seq;
      for (int i = 0; i < ctx; i++) tok[i] = (int32_t)((i * 7919 + s * 104729 + 1) % V), pos[i] = i,
                                   slot[i] = tb[i / BS] * BS + i % BS;
      int32_t ss[2] = {0, ctx}, c = ctx, last = ctx - 1;
      ig_batch b = {ctx, tok, pos, slot, 1, ss, &c, per_seq, tb, 1, &last, NULL};
      if (ig_model_forward(m, &b, logits, err, sizeof err)) DIE("prefill: %s", err);
    }
    if (rec && B == 1) memcpy(rec, logits, sizeof(float) * (size_t)V);
    tp = now() - tp;
    /* decode: B tokens a step */
    double td = 0;
    for (int st = 0; st < steps; st++) {
      for (int s = 0; s < B; s++) {
        int p = ctx + st;
        dtok[s] = (int32_t)((p * 31 + s) % V), dpos[s] = p, dslot[s] = bt[(size_t)s * per_seq + p / BS] * BS + p % BS;
        dss[s] = s, dctx[s] = p + 1, dout[s] = s;
      }
      dss[B] = B;
      ig_batch b = {B, dtok, dpos, dslot, B, dss, dctx, per_seq, bt, B, dout, NULL};
      double t1 = now();
      if (ig_model_forward(m, &b, logits, err, sizeof err)) DIE("decode: %s", err);
      if (st >= 2) td += now() - t1; /* the first steps warm up */
      if (rec && B == 1) memcpy(rec + (size_t)(st + 1) * V, logits, sizeof(float) * (size_t)V);
    }
    int timed = steps > 2 ? steps - 2 : 1;
    printf("tp_bench shards=%d batch=%d ctx=%d steps=%d prefill_tok_s=%.0f decode_ms=%.3f tok_s=%.1f\n", n, B, ctx,
           steps, (double)B * ctx / tp, 1e3 * td / timed, (double)B * timed / td);
    fflush(stdout);
  }
  int rc = 0;
  if (rec) {
    size_t nf = (size_t)V * (size_t)(steps + 1);
    FILE *f = fopen(check, "rb");
    if (!f) {
      if (!(f = fopen(check, "wb")) || fwrite(rec, sizeof(float), nf, f) != nf) DIE("cannot write %s", check);
      printf("tp_bench check: wrote %zu logits rows to %s\n", (size_t)steps + 1, check);
    } else {
      float *ref = malloc(sizeof(float) * nf);
      if (!ref || fread(ref, sizeof(float), nf, f) != nf) DIE("%s: not %zu floats (same --steps and model?)", check, nf);
      double worst = 0;
      for (int r = 0; r <= steps; r++) {
        double num = 0, den = 0;
        for (int v = 0; v < V; v++) {
          double d = (double)rec[(size_t)r * V + v] - ref[(size_t)r * V + v];
          num += d * d, den += (double)ref[(size_t)r * V + v] * ref[(size_t)r * V + v];
        }
        double e = sqrt(num / (den > 0 ? den : 1e-30));
        if (e > worst) worst = e;
      }
      printf("tp_bench check: shards=%d worst rel L2 %.3e over %d rows vs %s (%s)\n", n, worst, steps + 1, check,
             worst <= 1e-2 ? "ok" : "FAIL");
      rc = worst <= 1e-2 ? 0 : 1;
      free(ref);
    }
    fclose(f);
    free(rec);
  }
  free(logits);
  free(tok);
  free(bt);
  free(dtok);
  ig_model_free(m);
  for (int r = 0; r < 64; r++)
    if (bes[r]) bes[r]->destroy(bes[r]);
  return rc;
}
