/* megakernel — the plan: the contract between the compiler (src/compile), the CPU plan
 * interpreter (src/ref/interp.c) and the GPU megakernel (kernels/).
 *
 * A plan is plain data. For ONE decode step of a batch of B sequences it lists
 *   - tasks:   the work of one CTA (one SM) each, a fixed-size descriptor (struct mk_task);
 *   - events:  counters in global memory; a task waits until each of its events reached a
 *              target and, when done, adds 1 to each event it signals;
 *   - programs: for every SM the ordered list of its tasks (the static schedule);
 *   - buffers: the activation arena (one allocation, offsets fixed here);
 *   - weights: the order and offsets of every weight matrix in the one device weight
 *              allocation (bf16, row-major [rows, cols], Hugging Face [out, in] layout).
 * The kernel runs every SM's program once per decode step, step after step, inside one
 * launch. Counters are never reset: they grow by `per_step` every step, so a wait of a
 * task in step s (0-based) on event e is satisfied when
 *        counter[e] >= (s + 1 + wait.step_offset) * events[e].per_step
 * (step_offset is 0 for same-step dependencies and -1 for "the previous step", e.g. the
 * embedding of step s waits on the sampled token of step s-1; a target <= 0 never waits).
 *
 * Numbers: weights bf16; activations fp32 (row-major [B, N]); KV cache bf16 in the layout
 * of mk_plan_kv_offset(); every reduction in a fixed order (bit-identical reruns).
 * Per-sequence state that changes every step (token id, position, active flag) lives in
 * small device arrays owned by the runtime: tokens[B], pos[B] (the position the step
 * writes: the sequence length before the step), active[B].
 *
 * Changing this header changes the contract of three modules: extend it additively and
 * note the change in the CHANGES list at the bottom.
 */
#ifndef MK_PLAN_H
#define MK_PLAN_H

#include "mk/load.h"

#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MK_NONE 0xffffffffu /* "no weight / buffer / event" in a u32 field */

enum mk_task_op {
    MK_TASK_NOP = 0,
    /* x[b, r0:r1] = embed[tokens[b], r0:r1]          (w0 = embedding, out = x) */
    MK_TASK_EMBED,
    /* out[b, r] = sum_{k in [k0,k1)} W[r, k] * n[b, k] (+ bias[r] when w2 != MK_NONE and
     * split == 0), n = rmsnorm(in0[b, :]) * norm_w  (w0 = norm_w or MK_NONE for no norm,
     * w1 = W, w2 = bias), r in [r0, r1). With n_split > 1 the task writes its partial to
     * out + split * (B * N floats) and the consumer sums the n_split partials in order. */
    MK_TASK_NORM_LINEAR,
    /* out[b, r] = in1[b, r] + sum_k W[r, k] * in0[b, k]    (w1 = W; in1 = residual) */
    MK_TASK_LINEAR_RESIDUAL,
    /* out[b, r] = silu(Wg[r] . n[b]) * (Wu[r] . n[b]),  n = rmsnorm(in0[b]) * norm_w
     * (w0 = norm_w, w1 = Wg, w2 = Wu) */
    MK_TASK_NORM_GATE_UP,
    /* Retired (issue 8): the compiler no longer emits it and mk_plan_check rejects it;
     * ATTN_PARTIAL does its work. The value stays reserved so the numbering is stable. */
    MK_TASK_QK_ROPE_KV,
    /* Decode attention of kv head h = r0 (its G = n_heads / n_kv query heads), KV split
     * `split` of `n_split`, positions [lo, hi) = mk_plan_kv_split(cfg.sliding_window,
     * L = pos[b] + 1, split, n_split) for every sequence b.
     * in0 = the fused QKV output [B, (n_heads + 2 n_kv) D] (q heads first, then k, then
     * v); w0 = q_norm, w1 = k_norm (RMSNorm over head_dim; MK_NONE when the family has
     * none); out = partials [n_split][B][n_heads][D + 2] (acc[D], max, sum).
     * Every split RMS-normalizes (w0) and rotates (rotate-half RoPE at pos[b]) the G query
     * heads of group h itself. Split 0, whose range always ends at position p = pos[b],
     * also normalizes (w1) and rotates k of head h and writes k and v of head h to the
     * KV cache at p (bf16, round to nearest even) before it attends; it reads position p
     * back from the cache like every other. No other split touches position p (nor
     * reads k or v from in0). Per query head: scores q.k / sqrt(D), an online softmax in
     * position order, acc = sum_p e^(s_p - max) v_p. An empty range writes acc 0,
     * max -inf, sum 0. */
    MK_TASK_ATTN_PARTIAL,
    /* Merge the partials of kv head r0 into out[b, heads of r0, :] (in0 = partials):
     * out = sum_s acc_s e^(m_s - M) / sum_s l_s e^(m_s - M), M = max_s m_s, over the
     * non-empty splits s = 0 .. mk_plan_kv_nonempty(...) - 1 in order (the others are
     * not read). */
    MK_TASK_ATTN_MERGE,
    /* Final norm + LM head rows [r0, r1): out[b, r] = W[r] . rmsnorm(in0[b]) * norm_w
     * (w0 = final norm, w1 = lm_head) and the per-task (max, argmax) of each batch row into
     * aux[split][b] (split = this LOGITS task's index among n_split of them; float value,
     * int index; ties -> lowest index). */
    MK_TASK_LOGITS,
    /* Next token of every active sequence b in [r0, r1) from the logits (in0) and the
     * argmax partials (in1, n_split = number of LOGITS tasks): greedy or sampled
     * (mk/sample.h); writes tokens[b], advances pos[b], reports the token to the host ring,
     * applies stop rules. The compiler emits one SAMPLE task per sequence. */
    MK_TASK_SAMPLE,
    MK_TASK_OP_COUNT
};
const char *mk_task_op_name(enum mk_task_op op);

