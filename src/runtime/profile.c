/* Analysis of the megakernel's per-task profile (mk/profile.h): time by op, per-SM idle,
 * critical paths, wait accounting, per-task medians, the Perfetto trace and the summary.
 *
 * Tables built once per call (struct prof_ctx):
 *   sm[t], prev[t]     the SM whose program runs task t and the task before it there
 *                      (MK_NONE for the first task of a program)
 *   pstart/prod        CSR: the producers (signalling tasks) of each event
 *   ev_end/ev_last     [step][event]: when the event's producers of that step were all
 *                      done (the latest end) and which producer that was
 */
#include "mk/profile.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct prof_ctx {
    const struct mk_plan *p;
    const uint64_t *rec;
    int steps;
    uint32_t n, E, S;
    uint32_t *sm, *prev;
    uint32_t *pstart, *prod;
    uint64_t *ev_end;
    uint32_t *ev_last;
    uint64_t t0, t1;      /* earliest wait, latest end */
};

static uint64_t r_at(const struct prof_ctx *c, int s, uint32_t t, int i)
{
    return c->rec[((size_t)s * c->n + t) * MK_PROF_FIELDS + (size_t)i];
}
static uint64_t r_wait(const struct prof_ctx *c, int s, uint32_t t) { return r_at(c, s, t, 0); }
static uint64_t r_ready(const struct prof_ctx *c, int s, uint32_t t) { return r_at(c, s, t, 1); }
static uint64_t r_end(const struct prof_ctx *c, int s, uint32_t t) { return r_at(c, s, t, 2); }

static void ctx_free(struct prof_ctx *c)
{
    free(c->sm); free(c->prev); free(c->pstart); free(c->prod); free(c->ev_end); free(c->ev_last);
}

static const char *op_of(const struct mk_plan *p, uint32_t t)
{
    return mk_task_op_name((enum mk_task_op)p->tasks[t].op);
}

static enum mk_status build_programs(struct prof_ctx *c)
{
    const struct mk_plan *p = c->p;
    for (uint32_t t = 0; t < c->n; t++) c->sm[t] = c->prev[t] = MK_NONE;
    for (uint32_t i = 0; i < c->S; i++)
        for (uint32_t k = p->prog_start[i]; k < p->prog_start[i + 1]; k++) {
            uint32_t t = p->prog_tasks[k];
            if (t >= c->n || c->sm[t] != MK_NONE)
                return mk_error(MK_ERR_ARG, "profile: plan: program of SM %u: task %u is out of "
                                "range or scheduled twice", i, t);
            c->sm[t] = i;
            c->prev[t] = k > p->prog_start[i] ? p->prog_tasks[k - 1] : MK_NONE;
        }
    for (uint32_t t = 0; t < c->n; t++)
        if (c->sm[t] == MK_NONE)
            return mk_error(MK_ERR_ARG, "profile: plan: task %u is in no SM program", t);
    return MK_OK;
}

static enum mk_status build_producers(struct prof_ctx *c)
{
    const struct mk_plan *p = c->p;
    for (uint32_t t = 0; t < c->n; t++)
        for (uint32_t k = 0; k < p->tasks[t].n_signal; k++) {
            uint32_t e = p->signals[p->tasks[t].signal_first + k];
            if (e >= c->E)
                return mk_error(MK_ERR_ARG, "profile: plan: task %u signals event %u of %u", t,
                                e, c->E);
            c->pstart[e + 1]++;
        }
    for (uint32_t e = 0; e < c->E; e++) c->pstart[e + 1] += c->pstart[e];
    uint32_t *fill = calloc(c->E + 1, sizeof *fill);
    if (!fill) return mk_error(MK_ERR_NOMEM, "profile: out of memory");
    for (uint32_t t = 0; t < c->n; t++)
        for (uint32_t k = 0; k < p->tasks[t].n_signal; k++) {
            uint32_t e = p->signals[p->tasks[t].signal_first + k];
            c->prod[c->pstart[e] + fill[e]++] = t;
        }
    free(fill);
    return MK_OK;
}

