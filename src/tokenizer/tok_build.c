/* Building the id tables, the vocab and merge hashes from tokenizer.json. */
#include "tok_load.h"

#include <stdlib.h>
#include <string.h>

size_t mk__tok_unspell(const char *s, size_t n, char *out)
{
    size_t i = 0, o = 0;
    while (i < n) {
        uint32_t cp;
        size_t k = mk__utf8_decode((const unsigned char *)s + i, n - i, &cp);
        int b = k ? mk__tok_char_byte(cp) : -1;
        if (b < 0) {
            memcpy(out, s, n);
            return n;
        }
        out[o++] = (char)b;
        i += k;
    }
    return o;
}

static uint32_t pow2_at_least(size_t n)
{
    uint32_t c = 16;
    while (c < n) c *= 2;
    return c;
}

static bool get_bool(json_t *obj, const char *key, bool dflt)
{
    json_t *v = json_object_get(obj, key);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

/* ---- model --------------------------------------------------------------------- */

static bool empty_or_null(json_t *v)
{
    return !v || json_is_null(v) || (json_is_string(v) && json_string_length(v) == 0);
}

static enum mk_status check_model(struct mk_tokenizer *t, json_t *model)
{
    if (!json_is_object(model)) return mk_error(MK_ERR_FORMAT, "model: expected an object");
    json_t *type = json_object_get(model, "type");
    if (type && !(json_is_string(type) && !strcmp(json_string_value(type), "BPE")))
        return mk_error(MK_ERR_UNSUPPORTED, "model.type: expected \"BPE\", got %s",
                        json_is_string(type) ? json_string_value(type) : "a non-string");
    json_t *dropout = json_object_get(model, "dropout");
    if (dropout && !json_is_null(dropout))
        return mk_error(MK_ERR_UNSUPPORTED, "model.dropout: expected null (no BPE dropout)");
    if (get_bool(model, "byte_fallback", false))
        return mk_error(MK_ERR_UNSUPPORTED, "model.byte_fallback: expected false");
    if (!empty_or_null(json_object_get(model, "continuing_subword_prefix")))
        return mk_error(MK_ERR_UNSUPPORTED, "model.continuing_subword_prefix: expected empty");
    if (!empty_or_null(json_object_get(model, "end_of_word_suffix")))
        return mk_error(MK_ERR_UNSUPPORTED, "model.end_of_word_suffix: expected empty");
    t->ignore_merges = get_bool(model, "ignore_merges", false);
    if (!json_is_object(json_object_get(model, "vocab")))
        return mk_error(MK_ERR_FORMAT, "model.vocab: expected an object");
    if (!json_is_array(json_object_get(model, "merges")))
        return mk_error(MK_ERR_FORMAT, "model.merges: expected an array");
    return MK_OK;
}

/* ---- added tokens --------------------------------------------------------------- */

static int cmp_added(const void *a, const void *b)
{
    int32_t x = ((const struct mk_added_token *)a)->id, y = ((const struct mk_added_token *)b)->id;
    return (x > y) - (x < y);
}

/* Parse one added-token object; `where` names it in messages. */
static enum mk_status parse_added(json_t *o, const char *where, int32_t id_or_neg,
                                  struct mk_added_token *a)
{
    if (!json_is_object(o)) return mk_error(MK_ERR_FORMAT, "%s: expected an object", where);
    json_t *content = json_object_get(o, "content");
    if (!json_is_string(content))
        return mk_error(MK_ERR_FORMAT, "%s.content: expected a string", where);
    size_t len = json_string_length(content);
    if (len > MK_TOK_MAX_TOKEN_BYTES)
        return mk_error(MK_ERR_LIMIT, "%s.content: %zu bytes, more than %d", where, len,
                        MK_TOK_MAX_TOKEN_BYTES);
    if (memchr(json_string_value(content), 0, len))
        return mk_error(MK_ERR_FORMAT, "%s.content: contains a NUL character", where);
    json_int_t id = id_or_neg;
    if (id_or_neg < 0) {
        json_t *jid = json_object_get(o, "id");
        if (!json_is_integer(jid)) return mk_error(MK_ERR_FORMAT, "%s.id: expected an integer", where);
        id = json_integer_value(jid);
    }
    if (id < 0 || id >= MK_TOK_MAX_VOCAB)
        return mk_error(MK_ERR_LIMIT, "%s.id: expected 0..%d, got %lld", where,
                        MK_TOK_MAX_VOCAB - 1, (long long)id);
    a->content = strdup(json_string_value(content));
    if (!a->content) return mk_error(MK_ERR_NOMEM, "%s: out of memory", where);
    a->len = len;
    a->id = (int32_t)id;
    a->special = get_bool(o, "special", false);
    a->lstrip = get_bool(o, "lstrip", false);
    a->rstrip = get_bool(o, "rstrip", false);
    a->normalized = get_bool(o, "normalized", !a->special);
    a->single_word = get_bool(o, "single_word", false);
    return MK_OK;
}

static enum mk_status push_added(struct mk_tokenizer *t, size_t *cap, struct mk_added_token *a)
{
    if (t->n_added == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        struct mk_added_token *p = realloc(t->added, nc * sizeof *p);
        if (!p) {
            free(a->content);
            return mk_error(MK_ERR_NOMEM, "added_tokens: out of memory");
        }
        t->added = p;
        *cap = nc;
    }
    t->added[t->n_added++] = *a;
    return MK_OK;
}

/* tokenizer.json's added_tokens, then tokenizer_config.json's added_tokens_decoder for
 * ids the former lacks (a different text for the same id is an error). */
static enum mk_status collect_added(struct mk_tokenizer *t, json_t *list, json_t *cfg)
{
    size_t cap = 0;
    char where[96];
    if (list && !json_is_null(list) && !json_is_array(list))
        return mk_error(MK_ERR_FORMAT, "added_tokens: expected an array");
    for (size_t i = 0; list && i < json_array_size(list); i++) {
        struct mk_added_token a;
        snprintf(where, sizeof where, "added_tokens[%zu]", i);
        enum mk_status s = parse_added(json_array_get(list, i), where, -1, &a);
        if (s == MK_OK) s = push_added(t, &cap, &a);
        if (s != MK_OK) return s;
    }
    size_t from_file = t->n_added;
    json_t *dec = cfg ? json_object_get(cfg, "added_tokens_decoder") : NULL;
    const char *key;
    json_t *val;
    json_object_foreach(dec, key, val) {
        char *end;
        long id = strtol(key, &end, 10);
        snprintf(where, sizeof where, "tokenizer_config.json: added_tokens_decoder[\"%.20s\"]", key);
        if (*end || end == key || id < 0 || id >= MK_TOK_MAX_VOCAB)
            return mk_error(MK_ERR_FORMAT, "%s: expected an id in 0..%d", where, MK_TOK_MAX_VOCAB - 1);
        struct mk_added_token a;
        enum mk_status s = parse_added(val, where, (int32_t)id, &a);
        if (s != MK_OK) return s;
        bool known = false;
        for (size_t j = 0; j < from_file && !known; j++) {
            if (t->added[j].id != a.id) continue;
            known = true;
            if (strcmp(t->added[j].content, a.content)) {
                s = mk_error(MK_ERR_FORMAT, "%s: content '%s' differs from tokenizer.json's '%s'",
                             where, a.content, t->added[j].content);
                free(a.content);
                return s;
            }
        }
        if (known) free(a.content);
        else if ((s = push_added(t, &cap, &a)) != MK_OK) return s;
    }
    qsort(t->added, t->n_added, sizeof *t->added, cmp_added);
    for (size_t i = 1; i < t->n_added; i++)
        if (t->added[i].id == t->added[i - 1].id)
            return mk_error(MK_ERR_FORMAT, "added_tokens: id %d used twice ('%s' and '%s')",
                            t->added[i].id, t->added[i - 1].content, t->added[i].content);
    return MK_OK;
}

/* Counting sort of the added tokens by first byte (empty ones never match). */
static enum mk_status index_added(struct mk_tokenizer *t)
{
    t->added_by_byte = malloc((t->n_added ? t->n_added : 1) * sizeof *t->added_by_byte);
    if (!t->added_by_byte) return mk_error(MK_ERR_NOMEM, "added_tokens: out of memory");
    uint32_t count[257] = {0};
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].len) count[(uint8_t)t->added[i].content[0] + 1]++;
    for (int b = 0; b < 256; b++) count[b + 1] += count[b];
    memcpy(t->added_start, count, sizeof count);
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].len) t->added_by_byte[count[(uint8_t)t->added[i].content[0]]++] = (uint32_t)i;
    return MK_OK;
}

