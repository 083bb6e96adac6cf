/* mk synth: random-weight checkpoints of real architectures, laid out as the Hugging
 * Face releases are (config.json, generation_config.json, model.safetensors or
 * model-0000K-of-0000N.safetensors + model.safetensors.index.json, tokenizer files). */
#ifndef MK_TOOLS_SYNTH_H
#define MK_TOOLS_SYNTH_H

#include "mk/load.h"

#include <stdbool.h>
#include <stdint.h>

enum synth_arch { SYNTH_QWEN3 = 0, SYNTH_LLAMA, SYNTH_QWEN2, SYNTH_MISTRAL, SYNTH_ARCH_COUNT };

enum { SYNTH_MAX_EOS = 4 };

/* Everything that decides the tensors and the two config files. */
struct synth_spec {
    enum synth_arch arch;
    const char *preset;        /* "0.6b", ...; NULL when read from --config */
    int hidden, inter, layers, heads, kv_heads, head_dim, vocab, max_pos;
    bool tied;
    bool qkv_bias;             /* q/k/v_proj.bias (qwen2 always; attention_bias elsewhere) */
    bool o_bias;               /* o_proj.bias (attention_bias on llama / qwen3) */
    bool mlp_bias;             /* gate/up/down_proj.bias (llama mlp_bias) */
    bool qk_norm;              /* q_norm / k_norm (qwen3) */
    double rope_theta, rms_eps;
    bool rope_llama3;          /* rope_scaling {"rope_type": "llama3", ...} */
    double rope_factor, rope_low, rope_high;
    int rope_orig_max_pos;
    int bos;
    int n_eos;                 /* config.json eos_token_id: one id is written as a number */
    int eos[SYNTH_MAX_EOS];
};

struct synth_opts {
    const char *out_dir;
    enum mk_dtype dtype;
    uint64_t seed;
    const char *tokenizer_dir;  /* NULL: no tokenizer files */
    uint64_t shard_bytes;       /* start a new shard before exceeding this many bytes */
    const char *config_path;    /* --config: copied to config.json (dtype updated) */
    int threads;                /* 0: every online core */
};

const char *synth_arch_name(enum synth_arch a);          /* "qwen3", ... */
bool synth_arch_parse(const char *s, enum synth_arch *out);

/* The preset `name` of `arch` with the real release's shapes; false when unknown.
 * synth_preset_list gives the names for messages ("tiny, 0.6b, 1.7b, 4b, 8b"). */
bool synth_preset(enum synth_arch arch, const char *name, struct synth_spec *out);
const char *synth_preset_list(enum synth_arch arch);

/* Read a config.json (a real release's, say) into a spec; *dtype gets its torch_dtype
 * (or dtype), MK_DTYPE_BF16 when absent. Errors name the file and field. */
enum mk_status synth_spec_from_config(const char *path, struct synth_spec *out,
                                      enum mk_dtype *dtype);

/* Exact parameter count of the checkpoint the spec describes (tied head counted once). */
int64_t synth_params(const struct synth_spec *s);

/* Write the checkpoint directory. *out_bytes gets the tensor bytes written, *out_files
 * the number of safetensors files. */
enum mk_status synth_write(const struct synth_spec *s, const struct synth_opts *o,
                           uint64_t *out_bytes, int *out_files);

#endif
