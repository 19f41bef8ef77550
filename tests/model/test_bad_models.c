/* tests/model/test_bad_models: broken model directories made from stories260K (wrong shapes, missing
 * tensors, unsupported or inconsistent dtypes, truncated files, absurd header lengths, unknown
 * architecture, bad config.json) must fail ig_model_load with one clear message, and `ignis generate` (when
 * its path is given as argv[1]) must exit non-zero with one error line. */
#include "io/safetensors.h"
#include "model/model.h"
#include "test.h"
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define SRC IG_SHARED_DIR "/models/stories260K"
static char tmp[256];
static const char *ignis;

/* How to alter the checkpoint while copying it. */
typedef struct {
  const char *drop;           /* leave this tensor out */
  const char *retype;         /* give this tensor another dtype name (data unchanged) */
  const char *retype_to;
  const char *reshape;        /* give this tensor shape [a, b] (data unchanged) */
  int64_t shape[2];
  long truncate;              /* cut the file to this many bytes (0: no) */
  uint64_t header_len;        /* write this header length instead (0: the real one) */
} edit;

static void copy_file(const char *from, const char *to) {
  FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
  int c;
  while ((c = fgetc(a)) != EOF) fputc(c, b);
  fclose(a);
  fclose(b);
}

static void make_dir(const char *name, const edit *e, const char *config_sed) {
  char d[512], p[700], cmd[2048];
  snprintf(d, sizeof d, "%s/%s", tmp, name);
  mkdir(d, 0755);
  snprintf(p, sizeof p, "%s/config.json", d);
  copy_file(SRC "/config.json", p);
  if (config_sed) {
    snprintf(cmd, sizeof cmd, "sed -i '%s' %s", config_sed, p);
    CHECK(system(cmd) == 0);
  }
  char err[256];
  ig_st_model *st;
  CHECK(ig_st_open(SRC "/model.safetensors", &st, err, sizeof err) == 0);
  /* new header with the tensors packed in order */
  json_t *h = json_object();
  size_t off = 0;
  for (int i = 0; i < ig_st_count(st); i++) {
    const ig_st_tensor *t = ig_st_at(st, i);
    if (e && e->drop && !strcmp(t->name, e->drop)) continue;
    json_t *o = json_object(), *shape = json_array();
    int re = e && e->reshape && !strcmp(t->name, e->reshape);
    for (int k = 0; k < (re ? 2 : t->n_dims); k++) json_array_append_new(shape, json_integer(re ? e->shape[k] : t->shape[k]));
    int rt = e && e->retype && !strcmp(t->name, e->retype);
    json_object_set_new(o, "dtype", json_string(rt ? e->retype_to : t->dtype_name));
    json_object_set_new(o, "shape", shape);
    json_t *offs = json_array();
    json_array_append_new(offs, json_integer((json_int_t)off));
    json_array_append_new(offs, json_integer((json_int_t)(off + t->nbytes)));
    json_object_set_new(o, "data_offsets", offs);
    json_object_set_new(h, t->name, o);
    off += t->nbytes;
  }
  char *hs = json_dumps(h, JSON_COMPACT);
  json_decref(h);
  snprintf(p, sizeof p, "%s/model.safetensors", d);
  FILE *f = fopen(p, "wb");
  uint64_t n = strlen(hs), hl = e && e->header_len ? e->header_len : n;
  for (int i = 0; i < 8; i++) fputc((int)((hl >> (8 * i)) & 255), f);
  fwrite(hs, 1, n, f);
  for (int i = 0; i < ig_st_count(st); i++) {
    const ig_st_tensor *t = ig_st_at(st, i);
    if (e && e->drop && !strcmp(t->name, e->drop)) continue;
    fwrite(t->data, 1, t->nbytes, f);
  }
  fclose(f);
  free(hs);
  ig_st_close(st);
  if (e && e->truncate) CHECK(truncate(p, e->truncate) == 0);
}

