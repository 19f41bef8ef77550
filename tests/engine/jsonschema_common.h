/* tests/engine/jsonschema_common.h: an independent validator of the JSON Schema subset engine/jsonschema supports,
 * over jansson values (json_loads'ed documents), for the unit test (test_jsonschema.c) and the fuzz target
 * (fuzz/fuzz_engine_jsonschema.c). It follows jsonschema.h's semantics, not JSON Schema's where they differ:
 * "additionalProperties" absent means false, keywords of one type without "type" imply that type, and in strict
 * mode the keys must come in the schema's order. jsv_ground says where it and the recognizer should agree. */
#ifndef IG_TESTS_JSONSCHEMA_COMMON_H
#define IG_TESTS_JSONSCHEMA_COMMON_H
#include "engine/jsonschema.h"
#include "json_common.h"
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static inline const json_t *jsv_deref(const json_t *root, const json_t *sch) {
  for (int i = 0; i < 64 && json_is_object(sch); i++) {
    const json_t *r = json_object_get(sch, "$ref");
    if (!json_is_string(r)) return sch;
    const char *p = json_string_value(r);
    if (!strcmp(p, "#")) sch = root;
    else if (!strncmp(p, "#/$defs/", 8)) sch = json_object_get(json_object_get(root, "$defs"), p + 8);
    else if (!strncmp(p, "#/definitions/", 14)) sch = json_object_get(json_object_get(root, "definitions"), p + 14);
    else return NULL;
  }
  return sch;
}

static inline int jsv_type_ok(const char *t, const json_t *v) {
  if (!strcmp(t, "object")) return json_is_object(v);
  if (!strcmp(t, "array")) return json_is_array(v);
  if (!strcmp(t, "string")) return json_is_string(v);
  if (!strcmp(t, "integer")) return json_is_integer(v);
  if (!strcmp(t, "number")) return json_is_number(v);
  if (!strcmp(t, "boolean")) return json_is_boolean(v);
  if (!strcmp(t, "null")) return json_is_null(v);
  return 0;
}

static inline size_t jsv_codepoints(const json_t *v) {
  const unsigned char *p = (const unsigned char *)json_string_value(v);
  size_t n = json_string_length(v), k = 0;
  for (size_t i = 0; i < n; i++) k += (p[i] & 0xC0) != 0x80;
  return k;
}

static inline int jsv_has(const json_t *sch, const char *k) { return json_object_get(sch, k) != NULL; }

/* 1 when v is valid against sch (strict: object keys in the order of "properties", enum values written as
 * their compact sorted-key text). */
