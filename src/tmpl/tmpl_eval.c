/* tmpl_eval: the tree-walking interpreter and the public compile/render entry points. Scoping follows
 * jinja2: each for-loop iteration and each macro call gets a fresh scope (assignments inside do not leak
 * out), `if` does not; names resolve through the scope chain, then the render context, then the globals
 * (range, namespace, raise_exception, strftime_now, ...). Errors longjmp out of the render; all memory of a
 * render lives in its arena or its buffer pool, so nothing leaks on any path. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tmpl/tmpl_int.h"

enum { EX_OK, EX_BREAK, EX_CONTINUE };

/* ---------------------------------------------------------------- errors, memory */
_Noreturn void tm_fail(tm_ctx *c, int code, const char *fmt, ...) {
  if (c->err && c->errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, c->errlen, fmt, ap);
    va_end(ap);
  }
  c->code = code;
  longjmp(c->jb, 1);
}
void *tm_ralloc(tm_ctx *c, size_t n) {
  void *p = tm_alloc(&c->arena, n);
  if (!p) tm_fail(c, IG_TMPL_ELIMIT, "template exceeded the memory limit (%zu bytes)", c->arena.limit);
  return p;
}
ig_str *tm_buf_get(tm_ctx *c) {
  tm_buf *b = c->bufs_free;
  if (b) {
    c->bufs_free = b->next_free;
    ig_str_clear(&b->s);
    b->s.oom = 0;
    return &b->s;
  }
  b = tm_ralloc(c, sizeof *b);
  ig_str_init(&b->s);
  b->next_all = c->bufs_all;
  c->bufs_all = b;
  return &b->s;
}
void tm_buf_put(tm_ctx *c, ig_str *s) {
  tm_buf *b = (tm_buf *)s;
  if (b->s.cap > (1u << 20)) ig_str_free(&b->s); /* do not keep big buffers around */
  b->next_free = c->bufs_free;
  c->bufs_free = b;
}
_Noreturn void tm_fail_steps(tm_ctx *c) {
  tm_fail(c, IG_TMPL_ELIMIT, "template exceeded the step limit (%llu)", (unsigned long long)c->max_steps);
}
static int64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}
/* Every 256 steps (or more at once: a long scan charges its share) the clock is read, when there is a time limit. */
void tm_tick(tm_ctx *c) {
  c->next_tick = c->steps + 256;
  if (c->deadline_ns && mono_ns() > c->deadline_ns)
    tm_fail(c, IG_TMPL_ELIMIT, "template exceeded the time limit (%u ms)", c->max_ms);
}
static inline void step(tm_ctx *c) { tm_charge(c, 1); }
static void out_append(tm_ctx *c, const char *p, size_t n) {
  ig_str_append(c->out, p, n);
  tm_check_str(c, c->out);
}

/* Fail with the error an undefined value carries (jinja2's UndefinedError). */
_Noreturn void tm_undef_fail(tm_ctx *c, const tm_val *v) {
  if (v->tuple == 1) tm_fail(c, IG_TMPL_ERUNTIME, "'%.*s' is undefined", (int)v->n, v->s);
  if (v->tuple == 2) tm_fail(c, IG_TMPL_ERUNTIME, "'dict object' has no attribute '%.*s'", (int)v->n, v->s);
  tm_fail(c, IG_TMPL_ERUNTIME, "%s", v->s ? v->s : "undefined value");
}
#define undef_fail tm_undef_fail
static tm_val undef_msg(tm_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static tm_val undef_msg(tm_ctx *c, const char *fmt, ...) {
  char buf[300];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n < 0) n = 0;
  if ((size_t)n >= sizeof buf) n = sizeof buf - 1;
  char *d = tm_ralloc(c, (size_t)n + 1);
  memcpy(d, buf, (size_t)n + 1);
  return tm_undef(d);
}
static const char *obj_desc(const tm_val *v) {
  switch (v->t) {
  case V_DICT: return "dict object";
  case V_LIST: return v->unsafe ? "generator object" : v->tuple == 2 ? "range object" : v->tuple ? "tuple object" : "list object";
  case V_STR: return "str object";
  case V_INT: return "int object";
  case V_FLOAT: return "float object";
  case V_BOOL: return "bool object";
  case V_NONE: return "None";
  case V_NS: return "jinja2.utils.Namespace object";
  case V_LOOP: return "jinja2.runtime.LoopContext object";
  default: return "object";
  }
}

/* ---------------------------------------------------------------- scopes */
static tm_scope *scope_new(tm_ctx *c, tm_scope *parent) {
  tm_scope *s = tm_ralloc(c, sizeof *s);
  memset(s, 0, sizeof *s);
  s->parent = parent;
  return s;
}
static void scope_set(tm_ctx *c, tm_scope *s, int id, tm_val v) {
  for (int i = 0; i < s->n; i++)
    if (s->ids[i] == id) {
      s->vals[i] = v;
      return;
    }
  if (s->n == s->cap) {
    int cap = s->cap ? s->cap * 2 : 4;
    int *ids = tm_ralloc(c, sizeof(int) * (size_t)cap);
    tm_val *vals = tm_ralloc(c, sizeof(tm_val) * (size_t)cap);
    if (s->n) {
      memcpy(ids, s->ids, sizeof(int) * (size_t)s->n);
      memcpy(vals, s->vals, sizeof(tm_val) * (size_t)s->n);
    }
    s->ids = ids;
    s->vals = vals;
    s->cap = cap;
  }
  s->ids[s->n] = id;
  s->vals[s->n] = v;
  s->n++;
}
static tm_val lookup(tm_ctx *c, tm_scope *s, int id) {
  for (; s; s = s->parent)
    for (int i = s->n - 1; i >= 0; i--)
      if (s->ids[i] == id) return s->vals[i];
  tm_val *g = &c->globals[id];
  if (g->t == TM_UNRESOLVED) {
    tm_sv name = c->t->names[id];
    const json_t *j = c->json ? json_object_getn(c->json, name.p, name.n) : NULL;
    if (j) *g = tm_from_json(c, j);
    else {
      int fn = tm_func_id(name);
      if (fn >= 0) {
        tm_val f = {0};
        f.t = V_FUNC;
        f.fn = fn;
        *g = f;
      } else
        *g = tm_undef_kind(1, name.p, name.n);
    }
  }
  return *g;
}

