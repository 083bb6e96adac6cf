/* The one check macro for CUDA runtime and cuBLAS calls (host side). On failure it
 * records "file:line: call: error name (message)" with mk_error and returns
 * MK_ERR_CUDA from the enclosing function, which must return enum mk_status. */
#ifndef MK_CUDA_CHECK_H
#define MK_CUDA_CHECK_H

#include "mk/mk.h"
#include <cuda_runtime_api.h>

#define MK_CUDA_CHECK(call) do { \
    cudaError_t mk_cuda_e_ = (call); \
    if (mk_cuda_e_ != cudaSuccess) \
        return mk_error(MK_ERR_CUDA, "%s:%d: %s: %s (%s)", __FILE__, __LINE__, #call, \
                        cudaGetErrorName(mk_cuda_e_), cudaGetErrorString(mk_cuda_e_)); \
    } while (0)

/* cuBLAS / cuBLASLt status codes are plain ints here so this header needs no cuBLAS. */
#define MK_CUBLAS_CHECK(call) do { \
    int mk_cublas_e_ = (int)(call); \
    if (mk_cublas_e_ != 0) \
        return mk_error(MK_ERR_CUDA, "%s:%d: %s: cuBLAS status %d", __FILE__, __LINE__, \
                        #call, mk_cublas_e_); \
    } while (0)

#endif
