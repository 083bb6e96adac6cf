/* mk bench --profile / --pgo: the per-task profile of the first tg test of each batch
 * (mk_gpu_profile_begin, mk/profile.h) and the profile-guided plan.
 *
 * The tg test feeds its prompt one token per step (MK_GPU_PROMPT_STEP): steps [0, P)
 * consume the P prompt tokens, step s >= P decodes generated token s - P + 2 of N. The
 * profile records steps [0, P + K) and analyzes [P, P + K), K = min(--profile-steps,
 * N - 1): the same steps ms/token measures. The trace (PREFIX.json) holds the first
 * --profile-trace-steps of them (a step is ~250 bytes per task: Qwen3-8B's ~22,000 tasks
 * make ~6 MB a step), the analysis all.
 *
 * --pgo: the per-task medians of that profile replace the cost model's task times in
 * mk_plan_schedule, and the mean wait of the critical path's event hops (producer end ->
 * consumer ready) its target.sync_ns; the rescheduled plan runs on a second mk_gpu (the
 * first one stays open: weights twice on the device), the same test is measured
 * ("mk-pgo"), its tokens must equal the model plan's (a schedule moves tasks, it never
 * changes what they compute), and the plan's programs are restored for the tests that
 * follow. */
#include "bench.h"
#include "mk/plan.h"
#include "mk/profile.h"
#include "mk/runtime.h"

#include <stdlib.h>
#include <string.h>

enum { PREFIX_MAX = 2048 }; /* bytes of --profile PREFIX */

/* Summary text to stdout, or stderr when stdout carries the JSON lines. */
static FILE *report_stream(const struct bench_ctx *c)
{
    return c->o->json ? stderr : stdout;
}

static enum mk_status write_file(const char *prefix, const char *suffix, const struct mk_plan *p,
                                 const uint64_t *rec, int steps, const struct mk_profile *pr)
{
    char path[PREFIX_MAX + 200];
    snprintf(path, sizeof path, "%s%s", prefix, suffix);
    FILE *f = fopen(path, "w");
    if (!f) return mk_error(MK_ERR_IO, "bench: --profile: cannot write %s", path);
    enum mk_status s = MK_OK;
    if (pr) mk_profile_write_summary(p, pr, f);
    else s = mk_profile_write_trace(p, rec, steps, f);
    if (fclose(f) != 0 && s == MK_OK)
        s = mk_error(MK_ERR_IO, "bench: --profile: writing %s failed", path);
    return s;
}

/* One generate of req with the profile on; *out the analysis of its decode steps, and,
 * with a prefix, PREFIX.json and PREFIX.txt written. */
static enum mk_status profile_once(const struct bench_ctx *c, struct mk_gpu *g,
                                   const struct mk_plan *p, const struct mk_gpu_request *req,
                                   int n, const char *prefix, struct mk_profile **out)
{
    int P = req[0].prompt_len, N = req[0].max_new;
    int K = c->o->profile_steps < N - 1 ? c->o->profile_steps : N - 1;
    enum mk_status s = mk_gpu_profile_begin(g, P + K);
    if (s != MK_OK) return s;
    size_t per_step = (size_t)p->n_tasks * MK_PROF_FIELDS;
    uint64_t *rec = malloc(sizeof *rec * per_step * (size_t)(P + K));
    struct mk_gpu_stats st = {0};
    s = mk_gpu_generate(g, req, n, NULL, NULL, NULL, NULL, &st);
    /* read even after a failed launch: it turns the profile off */
    enum mk_status r = rec ? mk_gpu_profile_read(g, rec, P + K)
                           : mk_error(MK_ERR_NOMEM, "bench: no memory for the profile");
    if (s == MK_OK) s = r;
    if (s == MK_OK && st.steps < P + K)
        K = st.steps - P; /* every sequence ended early (a stop id): fewer steps to look at */
    if (s == MK_OK && K < 1)
        s = mk_error(MK_ERR_ARG, "bench: --profile: the launch ran %d steps, the prompt takes "
                     "%d: no decode step to profile", st.steps, P);
    const uint64_t *win = rec + per_step * (size_t)P;
    if (s == MK_OK) s = mk_profile_analyze(p, win, K, out);
    int T = c->o->profile_trace_steps < K ? c->o->profile_trace_steps : K;
    if (s == MK_OK && prefix) s = write_file(prefix, ".json", p, win, T, NULL);
    if (s == MK_OK && prefix) s = write_file(prefix, ".txt", p, win, K, *out);
    free(rec);
    return s;
}

