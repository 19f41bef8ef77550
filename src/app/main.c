/* app/main: the `ignis` binary. Dispatches to subcommands (serve, generate, tokenize, template, bench);
 * each lives in cmd_<name>.c and returns the process exit code. */
#include "app/cmds.h"
#include <stdio.h>
#include <string.h>

static const struct {
  const char *name;
  int (*fn)(int argc, char **argv);
  const char *help;
} cmds[] = {
    {"serve", ig_cmd_serve, "serve a model over HTTP (TGI and OpenAI APIs)"},
    {"generate", ig_cmd_generate, "generate a continuation of a prompt, streamed to stdout"},
    {"tokenize", ig_cmd_tokenize, "tokenize text (or --decode ids) with a model's tokenizer"},
    {"template", ig_cmd_template, "render a model's chat template for messages read from stdin"},
    {"bench", ig_cmd_bench, "benchmark a TGI- or OpenAI-compatible server"},
};

static void usage(FILE *f) {
  fprintf(f, "usage: ignis <command> [options]   (ignis <command> --help for its options)\n\ncommands:\n");
  for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) fprintf(f, "  %-10s %s\n", cmds[i].name, cmds[i].help);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    /* `ignis` alone serves the default model, as `text-generation-launcher` does with its env. */
    return ig_cmd_serve(argc, argv);
  }
  if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
    usage(stdout);
    return 0;
  }
  if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
    printf("ignis %s\n", IG_VERSION);
    return 0;
  }
  for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
    if (!strcmp(argv[1], cmds[i].name)) return cmds[i].fn(argc - 1, argv + 1);
  if (argv[1][0] == '-') return ig_cmd_serve(argc, argv); /* `ignis --model-id X` == `ignis serve --model-id X` */
  fprintf(stderr, "ignis: unknown command '%s'\n", argv[1]);
  usage(stderr);
  return 2;
}
