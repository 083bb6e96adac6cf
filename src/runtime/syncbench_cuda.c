/* The host side of the cross-SM synchronization benchmark (kernels/syncbench.cu).
 *
 * Device memory, one allocation, 256-byte aligned pieces:
 *   counters  [G * MK_SYNC_STRIDE] u32, zeroed (the chain's per-CTA counters; the level
 *             tests use counters[0])
 *   abort     u32 = 0, last_step i32 = INT32_MAX (no wait stops early), diag
 *   stamps    [samples + 1] u64, smid [G] u32, errors u32
 *   rows      [2][MK_SYNC_ROW_FLOATS] f32, all bits set (NaN: a stale read never passes) */
#include "mk/runtime.h"
#include "runtime/cuda_check.h"
#include "runtime/gpu_abi.h"
#include "runtime/syncbench_abi.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* kernels/syncbench.cu */
cudaError_t mk_kernel_sync_bench(int test, const struct mk_gpu_args *a,
                                 const struct mk_sync_bench_args *p, int grid, int smem_bytes,
                                 cudaStream_t s);

enum {
    SYNC_LEVELS_PER_SAMPLE = 100, /* levels per timed sample (a level is ~1 us) */
    SYNC_MAX_SAMPLES = 10000,
    SYNC_TIMEOUT_MS = 1000,
};

struct sync_mem {
    char *base;
    uint32_t *counters, *abort_flag, *smid, *errors;
    int32_t *last_step;
    struct mk_gpu_diag *diag;
    uint64_t *stamps;
    float *rows;
};

static size_t up256(size_t n) { return (n + 255) & ~(size_t)255; }

