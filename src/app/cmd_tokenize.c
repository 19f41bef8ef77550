/* app/cmd_tokenize: placeholder until its module lands. */
#include "app/cmds.h"
#include <stdio.h>
int ig_cmd_tokenize(int argc, char **argv) {
  (void)argc;
  (void)argv;
  fprintf(stderr, "ignis tokenize: not implemented yet\n");
  return 2;
}
