/* mk tokenize — text (or a chat conversation) to token ids with a tokenizer.json. */
#include "cli.h"
#include "mk/tokenizer.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: mk tokenize --tokenizer FILE|DIR [--text TEXT] [--special] [--jsonl]\n"
    "       mk tokenize --tokenizer FILE|DIR --chat [--thinking on|off] [--render]\n"
    "  Text comes from --text or stdin (all of it, byte for byte); the ids are printed\n"
    "  as one JSON array. No BOS is added (HF add_special_tokens=False).\n"
    "  --tokenizer P   tokenizer.json, or a directory holding it (and tokenizer_config.json)\n"
    "  --special       special tokens written in the text (\"<|im_end|>\") become their ids\n"
    "  --jsonl         each stdin line is a JSON string; each output line its JSON id array\n"
    "  --chat          stdin is a JSON array of {\"role\", \"content\"} messages; prints the\n"
    "                  ids of the rendered prompt with the generation prompt appended\n"
    "  --thinking on|off  Qwen3: off appends an empty <think></think> block (default on)\n"
    "  --render        with --chat: print the prompt text instead of ids\n"
    "  --chat --jsonl  each stdin line is one conversation; each output line its ids (or,\n"
    "                  with --render, the JSON string of its prompt)\n";

struct opts {
    const char *tokenizer, *text;
    bool special, jsonl, chat, render, thinking;
};

static int parse_args(int argc, char **argv, struct opts *o)
{
    *o = (struct opts){.thinking = true};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "--tokenizer") || !strcmp(a, "--text") || !strcmp(a, "--thinking")) {
            if (!(v = cli_value(argv[0], argc, argv, &i))) return MK_EXIT_USAGE;
            if (!strcmp(a, "--tokenizer")) o->tokenizer = v;
            else if (!strcmp(a, "--text")) o->text = v;
            else if (!strcmp(v, "on") || !strcmp(v, "off")) o->thinking = !strcmp(v, "on");
            else return cli_usage_error(argv[0], usage, "--thinking expects on or off, got '%s'", v);
        } else if (!strcmp(a, "--special")) {
            o->special = true;
        } else if (!strcmp(a, "--jsonl")) {
            o->jsonl = true;
        } else if (!strcmp(a, "--chat")) {
            o->chat = true;
        } else if (!strcmp(a, "--render")) {
            o->render = true;
        } else {
            return cli_usage_error(argv[0], usage, "unknown option '%s'", a);
        }
    }
    if (!o->tokenizer) return cli_usage_error(argv[0], usage, "--tokenizer is required");
    if (o->jsonl && o->text)
        return cli_usage_error(argv[0], usage, "--jsonl reads stdin; it excludes --text");
    if (o->render && !o->chat) return cli_usage_error(argv[0], usage, "--render needs --chat");
    if (o->chat && o->text) return cli_usage_error(argv[0], usage, "--chat reads stdin, not --text");
    return MK_EXIT_OK;
}

static void print_ids(const struct mk_ids *ids)
{
    putchar('[');
    for (size_t i = 0; i < ids->n; i++) printf(i ? ",%d" : "%d", ids->ids[i]);
    fputs("]\n", stdout);
}

static int fail(const char *what)
{
    fprintf(stderr, "mk tokenize: %s%s\n", what, mk_errmsg());
    return MK_EXIT_FAIL;
}

static int run_chat(const struct mk_tokenizer *tok, const struct opts *o, const char *in,
                    size_t len);

/* One JSON value per stdin line: a string to encode, or with --chat a conversation. */
static int run_jsonl(const struct mk_tokenizer *tok, const struct opts *o)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int rc = MK_EXIT_OK;
    struct mk_ids ids = {0};
    for (long lineno = 1; rc == MK_EXIT_OK && (n = getline(&line, &cap, stdin)) > 0; lineno++) {
        if (o->chat) {
            rc = run_chat(tok, o, line, (size_t)n);
            continue;
        }
        json_error_t err;
        json_t *s = json_loadb(line, (size_t)n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
        if (!json_is_string(s)) {
            fprintf(stderr, "mk tokenize: stdin line %ld: expected a JSON string%s%s\n", lineno,
                    s ? "" : ": ", s ? "" : err.text);
            rc = MK_EXIT_FAIL;
        } else {
            ids.n = 0;
            if (mk_tokenizer_encode(tok, json_string_value(s), json_string_length(s), o->special,
                                    &ids) != MK_OK) {
                fprintf(stderr, "mk tokenize: stdin line %ld: %s\n", lineno, mk_errmsg());
                rc = MK_EXIT_FAIL;
            } else {
                print_ids(&ids);
            }
        }
        json_decref(s);
    }
    free(line);
    mk_ids_free(&ids);
    return rc;
}

