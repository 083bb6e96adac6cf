/* The profile analysis (mk/profile.h) on records with known times:
 *   - a hand-made 4-task, 2-SM plan: time by op, per-SM idle, critical paths (through an
 *     event producer on the other SM, and along one SM's program), wait accounting;
 *   - a compiled tiny plan with records from an independent simulation of its programs
 *     (task time = its cost, a fixed latency after each awaited event): the critical
 *     path spans the whole step with one latency per event hop, medians are the costs,
 *     they reschedule the plan, and the Perfetto JSON parses with the expected events;
 *   - bad records and bad step counts are refused with a clear message. */
#include "check.h"
#include "mk/plan.h"
#include "mk/profile.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- the hand-made plan -------------------------------------------------------------
 * SM 0: t0 EMBED (signals e0), t2 LINEAR_RESIDUAL (waits e1 and e0, same step)
 * SM 1: t1 NORM_LINEAR (signals e1), t3 LOGITS (waits e0 of the previous step) */
struct mini {
    struct mk_plan p;
    struct mk_task tasks[4];
    struct mk_wait waits[3];
    uint32_t signals[2];
    struct mk_event events[2];
    uint32_t prog_start[3], prog_tasks[4];
};

static void mini_init(struct mini *m)
{
    memset(m, 0, sizeof *m);
    static const uint16_t ops[4] = {MK_TASK_EMBED, MK_TASK_NORM_LINEAR, MK_TASK_LINEAR_RESIDUAL,
                                    MK_TASK_LOGITS};
    for (int t = 0; t < 4; t++) {
        m->tasks[t].op = ops[t];
        m->tasks[t].layer = t == 1 || t == 2 ? 0 : 0xffff;
        m->tasks[t].n_split = 1;
    }
    m->tasks[0].signal_first = 0, m->tasks[0].n_signal = 1, m->signals[0] = 0;
    m->tasks[1].signal_first = 1, m->tasks[1].n_signal = 1, m->signals[1] = 1;
    m->tasks[2].wait_first = 0, m->tasks[2].n_wait = 2;
    m->waits[0] = (struct mk_wait){1, 0}, m->waits[1] = (struct mk_wait){0, 0};
    m->tasks[3].wait_first = 2, m->tasks[3].n_wait = 1, m->waits[2] = (struct mk_wait){0, -1};
    m->events[0].per_step = m->events[1].per_step = 1;
    static const uint32_t ps[3] = {0, 2, 4}, pt[4] = {0, 2, 1, 3};
    memcpy(m->prog_start, ps, sizeof ps);
    memcpy(m->prog_tasks, pt, sizeof pt);
    m->p = (struct mk_plan){.n_tasks = 4, .n_waits = 3, .n_signals = 2, .n_events = 2,
                            .tasks = m->tasks, .waits = m->waits, .signals = m->signals,
                            .events = m->events, .prog_start = m->prog_start,
                            .prog_tasks = m->prog_tasks};
    m->p.target.sm_count = 2;
}

static const uint64_t SM_OF[4] = {0, 1, 0, 1};

/* rec[step][task] = {wait, ready, end, sm} from {wait, ready, end} triples. */
static void fill(uint64_t *rec, int steps, const uint64_t (*t)[3])
{
    for (int s = 0; s < steps; s++)
        for (int k = 0; k < 4; k++) {
            uint64_t *r = rec + (s * 4 + k) * MK_PROF_FIELDS;
            r[0] = t[s * 4 + k][0], r[1] = t[s * 4 + k][1], r[2] = t[s * 4 + k][2];
            r[3] = SM_OF[k];
        }
}

/* Two steps; t2 waits on t1 (other SM) longer than its SM is busy with t0. */
static const uint64_t CROSS[8][3] = {
    {1000, 1000, 1100}, {1000, 1000, 1400}, {1100, 1450, 1600}, {1400, 1410, 1450},
    {1600, 1600, 1700}, {1450, 1450, 1750}, {1700, 1800, 1900}, {1750, 1760, 1800},
};

