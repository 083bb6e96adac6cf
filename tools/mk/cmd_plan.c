/* mk plan — compile the decode plan of a checkpoint's config (no weights needed) for a
 * target and describe it: tasks and events per op, per-SM predicted busy time, the
 * predicted step time next to the bandwidth floor, shared memory per task; or dump it
 * as JSON / Graphviz, or save it. */
#include "cli.h"
#include "mk/plan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char usage[] =
    "usage: mk plan DIR [--sms N] [--smem BYTES] [--batch B] [--ctx T] [--dump json|dot]\n"
    "               [--stats] [--save FILE]\n"
    "  Compile the decode plan for the model in DIR (only DIR/config.json is read) and\n"
    "  print a summary: tasks, events, predicted step time vs the bandwidth floor.\n"
    "  --sms N        SMs (CTAs) of the target (default 132, H100)\n"
    "  --smem BYTES   dynamic shared memory per block (default 232448 = 227 KiB)\n"
    "  --batch B      sequences per step, 1..16 (default 1)\n"
    "  --ctx T        KV cache positions per sequence (default 4096)\n"
    "  --stats        per-op table, per-SM busy time, shared-memory peaks\n"
    "  --dump FORMAT  print the whole plan as json or dot (Graphviz) instead\n"
    "  --save FILE    also write the binary plan (versioned, checksummed)\n"
    "  Exit: 0 ok, 1 bad config or plan, 2 bad arguments.\n";

/* The bandwidth the floor is quoted at (H100 SXM, as in ANCHORS.md). */
static const double FLOOR_GBPS = 3060.0;

struct args {
    const char *dir, *dump, *save;
    long sms, smem, batch, ctx;
    bool stats;
};

static int parse_args(int argc, char **argv, struct args *a)
{
    *a = (struct args){.sms = 132, .smem = 227 * 1024, .batch = 1, .ctx = 4096};
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i], *v;
        if (!strcmp(f, "--stats")) { a->stats = true; continue; }
        if (f[0] != '-') {
            if (a->dir) return cli_usage_error("plan", usage, "more than one DIR ('%s')", f);
            a->dir = f;
            continue;
        }
        bool known = !strcmp(f, "--sms") || !strcmp(f, "--smem") || !strcmp(f, "--batch") ||
                     !strcmp(f, "--ctx") || !strcmp(f, "--dump") || !strcmp(f, "--save");
        if (!known) return cli_usage_error("plan", usage, "unknown option '%s'", f);
        if (!(v = cli_value("plan", argc, argv, &i))) return MK_EXIT_USAGE;
        if (!strcmp(f, "--sms") && !cli_int("plan", f, v, 1, 4096, &a->sms)) return MK_EXIT_USAGE;
        if (!strcmp(f, "--smem") && !cli_int("plan", f, v, 4096, 1 << 24, &a->smem)) return MK_EXIT_USAGE;
        if (!strcmp(f, "--batch") && !cli_int("plan", f, v, 1, 16, &a->batch)) return MK_EXIT_USAGE;
        if (!strcmp(f, "--ctx") && !cli_int("plan", f, v, 1, 1 << 20, &a->ctx)) return MK_EXIT_USAGE;
        if (!strcmp(f, "--save")) a->save = v;
        if (!strcmp(f, "--dump")) {
            if (strcmp(v, "json") && strcmp(v, "dot"))
                return cli_usage_error("plan", usage, "--dump expects json or dot, got '%s'", v);
            a->dump = v;
        }
    }
    if (!a->dir) return cli_usage_error("plan", usage, "missing DIR");
    return MK_EXIT_OK;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void print_ops(const struct mk_plan *p)
{
    printf("%-16s %7s %8s %8s %12s %10s\n", "op", "tasks", "waits", "signals", "cost_us_sum", "smem_max");
    for (int op = 1; op < MK_TASK_OP_COUNT; op++) {
        uint64_t n = 0, waits = 0, sigs = 0;
        double cost = 0;
        uint32_t smem = 0;
        for (uint32_t t = 0; t < p->n_tasks; t++) {
            const struct mk_task *k = &p->tasks[t];
            if (k->op != op) continue;
            n++;
            waits += k->n_wait;
            sigs += k->n_signal;
            cost += p->task_cost_ns[t];
            uint32_t s = mk_plan_task_smem(p, t);
            if (s > smem) smem = s;
        }
        if (n)
            printf("%-16s %7llu %8llu %8llu %12.1f %10u\n", mk_task_op_name((enum mk_task_op)op),
                   (unsigned long long)n, (unsigned long long)waits, (unsigned long long)sigs,
                   cost / 1e3, smem);
    }
}

