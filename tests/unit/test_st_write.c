/* The safetensors writer: exact header bytes against a hand-written expectation, a
 * round trip through the reader (mk_safetensors_parse), multi-chunk threaded writes,
 * the index file, and every refusal. */
#include "check.h"
#include "mk/load.h"

#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[256];

static void path_of(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s", dir, name);
}

/* Whole file into a heap buffer (NULL on failure). */
static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

/* Element i of any tensor filled by this is the bf16 of (i + 1) / 8: exact for small i. */
static enum mk_status fill_ramp_bf16(void *ctx, size_t index, uint64_t first, uint64_t count,
                                     void *dst)
{
    for (uint64_t i = 0; i < count; i++)
        ((uint16_t *)dst)[i] = mk_f32_to_bf16((float)(first + i + 1) / 8.0f);
    return MK_OK;
}

/* f32 element i = i, exact up to 2^24: lets a reader check every element's position. */
static enum mk_status fill_index_f32(void *ctx, size_t index, uint64_t first, uint64_t count,
                                     void *dst)
{
    for (uint64_t i = 0; i < count; i++) ((float *)dst)[i] = (float)(first + i);
    return MK_OK;
}

static enum mk_status fill_fails(void *ctx, size_t index, uint64_t first, uint64_t count,
                                 void *dst)
{
    return mk_error(MK_ERR_IO, "source gone at element %llu", (unsigned long long)first);
}

static void header_bytes_are_the_reference_layout(void)
{
    static const float a[2] = {1.0f, 2.0f};
    struct mk_safetensors_entry e[] = {
        {.name = "a", .dtype = MK_DTYPE_F32, .ndim = 1, .shape = {2}, .data = a},
        {.name = "b\"q", .dtype = MK_DTYPE_BF16, .ndim = 2, .shape = {1, 3},
         .fill = fill_ramp_bf16},
        {.name = "s", .dtype = MK_DTYPE_F16, .ndim = 0, .data = "\x00\x3c"},
        {.name = "z", .dtype = MK_DTYPE_F32, .ndim = 2, .shape = {0, 4}, .data = a},
    };
    char path[512];
    path_of(path, sizeof path, "h.safetensors");
    CHECK_OK(mk_safetensors_write(path, e, 4, 2));
    const char *want =
        "{\"__metadata__\":{\"format\":\"pt\"},"
        "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
        "\"b\\\"q\":{\"dtype\":\"BF16\",\"shape\":[1,3],\"data_offsets\":[8,14]},"
        "\"s\":{\"dtype\":\"F16\",\"shape\":[],\"data_offsets\":[14,16]},"
        "\"z\":{\"dtype\":\"F32\",\"shape\":[0,4],\"data_offsets\":[16,16]}}";
    size_t wl = strlen(want), hl = (wl + 7) / 8 * 8, len = 0;
    unsigned char *b = slurp(path, &len);
    CHECK(b != NULL);
    if (!b) return;
    CHECKF(len == 8 + hl + 16, "file is %zu bytes, want %zu", len, 8 + hl + 16);
    uint64_t n = 0;
    for (int i = 0; i < 8 && len >= 8; i++) n |= (uint64_t)b[i] << (8 * i);
    CHECKF(n == hl, "header length %llu, want %zu", (unsigned long long)n, hl);
    CHECK(len >= 8 + hl && !memcmp(b + 8, want, wl));
    for (size_t i = wl; i < hl && len >= 8 + hl; i++) CHECK(b[8 + i] == ' ');
    if (len == 8 + hl + 16) {
        CHECK(!memcmp(b + 8 + hl, a, 8));
        uint16_t r[3];
        memcpy(r, b + 8 + hl + 8, 6);
        CHECK(mk_bf16_to_f32(r[0]) == 0.125f && mk_bf16_to_f32(r[2]) == 0.375f);
        CHECK(b[8 + hl + 14] == 0x00 && b[8 + hl + 15] == 0x3c);
    }
    free(b);
}

