/* The CPU reference forward: the model definition of Llama / Mistral / Qwen2 / Qwen3 in
 * plain fp32, read top to bottom (weights, RoPE frequencies, the decoder layer, the
 * forward). It follows transformers' modeling_llama.py / modeling_qwen3.py operation by
 * operation so that its logits match them to fp32 rounding. */
#include "mk/ref.h"

#include "ref/ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Tokens processed together: bounds the scratch memory of a long prompt while still
 * reading each weight matrix once per chunk instead of once per token. */
enum { REF_CHUNK = 32 };

/* ---- weights --------------------------------------------------------------------- */

struct ref_layer {
    float *attn_norm;       /* [H]        input_layernorm */
    float *wq;              /* [Nq*D, H]  q_proj */
    float *wk;              /* [Nkv*D, H] k_proj */
    float *wv;              /* [Nkv*D, H] v_proj */
    float *bq, *bk, *bv;    /* [Nq*D], [Nkv*D], [Nkv*D] q/k/v bias (Qwen2), else NULL */
    float *q_norm, *k_norm; /* [D] per-head RMSNorm before RoPE (Qwen3), else NULL */
    float *wo;              /* [H, Nq*D]  o_proj */
    float *mlp_norm;        /* [H]        post_attention_layernorm */
    float *w_gate;          /* [I, H]     gate_proj */
    float *w_up;            /* [I, H]     up_proj */
    float *w_down;          /* [H, I]     down_proj */
};

struct mk_ref {
    struct mk_config cfg;
    float *arena;             /* one allocation carved into every weight below */
    float *embed;             /* [V, H] embed_tokens */
    struct ref_layer *layers; /* [L] */
    float *final_norm;        /* [H] norm */
    float *lm_head;           /* [V, H]; == embed when the embeddings are tied */
    float *inv_freq;          /* [D/2] RoPE inverse frequencies (llama3-scaled if so) */
};

/* Places the fp32 copy of each tensor in the arena and lists (tensor, place) for the
 * conversion; with arena == NULL it only counts floats and tensors. */
struct carver {
    float *arena;
    int64_t used;                   /* floats */
    int n;                          /* tensors */
    const struct mk_tensor **src;   /* [n] when arena != NULL */
    float **dst;                    /* [n] */
};

static float *carve(struct carver *c, const struct mk_tensor *t)
{
    if (!t) return NULL;
    float *dst = c->arena ? c->arena + c->used : NULL;
    if (dst) {
        c->src[c->n] = t;
        c->dst[c->n] = dst;
    }
    c->n++;
    c->used += mk_tensor_numel(t);
    return dst;
}

static void carve_model(struct mk_ref *r, const struct mk_model *m, struct carver *c)
{
    r->embed = carve(c, m->embed);
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const struct mk_layer_weights *src = &m->layers[l];
        struct ref_layer *L = &r->layers[l];
        L->attn_norm = carve(c, src->attn_norm);
        L->wq = carve(c, src->wq);
        L->wk = carve(c, src->wk);
        L->wv = carve(c, src->wv);
        L->bq = carve(c, src->bq);
        L->bk = carve(c, src->bk);
        L->bv = carve(c, src->bv);
        L->q_norm = carve(c, src->q_norm);
        L->k_norm = carve(c, src->k_norm);
        L->wo = carve(c, src->wo);
        L->mlp_norm = carve(c, src->mlp_norm);
        L->w_gate = carve(c, src->w_gate);
        L->w_up = carve(c, src->w_up);
        L->w_down = carve(c, src->w_down);
    }
    r->final_norm = carve(c, m->final_norm);
    r->lm_head = m->lm_head == m->embed ? r->embed : carve(c, m->lm_head);
    r->inv_freq = c->arena ? c->arena + c->used : NULL;
    c->used += m->cfg.head_dim / 2;
}

/* ---- RoPE frequencies -------------------------------------------------------------- */

/* inv_freq[i] = 1 / theta^(2i/D), computed in fp32 as transformers does
 * (_compute_default_rope_parameters). */
static void rope_default(const struct mk_config *c, float *inv_freq)
{
    const int D = c->head_dim;
    for (int i = 0; i < D / 2; i++)
        inv_freq[i] = 1.0f / powf(c->rope_theta, (float)(2 * i) / (float)D);
}

/* Llama 3.1 scaling (transformers' _compute_llama3_parameters): wavelengths shorter than
 * original_max/high_freq_factor are kept, longer than original_max/low_freq_factor are
 * divided by `factor`, and those between are interpolated smoothly. */
