/* Decode continuing in the megakernel after the tensor-core prefill (MK_GPU_PROMPT_PREFILL)
 * against the megakernel feeding the prompt one token per step (MK_GPU_PROMPT_STEP), on
 * the golden tiny checkpoints and a `mk synth --arch qwen3 --preset tiny` model.
 *
 * Greedy ids: equal, or at the first difference a near-tie: under the CPU reference's
 * logits of that step (teacher-forced along the step path's ids) the two ids' logits
 * differ by less than tie * max|logit|, tie = 2x the bound test_gpu_prefill verified the
 * prefill's logits to (2e-2 at head_dim >= 64; 5e-2 bf16 / 8e-2 f32 at the goldens'
 * head_dim 16), the rule of test_gpu_model; the comparison stops there.
 * Also: a stop id as the first token (the sequence inactive from the start, the others
 * unchanged), max_new == 1 (no launch: the arena's logits are the prefill's), tokens
 * delivered to the callback in order, the first one included. */
#include "gpu_util.h"

#include <stdio.h>

enum { B = 3, MAX_NEW = 24, CTX = 256, PMAX = 40 };

static const int LEN[B] = {1, 13, 40};

static double tie_of(const struct mk_model *m)
{
    if (m->cfg.head_dim >= 64) return 4e-2;
    return m->cfg.dtype == MK_DTYPE_BF16 ? 1e-1 : 1.6e-1;
}

struct seen {
    int n[B];
    int order_errors;
};

static bool on_tok(void *ctx, int seq, int index, int32_t tok)
{
    struct seen *s = ctx;
    (void)tok;
    if (seq < 0 || seq >= B || index != s->n[seq]) s->order_errors++;
    else s->n[seq]++;
    return true;
}

/* One batch; out[b][MAX_NEW], counts[b]. */
static void gen(struct mk_gpu *g, const struct mk_gpu_request *req, int n, int32_t out[][MAX_NEW],
                int *counts, struct mk_gpu_stats *st, const char *what)
{
    int32_t *outs[B];
    struct seen sn = {{0}, 0};
    for (int b = 0; b < n; b++) outs[b] = out[b];
    CHECK_OK(mk_gpu_generate(g, req, n, on_tok, &sn, outs, counts, st));
    CHECKF(sn.order_errors == 0, "%s: %d tokens out of order", what, sn.order_errors);
    for (int b = 0; b < n; b++)
        CHECKF(sn.n[b] == counts[b], "%s: seq %d: callback saw %d tokens, counts %d", what, b,
               sn.n[b], counts[b]);
}

/* The reference's logits along `ids` (teacher forcing): logits[i][V] chose ids[i]. */
static void ref_forced(const struct mk_ref *r, const int32_t *prompt, int n, const int32_t *ids,
                       int k, float *logits)
{
    const int V = mk_ref_config(r)->vocab_size;
    struct mk_ref_seq *s = NULL;
    CHECK_OK(mk_ref_seq_new(r, n + k + 1, &s));
    if (!s) return;
    CHECK_OK(mk_ref_forward(r, s, prompt, n, false, logits));
    for (int i = 0; i + 1 < k; i++)
        CHECK_OK(mk_ref_forward(r, s, &ids[i], 1, false, logits + (size_t)(i + 1) * V));
    mk_ref_seq_free(s);
}

