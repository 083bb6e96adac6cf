/* mk gpu: one line describing the CUDA device, or why there is none (exit 3);
 * --sync-bench: the floor of the megakernel's cross-SM synchronization on it. */
#include "cli.h"
#include "mk/runtime.h"

#include <stdio.h>
#include <string.h>

static const char USAGE[] =
    "usage: mk gpu [--sync-bench]\n"
    "  Print the CUDA device the runtime would use: name, SMs, compute capability,\n"
    "  shared memory per SM, L2, memory. Exit 0 when there is one, 3 when not.\n"
    "  --sync-bench  then measure the floor of the megakernel's cross-SM sync\n"
    "                (kernels/sync.cuh's signal and wait, no work; one CTA of 512\n"
    "                threads per SM): ns per hop of a relay through all SMs and per\n"
    "                all-to-all level, bare, with a task's barriers, and with a 4 KiB\n"
    "                activation handoff; median and p90 of 101 samples\n";

enum { SYNC_SAMPLES = 101 };

static const struct {
    const char *name, *what;
} sync_tests[MK_SYNC_TESTS] = {
    [MK_SYNC_CHAIN] = {"chain", "hop: CTA i waits for CTA i-1's signal, then signals i+1"},
    [MK_SYNC_LEVEL] = {"level", "level: every CTA signals one counter, waits for all G"},
    [MK_SYNC_LEVEL_BAR] = {"level+bar", "level, a task's __syncthreads() before the signal "
                                        "and after the wait"},
    [MK_SYNC_LEVEL_DATA] = {"level+bar+4KB", "level+bar, a 16 B store per CTA slot before the "
                                             "signal, 4 KiB row read (16 B/thread, L2) after"},
};

/* The table, a note on the method, and one last line of the four medians (the line a
 * device check's summary shows). */
static int sync_bench(void)
{
    printf("\n| test | ns per | median ns | p90 ns | launch mean ns |\n|---|---|---|---|---|\n");
    struct mk_sync_result r[MK_SYNC_TESTS];
    for (int t = 0; t < MK_SYNC_TESTS; t++) {
        if (mk_gpu_sync_bench((enum mk_sync_test)t, SYNC_SAMPLES, &r[t]) != MK_OK) {
            fflush(stdout);
            fprintf(stderr, "mk gpu: --sync-bench: %s: %s\n", sync_tests[t].name, mk_errmsg());
            return MK_EXIT_FAIL;
        }
        printf("| %s | %s | %.0f | %.0f | %.0f |\n", sync_tests[t].name, sync_tests[t].what,
               r[t].median_ns, r[t].p90_ns, r[t].launch_ns);
    }
    printf("\n%d CTAs x 512 threads on %d distinct SMs, one cooperative launch per test; a sample "
           "is CTA 0's %%globaltimer over one round of %d hops (chain) or %d levels, after one "
           "warm-up sample; launch mean = cudaEvent time of the launch / all its hops or levels\n",
           r[0].ctas, r[0].sms, r[0].ctas, r[MK_SYNC_LEVEL].per_sample);
    printf("sync floor, median ns: hop %.0f, level %.0f, +bar %.0f, +4KB %.0f (%d SMs)\n",
           r[MK_SYNC_CHAIN].median_ns, r[MK_SYNC_LEVEL].median_ns, r[MK_SYNC_LEVEL_BAR].median_ns,
           r[MK_SYNC_LEVEL_DATA].median_ns, r[0].sms);
    return MK_EXIT_OK;
}

int mk_cmd_gpu(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        fputs(USAGE, stdout);
        return MK_EXIT_OK;
    }
    bool bench = argc > 1 && !strcmp(argv[1], "--sync-bench");
    if (argc > 1 + bench) return cli_usage_error("gpu", USAGE, "unexpected argument '%s'", argv[1 + bench]);
    struct mk_gpu_info g;
    if (mk_gpu_query(&g) != MK_OK) {
        printf("%s\n", mk_errmsg());
        return MK_EXIT_NO_GPU;
    }
    printf("%s, %d SMs, sm_%d%d, %zu KiB smem/SM (%zu KiB per block), %zu MiB L2, %.1f GiB\n",
           g.name, g.sm_count, g.cc_major, g.cc_minor, g.smem_per_sm / 1024,
           g.smem_per_block_optin / 1024, g.l2_bytes >> 20,
           (double)g.global_mem_bytes / (1 << 30));
    return bench ? sync_bench() : MK_EXIT_OK;
}
