/* One task body by its op: the single dispatch of the megakernel (megakernel.cu) and of
 * the one-kernel-per-op baseline (per_op.cu), so both run exactly the same code. */
#ifndef MK_TASKS_DISPATCH_CUH
#define MK_TASKS_DISPATCH_CUH

#include "tasks/attention.cuh"
#include "tasks/linear.cuh"
#include "tasks/token.cuh"

template <int NB>
__device__ void mk_run_task(const struct mk_gpu_args &a, const struct mk_task &t, int step,
                            char *smem)
{
    switch (t.op) {
    case MK_TASK_EMBED: mk_task_embed(a, t); break;
    case MK_TASK_NORM_LINEAR: mk_task_norm_linear<NB>(a, t, smem); break;
    case MK_TASK_LINEAR_RESIDUAL: mk_task_linear_residual<NB>(a, t, smem); break;
    case MK_TASK_NORM_GATE_UP: mk_task_norm_gate_up<NB>(a, t, smem); break;
    case MK_TASK_ATTN_PARTIAL: mk_task_attn_partial<NB>(a, t, smem); break;
    case MK_TASK_ATTN_MERGE: mk_task_attn_merge<NB>(a, t); break;
    case MK_TASK_LOGITS: mk_task_logits<NB>(a, t, smem); break;
    case MK_TASK_SAMPLE: mk_task_sample(a, t, step, smem); break;
    default: break; /* NOP (and the retired QK_ROPE_KV: mk_plan_check refuses it) */
    }
}

#endif
