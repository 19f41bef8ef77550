/* engine/jsonschema: generation constrained by a JSON Schema (TGI's grammar {"type": "json", "value": schema},
 * OpenAI's response_format {"type": "json_schema", ...}, and the tool calls built on them).
 *
 * A schema is compiled once (ig_jschema_compile, on the server's side, so that an unsupported schema is a 422
 * with its reason) into a graph of nodes. Generation then walks it with ig_jsm, a fixed-size state: a stack of
 * frames, one per open value, each naming its node and where in it the text is. Like ig_json_fsm
 * (engine/jsonmask.h) it recognizes exactly the prefixes of the documents the schema accepts, so every token the
 * mask allows can be completed into a valid document: no dead ends. Trying a token is "copy the state, feed
 * its bytes"; ig_jschema_allowed walks the vocabulary's byte trie once per step.
 *
 * What a schema may use (anything else, or a malformed schema, is refused with a message naming the keyword):
 * - "type": "object" | "array" | "string" | "number" | "integer" | "boolean" | "null", or a list of them;
 * - objects: "properties" (the output lists them in the schema's order, each at most once, each key written as
 *   its name, unescaped: names that would need escapes are refused), "required" (those must appear; a name not
 *   in "properties" is refused), "additionalProperties": false or absent (no other keys are generated; true or a
 *   schema is refused when "properties" is given). An object without "properties" is any JSON object, or only
 *   {} with "additionalProperties": false.
 * - arrays: "items" (absent or true: any JSON values; false: none), "minItems", "maxItems";
 * - strings: "minLength" / "maxLength" (in code points: a \uXXXX escape, or a surrogate pair of them, is one);
 *   "pattern" (JSON Schema's search: the string contains a match; a leading '^' / trailing '$' anchor it; read in
 *   engine/regex.h's syntax; not beside minLength/maxLength, nor with anchors and a '|' outside groups): the
 *   string's decoded characters run through the pattern's automaton, the closing quote comes only when they
 *   match, its escapes are the short ones (\" \\ \/ \b \f \n \r \t; no \u), each only where it keeps a match
 *   reachable, and a pattern no such string can match is refused; "format" is refused. A maximum (items,
 *   length) of 65535 or more is none; a minimum that large is refused.
 * - "enum" / "const" (of any JSON values, beside nothing but "type", which filters them): the output is one of
 *   the values exactly as jansson writes it compactly with sorted keys (no whitespace inside);
 * - numbers: JSON's number grammar ("integer": no fraction or exponent); "minimum"/"maximum" and friends are
 *   refused;
 * - "anyOf" / "oneOf" (beside nothing but annotations) whose alternatives can be told apart by their first byte
 *   (e.g. a type and null), or are all objects whose first property has one name in every alternative and a
 *   distinct "const" (or one-value "enum") string per alternative, required: a tagged union, as tool calls are.
 *   A number and an integer among the alternatives (or in a "type" list) are a number; in a "oneOf" they are
 *   refused. The alternatives being disjoint, "oneOf" is "anyOf".
 * - without "type", keywords of one type imply it ("properties": an object); keywords of several are refused;
 * - "$ref" to "#", "#/$defs/NAME" or "#/definitions/NAME", beside nothing but annotations (recursion is allowed;
 *   the depth of the output is capped by IG_JSM_MAX_DEPTH: a value is started only when it can be completed
 *   within the frames left, and a schema whose documents cannot fit is refused);
 * - annotations are ignored: "title", "description", "$schema", "$id", "examples", "default", "$comment",
 *   "deprecated", "readOnly", "writeOnly"; and "$defs"/"definitions" themselves.
 * - {} or true: any JSON value. A schema of {"type": "object"} alone is JSON mode (ig_json_fsm's fast path).
 *   Free-form values (these, an object without "properties", items without "items") run an embedded
 *   ig_json_fsm in one frame: their own nesting is capped by IG_JSON_MAX_DEPTH.
 * Bounded work: at most 4096 nodes, 256 properties per object, 64 alternatives per union, 16384 enum values and
 * 64 KB of enum text in all, schema nesting 64, 32 patterns of at most 8192 automaton states each; $ref chains
 * that name no value are refused.
 * Whitespace outside strings is allowed as ig_json_fsm allows it: a gap before the root value or between two
 * tokens is empty, one space, or "\n" then at most min(IG_JSON_MAX_INDENT, IG_JSON_INDENT_PER_LEVEL * d)
 * spaces/tabs, d being the containers (objects, arrays) open in the whole document at the gap: none before the
 * root value; inside a free-form value, the schema's open containers plus the value's own. */
