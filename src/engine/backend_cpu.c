/* The CPU reference backend: every request gets its own mk_ref sequence (KV cache); the
 * prompts are run first, then the requests advance round-robin one token each, so the
 * callbacks interleave as they do on the GPU. One run at a time per backend. */
#include "mk/engine.h"
#include "mk/ref.h"

#include <stdlib.h>

struct cpu_backend {
    struct mk_backend base; /* first: the engine sees only this */
    const struct mk_model *model;
    struct mk_ref *ref;
    struct mk_sampler sampler; /* shared by the requests of a run (one thread) */
};

struct cpu_slot {
    struct mk_ref_seq *seq;
    float *logits; /* [V] logits for the request's next token */
    int generated;
    bool done;
};

static bool is_stop(const struct mk_request *r, int32_t id)
{
    for (int i = 0; i < r->n_stop_ids; i++)
        if (r->stop_ids[i] == id) return true;
    return false;
}

/* Choose request i's next token, report it, and feed it back unless the request ended. */
static enum mk_status cpu_step(struct cpu_backend *b, const struct mk_request *r, int i,
                               struct cpu_slot *slot, mk_token_fn on_token, void *ctx,
                               enum mk_finish *finish)
{
    const int V = b->model->cfg.vocab_size;
    struct mk_token t = {0};
    t.index = slot->generated++;
    t.id = mk_sample(&b->sampler, slot->logits, &r->sampling, (uint32_t)t.index);
    t.n_top = r->top_logprobs < V ? r->top_logprobs : V;
    t.logprob = mk_logprobs(slot->logits, V, t.id, t.n_top, t.top_ids, t.top_logprobs);
    t.finish = is_stop(r, t.id) ? MK_FINISH_STOP
             : slot->generated == r->max_tokens ? MK_FINISH_LENGTH : MK_FINISH_NONE;
    const bool go_on = on_token(ctx, i, &t);
    if (t.finish != MK_FINISH_NONE || !go_on) {
        *finish = t.finish != MK_FINISH_NONE ? t.finish : MK_FINISH_CANCELLED;
        slot->done = true;
        return MK_OK;
    }
    return mk_ref_forward(b->ref, slot->seq, &t.id, 1, false, slot->logits);
}

static enum mk_status cpu_run(struct mk_backend *self, const struct mk_request *reqs, int n,
                              mk_token_fn on_token, void *ctx, enum mk_finish *finish)
{
    struct cpu_backend *b = (struct cpu_backend *)self;
    MK_ASSERT(n >= 1 && n <= self->max_batch);
    struct cpu_slot slots[MK_MAX_BATCH] = {{0}};
    enum mk_status st = MK_OK;
    for (int i = 0; i < n && st == MK_OK; i++) {
        finish[i] = MK_FINISH_NONE;
        st = mk_ref_seq_new(b->ref, reqs[i].n_prompt + reqs[i].max_tokens, &slots[i].seq);
        slots[i].logits = st == MK_OK ? malloc((size_t)b->model->cfg.vocab_size * sizeof(float)) : NULL;
        if (st == MK_OK && !slots[i].logits) st = mk_error(MK_ERR_NOMEM, "cpu backend: out of memory");
        if (st == MK_OK)
            st = mk_ref_forward(b->ref, slots[i].seq, reqs[i].prompt, reqs[i].n_prompt, false,
                                slots[i].logits);
    }
    for (int active = n; st == MK_OK && active > 0;) {
        active = 0;
        for (int i = 0; i < n && st == MK_OK; i++) {
            if (slots[i].done) continue;
            st = cpu_step(b, &reqs[i], i, &slots[i], on_token, ctx, &finish[i]);
            active += !slots[i].done;
        }
    }
    for (int i = 0; i < n; i++) {
        mk_ref_seq_free(slots[i].seq);
        free(slots[i].logits);
    }
    return st;
}

static void cpu_free(struct mk_backend *self)
{
    struct cpu_backend *b = (struct cpu_backend *)self;
    if (!b) return;
    mk_ref_free(b->ref);
    mk_sampler_free(&b->sampler);
    free(b);
}

enum mk_status mk_backend_cpu_new(const struct mk_model *m, struct mk_backend **out)
{
    *out = NULL;
    struct cpu_backend *b = calloc(1, sizeof *b);
    if (!b) return mk_error(MK_ERR_NOMEM, "cpu backend: out of memory");
    b->base = (struct mk_backend){"cpu", MK_MAX_BATCH, m->cfg.max_position, cpu_run, cpu_free};
    b->model = m;
    enum mk_status st = mk_ref_new(m, &b->ref);
    if (st == MK_OK) st = mk_sampler_init(&b->sampler, m->cfg.vocab_size);
    if (st != MK_OK) {
        cpu_free(&b->base);
        return st;
    }
    *out = &b->base;
    return MK_OK;
}