static inline int jsv_valid(const json_t *root, const json_t *sch, const json_t *v, int strict, int nest) {
  if (nest > 200) return 0;
  sch = jsv_deref(root, sch);
  if (!sch) return 0;
  if (json_is_true(sch)) return 1;
  if (!json_is_object(sch)) return 0;
  const json_t *type = json_object_get(sch, "type"), *e;
  if (type) {
    int ok = 0;
    if (json_is_string(type)) ok = jsv_type_ok(json_string_value(type), v);
    size_t i;
    const json_t *t;
    json_array_foreach(type, i, t) ok |= jsv_type_ok(json_string_value(t), v);
    if (!ok) return 0;
  }
  const json_t *en = json_object_get(sch, "enum"), *cn = json_object_get(sch, "const");
  if (en || cn) {
    json_t *one = NULL;
    if (cn) en = one = json_pack("[O]", cn);
    size_t i;
    int found = 0;
    json_array_foreach(en, i, e) if (json_equal(e, (json_t *)v)) {
      found = 1;
      if (strict) {
        char *a = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY),
             *b = json_dumps(e, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS);
        found = a && b && !strcmp(a, b);
        free(a), free(b);
      }
      break;
    }
    json_decref(one);
    return found;
  }
  const json_t *alts = json_object_get(sch, "anyOf");
  int one_of = 0;
  if (!alts) alts = json_object_get(sch, "oneOf"), one_of = 1;
  if (alts) {
    size_t i, n = 0;
    const json_t *a;
    json_array_foreach(alts, i, a) n += (size_t)jsv_valid(root, a, v, strict, nest + 1);
    return one_of ? n == 1 : n >= 1;
  }
  int is_obj = jsv_has(sch, "properties") || jsv_has(sch, "required") || jsv_has(sch, "additionalProperties");
  int is_arr = jsv_has(sch, "items") || jsv_has(sch, "minItems") || jsv_has(sch, "maxItems");
  int is_str = jsv_has(sch, "minLength") || jsv_has(sch, "maxLength");
  if (!type && ((is_obj && !json_is_object(v)) || (is_arr && !json_is_array(v)) || (is_str && !json_is_string(v))))
    return 0;
  if (json_is_object(v) &&
      (json_object_get(sch, "properties") || json_is_false(json_object_get(sch, "additionalProperties")))) {
    const json_t *props = json_object_get(sch, "properties"), *r;
    size_t i, last = 0;
    json_array_foreach(json_object_get(sch, "required"), i, r) if (!json_object_get(v, json_string_value(r))) return 0;
    const char *k;
    json_t *x;
    json_object_foreach((json_t *)v, k, x) {
      const json_t *ps = json_object_get(props, k);
      if (!ps || !jsv_valid(root, ps, x, strict, nest + 1)) return 0;
      if (strict) { /* the index of k in properties must grow */
        size_t idx = 0, found = 0;
        const char *pk;
        const json_t *pv;
        json_object_foreach((json_t *)props, pk, pv) {
          idx++;
          if (!strcmp(pk, k)) {
            found = idx;
            break;
          }
        }
        if (found <= last) return 0;
        last = found;
      }
    }
  }
  if (json_is_array(v)) {
    const json_t *items = json_object_get(sch, "items"), *mn = json_object_get(sch, "minItems"),
                 *mx = json_object_get(sch, "maxItems");
    size_t n = json_array_size(v), i;
    if (mn && (json_int_t)n < json_integer_value(mn)) return 0;
    if (mx && (json_int_t)n > json_integer_value(mx)) return 0;
    json_array_foreach(v, i, e) if (items && !jsv_valid(root, items, e, strict, nest + 1)) return 0;
  }
  if (json_is_string(v)) {
    const json_t *mn = json_object_get(sch, "minLength"), *mx = json_object_get(sch, "maxLength");
    size_t n = jsv_codepoints(v);
    if (mn && (json_int_t)n < json_integer_value(mn)) return 0;
    if (mx && (json_int_t)n > json_integer_value(mx)) return 0;
  }
  return 1;
}

/* The \u escape at s[i]: 1 a high surrogate, 2 a low one, 0 another (or not a whole escape: -1). */
static inline int jsv_surrogate(const char *s, size_t n, size_t i) {
  if (i + 5 >= n || s[i] != '\\' || s[i + 1] != 'u') return -1;
  if ((s[i + 2] | 0x20) != 'd') return 0;
  char c = (char)(s[i + 3] | 0x20);
  return c >= '8' && c <= 'b' && (c <= '9' || c >= 'a') ? 1 : c >= 'c' && c <= 'f' ? 2 : 0;
}

/* Where jansson and the recognizer can agree on a text at all: no numbers jansson refuses as too big (long digit
 * runs, 3+ digit exponents), no \u escapes of lone surrogates (jansson refuses them), no NUL byte, nesting
 * within the recognizer's frames. */
