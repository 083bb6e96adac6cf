/* The whole megakernel against the CPU reference (mk_ref, fp32) on the six golden tiny
 * checkpoints and on a random Qwen3-0.6B of the real shapes; batch independence and
 * bit-identical reruns.
 *
 * Bounds (rel = max|gpu - ref| / max|ref| over a logit row):
 *  - bf16 checkpoints: the GPU holds exactly the stored weights; it differs from the
 *    reference by the bf16 KV cache (2^-9 relative per element) and summation order:
 *    rel <= 2e-2.
 *  - f32 checkpoints: the GPU rounds every weight to bf16 (2^-9 relative each), a
 *    slightly different model; logits are differences of large dot products: rel <= 4e-2.
 *  - greedy ids: equal, or a near-tie at the first difference (gap < 2x the bound of
 *    max|logit|) under the reference's own logits; then the comparison stops.
 * Batch independence: a sequence gives the same ids alone (B = 1) and among others
 * (B = 4, each at its own position): the reduction order does not depend on B. */
#include "gpu_util.h"

enum { MAX_NEW = 12, CTX = 256 }; /* 256: 4 KV splits per head on the tiny models */

static const char *const MODELS[] = {"qwen3_bf16", "llama3_bf16", "qwen3_f32",
                                     "llama3_f32", "qwen2_f32", "mistral_f32"};
enum { N_MODELS = sizeof MODELS / sizeof MODELS[0] };

static double bound_of(const struct mk_model *m)
{
    return m->cfg.dtype == MK_DTYPE_BF16 ? 2e-2 : 4e-2;
}

/* B sequences with prompts of lengths len[], greedy, MAX_NEW tokens each. */
static void gpu_greedy(struct mk_gpu *g, int B, int32_t prompts[][32], const int *len,
                       int32_t out[][MAX_NEW], int *counts)
{
    struct mk_gpu_request req[16];
    int32_t *outs[16];
    for (int b = 0; b < B; b++) {
        req[b] = (struct mk_gpu_request){.prompt = prompts[b], .prompt_len = len[b],
                                         .max_new = MAX_NEW, .ignore_eos = 1};
        outs[b] = out[b];
    }
    struct mk_gpu_stats st;
    CHECK_OK(mk_gpu_generate(g, req, B, NULL, NULL, outs, counts, &st));
}

static void model_case(const char *name)
{
    struct mk_model *m = gt_golden(name);
    if (!m) return;
    const int V = m->cfg.vocab_size;
    struct mk_ref *ref = NULL;
    CHECK_OK(mk_ref_new(m, &ref));
    enum { B = 4 };
    int len[B] = {5, 11, 2, 19};
    int32_t prompts[B][32], out[B][MAX_NEW], out1[MAX_NEW];
    int counts[B] = {0}, count1 = 0;
    for (int b = 0; b < B; b++) gt_prompt(prompts[b], len[b], V);

    struct mk_plan *p4 = gt_plan(&m->cfg, B, CTX), *p1 = gt_plan(&m->cfg, 1, CTX);
    struct mk_gpu *g4 = NULL, *g1 = NULL;
    if (p4) CHECK_OK(mk_gpu_open(m, p4, NULL, &g4));
    if (p1) CHECK_OK(mk_gpu_open(m, p1, NULL, &g1));
    if (!g4 || !g1 || !ref) goto done;
    gpu_greedy(g4, B, prompts, len, out, counts);

    float *logits = malloc(sizeof(float) * MAX_NEW * V);
    int32_t ids[MAX_NEW];
    for (int b = 0; b < B; b++) {
        char what[96];
        snprintf(what, sizeof what, "%s seq %d (prompt %d)", name, b, len[b]);
        gt_ref_greedy(ref, prompts[b], len[b], MAX_NEW, ids, logits);
        gt_compare_greedy(out[b], counts[b], ids, logits, MAX_NEW, V, 2 * bound_of(m), what);
    }
    /* batch independence: sequence 1 alone */
    int32_t one[1][32];
    memcpy(one[0], prompts[1], sizeof one[0]);
    int32_t o1[1][MAX_NEW];
    gpu_greedy(g1, 1, one, &len[1], o1, &count1);
    memcpy(out1, o1[0], sizeof out1);
    CHECKF(count1 == counts[1] && !memcmp(out1, out[1], sizeof(int32_t) * (size_t)count1),
           "%s: seq 1 alone differs from seq 1 in a batch of 4", name);
    free(logits);
done:
    mk_gpu_close(g4);
    mk_gpu_close(g1);
    mk_plan_free(p4);
    mk_plan_free(p1);
    mk_ref_free(ref);
    mk_model_free(m);
}

/* Logits after a prompt (max_new = 1: the launch ends in the step that read the last
 * prompt token; the arena's logits buffer then holds that step's logits) vs mk_ref. */