/* One task: 64 bytes, 16-byte aligned, the same bytes on host and device. */
struct mk_task {
    uint16_t op;            /* enum mk_task_op */
    uint16_t layer;         /* decoder layer, or 0xffff for none (embed, logits, sample) */
    uint16_t split;         /* K split (linears) or KV split (attention) index */
    uint16_t n_split;       /* number of splits (1 = unsplit) */
    uint32_t r0, r1;        /* output rows / kv heads / vocab rows: [r0, r1) */
    uint32_t k0, k1;        /* reduction range [k0, k1) for linears (whole K if unsplit) */
    uint32_t w0, w1, w2;    /* weight ids (index into plan->weights) or MK_NONE */
    uint32_t in0, in1;      /* buffer ids (plan->buffers) or MK_NONE */
    uint32_t out, aux;      /* buffer ids or MK_NONE; aux: LOGITS argmax partials */
    uint32_t wait_first;    /* waits are plan->waits[wait_first, wait_first + n_wait) */
    uint32_t signal_first;  /* signals are plan->signals[signal_first, + n_signal) */
    uint16_t n_wait;
    uint16_t n_signal;
} __attribute__((aligned(16)));
#ifndef __cplusplus
_Static_assert(sizeof(struct mk_task) == 64, "mk_task must be 64 bytes");
#endif

struct mk_wait {
    uint32_t event;
    int32_t step_offset;    /* 0: this step; -1: previous step */
};

struct mk_event {
    uint32_t per_step;      /* signals per step (the number of producers) */
    uint32_t pad;
};

enum { MK_NAME_MAX = 96 };

struct mk_buffer {
    char name[MK_NAME_MAX]; /* e.g. "qkv" (buffers are shared by all layers) */
    uint64_t offset;        /* bytes from the arena base, 256-byte aligned */
    uint64_t bytes;
    /* Layout: [outer][B][cols] elements of 4 bytes (fp32; LOGITS aux: {float, int32}).
     * outer = n_split for partials (attention, argmax), else 1. bytes = outer*B*cols*4. */
    uint32_t outer, cols;
};

struct mk_plan_weight {
    char name[MK_NAME_MAX]; /* the safetensors tensor name */
    uint32_t rows, cols;    /* 1-D tensors have rows = 1 */
    uint64_t offset;        /* bytes from the weight allocation base, 256-byte aligned
                               (members of a view: packed right after the previous one) */
    /* > 0: a VIEW, not a tensor: it names no safetensors tensor and has nothing to
     * upload; it is the concatenation (along rows; 1-D: along the elements) of the next
     * view_parts weights, which follow it in the table and lie back to back from its
     * offset. The fused QKV projection uses views: "...self_attn.qkv_proj.weight" over
     * q_proj, k_proj, v_proj (and ".bias" likewise), so that a NORM_LINEAR task's row r
     * of w1 is simply offset + r * cols * 2 bytes. */
    uint32_t view_parts;
    uint32_t pad;
};