/* ---------------------------------------------------------------- attribute and item access */
tm_val tm_getattr(tm_ctx *c, tm_val obj, tm_sv name) {
  switch (obj.t) {
  case V_UNDEF: undef_fail(c, &obj);
  case V_DICT: {
    int mid = tm_method_id(&obj, name);
    if (mid < 0) {
      int i = tm_dict_find_str(c, obj.d, name.p, name.n);
      if (i >= 0) return obj.d->v[i];
      if (tm_is_unsafe_method(&obj, name)) break;
      return tm_undef_kind(2, name.p, name.n);
    }
    tm_method *m = tm_ralloc(c, sizeof *m);
    m->self = obj;
    m->id = mid;
    tm_val v = {0};
    v.t = V_METHOD;
    v.mt = m;
    return v;
  }
  case V_NS: {
    int i = tm_dict_find_str(c, obj.d, name.p, name.n);
    if (i >= 0) return obj.d->v[i];
    return undef_msg(c, "'%s' has no attribute '%.*s'", obj_desc(&obj), (int)(name.n > 100 ? 100 : name.n), name.p);
  }
  case V_LOOP: {
    tm_loop *l = obj.lp;
#define IS(w) (name.n == sizeof(w) - 1 && memcmp(name.p, w, name.n) == 0)
    if (IS("index")) return tm_int(l->index0 + 1);
    if (IS("index0")) return tm_int(l->index0);
    if (IS("revindex")) return tm_int(l->length - l->index0);
    if (IS("revindex0")) return tm_int(l->length - l->index0 - 1);
    if (IS("first")) return tm_bool(l->index0 == 0);
    if (IS("last")) return tm_bool(l->index0 == l->length - 1);
    if (IS("length")) return tm_int(l->length);
    if (IS("depth")) return tm_int(l->depth0 + 1);
    if (IS("depth0")) return tm_int(l->depth0);
    if (IS("previtem")) return l->has_prev ? l->prev : undef_msg(c, "there is no previous item");
    if (IS("nextitem")) return l->has_next ? l->next : undef_msg(c, "there is no next item");
#undef IS
    break;
  }
  default: break;
  }
  int mid = tm_method_id(&obj, name);
  if (mid >= 0) {
    tm_method *m = tm_ralloc(c, sizeof *m);
    m->self = obj;
    m->id = mid;
    tm_val v = {0};
    v.t = V_METHOD;
    v.mt = m;
    return v;
  }
  if (tm_is_unsafe_method(&obj, name)) {
    tm_val u = undef_msg(c, "access to attribute '%.*s' of '%s' object is unsafe.", (int)(name.n > 100 ? 100 : name.n),
                         name.p, tm_type_name(&obj));
    u.unsafe = 1;
    return u;
  }
  return undef_msg(c, "'%s' has no attribute '%.*s'", obj_desc(&obj), (int)(name.n > 100 ? 100 : name.n), name.p);
}

static int64_t as_index(tm_ctx *c, const tm_val *k, int *ok) {
  *ok = k->t == V_INT || k->t == V_BOOL;
  return k->i;
}

tm_val tm_getitem(tm_ctx *c, tm_val obj, tm_val key) {
  int ok;
  switch (obj.t) {
  case V_UNDEF: undef_fail(c, &obj);
  case V_DICT: {
    int i = tm_dict_find(c, obj.d, key);
    if (i >= 0) return obj.d->v[i];
    if (key.t == V_STR) {
      tm_val r = tm_getattr(c, obj, (tm_sv){key.s, key.n});
      return r;
    }
    ig_str *s = tm_buf_get(c);
    tm_repr(c, s, &key);
    tm_val r = undef_msg(c, "'dict object' has no attribute %.*s", (int)(s->len > 100 ? 100 : s->len), s->p);
    tm_buf_put(c, s);
    return r;
  }
  case V_LIST: {
    int64_t i = as_index(c, &key, &ok);
    if (obj.unsafe) return undef_msg(c, "generator object has no element %lld", (long long)key.i);
    if (ok) {
      int64_t n = obj.l->n;
      if (i < 0) i += n;
      if (i >= 0 && i < n) return obj.l->v[i];
      return undef_msg(c, "%s has no element %lld", obj_desc(&obj), (long long)key.i);
    }
    if (key.t == V_STR) return tm_getattr(c, obj, (tm_sv){key.s, key.n});
    return undef_msg(c, "%s has no element", obj_desc(&obj));
  }
  case V_STR: {
    int64_t i = as_index(c, &key, &ok);
    if (ok) {
      size_t n = tm_u8_len(obj.s, obj.n);
      if (i < 0) i += (int64_t)n;
      if (i >= 0 && (size_t)i < n) {
        size_t a = tm_u8_offset(obj.s, obj.n, (size_t)i);
        size_t b = tm_u8_offset(obj.s + a, obj.n - a, 1) + a;
        return tm_str(c, obj.s + a, b - a);
      }
      return undef_msg(c, "str object has no element %lld", (long long)key.i);
    }
    if (key.t == V_STR) return tm_getattr(c, obj, (tm_sv){key.s, key.n});
    return undef_msg(c, "str object has no element");
  }
  case V_NS: case V_LOOP:
    if (key.t == V_STR) return tm_getattr(c, obj, (tm_sv){key.s, key.n});
    break;
  default: break;
  }
  if (key.t == V_STR) return tm_getattr(c, obj, (tm_sv){key.s, key.n});
  if (key.t == V_INT || key.t == V_BOOL) return undef_msg(c, "%s has no element %lld", obj_desc(&obj), (long long)key.i);
  return undef_msg(c, "'%s' has no attribute or element", obj_desc(&obj));
}

/* Python slicing obj[a:b:s] over a list or a string (by code points). */
static tm_val do_slice(tm_ctx *c, tm_val obj, tm_val *a, tm_val *b, tm_val *st) {
  if (obj.t == V_UNDEF) undef_fail(c, &obj);
  if (obj.t == V_LIST && obj.unsafe) return undef_msg(c, "generator object has no element");
  int64_t step_ = 1;
  if (st && st->t != V_NONE) {
    if (st->t != V_INT && st->t != V_BOOL) tm_fail(c, IG_TMPL_ERUNTIME, "slice indices must be integers or None");
    step_ = st->i;
    if (step_ == 0) tm_fail(c, IG_TMPL_ERUNTIME, "slice step cannot be zero");
  }
  int64_t n;
  const char *s = NULL;
  size_t *offs = NULL;
  if (obj.t == V_LIST) n = obj.l->n;
  else if (obj.t == V_STR) {
    s = obj.s;
    n = (int64_t)tm_u8_len(obj.s, obj.n);
    if ((size_t)n != obj.n) { /* non-ASCII: code point offsets */
      offs = tm_ralloc(c, sizeof(size_t) * (size_t)(n + 1));
      size_t k = 0;
      for (int64_t i = 0; i < n; i++) {
        offs[i] = k;
        k++;
        while (k < obj.n && ((unsigned char)s[k] & 0xC0) == 0x80) k++;
      }
      offs[n] = obj.n;
    }
  } else
    tm_fail(c, IG_TMPL_ERUNTIME, "'%s' object is not subscriptable", tm_type_name(&obj));
  int64_t lo, hi;
  for (int k = 0; k < 2; k++) {
    tm_val *x = k == 0 ? a : b;
    int64_t *dst = k == 0 ? &lo : &hi;
    if (!x || x->t == V_NONE) {
      *dst = step_ > 0 ? (k == 0 ? 0 : n) : (k == 0 ? n - 1 : -1 - n); /* sentinel handled below */
      if (step_ < 0 && k == 1) *dst = INT64_MIN;
      continue;
    }
    if (x->t != V_INT && x->t != V_BOOL) tm_fail(c, IG_TMPL_ERUNTIME, "slice indices must be integers or None");
    int64_t v = x->i;
    if (v < 0) {
      v += n;
      if (v < 0) v = step_ < 0 ? -1 : 0;
    } else if (v >= n)
      v = step_ < 0 ? n - 1 : n;
    *dst = v;
  }
  if (step_ < 0 && hi == INT64_MIN) hi = -1;
  tm_list *l = obj.t == V_LIST ? tm_list_new(c, 0) : NULL;
  ig_str *o = obj.t == V_STR ? tm_buf_get(c) : NULL;
  if (obj.t == V_STR && step_ == 1) {
    tm_buf_put(c, o);
    if (hi <= lo) return tm_str(c, "", 0);
    size_t bl = offs ? offs[lo] : (size_t)lo, bh = offs ? offs[hi] : (size_t)hi;
    return tm_str(c, s + bl, bh - bl);
  }
  for (int64_t i = lo; step_ > 0 ? i < hi : i > hi; i += step_) {
    step(c);
    if (l) tm_list_push(c, l, obj.l->v[i]);
    else {
      size_t bl = offs ? offs[i] : (size_t)i, bh = offs ? offs[i + 1] : (size_t)i + 1;
      ig_str_append(o, s + bl, bh - bl);
    }
  }
  if (l && obj.tuple == 2) { /* a slice of a range is a range */
    tm_val r = tm_list_val(l, false);
    r.tuple = 2;
    l->step = obj.l->step * step_;
    l->start = obj.l->start + (step_ > 0 ? (lo < 0 ? 0 : lo) : lo) * obj.l->step;
    l->stop = l->start + (int64_t)l->n * l->step;
    return r;
  }
  if (l) return tm_list_val(l, obj.tuple);
  tm_val r = tm_str_from(c, o);
  tm_buf_put(c, o);
  return r;
}

