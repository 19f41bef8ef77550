/* bench/prompts: the prompts a benchmark sends. Synthetic prompts of exactly I tokens are random words
 * trimmed with a tokenizer that reports token offsets (the server's POST /tokenize, later the local one);
 * file prompts come from JSONL / JSON arrays ({"prompt","output_tokens"} or ShareGPT conversations). */
#ifndef IG_BENCH_PROMPTS_H
#define IG_BENCH_PROMPTS_H
#include "bench/bench.h"
#include "bench/rng.h"
#include "util/str.h"
#include <stddef.h>

/* A token's byte span in the text; special tokens (BOS) have start == stop. */
typedef struct ig_bench_span {
  int start, stop;
} ig_bench_span;

/* A tokenizer seen from the benchmark: count the tokens of text, with their spans when it knows them
 * (*spans is malloc'ed, caller frees; NULL when the tokenizer gives counts only). Returns 0 or -1. */
typedef struct ig_bench_tokenizer {
  void *ud;
  int (*tokenize)(void *ud, const char *text, int *n, ig_bench_span **spans, char *err, size_t errlen);
} ig_bench_tokenizer;

/* Make one synthetic prompt of `want` tokens (as tk counts them). *text is malloc'ed. *got is the
 * tokenizer's count of the result (== want unless the tokenizer's merges made that impossible). */
int ig_bench_synth_prompt(const ig_bench_tokenizer *tk, ig_bench_rng *rng, int want, char **text, int *got,
                          char *err, size_t errlen);
/* Random words, about n_words of them, appended to out (space separated). */
void ig_bench_random_words(ig_bench_rng *rng, int n_words, ig_str *out);

/* Parse a prompts file held in memory (JSONL or a JSON array). default_out applies where a record gives no
 * output length. Input tokens are estimated (words * 1.3) and marked inexact. */
int ig_bench_prompts_parse(const char *data, size_t len, int default_out, ig_bench_prompts *out, char *err,
                           size_t errlen);
/* Parse a server's /tokenize answer: TGI's [{id,text,start,stop}], vLLM's {"count","tokens"} or
 * llama.cpp's {"tokens"}. */
int ig_bench_parse_tokenize(const char *json, size_t len, int *n, ig_bench_span **spans, char *err, size_t errlen);

#endif
