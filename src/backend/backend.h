/* backend/backend.h: the op interface between the model (src/model) and a compute backend (cpu/, cuda/).
 * A backend is a table of functions over tensors that live in its own memory (host memory for the CPU,
 * device memory for CUDA). The model's forward pass is written once as a sequence of these ops; a backend
 * knows nothing of models, and the engine knows nothing of how a backend computes.
 *
 * Conventions
 *  - Tensors are 2-D, row-major, contiguous: [rows, cols]. A vector is [1, n]. Activations are
 *    [n_tokens, width]; a [n, heads*head_dim] tensor is viewed as heads by the ops that need it.
 *  - Activation dtype is the backend's choice (`act_dtype`: F32 on the CPU, BF16 on CUDA); weights keep their
 *    checkpoint dtype on the CPU (read straight from the mmap) and are converted to bf16 on CUDA (f16 kept).
 *  - Every per-step piece of batch metadata (token ids, positions, sequence boundaries, KV slots, block
 *    tables, which rows need logits) is handed over once per step with set_batch(); later ops read it from
 *    there. This keeps op signatures small and lets the CUDA backend keep metadata in fixed device buffers
 *    (needed for CUDA graphs).
 *  - Ops are asynchronous on CUDA (one stream, in order); download() and sync() wait.
 *  - Batch invariance: an op's result for one row (token) must not depend on which other rows are in the
 *    batch, so that a request's output is the same whatever else runs beside it.
 * Return values: 0 ok, negative on error with a message in the backend's errbuf (ig_backend_error()). */
#ifndef IG_BACKEND_H
#define IG_BACKEND_H
#include <stddef.h>
#include <stdint.h>

typedef enum { IG_DT_F32 = 0, IG_DT_F16 = 1, IG_DT_BF16 = 2, IG_DT_I32 = 3 } ig_dtype;
size_t ig_dtype_size(ig_dtype t);
const char *ig_dtype_name(ig_dtype t);

typedef struct ig_tensor {
  void *data;     /* backend memory (host pointer on the CPU, device pointer on CUDA) */
  ig_dtype dtype;
  int64_t rows, cols;
  int owned;      /* 1 when the backend allocated it (free() releases it); 0 for a view (e.g. mmap'd weight) */
} ig_tensor;

static inline int64_t ig_tensor_numel(const ig_tensor *t) { return t->rows * t->cols; }

/* One step's batch, as the engine builds it. All arrays are host memory, valid until forward returns.
 * Tokens of one sequence are contiguous: sequence s owns rows [seq_start[s], seq_start[s+1]). Its rows are
 * the next q_len = seq_start[s+1]-seq_start[s] tokens of the sequence, at positions
 * ctx_len[s]-q_len .. ctx_len[s]-1 (so earlier positions are already in the KV cache). */
typedef struct ig_batch {
  int n_tokens;
  const int32_t *tokens;      /* [n_tokens] token ids */
  const int32_t *pos;         /* [n_tokens] absolute positions */
  const int32_t *slot;        /* [n_tokens] KV slot of each token: block_id * block_size + offset */
  int n_seqs;
  const int32_t *seq_start;   /* [n_seqs + 1] */
  const int32_t *ctx_len;     /* [n_seqs] context length after this step (cached + new) */
  int max_blocks;             /* row length of block_table */
  const int32_t *block_table; /* [n_seqs * max_blocks] physical block ids of each sequence, in order */
  int n_out;
  const int32_t *out_rows;    /* [n_out] rows (indices into tokens) whose logits are wanted, ascending */
  /* [n_seqs] or NULL (then ctx_len): the length by which a sequence's rows pick rotary frequencies where they
   * depend on it (dynamic scaling, longrope). transformers runs a whole prompt in one forward, so the engine passes
   * everything the sequence holds (a prompt's full length for every chunk of it, a recompute's whole sequence, a
   * decode row's own length); the backends never read it. */
  const int32_t *rope_len;
} ig_batch;

/* Rotary embedding parameters, computed on the host by the model from config.json (all rope_scaling kinds
 * reduce to per-frequency inverse frequencies and one attention factor). NeoX/HF layout: the pairs rotated
 * together are (i, i + rot_dim/2) within each head. */
