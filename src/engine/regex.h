/* engine/regex: generation constrained by a regular expression (TGI's grammar {"type": "regex", "value": P}: the
 * whole generated text must match P, as Python's re.fullmatch).
 *
 * A pattern is compiled once (ig_regex_compile, on the server's side, so that an unsupported pattern is a 422
 * with its reason) into a DFA over UTF-8 bytes. Every state of it is live: from any state some continuation
 * reaches an accepting one (states that cannot are pruned; a step into one is -1), so every byte a mask allows
 * can be completed into a matching text: no dead ends. The DFA accepts only valid UTF-8 (no overlong forms, no
 * surrogates, nothing past U+10FFFF). A state is a number: copying it is the whole "copy the state".
 *
 * Syntax (Python's re, as TGI / outlines users write it; anything else is refused with a message naming the
 * construct and its byte offset, e.g. "at offset 7: backreferences are not supported"):
 * - literals (any UTF-8 code point; ']' '}' and a '{' that does not start a valid quantifier are literals);
 *   escapes: \\ \. \* ... (an escaped ASCII punctuation or non-ASCII character is itself), \n \t \r \f \v \a,
 *   \0 and octal \ooo, \xhh, \uhhhh, \U00hhhhhh (a surrogate is refused);
 * - \d = [0-9], \w = [A-Za-z0-9_], \s = [ \t\n\r\f\v]: the ASCII meanings (Python's re.ASCII), not Python's
 *   default Unicode ones; \D \W \S are their complements over all code points;
 * - classes [...]: ranges (of any code points), negation [^...] (over all code points: multi-byte ones
 *   included), escapes inside (\b is a backspace there), ']' first is literal, '-' first or last is literal;
 * - '.': any code point but "\n";
 * - groups ( ), (?: ), (?P<name> ), (?<name> ) (all plain groups: nothing is captured), comments (?#...);
 * - alternation |; quantifiers * + ? {n} {n,} {,m} {n,m} {,} and their lazy forms (*? +? ?? {n,m}?: the same
 *   language);
 * - '^' at the very start of the pattern or of a top-level alternative, '$' at the very end of either: accepted
 *   and ignored (the match is of the whole text anyway).
 * Refused: '^' / '$' elsewhere, \b \B \A \Z \z \G, lookarounds, backreferences (\1, (?P=name)), inline flags
 * ((?i) ...), conditionals, atomic groups, possessive quantifiers (*+ ...), \N{...}, unknown escapes (\q),
 * nothing to repeat ("*a"), multiple repeat ("a**"), invalid UTF-8 in the pattern, a language with no text in
 * it ("the pattern matches nothing").
 * Bounded work and memory: a pattern of at most 65536 bytes, repetition counts of at most 1000, groups nested at
 * most 256 deep, at most 200000 NFA states once counted repetitions are expanded, at most 65536 DFA states, and a
 * cap on the subset construction's work and memory (a pattern past it is "too complex"). */
#ifndef IG_ENGINE_REGEX_H
#define IG_ENGINE_REGEX_H
#include <stddef.h>
#include <stdint.h>

#define IG_REGEX_MAX_PATTERN 65536 /* bytes */
#define IG_REGEX_MAX_COUNT 1000    /* n and m of {n,m} */
#define IG_REGEX_MAX_NEST 256      /* groups open at once */
#define IG_REGEX_MAX_NFA 200000    /* NFA states after expanding counted repetitions */
#define IG_REGEX_MAX_STATES 65536  /* DFA states */

typedef struct ig_regex ig_regex; /* immutable once compiled; threads may share it */

/* Compiles pat[0..len) (not NUL-terminated necessarily). 0 and *out, or -1 with a one-line reason in err
 * ("at offset 7: backreferences are not supported"). Bounded work and memory for any input. */
int ig_regex_compile(const char *pat, size_t len, ig_regex **out, char *err, size_t errlen);
/* The same with a smaller cap on the DFA's states (1..IG_REGEX_MAX_STATES; others mean the default), and a cap on
 * the construction's work smaller in proportion: for patterns inside a schema, of which there may be many. With
 * byte_ok (256 flags; NULL: all) the text may hold only the bytes flagged: a step on another is -1, and states
 * are live only through allowed bytes ("the pattern matches nothing" when no allowed text matches). */
int ig_regex_compile_max(const char *pat, size_t len, uint32_t max_states, const uint8_t *byte_ok, ig_regex **out,
                         char *err, size_t errlen);
void ig_regex_free(ig_regex *r); /* NULL is fine */
uint32_t ig_regex_start(const ig_regex *r);
/* The state after byte c from state s, or -1 when no text starting with (text so far + c) can match. */
int32_t ig_regex_step(const ig_regex *r, uint32_t s, unsigned char c);
int ig_regex_accepting(const ig_regex *r, uint32_t s); /* the text so far matches the whole pattern */
uint32_t ig_regex_n_states(const ig_regex *r);
/* The states that no text of at most L bytes tells apart (after every such text both accept or neither does, and
 * the same texts are refused) share a representative: rep[s] (n_states entries) is the smallest state equivalent to
 * s. At most L rounds of partition refinement over the byte classes; 0, or -1 (rep left the identity) when that
 * would visit more than *budget transitions or memory fails. The transitions visited are taken off *budget. */
int ig_regex_fold(const ig_regex *r, uint32_t L, uint64_t *budget, uint32_t *rep);

#endif