static void rope_llama3(const struct mk_config *c, float *inv_freq)
{
    rope_default(c, inv_freq);
    const float factor = c->rope_factor;
    const float lo = c->rope_low_freq_factor, hi = c->rope_high_freq_factor;
    const float old_ctx = (float)c->rope_original_max_position;
    const float low_freq_wavelen = old_ctx / lo;
    const float high_freq_wavelen = old_ctx / hi;
    for (int i = 0; i < c->head_dim / 2; i++) {
        const float f = inv_freq[i];
        const float wavelen = (float)(2.0 * M_PI) / f;
        if (wavelen > low_freq_wavelen) {
            inv_freq[i] = f / factor;
        } else if (wavelen >= high_freq_wavelen) {
            const float smooth = (old_ctx / wavelen - lo) / (hi - lo);
            inv_freq[i] = (1.0f - smooth) * f / factor + smooth * f;
        }
    }
}

enum mk_status mk_ref_new(const struct mk_model *m, struct mk_ref **out)
{
    *out = NULL;
    struct mk_ref *r = calloc(1, sizeof *r);
    if (!r) return mk_error(MK_ERR_NOMEM, "ref: out of memory");
    r->cfg = m->cfg;
    r->layers = calloc((size_t)m->cfg.n_layers, sizeof *r->layers);
    struct carver count = {0};
    if (r->layers) carve_model(r, m, &count);
    struct carver fill = {.src = malloc(((size_t)count.n + 1) * sizeof *fill.src),
                          .dst = malloc(((size_t)count.n + 1) * sizeof *fill.dst)};
    if (r->layers && fill.src && fill.dst) r->arena = malloc((size_t)count.used * sizeof(float));
    if (!r->arena) {
        free(fill.src);
        free(fill.dst);
        mk_ref_free(r);
        return mk_error(MK_ERR_NOMEM, "ref: cannot allocate %lld MB for the fp32 weights",
                        (long long)(count.used * 4 >> 20));
    }
    fill.arena = r->arena;
    carve_model(r, m, &fill);
    ref_to_f32(fill.src, fill.dst, fill.n);
    free(fill.src);
    free(fill.dst);
    if (r->cfg.rope_type == MK_ROPE_LLAMA3)
        rope_llama3(&r->cfg, r->inv_freq);
    else
        rope_default(&r->cfg, r->inv_freq);
    *out = r;
    return MK_OK;
}

void mk_ref_free(struct mk_ref *r)
{
    if (!r) return;
    free(r->arena);
    free(r->layers);
    free(r);
}

const struct mk_config *mk_ref_config(const struct mk_ref *r) { return &r->cfg; }

/* ---- a sequence: KV cache and scratch ----------------------------------------------- */

struct mk_ref_seq {
    const struct mk_ref *r;
    int max_ctx;   /* positions the cache holds */
    int pos;       /* positions filled */
    float *k_cache; /* [L, max_ctx, Nkv*D] keys after k_norm and RoPE */
    float *v_cache; /* [L, max_ctx, Nkv*D] */
    float *x;       /* [C, H]    residual stream of the chunk's tokens */
    float *xn;      /* [C, H]    normed input of the current block */
    float *q;       /* [C, Nq*D] queries */
    float *att;     /* [C, Nq*D] attention output, heads concatenated */
    float *gate;    /* [C, I]    gate_proj, then silu(gate) * up */
    float *up;      /* [C, I]    up_proj */
    float *scores;  /* [max_ctx] attention weights of one query head */
};

enum mk_status mk_ref_seq_new(const struct mk_ref *r, int max_ctx, struct mk_ref_seq **out)
{
    *out = NULL;
    const struct mk_config *c = &r->cfg;
    if (max_ctx < 1 || max_ctx > c->max_position)
        return mk_error(MK_ERR_LIMIT, "ref: context: expected 1..%d (max_position_embeddings), got %d",
                        c->max_position, max_ctx);
    struct mk_ref_seq *s = calloc(1, sizeof *s);
    if (!s) return mk_error(MK_ERR_NOMEM, "ref: out of memory");
    s->r = r;
    s->max_ctx = max_ctx;
    const size_t kv = (size_t)c->n_layers * max_ctx * c->n_kv_heads * c->head_dim;
    const size_t qd = (size_t)c->n_heads * c->head_dim;
    s->k_cache = malloc(kv * sizeof(float));
    s->v_cache = malloc(kv * sizeof(float));
    s->x = malloc((size_t)REF_CHUNK * c->hidden_size * sizeof(float));
    s->xn = malloc((size_t)REF_CHUNK * c->hidden_size * sizeof(float));
    s->q = malloc((size_t)REF_CHUNK * qd * sizeof(float));
    s->att = malloc((size_t)REF_CHUNK * qd * sizeof(float));
    s->gate = malloc((size_t)REF_CHUNK * c->intermediate_size * sizeof(float));
    s->up = malloc((size_t)REF_CHUNK * c->intermediate_size * sizeof(float));
    s->scores = malloc((size_t)max_ctx * sizeof(float));
    if (!s->k_cache || !s->v_cache || !s->x || !s->xn || !s->q || !s->att || !s->gate ||
        !s->up || !s->scores) {
        mk_ref_seq_free(s);
        return mk_error(MK_ERR_NOMEM, "ref: cannot allocate a KV cache of %d positions", max_ctx);
    }
    *out = s;
    return MK_OK;
}

