/* Tokenizer pieces: a tiny synthetic tokenizer (both merge formats), BPE scan vs heap,
 * the streaming decoder, chat rendering options, and clear errors for bad files written
 * to a temp dir. The oracle comparison with Hugging Face is in tests/py. */
#include "check.h"
#include "mk/tokenizer.h"
#include "tokenizer/tok_internal.h"

#include <jansson.h>
#include <stdlib.h>
#include <unistd.h>

#define QWEN3 "data/tokenizers/qwen3"
#define LLAMA3 "data/tokenizers/llama3"

/* ---- a tiny byte-level BPE: the 256 byte symbols + a few merges ------------------- */

static const char *tiny_merges[][2] = {{"a", "b"}, {"ab", "c"}, {"Ġ", "ab"}, {"c", "c"}, {"b", "c"}};
enum { N_TINY_MERGES = 5 };

static json_t *tiny_root(bool pair_format)
{
    json_t *vocab = json_object(), *merges = json_array();
    int id = 0;
    for (int b = 0; b < 256; b++) {
        char s[5];
        s[mk__utf8_encode(mk__tok_byte_char((uint8_t)b), s)] = '\0';
        json_object_set_new(vocab, s, json_integer(id++));
    }
    for (int i = 0; i < N_TINY_MERGES; i++) {
        char cat[16];
        snprintf(cat, sizeof cat, "%s%s", tiny_merges[i][0], tiny_merges[i][1]);
        if (!json_object_get(vocab, cat)) json_object_set_new(vocab, cat, json_integer(id++));
        if (pair_format) {
            json_array_append_new(merges, json_pack("[ss]", tiny_merges[i][0], tiny_merges[i][1]));
        } else {
            char line[16];
            snprintf(line, sizeof line, "%s %s", tiny_merges[i][0], tiny_merges[i][1]);
            json_array_append_new(merges, json_string(line));
        }
    }
    json_t *split = json_pack("{s:s, s:{s:s}, s:s, s:b}", "type", "Split", "pattern", "Regex",
                              " ?\\p{L}+|\\s+|.", "behavior", "Isolated", "invert", 0);
    json_t *bytelevel = json_pack("{s:s, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 0,
                                  "use_regex", 0);
    json_t *root = json_object();
    json_object_set_new(root, "added_tokens",
                        json_pack("[{s:i, s:s, s:b}]", "id", id, "content", "<|end|>", "special", 1));
    json_object_set_new(root, "normalizer", json_null());
    json_object_set_new(root, "pre_tokenizer", json_pack("{s:s, s:[o, o]}", "type", "Sequence",
                                                         "pretokenizers", split, bytelevel));
    json_object_set_new(root, "decoder", json_pack("{s:s}", "type", "ByteLevel"));
    json_object_set_new(root, "model", json_pack("{s:s, s:o, s:o}", "type", "BPE", "vocab", vocab,
                                                 "merges", merges));
    return root;
}

static struct mk_tokenizer *load_root(json_t *root, enum mk_status *st)
{
    char *text = json_dumps(root, 0);
    struct mk_tokenizer *t = NULL;
    *st = mk_tokenizer_load_json(text, strlen(text), NULL, 0, "tiny", &t);
    free(text);
    json_decref(root);
    return t;
}

static void encode_str(const struct mk_tokenizer *t, const char *s, struct mk_ids *ids)
{
    ids->n = 0;
    CHECK_OK(mk_tokenizer_encode(t, s, strlen(s), true, ids));
}

