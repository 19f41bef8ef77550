/* tests/tmpl/test_tmpl_safety: hostile templates stop with a clear error (infinite recursion, exponential
 * output, huge loops, deep nesting, self-containing values), limits are configurable, errors carry the
 * template's message, and one compiled template renders correctly from several threads at once. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "test.h"
#include "tmpl/tmpl.h"

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Compile and render src with ctx_json; returns the rc, err filled. */
static int run(const char *src, const char *ctx_json, const ig_tmpl_opts *opts, ig_str *out, char *err, size_t errlen) {
  ig_tmpl *t = NULL;
  int rc = ig_tmpl_compile(src, strlen(src), &t, err, errlen);
  if (rc) return rc;
  json_t *ctx = ctx_json ? json_loads(ctx_json, 0, NULL) : NULL;
  rc = ig_tmpl_render(t, ctx, opts, out, err, errlen);
  json_decref(ctx);
  ig_tmpl_free(t);
  return rc;
}

static void expect_fail(const char *what, const char *src, int want_rc, const char *want_msg_part) {
  char err[512] = "";
  ig_str out;
  ig_str_init(&out);
  double t0 = now_ms();
  int rc = run(src, NULL, NULL, &out, err, sizeof err);
  double dt = now_ms() - t0;
  CHECK_MSG(rc == want_rc, "%s: rc %d, want %d (%s)", what, rc, want_rc, err);
  CHECK_MSG(strstr(err, want_msg_part) != NULL, "%s: message '%s' lacks '%s'", what, err, want_msg_part);
  CHECK_MSG(out.len == 0, "%s: partial output left behind", what);
  fprintf(stderr, "  %-28s stopped in %7.2f ms: %s\n", what, dt, err);
  ig_str_free(&out);
}

typedef struct job {
  const ig_tmpl *t;
  json_t *ctx;
  const char *want;
  int ok;
} job;
static void *worker(void *arg) {
  job *j = arg;
  j->ok = 1;
  for (int i = 0; i < 200; i++) {
    ig_str out;
    ig_str_init(&out);
    char err[256];
    int rc = ig_tmpl_render(j->t, j->ctx, NULL, &out, err, sizeof err);
    if (rc || strcmp(out.p, j->want)) j->ok = 0;
    ig_str_free(&out);
  }
  return NULL;
}