tm_list *tm_iterate(tm_ctx *c, const tm_val *v) {
  switch (v->t) {
  case V_LIST:
    if (v->l->err) tm_fail(c, IG_TMPL_ERUNTIME, "%s", v->l->err);
    return v->l;
  case V_UNDEF: return tm_list_new(c, 0);
  case V_DICT: {
    tm_list *l = tm_list_new(c, v->d->n);
    for (uint32_t i = 0; i < v->d->n; i++) l->v[l->n++] = v->d->k[i];
    return l;
  }
  case V_STR: {
    size_t n = tm_u8_len(v->s, v->n);
    tm_list *l = tm_list_new(c, (uint32_t)n);
    size_t i = 0;
    while (i < v->n) {
      size_t j = i + 1;
      while (j < v->n && ((unsigned char)v->s[j] & 0xC0) == 0x80) j++;
      tm_list_push(c, l, tm_str(c, v->s + i, j - i));
      i = j;
    }
    return l;
  }
  default: tm_fail(c, IG_TMPL_ERUNTIME, "'%s' object is not iterable", tm_type_name(v));
  }
}

/* ---------------------------------------------------------------- arithmetic */
static bool num(const tm_val *v) { return v->t == V_INT || v->t == V_BOOL || v->t == V_FLOAT; }
static double fval(const tm_val *v) { return v->t == V_FLOAT ? v->f : (double)v->i; }
static _Noreturn void op_type_error(tm_ctx *c, const char *op, const tm_val *a, const tm_val *b) {
  if (a->t == V_UNDEF) undef_fail(c, a);
  if (b->t == V_UNDEF) undef_fail(c, b);
  if (op[0] == '+' && a->t == V_STR)
    tm_fail(c, IG_TMPL_ERUNTIME, "can only concatenate str (not \"%s\") to str", tm_type_name(b));
  if (op[0] == '+' && a->t == V_LIST)
    tm_fail(c, IG_TMPL_ERUNTIME, "can only concatenate %s (not \"%s\") to %s", tm_type_name(a), tm_type_name(b), tm_type_name(a));
  tm_fail(c, IG_TMPL_ERUNTIME, "unsupported operand type(s) for %s: '%s' and '%s'", op, tm_type_name(a), tm_type_name(b));
}
static tm_val repeat(tm_ctx *c, const tm_val *seq, int64_t k) {
  if (k < 0) k = 0;
  if (seq->t == V_STR) {
    if (k && seq->n && (uint64_t)k > c->max_output / seq->n)
      tm_fail(c, IG_TMPL_ELIMIT, "string larger than the limit (%zu bytes)", c->max_output);
    size_t total = (size_t)k * seq->n;
    char *d = tm_ralloc(c, total + 1);
    if (total) {
      memcpy(d, seq->s, seq->n);
      for (size_t done = seq->n; done < total;) { /* doubling copies */
        size_t k2 = done < total - done ? done : total - done;
        memcpy(d + done, d, k2);
        done += k2;
      }
    }
    d[total] = 0;
    c->steps += total / 256;
    return tm_str(c, d, total);
  }
  if (k && seq->l->n && (uint64_t)k > (c->max_output / 16) / seq->l->n)
    tm_fail(c, IG_TMPL_ELIMIT, "list larger than the limit");
  tm_list *l = tm_list_new(c, (uint32_t)(k * seq->l->n));
  for (int64_t i = 0; i < k; i++)
    for (uint32_t j = 0; j < seq->l->n; j++) l->v[l->n++] = seq->l->v[j];
  c->steps += (uint64_t)l->n;
  return tm_list_val(l, seq->tuple);
}
tm_val tm_percent_format(tm_ctx *c, tm_val fmt, tm_val args);

