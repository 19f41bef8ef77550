/* bench/prompts: see prompts.h. Also ig_bench_prepare, which picks the tokenizer (the local one from --model-id,
 * else the server's /tokenize) and makes or loads the prompts of a run. */
#include "bench/prompts.h"
#include "io/modeldir.h"
#include "tok/tok.h"
#include "bench/net.h"
#include "util/file.h"
#include "util/str.h"
#include <event2/event.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- words ---- */

/* Common English words, with a few long ones so tokenizers split some of them. ASCII only, so byte and
 * character offsets agree whatever the server reports. */
static const char *const words[] = {
    "the", "of", "and", "to", "in", "is", "was", "that", "for", "on", "with", "as", "by", "at", "from", "his",
    "her", "they", "which", "one", "you", "were", "all", "we", "when", "there", "can", "an", "your", "each",
    "about", "how", "up", "out", "them", "then", "she", "many", "some", "so", "these", "would", "other", "into",
    "has", "more", "two", "like", "him", "see", "time", "could", "no", "make", "than", "first", "been", "its",
    "who", "now", "people", "my", "made", "over", "did", "down", "only", "way", "find", "use", "may", "water",
    "long", "little", "very", "after", "words", "called", "just", "where", "most", "know", "get", "through",
    "back", "much", "before", "go", "good", "new", "write", "our", "used", "me", "man", "too", "any", "day",
    "same", "right", "look", "think", "also", "around", "another", "came", "come", "work", "three", "word",
    "must", "because", "does", "part", "even", "place", "well", "such", "here", "take", "why", "things", "help",
    "put", "years", "different", "away", "again", "off", "went", "old", "number", "great", "tell", "men", "say",
    "small", "every", "found", "still", "between", "name", "should", "home", "big", "give", "air", "line", "set",
    "own", "under", "read", "last", "never", "us", "left", "end", "along", "while", "might", "next", "sound",
    "below", "saw", "something", "thought", "both", "few", "those", "always", "looked", "show", "large",
    "often", "together", "asked", "house", "world", "going", "want", "school", "important", "until", "form",
    "food", "keep", "children", "feet", "land", "side", "without", "boy", "once", "animals", "life", "enough",
    "took", "sometimes", "four", "head", "above", "kind", "began", "almost", "live", "page", "got", "earth",
    "need", "far", "hand", "high", "year", "mother", "light", "country", "father", "night", "following",
    "picture", "being", "study", "second", "soon", "story", "since", "white", "ever", "paper", "hard", "near",
    "sentence", "better", "best", "across", "during", "today", "however", "sure", "knew", "try", "told",
    "young", "sun", "thing", "whole", "hear", "example", "heard", "several", "change", "answer", "room", "sea",
    "against", "top", "turned", "learn", "point", "city", "play", "toward", "five", "himself", "usually",
    "money", "seen", "car", "morning", "body", "upon", "family", "later", "turn", "move", "face", "door",
    "cut", "done", "group", "true", "leave", "color", "red", "friends", "easy", "remember", "garden",
    "mountain", "river", "forest", "beautiful", "wonderful", "dragon", "princess", "adventure", "extraordinary",
    "nevertheless", "understanding", "responsibility", "imagination", "characteristic", "unbelievable"};
#define N_WORDS (sizeof words / sizeof words[0])

void ig_bench_random_words(ig_bench_rng *rng, int n_words, ig_str *out) {
  for (int i = 0; i < n_words; i++) {
    if (out->len) ig_str_putc(out, ' ');
    ig_str_puts(out, words[ig_bench_rng_below(rng, (uint32_t)N_WORDS)]);
  }
}

/* ---- synthetic prompts ---- */

static int count_tokens(const ig_bench_tokenizer *tk, const char *text, int *n, ig_bench_span **spans, char *err,
                        size_t errlen) {
  *spans = NULL;
  return tk->tokenize(tk->ud, text, n, spans, err, errlen);
}