void mk_ref_seq_free(struct mk_ref_seq *s)
{
    if (!s) return;
    free(s->k_cache);
    free(s->v_cache);
    free(s->x);
    free(s->xn);
    free(s->q);
    free(s->att);
    free(s->gate);
    free(s->up);
    free(s->scores);
    free(s);
}

int mk_ref_seq_pos(const struct mk_ref_seq *s) { return s->pos; }
void mk_ref_seq_reset(struct mk_ref_seq *s) { s->pos = 0; }

void mk_ref_seq_kv(const struct mk_ref_seq *s, int layer, const float **k, const float **v)
{
    const struct mk_config *c = &s->r->cfg;
    MK_ASSERT(layer >= 0 && layer < c->n_layers);
    const int64_t per_layer = (int64_t)s->max_ctx * c->n_kv_heads * c->head_dim;
    *k = s->k_cache + layer * per_layer;
    *v = s->v_cache + layer * per_layer;
}

/* ---- the decoder layer ------------------------------------------------------------- */

/* Self-attention of the chunk's n tokens (positions pos0 .. pos0+n-1) in layer l:
 * s->xn [n, H] in, s->att [n, Nq*D] out; appends the chunk's keys and values. */
static void attention(const struct mk_ref *r, struct mk_ref_seq *s, int l, int pos0, int n)
{
    const struct mk_config *c = &r->cfg;
    const struct ref_layer *L = &r->layers[l];
    const int H = c->hidden_size, D = c->head_dim, Nq = c->n_heads, Nkv = c->n_kv_heads;
    const int KV = Nkv * D;
    float *k_layer = s->k_cache + (int64_t)l * s->max_ctx * KV; /* [max_ctx, Nkv*D] */
    float *v_layer = s->v_cache + (int64_t)l * s->max_ctx * KV;
    float *k_new = k_layer + (int64_t)pos0 * KV; /* [n, Nkv*D] this chunk's rows */
    float *v_new = v_layer + (int64_t)pos0 * KV;

    ref_matmul(s->q, s->xn, L->wq, L->bq, n, H, Nq * D);
    ref_matmul(k_new, s->xn, L->wk, L->bk, n, H, KV);
    ref_matmul(v_new, s->xn, L->wv, L->bv, n, H, KV);

    for (int t = 0; t < n; t++) {
        float *q = s->q + (int64_t)t * Nq * D; /* [Nq, D] */
        float *k = k_new + (int64_t)t * KV;    /* [Nkv, D] */
        if (L->q_norm) {
            for (int h = 0; h < Nq; h++) ref_rmsnorm(q + h * D, q + h * D, L->q_norm, D, c->rms_norm_eps);
            for (int h = 0; h < Nkv; h++) ref_rmsnorm(k + h * D, k + h * D, L->k_norm, D, c->rms_norm_eps);
        }
        ref_rope(q, Nq, D, pos0 + t, r->inv_freq);
        ref_rope(k, Nkv, D, pos0 + t, r->inv_freq);
    }

    const float scale = 1.0f / sqrtf((float)D);
    const int group = Nq / Nkv; /* query heads sharing one KV head (GQA) */
    for (int t = 0; t < n; t++) {
        const int p = pos0 + t;
        /* Causal; with a sliding window W a query sees the W positions ending at itself. */
        const int first = c->sliding_window > 0 && p >= c->sliding_window ? p - c->sliding_window + 1 : 0;
        const int span = p - first + 1;
        for (int h = 0; h < Nq; h++) {
            const float *q = s->q + ((int64_t)t * Nq + h) * D;
            const int g = h / group;
            for (int j = 0; j < span; j++)
                s->scores[j] = ref_dot(q, k_layer + (int64_t)(first + j) * KV + g * D, D) * scale;
            ref_softmax(s->scores, span);
            float *o = s->att + ((int64_t)t * Nq + h) * D; /* [D] */
            memset(o, 0, (size_t)D * sizeof *o);
            for (int j = 0; j < span; j++) {
                const float *v = v_layer + (int64_t)(first + j) * KV + g * D;
                for (int d = 0; d < D; d++) o[d] += s->scores[j] * v[d];
            }
        }
    }
}

