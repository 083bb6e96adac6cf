/* The small kernels of the tensor-core prefill (include/mk/prefill.h); the linears are
 * cuBLASLt GEMMs issued by src/runtime/prefill_cuda.c.
 *
 * Tokens of all sequences of a call are packed: row t of every activation is one token.
 *   x      fp32 [T][H]              residual stream
 *   xn     bf16 [T][H]              RMSNorm output (GEMM operand)
 *   qkv    fp32 [T][(Nq + 2 Nkv) D] fused QKV GEMM output, q heads, then k, then v
 *   q      bf16 [T][Nq][D]          q after q-norm and RoPE
 *   att    bf16 [T][Nq D]           attention output (o-proj operand)
 *   gate, up fp32 [T][I] -> h bf16 [T][I]
 * Per token: tok[t], pos[t] (absolute position), slot[t] (KV cache sequence).
 * KV cache: bf16, [layer][K|V][b][kv head][max_ctx][D] (mk_plan_kv_offset).
 *
 * Numerics follow the CPU reference (src/ref): RMSNorm w * (x * rsqrt(mean(x^2) + eps)),
 * RoPE rotate_half with angle = (float)pos * inv_freq[i], attention scale D^-0.5, SiLU
 * g / (1 + exp(-g)). Every reduction has a fixed order: reruns are bit-identical as far
 * as these kernels go. */
#include "prefill_kernels.cuh"

#include <cuda_bf16.h>
#include <math_constants.h>

__device__ __forceinline__ float pf_bf(uint16_t v) { return __uint_as_float((uint32_t)v << 16); }
__device__ __forceinline__ uint16_t pf_tobf(float f)
{
    return __bfloat16_as_ushort(__float2bfloat16_rn(f));
}

__device__ __forceinline__ float pf_warp_sum(float v)
{
    for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float pf_warp_max(float v)
{
    for (int o = 16; o; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* KV cache element offset of (layer, which, slot, kv head, pos, 0). */
__device__ __forceinline__ size_t pf_kv_index(const struct mk_pf_shape &s, int layer, int which,
                                              int slot, int g, int pos)
{
    return (((((size_t)layer * 2 + which) * s.batch + slot) * s.n_kv + g) * s.max_ctx + pos) *
           s.head_dim;
}

/* ---- embedding, RMSNorm, SiLU*mul, argmax ------------------------------------------ */

__global__ void pf_embed(const uint16_t *E, int H, const int32_t *tok, float *x)
{
    const uint16_t *e = E + (size_t)tok[blockIdx.x] * H;
    float *o = x + (size_t)blockIdx.x * H;
    for (int i = threadIdx.x; i < H; i += blockDim.x) o[i] = pf_bf(e[i]);
}

/* out[r] = bf16(w * (x[row] * rsqrt(mean(x[row]^2) + eps))), row = rows ? rows[r] : r. */
__global__ void pf_rmsnorm(const float *x, int H, const int32_t *rows, const uint16_t *w,
                           float eps, uint16_t *out)
{
    __shared__ float red[32];
    int r = blockIdx.x, row = rows ? rows[r] : r;
    const float *xr = x + (size_t)row * H;
    float ss = 0.f;
    for (int i = threadIdx.x; i < H; i += blockDim.x) ss += xr[i] * xr[i];
    ss = pf_warp_sum(ss);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = ss;
    __syncthreads();
    if (threadIdx.x < 32) {
        float v = threadIdx.x < blockDim.x / 32 ? red[threadIdx.x] : 0.f;
        v = pf_warp_sum(v);
        if (threadIdx.x == 0) red[0] = v;
    }
    __syncthreads();
    float inv = 1.0f / sqrtf(red[0] / (float)H + eps);
    uint16_t *o = out + (size_t)r * H;
    for (int i = threadIdx.x; i < H; i += blockDim.x) o[i] = pf_tobf(pf_bf(w[i]) * (xr[i] * inv));
}

__global__ void pf_silu_mul(const float *gate, const float *up, size_t n, uint16_t *h)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float g = gate[i];
        h[i] = pf_tobf(g / (1.0f + expf(-g)) * up[i]);
    }
}

/* next[r] = argmax of logits row rows[r] (or r); ties -> lowest index; NaN never wins. */
__global__ void pf_argmax(const float *logits, int V, const int32_t *rows, int32_t *next)
{
    __shared__ float bv[32];
    __shared__ int bi[32];
    int r = blockIdx.x, row = rows ? rows[r] : r;
    const float *l = logits + (size_t)row * V;
    float best = -CUDART_INF_F;
    int idx = -1;
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
        float v = l[i];
        if (v > best || (idx < 0 && v == v)) { best = v; idx = i; }
    }
    for (int o = 16; o; o >>= 1) {
        float v2 = __shfl_xor_sync(0xffffffffu, best, o);
        int i2 = __shfl_xor_sync(0xffffffffu, idx, o);
        bool take = i2 >= 0 && (idx < 0 || v2 > best || (v2 == best && i2 < idx));
        if (take) { best = v2; idx = i2; }
    }
    if ((threadIdx.x & 31) == 0) { bv[threadIdx.x >> 5] = best; bi[threadIdx.x >> 5] = idx; }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int k = 1; k < (int)blockDim.x / 32; k++)
            if (bi[k] >= 0 && (bi[0] < 0 || bv[k] > bv[0] || (bv[k] == bv[0] && bi[k] < bi[0]))) {
                bv[0] = bv[k];
                bi[0] = bi[k];
            }
        next[r] = bi[0] < 0 ? 0 : bi[0];
    }
}

