/* Internals of the HTTP server (see mk/server.h for the threading model).
 *
 *   http.c     libmicrohttpd daemon, routing, bodies, auth, JSON responses, lifecycle
 *   gen.c      the generation endpoints: submit a job, wait for it, stream it as SSE
 *   api.c      request JSON -> a validated job (OpenAI fields and their ranges)
 *   render.c   job -> OpenAI response / chunk JSON, logprobs, errors
 *   sched.c    the bounded queue, the scheduler thread, the engine's token callback
 *   metrics.c  counters and histograms, Prometheus text
 *   tokenize.c /tokenize and /detokenize
 */
#ifndef MK_SERVER_INT_H
#define MK_SERVER_INT_H

#include "mk/server.h"

#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

enum srv_endpoint {
    EP_COMPLETIONS, EP_CHAT, EP_MODELS, EP_TOKENIZE, EP_DETOKENIZE, EP_HEALTH, EP_METRICS,
    EP_OTHER, EP_COUNT
};

/* ---- errors ---------------------------------------------------------------------- */

/* An HTTP error answer. The message names fields and expectations, never input values. */
struct srv_err {
    int status;        /* 400, 401, 404, 413, 429, 500, 503 */
    const char *type;  /* "invalid_request_error", ... */
    const char *code;  /* NULL or e.g. "context_length_exceeded" */
    char param[64];    /* "" = null */
    char msg[256];
};

/* Fill *e (a 400 invalid_request_error unless status says otherwise); returns false so
 * that validators can `return srv_fail(...)`. */
