/* ATTN_PARTIAL and ATTN_MERGE (plan.h).
 *
 * ATTN_PARTIAL (kv head h = r0, split s of n): for each batch row, positions [lo, hi) =
 * mk_plan_kv_split(window, L = pos[b] + 1, s, n): fixed-size chunks from the newest
 * position back, so split 0 always holds pos[b] and a short context leaves the last
 * splits empty. Prologue, one warp per head vector: the G query heads of group h are
 * read from the fused QKV buffer (in0), RMS-normalized over head_dim (w0 = q_norm),
 * rotated (rotate-half RoPE at pos[b], frequencies from the host's table) and kept in
 * shared memory pre-scaled by 1/sqrt(D); split 0 also normalizes (w1 = k_norm) and
 * rotates k of head h and writes k and v (bf16, round to nearest even) to the KV cache
 * at pos[b]; the block barrier after the prologue makes those stores visible to the
 * block's cache reads. Then, in chunks of MK_ATTN_CHUNK positions: scores of the G query
 * heads (one warp per position), an online softmax per head, and acc[g][d] updated with
 * the chunk's V rows. Writes [D] unnormalized acc, max, sum per (split, b, query head):
 * partials [n_split][B][n_heads][D + 2]. An empty range skips the prologue and writes
 * acc 0, max -inf, sum 0.
 * ATTN_MERGE: out[b, head] = sum_s acc_s e^(m_s - M) / sum_s l_s e^(m_s - M) over the
 * non-empty splits s < mk_plan_kv_nonempty(...) in order. */
#ifndef MK_TASK_ATTENTION_CUH
#define MK_TASK_ATTENTION_CUH

#include "tasks/common.cuh"

enum { MK_ATTN_CHUNK = MK_GPU_ATTN_CHUNK };

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

/* Shared layout of ATTN_PARTIAL: q[G][D] (pre-scaled), acc[G][D], p[G][CHUNK], m[G],
 * l[G], corr[G]. */
static __device__ void mk_task_attn_partial(const struct mk_gpu_args &a, const struct mk_task &t,
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
    struct mk_act in = mk_act_of(a, t.in0, (uint32_t)(nh + 2 * nkv) * D);
    const uint16_t *qn = t.w0 != MK_NONE ? mk_weight(a, t.w0) : nullptr;
    const uint16_t *kn = t.w1 != MK_NONE ? mk_weight(a, t.w1) : nullptr;
    float *part = mk_buf(a, t.out);
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

static __device__ void mk_task_attn_merge(const struct mk_gpu_args &a, const struct mk_task &t)
{
    const int D = a.cfg.head_dim, nh = a.cfg.n_heads, nkv = a.cfg.n_kv_heads;
    const int G = nh / nkv, h = (int)t.r0, GD = G * D;
    const int ns = t.n_split > 0 ? t.n_split : 1;
    const float *part = mk_buf(a, t.in0);
    float *out = mk_buf(a, t.out);
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

#endif
