/* The plan interpreter: reproduces the CPU reference (src/ref) on the committed tiny
 * checkpoints of every family, for several targets, in 20 random event-respecting orders
 * per plan (bit-identical across orders, no race); removing any single one of the
 * sampled dependency edges is caught (race report or wrong output); one task alone
 * (mk_interp_run_task) touches only its outputs. */
#include "check.h"
#include "mk/interp.h"
#include "mk/ref.h"

#include <stdlib.h>
#include <string.h>

/* CTX 128 gives 4 KV splits per head on targets with >= 8 SMs; Mistral's sliding
 * window (8) is exercised by running it past 8 positions. */
enum { STEPS_MAX = 10, CTX = 128, ORDERS = 20 };
static int steps_for(const struct mk_config *c) { return c->sliding_window > 0 ? STEPS_MAX : 5; }

static const char *const CKPTS[] = {
    "tests/data/goldens/qwen3_bf16/ckpt", "tests/data/goldens/llama3_bf16/ckpt",
    "tests/data/goldens/qwen3_f32/ckpt",  "tests/data/goldens/llama3_f32/ckpt",
    "tests/data/goldens/qwen2_f32/ckpt",  "tests/data/goldens/mistral_f32/ckpt",
};
struct tgt { int sms, batch; };
static const struct tgt TARGETS[] = {{3, 1}, {16, 4}, {78, 16}, {132, 2}};

/* Tolerance on logits (|logit| <= ~6 here) vs the reference: the interpreter holds
 * weights and the KV cache in bf16, the reference the checkpoint's dtype and an fp32
 * KV cache. bf16 checkpoints: only the KV rounding differs (observed <= 0.053) -> 0.08;
 * fp32 checkpoints add the weight rounding (observed <= 0.15 over 10 steps) -> 0.2.
 * A missing dependency or a wrong op gives errors of 2..5 (seen while developing). */
static double tolerance(const char *dir) { return strstr(dir, "bf16") ? 0.08 : 0.2; }

static struct mk_target target_of(struct tgt t)
{
    struct mk_target x = mk_target_h100(t.batch, CTX);
    x.sm_count = t.sms;
    return x;
}

struct fixture {
    struct mk_model *m;
    struct mk_plan *p;
    void *weights;
};

static bool fixture_open(struct fixture *f, const char *dir, struct tgt t)
{
    memset(f, 0, sizeof *f);
    struct mk_target x = target_of(t);
    enum mk_status s = mk_model_load(dir, &f->m);
    if (!s) s = mk_plan_compile(&f->m->cfg, &x, &f->p);
    if (!s && !(f->weights = calloc(1, f->p->weight_bytes))) s = MK_ERR_NOMEM;
    if (!s) s = mk_plan_pack_weights(f->p, f->m->st, f->weights);
    if (s) printf("    %s (%d SMs, B=%d): %s\n", dir, t.sms, t.batch, mk_errmsg());
    return s == MK_OK;
}

static void fixture_close(struct fixture *f)
{
    free(f->weights);
    mk_plan_free(f->p);
    mk_model_free(f->m);
}

/* Run `steps` steps of plan p from prompt tokens 7*b+3 at pos 0; tokens/logits out. */
static enum mk_status run_plan(const struct mk_plan *p, const void *w, uint64_t seed, int steps,
                               int32_t *tokens, float *logits, struct mk_interp_report *rep)
{
    struct mk_interp *it;
    enum mk_status s = mk_interp_new(p, w, &it);
    if (s) return s;
    for (int b = 0; b < p->target.batch; b++)
        mk_interp_tokens(it)[b] = (7 * b + 3) % p->cfg.vocab_size;
    struct mk_interp_opts o = {.n_steps = steps, .seed = seed, .track_races = true,
                               .tokens_out = tokens, .logits_out = logits};
    s = mk_interp_run(it, &o, rep);
    mk_interp_free(it);
    return s;
}

/* Max |interp - ref| over steps and sequences, feeding the reference the interpreter's
 * tokens; also checks each greedy token is the reference's argmax unless the reference's
 * top two are within 2 tol. */
