/* The host side of the persistent megakernel: device state of one (model, plan), the
 * cooperative launch, token streaming from the host-mapped ring, stuck-wait reports.
 *
 * Device memory of a struct mk_gpu (all allocated once in mk_gpu_open):
 *   weights   plan->weight_bytes, bf16, each plan weight at its offset (views skipped)
 *   kv        plan->kv_bytes, bf16, mk_plan_kv_offset layout
 *   arena     plan->arena_bytes, fp32 activations at the plan's buffer offsets
 *   tables    tasks, waits, signals, events, programs, buffer/weight offsets and shapes
 *   state     counters[n_events], tokens/pos/active/n_gen[B], seq[B], abort, last_step,
 *             inv_freq[D/2]
 * Per launch: prompt[B][prompt_cap] (device) and the host-mapped ring
 * ring_tok[B][ring_cap], ring_count[B], diag.
 *
 * Prompts (MK_GPU_PROMPT_PREFILL): the prefill (mk/prefill.h) writes K/V of positions
 * [0, prompt_len) into the same KV cache and yields each sequence's first token; the
 * per-sequence state is then set as if the megakernel had fed the prompt one token per
 * step (pos = prompt_len, the first token already in the ring), and the launch only
 * decodes. */
#include "mk/plan.h"
#include "mk/prefill.h"
#include "mk/profile.h"
#include "mk/runtime.h"
#include "runtime/cuda_check.h"
#include "runtime/gpu_abi.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* kernels/megakernel.cu */
int mk_kernel_bucket(int batch);
cudaError_t mk_kernel_prepare(int batch, int smem_bytes, int *blocks_per_sm);
cudaError_t mk_kernel_launch(const struct mk_gpu_args *a, int grid, cudaStream_t s);
cudaError_t mk_kernel_launch_task(const struct mk_gpu_args *a, uint32_t task, int step,
                                  cudaStream_t s);
cudaError_t mk_kernel_stream(const void *src, uint64_t bytes, uint32_t *sink, int grid,
                             cudaStream_t s);

enum {
    MK_GPU_PREFILL_TOKENS = 4096, /* prefill scratch: prompt tokens of one prefill call */
};

struct mk_gpu {
    struct mk_plan plan;       /* scalars only; the tables live on the device */
    struct mk_task *tasks;     /* host copy, for messages */
    struct mk_config cfg;
    int sm_count, grid;
    cudaStream_t stream;
    struct mk_gpu_args a;      /* device pointers; ring/diag/prompt set per launch */
    void *dev_blocks[24];      /* every cudaMalloc, freed in mk_gpu_close */
    int n_dev;
    struct mk_prefill *prefill; /* NULL: prompts one token per step */
    int prefill_tokens;        /* tokens of one mk_prefill_run at most */
    int64_t logits_off;        /* arena offset of the [B][V] fp32 logits buffer, -1: none */
};

static double mk_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* cudaMalloc + copy of `bytes` from host `src` (may be NULL: zeroed). */
static enum mk_status gpu_alloc(struct mk_gpu *g, void **dst, const void *src, size_t bytes)
{
    MK_ASSERT(g->n_dev < (int)(sizeof g->dev_blocks / sizeof g->dev_blocks[0]));
    void *p = NULL;
    if (cudaMalloc(&p, bytes ? bytes : 16) != cudaSuccess) {
        cudaGetLastError();
        return mk_error(MK_ERR_NOMEM, "gpu: cudaMalloc of %zu bytes failed", bytes);
    }
    g->dev_blocks[g->n_dev++] = p;
    if (src && bytes) MK_CUDA_CHECK(cudaMemcpy(p, src, bytes, cudaMemcpyHostToDevice));
    else MK_CUDA_CHECK(cudaMemset(p, 0, bytes ? bytes : 16));
    *dst = p;
    return MK_OK;
}

#define GPU_ALLOC(field, src, bytes) do { \
    void *p_; enum mk_status s_ = gpu_alloc(g, &p_, (src), (bytes)); \
    if (s_ != MK_OK) return s_; \
    field = p_; } while (0)

/* RoPE inverse frequencies (double, then fp32), llama3 scaling when configured. */
void mk_gpu_rope_inv_freq(const struct mk_config *c, float *out)
{
    int half = c->head_dim / 2;
    for (int i = 0; i < half; i++) {
        double f = 1.0 / pow((double)c->rope_theta, (2.0 * i) / c->head_dim);
        if (c->rope_type == MK_ROPE_LLAMA3) {
            double orig = c->rope_original_max_position;
            double lo_wl = orig / c->rope_low_freq_factor, hi_wl = orig / c->rope_high_freq_factor;
            double wl = 2.0 * M_PI / f;
            if (wl > lo_wl) {
                f = f / c->rope_factor;
            } else if (wl >= hi_wl) {
                double sm = (orig / wl - c->rope_low_freq_factor) /
                            (c->rope_high_freq_factor - c->rope_low_freq_factor);
                f = (1.0 - sm) * f / c->rope_factor + sm * f;
            }
        }
        out[i] = (float)f;
    }
}

/* ATTN_PARTIAL's tiled path: the arithmetic of mk_attn_plan (kernels/tasks/attention.cuh,
 * work area MK_ATTN_WORK = 90112 bytes at most) for head dim D, group G, bucket nb. */
static int attn_fixed(int D, int G, int nb, int rsl)
{
    return 4 * (2 * nb * G * D + (rsl > 1 ? rsl * nb * G * D : 0) + 3 * nb * G + 2 * nb);
}

static int attn_rows(int fixed, int per_row)
{
    int ch = fixed < 90112 ? (90112 - fixed) / per_row : 0;
    return ch < MK_GPU_ATTN_CHUNK ? ch : MK_GPU_ATTN_CHUNK;
}

/* Its work-area bytes; 0 where the kernel takes the serial path (every bucket below 8,
 * mk_task_attn_partial). */
