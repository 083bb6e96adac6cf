/* generation_config.json (eos ids and sampling defaults) and reading a directory's
 * configs. Only the fields below are read; the many others (pad_token_id,
 * repetition_penalty, transformers_version, ...) are ignored. */
#include "mk/load.h"
#include "util/json.h"

#include <stdio.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { MK_CONFIG_FILE_MAX = 4 << 20 };

void mk_gen_config_default(struct mk_gen_config *gen)
{
    *gen = (struct mk_gen_config){.do_sample = false, .temperature = 1.0f, .top_k = 0, .top_p = 1.0f};
}

static const json_t *get(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    return json_is_null(v) ? NULL : v;
}

static enum mk_status add_id(struct mk_config *cfg, const json_t *v, const char *what)
{
    int64_t id;
    enum mk_status s = mk_json_int(v, what, "eos_token_id", 0, cfg->vocab_size - 1, &id);
    if (s != MK_OK) return s;
    for (int i = 0; i < cfg->n_eos; i++)
        if (cfg->eos_token_ids[i] == id) return MK_OK;
    if (cfg->n_eos >= MK_MAX_EOS)
        return mk_error(MK_ERR_LIMIT, "%s: eos_token_id: more than %d distinct ids", what, MK_MAX_EOS);
    cfg->eos_token_ids[cfg->n_eos++] = (int)id;
    return MK_OK;
}

static enum mk_status parse_ids(const json_t *root, const char *what, struct mk_config *cfg)
{
    const json_t *bos = get(root, "bos_token_id");
    if (bos && cfg->bos_token_id < 0) {
        int64_t id;
        enum mk_status s = mk_json_int(bos, what, "bos_token_id", 0, cfg->vocab_size - 1, &id);
        if (s != MK_OK) return s;
        cfg->bos_token_id = (int)id;
    }
    const json_t *eos = get(root, "eos_token_id");
    if (!eos) return MK_OK;
    if (!json_is_array(eos)) return add_id(cfg, eos, what);
    for (size_t i = 0; i < json_array_size(eos); i++) {
        enum mk_status s = add_id(cfg, json_array_get(eos, i), what);
        if (s != MK_OK) return s;
    }
    return MK_OK;
}

static enum mk_status parse_sampling(const json_t *root, const char *what, struct mk_gen_config *g)
{
    const json_t *v;
    double x;
    enum mk_status s = MK_OK;
    if ((v = get(root, "do_sample"))) s = mk_json_bool(v, what, "do_sample", &g->do_sample);
    if (s == MK_OK && (v = get(root, "temperature"))) {
        s = mk_json_number(v, what, "temperature", &x);
        if (s == MK_OK && !(x >= 0 && x <= 100))
            s = mk_error(MK_ERR_FORMAT, "%s: temperature = %g is outside [0, 100]", what, x);
        g->temperature = (float)x;
    }
    if (s == MK_OK && (v = get(root, "top_k"))) {
        int64_t k;
        s = mk_json_int(v, what, "top_k", 0, INT32_MAX, &k);
        g->top_k = (int)k;
    }
    if (s == MK_OK && (v = get(root, "top_p"))) {
        s = mk_json_number(v, what, "top_p", &x);
        if (s == MK_OK && !(x > 0 && x <= 1))
            s = mk_error(MK_ERR_FORMAT, "%s: top_p = %g is outside (0, 1]", what, x);
        g->top_p = (float)x;
    }
    return s;
}

enum mk_status mk_gen_config_parse(const char *json, size_t len, const char *what,
                                   struct mk_config *cfg, struct mk_gen_config *gen)
{
    json_t *root;
    enum mk_status s = mk_json_load_object(json, len, what, &root);
    if (s != MK_OK) return s;
    struct mk_config c = *cfg;
    struct mk_gen_config g;
    mk_gen_config_default(&g);
    s = parse_ids(root, what, &c);
    if (s == MK_OK) s = parse_sampling(root, what, &g);
    json_decref(root);
    if (s != MK_OK) return s;
    *cfg = c;
    *gen = g;
    return MK_OK;
}

static enum mk_status parse_file(const char *dir, const char *name, bool optional,
                                 struct mk_config *cfg, struct mk_gen_config *gen)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
        return mk_error(MK_ERR_ARG, "%s: path too long", dir);
    if (optional && access(path, F_OK) != 0 && errno == ENOENT) return MK_OK;
    char *text;
    size_t len;
    enum mk_status s = mk_read_file(path, MK_CONFIG_FILE_MAX, &text, &len);
    if (s != MK_OK) return s;
    s = gen ? mk_gen_config_parse(text, len, path, cfg, gen) : mk_config_parse(text, len, path, cfg);
    free(text);
    return s;
}

enum mk_status mk_config_load(const char *dir, struct mk_config *cfg, struct mk_gen_config *gen)
{
    struct mk_config c;
    struct mk_gen_config g;
    mk_gen_config_default(&g);
    enum mk_status s = parse_file(dir, "config.json", false, &c, NULL);
    if (s == MK_OK) s = parse_file(dir, "generation_config.json", true, &c, &g);
    if (s != MK_OK) return s;
    *cfg = c;
    *gen = g;
    return MK_OK;
}