static double compare_ref(const struct fixture *f, int STEPS, const int32_t *tokens,
                          const float *logits, double tol)
{
    const struct mk_config *c = &f->m->cfg;
    int B = f->p->target.batch, V = c->vocab_size;
    struct mk_ref *r;
    float *ref = malloc((size_t)V * sizeof *ref);
    double worst = 0;
    CHECK_OK(mk_ref_new(f->m, &r));
    for (int b = 0; b < B; b++) {
        if (b >= 3 && b != B - 1) continue; /* rows 0..2 and the last: the ref is slow */
        struct mk_ref_seq *sq;
        CHECK_OK(mk_ref_seq_new(r, f->p->target.max_ctx, &sq));
        for (int s = 0; s < STEPS; s++) {
            int32_t in = s ? tokens[(s - 1) * B + b] : (7 * b + 3) % V;
            CHECK_OK(mk_ref_forward(r, sq, &in, 1, false, ref));
            const float *got = &logits[((size_t)s * B + b) * V];
            int best = 0, second = -1;
            for (int v = 0; v < V; v++) {
                double d = fabs((double)got[v] - ref[v]);
                if (d > worst) worst = d;
                if (ref[v] > ref[best]) { second = best; best = v; }
                else if (v != best && (second < 0 || ref[v] > ref[second])) second = v;
            }
            int tok = tokens[s * B + b];
            CHECKF(tok == best || ref[best] - ref[tok] <= 2 * tol,
                   "step %d seq %d: token %d, reference argmax %d (%g vs %g)", s, b, tok, best,
                   ref[tok], ref[best]);
        }
        mk_ref_seq_free(sq);
    }
    mk_ref_free(r);
    free(ref);
    return worst;
}

static void interp_matches_reference_in_random_orders(void)
{
    for (size_t ci = 0; ci < sizeof CKPTS / sizeof *CKPTS; ci++)
        for (size_t ti = 0; ti < sizeof TARGETS / sizeof *TARGETS; ti++) {
            struct fixture f;
            if (!fixture_open(&f, CKPTS[ci], TARGETS[ti])) {
                CHECK(0);
                continue;
            }
            const int STEPS = steps_for(&f.m->cfg);
            size_t n = (size_t)STEPS * f.p->target.batch, V = (size_t)f.p->cfg.vocab_size;
            int32_t *tok0 = calloc(n, sizeof *tok0), *tok = calloc(n, sizeof *tok);
            float *log0 = calloc(n * V, sizeof *log0), *lg = calloc(n * V, sizeof *lg);
            for (uint64_t seed = 0; seed < ORDERS; seed++) {
                struct mk_interp_report rep;
                CHECK_OK(run_plan(f.p, f.weights, seed, STEPS, seed ? tok : tok0, seed ? lg : log0, &rep));
                CHECKF(rep.races == 0, "%s: %s", CKPTS[ci], rep.first_race);
                CHECKF(rep.tasks_run == (uint64_t)STEPS * f.p->n_tasks, "%llu tasks run",
                       (unsigned long long)rep.tasks_run);
                if (seed)
                    CHECKF(!memcmp(tok, tok0, n * sizeof *tok) && !memcmp(lg, log0, n * V * sizeof *lg),
                           "%s: order %llu differs from order 0", CKPTS[ci], (unsigned long long)seed);
            }
            double tol = tolerance(CKPTS[ci]), worst = compare_ref(&f, STEPS, tok0, log0, tol);
            CHECKF(worst <= tol, "%s, %d SMs, B=%d: max |logit - ref| = %g > %g", CKPTS[ci],
                   TARGETS[ti].sms, TARGETS[ti].batch, worst, tol);
            printf("    %-40s %3d SMs B=%-2d %5u tasks: max |logit - ref| %.2e\n", CKPTS[ci],
                   TARGETS[ti].sms, TARGETS[ti].batch, f.p->n_tasks, worst);
            free(tok0); free(tok); free(log0); free(lg);
            fixture_close(&f);
        }
}

/* Contexts past one KV chunk (MK_PLAN_KV_CHUNK positions): several non-empty splits per
 * head, split 0 appending while the others read older chunks, the merge of a varying
 * number of partials, and a sliding window wider than a chunk (set to 100 on the Llama
 * checkpoint): the reference's logits and no race, over 140 steps (ctx 160, 8 SMs).
 * Tolerance: the bf16 KV rounding drifts further over 140 positions (observed
 * <= 0.104) -> 0.2; ignoring the window in the partition gives 4.2. */