typedef struct ig_rope {
  int head_dim;
  int rot_dim;              /* <= head_dim: the first rot_dim dims of each head rotate (Phi3's partial_rotary_factor) */
  const float *inv_freq;    /* [rot_dim / 2], host memory */
  float attn_factor;        /* cos and sin are multiplied by this (yarn's mscale; 1 otherwise) */
  int table;                /* 0, or 1: a second set (Gemma3's sliding layers) that rope_select picks */
} ig_rope;

/* How the KV cache holds its K and V values (TGI's --kv-cache-dtype). FP8 halves (against bf16) the cache's bytes
 * and what decode attention reads; each value is rounded to nearest even, saturating at the format's largest finite
 * value (scale 1), by src/backend/fp8.h's rules on the CPU and the same conversions on a device. */
typedef enum {
  IG_KV_AUTO = 0,     /* the backend's compute dtype */
  IG_KV_FP8_E4M3 = 1, /* fp8_e4m3fn: 4 exponent bits, 3 mantissa bits, largest 448, no infinities */
  IG_KV_FP8_E5M2 = 2, /* fp8_e5m2: 5 exponent bits, 2 mantissa bits, largest 57344 */
} ig_kv_dtype;
const char *ig_kv_dtype_name(int kv_dtype); /* "auto", "fp8_e4m3fn", "fp8_e5m2"; "?" otherwise */
/* The FP8 formats by TGI's --kv-cache-dtype names ("fp8_e4m3fn", "fp8_e5m2"); -1 for anything else */
int ig_kv_dtype_parse(const char *name);

typedef struct ig_kv_config {
  int n_layers;
  int n_blocks;
  int block_size;           /* tokens per block */
  int n_kv_heads;
  int head_dim;
  int dtype;                /* ig_kv_dtype; a backend that cannot hold it fails kv_init (and kv_bytes_per_block 0) */
  /* An FP8 cache's per-layer scales ([n_layers] each, copied by kv_init; NULL: 1), an FP8 checkpoint's k_scale and
   * v_scale: a value x is stored as the code of x * (1 / s) (the f32 product, then the format's rounding) and reads
   * back as code * s. Unused by the auto dtype. */
  const float *k_scale, *v_scale;
} ig_kv_config;
/* The first layer whose K or V scale in c is not a positive finite number, else -1 (kv_init's check) */
int ig_kv_scales_bad(const ig_kv_config *c);
/* Whether n_scales scales laid out [., sc] in blocks of br x bc cover rows [srow0, srow0 + rows) x [0, cols) of an
 * FP8 weight, with a sane shape (weight_fp8's check) */
int ig_fp8_scales_cover(int64_t n_scales, int64_t srow0, int64_t rows, int64_t cols, int64_t br, int64_t bc, int64_t sc);

typedef struct ig_attn_params {
  int n_heads, n_kv_heads, head_dim;
  float scale;              /* usually 1/sqrt(head_dim) */
  int sliding_window;       /* 0 = none; else a query at position p sees keys at positions > p - window */
  float softcap;            /* 0 = none; else each scaled score s becomes softcap * tanh(s / softcap) before the
                             * mask and softmax (Gemma2's attn_logit_softcapping) */
} ig_attn_params;

/* On-device sampling (the optional sample op): one sampled row's logits processing, engine/sampler.c's chain
 * in TGI's order: repetition penalty (HF: each distinct token of tokens[0..n_tokens) once, s < 0 ? s * p :
 * s / p), frequency/presence penalties (OpenAI: over the generated tokens tokens[n_prompt..n_tokens)), then,
 * when do_sample: temperature, top_k, top_p, typical_p (HF's warpers, ties and min_tokens_to_keep = 1 as
 * engine/sampler.c has them), then the argmax (lowest id on ties) or the inverse CDF over ids in order at
 * `uniform` x the sum of exp(s - max). logprob = s[id] - logsumexp(s) of the processed scores s; top_n
 * alternatives come from the same log-softmax, ties with the n-th included (up to IG_SAMPLE_MAX_TOP). The
 * watermark is not done on the device (the engine samples such rows on the host). */
