/* tokenizer_config.json (bos/eos, chat template family) and the small accessors. */
#include "tok_load.h"

#include <stdlib.h>
#include <string.h>

const char *mk_chat_family_name(enum mk_chat_family f)
{
    switch (f) {
    case MK_CHAT_NONE: return "none";
    case MK_CHAT_CHATML: return "chatml";
    case MK_CHAT_QWEN3: return "qwen3";
    case MK_CHAT_LLAMA3: return "llama3";
    case MK_CHAT_LLAMA31: return "llama3.1";
    }
    return "unknown";
}

int32_t mk_tokenizer_token_id(const struct mk_tokenizer *t, const char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].len == n && !memcmp(t->added[i].content, s, n)) return t->added[i].id;
    if (n > 4 * MK_TOK_MAX_TOKEN_BYTES) return -1;
    char buf[4 * MK_TOK_MAX_TOKEN_BYTES];
    size_t m = mk__tok_unspell(s, n, buf);
    return mk__tok_vocab_find(t, buf, m);
}

int32_t mk_tokenizer_vocab_size(const struct mk_tokenizer *t) { return t->n_ids; }
int32_t mk_tokenizer_bos_id(const struct mk_tokenizer *t) { return t->bos_id; }
int32_t mk_tokenizer_eos_id(const struct mk_tokenizer *t) { return t->eos_id; }
bool mk_tokenizer_adds_bos(const struct mk_tokenizer *t) { return t->adds_bos; }
enum mk_chat_family mk_tokenizer_chat_family(const struct mk_tokenizer *t) { return t->chat; }

bool mk_tokenizer_is_special(const struct mk_tokenizer *t, int32_t id)
{
    return id >= 0 && id < t->n_ids && t->special[id];
}

const char *mk_tokenizer_token_bytes(const struct mk_tokenizer *t, int32_t id, size_t *len)
{
    if (id < 0 || id >= t->n_ids || !t->kind[id]) return NULL;
    if (len) *len = t->len[id];
    return t->arena + t->off[id];
}

/* bos_token / eos_token: a string or {"content": "..."}; NULL when absent. */
static const char *token_text(json_t *v)
{
    if (json_is_object(v)) v = json_object_get(v, "content");
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static enum mk_status config_token(struct mk_tokenizer *t, json_t *cfg, const char *field,
                                   int32_t *id, const char **text)
{
    const char *s = token_text(json_object_get(cfg, field));
    if (text) *text = s;
    if (!s) return MK_OK;
    *id = mk_tokenizer_token_id(t, s);
    if (*id < 0)
        return mk_error(MK_ERR_FORMAT, "tokenizer_config.json: %s: '%.60s' is not a token", field, s);
    return MK_OK;
}

/* chat_template: a string, or a list of {name, template} where "default" wins. */
static const char *template_text(json_t *cfg)
{
    json_t *ct = json_object_get(cfg, "chat_template");
    if (json_is_string(ct)) return json_string_value(ct);
    const char *first = NULL;
    for (size_t i = 0; i < json_array_size(ct); i++) {
        json_t *e = json_array_get(ct, i);
        json_t *name = json_object_get(e, "name"), *tpl = json_object_get(e, "template");
        if (!json_is_string(tpl)) continue;
        if (json_is_string(name) && !strcmp(json_string_value(name), "default"))
            return json_string_value(tpl);
        if (!first) first = json_string_value(tpl);
    }
    return first;
}

/* A ChatML template that writes a fixed system turn when the conversation has none
 * (Qwen2 / Qwen2.5): the literal between "<|im_start|>system\n" and "<|im_end|>" in a
 * quoted string, i.e. not followed by a '+' concatenation. */
static enum mk_status find_default_system(struct mk_tokenizer *t, const char *tpl)
{
    static const char head[] = "<|im_start|>system\\n";
    for (const char *p = strstr(tpl, head); p; p = strstr(p + 1, head)) {
        const char *b = p + sizeof head - 1, *e = strstr(b, "<|im_end|>");
        if (!e || e == b || memchr(b, '\'', (size_t)(e - b)) || memchr(b, '"', (size_t)(e - b)))
            continue;
        t->default_system = strndup(b, (size_t)(e - b));
        return t->default_system ? MK_OK : mk_error(MK_ERR_NOMEM, "out of memory");
    }
    return MK_OK;
}

static enum mk_status detect_chat(struct mk_tokenizer *t, const char *tpl)
{
    if (tpl) {
        if (strstr(tpl, "<|im_start|>")) {
            t->chat = strstr(tpl, "enable_thinking") ? MK_CHAT_QWEN3 : MK_CHAT_CHATML;
            return t->chat == MK_CHAT_CHATML ? find_default_system(t, tpl) : MK_OK;
        }
        if (strstr(tpl, "<|start_header_id|>"))
            t->chat = strstr(tpl, "Cutting Knowledge Date") ? MK_CHAT_LLAMA31 : MK_CHAT_LLAMA3;
        t->date_now = strstr(tpl, "strftime_now") != NULL;
        return MK_OK;
    }
    if (mk_tokenizer_token_id(t, "<|im_start|>") >= 0)
        t->chat = mk_tokenizer_token_id(t, "<think>") >= 0 ? MK_CHAT_QWEN3 : MK_CHAT_CHATML;
    else if (mk_tokenizer_token_id(t, "<|start_header_id|>") >= 0)
        t->chat = MK_CHAT_LLAMA3;
    return MK_OK;
}

enum mk_status mk__tok_read_config(struct mk_tokenizer *t, json_t *cfg)
{
    const char *bos = NULL;
    enum mk_status s = MK_OK;
    if (cfg) {
        if (!json_is_object(cfg))
            return mk_error(MK_ERR_FORMAT, "tokenizer_config.json: expected an object");
        s = config_token(t, cfg, "bos_token", &t->bos_id, &bos);
        if (s == MK_OK) s = config_token(t, cfg, "eos_token", &t->eos_id, NULL);
    }
    if (s == MK_OK) s = detect_chat(t, cfg ? template_text(cfg) : NULL);
    if (s != MK_OK) return s;
    if (!bos && (t->chat == MK_CHAT_LLAMA3 || t->chat == MK_CHAT_LLAMA31)) {
        bos = "<|begin_of_text|>";
        t->bos_id = mk_tokenizer_token_id(t, bos);
    }
    t->bos_text = strdup(bos ? bos : "");
    return t->bos_text ? MK_OK : mk_error(MK_ERR_NOMEM, "out of memory");
}
