/* Tiling: fused ops -> tasks, under an explicit shared-memory and cost model.
 *
 * Shared memory of one CTA (the contract in plan.h: act_chunk, weight_stages,
 * stage_bytes), for the H100 target (227 KiB = 232,448 B per block):
 *   weight stages   4 x 16 KiB = 65,536 B   16-byte loads of weight rows in flight; 4
 *                                           stages cover ~2 us of DRAM latency x 23 GB/s
 *   scratch                      8,192 B   cross-warp sums, norm statistics, staging
 *   activations     B x act_chunk x 4 B    fp32 after the RMSNorm prologue
 *   => act_chunk = (232,448 - 65,536 - 8,192) / (4 B), rounded down to 64:
 *      B = 1: 39,680 (every K of real models in one pass); B = 4: 9,920 (Qwen3-8B
 *      down-proj, K = 12,288: 2 passes); B = 16: 2,432 (K = 4,096: 2 passes, 12,288: 6).
 * A linear with K > act_chunk runs ceil(K / act_chunk) passes over K inside the task
 * (accumulating in registers, in order) instead of splitting K over tasks: a cross-task
 * split needs a reduction step and one more cross-SM dependency (~4 us) per linear,
 * more than the L2 re-read of the activations it would save. Smaller targets scale the
 * stages down (stage = smem / 8, at most 16 KiB; scratch = smem / 32, at most 8 KiB).
 *
 * Cost of a task (ns), used by the schedule search:
 *   t = fixed + weight_bytes / bw_sm + act_bytes / (4 bw_sm)
 *   fixed = 500 ns (descriptor, activation load latency, store + signal), bw_sm =
 *   target.mem_gbps / sm_count bytes/ns (3,000 GB/s / 132 = 22.7 B/ns: every SM streams
 *   its share of DRAM bandwidth); activations come from L2 at ~4x that rate.
 *   Attention partials are costed at the full context (max_ctx, or the sliding window
 *   when shorter): one chunk of K and V rows of bf16 per split.
 *
 * Tiles: linears are cut into row ranges of about equal size, as many as SMs (one wave:
 * every SM streams the same bytes; in the model above more tiles only ever shorten an
 * op, and the smallest real layers, e.g. Qwen3-0.6B's o-proj, still give 8 rows = 32 KiB
 * per task). The embedding gathers B rows: one task per 32 KiB. Attention: each kv head is split over
 * S = min(sm_count / n_kv, ceil(max_ctx / MK_PLAN_KV_CHUNK)) position chunks (at least
 * 1; mk_plan_kv_split) so that the KV stream of long contexts spreads over the SMs while
 * a short context runs on the first few splits only (the others write an empty partial
 * and the merge skips them); ATTN_PARTIAL carries q/k norm + RoPE + the KV append (no
 * dependency level of its own) and is costed at a full context (one chunk of K and V
 * rows per split); ATTN_MERGE is one task per kv head; LOGITS tiles like a linear and owns one argmax partial each; SAMPLE is
 * one task per sequence.
 */
#include "compile_int.h"

#include <stdlib.h>
#include <string.h>

enum {
    STAGES = 4,
    STAGE_MAX = 16384,
    SCRATCH_MAX = 8192,
    MIN_TASK_WEIGHT_BYTES = 32768,
};
static const double FIXED_NS = 500.0;
static const double L2_SPEEDUP = 4.0;

static uint32_t min_u32(uint32_t a, uint32_t b) { return a < b ? a : b; }
static uint32_t max_u32(uint32_t a, uint32_t b) { return a > b ? a : b; }

uint32_t tile_task_smem(const struct mk_config *cfg, const struct mk_target *tgt,
                        uint32_t act_chunk, uint32_t weight_stages, uint32_t stage_bytes,
                        const struct mk_task *t, uint32_t K)
{
    uint32_t B = (uint32_t)tgt->batch, D = (uint32_t)cfg->head_dim;
    uint32_t G = (uint32_t)(cfg->n_heads / cfg->n_kv_heads);
    uint32_t scratch = min_u32(SCRATCH_MAX, (uint32_t)tgt->smem_per_block / 32);
    uint32_t stages = weight_stages * stage_bytes;
    switch ((enum mk_task_op)t->op) {
    case MK_TASK_NORM_LINEAR:
    case MK_TASK_LINEAR_RESIDUAL:
    case MK_TASK_NORM_GATE_UP:
    case MK_TASK_LOGITS:
        return B * min_u32(K, act_chunk) * 4 + stages + scratch;
    case MK_TASK_ATTN_PARTIAL: /* q of the group + K/V position stages */
        return B * G * D * 4 + stages + scratch;
    case MK_TASK_ATTN_MERGE:
        return B * G * (D + 2) * 4 + scratch;
    case MK_TASK_EMBED:
    case MK_TASK_SAMPLE:
    case MK_TASK_QK_ROPE_KV: /* retired: never emitted */
    case MK_TASK_NOP:
    case MK_TASK_OP_COUNT:
        break;
    }
    return scratch;
}