static uint64_t attn_tiled_smem(int D, int G, int nb)
{
    if (nb < 8 || D % 8 || D < 8 || D > 256) return 0;
    int items = nb * G * (D / 8), per_row = nb * (2 * (2 * D + 16) + 4 * G);
    int rsl = 2 * items >= MK_GPU_THREADS ? 1 : MK_GPU_THREADS / items;
    if (rsl > 16) rsl = 16;
    for (int r = rsl; r >= 1 && attn_rows(attn_fixed(D, G, nb, rsl), per_row) < MK_GPU_ATTN_CHUNK;
         r /= 2)
        if (attn_rows(attn_fixed(D, G, nb, r), per_row) == MK_GPU_ATTN_CHUNK) rsl = r;
    int fixed = attn_fixed(D, G, nb, rsl), ch = attn_rows(fixed, per_row);
    return ch >= 1 ? (uint64_t)fixed + (uint64_t)ch * (uint64_t)per_row : 0;
}

/* Shared memory a task needs in this kernel (the work area layouts of kernels/tasks). */
static uint64_t task_smem(const struct mk_plan *p, const struct mk_task *t, int nb)
{
    const struct mk_config *c = &p->cfg;
    uint64_t misc = MK_GPU_SMEM_MISC, rows = t->r1 - t->r0;
    int G = c->n_heads / c->n_kv_heads;
    switch (t->op) {
    case MK_TASK_NORM_LINEAR:
    case MK_TASK_LINEAR_RESIDUAL:
    case MK_TASK_LOGITS:
        return misc + ((rows * nb + 3) & ~3ull) * 4 + (uint64_t)nb * 8 * 4;
    case MK_TASK_NORM_GATE_UP:
        return misc + ((2 * rows * nb + 3) & ~3ull) * 4 + (uint64_t)nb * 8 * 4;
    case MK_TASK_ATTN_PARTIAL: {
        uint64_t tiled = attn_tiled_smem(c->head_dim, G, nb);
        uint64_t serial = (uint64_t)2 * G * c->head_dim + (uint64_t)G * MK_GPU_ATTN_CHUNK + 3 * G;
        return misc + (tiled ? tiled : serial * 4);
    }
    default:
        return misc;
    }
}

static const char *task_op(const struct mk_task *t)
{
    return mk_task_op_name((enum mk_task_op)t->op);
}

/* Everything the kernel indexes must lie inside its tables and allocations. */
static enum mk_status check_plan(const struct mk_plan *p, int smem, int nb)
{
    const struct mk_config *c = &p->cfg;
    if (p->target.batch < 1 || p->target.batch > MK_GPU_MAX_BATCH)
        return mk_error(MK_ERR_UNSUPPORTED, "gpu: plan batch %d, expected 1..%d", p->target.batch,
                        MK_GPU_MAX_BATCH);
    if (c->head_dim / 2 > MK_GPU_MAX_HALF_DIM || c->head_dim % 2)
        return mk_error(MK_ERR_UNSUPPORTED, "gpu: head_dim %d, expected even and <= %d",
                        c->head_dim, 2 * MK_GPU_MAX_HALF_DIM);
    for (uint32_t i = 0; i < p->n_buffers; i++)
        if (p->buffers[i].offset + p->buffers[i].bytes > p->arena_bytes)
            return mk_error(MK_ERR_FORMAT, "gpu: buffer %s outside the arena", p->buffers[i].name);
    for (uint32_t i = 0; i < p->n_weights; i++)
        if (p->weights[i].offset + (uint64_t)p->weights[i].rows * p->weights[i].cols * 2 >
            p->weight_bytes)
            return mk_error(MK_ERR_FORMAT, "gpu: weight %s outside the weight allocation",
                            p->weights[i].name);
    for (uint32_t i = 0; i < p->n_tasks; i++) {
        const struct mk_task *t = &p->tasks[i];
        uint32_t ids[3] = {t->w0, t->w1, t->w2}, bufs[4] = {t->in0, t->in1, t->out, t->aux};
        if (t->op >= MK_TASK_OP_COUNT)
            return mk_error(MK_ERR_FORMAT, "gpu: task %u: op %u unknown", i, t->op);
        for (int k = 0; k < 3; k++)
            if (ids[k] != MK_NONE && ids[k] >= p->n_weights)
                return mk_error(MK_ERR_FORMAT, "gpu: task %u: weight id %u out of range", i, ids[k]);
        for (int k = 0; k < 4; k++)
            if (bufs[k] != MK_NONE && bufs[k] >= p->n_buffers)
                return mk_error(MK_ERR_FORMAT, "gpu: task %u: buffer id %u out of range", i, bufs[k]);
        if ((uint64_t)t->wait_first + t->n_wait > p->n_waits ||
            (uint64_t)t->signal_first + t->n_signal > p->n_signals)
            return mk_error(MK_ERR_FORMAT, "gpu: task %u: waits/signals out of range", i);
        bool linear = t->op == MK_TASK_NORM_LINEAR || t->op == MK_TASK_LINEAR_RESIDUAL ||
                      t->op == MK_TASK_NORM_GATE_UP || t->op == MK_TASK_LOGITS;
        if (linear) {
            uint32_t cols = p->weights[t->w1].cols;
            bool full = t->op == MK_TASK_LOGITS || t->op == MK_TASK_NORM_GATE_UP;
            uint32_t k0 = full ? 0 : t->k0, k1 = full ? cols : t->k1;
            bool aligned = p->weights[t->w1].offset % 16 == 0 &&
                           (t->op != MK_TASK_NORM_GATE_UP || p->weights[t->w2].offset % 16 == 0);
            if (!aligned || cols % 8 || k0 % 8 || k1 % 8 || k1 > cols || k0 >= k1 ||
                t->r1 > p->weights[t->w1].rows || t->r0 >= t->r1)
                return mk_error(MK_ERR_UNSUPPORTED, "gpu: task %u (%s layer %u): rows [%u,%u) "
                                "K [%u,%u) of %ux%u, expected 16-byte aligned rows and K bounds, cols "
                                "multiples of 8",
                                i, task_op(t), t->layer, t->r0, t->r1, k0, k1,
                                p->weights[t->w1].rows, cols);
        }
        uint64_t need = task_smem(p, t, nb) + (nb <= MK_GPU_RING_MAX_NB ? MK_GPU_RING_BYTES : 0);
        if (need > (uint64_t)smem)
            return mk_error(MK_ERR_UNSUPPORTED, "gpu: task %u (%s layer %u) needs %llu bytes of "
                            "shared memory, the kernel has %d", i, task_op(t), t->layer,
                            (unsigned long long)need, smem);
    }
    for (uint32_t i = 0; i < p->n_waits; i++)
        if (p->waits[i].event >= p->n_events)
            return mk_error(MK_ERR_FORMAT, "gpu: wait %u: event out of range", i);
    for (uint32_t i = 0; i < p->n_signals; i++)
        if (p->signals[i] >= p->n_events)
            return mk_error(MK_ERR_FORMAT, "gpu: signal %u: event out of range", i);
    uint32_t nt = p->prog_start[p->target.sm_count];
    for (uint32_t i = 0; i < nt; i++)
        if (p->prog_tasks[i] >= p->n_tasks)
            return mk_error(MK_ERR_FORMAT, "gpu: program entry %u: task out of range", i);
    return MK_OK;
}

