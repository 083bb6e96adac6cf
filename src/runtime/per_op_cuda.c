/* The host side of the per-op baseline (mk/per_op.h): its own device copy of a model
 * for one plan, the group launches (plain or one step captured into a CUDA graph), and
 * the prefill measurement on the same device memory.
 *
 * Device memory (all allocated in mk_per_op_open, as gpu_cuda.c lays it out for the
 * megakernel): weights (bf16, plan offsets), KV cache, arena, the tables the task bodies
 * read (tasks, buffer and weight offsets and shapes), per-sequence state, the launch
 * order; per decode call: prompts and the token ring (device memory: nothing streams to
 * the host while timing). */
#include "mk/per_op.h"
#include "mk/prefill.h"
#include "mk/runtime.h"
#include "runtime/cuda_check.h"
#include "runtime/gpu_abi.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* kernels/per_op.cu */
cudaError_t mk_per_op_prepare(int batch, int smem_bytes);
cudaError_t mk_per_op_launch(const struct mk_gpu_args *a, const uint32_t *order, uint32_t first,
                             uint32_t n, int step, cudaStream_t s);

struct mk_per_op {
    struct mk_gpu_args a;
    uint32_t n_tasks, n_groups;
    uint32_t *start;        /* host: group boundaries into order */
    uint32_t *order_dev;    /* device: task ids in launch order */
    cudaStream_t stream;
    cudaEvent_t e0, e1;
    struct mk_prefill *prefill;
    int prefill_tokens;     /* capacity of `prefill` */
    void *dev_blocks[24];
    int n_dev;
};

static enum mk_status po_alloc(struct mk_per_op *po, void **dst, const void *src, size_t bytes)
{
    MK_ASSERT(po->n_dev < (int)(sizeof po->dev_blocks / sizeof po->dev_blocks[0]));
    void *p = NULL;
    if (cudaMalloc(&p, bytes ? bytes : 16) != cudaSuccess) {
        cudaGetLastError();
        return mk_error(MK_ERR_NOMEM, "per-op: cudaMalloc of %zu bytes failed", bytes);
    }
    po->dev_blocks[po->n_dev++] = p;
    if (src && bytes) MK_CUDA_CHECK(cudaMemcpy(p, src, bytes, cudaMemcpyHostToDevice));
    else MK_CUDA_CHECK(cudaMemset(p, 0, bytes ? bytes : 16));
    *dst = p;
    return MK_OK;
}

#define PO_ALLOC(field, src, bytes) do { \
    void *p_; enum mk_status s_ = po_alloc(po, &p_, (src), (bytes)); \
    if (s_ != MK_OK) return s_; \
    field = p_; } while (0)

/* The tables the task bodies read: tasks, buffer offsets/bytes, weight offsets/shapes. */
static enum mk_status upload_tables(struct mk_per_op *po, const struct mk_plan *p)
{
    struct mk_gpu_args *a = &po->a;
    PO_ALLOC(a->tasks, p->tasks, (size_t)p->n_tasks * sizeof *p->tasks);
    uint64_t *h = calloc((size_t)p->n_buffers * 2 + (size_t)p->n_weights * 2 + 2, 8);
    if (!h) return mk_error(MK_ERR_NOMEM, "per-op: no host memory for the plan tables");
    uint64_t *bytes = h + p->n_buffers, *woff = bytes + p->n_buffers;
    uint32_t *wrc = (uint32_t *)(woff + p->n_weights);
    for (uint32_t i = 0; i < p->n_buffers; i++) {
        h[i] = p->buffers[i].offset;
        bytes[i] = p->buffers[i].bytes;
    }
    for (uint32_t i = 0; i < p->n_weights; i++) {
        woff[i] = p->weights[i].offset;
        wrc[i] = p->weights[i].rows;
        wrc[p->n_weights + i] = p->weights[i].cols;
    }
    void *d = NULL;
    enum mk_status s = po_alloc(po, &d, h, ((size_t)p->n_buffers * 2 + p->n_weights * 2) * 8);
    if (s == MK_OK) {
        a->buf_off = d;
        a->buf_bytes = a->buf_off + p->n_buffers;
        a->w_off = a->buf_bytes + p->n_buffers;
        a->w_rows = (const uint32_t *)(a->w_off + p->n_weights);
        a->w_cols = a->w_rows + p->n_weights;
    }
    free(h);
    return s;
}

