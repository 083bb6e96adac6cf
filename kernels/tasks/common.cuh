/* Helpers every task body uses: buffer and weight addressing, activation reads that sum
 * K-split partials, bf16 unpacking, fixed-order block reductions, the shared-memory map.
 *
 * Shared memory of a CTA (dynamic, a.smem_bytes):
 *   [0, MK_SMEM_MISC)   struct mk_smem_misc: wait flag, per-row norms, reduction scratch
 *   [MK_SMEM_MISC, end) the task's work area (activation chunk, results, attention tiles)
 *
 * Activation buffers are fp32 row-major [B, N]. A buffer written by a K-split linear holds
 * P = bytes / (B * N * 4) partials one after the other ([P][B][N]); every reader sums
 * them in order p = 0..P-1 (a fixed order: bit-identical reruns). */
#ifndef MK_TASK_COMMON_CUH
#define MK_TASK_COMMON_CUH

#include "sync.cuh"

#include <cuda_bf16.h>
#include <math_constants.h>

enum { MK_SMEM_MISC = MK_GPU_SMEM_MISC, MK_WARPS = MK_GPU_THREADS / 32, MK_RING_WINDOW = 4 };

/* The weight-ring chunks of one task (kernels/tasks/ring.cuh): nmat weight matrices
 * (two for NORM_GATE_UP), each the contiguous mat_bytes from src[i] (rows of row_bytes),
 * cut into per_mat chunks; chunks == 0: the task does not use the ring. */
struct mk_ring_geom {
    uint32_t chunks, per_mat, nmat, row_bytes;
    uint32_t mat_bytes, pad;
    const char *src[2];
};

/* The plan-table entries a task reads (its weights' offsets and shapes, its buffers'
 * offsets and sizes), resolved from global memory by the thread that fetches the task's
 * descriptor ahead of time, so that the task itself finds them in shared memory instead
 * of paying L2 round trips after its waits (mk_own_*). */
struct mk_task_tables {
    uint32_t wid[3];              /* t.w0..w2 (MK_NONE: unused); buffers by place MK_IN0.. */
    uint32_t w_rows[3], w_cols[3];
    uint64_t w_off[3];
    uint64_t b_off[4], b_bytes[4];
};

/* The ring's stream counters (thread 0 writes them): chunks issued and released so far,
 * the producer's cursor (task seq, matrix, byte offset in it), the last task seq whose
 * descriptor the producer may read, and the first task seq it must not load (the
 * launch's end). */
struct mk_ring_state {
    uint32_t issued, released;
    uint32_t cur_seq, cur_mat, cur_off;
    uint32_t win_hi, seq_end;
};

struct mk_smem_misc {
    int flag;
    int pad[3];
    float rstd[MK_GPU_MAX_BATCH];
    float red[MK_WARPS * MK_GPU_MAX_BATCH];
    float vmax[MK_WARPS * MK_GPU_MAX_BATCH];
    int imax[MK_WARPS * MK_GPU_MAX_BATCH];
    int hist[256];               /* SAMPLE: radix histogram */
    unsigned long long key;      /* SAMPLE: broadcast key */
    float val;                   /* SAMPLE: broadcast value */
    int ival[2];                 /* SAMPLE: broadcast ints */
    /* Descriptors of the current task and the next MK_RING_WINDOW - 1 of the program
     * (task k of the stream in slot k % MK_RING_WINDOW), with their weight-ring chunks. */
    struct mk_task_info info[MK_RING_WINDOW];
    struct mk_ring_geom geom[MK_RING_WINDOW];
    struct mk_task_tables tabs[MK_RING_WINDOW];
    uint32_t cur;                 /* window slot of the running task (its tabs) */
    uint64_t ph[2];               /* profile: %globaltimer after the activation row and
                                     after the GEMV of a linear task (0: none) */
    uint64_t ring_full[MK_GPU_RING_STAGES]; /* mbarriers: slot's bulk copy landed */
    struct mk_ring_state ring;
};
static_assert(sizeof(struct mk_smem_misc) <= MK_SMEM_MISC, "misc area too small");

