/* megakernel — the graph IR: the decode step of a model as ops over named tensors.
 *
 * Every activation tensor is [B, cols] fp32 (B = batch rows of the step); the KV cache of
 * a layer is a side effect of KV_APPEND and an input of ATTENTION. Weights are named by
 * their safetensors names with their [rows, cols] shape. Nodes are in execution order.
 * One builder per family (src/graph/<family>.c) writes the model definition with the
 * mk_g_* helpers below; the compiler (src/compile/fuse.c) turns the graph into fused
 * task ops. Adding a family = one new builder + one line in mk_graph_build.
 */
#ifndef MK_GRAPH_H
#define MK_GRAPH_H

#include "mk/load.h"
#include "mk/plan.h"

#ifdef __cplusplus
extern "C" {
#endif

enum mk_gop {
    MK_GOP_EMBED = 0,   /* out = embed[tokens]                         w[0] = table      */
    MK_GOP_RMSNORM,     /* out = rmsnorm(in0) * w[0]                                      */
    MK_GOP_LINEAR,      /* out = in0 @ w[0]^T (+ w[1] bias)                               */
    MK_GOP_HEAD_NORM,   /* out = per-head rmsnorm(in0) * w[0], heads of head_dim          */
    MK_GOP_ROPE,        /* out = rope(in0) at pos, heads of head_dim                      */
    MK_GOP_KV_APPEND,   /* cache[layer] at pos <- (in0 = k, in1 = v)                      */
    MK_GOP_ATTENTION,   /* out = softmax(q k^T / sqrt(D)) v over the cache, GQA; in0 = q  */
    MK_GOP_ADD,         /* out = in0 + in1                                                */
    MK_GOP_SILU_MUL,    /* out = silu(in0) * in1                                          */
    MK_GOP_SAMPLE,      /* next tokens from the logits in0                                */
    MK_GOP_COUNT
};
const char *mk_gop_name(enum mk_gop op);

struct mk_gtensor {
    char name[MK_NAME_MAX];
    uint32_t cols;
};

struct mk_gweight {
    char name[MK_NAME_MAX];
    uint32_t rows, cols;   /* 1-D: rows = 1 */
};

struct mk_gnode {
    enum mk_gop op;
    int layer;             /* -1 outside the decoder layers */
    int in0, in1;          /* tensor ids or -1 */
    int out;               /* tensor id or -1 (KV_APPEND, SAMPLE) */
    int w[2];              /* weight ids or -1 */
};

struct mk_graph {
    struct mk_config cfg;
    int n_nodes, n_tensors, n_weights;
    int cap_nodes, cap_tensors, cap_weights;
    struct mk_gnode *nodes;
    struct mk_gtensor *tensors;
    struct mk_gweight *weights;
    int layer;             /* the layer the builder is in (stamped on new nodes) */
    enum mk_status status; /* first error of a helper (builders check it once, at the end) */
};

/* Build the decode-step graph of cfg's family. MK_ERR_UNSUPPORTED for a family without a
 * builder; MK_ERR_NOMEM. */
enum mk_status mk_graph_build(const struct mk_config *cfg, struct mk_graph **out);
void mk_graph_free(struct mk_graph *g);
/* One line per node ("l0 LINEAR q <- h [model.layers.0.self_attn.q_proj.weight]"). */
void mk_graph_print(const struct mk_graph *g, FILE *f);

/* ---- builder helpers: each returns the new tensor id (or -1 once g->status is set) ---- */
int mk_g_embed(struct mk_graph *g, const char *table);
int mk_g_rmsnorm(struct mk_graph *g, int x, const char *weight);
/* rows = output features; bias may be NULL. */
int mk_g_linear(struct mk_graph *g, const char *name, int x, const char *weight,
                const char *bias, uint32_t rows);
int mk_g_head_norm(struct mk_graph *g, int x, const char *weight);
int mk_g_rope(struct mk_graph *g, int x);
void mk_g_kv_append(struct mk_graph *g, int k, int v);
int mk_g_attention(struct mk_graph *g, int q);
int mk_g_add(struct mk_graph *g, int a, int b);
int mk_g_silu_mul(struct mk_graph *g, int gate, int up);
void mk_g_sample(struct mk_graph *g, int logits);

/* "model.layers.<g->layer>.<suffix>" in one of 8 rotating per-thread buffers (so a
 * helper call can take several). */
const char *mk_g_lw(struct mk_graph *g, const char *suffix);

/* The family builders (src/graph/<family>.c). */
void mk_graph_build_llama(struct mk_graph *g);
void mk_graph_build_mistral(struct mk_graph *g);
void mk_graph_build_qwen2(struct mk_graph *g);
void mk_graph_build_qwen3(struct mk_graph *g);

#ifdef __cplusplus
}
#endif
#endif /* MK_GRAPH_H */
