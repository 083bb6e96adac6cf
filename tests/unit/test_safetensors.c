/* The safetensors header parser and the index parser, on hand-built buffers: one valid
 * layout per feature and one malformed buffer per validation rule (status + message).
 * Also the element conversions. */
#include "check.h"
#include "mk/load.h"

#include <stdint.h>

/* [u64 header length][header][data_len zero bytes, then 1, 2, 3, ...]. */
static unsigned char *build(const char *header, uint64_t hlen_field, size_t data_len, size_t *len)
{
    size_t h = strlen(header);
    *len = 8 + h + data_len;
    unsigned char *b = calloc(*len + 1, 1);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(hlen_field >> (8 * i));
    memcpy(b + 8, header, h);
    for (size_t i = 0; i < data_len; i++) b[8 + h + i] = (unsigned char)(i + 1);
    return b;
}

/* Parse header + data_len bytes; return the status, leave tensors in *t / *n. */
static enum mk_status parse_n(const char *header, size_t data_len, struct mk_tensor **t, size_t *n)
{
    size_t len;
    unsigned char *b = build(header, strlen(header), data_len, &len);
    *t = NULL;
    *n = 0;
    enum mk_status s = mk_safetensors_parse(b, len, "x.safetensors", t, n);
    if (s == MK_OK) {
        /* data pointers must be inside the buffer: check, then drop them with it */
        for (size_t i = 0; i < *n; i++)
            CHECK((const unsigned char *)(*t)[i].data + (*t)[i].nbytes <= b + len);
    }
    free(b);
    return s;
}

/* Expect failure with `status` and a message containing `want`. */
static void expect_error(const char *header, size_t data_len, enum mk_status status, const char *want)
{
    struct mk_tensor *t;
    size_t n;
    mk_error_clear();
    enum mk_status s = parse_n(header, data_len, &t, &n);
    CHECKF(s == status, "header %s: got %s (%s), want %s", header, mk_status_name(s), mk_errmsg(),
           mk_status_name(status));
    CHECKF(strstr(mk_errmsg(), want) != NULL, "header %s: message '%s' lacks '%s'", header,
           mk_errmsg(), want);
    CHECKF(!strncmp(mk_errmsg(), "x.safetensors: ", 15), "message '%s' does not name the file",
           mk_errmsg());
    if (s == MK_OK) mk_safetensors_free_tensors(t, n);
}

static void test_valid_two_tensors(void)
{
    const char *h = "{\"__metadata__\":{\"format\":\"pt\"},"
                    "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]},"
                    "\"a\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[0,12]}}   ";
    size_t len;
    unsigned char *b = build(h, strlen(h), 20, &len);
    struct mk_tensor *t;
    size_t n;
    CHECK_OK(mk_safetensors_parse(b, len, "x", &t, &n));
    CHECK(n == 2);
    if (n == 2) {
        CHECK(!strcmp(t[0].name, "b") && t[0].dtype == MK_DTYPE_F32 && t[0].ndim == 1);
        CHECK(t[0].shape[0] == 2 && t[0].nbytes == 8);
        CHECK(t[0].data == b + 8 + strlen(h) + 12);
        CHECK(!strcmp(t[1].name, "a") && t[1].dtype == MK_DTYPE_BF16 && t[1].ndim == 2);
        CHECK(t[1].shape[0] == 2 && t[1].shape[1] == 3 && t[1].nbytes == 12);
        CHECK(t[1].data == b + 8 + strlen(h));
        CHECK(mk_tensor_numel(&t[1]) == 6);
        mk_safetensors_free_tensors(t, n);
    }
    free(b);
}

