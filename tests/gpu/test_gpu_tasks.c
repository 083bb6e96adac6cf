/* Every task body alone on one CTA of the GPU against its CPU twin (mk_interp_run_task)
 * on fresh random state: random activations in the whole arena, random bf16 KV cache,
 * random tokens and positions (each sequence at its own position). Each task starts
 * from the same state on both sides; then the whole arena, the KV cache and the argmax
 * indices are compared.
 *
 * Bounds: activations rel <= 1e-4 per buffer (max|gpu - cpu| / max|cpu|): both sides
 * compute in fp32 on the same bf16 weights and differ in summation order, rsqrtf, expf,
 * sincosf (observed ~1e-6). KV cache rel <= 1e-2: both round the same fp32 k/v to bf16,
 * and a 1-ulp fp32 difference can flip the rounding by one bf16 ulp (2^-8 relative).
 * Argmax indices must be equal (random logits have no near-ties at these sizes).
 * ATTN_PARTIAL split 0 appends k, v and attends over them: when such a one-ulp flip
 * happened (the two KV caches differ) its partials get PART_BOUND: one score moves by
 * ~|q||k| 2^-8 / sqrt(D) <= 1e-3, and so does its share of acc. */
#include "gpu_util.h"
#include "mk/interp.h"

#include <time.h>

#define ACT_BOUND 1e-4
#define KV_BOUND 1e-2
#define PART_BOUND 2e-3

static float frand(void) { return (float)(gt_rand() % 2000001u) / 1e6f - 1.0f; }

struct state {
    char *arena;
    uint16_t *kv;
    int32_t tokens[16], pos[16];
};

static void random_state(const struct mk_plan *p, struct state *s)
{
    float *a = (float *)s->arena;
    for (uint64_t i = 0; i < p->arena_bytes / 4; i++) a[i] = frand();
    for (uint64_t i = 0; i < p->kv_bytes / 2; i++) s->kv[i] = mk_f32_to_bf16(frand());
    const struct mk_config *c = &p->cfg;
    int B = p->target.batch, D = c->head_dim;
    for (uint32_t i = 0; i < p->n_buffers; i++) { /* attention partials: sums > 0 */
        if (strcmp(p->buffers[i].name, "attn_part")) continue;
        float *part = (float *)(s->arena + p->buffers[i].offset);
        for (uint64_t r = 0; r < (uint64_t)p->buffers[i].outer * B * c->n_heads; r++)
            part[r * (D + 2) + D + 1] = 1.5f + frand();
    }
    for (int b = 0; b < B; b++) {
        s->tokens[b] = (int32_t)(gt_rand() % (uint32_t)c->vocab_size);
        s->pos[b] = (int32_t)(gt_rand() % (uint32_t)(p->target.max_ctx - 1));
    }
}

/* Largest relative error over each buffer; argmax indices compared exactly. */
static void compare(const struct mk_plan *p, uint32_t t, const char *gpu, const float *cpu,
                    double bound, double *worst_op)
{
    const struct mk_task *k = &p->tasks[t];
    for (uint32_t i = 0; i < p->n_buffers; i++) {
        const struct mk_buffer *bf = &p->buffers[i];
        const float *g = (const float *)(gpu + bf->offset), *c = cpu + bf->offset / 4;
        size_t n = bf->bytes / 4;
        if (!strcmp(bf->name, "argmax")) {
            for (size_t j = 1; j < n; j += 2)
                CHECKF(!memcmp(&g[j], &c[j], 4), "task %u (%s): argmax entry %zu: gpu %d, cpu %d",
                       t, mk_task_op_name(k->op), j / 2, ((const int32_t *)g)[j],
                       ((const int32_t *)c)[j]);
            continue;
        }
        double e = gt_rel_err(g, c, n);
        CHECKF(e <= bound, "task %u (%s layer %u r[%u,%u) split %u): buffer %s rel err %.3g",
               t, mk_task_op_name(k->op), k->layer, k->r0, k->r1, k->split, bf->name, e);
        if (e > worst_op[k->op]) worst_op[k->op] = e;
    }
}

static void compare_kv(const struct mk_plan *p, uint32_t t, const uint16_t *g, const uint16_t *c,
                       float *tmp_g, float *tmp_c, double *worst_kv)
{
    size_t n = p->kv_bytes / 2;
    for (size_t i = 0; i < n; i++) {
        tmp_g[i] = mk_bf16_to_f32(g[i]);
        tmp_c[i] = mk_bf16_to_f32(c[i]);
    }
    double e = gt_rel_err(tmp_g, tmp_c, n);
    CHECKF(e <= KV_BOUND, "task %u (%s layer %u): KV cache rel err %.3g", t,
           mk_task_op_name(p->tasks[t].op), p->tasks[t].layer, e);
    if (e > *worst_kv) *worst_kv = e;
}

/* Run tasks of model m (all, or with `sparse` the first and last task of each op and
 * layer 0 / last layer only) on GPU and CPU from one random state. */
