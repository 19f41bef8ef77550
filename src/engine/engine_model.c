/* engine/engine_model: ig_engine_create on a real model (src/model) and tokenizer (src/tok): the runner and
 * text tables of engine_int.h filled from them. The KV cache may take at most half of the memory available
 * when its size is derived (CPU backend; a GPU backend will size it from free device memory). */
#include "engine/engine_int.h"
#include "model/model.h"
#include "tok/tok.h"
#include "util/log.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static size_t run_kv_bytes(void *ctx, int block_size) { return ig_model_kv_bytes_per_block(ctx, block_size); }
static int run_kv_init(void *ctx, int n_blocks, int block_size, char *err, size_t errlen) {
  return ig_model_kv_init(ctx, n_blocks, block_size, err, errlen);
}
static int run_warmup(void *ctx, int max_rows, int max_total_tokens, int chunk, char *err, size_t errlen) {
  return ig_model_warmup(ctx, max_rows, max_total_tokens, chunk, 0, err, errlen);
}
static int run_forward(void *ctx, const ig_batch *b, float *logits, char *err, size_t errlen) {
  return ig_model_forward(ctx, b, logits, err, errlen);
}
static int run_forward_sample(void *ctx, const ig_batch *b, const ig_sample_row *rows, int n_rows, ig_sample_out *out,
                              const int32_t *host_rows, int n_host, float *host_logits, char *err, size_t errlen) {
  return ig_model_forward_sample(ctx, b, rows, n_rows, out, host_rows, n_host, host_logits, err, errlen);
}

static int run_forward_sample_begin(void *ctx, const ig_batch *b, const ig_sample_row *rows, int n_rows,
                                    ig_sample_out *out, const int32_t *host_rows, int n_host, float *host_logits,
                                    char *err, size_t errlen) {
  return ig_model_forward_sample_begin(ctx, b, rows, n_rows, out, host_rows, n_host, host_logits, err, errlen);
}
static int run_forward_sample_end(void *ctx, char *err, size_t errlen) {
  return ig_model_forward_sample_end(ctx, err, errlen);
}

/* Detokenizer as TGI streams it: primed with the last 5 prompt ids, special tokens skipped. */
static void *txt_new(void *ctx, const int32_t *prompt, int n_prompt) {
  ig_tok_detok *d = malloc(sizeof *d);
  if (!d) return NULL;
  ig_tok_detok_init(d, ctx, 1);
  int k = n_prompt < 5 ? n_prompt : 5;
  if (ig_tok_detok_prime(d, prompt + n_prompt - k, (size_t)k)) {
    ig_tok_detok_free(d);
    free(d);
    return NULL;
  }
  return d;
}
static int txt_push(void *ctx, void *d, int32_t id, ig_str *out) { return ig_tok_detok_push(d, id, out); }
static int txt_flush(void *ctx, void *d, ig_str *out) { return ig_tok_detok_flush(d, out); }
static void txt_free(void *ctx, void *d) {
  ig_tok_detok_free(d);
  free(d);
}
static int txt_special(void *ctx, int32_t id) { return ig_tok_is_special(ctx, id); }
static int txt_raw_piece(void *ctx, int32_t id, ig_str *out) { return ig_tok_raw_piece(ctx, id, out); }
ig_engine_text ig_engine_tok_text(struct ig_tok *tok) {
  ig_engine_text text = {tok, txt_new, txt_push, txt_flush, txt_free, txt_special, txt_raw_piece};
  return text;
}