/* Upload every non-view weight of the plan, converted to bf16, at its offset. */
enum mk_status mk_gpu_upload_weights(const struct mk_model *m, const struct mk_plan *p,
                                     char *dev)
{
    for (uint32_t i = 0; i < p->n_weights; i++) {
        const struct mk_plan_weight *w = &p->weights[i];
        if (w->view_parts) continue;
        const struct mk_tensor *t = mk_safetensors_find(m->st, w->name);
        if (!t) return mk_error(MK_ERR_FORMAT, "gpu: weight %s: not in the checkpoint", w->name);
        uint64_t n = (uint64_t)w->rows * w->cols;
        if ((uint64_t)mk_tensor_numel(t) != n)
            return mk_error(MK_ERR_FORMAT, "gpu: weight %s: expected %u x %u elements, got %lld",
                            w->name, w->rows, w->cols, (long long)mk_tensor_numel(t));
        if (t->dtype == MK_DTYPE_BF16) {
            MK_CUDA_CHECK(cudaMemcpy(dev + w->offset, t->data, n * 2, cudaMemcpyHostToDevice));
            continue;
        }
        uint16_t *tmp = malloc(n * 2);
        if (!tmp) return mk_error(MK_ERR_NOMEM, "gpu: weight %s: no host memory", w->name);
        mk_tensor_to_bf16(t, tmp);
        cudaError_t e = cudaMemcpy(dev + w->offset, tmp, n * 2, cudaMemcpyHostToDevice);
        free(tmp);
        MK_CUDA_CHECK(e);
    }
    return MK_OK;
}

static enum mk_status upload_tables(struct mk_gpu *g, const struct mk_plan *p)
{
    struct mk_gpu_args *a = &g->a;
    uint32_t nt = p->prog_start[p->target.sm_count];
    GPU_ALLOC(a->tasks, p->tasks, (size_t)p->n_tasks * sizeof *p->tasks);
    GPU_ALLOC(a->waits, p->waits, (size_t)p->n_waits * sizeof *p->waits);
    GPU_ALLOC(a->signals, p->signals, (size_t)p->n_signals * sizeof *p->signals);
    GPU_ALLOC(a->events, p->events, (size_t)p->n_events * sizeof *p->events);
    GPU_ALLOC(a->prog_start, p->prog_start, (size_t)(p->target.sm_count + 1) * 4);
    GPU_ALLOC(a->prog_tasks, p->prog_tasks, (size_t)nt * 4);
    uint64_t *off = calloc((size_t)p->n_buffers * 2 + (size_t)p->n_weights * 2 + 2, 8);
    if (!off) return mk_error(MK_ERR_NOMEM, "gpu: no host memory for the plan tables");
    uint64_t *bytes = off + p->n_buffers, *woff = bytes + p->n_buffers;
    uint32_t *wrc = (uint32_t *)(woff + p->n_weights);
    for (uint32_t i = 0; i < p->n_buffers; i++) {
        off[i] = p->buffers[i].offset;
        bytes[i] = p->buffers[i].bytes;
    }
    for (uint32_t i = 0; i < p->n_weights; i++) {
        woff[i] = p->weights[i].offset;
        wrc[i] = p->weights[i].rows;
        wrc[p->n_weights + i] = p->weights[i].cols;
    }
    enum mk_status s = MK_OK;
    void *d;
    if ((s = gpu_alloc(g, &d, off, (size_t)p->n_buffers * 8)) == MK_OK) {
        a->buf_off = d;
        if ((s = gpu_alloc(g, &d, bytes, (size_t)p->n_buffers * 8)) == MK_OK) {
            a->buf_bytes = d;
            if ((s = gpu_alloc(g, &d, woff, (size_t)p->n_weights * 8)) == MK_OK) {
                a->w_off = d;
                if ((s = gpu_alloc(g, &d, wrc, (size_t)p->n_weights * 8)) == MK_OK) {
                    a->w_rows = d;
                    a->w_cols = a->w_rows + p->n_weights;
                }
            }
        }
    }
    free(off);
    return s;
}

/* The prefill of PROMPT_PREFILL mode; a plan it cannot run (MK_ERR_UNSUPPORTED, e.g.
 * head_dim > 256) keeps the one-token-per-step path. */
static enum mk_status open_prefill(struct mk_gpu *g, const struct mk_plan *p,
                                   const struct mk_gpu_options *opt)
{
    g->logits_off = -1;
    for (uint32_t i = 0; i < p->n_buffers; i++)
        if (!strcmp(p->buffers[i].name, "logits") &&
            p->buffers[i].bytes >= (uint64_t)p->target.batch * p->cfg.vocab_size * 4)
            g->logits_off = (int64_t)p->buffers[i].offset;
    if (opt && opt->prompt_mode == MK_GPU_PROMPT_STEP) return MK_OK;
    if (opt && opt->prompt_mode != MK_GPU_PROMPT_PREFILL)
        return mk_error(MK_ERR_ARG, "gpu: prompt_mode %d, expected %d (prefill) or %d (step)",
                        opt->prompt_mode, MK_GPU_PROMPT_PREFILL, MK_GPU_PROMPT_STEP);
    int64_t t = (int64_t)p->target.batch * (p->target.max_ctx - 1);
    g->prefill_tokens = (int)(t < MK_GPU_PREFILL_TOKENS ? (t > 0 ? t : 1) : MK_GPU_PREFILL_TOKENS);
    enum mk_status s = mk_prefill_new(p, g->prefill_tokens, false, &g->prefill);
    if (s == MK_ERR_UNSUPPORTED) {
        g->prefill = NULL;
        return MK_OK;
    }
    return s;
}

