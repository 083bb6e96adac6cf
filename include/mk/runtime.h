/* megakernel — the GPU runtime: device discovery, weight upload, the persistent kernel.
 * Every function here exists in every build; a build without CUDA (no nvcc found) or a
 * machine without a device makes them return MK_ERR_NO_DEVICE with one clear line. */
#ifndef MK_RUNTIME_H
#define MK_RUNTIME_H

#include "mk/mk.h"
#include "mk/sample.h"

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Properties of the device the runtime would use (device 0 unless CUDA_VISIBLE_DEVICES
 * says otherwise). */
struct mk_gpu_info {
    char name[128];
    int sm_count;
    int cc_major, cc_minor;
    size_t smem_per_sm;        /* bytes of shared memory per SM */
    size_t smem_per_block_optin; /* largest dynamic shared memory a block may ask for */
    int regs_per_sm;
    size_t l2_bytes;
    size_t global_mem_bytes;
    int cooperative_launch;    /* 1 when cooperative launches are supported */
};

/* Fill *out for the current device. MK_ERR_NO_DEVICE (message says why: built without
 * CUDA, no device visible, driver error) when there is none. */
enum mk_status mk_gpu_query(struct mk_gpu_info *out);

/* ---- the persistent megakernel -------------------------------------------------- */

struct mk_model;
struct mk_plan;
struct mk_gpu; /* a model resident on the device, run by one plan (one batch size) */

/* How mk_gpu_generate consumes the prompts. */
enum mk_gpu_prompt_mode {
    MK_GPU_PROMPT_PREFILL = 0, /* tensor-core prefill (mk/prefill.h) of every prompt, then
                                  decode in the megakernel from position prompt_len; a
                                  batch with a sampled request (temperature > 0) runs as
                                  MK_GPU_PROMPT_STEP, as does a plan the prefill cannot run */
    MK_GPU_PROMPT_STEP = 1,    /* the megakernel feeds the prompt one token per step */
};

struct mk_gpu_options {
    uint64_t wait_timeout_ms; /* bound of every dependency wait; 0: the default (2000 ms,
                                 or MK_GPU_WAIT_TIMEOUT_MS from the environment) */
    int prompt_mode;          /* enum mk_gpu_prompt_mode; 0 (and opt NULL): prefill */
};

/* Upload the weights of `m` once into one device allocation in plan->weights order
 * (f16/f32 converted to bf16), allocate the KV cache, the activation arena, the event
 * counters and the plan tables, and check that the persistent kernel fits: one CTA per SM
 * with the shared memory every task needs (cudaOccupancyMaxActiveBlocksPerMultiprocessor)
 * and cooperative launch support. The plan is copied; `m` and `plan` may be freed after.
 * Errors: MK_ERR_NO_DEVICE, MK_ERR_UNSUPPORTED (device or plan the kernel cannot run,
 * e.g. occupancy, a task's shared memory, unaligned K ranges; the message names the
 * task), MK_ERR_FORMAT (a weight missing or of another shape), MK_ERR_NOMEM, MK_ERR_CUDA.
 * On error nothing is allocated. */
enum mk_status mk_gpu_open(const struct mk_model *m, const struct mk_plan *plan,
                           const struct mk_gpu_options *opt, struct mk_gpu **out);
void mk_gpu_close(struct mk_gpu *g); /* NULL is fine */

/* One sequence of a batch: greedy (the kernel's argmax) unless sampling.temperature > 0,
 * then sampled in the kernel in mk/sample.h's order of operations and draws. */
struct mk_gpu_request {
    struct mk_sampling sampling;
    const int32_t *prompt;  /* prompt_len token ids (prefilled, or fed one per step) */
    int prompt_len;         /* >= 1 */
    int max_new;            /* >= 1 generated tokens at most */
    const int32_t *stop;    /* n_stop extra stop ids (the model's EOS ids always stop) */
    int n_stop;
    int ignore_eos;         /* 1: EOS ids do not stop (benchmarks) */
};

/* Called on the host for every generated token as it arrives (seq = index of the
 * request, index = position in that request's output). Returning false cancels that
 * request: the kernel ends it at its next step and no further token of it is delivered. */
typedef bool (*mk_gpu_token_fn)(void *ctx, int seq, int index, int32_t token);

struct mk_gpu_stats {
    int steps;              /* steps the kernel ran (prompt steps included in STEP mode;
                               0 when the prefill's first tokens ended every request) */
    double kernel_ms;       /* launch to completion, host clock (0: no launch) */
    double first_token_ms;  /* start (prefill included) to the first token seen by the host */
    double last_token_ms;   /* start to the last generated token seen by the host */
    int tokens;             /* generated tokens, all sequences */
};

/* Run n (1 <= n <= plan batch) requests: the prefill of their prompts (prompt_mode),
 * then ONE cooperative launch for the rest (none when every request ended at its first
 * token; the arena's logits buffer then holds the prefill's last logits); tokens stream to
 * on_token (may be NULL) while the kernel runs; out_tokens (may be NULL) receives, per
 * request, max_new slots and out_counts[i] the number generated. A wait that exceeds the
 * bound ends the launch with MK_ERR_TIMEOUT and a message naming the SM, task, op,
 * layer, step, event, expected and seen counts. The device state stays usable. */
