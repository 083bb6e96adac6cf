/* The schedule: assign tasks to SMs and order each SM's program.
 *
 * Model: an SM runs its program in order; a task starts when its SM is free and every
 * same-step producer has finished, plus target.sync_ns when the producer ran on another
 * SM (store -> release -> acquire -> reload); it then takes task_cost_ns.
 *
 * Search: critical-path list scheduling (HEFT): tasks in decreasing upward rank (cost +
 * the longest chain of successors, sync included), each placed on the SM where it
 * starts earliest (ties: lowest SM). Task ids are a topological order (the dependency
 * pass only makes a task wait on earlier ones), and ranks strictly decrease along
 * edges, so every program is a subsequence of one global topological order: no
 * deadlock is possible (mk_plan_check verifies it anyway).
 */
#include "compile_int.h"

#include <stdlib.h>
#include <string.h>

struct order_key { double rank; uint32_t t; };

static int cmp_rank(const void *a, const void *b)
{
    const struct order_key *x = a, *y = b;
    if (x->rank != y->rank) return x->rank > y->rank ? -1 : 1;
    return (x->t > y->t) - (x->t < y->t);
}

/* Same-step predecessors of every task: the producers of its step_offset 0 waits. */
static enum mk_status preds(const struct cstate *c, uint32_t **start_out, uint32_t **list_out)
{
    uint32_t n = c->n_tasks;
    uint32_t *ev_start = calloc(c->n_events + 1, sizeof *ev_start);
    uint32_t *ev_prod = calloc(c->n_signals + 1, sizeof *ev_prod);
    uint32_t *start = calloc(n + 1, sizeof *start);
    if (!ev_start || !ev_prod || !start) {
        free(ev_start); free(ev_prod); free(start);
        return mk_error(MK_ERR_NOMEM, "compile: out of memory");
    }
    for (uint32_t e = 0; e < c->n_events; e++) ev_start[e + 1] = ev_start[e] + c->events[e].per_step;
    uint32_t *fill = calloc(c->n_events + 1, sizeof *fill);
    uint64_t total = 0;
    for (uint32_t t = 0; t < n; t++)
        for (uint32_t i = 0; i < c->wait_count[t]; i++) {
            const struct mk_wait *w = &c->waits[c->wait_first[t] + i];
            if (w->step_offset == 0) total += c->events[w->event].per_step;
        }
    uint32_t *list = calloc(total + 1, sizeof *list);
    if (!fill || !list) {
        free(ev_start); free(ev_prod); free(start); free(fill); free(list);
        return mk_error(MK_ERR_NOMEM, "compile: out of memory");
    }
    for (uint32_t t = 0; t < n; t++)
        for (uint32_t i = 0; i < c->sig_count[t]; i++) {
            uint32_t e = c->signals[c->sig_first[t] + i];
            ev_prod[ev_start[e] + fill[e]++] = t;
        }
    uint32_t at = 0;
    for (uint32_t t = 0; t < n; t++) {
        start[t] = at;
        for (uint32_t i = 0; i < c->wait_count[t]; i++) {
            const struct mk_wait *w = &c->waits[c->wait_first[t] + i];
            if (w->step_offset != 0) continue;
            for (uint32_t j = ev_start[w->event]; j < ev_start[w->event + 1]; j++)
                list[at++] = ev_prod[j];
        }
    }
    start[n] = at;
    free(ev_start);
    free(ev_prod);
    free(fill);
    *start_out = start;
    *list_out = list;
    return MK_OK;
}

double sched_simulate(uint32_t n_tasks, const float *cost, const uint32_t *prog_start,
                      const uint32_t *prog_tasks, int sm_count, double sync_ns,
                      const uint32_t *dep_start, const uint32_t *deps, double *busy)
{
    double *finish = malloc((n_tasks + 1) * sizeof *finish);
    int *sm_of = malloc((n_tasks + 1) * sizeof *sm_of);
    uint32_t *pc = calloc((size_t)sm_count, sizeof *pc);
    double *free_at = calloc((size_t)sm_count, sizeof *free_at);
    MK_ASSERT(finish && sm_of && pc && free_at);
    for (uint32_t t = 0; t < n_tasks; t++) finish[t] = -1;
    for (int s = 0; s < sm_count; s++)
        for (uint32_t i = prog_start[s]; i < prog_start[s + 1]; i++) sm_of[prog_tasks[i]] = s;
    uint32_t done = 0;
    bool progress = true;
    while (done < n_tasks && progress) {
        progress = false;
        for (int s = 0; s < sm_count; s++)
            while (prog_start[s] + pc[s] < prog_start[s + 1]) {
                uint32_t t = prog_tasks[prog_start[s] + pc[s]];
                double ready = free_at[s];
                bool ok = true;
                for (uint32_t j = dep_start[t]; j < dep_start[t + 1] && ok; j++) {
                    uint32_t p = deps[j];
                    if (finish[p] < 0) ok = false;
                    else {
                        double r = finish[p] + (sm_of[p] == s ? 0 : sync_ns);
                        if (r > ready) ready = r;
                    }
                }
                if (!ok) break;
                finish[t] = ready + cost[t];
                free_at[s] = finish[t];
                if (busy) busy[s] += cost[t];
                pc[s]++;
                done++;
                progress = true;
            }
    }
    double makespan = 0;
    for (int s = 0; s < sm_count; s++) if (free_at[s] > makespan) makespan = free_at[s];
    free(finish);
    free(sm_of);
    free(pc);
    free(free_at);
    return done == n_tasks ? makespan : -1.0;
}

