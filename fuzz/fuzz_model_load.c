/* fuzz/fuzz_model_load: a model directory whose model.safetensors is the input (after one selector byte) and whose
 * config.json is a tiny Llama (hidden 8, 1 layer, 2/1 heads of 4, intermediate 8, vocab 16), plain or with an FP8
 * quantization_config (selector & 3: none, compressed-tensors, fp8 with 2 x 2 blocks, fp8 without a block size;
 * selector & 4: the loader's host dequantization instead of the backend's weight_fp8).
 * ig_model_load on the CPU backend must load it or fail with a one-line message: shapes, dtypes, FP8 codes and their
 * scale tensors' layouts all come from the file. Seeds: fuzz/corpus/model_load (bench/fuzz_model_seeds.py). */
#include "backend/backend.h"
#include "model/model.h"
#include "util/log.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *cfg_base =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 8, \"intermediate_size\": 8, \"num_hidden_layers\": 1,"
    " \"num_attention_heads\": 2, \"num_key_value_heads\": 1, \"head_dim\": 4, \"vocab_size\": 16, "
    "\"max_position_embeddings\": 64, \"rms_norm_eps\": 1e-5, \"rope_theta\": 10000.0, \"tie_word_embeddings\": true, "
    "\"bos_token_id\": 1, \"eos_token_id\": 2%s}";
static const char *quant[4] = {
    "",
    ", \"quantization_config\": {\"quant_method\": \"compressed-tensors\", \"format\": \"float-quantized\"}",
    ", \"quantization_config\": {\"quant_method\": \"fp8\", \"weight_block_size\": [2, 2]}",
    ", \"quantization_config\": {\"quant_method\": \"fp8\"}"};

static char dir[64];
static ig_backend *be;

static void put(const char *name, const uint8_t *p, size_t n) {
  char path[128];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "wb");
  if (!f) abort();
  if (n && fwrite(p, 1, n, f) != n) abort();
  fclose(f);
}

static void cleanup(void) {
  char path[128];
  snprintf(path, sizeof path, "%s/config.json", dir), unlink(path);
  snprintf(path, sizeof path, "%s/model.safetensors", dir), unlink(path);
  rmdir(dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  if (!be) {
    char err[256];
    snprintf(dir, sizeof dir, "/tmp/fuzz_model_%d", (int)getpid());
    mkdir(dir, 0755);
    atexit(cleanup);
    if (!(be = ig_backend_cpu_create(1, err, sizeof err))) abort();
    ig_log_set_level(IG_LOG_ERROR); /* no progress lines */
  }
  char cfg[1024];
  snprintf(cfg, sizeof cfg, cfg_base, quant[data[0] & 3]);
  put("config.json", (const uint8_t *)cfg, strlen(cfg));
  put("model.safetensors", data + 1, size - 1);
  if (data[0] & 4) setenv("IGNIS_FP8_HOST", "1", 1); /* the loader's host dequantization, not the backend's */
  else unsetenv("IGNIS_FP8_HOST");
  ig_model *m = NULL;
  char err[512] = "";
  if (ig_model_load(dir, be, &m, err, sizeof err) == 0) ig_model_free(m);
  else if (!err[0] || strchr(err, '\n')) abort(); /* a failure says why, on one line */
  return 0;
}
