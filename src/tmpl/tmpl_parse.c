/* tmpl_parse: Jinja2 source -> AST. The lexer applies jinja2's whitespace rules as transformers configures
 * them (trim_blocks, lstrip_blocks, `-`/`+` markers, one trailing newline dropped, newlines normalized); the
 * parser is recursive descent with jinja2's operator precedence. Nesting depth is bounded so that hostile
 * templates cannot exhaust the C stack. */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tmpl/tmpl_int.h"

#define TM_MAX_NEST 200

/* ---------------------------------------------------------------- arena */
void *tm_alloc(tm_arena *a, size_t n) {
  n = (n + 15) & ~(size_t)15;
  if (n == 0) n = 16;
  tm_chunk *h = a->head;
  if (!h || h->cap - h->used < n) {
    size_t cap = n > 32768 ? n : (h && h->cap < 1048576 ? h->cap * 2 : (h ? h->cap : 16384));
    if (cap < n) cap = n;
    if (a->limit && a->total + cap > a->limit) return NULL;
    tm_chunk *c = malloc(sizeof(tm_chunk) + cap);
    if (!c) return NULL;
    c->next = h;
    c->used = 0;
    c->cap = cap;
    a->head = c;
    a->total += cap;
    h = c;
  }
  void *p = h->data + h->used;
  h->used += n;
  return p;
}
void tm_arena_free(tm_arena *a) {
  tm_chunk *c = a->head;
  while (c) {
    tm_chunk *n = c->next;
    free(c);
    c = n;
  }
  a->head = NULL;
  a->total = 0;
}

/* ---------------------------------------------------------------- tokens */
enum { T_TEXT, T_VBEGIN, T_VEND, T_BBEGIN, T_BEND, T_NAME, T_STR, T_INT, T_FLOAT, T_OP, T_EOF };
/* multi-character operators get codes above 255 */
enum { O_FLOORDIV = 256, O_POW, O_EQ, O_NE, O_LE, O_GE };

typedef struct tok {
  int type;
  int op;
  int line;
  tm_sv s;
  int64_t i;
  double f;
} tok;

typedef struct parser {
  struct ig_tmpl *t;
  tm_arena *ar;
  const char *src;
  size_t len;
  tok *toks;
  int ntok, cap;
  int pos;
  int nest;
  char *err;
  size_t errlen;
  jmp_buf jb;
  int names_cap;
} parser;

