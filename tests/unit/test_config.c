/* config.json / generation_config.json parsing: the real Hugging Face configs of the four
 * anchor models (ANCHORS.md), their bytes per decode step counted tensor by tensor, and
 * one bad config per validation rule. */
#include "check.h"
#include "mk/load.h"

/* Qwen/Qwen3-0.6B config.json (1.7B and 8B differ only in the sizes patched below). */
static const char qwen3_06b[] =
    "{\n"
    "  \"architectures\": [\"Qwen3ForCausalLM\"],\n"
    "  \"attention_bias\": false,\n"
    "  \"attention_dropout\": 0.0,\n"
    "  \"bos_token_id\": 151643,\n"
    "  \"eos_token_id\": 151645,\n"
    "  \"head_dim\": 128,\n"
    "  \"hidden_act\": \"silu\",\n"
    "  \"hidden_size\": 1024,\n"
    "  \"initializer_range\": 0.02,\n"
    "  \"intermediate_size\": 3072,\n"
    "  \"max_position_embeddings\": 40960,\n"
    "  \"max_window_layers\": 28,\n"
    "  \"model_type\": \"qwen3\",\n"
    "  \"num_attention_heads\": 16,\n"
    "  \"num_hidden_layers\": 28,\n"
    "  \"num_key_value_heads\": 8,\n"
    "  \"rms_norm_eps\": 1e-06,\n"
    "  \"rope_scaling\": null,\n"
    "  \"rope_theta\": 1000000,\n"
    "  \"sliding_window\": null,\n"
    "  \"tie_word_embeddings\": true,\n"
    "  \"torch_dtype\": \"bfloat16\",\n"
    "  \"transformers_version\": \"4.51.0\",\n"
    "  \"use_cache\": true,\n"
    "  \"use_sliding_window\": false,\n"
    "  \"vocab_size\": 151936\n"
    "}\n";

static const char qwen3_17b[] =
    "{\"architectures\": [\"Qwen3ForCausalLM\"], \"attention_bias\": false, \"attention_dropout\": 0.0,"
    " \"bos_token_id\": 151643, \"eos_token_id\": 151645, \"head_dim\": 128, \"hidden_act\": \"silu\","
    " \"hidden_size\": 2048, \"initializer_range\": 0.02, \"intermediate_size\": 6144,"
    " \"max_position_embeddings\": 40960, \"max_window_layers\": 28, \"model_type\": \"qwen3\","
    " \"num_attention_heads\": 16, \"num_hidden_layers\": 28, \"num_key_value_heads\": 8,"
    " \"rms_norm_eps\": 1e-06, \"rope_scaling\": null, \"rope_theta\": 1000000, \"sliding_window\": null,"
    " \"tie_word_embeddings\": true, \"torch_dtype\": \"bfloat16\", \"transformers_version\": \"4.51.0\","
    " \"use_cache\": true, \"use_sliding_window\": false, \"vocab_size\": 151936}";

static const char qwen3_8b[] =
    "{\"architectures\": [\"Qwen3ForCausalLM\"], \"attention_bias\": false, \"attention_dropout\": 0.0,"
    " \"bos_token_id\": 151643, \"eos_token_id\": 151645, \"head_dim\": 128, \"hidden_act\": \"silu\","
    " \"hidden_size\": 4096, \"initializer_range\": 0.02, \"intermediate_size\": 12288,"
    " \"max_position_embeddings\": 40960, \"max_window_layers\": 36, \"model_type\": \"qwen3\","
    " \"num_attention_heads\": 32, \"num_hidden_layers\": 36, \"num_key_value_heads\": 8,"
    " \"rms_norm_eps\": 1e-06, \"rope_scaling\": null, \"rope_theta\": 1000000, \"sliding_window\": null,"
    " \"tie_word_embeddings\": false, \"torch_dtype\": \"bfloat16\", \"transformers_version\": \"4.51.0\","
    " \"use_cache\": true, \"use_sliding_window\": false, \"vocab_size\": 151936}";

