/* Fusion: the graph's nodes -> fused ops (the task kinds of plan.h), plan weights and
 * activation buffers.
 *
 * Rules, matched in node order (a graph that fits none is MK_ERR_UNSUPPORTED, naming
 * the node):
 *   EMBED                                         -> EMBED
 *   RMSNORM, LINEAR q, k, v (same input)          -> NORM_LINEAR into the fused qkv
 *        buffer (weights/biases via QKV views, see plan.h)
 *   [HEAD_NORM q, k], ROPE q, ROPE k, KV_APPEND,
 *   ATTENTION                                     -> ATTN_PARTIAL + ATTN_MERGE (the
 *        partial normalizes and rotates q, k itself and appends k, v to the cache:
 *        a separate task would cost a dependency level per layer for G*D floats)
 *   LINEAR o, ADD residual                        -> LINEAR_RESIDUAL (in place on x)
 *   RMSNORM, LINEAR gate, LINEAR up, SILU_MUL     -> NORM_GATE_UP
 *   LINEAR down, ADD residual                     -> LINEAR_RESIDUAL (in place on x)
 *   RMSNORM, LINEAR lm_head, SAMPLE               -> LOGITS + SAMPLE
 * RMSNorm is never materialized: every consumer recomputes it in its prologue (the
 * row's sum of squares is B*K floats of L2 reads, cheaper than a dependency hop).
 * Buffers are shared by all layers; the dependency pass orders their reuse.
 */
#include "compile_int.h"

#include <stdlib.h>
#include <string.h>

enum mk_status cs_grow(void **arr, uint32_t *cap, uint32_t n, size_t sz)
{
    if (n < *cap) return MK_OK;
    uint32_t nc = *cap ? *cap * 2 : 64;
    void *p = realloc(*arr, (size_t)nc * sz);
    if (!p) return mk_error(MK_ERR_NOMEM, "compile: out of memory");
    *arr = p;
    *cap = nc;
    return MK_OK;
}

/* Plan weight id of `name` ([rows, cols]); added on first use. */
static enum mk_status weight(struct cstate *c, const char *name, uint32_t rows,
                             uint32_t cols, uint32_t view_parts, uint32_t *id)
{
    for (uint32_t i = 0; i < c->n_weights; i++)
        if (!strcmp(c->weights[i].name, name)) {
            *id = i;
            return MK_OK;
        }
    if (strlen(name) >= MK_NAME_MAX)
        return mk_error(MK_ERR_LIMIT, "compile: weight name '%s' too long", name);
    enum mk_status s = cs_grow((void **)&c->weights, &c->cap_weights, c->n_weights,
                               sizeof *c->weights);
    if (s) return s;
    struct mk_plan_weight *w = &c->weights[c->n_weights];
    memset(w, 0, sizeof *w);
    snprintf(w->name, sizeof w->name, "%s", name);
    w->rows = rows;
    w->cols = cols;
    w->view_parts = view_parts;
    *id = c->n_weights++;
    return MK_OK;
}

static enum mk_status gweight(struct cstate *c, const struct mk_graph *g, int gw, uint32_t *id)
{
    if (gw < 0) {
        *id = MK_NONE;
        return MK_OK;
    }
    const struct mk_gweight *w = &g->weights[gw];
    return weight(c, w->name, w->rows, w->cols, 0, id);
}

/* A view named after part 0 with `from` replaced by `to`, then the parts. */
static enum mk_status view3(struct cstate *c, const struct mk_graph *g, const int parts[3],
                            uint32_t *id)
{
    if (parts[0] < 0) {
        MK_ASSERT(parts[1] < 0 && parts[2] < 0);
        *id = MK_NONE;
        return MK_OK;
    }
    const struct mk_gweight *p0 = &g->weights[parts[0]];
    char name[MK_NAME_MAX];
    const char *at = strstr(p0->name, "q_proj");
    if (!at) return mk_error(MK_ERR_UNSUPPORTED, "compile: q weight '%s' has no q_proj", p0->name);
    snprintf(name, sizeof name, "%.*sqkv_proj%s", (int)(at - p0->name), p0->name, at + 6);
    bool vec = p0->rows == 1; /* biases: 1-D, concatenated along the elements */
    uint32_t rows = 0;
    for (int i = 0; i < 3; i++) rows += vec ? g->weights[parts[i]].cols : g->weights[parts[i]].rows;
    uint32_t vrows = vec ? 1 : rows, vcols = vec ? rows : p0->cols;
    enum mk_status s = weight(c, name, vrows, vcols, 3, id);
    for (int i = 0; i < 3 && !s; i++) {
        uint32_t pid;
        s = gweight(c, g, parts[i], &pid);
        if (!s && pid != *id + 1 + (uint32_t)i)
            s = mk_error(MK_ERR_UNSUPPORTED, "compile: weight '%s' used outside its view",
                         g->weights[parts[i]].name);
    }
    return s;
}

