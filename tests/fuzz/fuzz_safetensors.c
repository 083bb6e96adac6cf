/* libFuzzer target: the safetensors header parser on arbitrary bytes.
 *
 * Each input is parsed twice: (1) as a whole file, so the 8-byte length field itself is
 * fuzzed; (2) when it holds a NUL byte, as "HEADER\0DATA" turned into a file with the
 * right length field, so mutations of the JSON are not wasted on a length that no
 * longer matches (JSON text cannot contain a raw NUL, so the split is unambiguous).
 * Any input must give MK_OK or an error with a message; on MK_OK every tensor lies
 * inside the buffer and the ranges tile the data section exactly. */
#include "mk/load.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_parse(const uint8_t *data, size_t size)
{
    struct mk_tensor *t;
    size_t n;
    if (mk_safetensors_parse(data, size, "fuzz.safetensors", &t, &n) != MK_OK) {
        MK_ASSERT(mk_errmsg()[0] != '\0');
        return;
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
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | data[i];
    MK_ASSERT(total == size - 8 - hlen);
    mk_safetensors_free_tensors(t, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_parse(data, size);
    const uint8_t *nul = memchr(data, 0, size);
    if (!nul) return 0;
    size_t hlen = (size_t)(nul - data), dlen = size - hlen - 1;
    uint8_t *file = malloc(8 + hlen + dlen + 1);
    for (int i = 0; i < 8; i++) file[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
    memcpy(file + 8, data, hlen);
    memcpy(file + 8 + hlen, nul + 1, dlen);
    check_parse(file, 8 + hlen + dlen);
    free(file);
    return 0;
}
