/* libFuzzer target: the model.safetensors.index.json parser on arbitrary bytes. On
 * MK_OK every file name must be plain (the parser's promise that joining it to the
 * model directory stays inside it) and every tensor must point at a listed file. */
#include "mk/load.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mk_st_index ix;
    if (mk_safetensors_index_parse((const char *)data, size, "fuzz.index.json", &ix) != MK_OK) {
        MK_ASSERT(mk_errmsg()[0] != '\0');
        return 0;
    }
    for (size_t i = 0; i < ix.n_files; i++) {
        const char *f = ix.files[i];
        MK_ASSERT(f[0] && !strchr(f, '/') && strcmp(f, "..") && strcmp(f, "."));
    }
    MK_ASSERT(ix.n_tensors > 0);
    for (size_t i = 0; i < ix.n_tensors; i++)
        MK_ASSERT(ix.file_of[i] >= 0 && (size_t)ix.file_of[i] < ix.n_files);
    mk_safetensors_index_free(&ix);
    return 0;
}
