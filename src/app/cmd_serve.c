/* app/cmd_serve: placeholder until its module lands. */
#include "app/cmds.h"
#include <stdio.h>
int ig_cmd_serve(int argc, char **argv) {
  (void)argc;
  (void)argv;
  fprintf(stderr, "ignis serve: not implemented yet\n");
  return 2;
}
