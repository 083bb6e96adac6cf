/* OpenAI request bodies -> a validated job. Every field is checked for type and range;
 * errors name the field and what was expected, never the value sent. Unknown fields are
 * ignored (as vLLM does); known ones we cannot honour are refused. */
#include "server/server_int.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    DEFAULT_COMPLETION_TOKENS = 16, /* OpenAI's default max_tokens for /v1/completions */
    MAX_MESSAGES = 4096,
};
static const double MAX_TEMPERATURE = 2.0; /* OpenAI's range */

bool srv_fail(struct srv_err *e, int status, const char *param, const char *fmt, ...)
{
    *e = (struct srv_err){.status = status};
    e->type = status == 401   ? "invalid_request_error"
              : status == 404 ? "invalid_request_error"
              : status == 429 ? "rate_limit_error"
              : status == 503 ? "service_unavailable"
              : status >= 500 ? "server_error"
                              : "invalid_request_error";
    e->code = status == 401 ? "invalid_api_key" : status == 404 ? "not_found" : NULL;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return false;
}

/* ---- typed optional fields (absent or null: *present = false) ------------------------ */

static json_t *field(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return v && !json_is_null(v) ? v : NULL;
}

static bool get_int(json_t *o, const char *key, long long lo, long long hi, long long *out,
                    bool *present, struct srv_err *e)
{
    json_t *v = field(o, key);
    *present = v != NULL;
    if (!v) return true;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return srv_fail(e, 400, key, "%s: expected an integer in [%lld, %lld]", key, lo, hi);
    *out = json_integer_value(v);
    return true;
}

static bool get_number(json_t *o, const char *key, double lo, double hi, bool lo_open,
                       double *out, bool *present, struct srv_err *e)
{
    json_t *v = field(o, key);
    *present = v != NULL;
    if (!v) return true;
    const double x = json_is_number(v) ? json_number_value(v) : NAN;
    if (!(isfinite(x) && (lo_open ? x > lo : x >= lo) && x <= hi))
        return srv_fail(e, 400, key, "%s: expected a number in %s%g, %g]", key, lo_open ? "(" : "[",
                        lo, hi);
    *out = x;
    return true;
}

static bool get_bool(json_t *o, const char *key, bool *out, struct srv_err *e)
{
    json_t *v = field(o, key);
    if (!v) return true;
    if (!json_is_boolean(v)) return srv_fail(e, 400, key, "%s: expected true or false", key);
    *out = json_is_true(v);
    return true;
}

bool srv_check_model(const struct mk_server *s, json_t *body, struct srv_err *e)
{
    json_t *v = field(body, "model");
    if (!v) return true;
    if (!json_is_string(v)) return srv_fail(e, 400, "model", "model: expected a string");
    if (strcmp(json_string_value(v), s->o.model_name) != 0)
        return srv_fail(e, 404, "model", "model: no such model; this server serves '%s'",
                        s->o.model_name);
    return true;
}

/* ---- refused fields --------------------------------------------------------------- */

static bool check_unsupported(json_t *b, struct srv_err *e)
{
    long long n = 1;
    bool have;
    if (!get_int(b, "n", 1, 1, &n, &have, e))
        return srv_fail(e, 400, "n", "n: only one choice per request is supported (n = 1)");
    if (!get_int(b, "best_of", 1, 1, &n, &have, e))
        return srv_fail(e, 400, "best_of", "best_of: only 1 is supported");
    bool echo = false;
    if (!get_bool(b, "echo", &echo, e)) return false;
    if (echo) return srv_fail(e, 400, "echo", "echo: not supported");
    static const char *const penalties[] = {"presence_penalty", "frequency_penalty"};
    for (int i = 0; i < 2; i++) {
        double x = 0;
        if (!get_number(b, penalties[i], -2, 2, false, &x, &have, e)) return false;
        if (x != 0) return srv_fail(e, 400, penalties[i], "%s: only 0 is supported", penalties[i]);
    }
    json_t *bias = field(b, "logit_bias");
    if (bias && !(json_is_object(bias) && json_object_size(bias) == 0))
        return srv_fail(e, 400, "logit_bias", "logit_bias: not supported");
    return true;
}