#define IG_SAMPLE_MAX_TOP 20
typedef struct ig_sample_row {
  int row;                    /* row of the logits tensor */
  int do_sample;              /* 0: argmax of the penalised scores (the warpers are skipped) */
  float temperature;          /* used when do_sample and != 1 */
  int top_k;                  /* 0: off */
  float top_p, typical_p;     /* 1 (or <= 0): off */
  float repetition_penalty;   /* 1 (or <= 0): off */
  float frequency_penalty, presence_penalty; /* 0: off */
  double uniform;             /* the draw in [0, 1) (engine: ig_sample_uniform(seed, step)) */
  int want_logprob;           /* compute logprob (else NAN) */
  int top_n;                  /* 0..IG_SAMPLE_MAX_TOP */
  int target;                 /* a greedy row: >= 0 also gives this token's logprob (a prompt row's next token);
                                 out of range or a sampling row: NAN */
  const int32_t *tokens;      /* host memory: prompt then generated ids (penalties only; may be NULL if none) */
  int n_tokens, n_prompt;
  const uint32_t *allowed;    /* NULL, or host memory, ceil(V / 32) words: token i may be chosen only when bit
                                 (i & 31) of word i / 32 is set; the others score -inf (a constrained row's mask,
                                 as if its logits were -inf there before the chain) */
} ig_sample_row;

typedef struct ig_sample_out {
  int32_t id;
  float logprob;
  int n_top;
  int32_t top_ids[IG_SAMPLE_MAX_TOP];
  float top_logprobs[IG_SAMPLE_MAX_TOP];
  float target_logprob;       /* the row's target's logprob (same log-softmax), or NAN */
} ig_sample_out;

typedef struct ig_backend ig_backend;
struct ig_backend {
  const char *name;         /* "cpu", "cuda" */
  ig_dtype act_dtype;       /* dtype of activations and of tensors made with alloc() for activations */
  int kv_canon_rows;        /* a sequence's K/V rows are bitwise the same however its prompt is chunked when
                               computed in steps of at least this many of its rows (0 or 1: always); the prefix
                               cache shares only such rows */
  int weights_copied;       /* weight() and weight_rows() copy: after sync() the host data is not read again */
  void *impl;
  char err[256];

  void (*destroy)(ig_backend *be);

  /* --- memory ------------------------------------------------------------------------------------ */
  int (*alloc)(ig_backend *be, ig_tensor *t, ig_dtype dt, int64_t rows, int64_t cols);
  void (*free)(ig_backend *be, ig_tensor *t);
  /* A weight from host memory (the checkpoint's mmap). The CPU may keep a view of `host` (no copy); CUDA copies
   * it to the device (converted to bf16 unless f16). Unless weights_copied, `host` must stay mapped until free. */
  int (*weight)(ig_backend *be, ig_tensor *t, const void *host, ig_dtype dt, int64_t rows, int64_t cols);
  /* Copy `t` to host memory as f32 ([rows*cols] floats). Waits for pending work. */
  int (*download_f32)(ig_backend *be, const ig_tensor *t, float *host);
  /* Copy host data of dtype `dt` into an allocated tensor (converting to t->dtype). */
  int (*upload)(ig_backend *be, ig_tensor *t, const void *host, ig_dtype dt);
  int (*sync)(ig_backend *be);

  /* --- per-step state ------------------------------------------------------------------------------ */
  int (*kv_init)(ig_backend *be, const ig_kv_config *cfg);   /* allocate the paged KV cache (once) */
  size_t (*kv_bytes_per_block)(ig_backend *be, const ig_kv_config *cfg); /* all layers, K and V */
  int (*set_batch)(ig_backend *be, const ig_batch *b);
  int (*set_rope)(ig_backend *be, const ig_rope *r);         /* may be called again (dynamic scaling) */

