/* Sampling: the Philox generator against Random123's known answers, the greedy tie rule,
 * top-k / top-p masks against a direct O(V^2) reading of their definitions, repeatable
 * draws, and a chi-square test that sampled frequencies follow the softmax. */
#include "check.h"
#include "mk/sample.h"

#include <stdbool.h>

/* Random123 tests/kat_vectors, the three "philox4x32 10" lines: counter, key, result. */
static void philox_known_answers(void)
{
    static const uint32_t kat[3][10] = {
        {0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
        {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff,
         0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd},
        {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0,
         0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1},
    };
    for (int i = 0; i < 3; i++) {
        uint32_t out[4];
        mk_philox4x32_10(kat[i], kat[i] + 4, out);
        for (int j = 0; j < 4; j++) CHECKF(out[j] == kat[i][6 + j], "vector %d word %d: %08x", i, j, out[j]);
    }
}

static void uniform_is_a_pure_function(void)
{
    float a = mk_sample_uniform(42, 7), b = mk_sample_uniform(42, 7);
    CHECK(a == b);
    CHECK(a >= 0.0f && a < 1.0f);
    CHECK(mk_sample_uniform(42, 8) != a);
    CHECK(mk_sample_uniform(43, 7) != a);
    CHECK(mk_sample_uniform(42ull | (1ull << 40), 7) != a); /* the seed's high word counts */
    /* Bit-exact value: (first Philox word >> 8) / 2^24 with key (seed lo, hi), ctr (step). */
    uint32_t out[4];
    const uint32_t ctr[4] = {7, 0, 0, 0}, key[2] = {42, 0};
    mk_philox4x32_10(ctr, key, out);
    CHECK(a == (float)(out[0] >> 8) / 16777216.0f);
    double mean = 0;
    for (uint32_t s = 0; s < 10000; s++) mean += mk_sample_uniform(1, s);
    CHECK_NEAR(mean / 10000, 0.5, 0.01);
}

static void greedy_ties_go_to_the_lowest_id(void)
{
    const float logits[6] = {1.0f, 3.0f, -2.0f, 3.0f, 0.5f, 3.0f};
    CHECK(mk_argmax(logits, 6) == 1);
    struct mk_sampler s;
    CHECK_OK(mk_sampler_init(&s, 6));
    const struct mk_sampling greedy = {0.0f, 0, 1.0f, 123};
    for (uint32_t step = 0; step < 5; step++) CHECK(mk_sample(&s, logits, &greedy, step) == 1);
    const float neg[3] = {-INFINITY, -5.0f, -5.0f};
    CHECK(mk_argmax(neg, 3) == 1);
    mk_sampler_free(&s);
}

/* The kept set by definition: rank(i) = #ids before i in (z desc, id asc) order;
 * top-k keeps rank < K; top-p then keeps i when the e-mass ranked before it is < P*S. */
static void direct_mask(const float *logits, int V, const struct mk_sampling *p, bool *keep)
{
    double S = 0, zmax = -INFINITY;
    int K = p->top_k > 0 && p->top_k < V ? p->top_k : V;
    for (int i = 0; i < V; i++) zmax = fmax(zmax, logits[i] / p->temperature);
    for (int i = 0; i < V; i++) {
        int rank = 0;
        for (int j = 0; j < V; j++)
            rank += logits[j] > logits[i] || (logits[j] == logits[i] && j < i);
        keep[i] = rank < K;
        if (keep[i]) S += exp(logits[i] / p->temperature - zmax);
    }
    if (!(p->top_p > 0 && p->top_p < 1)) return;
    bool kk[64];
    for (int i = 0; i < V; i++) kk[i] = keep[i];
    for (int i = 0; i < V; i++) {
        if (!kk[i]) continue;
        double before = 0;
        for (int j = 0; j < V; j++)
            if (kk[j] && (logits[j] > logits[i] || (logits[j] == logits[i] && j < i)))
                before += exp(logits[j] / p->temperature - zmax);
        keep[i] = before < p->top_p * S;
    }
}

static void masks_match_their_definition(void)
{
    enum { V = 40 };
    float logits[V];
    for (int i = 0; i < V; i++) logits[i] = (float)((i * 7919 % 41) - 20) * 0.15f; /* with ties */
    logits[3] = logits[17] = 2.5f;
    struct mk_sampler s;
    CHECK_OK(mk_sampler_init(&s, V));
    const int ks[] = {0, 1, 3, 10, 39, 40, 100};
    const float ps[] = {1.0f, 0.9f, 0.5f, 0.1f, 0.0001f};
    const float ts[] = {1.0f, 0.7f, 2.0f};
    for (size_t a = 0; a < 7; a++)
        for (size_t b = 0; b < 5; b++)
            for (size_t c = 0; c < 3; c++) {
                const struct mk_sampling p = {ts[c], ks[a], ps[b], 5};
                bool keep[V];
                direct_mask(logits, V, &p, keep);
                int32_t id = mk_sample(&s, logits, &p, 0);
                CHECKF(keep[id], "k=%d p=%g t=%g: sampled %d outside the mask", p.top_k, p.top_p, p.temperature, id);
                for (int i = 0; i < V; i++)
                    CHECKF((s.e[i] > 0) == keep[i], "k=%d p=%g t=%g: id %d kept %d, expected %d",
                           p.top_k, p.top_p, p.temperature, i, s.e[i] > 0, keep[i]);
            }
    mk_sampler_free(&s);
}

static void same_seed_and_step_same_token(void)
{
    enum { V = 50 };
    float logits[V];
    for (int i = 0; i < V; i++) logits[i] = sinf((float)i) * 2.0f;
    struct mk_sampler s;
    CHECK_OK(mk_sampler_init(&s, V));
    const struct mk_sampling p = {0.8f, 20, 0.95f, 987654321};
    int differ = 0;
    for (uint32_t step = 0; step < 50; step++) {
        int32_t a = mk_sample(&s, logits, &p, step), b = mk_sample(&s, logits, &p, step);
        CHECK(a == b);
        differ += a != mk_sample(&s, logits, &p, 0);
    }
    CHECK(differ > 0); /* the step changes the draw */
    mk_sampler_free(&s);
}

/* Pearson chi-square of counts against probabilities; df = V - 1. */
static double chi_square(const int *count, const double *prob, int V, int n)
{
    double x2 = 0;
    for (int i = 0; i < V; i++) {
        double e = prob[i] * n;
        if (e > 0) x2 += (count[i] - e) * (count[i] - e) / e;
    }
    return x2;
}

static void frequencies_follow_the_softmax(void)
{
    enum { V = 8, N = 20000 };
    const float logits[V] = {1.0f, 0.2f, -0.5f, 2.0f, 0.0f, 1.5f, -1.0f, 0.7f};
    struct mk_sampler s;
    CHECK_OK(mk_sampler_init(&s, V));
    const float temps[2] = {1.0f, 0.6f};
    for (int c = 0; c < 2; c++) {
        double prob[V], sum = 0;
        for (int i = 0; i < V; i++) sum += prob[i] = exp(logits[i] / temps[c]);
        for (int i = 0; i < V; i++) prob[i] /= sum;
        int count[V] = {0};
        for (int n = 0; n < N; n++) {
            /* Seeds and steps both vary: deterministic, so the outcome is too. */
            const struct mk_sampling p = {temps[c], 0, 1.0f, (uint64_t)n * 2654435761u};
            count[mk_sample(&s, logits, &p, (uint32_t)(n % 7))]++;
        }
        double x2 = chi_square(count, prob, V, N);
        /* 24.32 = chi-square(df 7) quantile at p = 0.999. */
        CHECKF(x2 < 24.32, "temperature %g: chi-square %.2f", temps[c], x2);
    }
    /* top-k 3: the three most likely, renormalised. */
    double prob[V] = {0}, sum = 0;
    const int top3[3] = {3, 5, 0};
    for (int i = 0; i < 3; i++) sum += prob[top3[i]] = exp(logits[top3[i]]);
    for (int i = 0; i < V; i++) prob[i] /= sum;
    int count[V] = {0};
    for (int n = 0; n < N; n++) {
        const struct mk_sampling p = {1.0f, 3, 1.0f, (uint64_t)n};
        count[mk_sample(&s, logits, &p, 0)]++;
    }
    double x2 = chi_square(count, prob, V, N);
    CHECKF(x2 < 13.82, "top-k 3: chi-square %.2f", x2); /* df 2, p = 0.999 */
    for (int i = 0; i < V; i++) CHECK(prob[i] > 0 || count[i] == 0);
    mk_sampler_free(&s);
}

static void logprobs_and_top(void)
{
    const float logits[6] = {0.5f, 2.0f, 2.0f, -1.0f, 1.0f, 2.0f};
    double lse = 0;
    for (int i = 0; i < 6; i++) lse += exp(logits[i]);
    lse = log(lse);
    int32_t ids[MK_TOP_MAX];
    float lp[MK_TOP_MAX];
    float l3 = mk_logprobs(logits, 6, 3, 5, ids, lp);
    CHECK_NEAR(l3, -1.0 - lse, 1e-6);
    const int32_t want[5] = {1, 2, 5, 4, 0};
    for (int k = 0; k < 5; k++) {
        CHECKF(ids[k] == want[k], "top[%d] = %d, expected %d", k, ids[k], want[k]);
        CHECK_NEAR(lp[k], logits[want[k]] - lse, 1e-6);
    }
    CHECK_NEAR(mk_logprobs(logits, 6, 1, 0, ids, lp), 2.0 - lse, 1e-6);
    const float big[3] = {1000.0f, 999.0f, -1000.0f}; /* no overflow */
    float l0 = mk_logprobs(big, 3, 0, 2, ids, lp);
    CHECK_NEAR(l0, -log(1 + exp(-1.0)), 1e-5);
    CHECK(ids[0] == 0 && ids[1] == 1);
}

int main(void)
{
    RUN(philox_known_answers);
    RUN(uniform_is_a_pure_function);
    RUN(greedy_ties_go_to_the_lowest_id);
    RUN(masks_match_their_definition);
    RUN(same_seed_and_step_same_token);
    RUN(frequencies_follow_the_softmax);
    RUN(logprobs_and_top);
    CHECK_EXIT();
}
