/* io/safetensors: see safetensors.h. The format: 8 bytes little-endian header length N, N bytes of JSON
 * {"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}}, then the
 * data region; offsets are relative to its start. Everything read from the header is checked before use. */
#include "io/safetensors.h"
#include "util/str.h"
#include "util/file.h"
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------------- */
/* dtypes */

static const struct {
  const char *name;
  ig_st_dtype dt;
  size_t size;
} st_dtypes[] = {
    {"F32", IG_ST_F32, 4},  {"F16", IG_ST_F16, 2},   {"BF16", IG_ST_BF16, 2},      {"F64", IG_ST_F64, 8},
    {"I64", IG_ST_I64, 8},  {"I32", IG_ST_I32, 4},   {"I16", IG_ST_I16, 2},        {"I8", IG_ST_I8, 1},
    {"U8", IG_ST_U8, 1},    {"BOOL", IG_ST_BOOL, 1}, {"U16", IG_ST_U16, 2},        {"U32", IG_ST_U32, 4},
    {"U64", IG_ST_U64, 8},  {"F8_E4M3", IG_ST_F8_E4M3, 1}, {"F8_E5M2", IG_ST_F8_E5M2, 1},
};

ig_st_dtype ig_st_dtype_parse(const char *s) {
  for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
    if (!strcmp(s, st_dtypes[i].name)) return st_dtypes[i].dt;
  return IG_ST_OTHER;
}

size_t ig_st_elem_size(ig_st_dtype d) {
  for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
    if (st_dtypes[i].dt == d) return st_dtypes[i].size;
  return 0;
}

/* ---------------------------------------------------------------------------------------------------- */
/* header parsing */

typedef struct {
  size_t begin, end;
  int idx;
} st_span;

static int cmp_span(const void *a, const void *b) {
  const st_span *x = a, *y = b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end) return x->end < y->end ? -1 : 1;
  return 0;
}

static int cmp_tensor_name(const void *a, const void *b) {
  return strcmp(((const ig_st_tensor *)a)->name, ((const ig_st_tensor *)b)->name);
}

void ig_st_header_free(ig_st_header *h) {
  if (!h) return;
  for (int i = 0; i < h->n; i++) free(h->t[i].name);
  free(h->t);
  h->t = NULL;
  h->n = 0;
}

/* Reads one non-negative JSON integer that fits in size_t. */
static int json_size(json_t *v, size_t *out) {
  if (!json_is_integer(v)) return -1;
  json_int_t x = json_integer_value(v);
  if (x < 0 || (unsigned long long)x > SIZE_MAX) return -1;
  *out = (size_t)x;
  return 0;
}