static void round_trip_through_the_reader(void)
{
    /* 12 MiB of f32 spans two writer chunks; four threads write them out of order. */
    enum { ROWS = 3, COLS = 1 << 20 };
    struct mk_safetensors_entry e[] = {
        {.name = "model.norm.weight", .dtype = MK_DTYPE_BF16, .ndim = 1, .shape = {5},
         .fill = fill_ramp_bf16},
        {.name = "big", .dtype = MK_DTYPE_F32, .ndim = 2, .shape = {ROWS, COLS},
         .fill = fill_index_f32},
        {.name = "tail", .dtype = MK_DTYPE_BF16, .ndim = 3, .shape = {2, 1, 3},
         .fill = fill_ramp_bf16},
    };
    char path[512];
    path_of(path, sizeof path, "rt.safetensors");
    CHECK_OK(mk_safetensors_write(path, e, 3, 4));
    size_t len = 0;
    unsigned char *b = slurp(path, &len);
    CHECK(b != NULL);
    if (!b) return;
    struct mk_tensor *t = NULL;
    size_t n = 0;
    CHECK_OK(mk_safetensors_parse(b, len, path, &t, &n));
    CHECK(n == 3);
    for (size_t i = 0; i < n && i < 3; i++) {
        const struct mk_tensor *x = NULL;
        for (size_t j = 0; j < n; j++)
            if (!strcmp(t[j].name, e[i].name)) x = &t[j];
        CHECKF(x != NULL, "%s missing", e[i].name);
        if (!x) continue;
        CHECK(x->dtype == e[i].dtype && x->ndim == e[i].ndim);
        for (int d = 0; d < x->ndim; d++) CHECK(x->shape[d] == e[i].shape[d]);
        CHECK(x->nbytes == mk_safetensors_entry_bytes(&e[i]));
        if (!strcmp(x->name, "big")) {
            /* data follows a 10-byte tensor: unaligned, as real files may be */
            const unsigned char *v = x->data;
            size_t bad = 0;
            for (size_t k = 0; k < (size_t)ROWS * COLS; k++) {
                float f;
                memcpy(&f, v + 4 * k, 4);
                bad += f != (float)k;
            }
            CHECKF(bad == 0, "%zu elements of big are not at their index", bad);
        } else {
            uint16_t v[5];
            memcpy(v, x->data, sizeof v);
            CHECK(mk_bf16_to_f32(v[0]) == 0.125f && mk_bf16_to_f32(v[4]) == 0.625f);
        }
    }
    mk_safetensors_free_tensors(t, n);
    free(b);
}

static void refusals_name_the_problem(void)
{
    static const float a[1] = {0};
    char path[512];
    path_of(path, sizeof path, "bad.safetensors");
    struct mk_safetensors_entry dup[] = {
        {.name = "w", .dtype = MK_DTYPE_F32, .ndim = 1, .shape = {1}, .data = a},
        {.name = "w", .dtype = MK_DTYPE_F32, .ndim = 1, .shape = {1}, .data = a},
    };
    CHECK(mk_safetensors_write(path, dup, 2, 1) == MK_ERR_ARG);
    CHECK(strstr(mk_errmsg(), "listed twice") && strstr(mk_errmsg(), path));
    struct mk_safetensors_entry bad[] = {
        {.name = "__metadata__", .dtype = MK_DTYPE_F32, .ndim = 1, .shape = {1}, .data = a},
        {.name = "", .dtype = MK_DTYPE_F32, .ndim = 1, .shape = {1}, .data = a},
        {.name = "x\n", .dtype = MK_DTYPE_F32, .ndim = 1, .shape = {1}, .data = a},
        {.name = "\xc3", .dtype = MK_DTYPE_F32, .ndim = 1, .shape = {1}, .data = a},
        {.name = "x", .dtype = MK_DTYPE_COUNT, .ndim = 1, .shape = {1}, .data = a},
        {.name = "x", .dtype = MK_DTYPE_F32, .ndim = 9, .data = a},
        {.name = "x", .dtype = MK_DTYPE_F32, .ndim = 1, .shape = {-1}, .data = a},
        {.name = "x", .dtype = MK_DTYPE_F32, .ndim = 1, .shape = {1}},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECKF(mk_safetensors_write(path, &bad[i], 1, 1) == MK_ERR_ARG, "entry %zu", i);
        CHECKF(strstr(mk_errmsg(), path) != NULL, "entry %zu: %s", i, mk_errmsg());
    }
    struct mk_safetensors_entry huge = {.name = "x", .dtype = MK_DTYPE_F32, .ndim = 2,
                                        .shape = {INT64_MAX, 4}, .data = a};
    CHECK(mk_safetensors_write(path, &huge, 1, 1) == MK_ERR_LIMIT);
    CHECK(access(path, F_OK) != 0); /* nothing was created for bad arguments */

    char nodir[512];
    path_of(nodir, sizeof nodir, "no/such/dir/x.safetensors");
    struct mk_safetensors_entry ok = {.name = "x", .dtype = MK_DTYPE_F32, .ndim = 1,
                                      .shape = {1}, .data = a};
    CHECK(mk_safetensors_write(nodir, &ok, 1, 1) == MK_ERR_IO);
    CHECK(strstr(mk_errmsg(), nodir) != NULL);

    /* A fill failure in a worker thread reaches the caller, and the file is removed. */
    struct mk_safetensors_entry f[] = {
        {.name = "good", .dtype = MK_DTYPE_F32, .ndim = 1, .shape = {1 << 22},
         .fill = fill_index_f32},
        {.name = "broken", .dtype = MK_DTYPE_F32, .ndim = 1, .shape = {1 << 22},
         .fill = fill_fails},
    };
    CHECK(mk_safetensors_write(path, f, 2, 3) == MK_ERR_IO);
    CHECKF(strstr(mk_errmsg(), "source gone") && strstr(mk_errmsg(), "broken") &&
           strstr(mk_errmsg(), path), "%s", mk_errmsg());
    char partial[600];
    snprintf(partial, sizeof partial, "%s.partial", path);
    CHECK(access(path, F_OK) != 0 && access(partial, F_OK) != 0);

    /* A failed rewrite leaves the earlier file as it was. */
    CHECK_OK(mk_safetensors_write(path, &ok, 1, 1));
    size_t len0 = 0, len1 = 0;
    unsigned char *before = slurp(path, &len0);
    CHECK(mk_safetensors_write(path, f, 2, 2) == MK_ERR_IO);
    unsigned char *after = slurp(path, &len1);
    CHECK(before && after && len0 == len1 && !memcmp(before, after, len0));
    CHECK(access(partial, F_OK) != 0);
    free(before);
    free(after);
}