static enum mk_status buffer(struct cstate *c, const char *name, uint32_t cols, uint32_t *id)
{
    for (uint32_t i = 0; i < c->n_buffers; i++)
        if (!strcmp(c->buffers[i].name, name)) {
            MK_ASSERT(c->buffers[i].cols == cols);
            *id = i;
            return MK_OK;
        }
    enum mk_status s = cs_grow((void **)&c->buffers, &c->cap_buffers, c->n_buffers,
                               sizeof *c->buffers);
    if (s) return s;
    struct mk_buffer *b = &c->buffers[c->n_buffers];
    memset(b, 0, sizeof *b);
    snprintf(b->name, sizeof b->name, "%s", name);
    b->outer = 1;
    b->cols = cols;
    *id = c->n_buffers++;
    return MK_OK;
}

static enum mk_status add_fop(struct cstate *c, struct fop f)
{
    enum mk_status s = cs_grow((void **)&c->fops, &c->cap_fops, c->n_fops, sizeof *c->fops);
    if (s) return s;
    f.n_split = 1;
    c->fops[c->n_fops++] = f;
    return MK_OK;
}

/* The matcher: a cursor over the nodes. */
struct cursor {
    struct cstate *c;
    const struct mk_graph *g;
    int i;
    uint32_t x;   /* residual stream buffer */
    int x_t;      /* the graph tensor currently held in x */
};

static const struct mk_gnode *expect(struct cursor *k, enum mk_gop op, int in0)
{
    if (k->i >= k->g->n_nodes) {
        mk_error(MK_ERR_UNSUPPORTED, "compile: graph ends where %s was expected", mk_gop_name(op));
        return NULL;
    }
    const struct mk_gnode *n = &k->g->nodes[k->i];
    if (n->op != op || (in0 >= 0 && n->in0 != in0)) {
        mk_error(MK_ERR_UNSUPPORTED,
                 "compile: graph node %d (%s, layer %d): no fusion rule (expected %s)", k->i,
                 mk_gop_name(n->op), n->layer, mk_gop_name(op));
        return NULL;
    }
    k->i++;
    return n;
}

/* LINEAR + ADD(x, .) -> LINEAR_RESIDUAL reading buffer `in`. */
static enum mk_status residual(struct cursor *k, int in_t, uint32_t in)
{
    const struct mk_gnode *lin = expect(k, MK_GOP_LINEAR, in_t);
    if (!lin) return MK_ERR_UNSUPPORTED;
    const struct mk_gnode *add = expect(k, MK_GOP_ADD, k->x_t);
    if (!add) return MK_ERR_UNSUPPORTED;
    if (add->in1 != lin->out)
        return mk_error(MK_ERR_UNSUPPORTED, "compile: node %d: ADD of something else", k->i - 1);
    struct fop f = {.op = MK_TASK_LINEAR_RESIDUAL, .layer = lin->layer,
                    .N = k->g->weights[lin->w[0]].rows, .K = k->g->weights[lin->w[0]].cols,
                    .w0 = MK_NONE, .w2 = MK_NONE, .in0 = in, .in1 = k->x, .out = k->x,
                    .aux = MK_NONE};
    enum mk_status s = gweight(k->c, k->g, lin->w[0], &f.w1);
    if (!s && lin->w[1] >= 0) s = mk_error(MK_ERR_UNSUPPORTED, "compile: bias on a residual linear");
    k->x_t = add->out;
    return s ? s : add_fop(k->c, f);
}