static enum mk_status gpu_open_inner(struct mk_gpu *g, const struct mk_model *m,
                                     const struct mk_plan *p, const struct mk_gpu_options *opt)
{
    struct mk_gpu_info info;
    enum mk_status s = mk_gpu_query(&info);
    if (s != MK_OK) return s;
    if (info.cc_major < 9)
        return mk_error(MK_ERR_UNSUPPORTED, "gpu: %s is sm_%d%d; the kernel is built for sm_90a",
                        info.name, info.cc_major, info.cc_minor);
    if (!info.cooperative_launch)
        return mk_error(MK_ERR_UNSUPPORTED, "gpu: %s: no cooperative launch", info.name);
    if (p->target.sm_count < 1 || p->target.sm_count > info.sm_count)
        return mk_error(MK_ERR_UNSUPPORTED, "gpu: the plan is for %d SMs, %s has %d",
                        p->target.sm_count, info.name, info.sm_count);
    int B = p->target.batch, nb = mk_kernel_bucket(B > 0 ? B : 1);
    int smem = (int)info.smem_per_block_optin;
    if ((s = check_plan(p, smem, nb)) != MK_OK) return s;
    int per_sm = 0;
    cudaError_t e = mk_kernel_prepare(B, smem, &per_sm);
    if (e != cudaSuccess)
        return mk_error(MK_ERR_CUDA, "gpu: preparing the kernel: %s", cudaGetErrorString(e));
    if (per_sm < 1)
        return mk_error(MK_ERR_UNSUPPORTED, "gpu: the megakernel (%d threads, %d bytes of shared "
                        "memory) fits no SM of %s: refusing a launch that could hang",
                        MK_GPU_THREADS, smem, info.name);
    g->sm_count = info.sm_count;
    g->grid = p->target.sm_count;
    g->cfg = p->cfg;
    g->plan = *p;
    g->tasks = malloc((size_t)p->n_tasks * sizeof *p->tasks);
    if (!g->tasks) return mk_error(MK_ERR_NOMEM, "gpu: no host memory");
    memcpy(g->tasks, p->tasks, (size_t)p->n_tasks * sizeof *p->tasks);
    MK_CUDA_CHECK(cudaStreamCreateWithFlags(&g->stream, cudaStreamNonBlocking));

    struct mk_gpu_args *a = &g->a;
    a->cfg = p->cfg;
    a->single_task = MK_NONE;
    a->n_tasks = p->n_tasks;
    a->batch = B;
    a->max_ctx = p->target.max_ctx;
    a->smem_bytes = smem;
    mk_gpu_args_env(a, opt ? opt->wait_timeout_ms : 0);

    void *w;
    if ((s = gpu_alloc(g, &w, NULL, p->weight_bytes)) != MK_OK) return s;
    a->weights = w;
    if ((s = mk_gpu_upload_weights(m, p, w)) != MK_OK) return s;
    GPU_ALLOC(a->kv, NULL, p->kv_bytes);
    GPU_ALLOC(a->arena, NULL, p->arena_bytes);
    if ((s = upload_tables(g, p)) != MK_OK) return s;
    GPU_ALLOC(a->counters, NULL, (size_t)p->n_events * 4);
    int32_t *st;
    GPU_ALLOC(st, NULL, (size_t)4 * MK_GPU_MAX_BATCH * 4 + 16);
    a->tokens = st;
    a->pos = st + MK_GPU_MAX_BATCH;
    a->active = st + 2 * MK_GPU_MAX_BATCH;
    a->n_gen = st + 3 * MK_GPU_MAX_BATCH;
    a->abort_flag = (uint32_t *)(st + 4 * MK_GPU_MAX_BATCH);
    a->last_step = st + 4 * MK_GPU_MAX_BATCH + 1;
    a->n_alive = st + 4 * MK_GPU_MAX_BATCH + 2;
    GPU_ALLOC(a->seq, NULL, sizeof(struct mk_gpu_seq) * MK_GPU_MAX_BATCH);
    float inv[MK_GPU_MAX_HALF_DIM];
    mk_gpu_rope_inv_freq(&p->cfg, inv);
    GPU_ALLOC(a->inv_freq, inv, sizeof(float) * (size_t)(p->cfg.head_dim / 2));
    return open_prefill(g, p, opt);
}

enum mk_status mk_gpu_open(const struct mk_model *m, const struct mk_plan *plan,
                           const struct mk_gpu_options *opt, struct mk_gpu **out)
{
    struct mk_gpu *g = calloc(1, sizeof *g);
    if (!g) return mk_error(MK_ERR_NOMEM, "gpu: no host memory");
    enum mk_status s = gpu_open_inner(g, m, plan, opt);
    if (s != MK_OK) {
        mk_gpu_close(g);
        return s;
    }
    *out = g;
    return MK_OK;
}

void mk_gpu_close(struct mk_gpu *g)
{
    if (!g) return;
    mk_prefill_free(g->prefill);
    cudaFree(g->a.prof); /* the profile's records, when mk_gpu_profile_begin left them */
    for (int i = 0; i < g->n_dev; i++) cudaFree(g->dev_blocks[i]);
    if (g->stream) cudaStreamDestroy(g->stream);
    free(g->tasks);
    free(g);
}

/* Host-mapped memory of one launch. */
struct launch_mem {
    int32_t *prompt_dev;
    int32_t *ring_tok;
    uint32_t *ring_count;
    uint32_t *cancel;
    struct mk_gpu_diag *diag;
};

