/* A short run of the whole megakernel on a tiny model, meant for compute-sanitizer
 * memcheck (scripts/device_check.sh): two sequences at different positions, a few steps,
 * then every task alone in the one-block kernel. The wait bound is long because the
 * sanitizer slows the kernel by orders of magnitude. */
#include "gpu_util.h"

static void test_gpu_sanitize_run(void)
{
    struct mk_model *m = gt_golden("qwen2_f32"); /* bias, GQA, untied head */
    if (!m) return;
    struct mk_plan *p = gt_plan(&m->cfg, 2, 16);
    struct mk_gpu_options opt = {.wait_timeout_ms = 600000};
    struct mk_gpu *g = NULL;
    if (p) CHECK_OK(mk_gpu_open(m, p, &opt, &g));
    if (g) {
        int32_t a[3] = {5, 6, 7}, b[1] = {9};
        struct mk_gpu_request req[2] = {
            {.prompt = a, .prompt_len = 3, .max_new = 4, .ignore_eos = 1},
            {.prompt = b, .prompt_len = 1, .max_new = 3, .ignore_eos = 1}};
        int32_t o0[4], o1[3];
        int32_t *outs[2] = {o0, o1};
        int counts[2] = {0, 0};
        CHECK_OK(mk_gpu_generate(g, req, 2, NULL, NULL, outs, counts, NULL));
        CHECK(counts[0] == 4 && counts[1] == 3);
        for (uint32_t t = 0; t < p->n_tasks; t++)
            if (p->tasks[t].op != MK_TASK_SAMPLE) CHECK_OK(mk_gpu_run_task(g, t, 0));
    }
    mk_gpu_close(g);
    mk_plan_free(p);
    mk_model_free(m);
}

int main(void)
{
    RUN(test_gpu_sanitize_run);
    CHECK_EXIT();
}
