/* The graph IR: growable node/tensor/weight tables and the helpers builders call. */
#include "mk/graph.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static const char *const gop_names[MK_GOP_COUNT] = {
    "EMBED", "RMSNORM", "LINEAR", "HEAD_NORM", "ROPE", "KV_APPEND", "ATTENTION",
    "ADD", "SILU_MUL", "SAMPLE",
};

const char *mk_gop_name(enum mk_gop op)
{
    return (unsigned)op < MK_GOP_COUNT ? gop_names[op] : "?";
}

/* Grow *arr (of *cap elements of size sz) to hold n + 1; false on allocation failure. */
static bool grow(void **arr, int *cap, int n, size_t sz)
{
    if (n < *cap) return true;
    int nc = *cap ? *cap * 2 : 64;
    void *p = realloc(*arr, (size_t)nc * sz);
    if (!p) return false;
    *arr = p;
    *cap = nc;
    return true;
}

static bool fail(struct mk_graph *g, enum mk_status s)
{
    if (g->status == MK_OK) g->status = s;
    return false;
}

static int add_tensor(struct mk_graph *g, uint32_t cols, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int add_tensor(struct mk_graph *g, uint32_t cols, const char *fmt, ...)
{
    if (g->status != MK_OK) return -1;
    if (!grow((void **)&g->tensors, &g->cap_tensors, g->n_tensors, sizeof *g->tensors))
        return fail(g, mk_error(MK_ERR_NOMEM, "graph: out of memory")), -1;
    struct mk_gtensor *t = &g->tensors[g->n_tensors];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->name, sizeof t->name, fmt, ap);
    va_end(ap);
    t->cols = cols;
    return g->n_tensors++;
}

/* The id of weight `name` with shape [rows, cols], added on first use. A second use
 * with another shape is a builder bug. */
static int use_weight(struct mk_graph *g, const char *name, uint32_t rows, uint32_t cols)
{
    if (g->status != MK_OK || !name) return -1;
    for (int i = 0; i < g->n_weights; i++)
        if (!strcmp(g->weights[i].name, name)) {
            MK_ASSERT(g->weights[i].rows == rows && g->weights[i].cols == cols);
            return i;
        }
    if (strlen(name) >= MK_NAME_MAX) {
        fail(g, mk_error(MK_ERR_LIMIT, "graph: weight name '%s' longer than %d", name,
                         MK_NAME_MAX - 1));
        return -1;
    }
    if (!grow((void **)&g->weights, &g->cap_weights, g->n_weights, sizeof *g->weights)) {
        fail(g, mk_error(MK_ERR_NOMEM, "graph: out of memory"));
        return -1;
    }
    struct mk_gweight *w = &g->weights[g->n_weights];
    snprintf(w->name, sizeof w->name, "%s", name);
    w->rows = rows;
    w->cols = cols;
    return g->n_weights++;
}

static void add_node(struct mk_graph *g, enum mk_gop op, int in0, int in1, int out, int w0,
                     int w1)
{
    if (g->status != MK_OK) return;
    if (!grow((void **)&g->nodes, &g->cap_nodes, g->n_nodes, sizeof *g->nodes)) {
        fail(g, mk_error(MK_ERR_NOMEM, "graph: out of memory"));
        return;
    }
    g->nodes[g->n_nodes++] = (struct mk_gnode){
        .op = op, .layer = g->layer, .in0 = in0, .in1 = in1, .out = out, .w = {w0, w1}};
}

static uint32_t cols_of(const struct mk_graph *g, int t) { return g->tensors[t].cols; }

int mk_g_embed(struct mk_graph *g, const char *table)
{
    const struct mk_config *c = &g->cfg;
    int w = use_weight(g, table, (uint32_t)c->vocab_size, (uint32_t)c->hidden_size);
    int out = add_tensor(g, (uint32_t)c->hidden_size, "x");
    add_node(g, MK_GOP_EMBED, -1, -1, out, w, -1);
    return out;
}

int mk_g_rmsnorm(struct mk_graph *g, int x, const char *weight)
{
    if (x < 0) return -1;
    int w = use_weight(g, weight, 1, cols_of(g, x));
    int out = add_tensor(g, cols_of(g, x), "l%d.norm%d", g->layer, g->n_nodes);
    add_node(g, MK_GOP_RMSNORM, x, -1, out, w, -1);
    return out;
}

int mk_g_linear(struct mk_graph *g, const char *name, int x, const char *weight,
                const char *bias, uint32_t rows)
{
    if (x < 0) return -1;
    int w = use_weight(g, weight, rows, cols_of(g, x));
    int b = bias ? use_weight(g, bias, 1, rows) : -1;
    int out = add_tensor(g, rows, "l%d.%s", g->layer, name);
    add_node(g, MK_GOP_LINEAR, x, -1, out, w, b);
    return out;
}