#ifndef IG_ENGINE_JSONSCHEMA_H
#define IG_ENGINE_JSONSCHEMA_H
#include "engine/jsonmask.h"
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define IG_JSM_MAX_DEPTH 16 /* open values (objects, arrays, strings, ...) beyond are not generated */

typedef struct ig_jschema ig_jschema; /* immutable once compiled; reference-counted; threads may share it */

/* Compiles `schema`. 0 and *out (refs = 1), or -1 with a one-line reason in err ("properties.age: 'minimum' is
 * not supported"). Never reads past the value; bounded work for any input (node count and nesting capped). */
int ig_jschema_compile(const json_t *schema, ig_jschema **out, char *err, size_t errlen);
/* A regular expression instead of a schema (TGI's grammar {"type": "regex", "value": pattern}): the output is
 * a text the whole pattern matches (engine/regex.h says which syntax). The same state, masks and cache as a
 * schema's; not JSON at all. 0 and *out (refs = 1), or -1 with a one-line reason in err. */
int ig_jschema_compile_regex(const char *pattern, size_t len, ig_jschema **out, char *err, size_t errlen);
/* The schema of JSON mode: any JSON object. 0 or -ENOMEM. */
int ig_jschema_any_object(ig_jschema **out);
ig_jschema *ig_jschema_ref(ig_jschema *s);
void ig_jschema_unref(ig_jschema *s); /* NULL is fine */
/* 1 when a and b accept exactly the same documents because they were compiled from equal schemas (so states
 * and masks of one hold for the other), 0 otherwise. Equal: the same JSON, keys in any order except those of
 * "properties" (their order is the output's). */
int ig_jschema_same(const ig_jschema *a, const ig_jschema *b);

/* The state: plain data, compared with memcmp (the bytes past the live frames are always zero), so it can key
 * a cache of masks. 196 of the 256 bytes are used (a 4-byte header and 16 frames of 12). */
typedef struct ig_jsm {
  uint8_t opaque[256];
} ig_jsm;

void ig_jsm_init(ig_jsm *m, const ig_jschema *s);
/* Feeds n bytes: 0 while the text is still a prefix of a document the schema accepts, -1 otherwise (*m then
 * refuses everything and is never complete). */
int ig_jsm_feed(ig_jsm *m, const ig_jschema *s, const unsigned char *b, size_t n);
/* 1 when the text fed so far is a whole document the schema accepts (EOS may come now), else 0. A number at
 * the top level may be complete and still take more digits. */
int ig_jsm_complete(const ig_jsm *m, const ig_jschema *s);

/* The state as a key of a mask cache: the masks over tokens of at most max_len bytes are the same from *key as
 * from *m, and states that differ only in counts no such token can tell apart (code points of a string far from its
 * minLength/maxLength, items of an array far from minItems/maxItems) get the same key, so rows at different lengths
 * of long strings share their masks; a regex grammar's state (and a string pattern's) becomes the smallest state no
 * text of 128 bytes tells apart from it (for vocabularies whose tokens are at most that long), so counted repeats
 * far from their bounds share masks too. JSON mode's states are their own keys. */
void ig_jsm_cache_key(const ig_jsm *m, const ig_jschema *s, int max_len, ig_jsm *key);

/* The mask: as ig_json_allowed, for the schema's state. allowed[i] = 1 for each token whose bytes keep the text a
 * prefix of an accepted document; the eos ids exactly when ig_jsm_complete. Returns how many are allowed. */
int ig_jschema_allowed(const ig_json_vocab *v, const ig_jschema *s, const ig_jsm *m, const int32_t *eos, int n_eos,
                       uint8_t *allowed);
/* The same in pieces (see ig_json_vocab_segments): allowed cleared, then every segment (threads may share the
 * work), then the rest; the counts add up. */
int ig_jschema_allowed_seg(const ig_json_vocab *v, const ig_jschema *s, const ig_jsm *m, const ig_json_seg *g,
                           uint8_t *allowed);
int ig_jschema_allowed_rest(const ig_json_vocab *v, const ig_jschema *s, const ig_jsm *m, const int32_t *eos,
                            int n_eos, uint8_t *allowed);

#endif
