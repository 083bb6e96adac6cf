/* The compiler driver: config + target -> graph -> fused ops -> tasks -> dependencies ->
 * memory plan -> struct mk_plan -> schedule (mk_plan_schedule, sched.c). */
#include "compile_int.h"

#include <stdlib.h>
#include <string.h>

enum { ALIGN = 256 };

static const char *const op_names[MK_TASK_OP_COUNT] = {
    "NOP", "EMBED", "NORM_LINEAR", "LINEAR_RESIDUAL", "NORM_GATE_UP", "QK_ROPE_KV",
    "ATTN_PARTIAL", "ATTN_MERGE", "LOGITS", "SAMPLE",
};

const char *mk_task_op_name(enum mk_task_op op)
{
    return (unsigned)op < MK_TASK_OP_COUNT ? op_names[op] : "?";
}

/* H100 SXM: 132 SMs, 227 KiB opt-in dynamic shared memory per block, 64 Ki registers per
 * SM; ~3.0 TB/s of streaming bandwidth reached by a decode kernel (3.35 peak). sync_ns
 * is calibrated on the first megakernel measurements (bench/RESULTS.md, issue 7):
 * (measured - floor) / dependency levels was ~5 us per level on Qwen3-0.6B, 1B and 8B;
 * with the 0.5 us fixed task cost of tile.c that leaves ~4 us from a producer's
 * release to the consumer's first useful load (poll, acquire, activation reload, first
 * weight bytes). mk_plan_schedule with measured task times refines it per task. */
struct mk_target mk_target_h100(int batch, int max_ctx)
{
    return (struct mk_target){.sm_count = 132, .smem_per_block = 227 * 1024,
                              .regs_per_sm = 65536, .threads = 512, .batch = batch,
                              .max_ctx = max_ctx, .mem_gbps = 3000.0, .sync_ns = 4000.0};
}

static enum mk_status check_inputs(const struct mk_config *cfg, const struct mk_target *t)
{
    if (t->sm_count < 1 || t->sm_count > 4096)
        return mk_error(MK_ERR_ARG, "compile: target: sm_count: expected 1..4096, got %d", t->sm_count);
    if (t->batch < 1 || t->batch > 16)
        return mk_error(MK_ERR_ARG, "compile: target: batch: expected 1..16, got %d", t->batch);
    if (t->max_ctx < 1 || t->max_ctx > (1 << 20))
        return mk_error(MK_ERR_ARG, "compile: target: max_ctx: expected 1..1048576, got %d", t->max_ctx);
    if (t->smem_per_block < 4096 || t->smem_per_block > (1 << 24))
        return mk_error(MK_ERR_ARG, "compile: target: smem_per_block: expected 4096..16 MiB, got %d",
                        t->smem_per_block);
    if (!mk_target_costs_ok(t))
        return mk_error(MK_ERR_ARG, "compile: target: finite mem_gbps > 0 and sync_ns >= 0 expected");
    if (cfg->n_layers < 1 || cfg->n_heads < 1 || cfg->n_kv_heads < 1 || cfg->vocab_size < 1 ||
        cfg->n_heads % cfg->n_kv_heads)
        return mk_error(MK_ERR_ARG, "compile: config: layers, heads, kv heads (dividing heads) "
                        "and vocab must be positive");
    if (cfg->hidden_size % 8 || cfg->intermediate_size % 8 || cfg->head_dim % 8 ||
        cfg->hidden_size < 8 || cfg->intermediate_size < 8 || cfg->head_dim < 8)
        return mk_error(MK_ERR_UNSUPPORTED, "compile: config: hidden_size, intermediate_size "
                        "and head_dim must be positive multiples of 8 (16-byte weight rows), "
                        "got %d, %d, %d", cfg->hidden_size, cfg->intermediate_size, cfg->head_dim);
    if ((uint64_t)cfg->n_heads * cfg->head_dim > (1u << 20) || cfg->hidden_size > (1 << 20) ||
        cfg->intermediate_size > (1 << 22) || cfg->vocab_size > (1 << 24) || cfg->n_layers > 1024)
        return mk_error(MK_ERR_LIMIT, "compile: config: a dimension exceeds the compiler's limits");
    return MK_OK;
}

static uint64_t align_up(uint64_t x) { return (x + ALIGN - 1) / ALIGN * ALIGN; }

static void memory_plan(struct cstate *c, struct mk_plan *p)
{
    uint64_t at = 0, B = (uint64_t)c->tgt.batch;
    for (uint32_t i = 0; i < c->n_buffers; i++) {
        struct mk_buffer *b = &c->buffers[i];
        b->offset = at;
        b->bytes = (uint64_t)b->outer * B * b->cols * 4;
        at = align_up(at + b->bytes);
    }
    p->arena_bytes = at;
    at = 0;
    for (uint32_t i = 0; i < c->n_weights;) {
        struct mk_plan_weight *w = &c->weights[i];
        w->offset = at;
        if (w->view_parts) { /* parts back to back from the view's offset */
            uint64_t in = at;
            for (uint32_t j = 1; j <= w->view_parts; j++) {
                c->weights[i + j].offset = in;
                in += (uint64_t)c->weights[i + j].rows * c->weights[i + j].cols * 2;
            }
            at = align_up(in);
            i += 1 + w->view_parts;
        } else {
            at = align_up(at + (uint64_t)w->rows * w->cols * 2);
            i++;
        }
    }
    p->weight_bytes = at;
    const struct mk_config *cfg = &c->cfg;
    p->kv_bytes = (uint64_t)cfg->n_layers * 2 * B * (uint64_t)cfg->n_kv_heads *
                  (uint64_t)c->tgt.max_ctx * (uint64_t)cfg->head_dim * 2;
}