static void test_valid_edge_cases(void)
{
    struct mk_tensor *t;
    size_t n;
    CHECK_OK(parse_n("{}", 0, &t, &n)); /* no tensors, no data */
    CHECK(n == 0);
    mk_safetensors_free_tensors(t, n);
    /* zero-size tensors anywhere on the chain, and a scalar */
    CHECK_OK(parse_n("{\"z\":{\"dtype\":\"F16\",\"shape\":[0,4],\"data_offsets\":[2,2]},"
                     "\"s\":{\"dtype\":\"F16\",\"shape\":[],\"data_offsets\":[0,2]},"
                     "\"y\":{\"dtype\":\"F32\",\"shape\":[3,0],\"data_offsets\":[0,0]}}",
                     2, &t, &n));
    CHECK(n == 3);
    if (n == 3) CHECK(t[1].ndim == 0 && mk_tensor_numel(&t[1]) == 1);
    if (n == 3) CHECK(mk_tensor_numel(&t[2]) == 0 && t[2].nbytes == 0);
    mk_safetensors_free_tensors(t, n);
    /* empty, but the other dims multiply past 2^48: refused like any oversized shape */
    expect_error("{\"e\":{\"dtype\":\"F16\",\"shape\":[16777216,16777216,0],\"data_offsets\":[0,0]}}",
                 0, MK_ERR_FORMAT, "tensor e: shape x dtype size overflows 2^48 bytes");
}

static void test_header_length_rules(void)
{
    struct mk_tensor *t;
    size_t n, len;
    unsigned char *b = build("{}", 2, 0, &len);
    CHECK(mk_safetensors_parse(b, 7, "x", &t, &n) == MK_ERR_FORMAT); /* shorter than 8 */
    CHECK(strstr(mk_errmsg(), "too short"));
    free(b);
    b = build("{}", 100000001ull, 0, &len);
    CHECK(mk_safetensors_parse(b, len, "x", &t, &n) == MK_ERR_LIMIT);
    CHECK(strstr(mk_errmsg(), "exceeds the limit"));
    free(b);
    b = build("{}", UINT64_MAX, 0, &len); /* must not wrap around when added to 8 */
    CHECK(mk_safetensors_parse(b, len, "x", &t, &n) == MK_ERR_LIMIT);
    free(b);
    b = build("{}", 3, 0, &len); /* one byte past the end */
    CHECK(mk_safetensors_parse(b, len, "x", &t, &n) == MK_ERR_FORMAT);
    CHECK(strstr(mk_errmsg(), "runs past the end"));
    free(b);
}

static void test_json_rules(void)
{
    expect_error("[1,2]", 0, MK_ERR_FORMAT, "does not start with a JSON object");
    expect_error("{\"a\":", 0, MK_ERR_FORMAT, "invalid JSON");
    expect_error("{\"a\xff\":{}}", 0, MK_ERR_FORMAT, "invalid JSON");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                 "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                 8, MK_ERR_FORMAT, "duplicate object key");
    expect_error("{} x", 0, MK_ERR_FORMAT, "invalid JSON");
    expect_error("{\"__metadata__\":{\"k\":1}}", 0, MK_ERR_FORMAT, "__metadata__: k: expected a string");
    expect_error("{\"__metadata__\":[]}", 0, MK_ERR_FORMAT, "__metadata__: expected an object");
    expect_error("{\"\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}", 0,
                 MK_ERR_FORMAT, "empty name");
}

static void test_entry_rules(void)
{
    expect_error("{\"w\":[]}", 0, MK_ERR_FORMAT, "tensor w: expected an object, got array");
    expect_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 4,
                 MK_ERR_FORMAT, "tensor w: unexpected field \"x\"");
    expect_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, MK_ERR_FORMAT,
                 "tensor w: missing field data_offsets");
    expect_error("{\"w\":{\"dtype\":\"Q4\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, MK_ERR_FORMAT,
                 "tensor w: unknown dtype \"Q4\"");
    expect_error("{\"w\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8,
                 MK_ERR_UNSUPPORTED, "tensor w: dtype I64 is not supported");
    expect_error("{\"w\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, MK_ERR_FORMAT,
                 "tensor w: dtype: expected a string");
    expect_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
                 MK_ERR_LIMIT, "tensor w: shape has 9 dims");
    expect_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4,
                 MK_ERR_FORMAT, "tensor w: shape: -1 is outside [0, 2^48-1]");
    expect_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4,
                 MK_ERR_FORMAT, "tensor w: shape: expected an integer, got real");
    expect_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[281474976710656],\"data_offsets\":[0,4]}}", 4,
                 MK_ERR_FORMAT, "is outside [0, 2^48-1]");
    expect_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,281474976710656]}}", 4,
                 MK_ERR_FORMAT, "data_offsets: 281474976710656 is outside");
    expect_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, MK_ERR_FORMAT,
                 "data_offsets: expected an array of 2 integers");
    expect_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4, MK_ERR_FORMAT,
                 "end before they begin");
    expect_error("{\"w\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[0,10]}}", 10,
                 MK_ERR_FORMAT, "tensor w: bf16 shape needs 12 bytes, data_offsets [0, 10] hold 10");
    /* 2^40 x 2^40 elements: the product overflows 64 bits, and 48 bits far earlier */
    expect_error("{\"w\":{\"dtype\":\"F32\",\"shape\":[1099511627776,1099511627776],"
                 "\"data_offsets\":[0,4]}}", 4, MK_ERR_FORMAT, "overflows");
}

