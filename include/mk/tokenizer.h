/* megakernel — byte-level BPE tokenizer read from a Hugging Face tokenizer.json, and
 * the chat prompt renderer. Output is identical to the `tokenizers` package for the
 * files it accepts (Qwen2/Qwen3, Llama 3 style: optional NFC normalizer, a Split
 * pre-tokenizer with the file's own regex, ByteLevel, BPE without dropout/unk).
 *
 * Encode pipeline (as in HF): added tokens are split off first (honouring lstrip,
 * rstrip, single_word, normalized; special ones only when allowed; leftmost-longest
 * match like HF's Aho-Corasick; single_word's "word character" is a Unicode letter,
 * digit or '_'), then each other
 * piece is NFC-normalized (if the file says so), split by the regex, mapped to the
 * byte-level alphabet and merged by BPE rank. The post-processor (BOS) is NOT applied
 * by mk_tokenizer_encode: callers that want HF's `add_special_tokens=True` behaviour
 * prepend mk_tokenizer_bos_id() when mk_tokenizer_adds_bos() is true.
 *
 * Invalid UTF-8 input: mk_tokenizer_encode rejects it with MK_ERR_ARG and a message
 * naming the byte offset of the first bad byte ("text: invalid UTF-8 at byte N");
 * nothing is appended. (HF's Python API cannot take invalid UTF-8 at all.) Embedded
 * NUL bytes are valid text.
 *
 * NFC uses utf8proc's Unicode tables. HF's normalizer orders a few combining marks
 * newer than its own tables differently (e.g. U+034D U+09FE); there the ids follow
 * the Unicode standard, not HF (2 of 20,000 random oracle strings).
 *
 * Decoding yields bytes; where the ids' bytes are not valid UTF-8, mk_tokenizer_decode
 * replaces each maximal invalid subsequence with U+FFFD, exactly like HF's ByteLevel
 * decoder (Rust String::from_utf8_lossy). The streaming decoder does the same but holds
 * back an incomplete trailing character until it completes (or flush).
 *
 * Thread safety: a loaded tokenizer is immutable except for an internal word cache
 * guarded by a mutex (a busy cache is bypassed, never waited on): any number of threads
 * may encode/decode/render with one tokenizer concurrently. A mk_tok_stream belongs to
 * one thread.
 */
#ifndef MK_TOKENIZER_H
#define MK_TOKENIZER_H

#include "mk/mk.h"

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

struct mk_tokenizer;

/* Limits checked at load time (a file beyond them fails with MK_ERR_LIMIT). */
enum {
    MK_TOK_MAX_VOCAB = 4 * 1024 * 1024,  /* max id + 1 */
    MK_TOK_MAX_TOKEN_BYTES = 1024,       /* longest vocab / added token text */
};

/* Which chat template mk_tokenizer_chat_render() uses; detected at load from
 * tokenizer_config.json's chat_template text, else from the vocabulary. */
enum mk_chat_family {
    MK_CHAT_NONE = 0,  /* no template recognised: rendering fails with MK_ERR_UNSUPPORTED */
    MK_CHAT_CHATML,    /* Qwen2 / Qwen2.5 style <|im_start|>role\n...<|im_end|>\n        */
    MK_CHAT_QWEN3,     /* ChatML + Qwen3 <think> handling (enable_thinking)             */
    MK_CHAT_LLAMA3,    /* Llama 3.0: bos + <|start_header_id|>role<|end_header_id|>\n\n  */
    MK_CHAT_LLAMA31,   /* Llama 3.1/3.2/3.3: as 3.0 plus the default system block with
                          "Cutting Knowledge Date: December 2023\nToday Date: ..."    */
};
const char *mk_chat_family_name(enum mk_chat_family f); /* "none", "chatml", "qwen3", ... */

/* Load a tokenizer. `path` is a tokenizer.json file or a directory holding one; in
 * both cases a tokenizer_config.json next to it (optional) supplies bos_token,
 * eos_token, the chat template and added-token flags. Loading Qwen3's 11 MB file takes
 * ~0.2 s. On error returns the status with a message naming the file and field
 * (e.g. "tokenizer.json: model.merges[12]: token 'xq' not in vocab") and sets *out to
 * NULL. */
enum mk_status mk_tokenizer_load(const char *path, struct mk_tokenizer **out);

/* Load from in-memory JSON texts (config_json may be NULL). `what` names the source in
 * messages. Used by tests and the fuzzer; same rules as mk_tokenizer_load. */
enum mk_status mk_tokenizer_load_json(const char *tokenizer_json, size_t len,
                                      const char *config_json, size_t config_len,
                                      const char *what, struct mk_tokenizer **out);

void mk_tokenizer_free(struct mk_tokenizer *tok); /* NULL is fine */

/* A caller-owned growable id array. Zero-initialise it ({0}); encode appends to it
 * (so several calls can build one sequence); mk_ids_free releases it. */
struct mk_ids {
    int32_t *ids;
    size_t n, cap;
};
void mk_ids_free(struct mk_ids *ids);
/* Append one id (grows the array). MK_ERR_NOMEM on allocation failure. */
enum mk_status mk_ids_push(struct mk_ids *ids, int32_t id);

