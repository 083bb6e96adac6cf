/* libFuzzer target: mk_tokenizer_encode on arbitrary bytes with the real Qwen3 and
 * Llama 3 tokenizers (data/tokenizers/, loaded once; run from the repository root).
 * The first byte picks the tokenizer and allow_special; the rest is the text.
 * On success: every id is in range, decoding gives back the text (Qwen3: up to NFC,
 * which it applies), and the streaming decoder agrees with the whole decode. On
 * invalid UTF-8: MK_ERR_ARG with a message, and the output array is untouched. */
#include "mk/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct mk_tokenizer *toks[2];

static struct mk_tokenizer *get(int which)
{
    static const char *dirs[2] = {"data/tokenizers/qwen3", "data/tokenizers/llama3"};
    if (!toks[which] && mk_tokenizer_load(dirs[which], &toks[which]) != MK_OK) {
        fprintf(stderr, "fuzz_tokenize: %s (run from the repository root)\n", mk_errmsg());
        abort();
    }
    return toks[which];
}

static char *nfc(const char *s, size_t n, size_t *out_n)
{
    utf8proc_uint8_t *p = NULL;
    utf8proc_ssize_t m = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &p,
                                      UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    MK_ASSERT(m >= 0);
    *out_n = (size_t)m;
    return (char *)p;
}

static void check_stream(const struct mk_tokenizer *t, const struct mk_ids *ids,
                         const char *whole, size_t wn)
{
    struct mk_tok_stream *s;
    MK_ASSERT(mk_tok_stream_new(t, false, &s) == MK_OK);
    size_t at = 0;
    for (size_t i = 0; i <= ids->n; i++) {
        const char *p;
        size_t n;
        if (i < ids->n) MK_ASSERT(mk_tok_stream_push(s, ids->ids[i], &p, &n) == MK_OK);
        else mk_tok_stream_flush(s, &p, &n);
        MK_ASSERT(at + n <= wn && !memcmp(whole + at, p, n));
        at += n;
    }
    MK_ASSERT(at == wn);
    mk_tok_stream_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    const struct mk_tokenizer *t = get(data[0] & 1);
    bool special = data[0] & 2;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    struct mk_ids ids = {0};
    mk_ids_push(&ids, -7);
    if (mk_tokenizer_encode(t, text, len, special, &ids) != MK_OK) {
        MK_ASSERT(mk_errmsg()[0] != '\0' && ids.n == 1 && ids.ids[0] == -7);
        mk_ids_free(&ids);
        return 0;
    }
    for (size_t i = 1; i < ids.n; i++)
        MK_ASSERT(ids.ids[i] >= 0 && ids.ids[i] < mk_tokenizer_vocab_size(t));
    char *back;
    size_t bn;
    MK_ASSERT(mk_tokenizer_decode(t, ids.ids + 1, ids.n - 1, false, &back, &bn) == MK_OK);
    size_t an, cn;
    char *a = nfc(text, len, &an), *b = nfc(back, bn, &cn);
    MK_ASSERT(an == cn && !memcmp(a, b, an));
    if (data[0] & 1) MK_ASSERT(bn == len && !memcmp(back, text, len)); /* Llama 3: exact */
    struct mk_ids rest = {ids.ids + 1, ids.n - 1, ids.n - 1};
    check_stream(t, &rest, back, bn);
    free(a);
    free(b);
    free(back);
    mk_ids_free(&ids);
    return 0;
}
