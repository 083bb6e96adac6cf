/* Prefill on tensor cores (include/mk/prefill.h): the host side. Per layer, over the T
 * packed tokens of every sequence of the call:
 *
 *   xn   = rmsnorm(x) * input_layernorm            kernel, bf16 out
 *   qkv  = xn . Wqkv^T                             GEMM (the plan's fused QKV view)
 *   q, K/V cache = (bias,) q/k-norm, RoPE          kernel, writes the cache
 *   att  = causal GQA attention (q, cache)         kernel
 *   x   += att . Wo^T                              GEMM, beta = 1 (residual in place)
 *   xn   = rmsnorm(x) * post_attention_layernorm   kernel
 *   gate | up = xn . [Wg; Wu]^T                    one GEMM when the plan put up_proj
 *                                                  right after gate_proj, else two
 *   h    = silu(gate) * up                         kernel, bf16 out
 *   x   += h . Wd^T                                GEMM, beta = 1
 * then the final norm of each sequence's last row (or of all rows), the LM head GEMM and
 * the argmax. GEMMs: cuBLASLt, A = weight bf16 row-major [N, K] (column-major [K, N],
 * transposed), B = activations bf16 [T, K] (column-major [K, T]), C = D = fp32 [T, N];
 * compute fp32. For each (N, K, T, beta) the first call times up to PF_ALGOS of
 * cuBLASLt's heuristic candidates on the real operands and keeps the fastest (the
 * heuristic's first choice is often not the fastest for skinny T); the choice is cached.
 * A beta = 1 GEMM is timed with beta = 0 into the `tune` scratch, so that timing leaves
 * the residual stream alone.
 *
 * 10 launches per layer (some 400 for an 8B model) run on the prefill's own stream. A call
 * with the same shape as the call before it (tokens, sequences, attention blocks, logits
 * rows, device memory) is captured into a CUDA graph, and later calls of that shape
 * replay it: the per-call tables are copied in before the launch, every kernel reads
 * them from device memory, so one graph serves any tokens and positions of its shape.
 * The GEMMs stream the weights once per call: a 64-token prefill reads as many weight
 * bytes as one decode step. */
#include "mk/prefill.h"
#include "runtime/cuda_check.h"
#include "../kernels/prefill_kernels.cuh"

#include <cublasLt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { PF_GEMM_CACHE = 24, PF_WS_BYTES = 32 << 20, PF_MAX_BATCH = 16, PF_ALGOS = 16,
       PF_TUNE_REPS = 3 };
#define PF_NO_WEIGHT UINT64_MAX

struct pf_layer { /* byte offsets into the weight allocation */
    uint64_t attn_norm, qkv, qkv_bias, q_norm, k_norm, o, mlp_norm, gate, up, down;
};

struct pf_gemm {
    int N, K, T, beta1, used;
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t a, b, c;
    cublasLtMatmulAlgo_t algo;
};

/* What a captured graph depends on besides the per-call tables. */
struct pf_key {
    int T, n_seqs, n_items, all_logits;
    const void *weights;
    void *kv;
};

struct mk_prefill {
    struct mk_config cfg;
    int batch, max_ctx, max_tokens, all_logits;
    struct pf_layer *layers;
    uint64_t embed, final_norm, lm_head;
    cublasLtHandle_t lt;
    void *ws;
    struct pf_gemm gemm[PF_GEMM_CACHE];
    int gemm_next;
    int capturing;          /* 1 while a graph is captured: no GEMM timing */
    cudaStream_t st;        /* the prefill's stream */
    cudaEvent_t ev;         /* orders it after the caller's stream */
    cudaGraphExec_t exec;   /* the graph of shape exec_key, when has_exec */
    struct pf_key exec_key, last_key;
    int has_exec, has_last;
    /* device scratch (one allocation, carved) */
    void *scratch;
    float *x, *qkv, *gu, *tune, *logits, *inv_freq; /* gu: gate | up, [T][2I] or [2][T][I] */
    uint16_t *xn, *q, *att, *h, *xl;
    int32_t *meta, *next;
    /* host staging of the per-call tables (same layout as meta) */
    int32_t *meta_host;
    size_t meta_ints;
};