/* ---- sampling, stops, streaming ---------------------------------------------------- */

static uint64_t fresh_seed(struct mk_server *s)
{
    /* splitmix64 over a shared counter: distinct seeds for requests that give none */
    uint64_t z = __atomic_add_fetch(&s->seed_state, 0x9E3779B97F4A7C15ull, __ATOMIC_RELAXED);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static bool parse_sampling(struct mk_server *s, json_t *b, struct mk_sampling *sp, struct srv_err *e)
{
    double temp = s->can_sample ? 1.0 : 0.0, top_p = 1.0;
    long long top_k = 0, seed = 0;
    bool have, have_seed;
    if (!get_number(b, "temperature", 0, MAX_TEMPERATURE, false, &temp, &have, e) ||
        !get_number(b, "top_p", 0, 1, true, &top_p, &have, e) ||
        !get_int(b, "top_k", -1, INT32_MAX, &top_k, &have, e) ||
        !get_int(b, "seed", INT64_MIN, INT64_MAX, &seed, &have_seed, e))
        return false;
    if (!s->can_sample && temp > 0)
        return srv_fail(e, 400, "temperature",
                        "temperature: the %s backend decodes greedily; expected 0", s->eng.backend);
    *sp = (struct mk_sampling){(float)temp, top_k < 0 ? 0 : (int)top_k, (float)top_p,
                               have_seed ? (uint64_t)seed : fresh_seed(s)};
    return true;
}

static bool add_stop(struct srv_job *j, json_t *v, struct srv_err *e)
{
    const size_t n = json_is_string(v) ? json_string_length(v) : 0;
    if (n == 0 || n > SRV_MAX_STOP_BYTES || strlen(json_string_value(v)) != n)
        return srv_fail(e, 400, "stop", "stop: expected non-empty strings of at most %d bytes",
                        SRV_MAX_STOP_BYTES);
    if (j->n_stops == SRV_MAX_STOPS)
        return srv_fail(e, 400, "stop", "stop: expected at most %d strings", SRV_MAX_STOPS);
    if (!(j->stops[j->n_stops] = strdup(json_string_value(v))))
        return srv_fail(e, 500, NULL, "out of memory");
    j->n_stops++;
    return true;
}

static bool parse_stops(json_t *b, struct srv_job *j, struct srv_err *e)
{
    json_t *v = field(b, "stop");
    if (!v) return true;
    if (json_is_string(v)) return add_stop(j, v, e);
    if (!json_is_array(v)) return srv_fail(e, 400, "stop", "stop: expected a string or an array of strings");
    size_t i;
    json_t *x;
    json_array_foreach(v, i, x)
        if (!add_stop(j, x, e)) return false;
    return true;
}

static bool parse_stream(json_t *b, struct srv_job *j, struct srv_err *e)
{
    if (!get_bool(b, "stream", &j->stream, e)) return false;
    json_t *so = field(b, "stream_options");
    if (!so) return true;
    if (!j->stream) return srv_fail(e, 400, "stream_options", "stream_options: only allowed with stream: true");
    if (!json_is_object(so)) return srv_fail(e, 400, "stream_options", "stream_options: expected an object");
    if (!get_bool(so, "include_usage", &j->include_usage, e))
        return srv_fail(e, 400, "stream_options.include_usage", "stream_options.include_usage: expected true or false");
    return true;
}

/* completions: logprobs = int 0..5; chat: logprobs = bool, top_logprobs = int 0..5. */
static bool parse_logprobs(const struct mk_server *s, json_t *b, bool chat, struct srv_job *j,
                           struct srv_err *e)
{
    long long n = 0;
    bool have = false, want = false;
    if (!chat) {
        if (!get_int(b, "logprobs", 0, MK_TOP_MAX, &n, &have, e)) return false;
        want = have;
    } else {
        if (!get_bool(b, "logprobs", &want, e)) return false;
        if (!get_int(b, "top_logprobs", 0, MK_TOP_MAX, &n, &have, e)) return false;
        if (have && n > 0 && !want)
            return srv_fail(e, 400, "top_logprobs", "top_logprobs: needs logprobs: true");
    }
    if (want && !s->can_logprob)
        return srv_fail(e, 400, "logprobs", "logprobs: not available on the %s backend", s->eng.backend);
    j->logprobs = want ? (int)n : -1;
    return true;
}

/* ---- prompts ------------------------------------------------------------------------ */

static bool prompt_ids(const struct mk_server *s, json_t *arr, struct mk_ids *ids, struct srv_err *e)
{
    const int V = s->eng.model->cfg.vocab_size;
    size_t i;
    json_t *x;
    json_array_foreach(arr, i, x) {
        if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) >= V)
            return srv_fail(e, 400, "prompt", "prompt: token ids must be integers in [0, %d)", V);
        if (mk_ids_push(ids, (int32_t)json_integer_value(x)) != MK_OK)
            return srv_fail(e, 500, NULL, "out of memory");
    }
    return true;
}