bool srv_fail(struct srv_err *e, int status, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ---- jobs ------------------------------------------------------------------------ */

enum srv_state { JOB_NEW, JOB_QUEUED, JOB_RUNNING, JOB_DONE };

/* Why a job ended (the OpenAI finish_reason, plus ours). */
enum srv_end { END_NONE, END_STOP, END_LENGTH, END_TIMEOUT, END_CANCELLED, END_ERROR };
const char *srv_end_name(enum srv_end e); /* "stop", "length", "timeout", "cancelled", ... */

/* One generated token; its text is job->text[start, end) (whole UTF-8 characters,
 * possibly empty). Hidden tokens (an eos, anything after a stop string) add no text and
 * are left out of logprobs, but count in usage. */
struct srv_tok {
    int32_t id;
    float logprob;
    int n_top;
    int32_t top_ids[MK_TOP_MAX];
    float top_logprobs[MK_TOP_MAX];
    size_t start, end;
    bool hidden;
};

enum { SRV_MAX_STOPS = 16, SRV_MAX_STOP_BYTES = 256 };

struct srv_job {
    /* Written by the connection thread before srv_submit, read-only after. */
    bool chat, stream, include_usage;
    int logprobs;               /* -1: none; else alternatives per token (0..MK_TOP_MAX) */
    struct mk_ids prompt;
    struct mk_request req;      /* .prompt points into `prompt` */
    char *stops[SRV_MAX_STOPS]; /* text stop sequences (NUL-terminated, non-empty) */
    int n_stops;
    double t_arrival, deadline; /* srv_now() seconds; deadline 0: none */
    unsigned long long id;

    /* Shared with the scheduler: under the server mutex until state == JOB_DONE, after
     * which only the connection thread reads it. */
    int refs;                   /* connection thread + scheduler while it runs the job */
    enum srv_state state;
    bool cancel;                /* the client went away */
    enum srv_end why;           /* set by the token callback when it stops the job */
    enum srv_end end;           /* final reason, once JOB_DONE */
    char *text;                 /* generated text so far; after a stop string, cut there */
    size_t text_len, text_cap;
    size_t safe_len;            /* text[0, safe_len) can be sent: no stop string can start
                                   in it any more */
    struct srv_tok *toks;
    int n_toks, toks_cap;
    double t_first, t_last;
    char err[256];              /* END_ERROR: the engine's message */
    int efd;                    /* eventfd written on every token and at the end: the
                                   connection thread polls it with its socket */
    struct srv_job *next;       /* queue link */
};

/* ---- metrics --------------------------------------------------------------------- */

enum { SRV_N_STATUS = 11, SRV_N_BUCKETS = 16 };

struct srv_hist {
    unsigned long long counts[SRV_N_BUCKETS + 1]; /* per bucket (not cumulative), +Inf last */
    double sum;
    unsigned long long n;
};

struct srv_metrics {
    pthread_mutex_t mu;
    unsigned long long requests[EP_COUNT][SRV_N_STATUS];
    unsigned long long prompt_tokens, generation_tokens;
    unsigned long long finished[END_ERROR + 1];
    struct srv_hist ttft, tpot, e2e;
};

void srv_metrics_init(struct srv_metrics *m);
void srv_metrics_free(struct srv_metrics *m);
void srv_metrics_request(struct srv_metrics *m, enum srv_endpoint ep, int status);
/* A finished generation job: its tokens, TTFT, time per output token, end reason. */
void srv_metrics_job(struct srv_metrics *m, const struct srv_job *j);

/* ---- the server ------------------------------------------------------------------ */

struct mk_server {
    struct mk_server_opts o;    /* strings point into the copies below */
    char *host, *api_key, *model_name;
    struct MHD_Daemon *mhd;
    int port;
    time_t created;

    pthread_mutex_t mu;         /* guards everything below and the jobs' shared fields */
    pthread_cond_t sched_cv;    /* the scheduler waits for work on it */
    struct srv_job *head, *tail;
    int n_queued, n_running;
    bool ready, stopping, sched_started;
    unsigned long long next_id;
    uint64_t seed_state;        /* seeds of requests that give none */
    struct mk_server_engine eng;
    bool can_sample, can_logprob; /* what the backend does (probed by mk_server_attach) */
    int batch;                  /* min(opts.max_batch, engine max_batch) */
    pthread_t sched;

    struct srv_metrics metrics;
};

double srv_now(void); /* CLOCK_MONOTONIC seconds */

/* sched.c */
struct srv_job *srv_job_new(void);                 /* refs = 1; NULL when out of memory */
/* Queue j (connection thread). 0 when queued; else the HTTP status to answer with
 * (429 full, 503 not ready or stopping) and *e filled. */
int srv_submit(struct mk_server *s, struct srv_job *j, struct srv_err *e);
/* The connection thread is done with j: cancel it if it still runs or waits, drop the
 * reference. */
void srv_job_release(struct mk_server *s, struct srv_job *j);
/* Block until j's sendable text or token count differs from *seen_len / *seen_toks, or
 * it is done; then store the current values there and *done. Returns false when the peer
 * on socket fd hung up or the server is stopping (a running j is cancelled then). */
bool srv_job_wait(struct mk_server *s, struct srv_job *j, int fd, size_t *seen_len,
                  int *seen_toks, bool *done);

/* A copy of the tokens of j from index `from` that can be sent now (all of them once done;
 * before, those whose text lies in the sendable prefix) and of their text. */
struct srv_view {
    struct srv_tok *toks;
    int n;
    char *text;      /* job text [text_at, toks[n-1].end) */
    size_t text_at;
    bool done;       /* j is JOB_DONE: its fields may be read without the lock now */
};
bool srv_job_view(struct mk_server *s, struct srv_job *j, int from, struct srv_view *v); /* false: OOM */
void srv_view_free(struct srv_view *v);
enum mk_status srv_sched_start(struct mk_server *s);
void srv_sched_stop(struct mk_server *s);

/* api.c: fill j from a request body (prompt ids, sampling, stops, logprobs, stream). */
bool srv_parse_completion(struct mk_server *s, json_t *body, bool chat, struct srv_job *j,
                          struct srv_err *e);
/* Prompt ids of a completions body ("prompt") or a chat body ("messages"), appended to *ids. */
bool srv_parse_prompt(const struct mk_server *s, json_t *body, bool chat, struct mk_ids *ids,
                      struct srv_err *e);
/* Check "model" (absent is fine): 404 when it names another model. */
bool srv_check_model(const struct mk_server *s, json_t *body, struct srv_err *e);

/* render.c */
json_t *srv_error_json(const struct srv_err *e);
/* The whole non-streaming response of a finished job. */
json_t *srv_render_response(const struct mk_server *s, const struct srv_job *j, time_t created);
/* One streaming chunk: text delta, tokens toks[0, n) for logprobs, finish reason (NULL
 * while running), chat role delta when `role`. */
json_t *srv_render_chunk(const struct mk_server *s, const struct srv_job *j, time_t created,
                         const char *text, size_t len, const struct srv_tok *toks, int n,
                         const char *finish, bool role);
json_t *srv_render_usage_chunk(const struct mk_server *s, const struct srv_job *j, time_t created);
/* A JSON string of raw token bytes with invalid UTF-8 replaced by U+FFFD. */
json_t *srv_lossy_string(const char *p, size_t n);

/* gen.c: the generation endpoints. Returns the MHD result of queueing the answer. */
int srv_generate(struct mk_server *s, struct MHD_Connection *c, enum srv_endpoint ep,
                 const char *body, size_t len);

/* tokenize.c */
bool srv_tokenize(struct mk_server *s, json_t *body, json_t **out, struct srv_err *e);
bool srv_detokenize(struct mk_server *s, json_t *body, json_t **out, struct srv_err *e);

/* metrics.c: the /metrics page (malloc'd). */
char *srv_metrics_text(struct mk_server *s);

/* http.c: answer helpers (count the request in the metrics). */
int srv_send_json(struct mk_server *s, struct MHD_Connection *c, enum srv_endpoint ep,
                  int status, json_t *body);  /* steals body */
int srv_send_error(struct mk_server *s, struct MHD_Connection *c, enum srv_endpoint ep,
                   const struct srv_err *e);
/* Parse a body as one JSON object; 400 (no input quoted) otherwise. */
bool srv_parse_body(const char *body, size_t len, json_t **out, struct srv_err *e);

#endif
