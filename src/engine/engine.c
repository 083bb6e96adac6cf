/* The engine: validates requests, adds the model's eos ids to their stop ids, runs them
 * on the backend and turns the backend's token ids into streamed UTF-8 text. */
#include "mk/engine.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct mk_engine {
    const struct mk_model *model;
    const struct mk_tokenizer *tok; /* NULL: tokens carry no text */
    struct mk_backend *backend;
};

const char *mk_finish_name(enum mk_finish f)
{
    switch (f) {
    case MK_FINISH_NONE: return "none";
    case MK_FINISH_STOP: return "stop";
    case MK_FINISH_LENGTH: return "length";
    case MK_FINISH_CANCELLED: return "cancelled";
    }
    return "none";
}

enum mk_status mk_engine_new(const struct mk_model *m, const struct mk_tokenizer *tok,
                             struct mk_backend *backend, struct mk_engine **out)
{
    *out = NULL;
    struct mk_engine *e = calloc(1, sizeof *e);
    if (!e) {
        backend->free(backend);
        return mk_error(MK_ERR_NOMEM, "engine: out of memory");
    }
    *e = (struct mk_engine){m, tok, backend};
    *out = e;
    return MK_OK;
}

void mk_engine_free(struct mk_engine *e)
{
    if (!e) return;
    e->backend->free(e->backend);
    free(e);
}

/* ---- request validation ------------------------------------------------------------ */

static bool has_id(const struct mk_request *r, int32_t id)
{
    for (int i = 0; i < r->n_stop_ids; i++)
        if (r->stop_ids[i] == id) return true;
    return false;
}

/* Check reqs[i] and write the backend's copy of it (eos ids merged into stop ids). */
static enum mk_status prepare(const struct mk_engine *e, const struct mk_request *in, int i,
                              struct mk_request *out)
{
    const struct mk_config *c = &e->model->cfg;
    const int V = c->vocab_size;
    const int ctx = c->max_position < e->backend->max_ctx ? c->max_position : e->backend->max_ctx;
    const struct mk_sampling *s = &in->sampling;
    if (!in->prompt || in->n_prompt < 1)
        return mk_error(MK_ERR_ARG, "request %d: prompt: expected at least 1 token, got %d", i, in->n_prompt);
    for (int j = 0; j < in->n_prompt; j++)
        if (in->prompt[j] < 0 || in->prompt[j] >= V)
            return mk_error(MK_ERR_ARG, "request %d: prompt[%d]: expected an id in [0, %d), got %d",
                            i, j, V, (int)in->prompt[j]);
    if (in->max_tokens < 1)
        return mk_error(MK_ERR_ARG, "request %d: max_tokens: expected >= 1, got %d", i, in->max_tokens);
    if (in->max_tokens > ctx - in->n_prompt)
        return mk_error(MK_ERR_LIMIT, "request %d: prompt (%d tokens) + max_tokens (%d) exceeds the context of %d",
                        i, in->n_prompt, in->max_tokens, ctx);
    if (!isfinite(s->temperature) || s->temperature < 0.0f)
        return mk_error(MK_ERR_ARG, "request %d: temperature: expected a finite value >= 0, got %g", i, s->temperature);
    if (!(s->top_p >= 0.0f && s->top_p <= 1.0f))
        return mk_error(MK_ERR_ARG, "request %d: top_p: expected a value in [0, 1], got %g", i, s->top_p);
    if (s->top_k < 0)
        return mk_error(MK_ERR_ARG, "request %d: top_k: expected >= 0, got %d", i, s->top_k);
    if (in->top_logprobs < 0 || in->top_logprobs > MK_TOP_MAX)
        return mk_error(MK_ERR_ARG, "request %d: top_logprobs: expected 0..%d, got %d", i, MK_TOP_MAX, in->top_logprobs);
    if (in->n_stop_ids < 0 || in->n_stop_ids > MK_MAX_STOP_IDS)
        return mk_error(MK_ERR_LIMIT, "request %d: stop ids: expected at most %d, got %d", i, MK_MAX_STOP_IDS, in->n_stop_ids);
    for (int j = 0; j < in->n_stop_ids; j++)
        if (in->stop_ids[j] < 0 || in->stop_ids[j] >= V)
            return mk_error(MK_ERR_ARG, "request %d: stop_ids[%d]: expected an id in [0, %d), got %d",
                            i, j, V, (int)in->stop_ids[j]);
    *out = *in;
    for (int j = 0; j < c->n_eos && !in->ignore_eos; j++) {
        if (has_id(out, c->eos_token_ids[j])) continue;
        if (out->n_stop_ids == MK_MAX_STOP_IDS)
            return mk_error(MK_ERR_LIMIT, "request %d: stop ids + eos ids: expected at most %d", i, MK_MAX_STOP_IDS);
        out->stop_ids[out->n_stop_ids++] = c->eos_token_ids[j];
    }
    return MK_OK;
}

