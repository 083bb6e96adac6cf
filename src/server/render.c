/* Jobs -> OpenAI-shaped JSON: whole responses, streaming chunks, logprobs, errors. */
#include "server/server_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double LOGPROB_FLOOR = -9999.0; /* stands in for -inf, which JSON lacks */

const char *srv_end_name(enum srv_end e)
{
    switch (e) {
    case END_STOP: return "stop";
    case END_LENGTH: return "length";
    case END_TIMEOUT: return "timeout";
    case END_CANCELLED: return "cancelled";
    case END_ERROR: return "error";
    case END_NONE: break;
    }
    return "none";
}

/* Length of the valid UTF-8 sequence at p[0, n), or 0 with *bad = bytes of the maximal
 * invalid subpart to replace by one U+FFFD (as Rust's from_utf8_lossy and HF do). */
static size_t utf8_seq(const unsigned char *p, size_t n, size_t *bad)
{
    const unsigned c = p[0];
    size_t len;
    unsigned lo = 0x80, hi = 0xBF;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) len = 3, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    else if (c >= 0xF0 && c <= 0xF4) len = 4, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    else return *bad = 1, 0;
    size_t k = 1;
    for (; k < len && k < n; k++) {
        const unsigned b = p[k];
        if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) break;
    }
    if (k == len) return len;
    *bad = k;
    return 0;
}

json_t *srv_lossy_string(const char *s, size_t n)
{
    char *buf = malloc(3 * n + 1); /* each bad byte becomes at most 3 bytes */
    if (!buf) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t bad = 0, len = utf8_seq((const unsigned char *)s + i, n - i, &bad);
        if (len) {
            memcpy(buf + o, s + i, len);
            o += len, i += len;
        } else {
            memcpy(buf + o, "\xEF\xBF\xBD", 3);
            o += 3, i += bad;
        }
    }
    json_t *v = json_stringn_nocheck(buf, o);
    free(buf);
    return v;
}

static json_t *num(double x)
{
    return json_real(isfinite(x) ? x : LOGPROB_FLOOR);
}

json_t *srv_error_json(const struct srv_err *e)
{
    return json_pack("{s:{s:o,s:s,s:o,s:o}}", "error", "message", srv_lossy_string(e->msg, strlen(e->msg)),
                     "type", e->type, "param", e->param[0] ? json_string(e->param) : json_null(),
                     "code", e->code ? json_string(e->code) : json_null());
}

/* ---- logprobs ----------------------------------------------------------------------- */

static json_t *token_string(const struct mk_server *s, int32_t id)
{
    size_t n = 0;
    const char *p = mk_tokenizer_token_bytes(s->eng.tok, id, &n);
    return srv_lossy_string(p ? p : "", p ? n : 0);
}

static json_t *token_bytes(const struct mk_server *s, int32_t id)
{
    size_t n = 0;
    const char *p = mk_tokenizer_token_bytes(s->eng.tok, id, &n);
    json_t *a = json_array();
    for (size_t i = 0; p && i < n; i++) json_array_append_new(a, json_integer((unsigned char)p[i]));
    return a;
}

/* Legacy completions shape: parallel arrays. */
static json_t *completion_logprobs(const struct mk_server *s, const struct srv_tok *t, int n)
{
    json_t *toks = json_array(), *lps = json_array(), *tops = json_array(), *offs = json_array();
    for (int i = 0; i < n; i++) {
        json_array_append_new(toks, token_string(s, t[i].id));
        json_array_append_new(lps, num(t[i].logprob));
        json_t *top = json_object();
        for (int k = 0; k < t[i].n_top; k++) {
            json_t *key = token_string(s, t[i].top_ids[k]);
            if (key && !json_object_get(top, json_string_value(key)))
                json_object_set_new(top, json_string_value(key), num(t[i].top_logprobs[k]));
            json_decref(key);
        }
        json_array_append_new(tops, top);
        json_array_append_new(offs, json_integer((json_int_t)t[i].start));
    }
    return json_pack("{s:o,s:o,s:o,s:o}", "tokens", toks, "token_logprobs", lps, "top_logprobs", tops,
                     "text_offset", offs);
}

static json_t *chat_entry(const struct mk_server *s, int32_t id, float lp)
{
    return json_pack("{s:o,s:o,s:o}", "token", token_string(s, id), "logprob", num(lp), "bytes",
                     token_bytes(s, id));
}