static void logits_case(struct mk_model *m, const char *name, int prompt_len, double bound)
{
    const int V = m->cfg.vocab_size, B = 2;
    struct mk_ref *ref = NULL;
    CHECK_OK(mk_ref_new(m, &ref));
    struct mk_plan *p = gt_plan(&m->cfg, B, CTX);
    struct mk_gpu *g = NULL;
    if (p) CHECK_OK(mk_gpu_open(m, p, NULL, &g));
    if (!g || !ref) goto done;
    int32_t prompts[2][32];
    struct mk_gpu_request req[2];
    for (int b = 0; b < B; b++) {
        gt_prompt(prompts[b], prompt_len, V);
        req[b] = (struct mk_gpu_request){.prompt = prompts[b], .prompt_len = prompt_len,
                                         .max_new = 1, .ignore_eos = 1};
    }
    CHECK_OK(mk_gpu_generate(g, req, B, NULL, NULL, NULL, NULL, NULL));
    char *arena = malloc(p->arena_bytes);
    float *lg = malloc(sizeof(float) * V);
    CHECK_OK(mk_gpu_arena_read(g, arena));
    int64_t off = gt_buffer(p, "logits");
    CHECK(off >= 0);
    for (int b = 0; b < B && off >= 0; b++) {
        struct mk_ref_seq *s = NULL;
        CHECK_OK(mk_ref_seq_new(ref, CTX, &s));
        CHECK_OK(mk_ref_forward(ref, s, prompts[b], prompt_len, false, lg));
        double e = gt_rel_err((const float *)(arena + off) + (size_t)b * V, lg, (size_t)V);
        printf("    %s: seq %d: logits rel err %.3g (bound %.3g)\n", name, b, e, bound);
        CHECKF(e <= bound, "%s seq %d: logits rel err %.4g > %.4g", name, b, e, bound);
        mk_ref_seq_free(s);
    }
    free(arena);
    free(lg);
done:
    mk_gpu_close(g);
    mk_plan_free(p);
    mk_ref_free(ref);
}

static void test_gpu_goldens_greedy(void)
{
    for (int i = 0; i < N_MODELS; i++) model_case(MODELS[i]);
}

static void test_gpu_goldens_logits(void)
{
    for (int i = 0; i < N_MODELS; i++) {
        struct mk_model *m = gt_golden(MODELS[i]);
        if (!m) continue;
        logits_case(m, MODELS[i], 13, bound_of(m));
        mk_model_free(m);
    }
}

/* 10 launches of the same batch: bit-identical tokens and last-step logits. */
static void test_gpu_repeat_bit_identical(void)
{
    struct mk_model *m = gt_golden("qwen3_bf16");
    if (!m) return;
    enum { B = 3, RUNS = 10 };
    struct mk_plan *p = gt_plan(&m->cfg, B, CTX);
    struct mk_gpu *g = NULL;
    if (p) CHECK_OK(mk_gpu_open(m, p, NULL, &g));
    int64_t off = p ? gt_buffer(p, "logits") : -1;
    if (g && off >= 0) {
        int len[B] = {3, 8, 5};
        int32_t prompts[B][32], out[B][MAX_NEW], first[B][MAX_NEW];
        int counts[B];
        for (int b = 0; b < B; b++) gt_prompt(prompts[b], len[b], m->cfg.vocab_size);
        size_t lbytes = sizeof(float) * B * (size_t)m->cfg.vocab_size;
        char *arena = malloc(p->arena_bytes), *ref_logits = malloc(lbytes);
        for (int r = 0; r < RUNS; r++) {
            gpu_greedy(g, B, prompts, len, out, counts);
            CHECK_OK(mk_gpu_arena_read(g, arena));
            if (r == 0) {
                memcpy(first, out, sizeof first);
                memcpy(ref_logits, arena + off, lbytes);
                continue;
            }
            CHECKF(!memcmp(first, out, sizeof out), "run %d: tokens differ from run 0", r);
            CHECKF(!memcmp(ref_logits, arena + off, lbytes), "run %d: logits differ from run 0", r);
        }
        free(arena);
        free(ref_logits);
    }
    mk_gpu_close(g);
    mk_plan_free(p);
    mk_model_free(m);
}

/* Random Qwen3-0.6B of the real shapes (MK_GPU_QWEN3_06B, made by the device script with
 * `mk synth --arch qwen3 --preset 0.6b`): logits and greedy ids vs the reference. */