static _Noreturn void perr(parser *p, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static _Noreturn void perr(parser *p, int line, const char *fmt, ...) {
  char buf[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (p->err && p->errlen) snprintf(p->err, p->errlen, "template syntax error, line %d: %s", line, buf);
  longjmp(p->jb, IG_TMPL_ESYNTAX);
}
static void *palloc(parser *p, size_t n) {
  void *r = tm_alloc(p->ar, n);
  if (!r) {
    if (p->err && p->errlen) snprintf(p->err, p->errlen, "out of memory while compiling the template");
    longjmp(p->jb, IG_TMPL_ENOMEM);
  }
  memset(r, 0, n);
  return r;
}

static void push_tok(parser *p, tok t) {
  if (p->ntok == p->cap) {
    int cap = p->cap ? p->cap * 2 : 256;
    tok *n = palloc(p, sizeof(tok) * (size_t)cap);
    if (p->ntok) memcpy(n, p->toks, sizeof(tok) * (size_t)p->ntok);
    p->toks = n;
    p->cap = cap;
  }
  p->toks[p->ntok++] = t;
}

/* Python's str.isspace over UTF-8 at s[i]; returns byte length of the space char or 0. */
static size_t space_at(const char *s, size_t n, size_t i) {
  unsigned char ch = (unsigned char)s[i];
  if (ch < 0x80) return (ch == ' ' || (ch >= 9 && ch <= 13) || (ch >= 0x1c && ch <= 0x1f)) ? 1 : 0;
  size_t adv;
  uint32_t cp = tm_u8_decode(s + i, n - i, &adv);
  return tm_isspace_cp(cp) ? adv : 0;
}
/* Length of s[0..n) once trailing whitespace is removed. */
static size_t rstrip_len(const char *s, size_t n) {
  while (n > 0) {
    size_t k = n - 1;
    while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
    if (!space_at(s, n, k)) break;
    n = k;
  }
  return n;
}
static size_t skip_space(const char *s, size_t n, size_t i) {
  size_t k;
  while (i < n && (k = space_at(s, n, i))) i += k;
  return i;
}
static int count_lines(const char *s, size_t a, size_t b) {
  int n = 0;
  for (size_t i = a; i < b; i++) n += s[i] == '\n';
  return n;
}

static void emit_text(parser *p, const char *s, size_t n, int line) {
  if (!n) return;
  tok t = {.type = T_TEXT, .line = line, .s = {s, n}};
  push_tok(p, t);
}

/* Decode a string literal body with Python's escapes (jinja2 uses unicode-escape). */
static tm_sv decode_string(parser *p, const char *s, size_t n, int line) {
  if (!memchr(s, '\\', n)) return (tm_sv){s, n};
  ig_str o;
  ig_str_init(&o);
  for (size_t i = 0; i < n; i++) {
    char ch = s[i];
    if (ch != '\\' || i + 1 >= n) {
      ig_str_putc(&o, ch);
      continue;
    }
    char e = s[++i];
    switch (e) {
    case '\n': break;
    case '\\': ig_str_putc(&o, '\\'); break;
    case '\'': ig_str_putc(&o, '\''); break;
    case '"': ig_str_putc(&o, '"'); break;
    case 'a': ig_str_putc(&o, '\a'); break;
    case 'b': ig_str_putc(&o, '\b'); break;
    case 'f': ig_str_putc(&o, '\f'); break;
    case 'n': ig_str_putc(&o, '\n'); break;
    case 'r': ig_str_putc(&o, '\r'); break;
    case 't': ig_str_putc(&o, '\t'); break;
    case 'v': ig_str_putc(&o, '\v'); break;
    case 'x': case 'u': case 'U': {
      int want = e == 'x' ? 2 : e == 'u' ? 4 : 8;
      uint32_t cp = 0;
      int k = 0;
      for (; k < want && i + 1 + k < n && isxdigit((unsigned char)s[i + 1 + k]); k++) {
        char h = s[i + 1 + k];
        cp = cp * 16 + (uint32_t)(isdigit((unsigned char)h) ? h - '0' : (tolower((unsigned char)h) - 'a' + 10));
      }
      if (k < want || cp > 0x10FFFF) {
        ig_str_free(&o);
        perr(p, line, "invalid \\%c escape in a string literal", e);
      }
      i += (size_t)want;
      tm_u8_put(&o, cp);
      break;
    }
    default:
      if (e >= '0' && e <= '7') {
        uint32_t cp = (uint32_t)(e - '0');
        for (int k = 0; k < 2 && i + 1 < n && s[i + 1] >= '0' && s[i + 1] <= '7'; k++) cp = cp * 8 + (uint32_t)(s[++i] - '0');
        tm_u8_put(&o, cp);
      } else {
        ig_str_putc(&o, '\\');
        ig_str_putc(&o, e);
      }
    }
  }
  if (o.oom) {
    ig_str_free(&o);
    perr(p, line, "out of memory");
  }
  char *d = palloc(p, o.len + 1);
  if (o.len) memcpy(d, o.p, o.len);
  tm_sv r = {d, o.len};
  ig_str_free(&o);
  return r;
}

/* Tokenize the inside of a {{ }} or {% %} tag starting at i; returns the position after the closing
 * delimiter (with trim_blocks / `-` applied) and sets *strip_after / *line_end. */
static size_t lex_tag(parser *p, size_t i, int *line, int is_block, int *strip_after) {
  const char *s = p->src;
  size_t n = p->len;
  int depth = 0;
  char close = is_block ? '%' : '}';
  for (;;) {
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r' || s[i] == '\f' || s[i] == '\v')) {
      if (s[i] == '\n') (*line)++;
      i++;
    }
    if (i >= n) perr(p, *line, "unexpected end of template, expected '%s'", is_block ? "%}" : "}}");
    if (depth == 0) {
      size_t j = i;
      int sign = 0;
      if (s[j] == '-' || s[j] == '+') sign = s[j++];
      if (j + 1 < n && s[j] == close && s[j + 1] == '}') {
        j += 2;
        *strip_after = 0;
        if (sign == '-') *strip_after = 1;
        else if (is_block && sign != '+' && j < n && s[j] == '\n') { j++; (*line)++; *strip_after = 2; }
        tok t = {.type = is_block ? T_BEND : T_VEND, .line = *line};
        push_tok(p, t);
        return j;
      }
    }
    char ch = s[i];
    tok t = {.line = *line};
    if (isalpha((unsigned char)ch) || ch == '_') {
      size_t j = i;
      while (j < n && (isalnum((unsigned char)s[j]) || s[j] == '_')) j++;
      t.type = T_NAME;
      t.s = (tm_sv){s + i, j - i};
      push_tok(p, t);
      i = j;
      continue;
    }
    if (isdigit((unsigned char)ch)) {
      size_t j = i;
      while (j < n && (isdigit((unsigned char)s[j]) || (s[j] == '_' && j + 1 < n && isdigit((unsigned char)s[j + 1])))) j++;
      int isf = 0;
      if (j + 1 < n && s[j] == '.' && isdigit((unsigned char)s[j + 1])) {
        isf = 1;
        j++;
        while (j < n && (isdigit((unsigned char)s[j]) || (s[j] == '_' && j + 1 < n && isdigit((unsigned char)s[j + 1])))) j++;
      }
      if (j < n && (s[j] == 'e' || s[j] == 'E')) {
        size_t k = j + 1;
        if (k < n && (s[k] == '+' || s[k] == '-')) k++;
        if (k < n && isdigit((unsigned char)s[k])) {
          isf = 1;
          j = k;
          while (j < n && isdigit((unsigned char)s[j])) j++;
        }
      }
      char buf[128];
      size_t bl = 0;
      for (size_t k = i; k < j && bl < sizeof buf - 1; k++)
        if (s[k] != '_') buf[bl++] = s[k];
      buf[bl] = 0;
      if (isf) {
        t.type = T_FLOAT;
        t.f = strtod(buf, NULL);
      } else {
        t.type = T_INT;
        errno = 0;
        char *end;
        unsigned long long v = strtoull(buf, &end, 10);
        if (errno || v > INT64_MAX) perr(p, *line, "integer literal too large");
        t.i = (int64_t)v;
      }
      push_tok(p, t);
      i = j;
      continue;
    }
    if (ch == '\'' || ch == '"') {
      size_t j = i + 1;
      while (j < n && s[j] != ch) {
        if (s[j] == '\\' && j + 1 < n) j++;
        j++;
      }
      if (j >= n) perr(p, *line, "unterminated string literal");
      t.type = T_STR;
      t.s = decode_string(p, s + i + 1, j - i - 1, *line);
      *line += count_lines(s, i, j);
      push_tok(p, t);
      i = j + 1;
      continue;
    }
    t.type = T_OP;
    if (i + 1 < n) {
      char c2 = s[i + 1];
      int op = 0;
      if (ch == '/' && c2 == '/') op = O_FLOORDIV;
      else if (ch == '*' && c2 == '*') op = O_POW;
      else if (ch == '=' && c2 == '=') op = O_EQ;
      else if (ch == '!' && c2 == '=') op = O_NE;
      else if (ch == '<' && c2 == '=') op = O_LE;
      else if (ch == '>' && c2 == '=') op = O_GE;
      if (op) {
        t.op = op;
        push_tok(p, t);
        i += 2;
        continue;
      }
    }
    if (!strchr("+-*/%~<>=.,:|()[]{}", ch)) perr(p, *line, "unexpected char '%c'", ch);
    if (ch == '(' || ch == '[' || ch == '{') depth++;
    if (ch == ')' || ch == ']' || ch == '}') {
      if (depth == 0) perr(p, *line, "unexpected '%c'", ch);
      depth--;
    }
    t.op = ch;
    push_tok(p, t);
    i++;
  }
}

static void lex(parser *p) {
  const char *s = p->src;
  size_t n = p->len;
  size_t i = 0;
  int line = 1;
  int line_starting = 1;
  int strip_next = 0; /* 1: strip all leading whitespace of the next text ('-' marker) */
  while (i <= n) {
    /* find the next tag start */
    size_t j = i;
    int kind = 0; /* '{' var, '%' block, '#' comment */
    while (j + 1 < n) {
      if (s[j] == '{' && (s[j + 1] == '{' || s[j + 1] == '%' || s[j + 1] == '#')) {
        kind = s[j + 1];
        break;
      }
      j++;
    }
    if (!kind) j = n;
    const char *text = s + i;
    size_t tl = j - i;
    if (strip_next) {
      size_t k = skip_space(text, tl, 0);
      line += count_lines(text, 0, k);
      text += k;
      tl -= k;
    }
    if (!kind) {
      emit_text(p, text, tl, line);
      break;
    }
    int sign = (j + 2 < n && (s[j + 2] == '-' || s[j + 2] == '+')) ? s[j + 2] : 0;
    int tline = line + count_lines(text, 0, tl);
    if (sign == '-') {
      tl = rstrip_len(text, tl);
    } else if (sign != '+' && kind != '{') {
      size_t lpos = 0;
      for (size_t k = tl; k > 0; k--)
        if (text[k - 1] == '\n') { lpos = k; break; }
      if (lpos > 0 || line_starting) {
        size_t k = skip_space(text, tl, lpos);
        if (k == tl && tl > lpos) tl = lpos;
      }
    }
    emit_text(p, text, tl, line);
    line = tline;
    size_t k = j + 2 + (sign ? 1 : 0);
    if (kind == '#') {
      /* comment: find #} */
      size_t e = k;
      while (e + 1 < n && !(s[e] == '#' && s[e + 1] == '}')) e++;
      if (e + 1 >= n) perr(p, line, "missing end of comment tag");
      line += count_lines(s, k, e);
      int csign = e > k && (s[e - 1] == '-' || s[e - 1] == '+') ? s[e - 1] : 0;
      e += 2;
      strip_next = 0;
      line_starting = 0;
      if (csign == '-') strip_next = 1;
      else if (csign != '+' && e < n && s[e] == '\n') { e++; line++; line_starting = 1; }
      if (strip_next) {
        size_t q = skip_space(s, n, e);
        line_starting = q > e && s[q - 1] == '\n';
      }
      i = e;
      continue;
    }
    if (kind == '%') {
      /* raw blocks are handled here: {% raw %}...{% endraw %} */
      size_t q = skip_space(s, n, k);
      if (q + 3 <= n && memcmp(s + q, "raw", 3) == 0 && (q + 3 == n || !(isalnum((unsigned char)s[q + 3]) || s[q + 3] == '_'))) {
        size_t r = skip_space(s, n, q + 3);
        int rsign = 0;
        if (r < n && (s[r] == '-')) { rsign = '-'; r++; }
        if (r + 1 < n && s[r] == '%' && s[r + 1] == '}') {
          r += 2;
          if (rsign == '-') r = skip_space(s, n, r);
          /* find {%-? endraw -?%} */
          size_t e = r;
          for (;;) {
            while (e + 1 < n && !(s[e] == '{' && s[e + 1] == '%')) e++;
            if (e + 1 >= n) perr(p, line, "missing endraw");
            size_t a = e + 2;
            int esign = 0;
            if (a < n && (s[a] == '-' || s[a] == '+')) esign = s[a++];
            a = skip_space(s, n, a);
            if (a + 6 <= n && memcmp(s + a, "endraw", 6) == 0) {
              size_t b = skip_space(s, n, a + 6);
              int asign = 0;
              if (b < n && (s[b] == '-' || s[b] == '+')) asign = s[b++];
              if (b + 1 < n && s[b] == '%' && s[b + 1] == '}') {
                size_t body = e - r;
                if (esign == '-') body = rstrip_len(s + r, body);
                emit_text(p, s + r, body, line);
                line += count_lines(s, r, b + 2);
                b += 2;
                strip_next = asign == '-';
                line_starting = 0;
                if (asign != '+' && asign != '-' && b < n && s[b] == '\n') { b++; line++; line_starting = 1; }
                i = b;
                break;
              }
            }
            e++;
          }
          continue;
        }
      }
      tok t = {.type = T_BBEGIN, .line = line};
      push_tok(p, t);
    } else {
      tok t = {.type = T_VBEGIN, .line = line};
      push_tok(p, t);
    }
    int sa = 0;
    i = lex_tag(p, k, &line, kind == '%', &sa);
    strip_next = sa == 1;
    line_starting = sa == 2;
    if (sa == 1) {
      size_t q = skip_space(s, n, i);
      line_starting = q > i && s[q - 1] == '\n';
    }
  }
  tok t = {.type = T_EOF, .line = line};
  push_tok(p, t);
}

/* ---------------------------------------------------------------- parser helpers */
static tok *cur(parser *p) { return &p->toks[p->pos]; }
static tok *peek(parser *p, int k) {
  int i = p->pos + k;
  return &p->toks[i < p->ntok ? i : p->ntok - 1];
}
static int is_op(tok *t, int op) { return t->type == T_OP && t->op == op; }
static int is_name(tok *t, const char *w) {
  size_t l = strlen(w);
  return t->type == T_NAME && t->s.n == l && memcmp(t->s.p, w, l) == 0;
}
static const char *tokdesc(tok *t, char *buf, size_t bl) {
  switch (t->type) {
  case T_NAME: snprintf(buf, bl, "'%.*s'", (int)(t->s.n > 40 ? 40 : t->s.n), t->s.p); break;
  case T_STR: snprintf(buf, bl, "string"); break;
  case T_INT: case T_FLOAT: snprintf(buf, bl, "number"); break;
  case T_OP:
    if (t->op < 256) snprintf(buf, bl, "'%c'", t->op);
    else snprintf(buf, bl, "operator");
    break;
  case T_VEND: snprintf(buf, bl, "end of print statement"); break;
  case T_BEND: snprintf(buf, bl, "end of statement block"); break;
  case T_EOF: snprintf(buf, bl, "end of template"); break;
  default: snprintf(buf, bl, "token");
  }
  return buf;
}
static void expect_op(parser *p, int op) {
  if (!is_op(cur(p), op)) {
    char b[64];
    perr(p, cur(p)->line, "expected '%c', got %s", op, tokdesc(cur(p), b, sizeof b));
  }
  p->pos++;
}
static tm_sv expect_name(parser *p) {
  if (cur(p)->type != T_NAME) {
    char b[64];
    perr(p, cur(p)->line, "expected a name, got %s", tokdesc(cur(p), b, sizeof b));
  }
  return p->toks[p->pos++].s;
}
static void expect_bend(parser *p) {
  if (cur(p)->type != T_BEND) {
    char b[64];
    perr(p, cur(p)->line, "expected end of statement block, got %s", tokdesc(cur(p), b, sizeof b));
  }
  p->pos++;
}

static int intern(parser *p, tm_sv s) {
  struct ig_tmpl *t = p->t;
  for (int i = 0; i < t->nnames; i++)
    if (t->names[i].n == s.n && memcmp(t->names[i].p, s.p, s.n) == 0) return i;
  if (t->nnames == p->names_cap) {
    int cap = p->names_cap ? p->names_cap * 2 : 64;
    tm_sv *n = palloc(p, sizeof(tm_sv) * (size_t)cap);
    if (t->nnames) memcpy(n, t->names, sizeof(tm_sv) * (size_t)t->nnames);
    t->names = n;
    p->names_cap = cap;
  }
  t->names[t->nnames] = s;
  return t->nnames++;
}
static int intern_c(parser *p, const char *z) { return intern(p, (tm_sv){z, strlen(z)}); }

static tm_node *mk(parser *p, int kind, int line) {
  tm_node *n = palloc(p, sizeof *n);
  n->kind = (uint8_t)kind;
  n->line = line;
  return n;
}

/* growable node array */
typedef struct nvec {
  tm_node **v;
  int n, cap;
} nvec;
static void nv_push(parser *p, nvec *a, tm_node *x) {
  if (a->n == a->cap) {
    int cap = a->cap ? a->cap * 2 : 4;
    tm_node **v = palloc(p, sizeof(tm_node *) * (size_t)cap);
    if (a->n) memcpy(v, a->v, sizeof(tm_node *) * (size_t)a->n);
    a->v = v;
    a->cap = cap;
  }
  a->v[a->n++] = x;
}

static void enter(parser *p) {
  if (++p->nest > TM_MAX_NEST) perr(p, cur(p)->line, "template nested too deeply (limit %d)", TM_MAX_NEST);
}
static void leave(parser *p) { p->nest--; }

/* ---------------------------------------------------------------- expressions */
static tm_node *parse_expr(parser *p);
static tm_node *parse_expr_noif(parser *p);
static tm_node *parse_or(parser *p);
static tm_node *parse_unary(parser *p, int with_filter);
static tm_node *parse_primary(parser *p);
static tm_node *parse_postfix(parser *p, tm_node *n);

/* call arguments after '(' has been consumed: positional then keyword (name=value) */
static void parse_call_args(parser *p, tm_node *call) {
  nvec pos = {0}, kv = {0};
  tm_sv *kn = NULL;
  int nk = 0, kcap = 0;
  while (!is_op(cur(p), ')')) {
    if (pos.n + nk) expect_op(p, ',');
    if (is_op(cur(p), ')')) break;
    if (cur(p)->type == T_NAME && is_op(peek(p, 1), '=')) {
      tm_sv name = cur(p)->s;
      p->pos += 2;
      tm_node *v = parse_expr(p);
      if (nk == kcap) {
        kcap = kcap ? kcap * 2 : 4;
        tm_sv *nn = palloc(p, sizeof(tm_sv) * (size_t)kcap);
        if (nk) memcpy(nn, kn, sizeof(tm_sv) * (size_t)nk);
        kn = nn;
      }
      kn[nk++] = name;
      nv_push(p, &kv, v);
    } else {
      if (is_op(cur(p), '*')) perr(p, cur(p)->line, "*args calls are not supported");
      if (nk) perr(p, cur(p)->line, "positional argument follows keyword argument");
      nv_push(p, &pos, parse_expr(p));
    }
  }
  expect_op(p, ')');
  call->items = pos.v;
  call->n = pos.n;
  call->kwv = kv.v;
  call->kwn = kn;
  call->nkw = nk;
}

static tm_node *parse_filter(parser *p, tm_node *arg) {
  /* after '|' */
  int line = cur(p)->line;
  tm_sv name = expect_name(p);
  while (is_op(cur(p), '.')) { /* dotted filter names: not supported, keep jinja's error shape */
    perr(p, line, "no filter named '%.*s.'", (int)name.n, name.p);
  }
  tm_node *f = mk(p, N_FILTER, line);
  f->s = name;
  f->id = tm_filter_id(name);
  if (f->id < 0) perr(p, line, "no filter named '%.*s'", (int)(name.n > 40 ? 40 : name.n), name.p);
  f->a = arg;
  if (is_op(cur(p), '(')) {
    p->pos++;
    parse_call_args(p, f);
  }
  return f;
}

static tm_node *parse_test(parser *p, tm_node *arg) {
  /* after 'is' */
  int line = cur(p)->line;
  int neg = 0;
  if (is_name(cur(p), "not")) {
    neg = 1;
    p->pos++;
  }
  tm_sv name = expect_name(p);
  tm_node *t = mk(p, N_TEST, line);
  t->s = name;
  t->flag = (uint8_t)neg;
  t->id = tm_test_id(name);
  if (t->id < 0) perr(p, line, "no test named '%.*s'", (int)(name.n > 40 ? 40 : name.n), name.p);
  t->a = arg;
  tok *c = cur(p);
  if (is_op(c, '(')) {
    p->pos++;
    parse_call_args(p, t);
  } else if ((c->type == T_NAME || c->type == T_STR || c->type == T_INT || c->type == T_FLOAT || is_op(c, '[') ||
              is_op(c, '{')) &&
             !is_name(c, "else") && !is_name(c, "or") && !is_name(c, "and")) {
    if (is_name(c, "is")) perr(p, c->line, "You cannot chain multiple tests with is");
    tm_node *a = parse_postfix(p, parse_primary(p));
    t->items = palloc(p, sizeof(tm_node *));
    t->items[0] = a;
    t->n = 1;
  }
  return t;
}

static tm_node *parse_filter_expr(parser *p, tm_node *n) {
  for (;;) {
    if (is_op(cur(p), '|')) {
      p->pos++;
      n = parse_filter(p, n);
    } else if (is_name(cur(p), "is")) {
      p->pos++;
      n = parse_test(p, n);
    } else if (is_op(cur(p), '(')) {
      tm_node *c = mk(p, N_CALL, cur(p)->line);
      p->pos++;
      c->a = n;
      parse_call_args(p, c);
      n = c;
    } else
      return n;
  }
}

static tm_node *parse_subscript_arg(parser *p) {
  /* a[b], a[b:c], a[b:c:d] */
  int line = cur(p)->line;
  tm_node *parts[3] = {0};
  int idx = 0, slice = 0;
  for (;;) {
    if (is_op(cur(p), ':')) {
      slice = 1;
      p->pos++;
      if (++idx > 2) perr(p, line, "invalid slice");
      continue;
    }
    if (is_op(cur(p), ']') || is_op(cur(p), ',')) break;
    if (parts[idx]) perr(p, line, "invalid subscript");
    parts[idx] = parse_expr(p);
  }
  if (!slice) {
    if (!parts[0]) perr(p, line, "expected an expression in subscript");
    if (is_op(cur(p), ',')) perr(p, line, "tuple subscripts are not supported");
    return parts[0];
  }
  tm_node *s = mk(p, N_SLICE, line);
  s->a = parts[0];
  s->b = parts[1];
  s->c = parts[2];
  return s;
}

static tm_node *parse_postfix(parser *p, tm_node *n) {
  for (;;) {
    tok *c = cur(p);
    if (is_op(c, '.')) {
      p->pos++;
      tok *a = cur(p);
      tm_node *g;
      if (a->type == T_NAME) {
        g = mk(p, N_GETATTR, a->line);
        g->s = a->s;
      } else if (a->type == T_INT) {
        g = mk(p, N_GETITEM, a->line);
        g->b = mk(p, N_INT, a->line);
        g->b->i = a->i;
      } else {
        char b[64];
        perr(p, a->line, "expected name or number after '.', got %s", tokdesc(a, b, sizeof b));
      }
      p->pos++;
      g->a = n;
      n = g;
    } else if (is_op(c, '[')) {
      p->pos++;
      tm_node *g = mk(p, N_GETITEM, c->line);
      g->a = n;
      g->b = parse_subscript_arg(p);
      expect_op(p, ']');
      n = g;
    } else if (is_op(c, '(')) {
      p->pos++;
      tm_node *call = mk(p, N_CALL, c->line);
      call->a = n;
      parse_call_args(p, call);
      n = call;
    } else
      return n;
  }
}

static tm_node *parse_primary(parser *p) {
  tok *t = cur(p);
  enter(p);
  tm_node *n = NULL;
  switch (t->type) {
  case T_NAME:
    p->pos++;
    if (is_name(t, "true") || is_name(t, "True") || is_name(t, "false") || is_name(t, "False")) {
      n = mk(p, N_BOOL, t->line);
      n->i = t->s.p[0] == 't' || t->s.p[0] == 'T';
    } else if (is_name(t, "none") || is_name(t, "None")) {
      n = mk(p, N_NONE, t->line);
    } else {
      n = mk(p, N_NAME, t->line);
      n->s = t->s;
      n->id = intern(p, t->s);
    }
    break;
  case T_STR: {
    p->pos++;
    n = mk(p, N_STR, t->line);
    n->s = t->s;
    if (cur(p)->type == T_STR) { /* adjacent literals concatenate */
      ig_str b;
      ig_str_init(&b);
      ig_str_append(&b, t->s.p, t->s.n);
      while (cur(p)->type == T_STR) {
        ig_str_append(&b, cur(p)->s.p, cur(p)->s.n);
        p->pos++;
      }
      char *d = palloc(p, b.len + 1);
      memcpy(d, b.p, b.len);
      n->s = (tm_sv){d, b.len};
      ig_str_free(&b);
    }
    break;
  }
  case T_INT:
    p->pos++;
    n = mk(p, N_INT, t->line);
    n->i = t->i;
    break;
  case T_FLOAT:
    p->pos++;
    n = mk(p, N_FLOAT, t->line);
    n->f = t->f;
    break;
  case T_OP:
    if (t->op == '(') {
      p->pos++;
      if (is_op(cur(p), ')')) {
        p->pos++;
        n = mk(p, N_TUPLE, t->line);
        break;
      }
      tm_node *e = parse_expr(p);
      if (is_op(cur(p), ',')) {
        nvec v = {0};
        nv_push(p, &v, e);
        while (is_op(cur(p), ',')) {
          p->pos++;
          if (is_op(cur(p), ')')) break;
          nv_push(p, &v, parse_expr(p));
        }
        n = mk(p, N_TUPLE, t->line);
        n->items = v.v;
        n->n = v.n;
      } else
        n = e;
      expect_op(p, ')');
      break;
    }
    if (t->op == '[') {
      p->pos++;
      nvec v = {0};
      while (!is_op(cur(p), ']')) {
        if (v.n) expect_op(p, ',');
        if (is_op(cur(p), ']')) break;
        nv_push(p, &v, parse_expr(p));
      }
      expect_op(p, ']');
      n = mk(p, N_LIST, t->line);
      n->items = v.v;
      n->n = v.n;
      break;
    }
    if (t->op == '{') {
      p->pos++;
      nvec v = {0};
      while (!is_op(cur(p), '}')) {
        if (v.n) expect_op(p, ',');
        if (is_op(cur(p), '}')) break;
        nv_push(p, &v, parse_expr(p));
        expect_op(p, ':');
        nv_push(p, &v, parse_expr(p));
      }
      expect_op(p, '}');
      n = mk(p, N_DICT, t->line);
      n->items = v.v;
      n->n = v.n;
      break;
    }
    /* fallthrough */
  default: {
    char b[64];
    perr(p, t->line, "unexpected %s", tokdesc(t, b, sizeof b));
  }
  }
  leave(p);
  return n;
}

static tm_node *parse_unary(parser *p, int with_filter) {
  tok *t = cur(p);
  tm_node *n;
  enter(p);
  if (is_op(t, '-') || is_op(t, '+')) {
    p->pos++;
    n = mk(p, is_op(t, '-') ? N_NEG : N_POS, t->line);
    n->a = parse_unary(p, 0);
  } else {
    n = parse_primary(p);
  }
  n = parse_postfix(p, n);
  if (with_filter) n = parse_filter_expr(p, n);
  leave(p);
  return n;
}

static tm_node *bin(parser *p, int op, tm_node *a, tm_node *b, int line) {
  tm_node *n = mk(p, N_BIN, line);
  n->op = (uint8_t)op;
  n->a = a;
  n->b = b;
  return n;
}

static tm_node *parse_pow(parser *p) {
  tm_node *l = parse_unary(p, 1);
  while (is_op(cur(p), O_POW)) {
    int line = cur(p)->line;
    p->pos++;
    l = bin(p, OP_POW, l, parse_unary(p, 1), line);
  }
  return l;
}
static tm_node *parse_math2(parser *p) {
  tm_node *l = parse_pow(p);
  for (;;) {
    tok *t = cur(p);
    int op = is_op(t, '*') ? OP_MUL : is_op(t, '/') ? OP_DIV : is_op(t, O_FLOORDIV) ? OP_FLOORDIV : is_op(t, '%') ? OP_MOD : -1;
    if (op < 0) return l;
    p->pos++;
    l = bin(p, op, l, parse_pow(p), t->line);
  }
}
static tm_node *parse_concat(parser *p) {
  tm_node *l = parse_math2(p);
  while (is_op(cur(p), '~')) {
    int line = cur(p)->line;
    p->pos++;
    l = bin(p, OP_CONCAT, l, parse_math2(p), line);
  }
  return l;
}
static tm_node *parse_math1(parser *p) {
  tm_node *l = parse_concat(p);
  for (;;) {
    tok *t = cur(p);
    int op = is_op(t, '+') ? OP_ADD : is_op(t, '-') ? OP_SUB : -1;
    if (op < 0) return l;
    p->pos++;
    l = bin(p, op, l, parse_concat(p), t->line);
  }
}
static tm_node *parse_compare(parser *p) {
  int line = cur(p)->line;
  tm_node *first = parse_math1(p);
  nvec opnds = {0};
  uint8_t ops[64];
  int nops = 0;
  for (;;) {
    tok *t = cur(p);
    int op = -1;
    if (is_op(t, O_EQ)) op = CMP_EQ;
    else if (is_op(t, O_NE)) op = CMP_NE;
    else if (is_op(t, '<')) op = CMP_LT;
    else if (is_op(t, O_LE)) op = CMP_LE;
    else if (is_op(t, '>')) op = CMP_GT;
    else if (is_op(t, O_GE)) op = CMP_GE;
    else if (is_name(t, "in")) op = CMP_IN;
    else if (is_name(t, "not") && is_name(peek(p, 1), "in")) {
      op = CMP_NOTIN;
      p->pos++;
    }
    if (op < 0) break;
    p->pos++;
    if (nops == 64) perr(p, t->line, "comparison chain too long");
    if (!opnds.n) nv_push(p, &opnds, first);
    ops[nops++] = (uint8_t)op;
    nv_push(p, &opnds, parse_math1(p));
  }
  if (!nops) return first;
  tm_node *n = mk(p, N_CMP, line);
  n->items = opnds.v;
  n->n = opnds.n;
  n->ops = palloc(p, (size_t)nops);
  memcpy(n->ops, ops, (size_t)nops);
  return n;
}
static tm_node *parse_not(parser *p) {
  if (is_name(cur(p), "not")) {
    tm_node *n = mk(p, N_NOT, cur(p)->line);
    p->pos++;
    enter(p);
    n->a = parse_not(p);
    leave(p);
    return n;
  }
  return parse_compare(p);
}
static tm_node *parse_and(parser *p) {
  tm_node *l = parse_not(p);
  while (is_name(cur(p), "and")) {
    tm_node *n = mk(p, N_AND, cur(p)->line);
    p->pos++;
    n->a = l;
    n->b = parse_not(p);
    l = n;
  }
  return l;
}
static tm_node *parse_or(parser *p) {
  tm_node *l = parse_and(p);
  while (is_name(cur(p), "or")) {
    tm_node *n = mk(p, N_OR, cur(p)->line);
    p->pos++;
    n->a = l;
    n->b = parse_and(p);
    l = n;
  }
  return l;
}
static tm_node *parse_expr_noif(parser *p) { return parse_or(p); }
static tm_node *parse_expr(parser *p) {
  enter(p);
  tm_node *e = parse_or(p);
  while (is_name(cur(p), "if")) {
    tm_node *n = mk(p, N_COND, cur(p)->line);
    p->pos++;
    n->a = e;             /* value when true */
    n->b = parse_or(p);   /* condition */
    if (is_name(cur(p), "else")) {
      p->pos++;
      n->c = parse_expr(p);
    }
    e = n;
  }
  leave(p);
  return e;
}
/* a, b, c (without parentheses) as in `{% set a, b = ... %}` values or `{{ 1, 2 }}` */
static tm_node *parse_tuple_expr(parser *p) {
  int line = cur(p)->line;
  tm_node *e = parse_expr(p);
  if (!is_op(cur(p), ',')) return e;
  nvec v = {0};
  nv_push(p, &v, e);
  while (is_op(cur(p), ',')) {
    p->pos++;
    if (cur(p)->type == T_BEND || cur(p)->type == T_VEND) break;
    nv_push(p, &v, parse_expr(p));
  }
  tm_node *t = mk(p, N_TUPLE, line);
  t->items = v.v;
  t->n = v.n;
  return t;
}

/* ---------------------------------------------------------------- statements */
static tm_node *parse_body(parser *p, const char *const *ends, int *which);

static int at_block_named(parser *p, const char *const *names) {
  if (cur(p)->type != T_BBEGIN) return -1;
  tok *t = peek(p, 1);
  for (int i = 0; names[i]; i++)
    if (is_name(t, names[i])) return i;
  return -1;
}

/* target names: a or a, b (for loops and set) */
static void parse_targets(parser *p, tm_node *n) {
  int ids[16];
  int k = 0;
  for (;;) {
    tm_sv name = expect_name(p);
    if (k == 16) perr(p, cur(p)->line, "too many targets");
    ids[k++] = intern(p, name);
    if (!is_op(cur(p), ',')) break;
    p->pos++;
  }
  n->ids = palloc(p, sizeof(int) * (size_t)k);
  memcpy(n->ids, ids, sizeof(int) * (size_t)k);
  n->nids = k;
}

static tm_node *parse_if(parser *p, int line) {
  tm_node *n = mk(p, N_IF, line);
  n->a = parse_tuple_expr(p);
  expect_bend(p);
  static const char *const ends[] = {"elif", "else", "endif", NULL};
  int w;
  n->b = parse_body(p, ends, &w);
  p->pos += 2; /* BBEGIN name */
  if (w == 0) {
    n->c = parse_if(p, cur(p)->line);
    return n;
  }
  if (w == 1) {
    expect_bend(p);
    static const char *const ends2[] = {"endif", NULL};
    n->c = parse_body(p, ends2, &w);
    p->pos += 2;
  }
  expect_bend(p);
  return n;
}

static tm_node *parse_for(parser *p, int line) {
  tm_node *n = mk(p, N_FOR, line);
  parse_targets(p, n);
  if (!is_name(cur(p), "in")) perr(p, cur(p)->line, "expected 'in' in for loop");
  p->pos++;
  /* the iterable: jinja parses it without a conditional expression so that `if` filters the loop */
  n->a = parse_expr_noif(p);
  if (is_op(cur(p), ',')) perr(p, cur(p)->line, "tuple iterables are not supported");
  if (is_name(cur(p), "if")) {
    p->pos++;
    n->d = parse_expr(p);
  }
  int recursive = 0;
  if (is_name(cur(p), "recursive")) {
    recursive = 2;
    p->pos++;
  }
  expect_bend(p);
  static const char *const ends[] = {"endfor", "else", NULL};
  int w;
  n->b = parse_body(p, ends, &w);
  p->pos += 2;
  if (w == 1) {
    expect_bend(p);
    static const char *const ends2[] = {"endfor", NULL};
    n->c = parse_body(p, ends2, &w);
    n->flag = 1;
    p->pos += 2;
  }
  n->flag |= (uint8_t)recursive;
  expect_bend(p);
  return n;
}

static tm_node *parse_set(parser *p, int line) {
  tm_node *n = mk(p, N_SET, line);
  tm_sv name = expect_name(p);
  if (is_op(cur(p), '.')) { /* namespace attribute */
    p->pos++;
    n->flag = 1;
    n->id = intern(p, name);
    n->s = expect_name(p);
    expect_op(p, '=');
    n->a = parse_tuple_expr(p);
    expect_bend(p);
    return n;
  }
  p->pos--;
  parse_targets(p, n);
  if (is_op(cur(p), '=')) {
    p->pos++;
    n->a = parse_tuple_expr(p);
    expect_bend(p);
    return n;
  }
  /* block set: {% set x %}...{% endset %}, optionally {% set x | filter %} */
  if (n->nids != 1) perr(p, line, "block set takes one name");
  n->kind = N_SETBLOCK;
  tm_node *filt = NULL;
  while (is_op(cur(p), '|')) {
    p->pos++;
    filt = parse_filter(p, filt);
  }
  n->d = filt;
  expect_bend(p);
  static const char *const ends[] = {"endset", NULL};
  int w;
  n->b = parse_body(p, ends, &w);
  p->pos += 2;
  expect_bend(p);
  return n;
}

static void parse_params(parser *p, tm_node *n) {
  int ids[64];
  tm_node *defs[64];
  int k = 0;
  expect_op(p, '(');
  while (!is_op(cur(p), ')')) {
    if (k) expect_op(p, ',');
    if (is_op(cur(p), ')')) break;
    if (k == 64) perr(p, cur(p)->line, "too many parameters");
    ids[k] = intern(p, expect_name(p));
    defs[k] = NULL;
    if (is_op(cur(p), '=')) {
      p->pos++;
      defs[k] = parse_expr(p);
    }
    k++;
  }
  expect_op(p, ')');
  n->ids = palloc(p, sizeof(int) * (size_t)(k ? k : 1));
  n->defs = palloc(p, sizeof(tm_node *) * (size_t)(k ? k : 1));
  memcpy(n->ids, ids, sizeof(int) * (size_t)k);
  memcpy(n->defs, defs, sizeof(tm_node *) * (size_t)k);
  n->nids = k;
}

/* Does the subtree use the name `id`? (jinja2 lets a macro take extra arguments only when its body reads
 * varargs / kwargs.) */
static int uses_name(const tm_node *n, int id) {
  if (!n) return 0;
  if (n->kind == N_NAME && n->id == id) return 1;
  if (uses_name(n->a, id) || uses_name(n->b, id) || uses_name(n->c, id) || uses_name(n->d, id)) return 1;
  for (int i = 0; i < n->n; i++)
    if (uses_name(n->items[i], id)) return 1;
  for (int i = 0; i < n->nkw; i++)
    if (uses_name(n->kwv[i], id)) return 1;
  if (n->defs)
    for (int i = 0; i < n->nids; i++)
      if (uses_name(n->defs[i], id)) return 1;
  return 0;
}
static void macro_flags(parser *p, tm_node *n) {
  n->flag = (uint8_t)((uses_name(n->b, p->t->id_varargs) ? 1 : 0) | (uses_name(n->b, p->t->id_kwargs) ? 2 : 0));
}

static tm_node *parse_macro(parser *p, int line) {
  tm_node *n = mk(p, N_MACRO, line);
  n->s = expect_name(p);
  n->id = intern(p, n->s);
  parse_params(p, n);
  expect_bend(p);
  static const char *const ends[] = {"endmacro", NULL};
  int w;
  n->b = parse_body(p, ends, &w);
  macro_flags(p, n);
  p->pos += 2;
  if (cur(p)->type == T_NAME) p->pos++; /* {% endmacro name %} */
  expect_bend(p);
  return n;
}

static tm_node *parse_callblock(parser *p, int line) {
  tm_node *n = mk(p, N_CALLBLOCK, line);
  if (is_op(cur(p), '(')) parse_params(p, n);
  n->a = parse_expr(p);
  if (n->a->kind != N_CALL) perr(p, line, "expected call");
  expect_bend(p);
  static const char *const ends[] = {"endcall", NULL};
  int w;
  n->b = parse_body(p, ends, &w);
  macro_flags(p, n);
  n->flag |= 4; /* caller: jinja2 names it 'caller' in errors */
  p->pos += 2;
  expect_bend(p);
  return n;
}

static tm_node *parse_filterblock(parser *p, int line) {
  tm_node *n = mk(p, N_FILTERBLOCK, line);
  tm_node *f = NULL;
  f = parse_filter(p, NULL);
  while (is_op(cur(p), '|')) {
    p->pos++;
    f = parse_filter(p, f);
  }
  n->d = f;
  expect_bend(p);
  static const char *const ends[] = {"endfilter", NULL};
  int w;
  n->b = parse_body(p, ends, &w);
  p->pos += 2;
  expect_bend(p);
  return n;
}

static tm_node *parse_statement(parser *p) {
  int line = cur(p)->line;
  p->pos++; /* BBEGIN */
  tok *t = cur(p);
  if (t->type != T_NAME) perr(p, line, "tag name expected");
  p->pos++;
  enter(p);
  tm_node *n = NULL;
  if (is_name(t, "if")) n = parse_if(p, line);
  else if (is_name(t, "for")) n = parse_for(p, line);
  else if (is_name(t, "set")) n = parse_set(p, line);
  else if (is_name(t, "macro")) n = parse_macro(p, line);
  else if (is_name(t, "call")) n = parse_callblock(p, line);
  else if (is_name(t, "filter")) n = parse_filterblock(p, line);
  else if (is_name(t, "break") || is_name(t, "continue")) {
    n = mk(p, is_name(t, "break") ? N_BREAK : N_CONTINUE, line);
    expect_bend(p);
  } else if (is_name(t, "with")) {
    /* {% with a = 1, b = 2 %}...{% endwith %}: a new scope */
    n = mk(p, N_WITH, line);
    nvec vals = {0};
    int ids[64];
    int k = 0;
    while (cur(p)->type != T_BEND) {
      if (k) expect_op(p, ',');
      if (k == 64) perr(p, line, "too many with targets");
      ids[k++] = intern(p, expect_name(p));
      expect_op(p, '=');
      nv_push(p, &vals, parse_expr(p));
    }
    expect_bend(p);
    n->ids = palloc(p, sizeof(int) * (size_t)(k ? k : 1));
    memcpy(n->ids, ids, sizeof(int) * (size_t)k);
    n->nids = k;
    n->items = vals.v;
    n->n = vals.n;
    static const char *const ends[] = {"endwith", NULL};
    int w;
    n->b = parse_body(p, ends, &w);
    p->pos += 2;
    expect_bend(p);
  } else if (is_name(t, "block")) {
    /* a block in a template without inheritance renders in place */
    expect_name(p);
    if (is_name(cur(p), "scoped") || is_name(cur(p), "required")) p->pos++;
    expect_bend(p);
    static const char *const ends[] = {"endblock", NULL};
    int w;
    n = parse_body(p, ends, &w);
    p->pos += 2;
    if (cur(p)->type == T_NAME) p->pos++;
    expect_bend(p);
  } else if (is_name(t, "generation")) {
    /* transformers' AssistantTracker: renders its body unchanged */
    expect_bend(p);
    static const char *const ends[] = {"endgeneration", NULL};
    int w;
    n = parse_body(p, ends, &w);
    p->pos += 2;
    expect_bend(p);
  } else {
    perr(p, line, "Encountered unknown tag '%.*s'.", (int)(t->s.n > 40 ? 40 : t->s.n), t->s.p);
  }
  leave(p);
  return n;
}

/* Parse statements until a block tag named in `ends` (left unconsumed; *which = its index) or EOF
 * (ends == NULL). */
static tm_node *parse_body(parser *p, const char *const *ends, int *which) {
  tm_node *body = mk(p, N_BODY, cur(p)->line);
  nvec v = {0};
  int start_line = cur(p)->line;
  for (;;) {
    tok *t = cur(p);
    if (t->type == T_EOF) {
      if (ends) perr(p, start_line, "unexpected end of template, expected '%s'", ends[0]);
      break;
    }
    if (t->type == T_TEXT) {
      tm_node *x = mk(p, N_TEXT, t->line);
      x->s = t->s;
      nv_push(p, &v, x);
      p->pos++;
      continue;
    }
    if (t->type == T_VBEGIN) {
      p->pos++;
      tm_node *x = mk(p, N_OUT, t->line);
      x->a = parse_tuple_expr(p);
      if (cur(p)->type != T_VEND) {
        char b[64];
        perr(p, cur(p)->line, "expected end of print statement, got %s", tokdesc(cur(p), b, sizeof b));
      }
      p->pos++;
      nv_push(p, &v, x);
      continue;
    }
    if (t->type == T_BBEGIN) {
      if (ends) {
        int w = at_block_named(p, ends);
        if (w >= 0) {
          *which = w;
          break;
        }
      }
      tok *nm = peek(p, 1);
      static const char *const stray[] = {"endif", "endfor", "else", "elif", "endset", "endmacro", "endcall",
                                          "endfilter", "endgeneration", "endwith", "endblock", NULL};
      for (int i = 0; stray[i]; i++)
        if (is_name(nm, stray[i])) perr(p, t->line, "Encountered unknown tag '%s'.", stray[i]);
      nv_push(p, &v, parse_statement(p));
      continue;
    }
    char b[64];
    perr(p, t->line, "unexpected %s", tokdesc(t, b, sizeof b));
  }
  body->items = v.v;
  body->n = v.n;
  return body;
}

int tm_parse(struct ig_tmpl *t, const char *src, size_t len, char *err, size_t errlen) {
  parser p;
  memset(&p, 0, sizeof p);
  p.t = t;
  p.ar = &t->arena;
  p.err = err;
  p.errlen = errlen;
  int rc = setjmp(p.jb);
  if (rc) return rc;
  if (!ig_utf8_valid(src, len)) perr(&p, 1, "the template is not valid UTF-8");
  /* normalize newlines (\r\n, \r -> \n) and drop one trailing newline, as jinja2's lexer does */
  char *s = palloc(&p, len + 1);
  size_t n = 0;
  for (size_t i = 0; i < len; i++) {
    if (src[i] == '\r') {
      s[n++] = '\n';
      if (i + 1 < len && src[i + 1] == '\n') i++;
    } else
      s[n++] = src[i];
  }
  if (n && s[n - 1] == '\n') n--;
  s[n] = 0;
  p.src = s;
  p.len = n;
  t->id_loop = intern_c(&p, "loop");
  t->id_caller = intern_c(&p, "caller");
  t->id_varargs = intern_c(&p, "varargs");
  t->id_kwargs = intern_c(&p, "kwargs");
  lex(&p);
  int w;
  t->root = parse_body(&p, NULL, &w);
  return 0;
}