/* meta-llama/Llama-3.2-1B config.json and generation_config.json */
static const char llama32_1b[] =
    "{\n"
    "  \"architectures\": [\"LlamaForCausalLM\"],\n"
    "  \"attention_bias\": false,\n"
    "  \"attention_dropout\": 0.0,\n"
    "  \"bos_token_id\": 128000,\n"
    "  \"eos_token_id\": 128001,\n"
    "  \"head_dim\": 64,\n"
    "  \"hidden_act\": \"silu\",\n"
    "  \"hidden_size\": 2048,\n"
    "  \"initializer_range\": 0.02,\n"
    "  \"intermediate_size\": 8192,\n"
    "  \"max_position_embeddings\": 131072,\n"
    "  \"mlp_bias\": false,\n"
    "  \"model_type\": \"llama\",\n"
    "  \"num_attention_heads\": 32,\n"
    "  \"num_hidden_layers\": 16,\n"
    "  \"num_key_value_heads\": 8,\n"
    "  \"pretraining_tp\": 1,\n"
    "  \"rms_norm_eps\": 1e-05,\n"
    "  \"rope_scaling\": {\n"
    "    \"factor\": 32.0,\n"
    "    \"high_freq_factor\": 4.0,\n"
    "    \"low_freq_factor\": 1.0,\n"
    "    \"original_max_position_embeddings\": 8192,\n"
    "    \"rope_type\": \"llama3\"\n"
    "  },\n"
    "  \"rope_theta\": 500000.0,\n"
    "  \"tie_word_embeddings\": true,\n"
    "  \"torch_dtype\": \"bfloat16\",\n"
    "  \"transformers_version\": \"4.45.0.dev0\",\n"
    "  \"use_cache\": true,\n"
    "  \"vocab_size\": 128256\n"
    "}\n";

static const char llama32_1b_gen[] =
    "{\n  \"bos_token_id\": 128000,\n  \"do_sample\": true,\n"
    "  \"eos_token_id\": [128001, 128008, 128009],\n  \"temperature\": 0.6,\n  \"top_p\": 0.9,\n"
    "  \"transformers_version\": \"4.45.0.dev0\"\n}\n";

/* Bytes per decode step counted as the list of tensors read, independently of
 * mk_config_step_bytes: per layer 2 norms [H], q [nh*D, H], k, v [kv*D, H], o [H, nh*D],
 * gate, up [I, H], down [H, I], q/k norms [D] (qwen3); then one embedding row [H], the
 * final norm [H] and the whole head [V, H]. */
static int64_t count_step_bytes(int64_t V, int64_t H, int64_t I, int64_t L, int64_t nh,
                                int64_t kv, int64_t D, int qk_norm)
{
    int64_t shapes[][2] = {{H, 1}, {nh * D, H}, {kv * D, H}, {kv * D, H}, {H, nh * D},
                           {H, 1}, {I, H}, {I, H}, {H, I}, {D, qk_norm}, {D, qk_norm}};
    int64_t layer = 0;
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) layer += shapes[i][0] * shapes[i][1];
    return 2 * (L * layer + H + H + V * H);
}

static void parse(const char *json, struct mk_config *c)
{
    memset(c, 0xab, sizeof *c);
    CHECK_OK(mk_config_parse(json, strlen(json), "config.json", c));
}

static void test_qwen3_06b(void)
{
    struct mk_config c;
    parse(qwen3_06b, &c);
    CHECK(c.family == MK_FAMILY_QWEN3 && !strcmp(mk_family_name(c.family), "qwen3"));
    CHECK(c.vocab_size == 151936 && c.hidden_size == 1024 && c.intermediate_size == 3072);
    CHECK(c.n_layers == 28 && c.n_heads == 16 && c.n_kv_heads == 8 && c.head_dim == 128);
    CHECK(c.max_position == 40960 && c.tie_word_embeddings && c.qk_norm && !c.qkv_bias);
    CHECK(c.rope_type == MK_ROPE_DEFAULT && c.rope_theta == 1e6f && c.rms_norm_eps == 1e-6f);
    CHECK(c.dtype == MK_DTYPE_BF16 && c.dtype_given && c.sliding_window == 0);
    CHECK(c.bos_token_id == 151643 && c.n_eos == 1 && c.eos_token_ids[0] == 151645);
    int64_t sb = mk_config_step_bytes(&c);
    CHECK(sb == count_step_bytes(151936, 1024, 3072, 28, 16, 8, 128, 1));
    CHECK(sb == 1192101888); /* ANCHORS.md: 1.19 GB */
    CHECK_NEAR((double)sb / 1e9, 1.19, 0.005);
}

