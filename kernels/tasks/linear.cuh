/* The linear tasks: NORM_LINEAR, LINEAR_RESIDUAL, NORM_GATE_UP and LOGITS share one
 * GEMV core: rows [r0, r1) of a bf16 weight (one or two matrices) times the B activation
 * rows over k in [k0, k1).
 *
 * Work area of shared memory:
 *   res  [nrows][NB] fp32 (and res2 for the second matrix): dot products, accumulated
 *        over K chunks in chunk order;
 *   xs   [NB][clen] fp32: the current K chunk of the (normalized) activations; rows
 *        b >= B are zero.
 * Each warp takes R rows at a time; each lane streams 16 bytes (8 weights) per row per
 * iteration, two iterations unrolled (2R loads in flight per lane), multiplies them with
 * the B activation rows from shared memory and keeps R x NB fp32 sums; a xor-butterfly
 * sums the lanes (fixed order). The host checks that cols, k0, k1 are multiples of 8. */
#ifndef MK_TASK_LINEAR_CUH
#define MK_TASK_LINEAR_CUH

#include "tasks/ring.cuh"

/* Rows at a time per warp: fewer at large batch and with two matrices, so that the
 * R x NB sums and 2R loads in flight stay in registers. At B=8, R = 4 spills (mk_run_task<8>
 * 80/244 bytes) but keeps 4 loads in flight per lane, which the big tasks need (Qwen3-8B
 * B=8 10 % slower with 2); a task whose rows fit in one round of RS = R / 2 per warp takes
 * RS instead (more warps busy, no spill: Qwen3-0.6B B=8 o-proj, 8 rows, 2 -> 4 warps). */
template <int NB, bool DUAL> struct mk_gemv_rows {
    static constexpr int R0 = NB <= 8 ? 4 : 2;
    static constexpr int R = DUAL && R0 > 1 ? R0 / 2 : R0;
    static constexpr int RS = NB == 8 && R > 1 ? R / 2 : R;
};

/* One K chunk [kc, kc + clen) for every row of the task: res[(r - r0) * NB + b] (+)= dot,
 * R rows per warp at a time (each row's sum is in the same order whatever R).
 * first: this is the first chunk (store, else add). */
template <int NB, bool DUAL, int R>
static __device__ void mk_gemv_chunk(const uint16_t *W, const uint16_t *W2, uint32_t cols,
                              uint32_t r0, uint32_t r1, uint32_t kc, uint32_t clen,
                              const float *xs, float *res, float *res2, bool first)
{
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int nwarps = blockDim.x / 32;
    const uint32_t nvec = clen / 8;
    for (uint32_t rg = r0 + (uint32_t)warp * R; rg < r1; rg += (uint32_t)nwarps * R) {
        float acc[R][NB], acc2[DUAL ? R : 1][NB];
#pragma unroll
        for (int i = 0; i < R; i++)
#pragma unroll
            for (int b = 0; b < NB; b++) {
                acc[i][b] = 0.0f;
                if (DUAL) acc2[DUAL ? i : 0][b] = 0.0f;
            }
        const uint16_t *wrow[R], *wrow2[R];
#pragma unroll
        for (int i = 0; i < R; i++) {
            uint32_t r = rg + i < r1 ? rg + i : rg; /* rows past r1 re-read row rg, unused */
            wrow[i] = W + (size_t)r * cols + kc;
            wrow2[i] = DUAL ? W2 + (size_t)r * cols + kc : nullptr;
        }
#pragma unroll(NB >= 4 ? 1 : 2)
        for (uint32_t v = lane; v < nvec; v += 32) {
            uint4 wv[R], wv2[DUAL ? R : 1];
#pragma unroll
            for (int i = 0; i < R; i++) {
                wv[i] = mk_wload16(wrow[i] + v * 8);
                if (DUAL) wv2[DUAL ? i : 0] = mk_wload16(wrow2[i] + v * 8);
            }
#pragma unroll
            for (int b = 0; b < NB; b++) {
                const float4 *xp = reinterpret_cast<const float4 *>(xs + (size_t)b * clen + v * 8);
                float4 x0 = xp[0], x1 = xp[1];
                float xv[8] = {x0.x, x0.y, x0.z, x0.w, x1.x, x1.y, x1.z, x1.w};
#pragma unroll
                for (int i = 0; i < R; i++) {
                    float f[8];
                    mk_unpack8(wv[i], f);
#pragma unroll
                    for (int j = 0; j < 8; j++) acc[i][b] = fmaf(f[j], xv[j], acc[i][b]);
                    if (DUAL) {
                        mk_unpack8(wv2[DUAL ? i : 0], f);
#pragma unroll
                        for (int j = 0; j < 8; j++)
                            acc2[DUAL ? i : 0][b] = fmaf(f[j], xv[j], acc2[DUAL ? i : 0][b]);
                    }
                }
            }
        }
#pragma unroll
        for (int i = 0; i < R; i++)
#pragma unroll
            for (int b = 0; b < NB; b++) {
                float s = mk_warp_sum(acc[i][b]);
                float s2 = DUAL ? mk_warp_sum(acc2[DUAL ? i : 0][b]) : 0.0f;
                if (lane == (i * NB + b) % 32 && rg + i < r1) {
                    size_t o = (size_t)(rg + i - r0) * NB + b;
                    res[o] = first ? s : res[o] + s;
                    if (DUAL) res2[o] = first ? s2 : res2[o] + s2;
                }
            }
    }
}

