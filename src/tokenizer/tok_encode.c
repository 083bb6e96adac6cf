/* The encode pipeline: added-token split -> NFC -> regex split -> BPE. */
#include "tok_load.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* PCRE2 limits: a pathological pattern fails with MK_ERR_LIMIT instead of hanging. */
enum { MK_RE_MATCH_LIMIT = 10 * 1000 * 1000, MK_RE_DEPTH_LIMIT = 100 * 1000 };

void mk_ids_free(struct mk_ids *ids)
{
    free(ids->ids);
    *ids = (struct mk_ids){0};
}

enum mk_status mk_ids_push(struct mk_ids *ids, int32_t id)
{
    if (ids->n == ids->cap) {
        size_t cap = ids->cap ? ids->cap * 2 : 64;
        int32_t *p = realloc(ids->ids, cap * sizeof *p);
        if (!p) return mk_error(MK_ERR_NOMEM, "tokenizer: out of memory for %zu ids", cap);
        ids->ids = p;
        ids->cap = cap;
    }
    ids->ids[ids->n++] = id;
    return MK_OK;
}

enum mk_status mk__tok_compile_regex(struct mk_tokenizer *t, const char *pattern)
{
    int err;
    PCRE2_SIZE off;
    t->re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP,
                          &err, &off, NULL);
    if (!t->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return mk_error(MK_ERR_FORMAT, "pre_tokenizer: regex error at offset %zu: %s", (size_t)off,
                        (const char *)msg);
    }
    /* JIT is an optimisation: when unavailable the interpreter runs the same pattern. */
    (void)pcre2_jit_compile(t->re, PCRE2_JIT_COMPLETE);
    t->mctx = pcre2_match_context_create(NULL);
    if (!t->mctx) return mk_error(MK_ERR_NOMEM, "pre_tokenizer: out of memory");
    pcre2_set_match_limit(t->mctx, MK_RE_MATCH_LIMIT);
    pcre2_set_depth_limit(t->mctx, MK_RE_DEPTH_LIMIT);
    return MK_OK;
}

/* ---- regex split ------------------------------------------------------------------ */

static enum mk_status match_at(const struct mk_tokenizer *t, const char *s, size_t n, size_t at,
                               pcre2_match_data *md, size_t *ms, size_t *me)
{
    int rc = pcre2_match(t->re, (PCRE2_SPTR)s, n, at, PCRE2_NO_UTF_CHECK, md, t->mctx);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
        rc = pcre2_match(t->re, (PCRE2_SPTR)s, n, at, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, t->mctx);
    if (rc == PCRE2_ERROR_NOMATCH) {
        *ms = *me = n;
        return MK_OK;
    }
    if (rc < 0) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(rc, msg, sizeof msg);
        return mk_error(MK_ERR_LIMIT, "tokenizer: pre-tokenizer regex failed at byte %zu: %s", at,
                        (const char *)msg);
    }
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    *ms = ov[0];
    *me = ov[1];
    return MK_OK;
}

/* Split s[0..n) like HF's Split(behavior=Isolated): every match is a piece and so is
 * every gap between matches; each piece goes to BPE. */
static enum mk_status split_and_bpe(const struct mk_tokenizer *t, const char *s, size_t n,
                                    struct mk_ids *out)
{
    if (!n) return MK_OK;
    if (!t->re) return mk__tok_bpe_word(t, s, n, 0, out);
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    if (!md) return mk_error(MK_ERR_NOMEM, "tokenizer: out of memory");
    enum mk_status st = MK_OK;
    size_t at = 0;
    while (st == MK_OK && at < n) {
        size_t ms, me;
        if ((st = match_at(t, s, n, at, md, &ms, &me)) != MK_OK) break;
        if (ms > at) st = mk__tok_bpe_word(t, s + at, ms - at, 0, out);
        if (st == MK_OK && me > ms) st = mk__tok_bpe_word(t, s + ms, me - ms, 0, out);
        if (me == ms && ms < n) { /* empty match: the next character joins the next gap */
            uint32_t cp;
            size_t k = mk__utf8_decode((const unsigned char *)s + ms, n - ms, &cp);
            me = ms + (k ? k : 1);
            if (st == MK_OK) st = mk__tok_bpe_word(t, s + ms, me - ms, 0, out);
        }
        at = me;
    }
    pcre2_match_data_free(md);
    return st;
}

/* ---- added tokens ------------------------------------------------------------------ */

static bool is_word_char(uint32_t cp)
{
    if (cp < 128) return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') ||
                         (cp >= 'A' && cp <= 'Z') || cp == '_';
    utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
    return c <= UTF8PROC_CATEGORY_LO || (c >= UTF8PROC_CATEGORY_ND && c <= UTF8PROC_CATEGORY_NO);
}

/* Last / first code point of a non-empty valid UTF-8 string. */
static uint32_t last_cp(const char *s, size_t n)
{
    size_t i = n - 1;
    while (i > 0 && ((unsigned char)s[i] & 0xC0) == 0x80) i--;
    uint32_t cp = 0;
    mk__utf8_decode((const unsigned char *)s + i, n - i, &cp);
    return cp;
}

static uint32_t first_cp(const char *s, size_t n)
{
    uint32_t cp = 0;
    mk__utf8_decode((const unsigned char *)s, n, &cp);
    return cp;
}

/* Leftmost-longest match among the added tokens with normalized == want_normalized,
 * starting the search at `from`. Returns the token or NULL; *at = match start. */
