/* Loading tokenizer.json (+ tokenizer_config.json): validation, id tables, hashes.
 *
 * Everything in the files is untrusted. Each check names the field it failed on.
 * Supported: model BPE (no dropout, no byte fallback, no subword prefix/suffix);
 * normalizer null / NFC; pre_tokenizer Split(Regex, Isolated) + ByteLevel, or a lone
 * ByteLevel (GPT-2 regex when use_regex); decoder ByteLevel.
 */
#include "tok_internal.h"
#include "tok_load.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { MK_TOK_MAX_FILE = 256 * 1024 * 1024 };

static enum mk_status read_file(const char *path, char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return mk_error(MK_ERR_IO, "%s: cannot open", path);
    struct stat st;
    if (fstat(fileno(f), &st) || !S_ISREG(st.st_mode)) {
        fclose(f);
        return mk_error(MK_ERR_IO, "%s: not a regular file", path);
    }
    if (st.st_size > MK_TOK_MAX_FILE) {
        fclose(f);
        return mk_error(MK_ERR_LIMIT, "%s: %lld bytes, more than the limit of %d", path,
                        (long long)st.st_size, MK_TOK_MAX_FILE);
    }
    char *buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        fclose(f);
        return mk_error(MK_ERR_NOMEM, "%s: out of memory", path);
    }
    size_t n = fread(buf, 1, (size_t)st.st_size, f);
    fclose(f);
    if (n != (size_t)st.st_size) {
        free(buf);
        return mk_error(MK_ERR_IO, "%s: short read (%zu of %lld bytes)", path, n,
                        (long long)st.st_size);
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return MK_OK;
}

void mk_tokenizer_free(struct mk_tokenizer *t)
{
    if (!t) return;
    free(t->kind);
    free(t->special);
    free(t->off);
    free(t->len);
    free(t->arena);
    free(t->vocab.slot);
    free(t->merges.slot);
    for (size_t i = 0; i < t->n_added; i++) free(t->added[i].content);
    free(t->added);
    free(t->added_by_byte);
    pcre2_code_free(t->re);
    pcre2_match_context_free(t->mctx);
    free(t->bos_text);
    free(t->default_system);
    free(t->cache);
    pthread_mutex_destroy(&t->cache_lock);
    free(t);
}

enum mk_status mk_tokenizer_load_json(const char *tokenizer_json, size_t len,
                                      const char *config_json, size_t config_len,
                                      const char *what, struct mk_tokenizer **out)
{
    *out = NULL;
    json_error_t jerr;
    json_t *root = json_loadb(tokenizer_json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return mk_error(MK_ERR_FORMAT, "%s: invalid JSON at line %d column %d: %s", what,
                        jerr.line, jerr.column, jerr.text);
    json_t *cfg = NULL;
    if (config_json) {
        /* INT_AS_REAL: Llama 3 writes model_max_length as 1e30 in integer form. */
        cfg = json_loadb(config_json, config_len, JSON_DECODE_INT_AS_REAL, &jerr);
        if (!cfg) {
            json_decref(root);
            return mk_error(MK_ERR_FORMAT,
                            "%s: tokenizer_config.json: invalid JSON at line %d column %d: %s",
                            what, jerr.line, jerr.column, jerr.text);
        }
    }
    struct mk_tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        json_decref(root);
        json_decref(cfg);
        return mk_error(MK_ERR_NOMEM, "%s: out of memory", what);
    }
    pthread_mutex_init(&t->cache_lock, NULL);
    t->bos_id = t->eos_id = -1;
    enum mk_status s = mk__tok_build(t, root, cfg);
    json_decref(root);
    json_decref(cfg);
    if (s != MK_OK) {
        mk_tokenizer_free(t);
        return mk_error_prefix(s, "%s: ", what);
    }
    *out = t;
    return MK_OK;
}

enum mk_status mk_tokenizer_load(const char *path, struct mk_tokenizer **out)
{
    *out = NULL;
    struct stat st;
    if (stat(path, &st)) return mk_error(MK_ERR_IO, "%s: no such file or directory", path);
    size_t pl = strlen(path);
    char *file = malloc(pl + 32), *cfgpath = malloc(pl + 32);
    if (!file || !cfgpath) {
        free(file);
        free(cfgpath);
        return mk_error(MK_ERR_NOMEM, "%s: out of memory", path);
    }
    if (S_ISDIR(st.st_mode)) {
        snprintf(file, pl + 32, "%s/tokenizer.json", path);
        snprintf(cfgpath, pl + 32, "%s/tokenizer_config.json", path);
    } else {
        snprintf(file, pl + 32, "%s", path);
        const char *slash = strrchr(path, '/');
        int dl = slash ? (int)(slash - path) : 1;
        snprintf(cfgpath, pl + 32, "%.*s/tokenizer_config.json", dl, slash ? path : ".");
    }
    char *text = NULL, *cfg = NULL;
    size_t len = 0, cfg_len = 0;
    enum mk_status s = read_file(file, &text, &len);
    if (s == MK_OK && access(cfgpath, F_OK) == 0) s = read_file(cfgpath, &cfg, &cfg_len);
    if (s == MK_OK) s = mk_tokenizer_load_json(text, len, cfg, cfg_len, file, out);
    free(text);
    free(cfg);
    free(file);
    free(cfgpath);
    return s;
}
