/* app/cmd_tokenize: `ignis tokenize --model-id DIR [--no-special] [--offsets-only] TEXT` prints the tokens as
 * a JSON array of {"id","text","start","stop"} (text = the input bytes the token covers, TGI's /tokenize
 * shape); `--decode 1,2,3 [--skip-special]` prints the decoded text. TEXT "-" (or none) reads stdin. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/cmds.h"
#include "tok/tok.h"
#include "util/file.h"
#include "util/str.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: ignis tokenize --model-id DIR [--no-special] [--pieces] TEXT\n"
          "       ignis tokenize --model-id DIR --decode 1,2,3 [--skip-special]\n"
          "  DIR holds tokenizer.json (and optionally tokenizer_config.json); an org/name id is looked up in\n"
          "  the Hugging Face cache ($HF_HOME/hub). TEXT '-' or absent: read stdin. MODEL_ID env works too.\n"
          "  --no-special    do not add the post-processor's special tokens (BOS/EOS)\n"
          "  --pieces        also print each token's vocabulary string as \"piece\"\n");
}

/* org/name -> $HF_HOME/hub/models--org--name/snapshots/<first>; returns malloc'd path or NULL. */
static char *hf_cache_dir(const char *id) {
  if (!strchr(id, '/') || id[0] == '/' || id[0] == '.') return NULL;
  const char *home = getenv("HF_HOME");
  char base[4096], repo[1024];
  if (home) snprintf(base, sizeof base, "%s/hub", home);
  else snprintf(base, sizeof base, "%s/.cache/huggingface/hub", getenv("HOME") ? getenv("HOME") : ".");
  size_t k = 0;
  for (const char *p = id; *p && k + 3 < sizeof repo; p++) {
    if (*p == '/') repo[k++] = '-', repo[k++] = '-';
    else repo[k++] = *p;
  }
  repo[k] = 0;
  char snap[6144];
  snprintf(snap, sizeof snap, "%s/models--%s/snapshots", base, repo);
  DIR *d = opendir(snap);
  if (!d) return NULL;
  struct dirent *e;
  char *res = NULL;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    size_t n = strlen(snap) + strlen(e->d_name) + 2;
    res = malloc(n);
    if (res) snprintf(res, n, "%s/%s", snap, e->d_name);
    break;
  }
  closedir(d);
  return res;
}

static int read_stdin(ig_str *s) {
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, stdin)) > 0)
    if (ig_str_append(s, buf, n)) return -1;
  return ferror(stdin) ? -1 : 0;
}

static int parse_ids(const char *s, int32_t **ids, size_t *n) {
  size_t cap = 16;
  *n = 0;
  *ids = malloc(cap * sizeof **ids);
  if (!*ids) return -1;
  while (*s) {
    while (*s == ' ' || *s == ',' || *s == '[' || *s == ']' || *s == '\n') s++;
    if (!*s) break;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || errno || v < 0 || v > INT32_MAX) return -1;
    if (*n == cap) {
      cap *= 2;
      int32_t *q = realloc(*ids, cap * sizeof *q);
      if (!q) return -1;
      *ids = q;
    }
    (*ids)[(*n)++] = (int32_t)v;
    s = end;
  }
  return 0;
}

int ig_cmd_tokenize(int argc, char **argv) {
  const char *model = getenv("MODEL_ID"), *text = NULL, *decode = NULL;
  int special = 1, skip_special = 0, pieces = 0;
  if (!model) model = getenv("HF_MODEL_ID");
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(a, "--model-id") && i + 1 < argc) model = argv[++i];
    else if (!strncmp(a, "--model-id=", 11)) model = a + 11;
    else if (!strcmp(a, "--no-special")) special = 0;
    else if (!strcmp(a, "--skip-special")) skip_special = 1;
    else if (!strcmp(a, "--pieces")) pieces = 1;
    else if (!strcmp(a, "--decode") && i + 1 < argc) decode = argv[++i];
    else if (!strncmp(a, "--decode=", 9)) decode = a + 9;
    else if (!strcmp(a, "--")) { if (i + 1 < argc) text = argv[++i]; }
    else if (a[0] == '-' && a[1]) {
      fprintf(stderr, "ignis tokenize: unknown option '%s'\n", a);
      usage(stderr);
      return 2;
    } else text = a;
  }
  if (!model) {
    fprintf(stderr, "ignis tokenize: --model-id DIR is required\n");
    return 2;
  }
  char *cached = ig_dir_exists(model) ? NULL : hf_cache_dir(model);
  char err[512];
  ig_tok *tok;
  int rc = ig_tok_load(&tok, cached ? cached : model, err, sizeof err);
  free(cached);
  if (rc) {
    fprintf(stderr, "ignis tokenize: %s\n", err);
    return 1;
  }
  ig_str out, in;
  ig_str_init(&out);
  ig_str_init(&in);
  int status = 0;
  if (decode) {
    int32_t *ids = NULL;
    size_t n = 0;
    if (parse_ids(decode, &ids, &n)) {
      fprintf(stderr, "ignis tokenize: --decode wants comma-separated token ids\n");
      status = 2;
    } else {
      for (size_t i = 0; i < n; i++)
        if (ids[i] >= ig_tok_vocab_size(tok)) fprintf(stderr, "ignis tokenize: warning: id %d is outside the vocabulary\n", ids[i]);
      if (ig_tok_decode_to(tok, ids, n, skip_special, &out)) status = 1;
      else printf("%.*s\n", (int)out.len, out.p ? out.p : "");
    }
    free(ids);
  } else {
    if (!text || !strcmp(text, "-")) {
      if (read_stdin(&in)) {
        fprintf(stderr, "ignis tokenize: cannot read stdin\n");
        status = 1;
      }
    } else {
      ig_str_puts(&in, text);
    }
    ig_tok_enc enc = {0};
    if (!status && ig_tok_encode(tok, in.p ? in.p : "", in.len, special, 1, &enc)) {
      fprintf(stderr, "ignis tokenize: out of memory\n");
      status = 1;
    }
    if (!status) {
      ig_str_putc(&out, '[');
      for (size_t i = 0; i < enc.n; i++) {
        uint32_t s = enc.offsets[2 * i], e = enc.offsets[2 * i + 1];
        ig_str_printf(&out, "%s\n  {\"id\": %d, \"text\": ", i ? "," : "", enc.ids[i]);
        if (s == e && ig_tok_is_special(tok, enc.ids[i])) {
          size_t pl;
          const char *p = ig_tok_id_to_piece(tok, enc.ids[i], &pl);
          ig_str_json_string(&out, p ? p : "", p ? pl : 0);
        } else {
          ig_str_json_string(&out, in.p + s, e - s);
        }
        ig_str_printf(&out, ", \"start\": %u, \"stop\": %u", s, e);
        if (pieces) {
          size_t pl;
          const char *p = ig_tok_id_to_piece(tok, enc.ids[i], &pl);
          ig_str_puts(&out, ", \"piece\": ");
          ig_str_json_string(&out, p ? p : "", p ? pl : 0);
        }
        ig_str_putc(&out, '}');
      }
      ig_str_puts(&out, enc.n ? "\n]\n" : "]\n");
      if (out.oom) status = 1;
      else fwrite(out.p, 1, out.len, stdout);
    }
    ig_tok_enc_free(&enc);
  }
  ig_str_free(&out);
  ig_str_free(&in);
  ig_tok_free(tok);
  return status;
}