/* The hand-made plan's analysis of two steps of the CROSS records (NULL on failure). */
static struct mk_profile *analyze_cross(struct mini *m)
{
    mini_init(m);
    uint64_t rec[8 * MK_PROF_FIELDS];
    fill(rec, 2, CROSS);
    struct mk_profile *pr = NULL;
    CHECK_OK(mk_profile_analyze(&m->p, rec, 2, &pr));
    return pr;
}

static void op_time_idle_waits(void)
{
    struct mini m;
    struct mk_profile *pr = analyze_cross(&m);
    if (!pr) return;
    CHECK(pr->n_steps == 2 && pr->n_sms == 2 && pr->n_tasks == 4);
    CHECK_NEAR(pr->op[MK_TASK_EMBED].busy_ns, 200, 1e-9);
    CHECK_NEAR(pr->op[MK_TASK_NORM_LINEAR].busy_ns, 700, 1e-9);
    CHECK_NEAR(pr->op[MK_TASK_LINEAR_RESIDUAL].busy_ns, 250, 1e-9);
    CHECK_NEAR(pr->op[MK_TASK_LOGITS].busy_ns, 80, 1e-9);
    CHECK_NEAR(pr->busy_ns, 1230, 1e-9);
    CHECK_NEAR(pr->op[MK_TASK_NORM_LINEAR].busy_share, 700.0 / 1230, 1e-12);
    CHECK(pr->op[MK_TASK_EMBED].runs == 2 && pr->op[MK_TASK_SAMPLE].runs == 0);
    /* waits: t2 350 + 100 (on NORM_LINEAR), t3 10 (before step 0: unbound) + 10 (EMBED) */
    CHECK_NEAR(pr->op[MK_TASK_LINEAR_RESIDUAL].wait_ns, 450, 1e-9);
    CHECK_NEAR(pr->op[MK_TASK_LOGITS].wait_ns, 20, 1e-9);
    CHECK_NEAR(pr->op[MK_TASK_NORM_LINEAR].waited_on_ns, 450, 1e-9);
    CHECK_NEAR(pr->op[MK_TASK_EMBED].waited_on_ns, 10, 1e-9);
    CHECK_NEAR(pr->wait_unbound_ns, 10, 1e-9);
    /* window 900 ns: walls 600 and 300; per step SM 0 busy 225, SM 1 busy 390 */
    CHECK_NEAR(pr->window_ns, 900, 1e-9);
    CHECK_NEAR(pr->step_ns_mean, 450, 1e-9);
    CHECK_NEAR(pr->step_ns_median, 450, 1e-9);
    CHECK_NEAR(pr->sm_busy_ns[0], 225, 1e-9);
    CHECK_NEAR(pr->sm_idle_ns[0], 225, 1e-9);
    CHECK_NEAR(pr->sm_idle_ns[1], 60, 1e-9);
    CHECK_NEAR(pr->sm_wait_ns[0], 225, 1e-9);
    CHECK_NEAR(pr->idle_mean_ns, 142.5, 1e-9);
    CHECK(pr->idle_worst_sm == 0);
    CHECK_NEAR(pr->idle_worst_ns, 225, 1e-9);
    /* task medians (2 steps: the mean of both) */
    CHECK_NEAR(pr->task_ns[0], 100, 1e-6);
    CHECK_NEAR(pr->task_ns[1], 350, 1e-6);
    CHECK_NEAR(pr->task_ns[2], 125, 1e-6);
    CHECK_NEAR(pr->task_ns[3], 40, 1e-6);
    mk_profile_free(pr);
}

