/* mk_model_load end to end on tiny checkpoints written here into a temporary directory
 * (own minimal writer, so the reader is not checked against itself): binding for each
 * family, tied heads, dtype inference, sharded sets, and one broken checkpoint per
 * binding and sharding rule. */
#include "check.h"
#include "mk/load.h"

#include <stdint.h>
#include <unistd.h>

enum { MAXT = 64 };

struct spec {
    int n;
    char name[MAXT][96];
    enum mk_dtype dtype[MAXT];
    int64_t d0[MAXT], d1[MAXT]; /* d1 = 0: a vector */
    int file[MAXT];             /* shard number */
};

static char dir[256];

static void add(struct spec *s, const char *name, enum mk_dtype dt, int64_t d0, int64_t d1)
{
    snprintf(s->name[s->n], sizeof s->name[0], "%s", name);
    s->dtype[s->n] = dt;
    s->d0[s->n] = d0;
    s->d1[s->n] = d1;
    s->file[s->n] = 0;
    s->n++;
}

static int find(const struct spec *s, const char *name)
{
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->name[i], name)) return i;
    return -1;
}

static void drop(struct spec *s, const char *name)
{
    int i = find(s, name);
    CHECK(i >= 0);
    if (i < 0) return;
    s->n--;
    memmove(&s->name[i], &s->name[i + 1], (size_t)(s->n - i) * sizeof s->name[0]);
    memmove(&s->dtype[i], &s->dtype[i + 1], (size_t)(s->n - i) * sizeof s->dtype[0]);
    memmove(&s->d0[i], &s->d0[i + 1], (size_t)(s->n - i) * sizeof s->d0[0]);
    memmove(&s->d1[i], &s->d1[i + 1], (size_t)(s->n - i) * sizeof s->d1[0]);
    memmove(&s->file[i], &s->file[i + 1], (size_t)(s->n - i) * sizeof s->file[0]);
}

/* Tensors of a tiny model: V=64 H=32 I=48 L=2 heads 4 kv 2 D=16. */
static void model_spec(struct spec *s, const char *family, enum mk_dtype dt, bool tied)
{
    int64_t V = 64, H = 32, I = 48, D = 16, q = 4 * D, kv = 2 * D;
    s->n = 0;
    add(s, "model.embed_tokens.weight", dt, V, H);
    for (int l = 0; l < 2; l++) {
        char p[64], n[96];
#define ADD(suffix, a, b) (snprintf(n, sizeof n, "%s%s", p, suffix), add(s, n, dt, a, b))
        snprintf(p, sizeof p, "model.layers.%d.", l);
        ADD("input_layernorm.weight", H, 0);
        ADD("self_attn.q_proj.weight", q, H);
        ADD("self_attn.k_proj.weight", kv, H);
        ADD("self_attn.v_proj.weight", kv, H);
        ADD("self_attn.o_proj.weight", H, q);
        if (!strcmp(family, "qwen2")) {
            ADD("self_attn.q_proj.bias", q, 0);
            ADD("self_attn.k_proj.bias", kv, 0);
            ADD("self_attn.v_proj.bias", kv, 0);
        }
        if (!strcmp(family, "qwen3")) {
            ADD("self_attn.q_norm.weight", D, 0);
            ADD("self_attn.k_norm.weight", D, 0);
        }
        ADD("post_attention_layernorm.weight", H, 0);
        ADD("mlp.gate_proj.weight", I, H);
        ADD("mlp.up_proj.weight", I, H);
        ADD("mlp.down_proj.weight", H, I);
#undef ADD
    }
    add(s, "model.norm.weight", dt, H, 0);
    if (!tied) add(s, "lm_head.weight", dt, V, H);
}

