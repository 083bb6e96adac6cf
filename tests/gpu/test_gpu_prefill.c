/* The tensor-core prefill (mk/prefill.h) against the CPU reference (mk_ref, fp32):
 * last-token logits, greedy next token and every KV cache entry it writes, on the six
 * golden tiny checkpoints and on two synthesized ones with head_dim 128 (Qwen3 with
 * q/k-norm; Llama 3 with llama3 RoPE scaling and 4 query heads per kv head).
 *
 * Bounds (rel = max|gpu - ref| / max|ref| over a logit row, or over one layer's K or V
 * of one sequence): the GPU rounds GEMM operands (normed activations, attention output,
 * SiLU*mul, softmax weights) and K/V to bf16 (2^-9 relative each, where the megakernel
 * keeps fp32 activations) and sums in another order; fp32 checkpoints are also rounded
 * to bf16 weights. With head_dim 128 and hidden 256..512 (dot products of 128+ terms
 * average the roundings) the worst row measured 0.6e-2 on an H100: rel <= 2e-2. The
 * golden checkpoints (hidden 40..48, head_dim 8..16: few terms per dot product) measured
 * up to 3.2e-2 (bf16) and 4.4e-2 (fp32) on the worst of 45 rows: rel <= 5e-2 and 8e-2.
 * Greedy ids: equal, or a near-tie under the reference's logits.
 * KV cache positions the call does not own keep their poison bytes (nothing written
 * outside [pos0, pos0 + n) of the sequence's own slot).
 *
 * `test_gpu_prefill --bench` times the prefill of Qwen3-8B shapes (random weights made on
 * the device, no checkpoint) for 1, 64, 512 and 2048 tokens and 4 x 64; it asserts
 * nothing. */
#include "gpu_util.h"
#include "mk/prefill.h"
#include "../kernels/prefill_kernels.cuh"

#include <cuda_runtime_api.h>
#include <time.h>
#include <unistd.h>

enum { CTX = 160, NB = 4, POISON = 0xff };

struct dev {
    struct mk_plan *p;
    void *w, *kv;
    struct mk_prefill *pf;
};

static bool dev_open(const struct mk_model *m, int ctx, struct dev *d)
{
    memset(d, 0, sizeof *d);
    d->p = gt_plan(&m->cfg, NB, ctx);
    if (!d->p) return false;
    void *host = malloc(d->p->weight_bytes);
    CHECK(host != NULL);
    if (!host) return false;
    CHECK_OK(mk_plan_pack_weights(d->p, m->st, host));
    bool ok = cudaMalloc(&d->w, d->p->weight_bytes) == cudaSuccess &&
              cudaMemcpy(d->w, host, d->p->weight_bytes, cudaMemcpyHostToDevice) == cudaSuccess &&
              cudaMalloc(&d->kv, d->p->kv_bytes) == cudaSuccess;
    free(host);
    CHECKF(ok, "device allocation of %llu + %llu bytes", (unsigned long long)d->p->weight_bytes,
           (unsigned long long)d->p->kv_bytes);
    if (!ok) return false;
    CHECK_OK(mk_prefill_new(d->p, 512, true, &d->pf));
    return d->pf != NULL;
}

static void dev_close(struct dev *d)
{
    mk_prefill_free(d->pf);
    cudaFree(d->w);
    cudaFree(d->kv);
    mk_plan_free(d->p);
}

static struct mk_prefill_dev dev_mem(const struct dev *d)
{
    return (struct mk_prefill_dev){.weights = d->w, .kv = d->kv, .stream = NULL};
}

static double bound_of(const struct mk_model *m)
{
    if (m->cfg.head_dim >= 64) return 2e-2;
    return m->cfg.dtype == MK_DTYPE_BF16 ? 5e-2 : 8e-2;
}

/* bf16 -> fp32 of n cache elements starting at element `at`. */
static void kv_span(const uint16_t *kv, uint64_t at, int n, float *out)
{
    for (int i = 0; i < n; i++) out[i] = mk_bf16_to_f32(kv[at + (uint64_t)i]);
}

/* K and V of sequence `slot`, positions [0, n), against the reference's cache, and the
 * positions [n, ctx) of the slot still poisoned. Returns the worst rel error. */
