/* config.json of the supported families, checked field by field.
 *
 * Defaults follow the Hugging Face configuration classes (transformers 5): num_key_value_heads
 * = num_attention_heads, head_dim = hidden_size / num_attention_heads (qwen3: 128),
 * rms_norm_eps 1e-6, rope_theta 10000, tie_word_embeddings false. A null value counts as
 * absent (exporters write nulls for unset options). Both the transformers 4 spelling
 * (rope_theta + rope_scaling, torch_dtype) and the 5 one (rope_parameters, dtype) are read.
 * Features that would change the math and that this engine does not support (o_proj/MLP biases, rope
 * types other than llama3, Qwen's per-layer sliding window, activations other than SiLU)
 * are rejected, never ignored. */
#include "mk/load.h"
#include "util/json.h"

#include <stdio.h>
#include <math.h>
#include <string.h>

/* Bounds: generous for real models, small enough that every size product used by the
 * loader, compiler and runtime fits in int64 (and per-tensor element counts in 2^40). */
enum {
    MK_MAX_VOCAB = 1 << 22,
    MK_MAX_HIDDEN = 1 << 16,
    MK_MAX_INTER = 1 << 20,
    MK_MAX_LAYERS = 1024,
    MK_MAX_HEADS = 1024,
    MK_MAX_HEAD_DIM = 1024,
    MK_MAX_POSITIONS = 1 << 24,
};

static const char *const family_names[MK_FAMILY_COUNT] = {"llama", "mistral", "qwen2", "qwen3"};

const char *mk_family_name(enum mk_family f)
{
    return (unsigned)f < MK_FAMILY_COUNT ? family_names[f] : "?";
}

/* The member, or NULL when absent or null. */
static const json_t *get(const json_t *obj, const char *key)
{
    const json_t *v = obj ? json_object_get(obj, key) : NULL;
    return json_is_null(v) ? NULL : v;
}

static enum mk_status get_int(const json_t *root, const char *what, const char *key,
                              bool required, int64_t def, int64_t lo, int64_t hi, int *out)
{
    const json_t *v = get(root, key);
    if (!v) {
        if (required) return mk_error(MK_ERR_FORMAT, "%s: missing %s", what, key);
        *out = (int)def;
        return MK_OK;
    }
    int64_t x;
    enum mk_status s = mk_json_int(v, what, key, lo, hi, &x);
    if (s == MK_OK) *out = (int)x;
    return s;
}

/* A number in the open interval (lo, hi). */
static enum mk_status get_float(const json_t *obj, const char *what, const char *key,
                                double def, double lo, double hi, float *out)
{
    const json_t *v = get(obj, key);
    double x = def;
    if (v) {
        enum mk_status s = mk_json_number(v, what, key, &x);
        if (s != MK_OK) return s;
    }
    float f = (float)x; /* checked after rounding: 1e-200 is positive but its float is 0 */
    if (!(f > lo && f < hi))
        return mk_error(MK_ERR_FORMAT, "%s: %s = %g is outside (%g, %g)%s", what, key, x, lo, hi,
                        x > lo && x < hi ? " as a 32-bit float" : "");
    *out = f;
    return MK_OK;
}

static enum mk_status get_bool(const json_t *root, const char *what, const char *key, bool def,
                               bool *out)
{
    const json_t *v = get(root, key);
    if (!v) {
        *out = def;
        return MK_OK;
    }
    return mk_json_bool(v, what, key, out);
}

static enum mk_status parse_family(const json_t *root, const char *what, struct mk_config *c)
{
    const json_t *v = get(root, "model_type");
    if (!v) return mk_error(MK_ERR_FORMAT, "%s: missing model_type", what);
    if (!json_is_string(v))
        return mk_error(MK_ERR_FORMAT, "%s: model_type: expected a string, got %s", what,
                        mk_json_type_name(v));
    for (int f = 0; f < MK_FAMILY_COUNT; f++)
        if (!strcmp(json_string_value(v), family_names[f])) {
            c->family = (enum mk_family)f;
            return MK_OK;
        }
    return mk_error(MK_ERR_UNSUPPORTED,
                    "%s: model_type \"%.64s\" is not supported (supported: llama, mistral, qwen2, qwen3)",
                    what, json_string_value(v));
}

