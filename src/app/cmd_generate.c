/* app/cmd_generate: `ignis generate`: one request through the engine (src/engine), as the server runs it:
 * the same tokenization (the tokenizer's post-processor adds BOS as for /generate), the same sampler (TGI's
 * logits processors with a seeded per-request RNG), stop sequences and incremental detokenizer, so a seeded
 * run prints exactly what /generate answers for the same prompt and parameters. Text (or ids with --ids) is
 * streamed to stdout as the engine releases it; the main thread sleeps on a condition variable that the
 * engine's wake callback signals. Greedy unless a sampling flag is given. Loading logs progress. */
#include "app/cmds.h"
#include "backend/backend.h"
#include "io/modeldir.h"
#include "model/model.h"
#include "util/file.h"
#include "util/log.h"
#if defined(IG_HAVE_TOK) && defined(IG_HAVE_ENGINE)
#include "engine/engine.h"
#include "tok/tok.h"
#define IG_GEN_ENGINE 1
#endif
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_MODEL "models/kjv-llama"
#define BLOCK 16

typedef struct {
  const char *model_id, *revision, *prompt, *prompt_ids, *device;
  int max_new, threads, top_k, print_ids, do_sample, ignore_eos;
  int num_shard; /* tensor parallelism (model/shard.c): shards on the CPU */
  int kv_dtype;  /* --kv-cache-dtype (ig_kv_dtype) */
  float temperature, top_p, typical_p, repetition_penalty, frequency_penalty;
  uint64_t seed;
  int have_seed;
  int n_stop;
  const char **stop; /* points into argv */
} gen_opts;

static void usage(FILE *f) {
  fprintf(f, "usage: ignis generate [--model-id DIR|org/name] [--revision REV] [--max-new-tokens N]\n"
             "                      [--temperature T] [--top-k K] [--top-p P] [--typical-p P] [--seed S]\n"
             "                      [--do-sample] [--repetition-penalty R] [--frequency-penalty F]\n"
             "                      [--stop STR]... [--ignore-eos] [--threads N] [--prompt-ids 1,2,3] [--ids]\n"
             "                      [--num-shard N] [--device cpu|cuda] [--kv-cache-dtype fp8_e4m3fn|fp8_e5m2]\n"
             "                      [PROMPT]\n"
             "Streams the continuation of PROMPT to stdout through the engine, as `ignis serve`'s /generate\n"
             "computes it: same tokenization, sampler and stop rules (a seeded run gives the server's text).\n"
             "Greedy unless sampling is asked for: --do-sample, or a warper as TGI counts them\n"
             "(--temperature != 1, --top-k > 0, --top-p < 1, --typical-p < 1); --temperature 0 is greedy.\n"
             "--stop STR (repeatable) ends at the first occurrence of STR (not printed); --ignore-eos goes on\n"
             "past EOS. --model-id defaults to $MODEL_ID, then " DEFAULT_MODEL ". --threads defaults to all cores.\n"
             "--ids prints token ids instead of text.\n"
             "--num-shard N (or $NUM_SHARD) splits the model over N tensor-parallel shards, one thread each.\n"
             "--device (or $IGNIS_DEVICE): cuda when built with it and a GPU is present, else cpu.\n"
             "--kv-cache-dtype (or $KV_CACHE_DTYPE) keeps the KV cache in that FP8 format, as ignis serve does.\n");
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
  o->typical_p = 1.0f;
  o->repetition_penalty = 1.0f;
  o->num_shard = getenv("NUM_SHARD") && *getenv("NUM_SHARD") ? atoi(getenv("NUM_SHARD")) : 1;
  const char *kvd = getenv("KV_CACHE_DTYPE");
  if (kvd && *kvd) {
    o->kv_dtype = ig_kv_dtype_parse(kvd);
    if (o->kv_dtype < 0) {
      fprintf(stderr, "ignis generate: invalid value '%s' for KV_CACHE_DTYPE: expected fp8_e4m3fn or fp8_e5m2\n", kvd);
      return -1;
    }
  }
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    double d = 0;
#define NUM(flag, lo, hi)                                                                                              \
  (strcmp(a, flag) ? 0 : parse_num(flag, v, lo, hi, &d) ? -1 : (i++, 1))
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
    } else if (!strcmp(a, "--kv-cache-dtype")) {
      if ((o->kv_dtype = ig_kv_dtype_parse(v)) < 0) {
        fprintf(stderr, "ignis generate: invalid value '%s' for --kv-cache-dtype: expected fp8_e4m3fn or fp8_e5m2\n",
                v ? v : "");
        return -1;
      }
      i++;
    } else if (!strcmp(a, "--model-id") || !strcmp(a, "--revision") || !strcmp(a, "--prompt-ids")) {
      if (!v) {
        fprintf(stderr, "ignis generate: %s needs a value\n", a);
        return -1;
      }
      *(!strcmp(a, "--model-id") ? &o->model_id : !strcmp(a, "--revision") ? &o->revision : &o->prompt_ids) = v;
      i++;
    } else if (!strcmp(a, "--stop")) {
      if (!v || !*v) {
        fprintf(stderr, "ignis generate: --stop needs a non-empty string\n");
        return -1;
      }
      const char **p = realloc(o->stop, sizeof *p * (size_t)(o->n_stop + 1));
      if (!p) {
        fprintf(stderr, "ignis generate: out of memory\n");
        return -1;
      }
      o->stop = p;
      o->stop[o->n_stop++] = v;
      i++;
    } else if (!strcmp(a, "--ids")) {
      o->print_ids = 1;
    } else if (!strcmp(a, "--ignore-eos")) {
      o->ignore_eos = 1;
    } else if (!strcmp(a, "--do-sample")) {
      o->do_sample = 1;
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
    } else if ((r = NUM("--top-k", 0, 1e9))) {
      if (r < 0) return -1;
      o->top_k = (int)d;
    } else if ((r = NUM("--top-p", 0, 1))) {
      if (r < 0) return -1;
      o->top_p = (float)d;
    } else if ((r = NUM("--typical-p", 1e-6, 1))) {
      if (r < 0) return -1;
      o->typical_p = (float)d;
    } else if ((r = NUM("--repetition-penalty", 1e-6, 100))) {
      if (r < 0) return -1;
      o->repetition_penalty = (float)d;
    } else if ((r = NUM("--frequency-penalty", -2, 2))) {
      if (r < 0) return -1;
      o->frequency_penalty = (float)d;
    } else if (!strcmp(a, "--seed")) {
      char *end = NULL;
      errno = 0;
      unsigned long long s = v && *v >= '0' && *v <= '9' ? strtoull(v, &end, 10) : 0;
      if (!end || *end || errno) {
        fprintf(stderr, "ignis generate: --seed needs an integer in [0, 2^64), got '%s'\n", v ? v : "");
        return -1;
      }
      i++;
      o->seed = (uint64_t)s;
      o->have_seed = 1;
      /* as in TGI, a seed alone does not turn sampling on (--do-sample or a warper does) */
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
  return 0;
}


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

