/* io/safetensors: a memory-mapped reader for safetensors checkpoints, single files and sharded directories
 * (model.safetensors.index.json). The header is untrusted input: every length, offset, dtype and shape is
 * checked against the file before a tensor is handed out, so a truncated, overlapping, oversized or
 * malformed file gives one clear error line, never a crash. Tensor data stays in the mmap (no copy). */
#ifndef IG_IO_SAFETENSORS_H
#define IG_IO_SAFETENSORS_H
#include <stddef.h>
#include <stdint.h>

#define IG_ST_MAX_DIMS 8
#define IG_ST_MAX_HEADER (100u << 20) /* 100 MiB, as the reference implementation limits it */

typedef enum {
  IG_ST_F32, IG_ST_F16, IG_ST_BF16, /* supported for weights */
  IG_ST_F64, IG_ST_I64, IG_ST_I32, IG_ST_I16, IG_ST_I8, IG_ST_U8, IG_ST_BOOL, IG_ST_U16, IG_ST_U32, IG_ST_U64,
  IG_ST_F8_E4M3, IG_ST_F8_E5M2, IG_ST_OTHER
} ig_st_dtype;

typedef struct ig_st_tensor {
  char *name;
  ig_st_dtype dtype;
  char dtype_name[16];            /* as written in the header, e.g. "BF16" */
  int n_dims;
  int64_t shape[IG_ST_MAX_DIMS];
  const uint8_t *data;            /* points into the mapping of its file */
  size_t nbytes;
  int file;                       /* index of the shard that holds it */
} ig_st_tensor;

/* One parsed header over a byte buffer (the whole file). Used by the file reader and by the fuzz target. */
typedef struct ig_st_header {
  int n;
  ig_st_tensor *t;                /* sorted by name */
} ig_st_header;

/* Parses and validates buf[0..len) as a complete safetensors file. On success fills h (free with
 * ig_st_header_free); tensor data pointers point into buf. Returns 0 or -1 with a message in err. */
int ig_st_parse(const uint8_t *buf, size_t len, ig_st_header *h, char *err, size_t errlen);
void ig_st_header_free(ig_st_header *h);

/* A checkpoint: one file or all shards of an index, mapped. */
typedef struct ig_st_model ig_st_model;

/* path: a .safetensors file, or a directory holding model.safetensors or model.safetensors.index.json. */
int ig_st_open(const char *path, ig_st_model **out, char *err, size_t errlen);
/* Unmaps the files: the headers stay (names, dtypes, shapes) and every tensor's data becomes NULL. For a model whose
 * weights were all copied elsewhere (a device backend). Returns the bytes that were mapped. */
size_t ig_st_unmap(ig_st_model *m);
void ig_st_close(ig_st_model *m);
const ig_st_tensor *ig_st_find(const ig_st_model *m, const char *name);
int ig_st_count(const ig_st_model *m);
const ig_st_tensor *ig_st_at(const ig_st_model *m, int i);
size_t ig_st_elem_size(ig_st_dtype d); /* 0 for IG_ST_OTHER */
ig_st_dtype ig_st_dtype_parse(const char *s);

#endif
