/* The weight ring: a CTA's weights reach shared memory by TMA bulk copies issued AHEAD of
 * the dependency waits, so that DRAM streams while the SM waits for its inputs.
 *
 * Weights never change inside a launch, so nothing stops a CTA from loading the weights of
 * its next linear tasks before their inputs exist. The ring is MK_RING_STAGES slots of
 * MK_RING_STAGE bytes at the end of dynamic shared memory, each with an mbarrier that
 * completes when its bulk copy has landed.
 *
 * THE STREAM: the chunks of every ring task (mk_ring_geom) of the SM's program, in program
 * order, step after step. Thread 0 is the producer (mk_ring_pump, non-blocking): it issues
 * the next chunks while fewer than MK_RING_STAGES are outstanding, for tasks whose
 * descriptors are already in shared memory (the window, up to MK_RING_WINDOW - 2 tasks
 * past the current one). It pumps before each task's waits and after each chunk the CTA
 * consumed. The consumer (mk_gemv_ring, all threads) takes the chunks of the current task
 * in the same order: chunk n of the stream is slot n % STAGES, mbarrier phase
 * (n / STAGES) & 1. After the CTA's barrier that ends reading a slot, thread 0 counts it
 * released and may refill it. Producer and consumer derive the chunks from the same
 * function of the task (mk_ring_geometry), so they agree by construction.
 *
 * A task's rows [r0, r1) of a row-major weight are one contiguous byte range; its chunks
 * are that range cut into MK_RING_STAGE pieces (the last one shorter), matrix after
 * matrix (two for NORM_GATE_UP). A ring task's K is a multiple of 1024, so rows start at
 * multiples of 2 KiB and each warp's 2 KiB segment of a chunk (128 16-byte vectors) lies in
 * one row: warp w reduces segment w to one partial per batch row, and after the CTA
 * barrier one thread per (row, b) sums that row's warp partials in warp order into res,
 * storing at the chunk that holds the row's first segment (fixed order: bit-identical
 * reruns).
 *
 * Activations are in shared memory fp32 in a lane-interleaved order (mk_xs_pos) so that
 * each lane's 8 activations of its weight vector are two conflict-free 16-byte reads.
 * The ring takes linear tasks with the whole K, one input part, B <= MK_RING_MAX_NB and an
 * activation row that fits the work area; other tasks run the direct GEMV (linear.cuh). */
#ifndef MK_TASK_RING_CUH
#define MK_TASK_RING_CUH

#include "tasks/common.cuh"

enum {
    MK_RING_STAGES = MK_GPU_RING_STAGES,
    MK_RING_STAGE = MK_GPU_RING_STAGE,
    MK_RING_BYTES = MK_RING_STAGES * MK_RING_STAGE,
    MK_RING_MAX_NB = MK_GPU_RING_MAX_NB,
    MK_RING_SEG = 2048,                          /* bytes of a chunk per warp */
    MK_RING_SEGS = MK_RING_STAGE / MK_RING_SEG,  /* segments per chunk (<= warps) */
};
static_assert((int)MK_RING_SEGS <= (int)MK_WARPS, "a warp per segment of a chunk");

/* ---- mbarrier and bulk-copy primitives (PTX ISA 8.0, sm_90) ------------------------ */

static __device__ __forceinline__ uint32_t mk_smem_addr(const void *p)
{
    return (uint32_t)__cvta_generic_to_shared(p);
}

static __device__ __forceinline__ void mk_mbar_init(uint64_t *bar, uint32_t count)
{
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" :: "r"(mk_smem_addr(bar)), "r"(count)
                 : "memory");
}

/* Make the initialised barriers visible to the async proxy (the bulk copies). */
static __device__ __forceinline__ void mk_mbar_fence_init(void)
{
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
}

static __device__ __forceinline__ void mk_mbar_expect_tx(uint64_t *bar, uint32_t bytes)
{
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;"
                 :: "r"(mk_smem_addr(bar)), "r"(bytes) : "memory");
}

static __device__ __forceinline__ bool mk_mbar_try_wait(uint64_t *bar, uint32_t parity)
{
    uint32_t ok;
    asm volatile("{\n\t.reg .pred p;\n\t"
                 "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n\t"
                 "selp.u32 %0, 1, 0, p;\n\t}"
                 : "=r"(ok) : "r"(mk_smem_addr(bar)), "r"(parity) : "memory");
    return ok != 0;
}