static void test_merge_formats_agree(void)
{
    enum mk_status st;
    struct mk_tokenizer *a = load_root(tiny_root(false), &st);
    CHECK_OK(st);
    struct mk_tokenizer *b = load_root(tiny_root(true), &st);
    CHECK_OK(st);
    if (!a || !b) return;
    struct mk_ids x = {0}, y = {0};
    encode_str(a, "abc abcc ab<|end|>bcbc", &x);
    encode_str(b, "abc abcc ab<|end|>bcbc", &y);
    CHECK(x.n == y.n && !memcmp(x.ids, y.ids, x.n * sizeof *x.ids));
    /* Pieces "abc", " abcc", " ab", <|end|>, "bcbc". In " abcc", "a b" (rank 0) goes
     * first, then "ab c" (rank 1) beats "Ġ ab" (rank 2): Ġ + abc + c. " ab" ends as Ġab.
     * "bcbc": both "b c" have the same rank, the left one merges first. */
    int32_t abc = mk_tokenizer_token_id(a, "abc"), sp = mk_tokenizer_token_id(a, "Ġ");
    int32_t c = mk_tokenizer_token_id(a, "c"), end = mk_tokenizer_token_id(a, "<|end|>");
    int32_t bc = mk_tokenizer_token_id(a, "bc"), gab = mk_tokenizer_token_id(a, "Ġab");
    int32_t want[] = {abc, sp, abc, c, gab, end, bc, bc};
    CHECKF(x.n == 8 && !memcmp(x.ids, want, sizeof want), "got %zu ids", x.n);
    CHECK(mk_tokenizer_vocab_size(a) == end + 1);
    CHECK(mk_tokenizer_is_special(a, end) && !mk_tokenizer_is_special(a, abc));
    CHECK(mk_tokenizer_chat_family(a) == MK_CHAT_NONE);
    char *out = NULL;
    struct mk_chat_msg m = {"user", "hi"};
    struct mk_chat_opts o = {.add_generation_prompt = true};
    CHECK(mk_tokenizer_chat_render(a, &m, 1, &o, &out, NULL) == MK_ERR_UNSUPPORTED);
    mk_ids_free(&x);
    mk_ids_free(&y);
    mk_tokenizer_free(a);
    mk_tokenizer_free(b);
}

/* ---- bad files ---------------------------------------------------------------------- */

static char tmpdir[] = "/tmp/mk_tok_test_XXXXXX";

/* Write `root` as DIR/tokenizer.json, load the directory, expect status + message part. */
static void expect_bad(json_t *root, enum mk_status want, const char *part)
{
    char path[256];
    snprintf(path, sizeof path, "%s/tokenizer.json", tmpdir);
    CHECK(json_dump_file(root, path, 0) == 0);
    json_decref(root);
    struct mk_tokenizer *t = NULL;
    enum mk_status st = mk_tokenizer_load(tmpdir, &t);
    CHECKF(st == want && strstr(mk_errmsg(), part) && !t, "want %s '%s', got %s '%s'",
           mk_status_name(want), part, mk_status_name(st), mk_errmsg());
    mk_tokenizer_free(t);
}

static json_t *vocab_of(json_t *root) { return json_object_get(json_object_get(root, "model"), "vocab"); }
static json_t *merges_of(json_t *root) { return json_object_get(json_object_get(root, "model"), "merges"); }

static void test_bad_files(void)
{
    CHECK(mkdtemp(tmpdir) != NULL);
    json_t *r = tiny_root(false);
    json_object_set_new(vocab_of(r), "zz", json_integer(-3));
    expect_bad(r, MK_ERR_LIMIT, "model.vocab[\"zz\"]: id -3");

    r = tiny_root(false);
    json_object_set_new(vocab_of(r), "zz", json_integer(7)); /* 7 is a byte symbol's id */
    expect_bad(r, MK_ERR_FORMAT, "id 7 already used");

    r = tiny_root(false);
    json_object_set_new(vocab_of(r), "zz", json_integer(MK_TOK_MAX_VOCAB + 5));
    expect_bad(r, MK_ERR_LIMIT, "outside 0..");

    r = tiny_root(false);
    json_array_append_new(merges_of(r), json_string("q ⅷ"));
    expect_bad(r, MK_ERR_FORMAT, "model.merges[5]: token 'ⅷ' not in vocab");

    r = tiny_root(true);
    json_array_append_new(merges_of(r), json_pack("[ss]", "x", "y"));
    expect_bad(r, MK_ERR_FORMAT, "model.merges[5]: merged token 'xy' not in vocab");

    r = tiny_root(false);
    json_array_append_new(merges_of(r), json_string("abc"));
    expect_bad(r, MK_ERR_FORMAT, "model.merges[5]: expected \"left right\"");

    r = tiny_root(false);
    json_object_del(vocab_of(r), "Ċ"); /* the symbol of byte 0x0A */
    expect_bad(r, MK_ERR_FORMAT, "no token for byte 0x0A");

    r = tiny_root(false);
    json_object_set_new(json_object_get(r, "model"), "type", json_string("WordPiece"));
    expect_bad(r, MK_ERR_UNSUPPORTED, "model.type");

    r = tiny_root(false);
    json_array_append_new(json_object_get(r, "added_tokens"),
                          json_pack("{s:i, s:s}", "id", 300, "content", "<x>"));
    json_array_append_new(json_object_get(r, "added_tokens"),
                          json_pack("{s:i, s:s}", "id", 300, "content", "<y>"));
    expect_bad(r, MK_ERR_FORMAT, "added_tokens: id 300 used twice");

    r = tiny_root(false);
    json_object_set_new(json_object_get(r, "pre_tokenizer"), "pretokenizers",
                        json_pack("[{s:s, s:{s:s}, s:s}, {s:s, s:b}]", "type", "Split", "pattern",
                                  "Regex", "(unclosed", "behavior", "Isolated", "type",
                                  "ByteLevel", "use_regex", 0));
    expect_bad(r, MK_ERR_FORMAT, "regex error");

    char path[256];
    snprintf(path, sizeof path, "%s/tokenizer.json", tmpdir);
    FILE *f = fopen(path, "w");
    fputs("{\"model\": {\"vocab\": {\"a\": 1, \"a\": 2}}}", f);
    fclose(f);
    struct mk_tokenizer *t = NULL;
    CHECK(mk_tokenizer_load(tmpdir, &t) == MK_ERR_FORMAT && strstr(mk_errmsg(), "duplicate"));
    CHECK(mk_tokenizer_load("/nonexistent/tok", &t) == MK_ERR_IO && !t);
    unlink(path);
    rmdir(tmpdir);
}