/* ---- q/k-norm + RoPE + KV write ---------------------------------------------------- */

enum { PF_MAX_PAIRS = 4 }; /* (D / 2) / 32 pairs per lane, D <= 256 */

/* One block per token, one warp per head: q and k heads get (bias,) RMSNorm over D when
 * the family has it, then RoPE on the pairs (i, i + D/2); q goes to q_out, k and v to the
 * cache at (layer, slot[t], head, pos[t]). */
__global__ void pf_qk_rope_kv(struct mk_pf_shape s, int layer, const float *qkv,
                              const uint16_t *bias, const uint16_t *q_norm,
                              const uint16_t *k_norm, const float *inv_freq,
                              const int32_t *pos, const int32_t *slot, uint16_t *q_out,
                              uint16_t *kv)
{
    const int t = blockIdx.x, lane = threadIdx.x & 31, D = s.head_dim, half = D / 2;
    const int heads = s.n_q + 2 * s.n_kv, p = pos[t], b = slot[t];
    const float *row = qkv + (size_t)t * heads * D;
    for (int hh = threadIdx.x >> 5; hh < heads; hh += blockDim.x >> 5) {
        const float *src = row + (size_t)hh * D;
        const uint16_t *bb = bias ? bias + (size_t)hh * D : nullptr;
        if (hh >= s.n_q + s.n_kv) { /* v: bias only */
            int g = hh - s.n_q - s.n_kv;
            uint16_t *dst = kv + pf_kv_index(s, layer, 1, b, g, p);
            for (int d = lane; d < D; d += 32) dst[d] = pf_tobf(src[d] + (bb ? pf_bf(bb[d]) : 0.f));
            continue;
        }
        const bool is_q = hh < s.n_q;
        const uint16_t *nw = is_q ? q_norm : k_norm;
        float x1[PF_MAX_PAIRS], x2[PF_MAX_PAIRS];
        float ss = 0.f;
#pragma unroll
        for (int j = 0; j < PF_MAX_PAIRS; j++) {
            int i = lane + 32 * j;
            x1[j] = x2[j] = 0.f;
            if (i < half) {
                x1[j] = src[i] + (bb ? pf_bf(bb[i]) : 0.f);
                x2[j] = src[i + half] + (bb ? pf_bf(bb[i + half]) : 0.f);
                ss += x1[j] * x1[j] + x2[j] * x2[j];
            }
        }
        ss = pf_warp_sum(ss);
        float inv = 1.0f / sqrtf(ss / (float)D + s.eps);
        uint16_t *dst = is_q ? q_out + ((size_t)t * s.n_q + hh) * D
                             : kv + pf_kv_index(s, layer, 0, b, hh - s.n_q, p);
#pragma unroll
        for (int j = 0; j < PF_MAX_PAIRS; j++) {
            int i = lane + 32 * j;
            if (i >= half) continue;
            float a1 = x1[j], a2 = x2[j];
            if (nw) {
                a1 = pf_bf(nw[i]) * (a1 * inv);
                a2 = pf_bf(nw[i + half]) * (a2 * inv);
            }
            float ang = (float)p * inv_freq[i];
            float c = cosf(ang), sn = sinf(ang);
            dst[i] = pf_tobf(a1 * c - a2 * sn);
            dst[i + half] = pf_tobf(a2 * c + a1 * sn);
        }
    }
}