/* The contract numbers for this target; MK_ERR_LIMIT when nothing fits. */
static enum mk_status contract(struct cstate *c)
{
    uint32_t smem = (uint32_t)c->tgt.smem_per_block, B = (uint32_t)c->tgt.batch;
    c->weight_stages = STAGES;
    c->stage_bytes = min_u32(STAGE_MAX, smem / 8) & ~1023u;
    c->scratch_bytes = min_u32(SCRATCH_MAX, smem / 32);
    uint32_t fixed = c->weight_stages * c->stage_bytes + c->scratch_bytes;
    uint32_t chunk = smem > fixed ? (smem - fixed) / (4 * B) / 64 * 64 : 0;
    if (c->stage_bytes < 1024 || chunk < 64)
        return mk_error(MK_ERR_LIMIT,
                        "compile: target: smem_per_block %u too small for batch %u (need "
                        "4 weight stages of >= 1 KiB and 64 activations per row)", smem, B);
    c->act_chunk = chunk;
    return MK_OK;
}

static enum mk_status add_access(struct cstate *c, uint32_t res, uint32_t lo, uint32_t hi,
                                 bool write)
{
    MK_ASSERT(lo < hi);
    enum mk_status s = cs_grow((void **)&c->acc, &c->cap_acc, c->n_acc, sizeof *c->acc);
    if (s) return s;
    c->acc[c->n_acc++] = (struct access){res, lo, hi, write};
    return MK_OK;
}

/* Coordinate of column `col` of outer slice `o` of buffer b. */
static uint32_t coord(const struct cstate *c, uint32_t b, uint32_t o, uint32_t col)
{
    return o * c->buffers[b].cols + col;
}

static enum mk_status accesses(struct cstate *c, const struct fop *f, const struct mk_task *t)
{
    const struct mk_config *cfg = &c->cfg;
    uint32_t D = (uint32_t)cfg->head_dim, nh = (uint32_t)cfg->n_heads;
    uint32_t nkv = (uint32_t)cfg->n_kv_heads, G = nh / nkv, B = (uint32_t)c->tgt.batch;
    enum mk_status s = MK_OK;
#define ACC(res, lo, hi, w) do { if (!s) s = add_access(c, res, lo, hi, w); } while (0)
    switch (f->op) {
    case MK_TASK_EMBED:
        ACC(res_tokens(c), 0, B, false);
        ACC(f->out, t->r0, t->r1, true);
        break;
    case MK_TASK_NORM_LINEAR:
    case MK_TASK_NORM_GATE_UP:
        ACC(f->in0, 0, f->K, false);
        ACC(f->out, t->r0, t->r1, true);
        break;
    case MK_TASK_LINEAR_RESIDUAL:
        ACC(f->in0, t->k0, t->k1, false);
        ACC(f->in1, t->r0, t->r1, false);
        ACC(f->out, t->r0, t->r1, true);
        break;
    case MK_TASK_ATTN_PARTIAL: /* split 0 appends k, v at pos (plan.h) */
        ACC(f->in0, t->r0 * G * D, t->r1 * G * D, false);
        ACC(res_pos(c), 0, B, false);
        ACC(res_kv(c, f->layer), t->r0, t->r1, false);
        if (t->split == 0) {
            ACC(f->in0, nh * D + t->r0 * D, nh * D + t->r1 * D, false);
            ACC(f->in0, (nh + nkv) * D + t->r0 * D, (nh + nkv) * D + t->r1 * D, false);
            ACC(res_kv(c, f->layer), t->r0, t->r1, true);
        }
        ACC(f->out, coord(c, f->out, t->split, t->r0 * G * (D + 2)),
            coord(c, f->out, t->split, t->r1 * G * (D + 2)), true);
        break;
    case MK_TASK_ATTN_MERGE:
        ACC(res_pos(c), 0, B, false);
        for (uint32_t sp = 0; sp < t->n_split; sp++)
            ACC(f->in0, coord(c, f->in0, sp, t->r0 * G * (D + 2)),
                coord(c, f->in0, sp, t->r1 * G * (D + 2)), false);
        ACC(f->out, t->r0 * G * D, t->r1 * G * D, true);
        break;
    case MK_TASK_LOGITS:
        ACC(f->in0, 0, f->K, false);
        ACC(f->out, t->r0, t->r1, true);
        ACC(f->aux, coord(c, f->aux, t->split, 0), coord(c, f->aux, t->split, 2), true);
        break;
    case MK_TASK_SAMPLE:
        ACC(f->in0, 0, c->buffers[f->in0].cols, false);
        ACC(f->in1, 0, coord(c, f->in1, t->n_split, 0), false);
        ACC(res_active(c), t->r0, t->r1, false);
        ACC(res_tokens(c), t->r0, t->r1, false);
        ACC(res_tokens(c), t->r0, t->r1, true);
        ACC(res_pos(c), t->r0, t->r1, false);
        ACC(res_pos(c), t->r0, t->r1, true);
        break;
    case MK_TASK_QK_ROPE_KV:
    case MK_TASK_NOP:
    case MK_TASK_OP_COUNT:
        MK_ASSERT(0);
    }
#undef ACC
    return s;
}