tm_val tm_binop(tm_ctx *c, int op, tm_val a, tm_val b) {
  switch (op) {
  case OP_CONCAT: {
    tm_val x = tm_stringify(c, &a), y = tm_stringify(c, &b);
    x.unsafe = y.unsafe = 0; /* `~` is str_join: plain str */
    if (!x.n) return y;
    if (!y.n) return x;
    size_t n = (size_t)x.n + y.n;
    if (n > c->max_output) tm_fail(c, IG_TMPL_ELIMIT, "string larger than the limit (%zu bytes)", c->max_output);
    c->steps += n / 32; /* copying costs: quadratic growth runs into the step limit */
    char *d = tm_ralloc(c, n + 1);
    memcpy(d, x.s, x.n);
    memcpy(d + x.n, y.s, y.n);
    d[n] = 0;
    return tm_str(c, d, n);
  }
  case OP_ADD:
    if (a.t == V_STR && b.t == V_STR) {
      if (a.unsafe || b.unsafe) { /* Markup + str escapes the str */
        tm_val r = tm_binop(c, OP_CONCAT, tm_html_escape(c, a), tm_html_escape(c, b));
        r.unsafe = 1;
        return r;
      }
      return tm_binop(c, OP_CONCAT, a, b);
    }
    if (num(&a) && num(&b)) {
      if (a.t == V_FLOAT || b.t == V_FLOAT) return tm_float(fval(&a) + fval(&b));
      int64_t r;
      if (__builtin_add_overflow(a.i, b.i, &r)) tm_fail(c, IG_TMPL_ERUNTIME, "integer overflow");
      return tm_int(r);
    }
    if (a.t == V_LIST && b.t == V_LIST && a.tuple == b.tuple && a.tuple != 2 && !a.unsafe && !b.unsafe) {
      tm_list *l = tm_list_new(c, a.l->n + b.l->n);
      if (a.l->n) memcpy(l->v, a.l->v, sizeof(tm_val) * a.l->n);
      if (b.l->n) memcpy(l->v + a.l->n, b.l->v, sizeof(tm_val) * b.l->n);
      l->n = a.l->n + b.l->n;
      c->steps += l->n;
      return tm_list_val(l, a.tuple);
    }
    op_type_error(c, "+", &a, &b);
  case OP_SUB:
    if (num(&a) && num(&b)) {
      if (a.t == V_FLOAT || b.t == V_FLOAT) return tm_float(fval(&a) - fval(&b));
      int64_t r;
      if (__builtin_sub_overflow(a.i, b.i, &r)) tm_fail(c, IG_TMPL_ERUNTIME, "integer overflow");
      return tm_int(r);
    }
    op_type_error(c, "-", &a, &b);
  case OP_MUL:
    if (num(&a) && num(&b)) {
      if (a.t == V_FLOAT || b.t == V_FLOAT) return tm_float(fval(&a) * fval(&b));
      int64_t r;
      if (__builtin_mul_overflow(a.i, b.i, &r)) tm_fail(c, IG_TMPL_ERUNTIME, "integer overflow");
      return tm_int(r);
    }
    if ((a.t == V_STR || (a.t == V_LIST && a.tuple != 2 && !a.unsafe)) && (b.t == V_INT || b.t == V_BOOL)) return repeat(c, &a, b.i);
    if ((b.t == V_STR || (b.t == V_LIST && b.tuple != 2 && !b.unsafe)) && (a.t == V_INT || a.t == V_BOOL)) return repeat(c, &b, a.i);
    if (((a.t == V_STR || (a.t == V_LIST && !a.unsafe && a.tuple != 2)) && b.t != V_UNDEF) ||
        ((b.t == V_STR || (b.t == V_LIST && !b.unsafe && b.tuple != 2)) && a.t != V_UNDEF))
      tm_fail(c, IG_TMPL_ERUNTIME, "can't multiply sequence by non-int of type '%s'",
              tm_type_name(a.t == V_STR || a.t == V_LIST ? &b : &a));
    op_type_error(c, "*", &a, &b);
  case OP_DIV:
    if (num(&a) && num(&b)) {
      if (fval(&b) == 0) tm_fail(c, IG_TMPL_ERUNTIME, a.t == V_FLOAT || b.t == V_FLOAT ? "float division by zero" : "division by zero");
      return tm_float(fval(&a) / fval(&b));
    }
    op_type_error(c, "/", &a, &b);
  case OP_FLOORDIV:
    if (num(&a) && num(&b)) {
      if (a.t == V_FLOAT || b.t == V_FLOAT) {
        if (fval(&b) == 0) tm_fail(c, IG_TMPL_ERUNTIME, "float floor division by zero");
        return tm_float(floor(fval(&a) / fval(&b)));
      }
      if (b.i == 0) tm_fail(c, IG_TMPL_ERUNTIME, "integer division or modulo by zero");
      if (a.i == INT64_MIN && b.i == -1) tm_fail(c, IG_TMPL_ERUNTIME, "integer overflow");
      int64_t q = a.i / b.i;
      if ((a.i % b.i != 0) && ((a.i < 0) != (b.i < 0))) q--;
      return tm_int(q);
    }
    op_type_error(c, "//", &a, &b);
  case OP_MOD:
    if (a.t == V_STR) return tm_percent_format(c, a, b);
    if (num(&a) && num(&b)) {
      if (a.t == V_FLOAT || b.t == V_FLOAT) {
        double y = fval(&b);
        if (y == 0) tm_fail(c, IG_TMPL_ERUNTIME, "float modulo");
        double r = fmod(fval(&a), y);
        if (r != 0 && ((r < 0) != (y < 0))) r += y;
        return tm_float(r);
      }
      if (b.i == 0) tm_fail(c, IG_TMPL_ERUNTIME, "integer modulo by zero");
      if (b.i == -1) return tm_int(0);
      int64_t r = a.i % b.i;
      if (r != 0 && ((r < 0) != (b.i < 0))) r += b.i;
      return tm_int(r);
    }
    op_type_error(c, "%", &a, &b);
  case OP_POW:
    if (num(&a) && num(&b)) {
      if (a.t == V_FLOAT || b.t == V_FLOAT || b.i < 0) return tm_float(pow(fval(&a), fval(&b)));
      int64_t r = 1, base = a.i, e = b.i;
      while (e > 0) {
        step(c);
        if (e & 1)
          if (__builtin_mul_overflow(r, base, &r)) tm_fail(c, IG_TMPL_ERUNTIME, "integer overflow");
        e >>= 1;
        if (e && __builtin_mul_overflow(base, base, &base)) tm_fail(c, IG_TMPL_ERUNTIME, "integer overflow");
      }
      return tm_int(r);
    }
    op_type_error(c, "** or pow()", &a, &b);
  }
  return tm_none();
}

static bool contains(tm_ctx *c, tm_val item, tm_val seq) {
  switch (seq.t) {
  case V_STR:
    if (item.t != V_STR) {
      if (item.t == V_UNDEF) undef_fail(c, &item);
      tm_fail(c, IG_TMPL_ERUNTIME, "'in <string>' requires string as left operand, not %s", tm_type_name(&item));
    }
    if (item.n == 0) return true;
    tm_charge(c, seq.n >> 10); /* a step per KiB searched */
    return memmem(seq.s, seq.n, item.s, item.n) != NULL;
  case V_LIST:
    if (seq.l->err) tm_fail(c, IG_TMPL_ERUNTIME, "%s", seq.l->err);
    for (uint32_t i = 0; i < seq.l->n; i++) {
      step(c);
      if (tm_equal(c, &seq.l->v[i], &item)) return true;
    }
    return false;
  case V_DICT:
    if ((item.t == V_LIST && item.tuple == 0 && !item.unsafe) || item.t == V_DICT || item.t == V_NS)
      tm_fail(c, IG_TMPL_ERUNTIME, "unhashable type: '%s'", tm_type_name(&item));
    return tm_dict_find(c, seq.d, item) >= 0;
  case V_UNDEF: return false; /* Undefined iterates as empty */
  default: tm_fail(c, IG_TMPL_ERUNTIME, "argument of type '%s' is not iterable", tm_type_name(&seq));
  }
}

/* ---------------------------------------------------------------- calls */
static tm_val eval(tm_ctx *c, tm_scope *s, const tm_node *n);
static int exec(tm_ctx *c, tm_scope *s, const tm_node *n);

static ig_str *capture_begin(tm_ctx *c) {
  ig_str *prev = c->out;
  c->out = tm_buf_get(c);
  return prev;
}
static tm_val capture_end(tm_ctx *c, ig_str *prev) {
  ig_str *b = c->out;
  c->out = prev;
  tm_val v = tm_str_from(c, b);
  tm_buf_put(c, b);
  return v;
}

static tm_val call_loop(tm_ctx *c, tm_loop *lp, tm_args *a);