static void tasks_case(struct mk_model *m, const char *name, int B, bool sparse)
{
    struct mk_plan *p = gt_plan(&m->cfg, B, 256); /* 4 KV splits per head on tiny models */
    if (!p) return;
    void *w = malloc(p->weight_bytes);
    struct mk_interp *it = NULL;
    struct mk_gpu *g = NULL;
    CHECK(w != NULL);
    if (w) CHECK_OK(mk_plan_pack_weights(p, m->st, w));
    if (w) CHECK_OK(mk_interp_new(p, w, &it));
    CHECK_OK(mk_gpu_open(m, p, NULL, &g));
    struct state s = {malloc(p->arena_bytes), malloc(p->kv_bytes), {0}, {0}};
    char *gpu_arena = malloc(p->arena_bytes);
    uint16_t *gpu_kv = malloc(p->kv_bytes);
    float *tg = malloc(p->kv_bytes * 2), *tc = malloc(p->kv_bytes * 2);
    if (!it || !g || !s.arena || !s.kv || !gpu_arena || !gpu_kv || !tg || !tc) goto done;
    random_state(p, &s);
    double worst[MK_TASK_OP_COUNT] = {0}, worst_kv = 0;
    int run = 0;
    int32_t ones[16];
    for (int b = 0; b < 16; b++) ones[b] = 1;
    for (uint32_t t = 0; t < p->n_tasks; t++) {
        const struct mk_task *k = &p->tasks[t];
        if (k->op == MK_TASK_SAMPLE) continue; /* it needs a launch: the model tests cover it */
        if (sparse) {
            bool first = t == 0 || p->tasks[t - 1].op != k->op || p->tasks[t - 1].layer != k->layer;
            bool last = t + 1 == p->n_tasks || p->tasks[t + 1].op != k->op ||
                        p->tasks[t + 1].layer != k->layer;
            bool layer = k->layer == 0xffff || k->layer == 0 || k->layer == m->cfg.n_layers - 1;
            if (!(first || last) || !layer) continue;
        }
        memcpy(mk_interp_arena(it), s.arena, p->arena_bytes);
        memcpy(mk_interp_kv(it), s.kv, p->kv_bytes);
        memcpy(mk_interp_tokens(it), s.tokens, sizeof(int32_t) * (size_t)B);
        memcpy(mk_interp_pos(it), s.pos, sizeof(int32_t) * (size_t)B);
        memcpy(mk_interp_active(it), ones, sizeof(int32_t) * (size_t)B);
        CHECK_OK(mk_gpu_arena_write(g, s.arena));
        CHECK_OK(mk_gpu_kv_write(g, s.kv));
        CHECK_OK(mk_gpu_set_seq_state(g, s.tokens, s.pos));
        CHECK_OK(mk_interp_run_task(it, t));
        CHECK_OK(mk_gpu_run_task(g, t, 0));
        CHECK_OK(mk_gpu_arena_read(g, gpu_arena));
        CHECK_OK(mk_gpu_kv_read(g, gpu_kv));
        bool kv_same = !memcmp(gpu_kv, mk_interp_kv(it), p->kv_bytes);
        compare(p, t, gpu_arena, mk_interp_arena(it), kv_same ? ACT_BOUND : PART_BOUND, worst);
        if (k->op == MK_TASK_ATTN_PARTIAL) /* split 0 appends k, v */
            compare_kv(p, t, gpu_kv, mk_interp_kv(it), tg, tc, &worst_kv);
        run++;
        if (check_case_failures > 20) break;
    }
    printf("    %s B=%d: %d tasks; worst rel err:", name, B, run);
    for (int op = 1; op < MK_TASK_OP_COUNT; op++)
        if (op != MK_TASK_SAMPLE) printf(" %s %.2g", mk_task_op_name((enum mk_task_op)op), worst[op]);
    printf(" KV %.2g\n", worst_kv);
done:
    free(tg);
    free(tc);
    free(gpu_arena);
    free(gpu_kv);
    free(s.arena);
    free(s.kv);
    mk_gpu_close(g);
    mk_interp_free(it);
    free(w);
    mk_plan_free(p);
}

static void test_gpu_tasks_goldens(void)
{
    static const char *const models[] = {"qwen3_bf16", "llama3_f32", "qwen2_f32", "mistral_f32"};
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
        struct mk_model *m = gt_golden(models[i]);
        if (!m) continue;
        tasks_case(m, models[i], 3, false);
        tasks_case(m, models[i], 16, true);
        mk_model_free(m);
    }
}

static void test_gpu_tasks_qwen3_06b(void)
{
    const char *dir = getenv("MK_GPU_QWEN3_06B");
    if (!dir) {
        printf("    skipped: MK_GPU_QWEN3_06B not set\n");
        return;
    }
    struct mk_model *m = NULL;
    CHECK_OK(mk_model_load(dir, &m));
    if (!m) return;
    tasks_case(m, "qwen3-0.6b", 1, true);
    tasks_case(m, "qwen3-0.6b", 5, true);
    mk_model_free(m);
}

int main(void)
{
    gt_rng ^= (uint64_t)time(NULL);
    printf("    random state seed %llu\n", (unsigned long long)gt_rng);
    RUN(test_gpu_tasks_goldens);
    RUN(test_gpu_tasks_qwen3_06b);
    CHECK_EXIT();
}
