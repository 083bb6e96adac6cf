/* The CPU plan interpreter (see mk/interp.h): task twins, the event-respecting random
 * scheduler and the race tracker. */
#include "mk/interp.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Shadow state of one tracked element (arena word, KV element, per-sequence entry). */
struct shadow {
    int32_t writer;      /* instance (step * n_tasks + task) of the last write, or -1 */
};

struct mk_interp {
    const struct mk_plan *p;
    uint16_t *w;         /* weights, bf16 */
    float *arena;
    uint16_t *kv;
    int32_t *seq;        /* tokens[B], pos[B], active[B] */
    uint32_t B, D, G;
    float *inv_freq;     /* [D/2] */
    float *scratch;      /* per-task working rows */
    enum mk_status err;  /* first impossible-state error of a twin */
    /* race tracking (mk_interp_run with track_races) */
    bool track;
    int32_t inst;        /* the running instance */
    uint32_t words;      /* 64-bit words of an instance bitset */
    uint64_t *anc;       /* [n_inst][words]: events-ordered predecessors of each instance */
    /* readers since the last write of each element: a bitset of `words` words in the
     * pool, allocated on the first read (most of the KV cache is never read in a short
     * run); rd_slot[e] = 1 + its index in the pool, 0 = none yet */
    uint32_t *rd_slot;   /* [n_elems] */
    uint64_t *pool;
    uint64_t pool_used, pool_cap; /* in bitsets */
    bool oom;
    struct shadow *sh;   /* [n_elems]: arena words, then KV elements, then seq entries */
    uint64_t n_arena, n_kv, n_elems;
    struct mk_interp_report *rep;
};

/* ---- RoPE frequencies: as transformers computes them (and src/ref) ------------------ */

static void rope_freqs(const struct mk_config *c, float *inv_freq)
{
    const int D = c->head_dim;
    for (int i = 0; i < D / 2; i++)
        inv_freq[i] = 1.0f / powf(c->rope_theta, (float)(2 * i) / (float)D);
    if (c->rope_type != MK_ROPE_LLAMA3) return;
    const float factor = c->rope_factor, lo = c->rope_low_freq_factor, hi = c->rope_high_freq_factor;
    const float old_ctx = (float)c->rope_original_max_position;
    for (int i = 0; i < D / 2; i++) {
        const float f = inv_freq[i], wavelen = (float)(2.0 * M_PI) / f;
        if (wavelen > old_ctx / lo) {
            inv_freq[i] = f / factor;
        } else if (wavelen >= old_ctx / hi) {
            const float smooth = (old_ctx / wavelen - lo) / (hi - lo);
            inv_freq[i] = (1.0f - smooth) * f / factor + smooth * f;
        }
    }
}

/* ---- tracked accesses ---------------------------------------------------------------- */

static const char *elem_name(const struct mk_interp *it, uint64_t e, char *buf, size_t n)
{
    const struct mk_plan *p = it->p;
    if (e < it->n_arena) {
        for (uint32_t i = 0; i < p->n_buffers; i++) {
            const struct mk_buffer *b = &p->buffers[i];
            if (e * 4 >= b->offset && e * 4 < b->offset + b->bytes) {
                uint64_t k = e - b->offset / 4;
                snprintf(buf, n, "buffer %s [outer %llu, b %llu, col %llu]", b->name,
                         (unsigned long long)(k / b->cols / it->B),
                         (unsigned long long)(k / b->cols % it->B),
                         (unsigned long long)(k % b->cols));
                return buf;
            }
        }
        snprintf(buf, n, "arena word %llu", (unsigned long long)e);
    } else if (e < it->n_arena + it->n_kv) {
        snprintf(buf, n, "KV element %llu", (unsigned long long)(e - it->n_arena));
    } else {
        uint64_t k = e - it->n_arena - it->n_kv;
        static const char *const names[3] = {"tokens", "pos", "active"};
        snprintf(buf, n, "%s[%llu]", names[k / it->B], (unsigned long long)(k % it->B));
    }
    return buf;
}