static void test_qwen3_17b_and_8b(void)
{
    struct mk_config c;
    parse(qwen3_17b, &c);
    CHECK(c.hidden_size == 2048 && c.intermediate_size == 6144 && c.tie_word_embeddings);
    CHECK(mk_config_step_bytes(&c) == count_step_bytes(151936, 2048, 6144, 28, 16, 8, 128, 1));
    CHECK_NEAR((double)mk_config_step_bytes(&c) / 1e9, 3.44, 0.005);
    parse(qwen3_8b, &c);
    CHECK(c.hidden_size == 4096 && c.n_layers == 36 && c.n_heads == 32 && !c.tie_word_embeddings);
    CHECK(mk_config_step_bytes(&c) == count_step_bytes(151936, 4096, 12288, 36, 32, 8, 128, 1));
    CHECK_NEAR((double)mk_config_step_bytes(&c) / 1e9, 15.14, 0.005);
}

static void test_llama32_1b(void)
{
    struct mk_config c;
    parse(llama32_1b, &c);
    CHECK(c.family == MK_FAMILY_LLAMA && c.head_dim == 64 && c.vocab_size == 128256);
    CHECK(c.rope_type == MK_ROPE_LLAMA3 && c.rope_factor == 32.0f);
    CHECK(c.rope_low_freq_factor == 1.0f && c.rope_high_freq_factor == 4.0f);
    CHECK(c.rope_original_max_position == 8192 && c.rope_theta == 500000.0f);
    CHECK(c.rms_norm_eps == 1e-5f && !c.qk_norm && !c.qkv_bias && c.tie_word_embeddings);
    CHECK(mk_config_step_bytes(&c) == count_step_bytes(128256, 2048, 8192, 16, 32, 8, 64, 0));
    CHECK_NEAR((double)mk_config_step_bytes(&c) / 1e9, 2.47, 0.005);
    struct mk_gen_config g;
    CHECK_OK(mk_gen_config_parse(llama32_1b_gen, strlen(llama32_1b_gen), "generation_config.json",
                                 &c, &g));
    CHECK(c.n_eos == 3 && c.eos_token_ids[0] == 128001 && c.eos_token_ids[1] == 128008);
    CHECK(c.eos_token_ids[2] == 128009 && c.bos_token_id == 128000);
    CHECK(g.do_sample && g.temperature == 0.6f && g.top_p == 0.9f && g.top_k == 0);
}