enum mk_status mk_gpu_generate(struct mk_gpu *g, const struct mk_gpu_request *req, int n,
                               mk_gpu_token_fn on_token, void *ctx, int32_t **out_tokens,
                               int *out_counts, struct mk_gpu_stats *stats);

/* ---- the per-task profile (mk/profile.h analyzes what it records) ------------------ */

/* Turn the profile on for the following launches of g: device memory for `steps` steps
 * of records ([steps][plan n_tasks][MK_PROF_FIELDS] uint64, zeroed); each launch then
 * records its steps [0, steps) (%globaltimer around every task: a few stores per task).
 * With a prompt fed one token per step (MK_GPU_PROMPT_STEP), step s is prompt token s
 * until the prompt is consumed. A second begin replaces the first. MK_ERR_ARG for
 * steps < 1, MK_ERR_NOMEM, MK_ERR_CUDA. Off by default: no records, no cost. */
enum mk_status mk_gpu_profile_begin(struct mk_gpu *g, int steps);
/* Copy the records of steps [0, steps) into dst (steps * n_tasks * MK_PROF_FIELDS
 * uint64) and turn the profile off (its memory is freed). Steps the launch did not run
 * (stats.steps) read as zeros, which mk_profile_analyze refuses. MK_ERR_ARG when the
 * profile is off or holds fewer steps. */
enum mk_status mk_gpu_profile_read(struct mk_gpu *g, uint64_t *dst, int steps);

/* ---- the engine's GPU backend ------------------------------------------------------- */

struct mk_backend; /* mk/engine.h */

/* A backend (mk/engine.h) running requests in the megakernel: a plan compiled for
 * max_batch sequences of max_ctx positions and the device state of `m` (which must
 * outlive it). Fewer requests than max_batch run as inactive padding rows. Greedy or
 * sampled in the kernel; a request with top_logprobs > 0 is refused (MK_ERR_UNSUPPORTED)
 * and tokens carry logprob 0. Errors as mk_gpu_open and mk_plan_compile. */
enum mk_status mk_backend_gpu_new(const struct mk_model *m, int max_batch, int max_ctx,
                                  struct mk_backend **out);

/* ---- testing hooks: one task alone, state in and out --------------------------------- */

/* Copy the activation arena (plan->arena_bytes) / KV cache (plan->kv_bytes) out or in. */
enum mk_status mk_gpu_arena_read(struct mk_gpu *g, void *dst);
enum mk_status mk_gpu_arena_write(struct mk_gpu *g, const void *src);
enum mk_status mk_gpu_kv_read(struct mk_gpu *g, void *dst);
enum mk_status mk_gpu_kv_write(struct mk_gpu *g, const void *src);
/* Set the per-sequence arrays tokens[B], pos[B] (active = 1 for all). */
enum mk_status mk_gpu_set_seq_state(struct mk_gpu *g, const int32_t *tokens, const int32_t *pos);
/* Run task `task` of the plan alone on one CTA (no waits, no signals) at `step`. */
enum mk_status mk_gpu_run_task(struct mk_gpu *g, uint32_t task, int step);

/* Streaming-read ceiling with the GEMV's load style: read `bytes` (rounded down to 16)
 * `reps` times with one CTA per SM (and with 4 per SM), median GB/s of each. */
enum mk_status mk_gpu_stream_bench(uint64_t bytes, int reps, double *gbps_1cta,
                                   double *gbps_4cta);

/* The floor of the megakernel's cross-SM synchronization (kernels/syncbench.cu): the
 * signal and wait of kernels/sync.cuh with no work, one CTA of MK_GPU_THREADS threads
 * per SM on every SM, one cooperative launch. */
enum mk_sync_test {
    MK_SYNC_CHAIN,      /* per hop: CTA i waits for CTA i-1's signal, then signals i+1 */
    MK_SYNC_LEVEL,      /* per level: every CTA signals one counter and waits for all */
    MK_SYNC_LEVEL_BAR,  /* LEVEL with a task's barriers (mk_task_signal / mk_task_wait) */
    MK_SYNC_LEVEL_DATA, /* LEVEL_BAR + a store before the signal and a 4 KiB row read
                           (16 B per thread, ld.global.cg) after the wait */
    MK_SYNC_TESTS
};

struct mk_sync_result {
    double median_ns, p90_ns; /* per hop (CHAIN) or per level, over the samples */
    double launch_ns;         /* cudaEvent time of the whole launch (launch and warm-up
                                 included) / its hops or levels */
    int samples;              /* samples of per_sample rounds (CHAIN) or levels, timed by
                                 CTA 0's %globaltimer after a warm-up of one sample */
    int per_sample;
    int ctas, sms;            /* CTAs launched; distinct SMs they ran on */
};

/* Run one test with `samples` samples (1..10000). MK_ERR_TIMEOUT when a wait did not
 * end within a second; MK_ERR_INTERNAL when the handoff read another level's data. */
enum mk_status mk_gpu_sync_bench(enum mk_sync_test test, int samples, struct mk_sync_result *out);

#ifdef __cplusplus
}
#endif
#endif