static bool ordered(const struct mk_interp *it, int32_t before)
{
    return before == it->inst ||
           (it->anc[(uint64_t)it->inst * it->words + (uint32_t)before / 64] >> ((uint32_t)before % 64)) & 1;
}

static void race(struct mk_interp *it, const char *kind, int32_t other, uint64_t e)
{
    struct mk_interp_report *r = it->rep;
    if (r->races++) return;
    uint32_t n = it->p->n_tasks, a = (uint32_t)it->inst % n, b = (uint32_t)other % n;
    char where[160];
    snprintf(r->first_race, sizeof r->first_race,
             "%s: task %u (%s, layer %d) of step %u and task %u (%s, layer %d) of step %u "
             "on %s: no event orders them", kind, a, mk_task_op_name(it->p->tasks[a].op),
             (int16_t)it->p->tasks[a].layer, (uint32_t)it->inst / n, b,
             mk_task_op_name(it->p->tasks[b].op), (int16_t)it->p->tasks[b].layer,
             (uint32_t)other / n, elem_name(it, e, where, sizeof where));
}

/* The reader bitset of element e, allocated on first use (NULL when out of memory). */
static uint64_t *readers_of(struct mk_interp *it, uint64_t e, bool alloc)
{
    if (!it->rd_slot[e]) {
        if (!alloc) return NULL;
        if (it->pool_used == it->pool_cap) {
            uint64_t nc = it->pool_cap ? it->pool_cap * 2 : 1024;
            uint64_t *np = realloc(it->pool, nc * it->words * sizeof *np);
            if (!np || nc >= UINT32_MAX) { it->oom = true; return NULL; }
            it->pool = np;
            it->pool_cap = nc;
        }
        memset(&it->pool[it->pool_used * it->words], 0, it->words * sizeof *it->pool);
        it->rd_slot[e] = (uint32_t)++it->pool_used;
    }
    return &it->pool[(it->rd_slot[e] - 1) * it->words];
}

static void on_read(struct mk_interp *it, uint64_t e)
{
    if (!it->track) return;
    int32_t w = it->sh[e].writer;
    if (w >= 0 && !ordered(it, w)) race(it, "read after write", w, e);
    uint64_t *rd = readers_of(it, e, true);
    if (rd) rd[(uint32_t)it->inst / 64] |= 1ull << ((uint32_t)it->inst % 64);
}

static void on_write(struct mk_interp *it, uint64_t e)
{
    if (!it->track) return;
    int32_t w = it->sh[e].writer;
    if (w >= 0 && !ordered(it, w)) race(it, "write after write", w, e);
    uint64_t *rd = readers_of(it, e, false);
    const uint64_t *anc = &it->anc[(uint64_t)it->inst * it->words];
    for (uint32_t k = 0; rd && k < it->words; k++) {
        uint64_t self = k == (uint32_t)it->inst / 64 ? 1ull << ((uint32_t)it->inst % 64) : 0;
        uint64_t bad = rd[k] & ~anc[k] & ~self;
        if (bad) race(it, "write after read", (int32_t)(k * 64 + (uint32_t)__builtin_ctzll(bad)), e);
        rd[k] = 0;
    }
    it->sh[e].writer = it->inst;
}

/* Element index of (outer o, row b, col c) of buffer id. */
static uint64_t bidx(const struct mk_interp *it, uint32_t buf, uint32_t o, uint32_t b, uint32_t c)
{
    const struct mk_buffer *x = &it->p->buffers[buf];
    return x->offset / 4 + ((uint64_t)o * it->B + b) * x->cols + c;
}

static float ld(struct mk_interp *it, uint32_t buf, uint32_t o, uint32_t b, uint32_t c)
{
    uint64_t e = bidx(it, buf, o, b, c);
    on_read(it, e);
    return it->arena[e];
}

