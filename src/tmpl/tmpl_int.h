/* tmpl internals shared by the lexer/parser (tmpl_parse.c), the values (tmpl_value.c), the interpreter
 * (tmpl_eval.c) and the builtins (tmpl_builtins.c). Not a public header. */
#ifndef IG_TMPL_INT_H
#define IG_TMPL_INT_H
#include <setjmp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tmpl/tmpl.h"
#include "util/str.h"

/* ---------------------------------------------------------------- arena */
/* Bump allocator: everything a compile or a render allocates lives until the arena is freed. `limit` bounds
 * the total; tm_alloc returns NULL beyond it (the interpreter turns that into an error). */
typedef struct tm_chunk {
  struct tm_chunk *next;
  size_t used, cap;
  _Alignas(16) unsigned char data[];
} tm_chunk;
typedef struct tm_arena {
  tm_chunk *head;
  size_t total, limit;
} tm_arena;
void *tm_alloc(tm_arena *a, size_t n);
void tm_arena_free(tm_arena *a);

/* ---------------------------------------------------------------- AST */
typedef struct tm_sv { /* string view */
  const char *p;
  size_t n;
} tm_sv;

enum {
  /* expressions */
  N_STR, N_INT, N_FLOAT, N_BOOL, N_NONE, N_NAME, N_GETATTR, N_GETITEM, N_SLICE, N_CALL, N_FILTER, N_TEST,
  N_NOT, N_NEG, N_POS, N_BIN, N_AND, N_OR, N_CMP, N_COND, N_LIST, N_TUPLE, N_DICT,
  /* statements */
  N_BODY, N_TEXT, N_OUT, N_IF, N_FOR, N_SET, N_SETBLOCK, N_MACRO, N_CALLBLOCK, N_FILTERBLOCK, N_BREAK,
  N_CONTINUE, N_WITH,
};
enum { OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_FLOORDIV, OP_MOD, OP_POW, OP_CONCAT };
enum { CMP_EQ, CMP_NE, CMP_LT, CMP_LE, CMP_GT, CMP_GE, CMP_IN, CMP_NOTIN };

typedef struct tm_node tm_node;
struct tm_node {
  uint8_t kind;
  uint8_t op;
  uint8_t flag;  /* N_TEST: negated; N_FOR: 1 has else, 2 recursive; N_SET: namespace target */
  int line;
  int id;        /* N_NAME / targets: interned name id; N_FILTER/N_TEST/N_CALL of a builtin: builtin id */
  tm_sv s;       /* constant string, name, attribute */
  int64_t i;
  double f;
  tm_node *a, *b, *c, *d;
  tm_node **items; /* arguments, elements, statements, compare operands */
  int n;
  tm_node **kwv;   /* keyword argument values */
  tm_sv *kwn;      /* keyword argument names */
  int nkw;
  uint8_t *ops;    /* N_CMP: n-1 operators */
  int *ids;        /* targets of for/set, macro parameters */
  tm_node **defs;  /* macro parameter defaults (NULL entries: required) */
  int nids;
};

struct ig_tmpl {
  tm_arena arena;
  tm_node *root;
  int nnames;
  tm_sv *names; /* interned identifiers by id */
  int id_loop, id_caller, id_varargs, id_kwargs; /* special names */
};

int tm_parse(struct ig_tmpl *t, const char *src, size_t len, char *err, size_t errlen);

/* ---------------------------------------------------------------- values */
enum { V_UNDEF, V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR, V_LIST, V_DICT, V_NS, V_MACRO, V_FUNC, V_METHOD, V_LOOP };

typedef struct tm_val {
  uint8_t t;
  uint8_t tuple; /* V_LIST: 1 a Python tuple (repr with parentheses), 2 a range */
  uint8_t unsafe; /* V_UNDEF: came from an unsafe attribute (prints empty, like jinja2's sandbox);
                   * V_LIST: a generator (select, map, items, ...): always true, no len(), not JSON;
                   * V_STR: markupsafe.Markup (from safe / escape): `+` escapes the other operand */
  uint32_t n;    /* V_STR: byte length */
  union {
    int64_t i;
    double f;
    const char *s; /* V_STR data; V_UNDEF: the name (or NULL) */
    struct tm_list *l;
    struct tm_dict *d;
    struct tm_macro *m;
    struct tm_method *mt;
    struct tm_loop *lp;
    int fn;
  };
} tm_val;

typedef struct tm_list {
  uint32_t n, cap;
  tm_val *v;
  const char *err; /* a generator whose iteration raises this (jinja2's filters are lazy) */
  int64_t start, stop, step; /* a range (tuple == 2): its arguments, for repr */
} tm_list;
typedef struct tm_dict {
  uint32_t n, cap;
  tm_val *k, *v;
} tm_dict;