static bool prompt_text(const struct mk_server *s, const char *text, struct mk_ids *ids,
                        struct srv_err *e)
{
    if (mk_prompt_text(s->eng.tok, text, ids) != MK_OK)
        return srv_fail(e, 500, NULL, "prompt: cannot tokenize");
    return true;
}

static bool parse_prompt(const struct mk_server *s, json_t *b, struct mk_ids *ids, struct srv_err *e)
{
    json_t *p = field(b, "prompt");
    if (json_is_array(p) && json_array_size(p) == 1 &&
        (json_is_string(json_array_get(p, 0)) || json_is_array(json_array_get(p, 0))))
        p = json_array_get(p, 0); /* a batch of one prompt */
    if (json_is_string(p)) return prompt_text(s, json_string_value(p), ids, e);
    if (json_is_array(p) && (json_array_size(p) == 0 || json_is_integer(json_array_get(p, 0))))
        return prompt_ids(s, p, ids, e);
    if (json_is_array(p) && json_array_size(p) > 1)
        return srv_fail(e, 400, "prompt", "prompt: expected one prompt (batches of prompts are not supported)");
    return srv_fail(e, 400, "prompt", "prompt: expected a string or an array of token ids");
}

/* "content": a string, or an array of {"type": "text", "text": ...} parts (joined). */
static bool message_content(json_t *c, char **out, struct srv_err *e)
{
    if (!c) return (*out = strdup("")) ? true : srv_fail(e, 500, NULL, "out of memory");
    if (json_is_string(c)) return (*out = strdup(json_string_value(c))) ? true : srv_fail(e, 500, NULL, "out of memory");
    if (!json_is_array(c)) return srv_fail(e, 400, "messages", "messages[].content: expected a string or an array of text parts");
    size_t len = 0, i;
    json_t *part;
    json_array_foreach(c, i, part) {
        json_t *type = json_object_get(part, "type"), *text = json_object_get(part, "text");
        if (!json_is_string(type) || strcmp(json_string_value(type), "text") || !json_is_string(text))
            return srv_fail(e, 400, "messages", "messages[].content[]: expected {\"type\": \"text\", \"text\": string}");
        len += strlen(json_string_value(text));
    }
    if (!(*out = malloc(len + 1))) return srv_fail(e, 500, NULL, "out of memory");
    len = 0;
    json_array_foreach(c, i, part) {
        const char *t = json_string_value(json_object_get(part, "text"));
        memcpy(*out + len, t, strlen(t));
        len += strlen(t);
    }
    (*out)[len] = '\0';
    return true;
}

static bool message_role(json_t *m, const char **role, struct srv_err *e)
{
    static const char *const roles[] = {"system", "user", "assistant"};
    json_t *r = json_is_object(m) ? json_object_get(m, "role") : NULL;
    if (!json_is_string(r)) return srv_fail(e, 400, "messages", "messages[]: expected objects with a string role");
    for (int k = 0; k < 3; k++)
        if (!strcmp(json_string_value(r), roles[k])) return *role = roles[k], true;
    if (!strcmp(json_string_value(r), "developer")) return *role = "system", true;
    return srv_fail(e, 400, "messages", "messages[].role: expected system, developer, user or assistant");
}