/* mk_gemv_chunk with the rows per warp of mk_gemv_rows: RS when the task's rows fit in
 * one round of it, else R. */
template <int NB, bool DUAL>
static __device__ __forceinline__ void mk_gemv_pass(const uint16_t *W, const uint16_t *W2,
                                                    uint32_t cols, uint32_t r0, uint32_t r1,
                                                    uint32_t kc, uint32_t clen, const float *xs,
                                                    float *res, float *res2, bool first)
{
    constexpr int R = mk_gemv_rows<NB, DUAL>::R, RS = mk_gemv_rows<NB, DUAL>::RS;
    if (RS != R && (r1 - r0 + RS - 1) / RS <= blockDim.x / 32)
        mk_gemv_chunk<NB, DUAL, RS>(W, W2, cols, r0, r1, kc, clen, xs, res, res2, first);
    else
        mk_gemv_chunk<NB, DUAL, R>(W, W2, cols, r0, r1, kc, clen, xs, res, res2, first);
}

/* How the activation chunk is made: x = in[b, k] (partials summed), times rstd[b] and
 * norm_w[k] when a norm weight is given. */
struct mk_xsrc {
    struct mk_act in;
    const uint16_t *norm_w; /* nullptr: no norm */
};

/* Full GEMV of a task over [k0, k1) in chunks that fit the work area; results in res
 * (and res2) at the start of the work area. */
template <int NB, bool DUAL>
static __device__ void mk_gemv(const struct mk_gpu_args &a, const struct mk_xsrc &src,
                        const uint16_t *W, const uint16_t *W2, uint32_t cols,
                        uint32_t r0, uint32_t r1, uint32_t k0, uint32_t k1,
                        char *smem, float **res_out, float **res2_out)
{
    struct mk_smem_misc *m = mk_misc(smem);
    const uint32_t nrows = r1 - r0;
    float *res = reinterpret_cast<float *>(smem + MK_SMEM_MISC);
    float *res2 = res + (size_t)nrows * NB;
    size_t res_floats = ((size_t)nrows * NB * (DUAL ? 2 : 1) + 3) & ~(size_t)3;
    float *xs = res + res_floats;
    size_t avail = mk_work_bytes<NB>(a) / 4 - res_floats;
    uint32_t cmax = (uint32_t)(avail / NB) & ~7u;
    *res_out = res;
    *res2_out = res2;
    bool aligned = ((uintptr_t)src.norm_w & 7) == 0 && cols % 4 == 0;
    if (k0 == 0 && k1 == cols && cols <= cmax && src.in.parts == 1 && src.in.n == cols && aligned) {
        mk_load_row<NB, false>(a, src.in, src.norm_w, cols, xs, m); /* the whole row */
        if (a.prof != nullptr && threadIdx.x == 0) m->ph[0] = mk_globaltimer();
        mk_gemv_pass<NB, DUAL>(W, W2, cols, r0, r1, 0, cols, xs, res, res2, true);
        __syncthreads();
        if (a.prof != nullptr && threadIdx.x == 0) m->ph[1] = mk_globaltimer();
        return;
    }
    if (src.norm_w) mk_block_rstd<NB>(src.in, src.in.n, a.cfg.rms_norm_eps, m);
    for (uint32_t kc = k0; kc < k1; kc += cmax) {
        uint32_t clen = min(cmax, k1 - kc);
        for (uint32_t i = threadIdx.x; i < (uint32_t)NB * clen; i += blockDim.x) {
            uint32_t b = i / clen, k = kc + i % clen;
            float v = 0.0f;
            if (b < (uint32_t)a.batch) {
                v = mk_act_get(src.in, b, k);
                if (src.norm_w) v = v * m->rstd[b] * mk_wget(src.norm_w, k);
            }
            xs[i] = v;
        }
        __syncthreads();
        mk_gemv_pass<NB, DUAL>(W, W2, cols, r0, r1, kc, clen, xs, res, res2, kc == k0);
        __syncthreads();
    }
}