/* bytes (a multiple of 16, 16-byte aligned both sides) from global to shared memory,
 * completing on bar. Weights are read once per step: evict them from L2 first. */
static __device__ __forceinline__ void mk_bulk_load(void *dst, const void *src, uint32_t bytes,
                                                    uint64_t *bar)
{
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes "
                 "[%0], [%1], %2, [%3];"
                 :: "r"(mk_smem_addr(dst)), "l"(src), "r"(bytes), "r"(mk_smem_addr(bar))
                 : "memory");
}

/* ---- which tasks, which chunks ------------------------------------------------------ */

static __device__ __forceinline__ bool mk_is_linear(uint32_t op)
{
    return op == MK_TASK_NORM_LINEAR || op == MK_TASK_LINEAR_RESIDUAL ||
           op == MK_TASK_NORM_GATE_UP || op == MK_TASK_LOGITS;
}

/* Floats of the work area a ring task uses: res (+ res2), xs [NB][cols], partials. */
static __device__ __forceinline__ size_t mk_ring_res_floats(uint32_t nrows, int nb, bool dual)
{
    return ((size_t)nrows * nb * (dual ? 2 : 1) + 3) & ~(size_t)3;
}

/* The ring exists for the batch buckets that use it (NB <= MK_RING_MAX_NB); larger
 * buckets give its bytes to the work area of the direct GEMV. */
template <int NB>
static __device__ __forceinline__ size_t mk_work_bytes(const struct mk_gpu_args &a)
{
    return (size_t)a.smem_bytes - MK_SMEM_MISC - (NB <= MK_RING_MAX_NB ? MK_RING_BYTES : 0);
}

/* The chunks of task t (chunks == 0: it does not take the ring), from its resolved
 * table entries tb (no global reads: the producer and the consumer compute the same). */
template <int NB>
static __device__ struct mk_ring_geom mk_ring_geometry(const struct mk_gpu_args &a,
                                                       const struct mk_task &t,
                                                       const struct mk_task_tables &tb)
{
    struct mk_ring_geom g = {};
    if (NB > MK_RING_MAX_NB || a.no_ring || !mk_is_linear(t.op)) return g;
    const uint32_t cols = tb.w_cols[1], nrows = t.r1 - t.r0;
    const bool full = t.op == MK_TASK_LOGITS || t.op == MK_TASK_NORM_GATE_UP ||
                      (t.k0 == 0 && t.k1 == cols);
    const bool dual = t.op == MK_TASK_NORM_GATE_UP;
    if (!full || cols % 1024 != 0 || nrows == 0) return g;
    const uint64_t one = (uint64_t)a.batch * cols * 4u;
    if (tb.b_bytes[0] != one) return g; /* K-split partials: the direct path sums them */
    if (t.w0 != MK_NONE && t.op != MK_TASK_LINEAR_RESIDUAL && tb.w_off[0] % 16 != 0) return g;
    const uint64_t w1 = tb.w_off[1], w2 = dual ? tb.w_off[2] : 0;
    if (w1 % 16 != 0 || w2 % 16 != 0) return g;
    size_t need = (mk_ring_res_floats(nrows, NB, dual) + (size_t)NB * cols + 2 * MK_WARPS * NB) * 4;
    if (need > mk_work_bytes<NB>(a)) return g;
    g.row_bytes = cols * 2;
    g.mat_bytes = nrows * g.row_bytes;
    g.per_mat = (g.mat_bytes + MK_RING_STAGE - 1) / MK_RING_STAGE;
    g.nmat = dual ? 2 : 1;
    g.chunks = g.per_mat * g.nmat;
    g.src[0] = a.weights + w1 + (size_t)t.r0 * g.row_bytes;
    g.src[1] = dual ? a.weights + w2 + (size_t)t.r0 * g.row_bytes : nullptr;
    return g;
}

/* ---- producer ------------------------------------------------------------------------ */

static __device__ __forceinline__ char *mk_ring_base(const struct mk_gpu_args &a, char *smem)
{
    return smem + a.smem_bytes - MK_RING_BYTES;
}

/* A copy of the ring that never lands is a bug (a chunk the producer never issued, a
 * fault of the copy engine): rather than hang, record it for the host (diag flag 2: SM,
 * running task, stream chunk n, chunks issued) and stop the kernel with a trap. */
