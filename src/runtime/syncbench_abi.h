/* The argument block of the cross-SM synchronization benchmark (kernels/syncbench.cu,
 * host side src/runtime/syncbench_cuda.c). Plain C, the same layout in C and CUDA C++. */
#ifndef MK_SYNCBENCH_ABI_H
#define MK_SYNCBENCH_ABI_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    MK_SYNC_ROW_FLOATS = 1024, /* the 4 KiB activation row of the handoff test */
    MK_SYNC_STRIDE = 32,       /* uint32 counters between the chain's per-CTA counters:
                                  one 128-byte line each, so each is polled by one SM */
};

/* A run is (samples + 1) * per_sample units (chain: rounds of one hop per CTA; level
 * tests: levels) plus one; CTA 0's thread 0 stores %globaltimer after the wait of unit
 * per_sample * k, k = 1 .. samples + 1: sample k - 1 = stamps[k] - stamps[k - 1] (the
 * first per_sample units are the warm-up). Device pointers. */
struct mk_sync_bench_args {
    int32_t per_sample;
    int32_t samples;
    uint64_t *stamps;          /* [samples + 1] */
    uint32_t *smid;            /* [grid]: %smid of each CTA */
    uint32_t *errors;          /* handoff test: reads that saw another level's value */
    float *rows;               /* [2][MK_SYNC_ROW_FLOATS]: the row, double-buffered by level */
};

#ifdef __cplusplus
}
#endif
#endif