/* The GEMV of a linear task: through the weight ring when the task takes it (its chunks
 * are already streaming in, ring.cuh), else the direct path above. */
template <int NB, bool DUAL>
static __device__ void mk_gemv_task(const struct mk_gpu_args &a, const struct mk_task &t,
                                    const struct mk_xsrc &src, const uint16_t *W,
                                    const uint16_t *W2, uint32_t cols, uint32_t k0, uint32_t k1,
                                    char *smem, float **res, float **res2)
{
    const struct mk_smem_misc *m = mk_misc(smem);
    const struct mk_ring_geom g = m->geom[m->cur]; /* the fetching thread's, a task ahead */
    if (g.chunks)
        mk_gemv_ring<NB>(a, t, g, src.in, src.norm_w, smem, res, res2);
    else
        mk_gemv<NB, DUAL>(a, src, W, W2, cols, t.r0, t.r1, k0, k1, smem, res, res2);
}

/* Where a linear task writes: out, or partial `split` of out when K-split. */
static __device__ __forceinline__ float *mk_linear_dst(const struct mk_gpu_args &a,
                                                const struct mk_task &t, uint32_t n)
{
    float *o = mk_own_buf(a, MK_OUT);
    if (t.n_split > 1) o += (size_t)t.split * a.batch * n;
    return o;
}

template <int NB>
static __device__ void mk_task_norm_linear(const struct mk_gpu_args &a, const struct mk_task &t,
                                    char *smem)
{
    const struct mk_task_tables *tb = mk_tabs_cur();
    const uint16_t *W = mk_own_weight(a, 1);
    uint32_t rows = tb->w_rows[1], cols = tb->w_cols[1];
    struct mk_xsrc src = {mk_own_act(a, MK_IN0, cols), t.w0 != MK_NONE ? mk_own_weight(a, 0) : nullptr};
    float *res, *res2;
    mk_gemv_task<NB, false>(a, t, src, W, nullptr, cols, t.k0, t.k1, smem, &res, &res2);
    const uint16_t *bias = (t.w2 != MK_NONE && t.split == 0) ? mk_own_weight(a, 2) : nullptr;
    float *o = mk_linear_dst(a, t, rows);
    uint32_t nrows = t.r1 - t.r0;
    for (uint32_t i = threadIdx.x; i < nrows * (uint32_t)a.batch; i += blockDim.x) {
        uint32_t b = i / nrows, r = t.r0 + i % nrows;
        float v = res[(size_t)(r - t.r0) * NB + b];
        if (bias) v += mk_wget(bias, r);
        o[(size_t)b * rows + r] = v;
    }
}

template <int NB>
static __device__ void mk_task_linear_residual(const struct mk_gpu_args &a, const struct mk_task &t,
                                        char *smem)
{
    const struct mk_task_tables *tb = mk_tabs_cur();
    const uint16_t *W = mk_own_weight(a, 1);
    uint32_t rows = tb->w_rows[1], cols = tb->w_cols[1];
    struct mk_xsrc src = {mk_own_act(a, MK_IN0, cols), nullptr};
    float *res, *res2;
    mk_gemv_task<NB, false>(a, t, src, W, nullptr, cols, t.k0, t.k1, smem, &res, &res2);
    struct mk_act resid = mk_own_act(a, MK_IN1, rows);
    float *o = mk_linear_dst(a, t, rows);
    uint32_t nrows = t.r1 - t.r0;
    for (uint32_t i = threadIdx.x; i < nrows * (uint32_t)a.batch; i += blockDim.x) {
        uint32_t b = i / nrows, r = t.r0 + i % nrows;
        float v = res[(size_t)(r - t.r0) * NB + b];
        if (t.split == 0) v = mk_act_get(resid, b, r) + v;
        o[(size_t)b * rows + r] = v;
    }
}