static enum mk_status parse_sizes(const json_t *root, const char *what, struct mk_config *c)
{
    enum mk_status s = MK_OK;
    if (s == MK_OK) s = get_int(root, what, "vocab_size", true, 0, 1, MK_MAX_VOCAB, &c->vocab_size);
    if (s == MK_OK) s = get_int(root, what, "hidden_size", true, 0, 1, MK_MAX_HIDDEN, &c->hidden_size);
    if (s == MK_OK)
        s = get_int(root, what, "intermediate_size", true, 0, 1, MK_MAX_INTER, &c->intermediate_size);
    if (s == MK_OK) s = get_int(root, what, "num_hidden_layers", true, 0, 1, MK_MAX_LAYERS, &c->n_layers);
    if (s == MK_OK)
        s = get_int(root, what, "num_attention_heads", true, 0, 1, MK_MAX_HEADS, &c->n_heads);
    if (s == MK_OK)
        s = get_int(root, what, "num_key_value_heads", false, c->n_heads, 1, MK_MAX_HEADS,
                    &c->n_kv_heads);
    if (s == MK_OK)
        s = get_int(root, what, "max_position_embeddings", true, 0, 1, MK_MAX_POSITIONS,
                    &c->max_position);
    if (s != MK_OK) return s;
    if (c->n_heads % c->n_kv_heads)
        return mk_error(MK_ERR_FORMAT, "%s: num_key_value_heads = %d does not divide num_attention_heads = %d",
                        what, c->n_kv_heads, c->n_heads);
    return MK_OK;
}

static enum mk_status parse_head_dim(const json_t *root, const char *what, struct mk_config *c)
{
    if (!get(root, "head_dim") && c->family != MK_FAMILY_QWEN3) {
        if (c->hidden_size % c->n_heads)
            return mk_error(MK_ERR_FORMAT,
                            "%s: hidden_size = %d is not a multiple of num_attention_heads = %d "
                            "(and head_dim is not given)", what, c->hidden_size, c->n_heads);
        c->head_dim = c->hidden_size / c->n_heads;
    } else {
        enum mk_status s = get_int(root, what, "head_dim", false, 128, 1, MK_MAX_HEAD_DIM, &c->head_dim);
        if (s != MK_OK) return s;
    }
    if (c->head_dim % 2)
        return mk_error(MK_ERR_FORMAT, "%s: head_dim = %d is odd (RoPE rotates pairs)", what,
                        c->head_dim);
    return MK_OK;
}

static enum mk_status parse_llama3_rope(const json_t *rs, const char *what, struct mk_config *c)
{
    char w[512];
    snprintf(w, sizeof w, "%s: rope llama3", what);
    static const char *const need[] = {"factor", "low_freq_factor", "high_freq_factor",
                                       "original_max_position_embeddings"};
    for (int i = 0; i < 4; i++)
        if (!get(rs, need[i])) return mk_error(MK_ERR_FORMAT, "%s: missing %s", w, need[i]);
    enum mk_status s = get_float(rs, w, "factor", 0, 0, 1e6, &c->rope_factor);
    if (s == MK_OK) s = get_float(rs, w, "low_freq_factor", 0, 0, 1e6, &c->rope_low_freq_factor);
    if (s == MK_OK) s = get_float(rs, w, "high_freq_factor", 0, 0, 1e6, &c->rope_high_freq_factor);
    if (s == MK_OK)
        s = get_int(rs, w, "original_max_position_embeddings", true, 0, 1, MK_MAX_POSITIONS,
                    &c->rope_original_max_position);
    if (s != MK_OK) return s;
    if (!(c->rope_high_freq_factor > c->rope_low_freq_factor)) /* the ramp divides by the gap */
        return mk_error(MK_ERR_FORMAT, "%s: high_freq_factor = %g must exceed low_freq_factor = %g",
                        w, c->rope_high_freq_factor, c->rope_low_freq_factor);
    c->rope_type = MK_ROPE_LLAMA3;
    return MK_OK;
}

/* rope_theta: top level (transformers 4) or inside rope_parameters (5). Scaling:
 * rope_scaling (4) or rope_parameters (5), keyed by rope_type or the older "type". */
