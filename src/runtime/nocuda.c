/* Runtime entry points of a build made without nvcc: each reports that clearly. */
#include "mk/runtime.h"

enum mk_status mk_gpu_query(struct mk_gpu_info *out)
{
    (void)out;
    return mk_error(MK_ERR_NO_DEVICE, "built without CUDA (nvcc was not found at build time)");
}

enum mk_status mk_gpu_open(const struct mk_model *m, const struct mk_plan *plan,
                           const struct mk_gpu_options *opt, struct mk_gpu **out)
{
    (void)m; (void)plan; (void)opt; (void)out;
    return mk_error(MK_ERR_NO_DEVICE, "built without CUDA (nvcc was not found at build time)");
}

void mk_gpu_close(struct mk_gpu *g) { (void)g; }

enum mk_status mk_gpu_generate(struct mk_gpu *g, const struct mk_gpu_request *req, int n,
                               mk_gpu_token_fn on_token, void *ctx, int32_t **out_tokens,
                               int *out_counts, struct mk_gpu_stats *stats)
{
    (void)g; (void)req; (void)n; (void)on_token; (void)ctx; (void)out_tokens;
    (void)out_counts; (void)stats;
    return mk_error(MK_ERR_NO_DEVICE, "built without CUDA (nvcc was not found at build time)");
}

static enum mk_status no_cuda(void)
{
    return mk_error(MK_ERR_NO_DEVICE, "built without CUDA (nvcc was not found at build time)");
}

enum mk_status mk_gpu_arena_read(struct mk_gpu *g, void *dst) { (void)g; (void)dst; return no_cuda(); }
enum mk_status mk_gpu_arena_write(struct mk_gpu *g, const void *src) { (void)g; (void)src; return no_cuda(); }
enum mk_status mk_gpu_kv_read(struct mk_gpu *g, void *dst) { (void)g; (void)dst; return no_cuda(); }
enum mk_status mk_gpu_kv_write(struct mk_gpu *g, const void *src) { (void)g; (void)src; return no_cuda(); }

enum mk_status mk_gpu_set_seq_state(struct mk_gpu *g, const int32_t *tokens, const int32_t *pos)
{
    (void)g; (void)tokens; (void)pos;
    return no_cuda();
}

enum mk_status mk_gpu_run_task(struct mk_gpu *g, uint32_t task, int step)
{
    (void)g; (void)task; (void)step;
    return no_cuda();
}

enum mk_status mk_gpu_profile_begin(struct mk_gpu *g, int steps)
{
    (void)g; (void)steps;
    return no_cuda();
}

enum mk_status mk_gpu_profile_read(struct mk_gpu *g, uint64_t *dst, int steps)
{
    (void)g; (void)dst; (void)steps;
    return no_cuda();
}

enum mk_status mk_gpu_stream_bench(uint64_t bytes, int reps, double *gbps_1cta,
                                   double *gbps_4cta)
{
    (void)bytes; (void)reps; (void)gbps_1cta; (void)gbps_4cta;
    return no_cuda();
}

enum mk_status mk_backend_gpu_new(const struct mk_model *m, int max_batch, int max_ctx,
                                  struct mk_backend **out)
{
    (void)m; (void)max_batch; (void)max_ctx; (void)out;
    return no_cuda();
}

enum mk_status mk_gpu_sync_bench(enum mk_sync_test test, int samples, struct mk_sync_result *out)
{
    (void)test; (void)samples; (void)out;
    return no_cuda();
}