static void launch_mem_free(struct launch_mem *lm)
{
    if (lm->prompt_dev) cudaFree(lm->prompt_dev);
    if (lm->ring_tok) cudaFreeHost(lm->ring_tok);
    if (lm->ring_count) cudaFreeHost(lm->ring_count);
    if (lm->cancel) cudaFreeHost(lm->cancel);
    if (lm->diag) cudaFreeHost(lm->diag);
}

static enum mk_status check_requests(const struct mk_gpu *g, const struct mk_gpu_request *req,
                                     int n)
{
    if (n < 1 || n > g->a.batch)
        return mk_error(MK_ERR_ARG, "gpu: %d requests, the plan runs 1..%d", n, g->a.batch);
    for (int i = 0; i < n; i++) {
        const struct mk_gpu_request *r = &req[i];
        if (r->prompt_len < 1 || r->max_new < 1 || r->n_stop < 0 || r->n_stop > MK_GPU_MAX_STOP)
            return mk_error(MK_ERR_ARG, "gpu: request %d: prompt_len %d, max_new %d, n_stop %d; "
                            "expected >= 1, >= 1, 0..%d", i, r->prompt_len, r->max_new,
                            r->n_stop, MK_GPU_MAX_STOP);
        if (r->prompt_len >= g->a.max_ctx)
            return mk_error(MK_ERR_LIMIT, "gpu: request %d: prompt of %d tokens, the plan's "
                            "context holds %d", i, r->prompt_len, g->a.max_ctx);
        for (int k = 0; k < r->prompt_len; k++)
            if (r->prompt[k] < 0 || r->prompt[k] >= g->cfg.vocab_size)
                return mk_error(MK_ERR_ARG, "gpu: request %d: token %d at %d outside [0, %d)", i,
                                r->prompt[k], k, g->cfg.vocab_size);
    }
    return MK_OK;
}

static bool is_stop(const struct mk_gpu_seq *q, int32_t tok)
{
    for (int k = 0; k < q->n_stop; k++)
        if (q->stop[k] == tok) return true;
    return false;
}

/* Per-sequence device state for the requests (padding sequences inactive). first: NULL
 * (the kernel feeds the prompts one per step), or the prefill's first token of each
 * request: the state after the prompt (token.cuh's SAMPLE rules applied to that token). */
static enum mk_status set_requests(struct mk_gpu *g, const struct mk_gpu_request *req, int n,
                                   const int32_t *first, struct launch_mem *lm, int *max_steps,
                                   int *ring_cap)
{
    int B = g->a.batch, cap = 1, rcap = 1, steps = 0;
    for (int i = 0; i < n; i++) {
        cap = req[i].prompt_len > cap ? req[i].prompt_len : cap;
        rcap = req[i].max_new > rcap ? req[i].max_new : rcap;
        int st = req[i].prompt_len + req[i].max_new - 1;
        steps = st > steps ? st : steps;
    }
    if (first) cap = 1; /* the kernel never reads the prompts */
    struct mk_gpu_seq seq[MK_GPU_MAX_BATCH];
    int32_t state[4 * MK_GPU_MAX_BATCH + 3];
    int32_t *prompt = calloc((size_t)B * cap, 4);
    if (!prompt) return mk_error(MK_ERR_NOMEM, "gpu: no host memory");
    memset(seq, 0, sizeof seq);
    memset(state, 0, sizeof state);
    for (int i = 0; i < n; i++) {
        if (!first) memcpy(prompt + (size_t)i * cap, req[i].prompt, (size_t)req[i].prompt_len * 4);
        seq[i].prompt_len = req[i].prompt_len;
        seq[i].max_new = req[i].max_new;
        seq[i].temperature = req[i].sampling.temperature;
        seq[i].top_k = req[i].sampling.top_k;
        seq[i].top_p = req[i].sampling.top_p;
        seq[i].seed = req[i].sampling.seed;
        for (int k = 0; k < req[i].n_stop; k++) seq[i].stop[seq[i].n_stop++] = req[i].stop[k];
        for (int k = 0; !req[i].ignore_eos && k < g->cfg.n_eos; k++)
            seq[i].stop[seq[i].n_stop++] = g->cfg.eos_token_ids[k];
        state[i] = req[i].prompt[0];           /* tokens */
        state[2 * MK_GPU_MAX_BATCH + i] = 1;   /* active */
    }
    for (int i = n; i < B; i++) seq[i].prompt_len = seq[i].max_new = 1;
    state[4 * MK_GPU_MAX_BATCH] = 0;           /* abort */
    state[4 * MK_GPU_MAX_BATCH + 1] = INT_MAX; /* last_step */
    state[4 * MK_GPU_MAX_BATCH + 2] = n;       /* n_alive */
    if (first) {
        int alive = 0;
        steps = 0;
        for (int i = 0; i < n; i++) {
            bool on = !is_stop(&seq[i], first[i]) && req[i].max_new > 1 &&
                      req[i].prompt_len < g->a.max_ctx;
            state[i] = first[i];                             /* tokens */
            state[MK_GPU_MAX_BATCH + i] = req[i].prompt_len; /* pos */
            state[2 * MK_GPU_MAX_BATCH + i] = on;            /* active */
            state[3 * MK_GPU_MAX_BATCH + i] = 1;             /* n_gen */
            alive += on;
            if (on && req[i].max_new - 1 > steps) steps = req[i].max_new - 1;
        }
        state[4 * MK_GPU_MAX_BATCH + 2] = alive;
    }
    cudaError_t e = cudaMalloc((void **)&lm->prompt_dev, (size_t)B * cap * 4);
    if (e == cudaSuccess)
        e = cudaMemcpy(lm->prompt_dev, prompt, (size_t)B * cap * 4, cudaMemcpyHostToDevice);
    free(prompt);
    MK_CUDA_CHECK(e);
    MK_CUDA_CHECK(cudaMemcpy((void *)g->a.seq, seq, sizeof seq, cudaMemcpyHostToDevice));
    MK_CUDA_CHECK(cudaMemcpy(g->a.tokens, state, sizeof state, cudaMemcpyHostToDevice));
    MK_CUDA_CHECK(cudaMemset(g->a.counters, 0, (size_t)g->plan.n_events * 4));
    MK_CUDA_CHECK(cudaHostAlloc((void **)&lm->ring_tok, (size_t)B * rcap * 4, cudaHostAllocMapped));
    MK_CUDA_CHECK(cudaHostAlloc((void **)&lm->ring_count, (size_t)B * 4, cudaHostAllocMapped));
    MK_CUDA_CHECK(cudaHostAlloc((void **)&lm->cancel, (size_t)B * 4, cudaHostAllocMapped));
    MK_CUDA_CHECK(cudaHostAlloc((void **)&lm->diag, sizeof *lm->diag, cudaHostAllocMapped));
    memset(lm->ring_count, 0, (size_t)B * 4);
    for (int i = 0; first && i < n; i++) {
        lm->ring_tok[(size_t)i * rcap] = first[i];
        lm->ring_count[i] = 1;
    }
    memset(lm->cancel, 0, (size_t)B * 4);
    memset(lm->diag, 0, sizeof *lm->diag);
    g->a.prompt = lm->prompt_dev;
    g->a.prompt_cap = cap;
    g->a.ring_cap = rcap;
    MK_CUDA_CHECK(cudaHostGetDevicePointer((void **)&g->a.ring_tok, lm->ring_tok, 0));
    MK_CUDA_CHECK(cudaHostGetDevicePointer((void **)&g->a.ring_count, lm->ring_count, 0));
    MK_CUDA_CHECK(cudaHostGetDevicePointer((void **)&g->a.diag, lm->diag, 0));
    uint32_t *cancel_dev;
    MK_CUDA_CHECK(cudaHostGetDevicePointer((void **)&cancel_dev, lm->cancel, 0));
    g->a.cancel = cancel_dev;
    *max_steps = steps < g->a.max_ctx ? steps : g->a.max_ctx;
    *ring_cap = rcap;
    return MK_OK;
}

