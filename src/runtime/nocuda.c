/* Runtime entry points of a build made without nvcc: each reports that clearly. */
#include "mk/runtime.h"

enum mk_status mk_gpu_query(struct mk_gpu_info *out)
{
    (void)out;
    return mk_error(MK_ERR_NO_DEVICE, "built without CUDA (nvcc was not found at build time)");
}
