/* Chat prompts: hand-written equivalents of the Jinja chat templates of the supported
 * families, byte-for-byte what transformers' apply_chat_template renders (no tools).
 * Each renderer below follows its template's text; comments quote the template where
 * the behaviour is not obvious. */
#include "tok_internal.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- Python string helpers the templates use ------------------------------------- */

static bool ends_with(const char *s, size_t n, const char *suf)
{
    size_t k = strlen(suf);
    return n >= k && !memcmp(s + n - k, suf, k);
}

/* Jinja `trim` = Python str.strip(): Unicode whitespace at both ends. */
static void py_strip(const char **s, size_t *n)
{
    const unsigned char *u = (const unsigned char *)*s;
    size_t b = 0, e = *n;
    uint32_t cp;
    size_t k;
    while (b < e && (k = mk__utf8_decode(u + b, e - b, &cp)) && mk__py_isspace(cp)) b += k;
    while (e > b) {
        size_t p = e - 1;
        while (p > b && (u[p] & 0xC0) == 0x80) p--;
        if (!(k = mk__utf8_decode(u + p, e - p, &cp)) || !mk__py_isspace(cp)) break;
        e = p;
    }
    *s += b;
    *n = e - b;
}

static void strip_nl(const char **s, size_t *n, bool left, bool right)
{
    while (left && *n && **s == '\n') (*s)++, (*n)--;
    while (right && *n && (*s)[*n - 1] == '\n') (*n)--;
}

/* Last occurrence of `needle` in s[0..n), or NULL. */
static const char *last_of(const char *s, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = n >= k ? n - k + 1 : 0; i-- > 0;)
        if (!memcmp(s + i, needle, k)) return s + i;
    return NULL;
}

static const char *first_of(const char *s, size_t n, const char *needle)
{
    return memmem(s, n, needle, strlen(needle));
}

/* ---- ChatML / Qwen3 ---------------------------------------------------------------- */

static bool is_tool_response(const char *c)
{
    size_t n = strlen(c);
    return !strncmp(c, "<tool_response>", 15) && ends_with(c, n, "</tool_response>");
}

/* Qwen3 assistant turn: split "<think>...</think>" off the content; the think block is
 * written back only after the last user query, and there only for the last message or
 * when it has reasoning:
 *   {%- if loop.index0 > ns.last_query_index %}
 *       {%- if loop.last or (not loop.last and reasoning_content) %} */
static enum mk_status qwen3_assistant(struct mk_buf *b, const char *content, bool after_query,
                                      bool last)
{
    const char *c = content, *r = "";
    size_t cn = strlen(content), rn = 0;
    const char *end = first_of(content, cn, "</think>");
    if (end) {
        /* content = content.split('</think>')[-1].lstrip('\n') */
        const char *close = last_of(content, cn, "</think>");
        c = close + 8;
        cn = (size_t)(content + strlen(content) - c);
        strip_nl(&c, &cn, true, false);
        /* reasoning = content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') */
        r = content;
        rn = (size_t)(end - content);
        strip_nl(&r, &rn, false, true);
        const char *open = last_of(r, rn, "<think>");
        if (open) {
            rn -= (size_t)(open + 7 - r);
            r = open + 7;
        }
        strip_nl(&r, &rn, true, false);
    }
    enum mk_status st = mk__buf_puts(b, "<|im_start|>assistant\n");
    if (after_query && (last || rn)) {
        strip_nl(&r, &rn, true, true);
        strip_nl(&c, &cn, true, false);
        if (st == MK_OK) st = mk__buf_puts(b, "<think>\n");
        if (st == MK_OK) st = mk__buf_put(b, r, rn);
        if (st == MK_OK) st = mk__buf_puts(b, "\n</think>\n\n");
    }
    if (st == MK_OK) st = mk__buf_put(b, c, cn);
    if (st == MK_OK) st = mk__buf_puts(b, "<|im_end|>\n");
    return st;
}

static enum mk_status put3(struct mk_buf *b, const char *x, const char *y, const char *z)
{
    enum mk_status st = mk__buf_puts(b, x);
    if (st == MK_OK) st = mk__buf_puts(b, y);
    if (st == MK_OK) st = mk__buf_puts(b, z);
    return st;
}

static enum mk_status render_chatml(const struct mk_tokenizer *t, const struct mk_chat_msg *m,
                                    size_t n, const struct mk_chat_opts *o, struct mk_buf *b)
{
    bool qwen3 = t->chat == MK_CHAT_QWEN3;
    enum mk_status st = MK_OK;
    if (n && !strcmp(m[0].role, "system"))
        st = put3(b, "<|im_start|>system\n", m[0].content, "<|im_end|>\n");
    else if (t->default_system)
        st = put3(b, "<|im_start|>system\n", t->default_system, "<|im_end|>\n");
    /* Qwen3: the index of the last user turn that is not a tool response; assistant
     * turns after it keep their <think> block. */
    size_t last_query = n ? n - 1 : 0;
    for (size_t i = n; i-- > 0;)
        if (!strcmp(m[i].role, "user") && !is_tool_response(m[i].content)) {
            last_query = i;
            break;
        }
    for (size_t i = 0; i < n && st == MK_OK; i++) {
        const char *role = m[i].role;
        if (!strcmp(role, "system") && i == 0) continue;
        if (!qwen3 || !strcmp(role, "user") || !strcmp(role, "system")) {
            st = put3(b, "<|im_start|>", role, "\n");
            if (st == MK_OK) st = put3(b, m[i].content, "<|im_end|>", "\n");
        } else if (!strcmp(role, "assistant")) {
            st = qwen3_assistant(b, m[i].content, i > last_query, i == n - 1);
        } else if (!strcmp(role, "tool")) {
            if (i == 0 || strcmp(m[i - 1].role, "tool")) st = mk__buf_puts(b, "<|im_start|>user");
            if (st == MK_OK) st = put3(b, "\n<tool_response>\n", m[i].content, "\n</tool_response>");
            if (st == MK_OK && (i == n - 1 || strcmp(m[i + 1].role, "tool")))
                st = mk__buf_puts(b, "<|im_end|>\n");
        }
        /* any other role: the Qwen3 template writes nothing for it */
    }
    if (st == MK_OK && o->add_generation_prompt) {
        st = mk__buf_puts(b, "<|im_start|>assistant\n");
        if (st == MK_OK && qwen3 && !o->enable_thinking) st = mk__buf_puts(b, "<think>\n\n</think>\n\n");
    }
    return st;
}

