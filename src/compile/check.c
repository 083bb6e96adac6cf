/* mk_plan_check: tables consistent, every task within its buffers and weights and the
 * shared-memory limit, and no deadlock: each SM runs its program in order, step after
 * step (CHECK_STEPS of them), a task runs when its waits are satisfied; if the
 * simulation gets stuck, the stuck tasks are named. The system is monotone (running a
 * task never blocks another), so greedy simulation finds a deadlock iff one exists. */
#include "compile_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { CHECK_STEPS = 3, MAX_STUCK_LISTED = 4 };

#define BAD(...) mk_error(MK_ERR_FORMAT, "plan: " __VA_ARGS__)

static bool id_ok(uint32_t id, uint32_t n) { return id == MK_NONE || id < n; }

static enum mk_status check_tables(const struct mk_plan *p)
{
    if (p->version != MK_PLAN_VERSION) return BAD("version %u, expected %u", p->version, MK_PLAN_VERSION);
    if (p->target.sm_count < 1 || p->target.batch < 1 || p->target.batch > 16 || p->target.max_ctx < 1)
        return BAD("target: bad sm_count/batch/max_ctx");
    if (!mk_target_costs_ok(&p->target))
        return BAD("target: sync_ns %g (finite >= 0 expected), mem_gbps %g (finite > 0 expected)",
                   (double)p->target.sync_ns, (double)p->target.mem_gbps);
    if (!p->n_tasks) return BAD("no tasks");
    uint64_t next_wait = 0, next_signal = 0; /* tables in task order, without gaps */
    for (uint32_t t = 0; t < p->n_tasks; t++) {
        const struct mk_task *k = &p->tasks[t];
        if (k->wait_first != next_wait || k->signal_first != next_signal)
            return BAD("task %u: waits/signals not right after the previous task's", t);
        next_wait += k->n_wait;
        next_signal += k->n_signal;
        if (k->op == MK_TASK_NOP || k->op == MK_TASK_QK_ROPE_KV || k->op >= MK_TASK_OP_COUNT)
            return BAD("task %u: bad op %u", t, k->op);
        if ((uint64_t)k->wait_first + k->n_wait > p->n_waits || (uint64_t)k->signal_first + k->n_signal > p->n_signals)
            return BAD("task %u: wait/signal range outside the tables", t);
        if (!id_ok(k->w0, p->n_weights) || !id_ok(k->w1, p->n_weights) || !id_ok(k->w2, p->n_weights))
            return BAD("task %u: weight id out of range", t);
        if (!id_ok(k->in0, p->n_buffers) || !id_ok(k->in1, p->n_buffers) ||
            !id_ok(k->out, p->n_buffers) || !id_ok(k->aux, p->n_buffers))
            return BAD("task %u: buffer id out of range", t);
        if (k->r0 >= k->r1 || k->k0 > k->k1 || k->n_split < 1 || k->split >= k->n_split)
            return BAD("task %u: empty range or split %u of %u", t, k->split, k->n_split);
        if (!(p->task_cost_ns[t] >= 0) || !isfinite(p->task_cost_ns[t]))
            return BAD("task %u: predicted time %g", t, (double)p->task_cost_ns[t]);
    }
    if (next_wait != p->n_waits || next_signal != p->n_signals)
        return BAD("wait/signal tables longer than the tasks use");
    for (uint32_t i = 0; i < p->n_waits; i++)
        if (p->waits[i].event >= p->n_events || (p->waits[i].step_offset != 0 && p->waits[i].step_offset != -1))
            return BAD("wait %u: bad event or step_offset", i);
    uint32_t *cnt = calloc(p->n_events + 1, sizeof *cnt);
    if (!cnt) return mk_error(MK_ERR_NOMEM, "plan check: out of memory");
    enum mk_status s = MK_OK;
    for (uint32_t i = 0; i < p->n_signals && !s; i++)
        if (p->signals[i] >= p->n_events) s = BAD("signal %u: bad event", i);
        else cnt[p->signals[i]]++;
    for (uint32_t e = 0; e < p->n_events && !s; e++)
        if (!p->events[e].per_step || cnt[e] != p->events[e].per_step)
            s = BAD("event %u: per_step %u but %u signals", e, p->events[e].per_step, cnt[e]);
    free(cnt);
    if (s) return s;
    int S = p->target.sm_count;
    if (p->prog_start[0] != 0 || p->prog_start[S] != p->n_tasks) return BAD("programs do not cover the tasks");
    for (int i = 0; i < S; i++)
        if (p->prog_start[i] > p->prog_start[i + 1]) return BAD("program %d: bad range", i);
    uint8_t *seen = calloc(p->n_tasks, 1);
    if (!seen) return mk_error(MK_ERR_NOMEM, "plan check: out of memory");
    for (int i = 0; i < S && !s; i++) {
        for (uint32_t j = p->prog_start[i]; j < p->prog_start[i + 1] && !s; j++) {
            uint32_t t = p->prog_tasks[j];
            if (t >= p->n_tasks || seen[t]++) s = BAD("program %d: task %u missing or repeated", i, t);
        }
    }
    free(seen);
    return s;
}

