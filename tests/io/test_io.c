/* tests/io: the safetensors reader (good files, shards, and every kind of bad file), config.json parsing
 * (architectures, rope_scaling kinds, defaults, errors) and model directory resolution (HF cache layout). */
#include "io/config.h"
#include "io/modeldir.h"
#include "io/safetensors.h"
#include "test.h"
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[256];

/* Writes a safetensors file from a header text and `data_len` bytes of data (value i&255). */
static void write_st(const char *path, const char *header, size_t data_len) {
  FILE *f = fopen(path, "wb");
  uint64_t n = strlen(header);
  unsigned char le[8];
  for (int i = 0; i < 8; i++) le[i] = (unsigned char)(n >> (8 * i));
  fwrite(le, 1, 8, f);
  fwrite(header, 1, n, f);
  for (size_t i = 0; i < data_len; i++) fputc((int)(i & 255), f);
  fclose(f);
}

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "wb");
  fputs(text, f);
  fclose(f);
}

/* Parses a header + data in memory; returns rc and leaves the message in err. */
static int parse_mem(const char *header, size_t data_len, char *err, size_t errlen) {
  size_t n = strlen(header);
  uint8_t *buf = malloc(8 + n + data_len + 1);
  for (int i = 0; i < 8; i++) buf[i] = (uint8_t)((uint64_t)n >> (8 * i));
  memcpy(buf + 8, header, n);
  memset(buf + 8 + n, 0, data_len);
  ig_st_header h;
  int rc = ig_st_parse(buf, 8 + n + data_len, &h, err, errlen);
  if (rc == 0) ig_st_header_free(&h);
  free(buf);
  return rc;
}

#define EXPECT_BAD(header, data_len, needle)                                                                           \
  do {                                                                                                                 \
    char e_[512] = "";                                                                                                 \
    CHECK(parse_mem(header, data_len, e_, sizeof e_) < 0);                                                             \
    CHECK_MSG(strstr(e_, needle) != NULL, "error '%s' lacks '%s'", e_, needle);                                        \
  } while (0)

static void test_safetensors(void) {
  char p[512], err[512];
  snprintf(p, sizeof p, "%s/one.safetensors", tmpdir);
  write_st(p, "{\"__metadata__\":{\"format\":\"pt\"},\"b\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[16,28]},"
              "\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}",
           28);
  ig_st_model *m = NULL;
  CHECK(ig_st_open(p, &m, err, sizeof err) == 0);
  if (m) {
    CHECK_EQ_INT(ig_st_count(m), 2);
    const ig_st_tensor *a = ig_st_find(m, "a"), *b = ig_st_find(m, "b");
    CHECK(a && b && !ig_st_find(m, "c"));
    if (a && b) {
      CHECK_EQ_INT(a->dtype, IG_ST_F32);
      CHECK_EQ_INT(b->dtype, IG_ST_BF16);
      CHECK_EQ_INT(b->n_dims, 2);
      CHECK_EQ_INT(b->shape[1], 3);
      CHECK_EQ_INT(b->nbytes, 12);
      CHECK_EQ_INT(b->data[0], 16);
      CHECK_EQ_INT(a->data[5], 5);
    }
    ig_st_close(m);
  }
  /* bad files */
  char e[512];
  CHECK(ig_st_parse((const uint8_t *)"abc", 3, &(ig_st_header){0}, e, sizeof e) < 0 && strstr(e, "too short"));
  uint8_t huge[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f};
  CHECK(ig_st_parse(huge, 16, &(ig_st_header){0}, e, sizeof e) < 0 && strstr(e, "absurd"));
  uint8_t trunc[16] = {100, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
  CHECK(ig_st_parse(trunc, 10, &(ig_st_header){0}, e, sizeof e) < 0 && strstr(e, "truncated"));
  EXPECT_BAD("{\"a\":", 0, "not valid JSON");
  EXPECT_BAD("[1,2]", 0, "not a JSON object");
  EXPECT_BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[4]}}", 16, "data_offsets");
  EXPECT_BAD("{\"a\":{\"dtype\":\"Q4\",\"shape\":[4],\"data_offsets\":[0,16]}}", 16, "unknown dtype 'Q4'");
  EXPECT_BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[5],\"data_offsets\":[0,16]}}", 16, "needs 20 bytes");
  EXPECT_BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, "truncated");
  EXPECT_BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[-4],\"data_offsets\":[0,16]}}", 16, "shape[0]");
  EXPECT_BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[16,0]}}", 16, "begin <= end");
  EXPECT_BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
             "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}", 24, "overlap");
  EXPECT_BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
             "\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[16,32]}}", 32, "not valid JSON");
  EXPECT_BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,16]}}", 16,
             "overflows");
  EXPECT_BAD("{\"a\":7}", 0, "not an object");
  /* file-level errors carry the file name */
  snprintf(p, sizeof p, "%s/trunc.safetensors", tmpdir);
  write_st(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 10);
  CHECK(ig_st_open(p, &m, err, sizeof err) < 0 && strstr(err, "trunc.safetensors") && strstr(err, "truncated"));
  CHECK(ig_st_open("/nonexistent/x.safetensors", &m, err, sizeof err) < 0);
  snprintf(p, sizeof p, "%s/empty.safetensors", tmpdir);
  write_text(p, "");
  CHECK(ig_st_open(p, &m, err, sizeof err) < 0 && strstr(err, "too short"));
}