/* ---- the real files ------------------------------------------------------------------ */

static struct mk_tokenizer *qwen, *llama;

static void test_real_files_metadata(void)
{
    CHECK_OK(mk_tokenizer_load(QWEN3, &qwen));
    CHECK_OK(mk_tokenizer_load(LLAMA3 "/tokenizer.json", &llama));
    if (!qwen || !llama) return;
    CHECK(mk_tokenizer_vocab_size(qwen) == 151669);
    CHECK(mk_tokenizer_token_id(qwen, "<|im_end|>") == 151645);
    CHECK(mk_tokenizer_token_id(qwen, "Ġthe") == 279);
    CHECK(mk_tokenizer_token_id(qwen, "no such token at all") == -1);
    CHECK(mk_tokenizer_eos_id(qwen) == 151645 && mk_tokenizer_bos_id(qwen) == -1);
    CHECK(!mk_tokenizer_adds_bos(qwen) && mk_tokenizer_chat_family(qwen) == MK_CHAT_QWEN3);
    CHECK(mk_tokenizer_vocab_size(llama) == 128256);
    CHECK(mk_tokenizer_bos_id(llama) == 128000 && mk_tokenizer_eos_id(llama) == 128009);
    CHECK(mk_tokenizer_adds_bos(llama) && mk_tokenizer_chat_family(llama) == MK_CHAT_LLAMA3);
    size_t n;
    const char *b = mk_tokenizer_token_bytes(qwen, 279, &n);
    CHECK(b && n == 4 && !memcmp(b, " the", 4));
    CHECK(!mk_tokenizer_token_bytes(qwen, 151669, &n) && !mk_tokenizer_token_bytes(qwen, -1, &n));
}

static void test_invalid_utf8_keeps_ids(void)
{
    if (!qwen) return;
    struct mk_ids ids = {0};
    CHECK_OK(mk_tokenizer_encode(qwen, "hi", 2, false, &ids));
    size_t n = ids.n;
    CHECK(mk_tokenizer_encode(qwen, "ok\xC3(", 4, false, &ids) == MK_ERR_ARG);
    CHECKF(strstr(mk_errmsg(), "invalid UTF-8 at byte 2"), "%s", mk_errmsg());
    CHECK(mk_tokenizer_encode(qwen, "\xED\xA0\x80", 3, false, &ids) == MK_ERR_ARG); /* surrogate */
    CHECK(mk_tokenizer_encode(qwen, "\xF0\x82\x82\xAC", 4, false, &ids) == MK_ERR_ARG); /* overlong */
    CHECK(ids.n == n);
    CHECK_OK(mk_tokenizer_encode(qwen, "a\0b", 3, false, &ids)); /* NUL is text */
    CHECK(ids.n > n);
    mk_ids_free(&ids);
}

