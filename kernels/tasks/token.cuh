/* EMBED and SAMPLE: where a step starts and ends.
 *
 * SAMPLE, for each sequence b of the task (the compiler emits one task per sequence):
 * after this step n = pos[b] + 1 tokens have been consumed;
 *   - n < prompt_len: still in the prompt (fed one token per step): the next input is
 *     prompt[b][n], nothing is generated;
 *   - else the token is the argmax over the LOGITS partials (in order; ties keep the
 *     lowest id), or, with temperature > 0, drawn by the whole CTA (tasks/sample.cuh);
 *     it goes to the host ring (token first, then the count with a system release), and
 *     the sequence ends on a stop id, on max_new tokens, or when the cache is full
 *     (n == max_ctx);
 *   - the host cancelled it (cancel[b], host-mapped): it ends, nothing is published.
 * pos[b] advances only for a sequence that goes on (an ended one keeps rewriting its
 * last slot, inside the cache). The SAMPLE that ends the last live sequence (n_alive
 * reaches 0) sets last_step = step: every CTA stops after this step. */
#ifndef MK_TASK_TOKEN_CUH
#define MK_TASK_TOKEN_CUH

#include "tasks/common.cuh"
#include "tasks/sample.cuh"

static __device__ void mk_task_embed(const struct mk_gpu_args &a, const struct mk_task &t)
{
    const uint16_t *E = mk_own_weight(a, 0);
    uint32_t H = mk_tabs_cur()->w_cols[0], n = t.r1 - t.r0;
    float *x = mk_own_buf(a, MK_OUT);
    for (uint32_t i = threadIdx.x; i < n * (uint32_t)a.batch; i += blockDim.x) {
        uint32_t b = i / n, r = t.r0 + i % n;
        int tok = __ldcg(a.tokens + b);
        x[(size_t)b * H + r] = mk_wget(E, (size_t)tok * H + r);
    }
}

static __device__ __forceinline__ bool mk_is_stop(const struct mk_gpu_seq &s, int tok)
{
    for (int i = 0; i < s.n_stop; i++)
        if (s.stop[i] == tok) return true;
    return false;
}

/* Greedy: the best (value, index) over the LOGITS partials in order; ties keep the
 * lowest id (earlier partials hold lower ids). */
static __device__ int mk_argmax_partials(const struct mk_gpu_args &a, const struct mk_task &t, int b)
{
    const char *aux = reinterpret_cast<const char *>(mk_own_buf(a, MK_IN1));
    float best = -CUDART_INF_F;
    int tok = -1;
    for (int i = 0; i < (t.n_split > 0 ? t.n_split : 1); i++) {
        const char *e = aux + ((size_t)i * a.batch + b) * 8;
        float v = __ldcg(reinterpret_cast<const float *>(e));
        int id = __ldcg(reinterpret_cast<const int *>(e) + 1);
        if (tok < 0 || v > best) { best = v; tok = id; }
    }
    return tok;
}

/* Thread 0: the token of sequence b is decided; publish it and apply the stop rules. */
static __device__ void mk_sample_commit(const struct mk_gpu_args &a, int b, int n, int tok, int step)
{
    const struct mk_gpu_seq &s = a.seq[b];
    bool go_on = true;
    uint32_t cancelled;
    asm volatile("ld.relaxed.sys.global.u32 %0, [%1];" : "=r"(cancelled) : "l"(a.cancel + b));
    if (cancelled) {
        go_on = false;
    } else if (n < s.prompt_len) {
        tok = a.prompt[(size_t)b * a.prompt_cap + n];
    } else {
        int g = __ldcg(a.n_gen + b);
        a.ring_tok[(size_t)b * a.ring_cap + g] = tok;
        a.n_gen[b] = g + 1;
        __threadfence_system();
        mk_st_release_sys_u32(a.ring_count + b, (uint32_t)(g + 1));
        go_on = !mk_is_stop(s, tok) && g + 1 < s.max_new && n < a.max_ctx;
    }
    if (go_on) {
        a.tokens[b] = tok;
        a.pos[b] = n;
    } else {
        a.active[b] = 0;
        if (atomicSub(a.n_alive, 1) == 1) mk_st_release_s32(a.last_step, step);
    }
}

static __device__ void mk_task_sample(const struct mk_gpu_args &a, const struct mk_task &t, int step,
                               char *smem)
{
    struct mk_smem_misc *m = mk_misc(smem);
    const int V = a.cfg.vocab_size;
    for (int b = (int)t.r0; b < (int)t.r1 && b < a.batch; b++) {
        if (!__ldcg(a.active + b)) continue;
        const struct mk_gpu_seq &s = a.seq[b];
        int n = __ldcg(a.pos + b) + 1;
        int tok = -1;
        if (n >= s.prompt_len && s.temperature > 0.0f)
            tok = mk_sample_seq(mk_own_buf(a, MK_IN0) + (size_t)b * V, V, s,
                                (uint32_t)__ldcg(a.n_gen + b), m);
        if (threadIdx.x == 0) mk_sample_commit(a, b, n, tok >= 0 ? tok : mk_argmax_partials(a, t, b), step);
        __syncthreads();
    }
}

#endif