/* Offsets of the per-call tables inside meta (ints), for max_tokens = Tm:
 * tok[Tm] pos[Tm] slot[Tm] last[Tm] seqinfo[Tm][4] items[2 Tm][2]. */
#define META_TOK(Tm)   0
#define META_POS(Tm)   ((size_t)(Tm))
#define META_SLOT(Tm)  ((size_t)(Tm) * 2)
#define META_LAST(Tm)  ((size_t)(Tm) * 3)
#define META_SEQ(Tm)   ((size_t)(Tm) * 4)
#define META_ITEM(Tm)  ((size_t)(Tm) * 8)
#define META_INTS(Tm)  ((size_t)(Tm) * 12)

/* Byte offset of plan weight `name` checked to be [rows, cols]; PF_NO_WEIGHT when absent
 * and optional. */
static enum mk_status find_weight(const struct mk_plan *p, const char *name, uint32_t rows,
                                  uint32_t cols, bool optional, uint64_t *off)
{
    for (uint32_t i = 0; i < p->n_weights; i++) {
        const struct mk_plan_weight *w = &p->weights[i];
        if (strcmp(w->name, name)) continue;
        if (w->rows != rows || w->cols != cols)
            return mk_error(MK_ERR_UNSUPPORTED, "prefill: plan weight %s: expected %u x %u, "
                            "got %u x %u", name, rows, cols, w->rows, w->cols);
        *off = w->offset;
        return MK_OK;
    }
    *off = PF_NO_WEIGHT;
    if (optional) return MK_OK;
    return mk_error(MK_ERR_UNSUPPORTED, "prefill: the plan has no weight %s", name);
}

static enum mk_status find_layer(const struct mk_plan *p, int l, struct pf_layer *L)
{
    const struct mk_config *c = &p->cfg;
    uint32_t H = (uint32_t)c->hidden_size, I = (uint32_t)c->intermediate_size;
    uint32_t D = (uint32_t)c->head_dim, QD = (uint32_t)c->n_heads * D;
    uint32_t QKV = QD + 2u * (uint32_t)c->n_kv_heads * D;
    char n[MK_NAME_MAX];
    enum mk_status s;
#define FIND(field, suffix, rows, cols, opt) \
    snprintf(n, sizeof n, "model.layers.%d.%s", l, suffix); \
    if ((s = find_weight(p, n, rows, cols, opt, &L->field)) != MK_OK) return s
    FIND(attn_norm, "input_layernorm.weight", 1, H, false);
    FIND(qkv, "self_attn.qkv_proj.weight", QKV, H, false);
    FIND(qkv_bias, "self_attn.qkv_proj.bias", 1, QKV, !c->qkv_bias);
    FIND(q_norm, "self_attn.q_norm.weight", 1, D, !c->qk_norm);
    FIND(k_norm, "self_attn.k_norm.weight", 1, D, !c->qk_norm);
    FIND(o, "self_attn.o_proj.weight", H, QD, false);
    FIND(mlp_norm, "post_attention_layernorm.weight", 1, H, false);
    FIND(gate, "mlp.gate_proj.weight", I, H, false);
    FIND(up, "mlp.up_proj.weight", I, H, false);
    FIND(down, "mlp.down_proj.weight", H, I, false);
#undef FIND
    return MK_OK;
}

/* RoPE inverse frequencies with the reference's fp32 arithmetic (src/ref/forward.c,
 * as transformers): theta^(-2i/D), then the llama3 band scaling when configured. */
static void inv_freq_of(const struct mk_config *c, float *f)
{
    const int D = c->head_dim;
    for (int i = 0; i < D / 2; i++) f[i] = 1.0f / powf(c->rope_theta, (float)(2 * i) / (float)D);
    if (c->rope_type != MK_ROPE_LLAMA3) return;
    const float factor = c->rope_factor, lo = c->rope_low_freq_factor;
    const float hi = c->rope_high_freq_factor, old_ctx = (float)c->rope_original_max_position;
    for (int i = 0; i < D / 2; i++) {
        const float wavelen = (float)(2.0 * M_PI) / f[i];
        if (wavelen > old_ctx / lo) {
            f[i] = f[i] / factor;
        } else if (wavelen >= old_ctx / hi) {
            const float smooth = (old_ctx / wavelen - lo) / (hi - lo);
            f[i] = (1.0f - smooth) * f[i] / factor + smooth * f[i];
        }
    }
}

