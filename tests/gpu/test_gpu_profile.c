/* The per-task profile on the device: with it on, every task of every profiled step has
 * a record the analysis accepts (written, wait <= ready <= end, on the SM of the plan's
 * program), the tokens are those of a run with it off, reading turns it off, bad calls
 * are refused; the plan rescheduled with the measured task times gives the same tokens. */
#include "gpu_util.h"
#include "mk/profile.h"

enum { PROMPT = 4, NEW = 6, STEPS = PROMPT + NEW - 1 };

static void run(struct mk_gpu *g, const struct mk_gpu_request *req, int32_t (*out)[NEW])
{
    int32_t *outs[2] = {out[0], out[1]};
    int counts[2] = {0, 0};
    CHECK_OK(mk_gpu_generate(g, req, 2, NULL, NULL, outs, counts, NULL));
    CHECK(counts[0] == NEW && counts[1] == NEW);
}

static void test_gpu_profile_records(void)
{
    struct mk_model *m = gt_golden("qwen3_bf16");
    struct mk_plan *p = m ? gt_plan(&m->cfg, 2, 32) : NULL;
    const struct mk_gpu_options opt = {.prompt_mode = MK_GPU_PROMPT_STEP};
    struct mk_gpu *g = NULL;
    if (p) CHECK_OK(mk_gpu_open(m, p, &opt, &g));
    if (!g) goto done;
    int32_t prompt[2][PROMPT] = {{1, 2, 3, 4}, {9, 8, 7, 6}};
    struct mk_gpu_request req[2];
    for (int b = 0; b < 2; b++)
        req[b] = (struct mk_gpu_request){.prompt = prompt[b], .prompt_len = PROMPT,
                                         .max_new = NEW, .ignore_eos = 1};
    int32_t off[2][NEW], on[2][NEW], pgo[2][NEW];
    run(g, req, off);
    CHECK(mk_gpu_profile_begin(g, 0) == MK_ERR_ARG);
    CHECK_OK(mk_gpu_profile_begin(g, STEPS));
    run(g, req, on);
    CHECK(!memcmp(off, on, sizeof off));
    uint64_t *rec = calloc((size_t)STEPS * p->n_tasks * MK_PROF_FIELDS, sizeof *rec);
    CHECK(mk_gpu_profile_read(g, rec, STEPS + 1) == MK_ERR_ARG);
    CHECK_OK(mk_gpu_profile_read(g, rec, STEPS));
    CHECK(mk_gpu_profile_read(g, rec, STEPS) == MK_ERR_ARG); /* off again */
    struct mk_profile *pr = NULL;
    CHECK_OK(mk_profile_analyze(p, rec, STEPS, &pr));
    if (pr) {
        printf("    %u tasks, %d steps: step wall median %.2f us, critical path %.2f us\n",
               pr->n_tasks, pr->n_steps, pr->step_ns_median / 1e3, pr->crit_ns / 1e3);
        CHECK(pr->window_ns > 0 && pr->busy_ns > 0 && pr->n_path > 0);
        FILE *f = tmpfile();
        CHECK_OK(mk_profile_write_trace(p, rec, STEPS, f));
        CHECK(ftell(f) > 0);
        fclose(f);
        run(g, req, on); /* with the profile off again (its memory freed) */
        CHECK(!memcmp(off, on, sizeof off));
        mk_gpu_close(g);
        g = NULL;
        CHECK_OK(mk_plan_schedule(p, pr->task_ns));
        CHECK_OK(mk_gpu_open(m, p, &opt, &g));
        if (g) run(g, req, pgo);
        CHECK(!memcmp(off, pgo, sizeof off));
    }
    mk_profile_free(pr);
    free(rec);
done:
    mk_gpu_close(g);
    mk_plan_free(p);
    mk_model_free(m);
}

int main(void)
{
    RUN(test_gpu_profile_records);
    CHECK_EXIT();
}
