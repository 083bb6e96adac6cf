/* The schedule: assign tasks to SMs and order each SM's program (mk_plan_schedule).
 *
 * Model: an SM runs its program in order; a task starts when its SM is free and, if it
 * waits on same-step events, target.sync_ns after the last producer of those events
 * finished (release -> L2 -> acquire poll -> activation reload; it costs the same when
 * the producer ran on the same SM, since the counter still goes through L2); it then
 * takes task_cost_ns. Previous-step waits are ignored (the step is timed alone).
 *
 * Search:
 * 1. critical-path list scheduling (HEFT): tasks in decreasing upward rank (cost + the
 *    longest chain of successors, sync included), each placed on an SM that is free by
 *    the time its inputs are ready (the latest such: best fit, keeping early-free SMs for
 *    others) or else on the earliest-free SM;
 * 2. local improvement: walk the critical path of the simulated schedule; a task on it
 *    that waited for its SM (not for its inputs) is moved to the other SM that was free
 *    earliest at its turn; the move is kept when the predicted step time drops. Repeat
 *    until no such move helps or the budget (a fixed number of simulations, scaled so an
 *    8B plan stays well under a second) is spent.
 * Every program is a subsequence of ONE global order (the rank order, ties broken by a
 * topological order of the dependencies, so it is topological even for zero-cost
 * tasks), so no program order can deadlock whatever SM a task moves to (mk_plan_check
 * verifies it).
 */
#include "compile_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { SIM_BUDGET_STEPS = 40000000 }; /* task + wait + signal visits over all simulations */

struct sched {
    const struct mk_plan *p;
    uint32_t n, S;
    double sync;
    const float *cost;
    uint32_t *order;      /* global order: order[i] = task */
    uint32_t *sm;         /* [n] */
    /* simulation outputs */
    double *fin, *start, *ev_done, *free_at;
    uint32_t *prev_on_sm; /* [n]: the task before on its SM, or UINT32_MAX */
    uint32_t *bind;       /* [n]: the producer that made it wait, UINT32_MAX for none */
    uint32_t *alt;        /* [n]: the other SM free earliest at its turn */
    uint32_t *last_on_sm, *ev_last; /* [S], [n_events] */
};

struct order_key { double rank; uint32_t topo, t; };

/* Decreasing rank; ties (zero-cost tasks) in topological position. */
static int cmp_rank(const void *a, const void *b)
{
    const struct order_key *x = a, *y = b;
    if (x->rank != y->rank) return x->rank > y->rank ? -1 : 1;
    return (x->topo > y->topo) - (x->topo < y->topo);
}

/* A topological order of the same-step dependencies (Kahn), so that loaded plans whose
 * task ids are not topological schedule correctly; MK_ERR_FORMAT on a cycle. */
static enum mk_status topo_order(const struct mk_plan *p, uint32_t *topo)
{
    uint32_t n = p->n_tasks, E = p->n_events;
    uint32_t *cstart = calloc(E + 2, sizeof *cstart), *cons = malloc((p->n_waits + 1) * sizeof *cons);
    uint64_t *indeg = calloc(n + 1, sizeof *indeg);
    enum mk_status s = MK_OK;
    if (!cstart || !cons || !indeg) s = mk_error(MK_ERR_NOMEM, "schedule: out of memory");
    for (uint32_t t = 0; !s && t < n; t++)
        for (uint32_t w = 0; w < p->tasks[t].n_wait; w++) {
            const struct mk_wait *wt = &p->waits[p->tasks[t].wait_first + w];
            if (wt->step_offset) continue;
            cstart[wt->event + 2]++;
            indeg[t] += p->events[wt->event].per_step;
        }
    for (uint32_t e = 0; !s && e < E; e++) cstart[e + 2] += cstart[e + 1];
    for (uint32_t t = 0; !s && t < n; t++)
        for (uint32_t w = 0; w < p->tasks[t].n_wait; w++) {
            const struct mk_wait *wt = &p->waits[p->tasks[t].wait_first + w];
            if (!wt->step_offset) cons[cstart[wt->event + 1]++] = t;
        }
    uint32_t head = 0, tail = 0;
    for (uint32_t t = 0; !s && t < n; t++)
        if (!indeg[t]) topo[tail++] = t;
    while (!s && head < tail) {
        const struct mk_task *k = &p->tasks[topo[head++]];
        for (uint32_t j = 0; j < k->n_signal; j++) {
            uint32_t e = p->signals[k->signal_first + j];
            for (uint32_t c = cstart[e]; c < cstart[e + 1]; c++)
                if (--indeg[cons[c]] == 0) topo[tail++] = cons[c];
        }
    }
    if (!s && tail != n) s = mk_error(MK_ERR_FORMAT, "schedule: the same-step dependencies have a cycle");
    free(cstart);
    free(cons);
    free(indeg);
    return s;
}