static void long_contexts_span_several_kv_chunks(void)
{
    static const struct { const char *dir; int window; } cases[] = {
        {"tests/data/goldens/qwen3_bf16/ckpt", 0},
        {"tests/data/goldens/llama3_bf16/ckpt", 100},
    };
    enum { LSTEPS = 140, LCTX = 160 };
    const double tol = 0.2;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        struct fixture f = {0};
        struct mk_target x = mk_target_h100(2, LCTX);
        x.sm_count = 8;
        enum mk_status s = mk_model_load(cases[i].dir, &f.m);
        if (!s && cases[i].window) f.m->cfg.sliding_window = cases[i].window;
        if (!s) s = mk_plan_compile(&f.m->cfg, &x, &f.p);
        if (!s && !(f.weights = calloc(1, f.p->weight_bytes))) s = MK_ERR_NOMEM;
        if (!s) s = mk_plan_pack_weights(f.p, f.m->st, f.weights);
        CHECKF(s == MK_OK, "%s: %s", cases[i].dir, mk_errmsg());
        if (s) { fixture_close(&f); continue; }
        uint32_t S = 0;
        for (uint32_t t = 0; t < f.p->n_tasks; t++)
            if (f.p->tasks[t].op == MK_TASK_ATTN_PARTIAL) S = f.p->tasks[t].n_split;
        CHECKF(S >= 2 && mk_plan_kv_nonempty(cases[i].window, LSTEPS, S) >= 2,
               "%u KV splits, %u non-empty at %d positions", S,
               mk_plan_kv_nonempty(cases[i].window, LSTEPS, S), LSTEPS);
        size_t n = (size_t)LSTEPS * 2, V = (size_t)f.p->cfg.vocab_size;
        int32_t *tok = calloc(n, sizeof *tok);
        float *lg = calloc(n * V, sizeof *lg);
        struct mk_interp_report rep;
        CHECK_OK(run_plan(f.p, f.weights, 7, LSTEPS, tok, lg, &rep));
        CHECKF(rep.races == 0, "%s: %s", cases[i].dir, rep.first_race);
        double worst = compare_ref(&f, LSTEPS, tok, lg, tol);
        CHECKF(worst <= tol, "%s: max |logit - ref| = %g > %g", cases[i].dir, worst, tol);
        printf("    %-40s window %3d, %d steps: max |logit - ref| %.2e\n", cases[i].dir,
               cases[i].window, LSTEPS, worst);
        free(tok);
        free(lg);
        fixture_close(&f);
    }
}

/* ---- edge removal ---------------------------------------------------------------- */

/* A copy of p in which consumer c no longer waits for producer q through its wait wi:
 * the wait moves to a new event signalled by the other producers (or is dropped when q
 * was the only one). */
static struct mk_plan *without_edge(const struct mk_plan *p, uint32_t c, uint32_t wi, uint32_t q)
{
    struct mk_plan *x = calloc(1, sizeof *x);
    *x = *p;
    uint32_t ev = p->waits[p->tasks[c].wait_first + wi].event, per = p->events[ev].per_step;
    bool drop = per == 1;
    x->tasks = malloc(p->n_tasks * sizeof *x->tasks);
    x->waits = malloc((p->n_waits + 1) * sizeof *x->waits);
    x->signals = malloc((p->n_signals + per + 1) * sizeof *x->signals);
    x->events = malloc((p->n_events + 1) * sizeof *x->events);
    memcpy(x->events, p->events, p->n_events * sizeof *x->events);
    uint32_t new_ev = p->n_events;
    if (!drop) {
        x->events[new_ev] = (struct mk_event){per - 1, 0};
        x->n_events++;
    }
    x->n_waits = x->n_signals = 0;
    for (uint32_t t = 0; t < p->n_tasks; t++) {
        struct mk_task k = p->tasks[t];
        k.wait_first = x->n_waits;
        k.n_wait = 0;
        for (uint32_t w = 0; w < p->tasks[t].n_wait; w++) {
            struct mk_wait wt = p->waits[p->tasks[t].wait_first + w];
            if (t == c && w == wi) {
                if (drop) continue;
                wt.event = new_ev;
            }
            x->waits[x->n_waits++] = wt;
            k.n_wait++;
        }
        k.signal_first = x->n_signals;
        k.n_signal = 0;
        for (uint32_t s = 0; s < p->tasks[t].n_signal; s++) {
            uint32_t e = p->signals[p->tasks[t].signal_first + s];
            x->signals[x->n_signals++] = e;
            k.n_signal++;
            if (e == ev && t != q && !drop) {
                x->signals[x->n_signals++] = new_ev;
                k.n_signal++;
            }
        }
        x->tasks[t] = k;
    }
    return x;
}

static void free_copy(struct mk_plan *x)
{
    free(x->tasks); free(x->waits); free(x->signals); free(x->events); free(x);
}