static enum mk_status parse_rope(const json_t *root, const char *what, struct mk_config *c)
{
    const json_t *params = get(root, "rope_parameters");
    const json_t *scaling = get(root, "rope_scaling");
    if (params && !json_is_object(params))
        return mk_error(MK_ERR_FORMAT, "%s: rope_parameters: expected an object, got %s", what,
                        mk_json_type_name(params));
    if (scaling && !json_is_object(scaling))
        return mk_error(MK_ERR_FORMAT, "%s: rope_scaling: expected an object, got %s", what,
                        mk_json_type_name(scaling));
    const json_t *theta_from = get(root, "rope_theta") ? root : params;
    enum mk_status s = get_float(theta_from, what, "rope_theta", 10000.0, 0, 1e12, &c->rope_theta);
    if (s != MK_OK) return s;
    c->rope_type = MK_ROPE_DEFAULT;
    const json_t *rs = scaling ? scaling : params;
    const char *field = scaling ? "rope_scaling" : "rope_parameters";
    if (!rs) return MK_OK;
    const json_t *type = get(rs, "rope_type") ? get(rs, "rope_type") : get(rs, "type");
    if (!type) {
        if (scaling) return mk_error(MK_ERR_FORMAT, "%s: rope_scaling: missing rope_type", what);
        return MK_OK;
    }
    if (!json_is_string(type))
        return mk_error(MK_ERR_FORMAT, "%s: %s: rope_type: expected a string, got %s", what, field,
                        mk_json_type_name(type));
    if (!strcmp(json_string_value(type), "default")) return MK_OK;
    if (!strcmp(json_string_value(type), "llama3")) return parse_llama3_rope(rs, what, c);
    return mk_error(MK_ERR_UNSUPPORTED,
                    "%s: %s: rope_type \"%.32s\" is not supported (supported: default, llama3)",
                    what, field, json_string_value(type));
}

static enum mk_status parse_dtype_field(const json_t *root, const char *what, struct mk_config *c)
{
    const char *key = get(root, "dtype") ? "dtype" : "torch_dtype";
    const json_t *v = get(root, key);
    c->dtype = MK_DTYPE_BF16;
    c->dtype_given = v != NULL;
    if (!v) return MK_OK;
    if (!json_is_string(v))
        return mk_error(MK_ERR_FORMAT, "%s: %s: expected a string, got %s", what, key,
                        mk_json_type_name(v));
    const char *s = json_string_value(v);
    if (!strcmp(s, "bfloat16")) c->dtype = MK_DTYPE_BF16;
    else if (!strcmp(s, "float16")) c->dtype = MK_DTYPE_F16;
    else if (!strcmp(s, "float32")) c->dtype = MK_DTYPE_F32;
    else
        return mk_error(MK_ERR_UNSUPPORTED,
                        "%s: %s \"%.32s\" is not supported (bfloat16, float16, float32 are)", what,
                        key, s);
    return MK_OK;
}

/* Options that change the math: the family's fixed ones and the rejected ones. */
static enum mk_status parse_features(const json_t *root, const char *what, struct mk_config *c)
{
    const json_t *act = get(root, "hidden_act");
    if (act && (!json_is_string(act) || strcmp(json_string_value(act), "silu")))
        return mk_error(MK_ERR_UNSUPPORTED, "%s: hidden_act \"%.32s\" is not supported (silu is)",
                        what, json_is_string(act) ? json_string_value(act) : mk_json_type_name(act));
    bool attn_bias, mlp_bias, swa;
    enum mk_status s = get_bool(root, what, "attention_bias", false, &attn_bias);
    if (s == MK_OK) s = get_bool(root, what, "mlp_bias", false, &mlp_bias);
    if (s == MK_OK) s = get_bool(root, what, "use_sliding_window", false, &swa);
    if (s == MK_OK) s = get_bool(root, what, "tie_word_embeddings", false, &c->tie_word_embeddings);
    if (s != MK_OK) return s;
    if (attn_bias && c->family != MK_FAMILY_QWEN2)
        return mk_error(MK_ERR_UNSUPPORTED,
                        "%s: attention_bias = true is not supported for %s (it adds an o_proj bias)",
                        what, mk_family_name(c->family));
    if (mlp_bias)
        return mk_error(MK_ERR_UNSUPPORTED, "%s: mlp_bias = true is not supported", what);
    c->qkv_bias = c->family == MK_FAMILY_QWEN2;
    c->qk_norm = c->family == MK_FAMILY_QWEN3;
    c->sliding_window = 0;
    if (c->family == MK_FAMILY_QWEN2 || c->family == MK_FAMILY_QWEN3) {
        if (swa)
            return mk_error(MK_ERR_UNSUPPORTED,
                            "%s: use_sliding_window = true is not supported for %s", what,
                            mk_family_name(c->family));
    } else if (c->family == MK_FAMILY_MISTRAL && get(root, "sliding_window")) {
        s = get_int(root, what, "sliding_window", false, 0, 1, INT32_MAX, &c->sliding_window);
        if (s != MK_OK) return s;
        if (c->sliding_window >= c->max_position) c->sliding_window = 0; /* never reached */
    }
    return MK_OK;
}