static double check_kv(const struct dev *d, const uint16_t *kv, const struct mk_ref_seq *s,
                       int slot, int n, double bound, const char *what)
{
    const struct mk_config *c = &d->p->cfg;
    const int D = c->head_dim, Nkv = c->n_kv_heads, T = d->p->target.max_ctx;
    float *g = malloc(sizeof(float) * (size_t)n * Nkv * D);
    float *r = malloc(sizeof(float) * (size_t)n * Nkv * D);
    double worst = 0;
    for (int l = 0; l < c->n_layers; l++) {
        const float *rk, *rv;
        mk_ref_seq_kv(s, l, &rk, &rv);
        for (int which = 0; which < 2; which++) {
            const float *ref = which ? rv : rk; /* [pos][Nkv * D] */
            for (int p = 0; p < n; p++)
                for (int h = 0; h < Nkv; h++) {
                    kv_span(kv, mk_plan_kv_offset(d->p, l, which, slot, h, p) / 2, D,
                            g + ((size_t)p * Nkv + h) * D);
                    memcpy(r + ((size_t)p * Nkv + h) * D, ref + ((size_t)p * Nkv + h) * D,
                           sizeof(float) * (size_t)D);
                }
            double e = gt_rel_err(g, r, (size_t)n * Nkv * D);
            worst = e > worst ? e : worst;
            CHECKF(e <= bound, "%s: layer %d %s: rel err %.4g > %.4g", what, l, which ? "V" : "K",
                   e, bound);
            for (int h = 0; h < Nkv; h++) {
                const uint8_t *tail = (const uint8_t *)kv + mk_plan_kv_offset(d->p, l, which, slot, h, n);
                size_t bytes = (size_t)(T - n) * D * 2;
                size_t bad = 0;
                for (size_t i = 0; i < bytes; i++) bad += tail[i] != POISON;
                CHECKF(bad == 0, "%s: layer %d head %d: %zu bytes written past position %d", what,
                       l, h, bad, n);
            }
        }
    }
    free(g);
    free(r);
    return worst;
}

/* NB prompts of different lengths in shuffled slots, in one call; then every output. */
static void batch_case(const struct mk_model *m, const char *name)
{
    const int V = m->cfg.vocab_size;
    const double bound = bound_of(m);
    static const int len[NB] = {1, 17, 50, 100}, slot[NB] = {2, 0, 3, 1};
    struct dev d;
    struct mk_ref *ref = NULL;
    CHECK_OK(mk_ref_new(m, &ref));
    if (!dev_open(m, CTX, &d) || !ref) goto done;
    int32_t prompts[NB][100];
    struct mk_prefill_seq seqs[NB];
    for (int i = 0; i < NB; i++) {
        gt_prompt(prompts[i], len[i], V);
        seqs[i] = (struct mk_prefill_seq){.tokens = prompts[i], .n = len[i], .slot = slot[i]};
    }
    CHECK(cudaMemset(d.kv, POISON, d.p->kv_bytes) == cudaSuccess);
    float *lg = malloc(sizeof(float) * NB * V), *rl = malloc(sizeof(float) * V);
    int32_t next[NB] = {-1, -1, -1, -1};
    struct mk_prefill_dev mem = dev_mem(&d);
    CHECK_OK(mk_prefill_run(d.pf, &mem, seqs, NB, false, lg, next));
    uint16_t *kv = malloc(d.p->kv_bytes);
    CHECK(cudaMemcpy(kv, d.kv, d.p->kv_bytes, cudaMemcpyDeviceToHost) == cudaSuccess);
    for (int i = 0; i < NB; i++) {
        char what[128];
        snprintf(what, sizeof what, "%s seq %d (%d tokens, slot %d)", name, i, len[i], slot[i]);
        struct mk_ref_seq *s = NULL;
        CHECK_OK(mk_ref_seq_new(ref, CTX, &s));
        if (!s) continue;
        CHECK_OK(mk_ref_forward(ref, s, prompts[i], len[i], false, rl));
        double e = gt_rel_err(lg + (size_t)i * V, rl, (size_t)V);
        CHECKF(e <= bound, "%s: logits rel err %.4g > %.4g", what, e, bound);
        int32_t want = mk_argmax(rl, V);
        gt_compare_greedy(&next[i], 1, &want, rl, 1, V, 2 * bound, what);
        double ekv = check_kv(&d, kv, s, slot[i], len[i], bound, what);
        printf("    %s: logits rel err %.3g, kv rel err %.3g (bound %.3g)\n", what, e, ekv, bound);
        mk_ref_seq_free(s);
    }
    free(kv);
    free(lg);
    free(rl);
done:
    dev_close(&d);
    mk_ref_free(ref);
}

