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

/* h[t][i] = bf16(silu(gate[t * stride + i]) * up[t * stride + i]), h is [T][I]. */
__global__ void pf_silu_mul(const float *gate, const float *up, int stride, int I, size_t n,
                            uint16_t *h)
{
    for (size_t k = (size_t)blockIdx.x * blockDim.x + threadIdx.x; k < n;
         k += (size_t)gridDim.x * blockDim.x) {
        size_t t = k / (size_t)I, i = k - t * (size_t)I, at = t * (size_t)stride + i;
        float g = gate[at];
        h[k] = pf_tobf(g / (1.0f + expf(-g)) * up[at]);
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

/* ---- causal GQA attention on tensor cores (head_dim 64 or 128) ------------------------ */

/* Flash-attention (v2) tiling with mma.sync m16n8k16 (bf16 in, fp32 accumulate): a block
 * = (work item of PF_TC_BQ queries, query head), 4 warps of 16 query rows each. Q, then
 * each tile of PF_TC_BK keys and values, sit in shared memory as bf16 rows padded by 8
 * elements (fragment loads hit 8 distinct 4-bank groups). S = Q K^T and O += P V run on
 * the tensor cores; P is the fp32 softmax numerator rounded to bf16 (the register
 * fragments of S are reused as the A operand of P V); V's B fragments come from
 * ldmatrix.trans. Fragment layouts (PTX ISA, m16n8k16): thread lane = 4 gr + tig holds
 * rows gr and gr + 8, columns 2 tig, 2 tig + 1 (and + 8). K/V tiles are double-buffered:
 * tile i + 1 streams in (cp.async, zero-filled past the last key) while tile i is used.
 * Blocks take the work items last first: the late query tiles of a causal prompt have
 * the most keys, so they start first and the short ones fill the tail. */
enum { PF_TC_BQ = 64, PF_TC_BK = 64, PF_TC_THREADS = 128 };

__device__ __forceinline__ void pf_mma(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                 "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t pf_pack(float lo, float hi)
{
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&v);
}

__device__ __forceinline__ uint32_t pf_u32(const uint16_t *p)
{
    return *reinterpret_cast<const uint32_t *>(p);
}

__device__ __forceinline__ float pf_quad_max(float v)
{
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
    return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}

__device__ __forceinline__ float pf_quad_sum(float v)
{
    v += __shfl_xor_sync(0xffffffffu, v, 1);
    return v + __shfl_xor_sync(0xffffffffu, v, 2);
}

/* Rows [0, n) of a [rows][D] bf16 global tile into shared rows of stride QS (zeros past n). */
template <int D, int QS>
__device__ __forceinline__ void pf_tile_load(uint16_t *dst, const uint16_t *src, size_t src_stride,
                                             int rows, int n)
{
    constexpr int CH = D / 8; /* 16-byte chunks per row */
    for (int i = threadIdx.x; i < rows * CH; i += blockDim.x) {
        int r = i / CH, c = i - r * CH;
        uint4 v = make_uint4(0u, 0u, 0u, 0u);
        if (r < n) v = *reinterpret_cast<const uint4 *>(src + (size_t)r * src_stride + c * 8);
        *reinterpret_cast<uint4 *>(dst + r * QS + c * 8) = v;
    }
}

/* The same with cp.async (16 bytes each, source size 0 past n: zero fill), not waited. */
template <int D, int QS>
__device__ __forceinline__ void pf_tile_load_async(uint16_t *dst, const uint16_t *src, int rows,
                                                   int n)
{
    constexpr int CH = D / 8;
    for (int i = threadIdx.x; i < rows * CH; i += blockDim.x) {
        int r = i / CH, c = i - r * CH;
        const uint16_t *from = src + (size_t)(r < n ? r : 0) * D + c * 8;
        uint32_t to = (uint32_t)__cvta_generic_to_shared(dst + r * QS + c * 8);
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;"
                     :: "r"(to), "l"(from), "r"(r < n ? 16 : 0) : "memory");
    }
}

__device__ __forceinline__ void pf_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
__device__ __forceinline__ void pf_async_wait1() { asm volatile("cp.async.wait_group 1;" ::: "memory"); }

template <int D>
__global__ void __launch_bounds__(PF_TC_THREADS)
pf_attention_tc(struct mk_pf_shape s, int layer, const uint16_t *q, const uint16_t *kv,
                const struct mk_pf_item *items, const struct mk_pf_seqinfo *seqs, uint16_t *att)
{
    constexpr int QS = D + 8, NT = PF_TC_BK / 8, DT = D / 8;
    extern __shared__ __align__(16) uint16_t pf_tc_smem[];
    constexpr int TILE = PF_TC_BK * QS;   /* elements of one K or V tile */
    uint16_t *Qs = pf_tc_smem;            /* [PF_TC_BQ][QS] */
    uint16_t *KV = Qs + PF_TC_BQ * QS;    /* [2 buffers][K, V][PF_TC_BK][QS] */
    const int h = blockIdx.y, g = h / (s.n_q / s.n_kv);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gr = lane >> 2, tig = lane & 3;
    const struct mk_pf_item it = items[gridDim.x - 1 - blockIdx.x];
    const struct mk_pf_seqinfo sq = seqs[it.seq];
    const int t0 = it.t0, nq = min(PF_TC_BQ, sq.n - t0);
    const float scale = 1.0f / sqrtf((float)D);

    pf_tile_load<D, QS>(Qs, q + ((size_t)(sq.row0 + t0) * s.n_q + h) * D, (size_t)s.n_q * D,
                        PF_TC_BQ, nq);
    const uint16_t *Kc = kv + pf_kv_index(s, layer, 0, sq.slot, g, 0);
    const uint16_t *Vc = kv + pf_kv_index(s, layer, 1, sq.slot, g, 0);
    const int p_first = sq.pos0 + t0, k_end = p_first + nq;
    const int k_begin = s.window > 0 && p_first >= s.window ? p_first - s.window + 1 : 0;
    __syncthreads();

    const int r0 = warp * 16 + gr; /* this thread's query rows: r0 and r0 + 8 */
    uint32_t qf[D / 16][4];
#pragma unroll
    for (int ks = 0; ks < D / 16; ks++) {
        const uint16_t *a = Qs + r0 * QS + ks * 16 + tig * 2;
        qf[ks][0] = pf_u32(a);
        qf[ks][1] = pf_u32(a + 8 * QS);
        qf[ks][2] = pf_u32(a + 8);
        qf[ks][3] = pf_u32(a + 8 * QS + 8);
    }
    const int pq[2] = {p_first + r0, p_first + r0 + 8};
    const bool live[2] = {r0 < nq, r0 + 8 < nq};
    int lo[2];
#pragma unroll
    for (int i = 0; i < 2; i++) lo[i] = s.window > 0 && pq[i] >= s.window ? pq[i] - s.window + 1 : 0;
    float o[DT][4], m[2] = {-CUDART_INF_F, -CUDART_INF_F}, l[2] = {0.f, 0.f};
#pragma unroll
    for (int dt = 0; dt < DT; dt++) o[dt][0] = o[dt][1] = o[dt][2] = o[dt][3] = 0.f;
    const int warp_last = p_first + min(warp * 16 + 15, nq - 1);

    pf_tile_load_async<D, QS>(KV, Kc + (size_t)k_begin * D, PF_TC_BK, k_end - k_begin);
    pf_tile_load_async<D, QS>(KV + TILE, Vc + (size_t)k_begin * D, PF_TC_BK, k_end - k_begin);
    pf_async_commit();
    for (int k0 = k_begin, buf = 0; k0 < k_end; k0 += PF_TC_BK, buf ^= 1) {
        /* the next tile into the other buffer (consumed by the previous iteration, which
         * ended with a barrier); an empty group at the last tile keeps the count */
        if (k0 + PF_TC_BK < k_end) {
            uint16_t *nb = KV + (buf ^ 1) * 2 * TILE;
            const int k1 = k0 + PF_TC_BK;
            pf_tile_load_async<D, QS>(nb, Kc + (size_t)k1 * D, PF_TC_BK, k_end - k1);
            pf_tile_load_async<D, QS>(nb + TILE, Vc + (size_t)k1 * D, PF_TC_BK, k_end - k1);
        }
        pf_async_commit();
        pf_async_wait1(); /* this thread's copies of tile k0 landed */
        __syncthreads();  /* everyone's did */
        const uint16_t *Ks = KV + buf * 2 * TILE, *Vs = Ks + TILE;
        if (warp * 16 < nq && k0 <= warp_last) { /* else no visible key for this warp */
            float sc[NT][4];
#pragma unroll
            for (int nt = 0; nt < NT; nt++) sc[nt][0] = sc[nt][1] = sc[nt][2] = sc[nt][3] = 0.f;
#pragma unroll
            for (int ks = 0; ks < D / 16; ks++)
#pragma unroll
                for (int nt = 0; nt < NT; nt++) {
                    const uint16_t *b = Ks + (nt * 8 + gr) * QS + ks * 16 + tig * 2;
                    pf_mma(sc[nt], qf[ks], pf_u32(b), pf_u32(b + 8));
                }
            float mx[2] = {-CUDART_INF_F, -CUDART_INF_F};
#pragma unroll
            for (int nt = 0; nt < NT; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int i = e >> 1, key = k0 + nt * 8 + tig * 2 + (e & 1);
                    const bool ok = live[i] && key <= pq[i] && key >= lo[i];
                    sc[nt][e] = ok ? sc[nt][e] * scale : -CUDART_INF_F;
                    mx[i] = fmaxf(mx[i], sc[nt][e]);
                }
            float mu[2], alpha[2], ps[2] = {0.f, 0.f};
#pragma unroll
            for (int i = 0; i < 2; i++) {
                const float mn = fmaxf(m[i], pf_quad_max(mx[i]));
                mu[i] = mn == -CUDART_INF_F ? 0.f : mn; /* a row with nothing visible yet */
                alpha[i] = expf(m[i] - mu[i]);           /* 0 while m is -inf */
                m[i] = mn;
            }
#pragma unroll
            for (int nt = 0; nt < NT; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const float pr = expf(sc[nt][e] - mu[e >> 1]);
                    ps[e >> 1] += pr;
                    sc[nt][e] = pr;
                }
#pragma unroll
            for (int i = 0; i < 2; i++) l[i] = l[i] * alpha[i] + ps[i];
#pragma unroll
            for (int dt = 0; dt < DT; dt++) {
                o[dt][0] *= alpha[0];
                o[dt][1] *= alpha[0];
                o[dt][2] *= alpha[1];
                o[dt][3] *= alpha[1];
            }
#pragma unroll
            for (int kk = 0; kk < PF_TC_BK / 16; kk++) {
                const uint32_t pa[4] = {pf_pack(sc[2 * kk][0], sc[2 * kk][1]),
                                        pf_pack(sc[2 * kk][2], sc[2 * kk][3]),
                                        pf_pack(sc[2 * kk + 1][0], sc[2 * kk + 1][1]),
                                        pf_pack(sc[2 * kk + 1][2], sc[2 * kk + 1][3])};
                /* lanes 0..15 address key rows kk*16 + lane (two 8x8 matrices, transposed) */
                const uint16_t *vrow = Vs + (kk * 16 + (lane & 15)) * QS;
#pragma unroll
                for (int dt = 0; dt < DT; dt++) {
                    uint32_t b0, b1;
                    uint32_t addr = (uint32_t)__cvta_generic_to_shared(vrow + dt * 8);
                    asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0, %1}, [%2];"
                                 : "=r"(b0), "=r"(b1) : "r"(addr));
                    pf_mma(o[dt], pa, b0, b1);
                }
            }
        }
        __syncthreads(); /* every warp is done with this buffer before it is refilled */
    }
