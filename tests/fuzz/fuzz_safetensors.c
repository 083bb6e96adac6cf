/* libFuzzer target: the safetensors header parser on arbitrary bytes (a whole file).
 * Any input must give MK_OK or an error status with a message; on MK_OK every tensor
 * must lie inside the buffer and tile the data section as the parser promises. */
#include "mk/load.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mk_tensor *t;
    size_t n;
    if (mk_safetensors_parse(data, size, "fuzz.safetensors", &t, &n) != MK_OK) {
        MK_ASSERT(mk_errmsg()[0] != '\0');
        return 0;
    }
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = t[i].data;
        MK_ASSERT(p >= data && p + t[i].nbytes <= data + size);
        MK_ASSERT((size_t)mk_tensor_numel(&t[i]) * mk_dtype_size(t[i].dtype) == t[i].nbytes);
        total += t[i].nbytes;
        if (t[i].nbytes && t[i].nbytes <= 4096) { /* exercise the converters on real data */
            float *f = malloc((size_t)mk_tensor_numel(&t[i]) * sizeof *f);
            mk_tensor_to_f32(&t[i], f);
            free(f);
        }
    }
    /* the ranges tile the data section, so their sizes add up to it */
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | data[i];
    MK_ASSERT(total == size - 8 - hlen);
    mk_safetensors_free_tensors(t, n);
    return 0;
}