static tm_val call_macro(tm_ctx *c, const tm_macro *m, tm_args *a, const tm_val *caller) {
  const tm_node *def = m->def;
  if (++c->depth > c->max_depth)
    tm_fail(c, IG_TMPL_ELIMIT, "template exceeded the call depth limit (%u)", c->max_depth);
  tm_scope *s = scope_new(c, m->closure);
  int np = def->nids;
  bool *bound = tm_ralloc(c, sizeof(bool) * (size_t)(np ? np : 1));
  memset(bound, 0, sizeof(bool) * (size_t)(np ? np : 1));
  tm_list *varargs = tm_list_new(c, 0);
  const char *mname = def->flag & 4 ? "caller" : NULL;
  if (a->n > np && !(def->flag & 1))
    tm_fail(c, IG_TMPL_ERUNTIME, "macro '%.*s' takes not more than %d argument(s)", mname ? 6 : (int)def->s.n,
            mname ? mname : def->s.p, np);
  for (int i = 0; i < a->n; i++) {
    if (i < np) {
      scope_set(c, s, def->ids[i], a->v[i]);
      bound[i] = true;
    } else
      tm_list_push(c, varargs, a->v[i]);
  }
  tm_dict *kwargs = tm_dict_new(c, 0);
  const struct ig_tmpl *t = c->t;
  for (int k = 0; k < a->nkw; k++) {
    int found = -1;
    for (int i = 0; i < np; i++) {
      tm_sv pn = t->names[def->ids[i]];
      if (pn.n == a->kwn[k].n && memcmp(pn.p, a->kwn[k].p, pn.n) == 0) found = i;
    }
    if (found >= 0) {
      if (bound[found]) tm_fail(c, IG_TMPL_ERUNTIME, "macro got multiple values for argument '%.*s'", (int)a->kwn[k].n, a->kwn[k].p);
      scope_set(c, s, def->ids[found], a->kwv[k]);
      bound[found] = true;
    } else if (!(def->flag & 2))
      tm_fail(c, IG_TMPL_ERUNTIME, "macro '%.*s' takes no keyword argument '%.*s'", mname ? 6 : (int)def->s.n,
              mname ? mname : def->s.p, (int)a->kwn[k].n, a->kwn[k].p);
    else
      tm_dict_set(c, kwargs, tm_str(c, a->kwn[k].p, a->kwn[k].n), a->kwv[k]);
  }
  for (int i = 0; i < np; i++) {
    if (bound[i]) continue;
    if (def->defs[i]) scope_set(c, s, def->ids[i], eval(c, s, def->defs[i]));
    else {
      tm_sv pn = t->names[def->ids[i]];
      scope_set(c, s, def->ids[i], undef_msg(c, "parameter '%.*s' was not provided", (int)pn.n, pn.p));
    }
  }
  tm_val vv = tm_list_val(varargs, true);
  scope_set(c, s, t->id_varargs, vv);
  tm_val kv = {0};
  kv.t = V_DICT;
  kv.d = kwargs;
  scope_set(c, s, t->id_kwargs, kv);
  if (caller) scope_set(c, s, t->id_caller, *caller);
  ig_str *prev = capture_begin(c);
  exec(c, s, def->b);
  tm_val r = capture_end(c, prev);
  c->depth--;
  return r;
}

tm_val tm_call_value(tm_ctx *c, tm_val callee, tm_args *a) {
  switch (callee.t) {
  case V_MACRO: {
    /* a `caller=` keyword is passed through as the macro's caller */
    for (int k = 0; k < a->nkw; k++)
      if (a->kwn[k].n == 6 && memcmp(a->kwn[k].p, "caller", 6) == 0) {
        tm_val cl = a->kwv[k];
        tm_args b = *a;
        b.nkw = 0;
        tm_sv *kn = tm_ralloc(c, sizeof(tm_sv) * (size_t)a->nkw);
        tm_val *kv = tm_ralloc(c, sizeof(tm_val) * (size_t)a->nkw);
        for (int j = 0; j < a->nkw; j++)
          if (j != k) {
            kn[b.nkw] = a->kwn[j];
            kv[b.nkw++] = a->kwv[j];
          }
        b.kwn = kn;
        b.kwv = kv;
        return call_macro(c, callee.m, &b, &cl);
      }
    return call_macro(c, callee.m, a, NULL);
  }
  case V_FUNC: return tm_call_func(c, callee.fn, a);
  case V_METHOD: return tm_call_method(c, callee.mt, a);
  case V_UNDEF: undef_fail(c, &callee);
  case V_LOOP: return call_loop(c, callee.lp, a);
  default: tm_fail(c, IG_TMPL_ERUNTIME, "'%s' object is not callable", tm_type_name(&callee));
  }
}

static void eval_args(tm_ctx *c, tm_scope *s, const tm_node *n, tm_args *a, int extra_front) {
  a->n = n->n + extra_front;
  a->v = tm_ralloc(c, sizeof(tm_val) * (size_t)(a->n ? a->n : 1));
  for (int i = 0; i < n->n; i++) a->v[i + extra_front] = eval(c, s, n->items[i]);
  a->nkw = n->nkw;
  a->kwn = n->kwn;
  a->kwv = NULL;
  if (n->nkw) {
    a->kwv = tm_ralloc(c, sizeof(tm_val) * (size_t)n->nkw);
    for (int i = 0; i < n->nkw; i++) a->kwv[i] = eval(c, s, n->kwv[i]);
  }
}

static tm_val eval_call(tm_ctx *c, tm_scope *s, const tm_node *n, const tm_val *caller) {
  tm_args a;
  const tm_node *f = n->a;
  if (f->kind == N_GETATTR) {
    tm_val obj = eval(c, s, f->a);
    if (obj.t == V_LOOP && f->s.n == 5 && memcmp(f->s.p, "cycle", 5) == 0) {
      eval_args(c, s, n, &a, 0);
      if (!a.n) tm_fail(c, IG_TMPL_ERUNTIME, "no items for cycling given");
      return a.v[obj.lp->index0 % a.n];
    }
    int mid = obj.t == V_NS || obj.t == V_LOOP ? -1 : tm_method_id(&obj, f->s);
    if (mid >= 0) {
      tm_method m = {obj, mid};
      eval_args(c, s, n, &a, 0);
      return tm_call_method(c, &m, &a);
    }
    tm_val callee = tm_getattr(c, obj, f->s);
    eval_args(c, s, n, &a, 0);
    return tm_call_value(c, callee, &a);
  }
  tm_val callee = eval(c, s, f);
  eval_args(c, s, n, &a, 0);
  if (caller && callee.t == V_MACRO) return call_macro(c, callee.m, &a, caller);
  return tm_call_value(c, callee, &a);
}

/* Apply a filter node chain; `input` replaces the innermost missing argument (block filters). */
static tm_val apply_filter(tm_ctx *c, tm_scope *s, const tm_node *f, tm_val input) {
  tm_val v = f->a ? (f->a->kind == N_FILTER ? apply_filter(c, s, f->a, input) : eval(c, s, f->a)) : input;
  tm_args a;
  eval_args(c, s, f, &a, 0);
  return tm_call_filter(c, f->id, v, &a);
}

