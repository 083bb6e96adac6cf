/* megakernel — token sampling shared by every backend.
 *
 * The random draw comes from Philox4x32-10 (Salmon et al., "Parallel random numbers: as
 * easy as 1, 2, 3", SC'11; the Random123 known-answer vectors are in the tests), a
 * counter-based generator: the draw for (seed, step) is a pure function, so the CPU and
 * the GPU kernel get bit-identical uniforms without sharing any state. The generator is
 * `static inline` plain C below, usable from CUDA (MK_HD marks it host+device).
 *
 * One sampling step, in this exact order (mk_sample() implements it; a GPU kernel must
 * do the same):
 *   0. temperature <= 0: greedy. id = argmax(logits), ties -> the lowest id. Done.
 *   1. z[i] = logits[i] / temperature            (fp32 division)
 *   2. order every id by (z descending, id ascending); the candidates are the first
 *      top_k of that order (all V when top_k <= 0 or top_k >= V).
 *   3. e[i] = expf(z[i] - z_max) for each candidate (z_max = the largest z).
 *   4. top-p (when 0 < top_p < 1): S = sum of e over the candidates, added in candidate
 *      order; keep the shortest prefix of the candidate order whose running sum of e
 *      (added in that order) reaches top_p * S (at least one id). Otherwise keep all
 *      candidates. S_kept = sum of e over the kept ids, added in ascending id order.
 *   5. u = mk_sample_uniform(seed, step), in [0, 1) with 24 random bits; r = u * S_kept.
 *   6. walk the kept ids in ASCENDING ID ORDER (not in probability order, so a GPU can use
 *      a prefix scan over the vocabulary) accumulating e; the token is the first id whose
 *      running sum exceeds r; if rounding leaves none, the last kept id.
 * Sums are fp32. A GPU that adds in another order can differ from the CPU only when r lies
 * within a few ulps of a boundary between two tokens; the draw u itself is identical.
 * `step` is the index of the generated token within its request (0 for the first), so a
 * request's output depends only on its seed, never on the batch it ran in.
 *
 * Log-probabilities reported with each token (mk_logprobs) are those of the model's own
 * distribution, log_softmax(logits) with temperature 1 and no truncation (what OpenAI and
 * vLLM report by default), computed with a double-precision sum.
 */
#ifndef MK_SAMPLE_H
#define MK_SAMPLE_H

#include "mk/mk.h"

#include <stdint.h>

#ifdef __CUDACC__
#define MK_HD __host__ __device__
#else
#define MK_HD
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Philox4x32-10 ------------------------------------------------------------- */

enum { MK_PHILOX_ROUNDS = 10 };
#define MK_PHILOX_M0 0xD2511F53u
#define MK_PHILOX_M1 0xCD9E8D57u
#define MK_PHILOX_W0 0x9E3779B9u /* golden ratio */
#define MK_PHILOX_W1 0xBB67AE85u /* sqrt(3) - 1 */

/* out = Philox4x32-10(counter ctr, key key), Random123's philox4x32 with 10 rounds. */
static inline MK_HD void mk_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2],
                                          uint32_t out[4])
{
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int r = 0; r < MK_PHILOX_ROUNDS; r++) {
        uint64_t p0 = (uint64_t)MK_PHILOX_M0 * c0;
        uint64_t p1 = (uint64_t)MK_PHILOX_M1 * c2;
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
        k0 += MK_PHILOX_W0;
        k1 += MK_PHILOX_W1;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

/* The uniform of generation step `step` of a request seeded with `seed`:
 * key = (seed low 32 bits, seed high 32 bits), counter = (step, 0, 0, 0);
 * u = (first output word >> 8) * 2^-24, exactly representable, in [0, 1). */
static inline MK_HD float mk_sample_uniform(uint64_t seed, uint32_t step)
{
    const uint32_t ctr[4] = {step, 0u, 0u, 0u};
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    uint32_t out[4];
    mk_philox4x32_10(ctr, key, out);
    return (float)(out[0] >> 8) * (1.0f / 16777216.0f);
}

/* ---- sampling ------------------------------------------------------------------ */

struct mk_sampling {
    float temperature; /* <= 0: greedy */
    int top_k;         /* <= 0: off */
    float top_p;       /* >= 1 or <= 0: off */
    uint64_t seed;
};

/* A reusable work area for mk_sample (index and weight arrays of V entries). */
struct mk_sampler {
    int vocab;
    int32_t *order; /* [V] ids in (z desc, id asc) order */
    float *z;       /* [V] scaled logits */
    float *e;       /* [V] unnormalised probabilities, indexed by id (0 = not kept) */
};

/* Allocate a work area for vocabulary size `vocab` (> 0). MK_ERR_NOMEM / MK_ERR_ARG. */
enum mk_status mk_sampler_init(struct mk_sampler *s, int vocab);
void mk_sampler_free(struct mk_sampler *s);

/* Argmax of logits[0..n), ties -> the lowest index. n > 0. */
int32_t mk_argmax(const float *logits, int n);

/* One token from logits[V] (V = s->vocab) for generation step `step`, following the order
 * of operations above. Never fails for finite logits. */
int32_t mk_sample(struct mk_sampler *s, const float *logits, const struct mk_sampling *p,
                  uint32_t step);

/* After mk_sample with temperature > 0, s->e[i] holds e of the kept ids (step 4) and 0
 * for every other id; tests read it to check the top-k / top-p masks. */

enum { MK_TOP_MAX = 5 }; /* most top log-probabilities reported per token */

/* log_softmax(logits)[id] and the n_top (<= MK_TOP_MAX) most likely ids with their
 * log-probabilities, ordered by (logprob desc, id asc). Returns logprob of `id`. */
float mk_logprobs(const float *logits, int vocab, int32_t id, int n_top, int32_t *top_ids,
                  float *top_logprobs);

#ifdef __cplusplus
}
#endif
#endif /* MK_SAMPLE_H */
