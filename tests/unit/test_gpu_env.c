/* mk_gpu_args_env: the launch settings both GPU launchers (the megakernel and the per-op
 * baseline) take from their options and the environment. Host code: no GPU needed. */
#include "check.h"
#include "runtime/gpu_abi.h"

#include <stdlib.h>
#include <string.h>

static struct mk_gpu_args args_with(const char *timeout, const char *ring, uint64_t opt_ms)
{
    if (timeout) setenv("MK_GPU_WAIT_TIMEOUT_MS", timeout, 1); else unsetenv("MK_GPU_WAIT_TIMEOUT_MS");
    if (ring) setenv("MK_GPU_RING", ring, 1); else unsetenv("MK_GPU_RING");
    struct mk_gpu_args a;
    memset(&a, 0xab, sizeof a); /* every field the helper sets must be set */
    mk_gpu_args_env(&a, opt_ms);
    return a;
}

static void timeout_from_option_env_default(void)
{
    struct mk_gpu_args a = args_with(NULL, NULL, 0);
    CHECK(a.timeout_ns == (uint64_t)MK_GPU_DEFAULT_TIMEOUT_MS * 1000000u && a.no_ring == 0);
    a = args_with("7", NULL, 0);
    CHECK(a.timeout_ns == 7000000u);
    a = args_with("7", NULL, 30); /* the option wins over the environment */
    CHECK(a.timeout_ns == 30000000u);
    a = args_with("0", NULL, 0); /* 0 is "the default", never a zero bound */
    CHECK(a.timeout_ns == (uint64_t)MK_GPU_DEFAULT_TIMEOUT_MS * 1000000u);
}

static void ring_switch(void)
{
    CHECK(args_with(NULL, "0", 0).no_ring == 1);
    CHECK(args_with(NULL, "1", 0).no_ring == 0);
    CHECK(args_with(NULL, "", 0).no_ring == 0);
    CHECK(args_with(NULL, "00", 0).no_ring == 0);
    unsetenv("MK_GPU_RING");
    unsetenv("MK_GPU_WAIT_TIMEOUT_MS");
}

int main(void)
{
    RUN(timeout_from_option_env_default);
    RUN(ring_switch);
    CHECK_EXIT();
}
