/* The launch order of the per-op baseline (mk/per_op.h), host code of every build, and
 * the baseline's entry points of a build without nvcc. */
#include "mk/per_op.h"

#include <stdlib.h>
#include <string.h>

struct order_key {
    uint32_t level, op, layer, task;
};

static int cmp_key(const void *x, const void *y)
{
    const struct order_key *a = x, *b = y;
    if (a->level != b->level) return a->level < b->level ? -1 : 1;
    if (a->op != b->op) return a->op < b->op ? -1 : 1;
    if (a->layer != b->layer) return a->layer < b->layer ? -1 : 1;
    return (a->task > b->task) - (a->task < b->task);
}

/* level[t] = 1 + max level of the producers of t's same-step waits, by relaxation over
 * the tasks in index order (one pass when tasks are in dependency order; a pass that
 * still changes something after n_tasks passes means a cycle). producer_level[e] is the
 * highest level of a task signalling event e. */
static enum mk_status task_levels(const struct mk_plan *p, uint32_t *level)
{
    uint32_t *ev = calloc(p->n_events ? p->n_events : 1, sizeof *ev);
    uint8_t *signalled = calloc(p->n_events ? p->n_events : 1, 1);
    if (!ev || !signalled) {
        free(ev);
        free(signalled);
        return mk_error(MK_ERR_NOMEM, "per-op: no memory for %u task levels", p->n_tasks);
    }
    for (uint32_t i = 0; i < p->n_signals; i++)
        if (p->signals[i] < p->n_events) signalled[p->signals[i]] = 1;
    enum mk_status s = MK_OK;
    memset(level, 0, sizeof *level * p->n_tasks);
    bool changed = true;
    for (uint32_t pass = 0; changed && s == MK_OK; pass++) {
        if (pass > p->n_tasks) {
            s = mk_error(MK_ERR_FORMAT, "per-op: the plan's same-step waits form a cycle");
            break;
        }
        changed = false;
        for (uint32_t t = 0; t < p->n_tasks && s == MK_OK; t++) {
            const struct mk_task *k = &p->tasks[t];
            uint32_t lv = 0;
            for (uint32_t w = k->wait_first; w < k->wait_first + k->n_wait; w++) {
                const struct mk_wait *wt = &p->waits[w];
                if (wt->step_offset != 0) continue;
                if (wt->event >= p->n_events || !signalled[wt->event]) {
                    s = mk_error(MK_ERR_FORMAT, "per-op: task %u waits on event %u, which no "
                                 "task signals", t, wt->event);
                    break;
                }
                if (ev[wt->event] + 1 > lv) lv = ev[wt->event] + 1;
            }
            if (lv != level[t]) {
                level[t] = lv;
                changed = true;
            }
            for (uint32_t i = k->signal_first; i < k->signal_first + k->n_signal; i++)
                if (p->signals[i] < p->n_events && ev[p->signals[i]] < lv) {
                    ev[p->signals[i]] = lv;
                    changed = true;
                }
        }
    }
    free(ev);
    free(signalled);
    return s;
}

enum mk_status mk_per_op_groups(const struct mk_plan *p, uint32_t *order, uint32_t *start,
                                uint32_t *n_groups)
{
    uint32_t n = p->n_tasks;
    uint32_t *level = malloc(sizeof *level * (n ? n : 1));
    struct order_key *key = malloc(sizeof *key * (n ? n : 1));
    if (!level || !key) {
        free(level);
        free(key);
        return mk_error(MK_ERR_NOMEM, "per-op: no memory for %u tasks", n);
    }
    enum mk_status s = task_levels(p, level);
    if (s == MK_OK) {
        for (uint32_t t = 0; t < n; t++)
            key[t] = (struct order_key){level[t], p->tasks[t].op, p->tasks[t].layer, t};
        qsort(key, n, sizeof *key, cmp_key);
        uint32_t g = 0;
        for (uint32_t i = 0; i < n; i++) {
            order[i] = key[i].task;
            if (i == 0 || cmp_key(&(struct order_key){key[i].level, key[i].op, key[i].layer, 0},
                                  &(struct order_key){key[i - 1].level, key[i - 1].op,
                                                      key[i - 1].layer, 0}))
                start[g++] = i;
        }
        start[g] = n;
        *n_groups = g;
    }
    free(level);
    free(key);
    return s;
}

#ifndef MK_HAVE_CUDA
static enum mk_status no_cuda(void)
{
    return mk_error(MK_ERR_NO_DEVICE, "built without CUDA (nvcc was not found at build time)");
}

enum mk_status mk_per_op_open(const struct mk_model *m, const struct mk_plan *p,
                              int prefill_tokens, struct mk_per_op **out)
{
    (void)m; (void)p; (void)prefill_tokens; (void)out;
    return no_cuda();
}

void mk_per_op_close(struct mk_per_op *po) { (void)po; }

enum mk_status mk_per_op_decode(struct mk_per_op *po, const int32_t *prompts, int n_seqs,
                                int prompt_len, int n_gen, bool graph, int32_t *out_tokens,
                                double *ms_per_step)
{
    (void)po; (void)prompts; (void)n_seqs; (void)prompt_len; (void)n_gen; (void)graph;
    (void)out_tokens; (void)ms_per_step;
    return no_cuda();
}

enum mk_status mk_per_op_prefill(struct mk_per_op *po, const int32_t *prompts, int n_seqs,
                                 int n, double *ms)
{
    (void)po; (void)prompts; (void)n_seqs; (void)n; (void)ms;
    return no_cuda();
}
#endif
