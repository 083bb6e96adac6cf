/* The per-op baseline's kernel (mk/per_op.h): the megakernel's task bodies, one fused op
 * group per launch. Block i of a launch runs task order[first + i] of the plan once, at
 * `step`, with no waits and no signals: the kernel boundary before it is the only
 * synchronisation. Batch buckets NB as the megakernel's. Host entry points extern "C". */
#include "mk/sample.h"
#include "runtime/gpu_abi.h"

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math_constants.h>
#include <stdint.h>

/* The task bodies are non-inline __device__ functions, which nvcc also gives external
 * host stubs: megakernel.cu defines the same names, so this copy stays internal. The
 * headers they include are included above, outside the namespace, so the shared types
 * (mk_gpu_args, mk_task, mk_gpu_seq) stay the global ones. */
namespace {
#include "tasks/attention.cuh"
#include "tasks/linear.cuh"
#include "tasks/token.cuh"
#include "tasks/dispatch.cuh"
} // namespace

template <int NB>
__global__ void __launch_bounds__(MK_GPU_THREADS, 1)
mk_per_op_kernel(const __grid_constant__ struct mk_gpu_args a, const uint32_t *order,
                 uint32_t first, int step)
{
    extern __shared__ __align__(16) char smem[];
    const struct mk_task t = a.tasks[order[first + blockIdx.x]];
    mk_ring_standalone<NB>(a, t, smem);
    mk_run_task<NB>(a, t, step, smem);
}

typedef void (*mk_per_op_fn)(struct mk_gpu_args, const uint32_t *, uint32_t, int);

static mk_per_op_fn mk_per_op_pick(int batch)
{
    if (batch <= 1) return mk_per_op_kernel<1>;
    if (batch <= 2) return mk_per_op_kernel<2>;
    if (batch <= 4) return mk_per_op_kernel<4>;
    if (batch <= 8) return mk_per_op_kernel<8>;
    return mk_per_op_kernel<16>;
}

/* Raise the dynamic shared-memory limit of this batch bucket's kernel. */
extern "C" cudaError_t mk_per_op_prepare(int batch, int smem_bytes)
{
    return cudaFuncSetAttribute((const void *)mk_per_op_pick(batch),
                                cudaFuncAttributeMaxDynamicSharedMemorySize, smem_bytes);
}

/* One group: tasks order[first .. first + n) as the n blocks of one grid. */
extern "C" cudaError_t mk_per_op_launch(const struct mk_gpu_args *a, const uint32_t *order,
                                        uint32_t first, uint32_t n, int step, cudaStream_t s)
{
    mk_per_op_pick(a->batch)<<<n, MK_GPU_THREADS, (size_t)a->smem_bytes, s>>>(*a, order, first,
                                                                               step);
    return cudaGetLastError();
}
