/* The safetensors header parser. Layout of a file:
 *
 *   [8 bytes: N, little-endian u64][N bytes: UTF-8 JSON object][data section]
 *
 * The JSON maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end]},
 * offsets relative to the data section; an optional "__metadata__" maps strings to
 * strings. Every rule of DESIGN.md §7 is checked here, on untrusted bytes: the header
 * length is bounded and inside the file, entries have exactly the three fields, dtypes
 * are known, dims and offsets fit in 48 bits, shape x dtype size equals the byte range
 * (overflow-checked), and the ranges tile the data section from 0 to the file end with
 * no gap or overlap. */
#include "mk/load.h"
#include "util/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    MK_ST_HEADER_MAX = 100 * 1000 * 1000, /* same bound as the reference implementation */
};
#define MK_ST_OFFSET_MAX ((int64_t)((1ull << 48) - 1))

/* dtype strings of the format; the supported ones map to mk_dtype, the others are
 * recognised only to reject them by name. */
static const char *const unsupported_dtypes[] = {
    "F64", "I64", "U64", "I32", "U32", "I16", "U16", "I8", "U8", "BOOL",
    "F8_E4M3", "F8_E5M2", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4", "C64",
};

static enum mk_status parse_dtype(const json_t *v, const char *what, const char *name,
                                  enum mk_dtype *out)
{
    if (!json_is_string(v))
        return mk_error(MK_ERR_FORMAT, "%s: tensor %s: dtype: expected a string, got %s",
                        what, name, mk_json_type_name(v));
    const char *s = json_string_value(v);
    if (!strcmp(s, "BF16")) *out = MK_DTYPE_BF16;
    else if (!strcmp(s, "F16")) *out = MK_DTYPE_F16;
    else if (!strcmp(s, "F32")) *out = MK_DTYPE_F32;
    else {
        for (size_t i = 0; i < sizeof unsupported_dtypes / sizeof *unsupported_dtypes; i++)
            if (!strcmp(s, unsupported_dtypes[i]))
                return mk_error(MK_ERR_UNSUPPORTED,
                                "%s: tensor %s: dtype %s is not supported (BF16, F16, F32 are)",
                                what, name, s);
        return mk_error(MK_ERR_FORMAT, "%s: tensor %s: unknown dtype \"%.32s\"", what, name, s);
    }
    return MK_OK;
}

/* A JSON integer in [0, 2^48-1] (reals are not accepted: offsets and dims are exact). */
static enum mk_status parse_u48(const json_t *v, const char *what, const char *name,
                                const char *field, int64_t *out)
{
    if (!json_is_integer(v))
        return mk_error(MK_ERR_FORMAT, "%s: tensor %s: %s: expected an integer, got %s", what,
                        name, field, mk_json_type_name(v));
    json_int_t x = json_integer_value(v);
    if (x < 0 || x > MK_ST_OFFSET_MAX)
        return mk_error(MK_ERR_FORMAT, "%s: tensor %s: %s: %lld is outside [0, 2^48-1]", what,
                        name, field, (long long)x);
    *out = x;
    return MK_OK;
}

static enum mk_status parse_shape(const json_t *v, const char *what, struct mk_tensor *t)
{
    if (!json_is_array(v))
        return mk_error(MK_ERR_FORMAT, "%s: tensor %s: shape: expected an array, got %s", what,
                        t->name, mk_json_type_name(v));
    size_t n = json_array_size(v);
    if (n > MK_MAX_DIMS)
        return mk_error(MK_ERR_LIMIT, "%s: tensor %s: shape has %zu dims, at most %d supported",
                        what, t->name, n, MK_MAX_DIMS);
    t->ndim = (int)n;
    for (size_t i = 0; i < n; i++) {
        enum mk_status s = parse_u48(json_array_get(v, i), what, t->name, "shape", &t->shape[i]);
        if (s != MK_OK) return s;
    }
    return MK_OK;
}

/* nbytes = prod(shape) * dtype size, refusing any intermediate overflow. The bound is
 * applied to the product of the non-zero dims too, so that element counts computed
 * later in any order (mk_tensor_numel) cannot overflow even for an empty tensor. */
static enum mk_status shape_bytes(const struct mk_tensor *t, const char *what, uint64_t *out)
{
    uint64_t n = mk_dtype_size(t->dtype);
    bool empty = false;
    for (int i = 0; i < t->ndim; i++) {
        empty |= t->shape[i] == 0;
        uint64_t d = t->shape[i] ? (uint64_t)t->shape[i] : 1;
        if (__builtin_mul_overflow(n, d, &n) || n > (uint64_t)MK_ST_OFFSET_MAX)
            return mk_error(MK_ERR_FORMAT, "%s: tensor %s: shape x dtype size overflows 2^48 bytes",
                            what, t->name);
    }
    *out = empty ? 0 : n;
    return MK_OK;
}

