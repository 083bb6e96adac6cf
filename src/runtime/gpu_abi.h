/* The bytes shared by the host runtime (gpu_cuda.c) and the megakernel (kernels/): the
 * kernel's argument block, per-sequence request state and the stuck-wait record.
 * Plain C structs, the same layout in C and CUDA C++. */
#ifndef MK_GPU_ABI_H
#define MK_GPU_ABI_H

#include "mk/plan.h"

#ifdef __cplusplus
extern "C" {
#endif

enum {
    MK_GPU_MAX_BATCH = 16,
    MK_GPU_MAX_STOP = 16,       /* stop token ids per sequence (besides EOS) */
    MK_GPU_MAX_HALF_DIM = 256,  /* head_dim / 2 at most (RoPE frequency table) */
    MK_GPU_THREADS = 512,       /* threads per CTA the kernel is compiled for */
    MK_GPU_SMEM_MISC = 8192,    /* shared-memory bytes every task reserves (kernels/tasks) */
    MK_GPU_ATTN_CHUNK = 64,     /* positions per attention tile */
    MK_GPU_RING_STAGES = 4,     /* weight ring (kernels/tasks/ring.cuh): slots ... */
    MK_GPU_RING_STAGE = 32768,  /* ... of this many bytes, at the end of shared memory */
    MK_GPU_RING_BYTES = MK_GPU_RING_STAGES * MK_GPU_RING_STAGE,
    MK_GPU_RING_MAX_NB = 4,     /* batch buckets above this have no ring */
};

/* One sequence of the batch, set by the host before the launch (device memory). */
struct mk_gpu_seq {
    int32_t prompt_len;         /* tokens in prompt[b][...], >= 1 */
    int32_t max_new;            /* generated tokens at most, >= 1 */
    int32_t n_stop;             /* stop ids in stop[] (EOS ids included by the host) */
    int32_t stop[MK_GPU_MAX_STOP + MK_MAX_EOS];
    float temperature;          /* <= 0: greedy; else mk/sample.h's order of operations */
    int32_t top_k;
    float top_p;
    int32_t pad;
    uint64_t seed;
};

/* Written by the first wait that expired (host-mapped, read after the launch). */
struct mk_gpu_diag {
    uint32_t flag;              /* 0: nothing; 1: an event wait timed out; 2: a weight-ring
                                   copy never landed (expected = its stream chunk, seen =
                                   chunks issued; the kernel trapped) */
    uint32_t sm, task, event;
    uint32_t step, pad;
    uint64_t expected, seen;
};

/* Everything the persistent kernel reads. Device pointers unless said otherwise. */
struct mk_gpu_args {
    /* plan tables (copies of struct mk_plan's arrays) */
    const struct mk_task *tasks;
    const struct mk_wait *waits;
    const uint32_t *signals;
    const struct mk_event *events;
    const uint32_t *prog_start, *prog_tasks;
    const uint64_t *buf_off, *buf_bytes;     /* [n_buffers] */
    const uint64_t *w_off;                   /* [n_weights] byte offsets */
    const uint32_t *w_rows, *w_cols;         /* [n_weights] */
    /* memory */
    char *arena;
    const char *weights;                     /* bf16, one allocation */
    uint16_t *kv;                            /* bf16 KV cache, mk_plan_kv_offset layout */
    uint32_t *counters;                      /* [n_events], zeroed before each launch */
    int32_t *tokens, *pos, *active;          /* [B]: the plan's per-sequence state */
    int32_t *n_gen;                          /* [B] tokens generated so far */
    const int32_t *prompt;                   /* [B][prompt_cap] */
    const struct mk_gpu_seq *seq;            /* [B] */
    const float *inv_freq;                   /* [head_dim / 2] RoPE frequencies */
    uint32_t *abort_flag;                    /* device: 1 once any CTA gave up */
    int32_t *last_step;                      /* device: the step that ended every sequence */
    int32_t *n_alive;                        /* device: sequences not yet ended */
    /* host-mapped */
    int32_t *ring_tok;                       /* [B][ring_cap] generated tokens */
    uint32_t *ring_count;                    /* [B] tokens published in ring_tok[b] */
    const uint32_t *cancel;                  /* [B] set by the host: end sequence b */
    struct mk_gpu_diag *diag;
    /* sizes */
    struct mk_config cfg;
    int32_t batch, max_ctx, prompt_cap, ring_cap;
    int32_t max_steps;                       /* steps this launch may run */
    int32_t smem_bytes;                      /* dynamic shared memory per CTA */
    uint64_t timeout_ns;                     /* bound of every wait */
    uint32_t single_task;                    /* MK_NONE, or: run only this task (tests) */
    int32_t single_step;                     /* ... at this step, no waits, no signals */
    /* The per-task profile (off when prof is NULL): for steps < prof_steps, thread 0 of
     * the task's CTA stores prof[(step * n_tasks + task) * 4 + i] = %globaltimer (ns) at
     * i = 0: before its waits, 1: after them (all events seen, CTA released), 2: after
     * its signals; i = 3: the SM (blockIdx.x, bits 0..15) and, for a weight-ring task,
     * ns from ready to its activation row (bits 16..39) and from there to the end of its
     * GEMV (bits 40..63). Device memory, zeroed by the host. */
    uint64_t *prof;
    int32_t prof_steps;
    uint32_t n_tasks;
    uint32_t no_ring;                        /* 1: every linear takes the direct GEMV
                                                (MK_GPU_RING=0; the ring's A/B switch) */
    uint32_t pad;
};

/* Host helpers of gpu_cuda.c shared with the per-op baseline (per_op_cuda.c), so both
 * run on identical weights and RoPE tables. */
struct mk_model;
void mk_gpu_rope_inv_freq(const struct mk_config *c, float *out); /* [head_dim / 2] */
/* Every non-view weight of the plan, converted to bf16, at its offset from `dev`. */
enum mk_status mk_gpu_upload_weights(const struct mk_model *m, const struct mk_plan *p,
                                     char *dev);
/* The launch settings both launchers take from their options and the environment
 * (src/runtime/gpu_env.c): timeout_ns of every bounded wait = opt_ms, else
 * MK_GPU_WAIT_TIMEOUT_MS, else MK_GPU_DEFAULT_TIMEOUT_MS; no_ring = (MK_GPU_RING == "0"). */
enum { MK_GPU_DEFAULT_TIMEOUT_MS = 2000 };
void mk_gpu_args_env(struct mk_gpu_args *a, uint64_t opt_ms);

#ifdef __cplusplus
}
#endif
#endif