/* ---------------------------------------------------------------- expressions */
static tm_val eval(tm_ctx *c, tm_scope *s, const tm_node *n) {
  step(c);
  switch (n->kind) {
  case N_STR: return tm_str(c, n->s.p, n->s.n);
  case N_INT: return tm_int(n->i);
  case N_FLOAT: return tm_float(n->f);
  case N_BOOL: return tm_bool(n->i != 0);
  case N_NONE: return tm_none();
  case N_NAME: return lookup(c, s, n->id);
  case N_GETATTR: return tm_getattr(c, eval(c, s, n->a), n->s);
  case N_GETITEM: {
    tm_val obj = eval(c, s, n->a);
    if (n->b->kind == N_SLICE) {
      const tm_node *sl = n->b;
      tm_val a, b, st;
      if (sl->a) a = eval(c, s, sl->a);
      if (sl->b) b = eval(c, s, sl->b);
      if (sl->c) st = eval(c, s, sl->c);
      return do_slice(c, obj, sl->a ? &a : NULL, sl->b ? &b : NULL, sl->c ? &st : NULL);
    }
    return tm_getitem(c, obj, eval(c, s, n->b));
  }
  case N_CALL: return eval_call(c, s, n, NULL);
  case N_FILTER: {
    tm_val v = eval(c, s, n->a);
    tm_args a;
    eval_args(c, s, n, &a, 0);
    return tm_call_filter(c, n->id, v, &a);
  }
  case N_TEST: {
    tm_val v = eval(c, s, n->a);
    tm_args a;
    eval_args(c, s, n, &a, 0);
    bool r = tm_call_test(c, n->id, v, &a);
    return tm_bool(n->flag ? !r : r);
  }
  case N_NOT: {
    tm_val v = eval(c, s, n->a);
    return tm_bool(!tm_truthy(&v));
  }
  case N_NEG: case N_POS: {
    tm_val v = eval(c, s, n->a);
    if (v.t == V_FLOAT) return tm_float(n->kind == N_NEG ? -v.f : v.f);
    if (v.t == V_INT || v.t == V_BOOL) {
      if (n->kind == N_POS) return tm_int(v.i);
      if (v.i == INT64_MIN) tm_fail(c, IG_TMPL_ERUNTIME, "integer overflow");
      return tm_int(-v.i);
    }
    if (v.t == V_UNDEF) undef_fail(c, &v);
    tm_fail(c, IG_TMPL_ERUNTIME, "bad operand type for unary %c: '%s'", n->kind == N_NEG ? '-' : '+', tm_type_name(&v));
  }
  case N_BIN: {
    tm_val a = eval(c, s, n->a);
    tm_val b = eval(c, s, n->b);
    return tm_binop(c, n->op, a, b);
  }
  case N_AND: {
    tm_val a = eval(c, s, n->a);
    return tm_truthy(&a) ? eval(c, s, n->b) : a;
  }
  case N_OR: {
    tm_val a = eval(c, s, n->a);
    return tm_truthy(&a) ? a : eval(c, s, n->b);
  }
  case N_CMP: {
    tm_val l = eval(c, s, n->items[0]);
    for (int i = 1; i < n->n; i++) {
      tm_val r = eval(c, s, n->items[i]);
      bool ok;
      switch (n->ops[i - 1]) {
      case CMP_EQ: ok = tm_equal(c, &l, &r); break;
      case CMP_NE: ok = !tm_equal(c, &l, &r); break;
      case CMP_IN: ok = contains(c, l, r); break;
      case CMP_NOTIN: ok = !contains(c, l, r); break;
      default: {
        if (l.t == V_UNDEF) undef_fail(c, &l);
        if (r.t == V_UNDEF) undef_fail(c, &r);
        bool comparable = (num(&l) && num(&r)) || (l.t == V_STR && r.t == V_STR) || (l.t == V_LIST && r.t == V_LIST);
        if (!comparable) {
          static const char *sym[] = {"==", "!=", "<", "<=", ">", ">="};
          tm_fail(c, IG_TMPL_ERUNTIME, "'%s' not supported between instances of '%s' and '%s'", sym[n->ops[i - 1]],
                  tm_type_name(&l), tm_type_name(&r));
        }
        static const char *sym2[] = {"==", "!=", "<", "<=", ">", ">="};
        int k = tm_compare_op(c, &l, &r, sym2[n->ops[i - 1]]);
        int op = n->ops[i - 1];
        ok = op == CMP_LT ? k < 0 : op == CMP_LE ? k <= 0 : op == CMP_GT ? k > 0 : k >= 0;
      }
      }
      if (!ok) return tm_bool(false);
      l = r;
    }
    return tm_bool(true);
  }
  case N_COND: {
    tm_val cond = eval(c, s, n->b);
    if (tm_truthy(&cond)) return eval(c, s, n->a);
    if (n->c) return eval(c, s, n->c);
    return undef_msg(c, "the inline if-expression evaluated to false and no else section was defined.");
  }
  case N_LIST: case N_TUPLE: {
    tm_list *l = tm_list_new(c, (uint32_t)n->n);
    for (int i = 0; i < n->n; i++) l->v[l->n++] = eval(c, s, n->items[i]);
    return tm_list_val(l, n->kind == N_TUPLE);
  }
  case N_DICT: {
    tm_dict *d = tm_dict_new(c, (uint32_t)(n->n / 2));
    for (int i = 0; i + 1 < n->n; i += 2) {
      tm_val k = eval(c, s, n->items[i]);
      if (k.t == V_LIST && !k.tuple) tm_fail(c, IG_TMPL_ERUNTIME, "unhashable type: 'list'");
      if (k.t == V_DICT) tm_fail(c, IG_TMPL_ERUNTIME, "unhashable type: 'dict'");
      tm_dict_set(c, d, k, eval(c, s, n->items[i + 1]));
    }
    tm_val v = {0};
    v.t = V_DICT;
    v.d = d;
    return v;
  }
  default: tm_fail(c, IG_TMPL_ERUNTIME, "internal error: bad expression node %d", n->kind);
  }
}

/* ---------------------------------------------------------------- statements */
static void assign_targets(tm_ctx *c, tm_scope *s, const tm_node *n, tm_val v) {
  if (n->nids == 1) {
    scope_set(c, s, n->ids[0], v);
    return;
  }
  tm_list *l;
  if (v.t == V_LIST) l = v.l;
  else if (v.t == V_STR || v.t == V_DICT) l = tm_iterate(c, &v);
  else tm_fail(c, IG_TMPL_ERUNTIME, "cannot unpack non-iterable %s object", tm_type_name(&v));
  if ((int)l->n > n->nids) tm_fail(c, IG_TMPL_ERUNTIME, "too many values to unpack (expected %d)", n->nids);
  if ((int)l->n < n->nids) tm_fail(c, IG_TMPL_ERUNTIME, "not enough values to unpack (expected %d, got %u)", n->nids, l->n);
  for (int i = 0; i < n->nids; i++) scope_set(c, s, n->ids[i], l->v[i]);
}

static int exec_for_items(tm_ctx *c, tm_scope *s, const tm_node *n, tm_val it, int depth0);
static int exec_for(tm_ctx *c, tm_scope *s, const tm_node *n) { return exec_for_items(c, s, n, eval(c, s, n->a), 0); }

/* loop(items) inside a recursive loop: the loop body over items, one level deeper, as a string */
static tm_val call_loop(tm_ctx *c, tm_loop *lp, tm_args *a) {
  if (!lp->node || !(lp->node->flag & 2))
    tm_fail(c, IG_TMPL_ERUNTIME, "The loop must have the 'recursive' marker to be called recursively.");
  if (a->n != 1) tm_fail(c, IG_TMPL_ERUNTIME, "loop() takes exactly one argument");
  if (++c->depth > c->max_depth)
    tm_fail(c, IG_TMPL_ELIMIT, "template exceeded the call depth limit (%u)", c->max_depth);
  ig_str *prev = capture_begin(c);
  exec_for_items(c, lp->outer, lp->node, a->v[0], lp->depth0 + 1);
  tm_val r = capture_end(c, prev);
  c->depth--;
  return r;
}