/* The path of each step: t1 (start) -> t2 through event e1, i.e. into the other SM. */
static void critical_path_through_producer(void)
{
    struct mini m;
    struct mk_profile *pr = analyze_cross(&m);
    if (!pr) return;
    /* step 0: t1 busy 400, t2 wait 1450 - 1400, busy 150 (600 = 1600 - 1000);
     * step 1: t1 busy 300 (SM 1's predecessor is in step 0: the path starts), t2 50 + 100 */
    CHECK_NEAR(pr->crit_busy_ns, (550 + 400) / 2.0, 1e-9);
    CHECK_NEAR(pr->crit_wait_ns, 50, 1e-9);
    CHECK_NEAR(pr->crit_ns, 525, 1e-9);
    CHECK_NEAR(pr->crit_hops_event, 1, 1e-12);
    CHECK_NEAR(pr->crit_hops_sm, 0, 1e-12);
    CHECK_NEAR(pr->crit_wait_event_ns, 50, 1e-9);
    CHECK_NEAR(pr->op[MK_TASK_NORM_LINEAR].crit_busy_ns, 700, 1e-9);
    CHECK_NEAR(pr->op[MK_TASK_LINEAR_RESIDUAL].crit_busy_ns, 250, 1e-9);
    CHECK_NEAR(pr->op[MK_TASK_LINEAR_RESIDUAL].crit_wait_ns, 100, 1e-9);
    CHECK_NEAR(pr->op[MK_TASK_EMBED].crit_busy_ns, 0, 1e-9);
    CHECK(pr->crit_step == 1); /* walls 600, 300: the lower middle */
    CHECK(pr->n_path == 2);
    if (pr->n_path == 2) {
        CHECK(pr->path[0].task == 1 && pr->path[0].via == MK_PROF_VIA_START);
        CHECK(pr->path[1].task == 2 && pr->path[1].via == MK_PROF_VIA_EVENT);
        CHECK_NEAR(pr->path[0].busy_ns, 300, 1e-9);
        CHECK_NEAR(pr->path[1].wait_ns, 50, 1e-9);
    }
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    mk_profile_write_summary(&m.p, pr, f);
    fclose(f);
    CHECKF(strstr(text, "NORM_LINEAR") && strstr(text, "critical path") &&
           strstr(text, "worst SM 0"), "%s", text);
    free(text);
    mk_profile_free(pr);
}

/* t1 ends before t0: t2 is gated by its own SM (t0), not by the other SM's event. */
static void critical_path_on_one_sm(void)
{
    static const uint64_t ONE[4][3] = {
        {1000, 1000, 1500}, {1000, 1000, 1200}, {1500, 1520, 1700}, {1200, 1200, 1300},
    };
    struct mini m;
    mini_init(&m);
    uint64_t rec[4 * MK_PROF_FIELDS];
    fill(rec, 1, ONE);
    struct mk_profile *pr = NULL;
    CHECK_OK(mk_profile_analyze(&m.p, rec, 1, &pr));
    if (!pr) return;
    CHECK_NEAR(pr->crit_ns, 700, 1e-9);
    CHECK_NEAR(pr->crit_busy_ns, 680, 1e-9);
    CHECK_NEAR(pr->crit_wait_ns, 20, 1e-9);
    CHECK_NEAR(pr->crit_hops_sm, 1, 1e-12);
    CHECK_NEAR(pr->crit_hops_event, 0, 1e-12);
    CHECK_NEAR(pr->crit_wait_event_ns, 0, 1e-9);
    CHECK(pr->n_path == 2 && pr->path[0].task == 0 && pr->path[1].task == 2 &&
          pr->path[1].via == MK_PROF_VIA_SM);
    /* its 20 ns wait is charged to the event completed last: e0 of t0 (EMBED) */
    CHECK_NEAR(pr->op[MK_TASK_EMBED].waited_on_ns, 20, 1e-9);
    CHECK_NEAR(pr->op[MK_TASK_NORM_LINEAR].waited_on_ns, 0, 1e-9);
    mk_profile_free(pr);
}