static enum mk_status open_inner(struct mk_per_op *po, const struct mk_model *m,
                                 const struct mk_plan *p, int prefill_tokens)
{
    struct mk_gpu_info info;
    enum mk_status s = mk_gpu_query(&info);
    if (s != MK_OK) return s;
    if (p->target.batch < 1 || p->target.batch > MK_GPU_MAX_BATCH)
        return mk_error(MK_ERR_UNSUPPORTED, "per-op: plan batch %d, expected 1..%d",
                        p->target.batch, MK_GPU_MAX_BATCH);
    int smem = (int)info.smem_per_block_optin;
    cudaError_t e = mk_per_op_prepare(p->target.batch, smem);
    if (e != cudaSuccess)
        return mk_error(MK_ERR_CUDA, "per-op: preparing the kernel: %s", cudaGetErrorString(e));
    po->n_tasks = p->n_tasks;
    uint32_t *order = malloc(sizeof *order * (p->n_tasks ? p->n_tasks : 1));
    po->start = malloc(sizeof *po->start * ((size_t)p->n_tasks + 1));
    if (!order || !po->start) {
        free(order);
        return mk_error(MK_ERR_NOMEM, "per-op: no host memory");
    }
    s = mk_per_op_groups(p, order, po->start, &po->n_groups);
    if (s == MK_OK) {
        void *d = NULL;
        s = po_alloc(po, &d, order, (size_t)p->n_tasks * 4);
        po->order_dev = d;
    }
    free(order);
    if (s != MK_OK) return s;
    MK_CUDA_CHECK(cudaStreamCreateWithFlags(&po->stream, cudaStreamNonBlocking));
    MK_CUDA_CHECK(cudaEventCreate(&po->e0));
    MK_CUDA_CHECK(cudaEventCreate(&po->e1));

    struct mk_gpu_args *a = &po->a;
    a->cfg = p->cfg;
    a->single_task = MK_NONE;
    a->batch = p->target.batch;
    a->max_ctx = p->target.max_ctx;
    a->smem_bytes = smem;
    mk_gpu_args_env(a, 0); /* the weight ring's bounded waits and MK_GPU_RING, as the megakernel */
    void *w;
    if ((s = po_alloc(po, &w, NULL, p->weight_bytes)) != MK_OK) return s;
    a->weights = w;
    if ((s = mk_gpu_upload_weights(m, p, w)) != MK_OK) return s;
    PO_ALLOC(a->kv, NULL, p->kv_bytes);
    PO_ALLOC(a->arena, NULL, p->arena_bytes);
    if ((s = upload_tables(po, p)) != MK_OK) return s;
    int32_t *st;
    PO_ALLOC(st, NULL, (size_t)5 * MK_GPU_MAX_BATCH * 4 + 16);
    a->tokens = st;
    a->pos = st + MK_GPU_MAX_BATCH;
    a->active = st + 2 * MK_GPU_MAX_BATCH;
    a->n_gen = st + 3 * MK_GPU_MAX_BATCH;
    a->cancel = (const uint32_t *)(st + 4 * MK_GPU_MAX_BATCH); /* stays zero */
    a->abort_flag = (uint32_t *)(st + 5 * MK_GPU_MAX_BATCH);
    a->last_step = st + 5 * MK_GPU_MAX_BATCH + 1;
    a->n_alive = st + 5 * MK_GPU_MAX_BATCH + 2;
    PO_ALLOC(a->seq, NULL, sizeof(struct mk_gpu_seq) * MK_GPU_MAX_BATCH);
    PO_ALLOC(a->ring_count, NULL, (size_t)MK_GPU_MAX_BATCH * 4);
    PO_ALLOC(a->diag, NULL, sizeof(struct mk_gpu_diag));
    float inv[MK_GPU_MAX_HALF_DIM];
    mk_gpu_rope_inv_freq(&p->cfg, inv);
    PO_ALLOC(a->inv_freq, inv, sizeof(float) * (size_t)(p->cfg.head_dim / 2));
    po->prefill_tokens = prefill_tokens;
    return prefill_tokens > 0 ? mk_prefill_new(p, prefill_tokens, false, &po->prefill) : MK_OK;
}

enum mk_status mk_per_op_open(const struct mk_model *m, const struct mk_plan *p,
                              int prefill_tokens, struct mk_per_op **out)
{
    struct mk_per_op *po = calloc(1, sizeof *po);
    if (!po) return mk_error(MK_ERR_NOMEM, "per-op: no host memory");
    enum mk_status s = open_inner(po, m, p, prefill_tokens);
    if (s != MK_OK) {
        mk_per_op_close(po);
        return s;
    }
    *out = po;
    return MK_OK;
}