static __device__ __noinline__ void mk_ring_expired(const struct mk_gpu_args &a,
                                                    struct mk_smem_misc *m, uint32_t n)
{
    if (atomicCAS(a.abort_flag, 0u, 1u) == 0u) {
        a.diag->sm = blockIdx.x;
        a.diag->task = m->info[m->cur].id;
        a.diag->event = MK_NONE;
        a.diag->step = 0;
        a.diag->expected = n;
        a.diag->seen = m->ring.issued;
        __threadfence_system();
        mk_st_release_sys_u32(&a.diag->flag, 2u);
    }
    __trap();
}

/* Wait for stream chunk n's copy, bounded by the launch's wait timeout. */
static __device__ __forceinline__ void mk_ring_wait(const struct mk_gpu_args &a,
                                                    struct mk_smem_misc *m, uint32_t n)
{
    uint64_t *bar = &m->ring_full[n % MK_RING_STAGES];
    const uint32_t par = (n / MK_RING_STAGES) & 1;
    if (mk_mbar_try_wait(bar, par)) return;
    const uint64_t deadline = mk_globaltimer() + a.timeout_ns;
    for (uint32_t it = 1; !mk_mbar_try_wait(bar, par); it++)
        if (it % 256 == 0 && mk_globaltimer() > deadline) mk_ring_expired(a, m, n);
}

/* Thread 0 only. Issue chunks while slots are free and the cursor's task is in the
 * window [.., r->win_hi] (and before r->seq_end); never blocks. */
static __device__ void mk_ring_pump(const struct mk_gpu_args &a, char *smem)
{
    struct mk_smem_misc *m = mk_misc(smem);
    struct mk_ring_state *r = &m->ring;
    char *base = mk_ring_base(a, smem);
    uint32_t issued = r->issued, seq = r->cur_seq, mat = r->cur_mat, off = r->cur_off;
    const uint32_t limit = min(r->win_hi + 1, r->seq_end), released = r->released;
    while (issued - released < MK_RING_STAGES && seq < limit) {
        const struct mk_ring_geom *g = &m->geom[seq % MK_RING_WINDOW];
        if (mat >= g->nmat) { /* a task without (more) chunks: the next task */
            seq++;
            mat = off = 0;
            continue;
        }
        const uint32_t bytes = min((uint32_t)MK_RING_STAGE, g->mat_bytes - off);
        const uint32_t slot = issued % MK_RING_STAGES;
        mk_mbar_expect_tx(&m->ring_full[slot], bytes);
        mk_bulk_load(base + (size_t)slot * MK_RING_STAGE, g->src[mat] + off, bytes,
                     &m->ring_full[slot]);
        issued++;
        off += bytes;
        if (off >= g->mat_bytes) { /* advance now: this descriptor may be refilled */
            off = 0;
            if (++mat >= g->nmat) {
                seq++;
                mat = 0;
            }
        }
    }
    r->issued = issued;
    r->cur_seq = seq;
    r->cur_mat = mat;
    r->cur_off = off;
}

/* Thread 0 only: initialise the barriers and an empty stream starting at task seq 0. */
static __device__ void mk_ring_init(struct mk_smem_misc *m, uint32_t seq_end)
{
    for (int i = 0; i < MK_RING_STAGES; i++) mk_mbar_init(&m->ring_full[i], 1);
    mk_mbar_fence_init();
    m->ring.issued = m->ring.released = 0;
    m->ring.cur_seq = m->ring.cur_mat = m->ring.cur_off = 0;
    m->ring.win_hi = 0;
    m->ring.seq_end = seq_end;
}

/* Thread 0 only: wait until every issued copy has landed (before the CTA exits). */
static __device__ void mk_ring_drain(const struct mk_gpu_args &a, struct mk_smem_misc *m)
{
    for (uint32_t n = m->ring.released; n != m->ring.issued; n++) mk_ring_wait(a, m, n);
}

/* A CTA that runs ONE task (the per-op baseline, the per-task tests): task t is stream
 * task 0 (window slot 0, its tables resolved), its chunks are issued now. Whole CTA. */
