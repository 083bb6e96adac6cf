/* Decoding ids to text, whole and streaming. Each id's bytes are precomputed at load
 * (tok_internal.h), so decoding is concatenation plus the U+FFFD repair of invalid
 * UTF-8 that HF's ByteLevel decoder does (String::from_utf8_lossy). */
#include "tok_internal.h"

#include <stdlib.h>
#include <string.h>

static enum mk_status check_id(const struct mk_tokenizer *t, int32_t id, size_t pos)
{
    if (id < 0 || id >= t->n_ids)
        return mk_error(MK_ERR_ARG, "ids[%zu]: id %d outside 0..%d", pos, id, t->n_ids - 1);
    if (!t->kind[id]) return mk_error(MK_ERR_ARG, "ids[%zu]: id %d is unused by this tokenizer", pos, id);
    return MK_OK;
}

enum mk_status mk_tokenizer_decode(const struct mk_tokenizer *t, const int32_t *ids, size_t n,
                                   bool skip_special, char **out, size_t *out_len)
{
    *out = NULL;
    struct mk_buf raw = {0}, text = {0};
    enum mk_status st = mk__buf_put(&raw, "", 0);
    for (size_t i = 0; i < n && st == MK_OK; i++) {
        if ((st = check_id(t, ids[i], i)) != MK_OK) break;
        if (skip_special && t->special[ids[i]]) continue;
        st = mk__buf_put(&raw, t->arena + t->off[ids[i]], t->len[ids[i]]);
    }
    if (st == MK_OK) st = mk__buf_put(&text, "", 0);
    if (st == MK_OK) mk__buf_put_lossy(&text, raw.p, raw.n, false, &st);
    free(raw.p);
    if (st != MK_OK) {
        free(text.p);
        return st;
    }
    *out = text.p;
    if (out_len) *out_len = text.n;
    return MK_OK;
}

/* `pending` holds the bytes of an incomplete trailing character (at most 3). */
struct mk_tok_stream {
    const struct mk_tokenizer *tok;
    bool skip_special;
    struct mk_buf in, out;
};

enum mk_status mk_tok_stream_new(const struct mk_tokenizer *tok, bool skip_special,
                                 struct mk_tok_stream **out)
{
    *out = calloc(1, sizeof **out);
    if (!*out) return mk_error(MK_ERR_NOMEM, "tokenizer: out of memory");
    (*out)->tok = tok;
    (*out)->skip_special = skip_special;
    return MK_OK;
}

void mk_tok_stream_free(struct mk_tok_stream *s)
{
    if (!s) return;
    free(s->in.p);
    free(s->out.p);
    free(s);
}

enum mk_status mk_tok_stream_push(struct mk_tok_stream *s, int32_t id, const char **text,
                                  size_t *len)
{
    const struct mk_tokenizer *t = s->tok;
    *text = "";
    *len = 0;
    enum mk_status st = check_id(t, id, 0);
    if (st != MK_OK) return st;
    if (s->skip_special && t->special[id]) return MK_OK;
    size_t keep = s->in.n;
    if ((st = mk__buf_put(&s->in, t->arena + t->off[id], t->len[id])) != MK_OK) return st;
    s->out.n = 0;
    size_t used = mk__buf_put_lossy(&s->out, s->in.p, s->in.n, true, &st);
    if (st != MK_OK) {
        s->in.n = keep;
        return st;
    }
    memmove(s->in.p, s->in.p + used, s->in.n - used);
    s->in.n -= used;
    *text = s->out.p ? s->out.p : "";
    *len = s->out.n;
    return MK_OK;
}

void mk_tok_stream_flush(struct mk_tok_stream *s, const char **text, size_t *len)
{
    enum mk_status st;
    s->out.n = 0;
    mk__buf_put_lossy(&s->out, s->in.p ? s->in.p : "", s->in.n, false, &st);
    s->in.n = 0;
    *text = st == MK_OK && s->out.p ? s->out.p : "";
    *len = st == MK_OK ? s->out.n : 0;
}
