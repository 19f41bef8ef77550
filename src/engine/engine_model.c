/* engine/engine_model: ig_engine_create on a real model (src/model) and tokenizer (src/tok): the runner and
 * text tables of engine_int.h filled from them. The KV cache may take at most half of the memory available
 * when its size is derived (CPU backend; a GPU backend will size it from free device memory). */
#include "engine/engine_int.h"
#include "model/model.h"
#include "tok/tok.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static size_t run_kv_bytes(void *ctx, int block_size) { return ig_model_kv_bytes_per_block(ctx, block_size); }
static int run_kv_init(void *ctx, int n_blocks, int block_size, char *err, size_t errlen) {
  return ig_model_kv_init(ctx, n_blocks, block_size, err, errlen);
}
static int run_forward(void *ctx, const ig_batch *b, float *logits, char *err, size_t errlen) {
  return ig_model_forward(ctx, b, logits, err, errlen);
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

int ig_engine_create(ig_model *model, struct ig_tok *tok, const ig_engine_config *cfg, ig_engine **out, char *err,
                     size_t errlen) {
  const ig_model_info *mi = ig_model_get_info(model);
  ig_engine_runner run;
  memset(&run, 0, sizeof run);
  run.ctx = model;
  run.vocab_size = mi->vocab_size;
  run.n_eos = mi->n_eos < IG_MAX_EOS ? mi->n_eos : IG_MAX_EOS;
  for (int i = 0; i < run.n_eos; i++) run.eos_ids[i] = mi->eos_ids[i];
  run.max_position = mi->max_position_embeddings;
  run.kv_mem_limit = mem_available() / 2;
  run.kv_bytes_per_block = run_kv_bytes;
  run.kv_init = run_kv_init;
  run.forward = run_forward;
  ig_engine_text text = {tok, txt_new, txt_push, txt_flush, txt_free, txt_special};
  return ig_engine_create_custom(&run, tok ? &text : NULL, cfg, out, err, errlen);
}
