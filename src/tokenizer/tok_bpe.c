/* BPE merges on one pre-token, by rank, leftmost first on ties (as HF's heap order).
 *
 * Short words use a quadratic scan over a rank-per-pair array (fast for the usual 2-10
 * bytes); long words a linked list of symbols with a binary heap of candidate merges,
 * O(n log n), like HF's Word::merge_all. Both give the same result; the unit tests
 * compare them. A small direct-mapped cache remembers the ids of short words.
 */
#include "tok_internal.h"

#include <stdlib.h>
#include <string.h>

enum { MK_BPE_SCAN_MAX = 64 };  /* longest word merged by the quadratic scan */

static int32_t pair_rank(const struct mk_tokenizer *t, int32_t a, int32_t b, int32_t *id)
{
    const struct mk_merge_slot *m = mk__tok_merge_find(t, a, b);
    if (!m) return INT32_MAX;
    *id = m->id;
    return m->rank;
}

/* ids[0..n) in place; returns the new length. */
static size_t bpe_scan(const struct mk_tokenizer *t, int32_t *ids, size_t n)
{
    int32_t rank[MK_BPE_SCAN_MAX], merged[MK_BPE_SCAN_MAX];
    for (size_t i = 0; i + 1 < n; i++) rank[i] = pair_rank(t, ids[i], ids[i + 1], &merged[i]);
    while (n > 1) {
        size_t best = 0;
        for (size_t i = 1; i + 1 < n; i++)
            if (rank[i] < rank[best]) best = i;
        if (rank[best] == INT32_MAX) break;
        ids[best] = merged[best];
        /* drop ids[best + 1] and the pair slot best + 1 (there are n - 1 pair slots) */
        size_t tail = n - best - 2;
        memmove(ids + best + 1, ids + best + 2, tail * sizeof *ids);
        if (tail > 0) {
            memmove(rank + best + 1, rank + best + 2, (tail - 1) * sizeof *rank);
            memmove(merged + best + 1, merged + best + 2, (tail - 1) * sizeof *merged);
        }
        n--;
        if (best > 0) rank[best - 1] = pair_rank(t, ids[best - 1], ids[best], &merged[best - 1]);
        if (best + 1 < n) rank[best] = pair_rank(t, ids[best], ids[best + 1], &merged[best]);
    }
    return n;
}

/* ---- heap version --------------------------------------------------------------- */

struct sym {
    int32_t id;
    int32_t prev, next; /* -1 at the ends */
    bool dead;
};

struct cand {
    int32_t rank, pos; /* ordered by (rank, pos) */
    int32_t left, right, id;
};

