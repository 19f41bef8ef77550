/* app/cmd_generate: placeholder until its module lands. */
#include "app/cmds.h"
#include <stdio.h>
int ig_cmd_generate(int argc, char **argv) {
  (void)argc;
  (void)argv;
  fprintf(stderr, "ignis generate: not implemented yet\n");
  return 2;
}