/* A prompt in two calls (the second continues at pos0 from the cache the first wrote)
 * gives the one-call logits; every-token logits of one call match the reference's. */
static void chunk_case(const struct mk_model *m, const char *name)
{
    enum { N = 45, SPLIT = 19 };
    const int V = m->cfg.vocab_size;
    const double bound = bound_of(m);
    struct dev d;
    struct mk_ref *ref = NULL;
    CHECK_OK(mk_ref_new(m, &ref));
    if (!dev_open(m, CTX, &d) || !ref) goto done;
    int32_t prompt[N];
    gt_prompt(prompt, N, V);
    float *lg = malloc(sizeof(float) * N * V), *rl = malloc(sizeof(float) * N * V);
    struct mk_ref_seq *s = NULL;
    CHECK_OK(mk_ref_seq_new(ref, CTX, &s));
    if (s) CHECK_OK(mk_ref_forward(ref, s, prompt, N, true, rl));
    struct mk_prefill_dev mem = dev_mem(&d);
    CHECK(cudaMemset(d.kv, POISON, d.p->kv_bytes) == cudaSuccess);
    struct mk_prefill_seq a = {.tokens = prompt, .n = SPLIT, .slot = 3, .pos0 = 0};
    struct mk_prefill_seq b = {.tokens = prompt + SPLIT, .n = N - SPLIT, .slot = 3, .pos0 = SPLIT};
    int32_t next = -1;
    CHECK_OK(mk_prefill_run(d.pf, &mem, &a, 1, false, NULL, NULL));
    CHECK_OK(mk_prefill_run(d.pf, &mem, &b, 1, false, lg, &next));
    char what[128];
    snprintf(what, sizeof what, "%s two calls %d + %d", name, SPLIT, N - SPLIT);
    double e = gt_rel_err(lg, rl + (size_t)(N - 1) * V, (size_t)V);
    CHECKF(e <= bound, "%s: logits rel err %.4g > %.4g", what, e, bound);
    uint16_t *kv = malloc(d.p->kv_bytes);
    CHECK(cudaMemcpy(kv, d.kv, d.p->kv_bytes, cudaMemcpyDeviceToHost) == cudaSuccess);
    if (s) check_kv(&d, kv, s, 3, N, bound, what);
    free(kv);
    printf("    %s: logits rel err %.3g\n", what, e);

    /* every row's logits; three calls of one shape with new tokens each: run directly,
     * captured into a graph, replayed (the replay must read the new tables) */
    mk_ref_seq_free(s);
    s = NULL;
    for (int rep = 0; rep < 3; rep++) {
        gt_prompt(prompt, N, V);
        CHECK_OK(mk_ref_seq_new(ref, CTX, &s));
        if (!s) break;
        CHECK_OK(mk_ref_forward(ref, s, prompt, N, true, rl));
        struct mk_prefill_seq all = {.tokens = prompt, .n = N, .slot = rep, .pos0 = 0};
        CHECK_OK(mk_prefill_run(d.pf, &mem, &all, 1, true, lg, &next));
        double worst = 0;
        for (int t = 0; t < N; t++) {
            double et = gt_rel_err(lg + (size_t)t * V, rl + (size_t)t * V, (size_t)V);
            worst = et > worst ? et : worst;
        }
        CHECKF(worst <= bound, "%s all logits, call %d: worst row rel err %.4g > %.4g", name,
               rep, worst, bound);
        CHECK(next == mk_argmax(lg + (size_t)(N - 1) * V, V));
        printf("    %s all %d logit rows, call %d: worst rel err %.3g\n", name, N, rep, worst);
        mk_ref_seq_free(s);
        s = NULL;
    }
    free(lg);
    free(rl);
done:
    dev_close(&d);
    mk_ref_free(ref);
}

static const char *const GOLDENS[] = {"qwen3_bf16", "llama3_bf16", "qwen3_f32",
                                      "llama3_f32", "qwen2_f32", "mistral_f32"};

static void test_prefill_goldens(void)
{
    for (size_t i = 0; i < sizeof GOLDENS / sizeof GOLDENS[0]; i++) {
        struct mk_model *m = gt_golden(GOLDENS[i]);
        if (!m) continue;
        batch_case(m, GOLDENS[i]);
        chunk_case(m, GOLDENS[i]);
        mk_model_free(m);
    }
}

