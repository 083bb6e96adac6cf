/* megakernel — loading Hugging Face checkpoint directories.
 *
 * A checkpoint directory holds config.json, generation_config.json (optional),
 * model.safetensors or model.safetensors.index.json + shards, and optionally
 * tokenizer.json. Everything is untrusted: every function below validates what it
 * reads and on failure returns a status with a message naming the file, the field or
 * tensor, and what was expected vs found (mk_errmsg()). On error nothing is returned
 * through the out-parameters and nothing leaks.
 */
#ifndef MK_LOAD_H
#define MK_LOAD_H

#include "mk/mk.h"

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

enum mk_dtype {
    MK_DTYPE_F32 = 0,
    MK_DTYPE_F16,
    MK_DTYPE_BF16,
    MK_DTYPE_COUNT
};
const char *mk_dtype_name(enum mk_dtype t);   /* "f32", "f16", "bf16" */
size_t mk_dtype_size(enum mk_dtype t);        /* bytes per element */

enum { MK_MAX_DIMS = 8 };

/* One tensor of a safetensors file. `data` points into the read-only mapping. */
struct mk_tensor {
    const char *name;
    enum mk_dtype dtype;
    int ndim;
    int64_t shape[MK_MAX_DIMS];
    const void *data;   /* nbytes bytes; alignment is whatever the file gives */
    size_t nbytes;
    int shard;          /* index of the file it lives in */
};

/* ---- safetensors ----------------------------------------------------------------- */

struct mk_safetensors; /* one or more mapped files (a single file or a sharded set) */

/* Open `path`: either one .safetensors file or a model.safetensors.index.json.
 * Maps every file read-only and validates all rules of DESIGN.md §7. */
enum mk_status mk_safetensors_open(const char *path, struct mk_safetensors **out);
void mk_safetensors_close(struct mk_safetensors *st);
size_t mk_safetensors_count(const struct mk_safetensors *st);
const struct mk_tensor *mk_safetensors_at(const struct mk_safetensors *st, size_t i);
/* NULL when absent (no error message is set). */
const struct mk_tensor *mk_safetensors_find(const struct mk_safetensors *st, const char *name);
/* Files of the set (1 for a single file); mk_tensor.shard indexes them. The name is the
 * path as opened (shards: index directory + "/" + file name). */
size_t mk_safetensors_nfiles(const struct mk_safetensors *st);
const char *mk_safetensors_file(const struct mk_safetensors *st, int shard);
/* Sum of every tensor's nbytes. */
uint64_t mk_safetensors_data_bytes(const struct mk_safetensors *st);
/* Read every tensor byte once (faults the mapping in from the page cache or disk) and
 * return a checksum of them, so the reads cannot be optimized away. */
uint64_t mk_safetensors_touch(const struct mk_safetensors *st);

/* A parsed model.safetensors.index.json: weight_map as tensor name -> file number.
 * files[] are distinct plain file names (no '/', not "." or ".."), in order of first
 * appearance; names[] in the file's order. Exposed for the fuzzer and tests. */
struct mk_st_index {
    size_t n_files;
    char **files;
    size_t n_tensors;
    char **names;
    int *file_of;   /* n_tensors entries, each in [0, n_files) */
};
enum mk_status mk_safetensors_index_parse(const char *json, size_t len, const char *what,
                                          struct mk_st_index *out);
void mk_safetensors_index_free(struct mk_st_index *ix);

/* Parse one safetensors header from memory (`buf` = the whole file, `len` bytes).
 * Exposed for the fuzzer and tests; `what` names the file in messages. On success
 * *out_tensors / *out_count hold the entries (data pointers into buf); free with
 * mk_safetensors_free_tensors(). */
enum mk_status mk_safetensors_parse(const void *buf, size_t len, const char *what,
                                    struct mk_tensor **out_tensors, size_t *out_count);
void mk_safetensors_free_tensors(struct mk_tensor *t, size_t count);

/* ---- config -------------------------------------------------------------------- */