void mk_per_op_close(struct mk_per_op *po)
{
    if (!po) return;
    mk_prefill_free(po->prefill);
    for (int i = 0; i < po->n_dev; i++) cudaFree(po->dev_blocks[i]);
    if (po->e0) cudaEventDestroy(po->e0);
    if (po->e1) cudaEventDestroy(po->e1);
    if (po->stream) cudaStreamDestroy(po->stream);
    free(po->start);
    free(po);
}

/* Every group of one step, in order, on po->stream. */
static enum mk_status launch_step(struct mk_per_op *po, int step)
{
    for (uint32_t g = 0; g < po->n_groups; g++) {
        uint32_t first = po->start[g], n = po->start[g + 1] - first;
        cudaError_t e = mk_per_op_launch(&po->a, po->order_dev, first, n, step, po->stream);
        if (e != cudaSuccess)
            return mk_error(MK_ERR_CUDA, "per-op: launch of group %u (%u tasks): %s", g, n,
                            cudaGetErrorString(e));
    }
    return MK_OK;
}

/* Per-sequence state as gpu_cuda.c sets it for a launch: greedy, EOS ignored. */
static enum mk_status set_state(struct mk_per_op *po, const int32_t *prompts, int n, int P,
                                int n_gen, int32_t **prompt_dev, int32_t **ring_dev)
{
    int B = po->a.batch;
    struct mk_gpu_seq seq[MK_GPU_MAX_BATCH];
    int32_t state[5 * MK_GPU_MAX_BATCH + 3];
    memset(seq, 0, sizeof seq);
    memset(state, 0, sizeof state);
    for (int i = 0; i < B; i++) {
        seq[i].prompt_len = i < n ? P : 1;
        seq[i].max_new = i < n ? n_gen : 1;
        state[i] = i < n ? prompts[(size_t)i * P] : 0;
        state[2 * MK_GPU_MAX_BATCH + i] = i < n;
    }
    state[5 * MK_GPU_MAX_BATCH + 1] = INT_MAX;
    state[5 * MK_GPU_MAX_BATCH + 2] = n;
    MK_CUDA_CHECK(cudaMalloc((void **)prompt_dev, (size_t)B * P * 4));
    MK_CUDA_CHECK(cudaMemset(*prompt_dev, 0, (size_t)B * P * 4));
    MK_CUDA_CHECK(cudaMemcpy(*prompt_dev, prompts, (size_t)n * P * 4, cudaMemcpyHostToDevice));
    MK_CUDA_CHECK(cudaMalloc((void **)ring_dev, (size_t)B * n_gen * 4));
    MK_CUDA_CHECK(cudaMemcpy((void *)po->a.seq, seq, sizeof seq, cudaMemcpyHostToDevice));
    MK_CUDA_CHECK(cudaMemcpy(po->a.tokens, state, sizeof state, cudaMemcpyHostToDevice));
    MK_CUDA_CHECK(cudaMemset(po->a.ring_count, 0, (size_t)MK_GPU_MAX_BATCH * 4));
    po->a.prompt = *prompt_dev;
    po->a.prompt_cap = P;
    po->a.ring_tok = *ring_dev;
    po->a.ring_cap = n_gen;
    po->a.max_steps = P + n_gen - 1;
    return MK_OK;
}

/* Steps [s0, s1): plain launches, or replays of the step graph. */
static enum mk_status run_steps(struct mk_per_op *po, cudaGraphExec_t exec, int s0, int s1)
{
    for (int s = s0; s < s1; s++) {
        if (exec) MK_CUDA_CHECK(cudaGraphLaunch(exec, po->stream));
        else {
            enum mk_status st = launch_step(po, s);
            if (st != MK_OK) return st;
        }
    }
    return MK_OK;
}

/* The step graph; SAMPLE's step argument only names the step that ended the last
 * sequence (last_step), which nothing reads here, so one graph serves every step. */
static enum mk_status capture_step(struct mk_per_op *po, cudaGraph_t *graph, cudaGraphExec_t *exec)
{
    MK_CUDA_CHECK(cudaStreamBeginCapture(po->stream, cudaStreamCaptureModeThreadLocal));
    enum mk_status s = launch_step(po, 0);
    cudaError_t e = cudaStreamEndCapture(po->stream, graph);
    if (s != MK_OK) return s;
    MK_CUDA_CHECK(e);
    MK_CUDA_CHECK(cudaGraphInstantiate(exec, *graph, 0));
    return MK_OK;
}