static enum mk_status attention_block(struct cursor *k, const struct mk_gnode *norm,
                                      const struct mk_gnode *lin[3])
{
    struct cstate *c = k->c;
    const struct mk_config *cfg = &c->cfg;
    uint32_t D = (uint32_t)cfg->head_dim, nh = (uint32_t)cfg->n_heads, nkv = (uint32_t)cfg->n_kv_heads;
    uint32_t qkv, part, attn;
    enum mk_status s = buffer(c, "qkv", (nh + 2 * nkv) * D, &qkv);
    if (!s) s = buffer(c, "attn_part", nh * (D + 2), &part);
    if (!s) s = buffer(c, "attn", nh * D, &attn);
    if (s) return s;
    struct fop f = {.op = MK_TASK_NORM_LINEAR, .layer = norm->layer, .N = (nh + 2 * nkv) * D,
                    .K = (uint32_t)cfg->hidden_size, .in0 = k->x, .in1 = MK_NONE, .out = qkv,
                    .aux = MK_NONE};
    int wparts[3] = {lin[0]->w[0], lin[1]->w[0], lin[2]->w[0]};
    int bparts[3] = {lin[0]->w[1], lin[1]->w[1], lin[2]->w[1]};
    s = gweight(c, k->g, norm->w[0], &f.w0);
    if (!s) s = view3(c, k->g, wparts, &f.w1);
    if (!s) s = view3(c, k->g, bparts, &f.w2);
    if (!s) s = add_fop(c, f);
    if (s) return s;

    /* [HEAD_NORM q, HEAD_NORM k], ROPE q, ROPE k, KV_APPEND, ATTENTION */
    struct fop p = {.op = MK_TASK_ATTN_PARTIAL, .layer = norm->layer, .N = nkv, .w0 = MK_NONE,
                    .w1 = MK_NONE, .w2 = MK_NONE, .in0 = qkv, .in1 = MK_NONE, .out = part,
                    .aux = MK_NONE};
    int qt = lin[0]->out, kt = lin[1]->out;
    if (k->i < k->g->n_nodes && k->g->nodes[k->i].op == MK_GOP_HEAD_NORM) {
        const struct mk_gnode *qn = expect(k, MK_GOP_HEAD_NORM, qt);
        const struct mk_gnode *kn = qn ? expect(k, MK_GOP_HEAD_NORM, kt) : NULL;
        if (!kn) return MK_ERR_UNSUPPORTED;
        s = gweight(c, k->g, qn->w[0], &p.w0);
        if (!s) s = gweight(c, k->g, kn->w[0], &p.w1);
        if (s) return s;
        qt = qn->out;
        kt = kn->out;
    }
    const struct mk_gnode *rq = expect(k, MK_GOP_ROPE, qt);
    const struct mk_gnode *rk = rq ? expect(k, MK_GOP_ROPE, kt) : NULL;
    const struct mk_gnode *app = rk ? expect(k, MK_GOP_KV_APPEND, rk->out) : NULL;
    if (!app || app->in1 != lin[2]->out)
        return app ? mk_error(MK_ERR_UNSUPPORTED, "compile: KV_APPEND of another v") : MK_ERR_UNSUPPORTED;
    const struct mk_gnode *at = expect(k, MK_GOP_ATTENTION, rq->out);
    if (!at) return MK_ERR_UNSUPPORTED;
    s = add_fop(c, p);
    struct fop m = p;
    m.op = MK_TASK_ATTN_MERGE;
    m.w0 = m.w1 = MK_NONE;
    m.in0 = part;
    m.out = attn;
    if (!s) s = add_fop(c, m);
    return s ? s : residual(k, at->out, attn);
}