struct range {
    int64_t begin, end;
    size_t tensor;
};

static enum mk_status parse_entry(const char *key, const json_t *e, const char *what,
                                  struct mk_tensor *t, struct range *r)
{
    if (!json_is_object(e))
        return mk_error(MK_ERR_FORMAT, "%s: tensor %s: expected an object, got %s", what, key,
                        mk_json_type_name(e));
    const char *field;
    const json_t *fv;
    json_object_foreach((json_t *)e, field, fv)
        if (strcmp(field, "dtype") && strcmp(field, "shape") && strcmp(field, "data_offsets"))
            return mk_error(MK_ERR_FORMAT,
                            "%s: tensor %s: unexpected field \"%.64s\" (expected exactly dtype, "
                            "shape, data_offsets)", what, key, field);
    static const char *const need[] = {"dtype", "shape", "data_offsets"};
    for (int i = 0; i < 3; i++)
        if (!json_object_get(e, need[i]))
            return mk_error(MK_ERR_FORMAT, "%s: tensor %s: missing field %s", what, key, need[i]);
    enum mk_status s = parse_dtype(json_object_get(e, "dtype"), what, key, &t->dtype);
    if (s == MK_OK) s = parse_shape(json_object_get(e, "shape"), what, t);
    if (s != MK_OK) return s;
    const json_t *off = json_object_get(e, "data_offsets");
    if (!json_is_array(off) || json_array_size(off) != 2)
        return mk_error(MK_ERR_FORMAT,
                        "%s: tensor %s: data_offsets: expected an array of 2 integers", what, key);
    s = parse_u48(json_array_get(off, 0), what, key, "data_offsets", &r->begin);
    if (s == MK_OK) s = parse_u48(json_array_get(off, 1), what, key, "data_offsets", &r->end);
    if (s != MK_OK) return s;
    if (r->end < r->begin)
        return mk_error(MK_ERR_FORMAT, "%s: tensor %s: data_offsets [%lld, %lld] end before they begin",
                        what, key, (long long)r->begin, (long long)r->end);
    uint64_t nbytes = 0;
    s = shape_bytes(t, what, &nbytes);
    if (s != MK_OK) return s;
    if (nbytes != (uint64_t)(r->end - r->begin))
        return mk_error(MK_ERR_FORMAT,
                        "%s: tensor %s: %s shape needs %llu bytes, data_offsets [%lld, %lld] hold %lld",
                        what, key, mk_dtype_name(t->dtype), (unsigned long long)nbytes,
                        (long long)r->begin, (long long)r->end, (long long)(r->end - r->begin));
    t->nbytes = (size_t)nbytes;
    return MK_OK;
}

static enum mk_status check_metadata(const json_t *m, const char *what)
{
    if (!json_is_object(m))
        return mk_error(MK_ERR_FORMAT, "%s: __metadata__: expected an object, got %s", what,
                        mk_json_type_name(m));
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)m, k, v)
        if (!json_is_string(v))
            return mk_error(MK_ERR_FORMAT, "%s: __metadata__: %.64s: expected a string, got %s",
                            what, k, mk_json_type_name(v));
    return MK_OK;
}

static int cmp_range(const void *a, const void *b)
{
    const struct range *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return (x->tensor > y->tensor) - (x->tensor < y->tensor);
}

/* The ranges must tile [0, data_len) exactly: sorted by begin, each starts where the
 * previous ended (zero-byte tensors sit anywhere on that chain). */
