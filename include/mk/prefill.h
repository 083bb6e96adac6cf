/* megakernel — prefill on tensor cores (the hybrid path of DESIGN.md §5, Ada-MK's).
 *
 * The prompt tokens of a batch of sequences run layer by layer over ALL their tokens at
 * once: every linear is one cuBLASLt GEMM (bf16 operands, fp32 accumulation, fp32 out)
 * over the packed tokens of every prompt, the small ops are fused kernels (RMSNorm ->
 * bf16, q/k-norm + RoPE + KV write, SiLU*mul -> bf16, residual adds folded into the
 * GEMMs as beta = 1), and attention is a causal GQA kernel that reads K and V back from
 * the KV cache it has just written. Keys and values land in the megakernel's cache in
 * exactly its layout (mk_plan_kv_offset: [layer][K|V][b][kv head][max_ctx][head_dim]
 * bf16), so decode continues in the megakernel from position n of each sequence.
 *
 * The prefill owns no weights and no KV cache: it runs on the device allocations of the
 * GPU runtime (plan->weights layout, QKV as the plan's fused view) and keeps only its
 * scratch (activations of max_tokens tokens, the cuBLASLt workspace and plans).
 * CUDA builds only (the callers are *_cuda.c files).
 *
 * Continuing in the megakernel (the hook of src/runtime/gpu_cuda.c, mk_gpu_generate):
 *   1. mk_gpu_open: mk_prefill_new(plan, T, false, &g->prefill), T = the most prompt
 *      tokens of one launch (longer prompts: several calls, pos0 = tokens already in).
 *   2. before the launch: mk_prefill_run with {weights = g->a.weights, kv = g->a.kv,
 *      stream = g->stream}, one mk_prefill_seq per request {prompt, prompt_len, slot = i,
 *      pos0 = 0}: K/V of positions [0, prompt_len) are then in the cache and next[i] is
 *      the first generated token (greedy, the megakernel's tie rule).
 *   3. the per-sequence state as if the prompt had been fed one token per step:
 *      tokens[i] = next[i], pos[i] = prompt_len, n_gen[i] = 1, ring_tok[i][0] = next[i]
 *      and ring_count[i] = 1 (the host delivers it at once), active[i] = 0 when next[i]
 *      is a stop id, max_new == 1 or prompt_len == max_ctx (n_alive counts the rest);
 *      seq[i].prompt_len unchanged (SAMPLE then treats every step as generation);
 *      max_steps = the largest max_new - 1 of the active ones (no launch when 0).
 */
#ifndef MK_PREFILL_H
#define MK_PREFILL_H

#include "mk/plan.h"

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

struct mk_prefill; /* scratch + cuBLASLt state for one plan's shapes */

/* The runtime's device memory the prefill reads and writes. */
struct mk_prefill_dev {
    const void *weights;   /* plan->weight_bytes, every plan weight at its offset (bf16) */
    void *kv;              /* plan->kv_bytes, mk_plan_kv_offset layout (bf16) */
    void *stream;          /* the caller's cudaStream_t (NULL: the legacy default stream):
                              the prefill runs on a stream of its own, after the work
                              queued here, and returns when it is done */
};

/* One sequence of a prefill batch: tokens[0..n) at positions pos0 .. pos0 + n - 1 of
 * sequence `slot` of the KV cache. pos0 = 0 for a fresh prompt; pos0 > 0 appends to a
 * prefix already in the cache (positions [0, pos0) are read, not written). */
struct mk_prefill_seq {
    const int32_t *tokens;
    int n;                 /* >= 1 */
    int slot;              /* 0 .. plan batch - 1, each slot at most once per call */
    int pos0;              /* >= 0, pos0 + n <= plan max_ctx */
};

/* Scratch for up to max_tokens tokens per call (all sequences together). all_logits:
 * mk_prefill_run may return the logits of every token (scratch for max_tokens x vocab
 * fp32 logits), else only those of each sequence's last token.
 * Errors: MK_ERR_ARG (max_tokens < 1), MK_ERR_UNSUPPORTED (head_dim odd or > 256, a
 * weight the prefill needs missing from the plan), MK_ERR_NOMEM, MK_ERR_CUDA. */
enum mk_status mk_prefill_new(const struct mk_plan *plan, int max_tokens, bool all_logits,
                              struct mk_prefill **out);
void mk_prefill_free(struct mk_prefill *pf); /* NULL is fine */

/* Run the prompts of seqs[0..n_seqs) and wait for the result. Outputs (host memory, each
 * may be NULL):
 *   next[i]    the greedy next token of sequence i (argmax of its last logits, ties ->
 *              lowest id, as the megakernel's LOGITS/SAMPLE tasks);
 *   logits     all_logits == false: [n_seqs][V], the last token of each sequence;
 *              all_logits == true (needs mk_prefill_new(..., true)): [sum n][V], every
 *              token, sequences in order.
 * A call of the same shape as the one before (token count, sequences, logits rows,
 * device memory) is captured into a CUDA graph that later calls of that shape replay.
 * Errors: MK_ERR_ARG (n_seqs < 1, a sequence with n < 1, pos0 < 0, a slot outside the
 * batch or used twice, a token outside the vocabulary), MK_ERR_LIMIT (more tokens than
 * max_tokens, pos0 + n past max_ctx), MK_ERR_CUDA. The KV cache positions of the call
 * are written even when the outputs are not asked for. */
enum mk_status mk_prefill_run(struct mk_prefill *pf, const struct mk_prefill_dev *dev,
                              const struct mk_prefill_seq *seqs, int n_seqs, bool all_logits,
                              float *logits, int32_t *next);

#ifdef __cplusplus
}
#endif
#endif /* MK_PREFILL_H */