/* A checkpoint synthesized by `mk synth --config` into a temporary directory. */
static struct mk_model *synth_model(const char *config_json, char *dir, size_t cap)
{
    const char *bin = getenv("MK_BIN_FAST");
    char cmd[1024], path[600];
    snprintf(dir, cap, "/tmp/mk_prefill_XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/in.json", dir);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (!f) return NULL;
    fputs(config_json, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "'%s' synth --config '%s' --out '%s/ckpt' --seed 7 >/dev/null",
             bin ? bin : "build/mk", path, dir);
    CHECKF(system(cmd) == 0, "%s", cmd);
    snprintf(path, sizeof path, "%s/ckpt", dir);
    struct mk_model *m = NULL;
    CHECK_OK(mk_model_load(path, &m));
    return m;
}

static void synth_case(const char *name, const char *config_json)
{
    char dir[256], cmd[300];
    struct mk_model *m = synth_model(config_json, dir, sizeof dir);
    if (m) {
        batch_case(m, name);
        chunk_case(m, name);
        mk_model_free(m);
    }
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}

static void test_prefill_head_dim_128(void)
{
    synth_case("qwen3 D128",
               "{\"architectures\": [\"Qwen3ForCausalLM\"], \"model_type\": \"qwen3\", "
               "\"hidden_size\": 256, \"intermediate_size\": 512, \"num_hidden_layers\": 2, "
               "\"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"head_dim\": 128, "
               "\"vocab_size\": 1024, \"max_position_embeddings\": 4096, "
               "\"rms_norm_eps\": 1e-6, \"rope_theta\": 1000000.0, "
               "\"tie_word_embeddings\": false, \"torch_dtype\": \"bfloat16\"}");
    synth_case("llama3 D128",
               "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", "
               "\"hidden_size\": 512, \"intermediate_size\": 1024, \"num_hidden_layers\": 2, "
               "\"num_attention_heads\": 4, \"num_key_value_heads\": 1, \"head_dim\": 128, "
               "\"vocab_size\": 2048, \"max_position_embeddings\": 131072, "
               "\"rms_norm_eps\": 1e-5, \"rope_theta\": 500000.0, \"rope_scaling\": "
               "{\"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, "
               "\"original_max_position_embeddings\": 64, \"rope_type\": \"llama3\"}, "
               "\"tie_word_embeddings\": false, \"torch_dtype\": \"bfloat16\"}");
}

static void test_prefill_bad_input(void)
{
    struct mk_model *m = gt_golden("qwen3_bf16");
    struct dev d;
    if (!m || !dev_open(m, CTX, &d)) {
        mk_model_free(m);
        return;
    }
    int32_t toks[8] = {1, 2, 3, 4, 5, 6, 7, 8}, bad[2] = {1, 100000};
    struct mk_prefill_dev mem = dev_mem(&d);
    struct mk_prefill_seq twice[2] = {{toks, 4, 1, 0}, {toks, 4, 1, 0}};
    CHECK(mk_prefill_run(d.pf, &mem, twice, 2, false, NULL, NULL) == MK_ERR_ARG);
    struct mk_prefill_seq tok = {bad, 2, 0, 0};
    CHECK(mk_prefill_run(d.pf, &mem, &tok, 1, false, NULL, NULL) == MK_ERR_ARG);
    struct mk_prefill_seq past = {toks, 8, 0, CTX - 4};
    CHECK(mk_prefill_run(d.pf, &mem, &past, 1, false, NULL, NULL) == MK_ERR_LIMIT);
    struct mk_prefill_seq empty = {toks, 0, 0, 0};
    CHECK(mk_prefill_run(d.pf, &mem, &empty, 1, false, NULL, NULL) == MK_ERR_ARG);
    struct mk_prefill_seq slot = {toks, 2, NB, 0};
    CHECK(mk_prefill_run(d.pf, &mem, &slot, 1, false, NULL, NULL) == MK_ERR_ARG);
    struct mk_prefill *small = NULL;
    CHECK_OK(mk_prefill_new(d.p, 4, false, &small));
    struct mk_prefill_seq many = {toks, 8, 0, 0};
    if (small) {
        CHECK(mk_prefill_run(small, &mem, &many, 1, false, NULL, NULL) == MK_ERR_LIMIT);
        CHECK(mk_prefill_run(small, &mem, &many, 1, true, NULL, NULL) == MK_ERR_ARG);
    }
    mk_prefill_free(small);
    dev_close(&d);
    mk_model_free(m);
}