/* One decoder layer on the chunk's residual stream s->x [n, H]:
 *   x += o_proj(attention(input_layernorm(x)))
 *   x += down_proj(silu(gate_proj(h)) * up_proj(h)),  h = post_attention_layernorm(x) */
static void decoder_layer(const struct mk_ref *r, struct mk_ref_seq *s, int l, int pos0, int n)
{
    const struct mk_config *c = &r->cfg;
    const struct ref_layer *L = &r->layers[l];
    const int H = c->hidden_size, I = c->intermediate_size, QD = c->n_heads * c->head_dim;

    for (int t = 0; t < n; t++)
        ref_rmsnorm(s->xn + (int64_t)t * H, s->x + (int64_t)t * H, L->attn_norm, H, c->rms_norm_eps);
    attention(r, s, l, pos0, n);
    ref_matmul(s->xn, s->att, L->wo, NULL, n, QD, H); /* xn reused: [n, H] o_proj output */
    for (int64_t i = 0; i < (int64_t)n * H; i++) s->x[i] += s->xn[i];

    for (int t = 0; t < n; t++)
        ref_rmsnorm(s->xn + (int64_t)t * H, s->x + (int64_t)t * H, L->mlp_norm, H, c->rms_norm_eps);
    ref_matmul(s->gate, s->xn, L->w_gate, NULL, n, H, I);
    ref_matmul(s->up, s->xn, L->w_up, NULL, n, H, I);
    ref_silu_mul(s->gate, s->up, (int64_t)n * I);
    ref_matmul(s->xn, s->gate, L->w_down, NULL, n, I, H);
    for (int64_t i = 0; i < (int64_t)n * H; i++) s->x[i] += s->xn[i];
}

/* ---- the forward ----------------------------------------------------------------- */

/* Tokens tokens[0..n), n <= REF_CHUNK, at positions s->pos..; logits of the last
 * `n_out` tokens go to logits [n_out, V]. */
static void forward_chunk(const struct mk_ref *r, struct mk_ref_seq *s, const int32_t *tokens,
                          int n, int n_out, float *logits)
{
    const struct mk_config *c = &r->cfg;
    const int H = c->hidden_size;
    for (int t = 0; t < n; t++)
        memcpy(s->x + (int64_t)t * H, r->embed + (int64_t)tokens[t] * H, (size_t)H * sizeof(float));
    for (int l = 0; l < c->n_layers; l++) decoder_layer(r, s, l, s->pos, n);
    s->pos += n;
    if (n_out == 0) return;
    float *xo = s->xn + (int64_t)(n - n_out) * H; /* [n_out, H] final-normed rows */
    for (int t = n - n_out; t < n; t++)
        ref_rmsnorm(s->xn + (int64_t)t * H, s->x + (int64_t)t * H, r->final_norm, H, c->rms_norm_eps);
    ref_matmul(logits, xo, r->lm_head, NULL, n_out, H, c->vocab_size);
}

enum mk_status mk_ref_forward(const struct mk_ref *r, struct mk_ref_seq *s,
                              const int32_t *tokens, int n, bool all_logits, float *logits)
{
    const struct mk_config *c = &r->cfg;
    if (n < 1) return mk_error(MK_ERR_ARG, "ref: forward: expected at least 1 token, got %d", n);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= c->vocab_size)
            return mk_error(MK_ERR_ARG, "ref: forward: token %d: id %d outside [0, %d)", i,
                            (int)tokens[i], c->vocab_size);
    if (n > s->max_ctx - s->pos)
        return mk_error(MK_ERR_LIMIT, "ref: forward: %d tokens at position %d exceed the context of %d",
                        n, s->pos, s->max_ctx);
    for (int done = 0; done < n;) {
        const int m = n - done < REF_CHUNK ? n - done : REF_CHUNK;
        const bool last = done + m == n;
        const int n_out = all_logits ? m : last ? 1 : 0;
        float *dst = all_logits ? logits + (int64_t)done * c->vocab_size : logits;
        forward_chunk(r, s, tokens + done, m, n_out, dst);
        done += m;
    }
    return MK_OK;
}