#pragma unroll
    for (int i = 0; i < 2; i++) {
        const float li = pf_quad_sum(l[i]);
        if (!live[i]) continue;
        const float inv = 1.0f / li;
        uint16_t *dst = att + ((size_t)(sq.row0 + t0 + r0 + 8 * i) * s.n_q + h) * D + tig * 2;
#pragma unroll
        for (int dt = 0; dt < DT; dt++)
            *reinterpret_cast<uint32_t *>(dst + dt * 8) =
                pf_pack(o[dt][2 * i] * inv, o[dt][2 * i + 1] * inv);
    }
}

/* ---- launchers ------------------------------------------------------------------------ */

/* head_dim 64 and 128 (the released models) run on the tensor cores; others (the tiny
 * test checkpoints, head_dim 256) on the fp32 kernel. */
static bool pf_tc(int D) { return D == 64 || D == 128; }

extern "C" int mk_pf_attention_tile(int head_dim) { return pf_tc(head_dim) ? (int)PF_TC_BQ : (int)PF_BQ; }

static size_t pf_attention_smem(int D)
{
    if (pf_tc(D)) return sizeof(uint16_t) * (size_t)(PF_TC_BQ + 4 * PF_TC_BK) * (D + 8);
    return sizeof(float) * ((size_t)PF_BQ * D + (size_t)PF_BK * (D + 1) + (size_t)PF_BK * D);
}

