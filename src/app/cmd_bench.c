/* app/cmd_bench: placeholder until its module lands. */
#include "app/cmds.h"
#include <stdio.h>
int ig_cmd_bench(int argc, char **argv) {
  (void)argc;
  (void)argv;
  fprintf(stderr, "ignis bench: not implemented yet\n");
  return 2;
}