int main(void) {
  /* 1. hostile templates */
  expect_fail("infinite recursion", "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", IG_TMPL_ELIMIT, "call depth");
  expect_fail("infinite recursive loop", "{% for x in [1] recursive %}{{ loop([x]) }}{% endfor %}", IG_TMPL_ELIMIT, "call depth");
  expect_fail("exponential string",
              "{% set ns = namespace(s='ab') %}{% for i in range(100) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
              IG_TMPL_ELIMIT, "limit");
  expect_fail("exponential macro calls",
              "{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}x{% endmacro %}{{ f(60) }}",
              IG_TMPL_ELIMIT, "step limit");
  expect_fail("huge nested loops", "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
              IG_TMPL_ELIMIT, "step limit");
  expect_fail("huge output", "{% for i in range(100000) %}{{ 'x' * 100000 }}{% endfor %}", IG_TMPL_ELIMIT, "limit");
  expect_fail("huge repetition", "{{ 'x' * 1000000000000 }}", IG_TMPL_ELIMIT, "limit");
  expect_fail("huge format width", "{{ '%32222222s' % 'q' }}", IG_TMPL_ELIMIT, "too large");
  expect_fail("huge format spec", "{{ '{:>32222222}'.format('q') }}", IG_TMPL_ELIMIT, "too large");
  expect_fail("list growth", "{% set ns = namespace(l=[]) %}{% for i in range(100000) %}{% set ns.l = ns.l + [i] %}{% endfor %}",
              IG_TMPL_ELIMIT, "step limit");
  expect_fail("huge range", "{{ range(1000000000) | length }}", IG_TMPL_ERUNTIME, "Range too big");
  expect_fail("self-containing namespace", "{% set ns = namespace() %}{% set ns.me = ns %}{{ ns }}", IG_TMPL_ELIMIT, "nested");
  {
    /* deep nesting of parentheses, lists and blocks is refused by the parser, not the C stack */
    ig_str src;
    ig_str_init(&src);
    ig_str_puts(&src, "{{ ");
    for (int i = 0; i < 100000; i++) ig_str_putc(&src, '(');
    ig_str_putc(&src, '1');
    for (int i = 0; i < 100000; i++) ig_str_putc(&src, ')');
    ig_str_puts(&src, " }}");
    expect_fail("deep parentheses", src.p, IG_TMPL_ESYNTAX, "nested too deeply");
    ig_str_clear(&src);
    for (int i = 0; i < 50000; i++) ig_str_puts(&src, "{% if true %}");
    expect_fail("deep blocks", src.p, IG_TMPL_ESYNTAX, "nested too deeply");
    ig_str_clear(&src);
    ig_str_puts(&src, "{{ ");
    for (int i = 0; i < 50000; i++) ig_str_puts(&src, "not ");
    ig_str_puts(&src, "1 }}");
    expect_fail("deep unary chain", src.p, IG_TMPL_ESYNTAX, "nested too deeply");
    ig_str_free(&src);
  }

  /* 2. configurable limits */
  {
    char err[256];
    ig_str out;
    ig_str_init(&out);
    ig_tmpl_opts o = {.limits = {.max_steps = 100}};
    int rc = run("{% for i in range(1000) %}{{ i }}{% endfor %}", NULL, &o, &out, err, sizeof err);
    CHECK_EQ_INT(rc, IG_TMPL_ELIMIT);
    ig_tmpl_opts o2 = {.limits = {.max_output = 10}};
    rc = run("{{ 'x' * 11 }}", NULL, &o2, &out, err, sizeof err);
    CHECK_EQ_INT(rc, IG_TMPL_ELIMIT);
    rc = run("{{ 'x' * 10 }}", NULL, &o2, &out, err, sizeof err);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_STR(out.p, "xxxxxxxxxx");
    ig_str_clear(&out);
    ig_tmpl_opts o3 = {.limits = {.max_depth = 3}};
    rc = run("{% macro f(n) %}{% if n %}{{ f(n - 1) }}{% endif %}.{% endmacro %}{{ f(2) }}", NULL, &o3, &out, err, sizeof err);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_STR(out.p, "...");
    ig_str_clear(&out);
    rc = run("{% macro f(n) %}{% if n %}{{ f(n - 1) }}{% endif %}.{% endmacro %}{{ f(3) }}", NULL, &o3, &out, err, sizeof err);
    CHECK_EQ_INT(rc, IG_TMPL_ELIMIT);
    ig_tmpl_opts o4 = {.limits = {.max_memory = 1 << 20}};
    rc = run("{% set ns = namespace(l=[]) %}{% for i in range(20000) %}{% set ns.l = ns.l + [i] %}{% endfor %}", NULL, &o4, &out,
             err, sizeof err);
    CHECK_EQ_INT(rc, IG_TMPL_ELIMIT);
    CHECK(strstr(err, "memory") != NULL);
    ig_str_free(&out);
  }

  /* 3. error reporting */
  {
    char err[256];
    ig_str out;
    ig_str_init(&out);
    ig_str_puts(&out, "kept");
    int rc = run("before{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}", NULL,
                 NULL, &out, err, sizeof err);
    CHECK_EQ_INT(rc, IG_TMPL_ERAISE);
    CHECK_EQ_STR(err, "Conversation roles must alternate user/assistant/user/assistant/...");
    CHECK_EQ_STR(out.p, "kept"); /* output appended by a failed render is rolled back */
    rc = run("{{ messages[0].content + 1 }}", "{\"messages\": [{\"content\": \"x\"}]}", NULL, &out, err, sizeof err);
    CHECK_EQ_INT(rc, IG_TMPL_ERUNTIME);
    CHECK_EQ_STR(err, "can only concatenate str (not \"int\") to str");
    rc = run("{{ foo.bar }}", NULL, NULL, &out, err, sizeof err);
    CHECK_EQ_INT(rc, IG_TMPL_ERUNTIME);
    CHECK_EQ_STR(err, "'foo' is undefined");
    rc = run("{% for %}", NULL, NULL, &out, err, sizeof err);
    CHECK_EQ_INT(rc, IG_TMPL_ESYNTAX);
    CHECK(strstr(err, "line 1") != NULL);
    rc = run("a\n{{ x }}\n{% if x %}\n{% endfor %}", NULL, NULL, &out, err, sizeof err);
    CHECK_EQ_INT(rc, IG_TMPL_ESYNTAX);
    CHECK_MSG(strstr(err, "line 4") != NULL, "%s", err);
    json_t *arr = json_array();
    rc = ig_tmpl_render(NULL, arr, NULL, &out, err, sizeof err);
    CHECK_EQ_INT(rc, IG_TMPL_EINVAL);
    json_decref(arr);
    ig_str_free(&out);
  }

  /* 4. a compiled template is shared read-only by threads */
  {
    const char *src = "{% for m in messages %}{{ m.role | upper }}: {{ m.content | trim }}\n{% endfor %}{{ bos_token }}";
    ig_tmpl *t = NULL;
    char err[256];
    CHECK_EQ_INT(ig_tmpl_compile(src, strlen(src), &t, err, sizeof err), 0);
    job jobs[4];
    pthread_t th[4];
    json_t *ctxs[4];
    char want[4][128];
    for (int i = 0; i < 4; i++) {
      ctxs[i] = json_pack("{s:[{s:s,s:s}], s:s}", "messages", "role", "user", "content", i % 2 ? " odd " : " even ",
                          "bos_token", i < 2 ? "<s>" : "<bos>");
      snprintf(want[i], sizeof want[i], "USER: %s\n%s", i % 2 ? "odd" : "even", i < 2 ? "<s>" : "<bos>");
      jobs[i] = (job){t, ctxs[i], want[i], 0};
      pthread_create(&th[i], NULL, worker, &jobs[i]);
    }
    for (int i = 0; i < 4; i++) {
      pthread_join(th[i], NULL);
      CHECK_MSG(jobs[i].ok, "thread %d rendered a wrong result", i);
      json_decref(ctxs[i]);
    }
    ig_tmpl_free(t);
  }

  /* 5. large data (a request's megabytes: its kwargs, messages, documents) with a template from outside: scans are
   * charged to the step limit (so a loop of lookups in a 40,000-key object is not quadratic work within it), and a
   * time limit stops steps that each walk megabytes */
  {
    json_t *ctx = json_object(), *big = json_object(), *rev = json_object();
    char k[32];
    for (int i = 0; i < 40000; i++) {
      snprintf(k, sizeof k, "k%d", i);
      json_object_set_new(big, k, json_integer(i));
      snprintf(k, sizeof k, "k%d", 39999 - i);
      json_object_set_new(rev, k, json_integer(39999 - i));
    }
    char *mb = malloc((1 << 20) + 1);
    memset(mb, 'a', 1 << 20);
    mb[1 << 20] = 0;
    json_object_set_new(ctx, "kw", big);
    json_object_set_new(ctx, "rev", rev);
    json_object_set_new(ctx, "s", json_string(mb));
    free(mb);
    const struct {
      const char *what, *src;
      uint32_t max_ms; /* else the default limits */
      const char *want;
    } cases[] = {
        {"lookups in a large object", "{% for k in kw %}{{ kw[k] }}{% endfor %}", 0, "step limit"},
        {"attributes of a large object", "{% for i in range(100000) %}{{ kw.k39999 }}{% endfor %}", 0, "step limit"},
        {"'in' a large object", "{% for k in kw %}{{ k in rev }}{% endfor %}", 0, "step limit"},
        {"large objects compared", "{% for i in range(1000) %}{{ kw == rev }}{% endfor %}", 0, "step limit"},
        {"searches of a megabyte", "{% for i in range(100000) %}{{ 'zz' in s }}{% endfor %}", 0, "step limit"},
        {"megabytes compared", "{% set t = s ~ '' %}{% for i in range(100000) %}{{ s == t }}{% endfor %}", 0,
         "step limit"},
        {"the time limit", "{% for i in range(100000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}",
         1, "time limit (1 ms)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
      ig_tmpl *t = NULL;
      char err[256] = "";
      ig_str out;
      ig_str_init(&out);
      CHECK_EQ_INT(ig_tmpl_compile(cases[i].src, strlen(cases[i].src), &t, err, sizeof err), 0);
      ig_tmpl_opts o = {.limits = {.max_steps = cases[i].max_ms ? 1000000000 : 0, .max_ms = cases[i].max_ms}};
      double t0 = now_ms();
      int rc = t ? ig_tmpl_render(t, ctx, &o, &out, err, sizeof err) : -100;
      CHECK_MSG(rc == IG_TMPL_ELIMIT && strstr(err, cases[i].want), "%s: rc %d (%s)", cases[i].what, rc, err);
      fprintf(stderr, "  %-28s stopped in %7.2f ms: %s\n", cases[i].what, now_ms() - t0, err);
      ig_str_free(&out);
      ig_tmpl_free(t);
    }
    /* the same objects within reason render as before */
    ig_tmpl *t = NULL;
    char err[256] = "";
    ig_str out;
    ig_str_init(&out);
    const char *ok = "{{ kw.k7 }} {{ kw['k39999'] }} {{ 'k5' in rev }} {{ kw == kw }} {{ 'zz' in s }} {{ kw | length }}";
    CHECK_EQ_INT(ig_tmpl_compile(ok, strlen(ok), &t, err, sizeof err), 0);
    CHECK_EQ_INT(ig_tmpl_render(t, ctx, NULL, &out, err, sizeof err), 0);
    CHECK_MSG(out.p && !strcmp(out.p, "7 39999 True True False 40000"), "got '%s' (%s)", out.p ? out.p : "", err);
    ig_str_free(&out);
    ig_tmpl_free(t);
    json_decref(ctx);
  }
  TEST_DONE();
}