/* Ready time of t from the events it waits on (same step), and the producer binding it. */
static double ready_time(const struct sched *s, uint32_t t, uint32_t *bind)
{
    const struct mk_task *k = &s->p->tasks[t];
    double ready = 0;
    *bind = UINT32_MAX;
    for (uint32_t w = 0; w < k->n_wait; w++) {
        const struct mk_wait *wt = &s->p->waits[k->wait_first + w];
        if (wt->step_offset) continue;
        double r = s->ev_done[wt->event] + s->sync;
        if (r > ready || *bind == UINT32_MAX) { ready = r; *bind = s->ev_last[wt->event]; }
    }
    return ready;
}

static void finish_task(struct sched *s, uint32_t t, uint32_t sm, double st)
{
    const struct mk_task *k = &s->p->tasks[t];
    s->start[t] = st;
    s->fin[t] = st + s->cost[t];
    s->prev_on_sm[t] = s->last_on_sm[sm];
    s->last_on_sm[sm] = t;
    s->free_at[sm] = s->fin[t];
    for (uint32_t j = 0; j < k->n_signal; j++) {
        uint32_t e = s->p->signals[k->signal_first + j];
        if (s->fin[t] >= s->ev_done[e]) { s->ev_done[e] = s->fin[t]; s->ev_last[e] = t; }
    }
}

static void sim_reset(struct sched *s)
{
    for (uint32_t i = 0; i < s->S; i++) { s->free_at[i] = 0; s->last_on_sm[i] = UINT32_MAX; }
    for (uint32_t e = 0; e < s->p->n_events; e++) { s->ev_done[e] = 0; s->ev_last[e] = UINT32_MAX; }
}

/* Times of the current assignment, in one pass over the global order; returns the
 * makespan and the last task to finish. */
static double simulate(struct sched *s, uint32_t *last)
{
    sim_reset(s);
    double makespan = 0;
    for (uint32_t i = 0; i < s->n; i++) {
        uint32_t t = s->order[i], sm = s->sm[t], early = UINT32_MAX;
        double ready = ready_time(s, t, &s->bind[t]);
        for (uint32_t j = 0; j < s->S; j++) /* the best other SM */
            if (j != sm && (early == UINT32_MAX || s->free_at[j] < s->free_at[early])) early = j;
        s->alt[t] = early == UINT32_MAX ? sm : early;
        if (s->free_at[sm] > ready) s->bind[t] = UINT32_MAX; /* waited for its SM */
        finish_task(s, t, sm, fmax(ready, s->free_at[sm]));
        if (s->fin[t] >= makespan) { makespan = s->fin[t]; *last = t; }
    }
    return makespan;
}