static void st(struct mk_interp *it, uint32_t buf, uint32_t o, uint32_t b, uint32_t c, float v)
{
    uint64_t e = bidx(it, buf, o, b, c);
    on_write(it, e);
    it->arena[e] = v;
}

enum { SEQ_TOKENS = 0, SEQ_POS = 1, SEQ_ACTIVE = 2 };

static int32_t seq_ld(struct mk_interp *it, int which, uint32_t b)
{
    uint64_t k = (uint64_t)which * it->B + b;
    on_read(it, it->n_arena + it->n_kv + k);
    return it->seq[k];
}

static void seq_st(struct mk_interp *it, int which, uint32_t b, int32_t v)
{
    uint64_t k = (uint64_t)which * it->B + b;
    on_write(it, it->n_arena + it->n_kv + k);
    it->seq[k] = v;
}

static uint64_t kv_elem(const struct mk_interp *it, int layer, int which, uint32_t b, uint32_t h,
                        int32_t pos, uint32_t i)
{
    return mk_plan_kv_offset(it->p, layer, which, (int)b, (int)h, pos) / 2 + i;
}

static float kv_ld(struct mk_interp *it, uint64_t e)
{
    on_read(it, it->n_arena + e);
    return mk_bf16_to_f32(it->kv[e]);
}

static void kv_st(struct mk_interp *it, uint64_t e, float v)
{
    on_write(it, it->n_arena + e);
    it->kv[e] = mk_f32_to_bf16(v);
}

static float wt(const struct mk_interp *it, uint32_t w, uint64_t row, uint64_t col)
{
    const struct mk_plan_weight *x = &it->p->weights[w];
    return mk_bf16_to_f32(it->w[x->offset / 2 + row * x->cols + col]);
}

static void fail(struct mk_interp *it, const char *what, uint32_t t)
{
    if (it->err == MK_OK)
        it->err = mk_error(MK_ERR_INTERNAL, "interp: task %u (%s): %s", t,
                           mk_task_op_name(it->p->tasks[t].op), what);
}

/* ---- task twins ---------------------------------------------------------------------- */

/* row[0..K) = in0[b, :] (RMSNorm'd with w0 unless w0 is MK_NONE). Fixed order. */
static void load_row(struct mk_interp *it, const struct mk_task *k, uint32_t b, uint32_t K, float *row)
{
    for (uint32_t i = 0; i < K; i++) row[i] = ld(it, k->in0, 0, b, i);
    if (k->w0 == MK_NONE) return;
    float ss = 0;
    for (uint32_t i = 0; i < K; i++) ss += row[i] * row[i];
    float inv = 1.0f / sqrtf(ss / (float)K + it->p->cfg.rms_norm_eps);
    for (uint32_t i = 0; i < K; i++) row[i] = wt(it, k->w0, 0, i) * (row[i] * inv);
}

static float dot_w(const struct mk_interp *it, uint32_t w, uint32_t r, const float *x, uint32_t k0, uint32_t k1)
{
    float acc = 0;
    for (uint32_t k = k0; k < k1; k++) acc += wt(it, w, r, k) * x[k];
    return acc;
}

static void t_embed(struct mk_interp *it, uint32_t t, const struct mk_task *k)
{
    uint32_t V = it->p->weights[k->w0].rows;
    for (uint32_t b = 0; b < it->B; b++) {
        int32_t tok = seq_ld(it, SEQ_TOKENS, b);
        if (tok < 0 || (uint32_t)tok >= V) { fail(it, "token id outside the vocabulary", t); return; }
        for (uint32_t r = k->r0; r < k->r1; r++) st(it, k->out, 0, b, r, wt(it, k->w0, (uint32_t)tok, r));
    }
}

