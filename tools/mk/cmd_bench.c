/* mk bench — decode (tg) and prefill (pp) speed of a checkpoint on the GPU, in the spirit
 * of llama-bench, with the per-op baselines (mk/per_op.h) measured in the same run on the
 * same plan, and (--serve-sim, bench_serve.c) a request stream through the engine.
 *
 * tg N at depth D: B sequences, a D-token prompt fed one token per step by the
 * megakernel (prompt_mode MK_GPU_PROMPT_STEP, as the per-op baselines feed it), then N
 * tokens; ms/token is the time between the first and the last generated token seen by
 * the host / (N - 1): prompt steps and launch excluded. pp N: B prompts of N tokens through mk/prefill.h; ms is the
 * whole call. Achieved bytes of a decode step: mk_config_step_bytes (weights) + the KV
 * cache read at the mean context D + N / 2, all B sequences. */
#include "bench.h"
#include "cli.h"
#include "mk/per_op.h"
#include "mk/plan.h"
#include "mk/runtime.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char usage[] =
    "usage: mk bench DIR [options]\n"
    "  Decode (tgN after a D-token prompt) and prefill (ppN) speed on the GPU, with the\n"
    "  one-kernel-per-operator baselines on the same plan. Markdown table on stdout.\n"
    "  --tg N,...           tokens generated per test, each >= 2 (default 128)\n"
    "  --pp N,...           prompt lengths of prefill tests (default 512; 0: none)\n"
    "  --depth D,...        context depth before tg: prompt tokens (default 64)\n"
    "  --batch B,...        batch sizes 1..16 (default 1; --serve-sim: the largest, default 8)\n"
    "  --reps R             measured repetitions, median reported (default 5)\n"
    "  --warmup W           unmeasured runs first (default 1)\n"
    "  --baselines none|per-op|all  per-op: mk-per-op and mk-per-op-graph (default all;\n"
    "                       all is per-op: the PyTorch peers are bench/peers/)\n"
    "  --name NAME          model name in the results (default: DIR's last component)\n"
    "  --json               one JSON object per measurement instead of the table\n"
    "  --jsonl FILE         also append those objects to FILE\n"
    "  --dry-run            compile the plans, print the planned measurements as JSON\n"
    "                       (\"ms\": null) and stop; needs no GPU\n"
    "  --profile PREFIX     after the first tg test of each batch, one more run with the\n"
    "                       per-task profile on: PREFIX.json (Perfetto trace), PREFIX.txt\n"
    "                       (time by op, per-SM idle, critical path, waits), also printed;\n"
    "                       several batches: PREFIX-bB.json, ...\n"
    "  --profile-steps K    decode steps the profile covers at most (default 32)\n"
    "  --profile-trace-steps T  of those, the first T go to PREFIX.json (default 4; each\n"
    "                       step is ~250 bytes per task)\n"
    "  --pgo                profile (as --profile) and reschedule the plan with the measured\n"
    "                       task times; measure that plan too (system mk-pgo; with\n"
    "                       --profile its profile goes to PREFIX-pgo.json, .txt)\n"
    "  --serve-sim          TTFT / TPOT / ITL (p50, p99) of a request stream through the\n"
    "                       engine: Poisson arrivals, batches of up to B run as they come\n"
    "  --requests N         requests (default 64)      --rate R   per second (default 8)\n"
    "  --prompt-len P       prompt tokens (default 128) --gen G   tokens each (default 128)\n"
    "  --seed S             arrivals and prompt ids (default 0)\n"
    "  Exit: 0 ok, 1 failure (or a baseline's tokens differ from the megakernel's),\n"
    "  2 bad arguments, 3 no GPU.\n";

/* "a,b,c" of ints in [lo, hi]; an empty element is an error. */
static bool parse_list(const char *cmd, const char *flag, const char *s, int lo, int hi,
                       struct bench_list *out)
{
    out->n = 0;
    for (const char *p = s;; p++) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        char item[32];
        long v;
        if (len == 0 || len >= sizeof item) {
            fprintf(stderr, "mk %s: %s expects a comma-separated list of integers, got '%s'\n",
                    cmd, flag, s);
            return false;
        }
        if (out->n == BENCH_MAX_LIST) {
            fprintf(stderr, "mk %s: %s: at most %d values\n", cmd, flag, BENCH_MAX_LIST);
            return false;
        }
        memcpy(item, p, len);
        item[len] = 0;
        if (!cli_int(cmd, flag, item, lo, hi, &v)) return false;
        out->v[out->n++] = (int)v;
        if (!e) return true;
        p = e;
    }
}

