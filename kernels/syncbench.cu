/* The floor of the megakernel's cross-SM synchronization: the signal and the wait of
 * kernels/sync.cuh (red.release.gpu add; one ld.acquire, then ld.relaxed polls and
 * fence.acq_rel.gpu, in mk_wait_event itself) with no work between them, one CTA of
 * MK_GPU_THREADS threads per SM, one cooperative launch.
 *
 *   CHAIN       a relay: CTA i waits for its own counter (one 128-byte line each), then
 *               signals CTA i+1's; CTA 0 starts round r when CTA G-1's signal of round
 *               r-1 arrived. One round = G hops of one producer -> one consumer.
 *   LEVEL       every CTA signals one counter, then waits for it to reach G * (level+1):
 *               an all-to-all level (a GEMV level followed by its consumers, zero work).
 *   LEVEL_BAR   LEVEL through mk_task_signal / mk_task_wait, as a task runs them:
 *               __syncthreads() before the signal, two after the wait.
 *   LEVEL_DATA  LEVEL_BAR plus the smallest data handoff: before the signal each CTA
 *               stores its 16-byte slots of a 4 KiB fp32 row (slot s belongs to CTA
 *               s % G), after the wait threads 0..255 read the whole row with 16-byte
 *               ld.global.cg loads and check that every slot holds this level's value.
 *
 * The raw tests (CHAIN, LEVEL) run on thread 0 only, as the megakernel's waits do; the
 * other threads leave. Host entry point extern "C" (src/runtime/syncbench_cuda.c). */
#include "sync.cuh"
#include "runtime/syncbench_abi.h"
#include "mk/runtime.h"

#include <cuda_runtime.h>

/* CTA 0, thread 0, after the wait of unit u: the clock at every per_sample-th unit. */
static __device__ __forceinline__ void mk_sync_stamp(const struct mk_sync_bench_args &p, int u)
{
    if (blockIdx.x == 0 && threadIdx.x == 0 && u > 0 && u % p.per_sample == 0)
        p.stamps[u / p.per_sample - 1] = mk_globaltimer();
}

static __device__ __forceinline__ int mk_sync_units(const struct mk_sync_bench_args &p)
{
    return (p.samples + 1) * p.per_sample + 1;
}

static __device__ void mk_sync_chain(const struct mk_gpu_args &a, const struct mk_sync_bench_args &p)
{
    const uint32_t G = gridDim.x, me = blockIdx.x;
    const uint32_t mine = me * MK_SYNC_STRIDE, next = (me + 1) % G * MK_SYNC_STRIDE;
    const int units = mk_sync_units(p);
    for (int u = 0; u < units; u++) {
        /* CTA 0's counter counts the rounds already completed; the others' the current one */
        uint64_t target = me == 0 ? (uint64_t)u : (uint64_t)u + 1;
        if (target > 0 && mk_wait_event(a, mine, target, me, u) != MK_WAIT_OK) return;
        mk_sync_stamp(p, u);
        mk_add_release(a.counters + next, 1u);
    }
}

static __device__ void mk_sync_level(const struct mk_gpu_args &a, const struct mk_sync_bench_args &p)
{
    const uint32_t G = gridDim.x;
    const int units = mk_sync_units(p);
    for (int u = 0; u < units; u++) {
        mk_add_release(a.counters, 1u);
        if (mk_wait_event(a, 0, (uint64_t)(u + 1) * G, blockIdx.x, u) != MK_WAIT_OK) return;
        mk_sync_stamp(p, u);
    }
}

/* This CTA's slots of the row of level u, then (after the level's wait) the check of all. */
static __device__ __forceinline__ void mk_sync_store_row(const struct mk_sync_bench_args &p, int u)
{
    enum { SLOTS = MK_SYNC_ROW_FLOATS / 4 };
    uint32_t s = blockIdx.x + threadIdx.x * gridDim.x;
    if (s < SLOTS) {
        float v = (float)u;
        reinterpret_cast<float4 *>(p.rows + (u & 1) * MK_SYNC_ROW_FLOATS)[s] = make_float4(v, v, v, v);
    }
}