static void test_defaults_and_variants(void)
{
    struct mk_config c;
    /* Llama 2 style: no head_dim, no kv heads, no dtype, rope_scaling null */
    parse("{\"model_type\":\"llama\",\"vocab_size\":32000,\"hidden_size\":4096,"
          "\"intermediate_size\":11008,\"num_hidden_layers\":32,\"num_attention_heads\":32,"
          "\"max_position_embeddings\":4096,\"rms_norm_eps\":1e-05,\"rope_scaling\":null,"
          "\"bos_token_id\":1,\"eos_token_id\":2}", &c);
    CHECK(c.head_dim == 128 && c.n_kv_heads == 32 && !c.dtype_given && c.rope_theta == 10000.0f);
    CHECK(!c.tie_word_embeddings && c.bos_token_id == 1 && c.n_eos == 1);
    /* Qwen2: QKV bias; transformers 5 spelling: dtype + rope_parameters */
    parse("{\"model_type\":\"qwen2\",\"vocab_size\":1000,\"hidden_size\":64,\"intermediate_size\":128,"
          "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"num_key_value_heads\":2,"
          "\"max_position_embeddings\":256,\"dtype\":\"float32\","
          "\"rope_parameters\":{\"rope_type\":\"default\",\"rope_theta\":1000000.0}}", &c);
    CHECK(c.family == MK_FAMILY_QWEN2 && c.qkv_bias && !c.qk_norm && c.head_dim == 16);
    CHECK(c.dtype == MK_DTYPE_F32 && c.rope_theta == 1e6f && c.bos_token_id == -1 && c.n_eos == 0);
    /* Qwen3 without head_dim: the transformers default is 128, not hidden/heads */
    parse("{\"model_type\":\"qwen3\",\"vocab_size\":1000,\"hidden_size\":64,\"intermediate_size\":128,"
          "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"max_position_embeddings\":256}", &c);
    CHECK(c.head_dim == 128);
    /* Mistral 7B v0.1: sliding window kept; the llama3 rope in rope_parameters form */
    parse("{\"model_type\":\"mistral\",\"vocab_size\":32000,\"hidden_size\":4096,"
          "\"intermediate_size\":14336,\"num_hidden_layers\":32,\"num_attention_heads\":32,"
          "\"num_key_value_heads\":8,\"max_position_embeddings\":32768,\"sliding_window\":4096,"
          "\"torch_dtype\":\"float16\",\"rope_parameters\":{\"rope_type\":\"llama3\",\"rope_theta\":"
          "500000,\"factor\":8,\"low_freq_factor\":1,\"high_freq_factor\":4,"
          "\"original_max_position_embeddings\":8192}}", &c);
    CHECK(c.family == MK_FAMILY_MISTRAL && c.sliding_window == 4096 && c.dtype == MK_DTYPE_F16);
    CHECK(c.rope_type == MK_ROPE_LLAMA3 && c.rope_factor == 8.0f && c.rope_theta == 500000.0f);
    /* eos as a list with a repeat: kept once */
    parse("{\"model_type\":\"llama\",\"vocab_size\":100,\"hidden_size\":8,\"intermediate_size\":8,"
          "\"num_hidden_layers\":1,\"num_attention_heads\":2,\"max_position_embeddings\":16,"
          "\"eos_token_id\":[7,9,7]}", &c);
    CHECK(c.n_eos == 2 && c.eos_token_ids[0] == 7 && c.eos_token_ids[1] == 9);
}

/* The small llama below with `field` replaced by `value` (inserted last: duplicates are
 * avoided by leaving the field out of the base when it is the one replaced). */
static void expect_bad(const char *field, const char *value, enum mk_status status, const char *want)
{
    static const char *const base[][2] = {
        {"model_type", "\"llama\""}, {"vocab_size", "100"}, {"hidden_size", "64"},
        {"intermediate_size", "96"}, {"num_hidden_layers", "2"}, {"num_attention_heads", "8"},
        {"num_key_value_heads", "4"}, {"max_position_embeddings", "128"},
    };
    char json[2048];
    int n = snprintf(json, sizeof json, "{");
    for (size_t i = 0; i < sizeof base / sizeof *base; i++)
        if (strcmp(base[i][0], field))
            n += snprintf(json + n, sizeof json - (size_t)n, "\"%s\":%s,", base[i][0], base[i][1]);
    if (value) n += snprintf(json + n, sizeof json - (size_t)n, "\"%s\":%s,", field, value);
    json[n - 1] = '}';
    struct mk_config c;
    enum mk_status s = mk_config_parse(json, strlen(json), "config.json", &c);
    CHECKF(s == status, "%s=%s: got %s (%s)", field, value ? value : "(absent)", mk_status_name(s),
           mk_errmsg());
    CHECKF(strstr(mk_errmsg(), want) != NULL, "%s=%s: message '%s' lacks '%s'", field,
           value ? value : "(absent)", mk_errmsg(), want);
}