static inline int jsv_ground(const char *s, size_t n) {
  size_t opens;
  if (memchr(s, 0, n) || !numbers_ok(s, n, &opens)) return 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '\\' && i + 1 < n && s[i + 1] == 'u') { /* \u0000 is fine (JSON_ALLOW_NUL); lone surrogates not */
      int hi = jsv_surrogate(s, n, i), lo = hi == 1 ? jsv_surrogate(s, n, i + 6) : 0;
      if (hi == 2 || (hi == 1 && lo != 2)) return 0;
      if (hi == 0 && !memcmp(s + i + 2, "0000", 4)) return 0; /* jansson refuses NUL in keys */
      i += hi == 1 ? 11 : 5;
      continue;
    }
    if (s[i] == '\\') i++;
  }
  return opens < IG_JSM_MAX_DEPTH;
}

/* 1 when the text (n bytes) loads as one JSON value that is valid against the schema. */
static inline int jsv_accepts_text(const json_t *schema, const char *s, size_t n, int strict) {
  json_error_t je;
  json_t *v = json_loadb(s, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
  if (!v) return 0;
  int ok = jsv_valid(schema, schema, v, strict, 0);
  json_decref(v);
  return ok;
}

/* Copies the text without its whitespace outside strings into out (n bytes at least); returns its length. */
static inline size_t jsv_compact(const char *s, size_t n, char *out) {
  size_t k = 0;
  int in_str = 0;
  for (size_t i = 0; i < n; i++) {
    if (!in_str && is_ws_byte(s[i])) continue;
    out[k++] = s[i];
    if (in_str && s[i] == '\\' && i + 1 < n) out[k++] = s[++i];
    else if (s[i] == '"') in_str = !in_str;
  }
  return k;
}

/* 1 when some "enum"/"const" in the schema has an array or object value (written without whitespace inside). */
static inline int jsv_container_enum(const json_t *sch) {
  if (json_is_array(sch)) {
    size_t i;
    const json_t *e;
    json_array_foreach(sch, i, e) if (jsv_container_enum(e)) return 1;
    return 0;
  }
  if (!json_is_object(sch)) return 0;
  const char *k;
  const json_t *v;
  json_object_foreach((json_t *)sch, k, v) {
    if (!strcmp(k, "const") && (json_is_array(v) || json_is_object(v))) return 1;
    if (!strcmp(k, "enum")) {
      size_t i;
      const json_t *e;
      json_array_foreach(v, i, e) if (json_is_array(e) || json_is_object(e)) return 1;
    } else if (jsv_container_enum(v)) return 1;
  }
  return 0;
}

/* 1 when the text is written as the recognizer writes it: its compact form (whitespace outside strings taken
 * out) is jansson's compact dump of it in document order, every whitespace gap is empty, one space, or "\n" then
 * at most min(IG_JSON_MAX_INDENT, IG_JSON_INDENT_PER_LEVEL * d) spaces/tabs, d being the containers open there
 * ('{' and '[' before it less '}' and ']', outside strings; gap_shape_ok), none trails. */
static inline int jsv_canonical(const char *s, size_t n) {
  if (n == 0 || is_ws_byte(s[n - 1])) return 0;
  json_error_t je;
  json_t *v = json_loadb(s, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
  if (!v) return 0;
  char *d = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
  json_decref(v);
  if (!d) return 0;
  size_t k = 0, gap = 0, depth = 0;
  int in_str = 0, ok = 1;
  size_t i;
  for (i = 0; i < n && ok; i++) {
    char c = s[i];
    if (!in_str && is_ws_byte(c)) {
      if (!gap) gap = i + 1;
      continue;
    }
    if (gap && !gap_shape_ok(s + gap - 1, i - (gap - 1), depth)) ok = 0;
    gap = 0;
    if (d[k] == 0 || d[k] != c) break;
    k++;
    if (in_str && c == '\\') {
      if (++i >= n || d[k] == 0 || d[k] != s[i]) break;
      k++;
      continue;
    }
    if (c == '"') in_str = !in_str;
    else if (!in_str && (c == '{' || c == '[')) depth++;
    else if (!in_str && (c == '}' || c == ']') && depth) depth--;
  }
  ok = ok && i == n && d[k] == 0;
  free(d);
  return ok;
}

#endif