static void t_linear(struct mk_interp *it, const struct mk_task *k)
{
    uint32_t K = it->p->weights[k->w1].cols;
    float *row = it->scratch;
    for (uint32_t b = 0; b < it->B; b++) {
        load_row(it, k, b, K, row);
        for (uint32_t r = k->r0; r < k->r1; r++) {
            float acc = dot_w(it, k->w1, r, row, k->k0, k->k1);
            switch ((enum mk_task_op)k->op) {
            case MK_TASK_NORM_LINEAR:
                if (k->w2 != MK_NONE && k->split == 0) acc += wt(it, k->w2, 0, r);
                st(it, k->out, k->split, b, r, acc);
                break;
            case MK_TASK_LINEAR_RESIDUAL:
                st(it, k->out, 0, b, r, ld(it, k->in1, 0, b, r) + acc);
                break;
            case MK_TASK_NORM_GATE_UP: {
                float u = dot_w(it, k->w2, r, row, k->k0, k->k1);
                st(it, k->out, 0, b, r, acc / (1.0f + expf(-acc)) * u);
                break;
            }
            default:
                MK_ASSERT(0);
            }
        }
    }
}

/* Per-head RMSNorm (w may be MK_NONE) and RoPE at pos, in place on x[D]. */
static void head_norm_rope(const struct mk_interp *it, float *x, uint32_t w, int32_t pos)
{
    uint32_t D = it->D, half = D / 2;
    if (w != MK_NONE) {
        float ss = 0;
        for (uint32_t i = 0; i < D; i++) ss += x[i] * x[i];
        float inv = 1.0f / sqrtf(ss / (float)D + it->p->cfg.rms_norm_eps);
        for (uint32_t i = 0; i < D; i++) x[i] = wt(it, w, 0, i) * (x[i] * inv);
    }
    for (uint32_t i = 0; i < half; i++) {
        float angle = (float)pos * it->inv_freq[i], c = cosf(angle), s = sinf(angle);
        float x1 = x[i], x2 = x[i + half];
        x[i] = x1 * c - x2 * s;
        x[i + half] = x2 * c + x1 * s;
    }
}

/* ATTN_PARTIAL (plan.h): q norm + RoPE of the group's query heads; split 0 appends k
 * (norm + RoPE) and v at pos[b] to the cache first; then attention over the split's
 * positions, read back from the (bf16) cache. */
static void t_attn_partial(struct mk_interp *it, uint32_t t, const struct mk_task *k)
{
    const struct mk_config *c = &it->p->cfg;
    uint32_t D = it->D, G = it->G, g = k->r0, nh = (uint32_t)c->n_heads, nkv = (uint32_t)c->n_kv_heads;
    float *q = it->scratch, *acc = it->scratch + D, scale = 1.0f / sqrtf((float)D);
    for (uint32_t b = 0; b < it->B; b++) {
        int32_t pos = seq_ld(it, SEQ_POS, b), lo, hi;
        if (pos < 0 || pos >= it->p->target.max_ctx) { fail(it, "position outside the KV cache", t); return; }
        mk_plan_kv_split(c->sliding_window, pos + 1, k->split, k->n_split, &lo, &hi);
        if (k->split == 0) { /* [lo, hi) ends at pos */
            for (uint32_t i = 0; i < D; i++) acc[i] = ld(it, k->in0, 0, b, nh * D + g * D + i);
            head_norm_rope(it, acc, k->w1, pos);
            for (uint32_t i = 0; i < D; i++) kv_st(it, kv_elem(it, k->layer, 0, b, g, pos, i), acc[i]);
            for (uint32_t i = 0; i < D; i++)
                kv_st(it, kv_elem(it, k->layer, 1, b, g, pos, i), ld(it, k->in0, 0, b, (nh + nkv) * D + g * D + i));
        }
        for (uint32_t h = g * G; h < (g + 1) * G; h++) {
            for (uint32_t i = 0; i < D; i++) q[i] = ld(it, k->in0, 0, b, h * D + i);
            head_norm_rope(it, q, k->w0, pos);
            float m = -INFINITY, sum = 0;
            for (uint32_t i = 0; i < D; i++) acc[i] = 0;
            for (int32_t p = lo; p < hi; p++) { /* online softmax, in order */
                float sc = 0;
                for (uint32_t i = 0; i < D; i++) sc += q[i] * kv_ld(it, kv_elem(it, k->layer, 0, b, g, p, i));
                sc *= scale;
                if (sc > m) {
                    float corr = expf(m - sc);
                    sum *= corr;
                    for (uint32_t i = 0; i < D; i++) acc[i] *= corr;
                    m = sc;
                }
                float e = expf(sc - m);
                sum += e;
                for (uint32_t i = 0; i < D; i++) acc[i] += e * kv_ld(it, kv_elem(it, k->layer, 1, b, g, p, i));
            }
            uint32_t base = h * (D + 2);
            for (uint32_t i = 0; i < D; i++) st(it, k->out, k->split, b, base + i, acc[i]);
            st(it, k->out, k->split, b, base + D, m);
            st(it, k->out, k->split, b, base + D + 1, sum);
        }
    }
}