/* The old programs of a plan, to put back after the profile-guided run. */
struct saved_sched {
    uint32_t *prog_start, *prog_tasks;
    float *cost;
    double predicted, sync;
};

static enum mk_status save_sched(const struct mk_plan *p, struct saved_sched *sv)
{
    size_t S = (size_t)p->target.sm_count + 1, n = p->n_tasks;
    sv->prog_start = malloc(sizeof *sv->prog_start * S);
    sv->prog_tasks = malloc(sizeof *sv->prog_tasks * n);
    sv->cost = malloc(sizeof *sv->cost * n);
    sv->predicted = p->predicted_step_ns;
    sv->sync = p->target.sync_ns;
    if (!sv->prog_start || !sv->prog_tasks || !sv->cost) {
        free(sv->prog_start); free(sv->prog_tasks); free(sv->cost);
        return mk_error(MK_ERR_NOMEM, "bench: no memory for the plan's programs");
    }
    memcpy(sv->prog_start, p->prog_start, sizeof *sv->prog_start * S);
    memcpy(sv->prog_tasks, p->prog_tasks, sizeof *sv->prog_tasks * n);
    memcpy(sv->cost, p->task_cost_ns, sizeof *sv->cost * n);
    return MK_OK;
}

static void restore_sched(struct mk_plan *p, struct saved_sched *sv)
{
    free(p->prog_start);
    free(p->prog_tasks);
    p->prog_start = sv->prog_start;
    p->prog_tasks = sv->prog_tasks;
    memcpy(p->task_cost_ns, sv->cost, sizeof *sv->cost * p->n_tasks);
    free(sv->cost);
    p->predicted_step_ns = sv->predicted;
    p->target.sync_ns = sv->sync;
}

static int first_difference(int32_t *const *want, int32_t *const *got, int n, int N, int *seq)
{
    for (int b = 0; b < n; b++)
        for (int i = 0; i < N; i++)
            if (want[b][i] != got[b][i]) return *seq = b, i;
    return -1;
}

/* Measure req on the plan rescheduled with task_ns and sync_ns (restored after). */
static enum mk_status run_pgo(const struct bench_ctx *c, const struct mk_model *m,
                              struct mk_plan *p, const float *task_ns, double sync_ns,
                              const struct mk_gpu_request *req, int n, int32_t *const *want,
                              const char *prefix, struct bench_pgo *out)
{
    const struct bench_opts *o = c->o;
    int N = req[0].max_new;
    struct saved_sched sv;
    enum mk_status s = save_sched(p, &sv);
    if (s != MK_OK) return s;
    p->target.sync_ns = sync_ns;
    s = mk_plan_schedule(p, task_ns);
    out->predicted_pgo_ns = p->predicted_step_ns;
    struct mk_gpu *g = NULL;
    const struct mk_gpu_options opt = {.prompt_mode = MK_GPU_PROMPT_STEP};
    if (s == MK_OK) s = mk_gpu_open(m, p, &opt, &g);
    int32_t *got[BENCH_MAX_BATCH] = {0};
    for (int b = 0; b < n && s == MK_OK; b++)
        if (!(got[b] = calloc((size_t)N, sizeof *got[b])))
            s = mk_error(MK_ERR_NOMEM, "bench: no memory for the tokens");
    double ms[1000];
    for (int r = -o->warmup; r < o->reps && s == MK_OK; r++) {
        struct mk_gpu_stats st;
        s = mk_gpu_generate(g, req, n, NULL, NULL, got, NULL, &st);
        if (s == MK_OK && r >= 0) ms[r] = (st.last_token_ms - st.first_token_ms) / (N - 1);
    }
    int seq = 0, at = s == MK_OK ? first_difference(want, got, n, N, &seq) : -1;
    if (at >= 0) {
        fprintf(stderr, "mk bench: MISMATCH: mk-pgo tg%d batch %d: sequence %d token %d is %d, "
                "the model plan's is %d: rescheduling changed the result\n", N, n, seq, at,
                got[seq][at], want[seq][at]);
        out->mismatch = 1;
    }
    if (s == MK_OK) out->st = bench_stat_of(ms, o->reps);
    if (s == MK_OK) { /* the rescheduled plan's profile: PREFIX-pgo.json, .txt */
        char pre[PREFIX_MAX + 100];
        snprintf(pre, sizeof pre, "%s-pgo", prefix ? prefix : "");
        struct mk_profile *pr = NULL;
        s = profile_once(c, g, p, req, n, prefix ? pre : NULL, &pr);
        if (s == MK_OK) out->crit_pgo_ns = pr->crit_ns, out->step_pgo_ns = pr->step_ns_median;
        mk_profile_free(pr);
    }
    for (int b = 0; b < n; b++) free(got[b]);
    mk_gpu_close(g);
    restore_sched(p, &sv);
    return s;
}

