/* ATTN_PARTIAL and ATTN_MERGE (plan.h).
 *
 * ATTN_PARTIAL (kv head h = r0, split s of n): for each batch row b, positions [lo, hi) =
 * mk_plan_kv_split(window, L = pos[b] + 1, s, n): fixed-size chunks from the newest
 * position back, so split 0 always holds pos[b] and a short context leaves the last
 * splits empty. The G query heads of group h are read from the fused QKV buffer (in0),
 * RMS-normalized over head_dim (w0 = q_norm), rotated (rotate-half RoPE at pos[b],
 * frequencies from the host's table) and kept in shared memory pre-scaled by 1/sqrt(D);
 * split 0 also normalizes (w1 = k_norm) and rotates k of head h and writes k and v (bf16,
 * round to nearest even) to the KV cache at pos[b]. Writes [D] unnormalized acc, max,
 * sum per (split, b, query head): partials [n_split][B][n_heads][D + 2]. An empty range
 * writes acc 0, max -inf, sum 0.
 *
 * Tiled path (head_dim a multiple of 8, at most 256, mk_attn_plan): every batch row at
 * once, latencies overlapped instead of chained. Row i of sequence b is position
 * hi - 1 - i (newest first); round r takes rows [r CH, r CH + CH) of every b into a
 * shared tile by cp.async (16 bytes each). Per thread, in this order: pos of its copy row
 * b and the q/k/v vector loads of its prologue warp are issued together (one L2 round
 * trip); then round 0's K/V copies go out (and an L2 prefetch of the later rounds' rows)
 * while the prologue normalizes and rotates; split 0 puts the bf16 k, v of pos[b] both in
 * the cache and in tile row 0 (the copies skip that row: the value is the one the cache
 * holds). Then per round, with a block barrier after each phase: scores (thread per
 * (b, head, row), QP threads per dot), softmax statistics (warp per (b, head): the
 * round's max, e = exp(s - m), running max/sum and the rescale of the old acc), acc +=
 * e V (thread per (b, head, 8 dims), rows split over RSL slices summed in slice order).
 * The next round's K rows are copied once the scores are done, its V rows once acc is:
 * they stream in while this round computes.
 * Every reduction has a fixed order: reruns are bit-identical.
 * Other head dims take the serial path (one batch row and MK_ATTN_CHUNK positions at a
 * time).
 * ATTN_MERGE: out[b, head] = sum_s acc_s e^(m_s - M) / sum_s l_s e^(m_s - M) over the
 * non-empty splits s < mk_plan_kv_nonempty(...) in order; thread per (b, head, 4 dims),
 * the loads of up to 8 splits in flight at once. */
#ifndef MK_TASK_ATTENTION_CUH
#define MK_TASK_ATTENTION_CUH

#include "tasks/common.cuh"

/* MK_ATTN_WORK: the tiled path's work area at most, in bytes; it stays below the weight
 * ring (MK_SMEM_MISC + MK_ATTN_WORK + MK_GPU_RING_BYTES <= 227 KiB). The host's
 * task_smem (src/runtime/gpu_cuda.c) states the same layout. */
enum { MK_ATTN_CHUNK = MK_GPU_ATTN_CHUNK, MK_ATTN_WORK = 90112, MK_ATTN_MAX_RSL = 16 };

/* The tiled path's shape for batch bucket nb (the kernel's NB, so that host and device
 * agree): C8 = D / 8 16-byte chunks per row; tile rows of RS = 2 D + 16 bytes (for D a
 * multiple of 64 the pad puts one chunk of 8 consecutive rows in 8 distinct bank groups);
 * RSL row slices of acc += e V; CH rows per round. Work area, in order: tile
 * [nb][K|V][CH] rows of RS bytes; floats q [nb][G][D], acc [nb][G][D], red
 * [RSL][nb G C8][8] (only for RSL > 1), sc [nb][G][CH], m, l, cf [nb][G]; ints lo, hi
 * [nb]. ok false: the serial path. */
struct mk_attn_shape {
    int C8, RS, RSL, CH;
    uint32_t o_q, o_acc, o_red, o_sc, o_m, o_l, o_cf, o_lo, o_hi;
    bool ok;
};

