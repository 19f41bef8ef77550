/* bench/cpu_membw: the machine's memory bandwidth: memcpy of a 1 GiB buffer (bytes copied per second) and a
 * read-only sum (bytes read per second), with 1 and N threads; best of 5 runs. usage: cpu_membw [threads] */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SIZE ((size_t)1 << 30)
static char *src, *dst;
static int nth;
static volatile uint64_t sink;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

typedef struct { int i, mode; } arg;
static void *work(void *p) {
  arg *a = p;
  size_t part = SIZE / (size_t)nth, o = part * (size_t)a->i;
  if (a->mode == 0) {
    memcpy(dst + o, src + o, part);
  } else {
    const uint64_t *q = (const uint64_t *)(src + o);
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (size_t k = 0; k < part / 8; k += 4) s0 += q[k], s1 += q[k + 1], s2 += q[k + 2], s3 += q[k + 3];
    sink += s0 + s1 + s2 + s3;
  }
  return NULL;
}

static double run(int mode) {
  double best = 1e9;
  for (int r = 0; r < 5; r++) {
    pthread_t th[256];
    arg a[256];
    double t0 = now();
    for (int i = 0; i < nth; i++) a[i] = (arg){i, mode}, pthread_create(&th[i], NULL, work, &a[i]);
    for (int i = 0; i < nth; i++) pthread_join(th[i], NULL);
    double t = now() - t0;
    if (t < best) best = t;
  }
  return (double)SIZE / best / 1e9;
}

int main(int argc, char **argv) {
  int maxth = argc > 1 ? atoi(argv[1]) : (int)sysconf(_SC_NPROCESSORS_ONLN);
  src = malloc(SIZE), dst = malloc(SIZE);
  memset(src, 1, SIZE), memset(dst, 2, SIZE);
  for (nth = 1; nth <= maxth; nth *= 2) {
    printf("threads %d: memcpy %.2f GB/s (bytes copied), read %.2f GB/s\n", nth, run(0), run(1));
    if (nth < maxth && nth * 2 > maxth) nth = maxth / 2;
  }
  return 0;
}