extern "C" cudaError_t mk_pf_prepare(int head_dim)
{
    int smem = (int)pf_attention_smem(head_dim);
    if (head_dim == 64)
        return cudaFuncSetAttribute(pf_attention_tc<64>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    if (head_dim == 128)
        return cudaFuncSetAttribute(pf_attention_tc<128>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    return cudaFuncSetAttribute(pf_attention, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
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

extern "C" cudaError_t mk_pf_silu_mul(const float *gate, const float *up, int stride, int T,
                                      int I, uint16_t *h, cudaStream_t st)
{
    size_t n = (size_t)T * I, blocks = (n + 255) / 256;
    pf_silu_mul<<<(unsigned)(blocks < 8192 ? blocks : 8192), 256, 0, st>>>(gate, up, stride, I, n, h);
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
    size_t smem = pf_attention_smem(s->head_dim);
    if (s->head_dim == 64)
        pf_attention_tc<64><<<grid, PF_TC_THREADS, smem, st>>>(*s, layer, q, kv, items, seqs, att);
    else if (s->head_dim == 128)
        pf_attention_tc<128><<<grid, PF_TC_THREADS, smem, st>>>(*s, layer, q, kv, items, seqs, att);
    else
        pf_attention<<<grid, PF_ATT_THREADS, smem, st>>>(*s, layer, q, kv, items, seqs, att);
    return cudaGetLastError();
}