enum mk_family {
    MK_FAMILY_LLAMA = 0, /* Llama 2 / 3 / 3.x (model_type "llama") */
    MK_FAMILY_MISTRAL,   /* model_type "mistral" */
    MK_FAMILY_QWEN2,     /* model_type "qwen2": QKV bias */
    MK_FAMILY_QWEN3,     /* model_type "qwen3": q/k RMSNorm, explicit head_dim */
    MK_FAMILY_COUNT
};
const char *mk_family_name(enum mk_family f); /* "llama", "mistral", "qwen2", "qwen3" */

enum mk_rope_type { MK_ROPE_DEFAULT = 0, MK_ROPE_LLAMA3 };

enum { MK_MAX_EOS = 8 };

struct mk_config {
    enum mk_family family;
    int vocab_size;
    int hidden_size;          /* H */
    int intermediate_size;    /* I (MLP) */
    int n_layers;
    int n_heads;              /* query heads */
    int n_kv_heads;           /* divides n_heads */
    int head_dim;             /* D; hidden_size / n_heads unless given */
    int max_position;         /* max_position_embeddings */
    float rms_norm_eps;
    float rope_theta;
    enum mk_rope_type rope_type;
    float rope_factor;           /* llama3: factor */
    float rope_low_freq_factor;  /* llama3 */
    float rope_high_freq_factor; /* llama3 */
    int rope_original_max_position; /* llama3: original_max_position_embeddings */
    bool tie_word_embeddings;
    bool qkv_bias;            /* qwen2 (and attention_bias=true elsewhere) */
    bool qk_norm;             /* qwen3 */
    enum mk_dtype dtype;      /* torch_dtype / dtype of the checkpoint */
    int bos_token_id;         /* -1 when absent */
    int n_eos;                /* eos ids from config.json and generation_config.json */
    int eos_token_ids[MK_MAX_EOS];
    bool dtype_given;         /* false: no torch_dtype/dtype; the loader then takes the
                                 checkpoint's dtype from the embedding tensor */
    int sliding_window;       /* mistral sliding_window / qwen use_sliding_window; 0 = none */
};

/* Sampling defaults from generation_config.json (absent fields keep the defaults:
 * greedy, temperature 1, top_k 0 = off, top_p 1). */
struct mk_gen_config {
    bool do_sample;
    float temperature;
    int top_k;
    float top_p;
};

/* Parse and validate config.json text (`what` names the file in messages). */
enum mk_status mk_config_parse(const char *json, size_t len, const char *what,
                               struct mk_config *out);
/* Merge generation_config.json (eos ids, sampling defaults) into cfg / gen. */
enum mk_status mk_gen_config_parse(const char *json, size_t len, const char *what,
                                   struct mk_config *cfg, struct mk_gen_config *gen);
/* The defaults above (greedy, temperature 1, top_k 0, top_p 1). */
void mk_gen_config_default(struct mk_gen_config *gen);
/* Read DIR/config.json and, when present, DIR/generation_config.json (no weights). */
enum mk_status mk_config_load(const char *dir, struct mk_config *cfg,
                              struct mk_gen_config *gen);

/* ---- the bound model ------------------------------------------------------------ */

/* Weights of one decoder layer, bound by name and checked against the config.
 * Shapes in the Hugging Face [out, in] convention. Pointers into the mapping. */
struct mk_layer_weights {
    const struct mk_tensor *attn_norm; /* [H] input_layernorm */
    const struct mk_tensor *wq;        /* [n_heads*D, H] */
    const struct mk_tensor *wk;        /* [n_kv_heads*D, H] */
    const struct mk_tensor *wv;        /* [n_kv_heads*D, H] */
    const struct mk_tensor *wo;        /* [H, n_heads*D] */
    const struct mk_tensor *bq, *bk, *bv; /* [n*D] when cfg.qkv_bias, else NULL */
    const struct mk_tensor *q_norm;    /* [D] when cfg.qk_norm, else NULL */
    const struct mk_tensor *k_norm;    /* [D] when cfg.qk_norm, else NULL */
    const struct mk_tensor *mlp_norm;  /* [H] post_attention_layernorm */
    const struct mk_tensor *w_gate;    /* [I, H] */
    const struct mk_tensor *w_up;      /* [I, H] */
    const struct mk_tensor *w_down;    /* [H, I] */
};