/* Only the non-empty splits (plan.h), in split order. */
static void t_attn_merge(struct mk_interp *it, uint32_t t, const struct mk_task *k)
{
    uint32_t D = it->D, G = it->G, g = k->r0;
    float *out = it->scratch;
    for (uint32_t b = 0; b < it->B; b++) {
        int32_t pos = seq_ld(it, SEQ_POS, b);
        if (pos < 0 || pos >= it->p->target.max_ctx) { fail(it, "position outside the KV cache", t); return; }
        uint32_t S = mk_plan_kv_nonempty(it->p->cfg.sliding_window, pos + 1, k->n_split);
        for (uint32_t h = g * G; h < (g + 1) * G; h++) {
            uint32_t base = h * (D + 2);
            float M = -INFINITY, total = 0;
            for (uint32_t s = 0; s < S; s++) M = fmaxf(M, ld(it, k->in0, s, b, base + D));
            for (uint32_t i = 0; i < D; i++) out[i] = 0;
            for (uint32_t s = 0; s < S; s++) {
                float ms = ld(it, k->in0, s, b, base + D);
                float f = ms == -INFINITY ? 0.0f : expf(ms - M);
                total += f * ld(it, k->in0, s, b, base + D + 1);
                for (uint32_t i = 0; i < D; i++) out[i] += f * ld(it, k->in0, s, b, base + i);
            }
            for (uint32_t i = 0; i < D; i++) st(it, k->out, 0, b, h * D + i, out[i] / total);
        }
    }
}

static void t_logits(struct mk_interp *it, const struct mk_task *k)
{
    uint32_t K = it->p->weights[k->w1].cols;
    float *row = it->scratch;
    for (uint32_t b = 0; b < it->B; b++) {
        load_row(it, k, b, K, row);
        float best = -INFINITY;
        int32_t arg = (int32_t)k->r0;
        for (uint32_t r = k->r0; r < k->r1; r++) {
            float v = dot_w(it, k->w1, r, row, 0, K);
            st(it, k->out, 0, b, r, v);
            if (v > best) { best = v; arg = (int32_t)r; }
        }
        float argf;
        memcpy(&argf, &arg, sizeof argf);
        st(it, k->aux, k->split, b, 0, best);
        st(it, k->aux, k->split, b, 1, argf);
    }
}

/* Greedy: the best (value, index) over the LOGITS partials in split order. Records the
 * token (and logits) of `step` when out arrays are given. */
