/* app/cmd_template: placeholder until its module lands. */
#include "app/cmds.h"
#include <stdio.h>
int ig_cmd_template(int argc, char **argv) {
  (void)argc;
  (void)argv;
  fprintf(stderr, "ignis template: not implemented yet\n");
  return 2;
}