static void write_text(const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

static void write_config(const char *family, const char *dtype, bool tied)
{
    char json[1024];
    snprintf(json, sizeof json,
             "{\"model_type\":\"%s\",\"vocab_size\":64,\"hidden_size\":32,\"intermediate_size\":48,"
             "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"num_key_value_heads\":2,"
             "\"head_dim\":16,\"max_position_embeddings\":128,\"tie_word_embeddings\":%s,"
             "\"eos_token_id\":3%s%s%s}",
             family, tied ? "true" : "false", dtype ? ",\"torch_dtype\":\"" : "", dtype ? dtype : "",
             dtype ? "\"" : "");
    write_text("config.json", json);
}

/* Write the tensors of shard `file` in spec order; every element of tensor i holds the
 * value i (so a binding can be traced back to the tensor it points at). */
static void write_shard(const struct spec *s, int file, const char *name)
{
    static const char *const st_dtype[] = {"F32", "F16", "BF16"};
    char *hdr = malloc(65536);
    int n = snprintf(hdr, 65536, "{\"__metadata__\":{\"format\":\"pt\"}");
    int64_t off = 0;
    for (int i = 0; i < s->n; i++) {
        if (s->file[i] != file) continue;
        int64_t bytes = s->d0[i] * (s->d1[i] ? s->d1[i] : 1) * (int64_t)mk_dtype_size(s->dtype[i]);
        n += snprintf(hdr + n, 65536 - (size_t)n, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%lld",
                      s->name[i], st_dtype[s->dtype[i]], (long long)s->d0[i]);
        if (s->d1[i]) n += snprintf(hdr + n, 65536 - (size_t)n, ",%lld", (long long)s->d1[i]);
        n += snprintf(hdr + n, 65536 - (size_t)n, "],\"data_offsets\":[%lld,%lld]}",
                      (long long)off, (long long)(off + bytes));
        off += bytes;
    }
    n += snprintf(hdr + n, 65536 - (size_t)n, "}");
    while (n % 8) hdr[n++] = ' '; /* the reference writer pads the header to 8 bytes */
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) {
        free(hdr);
        return;
    }
    uint64_t hl = (uint64_t)n;
    unsigned char le[8];
    for (int i = 0; i < 8; i++) le[i] = (unsigned char)(hl >> (8 * i));
    fwrite(le, 1, 8, f);
    fwrite(hdr, 1, (size_t)n, f);
    for (int i = 0; i < s->n; i++) {
        if (s->file[i] != file) continue;
        int64_t elems = s->d0[i] * (s->d1[i] ? s->d1[i] : 1);
        for (int64_t e = 0; e < elems; e++) {
            if (s->dtype[i] == MK_DTYPE_F32) {
                float v = (float)i;
                fwrite(&v, 4, 1, f);
            } else { /* bf16; f16 is covered by the Python tests */
                uint16_t v = mk_f32_to_bf16((float)i);
                fwrite(&v, 2, 1, f);
            }
        }
    }
    fclose(f);
    free(hdr);
}

static void clean_dir(void)
{
    static const char *const files[] = {"config.json", "generation_config.json", "model.safetensors",
                                        "model.safetensors.index.json", "a.safetensors",
                                        "b.safetensors"};
    char path[512];
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
}

/* A fresh single-file checkpoint from `s`. */
static void write_single(const struct spec *s, const char *family, const char *dtype, bool tied)
{
    clean_dir();
    write_config(family, dtype, tied);
    write_shard(s, 0, "model.safetensors");
}

static void expect_load_error(enum mk_status status, const char *want)
{
    struct mk_model *m = NULL;
    mk_error_clear();
    enum mk_status s = mk_model_load(dir, &m);
    CHECKF(s == status, "got %s (%s), want %s", mk_status_name(s), mk_errmsg(), mk_status_name(status));
    CHECKF(strstr(mk_errmsg(), want) != NULL, "message '%s' lacks '%s'", mk_errmsg(), want);
    if (s == MK_OK) mk_model_free(m);
}

static int64_t spec_params(const struct spec *s)
{
    int64_t n = 0;
    for (int i = 0; i < s->n; i++) n += s->d0[i] * (s->d1[i] ? s->d1[i] : 1);
    return n;
}

static float first_value(const struct mk_tensor *t)
{
    float v[64 * 48];
    MK_ASSERT(mk_tensor_numel(t) <= 64 * 48);
    mk_tensor_to_f32(t, v);
    return v[0];
}