/* ---- id tables ------------------------------------------------------------------- */

static enum mk_status size_ids(struct mk_tokenizer *t, json_t *vocab, size_t *arena_need)
{
    int64_t max_id = -1;
    size_t need = 0;
    const char *key;
    json_t *val;
    json_object_foreach(vocab, key, val) {
        if (!json_is_integer(val))
            return mk_error(MK_ERR_FORMAT, "model.vocab[\"%.40s\"]: expected an integer id", key);
        json_int_t id = json_integer_value(val);
        if (id < 0 || id >= MK_TOK_MAX_VOCAB)
            return mk_error(MK_ERR_LIMIT, "model.vocab[\"%.40s\"]: id %lld outside 0..%d", key,
                            (long long)id, MK_TOK_MAX_VOCAB - 1);
        size_t len = strlen(key);
        if (len > MK_TOK_MAX_TOKEN_BYTES)
            return mk_error(MK_ERR_LIMIT, "model.vocab: token of %zu bytes, more than %d", len,
                            MK_TOK_MAX_TOKEN_BYTES);
        if (len == 0) return mk_error(MK_ERR_FORMAT, "model.vocab: empty token (id %lld)", (long long)id);
        if (id > max_id) max_id = id;
        need += len;
    }
    for (size_t i = 0; i < t->n_added; i++) {
        if (t->added[i].id > max_id) max_id = t->added[i].id;
        need += t->added[i].len;
    }
    if (max_id < 0) return mk_error(MK_ERR_FORMAT, "model.vocab: empty");
    t->n_ids = (int32_t)(max_id + 1);
    *arena_need = need + 1;
    return MK_OK;
}

