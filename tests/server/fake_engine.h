/* tests/server/fake_engine: a stand-in for src/engine and src/tok so the server can be tested alone.
 * Tokenizer: one token per byte (id = byte + 3), BOS 1 added with special tokens, EOS 2.
 * Engine: one thread; each step gives every running request its next token: the letter
 * 'a' + (sum of prompt ids + i) % 26. Prompts containing "EOS" end with EOS after 3 tokens, "SLOW" sleep
 * 20 ms per token, "FAIL" fail with an error after 2 tokens. Decoding token FAKE_SLOW_ID (the byte 0x7f) takes 1 ms a
 * call, so that a reply listing it (echo with logprobs) takes long to write. With prefill_top_n the prompt's most
 * likely tokens are the letters 'a', 'b', ... */
#ifndef IG_TESTS_FAKE_ENGINE_H
#define IG_TESTS_FAKE_ENGINE_H
#include "server/server.h"

#define FAKE_SLOW_ID (0x7f + 3)

typedef struct fake_engine fake_engine;
fake_engine *fake_engine_start(int max_concurrent);
void fake_engine_stop(fake_engine *e);
void fake_engine_hooks(fake_engine *e, ig_server_hooks *h, int with_template);
int fake_engine_live_requests(void); /* ig_request objects not yet freed */
#endif