int mk_g_head_norm(struct mk_graph *g, int x, const char *weight)
{
    if (x < 0) return -1;
    int w = use_weight(g, weight, 1, (uint32_t)g->cfg.head_dim);
    int out = add_tensor(g, cols_of(g, x), "%s.normed", g->tensors[x].name);
    add_node(g, MK_GOP_HEAD_NORM, x, -1, out, w, -1);
    return out;
}

int mk_g_rope(struct mk_graph *g, int x)
{
    if (x < 0) return -1;
    int out = add_tensor(g, cols_of(g, x), "%s.rot", g->tensors[x].name);
    add_node(g, MK_GOP_ROPE, x, -1, out, -1, -1);
    return out;
}

void mk_g_kv_append(struct mk_graph *g, int k, int v)
{
    if (k < 0 || v < 0) return;
    add_node(g, MK_GOP_KV_APPEND, k, v, -1, -1, -1);
}

int mk_g_attention(struct mk_graph *g, int q)
{
    if (q < 0) return -1;
    int out = add_tensor(g, cols_of(g, q), "l%d.attn", g->layer);
    add_node(g, MK_GOP_ATTENTION, q, -1, out, -1, -1);
    return out;
}

static int binary(struct mk_graph *g, enum mk_gop op, int a, int b, const char *what)
{
    if (a < 0 || b < 0) return -1;
    MK_ASSERT(cols_of(g, a) == cols_of(g, b));
    int out = add_tensor(g, cols_of(g, a), "l%d.%s%d", g->layer, what, g->n_nodes);
    add_node(g, op, a, b, out, -1, -1);
    return out;
}

int mk_g_add(struct mk_graph *g, int a, int b) { return binary(g, MK_GOP_ADD, a, b, "add"); }

int mk_g_silu_mul(struct mk_graph *g, int gate, int up)
{
    return binary(g, MK_GOP_SILU_MUL, gate, up, "act");
}

const char *mk_g_lw(struct mk_graph *g, const char *suffix)
{
    static _Thread_local char ring[8][MK_NAME_MAX];
    static _Thread_local unsigned next;
    char *b = ring[next++ % 8];
    snprintf(b, MK_NAME_MAX, "model.layers.%d.%s", g->layer, suffix);
    return b;
}

void mk_g_sample(struct mk_graph *g, int logits)
{
    if (logits < 0) return;
    add_node(g, MK_GOP_SAMPLE, logits, -1, -1, -1, -1);
}

enum mk_status mk_graph_build(const struct mk_config *cfg, struct mk_graph **out)
{
    static void (*const builders[MK_FAMILY_COUNT])(struct mk_graph *) = {
        [MK_FAMILY_LLAMA] = mk_graph_build_llama,
        [MK_FAMILY_MISTRAL] = mk_graph_build_mistral,
        [MK_FAMILY_QWEN2] = mk_graph_build_qwen2,
        [MK_FAMILY_QWEN3] = mk_graph_build_qwen3,
    };
    if ((unsigned)cfg->family >= MK_FAMILY_COUNT || !builders[cfg->family])
        return mk_error(MK_ERR_UNSUPPORTED, "graph: no builder for family %d",
                        (int)cfg->family);
    struct mk_graph *g = calloc(1, sizeof *g);
    if (!g) return mk_error(MK_ERR_NOMEM, "graph: out of memory");
    g->cfg = *cfg;
    g->layer = -1;
    builders[cfg->family](g);
    if (g->status != MK_OK) {
        enum mk_status s = g->status;
        mk_graph_free(g);
        return s;
    }
    *out = g;
    return MK_OK;
}

void mk_graph_free(struct mk_graph *g)
{
    if (!g) return;
    free(g->nodes);
    free(g->tensors);
    free(g->weights);
    free(g);
}

void mk_graph_print(const struct mk_graph *g, FILE *f)
{
    for (int i = 0; i < g->n_nodes; i++) {
        const struct mk_gnode *n = &g->nodes[i];
        fprintf(f, "l%d %s %s <- %s%s%s", n->layer, mk_gop_name(n->op),
                n->out >= 0 ? g->tensors[n->out].name : "-",
                n->in0 >= 0 ? g->tensors[n->in0].name : "-", n->in1 >= 0 ? ", " : "",
                n->in1 >= 0 ? g->tensors[n->in1].name : "");
        for (int j = 0; j < 2; j++)
            if (n->w[j] >= 0) fprintf(f, " [%s]", g->weights[n->w[j]].name);
        fputc('\n', f);
    }
}