static enum mk_status fill_tokens(struct mk_tokenizer *t, json_t *vocab, size_t arena_need)
{
    size_t n = (size_t)t->n_ids;
    t->kind = calloc(n, 1);
    t->special = calloc(n, 1);
    t->off = calloc(n, sizeof *t->off);
    t->len = calloc(n, sizeof *t->len);
    t->arena = malloc(arena_need);
    if (!t->kind || !t->special || !t->off || !t->len || !t->arena)
        return mk_error(MK_ERR_NOMEM, "model.vocab: out of memory for %d ids", t->n_ids);
    size_t used = 0;
    const char *key;
    json_t *val;
    json_object_foreach(vocab, key, val) {
        int32_t id = (int32_t)json_integer_value(val);
        if (t->kind[id])
            return mk_error(MK_ERR_FORMAT, "model.vocab[\"%.40s\"]: id %d already used by another token",
                            key, id);
        t->kind[id] = MK_TOKK_VOCAB;
        t->off[id] = (uint32_t)used;
        t->len[id] = (uint32_t)mk__tok_unspell(key, strlen(key), t->arena + used);
        used += t->len[id];
    }
    for (size_t i = 0; i < t->n_added; i++) {
        const struct mk_added_token *a = &t->added[i];
        size_t l = mk__tok_unspell(a->content, a->len, t->arena + used);
        if (t->kind[a->id] & MK_TOKK_VOCAB) {
            if (l != t->len[a->id] || memcmp(t->arena + used, t->arena + t->off[a->id], l))
                return mk_error(MK_ERR_FORMAT,
                                "added_tokens: id %d ('%s') is already a different vocab token",
                                a->id, a->content);
        } else {
            t->off[a->id] = (uint32_t)used;
            t->len[a->id] = (uint32_t)l;
            used += l;
        }
        t->kind[a->id] |= MK_TOKK_ADDED;
        t->special[a->id] = a->special;
    }
    t->arena_len = used;
    return MK_OK;
}

/* ---- hashes ---------------------------------------------------------------------- */

int32_t mk__tok_vocab_find(const struct mk_tokenizer *t, const char *s, size_t n)
{
    uint32_t i = (uint32_t)mk__tok_hash(s, n) & t->vocab.mask;
    for (;; i = (i + 1) & t->vocab.mask) {
        int32_t id = t->vocab.slot[i];
        if (id < 0) return -1;
        if (t->len[id] == n && !memcmp(t->arena + t->off[id], s, n)) return id;
    }
}