static void bad_records(void)
{
    struct mini m;
    mini_init(&m);
    uint64_t rec[8 * MK_PROF_FIELDS];
    struct mk_profile *pr = NULL;
    fill(rec, 2, CROSS);
    CHECK(mk_profile_analyze(&m.p, rec, 0, &pr) == MK_ERR_ARG && pr == NULL);
    CHECKF(strstr(mk_errmsg(), "0 steps, expected >= 1"), "%s", mk_errmsg());
    rec[(4 + 2) * MK_PROF_FIELDS + 2] = 1790; /* step 1, task 2: end < ready */
    CHECK(mk_profile_analyze(&m.p, rec, 2, &pr) == MK_ERR_ARG && pr == NULL);
    CHECKF(strstr(mk_errmsg(), "step 1, task 2 (LINEAR_RESIDUAL)") &&
           strstr(mk_errmsg(), "expected wait <= ready <= end"), "%s", mk_errmsg());
    fill(rec, 2, CROSS);
    rec[1 * MK_PROF_FIELDS + 1] = 900; /* ready < wait */
    CHECK(mk_profile_analyze(&m.p, rec, 2, &pr) == MK_ERR_ARG);
    fill(rec, 2, CROSS);
    rec[3 * MK_PROF_FIELDS + 3] = 0; /* task 3 runs on SM 1 */
    CHECK(mk_profile_analyze(&m.p, rec, 2, &pr) == MK_ERR_ARG);
    CHECKF(strstr(mk_errmsg(), "ran on SM 0, expected SM 1"), "%s", mk_errmsg());
    fill(rec, 2, CROSS);
    memset(rec + 7 * MK_PROF_FIELDS, 0, 3 * sizeof *rec); /* never written */
    CHECK(mk_profile_analyze(&m.p, rec, 2, &pr) == MK_ERR_ARG);
    CHECKF(strstr(mk_errmsg(), "no record"), "%s", mk_errmsg());
    FILE *f = tmpfile();
    CHECK(mk_profile_write_trace(&m.p, rec, 2, f) == MK_ERR_ARG);
    fclose(f);
    fill(rec, 2, CROSS);
    m.prog_tasks[1] = 0; /* task 0 twice, task 2 nowhere */
    CHECK(mk_profile_analyze(&m.p, rec, 2, &pr) == MK_ERR_ARG);
}

/* ---- a compiled plan, simulated ------------------------------------------------------ */

enum { SIM_SYNC_NS = 700, SIM_STEPS = 3 };

static uint64_t cost_of(const struct mk_plan *p, uint32_t t)
{
    return (uint64_t)p->task_cost_ns[t] + 10 + t % 7;
}

/* Each SM runs its program step after step; a task starts when its SM is free, or
 * SIM_SYNC_NS after the last producer of its awaited events (of step s + offset) ended. */
static void simulate(const struct mk_plan *p, uint64_t *rec)
{
    uint32_t S = (uint32_t)p->target.sm_count, n = p->n_tasks, E = p->n_events;
    uint32_t *pos = calloc(S, sizeof *pos);
    uint64_t *free_at = malloc(S * sizeof *free_at);
    for (uint32_t i = 0; i < S; i++) free_at[i] = 1000; /* 0 would read as "not written" */
    uint32_t *count = calloc((size_t)SIM_STEPS * E, sizeof *count);
    uint64_t *done = calloc((size_t)SIM_STEPS * E, sizeof *done);
    uint32_t left = n * SIM_STEPS;
    while (left) {
        uint32_t before = left;
        for (uint32_t i = 0; i < S; i++) {
            uint32_t len = p->prog_start[i + 1] - p->prog_start[i];
            if (!len || pos[i] >= len * SIM_STEPS) continue;
            int s = (int)(pos[i] / len);
            uint32_t t = p->prog_tasks[p->prog_start[i] + pos[i] % len];
            const struct mk_task *tk = &p->tasks[t];
            uint64_t ready = free_at[i];
            bool ok = true;
            for (uint32_t k = 0; k < tk->n_wait && ok; k++) {
                const struct mk_wait *w = &p->waits[tk->wait_first + k];
                int ps = s + w->step_offset;
                if (ps < 0) continue;
                size_t x = (size_t)ps * E + w->event;
                ok = count[x] == p->events[w->event].per_step;
                if (ok && done[x] + SIM_SYNC_NS > ready) ready = done[x] + SIM_SYNC_NS;
            }
            if (!ok) continue;
            uint64_t *r = rec + ((size_t)s * n + t) * MK_PROF_FIELDS;
            r[0] = free_at[i], r[1] = ready, r[2] = ready + cost_of(p, t), r[3] = i;
            free_at[i] = r[2];
            for (uint32_t k = 0; k < tk->n_signal; k++) {
                size_t x = (size_t)s * E + p->signals[tk->signal_first + k];
                count[x]++;
                done[x] = r[2] > done[x] ? r[2] : done[x];
            }
            pos[i]++;
            left--;
        }
        MK_ASSERT(left < before); /* the plan is deadlock-free */
    }
    free(pos); free(free_at); free(count); free(done);
}