static void index_file(void)
{
    const char *names[] = {"model.norm.weight", "lm_head.weight", "model.embed_tokens.weight"};
    const char *files[] = {"model-00002-of-00002.safetensors",
                           "model-00002-of-00002.safetensors",
                           "model-00001-of-00002.safetensors"};
    char path[512];
    path_of(path, sizeof path, "model.safetensors.index.json");
    CHECK_OK(mk_safetensors_write_index(path, 12345678901ull, names, files, 3));
    const char *want =
        "{\n  \"metadata\": {\n    \"total_size\": 12345678901\n  },\n  \"weight_map\": {\n"
        "    \"lm_head.weight\": \"model-00002-of-00002.safetensors\",\n"
        "    \"model.embed_tokens.weight\": \"model-00001-of-00002.safetensors\",\n"
        "    \"model.norm.weight\": \"model-00002-of-00002.safetensors\"\n  }\n}\n";
    size_t len = 0;
    unsigned char *b = slurp(path, &len);
    CHECK(b && len == strlen(want) && !memcmp(b, want, len));
    if (b) {
        struct mk_st_index ix;
        enum mk_status s = mk_safetensors_index_parse((const char *)b, len, path, &ix);
        CHECKF(s == MK_OK, "%s", mk_errmsg());
        if (s == MK_OK) {
            CHECK(ix.n_tensors == 3 && ix.n_files == 2);
            mk_safetensors_index_free(&ix);
        }
    }
    free(b);
    const char *dup[] = {"a", "a"}, *bad_file[] = {"../x.safetensors", "y"};
    CHECK(mk_safetensors_write_index(path, 0, dup, files, 2) == MK_ERR_ARG);
    CHECK(strstr(mk_errmsg(), "listed twice"));
    CHECK(mk_safetensors_write_index(path, 0, names, bad_file, 2) == MK_ERR_ARG);
    CHECK(strstr(mk_errmsg(), "plain file name"));
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/mk_test_st_write_%d", (int)getpid());
    if (mkdir(dir, 0700) != 0) {
        printf("FAIL setup: cannot create %s\n", dir);
        return 1;
    }
    RUN(header_bytes_are_the_reference_layout);
    RUN(round_trip_through_the_reader);
    RUN(refusals_name_the_problem);
    RUN(index_file);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) printf("    note: could not remove %s\n", dir);
    CHECK_EXIT();
}
