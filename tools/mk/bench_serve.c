/* mk bench --serve-sim: a stream of requests through the engine API (mk_engine_generate,
 * GPU backend), reported as vLLM's serving benchmark does: TTFT (arrival to first token),
 * TPOT (per request: (last - first token) / (tokens - 1)), ITL (every gap between two
 * tokens of a request), each p50 and p99, plus throughput.
 *
 * Arrivals: Poisson at --rate per second (exponential gaps from a seeded generator),
 * prompts of --prompt-len random ids, --gen tokens each, EOS ignored, greedy. The
 * engine runs one batch at a time to its end (static batching): when it is free it takes
 * every arrived request, up to the largest --batch, or waits for the next arrival. */
#include "bench.h"
#include "cli.h"
#include "mk/engine.h"
#include "mk/runtime.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct serve_req {
    double arrival;  /* ms from the start */
    double *tok_ms;  /* [gen] arrival time of each token, ms from the start */
    int n_tok;
};

struct serve_run {
    struct serve_req *req;
    int first;       /* index of reqs[0] of the running batch */
    double t0;
};

static bool on_token(void *ctx, int i, const struct mk_token *tok)
{
    struct serve_run *r = ctx;
    struct serve_req *q = &r->req[r->first + i];
    q->tok_ms[q->n_tok++] = bench_now_ms() - r->t0;
    (void)tok;
    return true;
}

static bool ignore_token(void *ctx, int i, const struct mk_token *tok)
{
    (void)ctx; (void)i; (void)tok;
    return true;
}

/* splitmix64: the arrivals and prompts of a seed are the same on every machine. */
static uint64_t next_u64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double next_unit(uint64_t *s) /* (0, 1] */
{
    return ((next_u64(s) >> 11) + 1) * (1.0 / 9007199254740992.0);
}

static int max_batch(const struct bench_opts *o)
{
    int b = 1;
    for (int i = 0; i < o->batch.n; i++) b = o->batch.v[i] > b ? o->batch.v[i] : b;
    return b;
}

static const char *const metric_names[6] = {"ttft-p50", "ttft-p99", "tpot-p50",
                                            "tpot-p99", "itl-p50",  "itl-p99"};

static void emit_metrics(const struct bench_ctx *c, const double *v)
{
    for (int k = 0; k < 6; k++) {
        struct bench_rec r = {"mk", "", max_batch(c->o), c->o->prompt_len, v ? v[k] : -1, 0};
        snprintf(r.test, sizeof r.test, "serve-%s", metric_names[k]);
        bench_emit(c, &r);
    }
}

void bench_serve_plan(const struct bench_ctx *c)
{
    emit_metrics(c, NULL);
}

/* Run every request; arrivals on the wall clock. */
static enum mk_status serve_loop(struct mk_engine *e, const struct bench_opts *o,
                                 struct serve_run *run, const int32_t *prompts, int B)
{
    struct mk_request reqs[MK_MAX_BATCH];
    enum mk_finish fin[MK_MAX_BATCH];
    run->t0 = bench_now_ms();
    for (int next = 0; next < o->requests;) {
        double now = bench_now_ms() - run->t0;
        if (run->req[next].arrival > now) {
            double w = run->req[next].arrival - now;
            struct timespec ts = {(time_t)(w / 1e3), (long)(fmod(w, 1e3) * 1e6)};
            nanosleep(&ts, NULL);
            continue;
        }
        int n = 0;
        while (next + n < o->requests && n < B && run->req[next + n].arrival <= now) {
            reqs[n] = (struct mk_request){.prompt = prompts + (size_t)(next + n) * o->prompt_len,
                                          .n_prompt = o->prompt_len, .max_tokens = o->gen,
                                          .ignore_eos = true};
            n++;
        }
        run->first = next;
        enum mk_status s = mk_engine_generate(e, reqs, n, on_token, run, fin);
        if (s != MK_OK) return s;
        next += n;
    }
    return MK_OK;
}

