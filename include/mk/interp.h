/* megakernel — the CPU plan interpreter: runs a plan's tasks with CPU twins of every GPU
 * task body, on the same state the GPU has:
 *   weights  bf16, packed at the plan's offsets (plan->weight_bytes bytes)
 *   arena    fp32 activations at the plan's buffer offsets (plan->arena_bytes bytes)
 *   kv       bf16 KV cache in the layout of mk_plan_kv_offset (plan->kv_bytes bytes)
 *   tokens, pos, active   int32 [B] each (the runtime's per-sequence arrays)
 * Every reduction runs in one fixed order (k ascending; KV splits and argmax partials in
 * split order), so a run is bit-reproducible whatever the task order.
 *
 * mk_interp_run executes whole decode steps in a random order that respects only the
 * plan's events (never the per-SM programs: a plan must be correct by its events alone),
 * exactly as the GPU counts them: a task of step s waits until counter[e] >= (s + 1 +
 * step_offset) * per_step. With race tracking on, every element of the arena, the KV
 * cache and the per-sequence arrays remembers its last writer and its readers since;
 * an access that no chain of events orders after a conflicting one (read after write,
 * write after read, write after write) is a race, reported with both tasks.
 * Happens-before is the GPU's: waiting on an event acquires every signal made to it so
 * far (release-add / acquire-load on one counter).
 *
 * SAMPLE is greedy here (argmax over the LOGITS partials, ties to the lowest id); it
 * advances pos of active sequences and records each step's token (and, on request,
 * logits). Stop rules are the engine's, not the interpreter's.
 */
#ifndef MK_INTERP_H
#define MK_INTERP_H

#include "mk/plan.h"

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

struct mk_interp;

/* State for plan p (which must outlive it) with a copy of the packed bf16 weights
 * (plan->weight_bytes bytes, e.g. from mk_plan_pack_weights). Arena and KV cache start
 * zeroed, tokens 0, pos 0, every sequence active. */
enum mk_status mk_interp_new(const struct mk_plan *p, const void *weights,
                             struct mk_interp **out);
void mk_interp_free(struct mk_interp *it);

/* The state, to set inputs and read results (sizes above). */
float *mk_interp_arena(struct mk_interp *it);
uint16_t *mk_interp_kv(struct mk_interp *it);
uint16_t *mk_interp_weights(struct mk_interp *it);
int32_t *mk_interp_tokens(struct mk_interp *it);
int32_t *mk_interp_pos(struct mk_interp *it);
int32_t *mk_interp_active(struct mk_interp *it);

/* Run task t once on the current state (no events, no race tracking): the CPU twin a
 * one-block GPU harness compares a task body against. A SAMPLE task records nothing. */
enum mk_status mk_interp_run_task(struct mk_interp *it, uint32_t t);

struct mk_interp_opts {
    int n_steps;          /* decode steps to run (>= 1) */
    uint64_t seed;        /* the random task order */
    bool track_races;
    int32_t *tokens_out;  /* [n_steps][B] sampled tokens, or NULL */
    float *logits_out;    /* [n_steps][B][V] logits each step sampled from, or NULL */
};

struct mk_interp_report {
    uint64_t tasks_run;
    uint64_t races;       /* conflicting access pairs no event orders */
    char first_race[512]; /* "" when none */
};

/* Run opts->n_steps steps from the current state. MK_ERR_INTERNAL when no task can run
 * before all have (an event that is never reached), naming a stuck task, or when a task
 * meets impossible state (token id outside the vocabulary, position past max_ctx).
 * Races do not stop the run; they are counted in *rep. */
enum mk_status mk_interp_run(struct mk_interp *it, const struct mk_interp_opts *opts,
                             struct mk_interp_report *rep);

#ifdef __cplusplus
}
#endif
#endif /* MK_INTERP_H */