static enum mk_status check_tiling(struct range *r, size_t n, const struct mk_tensor *t,
                                   uint64_t data_len, const char *what)
{
    qsort(r, n, sizeof *r, cmp_range);
    int64_t at = 0;
    const char *prev = NULL;
    for (size_t i = 0; i < n; i++) {
        const char *name = t[r[i].tensor].name;
        if (r[i].begin > at)
            return mk_error(MK_ERR_FORMAT,
                            "%s: tensor %s: data_offsets begin at %lld but the previous data ends at "
                            "%lld (a gap)", what, name, (long long)r[i].begin, (long long)at);
        if (r[i].begin < at)
            return mk_error(MK_ERR_FORMAT,
                            "%s: tensor %s: data_offsets [%lld, %lld] overlap tensor %s", what,
                            name, (long long)r[i].begin, (long long)r[i].end, prev);
        if ((uint64_t)r[i].end > data_len)
            return mk_error(MK_ERR_FORMAT,
                            "%s: tensor %s: data_offsets [%lld, %lld] run past the end of the "
                            "file (data section is %llu bytes)", what, name,
                            (long long)r[i].begin, (long long)r[i].end,
                            (unsigned long long)data_len);
        if (r[i].end > r[i].begin || !prev) prev = name;
        at = r[i].end;
    }
    if ((uint64_t)at != data_len)
        return mk_error(MK_ERR_FORMAT,
                        "%s: tensor data ends at byte %lld of a %llu-byte data section (%llu "
                        "trailing bytes)", what, (long long)at, (unsigned long long)data_len,
                        (unsigned long long)(data_len - (uint64_t)at));
    return MK_OK;
}

void mk_safetensors_free_tensors(struct mk_tensor *t, size_t count)
{
    if (!t) return;
    for (size_t i = 0; i < count; i++) free((char *)t[i].name);
    free(t);
}

/* Parse the entries of the header object into t[] / r[] (n slots); data pointers are
 * set only once the ranges are known to lie inside the file. */
static enum mk_status parse_entries(const json_t *hdr, const char *what, struct mk_tensor *t,
                                    struct range *r, size_t *count)
{
    const char *key;
    const json_t *e;
    size_t n = 0;
    json_object_foreach((json_t *)hdr, key, e) {
        enum mk_status s;
        if (!strcmp(key, "__metadata__")) {
            s = check_metadata(e, what);
            if (s != MK_OK) return s;
            continue;
        }
        if (!key[0]) return mk_error(MK_ERR_FORMAT, "%s: a tensor has an empty name", what);
        t[n].name = strdup(key);
        if (!t[n].name) return mk_error(MK_ERR_NOMEM, "%s: out of memory", what);
        *count = ++n; /* the name is owned from here on */
        s = parse_entry(key, e, what, &t[n - 1], &r[n - 1]);
        if (s != MK_OK) return s;
        r[n - 1].tensor = n - 1;
    }
    return MK_OK;
}

static enum mk_status parse_header(const unsigned char *p, size_t len, const char *what,
                                   uint64_t *hlen)
{
    if (len < 8)
        return mk_error(MK_ERR_FORMAT, "%s: file is %zu bytes, too short for the 8-byte header length",
                        what, len);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | p[i];
    if (n > MK_ST_HEADER_MAX)
        return mk_error(MK_ERR_LIMIT, "%s: header length %llu exceeds the limit of %d bytes", what,
                        (unsigned long long)n, MK_ST_HEADER_MAX);
    if (n > len - 8)
        return mk_error(MK_ERR_FORMAT, "%s: header length %llu runs past the end of the %zu-byte file",
                        what, (unsigned long long)n, len);
    if (n < 2 || p[8] != '{')
        return mk_error(MK_ERR_FORMAT, "%s: header does not start with a JSON object '{'", what);
    *hlen = n;
    return MK_OK;
}

enum mk_status mk_safetensors_parse(const void *buf, size_t len, const char *what,
                                    struct mk_tensor **out_tensors, size_t *out_count)
{
    const unsigned char *p = buf;
    uint64_t hlen = 0;
    enum mk_status s = parse_header(p, len, what, &hlen);
    if (s != MK_OK) return s;
    json_t *hdr;
    char hwhat[512];
    snprintf(hwhat, sizeof hwhat, "%s: header", what);
    s = mk_json_load_object((const char *)p + 8, (size_t)hlen, hwhat, &hdr);
    if (s != MK_OK) return s;
    size_t cap = json_object_size(hdr) ? json_object_size(hdr) : 1;
    struct mk_tensor *t = calloc(cap, sizeof *t);
    struct range *r = calloc(cap, sizeof *r);
    size_t n = 0;
    if (!t || !r) s = mk_error(MK_ERR_NOMEM, "%s: out of memory for %zu tensors", what, cap);
    if (s == MK_OK) s = parse_entries(hdr, what, t, r, &n);
    if (s == MK_OK) s = check_tiling(r, n, t, len - 8 - hlen, what);
    for (size_t i = 0; s == MK_OK && i < n; i++) t[r[i].tensor].data = p + 8 + hlen + r[i].begin;
    json_decref(hdr);
    free(r);
    if (s != MK_OK) {
        mk_safetensors_free_tensors(t, n);
        return s;
    }
    *out_tensors = t;
    *out_count = n;
    return MK_OK;
}
