/* Plans as files: a versioned, checksummed binary (save/load) and JSON / Graphviz dumps.
 *
 * Binary layout (little-endian host layout; a plan is for the machine that made it):
 *   "MKPLAN\r\n"  magic (8 bytes)
 *   u32 MK_PLAN_VERSION, u32 sizeof(struct mk_task), u32 sizeof(struct mk_config),
 *   u32 sizeof(struct mk_target)
 *   struct mk_config, struct mk_target
 *   u32 n_tasks, n_waits, n_signals, n_events, n_buffers, n_weights
 *   u64 arena_bytes, weight_bytes, kv_bytes; f64 predicted_step_ns
 *   u32 act_chunk, weight_stages, stage_bytes
 *   tasks[n_tasks], waits[n_waits], signals[n_signals], events[n_events],
 *   buffers[n_buffers], weights[n_weights], prog_start[sm_count + 1],
 *   prog_tasks[n_tasks], task_cost_ns[n_tasks]
 *   u64 FNV-1a of every byte before it
 * Load checks magic, version, sizes, lengths and the checksum, then mk_plan_check.
 */
#include "compile_int.h"

#include <stdlib.h>
#include <string.h>

static const char MAGIC[8] = {'M', 'K', 'P', 'L', 'A', 'N', '\r', '\n'};
enum { MAX_PLAN_FILE = 1 << 30 };

struct wbuf { unsigned char *p; size_t n, cap; bool oom; };