/* Prompts of `want` tokens, built from random words. With spans: cut the text after the want-th token and
 * re-count, moving the cut by the difference (merges across the cut can change the count by a few), at most
 * 8 times. Without spans: move the number of words by the estimated difference. */
int ig_bench_synth_prompt(const ig_bench_tokenizer *tk, ig_bench_rng *rng, int want, char **text, int *got,
                          char *err, size_t errlen) {
  *text = NULL;
  *got = 0;
  if (want < 1) want = 1;
  ig_str s;
  ig_str_init(&s);
  ig_bench_span *sp = NULL;
  int n = 0, rc = -1;
  int n_words = want + 8; /* tokens per word is >= 1 for nearly all tokenizers */
  ig_bench_random_words(rng, n_words, &s);
  for (int tries = 0;; tries++) {
    free(sp);
    if (count_tokens(tk, s.p, &n, &sp, err, errlen)) goto out;
    if (n >= want) break;
    if (tries > 20) {
      snprintf(err, errlen, "tokenizer returns too few tokens (%d for %zu bytes)", n, s.len);
      goto out;
    }
    ig_bench_random_words(rng, n_words, &s); /* double the text */
    n_words *= 2;
  }
  if (s.oom) {
    snprintf(err, errlen, "out of memory");
    goto out;
  }
  if (sp) {
    /* the full text's spans: try cuts after token k, starting at k = want - 1 */
    ig_bench_span *full = sp;
    int nfull = n;
    sp = NULL;
    int k = want - 1, best_k = -1, best_n = 0;
    for (int it = 0; it < 8; it++) {
      if (k < 0) k = 0;
      if (k >= nfull) k = nfull - 1;
      while (k < nfull - 1 && full[k].stop <= 0) k++; /* a leading special token has no text */
      int cut = full[k].stop;
      if (cut <= 0 || cut > (int)s.len) break;
      char save = s.p[cut];
      s.p[cut] = 0;
      int n2 = 0;
      ig_bench_span *sp2 = NULL;
      int trc = count_tokens(tk, s.p, &n2, &sp2, err, errlen);
      s.p[cut] = save;
      free(sp2);
      if (trc) {
        free(full);
        goto out;
      }
      if (best_k < 0 || abs(n2 - want) < abs(best_n - want)) best_k = k, best_n = n2;
      if (n2 == want) break;
      int nk = k + (want - n2);
      if (nk == k) break;
      k = nk;
    }
    if (best_k < 0) {
      free(full);
      snprintf(err, errlen, "tokenizer gave unusable offsets");
      goto out;
    }
    s.p[full[best_k].stop] = 0;
    s.len = (size_t)full[best_k].stop;
    n = best_n;
    free(full);
  } else {
    /* counts only: adjust the number of words */
    double ratio = (double)n / (double)n_words;
    int w = (int)lround(want / ratio);
    if (w < 1) w = 1;
    int best_w = -1, best_n = 0, prev_diff = 0, fine = 0;
    ig_str t;
    ig_str_init(&t);
    for (int it = 0; it < 10; it++) {
      /* first w words of s */
      size_t end = 0;
      int seen = 0;
      while (end < s.len && seen < w) {
        while (end < s.len && s.p[end] != ' ') end++;
        seen++;
        if (seen < w) end++;
      }
      ig_str_clear(&t);
      ig_str_append(&t, s.p, end);
      int n2;
      ig_bench_span *sp2 = NULL;
      if (count_tokens(tk, t.p, &n2, &sp2, err, errlen)) {
        ig_str_free(&t);
        goto out;
      }
      free(sp2);
      if (best_w < 0 || abs(n2 - want) < abs(best_n - want)) best_w = w, best_n = n2;
      if (n2 == want) break;
      int step = (int)lround((want - n2) / ratio);
      if (step == 0) step = want > n2 ? 1 : -1;
      if (prev_diff && (prev_diff > 0) != (want - n2 > 0)) fine = 1; /* overshot: walk one word at a time */
      if (fine) step = want > n2 ? 1 : -1;
      prev_diff = want - n2;
      w += step;
      if (w < 1) w = 1;
      if (w > n_words) w = n_words;
    }
    ig_str_free(&t);
    size_t end = 0;
    int seen = 0;
    while (end < s.len && seen < best_w) {
      while (end < s.len && s.p[end] != ' ') end++;
      seen++;
      if (seen < best_w) end++;
    }
    s.p[end] = 0;
    s.len = end;
    n = best_n;
  }
  *got = n;
  *text = ig_str_steal(&s, NULL);
  rc = *text ? 0 : -1;
out:
  free(sp);
  ig_str_free(&s);
  return rc;
}

