/* The engine's "gpu" backend: requests -> one megakernel launch per batch. The plan is
 * compiled once for (max_batch, max_ctx) on the device's SM count and shared-memory
 * limit; weights stay resident between calls. Stop ids and max_tokens are checked inside
 * the kernel; the finish reason of each token is derived here from the same rules. */
#include "mk/engine.h"
#include "mk/plan.h"
#include "mk/runtime.h"
#include "runtime/gpu_abi.h"

#include <stdlib.h>
#include <string.h>

struct gpu_backend {
    struct mk_backend base;    /* first: the engine sees a struct mk_backend */
    struct mk_gpu *gpu;
    const struct mk_model *model;
};

/* Per-call state the token callback needs. */
struct gpu_call {
    const struct mk_request *reqs;
    mk_token_fn on_token;
    void *ctx;
    enum mk_finish *finish;
    const struct mk_model *model;
};

static bool is_stop(const struct mk_request *r, const struct mk_config *cfg, int32_t id)
{
    for (int i = 0; i < r->n_stop_ids; i++)
        if (r->stop_ids[i] == id) return true;
    for (int i = 0; !r->ignore_eos && i < cfg->n_eos; i++)
        if (cfg->eos_token_ids[i] == id) return true;
    return false;
}

static bool gpu_on_token(void *ctx, int seq, int index, int32_t token)
{
    struct gpu_call *c = ctx;
    const struct mk_request *r = &c->reqs[seq];
    struct mk_token t;
    memset(&t, 0, sizeof t);
    t.id = token;
    t.index = index;
    t.finish = is_stop(r, &c->model->cfg, token) ? MK_FINISH_STOP
               : index + 1 >= r->max_tokens  ? MK_FINISH_LENGTH
                                             : MK_FINISH_NONE;
    if (t.finish != MK_FINISH_NONE) c->finish[seq] = t.finish;
    bool go_on = c->on_token ? c->on_token(c->ctx, seq, &t) : true;
    if (!go_on && t.finish == MK_FINISH_NONE) c->finish[seq] = MK_FINISH_CANCELLED;
    return go_on;
}

static enum mk_status gpu_run(struct mk_backend *self, const struct mk_request *reqs, int n,
                              mk_token_fn on_token, void *ctx, enum mk_finish *finish)
{
    struct gpu_backend *b = (struct gpu_backend *)self;
    struct mk_gpu_request gr[MK_MAX_BATCH];
    if (n < 1 || n > self->max_batch)
        return mk_error(MK_ERR_ARG, "gpu backend: %d requests, expected 1..%d", n, self->max_batch);
    for (int i = 0; i < n; i++) {
        const struct mk_request *r = &reqs[i];
        if (r->top_logprobs > 0)
            return mk_error(MK_ERR_UNSUPPORTED, "gpu backend: request %d: top_logprobs %d: "
                            "the GPU does not report log-probabilities yet", i, r->top_logprobs);
        if (r->n_stop_ids > MK_GPU_MAX_STOP)
            return mk_error(MK_ERR_LIMIT, "gpu backend: request %d: %d stop ids, at most %d", i,
                            r->n_stop_ids, MK_GPU_MAX_STOP);
        gr[i] = (struct mk_gpu_request){.sampling = r->sampling, .prompt = r->prompt, .prompt_len = r->n_prompt,
                                        .max_new = r->max_tokens, .stop = r->stop_ids,
                                        .n_stop = r->n_stop_ids, .ignore_eos = r->ignore_eos};
        finish[i] = MK_FINISH_NONE;
    }
    struct gpu_call call = {reqs, on_token, ctx, finish, b->model};
    return mk_gpu_generate(b->gpu, gr, n, gpu_on_token, &call, NULL, NULL, NULL);
}

static void gpu_free(struct mk_backend *self)
{
    struct gpu_backend *b = (struct gpu_backend *)self;
    if (!b) return;
    mk_gpu_close(b->gpu);
    free(b);
}

enum mk_status mk_backend_gpu_new(const struct mk_model *m, int max_batch, int max_ctx,
                                  struct mk_backend **out)
{
    if (max_batch < 1 || max_batch > MK_MAX_BATCH || max_batch > MK_GPU_MAX_BATCH)
        return mk_error(MK_ERR_ARG, "gpu backend: max_batch %d, expected 1..%d", max_batch,
                        MK_GPU_MAX_BATCH);
    struct mk_gpu_info info;
    enum mk_status s = mk_gpu_query(&info);
    if (s != MK_OK) return s;
    struct mk_target tgt = mk_target_h100(max_batch, max_ctx);
    tgt.sm_count = info.sm_count;
    tgt.smem_per_block = (int)info.smem_per_block_optin;
    tgt.threads = MK_GPU_THREADS;
    struct mk_plan *plan = NULL;
    if ((s = mk_plan_compile(&m->cfg, &tgt, &plan)) != MK_OK) return s;
    struct gpu_backend *b = calloc(1, sizeof *b);
    if (!b) {
        mk_plan_free(plan);
        return mk_error(MK_ERR_NOMEM, "gpu backend: no memory");
    }
    s = mk_gpu_open(m, plan, NULL, &b->gpu);
    mk_plan_free(plan);
    if (s != MK_OK) {
        free(b);
        return s;
    }
    b->model = m;
    b->base.name = "gpu";
    b->base.max_batch = max_batch;
    b->base.max_ctx = max_ctx;
    b->base.run = gpu_run;
    b->base.free = gpu_free;
    *out = &b->base;
    return MK_OK;
}