/* ---- streaming text ---------------------------------------------------------------- */

struct stream_ctx {
    struct mk_tok_stream *streams[MK_MAX_BATCH]; /* NULL without a tokenizer */
    mk_token_fn user;
    void *user_ctx;
    char *text;      /* the text of the current token: piece + flush of the last one */
    size_t text_cap;
};

static bool append(struct stream_ctx *c, size_t at, const char *s, size_t n)
{
    if (at + n + 1 > c->text_cap) {
        size_t cap = 2 * (at + n + 1);
        char *p = realloc(c->text, cap);
        if (!p) return false;
        c->text = p;
        c->text_cap = cap;
    }
    memcpy(c->text + at, s, n);
    c->text[at + n] = '\0';
    return true;
}

/* The backend's callback: attach the text completed by this token, then pass it on.
 * A stop token adds no text; the last token also flushes held-back bytes; an id the
 * tokenizer does not know (a model vocabulary padded past the tokenizer's) has none. */
static bool on_backend_token(void *ctx, int req, const struct mk_token *tok)
{
    struct stream_ctx *c = ctx;
    struct mk_token t = *tok;
    size_t n = 0;
    struct mk_tok_stream *s = c->streams[req];
    if (s) {
        const char *piece = NULL;
        size_t len = 0;
        if (tok->finish != MK_FINISH_STOP && mk_tok_stream_push(s, tok->id, &piece, &len) == MK_OK &&
            append(c, 0, piece, len))
            n = len;
        if (tok->finish != MK_FINISH_NONE) {
            mk_tok_stream_flush(s, &piece, &len);
            if (append(c, n, piece, len)) n += len;
        }
    }
    t.text = n ? c->text : "";
    t.text_len = n;
    return c->user(c->user_ctx, req, &t);
}

enum mk_status mk_engine_generate(struct mk_engine *e, const struct mk_request *reqs, int n,
                                  mk_token_fn on_token, void *ctx, enum mk_finish *finish)
{
    if (n < 1 || n > e->backend->max_batch)
        return mk_error(MK_ERR_LIMIT, "engine: batch: expected 1..%d requests, got %d",
                        e->backend->max_batch, n);
    struct mk_request prepared[MK_MAX_BATCH];
    for (int i = 0; i < n; i++) {
        finish[i] = MK_FINISH_NONE;
        enum mk_status st = prepare(e, &reqs[i], i, &prepared[i]);
        if (st != MK_OK) return st;
    }
    struct stream_ctx c = {.user = on_token, .user_ctx = ctx};
    enum mk_status st = MK_OK;
    for (int i = 0; i < n && e->tok && st == MK_OK; i++)
        st = mk_tok_stream_new(e->tok, true, &c.streams[i]);
    if (st == MK_OK) st = e->backend->run(e->backend, prepared, n, on_backend_token, &c, finish);
    for (int i = 0; i < n; i++)
        if (c.streams[i]) mk_tok_stream_free(c.streams[i]);
    free(c.text);
    return st;
}

/* ---- prompts ------------------------------------------------------------------------ */

enum mk_status mk_prompt_text(const struct mk_tokenizer *tok, const char *text,
                              struct mk_ids *out)
{
    const size_t n0 = out->n;
    enum mk_status st = MK_OK;
    if (mk_tokenizer_adds_bos(tok) && mk_tokenizer_bos_id(tok) >= 0)
        st = mk_ids_push(out, mk_tokenizer_bos_id(tok));
    if (st == MK_OK) st = mk_tokenizer_encode(tok, text, strlen(text), false, out);
    if (st != MK_OK) out->n = n0;
    return st;
}

enum mk_status mk_prompt_chat(const struct mk_tokenizer *tok, const struct mk_chat_msg *msgs,
                              size_t n, bool thinking, struct mk_ids *out)
{
    const struct mk_chat_opts opts = {.add_generation_prompt = true, .enable_thinking = thinking};
    char *text = NULL;
    size_t len = 0;
    enum mk_status st = mk_tokenizer_chat_render(tok, msgs, n, &opts, &text, &len);
    if (st == MK_OK) st = mk_tokenizer_encode(tok, text, len, true, out);
    free(text);
    return st;
}