static void test_qwen3_tied_bf16(void)
{
    struct spec s;
    model_spec(&s, "qwen3", MK_DTYPE_BF16, true);
    write_single(&s, "qwen3", "bfloat16", true);
    write_text("generation_config.json", "{\"eos_token_id\":[3,4],\"do_sample\":true,\"top_k\":20}");
    struct mk_model *m;
    CHECK_OK(mk_model_load(dir, &m));
    if (!m) return;
    CHECK(m->cfg.family == MK_FAMILY_QWEN3 && m->cfg.qk_norm && m->lm_head == m->embed);
    CHECK(mk_model_params(m) == spec_params(&s));
    CHECK(mk_safetensors_count(m->st) == (size_t)s.n && mk_safetensors_nfiles(m->st) == 1);
    CHECK(m->cfg.n_eos == 2 && m->gen.do_sample && m->gen.top_k == 20);
    const struct mk_layer_weights *w = &m->layers[1];
    CHECK(!strcmp(w->wq->name, "model.layers.1.self_attn.q_proj.weight"));
    CHECK(first_value(w->wq) == (float)find(&s, "model.layers.1.self_attn.q_proj.weight"));
    CHECK(first_value(w->k_norm) == (float)find(&s, "model.layers.1.self_attn.k_norm.weight"));
    CHECK(first_value(w->w_down) == (float)find(&s, "model.layers.1.mlp.down_proj.weight"));
    CHECK(w->bq == NULL && w->q_norm->shape[0] == 16 && w->w_down->shape[1] == 48);
    CHECK(first_value(m->final_norm) == (float)find(&s, "model.norm.weight"));
    CHECK(mk_safetensors_touch(m->st) == mk_safetensors_touch(m->st));
    CHECK(mk_safetensors_data_bytes(m->st) == (uint64_t)spec_params(&s) * 2);
    CHECK(m->load_seconds >= 0);
    mk_model_free(m);
}

static void test_qwen2_untied_f32(void)
{
    struct spec s;
    model_spec(&s, "qwen2", MK_DTYPE_F32, false);
    write_single(&s, "qwen2", "float32", false);
    struct mk_model *m;
    CHECK_OK(mk_model_load(dir, &m));
    if (!m) return;
    CHECK(m->cfg.qkv_bias && m->lm_head != m->embed && m->layers[0].q_norm == NULL);
    CHECK(first_value(m->layers[0].bk) == (float)find(&s, "model.layers.0.self_attn.k_proj.bias"));
    CHECK(first_value(m->lm_head) == (float)find(&s, "lm_head.weight"));
    CHECK(mk_model_params(m) == spec_params(&s));
    uint16_t b[64];
    mk_tensor_to_bf16(m->layers[1].bv, b);
    CHECK(mk_bf16_to_f32(b[31]) == (float)find(&s, "model.layers.1.self_attn.v_proj.bias"));
    mk_model_free(m);
}

static void test_dtype_from_tensors(void)
{
    struct spec s;
    model_spec(&s, "llama", MK_DTYPE_F32, true);
    write_single(&s, "llama", NULL, true);
    struct mk_model *m;
    CHECK_OK(mk_model_load(dir, &m));
    if (!m) return;
    CHECK(m->cfg.dtype == MK_DTYPE_F32 && m->layers[0].q_norm == NULL && m->layers[0].bq == NULL);
    mk_model_free(m);
    /* without a config dtype the embedding decides, and every other tensor must agree */
    s.dtype[find(&s, "model.norm.weight")] = MK_DTYPE_BF16;
    write_single(&s, "llama", NULL, true);
    expect_load_error(MK_ERR_FORMAT, "tensor model.norm.weight: expected f32 [32], got bf16 [32]");
}