static void test_bad_configs(void)
{
    expect_bad("num_key_value_heads", "3", MK_ERR_FORMAT,
               "config.json: num_key_value_heads = 3 does not divide num_attention_heads = 8");
    expect_bad("model_type", "\"gpt2\"", MK_ERR_UNSUPPORTED,
               "config.json: model_type \"gpt2\" is not supported (supported: llama, mistral, qwen2, qwen3)");
    expect_bad("model_type", NULL, MK_ERR_FORMAT, "config.json: missing model_type");
    expect_bad("hidden_size", NULL, MK_ERR_FORMAT, "config.json: missing hidden_size");
    expect_bad("hidden_size", "0", MK_ERR_FORMAT, "hidden_size: expected an integer in [1, 65536], got 0");
    expect_bad("hidden_size", "\"64\"", MK_ERR_FORMAT, "hidden_size: expected an integer in [1, 65536], got \"64\"");
    expect_bad("hidden_size", "60", MK_ERR_FORMAT,
               "hidden_size = 60 is not a multiple of num_attention_heads = 8");
    expect_bad("vocab_size", "0", MK_ERR_FORMAT, "vocab_size: expected an integer in [1, ");
    expect_bad("num_hidden_layers", "-2", MK_ERR_FORMAT, "num_hidden_layers: expected an integer");
    expect_bad("num_attention_heads", "1e300", MK_ERR_FORMAT, "num_attention_heads: expected an integer");
    expect_bad("intermediate_size", "99999999999", MK_ERR_FORMAT, "intermediate_size: expected an integer");
    expect_bad("head_dim", "7", MK_ERR_FORMAT, "head_dim = 7 is odd");
    expect_bad("rms_norm_eps", "0", MK_ERR_FORMAT, "rms_norm_eps = 0 is outside (0, 1)");
    expect_bad("rms_norm_eps", "1e-200", MK_ERR_FORMAT, "rms_norm_eps = 1e-200 is outside (0, 1) as a 32-bit float");
    expect_bad("rms_norm_eps", "1.5", MK_ERR_FORMAT, "rms_norm_eps = 1.5 is outside (0, 1)");
    expect_bad("rope_theta", "-1", MK_ERR_FORMAT, "rope_theta = -1 is outside");
    expect_bad("rope_scaling", "{\"rope_type\":\"yarn\",\"factor\":4}", MK_ERR_UNSUPPORTED,
               "rope_scaling: rope_type \"yarn\" is not supported (supported: default, llama3)");
    expect_bad("rope_scaling", "{\"type\":\"linear\",\"factor\":4}", MK_ERR_UNSUPPORTED,
               "rope_type \"linear\" is not supported");
    expect_bad("rope_scaling", "{\"rope_type\":\"llama3\",\"factor\":32}", MK_ERR_FORMAT,
               "rope llama3: missing low_freq_factor");
    expect_bad("rope_scaling",
               "{\"rope_type\":\"llama3\",\"factor\":8,\"low_freq_factor\":4,\"high_freq_factor\":4,"
               "\"original_max_position_embeddings\":64}",
               MK_ERR_FORMAT, "high_freq_factor = 4 must exceed low_freq_factor = 4");
    expect_bad("rope_scaling",
               "{\"rope_type\":\"llama3\",\"factor\":8,\"low_freq_factor\":1,\"high_freq_factor\":4,"
               "\"original_max_position_embeddings\":8192}",
               MK_ERR_FORMAT, "original_max_position_embeddings = 8192 exceeds max_position_embeddings = 128");
    expect_bad("rope_scaling", "[]", MK_ERR_FORMAT, "rope_scaling: expected an object, got array");
    expect_bad("torch_dtype", "\"float64\"", MK_ERR_UNSUPPORTED, "torch_dtype \"float64\" is not supported");
    expect_bad("hidden_act", "\"gelu\"", MK_ERR_UNSUPPORTED, "hidden_act \"gelu\" is not supported");
    expect_bad("attention_bias", "true", MK_ERR_UNSUPPORTED, "attention_bias = true is not supported for llama");
    expect_bad("mlp_bias", "true", MK_ERR_UNSUPPORTED, "mlp_bias = true is not supported");
    expect_bad("tie_word_embeddings", "1", MK_ERR_FORMAT, "tie_word_embeddings: expected true or false, got 1");
    expect_bad("eos_token_id", "100", MK_ERR_FORMAT, "eos_token_id: expected an integer in [0, 99], got 100");
    expect_bad("eos_token_id", "[1,-1]", MK_ERR_FORMAT, "eos_token_id: expected an integer in [0, 99], got -1");
    expect_bad("eos_token_id", "[0,1,2,3,4,5,6,7,8]", MK_ERR_LIMIT, "more than 8 distinct ids");
    expect_bad("bos_token_id", "\"<s>\"", MK_ERR_FORMAT, "bos_token_id: expected an integer");
    expect_bad("vocab_size", "100, \"vocab_size\": 101", MK_ERR_FORMAT, "duplicate object key");
    struct mk_config c;
    CHECK(mk_config_parse("[]", 2, "config.json", &c) == MK_ERR_FORMAT);
    CHECK(strstr(mk_errmsg(), "config.json: expected a JSON object, got array"));
    CHECK(mk_config_parse("{\"a\":", 5, "config.json", &c) == MK_ERR_FORMAT);
    CHECK(strstr(mk_errmsg(), "config.json: invalid JSON at line 1"));
}

