/* bench/mallinfo_preload.c: LD_PRELOAD shim for bench/cpu_serve_mem.sh. On SIGUSR2 it writes glibc's heap
 * figures (mallinfo2: arena bytes, bytes in use, free bytes kept, mmapped bytes) to stderr, so a server's live heap
 * can be told apart from the free space its allocator keeps.
 *   cc -shared -fPIC -O2 -o mallinfo_preload.so bench/mallinfo_preload.c */
#define _GNU_SOURCE
#include <malloc.h>
#include <signal.h>
#include <stdio.h>

static void report(int sig) {
  (void)sig;
  struct mallinfo2 m = mallinfo2();
  fprintf(stderr, "MALLINFO arena %zu inuse %zu free %zu mmap %zu\n", m.arena, m.uordblks, m.fordblks, m.hblkhd);
}

__attribute__((constructor)) static void install(void) { signal(SIGUSR2, report); }
