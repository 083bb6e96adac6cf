/* Shared pieces of `mk bench` (cmd_bench.c: decode/prefill table and baselines;
 * bench_serve.c: the request-stream simulation): options, the result record and its
 * one JSON line (the bench/results.jsonl format). */
#ifndef MK_TOOLS_BENCH_H
#define MK_TOOLS_BENCH_H

#include "mk/load.h"

#include <stdbool.h>
#include <stdio.h>

enum { BENCH_MAX_LIST = 16, BENCH_MAX_BATCH = 16 };

struct bench_list {
    int v[BENCH_MAX_LIST];
    int n;
};

enum bench_baselines { BENCH_BASE_NONE, BENCH_BASE_PER_OP, BENCH_BASE_ALL };

struct bench_opts {
    const char *dir, *name, *jsonl;
    struct bench_list tg, pp, depth, batch;
    int reps, warmup, seed;
    bool json, dry_run, serve;
    enum bench_baselines baselines;
    int requests, prompt_len, gen; /* --serve-sim */
    double rate;                   /* requests per second */
    const char *profile;           /* --profile PREFIX: PREFIX.json (Perfetto), PREFIX.txt */
    int profile_steps;             /* decode steps profiled at most (default 32) */
    int profile_trace_steps;       /* of those, steps written to PREFIX.json (default 4) */
    bool pgo;                      /* --pgo: measure the profile-guided plan too */
};

/* What every JSON line of one run shares. */
struct bench_ctx {
    const struct bench_opts *o;
    char device[128], date[16], commit[48];
    FILE *jsonl;                   /* --jsonl FILE (append), or NULL */
};

/* One measurement; ms < 0: planned, not measured (--dry-run: "ms": null). */
struct bench_rec {
    const char *system;            /* "mk", "mk-per-op", "mk-per-op-graph" */
    char test[32];                 /* "tg128", "pp512", "serve-ttft-p50", ... */
    int batch, ctx;
    double ms;
    double step_bytes;             /* decode (tg) tests: bytes one step must read (weights
                                      + the KV cache at the mean context), else 0; the JSON
                                      then carries it, floor_ms and pct_floor */
};

/* The read bandwidth of the floor: ANCHORS.md's measured H100 read bandwidth (GB/s). */
enum { BENCH_FLOOR_GBPS = 3060 };

/* Print r as one JSON line to stdout when --json / --dry-run, and append it to --jsonl. */
void bench_emit(const struct bench_ctx *c, const struct bench_rec *r);

/* Median and extremes of v[0..n) (sorted in place). */
struct bench_stat {
    double med, min, max;
};
struct bench_stat bench_stat_of(double *v, int n);

/* p-th percentile (0..100, nearest rank) of v[0..n), sorted in place; 0 when n == 0. */
double bench_percentile(double *v, int n, double p);

double bench_now_ms(void);

/* What --profile / --pgo found for one tg test (bench_profile.c). */
struct mk_gpu;
struct mk_gpu_request;
struct mk_plan;
struct bench_pgo {
    double step_model_ns, crit_model_ns;     /* profiled step wall (median), critical path */
    double predicted_model_ns;               /* the cost model's step of the plan */
    double sync_model_ns, sync_pgo_ns;       /* target.sync_ns; the critical path's mean
                                                event-hop wait (what --pgo schedules with) */
    bool measured;                           /* --pgo ran: the fields below are set */
    struct bench_stat st;                    /* ms/token of the profile-guided plan */
    double predicted_pgo_ns;                 /* mk_plan_schedule's step with measured times */
    double step_pgo_ns, crit_pgo_ns;         /* its profile */
    int mismatch;                            /* 1: its tokens differ from the model plan's */
};

/* Profile one more generate of req on g (the megakernel of plan p, prompt fed one token
 * per step), write --profile's files, print the summary; with --pgo reschedule p with
 * the measured task times and sync latency, measure the same test on it (its tokens
 * compared with `tokens`, the model plan's) and restore p's programs. */
enum mk_status bench_profile_tg(const struct bench_ctx *c, const struct mk_model *m,
                                struct mk_plan *p, struct mk_gpu *g,
                                const struct mk_gpu_request *req, int n, int32_t *const *tokens,
                                struct bench_pgo *out);

/* --serve-sim: requests through mk_engine_generate on the GPU backend. Exit code. */
int bench_serve(const struct bench_ctx *c, const struct mk_model *m);
/* --serve-sim --dry-run: the planned records. */
void bench_serve_plan(const struct bench_ctx *c);

#endif