  /* --- ops (shapes in comments; n = n_tokens of the current batch unless said) --------------------- */
  /* out[n, H] = table[tokens[i], :] */
  int (*embed)(ig_backend *be, ig_tensor *out, const ig_tensor *table);
  /* If residual != NULL: x += residual (in place). Then out = x / rms(x) * w, per row of width w->cols.
   * x may be viewed with more rows than n (q/k norm: rows = n*heads, cols = head_dim). */
  int (*rmsnorm)(ig_backend *be, ig_tensor *out, ig_tensor *x, const ig_tensor *residual, const ig_tensor *w,
                 float eps);
  /* Optional (NULL: rmsnorm(residual, residual, NULL, wres) then rmsnorm(out, x, residual, w)): Gemma's norm of a
   * sublayer's output before the residual add, and the next norm after it, in one op with the same bits: x += rmsnorm
   * (residual) * wres (rounded to residual's dtype first, as the separate norm would store it), then out = x / rms(x)
   * * w. residual may hold its normed value afterwards (the fused kernel leaves it as it was). */
  int (*rmsnorm_post)(ig_backend *be, ig_tensor *out, ig_tensor *x, const ig_tensor *residual, const ig_tensor *wres,
                      const ig_tensor *w, float eps);
  /* out[m, O] = x[m, I] @ W[O, I]^T (+ bias[1, O]); m = x->rows. */
  int (*matmul)(ig_backend *be, ig_tensor *out, const ig_tensor *x, const ig_tensor *w, const ig_tensor *bias);
  /* In place rotary embedding of q[n, n_heads*head_dim] and k[n, n_kv_heads*head_dim] at the batch's positions. */
  int (*rope)(ig_backend *be, ig_tensor *q, ig_tensor *k, int n_heads, int n_kv_heads);
  /* out[n, I] = silu(gate) * up */
  int (*swiglu)(ig_backend *be, ig_tensor *out, const ig_tensor *gate, const ig_tensor *up);
  /* Write k, v [n, n_kv_heads*head_dim] into layer `layer` of the KV cache at the batch's slots. */
  int (*kv_write)(ig_backend *be, int layer, const ig_tensor *k, const ig_tensor *v);
  /* Causal attention of q [n, n_heads*head_dim] over each sequence's cached keys/values of `layer`
   * (positions 0 .. pos[row], windowed if set; GQA: query head h uses kv head h / (n_heads/n_kv_heads)).
   * out [n, n_heads*head_dim]. Call after kv_write for the same layer. */
  int (*attention)(ig_backend *be, ig_tensor *out, const ig_tensor *q, int layer, const ig_attn_params *p);
  /* out[n_out, H] = x[out_rows[j], :] (rows whose logits are wanted). */
  int (*gather_rows)(ig_backend *be, ig_tensor *out, const ig_tensor *x);
  /* x += y (same shape). */
  int (*add)(ig_backend *be, ig_tensor *x, const ig_tensor *y);

