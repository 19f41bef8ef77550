/* fuzz_tmpl_render: the input is a Jinja template; it is compiled and, when it compiles, rendered with a small
 * chat context under tight limits (plainly, and as a chat whose final message is continued). Any crash, sanitizer report, leak or hang is a bug.
 *   CC=clang cmake -B build-fuzz -DIGNIS_FUZZ=ON -DIGNIS_CUDA=OFF && cmake --build build-fuzz --target fuzz_tmpl_render
 * Seed it with the chat_template strings of tests/fixtures/templates (one file each) and the snippets of
 * tests/tmpl/lang_cases.py, e.g. in /tmp/tmpl_corpus, then:
 *   build-fuzz/fuzz/fuzz_tmpl_render -max_total_time=120 -max_len=8192 /tmp/tmpl_corpus */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tmpl/tmpl.h"

static json_t *ctx;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!ctx)
    ctx = json_loads("{\"messages\": [{\"role\": \"system\", \"content\": \"sys\"}, {\"role\": \"user\", \"content\": \" hi \"},"
                     " {\"role\": \"assistant\", \"content\": \"yo\", \"tool_calls\": [{\"id\": \"abcdefghi\", \"type\": "
                     "\"function\", \"function\": {\"name\": \"f\", \"arguments\": {\"a\": [1, 2.5, null, true]}}}]},"
                     " {\"role\": \"tool\", \"content\": \"{}\"}],"
                     " \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\": {}}}],"
                     " \"bos_token\": \"<s>\", \"eos_token\": \"</s>\", \"add_generation_prompt\": true}",
                     0, NULL);
  ig_tmpl *t = NULL;
  char err[256];
  if (ig_tmpl_compile((const char *)data, size, &t, err, sizeof err) == 0) {
    ig_tmpl_opts opts = {.limits = {.max_steps = 20000, .max_depth = 16, .max_output = 1 << 16, .max_memory = 16 << 20},
                         .now = 1795435200};
    ig_str out;
    ig_str_init(&out);
    ig_tmpl_render(t, ctx, &opts, &out, err, sizeof err);
    ig_str_free(&out);
    /* as a chat whose final message is continued: the text cut after the last message's content */
    ig_tmpl_chat chat = {.messages = json_object_get(ctx, "messages"), .extra = ctx, .continue_final_message = 1};
    char *text = NULL;
    size_t len;
    ig_tmpl_render_chat(t, &chat, &opts, &text, &len, err, sizeof err);
    free(text);
    ig_tmpl_free(t);
  }
  return 0;
}