/* What the plan is compiled for. */
struct mk_target {
    int sm_count;           /* CTAs = SMs, one per SM */
    int smem_per_block;     /* dynamic shared memory a CTA may use (bytes) */
    int regs_per_sm;
    int threads;            /* threads per CTA */
    int batch;              /* B, 1..16 */
    int max_ctx;            /* KV cache positions per sequence */
    double mem_gbps;        /* cost model: streaming bandwidth (GB/s) for all SMs */
    double sync_ns;         /* cost model: cross-SM dependency latency */
};
/* A target for the H100 (132 SMs, 227 KiB smem per block) with batch and context. */
struct mk_target mk_target_h100(int batch, int max_ctx);

struct mk_plan {
    uint32_t version;       /* MK_PLAN_VERSION */
    struct mk_config cfg;
    struct mk_target target;
    uint32_t n_tasks, n_waits, n_signals, n_events, n_buffers, n_weights;
    struct mk_task *tasks;
    struct mk_wait *waits;
    uint32_t *signals;      /* event ids */
    struct mk_event *events;
    struct mk_buffer *buffers;
    struct mk_plan_weight *weights;
    uint32_t *prog_start;   /* [sm_count + 1]: SM i runs prog_tasks[prog_start[i] .. [i+1]) */
    uint32_t *prog_tasks;   /* task ids, each exactly once */
    float *task_cost_ns;    /* [n_tasks] predicted time of each task */
    uint64_t arena_bytes;   /* activation arena size */
    uint64_t weight_bytes;  /* weight allocation size */
    uint64_t kv_bytes;      /* KV cache size (K and V, all layers, B sequences) */
    double predicted_step_ns;
    /* Shared-memory contract of linear tasks (see src/compile/tile.c for the model):
     * a task keeps at most act_chunk activations of each of its B rows in shared memory
     * (fp32, after the RMSNorm prologue); a reduction of K > act_chunk runs in
     * ceil(K / act_chunk) passes over K (in order, accumulating), streaming the weight
     * rows of each pass through weight_stages stages of stage_bytes. Every task of the
     * plan fits target.smem_per_block with these numbers (mk_plan_task_smem). */
    uint32_t act_chunk;
    uint32_t weight_stages;
    uint32_t stage_bytes;
    uint32_t pad;
};
#define MK_PLAN_VERSION 2u

/* Byte offset of K (which = 0) or V (which = 1) of (layer, seq b, kv head h, position p)
 * in the KV cache: [layer][K|V][b][h][max_ctx][head_dim] bf16. */
static inline uint64_t mk_plan_kv_offset(const struct mk_plan *p, int layer, int which,
                                         int b, int h, int pos)
{
    uint64_t D = (uint64_t)p->cfg.head_dim, T = (uint64_t)p->target.max_ctx;
    uint64_t Hk = (uint64_t)p->cfg.n_kv_heads, B = (uint64_t)p->target.batch;
    return ((((((uint64_t)layer * 2 + (uint64_t)which) * B + (uint64_t)b) * Hk + (uint64_t)h) * T
             + (uint64_t)pos) * D) * 2;
}

/* The KV split partition (ATTN_PARTIAL, ATTN_MERGE). A sequence of length L (positions
 * [0, L), L >= 1) sees positions [f, L) with f = max(0, L - W) under a sliding window of
 * W > 0 positions (window <= 0: f = 0); n = L - f. The splits cut [f, L) into chunks of
 *     c = MK_PLAN_KV_CHUNK * max(1, ceil(ceil(n / S) / MK_PLAN_KV_CHUNK))
 * positions from the newest back: split s of S covers
 *     [max(f, L - (s + 1) c), max(f, L - s c))
 * so split 0 always holds position L - 1 (the one the step appends), a short context
 * uses only splits 0 .. ceil(n / c) - 1 and the others are empty. One function on host
 * and device. */