template <int NB>
static __device__ void mk_ring_standalone(const struct mk_gpu_args &a, const struct mk_task &t,
                                          char *smem)
{
    struct mk_smem_misc *m = mk_misc(smem);
    if (threadIdx.x == 0) {
        m->cur = 0;
        m->info[0].id = a.single_task; /* MK_NONE in the per-op baseline */
        mk_tables_fetch(a, t, &m->tabs[0]);
        m->geom[0] = mk_ring_geometry<NB>(a, t, m->tabs[0]);
        mk_ring_init(m, 1);
        mk_ring_pump(a, smem);
    }
    __syncthreads();
}

/* ---- consumer ------------------------------------------------------------------------ */

/* Position of element k of an activation row in the ring's interleaved order: in each
 * group of 256, lane l's elements 8l..8l+3 sit at 4l..4l+3 and 8l+4..8l+7 at 128+4l.. */
static __device__ __forceinline__ uint32_t mk_xs_pos(uint32_t k)
{
    uint32_t g = k & ~255u, r = k & 255u, lane = r >> 3, e = r & 7u;
    return g + (e < 4 ? lane * 4 + e : 128 + lane * 4 + (e - 4));
}

/* A whole activation row into shared memory: xs[b][p(k)] = x[b, k] (* norm_w[k] *
 * rstd[b] with a norm), rows b >= B zero, p(k) = mk_xs_pos(k) when INTERLEAVED (the
 * ring's GEMV) else k (the direct GEMV). One pass of 16-byte loads puts x * norm_w in
 * shared memory and sums x^2 (one L2 round trip instead of two), then scales by rstd. */
template <int NB, bool INTERLEAVED>
static __device__ void mk_load_row(const struct mk_gpu_args &a, const struct mk_act &in,
                                   const uint16_t *norm_w, uint32_t n, float *xs,
                                   struct mk_smem_misc *m)
{
    float ss[NB];
#pragma unroll
    for (int b = 0; b < NB; b++) ss[b] = 0.0f;
    for (uint32_t k = threadIdx.x * 4; k < n; k += blockDim.x * 4) {
        /* every batch row's load (and the norm weights) in flight before the first store:
         * a store to shared memory would order the next row's load after it (one L2
         * round trip per batch row, ~4.5 us of a B=8 linear task, profile of ac0e4e9) */
        float4 v[NB];
#pragma unroll
        for (int b = 0; b < NB; b++)
            v[b] = b < a.batch ? mk_ld_act4(in.p + (size_t)b * n + k) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        const uint2 w = norm_w ? __ldg(reinterpret_cast<const uint2 *>(norm_w + k)) : make_uint2(0u, 0u);
#pragma unroll
        for (int b = 0; b < NB; b++) {
            float4 x = v[b];
            ss[b] += x.x * x.x + x.y * x.y + x.z * x.z + x.w * x.w;
            if (norm_w) {
                x.x *= __uint_as_float(w.x << 16); x.y *= __uint_as_float(w.x & 0xffff0000u);
                x.z *= __uint_as_float(w.y << 16); x.w *= __uint_as_float(w.y & 0xffff0000u);
            }
            *reinterpret_cast<float4 *>(xs + (size_t)b * n + (INTERLEAVED ? mk_xs_pos(k) : k)) = x;
        }
    }
    if (!norm_w) {
        __syncthreads();
        return;
    }
    mk_rstd_from<NB>(ss, n, a.cfg.rms_norm_eps, m);
#pragma unroll
    for (int b = 0; b < NB; b++)
        for (uint32_t k = threadIdx.x; k < n; k += blockDim.x) xs[(size_t)b * n + k] *= m->rstd[b];
    __syncthreads();
}

static __device__ __forceinline__ uint4 mk_lds16(const void *p)
{
    return *reinterpret_cast<const uint4 *>(p);
}

/* The GEMV of a ring task: res[(r - r0) * NB + b] (and res2 for the second matrix of
 * NORM_GATE_UP) for every row of the task, from the ring's chunks and the activation row
 * `in` (normalized with norm_w when given). Whole CTA; ends with a barrier. */
