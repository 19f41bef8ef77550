/* bench/cpu_make_model: writes a random-weight Llama checkpoint (config.json + model.safetensors, BF16) for
 * CPU benchmarks. Never commit its output. usage: cpu_make_model DIR [hidden inter layers heads kv_heads vocab]
 * Default: hidden 1536, intermediate 4096, 16 layers, 12/4 heads, vocab 32000, untied: ~501M parameters. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static uint64_t s = 0x1234567;
static uint16_t rnd_bf16(float scale) {
  s ^= s << 13, s ^= s >> 7, s ^= s << 17;
  float f = ((float)(s >> 40) / (float)(1 << 24) * 2 - 1) * scale;
  uint32_t u;
  memcpy(&u, &f, 4);
  return (uint16_t)(u >> 16);
}

typedef struct {
  char name[96];
  int64_t r, c; /* c == 0: 1-D [r] */
  int norm;
} tdef;

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s DIR [hidden inter layers heads kv_heads vocab]\n", argv[0]);
    return 2;
  }
  int H = 1536, I = 4096, L = 16, NH = 12, KV = 4, V = 32000;
  if (argc >= 8) H = atoi(argv[2]), I = atoi(argv[3]), L = atoi(argv[4]), NH = atoi(argv[5]), KV = atoi(argv[6]), V = atoi(argv[7]);
  int hd = H / NH;
  mkdir(argv[1], 0755);
  char p[1024];
  snprintf(p, sizeof p, "%s/config.json", argv[1]);
  FILE *f = fopen(p, "w");
  if (!f) return 1;
  fprintf(f, "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"hidden_size\": %d, "
             "\"intermediate_size\": %d, \"num_hidden_layers\": %d, \"num_attention_heads\": %d, "
             "\"num_key_value_heads\": %d, \"vocab_size\": %d, \"max_position_embeddings\": 4096, "
             "\"rms_norm_eps\": 1e-5, \"rope_theta\": 10000.0, \"tie_word_embeddings\": false, "
             "\"bos_token_id\": 1, \"eos_token_id\": 2, \"torch_dtype\": \"bfloat16\", \"hidden_act\": \"silu\"}\n",
          H, I, L, NH, KV, V);
  fclose(f);
  int nt = 0, cap = 4 + L * 9;
  tdef *t = calloc((size_t)cap, sizeof *t);
#define ADD(nm, rr, cc, nn) (snprintf(t[nt].name, 96, "%s", nm), t[nt].r = rr, t[nt].c = cc, t[nt].norm = nn, nt++)
  ADD("model.embed_tokens.weight", V, H, 0);
  for (int l = 0; l < L; l++) {
    char n[96];
#define LAYER(suf, rr, cc, nn) (snprintf(n, 96, "model.layers.%d.%s", l, suf), ADD(n, rr, cc, nn))
    LAYER("input_layernorm.weight", H, 0, 1);
    LAYER("self_attn.q_proj.weight", NH * hd, H, 0);
    LAYER("self_attn.k_proj.weight", KV * hd, H, 0);
    LAYER("self_attn.v_proj.weight", KV * hd, H, 0);
    LAYER("self_attn.o_proj.weight", H, NH * hd, 0);
    LAYER("post_attention_layernorm.weight", H, 0, 1);
    LAYER("mlp.gate_proj.weight", I, H, 0);
    LAYER("mlp.up_proj.weight", I, H, 0);
    LAYER("mlp.down_proj.weight", H, I, 0);
  }
  ADD("model.norm.weight", H, 0, 1);
  ADD("lm_head.weight", V, H, 0);
  /* header */
  char *hdr = malloc((size_t)nt * 200 + 16);
  size_t o = 0, off = 0;
  o += (size_t)sprintf(hdr + o, "{");
  for (int i = 0; i < nt; i++) {
    int64_t n = t[i].c ? t[i].r * t[i].c : t[i].r;
    if (t[i].c)
      o += (size_t)sprintf(hdr + o, "%s\"%s\":{\"dtype\":\"BF16\",\"shape\":[%lld,%lld],\"data_offsets\":[%zu,%zu]}",
                           i ? "," : "", t[i].name, (long long)t[i].r, (long long)t[i].c, off, off + (size_t)n * 2);
    else
      o += (size_t)sprintf(hdr + o, "%s\"%s\":{\"dtype\":\"BF16\",\"shape\":[%lld],\"data_offsets\":[%zu,%zu]}",
                           i ? "," : "", t[i].name, (long long)t[i].r, off, off + (size_t)n * 2);
    off += (size_t)n * 2;
  }
  o += (size_t)sprintf(hdr + o, "}");
  while (o % 8) hdr[o++] = ' ';
  snprintf(p, sizeof p, "%s/model.safetensors", argv[1]);
  f = fopen(p, "wb");
  uint64_t hl = o;
  fwrite(&hl, 8, 1, f);
  fwrite(hdr, 1, o, f);
  uint16_t *buf = malloc(sizeof(uint16_t) * 1 << 20);
  int64_t params = 0;
  for (int i = 0; i < nt; i++) {
    int64_t n = t[i].c ? t[i].r * t[i].c : t[i].r;
    params += n;
    float scale = t[i].c ? 1.0f / (float)__builtin_sqrt((double)t[i].c) : 0;
    for (int64_t k = 0; k < n;) {
      int64_t m = n - k < (1 << 20) ? n - k : (1 << 20);
      for (int64_t j = 0; j < m; j++) buf[j] = t[i].norm ? 0x3f80 /* 1.0 */ : rnd_bf16(scale);
      fwrite(buf, 2, (size_t)m, f);
      k += m;
    }
  }
  fclose(f);
  printf("%s: %lld parameters, %.1f MiB\n", argv[1], (long long)params, (double)off / 1048576.0);
  free(buf);
  free(hdr);
  free(t);
  return 0;
}