/* Parse the conversation; the strings point into *root, which the caller frees. */
static int parse_chat(const char *text, size_t len, json_t **root, struct mk_chat_msg **msgs,
                      size_t *n)
{
    json_error_t err;
    *root = json_loadb(text, len, 0, &err);
    if (!json_is_array(*root)) {
        fprintf(stderr, "mk tokenize: --chat: stdin: expected a JSON array of messages%s%s\n",
                *root ? "" : ": ", *root ? "" : err.text);
        return MK_EXIT_FAIL;
    }
    *n = json_array_size(*root);
    *msgs = calloc(*n ? *n : 1, sizeof **msgs);
    if (!*msgs) return fail("out of memory");
    for (size_t i = 0; i < *n; i++) {
        json_t *m = json_array_get(*root, i);
        json_t *role = json_object_get(m, "role"), *content = json_object_get(m, "content");
        if (!json_is_string(role) || !json_is_string(content)) {
            fprintf(stderr, "mk tokenize: --chat: messages[%zu]: expected string role and content\n", i);
            return MK_EXIT_FAIL;
        }
        (*msgs)[i] = (struct mk_chat_msg){json_string_value(role), json_string_value(content)};
    }
    return MK_EXIT_OK;
}

/* --render --jsonl prints the prompt as one JSON string line. */
static void print_text(const char *p, size_t n, bool as_json)
{
    if (!as_json) {
        fwrite(p, 1, n, stdout);
        return;
    }
    json_t *s = json_stringn(p, n);
    char *dump = s ? json_dumps(s, JSON_ENCODE_ANY) : NULL;
    printf("%s\n", dump ? dump : "null");
    free(dump);
    json_decref(s);
}

static int run_chat(const struct mk_tokenizer *tok, const struct opts *o, const char *in,
                    size_t len)
{
    json_t *root = NULL;
    struct mk_chat_msg *msgs = NULL;
    size_t n = 0;
    int rc = parse_chat(in, len, &root, &msgs, &n);
    char *prompt = NULL;
    size_t plen = 0;
    struct mk_ids ids = {0};
    struct mk_chat_opts co = {.add_generation_prompt = true, .enable_thinking = o->thinking};
    if (rc == MK_EXIT_OK && mk_tokenizer_chat_render(tok, msgs, n, &co, &prompt, &plen) != MK_OK)
        rc = fail("--chat: ");
    if (rc == MK_EXIT_OK && o->render) print_text(prompt, plen, o->jsonl);
    else if (rc == MK_EXIT_OK && mk_tokenizer_encode(tok, prompt, plen, true, &ids) != MK_OK)
        rc = fail("--chat: ");
    else if (rc == MK_EXIT_OK) print_ids(&ids);
    mk_ids_free(&ids);
    free(prompt);
    free(msgs);
    json_decref(root);
    return rc;
}

int mk_cmd_tokenize(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        fputs(usage, stdout);
        return MK_EXIT_OK;
    }
    struct opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc != MK_EXIT_OK) return rc;
    struct mk_tokenizer *tok;
    if (mk_tokenizer_load(o.tokenizer, &tok) != MK_OK) return fail("");
    if (o.jsonl) {
        rc = run_jsonl(tok, &o);
    } else {
        size_t len = o.text ? strlen(o.text) : 0;
        char *in = o.text ? NULL : cli_read_stdin(&len);
        const char *text = o.text ? o.text : in;
        struct mk_ids ids = {0};
        if (!text) rc = fail("out of memory reading stdin");
        else if (o.chat) rc = run_chat(tok, &o, text, len);
        else if (mk_tokenizer_encode(tok, text, len, o.special, &ids) != MK_OK) rc = fail("");
        else print_ids(&ids);
        mk_ids_free(&ids);
        free(in);
    }
    mk_tokenizer_free(tok);
    return rc;
}