static bool cand_less(const struct cand *a, const struct cand *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(struct cand *h, size_t *n, struct cand c)
{
    size_t i = (*n)++;
    while (i > 0 && cand_less(&c, &h[(i - 1) / 2])) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = c;
}

static struct cand heap_pop(struct cand *h, size_t *n)
{
    struct cand top = h[0], last = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && cand_less(&h[c + 1], &h[c])) c++;
        if (!cand_less(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = last;
    return top;
}

static void push_pair(const struct mk_tokenizer *t, const struct sym *s, int32_t pos,
                      struct cand *h, size_t *nh)
{
    int32_t nx = s[pos].next, id;
    if (nx < 0) return;
    int32_t r = pair_rank(t, s[pos].id, s[nx].id, &id);
    if (r != INT32_MAX) heap_push(h, nh, (struct cand){r, pos, s[pos].id, s[nx].id, id});
}

/* Heap entries can go stale (a neighbour merged first): they are checked on pop. Each
 * merge pushes at most two, so the heap never exceeds 3n entries. */
static enum mk_status bpe_heap(const struct mk_tokenizer *t, int32_t *ids, size_t *pn)
{
    size_t n = *pn, nh = 0;
    struct sym *s = malloc(n * sizeof *s);
    struct cand *h = malloc(3 * n * sizeof *h);
    if (!s || !h) {
        free(s);
        free(h);
        return mk_error(MK_ERR_NOMEM, "tokenizer: out of memory for a %zu-byte word", n);
    }
    for (size_t i = 0; i < n; i++)
        s[i] = (struct sym){ids[i], (int32_t)i - 1, i + 1 < n ? (int32_t)i + 1 : -1, false};
    for (size_t i = 0; i + 1 < n; i++) push_pair(t, s, (int32_t)i, h, &nh);
    while (nh) {
        struct cand c = heap_pop(h, &nh);
        struct sym *l = &s[c.pos];
        if (l->dead || l->next < 0 || l->id != c.left || s[l->next].id != c.right) continue;
        struct sym *r = &s[l->next];
        l->id = c.id;
        r->dead = true;
        l->next = r->next;
        if (r->next >= 0) s[r->next].prev = c.pos;
        if (l->prev >= 0) push_pair(t, s, l->prev, h, &nh);
        push_pair(t, s, c.pos, h, &nh);
    }
    size_t m = 0;
    for (int32_t i = 0; i >= 0; i = s[i].next) ids[m++] = s[i].id;
    *pn = m;
    free(s);
    free(h);
    return MK_OK;
}

/* ---- cache ------------------------------------------------------------------------ */

static bool cache_get(const struct mk_tokenizer *t, const char *w, size_t n, uint64_t h,
                      struct mk_ids *out, enum mk_status *st)
{
    struct mk_tokenizer *mt = (struct mk_tokenizer *)t; /* the cache is the mutable part */
    if (pthread_mutex_trylock(&mt->cache_lock)) return false;
    const struct mk_cache_entry *e = &t->cache[h & (MK_TOK_CACHE_SLOTS - 1)];
    int32_t ids[MK_TOK_CACHE_IDS];
    size_t k = 0;
    if (e->klen == n && !memcmp(e->key, w, n)) {
        k = e->nids;
        memcpy(ids, e->ids, k * sizeof *ids);
    }
    pthread_mutex_unlock(&mt->cache_lock);
    *st = MK_OK;
    for (size_t i = 0; i < k && *st == MK_OK; i++) *st = mk_ids_push(out, ids[i]);
    return k > 0;
}

static void cache_put(const struct mk_tokenizer *t, const char *w, size_t n, uint64_t h,
                      const int32_t *ids, size_t k)
{
    struct mk_tokenizer *mt = (struct mk_tokenizer *)t;
    if (k > MK_TOK_CACHE_IDS || pthread_mutex_trylock(&mt->cache_lock)) return;
    struct mk_cache_entry *e = &mt->cache[h & (MK_TOK_CACHE_SLOTS - 1)];
    e->klen = (uint8_t)n;
    e->nids = (uint8_t)k;
    memcpy(e->key, w, n);
    memcpy(e->ids, ids, k * sizeof *ids);
    pthread_mutex_unlock(&mt->cache_lock);
}

/* ---- entry ------------------------------------------------------------------------ */

enum mk_status mk__tok_bpe_word(const struct mk_tokenizer *t, const char *w, size_t n, int algo,
                                struct mk_ids *out)
{
    if (n == 1) return mk_ids_push(out, t->byte_id[(uint8_t)w[0]]);
    if (t->ignore_merges) {
        int32_t id = mk__tok_vocab_find(t, w, n);
        if (id >= 0) return mk_ids_push(out, id);
    }
    bool cacheable = algo == 0 && n <= MK_TOK_CACHE_KEY;
    uint64_t h = cacheable ? mk__tok_hash(w, n) : 0;
    enum mk_status st;
    if (cacheable && cache_get(t, w, n, h, out, &st)) return st;
    int32_t small[MK_BPE_SCAN_MAX];
    int32_t *ids = n <= MK_BPE_SCAN_MAX ? small : malloc(n * sizeof *ids);
    if (!ids) return mk_error(MK_ERR_NOMEM, "tokenizer: out of memory for a %zu-byte word", n);
    for (size_t i = 0; i < n; i++) ids[i] = t->byte_id[(uint8_t)w[i]];
    size_t m = n;
    st = MK_OK;
    if (n <= MK_BPE_SCAN_MAX && algo != 2) m = bpe_scan(t, ids, n);
    else st = bpe_heap(t, ids, &m);
    if (st == MK_OK && cacheable) cache_put(t, w, n, h, ids, m);
    for (size_t i = 0; i < m && st == MK_OK; i++) st = mk_ids_push(out, ids[i]);
    if (ids != small) free(ids);
    return st;
}
