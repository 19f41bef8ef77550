/* tok/tok: Hugging Face tokenizer.json (+ tokenizer_config.json) in C: load, encode, decode, and an
 * incremental detokenizer for streaming. Results match the Rust `tokenizers` library id for id.
 * A loaded ig_tok is immutable: any number of threads may encode/decode with it at once; all per-call
 * state lives in the call (or in the caller's ig_tok_detok). */
#ifndef IG_TOK_TOK_H
#define IG_TOK_TOK_H
#include <stddef.h>
#include <stdint.h>

#include "util/str.h"

typedef struct ig_tok ig_tok;

enum {
  IG_TOK_OK = 0,
  IG_TOK_ERR_IO = -1,     /* file missing or unreadable */
  IG_TOK_ERR_PARSE = -2,  /* bad JSON or unsupported tokenizer component */
  IG_TOK_ERR_NOMEM = -3,
  IG_TOK_ERR_ARG = -4,
};

/* ---- loading ---------------------------------------------------------------------------------------- */
/* Loads DIR/tokenizer.json and, when present, DIR/tokenizer_config.json and DIR/chat_template.jinja.
 * On error returns a negative IG_TOK_ERR_* and writes a one-line reason into err. Free with ig_tok_free. */
int ig_tok_load(ig_tok **out, const char *dir, char *err, size_t errlen);
/* Same from explicit paths; config_path may be NULL. */
int ig_tok_load_files(ig_tok **out, const char *tokenizer_json, const char *config_path, char *err, size_t errlen);
/* From a tokenizer.json held in memory (config_json may be NULL). */
int ig_tok_load_mem(ig_tok **out, const char *json, size_t len, const char *config_json, size_t config_len,
                    char *err, size_t errlen);
void ig_tok_free(ig_tok *t);

/* ---- encode / decode -------------------------------------------------------------------------------- */
typedef struct ig_tok_enc {
  int32_t *ids;
  uint32_t *offsets; /* 2 per token: [start, stop) byte offsets into the input text; NULL unless asked for */
  size_t n, cap;
} ig_tok_enc;

/* Encodes text[0..len). add_special: apply the post-processor (BOS/EOS etc.) as HF's add_special_tokens.
 * Added/special token strings inside the text are always recognised, as in HF. Bytes that are not valid
 * UTF-8 are read as U+FFFD (as a lossy decode would). out is reset first and owned by the caller
 * (ig_tok_enc_free). Returns 0, IG_TOK_ERR_NOMEM, or IG_TOK_ERR_ARG (input over 1 GiB, or a regex
 * engine limit hit on a pathological input). */
int ig_tok_encode(const ig_tok *t, const char *text, size_t len, int add_special, int want_offsets, ig_tok_enc *out);
void ig_tok_enc_free(ig_tok_enc *e);

/* Decodes ids as HF's tokenizer.decode(ids, skip_special_tokens). Ids without a token are skipped.
 * Returns a malloc'd NUL-terminated valid UTF-8 string (caller frees) or NULL when out of memory. */
char *ig_tok_decode(const ig_tok *t, const int32_t *ids, size_t n, int skip_special, size_t *len_out);
/* Same, appending to an ig_str. Returns 0 or IG_TOK_ERR_NOMEM. */
int ig_tok_decode_to(const ig_tok *t, const int32_t *ids, size_t n, int skip_special, ig_str *out);

/* ---- vocabulary ------------------------------------------------------------------------------------- */
int32_t ig_tok_vocab_size(const ig_tok *t); /* HF get_vocab_size(with_added_tokens=True) */
/* The token string as tokenizer.json spells it (e.g. "Ġthe", "▁the", "<0x0A>"); NULL for an unused id. */
const char *ig_tok_id_to_piece(const ig_tok *t, int32_t id, size_t *len);
int32_t ig_tok_piece_to_id(const ig_tok *t, const char *piece, size_t len); /* -1 when absent */
/* Appends the bytes token id adds to a text after other tokens, as they are (a piece of a UTF-8 character stays
 * partial; constrained generation follows the text byte by byte). 0, -1 when the token adds nothing of its own
 * there, or IG_TOK_ERR_NOMEM. */
int ig_tok_raw_piece(const ig_tok *t, int32_t id, ig_str *out);
int ig_tok_is_special(const ig_tok *t, int32_t id);
int ig_tok_is_added(const ig_tok *t, int32_t id);

/* ---- tokenizer_config.json -------------------------------------------------------------------------- */
/* Token strings (NULL when not configured) and their ids (-1 when absent). "AddedToken" dicts
 * ({"content": ...}) are read as their content. */
const char *ig_tok_bos_token(const ig_tok *t);
const char *ig_tok_eos_token(const ig_tok *t);
const char *ig_tok_pad_token(const ig_tok *t);
const char *ig_tok_unk_token(const ig_tok *t);
int32_t ig_tok_bos_id(const ig_tok *t);
int32_t ig_tok_eos_id(const ig_tok *t);
int32_t ig_tok_pad_id(const ig_tok *t);
int32_t ig_tok_unk_id(const ig_tok *t);
int ig_tok_add_bos(const ig_tok *t); /* add_bos_token: 1, 0, or -1 when the config does not say */
int ig_tok_add_eos(const ig_tok *t);
/* model_max_length, or 0 when absent or the "no limit" sentinel (>= 1e20). */
int64_t ig_tok_model_max_length(const ig_tok *t);
/* The chat template: chat_template.jinja when present, else the config's string, else the template
 * named "default" of a list (else the first one). NULL when none. */
const char *ig_tok_chat_template(const ig_tok *t);
/* A named template of the list form (e.g. "tool_use"); NULL when absent. */
const char *ig_tok_chat_template_named(const ig_tok *t, const char *name);
/* Every "*_token" string of the config (bos_token, eos_token, unk_token, pad_token, ...), for templates
 * that read them as globals. Index 0..n-1; returns the value and sets *name. */
size_t ig_tok_n_config_tokens(const ig_tok *t);
const char *ig_tok_config_token(const ig_tok *t, size_t i, const char **name);

/* ---- incremental detokenizer ------------------------------------------------------------------------ */
/* One per request. Feeds ids one at a time and yields the new text, TGI's way: it decodes the window
 * ids[prefix_offset..] and returns what extends decode(ids[prefix_offset..read_offset]), holding the
 * text back while it ends in U+FFFD (a character split across byte tokens). Pieces are valid UTF-8. */
typedef struct ig_tok_detok {
  const ig_tok *tok;
  int skip_special;
  int32_t *ids;
  size_t n, cap;
  size_t prefix_offset, read_offset;
} ig_tok_detok;

void ig_tok_detok_init(ig_tok_detok *d, const ig_tok *t, int skip_special);
/* Optional: the prompt's last ids as context (TGI starts with the last 5 prompt tokens), so the first
 * generated piece gets its leading space right with SentencePiece-style decoders. */
int ig_tok_detok_prime(ig_tok_detok *d, const int32_t *prompt, size_t n);
/* Appends the new piece (possibly nothing) to out. Returns 0 or IG_TOK_ERR_NOMEM. */
int ig_tok_detok_push(ig_tok_detok *d, int32_t id, ig_str *out);
/* At the end of generation: appends whatever was held back. */
int ig_tok_detok_flush(ig_tok_detok *d, ig_str *out);
void ig_tok_detok_free(ig_tok_detok *d);

#endif
