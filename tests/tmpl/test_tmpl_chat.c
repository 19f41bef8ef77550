/* tests/tmpl/test_tmpl_chat: ig_tmpl_render_chat as transformers' apply_chat_template builds and cuts: extra keyword
 * arguments over the defaults, documents, and continue_final_message (the text cut after the final message's content
 * as transformers cuts it: stripped, its trailing whitespace kept where the text has it, the last occurrence, Python's
 * whitespace; its refusals), checked on random texts against a plain search. */
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "tmpl/tmpl.h"

/* Renders src with messages (JSON) and the rest of chat; returns the rc, the text in out (malloc'd) or err. */
static int render(const char *src, const char *messages, ig_tmpl_chat chat, char **out, size_t *len, char *err,
                  size_t errlen) {
  ig_tmpl *t = NULL;
  int rc = ig_tmpl_compile(src, strlen(src), &t, err, errlen);
  if (rc) return rc;
  json_t *m = json_loads(messages, 0, NULL);
  chat.messages = m;
  *out = NULL;
  rc = ig_tmpl_render_chat(t, &chat, NULL, out, len, err, errlen);
  json_decref(m);
  ig_tmpl_free(t);
  return rc;
}

#define TAGS "{% for m in messages %}<{{ m.role }}>{{ m.content }}</{{ m.role }}>{% endfor %}"
#define TRIM "{% for m in messages %}<{{ m.role }}>{{ m.content | trim }}</{{ m.role }}>{% endfor %}"

static void expect_cut(const char *what, const char *src, const char *messages, const char *want) {
  char err[512] = "", *out = NULL;
  size_t len = 0;
  ig_tmpl_chat chat = {.continue_final_message = 1};
  int rc = render(src, messages, chat, &out, &len, err, sizeof err);
  CHECK_MSG(rc == 0 && out && len == strlen(want) && !strcmp(out, want), "%s: rc %d, got '%s' want '%s' (%s)", what, rc,
            out ? out : "", want, err);
  free(out);
}

static void expect_refused(const char *what, const char *src, const char *messages, int add_generation_prompt,
                           const char *msg_start) {
  char err[512] = "", *out = NULL;
  size_t len = 0;
  ig_tmpl_chat chat = {.continue_final_message = 1, .add_generation_prompt = add_generation_prompt};
  int rc = render(src, messages, chat, &out, &len, err, sizeof err);
  CHECK_MSG(rc == IG_TMPL_EINVAL && !out && !strncmp(err, msg_start, strlen(msg_start)), "%s: rc %d, '%s'", what, rc, err);
  free(out);
}

/* The cut by transformers' rule written plainly (a forward scan for the last occurrence), for ASCII texts whose only
 * whitespace is ' ': the length of text to keep, or -1 when the stripped content is not in it. */
static long ref_cut(const char *text, const char *content) {
  size_t n = strlen(text), ml = strlen(content), a = 0, b = ml;
  while (a < b && content[a] == ' ') a++;
  while (b > a && content[b - 1] == ' ') b--;
  long at = b == a ? (long)n : -1;
  for (size_t i = 0; b > a && i + (b - a) <= n; i++)
    if (!memcmp(text + i, content + a, b - a)) at = (long)i;
  if (at < 0) return -1;
  int whole = a == 0 && ml <= n - (size_t)at && !memcmp(text + at, content, ml);
  return at + (long)(whole ? ml : b - a);
}

static void random_cuts(void) {
  unsigned seed = 12345;
  for (int it = 0; it < 3000; it++) {
    char user[24], asst[12], msgs[200], text[200];
    int nu = 1 + (int)((seed = seed * 1103515245 + 12345) >> 16) % 20, na = (int)((seed = seed * 1103515245 + 12345) >> 16) % 10;
    for (int i = 0; i < nu; i++) user[i] = "ab "[((seed = seed * 1103515245 + 12345) >> 16) % 3];
    for (int i = 0; i < na; i++) asst[i] = "ab "[((seed = seed * 1103515245 + 12345) >> 16) % 3];
    user[nu] = 0, asst[na] = 0;
    int trim = it & 1; /* the template strips the contents or keeps them */
    snprintf(msgs, sizeof msgs, "[{\"role\":\"user\",\"content\":\"%s\"},{\"role\":\"assistant\",\"content\":\"%s\"}]", user,
             asst);
    char err[512] = "", *out = NULL;
    size_t len = 0;
    ig_tmpl_chat chat = {0};
    CHECK_EQ_INT(render(trim ? TRIM : TAGS, msgs, chat, &out, &len, err, sizeof err), 0); /* the whole text */
    snprintf(text, sizeof text, "%s", out ? out : "");
    free(out);
    long want = ref_cut(text, asst);
    chat.continue_final_message = 1;
    int rc = render(trim ? TRIM : TAGS, msgs, chat, &out, &len, err, sizeof err);
    if (want < 0)
      CHECK_MSG(rc == IG_TMPL_EINVAL, "'%s' in '%s': rc %d, want not found", asst, text, rc);
    else
      CHECK_MSG(rc == 0 && (long)len == want && !memcmp(out, text, len), "'%s' in '%s': got %d '%s', want %ld", asst, text,
                rc, out ? out : err, want);
    free(out);
  }
}

