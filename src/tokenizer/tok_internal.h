/* Private layout of struct mk_tokenizer, shared by the src/tokenizer/ files.
 *
 * Ids: every id in [0, n_ids) is either a vocab token, an added token, or a hole
 * (unused). `tok_bytes` holds, per id, the raw bytes the id decodes to (the byte-level
 * alphabet already undone), all in one arena: bytes of id i are
 * arena[off[i] .. off[i] + len[i]); a hole has len 0 and kind MK_TOKK_NONE.
 *
 * The vocab hash maps those raw bytes back to ids (vocab tokens only), which is what
 * BPE needs: a pre-token is looked up by its raw bytes, never re-spelled. The merge
 * hash maps a pair of ids (left << 32 | right) to the merge's rank and result id.
 */
#ifndef MK_TOK_INTERNAL_H
#define MK_TOK_INTERNAL_H

#include "mk/tokenizer.h"

#include <pthread.h>
#include <stdbool.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

/* Bit flags: an id may be both a vocab entry and an added token (same text). */
enum mk_tok_kind { MK_TOKK_NONE = 0, MK_TOKK_VOCAB = 1, MK_TOKK_ADDED = 2 };

struct mk_added_token {
    char *content;   /* exact text, NUL-terminated (may hold no NUL itself) */
    size_t len;
    int32_t id;
    bool special, lstrip, rstrip, normalized, single_word;
};

/* Open-addressing table from byte strings to ids; keys live in the tokenizer arena. */
struct mk_strhash {
    int32_t *slot; /* id, or -1 for empty */
    uint32_t mask; /* capacity - 1 (power of two) */
};

struct mk_merge_slot {
    uint64_t key;  /* (left << 32) | right; UINT64_MAX when empty */
    int32_t rank;
    int32_t id;
};

struct mk_mergehash {
    struct mk_merge_slot *slot;
    uint32_t mask;
};

/* Word cache: direct-mapped, short words only; guarded by `lock` (trylock). */
enum { MK_TOK_CACHE_SLOTS = 1 << 14, MK_TOK_CACHE_KEY = 23, MK_TOK_CACHE_IDS = 8 };
struct mk_cache_entry {
    uint8_t klen;                      /* 0 = empty */
    uint8_t nids;
    char key[MK_TOK_CACHE_KEY];
    int32_t ids[MK_TOK_CACHE_IDS];
};

struct mk_tokenizer {
    int32_t n_ids;                 /* max id + 1 */
    uint8_t *kind;                 /* [n_ids] enum mk_tok_kind */
    uint8_t *special;              /* [n_ids] 1 for special added tokens */
    uint32_t *off, *len;           /* [n_ids] into arena */
    char *arena;
    size_t arena_len;
    struct mk_strhash vocab;       /* raw bytes -> vocab id */
    struct mk_mergehash merges;
    int32_t byte_id[256];          /* id of the single-byte token of each byte */
    bool ignore_merges;            /* whole pre-token in vocab -> emit it directly */
    bool nfc;                      /* normalizer: NFC */

    struct mk_added_token *added;  /* sorted by id */
    size_t n_added;
    /* Added tokens grouped by first byte, for the split scan: the indexes into `added`
     * of those starting with byte b are by_byte[start[b] .. start[b + 1]). */
    uint32_t *added_by_byte;
    uint32_t added_start[257];

    pcre2_code *re;                /* pre-tokenizer split regex (already rewritten) */
    pcre2_match_context *mctx;     /* match/depth limits */

    int32_t bos_id, eos_id;
    bool adds_bos;
    enum mk_chat_family chat;
    char *bos_text;                /* bos token content for templates ("" if none) */
    char *default_system;          /* ChatML template's built-in system prompt or NULL */
    bool date_now;                 /* Llama 3.2 template: default date is today (strftime_now) */

    pthread_mutex_t cache_lock;
    struct mk_cache_entry *cache;  /* [MK_TOK_CACHE_SLOTS] */
};

/* Hash of a byte string (64-bit FNV-1a variant mixing 8 bytes at a time). */
uint64_t mk__tok_hash(const void *p, size_t n);
/* Vocab lookup by raw bytes; -1 when absent. */
int32_t mk__tok_vocab_find(const struct mk_tokenizer *t, const char *s, size_t n);
/* Merge lookup; returns the slot or NULL. */
const struct mk_merge_slot *mk__tok_merge_find(const struct mk_tokenizer *t, int32_t a,
                                               int32_t b);

/* BPE on one pre-token's raw bytes: appends the ids to *out. `algo` picks the merge
 * loop: 0 automatic, 1 quadratic scan, 2 heap (tests compare the two). */
enum mk_status mk__tok_bpe_word(const struct mk_tokenizer *t, const char *w, size_t n,
                                int algo, struct mk_ids *out);

/* Byte-level alphabet (GPT-2): byte -> code point, and back (-1 when not a symbol). */
uint32_t mk__tok_byte_char(uint8_t b);
int mk__tok_char_byte(uint32_t cp);

/* UTF-8 helpers. mk__utf8_decode reads one valid character at s[0..n) and returns its
 * length (1..4) with the code point in *cp, or 0 when the bytes there are not a valid,
 * complete character. */
size_t mk__utf8_decode(const unsigned char *s, size_t n, uint32_t *cp);
size_t mk__utf8_encode(uint32_t cp, char *out); /* out has room for 4 */
/* Offset of the first invalid byte, or n when all of s is valid UTF-8. */
size_t mk__utf8_validate(const char *s, size_t n);
/* Python str.isspace() and Rust char::is_whitespace (Unicode White_Space). */
bool mk__py_isspace(uint32_t cp);
bool mk__uni_whitespace(uint32_t cp);

/* A growable byte buffer. */
struct mk_buf {
    char *p;
    size_t n, cap;
};
enum mk_status mk__buf_put(struct mk_buf *b, const void *p, size_t n);
enum mk_status mk__buf_puts(struct mk_buf *b, const char *s);
/* Append bytes, replacing each maximal invalid UTF-8 subsequence by U+FFFD (Rust
 * from_utf8_lossy). When hold_tail is true an incomplete but possibly valid character
 * at the end is not consumed: the return value is the number of bytes consumed. */
size_t mk__buf_put_lossy(struct mk_buf *b, const char *p, size_t n, bool hold_tail,
                         enum mk_status *st);

#endif