static void test_bad_generation_configs(void)
{
    struct mk_config c;
    struct mk_gen_config g;
    parse(qwen3_06b, &c);
    static const char *const bad[][2] = {
        {"{\"top_p\": 0}", "top_p = 0 is outside (0, 1]"},
        {"{\"temperature\": -1}", "temperature = -1 is outside [0, 100]"},
        {"{\"top_k\": -5}", "top_k: expected an integer"},
        {"{\"do_sample\": \"yes\"}", "do_sample: expected true or false"},
        {"{\"eos_token_id\": [151645, 200000]}", "eos_token_id: expected an integer in [0, 151935], got 200000"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct mk_config before = c;
        enum mk_status s = mk_gen_config_parse(bad[i][0], strlen(bad[i][0]), "generation_config.json",
                                               &c, &g);
        CHECKF(s == MK_ERR_FORMAT && strstr(mk_errmsg(), bad[i][1]) &&
                   strstr(mk_errmsg(), "generation_config.json: "),
               "%s: got %s '%s'", bad[i][0], mk_status_name(s), mk_errmsg());
        CHECK(!memcmp(&before, &c, sizeof c)); /* untouched on error */
    }
    /* Qwen3's own generation config: a second eos id, sampling defaults */
    const char *q = "{\"bos_token_id\": 151643, \"do_sample\": true, \"eos_token_id\": [151645, 151643],"
                    " \"pad_token_id\": 151643, \"temperature\": 0.6, \"top_k\": 20, \"top_p\": 0.95,"
                    " \"transformers_version\": \"4.51.0\"}";
    CHECK_OK(mk_gen_config_parse(q, strlen(q), "generation_config.json", &c, &g));
    CHECK(c.n_eos == 2 && c.eos_token_ids[0] == 151645 && c.eos_token_ids[1] == 151643);
    CHECK(g.do_sample && g.top_k == 20 && g.top_p == 0.95f && g.temperature == 0.6f);
    CHECK_OK(mk_gen_config_parse("{}", 2, "generation_config.json", &c, &g));
    CHECK(!g.do_sample && g.temperature == 1.0f && g.top_k == 0 && g.top_p == 1.0f);
}

int main(void)
{
    RUN(test_qwen3_06b);
    RUN(test_qwen3_17b_and_8b);
    RUN(test_llama32_1b);
    RUN(test_defaults_and_variants);
    RUN(test_bad_configs);
    RUN(test_bad_generation_configs);
    CHECK_EXIT();
}