/* BPE's quadratic scan and heap must agree on every word. */
static void test_bpe_scan_equals_heap(void)
{
    if (!qwen || !llama) return;
    static const char alphabet[] = "aaabbeeinnorsttt  \n..,\xC3\xA9\xE4\xB8\xAD";
    unsigned seed = 12345;
    struct mk_ids x = {0}, y = {0};
    int bad = 0;
    for (int k = 0; k < 3000; k++) {
        char w[64];
        size_t n = 2 + k % 62;
        for (size_t i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            w[i] = alphabet[(seed >> 16) % (sizeof alphabet - 1)];
        }
        const struct mk_tokenizer *t = k % 2 ? qwen : llama;
        x.n = y.n = 0;
        CHECK_OK(mk__tok_bpe_word(t, w, n, 1, &x));
        CHECK_OK(mk__tok_bpe_word(t, w, n, 2, &y));
        bad += x.n != y.n || memcmp(x.ids, y.ids, x.n * sizeof *x.ids);
    }
    CHECKF(bad == 0, "%d words differ", bad);
    mk_ids_free(&x);
    mk_ids_free(&y);
}

/* ---- streaming decode ---------------------------------------------------------------- */

static bool valid_utf8(const char *s, size_t n) { return mk__utf8_validate(s, n) == n; }

static void test_stream_never_splits_characters(void)
{
    if (!qwen) return;
    const char *text = "Grüße, 世界! 👨‍👩‍👧 🇺🇸 ok €€€ \xF0\x9F\x98\x80";
    struct mk_ids ids = {0};
    CHECK_OK(mk_tokenizer_encode(qwen, text, strlen(text), false, &ids));
    /* also push it byte by byte: one single-byte token per UTF-8 byte */
    for (const char *p = text; *p; p++) mk_ids_push(&ids, qwen->byte_id[(uint8_t)*p]);
    struct mk_tok_stream *s;
    CHECK_OK(mk_tok_stream_new(qwen, false, &s));
    struct mk_buf all = {0};
    int empty_pushes = 0;
    for (size_t i = 0; i < ids.n; i++) {
        const char *out;
        size_t n;
        CHECK_OK(mk_tok_stream_push(s, ids.ids[i], &out, &n));
        CHECK(valid_utf8(out, n));
        empty_pushes += n == 0;
        mk__buf_put(&all, out, n);
    }
    const char *out;
    size_t n;
    mk_tok_stream_flush(s, &out, &n);
    CHECK(n == 0);
    char *whole;
    size_t wn;
    CHECK_OK(mk_tokenizer_decode(qwen, ids.ids, ids.n, false, &whole, &wn));
    CHECK(all.n == wn && !memcmp(all.p, whole, wn));
    CHECK(wn == 2 * strlen(text) && !memcmp(whole, text, strlen(text)));
    CHECK(empty_pushes > 10); /* the byte-by-byte half held bytes back */
    free(whole);
    free(all.p);
    mk_ids_free(&ids);
    mk_tok_stream_free(s);
}

static void test_stream_invalid_and_flush(void)
{
    if (!qwen) return;
    struct mk_tok_stream *s;
    CHECK_OK(mk_tok_stream_new(qwen, true, &s));
    const char *out;
    size_t n;
    CHECK_OK(mk_tok_stream_push(s, qwen->byte_id[0xE2], &out, &n)); /* start of € */
    CHECK(n == 0);
    CHECK_OK(mk_tok_stream_push(s, qwen->byte_id['a'], &out, &n)); /* breaks it */
    CHECK(n == 4 && !memcmp(out, "\xEF\xBF\xBD" "a", 4));
    CHECK_OK(mk_tok_stream_push(s, qwen->byte_id[0xFF], &out, &n)); /* never valid */
    CHECK(n == 3 && !memcmp(out, "\xEF\xBF\xBD", 3));
    CHECK_OK(mk_tok_stream_push(s, 151645, &out, &n)); /* special, skipped */
    CHECK(n == 0);
    CHECK(mk_tok_stream_push(s, 999999, &out, &n) == MK_ERR_ARG);
    CHECK_OK(mk_tok_stream_push(s, qwen->byte_id[0xF0], &out, &n));
    CHECK_OK(mk_tok_stream_push(s, qwen->byte_id[0x9F], &out, &n));
    CHECK(n == 0);
    mk_tok_stream_flush(s, &out, &n); /* an incomplete tail comes out as one U+FFFD */
    CHECK(n == 3 && !memcmp(out, "\xEF\xBF\xBD", 3));
    mk_tok_stream_flush(s, &out, &n);
    CHECK(n == 0);
    mk_tok_stream_free(s);
}