static void put(struct wbuf *b, const void *src, size_t n)
{
    if (b->oom || !n) return;
    if (b->n + n > b->cap) {
        size_t nc = b->cap ? b->cap : 4096;
        while (nc < b->n + n) nc *= 2;
        unsigned char *q = realloc(b->p, nc);
        if (!q) { b->oom = true; return; }
        b->p = q;
        b->cap = nc;
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}

static uint64_t fnv1a(const unsigned char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

#define PUT(b, x) put(b, &(x), sizeof(x))

enum mk_status mk_plan_save(const struct mk_plan *p, const char *path)
{
    struct wbuf b = {0};
    uint32_t hdr[4] = {MK_PLAN_VERSION, sizeof(struct mk_task), sizeof(struct mk_config),
                       sizeof(struct mk_target)};
    uint32_t counts[6] = {p->n_tasks, p->n_waits, p->n_signals, p->n_events, p->n_buffers, p->n_weights};
    uint32_t smem[3] = {p->act_chunk, p->weight_stages, p->stage_bytes};
    put(&b, MAGIC, sizeof MAGIC);
    put(&b, hdr, sizeof hdr);
    PUT(&b, p->cfg);
    PUT(&b, p->target);
    put(&b, counts, sizeof counts);
    PUT(&b, p->arena_bytes);
    PUT(&b, p->weight_bytes);
    PUT(&b, p->kv_bytes);
    PUT(&b, p->predicted_step_ns);
    put(&b, smem, sizeof smem);
    put(&b, p->tasks, p->n_tasks * sizeof *p->tasks);
    put(&b, p->waits, p->n_waits * sizeof *p->waits);
    put(&b, p->signals, p->n_signals * sizeof *p->signals);
    put(&b, p->events, p->n_events * sizeof *p->events);
    put(&b, p->buffers, p->n_buffers * sizeof *p->buffers);
    put(&b, p->weights, p->n_weights * sizeof *p->weights);
    put(&b, p->prog_start, ((size_t)p->target.sm_count + 1) * sizeof *p->prog_start);
    put(&b, p->prog_tasks, p->n_tasks * sizeof *p->prog_tasks);
    put(&b, p->task_cost_ns, p->n_tasks * sizeof *p->task_cost_ns);
    uint64_t sum = b.oom ? 0 : fnv1a(b.p, b.n);
    PUT(&b, sum);
    if (b.oom) {
        free(b.p);
        return mk_error(MK_ERR_NOMEM, "plan save: out of memory");
    }
    FILE *f = fopen(path, "wb");
    bool ok = f && fwrite(b.p, 1, b.n, f) == b.n;
    if (f && fclose(f)) ok = false;
    free(b.p);
    if (!ok) {
        remove(path);
        return mk_error(MK_ERR_IO, "%s: cannot write the plan", path);
    }
    return MK_OK;
}

struct rbuf { const unsigned char *p; size_t n, at; bool short_read; };

static void get(struct rbuf *r, void *dst, size_t n)
{
    if (r->short_read || n > r->n - r->at) {
        r->short_read = true;
        memset(dst, 0, n);
        return;
    }
    memcpy(dst, r->p + r->at, n);
    r->at += n;
}

/* Allocate and read count elements of size sz (count bounded by the bytes left). */
static void *get_array(struct rbuf *r, size_t count, size_t sz)
{
    if (r->short_read || count > (r->n - r->at) / sz) {
        r->short_read = true;
        return NULL;
    }
    void *d = malloc(count * sz + 1);
    if (d) get(r, d, count * sz);
    return d;
}

#define GET(r, x) get(r, &(x), sizeof(x))

static enum mk_status parse(const char *path, const unsigned char *data, size_t len,
                            struct mk_plan *p)
{
    if (len < sizeof MAGIC + 8 || memcmp(data, MAGIC, sizeof MAGIC))
        return mk_error(MK_ERR_FORMAT, "%s: not a plan file (bad magic)", path);
    uint64_t sum;
    memcpy(&sum, data + len - 8, 8);
    struct rbuf r = {data, len - 8, sizeof MAGIC, false};
    uint32_t hdr[4], counts[6], smem[3];
    get(&r, hdr, sizeof hdr);
    if (hdr[0] != MK_PLAN_VERSION)
        return mk_error(MK_ERR_FORMAT, "%s: plan version %u, expected %u", path, hdr[0], MK_PLAN_VERSION);
    if (hdr[1] != sizeof(struct mk_task) || hdr[2] != sizeof(struct mk_config) ||
        hdr[3] != sizeof(struct mk_target))
        return mk_error(MK_ERR_FORMAT, "%s: plan written by an incompatible build", path);
    if (fnv1a(data, len - 8) != sum) return mk_error(MK_ERR_FORMAT, "%s: checksum mismatch", path);
    p->version = hdr[0];
    GET(&r, p->cfg);
    GET(&r, p->target);
    get(&r, counts, sizeof counts);
    p->n_tasks = counts[0]; p->n_waits = counts[1]; p->n_signals = counts[2];
    p->n_events = counts[3]; p->n_buffers = counts[4]; p->n_weights = counts[5];
    GET(&r, p->arena_bytes);
    GET(&r, p->weight_bytes);
    GET(&r, p->kv_bytes);
    GET(&r, p->predicted_step_ns);
    get(&r, smem, sizeof smem);
    p->act_chunk = smem[0]; p->weight_stages = smem[1]; p->stage_bytes = smem[2];
    if (p->target.sm_count < 1 || p->target.sm_count > 4096)
        return mk_error(MK_ERR_FORMAT, "%s: sm_count %d out of range", path, p->target.sm_count);
    p->tasks = get_array(&r, p->n_tasks, sizeof *p->tasks);
    p->waits = get_array(&r, p->n_waits, sizeof *p->waits);
    p->signals = get_array(&r, p->n_signals, sizeof *p->signals);
    p->events = get_array(&r, p->n_events, sizeof *p->events);
    p->buffers = get_array(&r, p->n_buffers, sizeof *p->buffers);
    p->weights = get_array(&r, p->n_weights, sizeof *p->weights);
    p->prog_start = get_array(&r, (size_t)p->target.sm_count + 1, sizeof *p->prog_start);
    p->prog_tasks = get_array(&r, p->n_tasks, sizeof *p->prog_tasks);
    p->task_cost_ns = get_array(&r, p->n_tasks, sizeof *p->task_cost_ns);
    if (r.short_read || r.at != r.n)
        return mk_error(MK_ERR_FORMAT, "%s: plan tables do not match the file length", path);
    if (!p->tasks || !p->waits || !p->signals || !p->events || !p->buffers || !p->weights ||
        !p->prog_start || !p->prog_tasks || !p->task_cost_ns)
        return mk_error(MK_ERR_NOMEM, "%s: out of memory", path);
    for (uint32_t i = 0; i < p->n_buffers; i++) p->buffers[i].name[MK_NAME_MAX - 1] = 0;
    for (uint32_t i = 0; i < p->n_weights; i++) p->weights[i].name[MK_NAME_MAX - 1] = 0;
    enum mk_status s = mk_plan_check(p);
    return s ? mk_error_prefix(s, "%s: ", path) : MK_OK;
}

enum mk_status mk_plan_parse(const void *data, size_t len, const char *what,
                             struct mk_plan **out)
{
    struct mk_plan *p = calloc(1, sizeof *p);
    if (!p) return mk_error(MK_ERR_NOMEM, "%s: out of memory", what);
    enum mk_status s = parse(what, data, len, p);
    if (s) {
        mk_plan_free(p);
        return s;
    }
    *out = p;
    return MK_OK;
}

enum mk_status mk_plan_load(const char *path, struct mk_plan **out)
{
    char *data;
    size_t len;
    enum mk_status s = mk_read_file(path, MAX_PLAN_FILE, &data, &len);
    if (s) return s;
    s = mk_plan_parse(data, len, path, out);
    free(data);
    return s;
}

/* ---- dumps ---------------------------------------------------------------------- */

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') fprintf(f, "\\%c", ch);
        else if (ch < 0x20) fprintf(f, "\\u%04x", ch);
        else fputc(ch, f);
    }
    fputc('"', f);
}

