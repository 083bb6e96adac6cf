/* Private: the stages of building a tokenizer from parsed JSON (tok_build.c,
 * tok_config.c). Each returns a status with a message naming the field. */
#ifndef MK_TOK_LOAD_H
#define MK_TOK_LOAD_H

#include "tok_internal.h"

#include <jansson.h>

/* Build everything from the parsed tokenizer.json `root` and the optional parsed
 * tokenizer_config.json `cfg` (NULL when absent). */
enum mk_status mk__tok_build(struct mk_tokenizer *t, json_t *root, json_t *cfg);

/* Compile the pre-tokenizer regex (JIT, match limits) into t->re / t->mctx. */
enum mk_status mk__tok_compile_regex(struct mk_tokenizer *t, const char *pattern);

/* bos/eos/chat template from tokenizer_config.json (may be NULL). */
enum mk_status mk__tok_read_config(struct mk_tokenizer *t, json_t *cfg);

/* Convert a byte-level spelled token ("Ġthe") to the bytes it stands for, as HF's
 * ByteLevel decoder does: if every character is in the byte alphabet, those bytes;
 * otherwise the text itself. Writes at most `n` bytes to out; returns the length. */
size_t mk__tok_unspell(const char *s, size_t n, char *out);

#endif
