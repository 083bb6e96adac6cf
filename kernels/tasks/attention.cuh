/* QK_ROPE_KV, ATTN_PARTIAL and ATTN_MERGE.
 *
 * QK_ROPE_KV: one warp per head vector (the G = n_heads / n_kv_heads query heads, the K and
 * the V head of each kv head in [r0, r1), for every batch row): the vector goes to a
 * per-warp shared row, is RMS-normalized over head_dim (q_norm / k_norm), rotated
 * (rotate-half RoPE at pos[b], frequencies from the host's table), and stored: q fp32 to
 * out [B, n_heads * D], k and v bf16 (round to nearest even) to the KV cache at pos[b].
 *
 * ATTN_PARTIAL (kv head h = r0, split s of n): for each batch row, positions
 * [f + s*(L-f)/n, f + (s+1)*(L-f)/n), L = pos[b] + 1, f = the first visible position (0, or
 * L - W with a sliding window of W positions), in chunks of MK_ATTN_CHUNK: scores of the G query
 * heads (one warp per position), an online softmax per head, and acc[g][d] updated with
 * the chunk's V rows. Writes [D] unnormalized acc, max, sum per (split, b, query head):
 * partials [n_split][B][n_heads][D + 2]. An empty range writes acc 0, max -inf, sum 0.
 * ATTN_MERGE: out[b, head] = sum_s acc_s e^(m_s - M) / sum_s l_s e^(m_s - M). */
#ifndef MK_TASK_ATTENTION_CUH
#define MK_TASK_ATTENTION_CUH

#include "tasks/common.cuh"

enum { MK_ATTN_CHUNK = MK_GPU_ATTN_CHUNK };

static __device__ void mk_task_qk_rope_kv(const struct mk_gpu_args &a, const struct mk_task &t,
                                   char *smem)
{
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, nwarps = blockDim.x / 32;
    const int D = a.cfg.head_dim, nh = a.cfg.n_heads, nkv = a.cfg.n_kv_heads;
    const int G = nh / nkv, half = D / 2;
    const int per = G + 2; /* vectors per kv head: G queries, k, v */
    const uint32_t width = (uint32_t)(nh + 2 * nkv) * D;
    struct mk_act in = mk_act_of(a, t.in0, width);
    float *row = reinterpret_cast<float *>(smem + MK_SMEM_MISC) + (size_t)warp * 2 * D;
    const uint16_t *qn = t.w0 != MK_NONE ? mk_weight(a, t.w0) : nullptr;
    const uint16_t *kn = t.w1 != MK_NONE ? mk_weight(a, t.w1) : nullptr;
    float *qout = mk_buf(a, t.out);
    const int nvec = (int)(t.r1 - t.r0) * per * a.batch;
    for (int j = warp; j < nvec; j += nwarps) {
        int b = j / ((int)(t.r1 - t.r0) * per);
        int rem = j % ((int)(t.r1 - t.r0) * per);
        int h = (int)t.r0 + rem / per, kind = rem % per; /* kind < G: query h*G+kind */
        int col = kind < G ? (h * G + kind) * D : kind == G ? (nh + h) * D : (nh + nkv + h) * D;
        int pos = __ldcg(a.pos + b);
        float ss = 0.0f;
        for (int d = lane; d < D; d += 32) {
            float v = mk_act_get(in, b, col + d);
            row[d] = v;
            ss += v * v;
        }
        ss = mk_warp_sum(ss);
        const uint16_t *nw = kind < G ? qn : kind == G ? kn : nullptr;
        float rs = rsqrtf(ss / (float)D + a.cfg.rms_norm_eps);
        __syncwarp();
        if (kind <= G && nw)
            for (int d = lane; d < D; d += 32) row[d] = row[d] * rs * mk_wget(nw, d);
        __syncwarp();
        float *o = row + D;
        if (kind <= G) {
            for (int d = lane; d < half; d += 32) {
                float s, c;
                sincosf((float)pos * a.inv_freq[d], &s, &c);
                float x0 = row[d], x1 = row[d + half];
                o[d] = x0 * c - x1 * s;
                o[d + half] = x1 * c + x0 * s;
            }
        } else {
            for (int d = lane; d < D; d += 32) o[d] = row[d];
        }
        __syncwarp();
        if (kind < G) {
            float *q = qout + (size_t)b * nh * D + (size_t)(h * G + kind) * D;
            for (int d = lane; d < D; d += 32) q[d] = o[d];
        } else {
            __nv_bfloat16 *kv = reinterpret_cast<__nv_bfloat16 *>(a.kv) +
                                mk_kv_index(a, t.layer, kind == G ? 0 : 1, b, h, pos);
            for (int d = lane; d < D; d += 32) kv[d] = __float2bfloat16_rn(o[d]);
        }
        __syncwarp();
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
    struct mk_act qin = mk_act_of(a, t.in0, (uint32_t)nh * D);
    float *part = mk_buf(a, t.out);
    const __nv_bfloat16 *kv = reinterpret_cast<const __nv_bfloat16 *>(a.kv);
    for (int b = 0; b < a.batch; b++) {
        int L = __ldcg(a.pos + b) + 1;
        int first = a.cfg.sliding_window > 0 && L > a.cfg.sliding_window ? L - a.cfg.sliding_window : 0;
        int lo = first + (int)((int64_t)t.split * (L - first) / ns);
        int hi = first + (int)((int64_t)(t.split + 1) * (L - first) / ns);
        const __nv_bfloat16 *K = kv + mk_kv_index(a, t.layer, 0, b, h, 0);
        const __nv_bfloat16 *V = kv + mk_kv_index(a, t.layer, 1, b, h, 0);
        for (int i = threadIdx.x; i < GD; i += blockDim.x) {
            q[i] = mk_act_get(qin, b, (uint32_t)(h * GD + i)) * scale;
            acc[i] = 0.0f;
        }
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
        float M = -CUDART_INF_F;
        for (int s = 0; s < ns; s++)
            M = fmaxf(M, __ldcg(part + (((size_t)s * a.batch + b) * nh + head) * (D + 2) + D));
        float num = 0.0f, den = 0.0f;
        for (int s = 0; s < ns; s++) {
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