static const struct mk_added_token *find_added(const struct mk_tokenizer *t, const char *s,
                                               size_t n, size_t from, bool want_normalized,
                                               size_t *at)
{
    for (size_t i = from; i < n; i++) {
        uint8_t c = (uint8_t)s[i];
        const struct mk_added_token *best = NULL;
        for (uint32_t k = t->added_start[c]; k < t->added_start[c + 1]; k++) {
            const struct mk_added_token *a = &t->added[t->added_by_byte[k]];
            if (a->normalized != want_normalized || a->len > n - i || memcmp(a->content, s + i, a->len))
                continue;
            if (!best || a->len > best->len) best = a;
        }
        if (best) {
            *at = i;
            return best;
        }
    }
    return NULL;
}

typedef enum mk_status (*piece_fn)(const struct mk_tokenizer *t, const char *s, size_t n,
                                   struct mk_ids *out);

/* HF AddedVocabulary::find_matches: matches of special tokens that are not allowed, or
 * single_word tokens inside a word, are skipped (their span is still consumed by the
 * search); lstrip/rstrip widen a match over adjacent whitespace. Text between matches
 * goes to `plain`. As in HF the search resumes at the end of the token itself, not
 * of the whitespace rstrip took. */
static enum mk_status split_added(const struct mk_tokenizer *t, const char *s, size_t n,
                                  bool normalized, bool allow_special, piece_fn plain,
                                  struct mk_ids *out)
{
    size_t done = 0, search = 0, start;
    enum mk_status st = MK_OK;
    const struct mk_added_token *a;
    while (st == MK_OK && (a = find_added(t, s, n, search, normalized, &start))) {
        size_t stop = start + a->len;
        search = stop;
        if (a->special && !allow_special) continue;
        if (a->single_word && ((start > 0 && is_word_char(last_cp(s, start))) ||
                               (stop < n && is_word_char(first_cp(s + stop, n - stop)))))
            continue;
        if (a->lstrip) {
            size_t b = start;
            while (b > done) {
                size_t p = b - 1;
                while (p > 0 && ((unsigned char)s[p] & 0xC0) == 0x80) p--;
                if (!mk__uni_whitespace(first_cp(s + p, b - p))) break;
                b = p;
            }
            start = b;
        }
        if (a->rstrip) {
            uint32_t cp;
            size_t k;
            while (stop < n && (k = mk__utf8_decode((const unsigned char *)s + stop, n - stop, &cp)) &&
                   mk__uni_whitespace(cp))
                stop += k;
        }
        if (start > done) st = plain(t, s + done, start - done, out);
        if (st == MK_OK) st = mk_ids_push(out, a->id);
        done = stop;
    }
    if (st == MK_OK && done < n) st = plain(t, s + done, n - done, out);
    return st;
}

/* ---- normalization ----------------------------------------------------------------- */

static bool has_normalized_added(const struct mk_tokenizer *t)
{
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].normalized) return true;
    return false;
}

static enum mk_status normalized_piece(const struct mk_tokenizer *t, const char *s, size_t n,
                                       struct mk_ids *out)
{
    return has_normalized_added(t) ? split_added(t, s, n, true, true, split_and_bpe, out)
                                   : split_and_bpe(t, s, n, out);
}

/* True when NFC leaves s unchanged for sure: every character lies in a range whose
 * characters have no canonical decomposition, combining class 0 and never compose with
 * a neighbour (NFC_Quick_Check=Yes, ccc=0). Below U+0300 nothing decomposes or combines;
 * the other ranges are common scripts (Cyrillic letters, CJK, kana, Hangul syllables,
 * fullwidth forms). Anything else goes through utf8proc. */
static bool stable_cp(uint32_t c)
{
    return c < 0x300 || (c >= 0x400 && c <= 0x482) || (c >= 0x48A && c <= 0x4FF) ||
           (c >= 0x3000 && c <= 0x3029) || (c >= 0x3041 && c <= 0x3096) ||
           (c >= 0x30A1 && c <= 0x30FA) || (c >= 0x4E00 && c <= 0x9FFF) ||
           (c >= 0xAC00 && c <= 0xD7A3) || (c >= 0xFF01 && c <= 0xFF5E);
}

static bool trivially_nfc(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        if (u[i] < 0xCC) { /* a lead byte below 0xCC starts a character below U+0300 */
            i++;
            continue;
        }
        uint32_t cp;
        size_t k = mk__utf8_decode(u + i, n - i, &cp);
        if (!k || !stable_cp(cp)) return false;
        i += k;
    }
    return true;
}

static enum mk_status plain_piece(const struct mk_tokenizer *t, const char *s, size_t n,
                                  struct mk_ids *out)
{
    if (!t->nfc || trivially_nfc(s, n)) return normalized_piece(t, s, n, out);
    utf8proc_uint8_t *norm = NULL;
    /* utf8proc stops at NUL unless given the length; NUL bytes are kept as text. */
    utf8proc_ssize_t m = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &norm,
                                      UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    if (m < 0)
        return mk_error(MK_ERR_ARG, "tokenizer: NFC normalization failed: %s",
                        utf8proc_errmsg(m));
    enum mk_status st = normalized_piece(t, (const char *)norm, (size_t)m, out);
    free(norm);
    return st;
}

enum mk_status mk_tokenizer_encode(const struct mk_tokenizer *t, const char *text, size_t len,
                                   bool allow_special, struct mk_ids *out)
{
    size_t bad = mk__utf8_validate(text, len);
    if (bad != len) return mk_error(MK_ERR_ARG, "text: invalid UTF-8 at byte %zu", bad);
    size_t n0 = out->n;
    enum mk_status st = split_added(t, text, len, false, allow_special, plain_piece, out);
    if (st != MK_OK) out->n = n0;
    return st;
}