static double task_cost(const struct cstate *c, const struct fop *f, const struct mk_task *t)
{
    double bw = c->tgt.mem_gbps / c->tgt.sm_count; /* bytes per ns per SM */
    const struct mk_config *cfg = &c->cfg;
    double B = c->tgt.batch, D = cfg->head_dim, G = cfg->n_heads / cfg->n_kv_heads;
    double rows = t->r1 - t->r0, wbytes = 0, abytes = 0;
    switch (f->op) {
    case MK_TASK_EMBED: wbytes = B * rows * 2; break;
    case MK_TASK_NORM_LINEAR:
    case MK_TASK_LINEAR_RESIDUAL:
    case MK_TASK_LOGITS: wbytes = rows * f->K * 2; abytes = B * f->K * 4; break;
    case MK_TASK_NORM_GATE_UP: wbytes = 2 * rows * f->K * 2; abytes = B * f->K * 4; break;
    case MK_TASK_ATTN_PARTIAL: { /* a full context: every split reads one chunk */
        int32_t W = cfg->sliding_window, n = W > 0 && W < c->tgt.max_ctx ? W : c->tgt.max_ctx;
        double chunk = mk_plan_kv_chunk(n, t->n_split);
        wbytes = B * 2 * (chunk < n ? chunk : n) * D * 2;
        abytes = B * (G + 2) * D * 4;
        break;
    }
    case MK_TASK_ATTN_MERGE: abytes = t->n_split * B * G * (D + 2) * 4; break;
    case MK_TASK_SAMPLE: abytes = t->n_split * 8.0; break;
    case MK_TASK_QK_ROPE_KV:
    case MK_TASK_NOP:
    case MK_TASK_OP_COUNT: break;
    }
    return FIXED_NS + wbytes / bw + abytes / (L2_SPEEDUP * bw);
}

static enum mk_status emit(struct cstate *c, uint32_t fi, struct mk_task t)
{
    const struct fop *f = &c->fops[fi];
    uint32_t old_cap = c->cap_tasks;
    enum mk_status s = cs_grow((void **)&c->tasks, &c->cap_tasks, c->n_tasks, sizeof *c->tasks);
    if (s) return s;
    if (c->cap_tasks != old_cap) { /* the per-task side tables grow with the task table */
        uint32_t cap = c->cap_tasks;
        void *p1 = realloc(c->task_fop, cap * sizeof *c->task_fop);
        if (p1) c->task_fop = p1;
        void *p2 = realloc(c->cost, cap * sizeof *c->cost);
        if (p2) c->cost = p2;
        void *p3 = realloc(c->smem, cap * sizeof *c->smem);
        if (p3) c->smem = p3;
        void *p4 = realloc(c->acc_start, (cap + 1) * sizeof *c->acc_start);
        if (p4) c->acc_start = p4;
        if (!p1 || !p2 || !p3 || !p4) return mk_error(MK_ERR_NOMEM, "compile: out of memory");
    }
    t.op = (uint16_t)f->op;
    t.layer = f->layer < 0 ? 0xffff : (uint16_t)f->layer;
    t.w0 = f->w0;
    t.w1 = f->w1;
    t.w2 = f->w2;
    t.in0 = f->in0;
    t.in1 = f->in1;
    t.out = f->out;
    t.aux = f->aux;
    uint32_t id = c->n_tasks++;
    c->tasks[id] = t;
    c->task_fop[id] = fi;
    c->acc_start[id] = c->n_acc;
    s = accesses(c, f, &c->tasks[id]);
    c->acc_start[id + 1] = c->n_acc;
    c->cost[id] = (float)task_cost(c, f, &t);
    c->smem[id] = tile_task_smem(&c->cfg, &c->tgt, c->act_chunk, c->weight_stages,
                                 c->stage_bytes, &t, f->K);
    if (!s && c->smem[id] > (uint32_t)c->tgt.smem_per_block)
        s = mk_error(MK_ERR_LIMIT, "compile: task %u (%s, layer %d) needs %u B of shared "
                     "memory, target has %d", id, mk_task_op_name(f->op), f->layer,
                     c->smem[id], c->tgt.smem_per_block);
    return s;
}