static int parse_entry(const char *name, json_t *v, ig_st_tensor *t, size_t data_len, size_t *begin,
                       size_t *end, char *err, size_t errlen) {
  if (!json_is_object(v)) {
    snprintf(err, errlen, "tensor '%s': header entry is not an object", name);
    return -1;
  }
  json_t *dt = json_object_get(v, "dtype"), *shape = json_object_get(v, "shape"),
         *offs = json_object_get(v, "data_offsets");
  if (!json_is_string(dt) || !json_is_array(shape) || !json_is_array(offs)) {
    snprintf(err, errlen, "tensor '%s': header entry needs \"dtype\" (string), \"shape\" and \"data_offsets\" (arrays)",
             name);
    return -1;
  }
  const char *dts = json_string_value(dt);
  t->dtype = ig_st_dtype_parse(dts);
  if (t->dtype == IG_ST_OTHER) {
    snprintf(err, errlen, "tensor '%s': unknown dtype '%.32s'", name, dts);
    return -1;
  }
  snprintf(t->dtype_name, sizeof t->dtype_name, "%s", dts);
  size_t nd = json_array_size(shape);
  if (nd > IG_ST_MAX_DIMS) {
    snprintf(err, errlen, "tensor '%s': %zu dimensions (at most %d supported)", name, nd, IG_ST_MAX_DIMS);
    return -1;
  }
  t->n_dims = (int)nd;
  size_t numel = 1;
  for (size_t i = 0; i < nd; i++) {
    size_t d;
    if (json_size(json_array_get(shape, i), &d) || d > (size_t)INT64_MAX) {
      snprintf(err, errlen, "tensor '%s': shape[%zu] is not a non-negative integer", name, i);
      return -1;
    }
    t->shape[i] = (int64_t)d;
    if (__builtin_mul_overflow(numel, d, &numel)) {
      snprintf(err, errlen, "tensor '%s': shape overflows", name);
      return -1;
    }
  }
  size_t nbytes;
  if (__builtin_mul_overflow(numel, ig_st_elem_size(t->dtype), &nbytes)) {
    snprintf(err, errlen, "tensor '%s': shape overflows", name);
    return -1;
  }
  if (json_array_size(offs) != 2 || json_size(json_array_get(offs, 0), begin) ||
      json_size(json_array_get(offs, 1), end) || *begin > *end) {
    snprintf(err, errlen, "tensor '%s': data_offsets must be [begin, end] with 0 <= begin <= end", name);
    return -1;
  }
  if (*end > data_len) {
    snprintf(err, errlen, "tensor '%s': data_offsets [%zu, %zu] run past the end of the data (%zu bytes): file truncated?",
             name, *begin, *end, data_len);
    return -1;
  }
  if (*end - *begin != nbytes) {
    char sh[128] = "";
    size_t o = 0;
    for (int i = 0; i < t->n_dims && o < sizeof sh - 24; i++)
      o += (size_t)snprintf(sh + o, sizeof sh - o, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    snprintf(err, errlen, "tensor '%s': shape [%s] of %s needs %zu bytes but data_offsets span %zu", name, sh, dts,
             nbytes, *end - *begin);
    return -1;
  }
  t->nbytes = nbytes;
  return 0;
}

int ig_st_parse(const uint8_t *buf, size_t len, ig_st_header *h, char *err, size_t errlen) {
  h->n = 0;
  h->t = NULL;
  if (len < 8) {
    snprintf(err, errlen, "file too short for a safetensors header (%zu bytes)", len);
    return -1;
  }
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | buf[i];
  if (hlen > IG_ST_MAX_HEADER) {
    snprintf(err, errlen, "header length %llu is absurd (limit %u bytes): not a safetensors file?",
             (unsigned long long)hlen, IG_ST_MAX_HEADER);
    return -1;
  }
  if (hlen > len - 8) {
    snprintf(err, errlen, "truncated: header length %llu but the file has only %zu bytes after it",
             (unsigned long long)hlen, len - 8);
    return -1;
  }
  json_error_t je;
  json_t *root = json_loadb((const char *)buf + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &je);
  if (!root) {
    snprintf(err, errlen, "header is not valid JSON (line %d, column %d): %s", je.line, je.column, je.text);
    return -1;
  }
  if (!json_is_object(root)) {
    snprintf(err, errlen, "header is not a JSON object");
    json_decref(root);
    return -1;
  }
  const uint8_t *data = buf + 8 + hlen;
  size_t data_len = len - 8 - (size_t)hlen;
  size_t cap = json_object_size(root);
  int n = 0;
  ig_st_tensor *ts = calloc(cap ? cap : 1, sizeof *ts);
  st_span *spans = calloc(cap ? cap : 1, sizeof *spans);
  if (!ts || !spans) {
    snprintf(err, errlen, "out of memory parsing the header");
    goto fail;
  }
  const char *key;
  json_t *val;
  json_object_foreach(root, key, val) {
    if (!strcmp(key, "__metadata__")) continue;
    ig_st_tensor *t = &ts[n];
    size_t b, e;
    if (parse_entry(key, val, t, data_len, &b, &e, err, errlen)) goto fail;
    t->name = strdup(key);
    if (!t->name) {
      snprintf(err, errlen, "out of memory parsing the header");
      goto fail;
    }
    t->data = data + b;
    spans[n] = (st_span){b, e, n};
    n++;
  }
  h->t = ts;
  h->n = n;
  /* Overlapping tensors mean a corrupt (or malicious) file: two names for the same bytes. */
  qsort(spans, (size_t)n, sizeof *spans, cmp_span);
  size_t prev_end = 0;
  int prev = -1;
  for (int i = 0; i < n; i++) {
    if (spans[i].begin == spans[i].end) continue;
    if (prev >= 0 && spans[i].begin < prev_end) {
      snprintf(err, errlen, "tensors '%s' and '%s' overlap in the data region", ts[prev].name, ts[spans[i].idx].name);
      goto fail;
    }
    prev = spans[i].idx;
    prev_end = spans[i].end;
  }
  qsort(ts, (size_t)n, sizeof *ts, cmp_tensor_name);
  free(spans);
  json_decref(root);
  return 0;
fail:
  /* names and dtypes come from the file: a control character in one (a JSON "\n") would break the one-line message */
  ig_str_oneline(err);
  if (!h->t) {
    for (int i = 0; i < n; i++) free(ts[i].name);
    free(ts);
  } else {
    ig_st_header_free(h);
  }
  free(spans);
  json_decref(root);
  return -1;
}

/* ---------------------------------------------------------------------------------------------------- */
/* files and shards */

struct ig_st_model {
  int n_files;
  ig_mmap *maps;
  ig_st_header all;   /* tensors of every shard, sorted by name */
};

void ig_st_close(ig_st_model *m) {
  if (!m) return;
  for (int i = 0; i < m->n_files; i++) ig_file_munmap(&m->maps[i]);
  free(m->maps);
  ig_st_header_free(&m->all);
  free(m);
}

size_t ig_st_unmap(ig_st_model *m) {
  size_t n = 0;
  for (int i = 0; m && i < m->n_files; i++) n += m->maps[i].size, ig_file_munmap(&m->maps[i]);
  for (int i = 0; m && i < m->all.n; i++) m->all.t[i].data = NULL;
  return n;
}

const ig_st_tensor *ig_st_find(const ig_st_model *m, const char *name) {
  ig_st_tensor key = {.name = (char *)name};
  return bsearch(&key, m->all.t, (size_t)m->all.n, sizeof key, cmp_tensor_name);
}

int ig_st_count(const ig_st_model *m) { return m->all.n; }
const ig_st_tensor *ig_st_at(const ig_st_model *m, int i) { return &m->all.t[i]; }

static const char *base_name(const char *p) {
  const char *s = strrchr(p, '/');
  return s ? s + 1 : p;
}

/* Maps one file and appends its tensors (tagged with file index) to m->all. */
static int add_file(ig_st_model *m, const char *path, char *err, size_t errlen) {
  ig_mmap *maps = realloc(m->maps, (size_t)(m->n_files + 1) * sizeof *maps);
  if (!maps) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  m->maps = maps;
  char e2[384];
  if (ig_file_mmap(path, &maps[m->n_files], e2, sizeof e2)) {
    snprintf(err, errlen, "%s", e2);
    return -1;
  }
  int fi = m->n_files++;
  ig_st_header h;
  if (ig_st_parse(maps[fi].data, maps[fi].size, &h, e2, sizeof e2)) {
    snprintf(err, errlen, "%s: %s", base_name(path), e2);
    return -1;
  }
  ig_st_tensor *all = realloc(m->all.t, (size_t)(m->all.n + h.n + 1) * sizeof *all);
  if (!all) {
    ig_st_header_free(&h);
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  m->all.t = all;
  for (int i = 0; i < h.n; i++) {
    h.t[i].file = fi;
    all[m->all.n++] = h.t[i];
  }
  free(h.t); /* names moved */
  return 0;
}

static int open_index(ig_st_model *m, const char *dir, const char *index_path, char *err, size_t errlen) {
  char *txt = NULL;
  size_t len;
  char e2[384];
  if (ig_file_read(index_path, 64u << 20, &txt, &len, e2, sizeof e2)) {
    snprintf(err, errlen, "%s", e2);
    return -1;
  }
  json_error_t je;
  json_t *root = json_loadb(txt, len, JSON_REJECT_DUPLICATES, &je);
  free(txt);
  json_t *wm = root ? json_object_get(root, "weight_map") : NULL;
  if (!json_is_object(wm)) {
    snprintf(err, errlen, "%s: %s", base_name(index_path),
             root ? "no \"weight_map\" object" : "not valid JSON");
    json_decref(root);
    return -1;
  }
  /* Map each distinct shard once, in order of first appearance. */
  const char *name;
  json_t *v;
  char **files = NULL;
  int nf = 0, rc = -1;
  json_object_foreach(wm, name, v) {
    const char *f = json_string_value(v);
    if (!f || !*f || strchr(f, '/') || !strcmp(f, "..")) {
      snprintf(err, errlen, "%s: bad shard file name for tensor '%s'", base_name(index_path), name);
      goto out;
    }
    int seen = 0;
    for (int i = 0; i < nf && !seen; i++) seen = !strcmp(files[i], f);
    if (seen) continue;
    char **nfiles = realloc(files, (size_t)(nf + 1) * sizeof *files);
    if (!nfiles) goto oom;
    files = nfiles;
    files[nf++] = (char *)f;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, f);
    if (add_file(m, path, err, errlen)) goto out;
  }
  if (nf == 0) {
    snprintf(err, errlen, "%s: empty weight_map", base_name(index_path));
    goto out;
  }
  qsort(m->all.t, (size_t)m->all.n, sizeof *m->all.t, cmp_tensor_name);
  for (int i = 1; i < m->all.n; i++)
    if (!strcmp(m->all.t[i].name, m->all.t[i - 1].name)) {
      snprintf(err, errlen, "tensor '%s' appears in more than one shard", m->all.t[i].name);
      goto out;
    }
  json_object_foreach(wm, name, v) {
    const ig_st_tensor *t = ig_st_find(m, name);
    int fi = -1;
    for (int i = 0; i < nf; i++)
      if (!strcmp(files[i], json_string_value(v))) fi = i;
    if (!t || t->file != fi) {
      snprintf(err, errlen, "tensor '%s' is listed in %s for %s but that file does not hold it", name,
               base_name(index_path), json_string_value(v));
      goto out;
    }
  }
  rc = 0;
  goto out;
oom:
  snprintf(err, errlen, "out of memory");
out:
  free(files);
  json_decref(root);
  return rc;
}

int ig_st_open(const char *path, ig_st_model **out, char *err, size_t errlen) {
  *out = NULL;
  ig_st_model *m = calloc(1, sizeof *m);
  if (!m) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  int rc;
  if (ig_dir_exists(path)) {
    char p[4096];
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", path);
    if (ig_file_exists(p)) {
      rc = open_index(m, path, p, err, errlen);
    } else {
      snprintf(p, sizeof p, "%s/model.safetensors", path);
      if (!ig_file_exists(p)) {
        snprintf(err, errlen, "%s: no model.safetensors or model.safetensors.index.json", path);
        rc = -1;
      } else {
        rc = add_file(m, p, err, errlen);
      }
    }
  } else {
    rc = add_file(m, path, err, errlen);
  }
  if (rc == 0) qsort(m->all.t, (size_t)m->all.n, sizeof *m->all.t, cmp_tensor_name);
  if (rc) {
    ig_st_close(m);
    return -1;
  }
  *out = m;
  return 0;
}