/* 1. HEFT. */
static enum mk_status list_schedule(struct sched *s)
{
    const struct mk_plan *p = s->p;
    struct order_key *ord = calloc(s->n, sizeof *ord);
    double *rank_ev = calloc(p->n_events + 1, sizeof *rank_ev);
    if (!ord || !rank_ev) {
        free(ord);
        free(rank_ev);
        return mk_error(MK_ERR_NOMEM, "schedule: out of memory");
    }
    uint32_t *topo = malloc((s->n + 1) * sizeof *topo);
    enum mk_status st = topo ? topo_order(p, topo) : mk_error(MK_ERR_NOMEM, "schedule: out of memory");
    for (uint32_t i = s->n; !st && i-- > 0;) { /* consumers before their producers */
        uint32_t t = topo[i];
        const struct mk_task *k = &p->tasks[t];
        double r = 0;
        for (uint32_t j = 0; j < k->n_signal; j++) {
            double c = rank_ev[p->signals[k->signal_first + j]];
            if (c > 0 && c + s->sync > r) r = c + s->sync;
        }
        ord[t] = (struct order_key){s->cost[t] + r, i, t};
        for (uint32_t w = 0; w < k->n_wait; w++) {
            const struct mk_wait *wt = &p->waits[k->wait_first + w];
            if (!wt->step_offset && ord[t].rank > rank_ev[wt->event]) rank_ev[wt->event] = ord[t].rank;
        }
    }
    free(topo);
    if (st) {
        free(ord);
        free(rank_ev);
        return st;
    }
    qsort(ord, s->n, sizeof *ord, cmp_rank);
    sim_reset(s);
    for (uint32_t i = 0; i < s->n; i++) {
        uint32_t t = ord[i].t, bind, fit = UINT32_MAX, early = 0;
        s->order[i] = t;
        double ready = ready_time(s, t, &bind);
        for (uint32_t j = 0; j < s->S; j++) {
            if (s->free_at[j] < s->free_at[early]) early = j;
            if (s->free_at[j] <= ready && (fit == UINT32_MAX || s->free_at[j] > s->free_at[fit])) fit = j;
        }
        s->sm[t] = fit != UINT32_MAX ? fit : early;
        finish_task(s, t, s->sm[t], fmax(ready, s->free_at[s->sm[t]]));
    }
    free(ord);
    free(rank_ev);
    return MK_OK;
}

/* 2. Local improvement along the critical path. */
static double improve(struct sched *s)
{
    const struct mk_plan *p = s->p;
    uint64_t visit = (uint64_t)s->n + p->n_waits + p->n_signals + 1;
    int64_t sims_left = (int64_t)(SIM_BUDGET_STEPS / visit);
    uint32_t last;
    double best = simulate(s, &last);
    bool moved = true;
    while (moved && sims_left > 0) {
        moved = false;
        /* the critical path, latest first: SM waits are move candidates */
        uint32_t hops = 0; /* bound the walk whatever the binding chain looks like */
        for (uint32_t t = last; t != UINT32_MAX && sims_left > 0 && hops++ <= s->n;) {
            uint32_t next = s->bind[t] != UINT32_MAX ? s->bind[t] : s->prev_on_sm[t];
            if (s->bind[t] == UINT32_MAX && s->prev_on_sm[t] != UINT32_MAX && s->alt[t] != s->sm[t]) {
                uint32_t from = s->sm[t];
                s->sm[t] = s->alt[t];
                uint32_t l2;
                double m = simulate(s, &l2);
                sims_left--;
                if (m < best - 1e-6) {
                    best = m;
                    last = l2;
                    moved = true;
                    break; /* the critical path changed: walk the new one */
                }
                s->sm[t] = from;
            }
            t = next;
        }
        if (!moved) break;
    }
    return simulate(s, &last);
}