/* Deliver the tokens published since the last look; returns how many. A request whose
 * callback said stop gets no further token and its cancel flag is raised. */
static int drain_ring(const struct launch_mem *lm, int n, int rcap, int *seen,
                      mk_gpu_token_fn on_token, void *ctx, int32_t **out_tokens)
{
    int got = 0;
    for (int b = 0; b < n; b++) {
        int c = (int)__atomic_load_n(&lm->ring_count[b], __ATOMIC_ACQUIRE);
        for (; seen[b] < c && seen[b] < rcap && !lm->cancel[b]; seen[b]++, got++) {
            int32_t tok = lm->ring_tok[(size_t)b * rcap + seen[b]];
            if (out_tokens && out_tokens[b]) out_tokens[b][seen[b]] = tok;
            if (on_token && !on_token(ctx, b, seen[b], tok))
                __atomic_store_n(&lm->cancel[b], 1u, __ATOMIC_RELEASE);
        }
    }
    return got;
}

static enum mk_status timeout_report(const struct mk_gpu *g, const struct mk_gpu_diag *d)
{
    const struct mk_task *t = d->task < g->plan.n_tasks ? &g->tasks[d->task] : NULL;
    return mk_error(MK_ERR_TIMEOUT, "megakernel: SM %u, task %u (%s, layer %d), step %u: wait on "
                    "event %u expired after %llu ms: expected >= %llu, saw %llu",
                    d->sm, d->task, t ? task_op(t) : "?", t && t->layer != 0xffff ? t->layer : -1,
                    d->step, d->event, (unsigned long long)(g->a.timeout_ns / 1000000),
                    (unsigned long long)d->expected, (unsigned long long)d->seen);
}

/* Deliver what the ring holds already (the prefill's first tokens), then launch unless
 * max_steps is 0 and stream the rest. Token times count from t0. */
static enum mk_status run_launch(struct mk_gpu *g, struct launch_mem *lm, int n, int rcap,
                                 double t0, mk_gpu_token_fn on_token, void *ctx,
                                 int32_t **out_tokens, int *out_counts, struct mk_gpu_stats *st)
{
    int seen[MK_GPU_MAX_BATCH] = {0};
    int got0 = drain_ring(lm, n, rcap, seen, on_token, ctx, out_tokens);
    if (got0) {
        st->first_token_ms = st->last_token_ms = mk_now_ms() - t0;
        st->tokens = got0;
    }
    if (g->a.max_steps == 0) {
        for (int b = 0; out_counts && b < n; b++) out_counts[b] = seen[b];
        return MK_OK;
    }
    double tl = mk_now_ms();
    cudaError_t e = mk_kernel_launch(&g->a, g->grid, g->stream);
    if (e != cudaSuccess)
        return mk_error(MK_ERR_CUDA, "gpu: cooperative launch of %d CTAs: %s", g->grid,
                        cudaGetErrorString(e));
    struct timespec nap = {0, 2000};
    for (;;) {
        cudaError_t q = cudaStreamQuery(g->stream);
        int got = drain_ring(lm, n, rcap, seen, on_token, ctx, out_tokens);
        if (got) {
            double t = mk_now_ms() - t0;
            if (st->tokens == 0) st->first_token_ms = t;
            st->last_token_ms = t;
            st->tokens += got;
        }
        if (q == cudaErrorNotReady) {
            if (!got) nanosleep(&nap, NULL);
            continue;
        }
        if (q != cudaSuccess && __atomic_load_n(&lm->diag->flag, __ATOMIC_ACQUIRE) == 2)
            return mk_error(MK_ERR_CUDA, "gpu: megakernel stopped: SM %u, task %u: the weight "
                            "ring's chunk %llu never landed in %llu ms (%llu issued): %s",
                            lm->diag->sm, lm->diag->task, (unsigned long long)lm->diag->expected,
                            (unsigned long long)(g->a.timeout_ns / 1000000),
                            (unsigned long long)lm->diag->seen, cudaGetErrorString(q));
        if (q != cudaSuccess)
            return mk_error(MK_ERR_CUDA, "gpu: megakernel failed: %s (%s)", cudaGetErrorName(q),
                            cudaGetErrorString(q));
        break;
    }
    double t_end = mk_now_ms();
    st->kernel_ms = t_end - tl;
    int got = drain_ring(lm, n, rcap, seen, on_token, ctx, out_tokens);
    if (got) {
        st->last_token_ms = t_end - t0;
        if (st->tokens == 0) st->first_token_ms = t_end - t0;
        st->tokens += got;
    }
    for (int b = 0; out_counts && b < n; b++) out_counts[b] = seen[b];
    if (__atomic_load_n(&lm->diag->flag, __ATOMIC_ACQUIRE) == 1) return timeout_report(g, lm->diag);
    int32_t last = 0;
    MK_CUDA_CHECK(cudaMemcpy(&last, g->a.last_step, 4, cudaMemcpyDeviceToHost));
    st->steps = last == INT_MAX ? g->a.max_steps : last + 1;
    return MK_OK;
}