/* Append id to the eos list unless present. */
static enum mk_status add_eos(struct mk_config *c, int id, const char *what)
{
    for (int i = 0; i < c->n_eos; i++)
        if (c->eos_token_ids[i] == id) return MK_OK;
    if (c->n_eos >= MK_MAX_EOS)
        return mk_error(MK_ERR_LIMIT, "%s: eos_token_id: more than %d distinct ids", what, MK_MAX_EOS);
    c->eos_token_ids[c->n_eos++] = id;
    return MK_OK;
}

/* eos_token_id: an id or a list of ids, each a valid token. bos_token_id: one id. */
static enum mk_status parse_special_ids(const json_t *root, const char *what, struct mk_config *c)
{
    enum mk_status s = get_int(root, what, "bos_token_id", false, c->bos_token_id, 0,
                               c->vocab_size - 1, &c->bos_token_id);
    const json_t *eos = get(root, "eos_token_id");
    if (s != MK_OK || !eos) return s;
    if (!json_is_array(eos)) {
        int id;
        s = get_int(root, what, "eos_token_id", true, 0, 0, c->vocab_size - 1, &id);
        return s == MK_OK ? add_eos(c, id, what) : s;
    }
    for (size_t i = 0; i < json_array_size(eos); i++) {
        int64_t id;
        s = mk_json_int(json_array_get(eos, i), what, "eos_token_id", 0, c->vocab_size - 1, &id);
        if (s == MK_OK) s = add_eos(c, (int)id, what);
        if (s != MK_OK) return s;
    }
    return MK_OK;
}

enum mk_status mk_config_parse(const char *json, size_t len, const char *what,
                               struct mk_config *out)
{
    json_t *root;
    enum mk_status s = mk_json_load_object(json, len, what, &root);
    if (s != MK_OK) return s;
    struct mk_config c = {.bos_token_id = -1};
    s = parse_family(root, what, &c);
    if (s == MK_OK) s = parse_sizes(root, what, &c);
    if (s == MK_OK) s = parse_head_dim(root, what, &c);
    if (s == MK_OK) s = get_float(root, what, "rms_norm_eps", 1e-6, 0, 1, &c.rms_norm_eps);
    if (s == MK_OK) s = parse_rope(root, what, &c);
    if (s == MK_OK && c.rope_type == MK_ROPE_LLAMA3 && c.rope_original_max_position > c.max_position)
        s = mk_error(MK_ERR_FORMAT,
                     "%s: rope llama3: original_max_position_embeddings = %d exceeds "
                     "max_position_embeddings = %d", what, c.rope_original_max_position,
                     c.max_position);
    if (s == MK_OK) s = parse_dtype_field(root, what, &c);
    if (s == MK_OK) s = parse_features(root, what, &c);
    if (s == MK_OK) s = parse_special_ids(root, what, &c);
    json_decref(root);
    if (s == MK_OK) *out = c;
    return s;
}

int64_t mk_config_step_bytes(const struct mk_config *c)
{
    int64_t H = c->hidden_size, I = c->intermediate_size, D = c->head_dim;
    int64_t q = (int64_t)c->n_heads * D, kv = (int64_t)c->n_kv_heads * D;
    int64_t layer = H                        /* input_layernorm */
                    + q * H + 2 * kv * H     /* q, k, v */
                    + H * q                  /* o */
                    + H                      /* post_attention_layernorm */
                    + 3 * I * H;             /* gate, up, down */
    if (c->qkv_bias) layer += q + 2 * kv;
    if (c->qk_norm) layer += 2 * D;
    int64_t elems = c->n_layers * layer
                    + H                          /* one embedding row */
                    + H                          /* final norm */
                    + (int64_t)c->vocab_size * H; /* the whole LM head, tied or not */
    return elems * (int64_t)mk_dtype_size(MK_DTYPE_BF16);
}