static int exec_for_items(tm_ctx *c, tm_scope *s, const tm_node *n, tm_val it, int depth0) {
  tm_list *src = tm_iterate(c, &it);
  tm_list *items = src;
  if (n->d) { /* loop filter: evaluated with the targets bound, before the loop runs */
    items = tm_list_new(c, 0);
    tm_scope *fs = scope_new(c, s);
    for (uint32_t i = 0; i < src->n; i++) {
      if (fs->captured) fs = scope_new(c, s);
      fs->n = 0;
      assign_targets(c, fs, n, src->v[i]);
      tm_val keep = eval(c, fs, n->d);
      if (tm_truthy(&keep)) tm_list_push(c, items, src->v[i]);
    }
  }
  tm_loop *lp = tm_ralloc(c, sizeof *lp);
  memset(lp, 0, sizeof *lp);
  lp->length = items->n;
  lp->depth0 = depth0; /* loop.depth counts recursive loop(...) calls, not nesting */
  lp->node = n;
  lp->outer = s;
  if (n->flag & 2)
    for (tm_scope *q = s; q; q = q->parent) q->captured = 1; /* loop(...) may run later from this scope */
  tm_val lv = {0};
  lv.t = V_LOOP;
  lv.lp = lp;
  tm_scope *is = NULL;
  for (uint32_t i = 0; i < items->n; i++) {
    step(c);
    lp->index0 = i;
    lp->has_prev = i > 0;
    if (i > 0) lp->prev = items->v[i - 1];
    lp->has_next = i + 1 < items->n;
    if (i + 1 < items->n) lp->next = items->v[i + 1];
    if (!is || is->captured) is = scope_new(c, s); /* fresh scope per iteration, reused when nothing kept it */
    is->n = 0;
    scope_set(c, is, c->t->id_loop, lv);
    assign_targets(c, is, n, items->v[i]);
    int r = exec(c, is, n->b);
    if (r == EX_BREAK) break;
  }
  if (items->n == 0 && n->c) return exec(c, s, n->c);
  return EX_OK;
}

static int exec(tm_ctx *c, tm_scope *s, const tm_node *n) {
  step(c);
  switch (n->kind) {
  case N_BODY:
    for (int i = 0; i < n->n; i++) {
      int r = exec(c, s, n->items[i]);
      if (r != EX_OK) return r;
    }
    return EX_OK;
  case N_TEXT: out_append(c, n->s.p, n->s.n); return EX_OK;
  case N_OUT: {
    tm_val v = eval(c, s, n->a);
    if (v.t == V_STR) out_append(c, v.s, v.n);
    else {
      tm_to_str(c, c->out, &v);
      tm_check_str(c, c->out);
    }
    return EX_OK;
  }
  case N_IF: {
    tm_val cond = eval(c, s, n->a);
    if (tm_truthy(&cond)) return exec(c, s, n->b);
    if (n->c) return exec(c, s, n->c);
    return EX_OK;
  }
  case N_FOR: return exec_for(c, s, n);
  case N_SET: {
    tm_val v = eval(c, s, n->a);
    if (n->flag) {
      tm_val ns = lookup(c, s, n->id);
      if (ns.t != V_NS) tm_fail(c, IG_TMPL_ERUNTIME, "cannot assign attribute on non-namespace object");
      tm_dict_set(c, ns.d, tm_str(c, n->s.p, n->s.n), v);
      return EX_OK;
    }
    assign_targets(c, s, n, v);
    return EX_OK;
  }
  case N_SETBLOCK: {
    ig_str *prev = capture_begin(c);
    exec(c, s, n->b);
    tm_val v = capture_end(c, prev);
    if (n->d) v = apply_filter(c, s, n->d, v);
    scope_set(c, s, n->ids[0], v);
    return EX_OK;
  }
  case N_FILTERBLOCK: {
    ig_str *prev = capture_begin(c);
    exec(c, s, n->b);
    tm_val v = capture_end(c, prev);
    v = apply_filter(c, s, n->d, v);
    tm_to_str(c, c->out, &v);
    tm_check_str(c, c->out);
    return EX_OK;
  }
  case N_MACRO: {
    for (tm_scope *q = s; q; q = q->parent) q->captured = 1;
    tm_macro *m = tm_ralloc(c, sizeof *m);
    m->def = n;
    m->closure = s;
    tm_val v = {0};
    v.t = V_MACRO;
    v.m = m;
    scope_set(c, s, n->id, v);
    return EX_OK;
  }
  case N_CALLBLOCK: {
    for (tm_scope *q = s; q; q = q->parent) q->captured = 1;
    tm_macro *m = tm_ralloc(c, sizeof *m);
    m->def = n;
    m->closure = s;
    tm_val cl = {0};
    cl.t = V_MACRO;
    cl.m = m;
    tm_val r = eval_call(c, s, n->a, &cl);
    tm_to_str(c, c->out, &r);
    tm_check_str(c, c->out);
    return EX_OK;
  }
  case N_WITH: {
    tm_scope *ws = scope_new(c, s);
    for (int i = 0; i < n->nids; i++) scope_set(c, ws, n->ids[i], eval(c, s, n->items[i]));
    return exec(c, ws, n->b);
  }
  case N_BREAK: return EX_BREAK;
  case N_CONTINUE: return EX_CONTINUE;
  default: tm_fail(c, IG_TMPL_ERUNTIME, "internal error: bad statement node %d", n->kind);
  }
}

/* ---------------------------------------------------------------- public API */
int ig_tmpl_compile(const char *src, size_t len, ig_tmpl **out, char *err, size_t errlen) {
  *out = NULL;
  if (err && errlen) err[0] = 0;
  ig_tmpl *t = calloc(1, sizeof *t);
  if (!t) {
    if (err && errlen) snprintf(err, errlen, "out of memory");
    return IG_TMPL_ENOMEM;
  }
  t->arena.limit = (size_t)1 << 30;
  int rc = tm_parse(t, src, len, err, errlen);
  if (rc) {
    ig_tmpl_free(t);
    return rc;
  }
  *out = t;
  return 0;
}

void ig_tmpl_free(ig_tmpl *t) {
  if (!t) return;
  tm_arena_free(&t->arena);
  free(t);
}

