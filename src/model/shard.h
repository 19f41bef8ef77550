/* model/shard.h (private to src/model): tensor parallelism between model/llama.c, which loads and runs one shard,
 * and model/shard.c, which runs N shards, one thread each, behind the public ig_model API. Megatron-style split:
 * q/k/v and gate/up by output rows (heads, intermediate columns), o_proj and down_proj by input columns, one
 * all-reduce after attention and one after the MLP, lm_head by vocabulary rows, embeddings and norms whole. */
#ifndef IG_MODEL_SHARD_H
#define IG_MODEL_SHARD_H
#include "io/config.h"
#include "model/comm.h"
#include "model/model.h"

/* One shard's part of the model (rank 0 of 1, the whole model, when not sharded). */
typedef struct ig_tp {
  int rank, size;
  ig_comm *comm;   /* NULL when size == 1 */
  int nh, nkv;     /* query and key/value heads of this shard: heads [rank*nh, (rank+1)*nh) */
  int64_t i0, ni;  /* MLP intermediate columns [i0, i0 + ni) */
  int64_t v0, nv;  /* vocabulary rows of lm_head [v0, v0 + nv): logits come out as [n_out, nv] */
} ig_tp;

/* 0 when config `c` splits into n shards, else -1 with a message saying which shard counts would. */
int ig_tp_check(const ig_config *c, int n, char *err, size_t errlen);
/* The part of shard `rank` of `n` (n checked with ig_tp_check). */
void ig_tp_part(const ig_config *c, int rank, int n, ig_tp *tp);

/* model/llama.c: loads shard `rank` of `size` onto `be` (comm: NULL when size == 1). ig_model_load is rank 0 of 1. */
int ig_model_load_part(const char *dir, ig_backend *be, int rank, int size, ig_comm *comm, ig_model **out, char *err,
                       size_t errlen);
/* model/llama.c: a model whose every call goes to the shard group g (shard.c); info is the whole model's. */
typedef struct ig_shard_group ig_shard_group;
ig_model *ig_model_front_new(ig_shard_group *g, ig_backend *be0, const ig_model_info *info);

/* model/shard.c: what the front model's calls turn into. */
size_t ig_shard_kv_bytes_per_block(ig_shard_group *g, int block_size);
void ig_shard_set_kv_dtype(ig_shard_group *g, int kv_dtype);
int ig_shard_kv_init(ig_shard_group *g, int n_blocks, int block_size, char *err, size_t errlen);
int ig_shard_forward(ig_shard_group *g, const ig_batch *b, float *logits, char *err, size_t errlen);
void ig_shard_free(ig_shard_group *g);

#endif
