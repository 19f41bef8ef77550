/* tests/server/fake_serve: the real HTTP server over the fake engine (fake_engine.h), for manual pokes and for
 * protocol tests that need no model: fake_serve [port] [--no-template] [--api-key K] [--max-conc N (engine)]
 * [--max-requests N (server's max_concurrent_requests)] [--payload-limit BYTES]
 * [--render-worker-entries N (final bodies of N token entries or more are written off the loop; 0: never)]. */
#include "fake_engine.h"
#include "util/log.h"
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  ig_server_config c;
  ig_server_config_defaults(&c);
  c.port = 0;
  c.model_id = "fake";
  c.max_input_tokens = 1000;
  c.max_total_tokens = 1100;
  c.read_timeout_s = 5;
  c.grace_ms = 2000;
  int tmpl = 1, conc = 64;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--no-template")) tmpl = 0;
    else if (!strcmp(argv[i], "--api-key") && i + 1 < argc) c.api_key = argv[++i];
    else if (!strcmp(argv[i], "--max-conc") && i + 1 < argc) conc = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--max-requests") && i + 1 < argc) c.max_concurrent_requests = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--payload-limit") && i + 1 < argc) c.payload_limit = (size_t)atol(argv[++i]);
    else if (!strcmp(argv[i], "--render-worker-entries") && i + 1 < argc) c.render_worker_entries = atoi(argv[++i]);
    else c.port = atoi(argv[i]);
  }
  fake_engine *e = fake_engine_start(conc);
  ig_server_hooks h;
  fake_engine_hooks(e, &h, tmpl);
  ig_server *s;
  char err[256] = "";
  if (ig_server_create(&c, &h, &s, err, sizeof err)) {
    fprintf(stderr, "fake_serve: %s\n", err);
    return 1;
  }
  ig_server_set_ready(s, NULL);
  printf("listening on %d\n", ig_server_port(s));
  fflush(stdout);
  ig_server_run(s);
  fake_engine_stop(e);
  ig_server_destroy(s);
  ig_log(IG_LOG_INFO, "fake_serve: exit, %d engine requests alive", fake_engine_live_requests());
  return fake_engine_live_requests() != 0;
}