/* The prompts of req[0..n) through the prefill, packed into calls of at most
 * g->prefill_tokens tokens (a longer prompt continues in the next call at pos0 = the
 * tokens already in the cache): first[i] = request i's greedy first token, logits[i][V]
 * the logits it came from. */
static enum mk_status run_prefill(struct mk_gpu *g, const struct mk_gpu_request *req, int n,
                                  int32_t *first, float *logits)
{
    const size_t V = (size_t)g->cfg.vocab_size;
    struct mk_prefill_dev dev = {.weights = g->a.weights, .kv = g->a.kv, .stream = g->stream};
    struct mk_prefill_seq seqs[MK_GPU_MAX_BATCH];
    int32_t next[MK_GPU_MAX_BATCH];
    int done[MK_GPU_MAX_BATCH] = {0};
    float *lg = malloc(sizeof(float) * V * (size_t)n);
    if (!lg) return mk_error(MK_ERR_NOMEM, "gpu: no host memory for the prefill logits");
    enum mk_status s = MK_OK;
    for (int i = 0; i < n && s == MK_OK;) {
        int ns = 0, used = 0;
        for (int j = i; j < n && used < g->prefill_tokens; j++) {
            int left = req[j].prompt_len - done[j], room = g->prefill_tokens - used;
            int take = left < room ? left : room;
            seqs[ns++] = (struct mk_prefill_seq){.tokens = req[j].prompt + done[j], .n = take,
                                                 .slot = j, .pos0 = done[j]};
            used += take;
        }
        s = mk_prefill_run(g->prefill, &dev, seqs, ns, false, lg, next);
        for (int k = 0; s == MK_OK && k < ns; k++) {
            int j = seqs[k].slot;
            done[j] += seqs[k].n;
            if (done[j] < req[j].prompt_len) continue;
            first[j] = next[k];
            memcpy(logits + (size_t)j * V, lg + (size_t)k * V, sizeof(float) * V);
        }
        while (i < n && done[i] == req[i].prompt_len) i++;
    }
    free(lg);
    return s;
}

/* Greedy batches go through the prefill; a sampled request sends its whole batch down
 * the one-token-per-step path (the kernel's draws then start at the prompt's logits). */
static bool use_prefill(const struct mk_gpu *g, const struct mk_gpu_request *req, int n)
{
    if (!g->prefill) return false;
    for (int i = 0; i < n; i++)
        if (req[i].sampling.temperature > 0.0f) return false;
    return true;
}

/* With no launch to follow, the arena's logits rows become the prefill's (rows of
 * padding sequences zero), as a launch would have left them. */
static enum mk_status put_logits(struct mk_gpu *g, const float *logits)
{
    if (g->logits_off < 0) return MK_OK;
    MK_CUDA_CHECK(cudaMemcpy(g->a.arena + g->logits_off, logits,
                             sizeof(float) * (size_t)g->a.batch * g->cfg.vocab_size,
                             cudaMemcpyHostToDevice));
    return MK_OK;
}

enum mk_status mk_gpu_generate(struct mk_gpu *g, const struct mk_gpu_request *req, int n,
                               mk_gpu_token_fn on_token, void *ctx, int32_t **out_tokens,
                               int *out_counts, struct mk_gpu_stats *stats)
{
    enum mk_status s = check_requests(g, req, n);
    if (s != MK_OK) return s;
    struct launch_mem lm = {0};
    struct mk_gpu_stats st = {0};
    int steps = 0, rcap = 0;
    double t0 = mk_now_ms();
    int32_t first[MK_GPU_MAX_BATCH];
    float *logits = NULL;
    bool pf = use_prefill(g, req, n);
    if (pf) {
        logits = calloc((size_t)g->a.batch * g->cfg.vocab_size, sizeof(float));
        if (!logits) return mk_error(MK_ERR_NOMEM, "gpu: no host memory for the prefill logits");
        s = run_prefill(g, req, n, first, logits);
    }
    if (s == MK_OK) s = set_requests(g, req, n, pf ? first : NULL, &lm, &steps, &rcap);
    if (s == MK_OK && pf && steps == 0) s = put_logits(g, logits);
    free(logits);
    if (s == MK_OK) {
        g->a.max_steps = steps;
        s = run_launch(g, &lm, n, rcap, t0, on_token, ctx, out_tokens, out_counts, &st);
    }
    launch_mem_free(&lm);
    g->a.ring_tok = NULL;
    g->a.ring_count = NULL;
    g->a.diag = NULL;
    g->a.prompt = NULL;
    if (s == MK_OK && stats) *stats = st;
    return s;
}

enum mk_status mk_gpu_arena_read(struct mk_gpu *g, void *dst)
{
    MK_CUDA_CHECK(cudaMemcpy(dst, g->a.arena, g->plan.arena_bytes, cudaMemcpyDeviceToHost));
    return MK_OK;
}

enum mk_status mk_gpu_arena_write(struct mk_gpu *g, const void *src)
{
    MK_CUDA_CHECK(cudaMemcpy(g->a.arena, src, g->plan.arena_bytes, cudaMemcpyHostToDevice));
    return MK_OK;
}

enum mk_status mk_gpu_kv_read(struct mk_gpu *g, void *dst)
{
    MK_CUDA_CHECK(cudaMemcpy(dst, g->a.kv, g->plan.kv_bytes, cudaMemcpyDeviceToHost));
    return MK_OK;
}