static void test_tiling_rules(void)
{
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                 "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
                 12, MK_ERR_FORMAT, "tensor b: data_offsets begin at 8 but the previous data ends at 4");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                 "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                 8, MK_ERR_FORMAT, "tensor b: data_offsets [4, 8] overlap tensor a");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8,
                 MK_ERR_FORMAT, "tensor a: data_offsets begin at 4");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4,
                 MK_ERR_FORMAT, "run past the end of the file");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 6,
                 MK_ERR_FORMAT, "2 trailing bytes");
}

static void expect_index_error(const char *json, const char *want)
{
    struct mk_st_index ix;
    enum mk_status s = mk_safetensors_index_parse(json, strlen(json), "i.json", &ix);
    CHECKF(s == MK_ERR_FORMAT, "%s: got %s", json, mk_status_name(s));
    CHECKF(strstr(mk_errmsg(), want) != NULL, "%s: message '%s' lacks '%s'", json, mk_errmsg(), want);
    if (s == MK_OK) mk_safetensors_index_free(&ix);
}

static void test_index(void)
{
    const char *j = "{\"metadata\":{\"total_size\":12},\"weight_map\":{\"a\":\"m-1.st\","
                    "\"b\":\"m-2.st\",\"c\":\"m-1.st\"}}";
    struct mk_st_index ix;
    CHECK_OK(mk_safetensors_index_parse(j, strlen(j), "i.json", &ix));
    CHECK(ix.n_files == 2 && ix.n_tensors == 3);
    if (ix.n_files == 2 && ix.n_tensors == 3) {
        CHECK(!strcmp(ix.files[0], "m-1.st") && !strcmp(ix.files[1], "m-2.st"));
        CHECK(!strcmp(ix.names[2], "c") && ix.file_of[2] == 0 && ix.file_of[1] == 1);
    }
    mk_safetensors_index_free(&ix);
    expect_index_error("{\"weight_map\":{\"a\":\"../m.st\"}}", "tensor a: file \"../m.st\" is not a plain file name");
    expect_index_error("{\"weight_map\":{\"a\":\"/etc/passwd\"}}", "not a plain file name");
    expect_index_error("{\"weight_map\":{\"a\":\"sub/m.st\"}}", "not a plain file name");
    expect_index_error("{\"weight_map\":{\"a\":\"..\"}}", "not a plain file name");
    expect_index_error("{\"weight_map\":{\"a\":\"\"}}", "not a plain file name");
    expect_index_error("{\"weight_map\":{\"a\":3}}", "tensor a: expected a file name, got integer");
    expect_index_error("{\"weight_map\":{\"a\":\"m\",\"a\":\"n\"}}", "duplicate object key");
    expect_index_error("{\"metadata\":{}}", "missing weight_map");
    expect_index_error("{\"weight_map\":{}}", "weight_map is empty");
    expect_index_error("{\"weight_map\":[]}", "weight_map: expected an object");
    expect_index_error("[]", "expected a JSON object");
}