static __device__ __forceinline__ void mk_sync_read_row(const struct mk_sync_bench_args &p, int u)
{
    if (threadIdx.x < MK_SYNC_ROW_FLOATS / 4) {
        float4 v = mk_ld_act4(p.rows + (u & 1) * MK_SYNC_ROW_FLOATS + threadIdx.x * 4);
        float want = (float)u;
        if (v.x != want || v.y != want || v.z != want || v.w != want) atomicAdd(p.errors, 1u);
    }
}

template <bool DATA>
static __device__ void mk_sync_level_task(const struct mk_gpu_args &a,
                                          const struct mk_sync_bench_args &p)
{
    /* A task of the plan's shape: one wait on event 0 (per_step = G producers, target
     * (level + 1) * G) and one signal of event 0, cached as the megakernel caches it. */
    __shared__ struct mk_task_info ti;
    __shared__ int flag;
    if (threadIdx.x == 0) {
        ti.t = mk_task{};
        ti.t.n_wait = 1;
        ti.t.n_signal = 1;
        ti.id = blockIdx.x;
        ti.event[0] = 0;
        ti.offset[0] = 0;
        ti.per_step[0] = gridDim.x;
        ti.signal[0] = 0;
    }
    __syncthreads();
    const int units = mk_sync_units(p);
    for (int u = 0; u < units; u++) {
        if (DATA) mk_sync_store_row(p, u);
        mk_task_signal(a, &ti);
        if (!mk_task_wait(a, &ti, u, &flag)) return;
        mk_sync_stamp(p, u);
        if (DATA) mk_sync_read_row(p, u);
    }
}

template <int TEST>
__global__ void __launch_bounds__(MK_GPU_THREADS, 1)
mk_sync_bench_kernel(const __grid_constant__ struct mk_gpu_args a,
                     const __grid_constant__ struct mk_sync_bench_args p)
{
    if (threadIdx.x == 0) {
        uint32_t sm;
        asm volatile("mov.u32 %0, %%smid;" : "=r"(sm));
        p.smid[blockIdx.x] = sm;
    }
    if (TEST == MK_SYNC_CHAIN) {
        if (threadIdx.x == 0) mk_sync_chain(a, p);
    } else if (TEST == MK_SYNC_LEVEL) {
        if (threadIdx.x == 0) mk_sync_level(a, p);
    } else {
        mk_sync_level_task<TEST == MK_SYNC_LEVEL_DATA>(a, p);
    }
}

typedef void (*mk_sync_fn)(struct mk_gpu_args, struct mk_sync_bench_args);

static mk_sync_fn mk_sync_pick(int test)
{
    switch (test) {
    case MK_SYNC_CHAIN: return mk_sync_bench_kernel<MK_SYNC_CHAIN>;
    case MK_SYNC_LEVEL: return mk_sync_bench_kernel<MK_SYNC_LEVEL>;
    case MK_SYNC_LEVEL_BAR: return mk_sync_bench_kernel<MK_SYNC_LEVEL_BAR>;
    default: return mk_sync_bench_kernel<MK_SYNC_LEVEL_DATA>;
    }
}

/* One cooperative launch of `grid` CTAs; `smem_bytes` of (unused) dynamic shared memory
 * keep a second CTA off each SM, as the megakernel's shared memory does. */
extern "C" cudaError_t mk_kernel_sync_bench(int test, const struct mk_gpu_args *a,
                                            const struct mk_sync_bench_args *p, int grid,
                                            int smem_bytes, cudaStream_t s)
{
    const void *fn = (const void *)mk_sync_pick(test);
    cudaError_t e = cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_bytes);
    if (e != cudaSuccess) return e;
    struct mk_gpu_args ac = *a;
    struct mk_sync_bench_args pc = *p;
    void *params[] = {&ac, &pc};
    return cudaLaunchCooperativeKernel(fn, dim3(grid), dim3(MK_GPU_THREADS), params,
                                       (size_t)smem_bytes, s);
}
