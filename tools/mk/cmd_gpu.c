/* mk gpu: one line describing the CUDA device, or why there is none (exit 3). */
#include "cli.h"
#include "mk/runtime.h"

#include <stdio.h>

static const char USAGE[] =
    "usage: mk gpu\n"
    "  Print the CUDA device the runtime would use: name, SMs, compute capability,\n"
    "  shared memory per SM, L2, memory. Exit 0 when there is one, 3 when not.\n";

int mk_cmd_gpu(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        fputs(USAGE, stdout);
        return MK_EXIT_OK;
    }
    if (argc > 1) return cli_usage_error("gpu", USAGE, "unexpected argument '%s'", argv[1]);
    struct mk_gpu_info g;
    if (mk_gpu_query(&g) != MK_OK) {
        printf("%s\n", mk_errmsg());
        return MK_EXIT_NO_GPU;
    }
    printf("%s, %d SMs, sm_%d%d, %zu KiB smem/SM (%zu KiB per block), %zu MiB L2, %.1f GiB\n",
           g.name, g.sm_count, g.cc_major, g.cc_minor, g.smem_per_sm / 1024,
           g.smem_per_block_optin / 1024, g.l2_bytes >> 20,
           (double)g.global_mem_bytes / (1 << 30));
    return MK_EXIT_OK;
}