/* ---- causal GQA attention ---------------------------------------------------------- */

/* Block = (work item: sequence + a tile of PF_BQ queries, query head). 4 warps, each owns
 * PF_BQ / 4 queries; keys and values stream through shared memory PF_BK positions at a
 * time from the KV cache (fp32 in shared memory; K rows padded by one word so that lane
 * j reading key j hits its own bank). Online softmax per query (running max m, sum l,
 * output o in registers, lane owns dims lane + 32 i). A query at position p sees
 * [max(0, p - window + 1), p] (window 0: all). */
enum { PF_BQ = 16, PF_BK = 32, PF_ATT_THREADS = 128, PF_QPW = PF_BQ / (PF_ATT_THREADS / 32),
       PF_MAX_DW = 8 /* D / 32 dims per lane, D <= 256 */ };

__global__ void __launch_bounds__(PF_ATT_THREADS)
pf_attention(struct mk_pf_shape s, int layer, const uint16_t *q, const uint16_t *kv,
             const struct mk_pf_item *items, const struct mk_pf_seqinfo *seqs, uint16_t *att)
{
    extern __shared__ float pf_smem[];
    const int D = s.head_dim, h = blockIdx.y, g = h / (s.n_q / s.n_kv);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    float *Qs = pf_smem;                  /* [PF_BQ][D] */
    float *Ks = Qs + PF_BQ * D;           /* [PF_BK][D + 1] */
    float *Vs = Ks + PF_BK * (D + 1);     /* [PF_BK][D] */
    const struct mk_pf_item it = items[blockIdx.x];
    const struct mk_pf_seqinfo sq = seqs[it.seq];
    const int t0 = it.t0, nq = min(PF_BQ, sq.n - t0);
    const float scale = 1.0f / sqrtf((float)D);

    for (int i = threadIdx.x; i < PF_BQ * D; i += blockDim.x) {
        int qi = i / D, d = i - qi * D;
        Qs[i] = qi < nq ? pf_bf(q[((size_t)(sq.row0 + t0 + qi) * s.n_q + h) * D + d]) : 0.f;
    }
    const uint16_t *Kc = kv + pf_kv_index(s, layer, 0, sq.slot, g, 0);
    const uint16_t *Vc = kv + pf_kv_index(s, layer, 1, sq.slot, g, 0);
    const int p_first = sq.pos0 + t0, k_end = p_first + nq;
    const int k_begin = s.window > 0 && p_first >= s.window ? p_first - s.window + 1 : 0;

    float o[PF_QPW][PF_MAX_DW], m[PF_QPW], l[PF_QPW];
#pragma unroll
    for (int j = 0; j < PF_QPW; j++) {
        m[j] = -CUDART_INF_F;
        l[j] = 0.f;
#pragma unroll
        for (int i = 0; i < PF_MAX_DW; i++) o[j][i] = 0.f;
    }
    for (int k0 = k_begin; k0 < k_end; k0 += PF_BK) {
        __syncthreads(); /* the previous tile is consumed (and Qs written, first time) */
        for (int i = threadIdx.x; i < PF_BK * D; i += blockDim.x) {
            int kk = i / D, d = i - kk * D, p = k0 + kk;
            bool ok = p < k_end;
            Ks[kk * (D + 1) + d] = ok ? pf_bf(Kc[(size_t)p * D + d]) : 0.f;
            Vs[kk * D + d] = ok ? pf_bf(Vc[(size_t)p * D + d]) : 0.f;
        }
        __syncthreads();
#pragma unroll
        for (int j = 0; j < PF_QPW; j++) {
            const int qi = warp * PF_QPW + j;
            if (qi >= nq) continue; /* warp-uniform */
            const int pq = p_first + qi, kp = k0 + lane;
            const int lo = s.window > 0 && pq >= s.window ? pq - s.window + 1 : 0;
            const bool ok = kp <= pq && kp >= lo;
            float sc = -CUDART_INF_F;
            if (ok) {
                const float *qr = Qs + qi * D, *kr = Ks + lane * (D + 1);
                float dot = 0.f;
                for (int d = 0; d < D; d++) dot += qr[d] * kr[d];
                sc = dot * scale;
            }
            const float mx = pf_warp_max(sc);
            if (mx == -CUDART_INF_F) continue; /* no visible key in this tile */
            const float mnew = fmaxf(m[j], mx);
            const float alpha = expf(m[j] - mnew); /* 0 on the first visible tile */
            const float pr = ok ? expf(sc - mnew) : 0.f;
            l[j] = l[j] * alpha + pf_warp_sum(pr);
            m[j] = mnew;
#pragma unroll
            for (int i = 0; i < PF_MAX_DW; i++) o[j][i] *= alpha;
            for (int kk = 0; kk < PF_BK; kk++) {
                const float pk = __shfl_sync(0xffffffffu, pr, kk);
                const float *vr = Vs + kk * D;
#pragma unroll
                for (int i = 0; i < PF_MAX_DW; i++) {
                    int d = lane + 32 * i;
                    if (d < D) o[j][i] += pk * vr[d];
                }
            }
        }
    }
#pragma unroll
    for (int j = 0; j < PF_QPW; j++) {
        const int qi = warp * PF_QPW + j;
        if (qi >= nq) continue;
        uint16_t *dst = att + ((size_t)(sq.row0 + t0 + qi) * s.n_q + h) * D;
        const float inv = 1.0f / l[j];
#pragma unroll
        for (int i = 0; i < PF_MAX_DW; i++) {
            int d = lane + 32 * i;
            if (d < D) dst[d] = pf_tobf(o[j][i] * inv);
        }
    }
}

