/* The launch settings the megakernel (gpu_cuda.c) and the per-op baseline
 * (per_op_cuda.c) both take from their options and the environment: one place, so that
 * an A/B switch or a timeout applies to both. Host code of every build. */
#include "runtime/gpu_abi.h"

#include <stdlib.h>
#include <string.h>

void mk_gpu_args_env(struct mk_gpu_args *a, uint64_t opt_ms)
{
    uint64_t ms = opt_ms;
    const char *env = getenv("MK_GPU_WAIT_TIMEOUT_MS");
    if (!ms && env) ms = strtoull(env, NULL, 10);
    a->timeout_ns = (ms ? ms : MK_GPU_DEFAULT_TIMEOUT_MS) * 1000000ull;
    const char *ring = getenv("MK_GPU_RING"); /* "0": the direct GEMV only (A/B runs) */
    a->no_ring = ring && !strcmp(ring, "0");
}