static __device__ struct mk_attn_shape mk_attn_plan(int D, int G, int nb)
{
    struct mk_attn_shape s = {};
    s.ok = D % 8 == 0 && D >= 8 && D <= 256;
    if (!s.ok) return s;
    s.C8 = D / 8;
    s.RS = 2 * D + 16;
    const int items = nb * G * s.C8, per_row = nb * (2 * s.RS + 4 * G);
    auto rows = [&](int rsl) { /* CH for rsl slices */
        const int fixed =
            4 * (2 * nb * G * D + (rsl > 1 ? rsl * nb * G * D : 0) + 3 * nb * G + 2 * nb);
        return fixed < MK_ATTN_WORK ? min((int)MK_ATTN_CHUNK, (MK_ATTN_WORK - fixed) / per_row) : 0;
    };
    /* As many slices as keep 512 threads busy, fewer where that lets a whole
     * MK_ATTN_CHUNK of rows fit in one round. */
    s.RSL = 2 * items >= MK_GPU_THREADS ? 1 : min((int)MK_ATTN_MAX_RSL, MK_GPU_THREADS / items);
    for (int rsl = s.RSL; rsl >= 1 && rows(s.RSL) < MK_ATTN_CHUNK; rsl /= 2)
        if (rows(rsl) == MK_ATTN_CHUNK) s.RSL = rsl;
    s.CH = rows(s.RSL);
    s.ok = s.CH >= 1;
    s.o_q = (uint32_t)(nb * 2 * s.CH * s.RS);
    s.o_acc = s.o_q + 4u * nb * G * D;
    s.o_red = s.o_acc + 4u * nb * G * D;
    s.o_sc = s.o_red + (s.RSL > 1 ? 4u * s.RSL * nb * G * D : 0u);
    s.o_m = s.o_sc + 4u * nb * G * s.CH;
    s.o_l = s.o_m + 4u * nb * G;
    s.o_cf = s.o_l + 4u * nb * G;
    s.o_lo = s.o_cf + 4u * nb * G;
    s.o_hi = s.o_lo + 4u * nb;
    return s;
}

static __device__ __forceinline__ int mk_attn_bucket(int B)
{
    return B <= 1 ? 1 : B <= 2 ? 2 : B <= 4 ? 4 : B <= 8 ? 8 : 16;
}

/* Rows of sequence b in round r. */
static __device__ __forceinline__ int mk_attn_rows(const int *lo, const int *hi, int b, int r,
                                                   int ch)
{
    return min(max(hi[b] - lo[b] - r * ch, 0), ch);
}

static __device__ __forceinline__ uint32_t mk_attn_pack(float lo, float hi)
{
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&v);
}

/* A lane's slice of one prologue vector: sequence b, vector j (j < G: query head h G + j;
 * G: k of head h; G + 1: v of head h), elements 4 li .. 4 li + 3 and the same + D/2 (its
 * RoPE pairs), partials summed in order. lpv lanes (a power of two >= D/8) per vector. */
struct mk_attn_vec {
    float x[8];
    int b, j, pos;
    bool on;
};

static __device__ void mk_attn_vec_load(const struct mk_gpu_args &a, const struct mk_act &in, int h,
                                        int nv, int lpv, int ws, struct mk_attn_vec &v)
{
    const int lane = threadIdx.x % 32, D = a.cfg.head_dim, nh = a.cfg.n_heads;
    const int nkv = a.cfg.n_kv_heads, G = nh / nkv;
    const int li = lane % lpv, vi = ws * (32 / lpv) + lane / lpv;
    v.b = vi / nv;
    v.j = vi % nv;
    v.pos = 0;
    v.on = v.b < a.batch && li < D / 8;
#pragma unroll
    for (int k = 0; k < 8; k++) v.x[k] = 0.0f;
    if (!v.on) return;
    v.pos = __ldcg(a.pos + v.b);
    const int col = v.j < G ? (h * G + v.j) * D : (v.j == G ? nh + h : nh + nkv + h) * D;
    const float *p = in.p + (size_t)v.b * in.n + col + 4 * li;
    for (uint32_t i = 0; i < in.parts; i++, p += (size_t)in.batch * in.n) {
        const float4 x0 = mk_ld_act4(p), x1 = mk_ld_act4(p + D / 2);
        v.x[0] += x0.x; v.x[1] += x0.y; v.x[2] += x0.z; v.x[3] += x0.w;
        v.x[4] += x1.x; v.x[5] += x1.y; v.x[6] += x1.z; v.x[7] += x1.w;
    }
}

/* The warp's vectors: RMSNorm (sum of squares over the lpv lanes of a vector), RoPE; q
 * pre-scaled into shared q; k, v as bf16 into the cache at pos and tile row 0. */