enum mk_status cs_schedule(struct cstate *c)
{
    uint32_t n = c->n_tasks, S = (uint32_t)c->tgt.sm_count;
    double sync = c->tgt.sync_ns;
    uint32_t *ps = NULL, *pl = NULL;
    enum mk_status s = preds(c, &ps, &pl);
    if (s) return s;
    struct order_key *ord = calloc(n, sizeof *ord);
    double *fin = calloc(n, sizeof *fin), *free_at = calloc(S, sizeof *free_at);
    uint32_t *sm = calloc(n, sizeof *sm), *count = calloc(S + 1, sizeof *count);
    c->prog_start = calloc(S + 1, sizeof *c->prog_start);
    c->prog_tasks = calloc(n + 1, sizeof *c->prog_tasks);
    if (!ord || !fin || !free_at || !sm || !count || !c->prog_start || !c->prog_tasks) {
        s = mk_error(MK_ERR_NOMEM, "compile: out of memory");
        goto out;
    }
    for (uint32_t t = 0; t < n; t++) ord[t] = (struct order_key){c->cost[t], t};
    for (uint32_t t = n; t-- > 0;) /* ids are topological: successors are final */
        for (uint32_t j = ps[t]; j < ps[t + 1]; j++) {
            uint32_t p = pl[j];
            double r = c->cost[p] + sync + ord[t].rank;
            if (r > ord[p].rank) ord[p].rank = r;
        }
    qsort(ord, n, sizeof *ord, cmp_rank);
    for (uint32_t k = 0; k < n; k++) {
        uint32_t t = ord[k].t;
        /* best1: latest (finish + sync) over producers, on SM s1; for s1 itself the
         * producers there need no sync */
        double best1 = 0, best2 = 0, fin_s1 = 0;
        uint32_t s1 = S;
        for (uint32_t j = ps[t]; j < ps[t + 1]; j++)
            if (fin[pl[j]] + sync > best1) { best1 = fin[pl[j]] + sync; s1 = sm[pl[j]]; }
        for (uint32_t j = ps[t]; j < ps[t + 1]; j++) {
            uint32_t p = pl[j];
            if (sm[p] != s1 && fin[p] + sync > best2) best2 = fin[p] + sync;
            if (sm[p] == s1 && fin[p] > fin_s1) fin_s1 = fin[p];
        }
        uint32_t best_sm = 0;
        double best_start = 0;
        for (uint32_t i = 0; i < S; i++) {
            double ready = i == s1 ? (best2 > fin_s1 ? best2 : fin_s1) : best1;
            double st = free_at[i] > ready ? free_at[i] : ready;
            if (i == 0 || st < best_start) { best_start = st; best_sm = i; }
        }
        sm[t] = best_sm;
        fin[t] = best_start + c->cost[t];
        free_at[best_sm] = fin[t];
        count[best_sm + 1]++;
    }
    for (uint32_t i = 0; i < S; i++) c->prog_start[i + 1] = c->prog_start[i] + count[i + 1];
    memset(count, 0, (S + 1) * sizeof *count);
    for (uint32_t k = 0; k < n; k++) {
        uint32_t t = ord[k].t, i = sm[t];
        c->prog_tasks[c->prog_start[i] + count[i]++] = t;
    }
    c->step_ns = sched_simulate(n, c->cost, c->prog_start, c->prog_tasks, (int)S, sync, ps, pl, NULL);
    if (c->step_ns < 0) s = mk_error(MK_ERR_INTERNAL, "compile: schedule deadlocks");
out:
    free(ps); free(pl); free(ord); free(fin); free(free_at); free(sm); free(count);
    return s;
}