static void test_gpu_qwen3_06b(void)
{
    const char *dir = getenv("MK_GPU_QWEN3_06B");
    if (!dir) {
        printf("    skipped: MK_GPU_QWEN3_06B not set\n");
        return;
    }
    struct mk_model *m = NULL;
    CHECK_OK(mk_model_load(dir, &m));
    if (!m) return;
    logits_case(m, "qwen3-0.6b", 9, bound_of(m));
    struct mk_ref *ref = NULL;
    CHECK_OK(mk_ref_new(m, &ref));
    enum { B = 2 };
    struct mk_plan *p = gt_plan(&m->cfg, B, CTX);
    struct mk_gpu *g = NULL;
    if (p) CHECK_OK(mk_gpu_open(m, p, NULL, &g));
    if (g && ref) {
        int len[B] = {6, 3};
        int32_t prompts[B][32], out[B][MAX_NEW], ids[MAX_NEW];
        int counts[B];
        for (int b = 0; b < B; b++) gt_prompt(prompts[b], len[b], m->cfg.vocab_size);
        gpu_greedy(g, B, prompts, len, out, counts);
        float *logits = malloc(sizeof(float) * MAX_NEW * (size_t)m->cfg.vocab_size);
        for (int b = 0; b < B; b++) {
            gt_ref_greedy(ref, prompts[b], len[b], MAX_NEW, ids, logits);
            gt_compare_greedy(out[b], counts[b], ids, logits, MAX_NEW, m->cfg.vocab_size,
                              2 * bound_of(m), b ? "qwen3-0.6b seq 1" : "qwen3-0.6b seq 0");
        }
        free(logits);
    }
    mk_gpu_close(g);
    mk_plan_free(p);
    mk_ref_free(ref);
    mk_model_free(m);
}

/* Sampled tokens (temperature, top-k, top-p, seed) equal mk_sample on the very logits
 * the kernel drew from: a launch with max_new = 1 ends in the step of the first generated
 * token, whose logits stay in the arena. Only a draw within a few ulps of a boundary
 * between two tokens could differ (mk/sample.h), improbable over these few draws. */
static void sampling_case(struct mk_model *m, const char *name, int n_cases)
{
    const int V = m->cfg.vocab_size, B = 2;
    struct mk_plan *p = gt_plan(&m->cfg, B, CTX);
    struct mk_gpu *g = NULL;
    if (p) CHECK_OK(mk_gpu_open(m, p, NULL, &g));
    int64_t off = p ? gt_buffer(p, "logits") : -1;
    struct mk_sampler smp;
    CHECK_OK(mk_sampler_init(&smp, V));
    char *arena = p ? malloc(p->arena_bytes) : NULL;
    static const float temps[] = {1.0f, 0.7f, 1.3f};
    static const int topk[] = {0, 1, 5, 40};
    static const float topp[] = {1.0f, 0.9f, 0.5f};
    int same = 0, total = 0;
    for (int c = 0; g && arena && off >= 0 && c < n_cases; c++) {
        int32_t prompts[2][8];
        struct mk_gpu_request req[2];
        for (int b = 0; b < B; b++) {
            gt_prompt(prompts[b], 6, V);
            req[b] = (struct mk_gpu_request){
                .sampling = {.temperature = temps[(c + b) % 3], .top_k = topk[(c / 3 + b) % 4],
                             .top_p = topp[(c / 2 + b) % 3], .seed = 1000u + (uint64_t)c * 7 + b},
                .prompt = prompts[b], .prompt_len = 6, .max_new = 1, .ignore_eos = 1};
        }
        int32_t o[2][1];
        int32_t *outs[2] = {o[0], o[1]};
        int counts[2] = {0, 0};
        CHECK_OK(mk_gpu_generate(g, req, B, NULL, NULL, outs, counts, NULL));
        CHECK_OK(mk_gpu_arena_read(g, arena));
        for (int b = 0; b < B && counts[b] == 1; b++) {
            int32_t cpu = mk_sample(&smp, (const float *)(arena + off) + (size_t)b * V,
                                    &req[b].sampling, 0);
            CHECKF(cpu == o[b][0], "%s case %d seq %d (T %g, top_k %d, top_p %g, seed %llu): "
                   "gpu %d, cpu %d", name, c, b, (double)req[b].sampling.temperature,
                   req[b].sampling.top_k, (double)req[b].sampling.top_p,
                   (unsigned long long)req[b].sampling.seed, o[b][0], cpu);
            same += cpu == o[b][0];
            total++;
        }
    }
    printf("    %s: %d of %d sampled tokens equal the CPU's\n", name, same, total);
    CHECK(total == 2 * n_cases);
    free(arena);
    mk_sampler_free(&smp);
    mk_gpu_close(g);
    mk_plan_free(p);
}

static void test_gpu_sampling(void)
{
    struct mk_model *m = gt_golden("llama3_bf16");
    if (m) sampling_case(m, "llama3_bf16", 24);
    mk_model_free(m);
    const char *dir = getenv("MK_GPU_QWEN3_06B");
    if (!dir) return;
    m = NULL;
    CHECK_OK(mk_model_load(dir, &m));
    if (m) sampling_case(m, "qwen3-0.6b", 6);
    mk_model_free(m);
}

int main(void)
{
    RUN(test_gpu_goldens_logits);
    RUN(test_gpu_goldens_greedy);
    RUN(test_gpu_repeat_bit_identical);
    RUN(test_gpu_qwen3_06b);
    RUN(test_gpu_sampling);
    CHECK_EXIT();
}