struct mk_model {
    char *dir;
    struct mk_config cfg;
    struct mk_gen_config gen;
    struct mk_safetensors *st;
    const struct mk_tensor *embed;      /* [V, H] */
    const struct mk_tensor *final_norm; /* [H] */
    const struct mk_tensor *lm_head;    /* [V, H]; == embed when tied */
    struct mk_layer_weights *layers;    /* n_layers */
    double load_seconds;                /* wall time of mk_model_load */
};

/* Load DIR: config.json (+ generation_config.json), the safetensors, and bind every
 * tensor the family needs (present once, right shape and dtype; unused extra tensors
 * are an error too, so a wrong checkpoint is not silently half-used). */
enum mk_status mk_model_load(const char *dir, struct mk_model **out);
void mk_model_free(struct mk_model *m);

/* Exact parameter count (sum of all bound tensors; a tied head counts once). */
int64_t mk_model_params(const struct mk_model *m);

/* Bytes one batch-1 decode step must stream in bf16: every weight once, one embedding
 * row, the whole LM head. Computable from the config alone. */
int64_t mk_config_step_bytes(const struct mk_config *cfg);

/* Read a whole small file into a NUL-terminated heap buffer (limit bytes at most). */
enum mk_status mk_read_file(const char *path, size_t limit, char **out, size_t *out_len);

/* Element conversions shared by every stage. */
float mk_bf16_to_f32(uint16_t v);
uint16_t mk_f32_to_bf16(float f); /* round to nearest even; NaN stays NaN */
float mk_f16_to_f32(uint16_t v);
/* Convert `n` elements of tensor data to fp32 (any supported dtype). */
void mk_tensor_to_f32(const struct mk_tensor *t, float *dst);
/* Convert to bf16, what the GPU holds (f16/f32 rounded to nearest even). */
void mk_tensor_to_bf16(const struct mk_tensor *t, uint16_t *dst);
/* Elements of t: the product of its shape (1 for a scalar). */
int64_t mk_tensor_numel(const struct mk_tensor *t);

/* ---- safetensors writer ---------------------------------------------------------- */

/* Produces elements [first, first + count) of tensor `index` of the list, in its dtype,
 * into dst (count * dtype size bytes). The writer calls it from several threads at once
 * on disjoint ranges, so it must be thread-safe; it returns MK_OK or an error with its
 * message set. */
typedef enum mk_status (*mk_safetensors_fill_fn)(void *ctx, size_t index, uint64_t first,
                                                 uint64_t count, void *dst);

/* One tensor to write: its bytes are `data` when not NULL, otherwise fill(fill_ctx, ...). */
struct mk_safetensors_entry {
    const char *name;
    enum mk_dtype dtype;
    int ndim;
    int64_t shape[MK_MAX_DIMS];
    const void *data;
    mk_safetensors_fill_fn fill;
    void *fill_ctx;
};

/* Bytes of an entry's data (product of the shape times the dtype size). */
uint64_t mk_safetensors_entry_bytes(const struct mk_safetensors_entry *e);

/* Write `path` as one safetensors file holding the n entries in the given order: an
 * 8-byte little-endian header length, the compact JSON header ({"__metadata__":
 * {"format":"pt"}, then one object per tensor with data_offsets contiguous from 0)
 * padded with spaces to a multiple of 8 bytes as the reference writer does, then the
 * data. Data is produced and written in large chunks by n_threads threads (0 = every
 * online core). Fails with MK_ERR_ARG (bad name, duplicate, shape, dtype, neither data
 * nor fill), MK_ERR_IO (naming the path) or a fill error; on failure the partial file
 * is removed. */
enum mk_status mk_safetensors_write(const char *path, const struct mk_safetensors_entry *e,
                                    size_t n, int n_threads);

/* Write a sharded set's model.safetensors.index.json: {"metadata": {"total_size": N},
 * "weight_map": {tensor name: shard file name}} with keys sorted and two-space indent,
 * as transformers' save_pretrained writes it. names[i] lives in files[i]. */
enum mk_status mk_safetensors_write_index(const char *path, uint64_t total_size,
                                          const char *const *names,
                                          const char *const *files, size_t n);

#ifdef __cplusplus
}
#endif
#endif /* MK_LOAD_H */
