/* engine/jsonmask: JSON mode, i.e. generation constrained so that the output is exactly one JSON object
 * (RFC 8259, strict: no comments, trailing commas, single quotes, NaN; strings are valid UTF-8).
 *
 * ig_json_fsm is a byte-level recognizer of the prefixes of such documents: a plain 8-byte struct (the
 * container stack is a bitset, depth <= IG_JSON_MAX_DEPTH), so trying a token is "copy the state, feed the
 * token's bytes". ig_json_vocab holds the tokenizer's vocabulary as a byte trie; ig_json_allowed walks it once
 * per step, carrying one state per trie depth and pruning a subtree at its first invalid byte, and says which
 * tokens keep the output valid. Whitespace outside strings has a fixed shape so that a model can neither loop
 * nor pad on it: a gap (before the top-level '{', or between two tokens) is empty, exactly one space, or one
 * "\n" followed by at most min(IG_JSON_MAX_INDENT, IG_JSON_INDENT_PER_LEVEL * d) spaces and/or tabs, d being
 * the number of containers (objects and arrays) open at the gap (pretty-printed indentation: none before the
 * top-level '{', up to 4 inside it, 8 one level down, ...; a gap before a closer is still inside its container);
 * nothing else ("\r", two newlines, spaces before a newline, a tab alone are refused). After the closing '}'
 * only an eos token may come. */
#ifndef IG_ENGINE_JSONMASK_H
#define IG_ENGINE_JSONMASK_H
#include <stddef.h>
#include <stdint.h>

#define IG_JSON_MAX_DEPTH 32  /* nesting (objects + arrays) beyond is rejected */
#define IG_JSON_MAX_INDENT 20      /* spaces/tabs allowed after the one "\n" of a whitespace gap, at most */
#define IG_JSON_INDENT_PER_LEVEL 4 /* ... and at most this many per open container */

typedef struct ig_json_fsm {
  uint32_t arrays; /* bit i: the container at level i is an array (1) or an object (0) */
  uint8_t state;   /* where in the grammar we are (an enum private to jsonmask.c) */
  uint8_t depth;   /* open containers, 0..IG_JSON_MAX_DEPTH */
  uint8_t ws;      /* the whitespace gap so far (IG_JSON_WS_*, jsonmask_int.h): 0 none, 1 " ", 2 + k "\n" + k indent */
  uint8_t aux;     /* detail of the state: literal position, UTF-8 bytes pending, key or value string */
} ig_json_fsm;

/* Starts a document: optional leading whitespace, then '{'. */
void ig_json_fsm_init(ig_json_fsm *f);
/* Feeds n bytes. Returns 0 when everything fed so far is still a prefix of a valid document, -1 otherwise
 * (*f is then unspecified: callers that want to try bytes feed a copy). Once the top-level object is closed
 * any further byte, whitespace included, is invalid. */
int ig_json_fsm_feed(ig_json_fsm *f, const unsigned char *s, size_t n);
/* 1 when the top-level object has been closed (the document is complete), 0 otherwise. */
int ig_json_fsm_complete(const ig_json_fsm *f);

typedef struct ig_json_vocab ig_json_vocab;

/* Builds the trie of a vocabulary: tok_bytes[i] / tok_len[i] are the bytes token i adds to the text;
 * special[i] != 0 (special may be NULL: none) marks a special/control token, never allowed except as eos.
 * The bytes are copied. *out is freed with ig_json_vocab_free. Returns 0, -EINVAL (n_vocab < 0) or -ENOMEM. */
int ig_json_vocab_build(ig_json_vocab **out, int n_vocab, const unsigned char *const *tok_bytes, const size_t *tok_len,
                        const unsigned char *special);
void ig_json_vocab_free(ig_json_vocab *v);
/* The most bytes any token adds (the longest token). */
size_t ig_json_vocab_max_len(const ig_json_vocab *v);
/* Fills allowed[0..n_vocab): 1 for every token whose bytes keep *f valid (never for tokens of zero length or
 * special ones), 0 otherwise. The eos ids (n_eos of them; ids out of range are ignored) are allowed exactly
 * when ig_json_fsm_complete(f), and once complete nothing else is. Returns how many tokens are allowed: 0
 * means the caller must stop. Read-only on v: threads may share a vocabulary. */
int ig_json_allowed(const ig_json_vocab *v, const ig_json_fsm *f, const int32_t *eos, int n_eos, uint8_t *allowed);

/* The same mask in pieces, for threads: the trie's nodes cut into segments of about 1/n of them each (whole
 * top-level subtrees, or, for a large one, its first node and runs of its children: `parent` is then that node,
 * whose byte the walk steps first). ig_json_vocab_segments: the count, *out malloc'd (never empty: an empty trie
 * gives one empty segment), or -ENOMEM. With `allowed` cleared first, ig_json_allowed_seg over every segment
 * (any order, on any threads: segments write disjoint entries) and then ig_json_allowed_rest (the tokens too long
 * for the trie, and the eos ids) give exactly ig_json_allowed's mask; the counts they return add up to its count. */
typedef struct ig_json_seg {
  uint32_t lo, hi; /* trie nodes [lo, hi) */
  uint32_t parent; /* 0, or the top-level node whose subtree holds [lo, hi) */
} ig_json_seg;
int ig_json_vocab_segments(const ig_json_vocab *v, int n, ig_json_seg **out);
int ig_json_allowed_seg(const ig_json_vocab *v, const ig_json_fsm *f, const ig_json_seg *g, uint8_t *allowed);
int ig_json_allowed_rest(const ig_json_vocab *v, const ig_json_fsm *f, const int32_t *eos, int n_eos, uint8_t *allowed);

#endif