static __device__ __forceinline__ struct mk_smem_misc *mk_misc(char *smem)
{
    return reinterpret_cast<struct mk_smem_misc *>(smem);
}

/* Fill tb with task t's table entries (global reads: the descriptor-fetching thread). */
static __device__ __forceinline__ void mk_tables_fetch(const struct mk_gpu_args &a,
                                                       const struct mk_task &t,
                                                       struct mk_task_tables *tb)
{
    const uint32_t w[3] = {t.w0, t.w1, t.w2}, b[4] = {t.in0, t.in1, t.out, t.aux};
#pragma unroll
    for (int i = 0; i < 3; i++) {
        tb->wid[i] = w[i];
        const bool ok = w[i] != MK_NONE;
        tb->w_off[i] = ok ? a.w_off[w[i]] : 0;
        tb->w_rows[i] = ok ? a.w_rows[w[i]] : 0;
        tb->w_cols[i] = ok ? a.w_cols[w[i]] : 0;
    }
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const bool ok = b[i] != MK_NONE;
        tb->b_off[i] = ok ? a.buf_off[b[i]] : 0;
        tb->b_bytes[i] = ok ? a.buf_bytes[b[i]] : 0;
    }
}

/* The running task's resolved entries (misc->cur). */
static __device__ __forceinline__ const struct mk_task_tables *mk_tabs_cur(void)
{
    extern __shared__ __align__(16) char mk_dyn_smem[];
    const struct mk_smem_misc *m = reinterpret_cast<const struct mk_smem_misc *>(mk_dyn_smem);
    return &m->tabs[m->cur];
}

/* An activation operand: base pointer, row width N, batch B, P partials. */
struct mk_act {
    const float *p;
    uint32_t n;
    uint32_t parts;
    uint32_t batch;
};

/* Places of a task's buffers in its descriptor (and in struct mk_task_tables). */
enum { MK_IN0 = 0, MK_IN1 = 1, MK_OUT = 2, MK_AUX = 3 };

/* The running task's own operands by their place in its descriptor (weights w0..w2 =
 * 0..2, buffers MK_IN0 .. MK_AUX), read straight from its resolved entries with
 * no search by id: the code between a task's wait and its first load is on the critical
 * path (ncu: 248 instructions per warp there in NORM_LINEAR when the operands were looked
 * up by id and the ring geometry recomputed; ~0.7 us per task). An activation's number of
 * partials divides only when there is more than one. */
static __device__ __forceinline__ const uint16_t *mk_own_weight(const struct mk_gpu_args &a, int i)
{
    return reinterpret_cast<const uint16_t *>(a.weights + mk_tabs_cur()->w_off[i]);
}

static __device__ __forceinline__ float *mk_own_buf(const struct mk_gpu_args &a, int i)
{
    return reinterpret_cast<float *>(a.arena + mk_tabs_cur()->b_off[i]);
}

static __device__ __forceinline__ struct mk_act mk_own_act(const struct mk_gpu_args &a, int i,
                                                           uint32_t n)
{
    const struct mk_task_tables *tb = mk_tabs_cur();
    struct mk_act x;
    x.p = reinterpret_cast<const float *>(a.arena + tb->b_off[i]);
    x.n = n;
    x.batch = (uint32_t)a.batch;
    const uint64_t one = (uint64_t)a.batch * n * 4u, bytes = tb->b_bytes[i];
    const uint64_t parts = bytes == one || !one ? 1 : bytes / one;
    x.parts = parts ? (uint32_t)parts : 1u;
    return x;
}

/* Element (b, k) of an activation, partials summed in order. */
static __device__ __forceinline__ float mk_act_get(const struct mk_act &x, uint32_t b, uint32_t k)
{
    const float *p = x.p + (size_t)b * x.n + k;
    float v = mk_ld_act(p);
    for (uint32_t i = 1; i < x.parts; i++) v += mk_ld_act(p + (size_t)i * x.batch * x.n);
    return v;
}

static __device__ __forceinline__ float mk_bf16f(uint16_t v)
{
    return __uint_as_float((uint32_t)v << 16);
}