/* ---- launchers ------------------------------------------------------------------------ */

extern "C" int mk_pf_attention_tile(void) { return PF_BQ; }

static size_t pf_attention_smem(int D)
{
    return sizeof(float) * ((size_t)PF_BQ * D + (size_t)PF_BK * (D + 1) + (size_t)PF_BK * D);
}

extern "C" cudaError_t mk_pf_prepare(int head_dim)
{
    return cudaFuncSetAttribute(pf_attention, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                (int)pf_attention_smem(head_dim));
}

extern "C" cudaError_t mk_pf_embed(const uint16_t *E, int H, const int32_t *tok, int T,
                                   float *x, cudaStream_t st)
{
    pf_embed<<<T, 256, 0, st>>>(E, H, tok, x);
    return cudaGetLastError();
}

extern "C" cudaError_t mk_pf_rmsnorm(const float *x, int H, const int32_t *rows, int n,
                                     const uint16_t *w, float eps, uint16_t *out, cudaStream_t st)
{
    pf_rmsnorm<<<n, 256, 0, st>>>(x, H, rows, w, eps, out);
    return cudaGetLastError();
}

extern "C" cudaError_t mk_pf_silu_mul(const float *gate, const float *up, size_t n, uint16_t *h,
                                      cudaStream_t st)
{
    size_t blocks = (n + 255) / 256;
    pf_silu_mul<<<(unsigned)(blocks < 8192 ? blocks : 8192), 256, 0, st>>>(gate, up, n, h);
    return cudaGetLastError();
}

extern "C" cudaError_t mk_pf_argmax(const float *logits, int V, const int32_t *rows, int n,
                                    int32_t *next, cudaStream_t st)
{
    pf_argmax<<<n, 1024, 0, st>>>(logits, V, rows, next);
    return cudaGetLastError();
}

extern "C" cudaError_t mk_pf_qk_rope_kv(const struct mk_pf_shape *s, int layer, int T,
                                        const float *qkv, const uint16_t *bias,
                                        const uint16_t *q_norm, const uint16_t *k_norm,
                                        const float *inv_freq, const int32_t *pos,
                                        const int32_t *slot, uint16_t *q_out, uint16_t *kv,
                                        cudaStream_t st)
{
    pf_qk_rope_kv<<<T, 256, 0, st>>>(*s, layer, qkv, bias, q_norm, k_norm, inv_freq, pos, slot,
                                     q_out, kv);
    return cudaGetLastError();
}

extern "C" cudaError_t mk_pf_attention(const struct mk_pf_shape *s, int layer, const uint16_t *q,
                                       const uint16_t *kv, const struct mk_pf_item *items, int n_items,
                                       const struct mk_pf_seqinfo *seqs, uint16_t *att,
                                       cudaStream_t st)
{
    dim3 grid((unsigned)n_items, (unsigned)s->n_q);
    pf_attention<<<grid, PF_ATT_THREADS, pf_attention_smem(s->head_dim), st>>>(
        *s, layer, q, kv, items, seqs, att);
    return cudaGetLastError();
}