static void cstate_free(struct cstate *c)
{
    free(c->fops); free(c->weights); free(c->buffers); free(c->tasks); free(c->task_fop);
    free(c->cost); free(c->smem); free(c->acc); free(c->acc_start); free(c->events);
    free(c->waits); free(c->signals); free(c->wait_first); free(c->wait_count);
    free(c->sig_first); free(c->sig_count);
}

/* Move the compiler's tables into a plan (the task table gets its wait/signal ranges). */
static enum mk_status finish(struct cstate *c, struct mk_plan *p)
{
    p->version = MK_PLAN_VERSION;
    p->cfg = c->cfg;
    p->target = c->tgt;
    p->n_tasks = c->n_tasks;
    p->n_waits = c->n_waits;
    p->n_signals = c->n_signals;
    p->n_events = c->n_events;
    p->n_buffers = c->n_buffers;
    p->n_weights = c->n_weights;
    for (uint32_t t = 0; t < c->n_tasks; t++) {
        struct mk_task *k = &c->tasks[t];
        if (c->wait_count[t] > 0xffff || c->sig_count[t] > 0xffff)
            return mk_error(MK_ERR_LIMIT, "compile: task %u has too many waits or signals", t);
        k->wait_first = c->wait_first[t];
        k->n_wait = (uint16_t)c->wait_count[t];
        k->signal_first = c->sig_first[t];
        k->n_signal = (uint16_t)c->sig_count[t];
    }
    p->tasks = c->tasks; c->tasks = NULL;
    p->waits = c->waits; c->waits = NULL;
    p->signals = c->signals; c->signals = NULL;
    p->events = c->events; c->events = NULL;
    p->buffers = c->buffers; c->buffers = NULL;
    p->weights = c->weights; c->weights = NULL;
    p->task_cost_ns = c->cost; c->cost = NULL;
    p->act_chunk = c->act_chunk;
    p->weight_stages = c->weight_stages;
    p->stage_bytes = c->stage_bytes;
    return MK_OK;
}

enum mk_status mk_plan_compile(const struct mk_config *cfg, const struct mk_target *target,
                               struct mk_plan **out)
{
    enum mk_status s = check_inputs(cfg, target);
    if (s) return s;
    struct mk_graph *g;
    s = mk_graph_build(cfg, &g);
    if (s) return s;
    struct cstate c = {.cfg = *cfg, .tgt = *target};
    struct mk_plan *p = calloc(1, sizeof *p);
    if (!p) s = mk_error(MK_ERR_NOMEM, "compile: out of memory");
    if (!s) s = cs_fuse(&c, g);
    mk_graph_free(g);
    if (!s) s = cs_tile(&c);
    if (!s) s = cs_deps(&c);
    if (!s) memory_plan(&c, p);
    if (!s) s = finish(&c, p);
    cstate_free(&c);
    if (!s) s = mk_plan_schedule(p, NULL);
    if (s) {
        mk_plan_free(p);
        return s;
    }
    *out = p;
    return MK_OK;
}

void mk_plan_free(struct mk_plan *p)
{
    if (!p) return;
    free(p->tasks); free(p->waits); free(p->signals); free(p->events); free(p->buffers);
    free(p->weights); free(p->prog_start); free(p->prog_tasks); free(p->task_cost_ns);
    free(p);
}

uint32_t mk_plan_task_smem(const struct mk_plan *p, uint32_t t)
{
    MK_ASSERT(t < p->n_tasks);
    const struct mk_task *k = &p->tasks[t];
    uint32_t K = k->k1 - k->k0;
    return tile_task_smem(&p->cfg, &p->target, p->act_chunk, p->weight_stages,
                          p->stage_bytes, k, K);
}

enum mk_status mk_plan_pack_weights(const struct mk_plan *p, const struct mk_safetensors *st,
                                    void *dst)
{
    for (uint32_t i = 0; i < p->n_weights; i++) {
        const struct mk_plan_weight *w = &p->weights[i];
        if (w->view_parts) continue;
        const struct mk_tensor *t = mk_safetensors_find(st, w->name);
        if (!t) return mk_error(MK_ERR_FORMAT, "weights: tensor %s: missing", w->name);
        bool ok = w->rows == 1 ? (t->ndim == 1 && t->shape[0] == w->cols)
                               : (t->ndim == 2 && t->shape[0] == w->rows && t->shape[1] == w->cols);
        if (!ok)
            return mk_error(MK_ERR_FORMAT, "weights: tensor %s: expected shape [%u, %u]",
                            w->name, w->rows, w->cols);
        mk_tensor_to_bf16(t, (uint16_t *)((char *)dst + w->offset));
    }
    return MK_OK;
}