struct tm_scope;
typedef struct tm_macro {
  const tm_node *def; /* N_MACRO, or N_CALLBLOCK for `caller` */
  struct tm_scope *closure;
} tm_macro;
typedef struct tm_method {
  tm_val self;
  int id;
} tm_method;
typedef struct tm_loop {
  int64_t index0, length;
  tm_val prev, next;
  int has_prev, has_next;
  int depth0;
  const struct tm_node *node; /* the for statement, for loop(...) in recursive loops */
  struct tm_scope *outer;     /* the scope the loop runs in */
} tm_loop;

/* ---------------------------------------------------------------- render state */
typedef struct tm_scope {
  struct tm_scope *parent;
  int captured; /* a macro closes over it: a loop must not reuse it for the next iteration */
  int n, cap;
  int *ids;
  tm_val *vals;
} tm_scope;

/* Temporary string buffers come from a pool owned by the render, so that an error (longjmp) leaks nothing. */
typedef struct tm_buf {
  ig_str s; /* first member: an ig_str* from tm_buf_get can be cast back */
  struct tm_buf *next_all, *next_free;
} tm_buf;
typedef struct tm_capture {
  ig_str *prev;
} tm_capture;

typedef struct tm_ctx {
  const struct ig_tmpl *t;
  tm_arena arena;
  jmp_buf jb;
  int code;
  char *err;
  size_t errlen;
  uint64_t steps, max_steps;
  uint64_t next_tick;   /* steps at which the clock is next read (UINT64_MAX: no time limit) */
  int64_t deadline_ns;  /* CLOCK_MONOTONIC time the render must end by, when max_ms */
  uint32_t max_ms;
  uint32_t depth, max_depth;
  size_t max_output;
  time_t now;
  const json_t *json;   /* the context object */
  tm_val *globals;      /* by name id; t == 0xff when not looked up yet */
  tm_scope *root;
  ig_str *out;
  tm_buf *bufs_all, *bufs_free;
  bool json_ascii; /* tojson(ensure_ascii=True) in progress */
  int repr_depth;  /* nesting of repr(); a namespace can contain itself */
} tm_ctx;
ig_str *tm_buf_get(tm_ctx *c);
void tm_buf_put(tm_ctx *c, ig_str *s);

#define TM_UNRESOLVED 0xff