template <int NB>
static __device__ void mk_task_norm_gate_up(const struct mk_gpu_args &a, const struct mk_task &t,
                                     char *smem)
{
    const struct mk_task_tables *tb = mk_tabs_cur();
    const uint16_t *Wg = mk_own_weight(a, 1), *Wu = mk_own_weight(a, 2);
    uint32_t rows = tb->w_rows[1], cols = tb->w_cols[1];
    struct mk_xsrc src = {mk_own_act(a, MK_IN0, cols), t.w0 != MK_NONE ? mk_own_weight(a, 0) : nullptr};
    float *g, *u;
    mk_gemv_task<NB, true>(a, t, src, Wg, Wu, cols, t.k0, t.k1, smem, &g, &u);
    float *o = mk_own_buf(a, MK_OUT);
    uint32_t nrows = t.r1 - t.r0;
    for (uint32_t i = threadIdx.x; i < nrows * (uint32_t)a.batch; i += blockDim.x) {
        uint32_t b = i / nrows, r = t.r0 + i % nrows;
        size_t j = (size_t)(r - t.r0) * NB + b;
        float gv = g[j];
        o[(size_t)b * rows + r] = gv / (1.0f + expf(-gv)) * u[j];
    }
}

/* LOGITS: norm + LM head rows, then (max, argmax) of the task's rows per batch row into
 * aux[split][b] = {float value, int index}; ties keep the lowest index. */
template <int NB>
static __device__ void mk_task_logits(const struct mk_gpu_args &a, const struct mk_task &t, char *smem)
{
    struct mk_smem_misc *m = mk_misc(smem);
    const struct mk_task_tables *tb = mk_tabs_cur();
    const uint16_t *W = mk_own_weight(a, 1);
    uint32_t rows = tb->w_rows[1], cols = tb->w_cols[1];
    struct mk_xsrc src = {mk_own_act(a, MK_IN0, cols), t.w0 != MK_NONE ? mk_own_weight(a, 0) : nullptr};
    float *res, *res2;
    mk_gemv_task<NB, false>(a, t, src, W, nullptr, cols, 0, cols, smem, &res, &res2);
    float *o = mk_own_buf(a, MK_OUT);
    uint32_t nrows = t.r1 - t.r0;
    for (uint32_t i = threadIdx.x; i < nrows * (uint32_t)a.batch; i += blockDim.x) {
        uint32_t b = i / nrows, r = t.r0 + i % nrows;
        o[(size_t)b * rows + r] = res[(size_t)(r - t.r0) * NB + b];
    }
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int nwarps = blockDim.x / 32;
    /* warp w scans rows w*32+lane, stepping by the block: per-thread best, warp, block */
    for (int b = 0; b < a.batch; b++) {
        float best = -CUDART_INF_F;
        int bi = 0x7fffffff;
        for (uint32_t r = threadIdx.x; r < nrows; r += blockDim.x) {
            float v = res[(size_t)r * NB + b];
            if (v > best) { best = v; bi = (int)(t.r0 + r); }
        }
        for (int off = 16; off > 0; off >>= 1) {
            float ov = __shfl_xor_sync(0xffffffffu, best, off);
            int oi = __shfl_xor_sync(0xffffffffu, bi, off);
            if (ov > best || (ov == best && oi < bi)) { best = ov; bi = oi; }
        }
        if (lane == 0) { m->vmax[warp * NB + b] = best; m->imax[warp * NB + b] = bi; }
    }
    __syncthreads();
    if (threadIdx.x < (unsigned)a.batch) {
        int b = threadIdx.x;
        float best = -CUDART_INF_F;
        int bi = 0x7fffffff;
        for (int w = 0; w < nwarps; w++) {
            float v = m->vmax[w * NB + b];
            int i = m->imax[w * NB + b];
            if (v > best || (v == best && i < bi)) { best = v; bi = i; }
        }
        if (bi == 0x7fffffff) bi = (int)t.r0; /* every logit NaN: keep a valid id */
        char *aux = reinterpret_cast<char *>(mk_own_buf(a, MK_AUX)) + ((size_t)t.split * a.batch + b) * 8;
        reinterpret_cast<float *>(aux)[0] = best;
        reinterpret_cast<int *>(aux)[1] = bi;
    }
}

#endif