#ifdef IG_GEN_ENGINE
/* The engine's wake callback (engine thread) signals the main thread, which sleeps until events arrive. */
typedef struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int pending;
} waiter;

static void wake_cb(void *arg) {
  waiter *w = arg;
  pthread_mutex_lock(&w->mu);
  w->pending = 1;
  pthread_cond_signal(&w->cv);
  pthread_mutex_unlock(&w->mu);
}

static uint64_t random_seed(void) {
  uint64_t s = 0;
  FILE *f = fopen("/dev/urandom", "rb");
  if (!f || fread(&s, sizeof s, 1, f) != 1) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    s = (uint64_t)ts.tv_sec * 1000000007ull ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
  }
  if (f) fclose(f);
  return s & INT64_MAX; /* the server's seeds are in [0, 2^63) */
}
#endif

int ig_cmd_generate(int argc, char **argv) {
  gen_opts o;
  int pr = parse_args(argc, argv, &o);
  if (pr) {
    free(o.stop);
    return pr > 0 ? 0 : 2;
  }
  if (!o.model_id) o.model_id = getenv("MODEL_ID");
  if (!o.model_id) o.model_id = getenv("HF_MODEL_ID");
  if (!o.model_id) {
    if (!ig_dir_exists(DEFAULT_MODEL)) {
      fprintf(stderr, "ignis generate: no --model-id given and the default model (%s) is not here\n", DEFAULT_MODEL);
      free(o.stop);
      return 2;
    }
    o.model_id = DEFAULT_MODEL;
  }
  if (!o.prompt && !o.prompt_ids) {
    fprintf(stderr, "ignis generate: give a PROMPT or --prompt-ids (see --help)\n");
    free(o.stop);
    return 2;
  }
  char dir[4096], err[1024];
  if (ig_modeldir_resolve(o.model_id, o.revision, dir, sizeof dir, err, sizeof err)) {
    fprintf(stderr, "ignis generate: %s\n", err);
    free(o.stop);
    return 1;
  }
#ifndef IG_GEN_ENGINE
  (void)make_backend;
  (void)parse_ids;
  (void)now_s;
  fprintf(stderr, "ignis generate: this build has no engine or tokenizer module (build all modules)\n");
  free(o.stop);
  return 1;
#else
  int rc = 1;
  int32_t *ids = NULL;
  int n_prompt = 0;
  ig_backend *be = NULL;
  ig_model *m = NULL;
  ig_tok *tok = NULL;
  ig_engine *eng = NULL;
  ig_request *req = NULL;
  waiter w = {.pending = 0};
  pthread_mutex_init(&w.mu, NULL);
  pthread_cond_init(&w.cv, NULL);
  /* prompt: ids as given, or the text through the tokenizer with its special tokens (BOS), as /generate */
  if (o.prompt_ids) {
    if (parse_ids(o.prompt_ids, &ids, &n_prompt)) {
      fprintf(stderr, "ignis generate: --prompt-ids needs comma-separated token ids, e.g. 1,2,3\n");
      goto out;
    }
  }
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
        ig_tok_enc_free(&enc);
        fprintf(stderr, "ignis generate: out of memory tokenizing the prompt\n");
        goto out;
      }
      ids = enc.ids, n_prompt = (int)enc.n;
      enc.ids = NULL;
      ig_tok_enc_free(&enc);
    }
  } else {
    o.print_ids = 1;
    if (o.n_stop) {
      fprintf(stderr, "ignis generate: --stop needs the model's tokenizer.json (not in %s)\n", dir);
      goto out;
    }
  }
  if (!ids || n_prompt == 0) {
    fprintf(stderr, "ignis generate: %s\n", o.prompt_ids || tok ? "empty prompt"
                                                                 : "the model has no tokenizer.json: pass --prompt-ids");
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
  ig_model_set_kv_dtype(m, o.kv_dtype);
  if (be && !strcmp(be->name, "cuda")) { /* one request: batch-1 decode steps as a CUDA graph */
    int one = 1;
    ig_model_set_graphs(m, &one, 1);
  }
  const ig_model_info *in = ig_model_get_info(m);
  ig_log(IG_LOG_INFO, "loaded in %.2f s", now_s() - t0);
  for (int i = 0; i < n_prompt; i++)
    if (ids[i] >= in->vocab_size) {
      fprintf(stderr, "ignis generate: prompt token id %d is outside the vocabulary (%d)\n", ids[i], in->vocab_size);
      goto out;
    }
  int max_pos = in->max_position_embeddings;
  if (max_pos > 0 && n_prompt >= max_pos) {
    fprintf(stderr, "ignis generate: the prompt (%d tokens) leaves no room under max_position_embeddings (%d)\n",
            n_prompt, max_pos);
    goto out;
  }
  if (max_pos > 0 && n_prompt + o.max_new > max_pos) {
    ig_log(IG_LOG_WARN, "prompt + max_new_tokens (%d) exceeds max_position_embeddings (%d): at most %d new tokens",
           n_prompt + o.max_new, max_pos, max_pos - n_prompt);
    o.max_new = max_pos - n_prompt;
  }
  if (o.max_new == 0) { /* nothing to generate */
    printf("\n");
    fflush(stdout);
    ig_log(IG_LOG_INFO, "prompt %d tokens; generated 0 tokens", n_prompt);
    rc = 0;
    goto out;
  }

  /* the engine, sized for this one request: the prompt in one prefill chunk, KV for prompt + new tokens */
  int total = n_prompt + o.max_new;
  ig_engine_config ec;
  memset(&ec, 0, sizeof ec);
  ec.block_size = BLOCK;
  ec.max_batch_prefill_tokens = n_prompt;
  ec.max_total_tokens = total;
  ec.max_batch_total_tokens = (total + BLOCK - 1) / BLOCK * BLOCK;
  ec.max_concurrent_requests = 1;
  ec.max_waiting_tokens = 20;
  ec.waiting_served_ratio = 0.3f;
  ec.memory_fraction = 1.0f;
  if (ig_engine_create(m, tok, &ec, &eng, err, sizeof err)) {
    if (o.kv_dtype) fprintf(stderr, "ignis generate: engine: %s (with --kv-cache-dtype %s)\n", err, ig_kv_dtype_name(o.kv_dtype));
    else fprintf(stderr, "ignis generate: engine: %s\n", err);
    goto out;
  }

  /* the request, with the parameters as the server's /generate fills them */
  if (!(req = ig_request_new())) {
    fprintf(stderr, "ignis generate: out of memory\n");
    goto out;
  }
  req->id = 1;
  req->prompt = ids, req->n_prompt = n_prompt;
  ids = NULL; /* owned by the request */
  ig_gen_params *g = &req->params;
  g->max_new_tokens = o.max_new;
  g->temperature = o.temperature;
  g->top_k = o.top_k;
  g->top_p = o.top_p;
  g->typical_p = o.typical_p;
  g->repetition_penalty = o.repetition_penalty;
  g->frequency_penalty = o.frequency_penalty;
  g->ignore_eos = o.ignore_eos;
  /* TGI's NextTokenChooser samples when asked or when any warper is active; temperature 0 is greedy */
  g->do_sample = o.do_sample || o.temperature != 1.0f || o.top_k > 0 || o.top_p < 1.0f || o.typical_p < 1.0f;
  if (o.temperature == 0) g->do_sample = 0, g->temperature = 1.0f;
  g->seed = o.have_seed ? o.seed : random_seed();
  if (o.n_stop) {
    if (!(g->stop = calloc((size_t)o.n_stop, sizeof *g->stop))) {
      fprintf(stderr, "ignis generate: out of memory\n");
      goto out;
    }
    g->n_stop = o.n_stop;
    for (int k = 0; k < o.n_stop; k++)
      if (!(g->stop[k] = strdup(o.stop[k]))) {
        fprintf(stderr, "ignis generate: out of memory\n");
        goto out;
      }
  }
  req->wake = wake_cb;
  req->wake_arg = &w;
  if (ig_engine_submit(eng, req, err, sizeof err)) {
    fprintf(stderr, "ignis generate: %s\n", err);
    goto out;
  }

  /* stream the events as they come; the last one has finish != NONE */
  ig_token_event evs[64];
  int n_gen = 0, done = 0, failed = 0;
  ig_finish_reason why = IG_FINISH_NONE;
  while (!done) {
    pthread_mutex_lock(&w.mu);
    while (!w.pending) pthread_cond_wait(&w.cv, &w.mu);
    w.pending = 0;
    pthread_mutex_unlock(&w.mu);
    int n;
    while ((n = ig_request_take_events(req, evs, 64)) > 0) {
      for (int k = 0; k < n; k++) {
        ig_token_event *ev = &evs[k];
        int eos_token = ev->finish == IG_FINISH_EOS; /* EOS itself is not printed, as before */
        if (ev->id >= 0 && !eos_token) n_gen++;
        if (o.print_ids) {
          if (ev->id >= 0 && !eos_token) printf("%s%d", n_gen > 1 ? " " : "", ev->id);
        } else if (ev->text && *ev->text) {
          fputs(ev->text, stdout); /* released text; a special token's own text is never included */
        }
        if (ev->finish != IG_FINISH_NONE) {
          done = 1;
          why = ev->finish;
          failed = why == IG_FINISH_ERROR || why == IG_FINISH_CANCELLED;
        }
        ig_token_event_clear(ev);
      }
      fflush(stdout);
    }
  }
  printf("\n");
  fflush(stdout);
  if (failed) {
    pthread_mutex_lock(&req->mu);
    fprintf(stderr, "ignis generate: %s\n", req->error[0] ? req->error : ig_finish_reason_name(why));
    pthread_mutex_unlock(&req->mu);
    goto out;
  }
  /* timings from the request: prefill = scheduled .. first token, decode = the tokens after it */
  pthread_mutex_lock(&req->mu);
  double tp = (double)(req->t_first_token - req->t_first_scheduled) * 1e-9;
  double td = (double)(req->t_done - req->t_first_token) * 1e-9;
  int n_steps = req->n_generated > 1 ? req->n_generated - 1 : 0;
  pthread_mutex_unlock(&req->mu);
  ig_log(IG_LOG_INFO, "prompt %d tokens in %.3f s (%.1f tok/s); generated %d tokens (%s), decode %.1f tok/s",
         n_prompt, tp, n_prompt / (tp > 0 ? tp : 1e-9), n_gen, ig_finish_reason_name(why),
         n_steps / (td > 0 ? td : 1e-9));
  rc = 0;
out:
  if (eng) ig_engine_destroy(eng, 0);
  if (req) ig_request_unref(req);
  pthread_cond_destroy(&w.cv);
  pthread_mutex_destroy(&w.mu);
  ig_tok_free(tok);
  free(ids);
  free(o.stop);
  ig_model_free(m);
  if (be) be->destroy(be);
  return rc;
#endif
}
