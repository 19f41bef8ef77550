/* util/file: read whole files and memory-map files read-only. Errors fill errbuf with a one-line reason. */
#ifndef IG_UTIL_FILE_H
#define IG_UTIL_FILE_H
#include <stddef.h>

/* Reads the whole file; *out is NUL-terminated and freed by the caller with free(). max_bytes bounds it. */
int ig_file_read(const char *path, size_t max_bytes, char **out, size_t *len, char *errbuf, size_t errlen);

typedef struct ig_mmap {
  void *data;
  size_t size;
} ig_mmap;
int ig_file_mmap(const char *path, ig_mmap *m, char *errbuf, size_t errlen);
void ig_file_munmap(ig_mmap *m);
int ig_file_exists(const char *path);
int ig_dir_exists(const char *path);

#endif