/* Every record written, ordered, on the plan's SM. */
static enum mk_status check_records(struct prof_ctx *c)
{
    c->t0 = UINT64_MAX;
    c->t1 = 0;
    for (int s = 0; s < c->steps; s++)
        for (uint32_t t = 0; t < c->n; t++) {
            uint64_t w = r_wait(c, s, t), r = r_ready(c, s, t), e = r_end(c, s, t);
            uint64_t sm = r_at(c, s, t, 3) & 0xffff; /* bits 16..: the ring phases */
            if (!w && !r && !e)
                return mk_error(MK_ERR_ARG, "profile: step %d, task %u (%s): no record (the "
                                "kernel ran fewer steps than the profile holds?)", s, t,
                                op_of(c->p, t));
            if (r < w || e < r)
                return mk_error(MK_ERR_ARG, "profile: step %d, task %u (%s): wait %llu, ready "
                                "%llu, end %llu ns; expected wait <= ready <= end", s, t,
                                op_of(c->p, t), (unsigned long long)w, (unsigned long long)r,
                                (unsigned long long)e);
            if (sm != c->sm[t])
                return mk_error(MK_ERR_ARG, "profile: step %d, task %u (%s): ran on SM %llu, "
                                "expected SM %u (the plan's program)", s, t, op_of(c->p, t),
                                (unsigned long long)sm, c->sm[t]);
            c->t0 = w < c->t0 ? w : c->t0;
            c->t1 = e > c->t1 ? e : c->t1;
        }
    return MK_OK;
}

static void event_times(struct prof_ctx *c)
{
    for (int s = 0; s < c->steps; s++)
        for (uint32_t e = 0; e < c->E; e++) {
            uint64_t best = 0;
            uint32_t who = MK_NONE;
            for (uint32_t k = c->pstart[e]; k < c->pstart[e + 1]; k++) {
                uint64_t x = r_end(c, s, c->prod[k]);
                if (who == MK_NONE || x > best) best = x, who = c->prod[k];
            }
            c->ev_end[(size_t)s * c->E + e] = best;
            c->ev_last[(size_t)s * c->E + e] = who;
        }
}

static enum mk_status ctx_init(struct prof_ctx *c, const struct mk_plan *p, const uint64_t *rec,
                               int steps)
{
    memset(c, 0, sizeof *c);
    if (steps < 1) return mk_error(MK_ERR_ARG, "profile: %d steps, expected >= 1", steps);
    if (!p || !rec || p->n_tasks == 0 || p->target.sm_count < 1)
        return mk_error(MK_ERR_ARG, "profile: expected a plan with tasks and SMs and records");
    c->p = p;
    c->rec = rec;
    c->steps = steps;
    c->n = p->n_tasks;
    c->E = p->n_events;
    c->S = (uint32_t)p->target.sm_count;
    c->sm = malloc(sizeof *c->sm * c->n);
    c->prev = malloc(sizeof *c->prev * c->n);
    c->pstart = calloc(c->E + 1, sizeof *c->pstart);
    c->prod = malloc(sizeof *c->prod * (p->n_signals + 1));
    c->ev_end = malloc(sizeof *c->ev_end * ((size_t)steps * c->E + 1));
    c->ev_last = malloc(sizeof *c->ev_last * ((size_t)steps * c->E + 1));
    enum mk_status s = MK_OK;
    if (!c->sm || !c->prev || !c->pstart || !c->prod || !c->ev_end || !c->ev_last)
        s = mk_error(MK_ERR_NOMEM, "profile: out of memory");
    if (s == MK_OK) s = build_programs(c);
    if (s == MK_OK) s = build_producers(c);
    if (s == MK_OK) s = check_records(c);
    if (s == MK_OK) event_times(c);
    else ctx_free(c);
    return s;
}

/* The binding producer of task t in step s: *bs its step (-1: none). */
static uint32_t binding(const struct prof_ctx *c, int s, uint32_t t, int *bs)
{
    const struct mk_task *tk = &c->p->tasks[t];
    uint64_t best = 0;
    uint32_t who = MK_NONE;
    *bs = -1;
    for (uint32_t k = 0; k < tk->n_wait; k++) {
        const struct mk_wait *w = &c->p->waits[tk->wait_first + k];
        int ps = s + w->step_offset;
        if (ps < 0 || ps > s || w->event >= c->E) continue;
        uint32_t x = c->ev_last[(size_t)ps * c->E + w->event];
        uint64_t e = c->ev_end[(size_t)ps * c->E + w->event];
        if (x != MK_NONE && (who == MK_NONE || e > best)) best = e, who = x, *bs = ps;
    }
    return who;
}

