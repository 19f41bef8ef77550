/* tests/bench/bench_cli: `ignis bench` alone (ig_bench_main), for the benchmark scripts and for builds that
 * contain only util and bench. */
#include "bench/bench.h"
#include <signal.h>

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  return ig_bench_main(argc, argv);
}