static void t_sample(struct mk_interp *it, const struct mk_task *k, int step,
                     const struct mk_interp_opts *o)
{
    uint32_t V = it->p->buffers[k->in0].cols;
    for (uint32_t b = k->r0; b < k->r1; b++) {
        float best = -INFINITY;
        int32_t tok = 0;
        for (uint32_t s = 0; s < k->n_split; s++) {
            float v = ld(it, k->in1, s, b, 0), idxf = ld(it, k->in1, s, b, 1);
            int32_t idx;
            memcpy(&idx, &idxf, sizeof idx);
            if (s == 0 || v > best) { best = v; tok = idx; }
        }
        for (uint32_t r = 0; r < V; r++) {
            float v = ld(it, k->in0, 0, b, r);
            if (o && o->logits_out) o->logits_out[((size_t)step * it->B + b) * V + r] = v;
        }
        if (!seq_ld(it, SEQ_ACTIVE, b)) continue;
        seq_st(it, SEQ_TOKENS, b, tok);
        seq_st(it, SEQ_POS, b, seq_ld(it, SEQ_POS, b) + 1);
        if (o && o->tokens_out) o->tokens_out[(size_t)step * it->B + b] = tok;
    }
}

static void exec(struct mk_interp *it, uint32_t t, int step, const struct mk_interp_opts *o)
{
    const struct mk_task *k = &it->p->tasks[t];
    switch ((enum mk_task_op)k->op) {
    case MK_TASK_EMBED: t_embed(it, t, k); break;
    case MK_TASK_NORM_LINEAR:
    case MK_TASK_LINEAR_RESIDUAL:
    case MK_TASK_NORM_GATE_UP: t_linear(it, k); break;
    case MK_TASK_ATTN_PARTIAL: t_attn_partial(it, t, k); break;
    case MK_TASK_ATTN_MERGE: t_attn_merge(it, t, k); break;
    case MK_TASK_LOGITS: t_logits(it, k); break;
    case MK_TASK_SAMPLE: t_sample(it, k, step, o); break;
    case MK_TASK_QK_ROPE_KV: /* retired: mk_plan_check rejects it */
    case MK_TASK_NOP:
    case MK_TASK_OP_COUNT: break;
    }
}

/* ---- state ------------------------------------------------------------------------- */

enum mk_status mk_interp_new(const struct mk_plan *p, const void *weights, struct mk_interp **out)
{
    enum mk_status s = mk_plan_check(p);
    if (s) return s;
    struct mk_interp *it = calloc(1, sizeof *it);
    if (!it) return mk_error(MK_ERR_NOMEM, "interp: out of memory");
    const struct mk_config *c = &p->cfg;
    it->p = p;
    it->B = (uint32_t)p->target.batch;
    it->D = (uint32_t)c->head_dim;
    it->G = (uint32_t)(c->n_heads / c->n_kv_heads);
    uint32_t widest = (uint32_t)(c->hidden_size > c->intermediate_size ? c->hidden_size : c->intermediate_size);
    widest = widest > 2 * it->D ? widest : 2 * it->D;
    it->w = malloc(p->weight_bytes + 2);
    it->arena = calloc(p->arena_bytes / 4 + 1, sizeof *it->arena);
    it->kv = calloc(p->kv_bytes / 2 + 1, sizeof *it->kv);
    it->seq = calloc(3 * (size_t)it->B, sizeof *it->seq);
    it->inv_freq = calloc(it->D / 2 + 1, sizeof *it->inv_freq);
    it->scratch = calloc((size_t)widest + 2 * it->D, sizeof *it->scratch);
    if (!it->w || !it->arena || !it->kv || !it->seq || !it->inv_freq || !it->scratch) {
        mk_interp_free(it);
        return mk_error(MK_ERR_NOMEM, "interp: out of memory (weights %llu B, KV %llu B)",
                        (unsigned long long)p->weight_bytes, (unsigned long long)p->kv_bytes);
    }
    memcpy(it->w, weights, p->weight_bytes);
    for (uint32_t b = 0; b < it->B; b++) it->seq[SEQ_ACTIVE * it->B + b] = 1;
    rope_freqs(c, it->inv_freq);
    it->n_arena = p->arena_bytes / 4;
    it->n_kv = p->kv_bytes / 2;
    it->n_elems = it->n_arena + it->n_kv + 3 * (uint64_t)it->B;
    *out = it;
    return MK_OK;
}