/* The task that gated t in step s (the later-ending of its SM predecessor and its
 * binding producer, the SM one on a tie); *via says which; MK_NONE when that task is
 * in another step or there is none. */
static uint32_t gate(const struct prof_ctx *c, int s, uint32_t t, uint32_t *via)
{
    int ps = s, bs;
    uint32_t pt = c->prev[t];
    if (pt == MK_NONE && s > 0) { /* the SM's last task of the previous step */
        const struct mk_plan *p = c->p;
        pt = p->prog_tasks[p->prog_start[c->sm[t] + 1] - 1];
        ps = s - 1;
    }
    uint32_t bt = binding(c, s, t, &bs);
    *via = MK_PROF_VIA_START;
    uint64_t pe = pt != MK_NONE ? r_end(c, ps, pt) : 0;
    if (bt != MK_NONE && (pt == MK_NONE || r_end(c, bs, bt) > pe)) {
        if (bs != s) return MK_NONE;
        *via = MK_PROF_VIA_EVENT;
        return bt;
    }
    if (pt == MK_NONE || ps != s) return MK_NONE;
    *via = MK_PROF_VIA_SM;
    return pt;
}

/* Walk step s's critical path back from its last task; hops (reverse order) into buf
 * [n] when not NULL. Returns the number of hops. */