static size_t mem_available(void) {
  FILE *f = fopen("/proc/meminfo", "r");
  size_t kb = 0;
  if (f) {
    char line[256];
    while (fgets(line, sizeof line, f))
      if (sscanf(line, "MemAvailable: %zu kB", &kb) == 1) break;
    fclose(f);
  }
  if (kb) return kb * 1024;
  long pages = sysconf(_SC_AVPHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
  return pages > 0 && psz > 0 ? (size_t)pages * (size_t)psz : 0;
}

/* Device memory kept back from the KV cache for one step's activations: the widest tensors of a
 * max_batch_prefill_tokens step (hidden, q/k/v, MLP gate/up/out in bf16 or f32), the logits rows, and
 * library workspaces; at least 512 MiB and 4% of the device. */
static size_t kv_reserve_bytes(const ig_model_info *mi, const ig_engine_config *cfg, size_t dev_total, int lp_rows) {
  size_t tokens = cfg->max_batch_prefill_tokens > 0 ? (size_t)cfg->max_batch_prefill_tokens : 4096;
  size_t width = (size_t)mi->hidden_size * 4 + (size_t)mi->n_heads * mi->head_dim * 2 +
                 (size_t)mi->n_kv_heads * mi->head_dim * 2 + (size_t)mi->intermediate_size * 3;
  size_t act = tokens * width * 4;
  size_t logits = ((size_t)(cfg->max_concurrent_requests > 0 ? cfg->max_concurrent_requests : 128) * 2 + (size_t)lp_rows) *
                  (size_t)mi->vocab_size * 4;
  size_t r = act + logits + ((size_t)256 << 20);
  size_t floor_ = dev_total / 25 > ((size_t)512 << 20) ? dev_total / 25 : ((size_t)512 << 20);
  return r > floor_ ? r : floor_;
}

ig_engine_runner ig_engine_model_runner(ig_model *model) {
  const ig_model_info *mi = ig_model_get_info(model);
  ig_backend *be = ig_model_backend(model);
  ig_engine_runner run;
  memset(&run, 0, sizeof run);
  run.ctx = model;
  run.vocab_size = mi->vocab_size;
  run.n_eos = mi->n_eos < IG_MAX_EOS ? mi->n_eos : IG_MAX_EOS;
  for (int i = 0; i < run.n_eos; i++) run.eos_ids[i] = mi->eos_ids[i];
  run.max_position = mi->max_position_embeddings;
  run.rope_recompute_len = mi->rope_switch_len;
  run.rope_by_len = mi->rope_by_len;
  run.kv_canon_rows = be ? be->kv_canon_rows : 0;
  run.kv_bytes_per_block = run_kv_bytes;
  run.kv_init = run_kv_init;
  run.warmup = run_warmup;
  run.forward = run_forward;
  return run;
}

int ig_engine_create(ig_model *model, struct ig_tok *tok, const ig_engine_config *cfg, ig_engine **out, char *err,
                     size_t errlen) {
  const ig_model_info *mi = ig_model_get_info(model);
  ig_engine_runner run = ig_engine_model_runner(model);
  run.kv_mem_limit = mem_available() / 2;
  ig_backend *be = ig_model_backend(model);
  size_t dev_free = 0, dev_total = 0;
  if (be && be->mem_info && be->mem_info(be, &dev_free, &dev_total) == 0 && dev_total > 0) {
    /* A device backend: the weights are loaded, so what is free now goes to the KV cache, less what the
     * process must leave to others ((1 - memory_fraction) of the device) and a reserve for activations,
     * logits and library workspaces (TGI sizes it the same way, after a warm-up). */
    float frac = cfg->memory_fraction > 0 && cfg->memory_fraction <= 1 ? cfg->memory_fraction : 1.0f;
    size_t keep_out = (size_t)((1.0 - frac) * (double)dev_total);
    /* a step's logits rows: one per running sequence, and up to lp_rows prompt rows whose logprobs are asked for */
    const int lp_rows = ig_engine_prompt_logprob_rows(cfg, mi->vocab_size, run.kv_canon_rows);
    size_t reserve = kv_reserve_bytes(mi, cfg, dev_total, lp_rows);
    run.kv_mem_limit = dev_free > keep_out + reserve ? dev_free - keep_out - reserve : 0;
    run.kv_fill = 1;
    if (!run.kv_mem_limit) {
      snprintf(err, errlen,
               "no device memory left for the KV cache (%zu MiB free, %zu MiB reserved for activations, "
               "--cuda-memory-fraction %.2f): lower --max-batch-prefill-tokens or raise --cuda-memory-fraction",
               dev_free >> 20, reserve >> 20, (double)frac);
      return -ENOMEM;
    }
    /* the activations of the widest usual step (a prompt chunk beside as many decode rows, up to a chunk's
     * worth; one logits row per running sequence, and the prompt logprob rows), out of that reserve now rather
     * than mid-run (growing the logits later would also drop every captured decode graph) */
    int chunk = cfg->max_batch_prefill_tokens > 0 ? cfg->max_batch_prefill_tokens : 4096;
    int seqs = cfg->max_concurrent_requests > 0 ? cfg->max_concurrent_requests : 128;
    if (seqs > chunk) seqs = chunk;
    char merr[200];
    if (ig_model_reserve(model, chunk + seqs, seqs + lp_rows, merr, sizeof merr)) {
      snprintf(err, errlen, "%s: lower --max-batch-prefill-tokens or --max-concurrent-requests, or raise "
               "--cuda-memory-fraction", merr);
      return -ENOMEM;
    }
  }
  /* a backend that samples on the device does it for every step (IGNIS_HOST_SAMPLING=1: on the host, to compare) */
  const char *hs = getenv("IGNIS_HOST_SAMPLING");
  if (ig_model_can_sample(model) && !(hs && *hs == '1')) run.forward_sample = run_forward_sample;
  /* and, when its results can stay in flight, the engine pipelines its steps (IGNIS_ENGINE_PIPELINE=0: serial) */
  const char *pl = getenv("IGNIS_ENGINE_PIPELINE");
  if (run.forward_sample && ig_model_sample_async(model) && !(pl && *pl == '0')) {
    run.forward_sample_begin = run_forward_sample_begin;
    run.forward_sample_end = run_forward_sample_end;
  }
  ig_engine_text text = ig_engine_tok_text(tok);
  /* a key's rotation depends on its sequence's length there, so a cached block fits only sequences of the same
   * length class: no prefix cache for such models */
  ig_engine_config c2 = *cfg;
  if (c2.prefix_caching && mi->rope_by_len) {
    c2.prefix_caching = 0;
    ig_log(IG_LOG_INFO, "engine: prefix caching off: this model's rotary frequencies depend on the sequence's length "
           "(dynamic rope scaling or longrope)");
  }
  return ig_engine_create_custom(&run, tok ? &text : NULL, &c2, out, err, errlen);
}