void mk_interp_free(struct mk_interp *it)
{
    if (!it) return;
    free(it->w); free(it->arena); free(it->kv); free(it->seq); free(it->inv_freq);
    free(it->scratch); free(it->anc); free(it->rd_slot); free(it->pool); free(it->sh);
    free(it);
}

float *mk_interp_arena(struct mk_interp *it) { return it->arena; }
uint16_t *mk_interp_kv(struct mk_interp *it) { return it->kv; }
uint16_t *mk_interp_weights(struct mk_interp *it) { return it->w; }
int32_t *mk_interp_tokens(struct mk_interp *it) { return it->seq + SEQ_TOKENS * it->B; }
int32_t *mk_interp_pos(struct mk_interp *it) { return it->seq + SEQ_POS * it->B; }
int32_t *mk_interp_active(struct mk_interp *it) { return it->seq + SEQ_ACTIVE * it->B; }

enum mk_status mk_interp_run_task(struct mk_interp *it, uint32_t t)
{
    if (t >= it->p->n_tasks) return mk_error(MK_ERR_ARG, "interp: task %u of %u", t, it->p->n_tasks);
    it->track = false;
    it->err = MK_OK;
    exec(it, t, 0, NULL);
    return it->err;
}

/* ---- the random, event-respecting run ------------------------------------------------ */

static uint64_t rng_next(uint64_t *s) /* splitmix64 */
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static bool runnable(const struct mk_plan *p, const uint64_t *counter, uint32_t t, int step)
{
    const struct mk_task *k = &p->tasks[t];
    for (uint32_t w = 0; w < k->n_wait; w++) {
        const struct mk_wait *wt = &p->waits[k->wait_first + w];
        int64_t target = ((int64_t)step + 1 + wt->step_offset) * p->events[wt->event].per_step;
        if ((int64_t)counter[wt->event] < target) return false;
    }
    return true;
}

static enum mk_status track_init(struct mk_interp *it, uint64_t n_inst)
{
    it->words = (uint32_t)((n_inst + 63) / 64);
    free(it->anc); free(it->rd_slot); free(it->pool); free(it->sh);
    it->pool = NULL;
    it->pool_used = it->pool_cap = 0;
    it->oom = false;
    it->anc = calloc(n_inst * it->words, sizeof *it->anc);
    it->rd_slot = calloc(it->n_elems, sizeof *it->rd_slot);
    it->sh = malloc(it->n_elems * sizeof *it->sh);
    if (!it->anc || !it->rd_slot || !it->sh)
        return mk_error(MK_ERR_NOMEM, "interp: out of memory for race tracking");
    for (uint64_t e = 0; e < it->n_elems; e++) it->sh[e].writer = -1;
    return MK_OK;
}

/* Consumers of each event: the tasks waiting on it, cons[cstart[e] .. cstart[e + 1]). */
static bool consumers(const struct mk_plan *p, uint32_t **cstart, uint32_t **cons)
{
    *cstart = calloc(p->n_events + 2, sizeof **cstart);
    *cons = malloc((p->n_waits + 1) * sizeof **cons);
    if (!*cstart || !*cons) return false;
    for (uint32_t i = 0; i < p->n_waits; i++) (*cstart)[p->waits[i].event + 2]++;
    for (uint32_t e = 0; e < p->n_events; e++) (*cstart)[e + 2] += (*cstart)[e + 1];
    for (uint32_t t = 0; t < p->n_tasks; t++)
        for (uint32_t w = 0; w < p->tasks[t].n_wait; w++)
            (*cons)[(*cstart)[p->waits[p->tasks[t].wait_first + w].event + 1]++] = t;
    return true;
}

enum { INST_WAITING = 0, INST_READY, INST_DONE };

