/* All cross-SM memory ordering of the megakernel lives here.
 *
 * THE RULE (producer -> consumer through an event counter in global memory):
 *   producer: every thread does its stores; __syncthreads(); ONE thread does
 *             atom.add.release.gpu on each event it signals.
 *   consumer: ONE thread spins until counter >= target (ld.relaxed.gpu polls, then
 *             fence.acq_rel.gpu: together an acquire); __syncthreads(); then every
 *             thread loads.
 * The barrier makes the other threads' stores (producer) / loads (consumer) ordered with
 * the single thread's release / acquire; release and acquire are cumulative at gpu scope,
 * so the chain store -> bar -> release-add ... acquire-load -> bar -> load holds.
 * Never plain volatile. Data written inside the launch (activations, KV cache, tokens) is
 * read with ld.global.cg (L2, never a stale L1 line); only weights use the non-coherent
 * path.
 *
 * Every wait is bounded by %globaltimer: past the deadline the waiting thread writes one
 * record (SM, task, event, expected, seen) to host-mapped memory, raises the abort flag
 * that every other waiting CTA polls, and the kernel returns; the host turns that into
 * MK_ERR_TIMEOUT. The wait also gives up (without a record) once another CTA aborted or
 * once every sequence has ended before the waiting step (last_step < step): the
 * producers of such a step may have left the kernel already. */
#ifndef MK_SYNC_CUH
#define MK_SYNC_CUH

#include "runtime/gpu_abi.h"

#include <stdint.h>

static __device__ __forceinline__ uint32_t mk_ld_acquire(const uint32_t *p)
{
    uint32_t v;
    asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}

