/* megakernel — analysis of the megakernel's per-task profile (pure C, no device needed).
 *
 * The records (written by the kernel when the profile is on, mk_gpu_profile_begin):
 * rec[(step * n_tasks + task) * 4 + i], %globaltimer ns, for steps [0, n_steps):
 *   i = 0  wait:  before the task's waits (its SM finished the previous task)
 *   i = 1  ready: after them (every event seen; the task's work starts)
 *   i = 2  end:   after its signals
 *   i = 3  the SM (CTA index) that ran it, bits 0..15; for a weight-ring task also ns
 *          from ready to its activation row (bits 16..39) and on to its GEMV's end (40..63)
 * so wait <= ready <= end. Terms used below:
 *   busy   end - ready          (work + signals)
 *   wait   ready - wait         (time the SM spent in the task's dependency waits)
 *   step wall  end of step s's last task - end of step s-1's last task (step 0: from the
 *          earliest wait), so that the walls of all steps add up to the profiled window
 *   idle of an SM in a step: step wall - its busy time (waiting + dispatch + done early)
 *   binding producer of a task: among the events it waits on, the one completed last
 *          (an event of step s completes when the last of its producers in step
 *          s + step_offset ended); the producer that ended last. Its wait is charged to
 *          that producer's op ("waited on").
 *   critical path of a step: from the task of the step that ended last, walk back to the
 *          task that gated each one: the previous task of its SM program or its binding
 *          producer, whichever ended later; the walk stops at a task with neither in the
 *          same step. Its length = end(last) - wait(first) = busy + wait along it, where
 *          a hop's wait is ready - end(predecessor) (ready - wait for the first). The
 *          timer is global but a producer reads it after its signal, so a consumer's
 *          ready may precede the producer's end by a few ns: hop waits are signed.
 */
#ifndef MK_PROFILE_H
#define MK_PROFILE_H

#include "mk/plan.h"

#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { MK_PROF_FIELDS = 4 }; /* uint64 per record: wait, ready, end, sm */

/* One op kind over all profiled steps. */
struct mk_profile_op {
    uint64_t runs;           /* task runs (tasks of this op x steps) */
    double busy_ns;          /* sum of busy */
    double busy_share;       /* busy_ns / busy of all ops */
    double wait_ns;          /* sum of the waits of tasks of this op */
    double waited_on_ns;     /* sum of the waits whose binding producer is of this op */
    double crit_busy_ns;     /* busy of its tasks on the steps' critical paths */
    double crit_wait_ns;     /* waits on the critical paths of hops into its tasks */
    /* Linear tasks on the weight ring (kernels/tasks/ring.cuh) and direct GEMVs over the
     * whole activation row (linear.cuh) also record two phases of their busy time: ready -> activation row in shared memory, then -> GEMV done (the
     * rest is the epilogue and the signal). Sums over phased_runs runs. */
    uint64_t phased_runs;
    double act_ns, gemv_ns;
};

/* One hop of a critical path (forward order). via: how the task was gated. */
enum mk_profile_via { MK_PROF_VIA_START = 0, MK_PROF_VIA_SM = 1, MK_PROF_VIA_EVENT = 2 };
struct mk_profile_hop {
    uint32_t task;
    uint32_t via;            /* enum mk_profile_via */
    double busy_ns, wait_ns;
};

struct mk_profile {
    int n_steps, n_sms;
    uint32_t n_tasks;
    double window_ns;        /* earliest wait .. latest end, all steps */
    double busy_ns;          /* all tasks, all steps */
    double step_ns_mean, step_ns_median;    /* step walls */
    struct mk_profile_op op[MK_TASK_OP_COUNT];
    double wait_unbound_ns;  /* waits with no binding producer in the profile (no waits,
                                or a previous-step event before step 0) */
    /* per SM, mean per step: [n_sms] */
    double *sm_busy_ns, *sm_wait_ns, *sm_idle_ns;
    double idle_mean_ns;     /* mean over SMs of sm_idle_ns */
    double idle_worst_ns;    /* the largest sm_idle_ns ... */
    int idle_worst_sm;       /* ... and its SM */
    /* critical paths, mean per step */
    double crit_ns, crit_busy_ns, crit_wait_ns;
    double crit_hops_sm, crit_hops_event;   /* hops gated by the SM / by an event */
    double crit_wait_event_ns;              /* the waits of the event hops: / hops_event =
                                               the cross-SM handoff as the kernel sees it */
    /* the critical path of step crit_step (the step of median wall), forward order */
    int crit_step;
    uint32_t n_path;
    struct mk_profile_hop *path;
    /* per task: median over steps of busy (what mk_plan_schedule takes) [n_tasks] */
    float *task_ns;
};

/* Check the records of n_steps steps against the plan (n_steps >= 1; every record
 * written, wait <= ready <= end, the SM the plan's programs run the task on) and analyze
 * them. MK_ERR_ARG for bad records (the message names step, task and field),
 * MK_ERR_NOMEM. On error *out is untouched. */
enum mk_status mk_profile_analyze(const struct mk_plan *p, const uint64_t *rec, int n_steps,
                                  struct mk_profile **out);
void mk_profile_free(struct mk_profile *pr); /* NULL is fine */

/* A Chrome / Perfetto trace (chrome://tracing, ui.perfetto.dev) of the checked records
 * (mk_profile_analyze first): {"traceEvents": [...]} with one "X" event per task run
 * (pid 0, tid = SM, ts/dur in microseconds from the earliest wait, name "op Llayer",
 * args task, step, layer, split, wait_ns, cat "task") and, before it, a "wait" slice (cat
 * "wait", args task, step, waited_on: the binding producer's op) when its wait is
 * positive; plus one thread_name "M" event per SM and a process_name one. */
enum mk_status mk_profile_write_trace(const struct mk_plan *p, const uint64_t *rec,
                                      int n_steps, FILE *f);

/* The text summary of an analysis: time by op, per-SM idle, the critical path, waits. */
void mk_profile_write_summary(const struct mk_plan *p, const struct mk_profile *pr, FILE *f);

#ifdef __cplusplus
}
#endif
#endif /* MK_PROFILE_H */