static void print_sms(const struct mk_plan *p)
{
    int S = p->target.sm_count;
    double lo = 1e300, hi = 0, sum = 0;
    printf("per-SM busy (us):");
    for (int i = 0; i < S; i++) {
        double busy = 0;
        for (uint32_t j = p->prog_start[i]; j < p->prog_start[i + 1]; j++)
            busy += p->task_cost_ns[p->prog_tasks[j]];
        if (busy < lo) lo = busy;
        if (busy > hi) hi = busy;
        sum += busy;
        printf("%s%.1f", i % 12 ? " " : "\n  ", busy / 1e3);
    }
    printf("\n  min %.1f  mean %.1f  max %.1f  (predicted step %.1f: idle %.0f%%)\n", lo / 1e3,
           sum / S / 1e3, hi / 1e3, p->predicted_step_ns / 1e3,
           100.0 * (1.0 - sum / S / p->predicted_step_ns));
}

static void print_summary(const struct mk_plan *p, double seconds)
{
    const struct mk_config *c = &p->cfg;
    const struct mk_target *t = &p->target;
    double floor_ns = (double)mk_config_step_bytes(c) / FLOOR_GBPS;
    printf("model:      %s, %d layers, hidden %d, heads %d/%d x %d, vocab %d\n",
           mk_family_name(c->family), c->n_layers, c->hidden_size, c->n_heads, c->n_kv_heads,
           c->head_dim, c->vocab_size);
    printf("target:     %d SMs, %d B smem/block, batch %d, ctx %d\n", t->sm_count,
           t->smem_per_block, t->batch, t->max_ctx);
    printf("plan:       %u tasks, %u events, %u waits, %u signals (compiled in %.3f s)\n",
           p->n_tasks, p->n_events, p->n_waits, p->n_signals, seconds);
    printf("memory:     weights %.1f MiB, arena %.1f KiB, KV cache %.1f MiB\n",
           (double)p->weight_bytes / 1048576.0, (double)p->arena_bytes / 1024.0,
           (double)p->kv_bytes / 1048576.0);
    printf("smem:       act_chunk %u, %u stages x %u B\n", p->act_chunk, p->weight_stages,
           p->stage_bytes);
    printf("step:       predicted %.1f us; floor %.2f us (%lld B at %.0f GB/s, batch 1) = "
           "%.0f%% of floor\n", p->predicted_step_ns / 1e3, floor_ns / 1e3,
           (long long)mk_config_step_bytes(c), FLOOR_GBPS, 100.0 * floor_ns / p->predicted_step_ns);
}

int mk_cmd_plan(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        fputs(usage, stdout);
        return MK_EXIT_OK;
    }
    struct args a;
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc;
    char path[4096], *json = NULL;
    size_t len;
    snprintf(path, sizeof path, "%s/config.json", a.dir);
    struct mk_config cfg;
    enum mk_status s = mk_read_file(path, 1 << 20, &json, &len);
    if (!s) s = mk_config_parse(json, len, path, &cfg);
    free(json);
    struct mk_target t = mk_target_h100((int)a.batch, (int)a.ctx);
    t.sm_count = (int)a.sms;
    t.smem_per_block = (int)a.smem;
    struct mk_plan *p = NULL;
    double t0 = now_seconds();
    if (!s) s = mk_plan_compile(&cfg, &t, &p);
    double seconds = now_seconds() - t0;
    if (!s) s = mk_plan_check(p);
    if (!s && a.save) s = mk_plan_save(p, a.save);
    if (!s && a.dump) s = !strcmp(a.dump, "json") ? mk_plan_dump_json(p, stdout) : mk_plan_dump_dot(p, stdout);
    if (!s && !a.dump) {
        print_summary(p, seconds);
        if (a.stats) {
            print_ops(p);
            print_sms(p);
        }
    }
    mk_plan_free(p);
    if (s) {
        fprintf(stderr, "mk plan: %s\n", mk_errmsg());
        return MK_EXIT_FAIL;
    }
    return MK_EXIT_OK;
}