static void test_shards(void) {
  char d[512], p[600], err[512];
  snprintf(d, sizeof d, "%s/sharded", tmpdir);
  mkdir(d, 0755);
  snprintf(p, sizeof p, "%s/model-00001-of-00002.safetensors", d);
  write_st(p, "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8);
  snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", d);
  write_st(p, "{\"y\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4);
  snprintf(p, sizeof p, "%s/model.safetensors.index.json", d);
  write_text(p, "{\"metadata\":{},\"weight_map\":{\"x\":\"model-00001-of-00002.safetensors\","
                "\"y\":\"model-00002-of-00002.safetensors\"}}");
  ig_st_model *m = NULL;
  CHECK(ig_st_open(d, &m, err, sizeof err) == 0);
  if (m) {
    CHECK_EQ_INT(ig_st_count(m), 2);
    CHECK(ig_st_find(m, "x") && ig_st_find(m, "x")->file == 0);
    CHECK(ig_st_find(m, "y") && ig_st_find(m, "y")->file == 1 && ig_st_find(m, "y")->dtype == IG_ST_F16);
    /* unmapped (a device backend's copies made): the headers stay, the data is gone, close still works */
    size_t mapped = ig_st_unmap(m);
    CHECK(mapped >= 2 * 8 + 8);
    CHECK(ig_st_find(m, "y") && ig_st_find(m, "y")->data == NULL && ig_st_find(m, "y")->shape[0] == 2);
    CHECK(ig_st_find(m, "x") && ig_st_find(m, "x")->data == NULL);
    CHECK_EQ_INT(ig_st_unmap(m), 0);
    ig_st_close(m);
  }
  write_text(p, "{\"weight_map\":{\"x\":\"model-00001-of-00002.safetensors\",\"z\":\"model-00002-of-00002.safetensors\"}}");
  CHECK(ig_st_open(d, &m, err, sizeof err) < 0 && strstr(err, "'z'"));
  write_text(p, "{\"weight_map\":{\"x\":\"model-00003-of-00002.safetensors\"}}");
  CHECK(ig_st_open(d, &m, err, sizeof err) < 0 && strstr(err, "model-00003"));
  write_text(p, "{\"weight_map\":{\"x\":\"../etc/passwd\"}}");
  CHECK(ig_st_open(d, &m, err, sizeof err) < 0 && strstr(err, "bad shard"));
  write_text(p, "{\"nope\":1}");
  CHECK(ig_st_open(d, &m, err, sizeof err) < 0 && strstr(err, "weight_map"));
  CHECK(ig_st_open(tmpdir, &m, err, sizeof err) < 0 && strstr(err, "no model.safetensors"));
}

/* ---------------------------------------------------------------------------------------------------- */

#define LLAMA_BASE                                                                                                     \
  "\"vocab_size\":100,\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":2,"                         \
  "\"num_attention_heads\":4"

static int cfg(const char *json, const char *gen, ig_config *c, char *err) {
  return ig_config_parse(json, strlen(json), gen, gen ? strlen(gen) : 0, c, err, 512);
}

static void test_config(void) {
  ig_config c;
  char err[512];
  CHECK(cfg("{\"architectures\":[\"LlamaForCausalLM\"]," LLAMA_BASE ",\"num_key_value_heads\":2,"
            "\"eos_token_id\":[2,3],\"bos_token_id\":1,\"rope_theta\":500000.0,\"rms_norm_eps\":1e-5}",
            NULL, &c, err) == 0);
  CHECK_EQ_INT(c.head_dim, 16);
  CHECK_EQ_INT(c.n_kv_heads, 2);
  CHECK_EQ_INT(c.n_eos, 2);
  CHECK_EQ_INT(c.eos_ids[1], 3);
  CHECK_EQ_INT(c.bos_id, 1);
  CHECK_NEAR(c.rope.theta, 500000, 0);
  CHECK_NEAR(c.rms_norm_eps, 1e-5, 1e-12);
  CHECK_EQ_INT(c.rope.kind, IG_ROPE_DEFAULT);
  CHECK_EQ_INT(c.sliding_window, 0);
  CHECK_EQ_INT(c.tie_word_embeddings, 0);
  ig_config_free(&c);
  /* generation_config.json adds eos ids */
  CHECK(cfg("{\"architectures\":[\"LlamaForCausalLM\"]," LLAMA_BASE ",\"eos_token_id\":2}",
            "{\"eos_token_id\":[7,2],\"bos_token_id\":5}", &c, err) == 0);
  CHECK_EQ_INT(c.n_eos, 2);
  CHECK_EQ_INT(c.eos_ids[0], 7);
  CHECK_EQ_INT(c.bos_id, 5);
  ig_config_free(&c);
  /* rope kinds: 4.x rope_scaling */
  CHECK(cfg("{\"architectures\":[\"LlamaForCausalLM\"]," LLAMA_BASE ",\"rope_scaling\":{\"rope_type\":\"llama3\","
            "\"factor\":8.0,\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,\"original_max_position_embeddings\":8192}}",
            NULL, &c, err) == 0);
  CHECK_EQ_INT(c.rope.kind, IG_ROPE_LLAMA3);
  CHECK_EQ_INT(c.rope.original_max_pos, 8192);
  ig_config_free(&c);
  CHECK(cfg("{\"architectures\":[\"LlamaForCausalLM\"]," LLAMA_BASE ",\"rope_scaling\":{\"type\":\"linear\",\"factor\":2}}",
            NULL, &c, err) == 0 && c.rope.kind == IG_ROPE_LINEAR && c.rope.factor == 2);
  ig_config_free(&c);
  CHECK(cfg("{\"architectures\":[\"LlamaForCausalLM\"]," LLAMA_BASE ",\"rope_scaling\":{\"type\":\"dynamic\",\"factor\":2}}",
            NULL, &c, err) == 0 && c.rope.kind == IG_ROPE_DYNAMIC);
  ig_config_free(&c);
  CHECK(cfg("{\"architectures\":[\"Qwen2ForCausalLM\"]," LLAMA_BASE ",\"rope_scaling\":{\"type\":\"yarn\",\"factor\":4,"
            "\"original_max_position_embeddings\":32768}}", NULL, &c, err) == 0 && c.rope.kind == IG_ROPE_YARN &&
        c.rope.beta_fast == 32 && c.rope.beta_slow == 1 && c.attention_bias == 1 && !c.o_bias);
  ig_config_free(&c);
  /* 5.x rope_parameters */
  CHECK(cfg("{\"architectures\":[\"LlamaForCausalLM\"]," LLAMA_BASE ",\"rope_parameters\":{\"rope_type\":\"default\","
            "\"rope_theta\":1234.0}}", NULL, &c, err) == 0 && c.rope.theta == 1234 && c.rope.kind == IG_ROPE_DEFAULT);
  ig_config_free(&c);
  CHECK(cfg("{\"architectures\":[\"LlamaForCausalLM\"]," LLAMA_BASE ",\"rope_scaling\":{\"type\":\"longrope\",\"factor\":2}}",
            NULL, &c, err) < 0 && strstr(err, "longrope"));
  CHECK(cfg("{\"architectures\":[\"LlamaForCausalLM\"]," LLAMA_BASE ",\"rope_scaling\":{\"type\":\"llama3\",\"factor\":2}}",
            NULL, &c, err) < 0 && strstr(err, "llama3"));
  /* Phi3: longrope (top-level original_max_position_embeddings sets the factor and the switch length; the attention
   * factor derived as transformers does), no biases whatever attention_bias says, sliding window on every layer */
#define F8 "[1,1.5,2,2.5,3,3.5,4,4.5]"
  CHECK(cfg("{\"architectures\":[\"Phi3ForCausalLM\"]," LLAMA_BASE ",\"max_position_embeddings\":131072,"
            "\"original_max_position_embeddings\":4096,\"attention_bias\":true,\"sliding_window\":2047,"
            "\"rope_scaling\":{\"type\":\"longrope\",\"short_factor\":" F8 ",\"long_factor\":[2,2,2,2,2,2,2,9]}}",
            NULL, &c, err) == 0);
  CHECK_EQ_INT(c.rope.kind, IG_ROPE_LONGROPE);
  CHECK_EQ_INT(c.rope.n_factors, 8);
  CHECK_EQ_INT(c.rope.original_max_pos, 4096);
  CHECK_NEAR(c.rope.factor, 32, 0);
  CHECK_NEAR(c.rope.attention_factor, sqrt(1 + log(32.0) / log(4096.0)), 1e-12);
  CHECK_NEAR(c.rope.short_factor[1], 1.5, 0);
  CHECK_NEAR(c.rope.long_factor[7], 9, 0);
  CHECK(c.fused_qkv_gate_up && c.longrope_recompute && !c.attention_bias && c.rot_dim == 16 && c.sliding_window == 2047 && c.layer_sliding[1]);
  CHECK(!strcmp(c.model_type, "phi3"));
  ig_config_free(&c);
  /* "su" (the older name), the length inside rope_parameters (5.x), an explicit attention_factor */
  CHECK(cfg("{\"architectures\":[\"Phi3ForCausalLM\"]," LLAMA_BASE ",\"max_position_embeddings\":256,"
            "\"rope_parameters\":{\"rope_type\":\"su\",\"short_factor\":" F8 ",\"long_factor\":" F8 ","
            "\"original_max_position_embeddings\":64,\"attention_factor\":1.5}}", NULL, &c, err) == 0 &&
        c.rope.kind == IG_ROPE_LONGROPE && c.rope.original_max_pos == 64 && c.rope.attention_factor == 1.5);
  ig_config_free(&c);
  CHECK(cfg("{\"architectures\":[\"Phi3ForCausalLM\"]," LLAMA_BASE ",\"rope_scaling\":{\"type\":\"longrope\","
            "\"short_factor\":[1,2],\"long_factor\":" F8 "}}", NULL, &c, err) < 0 && strstr(err, "short_factor") &&
        strstr(err, "8 positive"));
  CHECK(cfg("{\"architectures\":[\"Phi3ForCausalLM\"]," LLAMA_BASE ",\"rope_scaling\":{\"type\":\"longrope\","
            "\"short_factor\":" F8 ",\"long_factor\":[1,1,1,1,1,1,1,-1]}}", NULL, &c, err) < 0 && strstr(err, "long_factor"));
#undef F8
  /* partial rotary: Phi3 only; int(head_dim * factor) rotary dims, even, at least 2 */
  CHECK(cfg("{\"architectures\":[\"Phi3ForCausalLM\"]," LLAMA_BASE ",\"partial_rotary_factor\":0.75}", NULL, &c, err) == 0 &&
        c.rot_dim == 12 && c.head_dim == 16);
  ig_config_free(&c);
  CHECK(cfg("{\"architectures\":[\"Phi3ForCausalLM\"]," LLAMA_BASE ",\"rope_parameters\":{\"rope_type\":\"default\","
            "\"partial_rotary_factor\":0.5}}", NULL, &c, err) == 0 && c.rot_dim == 8);
  ig_config_free(&c);
  CHECK(cfg("{\"architectures\":[\"LlamaForCausalLM\"]," LLAMA_BASE ",\"partial_rotary_factor\":0.5}", NULL, &c, err) < 0 &&
        strstr(err, "Phi3ForCausalLM"));
  CHECK(cfg("{\"architectures\":[\"Phi3ForCausalLM\"]," LLAMA_BASE ",\"partial_rotary_factor\":0.1}", NULL, &c, err) < 0 &&
        strstr(err, "partial_rotary_factor"));
  CHECK(cfg("{\"architectures\":[\"Phi3ForCausalLM\"]," LLAMA_BASE ",\"partial_rotary_factor\":0.3125}", NULL, &c, err) < 0 &&
        strstr(err, "even"));
  CHECK(cfg("{\"architectures\":[\"Phi3ForCausalLM\"]," LLAMA_BASE ",\"partial_rotary_factor\":1.5}", NULL, &c, err) < 0);
  /* Gemma3: 4.x keys (global rope_theta + rope_scaling, rope_local_base_freq, every 6th layer global), 5.x's rope
   * entries per layer type; softcapping and other activations refused */
  CHECK(cfg("{\"architectures\":[\"Gemma3ForCausalLM\"]," LLAMA_BASE ",\"num_hidden_layers\":7,\"head_dim\":32,"
            "\"sliding_window\":512,\"rope_theta\":1000000.0,\"rope_scaling\":{\"rope_type\":\"linear\",\"factor\":8},"
            "\"query_pre_attn_scalar\":144}", NULL, &c, err) == 0);
  CHECK(c.gemma && c.qk_norm && c.tie_word_embeddings && c.head_dim == 32 && c.sliding_window == 512);
  CHECK(c.layer_sliding[0] && c.layer_sliding[4] && !c.layer_sliding[5] && c.layer_sliding[6]);
  CHECK(c.rope.kind == IG_ROPE_LINEAR && c.rope.factor == 8 && c.rope.theta == 1e6);
  CHECK(c.rope_local.kind == IG_ROPE_DEFAULT && c.rope_local.theta == 10000);
  CHECK_NEAR(c.attn_scale, 1.0 / 12, 1e-15);
  CHECK(!strcmp(c.model_type, "gemma3_text"));
  ig_config_free(&c);
  CHECK(cfg("{\"architectures\":[\"Gemma3ForCausalLM\"]," LLAMA_BASE ",\"layer_types\":[\"full_attention\","
            "\"sliding_attention\"],\"sliding_window\":64,\"rope_parameters\":{\"full_attention\":{\"rope_type\":"
            "\"default\",\"rope_theta\":1000000.0},\"sliding_attention\":{\"rope_type\":\"default\",\"rope_theta\":"
            "5000.0}}}", NULL, &c, err) == 0 && !c.layer_sliding[0] && c.layer_sliding[1] && c.rope.theta == 1e6 &&
        c.rope_local.theta == 5000 && c.attn_scale == 1.0 / 16);
  ig_config_free(&c);
  /* gemma-3-4b-it's config.json as published: the text model under text_config, which names only what differs from
   * Gemma3TextConfig's defaults; eos and dtype in the outer object */
  CHECK(cfg("{\"architectures\":[\"Gemma3ForConditionalGeneration\"],\"eos_token_id\":[1,106],\"model_type\":\"gemma3\","
            "\"text_config\":{\"hidden_size\":2560,\"intermediate_size\":10240,\"model_type\":\"gemma3_text\","
            "\"num_hidden_layers\":34,\"rope_scaling\":{\"factor\":8.0,\"rope_type\":\"linear\"},\"sliding_window\":1024},"
            "\"torch_dtype\":\"bfloat16\",\"vision_config\":{\"hidden_size\":1152}}", NULL, &c, err) == 0);
  CHECK(c.gemma && c.vocab_size == 262208 && c.n_heads == 8 && c.n_kv_heads == 4 && c.head_dim == 256 && c.n_layers == 34);
  CHECK(c.sliding_window == 1024 && c.layer_sliding[4] && !c.layer_sliding[5] && c.tie_word_embeddings);
  CHECK(c.rope.kind == IG_ROPE_LINEAR && c.rope.theta == 1e6 && c.rope_local.theta == 10000 && c.attn_scale == 1.0 / 16);
  CHECK(c.n_eos == 2 && c.eos_ids[1] == 106 && !strcmp(c.torch_dtype, "bfloat16") && !strcmp(c.model_type, "gemma3"));
  ig_config_free(&c);
  CHECK(cfg("{\"architectures\":[\"Gemma3ForConditionalGeneration\"]," LLAMA_BASE "}", NULL, &c, err) < 0 &&
        strstr(err, "text_config"));
  CHECK(cfg("{\"architectures\":[\"Gemma3ForCausalLM\"]," LLAMA_BASE ",\"final_logit_softcapping\":30.0}", NULL, &c,
            err) < 0 && strstr(err, "final_logit_softcapping"));
  CHECK(cfg("{\"architectures\":[\"Gemma3ForCausalLM\"]," LLAMA_BASE ",\"hidden_activation\":\"silu\"}", NULL, &c, err) < 0 &&
        strstr(err, "gelu_pytorch_tanh"));
  CHECK(cfg("{\"architectures\":[\"Gemma3ForCausalLM\"]," LLAMA_BASE ",\"rope_scaling\":{\"rope_type\":\"dynamic\","
            "\"factor\":2}}", NULL, &c, err) < 0 && strstr(err, "Gemma3"));
  /* Gemma2 (gemma-2-2b/9b/27b's keys): Gemma2Config's defaults (softcaps 30 and 50, window 4096 on the even layers,
   * one rope of theta 1e4, tied embeddings, query_pre_attn_scalar 256); null turns a softcap off */
  CHECK(cfg("{\"architectures\":[\"Gemma2ForCausalLM\"]," LLAMA_BASE ",\"num_hidden_layers\":5,\"head_dim\":32}", NULL,
            &c, err) == 0);
  CHECK(c.gemma == 2 && !c.qk_norm && !c.longrope_recompute && c.tie_word_embeddings && c.final_softcap == 30 && c.attn_softcap == 50);
  CHECK(c.sliding_window == 4096 && c.layer_sliding[0] && !c.layer_sliding[1] && c.layer_sliding[2] &&
        !c.layer_sliding[3] && c.layer_sliding[4]);
  CHECK(c.rope.kind == IG_ROPE_DEFAULT && c.rope.theta == 10000 && c.max_position_embeddings == 8192);
  CHECK(c.attn_scale == 1.0 / 16 && !strcmp(c.model_type, "gemma2"));
  ig_config_free(&c);
  CHECK(cfg("{\"architectures\":[\"Gemma2ForCausalLM\"]," LLAMA_BASE ",\"final_logit_softcapping\":null,"
            "\"attn_logit_softcapping\":5.0,\"query_pre_attn_scalar\":144,\"sliding_window\":16,\"layer_types\":["
            "\"full_attention\",\"sliding_attention\"],\"hidden_act\":\"gelu_pytorch_tanh\",\"hidden_activation\":"
            "\"gelu_pytorch_tanh\"}", NULL, &c, err) == 0 && c.final_softcap == 0 && c.attn_softcap == 5 &&
        !c.layer_sliding[0] && c.layer_sliding[1] && c.sliding_window == 16 && c.attn_scale == 1.0 / 12);
  ig_config_free(&c);
  CHECK(cfg("{\"architectures\":[\"Gemma2ForCausalLM\"]," LLAMA_BASE ",\"attn_logit_softcapping\":-1}", NULL, &c,
            err) < 0 && strstr(err, "attn_logit_softcapping"));
  CHECK(cfg("{\"architectures\":[\"Gemma2ForCausalLM\"]," LLAMA_BASE ",\"final_logit_softcapping\":\"x\"}", NULL, &c,
            err) < 0 && strstr(err, "final_logit_softcapping"));
  CHECK(cfg("{\"architectures\":[\"Gemma2ForCausalLM\"]," LLAMA_BASE ",\"hidden_activation\":\"silu\"}", NULL, &c, err) < 0 &&
        strstr(err, "gelu_pytorch_tanh"));
  /* Mistral Small 3.1 (Mistral3ForConditionalGeneration): a Mistral text model under text_config; the outer
   * tie_word_embeddings decides */
  CHECK(cfg("{\"architectures\":[\"Mistral3ForConditionalGeneration\"],\"tie_word_embeddings\":false,\"text_config\":{"
            "\"vocab_size\":100,\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":2,\"num_attention_heads\""
            ":4,\"head_dim\":32,\"num_key_value_heads\":2,\"rope_theta\":1000000000.0,\"tie_word_embeddings\":true},"
            "\"eos_token_id\":2}", NULL, &c, err) == 0 && c.head_dim == 32 && !c.tie_word_embeddings && c.rope.theta == 1e9 &&
        c.n_eos == 1 && c.sliding_window == 0 && !strcmp(c.model_type, "mistral3"));
  ig_config_free(&c);
  /* Granite: its four multipliers (attention_multiplier is the attention scale), each positive */
  CHECK(cfg("{\"architectures\":[\"GraniteForCausalLM\"]," LLAMA_BASE ",\"embedding_multiplier\":12.0,"
            "\"residual_multiplier\":0.22,\"attention_multiplier\":0.0078125,\"logits_scaling\":8.0,\"mlp_bias\":true}",
            NULL, &c, err) == 0 && c.embed_mult == 12 && c.resid_mult == 0.22 && c.attn_scale == 0.0078125 &&
        c.logits_scaling == 8 && c.mlp_bias && !strcmp(c.model_type, "granite"));
  ig_config_free(&c);
  CHECK(cfg("{\"architectures\":[\"LlamaForCausalLM\"]," LLAMA_BASE ",\"embedding_multiplier\":12.0}", NULL, &c, err) == 0 &&
        c.embed_mult == 1 && c.attn_scale == 0); /* Llama ignores Granite's keys, as transformers does */
  ig_config_free(&c);
  CHECK(cfg("{\"architectures\":[\"GraniteForCausalLM\"]," LLAMA_BASE ",\"logits_scaling\":0}", NULL, &c, err) < 0 &&
        strstr(err, "logits_scaling"));
  /* Mistral sliding window on every layer; Qwen2 only with use_sliding_window */
  CHECK(cfg("{\"architectures\":[\"MistralForCausalLM\"]," LLAMA_BASE ",\"sliding_window\":16,\"attention_bias\":true,"
            "\"mlp_bias\":true}", NULL, &c, err) == 0 && c.sliding_window == 16 && c.layer_sliding[0] &&
        c.layer_sliding[1] && !c.attention_bias && !c.o_bias && !c.mlp_bias); /* Mistral's modules have no biases */
  ig_config_free(&c);
  CHECK(cfg("{\"architectures\":[\"Qwen2ForCausalLM\"]," LLAMA_BASE ",\"sliding_window\":16}", NULL, &c, err) == 0 &&
        c.sliding_window == 0);
  ig_config_free(&c);
  CHECK(cfg("{\"architectures\":[\"Qwen2ForCausalLM\"]," LLAMA_BASE ",\"sliding_window\":16,\"use_sliding_window\":true,"
            "\"max_window_layers\":1}", NULL, &c, err) == 0 && c.sliding_window == 16 && !c.layer_sliding[0] &&
        c.layer_sliding[1]);
  ig_config_free(&c);
  CHECK(cfg("{\"architectures\":[\"Qwen3ForCausalLM\"]," LLAMA_BASE ",\"head_dim\":32}", NULL, &c, err) == 0 &&
        c.qk_norm && c.head_dim == 32 && !c.attention_bias);
  ig_config_free(&c);
  /* errors */
  CHECK(cfg("{\"architectures\":[\"GPT2LMHeadModel\"]," LLAMA_BASE "}", NULL, &c, err) < 0 &&
        strstr(err, "GPT2LMHeadModel") && strstr(err, "Qwen3ForCausalLM"));
  CHECK(cfg("{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":10}", NULL, &c, err) < 0 &&
        strstr(err, "missing 'hidden_size'"));
  CHECK(cfg("{\"architectures\":[\"LlamaForCausalLM\"]," LLAMA_BASE ",\"num_key_value_heads\":3}", NULL, &c, err) < 0 &&
        strstr(err, "multiple"));
  CHECK(cfg("{\"architectures\":[\"LlamaForCausalLM\"]," LLAMA_BASE ",\"hidden_act\":\"gelu\"}", NULL, &c, err) < 0 &&
        strstr(err, "gelu"));
  CHECK(cfg("{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":100,\"hidden_size\":\"64\"}", NULL, &c, err) < 0 &&
        strstr(err, "hidden_size"));
  CHECK(cfg("{\"architectures\":[\"LlamaForCausalLM\"]," LLAMA_BASE ",\"num_hidden_layers\":-1}", NULL, &c, err) < 0);
  CHECK(cfg("{not json", NULL, &c, err) < 0 && strstr(err, "invalid JSON"));
  CHECK(cfg("{\"architectures\":[\"LlamaForCausalLM\"]," LLAMA_BASE "}", "{bad", &c, err) < 0 &&
        strstr(err, "generation_config.json"));
  CHECK(cfg("{\"architectures\":[\"LlamaForCausalLM\"]," LLAMA_BASE ",\"eos_token_id\":\"x\"}", NULL, &c, err) < 0 &&
        strstr(err, "eos_token_id"));
}

/* TGI's ROPE_SCALING / ROPE_FACTOR (--rope-scaling / --rope-factor) replace a checkpoint's rope scaling at load */
static void test_rope_env(void) {
  char dir[600], p[700], err[512];
  ig_config c;
  snprintf(dir, sizeof dir, "%s/ropecfg", tmpdir);
  snprintf(p, sizeof p, "mkdir -p %s", dir);
  CHECK(system(p) == 0);
  snprintf(p, sizeof p, "%s/config.json", dir);
  write_text(p, "{\"architectures\":[\"LlamaForCausalLM\"]," LLAMA_BASE ",\"rope_theta\":500000.0,\"rope_scaling\":"
                "{\"rope_type\":\"llama3\",\"factor\":8,\"low_freq_factor\":1,\"high_freq_factor\":4,"
                "\"original_max_position_embeddings\":8192}}");
  unsetenv("ROPE_SCALING");
  unsetenv("ROPE_FACTOR");
  CHECK(ig_config_load(dir, &c, err, sizeof err) == 0 && c.rope.kind == IG_ROPE_LLAMA3 && c.rope.factor == 8);
  ig_config_free(&c);
  setenv("ROPE_SCALING", "dynamic", 1); /* the type alone: factor 1 */
  CHECK(ig_config_load(dir, &c, err, sizeof err) == 0 && c.rope.kind == IG_ROPE_DYNAMIC && c.rope.factor == 1 &&
        c.rope.theta == 500000 && c.rope.original_max_pos == 0);
  ig_config_free(&c);
  setenv("ROPE_FACTOR", "2.5", 1);
  CHECK(ig_config_load(dir, &c, err, sizeof err) == 0 && c.rope.kind == IG_ROPE_DYNAMIC && c.rope.factor == 2.5);
  ig_config_free(&c);
  unsetenv("ROPE_SCALING"); /* the factor alone: linear */
  CHECK(ig_config_load(dir, &c, err, sizeof err) == 0 && c.rope.kind == IG_ROPE_LINEAR && c.rope.factor == 2.5 &&
        c.rope.low_freq_factor == 0);
  ig_config_free(&c);
  setenv("ROPE_FACTOR", "-1", 1);
  CHECK(ig_config_load(dir, &c, err, sizeof err) < 0 && strstr(err, "ROPE_FACTOR") && strstr(err, "-1"));
  setenv("ROPE_FACTOR", "2x", 1);
  CHECK(ig_config_load(dir, &c, err, sizeof err) < 0 && strstr(err, "ROPE_FACTOR"));
  unsetenv("ROPE_FACTOR");
  setenv("ROPE_SCALING", "yarn", 1); /* TGI's launcher takes linear and dynamic only */
  CHECK(ig_config_load(dir, &c, err, sizeof err) < 0 && strstr(err, "ROPE_SCALING") && strstr(err, "yarn"));
  unsetenv("ROPE_SCALING");
}

static void test_modeldir(void) {
  char hf[512], p[2048], out[1024], err[512];
  snprintf(hf, sizeof hf, "%s/hf", tmpdir);
  setenv("HF_HOME", hf, 1);
  unsetenv("HF_HUB_CACHE");
  unsetenv("HUGGINGFACE_HUB_CACHE");
  snprintf(p, sizeof p, "mkdir -p %s/hub/models--org--tiny/snapshots/abc123 %s/hub/models--org--tiny/snapshots/def456 "
           "%s/hub/models--org--tiny/refs", hf, hf, hf);
  CHECK(system(p) == 0);
  snprintf(p, sizeof p, "%s/hub/models--org--tiny/refs/main", hf);
  write_text(p, "abc123\n");
  snprintf(p, sizeof p, "%s/hub/models--org--tiny/refs/v2", hf);
  write_text(p, "def456");
  CHECK(ig_modeldir_resolve("org/tiny", NULL, out, sizeof out, err, sizeof err) == 0 && strstr(out, "snapshots/abc123"));
  CHECK(ig_modeldir_resolve("org/tiny", "v2", out, sizeof out, err, sizeof err) == 0 && strstr(out, "snapshots/def456"));
  CHECK(ig_modeldir_resolve("org/tiny", "def456", out, sizeof out, err, sizeof err) == 0 &&
        strstr(out, "snapshots/def456"));
  CHECK(ig_modeldir_resolve("org/tiny", "nope", out, sizeof out, err, sizeof err) < 0 && strstr(err, "nope"));
  CHECK(ig_modeldir_resolve("org/other", NULL, out, sizeof out, err, sizeof err) < 0 && strstr(err, "cache"));
  CHECK(ig_modeldir_resolve(tmpdir, NULL, out, sizeof out, err, sizeof err) == 0 && !strcmp(out, tmpdir));
  CHECK(ig_modeldir_resolve("../x/y/z", NULL, out, sizeof out, err, sizeof err) < 0);
}

int main(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/ig_test_io_XXXXXX");
  if (!mkdtemp(tmpdir)) return 1;
  test_safetensors();
  test_shards();
  test_config();
  test_rope_env();
  test_modeldir();
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
  if (system(cmd)) fprintf(stderr, "cleanup failed\n");
  TEST_DONE();
}
