/* mk detokenize — token ids to text. */
#include "cli.h"
#include "mk/tokenizer.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: mk detokenize --tokenizer FILE|DIR [--ids IDS] [--skip-special] [--jsonl]\n"
    "  Ids come from --ids or stdin, as a JSON array \"[1,2,3]\" or a comma list \"1,2,3\";\n"
    "  the text is printed as is (no newline added). Bytes that are not valid UTF-8\n"
    "  become U+FFFD, as in Hugging Face's decoder.\n"
    "  --tokenizer P    tokenizer.json, or a directory holding it\n"
    "  --skip-special   drop special tokens (<|im_end|>, <|eot_id|>, ...)\n"
    "  --jsonl          each stdin line is a JSON array of ids; each output line the JSON\n"
    "                   string of its text\n";

/* Parse "[1, 2]" or "1,2" (whitespace anywhere) into ids. */
static bool parse_ids(const char *s, struct mk_ids *ids, const char **err)
{
    while (isspace((unsigned char)*s)) s++;
    bool bracket = *s == '[';
    if (bracket) s++;
    for (bool first = true;; first = false) {
        while (isspace((unsigned char)*s)) s++;
        if (bracket && *s == ']') {
            if (!first && s[-1] == ',') break;
            s++;
            while (isspace((unsigned char)*s)) s++;
            if (*s) break;
            return true;
        }
        if (!bracket && !*s && first) return true;
        if (!first) {
            if (*s != ',') {
                if (!bracket && !*s) return true;
                break;
            }
            s++;
            while (isspace((unsigned char)*s)) s++;
        }
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (end == s || errno || v < INT32_MIN || v > INT32_MAX) break;
        if (mk_ids_push(ids, (int32_t)v) != MK_OK) {
            *err = "out of memory";
            return false;
        }
        s = end;
    }
    *err = "expected a JSON array of integers or a comma-separated list";
    return false;
}

/* Decode one id list; prints raw text, or a JSON string line in jsonl mode. */
static int emit(const struct mk_tokenizer *tok, const struct mk_ids *ids, bool skip, bool jsonl,
                long lineno)
{
    char *text;
    size_t len;
    if (mk_tokenizer_decode(tok, ids->ids, ids->n, skip, &text, &len) != MK_OK) {
        if (lineno) fprintf(stderr, "mk detokenize: stdin line %ld: %s\n", lineno, mk_errmsg());
        else fprintf(stderr, "mk detokenize: %s\n", mk_errmsg());
        return MK_EXIT_FAIL;
    }
    if (jsonl) {
        json_t *s = json_stringn(text, len);
        char *dump = s ? json_dumps(s, JSON_ENCODE_ANY) : NULL;
        if (dump) printf("%s\n", dump);
        free(dump);
        json_decref(s);
        if (!dump) {
            free(text);
            fprintf(stderr, "mk detokenize: out of memory\n");
            return MK_EXIT_FAIL;
        }
    } else {
        fwrite(text, 1, len, stdout);
    }
    free(text);
    return MK_EXIT_OK;
}

static int run_jsonl(const struct mk_tokenizer *tok, bool skip)
{
    char *line = NULL;
    size_t cap = 0;
    int rc = MK_EXIT_OK;
    struct mk_ids ids = {0};
    for (long lineno = 1; rc == MK_EXIT_OK && getline(&line, &cap, stdin) > 0; lineno++) {
        const char *err;
        ids.n = 0;
        if (!parse_ids(line, &ids, &err)) {
            fprintf(stderr, "mk detokenize: stdin line %ld: %s\n", lineno, err);
            rc = MK_EXIT_FAIL;
        } else {
            rc = emit(tok, &ids, skip, true, lineno);
        }
    }
    free(line);
    mk_ids_free(&ids);
    return rc;
}

int mk_cmd_detokenize(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        fputs(usage, stdout);
        return MK_EXIT_OK;
    }
    const char *path = NULL, *idtext = NULL;
    bool skip = false, jsonl = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tokenizer") || !strcmp(argv[i], "--ids")) {
            const char *v = cli_value(argv[0], argc, argv, &i);
            if (!v) return MK_EXIT_USAGE;
            *(!strcmp(argv[i - 1], "--ids") ? &idtext : &path) = v;
        } else if (!strcmp(argv[i], "--skip-special")) {
            skip = true;
        } else if (!strcmp(argv[i], "--jsonl")) {
            jsonl = true;
        } else {
            return cli_usage_error(argv[0], usage, "unknown option '%s'", argv[i]);
        }
    }
    if (!path) return cli_usage_error(argv[0], usage, "--tokenizer is required");
    if (jsonl && idtext) return cli_usage_error(argv[0], usage, "--jsonl reads stdin, not --ids");
    struct mk_tokenizer *tok;
    if (mk_tokenizer_load(path, &tok) != MK_OK) {
        fprintf(stderr, "mk detokenize: %s\n", mk_errmsg());
        return MK_EXIT_FAIL;
    }
    int rc;
    if (jsonl) {
        rc = run_jsonl(tok, skip);
    } else {
        char *in = idtext ? NULL : cli_read_stdin(NULL);
        struct mk_ids ids = {0};
        const char *err = "out of memory";
        if ((!idtext && !in) || !parse_ids(idtext ? idtext : in, &ids, &err)) {
            fprintf(stderr, "mk detokenize: %s\n", err);
            rc = MK_EXIT_FAIL;
        } else {
            rc = emit(tok, &ids, skip, false, 0);
        }
        mk_ids_free(&ids);
        free(in);
    }
    mk_tokenizer_free(tok);
    return rc;
}