static enum mk_status build_vocab_hash(struct mk_tokenizer *t)
{
    uint32_t cap = pow2_at_least((size_t)t->n_ids * 2);
    t->vocab.slot = malloc(cap * sizeof *t->vocab.slot);
    if (!t->vocab.slot) return mk_error(MK_ERR_NOMEM, "model.vocab: out of memory");
    memset(t->vocab.slot, 0xFF, cap * sizeof *t->vocab.slot);
    t->vocab.mask = cap - 1;
    for (int32_t id = 0; id < t->n_ids; id++) {
        if (!(t->kind[id] & MK_TOKK_VOCAB)) continue;
        const char *s = t->arena + t->off[id];
        int32_t other = mk__tok_vocab_find(t, s, t->len[id]);
        if (other >= 0)
            return mk_error(MK_ERR_FORMAT, "model.vocab: ids %d and %d stand for the same bytes",
                            other, id);
        uint32_t i = (uint32_t)mk__tok_hash(s, t->len[id]) & t->vocab.mask;
        while (t->vocab.slot[i] >= 0) i = (i + 1) & t->vocab.mask;
        t->vocab.slot[i] = id;
    }
    return MK_OK;
}

static enum mk_status find_byte_ids(struct mk_tokenizer *t)
{
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        t->byte_id[b] = mk__tok_vocab_find(t, &c, 1);
        if (t->byte_id[b] < 0) {
            char sym[5];
            sym[mk__utf8_encode(mk__tok_byte_char((uint8_t)b), sym)] = '\0';
            return mk_error(MK_ERR_FORMAT,
                            "model.vocab: no token for byte 0x%02X (byte-level symbol '%s')", b, sym);
        }
    }
    return MK_OK;
}

static inline uint64_t merge_key(int32_t a, int32_t b)
{
    return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
}

const struct mk_merge_slot *mk__tok_merge_find(const struct mk_tokenizer *t, int32_t a, int32_t b)
{
    uint64_t key = merge_key(a, b);
    uint32_t i = (uint32_t)mk__tok_hash(&key, 8) & t->merges.mask;
    for (;; i = (i + 1) & t->merges.mask) {
        const struct mk_merge_slot *s = &t->merges.slot[i];
        if (s->key == key) return s;
        if (s->key == UINT64_MAX) return NULL;
    }
}

/* The two halves of merges[i]: "a b" (exactly one space) or ["a", "b"]. */
static enum mk_status merge_parts(json_t *m, size_t i, char *buf, size_t cap, const char **a,
                                  const char **b)
{
    if (json_is_string(m)) {
        const char *s = json_string_value(m);
        const char *sp = strchr(s, ' ');
        size_t n = json_string_length(m);
        if (!sp || strchr(sp + 1, ' ') || sp == s || !sp[1] || n >= cap)
            return mk_error(MK_ERR_FORMAT, "model.merges[%zu]: expected \"left right\", got \"%.60s\"",
                            i, s);
        memcpy(buf, s, n + 1);
        buf[sp - s] = '\0';
        *a = buf;
        *b = buf + (sp - s) + 1;
        return MK_OK;
    }
    if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
        json_is_string(json_array_get(m, 1))) {
        *a = json_string_value(json_array_get(m, 0));
        *b = json_string_value(json_array_get(m, 1));
        return MK_OK;
    }
    return mk_error(MK_ERR_FORMAT, "model.merges[%zu]: expected a string or a pair of strings", i);
}

/* Id of a vocab token given in its spelled form; looked up in our own hash (jansson's
 * object lookup dominated load time). */
static enum mk_status vocab_id(const struct mk_tokenizer *t, const char *s, size_t n, size_t i,
                               const char *what, int32_t *id)
{
    char raw[2 * MK_TOK_MAX_TOKEN_BYTES + 2];
    size_t m = mk__tok_unspell(s, n, raw);
    *id = mk__tok_vocab_find(t, raw, m);
    if (*id < 0)
        return mk_error(MK_ERR_FORMAT, "model.merges[%zu]: %s '%.*s' not in vocab", i, what,
                        (int)(n < 60 ? n : 60), s);
    return MK_OK;
}

