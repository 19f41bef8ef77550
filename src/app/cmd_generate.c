/* app/cmd_generate: `ignis generate`: load a model on the CPU backend, prefill the prompt in one step, then
 * decode token by token with the paged KV cache, streaming each token to stdout as it is produced (text
 * through the tokenizer when src/tok is built and the model has tokenizer.json, else ids). Greedy unless a
 * sampling flag is given; stops at EOS or after --max-new-tokens. Loading logs progress and the shape. */
#include "app/cmds.h"
#include "backend/backend.h"
#include "io/modeldir.h"
#include "model/model.h"
#include "util/file.h"
#include "util/log.h"
#ifdef IG_HAVE_TOK
#include "tok/tok.h"
#endif
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_MODEL "models/kjv-llama"
#define BLOCK 16

typedef struct {
  const char *model_id, *revision, *prompt, *prompt_ids, *device;
  int max_new, threads, top_k, sample, print_ids;
  int num_shard; /* tensor parallelism (model/shard.c): shards on the CPU */
  float temperature, top_p;
  uint64_t seed;
  int have_seed;
} gen_opts;

static void usage(FILE *f) {
  fprintf(f, "usage: ignis generate [--model-id DIR|org/name] [--revision REV] [--max-new-tokens N]\n"
             "                      [--temperature T] [--top-k K] [--top-p P] [--seed S] [--threads N]\n"
             "                      [--prompt-ids 1,2,3] [--ids] [--num-shard N] [--device cpu|cuda] [PROMPT]\n"
             "Streams the continuation of PROMPT to stdout (greedy unless a sampling flag is given).\n"
             "--model-id defaults to $MODEL_ID, then " DEFAULT_MODEL ". --threads defaults to all cores.\n"
             "--ids prints token ids instead of text.\n"
             "--num-shard N (or $NUM_SHARD) splits the model over N tensor-parallel shards, one thread each.\n"
             "--device (or $IGNIS_DEVICE): cuda when built with it and a GPU is present, else cpu.\n");
}

static int parse_num(const char *flag, const char *v, double lo, double hi, double *out) {
  char *end;
  errno = 0;
  double d = v ? strtod(v, &end) : 0;
  if (!v || errno || end == v || *end || !(d >= lo && d <= hi)) {
    fprintf(stderr, "ignis generate: %s needs a number in [%g, %g], got '%s'\n", flag, lo, hi, v ? v : "");
    return -1;
  }
  *out = d;
  return 0;
}

static int parse_args(int argc, char **argv, gen_opts *o) {
  memset(o, 0, sizeof *o);
  o->max_new = 64;
  o->temperature = 1.0f;
  o->top_p = 1.0f;
  o->num_shard = getenv("NUM_SHARD") && *getenv("NUM_SHARD") ? atoi(getenv("NUM_SHARD")) : 1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    double d = 0;
#define NUM(flag, lo, hi)                                                                                              \
  (!strcmp(a, flag) && (parse_num(flag, v, lo, hi, &d) ? -1 : (i++, 1)))
    int r;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      usage(stdout);
      return 1;
    } else if (!strcmp(a, "--device")) {
      if (!v || (strcmp(v, "cpu") && strcmp(v, "cuda"))) {
        fprintf(stderr, "ignis generate: --device needs cpu or cuda\n");
        return -1;
      }
      o->device = v;
      i++;
    } else if (!strcmp(a, "--model-id") || !strcmp(a, "--revision") || !strcmp(a, "--prompt-ids")) {
      if (!v) {
        fprintf(stderr, "ignis generate: %s needs a value\n", a);
        return -1;
      }
      *(!strcmp(a, "--model-id") ? &o->model_id : !strcmp(a, "--revision") ? &o->revision : &o->prompt_ids) = v;
      i++;
    } else if (!strcmp(a, "--ids")) {
      o->print_ids = 1;
    } else if ((r = NUM("--max-new-tokens", 0, 1e7))) {
      if (r < 0) return -1;
      o->max_new = (int)d;
    } else if ((r = NUM("--threads", 0, 1024))) {
      if (r < 0) return -1;
      o->threads = (int)d;
    } else if ((r = NUM("--num-shard", 1, 64))) {
      if (r < 0) return -1;
      o->num_shard = (int)d;
    } else if ((r = NUM("--temperature", 0, 100))) {
      if (r < 0) return -1;
      o->temperature = (float)d;
      o->sample = d > 0;
    } else if ((r = NUM("--top-k", 0, 1e9))) {
      if (r < 0) return -1;
      o->top_k = (int)d;
      o->sample |= o->top_k > 0;
    } else if ((r = NUM("--top-p", 0, 1))) {
      if (r < 0) return -1;
      o->top_p = (float)d;
      o->sample |= d < 1;
    } else if ((r = NUM("--seed", 0, 1.8e19))) {
      if (r < 0) return -1;
      o->seed = (uint64_t)d;
      o->have_seed = 1;
      o->sample = 1;
    } else if (a[0] == '-' && a[1]) {
      fprintf(stderr, "ignis generate: unknown option '%s' (see --help)\n", a);
      return -1;
    } else if (!o->prompt) {
      o->prompt = a;
    } else {
      fprintf(stderr, "ignis generate: more than one PROMPT (quote it)\n");
      return -1;
    }
