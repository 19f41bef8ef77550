/* bench/tmpl_bench: microseconds per render of real chat templates (compiled once, rendered many times),
 * the number bench/tmpl_bench.py measures for Python's jinja2.
 *   build-tmpl/bench_tmpl [fixtures_dir] [renders]   (fixtures_dir defaults to tests/fixtures/templates) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tmpl/tmpl.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}
static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  const char *fix = argc > 1 ? argv[1] : "tests/fixtures/templates";
  int renders = argc > 2 ? atoi(argv[2]) : 20000;
  char path[1024];
  snprintf(path, sizeof path, "%s/conversations.json", fix);
  json_t *convs = json_load_file(path, 0, NULL);
  if (!convs) {
    fprintf(stderr, "cannot read %s\n", path);
    return 1;
  }
  static const char *const models[] = {"llama3_3", "npm_qwen3"};
  static const char *const conv_names[] = {"ten_turns", "tools_call"};
  printf("%-10s %-11s %8s %12s %12s\n", "template", "conversation", "bytes", "us/render", "compile us");
  for (int m = 0; m < 2; m++) {
    snprintf(path, sizeof path, "%s/%s", fix, models[m]);
    ig_tmpl_config cfg;
    char err[512];
    if (ig_tmpl_config_load(path, &cfg, err, sizeof err)) {
      fprintf(stderr, "%s\n", err);
      return 1;
    }
    double t0 = now_s();
    ig_tmpl *t = NULL;
    for (int i = 0; i < 100; i++) {
      ig_tmpl_free(t);
      if (ig_tmpl_compile(cfg.chat_template, strlen(cfg.chat_template), &t, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
      }
    }
    double compile_us = (now_s() - t0) / 100 * 1e6;
    for (int k = 0; k < 2; k++) {
      json_t *conv = json_object_get(convs, conv_names[k]);
      ig_tmpl_chat chat = {.messages = json_object_get(conv, "messages"), .tools = json_object_get(conv, "tools"),
                           .add_generation_prompt = 1, .special_tokens = cfg.special_tokens};
      ig_tmpl_opts opts = {.now = 1795435200};
      size_t bytes = 0;
      double runs[5];
      for (int r = 0; r < 5; r++) {
        double a = now_s();
        for (int i = 0; i < renders; i++) {
          char *out;
          if (ig_tmpl_render_chat(t, &chat, &opts, &out, &bytes, err, sizeof err)) {
            fprintf(stderr, "%s\n", err);
            return 1;
          }
          free(out);
        }
        runs[r] = (now_s() - a) / renders * 1e6;
      }
      qsort(runs, 5, sizeof runs[0], cmp_d);
      printf("%-10s %-11s %8zu %12.2f %12.1f\n", models[m], conv_names[k], bytes, runs[2], compile_us);
    }
    ig_tmpl_free(t);
    ig_tmpl_config_free(&cfg);
  }
  json_decref(convs);
  return 0;
}