/* a * b * c * d, or UINT64_MAX where it does not fit in 64 bits (a loaded plan's sizes
 * are untrusted: a wrapped product could pass a bounds check). */
static uint64_t mul4(uint64_t a, uint64_t b, uint64_t c, uint64_t d)
{
    uint64_t r;
    if (__builtin_mul_overflow(a, b, &r) || __builtin_mul_overflow(r, c, &r) ||
        __builtin_mul_overflow(r, d, &r))
        return UINT64_MAX;
    return r;
}

/* [offset, offset + bytes) inside [0, cap), without the sum wrapping past 2^64. */
static bool inside(uint64_t offset, uint64_t bytes, uint64_t cap)
{
    return bytes <= cap && offset <= cap - bytes;
}

static enum mk_status check_memory(const struct mk_plan *p)
{
    uint64_t B = (uint64_t)p->target.batch;
    for (uint32_t i = 0; i < p->n_buffers; i++) {
        const struct mk_buffer *b = &p->buffers[i];
        if (b->offset % 256 || b->bytes != mul4(b->outer, B, b->cols, 4) ||
            !inside(b->offset, b->bytes, p->arena_bytes) || !b->cols || !b->outer)
            return BAD("buffer %u (%s): layout or offset outside the arena", i, b->name);
    }
    for (uint32_t i = 0; i < p->n_weights; i++) {
        const struct mk_plan_weight *w = &p->weights[i];
        uint64_t bytes = mul4(w->rows, w->cols, 2, 1);
        if (w->view_parts) {
            if ((uint64_t)i + w->view_parts >= p->n_weights) /* 64-bit: no wrap past 2^32 */
                return BAD("weight %u (%s): view parts missing", i, w->name);
            bytes = 0;
            for (uint32_t j = 1; j <= w->view_parts; j++) {
                const struct mk_plan_weight *q = &p->weights[i + j];
                if (q->offset != w->offset + bytes || q->view_parts)
                    return BAD("weight %u (%s): view parts not back to back", i, w->name);
                if (__builtin_add_overflow(bytes, mul4(q->rows, q->cols, 2, 1), &bytes))
                    return BAD("weight %u (%s): view size", i, w->name);
            }
            if (bytes != mul4(w->rows, w->cols, 2, 1)) return BAD("weight %u (%s): view size", i, w->name);
        } else if (w->offset % 16) {
            return BAD("weight %u (%s): offset not 16-byte aligned", i, w->name);
        }
        if (!inside(w->offset, bytes, p->weight_bytes)) return BAD("weight %u (%s): outside the allocation", i, w->name);
    }
    return MK_OK;
}

/* Op-specific ranges: every row, column and weight element a task body may touch lies
 * inside its buffers and weights (a loaded plan is untrusted input to the GPU). */
static const struct mk_plan_weight *wt(const struct mk_plan *p, uint32_t id)
{
    return id == MK_NONE ? NULL : &p->weights[id];
}
static const struct mk_buffer *bf(const struct mk_plan *p, uint32_t id)
{
    return id == MK_NONE ? NULL : &p->buffers[id];
}

