/* model/model.h: a loaded model (Llama, Mistral, Qwen2, Qwen3 families) and its forward pass over one batch.
 * The forward is written once (model/llama.c) against backend.h; the engine calls it once per step. */
#ifndef IG_MODEL_H
#define IG_MODEL_H
#include "backend/backend.h"
#include <stddef.h>
#include <stdint.h>

#define IG_MAX_EOS 8

typedef struct ig_model_info {
  char arch[64];            /* e.g. "LlamaForCausalLM" */
  char model_type[32];      /* e.g. "llama" */
  char dtype[16];           /* checkpoint dtype: "float32", "bfloat16", "float16" */
  int vocab_size;
  int hidden_size, intermediate_size;
  int n_layers, n_heads, n_kv_heads, head_dim;
  int max_position_embeddings;
  int sliding_window;       /* 0 = none */
  int rope_by_len;          /* the rotary frequencies depend on the sequence's length (dynamic scaling, longrope) */
  int rope_switch_len;      /* longrope: original_max_position_embeddings (past it the long factors), else 0 */
  int bos_id;               /* -1 when none */
  int n_eos;
  int eos_ids[IG_MAX_EOS];
  int64_t n_params;
  size_t weight_bytes;      /* bytes of weights as stored in the checkpoint */
} ig_model_info;

typedef struct ig_model ig_model;

/* Loads config.json (+ generation_config.json) and the safetensors weights of `dir` onto `be`.
 * Prints a progress line while loading. On error returns negative with a one-line message in err. */
int ig_model_load(const char *dir, ig_backend *be, ig_model **out, char *err, size_t errlen);
void ig_model_free(ig_model *m);

/* Tensor parallelism (model/shard.c): the model split Megatron-style over n backends, one shard each (its share
 * of the attention heads, KV heads, MLP columns and vocabulary rows, and of the KV cache), one thread per shard
 * and two all-reduces per layer through `comm` (model/comm.h; NULL: a loopback communicator in host memory, made
 * and owned by the model). Every other ig_model_* call works unchanged on the result. The attention and
 * key/value head counts must both be divisible by n (else a clear error). backends[] and comm stay owned by the
 * caller and must outlive the model. */
struct ig_comm;
int ig_model_load_sharded(const char *dir, ig_backend *const *backends, int n, struct ig_comm *comm, ig_model **out,
                          char *err, size_t errlen);

/* The same with backends and communicator made (and owned) by the model: what `--num-shard N` runs. */
typedef struct ig_model_tp_opts {
  int num_shard;          /* N >= 1 */
  const char *device;     /* "cpu" (NULL too) or "cuda" (devices first_device .. first_device+N-1, NCCL) */
  int threads;            /* cpu: compute threads in all, split between the shards (0: all cores) */
  int cuda_f32;           /* cuda: f32 weights and activations instead of bf16 */
  int first_device;
} ig_model_tp_opts;
int ig_model_load_tp(const char *dir, const ig_model_tp_opts *opts, ig_model **out, char *err, size_t errlen);
const ig_model_info *ig_model_get_info(const ig_model *m);
ig_backend *ig_model_backend(const ig_model *m);

/* KV cache: bytes one block of `block_size` tokens takes (all layers, K and V), and allocation. */
size_t ig_model_kv_bytes_per_block(ig_model *m, int block_size);
int ig_model_kv_init(ig_model *m, int n_blocks, int block_size, char *err, size_t errlen);
/* How the KV cache holds K and V (ig_kv_dtype; IG_KV_AUTO, the default: the backend's compute dtype). Call before
 * ig_model_kv_bytes_per_block and ig_model_kv_init (every shard of a sharded model gets it); a backend that cannot
 * hold the format gives 0 bytes per block and fails kv_init. */
void ig_model_set_kv_dtype(ig_model *m, int kv_dtype);

/* Sizes the per-step activations for steps of up to n_tokens rows and n_out logits rows now, so that serving does
 * not allocate them mid-run (device memory then stays flat from the start, and a device too small for the
 * largest step fails here, at startup). Later wider steps still grow them. Sharded models: no-op. */
int ig_model_reserve(ig_model *m, int n_tokens, int n_out, char *err, size_t errlen);

/* Runs one step: writes the batch's K/V into the cache and returns f32 logits for the batch's out_rows:
 * logits[j * vocab_size + v] for j < b->n_out. */
int ig_model_forward(ig_model *m, const ig_batch *b, float *logits, char *err, size_t errlen);

/* Whether ig_model_forward_sample can run here (a backend with the sample op; not sharded). */
int ig_model_can_sample(const ig_model *m);
/* One step with the logits kept on the backend: rows[i].row (an index j < b->n_out into out_rows) are sampled
 * there into out[i]; only the out_rows listed in host_rows[0..n_host) are downloaded, as
 * host_logits[k * vocab_size + v]. Decode-only batches run as CUDA graphs when enabled (ig_model_set_graphs). */
int ig_model_forward_sample(ig_model *m, const ig_batch *b, const ig_sample_row *rows, int n_rows, ig_sample_out *out,
                            const int32_t *host_rows, int n_host, float *host_logits, char *err, size_t errlen);
/* The same step in two halves, so the caller can work while the device runs it: _begin launches it and may
 * return before out[] is filled (the batch, rows and their tokens are read before it returns; host_rows and
 * host_logits are complete when it returns, downloads being synchronous); _end waits and fills out[], which must
 * stay valid until then. Call _end after every _begin that returned 0 (a failed _begin leaves nothing pending).
 * Where the step cannot stay in flight (a backend without sample_wait; batches split for dynamic rope
 * scaling) _begin does it all and _end returns at once. ig_model_sample_async: whether it can stay in flight. */
int ig_model_forward_sample_begin(ig_model *m, const ig_batch *b, const ig_sample_row *rows, int n_rows,
                                  ig_sample_out *out, const int32_t *host_rows, int n_host, float *host_logits,
                                  char *err, size_t errlen);
int ig_model_forward_sample_end(ig_model *m, char *err, size_t errlen);
int ig_model_sample_async(const ig_model *m);
/* Decode-step graphs (TGI's --cuda-graphs): batches of only one-token sequences are padded up to the smallest
 * of sizes[0..n) that holds them and replayed as a captured graph per (size, block-table width). n = 0 turns
 * them off (the default). Call before ig_model_kv_init to have them (padding rows need a block of their own, which
 * kv_init then adds); afterwards the sizes may change, or n = 0 turn them off. A backend without graph ops pads
 * all the same (tests check the padding on the CPU). */
void ig_model_set_graphs(ig_model *m, const int *sizes, int n);
/* Steps that ran padded to a graph bucket so far (replayed, captured or, without graph ops, padded alone). */
long long ig_model_graph_steps(const ig_model *m);

/* Warm-up, as TGI does before it reports ready: runs the steps whose first occurrence costs more than the later ones
 * (the backend's plans for their row counts, checks of its kernels, decode-graph captures) on dummy rows that read
 * and write only the padding block, so the first requests do not pay for them. Needs the KV cache (kv_init) with
 * decode graphs on. Runs: one prompt chunk of `chunk` tokens (at most max_ctx), then for each graph size up to
 * max_rows and each block-table width up to the one of max_ctx tokens (powers of two) the two steps that capture
 * its graph. Results of later steps are unchanged (the padding block is never a real sequence's). Returns the number
 * of steps run (0 without graphs, or when the backend has no graph ops unless `force`), or -1 with err set. */
int ig_model_warmup(ig_model *m, int max_rows, int max_ctx, int chunk, int force, char *err, size_t errlen);

#endif
