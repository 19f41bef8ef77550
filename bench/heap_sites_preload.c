/* bench/heap_sites_preload.c: LD_PRELOAD shim that keeps, for every live heap block, the address that called
 * malloc/calloc/realloc/posix_memalign/aligned_alloc, and on SIGUSR2 writes the call sites holding the most live
 * bytes to stderr (module, offset in it, symbol when the module has one, live bytes and blocks). Two dumps taken
 * some thousands of requests apart show which call site keeps growing. Diagnostics only (single lock, no
 * backtraces): the process runs slower. Offsets in a stripped binary are looked up in the unstripped build with
 * `addr2line -f -e build/ignis 0xOFFSET`.
 *   cc -shared -fPIC -O2 -o heap_sites.so bench/heap_sites_preload.c -ldl -lpthread */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void __libc_free(void *);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

#define NP (1u << 23) /* live-block slots (open addressing; 1 marks a deleted slot) */
#define NS (1u << 16) /* call-site slots */
typedef struct {
  uintptr_t p;
  uint64_t sz;
  uint32_t site;
} pslot;
typedef struct {
  uintptr_t ra;
  int64_t bytes, n;
} sslot;
static pslot *ptab;
static sslot *stab;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static __thread int inside;
static volatile sig_atomic_t want_dump;

static uint32_t hp(uintptr_t p) { return (uint32_t)((p >> 4) * 0x9E3779B97F4A7C15ull >> 40) & (NP - 1); }
static uint32_t hs(uintptr_t r) { return (uint32_t)(r * 0x9E3779B97F4A7C15ull >> 44) & (NS - 1); }

static void track(void *p, size_t sz, uintptr_t ra) {
  if (!p || !ptab || inside) return;
  pthread_mutex_lock(&mu);
  uint32_t s = hs(ra);
  for (uint32_t k = 0; k < NS; k++, s = (s + 1) & (NS - 1))
    if (stab[s].ra == ra || stab[s].ra == 0) break;
  stab[s].ra = ra, stab[s].bytes += (int64_t)sz, stab[s].n++;
  uint32_t i = hp((uintptr_t)p);
  for (uint32_t k = 0; k < NP; k++, i = (i + 1) & (NP - 1))
    if (ptab[i].p <= 1) {
      ptab[i].p = (uintptr_t)p, ptab[i].sz = sz, ptab[i].site = s;
      break;
    }
  pthread_mutex_unlock(&mu);
}
static void untrack(void *p) {
  if (!p || !ptab || inside) return;
  pthread_mutex_lock(&mu);
  uint32_t i = hp((uintptr_t)p);
  for (uint32_t k = 0; k < NP && ptab[i].p; k++, i = (i + 1) & (NP - 1))
    if (ptab[i].p == (uintptr_t)p) {
      stab[ptab[i].site].bytes -= (int64_t)ptab[i].sz, stab[ptab[i].site].n--;
      ptab[i].p = 1;
      break;
    }
  pthread_mutex_unlock(&mu);
}

void *malloc(size_t n) {
  void *p = __libc_malloc(n);
  track(p, n, (uintptr_t)__builtin_return_address(0));
  return p;
}
void *calloc(size_t a, size_t b) {
  void *p = __libc_calloc(a, b);
  track(p, a * b, (uintptr_t)__builtin_return_address(0));
  return p;
}
void *realloc(void *q, size_t n) {
  untrack(q);
  void *p = __libc_realloc(q, n);
  track(p, n, (uintptr_t)__builtin_return_address(0));
  return p;
}
int posix_memalign(void **out, size_t al, size_t n) {
  void *p = __libc_memalign(al, n);
  if (!p) return 12;
  track(p, n, (uintptr_t)__builtin_return_address(0));
  *out = p;
  return 0;
}
void *aligned_alloc(size_t al, size_t n) {
  void *p = __libc_memalign(al, n);
  track(p, n, (uintptr_t)__builtin_return_address(0));
  return p;
}
void *memalign(size_t al, size_t n) {
  void *p = __libc_memalign(al, n);
  track(p, n, (uintptr_t)__builtin_return_address(0));
  return p;
}
void free(void *p) {
  untrack(p);
  __libc_free(p);
}

static int by_bytes(const void *a, const void *b) {
  int64_t x = ((const sslot *)a)->bytes, y = ((const sslot *)b)->bytes;
  return x < y ? 1 : x > y ? -1 : 0;
}
static void dump(void) {
  static sslot top[NS];
  pthread_mutex_lock(&mu);
  memcpy(top, stab, sizeof top);
  pthread_mutex_unlock(&mu);
  qsort(top, NS, sizeof top[0], by_bytes);
  int64_t total = 0, blocks = 0;
  for (uint32_t i = 0; i < NS; i++) total += top[i].bytes, blocks += top[i].n;
  fprintf(stderr, "HEAPSITES live %lld bytes in %lld blocks\n", (long long)total, (long long)blocks);
  for (int i = 0; i < 400 && top[i].bytes > 0; i++) {
    Dl_info d;
    memset(&d, 0, sizeof d);
    dladdr((void *)top[i].ra, &d);
    const char *mod = d.dli_fname ? strrchr(d.dli_fname, '/') : NULL;
    fprintf(stderr, "HEAPSITES %12lld B %9lld blocks  %s+0x%lx %s\n", (long long)top[i].bytes, (long long)top[i].n,
            mod ? mod + 1 : (d.dli_fname ? d.dli_fname : "?"), (unsigned long)(top[i].ra - (uintptr_t)d.dli_fbase),
            d.dli_sname ? d.dli_sname : "");
  }
}
static void *watcher(void *arg) {
  (void)arg;
  inside = 1; /* this thread's own allocations (dladdr, stdio) are not tracked */
  for (;;) {
    usleep(100000);
    if (want_dump) want_dump = 0, dump();
  }
  return NULL;
}
static void on_sig(int s) {
  (void)s;
  want_dump = 1;
}
__attribute__((constructor)) static void init(void) {
  inside = 1;
  void *a = mmap(NULL, sizeof(pslot) * NP, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  void *b = mmap(NULL, sizeof(sslot) * NS, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (a != MAP_FAILED && b != MAP_FAILED) ptab = a, stab = b;
  signal(SIGUSR2, on_sig);
  pthread_t t;
  pthread_create(&t, NULL, watcher, NULL);
  pthread_detach(t);
  inside = 0;
}