static size_t up256(size_t x) { return (x + 255) & ~(size_t)255; }

/* Carve the scratch: sizes in bytes, in the order of the pointers set below. */
static enum mk_status alloc_scratch(struct mk_prefill *pf)
{
    const struct mk_config *c = &pf->cfg;
    size_t T = (size_t)pf->max_tokens, H = (size_t)c->hidden_size;
    size_t I = (size_t)c->intermediate_size, D = (size_t)c->head_dim;
    size_t QD = (size_t)c->n_heads * D, QKV = QD + 2 * (size_t)c->n_kv_heads * D;
    size_t LR = pf->all_logits ? T : (size_t)pf->batch, V = (size_t)c->vocab_size;
    size_t sz[] = {T * H * 4, T * QKV * 4, T * I * 8, T * H * 4, LR * V * 4, D / 2 * 4,
                   T * H * 2, T * QD * 2, T * QD * 2, T * I * 2, LR * H * 2,
                   META_INTS(T) * 4, T * 4};
    size_t total = 0;
    for (size_t i = 0; i < sizeof sz / sizeof sz[0]; i++) total += up256(sz[i]);
    if (cudaMalloc(&pf->scratch, total) != cudaSuccess) {
        cudaGetLastError();
        pf->scratch = NULL;
        return mk_error(MK_ERR_NOMEM, "prefill: cudaMalloc of %zu MiB of scratch for %d tokens "
                        "failed", total >> 20, pf->max_tokens);
    }
    char *at = pf->scratch;
    void **ptr[] = {(void **)&pf->x, (void **)&pf->qkv, (void **)&pf->gu, (void **)&pf->tune,
                    (void **)&pf->logits, (void **)&pf->inv_freq, (void **)&pf->xn,
                    (void **)&pf->q, (void **)&pf->att, (void **)&pf->h, (void **)&pf->xl,
                    (void **)&pf->meta, (void **)&pf->next};
    for (size_t i = 0; i < sizeof sz / sizeof sz[0]; i++) {
        *ptr[i] = at;
        at += up256(sz[i]);
    }
    pf->meta_ints = META_INTS(T);
    pf->meta_host = malloc(pf->meta_ints * 4);
    if (!pf->meta_host) return mk_error(MK_ERR_NOMEM, "prefill: no host memory");
    float f[256];
    inv_freq_of(c, f);
    MK_CUDA_CHECK(cudaMemcpy(pf->inv_freq, f, D / 2 * 4, cudaMemcpyHostToDevice));
    return MK_OK;
}

static enum mk_status prefill_init(struct mk_prefill *pf, const struct mk_plan *p)
{
    const struct mk_config *c = &p->cfg;
    if (p->target.batch < 1 || p->target.batch > PF_MAX_BATCH)
        return mk_error(MK_ERR_UNSUPPORTED, "prefill: plan batch %d, expected 1..%d",
                        p->target.batch, PF_MAX_BATCH);
    if (c->head_dim % 2 || c->head_dim > 256 || c->n_heads % c->n_kv_heads)
        return mk_error(MK_ERR_UNSUPPORTED, "prefill: head_dim %d, heads %d / %d: expected an "
                        "even head_dim <= 256 and kv heads dividing heads", c->head_dim,
                        c->n_heads, c->n_kv_heads);
    pf->layers = calloc((size_t)c->n_layers, sizeof *pf->layers);
    if (!pf->layers) return mk_error(MK_ERR_NOMEM, "prefill: no host memory");
    enum mk_status s;
    for (int l = 0; l < c->n_layers; l++)
        if ((s = find_layer(p, l, &pf->layers[l])) != MK_OK) return s;
    uint32_t V = (uint32_t)c->vocab_size, H = (uint32_t)c->hidden_size;
    if ((s = find_weight(p, "model.embed_tokens.weight", V, H, false, &pf->embed)) != MK_OK ||
        (s = find_weight(p, "model.norm.weight", 1, H, false, &pf->final_norm)) != MK_OK ||
        (s = find_weight(p, c->tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight",
                         V, H, false, &pf->lm_head)) != MK_OK)
        return s;
    MK_CUDA_CHECK(mk_pf_prepare(c->head_dim));
    MK_CUDA_CHECK(cudaStreamCreateWithFlags(&pf->st, cudaStreamNonBlocking));
    MK_CUDA_CHECK(cudaEventCreateWithFlags(&pf->ev, cudaEventDisableTiming));
    MK_CUBLAS_CHECK(cublasLtCreate(&pf->lt));
    MK_CUDA_CHECK(cudaMalloc(&pf->ws, PF_WS_BYTES));
    return alloc_scratch(pf);
}