static int *sm_of_tasks(const struct mk_plan *p)
{
    int *sm = malloc((p->n_tasks + 1) * sizeof *sm);
    if (!sm) return NULL;
    for (int i = 0; i < p->target.sm_count; i++)
        for (uint32_t j = p->prog_start[i]; j < p->prog_start[i + 1]; j++) sm[p->prog_tasks[j]] = i;
    return sm;
}

enum mk_status mk_plan_dump_json(const struct mk_plan *p, FILE *f)
{
    int *sm = sm_of_tasks(p);
    if (!sm) return mk_error(MK_ERR_NOMEM, "plan dump: out of memory");
    const struct mk_config *c = &p->cfg;
    const struct mk_target *t = &p->target;
    fprintf(f, "{\"version\": %u,\n \"config\": {\"family\": \"%s\", \"vocab_size\": %d, "
            "\"hidden_size\": %d, \"intermediate_size\": %d, \"n_layers\": %d, \"n_heads\": %d, "
            "\"n_kv_heads\": %d, \"head_dim\": %d},\n", p->version, mk_family_name(c->family),
            c->vocab_size, c->hidden_size, c->intermediate_size, c->n_layers, c->n_heads,
            c->n_kv_heads, c->head_dim);
    fprintf(f, " \"target\": {\"sm_count\": %d, \"smem_per_block\": %d, \"batch\": %d, "
            "\"max_ctx\": %d, \"mem_gbps\": %.1f, \"sync_ns\": %.1f},\n", t->sm_count,
            t->smem_per_block, t->batch, t->max_ctx, t->mem_gbps, t->sync_ns);
    fprintf(f, " \"predicted_step_ns\": %.1f, \"arena_bytes\": %llu, \"weight_bytes\": %llu, "
            "\"kv_bytes\": %llu, \"act_chunk\": %u, \"weight_stages\": %u, \"stage_bytes\": %u,\n",
            p->predicted_step_ns, (unsigned long long)p->arena_bytes,
            (unsigned long long)p->weight_bytes, (unsigned long long)p->kv_bytes, p->act_chunk,
            p->weight_stages, p->stage_bytes);
    fputs(" \"buffers\": [", f);
    for (uint32_t i = 0; i < p->n_buffers; i++) {
        const struct mk_buffer *b = &p->buffers[i];
        fprintf(f, "%s\n  {\"name\": ", i ? "," : "");
        json_str(f, b->name);
        fprintf(f, ", \"offset\": %llu, \"bytes\": %llu, \"outer\": %u, \"cols\": %u}",
                (unsigned long long)b->offset, (unsigned long long)b->bytes, b->outer, b->cols);
    }
    fputs("],\n \"weights\": [", f);
    for (uint32_t i = 0; i < p->n_weights; i++) {
        const struct mk_plan_weight *w = &p->weights[i];
        fprintf(f, "%s\n  {\"name\": ", i ? "," : "");
        json_str(f, w->name);
        fprintf(f, ", \"rows\": %u, \"cols\": %u, \"offset\": %llu, \"view_parts\": %u}", w->rows,
                w->cols, (unsigned long long)w->offset, w->view_parts);
    }
    fputs("],\n \"events\": [", f);
    for (uint32_t e = 0; e < p->n_events; e++) fprintf(f, "%s%u", e ? ", " : "", p->events[e].per_step);
    fputs("],\n \"tasks\": [", f);
    for (uint32_t i = 0; i < p->n_tasks; i++) {
        const struct mk_task *k = &p->tasks[i];
        fprintf(f, "%s\n  {\"id\": %u, \"op\": \"%s\", \"layer\": %d, \"r0\": %u, \"r1\": %u, "
                "\"k0\": %u, \"k1\": %u, \"split\": %u, \"n_split\": %u, \"sm\": %d, "
                "\"cost_ns\": %.1f, \"smem\": %u, \"waits\": [", i ? "," : "", i,
                mk_task_op_name(k->op), k->layer == 0xffff ? -1 : k->layer, k->r0, k->r1, k->k0,
                k->k1, k->split, k->n_split, sm[i], p->task_cost_ns[i], mk_plan_task_smem(p, i));
        for (uint32_t w = 0; w < k->n_wait; w++)
            fprintf(f, "%s[%u, %d]", w ? ", " : "", p->waits[k->wait_first + w].event,
                    p->waits[k->wait_first + w].step_offset);
        fputs("], \"signals\": [", f);
        for (uint32_t s = 0; s < k->n_signal; s++)
            fprintf(f, "%s%u", s ? ", " : "", p->signals[k->signal_first + s]);
        fputs("]}", f);
    }
    fputs("],\n \"programs\": [", f);
    for (int i = 0; i < t->sm_count; i++) {
        fprintf(f, "%s\n  [", i ? "," : "");
        for (uint32_t j = p->prog_start[i]; j < p->prog_start[i + 1]; j++)
            fprintf(f, "%s%u", j > p->prog_start[i] ? ", " : "", p->prog_tasks[j]);
        fputc(']', f);
    }
    fputs("]}\n", f);
    free(sm);
    return ferror(f) ? mk_error(MK_ERR_IO, "plan dump: write failed") : MK_OK;
}