/* ---- /tokenize answers ---- */

int ig_bench_parse_tokenize(const char *json, size_t len, int *n, ig_bench_span **spans, char *err, size_t errlen) {
  *n = 0;
  *spans = NULL;
  json_error_t je;
  json_t *root = json_loadb(json, len, 0, &je);
  if (!root) {
    snprintf(err, errlen, "/tokenize answer is not JSON: %s", je.text);
    return -1;
  }
  int rc = -1;
  if (json_is_array(root)) { /* TGI: [{id,text,start,stop}] */
    size_t cnt = json_array_size(root);
    ig_bench_span *sp = cnt ? calloc(cnt, sizeof *sp) : NULL;
    if (cnt && !sp) goto out;
    int have_spans = 1;
    for (size_t i = 0; i < cnt; i++) {
      json_t *t = json_array_get(root, i);
      json_t *a = json_object_get(t, "start"), *b = json_object_get(t, "stop");
      if (!json_is_integer(a) || !json_is_integer(b)) {
        have_spans = 0;
        continue;
      }
      sp[i].start = (int)json_integer_value(a);
      sp[i].stop = (int)json_integer_value(b);
    }
    if (!have_spans) {
      free(sp);
      sp = NULL;
    }
    *n = (int)cnt;
    *spans = sp;
    rc = 0;
  } else if (json_is_object(root)) {
    json_t *count = json_object_get(root, "count"), *toks = json_object_get(root, "tokens");
    if (json_is_integer(count)) *n = (int)json_integer_value(count), rc = 0;
    else if (json_is_array(toks)) *n = (int)json_array_size(toks), rc = 0;
    else {
      json_t *e = json_object_get(root, "error");
      snprintf(err, errlen, "/tokenize: %s", json_is_string(e) ? json_string_value(e) : "unexpected answer");
    }
  } else {
    snprintf(err, errlen, "/tokenize: unexpected answer");
  }
out:
  json_decref(root);
  return rc;
}

/* ---- the server's tokenizer ---- */

typedef struct server_tok {
  struct event_base *base;
  ig_bench_target target;
  const ig_bench_config *cfg;
  const char *model;
  ig_str body, resp;
  int calls;
} server_tok;

static int server_tokenize(void *ud, const char *text, int *n, ig_bench_span **spans, char *err, size_t errlen) {
  server_tok *st = ud;
  ig_str_clear(&st->body);
  /* TGI reads "inputs"; vLLM reads "prompt" (and "model"); llama.cpp reads "content". */
  ig_str_puts(&st->body, "{\"inputs\":");
  ig_str_json_string(&st->body, text, strlen(text));
  if (st->cfg->api == IG_BENCH_API_OPENAI) {
    ig_str_puts(&st->body, ",\"prompt\":");
    ig_str_json_string(&st->body, text, strlen(text));
    ig_str_puts(&st->body, ",\"content\":");
    ig_str_json_string(&st->body, text, strlen(text));
    if (st->model) {
      ig_str_puts(&st->body, ",\"model\":");
      ig_str_json_string(&st->body, st->model, strlen(st->model));
    }
  }
  ig_str_putc(&st->body, '}');
  if (st->body.oom) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  int status = 0;
  st->calls++;
  if (ig_bench_http_once(st->base, &st->target, "POST", "/tokenize", st->body.p, 60, &status, &st->resp, err,
                         errlen))
    return -1;
  if (status != 200) {
    snprintf(err, errlen, "POST /tokenize answered %d: %.80s", status, st->resp.p ? st->resp.p : "");
    return -1;
  }
  return ig_bench_parse_tokenize(st->resp.p ? st->resp.p : "", st->resp.len, n, spans, err, errlen);
}