/* Encode `len` bytes of UTF-8 `text` (need not be NUL-terminated) and append the ids to
 * *out. allow_special: special added tokens written in the text ("<|im_end|>") become
 * their ids; otherwise they are tokenized as plain text (non-special added tokens, such
 * as Qwen's "<think>", are always matched, as in HF). On error *out keeps its previous
 * length: MK_ERR_ARG for invalid UTF-8 (offset in the message), MK_ERR_NOMEM. */
enum mk_status mk_tokenizer_encode(const struct mk_tokenizer *tok, const char *text,
                                   size_t len, bool allow_special, struct mk_ids *out);

/* Decode ids to text: a malloc'd NUL-terminated string in *out (length in *out_len,
 * may be NULL); the caller frees it. skip_special drops special added tokens (HF's
 * skip_special_tokens). MK_ERR_ARG names the position of an id outside
 * [0, vocab_size) or an unused id (a hole in the id space). */
enum mk_status mk_tokenizer_decode(const struct mk_tokenizer *tok, const int32_t *ids,
                                   size_t n, bool skip_special, char **out, size_t *out_len);

/* The raw bytes of one token after byte-level decoding (may be part of a UTF-8
 * character); NULL when id is out of range or unused. Points into the tokenizer. */
const char *mk_tokenizer_token_bytes(const struct mk_tokenizer *tok, int32_t id, size_t *len);

/* Id of an exact token string: an added token's content ("<|im_end|>") or a vocab
 * entry in its byte-level spelling ("Ġthe"). -1 when absent. */
int32_t mk_tokenizer_token_id(const struct mk_tokenizer *tok, const char *s);

int32_t mk_tokenizer_vocab_size(const struct mk_tokenizer *tok); /* max id + 1 */
bool mk_tokenizer_is_special(const struct mk_tokenizer *tok, int32_t id);
/* bos/eos from tokenizer_config.json (bos_token / eos_token); -1 when not set. */
int32_t mk_tokenizer_bos_id(const struct mk_tokenizer *tok);
int32_t mk_tokenizer_eos_id(const struct mk_tokenizer *tok);
/* True when HF's post-processor prepends BOS on encode(add_special_tokens=True)
 * (Llama 3: yes; Qwen: no). */
bool mk_tokenizer_adds_bos(const struct mk_tokenizer *tok);
enum mk_chat_family mk_tokenizer_chat_family(const struct mk_tokenizer *tok);

/* ---- streaming decode ------------------------------------------------------------ */

/* Turns ids into text as they are generated, never emitting half a UTF-8 character:
 * bytes of an incomplete character are held back until it completes. Invalid
 * sequences become U+FFFD as in mk_tokenizer_decode, so the concatenation of all
 * outputs plus the flush equals mk_tokenizer_decode of all ids. */
struct mk_tok_stream;
enum mk_status mk_tok_stream_new(const struct mk_tokenizer *tok, bool skip_special,
                                 struct mk_tok_stream **out);
void mk_tok_stream_free(struct mk_tok_stream *s);
/* Push one id. *text points to the bytes completed by this id (*len of them, possibly
 * 0); valid until the next call on `s`. MK_ERR_ARG for a bad id (stream unchanged). */
enum mk_status mk_tok_stream_push(struct mk_tok_stream *s, int32_t id, const char **text,
                                  size_t *len);
/* End of stream: any held-back incomplete character comes out as U+FFFD. The stream
 * is reset and may be reused. */
void mk_tok_stream_flush(struct mk_tok_stream *s, const char **text, size_t *len);

/* ---- chat prompts --------------------------------------------------------------- */

struct mk_chat_msg {
    const char *role;    /* "system", "user", "assistant" (others pass through for
                            ChatML; Qwen3 also understands "tool") */
    const char *content; /* UTF-8, NUL-terminated */
};

struct mk_chat_opts {
    bool add_generation_prompt; /* append the assistant header                        */
    bool enable_thinking;       /* Qwen3 only: false appends "<think>\n\n</think>\n\n"
                                   after the generation prompt (HF enable_thinking=False) */
    const char *date_string;    /* Llama 3.1+: "Today Date"; NULL = "26 Jul 2024", the
                                   template's own default */
};

/* Render messages to the prompt text, byte-for-byte what transformers'
 * apply_chat_template(messages, tokenize=False, ...) gives for this tokenizer's
 * template (no tools). For Llama 3 the text begins with the BOS token's text, so encode
 * it with allow_special=true and do not prepend BOS again. Result is malloc'd and
 * NUL-terminated (length in *out_len, may be NULL). MK_ERR_UNSUPPORTED when the family
 * is MK_CHAT_NONE; MK_ERR_ARG for a message with a NULL role/content or a role the
 * template rejects. */
enum mk_status mk_tokenizer_chat_render(const struct mk_tokenizer *tok,
                                        const struct mk_chat_msg *msgs, size_t n,
                                        const struct mk_chat_opts *opts, char **out,
                                        size_t *out_len);

#ifdef __cplusplus
}
#endif
#endif /* MK_TOKENIZER_H */