static enum mk_status sync_alloc(struct sync_mem *m, int grid, int samples)
{
    size_t off[8], n = 0;
    const size_t sizes[8] = {
        (size_t)grid * MK_SYNC_STRIDE * 4, 4, 4, sizeof(struct mk_gpu_diag),
        (size_t)(samples + 1) * 8, (size_t)grid * 4, 4, 2 * MK_SYNC_ROW_FLOATS * 4};
    for (int i = 0; i < 8; i++) {
        off[i] = n;
        n += up256(sizes[i]);
    }
    void *p = NULL;
    if (cudaMalloc(&p, n) != cudaSuccess) {
        cudaGetLastError();
        return mk_error(MK_ERR_NOMEM, "gpu: sync bench: cudaMalloc of %zu bytes failed", n);
    }
    char *b = p;
    *m = (struct sync_mem){.base = b, .counters = (uint32_t *)(b + off[0]),
                           .abort_flag = (uint32_t *)(b + off[1]), .last_step = (int32_t *)(b + off[2]),
                           .diag = (struct mk_gpu_diag *)(b + off[3]), .stamps = (uint64_t *)(b + off[4]),
                           .smid = (uint32_t *)(b + off[5]), .errors = (uint32_t *)(b + off[6]),
                           .rows = (float *)(b + off[7])};
    int32_t never = INT32_MAX;
    MK_CUDA_CHECK(cudaMemset(b, 0, off[7]));
    MK_CUDA_CHECK(cudaMemset(m->rows, 0xff, sizes[7]));
    MK_CUDA_CHECK(cudaMemcpy(m->last_step, &never, 4, cudaMemcpyHostToDevice));
    return MK_OK;
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

static int distinct(uint32_t *v, int n)
{
    int k = 0;
    for (int i = 0; i < n; i++) {
        int seen = 0;
        for (int j = 0; j < i && !seen; j++) seen = v[j] == v[i];
        k += !seen;
    }
    return k;
}

/* One launch; the samples and the checks of what the kernel left behind. */
static enum mk_status sync_run(const struct sync_mem *m, enum mk_sync_test test, int grid,
                               int smem, const struct mk_sync_bench_args *p, float *launch_ms)
{
    struct mk_gpu_args a;
    memset(&a, 0, sizeof a);
    a.counters = m->counters;
    a.abort_flag = m->abort_flag;
    a.last_step = m->last_step;
    a.diag = m->diag;
    a.timeout_ns = (uint64_t)SYNC_TIMEOUT_MS * 1000000u;
    cudaEvent_t e0, e1;
    MK_CUDA_CHECK(cudaEventCreate(&e0));
    MK_CUDA_CHECK(cudaEventCreate(&e1));
    MK_CUDA_CHECK(cudaEventRecord(e0, 0));
    MK_CUDA_CHECK(mk_kernel_sync_bench((int)test, &a, p, grid, smem, 0));
    MK_CUDA_CHECK(cudaEventRecord(e1, 0));
    MK_CUDA_CHECK(cudaEventSynchronize(e1));
    MK_CUDA_CHECK(cudaEventElapsedTime(launch_ms, e0, e1));
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    struct mk_gpu_diag d;
    uint32_t errors = 0;
    MK_CUDA_CHECK(cudaMemcpy(&d, m->diag, sizeof d, cudaMemcpyDeviceToHost));
    MK_CUDA_CHECK(cudaMemcpy(&errors, m->errors, 4, cudaMemcpyDeviceToHost));
    if (d.flag)
        return mk_error(MK_ERR_TIMEOUT, "gpu: sync bench: CTA %u, unit %u: wait on counter %u "
                        "expired after %d ms: expected >= %llu, saw %llu", d.sm, d.step, d.event,
                        SYNC_TIMEOUT_MS, (unsigned long long)d.expected, (unsigned long long)d.seen);
    if (errors)
        return mk_error(MK_ERR_INTERNAL, "gpu: sync bench: %u reads of the 4 KiB row after the "
                        "wait saw another level's data (sync.cuh ordering broken)", errors);
    return MK_OK;
}

enum mk_status mk_gpu_sync_bench(enum mk_sync_test test, int samples, struct mk_sync_result *out)
{
    if ((int)test < 0 || test >= MK_SYNC_TESTS || samples < 1 || samples > SYNC_MAX_SAMPLES)
        return mk_error(MK_ERR_ARG, "gpu: sync bench: test %d, samples %d: expected 0..%d, "
                        "1..%d", (int)test, samples, MK_SYNC_TESTS - 1, SYNC_MAX_SAMPLES);
    struct mk_gpu_info info;
    enum mk_status s = mk_gpu_query(&info);
    if (s != MK_OK) return s;
    if (!info.cooperative_launch)
        return mk_error(MK_ERR_UNSUPPORTED, "gpu: sync bench: %s has no cooperative launch", info.name);
    const int grid = info.sm_count;
    /* more than half an SM's shared memory: one CTA per SM, as the megakernel runs */
    size_t smem = info.smem_per_sm / 2 + 1024;
    if (smem > info.smem_per_block_optin) smem = info.smem_per_block_optin;
    struct sync_mem m = {0};
    s = sync_alloc(&m, grid, samples);
    const int per = test == MK_SYNC_CHAIN ? 1 : SYNC_LEVELS_PER_SAMPLE;
    struct mk_sync_bench_args p = {.per_sample = per, .samples = samples, .stamps = m.stamps,
                                   .smid = m.smid, .errors = m.errors, .rows = m.rows};
    float launch_ms = 0;
    uint64_t *st = malloc(sizeof *st * (size_t)(samples + 1));
    double *ns = malloc(sizeof *ns * (size_t)samples);
    uint32_t *sm = malloc(sizeof *sm * (size_t)grid);
    if (s == MK_OK && (!st || !ns || !sm)) s = mk_error(MK_ERR_NOMEM, "gpu: sync bench: no host memory");
    if (s == MK_OK) s = sync_run(&m, test, grid, (int)smem, &p, &launch_ms);
    if (s == MK_OK && cudaMemcpy(st, m.stamps, sizeof *st * (size_t)(samples + 1),
                                 cudaMemcpyDeviceToHost) != cudaSuccess)
        s = mk_error(MK_ERR_CUDA, "gpu: sync bench: copy of the time stamps failed");
    if (s == MK_OK && cudaMemcpy(sm, m.smid, sizeof *sm * (size_t)grid, cudaMemcpyDeviceToHost) != cudaSuccess)
        s = mk_error(MK_ERR_CUDA, "gpu: sync bench: copy of the SM ids failed");
    if (s == MK_OK) {
        /* hops per sample: a chain round is G hops; a level is one level */
        double div = (double)per * (test == MK_SYNC_CHAIN ? grid : 1);
        for (int k = 0; k < samples; k++) ns[k] = (double)(st[k + 1] - st[k]) / div;
        qsort(ns, (size_t)samples, sizeof *ns, cmp_double);
        int k90 = (int)(0.9 * samples + 0.999999) - 1; /* nearest rank */
        double units = ((double)(samples + 1) * per + 1) * (test == MK_SYNC_CHAIN ? grid : 1);
        *out = (struct mk_sync_result){.median_ns = ns[samples / 2], .p90_ns = ns[k90 < 0 ? 0 : k90],
                                       .launch_ns = launch_ms * 1e6 / units, .samples = samples,
                                       .per_sample = per, .ctas = grid, .sms = distinct(sm, grid)};
    }
    free(st);
    free(ns);
    free(sm);
    cudaFree(m.base);
    return s;
}
