/* app/cmd_bench: `ignis bench`, a load generator for TGI/OpenAI-compatible servers; the work is in
 * src/bench (ig_bench_main parses the flags, runs, reports). */
#include "app/cmds.h"
#include "bench/bench.h"
#include <signal.h>

int ig_cmd_bench(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN); /* a server that resets a stream must not kill the benchmark */
  return ig_bench_main(argc, argv);
}