static void test_binding_errors(void)
{
    struct spec s;
    model_spec(&s, "qwen3", MK_DTYPE_BF16, true);
    drop(&s, "model.layers.1.mlp.up_proj.weight");
    write_single(&s, "qwen3", "bfloat16", true);
    expect_load_error(MK_ERR_FORMAT, "model.safetensors: missing tensor model.layers.1.mlp.up_proj.weight");

    model_spec(&s, "qwen3", MK_DTYPE_BF16, true);
    s.dtype[find(&s, "model.layers.0.self_attn.q_proj.weight")] = MK_DTYPE_F32;
    write_single(&s, "qwen3", "bfloat16", true);
    expect_load_error(MK_ERR_FORMAT, "/model.safetensors: tensor model.layers.0.self_attn.q_proj.weight: "
                                     "expected bf16 [64, 32], got f32 [64, 32]");

    model_spec(&s, "qwen3", MK_DTYPE_BF16, true);
    s.d1[find(&s, "model.layers.1.mlp.gate_proj.weight")] = 31;
    write_single(&s, "qwen3", "bfloat16", true);
    expect_load_error(MK_ERR_FORMAT, "tensor model.layers.1.mlp.gate_proj.weight: expected bf16 [48, 32], "
                                     "got bf16 [48, 31]");

    model_spec(&s, "qwen3", MK_DTYPE_BF16, true);
    add(&s, "model.layers.2.input_layernorm.weight", MK_DTYPE_BF16, 32, 0);
    write_single(&s, "qwen3", "bfloat16", true);
    expect_load_error(MK_ERR_FORMAT, "unexpected tensor model.layers.2.input_layernorm.weight "
                                     "(not part of a 2-layer qwen3 model)");

    model_spec(&s, "qwen2", MK_DTYPE_BF16, false); /* qwen2 biases in a qwen3 config */
    write_single(&s, "qwen3", "bfloat16", false);
    expect_load_error(MK_ERR_FORMAT, "missing tensor model.layers.0.self_attn.q_norm.weight");

    model_spec(&s, "qwen3", MK_DTYPE_BF16, false);
    drop(&s, "lm_head.weight");
    write_single(&s, "qwen3", "bfloat16", false);
    expect_load_error(MK_ERR_FORMAT, "missing tensor lm_head.weight");
}

static void test_tolerated_extras(void)
{
    struct spec s;
    model_spec(&s, "llama", MK_DTYPE_BF16, true);
    add(&s, "model.layers.0.self_attn.rotary_emb.inv_freq", MK_DTYPE_F32, 8, 0);
    add(&s, "lm_head.weight", MK_DTYPE_BF16, 64, 32); /* tied checkpoint that kept its head */
    write_single(&s, "llama", "bfloat16", true);
    struct mk_model *m;
    CHECK_OK(mk_model_load(dir, &m));
    if (m) {
        CHECK(m->lm_head == m->embed);
        CHECK(mk_model_params(m) == spec_params(&s) - 8 - 64 * 32);
        mk_model_free(m);
    }
    s.dtype[find(&s, "lm_head.weight")] = MK_DTYPE_F32;
    write_single(&s, "llama", "bfloat16", true);
    expect_load_error(MK_ERR_FORMAT, "tensor lm_head.weight: expected bf16 [64, 32], got f32 [64, 32]");
}

/* Two shards a/b with an index; `map_override` replaces the index text when given. */
static void write_sharded(struct spec *s, const char *map_override)
{
    clean_dir();
    write_config("qwen3", "bfloat16", true);
    for (int i = 0; i < s->n; i++) s->file[i] = i >= s->n / 2;
    write_shard(s, 0, "a.safetensors");
    write_shard(s, 1, "b.safetensors");
    if (map_override) {
        write_text("model.safetensors.index.json", map_override);
        return;
    }
    char *j = malloc(65536);
    int n = snprintf(j, 65536, "{\"metadata\":{\"total_size\":0},\"weight_map\":{");
    for (int i = 0; i < s->n; i++)
        n += snprintf(j + n, 65536 - (size_t)n, "%s\"%s\":\"%s\"", i ? "," : "", s->name[i],
                      s->file[i] ? "b.safetensors" : "a.safetensors");
    snprintf(j + n, 65536 - (size_t)n, "}}");
    write_text("model.safetensors.index.json", j);
    free(j);
}