static void model_case(struct mk_model *m, const char *name)
{
    const int V = m->cfg.vocab_size;
    struct mk_ref *ref = NULL;
    CHECK_OK(mk_ref_new(m, &ref));
    struct mk_plan *p = gt_plan(&m->cfg, B, CTX);
    struct mk_gpu *gp = NULL, *gs = NULL;
    struct mk_gpu_options step = {.prompt_mode = MK_GPU_PROMPT_STEP};
    if (p) CHECK_OK(mk_gpu_open(m, p, NULL, &gp));
    if (p) CHECK_OK(mk_gpu_open(m, p, &step, &gs));
    float *logits = malloc(sizeof(float) * MAX_NEW * (size_t)V);
    char *arena = p ? malloc(p->arena_bytes) : NULL;
    if (!gp || !gs || !ref || !logits || !arena) goto done;

    int32_t prompts[B][PMAX], op[B][MAX_NEW], os[B][MAX_NEW], o2[B][MAX_NEW];
    int cp[B], cs[B], c2[B];
    struct mk_gpu_request req[B];
    struct mk_gpu_stats stp, sts, st2;
    for (int b = 0; b < B; b++) {
        gt_prompt(prompts[b], LEN[b], V);
        req[b] = (struct mk_gpu_request){.prompt = prompts[b], .prompt_len = LEN[b],
                                         .max_new = MAX_NEW, .ignore_eos = 1};
    }
    char what[128];
    snprintf(what, sizeof what, "%s prefill", name);
    gen(gp, req, B, op, cp, &stp, what);
    snprintf(what, sizeof what, "%s step", name);
    gen(gs, req, B, os, cs, &sts, what);
    CHECKF(stp.steps == MAX_NEW - 1, "%s: prefill launch ran %d steps, expected %d", name,
           stp.steps, MAX_NEW - 1);
    int equal = 0;
    for (int b = 0; b < B; b++) {
        snprintf(what, sizeof what, "%s seq %d (prompt %d): prefill vs step", name, b, LEN[b]);
        CHECKF(cp[b] == MAX_NEW && cs[b] == MAX_NEW, "%s: counts %d, %d", what, cp[b], cs[b]);
        ref_forced(ref, prompts[b], LEN[b], os[b], MAX_NEW, logits);
        int k = gt_compare_greedy(op[b], cp[b], os[b], logits, cs[b], V, tie_of(m), what);
        equal += k == MAX_NEW;
    }
    printf("    %s: %d of %d sequences equal over %d tokens\n", name, equal, B, MAX_NEW);

    /* seq 0 stops at its first token (a stop id), seq 1 has max_new 1, seq 2 goes on */
    int32_t stop0 = op[0][0];
    req[0].stop = &stop0;
    req[0].n_stop = 1;
    req[1].max_new = 1;
    snprintf(what, sizeof what, "%s stop/max_new 1", name);
    gen(gp, req, B, o2, c2, &st2, what);
    CHECKF(c2[0] == 1 && o2[0][0] == op[0][0], "%s: seq 0: %d tokens, first %d; expected 1, %d",
           what, c2[0], o2[0][0], op[0][0]);
    CHECKF(c2[1] == 1 && o2[1][0] == op[1][0], "%s: seq 1: %d tokens, first %d; expected 1, %d",
           what, c2[1], o2[1][0], op[1][0]);
    CHECKF(c2[2] == MAX_NEW && !memcmp(o2[2], op[2], sizeof o2[2]),
           "%s: seq 2 (%d tokens) differs from the same sequence in the first batch", what, c2[2]);
    gen(gs, req, B, o2, c2, &st2, what);
    CHECKF((c2[0] == 1 || os[0][0] != op[0][0]) && c2[1] == 1,
           "%s (step path): counts %d, %d; expected 1, 1", what, c2[0], c2[1]);

    /* every request ends at its first token: no launch, the prefill's logits in the arena */
    for (int b = 0; b < B; b++) req[b].max_new = 1;
    snprintf(what, sizeof what, "%s all max_new 1", name);
    gen(gp, req, B, o2, c2, &st2, what);
    CHECKF(st2.steps == 0, "%s: %d kernel steps, expected none", what, st2.steps);
    int64_t off = gt_buffer(p, "logits");
    CHECK(off >= 0);
    CHECK_OK(mk_gpu_arena_read(gp, arena));
    for (int b = 0; b < B && off >= 0; b++) {
        const float *lg = (const float *)(arena + off) + (size_t)b * V;
        CHECKF(c2[b] == 1 && o2[b][0] == op[b][0] && mk_argmax(lg, V) == o2[b][0],
               "%s: seq %d: %d tokens, token %d, arena argmax %d; expected 1, %d", what, b, c2[b],
               o2[b][0], mk_argmax(lg, V), op[b][0]);
    }
done:
    free(arena);
    free(logits);
    mk_gpu_close(gp);
    mk_gpu_close(gs);
    mk_plan_free(p);
    mk_ref_free(ref);
}

static void test_gpu_prefill_decode_goldens(void)
{
    static const char *const names[] = {"qwen3_bf16", "llama3_bf16", "qwen3_f32",
                                        "llama3_f32", "qwen2_f32",   "mistral_f32"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        struct mk_model *m = gt_golden(names[i]);
        if (m) model_case(m, names[i]);
        mk_model_free(m);
    }
}

static void test_gpu_prefill_decode_synth_tiny(void)
{
    const char *bin = getenv("MK_BIN_FAST");
    char dir[64], cmd[1024];
    snprintf(dir, sizeof dir, "/tmp/mk_pd_XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    snprintf(cmd, sizeof cmd, "'%s' synth --arch qwen3 --preset tiny --out '%s' --seed 11 >/dev/null",
             bin ? bin : "build/mk", dir);
    CHECKF(system(cmd) == 0, "%s", cmd);
    struct mk_model *m = NULL;
    CHECK_OK(mk_model_load(dir, &m));
    if (m) model_case(m, "synth qwen3 tiny");
    mk_model_free(m);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}

int main(void)
{
    RUN(test_gpu_prefill_decode_goldens);
    RUN(test_gpu_prefill_decode_synth_tiny);
    CHECK_EXIT();
}