/* ---- Llama 3 ------------------------------------------------------------------------ */

static enum mk_status llama_turn(struct mk_buf *b, const char *role, const char *content)
{
    const char *c = content;
    size_t cn = strlen(content);
    py_strip(&c, &cn); /* message['content'] | trim */
    enum mk_status st = put3(b, "<|start_header_id|>", role, "<|end_header_id|>\n\n");
    if (st == MK_OK) st = mk__buf_put(b, c, cn);
    if (st == MK_OK) st = mk__buf_puts(b, "<|eot_id|>");
    return st;
}

static enum mk_status render_llama3(const struct mk_tokenizer *t, const struct mk_chat_msg *m,
                                    size_t n, const struct mk_chat_opts *o, struct mk_buf *b)
{
    enum mk_status st = MK_OK;
    /* {% if loop.index0 == 0 %}{% set content = bos_token + content %}: BOS comes with
     * the first message, so an empty conversation has none. */
    if (n) st = mk__buf_puts(b, t->bos_text);
    for (size_t i = 0; i < n && st == MK_OK; i++) st = llama_turn(b, m[i].role, m[i].content);
    if (st == MK_OK && o->add_generation_prompt)
        st = mk__buf_puts(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
    return st;
}

/* Llama 3.1+: a system block always comes first, carrying the knowledge cutoff, the
 * date and the (trimmed) system message if the conversation starts with one. */
static enum mk_status render_llama31(const struct mk_tokenizer *t, const struct mk_chat_msg *m,
                                     size_t n, const struct mk_chat_opts *o, struct mk_buf *b)
{
    const char *sys = "";
    size_t sn = 0;
    if (n && !strcmp(m[0].role, "system")) {
        sys = m[0].content;
        sn = strlen(sys);
        py_strip(&sys, &sn);
        m++;
        n--;
    }
    /* date_string defaults to "26 Jul 2024", or to today where the template calls
     * strftime_now("%d %b %Y") (Llama 3.2), as transformers provides that function. */
    char today[32] = "26 Jul 2024";
    if (t->date_now) {
        time_t now = time(NULL);
        struct tm tm;
        strftime(today, sizeof today, "%d %b %Y", localtime_r(&now, &tm));
    }
    enum mk_status st = put3(b, t->bos_text, "<|start_header_id|>system<|end_header_id|>\n\n",
                             "Cutting Knowledge Date: December 2023\n");
    if (st == MK_OK) st = put3(b, "Today Date: ", o->date_string ? o->date_string : today, "\n\n");
    if (st == MK_OK) st = mk__buf_put(b, sys, sn);
    if (st == MK_OK) st = mk__buf_puts(b, "<|eot_id|>");
    for (size_t i = 0; i < n && st == MK_OK; i++) {
        if (!strcmp(m[i].role, "tool") || !strcmp(m[i].role, "ipython"))
            return mk_error(MK_ERR_UNSUPPORTED, "messages[%zu]: role '%s' (tool calls) is not supported",
                            i, m[i].role);
        st = llama_turn(b, m[i].role, m[i].content);
    }
    if (st == MK_OK && o->add_generation_prompt)
        st = mk__buf_puts(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
    return st;
}

enum mk_status mk_tokenizer_chat_render(const struct mk_tokenizer *t, const struct mk_chat_msg *m,
                                        size_t n, const struct mk_chat_opts *o, char **out,
                                        size_t *out_len)
{
    *out = NULL;
    for (size_t i = 0; i < n; i++) {
        if (!m[i].role || !m[i].content)
            return mk_error(MK_ERR_ARG, "messages[%zu]: role and content are required", i);
        if (mk__utf8_validate(m[i].content, strlen(m[i].content)) != strlen(m[i].content) ||
            mk__utf8_validate(m[i].role, strlen(m[i].role)) != strlen(m[i].role))
            return mk_error(MK_ERR_ARG, "messages[%zu]: invalid UTF-8", i);
    }
    struct mk_buf b = {0};
    enum mk_status st = mk__buf_put(&b, "", 0);
    if (st == MK_OK) {
        switch (t->chat) {
        case MK_CHAT_CHATML:
        case MK_CHAT_QWEN3: st = render_chatml(t, m, n, o, &b); break;
        case MK_CHAT_LLAMA3: st = render_llama3(t, m, n, o, &b); break;
        case MK_CHAT_LLAMA31: st = render_llama31(t, m, n, o, &b); break;
        case MK_CHAT_NONE:
            st = mk_error(MK_ERR_UNSUPPORTED, "tokenizer: no known chat template "
                                              "(tokenizer_config.json chat_template)");
            break;
        }
    }
    if (st != MK_OK) {
        free(b.p);
        return st;
    }
    *out = b.p;
    if (out_len) *out_len = b.n;
    return MK_OK;
}
