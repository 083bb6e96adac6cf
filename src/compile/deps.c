/* Dependencies: exact tile-range hazards -> events, waits and signals.
 *
 * The tasks of two consecutive steps are walked in their sequential order (fused-op
 * order, then tile order), the tiles of one fused op as one concurrent group (see
 * compile_int.h: needs from the state before the op, then its reads, then its writes).
 * Every resource (buffer, KV cache of a layer, tokens, pos,
 * active) is a list of segments; each segment remembers its last writer and the readers
 * since that write. A task needs: the last writer of everything it reads (RAW), and
 * the last writer and every reader since of everything it writes (WAW, WAR) — this is
 * what makes buffers reusable across layers and steps. The needs of the second step's
 * tasks are the plan's waits: a need in the same step waits with step_offset 0, one in
 * the previous step with step_offset -1.
 *
 * Needs are then reduced: a need that is an ancestor of another need is dropped. Exact
 * ancestor sets are too big for 8B-class plans (tens of thousands of tasks), so each
 * task instance keeps
 *   bar(t)    = the largest fused-op index F such that every instance of every fused op
 *               <= F is an ancestor of t (the layer structure makes most ops complete:
 *               o-proj waits for all merges, which together cover all of QKV, ...);
 *   recent(t) = its ancestors in fused ops after bar(t), as an explicit sorted list.
 * p is dropped when op(p) <= bar(q) or p in recent(q) for another need q. Dropping only
 * provable ancestors keeps the plan exact; the interpreter's race report checks it.
 *
 * Finally waits are grouped into events: one event per distinct set of producer tasks,
 * per_step = its size; every producer signals each event it belongs to.
 */
#include "compile_int.h"

#include <stdlib.h>
#include <string.h>

struct ivec { int32_t *v; uint32_t n, cap; };