static enum mk_status build_merges(struct mk_tokenizer *t, json_t *model)
{
    json_t *merges = json_object_get(model, "merges");
    size_t n = json_array_size(merges);
    if (n >= (size_t)INT32_MAX / 4)
        return mk_error(MK_ERR_LIMIT, "model.merges: %zu entries, too many", n);
    uint32_t cap = pow2_at_least(n * 2);
    t->merges.slot = malloc(cap * sizeof *t->merges.slot);
    if (!t->merges.slot) return mk_error(MK_ERR_NOMEM, "model.merges: out of memory");
    memset(t->merges.slot, 0xFF, cap * sizeof *t->merges.slot);
    t->merges.mask = cap - 1;
    char buf[2 * MK_TOK_MAX_TOKEN_BYTES + 2], cat[2 * MK_TOK_MAX_TOKEN_BYTES + 2];
    for (size_t i = 0; i < n; i++) {
        const char *a = NULL, *b = NULL;
        int32_t ia = -1, ib = -1, ic = -1;
        enum mk_status s = merge_parts(json_array_get(merges, i), i, buf, sizeof buf, &a, &b);
        size_t la = s == MK_OK ? strlen(a) : 0, lb = s == MK_OK ? strlen(b) : 0;
        if (s == MK_OK && la + lb >= sizeof cat)
            s = mk_error(MK_ERR_LIMIT, "model.merges[%zu]: too long", i);
        if (s == MK_OK) s = vocab_id(t, a, la, i, "token", &ia);
        if (s == MK_OK) s = vocab_id(t, b, lb, i, "token", &ib);
        if (s != MK_OK) return s;
        memcpy(cat, a, la);
        memcpy(cat + la, b, lb + 1);
        if ((s = vocab_id(t, cat, la + lb, i, "merged token", &ic)) != MK_OK) return s;
        /* A repeated pair takes the later rank, as HF's HashMap insert does. */
        uint64_t key = merge_key(ia, ib);
        uint32_t h = (uint32_t)mk__tok_hash(&key, 8) & t->merges.mask;
        while (t->merges.slot[h].key != UINT64_MAX && t->merges.slot[h].key != key)
            h = (h + 1) & t->merges.mask;
        t->merges.slot[h] = (struct mk_merge_slot){key, (int32_t)i, ic};
    }
    return MK_OK;
}

/* ---- normalizer, pre-tokenizer, decoder, post-processor ------------------------------ */

static const char *type_of(json_t *o)
{
    json_t *ty = json_object_get(o, "type");
    return json_is_string(ty) ? json_string_value(ty) : "";
}

static enum mk_status parse_normalizer(struct mk_tokenizer *t, json_t *n)
{
    if (!n || json_is_null(n)) return MK_OK;
    const char *ty = type_of(n);
    if (!strcmp(ty, "NFC")) {
        t->nfc = true;
        return MK_OK;
    }
    if (!strcmp(ty, "Sequence")) {
        json_t *list = json_object_get(n, "normalizers");
        for (size_t i = 0; i < json_array_size(list); i++) {
            if (strcmp(type_of(json_array_get(list, i)), "NFC"))
                return mk_error(MK_ERR_UNSUPPORTED, "normalizer.normalizers[%zu].type: expected \"NFC\", got \"%s\"",
                                i, type_of(json_array_get(list, i)));
            t->nfc = true;
        }
        return MK_OK;
    }
    return mk_error(MK_ERR_UNSUPPORTED, "normalizer.type: expected null or \"NFC\", got \"%s\"", ty);
}

/* GPT-2's split pattern, used by a ByteLevel pre-tokenizer with use_regex. */
static const char gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static enum mk_status parse_one_pretok(json_t *p, const char *where, const char **pattern)
{
    const char *ty = type_of(p);
    if (!strcmp(ty, "ByteLevel")) {
        if (get_bool(p, "add_prefix_space", false))
            return mk_error(MK_ERR_UNSUPPORTED, "%s.add_prefix_space: expected false", where);
        if (get_bool(p, "use_regex", true)) {
            if (*pattern) return mk_error(MK_ERR_UNSUPPORTED, "%s: a second split regex", where);
            *pattern = gpt2_pattern;
        }
        return MK_OK;
    }
    if (!strcmp(ty, "Split")) {
        json_t *re = json_object_get(json_object_get(p, "pattern"), "Regex");
        json_t *beh = json_object_get(p, "behavior");
        if (!json_is_string(re))
            return mk_error(MK_ERR_UNSUPPORTED, "%s.pattern: expected {\"Regex\": ...}", where);
        if (!json_is_string(beh) || strcmp(json_string_value(beh), "Isolated"))
            return mk_error(MK_ERR_UNSUPPORTED, "%s.behavior: expected \"Isolated\"", where);
        if (get_bool(p, "invert", false))
            return mk_error(MK_ERR_UNSUPPORTED, "%s.invert: expected false", where);
        if (*pattern) return mk_error(MK_ERR_UNSUPPORTED, "%s: a second split regex", where);
        *pattern = json_string_value(re);
        return MK_OK;
    }
    return mk_error(MK_ERR_UNSUPPORTED, "%s.type: expected \"Split\" or \"ByteLevel\", got \"%s\"",
                    where, ty);
}

