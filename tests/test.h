/* tests/test.h: the few assertion macros every unit test uses. A failed check prints file:line and the
 * expression, and the test exits non-zero at the end (TEST_DONE). */
#ifndef IG_TEST_H
#define IG_TEST_H
#include <math.h>
#include <stdio.h>
#include <string.h>

static int ig_test_failures = 0;
static int ig_test_checks = 0;

#define CHECK(cond)                                                                                                    \
  do {                                                                                                                 \
    ig_test_checks++;                                                                                                  \
    if (!(cond)) {                                                                                                     \
      ig_test_failures++;                                                                                              \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);                                         \
    }                                                                                                                  \
  } while (0)
#define CHECK_MSG(cond, ...)                                                                                           \
  do {                                                                                                                 \
    ig_test_checks++;                                                                                                  \
    if (!(cond)) {                                                                                                     \
      ig_test_failures++;                                                                                              \
      fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);                                         \
      fprintf(stderr, __VA_ARGS__);                                                                                    \
      fputc('\n', stderr);                                                                                             \
    }                                                                                                                  \
  } while (0)
#define CHECK_EQ_INT(a, b) CHECK_MSG((long long)(a) == (long long)(b), "%lld != %lld", (long long)(a), (long long)(b))
#define CHECK_EQ_STR(a, b) CHECK_MSG(strcmp((a), (b)) == 0, "\"%s\" != \"%s\"", (a), (b))
#define CHECK_NEAR(a, b, tol) CHECK_MSG(fabs((double)(a) - (double)(b)) <= (tol), "%g vs %g (tol %g)", (double)(a), (double)(b), (double)(tol))
#define TEST_DONE()                                                                                                    \
  do {                                                                                                                 \
    fprintf(stderr, "%d checks, %d failed\n", ig_test_checks, ig_test_failures);                                       \
    return ig_test_failures ? 1 : 0;                                                                                   \
  } while (0)
/* Directory of ../shared (tests read models from it); IG_SHARED_DIR is set by CMake. */
#ifndef IG_SHARED_DIR
#define IG_SHARED_DIR "../shared"
#endif
#ifndef IG_SOURCE_DIR
#define IG_SOURCE_DIR "."
#endif
#endif
