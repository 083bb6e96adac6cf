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
 * A chunk is whole rows of one weight matrix when a row fits a slot, else a slice of one
 * row (MK_RING_STAGE / 2 elements, the last slice shorter); either way one contiguous
 * range of the row-major weight. A ring task's K is a multiple of 512, so each warp's 64
 * 16-byte vectors of a chunk lie in one row: warp w reduces vectors [64 w, 64 w + 64) to one
 * partial per batch row, and after the CTA barrier one thread per (row, b) sums that row's
 * warp partials in warp order into res (fixed order: bit-identical reruns).
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
    MK_RING_MAX_NB = 4,
};

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

static __device__ __forceinline__ void mk_mbar_wait(uint64_t *bar, uint32_t parity)
{
    while (!mk_mbar_try_wait(bar, parity)) {
    }
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

static __device__ __forceinline__ size_t mk_work_bytes(const struct mk_gpu_args &a)
{
    return (size_t)a.smem_bytes - MK_SMEM_MISC - MK_RING_BYTES;
}

/* The chunks of task t: 0 when it does not take the ring. */
template <int NB>
static __device__ struct mk_ring_geom mk_ring_geometry(const struct mk_gpu_args &a,
                                                       const struct mk_task &t)
{
    struct mk_ring_geom g = {};
    if (NB > MK_RING_MAX_NB || !mk_is_linear(t.op)) return g;
    const uint32_t cols = a.w_cols[t.w1], nrows = t.r1 - t.r0;
    const bool full = t.op == MK_TASK_LOGITS || t.op == MK_TASK_NORM_GATE_UP ||
                      (t.k0 == 0 && t.k1 == cols);
    const bool dual = t.op == MK_TASK_NORM_GATE_UP;
    if (!full || cols % 512 != 0 || nrows == 0) return g;
    const uint64_t one = (uint64_t)a.batch * cols * 4u;
    if (a.buf_bytes[t.in0] != one) return g; /* K-split partials: the direct path sums them */
    if (t.w0 != MK_NONE && t.op != MK_TASK_LINEAR_RESIDUAL && a.w_off[t.w0] % 16 != 0) return g;
    const uint64_t w1 = a.w_off[t.w1], w2 = dual ? a.w_off[t.w2] : 0;
    if (w1 % 16 != 0 || w2 % 16 != 0) return g;
    size_t need = (mk_ring_res_floats(nrows, NB, dual) + (size_t)NB * cols + 2 * MK_WARPS * NB) * 4;
    if (need > mk_work_bytes(a)) return g;
    const uint32_t row_bytes = cols * 2;
    if (row_bytes <= MK_RING_STAGE) {
        g.rows_per = MK_RING_STAGE / row_bytes;
        g.per_mat = (nrows + g.rows_per - 1) / g.rows_per;
    } else {
        g.slices = (row_bytes + MK_RING_STAGE - 1) / MK_RING_STAGE;
        g.per_mat = nrows * g.slices;
    }
    g.chunks = g.per_mat * (dual ? 2 : 1);
    g.cols = cols;
    g.r0 = t.r0;
    g.nrows = nrows;
    g.w_off[0] = w1;
    g.w_off[1] = w2;
    return g;
}

/* Chunk c of a task: weight matrix `mat`, rows [row, row + n_rows) (relative to r0),
 * columns [k, k + klen). */
struct mk_ring_chunk {
    uint32_t mat, row, n_rows, k, klen;
};

static __device__ __forceinline__ struct mk_ring_chunk mk_ring_chunk_of(const struct mk_ring_geom &g,
                                                                        uint32_t c)
{
    struct mk_ring_chunk ch;
    ch.mat = c / g.per_mat;
    uint32_t cc = c % g.per_mat;
    if (g.rows_per) {
        ch.row = cc * g.rows_per;
        ch.n_rows = min(g.rows_per, g.nrows - ch.row);
        ch.k = 0;
        ch.klen = g.cols;
    } else {
        const uint32_t slice = MK_RING_STAGE / 2;
        ch.row = cc / g.slices;
        ch.n_rows = 1;
        ch.k = (cc % g.slices) * slice;
        ch.klen = min(slice, g.cols - ch.k);
    }
    return ch;
}

/* ---- producer ------------------------------------------------------------------------ */

static __device__ __forceinline__ char *mk_ring_base(const struct mk_gpu_args &a, char *smem)
{
    return smem + a.smem_bytes - MK_RING_BYTES;
}

/* Thread 0 only. Issue chunks while slots are free and the cursor's task is in the
 * window [.., r->win_hi] (and before r->seq_end); never blocks. */
static __device__ void mk_ring_pump(const struct mk_gpu_args &a, char *smem)
{
    struct mk_smem_misc *m = mk_misc(smem);
    struct mk_ring_state *r = &m->ring;
    char *base = mk_ring_base(a, smem);
    while (r->issued - r->released < MK_RING_STAGES) {
        if (r->cur_seq > r->win_hi || r->cur_seq >= r->seq_end) return;
        const struct mk_ring_geom *g = &m->geom[r->cur_seq % MK_RING_WINDOW];
        if (r->cur_chunk >= g->chunks) { /* a task without (more) chunks: next task */
            r->cur_seq++;
            r->cur_chunk = 0;
            continue;
        }
        const struct mk_ring_chunk ch = mk_ring_chunk_of(*g, r->cur_chunk);
        const char *src = a.weights + g->w_off[ch.mat] +
                          ((size_t)(g->r0 + ch.row) * g->cols + ch.k) * 2;
        const uint32_t bytes = ch.n_rows * ch.klen * 2, slot = r->issued % MK_RING_STAGES;
        mk_mbar_expect_tx(&m->ring_full[slot], bytes);
        mk_bulk_load(base + (size_t)slot * MK_RING_STAGE, src, bytes, &m->ring_full[slot]);
        r->issued++;
        if (++r->cur_chunk >= g->chunks) { /* advance now: this descriptor may be refilled */
            r->cur_seq++;
            r->cur_chunk = 0;
        }
    }
}

/* Thread 0 only: initialise the barriers and an empty stream starting at task seq 0. */
static __device__ void mk_ring_init(struct mk_smem_misc *m, uint32_t seq_end)
{
    for (int i = 0; i < MK_RING_STAGES; i++) mk_mbar_init(&m->ring_full[i], 1);
    mk_mbar_fence_init();
    m->ring.issued = m->ring.released = 0;
    m->ring.cur_seq = m->ring.cur_chunk = 0;
    m->ring.win_hi = 0;
    m->ring.seq_end = seq_end;
}

/* Thread 0 only: wait until every issued copy has landed (before the CTA exits). */
static __device__ void mk_ring_drain(struct mk_smem_misc *m)
{
    for (uint32_t n = m->ring.released; n != m->ring.issued; n++)
        mk_mbar_wait(&m->ring_full[n % MK_RING_STAGES], (n / MK_RING_STAGES) & 1);
}

/* A CTA that runs ONE task (the per-op baseline, the per-task tests): task t is stream
 * task 0, its chunks are issued now. Whole CTA. */
template <int NB>
static __device__ void mk_ring_standalone(const struct mk_gpu_args &a, const struct mk_task &t,
                                          char *smem)
{
    struct mk_smem_misc *m = mk_misc(smem);
    if (threadIdx.x == 0) {
        m->geom[0] = mk_ring_geometry<NB>(a, t);
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

/* xs[b][mk_xs_pos(k)] = x[b, k] (* norm_w[k] * rstd[b] with a norm); rows b >= B zero. */
template <int NB>
static __device__ void mk_ring_load_row(const struct mk_gpu_args &a, const struct mk_act &in,
                                        const uint16_t *norm_w, uint32_t n, float *xs,
                                        struct mk_smem_misc *m)
{
    float ss[NB];
#pragma unroll
    for (int b = 0; b < NB; b++) {
        ss[b] = 0.0f;
        for (uint32_t k = threadIdx.x * 4; k < n; k += blockDim.x * 4) {
            float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            if (b < a.batch) v = mk_ld_act4(in.p + (size_t)b * n + k);
            ss[b] += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
            if (norm_w) {
                uint2 w = __ldg(reinterpret_cast<const uint2 *>(norm_w + k));
                v.x *= __uint_as_float(w.x << 16); v.y *= __uint_as_float(w.x & 0xffff0000u);
                v.z *= __uint_as_float(w.y << 16); v.w *= __uint_as_float(w.y & 0xffff0000u);
            }
            *reinterpret_cast<float4 *>(xs + (size_t)b * n + mk_xs_pos(k)) = v;
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
                                    const struct mk_ring_geom &g, const struct mk_act &in,
                                    const uint16_t *norm_w, char *smem, float **res_out,
                                    float **res2_out)
{
    struct mk_smem_misc *m = mk_misc(smem);
    const bool dual = t.op == MK_TASK_NORM_GATE_UP;
    const uint32_t cols = g.cols;
    float *res = reinterpret_cast<float *>(smem + MK_SMEM_MISC);
    float *res2 = res + (size_t)g.nrows * NB;
    float *xs = res + mk_ring_res_floats(g.nrows, NB, dual);
    float *part = xs + (size_t)NB * cols; /* [2][MK_WARPS][NB] */
    *res_out = res;
    *res2_out = res2;
    const char *ring = mk_ring_base(a, smem);
    const uint32_t first = m->ring.released; /* stream number of chunk 0 of this task */
    mk_ring_load_row<NB>(a, in, norm_w, cols, xs, m);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    for (uint32_t c = 0; c < g.chunks; c++) {
        const struct mk_ring_chunk ch = mk_ring_chunk_of(g, c);
        const uint32_t n = first + c, slot = n % MK_RING_STAGES;
        const uint32_t vpr = ch.klen / 8, nvec = ch.n_rows * vpr, v0 = (uint32_t)warp * 64;
        float *pb = part + (c & 1) * MK_WARPS * NB;
        mk_mbar_wait(&m->ring_full[slot], (n / MK_RING_STAGES) & 1);
        if (v0 < nvec) {
            const uint16_t *cw = reinterpret_cast<const uint16_t *>(ring + (size_t)slot * MK_RING_STAGE);
            const uint32_t k0 = ch.k + (v0 % vpr) * 8; /* 512-aligned: a whole xs group pair */
            float acc[NB];
#pragma unroll
            for (int b = 0; b < NB; b++) acc[b] = 0.0f;
#pragma unroll
            for (int j = 0; j < 2; j++) {
                float f[8];
                mk_unpack8(mk_lds16(cw + (size_t)(v0 + j * 32 + lane) * 8), f);
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
            m->ring.released++;
            mk_ring_pump(a, smem);
        }
        const uint32_t wpr = vpr / 64; /* warps per row of this chunk */
        if (threadIdx.x < ch.n_rows * NB) {
            const uint32_t i = threadIdx.x / NB, b = threadIdx.x % NB;
            float s = 0.0f;
            for (uint32_t w = i * wpr; w < (i + 1) * wpr; w++) s += pb[w * NB + b];
            float *dst = (ch.mat ? res2 : res) + (size_t)(ch.row + i) * NB + b;
            *dst = ch.k == 0 ? s : *dst + s;
        }
    }
    __syncthreads();
}

#endif