enum mk_status mk_gpu_kv_write(struct mk_gpu *g, const void *src)
{
    MK_CUDA_CHECK(cudaMemcpy(g->a.kv, src, g->plan.kv_bytes, cudaMemcpyHostToDevice));
    return MK_OK;
}

enum mk_status mk_gpu_set_seq_state(struct mk_gpu *g, const int32_t *tokens, const int32_t *pos)
{
    int B = g->a.batch;
    int32_t ones[MK_GPU_MAX_BATCH];
    for (int i = 0; i < B; i++) ones[i] = 1;
    MK_CUDA_CHECK(cudaMemcpy(g->a.tokens, tokens, (size_t)B * 4, cudaMemcpyHostToDevice));
    MK_CUDA_CHECK(cudaMemcpy(g->a.pos, pos, (size_t)B * 4, cudaMemcpyHostToDevice));
    MK_CUDA_CHECK(cudaMemcpy(g->a.active, ones, (size_t)B * 4, cudaMemcpyHostToDevice));
    return MK_OK;
}

enum mk_status mk_gpu_run_task(struct mk_gpu *g, uint32_t task, int step)
{
    if (task >= g->plan.n_tasks)
        return mk_error(MK_ERR_ARG, "gpu: task %u of %u", task, g->plan.n_tasks);
    if (g->tasks[task].op == MK_TASK_SAMPLE)
        return mk_error(MK_ERR_ARG, "gpu: task %u: SAMPLE runs only inside a launch", task);
    MK_CUDA_CHECK(mk_kernel_launch_task(&g->a, task, step, g->stream));
    MK_CUDA_CHECK(cudaStreamSynchronize(g->stream));
    return MK_OK;
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

static enum mk_status stream_time(void *buf, uint64_t bytes, int reps, int grid, uint32_t *sink,
                                  double *gbps)
{
    cudaEvent_t e0, e1;
    MK_CUDA_CHECK(cudaEventCreate(&e0));
    MK_CUDA_CHECK(cudaEventCreate(&e1));
    double ms[64];
    reps = reps < 1 ? 1 : reps > 64 ? 64 : reps;
    MK_CUDA_CHECK(mk_kernel_stream(buf, bytes, sink, grid, 0)); /* warm-up */
    for (int i = 0; i < reps; i++) {
        MK_CUDA_CHECK(cudaEventRecord(e0, 0));
        MK_CUDA_CHECK(mk_kernel_stream(buf, bytes, sink, grid, 0));
        MK_CUDA_CHECK(cudaEventRecord(e1, 0));
        MK_CUDA_CHECK(cudaEventSynchronize(e1));
        float f = 0;
        MK_CUDA_CHECK(cudaEventElapsedTime(&f, e0, e1));
        ms[i] = f;
    }
    qsort(ms, (size_t)reps, sizeof ms[0], cmp_double);
    *gbps = (double)bytes / (ms[reps / 2] * 1e-3) / 1e9;
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    return MK_OK;
}

enum mk_status mk_gpu_stream_bench(uint64_t bytes, int reps, double *gbps_1cta,
                                   double *gbps_4cta)
{
    struct mk_gpu_info info;
    enum mk_status s = mk_gpu_query(&info);
    if (s != MK_OK) return s;
    bytes &= ~(uint64_t)15;
    void *buf = NULL;
    uint32_t *sink = NULL;
    if (cudaMalloc(&buf, bytes) != cudaSuccess || cudaMalloc((void **)&sink, 16) != cudaSuccess) {
        cudaGetLastError();
        cudaFree(buf);
        return mk_error(MK_ERR_NOMEM, "gpu: stream bench: cudaMalloc of %llu bytes failed",
                        (unsigned long long)bytes);
    }
    s = MK_OK;
    if (cudaMemset(buf, 0x3b, bytes) != cudaSuccess)
        s = mk_error(MK_ERR_CUDA, "gpu: stream bench: cudaMemset failed");
    if (s == MK_OK) s = stream_time(buf, bytes, reps, info.sm_count, sink, gbps_1cta);
    if (s == MK_OK) s = stream_time(buf, bytes, reps, 4 * info.sm_count, sink, gbps_4cta);
    cudaFree(buf);
    cudaFree(sink);
    return s;
}

/* ---- the per-task profile: g->a.prof holds [prof_steps][n_tasks][4] uint64 records
 * (mk/profile.h), allocated by begin, freed by read or close; NULL: off. */

enum mk_status mk_gpu_profile_begin(struct mk_gpu *g, int steps)
{
    if (steps < 1)
        return mk_error(MK_ERR_ARG, "gpu: profile of %d steps, expected >= 1", steps);
    cudaFree(g->a.prof);
    g->a.prof = NULL;
    g->a.prof_steps = 0;
    size_t bytes = (size_t)steps * g->plan.n_tasks * MK_PROF_FIELDS * sizeof(uint64_t);
    uint64_t *d = NULL;
    if (cudaMalloc((void **)&d, bytes) != cudaSuccess) {
        cudaGetLastError();
        return mk_error(MK_ERR_NOMEM, "gpu: profile: cudaMalloc of %zu bytes failed", bytes);
    }
    g->a.prof = d;
    MK_CUDA_CHECK(cudaMemset(d, 0, bytes));
    g->a.prof_steps = steps;
    g->a.n_tasks = g->plan.n_tasks;
    return MK_OK;
}

enum mk_status mk_gpu_profile_read(struct mk_gpu *g, uint64_t *dst, int steps)
{
    if (!g->a.prof || steps < 1 || steps > g->a.prof_steps)
        return mk_error(MK_ERR_ARG, "gpu: profile: read of %d steps, the profile %s %d",
                        steps, g->a.prof ? "holds" : "is off: mk_gpu_profile_begin, then",
                        g->a.prof_steps);
    uint64_t *d = g->a.prof;
    g->a.prof = NULL;
    g->a.prof_steps = 0;
    cudaError_t e = cudaMemcpy(dst, d, (size_t)steps * g->plan.n_tasks * MK_PROF_FIELDS *
                               sizeof(uint64_t), cudaMemcpyDeviceToHost);
    cudaFree(d);
    MK_CUDA_CHECK(e);
    return MK_OK;
}