static int parse_flag(int argc, char **argv, int *i, struct bench_opts *o, bool *batch_given)
{
    const char *cmd = argv[0], *a = argv[*i], *v;
    if (!strcmp(a, "--json")) return o->json = true, MK_EXIT_OK;
    if (!strcmp(a, "--dry-run")) return o->dry_run = true, MK_EXIT_OK;
    if (!strcmp(a, "--serve-sim")) return o->serve = true, MK_EXIT_OK;
    if (!strcmp(a, "--pgo")) return o->pgo = true, MK_EXIT_OK;
    if (!(v = cli_value(cmd, argc, argv, i))) return MK_EXIT_USAGE;
    long n;
    bool ok = true;
    if (!strcmp(a, "--tg")) ok = parse_list(cmd, a, v, 2, 1 << 20, &o->tg);
    else if (!strcmp(a, "--pp")) {
        ok = parse_list(cmd, a, v, 0, 1 << 20, &o->pp);
        if (ok && o->pp.n == 1 && o->pp.v[0] == 0) o->pp.n = 0;
    } else if (!strcmp(a, "--depth")) ok = parse_list(cmd, a, v, 0, 1 << 20, &o->depth);
    else if (!strcmp(a, "--batch")) ok = (*batch_given = true) && parse_list(cmd, a, v, 1, 16, &o->batch);
    else if (!strcmp(a, "--reps")) ok = cli_int(cmd, a, v, 1, 1000, &n) && (o->reps = (int)n, 1);
    else if (!strcmp(a, "--warmup")) ok = cli_int(cmd, a, v, 0, 1000, &n) && (o->warmup = (int)n, 1);
    else if (!strcmp(a, "--requests")) ok = cli_int(cmd, a, v, 1, 100000, &n) && (o->requests = (int)n, 1);
    else if (!strcmp(a, "--prompt-len")) ok = cli_int(cmd, a, v, 1, 1 << 20, &n) && (o->prompt_len = (int)n, 1);
    else if (!strcmp(a, "--gen")) ok = cli_int(cmd, a, v, 1, 1 << 20, &n) && (o->gen = (int)n, 1);
    else if (!strcmp(a, "--seed")) ok = cli_int(cmd, a, v, 0, 1L << 30, &n) && (o->seed = (int)n, 1);
    else if (!strcmp(a, "--rate")) ok = cli_float(cmd, a, v, 1e-6, 1e6, &o->rate);
    else if (!strcmp(a, "--name")) o->name = v;
    else if (!strcmp(a, "--profile")) o->profile = v;
    else if (!strcmp(a, "--profile-steps"))
        ok = cli_int(cmd, a, v, 1, 1 << 20, &n) && (o->profile_steps = (int)n, 1);
    else if (!strcmp(a, "--profile-trace-steps"))
        ok = cli_int(cmd, a, v, 1, 1 << 20, &n) && (o->profile_trace_steps = (int)n, 1);
    else if (!strcmp(a, "--jsonl")) o->jsonl = v;
    else if (!strcmp(a, "--baselines")) {
        if (!strcmp(v, "none")) o->baselines = BENCH_BASE_NONE;
        else if (!strcmp(v, "per-op")) o->baselines = BENCH_BASE_PER_OP;
        else if (!strcmp(v, "all")) o->baselines = BENCH_BASE_ALL;
        else return cli_usage_error(cmd, usage, "--baselines expects none, per-op or all, got '%s'", v);
    } else return cli_usage_error(cmd, usage, "unknown option '%s'", a);
    return ok ? MK_EXIT_OK : MK_EXIT_USAGE;
}