static enum mk_status mlp_block(struct cursor *k, const struct mk_gnode *norm,
                                const struct mk_gnode *lin[2])
{
    struct cstate *c = k->c;
    const struct mk_gnode *act = expect(k, MK_GOP_SILU_MUL, lin[0]->out);
    if (!act) return MK_ERR_UNSUPPORTED;
    if (act->in1 != lin[1]->out || lin[0]->w[1] >= 0 || lin[1]->w[1] >= 0)
        return mk_error(MK_ERR_UNSUPPORTED, "compile: node %d: unsupported gate/up form", k->i - 1);
    uint32_t mlp;
    enum mk_status s = buffer(c, "mlp", k->g->weights[lin[0]->w[0]].rows, &mlp);
    struct fop f = {.op = MK_TASK_NORM_GATE_UP, .layer = norm->layer,
                    .N = k->g->weights[lin[0]->w[0]].rows, .K = k->g->weights[lin[0]->w[0]].cols,
                    .in0 = k->x, .in1 = MK_NONE, .out = mlp, .aux = MK_NONE};
    if (!s) s = gweight(c, k->g, norm->w[0], &f.w0);
    if (!s) s = gweight(c, k->g, lin[0]->w[0], &f.w1);
    if (!s) s = gweight(c, k->g, lin[1]->w[0], &f.w2);
    if (!s) s = add_fop(c, f);
    return s ? s : residual(k, act->out, mlp);
}

static enum mk_status logits_block(struct cursor *k, const struct mk_gnode *norm,
                                   const struct mk_gnode *lin)
{
    struct cstate *c = k->c;
    if (!expect(k, MK_GOP_SAMPLE, lin->out)) return MK_ERR_UNSUPPORTED;
    uint32_t V = k->g->weights[lin->w[0]].rows, logits, argmax;
    enum mk_status s = buffer(c, "logits", V, &logits);
    if (!s) s = buffer(c, "argmax", 2, &argmax);
    struct fop f = {.op = MK_TASK_LOGITS, .layer = -1, .N = V,
                    .K = k->g->weights[lin->w[0]].cols, .w2 = MK_NONE, .in0 = k->x,
                    .in1 = MK_NONE, .out = logits, .aux = argmax};
    if (!s) s = gweight(c, k->g, norm->w[0], &f.w0);
    if (!s) s = gweight(c, k->g, lin->w[0], &f.w1);
    if (!s) s = add_fop(c, f);
    struct fop smp = {.op = MK_TASK_SAMPLE, .layer = -1, .N = (uint32_t)c->tgt.batch,
                      .w0 = MK_NONE, .w1 = MK_NONE, .w2 = MK_NONE, .in0 = logits,
                      .in1 = argmax, .out = MK_NONE, .aux = MK_NONE};
    return s ? s : add_fop(c, smp);
}

/* RMSNORM followed by 3, 2 or 1 LINEARs of it. */
static enum mk_status norm_block(struct cursor *k)
{
    const struct mk_gnode *norm = expect(k, MK_GOP_RMSNORM, k->x_t);
    if (!norm) return MK_ERR_UNSUPPORTED;
    const struct mk_gnode *lin[3];
    int n = 0;
    while (n < 3 && k->i < k->g->n_nodes && k->g->nodes[k->i].op == MK_GOP_LINEAR &&
           k->g->nodes[k->i].in0 == norm->out)
        lin[n++] = &k->g->nodes[k->i++];
    if (n == 3) return attention_block(k, norm, lin);
    if (n == 2) return mlp_block(k, norm, lin);
    if (n == 1) return logits_block(k, norm, lin[0]);
    return mk_error(MK_ERR_UNSUPPORTED, "compile: graph node %d: RMSNORM without a linear", k->i - 1);
}

enum mk_status cs_fuse(struct cstate *c, const struct mk_graph *g)
{
    struct cursor k = {.c = c, .g = g};
    const struct mk_gnode *e = expect(&k, MK_GOP_EMBED, -1);
    if (!e) return MK_ERR_UNSUPPORTED;
    enum mk_status s = buffer(c, "x", (uint32_t)c->cfg.hidden_size, &k.x);
    k.x_t = e->out;
    struct fop f = {.op = MK_TASK_EMBED, .layer = -1, .N = (uint32_t)c->cfg.hidden_size,
                    .w1 = MK_NONE, .w2 = MK_NONE, .in0 = MK_NONE, .in1 = MK_NONE,
                    .out = k.x, .aux = MK_NONE};
    if (!s) s = gweight(c, g, e->w[0], &f.w0);
    if (!s) s = add_fop(c, f);
    while (!s && k.i < g->n_nodes) s = norm_block(&k);
    if (!s && (c->n_fops == 0 || c->fops[c->n_fops - 1].op != MK_TASK_SAMPLE))
        s = mk_error(MK_ERR_UNSUPPORTED, "compile: graph does not end with SAMPLE");
    return s;
}
