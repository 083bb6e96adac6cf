/* /tokenize and /detokenize, in vLLM's shapes:
 *   {"prompt": text} or {"messages": [...]}  ->  {"tokens": [ids], "count": n, "max_model_len": ctx}
 *   {"tokens": [ids]}                         ->  {"prompt": text}                              */
#include "server/server_int.h"

#include <stdlib.h>

enum { MAX_DETOKENIZE = 1 << 20 };

bool srv_tokenize(struct mk_server *s, json_t *body, json_t **out, struct srv_err *e)
{
    struct mk_ids ids = {0};
    if (!srv_check_model(s, body, e) || !srv_parse_prompt(s, body, json_object_get(body, "messages") != NULL, &ids, e)) {
        mk_ids_free(&ids);
        return false;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < ids.n; i++) json_array_append_new(arr, json_integer(ids.ids[i]));
    *out = json_pack("{s:o,s:I,s:i}", "tokens", arr, "count", (json_int_t)ids.n, "max_model_len", s->eng.ctx);
    mk_ids_free(&ids);
    return *out ? true : srv_fail(e, 500, NULL, "out of memory");
}

bool srv_detokenize(struct mk_server *s, json_t *body, json_t **out, struct srv_err *e)
{
    if (!srv_check_model(s, body, e)) return false;
    json_t *t = json_object_get(body, "tokens");
    if (!json_is_array(t) || json_array_size(t) > MAX_DETOKENIZE)
        return srv_fail(e, 400, "tokens", "tokens: expected an array of at most %d token ids", MAX_DETOKENIZE);
    const int32_t V = mk_tokenizer_vocab_size(s->eng.tok);
    struct mk_ids ids = {0};
    size_t i;
    json_t *x;
    json_array_foreach(t, i, x) {
        if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) >= V) {
            mk_ids_free(&ids);
            return srv_fail(e, 400, "tokens", "tokens: expected integers in [0, %d)", (int)V);
        }
        if (mk_ids_push(&ids, (int32_t)json_integer_value(x)) != MK_OK) {
            mk_ids_free(&ids);
            return srv_fail(e, 500, NULL, "out of memory");
        }
    }
    char *text = NULL;
    size_t len = 0;
    const enum mk_status st = mk_tokenizer_decode(s->eng.tok, ids.ids, ids.n, false, &text, &len);
    mk_ids_free(&ids);
    if (st != MK_OK) return srv_fail(e, 400, "tokens", "tokens: an id is not in the vocabulary");
    *out = json_pack("{s:o}", "prompt", srv_lossy_string(text, len));
    free(text);
    return *out ? true : srv_fail(e, 500, NULL, "out of memory");
}