static bool linear_ok(const struct mk_plan *p, const struct mk_task *k)
{
    const struct mk_plan_weight *w0 = wt(p, k->w0), *w1 = wt(p, k->w1), *w2 = wt(p, k->w2);
    const struct mk_buffer *in0 = bf(p, k->in0), *in1 = bf(p, k->in1), *out = bf(p, k->out);
    if (!w1 || !in0 || !out || w1->view_parts > 3) return false;
    uint32_t K = w1->cols;
    uint32_t slice = k->op == MK_TASK_NORM_LINEAR ? k->split : 0; /* LOGITS: argmax index */
    if (k->k1 > K || in0->cols != K || k->r1 > w1->rows || k->r1 > out->cols || slice >= out->outer)
        return false;
    if (w0 && (w0->rows != 1 || w0->cols != K)) return false;
    switch ((enum mk_task_op)k->op) {
    case MK_TASK_NORM_LINEAR: return !w2 || (w2->rows == 1 && w2->cols >= k->r1);
    case MK_TASK_LINEAR_RESIDUAL: return !w0 && in1 && in1->cols >= k->r1 && k->n_split == 1;
    case MK_TASK_NORM_GATE_UP: return w2 && w2->cols == K && w2->rows >= k->r1 && k->n_split == 1;
    case MK_TASK_LOGITS: {
        const struct mk_buffer *aux = bf(p, k->aux);
        return aux && aux->cols == 2 && aux->outer == k->n_split && out->outer == 1;
    }
    default: return false;
    }
}

static bool attention_ok(const struct mk_plan *p, const struct mk_task *k)
{
    const struct mk_config *c = &p->cfg;
    const struct mk_buffer *in0 = bf(p, k->in0), *out = bf(p, k->out);
    uint32_t D = (uint32_t)c->head_dim, nh = (uint32_t)c->n_heads, nkv = (uint32_t)c->n_kv_heads;
    if (!in0 || !out || k->r1 > nkv || k->layer >= c->n_layers) return false;
    switch ((enum mk_task_op)k->op) {
    case MK_TASK_ATTN_PARTIAL: {
        const struct mk_plan_weight *qn = wt(p, k->w0), *kn = wt(p, k->w1);
        return in0->cols == (nh + 2 * nkv) * D && in0->outer == 1 && out->cols == nh * (D + 2) &&
               out->outer == k->n_split && k->split < k->n_split && k->r1 == k->r0 + 1 &&
               (!qn || (qn->rows == 1 && qn->cols == D)) && (!kn || (kn->rows == 1 && kn->cols == D));
    }
    case MK_TASK_ATTN_MERGE:
        return in0->cols == nh * (D + 2) && in0->outer == k->n_split && out->cols == nh * D &&
               k->n_split >= 1 && k->r1 == k->r0 + 1;
    default: return false;
    }
}

static enum mk_status check_task_ranges(const struct mk_plan *p, uint32_t t)
{
    const struct mk_task *k = &p->tasks[t];
    const struct mk_buffer *out = bf(p, k->out), *in0 = bf(p, k->in0), *in1 = bf(p, k->in1);
    const struct mk_plan_weight *w0 = wt(p, k->w0);
    bool ok = false;
    switch ((enum mk_task_op)k->op) {
    case MK_TASK_EMBED:
        ok = out && w0 && w0->rows == (uint32_t)p->cfg.vocab_size && w0->cols == out->cols &&
             k->r1 <= out->cols;
        break;
    case MK_TASK_NORM_LINEAR:
    case MK_TASK_LINEAR_RESIDUAL:
    case MK_TASK_NORM_GATE_UP:
    case MK_TASK_LOGITS:
        ok = linear_ok(p, k);
        break;
    case MK_TASK_ATTN_PARTIAL:
    case MK_TASK_ATTN_MERGE:
        ok = attention_ok(p, k);
        break;
    case MK_TASK_SAMPLE:
        ok = k->r1 <= (uint32_t)p->target.batch && in0 && in1 && in1->outer == k->n_split &&
             in1->cols == 2 && in0->cols == (uint32_t)p->cfg.vocab_size;
        break;
    case MK_TASK_QK_ROPE_KV: /* retired in plan v2 */
    case MK_TASK_NOP:
    case MK_TASK_OP_COUNT:
        break;
    }
    return ok ? MK_OK : BAD("task %u (%s, layer %d): a range outside its buffers or weights", t,
                            mk_task_op_name(k->op), (int16_t)k->layer);
}

