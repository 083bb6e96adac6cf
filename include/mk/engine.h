/* megakernel — the generation engine: requests, stop rules, streaming, backends.
 *
 * A request is a prompt (token ids), sampling parameters, a token budget and stop ids.
 * The engine hands a whole batch of requests to a backend, which runs them to the end
 * and reports every generated token through a callback as soon as it exists. A backend
 * may run many decode steps per call into the device (the GPU megakernel does), so stop
 * rules are data the backend checks itself: a request ends
 *   - with MK_FINISH_STOP when it generates one of its stop ids (the model's eos ids are
 *     added to them by the engine unless ignore_eos); the stop token is delivered and
 *     counted, but contributes no text;
 *   - with MK_FINISH_LENGTH after max_tokens tokens;
 *   - with MK_FINISH_CANCELLED when the callback returns false for one of its tokens:
 *     the backend delivers no further token of that request (the GPU within one step).
 * Callbacks of one request come in generation order; those of different requests may
 * interleave. They run on the thread that called mk_engine_generate.
 */
#ifndef MK_ENGINE_H
#define MK_ENGINE_H

#include "mk/load.h"
#include "mk/sample.h"
#include "mk/tokenizer.h"

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    MK_MAX_BATCH = 16,    /* requests per mk_engine_generate call */
    MK_MAX_STOP_IDS = 16, /* stop ids per request, eos ids included */
};

enum mk_finish {
    MK_FINISH_NONE = 0,  /* still running (or never started: an error came first) */
    MK_FINISH_STOP,      /* generated a stop id (eos) */
    MK_FINISH_LENGTH,    /* reached max_tokens */
    MK_FINISH_CANCELLED, /* the callback asked to stop */
};
const char *mk_finish_name(enum mk_finish f); /* "none", "stop", "length", "cancelled" */

struct mk_request {
    const int32_t *prompt;    /* [n_prompt] ids in [0, vocab_size); n_prompt >= 1 */
    int n_prompt;
    int max_tokens;           /* >= 1; n_prompt + max_tokens <= the context */
    struct mk_sampling sampling;
    int32_t stop_ids[MK_MAX_STOP_IDS];
    int n_stop_ids;
    bool ignore_eos;          /* engine only: do not add the model's eos ids */
    int top_logprobs;         /* 0..MK_TOP_MAX alternatives reported per token */
};

/* One generated token, as a backend reports it (text fields NULL / 0) and as the engine
 * passes it on (text = the UTF-8 completed by this token, never half a character; the
 * last token of a request also carries any held-back bytes; empty without a tokenizer). */
struct mk_token {
    int32_t id;
    int index;                /* 0 for the request's first generated token */
    float logprob;            /* log_softmax(logits)[id], temperature 1 (see sample.h) */
    int n_top;                /* = the request's top_logprobs (fewer if V is smaller) */
    int32_t top_ids[MK_TOP_MAX];      /* by logprob desc, id asc */
    float top_logprobs[MK_TOP_MAX];
    enum mk_finish finish;    /* MK_FINISH_NONE, or STOP / LENGTH on the last token */
    const char *text;
    size_t text_len;
};

/* Called for each token of request reqs[req]. Return false to cancel that request. */
typedef bool (*mk_token_fn)(void *ctx, int req, const struct mk_token *tok);

/* ---- backends ------------------------------------------------------------------ */

/* A way to run requests: the CPU reference (below) or the GPU megakernel. The engine
 * validates requests before calling run, so a backend may assume ids in range,
 * 1 <= n <= max_batch, n_prompt + max_tokens <= max_ctx, top_logprobs <= MK_TOP_MAX. */
struct mk_backend {
    const char *name; /* "cpu", "gpu" */
    int max_batch;    /* <= MK_MAX_BATCH */
    int max_ctx;      /* most positions (prompt + generated) of one request */
    /* Run reqs[0..n) to their ends, calling on_token per token; finish[i] receives each
     * request's finish reason. An error status (with its message) aborts the whole
     * batch; requests not yet finished keep MK_FINISH_NONE. */
    enum mk_status (*run)(struct mk_backend *self, const struct mk_request *reqs, int n,
                          mk_token_fn on_token, void *ctx, enum mk_finish *finish);
    void (*free)(struct mk_backend *self);
};

/* The CPU reference backend: mk_ref fp32 weights (4 bytes per parameter), requests
 * stepped round-robin one token at a time. `m` must outlive the backend. */
enum mk_status mk_backend_cpu_new(const struct mk_model *m, struct mk_backend **out);

/* ---- the engine ---------------------------------------------------------------- */

struct mk_engine;

/* An engine over model `m` (must outlive it), tokenizer `tok` (may be NULL: no text) and
 * `backend`, which the engine owns from now on (freed with it, also on error). */
enum mk_status mk_engine_new(const struct mk_model *m, const struct mk_tokenizer *tok,
                             struct mk_backend *backend, struct mk_engine **out);
void mk_engine_free(struct mk_engine *e); /* NULL is fine */

/* Run reqs[0..n), 1 <= n <= max batch. Validates every request first (MK_ERR_ARG /
 * MK_ERR_LIMIT naming the request and field; nothing runs), then streams tokens to
 * on_token and stores each request's finish reason in finish[i]. */
enum mk_status mk_engine_generate(struct mk_engine *e, const struct mk_request *reqs, int n,
                                  mk_token_fn on_token, void *ctx, enum mk_finish *finish);

/* ---- prompts ------------------------------------------------------------------- */

/* Plain text to prompt ids as transformers' tokenizer(text) does: BOS first when the
 * tokenizer's post-processor adds one, special-token text not interpreted. Appends to
 * *out. */
enum mk_status mk_prompt_text(const struct mk_tokenizer *tok, const char *text,
                              struct mk_ids *out);

/* Chat messages to prompt ids as apply_chat_template(msgs, add_generation_prompt=True,
 * enable_thinking=thinking) followed by encoding without extra special tokens. */
enum mk_status mk_prompt_chat(const struct mk_tokenizer *tok, const struct mk_chat_msg *msgs,
                              size_t n, bool thinking, struct mk_ids *out);

#ifdef __cplusplus
}
#endif
#endif /* MK_ENGINE_H */