/* ---- --bench: Qwen3-8B shapes, random weights --------------------------------------- */

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static struct mk_config qwen3_8b(void)
{
    struct mk_config c;
    memset(&c, 0, sizeof c);
    c.family = MK_FAMILY_QWEN3;
    c.vocab_size = 151936;
    c.hidden_size = 4096;
    c.intermediate_size = 12288;
    c.n_layers = 36;
    c.n_heads = 32;
    c.n_kv_heads = 8;
    c.head_dim = 128;
    c.max_position = 40960;
    c.rms_norm_eps = 1e-6f;
    c.rope_theta = 1000000.0f;
    c.rope_type = MK_ROPE_DEFAULT;
    c.qk_norm = true;
    c.dtype = MK_DTYPE_BF16;
    c.bos_token_id = -1;
    return c;
}

/* Random bf16 in [-0.03, 0.03) over the whole allocation (a 64 MiB pattern repeated). */
static int fill_random(void *dev, uint64_t bytes)
{
    const size_t chunk = 64u << 20;
    uint16_t *h = malloc(chunk);
    if (!h) return -1;
    for (size_t i = 0; i < chunk / 2; i++)
        h[i] = mk_f32_to_bf16(((float)(gt_rand() % 60000) / 60000.0f - 0.5f) * 0.06f);
    int rc = 0;
    for (uint64_t at = 0; at < bytes && !rc; at += chunk) {
        size_t n = bytes - at < chunk ? (size_t)(bytes - at) : chunk;
        rc = cudaMemcpy((char *)dev + at, h, n, cudaMemcpyHostToDevice) != cudaSuccess;
    }
    free(h);
    return rc;
}

static double d2d_gbps(void)
{
    const size_t bytes = 1u << 30;
    void *a = NULL, *b = NULL;
    double best = 0;
    if (cudaMalloc(&a, bytes) == cudaSuccess && cudaMalloc(&b, bytes) == cudaSuccess) {
        cudaMemset(a, 1, bytes);
        for (int i = 0; i < 6; i++) {
            cudaDeviceSynchronize();
            double t0 = now_ms();
            cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice);
            cudaDeviceSynchronize();
            double gbps = 2.0 * bytes / ((now_ms() - t0) * 1e-3) / 1e9;
            best = i && gbps > best ? gbps : best; /* the first is a warm-up */
        }
    }
    cudaFree(a);
    cudaFree(b);
    return best;
}

/* Median ms of the attention kernel alone for one layer of T tokens (one sequence). */
static double bench_attention(const struct mk_config *c, const struct dev *d, int T)
{
    struct mk_pf_shape sh = {.n_q = c->n_heads, .n_kv = c->n_kv_heads, .head_dim = c->head_dim,
                             .batch = 1, .max_ctx = d->p->target.max_ctx, .eps = c->rms_norm_eps};
    const int tile = mk_pf_attention_tile(c->head_dim), n_items = (T + tile - 1) / tile;
    size_t qbytes = (size_t)T * c->n_heads * c->head_dim * 2;
    struct mk_pf_item *items = malloc(sizeof *items * (size_t)n_items);
    for (int i = 0; i < n_items; i++) items[i] = (struct mk_pf_item){0, i * tile};
    struct mk_pf_seqinfo si = {0, T, 0, 0};
    void *q = NULL, *att = NULL, *it = NULL, *sq = NULL;
    double ms[10] = {0};
    if (cudaMalloc(&q, qbytes) == cudaSuccess && cudaMalloc(&att, qbytes) == cudaSuccess &&
        cudaMalloc(&it, sizeof *items * (size_t)n_items) == cudaSuccess &&
        cudaMalloc(&sq, sizeof si) == cudaSuccess && !fill_random(q, qbytes)) {
        cudaMemcpy(it, items, sizeof *items * (size_t)n_items, cudaMemcpyHostToDevice);
        cudaMemcpy(sq, &si, sizeof si, cudaMemcpyHostToDevice);
        for (int r = -2; r < 10; r++) {
            cudaDeviceSynchronize();
            double t0 = now_ms();
            mk_pf_attention(&sh, 0, q, d->kv, it, n_items, sq, att, 0);
            cudaDeviceSynchronize();
            if (r >= 0) ms[r] = now_ms() - t0;
        }
    }
    cudaFree(q);
    cudaFree(att);
    cudaFree(it);
    cudaFree(sq);
    free(items);
    qsort(ms, 10, sizeof ms[0], cmp_dbl);
    return ms[5];
}

