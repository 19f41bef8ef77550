/* util/file: see file.h. */
#include "util/file.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int ig_file_read(const char *path, size_t max_bytes, char **out, size_t *len, char *errbuf, size_t errlen) {
  *out = NULL;
  if (len) *len = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    snprintf(errbuf, errlen, "%s: %s", path, strerror(errno));
    return -1;
  }
  struct stat st;
  if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
    snprintf(errbuf, errlen, "%s: not a regular file", path);
    close(fd);
    return -1;
  }
  if ((unsigned long long)st.st_size > max_bytes) {
    snprintf(errbuf, errlen, "%s: file too large (%lld bytes, limit %zu)", path, (long long)st.st_size, max_bytes);
    close(fd);
    return -1;
  }
  size_t n = (size_t)st.st_size;
  char *buf = malloc(n + 1);
  if (!buf) {
    snprintf(errbuf, errlen, "%s: out of memory", path);
    close(fd);
    return -1;
  }
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, buf + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      snprintf(errbuf, errlen, "%s: read failed: %s", path, r < 0 ? strerror(errno) : "short read");
      free(buf);
      close(fd);
      return -1;
    }
    got += (size_t)r;
  }
  close(fd);
  buf[n] = 0;
  *out = buf;
  if (len) *len = n;
  return 0;
}

int ig_file_mmap(const char *path, ig_mmap *m, char *errbuf, size_t errlen) {
  m->data = NULL;
  m->size = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    snprintf(errbuf, errlen, "%s: %s", path, strerror(errno));
    return -1;
  }
  struct stat st;
  if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
    snprintf(errbuf, errlen, "%s: not a regular file", path);
    close(fd);
    return -1;
  }
  m->size = (size_t)st.st_size;
  if (m->size == 0) {
    close(fd);
    return 0;
  }
  void *p = mmap(NULL, m->size, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (p == MAP_FAILED) {
    snprintf(errbuf, errlen, "%s: mmap failed: %s", path, strerror(errno));
    m->size = 0;
    return -1;
  }
  m->data = p;
  return 0;
}

void ig_file_munmap(ig_mmap *m) {
  if (m->data) munmap(m->data, m->size);
  m->data = NULL;
  m->size = 0;
}

int ig_file_exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}
int ig_dir_exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}
