/* Decode speed of the megakernel: tgN (time per generated token over N tokens after a
 * P-token prompt through the tensor-core prefill), batch B, ignore EOS, greedy. One warm-up
 * launch, then `reps` launches; the median is reported. Time per token is measured on the
 * host from the arrival of the first generated token (made by the prefill) to the last one
 * in the mapped ring, (last - first) / (N - 1): the prompt is excluded, the launch
 * included. `mk bench` measures the same and more; this driver stays for quick checks.
 * Also measures the streaming-read ceiling of the GEMV's load style.
 *
 *   gpu_decode [--prompt P] [--gen N] [--batch B] [--reps R] [--name NAME]... DIR...
 * Prints one line per model and one JSON line (bench/results.jsonl format) per model. */
#include "mk/load.h"
#include "mk/plan.h"
#include "mk/runtime.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int bench_model(const char *dir, const char *name, int P, int N, int B, int reps,
                       const char *device)
{
    struct mk_model *m = NULL;
    if (mk_model_load(dir, &m) != MK_OK) {
        fprintf(stderr, "%s: %s\n", dir, mk_errmsg());
        return 1;
    }
    struct mk_gpu_info info;
    mk_gpu_query(&info);
    struct mk_target t = mk_target_h100(B, P + N + 8);
    t.sm_count = info.sm_count;
    t.smem_per_block = (int)info.smem_per_block_optin;
    struct mk_plan *p = NULL;
    struct mk_gpu *g = NULL;
    struct timespec c0, c1;
    clock_gettime(CLOCK_MONOTONIC, &c0);
    enum mk_status s = mk_plan_compile(&m->cfg, &t, &p);
    clock_gettime(CLOCK_MONOTONIC, &c1);
    double compile_ms = (c1.tv_sec - c0.tv_sec) * 1e3 + (c1.tv_nsec - c0.tv_nsec) / 1e6;
    if (s == MK_OK) s = mk_gpu_open(m, p, NULL, &g);
    if (s != MK_OK) {
        fprintf(stderr, "%s: %s\n", dir, mk_errmsg());
        mk_plan_free(p);
        mk_model_free(m);
        return 1;
    }
    int32_t *prompt = malloc(sizeof(int32_t) * (size_t)P * B);
    struct mk_gpu_request req[16];
    for (int b = 0; b < B; b++) {
        for (int i = 0; i < P; i++) prompt[b * P + i] = (int32_t)((i * 7919 + b * 104729 + 13) % m->cfg.vocab_size);
        req[b] = (struct mk_gpu_request){.prompt = prompt + b * P, .prompt_len = P, .max_new = N,
                                         .ignore_eos = 1};
    }
    double tg[64], step[64];
    reps = reps > 64 ? 64 : reps;
    int rc = 0;
    for (int r = -1; r < reps && !rc; r++) {
        struct mk_gpu_stats st;
        if (mk_gpu_generate(g, req, B, NULL, NULL, NULL, NULL, &st) != MK_OK) {
            fprintf(stderr, "%s: %s\n", dir, mk_errmsg());
            rc = 1;
            break;
        }
        if (r < 0) continue;
        tg[r] = (st.last_token_ms - st.first_token_ms) / (N - 1);
        step[r] = st.kernel_ms / st.steps;
    }
    if (!rc) {
        qsort(tg, (size_t)reps, sizeof tg[0], cmp_d);
        qsort(step, (size_t)reps, sizeof step[0], cmp_d);
        double ms = tg[reps / 2];
        double gb = (double)mk_config_step_bytes(&m->cfg) / 1e9;
        printf("%-14s B=%-2d tg%d after %d: %.4f ms/token (min %.4f, max %.4f)  %.1f tok/s/seq  "
               "%.0f GB/s of weights  launch avg %.4f ms/step  plan %u tasks, compile %.0f ms, "
               "predicted %.4f ms\n",
               name, B, N, P, ms, tg[0], tg[reps - 1], 1e3 / ms, gb / (ms * 1e-3), step[reps / 2],
               p->n_tasks, compile_ms, p->predicted_step_ns / 1e6);
        time_t now = time(NULL);
        char date[16];
        strftime(date, sizeof date, "%Y-%m-%d", gmtime(&now));
        const char *commit = getenv("MK_COMMIT");
        printf("JSON {\"system\":\"mk\", \"model\":\"%s\", \"test\":\"tg%d\", \"batch\":%d, "
               "\"ctx\":%d, \"ms\":%.4f, \"device\":\"%s\", \"date\":\"%s\", \"commit\":\"%s\"}\n",
               name, N, B, P, ms, device, date, commit ? commit : "unknown");
    }
    free(prompt);
    mk_gpu_close(g);
    mk_plan_free(p);
    mk_model_free(m);
    return rc;
}

int main(int argc, char **argv)
{
    int P = 64, N = 128, B = 1, reps = 5, rc = 0;
    const char *names[16] = {0};
    int n_names = 0, n_models = 0;
    struct mk_gpu_info info;
    if (mk_gpu_query(&info) != MK_OK) {
        fprintf(stderr, "gpu_decode: %s\n", mk_errmsg());
        return 3;
    }
    double s1 = 0, s4 = 0;
    if (!getenv("MK_BENCH_NO_CEILING") && mk_gpu_stream_bench(4ull << 30, 9, &s1, &s4) == MK_OK)
        printf("%-14s stream read 4 GiB, 16-byte loads: %.0f GB/s with 1 CTA x 512 per SM, "
               "%.0f GB/s with 4 CTAs per SM\n", "ceiling", s1, s4);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--prompt") && i + 1 < argc) P = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--gen") && i + 1 < argc) N = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) B = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--name") && i + 1 < argc && n_names < 16) names[n_names++] = argv[++i];
        else {
            const char *name = n_models < n_names ? names[n_models] : argv[i];
            n_models++;
            rc |= bench_model(argv[i], name, P, N, B < 1 ? 1 : B > 16 ? 16 : B,
                              reps < 1 ? 1 : reps, info.name);
        }
    }
    return rc;
}