static int bench(void)
{
    struct mk_config c = qwen3_8b();
    enum { MAX_T = 2048, REPS = 10 };
    struct mk_plan *p = gt_plan(&c, 4, MAX_T + 64);
    if (!p) return 1;
    struct cudaDeviceProp prop;
    cudaGetDeviceProperties(&prop, 0);
    double gbps = d2d_gbps();
    struct dev d = {.p = p};
    if (cudaMalloc(&d.w, p->weight_bytes) != cudaSuccess || cudaMalloc(&d.kv, p->kv_bytes) != cudaSuccess ||
        fill_random(d.w, p->weight_bytes)) {
        printf("bench: device allocation / fill failed\n");
        return 1;
    }
    enum mk_status s = mk_prefill_new(p, MAX_T, false, &d.pf);
    if (s != MK_OK) {
        printf("bench: %s\n", mk_errmsg());
        return 1;
    }
    int32_t *toks = malloc(sizeof(int32_t) * MAX_T);
    gt_prompt(toks, MAX_T, c.vocab_size);
    struct mk_prefill_dev mem = dev_mem(&d);
    /* one sequence of 1, 64, 512, 2048 tokens; then 4 sequences of 64 in one call */
    static const int lens[] = {1, 64, 512, 2048, 64}, nseq[] = {1, 1, 1, 1, 4};
    double med[5];
    for (int k = 0; k < 5; k++) {
        struct mk_prefill_seq q[4];
        for (int i = 0; i < nseq[k]; i++)
            q[i] = (struct mk_prefill_seq){.tokens = toks + 64 * i, .n = lens[k], .slot = i};
        int32_t next[4];
        double ms[REPS];
        for (int i = 0; i < 3; i++) mk_prefill_run(d.pf, &mem, q, nseq[k], false, NULL, next);
        for (int i = 0; i < REPS; i++) {
            double t0 = now_ms();
            s = mk_prefill_run(d.pf, &mem, q, nseq[k], false, NULL, next);
            ms[i] = now_ms() - t0;
        }
        if (s != MK_OK) {
            printf("bench: %s\n", mk_errmsg());
            return 1;
        }
        qsort(ms, REPS, sizeof ms[0], cmp_dbl);
        med[k] = ms[REPS / 2];
    }
    double att_ms[4];
    for (int k = 0; k < 4; k++) att_ms[k] = bench_attention(&c, &d, lens[k]) * c.n_layers;
    double floor_ms = (double)mk_config_step_bytes(&c) / (gbps * 1e9) * 1e3;
    printf("prefill bench: %s, Qwen3-8B shapes (random bf16 weights, %.2f GB)\n",
           prop.name, (double)p->weight_bytes / 1e9);
    printf("  device-to-device copy: %.0f GB/s -> one decode step's bytes (%.2f GB) take >= %.2f ms\n",
           gbps, (double)mk_config_step_bytes(&c) / 1e9, floor_ms);
    printf("  %-8s %10s %12s %12s %16s\n", "tokens", "TTFT ms", "tokens/s", "x (1 token)",
           "attention ms");
    for (int k = 0; k < 4; k++)
        printf("  %-8d %10.3f %12.0f %12.2f %16.3f\n", lens[k], med[k], lens[k] / (med[k] * 1e-3),
               med[k] / med[0], att_ms[k]);
    printf("  %-8s %10.3f %12.0f %12.2f %16s\n", "4 x 64", med[4], 256 / (med[4] * 1e-3),
           med[4] / med[0], "-");
    printf("  pp64 vs llama.cpp (12.5 ms): %.2fx faster; pp64 / step floor: %.2f\n",
           12.5 / med[1], med[1] / floor_ms);
    free(toks);
    dev_close(&d);
    return 0;
}

/* test_gpu_prefill [--bench | --case NAME]: all cases, the benchmark, or one case (for
 * the sanitizers, which are slow). */
int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        void (*fn)(void);
    } cases[] = {{"test_prefill_goldens", test_prefill_goldens},
                 {"test_prefill_head_dim_128", test_prefill_head_dim_128},
                 {"test_prefill_bad_input", test_prefill_bad_input}};
    if (argc > 1 && !strcmp(argv[1], "--bench")) return bench();
    const char *only = argc > 2 && !strcmp(argv[1], "--case") ? argv[2] : NULL;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (!only || !strcmp(only, cases[i].name)) check_run(cases[i].name, cases[i].fn);
    CHECK_EXIT();
}
