/* Sampling of one sequence by a whole CTA, in mk/sample.h's order of operations, with its
 * Philox draw (bit-identical uniform u):
 *   z_i = logit_i / T; the order (z desc, id asc) is the descending order of the 64-bit key
 *   (orderable bits of z) << 32 | (2^32 - 1 - id), unique per id;
 *   top-k: candidates are the keys >= the k-th largest key, found by an 8-pass radix
 *   select (8-bit digits, shared-memory histograms of integer counts);
 *   e_i = expf(z_i - z_max), S = sum over candidates;
 *   top-p: the kept set is {key >= t} for the largest t whose set still sums to >= p S
 *   (the shortest prefix of the order reaching p S), found by binary search on t;
 *   walk: in ascending id order over kept ids (e > 0), chunks of 8 ids per thread, a
 *   block scan; the first id whose running sum exceeds r = u * S_kept, else the last kept.
 * Every sum is a fixed-order block reduction (deterministic); it may associate differently
 * from the CPU's sequential sums, which can change the token only when r lies within a few
 * ulps of a boundary between two tokens (as mk/sample.h allows). Costs O(V) per pass:
 * ~10 passes, plus up to 64 with top-p. */
#ifndef MK_TASK_SAMPLE_CUH
#define MK_TASK_SAMPLE_CUH

#include "mk/sample.h"
#include "tasks/common.cuh"

struct mk_sampler_gpu {
    const float *logits; /* [V] of this sequence, written in this launch */
    int V;
    float T, zmax;
    struct mk_smem_misc *m;
};

static __device__ __forceinline__ float mk_z(const struct mk_sampler_gpu &s, int i)
{
    return __ldcg(s.logits + i) / s.T;
}

static __device__ __forceinline__ unsigned long long mk_skey(float z, int id)
{
    uint32_t u = __float_as_uint(z);
    u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return ((unsigned long long)u << 32) | (unsigned long long)(0xffffffffu - (uint32_t)id);
}

/* Fixed-order block sum / max of one value per thread; every thread gets the result. */
static __device__ float mk_block_sum(float v, struct mk_smem_misc *m)
{
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    v = mk_warp_sum(v);
    if (lane == 0) m->red[warp] = v;
    __syncthreads();
    if (threadIdx.x == 0) {
        float t = 0.0f;
        for (int w = 0; w < (int)(blockDim.x / 32); w++) t += m->red[w];
        m->val = t;
    }
    __syncthreads();
    float r = m->val;
    __syncthreads();
    return r;
}

static __device__ float mk_block_max(float v, struct mk_smem_misc *m)
{
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    v = mk_warp_max(v);
    if (lane == 0) m->red[warp] = v;
    __syncthreads();
    if (threadIdx.x == 0) {
        float t = -CUDART_INF_F;
        for (int w = 0; w < (int)(blockDim.x / 32); w++) t = fmaxf(t, m->red[w]);
        m->val = t;
    }
    __syncthreads();
    float r = m->val;
    __syncthreads();
    return r;
}

/* The k-th largest key (1-based k <= V). */
static __device__ unsigned long long mk_radix_select(const struct mk_sampler_gpu &s, int k)
{
    struct mk_smem_misc *m = s.m;
    unsigned long long prefix = 0;
    int remaining = k;
    for (int shift = 56; shift >= 0; shift -= 8) {
        unsigned long long hi = shift == 56 ? 0ull : ~0ull << (shift + 8);
        for (int i = threadIdx.x; i < 256; i += blockDim.x) m->hist[i] = 0;
        __syncthreads();
        for (int i = threadIdx.x; i < s.V; i += blockDim.x) {
            unsigned long long key = mk_skey(mk_z(s, i), i);
            if ((key & hi) == prefix) atomicAdd(&m->hist[(key >> shift) & 255], 1);
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            int cum = 0;
            for (int bin = 255; bin >= 0; bin--) {
                if (cum + m->hist[bin] >= remaining) {
                    prefix |= (unsigned long long)bin << shift;
                    remaining -= cum;
                    break;
                }
                cum += m->hist[bin];
            }
            m->key = prefix;
            m->ival[0] = remaining;
        }
        __syncthreads();
        prefix = m->key;
        remaining = m->ival[0];
        __syncthreads();
    }
    return prefix;
}