  /* --- optional ops: NULL when a backend lacks them (the CPU backend); callers check before use -------- */
  /* Step graphs (CUDA graphs). A caller that repeats one op sequence over same-shaped batches (decode steps of
   * one batch-size bucket) brackets the ops that follow set_batch with graph_begin(key) / graph_end(). When
   * graph_begin returns 1 the step's graph was launched: the caller skips its ops and calls graph_end. When it
   * returns 0 the caller issues its ops as usual, then graph_end (the backend may be capturing them). < 0:
   * error. `key` must determine everything that shapes the sequence (n_tokens, n_seqs, n_out, max_blocks,
   * which ops run) and the caller must pass the same tensors (buffers) on every step with that key. */
  int (*graph_begin)(ig_backend *be, uint64_t key);
  int (*graph_end)(ig_backend *be);
  /* Drops every captured graph (call when the tensors a graph was captured with are freed or reallocated). */
  void (*graph_reset)(ig_backend *be);
  /* Device memory free and total, in bytes (to size the KV cache from --cuda-memory-fraction). */
  int (*mem_info)(ig_backend *be, size_t *free_bytes, size_t *total_bytes);
  /* Greedy sampling on the device: ids[r] = argmax over row r of logits [rows, V] (lowest index on ties);
   * only the ids cross to the host. Waits for pending work. */
  int (*argmax_rows)(ig_backend *be, const ig_tensor *logits, int32_t *ids);
  /* Weights that are used together (q/k/v, gate/up) in one buffer, so the backend can multiply them at once:
   * weight_alloc makes a [rows, cols] weight tensor of the dtype weight() would give `dt`; weight_rows loads host
   * data (dtype dt, `rows` rows) into its rows [row0, row0 + rows), as weight() would (possibly queued: `host`
   * stays mapped until sync). The caller then views the parts as row slices of it. */
  int (*weight_alloc)(ig_backend *be, ig_tensor *t, ig_dtype dt, int64_t rows, int64_t cols);
  int (*weight_rows)(ig_backend *be, ig_tensor *t, int64_t row0, const void *host, ig_dtype dt, int64_t rows);
  /* Optional: a weight kept in its own dtype (`dt` f32, bf16 or f16) where weight() would convert it: the (1 + w)
   * norm vectors of Gemma, which transformers applies in f32 (rounding them to bf16 moves every normed value by up
   * to 2^-9). NULL: weight(). */
  int (*weight_keep)(ig_backend *be, ig_tensor *t, const void *host, ig_dtype dt, int64_t rows, int64_t cols);
  /* Optional: an FP8 checkpoint's weight, dequantized to bf16 by the backend (NULL: the loader does it on the host).
   * codes: [rows, cols] F8_E4M3 (F8_E5M2 when e5m2) bytes, rows srow0.. of the checkpoint's tensor; element (i, j)
   * becomes bf16(decode(code) * scales[((srow0 + i) / br) * sc + j / bc]), the product in f32 and one rounding to
   * nearest even, exactly as the host's dequantization. scales: n_scales f32 values, copied before the call returns;
   * codes stay mapped until sync (the copy may be queued). Into rows [row0, row0 + rows) of t when t->data is set
   * (a weight_alloc buffer of bf16), else t becomes a new [rows, cols] bf16 weight. */
  int (*weight_fp8)(ig_backend *be, ig_tensor *t, int64_t row0, const uint8_t *codes, int e5m2, const float *scales,
                    int64_t n_scales, int64_t srow0, int64_t br, int64_t bc, int64_t sc, int64_t rows, int64_t cols);
  /* Fused products, bitwise the same as the ops they replace on the GEMV path (small m); for larger m, when the
   * weights are adjacent rows of one buffer (weight_alloc), one GEMM over all of them (the same up to the GEMM's
   * summation order, which depends on the shapes anyway):
   * outs[i] = x @ ws[i]^T (+ biases[i]) for i < n (n <= 4; q/k/v), and out = silu(x Wg^T + bg) * (x Wu^T + bu)
   * with `up` as scratch for the second product (gate/up/swiglu). CUDA: one GEMV pass over x for small m. */
  int (*matmul_n)(ig_backend *be, int n, ig_tensor *const *outs, const ig_tensor *x, const ig_tensor *const *ws,
                  const ig_tensor *const *biases);
  int (*matmul_swiglu)(ig_backend *be, ig_tensor *out, ig_tensor *up, const ig_tensor *x, const ig_tensor *wg,
                       const ig_tensor *bg, const ig_tensor *wu, const ig_tensor *bu);
  /* rope(q, k) then kv_write(layer, k, v), bitwise, in one launch where the backend can. */
  int (*rope_kv_write)(ig_backend *be, ig_tensor *q, ig_tensor *k, const ig_tensor *v, int n_heads, int n_kv_heads,
                       int layer);
  /* Optional: Qwen3's and Gemma3's per-head q/k norms then rope_kv_write, bitwise rmsnorm(qn, q, NULL, wq) and
   * rmsnorm(kn, k, NULL, wk) over heads of head_dim then rope_kv_write(qn, kn, v), in one launch where the backend can
   * (q and k are left as they were). */
  int (*qk_norm_rope_kv_write)(ig_backend *be, ig_tensor *qn, ig_tensor *kn, const ig_tensor *q, const ig_tensor *k,
                               const ig_tensor *v, const ig_tensor *wq, const ig_tensor *wk, float eps, int n_heads,
                               int n_kv_heads, int layer);
  /* q|k|v = x @ (ws[0] | ws[1] | ws[2])^T (adjacent rows of one weight_alloc buffer, no biases) then rope_kv_write,
   * bitwise matmul_n followed by rope_kv_write, where the backend can do it without the separate k and v: afterwards
   * q holds the rotated queries and the cache the layer's keys and values, while k and v are scratch the backend may
   * leave unwritten. CUDA: above the skinny GEMM's rows, one GEMM into a packed [m, q|k|v] buffer and one kernel that
   * rotates q into `q` and writes k and v straight into the cache. */
  int (*qkv_rope_kv_write)(ig_backend *be, ig_tensor *q, ig_tensor *k, ig_tensor *v, const ig_tensor *x,
                           const ig_tensor *const *ws, int n_heads, int n_kv_heads, int layer);
  /* Sampling on the device: out[i] for rows[i] (see ig_sample_row) of f32 logits [rows, V]; only the results
   * cross to the host. Each row's result depends on that row's logits and parameters alone. Waits, unless the
   * backend has sample_wait (below). */
  int (*sample)(ig_backend *be, const ig_tensor *logits, const ig_sample_row *rows, int n, ig_sample_out *out);
  /* Optional beside sample (CUDA): when set, sample may return with its results still on their way, so the
   * host can work while the device runs; they are in `out` once sample_wait returns (0, or < 0 on error), and
   * `out` must stay valid until then. A caller of sample always calls sample_wait (when set) before reading
   * `out`; another sample call before that drops the pending results. Nothing pending: returns 0 at once. */
  int (*sample_wait)(ig_backend *be);
  /* Tensor parallelism (model/comm.h, model/shard.c): x = the sum of x over the ranks of a collective
   * communicator, in place, enqueued in order with this backend's other ops (CUDA: ncclAllReduce on its stream,
   * which a step graph can capture). `comm` is the communicator's native handle for this backend's rank (an
   * ncclComm_t). When NULL, model/comm synchronizes the backend and reduces on its own (slower, no graphs). */
  int (*all_reduce)(ig_backend *be, ig_tensor *x, void *comm);
  /* Gemma3's and Granite's pieces (NULL where a backend lacks them; such models then fail to load there):
   * rope_select: the rope ops that follow use the frequencies set_rope gave for `table` (0 or 1);
   * scale: x *= s (rows of the activation dtype, rounded to it as a product would be; Gemma3's embedding scale,
   * Granite's multipliers);
   * geglu: out = gelu_tanh(gate) * up, the tanh-approximated GELU of transformers' gelu_pytorch_tanh. */
  int (*rope_select)(ig_backend *be, int table);
  int (*scale)(ig_backend *be, ig_tensor *x, float s);
  int (*geglu)(ig_backend *be, ig_tensor *out, const ig_tensor *gate, const ig_tensor *up);
  /* Gemma2's final_logit_softcapping: x = cap * tanh(x / cap), in place (f32 logits, or activation rows). */
  int (*softcap)(ig_backend *be, ig_tensor *x, float cap);
  /* matmul_swiglu's fusion with geglu's activation, bitwise matmul(gate), matmul(up), geglu (optional) */
  int (*matmul_geglu)(ig_backend *be, ig_tensor *out, ig_tensor *up, const ig_tensor *x, const ig_tensor *wg,
                      const ig_tensor *bg, const ig_tensor *wu, const ig_tensor *bu);
};

static inline const char *ig_backend_error(const ig_backend *be) { return be->err; }

/* Constructors. threads <= 0: all cores. */
ig_backend *ig_backend_cpu_create(int threads, char *err, size_t errlen);
#ifdef IG_HAVE_CUDA
ig_backend *ig_backend_cuda_create(int device, char *err, size_t errlen);
/* act: IG_DT_BF16 (default: bf16 weights and activations) or IG_DT_F32 (f32 weights and activations, for
 * checking against f32 references such as stories260K's expected.json). */
ig_backend *ig_backend_cuda_create_ex(int device, ig_dtype act, char *err, size_t errlen);
/* Number of usable CUDA devices (0 when there is no GPU or no driver): picks the default --device. */
int ig_backend_cuda_device_count(void);
#endif

#endif