static int parse_args(int argc, char **argv, struct bench_opts *o)
{
    *o = (struct bench_opts){.reps = 5, .warmup = 1, .baselines = BENCH_BASE_ALL,
                             .requests = 64, .prompt_len = 128, .gen = 128, .rate = 8.0};
    o->tg = (struct bench_list){{128}, 1};
    o->pp = (struct bench_list){{512}, 1};
    o->depth = (struct bench_list){{64}, 1};
    o->batch = (struct bench_list){{1}, 1};
    o->profile_steps = 32;
    o->profile_trace_steps = 4;
    bool batch_given = false;
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] == '-' && argv[i][1]) {
            int rc = parse_flag(argc, argv, &i, o, &batch_given);
            if (rc != MK_EXIT_OK) return rc;
        } else if (!o->dir) {
            o->dir = argv[i];
        } else {
            return cli_usage_error(argv[0], usage, "one checkpoint directory, got also '%s'", argv[i]);
        }
    }
    if (!o->dir) return cli_usage_error(argv[0], usage, "a checkpoint directory is required");
    if (o->dry_run && o->jsonl)
        return cli_usage_error(argv[0], usage, "--dry-run measures nothing to append to --jsonl");
    if (o->dry_run && o->profile)
        return cli_usage_error(argv[0], usage, "--dry-run measures nothing to --profile");
    if (o->serve && (o->profile || o->pgo))
        return cli_usage_error(argv[0], usage, "--profile and --pgo apply to the tg tests, "
                               "not to --serve-sim");
    if (o->serve && !batch_given) o->batch = (struct bench_list){{8}, 1};
    if (!o->name) { /* DIR's last component, trailing slashes ignored */
        static char base[256];
        snprintf(base, sizeof base, "%s", o->dir);
        size_t n = strlen(base);
        while (n > 1 && base[n - 1] == '/') base[--n] = 0;
        const char *s = strrchr(base, '/');
        o->name = s && s[1] ? s + 1 : base;
    }
    return MK_EXIT_OK;
}

/* ---- records ---------------------------------------------------------------- */

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fprintf(f, "\\%c", *s);
        else if ((unsigned char)*s < 0x20) fprintf(f, "\\u%04x", (unsigned char)*s);
        else fputc(*s, f);
    }
    fputc('"', f);
}

static void emit_one(FILE *f, const struct bench_ctx *c, const struct bench_rec *r)
{
    fputs("{\"system\":", f);
    json_str(f, r->system);
    fputs(", \"model\":", f);
    json_str(f, c->o->name);
    fputs(", \"test\":", f);
    json_str(f, r->test);
    fprintf(f, ", \"batch\":%d, \"ctx\":%d, \"ms\":", r->batch, r->ctx);
    if (r->ms < 0) fputs("null", f);
    else fprintf(f, "%.4f", r->ms);
    if (r->step_bytes > 0) {
        double floor_ms = r->step_bytes / (BENCH_FLOOR_GBPS * 1e6);
        fprintf(f, ", \"step_bytes\":%.0f, \"floor_ms\":%.6f, \"pct_floor\":", r->step_bytes,
                floor_ms);
        if (r->ms < 0) fputs("null", f);
        else fprintf(f, "%.1f", 100.0 * floor_ms / r->ms);
    }
    fputs(", \"device\":", f);
    json_str(f, c->device);
    fprintf(f, ", \"date\":\"%s\", \"commit\":", c->date);
    json_str(f, c->commit);
    fputs("}\n", f);
}