/* Cut [0, N) into n near-equal row ranges. */
static enum mk_status rows_tiles(struct cstate *c, uint32_t fi, uint32_t n)
{
    const struct fop *f = &c->fops[fi];
    uint32_t N = f->N;
    enum mk_status s = MK_OK;
    for (uint32_t i = 0; i < n && !s; i++) {
        struct mk_task t = {.r0 = (uint32_t)((uint64_t)N * i / n),
                            .r1 = (uint32_t)((uint64_t)N * (i + 1) / n),
                            .k0 = 0, .k1 = f->K, .n_split = 1};
        if (f->op == MK_TASK_LOGITS) {
            t.split = (uint16_t)i;
            t.n_split = (uint16_t)n;
        }
        s = emit(c, fi, t);
    }
    return s;
}

static uint32_t linear_tiles(const struct cstate *c, const struct fop *f)
{
    return min_u32(min_u32((uint32_t)c->tgt.sm_count, f->N), 0xffff);
}

static uint32_t kv_splits(const struct cstate *c)
{
    uint32_t by_sm = (uint32_t)c->tgt.sm_count / (uint32_t)c->cfg.n_kv_heads;
    uint32_t by_ctx = ((uint32_t)c->tgt.max_ctx + MK_PLAN_KV_CHUNK - 1) / MK_PLAN_KV_CHUNK;
    return max_u32(1, min_u32(min_u32(by_sm, by_ctx), 0xffff));
}

static enum mk_status tile_fop(struct cstate *c, uint32_t fi, uint32_t n_logits)
{
    struct fop *f = &c->fops[fi];
    uint32_t S = c->kv_splits;
    enum mk_status s = MK_OK;
    switch (f->op) {
    case MK_TASK_EMBED: {
        uint64_t bytes = (uint64_t)c->tgt.batch * f->N * 2;
        uint32_t n = (uint32_t)(bytes / MIN_TASK_WEIGHT_BYTES);
        n = max_u32(1, min_u32(n, min_u32((uint32_t)c->tgt.sm_count, f->N)));
        return rows_tiles(c, fi, n);
    }
    case MK_TASK_NORM_LINEAR:
    case MK_TASK_LINEAR_RESIDUAL:
    case MK_TASK_NORM_GATE_UP:
    case MK_TASK_LOGITS:
        f->n_split = f->op == MK_TASK_LOGITS ? n_logits : 1;
        return rows_tiles(c, fi, f->op == MK_TASK_LOGITS ? n_logits : linear_tiles(c, f));
    case MK_TASK_ATTN_MERGE:
        f->n_split = S;
        for (uint32_t g = 0; g < f->N && !s; g++)
            s = emit(c, fi, (struct mk_task){.r0 = g, .r1 = g + 1, .n_split = (uint16_t)f->n_split});
        return s;
    case MK_TASK_ATTN_PARTIAL:
        f->n_split = S;
        for (uint32_t g = 0; g < f->N && !s; g++)
            for (uint32_t sp = 0; sp < S && !s; sp++)
                s = emit(c, fi, (struct mk_task){.r0 = g, .r1 = g + 1, .split = (uint16_t)sp,
                                                 .n_split = (uint16_t)S});
        return s;
    case MK_TASK_SAMPLE:
        f->n_split = n_logits;
        for (uint32_t b = 0; b < f->N && !s; b++)
            s = emit(c, fi, (struct mk_task){.r0 = b, .r1 = b + 1, .n_split = (uint16_t)n_logits});
        return s;
    case MK_TASK_QK_ROPE_KV:
    case MK_TASK_NOP:
    case MK_TASK_OP_COUNT:
        break;
    }
    MK_ASSERT(0);
    return MK_ERR_INTERNAL;
}

enum mk_status cs_tile(struct cstate *c)
{
    enum mk_status s = contract(c);
    if (s) return s;
    c->kv_splits = kv_splits(c);
    /* buffers whose outer size depends on the tiling: attention and argmax partials */
    uint32_t n_logits = 1;
    for (uint32_t i = 0; i < c->n_fops; i++)
        if (c->fops[i].op == MK_TASK_LOGITS) n_logits = linear_tiles(c, &c->fops[i]);
    for (uint32_t i = 0; i < c->n_buffers; i++) {
        if (!strcmp(c->buffers[i].name, "attn_part")) c->buffers[i].outer = c->kv_splits;
        if (!strcmp(c->buffers[i].name, "argmax")) c->buffers[i].outer = n_logits;
    }
    for (uint32_t i = 0; i < c->n_fops && !s; i++) {
        c->fops[i].first_task = c->n_tasks;
        s = tile_fop(c, i, n_logits);
        c->fops[i].n_tasks = c->n_tasks - c->fops[i].first_task;
    }
    return s;
}