#define MK_PLAN_KV_CHUNK 16
#ifdef __CUDACC__
#define MK_PLAN_HD __host__ __device__
#else
#define MK_PLAN_HD
#endif
static inline MK_PLAN_HD int32_t mk_plan_kv_chunk(int32_t n, uint32_t n_split)
{
    int64_t per = ((int64_t)n + n_split - 1) / n_split;
    int64_t c = (per + MK_PLAN_KV_CHUNK - 1) / MK_PLAN_KV_CHUNK * MK_PLAN_KV_CHUNK;
    return c < MK_PLAN_KV_CHUNK ? MK_PLAN_KV_CHUNK : (int32_t)c;
}
static inline MK_PLAN_HD void mk_plan_kv_split(int32_t window, int32_t L, uint32_t split,
                                               uint32_t n_split, int32_t *lo, int32_t *hi)
{
    int32_t f = window > 0 && L > window ? L - window : 0, c = mk_plan_kv_chunk(L - f, n_split);
    int64_t b = (int64_t)L - (int64_t)split * c, a = b - c;
    *lo = a > f ? (int32_t)a : f;
    *hi = b > f ? (int32_t)b : f;
}
/* Number of non-empty splits: ceil(n / c) (>= 1 for L >= 1). */
static inline MK_PLAN_HD uint32_t mk_plan_kv_nonempty(int32_t window, int32_t L, uint32_t n_split)
{
    int32_t f = window > 0 && L > window ? L - window : 0, n = L - f;
    int32_t c = mk_plan_kv_chunk(n, n_split);
    return (uint32_t)((n + c - 1) / c);
}

/* Compile a plan from a config (no weights needed). On error *out is untouched. */
enum mk_status mk_plan_compile(const struct mk_config *cfg, const struct mk_target *target,
                               struct mk_plan **out);
void mk_plan_free(struct mk_plan *p);

/* Reject a plan whose tables are inconsistent or whose programs + events can deadlock
 * (a wait that no earlier-scheduled producer can satisfy). Message names the task. */
enum mk_status mk_plan_check(const struct mk_plan *p);

/* Versioned, checksummed binary save / load. */
enum mk_status mk_plan_save(const struct mk_plan *p, const char *path);
enum mk_status mk_plan_load(const char *path, struct mk_plan **out);
/* The same from memory (`what` names the source in messages): magic, version, sizes,
 * lengths, checksum, then mk_plan_check. */
enum mk_status mk_plan_parse(const void *data, size_t len, const char *what,
                             struct mk_plan **out);

enum mk_status mk_plan_dump_json(const struct mk_plan *p, FILE *f);
enum mk_status mk_plan_dump_dot(const struct mk_plan *p, FILE *f);

/* (Re)compute the per-SM programs and predicted_step_ns of p from task times: task_ns
 * [n_tasks] (e.g. measured by the GPU profile: profile-guided plans) replaces
 * task_cost_ns, or NULL keeps the cost model's. Tasks, events and buffers are unchanged;
 * the result passes mk_plan_check. MK_ERR_ARG for a negative or non-finite time. */
enum mk_status mk_plan_schedule(struct mk_plan *p, const float *task_ns);

/* Bytes of shared memory the tile model charges task `t` (activations, weight stages,
 * scratch); never above target.smem_per_block in a compiled plan. */
uint32_t mk_plan_task_smem(const struct mk_plan *p, uint32_t t);

/* Copy every weight of the plan (views skipped) from the checkpoint into `dst`
 * (plan->weight_bytes bytes), converted to bf16 at its offset. Fails with MK_ERR_FORMAT
 * naming the tensor when one is missing or has another shape. */
enum mk_status mk_plan_pack_weights(const struct mk_plan *p, const struct mk_safetensors *st,
                                    void *dst);

/* CHANGES (newest last):
 *   v1  initial contract.
 *   v1  (issue 6, additive) mk_buffer.outer/cols (layout [outer][B][cols]);
 *       mk_plan_weight.view_parts (+pad): the fused QKV weight/bias are views over the
 *       q/k/v tensors packed back to back; mk_plan.act_chunk/weight_stages/stage_bytes
 *       (+pad): the shared-memory contract of linears (K processed in passes of at most
 *       act_chunk); SAMPLE covers sequences [r0, r1) (one task per sequence);
 *       mk_plan_task_smem, mk_plan_pack_weights.
 *   v1  (issue 6, additive) mk_plan_schedule: reschedule a plan with measured task times;
 *       mk_plan_parse: load from memory.
 *   v2  (issue 8) QK_ROPE_KV retired (one dependency level less per layer): ATTN_PARTIAL
 *       reads q, k, v from the fused QKV buffer, applies q_norm (w0) / k_norm (w1) and
 *       RoPE itself, and split 0 (which always holds pos[b]) writes the new k, v to the
 *       KV cache;
 *       the "q" buffer is gone. KV splits are fixed-size chunks (mk_plan_kv_split,
 *       MK_PLAN_KV_CHUNK, newest first) instead of equal shares of L; ATTN_MERGE reads pos and only
 *       the non-empty splits (mk_plan_kv_nonempty). Plan files of v1 are refused.
 */

#ifdef __cplusplus
}
#endif
#endif /* MK_PLAN_H */