enum mk_status bench_profile_tg(const struct bench_ctx *c, const struct mk_model *m,
                                struct mk_plan *p, struct mk_gpu *g,
                                const struct mk_gpu_request *req, int n, int32_t *const *tokens,
                                struct bench_pgo *out)
{
    const struct bench_opts *o = c->o;
    FILE *f = report_stream(c);
    *out = (struct bench_pgo){.predicted_model_ns = p->predicted_step_ns};
    if (o->profile && strlen(o->profile) > PREFIX_MAX)
        return mk_error(MK_ERR_ARG, "bench: --profile: a prefix of %zu bytes, at most %d",
                        strlen(o->profile), PREFIX_MAX);
    char prefix[PREFIX_MAX + 20]; /* PREFIX, or PREFIX-bB when several batches are measured */
    if (o->batch.n > 1) snprintf(prefix, sizeof prefix, "%s-b%d", o->profile, n);
    else snprintf(prefix, sizeof prefix, "%s", o->profile ? o->profile : "");
    const char *pre = o->profile ? prefix : NULL;
    struct mk_profile *pr = NULL;
    enum mk_status s = profile_once(c, g, p, req, n, pre, &pr);
    if (s != MK_OK) return s;
    out->step_model_ns = pr->step_ns_median;
    out->crit_model_ns = pr->crit_ns;
    fprintf(f, "\nprofile of tg%d at depth %d, batch %d (%d decode steps)%s%s%s\n",
            req[0].max_new, req[0].prompt_len, n, pr->n_steps, pre ? ": " : "", pre ? pre : "",
            pre ? ".json, .txt" : "");
    mk_profile_write_summary(p, pr, f);
    out->sync_model_ns = p->target.sync_ns;
    out->sync_pgo_ns = pr->crit_hops_event > 0 ? pr->crit_wait_event_ns / pr->crit_hops_event
                                               : p->target.sync_ns;
    if (out->sync_pgo_ns < 0) out->sync_pgo_ns = 0;
    if (o->pgo) s = run_pgo(c, m, p, pr->task_ns, out->sync_pgo_ns, req, n, tokens, pre, out);
    mk_profile_free(pr);
    if (s == MK_OK && o->pgo) {
        out->measured = true;
        fprintf(f, "pgo: sync %.0f ns (cost model) -> %.0f ns (measured); predicted step "
                "%.3f us (cost model) -> %.3f us (measured times, rescheduled); profiled step "
                "(median) %.3f us -> %.3f us, critical path %.3f us -> %.3f us; tg %.4f "
                "ms/token (mk-pgo)\n", out->sync_model_ns, out->sync_pgo_ns,
                out->predicted_model_ns / 1e3, out->predicted_pgo_ns / 1e3,
                out->step_model_ns / 1e3, out->step_pgo_ns / 1e3, out->crit_model_ns / 1e3,
                out->crit_pgo_ns / 1e3, out->st.med);
    }
    return s;
}