static json_t *chat_logprobs(const struct mk_server *s, const struct srv_tok *t, int n)
{
    json_t *content = json_array();
    for (int i = 0; i < n; i++) {
        json_t *e = chat_entry(s, t[i].id, t[i].logprob), *top = json_array();
        for (int k = 0; k < t[i].n_top; k++)
            json_array_append_new(top, chat_entry(s, t[i].top_ids[k], t[i].top_logprobs[k]));
        json_object_set_new(e, "top_logprobs", top);
        json_array_append_new(content, e);
    }
    return json_pack("{s:o}", "content", content);
}

/* The visible tokens of toks[0, n) (hidden ones dropped) as this job's logprobs shape. */
static json_t *logprobs(const struct mk_server *s, const struct srv_job *j, const struct srv_tok *t, int n)
{
    if (j->logprobs < 0) return json_null();
    struct srv_tok *vis = malloc((size_t)(n > 0 ? n : 1) * sizeof *vis);
    if (!vis) return NULL;
    int m = 0;
    for (int i = 0; i < n; i++)
        if (!t[i].hidden) vis[m++] = t[i];
    json_t *v = j->chat ? chat_logprobs(s, vis, m) : completion_logprobs(s, vis, m);
    free(vis);
    return v;
}

/* ---- responses and chunks ------------------------------------------------------------ */

static json_t *usage(const struct srv_job *j)
{
    return json_pack("{s:i,s:i,s:i}", "prompt_tokens", j->req.n_prompt, "completion_tokens", j->n_toks,
                     "total_tokens", j->req.n_prompt + j->n_toks);
}

static json_t *envelope(const struct mk_server *s, const struct srv_job *j, time_t created,
                        const char *object, json_t *choices)
{
    char id[64];
    snprintf(id, sizeof id, "%s-%llx-%llu", j->chat ? "chatcmpl" : "cmpl", (unsigned long long)s->created, j->id);
    return json_pack("{s:s,s:s,s:I,s:s,s:o}", "id", id, "object", object, "created", (json_int_t)created,
                     "model", s->o.model_name, "choices", choices);
}

json_t *srv_render_response(const struct mk_server *s, const struct srv_job *j, time_t created)
{
    json_t *text = srv_lossy_string(j->text ? j->text : "", j->text_len);
    json_t *choice = j->chat
        ? json_pack("{s:i,s:{s:s,s:o},s:o,s:s}", "index", 0, "message", "role", "assistant", "content", text,
                    "logprobs", logprobs(s, j, j->toks, j->n_toks), "finish_reason", srv_end_name(j->end))
        : json_pack("{s:i,s:o,s:o,s:s}", "index", 0, "text", text, "logprobs",
                    logprobs(s, j, j->toks, j->n_toks), "finish_reason", srv_end_name(j->end));
    json_t *r = envelope(s, j, created, j->chat ? "chat.completion" : "text_completion",
                         json_pack("[o]", choice));
    if (r) json_object_set_new(r, "usage", usage(j));
    return r;
}

json_t *srv_render_chunk(const struct mk_server *s, const struct srv_job *j, time_t created,
                         const char *text, size_t len, const struct srv_tok *toks, int n,
                         const char *finish, bool role)
{
    json_t *delta = srv_lossy_string(text, len), *choice;
    json_t *lp = n > 0 ? logprobs(s, j, toks, n) : json_null();
    json_t *fr = finish ? json_string(finish) : json_null();
    if (j->chat) {
        json_t *d = json_object();
        if (role) json_object_set_new(d, "role", json_string("assistant"));
        if (!finish || len > 0) json_object_set_new(d, "content", delta);
        else json_decref(delta);
        choice = json_pack("{s:i,s:o,s:o,s:o}", "index", 0, "delta", d, "logprobs", lp, "finish_reason", fr);
    } else {
        choice = json_pack("{s:i,s:o,s:o,s:o}", "index", 0, "text", delta, "logprobs", lp, "finish_reason", fr);
    }
    json_t *r = envelope(s, j, created, j->chat ? "chat.completion.chunk" : "text_completion",
                         json_pack("[o]", choice));
    if (r && j->include_usage) json_object_set_new(r, "usage", json_null());
    return r;
}

json_t *srv_render_usage_chunk(const struct mk_server *s, const struct srv_job *j, time_t created)
{
    json_t *r = envelope(s, j, created, j->chat ? "chat.completion.chunk" : "text_completion", json_array());
    if (r) json_object_set_new(r, "usage", usage(j));
    return r;
}