static void test_bf16_f16_conversions(void)
{
    CHECK(mk_bf16_to_f32(0x3f80) == 1.0f);
    CHECK(mk_bf16_to_f32(0xc000) == -2.0f);
    CHECK(mk_f32_to_bf16(1.0f) == 0x3f80);
    /* 1 + 2^-8 is exactly halfway between bf16 1.0 and 1.0078125: ties to even (1.0) */
    CHECK(mk_f32_to_bf16(1.00390625f) == 0x3f80);
    /* 1.0078125 + 2^-8 is halfway to 1.015625: even mantissa is the upper one */
    CHECK(mk_f32_to_bf16(1.01171875f) == 0x3f82);
    CHECK(mk_f32_to_bf16(1.0f + 0.005f) == 0x3f81);
    CHECK(mk_f32_to_bf16(INFINITY) == 0x7f80);
    CHECK(mk_f32_to_bf16(3.4e38f) == 0x7f80); /* rounds up past the largest bf16 */
    uint16_t nan = mk_f32_to_bf16(NAN);
    CHECK((nan & 0x7f80) == 0x7f80 && (nan & 0x7f) != 0);
    /* a NaN whose payload sits only in the low 16 bits must stay NaN, not become inf */
    uint32_t lownan = 0x7f800001u;
    float fl;
    memcpy(&fl, &lownan, 4);
    CHECK((mk_f32_to_bf16(fl) & 0x7f) != 0);
    CHECK(mk_f16_to_f32(0x3c00) == 1.0f);
    CHECK(mk_f16_to_f32(0xc000) == -2.0f);
    CHECK(mk_f16_to_f32(0x7bff) == 65504.0f);
    CHECK(mk_f16_to_f32(0x0001) == 5.9604644775390625e-8f); /* smallest subnormal */
    CHECK(mk_f16_to_f32(0x03ff) == 6.097555160522461e-5f);  /* largest subnormal */
    CHECK(mk_f16_to_f32(0x7c00) == INFINITY && mk_f16_to_f32(0xfc00) == -INFINITY);
    CHECK(isnan(mk_f16_to_f32(0x7e00)));
    CHECK(signbit(mk_f16_to_f32(0x8000)) && mk_f16_to_f32(0x8000) == 0.0f);
}

static void test_tensor_to_f32_unaligned(void)
{
    /* bf16 and f16 values at an odd address (files only promise byte alignment) */
    unsigned char buf[1 + 8];
    uint16_t bf[4] = {0x3f80, 0xc000, 0x4040, 0x0000}, hf[4] = {0x3c00, 0xc000, 0x4200, 0x8000};
    float out[4];
    struct mk_tensor t = {.name = "t", .dtype = MK_DTYPE_BF16, .ndim = 2, .shape = {2, 2},
                          .data = buf + 1, .nbytes = 8};
    memcpy(buf + 1, bf, 8);
    mk_tensor_to_f32(&t, out);
    CHECK(out[0] == 1.0f && out[1] == -2.0f && out[2] == 3.0f && out[3] == 0.0f);
    memcpy(buf + 1, hf, 8);
    t.dtype = MK_DTYPE_F16;
    mk_tensor_to_f32(&t, out);
    CHECK(out[0] == 1.0f && out[1] == -2.0f && out[2] == 3.0f && out[3] == 0.0f);
    uint16_t b16[4];
    mk_tensor_to_bf16(&t, b16);
    CHECK(b16[0] == 0x3f80 && b16[1] == 0xc000 && b16[2] == 0x4040 && b16[3] == 0x8000);
    float f32[2] = {1.0f, -0.5f};
    t = (struct mk_tensor){.name = "f", .dtype = MK_DTYPE_F32, .ndim = 1, .shape = {2},
                           .data = f32, .nbytes = 8};
    mk_tensor_to_bf16(&t, b16);
    CHECK(b16[0] == 0x3f80 && b16[1] == 0xbf00);
    CHECK(!strcmp(mk_dtype_name(MK_DTYPE_BF16), "bf16") && mk_dtype_size(MK_DTYPE_F32) == 4);
}

int main(void)
{
    RUN(test_valid_two_tensors);
    RUN(test_valid_edge_cases);
    RUN(test_header_length_rules);
    RUN(test_json_rules);
    RUN(test_entry_rules);
    RUN(test_tiling_rules);
    RUN(test_index);
    RUN(test_bf16_f16_conversions);
    RUN(test_tensor_to_f32_unaligned);
    CHECK_EXIT();
}