/* Graphviz: one node per task (label op, layer, rows, SM), one edge per (producer,
 * consumer) pair of each wait; previous-step waits dashed. */
enum mk_status mk_plan_dump_dot(const struct mk_plan *p, FILE *f)
{
    int *sm = sm_of_tasks(p);
    uint32_t *ev_start = calloc(p->n_events + 1, sizeof *ev_start);
    uint32_t *ev_prod = calloc(p->n_signals + 1, sizeof *ev_prod);
    uint32_t *fill = calloc(p->n_events + 1, sizeof *fill);
    enum mk_status s = MK_OK;
    if (!sm || !ev_start || !ev_prod || !fill) {
        s = mk_error(MK_ERR_NOMEM, "plan dump: out of memory");
        goto out;
    }
    for (uint32_t e = 0; e < p->n_events; e++) ev_start[e + 1] = ev_start[e] + p->events[e].per_step;
    for (uint32_t t = 0; t < p->n_tasks; t++)
        for (uint32_t j = 0; j < p->tasks[t].n_signal; j++) {
            uint32_t e = p->signals[p->tasks[t].signal_first + j];
            ev_prod[ev_start[e] + fill[e]++] = t;
        }
    fputs("digraph plan {\n  node [shape=box, fontsize=9];\n", f);
    for (uint32_t t = 0; t < p->n_tasks; t++) {
        const struct mk_task *k = &p->tasks[t];
        fprintf(f, "  t%u [label=\"%u %s\\nL%d [%u,%u) s%u/%u\\nSM %d\"];\n", t, t,
                mk_task_op_name(k->op), k->layer == 0xffff ? -1 : k->layer, k->r0, k->r1,
                k->split, k->n_split, sm[t]);
    }
    for (uint32_t t = 0; t < p->n_tasks; t++) {
        const struct mk_task *k = &p->tasks[t];
        for (uint32_t w = 0; w < k->n_wait; w++) {
            const struct mk_wait *wt = &p->waits[k->wait_first + w];
            for (uint32_t j = ev_start[wt->event]; j < ev_start[wt->event + 1]; j++)
                fprintf(f, "  t%u -> t%u [label=\"e%u\"%s];\n", ev_prod[j], t, wt->event,
                        wt->step_offset ? ", style=dashed" : "");
        }
    }
    fputs("}\n", f);
    if (ferror(f)) s = mk_error(MK_ERR_IO, "plan dump: write failed");
out:
    free(sm);
    free(ev_start);
    free(ev_prod);
    free(fill);
    return s;
}