static struct mk_plan *tiny_plan(void)
{
    struct mk_config c = {.family = MK_FAMILY_QWEN3, .vocab_size = 256, .hidden_size = 64,
                          .intermediate_size = 128, .n_layers = 2, .n_heads = 4,
                          .n_kv_heads = 2, .head_dim = 16, .max_position = 4096,
                          .rms_norm_eps = 1e-6f, .rope_theta = 1e6f, .dtype = MK_DTYPE_BF16,
                          .bos_token_id = -1, .qk_norm = true};
    struct mk_target t = mk_target_h100(2, 64);
    t.sm_count = 6;
    struct mk_plan *p = NULL;
    CHECK_OK(mk_plan_compile(&c, &t, &p));
    return p;
}

static void compiled_plan_simulated(void)
{
    struct mk_plan *p = tiny_plan();
    if (!p) return;
    uint64_t *rec = calloc((size_t)SIM_STEPS * p->n_tasks * MK_PROF_FIELDS, sizeof *rec);
    simulate(p, rec);
    struct mk_profile *pr = NULL;
    CHECK_OK(mk_profile_analyze(p, rec, SIM_STEPS, &pr));
    if (pr) {
        double work = 0;
        for (uint32_t t = 0; t < p->n_tasks; t++) {
            CHECK_NEAR(pr->task_ns[t], (double)cost_of(p, t), 1e-6);
            work += (double)cost_of(p, t);
        }
        double ops = 0;
        for (int k = 0; k < MK_TASK_OP_COUNT; k++) ops += pr->op[k].busy_ns;
        CHECK_NEAR(ops, work * SIM_STEPS, 1e-6);
        /* a hop (the first of a step included) waits at most one event latency */
        CHECK(pr->crit_wait_ns >= 0);
        double hops = pr->crit_hops_event + pr->crit_hops_sm + 1;
        CHECK(pr->crit_wait_ns <= SIM_SYNC_NS * hops + 1e-6);
        CHECK(pr->crit_hops_event >= 1);
        CHECK_NEAR(pr->crit_wait_event_ns, SIM_SYNC_NS * pr->crit_hops_event, 1e-6);
        /* step 0 starts everywhere at once: its path is its whole wall */
        struct mk_profile *p0 = NULL;
        CHECK_OK(mk_profile_analyze(p, rec, 1, &p0));
        if (p0) {
            CHECK_NEAR(p0->crit_ns, p0->window_ns, 1e-6);
            double sum = 0;
            for (uint32_t k = 0; k < p0->n_path; k++)
                sum += p0->path[k].busy_ns + p0->path[k].wait_ns;
            CHECK_NEAR(sum, p0->window_ns, 1e-6);
            CHECK(p0->path[0].via == MK_PROF_VIA_START);
            /* a hop through an event waited exactly the latency; one behind its SM at most
             * that (an event that ended earlier, plus the latency); the first none */
            for (uint32_t k = 0; k < p0->n_path; k++) {
                const struct mk_profile_hop *h = &p0->path[k];
                if (h->via == MK_PROF_VIA_EVENT) CHECK_NEAR(h->wait_ns, SIM_SYNC_NS, 1e-9);
                else if (h->via == MK_PROF_VIA_SM)
                    CHECK(h->wait_ns >= 0 && h->wait_ns <= SIM_SYNC_NS);
                else CHECK_NEAR(h->wait_ns, 0, 1e-9);
                CHECK_NEAR(h->busy_ns, (double)cost_of(p, h->task), 1e-9);
            }
        }
        mk_profile_free(p0);
        double c0 = (double)cost_of(p, 0);
        CHECK_OK(mk_plan_schedule(p, pr->task_ns));
        CHECK_OK(mk_plan_check(p));
        CHECK_NEAR(p->task_cost_ns[0], c0, 1e-3);
    }
    mk_profile_free(pr);
    free(rec);
    mk_plan_free(p);
}

