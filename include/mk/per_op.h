/* megakernel — the "one kernel per operator" baseline of `mk bench` (issue 9).
 *
 * The same task bodies as the persistent megakernel (kernels/tasks/, *.cuh), launched the
 * way a conventional engine runs a decode step: one kernel per fused op group, the
 * group's tasks the blocks of its grid, kernel boundaries in place of the plan's events.
 * Steps are plain launches, or one step captured into a CUDA graph and replayed. What
 * the single persistent launch buys is the difference to the megakernel on the same
 * plan and checkpoint.
 *
 * Groups: a task's level is 1 + the highest level of the producers of the events it
 * waits on in the same step (waits on the previous step are met by the kernel
 * boundaries of that step); tasks of one (level, op, layer) form a group, groups run in
 * level order. The device state (weights, KV cache, arena, tables) is this baseline's
 * own; it also serves the prefill measurement (mk/prefill.h runs on it). */
#ifndef MK_PER_OP_H
#define MK_PER_OP_H

#include "mk/load.h"
#include "mk/plan.h"

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The launch order of plan p: order[n_tasks] task ids, group g = order[start[g] ..
 * start[g + 1]), *n_groups groups (start holds n_tasks + 1 entries). Host code, every
 * build. Errors: MK_ERR_FORMAT (a wait on an event nobody signals, a dependency cycle),
 * MK_ERR_NOMEM. */
enum mk_status mk_per_op_groups(const struct mk_plan *p, uint32_t *order, uint32_t *start,
                                uint32_t *n_groups);

struct mk_per_op; /* a model resident on the device for the per-op baseline */

/* Upload m's weights for plan p and allocate the KV cache, arena, tables and scratch,
 * and the prefill scratch for prefill_tokens tokens per call (0: no prefill). p and m
 * may be freed after. Errors: MK_ERR_NO_DEVICE, MK_ERR_FORMAT, MK_ERR_NOMEM,
 * MK_ERR_CUDA as mk_gpu_open; those of mk_prefill_new. */
enum mk_status mk_per_op_open(const struct mk_model *m, const struct mk_plan *p,
                              int prefill_tokens, struct mk_per_op **out);
void mk_per_op_close(struct mk_per_op *po); /* NULL is fine */

/* Greedy decode of n_seqs (<= plan batch) sequences: prompts[n_seqs][prompt_len] fed one
 * token per step, then n_gen generated tokens each (EOS ignored). out_tokens
 * [n_seqs][n_gen] (may be NULL); *ms_per_step: device time (CUDA events) of the steps
 * after the first generated token, divided by their count n_gen - 1 (n_gen >= 2).
 * graph: one step captured once into a CUDA graph (capture outside the timing).
 * Errors: MK_ERR_ARG, MK_ERR_LIMIT (prompt_len + n_gen past the plan's context),
 * MK_ERR_CUDA. */
enum mk_status mk_per_op_decode(struct mk_per_op *po, const int32_t *prompts, int n_seqs,
                                int prompt_len, int n_gen, bool graph, int32_t *out_tokens,
                                double *ms_per_step);

/* Prefill n_seqs prompts of n tokens each (mk/prefill.h, tensor cores) into slots
 * 0..n_seqs-1 at position 0; *ms = host time of the call (it waits for the device).
 * Errors: MK_ERR_LIMIT (more than the prefill_tokens of open), those of mk_prefill_run. */
enum mk_status mk_per_op_prefill(struct mk_per_op *po, const int32_t *prompts, int n_seqs,
                                 int n, double *ms);

#ifdef __cplusplus
}
#endif
#endif /* MK_PER_OP_H */