static enum mk_status parse_pretok(struct mk_tokenizer *t, json_t *p)
{
    const char *pattern = NULL;
    bool bytelevel = false;
    enum mk_status s = MK_OK;
    if (!strcmp(type_of(p), "Sequence")) {
        json_t *list = json_object_get(p, "pretokenizers");
        for (size_t i = 0; s == MK_OK && i < json_array_size(list); i++) {
            char where[64];
            snprintf(where, sizeof where, "pre_tokenizer.pretokenizers[%zu]", i);
            bytelevel |= !strcmp(type_of(json_array_get(list, i)), "ByteLevel");
            s = parse_one_pretok(json_array_get(list, i), where, &pattern);
        }
    } else {
        bytelevel = !strcmp(type_of(p), "ByteLevel");
        s = parse_one_pretok(p, "pre_tokenizer", &pattern);
    }
    if (s != MK_OK) return s;
    if (!bytelevel)
        return mk_error(MK_ERR_UNSUPPORTED, "pre_tokenizer: expected a ByteLevel step (byte-level BPE)");
    return pattern ? mk__tok_compile_regex(t, pattern) : MK_OK;
}

static enum mk_status parse_post(struct mk_tokenizer *t, json_t *p)
{
    if (!strcmp(type_of(p), "Sequence")) {
        json_t *list = json_object_get(p, "processors");
        for (size_t i = 0; i < json_array_size(list); i++) {
            enum mk_status s = parse_post(t, json_array_get(list, i));
            if (s != MK_OK) return s;
        }
        return MK_OK;
    }
    if (strcmp(type_of(p), "TemplateProcessing")) return MK_OK;
    json_t *first = json_array_get(json_object_get(p, "single"), 0);
    json_t *sp = json_object_get(first, "SpecialToken");
    if (!sp) return MK_OK;
    json_t *name = json_object_get(sp, "id");
    int32_t id = json_is_string(name) ? mk_tokenizer_token_id(t, json_string_value(name)) : -1;
    if (id < 0)
        return mk_error(MK_ERR_FORMAT, "post_processor.single[0].SpecialToken.id: not a known token");
    t->adds_bos = true;
    if (t->bos_id < 0) t->bos_id = id;
    return MK_OK;
}

enum mk_status mk__tok_build(struct mk_tokenizer *t, json_t *root, json_t *cfg)
{
    if (!json_is_object(root)) return mk_error(MK_ERR_FORMAT, "expected a JSON object");
    json_t *model = json_object_get(root, "model");
    size_t arena_need = 0;
    enum mk_status s = check_model(t, model);
    json_t *vocab = json_object_get(model, "vocab");
    if (s == MK_OK) s = collect_added(t, json_object_get(root, "added_tokens"), cfg);
    if (s == MK_OK) s = index_added(t);
    if (s == MK_OK) s = size_ids(t, vocab, &arena_need);
    if (s == MK_OK) s = fill_tokens(t, vocab, arena_need);
    if (s == MK_OK) s = build_vocab_hash(t);
    if (s == MK_OK) s = find_byte_ids(t);
    if (s == MK_OK) s = build_merges(t, model);
    if (s == MK_OK) s = parse_normalizer(t, json_object_get(root, "normalizer"));
    if (s == MK_OK) s = parse_pretok(t, json_object_get(root, "pre_tokenizer"));
    if (s == MK_OK && strcmp(type_of(json_object_get(root, "decoder")), "ByteLevel"))
        s = mk_error(MK_ERR_UNSUPPORTED, "decoder.type: expected \"ByteLevel\", got \"%s\"",
                     type_of(json_object_get(root, "decoder")));
    if (s == MK_OK) s = mk__tok_read_config(t, cfg);
    if (s == MK_OK) s = parse_post(t, json_object_get(root, "post_processor"));
    if (s == MK_OK && !(t->cache = calloc(MK_TOK_CACHE_SLOTS, sizeof *t->cache)))
        s = mk_error(MK_ERR_NOMEM, "out of memory for the word cache");
    return s;
}