static enum mk_status write_programs(struct sched *s, struct mk_plan *p)
{
    uint32_t *start = calloc(s->S + 1, sizeof *start), *tasks = malloc((s->n + 1) * sizeof *tasks);
    uint32_t *fill = calloc(s->S, sizeof *fill);
    if (!start || !tasks || !fill) {
        free(start); free(tasks); free(fill);
        return mk_error(MK_ERR_NOMEM, "schedule: out of memory");
    }
    for (uint32_t t = 0; t < s->n; t++) start[s->sm[t] + 1]++;
    for (uint32_t i = 0; i < s->S; i++) start[i + 1] += start[i];
    for (uint32_t i = 0; i < s->n; i++) { /* global order within every program */
        uint32_t t = s->order[i];
        tasks[start[s->sm[t]] + fill[s->sm[t]]++] = t;
    }
    free(fill);
    free(p->prog_start);
    free(p->prog_tasks);
    p->prog_start = start;
    p->prog_tasks = tasks;
    return MK_OK;
}

enum mk_status mk_plan_schedule(struct mk_plan *p, const float *task_ns)
{
    if (task_ns)
        for (uint32_t t = 0; t < p->n_tasks; t++)
            if (!(task_ns[t] >= 0) || !isfinite(task_ns[t]))
                return mk_error(MK_ERR_ARG, "schedule: task %u: time %g is not a finite "
                                "number >= 0", t, (double)task_ns[t]);
    /* the rank order is topological only when a producer's rank is at least its
     * consumers' (cost >= 0, sync >= 0): a negative sync_ns would deadlock the programs */
    if (!mk_target_costs_ok(&p->target))
        return mk_error(MK_ERR_FORMAT, "schedule: target sync_ns %g, mem_gbps %g: finite, >= 0 "
                        "and > 0 expected", (double)p->target.sync_ns, (double)p->target.mem_gbps);
    for (uint32_t t = 0; t < p->n_tasks; t++)
        if (!(p->task_cost_ns[t] >= 0) || !isfinite(p->task_cost_ns[t]))
            return mk_error(MK_ERR_FORMAT, "schedule: task %u: predicted time %g: finite >= 0 "
                            "expected", t, (double)p->task_cost_ns[t]);
    for (uint32_t t = 0; t < p->n_tasks; t++)
        for (uint32_t w = 0; w < p->tasks[t].n_wait; w++)
            if (p->waits[p->tasks[t].wait_first + w].event >= p->n_events)
                return mk_error(MK_ERR_FORMAT, "schedule: task %u: bad event", t);
    if (task_ns) memcpy(p->task_cost_ns, task_ns, p->n_tasks * sizeof *task_ns);
    struct sched s = {.p = p, .n = p->n_tasks, .S = (uint32_t)p->target.sm_count,
                      .sync = p->target.sync_ns, .cost = p->task_cost_ns};
    size_t n = s.n + 1, E = p->n_events + 1;
    s.order = malloc(n * sizeof *s.order);
    s.sm = calloc(n, sizeof *s.sm);
    s.fin = calloc(n, sizeof *s.fin);
    s.start = calloc(n, sizeof *s.start);
    s.prev_on_sm = calloc(n, sizeof *s.prev_on_sm);
    s.bind = calloc(n, sizeof *s.bind);
    s.alt = calloc(n, sizeof *s.alt);
    s.ev_done = calloc(E, sizeof *s.ev_done);
    s.ev_last = calloc(E, sizeof *s.ev_last);
    s.free_at = calloc(s.S, sizeof *s.free_at);
    s.last_on_sm = calloc(s.S, sizeof *s.last_on_sm);
    enum mk_status st = MK_OK;
    if (!s.order || !s.sm || !s.fin || !s.start || !s.prev_on_sm || !s.bind || !s.alt ||
        !s.ev_done || !s.ev_last || !s.free_at || !s.last_on_sm)
        st = mk_error(MK_ERR_NOMEM, "schedule: out of memory");
    if (!st) st = list_schedule(&s);
    if (!st) p->predicted_step_ns = improve(&s);
    if (!st) st = write_programs(&s, p);
    free(s.order); free(s.sm); free(s.fin); free(s.start); free(s.prev_on_sm); free(s.bind);
    free(s.alt); free(s.ev_done); free(s.ev_last); free(s.free_at); free(s.last_on_sm);
    return st;
}
