/* A plan with one event never signalled must end with the stuck-wait diagnostic
 * (MK_ERR_TIMEOUT naming SM, task, event, expected and seen counts), not a hang; the
 * device stays usable: an intact plan runs right after. */
#include "gpu_util.h"

static void test_gpu_unsignalled_event_reports(void)
{
    struct mk_model *m = gt_golden("qwen3_f32");
    if (!m) return;
    struct mk_plan *p = gt_plan(&m->cfg, 2, 32);
    if (!p) {
        mk_model_free(m);
        return;
    }
    /* drop the signals of the first NORM_GATE_UP task: its consumers wait forever */
    uint32_t victim = MK_NONE;
    for (uint32_t i = 0; i < p->n_tasks && victim == MK_NONE; i++)
        if (p->tasks[i].op == MK_TASK_NORM_GATE_UP && p->tasks[i].n_signal > 0) victim = i;
    CHECK(victim != MK_NONE);
    uint16_t saved = victim != MK_NONE ? p->tasks[victim].n_signal : 0;
    if (victim != MK_NONE) p->tasks[victim].n_signal = 0;
    struct mk_gpu_options opt = {.wait_timeout_ms = 300};
    struct mk_gpu *g = NULL;
    CHECK_OK(mk_gpu_open(m, p, &opt, &g));
    int32_t prompt[4] = {1, 2, 3, 4};
    struct mk_gpu_request req = {.prompt = prompt, .prompt_len = 4, .max_new = 4, .ignore_eos = 1};
    if (g) {
        enum mk_status s = mk_gpu_generate(g, &req, 1, NULL, NULL, NULL, NULL, NULL);
        printf("    diagnostic: %s\n", mk_errmsg());
        CHECKF(s == MK_ERR_TIMEOUT, "status %s, expected MK_ERR_TIMEOUT", mk_status_name(s));
        CHECK(strstr(mk_errmsg(), "event") && strstr(mk_errmsg(), "expected >="));
        CHECK(strstr(mk_errmsg(), "SM ") && strstr(mk_errmsg(), "task "));
    }
    mk_gpu_close(g);
    g = NULL;
    if (victim != MK_NONE) p->tasks[victim].n_signal = saved;
    CHECK_OK(mk_gpu_open(m, p, &opt, &g));
    int32_t out[4];
    int32_t *outs[1] = {out};
    int count = 0;
    if (g) CHECK_OK(mk_gpu_generate(g, &req, 1, NULL, NULL, outs, &count, NULL));
    CHECKF(count == 4, "intact plan after the timeout: %d tokens, expected 4", count);
    mk_gpu_close(g);
    mk_plan_free(p);
    mk_model_free(m);
}

int main(void)
{
    RUN(test_gpu_unsignalled_event_reports);
    CHECK_EXIT();
}
