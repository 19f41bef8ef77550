/* engine/jsonmask_int.h: what engine/jsonschema shares with engine/jsonmask and no one else needs: the
 * vocabulary trie's layout (the schema's mask walks the same trie) and a way to run ig_json_fsm over one
 * free-form JSON value of any type (a schema's {} or an object without "properties") rather than a document. */
#ifndef IG_ENGINE_JSONMASK_INT_H
#define IG_ENGINE_JSONMASK_INT_H
#include "engine/jsonmask.h"

/* Deepest trie node. Longer tokens (a handful in real vocabularies: runs of spaces or dashes) are kept aside
 * and tried one by one, so the walk's state stack is a fixed array on the C stack. */
#define IG_JSON_TRIE_DEPTH 128

struct ig_json_vocab {
  int n_vocab;
  uint32_t n_nodes; /* node 0 is the root (the empty string); the others follow in depth-first preorder */
  uint8_t *byte; /* [n_nodes] the byte leading into node i */
  uint8_t *depth; /* [n_nodes] its depth, 1..IG_JSON_TRIE_DEPTH (the root's is 0) */
  uint32_t *next; /* [n_nodes] the first node after node i's subtree */
  uint32_t *first_tok; /* [n_nodes + 1] the tokens ending at node i are ids[first_tok[i] .. first_tok[i + 1]) */
  int32_t *ids;
  int n_long; /* tokens longer than IG_JSON_TRIE_DEPTH */
  int32_t *long_ids; /* [n_long] */
  size_t *long_off; /* [n_long + 1] token k's bytes: long_bytes[long_off[k] .. long_off[k + 1]) */
  unsigned char *long_bytes;
};

/* The fsm's state inside a string (ig_json_fsm.state): a plain printable ASCII byte other than '"' and '\\'
 * changes nothing there, so callers may skip the step for it. */
#define IG_JSON_FSM_IN_STRING 7

/* The eos ids (out-of-range ones ignored) allowed exactly when the document is done: how the count changes. */
static inline int ig_json_mark_eos(const ig_json_vocab *v, const int32_t *eos, int n_eos, int done, uint8_t *allowed) {
  int count = 0;
  for (int k = 0; k < n_eos; k++) {
    int32_t e = eos[k];
    if (e < 0 || e >= v->n_vocab || allowed[e] == done) continue;
    allowed[e] = (uint8_t)done;
    count += done ? 1 : -1;
  }
  return count;
}

/* The whitespace gap between two tokens (ig_json_fsm.ws, and the schema recognizer's own): empty, " ", or "\n"
 * then at most max_indent bytes of spaces/tabs, max_indent = ig_json_max_indent(d) for the d containers open in
 * the whole document at the gap (a schema's and a free-form value's together). The state is 0 (empty),
 * IG_JSON_WS_SPACE, or IG_JSON_WS_NL + k after the newline and k indent bytes. c is one of ' ', '\t', '\n',
 * '\r'; returns 0 when the gap may go on with it, -1 when not. A byte other than whitespace ends the gap (the
 * caller zeroes it), so d never changes within a gap. */
static inline unsigned ig_json_max_indent(unsigned d) {
  return d >= IG_JSON_MAX_INDENT / IG_JSON_INDENT_PER_LEVEL ? IG_JSON_MAX_INDENT : IG_JSON_INDENT_PER_LEVEL * d;
}

enum { IG_JSON_WS_SPACE = 1, IG_JSON_WS_NL = 2 };
static inline int ig_json_ws_step(uint8_t *ws, unsigned c, unsigned max_indent) {
  unsigned w = *ws;
  if (w == 0) {
    if (c == ' ') return *ws = IG_JSON_WS_SPACE, 0;
    if (c == '\n') return *ws = IG_JSON_WS_NL, 0;
    return -1;
  }
  if (w < IG_JSON_WS_NL || (c != ' ' && c != '\t') || w >= IG_JSON_WS_NL + max_indent) return -1;
  *ws = (uint8_t)(w + 1);
  return 0;
}

/* Starts one JSON value of any type (optional leading whitespace first). It is complete (ig_json_fsm_complete)
 * once an object, array, string or literal closes; a number never completes by itself: it ends at the first
 * byte that cannot continue it, which the fsm refuses; ig_json_fsm_number_done says whether it may end there. */
void ig_json_fsm_init_value(ig_json_fsm *f);
/* One byte: 0 when it keeps the text valid, -1 when not (*f is then unspecified). base: the containers open
 * around the value (an enclosing schema's), added to the fsm's own depth for the indentation a gap allows. */
int ig_json_fsm_step(ig_json_fsm *f, unsigned c, unsigned base);
/* 1 when the value started by ig_json_fsm_init_value is a number that is whole as it stands. */
int ig_json_fsm_number_done(const ig_json_fsm *f);

#endif
