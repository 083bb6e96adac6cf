/* The prefill kernels' launchers (kernels/prefill.cu) as the host (src/runtime/
 * prefill_cuda.c) calls them. Plain C: included from C and CUDA C++. Layouts are at the
 * top of kernels/prefill.cu. */
#ifndef MK_PREFILL_KERNELS_CUH
#define MK_PREFILL_KERNELS_CUH

#include <cuda_runtime_api.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Shapes the attention and RoPE kernels need (by value, as a kernel parameter). */
struct mk_pf_shape {
    int n_q, n_kv, head_dim;   /* query heads, kv heads, D */
    int batch, max_ctx;        /* KV cache: sequences, positions per sequence */
    int window;                /* sliding window (0: none) */
    float eps;                 /* RMSNorm epsilon (q/k-norm) */
};

/* One sequence of the call: its rows [row0, row0 + n) of the packed activations are
 * positions [pos0, pos0 + n) of KV cache sequence `slot`. */
struct mk_pf_seqinfo {
    int32_t row0, n, slot, pos0;
};

/* One attention block: queries [t0, t0 + tile) of sequence `seq`. */
struct mk_pf_item {
    int32_t seq, t0;
};

int mk_pf_attention_tile(int head_dim); /* queries per attention block */
cudaError_t mk_pf_prepare(int head_dim);
cudaError_t mk_pf_embed(const uint16_t *E, int H, const int32_t *tok, int T, float *x,
                        cudaStream_t st);
cudaError_t mk_pf_rmsnorm(const float *x, int H, const int32_t *rows, int n, const uint16_t *w,
                          float eps, uint16_t *out, cudaStream_t st);
/* h [T][I] bf16 from gate and up rows of `stride` floats (fused: stride 2I, up = gate + I) */
cudaError_t mk_pf_silu_mul(const float *gate, const float *up, int stride, int T, int I,
                           uint16_t *h, cudaStream_t st);
cudaError_t mk_pf_argmax(const float *logits, int V, const int32_t *rows, int n, int32_t *next,
                         cudaStream_t st);
cudaError_t mk_pf_qk_rope_kv(const struct mk_pf_shape *s, int layer, int T, const float *qkv,
                             const uint16_t *bias, const uint16_t *q_norm,
                             const uint16_t *k_norm, const float *inv_freq, const int32_t *pos,
                             const int32_t *slot, uint16_t *q_out, uint16_t *kv,
                             cudaStream_t st);
cudaError_t mk_pf_attention(const struct mk_pf_shape *s, int layer, const uint16_t *q,
                            const uint16_t *kv, const struct mk_pf_item *items, int n_items,
                            const struct mk_pf_seqinfo *seqs, uint16_t *att, cudaStream_t st);

#ifdef __cplusplus
}
#endif
#endif
