/* The engine with the CPU backend on a golden checkpoint: a batch gives each request the
 * tokens it gets alone, callbacks arrive in order per request, cancellation ends one
 * request only, stop ids and eos, and request validation. */
#include "check.h"
#include "mk/engine.h"

#include <stdbool.h>

enum { MAX_TOK = 64 };

struct record {
    int n[MK_MAX_BATCH];
    int32_t ids[MK_MAX_BATCH][MAX_TOK];
    enum mk_finish last_finish[MK_MAX_BATCH];
    int cancel_at[MK_MAX_BATCH]; /* return false at this index (-1: never) */
    int order_errors, calls_after_end;
    bool ended[MK_MAX_BATCH];
    int prev_req, switches;      /* how often consecutive callbacks change request */
};

static bool record_token(void *ctx, int req, const struct mk_token *t)
{
    struct record *r = ctx;
    if (r->ended[req]) r->calls_after_end++;
    if (t->index != r->n[req]) r->order_errors++;
    if (r->n[req] < MAX_TOK) r->ids[req][r->n[req]] = t->id;
    r->n[req]++;
    r->last_finish[req] = t->finish;
    if (req != r->prev_req) r->switches++;
    r->prev_req = req;
    if (t->finish != MK_FINISH_NONE) r->ended[req] = true;
    if (t->index == r->cancel_at[req]) {
        r->ended[req] = true;
        return false;
    }
    return true;
}

static void record_init(struct record *r)
{
    memset(r, 0, sizeof *r);
    for (int i = 0; i < MK_MAX_BATCH; i++) r->cancel_at[i] = -1;
    r->prev_req = -1;
}

struct fixture {
    struct mk_model *m;
    struct mk_engine *e;
};

static bool open_fixture(struct fixture *f)
{
    char path[512];
    const char *root = getenv("MK_ROOT");
    snprintf(path, sizeof path, "%s/tests/data/goldens/qwen2_f32/ckpt", root ? root : ".");
    memset(f, 0, sizeof *f);
    struct mk_backend *b = NULL;
    CHECK_OK(mk_model_load(path, &f->m));
    if (f->m) CHECK_OK(mk_backend_cpu_new(f->m, &b));
    if (b) CHECK_OK(mk_engine_new(f->m, NULL, b, &f->e));
    return f->e != NULL;
}

static void close_fixture(struct fixture *f)
{
    mk_engine_free(f->e);
    mk_model_free(f->m);
}

static const int32_t PROMPTS[4][5] = {{1, 17, 42, 99, 5}, {7, 7}, {250, 3, 3}, {100}};
static const int PROMPT_LEN[4] = {5, 2, 3, 1};

static struct mk_request request(int i, int max_tokens, float temperature)
{
    struct mk_request r = {.prompt = PROMPTS[i], .n_prompt = PROMPT_LEN[i], .max_tokens = max_tokens,
                           .sampling = {temperature, 0, 1.0f, (uint64_t)(100 + i)},
                           .ignore_eos = true, .top_logprobs = 2};
    return r;
}

static void batch_equals_alone(void)
{
    struct fixture f;
    if (!open_fixture(&f)) {
        close_fixture(&f);
        return;
    }
    struct mk_request reqs[4];
    for (int i = 0; i < 4; i++) reqs[i] = request(i, 10 + i, i % 2 ? 0.9f : 0.0f);
    struct record batch, alone;
    enum mk_finish fin[4];
    record_init(&batch);
    CHECK_OK(mk_engine_generate(f.e, reqs, 4, record_token, &batch, fin));
    CHECK(batch.order_errors == 0 && batch.calls_after_end == 0);
    CHECK(batch.switches > 4); /* round-robin: the requests interleave */
    for (int i = 0; i < 4; i++) {
        CHECK(fin[i] == MK_FINISH_LENGTH && batch.n[i] == 10 + i);
        CHECK(batch.last_finish[i] == MK_FINISH_LENGTH);
        record_init(&alone);
        enum mk_finish one;
        CHECK_OK(mk_engine_generate(f.e, &reqs[i], 1, record_token, &alone, &one));
        CHECK(alone.n[0] == batch.n[i]);
        CHECK(memcmp(alone.ids[0], batch.ids[i], sizeof(int32_t) * (size_t)batch.n[i]) == 0);
    }
    close_fixture(&f);
}

static void cancel_ends_one_request(void)
{
    struct fixture f;
    if (!open_fixture(&f)) {
        close_fixture(&f);
        return;
    }
    struct mk_request reqs[3] = {request(0, 8, 0), request(1, 8, 0), request(2, 8, 0)};
    struct record rec;
    record_init(&rec);
    rec.cancel_at[1] = 2;
    enum mk_finish fin[3];
    CHECK_OK(mk_engine_generate(f.e, reqs, 3, record_token, &rec, fin));
    CHECK(fin[0] == MK_FINISH_LENGTH && fin[1] == MK_FINISH_CANCELLED && fin[2] == MK_FINISH_LENGTH);
    CHECK(rec.n[0] == 8 && rec.n[1] == 3 && rec.n[2] == 8);
    CHECK(rec.calls_after_end == 0);
    close_fixture(&f);
}