static void test_sharded(void)
{
    struct spec s;
    model_spec(&s, "qwen3", MK_DTYPE_BF16, true);
    write_sharded(&s, NULL);
    struct mk_model *m;
    CHECK_OK(mk_model_load(dir, &m));
    if (m) {
        CHECK(mk_safetensors_nfiles(m->st) == 2 && mk_model_params(m) == spec_params(&s));
        const struct mk_tensor *t = mk_safetensors_find(m->st, "model.norm.weight");
        CHECK(t && t->shard == 1 && strstr(mk_safetensors_file(m->st, 1), "/b.safetensors"));
        CHECK(first_value(m->final_norm) == (float)find(&s, "model.norm.weight"));
        mk_model_free(m);
    }
    write_sharded(&s, "{\"weight_map\":{\"model.norm.weight\":\"../b.safetensors\"}}");
    expect_load_error(MK_ERR_FORMAT, "model.safetensors.index.json: weight_map: tensor model.norm.weight: "
                                     "file \"../b.safetensors\" is not a plain file name");
    write_sharded(&s, "{\"weight_map\":{\"model.norm.weight\":\"c.safetensors\"}}");
    expect_load_error(MK_ERR_IO, "/c.safetensors: cannot open");
    /* the index lists only one tensor: the other tensors of the shard are unlisted */
    write_sharded(&s, "{\"weight_map\":{\"model.norm.weight\":\"b.safetensors\"}}");
    expect_load_error(MK_ERR_FORMAT, "is not in the weight_map");
}

static void test_sharded_inconsistent(void)
{
    struct spec s;
    model_spec(&s, "qwen3", MK_DTYPE_BF16, true);
    write_sharded(&s, NULL);
    /* the same tensor in both shards */
    struct spec dup = s;
    dup.n = 0;
    for (int i = 0; i < s.n; i++) {
        if (s.file[i] == 0) {
            add(&dup, s.name[i], s.dtype[i], s.d0[i], s.d1[i]);
        }
    }
    add(&dup, "model.norm.weight", MK_DTYPE_BF16, 32, 0);
    write_shard(&dup, 0, "a.safetensors");
    expect_load_error(MK_ERR_FORMAT, "tensor model.norm.weight is in both");
    /* the index puts a tensor in the wrong shard */
    write_sharded(&s, NULL);
    char path[512];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    char *text;
    size_t len;
    CHECK_OK(mk_read_file(path, 1 << 20, &text, &len));
    if (!text) return;
    char *p = strstr(text, "\"model.norm.weight\":\"b.safetensors\"");
    CHECK(p != NULL);
    if (p) memcpy(p + strlen("\"model.norm.weight\":\""), "a", 1);
    write_text("model.safetensors.index.json", text);
    free(text);
    expect_load_error(MK_ERR_FORMAT, "weight_map: tensor model.norm.weight: not found in");
}

static void test_missing_files(void)
{
    clean_dir();
    expect_load_error(MK_ERR_IO, "/config.json: cannot open");
    write_config("qwen3", "bfloat16", true);
    expect_load_error(MK_ERR_IO, "neither model.safetensors.index.json nor model.safetensors found");
    write_text("model.safetensors", "1234");
    expect_load_error(MK_ERR_FORMAT, "/model.safetensors: file is 4 bytes, too short");
    write_text("generation_config.json", "{\"top_p\": 2}");
    expect_load_error(MK_ERR_FORMAT, "generation_config.json: top_p = 2 is outside (0, 1]");
    struct mk_config c;
    struct mk_gen_config g;
    CHECK(mk_config_load(dir, &c, &g) == MK_ERR_FORMAT);
    write_text("generation_config.json", "{\"top_p\": 0.5}");
    CHECK_OK(mk_config_load(dir, &c, &g));
    CHECK(g.top_p == 0.5f && c.hidden_size == 32);
    char big[512];
    snprintf(big, sizeof big, "%s/config.json", dir);
    char *text;
    size_t len;
    CHECK(mk_read_file(big, 10, &text, &len) == MK_ERR_LIMIT);
    CHECK(mk_read_file(dir, 1 << 20, &text, &len) == MK_ERR_IO); /* a directory */
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/mk_test_model_XXXXXX");
    if (!mkdtemp(dir)) {
        printf("FAIL mkdtemp\n");
        return 1;
    }
    RUN(test_qwen3_tied_bf16);
    RUN(test_qwen2_untied_f32);
    RUN(test_dtype_from_tensors);
    RUN(test_binding_errors);
    RUN(test_tolerated_extras);
    RUN(test_sharded);
    RUN(test_sharded_inconsistent);
    RUN(test_missing_files);
    clean_dir();
    rmdir(dir);
    CHECK_EXIT();
}
