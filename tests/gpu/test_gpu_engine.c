/* The engine's "gpu" backend against its "cpu" backend (the reference) on golden tiny
 * checkpoints: greedy ids and finish reasons per request of a batch (near-tie rule at the
 * first difference), stop ids ending a request inside the kernel, tokens of each request
 * arriving in order, and cancellation from the callback. */
#include "gpu_util.h"
#include "mk/engine.h"

enum { MAX_TOK = 10, NREQ = 3 };

struct got {
    int32_t ids[NREQ][MAX_TOK];
    int n[NREQ];
    int order_errors;
    int cancel_at; /* cancel request 1 at this index (-1: never) */
};

static bool collect(void *ctx, int req, const struct mk_token *t)
{
    struct got *g = ctx;
    if (t->index != g->n[req]) g->order_errors++;
    if (g->n[req] < MAX_TOK) g->ids[req][g->n[req]++] = t->id;
    return !(req == 1 && t->index == g->cancel_at);
}

static void run(struct mk_backend *b, const struct mk_model *m, struct mk_request *reqs,
                struct got *g, enum mk_finish *fin)
{
    struct mk_engine *e = NULL;
    CHECK_OK(mk_engine_new(m, NULL, b, &e));
    if (e) CHECK_OK(mk_engine_generate(e, reqs, NREQ, collect, g, fin));
    mk_engine_free(e);
}

static void engine_case(const char *name)
{
    struct mk_model *m = gt_golden(name);
    if (!m) return;
    const int V = m->cfg.vocab_size;
    int32_t prompts[NREQ][8];
    struct mk_request reqs[NREQ];
    memset(reqs, 0, sizeof reqs);
    for (int i = 0; i < NREQ; i++) {
        gt_prompt(prompts[i], 3 + 2 * i, V);
        reqs[i].prompt = prompts[i];
        reqs[i].n_prompt = 3 + 2 * i;
        reqs[i].max_tokens = MAX_TOK - 2 * i;
        reqs[i].ignore_eos = true;
        reqs[i].sampling.top_p = 1.0f;
    }
    /* request 2 stops at the token the reference generates third (or earlier, if the
     * same id came before) */
    struct got cpu = {.cancel_at = -1}, gpu = {.cancel_at = -1};
    enum mk_finish fc[NREQ], fg[NREQ];
    struct mk_backend *bc = NULL, *bg = NULL;
    CHECK_OK(mk_backend_cpu_new(m, &bc));
    if (bc) run(bc, m, reqs, &cpu, fc);
    reqs[2].stop_ids[0] = cpu.ids[2][2];
    reqs[2].n_stop_ids = 1;
    memset(&cpu, 0, sizeof cpu);
    cpu.cancel_at = -1;
    CHECK_OK(mk_backend_cpu_new(m, &bc));
    if (bc) run(bc, m, reqs, &cpu, fc);
    CHECK_OK(mk_backend_gpu_new(m, NREQ, 32, &bg));
    if (bg) run(bg, m, reqs, &gpu, fg);
    CHECK(gpu.order_errors == 0);
    for (int i = 0; i < NREQ && bg; i++) {
        int same = 0;
        while (same < cpu.n[i] && same < gpu.n[i] && cpu.ids[i][same] == gpu.ids[i][same]) same++;
        if (same == cpu.n[i] && same == gpu.n[i]) {
            CHECKF(fc[i] == fg[i], "%s req %d: finish gpu %s, cpu %s", name, i,
                   mk_finish_name(fg[i]), mk_finish_name(fc[i]));
        } else {
            printf("    %s req %d: ids differ from token %d (gpu %d tokens, cpu %d)\n", name, i,
                   same, gpu.n[i], cpu.n[i]);
            CHECK(same > 0); /* a near-tie on the very first token of a random tiny model is
                                possible but never seen; the model tests check the rule */
        }
    }
    CHECKF(fg[2] == MK_FINISH_STOP && gpu.n[2] == cpu.n[2] && gpu.n[2] <= 3,
           "%s: stop id: finish %s after %d tokens (cpu %d)", name, mk_finish_name(fg[2]),
           gpu.n[2], cpu.n[2]);
    /* cancellation: request 1 says stop at its token 2 */
    struct got can = {.cancel_at = 2};
    enum mk_finish fx[NREQ];
    CHECK_OK(mk_backend_gpu_new(m, NREQ, 32, &bg));
    if (bg) run(bg, m, reqs, &can, fx);
    CHECKF(can.n[1] == 3 && fx[1] == MK_FINISH_CANCELLED, "%s: cancelled request: %d tokens, "
           "finish %s", name, can.n[1], mk_finish_name(fx[1]));
    CHECKF(can.n[0] == gpu.n[0], "%s: cancelling request 1 changed request 0", name);
    mk_model_free(m);
}

static void test_gpu_engine_backend(void)
{
    engine_case("qwen3_bf16");
    engine_case("llama3_bf16");
}

int main(void)
{
    RUN(test_gpu_engine_backend);
    CHECK_EXIT();
}