/* Loads tmp/name and checks the error mentions `needle`; then the CLI. */
static void expect_fail(const char *name, const char *needle) {
  char d[512], err[1024] = "";
  snprintf(d, sizeof d, "%s/%s", tmp, name);
  char e2[256];
  ig_backend *be = ig_backend_cpu_create(1, e2, sizeof e2);
  ig_model *m = NULL;
  int rc = ig_model_load(d, be, &m, err, sizeof err);
  CHECK_MSG(rc < 0, "%s: loaded", name);
  CHECK_MSG(strstr(err, needle) != NULL, "%s: error '%s' lacks '%s'", name, err, needle);
  CHECK_MSG(!strchr(err, '\n'), "%s: multi-line error", name);
  fprintf(stderr, "  %-14s -> %s\n", name, err);
  ig_model_free(m);
  be->destroy(be);
  if (!ignis) return;
  char cmd[2048], out[700];
  snprintf(out, sizeof out, "%s/stderr.txt", tmp);
  snprintf(cmd, sizeof cmd, "%s generate --model-id %s --prompt-ids 1,2 --max-new-tokens 2 >/dev/null 2>%s", ignis, d, out);
  int st = system(cmd);
  CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) != 0, "%s: ignis generate exited %d", name, WEXITSTATUS(st));
  /* exactly one error line (besides INFO progress lines), naming the problem */
  FILE *f = fopen(out, "r");
  char line[2048];
  int errors = 0, found = 0;
  while (f && fgets(line, sizeof line, f)) {
    if (strstr(line, " INFO ")) continue;
    errors++;
    found |= strstr(line, needle) != NULL;
  }
  if (f) fclose(f);
  CHECK_MSG(errors == 1 && found, "%s: ignis printed %d error lines (needle found: %d)", name, errors, found);
}

int main(int argc, char **argv) {
  ignis = argc > 1 ? argv[1] : NULL;
  snprintf(tmp, sizeof tmp, "/tmp/ig_test_bad_XXXXXX");
  if (!mkdtemp(tmp)) return 1;
  make_dir("good", NULL, NULL);
  {
    char d[512], err[512], e2[256];
    snprintf(d, sizeof d, "%s/good", tmp);
    ig_backend *be = ig_backend_cpu_create(1, e2, sizeof e2);
    ig_model *m = NULL;
    CHECK_MSG(ig_model_load(d, be, &m, err, sizeof err) == 0, "good copy: %s", err);
    ig_model_free(m);
    be->destroy(be);
  }
  make_dir("missing", &(edit){.drop = "model.layers.3.mlp.up_proj.weight"}, NULL);
  expect_fail("missing", "missing tensor 'model.layers.3.mlp.up_proj.weight'");
  make_dir("shape", &(edit){.reshape = "model.layers.0.self_attn.q_proj.weight", .shape = {32, 128}}, NULL);
  expect_fail("shape", "model.layers.0.self_attn.q_proj.weight' has shape [32, 128]");
  make_dir("hidden", NULL, "s/\"hidden_size\": 64/\"hidden_size\": 128/");
  expect_fail("hidden", "has shape");
  make_dir("dtype", &(edit){.retype = "model.norm.weight", .retype_to = "I32"}, NULL);
  expect_fail("dtype", "tensor 'model.norm.weight': unsupported dtype I32");
  make_dir("dtype_size", &(edit){.retype = "model.norm.weight", .retype_to = "BF16"}, NULL);
  expect_fail("dtype_size", "model.norm.weight': shape [64] of BF16 needs 128 bytes but data_offsets span 256");
  make_dir("truncated", &(edit){.truncate = 500000}, NULL);
  expect_fail("truncated", "truncated");
  make_dir("header_len", &(edit){.header_len = 1ull << 40}, NULL);
  expect_fail("header_len", "absurd");
  make_dir("header_cut", &(edit){.truncate = 100}, NULL);
  expect_fail("header_cut", "truncated");
  make_dir("arch", NULL, "s/LlamaForCausalLM/FalconForCausalLM/");
  expect_fail("arch", "unsupported architecture 'FalconForCausalLM' (supported: LlamaForCausalLM, MistralForCausalLM");
  make_dir("config_json", NULL, "s/\"vocab_size\": 512,/\"vocab_size\": 512/");
  expect_fail("config_json", "config.json: invalid JSON");
  make_dir("heads", NULL, "s/\"num_key_value_heads\": 4/\"num_key_value_heads\": 3/");
  expect_fail("heads", "multiple of num_key_value_heads");
  make_dir("rope", NULL, "s/\"rope_scaling\": null/\"rope_scaling\": {\"rope_type\": \"su_bogus\", \"factor\": 2}/");
  expect_fail("rope", "unsupported rope_scaling type 'su_bogus'");
  make_dir("longrope", NULL, "s/\"rope_scaling\": null/\"rope_scaling\": {\"rope_type\": \"longrope\", \"factor\": 2}/");
  expect_fail("longrope", "'short_factor' must be a list of");
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
  if (system(cmd)) fprintf(stderr, "cleanup failed\n");
  TEST_DONE();
}
