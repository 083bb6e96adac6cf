/* Sampling: greedy, temperature, top-k, top-p with the Philox draw. The order of
 * operations is specified in include/mk/sample.h; this file follows it step by step. */
#include "mk/sample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum mk_status mk_sampler_init(struct mk_sampler *s, int vocab)
{
    memset(s, 0, sizeof *s);
    if (vocab <= 0) return mk_error(MK_ERR_ARG, "sampler: vocab: expected > 0, got %d", vocab);
    s->vocab = vocab;
    s->order = malloc((size_t)vocab * sizeof *s->order);
    s->z = malloc((size_t)vocab * sizeof *s->z);
    s->e = malloc((size_t)vocab * sizeof *s->e);
    if (!s->order || !s->z || !s->e) {
        mk_sampler_free(s);
        return mk_error(MK_ERR_NOMEM, "sampler: out of memory for vocab %d", vocab);
    }
    return MK_OK;
}

void mk_sampler_free(struct mk_sampler *s)
{
    free(s->order);
    free(s->z);
    free(s->e);
    memset(s, 0, sizeof *s);
}

int32_t mk_argmax(const float *logits, int n)
{
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (logits[i] > logits[best]) best = i;
    return best;
}

/* qsort has no context argument: the scores being sorted are passed through this
 * thread-local pointer (each thread sorts with its own sampler). */
static _Thread_local const float *sort_z;

static int by_z_desc_id_asc(const void *pa, const void *pb)
{
    int32_t a = *(const int32_t *)pa, b = *(const int32_t *)pb;
    if (sort_z[a] > sort_z[b]) return -1;
    if (sort_z[a] < sort_z[b]) return 1;
    return (a > b) - (a < b);
}

/* Step 2: s->order[0..V) sorted by (z desc, id asc). */
static void sort_by_score(struct mk_sampler *s)
{
    for (int i = 0; i < s->vocab; i++) s->order[i] = i;
    sort_z = s->z;
    qsort(s->order, (size_t)s->vocab, sizeof *s->order, by_z_desc_id_asc);
    sort_z = NULL;
}

int32_t mk_sample(struct mk_sampler *s, const float *logits, const struct mk_sampling *p,
                  uint32_t step)
{
    const int V = s->vocab;
    if (!(p->temperature > 0.0f)) return mk_argmax(logits, V);                /* 0 */

    for (int i = 0; i < V; i++) s->z[i] = logits[i] / p->temperature;          /* 1 */

    const int n_cand = (p->top_k > 0 && p->top_k < V) ? p->top_k : V;          /* 2 */
    const int use_top_p = p->top_p > 0.0f && p->top_p < 1.0f;
    const int sorted = n_cand < V || use_top_p;
    if (sorted) sort_by_score(s);
    const float z_max = sorted ? s->z[s->order[0]] : s->z[mk_argmax(s->z, V)];

    memset(s->e, 0, (size_t)V * sizeof *s->e);                                 /* 3 */
    float S = 0.0f;
    for (int r = 0; r < n_cand; r++) {
        int32_t id = sorted ? s->order[r] : r;
        s->e[id] = expf(s->z[id] - z_max);
        S += s->e[id];
    }

    if (use_top_p) {                                                           /* 4 */
        const float target = p->top_p * S;
        float run = 0.0f;
        int n_keep = 0;
        while (n_keep < n_cand) {
            run += s->e[s->order[n_keep++]];
            if (run >= target) break;
        }
        for (int r = n_keep; r < n_cand; r++) s->e[s->order[r]] = 0.0f;
    }
    float S_kept = 0.0f;
    for (int i = 0; i < V; i++) S_kept += s->e[i];

    const float r = mk_sample_uniform(p->seed, step) * S_kept;                /* 5 */

    float run = 0.0f;                                                          /* 6 */
    int32_t last = -1;
    for (int i = 0; i < V; i++) {
        if (s->e[i] == 0.0f) continue;
        run += s->e[i];
        last = i;
        if (run > r) return i;
    }
    MK_ASSERT(last >= 0); /* the top candidate has e = expf(0) = 1 */
    return last;
}

float mk_logprobs(const float *logits, int vocab, int32_t id, int n_top, int32_t *top_ids,
                  float *top_logprobs)
{
    MK_ASSERT(vocab > 0 && id >= 0 && id < vocab && n_top >= 0 && n_top <= MK_TOP_MAX);
    const float m = logits[mk_argmax(logits, vocab)];
    double sum = 0.0;
    for (int i = 0; i < vocab; i++) sum += exp((double)logits[i] - m);
    const double lse = m + log(sum);

    /* Insertion into a short sorted list: (logit desc, id asc); ids arrive ascending, so
     * a strictly greater logit is needed to move ahead. */
    int n = 0;
    for (int i = 0; i < vocab && n_top > 0; i++) {
        if (n == n_top && !(logits[i] > logits[top_ids[n - 1]])) continue;
        int j = n < n_top ? n++ : n - 1;
        while (j > 0 && logits[i] > logits[top_ids[j - 1]]) {
            top_ids[j] = top_ids[j - 1];
            j--;
        }
        top_ids[j] = i;
    }
    for (int j = 0; j < n; j++) top_logprobs[j] = (float)(logits[top_ids[j]] - lse);
    return (float)(logits[id] - lse);
}