enum mk_status mk_prefill_new(const struct mk_plan *plan, int max_tokens, bool all_logits,
                              struct mk_prefill **out)
{
    if (max_tokens < 1)
        return mk_error(MK_ERR_ARG, "prefill: max_tokens: expected >= 1, got %d", max_tokens);
    struct mk_prefill *pf = calloc(1, sizeof *pf);
    if (!pf) return mk_error(MK_ERR_NOMEM, "prefill: no host memory");
    pf->cfg = plan->cfg;
    pf->batch = plan->target.batch;
    pf->max_ctx = plan->target.max_ctx;
    pf->max_tokens = max_tokens;
    pf->all_logits = all_logits;
    enum mk_status s = prefill_init(pf, plan);
    if (s != MK_OK) {
        mk_prefill_free(pf);
        return s;
    }
    *out = pf;
    return MK_OK;
}

static void gemm_release(struct pf_gemm *g)
{
    if (!g->used) return;
    cublasLtMatrixLayoutDestroy(g->a);
    cublasLtMatrixLayoutDestroy(g->b);
    cublasLtMatrixLayoutDestroy(g->c);
    cublasLtMatmulDescDestroy(g->op);
    g->used = 0;
}

void mk_prefill_free(struct mk_prefill *pf)
{
    if (!pf) return;
    for (int i = 0; i < PF_GEMM_CACHE; i++) gemm_release(&pf->gemm[i]);
    if (pf->has_exec) cudaGraphExecDestroy(pf->exec);
    if (pf->ev) cudaEventDestroy(pf->ev);
    if (pf->st) cudaStreamDestroy(pf->st);
    if (pf->lt) cublasLtDestroy(pf->lt);
    cudaFree(pf->ws);
    cudaFree(pf->scratch);
    free(pf->meta_host);
    free(pf->layers);
    free(pf);
}

/* Milliseconds of PF_TUNE_REPS runs of algorithm `al` after one warm-up;
 * a negative value when cuBLASLt refuses it. */
static float gemm_time(struct mk_prefill *pf, const struct pf_gemm *g, const cublasLtMatmulAlgo_t *al,
                       const void *W, const void *X, float *Y, cudaStream_t st, cudaEvent_t ev[2])
{
    const float alpha = 1.0f, beta = 0.0f;
    if (cublasLtMatmul(pf->lt, g->op, &alpha, W, g->a, X, g->b, &beta, Y, g->c, Y, g->c, al,
                       pf->ws, PF_WS_BYTES, st))
        return -1.0f;
    cudaEventRecord(ev[0], st);
    for (int r = 0; r < PF_TUNE_REPS; r++)
        cublasLtMatmul(pf->lt, g->op, &alpha, W, g->a, X, g->b, &beta, Y, g->c, Y, g->c, al,
                       pf->ws, PF_WS_BYTES, st);
    cudaEventRecord(ev[1], st);
    float ms = -1.0f;
    if (cudaEventSynchronize(ev[1]) != cudaSuccess || cudaEventElapsedTime(&ms, ev[0], ev[1]))
        return -1.0f;
    return ms;
}