int ig_tmpl_render(const ig_tmpl *t, const json_t *ctx, const ig_tmpl_opts *opts, ig_str *out, char *err,
                   size_t errlen) {
  if (err && errlen) err[0] = 0;
  if (!t || !out || (ctx && !json_is_object(ctx))) {
    if (err && errlen) snprintf(err, errlen, "invalid arguments: the context must be a JSON object");
    return IG_TMPL_EINVAL;
  }
  tm_ctx *c = calloc(1, sizeof *c);
  if (!c) {
    if (err && errlen) snprintf(err, errlen, "out of memory");
    return IG_TMPL_ENOMEM;
  }
  ig_tmpl_limits lim = opts ? opts->limits : (ig_tmpl_limits){0};
  c->t = t;
  c->err = err;
  c->errlen = errlen;
  c->max_steps = lim.max_steps ? lim.max_steps : 1000000;
  c->max_depth = lim.max_depth ? lim.max_depth : 64;
  if (c->max_depth > 1000) c->max_depth = 1000; /* each level costs C stack */
  c->max_output = lim.max_output ? lim.max_output : (size_t)16 << 20;
  c->arena.limit = lim.max_memory ? lim.max_memory : (size_t)128 << 20;
  c->now = opts && opts->now ? opts->now : time(NULL);
  c->max_ms = lim.max_ms;
  c->deadline_ns = lim.max_ms ? mono_ns() + (int64_t)lim.max_ms * 1000000 : 0;
  c->next_tick = lim.max_ms ? 256 : UINT64_MAX;
  c->json = ctx;
  size_t start_len = out->len;
  volatile int rc = 0;
  if (setjmp(c->jb) == 0) {
    c->globals = tm_ralloc(c, sizeof(tm_val) * (size_t)(t->nnames ? t->nnames : 1));
    for (int i = 0; i < t->nnames; i++) c->globals[i].t = TM_UNRESOLVED;
    c->root = scope_new(c, NULL);
    c->out = out;
    exec(c, c->root, t->root);
    if (out->oom) tm_fail(c, IG_TMPL_ENOMEM, "out of memory");
  } else {
    rc = c->code ? c->code : IG_TMPL_ERUNTIME;
    out->len = start_len;
    if (out->p) out->p[start_len] = 0;
  }
  for (tm_buf *b = c->bufs_all; b; b = b->next_all) ig_str_free(&b->s);
  tm_arena_free(&c->arena);
  free(c);
  return rc;
}

/* ---------------------------------------------------------------- continue_final_message */

/* Where p[0, m) last occurs in s[0, n) (Python's str.rindex), or -1. Knuth-Morris-Pratt over both read backwards:
 * O(n + m) whatever they hold (a long message in a long prompt never costs their product). f: m entries, m > 0. */
static long long rfind(const char *s, size_t n, const char *p, size_t m, size_t *f) {
#define Q(i) p[m - 1 - (i)] /* the pattern reversed */
  f[0] = 0;
  for (size_t i = 1, k = 0; i < m; i++) {
    while (k && Q(i) != Q(k)) k = f[k - 1];
    if (Q(i) == Q(k)) k++;
    f[i] = k;
  }
  for (size_t j = 0, k = 0; j < n; j++) {
    char ch = s[n - 1 - j];
    while (k && ch != Q(k)) k = f[k - 1];
    if (ch == Q(k)) k++;
    if (k == m) return (long long)(n - 1 - j);
  }
  return -1;
#undef Q
}

/* transformers' apply_chat_template(continue_final_message=True) on the rendered text s[0, *n): the final message's
 * text (its content, or the last {"text": ...} part of a list) stripped of whitespace (Python's str.strip) is
 * looked for from the end; the text is cut after it, or after the whole content when the content has no leading
 * whitespace and the text has its trailing whitespace there too. 0, or IG_TMPL_EINVAL with transformers' message. */
static int cut_after_final_message(const json_t *messages, const char *s, size_t *n, char *err, size_t errlen) {
  size_t nm = json_array_size(messages);
  const json_t *c = nm ? json_object_get(json_array_get(messages, nm - 1), "content") : NULL;
  for (size_t i = json_array_size(c); i > 0 && json_is_array(c); i--) {
    const json_t *part = json_array_get(c, i - 1);
    if (json_is_object(part) && json_object_get(part, "text")) {
      c = json_object_get(part, "text");
      break;
    }
  }
  if (!json_is_string(c)) {
    if (err && errlen)
      snprintf(err, errlen, "continue_final_message is set but we could not find any text to continue in the final "
                            "message!");
    return IG_TMPL_EINVAL;
  }
  const char *m = json_string_value(c);
  size_t ml = json_string_length(c), a = 0, b = ml, adv;
  while (a < b && tm_isspace_cp(tm_u8_decode(m + a, b - a, &adv))) a += adv;
  while (b > a) {
    size_t k = b - 1;
    while (k > a && ((unsigned char)m[k] & 0xC0) == 0x80) k--;
    if (!tm_isspace_cp(tm_u8_decode(m + k, b - k, &adv))) break;
    b = k;
  }
  long long at = (long long)*n; /* "" is found at the end */
  if (b > a) {
    size_t *f = malloc((b - a) * sizeof *f);
    if (!f) {
      if (err && errlen) snprintf(err, errlen, "out of memory");
      return IG_TMPL_ENOMEM;
    }
    at = rfind(s, *n, m + a, b - a, f);
    free(f);
  }
  if (at < 0) {
    if (err && errlen)
      snprintf(err, errlen, "continue_final_message is set but the final message does not appear in the chat after "
                            "applying the chat template! This can happen if the chat template deletes portions of "
                            "the final message. Please verify the chat template and final message in your chat to "
                            "ensure they are compatible.");
    return IG_TMPL_EINVAL;
  }
  size_t from = (size_t)at;
  int whole = a == 0 && ml <= *n - from && (ml == 0 || memcmp(s + from, m, ml) == 0);
  *n = from + (whole ? ml : b - a);
  return 0;
}

int ig_tmpl_render_chat(const ig_tmpl *t, const ig_tmpl_chat *chat, const ig_tmpl_opts *opts, char **out,
                        size_t *out_len, char *err, size_t errlen) {
  *out = NULL;
  if (out_len) *out_len = 0;
  if (chat->continue_final_message && chat->add_generation_prompt) {
    if (err && errlen)
      snprintf(err, errlen, "continue_final_message and add_generation_prompt are not compatible. Use "
                            "continue_final_message when you want the model to continue the final message, and "
                            "add_generation_prompt when you want to add a header that will prompt it to start a new "
                            "assistant message instead.");
    return IG_TMPL_EINVAL;
  }
  json_t *ctx = json_object();
  if (!ctx) {
    if (err && errlen) snprintf(err, errlen, "out of memory");
    return IG_TMPL_ENOMEM;
  }
  if (chat->special_tokens && json_is_object(chat->special_tokens)) json_object_update(ctx, (json_t *)chat->special_tokens);
  json_object_set_new(ctx, "messages", chat->messages ? json_incref((json_t *)chat->messages) : json_array());
  json_object_set_new(ctx, "tools", chat->tools ? json_incref((json_t *)chat->tools) : json_null());
  json_object_set_new(ctx, "documents", chat->documents ? json_incref((json_t *)chat->documents) : json_null());
  json_object_set_new(ctx, "add_generation_prompt", json_boolean(chat->add_generation_prompt));
  if (chat->extra && json_is_object(chat->extra)) json_object_update(ctx, (json_t *)chat->extra);
  ig_str s;
  ig_str_init(&s);
  int rc = ig_tmpl_render(t, ctx, opts, &s, err, errlen);
  json_decref(ctx);
  if (!rc && chat->continue_final_message) rc = cut_after_final_message(chat->messages, s.p, &s.len, err, errlen);
  if (rc) {
    ig_str_free(&s);
    return rc;
  }
  if (!s.p && ig_str_reserve(&s, 1)) {
    if (err && errlen) snprintf(err, errlen, "out of memory");
    return IG_TMPL_ENOMEM;
  }
  s.p[s.len] = 0;
  size_t n;
  *out = ig_str_steal(&s, &n);
  if (out_len) *out_len = n;
  return 0;
}