static uint32_t walk(const struct prof_ctx *c, int s, struct mk_profile_hop *buf)
{
    uint32_t t = 0;
    for (uint32_t k = 1; k < c->n; k++)
        if (r_end(c, s, k) > r_end(c, s, t)) t = k;
    uint32_t hops = 0;
    while (t != MK_NONE && hops < c->n) {
        uint32_t via;
        uint32_t g = gate(c, s, t, &via);
        double from = g != MK_NONE ? (double)r_end(c, s, g) : (double)r_wait(c, s, t);
        buf[hops++] = (struct mk_profile_hop){t, via, (double)(r_end(c, s, t) - r_ready(c, s, t)),
                                              (double)r_ready(c, s, t) - from};
        t = g;
    }
    return hops;
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Busy and wait by op and by SM, wait charged to binding producers, task medians. */
static void account(const struct prof_ctx *c, struct mk_profile *pr, double *scratch)
{
    for (int s = 0; s < c->steps; s++)
        for (uint32_t t = 0; t < c->n; t++) {
            struct mk_profile_op *o = &pr->op[c->p->tasks[t].op];
            double busy = (double)(r_end(c, s, t) - r_ready(c, s, t));
            double wait = (double)(r_ready(c, s, t) - r_wait(c, s, t));
            o->runs++;
            o->busy_ns += busy;
            const uint64_t ph = r_at(c, s, t, 3); /* SM | act ns << 16 | gemv ns << 40 */
            if (ph >> 16) {
                o->phased_runs++;
                o->act_ns += (double)((ph >> 16) & 0xffffff);
                o->gemv_ns += (double)(ph >> 40);
            }
            o->wait_ns += wait;
            pr->busy_ns += busy;
            pr->sm_busy_ns[c->sm[t]] += busy / c->steps;
            pr->sm_wait_ns[c->sm[t]] += wait / c->steps;
            int bs;
            uint32_t b = binding(c, s, t, &bs);
            if (b == MK_NONE) pr->wait_unbound_ns += wait;
            else pr->op[c->p->tasks[b].op].waited_on_ns += wait;
        }
    for (int k = 0; k < MK_TASK_OP_COUNT; k++)
        pr->op[k].busy_share = pr->busy_ns > 0 ? pr->op[k].busy_ns / pr->busy_ns : 0;
    for (uint32_t t = 0; t < c->n; t++) {
        for (int s = 0; s < c->steps; s++) scratch[s] = (double)(r_end(c, s, t) - r_ready(c, s, t));
        pr->task_ns[t] = (float)median(scratch, c->steps);
    }
}

static void idle_and_walls(const struct prof_ctx *c, struct mk_profile *pr, double *walls)
{
    pr->window_ns = (double)(c->t1 - c->t0);
    uint64_t prev_end = c->t0;
    for (int s = 0; s < c->steps; s++) {
        uint64_t e = 0;
        for (uint32_t t = 0; t < c->n; t++) e = r_end(c, s, t) > e ? r_end(c, s, t) : e;
        walls[s] = (double)e - (double)prev_end;
        prev_end = e;
        pr->step_ns_mean += walls[s] / c->steps;
    }
    pr->idle_worst_ns = -INFINITY;
    for (uint32_t i = 0; i < c->S; i++) {
        pr->sm_idle_ns[i] = pr->window_ns / c->steps - pr->sm_busy_ns[i];
        pr->idle_mean_ns += pr->sm_idle_ns[i] / c->S;
        if (pr->sm_idle_ns[i] > pr->idle_worst_ns) {
            pr->idle_worst_ns = pr->sm_idle_ns[i];
            pr->idle_worst_sm = (int)i;
        }
    }
}

static void critical_paths(const struct prof_ctx *c, struct mk_profile *pr,
                           struct mk_profile_hop *buf)
{
    for (int s = 0; s < c->steps; s++) {
        uint32_t h = walk(c, s, buf);
        for (uint32_t k = 0; k < h; k++) {
            struct mk_profile_op *o = &pr->op[c->p->tasks[buf[k].task].op];
            o->crit_busy_ns += buf[k].busy_ns;
            o->crit_wait_ns += buf[k].wait_ns;
            pr->crit_busy_ns += buf[k].busy_ns / c->steps;
            pr->crit_wait_ns += buf[k].wait_ns / c->steps;
            pr->crit_hops_sm += (buf[k].via == MK_PROF_VIA_SM) / (double)c->steps;
            pr->crit_hops_event += (buf[k].via == MK_PROF_VIA_EVENT) / (double)c->steps;
            if (buf[k].via == MK_PROF_VIA_EVENT)
                pr->crit_wait_event_ns += buf[k].wait_ns / c->steps;
        }
    }
    pr->crit_ns = pr->crit_busy_ns + pr->crit_wait_ns;
    pr->n_path = walk(c, pr->crit_step, buf);
    for (uint32_t k = 0; k < pr->n_path; k++) pr->path[k] = buf[pr->n_path - 1 - k];
}

/* The step whose wall is the median one (the lower middle for an even count). */
static int median_step(const double *walls, int n, double *sorted, double *med)
{
    memcpy(sorted, walls, sizeof *walls * (size_t)n);
    *med = median(sorted, n);
    for (int s = 0; s < n; s++)
        if (walls[s] == sorted[(n - 1) / 2]) return s;
    return 0;
}

enum mk_status mk_profile_analyze(const struct mk_plan *p, const uint64_t *rec, int n_steps,
                                  struct mk_profile **out)
{
    struct prof_ctx c;
    enum mk_status s = ctx_init(&c, p, rec, n_steps);
    if (s != MK_OK) return s;
    struct mk_profile *pr = calloc(1, sizeof *pr);
    double *walls = malloc(sizeof *walls * (size_t)n_steps * 2);
    struct mk_profile_hop *buf = malloc(sizeof *buf * c.n);
    if (pr) {
        pr->sm_busy_ns = calloc(c.S, sizeof *pr->sm_busy_ns);
        pr->sm_wait_ns = calloc(c.S, sizeof *pr->sm_wait_ns);
        pr->sm_idle_ns = calloc(c.S, sizeof *pr->sm_idle_ns);
        pr->path = malloc(sizeof *pr->path * c.n);
        pr->task_ns = malloc(sizeof *pr->task_ns * c.n);
    }
    if (!pr || !walls || !buf || !pr->sm_busy_ns || !pr->sm_wait_ns || !pr->sm_idle_ns ||
        !pr->path || !pr->task_ns) {
        s = mk_error(MK_ERR_NOMEM, "profile: out of memory");
    } else {
        pr->n_steps = n_steps;
        pr->n_sms = (int)c.S;
        pr->n_tasks = c.n;
        account(&c, pr, walls);
        idle_and_walls(&c, pr, walls);
        pr->crit_step = median_step(walls, n_steps, walls + n_steps, &pr->step_ns_median);
        critical_paths(&c, pr, buf);
    }
    free(walls);
    free(buf);
    ctx_free(&c);
    if (s != MK_OK) {
        mk_profile_free(pr);
        return s;
    }
    *out = pr;
    return MK_OK;
}

void mk_profile_free(struct mk_profile *pr)
{
    if (!pr) return;
    free(pr->sm_busy_ns);
    free(pr->sm_wait_ns);
    free(pr->sm_idle_ns);
    free(pr->path);
    free(pr->task_ns);
    free(pr);
}

/* ---- export ------------------------------------------------------------------- */

static void task_name(const struct mk_plan *p, uint32_t t, char *buf, size_t cap)
{
    const struct mk_task *tk = &p->tasks[t];
    if (tk->layer == 0xffff) snprintf(buf, cap, "%s", op_of(p, t));
    else snprintf(buf, cap, "%s L%u", op_of(p, t), (unsigned)tk->layer);
}

static void trace_task(const struct prof_ctx *c, int s, uint32_t t, FILE *f)
{
    const struct mk_task *tk = &c->p->tasks[t];
    double w = (double)(r_wait(c, s, t) - c->t0), r = (double)(r_ready(c, s, t) - c->t0);
    double e = (double)(r_end(c, s, t) - c->t0);
    if (r > w) {
        int bs;
        uint32_t b = binding(c, s, t, &bs);
        fprintf(f, ",\n{\"name\":\"wait\",\"cat\":\"wait\",\"ph\":\"X\",\"pid\":0,\"tid\":%u,"
                "\"ts\":%.3f,\"dur\":%.3f,\"args\":{\"task\":%u,\"step\":%d,\"waited_on\":\"%s\"}}",
                c->sm[t], w / 1e3, (r - w) / 1e3, t, s, b == MK_NONE ? "none" : op_of(c->p, b));
    }
    char name[64];
    task_name(c->p, t, name, sizeof name);
    fprintf(f, ",\n{\"name\":\"%s\",\"cat\":\"task\",\"ph\":\"X\",\"pid\":0,\"tid\":%u,"
            "\"ts\":%.3f,\"dur\":%.3f,\"args\":{\"task\":%u,\"step\":%d,\"layer\":%d,"
            "\"split\":%u,\"wait_ns\":%.0f}}", name, c->sm[t], r / 1e3, (e - r) / 1e3, t, s,
            tk->layer == 0xffff ? -1 : (int)tk->layer, (unsigned)tk->split, r - w);
}

enum mk_status mk_profile_write_trace(const struct mk_plan *p, const uint64_t *rec,
                                      int n_steps, FILE *f)
{
    struct prof_ctx c;
    enum mk_status s = ctx_init(&c, p, rec, n_steps);
    if (s != MK_OK) return s;
    fprintf(f, "{\"displayTimeUnit\":\"ns\",\"traceEvents\":[\n{\"name\":\"process_name\","
            "\"ph\":\"M\",\"pid\":0,\"args\":{\"name\":\"megakernel\"}}");
    for (uint32_t i = 0; i < c.S; i++)
        fprintf(f, ",\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":0,\"tid\":%u,"
                "\"args\":{\"name\":\"SM %u\"}}", i, i);
    for (int st = 0; st < n_steps; st++)
        for (uint32_t i = 0; i < c.S; i++)
            for (uint32_t k = p->prog_start[i]; k < p->prog_start[i + 1]; k++)
                trace_task(&c, st, p->prog_tasks[k], f);
    fputs("\n]}\n", f);
    ctx_free(&c);
    if (ferror(f)) return mk_error(MK_ERR_IO, "profile: writing the trace failed");
    return MK_OK;
}

static void summary_ops(const struct mk_profile *pr, FILE *f)
{
    double st = pr->n_steps;
    fprintf(f, "time by op (per step; busy = ready..end, wait = before ready; waited-on = "
            "waits this op's tasks ended last for; crit = on the critical path):\n");
    fprintf(f, "  %-16s %6s %10s %6s %9s %9s %11s %10s %10s\n", "op", "tasks", "busy us",
            "share", "mean us", "wait us", "waited-on", "crit busy", "crit wait");
    for (int k = 0; k < MK_TASK_OP_COUNT; k++) {
        const struct mk_profile_op *o = &pr->op[k];
        if (!o->runs && !o->waited_on_ns) continue;
        fprintf(f, "  %-16s %6.0f %10.2f %5.1f%% %9.3f %9.2f %11.2f %10.2f %10.2f\n",
                mk_task_op_name((enum mk_task_op)k), o->runs / st, o->busy_ns / st / 1e3,
                100.0 * o->busy_share, o->runs ? o->busy_ns / o->runs / 1e3 : 0.0,
                o->wait_ns / st / 1e3, o->waited_on_ns / st / 1e3, o->crit_busy_ns / st / 1e3,
                o->crit_wait_ns / st / 1e3);
    }
    fprintf(f, "  waits with no producer in the profile (no waits, or before step 0): "
            "%.2f us/step\n", pr->wait_unbound_ns / st / 1e3);
    for (int k = 0; k < MK_TASK_OP_COUNT; k++) {
        const struct mk_profile_op *o = &pr->op[k];
        if (!o->phased_runs) continue;
        double n = (double)o->phased_runs, act = o->act_ns / n / 1e3, gemv = o->gemv_ns / n / 1e3;
        fprintf(f, "  %-16s phased linear tasks (%.0f%% of runs), mean us: activation row %.3f, "
                "GEMV %.3f\n", mk_task_op_name((enum mk_task_op)k), 100.0 * n / o->runs, act,
                gemv);
    }
}

struct hop_key { double wait; uint32_t k; };

static int cmp_hop_wait(const void *x, const void *y) /* longest wait first, then path order */
{
    const struct hop_key *a = x, *b = y;
    if (a->wait != b->wait) return a->wait < b->wait ? 1 : -1;
    return (a->k > b->k) - (a->k < b->k);
}

/* The critical path of the median step: its longest waits. */
static void summary_path(const struct mk_plan *p, const struct mk_profile *pr, FILE *f)
{
    enum { SHOW = 8 };
    static const char *const via[] = {"start", "SM program", "event"};
    struct hop_key *keys = malloc(sizeof *keys * (pr->n_path + 1));
    fprintf(f, "critical path of step %d (the median step): %u hops; its longest waits:\n",
            pr->crit_step, pr->n_path);
    if (!keys) return;
    for (uint32_t k = 0; k < pr->n_path; k++) keys[k] = (struct hop_key){pr->path[k].wait_ns, k};
    qsort(keys, pr->n_path, sizeof *keys, cmp_hop_wait);
    for (uint32_t i = 0; i < pr->n_path && i < SHOW; i++) {
        const struct mk_profile_hop *h = &pr->path[keys[i].k];
        char name[64];
        task_name(p, h->task, name, sizeof name);
        fprintf(f, "  hop %4u task %5u %-20s via %-10s wait %8.3f us, busy %8.3f us\n",
                keys[i].k, h->task, name, via[h->via], h->wait_ns / 1e3, h->busy_ns / 1e3);
    }
    free(keys);
}

void mk_profile_write_summary(const struct mk_plan *p, const struct mk_profile *pr, FILE *f)
{
    fprintf(f, "profile: %d steps, %u tasks on %d SMs; step wall mean %.3f us, median %.3f us; "
            "busy %.1f%% of SM time\n", pr->n_steps, pr->n_tasks, pr->n_sms,
            pr->step_ns_mean / 1e3, pr->step_ns_median / 1e3,
            pr->window_ns > 0 ? 100.0 * pr->busy_ns / (pr->window_ns * pr->n_sms) : 0.0);
    summary_ops(pr, f);
    int w = pr->idle_worst_sm;
    fprintf(f, "per-SM idle (step wall - busy, per step): mean %.3f us; worst SM %d: %.3f us "
            "(busy %.3f us, waiting %.3f us)\n", pr->idle_mean_ns / 1e3, w,
            pr->idle_worst_ns / 1e3, pr->sm_busy_ns[w] / 1e3, pr->sm_wait_ns[w] / 1e3);
    fprintf(f, "critical path (per step): %.3f us = busy %.3f us + waits %.3f us; hops %.1f "
            "through SM programs, %.1f through events (%.3f us each: producer end -> "
            "consumer ready)\n", pr->crit_ns / 1e3, pr->crit_busy_ns / 1e3,
            pr->crit_wait_ns / 1e3, pr->crit_hops_sm, pr->crit_hops_event,
            pr->crit_hops_event > 0 ? pr->crit_wait_event_ns / pr->crit_hops_event / 1e3 : 0.0);
    summary_path(p, pr, f);
}