#undef NUM
  }
  if (o->temperature == 0) o->sample = 0; /* temperature 0 means greedy */
  return 0;
}

/* ---------------------------------------------------------------------------------------------------- */
/* sampling: temperature, top-k, top-p over one row of logits (greedy when not sampling) */

static uint64_t rng_next(uint64_t *s) { /* splitmix64 */
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

typedef struct {
  float p;
  int id;
} cand;

static int cmp_cand(const void *a, const void *b) {
  float x = ((const cand *)a)->p, y = ((const cand *)b)->p;
  return x > y ? -1 : x < y ? 1 : ((const cand *)a)->id - ((const cand *)b)->id;
}

static int sample(const float *logits, int V, const gen_opts *o, uint64_t *rng, cand *c) {
  int best = 0;
  for (int i = 1; i < V; i++)
    if (logits[i] > logits[best]) best = i;
  if (!o->sample) return best;
  for (int i = 0; i < V; i++) c[i] = (cand){logits[i] / o->temperature, i};
  qsort(c, (size_t)V, sizeof *c, cmp_cand);
  int n = o->top_k > 0 && o->top_k < V ? o->top_k : V;
  double mx = c[0].p, sum = 0;
  for (int i = 0; i < n; i++) sum += (c[i].p = (float)exp(c[i].p - mx));
  if (o->top_p < 1) { /* smallest prefix whose mass reaches top_p */
    double cum = 0;
    int k = 0;
    while (k < n && cum < o->top_p * sum) cum += c[k++].p;
    n = k > 0 ? k : 1;
    sum = cum > 0 ? cum : c[0].p;
  }
  double u = (double)(rng_next(rng) >> 11) * (1.0 / 9007199254740992.0) * sum, acc = 0;
  for (int i = 0; i < n; i++)
    if ((acc += c[i].p) > u) return c[i].id;
  return c[n - 1].id;
}

/* ---------------------------------------------------------------------------------------------------- */

/* --device, else $IGNIS_DEVICE, else the GPU when this build has CUDA and one is present, else the CPU. */
static ig_backend *make_backend(const gen_opts *o, char *err, size_t errlen) {
  const char *dev = o->device ? o->device : getenv("IGNIS_DEVICE");
  if (dev && *dev && strcmp(dev, "cpu") && strcmp(dev, "cuda")) {
    snprintf(err, errlen, "IGNIS_DEVICE=%s: expected cpu or cuda", dev);
    return NULL;
  }
#ifdef IG_HAVE_CUDA
  if (!dev || !*dev) dev = ig_backend_cuda_device_count() > 0 ? "cuda" : "cpu";
  if (!strcmp(dev, "cuda")) return ig_backend_cuda_create(0, err, errlen);
#else
  if (dev && !strcmp(dev, "cuda")) {
    snprintf(err, errlen, "--device cuda: this build has no CUDA backend (build with nvcc present)");
    return NULL;
  }
#endif
  return ig_backend_cpu_create(o->threads, err, errlen);
}

static int parse_ids(const char *s, int32_t **ids, int *n) {
  int cap = 16;
  *ids = malloc(sizeof(int32_t) * (size_t)cap);
  *n = 0;
  while (*ids && *s) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || errno || v < 0 || v > INT32_MAX || (*end && *end != ',')) return -1;
    if (*n == cap) {
      int32_t *p = realloc(*ids, sizeof(int32_t) * (size_t)(cap *= 2));
      if (!p) return -1;
      *ids = p;
    }
    (*ids)[(*n)++] = (int32_t)v;
    s = *end ? end + 1 : end;
  }
  return *ids && *n > 0 ? 0 : -1;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int ig_cmd_generate(int argc, char **argv) {
  gen_opts o;
  int pr = parse_args(argc, argv, &o);
  if (pr) return pr > 0 ? 0 : 2;
  if (!o.model_id) o.model_id = getenv("MODEL_ID");
  if (!o.model_id) o.model_id = getenv("HF_MODEL_ID");
  if (!o.model_id) {
    if (!ig_dir_exists(DEFAULT_MODEL)) {
      fprintf(stderr, "ignis generate: no --model-id given and the default model (%s) is not here\n", DEFAULT_MODEL);
      return 2;
    }
    o.model_id = DEFAULT_MODEL;
  }
  if (!o.prompt && !o.prompt_ids) {
    fprintf(stderr, "ignis generate: give a PROMPT or --prompt-ids (see --help)\n");
    return 2;
  }
  char dir[4096], err[1024];
  if (ig_modeldir_resolve(o.model_id, o.revision, dir, sizeof dir, err, sizeof err)) {
    fprintf(stderr, "ignis generate: %s\n", err);
    return 1;
  }

  int rc = 1;
  int32_t *ids = NULL;
  int n_prompt = 0;
  ig_backend *be = NULL;
  ig_model *m = NULL;
  float *logits = NULL;
  cand *cands = NULL;
  int32_t *bt = NULL;
#ifdef IG_HAVE_TOK
  ig_tok *tok = NULL;
  ig_tok_detok dt = {0};
  ig_str piece;
  ig_str_init(&piece);
#endif
  /* prompt */
  if (o.prompt_ids) {
    if (parse_ids(o.prompt_ids, &ids, &n_prompt)) {
      fprintf(stderr, "ignis generate: --prompt-ids needs comma-separated token ids, e.g. 1,2,3\n");
      goto out;
    }
  }
#ifdef IG_HAVE_TOK
  char tpath[4200];
  snprintf(tpath, sizeof tpath, "%s/tokenizer.json", dir);
  if (ig_file_exists(tpath)) {
    if (ig_tok_load(&tok, dir, err, sizeof err)) {
      fprintf(stderr, "ignis generate: tokenizer: %s\n", err);
      goto out;
    }
    if (!o.prompt_ids) {
      ig_tok_enc enc = {0};
      if (ig_tok_encode(tok, o.prompt, strlen(o.prompt), 1, 0, &enc)) {
        fprintf(stderr, "ignis generate: out of memory tokenizing the prompt\n");
        goto out;
      }
      ids = enc.ids, n_prompt = (int)enc.n;
      enc.ids = NULL;
      ig_tok_enc_free(&enc);
    }
  } else {
    o.print_ids = 1;
  }
#else
  o.print_ids = 1;
#endif
  if (!ids || n_prompt == 0) {
    fprintf(stderr, "ignis generate: %s\n", o.prompt_ids ? "empty prompt"
                                                        : "this build has no tokenizer for the model: pass --prompt-ids");
    goto out;
  }

  /* model (--num-shard > 1: tensor-parallel shards that make and own their CPU backends) */
  double t0 = now_s();
  if (o.num_shard != 1) {
    ig_model_tp_opts to = {.num_shard = o.num_shard, .device = "cpu", .threads = o.threads};
    if (ig_model_load_tp(dir, &to, &m, err, sizeof err)) {
      fprintf(stderr, "ignis generate: %s\n", err);
      goto out;
    }
  } else if (!(be = make_backend(&o, err, sizeof err))) {
    fprintf(stderr, "ignis generate: %s\n", err);
    goto out;
  } else if (ig_model_load(dir, be, &m, err, sizeof err)) {
    fprintf(stderr, "ignis generate: %s\n", err);
    goto out;
  }
  const ig_model_info *in = ig_model_get_info(m);
  ig_log(IG_LOG_INFO, "loaded in %.2f s", now_s() - t0);
  for (int i = 0; i < n_prompt; i++)
    if (ids[i] >= in->vocab_size) {
      fprintf(stderr, "ignis generate: prompt token id %d is outside the vocabulary (%d)\n", ids[i], in->vocab_size);
      goto out;
    }
  int total = n_prompt + o.max_new, n_blocks = (total + BLOCK - 1) / BLOCK;
  if (total > in->max_position_embeddings)
    ig_log(IG_LOG_WARN, "prompt + max_new_tokens (%d) exceeds max_position_embeddings (%d)", total,
           in->max_position_embeddings);
  if (ig_model_kv_init(m, n_blocks, BLOCK, err, sizeof err)) {
    fprintf(stderr, "ignis generate: %s\n", err);
    goto out;
  }
  logits = malloc(sizeof(float) * (size_t)in->vocab_size);
  cands = malloc(sizeof(cand) * (size_t)in->vocab_size);
  bt = malloc(sizeof(int32_t) * (size_t)n_blocks);
  int32_t *pos = malloc(sizeof(int32_t) * (size_t)n_prompt * 2);
  if (!logits || !cands || !bt || !pos) {
    free(pos);
    fprintf(stderr, "ignis generate: out of memory\n");
    goto out;
  }
  for (int b = 0; b < n_blocks; b++) bt[b] = b; /* one sequence: blocks in order */
  int32_t *slot = pos + n_prompt;
  for (int i = 0; i < n_prompt; i++) pos[i] = slot[i] = i;
  uint64_t rng = o.have_seed ? o.seed : (uint64_t)time(NULL) ^ ((uint64_t)clock() << 32);

#ifdef IG_HAVE_TOK
  if (!o.print_ids) {
    ig_tok_detok_init(&dt, tok, 1);
    ig_tok_detok_prime(&dt, ids, (size_t)n_prompt);
  }
#endif
  /* prefill: the whole prompt in one step, logits of its last row */
  int32_t ss[2] = {0, n_prompt}, ctx = n_prompt, last = n_prompt - 1;
  ig_batch b = {n_prompt, ids, pos, slot, 1, ss, &ctx, n_blocks, bt, 1, &last};
  double tp = now_s();
  if (ig_model_forward(m, &b, logits, err, sizeof err)) {
    fprintf(stderr, "ignis generate: %s\n", err);
    free(pos);
    goto out;
  }
  free(pos);
  tp = now_s() - tp;
  /* decode */
  double td = now_s();
  int n_gen = 0, n_steps = 0;
  const char *why = "length";
  for (; n_gen < o.max_new; n_gen++) {
    int32_t next = sample(logits, in->vocab_size, &o, &rng, cands);
    int is_eos = 0;
    for (int e = 0; e < in->n_eos; e++) is_eos |= next == in->eos_ids[e];
    if (is_eos) {
      why = "eos";
      break;
    }
    if (o.print_ids) {
      printf("%s%d", n_gen ? " " : "", next);
    }
#ifdef IG_HAVE_TOK
    else {
      ig_str_clear(&piece);
      ig_tok_detok_push(&dt, next, &piece);
      if (piece.len) fwrite(piece.p, 1, piece.len, stdout);
    }
#endif
    fflush(stdout);
    if (n_gen + 1 == o.max_new) {
      n_gen++;
      break;
    }
    int32_t p = n_prompt + n_gen, s1[2] = {0, 1}, c1 = p + 1, zero = 0;
    ig_batch d = {1, &next, &p, &p, 1, s1, &c1, n_blocks, bt, 1, &zero};
    if (ig_model_forward(m, &d, logits, err, sizeof err)) {
      fprintf(stderr, "\nignis generate: %s\n", err);
      goto out;
    }
    n_steps++;
  }
#ifdef IG_HAVE_TOK
  if (!o.print_ids) {
    ig_str_clear(&piece);
    ig_tok_detok_flush(&dt, &piece);
    if (piece.len) fwrite(piece.p, 1, piece.len, stdout);
  }
#endif
  printf("\n");
  fflush(stdout);
  td = now_s() - td;
  ig_log(IG_LOG_INFO, "prompt %d tokens in %.3f s (%.1f tok/s); generated %d tokens (%s), decode %.1f tok/s",
         n_prompt, tp, n_prompt / (tp > 0 ? tp : 1e-9), n_gen, why, n_steps / (td > 0 ? td : 1e-9));
  rc = 0;
out:
#ifdef IG_HAVE_TOK
  if (!o.print_ids && tok) ig_tok_detok_free(&dt);
  ig_str_free(&piece);
  ig_tok_free(tok);
#endif
  free(ids);
  free(logits);
  free(cands);
  free(bt);
  ig_model_free(m);
  if (be) be->destroy(be);
  return rc;
}