/* ---- chat options through the API ------------------------------------------------------ */

static void test_chat_options(void)
{
    if (!qwen || !llama) return;
    struct mk_chat_msg m[] = {{"user", "hi"}, {"assistant", "yo"}};
    struct mk_chat_opts o = {.add_generation_prompt = false, .enable_thinking = true};
    char *out;
    size_t n;
    CHECK_OK(mk_tokenizer_chat_render(qwen, m, 2, &o, &out, &n));
    CHECKF(!strcmp(out, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n\n"
                        "</think>\n\nyo<|im_end|>\n"), "%s", out);
    free(out);
    CHECK_OK(mk_tokenizer_chat_render(llama, m, 1, &o, &out, &n));
    CHECK(!strcmp(out, "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"));
    free(out);
    struct mk_chat_msg bad = {"user", NULL};
    CHECK(mk_tokenizer_chat_render(qwen, &bad, 1, &o, &out, &n) == MK_ERR_ARG);
    struct mk_chat_msg bad8 = {"user", "\xC0\x80"};
    CHECK(mk_tokenizer_chat_render(qwen, &bad8, 1, &o, &out, &n) == MK_ERR_ARG);
}

/* Llama 3.1 family (detected from the template text): system block with the knowledge
 * cutoff and date first, the system message trimmed into it. Expected text written from
 * the official 3.1 template (no oracle file for 3.1 in data/). */
static void test_llama31_system_block(void)
{
    FILE *f = fopen(LLAMA3 "/tokenizer.json", "rb");
    CHECK(f != NULL);
    if (!f) return;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *text = malloc((size_t)n);
    CHECK(fread(text, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    const char *cfg = "{\"bos_token\": \"<|begin_of_text|>\", \"eos_token\": \"<|eot_id|>\", "
                      "\"chat_template\": \"<|start_header_id|> Cutting Knowledge Date\"}";
    struct mk_tokenizer *t = NULL;
    CHECK_OK(mk_tokenizer_load_json(text, (size_t)n, cfg, strlen(cfg), "llama31", &t));
    free(text);
    if (!t) return;
    CHECK(mk_tokenizer_chat_family(t) == MK_CHAT_LLAMA31);
    struct mk_chat_msg m[] = {{"system", "  Be brief. "}, {"user", "hi "}};
    struct mk_chat_opts o = {.add_generation_prompt = true, .date_string = "01 Jan 2026"};
    char *out;
    CHECK_OK(mk_tokenizer_chat_render(t, m, 2, &o, &out, NULL));
    CHECKF(!strcmp(out, "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
                        "Cutting Knowledge Date: December 2023\nToday Date: 01 Jan 2026\n\n"
                        "Be brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
                        "<|start_header_id|>assistant<|end_header_id|>\n\n"), "%s", out);
    free(out);
    o.date_string = NULL;
    CHECK_OK(mk_tokenizer_chat_render(t, m + 1, 1, &o, &out, NULL));
    CHECKF(strstr(out, "Today Date: 26 Jul 2024\n\n<|eot_id|><|start_header_id|>user"), "%s", out);
    free(out);
    struct mk_chat_msg tool = {"tool", "42"};
    CHECK(mk_tokenizer_chat_render(t, &tool, 1, &o, &out, NULL) == MK_ERR_UNSUPPORTED);
    mk_tokenizer_free(t);
}

int main(void)
{
    RUN(test_merge_formats_agree);
    RUN(test_bad_files);
    RUN(test_real_files_metadata);
    RUN(test_invalid_utf8_keeps_ids);
    RUN(test_bpe_scan_equals_heap);
    RUN(test_stream_never_splits_characters);
    RUN(test_stream_invalid_and_flush);
    RUN(test_chat_options);
    RUN(test_llama31_system_block);
    mk_tokenizer_free(qwen);
    mk_tokenizer_free(llama);
    CHECK_EXIT();
}