static bool iv_push(struct ivec *a, int32_t x)
{
    if (a->n == a->cap) {
        uint32_t nc = a->cap ? a->cap * 2 : 8;
        int32_t *p = realloc(a->v, nc * sizeof *p);
        if (!p) return false;
        a->v = p;
        a->cap = nc;
    }
    a->v[a->n++] = x;
    return true;
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static void iv_sort_unique(struct ivec *a)
{
    if (a->n < 2) return;
    qsort(a->v, a->n, sizeof *a->v, cmp_i32);
    uint32_t w = 1;
    for (uint32_t i = 1; i < a->n; i++)
        if (a->v[i] != a->v[w - 1]) a->v[w++] = a->v[i];
    a->n = w;
}

struct seg {
    uint32_t lo, hi;
    int32_t writer;
    struct ivec readers;
};

struct res {
    struct seg *s;
    uint32_t n, cap;
};

struct walk {
    struct cstate *c;
    struct res *res;
    uint32_t n_res;
    uint32_t n;           /* tasks per step */
    int32_t *bar;         /* [2n] */
    struct ivec *recent;  /* [2n] */
    struct ivec *kept;    /* [n]: the reduced needs of step 1's instances */
    int32_t *stamp_need, *stamp_cand, *stamp_mark; /* [2n]: set membership by instance */
    bool oom;
};

static uint32_t op_of(const struct walk *w, int32_t inst)
{
    return (uint32_t)inst / w->n * w->c->n_fops + w->c->task_fop[(uint32_t)inst % w->n];
}

/* Index of the segment starting at x, splitting one if needed (x inside [0, size)). */
static uint32_t split_at(struct walk *w, struct res *r, uint32_t x)
{
    uint32_t lo = 0, hi = r->n;
    while (lo < hi) { /* first segment with hi > x */
        uint32_t m = (lo + hi) / 2;
        if (r->s[m].hi <= x) lo = m + 1; else hi = m;
    }
    MK_ASSERT(lo < r->n);
    if (r->s[lo].lo == x) return lo;
    if (r->n == r->cap) {
        uint32_t nc = r->cap * 2;
        struct seg *p = realloc(r->s, nc * sizeof *p);
        if (!p) { w->oom = true; return lo; }
        r->s = p;
        r->cap = nc;
    }
    memmove(&r->s[lo + 2], &r->s[lo + 1], (r->n - lo - 1) * sizeof *r->s);
    r->n++;
    struct seg *a = &r->s[lo], *b = &r->s[lo + 1];
    *b = *a;
    b->lo = x;
    a->hi = x;
    b->readers = (struct ivec){0};
    for (uint32_t i = 0; i < a->readers.n; i++)
        if (!iv_push(&b->readers, a->readers.v[i])) w->oom = true;
    return lo + 1;
}

/* Segments [*first, *last) covering [lo, hi) of r. */
static void span(struct walk *w, struct res *r, uint32_t lo, uint32_t hi, uint32_t *first,
                 uint32_t *last)
{
    uint32_t size = r->s[r->n - 1].hi;
    MK_ASSERT(hi <= size);
    *first = split_at(w, r, lo);
    *last = hi < size ? split_at(w, r, hi) : r->n;
    if (hi < size) *first = split_at(w, r, lo); /* a split at hi may not move lo's index */
}

static void need(struct walk *w, int32_t inst, struct ivec *needs, int32_t p)
{
    if (p < 0 || w->stamp_need[p] == inst) return;
    w->stamp_need[p] = inst;
    if (!iv_push(needs, p)) w->oom = true;
}

static void collect_needs(struct walk *w, int32_t inst, struct ivec *needs)
{
    const struct cstate *c = w->c;
    uint32_t t = (uint32_t)inst % w->n;
    for (uint32_t a = c->acc_start[t]; a < c->acc_start[t + 1]; a++) {
        const struct access *ac = &c->acc[a];
        struct res *r = &w->res[ac->res];
        uint32_t f, l;
        span(w, r, ac->lo, ac->hi, &f, &l);
        for (uint32_t i = f; i < l; i++) {
            need(w, inst, needs, r->s[i].writer);
            if (ac->write)
                for (uint32_t j = 0; j < r->s[i].readers.n; j++)
                    need(w, inst, needs, r->s[i].readers.v[j]);
        }
    }
}

static void apply(struct walk *w, int32_t inst, bool writes)
{
    const struct cstate *c = w->c;
    uint32_t t = (uint32_t)inst % w->n;
    for (uint32_t a = c->acc_start[t]; a < c->acc_start[t + 1]; a++) {
        const struct access *ac = &c->acc[a];
        if (ac->write != writes) continue;
        struct res *r = &w->res[ac->res];
        uint32_t f, l;
        span(w, r, ac->lo, ac->hi, &f, &l);
        for (uint32_t i = f; i < l; i++) {
            struct seg *s = &r->s[i];
            if (writes) {
                s->writer = inst;
                s->readers.n = 0;
            } else if (s->readers.n == 0 || s->readers.v[s->readers.n - 1] != inst) {
                if (!iv_push(&s->readers, inst)) w->oom = true;
            }
        }
    }
}

/* bar/recent of inst from its needs (unique, any order), then the reduced needs into
 * *kept. Sets are deduplicated with per-instance stamps (no sorting: this is the hot
 * loop of the compiler). */
static void reduce(struct walk *w, int32_t inst, const struct ivec *needs, struct ivec *kept)
{
    const struct cstate *c = w->c;
    int32_t bar0 = -1, top = (int32_t)op_of(w, inst);
    for (uint32_t i = 0; i < needs->n; i++)
        if (w->bar[needs->v[i]] > bar0) bar0 = w->bar[needs->v[i]];
    /* candidates: the needs and their recent ancestors, in ops after bar0 */
    struct ivec cand = {0};
    uint32_t span_ops = (uint32_t)(top - bar0);
    uint32_t *per_op = calloc(span_ops + 1, sizeof *per_op);
    if (!per_op) { w->oom = true; return; }
    for (uint32_t i = 0; i < needs->n; i++) {
        const struct ivec *rp = &w->recent[needs->v[i]];
        for (uint32_t j = 0; j <= rp->n; j++) {
            int32_t p = j < rp->n ? rp->v[j] : needs->v[i];
            int32_t op = (int32_t)op_of(w, p);
            if (op <= bar0 || w->stamp_cand[p] == inst) continue;
            w->stamp_cand[p] = inst;
            per_op[op - bar0 - 1]++;
            if (!iv_push(&cand, p)) w->oom = true;
        }
    }
    /* extend bar over the fused ops the candidates cover completely */
    int32_t bar = bar0;
    while (bar + 1 < top && per_op[bar - bar0] == c->fops[(uint32_t)(bar + 1) % c->n_fops].n_tasks)
        bar++;
    free(per_op);
    w->bar[inst] = bar;
    struct ivec *rec = &w->recent[inst];
    for (uint32_t j = 0; j < cand.n; j++)
        if ((int32_t)op_of(w, cand.v[j]) > bar && !iv_push(rec, cand.v[j])) w->oom = true;
    free(cand.v);

    if (!kept) return;
    int32_t M = -1;
    for (uint32_t j = 0; j < needs->n; j++) {
        int32_t q = needs->v[j];
        if (w->bar[q] > M) M = w->bar[q];
        /* p in recent(q) implies p != q: the union of the needs' recent sets is exact */
        for (uint32_t k = 0; k < w->recent[q].n; k++) w->stamp_mark[w->recent[q].v[k]] = inst;
    }
    for (uint32_t j = 0; j < needs->n; j++) {
        int32_t p = needs->v[j];
        if ((int32_t)op_of(w, p) > M && w->stamp_mark[p] != inst && !iv_push(kept, p)) w->oom = true;
    }
}

static enum mk_status walk_init(struct walk *w, struct cstate *c)
{
    memset(w, 0, sizeof *w);
    w->c = c;
    w->n = c->n_tasks;
    w->n_res = res_count(c);
    w->res = calloc(w->n_res, sizeof *w->res);
    w->bar = calloc(2 * (size_t)w->n, sizeof *w->bar);
    w->recent = calloc(2 * (size_t)w->n, sizeof *w->recent);
    w->kept = calloc(w->n, sizeof *w->kept);
    w->stamp_need = malloc(2 * (size_t)w->n * sizeof *w->stamp_need);
    w->stamp_cand = malloc(2 * (size_t)w->n * sizeof *w->stamp_cand);
    w->stamp_mark = malloc(2 * (size_t)w->n * sizeof *w->stamp_mark);
    if (!w->res || !w->bar || !w->recent || !w->kept || !w->stamp_need || !w->stamp_cand ||
        !w->stamp_mark)
        return mk_error(MK_ERR_NOMEM, "compile: out of memory");
    for (uint32_t i = 0; i < 2 * w->n; i++) w->stamp_need[i] = w->stamp_cand[i] = w->stamp_mark[i] = -1;
    for (uint32_t r = 0; r < w->n_res; r++) {
        uint32_t size;
        if (r < c->n_buffers) size = c->buffers[r].outer * c->buffers[r].cols;
        else if (r < res_tokens(c)) size = (uint32_t)c->cfg.n_kv_heads;
        else size = (uint32_t)c->tgt.batch;
        w->res[r].s = calloc(4, sizeof *w->res[r].s);
        if (!w->res[r].s) return mk_error(MK_ERR_NOMEM, "compile: out of memory");
        w->res[r].cap = 4;
        w->res[r].n = 1;
        w->res[r].s[0] = (struct seg){.lo = 0, .hi = size, .writer = -1};
    }
    return MK_OK;
}

static void walk_free(struct walk *w)
{
    for (uint32_t r = 0; w->res && r < w->n_res; r++) {
        for (uint32_t i = 0; i < w->res[r].n; i++) free(w->res[r].s[i].readers.v);
        free(w->res[r].s);
    }
    for (uint32_t i = 0; w->recent && i < 2 * w->n; i++) free(w->recent[i].v);
    for (uint32_t i = 0; w->kept && i < w->n; i++) free(w->kept[i].v);
    free(w->res);
    free(w->bar);
    free(w->recent);
    free(w->kept);
    free(w->stamp_need);
    free(w->stamp_cand);
    free(w->stamp_mark);
}

/* ---- events: one per distinct producer set ---------------------------------------- */

struct evtab {
    uint32_t *start;       /* producers of event e: prod[start[e] .. start[e + 1]) */
    int32_t *prod;
    uint32_t n, cap, n_prod, cap_prod;
    uint32_t *slot;        /* open-addressing hash table of event ids + 1 */
    uint32_t n_slots;
};

static uint64_t hash_list(const int32_t *v, uint32_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (uint32_t i = 0; i < n; i++) h = (h ^ (uint32_t)v[i]) * 1099511628211ull;
    return h;
}

/* Event id of the producer set v[0..n) (sorted), creating it. */
static enum mk_status event_of(struct evtab *e, const int32_t *v, uint32_t n, uint32_t *id)
{
    uint64_t h = hash_list(v, n);
    for (uint32_t k = (uint32_t)(h % e->n_slots);; k = (k + 1) % e->n_slots) {
        uint32_t s = e->slot[k];
        if (!s) break;
        uint32_t ev = s - 1, len = e->start[ev + 1] - e->start[ev];
        if (len == n && !memcmp(&e->prod[e->start[ev]], v, n * sizeof *v)) {
            *id = ev;
            return MK_OK;
        }
    }
    if (e->n + 2 > e->cap || e->n_prod + n > e->cap_prod || 2 * (e->n + 1) > e->n_slots)
        return mk_error(MK_ERR_INTERNAL, "compile: event table full");
    memcpy(&e->prod[e->n_prod], v, n * sizeof *v);
    e->n_prod += n;
    *id = e->n++;
    e->start[e->n] = e->n_prod;
    for (uint32_t k = (uint32_t)(h % e->n_slots);; k = (k + 1) % e->n_slots)
        if (!e->slot[k]) {
            e->slot[k] = *id + 1;
            break;
        }
    return MK_OK;
}

static enum mk_status build_events(struct cstate *c, struct walk *w)
{
    uint32_t n = c->n_tasks, total = 0;
    for (uint32_t t = 0; t < n; t++) total += w->kept[t].n;
    struct evtab e = {0};
    e.cap = 2 * n + 2;
    e.cap_prod = total + 1;
    e.n_slots = 4 * e.cap + 1;
    e.start = calloc(e.cap + 1, sizeof *e.start);
    e.prod = calloc(e.cap_prod, sizeof *e.prod);
    e.slot = calloc(e.n_slots, sizeof *e.slot);
    c->waits = calloc(2 * (size_t)n + 1, sizeof *c->waits);
    c->wait_first = calloc(n, sizeof *c->wait_first);
    c->wait_count = calloc(n, sizeof *c->wait_count);
    c->sig_first = calloc(n, sizeof *c->sig_first);
    c->sig_count = calloc(n, sizeof *c->sig_count);
    enum mk_status s = MK_OK;
    if (!e.start || !e.prod || !e.slot || !c->waits || !c->wait_first || !c->wait_count ||
        !c->sig_first || !c->sig_count)
        s = mk_error(MK_ERR_NOMEM, "compile: out of memory");
    for (uint32_t t = 0; t < n && !s; t++) {
        /* kept is sorted: previous-step producers (instances < n) come first */
        struct ivec *k = &w->kept[t];
        uint32_t split = 0;
        while (split < k->n && k->v[split] < (int32_t)n) split++;
        for (uint32_t i = split; i < k->n; i++) k->v[i] -= (int32_t)n;
        c->wait_first[t] = c->n_waits;
        for (int part = 0; part < 2 && !s; part++) {
            uint32_t lo = part ? split : 0, hi = part ? k->n : split;
            if (lo == hi) continue;
            uint32_t ev = 0;
            s = event_of(&e, &k->v[lo], hi - lo, &ev);
            if (!s) c->waits[c->n_waits++] = (struct mk_wait){ev, part ? 0 : -1};
        }
        c->wait_count[t] = c->n_waits - c->wait_first[t];
    }
    if (!s) {
        c->n_events = e.n;
        c->events = calloc(e.n + 1, sizeof *c->events);
        c->signals = calloc(e.n_prod + 1, sizeof *c->signals);
        if (!c->events || !c->signals) s = mk_error(MK_ERR_NOMEM, "compile: out of memory");
    }
    if (!s) {
        for (uint32_t ev = 0; ev < e.n; ev++) {
            c->events[ev].per_step = e.start[ev + 1] - e.start[ev];
            for (uint32_t i = e.start[ev]; i < e.start[ev + 1]; i++) c->sig_count[e.prod[i]]++;
        }
        uint32_t at = 0;
        for (uint32_t t = 0; t < n; t++) {
            c->sig_first[t] = at;
            at += c->sig_count[t];
            c->sig_count[t] = 0;
        }
        for (uint32_t ev = 0; ev < e.n; ev++)
            for (uint32_t i = e.start[ev]; i < e.start[ev + 1]; i++) {
                uint32_t p = (uint32_t)e.prod[i];
                c->signals[c->sig_first[p] + c->sig_count[p]++] = ev;
            }
        c->n_signals = at;
    }
    free(e.start);
    free(e.prod);
    free(e.slot);
    return s;
}

enum mk_status cs_deps(struct cstate *c)
{
    struct walk w;
    enum mk_status s = walk_init(&w, c);
    struct ivec needs = {0};
    for (int32_t at = 0; !s && at < 2 * (int32_t)w.n;) {
        /* the instances [at, end) of one fused op: tasks are emitted op by op */
        const struct fop *f = &c->fops[c->task_fop[(uint32_t)at % w.n]];
        int32_t end = at - (int32_t)((uint32_t)at % w.n) + (int32_t)(f->first_task + f->n_tasks);
        for (int32_t inst = at; inst < end; inst++) {
            needs.n = 0;
            collect_needs(&w, inst, &needs);
            bool step1 = inst >= (int32_t)w.n;
            reduce(&w, inst, &needs, step1 ? &w.kept[inst - (int32_t)w.n] : NULL);
        }
        for (int32_t inst = at; inst < end; inst++) apply(&w, inst, false);
        for (int32_t inst = at; inst < end; inst++) apply(&w, inst, true);
        if (w.oom) s = mk_error(MK_ERR_NOMEM, "compile: out of memory");
        at = end;
    }
    free(needs.v);
    for (uint32_t t = 0; !s && t < w.n; t++) iv_sort_unique(&w.kept[t]);
    if (!s) s = build_events(c, &w);
    walk_free(&w);
    return s;
}