/* The config and sizes a loaded plan's task bodies index with. */
static enum mk_status check_config(const struct mk_plan *p)
{
    const struct mk_config *c = &p->cfg;
    if (c->n_layers < 1 || c->n_layers > 1024 || c->n_heads < 1 || c->n_kv_heads < 1 ||
        c->n_heads % c->n_kv_heads || c->head_dim < 2 || c->head_dim % 2 || c->head_dim > 1024 ||
        c->vocab_size < 1 || c->hidden_size < 1 || p->target.max_ctx > (1 << 20))
        return BAD("config: bad layer, head or vocabulary counts");
    uint64_t kv = (uint64_t)c->n_layers * 2 * (uint64_t)p->target.batch * (uint64_t)c->n_kv_heads *
                  (uint64_t)p->target.max_ctx * (uint64_t)c->head_dim * 2;
    if (kv != p->kv_bytes) return BAD("kv_bytes %llu, expected %llu", (unsigned long long)p->kv_bytes,
                                      (unsigned long long)kv);
    return MK_OK;
}

static enum mk_status check_deadlock(const struct mk_plan *p)
{
    int S = p->target.sm_count;
    uint64_t *counter = calloc(p->n_events + 1, sizeof *counter);
    uint64_t *pc = calloc((size_t)S, sizeof *pc); /* position over CHECK_STEPS programs */
    if (!counter || !pc) {
        free(counter);
        free(pc);
        return mk_error(MK_ERR_NOMEM, "plan check: out of memory");
    }
    bool progress = true;
    while (progress) {
        progress = false;
        for (int i = 0; i < S; i++) {
            uint64_t len = p->prog_start[i + 1] - p->prog_start[i];
            while (pc[i] < len * CHECK_STEPS) {
                uint64_t step = pc[i] / len;
                const struct mk_task *k = &p->tasks[p->prog_tasks[p->prog_start[i] + pc[i] % len]];
                bool ok = true;
                for (uint32_t w = 0; w < k->n_wait && ok; w++) {
                    const struct mk_wait *wt = &p->waits[k->wait_first + w];
                    int64_t target = ((int64_t)step + 1 + wt->step_offset) * p->events[wt->event].per_step;
                    ok = (int64_t)counter[wt->event] >= target;
                }
                if (!ok) break;
                for (uint32_t j = 0; j < k->n_signal; j++) counter[p->signals[k->signal_first + j]]++;
                pc[i]++;
                progress = true;
            }
        }
    }
    char msg[512];
    int at = 0, listed = 0;
    for (int i = 0; i < S && listed < MAX_STUCK_LISTED; i++) {
        uint64_t len = p->prog_start[i + 1] - p->prog_start[i];
        if (pc[i] >= len * CHECK_STEPS) continue;
        uint64_t step = pc[i] / len;
        uint32_t t = p->prog_tasks[p->prog_start[i] + pc[i] % len];
        const struct mk_task *k = &p->tasks[t];
        for (uint32_t w = 0; w < k->n_wait; w++) {
            const struct mk_wait *wt = &p->waits[k->wait_first + w];
            int64_t target = ((int64_t)step + 1 + wt->step_offset) * p->events[wt->event].per_step;
            if ((int64_t)counter[wt->event] < target) {
                at += snprintf(msg + at, sizeof msg - (size_t)at,
                               "%sSM %d task %u (%s) step %llu waits on event %u: %llu of %lld",
                               listed ? "; " : "", i, t, mk_task_op_name(k->op),
                               (unsigned long long)step, wt->event,
                               (unsigned long long)counter[wt->event], (long long)target);
                if (at >= (int)sizeof msg) at = (int)sizeof msg - 1;
                break;
            }
        }
        listed++;
    }
    free(counter);
    free(pc);
    return listed ? mk_error(MK_ERR_FORMAT, "plan: deadlock: %s", msg) : MK_OK;
}

enum mk_status mk_plan_check(const struct mk_plan *p)
{
    enum mk_status s = check_tables(p);
    if (!s) s = check_config(p);
    if (!s) s = check_memory(p);
    for (uint32_t t = 0; t < p->n_tasks && !s; t++) {
        s = check_task_ranges(p, t);
        if (!s && mk_plan_task_smem(p, t) > (uint32_t)p->target.smem_per_block)
            s = BAD("task %u (%s): %u B of shared memory > %d", t, mk_task_op_name(p->tasks[t].op),
                    mk_plan_task_smem(p, t), p->target.smem_per_block);
    }
    return s ? s : check_deadlock(p);
}
