/* Helpers of the GPU tests: plans for the device, golden checkpoints, random prompts,
 * CPU reference runs, error measures. Header-only (each test is one binary). */
#ifndef MK_TEST_GPU_UTIL_H
#define MK_TEST_GPU_UTIL_H

#include "check.h"
#include "mk/load.h"
#include "mk/plan.h"
#include "mk/ref.h"
#include "mk/runtime.h"
#include "mk/sample.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static inline const char *gt_root(void)
{
    const char *r = getenv("MK_ROOT");
    return r ? r : ".";
}

/* A golden tiny checkpoint (tests/data/goldens/NAME/ckpt), loaded; NULL + FAIL line. */
static inline struct mk_model *gt_golden(const char *name)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/tests/data/goldens/%s/ckpt", gt_root(), name);
    struct mk_model *m = NULL;
    CHECK_OK(mk_model_load(dir, &m));
    return m;
}

/* A plan for this device (its SM count and shared memory) with batch and context. */
static inline struct mk_plan *gt_plan(const struct mk_config *cfg, int batch, int max_ctx)
{
    struct mk_gpu_info info;
    CHECK_OK(mk_gpu_query(&info));
    struct mk_target t = mk_target_h100(batch, max_ctx);
    t.sm_count = info.sm_count;
    t.smem_per_block = (int)info.smem_per_block_optin;
    t.threads = 512;
    struct mk_plan *p = NULL;
    CHECK_OK(mk_plan_compile(cfg, &t, &p));
    return p;
}

static uint64_t gt_rng = 0x9e3779b97f4a7c15ull;
static inline uint32_t gt_rand(void)
{
    gt_rng = gt_rng * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(gt_rng >> 33);
}

static inline void gt_prompt(int32_t *ids, int n, int vocab)
{
    for (int i = 0; i < n; i++) ids[i] = (int32_t)(gt_rand() % (uint32_t)vocab);
}

/* max_j |a_j - b_j| / max_j |b_j| */
static inline double gt_rel_err(const float *a, const float *b, size_t n)
{
    double num = 0.0, den = 0.0;
    for (size_t j = 0; j < n; j++) {
        double d = fabs((double)a[j] - b[j]);
        if (!(d <= num)) num = d; /* NaN propagates as a failure */
        den = fabs(b[j]) > den ? fabs(b[j]) : den;
    }
    return den > 0 ? num / den : num;
}

/* The CPU reference's greedy continuation of `prompt`: ids[max_new] and the logits that
 * chose each id (logits[max_new][V]). */
static inline void gt_ref_greedy(const struct mk_ref *r, const int32_t *prompt, int n, int max_new,
                          int32_t *ids, float *logits)
{
    const struct mk_config *c = mk_ref_config(r);
    struct mk_ref_seq *s = NULL;
    CHECK_OK(mk_ref_seq_new(r, n + max_new + 1, &s));
    if (!s) return;
    CHECK_OK(mk_ref_forward(r, s, prompt, n, false, logits));
    for (int i = 0; i < max_new; i++) {
        float *lg = logits + (size_t)i * c->vocab_size;
        ids[i] = mk_argmax(lg, c->vocab_size);
        if (i + 1 < max_new) CHECK_OK(mk_ref_forward(r, s, &ids[i], 1, false, lg + c->vocab_size));
    }
    mk_ref_seq_free(s);
}

/* Greedy ids of the GPU against the reference's: equal, or at the first difference a
 * near-tie under the reference's logits of that step (the two ids' logits differ by
 * less than tie * max|logit|); comparison stops there (the continuations diverge).
 * Returns the number of equal leading ids. */
static inline int gt_compare_greedy(const int32_t *gpu, int n_gpu, const int32_t *ref,
                             const float *ref_logits, int n_ref, int V, double tie,
                             const char *what)
{
    int n = n_gpu < n_ref ? n_gpu : n_ref;
    CHECKF(n_gpu == n_ref, "%s: gpu generated %d tokens, reference %d", what, n_gpu, n_ref);
    for (int i = 0; i < n; i++) {
        if (gpu[i] == ref[i]) continue;
        const float *lg = ref_logits + (size_t)i * V;
        double mx = 0;
        for (int j = 0; j < V; j++) mx = fabs(lg[j]) > mx ? fabs(lg[j]) : mx;
        double gap = fabs((double)lg[ref[i]] - lg[gpu[i]]);
        CHECKF(gap < tie * mx, "%s: token %d: gpu %d, reference %d, logit gap %.4g >= %.4g",
               what, i, gpu[i], ref[i], gap, tie * mx);
        printf("    %s: near-tie at token %d (gap %.3g of max %.3g)\n", what, i, gap, mx);
        return i;
    }
    return n;
}

/* Offset (bytes) of the plan buffer called `name`; -1 when absent. */
static inline int64_t gt_buffer(const struct mk_plan *p, const char *name)
{
    for (uint32_t i = 0; i < p->n_buffers; i++)
        if (!strcmp(p->buffers[i].name, name)) return (int64_t)p->buffers[i].offset;
    return -1;
}

#endif