/* Sum of e over keys >= t. */
static __device__ float mk_sum_above(const struct mk_sampler_gpu &s, unsigned long long t)
{
    float v = 0.0f;
    for (int i = threadIdx.x; i < s.V; i += blockDim.x) {
        float z = mk_z(s, i);
        if (mk_skey(z, i) >= t) v += expf(z - s.zmax);
    }
    return mk_block_sum(v, s.m);
}

enum { MK_WALK_PER_THREAD = 8 };

/* Kept-e sum of this thread's ids [i0, i0 + 8) (in id order); last kept id via *last. */
static __device__ float mk_walk_local(const struct mk_sampler_gpu &s, unsigned long long t, int i0,
                               float *e, int *last)
{
    float v = 0.0f;
    for (int j = 0; j < MK_WALK_PER_THREAD; j++) {
        int i = i0 + j;
        e[j] = 0.0f;
        if (i >= s.V) continue;
        float z = mk_z(s, i);
        if (mk_skey(z, i) < t) continue;
        e[j] = expf(z - s.zmax);
        if (e[j] > 0.0f) *last = i;
        v += e[j];
    }
    return v;
}

/* Exclusive fixed-order scan of one value per thread; *total gets the block's sum. */
static __device__ float mk_block_scan(float v, struct mk_smem_misc *m, float *total)
{
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    float inc = v;
    for (int o = 1; o < 32; o <<= 1) {
        float n = __shfl_up_sync(0xffffffffu, inc, o);
        if (lane >= o) inc += n;
    }
    if (lane == 31) m->red[warp] = inc;
    __syncthreads();
    if (threadIdx.x == 0) {
        float run = 0.0f;
        for (int w = 0; w < (int)(blockDim.x / 32); w++) {
            float x = m->red[w];
            m->red[w] = run;
            run += x;
        }
        m->val = run;
    }
    __syncthreads();
    float r = m->red[warp] + inc - v;
    *total = m->val;
    __syncthreads();
    return r;
}

/* The sampled id of one sequence (whole CTA; every thread returns it). */
static __device__ int mk_sample_seq(const float *logits, int V, const struct mk_gpu_seq &q, uint32_t step,
                             struct mk_smem_misc *m)
{
    struct mk_sampler_gpu s = {logits, V, q.temperature, 0.0f, m};
    float zm = -CUDART_INF_F;
    for (int i = threadIdx.x; i < V; i += blockDim.x) zm = fmaxf(zm, mk_z(s, i));
    s.zmax = mk_block_max(zm, m);
    unsigned long long t = 0;
    if (q.top_k > 0 && q.top_k < V) t = mk_radix_select(s, q.top_k);
    if (q.top_p > 0.0f && q.top_p < 1.0f) {
        float target = q.top_p * mk_sum_above(s, t);
        unsigned long long lo = t, hi = ~0ull;
        while (hi - lo > 1) {
            unsigned long long mid = lo + (hi - lo) / 2;
            if (mk_sum_above(s, mid) >= target) lo = mid;
            else hi = mid;
        }
        t = lo;
    }
    /* S_kept, then the walk, both in chunks of blockDim * 8 ids in id order */
    const int chunk = (int)blockDim.x * MK_WALK_PER_THREAD;
    float e[MK_WALK_PER_THREAD], kept = 0.0f;
    int last = -1;
    for (int c0 = 0; c0 < V; c0 += chunk) {
        float tot;
        mk_block_scan(mk_walk_local(s, t, c0 + (int)threadIdx.x * MK_WALK_PER_THREAD, e, &last), m, &tot);
        kept += tot;
    }
    const float r = mk_sample_uniform(q.seed, step) * kept;
    if (threadIdx.x == 0) { m->ival[0] = 0x7fffffff; m->ival[1] = -1; }
    __syncthreads();
    atomicMax(&m->ival[1], last);
    float run = 0.0f;
    for (int c0 = 0; c0 < V; c0 += chunk) {
        int i0 = c0 + (int)threadIdx.x * MK_WALK_PER_THREAD, dummy = -1;
        float tot, acc = run + mk_block_scan(mk_walk_local(s, t, i0, e, &dummy), m, &tot);
        for (int j = 0; j < MK_WALK_PER_THREAD; j++) {
            if (e[j] == 0.0f) continue;
            acc += e[j];
            if (acc > r) {
                atomicMin(&m->ival[0], i0 + j);
                break;
            }
        }
        __syncthreads();
        if (m->ival[0] != 0x7fffffff) break;
        run += tot;
    }
    int id = m->ival[0] != 0x7fffffff ? m->ival[0] : m->ival[1];
    __syncthreads();
    return id;
}

#endif
