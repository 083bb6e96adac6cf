/* Binding a checkpoint's tensors to the model the config describes.
 *
 * Every tensor the family needs must be present once with the shape the config implies
 * and the checkpoint dtype (config torch_dtype/dtype, else the embedding's); every
 * tensor present must be used. Tolerated extras, ignored: "*.rotary_emb.inv_freq"
 * buffers (recomputed from the config), and lm_head.weight in a tied checkpoint when it
 * has the embedding's shape and dtype (its bytes are not compared: the config says tied,
 * so the embedding is the head, as in transformers). */
#include "mk/load.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct binder {
    struct mk_model *m;
    const char *wpath;   /* the safetensors file or index, for "missing" messages */
    bool *used;          /* per tensor of m->st */
    enum mk_status s;    /* first error; later binds are skipped */
};

static void format_shape(char *buf, size_t cap, enum mk_dtype dt, int ndim, const int64_t *shape)
{
    int n = snprintf(buf, cap, "%s [", mk_dtype_name(dt));
    for (int i = 0; i < ndim && n > 0 && (size_t)n < cap; i++)
        n += snprintf(buf + n, cap - (size_t)n, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (n > 0 && (size_t)n < cap) snprintf(buf + n, cap - (size_t)n, "]");
}

static bool same_shape(const struct mk_tensor *t, int ndim, const int64_t *shape)
{
    if (t->ndim != ndim) return false;
    for (int i = 0; i < ndim; i++)
        if (t->shape[i] != shape[i]) return false;
    return true;
}

/* Find `name`, check dtype and shape (d1 = 0: a vector [d0]), mark it used. */
static const struct mk_tensor *bind(struct binder *b, const char *name, int64_t d0, int64_t d1)
{
    if (b->s != MK_OK) return NULL;
    const struct mk_safetensors *st = b->m->st;
    const struct mk_tensor *t = mk_safetensors_find(st, name);
    if (!t) {
        b->s = mk_error(MK_ERR_FORMAT, "%s: missing tensor %s (needed by %s)", b->wpath, name,
                        mk_family_name(b->m->cfg.family));
        return NULL;
    }
    int64_t shape[2] = {d0, d1};
    int ndim = d1 ? 2 : 1;
    if (t->dtype != b->m->cfg.dtype || !same_shape(t, ndim, shape)) {
        char want[128], got[128];
        format_shape(want, sizeof want, b->m->cfg.dtype, ndim, shape);
        format_shape(got, sizeof got, t->dtype, t->ndim, t->shape);
        b->s = mk_error(MK_ERR_FORMAT, "%s: tensor %s: expected %s, got %s",
                        mk_safetensors_file(st, t->shard), name, want, got);
        return NULL;
    }
    b->used[t - mk_safetensors_at(st, 0)] = true;
    return t;
}

static void bind_layer(struct binder *b, int i, struct mk_layer_weights *w)
{
    const struct mk_config *c = &b->m->cfg;
    int64_t H = c->hidden_size, I = c->intermediate_size, D = c->head_dim;
    int64_t q = (int64_t)c->n_heads * D, kv = (int64_t)c->n_kv_heads * D;
    char n[160];
#define NAME(suffix) (snprintf(n, sizeof n, "model.layers.%d.%s", i, suffix), n)
    w->attn_norm = bind(b, NAME("input_layernorm.weight"), H, 0);
    w->wq = bind(b, NAME("self_attn.q_proj.weight"), q, H);
    w->wk = bind(b, NAME("self_attn.k_proj.weight"), kv, H);
    w->wv = bind(b, NAME("self_attn.v_proj.weight"), kv, H);
    w->wo = bind(b, NAME("self_attn.o_proj.weight"), H, q);
    if (c->qkv_bias) {
        w->bq = bind(b, NAME("self_attn.q_proj.bias"), q, 0);
        w->bk = bind(b, NAME("self_attn.k_proj.bias"), kv, 0);
        w->bv = bind(b, NAME("self_attn.v_proj.bias"), kv, 0);
    }
    if (c->qk_norm) {
        w->q_norm = bind(b, NAME("self_attn.q_norm.weight"), D, 0);
        w->k_norm = bind(b, NAME("self_attn.k_norm.weight"), D, 0);
    }
    w->mlp_norm = bind(b, NAME("post_attention_layernorm.weight"), H, 0);
    w->w_gate = bind(b, NAME("mlp.gate_proj.weight"), I, H);
    w->w_up = bind(b, NAME("mlp.up_proj.weight"), I, H);
    w->w_down = bind(b, NAME("mlp.down_proj.weight"), H, I);
#undef NAME
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

/* A tied checkpoint may still carry lm_head.weight (some exporters write it): accepted
 * when it matches the embedding's shape and dtype, then ignored. */
static void bind_tied_head(struct binder *b)
{
    const struct mk_tensor *h = mk_safetensors_find(b->m->st, "lm_head.weight");
    if (!h || b->s != MK_OK) return;
    const struct mk_tensor *e = b->m->embed;
    bind(b, "lm_head.weight", e->shape[0], e->shape[1]);
}

/* Any tensor left unbound is an error (a wrong or half-used checkpoint). */
static void check_all_used(struct binder *b)
{
    const struct mk_safetensors *st = b->m->st;
    for (size_t i = 0; b->s == MK_OK && i < mk_safetensors_count(st); i++) {
        const struct mk_tensor *t = mk_safetensors_at(st, i);
        if (b->used[i] || ends_with(t->name, ".rotary_emb.inv_freq")) continue;
        b->s = mk_error(MK_ERR_FORMAT, "%s: unexpected tensor %s (not part of a %d-layer %s model)",
                        mk_safetensors_file(st, t->shard), t->name, b->m->cfg.n_layers,
                        mk_family_name(b->m->cfg.family));
    }
}

static enum mk_status bind_all(struct mk_model *m, const char *wpath)
{
    struct mk_config *c = &m->cfg;
    struct binder b = {.m = m, .wpath = wpath, .s = MK_OK};
    b.used = calloc(mk_safetensors_count(m->st) + 1, sizeof *b.used);
    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    if (!b.used || !m->layers) {
        free(b.used);
        return mk_error(MK_ERR_NOMEM, "%s: out of memory", m->dir);
    }
    const struct mk_tensor *e = mk_safetensors_find(m->st, "model.embed_tokens.weight");
    if (!c->dtype_given && e) c->dtype = e->dtype;
    int64_t V = c->vocab_size, H = c->hidden_size;
    m->embed = bind(&b, "model.embed_tokens.weight", V, H);
    for (int i = 0; i < c->n_layers; i++) bind_layer(&b, i, &m->layers[i]);
    m->final_norm = bind(&b, "model.norm.weight", H, 0);
    if (c->tie_word_embeddings) {
        m->lm_head = m->embed;
        bind_tied_head(&b);
    } else {
        m->lm_head = bind(&b, "lm_head.weight", V, H);
    }
    check_all_used(&b);
    free(b.used);
    return b.s;
}

static enum mk_status find_weights(const char *dir, char *path, size_t cap)
{
    static const char *const names[] = {"model.safetensors.index.json", "model.safetensors"};
    for (int i = 0; i < 2; i++) {
        if (snprintf(path, cap, "%s/%s", dir, names[i]) >= (int)cap)
            return mk_error(MK_ERR_ARG, "%s: path too long", dir);
        if (access(path, F_OK) == 0) return MK_OK;
    }
    return mk_error(MK_ERR_IO, "%s: neither model.safetensors.index.json nor model.safetensors found",
                    dir);
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

enum mk_status mk_model_load(const char *dir, struct mk_model **out)
{
    double t0 = now_seconds();
    struct mk_model *m = calloc(1, sizeof *m);
    if (!m || !(m->dir = strdup(dir))) {
        free(m);
        return mk_error(MK_ERR_NOMEM, "%s: out of memory", dir);
    }
    char path[4096];
    enum mk_status s = mk_config_load(dir, &m->cfg, &m->gen);
    if (s == MK_OK) s = find_weights(dir, path, sizeof path);
    if (s == MK_OK) s = mk_safetensors_open(path, &m->st);
    if (s == MK_OK) s = bind_all(m, path);
    if (s != MK_OK) {
        mk_model_free(m);
        return s;
    }
    m->load_seconds = now_seconds() - t0;
    *out = m;
    return MK_OK;
}

void mk_model_free(struct mk_model *m)
{
    if (!m) return;
    mk_safetensors_close(m->st);
    free(m->layers);
    free(m->dir);
    free(m);
}

static int64_t numel(const struct mk_tensor *t) { return t ? mk_tensor_numel(t) : 0; }

int64_t mk_model_params(const struct mk_model *m)
{
    int64_t n = numel(m->embed) + numel(m->final_norm);
    if (m->lm_head != m->embed) n += numel(m->lm_head);
    for (int i = 0; i < m->cfg.n_layers; i++) {
        const struct mk_layer_weights *w = &m->layers[i];
        const struct mk_tensor *all[] = {w->attn_norm, w->wq, w->wk, w->wv, w->wo, w->bq, w->bk,
                                         w->bv, w->q_norm, w->k_norm, w->mlp_norm, w->w_gate,
                                         w->w_up, w->w_down};
        for (size_t j = 0; j < sizeof all / sizeof *all; j++) n += numel(all[j]);
    }
    return n;
}