/* Errors jump out of the render (longjmp); the arena frees everything. */
_Noreturn void tm_fail(tm_ctx *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void *tm_ralloc(tm_ctx *c, size_t n); /* render-time allocation; fails the render when over the limit */
_Noreturn void tm_fail_steps(tm_ctx *c);
void tm_tick(tm_ctx *c); /* reads the clock: fails the render past its time limit */
/* Charges n steps of work (a scan of n * 16 keys, ...): fails past the step limit, reads the clock now and then. */
static inline void tm_charge(tm_ctx *c, uint64_t n) {
  c->steps += n;
  if (c->steps > c->max_steps) tm_fail_steps(c);
  if (c->steps >= c->next_tick) tm_tick(c);
}

/* An undefined value carries the error it raises when used: a message (tuple == 0, s NUL-terminated or
 * NULL), or, formatted only on failure, a missing name (tuple == 1) or dict attribute (tuple == 2), s/n. */
static inline tm_val tm_undef(const char *msg) { tm_val v = {0}; v.t = V_UNDEF; v.s = msg; return v; }
static inline tm_val tm_undef_kind(int kind, const char *p, size_t n) {
  tm_val v = {0};
  v.t = V_UNDEF;
  v.tuple = (uint8_t)kind;
  v.s = p;
  v.n = (uint32_t)(n > 100 ? 100 : n);
  return v;
}
_Noreturn void tm_undef_fail(tm_ctx *c, const tm_val *v);
static inline tm_val tm_none(void) { tm_val v = {0}; v.t = V_NONE; return v; }
static inline tm_val tm_bool(bool b) { tm_val v = {0}; v.t = V_BOOL; v.i = b; return v; }
static inline tm_val tm_int(int64_t i) { tm_val v = {0}; v.t = V_INT; v.i = i; return v; }
static inline tm_val tm_float(double f) { tm_val v = {0}; v.t = V_FLOAT; v.f = f; return v; }
tm_val tm_str(tm_ctx *c, const char *p, size_t n); /* references p (no copy); checks max_output */
tm_val tm_str_copy(tm_ctx *c, const char *p, size_t n);
tm_val tm_str_from(tm_ctx *c, ig_str *s); /* copies s into the arena, then clears s */
tm_list *tm_list_new(tm_ctx *c, uint32_t cap);
void tm_list_push(tm_ctx *c, tm_list *l, tm_val v);
tm_val tm_list_val(tm_list *l, bool tuple);
tm_dict *tm_dict_new(tm_ctx *c, uint32_t cap);
void tm_dict_set(tm_ctx *c, tm_dict *d, tm_val k, tm_val v);
int tm_dict_find(tm_ctx *c, const tm_dict *d, tm_val k); /* index or -1; the scan is charged to the steps */
int tm_dict_find_str(tm_ctx *c, const tm_dict *d, const char *p, size_t n);
tm_val tm_from_json(tm_ctx *c, const json_t *j);

bool tm_truthy(const tm_val *v);
bool tm_equal(tm_ctx *c, const tm_val *a, const tm_val *b); /* containers' sizes are charged to the steps */
int tm_compare(tm_ctx *c, const tm_val *a, const tm_val *b); /* <0, 0, >0; fails on incomparable types */
int tm_compare_op(tm_ctx *c, const tm_val *a, const tm_val *b, const char *sym); /* same; errors name `sym` */
const char *tm_type_name(const tm_val *v);
/* str(v) and repr(v) as Python prints them, appended to s. */
void tm_to_str(tm_ctx *c, ig_str *s, const tm_val *v);
void tm_repr(tm_ctx *c, ig_str *s, const tm_val *v);
tm_val tm_stringify(tm_ctx *c, const tm_val *v); /* str(v) as a value (no copy when already a string) */
void tm_float_repr(ig_str *s, double f);
void tm_pformat(tm_ctx *c, ig_str *s, const tm_val *v); /* pprint.pformat(v) */
/* json.dumps(v, ensure_ascii=False, indent, separators, sort_keys); indent < 0: None. */
void tm_to_json(tm_ctx *c, ig_str *s, const tm_val *v, int indent, const char *indent_str, tm_sv item_sep,
                tm_sv key_sep, bool sort_keys, int level);
void tm_check_str(tm_ctx *c, ig_str *s); /* fails when s is over max_output or out of memory */

/* UTF-8 helpers: code point count, byte offset of the cp-th code point, decode one. */
size_t tm_u8_len(const char *p, size_t n);
size_t tm_u8_offset(const char *p, size_t n, size_t cp);
uint32_t tm_u8_decode(const char *p, size_t n, size_t *adv);
void tm_u8_put(ig_str *s, uint32_t cp);
bool tm_isspace_cp(uint32_t cp);

/* ---------------------------------------------------------------- builtins (tmpl_builtins.c) */
/* Arguments as evaluated at a call site. */
typedef struct tm_args {
  int n;
  tm_val *v;
  int nkw;
  const tm_sv *kwn;
  tm_val *kwv;
} tm_args;

int tm_filter_id(tm_sv name); /* -1 when unknown */
int tm_test_id(tm_sv name);
int tm_func_id(tm_sv name); /* global functions: range, namespace, dict, raise_exception, strftime_now, ... */
int tm_method_id(const tm_val *self, tm_sv name); /* -1 when self has no such (safe) method */
bool tm_is_unsafe_method(const tm_val *self, tm_sv name);
tm_val tm_call_filter(tm_ctx *c, int id, tm_val v, tm_args *a);
bool tm_call_test(tm_ctx *c, int id, tm_val v, tm_args *a);
tm_val tm_call_func(tm_ctx *c, int id, tm_args *a);
tm_val tm_call_method(tm_ctx *c, const tm_method *m, tm_args *a);
tm_val tm_percent_format(tm_ctx *c, tm_val fmt, tm_val args); /* Python's "fmt" % args */
tm_val tm_binop(tm_ctx *c, int op, tm_val a, tm_val b);      /* a <op> b with Python's rules */
tm_val tm_html_escape(tm_ctx *c, tm_val s);                   /* markupsafe.escape: a Markup string */
static inline tm_val tm_gen(tm_list *l) { tm_val v = {0}; v.t = V_LIST; v.unsafe = 1; v.l = l; return v; }
tm_val tm_gen_err(tm_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3))); /* fails when iterated */
/* Used by builtins that call back into the interpreter (map/select with filters/tests, macros). */
tm_val tm_call_value(tm_ctx *c, tm_val callee, tm_args *a);
tm_val tm_getattr(tm_ctx *c, tm_val obj, tm_sv name);
tm_val tm_getitem(tm_ctx *c, tm_val obj, tm_val key);
/* Iterate: returns a list (dict -> keys, str -> chars); fails on non-iterables. */
tm_list *tm_iterate(tm_ctx *c, const tm_val *v);

#endif
