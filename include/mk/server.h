/* megakernel — the OpenAI-compatible HTTP server (`mk serve`).
 *
 * Endpoints: POST /v1/completions, POST /v1/chat/completions (streaming as server-sent
 * events or not), GET /v1/models, POST /tokenize, POST /detokenize (vLLM's shapes),
 * GET /health (503 until mk_server_attach has warmed the engine up, then 200), GET
 * /metrics (Prometheus text). Errors are OpenAI-shaped:
 *   {"error": {"message", "type", "param", "code"}}
 * and never quote the request back.
 *
 * Threads (libmicrohttpd in thread-per-connection mode): every connection has its own
 * thread, which parses and validates a request, tokenizes its prompt and puts a job in a
 * bounded queue (full: 429 at once). One scheduler thread owns the engine: it takes up
 * to max_batch queued jobs, runs them with mk_engine_generate, and its token callback
 * appends each token to its job under the server mutex and wakes the job's connection
 * thread through the job's eventfd. A connection thread blocks (thread-per-connection
 * mode allows it) in poll() on that eventfd and its own socket, so it streams each token
 * as it comes and notices a client hanging up at once: a queued job leaves the queue, a
 * running one is marked cancelled and the token callback returns false at its next
 * token, which ends it within one step. Requests that arrive while a batch runs wait for
 * the next batch.
 */
#ifndef MK_SERVER_H
#define MK_SERVER_H

#include "mk/engine.h"

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

struct mk_server_opts {
    const char *host;       /* IPv4 or IPv6 literal to listen on */
    int port;               /* 0..65535; 0: a free port (see mk_server_port) */
    int max_batch;          /* 1..MK_MAX_BATCH requests per engine run */
    int max_queue;          /* >= 1 requests waiting; one more gets 429 */
    double timeout_s;       /* deadline of a request after its arrival; 0: none */
    const char *api_key;    /* NULL: no key; else "Authorization: Bearer KEY" on the /v1/ endpoints,
                               /tokenize and /detokenize (401 when missing or wrong) */
    const char *model_name; /* the model id /v1/models lists; requests naming another
                               model get 404 */
    size_t max_body;        /* request body cap in bytes (413 beyond it) */
};

/* What the scheduler runs requests on. The pointers must outlive the server. */
struct mk_server_engine {
    struct mk_engine *engine;
    const struct mk_model *model;
    const struct mk_tokenizer *tok;
    const char *backend;    /* "cpu", "gpu": reported by /v1/models and /metrics */
    int max_batch;          /* the backend's: the server runs min(this, opts.max_batch) */
    int ctx;                /* positions per request: prompt + max_tokens <= ctx */
};

struct mk_server;

/* Listen on host:port and answer /health with 503 (generation requests too) until
 * mk_server_attach. MK_ERR_ARG for bad options, MK_ERR_IO when the address cannot be
 * bound (message says which). */
enum mk_status mk_server_start(const struct mk_server_opts *o, struct mk_server **out);

/* The port the server listens on (the chosen one when opts.port was 0). */
int mk_server_port(const struct mk_server *s);

/* Warm the engine up with one short greedy request, probe with one-token requests whether
 * the backend samples (temperature > 0) and reports logprobs (MK_ERR_UNSUPPORTED: it does
 * not; requests asking for that then get 400, and temperature defaults to 0 instead of
 * 1), start the scheduler thread, and turn /health to 200. Fails (the server stays
 * unready) when the warm-up or a probe fails otherwise. */
enum mk_status mk_server_attach(struct mk_server *s, const struct mk_server_engine *eng);

/* Stop: cancel running and queued requests, close connections, join every thread and
 * free the server. NULL is fine. */
void mk_server_stop(struct mk_server *s);

#ifdef __cplusplus
}
#endif
#endif /* MK_SERVER_H */