static __device__ __forceinline__ int32_t mk_ld_acquire_s32(const int32_t *p)
{
    int32_t v;
    asm volatile("ld.acquire.gpu.global.s32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}

static __device__ __forceinline__ void mk_add_release(uint32_t *p, uint32_t v)
{
    asm volatile("red.release.gpu.global.add.u32 [%0], %1;" :: "l"(p), "r"(v) : "memory");
}

static __device__ __forceinline__ void mk_st_release_s32(int32_t *p, int32_t v)
{
    asm volatile("st.release.gpu.global.s32 [%0], %1;" :: "l"(p), "r"(v) : "memory");
}

/* Host-mapped stores the host polls: system scope. */
static __device__ __forceinline__ void mk_st_release_sys_u32(uint32_t *p, uint32_t v)
{
    asm volatile("st.release.sys.global.u32 [%0], %1;" :: "l"(p), "r"(v) : "memory");
}

static __device__ __forceinline__ uint64_t mk_globaltimer(void)
{
    uint64_t t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

/* Why a wait returned. */
enum mk_wait_result { MK_WAIT_OK = 0, MK_WAIT_STOP = 1 };

static __device__ __forceinline__ uint32_t mk_ld_relaxed(const uint32_t *p)
{
    uint32_t v;
    asm volatile("ld.relaxed.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}

/* Polls between the (slower) checks of the abort flag, the stop step and the clock. */
enum { MK_WAIT_CHECK_EVERY = 64 };

/* Thread 0 only: wait until counters[event] >= target. The spin polls with relaxed loads
 * and ends with fence.acq_rel.gpu once the target is seen: a relaxed read of the
 * release-add followed by the fence is an acquire (PTX memory model, fence-based
 * synchronization), without an acquire's cost on every poll. MK_WAIT_STOP when the kernel
 * must end (timeout recorded here, another CTA's abort, every sequence already ended). */
static __device__ __noinline__ int mk_wait_event(const struct mk_gpu_args &a, uint32_t event,
                                          uint64_t target, uint32_t task, int step)
{
    const uint32_t *c = a.counters + event;
    uint32_t seen = mk_ld_acquire(c);
    if (seen >= target) return MK_WAIT_OK;
    uint64_t deadline = mk_globaltimer() + a.timeout_ns;
    for (uint32_t it = 1;; it++) {
        seen = mk_ld_relaxed(c);
        if (seen >= target) {
            asm volatile("fence.acq_rel.gpu;" ::: "memory");
            return MK_WAIT_OK;
        }
        if (it % MK_WAIT_CHECK_EVERY) continue;
        if (mk_ld_acquire(a.abort_flag) != 0) return MK_WAIT_STOP;
        if (mk_ld_acquire_s32(a.last_step) < step) return MK_WAIT_STOP;
        if (mk_globaltimer() > deadline) {
            if (atomicCAS(a.abort_flag, 0u, 1u) == 0u) {
                a.diag->sm = blockIdx.x;
                a.diag->task = task;
                a.diag->event = event;
                a.diag->step = (uint32_t)step;
                a.diag->expected = target;
                a.diag->seen = seen;
                __threadfence_system();
                mk_st_release_sys_u32(&a.diag->flag, 1u);
            }
            return MK_WAIT_STOP;
        }
    }
}

/* A task's descriptor with its waits (event, step offset, per_step) and signals, copied
 * into shared memory by one thread of warp 1 while the CTA runs the previous task, so
 * that the dependent reads of the plan tables (L2 round trips) leave the critical path.
 * Tasks with more waits or signals than cached read the rest from the tables. */
enum { MK_INFO_MAX = 8 };
struct mk_task_info {
    struct mk_task t;
    uint32_t id;
    uint32_t event[MK_INFO_MAX];
    int32_t offset[MK_INFO_MAX];
    uint32_t per_step[MK_INFO_MAX];
    uint32_t signal[MK_INFO_MAX];
};

static __device__ __forceinline__ void mk_fetch_info(const struct mk_gpu_args &a, uint32_t id,
                                              struct mk_task_info *dst)
{
    const struct mk_task t = a.tasks[id];
    dst->t = t;
    dst->id = id;
    for (uint32_t i = 0; i < t.n_wait && i < MK_INFO_MAX; i++) {
        struct mk_wait w = a.waits[t.wait_first + i];
        dst->event[i] = w.event;
        dst->offset[i] = w.step_offset;
        dst->per_step[i] = a.events[w.event].per_step;
    }
    for (uint32_t i = 0; i < t.n_signal && i < MK_INFO_MAX; i++)
        dst->signal[i] = a.signals[t.signal_first + i];
}

/* Whole CTA: wait for every event of the task at `step`. Returns false when the kernel
 * must end. `flag` is one shared int. */
static __device__ __forceinline__ bool mk_task_wait(const struct mk_gpu_args &a,
                                             const struct mk_task_info *ti, int step, int *flag)
{
    if (threadIdx.x == 0) {
        int r = MK_WAIT_OK;
        for (uint32_t i = 0; i < ti->t.n_wait && r == MK_WAIT_OK; i++) {
            struct mk_wait w;
            uint32_t per;
            if (i < MK_INFO_MAX) {
                w.event = ti->event[i];
                w.step_offset = ti->offset[i];
                per = ti->per_step[i];
            } else {
                w = a.waits[ti->t.wait_first + i];
                per = a.events[w.event].per_step;
            }
            int64_t target = (int64_t)(step + 1 + w.step_offset) * per;
            if (target > 0) r = mk_wait_event(a, w.event, (uint64_t)target, ti->id, step);
        }
        *flag = r;
    }
    __syncthreads();
    int r = *flag;
    __syncthreads(); /* *flag is reused by the next wait */
    return r == MK_WAIT_OK;
}

/* Whole CTA, after the task's stores: publish them on every event the task signals.
 * Thread 0 reads the cached signal list before the barrier: after it, warp 1 may refill
 * this buffer with the task after next. */
static __device__ __forceinline__ void mk_task_signal(const struct mk_gpu_args &a,
                                               const struct mk_task_info *ti)
{
    uint32_t sig[MK_INFO_MAX], n = 0, first = 0;
    if (threadIdx.x == 0) {
        n = ti->t.n_signal;
        first = ti->t.signal_first;
#pragma unroll
        for (uint32_t i = 0; i < MK_INFO_MAX; i++) sig[i] = i < n ? ti->signal[i] : 0;
    }
    __syncthreads();
    if (threadIdx.x == 0)
        for (uint32_t i = 0; i < n; i++)
            mk_add_release(a.counters + (i < MK_INFO_MAX ? sig[i] : a.signals[first + i]), 1u);
}

/* Loads of data written inside this launch: L2 only, never a stale L1 line. */
static __device__ __forceinline__ float mk_ld_act(const float *p) { return __ldcg(p); }
static __device__ __forceinline__ float4 mk_ld_act4(const float *p)
{
    return __ldcg(reinterpret_cast<const float4 *>(p));
}

#endif
