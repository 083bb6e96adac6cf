/* megakernel — the GPU runtime: device discovery, weight upload, the persistent kernel.
 * Every function here exists in every build; a build without CUDA (no nvcc found) or a
 * machine without a device makes them return MK_ERR_NO_DEVICE with one clear line. */
#ifndef MK_RUNTIME_H
#define MK_RUNTIME_H

#include "mk/mk.h"

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

#ifdef __cplusplus
}
#endif
#endif