static __device__ void mk_attn_vec_store(const struct mk_gpu_args &a, const struct mk_task &t,
                                         const struct mk_attn_shape &s, int lpv,
                                         const struct mk_attn_vec &v, const uint16_t *qn,
                                         const uint16_t *kn, float *q, char *tile)
{
    const int lane = threadIdx.x % 32, D = a.cfg.head_dim, half = D / 2;
    const int G = a.cfg.n_heads / a.cfg.n_kv_heads;
    float ss = 0.0f;
#pragma unroll
    for (int k = 0; k < 8; k++) ss += v.x[k] * v.x[k];
    for (int o = lpv / 2; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
    if (!v.on) return;
    const int d0 = 4 * (lane % lpv);
    float o[8];
    if (v.j == G + 1) {
#pragma unroll
        for (int k = 0; k < 8; k++) o[k] = v.x[k];
    } else {
        const uint16_t *nw = v.j < G ? qn : kn;
        const float rs = rsqrtf(ss / (float)D + a.cfg.rms_norm_eps);
        const float mul = v.j < G ? rsqrtf((float)D) : 1.0f;
#pragma unroll
        for (int k = 0; k < 4; k++) {
            const int d = d0 + k;
            float x0 = v.x[k], x1 = v.x[4 + k];
            if (nw) {
                x0 = x0 * rs * mk_wget(nw, d);
                x1 = x1 * rs * mk_wget(nw, d + half);
            }
            float sn, cs;
            sincosf((float)v.pos * __ldg(a.inv_freq + d), &sn, &cs);
            o[k] = (x0 * cs - x1 * sn) * mul;
            o[4 + k] = (x1 * cs + x0 * sn) * mul;
        }
    }
    if (v.j < G) {
        float *qd = q + (v.b * G + v.j) * D;
        *reinterpret_cast<float4 *>(qd + d0) = make_float4(o[0], o[1], o[2], o[3]);
        *reinterpret_cast<float4 *>(qd + half + d0) = make_float4(o[4], o[5], o[6], o[7]);
        return;
    }
    const int which = v.j - G; /* 0: k, 1: v */
    const uint2 w0 = make_uint2(mk_attn_pack(o[0], o[1]), mk_attn_pack(o[2], o[3]));
    const uint2 w1 = make_uint2(mk_attn_pack(o[4], o[5]), mk_attn_pack(o[6], o[7]));
    uint16_t *row = a.kv + mk_kv_index(a, t.layer, which, v.b, (int)t.r0, v.pos);
    *reinterpret_cast<uint2 *>(row + d0) = w0;
    *reinterpret_cast<uint2 *>(row + half + d0) = w1;
    char *trow = tile + (size_t)(v.b * 2 + which) * s.CH * s.RS;
    *reinterpret_cast<uint2 *>(trow + 2 * d0) = w0;
    *reinterpret_cast<uint2 *>(trow + 2 * (half + d0)) = w1;
}

/* Thread u of the tpb copying sequence b: round r's K (which 0) or V (1) rows into the
 * tile by cp.async, committed as one group (empty when the round has no rows), not
 * waited. Split 0's row 0 of round 0 (pos[b]) is the prologue's. */
static __device__ void mk_attn_issue(const struct mk_gpu_args &a, const struct mk_task &t,
                                     const struct mk_attn_shape &s, char *tile, int b, int lo,
                                     int hi, int r, int which, int u, int tpb)
{
    const int n = b < a.batch ? min(max(hi - lo - r * s.CH, 0), s.CH) : 0;
    for (int x = u + (t.split == 0 && r == 0 ? s.C8 : 0); x < n * s.C8; x += tpb) {
        const int i = x / s.C8, c = x - i * s.C8, p = hi - 1 - (r * s.CH + i);
        const uint16_t *src = a.kv + mk_kv_index(a, t.layer, which, b, (int)t.r0, p) + 8 * c;
        const uint32_t dst = (uint32_t)__cvta_generic_to_shared(
            tile + (size_t)((b * 2 + which) * s.CH + i) * s.RS + 16 * c);
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" :: "r"(dst), "l"(src) : "memory");
    }
    asm volatile("cp.async.commit_group;" ::: "memory");
}

/* Until this thread's copies but the newest group landed; then the block barrier. */
static __device__ __forceinline__ void mk_attn_wait_sync(void)
{
    asm volatile("cp.async.wait_group 1;" ::: "memory");
    __syncthreads();
}

/* Scores of round r: thread group of qp lanes per (b, head, row), chunks c = part, part +
 * qp, ...; the group's sums meet by a xor tree. */
static __device__ void mk_attn_scores(const struct mk_attn_shape &s, int B, int G, int D, int r,
                                      const char *tile, const float *q, const int *lo,
                                      const int *hi, float *sc)
{
    int qp = 1;
    while (qp < 4 && qp < s.C8 && B * G * s.CH * qp * 2 <= MK_GPU_THREADS) qp *= 2;
    const int total = B * G * s.CH * qp;
    for (int x0 = 0; x0 < total; x0 += MK_GPU_THREADS) {
        const int x = x0 + (int)threadIdx.x, part = x % qp, i = (x / qp) % s.CH;
        const int bg = x / (qp * s.CH);
        const bool on = x < total && i < mk_attn_rows(lo, hi, bg / G, r, s.CH);
        float sum = 0.0f;
        if (on) {
            const char *krow = tile + (size_t)((bg / G) * 2 * s.CH + i) * s.RS;
            const float *qv = q + bg * D;
            for (int c = part; c < s.C8; c += qp) {
                float kf[8];
                mk_unpack8(*reinterpret_cast<const uint4 *>(krow + 16 * c), kf);
                const float4 q0 = *reinterpret_cast<const float4 *>(qv + 8 * c);
                const float4 q1 = *reinterpret_cast<const float4 *>(qv + 8 * c + 4);
                sum += q0.x * kf[0] + q0.y * kf[1] + q0.z * kf[2] + q0.w * kf[3] +
                       q1.x * kf[4] + q1.y * kf[5] + q1.z * kf[6] + q1.w * kf[7];
            }
        }
        for (int o = qp / 2; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
        if (on && part == 0) sc[bg * s.CH + i] = sum;
    }
}

/* Softmax statistics of round r, warp per (b, head): the round's max, e = exp(s - m)
 * in place, the running max and sum, and the factor cf that rescales the old acc. */
static __device__ void mk_attn_softmax(const struct mk_attn_shape &s, int B, int G, int r,
                                       const int *lo, const int *hi, float *sc, float *mx,
                                       float *sm, float *cf)
{
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    for (int bg = warp; bg < B * G; bg += MK_WARPS) {
        const int n = mk_attn_rows(lo, hi, bg / G, r, s.CH);
        float *e = sc + bg * s.CH;
        if (n == 0) {
            if (lane == 0) cf[bg] = 1.0f;
            continue;
        }
        float cm = -CUDART_INF_F;
        for (int i = lane; i < n; i += 32) cm = fmaxf(cm, e[i]);
        cm = mk_warp_max(cm);
        const float mold = mx[bg], mnew = fmaxf(mold, cm);
        float ps = 0.0f;
        for (int i = lane; i < n; i += 32) {
            const float ei = expf(e[i] - mnew);
            e[i] = ei;
            ps += ei;
        }
        ps = mk_warp_sum(ps);
        if (lane == 0) {
            const float f = expf(mold - mnew);
            cf[bg] = f;
            sm[bg] = sm[bg] * f + ps;
            mx[bg] = mnew;
        }
    }
}

/* acc = acc cf + sum_i e_i V_i over round r: thread per (slice, b, head, 8 dims), rows
 * slice, slice + RSL, ...; with RSL > 1 the slices go to red and mk_attn_combine adds
 * them in slice order. */
static __device__ void mk_attn_pv(const struct mk_attn_shape &s, int B, int G, int D, int r,
                                  const char *tile, const float *sc, const int *lo, const int *hi,
                                  const float *cf, float *acc, float *red)
{
    const int items = B * G * s.C8, total = s.RSL * items;
    for (int x = threadIdx.x; x < total; x += MK_GPU_THREADS) {
        const int sl = x / items, it = x - sl * items, c = it % s.C8, bg = it / s.C8;
        const int n = mk_attn_rows(lo, hi, bg / G, r, s.CH);
        const float *e = sc + bg * s.CH;
        const char *vcol = tile + (size_t)((bg / G) * 2 + 1) * s.CH * s.RS + 16 * c;
        float o[8];
#pragma unroll
        for (int k = 0; k < 8; k++) o[k] = 0.0f;
        for (int i = sl; i < n; i += s.RSL) {
            const float ei = e[i];
            float vf[8];
            mk_unpack8(*reinterpret_cast<const uint4 *>(vcol + (size_t)i * s.RS), vf);
#pragma unroll
            for (int k = 0; k < 8; k++) o[k] += ei * vf[k];
        }
        if (s.RSL == 1) {
            float *ad = acc + bg * D + 8 * c;
            const float f = cf[bg];
#pragma unroll
            for (int k = 0; k < 8; k++) ad[k] = ad[k] * f + o[k];
        } else {
            float4 *rd = reinterpret_cast<float4 *>(red + (size_t)x * 8);
            rd[0] = make_float4(o[0], o[1], o[2], o[3]);
            rd[1] = make_float4(o[4], o[5], o[6], o[7]);
        }
    }
}

static __device__ void mk_attn_combine(const struct mk_attn_shape &s, int B, int G,
                                       const float *red, const float *cf, float *acc)
{
    const int items = B * G * s.C8;
    for (int it = threadIdx.x; it < items; it += MK_GPU_THREADS) {
        const float f = cf[it / s.C8];
        float *ad = acc + (size_t)it * 8; /* (b, head) * D + 8 c */
#pragma unroll
        for (int k = 0; k < 8; k++) {
            float v = 0.0f;
            for (int sl = 0; sl < s.RSL; sl++) v += red[((size_t)sl * items + it) * 8 + k];
            ad[k] = ad[k] * f + v;
        }
    }
}

/* One warp: the head vector in[b, col .. col + D), RMS-normalized with nw (nullptr: no
 * norm) and rotated at pos, times mul, into q[0..D) (shared) or, when q is nullptr, as
 * bf16 into kv[0..D). Lane l owns the pairs (d, d + D/2), d = l, l + 32, ... */
static __device__ void mk_attn_rope_vec(const struct mk_gpu_args &a, const struct mk_act &in,
                                        int b, int col, const uint16_t *nw, int pos, float mul,
                                        float *q, __nv_bfloat16 *kv)
{
    const int lane = threadIdx.x % 32, D = a.cfg.head_dim, half = D / 2;
    float ss = 0.0f;
    for (int d = lane; d < D; d += 32) {
        float v = mk_act_get(in, b, (uint32_t)(col + d));
        ss += v * v;
    }
    ss = mk_warp_sum(ss);
    float rs = rsqrtf(ss / (float)D + a.cfg.rms_norm_eps);
    for (int d = lane; d < half; d += 32) {
        float x0 = mk_act_get(in, b, (uint32_t)(col + d));
        float x1 = mk_act_get(in, b, (uint32_t)(col + d + half));
        if (nw) {
            x0 = x0 * rs * mk_wget(nw, d);
            x1 = x1 * rs * mk_wget(nw, d + half);
        }
        float s, c;
        sincosf((float)pos * a.inv_freq[d], &s, &c);
        float o0 = x0 * c - x1 * s, o1 = x1 * c + x0 * s;
        if (q) {
            q[d] = o0 * mul;
            q[d + half] = o1 * mul;
        } else {
            kv[d] = __float2bfloat16_rn(o0);
            kv[d + half] = __float2bfloat16_rn(o1);
        }
    }
}

/* The serial path (head dims the tiled one does not take): one batch row at a time; a
 * warp per q/k/v vector, then per MK_ATTN_CHUNK positions: scores (warp per position),
 * softmax (warp per head), acc (thread per (head, dim)). Shared layout: q[G][D]
 * (pre-scaled), acc[G][D], p[G][CHUNK], m[G], l[G], corr[G]. */
static __device__ void mk_attn_partial_serial(const struct mk_gpu_args &a, const struct mk_task &t,
                                              char *smem)
{
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, nwarps = blockDim.x / 32;
    const int D = a.cfg.head_dim, nh = a.cfg.n_heads, nkv = a.cfg.n_kv_heads;
    const int G = nh / nkv, h = (int)t.r0, GD = G * D;
    const int ns = t.n_split > 0 ? t.n_split : 1;
    float *q = reinterpret_cast<float *>(smem + MK_SMEM_MISC);
    float *acc = q + GD, *p = acc + GD, *mx = p + G * MK_ATTN_CHUNK;
    float *sum = mx + G, *corr = sum + G;
    const float scale = rsqrtf((float)D);
    struct mk_act in = mk_own_act(a, MK_IN0, (uint32_t)(nh + 2 * nkv) * D);
    const uint16_t *qn = t.w0 != MK_NONE ? mk_own_weight(a, 0) : nullptr;
    const uint16_t *kn = t.w1 != MK_NONE ? mk_own_weight(a, 1) : nullptr;
    float *part = mk_own_buf(a, MK_OUT);
    __nv_bfloat16 *kv = reinterpret_cast<__nv_bfloat16 *>(a.kv);
    for (int b = 0; b < a.batch; b++) {
        int pos = __ldcg(a.pos + b), lo, hi;
        mk_plan_kv_split(a.cfg.sliding_window, pos + 1, t.split, (uint32_t)ns, &lo, &hi);
        const __nv_bfloat16 *K = kv + mk_kv_index(a, t.layer, 0, b, h, 0);
        const __nv_bfloat16 *V = kv + mk_kv_index(a, t.layer, 1, b, h, 0);
        /* prologue (block-uniform condition): q of the group; split 0 appends k, v */
        const int nvec = lo < hi ? G + (t.split == 0 ? 2 : 0) : 0;
        for (int j = warp; j < nvec; j += nwarps) {
            if (j < G) {
                mk_attn_rope_vec(a, in, b, (h * G + j) * D, qn, pos, scale, q + j * D, nullptr);
            } else if (j == G) {
                mk_attn_rope_vec(a, in, b, (nh + h) * D, kn, pos, 1.0f, nullptr,
                                 kv + mk_kv_index(a, t.layer, 0, b, h, pos));
            } else {
                __nv_bfloat16 *vd = kv + mk_kv_index(a, t.layer, 1, b, h, pos);
                for (int d = lane; d < D; d += 32)
                    vd[d] = __float2bfloat16_rn(mk_act_get(in, b, (uint32_t)((nh + nkv + h) * D + d)));
            }
        }
        for (int i = threadIdx.x; i < GD; i += blockDim.x) acc[i] = 0.0f;
        if (threadIdx.x < (unsigned)G) { mx[threadIdx.x] = -CUDART_INF_F; sum[threadIdx.x] = 0.0f; }
        __syncthreads();
        for (int c0 = lo; c0 < hi; c0 += MK_ATTN_CHUNK) {
            int n = min(MK_ATTN_CHUNK, hi - c0);
            for (int i = warp; i < n; i += nwarps) {
                const __nv_bfloat16 *kr = K + (size_t)(c0 + i) * D;
                for (int g = 0; g < G; g++) {
                    float s = 0.0f;
                    for (int d = lane; d < D; d += 32)
                        s += q[g * D + d] * __bfloat162float(__ldcg(kr + d));
                    s = mk_warp_sum(s);
                    if (lane == 0) p[g * MK_ATTN_CHUNK + i] = s;
                }
            }
            __syncthreads();
            for (int g = warp; g < G; g += nwarps) {
                float cm = -CUDART_INF_F;
                for (int i = lane; i < n; i += 32) cm = fmaxf(cm, p[g * MK_ATTN_CHUNK + i]);
                cm = mk_warp_max(cm);
                float mnew = fmaxf(mx[g], cm);
                float ps = 0.0f;
                for (int i = lane; i < n; i += 32) {
                    float e = expf(p[g * MK_ATTN_CHUNK + i] - mnew);
                    p[g * MK_ATTN_CHUNK + i] = e;
                    ps += e;
                }
                ps = mk_warp_sum(ps);
                __syncwarp();
                if (lane == 0) {
                    float cf = expf(mx[g] - mnew);
                    corr[g] = cf;
                    sum[g] = sum[g] * cf + ps;
                    mx[g] = mnew;
                }
            }
            __syncthreads();
            for (int i = threadIdx.x; i < GD; i += blockDim.x) {
                int g = i / D, d = i % D;
                float v = acc[i] * corr[g];
                for (int j = 0; j < n; j++)
                    v += p[g * MK_ATTN_CHUNK + j] * __bfloat162float(__ldcg(V + (size_t)(c0 + j) * D + d));
                acc[i] = v;
            }
            __syncthreads();
        }
        for (int i = threadIdx.x; i < GD; i += blockDim.x) {
            int g = i / D, d = i % D;
            float *o = part + (((size_t)t.split * a.batch + b) * nh + h * G + g) * (D + 2);
            o[d] = acc[i];
            if (d == 0) { o[D] = mx[g]; o[D + 1] = sum[g]; }
        }
        __syncthreads();
    }
}

static __device__ void mk_attn_partial_tiled(const struct mk_gpu_args &a, const struct mk_task &t,
                                             char *smem)
{
    const int D = a.cfg.head_dim, nh = a.cfg.n_heads, nkv = a.cfg.n_kv_heads, G = nh / nkv;
    const int B = a.batch, nb = mk_attn_bucket(B);
    const struct mk_attn_shape s = mk_attn_plan(D, G, nb);
    if (!s.ok) {
        mk_attn_partial_serial(a, t, smem);
        return;
    }
    const int tid = threadIdx.x, warp = tid / 32, h = (int)t.r0;
    const int ns = t.n_split > 0 ? t.n_split : 1;
    char *w = smem + MK_SMEM_MISC, *tile = w;
    float *q = reinterpret_cast<float *>(w + s.o_q), *acc = reinterpret_cast<float *>(w + s.o_acc);
    float *red = reinterpret_cast<float *>(w + s.o_red);
    float *sc = reinterpret_cast<float *>(w + s.o_sc);
    float *mx = reinterpret_cast<float *>(w + s.o_m), *sm = reinterpret_cast<float *>(w + s.o_l);
    float *cf = reinterpret_cast<float *>(w + s.o_cf);
    int *slo = reinterpret_cast<int *>(w + s.o_lo), *shi = reinterpret_cast<int *>(w + s.o_hi);
    const struct mk_act in = mk_own_act(a, MK_IN0, (uint32_t)(nh + 2 * nkv) * D);
    const uint16_t *qn = t.w0 != MK_NONE ? mk_own_weight(a, 0) : nullptr;
    const uint16_t *kn = t.w1 != MK_NONE ? mk_own_weight(a, 1) : nullptr;
    /* Roles: thread u of tpb copies the rows of sequence cb; warp steps ws = warp, + 16, ...
     * of the prologue take vpw vectors each. pos[cb] and the first step's vectors are
     * loaded together, before anything waits. */
    const int tpb = MK_GPU_THREADS / nb, cb = tid / tpb, u = tid % tpb;
    int lpv = 1;
    while (lpv < s.C8) lpv *= 2;
    const int vpw = 32 / lpv, nv = G + (t.split == 0 ? 2 : 0), nsteps = (B * nv + vpw - 1) / vpw;
    const int cpos = cb < B ? __ldcg(a.pos + cb) : 0;
    struct mk_attn_vec v;
    mk_attn_vec_load(a, in, h, nv, lpv, warp, v);
    for (int i = tid; i < B * G * D; i += MK_GPU_THREADS) acc[i] = 0.0f;
    for (int i = tid; i < B * G; i += MK_GPU_THREADS) {
        mx[i] = -CUDART_INF_F;
        sm[i] = 0.0f;
    }
    int clo = 0, chi = 0;
    if (cb < B) {
        mk_plan_kv_split(a.cfg.sliding_window, cpos + 1, t.split, (uint32_t)ns, &clo, &chi);
        if (u == 0) {
            slo[cb] = clo;
            shi[cb] = chi;
            if (chi - clo > s.CH) { /* the later rounds' rows start for L2 now */
                const uint32_t bytes = (uint32_t)(chi - s.CH - clo) * (uint32_t)D * 2u;
                mk_prefetch_l2(a.kv + mk_kv_index(a, t.layer, 0, cb, h, clo), bytes);
                mk_prefetch_l2(a.kv + mk_kv_index(a, t.layer, 1, cb, h, clo), bytes);
            }
        }
    }
    mk_attn_issue(a, t, s, tile, cb, clo, chi, 0, 0, u, tpb);
    mk_attn_issue(a, t, s, tile, cb, clo, chi, 0, 1, u, tpb);
    for (int ws = warp; ws < nsteps; ws += MK_WARPS) {
        if (ws != warp) mk_attn_vec_load(a, in, h, nv, lpv, ws, v);
        mk_attn_vec_store(a, t, s, lpv, v, qn, kn, q, tile);
    }
    /* Copy groups in commit order: K0, V0, then per round K(r+1) once the scores read
     * K(r), V(r+1) once acc read V(r); a wait for all but the newest group lands the one
     * needed next, so round r + 1's rows stream in while round r computes. */
    mk_attn_wait_sync(); /* K0, the prologue's q and new rows, lo/hi */
    int R = 0;
    for (int b = 0; b < B; b++) R = max(R, (shi[b] - slo[b] + s.CH - 1) / s.CH);
    for (int r = 0; r < R; r++) {
        if (r > 0) mk_attn_wait_sync(); /* K(r) */
        mk_attn_scores(s, B, G, D, r, tile, q, slo, shi, sc);
        __syncthreads();
        mk_attn_issue(a, t, s, tile, cb, clo, chi, r + 1, 0, u, tpb);
        mk_attn_softmax(s, B, G, r, slo, shi, sc, mx, sm, cf);
        mk_attn_wait_sync(); /* V(r), the softmax */
        mk_attn_pv(s, B, G, D, r, tile, sc, slo, shi, cf, acc, red);
        __syncthreads();
        mk_attn_issue(a, t, s, tile, cb, clo, chi, r + 1, 1, u, tpb);
        if (s.RSL > 1) {
            mk_attn_combine(s, B, G, red, cf, acc);
            __syncthreads();
        }
    }
    asm volatile("cp.async.wait_all;" ::: "memory"); /* (round R has no rows) */
    float *part = mk_own_buf(a, MK_OUT);
    const int D2 = D + 2;
    for (int x = tid; x < B * G * D2; x += MK_GPU_THREADS) {
        const int bg = x / D2, d = x - bg * D2, b = bg / G;
        float *o = part + (((size_t)t.split * B + b) * nh + h * G + bg % G) * D2;
        o[d] = d < D ? acc[bg * D + d] : d == D ? mx[bg] : sm[bg];
    }
}

static __device__ void mk_attn_merge_tiled(const struct mk_gpu_args &a, const struct mk_task &t)
{
    const int D = a.cfg.head_dim, nh = a.cfg.n_heads, nkv = a.cfg.n_kv_heads;
    const int G = nh / nkv, h = (int)t.r0, B = a.batch, D2 = D + 2, nq = (D + 3) / 4;
    const int ns = t.n_split > 0 ? t.n_split : 1;
    const float *part = mk_own_buf(a, MK_IN0);
    float *out = mk_own_buf(a, MK_OUT);
    const size_t split_stride = (size_t)B * nh * D2;
    /* Thread per (b, head, elements d .. d + 3; D is even, d + 2 and d + 3 exist when
     * d + 2 < D): pos, then every non-empty split's max, sum and acc of the first 8 at
     * once (rows of D + 2 floats: 8-byte aligned, hence float2 loads). */
    for (int x = threadIdx.x; x < B * G * nq; x += blockDim.x) {
        const int bg = x / nq, d = 4 * (x - bg * nq), b = bg / G, head = h * G + bg % G;
        const bool two = d + 2 < D;
        const int ne = (int)mk_plan_kv_nonempty(a.cfg.sliding_window, __ldcg(a.pos + b) + 1,
                                                (uint32_t)ns);
        const float *row = part + ((size_t)b * nh + head) * D2;
        float ms[8], ls[8], M = -CUDART_INF_F;
        float2 x0[8], x1[8];
#pragma unroll
        for (int s = 0; s < 8; s++) {
            ms[s] = -CUDART_INF_F;
            ls[s] = 0.0f;
            x0[s] = x1[s] = make_float2(0.0f, 0.0f);
            if (s < ne) {
                const float *o = row + s * split_stride;
                ms[s] = __ldcg(o + D);
                ls[s] = __ldcg(o + D + 1);
                x0[s] = __ldcg(reinterpret_cast<const float2 *>(o + d));
                if (two) x1[s] = __ldcg(reinterpret_cast<const float2 *>(o + d + 2));
                M = fmaxf(M, ms[s]);
            }
        }
        for (int s = 8; s < ne; s++) M = fmaxf(M, __ldcg(row + s * split_stride + D));
        float n0 = 0.0f, n1 = 0.0f, n2 = 0.0f, n3 = 0.0f, den = 0.0f;
#pragma unroll
        for (int s = 0; s < 8; s++) {
            if (s >= ne || ms[s] == -CUDART_INF_F) continue;
            const float w = expf(ms[s] - M);
            n0 += x0[s].x * w;
            n1 += x0[s].y * w;
            n2 += x1[s].x * w;
            n3 += x1[s].y * w;
            den += ls[s] * w;
        }
        for (int s = 8; s < ne; s++) {
            const float *o = row + s * split_stride;
            const float m = __ldcg(o + D);
            if (m == -CUDART_INF_F) continue;
            const float w = expf(m - M);
            n0 += __ldcg(o + d) * w;
            n1 += __ldcg(o + d + 1) * w;
            if (two) {
                n2 += __ldcg(o + d + 2) * w;
                n3 += __ldcg(o + d + 3) * w;
            }
            den += __ldcg(o + D + 1) * w;
        }
        float *od = out + (size_t)b * nh * D + (size_t)head * D + d;
        od[0] = n0 / den;
        od[1] = n1 / den;
        if (two) {
            od[2] = n2 / den;
            od[3] = n3 / den;
        }
    }
}


static __device__ void mk_attn_merge_serial(const struct mk_gpu_args &a, const struct mk_task &t)
{
    const int D = a.cfg.head_dim, nh = a.cfg.n_heads, nkv = a.cfg.n_kv_heads;
    const int G = nh / nkv, h = (int)t.r0, GD = G * D;
    const int ns = t.n_split > 0 ? t.n_split : 1;
    const float *part = mk_own_buf(a, MK_IN0);
    float *out = mk_own_buf(a, MK_OUT);
    for (int i = threadIdx.x; i < a.batch * GD; i += blockDim.x) {
        int b = i / GD, g = (i % GD) / D, d = i % D;
        int head = h * G + g;
        int ne = (int)mk_plan_kv_nonempty(a.cfg.sliding_window, __ldcg(a.pos + b) + 1, (uint32_t)ns);
        float M = -CUDART_INF_F;
        for (int s = 0; s < ne; s++)
            M = fmaxf(M, __ldcg(part + (((size_t)s * a.batch + b) * nh + head) * (D + 2) + D));
        float num = 0.0f, den = 0.0f;
        for (int s = 0; s < ne; s++) {
            const float *o = part + (((size_t)s * a.batch + b) * nh + head) * (D + 2);
            float ms = __ldcg(o + D);
            if (ms == -CUDART_INF_F) continue;
            float w = expf(ms - M);
            num += __ldcg(o + d) * w;
            den += __ldcg(o + D + 1) * w;
        }
        out[(size_t)b * nh * D + (size_t)head * D + d] = num / den;
    }
}

/* The batch buckets pick the attention code: the tiled, latency-overlapped path for
 * NB >= 8, where it halves ATTN_PARTIAL (H100, Qwen3-0.6B, B=8: 41.7 -> 21 us per task);
 * the serial path (one warp per head vector, batch rows in turn) for NB <= 4, where the
 * tiled path measured slower (B=1: 6.2 -> 16 us per task) and, compiled into the B=1
 * kernel too, came with every latency-bound task of that kernel running ~45 % slower
 * (SAMPLE 26 -> 38 us; tg128 2.10 ms vs 1.50 ms with this split, same device, an old
 * binary as control both times). Its code grew mk_megakernel<1> from 45k to 57k SASS
 * lines: instruction-cache pressure is the suspect, not proven. */
template <int NB>
static __device__ __forceinline__ void mk_task_attn_partial(const struct mk_gpu_args &a,
                                                            const struct mk_task &t, char *smem)
{
    if constexpr (NB >= 8)
        mk_attn_partial_tiled(a, t, smem);
    else
        mk_attn_partial_serial(a, t, smem);
}

template <int NB>
static __device__ __forceinline__ void mk_task_attn_merge(const struct mk_gpu_args &a,
                                                          const struct mk_task &t)
{
    if constexpr (NB >= 8)
        mk_attn_merge_tiled(a, t);
    else
        mk_attn_merge_serial(a, t);
}

#endif
