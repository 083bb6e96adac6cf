/* model.safetensors.index.json: {"metadata": {...}, "weight_map": {tensor: file}}.
 * The file names come from an untrusted file and are joined to the model directory, so
 * each must be a plain name: not empty, no '/' or '\\', not "." or "..", no control
 * characters. Other top-level keys are ignored (exporters add their own). */
#include "mk/load.h"
#include "util/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MK_INDEX_MAX_FILES = 65536 };

static enum mk_status check_file_name(const char *f, const char *what, const char *tensor)
{
    bool bad = !f[0] || !strcmp(f, ".") || !strcmp(f, "..") || strlen(f) > 255;
    for (const char *c = f; *c && !bad; c++)
        bad = *c == '/' || *c == '\\' || (unsigned char)*c < 0x20;
    if (bad)
        return mk_error(MK_ERR_FORMAT,
                        "%s: weight_map: tensor %s: file \"%.80s\" is not a plain file name in "
                        "the model directory", what, tensor, f);
    return MK_OK;
}

/* Number of f in ix->files, adding it when new. */
static enum mk_status file_number(struct mk_st_index *ix, const char *f, const char *what,
                                  int *out)
{
    for (size_t i = ix->n_files; i-- > 0;) /* shards are listed in runs: search from the end */
        if (!strcmp(ix->files[i], f)) {
            *out = (int)i;
            return MK_OK;
        }
    if (ix->n_files >= MK_INDEX_MAX_FILES)
        return mk_error(MK_ERR_LIMIT, "%s: weight_map names more than %d files", what,
                        MK_INDEX_MAX_FILES);
    char **files = realloc(ix->files, (ix->n_files + 1) * sizeof *files);
    if (!files) return mk_error(MK_ERR_NOMEM, "%s: out of memory", what);
    ix->files = files;
    if (!(files[ix->n_files] = strdup(f))) return mk_error(MK_ERR_NOMEM, "%s: out of memory", what);
    *out = (int)ix->n_files++;
    return MK_OK;
}

static enum mk_status parse_weight_map(const json_t *wm, const char *what, struct mk_st_index *ix)
{
    size_t n = json_object_size(wm);
    ix->names = calloc(n ? n : 1, sizeof *ix->names);
    ix->file_of = calloc(n ? n : 1, sizeof *ix->file_of);
    if (!ix->names || !ix->file_of) return mk_error(MK_ERR_NOMEM, "%s: out of memory", what);
    const char *name;
    const json_t *f;
    json_object_foreach((json_t *)wm, name, f) {
        if (!name[0]) return mk_error(MK_ERR_FORMAT, "%s: weight_map: empty tensor name", what);
        if (!json_is_string(f))
            return mk_error(MK_ERR_FORMAT, "%s: weight_map: tensor %s: expected a file name, got %s",
                            what, name, mk_json_type_name(f));
        enum mk_status s = check_file_name(json_string_value(f), what, name);
        if (s == MK_OK) s = file_number(ix, json_string_value(f), what, &ix->file_of[ix->n_tensors]);
        if (s != MK_OK) return s;
        if (!(ix->names[ix->n_tensors] = strdup(name)))
            return mk_error(MK_ERR_NOMEM, "%s: out of memory", what);
        ix->n_tensors++;
    }
    if (!ix->n_tensors) return mk_error(MK_ERR_FORMAT, "%s: weight_map is empty", what);
    return MK_OK;
}

void mk_safetensors_index_free(struct mk_st_index *ix)
{
    for (size_t i = 0; i < ix->n_files; i++) free(ix->files[i]);
    for (size_t i = 0; i < ix->n_tensors; i++) free(ix->names[i]);
    free(ix->files);
    free(ix->names);
    free(ix->file_of);
    memset(ix, 0, sizeof *ix);
}

enum mk_status mk_safetensors_index_parse(const char *json, size_t len, const char *what,
                                          struct mk_st_index *out)
{
    json_t *root;
    enum mk_status s = mk_json_load_object(json, len, what, &root);
    if (s != MK_OK) return s;
    struct mk_st_index ix = {0};
    const json_t *wm = json_object_get(root, "weight_map");
    const json_t *meta = json_object_get(root, "metadata");
    if (!wm)
        s = mk_error(MK_ERR_FORMAT, "%s: missing weight_map", what);
    else if (!json_is_object(wm))
        s = mk_error(MK_ERR_FORMAT, "%s: weight_map: expected an object, got %s", what,
                     mk_json_type_name(wm));
    else if (meta && !json_is_object(meta) && !json_is_null(meta))
        s = mk_error(MK_ERR_FORMAT, "%s: metadata: expected an object, got %s", what,
                     mk_json_type_name(meta));
    else
        s = parse_weight_map(wm, what, &ix);
    json_decref(root);
    if (s != MK_OK) {
        mk_safetensors_index_free(&ix);
        return s;
    }
    *out = ix;
    return MK_OK;
}