/* The fastest of the heuristic's candidates for g (timed into Y, beta = 0); the first
 * candidate untimed while a graph is being captured. */
static enum mk_status gemm_tune(struct mk_prefill *pf, struct pf_gemm *g, const void *W,
                                const void *X, float *Y, cudaStream_t st)
{
    cublasLtMatmulPreference_t pref = NULL;
    cublasLtMatmulHeuristicResult_t res[PF_ALGOS];
    int n_res = 0;
    uint64_t ws = PF_WS_BYTES;
    int e = cublasLtMatmulPreferenceCreate(&pref);
    if (!e) e = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                     &ws, sizeof ws);
    if (!e) e = cublasLtMatmulAlgoGetHeuristic(pf->lt, g->op, g->a, g->b, g->c, g->c, pref,
                                               PF_ALGOS, res, &n_res);
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (e || n_res < 1)
        return mk_error(MK_ERR_CUDA, "prefill: cuBLASLt has no bf16 GEMM for N %d, K %d, T %d "
                        "(status %d)", g->N, g->K, g->T, e);
    g->algo = res[0].algo;
    if (n_res == 1 || pf->capturing) return MK_OK;
    cudaEvent_t ev[2];
    MK_CUDA_CHECK(cudaEventCreate(&ev[0]));
    if (cudaEventCreate(&ev[1]) != cudaSuccess) {
        cudaEventDestroy(ev[0]);
        return mk_error(MK_ERR_CUDA, "prefill: cudaEventCreate failed");
    }
    float best = -1.0f;
    for (int i = 0; i < n_res; i++) {
        float ms = gemm_time(pf, g, &res[i].algo, W, X, Y, st, ev);
        if (ms >= 0 && (best < 0 || ms < best)) {
            best = ms;
            g->algo = res[i].algo;
        }
    }
    cudaEventDestroy(ev[0]);
    cudaEventDestroy(ev[1]);
    cudaGetLastError(); /* a refused candidate leaves no error behind */
    if (best < 0)
        return mk_error(MK_ERR_CUDA, "prefill: no cuBLASLt candidate ran for N %d, K %d, T %d",
                        g->N, g->K, g->T);
    return MK_OK;
}

/* The cached descriptors and algorithm of Y[T, N] = X[T, K] . W[N, K]^T (+ Y), tuned on
 * first use with these operands. */
