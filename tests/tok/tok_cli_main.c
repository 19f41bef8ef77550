/* tests/tok/tok_cli_main: `ignis tokenize` on its own (src/app/cmd_tokenize.c with a one-line main), so the
 * CLI can be tested without building every other module into the ignis binary. */
#include "app/cmds.h"
int main(int argc, char **argv) { return ig_cmd_tokenize(argc, argv); }
