/* megakernel — the CPU reference forward (the oracle).
 *
 * A plain fp32 forward of every family the loader accepts (Llama 2/3 incl. llama3 RoPE
 * scaling, Mistral, Qwen2 with QKV bias, Qwen3 with q/k RMSNorm; GQA; tied embeddings),
 * written to be read top to bottom like the model definition in Hugging Face
 * transformers, which it matches: RoPE "rotate_half" (pairs i and i + D/2),
 * inv_freq = theta^(-2i/D); RMSNorm x * rsqrt(mean(x^2) + eps) * w; SiLU-gated MLP;
 * causal softmax attention with scale D^-0.5 (sliding window when the config has one).
 *
 * Weights are converted once at mk_ref_new to fp32 (bf16 and f16 values are exact in
 * fp32), so a bf16 checkpoint runs with exactly its stored weights and fp32 activations.
 * The big matrix products are split over the online cores by output row.
 *
 * A sequence (mk_ref_seq) holds its own KV cache; tokens are appended to it by
 * mk_ref_forward, many at once (a prompt) or one at a time (decode).
 */
#ifndef MK_REF_H
#define MK_REF_H

#include "mk/load.h"

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

struct mk_ref;     /* fp32 weights of one model (read-only once made: shareable) */
struct mk_ref_seq; /* one sequence: KV cache and position */

/* Convert the bound weights of `m` to fp32. `m` must outlive nothing: the reference
 * keeps its own copy of the config and weights. MK_ERR_NOMEM when the fp32 copy does
 * not fit (4 bytes per parameter). */
enum mk_status mk_ref_new(const struct mk_model *m, struct mk_ref **out);
void mk_ref_free(struct mk_ref *r); /* NULL is fine */
const struct mk_config *mk_ref_config(const struct mk_ref *r);

/* A sequence whose KV cache holds up to max_ctx positions (1 <= max_ctx <=
 * max_position_embeddings, else MK_ERR_LIMIT). */
enum mk_status mk_ref_seq_new(const struct mk_ref *r, int max_ctx, struct mk_ref_seq **out);
void mk_ref_seq_free(struct mk_ref_seq *s); /* NULL is fine */
int mk_ref_seq_pos(const struct mk_ref_seq *s);   /* tokens in the cache */
void mk_ref_seq_reset(struct mk_ref_seq *s);      /* empty the cache */
/* The cache of layer `layer` (0 <= layer < n_layers): keys (after k-norm and RoPE) and
 * values, fp32 [max_ctx][n_kv_heads * head_dim] each; positions [0, pos) are filled.
 * For tests that check another implementation's KV cache. */
void mk_ref_seq_kv(const struct mk_ref_seq *s, int layer, const float **k, const float **v);

/* Run tokens[0..n) at positions pos .. pos+n-1 of `s`, appending their keys and values to
 * its cache. logits receives fp32 logits:
 *   all_logits == false: [V], those of the last token;
 *   all_logits == true:  [n, V], one row per token.
 * MK_ERR_ARG for n < 1 or a token id outside [0, V) (nothing is appended),
 * MK_ERR_LIMIT when pos + n exceeds the sequence's max_ctx. */
enum mk_status mk_ref_forward(const struct mk_ref *r, struct mk_ref_seq *s,
                              const int32_t *tokens, int n, bool all_logits, float *logits);

#ifdef __cplusplus
}
#endif
#endif /* MK_REF_H */