/* Weight element through the non-coherent path (weights never change in a launch). */
static __device__ __forceinline__ float mk_wget(const uint16_t *w, size_t i)
{
    return mk_bf16f(__ldg(w + i));
}

/* 16 bytes (8 bf16) of weights, streamed: not kept in L1. */
static __device__ __forceinline__ uint4 mk_wload16(const uint16_t *p)
{
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
    return v;
}

/* Ask the copy engine to bring [p, p + bytes) into L2 (bytes a multiple of 16). */
static __device__ __forceinline__ void mk_prefetch_l2(const void *p, uint32_t bytes)
{
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" :: "l"(p), "r"(bytes) : "memory");
}

static __device__ __forceinline__ void mk_unpack8(uint4 w, float f[8])
{
    f[0] = __uint_as_float(w.x << 16); f[1] = __uint_as_float(w.x & 0xffff0000u);
    f[2] = __uint_as_float(w.y << 16); f[3] = __uint_as_float(w.y & 0xffff0000u);
    f[4] = __uint_as_float(w.z << 16); f[5] = __uint_as_float(w.z & 0xffff0000u);
    f[6] = __uint_as_float(w.w << 16); f[7] = __uint_as_float(w.w & 0xffff0000u);
}

static __device__ __forceinline__ float mk_warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

static __device__ __forceinline__ float mk_warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}


/* rstd[b] = 1 / sqrt(mean_k x[b, k]^2 + eps) for b < B, over the whole row (n elements),
 * into misc->rstd. Fixed order: per-thread strided sums, warp tree, warps in order. */
template <int NB>
static __device__ void mk_block_rstd(const struct mk_act &x, uint32_t n, float eps,
                              struct mk_smem_misc *m)
{
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    float ss[NB];
#pragma unroll
    for (int b = 0; b < NB; b++) ss[b] = 0.0f;
    for (uint32_t k = threadIdx.x; k < n; k += blockDim.x)
#pragma unroll
        for (int b = 0; b < NB; b++)
            if (b < (int)x.batch) {
                float v = mk_act_get(x, b, k);
                ss[b] += v * v;
            }
#pragma unroll
    for (int b = 0; b < NB; b++) {
        float s = mk_warp_sum(ss[b]);
        if (lane == 0) m->red[warp * NB + b] = s;
    }
    __syncthreads();
    if (threadIdx.x < NB) {
        float s = 0.0f;
        for (int w = 0; w < (int)(blockDim.x / 32); w++) s += m->red[w * NB + threadIdx.x];
        m->rstd[threadIdx.x] = rsqrtf(s / (float)n + eps);
    }
    __syncthreads();
}

/* rstd[b] from per-thread sums of squares (fixed order: warp tree, warps in order). */
template <int NB>
static __device__ void mk_rstd_from(const float ss[NB], uint32_t n, float eps,
                                    struct mk_smem_misc *m)
{
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
#pragma unroll
    for (int b = 0; b < NB; b++) {
        float v = mk_warp_sum(ss[b]);
        if (lane == 0) m->red[warp * NB + b] = v;
    }
    __syncthreads();
    if (threadIdx.x < NB) {
        float v = 0.0f;
        for (int w = 0; w < (int)(blockDim.x / 32); w++) v += m->red[w * NB + threadIdx.x];
        m->rstd[threadIdx.x] = rsqrtf(v / (float)n + eps);
    }
    __syncthreads();
}

/* Byte offset of the KV cache entry (layer, K|V, b, h, pos): mk_plan_kv_offset(). */
static __device__ __forceinline__ size_t mk_kv_index(const struct mk_gpu_args &a, int layer, int which,
                                              int b, int h, int pos)
{
    size_t D = (size_t)a.cfg.head_dim, T = (size_t)a.max_ctx;
    size_t Hk = (size_t)a.cfg.n_kv_heads, B = (size_t)a.batch;
    return (((((size_t)layer * 2 + which) * B + b) * Hk + h) * T + pos) * D;
}

#endif