void bench_emit(const struct bench_ctx *c, const struct bench_rec *r)
{
    if (c->o->json || c->o->dry_run) emit_one(stdout, c, r);
    if (c->jsonl) {
        emit_one(c->jsonl, c, r);
        fflush(c->jsonl);
    }
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

struct bench_stat bench_stat_of(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return (struct bench_stat){v[n / 2], v[0], v[n - 1]};
}

double bench_percentile(double *v, int n, double p)
{
    if (n < 1) return 0;
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    int k = (int)(p / 100.0 * n + 0.999999) - 1; /* nearest rank: ceil(p n) - 1 */
    return v[k < 0 ? 0 : k >= n ? n - 1 : k];
}

double bench_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* The commit the records name: MK_COMMIT when set, else the one this binary was built
 * from (the Makefile's build_commit.c; not the working directory's, which on the device
 * is whatever tree the binary was carried in). */
extern const char mk_build_commit[];

static void commit_id(char *out, size_t cap)
{
    const char *env = getenv("MK_COMMIT");
    snprintf(out, cap, "%s", env && *env ? env : mk_build_commit);
}

/* ---- the measurement plan ----------------------------------------------------- */

static int list_max(const struct bench_list *l)
{
    int m = 0;
    for (int i = 0; i < l->n; i++) m = l->v[i] > m ? l->v[i] : m;
    return m;
}

/* Context of the plan of batch B: every tg and pp test fits. */
static int plan_ctx(const struct bench_opts *o)
{
    int tg = list_max(&o->depth) + list_max(&o->tg) + 8, pp = list_max(&o->pp) + 8;
    return tg > pp ? tg : pp;
}

static const char *const baseline_sys[2] = {"mk-per-op", "mk-per-op-graph"};

/* Run (or, dry, only announce) every measurement of one batch size. */
struct batch_run {
    struct bench_ctx *c;
    const struct mk_model *m;
    struct mk_plan *plan;
    int B;
    double compile_ms, upload_ms, per_op_upload_ms;
    uint32_t n_groups;
    int mismatches;
};

static struct mk_target bench_target(const struct bench_opts *o, int B,
                                     const struct mk_gpu_info *info)
{
    struct mk_target t = mk_target_h100(B, plan_ctx(o));
    if (info) {
        t.sm_count = info->sm_count;
        t.smem_per_block = (int)info->smem_per_block_optin;
    }
    return t;
}

static enum mk_status compile_plan(struct batch_run *br, const struct mk_gpu_info *info)
{
    struct mk_target t = bench_target(br->c->o, br->B, info);
    double t0 = bench_now_ms();
    enum mk_status s = mk_plan_compile(&br->m->cfg, &t, &br->plan);
    br->compile_ms = bench_now_ms() - t0;
    if (s != MK_OK) return s;
    uint32_t *order = malloc(sizeof *order * (br->plan->n_tasks + 1));
    uint32_t *start = malloc(sizeof *start * (br->plan->n_tasks + 1));
    if (!order || !start) s = mk_error(MK_ERR_NOMEM, "bench: no memory for the launch order");
    else s = mk_per_op_groups(br->plan, order, start, &br->n_groups);
    free(order);
    free(start);
    return s;
}

/* Deterministic prompt ids of sequence b. */
static void fill_prompts(int32_t *p, int B, int n, int vocab)
{
    for (int b = 0; b < B; b++)
        for (int i = 0; i < n; i++)
            p[(size_t)b * n + i] = (int32_t)(((int64_t)i * 7919 + (int64_t)b * 104729 + 13) % vocab);
}

struct table_row {
    struct bench_rec r;
    struct bench_stat st;
    int tokens_per_unit;   /* tokens per measured ms unit: B (tg) or B * N (pp) */
};

struct table {
    struct table_row rows[512];
    int n;
};

static void add_row(struct table *tb, const struct bench_ctx *c, const struct bench_rec *r,
                    struct bench_stat st, int tokens)
{
    bench_emit(c, r);
    if (tb->n < (int)(sizeof tb->rows / sizeof tb->rows[0]))
        tb->rows[tb->n++] = (struct table_row){*r, st, tokens};
}

/* Bytes one decode step of tgN at depth D must read: the weights once
 * (mk_config_step_bytes) and K and V of the B sequences at the mean context D + N / 2.
 * The floor of the test is this / BENCH_FLOOR_GBPS: the weights part alone is ANCHORS.md's
 * floor (Qwen3-0.6B 1.19 GB -> 0.39 ms, Llama-3.2-1B 2.47 GB -> 0.81 ms, Qwen3-8B
 * 15.14 GB -> 4.95 ms); the KV part grows with the context (Qwen3-0.6B, tg128 at depth
 * 4,096: +0.48 GB). */
static double step_bytes(const struct mk_config *cfg, int B, int D, int N)
{
    double kv_per_pos = 2.0 * cfg->n_layers * cfg->n_kv_heads * cfg->head_dim * 2.0;
    return (double)mk_config_step_bytes(cfg) + kv_per_pos * B * (D + N / 2.0);
}


/* --profile / --pgo after the first tg test (bench_profile.c); mk-pgo's row. */
static enum mk_status profile_tg(struct batch_run *br, struct table *tb, struct mk_gpu *g,
                                 const struct mk_gpu_request *req, int32_t *const *tokens,
                                 const struct bench_rec *rec)
{
    struct bench_pgo pr;
    enum mk_status s = bench_profile_tg(br->c, br->m, br->plan, g, req, br->B, tokens, &pr);
    if (s == MK_OK && pr.measured) {
        struct bench_rec pg = *rec;
        pg.system = "mk-pgo";
        pg.ms = pr.st.med;
        add_row(tb, br->c, &pg, pr.st, br->B);
        br->mismatches += pr.mismatch;
    }
    return s;
}

/* The megakernel's tgN at each depth; tokens[d][t] keep the last repetition's output. */
static enum mk_status run_mk_tg(struct batch_run *br, struct table *tb, int32_t ***tokens)
{
    const struct bench_opts *o = br->c->o;
    struct mk_gpu *g = NULL;
    double t0 = bench_now_ms();
    /* The depth prompt is fed one token per step, as the per-op baselines feed it: the
     * prefill rounds activations to bf16, so its KV cache (and, on random weights, a
     * near-tie token later) may differ from the baselines' and fail their token check.
     * ms/token excludes the prompt either way; pp measures the prefill. */
    const struct mk_gpu_options opt = {.prompt_mode = MK_GPU_PROMPT_STEP};
    enum mk_status s = mk_gpu_open(br->m, br->plan, &opt, &g);
    br->upload_ms = bench_now_ms() - t0;
    if (s != MK_OK) return s;
    int B = br->B;
    for (int d = 0; d < o->depth.n && s == MK_OK; d++) {
        int D = o->depth.v[d], P = D > 0 ? D : 1;
        int32_t *prompt = malloc(sizeof(int32_t) * (size_t)P * B);
        if (!prompt) { s = mk_error(MK_ERR_NOMEM, "bench: no memory"); break; }
        fill_prompts(prompt, B, P, br->m->cfg.vocab_size);
        for (int t = 0; t < o->tg.n && s == MK_OK; t++) {
            int N = o->tg.v[t];
            struct mk_gpu_request req[BENCH_MAX_BATCH];
            int32_t *outp[BENCH_MAX_BATCH];
            for (int b = 0; b < B; b++) {
                req[b] = (struct mk_gpu_request){.prompt = prompt + (size_t)b * P, .prompt_len = P,
                                                 .max_new = N, .ignore_eos = 1};
                outp[b] = tokens[d][t] + (size_t)b * N;
            }
            double ms[1000];
            for (int r = -o->warmup; r < o->reps && s == MK_OK; r++) {
                struct mk_gpu_stats st;
                s = mk_gpu_generate(g, req, B, NULL, NULL, outp, NULL, &st);
                if (s == MK_OK && r >= 0) ms[r] = (st.last_token_ms - st.first_token_ms) / (N - 1);
            }
            if (s != MK_OK) break;
            struct bench_rec rec = {"mk", "", B, D, 0, step_bytes(&br->m->cfg, B, D, N)};
            snprintf(rec.test, sizeof rec.test, "tg%d", N);
            struct bench_stat stt = bench_stat_of(ms, o->reps);
            rec.ms = stt.med;
            add_row(tb, br->c, &rec, stt, B);
            if (d == 0 && t == 0 && (o->profile || o->pgo))
                s = profile_tg(br, tb, g, req, outp, &rec);
        }
        free(prompt);
    }
    mk_gpu_close(g);
    return s;
}

/* First difference between the baseline's tokens and the megakernel's, loudly. */
static int compare_tokens(const struct batch_run *br, const char *sys, int D, int N,
                          const int32_t *want, const int32_t *got)
{
    for (int b = 0; b < br->B; b++)
        for (int i = 0; i < N; i++)
            if (want[(size_t)b * N + i] != got[(size_t)b * N + i]) {
                fprintf(stderr, "mk bench: MISMATCH: %s tg%d depth %d batch %d: sequence %d token "
                        "%d is %d, the megakernel's is %d: the baseline is not computing the "
                        "same model\n", sys, N, D, br->B, b, i, got[(size_t)b * N + i],
                        want[(size_t)b * N + i]);
                return 1;
            }
    return 0;
}

static enum mk_status run_per_op(struct batch_run *br, struct table *tb, int32_t ***tokens)
{
    const struct bench_opts *o = br->c->o;
    int B = br->B, maxpp = list_max(&o->pp);
    struct mk_per_op *po = NULL;
    double t0 = bench_now_ms();
    enum mk_status s = mk_per_op_open(br->m, br->plan, B * maxpp, &po);
    br->per_op_upload_ms = bench_now_ms() - t0;
    if (s != MK_OK) return s;
    for (int k = 0; k < o->pp.n && s == MK_OK; k++) {
        int N = o->pp.v[k];
        int32_t *prompt = malloc(sizeof(int32_t) * (size_t)N * B);
        if (!prompt) { s = mk_error(MK_ERR_NOMEM, "bench: no memory"); break; }
        fill_prompts(prompt, B, N, br->m->cfg.vocab_size);
        double ms[1000];
        for (int r = -o->warmup; r < o->reps && s == MK_OK; r++) {
            double x = 0;
            s = mk_per_op_prefill(po, prompt, B, N, &x);
            if (r >= 0) ms[r] = x;
        }
        free(prompt);
        if (s != MK_OK) break;
        struct bench_rec rec = {"mk", "", B, N, 0, 0};
        snprintf(rec.test, sizeof rec.test, "pp%d", N);
        struct bench_stat st = bench_stat_of(ms, o->reps);
        rec.ms = st.med;
        add_row(tb, br->c, &rec, st, B * N);
    }
    for (int d = 0; o->baselines != BENCH_BASE_NONE && d < o->depth.n && s == MK_OK; d++) {
        int D = o->depth.v[d], P = D > 0 ? D : 1;
        int32_t *prompt = malloc(sizeof(int32_t) * (size_t)P * B);
        int32_t *got = malloc(sizeof(int32_t) * (size_t)B * list_max(&o->tg));
        if (!prompt || !got) s = mk_error(MK_ERR_NOMEM, "bench: no memory");
        else fill_prompts(prompt, B, P, br->m->cfg.vocab_size);
        for (int t = 0; t < o->tg.n && s == MK_OK; t++)
            for (int graph = 0; graph < 2 && s == MK_OK; graph++) {
                int N = o->tg.v[t];
                double ms[1000];
                for (int r = -o->warmup; r < o->reps && s == MK_OK; r++) {
                    double x = 0;
                    s = mk_per_op_decode(po, prompt, B, P, N, graph, got, &x);
                    if (r >= 0) ms[r] = x;
                }
                if (s != MK_OK) break;
                br->mismatches += compare_tokens(br, baseline_sys[graph], D, N, tokens[d][t], got);
                struct bench_rec rec = {baseline_sys[graph], "", B, D, 0,
                                        step_bytes(&br->m->cfg, B, D, N)};
                snprintf(rec.test, sizeof rec.test, "tg%d", N);
                struct bench_stat st = bench_stat_of(ms, o->reps);
                rec.ms = st.med;
                add_row(tb, br->c, &rec, st, B);
            }
        free(prompt);
        free(got);
    }
    mk_per_op_close(po);
    return s;
}

/* tokens[d][t]: B * N ids per (depth, tg), for the baselines' check. */
static int32_t ***alloc_tokens(const struct bench_opts *o, int B)
{
    int32_t ***tk = calloc((size_t)o->depth.n, sizeof *tk);
    for (int d = 0; tk && d < o->depth.n; d++) {
        tk[d] = calloc((size_t)o->tg.n, sizeof **tk);
        for (int t = 0; tk[d] && t < o->tg.n; t++)
            tk[d][t] = calloc((size_t)B * o->tg.v[t], sizeof(int32_t));
    }
    return tk;
}

static void free_tokens(const struct bench_opts *o, int32_t ***tk)
{
    for (int d = 0; tk && d < o->depth.n; d++) {
        for (int t = 0; tk[d] && t < o->tg.n; t++) free(tk[d][t]);
        free(tk[d]);
    }
    free(tk);
}

static bool tokens_ok(const struct bench_opts *o, int32_t ***tk)
{
    for (int d = 0; tk && d < o->depth.n; d++)
        for (int t = 0; t < o->tg.n; t++)
            if (!tk[d] || !tk[d][t]) return false;
    return tk != NULL;
}

static void plan_batch(struct batch_run *br)
{
    const struct bench_opts *o = br->c->o;
    struct bench_rec r = {"mk", "", br->B, 0, -1, 0};
    for (int d = 0; d < o->depth.n; d++)
        for (int t = 0; t < o->tg.n; t++) {
            r.ctx = o->depth.v[d];
            r.step_bytes = step_bytes(&br->m->cfg, br->B, r.ctx, o->tg.v[t]);
            snprintf(r.test, sizeof r.test, "tg%d", o->tg.v[t]);
            r.system = "mk";
            bench_emit(br->c, &r);
            if (o->pgo && d == 0 && t == 0) {
                r.system = "mk-pgo";
                bench_emit(br->c, &r);
            }
            for (int k = 0; o->baselines != BENCH_BASE_NONE && k < 2; k++) {
                r.system = baseline_sys[k];
                bench_emit(br->c, &r);
            }
        }
    r.system = "mk";
    r.step_bytes = 0;
    for (int k = 0; k < o->pp.n; k++) {
        r.ctx = o->pp.v[k];
        snprintf(r.test, sizeof r.test, "pp%d", o->pp.v[k]);
        bench_emit(br->c, &r);
    }
}

static void print_table(const struct bench_ctx *c, const struct table *tb, double ceil_gbps)
{
    printf("\n| system | test | batch | ctx | ms | min..max | tok/s | GB/s | floor ms | %% floor | "
           "%% ceiling |\n|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < tb->n; i++) {
        const struct table_row *w = &tb->rows[i];
        double tps = w->tokens_per_unit * 1e3 / w->r.ms;
        printf("| %s | %s | %d | %d | %.4f | %.4f..%.4f | %.1f |", w->r.system, w->r.test,
               w->r.batch, w->r.ctx, w->r.ms, w->st.min, w->st.max, tps);
        if (w->r.step_bytes > 0) {
            double gbps = w->r.step_bytes / (w->r.ms * 1e6);
            printf(" %.0f | %.4f | %.1f | ", gbps, w->r.step_bytes / (BENCH_FLOOR_GBPS * 1e6),
                   100.0 * gbps / BENCH_FLOOR_GBPS);
            if (ceil_gbps > 0) printf("%.1f |\n", 100.0 * gbps / ceil_gbps);
            else printf("- |\n");
        } else {
            printf(" - | - | - | - |\n");
        }
    }
    (void)c;
}

static int bench_batch(struct batch_run *br, struct table *tb, const struct mk_gpu_info *info)
{
    const struct bench_opts *o = br->c->o;
    enum mk_status s = compile_plan(br, info);
    if (s != MK_OK) {
        fprintf(stderr, "mk bench: batch %d: %s\n", br->B, mk_errmsg());
        return MK_EXIT_FAIL;
    }
    if (o->dry_run) {
        fprintf(stderr, "batch %d: plan %u tasks in %u op groups (per-op launches per step)\n",
                br->B, br->plan->n_tasks, br->n_groups);
        plan_batch(br);
        return MK_EXIT_OK;
    }
    int32_t ***tk = alloc_tokens(o, br->B);
    if (!tokens_ok(o, tk)) s = mk_error(MK_ERR_NOMEM, "bench: no memory for the tokens");
    if (s == MK_OK) s = run_mk_tg(br, tb, tk);
    if (s == MK_OK && (o->baselines != BENCH_BASE_NONE || o->pp.n)) s = run_per_op(br, tb, tk);
    free_tokens(o, tk);
    if (!o->json)
        printf("batch %d: plan %u tasks in %u op groups, compiled in %.1f ms (predicted %.4f "
               "ms/step); upload %.0f ms (megakernel), %.0f ms (per-op + prefill)\n",
               br->B, br->plan->n_tasks, br->n_groups, br->compile_ms,
               br->plan->predicted_step_ns / 1e6, br->upload_ms, br->per_op_upload_ms);
    if (s != MK_OK) {
        fprintf(stderr, "mk bench: batch %d: %s\n", br->B, mk_errmsg());
        return MK_EXIT_FAIL;
    }
    return br->mismatches ? MK_EXIT_FAIL : MK_EXIT_OK;
}

static int bench_all(struct bench_ctx *c, const struct mk_model *m, const struct mk_gpu_info *info)
{
    const struct bench_opts *o = c->o;
    double s1 = 0, s4 = 0;
    if (!o->dry_run && !getenv("MK_BENCH_NO_CEILING") &&
        mk_gpu_stream_bench(1ull << 31, 9, &s1, &s4) != MK_OK) {
        fprintf(stderr, "mk bench: streaming-read ceiling: %s\n", mk_errmsg());
        return MK_EXIT_FAIL;
    }
    if (!o->dry_run && !o->json) {
        printf("model %s (%s): %.2f GB of weights per step (floor %.3f ms at %d GB/s, "
               "ANCHORS.md); load %.0f ms\n", o->name, o->dir, mk_config_step_bytes(&m->cfg) / 1e9,
               mk_config_step_bytes(&m->cfg) / (BENCH_FLOOR_GBPS * 1e6), BENCH_FLOOR_GBPS,
               m->load_seconds * 1e3);
        printf("device %s, %d SMs; streaming-read ceiling (2 GiB, GEMV load style): %.0f GB/s "
               "(1 CTA/SM), %.0f GB/s (4 CTAs/SM); floor %d GB/s (ANCHORS.md)\n",
               c->device, info->sm_count, s1, s4, BENCH_FLOOR_GBPS);
        printf("tg: the depth prompt is fed one token per step (as in the per-op baselines), "
               "ms = per decode step (B tokens); pp: ms = whole prefill (tensor cores)\n");
    }
    static struct table tb;
    tb.n = 0;
    int rc = MK_EXIT_OK;
    for (int i = 0; i < o->batch.n && rc == MK_EXIT_OK; i++) {
        struct batch_run br = {.c = c, .m = m, .B = o->batch.v[i]};
        rc = bench_batch(&br, &tb, o->dry_run ? NULL : info);
        mk_plan_free(br.plan);
    }
    if (!o->dry_run && !o->json) print_table(c, &tb, s1 > s4 ? s1 : s4);
    return rc;
}

int mk_cmd_bench(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        fputs(usage, stdout);
        return MK_EXIT_OK;
    }
    struct bench_opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc != MK_EXIT_OK) return rc;
    struct bench_ctx c = {.o = &o};
    struct mk_gpu_info info = {0};
    if (mk_gpu_query(&info) != MK_OK) {
        if (!o.dry_run) {
            fprintf(stderr, "mk bench: %s\n", mk_errmsg());
            return MK_EXIT_NO_GPU;
        }
        snprintf(c.device, sizeof c.device, "none");
    } else {
        snprintf(c.device, sizeof c.device, "%s", info.name);
    }
    time_t now = time(NULL);
    strftime(c.date, sizeof c.date, "%Y-%m-%d", gmtime(&now));
    commit_id(c.commit, sizeof c.commit);
    struct mk_model *m = NULL;
    if (mk_model_load(o.dir, &m) != MK_OK) {
        fprintf(stderr, "mk bench: %s\n", mk_errmsg());
        return MK_EXIT_FAIL;
    }
    if (o.jsonl && !(c.jsonl = fopen(o.jsonl, "a"))) {
        fprintf(stderr, "mk bench: --jsonl %s: cannot open for appending\n", o.jsonl);
        mk_model_free(m);
        return MK_EXIT_FAIL;
    }
    if (o.serve) {
        if (o.dry_run) bench_serve_plan(&c);
        else rc = bench_serve(&c, m);
    } else {
        rc = bench_all(&c, m, &info);
    }
    if (c.jsonl) fclose(c.jsonl);
    mk_model_free(m);
    return rc;
}