static int edges_caught(const char *dir, struct tgt t, uint32_t want, uint32_t *tried)
{
    struct fixture f;
    if (!fixture_open(&f, dir, t)) return -1;
    const struct mk_plan *p = f.p;
    size_t n = (size_t)3 * p->target.batch, V = (size_t)p->cfg.vocab_size;
    int32_t *tok = calloc(n, sizeof *tok), *tok0 = calloc(n, sizeof *tok0);
    float *lg = calloc(n * V, sizeof *lg), *lg0 = calloc(n * V, sizeof *lg0);
    struct mk_interp_report rep;
    CHECK_OK(run_plan(p, f.weights, 1, 3, tok0, lg0, &rep));
    /* every (consumer, wait, producer) edge, sampled evenly */
    uint32_t total = 0;
    for (uint32_t c = 0; c < p->n_tasks; c++)
        for (uint32_t w = 0; w < p->tasks[c].n_wait; w++)
            total += p->events[p->waits[p->tasks[c].wait_first + w].event].per_step;
    uint32_t stride = total > want ? total / want : 1, idx = 0, caught = 0;
    *tried = 0;
    for (uint32_t c = 0; c < p->n_tasks; c++)
        for (uint32_t w = 0; w < p->tasks[c].n_wait; w++) {
            uint32_t ev = p->waits[p->tasks[c].wait_first + w].event;
            for (uint32_t q = 0; q < p->n_tasks; q++)
                for (uint32_t s = 0; s < p->tasks[q].n_signal; s++) {
                    if (p->signals[p->tasks[q].signal_first + s] != ev) continue;
                    if (idx++ % stride) continue;
                    struct mk_plan *x = without_edge(p, c, w, q);
                    enum mk_status st = run_plan(x, f.weights, 1, 3, tok, lg, &rep);
                    bool wrong = st != MK_OK || memcmp(tok, tok0, n * sizeof *tok) ||
                                 memcmp(lg, lg0, n * V * sizeof *lg);
                    if (rep.races || wrong) caught++;
                    else printf("    not caught: edge task %u -> task %u (%s -> %s)\n", q, c,
                                mk_task_op_name(p->tasks[q].op), mk_task_op_name(p->tasks[c].op));
                    (*tried)++;
                    free_copy(x);
                }
        }
    free(tok); free(tok0); free(lg); free(lg0);
    fixture_close(&f);
    return (int)caught;
}

static void removing_any_sampled_edge_is_caught(void)
{
    struct { const char *dir; struct tgt t; } cases[] = {
        {"tests/data/goldens/qwen3_bf16/ckpt", {8, 2}},
        {"tests/data/goldens/mistral_f32/ckpt", {5, 3}},
        {"tests/data/goldens/qwen2_f32/ckpt", {132, 1}},
    };
    uint32_t all = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        uint32_t tried;
        int caught = edges_caught(cases[i].dir, cases[i].t, 30, &tried);
        CHECKF(caught >= 0 && (uint32_t)caught == tried, "%s: %d of %u removed edges caught",
               cases[i].dir, caught, tried);
        all += tried;
    }
    CHECKF(all >= 50, "only %u edges tried", all);
    printf("    %u removed edges tried\n", all);
}

/* One task alone writes exactly its output rows (the GPU one-block harness relies on it). */
static void run_task_touches_only_its_outputs(void)
{
    struct fixture f;
    if (!fixture_open(&f, CKPTS[0], (struct tgt){16, 2})) { CHECK(0); return; }
    struct mk_interp *it;
    CHECK_OK(mk_interp_new(f.p, f.weights, &it));
    size_t words = f.p->arena_bytes / 4;
    float *before = malloc(words * sizeof *before);
    float *arena = mk_interp_arena(it);
    for (size_t i = 0; i < words; i++) arena[i] = (float)((i * 37) % 101) / 50.0f - 1.0f;
    uint32_t t = 0;
    while (f.p->tasks[t].op != MK_TASK_NORM_GATE_UP) t++;
    const struct mk_task *k = &f.p->tasks[t];
    memcpy(before, arena, words * sizeof *before);
    CHECK_OK(mk_interp_run_task(it, t));
    const struct mk_buffer *out = &f.p->buffers[k->out];
    size_t changed = 0, outside = 0;
    for (size_t i = 0; i < words; i++) {
        if (arena[i] == before[i]) continue;
        changed++;
        uint64_t e = i - out->offset / 4;
        bool inside = i * 4 >= out->offset && i * 4 < out->offset + out->bytes &&
                      e % out->cols >= k->r0 && e % out->cols < k->r1;
        if (!inside) outside++;
    }
    CHECK(changed > 0);
    CHECK(outside == 0);
    CHECK(mk_interp_run_task(it, f.p->n_tasks) == MK_ERR_ARG);
    free(before);
    mk_interp_free(it);
    fixture_close(&f);
}

int main(void)
{
    RUN(interp_matches_reference_in_random_orders);
    RUN(long_contexts_span_several_kv_chunks);
    RUN(removing_any_sampled_edge_is_caught);
    RUN(run_task_touches_only_its_outputs);
    CHECK_EXIT();
}