enum mk_status mk_interp_run(struct mk_interp *it, const struct mk_interp_opts *o,
                             struct mk_interp_report *rep)
{
    const struct mk_plan *p = it->p;
    if (o->n_steps < 1 || o->n_steps > 1 << 16) return mk_error(MK_ERR_ARG, "interp: n_steps %d", o->n_steps);
    memset(rep, 0, sizeof *rep);
    it->rep = rep;
    it->err = MK_OK;
    uint64_t n = p->n_tasks, n_inst = n * (uint64_t)o->n_steps, seed = o->seed;
    enum mk_status s = o->track_races ? track_init(it, n_inst) : MK_OK;
    it->track = o->track_races;
    /* clocks of events: the instances whose signals (and their predecessors) it holds */
    uint64_t *counter = calloc(p->n_events + 1, sizeof *counter);
    uint64_t *clock = o->track_races ? calloc((size_t)(p->n_events + 1) * it->words, sizeof *clock) : NULL;
    uint32_t *ready = malloc((n_inst + 1) * sizeof *ready), *cstart = NULL, *cons = NULL;
    uint8_t *state = calloc(n_inst + 1, 1);
    if (!s && (!counter || !ready || !state || (o->track_races && !clock) || !consumers(p, &cstart, &cons)))
        s = mk_error(MK_ERR_NOMEM, "interp: out of memory");
    /* ready instances, kept up to date: a waiting one is re-examined only when an event
     * it waits on is signalled */
    uint64_t n_ready = 0, n_done = 0;
    for (uint64_t i = 0; !s && i < n_inst; i++)
        if (runnable(p, counter, (uint32_t)(i % n), (int)(i / n))) {
            state[i] = INST_READY;
            ready[n_ready++] = (uint32_t)i;
        }
    while (!s && n_done < n_inst) {
        if (!n_ready) {
            uint64_t stuck = 0;
            while (state[stuck] == INST_DONE) stuck++;
            s = mk_error(MK_ERR_INTERNAL, "interp: stuck: task %u (%s) of step %u can never run",
                         (uint32_t)(stuck % n), mk_task_op_name(p->tasks[stuck % n].op), (uint32_t)(stuck / n));
            break;
        }
        uint64_t pick = rng_next(&seed) % n_ready;
        uint32_t inst = ready[pick], t = inst % (uint32_t)n;
        int step = (int)(inst / n);
        ready[pick] = ready[--n_ready];
        state[inst] = INST_DONE;
        n_done++;
        const struct mk_task *k = &p->tasks[t];
        it->inst = (int32_t)inst;
        if (it->track) /* acquire: every signal made so far to each awaited event */
            for (uint32_t w = 0; w < k->n_wait; w++) {
                const uint64_t *cl = &clock[(uint64_t)p->waits[k->wait_first + w].event * it->words];
                uint64_t *a = &it->anc[(uint64_t)inst * it->words];
                for (uint32_t j = 0; j < it->words; j++) a[j] |= cl[j];
            }
        exec(it, t, step, o);
        rep->tasks_run++;
        if (it->err) s = it->err;
        if (it->oom) s = mk_error(MK_ERR_NOMEM, "interp: out of memory for race tracking");
        for (uint32_t j = 0; j < k->n_signal; j++) { /* release */
            uint32_t e = p->signals[k->signal_first + j];
            counter[e]++;
            for (uint32_t c = cstart[e]; c < cstart[e + 1]; c++)
                for (int st = 0; st < o->n_steps; st++) {
                    uint64_t i2 = (uint64_t)st * n + cons[c];
                    if (state[i2] == INST_WAITING && runnable(p, counter, cons[c], st)) {
                        state[i2] = INST_READY;
                        ready[n_ready++] = (uint32_t)i2;
                    }
                }
            if (!it->track) continue;
            uint64_t *cl = &clock[(uint64_t)e * it->words];
            const uint64_t *a = &it->anc[(uint64_t)inst * it->words];
            for (uint32_t w = 0; w < it->words; w++) cl[w] |= a[w];
            cl[inst / 64] |= 1ull << (inst % 64);
        }
    }
    it->track = false;
    free(counter);
    free(clock);
    free(ready);
    free(state);
    free(cstart);
    free(cons);
    return s;
}