static enum mk_status decode_inner(struct mk_per_op *po, const int32_t *prompts, int n, int P,
                                   int n_gen, bool graph, int32_t *out, double *ms,
                                   int32_t **prompt_dev, int32_t **ring_dev,
                                   cudaGraph_t *g, cudaGraphExec_t *exec)
{
    enum mk_status s = set_state(po, prompts, n, P, n_gen, prompt_dev, ring_dev);
    if (s == MK_OK && graph) s = capture_step(po, g, exec);
    /* steps 0 .. P-1 consume the prompt and produce the first token; P .. P+n_gen-2
     * produce the other n_gen - 1, the timed ones */
    if (s == MK_OK) s = run_steps(po, *exec, 0, P);
    if (s != MK_OK) return s;
    MK_CUDA_CHECK(cudaEventRecord(po->e0, po->stream));
    if ((s = run_steps(po, *exec, P, P + n_gen - 1)) != MK_OK) return s;
    MK_CUDA_CHECK(cudaEventRecord(po->e1, po->stream));
    MK_CUDA_CHECK(cudaEventSynchronize(po->e1));
    float f = 0;
    MK_CUDA_CHECK(cudaEventElapsedTime(&f, po->e0, po->e1));
    *ms = f / (n_gen - 1);
    if (out)
        MK_CUDA_CHECK(cudaMemcpy(out, *ring_dev, (size_t)n * n_gen * 4, cudaMemcpyDeviceToHost));
    return MK_OK;
}

enum mk_status mk_per_op_decode(struct mk_per_op *po, const int32_t *prompts, int n_seqs,
                                int prompt_len, int n_gen, bool graph, int32_t *out_tokens,
                                double *ms_per_step)
{
    if (n_seqs < 1 || n_seqs > po->a.batch || prompt_len < 1 || n_gen < 2)
        return mk_error(MK_ERR_ARG, "per-op: %d sequences (plan batch %d), prompt %d, %d new "
                        "tokens; expected 1..batch, >= 1, >= 2", n_seqs, po->a.batch,
                        prompt_len, n_gen);
    if (prompt_len + n_gen > po->a.max_ctx)
        return mk_error(MK_ERR_LIMIT, "per-op: %d + %d positions, the plan's context holds %d",
                        prompt_len, n_gen, po->a.max_ctx);
    for (int i = 0; i < n_seqs * prompt_len; i++)
        if (prompts[i] < 0 || prompts[i] >= po->a.cfg.vocab_size)
            return mk_error(MK_ERR_ARG, "per-op: prompt token %d outside [0, %d)", prompts[i],
                            po->a.cfg.vocab_size);
    int32_t *prompt_dev = NULL, *ring_dev = NULL;
    cudaGraph_t g = NULL;
    cudaGraphExec_t exec = NULL;
    enum mk_status s = decode_inner(po, prompts, n_seqs, prompt_len, n_gen, graph, out_tokens,
                                    ms_per_step, &prompt_dev, &ring_dev, &g, &exec);
    if (exec) cudaGraphExecDestroy(exec);
    if (g) cudaGraphDestroy(g);
    cudaStreamSynchronize(po->stream);
    cudaFree(prompt_dev);
    cudaFree(ring_dev);
    po->a.prompt = NULL;
    po->a.ring_tok = NULL;
    return s;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

enum mk_status mk_per_op_prefill(struct mk_per_op *po, const int32_t *prompts, int n_seqs,
                                 int n, double *ms)
{
    if (n_seqs < 1 || n_seqs > po->a.batch || n < 1)
        return mk_error(MK_ERR_ARG, "per-op: prefill of %d sequences of %d tokens, plan batch %d",
                        n_seqs, n, po->a.batch);
    if (!po->prefill || po->prefill_tokens < n_seqs * n)
        return mk_error(MK_ERR_LIMIT, "per-op: prefill of %d tokens, opened for %d", n_seqs * n,
                        po->prefill_tokens);
    struct mk_prefill_seq seqs[MK_GPU_MAX_BATCH];
    for (int i = 0; i < n_seqs; i++)
        seqs[i] = (struct mk_prefill_seq){.tokens = prompts + (size_t)i * n, .n = n, .slot = i};
    struct mk_prefill_dev dev = {.weights = po->a.weights, .kv = po->a.kv, .stream = po->stream};
    double t0 = now_ms();
    enum mk_status s = mk_prefill_run(po->prefill, &dev, seqs, n_seqs, false, NULL, NULL);
    *ms = now_ms() - t0;
    return s;
}