static bool render_chat(const struct mk_server *s, struct mk_chat_msg *msgs, size_t n,
                        bool thinking, struct mk_ids *ids, struct srv_err *e)
{
    const enum mk_status st = mk_prompt_chat(s->eng.tok, msgs, n, thinking, ids);
    if (st == MK_ERR_UNSUPPORTED) return srv_fail(e, 400, "messages", "this model has no chat template");
    if (st == MK_ERR_NOMEM) return srv_fail(e, 500, NULL, "out of memory");
    if (st != MK_OK) return srv_fail(e, 400, "messages", "messages: the chat template rejects this conversation");
    return true;
}

static bool parse_messages(const struct mk_server *s, json_t *b, struct mk_ids *ids, struct srv_err *e)
{
    json_t *ms = field(b, "messages");
    const size_t n = json_is_array(ms) ? json_array_size(ms) : 0;
    if (n == 0 || n > MAX_MESSAGES)
        return srv_fail(e, 400, "messages", "messages: expected an array of 1 to %d messages", MAX_MESSAGES);
    bool thinking = true;
    json_t *kw = field(b, "chat_template_kwargs");
    if (kw && !json_is_object(kw))
        return srv_fail(e, 400, "chat_template_kwargs", "chat_template_kwargs: expected an object");
    if (kw && !get_bool(kw, "enable_thinking", &thinking, e)) return false;
    struct mk_chat_msg *msgs = calloc(n, sizeof *msgs);
    if (!msgs) return srv_fail(e, 500, NULL, "out of memory");
    bool ok = true;
    for (size_t i = 0; i < n && ok; i++) {
        json_t *m = json_array_get(ms, i);
        char *content = NULL;
        ok = message_role(m, &msgs[i].role, e) && message_content(field(m, "content"), &content, e);
        msgs[i].content = content;
    }
    if (ok) ok = render_chat(s, msgs, n, thinking, ids, e);
    for (size_t i = 0; i < n; i++) free((char *)msgs[i].content);
    free(msgs);
    return ok;
}

bool srv_parse_prompt(const struct mk_server *s, json_t *b, bool chat, struct mk_ids *ids, struct srv_err *e)
{
    return chat ? parse_messages(s, b, ids, e) : parse_prompt(s, b, ids, e);
}

/* ---- the whole request ------------------------------------------------------------- */

static bool parse_budget(const struct mk_server *s, json_t *b, bool chat, struct srv_job *j,
                         struct srv_err *e)
{
    const int ctx = s->eng.ctx, n = (int)(j->prompt.n < (size_t)INT32_MAX ? j->prompt.n : INT32_MAX);
    if (n == 0) return srv_fail(e, 400, chat ? "messages" : "prompt", "prompt: expected at least one token");
    if (n >= ctx) {
        srv_fail(e, 400, chat ? "messages" : "prompt", "this model's context is %d tokens; the prompt has %d",
                 ctx, n);
        e->code = "context_length_exceeded";
        return false;
    }
    long long max = chat ? ctx - n : DEFAULT_COMPLETION_TOKENS;
    bool have;
    const char *key = chat && field(b, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
    if (!get_int(b, key, 1, INT32_MAX, &max, &have, e)) return false;
    if (max > ctx - n) {
        srv_fail(e, 400, key, "this model's context is %d tokens; the prompt has %d, leaving at most %d for %s",
                 ctx, n, ctx - n, key);
        e->code = "context_length_exceeded";
        return false;
    }
    j->req.max_tokens = (int)max;
    return true;
}

bool srv_parse_completion(struct mk_server *s, json_t *b, bool chat, struct srv_job *j,
                          struct srv_err *e)
{
    if (!srv_check_model(s, b, e) || !check_unsupported(b, e) || !parse_stream(b, j, e) ||
        !parse_stops(b, j, e) || !parse_logprobs(s, b, chat, j, e) ||
        !parse_sampling(s, b, &j->req.sampling, e) || !get_bool(b, "ignore_eos", &j->req.ignore_eos, e))
        return false;
    if (!srv_parse_prompt(s, b, chat, &j->prompt, e)) return false;
    if (!parse_budget(s, b, chat, j, e)) return false;
    j->chat = chat;
    j->req.prompt = j->prompt.ids;
    j->req.n_prompt = (int)j->prompt.n;
    j->req.top_logprobs = j->logprobs > 0 ? j->logprobs : 0;
    return true;
}