static enum mk_status gemm_plan(struct mk_prefill *pf, int N, int K, int T, int beta1,
                                const void *W, const void *X, float *Y, cudaStream_t st,
                                struct pf_gemm **out)
{
    for (int i = 0; i < PF_GEMM_CACHE; i++) {
        struct pf_gemm *g = &pf->gemm[i];
        if (g->used && g->N == N && g->K == K && g->T == T && g->beta1 == beta1) {
            *out = g;
            return MK_OK;
        }
    }
    struct pf_gemm *g = &pf->gemm[pf->gemm_next];
    pf->gemm_next = (pf->gemm_next + 1) % PF_GEMM_CACHE;
    gemm_release(g);
    *g = (struct pf_gemm){.N = N, .K = K, .T = T, .beta1 = beta1};
    MK_CUBLAS_CHECK(cublasLtMatmulDescCreate(&g->op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasOperation_t tr = CUBLAS_OP_T, nt = CUBLAS_OP_N;
    int e = cublasLtMatmulDescSetAttribute(g->op, CUBLASLT_MATMUL_DESC_TRANSA, &tr, sizeof tr);
    if (!e) e = cublasLtMatmulDescSetAttribute(g->op, CUBLASLT_MATMUL_DESC_TRANSB, &nt, sizeof nt);
    if (!e) e = cublasLtMatrixLayoutCreate(&g->a, CUDA_R_16BF, (uint64_t)K, (uint64_t)N, K);
    if (!e) e = cublasLtMatrixLayoutCreate(&g->b, CUDA_R_16BF, (uint64_t)K, (uint64_t)T, K);
    if (!e) e = cublasLtMatrixLayoutCreate(&g->c, CUDA_R_32F, (uint64_t)N, (uint64_t)T, N);
    g->used = 1;
    enum mk_status s = e ? mk_error(MK_ERR_CUDA, "prefill: cuBLASLt descriptors: status %d", e)
                         : gemm_tune(pf, g, W, X, beta1 ? pf->tune : Y, st);
    if (s != MK_OK) {
        gemm_release(g);
        return s;
    }
    *out = g;
    return MK_OK;
}

static enum mk_status gemm(struct mk_prefill *pf, const void *W, int N, int K, const uint16_t *X,
                           int T, float *Y, int beta1, cudaStream_t st)
{
    struct pf_gemm *g = NULL;
    enum mk_status s = gemm_plan(pf, N, K, T, beta1, W, X, Y, st, &g);
    if (s != MK_OK) return s;
    const float alpha = 1.0f, beta = beta1 ? 1.0f : 0.0f;
    MK_CUBLAS_CHECK(cublasLtMatmul(pf->lt, g->op, &alpha, W, g->a, X, g->b, &beta, Y, g->c, Y,
                                   g->c, &g->algo, pf->ws, PF_WS_BYTES, st));
    return MK_OK;
}

/* Check the call and fill the per-call tables; *T_out = packed tokens, *n_items. */
static enum mk_status build_meta(struct mk_prefill *pf, const struct mk_prefill_seq *seqs, int n,
                                 int *T_out, int *n_items)
{
    const int Tm = pf->max_tokens, tile = mk_pf_attention_tile(pf->cfg.head_dim);
    int32_t *m = pf->meta_host;
    bool used[PF_MAX_BATCH] = {false};
    int T = 0, items = 0;
    if (n < 1 || n > pf->batch)
        return mk_error(MK_ERR_ARG, "prefill: %d sequences, expected 1..%d", n, pf->batch);
    for (int i = 0; i < n; i++) {
        const struct mk_prefill_seq *q = &seqs[i];
        if (q->n < 1 || q->pos0 < 0 || q->slot < 0 || q->slot >= pf->batch || used[q->slot])
            return mk_error(MK_ERR_ARG, "prefill: sequence %d: n %d, pos0 %d, slot %d: expected "
                            "n >= 1, pos0 >= 0, a slot in 0..%d used once", i, q->n, q->pos0,
                            q->slot, pf->batch - 1);
        used[q->slot] = true;
        if ((int64_t)q->pos0 + q->n > pf->max_ctx)
            return mk_error(MK_ERR_LIMIT, "prefill: sequence %d: positions %d..%d past the "
                            "context of %d", i, q->pos0, q->pos0 + q->n - 1, pf->max_ctx);
        if ((int64_t)T + q->n > Tm)
            return mk_error(MK_ERR_LIMIT, "prefill: more than %d tokens in one call", Tm);
        int32_t *si = m + META_SEQ(Tm) + (size_t)i * 4;
        si[0] = T;
        si[1] = q->n;
        si[2] = q->slot;
        si[3] = q->pos0;
        for (int t = 0; t < q->n; t++) {
            if (q->tokens[t] < 0 || q->tokens[t] >= pf->cfg.vocab_size)
                return mk_error(MK_ERR_ARG, "prefill: sequence %d: token %d at %d outside [0, %d)",
                                i, q->tokens[t], t, pf->cfg.vocab_size);
            m[META_TOK(Tm) + T + t] = q->tokens[t];
            m[META_POS(Tm) + T + t] = q->pos0 + t;
            m[META_SLOT(Tm) + T + t] = q->slot;
        }
        for (int t0 = 0; t0 < q->n; t0 += tile) {
            m[META_ITEM(Tm) + (size_t)items * 2] = i;
            m[META_ITEM(Tm) + (size_t)items * 2 + 1] = t0;
            items++;
        }
        T += q->n;
        m[META_LAST(Tm) + i] = T - 1;
    }
    *T_out = T;
    *n_items = items;
    return MK_OK;
}

static enum mk_status run_layer(struct mk_prefill *pf, const char *W, uint16_t *kv, int l, int T,
                                int n_items, const struct mk_pf_shape *sh, cudaStream_t st)
{
    const struct mk_config *c = &pf->cfg;
    const struct pf_layer *L = &pf->layers[l];
    const int H = c->hidden_size, I = c->intermediate_size, D = c->head_dim;
    const int QD = c->n_heads * D, QKV = QD + 2 * c->n_kv_heads * D, Tm = pf->max_tokens;
    const uint16_t *nil = NULL;
#define WP(off) ((off) == PF_NO_WEIGHT ? nil : (const uint16_t *)(W + (off)))
    enum mk_status s;
    MK_CUDA_CHECK(mk_pf_rmsnorm(pf->x, H, NULL, T, WP(L->attn_norm), c->rms_norm_eps, pf->xn, st));
    if ((s = gemm(pf, W + L->qkv, QKV, H, pf->xn, T, pf->qkv, 0, st)) != MK_OK) return s;
    MK_CUDA_CHECK(mk_pf_qk_rope_kv(sh, l, T, pf->qkv, WP(L->qkv_bias), WP(L->q_norm),
                                   WP(L->k_norm), pf->inv_freq, pf->meta + META_POS(Tm),
                                   pf->meta + META_SLOT(Tm), pf->q, kv, st));
    MK_CUDA_CHECK(mk_pf_attention(sh, l, pf->q, kv,
                                  (const struct mk_pf_item *)(pf->meta + META_ITEM(Tm)), n_items,
                                  (const struct mk_pf_seqinfo *)(pf->meta + META_SEQ(Tm)), pf->att,
                                  st));
    if ((s = gemm(pf, W + L->o, H, QD, pf->att, T, pf->x, 1, st)) != MK_OK) return s;
    MK_CUDA_CHECK(mk_pf_rmsnorm(pf->x, H, NULL, T, WP(L->mlp_norm), c->rms_norm_eps, pf->xn, st));
    if (L->up == L->gate + (uint64_t)I * H * 2) { /* [Wg; Wu] is one [2I, H] matrix */
        if ((s = gemm(pf, W + L->gate, 2 * I, H, pf->xn, T, pf->gu, 0, st)) != MK_OK) return s;
        MK_CUDA_CHECK(mk_pf_silu_mul(pf->gu, pf->gu + I, 2 * I, T, I, pf->h, st));
    } else {
        float *up = pf->gu + (size_t)T * I;
        if ((s = gemm(pf, W + L->gate, I, H, pf->xn, T, pf->gu, 0, st)) != MK_OK) return s;
        if ((s = gemm(pf, W + L->up, I, H, pf->xn, T, up, 0, st)) != MK_OK) return s;
        MK_CUDA_CHECK(mk_pf_silu_mul(pf->gu, up, I, T, I, pf->h, st));
    }
    return gemm(pf, W + L->down, H, I, pf->h, T, pf->x, 1, st);
#undef WP
}

/* Everything of a call after its tables are on the device, up to the argmax, on pf->st. */
static enum mk_status enqueue(struct mk_prefill *pf, const struct pf_key *k)
{
    const struct mk_config *c = &pf->cfg;
    const int Tm = pf->max_tokens, H = c->hidden_size, V = c->vocab_size, T = k->T;
    const char *W = k->weights;
    cudaStream_t st = pf->st;
    enum mk_status s;
    struct mk_pf_shape sh = {.n_q = c->n_heads, .n_kv = c->n_kv_heads, .head_dim = c->head_dim,
                             .batch = pf->batch, .max_ctx = pf->max_ctx,
                             .window = c->sliding_window, .eps = c->rms_norm_eps};
    MK_CUDA_CHECK(mk_pf_embed((const uint16_t *)(W + pf->embed), H, pf->meta + META_TOK(Tm), T,
                              pf->x, st));
    for (int l = 0; l < c->n_layers; l++)
        if ((s = run_layer(pf, W, k->kv, l, T, k->n_items, &sh, st)) != MK_OK) return s;
    /* final norm + LM head over the last row of each sequence (or every row) */
    const int32_t *last = pf->meta + META_LAST(Tm);
    int rows = k->all_logits ? T : k->n_seqs;
    MK_CUDA_CHECK(mk_pf_rmsnorm(pf->x, H, k->all_logits ? NULL : last, rows,
                                (const uint16_t *)(W + pf->final_norm), c->rms_norm_eps, pf->xl, st));
    if ((s = gemm(pf, W + pf->lm_head, V, H, pf->xl, rows, pf->logits, 0, st)) != MK_OK) return s;
    MK_CUDA_CHECK(mk_pf_argmax(pf->logits, V, k->all_logits ? last : NULL, k->n_seqs, pf->next, st));
    return MK_OK;
}

/* Capture enqueue() into a graph of shape *k (replacing the one held) and launch it. */
static enum mk_status capture(struct mk_prefill *pf, const struct pf_key *k)
{
    cudaGraph_t graph = NULL;
    MK_CUDA_CHECK(cudaStreamBeginCapture(pf->st, cudaStreamCaptureModeThreadLocal));
    pf->capturing = 1;
    enum mk_status s = enqueue(pf, k);
    pf->capturing = 0;
    cudaError_t e = cudaStreamEndCapture(pf->st, &graph);
    if (s != MK_OK) {
        if (graph) cudaGraphDestroy(graph);
        return s;
    }
    MK_CUDA_CHECK(e);
    if (pf->has_exec) cudaGraphExecDestroy(pf->exec);
    pf->has_exec = 0;
    e = cudaGraphInstantiate(&pf->exec, graph, 0);
    cudaGraphDestroy(graph);
    MK_CUDA_CHECK(e);
    pf->has_exec = 1;
    pf->exec_key = *k;
    MK_CUDA_CHECK(cudaGraphLaunch(pf->exec, pf->st));
    return MK_OK;
}

static bool key_eq(const struct pf_key *a, const struct pf_key *b)
{
    return a->T == b->T && a->n_seqs == b->n_seqs && a->n_items == b->n_items &&
           a->all_logits == b->all_logits && a->weights == b->weights && a->kv == b->kv;
}

enum mk_status mk_prefill_run(struct mk_prefill *pf, const struct mk_prefill_dev *dev,
                              const struct mk_prefill_seq *seqs, int n_seqs, bool all_logits,
                              float *logits, int32_t *next)
{
    if (all_logits && !pf->all_logits)
        return mk_error(MK_ERR_ARG, "prefill: all_logits asked of a prefill made without it");
    struct pf_key k = {.n_seqs = n_seqs, .all_logits = all_logits, .weights = dev->weights,
                       .kv = dev->kv};
    enum mk_status s = build_meta(pf, seqs, n_seqs, &k.T, &k.n_items);
    if (s != MK_OK) return s;
    MK_CUDA_CHECK(cudaEventRecord(pf->ev, (cudaStream_t)dev->stream));
    MK_CUDA_CHECK(cudaStreamWaitEvent(pf->st, pf->ev, 0));
    MK_CUDA_CHECK(cudaMemcpyAsync(pf->meta, pf->meta_host, pf->meta_ints * 4,
                                  cudaMemcpyHostToDevice, pf->st));
    if (pf->has_exec && key_eq(&pf->exec_key, &k)) {
        MK_CUDA_CHECK(cudaGraphLaunch(pf->exec, pf->st));
    } else if (pf->has_last && key_eq(&pf->last_key, &k)) {
        s = capture(pf, &k); /* the GEMMs of this shape were tuned by the call before */
    } else {
        s = enqueue(pf, &k);
        pf->last_key = k;
        pf->has_last = 1;
    }
    if (s != MK_OK) return s;
    size_t rows = all_logits ? (size_t)k.T : (size_t)n_seqs;
    if (next)
        MK_CUDA_CHECK(cudaMemcpyAsync(next, pf->next, (size_t)n_seqs * 4, cudaMemcpyDeviceToHost,
                                      pf->st));
    if (logits)
        MK_CUDA_CHECK(cudaMemcpyAsync(logits, pf->logits, rows * (size_t)pf->cfg.vocab_size * 4,
                                      cudaMemcpyDeviceToHost, pf->st));
    MK_CUDA_CHECK(cudaStreamSynchronize(pf->st));
    return MK_OK;
}