static void report(const struct bench_ctx *c, const struct serve_run *run, double makespan)
{
    const struct bench_opts *o = c->o;
    int R = o->requests;
    double *ttft = malloc(sizeof(double) * R), *tpot = malloc(sizeof(double) * R);
    double *itl = malloc(sizeof(double) * (size_t)R * (o->gen > 1 ? o->gen - 1 : 1));
    if (!ttft || !tpot || !itl) {
        fprintf(stderr, "mk bench: no memory for the report\n");
        free(ttft); free(tpot); free(itl);
        return;
    }
    int n_tpot = 0, n_itl = 0;
    long tokens = 0;
    for (int i = 0; i < R; i++) {
        const struct serve_req *q = &run->req[i];
        tokens += q->n_tok;
        ttft[i] = q->n_tok ? q->tok_ms[0] - q->arrival : 0;
        if (q->n_tok > 1) tpot[n_tpot++] = (q->tok_ms[q->n_tok - 1] - q->tok_ms[0]) / (q->n_tok - 1);
        for (int k = 1; k < q->n_tok; k++) itl[n_itl++] = q->tok_ms[k] - q->tok_ms[k - 1];
    }
    double v[6] = {bench_percentile(ttft, R, 50),      bench_percentile(ttft, R, 99),
                   bench_percentile(tpot, n_tpot, 50), bench_percentile(tpot, n_tpot, 99),
                   bench_percentile(itl, n_itl, 50),   bench_percentile(itl, n_itl, 99)};
    if (!o->json) {
        printf("serve-sim %s: %d requests at %.2f/s (Poisson, seed %d), prompt %d, gen %d, "
               "batches of up to %d (static: a batch runs to its end)\n", o->name, R, o->rate,
               o->seed, o->prompt_len, o->gen, max_batch(o));
        printf("makespan %.0f ms: %.2f requests/s, %.1f output tokens/s\n\n", makespan,
               R * 1e3 / makespan, tokens * 1e3 / makespan);
        printf("| metric | p50 ms | p99 ms |\n|---|---|---|\n");
        const char *rows[3] = {"TTFT", "TPOT", "ITL"};
        for (int k = 0; k < 3; k++) printf("| %s | %.3f | %.3f |\n", rows[k], v[2 * k], v[2 * k + 1]);
    }
    emit_metrics(c, v);
    free(ttft);
    free(tpot);
    free(itl);
}

int bench_serve(const struct bench_ctx *c, const struct mk_model *m)
{
    const struct bench_opts *o = c->o;
    int B = max_batch(o), V = m->cfg.vocab_size;
    struct serve_run run = {0};
    run.req = calloc((size_t)o->requests, sizeof *run.req);
    double *times = calloc((size_t)o->requests * o->gen, sizeof(double));
    int32_t *prompts = malloc(sizeof(int32_t) * (size_t)o->requests * o->prompt_len);
    if (!run.req || !times || !prompts) {
        fprintf(stderr, "mk bench: no memory for %d requests\n", o->requests);
        free(run.req); free(times); free(prompts);
        return MK_EXIT_FAIL;
    }
    uint64_t rng = (uint64_t)o->seed;
    double t = 0;
    for (int i = 0; i < o->requests; i++) {
        t += -log(next_unit(&rng)) / o->rate * 1e3;
        run.req[i] = (struct serve_req){.arrival = t, .tok_ms = times + (size_t)i * o->gen};
        for (int k = 0; k < o->prompt_len; k++)
            prompts[(size_t)i * o->prompt_len + k] = (int32_t)(next_u64(&rng) % (uint64_t)V);
    }
    struct mk_backend *be = NULL;
    struct mk_engine *e = NULL;
    enum mk_status s = mk_backend_gpu_new(m, B, o->prompt_len + o->gen + 8, &be);
    if (s == MK_OK) s = mk_engine_new(m, NULL, be, &e);
    if (s == MK_OK) { /* warm-up: one full batch, not counted */
        struct mk_request w[MK_MAX_BATCH];
        enum mk_finish fin[MK_MAX_BATCH];
        for (int i = 0; i < B; i++)
            w[i] = (struct mk_request){.prompt = prompts, .n_prompt = o->prompt_len,
                                       .max_tokens = o->gen, .ignore_eos = true};
        s = mk_engine_generate(e, w, B, ignore_token, NULL, fin);
    }
    int rc = MK_EXIT_OK;
    if (s == MK_OK) s = serve_loop(e, o, &run, prompts, B);
    if (s == MK_OK) {
        report(c, &run, bench_now_ms() - run.t0);
    } else {
        fprintf(stderr, "mk bench: --serve-sim: %s\n", mk_errmsg());
        rc = MK_EXIT_FAIL;
    }
    mk_engine_free(e);
    free(run.req);
    free(times);
    free(prompts);
    return rc;
}
