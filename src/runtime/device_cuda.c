/* Device discovery through the CUDA runtime. */
#include "mk/runtime.h"
#include "runtime/cuda_check.h"

#include <stdio.h>
#include <string.h>

enum mk_status mk_gpu_query(struct mk_gpu_info *out)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess)
        return mk_error(MK_ERR_NO_DEVICE, "no CUDA device: %s (%s)", cudaGetErrorName(e),
                        cudaGetErrorString(e));
    if (n == 0)
        return mk_error(MK_ERR_NO_DEVICE, "no CUDA device visible");
    int dev = 0;
    MK_CUDA_CHECK(cudaGetDevice(&dev));
    struct cudaDeviceProp p;
    MK_CUDA_CHECK(cudaGetDeviceProperties(&p, dev));
    memset(out, 0, sizeof *out);
    memcpy(out->name, p.name, sizeof out->name - 1);
    out->sm_count = p.multiProcessorCount;
    out->cc_major = p.major;
    out->cc_minor = p.minor;
    out->smem_per_sm = p.sharedMemPerMultiprocessor;
    out->smem_per_block_optin = p.sharedMemPerBlockOptin;
    out->regs_per_sm = p.regsPerMultiprocessor;
    out->l2_bytes = (size_t)p.l2CacheSize;
    out->global_mem_bytes = p.totalGlobalMem;
    out->cooperative_launch = p.cooperativeLaunch;
    return MK_OK;
}