static void trace_json(void)
{
    struct mk_plan *p = tiny_plan();
    if (!p) return;
    uint64_t *rec = calloc((size_t)SIM_STEPS * p->n_tasks * MK_PROF_FIELDS, sizeof *rec);
    simulate(p, rec);
    size_t waits = 0;
    for (size_t k = 0; k < (size_t)SIM_STEPS * p->n_tasks; k++)
        waits += rec[k * MK_PROF_FIELDS + 1] > rec[k * MK_PROF_FIELDS];
    CHECK(waits > 0);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    CHECK_OK(mk_profile_write_trace(p, rec, SIM_STEPS, f));
    fclose(f);
    json_error_t err;
    json_t *root = json_loads(text, 0, &err);
    CHECKF(root != NULL, "line %d: %s", err.line, err.text);
    json_t *ev = json_object_get(root, "traceEvents");
    CHECK(json_is_array(ev));
    size_t n = json_array_size(ev), tasks = 0, wslices = 0, meta = 0;
    double wait_ns = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(ev, i);
        const char *ph = json_string_value(json_object_get(e, "ph"));
        const char *cat = json_string_value(json_object_get(e, "cat"));
        if (ph && !strcmp(ph, "M")) { meta++; continue; }
        CHECK(ph && !strcmp(ph, "X") && json_integer_value(json_object_get(e, "pid")) == 0);
        CHECK(json_number_value(json_object_get(e, "dur")) >= 0);
        json_t *args = json_object_get(e, "args");
        json_int_t t = json_integer_value(json_object_get(args, "task"));
        json_int_t s = json_integer_value(json_object_get(args, "step"));
        CHECK(t >= 0 && (uint32_t)t < p->n_tasks && s >= 0 && s < SIM_STEPS);
        const uint64_t *r = rec + ((size_t)s * p->n_tasks + (size_t)t) * MK_PROF_FIELDS;
        CHECK(json_integer_value(json_object_get(e, "tid")) == (json_int_t)r[3]);
        if (cat && !strcmp(cat, "wait")) {
            wslices++;
            double dur = json_number_value(json_object_get(e, "dur")) * 1e3;
            CHECK_NEAR(dur, (double)(r[1] - r[0]), 0.5);
        } else {
            tasks++;
            double dur = json_number_value(json_object_get(e, "dur")) * 1e3;
            CHECK_NEAR(dur, (double)(r[2] - r[1]), 0.5);
            wait_ns += json_number_value(json_object_get(args, "wait_ns"));
        }
    }
    CHECK(meta == 1 + (size_t)p->target.sm_count);
    CHECK(tasks == (size_t)SIM_STEPS * p->n_tasks);
    CHECK(wslices == waits);
    CHECK(n == meta + tasks + wslices);
    struct mk_profile *pr = NULL;
    CHECK_OK(mk_profile_analyze(p, rec, SIM_STEPS, &pr));
    double want = pr ? pr->wait_unbound_ns : 0;
    for (int k = 0; pr && k < MK_TASK_OP_COUNT; k++) want += pr->op[k].waited_on_ns;
    CHECK_NEAR(wait_ns, want, 1e-3);
    mk_profile_free(pr);
    json_decref(root);
    free(text);
    free(rec);
    mk_plan_free(p);
}

int main(void)
{
    RUN(op_time_idle_waits);
    RUN(critical_path_through_producer);
    RUN(critical_path_on_one_sm);
    RUN(bad_records);
    RUN(compiled_plan_simulated);
    RUN(trace_json);
    CHECK_EXIT();
}