/* The local tokenizer for --model-id DIR (a directory or an org/name in the HF cache): counts tokens with
 * special tokens added, as the server's /tokenize does, and reports byte spans. */
static int local_tokenize(void *ud, const char *text, int *n, ig_bench_span **spans, char *err, size_t errlen) {
  ig_tok_enc e = {0};
  *n = 0;
  *spans = NULL;
  if (ig_tok_encode((const ig_tok *)ud, text, strlen(text), 1, 1, &e)) {
    snprintf(err, errlen, "local tokenizer: encode failed");
    ig_tok_enc_free(&e);
    return -1;
  }
  ig_bench_span *sp = malloc((e.n ? e.n : 1) * sizeof *sp);
  if (!sp) {
    ig_tok_enc_free(&e);
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  for (size_t i = 0; i < e.n; i++) {
    sp[i].start = (int)e.offsets[2 * i];
    sp[i].stop = (int)e.offsets[2 * i + 1];
  }
  *n = (int)e.n;
  *spans = sp;
  ig_tok_enc_free(&e);
  return 0;
}

static int local_tokenizer_open(const char *model_id, ig_bench_tokenizer *tk, char *err, size_t errlen) {
  char dir[4096];
  if (ig_modeldir_resolve(model_id, NULL, dir, sizeof dir, err, errlen)) return -1;
  ig_tok *t = NULL;
  if (ig_tok_load(&t, dir, err, errlen)) return -1;
  tk->ud = t;
  tk->tokenize = local_tokenize;
  return 0;
}

/* ---- files ---- */

static int estimate_tokens(const char *text) {
  int w = 0, in = 0;
  for (const char *p = text; *p; p++) {
    int sp = *p == ' ' || *p == '\n' || *p == '\t' || *p == '\r';
    if (!sp && !in) w++;
    in = !sp;
  }
  int t = (int)lround(w * 1.3);
  return t < 1 ? 1 : t;
}

static const char *turn_text(json_t *turn, const char **who) {
  json_t *from = json_object_get(turn, "from");
  if (!from) from = json_object_get(turn, "role");
  json_t *val = json_object_get(turn, "value");
  if (!val) val = json_object_get(turn, "content");
  *who = json_is_string(from) ? json_string_value(from) : "";
  return json_is_string(val) ? json_string_value(val) : NULL;
}

static int record_from_json(json_t *o, int default_out, ig_bench_prompt *p) {
  memset(p, 0, sizeof *p);
  const char *prompt = NULL;
  int out = -1;
  json_t *j = json_object_get(o, "prompt");
  if (json_is_string(j)) prompt = json_string_value(j);
  const char *keys[] = {"output_tokens", "output_len", "max_tokens", "max_new_tokens"};
  for (size_t i = 0; i < 4 && out < 0; i++) {
    json_t *v = json_object_get(o, keys[i]);
    if (json_is_integer(v) && json_integer_value(v) > 0) out = (int)json_integer_value(v);
  }
  json_t *conv = json_object_get(o, "conversations");
  if (!conv) conv = json_object_get(o, "conversation");
  if (!prompt && json_is_array(conv)) {
    size_t n = json_array_size(conv);
    for (size_t i = 0; i < n; i++) {
      const char *who, *txt = turn_text(json_array_get(conv, i), &who);
      if (!txt || (strcmp(who, "human") && strcmp(who, "user"))) continue;
      prompt = txt;
      if (out < 0 && i + 1 < n) {
        const char *who2, *ans = turn_text(json_array_get(conv, i + 1), &who2);
        if (ans && (!strcmp(who2, "gpt") || !strcmp(who2, "assistant") || !strcmp(who2, "chatgpt")))
          out = estimate_tokens(ans);
      }
      break;
    }
  }
  if (!prompt || !*prompt) return 1; /* skipped */
  p->text = strdup(prompt);
  if (!p->text) return -1;
  p->input_tokens = estimate_tokens(prompt);
  p->input_exact = 0;
  p->output_tokens = out > 0 ? out : default_out;
  return 0;
}

static int add_record(json_t *o, int default_out, ig_bench_prompts *out, int *cap, int *skipped) {
  if (!json_is_object(o)) {
    (*skipped)++;
    return 0;
  }
  if (out->n == *cap) {
    int nc = *cap ? *cap * 2 : 64;
    ig_bench_prompt *v = realloc(out->v, (size_t)nc * sizeof *v);
    if (!v) return -1;
    out->v = v;
    *cap = nc;
  }
  int rc = record_from_json(o, default_out, &out->v[out->n]);
  if (rc < 0) return -1;
  if (rc == 0) out->n++;
  else (*skipped)++;
  return 0;
}

int ig_bench_prompts_parse(const char *data, size_t len, int default_out, ig_bench_prompts *out, char *err,
                           size_t errlen) {
  memset(out, 0, sizeof *out);
  int cap = 0, skipped = 0;
  size_t i = 0;
  while (i < len && (data[i] == ' ' || data[i] == '\n' || data[i] == '\r' || data[i] == '\t')) i++;
  if (i < len && data[i] == '[') {
    json_error_t je;
    json_t *root = json_loadb(data, len, 0, &je);
    if (!root) {
      snprintf(err, errlen, "prompts file: line %d: %s", je.line, je.text);
      return -1;
    }
    for (size_t k = 0; k < json_array_size(root); k++) {
      if (add_record(json_array_get(root, k), default_out, out, &cap, &skipped)) {
        json_decref(root);
        ig_bench_prompts_free(out);
        snprintf(err, errlen, "out of memory");
        return -1;
      }
    }
    json_decref(root);
  } else {
    int line = 0;
    while (i < len) {
      size_t e = i;
      while (e < len && data[e] != '\n') e++;
      line++;
      size_t a = i;
      while (a < e && (data[a] == ' ' || data[a] == '\t' || data[a] == '\r')) a++;
      if (a < e) {
        json_error_t je;
        json_t *o = json_loadb(data + a, e - a, 0, &je);
        if (!o) {
          snprintf(err, errlen, "prompts file: line %d: %s", line, je.text);
          ig_bench_prompts_free(out);
          return -1;
        }
        int rc = add_record(o, default_out, out, &cap, &skipped);
        json_decref(o);
        if (rc) {
          ig_bench_prompts_free(out);
          snprintf(err, errlen, "out of memory");
          return -1;
        }
      }
      i = e + 1;
    }
  }
  if (out->n == 0) {
    snprintf(err, errlen, "prompts file has no usable record (%d skipped)", skipped);
    ig_bench_prompts_free(out);
    return -1;
  }
  snprintf(out->note, sizeof out->note, "%d prompts from file (%d records skipped)", out->n, skipped);
  return 0;
}

void ig_bench_prompts_free(ig_bench_prompts *p) {
  for (int i = 0; i < p->n; i++) free(p->v[i].text);
  free(p->v);
  memset(p, 0, sizeof *p);
}

/* ---- prepare ---- */

int ig_bench_prepare(const ig_bench_config *cfg, ig_bench_prompts *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  int total = cfg->num_requests + cfg->warmup;
  server_tok st = {0};
  st.cfg = cfg;
  st.model = cfg->model;
  ig_str_init(&st.body);
  ig_str_init(&st.resp);
  ig_bench_tokenizer tk = {&st, server_tokenize};
  const char *tok_name = "the server's /tokenize";
  int rc = -1;
  if (ig_bench_target_parse(cfg->url, &st.target, err, errlen)) return -1;
  st.base = event_base_new();
  if (!st.base) {
    snprintf(err, errlen, "event_base_new failed");
    return -1;
  }
  if (cfg->model_id) {
    char lerr[160];
    if (local_tokenizer_open(cfg->model_id, &tk, lerr, sizeof lerr) == 0) tok_name = "the local tokenizer";
    else fprintf(stderr, "ignis bench: --model-id: %s; using the server's /tokenize\n", lerr);
  }

  if (cfg->prompts_file) {
    char *data = NULL;
    size_t len = 0;
    if (ig_file_read(cfg->prompts_file, (size_t)1 << 31, &data, &len, err, errlen)) goto out;
    int def_out = cfg->output_tokens > 0 ? cfg->output_tokens : 128;
    rc = ig_bench_prompts_parse(data, len, def_out, out, err, errlen);
    free(data);
    if (rc) goto out;
    rc = -1;
    if (cfg->output_tokens > 0)
      for (int i = 0; i < out->n; i++) out->v[i].output_tokens = cfg->output_tokens;
    /* count the input tokens of the prompts that will be sent; keep the estimates if that fails */
    int used = out->n < total ? out->n : total;
    char terr[200];
    int counted = 0;
    for (int i = 0; i < used; i++) {
      int n;
      ig_bench_span *sp = NULL;
      if (tk.tokenize(tk.ud, out->v[i].text, &n, &sp, terr, sizeof terr)) {
        fprintf(stderr, "ignis bench: cannot count prompt tokens (%s); input lengths are estimates\n", terr);
        break;
      }
      free(sp);
      out->v[i].input_tokens = n;
      out->v[i].input_exact = 1;
      counted++;
    }
    size_t nl = strlen(out->note);
    snprintf(out->note + nl, sizeof out->note - nl, "; input tokens %s", counted == used ? "counted" : "estimated");
    rc = 0;
    goto out;
  }

  /* synthetic prompts */
  int distinct = total < cfg->max_distinct_prompts ? total : cfg->max_distinct_prompts;
  if (distinct < 1) distinct = 1;
  out->v = calloc((size_t)distinct, sizeof *out->v);
  if (!out->v) {
    snprintf(err, errlen, "out of memory");
    goto out;
  }
  ig_bench_rng rng;
  ig_bench_rng_seed(&rng, cfg->seed ^ 0x70726f6d7074ULL);
  int inexact = 0, estimated = 0;
  for (int i = 0; i < distinct; i++) {
    ig_bench_prompt *p = &out->v[i];
    p->output_tokens = cfg->output_tokens > 0 ? cfg->output_tokens : 128;
    char terr[200];
    if (!estimated && ig_bench_synth_prompt(&tk, &rng, cfg->input_tokens, &p->text, &p->input_tokens, terr,
                                            sizeof terr) == 0) {
      p->input_exact = 1;
      if (p->input_tokens != cfg->input_tokens) inexact++;
    } else {
      if (!estimated) {
        if (i > 0) { /* the tokenizer worked before: a real failure */
          snprintf(err, errlen, "%s", terr);
          goto out;
        }
        fprintf(stderr, "ignis bench: %s; synthetic prompt lengths are estimates (1.3 tokens per word)\n", terr);
        estimated = 1;
      }
      ig_str s;
      ig_str_init(&s);
      ig_bench_random_words(&rng, (int)lround(cfg->input_tokens / 1.3) + 1, &s);
      p->text = ig_str_steal(&s, NULL);
      if (!p->text) {
        snprintf(err, errlen, "out of memory");
        goto out;
      }
      p->input_tokens = cfg->input_tokens;
      p->input_exact = 0;
    }
    out->n = i + 1;
  }
  if (estimated)
    snprintf(out->note, sizeof out->note, "%d synthetic prompts of ~%d tokens (estimated, no tokenizer)", out->n,
             cfg->input_tokens);
  else
    snprintf(out->note, sizeof out->note, "%d synthetic prompts of %d tokens by %s (%d off by merges)", out->n,
             cfg->input_tokens, tok_name, inexact);
  rc = 0;
out:
  if (rc) ig_bench_prompts_free(out);
  if (tk.tokenize == local_tokenize) ig_tok_free((ig_tok *)tk.ud);
  ig_str_free(&st.body);
  ig_str_free(&st.resp);
  event_base_free(st.base);
  return rc;
}
