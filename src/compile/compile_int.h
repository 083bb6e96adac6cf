/* Internal state of the plan compiler, shared by its passes:
 *   fuse.c   graph -> fused ops (struct fop), plan weights, buffers
 *   tile.c   shared-memory / cost model; fused ops -> tasks with their access ranges
 *   deps.c   access ranges -> exact dependencies -> events, waits, signals
 *   sched.c  mk_plan_schedule: list scheduling + local improvement -> per-SM programs
 *   plan.c   the driver: memory plan and the finished struct mk_plan
 */
#ifndef MK_COMPILE_INT_H
#define MK_COMPILE_INT_H

#include "mk/graph.h"
#include "mk/plan.h"

#include <math.h>
#include <stdbool.h>

/* A fused op: one task kind over one layer, before tiling. */
struct fop {
    enum mk_task_op op;
    int layer;              /* -1: none */
    uint32_t N, K;          /* output columns (rows of W) and reduction length */
    uint32_t w0, w1, w2;    /* plan weight ids or MK_NONE */
    uint32_t in0, in1, out, aux; /* buffer ids or MK_NONE */
    uint32_t n_split;       /* KV splits (ATTN_*), LOGITS tasks (LOGITS, SAMPLE); set by tile */
    uint32_t first_task, n_tasks; /* set by tile */
};

/* One access of a task for the dependency analysis: elements [lo, hi) of resource res
 * (for every batch row). Resources: buffers 0..n_buffers-1 with coordinate
 * outer_index * cols + col; then the KV cache of each layer (coordinate: kv head); then
 * the runtime arrays tokens, pos, active (coordinate: sequence).
 * The tiles of one fused op run concurrently: deps.c takes their needs from the state
 * before the op (a tile never waits on a tile of its own op), then records their reads,
 * then their writes. So ATTN_PARTIAL split 0, which appends position pos[b] to the
 * cache, does not wait for the other splits of its head, which read only older
 * positions; the next step's splits wait for split 0. */
struct access {
    uint32_t res, lo, hi;
    bool write;
};

struct cstate {
    struct mk_config cfg;
    struct mk_target tgt;
    /* growable tables */
    struct fop *fops;
    uint32_t n_fops, cap_fops;
    struct mk_plan_weight *weights;
    uint32_t n_weights, cap_weights;
    struct mk_buffer *buffers;
    uint32_t n_buffers, cap_buffers;
    struct mk_task *tasks;
    uint32_t n_tasks, cap_tasks;
    uint32_t *task_fop;     /* [n_tasks] */
    float *cost;            /* [n_tasks] predicted ns */
    uint32_t *smem;         /* [n_tasks] shared-memory bytes charged */
    struct access *acc;     /* accesses of task t: acc[acc_start[t] .. acc_start[t+1]) */
    uint32_t n_acc, cap_acc;
    uint32_t *acc_start;    /* [n_tasks + 1] */
    /* the smem contract (plan fields of the same names) */
    uint32_t act_chunk, weight_stages, stage_bytes, scratch_bytes;
    uint32_t kv_splits;     /* KV splits per kv head (tile.c) */
    /* dependencies (deps.c): events, and per task its waits / signals */
    struct mk_event *events;
    uint32_t n_events;
    struct mk_wait *waits;
    uint32_t n_waits;
    uint32_t *signals;
    uint32_t n_signals;
    uint32_t *wait_first, *wait_count, *sig_first, *sig_count; /* [n_tasks] */
};

/* Resource ids beyond the buffers. */
static inline uint32_t res_kv(const struct cstate *c, int layer) { return c->n_buffers + (uint32_t)layer; }
static inline uint32_t res_tokens(const struct cstate *c) { return c->n_buffers + (uint32_t)c->cfg.n_layers; }
static inline uint32_t res_pos(const struct cstate *c) { return res_tokens(c) + 1; }
static inline uint32_t res_active(const struct cstate *c) { return res_tokens(c) + 2; }
static inline uint32_t res_count(const struct cstate *c) { return res_tokens(c) + 3; }

/* Grow a table to hold n + 1 elements of size sz; MK_ERR_NOMEM. */
enum mk_status cs_grow(void **arr, uint32_t *cap, uint32_t n, size_t sz);

enum mk_status cs_fuse(struct cstate *c, const struct mk_graph *g);
enum mk_status cs_tile(struct cstate *c);
enum mk_status cs_deps(struct cstate *c);

/* Shared-memory bytes of a task under the contract (tile.c); used by the compiler and
 * by mk_plan_task_smem. */
uint32_t tile_task_smem(const struct mk_config *cfg, const struct mk_target *tgt,
                        uint32_t act_chunk, uint32_t weight_stages, uint32_t stage_bytes,
                        const struct mk_task *t, uint32_t K);

/* The cost model's target numbers are usable: sync_ns finite >= 0 (the scheduler's rank
 * order is topological only then), mem_gbps finite > 0. */
static inline bool mk_target_costs_ok(const struct mk_target *t)
{
    return t->sync_ns >= 0 && isfinite(t->sync_ns) && t->mem_gbps > 0 && isfinite(t->mem_gbps);
}

#endif