int main(void) {
  /* kwargs override the defaults (as **kwargs do), documents reach the template, tools default to None */
  {
    const char *src = "{{ add_generation_prompt }}|{{ documents | map(attribute='title') | join(',') }}|{{ tools }}|"
                      "{{ enable_thinking }}|{{ bos_token }}";
    json_t *docs = json_loads("[{\"title\":\"A\",\"text\":\"a\"},{\"title\":\"B\",\"text\":\"b\"}]", 0, NULL);
    json_t *extra = json_loads("{\"enable_thinking\":false,\"bos_token\":\"<kw>\"}", 0, NULL);
    json_t *special = json_loads("{\"bos_token\":\"<s>\"}", 0, NULL);
    ig_tmpl_chat chat = {.documents = docs, .add_generation_prompt = 1, .extra = extra, .special_tokens = special};
    char err[512] = "", *out = NULL;
    size_t len;
    CHECK_EQ_INT(render(src, "[]", chat, &out, &len, err, sizeof err), 0);
    CHECK_MSG(out && !strcmp(out, "True|A,B|None|False|<kw>"), "got '%s' (%s)", out ? out : "", err);
    free(out);
    json_t *agp = json_loads("{\"add_generation_prompt\":false}", 0, NULL);
    chat.extra = agp;
    chat.documents = NULL;
    CHECK_EQ_INT(render(src, "[]", chat, &out, &len, err, sizeof err), 0);
    CHECK_MSG(out && !strcmp(out, "False||None||<s>"), "got '%s' (%s)", out ? out : "", err);
    free(out);
    json_decref(agp);
    json_decref(docs);
    json_decref(extra);
    json_decref(special);
  }

  /* continue_final_message, case by case (each as transformers 4.5x cuts it) */
  expect_cut("plain", TAGS, "[{\"role\":\"user\",\"content\":\"Hi\"},{\"role\":\"assistant\",\"content\":\"Once upon\"}]",
             "<user>Hi</user><assistant>Once upon");
  expect_cut("trailing space kept by the template", TAGS,
             "[{\"role\":\"user\",\"content\":\"Hi\"},{\"role\":\"assistant\",\"content\":\"Once upon \"}]",
             "<user>Hi</user><assistant>Once upon ");
  expect_cut("trailing space trimmed by the template", TRIM,
             "[{\"role\":\"user\",\"content\":\"Hi\"},{\"role\":\"assistant\",\"content\":\"Once upon \\n\"}]",
             "<user>Hi</user><assistant>Once upon");
  expect_cut("leading space: cut after the stripped content", TAGS,
             "[{\"role\":\"user\",\"content\":\"Hi\"},{\"role\":\"assistant\",\"content\":\"  Once \"}]",
             "<user>Hi</user><assistant>  Once");
  expect_cut("the last occurrence", TAGS,
             "[{\"role\":\"user\",\"content\":\"Once\"},{\"role\":\"assistant\",\"content\":\"Once\"}]",
             "<user>Once</user><assistant>Once");
  expect_cut("Python's whitespace (U+2003, U+00A0)", TRIM,
             "[{\"role\":\"user\",\"content\":\"Hi\"},{\"role\":\"assistant\",\"content\":\"\\u2003Once\\u00a0\"}]",
             "<user>Hi</user><assistant>Once");
  expect_cut("the last text part of a list", "{% for m in messages %}[{{ m.content[1].text }}]{% endfor %}!",
             "[{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"A\"},{\"type\":\"text\",\"text\":\"B\"},"
             "{\"type\":\"image\"}]}]",
             "[B");
  expect_cut("empty content: nothing cut", TAGS, "[{\"role\":\"assistant\",\"content\":\"\"}]", "<assistant></assistant>");
  expect_cut("self-overlapping content", TAGS,
             "[{\"role\":\"user\",\"content\":\"aaab\"},{\"role\":\"assistant\",\"content\":\"aab aab\"}]",
             "<user>aaab</user><assistant>aab aab");
  expect_refused("with the generation prompt", TAGS, "[{\"role\":\"assistant\",\"content\":\"x\"}]", 1,
                 "continue_final_message and add_generation_prompt are not compatible.");
  expect_refused("content dropped by the template", "{% for m in messages %}{{ m.role }}{% endfor %}",
                 "[{\"role\":\"assistant\",\"content\":\"Once\"}]", 0,
                 "continue_final_message is set but the final message does not appear in the chat after applying the "
                 "chat template!");
  expect_refused("no content", TAGS, "[{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[]}]", 0,
                 "continue_final_message is set but we could not find any text to continue in the final message!");
  expect_refused("no text part", TAGS, "[{\"role\":\"assistant\",\"content\":[{\"type\":\"image\"}]}]", 0,
                 "continue_final_message is set but we could not find any text to continue");
  expect_refused("no messages", TAGS, "[]", 0, "continue_final_message is set but we could not find any text");
  random_cuts();
  TEST_DONE();
}