template <int NB>
static __device__ void mk_gemv_ring(const struct mk_gpu_args &a, const struct mk_task &t,
                                    const struct mk_ring_geom &geom, const struct mk_act &in,
                                    const uint16_t *norm_w, char *smem, float **res_out,
                                    float **res2_out)
{
    struct mk_smem_misc *m = mk_misc(smem);
    const bool dual = t.op == MK_TASK_NORM_GATE_UP;
    const uint32_t row_bytes = geom.row_bytes, mat_bytes = geom.mat_bytes, nmat = geom.nmat;
    const uint32_t cols = row_bytes / 2, nrows = t.r1 - t.r0; /* mat_bytes = nrows row_bytes */
    float *res = reinterpret_cast<float *>(smem + MK_SMEM_MISC);
    float *res2 = res + (size_t)nrows * NB;
    float *xs = res + mk_ring_res_floats(nrows, NB, dual);
    float *part = xs + (size_t)NB * cols; /* [2][MK_WARPS][NB] */
    *res_out = res;
    *res2_out = res2;
    const char *ring = mk_ring_base(a, smem);
    uint32_t n = m->ring.released; /* stream number of this task's first chunk */
    mk_load_row<NB, true>(a, in, norm_w, cols, xs, m);
    if (a.prof != nullptr && threadIdx.x == 0) m->ph[0] = mk_globaltimer();
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    uint32_t par = 0;
    for (uint32_t mat = 0; mat < nmat; mat++) {
        float *dst = mat ? res2 : res;
        for (uint32_t off = 0; off < mat_bytes; off += MK_RING_STAGE, n++, par ^= 1) {
            const uint32_t bytes = min((uint32_t)MK_RING_STAGE, mat_bytes - off);
            const uint32_t slot = n % MK_RING_STAGES, seg = off + (uint32_t)warp * MK_RING_SEG;
            float *pb = part + par * MK_WARPS * NB;
            mk_ring_wait(a, m, n);
            if (seg < off + bytes) {
                const char *cw = ring + (size_t)slot * MK_RING_STAGE + (size_t)warp * MK_RING_SEG;
                const uint32_t k0 = (seg % row_bytes) / 2; /* a multiple of 1024 */
                float acc[NB];
#pragma unroll
                for (int b = 0; b < NB; b++) acc[b] = 0.0f;
#pragma unroll
                for (int j = 0; j < MK_RING_SEG / 512; j++) {
                    float f[8];
                    mk_unpack8(mk_lds16(cw + (size_t)(j * 32 + lane) * 16), f);
                    const uint32_t xg = k0 + j * 256; /* this 32-vector group's 256 elements */
#pragma unroll
                    for (int b = 0; b < NB; b++) {
                        const float *xb = xs + (size_t)b * cols + xg + lane * 4;
                        float4 x0 = *reinterpret_cast<const float4 *>(xb);
                        float4 x1 = *reinterpret_cast<const float4 *>(xb + 128);
                        float s = acc[b];
                        s = fmaf(f[0], x0.x, s); s = fmaf(f[1], x0.y, s);
                        s = fmaf(f[2], x0.z, s); s = fmaf(f[3], x0.w, s);
                        s = fmaf(f[4], x1.x, s); s = fmaf(f[5], x1.y, s);
                        s = fmaf(f[6], x1.z, s); s = fmaf(f[7], x1.w, s);
                        acc[b] = s;
                    }
                }
#pragma unroll
                for (int b = 0; b < NB; b++) {
                    float s = mk_warp_sum(acc[b]);
                    if (lane == 0) pb[warp * NB + b] = s;
                }
            }
            __syncthreads(); /* slot read, partials written */
            if (threadIdx.x == 0) {
                m->ring.released = n + 1;
                mk_ring_pump(a, smem);
            }
            /* rows [ra, rb) meet this chunk; thread (i, b) sums row ra + i's segments */
            const uint32_t ra = off / row_bytes, rb = (off + bytes - 1) / row_bytes + 1;
            if (threadIdx.x < (rb - ra) * NB) {
                const uint32_t r = ra + threadIdx.x / NB, b = threadIdx.x % NB;
                const uint32_t lo = max(r * row_bytes, off);
                const uint32_t hi = min((r + 1) * row_bytes, off + bytes);
                float s = 0.0f;
                for (uint32_t w = (lo - off) / MK_RING_SEG; w < (hi - off) / MK_RING_SEG; w++)
                    s += pb[w * NB + b];
                float *d = dst + (size_t)r * NB + b;
                *d = lo == r * row_bytes ? s : *d + s;
            }
        }
    }
    if (a.prof != nullptr && threadIdx.x == 0) m->ph[1] = mk_globaltimer();
    __syncthreads();
}

#endif