static void stop_ids_and_eos(void)
{
    struct fixture f;
    if (!open_fixture(&f)) {
        close_fixture(&f);
        return;
    }
    struct mk_request r = request(0, 12, 0);
    struct record rec;
    record_init(&rec);
    enum mk_finish fin;
    CHECK_OK(mk_engine_generate(f.e, &r, 1, record_token, &rec, &fin));
    CHECK(rec.n[0] == 12);
    /* A stop id first generated at index 4 ends the request there; it is delivered. */
    int k = 4;
    while (k < 12) {
        bool earlier = false;
        for (int j = 0; j < k; j++) earlier |= rec.ids[0][j] == rec.ids[0][k];
        if (!earlier) break;
        k++;
    }
    CHECK(k < 12);
    const int32_t stop = rec.ids[0][k];
    r.stop_ids[0] = stop;
    r.n_stop_ids = 1;
    struct record rec2;
    record_init(&rec2);
    CHECK_OK(mk_engine_generate(f.e, &r, 1, record_token, &rec2, &fin));
    CHECK(fin == MK_FINISH_STOP && rec2.n[0] == k + 1 && rec2.ids[0][k] == stop);
    CHECK(rec2.last_finish[0] == MK_FINISH_STOP);
    /* The model's eos ids count unless ignore_eos: make the stop id the eos. */
    r.n_stop_ids = 0;
    r.ignore_eos = false;
    f.m->cfg.n_eos = 1;
    f.m->cfg.eos_token_ids[0] = stop;
    record_init(&rec2);
    CHECK_OK(mk_engine_generate(f.e, &r, 1, record_token, &rec2, &fin));
    CHECK(fin == MK_FINISH_STOP && rec2.n[0] == k + 1);
    close_fixture(&f);
}

static void bad_requests_are_refused(void)
{
    struct fixture f;
    if (!open_fixture(&f)) {
        close_fixture(&f);
        return;
    }
    struct record rec;
    record_init(&rec);
    enum mk_finish fin[MK_MAX_BATCH + 1];
    struct mk_request reqs[MK_MAX_BATCH + 1];
    for (int i = 0; i <= MK_MAX_BATCH; i++) reqs[i] = request(i % 4, 2, 0);
    CHECK(mk_engine_generate(f.e, reqs, MK_MAX_BATCH + 1, record_token, &rec, fin) == MK_ERR_LIMIT);
    CHECK(mk_engine_generate(f.e, reqs, 0, record_token, &rec, fin) == MK_ERR_LIMIT);
    const int32_t bad_prompt[2] = {3, 256};
    struct mk_request r = request(0, 2, 0);
    r.prompt = bad_prompt;
    r.n_prompt = 2;
    CHECK(mk_engine_generate(f.e, &r, 1, record_token, &rec, fin) == MK_ERR_ARG);
    CHECK(strstr(mk_errmsg(), "prompt[1]") != NULL);
    r = request(0, 0, 0);
    CHECK(mk_engine_generate(f.e, &r, 1, record_token, &rec, fin) == MK_ERR_ARG);
    r = request(0, f.m->cfg.max_position, 0);
    CHECK(mk_engine_generate(f.e, &r, 1, record_token, &rec, fin) == MK_ERR_LIMIT);
    r = request(0, 2, -1.0f);
    CHECK(mk_engine_generate(f.e, &r, 1, record_token, &rec, fin) == MK_ERR_ARG);
    r = request(0, 2, 0);
    r.sampling.top_p = 2.0f;
    CHECK(mk_engine_generate(f.e, &r, 1, record_token, &rec, fin) == MK_ERR_ARG);
    r = request(0, 2, 0);
    r.top_logprobs = MK_TOP_MAX + 1;
    CHECK(mk_engine_generate(f.e, &r, 1, record_token, &rec, fin) == MK_ERR_ARG);
    r = request(0, 2, 0);
    r.n_stop_ids = 1;
    r.stop_ids[0] = -3;
    CHECK(mk_engine_generate(f.e, &r, 1, record_token, &rec, fin) == MK_ERR_ARG);
    /* A valid request in a batch with an invalid one: nothing runs. */
    reqs[1].max_tokens = 0;
    CHECK(mk_engine_generate(f.e, reqs, 2, record_token, &rec, fin) == MK_ERR_ARG);
    CHECK(strstr(mk_errmsg(), "request 1") != NULL);
    CHECK(rec.n[0] == 0 && rec.n[1] == 0 && fin[0] == MK_FINISH_NONE);
    close_fixture(&f);
}

int main(void)
{
    RUN(batch_equals_alone);
    RUN(cancel_ends_one_request);
    RUN(stop_ids_and_eos);
    RUN(bad_requests_are_refused);
    CHECK_EXIT();
}
